//! [`AgentRegistry`] on PostgreSQL: the same two tables as SQLite's. The next version number is
//! taken by one upsert (`latest = latest + 1`), so two processes storing versions of one agent
//! at once get two numbers.

use async_trait::async_trait;
use baton_types::TenantId;
use tokio_postgres::GenericClient;

use super::{PostgresStore, pg_err};
use crate::agents::{AgentRecord, AgentRegistry, AgentSummary, NewAgentVersion};
use crate::tenancy::WorkflowFormat;
use crate::{Error, Result};

/// Schema 3: the agent registry.
pub(super) const MIGRATION: &str = r#"
CREATE TABLE agents (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    latest BIGINT NOT NULL,
    default_version BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE agent_versions (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
);
"#;

const VERSION_COLS: &str = "v.version, v.spec, v.source, v.format, v.created_at_ms, v.created_by,
    a.latest, a.default_version";

pub(super) fn u32_col(r: &tokio_postgres::Row, i: usize) -> Result<u32> {
    let v: i64 = r.try_get(i).map_err(pg_err)?;
    u32::try_from(v).map_err(|_| Error::Corrupt(format!("version {v} out of range")))
}

fn parse_version(tenant: &TenantId, name: &str, r: &tokio_postgres::Row) -> Result<AgentRecord> {
    let spec: String = r.try_get(1).map_err(pg_err)?;
    let format: String = r.try_get(3).map_err(pg_err)?;
    Ok(AgentRecord {
        tenant: tenant.clone(),
        name: name.to_string(),
        version: u32_col(r, 0)?,
        spec: serde_json::from_str(&spec)
            .map_err(|e| Error::Corrupt(format!("agent {name}: {e}")))?,
        source: r.try_get(2).map_err(pg_err)?,
        format: WorkflowFormat::parse(&format)
            .ok_or_else(|| Error::Corrupt(format!("agent {name}: format {format}")))?,
        created_at_ms: r.try_get(4).map_err(pg_err)?,
        created_by: r.try_get(5).map_err(pg_err)?,
        latest: u32_col(r, 6)?,
        default_version: u32_col(r, 7)?,
    })
}

async fn agent_version(
    c: &impl GenericClient,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> Result<Option<AgentRecord>> {
    let row = c
        .query_opt(
            &format!(
                "SELECT {VERSION_COLS} FROM agents a JOIN agent_versions v
                   ON v.tenant = a.tenant AND v.name = a.name
                  AND v.version = COALESCE($3::bigint, a.default_version)
                 WHERE a.tenant = $1 AND a.name = $2"
            ),
            &[&tenant.as_str(), &name, &version.map(i64::from)],
        )
        .await
        .map_err(pg_err)?;
    row.map(|r| parse_version(tenant, name, &r)).transpose()
}

async fn insert_version(
    c: &impl GenericClient,
    a: &NewAgentVersion,
    version: i64,
) -> Result<AgentRecord> {
    c.execute(
        "INSERT INTO agent_versions (tenant, name, version, spec, source, format, created_at_ms, created_by)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        &[
            &a.tenant.as_str(),
            &a.name,
            &version,
            &a.spec.to_string(),
            &a.source,
            &a.format.as_str(),
            &a.created_at_ms,
            &a.created_by,
        ],
    )
    .await
    .map_err(pg_err)?;
    let v = u32::try_from(version).map_err(|_| Error::Corrupt(format!("version {version}")))?;
    agent_version(c, &a.tenant, &a.name, Some(v))
        .await?
        .ok_or_else(|| Error::Db("a stored agent version cannot be read back".into()))
}

#[async_trait]
impl AgentRegistry for PostgresStore {
    async fn put_agent(&self, a: NewAgentVersion) -> Result<AgentRecord> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let version: i64 = tx
            .query_one(
                "INSERT INTO agents (tenant, name, latest, default_version, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, 1, 1, $3, $3)
                 ON CONFLICT (tenant, name) DO UPDATE SET latest = agents.latest + 1,
                   default_version = agents.latest + 1, updated_at_ms = excluded.updated_at_ms
                 RETURNING latest",
                &[&a.tenant.as_str(), &a.name, &a.created_at_ms],
            )
            .await
            .map_err(pg_err)?
            .try_get(0)
            .map_err(pg_err)?;
        let rec = insert_version(&*tx, &a, version).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(rec)
    }

    async fn seed_agent(&self, a: NewAgentVersion) -> Result<Option<AgentRecord>> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let claimed = tx
            .execute(
                "INSERT INTO agents (tenant, name, latest, default_version, created_at_ms, updated_at_ms)
                 VALUES ($1, $2, 1, 1, $3, $3) ON CONFLICT (tenant, name) DO NOTHING",
                &[&a.tenant.as_str(), &a.name, &a.created_at_ms],
            )
            .await
            .map_err(pg_err)?;
        if claimed == 0 {
            return Ok(None);
        }
        let rec = insert_version(&*tx, &a, 1).await?;
        tx.commit().await.map_err(pg_err)?;
        Ok(Some(rec))
    }

    async fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentSummary>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT name, latest, default_version, created_at_ms, updated_at_ms FROM agents
                 WHERE tenant = $1 ORDER BY name",
                &[&tenant.as_str()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| {
                Ok(AgentSummary {
                    name: r.try_get(0).map_err(pg_err)?,
                    latest: u32_col(r, 1)?,
                    default_version: u32_col(r, 2)?,
                    created_at_ms: r.try_get(3).map_err(pg_err)?,
                    updated_at_ms: r.try_get(4).map_err(pg_err)?,
                })
            })
            .collect()
    }

    async fn agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentRecord>> {
        let c = self.conn().await?;
        agent_version(&**c, tenant, name, version).await
    }

    async fn agent_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<AgentRecord>> {
        let c = self.conn().await?;
        let rows = c
            .query(
                &format!(
                    "SELECT {VERSION_COLS} FROM agents a JOIN agent_versions v
                       ON v.tenant = a.tenant AND v.name = a.name
                     WHERE a.tenant = $1 AND a.name = $2 ORDER BY v.version"
                ),
                &[&tenant.as_str(), &name],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| parse_version(tenant, name, r))
            .collect()
    }

    async fn set_default_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
        at_ms: i64,
    ) -> Result<AgentRecord> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let Some(rec) = agent_version(&*tx, tenant, name, Some(version)).await? else {
            return Err(Error::Missing {
                what: format!("version {version} of agent {name}"),
            });
        };
        tx.execute(
            "UPDATE agents SET default_version = $3, updated_at_ms = $4
             WHERE tenant = $1 AND name = $2",
            &[&tenant.as_str(), &name, &i64::from(version), &at_ms],
        )
        .await
        .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)?;
        Ok(AgentRecord {
            default_version: version,
            ..rec
        })
    }
}
