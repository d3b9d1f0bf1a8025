//! What a run looks like to a front end, as typed values built from its log: per-step
//! figures, sandbox executions, the engine state as people read it. The CLI prints them and
//! the server serializes them; neither reads the log itself.

use std::collections::HashMap;

use baton_engine::{Program, RunState};
use baton_store::RunRecord;
use baton_types::{
    Event, EventRecord, Progress, PromptContext, RunId, RunStatus, StepError, Usage,
};
use serde::Serialize;
use serde_json::{Map, Value, json};

mod joins;
mod policy;
pub use joins::{JoinDecision, join_decisions};
pub use policy::{PolicyDenial, PolicySummary, policy_summary};

/// One step's figures over a run: its last status, its summed duration and tokens.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StepRow {
    pub step: String,
    pub status: &'static str,
    pub duration_ms: u64,
    pub tokens: u64,
    #[serde(skip)]
    pub usage: Usage,
}

/// Per-step figures from the log, in the order steps first appear.
pub fn step_rows(evs: &[EventRecord]) -> Vec<StepRow> {
    step_details(evs).into_iter().map(|d| d.row).collect()
}

/// A step of a run in full: its figures, when it started and ended, its last output or error.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StepDetail {
    #[serde(flatten)]
    pub row: StepRow,
    /// Tokens and cost of the step's model calls.
    pub usage: Usage,
    /// When its first attempt started, and when it last ended (Unix ms).
    pub started_at_ms: Option<i64>,
    pub ended_at_ms: Option<i64>,
    pub attempts: u32,
    pub output: Option<Value>,
    pub error: Option<StepError>,
}

/// Per-step details from the log, in the order steps first appear.
pub fn step_details(evs: &[EventRecord]) -> Vec<StepDetail> {
    let mut rows: Vec<StepDetail> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    // When each step's current attempt started: a parent (parallel, map, group) reports no
    // duration of its own, so its row shows its span, from its start to its end.
    // An attempt that ends without having started (past its `max_visits`, a loop stopped as a
    // runaway before its next visit) took no time.
    let mut started: HashMap<&str, i64> = HashMap::new();
    let span = |started: &mut HashMap<&str, i64>, step: &str, d: u64, at: i64| {
        let from = started.remove(step);
        if d > 0 {
            return d;
        }
        from.map_or(0, |s| u64::try_from(at - s).unwrap_or(0))
    };
    for e in evs {
        let mut output = None;
        let mut error = None;
        let mut ended = false;
        let (step, status, d, u) = match &e.event {
            Event::StepStarted { step, .. } => {
                started.insert(step, e.at_ms);
                (step, "running", 0, Usage::default())
            }
            Event::StepSucceeded {
                step,
                duration_ms,
                usage,
                output: out,
                ..
            } => {
                output = Some(out.clone());
                ended = true;
                (
                    step,
                    "succeeded",
                    span(&mut started, step, *duration_ms, e.at_ms),
                    *usage,
                )
            }
            Event::StepFailed {
                step,
                duration_ms,
                usage,
                retry_in_ms,
                recovered,
                error: err,
                ..
            } => {
                let s = if retry_in_ms.is_some() {
                    "retrying"
                } else if *recovered {
                    "failed (continued)"
                } else {
                    "failed"
                };
                error = Some(err.clone());
                ended = true;
                (
                    step,
                    s,
                    span(&mut started, step, *duration_ms, e.at_ms),
                    *usage,
                )
            }
            Event::StepCancelled { step } => {
                ended = true;
                (step, "cancelled", 0, Usage::default())
            }
            Event::HumanRequested { step, .. } => (step, "waiting", 0, Usage::default()),
            Event::StepAmbiguous { step, .. } => (step, "ambiguous", 0, Usage::default()),
            Event::StepResolved { step, .. } => (step, "running", 0, Usage::default()),
            _ => continue,
        };
        let is_start = matches!(e.event, Event::StepStarted { .. });
        let i = match index.get(step.as_str()) {
            Some(&i) => i,
            None => {
                index.insert(step, rows.len());
                rows.push(StepDetail {
                    row: StepRow {
                        step: step.clone(),
                        status,
                        duration_ms: 0,
                        tokens: 0,
                        usage: Usage::default(),
                    },
                    usage: Usage::default(),
                    started_at_ms: None,
                    ended_at_ms: None,
                    attempts: 0,
                    output: None,
                    error: None,
                });
                rows.len() - 1
            }
        };
        let r = &mut rows[i];
        r.row.status = status;
        r.row.duration_ms += d;
        r.row.usage.add(&u);
        r.row.tokens = r.row.usage.total();
        r.usage = r.row.usage;
        if is_start {
            r.attempts += 1;
            r.started_at_ms.get_or_insert(e.at_ms);
        }
        if ended {
            r.ended_at_ms = Some(e.at_ms);
        }
        if output.is_some() {
            r.output = output;
            r.error = None;
        }
        if error.is_some() {
            r.error = error;
        }
    }
    rows
}

