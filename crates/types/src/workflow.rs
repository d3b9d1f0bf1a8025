//! The workflow document (`version: 1`), exactly as users write it in YAML or JSON.
//!
//! Every struct denies unknown keys, so a typo is an error, and every optional field is skipped
//! when absent, so a document survives a parse/serialize round trip unchanged.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{Dur, Step};

// Its steps are typed `Step`s; the loader reads them as written (`WorkflowDoc<StepFields>`)
// first, to report every step that breaks the kind rules.
/// A workflow document.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "Baton workflow")]
pub struct WorkflowDoc<S = Step> {
    /// Format version; only `1` exists.
    pub version: u32,
    /// Name of the workflow, shown in `baton runs list`.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Inputs the run takes (`--input k=v`), with types and defaults.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub inputs: IndexMap<String, InputSpec>,
    /// Agents the steps refer to by name.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub agents: IndexMap<String, AgentSpec>,
    /// Initial values of the run's shared `state` (changed by the `state.set` tool).
    #[serde(default, skip_serializing_if = "serde_json::Map::is_empty")]
    pub state: serde_json::Map<String, Value>,
    /// How writes of state keys combine (`{type, reduce, priority}` per key): a key that
    /// parallel branches may both write needs one.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub contracts: IndexMap<String, crate::Contract>,
    /// Limits on what tools may reach, and the rules every tool, workspace and sandbox action
    /// is checked against before it happens.
    #[serde(default, skip_serializing_if = "Policy::is_empty")]
    pub policy: Policy,
    /// The steps, run in order unless `next`, a condition, or `edges` say otherwise.
    pub steps: Vec<S>,
    /// Extra edges of the graph: from a step to another, optionally guarded by a condition.
    /// Evaluated in order after the step ends; the first whose `when` holds is taken.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub edges: Vec<EdgeSpec>,
    /// Outputs of the run: name -> template, rendered when the run succeeds.
    /// Without it, the run's output is the output of the last step that ran.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub outputs: IndexMap<String, String>,
    /// Limits on what the whole run may spend (every agent draws from it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::Budget>,
    /// Runaway detection (repeated identical tool calls, loops that change nothing).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub runaway: Option<crate::Runaway>,
    /// Channels agents broadcast on (`message.broadcast`), with their subscribers.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub channels: IndexMap<String, crate::ChannelSpec>,
    /// Limits on the messages agents send each other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub messages: Option<crate::MessagesSpec>,
    /// Where the visual builder draws each step: step id -> `[x, y]` on its canvas. Kept with
    /// the document so a saved arrangement reopens as it was; the engine never reads it.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub layout: IndexMap<String, [f64; 2]>,
}

impl<S> WorkflowDoc<S> {
    /// The same document with other steps.
    pub fn with_steps<T>(self, steps: Vec<T>) -> WorkflowDoc<T> {
        let WorkflowDoc {
            version,
            name,
            description,
            inputs,
            agents,
            state,
            contracts,
            policy,
            steps: _,
            edges,
            outputs,
            budget,
            runaway,
            channels,
            messages,
            layout,
        } = self;
        WorkflowDoc {
            version,
            name,
            description,
            inputs,
            agents,
            state,
            contracts,
            policy,
            steps,
            edges,
            outputs,
            budget,
            runaway,
            channels,
            messages,
            layout,
        }
    }
}

/// Type of an input value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum InputType {
    String,
    Number,
    Integer,
    Boolean,
    Array,
    Object,
}

impl InputType {
    pub fn name(self) -> &'static str {
        match self {
            Self::String => "string",
            Self::Number => "number",
            Self::Integer => "integer",
            Self::Boolean => "boolean",
            Self::Array => "array",
            Self::Object => "object",
        }
    }
}

/// One input of a workflow.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    #[serde(rename = "type")]
    pub kind: InputType,
    /// Value used when the run is not given this input. Without a default the input is required.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<Value>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// The allowed values, when only a few are.
    #[serde(default, rename = "enum", skip_serializing_if = "Option::is_none")]
    pub allowed: Option<Vec<Value>>,
}

