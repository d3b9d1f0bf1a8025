//! Webhooks: inbound hooks through the router (signatures, timestamps, replays, rotation,
//! tenants), outbound deliveries to a receiver on a loopback socket (signed, retried,
//! recorded), the address allow-list at creation and at delivery, and deliveries that
//! survive the process that logged the events.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::body::Body;
use axum::http::{HeaderMap, Request, StatusCode};
use baton_control::webhooks::{AddressPolicy, signature};
use baton_control::{Caller, Control};
use baton_llm::Providers;
use baton_server::webhooks::{Deliverer, DeliveryConfig};
use baton_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{key_for, test_state};

const ECHO: &str = "version: 1\nname: echo\ninputs:\n  who: { type: string, default: world }\nsteps:\n  - { id: hello, tool: echo, with: { text: \"hello {{ inputs.who }}\" } }\n";

struct Reply {
    status: StatusCode,
    body: Value,
}

async fn send(state: &AppState, req: Request<Body>) -> Reply {
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Reply { status, body }
}

async fn api(state: &AppState, key: &str, method: &str, uri: &str, body: Option<Value>) -> Reply {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(body.map_or_else(Body::empty, |b| Body::from(b.to_string())))
        .unwrap();
    send(state, req).await
}

fn now_s() -> i64 {
    baton_store::now_ms() / 1000
}

/// A request to an inbound hook signed with `secret` (and `sig` replacing the signature
/// when given).
async fn post_hook(
    state: &AppState,
    id: &str,
    secret: &str,
    msg: &str,
    ts: i64,
    body: &str,
    sig: Option<&str>,
) -> Reply {
    let key = signature::key_of(secret).unwrap();
    let good = signature::sign(&key, msg, ts, body.as_bytes());
    let req = Request::builder()
        .method("POST")
        .uri(format!("/hooks/{id}"))
        .header("content-type", "application/json")
        .header("webhook-id", msg)
        .header("webhook-timestamp", ts.to_string())
        .header("webhook-signature", sig.unwrap_or(&good))
        .body(Body::from(body.to_string()))
        .unwrap();
    send(state, req).await
}

async fn store_echo(state: &AppState, key: &str) {
    let req = Request::builder()
        .method("POST")
        .uri("/api/v1/workflows")
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/yaml")
        .body(Body::from(ECHO))
        .unwrap();
    let r = send(state, req).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
}

async fn finish(control: &Control, run: &str) -> Value {
    let mut f = control
        .follow(&Caller::local(), run, 0)
        .await
        .unwrap()
        .until_end(true);
    while let Some(item) = f.next().await {
        item.unwrap();
    }
    let rec = control.find_run(&Caller::local(), run).await.unwrap();
    serde_json::to_value(&rec).unwrap()
}

async fn run_count(state: &AppState, key: &str) -> usize {
    api(state, key, "GET", "/api/v1/runs", None).await.body["runs"]
        .as_array()
        .unwrap()
        .len()
}

async fn audit_actions(state: &AppState, key: &str) -> Vec<(String, String)> {
    api(
        state,
        key,
        "GET",
        "/api/v1/audit?action=webhook.receive",
        None,
    )
    .await
    .body["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["outcome"].as_str().unwrap().to_string(),
                e["details"]["message"].as_str().unwrap_or("").to_string(),
            )
        })
        .collect()
}

