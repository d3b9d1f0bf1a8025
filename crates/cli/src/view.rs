//! What the run commands print: terminal lines and the `--json` objects of `baton run` and
//! `runs show`. The values themselves (per-step rows, sandbox records, the state view) come
//! from `baton_control::view`, shared with the server.

use baton_control::view::{Ambiguity, SandboxRecord, StepRow};
use baton_types::RunStatus;
use serde::Serialize;
use serde_json::Value;

/// A step row as a terminal line (`  step  status  12ms  40 tok`).
pub fn step_line(r: &StepRow) -> String {
    let tok = if r.tokens > 0 {
        format!("{:>7} tok", r.tokens)
    } else {
        String::new()
    };
    format!(
        "  {:<24} {:<20} {:>9}  {tok}",
        r.step,
        r.status,
        format!("{}ms", r.duration_ms)
    )
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
    #[serde(skip_serializing_if = "<[Ambiguity]>::is_empty")]
    pub ambiguous: &'a [Ambiguity],
    /// How parallel steps' conflict resolutions were decided.
    #[serde(skip_serializing_if = "<[baton_control::view::JoinDecision]>::is_empty")]
    pub joins: &'a [baton_control::view::JoinDecision],
    /// What the workflow's policy decided (runs of workflows with `policy.rules`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub policy: Option<&'a baton_control::view::PolicySummary>,
    /// A fork: the run and the event its log was copied from.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<baton_types::ForkOrigin>,
    /// Limits and spend by agent and by model (when the workflow sets a budget or models ran).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub budget: Option<&'a baton_control::BudgetView>,
    /// The agents as a team (runs with agents): states, undelivered messages, channels, memory.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub team: Option<&'a baton_types::TeamView>,
    /// On PostgreSQL: the worker holding the run, or why it waits in the queue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub placement: Option<&'a Value>,
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

/// A stored time (Unix ms) as RFC 3339, to the second.
pub fn fmt_time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}
