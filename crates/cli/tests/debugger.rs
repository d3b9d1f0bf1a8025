//! The debugger through the real binary: a run stops at its breakpoint, `baton runs edit`
//! changes a finished step's output, `baton resume --step` runs one step, `baton runs
//! breakpoints --add` on the paused run is honoured when it continues, and the last step sees
//! the edited value. Bad edits and unknown steps are refused with the flag and the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, summary, text};
use serde_json::Value;

const CHAIN: &str = r#"version: 1
name: chain
steps:
  - { id: draft, tool: echo, with: { text: "draft" } }
  - { id: review, tool: echo, with: { text: "review of {{ steps.draft.output }}" } }
  - { id: polish, tool: echo, with: { text: "polished {{ steps.review.output }}" } }
  - { id: publish, tool: echo, with: { text: "published {{ steps.polish.output }} ({{ state.note }})" } }
"#;

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// `baton runs breakpoints RUN --json`.
fn debug_of(db: &Db, id: &str) -> Value {
    let o = db.run(&["runs", "breakpoints", id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    serde_json::from_slice(&o.stdout).unwrap()
}

#[test]
fn break_edit_step_add_a_breakpoint_and_continue() {
    let db = Db::new();
    let wf = db.workflow("chain.yaml", CHAIN);
    let o = db.run(&["run", &wf, "--json", "--break-before", "review"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();

    // Shown, as text and as JSON.
    let o = db.run(&["runs", "breakpoints", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = stdout(&o);
    assert!(out.contains("pauses before: review"), "{out}");
    assert!(out.contains("paused before review (breakpoint)"), "{out}");
    let d = debug_of(&db, &id);
    assert_eq!(d["breakpoints"], serde_json::json!(["review"]), "{d}");
    assert_eq!(d["paused"]["step"], "review", "{d}");

    // A value that is not JSON: the --set and the parse error are named, nothing changes.
    let o = db.run(&["runs", "edit", &id, "--set", "steps.draft.output=EDITED"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("--set steps.draft.output: the value is not JSON (expected value"),
        "{e}"
    );
    // A step that has not run has no output to edit.
    let o = db.run(&["runs", "edit", &id, "--set", "steps.polish.output=\"x\""]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("polish has no output yet"),
        "{}",
        text(&o)
    );

    let o = db.run(&[
        "runs",
        "edit",
        &id,
        "--set",
        "steps.draft.output=\"EDITED\"",
        "--set",
        "state.note=\"a note\"",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("set steps.draft.output, state.note"),
        "{}",
        text(&o)
    );

    // One step: review runs with the edit, the run stops before polish.
    let o = db.run(&["resume", &id, "--step", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let d = debug_of(&db, &id);
    assert_eq!(d["stepping"], true, "{d}");
    assert_eq!(d["paused"]["step"], "polish", "{d}");
    let o = db.run(&["runs", "breakpoints", &id]);
    assert!(
        stdout(&o).contains("paused before polish (stepping)"),
        "{}",
        text(&o)
    );

    // A breakpoint added on the paused run: an unknown step is refused with the steps listed.
    let o = db.run(&["runs", "breakpoints", &id, "--add", "nope"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("no step 'nope'") && e.contains("draft, review, polish, publish"),
        "{e}"
    );
    let o = db.run(&[
        "runs",
        "breakpoints",
        &id,
        "--add",
        "publish",
        "--remove",
        "review",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stdout(&o).contains("pauses before: publish"),
        "{}",
        text(&o)
    );

    // Continue (no longer stepping): polish runs, the new breakpoint stops it before publish.
    let o = db.run(&["resume", &id, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let d = debug_of(&db, &id);
    assert_eq!(d["paused"]["step"], "publish", "{d}");
    assert_eq!(d["stepping"], false, "{d}");

    let o = db.run(&["runs", "breakpoints", &id, "--clear"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stdout(&o).contains("has no breakpoints"), "{}", text(&o));
    let o = db.run(&["resume", &id, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(
        summary(&o)["outputs"],
        "published polished review of EDITED (a note)",
        "{}",
        text(&o)
    );

    // Once it finished: nothing left to pause before, nothing to edit.
    let o = db.run(&["runs", "breakpoints", &id, "--set", "draft,review"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("already succeeded"), "{}", text(&o));
    let o = db.run(&["runs", "edit", &id, "--set", "state.note=1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("not paused"), "{}", text(&o));
}
