//! `baton runs fork` end to end: the real binary forks a finished run before a step with an
//! edited output, after a step with another model, detached then resumed, and refuses bad
//! requests with exit code 2 and a reason.

// End-to-end tests run the real binary (and kill it).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Db, baton, summary, text};
use serde_json::Value;

const PIPELINE: &str = r#"version: 1
name: pipeline
agents:
  writer: { model: scripted/writer }
  editor: { model: scripted/editor }
steps:
  - id: draft
    agent: writer
    prompt: "Write a draft about ducks."
  - id: edit
    agent: editor
    prompt: "Edit this draft: {{ steps.draft.output }}"
  - id: publish
    tool: echo
    with: { text: "published: {{ steps.edit.output }}" }
"#;

/// A database with the pipeline and its scripted models, and one finished run of it.
fn parent() -> (Db, String) {
    let db = Db::new();
    let scripted = db.0.path().join("scripted");
    std::fs::create_dir(&scripted).unwrap();
    for (name, replies) in [
        ("writer", "  - { text: ducks quack, repeat: true }\n"),
        (
            "editor",
            "  - { match: EDITED, text: the editor saw the edit, repeat: true }\n  - { text: the editor saw the original, repeat: true }\n",
        ),
        (
            "editor2",
            "  - { text: another model wrote this, repeat: true }\n",
        ),
        (
            "slow",
            "  - { text: slow but sure, delay: 2s, repeat: true }\n",
        ),
    ] {
        std::fs::write(
            scripted.join(format!("{name}.yaml")),
            format!("replies:\n{replies}"),
        )
        .unwrap();
    }
    let wf = db.workflow("pipeline.yaml", PIPELINE);
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["outputs"], "published: the editor saw the original");
    (db, s["id"].as_str().unwrap().to_string())
}

