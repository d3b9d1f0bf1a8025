//! `POST /api/v1/runs/{id}/fork` through the router: 201 with the new run (which runs in the
//! background on the edited state), 404 for another tenant's run, 403 for a viewer, 422 for a
//! bad cut or edit, with the one error body.

use baton_llm::Providers;
use baton_server::AppState;
use serde_json::{Value, json};

use super::{TwoTenants, send_json as send, test_state, two_tenants};

const THREE: &str = "version: 1\nname: three\nsteps:\n  - { id: one, tool: echo, with: { text: one } }\n  - { id: two, tool: echo, with: { text: \"two saw {{ steps.one.output }}\" } }\n  - { id: three, tool: echo, with: { text: \"three saw {{ steps.two.output }}\" } }\n";

/// The run once it has ended (it runs in the background).
async fn finished(state: &AppState, key: &str, run: &str) -> Value {
    for _ in 0..500 {
        let (status, v) = send(
            state,
            key,
            "GET",
            &format!("/api/v1/runs/{run}"),
            Value::Null,
        )
        .await;
        assert_eq!(status, 200, "{v}");
        if v["run"]["status"] == "succeeded" || v["run"]["status"] == "failed" {
            return v;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("run {run} did not end");
}

#[tokio::test]
async fn a_run_is_forked_over_the_api_and_refused_with_reasons() {
    let state = test_state(Providers::default());
    let TwoTenants {
        editor,
        viewer,
        other,
        ..
    } = two_tenants(&state, "editor").await;
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        "/api/v1/runs",
        json!({"source": THREE}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["id"].as_str().unwrap().to_string();
    finished(&state, &editor, &run).await;
    let uri = format!("/api/v1/runs/{run}/fork");

    let body = json!({"before": "two", "set": {"steps.one.output": "EDITED"}});
    let (status, v) = send(&state, &editor, "POST", &uri, body.clone()).await;
    assert_eq!(status, 201, "{v}");
    assert_eq!(v["reused"], false);
    let fork = v["id"].as_str().unwrap().to_string();
    assert_eq!(v["url"], format!("/api/v1/runs/{fork}"));
    let d = finished(&state, &editor, &fork).await;
    assert_eq!(d["run"]["outputs"], "three saw two saw EDITED", "{d}");
    assert_eq!(d["forked_from"]["run"], run.as_str());

    let (status, v) = send(&state, &other, "POST", &uri, body.clone()).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, v) = send(&state, &viewer, "POST", &uri, body).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (403, Some("forbidden")),
        "{v}"
    );
    for (body, field, says) in [
        (json!({"at": 999}), "at", "no event 999"),
        (json!({"before": "nope"}), "before", "no step 'nope'"),
        (json!({}), "at", "exactly one of"),
        (json!({"at": 1, "after": "one"}), "at", "exactly one of"),
        (
            json!({"at": 2, "set": {"input.x": 1}}),
            "set",
            "steps.ID.output",
        ),
        (
            json!({"at": 2, "set": {"inputs.x": 1}}),
            "set",
            "unknown input 'x'",
        ),
        (
            json!({"before": "one", "set": {"steps.one.output": 1}}),
            "set",
            "no output",
        ),
        (
            json!({"at": 2, "models": {"ghost": "scripted/x"}}),
            "models",
            "no agent 'ghost'",
        ),
    ] {
        let (status, v) = send(&state, &editor, "POST", &uri, body.clone()).await;
        assert_eq!(status, 422, "{body}: {v}");
        assert_eq!(v["error"]["code"], "invalid", "{v}");
        assert_eq!(v["error"]["details"]["field"], field, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{body}: {message}");
    }
}
