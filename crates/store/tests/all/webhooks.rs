//! The webhook store conformance suite (schema 5), against every backend.

use std::sync::Arc;

use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::webhooks::{
    AfterAttempt, AttemptRecord, DeliveryStatus, InboundHookRecord, NewDelivery, SubscriptionRecord,
};
use baton_store::{Batch, Error, RunStore, TenantRecord, TenantStore, WebhookStore};
use baton_types::{Event, RunStatus, TenantId};
use serde_json::json;

use super::{ev, new_run};

trait All: RunStore + TenantStore + WebhookStore {}
impl<T: RunStore + TenantStore + WebhookStore> All for T {}

fn tid(s: &str) -> TenantId {
    s.parse().unwrap()
}

fn hook(id: &str, tenant: &str) -> InboundHookRecord {
    InboundHookRecord {
        id: id.into(),
        tenant: tid(tenant),
        workflow: "wf".into(),
        body_input: None,
        name: None,
        secret: "whsec_a".into(),
        previous_secret: None,
        previous_until_ms: None,
        created_at_ms: 1,
        created_by: None,
    }
}

fn sub(id: &str, tenant: &str) -> SubscriptionRecord {
    SubscriptionRecord {
        id: id.into(),
        tenant: tid(tenant),
        url: "https://example.com/h".into(),
        events: vec!["run.succeeded".into()],
        secret: "whsec_s".into(),
        description: None,
        created_at_ms: 1,
        created_by: None,
    }
}

fn attempt(n: u32, code: u16) -> AttemptRecord {
    AttemptRecord {
        n,
        at_ms: 100,
        duration_ms: 3,
        status_code: Some(code),
        error: (code >= 300).then(|| format!("HTTP {code}")),
    }
}

