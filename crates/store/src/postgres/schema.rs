//! The PostgreSQL schema: numbered migrations recorded in `schema_migrations`, applied in
//! order in one transaction, under an advisory lock (two processes starting at once
//! do not both apply one).
//!
//! Text that is sorted or compared by range (ids, names) is `COLLATE "C"`: byte order, as
//! SQLite sorts, whatever the database's locale.

use deadpool_postgres::Object;

use super::{PgError, pg_err};
use crate::{Error, Result};

/// One migration: its version (1, 2, ... with no gaps), name and statements.
pub struct Migration {
    pub version: i64,
    pub name: &'static str,
    pub sql: &'static str,
}

/// Every migration this build knows, in order.
pub const MIGRATIONS: &[Migration] = &[
    Migration {
        version: 1,
        name: "runs, events, checkpoints, controls, leases",
        sql: RUNS,
    },
    Migration {
        version: 2,
        name: "tenants, api keys, audit chains, stored workflows, idempotency keys",
        sql: TENANCY,
    },
    Migration {
        version: 3,
        name: "agent registry",
        sql: super::agents::MIGRATION,
    },
    Migration {
        version: 4,
        name: "team memory: semantic memories and workflow keys",
        sql: super::team_memory::MIGRATION,
    },
    Migration {
        version: 5,
        name: "webhooks: inbound hooks, subscriptions, outbox, deliveries",
        sql: super::webhooks::MIGRATION,
    },
    Migration {
        version: 6,
        name: "workers",
        sql: super::workers::MIGRATION,
    },
];

/// The newest schema this build knows.
pub fn latest() -> i64 {
    MIGRATIONS.last().map_or(0, |m| m.version)
}

/// Any number that no other Baton lock uses: serialises migrations across processes.
const MIGRATION_LOCK: i64 = 0x6261_746f_6e00_0001;

const RUNS: &str = r#"
CREATE TABLE runs (
    id TEXT COLLATE "C" PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    workflow_source TEXT NOT NULL,
    workflow_path TEXT,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    outputs TEXT,
    error TEXT,
    last_seq BIGINT NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until_ms BIGINT,
    tenant TEXT COLLATE "C" NOT NULL DEFAULT 'default',
    started_by TEXT
);
CREATE INDEX runs_by_tenant ON runs (tenant, created_at_ms DESC, id DESC);
CREATE INDEX runs_by_status ON runs (status);
CREATE TABLE run_inputs (
    run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id),
    inputs TEXT NOT NULL
);
CREATE TABLE events (
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
);
CREATE TABLE checkpoints (
    run_id TEXT COLLATE "C" PRIMARY KEY REFERENCES runs (id),
    seq BIGINT NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE controls (
    id BIGSERIAL PRIMARY KEY,
    run_id TEXT COLLATE "C" NOT NULL REFERENCES runs (id),
    control TEXT NOT NULL,
    at_ms BIGINT NOT NULL
);
CREATE INDEX controls_by_run ON controls (run_id, id);
"#;

const TENANCY: &str = r#"
CREATE TABLE tenants (
    id TEXT COLLATE "C" PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL
);
INSERT INTO tenants (id, name, created_at_ms) VALUES ('default', 'default', 0);
CREATE TABLE api_keys (
    id TEXT COLLATE "C" PRIMARY KEY,
    tenant TEXT COLLATE "C" NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL,
    name TEXT,
    hash TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    expires_at_ms BIGINT,
    revoked_at_ms BIGINT
);
CREATE INDEX api_keys_by_tenant ON api_keys (tenant, created_at_ms);
CREATE TABLE audit (
    tenant TEXT COLLATE "C" NOT NULL,
    seq BIGINT NOT NULL,
    at_ms BIGINT NOT NULL,
    key_id TEXT,
    action TEXT NOT NULL,
    object TEXT,
    request_id TEXT,
    source TEXT,
    outcome TEXT NOT NULL,
    details TEXT NOT NULL,
    prev_hash TEXT NOT NULL,
    hash TEXT NOT NULL,
    PRIMARY KEY (tenant, seq)
);
CREATE TABLE workflows (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    latest BIGINT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    updated_at_ms BIGINT NOT NULL,
    deleted_at_ms BIGINT,
    PRIMARY KEY (tenant, name)
);
CREATE TABLE workflow_versions (
    tenant TEXT COLLATE "C" NOT NULL,
    name TEXT COLLATE "C" NOT NULL,
    version BIGINT NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
);
CREATE TABLE run_starts (
    tenant TEXT COLLATE "C" NOT NULL,
    key TEXT COLLATE "C" NOT NULL,
    run_id TEXT COLLATE "C" NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at_ms BIGINT NOT NULL,
    PRIMARY KEY (tenant, key)
);
"#;

/// Where a database stands: the migrations applied (version, when in Unix ms) and the newest
/// version this build knows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrationStatus {
    pub applied: Vec<(i64, i64)>,
    pub latest: i64,
}

