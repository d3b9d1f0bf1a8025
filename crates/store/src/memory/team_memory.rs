//! [`TeamMemory`] in memory, with the semantics of the SQLite one: one lock held for a whole
//! write makes each compare-and-set atomic.

use std::collections::{BTreeMap, HashMap};

use async_trait::async_trait;
use baton_types::TenantId;

use super::MemoryStore;
use crate::team_memory::{
    KvEntry, KvWrite, NewSemanticMemory, NewVector, SemanticMemory, TeamMemory, next_entry,
};
use crate::{Error, Result};

type KvKey = (TenantId, String, String);

#[derive(Default)]
pub(super) struct Team {
    memories: Vec<(TenantId, Option<String>, SemanticMemory)>,
    kv: BTreeMap<KvKey, KvEntry>,
    history: HashMap<KvKey, Vec<KvEntry>>,
    /// (tenant, workflow, call key) -> the entry that call left.
    calls: HashMap<(TenantId, String, String), KvEntry>,
}

impl MemoryStore {
    fn team(&self) -> std::sync::MutexGuard<'_, Team> {
        self.team.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[async_trait]
impl TeamMemory for MemoryStore {
    async fn remember(&self, m: NewSemanticMemory) -> Result<SemanticMemory> {
        let mut team = self.team();
        let same_tenant = |t: &TenantId| *t == m.tenant;
        if let Some(key) = &m.call_key
            && let Some((_, _, done)) = team
                .memories
                .iter()
                .find(|(t, k, _)| same_tenant(t) && k.as_ref() == Some(key))
        {
            return Ok(done.clone());
        }
        if team
            .memories
            .iter()
            .any(|(t, _, s)| same_tenant(t) && s.namespace == m.namespace && s.id == m.id)
        {
            return Err(Error::Exists {
                what: format!("memory {} in {}", m.id, m.namespace),
            });
        }
        let stored = SemanticMemory {
            seq: i64::try_from(team.memories.len()).unwrap_or(i64::MAX) + 1,
            namespace: m.namespace,
            id: m.id,
            text: m.text,
            metadata: m.metadata,
            vector: m.vector,
            model: m.model,
            agent: m.agent,
            run_id: m.run_id,
            created_ms: m.created_ms,
        };
        team.memories.push((m.tenant, m.call_key, stored.clone()));
        Ok(stored)
    }

    async fn memories(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: i64,
    ) -> Result<Vec<SemanticMemory>> {
        Ok(self
            .team()
            .memories
            .iter()
            .filter(|(t, _, s)| t == tenant && s.namespace == namespace && s.seq > after)
            .map(|(_, _, s)| s.clone())
            .collect())
    }

    async fn set_vectors(
        &self,
        tenant: &TenantId,
        namespace: &str,
        vectors: Vec<NewVector>,
    ) -> Result<()> {
        let mut team = self.team();
        let position = |team: &Team, id: &str| {
            team.memories
                .iter()
                .position(|(t, _, s)| t == tenant && s.namespace == namespace && s.id == id)
        };
        // All or nothing: every id is checked before anything changes.
        let mut at = Vec::with_capacity(vectors.len());
        for v in &vectors {
            at.push(position(&team, &v.id).ok_or_else(|| Error::Missing {
                what: format!("memory {} in {namespace}", v.id),
            })?);
        }
        for (i, v) in at.into_iter().zip(vectors) {
            let m = &mut team.memories[i].2;
            m.vector = v.vector;
            m.model = v.model;
        }
        Ok(())
    }

    async fn kv_write(&self, w: KvWrite) -> Result<KvEntry> {
        let mut team = self.team();
        let call = w
            .call_key
            .clone()
            .map(|c| (w.tenant.clone(), w.workflow.clone(), c));
        if let Some(done) = call.as_ref().and_then(|c| team.calls.get(c)) {
            return Ok(done.clone());
        }
        let k: KvKey = (w.tenant.clone(), w.workflow.clone(), w.key.clone());
        let e = next_entry(team.kv.get(&k), &w)?;
        team.kv.insert(k.clone(), e.clone());
        team.history.entry(k).or_default().push(e.clone());
        if let Some(c) = call {
            team.calls.insert(c, e.clone());
        }
        Ok(e)
    }

    async fn kv_get(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Option<KvEntry>> {
        let k = (tenant.clone(), workflow.to_string(), key.to_string());
        Ok(self.team().kv.get(&k).cloned())
    }

    async fn kv_list(
        &self,
        tenant: &TenantId,
        workflow: &str,
        prefix: &str,
    ) -> Result<Vec<KvEntry>> {
        Ok(self
            .team()
            .kv
            .iter()
            .filter(|((t, w, k), _)| t == tenant && w == workflow && k.starts_with(prefix))
            .map(|(_, e)| e.clone())
            .collect())
    }

    async fn kv_history(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<KvEntry>> {
        let k = (tenant.clone(), workflow.to_string(), key.to_string());
        Ok(self.team().history.get(&k).cloned().unwrap_or_default())
    }
}