fn show(db: &Db, run: &str) -> Value {
    let o = db.run(&["runs", "show", run, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_fork_before_a_step_sees_the_edited_output() {
    let (db, run) = parent();
    let o = db.run(&[
        "runs",
        "fork",
        &run,
        "--before",
        "edit",
        "--set",
        "steps.draft.output=\"EDITED ducks\"",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["outputs"], "published: the editor saw the edit");
    let fork = s["id"].as_str().unwrap();
    assert_ne!(fork, run);
    let v = show(&db, fork);
    assert_eq!(v["forked_from"]["run"], run.as_str());
    assert!(v["forked_from"]["seq"].as_u64().unwrap() > 1, "{v}");
    let o = db.run(&["runs", "show", fork]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains(&format!("forked    from run {run} at event")),
        "{out}"
    );
    // The edit is in the fork's log, the parent is as it was.
    let o = db.run(&["runs", "logs", fork]);
    assert!(String::from_utf8_lossy(&o.stdout).contains("state_edited"));
    assert_eq!(
        show(&db, &run)["outputs"],
        "published: the editor saw the original"
    );
}

#[test]
fn a_fork_with_another_model_uses_it() {
    let (db, run) = parent();
    let o = db.run(&[
        "runs",
        "fork",
        &run,
        "--after",
        "draft",
        "--model",
        "editor=scripted/editor2",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        summary(&o)["outputs"],
        "published: another model wrote this"
    );
}

#[test]
fn a_fork_with_a_state_key_set_logs_the_edit() {
    let (db, run) = parent();
    let o = db.run(&[
        "runs",
        "fork",
        &run,
        "--after",
        "draft",
        "--set",
        "state.tries=0",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fork = summary(&o)["id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "state", &fork]);
    let st: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(st["state"]["tries"], 0, "{st}");
    let o = db.run(&["runs", "logs", &fork, "--json"]);
    let edit = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .find(|e| e["type"] == "state_edited")
        .unwrap();
    assert_eq!(
        edit["target"],
        serde_json::json!({"kind": "state", "key": "tries"})
    );
    assert_eq!(edit["value"], 0);
    assert_eq!(edit["by"], "local");
}

#[test]
fn a_detached_fork_is_resumed_like_any_run() {
    let (db, run) = parent();
    let o = db.run(&["runs", "fork", &run, "--after", "draft", "--detach"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fork = String::from_utf8_lossy(&o.stdout).trim().to_string();
    assert_eq!(fork.len(), 32, "{}", text(&o));
    let o = db.run(&["resume", &fork, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["id"], fork.as_str());
    assert_eq!(s["outputs"], "published: the editor saw the original");
}

#[test]
fn a_fork_killed_mid_step_resumes_with_its_own_key() {
    let (db, run) = parent();
    let mut child = baton()
        .args([
            "runs",
            "fork",
            &run,
            "--after",
            "draft",
            "--model",
            "editor=scripted/slow",
        ])
        .args(["--json", "--db"])
        .arg(db.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut started = Value::Null;
    for line in lines {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "step_started" && v["step"] == "edit" {
            started = v;
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let fork = started["run_id"].as_str().unwrap().to_string();
    assert!(
        started["key"].as_str().unwrap().starts_with(&fork),
        "{started}"
    );
    let o = db.run(&["runs", "show", &fork]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("interrupted"),
        "{}",
        text(&o)
    );
    let o = db.run(&["resume", &fork, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(summary(&o)["outputs"], "published: slow but sure");
    // The step cut short ran again in the resumed process, as the attempt it was (the fork's
    // key), and only then succeeded.
    let o = db.run(&["runs", "logs", &fork, "--json"]);
    let evs: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .collect();
    let of_edit = |kind: &str| {
        evs.iter()
            .filter(|e| e["type"] == kind && e["step"] == "edit")
            .collect::<Vec<_>>()
    };
    let starts = of_edit("step_started");
    assert_eq!(starts.len(), 1, "{starts:?}");
    assert_eq!(starts[0]["key"], started["key"]);
    let resumed = evs
        .iter()
        .position(|e| e["type"] == "run_started" && e["resumed"] == true)
        .unwrap();
    let done = evs
        .iter()
        .position(|e| e["type"] == "step_succeeded" && e["step"] == "edit")
        .unwrap();
    assert!(resumed < done, "{evs:?}");
}

#[test]
fn bad_forks_are_refused_with_a_reason() {
    let (db, run) = parent();
    let before = String::from_utf8_lossy(&db.run(&["runs", "list"]).stdout).to_string();
    for (args, says) in [
        (vec!["--at", "999"], "error: --at: the run has events 1 to"),
        (
            vec!["--before", "nope"],
            "error: --before: the workflow has no step 'nope'",
        ),
        (
            vec!["--before", "edit", "--set", "steps.edit.output=1"],
            "error: --set: steps.edit.output: step edit has no output",
        ),
        (
            vec!["--at", "2", "--set", "input.x=1"],
            "error: --set 'input.x'",
        ),
        (
            vec!["--at", "2", "--set", "inputs.x=1"],
            "error: --set: unknown input 'x'",
        ),
        (
            vec!["--at", "2", "--model", "ghost=scripted/editor2"],
            "error: --model: the workflow has no agent 'ghost'",
        ),
        (
            vec!["--at", "2", "--model", "editor=scripted/missing"],
            "scripted/missing",
        ),
        (vec![], "--at"),
    ] {
        let mut all = vec!["runs", "fork", run.as_str()];
        all.extend(args.iter().copied());
        let o = db.run(&all);
        assert_eq!(o.status.code(), Some(2), "{args:?}: {}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(err.contains(says), "{args:?}: {err}");
    }
    let o = db.run(&[
        "runs",
        "fork",
        "0123456789abcdef0123456789abcdef",
        "--at",
        "1",
    ]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no run"),
        "{}",
        text(&o)
    );
    let after = String::from_utf8_lossy(&db.run(&["runs", "list"]).stdout).to_string();
    assert_eq!(before, after, "a refused fork stored a run");
}
