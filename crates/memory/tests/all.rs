//! The memory tools end to end over the in-memory store: with a small bag-of-words embedder
//! (always), and with the real MiniLM (skipped loudly without it unless
//! BATON_REQUIRE_EMBED_MODEL=1).

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_memory::{Embed, Embeddings, Memory, tools};
use baton_store::memory::MemoryStore;
use baton_store::{NewRun, RunStore};
use baton_tools::{Effects, Registry, ToolContext};
use baton_types::{RunId, TenantId};
use serde_json::{Value, json};

/// Words hashed into 64 buckets: texts that share words are close.
struct Words;

impl Embed for Words {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(texts
            .iter()
            .map(|t| {
                let mut v = vec![0.0f32; 64];
                for w in t.to_lowercase().split(|c: char| !c.is_alphanumeric()) {
                    if !w.is_empty() {
                        let h = w
                            .bytes()
                            .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(b as u32));
                        v[(h % 64) as usize] += 1.0;
                    }
                }
                v
            })
            .collect())
    }
}

struct Fixture {
    registry: Registry,
    store: Arc<MemoryStore>,
}

async fn fixture(embeddings: Embeddings) -> Fixture {
    let store = Arc::new(MemoryStore::new());
    let memory = Arc::new(Memory::new(store.clone(), Arc::new(embeddings)));
    let mut registry = Registry::empty();
    tools::register(&mut registry, memory, store.clone());
    Fixture { registry, store }
}

impl Fixture {
    async fn run(&self, tenant: &str) -> RunId {
        let id = RunId::new();
        self.store
            .create_run(NewRun {
                id,
                workflow_name: "team".into(),
                workflow_source: "version: 1".into(),
                workflow_path: None,
                inputs: json!({}),
                options: json!({}),
                created_at_ms: 1,
                events: Vec::new(),
                tenant: tenant.parse().unwrap(),
                started_by: None,
                idempotency: None,
            })
            .await
            .unwrap();
        id
    }

    async fn call(&self, tool: &str, args: Value, run: RunId, key: &str) -> Result<Value, String> {
        let ctx = ToolContext {
            idempotency_key: key.into(),
            run_id: run.to_string(),
            step: "s1".into(),
            workflow: "team".into(),
            agent: Some("coder".into()),
            ..ToolContext::default()
        };
        let t = self.registry.get(tool).unwrap();
        t.call(args, &ctx).await.map_err(|e| e.to_string())
    }
}

#[tokio::test]
async fn effects_are_declared_for_resume() {
    let f = fixture(Embeddings::given(Arc::new(Words))).await;
    for name in tools::NAMES {
        let effects = f.registry.get(name).unwrap().spec().effects;
        let writes = matches!(
            name,
            "memory.remember" | "memory.workflow.set" | "memory.workflow.append"
        );
        let want = if writes {
            Effects::IdempotentWithKey
        } else {
            Effects::None
        };
        assert_eq!(effects, want, "{name}");
    }
}

#[tokio::test]
async fn remember_then_recall_by_scope_and_tenant() {
    let f = fixture(Embeddings::given(Arc::new(Words))).await;
    let run = f.run("acme").await;
    let a = f
        .call(
            "memory.remember",
            json!({"text": "the deploy key rotates on monday", "metadata": {"src": "ops"}}),
            run,
            "r:s:1/1",
        )
        .await
        .unwrap();
    // The same call key again: the same memory, nothing stored twice.
    let again = f
        .call(
            "memory.remember",
            json!({"text": "the deploy key rotates on monday"}),
            run,
            "r:s:1/1",
        )
        .await
        .unwrap();
    assert_eq!(a, again);
    f.call(
        "memory.remember",
        json!({"text": "our cat is called miso"}),
        run,
        "r:s:1/2",
    )
    .await
    .unwrap();
    f.call(
        "memory.remember",
        json!({"text": "run scratch about the cat", "scope": "run"}),
        run,
        "r:s:1/3",
    )
    .await
    .unwrap();
    let hits = f
        .call(
            "memory.recall",
            json!({"query": "when does the deploy key rotate", "k": 5}),
            run,
            "r:s:1/4",
        )
        .await
        .unwrap();
    let hits = hits.as_array().unwrap();
    assert_eq!(hits.len(), 2, "workflow scope only: {hits:?}");
    assert_eq!(hits[0]["id"], a["id"]);
    assert_eq!(hits[0]["metadata"], json!({"src": "ops"}));
    assert_eq!(hits[0]["agent"], "coder");
    assert!(hits[0]["score"].as_f64().unwrap() > hits[1]["score"].as_f64().unwrap());
    let run_hits = f
        .call(
            "memory.recall",
            json!({"query": "cat", "scope": "run"}),
            run,
            "k",
        )
        .await
        .unwrap();
    assert_eq!(run_hits.as_array().unwrap().len(), 1);
    // Another tenant's run of a workflow with the same name sees nothing.
    let other = f.run("other").await;
    let none = f
        .call("memory.recall", json!({"query": "cat"}), other, "k")
        .await
        .unwrap();
    assert_eq!(none, json!([]));
}

