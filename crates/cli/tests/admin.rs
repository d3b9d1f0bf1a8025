//! Keys, tenants, stored workflows and the audit log through the real binary, on the same
//! database the run commands use.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, summary, text};
use serde_json::Value;

const ONE_STEP: &str =
    "version: 1\nname: one\nsteps:\n  - { id: a, tool: echo, with: { text: hi } }\n";

fn stdout(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn ok(o: &std::process::Output) {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
}

fn json(o: &std::process::Output) -> Value {
    ok(o);
    serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn keys_are_printed_once_listed_without_secrets_and_revoked() {
    let db = Db::new();
    ok(&db.run(&["tenants", "create", "acme", "--name", "Acme Inc"]));
    let o = db.run(&[
        "keys",
        "create",
        "--tenant",
        "acme",
        "--role",
        "runner",
        "--expires",
        "30d",
    ]);
    ok(&o);
    // Only the key, for scripts: `KEY=$(baton keys create ...)`.
    let key = stdout(&o);
    assert_eq!(key.lines().count(), 1, "{}", text(&o));
    let key = key.trim();
    assert!(
        key.starts_with("bk_") && key.len() == 3 + 12 + 1 + 64,
        "{key}"
    );
    let id = &key[3..15];

    let listed = db.run(&["keys", "list", "--json"]);
    let v = json(&listed);
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(v[0]["id"], id);
    assert_eq!(v[0]["tenant"], "acme");
    assert_eq!(v[0]["role"], "runner");
    assert!(v[0]["expires_at_ms"].as_i64().unwrap() > 0);
    let secret = &key[16..];
    assert!(!stdout(&listed).contains(secret));
    // The database holds only the hash.
    let raw = std::fs::read(db.path()).unwrap();
    assert!(!raw.windows(secret.len()).any(|w| w == secret.as_bytes()));

    let table = db.run(&["keys", "list"]);
    ok(&table);
    assert!(
        stdout(&table).contains(id) && stdout(&table).contains("active"),
        "{}",
        text(&table)
    );

    ok(&db.run(&["keys", "revoke", id]));
    let v = json(&db.run(&["keys", "list", "--tenant", "acme", "--json"]));
    assert!(v[0]["revoked_at_ms"].as_i64().is_some());
    assert!(stdout(&db.run(&["keys", "list"])).contains("revoked"));

    // Bad input: named, non-zero, nothing stored.
    let o = db.run(&["keys", "create", "--tenant", "acme", "--role", "root"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("'root' is not a role"), "{}", text(&o));
    let o = db.run(&["keys", "create", "--tenant", "nope", "--role", "viewer"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no tenant nope"), "{}", text(&o));
    let o = db.run(&["keys", "create", "--role", "viewer", "--expires", "soon"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--expires 'soon'"), "{}", text(&o));
    let o = db.run(&["keys", "revoke", "000000000000"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no key 000000000000"), "{}", text(&o));
    assert_eq!(
        json(&db.run(&["keys", "list", "--json"]))
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[test]
fn tenants_are_created_once_and_listed() {
    let db = Db::new();
    ok(&db.run(&["tenants", "create", "team-a"]));
    let o = db.run(&["tenants", "create", "team-a"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("tenant team-a already exists"),
        "{}",
        text(&o)
    );
    let o = db.run(&["tenants", "create", "Team A"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("is not a tenant id"), "{}", text(&o));
    let v = json(&db.run(&["tenants", "list", "--json"]));
    let ids: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec!["default", "team-a"]);
}

#[test]
fn workflows_are_stored_with_versions_and_run_by_tenant() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    let o = db.run(&["workflows", "create", &f]);
    ok(&o);
    assert!(stdout(&o).contains("stored workflow one@1"), "{}", text(&o));
    let o = db.run(&["workflows", "create", &f]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("workflow one already exists"),
        "{}",
        text(&o)
    );
    let f2 = db.workflow("one-v2.yaml", &ONE_STEP.replace("text: hi", "text: hello"));
    let o = db.run(&["workflows", "update", &f2]);
    ok(&o);
    assert!(stdout(&o).contains("stored workflow one@2"), "{}", text(&o));

    let v = json(&db.run(&["workflows", "list", "--json"]));
    assert_eq!(
        (v[0]["name"].as_str(), v[0]["latest"].as_u64()),
        (Some("one"), Some(2))
    );
    let o = db.run(&["workflows", "show", "one@1"]);
    ok(&o);
    assert!(
        stdout(&o).contains("one@1 (latest 2)") && stdout(&o).contains("text: hi }"),
        "{}",
        text(&o)
    );
    let v = json(&db.run(&["workflows", "show", "one", "--json"]));
    assert_eq!(v["version"], 2);
    assert!(v["source"].as_str().unwrap().contains("hello"));

    // Another tenant has none of it.
    ok(&db.run(&["tenants", "create", "acme"]));
    let v = json(&db.run(&["workflows", "list", "--tenant", "acme", "--json"]));
    assert!(v.as_array().unwrap().is_empty());
    let o = db.run(&["workflows", "show", "one", "--tenant", "acme"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no workflow one"), "{}", text(&o));

    let o = db.run(&["workflows", "list", "--tenant", "ghost"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("no tenant ghost"), "{}", text(&o));

    // An invalid document: every diagnostic, as `baton validate` prints them; nothing stored.
    let bad = db.workflow(
        "bad.yaml",
        "version: 1\nname: bad\nsteps:\n  - { id: a, tool: no.such }\n  - { id: a, tool: echo }\n",
    );
    let o = db.run(&["workflows", "create", &bad]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(stderr(&o).contains("bad.yaml:4:"), "{}", text(&o));
    assert!(stderr(&o).contains("2 errors"), "{}", text(&o));
    let o = db.run(&["workflows", "show", "one@x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));

    ok(&db.run(&["workflows", "delete", "one"]));
    assert!(stdout(&db.run(&["workflows", "list"])).contains("no workflows"));
    let o = db.run(&["workflows", "delete", "one"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn the_audit_log_records_writes_and_verify_names_a_broken_entry() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    let o = db.run(&["run", &f, "--json"]);
    ok(&o);
    let run = summary(&o)["id"].as_str().unwrap().to_string();
    ok(&db.run(&["workflows", "create", &f]));
    ok(&db.run(&["keys", "create", "--role", "viewer"]));

    let v = json(&db.run(&["audit", "list", "--json"]));
    let actions: Vec<&str> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, vec!["run.start", "workflow.create", "key.create"]);
    assert_eq!(v[0]["object"], format!("run/{run}"));
    assert_eq!(v[0]["key_id"], "local");
    assert_eq!(v[0]["source"], "cli");
    assert_eq!(v[1]["prev_hash"], v[0]["hash"]);
    let o = db.run(&["audit", "list", "--action", "key.create"]);
    ok(&o);
    assert!(
        stdout(&o).contains("key.create") && !stdout(&o).contains("run.start"),
        "{}",
        text(&o)
    );

    let o = db.run(&["audit", "verify"]);
    ok(&o);
    assert!(
        stdout(&o).contains("tenant default: 3 entries, chain intact"),
        "{}",
        text(&o)
    );

    // Someone edits entry 2 behind Baton's back.
    {
        let c = rusqlite_open(&db);
        c.execute("UPDATE audit SET outcome = 'denied' WHERE seq = 2", [])
            .unwrap();
    }
    let o = db.run(&["audit", "verify"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        stderr(&o).contains("the audit chain of tenant default is broken at entry 2"),
        "{}",
        text(&o)
    );
}

fn rusqlite_open(db: &Db) -> rusqlite::Connection {
    rusqlite::Connection::open(db.path()).unwrap()
}

#[test]
fn runs_of_old_databases_belong_to_default_and_stay_usable() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    let o = db.run(&["run", &f, "--json"]);
    ok(&o);
    let run = summary(&o)["id"].as_str().unwrap().to_string();
    // Back to schema 3 (before tenants), as an old Baton left it.
    {
        let c = rusqlite_open(&db);
        c.execute_batch(
            "DROP TRIGGER webhook_outbox_fill; DROP TABLE webhook_inbound; DROP TABLE webhook_seen;
             DROP TABLE webhook_subscriptions; DROP TABLE webhook_outbox; DROP TABLE webhook_deliveries;
             DROP TABLE webhook_attempts; DROP INDEX runs_by_tenant; ALTER TABLE runs DROP COLUMN tenant;
             ALTER TABLE runs DROP COLUMN started_by; DROP TABLE tenants; DROP TABLE api_keys;
             DROP TABLE audit; DROP TABLE workflows; DROP TABLE workflow_versions;
             DROP TABLE run_starts; PRAGMA user_version=3;",
        )
        .unwrap();
    }
    let v = json(&db.run(&["runs", "show", &run[..8], "--json"]));
    assert_eq!(v["status"], "succeeded");
    let v = json(&db.run(&["runs", "list", "--json"]));
    assert_eq!(v[0]["id"], run);
    let v = json(&db.run(&["tenants", "list", "--json"]));
    assert_eq!(v[0]["id"], "default");
}

#[test]
fn approvals_lists_every_waiting_human_step() {
    let db = Db::new();
    let o = db.run(&["approvals"]);
    ok(&o);
    assert!(stdout(&o).contains("nothing waits"), "{}", text(&o));
    let f = db.workflow(
        "ask.yaml",
        "version: 1\nname: ask\nsteps:\n  - id: ok\n    human: { prompt: \"Ship it?\" }\n",
    );
    let o = db.run(&["run", &f, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let run = summary(&o)["id"].as_str().unwrap().to_string();
    let v = json(&db.run(&["approvals", "--json"]));
    assert_eq!(v.as_array().unwrap().len(), 1);
    assert_eq!(
        (v[0]["run"].as_str(), v[0]["step"].as_str()),
        (Some(run.as_str()), Some("ok"))
    );
    assert_eq!(v[0]["prompt"], "Ship it?");
    let o = db.run(&["approvals"]);
    assert!(
        stdout(&o).contains(&run) && stdout(&o).contains("Ship it?"),
        "{}",
        text(&o)
    );
    ok(&db.run(&["runs", "approve", &run]));
    assert!(
        json(&db.run(&["approvals", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
}

#[test]
fn run_commands_act_in_the_tenant_they_are_given() {
    let db = Db::new();
    let f = db.workflow("one.yaml", ONE_STEP);
    let o = db.run(&["run", &f, "--tenant", "acme"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(stderr(&o).contains("no tenant acme"), "{}", text(&o));
    ok(&db.run(&["tenants", "create", "acme"]));
    let o = db.run(&["run", &f, "--json", "--tenant", "acme"]);
    ok(&o);
    let run = summary(&o)["id"].as_str().unwrap().to_string();
    let v = json(&db.run(&["runs", "list", "--json", "--tenant", "acme"]));
    assert_eq!(v[0]["id"], run);
    assert!(
        json(&db.run(&["runs", "list", "--json"]))
            .as_array()
            .unwrap()
            .is_empty()
    );
    let o = db.run(&["runs", "show", &run]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("in this database"), "{}", text(&o));
    ok(&db.run(&["runs", "show", &run[..8], "--tenant", "acme"]));
    // The start is in acme's audit chain, not in default's.
    let v = json(&db.run(&["audit", "list", "--tenant", "acme", "--json"]));
    assert_eq!(v[0]["object"], format!("run/{run}"));
    assert!(
        json(&db.run(&["audit", "list", "--json"]))
            .as_array()
            .unwrap()
            .iter()
            .all(|e| e["action"] != "run.start")
    );
}
