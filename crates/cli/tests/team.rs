//! Agents as a team through the real binary: `baton agents pause|resume|stop RUN AGENT`, the
//! run that waits for a paused agent, the team in `baton runs show`, and the errors a wrong
//! agent or a change that changes nothing gets.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, run_id_of, text};
use serde_json::Value;

const WORKFLOW: &str = r#"
version: 1
name: team-life
agents:
  writer: { model: scripted/team }
  critic: { model: scripted/team }
steps:
  - id: gate
    human: { prompt: "Start writing?" }
  - { id: draft, agent: writer, prompt: "Draft it" }
  - { id: critique, agent: critic, prompt: "Critique: {{ steps.draft.output }}" }
"#;

const REPLIES: &str = r#"
replies:
  - { match: "^Draft", text: "a draft", repeat: true }
  - { match: "^Critique", text: "fine", repeat: true }
"#;

/// A run of the workflow waiting at its gate; its id.
fn waiting_run(db: &Db) -> String {
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    db.workflow("scripted/team.yaml", REPLIES);
    let file = db.workflow("team.yaml", WORKFLOW);
    let o = db.run(&["run", &file]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    run_id_of(&o)
}

fn show(db: &Db, id: &str) -> Value {
    let o = db.run(&["runs", "show", id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn a_paused_agent_holds_the_run_until_it_is_resumed() {
    let db = Db::new();
    let id = waiting_run(&db);
    let o = db.run(&["agents", "pause", &id, "writer"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains(&format!("agent writer of run {id} is paused")),
        "{}",
        text(&o)
    );
    // A second pause changes nothing; an unknown agent is named with those there are.
    let o = db.run(&["agents", "pause", &id, "writer"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains(&format!("run {id}: agent 'writer' is already paused")),
        "{}",
        text(&o)
    );
    let o = db.run(&["agents", "stop", &id, "nobody"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        text(&o).contains("no agent 'nobody' in this run (agents: writer, critic)"),
        "{}",
        text(&o)
    );

    // The gate opens; everything left belongs to the paused writer: the run pauses for it.
    let o = db.run(&["runs", "approve", &id]);
    assert!(
        text(&o).contains("waiting for paused agents: writer"),
        "{}",
        text(&o)
    );
    let v = show(&db, &id);
    assert_eq!(v["status"], "paused");
    assert_eq!(v["team"]["agents"]["writer"]["state"], "paused");
    assert_eq!(v["team"]["agents"]["writer"]["by"], "local");
    assert_eq!(v["team"]["agents"]["critic"]["state"], "idle");
    let o = db.run(&["runs", "show", &id]);
    let shown = text(&o);
    assert!(
        shown.contains("agents:") && shown.contains("writer  paused"),
        "{shown}"
    );
    // A plain resume of the run does not lift an agent's pause.
    let o = db.run(&["resume", &id]);
    assert!(
        text(&o).contains("waits for paused agents (writer)"),
        "{}",
        text(&o)
    );

    let o = db.run(&["agents", "resume", &id, "writer"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        text(&o).contains("is resumed (the run is succeeded)"),
        "{}",
        text(&o)
    );
    let v = show(&db, &id);
    assert_eq!(v["outputs"], "fine");
    assert_eq!(v["team"]["agents"]["writer"]["state"], "idle");
}

#[test]
fn a_stopped_agent_fails_its_steps_with_the_reason_and_cannot_come_back() {
    let db = Db::new();
    let id = waiting_run(&db);
    let o = db.run(&["agents", "stop", &id, "critic"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = db.run(&["runs", "approve", &id]);
    assert!(
        text(&o).contains("agent 'critic' was stopped by local"),
        "{}",
        text(&o)
    );
    let v = show(&db, &id);
    assert_eq!(v["status"], "failed");
    assert_eq!(v["team"]["agents"]["critic"]["state"], "stopped");
    assert_eq!(v["team"]["agents"]["writer"]["state"], "idle");
    let o = db.run(&["agents", "resume", &id, "critic"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("already failed"), "{}", text(&o));
}

/// The handoff example with the coder's last reply held back by `delay` (a kill lands there).
fn handoff_replies(delay: &str) -> String {
    let example = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../examples/scripted/handoff.yaml"),
    )
    .unwrap();
    example.replace(
        "    turn: 2\n    text: \"built:",
        &format!("    turn: 2\n    delay: {delay}\n    text: \"built:"),
    )
}

#[test]
fn kill_9_in_the_middle_of_a_delivery_then_resume_loses_and_doubles_nothing() {
    use std::io::{BufRead, BufReader};
    use std::process::{Command, Stdio};
    let db = Db::new();
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    let example =
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/team-handoff.yaml");
    let file = db.workflow(
        "team-handoff.yaml",
        &std::fs::read_to_string(example).unwrap(),
    );
    let held = handoff_replies("60s");
    assert!(
        held.contains("delay: 60s"),
        "the fixture changed shape:\n{held}"
    );
    db.workflow("scripted/handoff.yaml", &held);
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args([
            "run",
            &file,
            "--json",
            "--db",
            &db.path().display().to_string(),
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    // The coder got its message, answered its first turn with a memory write, and waits for
    // its model's second reply: kill -9 there.
    let mut id = None;
    for line in BufReader::new(child.stdout.take().unwrap()).lines() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap_or_default();
        id = id.or_else(|| v["run_id"].as_str().map(String::from));
        if v["type"] == "memory_written" && v["agent"] == "coder" {
            break;
        }
    }
    child.kill().unwrap();
    let _ = child.wait();
    let id = id.expect("the run printed its events");
    db.workflow("scripted/handoff.yaml", &handoff_replies("0s"));
    let o = db.run(&["resume", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = db.run(&["runs", "logs", &id, "--json"]);
    let kinds: Vec<String> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter_map(|v| v["type"].as_str().map(String::from))
        .collect();
    let count = |k: &str| kinds.iter().filter(|x| *x == k).count();
    assert_eq!(count("message_sent"), 1, "{kinds:?}");
    assert_eq!(count("messages_delivered"), 1, "{kinds:?}");
    assert_eq!(count("memory_written"), 2, "{kinds:?}");
    let v = show(&db, &id);
    assert_eq!(v["status"], "succeeded");
    assert_eq!(v["team"]["memory"]["log"]["version"], 1);
    assert_eq!(v["outputs"]["log"].as_array().unwrap().len(), 1);
}

/// The design debate of the README runs as documented: proposals, critiques that reach the
/// others as channel messages, a judge's choice with its reason, and the decision record in
/// shared memory, all in `baton runs show`.
#[test]
fn the_design_debate_runs_and_shows_its_channel_judge_and_record() {
    let db = Db::new();
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let o = db.run(&[
        "run",
        &root
            .join("examples/design-debate.yaml")
            .display()
            .to_string(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = run_id_of(&o);
    let v = show(&db, &id);
    assert!(
        v["outputs"]["decision"]
            .as_str()
            .unwrap()
            .starts_with("Raft across three data centers")
    );
    assert_eq!(v["outputs"]["record"].as_array().unwrap().len(), 1);
    assert_eq!(v["team"]["memory"]["decisions"]["by"], "scribe");
    // Three proposals' critiques broadcast to two others each, every one delivered.
    assert_eq!(v["team"]["messages_sent"], 3);
    assert!(
        v["team"]["inboxes"]
            .as_object()
            .is_none_or(|m| m.is_empty()),
        "{}",
        v["team"]
    );
    assert_eq!(
        v["team"]["channels"]["design"],
        serde_json::json!(["pragmatist", "purist", "skeptic"])
    );
    let shown = text(&db.run(&["runs", "show", &id]));
    for part in [
        "judge: final_principled won",
        "#design: pragmatist, purist, skeptic",
        "decisions (v1 by scribe)",
    ] {
        assert!(shown.contains(part), "{part} missing:\n{shown}");
    }
    // The critiques reached the critics after them, then the others' final turns: the
    // purist's critique (1), the skeptic's (2), the pragmatist's final (2), the purist's (1).
    let logs = text(&db.run(&["runs", "logs", &id, "--json"]));
    assert_eq!(logs.matches("\"messages_delivered\"").count(), 4, "{logs}");
}
