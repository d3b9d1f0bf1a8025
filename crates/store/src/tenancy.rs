//! What the platform keeps beside the run log, all of it owned by a tenant: the tenants
//! themselves, API keys (only their hashes), the audit log (a hash chain per tenant) and
//! stored workflows with their immutable versions.
//!
//! Every method of [`TenantStore`] that reads or writes a tenant's objects takes the tenant:
//! another tenant's object is simply not there. The one exception is
//! [`TenantStore::key_for_auth`]: a presented key names its id, and the stored record names
//! its tenant.

use async_trait::async_trait;
use baton_types::{Role, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::Result;
use crate::agents::AgentRegistry;

/// A tenant.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct TenantRecord {
    pub id: TenantId,
    /// A display name (defaults to the id).
    pub name: String,
    pub created_at_ms: i64,
}

/// A stored API key: never the key itself, only its SHA-256.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct ApiKeyRecord {
    /// The key's visible id (the part between `bk_` and the secret).
    pub id: String,
    pub tenant: TenantId,
    pub role: Role,
    pub name: Option<String>,
    /// SHA-256 of the whole key, lowercase hex.
    pub hash: String,
    pub created_at_ms: i64,
    /// Who created it (a key id, or `local`).
    pub created_by: Option<String>,
    pub expires_at_ms: Option<i64>,
    pub revoked_at_ms: Option<i64>,
}

/// An audit entry as appended: the store gives it its `seq` and hashes.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewAuditEntry {
    pub tenant: TenantId,
    pub at_ms: i64,
    /// The key that acted (`local` for the CLI; `None` when no key was recognised).
    pub key_id: Option<String>,
    /// What was done, e.g. `run.start`, `key.create`, `auth.failed`.
    pub action: String,
    /// What it was done to, e.g. `run/0190…`, `workflow/hello@2`, `key/3fa9c2d1e0b4`.
    pub object: Option<String>,
    pub request_id: Option<String>,
    /// Where the request came from (an address, or `cli`).
    pub source: Option<String>,
    /// `ok`, `denied` or `failed`.
    pub outcome: String,
    /// More about it (never a secret).
    #[serde(default)]
    pub details: Value,
}

/// An audit entry in its tenant's chain.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct AuditEntry {
    /// 1, 2, ... within the tenant.
    pub seq: u64,
    #[serde(flatten)]
    pub entry: NewAuditEntry,
    /// The previous entry's hash (64 zeros for the first).
    pub prev_hash: String,
    /// SHA-256 over `prev_hash` and this entry (see [`audit_hash`]).
    pub hash: String,
}

/// The hash before a chain's first entry.
pub const GENESIS_HASH: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// The hash of entry `seq` of a chain: SHA-256 (lowercase hex) of the JSON array
/// `[prev_hash, seq, tenant, at_ms, key_id, action, object, request_id, source, outcome,
/// details]`. An array, so no field can be shifted into its neighbour.
pub fn audit_hash(prev_hash: &str, seq: u64, e: &NewAuditEntry) -> String {
    let body = serde_json::json!([
        prev_hash,
        seq,
        e.tenant,
        e.at_ms,
        e.key_id,
        e.action,
        e.object,
        e.request_id,
        e.source,
        e.outcome,
        e.details
    ]);
    hex(&Sha256::digest(body.to_string().as_bytes()))
}

/// Lowercase hex of bytes.
pub fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Filters of [`TenantStore::audit`]: oldest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    /// Only entries after this seq (a cursor).
    pub after: Option<u64>,
    pub limit: Option<u32>,
    pub action: Option<String>,
    pub key_id: Option<String>,
    pub since_ms: Option<i64>,
}

impl AuditQuery {
    pub fn matches(&self, e: &AuditEntry) -> bool {
        self.after.is_none_or(|a| e.seq > a)
            && self.action.as_ref().is_none_or(|a| &e.entry.action == a)
            && self
                .key_id
                .as_ref()
                .is_none_or(|k| e.entry.key_id.as_ref() == Some(k))
            && self.since_ms.is_none_or(|t| e.entry.at_ms >= t)
    }
}

