//! `examples/deploy-app.yaml` through the real binary: a scripted deployer agent deploys the
//! run's workspace with the `deploy` tool; the call's result (url, command, health) is in the
//! run log, and the app does not outlive the process. A `tool: deploy` step whose app dies
//! fails with the app's output.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Db, baton, lock, process_tier_works, summary, text};
use serde_json::Value;

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/deploy-app.yaml")
        .display()
        .to_string()
}

#[test]
fn the_example_validates() {
    let o = baton().args(["validate", &example()]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn a_scripted_deployer_deploys_the_workspace() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let o = db.run(&["run", &example(), "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"]["healthy"], true, "{s}");
    assert_eq!(s["outputs"]["command"], "python3 app.py", "{s}");
    let id = s["id"].as_str().unwrap().to_string();

    let o = db.run(&["runs", "show", &id, "--step", "deploy", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let calls = v["tool_calls"].as_array().unwrap();
    let names: Vec<&str> = calls.iter().map(|c| c["tool"].as_str().unwrap()).collect();
    assert_eq!(names, ["workspace.list", "deploy"], "{v}");
    let out = &calls[1]["output"];
    let url = out["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{out}");
    assert_eq!(out["target"], "local-sandbox");
    assert_eq!(out["command"], "python3 app.py");
    assert_eq!(out["health"]["status"], 200, "{out}");
    assert_eq!(out["health"]["body"], "{\"status\": \"ok\"}", "{out}");
    assert!(
        out["deployment"].as_str().unwrap().starts_with("ls-"),
        "{out}"
    );
    assert_eq!(calls[1]["key"], format!("{id}:deploy:1/2"));

    // The run's process has ended, and its app with it.
    let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
    let gone = baton_sandbox::deploy::probe(addr, "/health", std::time::Duration::from_secs(2));
    assert!(gone.is_err(), "the app outlived baton: {gone:?}");
}

const FAILING: &str = r#"version: 1
name: deploy-fails
steps:
  - id: write
    tool: workspace.write
    with: { path: app.py, content: "import sys\nprint('port 8000 needs config.toml', file=sys.stderr)\nsys.exit(4)\n" }
  - id: deploy
    tool: deploy
    with: { start: "python3 app.py", port: 8000, timeout: 10s }
"#;

#[test]
fn a_deploy_whose_app_exits_fails_its_step_with_the_output() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let wf = db.workflow("fails.yaml", FAILING);
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&o);
    let err = s["error"].to_string();
    assert!(err.contains("exited with status 4"), "{s}");
    assert!(err.contains("port 8000 needs config.toml"), "{s}");
}
