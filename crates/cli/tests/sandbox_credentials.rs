//! `examples/sandbox-credentials.yaml` as docs/sandbox.md shows it, driving the real `baton`
//! binary: the sandboxed script reaches a loopback API with the key Baton's proxy adds, the
//! step asking for a credential to a host the policy does not allow is denied, and the secret
//! is nowhere in `baton run`, `runs show` (text and JSON) or `runs logs`. Without the variable
//! the step fails naming it, before anything starts.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{Read, Write};
use std::path::Path;
use std::process::Output;

use common::{Db, lock, process_tier_works, summary, text};

const SECRET: &str = "tok-7d1c0e5b-never-shown";

fn example() -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples/sandbox-credentials.yaml")
        .display()
        .to_string()
}

/// The example's local API on 127.0.0.1:18931: one request, answered `{"user": "example"}`
/// with the right key (401 otherwise); hands back the request head.
fn api() -> std::thread::JoinHandle<String> {
    let l = std::net::TcpListener::bind("127.0.0.1:18931")
        .expect("the example's API port 127.0.0.1:18931 is taken");
    std::thread::spawn(move || {
        let (mut c, _) = l.accept().unwrap();
        let mut head = Vec::new();
        let mut b = [0u8; 1024];
        while !head.windows(4).any(|w| w == b"\r\n\r\n") {
            match c.read(&mut b) {
                Ok(0) | Err(_) => break,
                Ok(n) => head.extend_from_slice(&b[..n]),
            }
        }
        let head = String::from_utf8_lossy(&head).into_owned();
        let ok = head.contains(&format!("\r\nAuthorization: Bearer {SECRET}\r\n"));
        let (status, body) = if ok {
            ("200 OK", "{\"user\": \"example\"}")
        } else {
            ("401 Unauthorized", "unauthorized")
        };
        let _ = write!(
            c,
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        head
    })
}

fn run_with(db: &Db, args: &[&str], token: Option<&str>) -> Output {
    let mut c = common::baton();
    c.args(args).arg("--db").arg(db.path());
    match token {
        Some(t) => c.env("EXAMPLE_TOKEN", t),
        None => c.env_remove("EXAMPLE_TOKEN"),
    };
    c.output().unwrap()
}

fn all_text(o: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

#[test]
fn the_example_calls_its_api_with_a_key_the_sandbox_never_sees() {
    let _lock = lock();
    if !process_tier_works() {
        return;
    }
    let server = api();
    let db = Db::new();
    let o = run_with(&db, &["run", &example(), "--json"], Some(SECRET));
    let head = server.join().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded");
    assert_eq!(s["outputs"]["whoami"], "{\"user\": \"example\"}\n");
    assert_eq!(
        s["outputs"]["elsewhere"],
        "policy denied `sandbox.step`: no rule allows it (default-deny): no policy rule allows this action"
    );
    assert!(head.starts_with("GET /v1/whoami HTTP/1.1\r\n"), "{head}");
    let id = s["id"].as_str().unwrap().to_string();

    // Everything Baton shows of the run: the variable's name, never the value.
    let mut shown = all_text(&o);
    for args in [
        vec!["runs", "show", &id],
        vec!["runs", "show", &id, "--json"],
        vec!["runs", "logs", &id],
        vec!["runs", "logs", &id, "--json"],
    ] {
        let o = run_with(&db, &args, None);
        assert_eq!(o.status.code(), Some(0), "{args:?}: {}", text(&o));
        shown.push_str(&all_text(&o));
    }
    assert!(!shown.contains(SECRET), "the secret was shown:\n{shown}");
    assert!(shown.contains("EXAMPLE_TOKEN"), "{shown}");
    let o = run_with(&db, &["runs", "show", &id, "--json"], None);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let net = v.to_string();
    assert!(
        net.contains("\"credential\":\"EXAMPLE_TOKEN\""),
        "the attempt names the variable: {net}"
    );
    let o = run_with(
        &db,
        &["runs", "logs", &id, "--kind", "policy_decided"],
        None,
    );
    let logs = String::from_utf8_lossy(&o.stdout);
    assert!(logs.contains("local-api"), "{logs}");
    assert!(logs.contains("default-deny"), "{logs}");
}

#[test]
fn without_the_variable_the_step_fails_naming_it() {
    // Checked before any sandbox is opened: no sandbox needed here.
    let db = Db::new();
    let o = run_with(&db, &["run", &example()], None);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = all_text(&o);
    assert!(
        err.contains("step 'whoami' failed: sandbox credential for host '127.0.0.1:18931': environment variable EXAMPLE_TOKEN is not set in Baton's environment"),
        "{err}"
    );
    let o = run_with(&db, &["run", &example()], Some(""));
    assert!(
        all_text(&o).contains("environment variable EXAMPLE_TOKEN is empty"),
        "{}",
        text(&o)
    );
}
