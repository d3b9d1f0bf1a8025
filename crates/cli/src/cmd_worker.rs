//! `baton worker` (a process that runs the runs of a PostgreSQL database shared with other
//! workers and servers) and `baton workers list|drain` (the workers registered there).

use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use baton_control::Caller;
use baton_control::worker::{Stopped, Worker, WorkerConfig};
use baton_store::postgres::PostgresStore;
use clap::{Args, Subcommand};
use serde_json::json;

use crate::wiring;

/// How a worker runs: shared by `baton worker` and the worker `baton serve` embeds.
#[derive(Args, Clone, Debug)]
pub struct WorkerOptions {
    /// The most runs it drives at once.
    #[arg(long, default_value_t = 8, env = "BATON_WORKER_CONCURRENCY")]
    pub concurrency: u32,
    /// What it offers (e.g. `gpu,sandbox-gvisor`): it claims only runs whose `--worker-tags`
    /// it all has.
    #[arg(
        long = "worker-tags",
        alias = "tags",
        value_delimiter = ',',
        env = "BATON_WORKER_TAGS",
        value_name = "TAG,..."
    )]
    pub tags: Vec<String>,
    /// How long its leases on runs last (renewed every third of it): a worker that dies holds
    /// its runs that long before another takes them over.
    #[arg(
        long,
        default_value = "30s",
        env = "BATON_LEASE",
        value_name = "DURATION"
    )]
    pub lease: humantime::Duration,
    /// How often it looks for runs when no notification came.
    #[arg(
        long,
        default_value = "1s",
        env = "BATON_WORKER_POLL",
        value_name = "DURATION"
    )]
    pub poll: humantime::Duration,
}

impl WorkerOptions {
    pub fn config(&self, grace: Duration) -> Result<WorkerConfig> {
        for t in &self.tags {
            baton_control::worker::check_tag(t)
                .map_err(|m| anyhow::anyhow!("--worker-tags: {m}"))?;
        }
        if self.concurrency == 0 {
            bail!("--concurrency: a worker runs at least 1 run at once");
        }
        let lease: Duration = self.lease.into();
        if lease < Duration::from_millis(300) {
            bail!("--lease: {} is too short (at least 300ms)", self.lease);
        }
        let poll: Duration = self.poll.into();
        if poll.is_zero() {
            bail!("--poll: must be above 0");
        }
        Ok(WorkerConfig {
            tags: self.tags.clone(),
            concurrency: self.concurrency,
            lease,
            poll,
            grace,
        })
    }
}

#[derive(Args)]
pub struct WorkerArgs {
    #[command(flatten)]
    options: WorkerOptions,
    /// On `baton workers drain`, Ctrl-C or SIGTERM: how long the steps in flight get to
    /// finish (and be checkpointed) before the runs are stopped where they are; every run is
    /// handed back for another worker to resume.
    #[arg(
        long,
        default_value = "10s",
        env = "BATON_SHUTDOWN_GRACE",
        value_name = "DURATION"
    )]
    shutdown_grace: humantime::Duration,
    /// Serve this worker's Prometheus metrics at `http://ADDR/metrics` (e.g.
    /// `127.0.0.1:9464`; port 0: any free one, printed on stderr). Default: none.
    #[arg(long, env = "BATON_METRICS_ADDR", value_name = "ADDR")]
    metrics_addr: Option<std::net::SocketAddr>,
    /// The database, a `postgres://` URL (default: $BATON_DB).
    #[arg(long, value_name = "URL")]
    db: Option<String>,
}

