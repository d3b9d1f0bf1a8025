//! Runs: start (a file, an inline document or a stored workflow; inputs; an idempotency key),
//! list and filter, show (a run, or one step's prompts and tool calls), events, state, pause,
//! cancel, resume, answer `human` steps, resolve ambiguous steps, the approvals inbox, and
//! forks (time travel). `loading`: documents checked and compiled for runs; `operate`: pause,
//! cancel, resume, answers and resolutions; `fork`: a new run from a copy of another's log;
//! `replay`: a run executed again from its own log; `compare`: two runs side by side.
//!
//! Every run is found through the caller's tenant (`RunStore::tenant_run`, `list_runs`,
//! `runs_by_prefix`); a `runner` key sees only the runs it started. The engine is used
//! exactly as the CLI always did: `create` writes the run with its `run_created` event, a
//! [`Drive`] starts from `RunState::new` or `load_state`, and control requests go to the
//! process that holds the run (a claim) or are applied here when none does.

mod budget;
mod compare;
mod debug;
mod edit;
mod fork;
mod loading;
mod logs;
mod operate;
mod replay;
mod team;

pub use baton_engine::fork::Cut;
pub use budget::{BudgetView, ResumeOptions};
pub use compare::{FileChange, RunComparison, RunSide, StepPair, StepSide, WorkspaceComparison};
pub use debug::{BreakpointsChanged, DebugView};
pub use fork::{ForkRequest, Forked};
use loading::{base_of, first_events, workflow_file};
pub(crate) use loading::{diagnostics, stored_doc};
pub use loading::{model_problems, pinned_agents, program_of};
pub use logs::{EventFilter, LogLevel};
pub use replay::{ReplayMode, ReplayReport, Verdict};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_engine::load::{self, ValidationEnv};
use baton_engine::{Input, Program, RunOptions, RunState};
use baton_store::{Control as StoreControl, IdempotencyKey, ListQuery, NewRun, RunRecord};
use baton_types::{Event, EventRecord, HumanKind, PinnedAgent, Resolution, RunId, RunStatus};
use serde::Serialize;
use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::audit::Outcome;
use crate::error::{Details, Diagnostic, Error, Result};
use crate::runner::Drive;
use crate::view::{self, RunDetail, StepTrace};
use crate::workflows::WorkflowRef;
use crate::{Caller, Control, Permission};

/// How long a claim taken only to check whether a run is held lasts.
const PROBE_LEASE_MS: u64 = 30_000;

/// Where a run's workflow comes from.
#[derive(Clone, Debug)]
pub enum WorkflowSource {
    /// A file on this machine. For the local CLI only: a network front end must never pass a
    /// path a client chose.
    File(PathBuf),
    /// A document sent with the request, YAML or JSON (diagnostics name it `<inline>`).
    Inline { text: String },
    /// A stored workflow of the caller's tenant: its latest version or a pinned one.
    Stored(WorkflowRef),
}

/// A workflow that loaded, validated and compiled: ready to start runs of.
#[derive(Clone)]
pub struct LoadedWorkflow {
    pub program: Arc<Program>,
    /// The document's text (frozen into each run).
    pub source: String,
    /// The absolute path of a file workflow (scripted fixtures are found next to it).
    pub path: Option<PathBuf>,
    /// The name diagnostics use (the path as given, `<inline>`, or `name@version`).
    pub file: String,
    /// The stored workflow and version, when it is one.
    pub stored: Option<(String, u32)>,
    /// The registry agents its steps refer to, resolved now (frozen into each run).
    pub agents: BTreeMap<String, PinnedAgent>,
}

impl LoadedWorkflow {
    pub fn name(&self) -> &str {
        &self.program.doc.name
    }
}

/// What a new run takes besides its workflow.
#[derive(Clone, Debug, Default)]
pub struct RunRequest {
    /// The inputs given (checked against the workflow's `inputs:`, defaults filled).
    pub inputs: Map<String, Value>,
    /// Pause before these steps.
    pub breakpoints: Vec<String>,
    /// Pause before every step.
    pub stepping: bool,
    /// A retried start with the same key (and the same request) returns the same run.
    pub idempotency_key: Option<String>,
    /// The most the inputs may take as JSON, in bytes (`None`: 8 MiB).
    pub max_input_size: Option<u64>,
    /// The tags a worker must have to run it (see `baton worker --tags`).
    pub worker_tags: Vec<String>,
}

