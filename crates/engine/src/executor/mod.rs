//! The executor: the outer loop around the state machine. For every batch of inputs it asks
//! the machine to decide, logs all the events in one write, then performs the actions the
//! machine returned: it runs model and tool calls concurrently (as futures of one task:
//! branches need no spawned task each), schedules retries, cancels work, polls for control
//! requests from other processes, and publishes events to a sink (CLI progress, later the
//! API's streams).
//!
//! - `runs`: creating a run and rebuilding its state from the store;
//! - `work`: the future of a step's work (tool call, sandbox step, agent loop).

mod judge;
mod runs;
mod work;

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use baton_llm::ModelResolver;
use baton_store::{Batch, Checkpoint, Control, RunStore};
use baton_tools::Registry;
use baton_types::{Event, EventRecord, RunId, RunStatus};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;

pub use runs::{create_run, load_state};

use crate::machine::{Action, Decision, Input, Machine, RunState};
use crate::program::Program;
use work::{Launch, Tokens};

/// Receives every event once it is in the log.
pub trait EventSink: Send + Sync {
    fn publish(&self, ev: &EventRecord);

    /// Whether this sink shows model output as it streams ([`EventSink::delta`]). Agents then
    /// stream their answers; otherwise they ask for whole answers (cheaper).
    fn wants_deltas(&self) -> bool {
        false
    }

    /// Model output as it streams (not logged; see [`baton_types::ModelDelta`]).
    fn delta(&self, _delta: &baton_types::ModelDelta) {}
}

/// What the executor uses to act.
#[derive(Clone)]
pub struct Services {
    pub store: Arc<dyn RunStore>,
    pub models: Arc<dyn ModelResolver>,
    pub tools: Arc<Registry>,
}

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Store(#[from] baton_store::Error),
    #[error("the stored state of run {run} cannot be read: {message}")]
    State { run: RunId, message: String },
    #[error("{0}")]
    Refused(#[from] crate::machine::Refused),
}

/// Waits until `drain` changes (forever without one, or once its sender is gone).
async fn drain_asked(drain: &mut Option<tokio::sync::watch::Receiver<bool>>) {
    match drain {
        Some(rx) => {
            if rx.changed().await.is_err() {
                *drain = None;
                std::future::pending::<()>().await;
            }
        }
        None => std::future::pending().await,
    }
}

/// How often a running executor looks for control requests from other processes.
const CONTROL_POLL: Duration = Duration::from_millis(200);
/// How long a run's lease lasts unless [`Executor::with_lease`] says otherwise (renewed every
/// third of it while the run is driven).
pub const LEASE_MS: u64 = 30_000;

/// Runs one run until it ends, waits for a person, or pauses.
pub struct Executor {
    program: Arc<Program>,
    /// The tools' fixed network hosts (see `Machine::with_networks`).
    networks: std::collections::BTreeMap<String, Vec<String>>,
    services: Services,
    sink: Option<Arc<dyn EventSink>>,
    owner: String,
    /// How long each claim or renewal of the run's lease lasts.
    lease_ms: u64,
    http_allow: Vec<String>,
    checkpoints: bool,
    /// Each agent's model, once resolved.
    models: HashMap<String, OnceLock<ResolvedModel>>,
    /// Some agent may send messages: each agent turn takes its inbox.
    messaging: bool,
    /// What each agent can reach (offered in its team tools), by agent name.
    reach: HashMap<String, Arc<crate::team::Reach>>,
    /// Set to `true` when the process stops (see [`Executor::with_drain`]).
    drain: Option<tokio::sync::watch::Receiver<bool>>,
    /// A replay: effects are served from this recording (see [`Executor::with_replay`]), with
    /// the tools agents call in it.
    replay: Option<(Arc<crate::replay::Recording>, Arc<Registry>)>,
}

type Work = BoxFuture<'static, Input>;

/// A model reference with the environment expanded, and the model it names.
type ResolvedModel = (String, Arc<dyn baton_llm::ChatModel>);

/// Said once an input is in the log (an agent's tool call is sent only then), with what the
/// machine answered for a team call or a turn's inbox; dropped when the input was refused.
enum Ack {
    /// Call `call` of `step` was logged: sent `None` to send it, or its result when the
    /// machine answered it (a call the policy denied: journaled with its refusal, never sent).
    Logged {
        step: String,
        call: u32,
        tx: tokio::sync::oneshot::Sender<Option<serde_json::Value>>,
    },
    /// The result of team call `call` of `step`, from its journal.
    Answer {
        step: String,
        call: u32,
        answer: tokio::sync::oneshot::Sender<(serde_json::Value, bool)>,
    },
    /// The messages `turn` of `step` received, from its journal.
    Inbox {
        step: String,
        turn: u32,
        answer: tokio::sync::oneshot::Sender<Vec<baton_types::TeamMessage>>,
    },
}

impl Ack {
    /// Answers, from the state the logged events left.
    fn send(self, st: &RunState) {
        let journal = |step: &str| st.steps.get(step).and_then(|s| s.journal.as_deref());
        match self {
            Ack::Logged { step, call, tx } => {
                // A call's result is logged only after it was sent, so a result already
                // there is the machine's own answer.
                let answered = journal(&step)
                    .and_then(|j| j.call(call))
                    .filter(|c| c.call == call)
                    .and_then(|c| c.result.as_ref())
                    .map(|(v, _)| v.clone());
                let _ = tx.send(answered);
            }
            Ack::Answer { step, call, answer } => {
                if let Some(r) = journal(&step)
                    .and_then(|j| j.call(call))
                    .and_then(|c| c.result.clone())
                {
                    let _ = answer.send(r);
                }
            }
            Ack::Inbox { step, turn, answer } => {
                let got = journal(&step).and_then(|j| j.inbox_of(turn));
                let _ = answer.send(got.map(<[_]>::to_vec).unwrap_or_default());
            }
        }
    }
}

/// An input waiting for the machine, with who waits for it to be logged.
type Queued = (Input, Option<Ack>);

/// Progress reported by running steps, for the executor's loop. Allocates only when used (a
/// channel would allocate a block per run up front: it counts at 10,000 runs at once).
#[derive(Default)]
struct ProgressQueue {
    items: std::sync::Mutex<Vec<Queued>>,
    notify: tokio::sync::Notify,
}

impl ProgressQueue {
    fn push(&self, input: Input, logged: Option<Ack>) {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((input, logged));
        self.notify.notify_one();
    }

    fn drain_into(&self, queue: &mut VecDeque<Queued>) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(items.drain(..));
    }
}