#[derive(Subcommand)]
pub enum WorkersCmd {
    /// The workers of the database: id, state, host, version, tags, runs held, last heartbeat.
    List {
        /// Also the workers that stopped.
        #[arg(long)]
        all: bool,
        #[arg(long)]
        json: bool,
        /// The database, a `postgres://` URL (default: $BATON_DB).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
    /// Drains a worker: it takes no new runs, lets its steps in flight finish, hands its runs
    /// back (another worker resumes them) and exits.
    Drain {
        /// The worker's id (`HOST:PID`, as `workers list` shows it).
        id: String,
        /// The database, a `postgres://` URL (default: $BATON_DB).
        #[arg(long, value_name = "URL")]
        db: Option<String>,
    },
}

/// The PostgreSQL database `db` names; anything else is refused, naming what was given.
pub async fn open_pg(db: Option<&str>, what: &str) -> Result<Arc<PostgresStore>> {
    let target = wiring::db_target(db);
    if !baton_store::postgres::is_url(&target) {
        bail!(
            "{what} needs a PostgreSQL database that workers and servers share (--db postgres://... or BATON_DB); '{target}' is a SQLite file"
        );
    }
    match wiring::open_store(Some(&target), baton_store::sqlite::Durability::Process).await? {
        wiring::Store::Postgres(pg) => Ok(pg),
        wiring::Store::Sqlite(_) => bail!("{what}: '{target}' is not a PostgreSQL database"),
    }
}

pub async fn worker(args: WorkerArgs) -> Result<i32> {
    crate::cmd_serve::init_log();
    let config = args.options.config(args.shutdown_grace.into())?;
    let target = wiring::db_target(args.db.as_deref());
    let pg = open_pg(Some(&target), "baton worker").await?;
    let store = wiring::Store::Postgres(pg.clone());
    let control = wiring::control_on(&store)?;
    let lease = args.options.lease;
    let w = Worker::start(
        &Caller::system("worker"),
        control,
        pg.clone(),
        config.clone(),
    )
    .await
    .context("starting the worker")?;
    // Human steps with a `timeout` in runs nobody drives: escalated or ended on time.
    let _timekeeper = w.control().keep_time(&Caller::system("worker"))?;
    let tags = if config.tags.is_empty() {
        "none".to_string()
    } else {
        config.tags.join(",")
    };
    errln!(
        "baton worker {} on {}: concurrency {}, tags {tags}, lease {lease}",
        w.id(),
        pg.url(),
        config.concurrency
    );
    let id = w.id().to_string();
    let metrics = match args.metrics_addr {
        Some(addr) => {
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("--metrics-addr: cannot listen on {addr}"))?;
            errln!("  metrics: http://{}/metrics", listener.local_addr()?);
            Some(tokio::spawn(baton_server::serve_worker_metrics(
                listener,
                w.control().clone(),
                w.stats(),
                std::future::pending(),
            )))
        }
        None => None,
    };
    let stopped = w.run(crate::cmd_serve::stop_signal()).await;
    if let Some(m) = metrics {
        m.abort();
    }
    match stopped {
        Stopped::Drained => errln!("baton worker {id}: drained, exiting"),
        Stopped::Stopped => errln!("baton worker {id}: stopped"),
    }
    Ok(0)
}

fn ago(now: i64, at: i64) -> String {
    let s = (now - at).max(0) / 1000;
    match s {
        0..=59 => format!("{s}s ago"),
        60..=3599 => format!("{}m ago", s / 60),
        _ => format!("{}h ago", s / 3600),
    }
}

