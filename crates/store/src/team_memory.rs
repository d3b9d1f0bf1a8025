//! What agents remember beyond one run: semantic memories (text with its embedding, searched by
//! meaning) and the workflow-scoped key/value memory shared by every run of a workflow, with the
//! history of every write. (`memory.rs` is the in-memory *run* store; this is `TeamMemory`.)
//!
//! Writes are idempotent per call key: a tool call retried after a crash carries the same key,
//! and the store answers with what the first call stored instead of writing twice. Key/value
//! writes are compare-and-set: `expect_version` must be the key's current version (0: absent),
//! checked and written in one transaction.

use async_trait::async_trait;
use baton_types::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Error, Result};

/// A semantic memory as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewSemanticMemory {
    pub tenant: TenantId,
    /// Whose memories these are: `workflow:<name>` or `run:<id>`.
    pub namespace: String,
    pub id: String,
    pub text: String,
    pub metadata: Value,
    /// The text's embedding (unit length).
    pub vector: Vec<f32>,
    /// The embedding model that made `vector` (`local/all-MiniLM-L6-v2`, `openai/text-...`):
    /// vectors of different models cannot be compared.
    pub model: String,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    /// The idempotency key of the call that wrote it.
    pub call_key: Option<String>,
    pub created_ms: i64,
}

/// A stored semantic memory; `seq` orders them and lets a cache read only newer ones.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SemanticMemory {
    pub seq: i64,
    pub namespace: String,
    pub id: String,
    pub text: String,
    pub metadata: Value,
    pub vector: Vec<f32>,
    /// The embedding model that made `vector`.
    pub model: String,
    pub agent: Option<String>,
    pub run_id: Option<String>,
    pub created_ms: i64,
}

/// A memory's vector made again by another embedding model ([`TeamMemory::set_vectors`]).
#[derive(Clone, Debug, PartialEq)]
pub struct NewVector {
    /// The memory's id in its namespace.
    pub id: String,
    pub model: String,
    pub vector: Vec<f32>,
}

/// A change to a workflow-scoped key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum KvOp {
    /// Replace the value; with `expect_version`, only if the key is at that version (0: absent).
    Set {
        value: Value,
        expect_version: Option<u64>,
    },
    /// Add `value` to the end of the key's list (a new key starts a list).
    Append { value: Value },
}

impl KvOp {
    pub fn name(&self) -> &'static str {
        match self {
            KvOp::Set { .. } => "set",
            KvOp::Append { .. } => "append",
        }
    }
}

/// A write to a workflow-scoped key, with who made it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct KvWrite {
    pub tenant: TenantId,
    pub workflow: String,
    pub key: String,
    pub op: KvOp,
    pub writer: Option<String>,
    pub run_id: Option<String>,
    pub step: Option<String>,
    /// The idempotency key of the call: a second write with it returns the first's result.
    pub call_key: Option<String>,
    pub at_ms: i64,
}

/// A workflow-scoped key's current value (or, in a history, the value one write left).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct KvEntry {
    pub key: String,
    pub value: Value,
    /// 1 for the first write, +1 for each write after.
    pub version: u64,
    /// `set` or `append`.
    pub op: String,
    /// The agent (or `local`) that wrote it.
    pub written_by: Option<String>,
    pub run_id: Option<String>,
    pub step: Option<String>,
    pub at_ms: i64,
}