/// The default limit on a run's inputs.
pub const DEFAULT_MAX_INPUT_SIZE: u64 = 8 << 20;

/// A started run.
pub struct Started {
    pub run: RunId,
    /// `true`: the idempotency key had already started this run; nothing new was created and
    /// there is nothing to drive.
    pub reused: bool,
    /// The new run, ready to drive (foreground) or [`Control::spawn`] (background).
    pub drive: Option<Drive>,
}

/// The most runs one page holds.
pub const MAX_PAGE: u32 = 10_000;

/// Filters of [`Control::list_runs`].
#[derive(Clone, Debug, Default)]
pub struct RunQuery {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    /// Only runs created at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Text in the workflow name, inputs, outputs or error.
    pub text: Option<String>,
    /// At most this many (default 50, at most [`MAX_PAGE`]).
    pub limit: Option<u32>,
    /// A cursor from a previous page's `next`.
    pub cursor: Option<String>,
}

/// A page of runs, newest first.
#[derive(Clone, Debug)]
pub struct RunPage {
    pub runs: Vec<RunRecord>,
    /// The cursor of the next page, when there may be one.
    pub next: Option<String>,
}

/// A request to change a run's course.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunControl {
    Pause,
    Cancel,
}

/// What [`Control::control_run`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ControlOutcome {
    /// No process held the run: applied here; the run is now in this status.
    Applied(RunStatus),
    /// A process runs it: the request is queued for it.
    Queued,
}

/// What [`Control::resume`] found.
pub enum Resumed {
    /// The run is over: nothing to resume.
    Finished(RunStatus),
    /// A task of this process drives it: the request was queued for it.
    Queued,
    Drive(Box<Drive>),
}

/// An answer to a `human` step.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Approve,
    Reject,
    /// A value for an `input` step (`None`: refused, naming what is missing).
    Input(Option<Value>),
}

#[derive(Clone, Debug)]
pub struct Answer {
    /// The step (default: the only one waiting).
    pub step: Option<String>,
    pub decision: Decision,
    pub comment: Option<String>,
    /// Who answers, as logged (default: the caller's key id).
    pub by: Option<String>,
    /// Only record the answer; do not continue the run.
    pub no_resume: bool,
}

/// What [`Control::answer`] did.
pub enum Answered {
    /// The answer is queued for the run: the process holding it takes it
    /// (`held_elsewhere`), or whoever resumes it next.
    Recorded { step: String, held_elsewhere: bool },
    /// Nobody holds the run: drive it with the answer.
    Drive(Box<Drive>),
}

/// What a person found out about an ambiguous step's effect (`baton runs resolve`).
#[derive(Clone, Debug)]
pub struct Resolve {
    /// The ambiguous step (a step instance, as `runs show` names it).
    pub step: String,
    pub resolution: Resolution,
    /// With [`Resolution::Done`]: what the call returned (default null). Refused with
    /// [`Resolution::Retry`], whose result comes from the call.
    pub value: Option<Value>,
    /// Who resolves it, as logged (default: the caller's key id).
    pub by: Option<String>,
    /// Only record the resolution; do not continue the run.
    pub no_resume: bool,
}

/// What [`Control::resolve`] did.
pub enum Resolved {
    /// The resolution is queued for the run: the process holding it takes it
    /// (`held_elsewhere`), or whoever resumes it next.
    Recorded {
        step: String,
        resolution: Resolution,
        held_elsewhere: bool,
    },
    /// Nobody holds the run: drive it with the resolution.
    Drive(Box<Drive>),
}

/// A `human` step waiting for an answer.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct Approval {
    pub run: RunId,
    pub workflow: String,
    pub step: String,
    pub prompt: String,
    pub kind: HumanKind,
    /// The JSON Schema of the value (`input` steps).
    pub schema: Option<Value>,
    pub requested_at_ms: i64,
    /// When the wait ends unanswered (`human.timeout`), if it does.
    pub deadline_ms: Option<i64>,
    /// Where the request went when its first wait ended (`human.escalate_to`): only that role
    /// or key (or an admin) may answer it now.
    pub escalated_to: Option<String>,
    pub started_by: Option<String>,
}

