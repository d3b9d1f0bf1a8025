//! The PostgreSQL backend: the same store as [`crate::sqlite`], in a PostgreSQL database that
//! processes on several hosts share (selected by a `postgres://` URL).
//!
//! Connections come from a pool (`deadpool-postgres` over `tokio-postgres`, no TLS: a database
//! on another host is reached through a tunnel or a private network). Every write is one
//! transaction, so it is all or nothing as on SQLite.
//!
//! ## Leases across processes
//! A run's `owner` and `lease_until_ms` are columns of its row. `claim`, `renew` and `release`
//! lock the row (`SELECT ... FOR UPDATE`) for the length of their transaction, so two processes
//! claiming one run at once are serialised by the database: the second sees the first's owner
//! and is refused with [`Error::Claimed`] while that lease is in force. A lease is in force
//! until `lease_until_ms` (the claiming process's clock: hosts must keep their clocks in step,
//! as NTP does) and, for an owner on this host, while its process lives; an owner on another
//! host is judged by its lease alone. `renew` only extends a lease its owner holds. `append`
//! locks the run's row too: two appends to one run are applied one after the other, and the
//! second, whose seqs no longer follow the run's last, fails with [`Error::Conflict`] and
//! writes nothing.

use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use baton_types::{Event, EventRecord, RunId, RunStatus, TenantId};
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod};
use tokio_postgres::NoTls;
use tokio_postgres::types::ToSql;

use crate::sqlite::live_status;
use crate::{
    Batch, Checkpoint, Control, Error, ListQuery, NewRun, Result, RunRecord, RunStore, hostname,
    now_ms,
};

mod agents;
mod rows;
mod schema;
mod team_memory;
mod tenancy;
mod webhooks;
mod workers;

use rows::*;

pub use schema::{MIGRATIONS, Migration, MigrationStatus};
pub use workers::{EVENTS_CHANNEL, NewWorker, Notice, WORK_CHANNEL, WorkerRecord};

/// Whether `db` names a PostgreSQL database (a `postgres://` or `postgresql://` URL) rather
/// than a SQLite file.
pub fn is_url(db: &str) -> bool {
    db.starts_with("postgres://") || db.starts_with("postgresql://")
}

/// A database error with PostgreSQL's own message (tokio-postgres's `Display` of a server error
/// is only "db error").
pub(crate) struct PgError(pub tokio_postgres::Error);

impl std::fmt::Display for PgError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}: {}", db.severity(), db.message()),
            None => match std::error::Error::source(&self.0) {
                Some(src) => write!(f, "{}: {src}", self.0),
                None => write!(f, "{}", self.0),
            },
        }
    }
}

pub(crate) fn pg_err(e: tokio_postgres::Error) -> Error {
    Error::Db(PgError(e).to_string())
}

/// A URL with its password hidden, for messages.
pub fn redact(url: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (auth, host) = match rest.split_once('@') {
        Some(x) => x,
        None => return url.to_string(),
    };
    match auth.split_once(':') {
        Some((user, _)) => format!("{scheme}://{user}:***@{host}"),
        None => url.to_string(),
    }
}

/// A run store in a PostgreSQL database.
pub struct PostgresStore {
    pool: Pool,
    /// The URL, password hidden (for messages).
    url: String,
    host: String,
    /// How to connect (for the connection that listens for notifications).
    cfg: tokio_postgres::Config,
    /// This process as an owner and as the origin of its notifications (`host:pid`).
    me: String,
}

fn parse_config(url: &str) -> Result<tokio_postgres::Config> {
    let mut cfg = tokio_postgres::Config::from_str(url).map_err(|e| Error::Open {
        path: redact(url),
        message: format!("not a valid PostgreSQL URL: {}", PgError(e)),
    })?;
    if cfg.get_connect_timeout().is_none() {
        cfg.connect_timeout(Duration::from_secs(10));
    }
    if cfg.get_application_name().is_none() {
        cfg.application_name("baton");
    }
    Ok(cfg)
}

impl PostgresStore {
    /// Connects to the database at `url` and applies the migrations it lacks. A database of a
    /// newer schema than this build knows is refused.
    pub async fn open(url: &str) -> Result<Self> {
        let store = Self::connect(url).await?;
        let mut c = store.conn_open().await?;
        schema::migrate(&mut c, &store.url).await?;
        Ok(store)
    }

