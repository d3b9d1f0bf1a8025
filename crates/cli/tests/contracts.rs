//! Merge contracts end to end: the documented example runs to the documented state, and
//! `baton validate` rejects two parallel branches writing one key without a contract, naming
//! both writers' positions as docs/workflow-format.md shows.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};

#[test]
fn the_example_combines_parallel_writes_by_their_contracts() {
    let db = Db::new();
    let file = root().join("examples/contracts.yaml").display().to_string();
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let outputs = &summary(&o)["outputs"];
    assert_eq!(
        outputs["findings"],
        serde_json::json!(["token written to the log", "long function"])
    );
    assert_eq!(outputs["score"], 3);
    assert_eq!(outputs["verdict"], "block", "security is first in priority");
}

/// The error line docs/workflow-format.md shows for an uncontracted key.
fn documented_error() -> String {
    let doc = std::fs::read_to_string(root().join("docs/workflow-format.md")).unwrap();
    let (_, after) = doc.split_once("can write without a contract:").unwrap();
    let block = after.split("```").nth(1).unwrap();
    block.lines().nth(1).unwrap().to_string()
}

#[test]
fn validate_names_both_writers_of_an_uncontracted_key() {
    let db = Db::new();
    let file = db.workflow(
        "w.yaml",
        r#"version: 1
name: uncontracted
state: { findings: [] }
contracts:
  findings: { type: list, reduce: append }
steps:
  - id: review
    parallel:
      - id: security
        steps:
          - { id: scan, tool: echo }
          - { id: flag, tool: state.set, with: { findings: "{{ steps.scan.output }}", verdict: block } }
      - id: style
        tool: state.set
        with: { findings: nits, verdict: ship }
"#,
    );
    let o = db.run(&["validate", &file]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    let shown = text(&o);
    let documented = documented_error();
    let (_, rest) = documented.split_once("w.yaml").unwrap();
    assert!(
        shown.contains(&format!("{file}{rest}")),
        "`{documented}` not in:\n{shown}"
    );
}