/// A step waiting for a person because an effect may or may not have happened (a call was
/// logged as started, its result never was, and its tool cannot be sent again safely).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Ambiguity {
    pub step: String,
    pub attempt: u32,
    /// The agent's tool call (absent: the `tool:` step's own call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    pub tool: String,
    /// The idempotency key the call was sent with.
    pub key: String,
    pub arguments: Value,
}

/// The steps ambiguous now: an ambiguity not followed by a resolution or the step's end.
pub fn ambiguities(evs: &[EventRecord]) -> Vec<Ambiguity> {
    let mut open: Vec<Ambiguity> = Vec::new();
    for e in evs {
        match &e.event {
            Event::StepAmbiguous {
                step,
                attempt,
                call,
                tool,
                arguments,
                key,
            } => {
                open.retain(|a| a.step != *step);
                open.push(Ambiguity {
                    step: step.clone(),
                    attempt: *attempt,
                    call: *call,
                    tool: tool.clone(),
                    key: key.clone(),
                    arguments: arguments.clone(),
                });
            }
            Event::StepResolved { step, .. }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step } => open.retain(|a| a.step != *step),
            Event::RunCancelled | Event::RunFailed { .. } | Event::RunSucceeded { .. } => {
                open.clear()
            }
            _ => {}
        }
    }
    open
}

/// One turn's prompt as the model got it: the shared part (resolved from its hash) and the
/// messages this turn added.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct TurnPrompt {
    pub turn: u32,
    pub model: String,
    pub context_hash: String,
    /// The system message, tools and answer format (`null` when the record it refers to is
    /// missing from the log).
    pub context: Option<PromptContext>,
    /// The messages added since the previous turn (turn 1: the prompt).
    pub messages: Vec<Value>,
    /// Bytes cut from this record to keep it under the cap.
    pub cut_bytes: u64,
}

/// One tool call of an agent step.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ToolCall {
    pub attempt: u32,
    pub call: u32,
    pub tool: String,
    /// The call's idempotency key (empty: answered without being sent).
    pub key: String,
    pub arguments: Value,
    /// `finished`, `error`, or `no result` (started, its result never logged).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// What one step did, from the log (`baton runs show RUN --step STEP`): the prompts its model
/// was sent, turn by turn, rebuilt from the deduplicated records; its tool calls with their
/// keys; and its ambiguity, if it waits for `runs resolve`.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StepTrace {
    pub run: String,
    pub step: String,
    pub prompts: Vec<TurnPrompt>,
    pub tool_calls: Vec<ToolCall>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<Ambiguity>,
}

