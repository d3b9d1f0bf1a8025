//! The agent registry: agent templates stored by name per tenant, each `create` an immutable
//! new version, with a default version that `rollback` moves (a new version becomes the
//! default). Workflows refer to an agent by name (the default version) or `name@3`.
//!
//! Like [`crate::TenantStore`], every method takes the tenant: another tenant's agent is
//! simply not there.

use async_trait::async_trait;
use baton_types::TenantId;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Result;
use crate::tenancy::WorkflowFormat;

/// A version of an agent, as written.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct NewAgentVersion {
    pub tenant: TenantId,
    pub name: String,
    /// The template as the engine reads it (an `AgentSpec` as JSON).
    pub spec: Value,
    /// The file as written (YAML or JSON), for `show`, `diff` and `export`.
    pub source: String,
    pub format: WorkflowFormat,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
}

/// One immutable version of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct AgentRecord {
    pub tenant: TenantId,
    pub name: String,
    pub version: u32,
    pub spec: Value,
    pub source: String,
    pub format: WorkflowFormat,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// The agent's newest version.
    pub latest: u32,
    /// The version a reference without `@N` resolves to.
    pub default_version: u32,
}

/// An agent in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AgentSummary {
    pub name: String,
    pub latest: u32,
    pub default_version: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// Stored agent templates and their versions.
#[async_trait]
pub trait AgentRegistry: Send + Sync {
    /// Stores the next version of `a.name` (version 1 for a new name) and makes it the
    /// default.
    async fn put_agent(&self, a: NewAgentVersion) -> Result<AgentRecord>;
    /// Stores `a` as version 1 when the tenant has no agent of its name (atomically: of two
    /// processes seeding at once, one stores it); `None` when the name was taken.
    async fn seed_agent(&self, a: NewAgentVersion) -> Result<Option<AgentRecord>>;
    /// The tenant's agents, by name.
    async fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentSummary>>;
    /// A version of an agent (`None`: its default version).
    async fn agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentRecord>>;
    /// Every version of an agent, oldest first (empty: no such agent).
    async fn agent_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<AgentRecord>>;
    /// Makes `version` the default ([`crate::Error::Missing`] when the agent has no such
    /// version) and returns it.
    async fn set_default_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
        at_ms: i64,
    ) -> Result<AgentRecord>;
}
