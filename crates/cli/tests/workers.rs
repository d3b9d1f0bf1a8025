//! Scale-out on PostgreSQL with the real binaries: `baton worker` processes sharing runs (no
//! run executed twice), a worker killed with `kill -9` mid-run whose run another worker takes
//! over once its lease expires (each effect once), tag routing, draining, `workers list`, and
//! bad input (no database, a SQLite file).
//!
//! Effects are counted on a service that honours `Idempotency-Key` as an idempotent API does
//! (as in `crash.rs`): every `http.post` step sends its effect's own key, the service applies
//! the first delivery of a key and answers later ones without applying them.
// End-to-end tests run (and kill) the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{baton, text};
use serde_json::Value;

/// What the service saw: every delivery (path, key), and per effect (run + path) the keys it
/// applied.
#[derive(Default)]
struct Counter {
    deliveries: Vec<(String, String)>,
    applied: BTreeMap<String, u32>,
}

/// An idempotent service on loopback; each answer takes `delay`.
fn service(delay: Duration) -> (u16, Arc<Mutex<Counter>>) {
    let counter = Arc::new(Mutex::new(Counter::default()));
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let c = counter.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let counter = c.clone();
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut first = String::new();
                if reader.read_line(&mut first).unwrap_or(0) == 0 {
                    return;
                }
                let path = first.split_whitespace().nth(1).unwrap_or("").to_string();
                let (mut key, mut length) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    if line == "\r\n" {
                        break;
                    }
                    if let Some((k, v)) = line.split_once(':') {
                        if k.eq_ignore_ascii_case("idempotency-key") {
                            key = v.trim().to_string();
                        } else if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut body = vec![0u8; length];
                if reader.read_exact(&mut body).is_err() {
                    return;
                }
                {
                    let mut c = counter.lock().unwrap();
                    c.deliveries.push((path.clone(), key.clone()));
                    let run = key.split(':').next().unwrap_or_default();
                    let effect = format!("{run}{path}");
                    let seen = c.deliveries.iter().filter(|(_, k)| *k == key).count();
                    if seen == 1 {
                        *c.applied.entry(effect).or_default() += 1;
                    }
                }
                std::thread::sleep(delay);
                let body = "{\"ok\":true}";
                let _ = write!(
                    stream,
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                    body.len()
                );
            });
        }
    });
    (port, counter)
}

/// A workflow of `steps` `http.post` steps to the service, `s0`, `s1`, ...
fn workflow(dir: &Path, name: &str, port: u16, steps: usize) -> String {
    let mut wf = format!(
        "version: 1\nname: {name}\npolicy: {{ http_allow: [\"127.0.0.1:{port}\"] }}\nsteps:\n"
    );
    for i in 0..steps {
        wf.push_str(&format!(
            "  - {{ id: s{i}, tool: http.post, with: {{ url: \"http://127.0.0.1:{port}/s{i}\", body: {{ step: {i} }} }} }}\n"
        ));
    }
    let path = dir.join(format!("{name}.yaml"));
    std::fs::write(&path, wf).unwrap();
    path.display().to_string()
}

/// `baton ARGS --db URL`, its data under `home`.
fn on(url: &str, home: &Path, args: &[&str]) -> Output {
    baton()
        .env("BATON_HOME", home)
        .args(args)
        .args(["--db", url])
        .output()
        .unwrap()
}

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `baton run FILE --queue`: the run's id.
fn queue(url: &str, home: &Path, file: &str, extra: &[&str]) -> String {
    let mut args = vec!["run", file, "--queue"];
    args.extend_from_slice(extra);
    ok(&on(url, home, &args))
}

/// A `baton worker` process; killed when dropped. Its stderr (with `claimed` lines) is kept.
struct WorkerProc {
    child: Child,
    log: Arc<Mutex<String>>,
}

impl WorkerProc {
    fn start(url: &str, home: &Path, args: &[&str]) -> Self {
        let mut child = baton()
            .env("BATON_HOME", home)
            .env("BATON_LOG", "info")
            .args([
                "worker", "--db", url, "--lease", "1500ms", "--poll", "100ms",
            ])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        std::thread::spawn(move || {
            let mut line = String::new();
            while err.read_line(&mut line).unwrap_or(0) > 0 {
                l.lock().unwrap().push_str(&line);
                line.clear();
            }
        });
        Self { child, log }
    }

