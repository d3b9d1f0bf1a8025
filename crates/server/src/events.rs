//! Run events, live: server-sent events for one run (`GET /api/v1/runs/{id}/stream`) and one
//! WebSocket for many runs or a whole tenant (`GET /api/v1/ws`).
//!
//! Both follow the run log through `Control::follow`: a client that reconnects with the last
//! seq it saw (`Last-Event-ID`, or `after`) misses nothing and sees nothing twice. Model output
//! as it streams (`model_delta`) is sent too, without an id (it is not logged).

use std::convert::Infallible;

use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_control::{BusItem, Caller, Followed, Follower};
use futures::{SinkExt, StreamExt, stream};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::sync::mpsc;

use crate::api::IdPath;
use crate::api::Params;
use crate::auth::Auth;
use crate::{ApiError, AppState};

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StreamQuery {
    /// Send the events after this seq (the `Last-Event-ID` header wins when both are given).
    after: Option<u64>,
    /// Also send model output as it streams (default: true).
    deltas: Option<bool>,
}

fn last_event_id(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    match headers.get("last-event-id") {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .map(Some)
            .ok_or_else(|| {
                ApiError::bad_request("Last-Event-ID must be the seq of an event (a number)")
            }),
    }
}

/// One followed item as an SSE event.
fn sse_event(f: &Followed) -> SseEvent {
    match f {
        Followed::Event(rec) => SseEvent::default()
            .id(rec.seq.to_string())
            .event(rec.event.kind())
            .data(serde_json::to_string(rec.as_ref()).unwrap_or_default()),
        Followed::Delta(d) => SseEvent::default()
            .event("model_delta")
            .data(serde_json::to_string(d.as_ref()).unwrap_or_default()),
    }
}

