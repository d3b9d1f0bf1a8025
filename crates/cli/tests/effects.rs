//! Effects and prompts from the command line: an ambiguous step explained by `runs show` and
//! resolved with `runs resolve`, and `runs show --step` showing what a model was sent and the
//! step's tool calls with their keys. (Kill -9 rounds are in `crash.rs`; the engine's own
//! tests make steps ambiguous by crashing mid-call.)
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{Batch, NewRun, RunStore};
use baton_types::{Event, EventRecord, RunId, RunStatus, TenantId};
use common::{Db, summary, text};
use serde_json::{Value, json};

const PAY: &str = "version: 1\nname: pay\nsteps:\n  - { id: pay, tool: echo, with: { text: paid } }\n  - { id: after, tool: echo, with: { text: \"after {{ steps.pay.output }}\" } }\n";

/// A run of `PAY` as a process leaves it when, resumed after a crash, it finds `pay`'s call
/// started with no result and its tool unable to repeat it safely.
fn ambiguous_run(db: &Db) -> RunId {
    let id = RunId::new();
    let key = format!("{id}:pay:1");
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = SqliteStore::open(&db.path(), Durability::Process).unwrap();
        let rec = |seq: u64, event: Event| EventRecord {
            run_id: id,
            seq,
            at_ms: 1,
            event,
        };
        store
            .create_run(NewRun {
                id,
                workflow_name: "pay".into(),
                workflow_source: PAY.into(),
                workflow_path: None,
                inputs: json!({}),
                options: Value::Null,
                created_at_ms: 1,
                events: vec![rec(
                    1,
                    Event::RunCreated {
                        workflow: "pay".into(),
                        inputs: json!({}),
                        forked_from: None,
                    },
                )],
                tenant: TenantId::default(),
                started_by: Some("local".into()),
                idempotency: None,
            })
            .await
            .unwrap();
        let events = vec![
            rec(2, Event::RunStarted { resumed: false }),
            rec(
                3,
                Event::StepStarted {
                    step: "pay".into(),
                    attempt: 1,
                    visit: 1,
                    key: key.clone(),
                },
            ),
            rec(4, Event::RunStarted { resumed: true }),
            rec(
                5,
                Event::StepAmbiguous {
                    step: "pay".into(),
                    attempt: 1,
                    call: None,
                    tool: "echo".into(),
                    arguments: json!({"text": "paid"}),
                    key,
                },
            ),
        ];
        let batch = Batch {
            events,
            status: Some(RunStatus::Waiting),
            outputs: None,
            error: None,
            checkpoint: None,
        };
        store.append(id, batch).await.unwrap();
    });
    id
}

