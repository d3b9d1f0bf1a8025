//! What the run commands show, as typed values: the terminal lines and the `--json` objects
//! come from the same structs, so the two never disagree on a name.

use std::collections::HashMap;

use baton_engine::RunState;
use baton_store::RunRecord;
use baton_types::{Event, EventRecord, RunStatus, Usage};
use serde::Serialize;
use serde_json::{Map, Value, json};

use crate::sandbox_view::SandboxRecord;

/// One step's figures over a run: its last status, its summed duration and tokens.
#[derive(Clone, Debug, Serialize)]
pub struct StepRow {
    pub step: String,
    pub status: &'static str,
    pub duration_ms: u64,
    pub tokens: u64,
    #[serde(skip)]
    pub usage: Usage,
}

impl StepRow {
    /// The row as a terminal line (`  step  status  12ms  40 tok`).
    pub fn line(&self) -> String {
        let tok = if self.tokens > 0 {
            format!("{:>7} tok", self.tokens)
        } else {
            String::new()
        };
        format!(
            "  {:<24} {:<20} {:>9}  {tok}",
            self.step,
            self.status,
            format!("{}ms", self.duration_ms)
        )
    }
}

/// Per-step figures from the log, in the order steps first appear.
pub fn step_rows(evs: &[EventRecord]) -> Vec<StepRow> {
    let mut rows: Vec<StepRow> = Vec::new();
    let mut index: HashMap<&str, usize> = HashMap::new();
    // When each step's current attempt started: a parent (parallel, map, group) reports no
    // duration of its own, so its row shows its span, from its start to its end.
    let mut started: HashMap<&str, i64> = HashMap::new();
    let span = |started: &HashMap<&str, i64>, step: &str, d: u64, at: i64| {
        if d > 0 {
            return d;
        }
        started
            .get(step)
            .map_or(0, |s| u64::try_from(at - s).unwrap_or(0))
    };
    for e in evs {
        let (step, status, d, u) = match &e.event {
            Event::StepStarted { step, .. } => {
                started.insert(step, e.at_ms);
                (step, "running", 0, Usage::default())
            }
            Event::StepSucceeded {
                step,
                duration_ms,
                usage,
                ..
            } => (
                step,
                "succeeded",
                span(&started, step, *duration_ms, e.at_ms),
                *usage,
            ),
            Event::StepFailed {
                step,
                duration_ms,
                usage,
                retry_in_ms,
                recovered,
                ..
            } => {
                let s = if retry_in_ms.is_some() {
                    "retrying"
                } else if *recovered {
                    "failed (continued)"
                } else {
                    "failed"
                };
                (step, s, span(&started, step, *duration_ms, e.at_ms), *usage)
            }
            Event::StepCancelled { step } => (step, "cancelled", 0, Usage::default()),
            Event::HumanRequested { step, .. } => (step, "waiting", 0, Usage::default()),
            Event::StepAmbiguous { step, .. } => (step, "ambiguous", 0, Usage::default()),
            Event::StepResolved { step, .. } => (step, "running", 0, Usage::default()),
            _ => continue,
        };
        match index.get(step.as_str()) {
            Some(&i) => {
                let r = &mut rows[i];
                r.status = status;
                r.duration_ms += d;
                r.usage.add(&u);
                r.tokens = r.usage.total();
            }
            None => {
                index.insert(step, rows.len());
                rows.push(StepRow {
                    step: step.clone(),
                    status,
                    duration_ms: d,
                    tokens: u.total(),
                    usage: u,
                });
            }
        }
    }
    rows
}

/// The last JSON object of `baton run --json` (and `resume`, `runs approve ...`).
#[derive(Debug, Serialize)]
pub struct Summary<'a> {
    pub id: String,
    pub status: RunStatus,
    pub outputs: &'a Option<Value>,
    pub error: &'a Option<String>,
    pub tokens: u64,
    pub steps: &'a [StepRow],
}

/// `baton runs show --json`.
#[derive(Debug, Serialize)]
pub struct RunView<'a> {
    pub id: String,
    pub workflow: &'a str,
    pub path: &'a Option<String>,
    pub status: RunStatus,
    /// `process` or `power`: what every commit of this run survives.
    pub durability: &'static str,
    pub inputs: &'a Value,
    pub outputs: &'a Option<Value>,
    pub error: &'a Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub tokens: u64,
    pub steps: &'a [StepRow],
    pub sandbox: Vec<SandboxRow<'a>>,
    /// Steps whose effect may or may not have happened, waiting for `baton runs resolve`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ambiguous: Vec<crate::step_view::Ambiguity>,
}

/// One sandbox execution in `runs show --json`.
#[derive(Debug, Serialize)]
pub struct SandboxRow<'a> {
    pub step: &'a str,
    pub visit: Option<u32>,
    pub attempt: Option<u32>,
    pub via: &'static str,
    pub record: &'a Value,
}

impl<'a> SandboxRow<'a> {
    pub fn of(r: &'a SandboxRecord) -> Self {
        Self {
            step: &r.step,
            visit: r.visit,
            attempt: r.attempt,
            via: r.via,
            record: &r.record,
        }
    }
}

/// One run in `baton runs list --json`.
#[derive(Debug, Serialize)]
pub struct RunListItem<'a> {
    pub id: String,
    pub workflow: &'a str,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub error: &'a Option<String>,
}

impl<'a> RunListItem<'a> {
    pub fn of(r: &'a RunRecord) -> Self {
        Self {
            id: r.id.to_string(),
            workflow: &r.workflow_name,
            status: r.status,
            created_at_ms: r.created_at_ms,
            updated_at_ms: r.updated_at_ms,
            error: &r.error,
        }
    }
}

/// The engine state as people read it (`baton runs state`, `i` at a breakpoint).
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

/// A stored time (Unix ms) as RFC 3339, to the second.
pub fn fmt_time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
