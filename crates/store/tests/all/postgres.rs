//! What only the PostgreSQL backend has to show: several processes (here: several stores, each
//! with its own connections) on one database, migrations, and bad URLs. The conformance suites
//! run against it beside the other backends (`postgres_*` in each file).

use std::sync::Arc;

use baton_store::postgres::{MIGRATIONS, PostgresStore};
use baton_store::{Batch, Error, ListQuery, RunStore};
use baton_types::{Event, RunStatus};

use super::{dt, ev, new_run};

/// A store on a fresh database of the test server (`None`: PostgreSQL is absent, the test is
/// skipped loudly).
pub async fn store(what: &str) -> Option<PostgresStore> {
    let url = baton_test_support::postgres::database(what)?;
    Some(PostgresStore::open(&url).await.unwrap())
}

async fn sql(url: &str, statement: &str) {
    let (client, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(conn);
    client.batch_execute(statement).await.unwrap();
}

/// Two stores stand for two processes: a lease one holds is refused to the other until it is
/// released; an owner on this host whose process is gone loses it at once.
#[tokio::test]
async fn postgres_claims_hold_across_processes() {
    let Some(url) = baton_test_support::postgres::database("postgres_claims") else {
        return;
    };
    let (a, b) = (
        PostgresStore::open(&url).await.unwrap(),
        PostgresStore::open(&url).await.unwrap(),
    );
    let run = new_run("wf", 1);
    let id = run.id;
    let me = baton_store::process_owner();
    let host = me.rsplit_once(':').unwrap().0.to_string();
    a.create_run(run).await.unwrap();
    a.claim(id, &me, 60_000).await.unwrap();
    let err = b.claim(id, "elsewhere:1", 60_000).await.unwrap_err();
    assert!(matches!(err, Error::Claimed { .. }), "{err}");
    assert!(b.renew(id, "elsewhere:1", 60_000).await.is_err());
    a.renew(id, &me, 60_000).await.unwrap();
    // Released: the other takes it; an expired lease of another host is taken over.
    a.release(id, &me).await.unwrap();
    b.claim(id, "elsewhere:1", 60_000).await.unwrap();
    assert!(a.claim(id, &me, 60_000).await.is_err());
    sql(
        &url,
        &format!("UPDATE runs SET lease_until_ms = 0 WHERE id = '{id}'"),
    )
    .await;
    a.claim(id, &me, 60_000).await.unwrap();
    // An owner of this host that is gone (a kill -9) holds nothing.
    a.release(id, &me).await.unwrap();
    a.claim(id, &format!("{host}:999999999"), 60_000)
        .await
        .unwrap();
    b.claim(id, "newcomer", 60_000).await.unwrap();
    assert!(matches!(
        a.claim(baton_types::RunId::new(), &me, 1).await,
        Err(Error::NotFound(_))
    ));
}

/// Sixteen claimers race for one run through their own connections: exactly one wins.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_claims_have_one_winner() {
    let Some(url) = baton_test_support::postgres::database("postgres_racing_claims") else {
        return;
    };
    let first = PostgresStore::open(&url).await.unwrap();
    let run = new_run("wf", 1);
    let id = run.id;
    first.create_run(run).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..16 {
        let url = url.clone();
        tasks.push(tokio::spawn(async move {
            let s = PostgresStore::open(&url).await.unwrap();
            s.claim(id, &format!("other-host:{i}"), 60_000).await
        }));
    }
    let mut won = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => won += 1,
            Err(Error::Claimed { .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(won, 1);
}

/// Appends racing for the same seq: one is written, every other fails with a conflict and
/// writes nothing (its status is not applied either).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_racing_appends_write_once() {
    let Some(url) = baton_test_support::postgres::database("postgres_racing_appends") else {
        return;
    };
    let s = Arc::new(PostgresStore::open(&url).await.unwrap());
    let run = new_run("wf", 1);
    let id = run.id;
    s.create_run(run).await.unwrap();
    let mut tasks = Vec::new();
    for i in 0..12u64 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            s.append(
                id,
                Batch {
                    events: vec![
                        ev(
                            id,
                            1,
                            Event::RunStarted {
                                resumed: i % 2 == 0,
                            },
                        ),
                        ev(id, 2, Event::RunCancelled),
                    ],
                    status: Some(RunStatus::Running),
                    ..Default::default()
                },
            )
            .await
        }));
    }
    let mut ok = 0;
    for t in tasks {
        match t.await.unwrap() {
            Ok(()) => ok += 1,
            Err(Error::Conflict { seq: 1, .. }) => {}
            Err(e) => panic!("unexpected error: {e}"),
        }
    }
    assert_eq!(ok, 1);
    assert_eq!(s.events(id, 0).await.unwrap().len(), 2);
    assert_eq!(s.run(id).await.unwrap().unwrap().last_seq, 2);
}