#[test]
fn an_ambiguous_step_is_explained_then_resolved_by_a_person() {
    let db = Db::new();
    let id = ambiguous_run(&db);
    let id_s = id.to_string();
    let o = db.run(&["runs", "show", &id_s]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    assert!(shown.contains("step pay is ambiguous"), "{shown}");
    assert!(shown.contains(&format!("{id}:pay:1")), "the key: {shown}");
    assert!(
        shown.contains(&format!("baton runs resolve {id} pay --as done")),
        "{shown}"
    );
    assert!(shown.contains("--as retry"), "{shown}");
    let o = db.run(&["runs", "show", &id_s, "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert_eq!(v["ambiguous"][0]["step"], "pay", "{v}");
    assert_eq!(v["ambiguous"][0]["key"], format!("{id}:pay:1"));
    // Resuming does not send it again: the step waits.
    let o = db.run(&["resume", &id_s, "--json"]);
    assert_eq!(summary(&o)["status"], "waiting", "{}", text(&o));
    // An approval is not what it needs.
    let o = db.run(&["runs", "approve", &id_s]);
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("step 'pay' is ambiguous"),
        "{}",
        text(&o)
    );
    // Wrong answers are refused, naming the problem.
    let o = db.run(&["runs", "resolve", &id_s, "after", "--as", "done"]);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("not ambiguous (ambiguous: pay)"),
        "{}",
        text(&o)
    );
    let o = db.run(&[
        "runs", "resolve", &id_s, "pay", "--as", "retry", "--value", "1",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = db.run(&["runs", "resolve", &id_s, "pay", "--as", "maybe"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    // Resolved as done with what the call returned: the run goes on from there.
    let o = db.run(&[
        "runs",
        "resolve",
        &id_s,
        "pay",
        "--as",
        "done",
        "--value",
        "receipt 7",
        "--json",
    ]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"], json!("after receipt 7"));
    let o = db.run(&["runs", "logs", &id_s, "--json"]);
    let logs = String::from_utf8_lossy(&o.stdout);
    assert!(logs.contains("\"type\":\"step_resolved\""), "{logs}");
    // `echo` ran only for `after`: `pay` was never sent again.
    assert_eq!(logs.matches("\"type\":\"step_started\"").count(), 2);
}

#[test]
fn an_ambiguous_step_resolved_as_retry_is_sent_again() {
    let db = Db::new();
    let id = ambiguous_run(&db).to_string();
    let o = db.run(&["runs", "resolve", &id, "pay", "--as", "retry", "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"], json!("after paid"), "pay ran again");
    let o = db.run(&["runs", "show", &id, "--step", "pay", "--json"]);
    assert!(o.status.success(), "{}", text(&o));
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    assert!(v["ambiguous"].is_null(), "resolved: {v}");
}

const AGENT: &str = r#"version: 1
name: helper
agents:
  a: { model: scripted/a, role: helper, instructions: "Use the echo tool.", tools: [echo] }
steps:
  - { id: ask, agent: a, prompt: "Say hi through the tool" }
"#;

const REPLIES: &str = r#"replies:
  - turn: 1
    tool_calls: [{ name: echo, arguments: { text: "tool says hi" } }]
  - turn: 2
    text: done
"#;

#[test]
fn runs_show_step_shows_what_the_model_was_sent_and_the_calls() {
    let db = Db::new();
    let wf = db.workflow("helper.yaml", AGENT);
    std::fs::create_dir(db.0.path().join("scripted")).unwrap();
    std::fs::write(db.0.path().join("scripted/a.yaml"), REPLIES).unwrap();
    let o = db.run(&["run", &wf, "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let id = s["id"].as_str().unwrap().to_string();

    let o = db.run(&["runs", "show", &id, "--step", "ask"]);
    assert!(o.status.success(), "{}", text(&o));
    let shown = String::from_utf8_lossy(&o.stdout);
    for want in [
        "prompt, turn 1 to scripted/a",
        "system: You are the helper.",
        "Use the echo tool.",
        "tools: echo",
        "user: Say hi through the tool",
        "prompt, turn 2 to scripted/a",
        "calls echo {\"text\":\"tool says hi\"}",
        "tool (call_0): tool says hi",
        "#1 echo  (attempt 1)  finished",
        &format!("key {id}:ask:1/1"),
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    // The shared part is shown once.
    assert_eq!(shown.matches("tools: echo").count(), 1, "{shown}");

    let o = db.run(&["runs", "show", &id, "--step", "ask", "--json"]);
    let v: Value = serde_json::from_slice(&o.stdout).unwrap();
    let prompts = v["prompts"].as_array().unwrap();
    assert_eq!(prompts.len(), 2);
    assert_eq!(prompts[0]["context"]["tools"][0]["name"], "echo");
    assert_eq!(prompts[1]["context_hash"], prompts[0]["context_hash"]);
    assert_eq!(prompts[1]["messages"].as_array().unwrap().len(), 2);
    assert_eq!(v["tool_calls"][0]["key"], format!("{id}:ask:1/1"));
    assert_eq!(v["tool_calls"][0]["output"], "tool says hi");

    let o = db.run(&["runs", "show", &id, "--step", "nope"]);
    assert_eq!(o.status.code(), Some(2));
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("no step 'nope' in its log (steps: ask)"),
        "{}",
        text(&o)
    );
}
