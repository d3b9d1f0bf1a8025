//! Team memory against every backend: semantic memories (idempotent per call key, tenants kept
//! apart, read after a seq), workflow keys (compare-and-set, append, history, idempotent per
//! call key) and 1,000 concurrent increments through SQLite.

use std::sync::Arc;

use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{Error, KvOp, KvWrite, NewSemanticMemory, NewVector, TeamMemory};
use baton_types::TenantId;
use serde_json::{Value, json};

fn memory(tenant: &str, id: &str, call: Option<&str>) -> NewSemanticMemory {
    NewSemanticMemory {
        tenant: tenant.parse().unwrap(),
        namespace: "workflow:w".into(),
        id: id.into(),
        text: format!("text of {id}"),
        metadata: json!({"source": id}),
        vector: vec![0.5, -0.25, 1.0],
        model: "local/all-MiniLM-L6-v2".into(),
        agent: Some("coder".into()),
        run_id: Some("r1".into()),
        call_key: call.map(String::from),
        created_ms: 7,
    }
}

fn write(tenant: &str, key: &str, op: KvOp, call: Option<&str>) -> KvWrite {
    KvWrite {
        tenant: tenant.parse().unwrap(),
        workflow: "w".into(),
        key: key.into(),
        op,
        writer: Some("coder".into()),
        run_id: Some("r1".into()),
        step: Some("s1".into()),
        call_key: call.map(String::from),
        at_ms: 9,
    }
}

fn set(value: Value, expect_version: Option<u64>) -> KvOp {
    KvOp::Set {
        value,
        expect_version,
    }
}

async fn semantic_conformance(store: &dyn TeamMemory) {
    let acme: TenantId = "acme".parse().unwrap();
    let a = store
        .remember(memory("acme", "m1", Some("call-1")))
        .await
        .unwrap();
    assert_eq!(
        (a.id.as_str(), a.vector.as_slice()),
        ("m1", &[0.5, -0.25, 1.0][..])
    );
    // The same call again returns what it stored; nothing is added.
    let again = store
        .remember(memory("acme", "m1-retry", Some("call-1")))
        .await
        .unwrap();
    assert_eq!(again, a);
    let b = store.remember(memory("acme", "m2", None)).await.unwrap();
    assert!(b.seq > a.seq);
    let all = store.memories(&acme, "workflow:w", 0).await.unwrap();
    assert_eq!(
        all.iter().map(|m| m.id.as_str()).collect::<Vec<_>>(),
        ["m1", "m2"]
    );
    assert_eq!(all[0].metadata, json!({"source": "m1"}));
    assert_eq!(
        store
            .memories(&acme, "workflow:w", a.seq)
            .await
            .unwrap()
            .len(),
        1
    );
    assert!(store.memories(&acme, "run:x", 0).await.unwrap().is_empty());
    // Another tenant sees none of them; the same id there is a different memory.
    let other: TenantId = "other".parse().unwrap();
    assert!(
        store
            .memories(&other, "workflow:w", 0)
            .await
            .unwrap()
            .is_empty()
    );
    store
        .remember(memory("other", "m1", Some("call-1")))
        .await
        .unwrap();
    let dup = store
        .remember(memory("acme", "m1", None))
        .await
        .unwrap_err();
    assert!(matches!(dup, Error::Exists { .. }), "{dup}");

    // Vectors made again by another model replace the old ones in place (same seq and text);
    // an unknown id changes nothing at all.
    let redo = |id: &str, x: f32| NewVector {
        id: id.into(),
        model: "openai/text-embedding-3-small".into(),
        vector: vec![x, 0.0],
    };
    let missing = store
        .set_vectors(
            &acme,
            "workflow:w",
            vec![redo("m1", 1.0), redo("nope", 2.0)],
        )
        .await
        .unwrap_err();
    assert!(matches!(missing, Error::Missing { .. }), "{missing}");
    assert!(missing.to_string().contains("nope"), "{missing}");
    let unchanged = store.memories(&acme, "workflow:w", 0).await.unwrap();
    assert_eq!(unchanged[0].model, "local/all-MiniLM-L6-v2");
    assert_eq!(unchanged[0].vector, [0.5, -0.25, 1.0]);
    store
        .set_vectors(&acme, "workflow:w", vec![redo("m1", 1.0), redo("m2", 2.0)])
        .await
        .unwrap();
    let redone = store.memories(&acme, "workflow:w", 0).await.unwrap();
    assert_eq!(
        redone
            .iter()
            .map(|m| (m.seq, m.model.as_str(), m.vector.clone(), m.text.as_str()))
            .collect::<Vec<_>>(),
        [
            (
                a.seq,
                "openai/text-embedding-3-small",
                vec![1.0, 0.0],
                "text of m1"
            ),
            (
                b.seq,
                "openai/text-embedding-3-small",
                vec![2.0, 0.0],
                "text of m2"
            ),
        ]
    );
    // The other tenant's m1 is not touched.
    let theirs = store.memories(&other, "workflow:w", 0).await.unwrap();
    assert_eq!(theirs[0].model, "local/all-MiniLM-L6-v2");
}