fn cursor_of(r: &RunRecord) -> String {
    format!("{}.{}", r.created_at_ms, r.id)
}

fn parse_cursor(c: &str) -> Result<(i64, RunId)> {
    let bad = || Error::invalid_field("cursor", format!("'{c}' is not a cursor of this listing"));
    let (at, id) = c.split_once('.').ok_or_else(bad)?;
    Ok((
        at.parse().map_err(|_| bad())?,
        id.parse().map_err(|_| bad())?,
    ))
}

impl Control {
    /// Creates a run of `w` (its first event, `run_created`, in the same write) and hands it
    /// back ready to drive. With an idempotency key already used by the same request, the
    /// run it started comes back instead (`reused`); used by another request: `Conflict`.
    pub async fn create_run(
        &self,
        caller: &Caller,
        w: &LoadedWorkflow,
        req: RunRequest,
    ) -> Result<Started> {
        if let Err(e) = caller.check(Permission::StartRuns) {
            return Err(self.denied(caller, "run.start", None, e).await);
        }
        for t in &req.worker_tags {
            crate::worker::check_tag(t).map_err(|m| Error::invalid_field("worker_tags", m))?;
        }
        if !req.worker_tags.is_empty() && !self.shares_work() {
            return Err(Error::invalid_field(
                "worker_tags",
                "worker tags route a run to `baton worker` processes, which share a PostgreSQL database: this one executes its runs itself (SQLite)",
            ));
        }
        for b in &req.breakpoints {
            if w.program.node_by_id(b).is_none() {
                return Err(Error::invalid_field(
                    "breakpoints",
                    format!("the workflow has no step '{b}'"),
                ));
            }
        }
        let inputs = baton_engine::inputs::resolve(&w.program.doc, req.inputs).map_err(|p| {
            Error::Invalid {
                message: p.join("; "),
                details: Details::Inputs { problems: p },
            }
        })?;
        let limit = req.max_input_size.unwrap_or(DEFAULT_MAX_INPUT_SIZE);
        baton_engine::inputs::check_size(&inputs, limit).map_err(|p| Error::Invalid {
            message: p.clone(),
            details: Details::Inputs { problems: vec![p] },
        })?;
        let options = RunOptions {
            breakpoints: req.breakpoints.iter().cloned().collect(),
            stepping: req.stepping,
            agents: BTreeMap::new(),
            worker_tags: req.worker_tags.clone(),
        };
        let options_json = serde_json::to_value(&options).unwrap_or(Value::Null);
        let idempotency = req.idempotency_key.map(|key| IdempotencyKey {
            fingerprint: fingerprint(&w.source, &inputs, &options_json),
            key,
        });
        // Pinned after the fingerprint: a retried start is the same request even when an
        // agent's default version moved in between.
        let options = RunOptions {
            agents: w.agents.clone(),
            ..options
        };
        let options_json = serde_json::to_value(&options).unwrap_or(Value::Null);
        if let Some(k) = &idempotency {
            if k.key.is_empty() || k.key.len() > 255 {
                return Err(Error::invalid_field(
                    "idempotency_key",
                    "an idempotency key has 1 to 255 characters",
                ));
            }
            if let Some((run, fp)) = self
                .services
                .store
                .run_for_key(&caller.tenant, &k.key)
                .await?
            {
                return reuse(k, run, &fp);
            }
        }
        let id = RunId::new();
        let now = baton_store::now_ms();
        let created = self
            .services
            .store
            .create_run(NewRun {
                id,
                workflow_name: w.program.doc.name.clone(),
                workflow_source: w.source.clone(),
                workflow_path: w.path.as_ref().map(|p| p.display().to_string()),
                inputs: inputs.clone(),
                options: options_json,
                created_at_ms: now,
                events: first_events(id, now, w, &inputs),
                tenant: caller.tenant.clone(),
                started_by: Some(caller.key_id.clone()),
                idempotency: idempotency.clone(),
            })
            .await;
        match (created, &idempotency) {
            (Ok(()), _) => {}
            // Another start with the same key won the race.
            (
                Err(baton_store::Error::KeyUsed {
                    run, fingerprint, ..
                }),
                Some(k),
            ) => return reuse(k, run, &fingerprint),
            (Err(e), _) => return Err(e.into()),
        }
        let object = format!("run/{id}");
        let details = json!({"workflow": w.program.doc.name, "stored": w.stored});
        self.record(caller, "run.start", Some(&object), Outcome::Ok, details)
            .await?;
        let mut state = RunState::new(id, inputs, &w.program, &options);
        if !w.agents.is_empty() {
            state.last_seq = 2; // `agents_resolved` follows `run_created`.
        }
        Ok(Started {
            run: id,
            reused: false,
            drive: Some(Drive {
                run: id,
                tenant: caller.tenant.clone(),
                program: w.program.clone(),
                state,
                inputs: vec![Input::Start { resumed: false }],
            }),
        })
    }

