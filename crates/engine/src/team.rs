//! The team tools: what agents of one run use to talk to each other and share what they know.
//! The engine answers them itself, in its state machine (see `machine/team_ops.rs`): a call is
//! logged with what it changed in one write, so a message is delivered and a memory write
//! happens exactly once, whatever crashes in between.
//!
//! - `message.send {to, content}`: a direct message to another agent of the run;
//! - `message.broadcast {channel, content}`: to every subscriber of a declared channel;
//! - `channel.subscribe {channel}`: the calling agent receives that channel from now on;
//! - `memory.get {key}`, `memory.set {key, value, expect_version?}` (compare-and-set with
//!   `expect_version`; 0: the key must not exist yet), `memory.append {key, value}`,
//!   `memory.list {prefix?}`: the run's shared memory, also read by templates as `memory.KEY`.
//!
//! An agent uses one only when its `tools:` list names it, like any other tool.

use baton_types::{Effects, ToolSpec};
use serde_json::json;

/// The names of the team tools.
pub const TOOLS: [&str; 7] = [
    "message.send",
    "message.broadcast",
    "channel.subscribe",
    "memory.get",
    "memory.set",
    "memory.append",
    "memory.list",
];

/// Whether `name` is a team tool.
pub fn is_team_tool(name: &str) -> bool {
    TOOLS.contains(&name)
}

/// Who an agent can reach: the other agents of its workflow and the channels it declares.
/// Offered specs list them (`enum`), so a model names a real receiver.
#[derive(Clone, Debug, Default)]
pub struct Reach {
    pub agents: Vec<String>,
    pub channels: Vec<String>,
}

/// [`spec`], with the receivers `reach` names as the only values of `to` and `channel`.
pub fn spec_for(name: &str, reach: &Reach) -> Option<ToolSpec> {
    let mut s = spec(name)?;
    let (field, values) = match name {
        "message.send" => ("to", &reach.agents),
        "message.broadcast" | "channel.subscribe" => ("channel", &reach.channels),
        _ => return Some(s),
    };
    if !values.is_empty()
        && let Some(p) = s.parameters.pointer_mut(&format!("/properties/{field}"))
    {
        p["enum"] = json!(values);
    }
    Some(s)
}

/// The spec of team tool `name` (offered to the model like any other tool's).
pub fn spec(name: &str) -> Option<ToolSpec> {
    let key = json!({"type": "string", "description": "The memory key."});
    let (description, parameters) = match name {
        "message.send" => (
            "Send a message to another agent of this run. It sees it in its next turn, with \
             your name and the time.",
            json!({"type": "object", "required": ["to", "content"], "properties": {
                "to": {"type": "string", "description": "The agent's name."},
                "content": {"type": "string"}}}),
        ),
        "message.broadcast" => (
            "Send a message to every subscriber of a channel (you excepted).",
            json!({"type": "object", "required": ["channel", "content"], "properties": {
                "channel": {"type": "string"}, "content": {"type": "string"}}}),
        ),
        "channel.subscribe" => (
            "Receive the messages broadcast on a channel from now on.",
            json!({"type": "object", "required": ["channel"], "properties": {
                "channel": {"type": "string"}}}),
        ),
        "memory.get" => (
            "Read a key of the team's shared memory: its value, version and last writer \
             (version 0 and a null value: never written).",
            json!({"type": "object", "required": ["key"], "properties": {"key": key}}),
        ),
        "memory.set" => (
            "Write a key of the team's shared memory. With expect_version, only if the key is \
             still at that version (0: not written yet); otherwise the call fails and says the \
             current version: read it again and retry.",
            json!({"type": "object", "required": ["key", "value"], "properties": {
                "key": key, "value": {},
                "expect_version": {"type": "integer", "minimum": 0}}}),
        ),
        "memory.append" => (
            "Append a value to a list in the team's shared memory (created when absent).",
            json!({"type": "object", "required": ["key", "value"], "properties": {
                "key": key, "value": {}}}),
        ),
        "memory.list" => (
            "List the keys of the team's shared memory (with a prefix: only those).",
            json!({"type": "object", "properties": {"prefix": {"type": "string"}}}),
        ),
        _ => return None,
    };
    // Answered by the engine inside the run log: repeating a logged call changes nothing.
    Some(ToolSpec::new(name, description, parameters).with_effects(Effects::None))
}
