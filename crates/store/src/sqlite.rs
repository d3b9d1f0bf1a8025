//! The SQLite backend: one file, WAL, a dedicated writer thread that commits the appends of
//! every run queued at that moment in one transaction (group commit), and a reader connection.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_types::{Event, EventRecord, RunId, RunStatus};
use rusqlite::config::DbConfig;
use rusqlite::{Connection, OptionalExtension, params};
use tokio::sync::oneshot;

use crate::{
    Batch, Checkpoint, Control, Error, ListQuery, NewRun, Result, RunRecord, RunStore, now_ms,
};
use baton_types::TenantId;

mod agents;
mod schema;
mod team_memory;
mod tenancy;
mod webhooks;
mod write;

use schema::migrate;
pub use schema::{SCHEMA_VERSION, schema_version};
use write::{write_group, writer_loop};

/// How hard a commit is pushed to disk.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Durability {
    /// WAL with `synchronous=NORMAL`: a commit survives the process being killed at any
    /// moment (not a power cut). The default.
    #[default]
    Process,
    /// WAL with `synchronous=FULL`: every commit is fsynced; survives power loss.
    Power,
}

impl Durability {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Process => "process",
            Self::Power => "power",
        }
    }
}

/// A write in the writer's transaction (see `Op::Call`).
type WriteFn = dyn Fn(&Connection) -> Result<()> + Send;

enum Op {
    Create(Box<NewRun>, Durability),
    SetDurability(RunId, Durability),
    Append(RunId, Batch),
    SendControl(RunId, Control),
    TakeControls(RunId),
    Claim {
        run: RunId,
        owner: String,
        lease_ms: u64,
        renew: bool,
    },
    Release(RunId, String),
    /// Any other write (tenants, keys, audit, workflows): rare, so one boxed closure covers
    /// them all; it returns its result through its own slot (see `SqliteStore::call`).
    Call(Box<WriteFn>),
}

/// What an op gives back: nothing, or the controls it took.
type Reply = oneshot::Sender<Result<Vec<Control>>>;
type Job = (Op, Reply);

/// A run store in one SQLite file.
pub struct SqliteStore {
    path: PathBuf,
    writer: mpsc::Sender<Job>,
    /// The writing connection: taken by a caller that finds it free (`Process` durability), or
    /// by the writer thread for a group of writes queued while it was busy.
    wconn: Arc<Mutex<Connection>>,
    /// Whether a caller may write on its own thread when the connection is free.
    inline: bool,
    host: String,
    reader: Mutex<Connection>,
    durability: Durability,
}

fn db_err(e: rusqlite::Error) -> Error {
    Error::Db(e.to_string())
}

/// Opens a connection in WAL mode with `durability` (`None`: no syncing at all, while a new
/// database is set up).
fn open_conn(path: &Path, durability: Option<Durability>) -> Result<Connection> {
    let open_err = |e: rusqlite::Error| Error::Open {
        path: path.display().to_string(),
        message: e.to_string(),
    };
    let conn = Connection::open(path).map_err(open_err)?;
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .map_err(open_err)?;
    if durability.is_none() {
        conn.execute_batch("PRAGMA synchronous=OFF;")
            .map_err(open_err)?;
    }
    conn.execute_batch("PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON;")
        .map_err(open_err)?;
    // Closing the last connection would checkpoint the WAL into the database and delete it:
    // two fsyncs and an unlink that cost a short command (`baton run` of one step) more than
    // all its work (measured: 5-15 ms of a 20 ms run on this machine's disk). Committed data
    // is in the WAL either way, with the durability the commit had; the next open reads it,
    // and checkpoints still run as the WAL grows (every 1,000 pages).
    conn.set_db_config(DbConfig::SQLITE_DBCONFIG_NO_CKPT_ON_CLOSE, true)
        .map_err(open_err)?;
    if let Some(d) = durability {
        set_sync(&conn, d).map_err(open_err)?;
    }
    Ok(conn)
}

fn set_sync(conn: &Connection, durability: Durability) -> rusqlite::Result<()> {
    let sync = match durability {
        Durability::Process => "NORMAL",
        Durability::Power => "FULL",
    };
    conn.execute_batch(&format!("PRAGMA synchronous={sync};"))
}