async fn webhooks_conformance(store: Arc<dyn All>) {
    store
        .create_tenant(TenantRecord {
            id: tid("acme"),
            name: "acme".into(),
            created_at_ms: 0,
        })
        .await
        .unwrap();
    // Inbound hooks: tenant-scoped, rotated, deleted.
    store.create_inbound(hook("wh_1", "default")).await.unwrap();
    assert!(matches!(
        store.create_inbound(hook("wh_x", "ghost")).await,
        Err(Error::Missing { .. })
    ));
    assert!(
        store
            .inbound_hook(&tid("acme"), "wh_1")
            .await
            .unwrap()
            .is_none()
    );
    assert!(store.inbound_for_receive("wh_1").await.unwrap().is_some());
    let r = store
        .rotate_inbound(&tid("default"), "wh_1", "whsec_b".into(), 500)
        .await
        .unwrap();
    assert_eq!(
        (r.secret.as_str(), r.previous_secret.as_deref()),
        ("whsec_b", Some("whsec_a"))
    );
    assert_eq!(r.previous_until_ms, Some(500));
    assert!(
        store
            .rotate_inbound(&tid("acme"), "wh_1", "whsec_c".into(), 1)
            .await
            .is_err()
    );
    // Message ids: once per hook, forgotten when expired or on request.
    assert!(
        store
            .remember_message("wh_1", "m1", 1000, 10)
            .await
            .unwrap()
    );
    assert!(
        !store
            .remember_message("wh_1", "m1", 1000, 20)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_message("wh_2", "m1", 1000, 20)
            .await
            .unwrap()
    );
    assert!(
        store
            .remember_message("wh_1", "m1", 3000, 1001)
            .await
            .unwrap(),
        "expired"
    );
    store.forget_message("wh_1", "m1").await.unwrap();
    assert!(
        store
            .remember_message("wh_1", "m1", 3000, 1002)
            .await
            .unwrap()
    );
    store
        .delete_inbound(&tid("default"), "wh_1", 5)
        .await
        .unwrap();
    assert!(store.inbound_for_receive("wh_1").await.unwrap().is_none());
    assert!(
        store
            .inbound_hooks(&tid("default"))
            .await
            .unwrap()
            .is_empty()
    );

    // The outbox: nothing while the tenant has no subscription.
    let quiet = new_run("wf", 1);
    let qid = quiet.id;
    store.create_run(quiet).await.unwrap();
    let done = |run, seq| Batch {
        events: vec![ev(
            run,
            seq,
            Event::RunSucceeded {
                outputs: json!({"x": 1}),
            },
        )],
        status: Some(RunStatus::Succeeded),
        ..Default::default()
    };
    store.append(qid, done(qid, 1)).await.unwrap();
    assert!(store.outbox(10).await.unwrap().is_empty());
    store
        .create_subscription(sub("sub_1", "default"))
        .await
        .unwrap();
    store
        .create_subscription(sub("sub_2", "acme"))
        .await
        .unwrap();
    assert_eq!(store.subscriptions(&tid("acme")).await.unwrap().len(), 1);
    assert!(
        store
            .subscription(&tid("acme"), "sub_1")
            .await
            .unwrap()
            .is_none()
    );
    let mut run = new_run("wf", 2);
    run.events = vec![ev(
        run.id,
        1,
        Event::RunCreated {
            workflow: "wf".into(),
            inputs: json!({"a": 1}),
            forked_from: None,
        },
    )];
    let id = run.id;
    store.create_run(run).await.unwrap();
    let noise = Batch {
        events: vec![ev(id, 2, Event::RunStarted { resumed: false })],
        ..Default::default()
    };
    store.append(id, noise).await.unwrap();
    store.append(id, done(id, 3)).await.unwrap();
    let out = store.outbox(10).await.unwrap();
    let kinds: Vec<(&str, u64)> = out.iter().map(|e| (e.kind.as_str(), e.seq)).collect();
    assert_eq!(kinds, [("run_created", 1), ("run_succeeded", 3)]);
    assert_eq!(out[1].tenant, tid("default"));
    assert_eq!(out[1].workflow, "wf");
    assert_eq!(out[1].event["outputs"], json!({"x": 1}));
    assert!(out[0].id < out[1].id);

    // Fan-out is idempotent and empties the outbox.
    let d = |id: &str, at: i64| NewDelivery {
        id: id.into(),
        subscription: "sub_1".into(),
        tenant: tid("default"),
        event_type: "run.succeeded".into(),
        run_id: Some(id_of(&out[1])),
        seq: Some(3),
        payload: "{}".into(),
        created_at_ms: at,
    };
    fn id_of(e: &baton_store::webhooks::OutboxEvent) -> baton_types::RunId {
        e.run_id
    }
    store
        .fan_out(
            out.iter().map(|e| e.id).collect(),
            vec![d("msg_a", 10), d("msg_b", 20)],
        )
        .await
        .unwrap();
    store.fan_out(vec![], vec![d("msg_a", 99)]).await.unwrap();
    assert!(store.outbox(10).await.unwrap().is_empty());
    // Claims: due ones, oldest first, each leased once.
    let due = store.claim_due(30, 1000, 1).await.unwrap();
    assert_eq!(due.len(), 1);
    assert_eq!((due[0].delivery.id.as_str(), due[0].attempts), ("msg_a", 0));
    assert_eq!(due[0].url, "https://example.com/h");
    let next = store.claim_due(30, 1000, 10).await.unwrap();
    assert_eq!(next.len(), 1, "msg_a is leased");
    assert_eq!(next[0].delivery.id, "msg_b");
    assert!(store.claim_due(30, 1000, 10).await.unwrap().is_empty());
    store
        .record_attempt("msg_a", attempt(1, 500), AfterAttempt::RetryAt(50))
        .await
        .unwrap();
    assert!(
        store.claim_due(40, 1000, 10).await.unwrap().is_empty(),
        "not due yet"
    );
    let again = store.claim_due(60, 1000, 10).await.unwrap();
    assert_eq!((again.len(), again[0].attempts), (1, 1));
    store
        .record_attempt("msg_a", attempt(2, 204), AfterAttempt::Succeeded)
        .await
        .unwrap();
    // A lease that ran out is claimed again (a worker died mid-attempt).
    let retaken = store.claim_due(2000, 1000, 10).await.unwrap();
    assert_eq!(retaken.len(), 1);
    assert_eq!(retaken[0].delivery.id, "msg_b");
    let list = store
        .deliveries(&tid("default"), "sub_1", None, 10)
        .await
        .unwrap();
    let ids: Vec<&str> = list.iter().map(|d| d.delivery.id.as_str()).collect();
    assert_eq!(ids, ["msg_b", "msg_a"], "newest first");
    assert_eq!(list[1].status, DeliveryStatus::Succeeded);
    assert_eq!(list[1].attempts, [attempt(1, 500), attempt(2, 204)]);
    assert_eq!(
        list[1].delivery.created_at_ms, 10,
        "the first fan-out's is kept"
    );
    let page = store
        .deliveries(&tid("default"), "sub_1", Some((20, "msg_b".into())), 10)
        .await
        .unwrap();
    assert_eq!(page.len(), 1);
    assert_eq!(page[0].delivery.id, "msg_a");
    assert!(
        store
            .deliveries(&tid("acme"), "sub_1", None, 10)
            .await
            .unwrap()
            .is_empty()
    );
    // Deleting a subscription cancels what it had pending.
    store
        .delete_subscription(&tid("default"), "sub_1", 9)
        .await
        .unwrap();
    let list = store
        .deliveries(&tid("default"), "sub_1", None, 10)
        .await
        .unwrap();
    assert_eq!(list[0].status, DeliveryStatus::Cancelled);
    assert!(store.claim_due(9999, 1000, 10).await.unwrap().is_empty());
    assert!(matches!(
        store.delete_subscription(&tid("default"), "sub_1", 9).await,
        Err(Error::Missing { .. })
    ));
}

