//! examples/app-team.yaml building two more recorded apps end to end through the real binary,
//! with only the model's replies scripted: the sandbox really runs the tests the tester wrote,
//! the scanner really scans, and the deploy really starts the service in a sandbox and probes
//! it. A JSON-to-CSV converter (scripted/app-csv: round 1's review requests changes, the
//! debugger's fix is applied, round 2 passes) and a small HTTP service (scripted/app-http:
//! round 1's deploy fails its health check, the fix moves the route, round 2 deploys healthy).
//! Each run is replayed from its log to the same final state, the exported files work on the
//! host, and the converter's run is forked onto another scripted team and compared.
// End-to-end tests run the real binary and the exported apps.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::{Db, baton, lock, process_tier_works, root, summary, text};
use serde_json::Value;

fn ok(o: &Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `BATON_MODEL=scripted/MODEL baton run examples/app-team.yaml -i idea=IDEA`: it stops for
/// the person's approval (whose prompt is returned with the run id), and is approved.
fn build(db: &Db, model: &str, idea: &str) -> (String, String, Value) {
    let file = root().join("examples/app-team.yaml");
    let o = baton()
        .env("BATON_MODEL", format!("scripted/{model}"))
        .args(["run", file.to_str().unwrap(), "--json"])
        .args(["--input", &format!("idea={idea}"), "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let prompt = String::from_utf8_lossy(&o.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .find_map(|e| {
            let s = e.to_string();
            s.contains("Ship ")
                .then(|| find_string(&e, "Ship ").unwrap_or_else(|| panic!("no prompt in {e}")))
        })
        .unwrap_or_else(|| panic!("no approval prompt in {}", text(&o)));
    let o = db.run(&["runs", "approve", &id, "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    (id, prompt, s)
}

/// The first string in `v` that starts with `prefix`.
fn find_string(v: &Value, prefix: &str) -> Option<String> {
    match v {
        Value::String(s) if s.starts_with(prefix) => Some(s.clone()),
        Value::Array(a) => a.iter().find_map(|x| find_string(x, prefix)),
        Value::Object(o) => o.values().find_map(|x| find_string(x, prefix)),
        _ => None,
    }
}

/// Every step of the run, with its status.
fn steps(db: &Db, id: &str) -> Vec<(String, String)> {
    let v = json(&db.run(&["runs", "show", id, "--json"]));
    v["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| {
            (
                s["step"].as_str().unwrap().to_string(),
                s["status"].as_str().unwrap().to_string(),
            )
        })
        .collect()
}

/// The results of every call of `tool` in the run's log, in order: (output, is_error).
fn results(db: &Db, id: &str, tool: &str) -> Vec<(Value, bool)> {
    ok(&db.run(&["runs", "logs", id, "--json"]))
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["type"] == "tool_call_finished" && e["tool"] == tool)
        .map(|e| (e["output"].clone(), e["is_error"] == true))
        .collect()
}

/// `baton runs replay ID --json`, without the `BATON_MODEL` the run had (a replay uses the
/// model references the run logged): the replay reaches the recorded state.
fn replays_identically(db: &Db, id: &str) {
    let o = baton()
        .args(["runs", "replay", id, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["events_matched"], r["events_recorded"], "{r}");
    assert_eq!(r["differences"], serde_json::json!([]), "{r}");
}

/// The sandbox's test runs: each really exited 0 and ran `tests` tests.
fn tests_passed_in_the_sandbox(db: &Db, id: &str, tests: &[usize]) {
    let runs = results(db, id, "sandbox.exec");
    assert_eq!(runs.len(), tests.len(), "{runs:?}");
    for ((out, is_error), n) in runs.iter().zip(tests) {
        assert!(!is_error, "{out}");
        assert_eq!(out["tier"], "process", "{out}");
        assert_eq!(out["exit_code"], 0, "{out}");
        let err = out["stderr"].as_str().unwrap();
        assert!(err.contains(&format!("Ran {n} tests")), "{err}");
        assert!(err.trim_end().ends_with("OK"), "{err}");
    }
}

const COMMON_STEPS: [&str; 15] = [
    "requirements",
    "design",
    "implement",
    "checks",
    "review_branch",
    "review",
    "review_issues",
    "test_branch",
    "test",
    "test_issues",
    "security_branch",
    "security",
    "security_issues",
    "gate",
    "fix",
];

fn assert_steps(db: &Db, id: &str, extra: &[&str], skipped: &[&str]) {
    let all = steps(db, id);
    let ran: Vec<&str> = all.iter().map(|(s, _)| s.as_str()).collect();
    for s in COMMON_STEPS
        .iter()
        .chain(extra)
        .chain(&["service", "approve"])
    {
        assert!(ran.contains(s), "step {s} did not run: {all:?}");
    }
    for s in skipped {
        assert!(!ran.contains(s), "step {s} ran: {all:?}");
    }
    assert!(all.iter().all(|(_, st)| st == "succeeded"), "{all:?}");
}

/// A command on the host, with its output checked.
fn python(dir: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    let mut c = Command::new("python3");
    c.args(args)
        .current_dir(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().unwrap();
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    drop(child.stdin.take());
    child.wait_with_output().unwrap()
}

#[test]
fn the_app_team_builds_a_json_to_csv_converter_after_a_review_asks_for_changes() {
    let _l = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let (id, prompt, s) = build(
        &db,
        "app-csv",
        "a JSON-to-CSV converter in Python: a JSON array of objects in, CSV with a header row out",
    );
    // A converter has no port: nothing was deployed, and the person was told why.
    assert!(
        prompt.contains("Not deployed: the design names no service"),
        "{prompt}"
    );
    assert!(
        prompt.contains(&format!("baton runs export {id} DIR")),
        "{prompt}"
    );
    assert_eq!(
        s["outputs"]["deploy"]["skipped"], "the design names no service to run",
        "{s}"
    );
    assert_steps(&db, &id, &[], &["deploy", "deploy_issues", "deployed"]);
    assert_eq!(s["outputs"]["review"], "approve", "{s}");
    assert_eq!(s["outputs"]["tests"]["passed"], true, "{s}");
    assert_eq!(
        s["outputs"]["export"],
        format!("baton runs export {id} DIR")
    );

    // Round 1's review asked for changes, with the lines, through the merge contract.
    let issues = s["outputs"]["issues_found"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{s}");
    assert_eq!(issues[0]["check"], "review", "{s}");
    assert_eq!(issues[0]["comments"][0]["path"], "json2csv.py", "{s}");
    assert_eq!(issues[0]["comments"][0]["line"], 29, "{s}");
    // Both rounds' tests really passed in the sandbox; round 2 has the test of R5.
    tests_passed_in_the_sandbox(&db, &id, &[4, 5]);
    // Both rounds were scanned; nothing blocks.
    let scans = results(&db, &id, "security.scan");
    assert_eq!(scans.len(), 2, "{scans:?}");
    assert!(
        scans.iter().all(|(o, e)| !e && o["blocking"] == false),
        "{scans:?}"
    );
    // The fix is the coder's second visit, a patch of the debugger's.
    let files = ok(&db.run(&["runs", "files", &id]));
    assert!(files.contains("patch json2csv.py"), "{files}");
    let diff = ok(&db.run(&["runs", "diff", &id, "implement"]));
    assert!(diff.contains("+class BadInput(ValueError):"), "{diff}");

    replays_identically(&db, &id);

    // The exported converter works on the host.
    let out = db.0.path().join("json2csv");
    ok(&db.run(&["runs", "export", &id, out.to_str().unwrap()]));
    let work = tempfile::tempdir().unwrap();
    std::fs::write(
        work.path().join("people.json"),
        r#"[{"name": "ada", "langs": ["en", "fr"]}, {"name": "alan, t", "born": 1912, "alive": false}, {"born": null, "name": "grace"}]"#,
    )
    .unwrap();
    let conv = out.join("json2csv.py");
    let conv = conv.to_str().unwrap();
    let o = python(work.path(), &[conv, "people.json", "people.csv"], None);
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(
        std::fs::read_to_string(work.path().join("people.csv")).unwrap(),
        "name,langs,born,alive\nada,\"[\"\"en\"\",\"\"fr\"\"]\",,\n\"alan, t\",,1912,false\ngrace,,,\n"
    );
    let o = python(
        work.path(),
        &[conv],
        Some(r#"[{"b": 1, "a": 2}, {"c": 3}]"#),
    );
    assert!(o.status.success(), "{}", text(&o));
    assert_eq!(String::from_utf8_lossy(&o.stdout), "b,a,c\n1,2,\n,,3\n");
    let o = python(work.path(), &[conv], Some("[1, 2]"));
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr)
            .contains("json2csv: the input must be a JSON array of objects"),
        "{}",
        text(&o)
    );

    // Forked after the design onto another team (a coder who checks its input from the
    // start, a tester who tests R5 at once, a reviewer who approves): one round, no fix.
    let o = baton()
        .env("BATON_MODEL", "scripted/app-csv")
        .args(["runs", "fork", &id, "--after", "design"])
        .args(["--model", "coder=scripted/app-csv-alt"])
        .args(["--model", "tester=scripted/app-csv-alt"])
        .args(["--model", "reviewer=scripted/app-csv-alt"])
        .args(["--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let fork = summary(&o)["id"].as_str().unwrap().to_string();
    let o = db.run(&["runs", "approve", &fork, "--json"]);
    let f = summary(&o);
    assert_eq!(f["status"], "succeeded", "{}", text(&o));
    assert_eq!(f["outputs"]["issues_found"], serde_json::json!([]), "{f}");
    let ran: Vec<String> = steps(&db, &fork).into_iter().map(|(s, _)| s).collect();
    assert!(!ran.contains(&"fix".to_string()), "{ran:?}");

    let o = db.run(&["runs", "compare", &id, &fork]);
    let out = ok(&o);
    assert!(out.contains(&format!("fork of {} @", &id[..12])), "{out}");
    let row = |step: &str| {
        out.lines()
            .find(|l| l.starts_with(&format!("{step} ")))
            .unwrap_or_else(|| panic!("no row {step} in {out}"))
            .to_string()
    };
    assert!(row("design").trim_end().ends_with("same"), "{out}");
    assert!(row("implement").trim_end().ends_with("differs"), "{out}");
    assert!(out.contains("B: scripted/app-csv-alt"), "{out}");
    let c = json(&db.run(&["runs", "compare", &id, &fork, "--json"]));
    let step = |id: &str| {
        c["steps"]
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["step"] == id)
            .cloned()
            .unwrap_or_else(|| panic!("no step {id} in {c}"))
    };
    assert_eq!(step("implement")["differs"], true, "{c}");
    assert_eq!(
        step("implement")["b"]["models"][0],
        "scripted/app-csv-alt",
        "{c}"
    );
    // The two final trees hold the same converter (the fix and the other coder agree) and
    // different histories; the outputs differ in what the checks found.
    assert_eq!(c["b"]["forked_from"]["run"], id.as_str(), "{c}");
    assert_ne!(c["a"]["tokens"], c["b"]["tokens"], "{c}");
}

/// A process on the host, killed when the test ends (even when it fails).
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A loopback port nothing listens on now.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[test]
fn the_app_team_deploys_an_http_service_after_its_health_check_fails_once() {
    let _l = lock();
    if !process_tier_works() {
        return;
    }
    let db = Db::new();
    let (id, prompt, s) = build(
        &db,
        "app-http",
        "a small HTTP service in Python's standard library: GET /health and GET /wordcount?text=",
    );
    assert_steps(&db, &id, &["deploy", "deploy_issues", "deployed"], &[]);
    assert_eq!(s["outputs"]["review"], "approve", "{s}");
    assert_eq!(s["outputs"]["tests"]["passed"], true, "{s}");
    tests_passed_in_the_sandbox(&db, &id, &[4, 5]);

    // Round 1's deploy really failed its health check, measured by Baton: the app answered
    // 404 at /health. The deployer said so, and the failure went to the debugger.
    let deploys = results(&db, &id, "deploy");
    assert_eq!(deploys.len(), 2, "{deploys:?}");
    let (first, failed) = &deploys[0];
    assert!(failed, "{first}");
    let first = first.as_str().unwrap();
    assert!(
        first.contains("did not answer GET /health with 200") && first.contains("it answered 404"),
        "{first}"
    );
    let issues = s["outputs"]["issues_found"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{s}");
    assert_eq!(issues[0]["check"], "deploy", "{s}");
    assert!(
        issues[0]["notes"]
            .as_str()
            .unwrap()
            .contains("it answered 404"),
        "{s}"
    );
    let fix = json(&db.run(&["runs", "show", &id, "--step", "fix", "--json"]));
    assert!(
        fix.to_string()
            .contains("the deploy failed its health check"),
        "{fix}"
    );
    let diff = ok(&db.run(&["runs", "diff", &id, "implement"]));
    assert!(
        diff.contains("+    \"/health\": lambda query: health(),"),
        "{diff}"
    );

    // Round 2's deploy is healthy: Baton's own probe of GET /health on the published
    // loopback port answered 200 with the service's body, and the URL the person was shown
    // is the one deploy returned.
    let (second, failed) = &deploys[1];
    assert!(!failed, "{second}");
    assert_eq!(second["target"], "local-sandbox", "{second}");
    assert_eq!(second["health"]["status"], 200, "{second}");
    assert_eq!(second["health"]["body"], r#"{"status": "ok"}"#, "{second}");
    let url = second["url"].as_str().unwrap();
    assert!(url.starts_with("http://127.0.0.1:"), "{second}");
    assert_eq!(s["outputs"]["deploy"]["url"], url, "{s}");
    assert_eq!(s["outputs"]["deploy"]["healthy"], true, "{s}");
    assert!(prompt.contains(&format!("It runs at {url}")), "{prompt}");
    // `baton run` returned when the run waited for approval, and its deployment ended with it.
    let addr = url.strip_prefix("http://").unwrap().parse().unwrap();
    let gone = baton_sandbox::deploy::probe(addr, "/health", Duration::from_secs(2));
    assert!(gone.is_err(), "the app outlived baton: {gone:?}");

    replays_identically(&db, &id);

    // The exported service works on the host, on a free loopback port.
    let out = db.0.path().join("service");
    ok(&db.run(&["runs", "export", &id, out.to_str().unwrap()]));
    let port = free_port();
    let _app = Running(
        Command::new("python3")
            .arg(out.join("service.py"))
            .env("PORT", port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    let started = Instant::now();
    let health = loop {
        match baton_sandbox::deploy::probe(addr, "/health", Duration::from_secs(1)) {
            Ok(h) => break h,
            Err(e) if started.elapsed() > Duration::from_secs(20) => {
                panic!("the exported service never answered: {e}")
            }
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    assert_eq!(
        (health.status, health.body.as_str()),
        (200, r#"{"status": "ok"}"#)
    );
    let count = baton_sandbox::deploy::probe(
        addr,
        "/wordcount?text=the+cat+saw+The+dog",
        Duration::from_secs(2),
    )
    .unwrap();
    assert_eq!(count.status, 200);
    assert_eq!(
        serde_json::from_str::<Value>(&count.body).unwrap(),
        serde_json::json!({"words": 5, "unique": 4})
    );
    let missing = baton_sandbox::deploy::probe(addr, "/nope", Duration::from_secs(2)).unwrap();
    assert_eq!(missing.status, 404);
}
