//! Budgets over HTTP, with the requests docs/api.md shows: a run of `examples/budget.yaml`
//! stops `budget_exceeded`, its detail carries the limits and who spent what, a resume
//! without more is 409 and a bad change 422 (both with the one error body), and
//! `{"budget": {"tokens": "+100"}}` lets it finish; webhooks get the stop as
//! `run.budget_exceeded`.

use baton_llm::Providers;
use baton_server::AppState;
use serde_json::{Value, json};

use baton_control::webhooks::AddressPolicy;

use super::{key_for, send_json as send};

/// The run's detail once its status is `want` (it runs in the background).
async fn until(state: &AppState, key: &str, run: &str, want: &str) -> Value {
    for _ in 0..500 {
        let uri = format!("/api/v1/runs/{run}");
        let (status, v) = send(state, key, "GET", &uri, Value::Null).await;
        assert_eq!(status, 200, "{v}");
        if v["run"]["status"] == want {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run} never became {want}");
}

fn examples() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

/// An app whose runs find `examples/scripted/`, with webhooks to loopback allowed, and a key.
async fn state() -> (AppState, String) {
    let store = std::sync::Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: std::sync::Arc::new(Providers::default()),
        tools: std::sync::Arc::new(baton_tools::Registry::with_builtins()),
    };
    let policy = AddressPolicy::new(vec!["127.0.0.0/8".parse().unwrap()]);
    let control = baton_control::Control::new(services, store.clone())
        .with_base_dir(examples())
        .with_webhooks(store, policy);
    let state = AppState::new(control, Providers::default());
    let key = key_for(&state).await;
    (state, key)
}

/// Starts a run of `examples/budget.yaml`; returns its id.
async fn start(state: &AppState, key: &str) -> String {
    let source = std::fs::read_to_string(examples().join("budget.yaml")).unwrap();
    let (status, v) = send(
        state,
        key,
        "POST",
        "/api/v1/runs",
        json!({"source": source}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    v["id"].as_str().unwrap().to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stop_is_delivered_as_run_budget_exceeded() {
    let (state, key) = state().await;
    let body =
        json!({"url": "http://127.0.0.1:9/hook", "events": ["run.budget_exceeded", "run.paused"]});
    let (status, v) = send(&state, &key, "POST", "/api/v1/webhooks/subscriptions", body).await;
    assert_eq!(status, 201, "{v}");
    let sub = v["id"].as_str().unwrap().to_string();
    let id = start(&state, &key).await;
    until(&state, &key, &id, "budget_exceeded").await;
    state.control.webhook_fan_out(100).await.unwrap();
    let uri = format!("/api/v1/webhooks/subscriptions/{sub}/deliveries");
    let (status, v) = send(&state, &key, "GET", &uri, Value::Null).await;
    assert_eq!(status, 200, "{v}");
    let ds = v["deliveries"].as_array().unwrap();
    assert_eq!(ds.len(), 1, "one stop, not also a run.paused: {v}");
    assert_eq!(ds[0]["event_type"], "run.budget_exceeded", "{v}");
    let pause = &ds[0]["payload"]["data"]["event"]["pause"];
    assert_eq!(pause["reason"], "budget", "{v}");
    assert_eq!(pause["by_agent"]["writer"]["tokens"], 100, "{v}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_budget_stop_is_shown_and_resumed_with_more_over_http() {
    let (state, key) = state().await;
    let id = start(&state, &key).await;
    let v = until(&state, &key, &id, "budget_exceeded").await;
    let b = &v["budget"];
    assert_eq!(
        b["limits"],
        json!({"tokens": 150, "model_calls": 10}),
        "{b}"
    );
    assert_eq!(b["agent_limits"]["writer"]["tokens"], 1000, "{b}");
    assert_eq!(b["spent"]["tokens"], 200, "{b}");
    assert_eq!(b["by_agent"]["editor"]["tokens"], 100, "{b}");
    assert_eq!(b["by_model"]["scripted/spender"]["model_calls"], 2, "{b}");
    assert_eq!(
        b["exceeded"],
        json!({"kind": "tokens", "limit": 150.0, "spent": 200.0}),
        "{b}"
    );
    // Listed by its status.
    let (status, v) = send(
        &state,
        &key,
        "GET",
        "/api/v1/runs?status=budget_exceeded",
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["runs"][0]["id"], id.as_str(), "{v}");
    let resume = format!("/api/v1/runs/{id}/resume");
    // Without more: 409.
    let (status, v) = send(&state, &key, "POST", &resume, json!({})).await;
    assert_eq!(status, 409, "{v}");
    assert_eq!(v["error"]["code"], "conflict", "{v}");
    let msg = v["error"]["message"].as_str().unwrap();
    assert!(msg.contains("still over its budget"), "{msg}");
    // A change that is not one: 422 naming the field.
    for bad in [
        json!({"tokenz": "+5"}),
        json!({"tokens": true}),
        json!({"cost_usd": "+1"}),
    ] {
        let (status, v) = send(&state, &key, "POST", &resume, json!({"budget": bad})).await;
        assert_eq!(status, 422, "{bad}: {v}");
        assert_eq!(v["error"]["details"]["field"], "budget", "{v}");
    }
    // The body docs/api.md gives for the resume route.
    let (status, v) = send(
        &state,
        &key,
        "POST",
        &resume,
        json!({"budget": {"tokens": "+100"}}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"applied": true, "queued": false, "status": "running"})
    );
    let v = until(&state, &key, &id, "succeeded").await;
    // The raise is audited with the resume.
    let (_, a) = send(
        &state,
        &key,
        "GET",
        "/api/v1/audit?action=run.resume",
        Value::Null,
    )
    .await;
    let budgets: Vec<&Value> = a["entries"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["details"].get("budget"))
        .collect();
    assert_eq!(budgets, [&json!(["tokens=+100"])], "{a}");
    assert_eq!(v["budget"]["spent"]["tokens"], 300, "{v}");
    assert_eq!(v["budget"]["changes"], json!(["tokens=+100"]), "{v}");
}
