//! The run log: every event of a run, in order. The engine's state is a fold over these.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::RunId;

/// Where a run stands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum RunStatus {
    /// Created, not started by any process yet.
    Pending,
    Running,
    /// Stopped by a user or a breakpoint; `baton resume` continues.
    Paused,
    /// Waiting for a person (a `human` step).
    Waiting,
    /// Stopped by its budget (a limit crossed): `baton resume --budget ...` raises the limit
    /// and continues. Not terminal.
    BudgetExceeded,
    Succeeded,
    Failed,
    Cancelled,
    /// Shown, never stored: the run log says `running` but no live process holds the run (it
    /// was killed, or its host went away). `baton resume` continues it.
    Interrupted,
}

impl RunStatus {
    /// Every status, in the order people read them.
    pub const ALL: [RunStatus; 9] = [
        Self::Pending,
        Self::Running,
        Self::Interrupted,
        Self::Paused,
        Self::Waiting,
        Self::BudgetExceeded,
        Self::Succeeded,
        Self::Failed,
        Self::Cancelled,
    ];

    pub fn is_terminal(self) -> bool {
        matches!(self, Self::Succeeded | Self::Failed | Self::Cancelled)
    }
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Running => "running",
            Self::Paused => "paused",
            Self::Waiting => "waiting",
            Self::BudgetExceeded => "budget_exceeded",
            Self::Succeeded => "succeeded",
            Self::Failed => "failed",
            Self::Cancelled => "cancelled",
            Self::Interrupted => "interrupted",
        }
    }
}

impl std::str::FromStr for RunStatus {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Ok(match s {
            "pending" => Self::Pending,
            "running" => Self::Running,
            "paused" => Self::Paused,
            "waiting" => Self::Waiting,
            "budget_exceeded" => Self::BudgetExceeded,
            "succeeded" => Self::Succeeded,
            "failed" => Self::Failed,
            "cancelled" => Self::Cancelled,
            "interrupted" => Self::Interrupted,
            _ => return Err(format!("unknown run status '{s}'")),
        })
    }
}

impl std::fmt::Display for RunStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Tokens (and cost, when priced) spent by model calls.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Usage {
    #[serde(default)]
    pub prompt_tokens: u64,
    #[serde(default)]
    pub completion_tokens: u64,
    #[serde(default, skip_serializing_if = "is_zero")]
    pub cost_usd: f64,
}

fn is_zero(v: &f64) -> bool {
    *v == 0.0
}

impl Usage {
    pub fn total(&self) -> u64 {
        self.prompt_tokens + self.completion_tokens
    }
    pub fn add(&mut self, o: &Usage) {
        self.prompt_tokens += o.prompt_tokens;
        self.completion_tokens += o.completion_tokens;
        self.cost_usd += o.cost_usd;
    }
    pub fn is_empty(&self) -> bool {
        self.total() == 0 && self.cost_usd == 0.0
    }
}

/// Why a step failed, in a form the engine and users act on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepErrorKind {
    /// A tool or model reported an error.
    Execution,
    Timeout,
    /// A template or expression failed while rendering.
    Template,
    /// The model's answer did not match the output schema after every re-ask.
    InvalidOutput,
    /// The model kept calling tools past `max_tool_turns`.
    ToolTurns,
    /// A person rejected an approval.
    Rejected,
    /// The step was visited more than its `max_visits`.
    MaxVisits,
    /// Every branch of a parallel step failed, or one did under `all`.
    Branch,
    Cancelled,
    /// The model provider refused or failed (auth, rate limit, context length...).
    Model,
    /// An agent repeated the same tool call past `runaway.repeated_tool_calls`, or two agents
    /// kept sending each other the same messages (`runaway.repeated_messages`).
    Runaway,
    /// The step's agent was stopped by a person (`baton agents stop`).
    AgentStopped,
    /// The workflow's policy denied the step's `tool:` or `sandbox:` action (not retried).
    PolicyDenied,
}

/// A step's error, as logged.
///
/// A failed `sandbox:` step carries its execution record in [`StepError::sandbox`]. The run
/// log keeps the format it always had: the record follows the message after
/// [`SANDBOX_RECORD_MARKER`], so logs written before the field existed read the same (this
/// serde conversion is the only place that knows the marker).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(from = "LoggedStepError", into = "LoggedStepError")]
pub struct StepError {
    pub kind: StepErrorKind,
    /// What went wrong, one line for people (without the sandbox record).
    pub message: String,
    /// Whether another attempt may succeed (a retry policy only retries these).
    pub retryable: bool,
    /// The execution record of a failed sandbox run (the JSON `sandbox.step` returns).
    pub sandbox: Option<Box<Value>>,
}

