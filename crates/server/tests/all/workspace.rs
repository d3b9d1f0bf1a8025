//! The workspace routes through the router: a run whose steps write and patch files shows its
//! history, a step's diff and the whole run's, is rolled back as before a step (audited as
//! `run.rollback`), and refuses a viewer's rollback (403), an unknown step (404) and another
//! tenant (404).

use std::sync::Arc;

use baton_llm::Providers;
use baton_server::AppState;
use baton_tools::workspace::{Limits, Workspaces};
use serde_json::json;

use super::{TwoTenants, reaches, refused, send_json as send, two_tenants};

const FILES: &str = "version: 1
name: files
steps:
  - id: create
    tool: workspace.write
    with: { path: app/main.py, content: \"print('v1')\\n\" }
  - id: fix
    tool: workspace.apply_patch
    with: { patch: \"--- a/app/main.py\\n+++ b/app/main.py\\n@@ -1 +1 @@\\n-print('v1')\\n+print('v2')\\n\" }
";

/// An app whose runs have workspaces under `dir`.
fn state_in(dir: &std::path::Path) -> AppState {
    let store = Arc::new(baton_store::memory::MemoryStore::new());
    let workspaces = Workspaces::new(dir.join("workspaces"), Limits::default());
    let mut tools = baton_tools::Registry::with_builtins();
    workspaces.register(&mut tools);
    let services = baton_engine::Services {
        store: store.clone(),
        models: Arc::new(Providers::default()),
        tools: Arc::new(tools),
    };
    let control = baton_control::Control::new(services, store.clone())
        .with_workspaces(workspaces)
        .with_webhooks(store, baton_control::webhooks::AddressPolicy::default());
    AppState::new(control, Providers::default())
}

#[tokio::test]
async fn a_runs_workspace_shows_its_history_diffs_and_rolls_back() {
    let dir = tempfile::tempdir().unwrap();
    let state = state_in(dir.path());
    let TwoTenants {
        editor,
        viewer,
        admin,
        other,
        ..
    } = two_tenants(&state, "admin").await;
    let (status, v) = send(
        &state,
        &editor,
        "POST",
        "/api/v1/runs",
        json!({"source": FILES}),
    )
    .await;
    assert_eq!(status, 201, "{v}");
    let run = v["id"].as_str().unwrap().to_string();
    reaches(&state, &editor, &run, "succeeded").await;

    let (status, log) = send(
        &state,
        &viewer,
        "GET",
        &format!("/api/v1/runs/{run}/workspace"),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{log}");
    let steps: Vec<&str> = log["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["create", "fix"], "{log}");
    assert_eq!(log["changes"][1]["summary"], "fix: patch app/main.py");

    let diff_of = |step: &str| format!("/api/v1/runs/{run}/workspace/diff?step={step}");
    let (status, d) = send(&state, &viewer, "GET", &diff_of("fix"), json!(null)).await;
    assert_eq!(status, 200, "{d}");
    assert!(
        d["diff"]
            .as_str()
            .unwrap()
            .contains("-print('v1')\n+print('v2')"),
        "{d}"
    );
    let (status, d) = send(
        &state,
        &viewer,
        "GET",
        &format!("/api/v1/runs/{run}/workspace/diff"),
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{d}");
    assert!(
        d["diff"].as_str().unwrap().contains("+++ b/app/main.py"),
        "{d}"
    );
    let (status, v) = send(&state, &viewer, "GET", &diff_of("deploy"), json!(null)).await;
    refused(status, &v, (404, "not_found"));
    assert!(
        v["error"]["message"]
            .as_str()
            .unwrap()
            .contains("step `deploy` changed no file"),
        "{v}"
    );

    let rollback = format!("/api/v1/runs/{run}/workspace/rollback");
    let (status, v) = send(&state, &viewer, "POST", &rollback, json!({"step": "fix"})).await;
    refused(status, &v, (403, "forbidden"));
    let (status, v) = send(&state, &other, "POST", &rollback, json!({"step": "fix"})).await;
    refused(status, &v, (404, "not_found"));
    let (status, v) = send(&state, &editor, "POST", &rollback, json!({"stepp": "fix"})).await;
    assert!((400..500).contains(&status), "{status} {v}");
    let (status, v) = send(&state, &editor, "POST", &rollback, json!({"step": "fix"})).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["commit"].as_str().unwrap().len(), 40, "{v}");
    let files = dir.path().join("workspaces").join(&run).join("files");
    assert_eq!(
        std::fs::read_to_string(files.join("app/main.py")).unwrap(),
        "print('v1')\n"
    );

    let (status, audit) = send(
        &state,
        &admin,
        "GET",
        "/api/v1/audit?action=run.rollback",
        json!(null),
    )
    .await;
    assert_eq!(status, 200, "{audit}");
    let entries = audit["entries"]
        .as_array()
        .or(audit.as_array())
        .unwrap()
        .clone();
    assert!(
        entries.iter().any(|e| e["outcome"] == "ok")
            && entries.iter().any(|e| e["outcome"] == "denied"),
        "{audit}"
    );
}
