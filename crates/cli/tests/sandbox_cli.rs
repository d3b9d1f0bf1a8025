//! `baton sandbox exec|doctor` and `baton scan`, driving the real binary.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Output};

use common::{lock, process_tier_works};

fn baton(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(args)
        .output()
        .unwrap()
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

#[test]
fn exec_passes_output_through_and_returns_the_exit_code() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let out = baton(&[
        "sandbox",
        "exec",
        "--memory",
        "128M",
        "--time",
        "5s",
        "--",
        "/bin/sh",
        "-c",
        "echo hi; echo oops >&2; exit 3",
    ]);
    assert_eq!(out.status.code(), Some(3), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "hi\n");
    let err = text(&out.stderr);
    assert!(err.starts_with("oops\n"), "{err}");
    assert!(
        err.contains("tier process")
            && err.contains("stopped: exited")
            && err.contains("exit code 3"),
        "{err}"
    );
    assert!(err.contains("landlock"), "{err}");
}

#[test]
fn exec_json_reports_a_time_limit() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let out = baton(&[
        "sandbox",
        "exec",
        "--json",
        "--time",
        "1s",
        "--",
        "/bin/sh",
        "-c",
        "while :; do :; done",
    ]);
    assert_eq!(out.status.code(), Some(128 + 9), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["stop_reason"], "time_limit");
    assert_eq!(v["tier"], "process");
    assert!(v["wall_time"].as_f64().unwrap() >= 1000.0);
}

#[test]
fn exec_stopped_by_the_pids_limit_does_not_exit_0() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    // The parent exits 0 once fork fails; the run still must not look like a success.
    let bomb = "import os, time\ntry:\n    while True:\n        if os.fork() == 0:\n            time.sleep(30)\n            os._exit(0)\nexcept OSError:\n    pass";
    let out = baton(&[
        "sandbox", "exec", "--pids", "16", "--time", "20s", "--", "python3", "-c", bomb,
    ]);
    let err = text(&out.stderr);
    assert!(err.contains("stopped: pids_limit"), "{err}");
    assert_eq!(out.status.code(), Some(1), "{err}");
}

#[test]
fn exec_isolates_the_host() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let out = baton(&[
        "sandbox",
        "exec",
        "--",
        "/bin/sh",
        "-c",
        "cat /etc/shadow; ls /root; id -u",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout).trim(), "1000");
    assert!(
        text(&out.stderr).contains("No such file"),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn bad_flags_and_unavailable_tiers_are_clear_errors() {
    let out = baton(&["sandbox", "exec", "--memory", "lots", "--", "true"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("bad size 'lots'"),
        "{}",
        text(&out.stderr)
    );
    let out = baton(&["sandbox", "exec", "--net", "internet", "--", "true"]);
    assert!(
        text(&out.stderr).contains("unknown network mode 'internet'"),
        "{}",
        text(&out.stderr)
    );
    let out = baton(&["sandbox", "exec", "--tier", "vm", "--", "true"]);
    assert!(
        text(&out.stderr).contains("unknown tier 'vm'"),
        "{}",
        text(&out.stderr)
    );
    // Docker has no daemon on the test machines: a refusal with the reason, never a fallback.
    if !std::path::Path::new("/var/run/docker.sock").exists() {
        let out = baton(&["sandbox", "exec", "--tier", "docker", "--", "true"]);
        assert_eq!(out.status.code(), Some(1));
        assert!(
            text(&out.stderr).contains("sandbox tier 'docker' is not available here"),
            "{}",
            text(&out.stderr)
        );
    }
    let out = baton(&["sandbox", "exec"]);
    assert!(!out.status.success());
}

#[test]
fn exec_scan_blocks_dangerous_inline_code() {
    let out = baton(&[
        "sandbox",
        "exec",
        "--scan",
        "--",
        "python3",
        "-c",
        "import os; os.system('id')",
    ]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("PY002"), "{}", text(&out.stderr));
}

#[test]
fn scan_reports_findings_and_blocks_on_high_severity() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("app.py"),
        "import pickle\n\ndef load(b):\n    return pickle.loads(b)\n",
    )
    .unwrap();
    std::fs::write(dir.path().join("ok.js"), "console.log(1)\n").unwrap();
    let out = baton(&["scan", "--no-external", dir.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    let s = text(&out.stdout);
    assert!(
        s.contains("app.py:4") && s.contains("PY003") && s.contains("BLOCK"),
        "{s}"
    );
    assert!(s.contains("2 file(s) scanned"), "{s}");

    let clean = tempfile::tempdir().unwrap();
    std::fs::write(clean.path().join("ok.py"), "print('hello')\n").unwrap();
    let out = baton(&["scan", "--json", clean.path().to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(v["blocked"], 0);

    let out = baton(&["scan", "/no/such/path"]);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out.stderr).contains("does not exist"));
}
