//! The agents of a run as a team, in the run state: each agent's lifecycle, the messages
//! waiting in each inbox, the channels' run-time subscribers and the shared memory; and the
//! fold of the events that change them. The decisions are in `team_ops`.

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use baton_types::{
    AgentAction, AgentLife, AgentState, Event, MemoryEntry, MemoryOp, StepPath, TeamMessage,
    agent_name,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Machine;
use super::journal::InboxRecord;
use super::state::{Phase, RunState};
use crate::program::NodeKind;

/// The team part of the run state (empty, and not written, for runs whose agents never
/// started).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TeamState {
    /// Each agent's state since it changed last (agents never seen are idle).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, AgentLife>,
    /// Agents whose last step failed.
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub failed: BTreeSet<String>,
    /// Messages sent to each agent and not yet delivered to one of its turns, oldest first.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub inboxes: BTreeMap<String, VecDeque<TeamMessage>>,
    /// Messages sent so far (the last message's id).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub sent: u64,
    /// Subscribers who joined channels at run time (`channel.subscribe`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub joined: BTreeMap<String, BTreeSet<String>>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub memory: BTreeMap<String, MemoryEntry>,
    /// The content hashes of the last direct messages from one agent to another
    /// (`"from\nto"`), newest last: what runaway detection compares.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub exchanges: BTreeMap<String, Vec<u64>>,
}

fn is_zero(n: &u64) -> bool {
    *n == 0
}

/// How many direct messages per pair of agents runaway detection remembers.
pub(super) const EXCHANGE_MEMORY: usize = 16;

impl TeamState {
    pub fn is_empty(&self) -> bool {
        self.agents.is_empty()
            && self.inboxes.is_empty()
            && self.sent == 0
            && self.joined.is_empty()
            && self.memory.is_empty()
    }

    /// The shared memory as templates read it (`memory.KEY`).
    pub fn memory_values(&self) -> Value {
        Value::Object(
            self.memory
                .iter()
                .map(|(k, e)| (k.clone(), e.value.clone()))
                .collect(),
        )
    }

    /// The state of `agent` (idle when never seen).
    pub fn state_of(&self, agent: &str) -> AgentState {
        self.agents.get(agent).map_or(AgentState::Idle, |l| l.state)
    }

    /// Whether a person paused `agent`.
    pub fn is_paused(&self, agent: &str) -> bool {
        self.state_of(agent) == AgentState::Paused
    }

    /// Whether a person stopped `agent`.
    pub fn is_stopped(&self, agent: &str) -> bool {
        self.state_of(agent) == AgentState::Stopped
    }

    /// The agents a person paused.
    pub fn paused(&self) -> BTreeSet<String> {
        self.agents
            .iter()
            .filter(|(_, l)| l.state == AgentState::Paused)
            .map(|(a, _)| a.clone())
            .collect()
    }

    /// Whether `agent`'s inbox holds a message from `from`.
    pub fn has_message_from(&self, agent: &str, from: &str) -> bool {
        self.inboxes
            .get(agent)
            .is_some_and(|q| q.iter().any(|m| m.from == from))
    }
}

