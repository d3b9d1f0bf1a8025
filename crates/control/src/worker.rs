//! A worker: claims runnable runs of a PostgreSQL database shared with other workers and
//! servers, drives each as a background run of this process (the same [`Control::spawn`] a
//! server uses), and says it is alive. `baton worker` is one; `baton serve` embeds one unless
//! it runs API-only.
//!
//! Runs are claimed in one statement with `FOR UPDATE SKIP LOCKED`
//! ([`PostgresStore::claim_runnable`]): two workers never claim one run, and neither waits for
//! the other. The executor renews each lease every third of its length; a worker that dies
//! (`kill -9`, its host lost) stops renewing, its leases expire, and another worker claims the
//! runs and resumes them from their logs, each effect once (the same resume as `baton resume`
//! after a crash). A worker wakes up for work on a notification (`LISTEN baton_work`: a
//! control request queued, a run queued or released) and otherwise looks every `poll`.

use std::collections::HashSet;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use baton_engine::Input;
use baton_store::postgres::{NewWorker, Notice, PostgresStore};
use baton_types::{RunId, RunStatus};

use crate::error::{Error, Result};
use crate::runner::Drive;
use crate::{Caller, Control, Permission};

/// How a worker runs.
#[derive(Clone, Debug)]
pub struct WorkerConfig {
    /// What this worker offers: it claims only runs whose `worker_tags` it all has.
    pub tags: Vec<String>,
    /// The most runs it drives at once.
    pub concurrency: u32,
    /// How long its leases last (renewed every third of it).
    pub lease: Duration,
    /// How often it looks for work when no notification came.
    pub poll: Duration,
    /// On a drain or a stop: how long the steps in flight get to finish before the runs are
    /// stopped where they are (every run is handed back to be claimed by another worker).
    pub grace: Duration,
}

/// Why [`Worker::run`] returned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stopped {
    /// `baton workers drain` asked it to.
    Drained,
    /// Its stop signal came.
    Stopped,
}

/// A tag a run may require or a worker offer: 1 to 64 letters, digits, `-`, `_`, `.` or `:`.
pub fn check_tag(tag: &str) -> std::result::Result<(), String> {
    let ok = !tag.is_empty()
        && tag.len() <= 64
        && tag
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "'{tag}' is not a worker tag (1 to 64 letters, digits, '-', '_', '.' or ':')"
        ))
    }
}

/// What a worker counts, for its metrics (`baton worker --metrics-addr`, a server's
/// `/metrics`).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Runs it claimed (a run claimed again after it was handed back counts again).
    pub claimed: AtomicU64,
    /// Claims, heartbeats and run loads that failed (the database away, a run that cannot be
    /// loaded here).
    pub errors: AtomicU64,
    /// Whether it was asked to drain.
    pub draining: AtomicBool,
}

impl WorkerStats {
    pub fn claimed(&self) -> u64 {
        self.claimed.load(Ordering::Relaxed)
    }

    pub fn errors(&self) -> u64 {
        self.errors.load(Ordering::Relaxed)
    }

    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }
}

/// A registered worker over a [`Control`] that executes (see [`Worker::start`]).
pub struct Worker {
    control: Control,
    db: Arc<PostgresStore>,
    config: WorkerConfig,
    /// `host:pid`: its row in `workers` and the owner of its leases.
    id: String,
    stats: Arc<WorkerStats>,
}

impl Worker {
    /// Registers this process as a worker of `db` (needs the operator,
    /// [`Permission::Platform`]: it runs every tenant's runs). `control` must be over the same
    /// database and must execute (not [`Control::with_queue`]); its lease is set to the
    /// worker's.
    pub async fn start(
        caller: &Caller,
        control: Control,
        db: Arc<PostgresStore>,
        config: WorkerConfig,
    ) -> Result<Self> {
        caller.check(Permission::Platform)?;
        if control.executes_nothing() {
            return Err(Error::internal("a worker needs a control that executes"));
        }
        for t in &config.tags {
            check_tag(t).map_err(|m| Error::invalid_field("tags", m))?;
        }
        if config.concurrency == 0 {
            return Err(Error::invalid_field(
                "concurrency",
                "a worker runs at least 1 run at once",
            ));
        }
        let id = baton_store::process_owner();
        db.register_worker(&NewWorker {
            id: id.clone(),
            version: env!("CARGO_PKG_VERSION").to_string(),
            tags: config.tags.clone(),
            concurrency: config.concurrency,
            lease_ms: millis(config.lease),
        })
        .await?;
        let control = control.with_lease(config.lease);
        Ok(Self {
            control,
            db,
            config,
            id,
            stats: Arc::default(),
        })
    }

    /// What it counts (shared: it goes on counting while it runs).
    pub fn stats(&self) -> Arc<WorkerStats> {
        self.stats.clone()
    }

    /// Its id (`host:pid`), as `baton workers list` shows it.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The control it drives runs with (its lease set).
    pub fn control(&self) -> &Control {
        &self.control
    }

