//! Team memory: what agents keep beyond one step.
//!
//! - **Semantic memory** (`memory.remember`, `memory.recall`): texts stored with their MiniLM
//!   embedding ([`baton_embed`]) in the store ([`baton_store::TeamMemory`]) and found again by
//!   meaning. [`Memory`] keeps one [`baton_embed::VectorIndex`] per tenant and namespace in the
//!   process, brought up to date from the store before each search (only rows newer than the
//!   last one it read), so a recall costs one query embedding and one pass over the vectors.
//! - **Workflow memory** (`memory.workflow.*`): JSON values by key shared by every run of a
//!   workflow, versioned, compare-and-set, with a history of every write.
//!
//! The tools ([`tools::register`]) take the run's tenant from its record in the run store and
//! the workflow and agent from the call's [`baton_tools::ToolContext`]; writes carry the call's
//! idempotency key, so a resumed call stores nothing twice.

mod embedding;
pub mod tools;

use std::collections::HashMap;
use std::sync::Arc;

use baton_embed::VectorIndex;
use baton_store::{NewSemanticMemory, SemanticMemory, TeamMemory};
use baton_types::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use embedding::{Embed, Embeddings};

/// A team-memory failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    /// The model could not be loaded or run (the message says how to install it).
    #[error("{0}")]
    Embedding(String),
    #[error("{0}")]
    Invalid(String),
}

/// Whose semantic memories: the run's own, or the workflow's (shared by all its runs).
#[derive(
    Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Scope {
    Run,
    #[default]
    Workflow,
}

impl Scope {
    pub fn parse(s: &str) -> Option<Scope> {
        match s {
            "run" => Some(Scope::Run),
            "workflow" => Some(Scope::Workflow),
            _ => None,
        }
    }
}

/// The namespace of a workflow's semantic memories.
pub fn workflow_namespace(workflow: &str) -> String {
    format!("workflow:{workflow}")
}

/// The namespace of a run's own semantic memories.
pub fn run_namespace(run: &str) -> String {
    format!("run:{run}")
}

/// A memory found by [`Memory::recall`].
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct Hit {
    pub id: String,
    pub text: String,
    /// Cosine similarity to the query, from -1 to 1.
    pub score: f32,
    pub metadata: Value,
    pub agent: Option<String>,
}

/// What the index keeps beside each vector.
struct Item {
    id: String,
    text: String,
    metadata: Value,
    agent: Option<String>,
}

/// One namespace's vectors, as read from the store up to `last_seq`.
struct Cached {
    index: Option<VectorIndex<usize>>,
    items: Vec<Item>,
    last_seq: i64,
}

/// What a new memory says and who wrote it.
#[derive(Clone, Debug, Default)]
pub struct NewMemory {
    pub text: String,
    pub metadata: Value,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    pub call_key: Option<String>,
}

type Slot = Arc<tokio::sync::Mutex<Cached>>;

/// Semantic memory over a store and an embedding model.
pub struct Memory {
    store: Arc<dyn TeamMemory>,
    embeddings: Arc<Embeddings>,
    indexes: std::sync::Mutex<HashMap<(TenantId, String), Slot>>,
}

impl Memory {
    pub fn new(store: Arc<dyn TeamMemory>, embeddings: Arc<Embeddings>) -> Self {
        Self {
            store,
            embeddings,
            indexes: std::sync::Mutex::default(),
        }
    }

    pub fn store(&self) -> &Arc<dyn TeamMemory> {
        &self.store
    }

    /// Embeds and stores `m` in `namespace`; a repeated call key returns the first memory.
    pub async fn remember(
        &self,
        tenant: &TenantId,
        namespace: &str,
        m: NewMemory,
    ) -> Result<SemanticMemory, Error> {
        if m.text.trim().is_empty() {
            return Err(Error::Invalid(
                "`text` is empty: there is nothing to remember".into(),
            ));
        }
        let vector = self
            .embeddings
            .embed(vec![m.text.clone()])
            .await?
            .pop()
            .ok_or_else(|| Error::Embedding("the model returned no vector".into()))?;
        let stored = self
            .store
            .remember(NewSemanticMemory {
                tenant: tenant.clone(),
                namespace: namespace.to_string(),
                id: format!("mem_{}", uuid::Uuid::now_v7().simple()),
                text: m.text,
                metadata: m.metadata,
                vector,
                agent: m.agent,
                run_id: m.run_id,
                call_key: m.call_key,
                created_ms: baton_store::now_ms(),
            })
            .await?;
        Ok(stored)
    }

    /// The `k` memories of `namespace` closest in meaning to `query`, best first.
    pub async fn recall(
        &self,
        tenant: &TenantId,
        namespace: &str,
        query: &str,
        k: usize,
    ) -> Result<Vec<Hit>, Error> {
        if query.trim().is_empty() {
            return Err(Error::Invalid(
                "`query` is empty: say what to look for".into(),
            ));
        }
        let q = self
            .embeddings
            .embed(vec![query.to_string()])
            .await?
            .pop()
            .ok_or_else(|| Error::Embedding("the model returned no vector".into()))?;
        self.search(tenant, namespace, &q, k).await
    }

    /// [`Memory::recall`] with the query's vector already computed.
    pub async fn search(
        &self,
        tenant: &TenantId,
        namespace: &str,
        query: &[f32],
        k: usize,
    ) -> Result<Vec<Hit>, Error> {
        let slot = self.slot(tenant, namespace);
        let mut guard = slot.lock().await;
        let cached: &mut Cached = &mut guard;
        for m in self
            .store
            .memories(tenant, namespace, cached.last_seq)
            .await?
        {
            let index = cached
                .index
                .get_or_insert_with(|| VectorIndex::new(m.vector.len()));
            let n = cached.items.len();
            index
                .add(n, &m.vector)
                .map_err(|e| Error::Invalid(format!("memory {} cannot be searched: {e}", m.id)))?;
            cached.last_seq = m.seq;
            cached.items.push(Item {
                id: m.id,
                text: m.text,
                metadata: m.metadata,
                agent: m.agent,
            });
        }
        let Some(index) = &cached.index else {
            return Ok(Vec::new());
        };
        let found = index
            .search(query, k)
            .map_err(|e| Error::Invalid(format!("the query cannot be searched: {e}")))?;
        Ok(found
            .into_iter()
            .map(|(i, score)| {
                let it = &cached.items[i];
                Hit {
                    id: it.id.clone(),
                    text: it.text.clone(),
                    score,
                    metadata: it.metadata.clone(),
                    agent: it.agent.clone(),
                }
            })
            .collect())
    }

    fn slot(&self, tenant: &TenantId, namespace: &str) -> Slot {
        let mut map = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((tenant.clone(), namespace.to_string()))
            .or_insert_with(|| {
                Arc::new(tokio::sync::Mutex::new(Cached {
                    index: None,
                    items: Vec::new(),
                    last_seq: 0,
                }))
            })
            .clone()
    }
}