impl SqliteStore {
    /// Opens (creating if needed) the database at `path`, creating parent folders.
    pub fn open(path: &Path, durability: Durability) -> Result<Self> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: format!("cannot create folder {}: {e}", dir.display()),
            })?;
        }
        // A database this call creates holds nothing yet: with `Process` durability (no promise
        // about power loss) its creation (journal switch to WAL, schema) is not worth the
        // fsyncs (measured: 6 of them, 3-4 ms each on a busy disk). `Power` keeps them.
        let fresh = durability == Durability::Process && !path.exists();
        let mut wconn = open_conn(path, if fresh { None } else { Some(durability) })?;
        migrate(&mut wconn, path)?;
        if fresh {
            set_sync(&wconn, durability).map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        }
        wconn.set_prepared_statement_cache_capacity(64);
        let reader = open_conn(path, Some(durability))?;
        let wconn = Arc::new(Mutex::new(wconn));
        let host = hostname();
        let (tx, rx) = mpsc::channel::<Job>();
        let (thread_conn, thread_host) = (wconn.clone(), host.clone());
        std::thread::Builder::new()
            .name("baton-sqlite-writer".into())
            .spawn(move || writer_loop(&thread_conn, rx, &thread_host))
            .map_err(|e| Error::Open {
                path: path.display().to_string(),
                message: e.to_string(),
            })?;
        Ok(Self {
            path: path.to_path_buf(),
            writer: tx,
            wconn,
            // With `Power` every commit is an fsync: writes go through the writer thread, which
            // makes one commit of all the writes queued meanwhile.
            inline: durability == Durability::Process,
            host,
            reader: Mutex::new(reader),
            durability,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The durability this store commits with (and records on the runs it creates).
    pub fn durability(&self) -> Durability {
        self.durability
    }

    /// The durability a run was started with (`None`: no such run).
    pub fn run_durability(&self, run: RunId) -> Result<Option<Durability>> {
        let d: Option<Option<String>> = self.read(|c| {
            c.prepare_cached("SELECT durability FROM runs WHERE id = ?1")?
                .query_row([run.to_string()], |r| r.get(0))
                .optional()
        })?;
        Ok(d.map(|d| match d.as_deref() {
            Some("power") => Durability::Power,
            _ => Durability::Process,
        }))
    }

    /// Records a run's new durability (`baton resume --durability`).
    pub async fn set_run_durability(&self, run: RunId, durability: Durability) -> Result<()> {
        self.write(Op::SetDurability(run, durability))
            .await
            .map(drop)
    }

    async fn write(&self, op: Op) -> Result<Vec<Control>> {
        // No other write in progress: write here and now. Handing the write to another thread
        // costs two thread wake-ups, each 50-100 µs on an idle virtual machine (measured:
        // chain10_sqlite 1.5 ms with the hand-off against 0.4 ms on a busy machine); a write
        // under synchronous=NORMAL is tens of microseconds.
        if self.inline
            && let Ok(conn) = self.wconn.try_lock()
        {
            return write_group(&conn, &[&op], &self.host)
                .pop()
                .unwrap_or_else(|| Err(Error::Db("no result from the database writer".into())));
        }
        let (tx, rx) = oneshot::channel();
        self.writer
            .send((op, tx))
            .map_err(|_| Error::Db("the database writer has stopped".into()))?;
        rx.await
            .map_err(|_| Error::Db("the database writer has stopped".into()))?
    }

    /// Runs `f` as one write (in the writer's transaction) and returns what it returned.
    async fn call<T: Send + 'static>(
        &self,
        f: impl Fn(&Connection) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let slot = Arc::new(Mutex::new(None));
        let out = slot.clone();
        self.write(Op::Call(Box::new(move |c| {
            let v = f(c)?;
            *out.lock().unwrap_or_else(|p| p.into_inner()) = Some(v);
            Ok(())
        })))
        .await?;
        let v = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
        v.ok_or_else(|| Error::Db("the database writer returned no result".into()))
    }

    fn read<T>(&self, f: impl FnOnce(&Connection) -> rusqlite::Result<T>) -> Result<T> {
        let conn = self.reader.lock().unwrap_or_else(|p| p.into_inner());
        f(&conn).map_err(db_err)
    }
}

// The owner string is every store's (see `RunStore::claim`); re-exported for callers that
// name it here.
use crate::hostname;
pub use crate::process_owner;