pub async fn workers(cmd: WorkersCmd) -> Result<i32> {
    match cmd {
        WorkersCmd::List { all, json, db } => {
            let pg = open_pg(db.as_deref(), "baton workers list").await?;
            let now = baton_store::now_ms();
            let list: Vec<_> = pg
                .workers()
                .await?
                .into_iter()
                .filter(|w| all || w.stopped_at_ms.is_none())
                .collect();
            if json {
                let rows: Vec<_> = list
                    .iter()
                    .map(|w| {
                        let mut v = serde_json::to_value(w).unwrap_or_default();
                        v["state"] = json!(w.state(now));
                        v
                    })
                    .collect();
                outln!("{}", serde_json::to_string_pretty(&rows)?);
                return Ok(0);
            }
            if list.is_empty() {
                outln!("no workers (start one with `baton worker --db postgres://...`)");
                return Ok(0);
            }
            let mut rows = vec![[
                "ID".to_string(),
                "STATE".into(),
                "VERSION".into(),
                "TAGS".into(),
                "RUNS".into(),
                "HEARTBEAT".into(),
            ]];
            for w in &list {
                rows.push([
                    w.id.clone(),
                    w.state(now).into(),
                    w.version.clone(),
                    if w.tags.is_empty() {
                        "-".into()
                    } else {
                        w.tags.join(",")
                    },
                    format!("{}/{}", w.runs_held, w.concurrency),
                    ago(now, w.heartbeat_at_ms),
                ]);
            }
            let widths: Vec<usize> = (0..6)
                .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
                .collect();
            for r in rows {
                let line: Vec<String> = r
                    .iter()
                    .zip(&widths)
                    .map(|(c, w)| format!("{c:<w$}"))
                    .collect();
                outln!("{}", line.join("  ").trim_end());
            }
            Ok(0)
        }
        WorkersCmd::Drain { id, db } => {
            let pg = open_pg(db.as_deref(), "baton workers drain").await?;
            match pg.drain_worker(&id).await {
                Ok(w) => {
                    outln!(
                        "worker {} drains: it takes no new runs, finishes its steps in flight, hands its {} run(s) back and exits",
                        w.id,
                        w.runs_held
                    );
                    Ok(0)
                }
                Err(baton_store::Error::Missing { what }) => {
                    errln!("error: no {what}");
                    Ok(1)
                }
                Err(e) => Err(e.into()),
            }
        }
    }
}

/// Where a run of a PostgreSQL database stands with the workers, for `runs show`: the worker
/// holding it, or why it waits in the queue (the tags it requires and the workers that have
/// them). `None`: neither (a run that ended, or that waits for a person).
pub async fn placement(
    pg: &PostgresStore,
    rec: &baton_store::RunRecord,
) -> Result<Option<(serde_json::Value, String)>> {
    let Some((owner, until, tags)) = pg.run_placement(rec.id).await? else {
        return Ok(None);
    };
    let now = baton_store::now_ms();
    if let (Some(o), Some(u)) = (&owner, until)
        && u >= now
        && !rec.status.is_terminal()
    {
        let v = json!({"held_by": o, "lease_until_ms": u, "worker_tags": tags});
        return Ok(Some((v, format!("worker    held by {o}"))));
    }
    if rec.status != baton_types::RunStatus::Pending || owner.is_some() {
        return Ok(None);
    }
    let running: Vec<_> = pg
        .workers()
        .await?
        .into_iter()
        .filter(|w| w.state(now) == "running")
        .collect();
    let able: Vec<&str> = running
        .iter()
        .filter(|w| tags.iter().all(|t| w.tags.contains(t)))
        .map(|w| w.id.as_str())
        .collect();
    let needs = if tags.is_empty() {
        "a worker".to_string()
    } else {
        format!("a worker with tags {}", tags.join(","))
    };
    let reason = if able.is_empty() {
        let seen: Vec<String> = running
            .iter()
            .map(|w| {
                let t = if w.tags.is_empty() {
                    "no tags".to_string()
                } else {
                    w.tags.join(",")
                };
                format!("{} ({t})", w.id)
            })
            .collect();
        if seen.is_empty() {
            format!("waiting for {needs}: no worker is running (start one with `baton worker`)")
        } else {
            format!(
                "waiting for {needs}: no running worker has them (running: {})",
                seen.join("; ")
            )
        }
    } else {
        format!("waiting for {needs}: {} can take it", able.join(", "))
    };
    let v = json!({"queued": true, "worker_tags": tags, "workers_able": able, "reason": reason});
    Ok(Some((v, format!("queued    {reason}"))))
}
