//! `/api/v1` through the router (no socket), and run events over a real loopback socket.

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_llm::Providers;
use baton_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{key_for, serve_loopback, test_state};

const ECHO: &str = "version: 1\nname: echo\ninputs:\n  who: { type: string, default: world }\nsteps:\n  - { id: hello, tool: echo, with: { text: \"hello {{ inputs.who }}\" } }\n";

const ASK: &str = "version: 1\nname: ask\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n  - id: ok\n    human: { prompt: Ship it? }\n  - { id: last, tool: echo, with: { text: shipped } }\n";

struct Api {
    state: AppState,
    key: String,
}

struct Answer {
    status: StatusCode,
    body: Value,
    request_id: Option<String>,
}

impl Api {
    async fn new() -> Self {
        let state = test_state(Providers::default());
        let key = key_for(&state).await;
        Self { state, key }
    }

    async fn send(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        ct: &str,
        body: Body,
    ) -> Answer {
        let mut req = Request::builder().method(method).uri(uri);
        if let Some(k) = key {
            req = req.header("authorization", format!("Bearer {k}"));
        }
        if !ct.is_empty() {
            req = req.header("content-type", ct);
        }
        let resp = app(self.state.clone())
            .oneshot(req.body(body).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let request_id = resp
            .headers()
            .get("x-request-id")
            .map(|v| v.to_str().unwrap().to_string());
        let bytes = resp.into_body().collect().await.unwrap().to_bytes();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into()))
        };
        Answer {
            status,
            body,
            request_id,
        }
    }

    async fn json(&self, method: &str, uri: &str, body: Option<Value>) -> Answer {
        self.json_as(Some(&self.key.clone()), method, uri, body)
            .await
    }

    async fn json_as(
        &self,
        key: Option<&str>,
        method: &str,
        uri: &str,
        body: Option<Value>,
    ) -> Answer {
        let b = body.map_or_else(Body::empty, |v| Body::from(v.to_string()));
        self.send(key, method, uri, "application/json", b).await
    }

    async fn yaml(&self, method: &str, uri: &str, doc: &str) -> Answer {
        self.send(
            Some(&self.key.clone()),
            method,
            uri,
            "application/yaml",
            Body::from(doc.to_string()),
        )
        .await
    }

    /// Waits for a run to stop moving (through the run's own event stream, not by sleeping).
    async fn settle(&self, id: &str) -> Value {
        let mut f = self
            .state
            .control
            .follow(&baton_control::Caller::local(), id, 0)
            .await
            .unwrap()
            .until_end(true);
        loop {
            let detail = self
                .json("GET", &format!("/api/v1/runs/{id}"), None)
                .await
                .body;
            let status = detail["run"]["status"].as_str().unwrap_or("").to_string();
            if !matches!(status.as_str(), "pending" | "running") {
                return detail;
            }
            if f.next().await.is_none() {
                return self
                    .json("GET", &format!("/api/v1/runs/{id}"), None)
                    .await
                    .body;
            }
        }
    }

    /// Waits for a run to end: its event stream ends with the event that ends the run.
    async fn finish(&self, id: &str) -> Value {
        let mut f = self
            .state
            .control
            .follow(&baton_control::Caller::local(), id, 0)
            .await
            .unwrap()
            .until_end(true);
        while let Some(item) = f.next().await {
            item.unwrap();
        }
        self.json("GET", &format!("/api/v1/runs/{id}"), None)
            .await
            .body
    }

    async fn key_with(&self, tenant: Option<&str>, role: &str) -> String {
        let mut b = json!({"role": role});
        if let Some(t) = tenant {
            b["tenant"] = json!(t);
        }
        let a = self.json("POST", "/api/v1/keys", Some(b)).await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        a.body["key"].as_str().unwrap().to_string()
    }
}

fn error_code(a: &Answer) -> &str {
    a.body["error"]["code"]
        .as_str()
        .unwrap_or_else(|| panic!("no error body: {} {}", a.status, a.body))
}