/// The trace of `step` (a step instance: `id`, or `id[2]` inside a map); `None` when the log
/// never mentions it.
pub fn step_trace(run: RunId, evs: &[EventRecord], step: &str) -> Option<StepTrace> {
    if !evs.iter().any(|e| e.event.step() == Some(step)) {
        return None;
    }
    let mut contexts: HashMap<&str, &PromptContext> = HashMap::new();
    let mut prompts = Vec::new();
    let mut calls: Vec<ToolCall> = Vec::new();
    for e in evs.iter().filter(|e| e.event.step() == Some(step)) {
        match &e.event {
            Event::StepProgress {
                progress:
                    Progress::Prompt {
                        turn,
                        model,
                        context_hash,
                        context,
                        messages,
                        cut_bytes,
                    },
                ..
            } => {
                if let Some(c) = context {
                    contexts.insert(context_hash, c);
                }
                prompts.push(TurnPrompt {
                    turn: *turn,
                    model: model.clone(),
                    context_hash: context_hash.clone(),
                    context: contexts.get(context_hash.as_str()).map(|c| (*c).clone()),
                    messages: messages.clone(),
                    cut_bytes: *cut_bytes,
                });
            }
            Event::ToolCallStarted {
                attempt,
                call,
                tool,
                arguments,
                key,
                ..
            } => calls.push(ToolCall {
                attempt: *attempt,
                call: *call,
                tool: tool.clone(),
                key: key.clone(),
                arguments: arguments.clone(),
                status: "no result",
                output: None,
            }),
            Event::ToolCallFinished {
                attempt,
                call,
                tool,
                output,
                is_error,
                ..
            } => {
                let status = if *is_error { "error" } else { "finished" };
                match calls
                    .iter_mut()
                    .rev()
                    .find(|c| c.call == *call && c.output.is_none())
                {
                    Some(c) => {
                        c.status = status;
                        c.output = Some(output.clone());
                    }
                    // Answered without being sent (a tool the agent may not use).
                    None => calls.push(ToolCall {
                        attempt: *attempt,
                        call: *call,
                        tool: tool.clone(),
                        key: String::new(),
                        arguments: Value::Null,
                        status,
                        output: Some(output.clone()),
                    }),
                }
            }
            _ => {}
        }
    }
    let ambiguous = ambiguities(evs).into_iter().find(|a| a.step == step);
    Some(StepTrace {
        run: run.to_string(),
        step: step.to_string(),
        prompts,
        tool_calls: calls,
        ambiguous,
    })
}

/// The steps the log mentions, in order of first appearance (for "did you mean").
pub fn steps_in(evs: &[EventRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in evs.iter().filter_map(|e| e.event.step()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// One sandbox execution found in a run's log: a `sandbox:` step's result (succeeded, or
/// carried by its failure) or an agent's `sandbox.exec` call.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct SandboxRecord {
    pub step: String,
    /// Which run of the step (a loop runs it again) and which attempt of that run.
    pub visit: Option<u32>,
    pub attempt: Option<u32>,
    /// `step` (a `sandbox:` step) or the tool an agent called.
    pub via: &'static str,
    pub record: Value,
}

fn is_exec_record(v: &Value) -> bool {
    v.get("stop_reason").is_some() && v.get("policy").is_some_and(|p| p.get("tier").is_some())
}

/// The sandbox executions of a run, in log order. The program tells `sandbox:` steps apart (a
/// run whose workflow no longer compiles still shows agents' `sandbox.exec` calls).
pub fn sandbox_records(evs: &[EventRecord], program: Option<&Program>) -> Vec<SandboxRecord> {
    let is_sandbox_step = |step: &str| {
        let id = baton_types::StepPath::parse(step).id();
        program
            .and_then(|p| p.node_by_id(id))
            .is_some_and(|n| matches!(n.kind, baton_engine::program::NodeKind::Sandbox))
    };
    // Step -> (visit, attempt) of its latest start.
    let mut started: HashMap<&str, (u32, u32)> = HashMap::new();
    let mut out = Vec::new();
    for e in evs {
        let (step, attempt, via, record) = match &e.event {
            Event::StepStarted {
                step,
                attempt,
                visit,
                ..
            } => {
                started.insert(step, (*visit, *attempt));
                continue;
            }
            Event::StepSucceeded { step, output, .. }
                if is_sandbox_step(step) && is_exec_record(output) =>
            {
                (step, None, "step", output.clone())
            }
            Event::StepFailed {
                step,
                attempt,
                error,
                ..
            } if is_sandbox_step(step) => match &error.sandbox {
                Some(record) => (step, Some(*attempt), "step", (**record).clone()),
                None => continue,
            },
            Event::StepProgress {
                step,
                progress: baton_types::Progress::ToolResult { tool, output, .. },
            } if tool == "sandbox.exec" && is_exec_record(output) => {
                (step, None, "sandbox.exec", output.clone())
            }
            Event::ToolCallFinished {
                step,
                attempt,
                tool,
                output,
                ..
            } if tool == "sandbox.exec" && is_exec_record(output) => {
                (step, Some(*attempt), "sandbox.exec", output.clone())
            }
            _ => continue,
        };
        let (visit, last) = started.get(step.as_str()).copied().unzip();
        out.push(SandboxRecord {
            step: step.clone(),
            visit,
            attempt: attempt.or(last),
            via,
            record,
        });
    }
    out
}

/// One run in a listing.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RunListItem {
    pub id: String,
    pub workflow: String,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub error: Option<String>,
}

impl RunListItem {
    pub fn of(r: &RunRecord) -> Self {
        Self {
            id: r.id.to_string(),
            workflow: r.workflow_name.clone(),
            status: r.status,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            error: r.error.clone(),
        }
    }
}

/// A run in full: its record, its steps and its sandbox executions.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RunDetail {
    #[serde(serialize_with = "ser_record")]
    #[schemars(with = "RunJson")]
    pub run: RunRecord,
    /// Tokens over all steps.
    pub tokens: u64,
    pub usage: Usage,
    pub steps: Vec<StepDetail>,
    pub sandbox: Vec<SandboxRecord>,
    /// The `human` steps waiting for an answer.
    pub waiting: Vec<String>,
    /// The steps whose effect may or may not have happened, waiting for a resolution.
    pub ambiguous: Vec<Ambiguity>,
    /// How the conflict resolutions of parallel steps (`vote`, `priority`, `merge`) were
    /// decided, in log order.
    pub joins: Vec<JoinDecision>,
    /// What the workflow's policy decided: counts, and each denial with its rule; absent
    /// when the run's log has no decision (its workflow has no `policy.rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<PolicySummary>,
    /// A fork: the run and the event its log was copied from (`baton runs fork`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<baton_types::ForkOrigin>,
    /// Limits and spend (by agent, by model); absent when the run's workflow no longer
    /// compiles.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::runs::BudgetView>,
    /// The agents as a team: each one's state and since when, messages not yet delivered,
    /// channels and shared memory; absent for runs without agents.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<baton_types::TeamView>,
    /// The debugger: breakpoints, stepping, and why the run is paused; absent once the run
    /// finished.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub debug: Option<crate::runs::DebugView>,
}

