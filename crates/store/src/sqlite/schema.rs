//! The SQLite schema and its migrations: each version's statements, applied in order in one
//! transaction when a database is opened.

use super::*;

/// The newest schema this build knows (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 10;

const MIGRATION_1: &str = "
CREATE TABLE IF NOT EXISTS runs (
    id TEXT PRIMARY KEY,
    workflow_name TEXT NOT NULL,
    workflow_source TEXT NOT NULL,
    workflow_path TEXT,
    inputs TEXT NOT NULL,
    options TEXT NOT NULL,
    status TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    outputs TEXT,
    error TEXT,
    last_seq INTEGER NOT NULL DEFAULT 0,
    owner TEXT,
    lease_until_ms INTEGER
);
CREATE INDEX IF NOT EXISTS runs_by_created ON runs (created_at_ms DESC);
CREATE TABLE IF NOT EXISTS events (
    run_id TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
    kind TEXT NOT NULL,
    step TEXT,
    payload TEXT NOT NULL,
    PRIMARY KEY (run_id, seq)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS checkpoints (
    run_id TEXT PRIMARY KEY,
    seq INTEGER NOT NULL,
    state TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS controls (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    control TEXT NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS controls_by_run ON controls (run_id, id);
";

/// Version 2: a run keeps the durability it was started with (`resume` and the answers to a
/// waiting run use it again). NULL (runs created before) reads as `process`.
const MIGRATION_2: &str = "ALTER TABLE runs ADD COLUMN durability TEXT;";

/// Version 3: a run's inputs live in a table of their own, written once. In the `runs` row they
/// were rewritten by every update of the row (each step, each lease renewal): a 6 MiB input
/// cost 6 MiB of writes per step. Runs created before keep theirs in `runs.inputs`.
const MIGRATION_3: &str = "
CREATE TABLE IF NOT EXISTS run_inputs (
    run_id TEXT PRIMARY KEY,
    inputs TEXT NOT NULL
);
";

/// Version 4: tenants own runs (those from before belong to `default`), API keys (hashed),
/// the audit log (a hash chain per tenant), stored workflows with immutable versions, and the
/// idempotency keys of run starts.
const MIGRATION_4: &str = "
ALTER TABLE runs ADD COLUMN tenant TEXT NOT NULL DEFAULT 'default';
ALTER TABLE runs ADD COLUMN started_by TEXT;
CREATE INDEX IF NOT EXISTS runs_by_tenant ON runs (tenant, created_at_ms DESC, id DESC);
CREATE TABLE IF NOT EXISTS tenants (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL
);
INSERT OR IGNORE INTO tenants (id, name, created_at_ms) VALUES ('default', 'default', 0);
CREATE TABLE IF NOT EXISTS api_keys (
    id TEXT PRIMARY KEY,
    tenant TEXT NOT NULL REFERENCES tenants (id),
    role TEXT NOT NULL,
    name TEXT,
    hash TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    expires_at_ms INTEGER,
    revoked_at_ms INTEGER
);
CREATE INDEX IF NOT EXISTS api_keys_by_tenant ON api_keys (tenant, created_at_ms);
CREATE TABLE IF NOT EXISTS audit (
    tenant TEXT NOT NULL,
    seq INTEGER NOT NULL,
    at_ms INTEGER NOT NULL,
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
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflows (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    latest INTEGER NOT NULL,
    created_at_ms INTEGER NOT NULL,
    updated_at_ms INTEGER NOT NULL,
    deleted_at_ms INTEGER,
    PRIMARY KEY (tenant, name)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS workflow_versions (
    tenant TEXT NOT NULL,
    name TEXT NOT NULL,
    version INTEGER NOT NULL,
    source TEXT NOT NULL,
    format TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    created_by TEXT,
    PRIMARY KEY (tenant, name, version)
) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS run_starts (
    tenant TEXT NOT NULL,
    key TEXT NOT NULL,
    run_id TEXT NOT NULL,
    fingerprint TEXT NOT NULL,
    created_at_ms INTEGER NOT NULL,
    PRIMARY KEY (tenant, key)
) WITHOUT ROWID;
";

/// Runs by status: `/metrics` counts them at every scrape (`count_runs`), which would read
/// every run's row, workflow text included, without it.
const MIGRATION_8: &str = "
CREATE INDEX IF NOT EXISTS runs_by_status ON runs (status);
";

fn has_column(c: &Connection, table: &str, column: &str) -> Result<bool> {
    c.prepare(&format!(
        "SELECT 1 FROM pragma_table_info('{table}') WHERE name = ?1"
    ))
    .and_then(|mut st| st.exists([column]))
    .map_err(db_err)
}

/// The schema version of the database at `path`, read without changing anything (`None`: no
/// file there).
pub fn schema_version(path: &Path) -> Result<Option<i64>> {
    if !path.exists() {
        return Ok(None);
    }
    let open_err = |e: rusqlite::Error| Error::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let conn = Connection::open_with_flags(path, rusqlite::OpenFlags::SQLITE_OPEN_READ_ONLY)
        .map_err(open_err)?;
    conn.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map(Some)
        .map_err(open_err)
}

pub(super) fn migrate(conn: &mut Connection, path: &Path) -> Result<()> {
    let v: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(db_err)?;
    if v > SCHEMA_VERSION {
        return Err(Error::Open {
            path: path.display().to_string(),
            message: format!(
                "the database was written by a newer Baton (schema {v}, this one knows up to {SCHEMA_VERSION})"
            ),
        });
    }
    if v < SCHEMA_VERSION {
        let tx = conn.transaction().map_err(db_err)?;
        if v < 1 {
            tx.execute_batch(MIGRATION_1).map_err(db_err)?;
        }
        if v < 2 {
            tx.execute_batch(MIGRATION_2).map_err(db_err)?;
        }
        if v < 3 {
            tx.execute_batch(MIGRATION_3).map_err(db_err)?;
        }
        if v < 4 {
            tx.execute_batch(MIGRATION_4).map_err(db_err)?;
        }
        if v < 5 {
            tx.execute_batch(webhooks::MIGRATION_5).map_err(db_err)?;
        }
        if v < 6 {
            tx.execute_batch(webhooks::MIGRATION_6).map_err(db_err)?;
        }
        if v < 7 {
            tx.execute_batch(agents::MIGRATION_7).map_err(db_err)?;
        }
        if v < 8 {
            tx.execute_batch(MIGRATION_8).map_err(db_err)?;
        }
        if v < 9 {
            tx.execute_batch(team_memory::MIGRATION_9).map_err(db_err)?;
        }
        // `IF NOT EXISTS` has no ALTER form: a table that has the column already is left.
        if v < 10 && !has_column(&tx, "semantic_memories", "model")? {
            tx.execute_batch(team_memory::MIGRATION_10)
                .map_err(db_err)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version={SCHEMA_VERSION}"))
            .map_err(db_err)?;
        tx.commit().map_err(db_err)?;
    }
    Ok(())
}