/// Where a sandbox execution record starts in a logged error message.
pub const SANDBOX_RECORD_MARKER: &str = "\nsandbox result: ";

/// A step's error, as logged.
#[derive(Serialize, Deserialize, JsonSchema)]
#[schemars(rename = "StepError")]
struct LoggedStepError {
    kind: StepErrorKind,
    message: String,
    /// Whether another attempt may succeed (a retry policy only retries these).
    #[serde(default)]
    retryable: bool,
}

impl From<LoggedStepError> for StepError {
    fn from(e: LoggedStepError) -> Self {
        let (message, sandbox) = match e.message.rsplit_once(SANDBOX_RECORD_MARKER) {
            Some((line, json)) => match serde_json::from_str::<Value>(json) {
                Ok(record) => (line.to_string(), Some(Box::new(record))),
                Err(_) => (e.message, None),
            },
            None => (e.message, None),
        };
        StepError {
            kind: e.kind,
            message,
            retryable: e.retryable,
            sandbox,
        }
    }
}

impl From<StepError> for LoggedStepError {
    fn from(e: StepError) -> Self {
        LoggedStepError {
            message: e.logged_message().into_owned(),
            kind: e.kind,
            retryable: e.retryable,
        }
    }
}

impl StepError {
    pub fn new(kind: StepErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: matches!(
                kind,
                StepErrorKind::Execution | StepErrorKind::Timeout | StepErrorKind::Model
            ),
            sandbox: None,
        }
    }
    pub fn fatal(kind: StepErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            retryable: false,
            sandbox: None,
        }
    }

    /// The same error with `sandbox` as its execution record.
    pub fn with_sandbox(mut self, record: Value) -> Self {
        self.sandbox = Some(Box::new(record));
        self
    }

    /// The message with the sandbox record after it, as the run log writes it (and as
    /// `steps.<id>.error` and a failed run's error have always shown it).
    pub fn logged_message(&self) -> std::borrow::Cow<'_, str> {
        match &self.sandbox {
            None => std::borrow::Cow::Borrowed(&self.message),
            Some(record) => std::borrow::Cow::Owned(format!(
                "{}{SANDBOX_RECORD_MARKER}{}",
                self.message,
                serde_json::to_string(record).unwrap_or_default()
            )),
        }
    }
}

impl std::fmt::Display for StepError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.message)
    }
}

/// Why a run paused.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "reason", rename_all = "snake_case")]
pub enum PauseReason {
    /// `baton runs pause` or the API.
    User,
    /// A breakpoint before `step` (`--break-before`, or `--step` mode).
    Breakpoint { step: String },
    /// A budget limit was crossed (the run's status is `budget_exceeded`).
    Budget(Box<crate::BudgetStop>),
    /// Everything left to run belongs to agents a person paused (`baton agents pause`):
    /// resuming one of them goes on.
    Agents { agents: Vec<String> },
}

/// What a step did while running, beyond its result (for live views and audits).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Progress {
    /// A model answered (one turn of an agent step).
    ModelReply {
        model: String,
        turn: u32,
        content: String,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        tool_calls: Vec<Value>,
        usage: Usage,
    },
    /// A tool called by a model returned.
    ToolResult {
        tool: String,
        arguments: Value,
        output: Value,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// The answer failed the output schema; the model is asked again.
    OutputRejected { attempt: u32, error: String },
    /// A line of text for people (e.g. a tool's log).
    Note { message: String },
    /// How a parallel step's `vote`, `priority`, `merge` or `judge` join was decided: the
    /// branch whose output won (`synthesis`: a judge's own output; none: the step failed),
    /// the other successful branches, and why.
    JoinDecided {
        strategy: crate::JoinStrategy,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        winner: Option<String>,
        #[serde(default, skip_serializing_if = "Vec::is_empty")]
        losers: Vec<String>,
        reason: String,
    },
    /// Every branch of a parallel step with a `judge` join ended: its judge agent is asked
    /// to pick one of the successful branches (`candidates`) or write a synthesis. The
    /// judge's replies follow as the parallel step's own.
    JudgeAsked {
        judge: String,
        candidates: Vec<String>,
    },
    /// What a model was sent for one turn of an agent step. Deduplicated: the part every turn
    /// shares (system message, tools offered, answer format) is carried once per step visit,
    /// in `context`, and referenced by `context_hash` after that; `messages` are the messages
    /// added since the step's previous turn (turn 1: the prompt). Long texts are cut to a cap,
    /// with a marker saying how much was cut (`cut_bytes` in all).
    Prompt {
        turn: u32,
        model: String,
        context_hash: String,
        /// Boxed: carried once per step visit, and the rest of the time the enum would be
        /// this big for every event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        context: Option<Box<PromptContext>>,
        messages: Vec<Value>,
        #[serde(default, skip_serializing_if = "is_zero_u64")]
        cut_bytes: u64,
    },
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// The part of an agent step's prompt that every turn shares (see [`Progress::Prompt`]).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PromptContext {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub system: Option<String>,
    /// The tools offered (name, description, parameters).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<Value>,
    /// The answer format asked for (a JSON Schema), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub response_format: Option<Value>,
}

