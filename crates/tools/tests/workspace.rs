//! The `workspace.*` tools through the registry, as agents call them: confined paths, limits,
//! patches that apply whole or not at all, one commit per change with the step and agent,
//! retried calls answered from their commit, a step's diff, rollback and export.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_tools::workspace::fs::Kind;
use baton_tools::workspace::{Author, Limits, Workspaces};
use baton_tools::{Registry, ToolContext};
use serde_json::{Value, json};

struct Fixture {
    _dir: tempfile::TempDir,
    all: Arc<Workspaces>,
    tools: Registry,
}

const RUN: &str = "0193aa5e7c2f7d00a1b2c3d4e5f60718";

fn fixture(limits: Limits) -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let all = Workspaces::new(dir.path().join("workspaces"), limits);
    let mut tools = Registry::empty();
    all.register(&mut tools);
    Fixture {
        _dir: dir,
        all,
        tools,
    }
}

fn ctx(step: &str, agent: Option<&str>, key: &str) -> ToolContext {
    ToolContext {
        idempotency_key: key.into(),
        run_id: RUN.into(),
        step: step.into(),
        agent: agent.map(str::to_string),
        ..ToolContext::default()
    }
}

impl Fixture {
    async fn call(&self, tool: &str, args: Value, c: &ToolContext) -> Result<Value, String> {
        self.tools
            .get(tool)
            .unwrap()
            .call(args, c)
            .await
            .map_err(|e| e.to_string())
    }

    fn file(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(self.all.dir_of(RUN).join("files").join(path)).ok()
    }
}

#[tokio::test]
async fn agents_write_read_list_search_and_diff() {
    let f = fixture(Limits::default());
    let c = ctx("implement", Some("coder"), "k1");
    let w = f
        .call(
            "workspace.write",
            json!({"path": "todo/app.py", "content": "def add(x):\n    return x\n"}),
            &c,
        )
        .await
        .unwrap();
    assert_eq!(w["created"], true);
    assert!(w["commit"].as_str().unwrap().len() == 40, "{w}");
    let w2 = f
        .call(
            "workspace.write",
            json!({"path": "README.md", "content": "# Todo\n"}),
            &ctx("implement", Some("coder"), "k2"),
        )
        .await
        .unwrap();
    assert_eq!(w2["created"], true);

    let r = f
        .call("workspace.read", json!({"path": "todo/app.py"}), &c)
        .await
        .unwrap();
    assert_eq!(r["content"], "def add(x):\n    return x\n");
    let l = f.call("workspace.list", json!({}), &c).await.unwrap();
    let paths: Vec<&str> = l["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["path"].as_str().unwrap())
        .collect();
    assert_eq!(paths, ["README.md", "todo", "todo/app.py"]);
    let s = f
        .call(
            "workspace.search",
            json!({"query": "RETURN", "ignore_case": true}),
            &c,
        )
        .await
        .unwrap();
    assert_eq!(
        s["matches"],
        json!([{"path": "todo/app.py", "line": 2, "text": "    return x"}])
    );
    let bad = f
        .call("workspace.search", json!({"query": "(", "regex": true}), &c)
        .await
        .unwrap_err();
    assert!(bad.contains("not a valid regular expression"), "{bad}");

    let d = f
        .call("workspace.diff", json!({"step": "implement"}), &c)
        .await
        .unwrap();
    let diff = d["diff"].as_str().unwrap();
    assert!(
        diff.contains("+++ b/todo/app.py") && diff.contains("+def add(x):"),
        "{diff}"
    );
    let none = f
        .call("workspace.diff", json!({"step": "review"}), &c)
        .await
        .unwrap_err();
    assert!(
        none.contains("step `review` changed no file") && none.contains("implement"),
        "{none}"
    );

    let ws = f.all.existing(RUN).unwrap().unwrap();
    let log = ws.log().unwrap();
    assert_eq!(log.len(), 2);
    assert_eq!(log[0].step.as_deref(), Some("implement"));
    assert_eq!(log[0].agent.as_deref(), Some("coder"));
    assert_eq!(log[0].summary, "implement (coder): create todo/app.py");
}

/// The first calls of a run, at once (the steps of a `map`, parallel branches), each open
/// the workspace that does not exist yet: every one succeeds, over one history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn writes_at_once_into_a_new_workspace_all_succeed() {
    for round in 0..5 {
        let f = Arc::new(fixture(Limits::default()));
        let calls: Vec<_> = (0..8)
            .map(|i| {
                let f = f.clone();
                tokio::spawn(async move {
                    let c = ctx("seed", None, &format!("k{round}-{i}"));
                    f.call(
                        "workspace.write",
                        json!({"path": format!("f{i}.txt"), "content": format!("{i}\n")}),
                        &c,
                    )
                    .await
                })
            })
            .collect();
        for (i, call) in calls.into_iter().enumerate() {
            let r = call.await.unwrap();
            assert!(r.is_ok(), "round {round}, write {i}: {r:?}");
        }
        let ws = f.all.existing(RUN).unwrap().unwrap();
        let out = f._dir.path().join("out");
        assert_eq!(ws.export(&out).unwrap(), 8);
        // Nothing made aside is left beside the history.
        let mut left: Vec<_> = std::fs::read_dir(f.all.dir_of(RUN))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        left.sort();
        assert_eq!(left, ["files", "history.git"], "round {round}");
    }
}

