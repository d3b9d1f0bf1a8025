//! What a new user hit, fixed: closed pipes, exit codes, run id prefixes, strict inputs and their
//! size cap, `--config`, a run keeping its durability, crashed runs shown as `interrupted`, the
//! whole `--json` stream and whole human prompts.
// End-to-end tests run the real binary (and ldd on it).
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::time::{Duration, Instant};

use common::{Db, baton, summary, text};
use serde_json::Value;

const ONE_STEP: &str = "version: 1\nname: one\ninputs:\n  note: { type: string, default: \"\" }\nsteps:\n  - { id: a, tool: echo, with: { text: hi } }\n";

const SLOW: &str = "version: 1\nname: slow\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n  - { id: nap, tool: sleep, with: { duration: 60s } }\n";

const APPROVAL: &str = "version: 1\nname: ask\nsteps:\n  - id: ok\n    human:\n      prompt: |-\n        Ship release 2?\n        Changes: faster start\n        Risk: low\n";

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_id(db: &Db, file: &str) -> String {
    let o = db.run(&["run", file, "--json"]);
    summary(&o)["id"].as_str().unwrap().to_string()
}

/// `baton ARGS --db <db>` started with its stdout piped to the test.
fn spawn(db: &Db, args: &[&str]) -> std::process::Child {
    baton()
        .args(args)
        .arg("--db")
        .arg(db.path())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
}

/// Runs `baton ARGS`, reads one line of its output and closes the pipe (`| head -1`); the
/// command must end by itself, with its own exit code and no panic.
fn first_line_then_close(db: &Db, args: &[&str]) -> (String, std::process::Output) {
    let mut child = spawn(db, args);
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut first = String::new();
    out.read_line(&mut first).unwrap();
    drop(out);
    let o = child.wait_with_output().unwrap();
    assert!(!stderr(&o).contains("panicked"), "{args:?}: {}", stderr(&o));
    (first, o)
}