/// One drive of a run: what the loop holds between batches.
struct Drive {
    run_str: String,
    queue: VecDeque<Queued>,
    work: FuturesUnordered<Work>,
    tokens: Tokens,
    progress: Arc<ProgressQueue>,
    decided: Decision,
    /// The agents a person paused, for their running steps (runs with agents only).
    paused: Option<tokio::sync::watch::Sender<std::collections::BTreeSet<String>>>,
}

impl Executor {
    pub fn new(program: Arc<Program>, services: Services) -> Self {
        let http_allow = program.doc.policy.http_allow.clone();
        let models = program
            .doc
            .agents
            .keys()
            .map(|k| (k.clone(), OnceLock::new()))
            .collect();
        let messaging = program.doc.agents.values().any(|a| {
            a.tools
                .iter()
                .any(|t| t == "message.send" || t == "message.broadcast")
        });
        let reach = program
            .doc
            .agents
            .keys()
            .map(|k| {
                let name = baton_types::agent_name(k);
                (name.to_string(), Arc::new(reach(&program.doc, name)))
            })
            .collect();
        let networks = services.tools.networks();
        Self {
            models,
            messaging,
            reach,
            networks,
            program,
            services,
            sink: None,
            owner: baton_store::process_owner(),
            lease_ms: LEASE_MS,
            http_allow,
            checkpoints: true,
            drain: None,
            replay: None,
        }
    }

    /// Replays a run: model replies, tool results and tool steps' results come from
    /// `recording` (with its `live_tools`, only model replies do); retries do not wait.
    pub fn with_replay(mut self, recording: Arc<crate::replay::Recording>) -> Self {
        let tools = Arc::new(recording.registry(&self.services.tools));
        self.replay = Some((recording, tools));
        self
    }

    /// Stops the drive gracefully once `drain` says `true`: the work in flight finishes and
    /// its results are logged (each step that ends is checkpointed), nothing new is started
    /// (a step the machine started meanwhile is in the log, and a resume runs it with its
    /// key), and `drive` returns with the run still `running`, to be resumed.
    pub fn with_drain(mut self, drain: tokio::sync::watch::Receiver<bool>) -> Self {
        self.drain = Some(drain);
        self
    }

