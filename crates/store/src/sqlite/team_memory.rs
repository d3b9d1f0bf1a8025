//! [`TeamMemory`] on SQLite. Writes go through the writer, each one job (all or nothing), so a
//! compare-and-set reads the current version and writes the next in the same transaction.

use async_trait::async_trait;
use baton_types::TenantId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_err};
use crate::team_memory::{
    KvEntry, KvWrite, NewSemanticMemory, NewVector, SemanticMemory, TeamMemory, next_entry,
    vector_bytes, vector_from_bytes,
};
use crate::{Error, Result};

/// Schema 9: semantic memories, workflow-scoped keys and the history of their writes.
pub(super) const MIGRATION_9: &str = "
CREATE TABLE IF NOT EXISTS semantic_memories (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    tenant TEXT NOT NULL,
    namespace TEXT NOT NULL,
    id TEXT NOT NULL,
    text TEXT NOT NULL,
    metadata TEXT NOT NULL,
    vector BLOB NOT NULL,
    agent TEXT,
    run_id TEXT,
    key TEXT,
    created_ms INTEGER NOT NULL,
    UNIQUE (tenant, namespace, id),
    UNIQUE (tenant, key)
);
CREATE INDEX IF NOT EXISTS semantic_memories_by_namespace
    ON semantic_memories (tenant, namespace, seq);
CREATE TABLE IF NOT EXISTS workflow_memory (
    tenant TEXT NOT NULL,
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    value TEXT NOT NULL,
    version INTEGER NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, workflow, key)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflow_memory_history (
    tenant TEXT NOT NULL,
    workflow TEXT NOT NULL,
    key TEXT NOT NULL,
    version INTEGER NOT NULL,
    value TEXT NOT NULL,
    op TEXT NOT NULL,
    written_by TEXT,
    run_id TEXT,
    step TEXT,
    at_ms INTEGER NOT NULL,
    call_key TEXT,
    PRIMARY KEY (tenant, workflow, key, version)
) WITHOUT ROWID;
CREATE UNIQUE INDEX IF NOT EXISTS workflow_memory_calls
    ON workflow_memory_history (tenant, workflow, call_key) WHERE call_key IS NOT NULL;
";

/// Schema 10: the embedding model of each memory. Every vector written before was made by the
/// built-in MiniLM, the only model there was.
pub(super) const MIGRATION_10: &str = "
ALTER TABLE semantic_memories ADD COLUMN model TEXT NOT NULL DEFAULT 'local/all-MiniLM-L6-v2';
";

const MEMORY_COLS: &str =
    "seq, namespace, id, text, metadata, vector, agent, run_id, created_ms, model";
const KV_COLS: &str = "key, value, version, op, written_by, run_id, step, at_ms";

fn conv(i: usize, e: impl ToString) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.to_string().into())
}

fn parse_memory(r: &rusqlite::Row<'_>) -> rusqlite::Result<SemanticMemory> {
    let metadata: String = r.get(4)?;
    let vector: Vec<u8> = r.get(5)?;
    Ok(SemanticMemory {
        seq: r.get(0)?,
        namespace: r.get(1)?,
        id: r.get(2)?,
        text: r.get(3)?,
        metadata: serde_json::from_str(&metadata).map_err(|e| conv(4, e))?,
        vector: vector_from_bytes(&vector).map_err(|e| conv(5, e))?,
        agent: r.get(6)?,
        run_id: r.get(7)?,
        created_ms: r.get(8)?,
        model: r.get(9)?,
    })
}

fn parse_kv(r: &rusqlite::Row<'_>) -> rusqlite::Result<KvEntry> {
    let value: String = r.get(1)?;
    Ok(KvEntry {
        key: r.get(0)?,
        value: serde_json::from_str(&value).map_err(|e| conv(1, e))?,
        version: r.get(2)?,
        op: r.get(3)?,
        written_by: r.get(4)?,
        run_id: r.get(5)?,
        step: r.get(6)?,
        at_ms: r.get(7)?,
    })
}

fn memory_by_key(c: &Connection, tenant: &TenantId, key: &str) -> Result<Option<SemanticMemory>> {
    c.prepare_cached(&format!(
        "SELECT {MEMORY_COLS} FROM semantic_memories WHERE tenant = ?1 AND key = ?2"
    ))
    .and_then(|mut st| {
        st.query_row(params![tenant.as_str(), key], parse_memory)
            .optional()
    })
    .map_err(db_err)
}

fn kv_current(
    c: &Connection,
    tenant: &TenantId,
    workflow: &str,
    key: &str,
) -> Result<Option<KvEntry>> {
    c.prepare_cached(&format!(
        "SELECT {KV_COLS} FROM workflow_memory WHERE tenant = ?1 AND workflow = ?2 AND key = ?3"
    ))
    .and_then(|mut st| {
        st.query_row(params![tenant.as_str(), workflow, key], parse_kv)
            .optional()
    })
    .map_err(db_err)
}

/// The entry an earlier write with this call key left, if any.
fn kv_by_call(c: &Connection, w: &KvWrite, call_key: &str) -> Result<Option<KvEntry>> {
    c.prepare_cached(&format!(
        "SELECT {KV_COLS} FROM workflow_memory_history
          WHERE tenant = ?1 AND workflow = ?2 AND call_key = ?3"
    ))
    .and_then(|mut st| {
        st.query_row(params![w.tenant.as_str(), w.workflow, call_key], parse_kv)
            .optional()
    })
    .map_err(db_err)
}

