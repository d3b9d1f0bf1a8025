//! Decisions about the team's tools: a team tool call answered in the log (see
//! `crate::team`): messages, channels and the run's shared memory; the messages a turn
//! receives; runaway message exchanges. The lifecycle is in `team_life`.

use std::collections::BTreeSet;

use baton_types::{Event, MemoryOp, StepError, StepErrorKind, agent_name};
use serde_json::{Value, json};

use super::decide::Ended;
use super::state::RunState;
use super::team::{EXCHANGE_MEMORY, content_hash, exchange};
use super::{Decision, Machine, Refused};

/// A team tool call, as the machine takes it.
#[derive(Clone, Debug, PartialEq)]
pub struct TeamCall {
    pub call: u32,
    pub tool: String,
    pub arguments: Value,
    pub key: String,
}

/// What a team call does: the events it logs (before its result), and its result.
struct Answered {
    events: Vec<Event>,
    output: Value,
    is_error: bool,
}

impl Answered {
    fn ok(output: Value) -> Answered {
        Answered {
            events: Vec::new(),
            output,
            is_error: false,
        }
    }

    fn refused(why: String) -> Answered {
        Answered {
            events: Vec::new(),
            output: Value::String(format!("error: {why}")),
            is_error: true,
        }
    }
}

impl Machine<'_> {
    /// Answers a team tool call of `attempt` of `step`: its start, what it changes and its
    /// result are logged together. `true`: the run may move on (a runaway failed the step).
    pub(super) fn team_call(
        &self,
        st: &mut RunState,
        step: String,
        attempt: u32,
        c: TeamCall,
        out: &mut Decision,
    ) -> Result<bool, Refused> {
        if !st.runs_attempt(&step, attempt) {
            return Err(Refused::NotRunning(step, attempt));
        }
        let agent = self.agent_name_of(&step).unwrap_or_default().to_string();
        if let Some(e) = self.runaway(st, &step, c.call, (&c.tool, &c.arguments)) {
            let d = self.failure(st, &step, e, Ended::sync(attempt));
            self.record(st, out, d);
            return Ok(true);
        }
        if let Some((decided, v)) =
            self.check_call(st, &step, attempt, c.call, (&c.tool, &c.arguments))
        {
            if v.decision == baton_types::PolicyDecision::Deny {
                let what = (c.tool, c.arguments);
                self.refuse_call(st, out, decided, &v, (&step, attempt, c.call, c.key), what);
                return Ok(false);
            }
            self.emit(st, out, decided);
        }
        let answered = match self.answer_team(st, &step, &agent, &c.tool, &c.arguments) {
            Ok(a) => a,
            Err(e) => {
                let d = self.failure(st, &step, e, Ended::sync(attempt));
                self.record(st, out, d);
                return Ok(true);
            }
        };
        let started = Event::ToolCallStarted {
            step: step.clone(),
            attempt,
            call: c.call,
            tool: c.tool.clone(),
            arguments: c.arguments,
            key: c.key,
        };
        self.emit(st, out, started);
        for ev in answered.events {
            self.emit(st, out, ev);
        }
        let finished = Event::ToolCallFinished {
            step,
            attempt,
            call: c.call,
            tool: c.tool,
            output: answered.output,
            is_error: answered.is_error,
        };
        self.emit(st, out, finished);
        // A message may wake a waiting step.
        Ok(true)
    }

    /// What a team call does; `Err`: the step fails (a runaway exchange).
    fn answer_team(
        &self,
        st: &RunState,
        step: &str,
        agent: &str,
        tool: &str,
        args: &Value,
    ) -> Result<Answered, StepError> {
        let text = |k: &str| args.get(k).and_then(Value::as_str);
        let Some(key_or_target) = (match tool {
            "message.send" => text("to"),
            "message.broadcast" | "channel.subscribe" => text("channel"),
            "memory.list" => Some(text("prefix").unwrap_or_default()),
            _ => text("key"),
        }) else {
            let field = match tool {
                "message.send" => "to",
                "message.broadcast" | "channel.subscribe" => "channel",
                _ => "key",
            };
            return Ok(Answered::refused(format!(
                "{tool} needs `{field}` (a string)"
            )));
        };
        Ok(match tool {
            "message.send" => self.send(st, step, agent, key_or_target, args)?,
            "message.broadcast" => self.broadcast(st, step, agent, key_or_target, args),
            "channel.subscribe" => self.subscribe(st, step, agent, key_or_target),
            "memory.get" => Answered::ok(memory_get(st, key_or_target)),
            "memory.list" => Answered::ok(memory_list(st, key_or_target)),
            "memory.set" | "memory.append" => memory_write(st, step, agent, tool, args),
            _ => Answered::refused(format!("no team tool '{tool}'")),
        })
    }

    /// The content of a message, within `messages.max_bytes`.
    fn content(&self, args: &Value) -> Result<String, String> {
        let content = match args.get("content") {
            Some(Value::String(s)) => s.clone(),
            Some(Value::Null) | None => return Err("a message needs `content`".into()),
            Some(v) => v.to_string(),
        };
        let max = self
            .program
            .doc
            .messages
            .clone()
            .unwrap_or_default()
            .max_bytes;
        if content.len() > max as usize {
            return Err(format!(
                "the message is {} bytes, over the limit of {max} (messages.max_bytes); send \
                 less, or put it in shared memory and send the key",
                content.len()
            ));
        }
        Ok(content)
    }

    /// The agent names of the workflow.
    pub(super) fn agent_names(&self) -> BTreeSet<&str> {
        self.program
            .doc
            .agents
            .keys()
            .map(|k| agent_name(k))
            .collect()
    }

    fn send(
        &self,
        st: &RunState,
        step: &str,
        from: &str,
        to: &str,
        args: &Value,
    ) -> Result<Answered, StepError> {
        let names = self.agent_names();
        if !names.contains(to) {
            let known: Vec<&str> = names.into_iter().filter(|n| *n != from).collect();
            return Ok(Answered::refused(format!(
                "no agent '{to}' in this run (agents: {})",
                known.join(", ")
            )));
        }
        if to == from {
            return Ok(Answered::refused(
                "an agent cannot send a message to itself".into(),
            ));
        }
        if st.team.is_stopped(to) {
            return Ok(Answered::refused(format!(
                "agent '{to}' was stopped: it receives no more messages"
            )));
        }
        let content = match self.content(args) {
            Ok(c) => c,
            Err(why) => return Ok(Answered::refused(why)),
        };
        if let Some(e) = self.bouncing(st, step, from, to, &content) {
            return Err(e);
        }
        let id = st.team.sent + 1;
        Ok(Answered {
            events: vec![Event::MessageSent {
                step: step.to_string(),
                from: from.to_string(),
                to: vec![to.to_string()],
                channel: None,
                content,
            }],
            output: json!({"sent": id, "to": [to]}),
            is_error: false,
        })
    }

    /// The subscribers of `channel` now (declared, then joined at run time); `None`: no such
    /// channel.
    pub(super) fn subscribers(&self, st: &RunState, channel: &str) -> Option<BTreeSet<String>> {
        let spec = self.program.doc.channels.get(channel)?;
        let mut all: BTreeSet<String> = spec.subscribers.iter().cloned().collect();
        if let Some(joined) = st.team.joined.get(channel) {
            all.extend(joined.iter().cloned());
        }
        Some(all)
    }

    fn no_channel(&self, channel: &str) -> Answered {
        let known: Vec<&str> = self
            .program
            .doc
            .channels
            .keys()
            .map(String::as_str)
            .collect();
        Answered::refused(format!(
            "no channel '{channel}' in this workflow (channels: {})",
            if known.is_empty() {
                "none declared".to_string()
            } else {
                known.join(", ")
            }
        ))
    }

    fn broadcast(
        &self,
        st: &RunState,
        step: &str,
        from: &str,
        channel: &str,
        args: &Value,
    ) -> Answered {
        let Some(subscribers) = self.subscribers(st, channel) else {
            return self.no_channel(channel);
        };
        let to: Vec<String> = subscribers
            .into_iter()
            .filter(|a| a != from && !st.team.is_stopped(a))
            .collect();
        if to.is_empty() {
            return Answered::refused(format!(
                "channel '{channel}' has no subscriber besides you to receive it"
            ));
        }
        let content = match self.content(args) {
            Ok(c) => c,
            Err(why) => return Answered::refused(why),
        };
        let id = st.team.sent + 1;
        let output = json!({"sent": id, "channel": channel, "to": to});
        Answered {
            events: vec![Event::MessageSent {
                step: step.to_string(),
                from: from.to_string(),
                to,
                channel: Some(channel.to_string()),
                content,
            }],
            output,
            is_error: false,
        }
    }

    fn subscribe(&self, st: &RunState, step: &str, agent: &str, channel: &str) -> Answered {
        let Some(mut subscribers) = self.subscribers(st, channel) else {
            return self.no_channel(channel);
        };
        if subscribers.contains(agent) {
            return Answered::ok(json!({"channel": channel, "subscribers": subscribers}));
        }
        subscribers.insert(agent.to_string());
        Answered {
            events: vec![Event::ChannelSubscribed {
                step: step.to_string(),
                agent: agent.to_string(),
                channel: channel.to_string(),
            }],
            output: json!({"channel": channel, "subscribers": subscribers}),
            is_error: false,
        }
    }

    /// The error of a runaway exchange: `from` is about to send `to` the same message once too
    /// often, while `to` keeps answering with the same message too.
    fn bouncing(
        &self,
        st: &RunState,
        step: &str,
        from: &str,
        to: &str,
        content: &str,
    ) -> Option<StepError> {
        let limit = self.runaway_limits().repeated_messages as usize;
        if limit == 0 || limit > EXCHANGE_MEMORY {
            return None;
        }
        let h = content_hash(content);
        let sent = st.team.exchanges.get(&exchange(from, to))?;
        let same_out = sent.iter().filter(|x| **x == h).count() + 1;
        let back = st.team.exchanges.get(&exchange(to, from))?;
        let same_back = back
            .iter()
            .map(|x| back.iter().filter(|y| *y == x).count())
            .max()
            .unwrap_or(0);
        if same_out < limit || same_back + 1 < limit {
            return None;
        }
        let shown: String = content.chars().take(80).collect();
        Some(StepError::fatal(
            StepErrorKind::Runaway,
            format!(
                "runaway: agents '{from}' and '{to}' keep sending each other the same messages \
                 ('{from}' was about to send '{to}' \"{shown}\" for the {} time, and '{to}' sent \
                 '{from}' one message {same_back} times); stopped in step '{step}' before \
                 delivering it (runaway.repeated_messages: {limit})",
                super::decide::ordinal(same_out as u32)
            ),
        ))
    }

    /// The messages waiting for the agent of `step` go into `turn` (once: a turn that got its
    /// messages keeps them).
    pub(super) fn inbox(
        &self,
        st: &mut RunState,
        step: String,
        attempt: u32,
        turn: u32,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        if !st.runs_attempt(&step, attempt) {
            return Err(Refused::NotRunning(step, attempt));
        }
        let journal = st.steps.get(&step).and_then(|s| s.journal.as_ref());
        if journal.is_some_and(|j| j.inbox_of(turn).is_some()) {
            return Ok(());
        }
        let Some(agent) = self.agent_name_of(&step) else {
            return Ok(());
        };
        let waiting = st.team.inboxes.get(agent).map_or(0, |q| q.len());
        if waiting > 0 {
            let count = u32::try_from(waiting).unwrap_or(u32::MAX);
            let ev = Event::MessagesDelivered {
                step,
                attempt,
                turn,
                count,
            };
            self.emit(st, out, ev);
        }
        Ok(())
    }
}