pub(crate) async fn sse(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    headers: HeaderMap,
    Params(q): Params<StreamQuery>,
) -> Result<Response, ApiError> {
    let after = last_event_id(&headers)?.or(q.after).unwrap_or(0);
    let follower = s
        .control
        .follow(&c, &id, after)
        .await?
        .with_deltas(q.deltas.unwrap_or(true))
        .with_poll(s.config.poll);
    let events = stream::unfold(follower, |mut f| async move {
        let item = f.next().await?;
        let ev = match item {
            Ok(item) => sse_event(&item),
            // The store failed mid-stream: say so, and end (the client reconnects from its
            // last id).
            Err(e) => SseEvent::default()
                .event("error")
                .data(ApiError::from(e).body().to_string()),
        };
        Some((Ok::<_, Infallible>(ev), f))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response())
}

/// What a WebSocket client sends.
#[derive(Deserialize)]
#[serde(deny_unknown_fields, rename_all = "snake_case")]
enum ClientMessage {
    /// Follow one run from the event after `after` (0: from its start).
    Subscribe {
        run: String,
        #[serde(default)]
        after: u64,
    },
    /// Every event of every run of the caller's tenant, from now on.
    SubscribeTenant {},
    Unsubscribe {
        run: String,
    },
}

pub(crate) async fn ws(
    State(s): State<AppState>,
    Auth(c): Auth,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    // A request that is not a WebSocket handshake gets the one error body, as every refusal.
    let upgrade = match upgrade {
        Ok(u) => u,
        Err(e) => {
            return crate::ApiError::new(e.status(), "invalid_request", e.body_text())
                .into_response();
        }
    };
    // A browser sends its key as the subprotocol `baton.key.KEY` next to `baton.v1`
    // (`crate::auth`): the answer names `baton.v1` only, never the key.
    upgrade
        .protocols([crate::auth::WS_PROTOCOL])
        .max_message_size(64 << 10)
        .on_upgrade(move |socket| session(s, c, socket))
}

fn item_json(f: &Followed) -> Value {
    match f {
        Followed::Event(rec) => {
            json!({"type": "event", "event": rec.as_ref()})
        }
        Followed::Delta(d) => json!({"type": "model_delta", "delta": d.as_ref()}),
    }
}

async fn session(s: AppState, c: Caller, socket: WebSocket) {
    let (mut sink, mut incoming) = socket.split();
    let (tx, mut rx) = mpsc::channel::<Value>(1024);
    // One writer: everything to the client goes through `tx`.
    let writer = tokio::spawn(async move {
        while let Some(v) = rx.recv().await {
            if sink
                .send(Message::Text(v.to_string().into()))
                .await
                .is_err()
            {
                break;
            }
        }
    });
    let mut subs: std::collections::HashMap<String, tokio::task::AbortHandle> = Default::default();
    while let Some(Ok(msg)) = incoming.next().await {
        let text = match msg {
            Message::Text(t) => t.to_string(),
            Message::Close(_) => break,
            _ => continue,
        };
        let reply = match serde_json::from_str::<ClientMessage>(&text) {
            Err(e) => ApiError::bad_request(format!(
                "not a message this socket takes ({e}); send {{\"subscribe\": {{\"run\": ID, \"after\": SEQ}}}}, {{\"subscribe_tenant\": {{}}}} or {{\"unsubscribe\": {{\"run\": ID}}}}"
            ))
            .body(),
            Ok(ClientMessage::Subscribe { run, after }) => {
                match s.control.follow(&c, &run, after).await {
                    Err(e) => ApiError::from(e).body(),
                    Ok(f) => {
                        let f = f.with_deltas(true).with_poll(s.config.poll);
                        let task = tokio::spawn(forward(f, tx.clone()));
                        if let Some(old) = subs.insert(run.clone(), task.abort_handle()) {
                            old.abort();
                        }
                        json!({"type": "subscribed", "run": run, "after": after})
                    }
                }
            }
            Ok(ClientMessage::SubscribeTenant {}) => {
                if c.own_runs_only() {
                    ApiError::from(baton_control::Error::forbidden(
                        "a runner key follows only its own runs: subscribe to each by id",
                    ))
                    .body()
                } else {
                    let task = tokio::spawn(tenant(s.clone(), c.clone(), tx.clone()));
                    if let Some(old) = subs.insert("*".into(), task.abort_handle()) {
                        old.abort();
                    }
                    json!({"type": "subscribed", "tenant": c.tenant})
                }
            }
            Ok(ClientMessage::Unsubscribe { run }) => {
                if let Some(t) = subs.remove(&run) {
                    t.abort();
                }
                json!({"type": "unsubscribed", "run": run})
            }
        };
        if tx.send(reply).await.is_err() {
            break;
        }
    }
    for (_, t) in subs {
        t.abort();
    }
    drop(tx);
    let _ = writer.await;
}

async fn forward(mut f: Follower, tx: mpsc::Sender<Value>) {
    while let Some(item) = f.next().await {
        let v = match item {
            Ok(i) => item_json(&i),
            Err(e) => ApiError::from(e).body(),
        };
        if tx.send(v).await.is_err() {
            return;
        }
    }
}

/// The tenant's events as the bus carries them (runs this process drives).
async fn tenant(s: AppState, c: Caller, tx: mpsc::Sender<Value>) {
    let mut rx = s.control.subscribe();
    loop {
        match rx.recv().await {
            Ok(ev) if ev.tenant == c.tenant => {
                let v = match &ev.item {
                    BusItem::Event(r) => item_json(&Followed::Event(r.clone())),
                    BusItem::Delta(d) => item_json(&Followed::Delta(d.clone())),
                };
                if tx.send(v).await.is_err() {
                    return;
                }
            }
            Ok(_) => {}
            Err(tokio::sync::broadcast::error::RecvError::Lagged(n)) => {
                let note = json!({"type": "lagged", "missed": n, "hint": "subscribe to the runs you need with `after` to read what was missed from their logs"});
                if tx.send(note).await.is_err() {
                    return;
                }
            }
            Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
        }
    }
}