fn kv_write_in(c: &Connection, w: &KvWrite) -> Result<KvEntry> {
    if let Some(call_key) = &w.call_key
        && let Some(done) = kv_by_call(c, w, call_key)?
    {
        return Ok(done);
    }
    let current = kv_current(c, &w.tenant, &w.workflow, &w.key)?;
    let e = next_entry(current.as_ref(), w)?;
    let value = e.value.to_string();
    let row = params![
        w.tenant.as_str(),
        w.workflow,
        e.key,
        value,
        e.version,
        e.op,
        e.written_by,
        e.run_id,
        e.step,
        e.at_ms
    ];
    c.prepare_cached(
        "INSERT INTO workflow_memory (tenant, workflow, key, value, version, op, written_by, run_id, step, at_ms)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10)
         ON CONFLICT (tenant, workflow, key) DO UPDATE SET value = excluded.value,
           version = excluded.version, op = excluded.op, written_by = excluded.written_by,
           run_id = excluded.run_id, step = excluded.step, at_ms = excluded.at_ms",
    )
    .and_then(|mut st| st.execute(row))
    .map_err(db_err)?;
    c.prepare_cached(
        "INSERT INTO workflow_memory_history (tenant, workflow, key, value, version, op, written_by, run_id, step, at_ms, call_key)
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)",
    )
    .and_then(|mut st| {
        st.execute(params![
            w.tenant.as_str(),
            w.workflow,
            e.key,
            value,
            e.version,
            e.op,
            e.written_by,
            e.run_id,
            e.step,
            e.at_ms,
            w.call_key
        ])
    })
    .map_err(db_err)?;
    Ok(e)
}

#[async_trait]
impl TeamMemory for SqliteStore {
    async fn remember(&self, m: NewSemanticMemory) -> Result<SemanticMemory> {
        self.call(move |c| {
            if let Some(key) = &m.call_key
                && let Some(done) = memory_by_key(c, &m.tenant, key)?
            {
                return Ok(done);
            }
            let seq = c
                .prepare_cached(
                    "INSERT INTO semantic_memories (tenant, namespace, id, text, metadata, vector, agent, run_id, key, created_ms, model)
                     VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11) RETURNING seq",
                )
                .and_then(|mut st| {
                    st.query_row(
                        params![
                            m.tenant.as_str(),
                            m.namespace,
                            m.id,
                            m.text,
                            m.metadata.to_string(),
                            vector_bytes(&m.vector),
                            m.agent,
                            m.run_id,
                            m.call_key,
                            m.created_ms,
                            m.model
                        ],
                        |r| r.get(0),
                    )
                })
                .map_err(|e| match e {
                    rusqlite::Error::SqliteFailure(f, _)
                        if f.code == rusqlite::ErrorCode::ConstraintViolation =>
                    {
                        Error::Exists {
                            what: format!("memory {} in {}", m.id, m.namespace),
                        }
                    }
                    e => db_err(e),
                })?;
            Ok(SemanticMemory {
                seq,
                namespace: m.namespace.clone(),
                id: m.id.clone(),
                text: m.text.clone(),
                metadata: m.metadata.clone(),
                vector: m.vector.clone(),
                model: m.model.clone(),
                agent: m.agent.clone(),
                run_id: m.run_id.clone(),
                created_ms: m.created_ms,
            })
        })
        .await
    }

    async fn memories(
        &self,
        tenant: &TenantId,
        namespace: &str,
        after: i64,
    ) -> Result<Vec<SemanticMemory>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {MEMORY_COLS} FROM semantic_memories
                  WHERE tenant = ?1 AND namespace = ?2 AND seq > ?3 ORDER BY seq"
            ))?
            .query_map(params![tenant.as_str(), namespace, after], parse_memory)?
            .collect()
        })
    }

    async fn set_vectors(
        &self,
        tenant: &TenantId,
        namespace: &str,
        vectors: Vec<NewVector>,
    ) -> Result<()> {
        let (tenant, namespace) = (tenant.clone(), namespace.to_string());
        self.call(move |c| {
            let mut st = c
                .prepare_cached(
                    "UPDATE semantic_memories SET vector = ?1, model = ?2
                      WHERE tenant = ?3 AND namespace = ?4 AND id = ?5",
                )
                .map_err(db_err)?;
            for v in &vectors {
                let changed = st
                    .execute(params![
                        vector_bytes(&v.vector),
                        v.model,
                        tenant.as_str(),
                        namespace,
                        v.id
                    ])
                    .map_err(db_err)?;
                if changed == 0 {
                    return Err(Error::Missing {
                        what: format!("memory {} in {namespace}", v.id),
                    });
                }
            }
            Ok(())
        })
        .await
    }

    async fn kv_write(&self, w: KvWrite) -> Result<KvEntry> {
        self.call(move |c| kv_write_in(c, &w)).await
    }

    async fn kv_get(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Option<KvEntry>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KV_COLS} FROM workflow_memory WHERE tenant = ?1 AND workflow = ?2 AND key = ?3"
            ))?
            .query_row(params![tenant.as_str(), workflow, key], parse_kv)
            .optional()
        })
    }

    async fn kv_list(
        &self,
        tenant: &TenantId,
        workflow: &str,
        prefix: &str,
    ) -> Result<Vec<KvEntry>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KV_COLS} FROM workflow_memory
                  WHERE tenant = ?1 AND workflow = ?2 AND substr(key, 1, length(?3)) = ?3
                  ORDER BY key"
            ))?
            .query_map(params![tenant.as_str(), workflow, prefix], parse_kv)?
            .collect()
        })
    }

    async fn kv_history(
        &self,
        tenant: &TenantId,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<KvEntry>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KV_COLS} FROM workflow_memory_history
                  WHERE tenant = ?1 AND workflow = ?2 AND key = ?3 ORDER BY version"
            ))?
            .query_map(params![tenant.as_str(), workflow, key], parse_kv)?
            .collect()
        })
    }
}
