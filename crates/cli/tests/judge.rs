//! The `judge` join end to end with the scripted provider: the documented example runs and
//! `baton runs show` shows the judge's decision as docs/workflow-format.md does; a judge
//! choosing no candidate fails the step with that in the log.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};

/// The decision line docs/workflow-format.md shows for the judge example.
fn documented_line() -> String {
    let doc = std::fs::read_to_string(root().join("docs/workflow-format.md")).unwrap();
    let (_, after) = doc.split_once("lists the judge's decision").unwrap();
    let block = after.split("```").nth(1).unwrap();
    block.lines().nth(2).unwrap().to_string()
}

#[test]
fn the_judge_picks_a_branch_and_runs_show_says_why() {
    let db = Db::new();
    let file = root().join("examples/judge.yaml").display().to_string();
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(summary(&o)["outputs"]["name"], "taskrun");
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let show = db.run(&["runs", "show", &id]);
    let shown = String::from_utf8_lossy(&show.stdout).to_string();
    let line = documented_line();
    assert!(
        shown.lines().any(|l| l == line),
        "`{line}` not in:\n{shown}"
    );
    let json = db.run(&["runs", "show", &id, "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).unwrap();
    assert_eq!(v["joins"][0]["strategy"], "judge");
    assert_eq!(v["joins"][0]["winner"], "plain_name");
    // The progress says when the judge is asked.
    let o = db.run(&["run", &file]);
    assert!(
        text(&o).contains("names: judge reviewer asked to choose between bold_name, plain_name"),
        "{}",
        text(&o)
    );
}

/// The judge's answer schema lists the candidates: a judge naming another branch is asked
/// again with the error, and fails the step once its re-asks are spent.
#[test]
fn a_judge_choosing_no_candidate_is_asked_again_then_fails_the_step() {
    let db = Db::new();
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    db.workflow(
        "scripted/picky.yaml",
        "replies:\n  - json: { choice: c, reason: \"c looks best\" }\n    repeat: true\n",
    );
    let file = db.workflow(
        "w.yaml",
        r#"version: 1
name: picky
agents:
  reviewer: { model: scripted/picky }
steps:
  - id: pick
    parallel:
      - { id: a, tool: echo, with: { text: "A" } }
      - { id: b, tool: echo, with: { text: "B" } }
    join: { strategy: judge, judge: reviewer }
"#,
    );
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(summary(&o)["status"], "failed", "{}", text(&o));
    let error = summary(&o)["error"].as_str().unwrap().to_string();
    assert!(
        error.starts_with(
            "step 'pick' failed: judge `reviewer` failed: the answer did not match the output schema after 3 attempts"
        ),
        "{error}"
    );
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let show = text(&db.run(&["runs", "show", &id]));
    assert!(
        show.contains("pick  judge: no winner, the step failed (judge `reviewer` failed"),
        "{show}"
    );
    // Each re-ask named what was wrong.
    let logs = text(&db.run(&["runs", "logs", &id, "--json"]));
    assert_eq!(logs.matches("\"output_rejected\"").count(), 2, "{logs}");
}

#[test]
fn a_registry_agent_judges_as_steps_name_it() {
    let db = Db::new();
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    db.workflow(
        "scripted/arbiter.yaml",
        "replies:\n  - json: { choice: b, reason: \"b is shorter\" }\n    repeat: true\n",
    );
    let agent = db.workflow("arbiter.yaml", "name: arbiter\nmodel: scripted/arbiter\n");
    let o = db.run(&["agents", "create", &agent]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let workflow = |judge: &str| {
        format!(
            "version: 1\nname: registry-judge\nsteps:\n  - id: pick\n    parallel:\n      - {{ id: a, tool: echo, with: {{ text: \"long answer\" }} }}\n      - {{ id: b, tool: echo, with: {{ text: \"short\" }} }}\n    join: {{ strategy: judge, judge: \"{judge}\" }}\n"
        )
    };
    for judge in ["arbiter", "arbiter@1"] {
        let file = db.workflow("w.yaml", &workflow(judge));
        let o = db.run(&["run", &file, "--json"]);
        assert_eq!(summary(&o)["status"], "succeeded", "{judge}: {}", text(&o));
        assert_eq!(summary(&o)["outputs"], "short");
    }
    let file = db.workflow("w.yaml", &workflow("arbiter@9"));
    let o = db.run(&["validate", &file]);
    let shown = text(&o);
    assert!(
        shown.contains(
            "agent `arbiter` has no version 9 (versions 1 to 1) (at steps[0].join.judge)"
        ),
        "{shown}"
    );
}