/// A run's record as the API shows it.
#[derive(Serialize, schemars::JsonSchema)]
struct RunJson<'a> {
    id: String,
    tenant: &'a baton_types::TenantId,
    workflow: &'a str,
    status: RunStatus,
    inputs: &'a Value,
    outputs: &'a Option<Value>,
    error: &'a Option<String>,
    created_at_ms: i64,
    updated_at_ms: i64,
    last_seq: u64,
    started_by: &'a Option<String>,
}

fn ser_record<S: serde::Serializer>(r: &RunRecord, s: S) -> Result<S::Ok, S::Error> {
    RunJson {
        id: r.id.to_string(),
        tenant: &r.tenant,
        workflow: &r.workflow_name,
        status: r.status,
        inputs: &r.inputs,
        outputs: &r.outputs,
        error: &r.error,
        created_at_ms: r.created_at_ms,
        updated_at_ms: r.updated_at_ms,
        last_seq: r.last_seq,
        started_by: &r.started_by,
    }
    .serialize(s)
}

impl RunDetail {
    pub fn rows(&self) -> Vec<StepRow> {
        self.steps.iter().map(|s| s.row.clone()).collect()
    }
}

/// The engine state as people read it (`baton runs state`, a breakpoint's inspection).
pub fn state_view(st: &RunState) -> Value {
    let active: Vec<Value> = st
        .steps
        .iter()
        .map(|(k, s)| json!({"step": k, "attempt": s.attempt, "visit": s.visit, "phase": s.phase}))
        .collect();
    let steps: Map<String, Value> = st
        .outputs
        .iter()
        .map(|(k, v)| (k.clone(), json!({"output": v, "error": st.errors.get(k)})))
        .collect();
    json!({
        "id": st.run_id.to_string(),
        "status": st.status,
        "paused": st.pause,
        "stepping": st.stepping,
        "breakpoints": st.breakpoints,
        "inputs": st.inputs,
        "state": st.state,
        "steps": steps,
        "active": active,
        "ready": st.ready.keys().collect::<Vec<_>>(),
        "visits": st.visits,
        "tokens": st.usage.total(),
        "outputs": st.result,
        "error": st.error,
    })
}

#[cfg(test)]
mod tests;
