//! docs/scale-out.md's worked example, run as shown: the shell block's commands one by one in
//! the repository's root, on a PostgreSQL database of the test's own (`BATON_DB` as the block
//! exports it, with the test's URL), the servers on free ports, `HOST:PID` the second worker's
//! id. Background commands (`&`) are started and waited for (a worker until it is listed, a
//! server until it listens); every other command must succeed; then both queued runs must
//! succeed (the tagged one on the worker with the tag) and the drained worker must exit.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{baton, text};
use serde_json::Value;

fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The lines of the first `sh` block after "## A worked example".
fn worked_example() -> Vec<String> {
    let doc = std::fs::read_to_string(root().join("docs/scale-out.md")).unwrap();
    let from = doc.find("## A worked example").expect("the worked example");
    let block = doc[from..].split("```sh\n").nth(1).expect("its sh block");
    let block = block.split("```").next().unwrap();
    block.lines().map(str::to_string).collect()
}

/// Kills what it holds when dropped.
struct Background(Vec<Child>);

impl Drop for Background {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

fn until<T>(what: &str, secs: u64, mut check: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + Duration::from_secs(secs);
    loop {
        if let Some(v) = check() {
            return v;
        }
        assert!(Instant::now() < end, "waited {secs}s for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

#[test]
fn the_worked_example_of_docs_scale_out_runs_as_shown() {
    let Some(url) = baton_test_support::postgres::database("docs/scale-out.md") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let mut env: Vec<(String, String)> =
        vec![("BATON_HOME".into(), home.path().display().to_string())];
    let cmd = |env: &[(String, String)], words: &[String]| -> Command {
        let mut c = baton();
        c.current_dir(root()).args(words);
        for (k, v) in env {
            c.env(k, v);
        }
        c
    };
    let run = |env: &[(String, String)], words: &[String]| -> Output {
        cmd(env, words).output().unwrap()
    };
    let mut bg = Background(Vec::new());
    let mut workers: Vec<String> = Vec::new();
    let mut queued: Vec<String> = Vec::new();
    let lines = worked_example();
    assert!(lines.len() >= 10, "{lines:?}");
    for line in lines {
        if let Some(kv) = line.strip_prefix("export ") {
            let (k, v) = kv.split_once('=').unwrap();
            let v = if k == "BATON_DB" {
                url.clone()
            } else {
                v.to_string()
            };
            env.push((k.to_string(), v));
            continue;
        }
        let (line, background) = match line.strip_suffix(" &") {
            Some(l) => (l, true),
            None => (line.as_str(), false),
        };
        let mut words: Vec<String> = line.split_whitespace().map(String::from).collect();
        assert_eq!(words[0], "baton", "{line}");
        words.remove(0);
        if let Some(i) = words.iter().position(|w| w == "--addr") {
            words[i + 1] = "127.0.0.1:0".into();
        }
        if let Some(w) = words.iter_mut().find(|w| *w == "HOST:PID") {
            *w = workers[1].clone();
            // Both queued runs are done before the only `gpu` worker is drained.
            assert_eq!(queued.len(), 2);
            for r in &queued {
                until(&format!("run {r} to succeed"), 60, || {
                    let o = run(
                        &env,
                        &["runs".into(), "show".into(), r.clone(), "--json".into()],
                    );
                    let v: Value = serde_json::from_slice(&o.stdout).ok()?;
                    (v["status"] == "succeeded").then_some(())
                });
            }
        }
        if background {
            let mut child = cmd(&env, &words)
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .unwrap();
            let err = child.stderr.take().unwrap();
            if words[0] == "worker" {
                let id = format!("{}:{}", hostname(), child.id());
                std::thread::spawn(move || std::io::copy(&mut { err }, &mut std::io::sink()));
                until(&format!("{line} to register"), 30, || {
                    let o = run(&env, &["workers".into(), "list".into()]);
                    String::from_utf8_lossy(&o.stdout)
                        .contains(&id)
                        .then_some(())
                });
                workers.push(id);
            } else {
                let mut err = BufReader::new(err);
                let mut l = String::new();
                while err.read_line(&mut l).unwrap() > 0 && !l.contains("metrics:") {
                    l.clear();
                }
                assert!(l.contains("metrics:"), "{line} did not start");
                std::thread::spawn(move || std::io::copy(&mut err, &mut std::io::sink()));
            }
            bg.0.push(child);
            continue;
        }
        let o = run(&env, &words);
        assert_eq!(o.status.code(), Some(0), "{line}: {}", text(&o));
        if words.contains(&"--queue".to_string()) {
            queued.push(String::from_utf8_lossy(&o.stdout).trim().to_string());
        }
        if words[..2] == ["workers".to_string(), "list".to_string()] {
            let out = String::from_utf8_lossy(&o.stdout);
            // Two workers and the first server's.
            assert_eq!(out.matches(" running ").count(), 3, "{out}");
        }
    }
    assert_eq!(queued.len(), 2);
    // The drained worker (the second, `gpu`) exits by itself.
    let drained = &mut bg.0[1];
    let st = until("the drained worker to exit", 30, || {
        drained.try_wait().unwrap()
    });
    assert!(st.success());
}
