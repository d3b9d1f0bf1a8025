//! `POST /api/v1/runs/{id}/edit` through the router: a run paused at a breakpoint takes the
//! edit and its next step sees it; 409 once it is not paused, 404 for another tenant's run,
//! 403 for a viewer, 422 for a bad path, with the one error body.

use baton_llm::Providers;
use serde_json::json;

use super::{key, key_for, reaches, refused, send_json as send, test_state};

pub(crate) const STOPS: &str = "version: 1\nname: stops\nsteps:\n  - { id: one, tool: echo, with: { text: one } }\n  - { id: two, tool: echo, with: { text: \"two saw {{ steps.one.output }} and {{ state.note }}\" } }\n";

#[tokio::test]
async fn a_paused_runs_state_is_edited_over_the_api_and_refused_with_reasons() {
    let state = test_state(Providers::default());
    let op = key_for(&state).await;
    for t in ["acme", "globex"] {
        let (status, v) = send(&state, &op, "POST", "/api/v1/tenants", json!({"id": t})).await;
        assert_eq!(status, 201, "{v}");
    }
    let editor = key(&state, &op, "acme", "editor").await;
    let viewer = key(&state, &op, "acme", "viewer").await;
    let other = key(&state, &op, "globex", "admin").await;
    let start = json!({"source": STOPS, "breakpoints": ["two"]});
    let (status, v) = send(&state, &editor, "POST", "/api/v1/runs", start).await;
    assert_eq!(status, 201, "{v}");
    let run = v["id"].as_str().unwrap().to_string();
    reaches(&state, &editor, &run, "paused").await;
    let uri = format!("/api/v1/runs/{run}/edit");
    let body = json!({"set": {"steps.one.output": "EDITED", "state.note": "a note"}});

    let (status, v) = send(&state, &other, "POST", &uri, body.clone()).await;
    refused(status, &v, (404, "not_found"));
    let (status, v) = send(&state, &viewer, "POST", &uri, body.clone()).await;
    refused(status, &v, (403, "forbidden"));
    for (bad, says) in [
        (json!({"set": {"steps.two.output": 1}}), "no output"),
        (json!({"set": {"inputs.x": 1}}), "fork it"),
        (json!({"set": {"nope": 1}}), "steps.ID.output"),
        (json!({"set": {}}), "at least one"),
    ] {
        let (status, v) = send(&state, &editor, "POST", &uri, bad.clone()).await;
        refused(status, &v, (422, "invalid"));
        assert_eq!(v["error"]["details"]["field"], "set", "{bad}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(says), "{bad}: {message}");
    }

    let (status, v) = send(&state, &editor, "POST", &uri, body.clone()).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["applied"], true, "{v}");
    let resume = format!("/api/v1/runs/{run}/resume");
    let (status, v) = send(&state, &editor, "POST", &resume, json!({})).await;
    assert_eq!(status, 200, "{v}");
    let d = reaches(&state, &editor, &run, "succeeded").await;
    assert_eq!(d["run"]["outputs"], "two saw EDITED and a note", "{d}");

    let (status, v) = send(&state, &editor, "POST", &uri, body).await;
    refused(status, &v, (409, "conflict"));
}