    /// Connects without migrating (for `baton db status`): the connection is tried once.
    pub async fn connect(url: &str) -> Result<Self> {
        let cfg = parse_config(url)?;
        let mgr = Manager::from_config(
            cfg.clone(),
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(mgr)
            .max_size(16)
            .build()
            .map_err(|e| Error::Open {
                path: redact(url),
                message: e.to_string(),
            })?;
        let store = Self {
            pool,
            url: redact(url),
            host: hostname(),
            cfg,
            me: crate::process_owner(),
        };
        drop(store.conn_open().await?);
        Ok(store)
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The migrations applied and pending.
    pub async fn migration_status(&self) -> Result<MigrationStatus> {
        let c = self.conn().await?;
        schema::status(&c).await
    }

    /// Applies the pending migrations; returns the versions applied.
    pub async fn migrate(&self) -> Result<Vec<i64>> {
        let mut c = self.conn().await?;
        schema::migrate(&mut c, &self.url).await
    }

    async fn conn_open(&self) -> Result<Object> {
        self.pool.get().await.map_err(|e| Error::Open {
            path: self.url.clone(),
            message: pool_message(e),
        })
    }

    pub(crate) async fn conn(&self) -> Result<Object> {
        self.pool
            .get()
            .await
            .map_err(|e| Error::Db(format!("database {}: {}", self.url, pool_message(e))))
    }
}

fn pool_message(e: deadpool_postgres::PoolError) -> String {
    match e {
        deadpool_postgres::PoolError::Backend(e) => PgError(e).to_string(),
        e => e.to_string(),
    }
}

impl PostgresStore {
    async fn claim_or_renew(
        &self,
        run: RunId,
        owner: &str,
        lease_ms: u64,
        renew: bool,
    ) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let id = run.to_string();
        let Some(Locked {
            owner: cur,
            lease_until_ms: until,
            status,
            ..
        }) = lock_run(&tx, &id).await?
        else {
            return Err(Error::NotFound(run));
        };
        let now = now_ms();
        // The same rules as SQLite's (see `sqlite::write::apply`, `Op::Claim`).
        let free = match &cur {
            None => true,
            Some(o) if o == owner => true,
            Some(_) if until.is_none() && status == "pending" => true,
            Some(_) if renew => false,
            Some(o) => until.unwrap_or(0) < now || !crate::sqlite::owner_alive(o, &self.host),
        };
        if !free {
            return Err(Error::Claimed {
                run,
                owner: cur.unwrap_or_default(),
            });
        }
        let lease = i64::try_from(lease_ms).unwrap_or(i64::MAX / 2);
        let st = tx
            .prepare_cached("UPDATE runs SET owner = $2, lease_until_ms = $3 WHERE id = $1")
            .await
            .map_err(pg_err)?;
        tx.execute(&st, &[&id, &owner, &now.saturating_add(lease)])
            .await
            .map_err(pg_err)?;
        tx.commit().await.map_err(pg_err)
    }
}

#[async_trait]
impl RunStore for PostgresStore {
    async fn create_run(&self, run: NewRun) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let id = run.id.to_string();
        if let Some(k) = &run.idempotency {
            let n = tx
                .execute(
                    "INSERT INTO run_starts (tenant, key, run_id, fingerprint, created_at_ms)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant, key) DO NOTHING",
                    &[
                        &run.tenant.as_str(),
                        &k.key,
                        &id,
                        &k.fingerprint,
                        &run.created_at_ms,
                    ],
                )
                .await
                .map_err(pg_err)?;
            if n == 0 {
                let r = tx
                    .query_one(
                        "SELECT run_id, fingerprint FROM run_starts WHERE tenant = $1 AND key = $2",
                        &[&run.tenant.as_str(), &k.key],
                    )
                    .await
                    .map_err(pg_err)?;
                let used: String = r.try_get(0).map_err(pg_err)?;
                return Err(Error::KeyUsed {
                    key: k.key.clone(),
                    run: parse_id(&used)?,
                    fingerprint: r.try_get(1).map_err(pg_err)?,
                });
            }
        }
        // The creator holds the new run (an owner without a lease) until a claim starts it,
        // as on SQLite.
        tx.execute(
            "INSERT INTO runs (id, workflow_name, workflow_source, workflow_path, options, status,
                created_at_ms, updated_at_ms, tenant, started_by, owner, lease_until_ms)
             VALUES ($1, $2, $3, $4, $5, 'pending', $6, $6, $7, $8, $9, NULL)",
            &[
                &id,
                &run.workflow_name,
                &run.workflow_source,
                &run.workflow_path,
                &run.options.to_string(),
                &run.created_at_ms,
                &run.tenant.as_str(),
                &run.started_by,
                &crate::process_owner(),
            ],
        )
        .await
        .map_err(|e| match e.code() {
            Some(&tokio_postgres::error::SqlState::UNIQUE_VIOLATION) => Error::Exists {
                what: format!("run {id}"),
            },
            _ => pg_err(e),
        })?;
        tx.execute(
            "INSERT INTO run_inputs (run_id, inputs) VALUES ($1, $2)",
            &[&id, &run.inputs.to_string()],
        )
        .await
        .map_err(pg_err)?;
        if !run.events.is_empty() {
            let last = insert_events(&tx, run.id, &id, 0, &run.events).await?;
            tx.execute("UPDATE runs SET last_seq = $2 WHERE id = $1", &[&id, &last])
                .await
                .map_err(pg_err)?;
            let end = u64::try_from(last).unwrap_or(0);
            notify_logged(&tx, run.id, 1, end, run.tenant.as_str(), &self.me).await?;
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn append(&self, run: RunId, batch: Batch) -> Result<()> {
        let mut c = self.conn().await?;
        let tx = c.transaction().await.map_err(pg_err)?;
        let id = run.to_string();
        let Some(Locked {
            last_seq: last,
            tenant,
            ..
        }) = lock_run(&tx, &id).await?
        else {
            return Err(Error::NotFound(run));
        };
        let new_last = insert_events(&tx, run, &id, last, &batch.events).await?;
        if new_last > last {
            let (first, end) = (
                u64::try_from(last).unwrap_or(0) + 1,
                u64::try_from(new_last).unwrap_or(0),
            );
            notify_logged(&tx, run, first, end, &tenant, &self.me).await?;
        }
        let upd = tx
            .prepare_cached(
                "UPDATE runs SET last_seq = $2, updated_at_ms = $3,
                    status = COALESCE($4, status), outputs = COALESCE($5, outputs),
                    error = COALESCE($6, error)
                 WHERE id = $1",
            )
            .await
            .map_err(pg_err)?;
        tx.execute(
            &upd,
            &[
                &id,
                &new_last,
                &now_ms(),
                &batch.status.map(|s| s.as_str()),
                &batch.outputs.as_ref().map(|v| v.to_string()),
                &batch.error.as_deref(),
            ],
        )
        .await
        .map_err(pg_err)?;
        if let Some(cp) = &batch.checkpoint {
            let st = tx
                .prepare_cached(
                    "INSERT INTO checkpoints (run_id, seq, state) VALUES ($1, $2, $3)
                     ON CONFLICT (run_id) DO UPDATE SET seq = excluded.seq, state = excluded.state",
                )
                .await
                .map_err(pg_err)?;
            tx.execute(&st, &[&id, &seq_i64(cp.seq), &cp.state])
                .await
                .map_err(pg_err)?;
        }
        tx.commit().await.map_err(pg_err)
    }

    async fn run(&self, run: RunId) -> Result<Option<RunRecord>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE r.id = $1"),
                &[&run.to_string()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| parse_run(&r, &self.host)).transpose()
    }