    /// [`Control::load_workflow`] then [`Control::create_run`].
    pub async fn start_run(
        &self,
        caller: &Caller,
        source: WorkflowSource,
        req: RunRequest,
    ) -> Result<Started> {
        if let Err(e) = caller.check(Permission::StartRuns) {
            return Err(self.denied(caller, "run.start", None, e).await);
        }
        let w = self.load_workflow(caller, source).await?;
        self.create_run(caller, &w, req).await
    }

    /// A run of the caller's tenant by its id or a unique prefix of it (at least 4 hex
    /// digits, as git does with commits). A `runner` finds only the runs it started.
    pub async fn find_run(&self, caller: &Caller, run: &str) -> Result<RunRecord> {
        caller.check(Permission::Read)?;
        let store = &self.services.store;
        let not_found = || Error::not_found(format!("no run {run}"));
        let rec = if let Ok(id) = run.parse::<RunId>() {
            store.tenant_run(&caller.tenant, id).await?
        } else {
            if run.len() < 4 || !run.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(Error::invalid_field(
                    "run",
                    format!(
                        "'{run}' is not a run id: give the 32 hex digits `baton runs list` prints, or a unique prefix of at least 4"
                    ),
                ));
            }
            let ids = store.runs_by_prefix(&caller.tenant, run, 6).await?;
            match ids.as_slice() {
                [] => None,
                [id] => store.tenant_run(&caller.tenant, *id).await?,
                many => {
                    let listed: Vec<String> =
                        many.iter().take(5).map(ToString::to_string).collect();
                    return Err(Error::invalid_field(
                        "run",
                        format!(
                            "run id prefix '{run}' is ambiguous: it matches {}{}; give more digits",
                            listed.join(", "),
                            if many.len() > 5 { ", ..." } else { "" }
                        ),
                    ));
                }
            }
        };
        let rec = rec.ok_or_else(not_found)?;
        if caller.own_runs_only() && rec.started_by.as_deref() != Some(caller.key_id.as_str()) {
            return Err(not_found());
        }
        Ok(rec)
    }

    /// The caller's tenant's runs, newest first, a page at a time.
    pub async fn list_runs(&self, caller: &Caller, q: RunQuery) -> Result<RunPage> {
        caller.check(Permission::Read)?;
        let limit = q.limit.unwrap_or(50).min(MAX_PAGE);
        let after = q.cursor.as_deref().map(parse_cursor).transpose()?;
        let runs = self
            .services
            .store
            .list_runs(
                &caller.tenant,
                ListQuery {
                    status: q.status,
                    workflow: q.workflow,
                    limit: Some(limit),
                    since_ms: q.since_ms,
                    text: q.text,
                    started_by: caller.own_runs_only().then(|| caller.key_id.clone()),
                    after,
                },
            )
            .await?;
        let next = (limit > 0 && runs.len() == limit as usize)
            .then(|| runs.last().map(cursor_of))
            .flatten();
        Ok(RunPage { runs, next })
    }

    /// A run in full: record, per-step status, outputs, errors, timings and tokens, sandbox
    /// executions, the steps waiting for a person.
    pub async fn run_detail(&self, caller: &Caller, run: &str) -> Result<RunDetail> {
        let rec = self.find_run(caller, run).await?;
        let evs = self.services.store.events(rec.id, 0).await?;
        let steps = view::step_details(&evs);
        let mut usage = baton_types::Usage::default();
        for s in &steps {
            usage.add(&s.usage);
        }
        // The program tells `sandbox:` steps apart (a run whose workflow no longer compiles
        // still shows agents' sandbox.exec calls).
        let program = self.program(&rec).ok();
        let sandbox = view::sandbox_records(&evs, program.as_ref());
        let waiting = steps
            .iter()
            .filter(|s| s.row.status == "waiting")
            .map(|s| s.row.step.clone())
            .collect();
        let forked_from = evs.first().and_then(|e| match &e.event {
            Event::RunCreated { forked_from, .. } => *forked_from,
            _ => None,
        });
        let (budget, team) = self.state_views(program.as_ref(), &rec).await?;
        // A finished run has nothing left to debug (and its state is not rebuilt for nothing).
        let debug = match &program {
            Some(program) if !rec.status.is_terminal() => {
                let st =
                    baton_engine::executor::load_state(&self.services, program, rec.id).await?;
                Some(DebugView::of(&st))
            }
            _ => None,
        };
        Ok(RunDetail {
            debug,
            budget,
            team,
            forked_from,
            tokens: steps.iter().map(|s| s.row.tokens).sum(),
            usage,
            steps,
            sandbox,
            waiting,
            ambiguous: view::ambiguities(&evs),
            joins: view::join_decisions(&evs),
            policy: view::policy_summary(&evs),
            run: rec,
        })
    }

    /// What one step of a run did (a step instance: `id`, or `id[2]` inside a map): the
    /// prompts its model was sent, turn by turn, its tool calls with their keys, and its
    /// ambiguity if it waits for a resolution. Not found when the log never mentions the step
    /// (the message lists the steps it does mention).
    pub async fn step_trace(&self, caller: &Caller, run: &str, step: &str) -> Result<StepTrace> {
        let rec = self.find_run(caller, run).await?;
        let evs = self.services.store.events(rec.id, 0).await?;
        view::step_trace(rec.id, &evs, step).ok_or_else(|| {
            let known = view::steps_in(&evs);
            Error::not_found(format!(
                "run {} has no step '{step}' in its log (steps: {})",
                rec.id,
                if known.is_empty() {
                    "none yet".to_string()
                } else {
                    known.join(", ")
                }
            ))
        })
    }

    /// A run's events with seq > `after`, in order (at most `limit`).
    pub async fn events(
        &self,
        caller: &Caller,
        run: &str,
        after: u64,
        limit: Option<usize>,
    ) -> Result<Vec<EventRecord>> {
        let rec = self.find_run(caller, run).await?;
        let mut evs = self.services.store.events(rec.id, after).await?;
        if let Some(l) = limit {
            evs.truncate(l);
        }
        Ok(evs)
    }

    /// The engine state of a run, rebuilt from its checkpoint and the events after it.
    pub async fn run_state(&self, caller: &Caller, run: &str) -> Result<RunState> {
        let rec = self.find_run(caller, run).await?;
        let program = self.program(&rec)?;
        Ok(baton_engine::executor::load_state(&self.services, &program, rec.id).await?)
    }
}

fn reuse(k: &IdempotencyKey, run: RunId, fingerprint: &str) -> Result<Started> {
    if fingerprint == k.fingerprint {
        Ok(Started {
            run,
            reused: true,
            drive: None,
        })
    } else {
        Err(Error::conflict(format!(
            "idempotency key '{}' already started run {run} with another request",
            k.key
        )))
    }
}

/// The fingerprint of a start request: SHA-256 of the document, inputs and options.
fn fingerprint(source: &str, inputs: &Value, options: &Value) -> String {
    let body = json!([source, inputs, options]).to_string();
    baton_store::tenancy::hex(&Sha256::digest(body.as_bytes()))
}