impl MigrationStatus {
    /// The migrations this build knows and the database lacks.
    pub fn pending(&self) -> Vec<&'static Migration> {
        let current = self.current();
        MIGRATIONS.iter().filter(|m| m.version > current).collect()
    }

    /// The newest version applied (0: none).
    pub fn current(&self) -> i64 {
        self.applied.iter().map(|(v, _)| *v).max().unwrap_or(0)
    }
}

const CREATE_TABLE: &str = "CREATE TABLE IF NOT EXISTS schema_migrations (
    version BIGINT PRIMARY KEY,
    name TEXT NOT NULL,
    applied_at_ms BIGINT NOT NULL
)";

/// The migrations applied to the database (none when it has no `schema_migrations` table).
pub(super) async fn status(c: &Object) -> Result<MigrationStatus> {
    let exists: bool = c
        .query_one("SELECT to_regclass('schema_migrations') IS NOT NULL", &[])
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    let mut applied = Vec::new();
    if exists {
        for r in c
            .query(
                "SELECT version, applied_at_ms FROM schema_migrations ORDER BY version",
                &[],
            )
            .await
            .map_err(pg_err)?
        {
            applied.push((
                r.try_get::<_, i64>(0).map_err(pg_err)?,
                r.try_get(1).map_err(pg_err)?,
            ));
        }
    }
    Ok(MigrationStatus {
        applied,
        latest: latest(),
    })
}

/// Refuses a database written by a newer Baton.
pub(super) fn check_not_newer(s: &MigrationStatus, url: &str) -> Result<()> {
    let current = s.current();
    if current > s.latest {
        return Err(Error::Open {
            path: url.to_string(),
            message: format!(
                "the database was written by a newer Baton (schema {current}, this one knows up to {})",
                s.latest
            ),
        });
    }
    Ok(())
}

/// Applies the pending migrations; returns the versions it applied.
pub(super) async fn migrate(c: &mut Object, url: &str) -> Result<Vec<i64>> {
    // Another process may be creating the table at the same moment: the lock first.
    let tx = c.transaction().await.map_err(pg_err)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .await
        .map_err(pg_err)?;
    tx.batch_execute(CREATE_TABLE).await.map_err(pg_err)?;
    let current: i64 = tx
        .query_one(
            "SELECT COALESCE(MAX(version), 0) FROM schema_migrations",
            &[],
        )
        .await
        .map_err(pg_err)?
        .try_get(0)
        .map_err(pg_err)?;
    check_not_newer(
        &MigrationStatus {
            applied: vec![(current, 0)],
            latest: latest(),
        },
        url,
    )?;
    let mut done = Vec::new();
    for m in MIGRATIONS.iter().filter(|m| m.version > current) {
        tx.batch_execute(m.sql).await.map_err(|e| Error::Open {
            path: url.to_string(),
            message: format!("migration {} ({}): {}", m.version, m.name, PgError(e)),
        })?;
        tx.execute(
            "INSERT INTO schema_migrations (version, name, applied_at_ms) VALUES ($1, $2, $3)",
            &[&m.version, &m.name, &crate::now_ms()],
        )
        .await
        .map_err(pg_err)?;
        done.push(m.version);
    }
    tx.commit().await.map_err(pg_err)?;
    Ok(done)
}
