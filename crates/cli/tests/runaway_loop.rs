//! Unchanging-loop detection end to end: the loop docs/workflow-format.md shows is stopped as
//! a runaway with the error the docs show, and `unchanged_loop: 0` lets it run to its
//! `max_visits`.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};

/// The YAML and the error the runaway section of docs/workflow-format.md shows.
fn documented() -> (String, String) {
    let doc = std::fs::read_to_string(root().join("docs/workflow-format.md")).unwrap();
    let (_, after) = doc
        .split_once("instead of running to its `max_visits`:")
        .unwrap();
    let mut blocks = after.split("```").skip(1).step_by(2);
    let yaml = blocks
        .next()
        .unwrap()
        .trim_start_matches("yaml")
        .to_string();
    let error = blocks
        .next()
        .unwrap()
        .trim_start_matches("text")
        .trim()
        .to_string();
    (yaml, error)
}

#[test]
fn a_loop_that_changes_nothing_stops_as_the_docs_show() {
    let db = Db::new();
    let (yaml, error) = documented();
    let file = db.workflow("stuck.yaml", &format!("version: 1\nname: stuck{yaml}"));
    let o = db.run(&["run", &file, "--json"]);
    assert_eq!(summary(&o)["status"], "failed", "{}", text(&o));
    assert_eq!(summary(&o)["error"], error.as_str());
    let polls = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter(|l| l.contains(r#""type":"step_started","step":"poll""#))
        .count();
    assert_eq!(polls, 4, "four visits, the last three changing nothing");

    let off = yaml.replace("unchanged_loop: 3", "unchanged_loop: 0");
    let file = db.workflow("off.yaml", &format!("version: 1\nname: stuck{off}"));
    let o = db.run(&["run", &file, "--json"]);
    let error = summary(&o)["error"].as_str().unwrap().to_string();
    assert!(error.contains("past its max_visits of 20"), "{error}");
}