#[tokio::test]
async fn an_inbound_hook_starts_its_workflow_and_refuses_everything_else() {
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let secret = r.body["secret"].as_str().unwrap().to_string();
    assert_eq!(r.body["path"], format!("/hooks/{id}"));
    assert!(secret.starts_with("whsec_"));
    // The secret is shown once.
    let shown = api(
        &state,
        &key,
        "GET",
        &format!("/api/v1/webhooks/inbound/{id}"),
        None,
    )
    .await;
    assert_eq!(shown.status, StatusCode::OK);
    assert!(shown.body.get("secret").is_none(), "{}", shown.body);

    let body = r#"{"who": "hook"}"#;
    let ok = post_hook(&state, &id, &secret, "msg_1", now_s(), body, None).await;
    assert_eq!(ok.status, StatusCode::ACCEPTED, "{}", ok.body);
    let run = ok.body["run_id"].as_str().unwrap().to_string();
    let rec = finish(&state.control, &run).await;
    assert_eq!(rec["status"], "succeeded", "{rec}");
    assert_eq!(rec["inputs"]["who"], "hook");
    assert_eq!(rec["started_by"], format!("hook/{id}"));
    assert_eq!(run_count(&state, &key).await, 1);

    // Each refusal: a 4xx with the error body, audited, and no run.
    let wrong = signature::new_secret();
    let cases: Vec<(Reply, StatusCode, &str)> = vec![
        (
            post_hook(&state, &id, &wrong, "msg_2", now_s(), body, None).await,
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            post_hook(
                &state,
                &id,
                &secret,
                "msg_3",
                now_s(),
                body,
                Some("v1,AAAA"),
            )
            .await,
            StatusCode::UNAUTHORIZED,
            "does not match",
        ),
        (
            post_hook(&state, &id, &secret, "msg_4", now_s() - 301, body, None).await,
            StatusCode::UNAUTHORIZED,
            "in the past",
        ),
        (
            post_hook(&state, &id, &secret, "msg_5", now_s() + 301, body, None).await,
            StatusCode::UNAUTHORIZED,
            "in the future",
        ),
        (
            post_hook(&state, &id, &secret, "msg_1", now_s(), body, None).await,
            StatusCode::CONFLICT,
            "already received",
        ),
        (
            post_hook(&state, &id, &secret, "msg_6", now_s(), "[1, 2]", None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "JSON object",
        ),
        (
            post_hook(
                &state,
                &id,
                &secret,
                "msg_7",
                now_s(),
                r#"{"nope": 1}"#,
                None,
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
            "nope",
        ),
        (
            post_hook(
                &state,
                "wh_000000000000000000000000",
                &secret,
                "msg_8",
                now_s(),
                body,
                None,
            )
            .await,
            StatusCode::NOT_FOUND,
            "no inbound webhook",
        ),
        (
            post_hook(&state, "not-a-hook", &secret, "msg_9", now_s(), body, None).await,
            StatusCode::NOT_FOUND,
            "",
        ),
    ];
    for (i, (r, status, says)) in cases.iter().enumerate() {
        assert_eq!(r.status, *status, "case {i}: {}", r.body);
        let msg = r.body["error"]["message"].as_str().unwrap_or_default();
        assert!(msg.contains(says), "case {i}: {msg}");
        assert!(!msg.contains(&secret[6..]), "never the secret: {msg}");
    }
    // No headers at all.
    let bare = Request::builder()
        .method("POST")
        .uri(format!("/hooks/{id}"))
        .body(Body::from(body))
        .unwrap();
    let r = send(&state, bare).await;
    assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    assert_eq!(r.body["error"]["code"], "unauthenticated");

    assert_eq!(run_count(&state, &key).await, 1, "refusals start nothing");
    let audited = audit_actions(&state, &key).await;
    assert_eq!(audited.iter().filter(|(o, _)| o == "ok").count(), 1);
    // The unknown hooks are in `default`'s log too (the same tenant here).
    assert_eq!(
        audited.iter().filter(|(o, _)| o == "failed").count(),
        cases.len() + 1,
        "{audited:?}"
    );
    // A message refused for its body may be sent again once fixed (its id was not kept).
    let fixed = post_hook(&state, &id, &secret, "msg_6", now_s(), body, None).await;
    assert_eq!(fixed.status, StatusCode::ACCEPTED, "{}", fixed.body);
}

/// A hook with its secret, made over the API.
async fn create_hook(state: &AppState, key: &str) -> (String, String) {
    let r = api(
        state,
        key,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    (id, r.body["secret"].as_str().unwrap().to_string())
}

/// Each hook has a token bucket of its own at the keys' rate: past its burst, 429 with
/// Retry-After and no run; another hook, and the keys, are not held back by it.
#[tokio::test]
async fn each_inbound_hook_is_rate_limited_with_retry_after() {
    let state = test_state(Providers::default()).with_config(baton_server::ServerConfig {
        rate_limit: Some(2.0),
        ..Default::default()
    });
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let (a, a_secret) = create_hook(&state, &key).await;
    let (b, b_secret) = create_hook(&state, &key).await;
    let body = r#"{"who": "flood"}"#;
    let mut statuses = Vec::new();
    let mut limited = None;
    for n in 0..8 {
        let r = post_hook(
            &state,
            &a,
            &a_secret,
            &format!("msg_{n}"),
            now_s(),
            body,
            None,
        )
        .await;
        statuses.push(r.status);
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            limited = Some(r);
        }
    }
    let accepted = statuses
        .iter()
        .filter(|s| **s == StatusCode::ACCEPTED)
        .count();
    assert!((4..8).contains(&accepted), "{statuses:?}");
    let limited = limited.expect("no 429 past the hook's burst");
    assert_eq!(
        limited.body["error"]["code"], "rate_limited",
        "{}",
        limited.body
    );
    assert!(
        limited.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("this hook received more than 2 requests a second"),
        "{}",
        limited.body
    );
    // The other hook has its own bucket.
    let other = post_hook(&state, &b, &b_secret, "msg_b", now_s(), body, None).await;
    assert_eq!(other.status, StatusCode::ACCEPTED, "{}", other.body);
    // Only admitted requests started runs.
    let runs = run_count(&state, &key).await;
    assert_eq!(runs, accepted + 1);
    // The refusals are counted for /metrics.
    let counted = state.control.telemetry().snapshot();
    assert_eq!(
        counted.inbound.get("rate_limited").copied(),
        Some(8 - accepted as u64)
    );
}

/// The 429 answer of a hook over its rate carries Retry-After (in whole seconds).
#[tokio::test]
async fn a_rate_limited_hook_says_when_to_retry() {
    let state = test_state(Providers::default()).with_config(baton_server::ServerConfig {
        rate_limit: Some(1.0),
        ..Default::default()
    });
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let (id, _) = create_hook(&state, &key).await;
    let mut last = None;
    // No signature at all: the limit comes first, so a flood of junk is refused cheaply.
    for _ in 0..4 {
        let req = Request::builder()
            .method("POST")
            .uri(format!("/hooks/{id}"))
            .body(Body::from("{}"))
            .unwrap();
        let resp = app(state.clone()).oneshot(req).await.unwrap();
        last = Some((resp.status(), resp.headers().clone()));
    }
    let (status, headers) = last.unwrap();
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(headers["retry-after"], "1");
}

#[tokio::test]
async fn rotation_keeps_two_secrets_valid_until_the_old_one_expires() {
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo@1", "body_input": "who"})),
    )
    .await;
    let id = r.body["id"].as_str().unwrap().to_string();
    let first = r.body["secret"].as_str().unwrap().to_string();
    let uri = format!("/api/v1/webhooks/inbound/{id}/rotate");
    let r = api(
        &state,
        &key,
        "POST",
        &uri,
        Some(json!({"old_secret_valid_for": "1h"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let second = r.body["secret"].as_str().unwrap().to_string();
    assert_ne!(first, second);
    assert!(r.body["previous_secret_valid_until_ms"].as_i64().unwrap() > baton_store::now_ms());
    // `body_input`: the whole body is the one input (here a JSON string).
    for (n, s) in [(1, &first), (2, &second)] {
        let r = post_hook(&state, &id, s, &format!("m{n}"), now_s(), "\"both\"", None).await;
        assert_eq!(r.status, StatusCode::ACCEPTED, "secret {n}: {}", r.body);
        let rec = finish(&state.control, r.body["run_id"].as_str().unwrap()).await;
        assert_eq!(rec["inputs"]["who"], "both");
    }
    // Both secrets listed in one header (as a sender mid-rotation does) is fine too.
    let msg = "m3";
    let ts = now_s();
    let sig = format!(
        "{} {}",
        signature::sign(&signature::key_of(&first).unwrap(), msg, ts, b"\"x\""),
        signature::sign(&signature::key_of(&second).unwrap(), msg, ts, b"\"x\"")
    );
    let r = post_hook(&state, &id, &second, msg, ts, "\"x\"", Some(&sig)).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    // Rotating with no overlap: only the newest secret works.
    let r = api(
        &state,
        &key,
        "POST",
        &uri,
        Some(json!({"old_secret_valid_for": "0s"})),
    )
    .await;
    let third = r.body["secret"].as_str().unwrap().to_string();
    for s in [&first, &second] {
        let r = post_hook(&state, &id, s, "m4", now_s(), "\"x\"", None).await;
        assert_eq!(r.status, StatusCode::UNAUTHORIZED, "{}", r.body);
    }
    let r = post_hook(&state, &id, &third, "m4", now_s(), "\"x\"", None).await;
    assert_eq!(r.status, StatusCode::ACCEPTED, "{}", r.body);
    let bad = api(
        &state,
        &key,
        "POST",
        &uri,
        Some(json!({"old_secret_valid_for": "soon"})),
    )
    .await;
    assert_eq!(bad.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn hooks_and_subscriptions_belong_to_their_tenant_and_need_a_role() {
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let acme = api(
        &state,
        &key,
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "admin", "tenant": "acme"})),
    )
    .await
    .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let viewer = api(
        &state,
        &key,
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "viewer"})),
    )
    .await
    .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let runner = api(
        &state,
        &key,
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "runner"})),
    )
    .await
    .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let hook = api(
        &state,
        &key,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await
    .body;
    let id = hook["id"].as_str().unwrap();
    // acme has no workflow `echo`: its own hook to it is refused.
    let r = api(
        &state,
        &acme,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND, "{}", r.body);
    for (m, uri) in [
        ("GET", format!("/api/v1/webhooks/inbound/{id}")),
        ("DELETE", format!("/api/v1/webhooks/inbound/{id}")),
        ("POST", format!("/api/v1/webhooks/inbound/{id}/rotate")),
    ] {
        let r = api(&state, &acme, m, &uri, (m == "POST").then(|| json!({}))).await;
        assert_eq!(r.status, StatusCode::NOT_FOUND, "{m} {uri}: {}", r.body);
    }
    let listed = api(&state, &acme, "GET", "/api/v1/webhooks/inbound", None).await;
    assert_eq!(listed.body["hooks"], json!([]));
    // Roles: a viewer reads, only editors and admins write; a runner key reads nothing.
    let r = api(&state, &viewer, "GET", "/api/v1/webhooks/inbound", None).await;
    assert_eq!(r.body["hooks"].as_array().unwrap().len(), 1);
    let r = api(
        &state,
        &viewer,
        "POST",
        "/api/v1/webhooks/inbound",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    let r = api(
        &state,
        &runner,
        "GET",
        "/api/v1/webhooks/subscriptions",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::FORBIDDEN, "{}", r.body);
    // Bad requests name the field.
    for (body, field) in [
        (json!({"workflow": "no such"}), "name"),
        (
            json!({"workflow": "echo", "body_input": "a-b"}),
            "body_input",
        ),
        (json!({"workflow": "echo", "extra": 1}), "extra"),
    ] {
        let r = api(
            &state,
            &key,
            "POST",
            "/api/v1/webhooks/inbound",
            Some(body.clone()),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{body}: {}",
            r.body
        );
        assert!(r.body.to_string().contains(field), "{body}: {}", r.body);
    }
    // Deleted: gone, and its URL answers 404.
    let r = api(
        &state,
        &key,
        "DELETE",
        &format!("/api/v1/webhooks/inbound/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = post_hook(
        &state,
        id,
        hook["secret"].as_str().unwrap(),
        "m",
        now_s(),
        "{}",
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

#[tokio::test]
async fn subscriptions_refuse_private_targets_unless_allowed() {
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    for url in [
        "http://10.0.0.1/hook",
        "http://169.254.169.254/latest/meta-data/",
        "http://[::1]:9000/",
        "http://localhost:9000/",
        "http://api.localhost/",
        "http://192.168.0.10/",
        "http://[fe80::1]/",
        "http://[::ffff:127.0.0.1]/",
        "file:///etc/passwd",
        "https://user:pass@example.com/",
    ] {
        let r = api(
            &state,
            &key,
            "POST",
            "/api/v1/webhooks/subscriptions",
            Some(json!({"url": url, "events": ["run.succeeded"]})),
        )
        .await;
        assert_eq!(
            r.status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "{url}: {}",
            r.body
        );
        assert_eq!(
            r.body["error"]["details"]["field"], "url",
            "{url}: {}",
            r.body
        );
    }
    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/webhooks/subscriptions",
        Some(json!({"url": "https://example.com/h", "events": ["run.exploded"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("run.succeeded")
    );
    // A public name is accepted (never contacted in this test).
    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/webhooks/subscriptions",
        Some(json!({"url": "https://example.com/h", "events": ["run.failed"]})),
    )
    .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert!(r.body["secret"].as_str().unwrap().starts_with("whsec_"));
    let id = r.body["id"].as_str().unwrap();
    let listed = api(&state, &key, "GET", "/api/v1/webhooks/subscriptions", None).await;
    assert!(listed.body["subscriptions"][0].get("secret").is_none());
    let r = api(
        &state,
        &key,
        "DELETE",
        &format!("/api/v1/webhooks/subscriptions/{id}"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT);
    let r = api(
        &state,
        &key,
        "GET",
        &format!("/api/v1/webhooks/subscriptions/{id}/deliveries"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// What the receiver saw: each request's webhook-id, type, and whether its signature held.
type Seen = Arc<Mutex<Vec<(String, String, bool)>>>;

/// A receiver on a loopback port that checks signatures with `secret` (set once known) and
/// answers 500 to its first request.
async fn receiver(secret: Arc<Mutex<String>>) -> (SocketAddr, Seen) {
    let seen: Seen = Arc::default();
    let s2 = seen.clone();
    let handler = move |headers: HeaderMap, body: axum::body::Bytes| {
        let (seen, secret) = (s2.clone(), secret.clone());
        async move {
            let h = |n: &str| headers.get(n).unwrap().to_str().unwrap().to_string();
            let (id, ts, sig) = (
                h("webhook-id"),
                h("webhook-timestamp"),
                h("webhook-signature"),
            );
            let key = signature::key_of(&secret.lock().unwrap()).unwrap();
            let ok = signature::verify(&[key], &id, ts.parse().unwrap(), &body, &sig)
                && (now_s() - ts.parse::<i64>().unwrap()).abs() < 5;
            let v: Value = serde_json::from_slice(&body).unwrap();
            let mut seen = seen.lock().unwrap();
            seen.push((id, v["type"].as_str().unwrap().to_string(), ok));
            if seen.len() == 1 {
                StatusCode::INTERNAL_SERVER_ERROR
            } else {
                StatusCode::NO_CONTENT
            }
        }
    };
    let app = axum::Router::new().route("/hook", axum::routing::post(handler));
    let l = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = l.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(l, app).await.unwrap() });
    (addr, seen)
}

fn fast() -> DeliveryConfig {
    DeliveryConfig {
        poll: Duration::from_millis(20),
        first_retry: Duration::ZERO,
        timeout: Duration::from_secs(5),
        ..DeliveryConfig::default()
    }
}

fn loopback() -> AddressPolicy {
    AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()])
}

fn state_on(store: Arc<baton_store::memory::MemoryStore>, policy: AddressPolicy) -> AppState {
    let services = baton_engine::Services {
        store: store.clone(),
        models: Arc::new(Providers::default()),
        tools: Arc::new(baton_tools::Registry::with_builtins()),
    };
    let control = Control::new(services, store.clone()).with_webhooks(store, policy);
    AppState::new(control, Providers::default())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_events_are_delivered_signed_retried_and_recorded() {
    let state = state_on(Arc::default(), loopback());
    let key = key_for(&state).await;
    store_echo(&state, &key).await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (addr, seen) = receiver(secret.clone()).await;
    let r = api(&state, &key, "POST", "/api/v1/webhooks/subscriptions", Some(json!({"url": format!("http://{addr}/hook"), "events": ["run.succeeded", "step.succeeded"]}))).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let sub = r.body["id"].as_str().unwrap().to_string();
    *secret.lock().unwrap() = r.body["secret"].as_str().unwrap().to_string();

    let r = api(
        &state,
        &key,
        "POST",
        "/api/v1/runs",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    let run = r.body["id"].as_str().unwrap().to_string();
    finish(&state.control, &run).await;
    let worker = Deliverer::new(state.control.clone(), fast()).unwrap();
    // One tick sends everything due, the retry included (no wait before it here).
    let made = worker.tick().await.unwrap();
    assert_eq!(made, 3, "two events, the first sent twice");
    assert_eq!(worker.tick().await.unwrap(), 0, "nothing left");

    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 3, "{seen:?}");
    assert!(
        seen.iter().all(|(_, _, ok)| *ok),
        "every signature checks: {seen:?}"
    );
    let mut types: Vec<&str> = seen.iter().map(|(_, t, _)| t.as_str()).collect();
    types.sort_unstable();
    types.dedup();
    assert_eq!(types, ["run.succeeded", "step.succeeded"]);
    let first = &seen[0].0;
    assert_eq!(
        seen.iter().filter(|(id, _, _)| id == first).count(),
        2,
        "a retry keeps its webhook-id: {seen:?}"
    );

    let r = api(
        &state,
        &key,
        "GET",
        &format!("/api/v1/webhooks/subscriptions/{sub}/deliveries"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let ds = r.body["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 2, "{}", r.body);
    assert!(ds.iter().all(|d| d["status"] == "succeeded"), "{}", r.body);
    let retried = ds.iter().find(|d| d["id"] == first.as_str()).unwrap();
    let codes: Vec<&Value> = retried["attempts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| &a["status_code"])
        .collect();
    assert_eq!(codes, [&json!(500), &json!(204)], "{retried}");
    assert!(
        retried["attempts"][0]["error"]
            .as_str()
            .unwrap()
            .contains("500")
    );
    let step = ds
        .iter()
        .find(|d| d["event_type"] == "step.succeeded")
        .unwrap();
    assert_eq!(step["payload"]["type"], "step.succeeded");
    assert_eq!(step["payload"]["data"]["run_id"], run);
    assert_eq!(step["payload"]["data"]["workflow"], "echo");
    assert_eq!(step["payload"]["data"]["step"], "hello");
    let done = ds
        .iter()
        .find(|d| d["event_type"] == "run.succeeded")
        .unwrap();
    assert_eq!(done["payload"]["data"]["event"]["type"], "run_succeeded");
    // Another tenant does not see them.
    api(
        &state,
        &key,
        "POST",
        "/api/v1/tenants",
        Some(json!({"id": "acme"})),
    )
    .await;
    let acme = api(
        &state,
        &key,
        "POST",
        "/api/v1/keys",
        Some(json!({"role": "admin", "tenant": "acme"})),
    )
    .await
    .body["key"]
        .as_str()
        .unwrap()
        .to_string();
    let r = api(
        &state,
        &acme,
        "GET",
        &format!("/api/v1/webhooks/subscriptions/{sub}/deliveries"),
        None,
    )
    .await;
    assert_eq!(r.status, StatusCode::NOT_FOUND);
}

/// A subscription made where loopback was allowed, delivered by a process where it is not:
/// the address is checked again when sending, and nothing is sent.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn delivery_checks_the_address_again_and_refuses_for_good() {
    let store: Arc<baton_store::memory::MemoryStore> = Arc::default();
    let permissive = state_on(store.clone(), loopback());
    let strict = state_on(store, AddressPolicy::default());
    let key = key_for(&permissive).await;
    store_echo(&permissive, &key).await;
    let secret = Arc::new(Mutex::new(String::new()));
    let (addr, seen) = receiver(secret).await;
    for url in [
        format!("http://{addr}/hook"),
        format!("http://localhost:{}/hook", addr.port()),
    ] {
        let r = api(
            &permissive,
            &key,
            "POST",
            "/api/v1/webhooks/subscriptions",
            Some(json!({"url": url, "events": ["run.succeeded"]})),
        )
        .await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    }
    let r = api(
        &permissive,
        &key,
        "POST",
        "/api/v1/runs",
        Some(json!({"workflow": "echo"})),
    )
    .await;
    finish(&permissive.control, r.body["id"].as_str().unwrap()).await;
    let worker = Deliverer::new(strict.control.clone(), fast()).unwrap();
    assert_eq!(worker.tick().await.unwrap(), 2);
    assert_eq!(
        worker.tick().await.unwrap(),
        0,
        "refused for good: no retry"
    );
    assert!(
        seen.lock().unwrap().is_empty(),
        "nothing reached the receiver"
    );
    let subs = api(&strict, &key, "GET", "/api/v1/webhooks/subscriptions", None)
        .await
        .body;
    for s in subs["subscriptions"].as_array().unwrap() {
        let r = api(
            &strict,
            &key,
            "GET",
            &format!(
                "/api/v1/webhooks/subscriptions/{}/deliveries",
                s["id"].as_str().unwrap()
            ),
            None,
        )
        .await;
        let d = &r.body["deliveries"][0];
        assert_eq!(d["status"], "failed", "{d}");
        let e = d["attempts"][0]["error"].as_str().unwrap();
        assert!(e.contains("refused") && e.contains("loopback"), "{e}");
    }
}

/// Events logged by one process (a CLI run over SQLite, no server) are delivered by a
/// server that opens the database afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn deliveries_survive_the_process_that_logged_the_events() {
    use baton_store::sqlite::{Durability, SqliteStore};
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("baton.db");
    let control_on = |store: Arc<SqliteStore>| {
        let services = baton_engine::Services {
            store: store.clone(),
            models: Arc::new(Providers::default()),
            tools: Arc::new(baton_tools::Registry::with_builtins()),
        };
        Control::new(services, store.clone()).with_webhooks(store, loopback())
    };
    let secret = Arc::new(Mutex::new(String::new()));
    let (addr, seen) = receiver(secret.clone()).await;
    {
        // The "CLI": subscribes, runs in the foreground, exits. It sends nothing itself.
        let c = control_on(Arc::new(
            SqliteStore::open(&db, Durability::Process).unwrap(),
        ));
        let me = Caller::local();
        c.create_workflow(&me, "echo.yaml", ECHO).await.unwrap();
        let sub = c
            .create_subscription(
                &me,
                baton_control::webhooks::NewSubscription {
                    url: format!("http://{addr}/hook"),
                    events: vec!["run.succeeded".into()],
                    description: None,
                },
            )
            .await
            .unwrap();
        *secret.lock().unwrap() = sub.secret;
        let started = c
            .start_run(
                &me,
                baton_control::WorkflowSource::Stored("echo".parse().unwrap()),
                baton_control::RunRequest::default(),
            )
            .await
            .unwrap();
        let d = started.drive.unwrap();
        let st = c
            .executor(d.program)
            .drive(d.state, d.inputs)
            .await
            .unwrap();
        assert_eq!(st.status, baton_types::RunStatus::Succeeded);
    }
    let server = control_on(Arc::new(
        SqliteStore::open(&db, Durability::Process).unwrap(),
    ));
    let worker = Deliverer::new(server, fast()).unwrap();
    assert_eq!(
        worker.tick().await.unwrap(),
        2,
        "a failed attempt, then the retry"
    );
    let seen = seen.lock().unwrap().clone();
    assert_eq!(seen.len(), 2);
    assert!(
        seen.iter().all(|(_, t, ok)| *ok && t == "run.succeeded"),
        "{seen:?}"
    );
}
