//! [`TeamMemory`] on PostgreSQL: the same tables as SQLite's. A key/value write takes an
//! advisory lock of its key for its transaction, so a compare-and-set reads the current
//! version and writes the next with no other process's write between them.

use async_trait::async_trait;
use baton_types::TenantId;
use tokio_postgres::GenericClient;

use super::{PostgresStore, pg_err};
use crate::team_memory::{
    KvEntry, KvWrite, NewSemanticMemory, NewVector, SemanticMemory, TeamMemory, next_entry,
    vector_bytes, vector_from_bytes,
};
use crate::{Error, Result};

/// Schema 4: semantic memories, workflow-scoped keys and the history of their writes.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE semantic_memories (
    seq BIGSERIAL PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL,
    namespace TEXT COLLATE "C" NOT NULL,
    id TEXT COLLATE "C" NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BYTEA NOT NULL,
    agent TEXT,
    run_id TEXT,
    key TEXT COLLATE "C",
    created_ms BIGINT NOT NULL,
    model TEXT NOT NULL,
    UNIQUE (tenant, namespace, id),
    UNIQUE (tenant, key)
);
CREATE INDEX semantic_memories_by_namespace ON semantic_memories (tenant, namespace, seq);
CREATE TABLE workflow_memory (
    tenant TEXT COLLATE "C" NOT NULL,
    workflow TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    value TEXT NOT NULL,
    version BIGINT NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, workflow, key)
);
CREATE TABLE workflow_memory_history (
    tenant TEXT COLLATE "C" NOT NULL,
    workflow TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    value TEXT NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms BIGINT NOT NULL,
    call_key TEXT COLLATE "C",
    PRIMARY KEY (tenant, workflow, key, version)
);
CREATE UNIQUE INDEX workflow_memory_calls
    ON workflow_memory_history (tenant, workflow, call_key) WHERE call_key IS NOT NULL;
"#;

const MEMORY_COLS: &str =
    "seq, namespace, id, text, metadata, vector, agent, run_id, created_ms, model";
const KV_COLS: &str = "key, value, version, op, written_by, run_id, step, at_ms";

fn parse_memory(r: &tokio_postgres::Row) -> Result<SemanticMemory> {
    let metadata: String = r.try_get(4).map_err(pg_err)?;
    let vector: Vec<u8> = r.try_get(5).map_err(pg_err)?;
    let id: String = r.try_get(2).map_err(pg_err)?;
    Ok(SemanticMemory {
        seq: r.try_get(0).map_err(pg_err)?,
        namespace: r.try_get(1).map_err(pg_err)?,
        text: r.try_get(3).map_err(pg_err)?,
        metadata: serde_json::from_str(&metadata)
            .map_err(|e| Error::Corrupt(format!("memory {id}: {e}")))?,
        vector: vector_from_bytes(&vector)?,
        agent: r.try_get(6).map_err(pg_err)?,
        run_id: r.try_get(7).map_err(pg_err)?,
        created_ms: r.try_get(8).map_err(pg_err)?,
        model: r.try_get(9).map_err(pg_err)?,
        id,
    })
}

fn parse_kv(r: &tokio_postgres::Row) -> Result<KvEntry> {
    let key: String = r.try_get(0).map_err(pg_err)?;
    let value: String = r.try_get(1).map_err(pg_err)?;
    let version: i64 = r.try_get(2).map_err(pg_err)?;
    Ok(KvEntry {
        value: serde_json::from_str(&value)
            .map_err(|e| Error::Corrupt(format!("memory key {key}: {e}")))?,
        key,
        version: u64::try_from(version).unwrap_or(0),
        op: r.try_get(3).map_err(pg_err)?,
        written_by: r.try_get(4).map_err(pg_err)?,
        run_id: r.try_get(5).map_err(pg_err)?,
        step: r.try_get(6).map_err(pg_err)?,
        at_ms: r.try_get(7).map_err(pg_err)?,
    })
}

async fn memory_by_key(
    c: &impl GenericClient,
    tenant: &TenantId,
    key: &str,
) -> Result<Option<SemanticMemory>> {
    c.query_opt(
        &format!("SELECT {MEMORY_COLS} FROM semantic_memories WHERE tenant = $1 AND key = $2"),
        &[&tenant.as_str(), &key],
    )
    .await
    .map_err(pg_err)?
    .as_ref()
    .map(parse_memory)
    .transpose()
}

async fn kv_current(
    c: &impl GenericClient,
    tenant: &TenantId,
    workflow: &str,
    key: &str,
) -> Result<Option<KvEntry>> {
    c.query_opt(
        &format!(
            "SELECT {KV_COLS} FROM workflow_memory WHERE tenant = $1 AND workflow = $2 AND key = $3"
        ),
        &[&tenant.as_str(), &workflow, &key],
    )
    .await
    .map_err(pg_err)?
    .as_ref()
    .map(parse_kv)
    .transpose()
}