/// How a person resolved an ambiguous step (`baton runs resolve --as done|retry`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// The effect happened: its result is the given value, and the step goes on from there.
    Done,
    /// Send the call again, with the same idempotency key.
    Retry,
}

impl Resolution {
    pub fn as_str(self) -> &'static str {
        match self {
            Resolution::Done => "done",
            Resolution::Retry => "retry",
        }
    }
}

/// One event of the run log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// The run was created with these inputs (after defaults). Stores keep the inputs once,
    /// in the run's row, and put them back here when they give the event out: a large input is
    /// stored once, not once per copy.
    RunCreated {
        workflow: String,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        inputs: Value,
        /// A fork (`baton runs fork`): the run and event its log was copied from, up to and
        /// including that event.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        forked_from: Option<crate::ForkOrigin>,
    },
    /// The registry agents the run's steps refer to (`agent: coder`, `agent: coder@3`), by
    /// reference as written, each with the version it resolved to when the run was created.
    /// Logged once, right after `run_created`; the run replays with these versions.
    AgentsResolved {
        agents: std::collections::BTreeMap<String, crate::PinnedAgent>,
    },
    /// A process started (or took back) the run.
    RunStarted {
        #[serde(default)]
        resumed: bool,
    },
    /// A step began an attempt. `key` is the idempotency key of the step's effect: every
    /// attempt of one visit of a step instance has the same key (runs logged before keys
    /// identified effects have one key per attempt), and a step interrupted by a crash is run
    /// again with it.
    StepStarted {
        step: String,
        attempt: u32,
        visit: u32,
        key: String,
    },
    StepProgress {
        step: String,
        progress: Progress,
    },
    StepSucceeded {
        step: String,
        output: Value,
        /// The step taken next in the same sequence; absent: the sequence ends.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Usage::is_empty")]
        usage: Usage,
    },
    /// An attempt failed. With `retry_in_ms` another attempt follows after that delay; with
    /// `recovered` the step's `on_error` (`continue` or `goto`) moves on to `next`; otherwise
    /// the failure ends the sequence the step is in.
    StepFailed {
        step: String,
        attempt: u32,
        error: StepError,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        retry_in_ms: Option<u64>,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        recovered: bool,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        next: Option<String>,
        #[serde(default)]
        duration_ms: u64,
        #[serde(default, skip_serializing_if = "Usage::is_empty")]
        usage: Usage,
    },
    /// A tool call of an agent step is about to be sent (logged before it is). `call` counts
    /// the attempt's calls from 1 across its turns; `key` (the step's key, `/`, `call`) is
    /// the call's idempotency key. A call started and never finished is ambiguous on resume.
    ToolCallStarted {
        step: String,
        attempt: u32,
        call: u32,
        tool: String,
        #[serde(default)]
        arguments: Value,
        key: String,
    },
    /// A tool call of an agent step returned: a resumed attempt reuses this result instead of
    /// calling again.
    ToolCallFinished {
        step: String,
        attempt: u32,
        call: u32,
        tool: String,
        output: Value,
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        is_error: bool,
    },
    /// The workflow's policy decided about an action before it happened: an agent's tool call
    /// (`call`, logged before its `tool_call_started`) or a `tool:`/`sandbox:` step's own
    /// call (no `call`; `arguments` are the rendered ones, which the step then sends). `rule`
    /// is the id of the rule that matched, or `default-deny`. A denied call is never sent:
    /// the agent gets the refusal as the call's result, a denied step fails (`policy_denied`).
    PolicyDecided {
        step: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        tool: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        agent: Option<String>,
        decision: crate::PolicyDecision,
        rule: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
        #[serde(default, skip_serializing_if = "Value::is_null")]
        arguments: Value,
    },
    /// A resumed step found an effect that was started but whose result was never logged, of a
    /// tool that cannot be sent again safely (`call`: the agent's tool call; absent: the tool
    /// step itself). The step waits for a person: `baton runs resolve`.
    StepAmbiguous {
        step: String,
        attempt: u32,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        call: Option<u32>,
        tool: String,
        #[serde(default)]
        arguments: Value,
        key: String,
    },
    /// A person resolved an ambiguous step: `done` (with the effect's result in `value`) or
    /// `retry` (sent again with the same key).
    StepResolved {
        step: String,
        resolution: Resolution,
        #[serde(default)]
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A `map` step evaluated its list.
    MapStarted {
        step: String,
        items: Vec<Value>,
    },
    /// A step that had started was stopped (its parallel join finished without it, or the run was cancelled).
    StepCancelled {
        step: String,
    },
    /// A `human` step asks a person.
    HumanRequested {
        step: String,
        prompt: String,
        kind: crate::HumanKind,
        /// When the wait ends unanswered (Unix ms; `human.timeout` after the request).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<i64>,
    },
    /// A human step's `timeout` passed unanswered: the request goes to `to`
    /// (`human.escalate_to`) and waits until `deadline_ms`.
    HumanEscalated {
        step: String,
        to: String,
        deadline_ms: i64,
    },
    /// A person answered.
    HumanResponded {
        step: String,
        approved: bool,
        #[serde(default)]
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        comment: Option<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// `state.<key>` was set (to the value its merge contract gave, if it has one).
    StateSet {
        key: String,
        value: Value,
        /// The step instance that wrote it (absent in logs written before it was recorded).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        writer: Option<String>,
    },
    /// A person changed a forked run's state where it was forked (`baton runs fork --set`):
    /// a finished step's output, or a key of the shared state. Logged after the copied events.
    StateEdited {
        target: crate::EditTarget,
        value: Value,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Paused {
        pause: PauseReason,
    },
    /// A person raised budget limits (`baton resume --budget tokens=+50000`).
    BudgetRaised {
        changes: Vec<crate::BudgetChange>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// A person changed the steps the run pauses before (`baton runs breakpoints`): the
    /// whole set from here on.
    BreakpointsSet {
        breakpoints: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    Resumed {
        /// Pause again before every step (step-through debugging).
        #[serde(default)]
        stepping: bool,
    },
    CancelRequested,
    /// A person paused, resumed or stopped one agent of the run (`baton agents pause RUN
    /// AGENT`).
    AgentControlled {
        agent: String,
        action: crate::AgentAction,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        by: Option<String>,
    },
    /// An agent's step sent a message: `message.send` to one agent, or `message.broadcast` on
    /// `channel` to its subscribers (`to`, the sender left out). Receivers find it in their
    /// inbox, in log order.
    MessageSent {
        step: String,
        from: String,
        to: Vec<String>,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        channel: Option<String>,
        content: String,
    },
    /// The first `count` messages of the step's agent's inbox went into `turn` of the step's
    /// attempt: a replay of that turn sees the same messages, and no other turn sees them.
    MessagesDelivered {
        step: String,
        attempt: u32,
        turn: u32,
        count: u32,
    },
    /// An agent subscribed to a channel at run time (`channel.subscribe`).
    ChannelSubscribed {
        step: String,
        agent: String,
        channel: String,
    },
    /// A key of the run's shared memory was written (`memory.set`, `memory.append`) by an
    /// agent's step: `value` is what was written (for `append`, the item appended).
    MemoryWritten {
        step: String,
        agent: String,
        key: String,
        value: Value,
        op: crate::MemoryOp,
    },
    /// A step that waited for a message (`wait_for`) got it: its work starts.
    StepWoke {
        step: String,
    },
    RunSucceeded {
        outputs: Value,
    },
    RunFailed {
        error: String,
    },
    RunCancelled,
}

impl Event {
    pub fn kind(&self) -> &'static str {
        match self {
            Event::RunCreated { .. } => "run_created",
            Event::AgentsResolved { .. } => "agents_resolved",
            Event::RunStarted { .. } => "run_started",
            Event::StepStarted { .. } => "step_started",
            Event::StepProgress { .. } => "step_progress",
            Event::StepSucceeded { .. } => "step_succeeded",
            Event::StepFailed { .. } => "step_failed",
            Event::StepCancelled { .. } => "step_cancelled",
            Event::ToolCallStarted { .. } => "tool_call_started",
            Event::ToolCallFinished { .. } => "tool_call_finished",
            Event::PolicyDecided { .. } => "policy_decided",
            Event::StepAmbiguous { .. } => "step_ambiguous",
            Event::StepResolved { .. } => "step_resolved",
            Event::MapStarted { .. } => "map_started",
            Event::HumanRequested { .. } => "human_requested",
            Event::HumanEscalated { .. } => "human_escalated",
            Event::HumanResponded { .. } => "human_responded",
            Event::StateSet { .. } => "state_set",
            Event::StateEdited { .. } => "state_edited",
            Event::Paused { .. } => "paused",
            Event::BudgetRaised { .. } => "budget_raised",
            Event::BreakpointsSet { .. } => "breakpoints_set",
            Event::Resumed { .. } => "resumed",
            Event::CancelRequested => "cancel_requested",
            Event::AgentControlled { .. } => "agent_controlled",
            Event::MessageSent { .. } => "message_sent",
            Event::MessagesDelivered { .. } => "messages_delivered",
            Event::ChannelSubscribed { .. } => "channel_subscribed",
            Event::MemoryWritten { .. } => "memory_written",
            Event::StepWoke { .. } => "step_woke",
            Event::RunSucceeded { .. } => "run_succeeded",
            Event::RunFailed { .. } => "run_failed",
            Event::RunCancelled => "run_cancelled",
        }
    }

    /// The step this event is about, if any.
    pub fn step(&self) -> Option<&str> {
        match self {
            Event::StepStarted { step, .. }
            | Event::StepProgress { step, .. }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step }
            | Event::ToolCallStarted { step, .. }
            | Event::ToolCallFinished { step, .. }
            | Event::PolicyDecided { step, .. }
            | Event::StepAmbiguous { step, .. }
            | Event::StepResolved { step, .. }
            | Event::MapStarted { step, .. }
            | Event::HumanRequested { step, .. }
            | Event::HumanEscalated { step, .. }
            | Event::HumanResponded { step, .. }
            | Event::MessageSent { step, .. }
            | Event::MessagesDelivered { step, .. }
            | Event::ChannelSubscribed { step, .. }
            | Event::MemoryWritten { step, .. }
            | Event::StepWoke { step } => Some(step),
            _ => None,
        }
    }
}

/// An event with its place in the log.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct EventRecord {
    pub run_id: RunId,
    /// 1-based position in the run's log.
    pub seq: u64,
    /// Unix time in milliseconds.
    pub at_ms: i64,
    #[serde(flatten)]
    pub event: Event,
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_sandbox_record_is_logged_after_the_message_and_read_back() {
        let e = StepError::new(StepErrorKind::Execution, "exited with code 3")
            .with_sandbox(json!({ "exit_code": 3, "stdout": "x" }));
        let logged = serde_json::to_value(&e).unwrap();
        assert_eq!(
            logged["message"],
            "exited with code 3\nsandbox result: {\"exit_code\":3,\"stdout\":\"x\"}"
        );
        let back: StepError = serde_json::from_value(logged).unwrap();
        assert_eq!(back, e);
        assert_eq!(back.message, "exited with code 3");
    }

    #[test]
    fn errors_without_a_record_log_as_before() {
        let e = StepError::fatal(StepErrorKind::Template, "undefined value");
        let logged = serde_json::to_value(&e).unwrap();
        assert_eq!(
            logged,
            json!({ "kind": "template", "message": "undefined value", "retryable": false })
        );
        let old: StepError =
            serde_json::from_value(json!({ "kind": "template", "message": "m" })).unwrap();
        assert_eq!(old, StepError::fatal(StepErrorKind::Template, "m"));
        // A marker followed by something that is not JSON stays part of the message.
        let odd: StepError = serde_json::from_value(
            json!({ "kind": "execution", "message": "a\nsandbox result: {oops" }),
        )
        .unwrap();
        assert_eq!(odd.message, "a\nsandbox result: {oops");
        assert!(odd.sandbox.is_none());
    }
}

/// Text a model is producing, as it streams: for front ends that show an agent typing. Not part
/// of the run log (replay never needs it: the step's `model_reply` progress holds the whole
/// answer) and has no `seq`; deltas are coalesced (about one per 50 ms of output per step).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "type", rename = "model_delta")]
pub struct ModelDelta {
    pub run_id: RunId,
    /// The step instance (`id` or `id[2]` inside a map).
    pub step: String,
    pub agent: String,
    /// The model turn within the step (1, then one more after each round of tool calls).
    pub turn: u32,
    pub text: String,
}
