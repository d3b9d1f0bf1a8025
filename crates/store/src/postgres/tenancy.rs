//! [`TenantStore`] on PostgreSQL: tenants, keys, the audit chains and stored workflows. An
//! audit entry's seq and hashes are computed under a lock of its tenant's chain (an advisory
//! lock for the transaction), so two processes appending at once make one chain.

use async_trait::async_trait;
use baton_types::TenantId;
use tokio_postgres::GenericClient;
use tokio_postgres::error::SqlState;

use super::agents::u32_col;
use super::{PostgresStore, pg_err};
use crate::tenancy::{
    ApiKeyRecord, AuditEntry, AuditQuery, GENESIS_HASH, NewAuditEntry, NewWorkflowVersion,
    TenantRecord, TenantStore, WorkflowFormat, WorkflowRecord, WorkflowSummary, WorkflowWrite,
    audit_hash,
};
use crate::{Error, Result};

fn tenant_of(s: String) -> Result<TenantId> {
    s.parse()
        .map_err(|e: baton_types::tenancy::ParseTenantIdError| {
            Error::Corrupt(format!("tenant {s}: {e}"))
        })
}

const KEY_COLS: &str =
    "id, tenant, role, name, hash, created_at_ms, created_by, expires_at_ms, revoked_at_ms";

fn parse_key(r: &tokio_postgres::Row) -> Result<ApiKeyRecord> {
    let role: String = r.try_get(2).map_err(pg_err)?;
    Ok(ApiKeyRecord {
        id: r.try_get(0).map_err(pg_err)?,
        tenant: tenant_of(r.try_get(1).map_err(pg_err)?)?,
        role: role
            .parse()
            .map_err(|e| Error::Corrupt(format!("key role {role}: {e}")))?,
        name: r.try_get(3).map_err(pg_err)?,
        hash: r.try_get(4).map_err(pg_err)?,
        created_at_ms: r.try_get(5).map_err(pg_err)?,
        created_by: r.try_get(6).map_err(pg_err)?,
        expires_at_ms: r.try_get(7).map_err(pg_err)?,
        revoked_at_ms: r.try_get(8).map_err(pg_err)?,
    })
}

const AUDIT_COLS: &str = "seq, tenant, at_ms, key_id, action, object, request_id, source, outcome, details, prev_hash, hash";

fn parse_audit(r: &tokio_postgres::Row) -> Result<AuditEntry> {
    let details: String = r.try_get(9).map_err(pg_err)?;
    let seq: i64 = r.try_get(0).map_err(pg_err)?;
    Ok(AuditEntry {
        seq: u64::try_from(seq).unwrap_or(0),
        entry: NewAuditEntry {
            tenant: tenant_of(r.try_get(1).map_err(pg_err)?)?,
            at_ms: r.try_get(2).map_err(pg_err)?,
            key_id: r.try_get(3).map_err(pg_err)?,
            action: r.try_get(4).map_err(pg_err)?,
            object: r.try_get(5).map_err(pg_err)?,
            request_id: r.try_get(6).map_err(pg_err)?,
            source: r.try_get(7).map_err(pg_err)?,
            outcome: r.try_get(8).map_err(pg_err)?,
            details: serde_json::from_str(&details)
                .map_err(|e| Error::Corrupt(format!("audit entry {seq}: {e}")))?,
        },
        prev_hash: r.try_get(10).map_err(pg_err)?,
        hash: r.try_get(11).map_err(pg_err)?,
    })
}

fn parse_tenant(r: &tokio_postgres::Row) -> Result<TenantRecord> {
    Ok(TenantRecord {
        id: tenant_of(r.try_get(0).map_err(pg_err)?)?,
        name: r.try_get(1).map_err(pg_err)?,
        created_at_ms: r.try_get(2).map_err(pg_err)?,
    })
}