    /// Claims and drives runs until `stop` resolves or a drain is asked; then lets the steps
    /// in flight finish (up to the grace), hands its runs back and records that it stopped.
    /// A database that goes away meanwhile is waited for (warnings on stderr), never fatal.
    pub async fn run(self, stop: impl Future<Output = ()>) -> Stopped {
        let mut notices = self.db.listen();
        let mut poll = tokio::time::interval(self.config.poll);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let beat = (self.config.lease / 3).max(Duration::from_millis(50));
        let mut heartbeat = tokio::time::interval(beat);
        heartbeat.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Runs that could not be loaded here (left to another worker).
        let mut skip: HashSet<RunId> = HashSet::new();
        let mut listening = true;
        tokio::pin!(stop);
        let why = loop {
            tokio::select! {
                () = &mut stop => break Stopped::Stopped,
                _ = heartbeat.tick() => if self.beat().await {
                    break Stopped::Drained;
                },
                n = notices.recv(), if listening => match n {
                    Some(Notice::Work | Notice::Connected) => self.claim(&mut skip).await,
                    // Told at once rather than at the next heartbeat.
                    Some(Notice::Drain { worker }) if worker == self.id => {
                        if self.beat().await {
                            break Stopped::Drained;
                        }
                    }
                    Some(Notice::Drain { .. }) => {}
                    Some(Notice::Logged { .. }) => {}
                    None => listening = false,
                },
                _ = poll.tick() => self.claim(&mut skip).await,
            }
        };
        self.control.shutdown(self.config.grace).await;
        if let Err(e) = self.db.stop_worker(&self.id).await {
            tracing::warn!("worker {}: recording the stop: {e}", self.id);
        }
        why
    }

    /// Says it is alive; `true` when it was asked to drain.
    async fn beat(&self) -> bool {
        match self.db.heartbeat_worker(&self.id).await {
            Ok(Some(true)) => {
                self.stats.draining.store(true, Ordering::Relaxed);
                true
            }
            Ok(Some(false)) => false,
            // Its row went away (removed by hand): register again.
            Ok(None) => {
                if let Err(e) = self.register_again().await {
                    tracing::warn!("worker {}: cannot register again: {e}", self.id);
                }
                false
            }
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("worker {}: heartbeat: {e}", self.id);
                false
            }
        }
    }

    async fn register_again(&self) -> Result<()> {
        self.db
            .register_worker(&NewWorker {
                id: self.id.clone(),
                version: env!("CARGO_PKG_VERSION").to_string(),
                tags: self.config.tags.clone(),
                concurrency: self.config.concurrency,
                lease_ms: millis(self.config.lease),
            })
            .await?;
        Ok(())
    }

    /// Claims as many runs as it has room for, and starts each.
    async fn claim(&self, skip: &mut HashSet<RunId>) {
        let busy = self.control.active_runs().len();
        let room = u32::try_from(busy).map_or(0, |b| self.config.concurrency.saturating_sub(b));
        if room == 0 {
            return;
        }
        let skipped: Vec<RunId> = skip.iter().copied().collect();
        let claimed = match self
            .db
            .claim_runnable(
                &self.id,
                &self.config.tags,
                room,
                millis(self.config.lease),
                &skipped,
            )
            .await
        {
            Ok(c) => c,
            Err(e) => {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!("worker {}: claiming runs: {e}", self.id);
                return;
            }
        };
        for (run, status) in claimed {
            self.stats.claimed.fetch_add(1, Ordering::Relaxed);
            if let Err(e) = self.start_run(run, status).await {
                self.stats.errors.fetch_add(1, Ordering::Relaxed);
                tracing::warn!(run = %run, "worker {}: cannot run it here: {e}", self.id);
                skip.insert(run);
                let _ = self.db_release(run).await;
            }
        }
    }

    async fn db_release(&self, run: RunId) -> Result<()> {
        use baton_store::RunStore;
        self.db.release(run, &self.id).await?;
        Ok(())
    }

    /// Drives a run it claimed, from its log.
    async fn start_run(&self, run: RunId, status: RunStatus) -> Result<()> {
        let services = self.control.services();
        let rec = services
            .store
            .run(run)
            .await?
            .ok_or_else(|| Error::internal(format!("run {run} vanished")))?;
        let program = Arc::new(self.control.program(&rec)?);
        let state = baton_engine::executor::load_state(services, &program, run).await?;
        let resumed = status != RunStatus::Pending;
        tracing::info!(run = %run, "worker {}: claimed (was {status})", self.id);
        drop(self.control.spawn(Drive {
            run,
            tenant: rec.tenant.clone(),
            program,
            state,
            inputs: vec![Input::Start { resumed }],
        }));
        Ok(())
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX).max(1)
}

impl Control {
    /// Brings the events other processes log onto this process's bus as `notices` announce
    /// them ([`Control::relay_logged`]), until the notices end: every subscriber of this
    /// process (SSE, WebSocket) sees the runs any process of the database drives. A missed
    /// notification costs only speed: followers read the log at their poll interval.
    pub fn relay(
        &self,
        mut notices: tokio::sync::mpsc::Receiver<Notice>,
    ) -> tokio::task::JoinHandle<()> {
        let me = self.clone();
        let own = baton_store::process_owner();
        tokio::spawn(async move {
            while let Some(n) = notices.recv().await {
                if let Notice::Logged {
                    run,
                    first,
                    last,
                    tenant,
                    origin,
                } = n
                    && origin != own
                    && let Err(e) = me.relay_logged(run, tenant, first, last).await
                {
                    tracing::warn!(run = %run, "relaying events logged elsewhere: {e}");
                }
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_short_names() {
        assert!(check_tag("sandbox-gvisor").is_ok());
        assert!(check_tag("gpu:a100").is_ok());
        assert!(check_tag("").unwrap_err().contains("not a worker tag"));
        assert!(check_tag("has space").is_err());
        assert!(check_tag(&"x".repeat(65)).is_err());
    }
}