    /// How long the run's lease lasts (default [`LEASE_MS`]); renewed every third of it. A
    /// process that dies holds its runs until then (on its own host, only while it lives).
    pub fn with_lease(mut self, lease: Duration) -> Self {
        self.lease_ms = u64::try_from(lease.as_millis()).unwrap_or(u64::MAX).max(1);
        self
    }

    pub fn with_sink(mut self, sink: Arc<dyn EventSink>) -> Self {
        self.sink = Some(sink);
        self
    }

    /// Whether a checkpoint is written with each finished step (default true).
    pub fn with_checkpoints(mut self, on: bool) -> Self {
        self.checkpoints = on;
        self
    }

    /// Drives the run: takes it (claim), feeds `inputs`, then runs until nothing can move
    /// without outside help. Returns the state reached.
    pub async fn drive(&self, mut st: RunState, inputs: Vec<Input>) -> Result<RunState, Error> {
        let store = &self.services.store;
        store.claim(st.run_id, &self.owner, self.lease_ms).await?;
        let r = self.drive_claimed(&mut st, inputs).await;
        let _ = store.release(st.run_id, &self.owner).await;
        r.map(|()| st)
    }

    /// Changes the steps a run that no process drives pauses before, logged as
    /// `breakpoints_set` (nothing else happens: a stopped run stays stopped). A run driven
    /// elsewhere gets the change as a control request instead.
    pub async fn change_breakpoints(
        &self,
        mut st: RunState,
        change: baton_types::BreakpointChange,
        by: Option<String>,
    ) -> Result<RunState, Error> {
        let store = &self.services.store;
        store.claim(st.run_id, &self.owner, self.lease_ms).await?;
        let now = baton_store::now_ms();
        let decided = {
            let machine = Machine::new(&self.program);
            machine.set_now(now);
            machine.handle(&mut st, Input::Breakpoints { change, by })
        };
        let r = match decided {
            Ok(mut d) if !d.events.is_empty() => self.commit(&mut st, &mut d.events, now).await,
            Ok(_) => Ok(()),
            Err(refused) => Err(refused.into()),
        };
        let _ = store.release(st.run_id, &self.owner).await;
        r.map(|()| st)
    }