    fn id(&self) -> String {
        format!("{}:{}", hostname(), self.child.id())
    }

    /// The runs it said it claimed.
    fn claimed(&self) -> Vec<String> {
        self.log
            .lock()
            .unwrap()
            .lines()
            .filter(|l| l.contains("claimed"))
            .filter_map(|l| l.split("run=").nth(1))
            .map(|r| r.split_whitespace().next().unwrap_or("").to_string())
            .collect()
    }

    fn log(&self) -> String {
        self.log.lock().unwrap().clone()
    }

    /// Where it serves its metrics (it says so when it starts with `--metrics-addr`).
    fn metrics_url(&self) -> String {
        until("the worker to say where its metrics are", 20, || {
            self.log()
                .lines()
                .find_map(|l| l.trim().strip_prefix("metrics: http://"))
                .map(|a| a.trim_end_matches("/metrics").to_string())
        })
    }
}

impl Drop for WorkerProc {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Polls `check` until it gives a value, at most `secs` seconds.
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

fn status(url: &str, home: &Path, run: &str) -> Value {
    json(&on(url, home, &["runs", "show", run, "--json"]))
}

fn workers_list(url: &str, home: &Path) -> Vec<Value> {
    json(&on(url, home, &["workers", "list", "--json"]))
        .as_array()
        .unwrap()
        .clone()
}

/// The kinds of a run's events, per step: how often each step started and succeeded.
fn step_counts(url: &str, home: &Path, run: &str) -> BTreeMap<(String, String), u32> {
    let o = on(url, home, &["runs", "logs", run, "--json"]);
    let mut counts = BTreeMap::new();
    for line in ok(&o).lines() {
        let v: Value = serde_json::from_str(line).unwrap();
        let kind = v["type"].as_str().unwrap_or_default().to_string();
        if let Some(step) = v["step"].as_str()
            && (kind == "step_started" || kind == "step_succeeded")
        {
            *counts.entry((step.to_string(), kind)).or_default() += 1;
        }
    }
    counts
}

/// Every step of `run` started and succeeded once in its log, and the service applied each
/// step's effect once.
fn each_effect_once(url: &str, home: &Path, run: &str, steps: usize, c: &Counter) {
    let counts = step_counts(url, home, run);
    for i in 0..steps {
        for kind in ["step_started", "step_succeeded"] {
            assert_eq!(
                counts.get(&(format!("s{i}"), kind.to_string())),
                Some(&1),
                "run {run}: step s{i} {kind}: {counts:?}"
            );
        }
        assert_eq!(
            c.applied.get(&format!("{run}/s{i}")),
            Some(&1),
            "run {run}: the effect of s{i} was not applied once"
        );
    }
}

fn pg(what: &str) -> Option<(String, tempfile::TempDir)> {
    let url = baton_test_support::postgres::database(what)?;
    Some((url, tempfile::tempdir().unwrap()))
}

#[test]
fn two_workers_share_twenty_runs_and_none_runs_twice() {
    let Some((url, home)) = pg("two workers, 20 runs") else {
        return;
    };
    let home = home.path();
    let (port, counter) = service(Duration::from_millis(30));
    let file = workflow(home, "share", port, 3);
    let a = WorkerProc::start(
        &url,
        home,
        &["--concurrency", "4", "--metrics-addr", "127.0.0.1:0"],
    );
    let b = WorkerProc::start(&url, home, &["--concurrency", "4"]);
    until("both workers to register", 20, || {
        let l = workers_list(&url, home);
        (l.iter().filter(|w| w["state"] == "running").count() == 2).then_some(())
    });
    let runs: Vec<String> = (0..20).map(|_| queue(&url, home, &file, &[])).collect();
    for r in &runs {
        until(&format!("run {r} to succeed"), 60, || {
            (status(&url, home, r)["status"] == "succeeded").then_some(())
        });
    }
    let c = counter.lock().unwrap();
    for r in &runs {
        each_effect_once(&url, home, r, 3, &c);
    }
    // No step was delivered twice: no run was driven by both.
    assert_eq!(c.deliveries.len(), 60, "{:?}", c.deliveries);
    let (ca, cb) = (a.claimed(), b.claimed());
    assert!(
        !ca.is_empty() && !cb.is_empty(),
        "both workers ran some: {ca:?} / {cb:?}"
    );
    for r in &ca {
        assert!(!cb.contains(r), "run {r} claimed by both workers");
    }
    assert_eq!(ca.len() + cb.len(), 20, "{}\n---\n{}", a.log(), b.log());
    // A's metrics count what it claimed.
    let metrics = http_get(&a.metrics_url(), "/metrics");
    assert!(
        metrics.contains(&format!("baton_worker_runs_claimed_total {}", ca.len())),
        "{metrics}"
    );
    assert!(metrics.contains("baton_worker_draining 0"), "{metrics}");
    assert!(metrics.contains("baton_runs_active 0"), "{metrics}");
}

/// A plain HTTP GET of `path` on `addr`: the body.
fn http_get(addr: &str, path: &str) -> String {
    let mut s = std::net::TcpStream::connect(addr).unwrap();
    write!(
        s,
        "GET {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.1 200"), "{out}");
    out.split_once("\r\n\r\n").unwrap().1.to_string()
}

