//! Budgets and runaway detection through the real binary: a run its budget stops (exit 4,
//! who spent what), refused resumes, `resume --budget` finishing it, a kill -9 after the raise
//! keeping it, and an agent repeating the same tool call stopped before it sends it again.
// End-to-end tests run (and kill) the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;

use common::{Db, baton, run_id_of, summary, text};
use serde_json::Value;

const WORKFLOW: &str = r#"
version: 1
name: spend
budget: { tokens: 150 }
agents:
  writer: { model: scripted/spender }
  editor: { model: scripted/spender }
steps:
  - { id: draft, agent: writer, prompt: "Draft it" }
  - { id: edit, agent: editor, prompt: "Edit it" }
  - { id: polish, agent: writer, prompt: "Polish it" }
"#;

/// Every reply costs 100 tokens; `polish_delay` holds the last one back.
fn spender(polish_delay: &str) -> String {
    format!(
        r#"
replies:
  - {{ match: "^Draft", text: "a draft", usage: {{ prompt_tokens: 60, completion_tokens: 40 }} }}
  - {{ match: "^Edit", text: "an edit", usage: {{ prompt_tokens: 60, completion_tokens: 40 }} }}
  - {{ match: "^Polish", text: "polished", delay: {polish_delay}, usage: {{ prompt_tokens: 60, completion_tokens: 40 }} }}
"#
    )
}

/// The workflow and its scripted replies in the test's directory.
fn setup(db: &Db, polish_delay: &str) -> String {
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    db.workflow("scripted/spender.yaml", &spender(polish_delay));
    db.workflow("spend.yaml", WORKFLOW)
}

fn show(db: &Db, id: &str) -> Value {
    let o = db.run(&["runs", "show", id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

/// Runs the workflow to its budget stop; returns the run's id.
fn stopped_run(db: &Db, file: &str) -> String {
    let o = db.run(&["run", file]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    for part in [
        "budget_exceeded",
        "budget exceeded: the run spent 200 tokens of its budget of 150",
        "agent editor: 100 tokens · 1 calls",
        "agent writer: 100 tokens · 1 calls",
        "model scripted/spender: 200 tokens · 2 calls",
        "--budget tokens=+N",
    ] {
        assert!(out.contains(part), "{part} missing: {}", text(&o));
    }
    // Live spend while it ran, then the stop.
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("edit: spent: run 200 tokens of 150")
            || out.contains("edit: spent: run 200 tokens of 150"),
        "{}",
        text(&o)
    );
    let id = run_id_of(&o);
    assert_eq!(show(db, &id)["status"], "budget_exceeded");
    id
}

#[test]
fn a_budget_stop_is_refused_a_plain_resume_and_finishes_with_more() {
    let db = Db::new();
    let file = setup(&db, "0ms");
    let id = stopped_run(&db, &file);
    // Listed by its status; shown with its limits and who spent what.
    let o = db.run(&["runs", "list", "--status", "budget_exceeded"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains(&id),
        "{}",
        text(&o)
    );
    let b = &show(&db, &id)["budget"];
    assert_eq!(b["limits"]["tokens"], 150);
    assert_eq!(b["spent"]["tokens"], 200);
    assert_eq!(b["by_agent"]["writer"]["model_calls"], 1);
    assert_eq!(b["by_model"]["scripted/spender"]["tokens"], 200);
    assert_eq!(b["exceeded"]["kind"], "tokens");
    // Without more, or with a change of a limit the workflow does not set: refused, nothing
    // logged.
    let o = db.run(&["resume", &id]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    assert!(
        text(&o).contains("still over its budget: the run spent 200 tokens of its budget of 150"),
        "{}",
        text(&o)
    );
    for (bad, why) in [
        ("tokenz=+5", "unknown budget limit 'tokenz'"),
        ("tokens=-5", "is not a whole number"),
        ("editor.tokens=+5", "agent 'editor' sets no tokens limit"),
        ("cost_usd=+1", "the workflow sets no cost_usd limit"),
    ] {
        let o = db.run(&["resume", &id, "--budget", bad]);
        assert_eq!(o.status.code(), Some(2), "{bad}: {}", text(&o));
        assert!(text(&o).contains(why), "{bad}: {}", text(&o));
    }
    // Not enough more: still over.
    let o = db.run(&["resume", &id, "--budget", "tokens=+50"]);
    assert_eq!(o.status.code(), Some(4), "{}", text(&o));
    // Enough: it finishes.
    let o = db.run(&["resume", &id, "--budget", "tokens=+100", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(summary(&o)["status"], "succeeded");
    let raised: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "budget_raised")
        .collect();
    assert_eq!(raised.len(), 1, "{}", text(&o));
    assert_eq!(raised[0]["changes"][0]["amount"], 100.0);
    let b = &show(&db, &id)["budget"];
    assert_eq!(b["limits"]["tokens"], 250);
    assert_eq!(b["spent"]["tokens"], 300);
    assert_eq!(b["changes"][0], "tokens=+100");
}

#[test]
fn a_kill_after_the_raise_keeps_the_raise_and_the_spend() {
    let db = Db::new();
    let file = setup(&db, "2s");
    let id = stopped_run(&db, &file);
    // Resume with more; kill -9 while the last step's model call is held back.
    let mut child = baton()
        .args(["resume", &id, "--budget", "tokens=+100", "--json", "--db"])
        .arg(db.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let lines = BufReader::new(child.stdout.take().unwrap()).lines();
    for line in lines {
        let line = line.unwrap();
        if line.contains("\"step_started\"") && line.contains("polish") {
            break;
        }
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let v = show(&db, &id);
    assert_eq!(v["status"], "interrupted", "{v}");
    assert_eq!(v["budget"]["limits"]["tokens"], 250);
    // A plain resume goes on: the raise is in the log, the spend counted once.
    let o = db.run(&["resume", &id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let b = &show(&db, &id)["budget"];
    assert_eq!(b["spent"]["tokens"], 300, "{b}");
    assert_eq!(b["spent"]["model_calls"], 3, "{b}");
}

#[test]
fn an_agent_repeating_the_same_tool_call_is_stopped_before_it_sends_it_again() {
    let db = Db::new();
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    db.workflow(
        "scripted/pinger.yaml",
        r#"
replies:
  - { tool_calls: [{ name: echo, arguments: { text: ping } }], repeat: true }
"#,
    );
    let file = db.workflow(
        "loop.yaml",
        r#"
version: 1
name: ping-pong
agents:
  pinger: { model: scripted/pinger, tools: [echo], max_tool_turns: 10 }
steps:
  - { id: ping, agent: pinger, prompt: "Ping until told to stop" }
"#,
    );
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "failed");
    let err = s["error"].as_str().unwrap();
    for part in [
        "runaway",
        "agent 'pinger'",
        "step 'ping'",
        "tool 'echo'",
        r#"{"text":"ping"}"#,
        "3rd time in a row",
    ] {
        assert!(err.contains(part), "{part} not in {err}");
    }
    // Two calls were sent; the third never was.
    let started = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains("\"tool_call_started\""))
        .count();
    assert_eq!(started, 2, "{}", text(&o));
}