/// Whether the process named by an owner string still runs. Owners on other hosts are
/// assumed alive (their lease decides).
pub(crate) fn owner_alive(owner: &str, host: &str) -> bool {
    match owner.rsplit_once(':') {
        Some((h, pid)) if h == host => match pid.parse::<u32>() {
            Ok(pid) => {
                // A zombie is dead for our purposes.
                match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                    Ok(stat) => !stat
                        .rsplit_once(')')
                        .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
                    Err(_) => false,
                }
            }
            Err(_) => true,
        },
        _ => true,
    }
}

/// A stored `running` run that no live process holds (its owner died, or its lease ran out,
/// or it was released mid-run) is reported as `interrupted`: nothing will move it until
/// someone resumes it. The status column keeps `running`.
pub(crate) fn live_status(
    status: RunStatus,
    owner: Option<&str>,
    lease_until_ms: Option<i64>,
    host: &str,
) -> RunStatus {
    // A claim holds a run while its lease lasts and its process lives; a creation hold (an
    // owner without a lease, see `Op::Create`) holds a pending run while its process lives.
    let held = owner.is_some_and(|o| {
        let in_force = match lease_until_ms {
            Some(until) => until >= now_ms(),
            // A creation hold covers a run not started yet, nothing after.
            None => status == RunStatus::Pending,
        };
        in_force && owner_alive(o, host)
    });
    // Still `pending` with its creator gone: never started, and no one will start it unless
    // told.
    let orphan = status == RunStatus::Pending && owner.is_some();
    if (status == RunStatus::Running || orphan) && !held {
        RunStatus::Interrupted
    } else {
        status
    }
}

fn parse_run(r: &rusqlite::Row<'_>, host: &str) -> rusqlite::Result<RunRecord> {
    let id: String = r.get(0)?;
    let conv = |i: usize, e: String| {
        rusqlite::Error::FromSqlConversionFailure(i, rusqlite::types::Type::Text, e.into())
    };
    let json = |i: usize, s: String| serde_json::from_str(&s).map_err(|e| conv(i, e.to_string()));
    let status: String = r.get(6)?;
    Ok(RunRecord {
        id: id
            .parse()
            .map_err(|e: baton_types::ids::ParseRunIdError| conv(0, e.to_string()))?,
        workflow_name: r.get(1)?,
        workflow_source: r.get(2)?,
        workflow_path: r.get(3)?,
        inputs: json(4, r.get(4)?)?,
        options: json(5, r.get(5)?)?,
        status: live_status(
            status.parse().map_err(|e: String| conv(6, e))?,
            r.get::<_, Option<String>>(12)?.as_deref(),
            r.get(13)?,
            host,
        ),
        created_at_ms: r.get(7)?,
        updated_at_ms: r.get(8)?,
        outputs: r
            .get::<_, Option<String>>(9)?
            .map(|s| json(9, s))
            .transpose()?,
        error: r.get(10)?,
        last_seq: u64::try_from(r.get::<_, i64>(11)?).unwrap_or(0),
        tenant: r
            .get::<_, String>(14)?
            .parse()
            .map_err(|e: baton_types::tenancy::ParseTenantIdError| conv(14, e.to_string()))?,
        started_by: r.get(15)?,
    })
}

fn parse_id(s: &str) -> Result<RunId> {
    s.parse()
        .map_err(|e: baton_types::ids::ParseRunIdError| Error::Corrupt(e.to_string()))
}

const RUN_COLS: &str = "id, workflow_name, workflow_source, workflow_path,
    COALESCE((SELECT inputs FROM run_inputs WHERE run_id = runs.id), inputs), options, status, created_at_ms, updated_at_ms, outputs, error, last_seq, owner, lease_until_ms, tenant, started_by";

#[async_trait]
impl RunStore for SqliteStore {
    async fn create_run(&self, run: NewRun) -> Result<()> {
        self.write(Op::Create(Box::new(run), self.durability))
            .await
            .map(drop)
    }

    async fn append(&self, run: RunId, batch: Batch) -> Result<()> {
        self.write(Op::Append(run, batch)).await.map(drop)
    }

