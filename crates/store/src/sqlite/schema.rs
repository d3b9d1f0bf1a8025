//! The SQLite schema and its migrations: each version's statements, applied in order in one
//! transaction when a database is opened. A new database gets the whole schema in one batch
//! (`FRESH`, schema.sql) instead.

use super::*;

/// The newest schema this build knows (`PRAGMA user_version`).
pub const SCHEMA_VERSION: i64 = 10;

/// The schema at `SCHEMA_VERSION`, for a new database. The ten migrations instead cost a
/// `baton run` on a new database ≈ 9.5 M instructions, half of the command (each `ALTER TABLE`
/// re-reads and re-parses the whole schema). `a_new_database_matches_a_migrated_one` keeps the
/// two equal.
const FRESH: &str = include_str!("schema.sql");

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
        // Version 0 is also a database from before versions were recorded: only one without
        // tables is new. It gets the whole schema at once and skips the migrations.
        let new = v == 0
            && tx
                .query_row("SELECT NOT EXISTS (SELECT 1 FROM sqlite_master)", [], |r| {
                    r.get::<_, bool>(0)
                })
                .map_err(db_err)?;
        let v = if new {
            tx.execute_batch(FRESH).map_err(db_err)?;
            SCHEMA_VERSION
        } else {
            v
        };
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

#[cfg(test)]
mod tests {
    use super::*;

    /// What a schema is: each object's definition (whitespace aside: SQLite keeps the text an
    /// `ALTER TABLE` left), each table's columns, and its rows.
    fn shape(c: &Connection) -> Vec<String> {
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let mut out = vec![format!("user_version {version}")];
        let mut st = c
            .prepare("SELECT type, name, tbl_name, sql FROM sqlite_master ORDER BY type, name")
            .unwrap();
        let objects: Vec<(String, String, String, Option<String>)> = st
            .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
            .unwrap()
            .collect::<rusqlite::Result<_>>()
            .unwrap();
        for (kind, name, table, sql) in objects {
            let sql: String = sql.unwrap_or_default().split_whitespace().collect();
            out.push(format!("{kind} {name} on {table}: {sql}"));
            if kind != "table" {
                continue;
            }
            let mut st = c
                .prepare(
                    "SELECT cid, name, type, \"notnull\", dflt_value, pk, hidden
                     FROM pragma_table_xinfo(?1)",
                )
                .unwrap();
            let columns: Vec<(String, String)> = st
                .query_map([&name], |r| {
                    let name: String = r.get(1)?;
                    let line = format!(
                        "  column {} {name} {} notnull={} default={:?} pk={} hidden={}",
                        r.get::<_, i64>(0)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, i64>(3)?,
                        r.get::<_, Option<String>>(4)?,
                        r.get::<_, i64>(5)?,
                        r.get::<_, i64>(6)?,
                    );
                    Ok((name, line))
                })
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            let row = columns
                .iter()
                .map(|(n, _)| format!("quote(\"{n}\")"))
                .collect::<Vec<_>>()
                .join(" || ',' || ");
            let mut rows: Vec<String> = c
                .prepare(&format!("SELECT {row} FROM \"{name}\""))
                .unwrap()
                .query_map([], |r| r.get(0))
                .unwrap()
                .collect::<rusqlite::Result<_>>()
                .unwrap();
            rows.sort();
            out.extend(columns.into_iter().map(|(_, line)| line));
            out.extend(rows.into_iter().map(|r| format!("  row {r}")));
        }
        out
    }

    #[test]
    fn a_new_database_matches_a_migrated_one() {
        let dir = tempfile::tempdir().unwrap();
        let fresh_path = dir.path().join("fresh.db");
        let mut fresh = Connection::open(&fresh_path).unwrap();
        migrate(&mut fresh, &fresh_path).unwrap();

        // The ten migrations one after the other: a database of version 0 with a table (taken
        // away after) gets them.
        let migrated_path = dir.path().join("migrated.db");
        let mut migrated = Connection::open(&migrated_path).unwrap();
        migrated
            .execute_batch("CREATE TABLE placeholder (x)")
            .unwrap();
        migrate(&mut migrated, &migrated_path).unwrap();
        migrated.execute_batch("DROP TABLE placeholder").unwrap();

        let (fresh, migrated) = (shape(&fresh), shape(&migrated));
        // The comparison sees columns added by ALTER TABLE, and rows.
        assert!(
            fresh.iter().any(|l| l.contains(" model TEXT notnull=1")),
            "{fresh:#?}"
        );
        assert!(
            fresh.contains(&"  row 'default','default',0".to_string()),
            "{fresh:#?}"
        );
        assert_eq!(fresh, migrated);
    }

    #[test]
    fn a_database_of_version_0_with_tables_is_migrated() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("old.db");
        let mut c = Connection::open(&path).unwrap();
        // A database from before versions were recorded: schema 1's tables, version 0.
        c.execute_batch(MIGRATION_1).unwrap();
        c.execute(
            "INSERT INTO runs (id, workflow_name, workflow_source, inputs, options, status,
                               created_at_ms, updated_at_ms)
             VALUES ('r1', 'w', '', '{}', '{}', 'running', 1, 1)",
            [],
        )
        .unwrap();
        migrate(&mut c, &path).unwrap();
        let version: i64 = c
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .unwrap();
        let tenant: String = c
            .query_row("SELECT tenant FROM runs WHERE id = 'r1'", [], |r| r.get(0))
            .unwrap();
        assert_eq!((version, tenant.as_str()), (SCHEMA_VERSION, "default"));
    }
}
