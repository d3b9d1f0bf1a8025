//! Crash safety: `kill -9` of `baton run` at random points, then `baton resume`, 28 rounds.
//! The points come from a seeded RNG (the seed is printed; `BATON_CRASH_SEED=N` repeats a
//! run of this test) and take turns: a random time, a random event of the run's `--json`
//! stream, inside a retry (after the first attempt of a step timed out with its request
//! already applied by the service), and between a tool call's logged start and its result.
//!
//! What "effects once" means is asserted per effect (a `tool:` step, or one tool call of an
//! agent step), on a counter service that honours `Idempotency-Key` as an idempotent API does
//! (the first delivery of a key is applied, later ones are answered without applying):
//! - every delivery carries the effect's own key (one key per effect, the one Baton
//!   documents: `RUN:STEP:VISIT`, and `/CALL` for an agent's tool call), so extra deliveries
//!   happen only with that key;
//! - the service applied every effect exactly once;
//! - no step that had finished before the kill ran again: its events appear once in the log,
//!   and no request for it reached the service after the kill; a tool call whose result was
//!   logged is never sent again.
// End-to-end tests run (and kill) the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{self, Receiver};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::Value;

/// Every delivery the service saw: (path, key), in order; and the keys it applied per
/// effect (run + path).
#[derive(Default)]
struct Counter {
    deliveries: Vec<(String, Option<String>)>,
    applied: BTreeMap<String, Vec<String>>,
}

/// The effect a delivery is for: the run (the key's first part) and the path.
fn effect_of(path: &str, key: &str) -> String {
    let run = key.split(':').next().unwrap_or_default();
    format!("{run}{path}")
}

/// How long the service holds its answer to the first delivery of a `/slow` key: longer
/// than the step's timeout, so the first attempt times out after the effect was applied.
const SLOW_MS: u64 = 1500;

fn serve(counter: Arc<Mutex<Counter>>) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = counter.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return; // a connection the killed client never used
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut key, mut length) = (None, 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return; // cut off before its headers ended: not a request
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("idempotency-key") {
                            key = Some(v.trim().to_string());
                        } else if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return; // cut off before its body ended: not a request
                }
                let fresh = {
                    let mut c = counter.lock().unwrap();
                    c.deliveries.push((path.clone(), key.clone()));
                    match &key {
                        Some(k) => {
                            let applied = c.applied.entry(effect_of(&path, k)).or_default();
                            let fresh = !applied.contains(k);
                            if fresh {
                                applied.push(k.clone());
                            }
                            fresh
                        }
                        None => false,
                    }
                };
                if fresh && path == "/slow" {
                    std::thread::sleep(Duration::from_millis(SLOW_MS));
                } else {
                    std::thread::sleep(Duration::from_millis(5));
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

/// The `tool:` steps, in order (`slow` is the one with `retry:`), and the agent step.
const TOOL_STEPS: [&str; 7] = ["s0", "s1", "s2", "slow", "s3", "s4", "s5"];
const AGENT_STEP: &str = "clerk";

fn workflow(port: u16) -> String {
    let url = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    let mut wf = format!(
        "version: 1\nname: crash\npolicy: {{ http_allow: [\"127.0.0.1:{port}\"] }}\n\
         agents:\n  clerk: {{ model: scripted/clerk, tools: [http.post] }}\nsteps:\n"
    );
    for s in TOOL_STEPS {
        let extra = if s == "slow" {
            ", timeout: 400ms, retry: { max: 3, backoff: 200ms }"
        } else {
            ""
        };
        wf.push_str(&format!(
            "  - {{ id: {s}, tool: http.post, with: {{ url: \"{}\", body: {{ step: {s} }} }}{extra} }}\n",
            url(s)
        ));
        if s == "s3" {
            wf.push_str(&format!(
                "  - {{ id: {AGENT_STEP}, agent: clerk, prompt: \"file both\" }}\n"
            ));
        }
    }
    wf
}

fn fixture(port: u16) -> String {
    let url = |p: &str| format!("http://127.0.0.1:{port}/{p}");
    format!(
        "replies:\n  - turn: 1\n    repeat: true\n    tool_calls:\n      - {{ name: http.post, arguments: {{ url: \"{}\", body: {{ n: 1 }} }} }}\n      - {{ name: http.post, arguments: {{ url: \"{}\", body: {{ n: 2 }} }} }}\n  - turn: 2\n    repeat: true\n    text: filed\n",
        url("agent/1"),
        url("agent/2")
    )
}

/// Where a round kills the run.
#[derive(Clone, Copy, Debug)]
enum KillAt {
    /// After a random time.
    Time(u64),
    /// Right after the run's Nth event (counting from its start).
    Event(usize),
    /// A random time after the `slow` step's first attempt failed (its retry is waiting).
    InRetry(u64),
    /// Right after an agent tool call's start is logged (before its result can be).
    InCall(u32),
}

fn spawn_run(file: &str, db: &str) -> (Child, Receiver<Value>) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(["run", file, "--json", "--db", db])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { break };
            if let Ok(v) = serde_json::from_str::<Value>(&line)
                && tx.send(v).is_err()
            {
                break;
            }
        }
    });
    (child, rx)
}

