//! An agent step's journal: what its work did so far in one visit (model replies, tool
//! calls), folded from the run log, so that a resumed or retried attempt replays it.

use std::collections::BTreeSet;

use baton_types::Usage;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What an agent step did so far in one visit, folded from the run log: its model replies
/// (the `model_reply` progress, by turn) and its tool calls (`tool_call_started` and
/// `tool_call_finished`). Kept across the visit's attempts: a retry, like a resume, replays
/// what is recorded and carries on from there.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct Journal {
    /// Each turn's reply, turn 1 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub replies: Vec<ReplyRecord>,
    /// Each tool call, call 1 first.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub calls: Vec<CallRecord>,
    /// A person chose `retry` for the agent's ambiguous call: send it again (same key); its
    /// next `tool_call_started` clears this.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub resend: bool,
    /// The messages each turn received from the agent's inbox (`messages_delivered`), in
    /// turn order: a replayed turn sees the same ones.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbox: Vec<InboxRecord>,
    /// Hashes of the prompt contexts already logged in this visit (see `Progress::Prompt`).
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub prompts: BTreeSet<String>,
}

/// The messages one turn of an agent step received.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct InboxRecord {
    /// The attempt the messages were delivered to.
    pub attempt: u32,
    pub turn: u32,
    pub messages: Vec<baton_types::TeamMessage>,
}

/// A model's reply as the journal keeps it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ReplyRecord {
    /// The attempt that got it (its usage counts once, with that attempt).
    pub attempt: u32,
    pub content: String,
    /// The tool calls it asked for, as logged.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tool_calls: Vec<Value>,
    #[serde(default)]
    pub usage: Usage,
}

/// One tool call of an agent step: started (logged before it was sent), and its result once
/// it returned.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CallRecord {
    pub call: u32,
    pub tool: String,
    #[serde(default)]
    pub arguments: Value,
    pub key: String,
    /// The output, and whether it is an error; `None`: never logged (ambiguous).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub result: Option<(Value, bool)>,
}

impl Journal {
    /// The messages `turn` received, when it received some (a retry replays the turns of the
    /// attempts before it, with what they received).
    pub fn inbox_of(&self, turn: u32) -> Option<&[baton_types::TeamMessage]> {
        // Appended in turn order (a turn gets its messages once).
        let i = self.inbox.binary_search_by_key(&turn, |r| r.turn).ok()?;
        Some(self.inbox[i].messages.as_slice())
    }

    /// Call `n` (from 1).
    pub fn call(&self, n: u32) -> Option<&CallRecord> {
        self.calls.get(usize::try_from(n).ok()?.checked_sub(1)?)
    }

    /// Records the result of call `n` (a call answered without being sent, e.g. of a tool the
    /// agent may not use, has no start).
    pub(super) fn set_result(&mut self, n: u32, tool: &str, result: (Value, bool)) {
        let mut rec = match self.call(n) {
            Some(c) if c.call == n => c.clone(),
            _ => CallRecord {
                call: n,
                tool: tool.to_string(),
                arguments: Value::Null,
                key: String::new(),
                result: None,
            },
        };
        rec.result = Some(result);
        self.set_call(rec);
    }

    /// Records call `n` (from 1), replacing what was there.
    pub(super) fn set_call(&mut self, rec: CallRecord) {
        let Some(i) = usize::try_from(rec.call)
            .ok()
            .and_then(|n| n.checked_sub(1))
        else {
            return;
        };
        if self.calls.len() <= i {
            self.calls.resize_with(i + 1, || CallRecord {
                call: 0,
                tool: String::new(),
                arguments: Value::Null,
                key: String::new(),
                result: None,
            });
        }
        self.calls[i] = rec;
    }
}