#[test]
fn a_worker_killed_mid_run_loses_its_lease_and_another_finishes_the_run_with_each_effect_once() {
    let Some((url, home)) = pg("kill -9 a worker") else {
        return;
    };
    let home = home.path();
    // Six steps of 400 ms: the kill lands mid-run, most likely mid-call.
    let (port, counter) = service(Duration::from_millis(400));
    let file = workflow(home, "chaos", port, 6);
    let mut a = WorkerProc::start(&url, home, &[]);
    let run = queue(&url, home, &file, &[]);
    until("the first worker to be two steps in", 30, || {
        (counter.lock().unwrap().deliveries.len() >= 2).then_some(())
    });
    let held = status(&url, home, &run);
    assert_eq!(held["placement"]["held_by"], a.id(), "{held}");
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    let killed_at = Instant::now();
    let b = WorkerProc::start(&url, home, &[]);
    until("the run to succeed on the second worker", 60, || {
        (status(&url, home, &run)["status"] == "succeeded").then_some(())
    });
    assert_eq!(b.claimed(), vec![run.clone()], "{}", b.log());
    // It waited for the dead worker's lease to expire (1.5 s) before taking the run.
    assert!(killed_at.elapsed() >= Duration::from_millis(1500));
    let c = counter.lock().unwrap();
    each_effect_once(&url, home, &run, 6, &c);
    // Resumed from the log: a second `run_started`, marked resumed.
    let o = ok(&on(&url, home, &["runs", "logs", &run, "--json"]));
    let resumed = o
        .lines()
        .filter(|l| l.contains("\"run_started\"") && l.contains("\"resumed\":true"))
        .count();
    assert_eq!(resumed, 1, "{o}");
    // The killed worker is listed as lost, the other as running.
    let list = workers_list(&url, home);
    let state = |id: &str| {
        list.iter()
            .find(|w| w["id"] == id)
            .map(|w| w["state"].clone())
    };
    assert_eq!(state(&a.id()), Some(Value::from("lost")), "{list:?}");
    assert_eq!(state(&b.id()), Some(Value::from("running")), "{list:?}");
}

#[test]
fn a_run_that_requires_tags_waits_for_a_worker_that_has_them() {
    let Some((url, home)) = pg("worker tags") else {
        return;
    };
    let home = home.path();
    let (port, counter) = service(Duration::from_millis(10));
    let file = workflow(home, "tagged", port, 2);
    let plain = WorkerProc::start(&url, home, &["--worker-tags", "cpu"]);
    until("the worker to register", 20, || {
        (!workers_list(&url, home).is_empty()).then_some(())
    });
    let run = queue(&url, home, &file, &["--worker-tags", "gpu,sandbox-gvisor"]);
    // An untagged run goes through meanwhile: the worker is polling.
    let other = queue(&url, home, &file, &[]);
    until("the untagged run to succeed", 30, || {
        (status(&url, home, &other)["status"] == "succeeded").then_some(())
    });
    let shown = status(&url, home, &run);
    assert_eq!(shown["status"], "pending", "{shown}");
    let reason = shown["placement"]["reason"].as_str().unwrap();
    assert!(
        reason.contains("gpu,sandbox-gvisor") && reason.contains("no running worker has them"),
        "{reason}"
    );
    let plain_text = ok(&on(&url, home, &["runs", "show", &run]));
    assert!(
        plain_text.contains("queued    waiting for a worker with tags gpu,sandbox-gvisor"),
        "{plain_text}"
    );
    assert!(plain.claimed().iter().all(|r| *r != run));
    let gpu = WorkerProc::start(&url, home, &["--worker-tags", "gpu,sandbox-gvisor,big"]);
    until("the tagged run to succeed", 30, || {
        (status(&url, home, &run)["status"] == "succeeded").then_some(())
    });
    assert_eq!(gpu.claimed(), vec![run.clone()], "{}", gpu.log());
    each_effect_once(&url, home, &run, 2, &counter.lock().unwrap());
    // A bad tag is refused where it is given.
    let o = on(
        &url,
        home,
        &["run", &file, "--queue", "--worker-tags", "a b"],
    );
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("not a worker tag"), "{}", text(&o));
}