#[tokio::test]
async fn a_retried_call_is_answered_from_its_commit() {
    let f = fixture(Limits::default());
    let c = ctx("implement", Some("coder"), "run/implement/1#3");
    let first = f
        .call(
            "workspace.write",
            json!({"path": "a.txt", "content": "one"}),
            &c,
        )
        .await
        .unwrap();
    // Someone (a later step) changes the file; the retried call must not undo that.
    f.call(
        "workspace.write",
        json!({"path": "a.txt", "content": "two"}),
        &ctx("fix", None, "other"),
    )
    .await
    .unwrap();
    let again = f
        .call(
            "workspace.write",
            json!({"path": "a.txt", "content": "one"}),
            &c,
        )
        .await
        .unwrap();
    assert_eq!(again["already_applied"], true);
    assert_eq!(again["commit"], first["commit"]);
    assert_eq!(f.file("a.txt").unwrap(), "two");
    assert_eq!(
        f.all.existing(RUN).unwrap().unwrap().log().unwrap().len(),
        2
    );
}

#[tokio::test]
async fn patches_apply_exactly_or_not_at_all() {
    let f = fixture(Limits::default());
    let c = ctx("implement", Some("coder"), "p0");
    f.call(
        "workspace.write",
        json!({"path": "calc.py", "content": "a = 1\nb = 2\nc = 3\n"}),
        &c,
    )
    .await
    .unwrap();
    f.call(
        "workspace.write",
        json!({"path": "old.txt", "content": "bye\n"}),
        &ctx("implement", None, "p00"),
    )
    .await
    .unwrap();

    // Plain unified diff, as models write it: no `diff --git` line, no a/ b/ prefixes.
    let patch = "--- calc.py\n+++ calc.py\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 20\n c = 3\n--- /dev/null\n+++ b/new/util.py\n@@ -0,0 +1 @@\n+X = 1\n--- a/old.txt\n+++ /dev/null\n@@ -1 +0,0 @@\n-bye\n";
    let out = f
        .call(
            "workspace.apply_patch",
            json!({"patch": patch}),
            &ctx("fix", Some("debugger"), "p1"),
        )
        .await
        .unwrap();
    assert_eq!(
        out["files"],
        json!([{"path": "calc.py", "change": "modified"}, {"path": "new/util.py", "change": "added"}, {"path": "old.txt", "change": "deleted"}])
    );
    assert_eq!(f.file("calc.py").unwrap(), "a = 1\nb = 20\nc = 3\n");
    assert_eq!(f.file("new/util.py").unwrap(), "X = 1\n");
    assert_eq!(f.file("old.txt"), None);

    // A hunk whose context is not there: an error naming it, and no file changed.
    let stale = "--- a/calc.py\n+++ b/calc.py\n@@ -1,3 +1,3 @@\n a = 1\n-b = 2\n+b = 3\n c = 3\n--- a/new/util.py\n+++ b/new/util.py\n@@ -1 +1 @@\n-X = 1\n+X = 2\n";
    let e = f
        .call(
            "workspace.apply_patch",
            json!({"patch": stale}),
            &ctx("fix", None, "p2"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("the patch does not apply"), "{e}");
    assert_eq!(
        f.file("new/util.py").unwrap(),
        "X = 1\n",
        "a failed patch changed nothing"
    );
    let e = f
        .call(
            "workspace.apply_patch",
            json!({"patch": "just some words"}),
            &ctx("fix", None, "p3"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("not a unified diff"), "{e}");
    let e = f
        .call(
            "workspace.apply_patch",
            json!({"patch": ""}),
            &ctx("fix", None, "p4"),
        )
        .await
        .unwrap_err();
    assert!(e.contains("the patch is empty"), "{e}");
}

#[tokio::test]
async fn escapes_are_refused() {
    let f = fixture(Limits::default());
    let c = ctx("implement", Some("coder"), "");
    f.call(
        "workspace.write",
        json!({"path": "ok.txt", "content": "fine"}),
        &c,
    )
    .await
    .unwrap();
    let files = f.all.dir_of(RUN).join("files");
    let secret = f.all.root().join("secret.txt");
    std::fs::write(&secret, "s3cret").unwrap();
    // What sandboxed code could leave behind: symlinks out, a FIFO.
    std::os::unix::fs::symlink(&secret, files.join("leak.txt")).unwrap();
    std::os::unix::fs::symlink(f.all.root(), files.join("up")).unwrap();
    std::os::unix::fs::symlink("/etc", files.join("etc")).unwrap();
    let attempts = [
        "../secret.txt",
        "../../secret.txt",
        "a/../../secret.txt",
        "./../secret.txt",
        "/etc/passwd",
        "//etc/passwd",
        "leak.txt",
        "up/secret.txt",
        "etc/passwd",
        "etc/hostname",
        ".git/config",
        "sub/.git/hooks/post-commit",
        "",
        ".",
        "ok.txt\0.png",
        &"x".repeat(300),
    ];
    let mut refused = 0;
    for p in attempts {
        let r = f.call("workspace.read", json!({"path": p}), &c).await;
        assert!(r.is_err(), "read {p:?}: {r:?}");
        let w = f
            .call(
                "workspace.write",
                json!({"path": p, "content": "pwned"}),
                &c,
            )
            .await;
        assert!(w.is_err(), "write {p:?}: {w:?}");
        refused += 1;
    }
    assert!(refused >= 15);
    let patch = "--- a/../secret.txt\n+++ b/../secret.txt\n@@ -1 +1 @@\n-s3cret\n+pwned\n";
    let e = f
        .call("workspace.apply_patch", json!({"patch": patch}), &c)
        .await
        .unwrap_err();
    assert!(!e.is_empty());
    let e = f
        .call("workspace.list", json!({"path": "up"}), &c)
        .await
        .unwrap_err();
    assert!(e.contains("symlinks are not followed"), "{e}");
    assert_eq!(std::fs::read_to_string(&secret).unwrap(), "s3cret");
    let e = f
        .call("workspace.read", json!({"path": "leak.txt"}), &c)
        .await
        .unwrap_err();
    assert!(e.contains("symlinks are not followed"), "{e}");
    // The history never holds what a symlink points at.
    let ws = f.all.existing(RUN).unwrap().unwrap();
    ws.snapshot(&Author::default(), "check").unwrap();
    assert!(!ws.diff(None).unwrap().contains("s3cret"));
}

#[tokio::test]
async fn limits_bound_files_and_the_workspace() {
    let f = fixture(Limits {
        max_file_bytes: 1000,
        max_total_bytes: 2500,
        max_entries: 50,
    });
    let c = ctx("implement", None, "");
    let e = f
        .call(
            "workspace.write",
            json!({"path": "big.bin", "content": "x".repeat(1001)}),
            &c,
        )
        .await
        .unwrap_err();
    assert!(e.contains("more than the 1000 a file may hold"), "{e}");
    for i in 0..2 {
        f.call(
            "workspace.write",
            json!({"path": format!("f{i}"), "content": "y".repeat(1000)}),
            &c,
        )
        .await
        .unwrap();
    }
    let e = f
        .call(
            "workspace.write",
            json!({"path": "f2", "content": "z".repeat(600)}),
            &c,
        )
        .await
        .unwrap_err();
    assert!(e.contains("more than its 2500"), "{e}");
    // Replacing a file counts its new size only.
    f.call(
        "workspace.write",
        json!({"path": "f1", "content": "w".repeat(900)}),
        &c,
    )
    .await
    .unwrap();
    let e = f
        .call("workspace.read", json!({"path": "f0", "max_bytes": 10}), &c)
        .await
        .unwrap_err();
    assert!(e.contains("more than the 10 a read may return"), "{e}");
}

#[tokio::test]
async fn rollback_restores_the_exact_tree_and_export_copies_it() {
    let f = fixture(Limits::default());
    f.call(
        "workspace.write",
        json!({"path": "app.py", "content": "v1\n"}),
        &ctx("implement", Some("coder"), "r1"),
    )
    .await
    .unwrap();
    f.call(
        "workspace.write",
        json!({"path": "lib/util.py", "content": "u1\n"}),
        &ctx("implement", Some("coder"), "r2"),
    )
    .await
    .unwrap();
    let ws = f.all.existing(RUN).unwrap().unwrap();
    // The tree: paths, kinds, sizes and modes (stamps change with every write).
    let tree = || -> Vec<(String, Kind, u64, bool)> {
        ws.files()
            .walk("", 100)
            .unwrap()
            .entries
            .into_iter()
            .map(|e| (e.path, e.kind, e.bytes, e.executable))
            .collect()
    };
    let before = tree();
    f.call(
        "workspace.write",
        json!({"path": "app.py", "content": "v2\n"}),
        &ctx("fix", Some("debugger"), "r3"),
    )
    .await
    .unwrap();
    f.call(
        "workspace.write",
        json!({"path": "extra.txt", "content": "e\n"}),
        &ctx("fix", Some("debugger"), "r4"),
    )
    .await
    .unwrap();
    // A change outside the tools (a sandboxed command writing into the workspace).
    std::fs::write(f.all.dir_of(RUN).join("files/lib/util.py"), "u2\n").unwrap();

    let commit = ws
        .rollback_before(
            "fix",
            &Author {
                step: "rollback".into(),
                ..Author::default()
            },
        )
        .unwrap();
    assert!(commit.is_some());
    assert_eq!(tree(), before);
    assert_eq!(f.file("app.py").unwrap(), "v1\n");
    assert_eq!(f.file("lib/util.py").unwrap(), "u1\n");
    assert_eq!(f.file("extra.txt"), None);
    let summaries: Vec<String> = ws.log().unwrap().into_iter().map(|c| c.summary).collect();
    assert_eq!(
        summaries.last().unwrap(),
        "rollback: rollback: the files as before step fix"
    );

    let out = f.all.root().join("exported");
    assert_eq!(ws.export(&out).unwrap(), 2);
    assert_eq!(
        std::fs::read_to_string(out.join("lib/util.py")).unwrap(),
        "u1\n"
    );
    let e = ws.export(&out).unwrap_err().to_string();
    assert!(e.contains("is not empty"), "{e}");
    let e = ws
        .rollback_before("nope", &Author::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("step `nope` changed no file"), "{e}");
}

#[tokio::test]
async fn security_scan_reports_the_workspace_findings_by_severity() {
    let f = fixture(Limits::default());
    let c = ctx("write", Some("coder"), "s1");
    f.call(
        "workspace.write",
        json!({"path": "app/run.py", "content": "import os\n\ndef go(cmd):\n    os.system(cmd)\n"}),
        &c,
    )
    .await
    .unwrap();
    f.call(
        "workspace.write",
        json!({"path": "app/ok.py", "content": "def add(a, b):\n    return a + b\n"}),
        &ctx("write", Some("coder"), "s2"),
    )
    .await
    .unwrap();
    let scan = ctx("scan", Some("security-reviewer"), "s3");
    let v = f.call("security.scan", json!({}), &scan).await.unwrap();
    assert_eq!(v["blocking"], true, "{v}");
    assert_eq!(v["counts"]["high"], 1, "{v}");
    assert_eq!(v["files_scanned"], 2, "{v}");
    let found = &v["findings"][0];
    assert_eq!(
        (
            &found["rule"],
            &found["path"],
            &found["line"],
            &found["severity"]
        ),
        (
            &json!("PY002"),
            &json!("app/run.py"),
            &json!(4),
            &json!("high")
        ),
        "{v}"
    );
    assert!(
        found["fix"].as_str().unwrap().contains("shell=False"),
        "{v}"
    );

    // A path narrows it; a clean tree does not block.
    let v = f
        .call("security.scan", json!({"path": "app/ok.py"}), &scan)
        .await
        .unwrap();
    assert_eq!(
        (v["blocking"].clone(), v["files_scanned"].clone()),
        (json!(false), json!(1)),
        "{v}"
    );
    // Bad arguments and escapes are refused with the reason.
    let e = f
        .call("security.scan", json!({"external": "yes"}), &scan)
        .await
        .unwrap_err();
    assert!(e.contains("`external` must be true or false"), "{e}");
    let e = f
        .call("security.scan", json!({"path": "../x"}), &scan)
        .await
        .unwrap_err();
    assert!(e.contains(".."), "{e}");
    let e = f
        .call("security.scan", json!({"paths": "x"}), &scan)
        .await
        .unwrap_err();
    assert!(e.contains("unknown argument 'paths'"), "{e}");
}

/// Each process remembers the files it hashed, but the history is only ever what the files
/// are: a file changed outside the tools right after a tool wrote it (the same size, within one
/// tick of the kernel's clock), a file replaced by another with the same size and times, and a
/// workspace deleted and made again are all committed as they are.
#[tokio::test]
async fn changes_outside_the_tools_are_committed_whatever_the_process_remembers() {
    let f = fixture(Limits::default());
    let files = f.all.dir_of(RUN).join("files");
    // The change by hand is a commit of its own, before the tool's.
    let by_hand_then = |f: &Fixture, tool: &str| {
        let log = f.all.existing(RUN).unwrap().unwrap().log().unwrap();
        let last: Vec<&str> = log
            .iter()
            .rev()
            .take(2)
            .map(|c| c.summary.as_str())
            .collect();
        assert_eq!(
            last,
            [
                format!("implement (coder): {tool}"),
                "implement (coder): changes made outside the workspace tools".to_string()
            ]
        );
    };
    let head = |f: &Fixture| -> Vec<(String, String)> {
        let ws = f.all.existing(RUN).unwrap().unwrap();
        ws.head_files(10)
            .unwrap()
            .files
            .into_iter()
            .map(|(p, b)| (p, String::from_utf8(b).unwrap()))
            .collect()
    };
    for i in 0..20 {
        let c = ctx("implement", Some("coder"), &format!("a{i}"));
        let content = format!("tool {i:02}");
        f.call(
            "workspace.write",
            json!({"path": "a.txt", "content": content}),
            &c,
        )
        .await
        .unwrap();
        std::fs::write(files.join("a.txt"), format!("hand {i:02}")).unwrap();
        let c = ctx("implement", Some("coder"), &format!("b{i}"));
        f.call(
            "workspace.write",
            json!({"path": "b.txt", "content": format!("{i:02}")}),
            &c,
        )
        .await
        .unwrap();
        let want = vec![
            ("a.txt".to_string(), format!("hand {i:02}")),
            ("b.txt".to_string(), format!("{i:02}")),
        ];
        assert_eq!(head(&f), want, "round {i}");
        by_hand_then(
            &f,
            if i == 0 {
                "create b.txt"
            } else {
                "write b.txt"
            },
        );
    }

    // Past the clock's racy window, a file's blob is remembered from its stamp; a change by
    // hand after that gives it a new stamp, and it is read again. (The wait is that window, not
    // a retry: the outcome is the same whatever the timing.)
    std::thread::sleep(std::time::Duration::from_millis(120));
    let c = ctx("implement", Some("coder"), "settle");
    f.call(
        "workspace.write",
        json!({"path": "b.txt", "content": "ss"}),
        &c,
    )
    .await
    .unwrap();
    std::fs::write(files.join("a.txt"), "late 77").unwrap();
    let c = ctx("implement", Some("coder"), "late");
    f.call(
        "workspace.write",
        json!({"path": "b.txt", "content": "tt"}),
        &c,
    )
    .await
    .unwrap();
    assert_eq!(head(&f)[0], ("a.txt".into(), "late 77".into()));
    by_hand_then(&f, "write b.txt");

    // Another file in its place (a new inode), with the same size and times.
    let old = std::fs::metadata(files.join("a.txt")).unwrap();
    std::fs::write(files.join("new.tmp"), "swap 99").unwrap();
    let swapped = std::fs::File::options()
        .write(true)
        .open(files.join("new.tmp"))
        .unwrap();
    swapped
        .set_times(
            std::fs::FileTimes::new()
                .set_modified(old.modified().unwrap())
                .set_accessed(old.accessed().unwrap()),
        )
        .unwrap();
    drop(swapped);
    std::fs::rename(files.join("new.tmp"), files.join("a.txt")).unwrap();
    let c = ctx("implement", Some("coder"), "c1");
    f.call(
        "workspace.write",
        json!({"path": "c.txt", "content": "c"}),
        &c,
    )
    .await
    .unwrap();
    assert_eq!(head(&f)[0], ("a.txt".into(), "swap 99".into()));
    by_hand_then(&f, "create c.txt");

    // The workspace deleted and made again: a new history, from the files written since.
    std::fs::remove_dir_all(f.all.dir_of(RUN)).unwrap();
    let c = ctx("implement", Some("coder"), "d1");
    let out = f
        .call(
            "workspace.write",
            json!({"path": "b.txt", "content": "00"}),
            &c,
        )
        .await
        .unwrap();
    assert_eq!(out["created"], true, "{out}");
    assert_eq!(head(&f), vec![("b.txt".to_string(), "00".to_string())]);
    let ws = f.all.existing(RUN).unwrap().unwrap();
    assert_eq!(ws.log().unwrap().len(), 1);
    assert_eq!(
        ws.commit_of_key("a1").unwrap(),
        None,
        "a key of the old history"
    );
    assert!(ws.commit_of_key("d1").unwrap().is_some());
    assert!(ws.diff(None).unwrap().contains("+00"));
}
