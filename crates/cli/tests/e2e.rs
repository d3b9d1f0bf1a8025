//! End-to-end tests: the real `baton` binary on the examples and on bad input.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::{Path, PathBuf};

use common::{Db, baton, summary, text};
use serde_json::Value;

fn examples() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples")
}

fn example(name: &str) -> String {
    examples().join(name).display().to_string()
}

#[test]
fn hello_runs_on_the_embedded_model() {
    let db = Db::new();
    let o = db.run(&["run", &example("hello.yaml"), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded");
    assert!(!s["outputs"].as_str().unwrap_or("").is_empty(), "{s}");
    // The embedded model's tokens arrive as model_delta lines that add up to its answer.
    let typed: String = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["type"] == "model_delta")
        .map(|v| v["text"].as_str().unwrap_or_default().to_string())
        .collect();
    assert_eq!(
        typed.trim(),
        s["outputs"].as_str().unwrap().trim(),
        "{}",
        text(&o)
    );
    // Plain output ends with a readable summary.
    let o = db.run(&["run", &example("hello.yaml"), "--input", "who=Ada"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("succeeded") && out.contains("greet"), "{out}");
}

#[test]
fn hello_runs_scripted_when_asked() {
    let db = Db::new();
    let o = baton()
        .env("BATON_MODEL", "scripted/hello")
        .args(["run", &example("hello.yaml"), "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        summary(&o)["outputs"],
        "Hello there! It is a pleasure to meet you."
    );
}

#[test]
fn branching_routes_by_the_classifier() {
    let db = Db::new();
    let o = db.run(&[
        "run",
        &example("branching.yaml"),
        "--json",
        "--input",
        "urgent=true",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["outputs"]["category"], "bug");
    let steps: Vec<String> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["step"].as_str().unwrap().to_string())
        .collect();
    assert!(
        steps.contains(&"bug_report".into()) && steps.contains(&"page_oncall".into()),
        "{steps:?}"
    );
    assert!(!steps.contains(&"answer".into()));
}

#[test]
fn parallel_review_fans_out_and_joins() {
    let db = Db::new();
    let t = std::time::Instant::now();
    let o = db.run(&["run", &example("parallel-review.yaml"), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(summary(&o)["outputs"].as_str().unwrap().contains("Verdict"));
    // Three 50 ms reviews ran at once, not one after the other (with generous slack).
    assert!(t.elapsed() < std::time::Duration::from_secs(5));
    // The parallel parent reports its span: at least its slowest child's 50 ms.
    let steps = summary(&o)["steps"].as_array().unwrap().clone();
    let reviews = steps.iter().find(|s| s["step"] == "reviews").unwrap();
    assert!(reviews["duration_ms"].as_u64().unwrap() >= 50, "{reviews}");
}

#[test]
fn loop_until_pass_loops_once() {
    let db = Db::new();
    let o = db.run(&["run", &example("loop-until-pass.yaml"), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["outputs"]["code"], "def add(a, b): return a + b");
    assert_eq!(s["outputs"]["passed"], true);
    let evs = String::from_utf8_lossy(&o.stdout);
    let implement_starts = evs
        .lines()
        .filter(|l| l.contains("\"step_started\"") && l.contains("\"implement\""))
        .count();
    assert_eq!(implement_starts, 2);
}

#[test]
fn human_approval_waits_then_continues_from_another_process() {
    let db = Db::new();
    let o = db.run(&["run", &example("human-approval.yaml"), "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "waiting");
    let id = s["id"].as_str().unwrap().to_string();
    // Rejecting goes back to the draft (on_error: goto draft), which waits again.
    let o = db.run(&["runs", "reject", &id, "--comment", "too short", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = db.run(&["runs", "approve", &id, "--step", "approve", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        summary(&o)["outputs"]
            .as_str()
            .unwrap()
            .starts_with("published:")
    );
    let o = db.run(&["runs", "approve", &id]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no step of run"),
        "{}",
        text(&o)
    );
}

#[test]
fn runs_list_show_logs_state() {
    let db = Db::new();
    let o = db.run(&["run", &example("branching.yaml"), "--json"]);
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "list"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&id),
        "{}",
        text(&o)
    );
    let o = db.run(&["runs", "show", &id, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["steps"][0]["step"], "classify");
    let o = db.run(&["runs", "logs", &id]);
    let logs = String::from_utf8_lossy(&o.stdout);
    assert!(
        logs.contains("run_created")
            && logs.contains("step_succeeded")
            && logs.contains("run_succeeded"),
        "{logs}"
    );
    let o = db.run(&["runs", "state", &id]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["inputs"]["urgent"], false);
    let o = db.run(&["runs", "show", "0123456789abcdef0123456789abcdef"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no run"),
        "{}",
        text(&o)
    );
    let o = db.run(&["runs", "show", "not-an-id"]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn breakpoints_stop_and_resume_continues() {
    let db = Db::new();
    let o = db.run(&[
        "run",
        &example("branching.yaml"),
        "--json",
        "--break-before",
        "route",
    ]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "paused");
    let id = s["id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "state", &id]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["steps"]["classify"]["output"]["category"], "bug");
    assert!(v["steps"].get("route").is_none());
    // Step through: one step at a time.
    let o = db.run(&["resume", &id, "--step", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let o = db.run(&["resume", &id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = db.run(&["run", &example("hello.yaml"), "--break-before", "nope"]);
    assert_eq!(o.status.code(), Some(2));
}

#[test]
fn bad_input_is_refused_with_clear_errors() {
    let db = Db::new();
    let dir = tempfile::tempdir().unwrap();
    // Unknown input, wrong type.
    let o = db.run(&[
        "run",
        &example("branching.yaml"),
        "--input",
        "urgent=maybe",
        "--input",
        "colour=red",
    ]);
    assert_eq!(o.status.code(), Some(2));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("urgent") && e.contains("boolean"), "{e}");
    // Invalid workflow: every error with file:line:column.
    let bad = dir.path().join("bad.yaml");
    std::fs::write(
        &bad,
        "version: 1\nname: bad\nsteps:\n  - id: a\n    tool: nosuchtool\n  - id: a\n    agnt: x\n",
    )
    .unwrap();
    let o = baton().args(["validate"]).arg(&bad).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = String::from_utf8_lossy(&o.stderr);
    assert!(e.contains("bad.yaml:"), "{e}");
    let o = db.run(&["run", bad.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2));
    // Invalid UTF-8 and malformed YAML.
    let bin = dir.path().join("bin.yaml");
    std::fs::write(&bin, b"version: 1\nname: \xff\xfe\n").unwrap();
    let o = baton().args(["validate"]).arg(&bin).output().unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .to_lowercase()
            .contains("utf-8"),
        "{}",
        text(&o)
    );
    let o = baton()
        .args(["validate", "/nonexistent/x.yaml"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    // Every example validates.
    for e in [
        "hello",
        "branching",
        "parallel-review",
        "loop-until-pass",
        "human-approval",
    ] {
        let o = baton()
            .args(["validate", &example(&format!("{e}.yaml"))])
            .output()
            .unwrap();
        assert_eq!(o.status.code(), Some(0), "{e}: {}", text(&o));
    }
}

#[test]
fn schema_is_json_schema() {
    let o = baton().arg("schema").output().unwrap();
    assert_eq!(o.status.code(), Some(0));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["properties"]["steps"].is_object(), "{v}");
}

#[test]
fn cancel_from_another_process() {
    let db = Db::new();
    let dir = tempfile::tempdir().unwrap();
    let wf = dir.path().join("slow.yaml");
    std::fs::write(
        &wf,
        "version: 1\nname: slow\nsteps:\n  - { id: wait, tool: sleep, with: { duration: 30s } }\n",
    )
    .unwrap();
    let mut child = baton()
        .args([
            "run",
            wf.to_str().unwrap(),
            "--json",
            "--db",
            db.path().to_str().unwrap(),
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
    let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
    let id = first["run_id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let status = child.wait().unwrap();
    assert_eq!(status.code(), Some(1));
    let o = db.run(&["runs", "show", &id, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["status"], "cancelled");
}