/// An agent: a model with a role, instructions and tools.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentSpec {
    /// `provider/model`, e.g. `local/smollm2`, `openai/gpt-4o`, `scripted/hello`.
    pub model: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// System instructions (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub temperature: Option<f32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens: Option<u32>,
    /// Names of the tools the model may call.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// How many rounds of tool calls the model may make in one step (default 8).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tool_turns: Option<u32>,
    /// Output contract for every step of this agent (a step's own `output` wins).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    /// Limits on this agent's own spend (`wall_time` is run-level only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget: Option<crate::Budget>,
}

/// An agent of the registry that a run uses: the version its reference named (or the default
/// when the run started), frozen for the run's life so that it replays with the same agent.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct PinnedAgent {
    pub name: String,
    pub version: u32,
    pub spec: AgentSpec,
}

pub const DEFAULT_MAX_TOOL_TURNS: u32 = 8;
pub const DEFAULT_OUTPUT_RETRIES: u32 = 2;

/// What an agent's answer must look like.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    /// JSON Schema the answer must match; the answer is parsed as JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// How many times the model is asked again with the validation error (default 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
}

/// Tool limits of the workflow.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Hosts (`host` or `host:port`) the `http.*` tools may contact. Empty: none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub http_allow: Vec<String>,
    /// Rules checked before every tool, workspace and sandbox action, in order: the first
    /// that matches decides, and an action no rule matches is denied. Without rules every
    /// action is allowed (what the agent's `tools` and `http_allow` permit).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rules: Vec<crate::PolicyRule>,
}

impl Policy {
    pub fn is_empty(&self) -> bool {
        self.http_allow.is_empty() && self.rules.is_empty()
    }
}

/// `switch:` cases.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchSpec {
    /// Tried in order; the first whose `when` holds is taken.
    pub cases: Vec<SwitchCase>,
    /// Step id (or `end`) when no case holds; default: the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SwitchCase {
    /// An expression.
    pub when: String,
    /// Step id (or `end`).
    pub goto: String,
}

/// How a parallel step's branches are joined.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct JoinSpec {
    #[serde(default)]
    pub strategy: JoinStrategy,
    /// `vote` only: what a tie gives (default `first`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "TieBreak")]
    pub tie_break: Option<TieBreak>,
    /// `priority` and `merge` (with `on_conflict: priority`): branch ids, highest first
    /// (default: document order; unlisted branches follow in document order).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Vec<String>>,
    /// `merge` only: what two branches setting one key to different values give (default
    /// `fail`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "OnConflict")]
    pub on_conflict: Option<OnConflict>,
    /// `judge` only: the agent (of `agents:` or the registry) that picks a branch's output
    /// or writes a synthesis.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub judge: Option<String>,
}

/// How a `vote` join settles a tie.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum TieBreak {
    /// The tied value of the earliest branch in document order wins.
    #[default]
    First,
    /// The step fails.
    Fail,
}

/// How a `merge` join settles a conflict.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnConflict {
    /// The step fails, naming the key path and the branches.
    #[default]
    Fail,
    /// The value of the branch first in `priority` wins.
    Priority,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum JoinStrategy {
    /// Wait for every branch; fails if one fails. Output: `{branch_id: output}`.
    #[default]
    All,
    /// Done when the first branch ends, whatever its outcome; the others are cancelled.
    Any,
    /// Done when the first branch succeeds; fails only when every branch failed.
    FirstSuccess,
    /// Waits for every branch; the output most successful branches gave (strings trimmed and
    /// case-folded, JSON compared canonically) wins; a tie follows `tie_break`.
    Vote,
    /// Waits for every branch; the output of the first successful branch in `priority` wins.
    Priority,
    /// Waits for every branch; the successful branches' objects are deep-merged; a key with
    /// different values fails the step or follows `priority` (`on_conflict`).
    Merge,
    /// Waits for every branch; the `judge` agent sees every candidate with its branch and
    /// picks one (`choice`) or writes a synthesis; its reason is recorded.
    Judge,
}

impl JoinStrategy {
    /// The strategy as written in documents.
    pub fn as_str(self) -> &'static str {
        match self {
            JoinStrategy::All => "all",
            JoinStrategy::Any => "any",
            JoinStrategy::FirstSuccess => "first_success",
            JoinStrategy::Vote => "vote",
            JoinStrategy::Priority => "priority",
            JoinStrategy::Merge => "merge",
            JoinStrategy::Judge => "judge",
        }
    }
}

