//! Driving runs: in the foreground (the caller drives a [`Drive`] with [`Control::executor`])
//! or in the background (a tokio task per run, [`Control::spawn`]). Background runs publish
//! every event on an in-process bus and are known to this process, so a pause, cancel or
//! answer for one of them is queued for its task (the executor takes control requests while
//! it runs) instead of being driven a second time here.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use baton_engine::{EventSink, Executor, Input, Program, RunState};
use baton_types::{EventRecord, ModelDelta, RunId, RunStatus, TenantId};
use tokio::sync::broadcast;
use tokio::task::JoinHandle;

use crate::error::{Error, Result};
use crate::{Caller, Control, Permission};

/// A run ready to be driven: its program, its state and the inputs to feed first.
pub struct Drive {
    pub run: RunId,
    pub tenant: TenantId,
    pub program: Arc<Program>,
    pub state: RunState,
    pub inputs: Vec<Input>,
}

/// What the bus carries for a background run, with its tenant (subscribers filter on it).
#[derive(Clone, Debug)]
pub struct BusEvent {
    pub tenant: TenantId,
    pub item: BusItem,
}

/// A logged event, or model output as it streams (never logged; see [`ModelDelta`]).
#[derive(Clone, Debug)]
pub enum BusItem {
    Event(Arc<EventRecord>),
    Delta(Arc<ModelDelta>),
}

impl BusEvent {
    pub fn run_id(&self) -> RunId {
        match &self.item {
            BusItem::Event(r) => r.run_id,
            BusItem::Delta(d) => d.run_id,
        }
    }
}

/// How many events the bus keeps for a slow subscriber before it lags (it can then read the
/// rest from the store with `Control::events`).
const BUS_CAPACITY: usize = 4096;

#[derive(Clone)]
pub(crate) struct Runner {
    active: Arc<Mutex<HashMap<RunId, tokio::task::AbortHandle>>>,
    bus: broadcast::Sender<BusEvent>,
    /// `true` once the process stops: every background run drains (see `Control::shutdown`).
    drain: Arc<tokio::sync::watch::Sender<bool>>,
    /// How long the leases of the runs driven here last.
    lease: std::time::Duration,
    /// Set: this process executes nothing; runs are left to workers (see
    /// [`Control::with_queue`]).
    pub(crate) queue: Option<Arc<baton_store::postgres::PostgresStore>>,
    /// Set: this process executes the runs of a shared database whose `worker_tags` it has,
    /// and leaves the others to workers that have them (see [`Control::with_worker_tags`]).
    placement: Option<(Arc<baton_store::postgres::PostgresStore>, Arc<[String]>)>,
}

