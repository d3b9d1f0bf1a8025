//! The use cases end to end over real stores (memory and SQLite) with the engine: tenants
//! isolate, roles are enforced, runs start (file, inline, stored, idempotent), wait, are
//! answered in the background, keys authenticate, the audit chain names a broken entry.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_control::{
    Answer, Answered, Caller, Code, Control, Decision, Error, NewKey, Resolve, Resolved,
    RunControl, RunQuery, RunRequest, WorkflowSource,
};
use baton_engine::Services;
use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{AuditQuery, RunStore};
use baton_types::{Resolution, Role, RunStatus, TenantId};
use serde_json::json;

#[path = "all/debug.rs"]
mod debug;
#[path = "all/edit.rs"]
mod edit;
#[path = "all/fork.rs"]
mod fork;

const GATE: &str = r#"version: 1
name: gate
inputs:
  who: { type: string, default: "world" }
steps:
  - id: hi
    tool: echo
    with: { text: "hi {{ inputs.who }}" }
  - id: approve
    human: { prompt: "Ship it?", kind: approval }
  - id: done
    tool: echo
    with: { text: "done {{ inputs.who }}" }
"#;

const ECHO: &str = r#"version: 1
name: echo-once
inputs:
  who: { type: string, default: "world" }
steps:
  - id: hi
    tool: echo
    with: { text: "hi {{ inputs.who }}" }
"#;

fn services(store: Arc<dyn RunStore>) -> Services {
    Services {
        store,
        models: Arc::new(baton_llm::Providers::default()),
        tools: Arc::new(baton_tools::Registry::with_builtins()),
    }
}

fn memory() -> Control {
    let store = Arc::new(MemoryStore::new());
    Control::new(services(store.clone()), store)
}

fn sqlite(dir: &tempfile::TempDir) -> (Control, Arc<SqliteStore>) {
    let store =
        Arc::new(SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap());
    (Control::new(services(store.clone()), store.clone()), store)
}

