//! The `/v1` routes, through the router without a socket (`oneshot`), and streaming over a
//! real loopback socket with the embedded model. `api.rs`: the `/api/v1` routes.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_llm::Providers;
use baton_llm::scripted::{Reply, ScriptedModel};
use baton_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

#[path = "all/api.rs"]
mod api;
#[path = "all/budget.rs"]
mod budget;
#[path = "all/debug.rs"]
mod debug;
#[path = "all/edit.rs"]
mod edit;
#[path = "all/fork.rs"]
mod fork;
#[path = "all/logs.rs"]
mod logs;
#[path = "all/matrix.rs"]
mod matrix;
#[path = "all/metrics.rs"]
mod metrics;
#[path = "all/owasp.rs"]
mod owasp;
#[path = "all/recordings.rs"]
mod recordings;
#[path = "all/sse.rs"]
mod sse;
#[path = "all/webhooks.rs"]
mod webhooks;
#[path = "all/workspace.rs"]
mod workspace;

/// An app over an in-memory store with these model providers (tests ask for keys with
/// [`key_for`]).
/// A JSON request with `key` through the router: the status and the JSON answer (`null` when
/// the body is not JSON).
pub async fn send_json(
    state: &AppState,
    key: &str,
    method: &str,
    uri: &str,
    body: Value,
) -> (u16, Value) {
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(Body::from(body.to_string()))
        .unwrap();
    let resp = app(state.clone()).oneshot(req).await.unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (
        status,
        serde_json::from_slice(&bytes).unwrap_or(Value::Null),
    )
}

pub fn test_state(providers: Providers) -> AppState {
    let store = Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: Arc::new(Providers::default()),
        tools: Arc::new(baton_tools::Registry::with_builtins()),
    };
    // Runs here write no file, so no workspace is ever made under this directory.
    let workspaces = baton_tools::workspace::Workspaces::new(
        std::env::temp_dir().join("baton-server-tests-workspaces"),
        baton_tools::workspace::Limits::default(),
    );
    let control = baton_control::Control::new(services, store.clone())
        .with_workspaces(workspaces)
        .with_webhooks(store, baton_control::webhooks::AddressPolicy::default());
    AppState::new(control, providers)
}

/// An app served on a free loopback port, until [`Served::stop`].
pub struct Served {
    pub addr: std::net::SocketAddr,
    stop: tokio::sync::oneshot::Sender<()>,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
}

impl Served {
    /// Stops the server gracefully and checks it ended without an error.
    pub async fn stop(self) {
        let _ = self.stop.send(());
        self.task.await.unwrap().unwrap();
    }
}

pub async fn serve_loopback(state: AppState) -> Served {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let task = tokio::spawn(baton_server::serve(listener, state, async move {
        let _ = stopped.await;
    }));
    Served { addr, stop, task }
}

/// A new admin key of tenant `default`.
pub async fn key_for(state: &AppState) -> String {
    state
        .control
        .create_key(
            &baton_control::Caller::local(),
            baton_control::NewKey {
                tenant: None,
                role: baton_types::Role::Admin,
                name: None,
                expires_at_ms: None,
            },
        )
        .await
        .unwrap()
        .key
}

/// A new key of `role` in `tenant`, made with the operator's key `op`.
pub async fn key(state: &AppState, op: &str, tenant: &str, role: &str) -> String {
    let body = json!({"role": role, "tenant": tenant});
    let (status, v) = send_json(state, op, "POST", "/api/v1/keys", body).await;
    assert_eq!(status, 201, "{v}");
    v["key"].as_str().unwrap().to_string()
}

/// The keys of the tests that act in tenant `acme` and check that `globex` is kept out.
pub struct TwoTenants {
    pub editor: String,
    pub viewer: String,
    pub admin: String,
    /// A key of `globex` with the role asked for.
    pub other: String,
}

/// Creates tenants `acme` and `globex` with the operator's key, and keys in them.
pub async fn two_tenants(state: &AppState, other_role: &str) -> TwoTenants {
    let op = key_for(state).await;
    for t in ["acme", "globex"] {
        let (status, v) = send_json(state, &op, "POST", "/api/v1/tenants", json!({"id": t})).await;
        assert_eq!(status, 201, "{v}");
    }
    TwoTenants {
        editor: key(state, &op, "acme", "editor").await,
        viewer: key(state, &op, "acme", "viewer").await,
        admin: key(state, &op, "acme", "admin").await,
        other: key(state, &op, "globex", other_role).await,
    }
}

