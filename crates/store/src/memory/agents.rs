//! [`AgentRegistry`] in memory, with the semantics of the SQLite one.

use std::collections::BTreeMap;

use async_trait::async_trait;
use baton_types::TenantId;

use super::MemoryStore;
use crate::agents::{AgentRecord, AgentRegistry, AgentSummary, NewAgentVersion};
use crate::{Error, Result};

/// An agent: its versions, oldest first, and the default one.
struct Agent {
    versions: Vec<AgentRecord>,
    default_version: u32,
    created_at_ms: i64,
    updated_at_ms: i64,
}

impl Agent {
    /// Version `v` (`None`: the default), with the agent's current latest and default.
    fn version(&self, v: Option<u32>) -> Option<AgentRecord> {
        let v = v.unwrap_or(self.default_version);
        let rec = self
            .versions
            .get(usize::try_from(v).ok()?.checked_sub(1)?)?;
        Some(AgentRecord {
            latest: self.versions.len().try_into().unwrap_or(u32::MAX),
            default_version: self.default_version,
            ..rec.clone()
        })
    }
}

#[derive(Default)]
pub(super) struct Agents(BTreeMap<(TenantId, String), Agent>);

impl MemoryStore {
    fn agents_lock(&self) -> std::sync::MutexGuard<'_, Agents> {
        self.agents.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl AgentRegistry for MemoryStore {
    async fn put_agent(&self, a: NewAgentVersion) -> Result<AgentRecord> {
        let mut all = self.agents_lock();
        let agent = all
            .0
            .entry((a.tenant.clone(), a.name.clone()))
            .or_insert_with(|| Agent {
                versions: Vec::new(),
                default_version: 0,
                created_at_ms: a.created_at_ms,
                updated_at_ms: a.created_at_ms,
            });
        let version = u32::try_from(agent.versions.len() + 1).unwrap_or(u32::MAX);
        agent.versions.push(AgentRecord {
            tenant: a.tenant,
            name: a.name,
            version,
            spec: a.spec,
            source: a.source,
            format: a.format,
            created_at_ms: a.created_at_ms,
            created_by: a.created_by,
            latest: version,
            default_version: version,
        });
        agent.default_version = version;
        agent.updated_at_ms = a.created_at_ms;
        agent
            .version(Some(version))
            .ok_or_else(|| Error::Db("a stored agent version cannot be read back".into()))
    }

    async fn seed_agent(&self, a: NewAgentVersion) -> Result<Option<AgentRecord>> {
        // Held across the check and the write, so that no other writer comes between.
        let mut all = self.agents_lock();
        let key = (a.tenant.clone(), a.name.clone());
        if all.0.contains_key(&key) {
            return Ok(None);
        }
        let rec = AgentRecord {
            tenant: a.tenant,
            name: a.name,
            version: 1,
            spec: a.spec,
            source: a.source,
            format: a.format,
            created_at_ms: a.created_at_ms,
            created_by: a.created_by,
            latest: 1,
            default_version: 1,
        };
        all.0.insert(
            key,
            Agent {
                versions: vec![rec.clone()],
                default_version: 1,
                created_at_ms: a.created_at_ms,
                updated_at_ms: a.created_at_ms,
            },
        );
        Ok(Some(rec))
    }

    async fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentSummary>> {
        Ok(self
            .agents_lock()
            .0
            .iter()
            .filter(|((t, _), _)| t == tenant)
            .map(|((_, name), a)| AgentSummary {
                name: name.clone(),
                latest: a.versions.len().try_into().unwrap_or(u32::MAX),
                default_version: a.default_version,
                created_at_ms: a.created_at_ms,
                updated_at_ms: a.updated_at_ms,
            })
            .collect())
    }

    async fn agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentRecord>> {
        Ok(self
            .agents_lock()
            .0
            .get(&(tenant.clone(), name.to_string()))
            .and_then(|a| a.version(version)))
    }

    async fn agent_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<AgentRecord>> {
        let all = self.agents_lock();
        let Some(a) = all.0.get(&(tenant.clone(), name.to_string())) else {
            return Ok(Vec::new());
        };
        Ok((1..=a.versions.len())
            .filter_map(|v| a.version(u32::try_from(v).ok()))
            .collect())
    }

    async fn set_default_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
        at_ms: i64,
    ) -> Result<AgentRecord> {
        let mut all = self.agents_lock();
        let missing = || Error::Missing {
            what: format!("version {version} of agent {name}"),
        };
        let a = all
            .0
            .get_mut(&(tenant.clone(), name.to_string()))
            .ok_or_else(missing)?;
        a.version(Some(version)).ok_or_else(missing)?;
        a.default_version = version;
        a.updated_at_ms = at_ms;
        a.version(Some(version)).ok_or_else(missing)
    }
}