#[test]
fn a_drained_worker_finishes_its_steps_hands_its_run_back_and_exits() {
    let Some((url, home)) = pg("drain a worker") else {
        return;
    };
    let home = home.path();
    let (port, counter) = service(Duration::from_millis(400));
    let file = workflow(home, "drained", port, 5);
    let mut a = WorkerProc::start(&url, home, &[]);
    let run = queue(&url, home, &file, &[]);
    until("the worker to start the run", 30, || {
        (!counter.lock().unwrap().deliveries.is_empty()).then_some(())
    });
    let listed = ok(&on(&url, home, &["workers", "list"]));
    assert!(
        listed.contains(&a.id()) && listed.contains("running") && listed.contains("1/8"),
        "{listed}"
    );
    let said = ok(&on(&url, home, &["workers", "drain", &a.id()]));
    assert!(said.contains("drains"), "{said}");
    let exited = until("the drained worker to exit", 20, || {
        a.child.try_wait().unwrap()
    });
    assert!(exited.success(), "{}", a.log());
    assert!(a.log().contains("drained, exiting"), "{}", a.log());
    // Its step in flight finished (logged), the run was handed back, not finished.
    let mid = status(&url, home, &run);
    assert_ne!(mid["status"], "succeeded", "{mid}");
    let stopped = workers_list(&url, home);
    assert!(stopped.iter().all(|w| w["id"] != a.id()), "{stopped:?}");
    let all = json(&on(&url, home, &["workers", "list", "--all", "--json"]));
    assert!(
        all.as_array()
            .unwrap()
            .iter()
            .any(|w| w["id"] == a.id() && w["state"] == "stopped"),
        "{all}"
    );
    let b = WorkerProc::start(&url, home, &[]);
    until("the other worker to finish the run", 30, || {
        (status(&url, home, &run)["status"] == "succeeded").then_some(())
    });
    assert_eq!(b.claimed(), vec![run.clone()], "{}", b.log());
    let c = counter.lock().unwrap();
    each_effect_once(&url, home, &run, 5, &c);
    // No step was delivered twice: the drain let the step in flight finish.
    assert_eq!(c.deliveries.len(), 5, "{:?}", c.deliveries);
    // Draining a worker that is not there says so.
    let o = on(&url, home, &["workers", "drain", "nohost:1"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no running worker 'nohost:1'"),
        "{}",
        text(&o)
    );
}

#[test]
fn a_worker_without_a_postgresql_database_is_a_clear_error() {
    let home = tempfile::tempdir().unwrap();
    // Nothing listens on port 1.
    let o = baton()
        .env("BATON_HOME", home.path())
        .args(["worker", "--db", "postgres://baton@127.0.0.1:1/baton"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("postgres://baton@127.0.0.1:1/baton") && err.contains("Connection refused"),
        "{err}"
    );
    let file: PathBuf = home.path().join("runs.db");
    let o = baton()
        .args(["worker", "--db"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("needs a PostgreSQL database"),
        "{}",
        text(&o)
    );
    let o = baton()
        .args(["run", "x.yaml", "--queue", "--db"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("PostgreSQL"), "{}", text(&o));
    let o = baton()
        .args(["serve", "--no-worker", "--db"])
        .arg(&file)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("--no-worker"), "{}", text(&o));
}

/// Runs SQL through PostgreSQL's own client, `psql`, beside the server's other programs.
fn psql(url: &str, sql: &str) -> String {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .map_or_else(|| "psql".into(), |p| p.display().to_string());
    let o = std::process::Command::new(bin)
        .args([url, "-v", "ON_ERROR_STOP=1", "-At", "-c", sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "psql: {}", text(&o));
    String::from_utf8_lossy(&o.stdout).trim().to_string()
}

/// What a database restart does to its clients: every connection of the database cut.
fn cut_connections(url: &str) -> u32 {
    psql(
        url,
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
         WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    .parse()
    .unwrap()
}

#[test]
fn a_worker_outlives_its_database_connections_being_cut_mid_run() {
    let Some((url, home)) = pg("database connections cut under a worker") else {
        return;
    };
    let home = home.path();
    let (port, counter) = service(Duration::from_millis(300));
    let file = workflow(home, "cut", port, 5);
    let mut w = WorkerProc::start(&url, home, &[]);
    let run = queue(&url, home, &file, &[]);
    until("the worker to be two steps in", 30, || {
        (counter.lock().unwrap().deliveries.len() >= 2).then_some(())
    });
    // Its pool's connections and the one that listens for notifications.
    assert!(cut_connections(&url) >= 2);
    until("the run to succeed all the same", 60, || {
        (status(&url, home, &run)["status"] == "succeeded").then_some(())
    });
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log());
    each_effect_once(&url, home, &run, 5, &counter.lock().unwrap());
    // Cut again while it idles: the next run is still claimed (notified once the listening
    // connection is back, or found by the poll).
    assert!(cut_connections(&url) >= 1);
    let next = queue(&url, home, &file, &[]);
    until("the next run to succeed", 60, || {
        (status(&url, home, &next)["status"] == "succeeded").then_some(())
    });
    assert!(w.child.try_wait().unwrap().is_none(), "{}", w.log());
    assert!(
        w.log().contains("listening for notifications"),
        "the lost listening connection is reported: {}",
        w.log()
    );
}

/// Chaos: 30 runs across 3 workers while a random worker (of those holding runs) is killed
/// with `kill -9` (and replaced) every 700 ms, 5 times, and every database connection is cut once: every run
/// completes, every step started and succeeded once in its log, every effect applied once.
/// The kills come from a seeded RNG (`BATON_CHAOS_SEED=N` repeats one).
#[test]
fn chaos_kill_random_workers_and_cut_the_database_while_30_runs_go_through() {
    use rand::{Rng, SeedableRng};
    let Some((url, home)) = pg("chaos: kill -9 random workers") else {
        return;
    };
    let home = home.path();
    let seed: u64 = std::env::var("BATON_CHAOS_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .unwrap()
                .as_nanos() as u64
        });
    eprintln!("chaos seed: {seed} (BATON_CHAOS_SEED={seed} repeats it)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let (port, counter) = service(Duration::from_millis(150));
    let file = workflow(home, "chaos30", port, 5);
    let start = || WorkerProc::start(&url, home, &["--concurrency", "4"]);
    let mut workers: Vec<WorkerProc> = (0..3).map(|_| start()).collect();
    let runs: Vec<String> = (0..30).map(|_| queue(&url, home, &file, &[])).collect();
    for round in 0..5 {
        std::thread::sleep(Duration::from_millis(700));
        // A random one of the workers holding runs now (any, when none does).
        let list = workers_list(&url, home);
        let holding: Vec<usize> = (0..workers.len())
            .filter(|i| {
                list.iter()
                    .any(|w| w["id"] == workers[*i].id() && w["runs_held"].as_u64() > Some(0))
            })
            .collect();
        let i = if holding.is_empty() {
            rng.random_range(0..workers.len())
        } else {
            holding[rng.random_range(0..holding.len())]
        };
        let mut victim = workers.swap_remove(i);
        victim.child.kill().unwrap();
        victim.child.wait().unwrap();
        workers.push(start());
        if round == 2 {
            cut_connections(&url);
        }
    }
    for r in &runs {
        until(&format!("run {r} to succeed (seed {seed})"), 120, || {
            (status(&url, home, r)["status"] == "succeeded").then_some(())
        });
    }
    let c = counter.lock().unwrap();
    let mut taken_over = 0;
    for r in &runs {
        each_effect_once(&url, home, r, 5, &c);
        let log = ok(&on(&url, home, &["runs", "logs", r, "--json"]));
        if log.contains("\"resumed\":true") {
            taken_over += 1;
        }
    }
    assert_eq!(c.applied.len(), 30 * 5, "seed {seed}");
    // The kills landed mid-run: some runs were resumed by another worker.
    assert!(taken_over > 0, "no run was taken over (seed {seed})");
    eprintln!("chaos: {taken_over} of 30 runs taken over by another worker");
}
