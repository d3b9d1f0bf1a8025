//! Conflict-resolution joins end to end: the documented example runs, `baton runs show` lists
//! its decisions as docs/workflow-format.md shows them, and a tied vote with `tie_break: fail`
//! fails its step with the decision in the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};

/// The block of docs/workflow-format.md after `baton runs show RUN` for that run lists:
fn documented_show_lines() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/workflow-format.md")).unwrap();
    let (_, after) = doc
        .split_once("`baton runs show RUN` for that run lists:")
        .unwrap();
    let block = after.split("```").nth(1).unwrap();
    block
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(str::to_string)
        .collect()
}

#[test]
fn runs_show_lists_the_join_decisions_as_documented() {
    let db = Db::new();
    let file = root().join("examples/joins.yaml").display().to_string();
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let outputs = &summary(&o)["outputs"];
    assert_eq!(outputs["verdict"], "Approve");
    assert_eq!(outputs["answer"], "answer from the backup");
    assert_eq!(outputs["config"]["log"]["level"], "debug");
    let show = db.run(&["runs", "show", &id]);
    let shown = String::from_utf8_lossy(&show.stdout).to_string();
    let lines = documented_show_lines();
    assert_eq!(lines.len(), 4, "{lines:?}");
    for line in lines {
        assert!(
            shown.lines().any(|l| l == line),
            "`{line}` not in:\n{shown}"
        );
    }
    let json = db.run(&["runs", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["joins"][0]["winner"], "first");
    assert_eq!(v["joins"][0]["losers"][0], "third");
}

#[test]
fn a_tied_vote_with_tie_break_fail_fails_the_step() {
    let db = Db::new();
    let file = db.workflow(
        "tie.yaml",
        r#"version: 1
name: tie
steps:
  - id: verdict
    parallel:
      - { id: a, tool: echo, with: { text: "yes" } }
      - { id: b, tool: echo, with: { text: "no" } }
    join: { strategy: vote, tie_break: fail }
"#,
    );
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(summary(&o)["status"], "failed", "{}", text(&o));
    let error = summary(&o)["error"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        error.contains("vote tied at 1 each: a | b (tie_break: fail)"),
        "{error}"
    );
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let show = db.run(&["runs", "show", &id]);
    assert!(
        String::from_utf8_lossy(&show.stdout)
            .contains("verdict  vote: no winner, the step failed (vote tied at 1 each: a | b (tie_break: fail))"),
        "{}",
        text(&show)
    );
}
