//! Crash safety: `kill -9` of `baton run` at random moments, then `baton resume`, 20 times.
//! Every run must finish, and every step's side effect must be applied exactly once: the
//! steps call a loopback server that honours `Idempotency-Key`, and the server counts what
//! it applied per step.
// End-to-end tests run (and kill) the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rand::Rng;
use serde_json::Value;

/// Keys the server applied, per step path, and how many requests it saw.
#[derive(Default)]
struct Ledger {
    applied: HashMap<String, Vec<String>>,
    requests: usize,
}

fn serve(ledger: Arc<Mutex<Ledger>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let ledger = ledger.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).is_err() {
                    return;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let mut key = None;
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':')
                        && k.eq_ignore_ascii_case("idempotency-key")
                    {
                        key = Some(v.trim().to_string());
                    }
                }
                std::thread::sleep(Duration::from_millis(15));
                {
                    let mut l = ledger.lock().unwrap();
                    l.requests += 1;
                    if let Some(k) = key {
                        let e = l.applied.entry(path).or_default();
                        // An idempotent server applies each key once.
                        if !e.contains(&k) {
                            e.push(k);
                        }
                    }
                }
                let body = "{\"ok\":true}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
                let _ = stream.read(&mut [0u8; 1]);
            });
        }
    });
    port
}

const STEPS: usize = 8;

#[test]
fn kill_9_at_random_points_then_resume_applies_every_step_once() {
    let ledger = Arc::new(Mutex::new(Ledger::default()));
    let port = serve(ledger.clone());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let mut wf = format!(
        "version: 1\nname: crash\npolicy: {{ http_allow: [\"127.0.0.1:{port}\"] }}\nsteps:\n"
    );
    for i in 0..STEPS {
        wf.push_str(&format!(
            "  - {{ id: s{i}, tool: http.get, with: {{ url: \"http://127.0.0.1:{port}/{{{{ run.id }}}}/s{i}\" }} }}\n"
        ));
    }
    let file = dir.path().join("crash.yaml");
    std::fs::write(&file, wf).unwrap();
    let mut rng = rand::rng();
    let mut run_ids = Vec::new();
    let mut killed = 0;
    for _ in 0..20 {
        let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
            .args([
                "run",
                file.to_str().unwrap(),
                "--json",
                "--db",
                db.to_str().unwrap(),
            ])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let mut lines = BufReader::new(stdout).lines();
        let first: Value = serde_json::from_str(&lines.next().unwrap().unwrap()).unwrap();
        let id = first["run_id"].as_str().unwrap().to_string();
        std::thread::sleep(Duration::from_millis(rng.random_range(0..160)));
        if child.try_wait().unwrap().is_none() {
            killed += 1;
        }
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // Resume until the run is over (a resume may itself be needed only once).
        let mut status = String::new();
        for _ in 0..3 {
            let o = Command::new(env!("CARGO_BIN_EXE_baton"))
                .args(["resume", &id, "--json", "--db", db.to_str().unwrap()])
                .output()
                .unwrap();
            let out = String::from_utf8_lossy(&o.stdout);
            if let Some(line) = out.lines().rev().find(|l| l.contains("\"summary\"")) {
                let v: Value = serde_json::from_str(line).unwrap();
                status = v["summary"]["status"].as_str().unwrap_or("").to_string();
            } else if String::from_utf8_lossy(&o.stderr).contains("already succeeded") {
                status = "succeeded".into();
            }
            if status == "succeeded" {
                break;
            }
        }
        assert_eq!(status, "succeeded", "run {id} did not finish");
        run_ids.push(id);
    }
    assert!(
        killed >= 10,
        "only {killed} of 20 runs were killed mid-way: the test lost its point"
    );
    let l = ledger.lock().unwrap();
    for id in &run_ids {
        for i in 0..STEPS {
            let keys = l
                .applied
                .get(&format!("/{id}/s{i}"))
                .cloned()
                .unwrap_or_default();
            assert_eq!(
                keys.len(),
                1,
                "run {id} step s{i} applied {} times: {keys:?}",
                keys.len()
            );
        }
    }
}