fn memory_get(st: &RunState, key: &str) -> Value {
    match st.team.memory.get(key) {
        Some(e) => json!({"key": key, "value": e.value, "version": e.version, "by": e.by}),
        None => json!({"key": key, "value": null, "version": 0}),
    }
}

fn memory_list(st: &RunState, prefix: &str) -> Value {
    Value::Array(
        st.team
            .memory
            .iter()
            .filter(|(k, _)| k.starts_with(prefix))
            .map(|(k, e)| json!({"key": k, "version": e.version, "by": e.by}))
            .collect(),
    )
}

fn memory_write(st: &RunState, step: &str, agent: &str, tool: &str, args: &Value) -> Answered {
    let key = args.get("key").and_then(Value::as_str).unwrap_or_default();
    let Some(value) = args.get("value").cloned() else {
        return Answered::refused(format!("{tool} needs `value`"));
    };
    if key.is_empty() {
        return Answered::refused(format!("{tool} needs a non-empty `key`"));
    }
    let current = st.team.memory.get(key);
    let version = current.map_or(0, |e| e.version);
    let op = if tool == "memory.append" {
        if let Some(e) = current.filter(|e| !e.value.is_array()) {
            return Answered::refused(format!(
                "memory key '{key}' holds {}, not a list: memory.append needs a list",
                super::sync::kind_of(&e.value)
            ));
        }
        MemoryOp::Append
    } else {
        if let Some(expected) = args.get("expect_version") {
            let Some(expected) = expected.as_u64() else {
                return Answered::refused(
                    "expect_version must be a whole number (0: absent)".into(),
                );
            };
            if expected != version {
                let by = current
                    .map(|e| format!(", written by '{}'", e.by))
                    .unwrap_or_default();
                return Answered::refused(format!(
                    "version mismatch on memory key '{key}': expected {expected}, it is at \
                     {version}{by}; read it again and retry"
                ));
            }
        }
        MemoryOp::Set
    };
    Answered {
        events: vec![Event::MemoryWritten {
            step: step.to_string(),
            agent: agent.to_string(),
            key: key.to_string(),
            value,
            op,
        }],
        output: json!({"key": key, "version": version + 1}),
        is_error: false,
    }
}
