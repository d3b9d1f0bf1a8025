//! `POST /api/v1/runs/{id}/replay` and `GET /api/v1/runs/{id}/compare/{other}` through the
//! router: a finished run replays identically (and stays as it was), a fork compares with
//! its parent step by step, another tenant's run is not found, a fork is refused as a replay.

use baton_llm::Providers;
use serde_json::{Value, json};

use super::{TwoTenants, send_json as send, test_state, two_tenants};

const THREE: &str = "version: 1\nname: three\nsteps:\n  - { id: one, tool: echo, with: { text: one } }\n  - { id: two, tool: echo, with: { text: \"two saw {{ steps.one.output }}\" } }\n  - { id: three, tool: echo, with: { text: \"three saw {{ steps.two.output }}\" } }\n";

async fn finished(state: &baton_server::AppState, key: &str, run: &str) -> Value {
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
async fn a_run_replays_identically_and_compares_with_its_fork() {
    let state = test_state(Providers::default());
    let TwoTenants { editor, other, .. } = two_tenants(&state, "editor").await;
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
    let before = finished(&state, &editor, &run).await;
    let events = |v: &Value| v["run"]["updated_at_ms"].clone();

    let uri = format!("/api/v1/runs/{run}/replay");
    let (status, r) = send(&state, &editor, "POST", &uri, json!({})).await;
    assert_eq!(status, 200, "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["mode"], "recorded");
    assert_eq!(r["steps"], 3, "{r}");
    assert_eq!(r["effects"], 3, "{r}");
    assert_eq!(r["status"], "succeeded");
    assert!(r.get("replay_run").is_none(), "{r}");
    // Read only: the run is as it was.
    let after = finished(&state, &editor, &run).await;
    assert_eq!(events(&before), events(&after));
    let (status, log) = send(
        &state,
        &editor,
        "GET",
        &format!("/api/v1/runs/{run}/events"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200);
    let n = log.as_array().map_or(0, Vec::len);

    let (status, v) = send(&state, &other, "POST", &uri, json!({})).await;
    assert_eq!(
        (status, v["error"]["code"].as_str()),
        (404, Some("not_found")),
        "{v}"
    );
    let (status, v) = send(&state, &editor, "POST", &uri, json!({"live": true})).await;
    assert_eq!(status, 422, "{v}");

    let body = json!({"before": "two", "set": {"steps.one.output": "EDITED"}});
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        &format!("/api/v1/runs/{run}/fork"),
        body,
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let fork = v["id"].as_str().unwrap().to_string();
    finished(&state, &editor, &fork).await;

    let (status, c) = send(
        &state,
        &editor,
        "GET",
        &format!("/api/v1/runs/{run}/compare/{fork}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 200, "{c}");
    assert_eq!(c["a"]["id"], run.as_str());
    assert_eq!(c["b"]["forked_from"]["run"], run.as_str());
    let step = |id: &str| {
        c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(step("one")["differs"], false, "{c}");
    assert_eq!(step("two")["differs"], true, "{c}");
    assert_eq!(step("two")["b"]["output"], "two saw EDITED");
    let diff = step("three")["diff"].as_str().unwrap().to_string();
    assert!(
        diff.contains("-three saw two saw one") && diff.contains("+three saw two saw EDITED"),
        "{diff}"
    );

    // A fork replays from where it was forked (its copied events are taken as they are).
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        &format!("/api/v1/runs/{fork}/replay"),
        json!({}),
    )
    .await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["verdict"], "identical", "{v}");
    let (status, v) = send(
        &state,
        &other,
        "GET",
        &format!("/api/v1/runs/{run}/compare/{fork}"),
        Value::Null,
    )
    .await;
    assert_eq!(status, 404, "{v}");

    // Nothing was written to the replayed run.
    let (_, log) = send(
        &state,
        &editor,
        "GET",
        &format!("/api/v1/runs/{run}/events"),
        Value::Null,
    )
    .await;
    assert_eq!(log.as_array().map_or(0, Vec::len), n);
}