/// A `running` run nobody holds, and a pending run whose creator died, read as
/// `interrupted`, as on SQLite.
#[tokio::test]
async fn postgres_runs_nobody_holds_read_as_interrupted() {
    let Some(url) = baton_test_support::postgres::database("postgres_interrupted") else {
        return;
    };
    let s = PostgresStore::open(&url).await.unwrap();
    let me = baton_store::process_owner();
    let host = me.rsplit_once(':').unwrap().0.to_string();
    let (a, b) = (new_run("wf", 1), new_run("wf", 2));
    let (running, orphan) = (a.id, b.id);
    s.create_run(a).await.unwrap();
    s.create_run(b).await.unwrap();
    s.claim(running, &format!("{host}:999999999"), 60_000)
        .await
        .unwrap();
    s.append(
        running,
        Batch {
            events: vec![ev(running, 1, Event::RunStarted { resumed: false })],
            status: Some(RunStatus::Running),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    sql(
        &url,
        &format!("UPDATE runs SET owner = '{host}:999999999' WHERE id = '{orphan}'"),
    )
    .await;
    for id in [running, orphan] {
        assert_eq!(
            s.run(id).await.unwrap().unwrap().status,
            RunStatus::Interrupted
        );
    }
    let listed = s
        .list_runs(
            &dt(),
            ListQuery {
                status: Some(RunStatus::Interrupted),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(listed.len(), 2);
    s.claim(running, &me, 60_000).await.unwrap();
    assert_eq!(
        s.run(running).await.unwrap().unwrap().status,
        RunStatus::Running
    );
}

/// Migrations: a new database gets every one, recorded in `schema_migrations`; opening again
/// applies none; a database of a newer schema is refused, naming both versions.
#[tokio::test]
async fn postgres_migrations_are_versioned_and_a_newer_schema_is_refused() {
    let Some(url) = baton_test_support::postgres::database("postgres_migrations") else {
        return;
    };
    let fresh = PostgresStore::connect(&url).await.unwrap();
    let before = fresh.migration_status().await.unwrap();
    assert!(before.applied.is_empty());
    assert_eq!(before.pending().len(), MIGRATIONS.len());
    let s = PostgresStore::open(&url).await.unwrap();
    let st = s.migration_status().await.unwrap();
    let versions: Vec<i64> = st.applied.iter().map(|(v, _)| *v).collect();
    assert_eq!(
        versions,
        MIGRATIONS.iter().map(|m| m.version).collect::<Vec<_>>()
    );
    assert!(st.pending().is_empty());
    assert!(s.migrate().await.unwrap().is_empty());
    let next = st.latest + 1;
    sql(
        &url,
        &format!(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ({next}, 'future', 0)"
        ),
    )
    .await;
    let err = PostgresStore::open(&url).await.err().unwrap();
    let msg = err.to_string();
    assert!(msg.contains("newer Baton"), "{msg}");
    assert!(msg.contains(&format!("schema {next}")), "{msg}");
    assert!(msg.contains("127.0.0.1"), "{msg}");
}

/// A malformed URL, a port where nothing listens and a database that does not exist each give
/// an error naming the URL (never a panic); a password is not shown.
#[tokio::test]
async fn postgres_bad_urls_are_named() {
    let err = PostgresStore::open("postgres://baton@127.0.0.1:notaport/x")
        .await
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("not a valid PostgreSQL URL"), "{err}");
    assert!(err.contains("notaport"), "{err}");
    // A port nothing listens on.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let url = format!("postgres://baton:secret@127.0.0.1:{port}/x");
    let err = PostgresStore::open(&url).await.err().unwrap().to_string();
    assert!(
        err.contains(&format!("postgres://baton:***@127.0.0.1:{port}/x")),
        "{err}"
    );
    assert!(!err.contains("secret"), "{err}");
    if baton_test_support::postgres::database("postgres_bad_urls").is_none() {
        return;
    }
    let port = baton_test_support::postgres::server_port().unwrap();
    let url = format!("postgres://baton@127.0.0.1:{port}/no_such_db");
    let err = PostgresStore::open(&url).await.err().unwrap().to_string();
    assert!(err.contains("no_such_db"), "{err}");
    assert!(err.contains("does not exist"), "{err}");
}

/// A database of an older schema (here: before webhooks, schema 4) is brought up to date on
/// open, keeping its runs; the new migration's objects work (the outbox trigger fills).
#[tokio::test]
async fn postgres_migrates_an_older_database_keeping_its_runs() {
    use baton_store::WebhookStore;
    let Some(url) = baton_test_support::postgres::database("postgres_migrates_older") else {
        return;
    };
    let run = new_run("old-wf", 1);
    let id = run.id;
    PostgresStore::open(&url)
        .await
        .unwrap()
        .create_run(run)
        .await
        .unwrap();
    // Back to schema 4's shape.
    sql(
        &url,
        "DROP TRIGGER webhook_outbox_fill ON events; DROP FUNCTION webhook_outbox_fill();
         DROP TABLE webhook_inbound, webhook_seen, webhook_subscriptions, webhook_outbox,
           webhook_deliveries, webhook_attempts, workers;
         DELETE FROM schema_migrations WHERE version IN (5, 6);",
    )
    .await;
    let old = PostgresStore::connect(&url).await.unwrap();
    let st = old.migration_status().await.unwrap();
    assert_eq!(st.current(), 4);
    assert_eq!(
        st.pending().iter().map(|m| m.version).collect::<Vec<_>>(),
        vec![5, 6]
    );
    let s = PostgresStore::open(&url).await.unwrap();
    assert_eq!(s.migration_status().await.unwrap().current(), 6);
    assert_eq!(s.run(id).await.unwrap().unwrap().workflow_name, "old-wf");
    s.create_subscription(baton_store::webhooks::SubscriptionRecord {
        id: "sub_1".into(),
        tenant: dt(),
        url: "https://example.com/h".into(),
        events: vec!["run.cancelled".into()],
        secret: "whsec_s".into(),
        description: None,
        created_at_ms: 1,
        created_by: None,
    })
    .await
    .unwrap();
    s.append(
        id,
        Batch {
            events: vec![ev(id, 1, Event::RunCancelled)],
            status: Some(RunStatus::Cancelled),
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.outbox(10).await.unwrap().len(), 1);
}

/// Workers claim runnable runs in one statement (`SKIP LOCKED`): two workers claiming at once
/// over 40 queued runs never get the same run; a run held by its creator, held under a live
/// lease, or ended is not claimed; an expired lease is; a waiting run is claimed only with a
/// control request queued; tags route runs.
#[tokio::test]
async fn postgres_workers_claim_runnable_runs_once_each() {
    let Some(url) = baton_test_support::postgres::database("postgres_claim_runnable") else {
        return;
    };
    let (a, b) = (
        Arc::new(PostgresStore::open(&url).await.unwrap()),
        Arc::new(PostgresStore::open(&url).await.unwrap()),
    );
    let mut ids = Vec::new();
    for i in 0..40 {
        let run = new_run("wf", i);
        ids.push(run.id);
        a.create_run(run).await.unwrap();
    }
    // Held by their creator: nobody claims them yet.
    assert!(
        a.claim_runnable("wa:1", &[], 100, 60_000, &[])
            .await
            .unwrap()
            .is_empty()
    );
    for id in &ids {
        a.queue_run(*id).await.unwrap();
    }
    let (ca, cb) = tokio::join!(
        {
            let a = a.clone();
            async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.extend(a.claim_runnable("wa:1", &[], 3, 60_000, &[]).await.unwrap());
                }
                got
            }
        },
        {
            let b = b.clone();
            async move {
                let mut got = Vec::new();
                for _ in 0..10 {
                    got.extend(b.claim_runnable("wb:2", &[], 3, 60_000, &[]).await.unwrap());
                }
                got
            }
        }
    );
    let mut all: Vec<_> = ca.iter().chain(&cb).map(|(id, _)| *id).collect();
    assert_eq!(all.len(), 40, "every run claimed");
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 40, "no run claimed twice");
    assert!(ca.iter().all(|(_, s)| *s == RunStatus::Pending));
    // Held under live leases: nothing more to claim; an expired one is taken over.
    assert!(
        a.claim_runnable("wc:3", &[], 100, 60_000, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let expired = ca[0].0;
    sql(
        &url,
        &format!("UPDATE runs SET status = 'running', lease_until_ms = 1 WHERE id = '{expired}'"),
    )
    .await;
    let got = a
        .claim_runnable("wc:3", &[], 100, 60_000, &[])
        .await
        .unwrap();
    assert_eq!(got, vec![(expired, RunStatus::Running)]);
    // A waiting run nobody holds: claimed only once a request is queued for it.
    let waiting = cb[0].0;
    sql(
        &url,
        &format!("UPDATE runs SET status = 'waiting', owner = NULL, lease_until_ms = NULL WHERE id = '{waiting}'"),
    )
    .await;
    assert!(
        a.claim_runnable("wc:3", &[], 100, 60_000, &[])
            .await
            .unwrap()
            .is_empty()
    );
    a.send_control(waiting, baton_store::Control::Pause)
        .await
        .unwrap();
    // Skipped when asked to.
    assert!(
        a.claim_runnable("wc:3", &[], 100, 60_000, &[waiting])
            .await
            .unwrap()
            .is_empty()
    );
    let got = a
        .claim_runnable("wc:3", &[], 100, 60_000, &[])
        .await
        .unwrap();
    assert_eq!(got, vec![(waiting, RunStatus::Waiting)]);
    // Tags: a run that requires `gpu` goes only to a worker that has it.
    let mut tagged = new_run("wf", 100);
    tagged.options = serde_json::json!({"worker_tags": ["gpu"]});
    let tid = tagged.id;
    a.create_run(tagged).await.unwrap();
    a.queue_run(tid).await.unwrap();
    let cpu = ["cpu".to_string()];
    assert!(
        a.claim_runnable("wd:4", &cpu, 10, 60_000, &[])
            .await
            .unwrap()
            .is_empty()
    );
    let gpu = ["gpu".to_string(), "cpu".to_string()];
    let got = a
        .claim_runnable("wd:4", &gpu, 10, 60_000, &[])
        .await
        .unwrap();
    assert_eq!(got, vec![(tid, RunStatus::Pending)]);
    // A run that started cannot be queued again.
    let err = a.queue_run(tid).await;
    assert!(err.is_ok(), "still pending: {err:?}");
    sql(
        &url,
        &format!("UPDATE runs SET status = 'running' WHERE id = '{tid}'"),
    )
    .await;
    let err = a.queue_run(tid).await.unwrap_err();
    assert!(err.to_string().contains("only a pending run"), "{err}");
}

/// The workers table: register, heartbeat, drain, stop, and the runs each holds.
#[tokio::test]
async fn postgres_workers_register_heartbeat_drain_and_stop() {
    use baton_store::postgres::NewWorker;
    let Some(s) = store("postgres_workers_table").await else {
        return;
    };
    let w = NewWorker {
        id: "host1:42".into(),
        version: "9.9.9".into(),
        tags: vec!["gpu".into()],
        concurrency: 3,
        lease_ms: 60_000,
    };
    s.register_worker(&w).await.unwrap();
    assert_eq!(s.heartbeat_worker("host1:42").await.unwrap(), Some(false));
    assert_eq!(s.heartbeat_worker("nobody:1").await.unwrap(), None);
    let run = new_run("wf", 1);
    let id = run.id;
    s.create_run(run).await.unwrap();
    s.queue_run(id).await.unwrap();
    s.claim_runnable("host1:42", &w.tags, 3, 60_000, &[])
        .await
        .unwrap();
    let list = s.workers().await.unwrap();
    assert_eq!(list.len(), 1);
    let got = &list[0];
    assert_eq!(
        (
            got.host.as_str(),
            got.pid,
            got.version.as_str(),
            got.runs_held
        ),
        ("host1", 42, "9.9.9", 1)
    );
    assert_eq!(got.tags, vec!["gpu".to_string()]);
    assert_eq!(got.state(baton_store::now_ms()), "running");
    let drained = s.drain_worker("host1:42").await.unwrap();
    assert!(drained.draining);
    assert_eq!(s.heartbeat_worker("host1:42").await.unwrap(), Some(true));
    s.stop_worker("host1:42").await.unwrap();
    let err = s.drain_worker("host1:42").await.unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err}");
    assert_eq!(
        s.workers().await.unwrap()[0].state(baton_store::now_ms()),
        "stopped"
    );
    // Registering again (a restart with the same pid) starts it over.
    s.register_worker(&w).await.unwrap();
    let again = &s.workers().await.unwrap()[0];
    assert!(!again.draining && again.stopped_at_ms.is_none());
}

/// Every append notifies listeners with the seqs it wrote, the tenant and the writer; a queued
/// request or a queued run notifies the workers.
#[tokio::test]
async fn postgres_appends_and_requests_are_notified() {
    use baton_store::postgres::Notice;
    let Some(url) = baton_test_support::postgres::database("postgres_notify") else {
        return;
    };
    let a = PostgresStore::open(&url).await.unwrap();
    let mut rx = a.listen();
    async fn next(rx: &mut tokio::sync::mpsc::Receiver<Notice>) -> Notice {
        tokio::time::timeout(std::time::Duration::from_secs(10), rx.recv())
            .await
            .unwrap()
            .unwrap()
    }
    assert_eq!(next(&mut rx).await, Notice::Connected);
    let mut run = new_run("wf", 1);
    let id = run.id;
    run.events = vec![ev(
        id,
        1,
        Event::RunCreated {
            workflow: "wf".into(),
            inputs: serde_json::json!({}),
            forked_from: None,
        },
    )];
    a.create_run(run).await.unwrap();
    let me = baton_store::process_owner();
    assert_eq!(
        next(&mut rx).await,
        Notice::Logged {
            run: id,
            first: 1,
            last: 1,
            tenant: dt(),
            origin: me.clone()
        }
    );
    a.append(
        id,
        Batch {
            events: vec![
                ev(id, 2, Event::RunStarted { resumed: false }),
                ev(id, 3, Event::RunCancelled),
            ],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(
        next(&mut rx).await,
        Notice::Logged {
            run: id,
            first: 2,
            last: 3,
            tenant: dt(),
            origin: me
        }
    );
    a.send_control(id, baton_store::Control::Cancel)
        .await
        .unwrap();
    assert_eq!(next(&mut rx).await, Notice::Work);
}