/// `map:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MapSpec {
    /// An expression giving the list, e.g. `steps.plan.output.files`.
    pub over: String,
    /// Name of the item inside the sub-steps' templates (default `item`).
    #[serde(default, rename = "as", skip_serializing_if = "Option::is_none")]
    pub item: Option<String>,
}

/// `human:` settings.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HumanSpec {
    /// What the person is asked (a template).
    pub prompt: String,
    /// `approval` (yes/no; a rejection fails the step) or `input` (a value).
    #[serde(default)]
    pub kind: HumanKind,
    /// JSON Schema of the value, for `input`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schema: Option<Value>,
    /// How long to wait for an answer (e.g. `4h`); none: as long as it takes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Who the request goes to when `timeout` passes unanswered: a role (`admin`, `editor`)
    /// or a key id. It then waits another `timeout`, and only that role or key (or an admin)
    /// may answer it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub escalate_to: Option<String>,
    /// What a request still unanswered after its (last) timeout becomes: `fail` (the step
    /// fails with a timeout error; `retry` and `on_error` apply), `reject` or `approve`.
    #[serde(default, skip_serializing_if = "OnTimeout::is_default")]
    pub on_timeout: OnTimeout,
}

/// What an unanswered human step becomes when its wait is over.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum OnTimeout {
    #[default]
    Fail,
    Reject,
    Approve,
}

impl OnTimeout {
    pub fn is_default(&self) -> bool {
        *self == OnTimeout::Fail
    }

    pub fn as_str(&self) -> &'static str {
        match self {
            OnTimeout::Fail => "fail",
            OnTimeout::Reject => "reject",
            OnTimeout::Approve => "approve",
        }
    }
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum HumanKind {
    #[default]
    Approval,
    Input,
}

/// `sandbox:` settings: what runs, with which files, under which policy. Every string but
/// `policy` and `workdir` is a template; the limits and `tier`/`net` override the policy file
/// (or the defaults of the `process` tier).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxSpec {
    /// An argv list, or a string run by `/bin/sh -c`.
    pub command: SandboxCommand,
    /// Files written into the workspace (`/work`) first: relative path -> contents (templates).
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub files: IndexMap<String, String>,
    /// Text fed to the command's standard input (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stdin: Option<String>,
    /// Environment variables inside (values are templates); the host's are never passed in.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub env: IndexMap<String, String>,
    /// A host directory bound read-write as `/work` instead of a fresh tmpfs (relative to the
    /// workflow file; not a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workdir: Option<String>,
    /// A sandbox policy file (JSON or YAML, relative to the workflow file; not a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// `process`, `oci`, `gvisor`, `microvm` or `docker`. An unavailable tier fails the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// CPUs (fractions allowed), e.g. `0.5`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu: Option<Scalar>,
    /// Memory limit, e.g. `256M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub memory: Option<Scalar>,
    /// Most processes and threads at once.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pids: Option<Scalar>,
    /// Size of the workspace and of /tmp, each, e.g. `100M`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub disk: Option<Scalar>,
    /// Wall-clock limit of the command, e.g. `10s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time: Option<Scalar>,
    /// Bytes kept of stdout and of stderr, each, e.g. `64k`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<Scalar>,
    /// `none` (default), `loopback` or `allow:host[,host...]`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub net: Option<String>,
    /// Headers Baton's proxy adds to the sandbox's requests to allowed hosts, their values
    /// read from Baton's environment (the sandbox never sees them). Replace the policy
    /// file's. Not templates.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<SandboxCredential>,
    /// Succeed whatever the exit code or limit stop (the result says what happened). Default
    /// false: a non-zero exit or a limit stop fails the step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_failure: Option<bool>,
}

impl SandboxSpec {
    /// The policy fields this step overrides, as `(name, value)`, in document order.
    pub fn overrides(&self) -> Vec<(&'static str, String)> {
        let mut v = Vec::new();
        if let Some(t) = &self.tier {
            v.push(("tier", t.clone()));
        }
        for (name, f) in [
            ("cpu", &self.cpu),
            ("memory", &self.memory),
            ("pids", &self.pids),
            ("disk", &self.disk),
            ("time", &self.time),
            ("output", &self.output),
        ] {
            if let Some(x) = f {
                v.push((name, x.to_string()));
            }
        }
        if let Some(n) = &self.net {
            v.push(("net", n.clone()));
        }
        v
    }
}