/// Semantic memories and workflow-scoped key/value memory, per tenant.
#[async_trait]
pub trait TeamMemory: Send + Sync {
    /// Stores a memory; when `call_key` already wrote one, returns that one unchanged.
    async fn remember(&self, m: NewSemanticMemory) -> Result<SemanticMemory>;
    /// The namespace's memories with `seq > after`, oldest first.
    async fn memories(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: i64,
    ) -> Result<Vec<SemanticMemory>>;
    /// Replaces the vectors (and their model) of memories of `namespace`, all in one
    /// transaction; texts, ids and order stay. An id the namespace does not hold is
    /// [`Error::Missing`] and changes nothing.
    async fn set_vectors(
        &self,
        tenant: &TenantId,
        namespace: &str,
        vectors: Vec<NewVector>,
    ) -> Result<()>;
    /// Applies a write in one transaction: [`Error::VersionMismatch`] when `expect_version`
    /// is not the current version; the stored result of the first write with the same
    /// `call_key`, without writing again.
    async fn kv_write(&self, w: KvWrite) -> Result<KvEntry>;
    async fn kv_get(&self, tenant: &TenantId, workflow: &str, key: &str)
    -> Result<Option<KvEntry>>;
    /// The workflow's keys starting with `prefix`, by key.
    async fn kv_list(
        &self,
        tenant: &TenantId,
        workflow: &str,
        prefix: &str,
    ) -> Result<Vec<KvEntry>>;
    /// Every write to `key`, oldest first.
    async fn kv_history(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<KvEntry>>;
}

/// The entry `w` leaves when the key holds `current`, or why it cannot be written.
pub(crate) fn next_entry(current: Option<&KvEntry>, w: &KvWrite) -> Result<KvEntry> {
    let version = current.map_or(0, |c| c.version);
    let value = match &w.op {
        KvOp::Set {
            value,
            expect_version,
        } => {
            if let Some(expected) = *expect_version
                && expected != version
            {
                return Err(Error::VersionMismatch {
                    key: w.key.clone(),
                    expected,
                    current: version,
                });
            }
            value.clone()
        }
        KvOp::Append { value } => match current.map(|c| &c.value) {
            None | Some(Value::Null) => Value::Array(vec![value.clone()]),
            Some(Value::Array(items)) => {
                let mut items = items.clone();
                items.push(value.clone());
                Value::Array(items)
            }
            Some(_) => {
                return Err(Error::Invalid(format!(
                    "memory key '{}' does not hold a list, so it cannot be appended to (set it instead)",
                    w.key
                )));
            }
        },
    };
    Ok(KvEntry {
        key: w.key.clone(),
        value,
        version: version + 1,
        op: w.op.name().into(),
        written_by: w.writer.clone(),
        run_id: w.run_id.clone(),
        step: w.step.clone(),
        at_ms: w.at_ms,
    })
}

/// A vector as stored: f32 little-endian.
pub(crate) fn vector_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

pub(crate) fn vector_from_bytes(b: &[u8]) -> Result<Vec<f32>> {
    if !b.len().is_multiple_of(4) {
        return Err(Error::Corrupt(format!(
            "a memory's vector has {} bytes, not a multiple of 4",
            b.len()
        )));
    }
    Ok(b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn write(op: KvOp) -> KvWrite {
        KvWrite {
            tenant: TenantId::default(),
            workflow: "w".into(),
            key: "k".into(),
            op,
            writer: None,
            run_id: None,
            step: None,
            call_key: None,
            at_ms: 1,
        }
    }

    #[test]
    fn cas_checks_the_current_version() {
        let set = |v| {
            write(KvOp::Set {
                value: json!(1),
                expect_version: v,
            })
        };
        let first = next_entry(None, &set(Some(0))).unwrap();
        assert_eq!(first.version, 1);
        let err = next_entry(Some(&first), &set(Some(0))).unwrap_err();
        assert_eq!(
            err.to_string(),
            "memory key 'k' is at version 1, not the expected version 0"
        );
        assert_eq!(next_entry(Some(&first), &set(None)).unwrap().version, 2);
    }

    #[test]
    fn append_builds_a_list_and_refuses_a_scalar() {
        let app = write(KvOp::Append { value: json!("a") });
        let one = next_entry(None, &app).unwrap();
        assert_eq!(one.value, json!(["a"]));
        assert_eq!(
            next_entry(Some(&one), &app).unwrap().value,
            json!(["a", "a"])
        );
        let scalar = KvEntry {
            value: json!(3),
            ..one
        };
        assert!(matches!(
            next_entry(Some(&scalar), &app),
            Err(Error::Invalid(_))
        ));
    }

    #[test]
    fn vectors_round_trip_as_little_endian_bytes() {
        let v = vec![1.5f32, -0.25, 0.0];
        let b = vector_bytes(&v);
        assert_eq!(&b[..4], &1.5f32.to_le_bytes());
        assert_eq!(vector_from_bytes(&b).unwrap(), v);
        assert!(vector_from_bytes(&b[..5]).is_err());
    }
}