#[tokio::test]
async fn every_route_needs_a_valid_key() {
    let api = Api::new().await;
    for (m, uri) in [
        ("GET", "/api/v1/runs"),
        ("POST", "/api/v1/runs"),
        ("GET", "/api/v1/workflows"),
        ("GET", "/api/v1/approvals"),
        ("GET", "/api/v1/keys"),
        ("GET", "/api/v1/audit"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
    ] {
        let a = api.json_as(None, m, uri, None).await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
        assert_eq!(error_code(&a), "unauthenticated");
        let a = api
            .json_as(Some("bk_000000000000_0000000000000000000000000000000000000000000000000000000000000000"), m, uri, None)
            .await;
        assert_eq!(a.status, StatusCode::UNAUTHORIZED, "{m} {uri}");
    }
    // A revoked key stops working at once.
    let k = api.key_with(None, "viewer").await;
    assert_eq!(
        api.json_as(Some(&k), "GET", "/api/v1/runs", None)
            .await
            .status,
        StatusCode::OK
    );
    let id = k.split('_').nth(1).unwrap();
    assert_eq!(
        api.json("DELETE", &format!("/api/v1/keys/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );
    assert_eq!(
        api.json_as(Some(&k), "GET", "/api/v1/runs", None)
            .await
            .status,
        StatusCode::UNAUTHORIZED
    );
    // Failed authentications are in the audit log, without the key.
    let a = api.json("GET", "/api/v1/audit?action=auth", None).await;
    let entries = a.body["entries"].as_array().unwrap();
    assert!(entries.len() >= 8, "{}", a.body);
    assert!(
        !a.body.to_string().contains(&k),
        "a key leaked into the audit log"
    );
    // Operations routes need none.
    for uri in ["/healthz", "/readyz"] {
        assert_eq!(
            api.json_as(None, "GET", uri, None).await.status,
            StatusCode::OK,
            "{uri}"
        );
    }
}

#[tokio::test]
async fn workflows_are_versioned_validated_and_deleted() {
    let api = Api::new().await;
    let a = api.yaml("POST", "/api/v1/workflows", ECHO).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(a.body["version"], 1);
    let v2 = ECHO.replace("hello {{", "hi {{");
    let a = api.yaml("PUT", "/api/v1/workflows/echo", &v2).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["version"], 2);
    let a = api.json("GET", "/api/v1/workflows/echo@1", None).await;
    assert_eq!(a.body["source"], ECHO);
    let a = api.json("GET", "/api/v1/workflows", None).await;
    assert_eq!(a.body["workflows"][0]["latest"], 2, "{}", a.body);
    // An invalid document: 422 with positioned diagnostics; nothing stored.
    let bad = "version: 1\nname: bad\nsteps:\n  - { id: a, tool: nope }\n";
    let a = api.yaml("POST", "/api/v1/workflows", bad).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let d = &a.body["error"]["details"]["diagnostics"][0];
    assert_eq!(d["line"], 4, "{}", a.body);
    assert!(
        d["message"].as_str().unwrap().contains("nope"),
        "{}",
        a.body
    );
    let a = api.yaml("POST", "/api/v1/workflows/validate", bad).await;
    assert_eq!(
        (a.status, a.body["valid"].clone()),
        (StatusCode::OK, json!(false))
    );
    assert_eq!(
        api.json("GET", "/api/v1/workflows/bad", None).await.status,
        StatusCode::NOT_FOUND
    );
    // Wrong content type.
    let a = api
        .send(
            Some(&api.key),
            "POST",
            "/api/v1/workflows",
            "image/png",
            Body::from("x"),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNSUPPORTED_MEDIA_TYPE);
    // Deleted: gone for reads and runs.
    assert_eq!(
        api.json("DELETE", "/api/v1/workflows/echo", None)
            .await
            .status,
        StatusCode::NO_CONTENT
    );
    assert_eq!(
        api.json("GET", "/api/v1/workflows/echo", None).await.status,
        StatusCode::NOT_FOUND
    );
}

#[tokio::test]
async fn runs_start_once_per_idempotency_key_and_finish_in_the_background() {
    let api = Api::new().await;
    assert_eq!(
        api.yaml("POST", "/api/v1/workflows", ECHO).await.status,
        StatusCode::CREATED
    );
    let start = |key: &'static str| {
        let body = json!({"workflow": "echo@1", "inputs": {"who": "api"}}).to_string();
        let k = api.key.clone();
        let state = api.state.clone();
        async move {
            let req = Request::builder()
                .method("POST")
                .uri("/api/v1/runs")
                .header("authorization", format!("Bearer {k}"))
                .header("content-type", "application/json")
                .header("idempotency-key", key)
                .body(Body::from(body))
                .unwrap();
            let resp = app(state).oneshot(req).await.unwrap();
            let status = resp.status();
            let b: Value =
                serde_json::from_slice(&resp.into_body().collect().await.unwrap().to_bytes())
                    .unwrap();
            (status, b)
        }
    };
    let (s1, b1) = start("order-7").await;
    assert_eq!(s1, StatusCode::CREATED, "{b1}");
    let (s2, b2) = start("order-7").await;
    assert_eq!(
        (s2, &b2["id"], &b2["reused"]),
        (StatusCode::OK, &b1["id"], &json!(true))
    );
    let id = b1["id"].as_str().unwrap();
    let detail = api.finish(id).await;
    assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    assert_eq!(detail["run"]["outputs"], json!("hello api"), "{detail}");
    assert_eq!(detail["steps"][0]["step"], "hello", "{detail}");
    let a = api.json("GET", "/api/v1/runs?status=succeeded", None).await;
    assert_eq!(a.body["runs"].as_array().unwrap().len(), 1, "{}", a.body);
    let a = api.json("GET", "/api/v1/runs?status=bogus", None).await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST);
    // Logs: filtered, and as JSON Lines.
    let a = api
        .json(
            "GET",
            &format!("/api/v1/runs/{id}/logs?kind=step_succeeded"),
            None,
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), 1, "{}", a.body);
    let a = api
        .json("GET", &format!("/api/v1/runs/{id}/logs?format=jsonl"), None)
        .await;
    assert!(a.body.as_str().unwrap().lines().count() >= 4, "{}", a.body);
    // An inline document runs too; both or neither is refused.
    let a = api
        .json("POST", "/api/v1/runs", Some(json!({"source": ECHO})))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let a = api
        .json(
            "POST",
            "/api/v1/runs",
            Some(json!({"source": ECHO, "workflow": "echo"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY);
}

#[tokio::test]
async fn tenants_never_see_each_other_and_roles_limit_writes() {
    let api = Api::new().await;
    let a = api
        .json("POST", "/api/v1/runs", Some(json!({"source": ECHO})))
        .await;
    let id = a.body["id"].as_str().unwrap().to_string();
    api.finish(&id).await;
    assert_eq!(
        api.json("POST", "/api/v1/tenants", Some(json!({"id": "acme"})))
            .await
            .status,
        StatusCode::CREATED
    );
    let acme = api.key_with(Some("acme"), "admin").await;
    // Another tenant's run: 404, never the run, never 403.
    for uri in [
        format!("/api/v1/runs/{id}"),
        format!("/api/v1/runs/{id}/events"),
        format!("/api/v1/runs/{id}/state"),
    ] {
        let a = api.json_as(Some(&acme), "GET", &uri, None).await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{uri}: {}", a.body);
    }
    let a = api
        .json_as(
            Some(&acme),
            "POST",
            &format!("/api/v1/runs/{id}/cancel"),
            None,
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api.json_as(Some(&acme), "GET", "/api/v1/runs", None).await;
    assert_eq!(a.body["runs"], json!([]));
    // A viewer reads but does not write; a runner starts runs but edits no workflow.
    let viewer = api.key_with(None, "viewer").await;
    assert_eq!(
        api.json_as(Some(&viewer), "GET", &format!("/api/v1/runs/{id}"), None)
            .await
            .status,
        StatusCode::OK
    );
    let a = api
        .json_as(
            Some(&viewer),
            "POST",
            "/api/v1/runs",
            Some(json!({"source": ECHO})),
        )
        .await;
    assert_eq!(
        (a.status, error_code(&a)),
        (StatusCode::FORBIDDEN, "forbidden")
    );
    let runner = api.key_with(None, "runner").await;
    let a = api
        .json_as(
            Some(&runner),
            "POST",
            "/api/v1/runs",
            Some(json!({"source": ECHO})),
        )
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    // A runner sees its own runs only.
    let a = api
        .json_as(Some(&runner), "GET", &format!("/api/v1/runs/{id}"), None)
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND);
    let a = api
        .json_as(Some(&runner), "GET", "/api/v1/keys", None)
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    let a = api
        .json_as(
            Some(&viewer),
            "POST",
            "/api/v1/keys",
            Some(json!({"role": "admin"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::FORBIDDEN);
    // The audit chain holds.
    let a = api.json("GET", "/api/v1/audit/verify", None).await;
    assert_eq!(a.body["broken"], Value::Null, "{}", a.body);
}

#[tokio::test]
async fn approvals_are_answered_over_the_api() {
    let api = Api::new().await;
    let a = api
        .json("POST", "/api/v1/runs", Some(json!({"source": ASK})))
        .await;
    let id = a.body["id"].as_str().unwrap().to_string();
    let detail = api.settle(&id).await;
    assert_eq!(detail["run"]["status"], "waiting", "{detail}");
    let a = api.json("GET", "/api/v1/approvals", None).await;
    assert_eq!(a.body["approvals"][0]["step"], "ok", "{}", a.body);
    assert_eq!(a.body["approvals"][0]["prompt"], "Ship it?");
    let a = api
        .json(
            "POST",
            &format!("/api/v1/runs/{id}/approve"),
            Some(json!({"comment": "go"})),
        )
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    let detail = api.finish(&id).await;
    assert_eq!(detail["run"]["status"], "succeeded", "{detail}");
    assert_eq!(
        api.json("GET", "/api/v1/approvals", None).await.body["approvals"],
        json!([])
    );
}

/// What the web app reads first: who the key is, and a run's graph to draw.
#[tokio::test]
async fn me_says_who_the_key_is_and_a_run_has_its_graph() {
    let api = Api::new().await;
    let me = api.json("GET", "/api/v1/me", None).await;
    assert_eq!(me.status, StatusCode::OK, "{}", me.body);
    assert_eq!(me.body["tenant"], "default");
    assert_eq!(me.body["role"], "admin");
    assert_eq!(me.body["may"]["operate_runs"], true);
    let a = api
        .json("POST", "/api/v1/runs", Some(json!({"source": ASK})))
        .await;
    let id = a.body["id"].as_str().unwrap().to_string();
    let g = api
        .json("GET", &format!("/api/v1/runs/{id}/graph"), None)
        .await;
    assert_eq!(g.status, StatusCode::OK, "{}", g.body);
    let ids: Vec<&str> = g.body["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| n["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["first", "ok", "last"]);
    assert_eq!(g.body["nodes"][1]["kind"], "human");
    assert_eq!(
        g.body["edges"][0],
        json!({"from": "first", "to": "ok", "kind": "sequence"})
    );
}

#[tokio::test]
async fn bad_requests_get_the_one_error_body() {
    let api = Api::new().await;
    let k = api.key.clone();
    let cases: Vec<(Answer, StatusCode)> = vec![
        (
            api.send(
                Some(&k),
                "POST",
                "/api/v1/runs",
                "application/json",
                Body::from("{nope"),
            )
            .await,
            StatusCode::BAD_REQUEST,
        ),
        (
            api.send(
                Some(&k),
                "POST",
                "/api/v1/runs",
                "text/plain",
                Body::from("{}"),
            )
            .await,
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
        ),
        (
            api.json(
                "POST",
                "/api/v1/runs",
                Some(json!({"source": ECHO, "extra": 1})),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            api.json("GET", "/api/v1/runs/zz", None).await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            api.json("GET", "/api/v1/runs/0123456789abcdef0123456789abcdef", None)
                .await,
            StatusCode::NOT_FOUND,
        ),
        (
            api.json("GET", "/api/v1/nothing", None).await,
            StatusCode::NOT_FOUND,
        ),
        (
            api.json("PATCH", "/api/v1/runs", None).await,
            StatusCode::METHOD_NOT_ALLOWED,
        ),
        (
            api.json("GET", "/api/v1/runs?limit=lots", None).await,
            StatusCode::BAD_REQUEST,
        ),
        (
            api.json("POST", "/api/v1/keys", Some(json!({"role": "god"})))
                .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            api.json(
                "POST",
                "/api/v1/runs",
                Some(json!({"source": "version: 1\nname: x\nsteps: 7\n"})),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
        (
            api.json(
                "POST",
                "/api/v1/runs",
                Some(json!({"source": ECHO, "inputs": {"who": 3}})),
            )
            .await,
            StatusCode::UNPROCESSABLE_ENTITY,
        ),
    ];
    for (i, (a, want)) in cases.iter().enumerate() {
        assert_eq!(a.status, *want, "case {i}: {}", a.body);
        assert!(
            a.body["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "case {i}: {}",
            a.body
        );
        assert!(
            a.body["error"].get("details").is_some(),
            "case {i}: {}",
            a.body
        );
        assert!(a.request_id.is_some(), "case {i}: no request id");
    }
    // Over the body limit: 413, and nothing was stored.
    let big = json!({"source": ECHO, "inputs": {"who": "x".repeat(11 << 20)}});
    let a = api.json("POST", "/api/v1/runs", Some(big)).await;
    assert_eq!(a.status, StatusCode::PAYLOAD_TOO_LARGE, "{}", a.body);
    assert_eq!(
        api.json("GET", "/api/v1/runs", None).await.body["runs"],
        json!([])
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_template() {
    let api = Api::new().await;
    api.json("GET", "/api/v1/runs/0123456789abcdef0123456789abcdef", None)
        .await;
    let a = api.json_as(None, "GET", "/metrics", None).await;
    let text = a.body.as_str().unwrap().to_string();
    assert!(
        text.contains("baton_http_request_duration_seconds_count{route=\"/api/v1/runs/{id}\",method=\"GET\",status=\"404\"} 1"),
        "{text}"
    );
    assert!(
        !text.contains("0123456789abcdef"),
        "ids must not become labels"
    );
}

/// Server-sent events over a real socket: a client that reconnects with `Last-Event-ID`
/// misses nothing and sees nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_resumes_from_last_event_id() {
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let addr = server.addr;
    let client = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1");
    let run: Value = client
        .post(format!("{base}/runs"))
        .bearer_auth(&key)
        .json(&json!({"source": ASK}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    // Read until the approval is asked for, then hang up.
    let seen = read_sse(
        &client,
        &format!("{base}/runs/{id}/stream"),
        &key,
        None,
        "human_requested",
    )
    .await;
    let last = *seen.last().unwrap();
    assert_eq!(
        seen,
        (1..=last).collect::<Vec<_>>(),
        "in order, none missing"
    );
    let a = client
        .post(format!("{base}/runs/{id}/approve"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    let rest = read_sse(
        &client,
        &format!("{base}/runs/{id}/stream"),
        &key,
        Some(last),
        "run_succeeded",
    )
    .await;
    assert_eq!(
        rest.first().copied(),
        Some(last + 1),
        "nothing seen twice, nothing missed: {rest:?}"
    );
    let all: Vec<u64> = seen.iter().chain(&rest).copied().collect();
    assert_eq!(all, (1..=*all.last().unwrap()).collect::<Vec<_>>());
    server.stop().await;
}

/// The ids of the SSE events read until one of kind `until` (the stream then ends or is dropped).
async fn read_sse(
    client: &reqwest::Client,
    url: &str,
    key: &str,
    last: Option<u64>,
    until: &str,
) -> Vec<u64> {
    let mut req = client.get(url).bearer_auth(key);
    if let Some(l) = last {
        req = req.header("last-event-id", l.to_string());
    }
    let mut resp = req.send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut buf = String::new();
    let mut ids = Vec::new();
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(30);
    while let Ok(Ok(Some(chunk))) = tokio::time::timeout_at(deadline, resp.chunk()).await {
        buf.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let mut id = None;
            let mut kind = "";
            for line in frame.lines() {
                if let Some(v) = line.strip_prefix("id:") {
                    id = v.trim().parse::<u64>().ok();
                }
                if let Some(v) = line.strip_prefix("event:") {
                    kind = if v.trim() == until { "stop" } else { "" };
                }
            }
            if let Some(i) = id {
                ids.push(i);
            }
            if kind == "stop" {
                return ids;
            }
        }
    }
    panic!("the stream ended before `{until}`: saw {ids:?}");
}

#[tokio::test]
async fn a_key_over_its_rate_gets_429_with_retry_after() {
    // One request every 20 s (a burst of one): a slow machine cannot earn a second token
    // between the two requests, so the answer does not depend on timing.
    let state = test_state(Providers::default()).with_config(baton_server::ServerConfig {
        rate_limit: Some(0.05),
        ..Default::default()
    });
    let key = key_for(&state).await;
    let api = Api { state, key };
    assert_eq!(
        api.json("GET", "/api/v1/runs", None).await.status,
        StatusCode::OK
    );
    let req = Request::builder()
        .uri("/api/v1/runs")
        .header("authorization", format!("Bearer {}", api.key))
        .body(Body::empty())
        .unwrap();
    let resp = app(api.state.clone()).oneshot(req).await.unwrap();
    assert_eq!(resp.status(), StatusCode::TOO_MANY_REQUESTS);
    let wait: u32 = resp.headers()["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((19..=20).contains(&wait), "retry after {wait} s");
    // Another key is not held back.
    let other = key_for(&api.state).await;
    assert_eq!(
        api.json_as(Some(&other), "GET", "/api/v1/runs", None)
            .await
            .status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn the_openapi_document_covers_every_route_and_its_errors() {
    let api = Api::new().await;
    let a = api.json_as(None, "GET", "/api/v1/openapi.json", None).await;
    assert_eq!(a.status, StatusCode::OK);
    let doc = a.body;
    assert!(
        doc["openapi"].as_str().unwrap().starts_with("3.1"),
        "{}",
        doc["openapi"]
    );
    let paths = doc["paths"].as_object().unwrap();
    let want = [
        ("/api/v1/runs", "post"),
        ("/api/v1/runs", "get"),
        ("/api/v1/runs/{id}", "get"),
        ("/api/v1/runs/{id}/state", "get"),
        ("/api/v1/runs/{id}/graph", "get"),
        ("/api/v1/runs/{id}/events", "get"),
        ("/api/v1/runs/{id}/stream", "get"),
        ("/api/v1/runs/{id}/logs", "get"),
        ("/api/v1/runs/{id}/pause", "post"),
        ("/api/v1/runs/{id}/cancel", "post"),
        ("/api/v1/runs/{id}/resume", "post"),
        ("/api/v1/runs/{id}/fork", "post"),
        ("/api/v1/runs/{id}/replay", "post"),
        ("/api/v1/runs/{id}/compare/{other}", "get"),
        ("/api/v1/runs/{id}/approve", "post"),
        ("/api/v1/runs/{id}/reject", "post"),
        ("/api/v1/runs/{id}/input", "post"),
        ("/api/v1/runs/{id}/resolve", "post"),
        ("/api/v1/runs/{id}/steps/{step}", "get"),
        ("/api/v1/approvals", "get"),
        ("/api/v1/stats", "get"),
        ("/api/v1/runs/{id}/edit", "post"),
        ("/api/v1/runs/{id}/breakpoints", "post"),
        ("/api/v1/runs/{id}/workspace", "get"),
        ("/api/v1/runs/{id}/workspace/diff", "get"),
        ("/api/v1/runs/{id}/workspace/rollback", "post"),
        ("/api/v1/workflows", "post"),
        ("/api/v1/workflows", "get"),
        ("/api/v1/workflows/validate", "post"),
        ("/api/v1/workflows/{name}", "get"),
        ("/api/v1/workflows/{name}", "put"),
        ("/api/v1/workflows/{name}", "delete"),
        ("/api/v1/keys", "post"),
        ("/api/v1/keys", "get"),
        ("/api/v1/keys/{id}", "delete"),
        ("/api/v1/tenants", "post"),
        ("/api/v1/tenants", "get"),
        ("/api/v1/me", "get"),
        ("/api/v1/audit", "get"),
        ("/api/v1/audit/verify", "get"),
        ("/api/v1/ws", "get"),
        ("/api/v1/agents", "post"),
        ("/api/v1/agents", "get"),
        ("/api/v1/agents/{name}", "get"),
        ("/api/v1/agents/{name}/versions", "get"),
        ("/api/v1/agents/{name}/rollback", "post"),
        ("/api/v1/agents/{name}/diff", "get"),
        ("/api/v1/runs/{id}/agents/{agent}/{action}", "post"),
        ("/api/v1/webhooks/inbound", "post"),
        ("/api/v1/webhooks/inbound", "get"),
        ("/api/v1/webhooks/inbound/{id}", "get"),
        ("/api/v1/webhooks/inbound/{id}", "delete"),
        ("/api/v1/webhooks/inbound/{id}/rotate", "post"),
        ("/api/v1/webhooks/subscriptions", "post"),
        ("/api/v1/webhooks/subscriptions", "get"),
        ("/api/v1/webhooks/subscriptions/{id}", "get"),
        ("/api/v1/webhooks/subscriptions/{id}", "delete"),
        ("/api/v1/webhooks/subscriptions/{id}/deliveries", "get"),
    ];
    let documented: usize = paths.values().map(|p| p.as_object().unwrap().len()).sum();
    assert_eq!(
        documented,
        want.len(),
        "documented routes: {:?}",
        paths.keys().collect::<Vec<_>>()
    );
    for (path, method) in want {
        let op = &paths[path][method];
        assert!(op.is_object(), "{method} {path} is not documented");
        for code in ["401", "403", "404", "422"] {
            assert!(
                op["responses"][code].is_object(),
                "{method} {path}: no {code}"
            );
        }
        assert_eq!(op["security"][0]["api_key"], json!([]), "{method} {path}");
    }
    // Responses carry their types' schemas.
    let get_run = &paths["/api/v1/runs/{id}"]["get"]["responses"]["200"];
    assert!(
        get_run["content"]["application/json"]["schema"].is_object(),
        "{get_run}"
    );
    let schemas = doc["components"]["schemas"].as_object().unwrap();
    for name in [
        "RunDetail",
        "StepDetail",
        "ErrorBody",
        "WorkflowVersion",
        "AgentVersion",
        "AgentDiff",
        "KeyInfo",
        "CreatedKey",
        "Subscription",
        "SubscriptionWithSecret",
        "DeliveryPage",
        "Delivery",
        "AttemptRecord",
    ] {
        assert!(
            schemas.contains_key(name),
            "no schema {name}: {:?}",
            schemas.keys().collect::<Vec<_>>()
        );
    }
    // The webhook subscriptions' answers too (the web app's admin pages read them).
    for (path, method, code) in [
        ("/api/v1/webhooks/subscriptions", "get", "200"),
        ("/api/v1/webhooks/subscriptions", "post", "201"),
        (
            "/api/v1/webhooks/subscriptions/{id}/deliveries",
            "get",
            "200",
        ),
        ("/api/v1/keys", "post", "201"),
    ] {
        let r = &paths[path][method]["responses"][code];
        assert!(
            r["content"]["application/json"]["schema"].is_object(),
            "{method} {path}: {r}"
        );
    }
    // And a reference page made from it.
    let a = api.json_as(None, "GET", "/api/v1/docs", None).await;
    let html = a.body.as_str().unwrap();
    assert!(html.contains("<code>POST /api/v1/runs</code>"), "{html}");
}

/// Model output streams to SSE subscribers as `model_delta` events (not logged, no id), between
/// the logged events of the step.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sse_carries_model_deltas_of_a_running_agent() {
    use baton_llm::scripted::{Reply, ScriptedModel};
    const TALK: &str = "version: 1\nname: talk\nagents:\n  bot: { model: scripted/bot }\nsteps:\n  - id: ok\n    human: { prompt: Go? }\n  - { id: say, agent: bot, prompt: Say hello }\n";
    let models = Providers::default();
    models.scripted.insert(
        "bot",
        std::sync::Arc::new(
            ScriptedModel::new("bot", vec![Reply::text("Hello from a streaming agent")]).unwrap(),
        ),
    );
    let store = std::sync::Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: std::sync::Arc::new(models),
        tools: std::sync::Arc::new(baton_tools::Registry::with_builtins()),
    };
    let state = AppState::new(
        baton_control::Control::new(services, store),
        Providers::default(),
    );
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let addr = server.addr;
    let http = reqwest::Client::new();
    let base = format!("http://{addr}/api/v1");
    let run: Value = http
        .post(format!("{base}/runs"))
        .bearer_auth(&key)
        .json(&json!({"source": TALK}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    // Subscribed while the run waits for its approval, so the agent streams to us.
    let mut resp = http
        .get(format!("{base}/runs/{id}/stream"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    let mut text = String::new();
    while !text.contains("event: human_requested") {
        text.push_str(&String::from_utf8_lossy(
            &resp.chunk().await.unwrap().unwrap(),
        ));
    }
    let a = http
        .post(format!("{base}/runs/{id}/approve"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(a.status(), 200);
    while let Ok(Ok(Some(c))) =
        tokio::time::timeout(std::time::Duration::from_secs(30), resp.chunk()).await
    {
        text.push_str(&String::from_utf8_lossy(&c));
    }
    assert!(text.contains("event: run_succeeded"), "{text}");
    let deltas: String = text
        .split("\n\n")
        .filter(|f| f.contains("event: model_delta"))
        .map(|f| {
            assert!(
                !f.contains("\nid:") && !f.starts_with("id:"),
                "a delta has no id: {f}"
            );
            let data = f.lines().find_map(|l| l.strip_prefix("data:")).unwrap();
            let d: Value = serde_json::from_str(data.trim()).unwrap();
            assert_eq!(d["step"], "say");
            d["text"].as_str().unwrap().to_string()
        })
        .collect();
    assert_eq!(deltas, "Hello from a streaming agent", "{text}");
    // Deltas are not in the log.
    let logged: Value = http
        .get(format!("{base}/runs/{id}/events"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(!logged.to_string().contains("model_delta"));
    server.stop().await;
}

/// One WebSocket follows a run from a seq, like the SSE stream: nothing missed, nothing twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_websocket_follows_runs_from_a_seq() {
    use futures::{SinkExt, StreamExt};
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let addr = server.addr;
    let http = reqwest::Client::new();
    let run: Value = http
        .post(format!("http://{addr}/api/v1/runs"))
        .bearer_auth(&key)
        .json(&json!({"source": ECHO}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();
    // Without a key: refused before the upgrade.
    let bare = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .unwrap();
    assert!(tokio_tungstenite::connect_async(bare).await.is_err());
    let mut req = format!("ws://{addr}/api/v1/ws")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"subscribe": {"run": id, "after": 2}})
            .to_string()
            .into(),
    ))
    .await
    .unwrap();
    let mut got = Vec::new();
    loop {
        let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
            .await
            .unwrap()
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "event" {
            got.push(v["event"]["seq"].as_u64().unwrap());
            if v["event"]["type"] == "run_succeeded" {
                break;
            }
        }
    }
    assert_eq!(
        got,
        (3..=*got.last().unwrap()).collect::<Vec<_>>(),
        "from seq 3, in order"
    );
    // A bad message gets the error body and the socket stays open.
    ws.send(Message::Text("{\"nope\": 1}".into()))
        .await
        .unwrap();
    let Message::Text(t) = ws.next().await.unwrap().unwrap() else {
        panic!("not text")
    };
    let v: Value = serde_json::from_str(&t).unwrap();
    assert_eq!(v["error"]["code"], "invalid_request", "{v}");
    server.stop().await;
}

/// The next message of a WebSocket, as JSON (within 30 s).
async fn next_json<S>(ws: &mut S) -> Value
where
    S: futures::Stream<
            Item = Result<
                tokio_tungstenite::tungstenite::Message,
                tokio_tungstenite::tungstenite::Error,
            >,
        > + Unpin,
{
    use futures::StreamExt;
    let msg = tokio::time::timeout(std::time::Duration::from_secs(30), ws.next())
        .await
        .expect("a message within 30 s")
        .unwrap()
        .unwrap();
    match msg {
        tokio_tungstenite::tungstenite::Message::Text(t) => serde_json::from_str(&t).unwrap(),
        other => panic!("not text: {other:?}"),
    }
}

/// A browser's WebSocket cannot send headers: its key comes as the subprotocol
/// `baton.key.KEY` next to `baton.v1`. A good key is answered with `baton.v1` only (never the
/// key), a bad one with 401 before the upgrade, and a viewer's tenant subscription carries its
/// tenant's events only.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_browser_websocket_sends_its_key_as_a_subprotocol() {
    use futures::SinkExt;
    use tokio_tungstenite::tungstenite::Error as WsError;
    use tokio_tungstenite::tungstenite::Message;
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;
    let state = test_state(Providers::default());
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let addr = server.addr;
    let base = format!("http://{addr}/api/v1");
    let http = reqwest::Client::new();
    let post = |uri: String, as_key: String, body: Value| {
        let http = http.clone();
        async move {
            let r = http
                .post(uri)
                .bearer_auth(as_key)
                .json(&body)
                .send()
                .await
                .unwrap();
            let status = r.status();
            let v: Value = r.json().await.unwrap();
            assert!(status.is_success(), "{status}: {v}");
            v
        }
    };
    let viewer = post(
        format!("{base}/keys"),
        key.clone(),
        json!({"role": "viewer"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    post(
        format!("{base}/tenants"),
        key.clone(),
        json!({"id": "acme"}),
    )
    .await;
    let acme = post(
        format!("{base}/keys"),
        key.clone(),
        json!({"role": "admin", "tenant": "acme"}),
    )
    .await["key"]
        .as_str()
        .unwrap()
        .to_string();
    let handshake = |protocols: String| {
        let mut req = format!("ws://{addr}/api/v1/ws")
            .into_client_request()
            .unwrap();
        req.headers_mut()
            .insert("sec-websocket-protocol", protocols.parse().unwrap());
        req
    };

    // A bad key: 401 with the error body, no upgrade.
    match tokio_tungstenite::connect_async(handshake("baton.v1, baton.key.nope".into())).await {
        Err(WsError::Http(resp)) => {
            assert_eq!(resp.status(), StatusCode::UNAUTHORIZED);
            let body: Value = serde_json::from_slice(resp.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["error"]["code"], "unauthenticated", "{body}");
        }
        other => panic!("a bad key was not refused with 401: {other:?}"),
    }
    // The key only in the query string is no key.
    let mut req = format!("ws://{addr}/api/v1/ws?key={viewer}")
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("sec-websocket-protocol", "baton.v1".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err());

    // The viewer's key: answered with `baton.v1`, the key nowhere in the answer's headers.
    let (mut ws, resp) =
        tokio_tungstenite::connect_async(handshake(format!("baton.v1, baton.key.{viewer}")))
            .await
            .unwrap();
    assert_eq!(
        resp.headers()
            .get_all("sec-websocket-protocol")
            .iter()
            .map(|v| v.to_str().unwrap())
            .collect::<Vec<_>>(),
        ["baton.v1"]
    );
    for (_, v) in resp.headers() {
        assert!(!v.to_str().unwrap_or("").contains(&viewer), "{v:?}");
    }
    ws.send(Message::Text(
        json!({"subscribe_tenant": {}}).to_string().into(),
    ))
    .await
    .unwrap();
    let v = next_json(&mut ws).await;
    assert_eq!(v["type"], "subscribed", "{v}");
    assert_eq!(v["tenant"], "default", "{v}");
    // A run of another tenant, then one of the viewer's: only the second reaches the socket.
    let theirs = post(
        format!("{base}/runs"),
        acme.clone(),
        json!({"source": ECHO}),
    )
    .await["id"]
        .as_str()
        .unwrap()
        .to_string();
    // Their run ends first, so an event of it that leaked would come before ours ends.
    loop {
        let r: Value = http
            .get(format!("{base}/runs/{theirs}"))
            .bearer_auth(&acme)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if !matches!(r["run"]["status"].as_str(), Some("pending" | "running")) {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let ours = post(format!("{base}/runs"), key.clone(), json!({"source": ECHO})).await["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut seen = std::collections::BTreeSet::new();
    loop {
        let v = next_json(&mut ws).await;
        if v["type"] != "event" {
            continue;
        }
        let run = v["event"]["run_id"].as_str().unwrap().to_string();
        assert_ne!(run, theirs, "another tenant's event reached a viewer: {v}");
        seen.insert(run.clone());
        if run == ours && v["event"]["type"] == "run_succeeded" {
            break;
        }
    }
    assert_eq!(seen.into_iter().collect::<Vec<_>>(), [ours]);
    server.stop().await;
}

/// The agent registry over HTTP, with the requests docs/api.md shows: versions, diff,
/// rollback, refusals; a run of a document naming a registry agent uses its default version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn agents_are_versioned_over_http() {
    let examples = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples");
    let store = std::sync::Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: std::sync::Arc::new(Providers::default()),
        tools: std::sync::Arc::new(baton_tools::Registry::with_builtins()),
    };
    let control = baton_control::Control::new(services, store).with_base_dir(&examples);
    let state = AppState::new(control, Providers::default());
    let key = key_for(&state).await;
    let api = Api { state, key };
    let file = std::fs::read_to_string(examples.join("agents/reviewer.yaml")).unwrap();

    // Version 1 is the built-in reviewer (docs/agents.md).
    let a = api.yaml("POST", "/api/v1/agents", &file).await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    assert_eq!(
        (
            a.body["version"].as_u64(),
            a.body["default_version"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let v2 = file.replace("role: code reviewer", "role: strict reviewer");
    let a = api.yaml("POST", "/api/v1/agents", &v2).await;
    assert_eq!(a.body["version"], 3, "{}", a.body);

    let reviewer = |body: &Value| -> Value {
        body["agents"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["name"] == "reviewer")
            .cloned()
            .unwrap_or_else(|| panic!("no reviewer in {body}"))
    };
    let a = api.json("GET", "/api/v1/agents", None).await;
    let r = reviewer(&a.body);
    // A listing shows the default version's model and role.
    assert_eq!(
        (r["model"].as_str(), r["role"].as_str()),
        (Some("scripted/reviewer"), Some("strict reviewer")),
        "{}",
        a.body
    );
    let a = api.json("GET", "/api/v1/agents/reviewer@2", None).await;
    assert_eq!(
        (a.body["version"].as_u64(), a.body["spec"]["role"].as_str()),
        (Some(2), Some("code reviewer"))
    );
    let a = api
        .json("GET", "/api/v1/agents/reviewer/versions", None)
        .await;
    assert_eq!(a.body["versions"].as_array().unwrap().len(), 3);
    let a = api
        .json("GET", "/api/v1/agents/reviewer/diff?from=2&to=3", None)
        .await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(
        a.body["changes"],
        json!([{"field": "role", "from": "code reviewer", "to": "strict reviewer"}])
    );
    assert!(
        a.body["unified"]
            .as_str()
            .unwrap()
            .contains("+role: strict reviewer")
    );
    let a = api
        .json(
            "POST",
            "/api/v1/agents/reviewer/rollback",
            Some(json!({"to": 2})),
        )
        .await;
    assert_eq!(
        (a.status, a.body["default_version"].as_u64()),
        (StatusCode::OK, Some(2)),
        "{}",
        a.body
    );
    let a = api.json("GET", "/api/v1/agents", None).await;
    let r = reviewer(&a.body);
    assert_eq!(
        (r["default_version"].as_u64(), r["role"].as_str()),
        (Some(2), Some("code reviewer")),
        "{}",
        a.body
    );

    // A run of a document that names the registry agent.
    let doc = std::fs::read_to_string(examples.join("registry-review.yaml")).unwrap();
    let a = api
        .json("POST", "/api/v1/runs", Some(json!({"source": doc})))
        .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
    let run = api.settle(a.body["id"].as_str().unwrap()).await;
    assert_eq!(run["run"]["status"], "succeeded", "{run}");
    assert_eq!(run["run"]["outputs"], "LGTM: small, focused and tested.");
    // Its log by agent and by level.
    let id = run["run"]["id"].as_str().unwrap().to_string();
    let a = api
        .json(
            "GET",
            &format!("/api/v1/runs/{id}/logs?agent=reviewer"),
            None,
        )
        .await;
    let evs = a.body.as_array().unwrap();
    assert!(
        evs.len() >= 3 && evs.iter().all(|e| e["step"] == "review"),
        "{}",
        a.body
    );
    let a = api
        .json(
            "GET",
            &format!("/api/v1/runs/{id}/logs?agent=reviewer&level=debug"),
            None,
        )
        .await;
    assert_eq!(a.body.as_array().unwrap().len(), evs.len(), "{}", a.body);
    let a = api
        .json(
            "GET",
            &format!("/api/v1/runs/{id}/logs?agent=reviewer&level=info"),
            None,
        )
        .await;
    assert!(
        a.body.as_array().unwrap().len() < evs.len(),
        "prompts are debug: {}",
        a.body
    );
    let a = api
        .json("GET", &format!("/api/v1/runs/{id}/logs?level=warn"), None)
        .await;
    assert_eq!(a.body, json!([]), "a clean run has no warnings");
    let a = api
        .json("GET", &format!("/api/v1/runs/{id}/logs?agent=nobody"), None)
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let a = api
        .json("GET", &format!("/api/v1/runs/{id}/logs?level=loud"), None)
        .await;
    assert_eq!(a.status, StatusCode::BAD_REQUEST, "{}", a.body);

    // Refusals: a bad file (its line), an unknown version, a rollback to nothing, a bad body.
    let a = api
        .yaml(
            "POST",
            "/api/v1/agents",
            "name: reviewer\nmodel: scripted/reviewer\ntools: [ecoh]\n",
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert_eq!(
        a.body["error"]["details"]["diagnostics"][0]["line"], 3,
        "{}",
        a.body
    );
    let a = api.json("GET", "/api/v1/agents/reviewer@7", None).await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let a = api
        .json(
            "POST",
            "/api/v1/agents/reviewer/rollback",
            Some(json!({"to": 9})),
        )
        .await;
    assert_eq!(a.status, StatusCode::NOT_FOUND, "{}", a.body);
    let a = api
        .json(
            "POST",
            "/api/v1/agents/reviewer/rollback",
            Some(json!({"to": 1, "x": 1})),
        )
        .await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    let a = api
        .json("GET", "/api/v1/agents/reviewer/versions", None)
        .await;
    assert_eq!(
        a.body["versions"].as_array().unwrap().len(),
        3,
        "nothing stored by a refusal"
    );
}

/// The dashboard's figures: the window's runs and steps, a window that is not one refused.
#[tokio::test]
async fn stats_sum_up_the_windows_runs() {
    let api = Api::new().await;
    for _ in 0..2 {
        let a = api
            .json("POST", "/api/v1/runs", Some(json!({"source": ECHO})))
            .await;
        api.finish(a.body["id"].as_str().unwrap()).await;
    }
    let a = api.json("GET", "/api/v1/stats?window=24h", None).await;
    assert_eq!(a.status, StatusCode::OK, "{}", a.body);
    assert_eq!(a.body["window"], "24h");
    assert_eq!(a.body["runs"], 2, "{}", a.body);
    assert_eq!(a.body["by_status"]["succeeded"], 2);
    assert_eq!(a.body["success_rate"], 1.0);
    assert_eq!(a.body["steps"]["count"], 2);
    assert_eq!(a.body["steps_by_kind"]["tool"]["count"], 2);
    assert_eq!(a.body["over_time"].as_array().unwrap().len(), 12);
    let a = api.json("GET", "/api/v1/stats?window=7d", None).await;
    assert_eq!(a.status, StatusCode::UNPROCESSABLE_ENTITY, "{}", a.body);
    assert!(
        a.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("use 1h or 24h"),
        "{}",
        a.body
    );
}
