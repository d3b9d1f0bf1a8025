//! A run's workspace through the real binary: steps write and patch files with the
//! `workspace.*` tools; `baton runs files|diff|rollback|export` show the history, a step's
//! diff, put the files back as before a step and copy them out, as docs/workspace.md shows.
//! Escapes and bad patches fail their step with the reason.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};
use serde_json::Value;

/// The `baton runs ...` lines of docs/workspace.md, split on spaces, comments dropped.
fn documented_commands() -> Vec<Vec<String>> {
    let doc = std::fs::read_to_string(root().join("docs/workspace.md")).unwrap();
    doc.lines()
        .filter(|l| l.starts_with("baton runs "))
        .map(|l| {
            l.split('#')
                .next()
                .unwrap()
                .split_whitespace()
                .skip(1)
                .map(str::to_string)
                .collect()
        })
        .collect()
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn failed_with(o: &std::process::Output, part: &str) {
    assert_eq!(o.status.code(), Some(1), "{}", text(o));
    assert!(text(o).contains(part), "{part:?} missing in {}", text(o));
}

#[test]
fn steps_change_files_and_the_cli_shows_diffs_rolls_back_and_exports() {
    let db = Db::new();
    let wf = root().join("examples/workspace-patch.yaml");
    let o = db.run(&["run", wf.to_str().unwrap(), "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let run = s["id"].as_str().unwrap().to_string();
    assert_eq!(s["outputs"]["content"], "print('v2')\n", "{s}");

    let files = ok(&db.run(&["runs", "files", &run]));
    assert!(files.contains("create: create app/main.py"), "{files}");
    assert!(files.contains("fix: patch app/main.py"), "{files}");
    let log: Value =
        serde_json::from_str(&ok(&db.run(&["runs", "files", &run, "--json"]))).unwrap();
    let steps: Vec<&str> = log["changes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| c["step"].as_str().unwrap())
        .collect();
    assert_eq!(steps, ["create", "notes", "fix"]);
    let dir = std::path::PathBuf::from(log["dir"].as_str().unwrap());
    assert!(
        dir.starts_with(db.0.path()),
        "the workspace is beside the database: {dir:?}"
    );

    let diff = ok(&db.run(&["runs", "diff", &run, "fix"]));
    assert!(diff.contains("-print('v1')\n+print('v2')"), "{diff}");
    assert!(!diff.contains("NOTES.md"), "{diff}");
    let whole = ok(&db.run(&["runs", "diff", &run]));
    assert!(
        whole.contains("+++ b/NOTES.md") && whole.contains("+print('v2')"),
        "{whole}"
    );

    let back = ok(&db.run(&["runs", "rollback", &run, "fix"]));
    assert!(back.contains("the files are as before step fix"), "{back}");
    assert_eq!(
        std::fs::read_to_string(dir.join("app/main.py")).unwrap(),
        "print('v1')\n"
    );
    let again = ok(&db.run(&["runs", "rollback", &run, "fix"]));
    assert!(again.contains("already were as before step fix"), "{again}");

    // The commands docs/workspace.md shows, as shown (RUN_ID this run, the export elsewhere).
    let shown = documented_commands();
    assert_eq!(shown.len(), 6, "{shown:?}");
    for args in shown {
        let args: Vec<String> = args
            .into_iter()
            .map(|a| match a.as_str() {
                "RUN_ID" => run.clone(),
                "./todo-app" => db.0.path().join("todo-app").display().to_string(),
                _ => a,
            })
            .collect();
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        ok(&db.run(&refs));
    }
    let rolled = ok(&db.run(&["runs", "diff", &run, "rollback-fix"]));
    assert!(rolled.contains("-print('v2')\n+print('v1')"), "{rolled}");

    let out = db.0.path().join("exported");
    let copied = ok(&db.run(&["runs", "export", &run, out.to_str().unwrap()]));
    assert!(copied.contains("copied 2 files"), "{copied}");
    assert_eq!(
        std::fs::read_to_string(out.join("NOTES.md")).unwrap(),
        "# notes\n"
    );

    // Bad input: clear errors, exit 1, nothing changed.
    failed_with(
        &db.run(&["runs", "diff", &run, "deploy"]),
        "step `deploy` changed no file",
    );
    failed_with(
        &db.run(&["runs", "rollback", &run, "deploy"]),
        "step `deploy` changed no file",
    );
    failed_with(
        &db.run(&["runs", "export", &run, out.to_str().unwrap()]),
        "is not empty",
    );
    failed_with(&db.run(&["runs", "files", "ffff"]), "no run ffff");
    let plain = db.workflow(
        "plain.yaml",
        "version: 1\nname: plain\nsteps:\n  - id: a\n    tool: echo\n    with: { x: 1 }\n",
    );
    let o = db.run(&["run", &plain, "--json"]);
    let other = summary(&o)["id"].as_str().unwrap().to_string();
    failed_with(&db.run(&["runs", "diff", &other]), "has no workspace");
}

#[test]
fn escapes_and_bad_patches_fail_the_step_with_the_reason() {
    let db = Db::new();
    for (name, with, reason) in [
        (
            "up",
            "{ path: ../../etc/passwd, content: x }",
            "`..` would leave the workspace",
        ),
        (
            "abs",
            "{ path: /etc/passwd, content: x }",
            "absolute paths are refused",
        ),
        (
            "git",
            "{ path: .git/hooks/post-commit, content: x }",
            "`.git` is the workspace's history",
        ),
    ] {
        let wf = db.workflow(
            &format!("{name}.yaml"),
            &format!("version: 1\nname: {name}\nsteps:\n  - id: w\n    tool: workspace.write\n    with: {with}\n"),
        );
        let o = db.run(&["run", &wf, "--json"]);
        assert_eq!(summary(&o)["status"], "failed", "{}", text(&o));
        assert!(
            text(&o).contains(reason),
            "{reason:?} missing in {}",
            text(&o)
        );
    }
    let wf = db.workflow(
        "stale.yaml",
        "version: 1\nname: stale\nsteps:\n  - id: w\n    tool: workspace.write\n    with: { path: a.txt, content: \"one\\n\" }\n  - id: p\n    tool: workspace.apply_patch\n    with: { patch: \"--- a/a.txt\\n+++ b/a.txt\\n@@ -1 +1 @@\\n-two\\n+three\\n\" }\n",
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(summary(&o)["status"], "failed", "{}", text(&o));
    assert!(
        text(&o).contains("the patch does not apply"),
        "{}",
        text(&o)
    );
}
