//! `baton bench app` (docs/benchmarks.md, part of `make bench`): a recorded app-team run with
//! real tools and sandbox, split into model, sandbox and Baton's own time, then replayed.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{baton, root, text};
use serde_json::Value;

#[test]
fn the_app_workload_splits_a_recorded_run_and_replays_it() {
    if !common::process_tier_works() {
        return;
    }
    let _l = common::lock();
    let o = baton()
        .env("BATON_MODEL", "scripted/app-todo")
        .args(["bench", "app", "--runs", "2", "--workflow"])
        .arg(root().join("examples/app-team.yaml"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let lines: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let names: Vec<&str> = lines
        .iter()
        .map(|l| l["workload"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["app_team_run", "app_team_orchestration", "app_team_replay"]
    );
    let (run, orch, replay) = (&lines[0], &lines[1], &lines[2]);
    assert!(
        lines
            .iter()
            .all(|l| l["runs"] == 2 && l["framework"] == "baton")
    );
    let f = |v: &Value, k: &str| v[k].as_f64().unwrap_or_else(|| panic!("{k} in {v}"));
    // The tests really ran in the sandbox (two rounds of `python3 -m unittest`): sandbox time
    // is most of the run; the scripted model answers at once.
    assert!(
        f(run, "sandbox_ms") > 0.0 && f(run, "sandbox_ms") < f(run, "median_ms"),
        "{run}"
    );
    assert!(f(run, "model_ms") < f(run, "median_ms"), "{run}");
    // What is left is Baton's: positive, and the share it says.
    let pct = f(orch, "percent_of_run");
    assert!(
        f(orch, "median_ms") > 0.0 && pct > 0.0 && pct < 100.0,
        "{orch}"
    );
    assert!(f(orch, "other_tools_ms") <= f(orch, "median_ms"), "{orch}");
    // Other tools, each named: the coder wrote files, the scanner scanned.
    let tools = orch["tools_ms"]
        .as_object()
        .unwrap_or_else(|| panic!("{orch}"));
    for t in ["workspace.write", "security.scan"] {
        assert!(
            tools
                .get(t)
                .and_then(Value::as_f64)
                .is_some_and(|ms| ms > 0.0),
            "{t}: {orch}"
        );
    }
    // The replay (identical, or the workload fails) is timed.
    assert!(f(replay, "median_ms") > 0.0, "{replay}");
}

#[test]
fn the_app_workload_needs_a_workflow_file() {
    let o = baton()
        .args(["bench", "app", "--runs", "1"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("needs --workflow FILE"), "{}", text(&o));
    let o = baton()
        .args(["bench", "app", "--workflow", "no/such.yaml"])
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("no workflow file no/such.yaml"),
        "{}",
        text(&o)
    );
}
