//! `baton webhooks` through the real binary: inbound hooks made, listed, rotated and deleted;
//! subscriptions refused where the allow-list says so; and a run of a CLI process delivered,
//! signed, by a `baton serve` started afterwards to a receiver on a loopback port.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::time::Duration;

use common::{Db, baton, text};
use serde_json::Value;

const ONE_STEP: &str =
    "version: 1\nname: one\nsteps:\n  - { id: a, tool: echo, with: { text: hi } }\n";

fn ok_json(o: &std::process::Output) -> Value {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn inbound_hooks_are_made_listed_rotated_and_deleted() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    assert_eq!(db.run(&["workflows", "create", &f]).status.code(), Some(0));
    let h = ok_json(&db.run(&[
        "webhooks",
        "inbound",
        "create",
        "--workflow",
        "one",
        "--json",
    ]));
    let id = h["id"].as_str().unwrap();
    let secret = h["secret"].as_str().unwrap();
    assert!(secret.starts_with("whsec_"));
    assert_eq!(h["path"], format!("/hooks/{id}"));
    let table = db.run(&["webhooks", "inbound", "list"]);
    let out = String::from_utf8_lossy(&table.stdout).to_string();
    assert!(
        out.contains(id) && !out.contains(secret),
        "{}",
        text(&table)
    );
    let r = ok_json(&db.run(&[
        "webhooks",
        "inbound",
        "rotate",
        id,
        "--old-valid-for",
        "1h",
        "--json",
    ]));
    assert_ne!(r["secret"], h["secret"]);
    assert!(r["previous_secret_valid_until_ms"].as_i64().is_some());
    assert_eq!(
        db.run(&["webhooks", "inbound", "delete", id]).status.code(),
        Some(0)
    );
    assert_eq!(
        ok_json(&db.run(&["webhooks", "inbound", "list", "--json"])),
        Value::Array(vec![])
    );
    // A workflow that is not stored, and a tenant that does not exist: refused, said why.
    let o = db.run(&["webhooks", "inbound", "create", "--workflow", "nope"]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("no workflow nope"), "{}", text(&o));
    let o = db.run(&["webhooks", "inbound", "list", "--tenant", "ghost"]);
    assert_ne!(o.status.code(), Some(0));
}

#[test]
fn subscriptions_refuse_private_targets_unless_allowed() {
    let db = Db::new();
    for url in [
        "http://10.0.0.1/",
        "http://169.254.169.254/",
        "http://[::1]/",
        "http://localhost/",
    ] {
        let o = db.run(&[
            "webhooks",
            "subscriptions",
            "create",
            "--url",
            url,
            "--event",
            "run.succeeded",
        ]);
        assert_ne!(o.status.code(), Some(0), "{url}");
        assert!(text(&o).contains("refused unless"), "{url}: {}", text(&o));
    }
    let o = db.run(&[
        "webhooks",
        "subscriptions",
        "create",
        "--url",
        "https://example.com/",
        "--event",
        "run.exploded",
    ]);
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("not an event type"), "{}", text(&o));
    let o = baton()
        .args([
            "webhooks",
            "subscriptions",
            "create",
            "--url",
            "http://127.0.0.1:9/x",
            "--event",
            "run.succeeded,run.failed",
            "--json",
            "--db",
        ])
        .arg(db.path())
        .env("BATON_WEBHOOK_ALLOW", "127.0.0.0/8")
        .output()
        .unwrap();
    let s = ok_json(&o);
    assert_eq!(
        s["events"],
        serde_json::json!(["run.succeeded", "run.failed"])
    );
    let o = baton()
        .args(["webhooks", "subscriptions", "list", "--db"])
        .arg(db.path())
        .env("BATON_WEBHOOK_ALLOW", "not-a-block")
        .output()
        .unwrap();
    assert_ne!(o.status.code(), Some(0));
    assert!(text(&o).contains("not-a-block"), "{}", text(&o));
}

/// Reads one HTTP request (head and body) from a connection and answers 204.
fn one_request(l: &std::net::TcpListener) -> (Vec<(String, String)>, Vec<u8>) {
    let (mut s, _) = l.accept().unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut headers = Vec::new();
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    loop {
        line.clear();
        r.read_line(&mut line).unwrap();
        let l = line.trim_end();
        if l.is_empty() {
            break;
        }
        let (k, v) = l.split_once(':').unwrap();
        headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
    }
    let len: usize = headers
        .iter()
        .find(|(k, _)| k == "content-length")
        .map_or(0, |(_, v)| v.parse().unwrap());
    let mut body = vec![0; len];
    r.read_exact(&mut body).unwrap();
    s.write_all(b"HTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n")
        .unwrap();
    (headers, body)
}

#[test]
fn a_cli_run_is_delivered_by_a_server_started_later() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let url = format!("http://127.0.0.1:{port}/hook");
    let allowed = |args: &[&str]| {
        baton()
            .args(args)
            .arg("--db")
            .arg(db.path())
            .env("BATON_WEBHOOK_ALLOW", "127.0.0.0/8")
            .output()
            .unwrap()
    };
    let s = ok_json(&allowed(&[
        "webhooks",
        "subscriptions",
        "create",
        "--url",
        &url,
        "--event",
        "run.succeeded",
        "--json",
    ]));
    let secret = s["secret"].as_str().unwrap().to_string();
    let sub = s["id"].as_str().unwrap().to_string();
    // The run of a CLI process: nothing is sent yet (no server runs).
    let o = db.run(&["run", &f]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(one_request(&listener));
    });
    let mut server = baton()
        .args([
            "serve",
            "--addr",
            "127.0.0.1:0",
            "--webhook-allow",
            "127.0.0.0/8",
            "--db",
        ])
        .arg(db.path())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let got = rx.recv_timeout(Duration::from_secs(60));
    // The server records the attempt once the answer is read: wait for that record (a real
    // process: there is no event to follow from here), then stop it.
    let mut recorded = Value::Null;
    for _ in 0..200 {
        let d = ok_json(&db.run(&["webhooks", "subscriptions", "deliveries", &sub, "--json"]));
        if d["deliveries"][0]["status"] == "succeeded" {
            recorded = d["deliveries"][0].clone();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = server.kill();
    let _ = server.wait();
    let (headers, body) = got.expect("the server delivered within 60 s");
    let h = |n: &str| {
        headers
            .iter()
            .find(|(k, _)| k == n)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("no {n}: {headers:?}"))
    };
    let key = baton_control::webhooks::signature::key_of(&secret).unwrap();
    let ts: i64 = h("webhook-timestamp").parse().unwrap();
    assert!(baton_control::webhooks::signature::verify(
        &[key],
        &h("webhook-id"),
        ts,
        &body,
        &h("webhook-signature")
    ));
    let v: Value = serde_json::from_slice(&body).unwrap();
    assert_eq!(v["type"], "run.succeeded");
    assert_eq!(v["data"]["workflow"], "one");
    // Recorded, and visible from the CLI.
    assert_eq!(recorded["id"], h("webhook-id"), "{recorded}");
    assert_eq!(recorded["attempts"][0]["status_code"], 204, "{recorded}");
}