fn version_i64(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

#[async_trait]
impl TeamMemory for PostgresStore {
    async fn remember(&self, m: NewSemanticMemory) -> Result<SemanticMemory> {
        let c = self.conn().await?;
        if let Some(key) = &m.call_key
            && let Some(done) = memory_by_key(&**c, &m.tenant, key).await?
        {
            return Ok(done);
        }
        let row = c
            .query_opt(
                "INSERT INTO semantic_memories (tenant, namespace, id, text, metadata, vector, agent, run_id, key, created_ms, model)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11) ON CONFLICT DO NOTHING RETURNING seq",
                &[
                    &m.tenant.as_str(),
                    &m.namespace,
                    &m.id,
                    &m.text,
                    &m.metadata.to_string(),
                    &vector_bytes(&m.vector),
                    &m.agent,
                    &m.run_id,
                    &m.call_key,
                    &m.created_ms,
                    &m.model,
                ],
            )
            .await
            .map_err(pg_err)?;
        let Some(row) = row else {
            // Another write of the same call (a retry racing the first) stored it: that one.
            if let Some(key) = &m.call_key
                && let Some(done) = memory_by_key(&**c, &m.tenant, key).await?
            {
                return Ok(done);
            }
            return Err(Error::Exists {
                what: format!("memory {} in {}", m.id, m.namespace),
            });
        };
        Ok(SemanticMemory {
            seq: row.try_get(0).map_err(pg_err)?,
            namespace: m.namespace,
            id: m.id,
            text: m.text,
            metadata: m.metadata,
            vector: m.vector,
            model: m.model,
            agent: m.agent,
            run_id: m.run_id,
            created_ms: m.created_ms,
        })
    }

    async fn memories(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: i64,
    ) -> Result<Vec<SemanticMemory>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {MEMORY_COLS} FROM semantic_memories
                  WHERE tenant = $1 AND namespace = $2 AND seq > $3 ORDER BY seq"
            ),
            &[&tenant.as_str(), &namespace, &after],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_memory)
        .collect()
    }

    async fn set_vectors(
        &self,
        tenant: &TenantId,
        namespace: &str,
        vectors: Vec<NewVector>,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let st = tx
            .prepare(
                "UPDATE semantic_memories SET vector = $1, model = $2
                  WHERE tenant = $3 AND namespace = $4 AND id = $5",
            )
            .await
            .map_err(pg_err)?;
        for v in &vectors {
            let changed = tx
                .execute(
                    &st,
                    &[
                        &vector_bytes(&v.vector),
                        &v.model,
                        &tenant.as_str(),
                        &namespace,
                        &v.id,
                    ],
                )
                .await
                .map_err(pg_err)?;
            if changed == 0 {
                return Err(Error::Missing {
                    what: format!("memory {} in {namespace}", v.id),
                });
            }
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn kv_write(&self, w: KvWrite) -> Result<KvEntry> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtextextended($1 || chr(1) || $2 || chr(1) || $3, 7))",
            &[&w.tenant.as_str(), &w.workflow, &w.key],
        )
        .await
        .map_err(pg_err)?;
        if let Some(call_key) = &w.call_key {
            let done = tx
                .query_opt(
                    &format!(
                        "SELECT {KV_COLS} FROM workflow_memory_history
                          WHERE tenant = $1 AND workflow = $2 AND call_key = $3"
                    ),
                    &[&w.tenant.as_str(), &w.workflow, call_key],
                )
                .await
                .map_err(pg_err)?;
            if let Some(r) = done {
                return parse_kv(&r);
            }
        }
        let current = kv_current(&*tx, &w.tenant, &w.workflow, &w.key).await?;
        let e = next_entry(current.as_ref(), &w)?;
        let value = e.value.to_string();
        let version = version_i64(e.version);
        tx.execute(
            "INSERT INTO workflow_memory (tenant, workflow, key, value, version, op, written_by, run_id, step, at_ms)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)
             ON CONFLICT (tenant, workflow, key) DO UPDATE SET value = excluded.value,
               version = excluded.version, op = excluded.op, written_by = excluded.written_by,
               run_id = excluded.run_id, step = excluded.step, at_ms = excluded.at_ms",
            &[
                &w.tenant.as_str(),
                &w.workflow,
                &e.key,
                &value,
                &version,
                &e.op,
                &e.written_by,
                &e.run_id,
                &e.step,
                &e.at_ms,
            ],
        )
        .await
        .map_err(pg_err)?;
        tx.execute(
            "INSERT INTO workflow_memory_history (tenant, workflow, key, value, version, op, written_by, run_id, step, at_ms, call_key)
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)",
            &[
                &w.tenant.as_str(),
                &w.workflow,
                &e.key,
                &value,
                &version,
                &e.op,
                &e.written_by,
                &e.run_id,
                &e.step,
                &e.at_ms,
                &w.call_key,
            ],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(e)
    }

    async fn kv_get(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Option<KvEntry>> {
        let c = self.conn().await?;
        kv_current(&**c, tenant, workflow, key).await
    }

    async fn kv_list(
        &self,
        tenant: &TenantId,
        workflow: &str,
        prefix: &str,
    ) -> Result<Vec<KvEntry>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {KV_COLS} FROM workflow_memory
                  WHERE tenant = $1 AND workflow = $2 AND starts_with(key, $3) ORDER BY key"
            ),
            &[&tenant.as_str(), &workflow, &prefix],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_kv)
        .collect()
    }

    async fn kv_history(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<KvEntry>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {KV_COLS} FROM workflow_memory_history
                  WHERE tenant = $1 AND workflow = $2 AND key = $3 ORDER BY version"
            ),
            &[&tenant.as_str(), &workflow, &key],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_kv)
        .collect()
    }
}
