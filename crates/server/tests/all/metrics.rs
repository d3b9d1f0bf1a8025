//! `/metrics` after a scripted run driven by the server (through the router, no socket): the
//! families derived from run events carry the right labels and values. The sandbox and
//! delivery families over a real sandbox and receiver: `crates/cli/tests/observe.rs`.

use std::sync::Arc;

use axum::body::Body;
use axum::http::Request;
use baton_llm::Providers;
use baton_llm::scripted::{Reply, ScriptedModel};
use baton_server::{AppState, app};
use baton_types::Usage;
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::key_for;

const TALK: &str = "version: 1\nname: talk\nagents:\n  bot: { model: scripted/bot, tools: [echo] }\nsteps:\n  - { id: ask, agent: bot, prompt: Say something }\n  - { id: say, tool: echo, with: { text: done } }\n";

fn reply(mut r: Reply, prompt: u64, completion: u64, cost: f64) -> Reply {
    r.usage = Some(Usage {
        prompt_tokens: prompt,
        completion_tokens: completion,
        cost_usd: cost,
    });
    r
}

fn state() -> AppState {
    let models = Providers::default();
    let replies = vec![
        reply(Reply::tool_call("echo", json!({"text": "hi"})), 10, 4, 0.5),
        reply(Reply::text("done"), 20, 6, 0.25),
    ];
    models
        .scripted
        .insert("bot", Arc::new(ScriptedModel::new("bot", replies).unwrap()));
    let store = Arc::new(baton_store::memory::MemoryStore::new());
    let services = baton_engine::Services {
        store: store.clone(),
        models: Arc::new(models),
        tools: Arc::new(baton_tools::Registry::with_builtins()),
    };
    let control = baton_control::Control::new(services, store.clone())
        .with_webhooks(store, baton_control::webhooks::AddressPolicy::default());
    AppState::new(control, Providers::default())
}

async fn send(
    state: &AppState,
    key: Option<&str>,
    method: &str,
    uri: &str,
    body: Value,
) -> (u16, String) {
    let mut req = Request::builder()
        .method(method)
        .uri(uri)
        .header("content-type", "application/json");
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    let resp = app(state.clone())
        .oneshot(req.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = resp.status().as_u16();
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    (status, String::from_utf8_lossy(&bytes).into_owned())
}

fn value(text: &str, sample: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {sample} in:\n{text}"))
}

#[tokio::test]
async fn a_scripted_run_shows_in_the_run_step_model_and_webhook_families() {
    let state = state();
    let key = key_for(&state).await;
    let (status, body) = send(
        &state,
        Some(&key),
        "POST",
        "/api/v1/runs",
        json!({"source": TALK}),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    let id = serde_json::from_str::<Value>(&body).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let mut f = state
        .control
        .follow(&baton_control::Caller::local(), &id, 0)
        .await
        .unwrap();
    while let Some(e) = f.next().await {
        e.unwrap();
    }
    // The log can be read before the bus has the last events: wait for the run's task to end
    // (it has published everything by then).
    for _ in 0..500 {
        if state.control.active_runs().is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // An inbound hook that does not exist: refused.
    let (status, _) = send(
        &state,
        None,
        "POST",
        "/hooks/wh_0123456789abcdef",
        json!({}),
    )
    .await;
    assert_eq!(status, 404);

    let (status, text) = send(&state, None, "GET", "/metrics", Value::Null).await;
    assert_eq!(status, 200);
    assert_eq!(value(&text, "baton_runs{status=\"succeeded\"}"), 1.0);
    assert_eq!(value(&text, "baton_runs{status=\"failed\"}"), 0.0);
    assert_eq!(
        value(
            &text,
            "baton_step_duration_seconds_count{kind=\"agent\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    assert_eq!(
        value(
            &text,
            "baton_step_duration_seconds_count{kind=\"tool\",outcome=\"succeeded\"}"
        ),
        1.0
    );
    let m = "provider=\"scripted\",model=\"scripted/bot\"";
    assert_eq!(
        value(
            &text,
            &format!("baton_model_request_duration_seconds_count{{{m}}}")
        ),
        2.0
    );
    assert_eq!(
        value(
            &text,
            &format!("baton_model_tokens_total{{{m},direction=\"prompt\"}}")
        ),
        30.0
    );
    assert_eq!(
        value(
            &text,
            &format!("baton_model_tokens_total{{{m},direction=\"completion\"}}")
        ),
        10.0
    );
    assert_eq!(
        value(&text, &format!("baton_model_cost_usd_total{{{m}}}")),
        0.75
    );
    assert_eq!(
        value(&text, "baton_webhook_inbound_total{outcome=\"refused\"}"),
        1.0
    );
    // Families without samples yet are still declared, with their type.
    for family in [
        "# TYPE baton_sandbox_executions_total counter",
        "# TYPE baton_webhook_deliveries_total counter",
        "# TYPE baton_step_duration_seconds histogram",
        "# TYPE baton_runs gauge",
    ] {
        assert!(text.contains(family), "{family}:\n{text}");
    }
    // No run id, key or tenant becomes a label.
    assert!(!text.contains(&id), "{text}");
}