    async fn drive_claimed(&self, st: &mut RunState, inputs: Vec<Input>) -> Result<(), Error> {
        let mut machine = Machine::new(&self.program).with_networks(&self.networks);
        let mut d = Drive {
            run_str: st.run_id.to_string(),
            queue: inputs.into_iter().map(|i| (i, None)).collect(),
            work: FuturesUnordered::new(),
            tokens: Tokens::new(),
            progress: Arc::new(ProgressQueue::default()),
            decided: Decision::default(),
            paused: (!self.program.doc.agents.is_empty())
                .then(|| tokio::sync::watch::Sender::new(st.team.paused())),
        };
        self.resume_work(st, &mut d).await?;
        let mut poll =
            tokio::time::interval_at(tokio::time::Instant::now() + CONTROL_POLL, CONTROL_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renew = Instant::now();
        let mut drain = self.drain.clone();
        loop {
            self.decide_batch(&mut machine, st, &mut d).await?;
            let draining = drain.as_ref().is_some_and(|r| *r.borrow());
            for a in std::mem::take(&mut d.decided.actions) {
                if !draining {
                    self.act(st, a, &mut d);
                }
            }
            if d.work.is_empty() && (draining || !can_move(st)) {
                return Ok(());
            }
            tokio::select! {
                biased;
                // The process stops: look again (the loop ends once the work in flight has).
                () = drain_asked(&mut drain), if !draining => {}
                // Progress first: a step's progress is sent before its result.
                () = d.progress.notify.notified() => d.progress.drain_into(&mut d.queue),
                Some(input) = d.work.next() => {
                    // Progress sent while the result was produced goes first.
                    d.progress.drain_into(&mut d.queue);
                    d.queue.push_back((input, None));
                    // Other results already there join the same write.
                    while let Some(Some(input)) = futures::FutureExt::now_or_never(d.work.next()) {
                        d.progress.drain_into(&mut d.queue);
                        d.queue.push_back((input, None));
                    }
                }
                _ = poll.tick() => {
                    for c in self.services.store.take_controls(st.run_id).await? {
                        d.queue.push_back((control_input(c), None));
                    }
                    queue_due_timeouts(st, &mut d);
                    if last_renew.elapsed() > Duration::from_millis(self.lease_ms / 3) {
                        self.services.store.renew(st.run_id, &self.owner, self.lease_ms).await?;
                        last_renew = Instant::now();
                    }
                }
            }
        }
    }

    /// Every input ready now is decided, then all their events go to the log in one write,
    /// and only then is anything acted on (the caller performs the actions). One time for the
    /// batch: the events are applied at it and logged with it, so a replay applies them at the
    /// same time (the wall-time budget counts from it).
    async fn decide_batch(
        &self,
        // `&mut`: a shared reference would not be `Send` (the machine's clock is a `Cell`).
        machine: &mut Machine<'_>,
        st: &mut RunState,
        d: &mut Drive,
    ) -> Result<(), Error> {
        let now = baton_store::now_ms();
        machine.set_now(now);
        let mut acks = Vec::new();
        while let Some((input, ack)) = d.queue.pop_front() {
            // A tool call is sent only while its attempt still runs (a runaway call fails its
            // step instead of being logged).
            let call_of = match &input {
                Input::ToolCall { step, attempt, .. } => Some((step.clone(), *attempt)),
                _ => None,
            };
            match machine.handle_into(st, input, &mut d.decided) {
                Ok(()) if call_of.is_some_and(|(s, a)| !st.runs_attempt(&s, a)) => {}
                Ok(()) => acks.extend(ack),
                Err(refused) => tracing::info!("input refused: {refused}"),
            }
        }
        if !d.decided.events.is_empty() {
            let controlled = d
                .decided
                .events
                .iter()
                .any(|e| matches!(e, Event::AgentControlled { .. }));
            self.commit(st, &mut d.decided.events, now).await?;
            if controlled && let Some(p) = &d.paused {
                p.send_replace(st.team.paused());
            }
        }
        for ack in acks {
            ack.send(st);
        }
        Ok(())
    }

    /// Work that was running when the last process stopped runs again (same key, from its
    /// journal; an effect it cannot repeat safely makes it ambiguous), retries wait again, and
    /// control requests sent meanwhile are taken.
    async fn resume_work(&self, st: &RunState, d: &mut Drive) -> Result<(), Error> {
        // A run with more than its `RunCreated` event has been driven before: requests may
        // wait for it. One this process just created cannot have any yet.
        let driven_before = st.last_seq > 1;
        for (step, sr) in st.running_work() {
            let how = Launch {
                resumed: true,
                run_str: &d.run_str,
                progress: &d.progress,
                paused: d.paused.as_ref(),
            };
            if let Some(fut) = self.launch(st, &step, &sr, how, &mut d.tokens) {
                d.work.push(fut);
            }
        }
        for step in st.retry_waits() {
            d.work
                .push(Box::pin(async move { Input::RetryDue { step } }));
        }
        queue_due_timeouts(st, d);
        if driven_before {
            for c in self.services.store.take_controls(st.run_id).await? {
                d.queue.push_back((control_input(c), None));
            }
        }
        Ok(())
    }

    /// Appends events (with status, and a checkpoint when a step ended) in one write; takes
    /// the events out of `evs`.
    async fn commit(&self, st: &mut RunState, evs: &mut Vec<Event>, now: i64) -> Result<(), Error> {
        let first = st.last_seq + 1;
        let step_ended = evs.iter().any(|e| {
            matches!(
                e,
                Event::StepSucceeded { .. }
                    | Event::StepFailed { .. }
                    | Event::RunSucceeded { .. }
                    | Event::RunFailed { .. }
                    | Event::RunCancelled
            )
        });
        st.last_seq += evs.len() as u64;
        let records: Vec<EventRecord> = evs
            .drain(..)
            .enumerate()
            .map(|(i, event)| EventRecord {
                run_id: st.run_id,
                seq: first + i as u64,
                at_ms: now,
                event,
            })
            .collect();
        // A state that cannot be written (it always can) only costs the checkpoint: the
        // events alone rebuild it.
        // The inputs are left out: the run's row holds them once (`load_state` puts them
        // back), so a large input is not written again with every step.
        let checkpoint = (self.checkpoints && step_ended)
            .then(|| {
                let inputs = std::mem::take(&mut st.inputs);
                let state = serde_json::to_string(&*st).ok();
                st.inputs = inputs;
                state
            })
            .flatten()
            .map(|state| Checkpoint {
                seq: st.last_seq,
                state,
            });
        // Copies for the sink only when there is one.
        let published = self.sink.as_ref().map(|_| records.clone());
        let batch = Batch {
            events: records,
            status: Some(st.status),
            outputs: st
                .result
                .clone()
                .filter(|_| st.status == RunStatus::Succeeded),
            error: st.error.clone().filter(|_| st.status == RunStatus::Failed),
            checkpoint,
        };
        self.services.store.append(st.run_id, batch).await?;
        if let (Some(sink), Some(records)) = (&self.sink, published) {
            for r in &records {
                sink.publish(r);
            }
        }
        Ok(())
    }

    /// Performs one action of a logged decision.
    fn act(&self, st: &RunState, action: Action, d: &mut Drive) {
        match action {
            Action::Launch { step } => {
                // Once per attempt, for the attempt running now.
                let how = Launch {
                    resumed: false,
                    run_str: &d.run_str,
                    progress: &d.progress,
                    paused: d.paused.as_ref(),
                };
                if let Some(sr) = st.steps.get(&step)
                    && sr.phase == crate::machine::Phase::Running
                    && d.tokens.get(&step).is_none_or(|(a, _)| *a != sr.attempt)
                    && let Some(fut) = self.launch(st, &step, sr, how, &mut d.tokens)
                {
                    d.work.push(fut);
                }
            }
            Action::RetryAfter { step, delay_ms } => {
                // A replay does not wait: the clock is not part of what it checks.
                let delay_ms = if self.replay.is_some() { 0 } else { delay_ms };
                d.work.push(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(delay_ms)).await;
                    Input::RetryDue { step }
                }));
            }
            Action::Cancel { step } => {
                if let Some((_, t)) = d.tokens.remove(&step) {
                    t.cancel();
                }
            }
            Action::CancelAll => {
                for (_, (_, t)) in std::mem::take(&mut d.tokens) {
                    t.cancel();
                }
            }
            Action::Release { step } => {
                d.tokens.remove(&step);
            }
        }
    }
}