/// The run's detail once its status is `want` (it runs in the background).
pub async fn reaches(state: &AppState, key: &str, run: &str, want: &str) -> Value {
    for _ in 0..500 {
        let uri = format!("/api/v1/runs/{run}");
        let (status, v) = send_json(state, key, "GET", &uri, Value::Null).await;
        assert_eq!(status, 200, "{v}");
        if v["run"]["status"] == want {
            return v;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    panic!("run {run} did not become {want}");
}

/// A refusal with this status and error code, in the one error body.
pub fn refused(status: u16, v: &Value, want: (u16, &str)) {
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (want.0, Some(want.1)),
        "{v}"
    );
}

fn state_with(replies: Vec<Reply>) -> AppState {
    let providers = Providers::default();
    providers
        .scripted
        .insert("bot", Arc::new(ScriptedModel::new("bot", replies).unwrap()));
    test_state(providers)
}

async fn call(
    state: AppState,
    method: &str,
    uri: &str,
    body: Option<Value>,
) -> (StatusCode, String) {
    let key = key_for(&state).await;
    let req = Request::builder()
        .method(method)
        .uri(uri)
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(
            body.map(|b| Body::from(b.to_string()))
                .unwrap_or_else(Body::empty),
        )
        .unwrap();
    let resp = app(state).oneshot(req).await.unwrap();
    let status = resp.status();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8(bytes.to_vec()).unwrap())
}

fn json_of(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|e| panic!("not JSON ({e}): {s}"))
}