async fn kv_conformance(store: &dyn TeamMemory) {
    let acme: TenantId = "acme".parse().unwrap();
    assert!(store.kv_get(&acme, "w", "plan").await.unwrap().is_none());
    let v1 = store
        .kv_write(write("acme", "plan", set(json!("a"), Some(0)), Some("c1")))
        .await
        .unwrap();
    assert_eq!((v1.version, v1.op.as_str()), (1, "set"));
    let stale = store
        .kv_write(write("acme", "plan", set(json!("b"), Some(0)), Some("c2")))
        .await
        .unwrap_err();
    assert!(
        matches!(
            stale,
            Error::VersionMismatch {
                expected: 0,
                current: 1,
                ..
            }
        ),
        "{stale}"
    );
    // A retried call gets its first result back, not a second write.
    let retried = store
        .kv_write(write(
            "acme",
            "plan",
            set(json!("zzz"), Some(0)),
            Some("c1"),
        ))
        .await
        .unwrap();
    assert_eq!(retried, v1);
    store
        .kv_write(write("acme", "plan", set(json!("b"), Some(1)), None))
        .await
        .unwrap();
    store
        .kv_write(write(
            "acme",
            "notes",
            KvOp::Append { value: json!(1) },
            None,
        ))
        .await
        .unwrap();
    let notes = store
        .kv_write(write(
            "acme",
            "notes",
            KvOp::Append { value: json!(2) },
            None,
        ))
        .await
        .unwrap();
    assert_eq!((notes.value, notes.version), (json!([1, 2]), 2));
    let bad = store
        .kv_write(write(
            "acme",
            "plan",
            KvOp::Append { value: json!(1) },
            None,
        ))
        .await
        .unwrap_err();
    assert!(matches!(bad, Error::Invalid(_)), "{bad}");

    let got = store.kv_get(&acme, "w", "plan").await.unwrap().unwrap();
    assert_eq!((got.value, got.version), (json!("b"), 2));
    assert_eq!(
        (
            got.written_by.as_deref(),
            got.run_id.as_deref(),
            got.step.as_deref()
        ),
        (Some("coder"), Some("r1"), Some("s1"))
    );
    let keys: Vec<String> = store
        .kv_list(&acme, "w", "")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.key)
        .collect();
    assert_eq!(keys, ["notes", "plan"]);
    assert_eq!(store.kv_list(&acme, "w", "pl").await.unwrap().len(), 1);
    let history = store.kv_history(&acme, "w", "plan").await.unwrap();
    let values: Vec<(u64, Value)> = history.into_iter().map(|e| (e.version, e.value)).collect();
    assert_eq!(values, [(1, json!("a")), (2, json!("b"))]);
    let other: TenantId = "other".parse().unwrap();
    assert!(store.kv_get(&other, "w", "plan").await.unwrap().is_none());
    assert!(store.kv_list(&other, "w", "").await.unwrap().is_empty());
}

#[tokio::test]
async fn memory_team_memory_conformance() {
    let store = MemoryStore::new();
    semantic_conformance(&store).await;
    kv_conformance(&store).await;
}

#[tokio::test]
async fn sqlite_team_memory_conformance() {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap();
    semantic_conformance(&store).await;
    kv_conformance(&store).await;
}

