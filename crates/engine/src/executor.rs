//! The executor: the outer loop around the state machine. It logs every event before acting
//! on it, runs model and tool calls concurrently (as futures of one task: branches need no
//! spawned task each), schedules retries, polls for control requests from other processes,
//! and publishes events to a sink (CLI progress, later the API's streams).

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant};

use baton_llm::ModelResolver;
use baton_store::{Batch, Checkpoint, Control, NewRun, RunStore};
use baton_tools::{Registry, ToolContext};
use baton_types::{Event, EventRecord, RunId, RunStatus, StepError, StepErrorKind, Usage};
use futures::StreamExt;
use futures::future::BoxFuture;
use futures::stream::FuturesUnordered;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::agent::{self, AgentJob};
use crate::context;
use crate::machine::{Input, Machine, RunOptions, RunState};
use crate::program::{NodeKind, Program};

/// Receives every event once it is in the log.
pub trait EventSink: Send + Sync {
    fn publish(&self, ev: &EventRecord);
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

/// How often a running executor looks for control requests from other processes.
const CONTROL_POLL: Duration = Duration::from_millis(200);
const LEASE_MS: u64 = 30_000;

/// Creates a run in the store.
pub async fn create_run(
    services: &Services,
    program: &Program,
    source: &str,
    path: Option<&Path>,
    inputs: Value,
    options: &RunOptions,
) -> Result<RunId, Error> {
    let id = RunId::new();
    let now = baton_store::now_ms();
    // The run and its first event in one write.
    services
        .store
        .create_run(NewRun {
            id,
            workflow_name: program.doc.name.clone(),
            workflow_source: source.to_string(),
            workflow_path: path.map(|p| p.display().to_string()),
            inputs: inputs.clone(),
            options: serde_json::to_value(options).unwrap_or(Value::Null),
            created_at_ms: now,
            events: vec![EventRecord {
                run_id: id,
                seq: 1,
                at_ms: now,
                event: Event::RunCreated {
                    workflow: program.doc.name.clone(),
                    inputs,
                },
            }],
        })
        .await?;
    Ok(id)
}

/// Rebuilds a run's state from its checkpoint and the events after it.
pub async fn load_state(
    services: &Services,
    program: &Program,
    run: RunId,
) -> Result<RunState, Error> {
    let rec = services
        .store
        .run(run)
        .await?
        .ok_or(baton_store::Error::NotFound(run))?;
    let options: RunOptions = serde_json::from_value(rec.options.clone()).unwrap_or_default();
    let machine = Machine::new(program);
    let (mut st, after) = match services.store.checkpoint(run).await? {
        Some(Checkpoint { seq, state }) => {
            let st: RunState = serde_json::from_str(&state).map_err(|e| Error::State {
                run,
                message: e.to_string(),
            })?;
            (st, seq)
        }
        None => (RunState::new(run, rec.inputs.clone(), program, &options), 0),
    };
    for ev in services.store.events(run, after).await? {
        machine.apply(&mut st, &ev.event);
        st.last_seq = ev.seq;
    }
    Ok(st)
}

/// Runs one run until it ends, waits for a person, or pauses.
pub struct Executor {
    program: Arc<Program>,
    services: Services,
    sink: Option<Arc<dyn EventSink>>,
    owner: String,
    http_allow: Vec<String>,
    checkpoints: bool,
    /// Each agent's model, once resolved.
    models: HashMap<String, OnceLock<ResolvedModel>>,
}

type Work = BoxFuture<'static, Input>;

/// A model reference with the environment expanded, and the model it names.
type ResolvedModel = (String, Arc<dyn baton_llm::ChatModel>);

/// Progress reported by running steps, for the executor's loop. Allocates only when used (a
/// channel would allocate a block per run up front: it counts at 10,000 runs at once).
#[derive(Default)]
struct ProgressQueue {
    items: std::sync::Mutex<Vec<Input>>,
    notify: tokio::sync::Notify,
}

impl ProgressQueue {
    fn push(&self, input: Input) {
        self.items
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(input);
        self.notify.notify_one();
    }

