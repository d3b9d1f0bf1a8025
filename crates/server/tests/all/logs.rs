//! No secret in the logs: every tracing event and span the server, control, the engine and
//! the deliverer emit at every level (TRACE included) is captured by a subscriber of this
//! test, through key creation, failed authentications (unknown, tampered, revoked keys), an
//! inbound hook's creation, rotation and signed, badly signed and replayed receipts, and a
//! subscription's deliveries to a loopback receiver. No key, key secret, key hash or webhook
//! secret may appear in what was logged.

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_control::webhooks::{AddressPolicy, signature};
use baton_llm::Providers;
use baton_server::webhooks::{Deliverer, DeliveryConfig};
use baton_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;
use tracing::field::{Field, Visit};
use tracing::span::{Attributes, Id, Record};
use tracing::{Event, Metadata, Subscriber};

use super::key_for;

/// Everything logged, as text.
static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();

/// A subscriber that keeps every event and span with all its fields.
struct Capture {
    out: Arc<Mutex<String>>,
    next: AtomicU64,
}

struct Fields<'a>(&'a mut String);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        let _ = write!(self.0, " {}={value:?}", field.name());
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        let _ = write!(self.0, " {}={value}", field.name());
    }
}

impl Subscriber for Capture {
    fn enabled(&self, _: &Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, span: &Attributes<'_>) -> Id {
        let mut line = format!("span {}:", span.metadata().name());
        span.record(&mut Fields(&mut line));
        self.out.lock().unwrap().push_str(&(line + "\n"));
        Id::from_u64(self.next.fetch_add(1, Ordering::Relaxed) + 1)
    }
    fn record(&self, _: &Id, values: &Record<'_>) {
        let mut line = String::from("record:");
        values.record(&mut Fields(&mut line));
        self.out.lock().unwrap().push_str(&(line + "\n"));
    }
    fn record_follows_from(&self, _: &Id, _: &Id) {}
    fn event(&self, event: &Event<'_>) {
        let m = event.metadata();
        let mut line = format!("{} {}:", m.level(), m.target());
        event.record(&mut Fields(&mut line));
        self.out.lock().unwrap().push_str(&(line + "\n"));
    }
    fn enter(&self, _: &Id) {}
    fn exit(&self, _: &Id) {}
}

fn capture() -> Arc<Mutex<String>> {
    LOG.get_or_init(|| {
        let out = Arc::new(Mutex::new(String::new()));
        tracing::subscriber::set_global_default(Capture {
            out: out.clone(),
            next: AtomicU64::new(0),
        })
        .expect("no other subscriber in this test process");
        out
    })
    .clone()
}

async fn call(
    state: &AppState,
    key: Option<&str>,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let req = req
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

async fn hook(
    state: &AppState,
    id: &str,
    secret: &str,
    msg: &str,
    sig: Option<&str>,
) -> StatusCode {
    let ts = baton_store::now_ms() / 1000;
    let body = r#"{"who": "log"}"#;
    let good = signature::sign(
        &signature::key_of(secret).unwrap(),
        msg,
        ts,
        body.as_bytes(),
    );
    let req = Request::post(format!("/hooks/{id}"))
        .header("content-type", "application/json")
        .header("webhook-id", msg)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig.unwrap_or(&good))
        .body(Body::from(body))
        .unwrap();
    app(state.clone()).oneshot(req).await.unwrap().status()
}

