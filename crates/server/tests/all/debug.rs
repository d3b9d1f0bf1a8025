//! `POST /api/v1/runs/{id}/breakpoints` through the router: it adds, removes and sets the
//! steps a paused run stops before (the run's `debug` field shows them, the audit log has a
//! `run.breakpoints` entry), refuses an unknown step with 422 naming it and listing the steps,
//! a viewer with 403, another tenant with 404; and over a real socket, a WebSocket subscriber
//! of a run that no process drives sees `breakpoints_set` as it happens.

use std::time::Duration;

use baton_llm::Providers;
use baton_server::{AppState, ServerConfig};
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::edit::STOPS;
use super::{key, key_for, reaches, refused, send_json as send, serve_loopback, test_state};

/// A run of STOPS started by `key`, once it paused at its breakpoint before `two`.
async fn paused_at_two(state: &AppState, key: &str) -> String {
    let start = json!({"source": STOPS, "breakpoints": ["two"]});
    let (status, v) = send(state, key, "POST", "/api/v1/runs", start).await;
    assert_eq!(status, 201, "{v}");
    let run = v["id"].as_str().unwrap().to_string();
    let d = reaches(state, key, &run, "paused").await;
    assert_eq!(d["debug"]["paused"]["step"], "two", "{d}");
    run
}

#[tokio::test]
async fn breakpoints_are_added_removed_and_refused_with_reasons() {
    let state = test_state(Providers::default());
    let op = key_for(&state).await;
    for t in ["acme", "globex"] {
        let (status, v) = send(&state, &op, "POST", "/api/v1/tenants", json!({"id": t})).await;
        assert_eq!(status, 201, "{v}");
    }
    let editor = key(&state, &op, "acme", "editor").await;
    let viewer = key(&state, &op, "acme", "viewer").await;
    let admin = key(&state, &op, "acme", "admin").await;
    let other = key(&state, &op, "globex", "admin").await;
    let run = paused_at_two(&state, &editor).await;
    let uri = format!("/api/v1/runs/{run}/breakpoints");

    let (status, v) = send(&state, &editor, "POST", &uri, json!({"add": ["one"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["breakpoints"], json!(["one", "two"]), "{v}");
    assert_eq!(v["queued"], false, "{v}");
    assert_eq!(v["paused"]["step"], "two", "{v}");
    let (status, v) = send(&state, &editor, "POST", &uri, json!({"remove": ["two"]})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["breakpoints"], json!(["one"]), "{v}");
    let d = reaches(&state, &editor, &run, "paused").await;
    assert_eq!(d["debug"]["breakpoints"], json!(["one"]), "{d}");

    let (status, v) = send(&state, &other, "POST", &uri, json!({"add": ["one"]})).await;
    refused(status, &v, (404, "not_found"));
    let (status, v) = send(&state, &viewer, "POST", &uri, json!({"add": ["one"]})).await;
    refused(status, &v, (403, "forbidden"));
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        &uri,
        json!({"add": ["two", "nope"]}),
    )
    .await;
    refused(status, &v, (422, "invalid"));
    assert_eq!(v["error"]["details"]["field"], "breakpoints", "{v}");
    let message = v["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("no step 'nope'") && message.contains("steps: one, two"),
        "{message}"
    );
    let (status, v) = send(&state, &editor, "POST", &uri, json!({})).await;
    refused(status, &v, (422, "invalid"));
    // The refusals changed nothing.
    let d = reaches(&state, &editor, &run, "paused").await;
    assert_eq!(d["debug"]["breakpoints"], json!(["one"]), "{d}");

    // Audited: the two changes by the editor, the viewer's denial.
    let (status, v) = send(
        &state,
        &admin,
        "GET",
        "/api/v1/audit?action=run.breakpoints",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let entries = v["entries"].as_array().unwrap();
    let by = |outcome: &str| {
        entries
            .iter()
            .filter(|e| e["outcome"] == outcome && e["action"] == "run.breakpoints")
            .count()
    };
    assert_eq!((by("ok"), by("denied")), (2, 1), "{v}");
    assert!(v.to_string().contains(&format!("run/{run}")), "{v}");

    // `set` replaces them all; then the run finishes and nothing is left to pause before.
    let (status, v) = send(&state, &editor, "POST", &uri, json!({"set": []})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["breakpoints"], json!([]), "{v}");
    let edit = format!("/api/v1/runs/{run}/edit");
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        &edit,
        json!({"set": {"state.note": "n"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    let resume = format!("/api/v1/runs/{run}/resume");
    let (status, v) = send(&state, &editor, "POST", &resume, json!({})).await;
    assert_eq!(status, 200, "{v}");
    reaches(&state, &editor, &run, "succeeded").await;
    let (status, v) = send(&state, &editor, "POST", &uri, json!({"add": ["one"]})).await;
    refused(status, &v, (409, "conflict"));
}

async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let msg = tokio::time::timeout(Duration::from_secs(10), ws.next())
        .await
        .expect("a message within 10 s")
        .unwrap()
        .unwrap();
    match msg {
        Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("not text: {other:?}"),
    }
}

/// Nobody drives the paused run, so the change is applied by the request itself: it reaches
/// the bus, and a subscriber sees it at once (the log is read again only every minute here).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_subscriber_sees_breakpoints_set_on_a_stopped_run() {
    let state = test_state(Providers::default()).with_config(ServerConfig {
        rate_limit: None,
        poll: Duration::from_secs(60),
        ..Default::default()
    });
    let k = key_for(&state).await;
    let run = paused_at_two(&state, &k).await;
    let served = serve_loopback(state.clone()).await;
    let mut req = format!("ws://{}/api/v1/ws", served.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert(
        "sec-websocket-protocol",
        format!("baton.v1, baton.key.{k}").parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"subscribe_tenant": {}}).to_string().into(),
    ))
    .await
    .unwrap();
    assert_eq!(next_json(&mut ws).await["type"], "subscribed");
    // Subscribed to the run from its start too: its log first, then live.
    let sub = json!({"subscribe": {"run": run, "after": 0}});
    ws.send(Message::Text(sub.to_string().into()))
        .await
        .unwrap();
    let mut logged = 0;
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] == "event" {
            logged += 1;
            if v["event"]["type"] == "paused" {
                break;
            }
        }
    }
    assert!(logged >= 3, "the log was sent first");

    let uri = format!("/api/v1/runs/{run}/breakpoints");
    let (status, v) = send(&state, &k, "POST", &uri, json!({"add": ["one"]})).await;
    assert_eq!(status, 200, "{v}");
    // Once for the tenant subscription, once for the run's.
    for _ in 0..2 {
        let v = next_json(&mut ws).await;
        assert_eq!(v["type"], "event", "{v}");
        assert_eq!(v["event"]["type"], "breakpoints_set", "{v}");
        assert_eq!(v["event"]["run_id"], run.as_str(), "{v}");
        assert_eq!(v["event"]["breakpoints"], json!(["one", "two"]), "{v}");
    }
    drop(ws);
    served.stop().await;
}
