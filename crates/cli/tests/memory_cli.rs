//! `baton memory` against the real binary: runs that write workflow memory through the
//! `memory.workflow.*` tools, then `list`, `get`, `history` and `recall` as docs/memory.md
//! shows them; tenants kept apart; a clear error without the embedding model.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;

use common::{Db, baton, summary, text};
use serde_json::Value;

const NOTES: &str = "version: 1
name: notes
steps:
  - id: log
    tool: memory.workflow.append
    with: { key: seen, value: \"{{ run.id }}\" }
  - id: plan
    tool: memory.workflow.set
    with: { key: plan, value: { day: tuesday } }
  - id: read
    tool: memory.workflow.get
    with: { key: plan }
";

fn ok(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or(Value::Null)
}

#[test]
fn runs_share_workflow_memory_and_the_cli_shows_it() {
    let db = Db::new();
    let wf = db.workflow("notes.yaml", NOTES);
    let first = db.run(&["run", &wf, "--json"]);
    assert_eq!(summary(&first)["status"], "succeeded", "{}", text(&first));
    let second = db.run(&["run", &wf, "--json"]);
    assert_eq!(summary(&second)["status"], "succeeded", "{}", text(&second));
    let run2 = summary(&second)["id"].as_str().unwrap().to_string();

    let listed = ok(&db.run(&["memory", "list", "notes", "--json"]));
    let keys: Vec<(&str, u64)> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["key"].as_str().unwrap(), e["version"].as_u64().unwrap()))
        .collect();
    assert_eq!(keys, [("plan", 2), ("seen", 2)]);
    let table = db.run(&["memory", "list", "notes"]);
    assert!(text(&table).contains("KEY"), "{}", text(&table));

    let plan = ok(&db.run(&["memory", "get", "notes", "plan"]));
    assert_eq!(plan, serde_json::json!({"day": "tuesday"}));
    let full = ok(&db.run(&["memory", "get", "notes", "seen", "--json"]));
    assert_eq!(full["value"].as_array().unwrap().len(), 2);
    assert_eq!(full["run_id"], run2.as_str());

    let history = ok(&db.run(&["memory", "history", "notes", "seen", "--json"]));
    let steps: Vec<(&str, &str)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["op"].as_str().unwrap(), e["step"].as_str().unwrap()))
        .collect();
    assert_eq!(steps, [("append", "log"), ("append", "log")]);

    let missing = db.run(&["memory", "get", "notes", "nope"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(
        text(&missing).contains("no memory key 'nope' in workflow notes"),
        "{}",
        text(&missing)
    );
    let bad_k = db.run(&["memory", "recall", "notes", "x", "-k", "0"]);
    assert!(
        text(&bad_k).contains("k must be from 1 to 100"),
        "{}",
        text(&bad_k)
    );

    // Another tenant's workflow of the same name has its own (empty) memory.
    ok(&db.run(&["tenants", "create", "other"]));
    let other = ok(&db.run(&["memory", "list", "notes", "--tenant", "other", "--json"]));
    assert_eq!(other, serde_json::json!([]));
}

#[test]
fn recall_without_the_model_says_how_to_install_it() {
    let db = Db::new();
    let o = baton()
        .args(["memory", "recall", "notes", "anything"])
        .arg("--db")
        .arg(db.path())
        .env("BATON_MODELS_DIR", db.0.path().join("no-models"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("make model-embed"), "{}", text(&o));
}

#[test]
fn the_team_memory_example_recalls_by_meaning() {
    let Some(_) = baton_test_support::found_or_skip(
        "BATON_REQUIRE_EMBED_MODEL",
        "the team-memory example (remember and recall with MiniLM)",
        baton_embed::installed_model_dir().map_err(|e| e.to_string()),
    ) else {
        return;
    };
    let db = Db::new();
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../examples/team-memory.yaml");
    let o = db.run(&["run", example.to_str().unwrap(), "--json"]);
    assert_eq!(summary(&o)["status"], "succeeded", "{}", text(&o));
    let hits = ok(&db.run(&[
        "memory",
        "recall",
        "team-memory",
        "When do we ship to production?",
        "-k",
        "1",
        "--json",
    ]));
    assert_eq!(
        hits[0]["text"], "Production deploys happen on Tuesdays after the standup.",
        "{hits}"
    );
    assert_eq!(hits[0]["metadata"]["source"], "team-memory");
    let shown = db.run(&["memory", "recall", "team-memory", "deploy day"]);
    assert!(text(&shown).contains("Tuesdays"), "{}", text(&shown));
    // The commands docs/memory.md shows, as shown (after the run above).
    for args in documented_commands() {
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let o = db.run(&refs);
        assert_eq!(o.status.code(), Some(0), "baton {args:?}: {}", text(&o));
    }
}

/// The `baton memory ...` lines of docs/memory.md's shell block, split like a shell would
/// (double quotes group words; `#` starts a comment).
fn documented_commands() -> Vec<Vec<String>> {
    let doc = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../docs/memory.md");
    let text = std::fs::read_to_string(doc).unwrap();
    let mut out = Vec::new();
    for line in text.lines().filter(|l| l.starts_with("baton memory ")) {
        let mut words = Vec::new();
        let (mut word, mut quoted) = (String::new(), false);
        for c in line.chars() {
            match c {
                '"' => quoted = !quoted,
                '#' if !quoted => break,
                ' ' if !quoted => {
                    if !word.is_empty() {
                        words.push(std::mem::take(&mut word));
                    }
                }
                c => word.push(c),
            }
        }
        if !word.is_empty() {
            words.push(word);
        }
        out.push(words[1..].to_vec());
    }
    assert_eq!(out.len(), 4, "docs/memory.md shows four memory commands");
    out
}
