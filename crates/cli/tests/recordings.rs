//! Whole-run recordings through the real binary (docs/recordings.md): `baton runs replay`
//! re-executes a finished run from its log and finds it identical (agents with tool calls,
//! tool steps, the workspace example) without writing to it; a tampered log diverges with
//! the event, the step and what differs, and exit code 1; a fork on another scripted model
//! compares with its parent step by step (outputs, tokens, a diff), and two workspace runs
//! compare file by file.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};
use serde_json::Value;

const PIPELINE: &str = r#"version: 1
name: pipeline
agents:
  writer: { model: scripted/writer, tools: [echo] }
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

/// A database with the pipeline and its scripted models (the writer calls a tool first), and
/// one finished run of it.
fn recorded() -> (Db, String) {
    let db = Db::new();
    let scripted = db.0.path().join("scripted");
    std::fs::create_dir(&scripted).unwrap();
    for (name, replies) in [
        (
            "writer",
            "  - { tool_calls: [{ name: echo, arguments: { text: notes } }] }\n  - { text: ducks quack }\n",
        ),
        (
            "editor",
            "  - { text: ducks quack loudly, usage: { prompt_tokens: 20, completion_tokens: 4 } }\n",
        ),
        (
            "editor2",
            "  - { text: another model wrote this, usage: { prompt_tokens: 20, completion_tokens: 6 } }\n",
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
    assert_eq!(s["outputs"], "published: ducks quack loudly", "{s}");
    (db, s["id"].as_str().unwrap().to_string())
}

fn replay_json(db: &Db, run: &str) -> (Option<i32>, Value) {
    let o = db.run(&["runs", "replay", run, "--json"]);
    let v = serde_json::from_slice(&o.stdout).unwrap_or_else(|_| panic!("{}", text(&o)));
    (o.status.code(), v)
}

fn events(db: &Db, run: &str) -> String {
    let o = db.run(&["runs", "logs", run, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn a_recorded_run_replays_identically_without_being_written() {
    let (db, run) = recorded();
    let log = events(&db, &run);
    let o = db.run(&["runs", "replay", &run]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verdict: identical"), "{out}");
    assert!(out.contains("steps replayed   3"), "{out}");
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");

    let (code, r) = replay_json(&db, &run);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["verdict"], "identical");
    assert_eq!(r["status"], "succeeded");
    assert_eq!(r["recorded_status"], "succeeded");
    // Three model replies, the writer's tool call, the publish step.
    assert_eq!(r["effects"], 5, "{r}");
    assert_eq!(r["events_matched"], r["events_recorded"], "{r}");
    assert!(r["elapsed_ms"].as_f64().unwrap() < 1000.0, "{r}");
    assert_eq!(events(&db, &run), log, "a replay wrote to the run");
}

#[test]
fn the_workspace_example_replays_identically() {
    let db = Db::new();
    let wf = root().join("examples/workspace-patch.yaml");
    let o = db.run(&["run", wf.to_str().unwrap(), "--json"]);
    assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    let run = summary(&o)["id"].as_str().unwrap().to_string();
    let files = db.run(&["runs", "files", &run, "--json"]);
    let (code, r) = replay_json(&db, &run);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["effects"], 4, "{r}");
    // The workspace history is untouched: nothing was written or committed again.
    assert_eq!(
        db.run(&["runs", "files", &run, "--json"]).stdout,
        files.stdout
    );
}

#[test]
fn a_tampered_log_diverges_with_where_and_what() {
    let (db, run) = recorded();
    // As if the workflow had asked another prompt: the recorded prompt no longer matches the
    // one the program renders.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let n = conn
        .execute(
            "UPDATE events SET payload = replace(payload, 'about ducks', 'about geese') WHERE kind = 'step_progress'",
            [],
        )
        .unwrap();
    assert!(n >= 1);
    drop(conn);
    let o = db.run(&["runs", "replay", &run]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("verdict: diverged"), "{out}");
    assert!(out.contains("step draft"), "{out}");
    assert!(
        out.contains("step_progress (prompt) differs at /progress/messages"),
        "{out}"
    );
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");

    let (code, r) = replay_json(&db, &run);
    assert_eq!(code, Some(1));
    assert_eq!(r["verdict"], "diverged");
    let d = &r["divergence"];
    assert_eq!(d["step"], "draft", "{r}");
    assert!(d["seq"].as_u64().unwrap() > 1, "{r}");
    assert!(d["expected"].to_string().contains("about geese"), "{d}");
    assert!(d["got"].to_string().contains("about ducks"), "{d}");
}

#[test]
fn a_tampered_reply_changes_the_final_state() {
    let (db, run) = recorded();
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    // The editor's recorded reply says something else than its recorded output.
    conn.execute(
        "UPDATE events SET payload = replace(payload, 'ducks quack loudly', 'geese honk') WHERE kind = 'step_progress' AND step = 'edit'",
        [],
    )
    .unwrap();
    drop(conn);
    let (code, r) = replay_json(&db, &run);
    assert_eq!(code, Some(1), "{r}");
    let d = &r["divergence"];
    assert_eq!(d["step"], "edit", "{r}");
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .starts_with("step_succeeded differs at /output"),
        "{r}"
    );
}

#[test]
fn a_fork_on_another_model_compares_with_its_parent() {
    let (db, run) = recorded();
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
    let fork = summary(&o)["id"].as_str().unwrap().to_string();

    let o = db.run(&["runs", "compare", &run, &fork]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.lines().all(|l| l.chars().count() <= 100), "{out}");
    assert!(out.contains(&format!("fork of {} @", &run[..12])), "{out}");
    let edit_row = out.lines().find(|l| l.starts_with("edit ")).unwrap();
    assert!(edit_row.ends_with("differs"), "{out}");
    let draft_row = out.lines().find(|l| l.starts_with("draft ")).unwrap();
    assert!(draft_row.trim_end().ends_with("same"), "{out}");
    assert!(out.contains("model  A: scripted/editor"), "{out}");
    assert!(out.contains("B: scripted/editor2"), "{out}");
    assert!(out.contains("-ducks quack loudly"), "{out}");
    assert!(out.contains("+another model wrote this"), "{out}");

    let o = db.run(&["runs", "compare", &run, &fork, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    let step = |id: &str| {
        c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == id)
            .cloned()
            .unwrap()
    };
    assert_eq!(step("edit")["differs"], true);
    assert_eq!(step("edit")["a"]["models"][0], "scripted/editor");
    assert_eq!(step("edit")["b"]["models"][0], "scripted/editor2");
    assert_eq!(step("edit")["b"]["output"], "another model wrote this");
    assert!(step("edit")["a"]["tokens"].as_u64().unwrap() > 0, "{c}");
    assert_ne!(
        step("edit")["a"]["tokens"],
        step("edit")["b"]["tokens"],
        "{c}"
    );
    assert_eq!(step("publish")["differs"], true);
    assert_eq!(c["a"]["status"], "succeeded");
    assert_eq!(c["b"]["forked_from"]["run"], run.as_str());

    // A fork replays from where it was forked: the copied events are taken as they are,
    // what the fork itself ran is run again and found identical.
    let (code, r) = replay_json(&db, &fork);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["steps"], 2, "{r}");
}

/// A model named from the environment (`${BATON_MODEL:-...}`) replays as the run used it,
/// whatever the environment of the replay says.
#[test]
fn a_replay_uses_the_model_the_run_used_not_the_environments() {
    let (db, _) = recorded();
    let file = db.workflow(
        "env-model.yaml",
        "version: 1\nname: env-model\nagents:\n  editor: { model: \"${BATON_MODEL:-local/smollm2}\" }\nsteps:\n  - { id: edit, agent: editor, prompt: Edit it }\n",
    );
    let o = common::baton()
        .env("BATON_MODEL", "scripted/editor")
        .args(["run", &file, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let run = s["id"].as_str().unwrap().to_string();
    let (code, r) = replay_json(&db, &run);
    assert_eq!(code, Some(0), "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
}

const FILES: &str = r#"version: 1
name: files
inputs:
  v: { type: string }
steps:
  - id: write
    tool: workspace.write
    with: { path: app.py, content: "print('{{ inputs.v }}')\n" }
  - id: extra
    if: "inputs.v == 'b'"
    then: more
    else: done
  - id: more
    tool: workspace.write
    with: { path: more.txt, content: "more\n" }
  - id: done
    tool: echo
    with: { text: done }
"#;

#[test]
fn two_workspace_runs_compare_file_by_file() {
    let db = Db::new();
    let wf = db.workflow("files.yaml", FILES);
    let mut runs = Vec::new();
    for v in ["a", "b"] {
        let o = db.run(&["run", &wf, "--input", &format!("v={v}"), "--json"]);
        assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
        runs.push(summary(&o)["id"].as_str().unwrap().to_string());
    }
    let o = db.run(&["runs", "compare", &runs[0], &runs[1]]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("0 only in A, 1 only in B, 1 changed, 0 the same"),
        "{out}"
    );
    assert!(out.contains("only in B  more.txt"), "{out}");
    assert!(out.contains("changed    app.py"), "{out}");
    assert!(
        out.contains("-print('a')") && out.contains("+print('b')"),
        "{out}"
    );
    let o = db.run(&["runs", "compare", &runs[0], &runs[1], "--json"]);
    let c: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(c["workspace"]["only_in_b"][0], "more.txt", "{c}");
    assert_eq!(c["workspace"]["changed"][0]["path"], "app.py", "{c}");

    let o = db.run(&["runs", "compare", &runs[0], "ffffffff"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("no run ffffffff"), "{}", text(&o));
}

#[test]
fn live_tools_run_the_tools_again_in_a_new_run_and_report_what_differs() {
    let db = Db::new();
    let wf = root().join("examples/workspace-patch.yaml");
    let o = db.run(&["run", wf.to_str().unwrap(), "--json"]);
    assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    let run = summary(&o)["id"].as_str().unwrap().to_string();

    let o = db.run(&["runs", "replay", &run, "--live-tools", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let r: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["mode"], "live_tools");
    // No model in this workflow: nothing was served, the tools really ran.
    assert_eq!(r["effects"], 0, "{r}");
    let new = r["replay_run"].as_str().unwrap().to_string();
    assert_ne!(new, run);
    let files = db.run(&["runs", "files", &new]);
    assert!(
        String::from_utf8_lossy(&files.stdout).contains("fix: patch app/main.py"),
        "{}",
        text(&files)
    );
    let shown: Value =
        serde_json::from_slice(&db.run(&["runs", "show", &new, "--json"]).stdout).unwrap();
    assert_eq!(shown["forked_from"]["run"], run.as_str(), "{shown}");

    // The recording says the file read back something else than the tools now give.
    let conn = rusqlite::Connection::open(db.path()).unwrap();
    let n = conn
        .execute(
            "UPDATE events SET payload = replace(payload, 'v2', 'v3') WHERE kind = 'step_succeeded' AND step = 'show' AND run_id = ?1",
            [&run],
        )
        .unwrap();
    assert_eq!(n, 1);
    drop(conn);
    let o = db.run(&["runs", "replay", &run, "--live-tools"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("with live tools, as new run"), "{out}");
    assert!(
        out.contains("step show: step_succeeded differs at /output/content"),
        "{out}"
    );
}