impl Runner {
    pub(crate) fn new() -> Self {
        Self {
            active: Arc::default(),
            bus: broadcast::channel(BUS_CAPACITY).0,
            drain: Arc::new(tokio::sync::watch::channel(false).0),
            lease: std::time::Duration::from_millis(baton_engine::executor::LEASE_MS),
            queue: None,
            placement: None,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<RunId, tokio::task::AbortHandle>> {
        self.active.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Whether a task of this process is driving `run`.
    pub(crate) fn is_active(&self, run: RunId) -> bool {
        self.lock().contains_key(&run)
    }
}

struct BusSink {
    tenant: TenantId,
    bus: broadcast::Sender<BusEvent>,
    /// Folds every event into the metrics (with the program: it knows the steps' kinds).
    telemetry: Arc<crate::observe::Telemetry>,
    program: Arc<Program>,
}

impl EventSink for BusSink {
    fn publish(&self, ev: &EventRecord) {
        self.telemetry.record(&self.program, ev);
        // No subscriber is not an error.
        let _ = self.bus.send(BusEvent {
            tenant: self.tenant.clone(),
            item: BusItem::Event(Arc::new(ev.clone())),
        });
    }

    /// Agents stream their answers only while someone follows the bus (a subscriber that
    /// comes later sees the next turns' output).
    fn wants_deltas(&self) -> bool {
        self.bus.receiver_count() > 0
    }

    fn delta(&self, delta: &ModelDelta) {
        let _ = self.bus.send(BusEvent {
            tenant: self.tenant.clone(),
            item: BusItem::Delta(Arc::new(delta.clone())),
        });
    }
}

/// Removes a run from the active set when its task ends, however it ends.
struct ActiveGuard {
    runner: Runner,
    run: RunId,
}

impl Drop for ActiveGuard {
    fn drop(&mut self) {
        self.runner.lock().remove(&self.run);
    }
}

impl Control {
    /// How long the leases of the runs this process drives last (default 30 s, renewed every
    /// third of it): a process that dies holds its runs that long before a worker takes them
    /// over.
    pub fn with_lease(mut self, lease: std::time::Duration) -> Self {
        self.runner.lease = lease;
        self
    }

    /// This process executes nothing (`baton serve --no-worker`): a run it would drive is left
    /// to the workers of `queue`'s database instead: a new run is queued, and what a resume,
    /// an answer or a resolution would feed it is queued as control requests, which the
    /// worker that claims the run takes.
    pub fn with_queue(mut self, queue: Arc<baton_store::postgres::PostgresStore>) -> Self {
        self.runner.queue = Some(queue);
        self
    }

    /// This process executes runs of `db` (a database shared with workers) as a worker with
    /// `tags` would: a run it would drive that requires tags it lacks is left to the workers
    /// instead (as [`Control::with_queue`] leaves every run).
    pub fn with_worker_tags(
        mut self,
        db: Arc<baton_store::postgres::PostgresStore>,
        tags: &[String],
    ) -> Self {
        self.runner.placement = Some((db, tags.into()));
        self
    }

    /// Whether runs here are shared with workers (see [`Control::with_queue`] and
    /// [`Control::with_worker_tags`]): only then can a run require worker tags.
    pub fn shares_work(&self) -> bool {
        self.runner.queue.is_some() || self.runner.placement.is_some()
    }

    /// Whether this process leaves every run to workers (see [`Control::with_queue`]).
    pub fn executes_nothing(&self) -> bool {
        self.runner.queue.is_some()
    }

    /// An executor for `program` over this control's services (the foreground drive: the
    /// caller adds its sink and loops on `drive`).
    pub fn executor(&self, program: Arc<Program>) -> Executor {
        Executor::new(program, self.services.clone()).with_lease(self.runner.lease)
    }

    /// An executor whose events reach the bus, for a change applied here to a run that no
    /// process drives (a pause, an edit, breakpoints): live subscribers see it at once, not
    /// only when they read the log again.
    pub(crate) fn publishing_executor(&self, program: Arc<Program>, tenant: TenantId) -> Executor {
        self.executor(program.clone()).with_sink(Arc::new(BusSink {
            tenant,
            bus: self.runner.bus.clone(),
            telemetry: self.telemetry.clone(),
            program,
        }))
    }

    /// Drives `d` on a tokio task until the run ends, waits for a person or pauses. Its
    /// events go to the bus. The handle gives the status reached (dropping it detaches). A run
    /// a task of this process already drives is not driven twice: that handle gives `Conflict`.
    pub fn spawn(&self, d: Drive) -> JoinHandle<Result<RunStatus>> {
        let runner = self.runner.clone();
        if let Some(queue) = runner.queue.clone() {
            let store = self.services.store.clone();
            return tokio::spawn(async move { queue_drive(&*store, &queue, d).await });
        }
        if let Some((db, tags)) = runner.placement.clone() {
            // Whether this process may run it is asked of the database first.
            let me = Control {
                runner: Runner {
                    placement: None,
                    ..runner
                },
                ..self.clone()
            };
            let run = d.run;
            return tokio::spawn(async move {
                let required = match db.run_placement(run).await? {
                    Some((_, _, required)) => required,
                    None => Vec::new(),
                };
                if required.iter().all(|t| tags.contains(t)) {
                    me.spawn(d)
                        .await
                        .map_err(|e| Error::internal(format!("run {run}: {e}")))?
                } else {
                    queue_drive(&*me.services.store, &db, d).await
                }
            });
        }
        if *runner.drain.borrow() {
            let run = d.run;
            return tokio::spawn(async move {
                Err(Error::Unavailable {
                    message: format!(
                        "the server is stopping: run {run} is not started here (the next start resumes it)"
                    ),
                })
            });
        }
        if runner.is_active(d.run) {
            let run = d.run;
            return tokio::spawn(async move {
                Err(Error::conflict(format!(
                    "run {run} is already being driven by this process"
                )))
            });
        }
        let exec = self
            .executor(d.program.clone())
            .with_drain(runner.drain.subscribe())
            .with_sink(Arc::new(BusSink {
                tenant: d.tenant,
                bus: runner.bus.clone(),
                telemetry: self.telemetry.clone(),
                program: d.program,
            }));
        let mut active = runner.lock();
        let guard = ActiveGuard {
            runner: runner.clone(),
            run: d.run,
        };
        let (run, state, inputs) = (d.run, d.state, d.inputs);
        let task = tokio::spawn(async move {
            let _guard = guard;
            let st = exec.drive(state, inputs).await.map_err(Error::from);
            if let Err(e) = &st {
                tracing::warn!(run = %run, "background run stopped: {e}");
            }
            st.map(|st| st.status)
        });
        active.insert(run, task.abort_handle());
        task
    }

    /// Every event of the runs this process drives in the background, as they are logged
    /// (and of the runs other processes drive, as [`Control::relay_logged`] brings them).
    pub fn subscribe(&self) -> broadcast::Receiver<BusEvent> {
        self.runner.bus.subscribe()
    }

    /// Puts events `first..=last` of `run`, which another process logged, on this process's
    /// bus (read from the log: it is the truth; a notification only says they are there), so
    /// that this process's subscribers see them at once. A run this process drives is left
    /// alone (its events are on the bus already).
    pub async fn relay_logged(
        &self,
        run: RunId,
        tenant: TenantId,
        first: u64,
        last: u64,
    ) -> Result<()> {
        if self.runner.is_active(run) || first == 0 {
            return Ok(());
        }
        for rec in self.services.store.events(run, first - 1).await? {
            if rec.seq > last {
                break;
            }
            let _ = self.runner.bus.send(BusEvent {
                tenant: tenant.clone(),
                item: BusItem::Event(Arc::new(rec)),
            });
        }
        Ok(())
    }

    /// The runs a task of this process is driving now.
    pub fn active_runs(&self) -> Vec<RunId> {
        self.runner.lock().keys().copied().collect()
    }

    /// Resumes in the background every run of every tenant that was running when the
    /// process driving it stopped (`interrupted`), and returns their ids. For a server
    /// starting up; needs the operator ([`Permission::Platform`]).
    pub async fn resume_interrupted(&self, caller: &Caller) -> Result<Vec<RunId>> {
        caller.check(Permission::Platform)?;
        if self.executes_nothing() {
            return Ok(Vec::new());
        }
        let mut out = Vec::new();
        for t in self.tenancy.tenants().await? {
            let q = baton_store::ListQuery {
                status: Some(RunStatus::Interrupted),
                ..Default::default()
            };
            for rec in self.services.store.list_runs(&t.id, q).await? {
                if self.runner.is_active(rec.id) {
                    continue;
                }
                let program = match self.program(&rec) {
                    Ok(p) => Arc::new(p),
                    Err(e) => {
                        tracing::warn!(run = %rec.id, "cannot resume: {e}");
                        continue;
                    }
                };
                let state =
                    baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
                self.spawn(Drive {
                    run: rec.id,
                    tenant: rec.tenant.clone(),
                    program,
                    state,
                    inputs: vec![Input::Start { resumed: true }],
                });
                out.push(rec.id);
            }
        }
        Ok(out)
    }

    /// Stops every background run of this process, each at a checkpoint where it can: new
    /// runs are refused, the steps in flight get `grace` to finish (their results logged,
    /// nothing new started), and what is still running then is stopped where it is. Every
    /// claim is released, so the runs read as `interrupted` and the next start resumes them
    /// from their log (a step cut short runs again with its idempotency key).
    pub async fn shutdown(&self, grace: std::time::Duration) {
        self.runner.drain.send_replace(true);
        let until = tokio::time::Instant::now() + grace;
        while !self.runner.lock().is_empty() && tokio::time::Instant::now() < until {
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
        }
        let runs: Vec<(RunId, tokio::task::AbortHandle)> = self.runner.lock().drain().collect();
        let owner = baton_store::process_owner();
        for (run, task) in runs {
            tracing::warn!(run = %run, "still running after the shutdown grace: stopped where it was");
            task.abort();
            let _ = self.services.store.release(run, &owner).await;
        }
    }
}

/// Leaves `d` to the workers (a process that executes nothing): what its inputs would feed the
/// run is queued as control requests (the claiming worker takes them), and a new run is
/// released to be claimed. Returns the run's status as it stays here.
async fn queue_drive(
    store: &dyn baton_store::RunStore,
    queue: &baton_store::postgres::PostgresStore,
    d: Drive,
) -> Result<RunStatus> {
    use baton_store::Control as C;
    for input in d.inputs {
        let c = match input {
            Input::Start { .. } => continue,
            Input::Resume { stepping } => C::Resume { stepping },
            Input::RaiseBudget { changes, by } => C::RaiseBudget { changes, by },
            Input::Pause => C::Pause,
            Input::Cancel => C::Cancel,
            Input::Human {
                step,
                approved,
                value,
                comment,
                by,
            } => C::Human {
                step,
                approved,
                value,
                comment,
                by,
            },
            Input::Resolve {
                step,
                resolution,
                value,
                by,
            } => C::Resolve {
                step,
                resolution,
                value,
                by,
            },
            Input::Agent { agent, action, by } => C::Agent { agent, action, by },
            Input::Edit { edits, by } => C::Edit { edits, by },
            Input::Breakpoints { change, by } => C::Breakpoints { change, by },
            other => {
                return Err(Error::internal(format!(
                    "run {}: {other:?} cannot be left to a worker",
                    d.run
                )));
            }
        };
        store.send_control(d.run, c).await?;
    }
    if d.state.status == RunStatus::Pending {
        queue.queue_run(d.run).await?;
    }
    Ok(d.state.status)
}
