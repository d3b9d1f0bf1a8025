//! What the end-to-end test files share: the `baton` binary with a clean environment, a
//! database in a temp dir, and readers of its output.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
// Each test file uses its own part of this module.
#![allow(dead_code)]

pub mod serve;

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

/// The repository's root (examples/, docs/).
pub fn root() -> PathBuf {
    std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// The binary under test, without the caller's database, model or colours.
pub fn baton() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_baton"));
    // One inference thread: two spin against each other on a busy 2-core machine.
    c.env_remove("BATON_DB")
        .env_remove("BATON_MODEL")
        // No trace leaves a test for the developer's collector.
        .env_remove("OTEL_EXPORTER_OTLP_ENDPOINT")
        .env_remove("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
        .env("NO_COLOR", "1")
        .env("BATON_LOCAL_THREADS", "1");
    c
}

/// Runs `cmd` to its end, its output read on threads so that a full pipe never stops it;
/// `None` (the process killed) when it runs past `limit`: it hung.
pub fn output_within(cmd: &mut Command, limit: Duration) -> Option<Output> {
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let read = |mut r: Box<dyn std::io::Read + Send>| {
        std::thread::spawn(move || {
            let mut s = Vec::new();
            r.read_to_end(&mut s).unwrap();
            s
        })
    };
    let out = read(Box::new(child.stdout.take().unwrap()));
    let err = read(Box::new(child.stderr.take().unwrap()));
    let deadline = Instant::now() + limit;
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return None;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    Some(Output {
        status,
        stdout: out.join().unwrap(),
        stderr: err.join().unwrap(),
    })
}

/// A run log of the test's own, in a temp dir that holds its workflow files too.
pub struct Db(pub tempfile::TempDir);

impl Db {
    pub fn new() -> Self {
        Db(tempfile::tempdir().unwrap())
    }

    pub fn path(&self) -> PathBuf {
        self.0.path().join("baton.db")
    }

    /// `baton ARGS --db <this database>`.
    pub fn run(&self, args: &[&str]) -> Output {
        baton()
            .args(args)
            .arg("--db")
            .arg(self.path())
            .output()
            .unwrap()
    }

    /// A workflow file in the test's directory.
    pub fn workflow(&self, name: &str, yaml: &str) -> String {
        let p = self.0.path().join(name);
        std::fs::write(&p, yaml).unwrap();
        p.display().to_string()
    }
}

/// Both output streams, for assertion messages.
pub fn text(o: &Output) -> String {
    format!(
        "stdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// The id of the run a `baton run` (or `resume`) printed in its summary (`run ID  STATUS`).
pub fn run_id_of(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .find_map(|l| {
            l.strip_prefix("run ")
                .and_then(|r| r.split_whitespace().next())
        })
        .unwrap_or_else(|| panic!("no run id in {}", text(o)))
        .to_string()
}

/// The summary line of `--json` output.
pub fn summary(o: &Output) -> Value {
    let s = String::from_utf8_lossy(&o.stdout);
    let line = s
        .lines()
        .rev()
        .find(|l| l.contains("\"summary\""))
        .unwrap_or_else(|| panic!("no summary in {}", text(o)));
    serde_json::from_str::<Value>(line).unwrap()["summary"].clone()
}

/// Sandbox runs are serialised with baton-sandbox's own tests (a lock on that crate's
/// directory), whose host-cleanliness checks must see only their own sandboxes.
pub fn lock() -> std::fs::File {
    let dir = std::fs::File::open(concat!(env!("CARGO_MANIFEST_DIR"), "/../sandbox")).unwrap();
    dir.lock().unwrap();
    dir
}

/// The tiers `baton sandbox doctor --json` reports (it must report all five).
fn doctor_tiers() -> Vec<Value> {
    let out = baton()
        .args(["sandbox", "doctor", "--json"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", text(&out));
    let v: Value = serde_json::from_slice(&out.stdout).unwrap();
    let tiers = v["tiers"].as_array().unwrap().clone();
    assert_eq!(tiers.len(), 5, "doctor must report every tier");
    tiers
}

/// Whether `tier` works here, per the doctor.
pub fn tier_works(tier: &str) -> bool {
    doctor_tiers()
        .iter()
        .any(|t| t["tier"] == tier && t["works"] == true)
}

/// Whether the process tier works here (root with cgroups); says why not when it does not,
/// and fails when BATON_REQUIRE_TIERS lists it.
pub fn process_tier_works() -> bool {
    let tiers = doctor_tiers();
    let process = tiers.iter().find(|t| t["tier"] == "process").unwrap();
    if process["works"] != true {
        let required = std::env::var("BATON_REQUIRE_TIERS")
            .unwrap_or_default()
            .split(',')
            .any(|t| t.trim() == "process");
        assert!(
            !required,
            "the process tier is required here (BATON_REQUIRE_TIERS) but does not work: {}",
            process["detail"]
        );
        println!(
            "SKIPPED: the process tier does not work here: {}",
            process["detail"]
        );
        eprintln!(
            "SKIPPED: the process tier does not work here: {}",
            process["detail"]
        );
        return false;
    }
    true
}
