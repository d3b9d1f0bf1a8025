//! A model that misbehaves (issue 18, "Bad input"), through the real binary: it calls a tool
//! it does not have, writes outside the workspace and to absolute paths, leaves out arguments,
//! writes a file over the workspace's limit, sends a patch that does not apply, asks for
//! `sandbox.step` itself, then proposes the same change forever. Each call is refused with the
//! reason in the run log (and the model is told it, as the call's result), nothing lands
//! outside the workspace, runaway detection stops the loop, and the workflow's failure path
//! runs.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, summary, text};
use serde_json::{Value, json};

const WORKFLOW: &str = r#"version: 1
name: misbehaving
runaway: { repeated_tool_calls: 3 }
agents:
  coder:
    model: scripted/wild
    tools: [workspace.write, workspace.read, workspace.apply_patch]
    max_tool_turns: 20
steps:
  - id: code
    agent: coder
    prompt: Write the app
    on_error: goto fallback
  - id: done
    tool: echo
    with: { text: "the coder finished" }
    next: end
  - id: fallback
    tool: echo
    with: { text: "{{ 'failure path: ' ~ steps.code.error }}" }
"#;

fn call(name: &str, arguments: Value) -> Value {
    json!({ "tool_calls": [{ "name": name, "arguments": arguments }] })
}

#[test]
fn a_misbehaving_model_is_refused_told_why_and_bounded() {
    let db = Db::new();
    let big = "x".repeat((1 << 20) + 1);
    let bad_patch = "--- a/app.py\n+++ b/app.py\n@@ -1 +1 @@\n-print('not there')\n+print('hi')\n";
    let mut replies = vec![
        call("shell.run", json!({ "command": "rm -rf /" })),
        call(
            "workspace.write",
            json!({ "path": "../escape.txt", "content": "x" }),
        ),
        call(
            "workspace.write",
            json!({ "path": "/tmp/baton-bad-model-escape", "content": "x" }),
        ),
        call("workspace.write", json!({ "content": "no path" })),
        call(
            "workspace.write",
            json!({ "path": "big.bin", "content": big }),
        ),
        call(
            "workspace.write",
            json!({ "path": "app.py", "content": "print('hello')\n" }),
        ),
        call("workspace.apply_patch", json!({ "patch": bad_patch })),
        call("sandbox.step", json!({ "command": "id" })),
    ];
    // The same fix, again and again.
    for _ in 0..5 {
        replies.push(call("workspace.apply_patch", json!({ "patch": bad_patch })));
    }
    let replies: Vec<Value> = replies
        .into_iter()
        .enumerate()
        .map(|(i, mut r)| {
            r["turn"] = json!(i + 1);
            r
        })
        .collect();
    let dir = db.0.path().join("scripted");
    std::fs::create_dir(&dir).unwrap();
    std::fs::write(
        dir.join("wild.json"),
        serde_json::to_string(&json!({ "replies": replies })).unwrap(),
    )
    .unwrap();
    let file = db.workflow("misbehaving.yaml", WORKFLOW);

    let o = db.run(&["run", &file, "--json"]);
    let s = summary(&o);
    // The failure path ran: the run itself ends cleanly, saying why.
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let out = s["outputs"].as_str().unwrap_or_default();
    assert!(
        out.starts_with("failure path: ") && out.contains("runaway"),
        "{s}"
    );

    let logs = String::from_utf8_lossy(
        &db.run(&["runs", "logs", s["id"].as_str().unwrap(), "--json"])
            .stdout,
    )
    .into_owned();
    let results: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "tool_call_finished")
        .collect();
    let said = |i: usize| -> (String, bool) {
        let r = &results[i];
        (r["output"].to_string(), r["is_error"] == true)
    };
    let expect = [
        "tool 'shell.run' is not available to this agent",
        "`..` would leave the workspace",
        "absolute paths are refused",
        "`path` is required",
        "more than the 1048576 a file may hold",
    ];
    for (i, words) in expect.iter().enumerate() {
        let (out, err) = said(i);
        assert!(err && out.contains(words), "call {}: {out}", i + 1);
    }
    // The good write went through; the patch that does not apply is refused with the reason.
    assert!(!said(5).1, "{:?}", said(5));
    let (out, err) = said(6);
    assert!(err && out.contains("does not apply"), "{out}");
    let (out, err) = said(7);
    assert!(
        err && out.contains("tool 'sandbox.step' is not available"),
        "{out}"
    );
    // Runaway detection stopped the repeated fix and named it.
    let failed = logs
        .lines()
        .find(|l| l.contains("\"step_failed\""))
        .unwrap_or_else(|| panic!("no step_failed in {logs}"));
    assert!(
        failed.contains("runaway") && failed.contains("workspace.apply_patch"),
        "{failed}"
    );
    assert!(
        results.len() < 8 + 5,
        "the loop was not cut short: {} calls",
        results.len()
    );

    // Nothing landed outside the workspace.
    assert!(!db.0.path().join("escape.txt").exists());
    assert!(!std::path::Path::new("/tmp/baton-bad-model-escape").exists());
    let files =
        String::from_utf8_lossy(&db.run(&["runs", "files", s["id"].as_str().unwrap()]).stdout)
            .into_owned();
    assert!(
        files.contains("app.py") && !files.contains("big.bin"),
        "{files}"
    );
}