#[tokio::test]
async fn completes_without_streaming() {
    let state = state_with(vec![Reply::text("Hello there friend")]);
    let (status, body) = call(
        state,
        "POST",
        "/v1/chat/completions",
        Some(json!({ "model": "scripted/bot", "messages": [{ "role": "user", "content": "hi" }] })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "scripted/bot");
    assert_eq!(v["choices"][0]["message"]["role"], "assistant");
    assert_eq!(v["choices"][0]["message"]["content"], "Hello there friend");
    assert_eq!(v["choices"][0]["finish_reason"], "stop");
    assert!(v["usage"]["total_tokens"].as_u64().unwrap() > 0);
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
}

#[tokio::test]
async fn tool_calls_use_the_openai_shape_and_requests_are_translated() {
    let model = Arc::new(
        ScriptedModel::new(
            "bot",
            vec![Reply::tool_call("get_weather", json!({ "city": "Paris" }))],
        )
        .unwrap(),
    );
    let providers = Providers::default();
    providers.scripted.insert("bot", model.clone());
    let (status, body) = call(
        test_state(providers),
        "POST",
        "/v1/chat/completions",
        Some(json!({
            "model": "scripted/bot",
            "messages": [
                { "role": "developer", "content": "Be brief." },
                { "role": "user", "content": [{ "type": "text", "text": "Weather in " }, { "type": "text", "text": "Paris?" }] },
                { "role": "assistant", "content": null, "tool_calls": [{ "id": "c0", "type": "function", "function": { "name": "get_weather", "arguments": "{\"city\":\"Rome\"}" } }] },
                { "role": "tool", "tool_call_id": "c0", "content": "sunny" }
            ],
            "tools": [{ "type": "function", "function": { "name": "get_weather", "description": "Weather.", "parameters": { "type": "object", "properties": { "city": { "type": "string" } } } } }],
            "max_completion_tokens": 77,
            "temperature": 0.5
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let v = json_of(&body);
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["type"], "function");
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({ "city": "Paris" }));
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    assert!(v["choices"][0]["message"]["content"].is_null());

    let sent = &model.requests()[0];
    assert_eq!(sent.model, "bot");
    assert_eq!(sent.messages[0].role, baton_llm::Role::System);
    assert_eq!(sent.messages[1].content, "Weather in Paris?");
    assert_eq!(
        sent.messages[2].tool_calls[0].arguments,
        json!({ "city": "Rome" })
    );
    assert_eq!(sent.messages[3].tool_call_id.as_deref(), Some("c0"));
    assert_eq!(sent.tools[0].name, "get_weather");
    assert_eq!(sent.max_tokens, Some(77));
    assert_eq!(sent.temperature, Some(0.5));
}

#[tokio::test]
async fn streams_server_sent_events() {
    let state = state_with(vec![Reply::text("one two three")]);
    let (status, body) = call(
        state,
        "POST",
        "/v1/chat/completions",
        Some(json!({
            "model": "scripted/bot",
            "messages": [{ "role": "user", "content": "count" }],
            "stream": true,
            "stream_options": { "include_usage": true }
        })),
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let data: Vec<&str> = body
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{body}");
    let events: Vec<Value> = data[..data.len() - 1].iter().map(|d| json_of(d)).collect();
    assert_eq!(events[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = events
        .iter()
        .filter_map(|e| e["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(text, "one two three");
    assert!(
        events
            .iter()
            .any(|e| e["choices"][0]["finish_reason"] == "stop")
    );
    let usage = events.iter().find(|e| e.get("usage").is_some()).unwrap();
    assert!(usage["usage"]["completion_tokens"].as_u64().unwrap() > 0);
    assert!(
        events
            .iter()
            .all(|e| e["object"] == "chat.completion.chunk")
    );
}

#[tokio::test]
async fn errors_are_one_json_body_with_the_right_status() {
    let cases = [
        (
            json!({ "model": "nope/x", "messages": [{ "role": "user", "content": "hi" }] }),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            json!({ "model": "scripted", "messages": [{ "role": "user", "content": "hi" }] }),
            StatusCode::NOT_FOUND,
            "model_not_found",
        ),
        (
            json!({ "messages": [] }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "model": "scripted/bot", "messages": [{ "role": "wizard", "content": "hi" }] }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
        (
            json!({ "model": "scripted/bot", "messages": [{ "role": "assistant", "tool_calls": [{ "id": "c", "type": "function", "function": { "name": "f", "arguments": "{oops" } }] }] }),
            StatusCode::BAD_REQUEST,
            "invalid_request",
        ),
    ];
    for (body, status, code) in cases {
        let (got, text) = call(
            state_with(vec![Reply::text("x")]),
            "POST",
            "/v1/chat/completions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(got, status, "{body} -> {text}");
        let v = json_of(&text);
        assert_eq!(v["error"]["code"], code, "{text}");
        assert!(!v["error"]["message"].as_str().unwrap().is_empty());
    }

    let mut limited = Reply::error("rate_limit", "slow down");
    limited.error.as_mut().unwrap().retry_after = Some(baton_types_dur(3));
    let (status, text) = call(
        state_with(vec![limited]),
        "POST",
        "/v1/chat/completions",
        Some(json!({ "model": "scripted/bot", "messages": [{ "role": "user", "content": "hi" }] })),
    )
    .await;
    assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{text}");
    assert!(
        json_of(&text)["error"]["message"]
            .as_str()
            .unwrap()
            .contains("retry after 3s"),
        "{text}"
    );

    let (status, text) = call(
        state_with(vec![Reply::error("provider", "boom")]),
        "POST",
        "/v1/chat/completions",
        Some(json!({ "model": "scripted/bot", "messages": [{ "role": "user", "content": "hi" }], "stream": true })),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_GATEWAY, "{text}");
    assert_eq!(json_of(&text)["error"]["code"], "upstream_error");

    let (status, text) = call(state_with(vec![]), "POST", "/v1/chat/completions", None).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{text}");
    let (status, text) = call(state_with(vec![]), "GET", "/v2/nothing", None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(json_of(&text)["error"]["code"], "not_found");
}

/// Requests the server cannot serve as asked are 4xx with the JSON body and a message naming
/// the field, never a 500 from deeper down or an empty body.
#[tokio::test]
async fn bad_requests_name_the_field_with_a_json_body() {
    let user = json!([{ "role": "user", "content": "hi" }]);
    let cases = [
        (
            json!({ "model": "scripted/bot", "messages": user, "response_format": { "type": "json_schema", "json_schema": { "name": "x", "schema": { "type": "frobnicate" } } } }),
            "response_format.json_schema.schema",
        ),
        (
            json!({ "model": "scripted/bot", "messages": user, "response_format": { "type": "json_schema", "json_schema": { "name": "x", "schema": "not a schema" } } }),
            "response_format.json_schema.schema",
        ),
        (
            json!({ "model": "scripted/bot", "messages": user, "temperature": 99 }),
            "temperature",
        ),
        (
            json!({ "model": "scripted/bot", "messages": user, "temperature": -1 }),
            "temperature",
        ),
        (
            json!({ "model": "scripted/bot", "messages": user, "max_tokens": 0 }),
            "max_tokens",
        ),
    ];
    for (body, field) in cases {
        let (status, text) = call(
            state_with(vec![Reply::text("x")]),
            "POST",
            "/v1/chat/completions",
            Some(body.clone()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body} -> {text}");
        let v = json_of(&text);
        assert_eq!(v["error"]["code"], "invalid_request", "{text}");
        assert!(
            v["error"]["message"].as_str().unwrap().contains(field),
            "{body}: the message should name {field}: {text}"
        );
    }
    let (status, text) = call(state_with(vec![]), "GET", "/v1/chat/completions", None).await;
    assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED, "{text}");
    let v = json_of(&text);
    assert_eq!(v["error"]["code"], "method_not_allowed", "{text}");
    assert!(
        v["error"]["message"].as_str().unwrap().contains("GET"),
        "{text}"
    );
}

fn baton_types_dur(secs: u64) -> baton_types::Dur {
    baton_types::Dur(Duration::from_secs(secs))
}

#[tokio::test]
async fn lists_the_models_of_every_provider() {
    let dir = std::env::temp_dir().join(format!("baton-server-models-{}", std::process::id()));
    let mut providers = Providers::default();
    baton_llm_local::register(
        &mut providers,
        &baton_llm_local::LocalConfig {
            models_dir: Some(dir),
            ..Default::default()
        },
    );
    let (status, body) = call(test_state(providers), "GET", "/v1/models", None).await;
    assert_eq!(status, StatusCode::OK);
    let v = json_of(&body);
    assert_eq!(v["object"], "list");
    let ids: Vec<&str> = v["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert!(ids.contains(&"local/smollm2"), "{ids:?}");
}

/// The embedded model streamed over a real socket, as another tool would use it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn streams_the_local_model_over_a_real_socket() {
    let path =
        baton_llm_local::catalog::default_models_dir().join(baton_llm_local::catalog::SMOLLM2.file);
    assert!(
        path.is_file(),
        "the SmolLM2 model is not installed at {}: run `make model`",
        path.display()
    );
    let mut providers = Providers::default();
    // One inference thread: the test runner runs other test processes on the same cores.
    let cfg = baton_llm_local::LocalConfig {
        threads: 1,
        ..Default::default()
    };
    baton_llm_local::register(&mut providers, &cfg);
    let state = test_state(providers);
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let addr = server.addr;

    let client = reqwest::Client::new();
    let resp = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({
            "model": "local/smollm2",
            "messages": [{ "role": "user", "content": "Name three colours." }],
            "stream": true,
            "max_tokens": 40,
            "temperature": 0
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "text/event-stream");
    let mut body = resp.bytes_stream();
    let (mut reads, mut text) = (0, String::new());
    use futures::StreamExt;
    while let Some(b) = tokio::time::timeout(Duration::from_secs(60), body.next())
        .await
        .unwrap()
    {
        reads += 1;
        text.push_str(std::str::from_utf8(&b.unwrap()).unwrap());
    }
    assert!(
        reads > 3,
        "the reply arrives in several reads, not at once: {reads}"
    );
    let data: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("data: "))
        .collect();
    assert_eq!(data.last(), Some(&"[DONE]"), "{text}");
    let content: String = data[..data.len() - 1]
        .iter()
        .filter_map(|d| {
            json_of(d)["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert!(!content.trim().is_empty(), "{text}");

    // A structured output through the same API is valid JSON of the schema.
    let schema = json!({ "type": "object", "properties": { "colours": { "type": "array", "items": { "type": "string", "maxLength": 20 }, "minItems": 3, "maxItems": 3 } }, "required": ["colours"], "additionalProperties": false });
    let v: Value = client
        .post(format!("http://{addr}/v1/chat/completions"))
        .bearer_auth(&key)
        .json(&json!({
            "model": "local/smollm2",
            "messages": [{ "role": "user", "content": "Name three colours." }],
            "response_format": { "type": "json_schema", "json_schema": { "name": "colours", "schema": schema } },
            "max_tokens": 100
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let out: Value =
        serde_json::from_str(v["choices"][0]["message"]["content"].as_str().unwrap()).unwrap();
    assert!(jsonschema::is_valid(&schema, &out), "{out}");

    server.stop().await;
}
