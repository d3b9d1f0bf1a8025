//! Agents as a team: each agent's lifecycle in a run, the messages agents send each other
//! (directly or on a channel), the run's shared memory, and the workflow settings for them.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::Dur;

/// Where an agent of a run is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentState {
    /// No step of the agent is running (none started yet, or the last one succeeded).
    #[default]
    Idle,
    /// A step of the agent is running.
    Running,
    /// A step of the agent waits: for a message (`wait_for`), a person, or its retry.
    Waiting,
    /// A person paused the agent: its running step finishes its current model call and then
    /// holds; its other steps do not start until it is resumed.
    Paused,
    /// A person stopped the agent: its pending steps failed, and none of its steps runs again
    /// in this run.
    Stopped,
    /// The agent's last step failed.
    Failed,
}

impl AgentState {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentState::Idle => "idle",
            AgentState::Running => "running",
            AgentState::Waiting => "waiting",
            AgentState::Paused => "paused",
            AgentState::Stopped => "stopped",
            AgentState::Failed => "failed",
        }
    }
}

impl std::fmt::Display for AgentState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What a person does to one agent of a run (`baton agents pause|resume|stop RUN AGENT`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum AgentAction {
    Pause,
    Resume,
    Stop,
}

impl AgentAction {
    pub fn as_str(self) -> &'static str {
        match self {
            AgentAction::Pause => "pause",
            AgentAction::Resume => "resume",
            AgentAction::Stop => "stop",
        }
    }
}

/// An agent's state in a run, and since when (Unix ms).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AgentLife {
    pub state: AgentState,
    pub since_ms: i64,
    /// Who paused or stopped it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub by: Option<String>,
}

/// A message between agents, as the receivers' inboxes hold it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamMessage {
    /// Position among the run's messages, from 1: the order every receiver sees them in.
    pub id: u64,
    pub from: String,
    /// The channel it was broadcast on; absent: a direct message.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub channel: Option<String>,
    pub content: String,
    /// When it was sent (Unix ms).
    pub at_ms: i64,
}

/// An entry of the run's shared memory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct MemoryEntry {
    pub value: Value,
    /// 1 for the first write, one more with each (compare-and-set compares it).
    pub version: u64,
    /// The agent that wrote it last.
    pub by: String,
    /// The step instance that wrote it last.
    pub step: String,
}

/// How a `memory_written` event changed a key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum MemoryOp {
    Set,
    Append,
}

/// A channel of the workflow (`channels:`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct ChannelSpec {
    /// The agents that receive what is broadcast on it (agents may also subscribe at run time
    /// with `channel.subscribe`).
    pub subscribers: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// Limits on messages between agents (`messages:`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct MessagesSpec {
    /// The most bytes one message may hold (default 65536); a longer one is refused with an
    /// error the sending agent sees.
    #[serde(default = "default_max_bytes")]
    pub max_bytes: u32,
}

impl Default for MessagesSpec {
    fn default() -> Self {
        MessagesSpec {
            max_bytes: default_max_bytes(),
        }
    }
}

fn default_max_bytes() -> u32 {
    64 * 1024
}

/// An agent step's `wait_for:`: it starts only once a message from `from` is in its agent's
/// inbox.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct WaitFor {
    /// The agent the message must come from.
    pub from: String,
    /// How long to wait (e.g. `30s`); the step fails with a timeout after it. Without it the
    /// step waits until a message comes, or fails at once when nothing left can send one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
}

/// The team view of a run: each agent's state, the messages not yet delivered, the channels'
/// subscribers and the shared memory (`baton runs show`, `GET /api/v1/runs/{id}`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TeamView {
    pub agents: BTreeMap<String, AgentLife>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inboxes: BTreeMap<String, Vec<TeamMessage>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub channels: BTreeMap<String, Vec<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memory: BTreeMap<String, MemoryEntry>,
    /// Messages sent in the run.
    #[serde(default)]
    pub messages_sent: u64,
}

/// The name an agent reference is known by in a team: `coder@3` is `coder`.
pub fn agent_name(reference: &str) -> &str {
    reference.split('@').next().unwrap_or(reference)
}
