//! [`TenantStore`] on SQLite: tenants, keys, the audit chains and stored workflows. Writes go
//! through the writer (`SqliteStore::call`), so an audit entry's seq and hashes are computed in
//! the transaction that appends it.

use async_trait::async_trait;
use baton_types::TenantId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_err};
use crate::tenancy::{
    ApiKeyRecord, AuditEntry, AuditQuery, GENESIS_HASH, NewAuditEntry, NewWorkflowVersion,
    TenantRecord, TenantStore, WorkflowFormat, WorkflowRecord, WorkflowSummary, WorkflowWrite,
    audit_hash,
};
use crate::{Error, Result};

fn conv(i: usize, e: impl ToString) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.to_string().into())
}

fn tenant_col(r: &rusqlite::Row<'_>, i: usize) -> rusqlite::Result<TenantId> {
    r.get::<_, String>(i)?.parse().map_err(|e| conv(i, e))
}

const KEY_COLS: &str =
    "id, tenant, role, name, hash, created_at_ms, created_by, expires_at_ms, revoked_at_ms";

fn parse_key(r: &rusqlite::Row<'_>) -> rusqlite::Result<ApiKeyRecord> {
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        tenant: tenant_col(r, 1)?,
        role: r.get::<_, String>(2)?.parse().map_err(|e| conv(2, e))?,
        name: r.get(3)?,
        hash: r.get(4)?,
        created_at_ms: r.get(5)?,
        created_by: r.get(6)?,
        expires_at_ms: r.get(7)?,
        revoked_at_ms: r.get(8)?,
    })
}

const AUDIT_COLS: &str = "seq, tenant, at_ms, key_id, action, object, request_id, source, outcome, details, prev_hash, hash";

fn parse_audit(r: &rusqlite::Row<'_>) -> rusqlite::Result<AuditEntry> {
    let details: String = r.get(9)?;
    Ok(AuditEntry {
        seq: u64::try_from(r.get::<_, i64>(0)?).unwrap_or(0),
        entry: NewAuditEntry {
            tenant: tenant_col(r, 1)?,
            at_ms: r.get(2)?,
            key_id: r.get(3)?,
            action: r.get(4)?,
            object: r.get(5)?,
            request_id: r.get(6)?,
            source: r.get(7)?,
            outcome: r.get(8)?,
            details: serde_json::from_str(&details).map_err(|e| conv(9, e))?,
        },
        prev_hash: r.get(10)?,
        hash: r.get(11)?,
    })
}

fn tenant_exists(c: &Connection, t: &TenantId) -> Result<bool> {
    c.prepare_cached("SELECT 1 FROM tenants WHERE id = ?1")
        .and_then(|mut st| st.query_row([t.as_str()], |_| Ok(())).optional())
        .map(|o| o.is_some())
        .map_err(db_err)
}

