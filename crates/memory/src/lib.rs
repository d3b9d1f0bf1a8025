//! Team memory: what agents keep beyond one step.
//!
//! - **Semantic memory** (`memory.remember`, `memory.recall`): texts stored with their MiniLM
//!   embedding ([`baton_embed`]) in the store ([`baton_store::TeamMemory`]) and found again by
//!   meaning. [`Memory`] keeps one [`baton_embed::VectorIndex`] per tenant and namespace in the
//!   process, brought up to date from the store before each search (only rows newer than the
//!   last one it read), so a recall costs one query embedding and one pass over the vectors.
//!   Each memory records its embedding model ([`Embeddings::name`]); a namespace holding
//!   memories of another model than the process's is not searched half-blind: recall fails
//!   with [`Error::OtherModel`] until [`Memory::reembed`] has embedded them again.
//! - **Workflow memory** (`memory.workflow.*`): JSON values by key shared by every run of a
//!   workflow, versioned, compare-and-set, with a history of every write.
//!
//! The tools ([`tools::register`]) take the run's tenant from its record in the run store and
//! the workflow and agent from the call's [`baton_tools::ToolContext`]; writes carry the call's
//! idempotency key, so a resumed call stores nothing twice.

mod embedding;
pub mod tools;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use baton_embed::VectorIndex;
use baton_store::{NewSemanticMemory, NewVector, SemanticMemory, TeamMemory};
use baton_types::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

pub use embedding::{Embed, EmbedRemote, Embeddings, LOCAL_MODEL};

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
    /// The namespace holds memories embedded by another model than this process's.
    #[error("{0}")]
    OtherModel(String),
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

/// One namespace's vectors of the process's model, as read from the store up to `last_seq`,
/// and how many memories other models embedded.
#[derive(Default)]
struct Cached {
    index: Option<VectorIndex<usize>>,
    items: Vec<Item>,
    last_seq: i64,
    others: BTreeMap<String, usize>,
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

    /// The embedding model new memories and queries go through.
    pub fn embeddings(&self) -> &Embeddings {
        &self.embeddings
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
                model: self.embeddings.name().to_string(),
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

    /// [`Memory::recall`] with the query's vector (of the process's model) already computed.
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
        self.catch_up(tenant, namespace, cached).await?;
        if !cached.others.is_empty() {
            // Another process may have embedded them again since this one read them: read
            // the namespace afresh once before refusing.
            *cached = Cached::default();
            self.catch_up(tenant, namespace, cached).await?;
        }
        if !cached.others.is_empty() {
            return Err(Error::OtherModel(other_model_message(
                namespace,
                &cached.others,
                self.embeddings.name(),
            )));
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

    /// Embeds again, with the process's model, every memory of `namespace` another model
    /// embedded, in batches of 64 (each stored in one transaction, so an interrupted run keeps
    /// what it finished and a second run does the rest). Returns how many it embedded.
    pub async fn reembed(&self, tenant: &TenantId, namespace: &str) -> Result<usize, Error> {
        let model = self.embeddings.name().to_string();
        let stale: Vec<SemanticMemory> = self
            .store
            .memories(tenant, namespace, 0)
            .await?
            .into_iter()
            .filter(|m| m.model != model)
            .collect();
        for batch in stale.chunks(64) {
            let vectors = self
                .embeddings
                .embed(batch.iter().map(|m| m.text.clone()).collect())
                .await?;
            let updates = batch
                .iter()
                .zip(vectors)
                .map(|(m, vector)| NewVector {
                    id: m.id.clone(),
                    model: model.clone(),
                    vector,
                })
                .collect();
            self.store.set_vectors(tenant, namespace, updates).await?;
        }
        // This process's index of the namespace is read again at the next search.
        *self.slot(tenant, namespace).lock().await = Cached::default();
        Ok(stale.len())
    }

    /// Adds the namespace's memories newer than `cached.last_seq` to the index (those of the
    /// process's model) or to the count of other models' memories.
    async fn catch_up(
        &self,
        tenant: &TenantId,
        namespace: &str,
        cached: &mut Cached,
    ) -> Result<(), Error> {
        let model = self.embeddings.name();
        for m in self
            .store
            .memories(tenant, namespace, cached.last_seq)
            .await?
        {
            cached.last_seq = m.seq;
            if m.model != model {
                *cached.others.entry(m.model).or_default() += 1;
                continue;
            }
            let index = cached
                .index
                .get_or_insert_with(|| VectorIndex::new(m.vector.len()));
            let n = cached.items.len();
            index
                .add(n, &m.vector)
                .map_err(|e| Error::Invalid(format!("memory {} cannot be searched: {e}", m.id)))?;
            cached.items.push(Item {
                id: m.id,
                text: m.text,
                metadata: m.metadata,
                agent: m.agent,
            });
        }
        Ok(())
    }

    fn slot(&self, tenant: &TenantId, namespace: &str) -> Slot {
        let mut map = self.indexes.lock().unwrap_or_else(|p| p.into_inner());
        map.entry((tenant.clone(), namespace.to_string()))
            .or_default()
            .clone()
    }
}

/// What a recall over memories of other models says: who embedded them, and the two ways out.
fn other_model_message(namespace: &str, others: &BTreeMap<String, usize>, model: &str) -> String {
    let held = others
        .iter()
        .map(|(m, n)| format!("{n} by {m}"))
        .collect::<Vec<_>>()
        .join(", ");
    let command = match namespace.split_once(':') {
        Some(("run", id)) => format!("baton memory reembed --run {id}"),
        Some(("workflow", name)) => format!("baton memory reembed {name}"),
        _ => format!("baton memory reembed ({namespace})"),
    };
    format!(
        "{namespace} holds memories embedded by another model ({held}); this process embeds with {model} (`[memory] embeddings` in baton.toml), and vectors of two models cannot be compared: run `{command}` to embed them again with {model}, or set `embeddings` back"
    )
}
