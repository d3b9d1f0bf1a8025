//! The OWASP API Security Top 10 (2023), one or more named tests per entry, through the
//! router without a socket. Each refusal is checked for its status, the standard error body
//! and, for writes, that nothing changed. (The full role × route × tenant table is
//! `matrix.rs`.)

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_llm::Providers;
use baton_llm::scripted::{Reply, ScriptedModel};
use baton_server::{AppState, ServerConfig, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{key_for, test_state};

const ECHO: &str = "version: 1\nname: echo\ninputs:\n  who: { type: string, default: world }\nsteps:\n  - { id: hello, tool: echo, with: { text: \"hello {{ inputs.who }}\" } }\n";

struct Answer {
    status: StatusCode,
    headers: axum::http::HeaderMap,
    body: Value,
    text: String,
}

struct Srv {
    state: AppState,
    /// The operator: an admin key of tenant `default`.
    op: String,
}

impl Srv {
    async fn new() -> Self {
        Self::with(ServerConfig {
            rate_limit: None,
            ..Default::default()
        })
        .await
    }

    async fn with(config: ServerConfig) -> Self {
        Self::over(test_state(Providers::default()).with_config(config)).await
    }

    async fn over(state: AppState) -> Self {
        let op = key_for(&state).await;
        Self { state, op }
    }

    async fn raw(&self, req: Request<Body>) -> Answer {
        let resp = app(self.state.clone()).oneshot(req).await.unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let text = String::from_utf8_lossy(&bytes).to_string();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Answer {
            status,
            headers,
            body,
            text,
        }
    }

    async fn send(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        ct: &str,
        body: impl Into<Body>,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        self.raw(req.body(body.into()).unwrap()).await
    }

    async fn json(&self, key: &str, method: &str, uri: &str, body: Value) -> Answer {
        self.send(Some(key), method, uri, "application/json", body.to_string())
            .await
    }

    async fn get(&self, key: &str, uri: &str) -> Answer {
        self.send(Some(key), "GET", uri, "", Body::empty()).await
    }

    /// A key of `role` in `tenant` (made by the operator; the tenant is made when new).
    async fn key(&self, tenant: &str, role: &str) -> String {
        if tenant != "default" {
            let _ = self
                .json(&self.op, "POST", "/api/v1/tenants", json!({"id": tenant}))
                .await;
        }
        let a = self
            .json(
                &self.op,
                "POST",
                "/api/v1/keys",
                json!({"role": role, "tenant": tenant}),
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
        a.body["key"].as_str().unwrap().to_string()
    }

    async fn store_echo(&self, key: &str) {
        let a = self
            .send(
                Some(key),
                "POST",
                "/api/v1/workflows",
                "application/yaml",
                ECHO,
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }
}

/// The standard error body with a non-empty message and the expected status.
#[track_caller]
fn refused(a: &Answer, status: StatusCode) {
    assert_eq!(a.status, status, "{}", a.text);
    let e = &a.body["error"];
    assert!(
        e["code"].is_string()
            && e["message"].as_str().is_some_and(|m| !m.is_empty())
            && e.as_object().is_some_and(|o| o.contains_key("details")),
        "not the standard error body: {}",
        a.text
    );
    assert!(
        a.headers.contains_key("x-request-id"),
        "no request id on {}",
        a.text
    );
    no_internals(&a.text);
}

/// No stack trace, source path or panic text in an answer.
#[track_caller]
fn no_internals(text: &str) {
    for bad in [
        "panicked",
        "backtrace",
        ".rs:",
        "/src/",
        "/root/",
        "/home/",
        "/work/",
        "RUST_",
        "thread '",
    ] {
        assert!(!text.contains(bad), "an answer shows {bad:?}: {text}");
    }
}

// API1:2023 Broken Object Level Authorization.
#[tokio::test]
async fn api1_bola_another_tenants_ids_and_prefixes_are_not_found() {
    let s = Srv::new().await;
    let (a_ed, b_ed) = (
        s.key("acme", "editor").await,
        s.key("globex", "editor").await,
    );
    s.store_echo(&b_ed).await;
    let run = s
        .json(&b_ed, "POST", "/api/v1/runs", json!({"workflow": "echo"}))
        .await;
    let run_id = run.body["id"].as_str().unwrap().to_string();
    let hook = s
        .json(
            &b_ed,
            "POST",
            "/api/v1/webhooks/inbound",
            json!({"workflow": "echo"}),
        )
        .await;
    let hook_id = hook.body["id"].as_str().unwrap().to_string();
    let b_admin = s.key("globex", "admin").await;
    let b_keys = s.get(&b_admin, "/api/v1/keys").await;
    let b_key_id = b_keys.body["keys"][0]["id"].as_str().unwrap().to_string();
    let before = s.get(&b_admin, "/api/v1/runs").await.text;

    let a_admin = s.key("acme", "admin").await;
    for (key, m, uri) in [
        (&a_ed, "GET", format!("/api/v1/runs/{run_id}")),
        // A guessed prefix is looked up in the caller's tenant only.
        (&a_ed, "GET", format!("/api/v1/runs/{}", &run_id[..8])),
        (&a_ed, "GET", format!("/api/v1/runs/{run_id}/events")),
        (&a_ed, "POST", format!("/api/v1/runs/{run_id}/cancel")),
        (
            &a_ed,
            "POST",
            format!("/api/v1/runs/{run_id}/agents/coder/pause"),
        ),
        (&a_ed, "GET", "/api/v1/workflows/echo".to_string()),
        (&a_ed, "DELETE", "/api/v1/workflows/echo".to_string()),
        (&a_ed, "GET", format!("/api/v1/webhooks/inbound/{hook_id}")),
        (
            &a_ed,
            "DELETE",
            format!("/api/v1/webhooks/inbound/{hook_id}"),
        ),
        (&a_admin, "DELETE", format!("/api/v1/keys/{b_key_id}")),
    ] {
        let a = s.json(key, m, &uri, json!({})).await;
        refused(&a, StatusCode::NOT_FOUND);
    }
    // Forking or editing another tenant's run, however well asked: not there.
    for (route, body) in [
        ("fork", json!({"at": 1})),
        ("fork", json!({"before": "x", "set": {"state.k": 1}})),
        ("edit", json!({"set": {"state.k": 1}})),
    ] {
        let uri = format!("/api/v1/runs/{run_id}/{route}");
        let a = s.json(&a_ed, "POST", &uri, body).await;
        refused(&a, StatusCode::NOT_FOUND);
    }
    // Starting another tenant's workflow by name: not there.
    let a = s
        .json(&a_ed, "POST", "/api/v1/runs", json!({"workflow": "echo"}))
        .await;
    refused(&a, StatusCode::NOT_FOUND);
    assert_eq!(s.get(&b_admin, "/api/v1/runs").await.text, before);
    assert_eq!(
        s.get(&b_ed, "/api/v1/workflows/echo").await.status,
        StatusCode::OK
    );
    assert_eq!(s.get(&b_admin, "/api/v1/runs").await.status, StatusCode::OK);
}

// API2:2023 Broken Authentication.
#[tokio::test]
async fn api2_broken_authentication_malformed_expired_revoked_and_query_keys() {
    let s = Srv::new().await;
    let good = s.key("acme", "viewer").await;
    let long = "x".repeat(10_000);
    let mut tampered = good.clone();
    let last = tampered.pop().unwrap();
    tampered.push(if last == 'a' { 'b' } else { 'a' });
    for header in [
        String::new(),
        "Bearer".to_string(),
        "Bearer ".to_string(),
        "Bearer bk_".to_string(),
        "Bearer bk___".to_string(),
        format!("Bearer {long}"),
        "Bearer bk_\u{202e}abc_def".to_string(),
        format!("Bearer {tampered}"),
        format!("Basic {good}"),
        format!("Token {good}"),
        format!("Bearer {good}x"),
    ] {
        let req = Request::get("/api/v1/runs")
            .header("authorization", header.as_bytes())
            .body(Body::empty())
            .unwrap();
        let a = s.raw(req).await;
        refused(&a, StatusCode::UNAUTHORIZED);
        assert!(
            !a.text.contains(&good[good.len() - 20..]),
            "the answer echoes the key: {}",
            a.text
        );
    }
    // A key in the query string is never accepted (it would end up in access logs).
    for q in ["api_key", "key", "access_token", "token", "apikey"] {
        let a = s
            .send(
                None,
                "GET",
                &format!("/api/v1/runs?{q}={good}"),
                "",
                Body::empty(),
            )
            .await;
        refused(&a, StatusCode::UNAUTHORIZED);
    }
    // Revoked: refused at once.
    let id = good.split('_').nth(1).unwrap();
    let admin = s.key("acme", "admin").await;
    let r = s
        .json(&admin, "DELETE", &format!("/api/v1/keys/{id}"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    refused(
        &s.get(&good, "/api/v1/runs").await,
        StatusCode::UNAUTHORIZED,
    );
    // Expired: a key made to expire in 5 ms, used after.
    let at = baton_store::now_ms() + 5;
    let expiring = s
        .state
        .control
        .create_key(
            &baton_control::Caller::local(),
            baton_control::NewKey {
                tenant: None,
                role: baton_types::Role::Admin,
                name: None,
                expires_at_ms: Some(at),
            },
        )
        .await
        .unwrap()
        .key;
    while baton_store::now_ms() <= at {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    refused(
        &s.get(&expiring, "/api/v1/runs").await,
        StatusCode::UNAUTHORIZED,
    );
    // An expiry that is not a duration is refused when the key is made.
    let a = s
        .json(
            &admin,
            "POST",
            "/api/v1/keys",
            json!({"role": "viewer", "expires_in": "forever"}),
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.text);
    refused(&a, a.status);
    // Failed authentications are in the audit log, without the key.
    let audit = s.get(&s.op, "/api/v1/audit?limit=1000").await;
    assert_eq!(audit.status, StatusCode::OK);
    assert!(
        audit.text.contains("failed") || audit.text.contains("denied"),
        "{}",
        audit.text
    );
    assert!(!audit.text.contains(&good), "the audit log holds a key");
}

// API3:2023 Broken Object Property Level Authorization.
#[tokio::test]
async fn api3_bopla_unknown_fields_refused_and_no_hash_or_secret_shown() {
    let s = Srv::new().await;
    let admin = s.key("acme", "admin").await;
    s.store_echo(&admin).await;
    for (uri, body) in [
        (
            "/api/v1/runs",
            json!({"workflow": "echo", "tenant": "default"}),
        ),
        (
            "/api/v1/runs",
            json!({"workflow": "echo", "started_by": "someone"}),
        ),
        ("/api/v1/keys", json!({"role": "viewer", "id": "chosen"})),
        ("/api/v1/keys", json!({"role": "viewer", "hash": "00"})),
        ("/api/v1/keys", json!({"role": "root"})),
        (
            "/api/v1/webhooks/inbound",
            json!({"workflow": "echo", "secret": "whsec_mine"}),
        ),
        (
            "/api/v1/webhooks/subscriptions",
            json!({"url": "https://hooks.example.com/x", "events": ["run.failed"], "secret": "whsec_mine"}),
        ),
    ] {
        let before = s.get(&admin, "/api/v1/keys").await.text;
        let a = s.json(&admin, "POST", uri, body.clone()).await;
        assert!(a.status.is_client_error(), "{uri} {body}: {}", a.text);
        refused(&a, a.status);
        assert_eq!(s.get(&admin, "/api/v1/keys").await.text, before);
    }
    assert_eq!(
        s.get(&admin, "/api/v1/runs").await.body["runs"]
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let made = s
        .json(&admin, "POST", "/api/v1/keys", json!({"role": "viewer"}))
        .await;
    let secret = made.body["key"].as_str().unwrap().to_string();
    let hook = s
        .json(
            &admin,
            "POST",
            "/api/v1/webhooks/inbound",
            json!({"workflow": "echo"}),
        )
        .await;
    let hook_secret = hook.body["secret"].as_str().unwrap().to_string();
    let hook_id = hook.body["id"].as_str().unwrap().to_string();
    let sub = s
        .json(
            &admin,
            "POST",
            "/api/v1/webhooks/subscriptions",
            json!({"url": "https://hooks.example.com/x", "events": ["run.failed"]}),
        )
        .await;
    let sub_secret = sub.body["secret"].as_str().unwrap().to_string();
    let sub_id = sub.body["id"].as_str().unwrap().to_string();
    assert!(hook_secret.starts_with("whsec_") && sub_secret.starts_with("whsec_"));
    let key_secret_part = secret.rsplit('_').next().unwrap().to_string();
    for uri in [
        "/api/v1/keys".to_string(),
        "/api/v1/webhooks/inbound".to_string(),
        format!("/api/v1/webhooks/inbound/{hook_id}"),
        "/api/v1/webhooks/subscriptions".to_string(),
        format!("/api/v1/webhooks/subscriptions/{sub_id}"),
        format!("/api/v1/webhooks/subscriptions/{sub_id}/deliveries"),
        "/api/v1/audit?limit=1000".to_string(),
    ] {
        let a = s.get(&admin, &uri).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}: {}", a.text);
        for bad in [&key_secret_part, &hook_secret, &sub_secret] {
            assert!(!a.text.contains(bad.as_str()), "{uri} shows a secret");
        }
        // (The audit log's own hash chain is public to its admin; a key's hash never is.)
        if !uri.starts_with("/api/v1/audit") {
            assert!(
                !a.text.contains("\"hash\""),
                "{uri} shows a hash: {}",
                a.text
            );
        }
        assert!(
            !a.text.contains("whsec_"),
            "{uri} shows a secret: {}",
            a.text
        );
    }
}

// API4:2023 Unrestricted Resource Consumption.
#[tokio::test]
async fn api4_body_limit_and_rate_limit() {
    let s = Srv::with(ServerConfig {
        body_limit: 4096,
        rate_limit: Some(2.0),
        ..Default::default()
    })
    .await;
    let big = json!({"workflow": "echo", "inputs": {"who": "x".repeat(10_000)}});
    let a = s.json(&s.op, "POST", "/api/v1/runs", big).await;
    refused(&a, StatusCode::PAYLOAD_TOO_LARGE);
    assert_eq!(a.body["error"]["code"], "payload_too_large");
    // Also when the body comes without a length (chunked).
    let chunks = futures::stream::iter(
        (0..10).map(|_| Ok::<_, std::io::Error>(axum::body::Bytes::from(vec![b' '; 1000]))),
    );
    let req = Request::post("/api/v1/runs")
        .header("authorization", format!("Bearer {}", s.op))
        .header("content-type", "application/json")
        .body(Body::from_stream(chunks))
        .unwrap();
    refused(&s.raw(req).await, StatusCode::PAYLOAD_TOO_LARGE);
    // The rate: a burst of twice the rate, then 429 with Retry-After.
    let k = s.key("default", "viewer").await;
    let mut statuses = Vec::new();
    for _ in 0..6 {
        statuses.push(s.get(&k, "/api/v1/runs").await);
    }
    let limited = statuses
        .iter()
        .find(|a| a.status == StatusCode::TOO_MANY_REQUESTS)
        .expect("no 429 after a burst over the rate");
    refused(limited, StatusCode::TOO_MANY_REQUESTS);
    assert_eq!(limited.body["error"]["code"], "rate_limited");
    assert!(limited.headers.contains_key("retry-after"));
}

#[tokio::test]
async fn api4_huge_limits_deep_nesting_and_odd_ids_are_4xx() {
    let s = Srv::new().await;
    s.store_echo(&s.op).await;
    // Page sizes: capped, or refused when they do not fit; never a 5xx.
    for q in [
        "/api/v1/runs?limit=4294967295",
        "/api/v1/runs?limit=99999999999999999999",
        "/api/v1/runs?limit=-1",
        "/api/v1/audit?limit=4294967295",
        "/api/v1/audit?limit=99999999999999999999",
        "/api/v1/webhooks/subscriptions/sub_x/deliveries?limit=99999999999999999999",
    ] {
        let a = s.get(&s.op, q).await;
        assert!(
            a.status == StatusCode::OK || a.status.is_client_error(),
            "{q}: {}",
            a.text
        );
        if a.status != StatusCode::OK {
            refused(&a, a.status);
        }
    }
    let r = s
        .json(&s.op, "POST", "/api/v1/runs", json!({"workflow": "echo"}))
        .await;
    let run_id = r.body["id"].as_str().unwrap().to_string();
    let a = s
        .get(
            &s.op,
            &format!("/api/v1/runs/{run_id}/events?limit=18446744073709551615"),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);

    // 10,000 nested arrays in the inputs, in a JSON workflow, in YAML: 4xx, no stack overflow.
    let deep = format!("{}{}", "[".repeat(10_000), "]".repeat(10_000));
    let body = format!("{{\"workflow\": \"echo\", \"inputs\": {{\"who\": {deep}}}}}");
    let a = s
        .send(
            Some(&s.op),
            "POST",
            "/api/v1/runs",
            "application/json",
            body,
        )
        .await;
    refused(&a, a.status);
    assert!(a.status.is_client_error());
    let doc = format!(
        "{{\"version\": 1, \"name\": \"deep\", \"steps\": [{{\"id\": \"a\", \"tool\": \"echo\", \"with\": {{\"text\": {deep}}}}}]}}"
    );
    // Validation answers 200 with the diagnostics: not valid, nothing stored.
    let a = s
        .send(
            Some(&s.op),
            "POST",
            "/api/v1/workflows/validate",
            "application/json",
            doc.clone(),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.text);
    assert_eq!(a.body["valid"], false, "{}", a.text);
    for (uri, ct) in [
        ("/api/v1/workflows", "application/json"),
        ("/api/v1/workflows", "application/yaml"),
    ] {
        let a = s.send(Some(&s.op), "POST", uri, ct, doc.clone()).await;
        assert!(a.status.is_client_error(), "{uri} {ct}: {}", a.status);
        refused(&a, a.status);
    }
    let yaml_deep = format!(
        "version: 1\nname: deep\nsteps:\n  - id: a\n    tool: echo\n    with: {{ text: {deep} }}\n"
    );
    let a = s
        .send(
            Some(&s.op),
            "POST",
            "/api/v1/workflows",
            "application/yaml",
            yaml_deep,
        )
        .await;
    assert!(a.status.is_client_error(), "{}", a.status);
    refused(&a, a.status);
    let source = json!({"source": format!("{{\"version\": 1, \"name\": \"d\", \"steps\": [{{\"id\": \"a\", \"tool\": \"echo\", \"with\": {{\"text\": {deep}}}}}]}}")});
    let a = s.json(&s.op, "POST", "/api/v1/runs", source).await;
    assert!(a.status.is_client_error(), "{}", a.status);
    refused(&a, a.status);

    // Odd ids: control characters, bidi overrides, emoji, path tricks, invalid UTF-8, very long.
    let long = "a".repeat(10_000);
    for id in [
        "%00",
        "%E2%80%AE%E2%80%AD",
        "%F0%9F%92%A9",
        "..%2F..%2Fetc%2Fpasswd",
        "%FF%FE",
        "%0D%0Ax-injected:%201",
        long.as_str(),
        "'%20OR%201=1--",
    ] {
        for base in [
            "/api/v1/runs/",
            "/api/v1/workflows/",
            "/api/v1/webhooks/inbound/",
            "/api/v1/webhooks/subscriptions/",
        ] {
            let a = s.get(&s.op, &format!("{base}{id}")).await;
            assert!(
                a.status.is_client_error(),
                "{base}{}: {}",
                &id[..id.len().min(40)],
                a.status
            );
            refused(&a, a.status);
            assert!(!a.headers.contains_key("x-injected"));
        }
        let a = s
            .json(&s.op, "DELETE", &format!("/api/v1/keys/{id}"), json!({}))
            .await;
        assert!(a.status.is_client_error(), "{}", a.status);
        refused(&a, a.status);
    }
    // Odd unicode in values is kept as sent, not refused or mangled.
    let odd = "\u{202e}\u{0}ẞ\u{1F4A9}\u{FEFF}";
    let r = s
        .json(
            &s.op,
            "POST",
            "/api/v1/runs",
            json!({"workflow": "echo", "inputs": {"who": odd}}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap();
    let d = s.get(&s.op, &format!("/api/v1/runs/{id}")).await;
    assert_eq!(d.body["run"]["inputs"]["who"], odd, "{}", d.text);
}

// API5:2023 Broken Function Level Authorization.
#[tokio::test]
async fn api5_bfla_roles_cannot_reach_functions_above_them() {
    let s = Srv::new().await;
    let admin = s.key("acme", "admin").await;
    let editor = s.key("acme", "editor").await;
    let runner = s.key("acme", "runner").await;
    let viewer = s.key("acme", "viewer").await;
    s.store_echo(&editor).await;
    let keys_before = s.get(&admin, "/api/v1/keys").await.text;
    let tenants_before = s.get(&s.op, "/api/v1/tenants").await.text;
    for (key, m, uri, body, status) in [
        (
            &viewer,
            "POST",
            "/api/v1/runs",
            json!({"workflow": "echo"}),
            403,
        ),
        (
            &viewer,
            "POST",
            "/api/v1/keys",
            json!({"role": "admin"}),
            403,
        ),
        (
            &runner,
            "POST",
            "/api/v1/keys",
            json!({"role": "admin"}),
            403,
        ),
        (
            &editor,
            "POST",
            "/api/v1/keys",
            json!({"role": "admin"}),
            403,
        ),
        (&editor, "GET", "/api/v1/audit", json!({}), 403),
        (&editor, "GET", "/api/v1/keys", json!({}), 403),
        (&runner, "DELETE", "/api/v1/workflows/echo", json!({}), 403),
        (
            &runner,
            "POST",
            "/api/v1/webhooks/inbound",
            json!({"workflow": "echo"}),
            403,
        ),
        (
            &runner,
            "GET",
            "/api/v1/webhooks/subscriptions",
            json!({}),
            403,
        ),
        // A tenant's admin is not the operator.
        (
            &admin,
            "POST",
            "/api/v1/tenants",
            json!({"id": "mine"}),
            403,
        ),
        // ... and may not make keys in another tenant (which is not there for it).
        (
            &admin,
            "POST",
            "/api/v1/keys",
            json!({"role": "admin", "tenant": "default"}),
            404,
        ),
    ] {
        let a = s.json(key, m, uri, body).await;
        refused(&a, StatusCode::from_u16(status).unwrap());
    }
    assert_eq!(s.get(&admin, "/api/v1/keys").await.text, keys_before);
    assert_eq!(s.get(&s.op, "/api/v1/tenants").await.text, tenants_before);
    assert_eq!(
        s.get(&editor, "/api/v1/workflows/echo").await.status,
        StatusCode::OK
    );
    // Denials are audited.
    let audit = s.get(&admin, "/api/v1/audit?limit=1000").await;
    assert!(audit.text.contains("denied"), "{}", audit.text);
}

// API6:2023 Unrestricted Access to Sensitive Business Flows.
#[tokio::test]
async fn api6_idempotency_key_reuse_never_starts_twice_or_another_run() {
    let s = Srv::new().await;
    let a_key = s.key("acme", "runner").await;
    let a_ed = s.key("acme", "editor").await;
    s.store_echo(&a_ed).await;
    let start = |key: String, idem: String, who: &'static str| {
        let s = &s;
        async move {
            let req = Request::post("/api/v1/runs")
                .header("authorization", format!("Bearer {key}"))
                .header("content-type", "application/json")
                .header("idempotency-key", idem)
                .body(Body::from(
                    json!({"workflow": "echo", "inputs": {"who": who}}).to_string(),
                ))
                .unwrap();
            s.raw(req).await
        }
    };
    let first = start(a_key.clone(), "order-1".into(), "ann").await;
    assert_eq!(first.status, StatusCode::CREATED, "{}", first.text);
    let again = start(a_key.clone(), "order-1".into(), "ann").await;
    assert_eq!(again.status, StatusCode::OK, "{}", again.text);
    assert_eq!(again.body["id"], first.body["id"]);
    assert_eq!(again.body["reused"], true);
    // The same key with another request: a conflict, not a second run or the first one.
    let other = start(a_key.clone(), "order-1".into(), "bob").await;
    refused(&other, StatusCode::CONFLICT);
    // Keys are the tenant's: another tenant's same key starts its own run.
    let b_ed = s.key("globex", "editor").await;
    s.store_echo(&b_ed).await;
    let b = start(b_ed, "order-1".into(), "ann").await;
    assert_eq!(b.status, StatusCode::CREATED, "{}", b.text);
    assert_ne!(b.body["id"], first.body["id"]);
    for bad in [String::new(), "x".repeat(256), "é".into()] {
        let a = start(a_key.clone(), bad, "ann").await;
        refused(&a, StatusCode::BAD_REQUEST);
    }
    let runs = s.get(&a_ed, "/api/v1/runs").await;
    assert_eq!(
        runs.body["runs"].as_array().unwrap().len(),
        1,
        "{}",
        runs.text
    );
}

// API7:2023 Server Side Request Forgery.
#[tokio::test]
async fn api7_ssrf_webhook_targets_are_refused() {
    let s = Srv::new().await;
    for url in [
        "http://127.0.0.1/x",
        "http://127.1/x",
        "http://localhost:8787/x",
        "http://api.localhost/x",
        "http://[::1]/x",
        "http://[::ffff:127.0.0.1]/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/",
        "http://100.100.100.200/",
        "http://168.63.129.16/",
        "http://10.0.0.1/",
        "http://192.168.1.1/",
        "http://172.16.0.1/",
        "http://0.0.0.0/",
        "http://2130706433/",
        "http://0x7f000001/",
        "file:///etc/passwd",
        "gopher://127.0.0.1:25/",
        "ftp://hooks.example.com/",
        "http://user:pass@127.0.0.1/",
        "not a url",
    ] {
        let a = s
            .json(
                &s.op,
                "POST",
                "/api/v1/webhooks/subscriptions",
                json!({"url": url, "events": ["run.failed"]}),
            )
            .await;
        assert!(a.status.is_client_error(), "{url} was accepted: {}", a.text);
        refused(&a, a.status);
    }
    let list = s.get(&s.op, "/api/v1/webhooks/subscriptions").await;
    assert_eq!(
        list.body["subscriptions"].as_array().map(Vec::len),
        Some(0),
        "{}",
        list.text
    );
}

// API8:2023 Security Misconfiguration.
#[tokio::test]
async fn api8_cors_off_request_ids_and_no_internals_in_errors() {
    let s = Srv::new().await;
    // CORS is off by default: no preflight answer allows an origin.
    let pre = Request::builder()
        .method("OPTIONS")
        .uri("/api/v1/runs")
        .header("origin", "https://evil.example")
        .header("access-control-request-method", "POST")
        .header("access-control-request-headers", "authorization")
        .body(Body::empty())
        .unwrap();
    let a = s.raw(pre).await;
    assert!(
        !a.headers.contains_key("access-control-allow-origin"),
        "{:?}",
        a.headers
    );
    let req = Request::get("/api/v1/runs")
        .header("origin", "https://evil.example")
        .header("authorization", format!("Bearer {}", s.op))
        .body(Body::empty())
        .unwrap();
    let a = s.raw(req).await;
    assert_eq!(a.status, StatusCode::OK);
    assert!(!a.headers.contains_key("access-control-allow-origin"));
    assert!(!a.headers.contains_key("access-control-allow-credentials"));

    // Every kind of refusal: the error body, a request id, nothing internal.
    let cases: Vec<(&str, &str, &str, String, u16)> = vec![
        ("GET", "/api/v1/nothing/here", "", String::new(), 404),
        ("POST", "/nothing/here", "", String::new(), 404),
        ("PATCH", "/api/v1/runs", "", String::new(), 405),
        (
            "POST",
            "/api/v1/runs",
            "application/json",
            "{oops".into(),
            400,
        ),
        ("POST", "/api/v1/runs", "text/plain", "{}".into(), 415),
        (
            "POST",
            "/api/v1/runs",
            "application/json",
            "[1]".into(),
            422,
        ),
        (
            "POST",
            "/api/v1/runs",
            "application/json",
            r#"{"workflow": "nope"}"#.into(),
            404,
        ),
        ("GET", "/api/v1/runs?limit=abc", "", String::new(), 400),
        (
            "POST",
            "/api/v1/workflows",
            "application/yaml",
            "version: [".into(),
            422,
        ),
    ];
    for (m, uri, ct, body, status) in cases {
        let a = s.send(Some(&s.op), m, uri, ct, body).await;
        refused(&a, StatusCode::from_u16(status).unwrap());
    }
    // The client's request id is kept and echoed.
    let req = Request::get("/nothing")
        .header("x-request-id", "trace-me-42")
        .body(Body::empty())
        .unwrap();
    let a = s.raw(req).await;
    assert_eq!(a.headers["x-request-id"], "trace-me-42");
    // The metrics page labels by route template, never by id or key secret.
    let m = s.send(None, "GET", "/metrics", "", Body::empty()).await;
    assert!(!m.text.contains(&s.op), "the metrics show a key");
}

// API9:2023 Improper Inventory Management.
#[tokio::test]
async fn api9_every_answering_route_is_documented() {
    let s = Srv::new().await;
    let doc = s
        .send(None, "GET", "/api/v1/openapi.json", "", Body::empty())
        .await;
    assert_eq!(doc.status, StatusCode::OK);
    assert_eq!(doc.body["openapi"].as_str().map(|v| &v[..3]), Some("3.1"));
    let paths = doc.body["paths"].as_object().unwrap();
    for (path, item) in paths {
        assert!(path.starts_with("/api/v1/"), "{path}");
        // Every `{param}` of the path is declared as a path parameter of each operation
        // (a client generator, or schemathesis, cannot call it otherwise).
        let names: Vec<&str> = path
            .split('/')
            .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'))
            .collect();
        for (method, op) in item.as_object().unwrap() {
            for n in &names {
                let declared = op["parameters"].as_array().is_some_and(|ps| {
                    ps.iter()
                        .any(|p| p["in"] == "path" && p["name"] == *n && p["required"] == true)
                });
                assert!(declared, "{method} {path}: path parameter {n} not declared");
            }
        }
        // A method the document does not list is 405 on a documented path.
        let documented: Vec<&String> = item.as_object().unwrap().keys().collect();
        let uri = path
            .replace("{id}", "x")
            .replace("{name}", "x")
            .replace("{step}", "x");
        for m in ["GET", "POST", "PUT", "DELETE", "PATCH"] {
            if documented.iter().any(|d| d.eq_ignore_ascii_case(m)) {
                continue;
            }
            let a = s.send(Some(&s.op), m, &uri, "", Body::empty()).await;
            assert_eq!(
                a.status,
                StatusCode::METHOD_NOT_ALLOWED,
                "{m} {path} answers without being documented: {}",
                a.text
            );
        }
    }
    // Nothing undocumented answers but the documented exceptions.
    for uri in [
        "/api/v1/admin",
        "/api/v1/debug",
        "/api/v1/internal",
        "/api/v1/config",
        "/api/v1/users",
        "/api/v1/openapi.yaml",
        "/api/v2/runs",
        "/api/runs",
        "/v0/runs",
        "/.env",
        "/.git/config",
        "/assets/missing-1.js",
    ] {
        for m in ["GET", "POST"] {
            let a = s.send(Some(&s.op), m, uri, "", Body::empty()).await;
            refused(&a, StatusCode::NOT_FOUND);
            assert_eq!(a.body["error"]["code"], "not_found");
        }
    }
    // Other paths are the web app's own routes (`/runs/<id>`...): a GET answers its page (or,
    // in a binary built without it, a page saying how to build it), never anything internal;
    // any other method is the API's 404.
    for uri in ["/debug/pprof", "/swagger", "/graphql", "/runs/x"] {
        let a = s.send(None, "GET", uri, "", Body::empty()).await;
        assert_eq!(a.status, StatusCode::OK, "{uri}");
        assert!(a.text.starts_with("<!doctype html>"), "{uri}: {}", a.text);
        // Only this origin's scripts, never framed, never sniffed.
        let csp = a.headers["content-security-policy"].to_str().unwrap();
        assert!(csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"));
        assert_eq!(a.headers["x-content-type-options"], "nosniff");
        assert!(
            !a.text.contains("pprof") && !a.text.contains(&s.op),
            "{uri}"
        );
        let a = s.send(Some(&s.op), "POST", uri, "", Body::empty()).await;
        refused(&a, StatusCode::NOT_FOUND);
    }
    for (m, uri) in [
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/api/v1/docs"),
        ("GET", "/v1/models"),
    ] {
        let a = s.send(Some(&s.op), m, uri, "", Body::empty()).await;
        assert_eq!(a.status, StatusCode::OK, "{m} {uri}");
    }
    let a = s
        .send(None, "POST", "/hooks/wh_none", "application/json", "{}")
        .await;
    refused(&a, StatusCode::NOT_FOUND);
}

// API10:2023 Unsafe Consumption of APIs: what upstream model providers answer is mapped to
// the documented statuses and never passed through raw.
#[tokio::test]
async fn api10_upstream_model_errors_are_mapped_without_leaking() {
    let cases = [
        ("rate_limit", 429, "rate_limited"),
        ("auth", 502, "upstream_auth"),
        ("transient", 503, "upstream_unavailable"),
        ("timeout", 504, "timeout"),
        ("invalid_response", 502, "invalid_model_response"),
        ("context_length", 400, "context_length_exceeded"),
        ("provider", 502, "upstream_error"),
    ];
    for (kind, status, code) in cases {
        let providers = Providers::default();
        providers.scripted.insert(
            "bot",
            Arc::new(
                ScriptedModel::new("bot", vec![Reply::error(kind, "upstream said no")]).unwrap(),
            ),
        );
        let s = Srv::over(test_state(providers)).await;
        let a = s
            .json(
                &s.op,
                "POST",
                "/v1/chat/completions",
                json!({"model": "scripted/bot", "messages": [{"role": "user", "content": "hi"}]}),
            )
            .await;
        refused(&a, StatusCode::from_u16(status).unwrap());
        assert_eq!(a.body["error"]["code"], code, "{kind}: {}", a.text);
        // An upstream refusing Baton's credentials is not the client's 401.
        assert_ne!(a.status, StatusCode::UNAUTHORIZED);
        assert!(!a.text.contains(&s.op));
    }
}
