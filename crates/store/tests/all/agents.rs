//! The agent registry, against every backend: versions, the default, rollback, tenants.

use std::sync::Arc;

use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{AgentRegistry, Error, NewAgentVersion, WorkflowFormat};
use baton_types::TenantId;
use serde_json::json;

fn version(tenant: &str, name: &str, model: &str, at: i64) -> NewAgentVersion {
    NewAgentVersion {
        tenant: tenant.parse().unwrap(),
        name: name.into(),
        spec: json!({"model": model}),
        source: format!("name: {name}\nmodel: {model}\n"),
        format: WorkflowFormat::Yaml,
        created_at_ms: at,
        created_by: Some("k1".into()),
    }
}

async fn registry_conformance(store: Arc<dyn AgentRegistry>) {
    let acme: TenantId = "acme".parse().unwrap();
    let other: TenantId = "other".parse().unwrap();
    assert!(store.agents(&acme).await.unwrap().is_empty());
    assert!(store.agent(&acme, "coder", None).await.unwrap().is_none());

    // Each put is the next version and becomes the default.
    let v1 = store
        .put_agent(version("acme", "coder", "m/1", 10))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.latest, v1.default_version), (1, 1, 1));
    let v2 = store
        .put_agent(version("acme", "coder", "m/2", 20))
        .await
        .unwrap();
    assert_eq!((v2.version, v2.latest, v2.default_version), (2, 2, 2));
    store
        .put_agent(version("acme", "pm", "m/p", 30))
        .await
        .unwrap();
    let d = store.agent(&acme, "coder", None).await.unwrap().unwrap();
    assert_eq!((d.version, d.spec.clone()), (2, json!({"model": "m/2"})));
    assert_eq!(d.created_by.as_deref(), Some("k1"));
    let pinned = store.agent(&acme, "coder", Some(1)).await.unwrap().unwrap();
    assert_eq!((pinned.version, pinned.latest), (1, 2));
    assert!(
        store
            .agent(&acme, "coder", Some(3))
            .await
            .unwrap()
            .is_none()
    );

    // Seeding stores version 1 of a new name only; a taken name is left as it is.
    let seeded = store
        .seed_agent(version("acme", "tester", "m/t", 35))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (seeded.version, seeded.latest, seeded.default_version),
        (1, 1, 1)
    );
    assert!(
        store
            .seed_agent(version("acme", "tester", "m/t2", 36))
            .await
            .unwrap()
            .is_none()
    );
    assert!(
        store
            .seed_agent(version("acme", "coder", "m/seed", 37))
            .await
            .unwrap()
            .is_none()
    );
    let t = store.agent(&acme, "tester", None).await.unwrap().unwrap();
    assert_eq!((t.version, t.spec.clone()), (1, json!({"model": "m/t"})));
    assert_eq!(
        store.agent_versions(&acme, "tester").await.unwrap().len(),
        1
    );
    let c = store.agent(&acme, "coder", None).await.unwrap().unwrap();
    assert_eq!((c.version, c.latest), (2, 2));

    let list = store.agents(&acme).await.unwrap();
    let names: Vec<_> = list.iter().map(|a| (a.name.as_str(), a.latest)).collect();
    assert_eq!(names, [("coder", 2), ("pm", 1), ("tester", 1)]);
    assert_eq!((list[0].created_at_ms, list[0].updated_at_ms), (10, 20));

    // Rollback moves the default, not the newest; a new version becomes the default again.
    let back = store
        .set_default_agent(&acme, "coder", 1, 40)
        .await
        .unwrap();
    assert_eq!((back.version, back.default_version, back.latest), (1, 1, 2));
    let d = store.agent(&acme, "coder", None).await.unwrap().unwrap();
    assert_eq!(d.version, 1);
    let err = store
        .set_default_agent(&acme, "coder", 9, 41)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    let err = store
        .set_default_agent(&acme, "nobody", 1, 41)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    let v3 = store
        .put_agent(version("acme", "coder", "m/3", 50))
        .await
        .unwrap();
    assert_eq!((v3.version, v3.default_version), (3, 3));

    let all = store.agent_versions(&acme, "coder").await.unwrap();
    let vs: Vec<_> = all.iter().map(|a| (a.version, a.default_version)).collect();
    assert_eq!(vs, [(1, 3), (2, 3), (3, 3)]);

    // Another tenant sees none of it, and has its own numbering.
    assert!(store.agents(&other).await.unwrap().is_empty());
    assert!(store.agent(&other, "coder", None).await.unwrap().is_none());
    assert!(
        store
            .agent_versions(&other, "coder")
            .await
            .unwrap()
            .is_empty()
    );
    let err = store
        .set_default_agent(&other, "coder", 1, 60)
        .await
        .unwrap_err();
    assert!(matches!(err, Error::Missing { .. }), "{err:?}");
    let o1 = store
        .put_agent(version("other", "coder", "m/o", 70))
        .await
        .unwrap();
    assert_eq!(o1.version, 1);
}

#[tokio::test]
async fn memory_registry_conformance() {
    registry_conformance(Arc::new(MemoryStore::new())).await;
}

#[tokio::test]
async fn sqlite_registry_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("baton.db");
    registry_conformance(Arc::new(
        SqliteStore::open(&path, Durability::Process).unwrap(),
    ))
    .await;
    // Versions survive a reopen.
    let s = SqliteStore::open(&path, Durability::Process).unwrap();
    let acme: TenantId = "acme".parse().unwrap();
    assert_eq!(s.agent_versions(&acme, "coder").await.unwrap().len(), 3);
}

#[tokio::test]
async fn postgres_registry_conformance() {
    let Some(url) = baton_test_support::postgres::database("postgres_registry_conformance") else {
        return;
    };
    let open = || baton_store::postgres::PostgresStore::open(&url);
    registry_conformance(Arc::new(open().await.unwrap())).await;
    // Versions are there for another connection.
    let s = open().await.unwrap();
    let acme: TenantId = "acme".parse().unwrap();
    assert_eq!(s.agent_versions(&acme, "coder").await.unwrap().len(), 3);
}
