//! `sandbox:` workflow steps, driving the real `baton` binary: the example, a failing command
//! that `retry` and `on_error` act on, a tier this host lacks, bad settings refused before
//! anything runs, and the execution records in the run log (`baton runs show` / `logs`).

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Db, baton, lock, process_tier_works, summary, text, tier_works};
use serde_json::Value;

fn events(o: &Output) -> Vec<Value> {
    String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v.get("summary").is_none())
        .collect()
}

fn run_id(o: &Output) -> String {
    summary(o)["id"].as_str().unwrap().to_string()
}

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/sandbox-step.yaml")
        .display()
        .to_string()
}

#[test]
fn the_example_validates_and_its_settings_are_checked() {
    let o = baton().args(["validate", &example()]).output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let db = Db::new();
    let bad = db.workflow(
        "bad.yaml",
        "version: 1\nname: bad\nsteps:\n  - id: t\n    sandbox:\n      command: [\"true\"]\n      tier: vm\n      memory: 12Q\n      net: everywhere\n      files: { \"../x\": y }\n",
    );
    let o = baton().args(["validate", &bad]).output().unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    for needle in [
        "bad.yaml:7:7: error: `sandbox.tier`: unknown tier 'vm'",
        "bad.yaml:8:7: error: `sandbox.memory`: bad size '12Q'",
        "bad.yaml:9:7: error: `sandbox.net`: unknown network mode 'everywhere'",
        "workspace file `../x` must be a relative path inside /work",
        "(at steps[0].sandbox.files[\"../x\"])",
        "4 errors",
    ] {
        assert!(err.contains(needle), "missing {needle:?} in:\n{err}");
    }
    let o = baton().arg("schema").output().unwrap();
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let step = &v["$defs"]["Step"]["properties"];
    assert!(step["sandbox"].is_object(), "{step}");
    assert!(v["$defs"]["SandboxSpec"]["properties"]["allow_failure"].is_object());
}