fn tid(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn caller(tenant: &str, key: &str, role: Role) -> Caller {
    Caller {
        tenant: tid(tenant),
        key_id: key.into(),
        role,
        request_id: Some("req-1".into()),
        source: Some("127.0.0.1".into()),
    }
}

async fn with_tenants(c: &Control, names: &[&str]) {
    for n in names {
        c.create_tenant(&Caller::local(), n, None).await.unwrap();
    }
}

async fn start(c: &Control, who: &Caller, text: &str) -> baton_types::RunId {
    let s = c
        .start_run(
            who,
            WorkflowSource::Inline { text: text.into() },
            RunRequest::default(),
        )
        .await
        .unwrap();
    let d = s.drive.unwrap();
    let id = d.run;
    c.spawn(d).await.unwrap().unwrap();
    id
}

#[tokio::test]
async fn another_tenants_objects_are_not_found() {
    let c = memory();
    with_tenants(&c, &["acme", "beta"]).await;
    let a = caller("acme", "ka", Role::Admin);
    let b = caller("beta", "kb", Role::Admin);
    c.create_workflow(&a, "gate.yaml", GATE).await.unwrap();
    let run = start(&c, &a, GATE).await;
    let id = run.to_string();
    assert_eq!(
        c.run_detail(&a, &id).await.unwrap().run.status,
        RunStatus::Waiting
    );

    // Tenant B sees nothing of tenant A: 404, never 403, never the object.
    for e in [
        c.run_detail(&b, &id).await.unwrap_err(),
        c.events(&b, &id, 0, None).await.unwrap_err(),
        c.run_state(&b, &id).await.unwrap_err(),
        c.control_run(&b, &id, RunControl::Cancel)
            .await
            .unwrap_err(),
        c.resume(&b, &id, false).await.err().unwrap(),
        c.get_workflow(&b, &"gate".parse().unwrap())
            .await
            .unwrap_err(),
        c.delete_workflow(&b, "gate").await.unwrap_err(),
        c.list_keys(&b, Some(&tid("acme"))).await.unwrap_err(),
        c.audit(&b, Some(&tid("acme")), &AuditQuery::default())
            .await
            .unwrap_err(),
    ] {
        assert_eq!(e.code(), Code::NotFound, "{e}");
    }
    let prefix = &id[..8];
    assert_eq!(
        c.find_run(&b, prefix).await.unwrap_err().code(),
        Code::NotFound
    );
    assert!(
        c.list_runs(&b, RunQuery::default())
            .await
            .unwrap()
            .runs
            .is_empty()
    );
    assert!(c.list_workflows(&b).await.unwrap().is_empty());
    assert!(c.approvals(&b).await.unwrap().is_empty());
    // Tenant A still has it all.
    assert_eq!(c.approvals(&a).await.unwrap().len(), 1);
    assert_eq!(c.find_run(&a, prefix).await.unwrap().id, run);
}

#[tokio::test]
async fn roles_are_enforced_and_denials_audited() {
    let c = memory();
    with_tenants(&c, &["acme"]).await;
    let admin = caller("acme", "ka", Role::Admin);
    let editor = caller("acme", "ke", Role::Editor);
    let runner = caller("acme", "kr", Role::Runner);
    let runner2 = caller("acme", "kr2", Role::Runner);
    let viewer = caller("acme", "kv", Role::Viewer);

    // Viewer: reads, nothing else.
    let e = c
        .start_run(
            &viewer,
            WorkflowSource::Inline { text: ECHO.into() },
            RunRequest::default(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Forbidden);
    assert_eq!(
        c.create_workflow(&viewer, "x", ECHO)
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden
    );
    // Runner: starts runs, cannot edit workflows or manage keys.
    assert_eq!(
        c.create_workflow(&runner, "x", ECHO)
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden
    );
    assert_eq!(
        c.list_keys(&runner, None).await.unwrap_err().code(),
        Code::Forbidden
    );
    assert_eq!(
        c.create_tenant(&admin, "other", None)
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden,
        "only the operator (admin of `default`) creates tenants"
    );
    c.create_workflow(&editor, "echo.yaml", ECHO).await.unwrap();
    let mine = start(&c, &runner, GATE).await;
    let theirs = start(&c, &editor, GATE).await;

    // A runner sees and answers only its own runs.
    let listed: Vec<_> = c
        .list_runs(&runner, RunQuery::default())
        .await
        .unwrap()
        .runs
        .iter()
        .map(|r| r.id)
        .collect();
    assert_eq!(listed, vec![mine]);
    assert_eq!(
        c.run_detail(&runner, &theirs.to_string())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
    assert!(c.approvals(&runner2).await.unwrap().is_empty());
    assert_eq!(c.approvals(&runner).await.unwrap()[0].run, mine);
    assert_eq!(c.approvals(&viewer).await.unwrap().len(), 2);
    // ... and may not cancel, even its own.
    assert_eq!(
        c.control_run(&runner, &mine.to_string(), RunControl::Cancel)
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden
    );
    // The viewer may not answer.
    let answer = Answer {
        step: None,
        decision: Decision::Approve,
        comment: None,
        by: None,
        no_resume: false,
    };
    assert_eq!(
        c.answer(&viewer, &mine.to_string(), answer.clone())
            .await
            .err()
            .unwrap()
            .code(),
        Code::Forbidden
    );

    // Every denial is in the audit log with who, what and where from.
    let denied: Vec<_> = c
        .audit(&admin, None, &AuditQuery::default())
        .await
        .unwrap()
        .into_iter()
        .filter(|e| e.entry.outcome == "denied")
        .collect();
    let actions: Vec<(&str, &str)> = denied
        .iter()
        .map(|e| (e.entry.key_id.as_deref().unwrap(), e.entry.action.as_str()))
        .collect();
    assert!(actions.contains(&("kv", "run.start")), "{actions:?}");
    assert!(actions.contains(&("kr", "workflow.create")), "{actions:?}");
    assert!(actions.contains(&("kr", "key.list")), "{actions:?}");
    assert!(actions.contains(&("kr", "run.cancel")), "{actions:?}");
    assert!(actions.contains(&("kv", "run.answer")), "{actions:?}");
    assert!(
        denied
            .iter()
            .all(|e| e.entry.request_id.as_deref() == Some("req-1")
                && e.entry.source.as_deref() == Some("127.0.0.1"))
    );
}

#[tokio::test]
async fn background_runs_wait_are_answered_and_finish() {
    let c = memory();
    let me = Caller::local();
    let mut bus = c.subscribe();
    let run = start(&c, &me, GATE).await;
    let inbox = c.approvals(&me).await.unwrap();
    assert_eq!(inbox.len(), 1);
    assert_eq!(
        (inbox[0].step.as_str(), inbox[0].prompt.as_str()),
        ("approve", "Ship it?")
    );
    // The bus carried the run's events with their tenant.
    let first = bus.recv().await.unwrap();
    assert_eq!(first.tenant, TenantId::default());
    assert_eq!(first.run_id(), run);

    let answered = c
        .answer(
            &me,
            &run.to_string(),
            Answer {
                step: None,
                decision: Decision::Approve,
                comment: Some("looks good".into()),
                by: None,
                no_resume: false,
            },
        )
        .await
        .unwrap();
    let Answered::Drive(d) = answered else {
        panic!("nobody holds the run: it is handed back to drive")
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
    let detail = c.run_detail(&me, &run.to_string()).await.unwrap();
    assert_eq!(detail.run.outputs, Some(json!("done world")));
    let steps: Vec<(&str, &str)> = detail
        .steps
        .iter()
        .map(|s| (s.row.step.as_str(), s.row.status))
        .collect();
    assert_eq!(
        steps,
        vec![
            ("hi", "succeeded"),
            ("approve", "succeeded"),
            ("done", "succeeded")
        ]
    );
    assert_eq!(detail.steps[0].output, Some(json!("hi world")));
    assert!(detail.waiting.is_empty());
    assert!(c.approvals(&me).await.unwrap().is_empty());
    // Events after a seq.
    let all = c.events(&me, &run.to_string(), 0, None).await.unwrap();
    let tail = c.events(&me, &run.to_string(), 3, Some(2)).await.unwrap();
    assert_eq!(tail.iter().map(|e| e.seq).collect::<Vec<_>>(), vec![4, 5]);
    assert!(all.len() > 5);
    let f = |step: Option<&str>, kinds: &[&str], text: Option<&str>| baton_control::EventFilter {
        step: step.map(String::from),
        kinds: kinds.iter().map(|k| k.to_string()).collect(),
        text: text.map(String::from),
        ..Default::default()
    };
    let about_done = c
        .search_events(&me, &run.to_string(), &f(Some("done"), &[], None))
        .await
        .unwrap();
    assert!(!about_done.is_empty());
    assert!(about_done.iter().all(|e| e.event.step() == Some("done")));
    let answers = c
        .search_events(
            &me,
            &run.to_string(),
            &f(None, &["human_responded"], Some("LOOKS GOOD")),
        )
        .await
        .unwrap();
    assert_eq!(answers.len(), 1);
    assert!(
        c.search_events(&me, &run.to_string(), &f(None, &[], Some("no such text")))
            .await
            .unwrap()
            .is_empty()
    );
    // A finished run is not resumed, paused or cancelled.
    assert!(matches!(
        c.resume(&me, &run.to_string(), false).await,
        Ok(baton_control::Resumed::Finished(RunStatus::Succeeded))
    ));
    assert_eq!(
        c.control_run(&me, &run.to_string(), RunControl::Pause)
            .await
            .unwrap_err()
            .code(),
        Code::Conflict
    );
}

#[tokio::test]
async fn a_run_held_by_this_process_gets_its_controls_queued() {
    let c = memory();
    let me = Caller::local();
    let run = start(&c, &me, GATE).await;
    // Pretend a task of this process drives it: answers and cancels are queued, not driven.
    let rec = c.find_run(&me, &run.to_string()).await.unwrap();
    c.services()
        .store
        .claim(rec.id, "elsewhere:1", 60_000)
        .await
        .unwrap();
    let a = c
        .answer(
            &me,
            &run.to_string(),
            Answer {
                step: Some("approve".into()),
                decision: Decision::Reject,
                comment: None,
                by: Some("ann".into()),
                no_resume: false,
            },
        )
        .await
        .unwrap();
    assert!(matches!(
        a,
        Answered::Recorded {
            held_elsewhere: true,
            ..
        }
    ));
    assert_eq!(
        c.control_run(&me, &run.to_string(), RunControl::Cancel)
            .await
            .unwrap(),
        baton_control::ControlOutcome::Queued
    );
    let queued = c.services().store.take_controls(rec.id).await.unwrap();
    assert_eq!(queued.len(), 2);
    // A run a task of this process drives is not driven a second time.
    c.services()
        .store
        .release(rec.id, "elsewhere:1")
        .await
        .unwrap();
    let d = match c.resume(&me, &run.to_string(), false).await.unwrap() {
        baton_control::Resumed::Drive(d) => d,
        _ => panic!("nobody holds it now"),
    };
    let d2 = match c.resume(&me, &run.to_string(), false).await.unwrap() {
        baton_control::Resumed::Drive(d) => d,
        _ => panic!("nobody holds it now"),
    };
    let first = c.spawn(*d);
    let second = c.spawn(*d2).await.unwrap();
    assert_eq!(second.unwrap_err().code(), Code::Conflict);
    first.await.unwrap().unwrap();
}

#[tokio::test]
async fn starts_from_stored_versions_inline_documents_and_idempotency_keys() {
    let c = memory();
    let me = Caller::local();
    let v1 = c.create_workflow(&me, "echo.yaml", ECHO).await.unwrap();
    assert_eq!(v1.version, 1);
    let v2 = c
        .update_workflow(
            &me,
            "echo-once",
            "echo.yaml",
            &ECHO.replace("hi {{", "hello {{"),
        )
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    // A document must keep its name.
    let e = c
        .update_workflow(&me, "echo-once", "x", &ECHO.replace("echo-once", "other"))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Invalid);
    assert_eq!(
        c.create_workflow(&me, "echo.yaml", ECHO)
            .await
            .unwrap_err()
            .code(),
        Code::Conflict
    );

    let run_of = |r: &str| {
        let c = c.clone();
        let me = me.clone();
        let r = r.to_string();
        async move {
            let s = c
                .start_run(
                    &me,
                    WorkflowSource::Stored(r.parse().unwrap()),
                    RunRequest {
                        inputs: json!({"who": "ann"}).as_object().cloned().unwrap(),
                        ..Default::default()
                    },
                )
                .await
                .unwrap();
            let run = s.run;
            c.spawn(s.drive.unwrap()).await.unwrap().unwrap();
            c.run_detail(&me, &run.to_string())
                .await
                .unwrap()
                .run
                .outputs
        }
    };
    assert_eq!(run_of("echo-once@1").await, Some(json!("hi ann")));
    assert_eq!(run_of("echo-once").await, Some(json!("hello ann")));
    let e = c
        .start_run(
            &me,
            WorkflowSource::Stored("echo-once@9".parse().unwrap()),
            RunRequest::default(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(
        (e.code(), e.to_string()),
        (Code::NotFound, "no version 9 of workflow echo-once".into())
    );

    // Bad inputs: every problem named.
    let e = c
        .start_run(
            &me,
            WorkflowSource::Inline { text: ECHO.into() },
            RunRequest {
                inputs: json!({"who": 3, "extra": 1}).as_object().cloned().unwrap(),
                ..Default::default()
            },
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Invalid);
    assert_eq!(e.details()["kind"], "inputs");
    assert_eq!(
        e.details()["problems"].as_array().unwrap().len(),
        2,
        "{}",
        e.details()
    );

    // The same key and request: the same run; another request under that key: conflict.
    let req = |who: &str| RunRequest {
        inputs: json!({"who": who}).as_object().cloned().unwrap(),
        idempotency_key: Some("order-42".into()),
        ..Default::default()
    };
    let src = || WorkflowSource::Inline { text: ECHO.into() };
    let first = c.start_run(&me, src(), req("bo")).await.unwrap();
    assert!(!first.reused);
    let again = c.start_run(&me, src(), req("bo")).await.unwrap();
    assert!(again.reused && again.drive.is_none());
    assert_eq!(again.run, first.run);
    let e = c.start_run(&me, src(), req("cy")).await.err().unwrap();
    assert_eq!(e.code(), Code::Conflict);
    // The key is per tenant.
    c.create_tenant(&me, "acme", None).await.unwrap();
    let other = c
        .start_run(&caller("acme", "k", Role::Editor), src(), req("bo"))
        .await
        .unwrap();
    assert!(!other.reused);

    // Deleted: gone from listings and lookups.
    c.delete_workflow(&me, "echo-once").await.unwrap();
    assert!(c.list_workflows(&me).await.unwrap().is_empty());
    assert_eq!(
        c.get_workflow(&me, &"echo-once@1".parse().unwrap())
            .await
            .unwrap_err()
            .code(),
        Code::NotFound
    );
}

#[tokio::test]
async fn an_invalid_workflow_is_refused_with_every_diagnostic() {
    let c = memory();
    let bad = "version: 1\nname: bad\nsteps:\n  - id: a\n    tol: echo\n  - id: b\n    agnt: x\n";
    let e = c
        .create_workflow(&Caller::local(), "bad.yaml", bad)
        .await
        .unwrap_err();
    assert_eq!((e.code(), e.http_status()), (Code::Invalid, 422));
    let d = e.diagnostics();
    assert!(d.len() >= 2, "{d:?}");
    assert!(d.iter().all(|d| d.file == "bad.yaml" && d.line >= 4));
    assert!(d.iter().any(|d| d.path.starts_with("steps[0]")), "{d:?}");
    assert_eq!(e.body()["error"]["details"]["kind"], "diagnostics");
    assert!(c.list_workflows(&Caller::local()).await.unwrap().is_empty());
}

#[tokio::test]
async fn keys_authenticate_until_revoked_or_expired() {
    let c = memory();
    let me = Caller::local();
    c.create_tenant(&me, "acme", None).await.unwrap();
    let k = c
        .create_key(
            &me,
            NewKey {
                tenant: Some(tid("acme")),
                role: Role::Runner,
                name: Some("ci".into()),
                expires_at_ms: None,
            },
        )
        .await
        .unwrap();
    assert!(k.key.starts_with(&format!("bk_{}_", k.info.id)));
    assert_eq!(k.key.len(), 3 + 12 + 1 + 64);
    let who = c
        .authenticate(&k.key, Some("r1".into()), Some("10.0.0.1".into()))
        .await
        .unwrap();
    assert_eq!(
        (
            who.caller.tenant.as_str(),
            who.caller.role,
            who.caller.key_id.as_str()
        ),
        ("acme", Role::Runner, k.info.id.as_str())
    );
    // Listed without the secret or its hash.
    let listed =
        serde_json::to_string(&c.list_keys(&me, Some(&tid("acme"))).await.unwrap()).unwrap();
    assert!(listed.contains(&k.info.id) && !listed.contains(&k.key[16..]));
    let stored = c
        .tenancy()
        .key(&tid("acme"), &k.info.id)
        .await
        .unwrap()
        .unwrap();
    assert!(!listed.contains(&stored.hash));
    assert_ne!(stored.hash, k.key);

    // A wrong secret with a right id, garbage, an unknown id: unauthenticated.
    let mut wrong = k.key.clone();
    let last = wrong.pop().unwrap();
    wrong.push(if last == '0' { '1' } else { '0' });
    for bad in [wrong.as_str(), "", "Bearer x", "bk_000000000000_00"] {
        assert_eq!(
            c.authenticate(bad, None, None).await.unwrap_err().code(),
            Code::Unauthenticated
        );
    }
    // Revoked: refused from then on; failures are audited in the key's tenant.
    c.revoke_key(&me, &k.info.id).await.unwrap();
    let e = c.authenticate(&k.key, None, None).await.unwrap_err();
    assert_eq!(e.to_string(), "the key was revoked");
    let fails: Vec<_> = c
        .audit(
            &me,
            Some(&tid("acme")),
            &AuditQuery {
                action: Some("auth".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(fails.len(), 2, "the wrong secret and the revoked key");
    assert!(fails.iter().all(|e| e.entry.outcome == "failed"));
    // An admin of another tenant cannot revoke it (not found).
    let beta_admin = caller("acme", "x", Role::Editor);
    assert_eq!(
        c.revoke_key(&beta_admin, &k.info.id)
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden
    );

    // Expired keys are refused; an expiry in the past is refused at creation.
    let soon = c
        .create_key(
            &me,
            NewKey {
                tenant: None,
                role: Role::Viewer,
                name: None,
                expires_at_ms: Some(baton_store::now_ms() + 50),
            },
        )
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(60)).await;
    assert_eq!(
        c.authenticate(&soon.key, None, None)
            .await
            .unwrap_err()
            .to_string(),
        "the key has expired"
    );
    let e = c
        .create_key(
            &me,
            NewKey {
                tenant: None,
                role: Role::Viewer,
                name: None,
                expires_at_ms: Some(1),
            },
        )
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Invalid);
}

#[tokio::test]
async fn audit_verify_names_the_first_broken_entry() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _store) = sqlite(&dir);
    let me = Caller::local();
    for n in ["a", "b", "c"] {
        c.create_tenant(&me, n, None).await.unwrap();
    }
    let v = c.verify_audit(&me, None).await.unwrap();
    assert_eq!((v.entries, v.broken.clone()), (3, None));
    drop(c);
    {
        let db = rusqlite::Connection::open(dir.path().join("baton.db")).unwrap();
        db.execute(
            "UPDATE audit SET object = 'tenant/zzz' WHERE tenant = 'default' AND seq = 2",
            [],
        )
        .unwrap();
    }
    let (c, _store) = sqlite(&dir);
    let v = c.verify_audit(&me, None).await.unwrap();
    let b = v.broken.unwrap();
    assert_eq!(b.seq, 2);
    assert!(b.reason.contains("changed"), "{}", b.reason);
    // Removing an entry breaks the chain where the gap is.
    {
        let db = rusqlite::Connection::open(dir.path().join("baton.db")).unwrap();
        db.execute("UPDATE audit SET object = 'tenant/b' WHERE seq = 2", [])
            .unwrap();
        db.execute("DELETE FROM audit WHERE tenant = 'default' AND seq = 1", [])
            .unwrap();
    }
    let v = c.verify_audit(&me, None).await.unwrap();
    assert_eq!(v.broken.unwrap().seq, 2);
}

#[tokio::test]
async fn interrupted_runs_are_resumed_in_the_background() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = sqlite(&dir);
    let me = Caller::local();
    let s = c
        .start_run(
            &me,
            WorkflowSource::Inline { text: ECHO.into() },
            RunRequest::default(),
        )
        .await
        .unwrap();
    // Its process died right after the run started: stored `running`, nobody holds it.
    store
        .append(
            s.run,
            baton_store::Batch {
                status: Some(RunStatus::Running),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(
        c.find_run(&me, &s.run.to_string()).await.unwrap().status,
        RunStatus::Interrupted
    );
    let mut bus = c.subscribe();
    assert_eq!(c.resume_interrupted(&me).await.unwrap(), vec![s.run]);
    loop {
        let ev = bus.recv().await.unwrap();
        if let baton_control::BusItem::Event(r) = &ev.item
            && matches!(r.event, baton_types::Event::RunSucceeded { .. })
        {
            break;
        }
    }
    // Not an operator: refused.
    assert_eq!(
        c.resume_interrupted(&caller("default", "k", Role::Editor))
            .await
            .unwrap_err()
            .code(),
        Code::Forbidden
    );
    let rec = c.find_run(&me, &s.run.to_string()).await.unwrap();
    assert_eq!(rec.status, RunStatus::Succeeded);
    assert_eq!(rec.started_by.as_deref(), Some("local"));
}

#[test]
fn errors_map_to_stable_codes() {
    for (e, code, status) in [
        (Error::not_found("x"), "not_found", 404),
        (Error::invalid("x"), "invalid", 422),
        (Error::forbidden("x"), "forbidden", 403),
        (Error::unauthenticated("x"), "unauthenticated", 401),
        (Error::conflict("x"), "conflict", 409),
        (Error::internal("x"), "internal", 500),
    ] {
        assert_eq!((e.code().as_str(), e.http_status()), (code, status));
        assert_eq!(e.body()["error"]["code"], code);
    }
}

#[tokio::test]
async fn concurrent_starts_with_one_idempotency_key_make_one_run() {
    let dir = tempfile::tempdir().unwrap();
    let (c, store) = sqlite(&dir);
    let me = Caller::local();
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let c = c.clone();
        let me = me.clone();
        tasks.push(tokio::spawn(async move {
            c.start_run(
                &me,
                WorkflowSource::Inline { text: ECHO.into() },
                RunRequest {
                    idempotency_key: Some("same".into()),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
        }));
    }
    let mut runs = Vec::new();
    let mut fresh = 0;
    for t in tasks {
        let s = t.await.unwrap();
        fresh += usize::from(!s.reused);
        runs.push(s.run);
    }
    assert_eq!(fresh, 1, "exactly one start creates the run");
    runs.dedup();
    assert_eq!(runs.len(), 1, "{runs:?}");
    let all = store
        .list_runs(&TenantId::default(), baton_store::ListQuery::default())
        .await
        .unwrap();
    assert_eq!(all.len(), 1);
}

#[tokio::test]
async fn runs_are_listed_a_page_at_a_time() {
    let c = memory();
    let me = Caller::local();
    let mut started = Vec::new();
    for _ in 0..5 {
        started.push(start(&c, &me, ECHO).await);
    }
    let mut seen = Vec::new();
    let mut cursor = None;
    loop {
        let page = c
            .list_runs(
                &me,
                RunQuery {
                    limit: Some(2),
                    cursor: cursor.clone(),
                    ..Default::default()
                },
            )
            .await
            .unwrap();
        seen.extend(page.runs.iter().map(|r| r.id));
        match page.next {
            Some(n) => cursor = Some(n),
            None => break,
        }
    }
    started.reverse();
    assert_eq!(seen, started, "newest first, each once");
    let e = c
        .list_runs(
            &me,
            RunQuery {
                cursor: Some("nonsense".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert_eq!(
        (e.code(), e.details()["field"].as_str()),
        (Code::Invalid, Some("cursor"))
    );
    let by_text = c
        .list_runs(
            &me,
            RunQuery {
                text: Some("ECHO-ONCE".into()),
                status: Some(RunStatus::Succeeded),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_text.runs.len(), 5);
}

#[tokio::test]
async fn inline_workflows_find_scripted_replies_in_the_base_folder() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("scripted")).unwrap();
    std::fs::write(
        dir.path().join("scripted/greet.yaml"),
        "replies:\n  - text: \"Hello, Ann.\"\n    repeat: true\n",
    )
    .unwrap();
    let doc = "version: 1\nname: greet\nagents:\n  g: { model: scripted/greet }\nsteps:\n  - { id: hi, agent: g, prompt: \"Greet Ann.\" }\n";
    let me = Caller::local();
    // Without the folder, the model cannot be called: refused before anything is stored.
    let c = memory();
    let e = c
        .start_run(
            &me,
            WorkflowSource::Inline { text: doc.into() },
            RunRequest::default(),
        )
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Invalid);
    assert_eq!(e.diagnostics()[0].path, "agents.g.model");
    assert!(
        c.list_runs(&me, RunQuery::default())
            .await
            .unwrap()
            .runs
            .is_empty()
    );
    let c = memory().with_base_dir(dir.path());
    let s = c
        .start_run(
            &me,
            WorkflowSource::Inline { text: doc.into() },
            RunRequest::default(),
        )
        .await
        .unwrap();
    assert_eq!(
        c.spawn(s.drive.unwrap()).await.unwrap().unwrap(),
        RunStatus::Succeeded
    );
    let detail = c.run_detail(&me, &s.run.to_string()).await.unwrap();
    assert_eq!(detail.run.outputs, Some(json!("Hello, Ann.")));
    // Its program compiles again from the log with the same folder (resume, answers).
    assert!(c.program(&detail.run).is_ok());
}

const PAY: &str = "version: 1\nname: pay\nsteps:\n  - { id: pay, tool: echo, with: { text: paid } }\n  - { id: after, tool: echo, with: { text: \"after {{ steps.pay.output }}\" } }\n";

/// A run of `PAY` in tenant `default` as a process leaves it when, resumed after a crash, it
/// finds `pay`'s call started with no result and its tool unable to repeat it safely.
async fn ambiguous_run(c: &Control) -> baton_types::RunId {
    use baton_types::{Event, EventRecord, RunId};
    let id = RunId::new();
    let rec = |seq: u64, event: Event| EventRecord {
        run_id: id,
        seq,
        at_ms: seq as i64,
        event,
    };
    let store = &c.services().store;
    store
        .create_run(baton_store::NewRun {
            id,
            workflow_name: "pay".into(),
            workflow_source: PAY.into(),
            workflow_path: None,
            inputs: json!({}),
            options: serde_json::Value::Null,
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
    let key = format!("{id}:pay:1");
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
    store
        .append(
            id,
            baton_store::Batch {
                events,
                status: Some(RunStatus::Waiting),
                outputs: None,
                error: None,
                checkpoint: None,
            },
        )
        .await
        .unwrap();
    id
}

fn resolve(step: &str, resolution: Resolution, value: Option<serde_json::Value>) -> Resolve {
    Resolve {
        step: step.into(),
        resolution,
        value,
        by: None,
        no_resume: false,
    }
}

#[tokio::test]
async fn an_ambiguous_step_is_shown_then_resolved_through_control() {
    let c = memory();
    let me = Caller::local();
    let run = ambiguous_run(&c).await;
    let id = run.to_string();

    // The detail and the step's trace say which call is ambiguous and with which key.
    let detail = c.run_detail(&me, &id).await.unwrap();
    assert_eq!(detail.ambiguous.len(), 1);
    assert_eq!(detail.ambiguous[0].key, format!("{run}:pay:1"));
    assert_eq!(detail.steps[0].row.status, "ambiguous");
    assert!(detail.waiting.is_empty(), "not a question for a person");
    let trace = c.step_trace(&me, &id, "pay").await.unwrap();
    assert_eq!(trace.ambiguous.as_ref().unwrap().tool, "echo");
    assert!(trace.prompts.is_empty() && trace.tool_calls.is_empty());
    let e = c.step_trace(&me, &id, "nope").await.unwrap_err();
    assert_eq!(e.code(), Code::NotFound);
    assert!(
        e.to_string()
            .contains("no step 'nope' in its log (steps: pay)"),
        "{e}"
    );

    // An answer is not what it needs; wrong resolutions are refused, naming the problem.
    let e = c
        .answer(
            &me,
            &id,
            Answer {
                step: None,
                decision: Decision::Approve,
                comment: None,
                by: None,
                no_resume: false,
            },
        )
        .await
        .err()
        .unwrap();
    assert!(e.to_string().contains("step 'pay' is ambiguous"), "{e}");
    let e = c
        .resolve(&me, &id, resolve("after", Resolution::Done, None))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Invalid);
    assert!(
        e.to_string().contains("not ambiguous (ambiguous: pay)"),
        "{e}"
    );
    let e = c
        .resolve(&me, &id, resolve("pay", Resolution::Retry, Some(json!(1))))
        .await
        .err()
        .unwrap();
    assert_eq!(e.details(), json!({"kind": "field", "field": "value"}));

    // Only a role that operates runs resolves, and a denial is audited.
    let viewer = caller("default", "kv", Role::Viewer);
    let e = c
        .resolve(&viewer, &id, resolve("pay", Resolution::Done, None))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Forbidden);

    // Held by another process: queued for it.
    c.services()
        .store
        .claim(run, "elsewhere:1", 60_000)
        .await
        .unwrap();
    let r = c
        .resolve(&me, &id, resolve("pay", Resolution::Done, Some(json!("x"))))
        .await
        .unwrap();
    assert!(matches!(
        r,
        Resolved::Recorded {
            held_elsewhere: true,
            resolution: Resolution::Done,
            ..
        }
    ));
    let queued = c.services().store.take_controls(run).await.unwrap();
    assert!(
        matches!(
            queued.as_slice(),
            [baton_store::Control::Resolve { step, resolution: Resolution::Done, value, .. }]
                if step == "pay" && *value == json!("x")
        ),
        "{queued:?}"
    );
    c.services()
        .store
        .release(run, "elsewhere:1")
        .await
        .unwrap();

    // Nobody holds it: handed back to drive, and the run goes on from the given result.
    let Resolved::Drive(d) = c
        .resolve(
            &me,
            &id,
            resolve("pay", Resolution::Done, Some(json!("receipt 7"))),
        )
        .await
        .unwrap()
    else {
        panic!("nobody holds the run: it is handed back to drive")
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
    let detail = c.run_detail(&me, &id).await.unwrap();
    assert_eq!(detail.run.outputs, Some(json!("after receipt 7")));
    assert!(detail.ambiguous.is_empty());
    assert!(
        c.step_trace(&me, &id, "pay")
            .await
            .unwrap()
            .ambiguous
            .is_none()
    );
    let e = c
        .resolve(&me, &id, resolve("pay", Resolution::Retry, None))
        .await
        .err()
        .unwrap();
    assert_eq!(e.code(), Code::Conflict);

    // Audited: both resolutions, and the denial.
    let entries = c.audit(&me, None, &AuditQuery::default()).await.unwrap();
    let resolves: Vec<(&str, &str)> = entries
        .iter()
        .filter(|e| e.entry.action == "run.resolve")
        .map(|e| {
            (
                e.entry.key_id.as_deref().unwrap_or(""),
                e.entry.outcome.as_str(),
            )
        })
        .collect();
    assert_eq!(
        resolves,
        vec![("kv", "denied"), ("local", "ok"), ("local", "ok")],
        "{entries:?}"
    );
}

#[tokio::test]
async fn an_ambiguous_step_resolved_as_retry_is_sent_again() {
    let c = memory();
    let me = Caller::local();
    let run = ambiguous_run(&c).await;
    let Resolved::Drive(d) = c
        .resolve(
            &me,
            &run.to_string(),
            resolve("pay", Resolution::Retry, None),
        )
        .await
        .unwrap()
    else {
        panic!("nobody holds the run")
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
    let detail = c.run_detail(&me, &run.to_string()).await.unwrap();
    assert_eq!(
        detail.run.outputs,
        Some(json!("after paid")),
        "pay ran again"
    );
}