/// Waits for the event `hit` picks (the run's id comes from the first one), or for the stream
/// to end. Returns the run id.
fn wait_for(rx: &Receiver<Value>, mut hit: impl FnMut(&Value) -> bool) -> Option<String> {
    let mut id = None;
    let deadline = Instant::now() + Duration::from_secs(20);
    while let Ok(v) = rx.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
        if id.is_none() {
            id = v["run_id"].as_str().map(String::from);
        }
        if hit(&v) {
            break;
        }
    }
    id
}

fn baton(args: &[&str], db: &str) -> std::process::Output {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["--db", db]);
    Command::new(env!("CARGO_BIN_EXE_baton"))
        .args(&all)
        .output()
        .unwrap()
}

fn events(id: &str, db: &str) -> Vec<Value> {
    let o = baton(&["runs", "logs", id, "--json"], db);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn of<'a>(evs: &'a [Value], ty: &'a str, step: &'a str) -> impl Iterator<Item = &'a Value> {
    evs.iter()
        .filter(move |e| e["type"] == ty && e["step"] == step)
}

/// The steps that had succeeded, with how many times each had started.
fn finished_steps(evs: &[Value]) -> BTreeMap<String, usize> {
    evs.iter()
        .filter(|e| e["type"] == "step_succeeded")
        .map(|e| {
            let s = e["step"].as_str().unwrap();
            (s.to_string(), of(evs, "step_started", s).count())
        })
        .collect()
}

