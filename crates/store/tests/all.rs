//! The store conformance suite, run against every backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{Batch, Checkpoint, Control, Error, ListQuery, NewRun, RunStore};
use baton_types::{Event, EventRecord, RunId, RunStatus, TenantId};
use serde_json::json;

#[path = "all/agents.rs"]
mod agents;
#[path = "all/postgres.rs"]
mod postgres;
#[path = "all/team_memory.rs"]
mod team_memory;
#[path = "all/webhooks.rs"]
mod webhooks;

fn new_run(name: &str, at: i64) -> NewRun {
    NewRun {
        events: Vec::new(),
        id: RunId::new(),
        workflow_name: name.into(),
        workflow_source: "version: 1".into(),
        workflow_path: None,
        inputs: json!({"a": 1}),
        options: json!({}),
        created_at_ms: at,
        tenant: TenantId::default(),
        started_by: None,
        idempotency: None,
    }
}

fn dt() -> TenantId {
    TenantId::default()
}

fn ev(run: RunId, seq: u64, event: Event) -> EventRecord {
    EventRecord {
        run_id: run,
        seq,
        at_ms: 1,
        event,
    }
}

async fn conformance(store: Arc<dyn RunStore>) {
    let a = new_run("wf-a", 10);
    let b = new_run("wf-b", 20);
    let (ida, idb) = (a.id, b.id);
    store.create_run(a).await.unwrap();
    // A run is running while a live process holds it (an executor claims before it appends).
    store
        .claim(ida, &baton_store::sqlite::process_owner(), 60_000)
        .await
        .unwrap();
    store.create_run(b).await.unwrap();

    // Append with status and checkpoint, atomically.
    let batch = Batch {
        events: vec![
            ev(ida, 1, Event::RunStarted { resumed: false }),
            ev(
                ida,
                2,
                Event::StepStarted {
                    step: "s".into(),
                    attempt: 1,
                    visit: 1,
                    key: "k".into(),
                },
            ),
        ],
        status: Some(RunStatus::Running),
        checkpoint: Some(Checkpoint {
            seq: 2,
            state: json!({"x": 1}).to_string(),
        }),
        ..Default::default()
    };
    store.append(ida, batch).await.unwrap();
    let rec = store.run(ida).await.unwrap().unwrap();
    assert_eq!(rec.status, RunStatus::Running);
    assert_eq!(rec.last_seq, 2);
    assert_eq!(rec.inputs, json!({"a": 1}));
    assert_eq!(store.checkpoint(ida).await.unwrap().unwrap().seq, 2);

    // A gap or a duplicate seq is a conflict and changes nothing.
    let err = store
        .append(
            ida,
            Batch {
                events: vec![ev(ida, 2, Event::RunCancelled)],
                status: Some(RunStatus::Failed),
                ..Default::default()
            },
        )
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Conflict { seq: 2, .. }), "{err}");
    assert_eq!(
        store.run(ida).await.unwrap().unwrap().status,
        RunStatus::Running
    );

    let evs = store.events(ida, 0).await.unwrap();
    assert_eq!(evs.len(), 2);
    assert_eq!(store.events(ida, 1).await.unwrap()[0].seq, 2);

    // Listing: newest first, filters.
    let all = store.list_runs(&dt(), ListQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![idb, ida]);
    let running = store
        .list_runs(
            &dt(),
            ListQuery {
                status: Some(RunStatus::Running),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let by_name = store
        .list_runs(
            &dt(),
            ListQuery {
                workflow: Some("wf-b".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_name[0].id, idb);

    // Controls are queued and taken once.
    store.send_control(ida, Control::Pause).await.unwrap();
    store.send_control(ida, Control::Cancel).await.unwrap();
    assert_eq!(
        store.take_controls(ida).await.unwrap(),
        vec![Control::Pause, Control::Cancel]
    );
    assert!(store.take_controls(ida).await.unwrap().is_empty());
    assert!(matches!(
        store.send_control(RunId::new(), Control::Pause).await,
        Err(Error::NotFound(_))
    ));

    // Claims.
    store
        .release(ida, &baton_store::sqlite::process_owner())
        .await
        .unwrap();
    store.claim(ida, "h:1", 60_000).await.unwrap();
    store.claim(ida, "h:1", 60_000).await.unwrap();
    store.release(ida, "h:1").await.unwrap();
    store.claim(ida, "other", 60_000).await.unwrap();

    // A run created with its first events: one write, the seqs go on from them.
    let mut c = new_run("wf-c", 30);
    let idc = c.id;
    c.events = vec![ev(
        idc,
        1,
        Event::RunCreated {
            workflow: "wf-c".into(),
            inputs: json!({}),
            forked_from: None,
        },
    )];
    store.create_run(c).await.unwrap();
    assert_eq!(store.run(idc).await.unwrap().unwrap().last_seq, 1);
    assert_eq!(store.events(idc, 0).await.unwrap().len(), 1);
    store
        .append(
            idc,
            Batch {
                events: vec![ev(idc, 2, Event::RunStarted { resumed: false })],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    // First events must start at seq 1; nothing is created otherwise.
    let mut d = new_run("wf-d", 40);
    let idd = d.id;
    d.events = vec![ev(idd, 2, Event::RunStarted { resumed: false })];
    assert!(matches!(
        store.create_run(d).await,
        Err(Error::Conflict { .. })
    ));
    assert!(store.run(idd).await.unwrap().is_none());

    // Runs by status, every tenant's together.
    let mut e = new_run("wf-e", 50);
    e.tenant = "acme".parse().unwrap();
    let ide = e.id;
    store.create_run(e).await.unwrap();
    store
        .append(
            ide,
            Batch {
                events: vec![ev(ide, 1, Event::RunSucceeded { outputs: json!(1) })],
                status: Some(RunStatus::Succeeded),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let mut counts = store.count_runs().await.unwrap();
    counts.sort_by_key(|(s, _)| s.as_str());
    assert_eq!(
        counts,
        vec![
            (RunStatus::Pending, 2),
            (RunStatus::Running, 1),
            (RunStatus::Succeeded, 1)
        ]
    );

    // Unknown runs.
    assert!(store.run(RunId::new()).await.unwrap().is_none());
    assert!(matches!(
        store.append(RunId::new(), Batch::default()).await,
        Err(Error::NotFound(_))
    ));
}

#[tokio::test]
async fn memory_conformance() {
    conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_conformance() {
    let dir = tempfile::tempdir().unwrap();
    conformance(Arc::new(
        SqliteStore::open(&dir.path().join("x/baton.db"), Durability::Process).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn postgres_conformance() {
    let Some(s) = postgres::store("postgres_conformance").await else {
        return;
    };
    conformance(Arc::new(s)).await;
}

#[tokio::test]
async fn sqlite_claims_follow_process_liveness_and_survive_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let run = new_run("wf", 1);
    let id = run.id;
    let me = baton_store::sqlite::process_owner();
    let host = me.rsplit_once(':').unwrap().0.to_string();
    {
        let s = SqliteStore::open(&path, Durability::Power).unwrap();
        s.create_run(run).await.unwrap();
        s.claim(id, &me, 60_000).await.unwrap();
        s.append(
            id,
            Batch {
                events: vec![ev(id, 1, Event::RunStarted { resumed: false })],
                ..Default::default()
            },
        )
        .await
        .unwrap();
    }
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(s.run(id).await.unwrap().unwrap().last_seq, 1);
    // The recorded owner is this live process: another owner is refused, even after reopening.
    let err = s.claim(id, "someone-else", 60_000).await.unwrap_err();
    assert!(matches!(err, Error::Claimed { .. }), "{err}");
    // The owner cannot renew someone else's lease either.
    assert!(s.renew(id, "someone-else", 60_000).await.is_err());
    // A claim by a process that no longer exists is taken over.
    s.release(id, &me).await.unwrap();
    s.claim(id, &format!("{host}:999999999"), 60_000)
        .await
        .unwrap();
    s.claim(id, "newcomer", 60_000).await.unwrap();
}

#[tokio::test]
async fn sqlite_refuses_a_newer_schema_and_a_bad_path() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("b.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch("PRAGMA user_version=99").unwrap();
    }
    let err = SqliteStore::open(&path, Durability::Process).err().unwrap();
    assert!(err.to_string().contains("newer Baton"), "{err}");
    let file = dir.path().join("file");
    std::fs::write(&file, "x").unwrap();
    let err = SqliteStore::open(&file.join("sub/db"), Durability::Process)
        .err()
        .unwrap();
    assert!(err.to_string().contains("cannot create folder"), "{err}");
}

/// A `running` run that no live process holds reads as `interrupted` (listed, shown and
/// filtered so), while its stored status stays `running` for the process that resumes it.
#[tokio::test]
async fn sqlite_a_running_run_nobody_holds_reads_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let s = SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap();
    let me = baton_store::sqlite::process_owner();
    let host = me.rsplit_once(':').unwrap().0.to_string();
    let run = new_run("wf", 1);
    let id = run.id;
    s.create_run(run).await.unwrap();
    let running = Batch {
        events: vec![ev(id, 1, Event::RunStarted { resumed: false })],
        status: Some(RunStatus::Running),
        ..Default::default()
    };
    // Held by a process that is gone (a kill -9).
    s.claim(id, &format!("{host}:999999999"), 60_000)
        .await
        .unwrap();
    s.append(id, running).await.unwrap();
    let status = |q| {
        let s = &s;
        async move {
            s.list_runs(
                &dt(),
                ListQuery {
                    status: q,
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.status)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(
        s.run(id).await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );
    assert_eq!(
        status(Some(RunStatus::Interrupted)).await,
        vec![RunStatus::Interrupted]
    );
    assert_eq!(status(Some(RunStatus::Running)).await, vec![]);
    assert_eq!(status(None).await, vec![RunStatus::Interrupted]);
    // Taken back by a live process: running again.
    s.claim(id, &me, 60_000).await.unwrap();
    assert_eq!(s.run(id).await.unwrap().unwrap().status, RunStatus::Running);
    assert_eq!(
        status(Some(RunStatus::Running)).await,
        vec![RunStatus::Running]
    );
    // Released mid-run (the process stopped driving it without an end): interrupted.
    s.release(id, &me).await.unwrap();
    assert_eq!(
        s.run(id).await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );
}

/// A run is created with its creator's lease: created but never started by a process that
/// died, it reads as `interrupted` (so a restarted server resumes it), not `pending` forever;
/// any live process may still claim a pending run.
#[tokio::test]
async fn sqlite_a_run_whose_creator_died_before_starting_it_reads_as_interrupted() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    let (a, b) = (new_run("wf", 1), new_run("wf", 2));
    let (alive, orphan) = (a.id, b.id);
    s.create_run(a).await.unwrap();
    s.create_run(b).await.unwrap();
    // The second one's creator is gone (a kill -9 between the answer and the start).
    let me = baton_store::sqlite::process_owner();
    let host = me.rsplit_once(':').unwrap().0.to_string();
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute(
            "UPDATE runs SET owner = ?1 WHERE id = ?2",
            [format!("{host}:999999999"), orphan.to_string()],
        )
        .unwrap();
    assert_eq!(
        s.run(alive).await.unwrap().unwrap().status,
        RunStatus::Pending
    );
    assert_eq!(
        s.run(orphan).await.unwrap().unwrap().status,
        RunStatus::Interrupted
    );
    let listed = |q| {
        let s = &s;
        async move {
            s.list_runs(
                &dt(),
                ListQuery {
                    status: Some(q),
                    ..Default::default()
                },
            )
            .await
            .unwrap()
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(RunStatus::Interrupted).await, vec![orphan]);
    assert_eq!(listed(RunStatus::Pending).await, vec![alive]);
    // Another live process may start a pending run its creator still holds.
    s.claim(alive, &format!("{host}:1"), 60_000).await.unwrap();
}

/// Runs are found by a unique prefix of their id, in id order.
#[tokio::test]
async fn runs_are_found_by_id_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn RunStore> =
        Arc::new(SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap());
    let mut stores = vec![sqlite, Arc::new(MemoryStore::new()) as Arc<dyn RunStore>];
    if let Some(pg) = postgres::store("runs_are_found_by_id_prefix").await {
        stores.push(Arc::new(pg));
    }
    for store in stores {
        let (a, b) = (new_run("wf", 1), new_run("wf", 2));
        let (ida, idb) = (a.id, b.id);
        store.create_run(a).await.unwrap();
        store.create_run(b).await.unwrap();
        let full = ida.to_string();
        assert_eq!(
            store.runs_by_prefix(&dt(), &full, 5).await.unwrap(),
            vec![ida]
        );
        let shared = full
            .chars()
            .zip(idb.to_string().chars())
            .take_while(|(x, y)| x == y)
            .count();
        let both = store
            .runs_by_prefix(&dt(), &full[..shared], 5)
            .await
            .unwrap();
        assert_eq!(both.len(), 2, "{full} {idb}");
        assert_eq!(
            store
                .runs_by_prefix(&dt(), &full[..shared + 1], 5)
                .await
                .unwrap(),
            vec![ida]
        );
        assert_eq!(
            store
                .runs_by_prefix(&dt(), &full[..shared], 1)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(store.runs_by_prefix(&dt(), "", 5).await.unwrap().is_empty());
        assert!(
            store
                .runs_by_prefix(&dt(), "zz", 5)
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// A run keeps the durability it was created with; it can be changed on purpose.
#[tokio::test]
async fn sqlite_runs_keep_their_durability() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    let run = new_run("wf", 1);
    let id = run.id;
    SqliteStore::open(&path, Durability::Power)
        .unwrap()
        .create_run(run)
        .await
        .unwrap();
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(s.run_durability(id).unwrap(), Some(Durability::Power));
    s.set_run_durability(id, Durability::Process).await.unwrap();
    assert_eq!(s.run_durability(id).unwrap(), Some(Durability::Process));
    assert_eq!(s.run_durability(RunId::new()).unwrap(), None);
    assert!(matches!(
        s.set_run_durability(RunId::new(), Durability::Power).await,
        Err(Error::NotFound(_))
    ));
}

/// A database written by the previous schema (no durability column) opens and migrates.
#[tokio::test]
async fn sqlite_migrates_a_version_1_database() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    let run = new_run("wf", 1);
    let id = run.id;
    {
        let s = SqliteStore::open(&path, Durability::Process).unwrap();
        s.create_run(run).await.unwrap();
    }
    {
        // Back to version 1's shape.
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "DROP TRIGGER webhook_outbox_fill; DROP TABLE webhook_inbound; DROP TABLE webhook_seen;
             DROP TABLE webhook_subscriptions; DROP TABLE webhook_outbox; DROP TABLE webhook_deliveries;
             DROP TABLE webhook_attempts; ALTER TABLE runs DROP COLUMN durability; DROP INDEX runs_by_tenant;
             ALTER TABLE runs DROP COLUMN tenant; ALTER TABLE runs DROP COLUMN started_by;
             DROP TABLE tenants; DROP TABLE api_keys; DROP TABLE audit; DROP TABLE workflows;
             DROP TABLE workflow_versions; DROP TABLE run_starts; PRAGMA user_version=1;",
        )
        .unwrap();
    }
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(s.run(id).await.unwrap().unwrap().workflow_name, "wf");
    assert_eq!(s.run_durability(id).unwrap(), Some(Durability::Process));
}

// ---------------------------------------------------------------------------------------------
// Tenancy: runs by tenant, idempotency keys, tenants, keys, audit chains, stored workflows.

use baton_store::tenancy::{GENESIS_HASH, audit_hash};
use baton_store::{
    ApiKeyRecord, AuditQuery, IdempotencyKey, NewAuditEntry, NewWorkflowVersion, TenantRecord,
    TenantStore, WorkflowFormat, WorkflowWrite,
};
use baton_types::Role;

fn tid(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn in_tenant(name: &str, at: i64, tenant: &str) -> NewRun {
    NewRun {
        tenant: tid(tenant),
        ..new_run(name, at)
    }
}

trait Both: RunStore + TenantStore {}
impl<T: RunStore + TenantStore> Both for T {}

async fn tenancy_conformance(store: Arc<dyn Both>) {
    // Tenants: `default` always exists; ids are unique.
    let ids: Vec<String> = store
        .tenants()
        .await
        .unwrap()
        .iter()
        .map(|t| t.id.to_string())
        .collect();
    assert_eq!(ids, vec!["default"]);
    let acme = TenantRecord {
        id: tid("acme"),
        name: "Acme".into(),
        created_at_ms: 5,
    };
    store.create_tenant(acme.clone()).await.unwrap();
    assert!(matches!(
        store.create_tenant(acme.clone()).await,
        Err(Error::Exists { .. })
    ));
    assert_eq!(store.tenant(&tid("acme")).await.unwrap(), Some(acme));
    assert!(store.tenant(&tid("nope")).await.unwrap().is_none());

    // Runs are seen only through their own tenant.
    let a = in_tenant("wf", 10, "default");
    let b = NewRun {
        started_by: Some("k1".into()),
        ..in_tenant("wf", 20, "acme")
    };
    let (ida, idb) = (a.id, b.id);
    store.create_run(a).await.unwrap();
    store.create_run(b).await.unwrap();
    let list = |t: &str, q: ListQuery| {
        let (store, t) = (store.clone(), tid(t));
        async move {
            store
                .list_runs(&t, q)
                .await
                .unwrap()
                .iter()
                .map(|r| r.id)
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(list("default", ListQuery::default()).await, vec![ida]);
    assert_eq!(list("acme", ListQuery::default()).await, vec![idb]);
    assert!(list("other", ListQuery::default()).await.is_empty());
    assert!(store.tenant_run(&tid("acme"), ida).await.unwrap().is_none());
    let rec = store.tenant_run(&tid("acme"), idb).await.unwrap().unwrap();
    assert_eq!(rec.tenant, tid("acme"));
    assert_eq!(rec.started_by.as_deref(), Some("k1"));
    assert!(
        store
            .runs_by_prefix(&tid("acme"), &ida.to_string(), 5)
            .await
            .unwrap()
            .is_empty()
    );
    assert_eq!(
        list(
            "acme",
            ListQuery {
                started_by: Some("k1".into()),
                ..Default::default()
            }
        )
        .await,
        vec![idb]
    );
    assert!(
        list(
            "acme",
            ListQuery {
                started_by: Some("k2".into()),
                ..Default::default()
            }
        )
        .await
        .is_empty()
    );

    // Filters: since, text, cursor.
    let mut c = in_tenant("report", 30, "acme");
    c.inputs = json!({"topic": "Quarterly NUMBERS"});
    let idc = c.id;
    store.create_run(c).await.unwrap();
    assert_eq!(
        list(
            "acme",
            ListQuery {
                since_ms: Some(25),
                ..Default::default()
            }
        )
        .await,
        vec![idc]
    );
    assert_eq!(
        list(
            "acme",
            ListQuery {
                text: Some("quarterly".into()),
                ..Default::default()
            }
        )
        .await,
        vec![idc]
    );
    let page1 = store
        .list_runs(
            &tid("acme"),
            ListQuery {
                limit: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(page1[0].id, idc);
    let cursor = (page1[0].created_at_ms, page1[0].id);
    assert_eq!(
        list(
            "acme",
            ListQuery {
                after: Some(cursor),
                ..Default::default()
            }
        )
        .await,
        vec![idb]
    );

    // Idempotency keys: one run per key and tenant; the same key in another tenant is free.
    let key = IdempotencyKey {
        key: "retry-1".into(),
        fingerprint: "f1".into(),
    };
    let first = NewRun {
        idempotency: Some(key.clone()),
        ..in_tenant("wf", 40, "acme")
    };
    let first_id = first.id;
    store.create_run(first).await.unwrap();
    let again = NewRun {
        idempotency: Some(key.clone()),
        ..in_tenant("wf", 41, "acme")
    };
    let again_id = again.id;
    match store.create_run(again).await {
        Err(Error::KeyUsed {
            run, fingerprint, ..
        }) => {
            assert_eq!(run, first_id);
            assert_eq!(fingerprint, "f1");
        }
        other => panic!("{other:?}"),
    }
    assert!(store.run(again_id).await.unwrap().is_none());
    assert_eq!(
        store.run_for_key(&tid("acme"), "retry-1").await.unwrap(),
        Some((first_id, "f1".into()))
    );
    assert!(store.run_for_key(&dt(), "retry-1").await.unwrap().is_none());
    store
        .create_run(NewRun {
            idempotency: Some(key),
            ..in_tenant("wf", 42, "default")
        })
        .await
        .unwrap();

    // Keys: stored by tenant, found for authentication by id, revoked once.
    let key = |id: &str, tenant: &str, at: i64| ApiKeyRecord {
        id: id.into(),
        tenant: tid(tenant),
        role: Role::Editor,
        name: Some("ci".into()),
        hash: "ab".repeat(32),
        created_at_ms: at,
        created_by: Some("local".into()),
        expires_at_ms: None,
        revoked_at_ms: None,
    };
    store.create_key(key("k1", "acme", 1)).await.unwrap();
    store.create_key(key("k2", "acme", 2)).await.unwrap();
    assert!(matches!(
        store.create_key(key("k1", "default", 3)).await,
        Err(Error::Exists { .. })
    ));
    assert!(matches!(
        store.create_key(key("k9", "ghost", 3)).await,
        Err(Error::Missing { .. })
    ));
    let ks: Vec<String> = store
        .keys(&tid("acme"))
        .await
        .unwrap()
        .into_iter()
        .map(|k| k.id)
        .collect();
    assert_eq!(ks, vec!["k1", "k2"]);
    assert!(store.keys(&dt()).await.unwrap().is_empty());
    assert!(store.key(&dt(), "k1").await.unwrap().is_none());
    assert_eq!(
        store.key_for_auth("k1").await.unwrap().unwrap().tenant,
        tid("acme")
    );
    assert!(matches!(
        store.revoke_key(&dt(), "k1", 7).await,
        Err(Error::Missing { .. })
    ));
    store.revoke_key(&tid("acme"), "k1", 7).await.unwrap();
    store.revoke_key(&tid("acme"), "k1", 9).await.unwrap();
    assert_eq!(
        store
            .key(&tid("acme"), "k1")
            .await
            .unwrap()
            .unwrap()
            .revoked_at_ms,
        Some(7)
    );

    // Audit: one chain per tenant, each hash over the previous one.
    let entry = |tenant: &str, action: &str| NewAuditEntry {
        tenant: tid(tenant),
        at_ms: 100,
        key_id: Some("k2".into()),
        action: action.into(),
        object: Some("run/x".into()),
        request_id: Some("req-1".into()),
        source: Some("127.0.0.1".into()),
        outcome: "ok".into(),
        details: json!({"n": 1}),
    };
    let e1 = store
        .append_audit(entry("acme", "run.start"))
        .await
        .unwrap();
    let e2 = store
        .append_audit(entry("acme", "run.cancel"))
        .await
        .unwrap();
    let d1 = store
        .append_audit(entry("default", "key.create"))
        .await
        .unwrap();
    assert_eq!((e1.seq, e2.seq, d1.seq), (1, 2, 1));
    assert_eq!(e1.prev_hash, GENESIS_HASH);
    assert_eq!(e2.prev_hash, e1.hash);
    assert_eq!(e2.hash, audit_hash(&e1.hash, 2, &e2.entry));
    let all = store
        .audit(&tid("acme"), &AuditQuery::default())
        .await
        .unwrap();
    assert_eq!(all, vec![e1.clone(), e2.clone()]);
    let after = store
        .audit(
            &tid("acme"),
            &AuditQuery {
                after: Some(1),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(after, vec![e2.clone()]);
    let by_action = store
        .audit(
            &tid("acme"),
            &AuditQuery {
                action: Some("run.start".into()),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(by_action, vec![e1]);
    assert!(
        store
            .audit(&tid("other"), &AuditQuery::default())
            .await
            .unwrap()
            .is_empty()
    );

    // Workflows: versions are immutable and go on; delete is soft; names are per tenant.
    let wf = |tenant: &str, src: &str, at: i64| NewWorkflowVersion {
        tenant: tid(tenant),
        name: "hello".into(),
        source: src.into(),
        format: WorkflowFormat::Yaml,
        created_at_ms: at,
        created_by: Some("k2".into()),
    };
    let v1 = store
        .put_workflow(wf("acme", "v: 1", 1), WorkflowWrite::Create)
        .await
        .unwrap();
    assert_eq!((v1.version, v1.latest), (1, 1));
    assert!(matches!(
        store
            .put_workflow(wf("acme", "v: x", 2), WorkflowWrite::Create)
            .await,
        Err(Error::Exists { .. })
    ));
    assert!(matches!(
        store
            .put_workflow(wf("default", "v: x", 2), WorkflowWrite::Update)
            .await,
        Err(Error::Missing { .. })
    ));
    let v2 = store
        .put_workflow(wf("acme", "v: 2", 3), WorkflowWrite::Update)
        .await
        .unwrap();
    assert_eq!(v2.version, 2);
    let got = store
        .workflow(&tid("acme"), "hello", Some(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((got.source.as_str(), got.latest), ("v: 1", 2));
    let latest = store
        .workflow(&tid("acme"), "hello", None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(latest.source, "v: 2");
    assert!(
        store
            .workflow(&tid("acme"), "hello", Some(3))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .workflow(&dt(), "hello", None)
            .await
            .unwrap()
            .is_none()
    );
    let listed = store.workflows(&tid("acme")).await.unwrap();
    assert_eq!(listed.len(), 1);
    assert_eq!((listed[0].latest, listed[0].updated_at_ms), (2, 3));
    store
        .delete_workflow(&tid("acme"), "hello", 4)
        .await
        .unwrap();
    assert!(matches!(
        store.delete_workflow(&tid("acme"), "hello", 5).await,
        Err(Error::Missing { .. })
    ));
    assert!(store.workflows(&tid("acme")).await.unwrap().is_empty());
    assert!(
        store
            .workflow(&tid("acme"), "hello", Some(1))
            .await
            .unwrap()
            .is_none()
    );
    // Created again: the versions go on (a pinned version never names two documents).
    let v3 = store
        .put_workflow(wf("acme", "v: 3", 6), WorkflowWrite::Create)
        .await
        .unwrap();
    assert_eq!(v3.version, 3);
}

#[tokio::test]
async fn memory_tenancy_conformance() {
    tenancy_conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_tenancy_conformance() {
    let dir = tempfile::tempdir().unwrap();
    tenancy_conformance(Arc::new(
        SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn postgres_tenancy_conformance() {
    let Some(s) = postgres::store("postgres_tenancy_conformance").await else {
        return;
    };
    tenancy_conformance(Arc::new(s)).await;
}

/// A database of schema 3 (before tenants) opens: its runs belong to `default`, and the new
/// tables are there.
#[tokio::test]
async fn sqlite_migrates_a_version_3_database_into_tenants() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v3.db");
    let run = new_run("old-wf", 1);
    let id = run.id;
    {
        let s = SqliteStore::open(&path, Durability::Process).unwrap();
        s.create_run(run).await.unwrap();
    }
    {
        let c = rusqlite::Connection::open(&path).unwrap();
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
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    let rec = s.tenant_run(&dt(), id).await.unwrap().unwrap();
    assert_eq!(rec.workflow_name, "old-wf");
    assert_eq!(
        s.list_runs(&dt(), ListQuery::default())
            .await
            .unwrap()
            .len(),
        1
    );
    assert_eq!(s.tenants().await.unwrap()[0].id, dt());
    s.append_audit(NewAuditEntry {
        tenant: dt(),
        at_ms: 1,
        key_id: None,
        action: "x".into(),
        object: None,
        request_id: None,
        source: None,
        outcome: "ok".into(),
        details: json!(null),
    })
    .await
    .unwrap();
}