    fn drain_into(&self, queue: &mut VecDeque<Input>) {
        let mut items = self.items.lock().unwrap_or_else(|p| p.into_inner());
        queue.extend(items.drain(..));
    }
}

/// What the executor does once a logged event says so.
enum Action {
    /// Start the work of a step that started (agent or tool).
    Launch(String),
    /// Ask for another attempt after a delay.
    RetryAfter(String, u64),
    /// Stop a step's work.
    Cancel(String),
    /// Stop all work.
    CancelAll,
    /// A step ended: drop its cancellation handle.
    Forget(String),
}

impl Action {
    fn of(ev: &Event) -> Option<Action> {
        Some(match ev {
            Event::StepStarted { step, .. } => Action::Launch(step.clone()),
            Event::StepFailed {
                step,
                retry_in_ms: Some(ms),
                ..
            } => Action::RetryAfter(step.clone(), *ms),
            Event::StepCancelled { step } => Action::Cancel(step.clone()),
            Event::RunCancelled => Action::CancelAll,
            Event::StepSucceeded { step, .. } | Event::StepFailed { step, .. } => {
                Action::Forget(step.clone())
            }
            _ => return None,
        })
    }
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
        Self {
            models,
            program,
            services,
            sink: None,
            owner: baton_store::sqlite::process_owner(),
            http_allow,
            checkpoints: true,
        }
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
        store.claim(st.run_id, &self.owner, LEASE_MS).await?;
        let r = self.drive_claimed(&mut st, inputs).await;
        let _ = store.release(st.run_id, &self.owner).await;
        r.map(|()| st)
    }

    async fn drive_claimed(&self, st: &mut RunState, inputs: Vec<Input>) -> Result<(), Error> {
        let machine = Machine::new(&self.program);
        let run_str = st.run_id.to_string();
        // A run with more than its `RunCreated` event has been driven before: requests may
        // wait for it. One this process just created cannot have any yet.
        let driven_before = st.last_seq > 1;
        let mut queue: VecDeque<Input> = inputs.into();
        let mut work: FuturesUnordered<Work> = FuturesUnordered::new();
        let mut tokens: BTreeMap<String, (u32, CancellationToken)> = BTreeMap::new();
        let progress_tx = Arc::new(ProgressQueue::default());
        let mut evs: Vec<Event> = Vec::new();
        let mut actions: Vec<Action> = Vec::new();

        // Work that was running when the last process stopped runs again, same key.
        for (step, sr) in st.running_work() {
            if let Some(fut) = self.launch(st, &step, &sr, &run_str, &progress_tx, &mut tokens) {
                work.push(fut);
            }
        }
        for step in st.retry_waits() {
            work.push(Box::pin(async move { Input::RetryDue { step } }));
        }
        if driven_before {
            for c in self.services.store.take_controls(st.run_id).await? {
                queue.push_back(control_input(c));
            }
        }

        let mut poll =
            tokio::time::interval_at(tokio::time::Instant::now() + CONTROL_POLL, CONTROL_POLL);
        poll.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_renew = Instant::now();
        loop {
            // Every input ready now is decided, then all their events go to the log in one
            // write, and only then is anything acted on.
            while let Some(input) = queue.pop_front() {
                let before = evs.len();
                if let Err(refused) = machine.handle_into(st, input, &mut evs) {
                    tracing::info!("input refused: {refused}");
                }
                for ev in &evs[before..] {
                    if let Some(a) = Action::of(ev) {
                        actions.push(a);
                    }
                }
            }
            if !evs.is_empty() {
                self.commit(st, &mut evs).await?;
                for a in actions.drain(..) {
                    self.act(st, a, &run_str, &mut work, &mut tokens, &progress_tx);
                }
            }
            if work.is_empty()
                && (st.status.is_terminal()
                    || matches!(st.status, RunStatus::Waiting | RunStatus::Paused))
            {
                return Ok(());
            }
            if work.is_empty()
                && st.status == RunStatus::Running
                && st.ready.is_empty()
                && st.steps.is_empty()
            {
                // Nothing can move: a bug, but never hang on it.
                return Ok(());
            }
            tokio::select! {
                biased;
                // Progress first: a step's progress is sent before its result.
                () = progress_tx.notify.notified() => progress_tx.drain_into(&mut queue),
                Some(input) = work.next() => {
                    // Progress sent while the result was produced goes first.
                    progress_tx.drain_into(&mut queue);
                    queue.push_back(input);
                    // Other results already there join the same write.
                    while let Some(Some(input)) = futures::FutureExt::now_or_never(work.next()) {
                        progress_tx.drain_into(&mut queue);
                        queue.push_back(input);
                    }
                }
                _ = poll.tick() => {
                    for c in self.services.store.take_controls(st.run_id).await? {
                        queue.push_back(control_input(c));
                    }
                    if last_renew.elapsed() > Duration::from_millis(LEASE_MS / 3) {
                        self.services.store.renew(st.run_id, &self.owner, LEASE_MS).await?;
                        last_renew = Instant::now();
                    }
                }
            }
        }
    }

