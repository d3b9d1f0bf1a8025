//! [`AgentRegistry`] on SQLite: `agents` (one row per name: newest and default version) and
//! `agent_versions` (immutable). Writes go through the writer, so the next version number is
//! taken in the transaction that stores it.

use async_trait::async_trait;
use baton_types::TenantId;
use rusqlite::{Connection, OptionalExtension, params};

use super::{SqliteStore, db_err};
use crate::agents::{AgentRecord, AgentRegistry, AgentSummary, NewAgentVersion};
use crate::tenancy::WorkflowFormat;
use crate::{Error, Result};

/// Schema 7: the agent registry.
pub(super) const MIGRATION_7: &str = "
CREATE TABLE IF NOT EXISTS agents (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    latest INTEGER NOT NULL,
    default_version INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS agent_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    spec TEXT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
";

const VERSION_COLS: &str = "v.version, v.spec, v.source, v.format, v.created_at_ms, v.created_by,
    a.latest, a.default_version";

fn parse_version(
    tenant: &TenantId,
    name: &str,
    r: &rusqlite::Row<'_>,
) -> rusqlite::Result<AgentRecord> {
    let conv = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let spec: String = r.get(1)?;
    let format: String = r.get(3)?;
    Ok(AgentRecord {
        tenant: tenant.clone(),
        name: name.to_string(),
        version: r.get(0)?,
        spec: serde_json::from_str(&spec).map_err(|e| conv(1, e.to_string()))?,
        source: r.get(2)?,
        format: WorkflowFormat::parse(&format).ok_or_else(|| conv(3, format))?,
        created_at_ms: r.get(4)?,
        created_by: r.get(5)?,
        latest: r.get(6)?,
        default_version: r.get(7)?,
    })
}

fn agent_version(
    c: &Connection,
    tenant: &TenantId,
    name: &str,
    version: Option<u32>,
) -> rusqlite::Result<Option<AgentRecord>> {
    c.prepare_cached(&format!(
        "SELECT {VERSION_COLS} FROM agents a JOIN agent_versions v
           ON v.tenant = a.tenant AND v.name = a.name
          AND v.version = COALESCE(?3, a.default_version)
         WHERE a.tenant = ?1 AND a.name = ?2"
    ))?
    .query_row(params![tenant.as_str(), name, version], |r| {
        parse_version(tenant, name, r)
    })
    .optional()
}

#[async_trait]
impl AgentRegistry for SqliteStore {
    async fn put_agent(&self, a: NewAgentVersion) -> Result<AgentRecord> {
        self.call(move |c| {
            let latest: Option<u32> = c
                .prepare_cached("SELECT latest FROM agents WHERE tenant = ?1 AND name = ?2")
                .and_then(|mut st| {
                    st.query_row(params![a.tenant.as_str(), a.name], |r| r.get(0))
                        .optional()
                })
                .map_err(db_err)?;
            let version = latest.map_or(1, |v| v + 1);
            c.prepare_cached(
                "INSERT INTO agents (tenant, name, latest, default_version, created_at_ms, updated_at_ms)
                 VALUES (?1, ?2, ?3, ?3, ?4, ?4)
                 ON CONFLICT (tenant, name) DO UPDATE SET latest = excluded.latest,
                   default_version = excluded.default_version, updated_at_ms = excluded.updated_at_ms",
            )
            .and_then(|mut st| {
                st.execute(params![a.tenant.as_str(), a.name, version, a.created_at_ms])
            })
            .map_err(db_err)?;
            c.prepare_cached(
                "INSERT INTO agent_versions (tenant, name, version, spec, source, format, created_at_ms, created_by)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    a.tenant.as_str(),
                    a.name,
                    version,
                    a.spec.to_string(),
                    a.source,
                    a.format.as_str(),
                    a.created_at_ms,
                    a.created_by
                ])
            })
            .map_err(db_err)?;
            agent_version(c, &a.tenant, &a.name, Some(version))
                .map_err(db_err)?
                .ok_or_else(|| Error::Db("a stored agent version cannot be read back".into()))
        })
        .await
    }

    async fn seed_agent(&self, a: NewAgentVersion) -> Result<Option<AgentRecord>> {
        self.call(move |c| {
            // In the writer's transaction: the name is claimed and its version stored together.
            let claimed = c
                .prepare_cached(
                    "INSERT INTO agents (tenant, name, latest, default_version, created_at_ms, updated_at_ms)
                     VALUES (?1, ?2, 1, 1, ?3, ?3) ON CONFLICT (tenant, name) DO NOTHING",
                )
                .and_then(|mut st| st.execute(params![a.tenant.as_str(), a.name, a.created_at_ms]))
                .map_err(db_err)?;
            if claimed == 0 {
                return Ok(None);
            }
            c.prepare_cached(
                "INSERT INTO agent_versions (tenant, name, version, spec, source, format, created_at_ms, created_by)
                 VALUES (?1, ?2, 1, ?3, ?4, ?5, ?6, ?7)",
            )
            .and_then(|mut st| {
                st.execute(params![
                    a.tenant.as_str(),
                    a.name,
                    a.spec.to_string(),
                    a.source,
                    a.format.as_str(),
                    a.created_at_ms,
                    a.created_by
                ])
            })
            .map_err(db_err)?;
            agent_version(c, &a.tenant, &a.name, Some(1))
                .map_err(db_err)?
                .ok_or_else(|| Error::Db("a stored agent version cannot be read back".into()))
                .map(Some)
        })
        .await
    }

    async fn agents(&self, tenant: &TenantId) -> Result<Vec<AgentSummary>> {
        self.read(|c| {
            c.prepare_cached(
                "SELECT name, latest, default_version, created_at_ms, updated_at_ms FROM agents
                 WHERE tenant = ?1 ORDER BY name",
            )?
            .query_map([tenant.as_str()], |r| {
                Ok(AgentSummary {
                    name: r.get(0)?,
                    latest: r.get(1)?,
                    default_version: r.get(2)?,
                    created_at_ms: r.get(3)?,
                    updated_at_ms: r.get(4)?,
                })
            })?
            .collect()
        })
    }

    async fn agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<AgentRecord>> {
        self.read(|c| agent_version(c, tenant, name, version))
    }

    async fn agent_versions(&self, tenant: &TenantId, name: &str) -> Result<Vec<AgentRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {VERSION_COLS} FROM agents a JOIN agent_versions v
                   ON v.tenant = a.tenant AND v.name = a.name
                 WHERE a.tenant = ?1 AND a.name = ?2 ORDER BY v.version"
            ))?
            .query_map(params![tenant.as_str(), name], |r| {
                parse_version(tenant, name, r)
            })?
            .collect()
        })
    }

    async fn set_default_agent(
        &self,
        tenant: &TenantId,
        name: &str,
        version: u32,
        at_ms: i64,
    ) -> Result<AgentRecord> {
        let (tenant, name) = (tenant.clone(), name.to_string());
        self.call(move |c| {
            let Some(rec) = agent_version(c, &tenant, &name, Some(version)).map_err(db_err)? else {
                return Err(Error::Missing {
                    what: format!("version {version} of agent {name}"),
                });
            };
            c.prepare_cached(
                "UPDATE agents SET default_version = ?3, updated_at_ms = ?4
                 WHERE tenant = ?1 AND name = ?2",
            )
            .and_then(|mut st| st.execute(params![tenant.as_str(), name, version, at_ms]))
            .map_err(db_err)?;
            Ok(AgentRecord {
                default_version: version,
                ..rec
            })
        })
        .await
    }
}