    async fn run(&self, run: RunId) -> Result<Option<RunRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))?
                .query_row([run.to_string()], |r| parse_run(r, &self.host))
                .optional()
        })
    }

    async fn tenant_run(&self, tenant: &TenantId, run: RunId) -> Result<Option<RunRecord>> {
        self.read(|c| {
            c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs WHERE id = ?1 AND tenant = ?2"
            ))?
            .query_row(params![run.to_string(), tenant.as_str()], |r| {
                parse_run(r, &self.host)
            })
            .optional()
        })
    }

    async fn run_for_key(&self, tenant: &TenantId, key: &str) -> Result<Option<(RunId, String)>> {
        let row: Option<(String, String)> = self.read(|c| {
            c.prepare_cached(
                "SELECT run_id, fingerprint FROM run_starts WHERE tenant = ?1 AND key = ?2",
            )?
            .query_row(params![tenant.as_str(), key], |r| {
                Ok((r.get(0)?, r.get(1)?))
            })
            .optional()
        })?;
        row.map(|(id, f)| Ok((parse_id(&id)?, f))).transpose()
    }

    async fn list_runs(&self, tenant: &TenantId, q: ListQuery) -> Result<Vec<RunRecord>> {
        // `running` and `interrupted` share the stored status: filter on the live one.
        let stored = match q.status {
            Some(RunStatus::Interrupted) => Some(RunStatus::Running),
            s => s,
        };
        // An interrupted run is stored `running`, or `pending` when its creator died before
        // it started (see `live_status`).
        let also = matches!(q.status, Some(RunStatus::Interrupted)).then_some("pending");
        let live = matches!(
            q.status,
            Some(RunStatus::Running | RunStatus::Interrupted | RunStatus::Pending)
        );
        let limit = q.limit.map_or(usize::MAX, |l| l as usize);
        self.read(|c| {
            let mut stmt = c.prepare_cached(&format!(
                "SELECT {RUN_COLS} FROM runs
                 WHERE tenant = ?4 AND (?1 IS NULL OR status = ?1 OR status = ?10) AND (?2 IS NULL OR workflow_name = ?2)
                   AND (?5 IS NULL OR created_at_ms >= ?5)
                   AND (?6 IS NULL OR started_by = ?6)
                   AND (?7 IS NULL OR created_at_ms < ?7 OR (created_at_ms = ?7 AND id < ?8))
                   AND (?9 IS NULL OR instr(lower(workflow_name || char(1)
                        || COALESCE((SELECT inputs FROM run_inputs WHERE run_id = runs.id), inputs) || char(1)
                        || COALESCE(outputs, '') || char(1) || COALESCE(error, '')), ?9) > 0)
                 ORDER BY created_at_ms DESC, id DESC LIMIT ?3"
            ))?;
            let sql_limit = if live {
                -1
            } else {
                i64::try_from(limit).unwrap_or(-1)
            };
            stmt.query_map(
                params![
                    stored.map(|s| s.as_str()),
                    q.workflow,
                    sql_limit,
                    tenant.as_str(),
                    q.since_ms,
                    q.started_by,
                    q.after.map(|(at, _)| at),
                    q.after.map(|(_, id)| id.to_string()),
                    q.text.as_ref().map(|t| t.to_ascii_lowercase()),
                    also
                ],
                |r| parse_run(r, &self.host),
            )?
            .filter(|r| !live || r.as_ref().map_or(true, |r| Some(r.status) == q.status))
            .take(limit)
            .collect()
        })
    }

    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>> {
        let conv = |e: String| {
            rusqlite::Error::FromSqlConversionFailure(0, rusqlite::types::Type::Text, e.into())
        };
        self.read(|c| {
            let mut counts: Vec<(RunStatus, u64)> = Vec::new();
            let mut add = |status: RunStatus, n: u64| match counts
                .iter_mut()
                .find(|(s, _)| *s == status)
            {
                Some((_, m)) => *m += n,
                None => counts.push((status, n)),
            };
            // Settled runs are counted by the database; the live ones (few) one by one, as
            // their owner decides whether they are interrupted.
            let mut stmt = c.prepare_cached(
                "SELECT status, COUNT(*) FROM runs WHERE status NOT IN ('running', 'pending') GROUP BY status",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let status: String = r.get(0)?;
                add(status.parse().map_err(conv)?, u64::try_from(r.get::<_, i64>(1)?).unwrap_or(0));
            }
            let mut stmt = c.prepare_cached(
                "SELECT status, owner, lease_until_ms FROM runs WHERE status IN ('running', 'pending')",
            )?;
            let mut rows = stmt.query([])?;
            while let Some(r) = rows.next()? {
                let status: String = r.get(0)?;
                let owner: Option<String> = r.get(1)?;
                let live = live_status(status.parse().map_err(conv)?, owner.as_deref(), r.get(2)?, &self.host);
                add(live, 1);
            }
            Ok(counts)
        })
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
        let ids: Vec<String> = self.read(|c| {
            let mut stmt = c.prepare_cached(
                "SELECT id FROM runs WHERE id >= ?1 AND id < ?1 || 'g' AND tenant = ?3 ORDER BY id LIMIT ?2",
            )?;
            stmt.query_map(
                params![prefix.replace('-', ""), i64::from(limit), tenant.as_str()],
                |r| r.get(0),
            )?
            .collect()
        })?;
        ids.iter()
            .map(|s| {
                s.parse()
                    .map_err(|e: baton_types::ids::ParseRunIdError| Error::Corrupt(e.to_string()))
            })
            .collect()
    }

    async fn events(&self, run: RunId, after: u64) -> Result<Vec<EventRecord>> {
        let rows: Vec<(i64, i64, String)> = self.read(|c| {
            let mut stmt =
                c.prepare_cached("SELECT seq, at_ms, payload FROM events WHERE run_id = ?1 AND seq > ?2 ORDER BY seq")?;
            stmt.query_map(params![run.to_string(), i64::try_from(after).unwrap_or(i64::MAX)], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?))
            })?
            .collect()
        })?;
        let mut events = rows
            .into_iter()
            .map(|(seq, at_ms, payload)| {
                let event: Event = serde_json::from_str(&payload)
                    .map_err(|e| Error::Corrupt(format!("run {run} event {seq}: {e}")))?;
                Ok(EventRecord {
                    run_id: run,
                    seq: u64::try_from(seq).unwrap_or(0),
                    at_ms,
                    event,
                })
            })
            .collect::<Result<Vec<_>>>()?;
        crate::restore_inputs(&mut events, || {
            let text: String = self.read(|c| {
                c.prepare_cached(
                    "SELECT COALESCE((SELECT inputs FROM run_inputs WHERE run_id = ?1), inputs) FROM runs WHERE id = ?1",
                )?
                    .query_row([run.to_string()], |r| r.get(0))
            })?;
            serde_json::from_str(&text)
                .map_err(|e| Error::Corrupt(format!("run {run} inputs: {e}")))
        })?;
        Ok(events)
    }

    async fn checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>> {
        let row: Option<(i64, String)> = self.read(|c| {
            c.prepare_cached("SELECT seq, state FROM checkpoints WHERE run_id = ?1")?
                .query_row([run.to_string()], |r| Ok((r.get(0)?, r.get(1)?)))
                .optional()
        })?;
        Ok(row.map(|(seq, state)| Checkpoint {
            seq: u64::try_from(seq).unwrap_or(0),
            state,
        }))
    }

    async fn send_control(&self, run: RunId, control: Control) -> Result<()> {
        self.write(Op::SendControl(run, control)).await.map(drop)
    }

    async fn take_controls(&self, run: RunId) -> Result<Vec<Control>> {
        // Cheap check first: most polls find nothing.
        let n: i64 = self.read(|c| {
            c.prepare_cached("SELECT COUNT(*) FROM controls WHERE run_id = ?1")?
                .query_row([run.to_string()], |r| r.get(0))
        })?;
        if n == 0 {
            return Ok(Vec::new());
        }
        self.write(Op::TakeControls(run)).await
    }

    async fn claim(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()> {
        self.write(Op::Claim {
            run,
            owner: owner.to_string(),
            lease_ms,
            renew: false,
        })
        .await
        .map(drop)
    }

    async fn renew(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()> {
        self.write(Op::Claim {
            run,
            owner: owner.to_string(),
            lease_ms,
            renew: true,
        })
        .await
        .map(drop)
    }

    async fn release(&self, run: RunId, owner: &str) -> Result<()> {
        self.write(Op::Release(run, owner.to_string()))
            .await
            .map(drop)
    }
}