#[tokio::test]
async fn bad_arguments_are_refused_with_the_reason() {
    let f = fixture(Embeddings::given(Arc::new(Words))).await;
    let run = f.run("acme").await;
    let cases = [
        ("memory.remember", json!({}), "`text` is required"),
        (
            "memory.recall",
            json!({"query": "x", "k": 0}),
            "`k` must be an integer from 1 to 100",
        ),
        (
            "memory.recall",
            json!({"query": "x", "scope": "team"}),
            "use run or workflow",
        ),
        (
            "memory.workflow.set",
            json!({"key": "k"}),
            "`value` is required",
        ),
        (
            "memory.workflow.get",
            json!({"key": ""}),
            "`key` is required",
        ),
    ];
    for (tool, args, want) in cases {
        let err = f.call(tool, args.clone(), run, "k").await.unwrap_err();
        assert!(err.contains(want), "{tool} {args}: {err}");
    }
}

#[tokio::test]
async fn workflow_keys_cas_append_list_and_history() {
    let f = fixture(Embeddings::given(Arc::new(Words))).await;
    let run = f.run("acme").await;
    let absent = f
        .call("memory.workflow.get", json!({"key": "plan"}), run, "k")
        .await
        .unwrap();
    assert_eq!(absent, json!({"key": "plan", "value": null, "version": 0}));
    let v1 = f
        .call(
            "memory.workflow.set",
            json!({"key": "plan", "value": {"steps": 3}, "expect_version": 0}),
            run,
            "c1",
        )
        .await
        .unwrap();
    assert_eq!(
        (v1["version"].clone(), v1["written_by"].clone()),
        (json!(1), json!("coder"))
    );
    let stale = f
        .call(
            "memory.workflow.set",
            json!({"key": "plan", "value": 1, "expect_version": 0}),
            run,
            "c2",
        )
        .await
        .unwrap_err();
    assert!(
        stale.contains("is at version 1, not the expected version 0"),
        "{stale}"
    );
    // A resumed call with the first key returns its result instead of failing the CAS.
    let resumed = f
        .call(
            "memory.workflow.set",
            json!({"key": "plan", "value": {"steps": 3}, "expect_version": 0}),
            run,
            "c1",
        )
        .await
        .unwrap();
    assert_eq!(resumed, v1);
    f.call(
        "memory.workflow.append",
        json!({"key": "log", "value": "a"}),
        run,
        "c3",
    )
    .await
    .unwrap();
    let log = f
        .call(
            "memory.workflow.append",
            json!({"key": "log", "value": "b"}),
            run,
            "c4",
        )
        .await
        .unwrap();
    assert_eq!(log["value"], json!(["a", "b"]));
    let listed = f
        .call("memory.workflow.list", json!({"prefix": "l"}), run, "k")
        .await
        .unwrap();
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let history = f
        .call("memory.workflow.history", json!({"key": "log"}), run, "k")
        .await
        .unwrap();
    let ops: Vec<(i64, String)> = history
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            (
                e["version"].as_i64().unwrap(),
                e["step"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(ops, [(1, "s1".to_string()), (2, "s1".to_string())]);
}

#[tokio::test]
async fn a_missing_model_is_a_tool_error_naming_make_model_embed() {
    let dir = std::env::temp_dir().join(format!("baton-no-model-{}", std::process::id()));
    let f = fixture(Embeddings::from_dir(dir)).await;
    let run = f.run("acme").await;
    let err = f
        .call("memory.remember", json!({"text": "x"}), run, "k")
        .await
        .unwrap_err();
    assert!(err.contains("make model-embed"), "{err}");
    // The key/value tools need no model.
    f.call(
        "memory.workflow.set",
        json!({"key": "k", "value": 1}),
        run,
        "c",
    )
    .await
    .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn recall_finds_by_meaning_with_minilm() {
    let Some(dir) = baton_test_support::found_or_skip(
        "BATON_REQUIRE_EMBED_MODEL",
        "recall with the MiniLM model",
        baton_embed::installed_model_dir().map_err(|e| e.to_string()),
    ) else {
        return;
    };
    let f = fixture(Embeddings::from_dir(dir)).await;
    let run = f.run(TenantId::DEFAULT).await;
    for (i, text) in [
        "Invoices are paid within thirty days.",
        "Our office dog is a beagle named Toast.",
        "Production deploys happen on Tuesdays after the standup.",
    ]
    .iter()
    .enumerate()
    {
        f.call(
            "memory.remember",
            json!({"text": text}),
            run,
            &format!("k{i}"),
        )
        .await
        .unwrap();
    }
    let hits = f
        .call(
            "memory.recall",
            json!({"query": "what pet do we have?", "k": 1}),
            run,
            "q",
        )
        .await
        .unwrap();
    assert_eq!(
        hits[0]["text"], "Our office dog is a beagle named Toast.",
        "{hits}"
    );
}

/// Words, but each vector doubled in length: another "model" whose vectors cannot be compared
/// with [`Words`]'.
struct Doubled;

impl Embed for Doubled {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Ok(Words
            .embed(texts)?
            .into_iter()
            .map(|v| v.iter().chain(&v).copied().collect())
            .collect())
    }
}

#[tokio::test]
async fn memories_of_another_model_are_refused_until_embedded_again() {
    use baton_memory::{Error, NewMemory};
    let store = Arc::new(MemoryStore::new());
    let tenant = TenantId::default();
    let ns = baton_memory::workflow_namespace("team");
    let old = Memory::new(store.clone(), Arc::new(Embeddings::given(Arc::new(Words))));
    for text in ["the deploy key rotates on monday", "our cat is called miso"] {
        let m = NewMemory {
            text: text.into(),
            ..NewMemory::default()
        };
        let stored = old.remember(&tenant, &ns, m).await.unwrap();
        assert_eq!(stored.model, baton_memory::LOCAL_MODEL);
    }
    assert_eq!(old.recall(&tenant, &ns, "cat", 1).await.unwrap().len(), 1);

    // The setting changed: a process on another model refuses, naming both and the command.
    let new_model = || Arc::new(Embeddings::given(Arc::new(Doubled)).named("vllm/bge-small"));
    let new = Memory::new(store.clone(), new_model());
    let stale_reader = Memory::new(store.clone(), new_model());
    let refused = new.recall(&tenant, &ns, "cat", 1).await.unwrap_err();
    let Error::OtherModel(message) = &refused else {
        panic!("{refused}");
    };
    for says in [
        "2 by local/all-MiniLM-L6-v2",
        "vllm/bge-small",
        "baton memory reembed team",
    ] {
        assert!(message.contains(says), "{message}");
    }
    assert!(stale_reader.recall(&tenant, &ns, "cat", 1).await.is_err());
    // A new memory is still stored (nothing the agent wrote is lost), under the new model.
    let m = NewMemory {
        text: "the cat likes the deploy key".into(),
        ..NewMemory::default()
    };
    assert_eq!(
        new.remember(&tenant, &ns, m).await.unwrap().model,
        "vllm/bge-small"
    );

    // Embedding the old ones again makes the namespace searchable, with the new vectors;
    // a second pass has nothing left to do.
    assert_eq!(new.reembed(&tenant, &ns).await.unwrap(), 2);
    assert_eq!(new.reembed(&tenant, &ns).await.unwrap(), 0);
    let hits = new.recall(&tenant, &ns, "called miso", 3).await.unwrap();
    assert_eq!(hits.len(), 3);
    assert_eq!(hits[0].text, "our cat is called miso");
    // Another process that had read the old vectors reads the namespace afresh.
    let hits = stale_reader
        .recall(&tenant, &ns, "deploy key", 1)
        .await
        .unwrap();
    assert_eq!(hits[0].text, "the deploy key rotates on monday");
    // And the old model is now the one refused.
    let back = old.recall(&tenant, &ns, "cat", 1).await.unwrap_err();
    assert!(back.to_string().contains("3 by vllm/bge-small"), "{back}");
}