#[test]
fn kill_9_at_random_points_then_resume_applies_every_effect_once() {
    let seed: u64 = std::env::var("BATON_CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("crash test seed: {seed} (repeat with BATON_CRASH_SEED={seed})");
    let mut rng = StdRng::seed_from_u64(seed);
    let counter = Arc::new(Mutex::new(Counter::default()));
    let port = serve(counter.clone());
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("crash.db");
    let db = db.to_str().unwrap();
    let file = dir.path().join("crash.yaml");
    std::fs::write(&file, workflow(port)).unwrap();
    std::fs::create_dir(dir.path().join("scripted")).unwrap();
    std::fs::write(dir.path().join("scripted/clerk.yaml"), fixture(port)).unwrap();
    let file = file.to_str().unwrap();

    let rounds = 28;
    let (mut killed, mut in_retry, mut in_call) = (0, 0, 0);
    let mut runs = Vec::new();
    for round in 0..rounds {
        let at = match round % 4 {
            0 => KillAt::Time(rng.random_range(0..900)),
            1 => KillAt::Event(rng.random_range(2..24)),
            2 => KillAt::InRetry(rng.random_range(0..150)),
            _ => KillAt::InCall(rng.random_range(1..=2)),
        };
        let (mut child, rx) = spawn_run(file, db);
        let id = match at {
            KillAt::Time(ms) => {
                let id = wait_for(&rx, |_| true);
                std::thread::sleep(Duration::from_millis(ms));
                id
            }
            KillAt::Event(n) => {
                let mut seen = 0;
                wait_for(&rx, |_| {
                    seen += 1;
                    seen >= n
                })
            }
            KillAt::InRetry(ms) => {
                let id = wait_for(&rx, |v| {
                    v["type"] == "step_failed" && v["step"] == "slow" && v["retry_in_ms"].is_u64()
                });
                std::thread::sleep(Duration::from_millis(ms));
                id
            }
            KillAt::InCall(n) => {
                wait_for(&rx, |v| v["type"] == "tool_call_started" && v["call"] == n)
            }
        };
        let id = id.expect("the run printed no event");
        let alive = child.try_wait().unwrap().is_none();
        let _ = child.kill(); // SIGKILL
        let _ = child.wait();
        // What the log and the service held at the kill.
        let before = events(&id, db);
        let delivered_before = counter.lock().unwrap().deliveries.len();
        let done_before = finished_steps(&before);
        if alive {
            killed += 1;
            let slow_failed = of(&before, "step_failed", "slow").count() > 0;
            if slow_failed && !done_before.contains_key("slow") {
                in_retry += 1;
            }
            let open_call = of(&before, "tool_call_started", AGENT_STEP).count()
                > of(&before, "tool_call_finished", AGENT_STEP).count();
            if open_call {
                in_call += 1;
            }
        }
        eprintln!(
            "round {round}: {at:?}, {} at the kill ({} events, {} steps done)",
            if alive { "running" } else { "already over" },
            before.len(),
            done_before.len()
        );
        // Resume until the run is over.
        let mut status = String::new();
        for _ in 0..3 {
            let o = baton(&["resume", &id, "--json"], db);
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
        let after = events(&id, db);
        assert_eq!(
            status, "succeeded",
            "run {id} (round {round}, {at:?}) did not finish: {after:#?}"
        );
        // No step that had finished ran again: its events appear once, as before the kill.
        for (step, starts) in &done_before {
            assert_eq!(of(&after, "step_succeeded", step).count(), 1, "{step}");
            assert_eq!(
                of(&after, "step_started", step).count(),
                *starts,
                "run {id}: step {step} had finished before the kill and started again"
            );
        }
        // ...and sent nothing more.
        let c = counter.lock().unwrap();
        for (path, key) in &c.deliveries[delivered_before..] {
            let key = key.as_deref().unwrap_or_default();
            if !key.starts_with(&id) {
                continue;
            }
            let step = key.split(':').nth(1).unwrap_or_default();
            assert!(
                !done_before.contains_key(step),
                "run {id}: {path} was delivered again after the kill, though step {step} had finished"
            );
        }
        drop(c);
        // A tool call whose result was logged is never sent again.
        for n in [1, 2] {
            let finished = |evs: &[Value]| {
                of(evs, "tool_call_finished", AGENT_STEP)
                    .filter(|e| e["call"] == n)
                    .count()
            };
            assert_eq!(finished(&after), 1, "run {id}: call {n}");
        }
        for step in TOOL_STEPS.iter().chain([&AGENT_STEP]) {
            assert_eq!(of(&after, "step_succeeded", step).count(), 1, "{step}");
        }
        runs.push(id);
    }
    eprintln!(
        "{killed} of {rounds} runs killed mid-way, {in_retry} inside a retry, {in_call} between a call's start and its result"
    );
    assert!(
        killed >= 20,
        "only {killed} of {rounds} runs were killed mid-way: the test lost its point"
    );
    assert!(in_retry >= 1, "no run was killed inside a retry");
    assert!(in_call >= 1, "no run was killed inside a tool call");

    // Per effect: one key, the documented one; applied exactly once.
    let c = counter.lock().unwrap();
    let mut per_effect: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, key) in &c.deliveries {
        let key = key
            .clone()
            .unwrap_or_else(|| panic!("a request to {path} carried no Idempotency-Key"));
        per_effect
            .entry(effect_of(path, &key))
            .or_default()
            .insert(key);
    }
    let mut expected: Vec<(String, String)> = Vec::new();
    for id in &runs {
        for s in TOOL_STEPS {
            expected.push((format!("{id}/{s}"), format!("{id}:{s}:1")));
        }
        for n in [1, 2] {
            expected.push((
                format!("{id}/agent/{n}"),
                format!("{id}:{AGENT_STEP}:1/{n}"),
            ));
        }
    }
    let slow_redelivered = runs
        .iter()
        .filter(|id| {
            c.deliveries
                .iter()
                .filter(|(p, k)| {
                    p == "/slow" && k.as_deref().is_some_and(|k| k.starts_with(id.as_str()))
                })
                .count()
                > 1
        })
        .count();
    for (effect, key) in &expected {
        let keys = per_effect.get(effect).cloned().unwrap_or_default();
        assert_eq!(
            keys,
            BTreeSet::from([key.clone()]),
            "{effect}: every delivery must carry the effect's key"
        );
        let applied = c.applied.get(effect).map_or(0, Vec::len);
        assert_eq!(applied, 1, "{effect} was applied {applied} times");
    }
    assert_eq!(
        per_effect.len(),
        expected.len(),
        "requests for unknown effects"
    );
    let repeated = expected
        .iter()
        .filter(|(effect, _)| {
            c.deliveries
                .iter()
                .filter(|(p, k)| effect_of(p, k.as_deref().unwrap_or_default()) == *effect)
                .count()
                > 1
        })
        .count();
    eprintln!(
        "{} effects, {} deliveries; {repeated} effects delivered more than once, each time with its one key; every effect applied once",
        expected.len(),
        c.deliveries.len()
    );
    // The first delivery of `slow` is answered after the step's timeout, in every run: the
    // step's retry (or its resume) delivered the same key again, and the service did not
    // apply it twice (asserted above).
    assert_eq!(
        slow_redelivered,
        runs.len(),
        "every run delivers the slow step's key twice"
    );
}