/// A database of schema 9 keeps its memories, now recorded as made by the built-in MiniLM.
#[tokio::test]
async fn sqlite_migrates_schema_9_memories_to_the_built_in_model() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("v9.db");
    drop(SqliteStore::open(&path, Durability::Process).unwrap());
    rusqlite::Connection::open(&path)
        .unwrap()
        .execute_batch(
            "ALTER TABLE semantic_memories DROP COLUMN model; PRAGMA user_version=9;
             INSERT INTO semantic_memories (tenant, namespace, id, text, metadata, vector, created_ms)
             VALUES ('acme', 'workflow:w', 'old', 'kept', '{}', x'0000803f', 1);",
        )
        .unwrap();
    let store = SqliteStore::open(&path, Durability::Process).unwrap();
    let acme: TenantId = "acme".parse().unwrap();
    let old = store.memories(&acme, "workflow:w", 0).await.unwrap();
    assert_eq!(
        (
            old[0].text.as_str(),
            old[0].model.as_str(),
            old[0].vector.clone()
        ),
        ("kept", "local/all-MiniLM-L6-v2", vec![1.0])
    );
}

/// Reads `counter`, writes it + 1 expecting the version read; on a mismatch reads again.
async fn increment(store: Arc<dyn TeamMemory>, task: usize) -> u32 {
    let acme: TenantId = "acme".parse().unwrap();
    let mut retries = 0;
    loop {
        let cur = store.kv_get(&acme, "w", "counter").await.unwrap();
        let (n, version) = cur.map_or((0, 0), |e| (e.value.as_u64().unwrap(), e.version));
        let op = set(json!(n + 1), Some(version));
        match store.kv_write(write("acme", "counter", op, None)).await {
            Ok(_) => return retries,
            Err(Error::VersionMismatch { .. }) => retries += 1,
            Err(e) => panic!("task {task}: {e}"),
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_a_thousand_concurrent_cas_increments_end_at_a_thousand() {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn TeamMemory> =
        Arc::new(SqliteStore::open(&dir.path().join("baton.db"), Durability::Process).unwrap());
    let tasks: Vec<_> = (0..1000)
        .map(|i| tokio::spawn(increment(store.clone(), i)))
        .collect();
    let mut retries = 0;
    for t in tasks {
        retries += t.await.unwrap();
    }
    let acme: TenantId = "acme".parse().unwrap();
    let end = store.kv_get(&acme, "w", "counter").await.unwrap().unwrap();
    assert_eq!(
        (end.value, end.version),
        (json!(1000), 1000),
        "after {retries} retries"
    );
    assert_eq!(
        store.kv_history(&acme, "w", "counter").await.unwrap().len(),
        1000
    );
}

#[tokio::test]
async fn postgres_team_memory_conformance() {
    let Some(url) = baton_test_support::postgres::database("postgres_team_memory_conformance")
    else {
        return;
    };
    let store = baton_store::postgres::PostgresStore::open(&url)
        .await
        .unwrap();
    semantic_conformance(&store).await;
    kv_conformance(&store).await;
}

/// Compare-and-set holds across processes: two stores (each its own connections) increment
/// one key 200 times together and end at 200, every version once in the history.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn postgres_concurrent_cas_increments_from_two_processes_end_at_their_count() {
    let Some(url) = baton_test_support::postgres::database("postgres_concurrent_cas") else {
        return;
    };
    let open = || baton_store::postgres::PostgresStore::open(&url);
    let stores: [Arc<dyn TeamMemory>; 2] = [
        Arc::new(open().await.unwrap()),
        Arc::new(open().await.unwrap()),
    ];
    let tasks: Vec<_> = (0..100)
        .map(|i| tokio::spawn(increment(stores[i % 2].clone(), i)))
        .collect();
    for t in tasks {
        t.await.unwrap();
    }
    let acme: TenantId = "acme".parse().unwrap();
    let end = stores[0]
        .kv_get(&acme, "w", "counter")
        .await
        .unwrap()
        .unwrap();
    assert_eq!((end.value, end.version), (json!(100), 100));
    let history = stores[1].kv_history(&acme, "w", "counter").await.unwrap();
    assert_eq!(
        history.iter().map(|e| e.version).collect::<Vec<_>>(),
        (1..=100).collect::<Vec<_>>()
    );
}