/// One `credentials:` entry of a sandbox step: `header: format(value of $value_env)` on the
/// sandbox's plain `http://` requests to `host`, forwarded over `upstream`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SandboxCredential {
    /// `host`, `host:port` or `*.domain`, as in `net: allow:...` (and on that list).
    pub host: String,
    /// The header to set, e.g. `Authorization` (one the sandbox sent is replaced).
    pub header: String,
    /// The variable of Baton's environment holding the secret, e.g. `EXAMPLE_TOKEN`.
    pub value_env: String,
    /// The value with `{}` where the secret goes, e.g. `Bearer {}`; default: the secret.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub format: Option<String>,
    /// `https` (default: TLS to the host, port 443 for a URL without a port) or `http`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upstream: Option<String>,
}

/// A sandbox command: an argv list, or one string run by `/bin/sh -c`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum SandboxCommand {
    Shell(String),
    Argv(Vec<String>),
}

impl JsonSchema for SandboxCommand {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "SandboxCommand".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["string", "array"],
            "items": {"type": "string"},
            "description": "An argv list, or a string run by `/bin/sh -c`."
        })
    }
}

/// A number or a string (`cpu: 0.5`, `memory: 256M`, `pids: 64`, `time: "{{ inputs.t }}"`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    Number(serde_json::Number),
    Text(String),
}

impl std::fmt::Display for Scalar {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Scalar::Number(n) => write!(f, "{n}"),
            Scalar::Text(s) => f.write_str(s),
        }
    }
}

impl JsonSchema for Scalar {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "Scalar".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": ["number", "string"],
            "description": "A number, or a string such as `256M`, `10s` or a template."
        })
    }
}

/// Retries of a failed attempt: `max` more attempts, waiting `backoff`, then twice as long
/// each time (`factor`), never more than `max_delay`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    pub max: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub backoff: Option<Dur>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<Dur>,
}

impl RetrySpec {
    /// Delay before retry number `n` (1-based).
    pub fn delay(&self, n: u32) -> std::time::Duration {
        let base = self.backoff.map(|d| d.0).unwrap_or_default();
        let factor = self.factor.unwrap_or(2.0).max(1.0);
        let exp = factor.powi(i32::try_from(n.saturating_sub(1)).unwrap_or(i32::MAX));
        let ms = (base.as_secs_f64() * 1000.0 * exp).min(86_400_000.0);
        let d = std::time::Duration::from_micros((ms * 1000.0) as u64);
        match self.max_delay {
            Some(m) if d > m.0 => m.0,
            _ => d,
        }
    }
}

/// What a failed step does: `fail`, `continue`, or `goto STEP`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum OnError {
    Fail,
    Continue,
    Goto(String),
}

impl std::str::FromStr for OnError {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        match s {
            "fail" => Ok(Self::Fail),
            "continue" => Ok(Self::Continue),
            _ => match s.strip_prefix("goto ") {
                Some(t) if !t.trim().is_empty() => Ok(Self::Goto(t.trim().to_string())),
                _ => Err(format!(
                    "'{s}' is not an on_error action: write `fail`, `continue` or `goto STEP`"
                )),
            },
        }
    }
}

impl Serialize for OnError {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Fail => s.serialize_str("fail"),
            Self::Continue => s.serialize_str("continue"),
            Self::Goto(t) => s.serialize_str(&format!("goto {t}")),
        }
    }
}

impl<'de> Deserialize<'de> for OnError {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        String::deserialize(d)?
            .parse()
            .map_err(serde::de::Error::custom)
    }
}

impl JsonSchema for OnError {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        "OnError".into()
    }
    fn json_schema(_: &mut schemars::SchemaGenerator) -> schemars::Schema {
        schemars::json_schema!({
            "type": "string",
            "pattern": r"^\s*(fail|continue|goto\s+\S+)\s*$",
            "description": "`fail`, `continue` or `goto STEP`."
        })
    }
}

/// An explicit edge.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EdgeSpec {
    pub from: String,
    /// Step id or `end`.
    pub to: String,
    /// An expression; without it the edge is always taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

/// The target name that ends the current sequence (the run, or the branch it is in).
pub const END: &str = "end";

/// The JSON Schema of the workflow format.
pub fn workflow_schema() -> Value {
    let schema = schemars::schema_for!(WorkflowDoc);
    serde_json::to_value(schema).unwrap_or(Value::Null)
}