#[test]
fn the_example_runs_the_tests_in_a_sandbox_until_they_pass() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let o = db.run(&["run", &example(), "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["outputs"]["tests"], "all tests pass");
    assert_eq!(s["outputs"]["tier"], "process");
    assert!(s["outputs"]["code"].as_str().unwrap().contains("a + b"));
    // The first version failed its tests in the sandbox; the gate sent it back once.
    let evs = events(&o);
    let tests: Vec<&Value> = evs
        .iter()
        .filter(|e| e["type"] == "step_succeeded" && e["step"] == "test")
        .collect();
    assert_eq!(tests.len(), 2, "{}", text(&o));
    let first = &tests[0]["output"];
    assert_eq!(first["exit_code"], 1);
    assert!(
        first["stderr"]
            .as_str()
            .unwrap()
            .contains("add(2, 2) returned 0"),
        "{first}"
    );
    assert_eq!(first["policy"]["limits"]["memory_bytes"], 128 << 20);
    assert_eq!(first["policy"]["limits"]["pids"], 16);
    assert_eq!(first["policy"]["net"]["mode"], "none");
    assert_eq!(tests[1]["output"]["exit_code"], 0);

    // Item 2: the run log keeps each execution's record; `runs show` lists them.
    let id = run_id(&o);
    let o = db.run(&["runs", "show", &id]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("sandbox executions:"), "{out}");
    assert!(
        out.contains("    command: python3 test_add.py (files: add.py 32 B, test_add.py "),
        "{out}"
    );
    assert!(
        out.contains("test attempt 1 (step): tier process, exited, exit 1; wall "),
        "{out}"
    );
    assert!(
        out.contains("test visit 2 attempt 1 (step): tier process, exited, exit 0; wall "),
        "{out}"
    );
    assert!(
        out.contains(
            "limits: cpu 1.0, memory 128.0 MiB, pids 16, disk 100.0 MiB, time 10s, output 1.0 MiB, net none"
        ),
        "{out}"
    );
    assert!(
        out.contains("scan: 0 finding(s)") || out.contains("scan: "),
        "{out}"
    );
    let o = db.run(&["runs", "show", &id, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let recs = v["sandbox"].as_array().unwrap();
    assert_eq!(recs.len(), 2, "{v}");
    for r in recs {
        let rec = &r["record"];
        for k in [
            "tier",
            "exit_code",
            "stop_reason",
            "wall_time",
            "cpu_time",
            "peak_memory_bytes",
            "policy",
            "scan",
            "enforced",
            "stdout_truncated",
            "request",
        ] {
            assert!(rec.get(k).is_some(), "{k} missing from {rec}");
        }
        assert!(rec["peak_memory_bytes"].as_u64().unwrap() > 0, "{rec}");
        assert!(rec["scan"]["findings"].is_array(), "{rec}");
    }
}

#[test]
fn a_failing_command_is_retried_then_on_error_takes_over() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let wf = db.workflow(
        "fail.yaml",
        r#"version: 1
name: sandbox-fails
steps:
  - id: flaky
    sandbox:
      command: "echo trying; echo broken >&2; exit 3"
      time: 5s
    retry: { max: 1, backoff: 10ms }
    on_error: goto report
  - id: skipped
    tool: echo
    with: { text: never }
  - id: report
    tool: echo
    with: { text: "{{ steps.flaky.error }}" }
  - id: slow
    sandbox: { command: ["sleep", "30"], time: 1s }
    on_error: continue
  - id: last
    tool: echo
    with: { text: "{{ steps.slow.error }}" }
"#,
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let evs = events(&o);
    let failed: Vec<&Value> = evs
        .iter()
        .filter(|e| e["type"] == "step_failed" && e["step"] == "flaky")
        .collect();
    assert_eq!(failed.len(), 2, "one attempt and one retry: {}", text(&o));
    assert!(failed[0]["retry_in_ms"].is_u64());
    assert_eq!(failed[1]["recovered"], true);
    let msg = failed[1]["error"]["message"].as_str().unwrap();
    assert!(
        msg.starts_with("the sandboxed command exited with code 3 (tier process, "),
        "{msg}"
    );
    assert!(msg.contains("stderr: broken"), "{msg}");
    // The failure record keeps the whole result.
    let (_, rec) = msg.split_once("\nsandbox result: ").unwrap();
    let rec: Value = serde_json::from_str(rec).unwrap();
    assert_eq!(rec["exit_code"], 3);
    assert_eq!(rec["stdout"], "trying\n");
    assert_eq!(rec["policy"]["limits"]["time"], "5s");
    let s = summary(&o);
    let steps: Vec<&str> = s["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["step"].as_str().unwrap())
        .collect();
    assert!(!steps.contains(&"skipped"), "{steps:?}");
    assert!(
        s["outputs"]
            .as_str()
            .unwrap()
            .starts_with("the sandboxed command was stopped by the time limit (1s)"),
        "{s}"
    );
    // On a terminal (plain lines) the failure is one line; the record stays in the log.
    let plain = db.run(&["run", &wf]);
    let shown = String::from_utf8_lossy(&plain.stdout);
    assert!(
        shown.contains("✗ flaky: the sandboxed command exited with code 3 (tier process, "),
        "{shown}"
    );
    // (The run's output below the summary is `last`'s text, which quotes the whole error.)
    let progress = shown.split("\nrun ").next().unwrap();
    assert!(!progress.contains("sandbox result:"), "{shown}");
    // `runs logs` shows the record as JSON, and `runs show` each attempt.
    let id = run_id(&o);
    let o = db.run(&["runs", "logs", &id]);
    let logs = String::from_utf8_lossy(&o.stdout);
    assert!(
        logs.contains("\"sandbox\":{") && logs.contains("\"stop_reason\":\"time_limit\""),
        "{logs}"
    );
    let o = db.run(&["runs", "show", &id]);
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(
        out.contains("flaky attempt 1 (step): tier process, exited, exit 3"),
        "{out}"
    );
    assert!(
        out.contains("flaky attempt 2 (step): tier process, exited, exit 3"),
        "{out}"
    );
    assert!(
        out.contains("slow attempt 1 (step): tier process, time_limit"),
        "{out}"
    );
    assert!(out.contains("limits hit: time_limit"), "{out}");
}

#[test]
fn an_unavailable_tier_fails_the_run_with_its_reason() {
    if tier_works("microvm") {
        eprintln!("skipping: the microvm tier works here, so it cannot show a refusal");
        return;
    }
    let db = Db::new();
    let wf = db.workflow(
        "vm.yaml",
        "version: 1\nname: vm\nsteps:\n  - id: boot\n    sandbox: { command: \"true\", tier: microvm }\n    retry: { max: 3, backoff: 10ms }\n",
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "failed");
    let err = s["error"].as_str().unwrap();
    assert!(
        err.contains("sandbox tier 'microvm' is not available here: "),
        "{err}"
    );
    // Never retried, never run in another tier.
    let started = events(&o)
        .iter()
        .filter(|e| e["type"] == "step_started" && e["step"] == "boot")
        .count();
    assert_eq!(started, 1, "{}", text(&o));
    assert!(!text(&o).contains("\"tier\":\"process\""), "{}", text(&o));
}

/// A one-shot HTTP server on the host's loopback: the "allowed host".
fn http_server() -> (u16, std::thread::JoinHandle<()>) {
    use std::io::{Read, Write};
    let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = l.local_addr().unwrap().port();
    let h = std::thread::spawn(move || {
        if let Ok((mut c, _)) = l.accept() {
            let mut buf = [0u8; 4096];
            let _ = c.read(&mut buf);
            let _ = c.write_all(
                b"HTTP/1.1 200 OK\r\nContent-Length: 7\r\nConnection: close\r\n\r\nfetched",
            );
        }
    });
    (port, h)
}

#[test]
fn the_step_picks_its_tier_and_network_and_agents_calls_are_recorded_too() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    // gVisor when it works here, else the process tier: both offer `allow:`.
    let tier = if tier_works("gvisor") {
        "gvisor"
    } else {
        "process"
    };
    let (port, server) = http_server();
    let db = Db::new();
    std::fs::create_dir_all(db.0.path().join("scripted")).unwrap();
    std::fs::write(
        db.0.path().join("scripted/runner.yaml"),
        "replies:\n  - tool_calls: [{ name: sandbox.exec, arguments: { command: \"echo from-agent\" } }]\n  - text: done\n",
    )
    .unwrap();
    let wf = db.workflow(
        "net.yaml",
        &format!(
            r#"version: 1
name: sandbox-net
agents:
  runner: {{ model: scripted/runner, tools: [sandbox.exec] }}
steps:
  - id: fetch
    sandbox:
      command: ["python3", "-c", "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/', timeout=10).read().decode())"]
      tier: {tier}
      net: "allow:127.0.0.1:{port}"
      time: 20s
  - id: agent
    agent: runner
    prompt: "run something"
"#
        ),
    );
    let o = db.run(&["run", &wf, "--json"]);
    server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let fetch = events(&o)
        .into_iter()
        .find(|e| e["type"] == "step_succeeded" && e["step"] == "fetch")
        .unwrap();
    let out = &fetch["output"];
    assert_eq!(out["tier"], tier);
    assert_eq!(out["stdout"], "fetched\n");
    assert_eq!(out["policy"]["net"]["mode"], "allow");
    assert_eq!(out["network"][0]["port"], port);
    assert_eq!(out["network"][0]["allowed"], true);
    let id = run_id(&o);
    let o = db.run(&["runs", "show", &id]);
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(
        shown.contains(&format!(
            "fetch attempt 1 (step): tier {tier}, exited, exit 0"
        )),
        "{shown}"
    );
    assert!(
        shown.contains(&format!("net allow:127.0.0.1:{port}")),
        "{shown}"
    );
    assert!(shown.contains("    network: {"), "{shown}");
    // The agent's own sandbox.exec call is an execution of the run too.
    assert!(
        shown.contains("agent attempt 1 (sandbox.exec): tier process, exited, exit 0"),
        "{shown}"
    );
}

#[test]
fn a_workdir_beside_the_workflow_is_the_workspace() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let ws = db.0.path().join("project");
    std::fs::create_dir(&ws).unwrap();
    std::fs::write(ws.join("input.txt"), "from the host\n").unwrap();
    // Code never runs as host root: the directory belongs to an unprivileged user.
    std::os::unix::fs::chown(&ws, Some(101_000), Some(101_000)).unwrap();
    std::os::unix::fs::chown(ws.join("input.txt"), Some(101_000), Some(101_000)).unwrap();
    let wf = db.workflow(
        "wd.yaml",
        "version: 1\nname: wd\nsteps:\n  - id: build\n    sandbox:\n      command: \"cat input.txt; echo built > out.txt\"\n      workdir: project\n",
    );
    let o = db.run(&["run", &wf, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["outputs"]["stdout"], "from the host\n", "{s}");
    assert_eq!(
        s["outputs"]["request"]["workdir"],
        ws.canonicalize().unwrap().display().to_string()
    );
    assert_eq!(
        std::fs::read_to_string(ws.join("out.txt")).unwrap(),
        "built\n"
    );
    // A workdir that is not there is refused before anything runs.
    let bad = db.workflow(
        "wd-bad.yaml",
        "version: 1\nname: wd\nsteps:\n  - id: build\n    sandbox:\n      command: \"true\"\n      workdir: nowhere\n",
    );
    let o = db.run(&["run", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("`sandbox.workdir`: `nowhere` is not a directory"),
        "{}",
        text(&o)
    );
}