    /// Appends events (with status, and a checkpoint when a step ended) in one write; takes
    /// the events out of `evs`.
    async fn commit(&self, st: &mut RunState, evs: &mut Vec<Event>) -> Result<(), Error> {
        let now = baton_store::now_ms();
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
        let checkpoint = (self.checkpoints && step_ended)
            .then(|| serde_json::to_string(&*st).ok())
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

    fn act(
        &self,
        st: &RunState,
        action: Action,
        run_str: &str,
        work: &mut FuturesUnordered<Work>,
        tokens: &mut BTreeMap<String, (u32, CancellationToken)>,
        progress: &Arc<ProgressQueue>,
    ) {
        match action {
            Action::Launch(step) => {
                // Once per attempt, for the attempt running now.
                if let Some(sr) = st.steps.get(&step)
                    && tokens.get(&step).is_none_or(|(a, _)| *a != sr.attempt)
                    && let Some(fut) = self.launch(st, &step, sr, run_str, progress, tokens)
                {
                    work.push(fut);
                }
            }
            Action::RetryAfter(step, ms) => {
                work.push(Box::pin(async move {
                    tokio::time::sleep(Duration::from_millis(ms)).await;
                    Input::RetryDue { step }
                }));
            }
            Action::Cancel(step) => {
                if let Some((_, t)) = tokens.remove(&step) {
                    t.cancel();
                }
            }
            Action::CancelAll => {
                for (_, (_, t)) in std::mem::take(tokens) {
                    t.cancel();
                }
            }
            Action::Forget(step) => {
                tokens.remove(&step);
            }
        }
    }

    /// The work of an agent or tool step, as a future giving its result.
    fn launch(
        &self,
        st: &RunState,
        step: &str,
        sr: &crate::machine::StepRun,
        run_str: &str,
        progress: &Arc<ProgressQueue>,
        tokens: &mut BTreeMap<String, (u32, CancellationToken)>,
    ) -> Option<Work> {
        let p = &self.program;
        let node = p.node(sr.node);
        let attempt = sr.attempt;
        let step_s = step.to_string();
        let cancel = CancellationToken::new();
        tokens.insert(step_s.clone(), (attempt, cancel.clone()));
        let tool_ctx = ToolContext {
            idempotency_key: sr.key.clone(),
            run_id: run_str.to_string(),
            step: step_s.clone(),
            http_allow: self.http_allow.clone(),
            cancel: cancel.clone(),
        };
        let timeout = node.step.timeout.map(|d| d.0);
        let fut: BoxFuture<'static, (Result<Value, StepError>, Usage)> = match &node.kind {
            NodeKind::Tool { name } if name != "state.set" => {
                let ctx = context::build(p, st, sr.frame);
                let args = node.tool_args();
                let args = context::render_args(p, &format!("{}.with", node.id), &args, &ctx);
                let tool = self.services.tools.get(name).cloned();
                let name = name.clone();
                Box::pin(async move {
                    let args = match args {
                        Ok(a) => a,
                        Err(e) => return (Err(e), Usage::default()),
                    };
                    let Some(tool) = tool else {
                        return (
                            Err(StepError::fatal(
                                StepErrorKind::Execution,
                                format!("no tool '{name}'"),
                            )),
                            Usage::default(),
                        );
                    };
                    let r = tool.call(args, &tool_ctx).await.map_err(|e| StepError {
                        retryable: e.is_retryable(),
                        ..StepError::new(StepErrorKind::Execution, e.to_string())
                    });
                    (r, Usage::default())
                })
            }
            NodeKind::Agent { agent } => {
                let job = self.agent_job(st, node, agent, sr.frame, tool_ctx);
                let tx = progress.clone();
                let step_p = step_s.clone();
                Box::pin(async move {
                    let job = match job {
                        Ok(j) => j,
                        Err(e) => return (Err(e), Usage::default()),
                    };
                    agent::run(job, move |pr| {
                        tx.push(Input::Progress {
                            step: step_p.clone(),
                            progress: pr,
                        });
                    })
                    .await
                })
            }
            _ => {
                tokens.remove(&step_s);
                return None;
            }
        };
        Some(Box::pin(async move {
            let started = Instant::now();
            let (result, usage) = match timeout {
                Some(t) => match tokio::time::timeout(t, fut).await {
                    Ok(r) => r,
                    Err(_) => {
                        cancel.cancel();
                        (
                            Err(StepError::new(
                                StepErrorKind::Timeout,
                                format!("timed out after {}", humanize(t)),
                            )),
                            Usage::default(),
                        )
                    }
                },
                None => fut.await,
            };
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            Input::Done {
                step: step_s,
                attempt,
                result,
                usage,
                duration_ms,
            }
        }))
    }