#[test]
fn a_closed_pipe_ends_output_quietly() {
    let db = Db::new();
    let wf = db.workflow("one.yaml", ONE_STEP);
    // `baton run X --json | head -1`: the run still completes and is recorded.
    let (first, o) = first_line_then_close(&db, &["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let id = serde_json::from_str::<Value>(&first).unwrap()["run_id"]
        .as_str()
        .unwrap()
        .to_string();
    let o = db.run(&["runs", "show", &id, "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["status"],
        "succeeded"
    );
    // Inspection output over a pipe buffer (64 KiB) into a reader that stops after a line.
    let big = db.0.path().join("big.json");
    std::fs::write(&big, format!("{{\"note\": \"{}\"}}", "x".repeat(200_000))).unwrap();
    let o = db.run(&["run", &wf, "--input-file", big.to_str().unwrap(), "--json"]);
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    for args in [
        vec!["runs", "show", id.as_str(), "--json"],
        vec!["runs", "logs", id.as_str()],
        vec!["runs", "state", id.as_str()],
    ] {
        let (_, o) = first_line_then_close(&db, &args);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
    }
}

#[test]
fn validate_exits_2_on_an_invalid_file_like_run() {
    let db = Db::new();
    let bad = db.workflow(
        "bad.yaml",
        "version: 1\nname: bad\nsteps:\n  - { id: a, tool: ech }\n",
    );
    let o = db.run(&["validate", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = db.run(&["run", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn runs_are_named_by_a_unique_prefix() {
    let db = Db::new();
    let wf = db.workflow("one.yaml", ONE_STEP);
    let a = run_id(&db, &wf);
    let b = run_id(&db, &wf);
    // Version-7 ids of runs made a moment apart share their first digits (the time).
    let shared = a.chars().zip(b.chars()).take_while(|(x, y)| x == y).count();
    assert!(shared >= 4, "{a} {b}");
    let unique = &a[..shared + 1];
    let o = db.run(&["runs", "show", unique, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(serde_json::from_slice::<Value>(&o.stdout).unwrap()["id"], a);
    let o = db.run(&["runs", "show", &a[..4]]);
    assert_ne!(o.status.code(), Some(0));
    assert!(
        stderr(&o).contains("ambiguous") && stderr(&o).contains(&a),
        "{}",
        text(&o)
    );
    let o = db.run(&["runs", "show", "ffffffff"]);
    assert!(stderr(&o).contains("no run ffffffff"), "{}", text(&o));
    let o = db.run(&["runs", "show", "zz"]);
    assert!(stderr(&o).contains("is not a run id"), "{}", text(&o));
}

#[test]
fn an_unknown_status_lists_the_valid_ones() {
    let db = Db::new();
    let o = db.run(&["runs", "list", "--status", "bogus"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    for s in [
        "pending",
        "running",
        "interrupted",
        "paused",
        "waiting",
        "succeeded",
        "failed",
        "cancelled",
    ] {
        assert!(e.contains(s), "{s} missing: {e}");
    }
}

#[test]
fn boolean_inputs_take_true_or_false_only() {
    let db = Db::new();
    let wf = db.workflow(
        "flag.yaml",
        "version: 1\nname: flag\ninputs:\n  flag: { type: boolean }\nsteps:\n  - { id: a, tool: echo, with: { text: \"{{ inputs.flag }}\" } }\n",
    );
    let o = db.run(&["run", &wf, "-i", "flag=yes"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("write true or false"), "{}", text(&o));
    let o = db.run(&["run", &wf, "-i", "flag=true", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

#[test]
fn inputs_have_a_size_cap() {
    let db = Db::new();
    let wf = db.workflow("one.yaml", ONE_STEP);
    let big = db.0.path().join("big.json");
    std::fs::write(&big, format!("{{\"note\": \"{}\"}}", "y".repeat(9 << 20))).unwrap();
    let o = db.run(&["run", &wf, "--input-file", big.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("over the 8.0 MiB limit"),
        "{}",
        stderr(&o)
    );
    let o = db.run(&[
        "run",
        &wf,
        "-i",
        &format!("note={}", "z".repeat(4000)),
        "--max-input-size",
        "2K",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("'note' 3.9 KiB"), "{}", stderr(&o));
    let o = db.run(&["run", &wf, "--max-input-size", "lots"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Nothing was stored for the refused runs.
    let o = db.run(&["runs", "list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
}

/// The bytes the database's live pages take (its write-ahead log folded in first; pages freed
/// by rewrites not counted).
fn db_bytes(db: &Db) -> u64 {
    let c = rusqlite::Connection::open(db.path()).unwrap();
    c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
        .unwrap();
    let pragma = |p: &str| -> u64 {
        c.query_row(&format!("PRAGMA {p}"), [], |r| r.get(0))
            .unwrap()
    };
    (pragma("page_count") - pragma("freelist_count")) * pragma("page_size")
}

#[test]
fn a_large_input_is_stored_once() {
    const TWO_STEPS: &str = "version: 1\nname: two\ninputs:\n  note: { type: string }\nsteps:\n  - { id: a, tool: echo, with: { text: hi } }\n  - { id: b, tool: echo, with: { text: \"{{ inputs.note | length }}\" } }\n";
    let db = Db::new();
    let wf = db.workflow("two.yaml", TWO_STEPS);
    let size = 6 << 20;
    let big = db.0.path().join("big.json");
    std::fs::write(&big, format!("{{\"note\": \"{}\"}}", "q".repeat(size))).unwrap();
    let o = db.run(&["run", &wf, "--input-file", big.to_str().unwrap(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    assert_eq!(summary(&o)["outputs"], serde_json::json!(size));
    // Once; not again in `run_created`, nor in each step's checkpoint.
    let bytes = db_bytes(&db);
    assert!(
        bytes < (size as u64) * 3 / 2,
        "{bytes} bytes stored for a {size}-byte input"
    );
    // Everything that shows the inputs still shows them whole.
    let o = db.run(&["runs", "logs", &id, "--json"]);
    let first: Value =
        serde_json::from_slice(o.stdout.split(|&b| b == b'\n').next().unwrap()).unwrap();
    assert_eq!(first["type"], "run_created");
    assert_eq!(first["inputs"]["note"].as_str().unwrap().len(), size);
    let o = db.run(&["runs", "state", &id]);
    let state: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(
        state["inputs"]["note"].as_str().unwrap().len(),
        size,
        "{}",
        stderr(&o)
    );
}

#[test]
fn config_flag_names_the_file_to_read() {
    let db = Db::new();
    let wf = db.workflow("one.yaml", ONE_STEP);
    let missing = db.0.path().join("nope.toml");
    let o = db.run(&["--config", missing.to_str().unwrap(), "run", &wf]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("nope.toml"), "{}", text(&o));
    // The named file is the one read: a broken one is reported by its path.
    let cfg = db.0.path().join("mine.toml");
    std::fs::write(&cfg, "[providers.house\nkind = ").unwrap();
    let o = db.run(&["--config", cfg.to_str().unwrap(), "run", &wf]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(stderr(&o).contains("mine.toml"), "{}", text(&o));
    // A good one is used: its provider is known to validation, and unknown without it.
    std::fs::write(&cfg, "[providers.house]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:9/v1\"\napi_key_env = \"\"\n").unwrap();
    let agent = db.workflow(
        "house.yaml",
        "version: 1\nname: house\nagents:\n  a: { model: house/any }\nsteps:\n  - { id: s, agent: a, prompt: hi }\n",
    );
    let o = baton()
        .args(["--config", cfg.to_str().unwrap(), "validate", &agent])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let o = baton()
        .args(["validate", &agent])
        .current_dir(db.0.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("house"), "{}", text(&o));
}

#[test]
fn a_run_keeps_its_durability() {
    let db = Db::new();
    let wf = db.workflow("ask.yaml", APPROVAL);
    let o = db.run(&["run", &wf, "--durability", "power", "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let durability = |db: &Db| {
        let o = db.run(&["runs", "show", &id, "--json"]);
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["durability"].clone()
    };
    assert_eq!(durability(&db), "power");
    let o = db.run(&["runs", "approve", &id, "--no-resume"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(durability(&db), "power");
    let o = db.run(&["resume", &id, "--durability", "process", "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(durability(&db), "process");
}

#[test]
fn a_killed_run_is_shown_as_interrupted_then_resumes() {
    let db = Db::new();
    let wf = db.workflow("slow.yaml", SLOW);
    let mut child = spawn(&db, &["run", &wf, "--json"]);
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut id = String::new();
    // Wait until the sleep step has started, then kill -9.
    let deadline = Instant::now() + Duration::from_secs(30);
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        id = v["run_id"].as_str().unwrap_or_default().to_string();
        if v["type"] == "step_started" && v["step"] == "nap" {
            break;
        }
        assert!(Instant::now() < deadline, "the sleep step never started");
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let o = db.run(&["runs", "list"]);
    let out = String::from_utf8_lossy(&o.stdout).into_owned();
    assert!(out.contains("interrupted"), "{out}");
    assert!(out.contains(&format!("baton resume {id}")), "{out}");
    let o = db.run(&["runs", "list", "--status", "interrupted", "--json"]);
    let listed: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(listed[0]["id"], id.as_str(), "{listed}");
    let o = db.run(&["runs", "list", "--status", "running", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    let o = db.run(&["runs", "show", &id]);
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("interrupted"),
        "{}",
        text(&o)
    );
    // Resuming it (the step that was cut short runs again) ends it; cancel to keep this short.
    let mut resumed = spawn(&db, &["resume", &id, "--json"]);
    let mut lines = BufReader::new(resumed.stdout.take().unwrap()).lines();
    for line in lines.by_ref() {
        let v: Value = serde_json::from_str(&line.unwrap()).unwrap();
        if v["type"] == "run_started" && v["resumed"] == true {
            break;
        }
    }
    let o = db.run(&["runs", "show", &id, "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap()["status"],
        "running"
    );
    let o = db.run(&["runs", "cancel", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(resumed.wait().unwrap().code(), Some(1));
}

#[test]
fn the_json_stream_starts_at_run_created_and_prompts_are_whole() {
    let db = Db::new();
    let wf = db.workflow("ask.yaml", APPROVAL);
    let o = db.run(&["run", &wf, "--json"]);
    let first: Value =
        serde_json::from_str(String::from_utf8_lossy(&o.stdout).lines().next().unwrap()).unwrap();
    assert_eq!(first["seq"], 1, "{first}");
    assert_eq!(first["type"], "run_created", "{first}");
    let o = db.run(&["run", &wf]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("Ship release 2?")
            && out.contains("Changes: faster start")
            && out.contains("Risk: low"),
        "{out}"
    );
}

#[test]
fn an_undefined_value_in_a_sole_expression_is_an_error_naming_it() {
    let db = Db::new();
    let cases = [
        (
            "version: 1\nname: t\nsteps:\n  - { id: a, tool: echo, with: { text: \"{{ state.nokey }}\" } }\n",
            "state.nokey",
        ),
        (
            "version: 1\nname: t\nsteps:\n  - { id: x, tool: echo, with: { text: hi } }\noutputs:\n  best: \"{{ steps.x.output[7] }}\"\n",
            "steps.x.output[7]",
        ),
        (
            "version: 1\nname: t\nsteps:\n  - { id: x, tool: echo, with: { text: \"say {{ inputs.nope }}\" } }\n",
            "inputs.nope",
        ),
    ];
    for (i, (yaml, expr)) in cases.into_iter().enumerate() {
        let wf = db.workflow(&format!("t{i}.yaml"), yaml);
        let o = db.run(&["run", &wf, "--json"]);
        // `inputs.nope` is caught by validation (exit 2); the others fail the run (exit 1).
        assert!(
            matches!(o.status.code(), Some(1 | 2)),
            "{yaml}: {}",
            text(&o)
        );
        let all = text(&o);
        assert!(
            all.contains(expr),
            "{yaml}: the error should name `{expr}`: {all}"
        );
        if o.status.code() == Some(1) {
            assert_eq!(summary(&o)["status"], "failed", "{all}");
        }
    }
    // Optional values stay possible.
    let wf = db.workflow(
        "ok.yaml",
        "version: 1\nname: t\nsteps:\n  - { id: a, tool: echo, with: { text: \"{{ state.nokey | default('none') }}\" } }\n",
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
}

/// The README says what the binary is: one executable that links only the system's C runtime
/// (glibc, libgcc_s, libm); no other shared library, no runtime, no interpreter. The embedded
/// model's libstdc++ and libgomp are linked in: loading them cost every start ≈ 1.6 M
/// instructions (docs/benchmarks.md, cold start).
#[test]
fn the_binary_links_only_the_system_runtime() {
    let o = std::process::Command::new("ldd")
        .arg(env!("CARGO_BIN_EXE_baton"))
        .output();
    let Ok(o) = o else {
        assert!(
            std::env::var_os("BATON_REQUIRE_LDD").is_none(),
            "ldd is not installed and BATON_REQUIRE_LDD is set"
        );
        eprintln!("SKIPPED the_binary_links_only_the_system_runtime: ldd is not installed");
        return;
    };
    let listing = String::from_utf8_lossy(&o.stdout);
    let allowed = [
        "linux-vdso",
        "libc.so",
        "libm.so",
        "libgcc_s.so",
        "ld-linux",
        "libpthread.so",
        "libdl.so",
        "librt.so",
    ];
    for line in listing.lines().map(str::trim).filter(|l| !l.is_empty()) {
        assert!(
            allowed.iter().any(|a| line.contains(a)),
            "the binary links {line}, which the README does not list:\n{listing}"
        );
    }
}

/// A workflow certain to fail at its first model call is reported before anything runs:
/// `validate` warns (exit 0), `run` refuses to start (exit 2) and stores nothing.
#[test]
fn a_model_that_cannot_be_called_is_reported_before_the_run() {
    let db = Db::new();
    let wf = db.workflow(
        "m.yaml",
        "version: 1\nname: m\nagents:\n  a: { model: scripted/nofixture }\n  b: { model: openai/gpt-x }\nsteps:\n  - { id: s, agent: a, prompt: hi }\n  - { id: t, agent: b, prompt: hi }\n",
    );
    let o = baton()
        .args(["validate", &wf])
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("m.yaml:4:") && e.contains("warning") && e.contains("nofixture"),
        "{e}"
    );
    assert!(e.contains("OPENAI_API_KEY"), "{e}");
    assert!(
        String::from_utf8_lossy(&o.stdout).contains("ok (2 warnings)"),
        "{}",
        text(&o)
    );
    let o = baton()
        .args(["run", &wf, "--db"])
        .arg(db.path())
        .env_remove("OPENAI_API_KEY")
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        stderr(&o).contains("error") && stderr(&o).contains("nofixture"),
        "{}",
        text(&o)
    );
    let o = db.run(&["runs", "list", "--json"]);
    assert_eq!(
        serde_json::from_slice::<Value>(&o.stdout).unwrap(),
        serde_json::json!([])
    );
    // A local model that is not installed.
    let models = db.0.path().join("no-models");
    let wf = db.workflow(
        "l.yaml",
        "version: 1\nname: l\nagents:\n  a: { model: local/smollm2 }\nsteps:\n  - { id: s, agent: a, prompt: hi }\n",
    );
    let o = baton()
        .args(["validate", &wf])
        .env("BATON_MODELS_DIR", &models)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert!(
        stderr(&o).contains("warning") && stderr(&o).contains("smollm2"),
        "{}",
        text(&o)
    );
}

#[test]
fn state_set_needs_a_key_and_ids_are_ascii() {
    let db = Db::new();
    let wf = db.workflow(
        "v.yaml",
        "version: 1\nname: t\nsteps:\n  - { id: café, tool: echo, with: { text: hi } }\n  - { id: s, tool: state.set, with: {} }\n",
    );
    let o = baton().args(["validate", &wf]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let e = stderr(&o);
    assert!(
        e.contains("`é` (U+00E9); ids may only use ASCII letters"),
        "{e}"
    );
    assert!(
        e.contains("v.yaml:5:") && e.contains("`state.set` needs at least one key"),
        "{e}"
    );
}

/// `--json` shows agents typing: `model_delta` lines (no seq; not in the run log) whose texts
/// add up to the answer.
#[test]
fn json_streams_model_deltas_that_are_not_logged() {
    let db = Db::new();
    let dir = db.0.path();
    std::fs::create_dir_all(dir.join("scripted")).unwrap();
    std::fs::write(
        dir.join("scripted/talker.yaml"),
        "replies:\n  - text: \"Hello from a scripted agent.\"\n",
    )
    .unwrap();
    let wf = db.workflow(
        "talk.yaml",
        "version: 1\nname: talk\nagents:\n  talker: { model: scripted/talker }\nsteps:\n  - { id: say, agent: talker, prompt: hi }\n",
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let deltas: Vec<Value> = String::from_utf8_lossy(&o.stdout)
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["type"] == "model_delta")
        .collect();
    assert!(!deltas.is_empty(), "{}", text(&o));
    let joined: String = deltas.iter().map(|d| d["text"].as_str().unwrap()).collect();
    assert_eq!(joined, "Hello from a scripted agent.");
    assert_eq!(deltas[0]["step"], "say");
    assert_eq!(deltas[0]["agent"], "talker");
    assert_eq!(deltas[0]["turn"], 1);
    assert!(deltas[0].get("seq").is_none(), "{}", deltas[0]);
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "logs", &id, "--json"]);
    assert!(
        !String::from_utf8_lossy(&o.stdout).contains("model_delta"),
        "{}",
        text(&o)
    );
}