impl Machine<'_> {
    /// The agent (its name: `coder@3` is `coder`) whose step `step` is.
    pub(super) fn agent_name_of(&self, step: &str) -> Option<&str> {
        match &self.program.node_by_id(StepPath::parse(step).id())?.kind {
            NodeKind::Agent { agent } => Some(agent_name(agent)),
            _ => None,
        }
    }

    /// Folds a team event, and the lifecycle change a step event makes for its agent.
    pub(super) fn apply_team(&self, st: &mut RunState, ev: &Event) {
        match ev {
            Event::AgentControlled { agent, action, by } => {
                let state = match action {
                    AgentAction::Pause => AgentState::Paused,
                    AgentAction::Stop => AgentState::Stopped,
                    AgentAction::Resume => derived(st, self, agent),
                };
                // A run that only waited for paused agents goes on (the next decision pauses it
                // again if what is left still waits for others).
                if *action != AgentAction::Pause
                    && matches!(st.pause, Some(baton_types::PauseReason::Agents { .. }))
                {
                    st.pause = None;
                }
                self.set_life(st, agent, state, by.clone());
            }
            Event::MessageSent {
                from,
                to,
                channel,
                content,
                ..
            } => self.message_sent(st, from, to, channel.as_deref(), content),
            Event::MessagesDelivered {
                step,
                attempt,
                turn,
                count,
            } => deliver(st, self, step, *attempt, *turn, *count),
            Event::ChannelSubscribed { agent, channel, .. } => {
                st.team
                    .joined
                    .entry(channel.clone())
                    .or_default()
                    .insert(agent.clone());
            }
            Event::MemoryWritten {
                step,
                agent,
                key,
                value,
                op,
            } => memory_written(st, step, agent, key, value, *op),
            Event::StepStarted { step, .. }
            | Event::StepWoke { step }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step }
            | Event::StepAmbiguous { step, .. }
            | Event::StepResolved { step, .. } => self.touch(st, step, ev),
            _ => {}
        }
    }

    /// A step event of an agent's step: its agent's state follows (a paused or stopped agent
    /// stays so).
    fn touch(&self, st: &mut RunState, step: &str, ev: &Event) {
        let Some(agent) = self.agent_name_of(step) else {
            return;
        };
        match ev {
            Event::StepFailed {
                retry_in_ms: None, ..
            } => {
                st.team.failed.insert(agent.to_string());
            }
            Event::StepStarted { .. } | Event::StepSucceeded { .. } => {
                st.team.failed.remove(agent);
            }
            _ => {}
        }
        let current = st.team.state_of(agent);
        if matches!(current, AgentState::Paused | AgentState::Stopped) {
            return;
        }
        let state = derived(st, self, agent);
        if state != current || !st.team.agents.contains_key(agent) {
            self.set_life(st, agent, state, None);
        }
    }

    fn set_life(&self, st: &mut RunState, agent: &str, state: AgentState, by: Option<String>) {
        let life = AgentLife {
            state,
            since_ms: self.now_ms(),
            by,
        };
        // In place when the agent is known: this runs twice per agent step.
        match st.team.agents.get_mut(agent) {
            Some(l) => *l = life,
            None => {
                st.team.agents.insert(agent.to_string(), life);
            }
        }
    }

    fn message_sent(
        &self,
        st: &mut RunState,
        from: &str,
        to: &[String],
        channel: Option<&str>,
        content: &str,
    ) {
        st.team.sent += 1;
        let msg = TeamMessage {
            id: st.team.sent,
            from: from.to_string(),
            channel: channel.map(str::to_string),
            content: content.to_string(),
            at_ms: self.now_ms(),
        };
        for r in to {
            st.team
                .inboxes
                .entry(r.clone())
                .or_default()
                .push_back(msg.clone());
        }
        if channel.is_none()
            && let [r] = to
        {
            let seen = st.team.exchanges.entry(exchange(from, r)).or_default();
            seen.push(content_hash(content));
            if seen.len() > EXCHANGE_MEMORY {
                seen.remove(0);
            }
        }
    }
}

/// The state an agent's steps put it in: running while one runs, waiting while one waits
/// (for a message, a retry, a person), failed when its last step failed, idle otherwise.
fn derived(st: &RunState, m: &Machine<'_>, agent: &str) -> AgentState {
    let mut waiting = false;
    for (step, sr) in &st.steps {
        if m.agent_name_of(step) != Some(agent) {
            continue;
        }
        match sr.phase {
            Phase::Running => return AgentState::Running,
            _ => waiting = true,
        }
    }
    if waiting {
        AgentState::Waiting
    } else if st.team.failed.contains(agent) {
        AgentState::Failed
    } else {
        AgentState::Idle
    }
}

/// The first `count` messages of the step's agent's inbox go into the step's journal for
/// `turn`.
fn deliver(st: &mut RunState, m: &Machine<'_>, step: &str, attempt: u32, turn: u32, count: u32) {
    let Some(agent) = m.agent_name_of(step) else {
        return;
    };
    let Some(queue) = st.team.inboxes.get_mut(agent) else {
        return;
    };
    let n = (count as usize).min(queue.len());
    let messages: Vec<TeamMessage> = queue.drain(..n).collect();
    if queue.is_empty() {
        st.team.inboxes.remove(agent);
    }
    if let Some(sr) = st.steps.get_mut(step) {
        let j = sr.journal.get_or_insert_with(Default::default);
        j.inbox.push(InboxRecord {
            attempt,
            turn,
            messages,
        });
    }
}

fn memory_written(
    st: &mut RunState,
    step: &str,
    agent: &str,
    key: &str,
    value: &Value,
    op: MemoryOp,
) {
    let previous = st.team.memory.remove(key);
    let version = previous.as_ref().map_or(0, |e| e.version) + 1;
    let value = match (op, previous) {
        (MemoryOp::Set, _) => value.clone(),
        (
            MemoryOp::Append,
            Some(MemoryEntry {
                value: Value::Array(mut items),
                ..
            }),
        ) => {
            items.push(value.clone());
            Value::Array(items)
        }
        (MemoryOp::Append, _) => Value::Array(vec![value.clone()]),
    };
    let entry = MemoryEntry {
        value,
        version,
        by: agent.to_string(),
        step: step.to_string(),
    };
    st.team.memory.insert(key.to_string(), entry);
}

/// The key of the direct messages from `from` to `to` in [`TeamState::exchanges`].
pub(super) fn exchange(from: &str, to: &str) -> String {
    format!("{from}\n{to}")
}

/// A 64-bit FNV-1a hash of a message's content (trimmed): what "the same message" compares.
pub(super) fn content_hash(content: &str) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in content.trim().bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}
