//! The store conformance suite, run against every backend.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{Batch, Checkpoint, Control, Error, ListQuery, NewRun, RunStore};
use baton_types::{Event, EventRecord, RunId, RunStatus};
use serde_json::json;

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
    }
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
    let all = store.list_runs(ListQuery::default()).await.unwrap();
    assert_eq!(all.iter().map(|r| r.id).collect::<Vec<_>>(), vec![idb, ida]);
    let running = store
        .list_runs(ListQuery {
            status: Some(RunStatus::Running),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(running.len(), 1);
    let by_name = store
        .list_runs(ListQuery {
            workflow: Some("wf-b".into()),
            ..Default::default()
        })
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
            s.list_runs(ListQuery {
                status: q,
                ..Default::default()
            })
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

/// Runs are found by a unique prefix of their id, in id order.
#[tokio::test]
async fn runs_are_found_by_id_prefix() {
    let dir = tempfile::tempdir().unwrap();
    let sqlite: Arc<dyn RunStore> =
        Arc::new(SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap());
    for store in [sqlite, Arc::new(MemoryStore::new()) as Arc<dyn RunStore>] {
        let (a, b) = (new_run("wf", 1), new_run("wf", 2));
        let (ida, idb) = (a.id, b.id);
        store.create_run(a).await.unwrap();
        store.create_run(b).await.unwrap();
        let full = ida.to_string();
        assert_eq!(store.runs_by_prefix(&full, 5).await.unwrap(), vec![ida]);
        let shared = full
            .chars()
            .zip(idb.to_string().chars())
            .take_while(|(x, y)| x == y)
            .count();
        let both = store.runs_by_prefix(&full[..shared], 5).await.unwrap();
        assert_eq!(both.len(), 2, "{full} {idb}");
        assert_eq!(
            store.runs_by_prefix(&full[..shared + 1], 5).await.unwrap(),
            vec![ida]
        );
        assert_eq!(
            store
                .runs_by_prefix(&full[..shared], 1)
                .await
                .unwrap()
                .len(),
            1
        );
        assert!(store.runs_by_prefix("", 5).await.unwrap().is_empty());
        assert!(store.runs_by_prefix("zz", 5).await.unwrap().is_empty());
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
        c.execute_batch("ALTER TABLE runs DROP COLUMN durability; PRAGMA user_version=1;")
            .unwrap();
    }
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    assert_eq!(s.run(id).await.unwrap().unwrap().workflow_name, "wf");
    assert_eq!(s.run_durability(id).unwrap(), Some(Durability::Process));
}