/// How a workflow document was written.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum WorkflowFormat {
    Yaml,
    Json,
}

impl WorkflowFormat {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Yaml => "yaml",
            Self::Json => "json",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "yaml" => Some(Self::Yaml),
            "json" => Some(Self::Json),
            _ => None,
        }
    }
}

/// A version of a stored workflow, as written.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct NewWorkflowVersion {
    pub tenant: TenantId,
    pub name: String,
    pub source: String,
    pub format: WorkflowFormat,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
}

/// Whether a write makes a new workflow or a new version of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum WorkflowWrite {
    /// Version 1 of a new name ([`crate::Error::Exists`] when the name is live). A name
    /// deleted before is taken again: its versions go on from the last.
    Create,
    /// The next version of a live workflow ([`crate::Error::Missing`] otherwise).
    Update,
}

/// One immutable version of a stored workflow.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowRecord {
    pub tenant: TenantId,
    pub name: String,
    pub version: u32,
    pub source: String,
    pub format: WorkflowFormat,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// The workflow's newest version.
    pub latest: u32,
}

/// A stored workflow in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct WorkflowSummary {
    pub name: String,
    pub latest: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Tenants, keys, audit, stored workflows and (through [`AgentRegistry`]) the agent registry.
#[async_trait]
pub trait TenantStore: AgentRegistry + Send + Sync {
    /// [`crate::Error::Exists`] when the id is taken.
    async fn create_tenant(&self, t: TenantRecord) -> Result<()>;
    async fn tenants(&self) -> Result<Vec<TenantRecord>>;
    async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>>;

    /// [`crate::Error::Missing`] when the key's tenant does not exist, `Exists` when the id is
    /// taken.
    async fn create_key(&self, key: ApiKeyRecord) -> Result<()>;
    /// The keys of `tenant`, oldest first (revoked ones too).
    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>>;
    async fn key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// The key with this id in any tenant: only for authenticating a presented key.
    async fn key_for_auth(&self, id: &str) -> Result<Option<ApiKeyRecord>>;
    /// Marks a key revoked (`Missing` when `tenant` has no such key; revoking twice keeps the
    /// first time).
    async fn revoke_key(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()>;

    /// Appends to the tenant's chain (seq and hashes computed in the same transaction).
    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry>;
    /// The tenant's entries, oldest first.
    async fn audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEntry>>;

    async fn put_workflow(
        &self,
        w: NewWorkflowVersion,
        write: WorkflowWrite,
    ) -> Result<WorkflowRecord>;
    /// The tenant's live (not deleted) workflows, by name.
    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>>;
    /// A version (`None`: the latest) of a live workflow.
    async fn workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>>;
    /// Soft delete: the name disappears from listings and lookups; versions are kept (runs
    /// keep their own copy of the document anyway). `Missing` when not live.
    async fn delete_workflow(&self, tenant: &TenantId, name: &str, at_ms: i64) -> Result<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hash_covers_every_field_and_the_previous_hash() {
        let e = NewAuditEntry {
            tenant: TenantId::default(),
            at_ms: 1,
            key_id: Some("k".into()),
            action: "run.start".into(),
            object: Some("run/1".into()),
            request_id: None,
            source: Some("cli".into()),
            outcome: "ok".into(),
            details: Value::Null,
        };
        let h = audit_hash(GENESIS_HASH, 1, &e);
        assert_eq!(h.len(), 64);
        assert_ne!(h, audit_hash(&h, 1, &e));
        assert_ne!(h, audit_hash(GENESIS_HASH, 2, &e));
        let mut other = e.clone();
        other.outcome = "denied".into();
        assert_ne!(h, audit_hash(GENESIS_HASH, 1, &other));
    }
}
