//! The real binary on a PostgreSQL database (the test harness's server on loopback): a run and
//! the commands that read it, `db status` / `db migrate` on both backends, and bad URLs.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::path::Path;
use std::process::Output;

use common::{Db, baton, summary, text};
use serde_json::Value;

fn example(name: &str) -> String {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../examples")
        .join(name)
        .display()
        .to_string()
}

fn ok(o: &Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

fn json(o: &Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

/// `baton ARGS --db URL` with a data dir of the test's own (workspaces live there).
fn on(url: &str, home: &Path, args: &[&str]) -> Output {
    baton()
        .env("BATON_HOME", home)
        .env("BATON_MODEL", "scripted/hello")
        .args(args)
        .args(["--db", url])
        .output()
        .unwrap()
}

#[test]
fn hello_runs_on_postgres_and_runs_list_and_show_see_it() {
    let Some(url) = baton_test_support::postgres::database("hello on postgres (CLI)") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let o = on(
        &url,
        home.path(),
        &["run", &example("hello.yaml"), "--json"],
    );
    ok(&o);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let id = s["id"].as_str().unwrap().to_string();
    // Another process, the same database: the run is there.
    let listed = on(&url, home.path(), &["runs", "list"]);
    ok(&listed);
    assert!(
        String::from_utf8_lossy(&listed.stdout).contains(&id),
        "{}",
        text(&listed)
    );
    let shown = json(&on(&url, home.path(), &["runs", "show", &id, "--json"]));
    assert_eq!(shown["status"], "succeeded");
    assert_eq!(shown["durability"], "server");
    assert_eq!(shown["steps"][0]["step"], "greet");
    let plain = on(&url, home.path(), &["runs", "show", &id]);
    ok(&plain);
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("durable   server (the PostgreSQL"),
        "{}",
        text(&plain)
    );
    // By unique prefix too, and through BATON_DB instead of --db.
    let o = baton()
        .env("BATON_HOME", home.path())
        .env("BATON_DB", &url)
        .args(["runs", "show", &id[..8], "--json"])
        .output()
        .unwrap();
    assert_eq!(json(&o)["id"], id);
    // A PostgreSQL database commits as its server says: no per-run durability to change.
    let o = on(&url, home.path(), &["resume", &id, "--durability", "power"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("synchronous_commit"),
        "{}",
        text(&o)
    );
}

#[test]
fn db_status_and_migrate_on_postgres() {
    let Some(url) = baton_test_support::postgres::database("db status on postgres (CLI)") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    // A new database: nothing applied, every migration pending.
    let before = json(&on(&url, home.path(), &["db", "status", "--json"]));
    assert_eq!(before["backend"], "postgres");
    assert_eq!(before["schema"], 0);
    let latest = before["latest"].as_i64().unwrap();
    assert_eq!(before["pending"].as_array().unwrap().len() as i64, latest);
    let plain = on(&url, home.path(), &["db", "status"]);
    ok(&plain);
    let out = String::from_utf8_lossy(&plain.stdout);
    assert!(out.contains("backend:  postgres"), "{out}");
    assert!(out.contains("1  runs, events"), "{out}");
    // Migrate: all applied; again: nothing to do.
    let m = json(&on(&url, home.path(), &["db", "migrate", "--json"]));
    assert_eq!(m["schema"], latest);
    assert_eq!(m["applied_now"].as_array().unwrap().len() as i64, latest);
    assert!(m["pending"].as_array().unwrap().is_empty());
    let again = json(&on(&url, home.path(), &["db", "migrate", "--json"]));
    assert!(again["applied_now"].as_array().unwrap().is_empty());
    // A database a newer baton wrote: status says so and fails; commands refuse it.
    let newer = latest + 1;
    psql(
        &url,
        &format!(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ({newer}, 'future', 0)"
        ),
    );
    let st = on(&url, home.path(), &["db", "status"]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("NEWER than this baton"),
        "{}",
        text(&st)
    );
    let o = on(&url, home.path(), &["runs", "list"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("newer Baton") && err.contains(&format!("schema {newer}")),
        "{err}"
    );
}

/// Runs SQL through PostgreSQL's own client, `psql`, beside the server's other programs.
fn psql(url: &str, sql: &str) {
    let bin = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("bin/psql"))
        .find(|p| p.exists())
        .map_or_else(|| "psql".into(), |p| p.display().to_string());
    let o = std::process::Command::new(bin)
        .args([url, "-v", "ON_ERROR_STOP=1", "-c", sql])
        .output()
        .unwrap();
    assert!(o.status.success(), "psql: {}", text(&o));
}

#[test]
fn db_status_and_migrate_on_sqlite() {
    let db = Db::new();
    // No file yet: status says so and creates nothing.
    let st = json(&db.run(&["db", "status", "--json"]));
    assert_eq!(st["backend"], "sqlite");
    assert_eq!(st["exists"], false);
    assert!(!db.path().exists());
    let latest = st["latest"].as_i64().unwrap();
    let m = json(&db.run(&["db", "migrate", "--json"]));
    assert_eq!(m["schema"], latest);
    assert_eq!(m["applied_now"].as_array().unwrap().len() as i64, latest);
    let st = json(&db.run(&["db", "status", "--json"]));
    assert_eq!(
        (st["exists"].clone(), st["schema"].clone()),
        (Value::Bool(true), latest.into())
    );
    assert!(st["pending"].as_array().unwrap().is_empty());
    let plain = db.run(&["db", "status"]);
    ok(&plain);
    assert!(
        String::from_utf8_lossy(&plain.stdout).contains("pending:  none"),
        "{}",
        text(&plain)
    );
}

/// A malformed URL, and one where no server listens: an error naming it, no panic, and the
/// password not shown.
#[test]
fn bad_postgres_urls_are_named() {
    let home = tempfile::tempdir().unwrap();
    let o = on(
        "postgres://baton@127.0.0.1:notaport/x",
        home.path(),
        &["runs", "list"],
    );
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains("postgres://baton@127.0.0.1:notaport/x") && err.contains("not a valid"),
        "{err}"
    );
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://baton:hunter2@127.0.0.1:{port}/x");
    for args in [&["runs", "list"][..], &["db", "status"][..]] {
        let o = on(&url, home.path(), args);
        assert_eq!(o.status.code(), Some(1), "{}", text(&o));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains(&format!("postgres://baton:***@127.0.0.1:{port}/x")),
            "{err}"
        );
        assert!(
            !err.contains("hunter2") && !err.contains("panicked"),
            "{err}"
        );
    }
}

/// `baton serve` on PostgreSQL: the first start prints the admin key, a run started through the
/// API finishes, and the CLI (another process) reads it from the same database.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_on_postgres_runs_what_the_api_starts() {
    let Some(url) = baton_test_support::postgres::database("serve on postgres (CLI)") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let home_path = home.path().to_path_buf();
    let s = common::serve::serve_on(std::ffi::OsStr::new(&url), |c| {
        c.env("BATON_HOME", &home_path);
    });
    let key = s.key.clone().expect("the first start prints an admin key");
    let base = format!("http://{}", s.addr);
    let http = reqwest::Client::new();
    let source = "version: 1\nname: echo\nsteps:\n  - { id: a, tool: echo, with: { text: hi } }\n";
    let r = http
        .post(format!("{base}/api/v1/runs"))
        .bearer_auth(&key)
        .json(&serde_json::json!({ "source": source }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let id = r.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_string();
    let end = std::time::Instant::now() + std::time::Duration::from_secs(30);
    loop {
        let shown = on(&url, home.path(), &["runs", "show", &id, "--json"]);
        if json(&shown)["status"] == "succeeded" {
            break;
        }
        assert!(std::time::Instant::now() < end, "{}", text(&shown));
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
}