    async fn tenant_run(&self, tenant: &TenantId, run: RunId) -> Result<Option<RunRecord>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                &format!("SELECT {RUN_COLS} FROM {RUN_FROM} WHERE r.id = $1 AND r.tenant = $2"),
                &[&run.to_string(), &tenant.as_str()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| parse_run(&r, &self.host)).transpose()
    }

    async fn run_for_key(&self, tenant: &TenantId, key: &str) -> Result<Option<(RunId, String)>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT run_id, fingerprint FROM run_starts WHERE tenant = $1 AND key = $2",
                &[&tenant.as_str(), &key],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| {
            let id: String = r.try_get(0).map_err(pg_err)?;
            Ok((parse_id(&id)?, r.try_get(1).map_err(pg_err)?))
        })
        .transpose()
    }

    async fn list_runs(&self, tenant: &TenantId, q: ListQuery) -> Result<Vec<RunRecord>> {
        // As on SQLite: `running` and `interrupted` share the stored status, filtered on the
        // live one here.
        let stored = match q.status {
            Some(RunStatus::Interrupted) => Some(RunStatus::Running),
            s => s,
        };
        let also = matches!(q.status, Some(RunStatus::Interrupted)).then_some("pending");
        let live = matches!(
            q.status,
            Some(RunStatus::Running | RunStatus::Interrupted | RunStatus::Pending)
        );
        let limit = q.limit.map_or(usize::MAX, |l| l as usize);
        let sql_limit: Option<i64> = if live {
            None
        } else {
            i64::try_from(limit).ok()
        };
        // Lower case for ASCII only, as the text filter is documented (and as SQLite's
        // `lower` does), whatever the database's locale.
        const LOWER: &str = "'ABCDEFGHIJKLMNOPQRSTUVWXYZ', 'abcdefghijklmnopqrstuvwxyz'";
        let sql = format!(
            "SELECT {RUN_COLS} FROM {RUN_FROM}
             WHERE r.tenant = $4 AND ($1::text IS NULL OR r.status = $1 OR r.status = $10::text)
               AND ($2::text IS NULL OR r.workflow_name = $2)
               AND ($5::bigint IS NULL OR r.created_at_ms >= $5)
               AND ($6::text IS NULL OR r.started_by = $6)
               AND ($7::bigint IS NULL OR r.created_at_ms < $7 OR (r.created_at_ms = $7 AND r.id < $8::text))
               AND ($9::text IS NULL OR strpos(translate(r.workflow_name || chr(1) || i.inputs
                    || chr(1) || COALESCE(r.outputs, '') || chr(1) || COALESCE(r.error, ''), {LOWER}), $9) > 0)
             ORDER BY r.created_at_ms DESC, r.id DESC LIMIT $3"
        );
        let c = self.conn().await?;
        let after_id = q.after.map(|(_, id)| id.to_string());
        let text = q.text.as_ref().map(|t| t.to_ascii_lowercase());
        let params: [&(dyn ToSql + Sync); 10] = [
            &stored.map(|s| s.as_str()),
            &q.workflow,
            &sql_limit,
            &tenant.as_str(),
            &q.since_ms,
            &q.started_by,
            &q.after.map(|(at, _)| at),
            &after_id,
            &text,
            &also,
        ];
        let rows = c.query(&sql, &params).await.map_err(pg_err)?;
        let mut out = Vec::new();
        for r in &rows {
            let rec = parse_run(r, &self.host)?;
            if live && Some(rec.status) != q.status {
                continue;
            }
            out.push(rec);
            if out.len() >= limit {
                break;
            }
        }
        Ok(out)
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>> {
        let c = self.conn().await?;
        let mut counts: Vec<(RunStatus, u64)> = Vec::new();
        let mut add =
            |status: RunStatus, n: u64| match counts.iter_mut().find(|(s, _)| *s == status) {
                Some((_, m)) => *m += n,
                None => counts.push((status, n)),
            };
        let parse = |s: String| s.parse::<RunStatus>().map_err(|e| corrupt("run status", e));
        for r in c
            .query(
                "SELECT status, COUNT(*) FROM runs WHERE status NOT IN ('running', 'pending') GROUP BY status",
                &[],
            )
            .await
            .map_err(pg_err)?
        {
            let n: i64 = r.try_get(1).map_err(pg_err)?;
            add(
                parse(r.try_get(0).map_err(pg_err)?)?,
                u64::try_from(n).unwrap_or(0),
            );
        }
        for r in c
            .query(
                "SELECT status, owner, lease_until_ms FROM runs WHERE status IN ('running', 'pending')",
                &[],
            )
            .await
            .map_err(pg_err)?
        {
            let owner: Option<String> = r.try_get(1).map_err(pg_err)?;
            let status = live_status(
                parse(r.try_get(0).map_err(pg_err)?)?,
                owner.as_deref(),
                r.try_get(2).map_err(pg_err)?,
                &self.host,
            );
            add(status, 1);
        }
        Ok(counts)
    }

    async fn runs_by_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<RunId>> {
        let prefix = prefix.trim().to_ascii_lowercase();
        if prefix.is_empty() || !prefix.bytes().all(|b| b.is_ascii_hexdigit() || b == b'-') {
            return Ok(Vec::new());
        }
        let prefix = prefix.replace('-', "");
        let c = self.conn().await?;
        let rows = c
            .query(
                "SELECT id FROM runs WHERE id >= $1 AND id < $1 || 'g' AND tenant = $3 ORDER BY id LIMIT $2",
                &[&prefix, &i64::from(limit), &tenant.as_str()],
            )
            .await
            .map_err(pg_err)?;
        rows.iter()
            .map(|r| parse_id(&r.try_get::<_, String>(0).map_err(pg_err)?))
            .collect()
    }

    async fn events(&self, run: RunId, after: u64) -> Result<Vec<EventRecord>> {
        let c = self.conn().await?;
        let id = run.to_string();
        let st = c
            .prepare_cached(
                "SELECT seq, at_ms, payload FROM events WHERE run_id = $1 AND seq > $2 ORDER BY seq",
            )
            .await
            .map_err(pg_err)?;
        let rows = c
            .query(&st, &[&id, &seq_i64(after)])
            .await
            .map_err(pg_err)?;
        let mut events = rows
            .iter()
            .map(|r| {
                let seq: i64 = r.try_get(0).map_err(pg_err)?;
                let payload: String = r.try_get(2).map_err(pg_err)?;
                let event: Event = serde_json::from_str(&payload)
                    .map_err(|e| Error::Corrupt(format!("run {run} event {seq}: {e}")))?;
                Ok(EventRecord {
                    run_id: run,
                    seq: u64::try_from(seq).unwrap_or(0),
                    at_ms: r.try_get(1).map_err(pg_err)?,
                    event,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        let needs_inputs = matches!(
            events.first(),
            Some(EventRecord {
                event: Event::RunCreated { inputs, .. },
                ..
            }) if inputs.is_null()
        );
        let inputs = if needs_inputs {
            let text: Option<String> = c
                .query_opt("SELECT inputs FROM run_inputs WHERE run_id = $1", &[&id])
                .await
                .map_err(pg_err)?
                .map(|r| r.try_get(0))
                .transpose()
                .map_err(pg_err)?;
            Some(text)
        } else {
            None
        };
        crate::restore_inputs(&mut events, || {
            let text = inputs
                .flatten()
                .ok_or_else(|| Error::Corrupt(format!("run {run} has no inputs")))?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("run {run} inputs: {e}")))
        })?;
        Ok(events)
    }

    async fn checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>> {
        let c = self.conn().await?;
        let row = c
            .query_opt(
                "SELECT seq, state FROM checkpoints WHERE run_id = $1",
                &[&run.to_string()],
            )
            .await
            .map_err(pg_err)?;
        row.map(|r| {
            Ok(Checkpoint {
                seq: u64::try_from(r.try_get::<_, i64>(0).map_err(pg_err)?).unwrap_or(0),
                state: r.try_get(1).map_err(pg_err)?,
            })
        })
        .transpose()
    }

    async fn send_control(&self, run: RunId, control: Control) -> Result<()> {
        let json = serde_json::to_string(&control).map_err(|e| Error::Db(e.to_string()))?;
        let c = self.conn().await?;
        let n = c
            .execute(
                "INSERT INTO controls (run_id, control, at_ms)
                 SELECT id, $2, $3 FROM runs WHERE id = $1",
                &[&run.to_string(), &json, &now_ms()],
            )
            .await
            .map_err(pg_err)?;
        if n == 0 {
            return Err(Error::NotFound(run));
        }
        // A worker may wait for it (a run nobody drives is claimed for its requests).
        c.execute(
            "SELECT pg_notify($1, $2)",
            &[&WORK_CHANNEL, &run.to_string()],
        )
        .await
        .map_err(pg_err)?;
        Ok(())
    }

    async fn take_controls(&self, run: RunId) -> Result<Vec<Control>> {
        // One statement takes them: two processes taking at once never both get one.
        let c = self.conn().await?;
        let st = c
            .prepare_cached("DELETE FROM controls WHERE run_id = $1 RETURNING id, control")
            .await
            .map_err(pg_err)?;
        let mut rows: Vec<(i64, String)> = c
            .query(&st, &[&run.to_string()])
            .await
            .map_err(pg_err)?
            .iter()
            .map(|r| Ok((r.try_get(0)?, r.try_get(1)?)))
            .collect::<std::result::Result<_, tokio_postgres::Error>>()
            .map_err(pg_err)?;
        rows.sort_by_key(|(id, _)| *id);
        rows.into_iter()
            .map(|(id, json)| {
                serde_json::from_str(&json)
                    .map_err(|e| Error::Corrupt(format!("control {id}: {e}")))
            })
            .collect()
    }

    async fn claim(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()> {
        self.claim_or_renew(run, owner, lease_ms, false).await
    }

    async fn renew(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()> {
        self.claim_or_renew(run, owner, lease_ms, true).await
    }

    async fn release(&self, run: RunId, owner: &str) -> Result<()> {
        let c = self.conn().await?;
        let n = c
            .execute(
                "UPDATE runs SET owner = NULL, lease_until_ms = NULL WHERE id = $1 AND owner = $2",
                &[&run.to_string(), &owner],
            )
            .await
            .map_err(pg_err)?;
        // A run released while it still has work (a drained worker's) is claimable now.
        if n > 0 {
            c.execute(
                "SELECT pg_notify($1, $2)",
                &[&WORK_CHANNEL, &run.to_string()],
            )
            .await
            .map_err(pg_err)?;
        }
        Ok(())
    }
}
