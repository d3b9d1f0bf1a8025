//! `baton db status` and `baton db migrate`: the database's backend and schema migrations, for
//! a SQLite file and a PostgreSQL database alike.

use std::path::Path;

use anyhow::Context;
use baton_store::postgres::{self, MIGRATIONS, PostgresStore};
use baton_store::sqlite::{self, Durability, SqliteStore};
use clap::Subcommand;
use serde_json::json;

use crate::cmd_run::{EXIT_FAILED, EXIT_OK};
use crate::wiring;

#[derive(Subcommand, Debug)]
pub enum DbCmd {
    /// The backend, the schema version and the migrations applied and pending (changes
    /// nothing).
    Status {
        /// The database: a SQLite file or a `postgres://` URL (default: $BATON_DB, else
        /// ~/.local/share/baton/baton.db).
        #[arg(long, value_name = "PATH|URL")]
        db: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Applies the pending migrations (every command also does on opening the database).
    Migrate {
        /// The database: a SQLite file or a `postgres://` URL (default: $BATON_DB, else
        /// ~/.local/share/baton/baton.db).
        #[arg(long, value_name = "PATH|URL")]
        db: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

/// Where a database stands.
struct Status {
    backend: &'static str,
    database: String,
    /// `None`: no database there yet (a SQLite file is created on first use).
    current: Option<i64>,
    latest: i64,
    /// The migrations this build knows: version and name (PostgreSQL) or version (SQLite).
    known: Vec<(i64, String)>,
}

impl Status {
    fn print(&self, json: bool, applied_now: &[i64]) {
        let current = self.current.unwrap_or(0);
        let applied: Vec<i64> = self
            .known
            .iter()
            .map(|(v, _)| *v)
            .filter(|v| *v <= current)
            .collect();
        let pending: Vec<&(i64, String)> =
            self.known.iter().filter(|(v, _)| *v > current).collect();
        if json {
            outln!(
                "{}",
                json!({
                    "backend": self.backend,
                    "database": self.database,
                    "exists": self.current.is_some(),
                    "schema": current,
                    "latest": self.latest,
                    "applied": applied,
                    "pending": pending.iter().map(|(v, _)| v).collect::<Vec<_>>(),
                    "applied_now": applied_now,
                })
            );
            return;
        }
        outln!("backend:  {}", self.backend);
        outln!("database: {}", self.database);
        match self.current {
            None => outln!("schema:   none yet (the database is created on first use)"),
            Some(v) if v > self.latest => outln!(
                "schema:   {v}, NEWER than this baton knows ({}): use a newer baton",
                self.latest
            ),
            Some(v) => outln!("schema:   {v} (this baton knows up to {})", self.latest),
        }
        if !applied_now.is_empty() {
            outln!(
                "migrated: applied {}",
                applied_now
                    .iter()
                    .map(i64::to_string)
                    .collect::<Vec<_>>()
                    .join(", ")
            );
        }
        if pending.is_empty() {
            outln!("pending:  none");
        } else if pending.iter().all(|(_, name)| name.is_empty()) {
            let versions: Vec<String> = pending.iter().map(|(v, _)| v.to_string()).collect();
            outln!("pending:  {}", versions.join(", "));
        } else {
            outln!("pending:");
            for (v, name) in pending {
                outln!("  {v}  {name}");
            }
        }
    }

    fn newer(&self) -> bool {
        self.current.is_some_and(|v| v > self.latest)
    }
}

fn sqlite_status(path: &Path) -> anyhow::Result<Status> {
    let current = sqlite::schema_version(path)
        .with_context(|| format!("reading the schema of {}", path.display()))?;
    Ok(Status {
        backend: "sqlite",
        database: path.display().to_string(),
        current,
        latest: sqlite::SCHEMA_VERSION,
        known: (1..=sqlite::SCHEMA_VERSION)
            .map(|v| (v, String::new()))
            .collect(),
    })
}

async fn postgres_status(store: &PostgresStore) -> anyhow::Result<Status> {
    let st = store.migration_status().await?;
    Ok(Status {
        backend: "postgres",
        database: store.url().to_string(),
        current: Some(st.current()),
        latest: st.latest,
        known: MIGRATIONS
            .iter()
            .map(|m| (m.version, m.name.to_string()))
            .collect(),
    })
}

async fn connect(target: &str) -> anyhow::Result<PostgresStore> {
    // The error names the database (its password hidden).
    PostgresStore::connect(target)
        .await
        .context("connecting to the database")
}

pub async fn db(cmd: DbCmd) -> anyhow::Result<i32> {
    match cmd {
        DbCmd::Status { db, json } => {
            let target = wiring::db_target(db.as_deref());
            let st = if postgres::is_url(&target) {
                postgres_status(&connect(&target).await?).await?
            } else {
                sqlite_status(Path::new(&target))?
            };
            st.print(json, &[]);
            Ok(if st.newer() { EXIT_FAILED } else { EXIT_OK })
        }
        DbCmd::Migrate { db, json } => {
            let target = wiring::db_target(db.as_deref());
            if postgres::is_url(&target) {
                let store = connect(&target).await?;
                let applied = store.migrate().await?;
                postgres_status(&store).await?.print(json, &applied);
            } else {
                let path = Path::new(&target);
                let before = sqlite::schema_version(path)?.unwrap_or(0);
                SqliteStore::open(path, Durability::Process)
                    .with_context(|| format!("opening the run log {}", path.display()))?;
                let st = sqlite_status(path)?;
                let after = st.current.unwrap_or(0);
                let applied: Vec<i64> = ((before + 1)..=after).collect();
                st.print(json, &applied);
            }
            Ok(EXIT_OK)
        }
    }
}