fn workflow_version(
    c: &Connection,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> rusqlite::Result<Option<WorkflowRecord>> {
    c.prepare_cached(
        "SELECT v.version, v.source, v.format, v.created_at_ms, v.created_by, w.latest
         FROM workflows w JOIN workflow_versions v
           ON v.tenant = w.tenant AND v.name = w.name AND v.version = COALESCE(?3, w.latest)
         WHERE w.tenant = ?1 AND w.name = ?2 AND w.deleted_at_ms IS NULL",
    )?
    .query_row(params![tenant.as_str(), name, version], |r| {
        let format: String = r.get(2)?;
        Ok(WorkflowRecord {
            tenant: tenant.clone(),
            name: name.to_string(),
            version: r.get(0)?,
            source: r.get(1)?,
            format: WorkflowFormat::parse(&format).ok_or_else(|| conv(2, format))?,
            created_at_ms: r.get(3)?,
            created_by: r.get(4)?,
            latest: r.get(5)?,
        })
    })
    .optional()
}

#[async_trait]
impl TenantStore for SqliteStore {
    async fn create_tenant(&self, t: TenantRecord) -> Result<()> {
        self.call(move |c| {
            if tenant_exists(c, &t.id)? {
                return Err(Error::Exists {
                    what: format!("tenant {}", t.id),
                });
            }
            c.prepare_cached("INSERT INTO tenants (id, name, created_at_ms) VALUES (?1, ?2, ?3)")
                .and_then(|mut st| st.execute(params![t.id.as_str(), t.name, t.created_at_ms]))
                .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        self.read(|c| {
            c.prepare_cached("SELECT id, name, created_at_ms FROM tenants ORDER BY id")?
                .query_map([], |r| {
                    Ok(TenantRecord {
                        id: tenant_col(r, 0)?,
                        name: r.get(1)?,
                        created_at_ms: r.get(2)?,
                    })
                })?
                .collect()
        })
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
        self.read(|c| {
            c.prepare_cached("SELECT id, name, created_at_ms FROM tenants WHERE id = ?1")?
                .query_row([id.as_str()], |r| {
                    Ok(TenantRecord {
                        id: tenant_col(r, 0)?,
                        name: r.get(1)?,
                        created_at_ms: r.get(2)?,
                    })
                })
                .optional()
        })
    }

    async fn create_key(&self, k: ApiKeyRecord) -> Result<()> {
        self.call(move |c| {
            if !tenant_exists(c, &k.tenant)? {
                return Err(Error::Missing {
                    what: format!("tenant {}", k.tenant),
                });
            }
            let taken = c
                .prepare_cached("SELECT 1 FROM api_keys WHERE id = ?1")
                .and_then(|mut st| st.query_row([&k.id], |_| Ok(())).optional())
                .map_err(db_err)?;
            if taken.is_some() {
                return Err(Error::Exists {
                    what: format!("key {}", k.id),
                });
            }
            c.prepare_cached(&format!(
                "INSERT INTO api_keys ({KEY_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    k.id,
                    k.tenant.as_str(),
                    k.role.as_str(),
                    k.name,
                    k.hash,
                    k.created_at_ms,
                    k.created_by,
                    k.expires_at_ms,
                    k.revoked_at_ms
                ])
            })
            .map_err(db_err)?;
            Ok(())
        })
        .await
    }

    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE tenant = ?1 ORDER BY created_at_ms, id"
            ))?
            .query_map([tenant.as_str()], parse_key)?
            .collect()
        })
    }

    async fn key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE tenant = ?1 AND id = ?2"
            ))?
            .query_row(params![tenant.as_str(), id], parse_key)
            .optional()
        })
    }

    async fn key_for_auth(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {KEY_COLS} FROM api_keys WHERE id = ?1"))?
                .query_row([id], parse_key)
                .optional()
        })
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let (tenant, id) = (tenant.clone(), id.to_string());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, ?3)
                     WHERE tenant = ?1 AND id = ?2",
                )
                .and_then(|mut st| st.execute(params![tenant.as_str(), id, at_ms]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("key {id}"),
                });
            }
            Ok(())
        })
        .await
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        self.call(move |c| {
            let last: Option<(i64, String)> = c
                .prepare_cached(
                    "SELECT seq, hash FROM audit WHERE tenant = ?1 ORDER BY seq DESC LIMIT 1",
                )
                .and_then(|mut st| {
                    st.query_row([entry.tenant.as_str()], |r| Ok((r.get(0)?, r.get(1)?)))
                        .optional()
                })
                .map_err(db_err)?;
            let (seq, prev_hash) = match last {
                Some((s, h)) => (u64::try_from(s).unwrap_or(0) + 1, h),
                None => (1, GENESIS_HASH.to_string()),
            };
            let hash = audit_hash(&prev_hash, seq, &entry);
            let e = &entry;
            c.prepare_cached(&format!(
                "INSERT INTO audit ({AUDIT_COLS}) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)"
            ))
            .and_then(|mut st| {
                st.execute(params![
                    i64::try_from(seq).unwrap_or(i64::MAX),
                    e.tenant.as_str(),
                    e.at_ms,
                    e.key_id,
                    e.action,
                    e.object,
                    e.request_id,
                    e.source,
                    e.outcome,
                    e.details.to_string(),
                    prev_hash,
                    hash
                ])
            })
            .map_err(db_err)?;
            Ok(AuditEntry {
                seq,
                entry: entry.clone(),
                prev_hash: prev_hash.clone(),
                hash,
            })
        })
        .await
    }

    async fn audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let limit = q.limit.map_or(-1, i64::from);
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {AUDIT_COLS} FROM audit WHERE tenant = ?1 AND seq > ?2
                   AND (?3 IS NULL OR action = ?3) AND (?4 IS NULL OR key_id = ?4)
                   AND (?5 IS NULL OR at_ms >= ?5)
                 ORDER BY seq LIMIT ?6"
            ))?
            .query_map(
                params![
                    tenant.as_str(),
                    i64::try_from(q.after.unwrap_or(0)).unwrap_or(i64::MAX),
                    q.action,
                    q.key_id,
                    q.since_ms,
                    limit
                ],
                parse_audit,
            )?
            .collect()
        })
    }

    async fn put_workflow(
        &self,
        w: NewWorkflowVersion,
        write: WorkflowWrite,
    ) -> Result<WorkflowRecord> {
        self.call(move |c| {
            let row: Option<(u32, Option<i64>)> = c
                .prepare_cached(
                    "SELECT latest, deleted_at_ms FROM workflows WHERE tenant = ?1 AND name = ?2",
                )
                .and_then(|mut st| {
                    st.query_row(params![w.tenant.as_str(), w.name], |r| {
                        Ok((r.get(0)?, r.get(1)?))
                    })
                    .optional()
                })
                .map_err(db_err)?;
            let live = matches!(row, Some((_, None)));
            match write {
                WorkflowWrite::Create if live => {
                    return Err(Error::Exists {
                        what: format!("workflow {}", w.name),
                    });
                }
                WorkflowWrite::Update if !live => {
                    return Err(Error::Missing {
                        what: format!("workflow {}", w.name),
                    });
                }
                _ => {}
            }
            let version = row.map_or(1, |(latest, _)| latest + 1);
            c.prepare_cached(
                "INSERT INTO workflows (tenant, name, latest, created_at_ms, updated_at_ms, deleted_at_ms)
                 VALUES (?1, ?2, ?3, ?4, ?4, NULL)
                 ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest,
                   updated_at_ms = excluded.updated_at_ms, deleted_at_ms = NULL,
                   created_at_ms = CASE WHEN workflows.deleted_at_ms IS NULL
                     THEN workflows.created_at_ms ELSE excluded.created_at_ms END",
            )
            .and_then(|mut st| {
                st.execute(params![w.tenant.as_str(), w.name, version, w.created_at_ms])
            })
            .map_err(db_err)?;
            c.prepare_cached(
                "INSERT INTO workflow_versions (tenant, name, version, source, format, created_at_ms, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    w.tenant.as_str(),
                    w.name,
                    version,
                    w.source,
                    w.format.as_str(),
                    w.created_at_ms,
                    w.created_by
                ])
            })
            .map_err(db_err)?;
            Ok(WorkflowRecord {
                tenant: w.tenant.clone(),
                name: w.name.clone(),
                version,
                source: w.source.clone(),
                format: w.format,
                created_at_ms: w.created_at_ms,
                created_by: w.created_by.clone(),
                latest: version,
            })
        })
        .await
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, latest, created_at_ms, updated_at_ms FROM workflows
                 WHERE tenant = ?1 AND deleted_at_ms IS NULL ORDER BY name",
            )?
            .query_map([tenant.as_str()], |r| {
                Ok(WorkflowSummary {
                    name: r.get(0)?,
                    latest: r.get(1)?,
                    created_at_ms: r.get(2)?,
                    updated_at_ms: r.get(3)?,
                })
            })?
            .collect()
        })
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        self.read(|c| workflow_version(c, tenant, name, version))
    }

    async fn delete_workflow(&self, tenant: &TenantId, name: &str, at_ms: i64) -> Result<()> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.call(move |c| {
            let n = c
                .prepare_cached(
                    "UPDATE workflows SET deleted_at_ms = ?3
                     WHERE tenant = ?1 AND name = ?2 AND deleted_at_ms IS NULL",
                )
                .and_then(|mut st| st.execute(params![tenant.as_str(), name, at_ms]))
                .map_err(db_err)?;
            if n == 0 {
                return Err(Error::Missing {
                    what: format!("workflow {name}"),
                });
            }
            Ok(())
        })
        .await
    }
}