#[tokio::test]
async fn memory_webhooks_conformance() {
    webhooks_conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_webhooks_conformance() {
    let dir = tempfile::tempdir().unwrap();
    webhooks_conformance(Arc::new(
        SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap(),
    ))
    .await;
}

#[tokio::test]
async fn postgres_webhooks_conformance() {
    let Some(s) = super::postgres::store("postgres_webhooks_conformance").await else {
        return;
    };
    webhooks_conformance(Arc::new(s)).await;
}

/// Two servers claiming due deliveries at once each get their own: none is claimed twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_due_deliveries_are_claimed_once_across_processes() {
    let Some(url) = baton_test_support::postgres::database("postgres_claim_due") else {
        return;
    };
    let open = || baton_store::postgres::PostgresStore::open(&url);
    let (a, b) = (
        Arc::new(open().await.unwrap()),
        Arc::new(open().await.unwrap()),
    );
    a.create_subscription(sub("sub_1", "default"))
        .await
        .unwrap();
    let deliveries = (0..40)
        .map(|i| NewDelivery {
            id: format!("d{i:02}"),
            subscription: "sub_1".into(),
            tenant: tid("default"),
            event_type: "run.succeeded".into(),
            run_id: None,
            seq: None,
            payload: "{}".into(),
            created_at_ms: 1,
        })
        .collect();
    a.fan_out(Vec::new(), deliveries).await.unwrap();
    let claim = |s: Arc<baton_store::postgres::PostgresStore>| async move {
        let mut got = Vec::new();
        loop {
            let due = s.claim_due(10, 60_000, 3).await.unwrap();
            if due.is_empty() {
                return got;
            }
            got.extend(due.into_iter().map(|d| d.delivery.id));
        }
    };
    let (x, y) = tokio::join!(tokio::spawn(claim(a)), tokio::spawn(claim(b)));
    let mut all: Vec<String> = x.unwrap().into_iter().chain(y.unwrap()).collect();
    all.sort();
    let want: Vec<String> = (0..40).map(|i| format!("d{i:02}")).collect();
    assert_eq!(all, want);
}

/// A database of schema 4 gains the webhook tables and the outbox trigger.
#[tokio::test]
async fn sqlite_migrates_a_version_4_database_to_webhooks() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v4.db");
    drop(SqliteStore::open(&path, Durability::Process).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "DROP TRIGGER webhook_outbox_fill; DROP TABLE webhook_inbound; DROP TABLE webhook_seen;
             DROP TABLE webhook_subscriptions; DROP TABLE webhook_outbox;
             DROP TABLE webhook_deliveries; DROP TABLE webhook_attempts; PRAGMA user_version=4;",
        )
        .unwrap();
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    s.create_subscription(sub("sub_1", "default"))
        .await
        .unwrap();
    let run = new_run("wf", 1);
    let id = run.id;
    s.create_run(run).await.unwrap();
    s.append(
        id,
        Batch {
            events: vec![ev(id, 1, Event::RunCancelled)],
            ..Default::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(s.outbox(10).await.unwrap().len(), 1);
}