    /// The model of `agent` (its reference with the environment expanded, resolved), resolved
    /// once per executor; a failure is not kept, so the next attempt tries again.
    fn model_of(&self, agent: &str, model: &str) -> Result<ResolvedModel, StepError> {
        if let Some(cell) = self.models.get(agent)
            && let Some(m) = cell.get()
        {
            return Ok(m.clone());
        }
        let model_ref = crate::load::expand_env(model)
            .map_err(|e| StepError::fatal(StepErrorKind::Model, format!("model {model}: {e}")))?;
        let resolved = self
            .services
            .models
            .resolve(&model_ref, &self.program.base_dir)
            .map_err(|e| {
                StepError::fatal(StepErrorKind::Model, format!("model {model_ref}: {e}"))
            })?;
        let m = (model_ref, resolved);
        if let Some(cell) = self.models.get(agent) {
            let _ = cell.set(m.clone());
        }
        Ok(m)
    }

    fn agent_job(
        &self,
        st: &RunState,
        node: &crate::program::Node,
        agent: &str,
        frame: u32,
        tool_ctx: ToolContext,
    ) -> Result<AgentJob, StepError> {
        let p = &self.program;
        let spec = p.doc.agents.get(agent).ok_or_else(|| {
            StepError::fatal(StepErrorKind::Execution, format!("unknown agent '{agent}'"))
        })?;
        let needs_ctx = node.prompt_is_template || spec.instructions.is_some();
        let ctx = if needs_ctx {
            Some(context::build(p, st, frame))
        } else {
            None
        };
        let prompt = match (&ctx, node.prompt_is_template) {
            (Some(c), true) => context::render(p, &format!("{}.prompt", node.id), c)?,
            _ => node.prompt().to_string(),
        };
        let mut system = String::new();
        if let Some(role) = &spec.role {
            system.push_str(&format!("You are the {role}."));
        }
        if let (Some(_), Some(c)) = (&spec.instructions, &ctx) {
            if !system.is_empty() {
                system.push('\n');
            }
            system.push_str(&context::render(
                p,
                &format!("agents.{agent}.instructions"),
                c,
            )?);
        }
        let (model_ref, model) = self.model_of(agent, &spec.model)?;
        Ok(AgentJob {
            model_ref,
            model,
            system: (!system.is_empty()).then_some(system),
            prompt,
            temperature: spec.temperature,
            max_tokens: spec.max_tokens,
            tools: spec.tools.clone(),
            registry: self.services.tools.clone(),
            max_tool_turns: spec
                .max_tool_turns
                .unwrap_or(baton_types::DEFAULT_MAX_TOOL_TURNS),
            schema: node.output_schema.clone(),
            tool_ctx,
        })
    }
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}

fn control_input(c: Control) -> Input {
    match c {
        Control::Pause => Input::Pause,
        Control::Resume { stepping } => Input::Resume { stepping },
        Control::Cancel => Input::Cancel,
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
    }
}