async fn workflow_version(
    c: &impl GenericClient,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> Result<Option<WorkflowRecord>> {
    let row = c
        .query_opt(
            "SELECT v.version, v.source, v.format, v.created_at_ms, v.created_by, w.latest
             FROM workflows w JOIN workflow_versions v
               ON v.tenant = w.tenant AND v.name = w.name
              AND v.version = COALESCE($3::bigint, w.latest)
             WHERE w.tenant = $1 AND w.name = $2 AND w.deleted_at_ms IS NULL",
            &[&tenant.as_str(), &name, &version.map(i64::from)],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| {
        let format: String = r.try_get(2).map_err(pg_err)?;
        Ok(WorkflowRecord {
            tenant: tenant.clone(),
            name: name.to_string(),
            version: u32_col(&r, 0)?,
            source: r.try_get(1).map_err(pg_err)?,
            format: WorkflowFormat::parse(&format)
                .ok_or_else(|| Error::Corrupt(format!("workflow {name}: format {format}")))?,
            created_at_ms: r.try_get(3).map_err(pg_err)?,
            created_by: r.try_get(4).map_err(pg_err)?,
            latest: u32_col(&r, 5)?,
        })
    })
    .transpose()
}

#[async_trait]
impl TenantStore for PostgresStore {
    async fn create_tenant(&self, t: TenantRecord) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "INSERT INTO tenants (id, name, created_at_ms) VALUES ($1, $2, $3)
                 ON CONFLICT (id) DO NOTHING",
                &[&t.id.as_str(), &t.name, &t.created_at_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Exists {
                what: format!("tenant {}", t.id),
            });
        }
        Ok(())
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        let c = self.conn().await?;
        c.query(
            "SELECT id, name, created_at_ms FROM tenants ORDER BY id",
            &[],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_tenant)
        .collect()
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            "SELECT id, name, created_at_ms FROM tenants WHERE id = $1",
            &[&id.as_str()],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_tenant)
        .transpose()
    }

    async fn create_key(&self, k: ApiKeyRecord) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                &format!(
                    "INSERT INTO api_keys ({KEY_COLS})
                     SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM tenants WHERE id = $2)
                     ON CONFLICT (id) DO NOTHING"
                ),
                &[
                    &k.id,
                    &k.tenant.as_str(),
                    &k.role.as_str(),
                    &k.name,
                    &k.hash,
                    &k.created_at_ms,
                    &k.created_by,
                    &k.expires_at_ms,
                    &k.revoked_at_ms,
                ],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            // Which of the two stopped it.
            let tenant = c
                .query_opt("SELECT 1 FROM tenants WHERE id = $1", &[&k.tenant.as_str()])
                .await
                .map_err(pg_err)?;
            return Err(match tenant {
                None => Error::Missing {
                    what: format!("tenant {}", k.tenant),
                },
                Some(_) => Error::Exists {
                    what: format!("key {}", k.id),
                },
            });
        }
        Ok(())
    }

    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {KEY_COLS} FROM api_keys WHERE tenant = $1 ORDER BY created_at_ms, id"
            ),
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_key)
        .collect()
    }

    async fn key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKeyRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE tenant = $1 AND id = $2"),
            &[&tenant.as_str(), &id],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_key)
        .transpose()
    }

    async fn key_for_auth(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        let c = self.conn().await?;
        c.query_opt(
            &format!("SELECT {KEY_COLS} FROM api_keys WHERE id = $1"),
            &[&id],
        )
        .await
        .map_err(pg_err)?
        .as_ref()
        .map(parse_key)
        .transpose()
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE api_keys SET revoked_at_ms = COALESCE(revoked_at_ms, $3)
                 WHERE tenant = $1 AND id = $2",
                &[&tenant.as_str(), &id, &at_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("key {id}"),
            });
        }
        Ok(())
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        tx.execute(
            "SELECT pg_advisory_xact_lock(hashtext('baton-audit:' || $1))",
            &[&entry.tenant.as_str()],
        )
        .await
        .map_err(pg_err)?;
        let last = tx
            .query_opt(
                "SELECT seq, hash FROM audit WHERE tenant = $1 ORDER BY seq DESC LIMIT 1",
                &[&entry.tenant.as_str()],
            )
            .await
            .map_err(pg_err)?;
        let (seq, prev_hash) = match last {
            Some(r) => {
                let s: i64 = r.try_get(0).map_err(pg_err)?;
                (
                    u64::try_from(s).unwrap_or(0) + 1,
                    r.try_get(1).map_err(pg_err)?,
                )
            }
            None => (1, GENESIS_HASH.to_string()),
        };
        let hash = audit_hash(&prev_hash, seq, &entry);
        let e = &entry;
        tx.execute(
            &format!(
                "INSERT INTO audit ({AUDIT_COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12)"
            ),
            &[
                &i64::try_from(seq).unwrap_or(i64::MAX),
                &e.tenant.as_str(),
                &e.at_ms,
                &e.key_id,
                &e.action,
                &e.object,
                &e.request_id,
                &e.source,
                &e.outcome,
                &e.details.to_string(),
                &prev_hash,
                &hash,
            ],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(AuditEntry {
            seq,
            entry,
            prev_hash,
            hash,
        })
    }

    async fn audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        let c = self.conn().await?;
        c.query(
            &format!(
                "SELECT {AUDIT_COLS} FROM audit WHERE tenant = $1 AND seq > $2
                   AND ($3::text IS NULL OR action = $3) AND ($4::text IS NULL OR key_id = $4)
                   AND ($5::bigint IS NULL OR at_ms >= $5)
                 ORDER BY seq LIMIT $6"
            ),
            &[
                &tenant.as_str(),
                &i64::try_from(q.after.unwrap_or(0)).unwrap_or(i64::MAX),
                &q.action,
                &q.key_id,
                &q.since_ms,
                &q.limit.map(i64::from),
            ],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(parse_audit)
        .collect()
    }

    async fn put_workflow(
        &self,
        w: NewWorkflowVersion,
        write: WorkflowWrite,
    ) -> Result<WorkflowRecord> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let row = tx
            .query_opt(
                "SELECT latest, deleted_at_ms FROM workflows WHERE tenant = $1 AND name = $2 FOR UPDATE",
                &[&w.tenant.as_str(), &w.name],
            )
            .await
            .map_err(pg_err)?;
        let row: Option<(u32, Option<i64>)> = row
            .map(|r| Ok::<_, Error>((u32_col(&r, 0)?, r.try_get(1).map_err(pg_err)?)))
            .transpose()?;
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
        tx.execute(
            "INSERT INTO workflows (tenant, name, latest, created_at_ms, updated_at_ms, deleted_at_ms)
             VALUES ($1, $2, $3, $4, $4, NULL)
             ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest,
               updated_at_ms = excluded.updated_at_ms, deleted_at_ms = NULL,
               created_at_ms = CASE WHEN workflows.deleted_at_ms IS NULL
                 THEN workflows.created_at_ms ELSE excluded.created_at_ms END",
            &[&w.tenant.as_str(), &w.name, &i64::from(version), &w.created_at_ms],
        )
        .await
        .map_err(pg_err)?;
        tx.execute(
            "INSERT INTO workflow_versions (tenant, name, version, source, format, created_at_ms, created_by)
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &w.tenant.as_str(),
                &w.name,
                &i64::from(version),
                &w.source,
                &w.format.as_str(),
                &w.created_at_ms,
                &w.created_by,
            ],
        )
        .await
        .map_err(|e| match e.code() {
            // Another process created the same name in the same moment.
            Some(&SqlState::UNIQUE_VIOLATION) => Error::Exists {
                what: format!("workflow {} version {version}", w.name),
            },
            _ => pg_err(e),
        })?;
        tx.commit().await.map_err(pg_err)?;
        Ok(WorkflowRecord {
            tenant: w.tenant,
            name: w.name,
            version,
            source: w.source,
            format: w.format,
            created_at_ms: w.created_at_ms,
            created_by: w.created_by,
            latest: version,
        })
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>> {
        let c = self.conn().await?;
        c.query(
            "SELECT name, latest, created_at_ms, updated_at_ms FROM workflows
             WHERE tenant = $1 AND deleted_at_ms IS NULL ORDER BY name",
            &[&tenant.as_str()],
        )
        .await
        .map_err(pg_err)?
        .iter()
        .map(|r| {
            Ok(WorkflowSummary {
                name: r.try_get(0).map_err(pg_err)?,
                latest: u32_col(r, 1)?,
                created_at_ms: r.try_get(2).map_err(pg_err)?,
                updated_at_ms: r.try_get(3).map_err(pg_err)?,
            })
        })
        .collect()
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        let c = self.conn().await?;
        workflow_version(&**c, tenant, name, version).await
    }

    async fn delete_workflow(&self, tenant: &TenantId, name: &str, at_ms: i64) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE workflows SET deleted_at_ms = $3
                 WHERE tenant = $1 AND name = $2 AND deleted_at_ms IS NULL",
                &[&tenant.as_str(), &name, &at_ms],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::Missing {
                what: format!("workflow {name}"),
            });
        }
        Ok(())
    }
}