/// The other agents and the channels of `doc` that `agent` can reach.
fn reach(doc: &baton_types::WorkflowDoc, agent: &str) -> crate::team::Reach {
    let mut agents: Vec<String> = Vec::new();
    for k in doc.agents.keys() {
        let n = baton_types::agent_name(k);
        if n != agent && !agents.iter().any(|a| a == n) {
            agents.push(n.to_string());
        }
    }
    let channels = doc.channels.keys().cloned().collect();
    crate::team::Reach { agents, channels }
}

/// Whether a run with no work in flight can still move without outside help.
/// Human steps whose deadline has passed get their timeout (a run that only waits for people
/// is not driven meanwhile: whoever drives it next, or `baton serve`'s timekeeper, applies it).
fn queue_due_timeouts(st: &RunState, d: &mut Drive) {
    let now = baton_store::now_ms();
    for (step, deadline) in st.human_deadlines() {
        if deadline <= now {
            d.queue.push_back((Input::HumanTimeout { step }, None));
        }
    }
    for (step, deadline) in st.message_deadlines() {
        if deadline <= now {
            d.queue.push_back((Input::MessageTimeout { step }, None));
        }
    }
}

fn can_move(st: &RunState) -> bool {
    if st.status.is_terminal()
        || matches!(
            st.status,
            RunStatus::Waiting | RunStatus::Paused | RunStatus::BudgetExceeded
        )
    {
        return false;
    }
    // Running with nothing ready or active: a bug, but never hang on it.
    !(st.status == RunStatus::Running && st.ready.is_empty() && st.steps.is_empty())
}

fn control_input(c: Control) -> Input {
    match c {
        Control::Pause => Input::Pause,
        Control::Resume { stepping } => Input::Resume { stepping },
        Control::RaiseBudget { changes, by } => Input::RaiseBudget { changes, by },
        Control::Cancel => Input::Cancel,
        Control::Agent { agent, action, by } => Input::Agent { agent, action, by },
        Control::Edit { edits, by } => Input::Edit { edits, by },
        Control::Breakpoints { change, by } => Input::Breakpoints { change, by },
        Control::Human {
            step,
            approved,
            value,
            comment,
            by,
        } => Input::Human {
            step,
            approved,
            value,
            comment,
            by,
        },
        Control::Resolve {
            step,
            resolution,
            value,
            by,
        } => Input::Resolve {
            step,
            resolution,
            value,
            by,
        },
    }
}
