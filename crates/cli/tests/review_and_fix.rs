//! examples/code-review.yaml (parallel reviewers and a judge over a patch) and
//! examples/fix-failing-tests.yaml (debugger → coder → tester until green) through the real
//! binary: the judge's choice and reason, the patch really applied to the workspace, a patch
//! that does not apply failing the run with why; tests that really fail in the sandbox, then
//! pass after the debugger's fix, a replay to the same state, and a team that never gets to
//! green stopped by the loop's bound.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::Output;

use common::{Db, baton, lock, process_tier_works, root, summary, text};
use serde_json::Value;

fn example(name: &str) -> String {
    root().join("examples").join(name).display().to_string()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The results of every call of `tool` in the run's log, in order.
fn results(db: &Db, id: &str, tool: &str) -> Vec<Value> {
    ok(&db.run(&["runs", "logs", id, "--json"]))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "tool_call_finished" && e["tool"] == tool)
        .map(|e| e["output"].clone())
        .collect()
}

#[test]
fn three_reviewers_and_a_judge_review_a_patch() {
    let db = Db::new();
    let o = db.run(&["run", &example("code-review.yaml"), "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    // The judge let the review that found the bug stand.
    assert_eq!(s["outputs"]["verdict"], "request_changes", "{s}");
    assert_eq!(s["outputs"]["comments"][0]["path"], "calc.py", "{s}");
    assert_eq!(s["outputs"]["comments"][0]["line"], 3, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    let events = String::from_utf8_lossy(&o.stdout);
    let decided = events
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find(|e| e.to_string().contains("join_decided"))
        .unwrap_or_else(|| panic!("no join decision in {events}"));
    let d = decided.to_string();
    assert!(
        d.contains("correctness") && d.contains("add subtracts"),
        "{d}"
    );
    // The patch is in the workspace, and each reviewer read it.
    let files = ok(&db.run(&["runs", "files", &id]));
    assert!(files.contains("calc.py"), "{files}");
    let diffs = results(&db, &id, "workspace.diff");
    assert_eq!(diffs.len(), 3, "{diffs:?}");
    assert!(
        diffs
            .iter()
            .all(|d| d["diff"].as_str().unwrap().contains("+    return a - b")),
        "{diffs:?}"
    );

    // A directory, as a patch of new files: `git diff --no-index /dev/null FILE` for each of
    // its files, as the README says.
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("pkg")).unwrap();
    std::fs::write(dir.path().join("pkg/a.py"), "A = 1\n").unwrap();
    std::fs::write(dir.path().join("pkg/b.py"), "B = 2\n").unwrap();
    let mut patch = String::new();
    for f in ["pkg/a.py", "pkg/b.py"] {
        let o = std::process::Command::new("git")
            .args(["diff", "--no-index", "/dev/null", f])
            .current_dir(dir.path())
            .output()
            .unwrap();
        // git diff exits 1 when the files differ.
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        patch.push_str(&String::from_utf8_lossy(&o.stdout));
    }
    let o = db.run(&[
        "run",
        &example("code-review.yaml"),
        "--input",
        &format!("patch={patch}"),
        "--json",
    ]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let files = ok(&db.run(&["runs", "files", s["id"].as_str().unwrap()]));
    assert!(
        files.contains("pkg/a.py") && files.contains("pkg/b.py"),
        "{files}"
    );

    // A patch that does not apply fails the run at once, saying why; no reviewer is asked.
    let o = db.run(&[
        "run",
        &example("code-review.yaml"),
        "--input",
        "patch=--- a/missing.py\n+++ b/missing.py\n@@ -1 +1 @@\n-x = 1\n+x = 2\n",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&o);
    let err = s["error"].to_string();
    assert!(err.contains("change") && err.contains("missing.py"), "{s}");
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("\"step\":\"security\""),
        "{}",
        text(&o)
    );
}

#[test]
fn failing_tests_are_fixed_until_green() {
    let _l = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let o = baton()
        .env("BATON_MODEL", "scripted/fix-tests")
        .args(["run", &example("fix-failing-tests.yaml"), "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"]["passed"], true, "{s}");
    let id = s["id"].as_str().unwrap().to_string();
    // The sandbox really ran the tests: one failure, then none.
    let runs = results(&db, &id, "sandbox.exec");
    assert_eq!(runs.len(), 2, "{runs:?}");
    assert_eq!(runs[0]["exit_code"], 1, "{}", runs[0]);
    let first = runs[0]["stderr"].as_str().unwrap();
    assert!(
        first.contains("FAILED (failures=1)")
            && first.contains("test_median_of_an_even_count_is_the_mean_of_the_middle_two"),
        "{first}"
    );
    assert_eq!(runs[1]["exit_code"], 0, "{}", runs[1]);
    assert!(
        runs[1]["stderr"].as_str().unwrap().contains("Ran 3 tests"),
        "{}",
        runs[1]
    );
    // The seed wrote the input's files, the coder the debugger's fix.
    let files = ok(&db.run(&["runs", "files", &id]));
    assert!(
        files.contains("create stats.py") && files.contains("create test_stats.py"),
        "{files}"
    );
    let diff = ok(&db.run(&["runs", "diff", &id, "fix"]));
    assert!(
        diff.contains("+    return (s[mid - 1] + s[mid]) / 2"),
        "{diff}"
    );
    // Replayed from its log, it reaches the same state.
    let o = baton()
        .env("BATON_MODEL", "scripted/fix-tests")
        .args(["runs", "replay", &id, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(r["verdict"], "identical", "{r}");
    // The fixed files work on the host.
    let out = db.0.path().join("fixed");
    ok(&db.run(&["runs", "export", &id, out.to_str().unwrap()]));
    let o = std::process::Command::new("python3")
        .args(["-m", "unittest"])
        .current_dir(&out)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", text(&o));
}

/// A team whose fix never makes the tests pass: the same failing output, the same patch, over
/// and over. The loop is bounded; the run fails saying why instead of going on.
const NEVER_GREEN: &str = r#"replies:
  - { match: "^Run the tests", turn: 1, repeat: true, tool_calls: [{ name: sandbox.exec, arguments: { command: "python3 -m unittest" } }] }
  - { match: "^Run the tests", turn: 2, repeat: true, json: { passed: false, command: "python3 -m unittest", failing_output: "still failing" } }
  - { match: "^Find the cause", turn: 1, repeat: true, json: { cause: "median() is wrong", files: [stats.py], patch: "--- a/stats.py\n+++ b/stats.py\n@@ -1 +1 @@\n-\"\"\"Small statistics over a list of numbers.\"\"\"\n+\"\"\"Statistics.\"\"\"\n" } }
  - { match: "^Fix the code", turn: 1, repeat: true, json: { summary: "applied", files: [stats.py] } }
"#;

#[test]
fn a_team_that_never_gets_to_green_is_stopped() {
    let _l = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let wf = db.workflow(
        "fix-failing-tests.yaml",
        &std::fs::read_to_string(example("fix-failing-tests.yaml")).unwrap(),
    );
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    std::fs::write(db.0.path().join("scripted/never-green.yaml"), NEVER_GREEN).unwrap();
    let o = baton()
        .env("BATON_MODEL", "scripted/never-green")
        .args(["run", &wf, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "failed", "{s}");
    let err = s["error"].to_string();
    assert!(
        err.contains("max_visits") || err.contains("runaway") || err.contains("repeat"),
        "{s}"
    );
    // Each round really ran the tests, and never more than the bound allows.
    let id = s["id"].as_str().unwrap();
    let runs = results(&db, id, "sandbox.exec");
    assert!((2..=4).contains(&runs.len()), "{runs:?}");
    assert!(runs.iter().all(|r| r["exit_code"] == 1), "{runs:?}");
}

/// Files of one's own come with `--input-file` (a YAML file with `files:`); tests that
/// already pass end the run at once, with no fix.
#[test]
fn other_files_come_from_an_input_file() {
    let _l = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let wf = db.workflow(
        "fix-failing-tests.yaml",
        &std::fs::read_to_string(example("fix-failing-tests.yaml")).unwrap(),
    );
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    std::fs::write(
        db.0.path().join("scripted/green.yaml"),
        "replies:\n  - { turn: 1, tool_calls: [{ name: sandbox.exec, arguments: { command: \"python3 -m unittest\" } }] }\n  - { turn: 2, json: { passed: true, command: \"python3 -m unittest\", tests: 1, failures: 0 } }\n",
    )
    .unwrap();
    let inputs = db.workflow(
        "inputs.yaml",
        "files:\n  greet.py: |\n    def greet(name):\n        return f\"hello {name}\"\n  test_greet.py: |\n    import unittest\n    from greet import greet\n\n    class T(unittest.TestCase):\n        def test_greet(self):\n            self.assertEqual(greet(\"ada\"), \"hello ada\")\n",
    );
    let o = baton()
        .env("BATON_MODEL", "scripted/green")
        .args(["run", &wf, "--input-file", &inputs, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"]["fixes"], Value::Null, "{s}");
    let id = s["id"].as_str().unwrap();
    let runs = results(&db, id, "sandbox.exec");
    assert_eq!(runs.len(), 1, "{runs:?}");
    assert_eq!(runs[0]["exit_code"], 0, "{}", runs[0]);
    assert!(
        runs[0]["stderr"].as_str().unwrap().contains("Ran 1 test"),
        "{}",
        runs[0]
    );
    let files = ok(&db.run(&["runs", "files", id]));
    assert!(
        files.contains("greet.py") && !files.contains("stats.py"),
        "{files}"
    );
}