fn sha256_hex(s: &str) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(s.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_key_or_webhook_secret_is_ever_logged() {
    let log = capture();
    let store = Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: Arc::new(Providers::default()),
        tools: Arc::new(baton_tools::Registry::with_builtins()),
    };
    let control = baton_control::Control::new(services, store.clone()).with_webhooks(
        store,
        AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]),
    );
    let state = AppState::new(control, Providers::default());
    let mut secrets: Vec<String> = Vec::new();

    let admin = key_for(&state).await;
    secrets.push(admin.clone());
    let (st, made) = call(
        &state,
        Some(&admin),
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "editor"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let editor = made["key"].as_str().unwrap().to_string();
    secrets.push(editor.clone());
    let editor_id = made["id"].as_str().unwrap().to_string();

    // Failed authentications: a tampered secret of a real key, garbage, a revoked key.
    let tampered = format!("bk_{editor_id}_{}", "0".repeat(64));
    let (st, _) = call(&state, Some(&tampered), "GET", "/api/v1/runs", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, _) = call(
        &state,
        Some("bk_garbage_secretsecret"),
        "GET",
        "/api/v1/runs",
        None,
    )
    .await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);
    let (st, made) = call(
        &state,
        Some(&admin),
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "viewer"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let viewer = made["key"].as_str().unwrap().to_string();
    secrets.push(viewer.clone());
    let vid = made["id"].as_str().unwrap();
    let (st, _) = call(
        &state,
        Some(&admin),
        "DELETE",
        &format!("/api/v1/keys/{vid}"),
        None,
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let (st, _) = call(&state, Some(&viewer), "GET", "/api/v1/runs", None).await;
    assert_eq!(st, StatusCode::UNAUTHORIZED);

    // An inbound hook: made, rotated, received well, badly, twice.
    let req = Request::post("/api/v1/workflows")
        .header("authorization", format!("Bearer {editor}"))
        .header("content-type", "application/yaml")
        .body(Body::from("version: 1\nname: echo\ninputs:\n  who: { type: string }\nsteps:\n  - { id: a, tool: echo, with: { text: \"{{ inputs.who }}\" } }\n"))
        .unwrap();
    assert_eq!(
        app(state.clone()).oneshot(req).await.unwrap().status(),
        StatusCode::CREATED
    );
    let (st, h) = call(
        &state,
        Some(&editor),
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let hook_id = h["id"].as_str().unwrap().to_string();
    let old = h["secret"].as_str().unwrap().to_string();
    secrets.push(old.clone());
    let (st, r) = call(
        &state,
        Some(&editor),
        "POST",
        &format!("/api/v1/webhooks/inbound/{hook_id}/rotate"),
        Some(json!({})),
    )
    .await;
    assert_eq!(st, StatusCode::OK);
    let new = r["secret"].as_str().unwrap().to_string();
    secrets.push(new.clone());
    assert_eq!(
        hook(&state, &hook_id, &new, "msg_1", None).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        hook(&state, &hook_id, &new, "msg_1", None).await,
        StatusCode::CONFLICT
    );
    assert_eq!(
        hook(&state, &hook_id, &old, "msg_2", None).await,
        StatusCode::ACCEPTED
    );
    assert_eq!(
        hook(
            &state,
            &hook_id,
            &new,
            "msg_3",
            Some("v1,AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=")
        )
        .await,
        StatusCode::UNAUTHORIZED
    );

    // A subscription delivered to a loopback receiver.
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    let receiver = axum::Router::new().route(
        "/hook",
        axum::routing::post(|| async { StatusCode::NO_CONTENT }),
    );
    tokio::spawn(async move { axum::serve(l, receiver).await.unwrap() });
    let (st, s) = call(
        &state,
        Some(&editor),
        "POST",
        "/api/v1/webhooks/subscriptions",
        Some(json!({"url": format!("http://{addr}/hook"), "events": ["run.created"]})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED, "{s}");
    secrets.push(s["secret"].as_str().unwrap().to_string());
    let (st, _) = call(
        &state,
        Some(&editor),
        "POST",
        "/api/v1/runs",
        Some(json!({"workflow": "echo", "inputs": {"who": "x"}})),
    )
    .await;
    assert_eq!(st, StatusCode::CREATED);
    let worker = Deliverer::new(state.control.clone(), DeliveryConfig::default()).unwrap();
    assert!(worker.tick().await.unwrap() >= 1, "a delivery was made");

    let text = log.lock().unwrap().clone();
    assert!(
        text.contains("authentication failed"),
        "the failed authentications were logged:\n{text}"
    );
    for s in &secrets {
        let mut needles = vec![s.clone(), sha256_hex(s)];
        // The secret part alone: a key's last segment, a webhook secret's base64 key.
        if let Some(rest) = s.strip_prefix("whsec_") {
            needles.push(rest.to_string());
        } else if let Some(tail) = s.rsplit('_').next() {
            needles.push(tail.to_string());
        }
        for n in needles {
            assert!(
                !text.contains(&n),
                "the log shows a secret ({}…):\n{text}",
                &n[..8]
            );
        }
    }
}
