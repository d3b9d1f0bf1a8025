//! The engine's core: a deterministic state machine over the run log.
//!
//! [`RunState`] is a fold over [`Event`]s: [`Machine::apply`] changes the state for one event
//! and nothing else. [`Machine::handle`] takes an [`Input`] (a result, a command, a timer),
//! decides what happens and returns a [`Decision`]: the events that say so, already applied,
//! and the [`Action`]s the executor performs once those events are in the log. Replaying the
//! log through `apply` rebuilds exactly the state the run had. No I/O here.
//!
//! - `state`: the run state, its frames and the bookkeeping on them;
//! - `apply`: the fold, one function per kind of event;
//! - `decide`: inputs and the decisions the engine takes on its own, one function per phase
//!   (joins, human steps, synchronous steps, starting ready steps), and what a result or a
//!   failure leads to (`next`, retries, `on_error`);
//! - `sync`: the steps the engine runs itself (conditions, switches, `state.set`, map lists);
//! - `join`: how a fan's outcome follows from its branches' (the join strategies); `judge`:
//!   the join an agent decides;
//! - `contracts`: how `state.set` writes combine with a key's value (merge contracts).

mod apply;
mod budget;
#[cfg(test)]
mod budget_tests;
mod calls;
mod conflict;
mod contracts;
mod decide;
mod human;
mod join;
#[cfg(test)]
mod join_tests;
mod journal;
mod judge;
mod policy;
mod runaway;
mod state;
mod sync;
mod team;
mod team_life;
mod team_ops;
#[cfg(test)]
mod team_tests;
#[cfg(test)]
mod tests;

use baton_types::{Event, Progress, Resolution, RunStatus, Usage};
use serde_json::Value;

pub use budget::BudgetState;
pub use contracts::StateOwner;
pub use journal::InboxRecord;
pub use judge::SYNTHESIS;
pub(crate) use judge::{
    answer_schema, judge_asked, judge_of, prompt as judge_prompt,
    step_candidates as judge_candidates,
};
pub use runaway::LoopMark;
pub use state::{
    CallRecord, Checked, FanFrame, FanKind, Frame, FrameId, Journal, Outcome, Phase, ReplyRecord,
    RunOptions, RunState, SeqFrame, StepRun,
};
pub(crate) use sync::kind_of;
pub use team::TeamState;
pub use team_life::{AgentRefusal, agent_control_refused};
pub use team_ops::TeamCall;

use crate::program::Program;

/// Something that happened outside the state machine.
#[derive(Clone, Debug)]
pub enum Input {
    /// A process starts the run (`resumed`: it was started before).
    Start {
        resumed: bool,
    },
    /// A step's work ended.
    Done {
        step: String,
        attempt: u32,
        result: Outcome,
        usage: Usage,
        duration_ms: u64,
    },
    /// A step reports progress.
    Progress {
        step: String,
        progress: Progress,
    },
    /// An agent's tool call is about to be sent, or returned (see [`ToolCall`]). Refused
    /// ([`Refused::NotRunning`]) unless `attempt` of `step` is running: a call is sent only
    /// once its start is in the log.
    ToolCall {
        step: String,
        attempt: u32,
        call: ToolCall,
    },
    /// A resumed attempt found an effect that may have happened and cannot be repeated
    /// safely: the step waits for a person.
    Ambiguous {
        step: String,
        attempt: u32,
        effect: Pending,
    },
    /// A person resolved an ambiguous step.
    Resolve {
        step: String,
        resolution: Resolution,
        value: Value,
        by: Option<String>,
    },
    /// A retry delay passed.
    RetryDue {
        step: String,
    },
    /// A human step's deadline may have passed: it escalates, or ends as `human.on_timeout`
    /// says. Refused ([`Refused::NotDue`]) before the deadline.
    HumanTimeout {
        step: String,
    },
    Human {
        step: String,
        approved: bool,
        value: Value,
        comment: Option<String>,
        by: Option<String>,
    },
    /// An agent's step calls a team tool (see [`crate::team`]): answered by the machine, the
    /// call and what it changes logged together. Refused ([`Refused::NotRunning`]) unless
    /// `attempt` of `step` is running.
    TeamCall {
        step: String,
        attempt: u32,
        call: TeamCall,
    },
    /// An agent's step is about to ask its model for `turn`: the messages waiting for its
    /// agent go into that turn (logged as `messages_delivered`).
    Inbox {
        step: String,
        attempt: u32,
        turn: u32,
    },
    /// A person pauses, resumes or stops one agent. Refused ([`Refused::Agent`]) for an
    /// unknown agent, a stopped one, or a change that changes nothing.
    Agent {
        agent: String,
        action: baton_types::AgentAction,
        by: Option<String>,
    },
    /// A step's `wait_for` deadline may have passed. Refused ([`Refused::NotDue`]) before.
    MessageTimeout {
        step: String,
    },
    Pause,
    Resume {
        stepping: bool,
    },
    /// A person changes the steps the run pauses before, logged as `breakpoints_set` (the
    /// whole set after the change) when it changes them; the caller checks the ids against
    /// the workflow. A change, not a set: two changes queued before either applies both count.
    Breakpoints {
        change: baton_types::BreakpointChange,
        by: Option<String>,
    },
    /// A person edits a paused run's state (a finished step's output, a key of the shared
    /// state), logged as `state_edited` in order. Refused ([`Refused::NotPaused`]) unless the
    /// run is paused; the caller checks each edit against the workflow first.
    Edit {
        edits: Vec<(baton_types::EditTarget, Value)>,
        by: Option<String>,
    },
    /// A person changes budget limits (before resuming a run its budget stopped). Refused
    /// ([`Refused::Budget`]) when a change names a limit the workflow does not set.
    RaiseBudget {
        changes: Vec<baton_types::BudgetChange>,
        by: Option<String>,
    },
    Cancel,
}

/// An agent's tool call, for the journal.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolCall {
    Started {
        call: u32,
        tool: String,
        arguments: Value,
        key: String,
    },
    Finished {
        call: u32,
        tool: String,
        output: Value,
        is_error: bool,
    },
}

/// An effect that was started but whose result was never logged: an agent's tool call
/// (`call`), or a `tool:` step's own call.
#[derive(Clone, Debug, PartialEq)]
pub struct Pending {
    pub call: Option<u32>,
    pub tool: String,
    pub arguments: Value,
    pub key: String,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("step '{0}' is not waiting for a person")]
    NotWaiting(String),
    #[error("the run is already {0}")]
    Terminal(RunStatus),
    #[error("the run is not paused")]
    NotPaused,
    #[error("step '{0}' is not ambiguous: there is nothing to resolve")]
    NotAmbiguous(String),
    #[error("attempt {1} of step '{0}' is not running")]
    NotRunning(String, u32),
    #[error("step '{0}' has no deadline that has passed")]
    NotDue(String),
    /// A resume of a run still over its budget.
    #[error("the run is still over its budget: {0}; raise the limit (e.g. --budget tokens=+50000)")]
    OverBudget(baton_types::BudgetCrossing),
    /// A budget change that names no limit of the workflow.
    #[error("{0}")]
    Budget(String),
    /// An agent control that cannot apply (unknown agent, stopped, nothing to change).
    #[error("{0}")]
    Agent(String),
}

/// What the executor does once the events of a decision are in the log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Action {
    /// Run the work of an agent, tool or sandbox step whose attempt started.
    Launch { step: String },
    /// Feed [`Input::RetryDue`] back after the delay.
    RetryAfter { step: String, delay_ms: u64 },
    /// Stop a step's work.
    Cancel { step: String },
    /// Stop all work (the run is cancelled).
    CancelAll,
    /// A step's attempt ended: its work is over (drop its cancellation handle).
    Release { step: String },
}

/// What the machine decided: the events to log (already applied to the state), and the
/// actions to perform after they are logged, in order.
#[derive(Debug, Default, PartialEq)]
pub struct Decision {
    pub events: Vec<Event>,
    pub actions: Vec<Action>,
}

impl Decision {
    pub fn is_empty(&self) -> bool {
        self.events.is_empty() && self.actions.is_empty()
    }
}

/// The state machine of one workflow.
pub struct Machine<'p> {
    pub program: &'p Program,
    /// The hosts each tool reaches whatever its arguments (a sandbox's allow-list), which the
    /// policy's `hosts` rules check ([`baton_tools::Registry::networks`]).
    networks: Option<&'p std::collections::BTreeMap<String, Vec<String>>>,
    /// The time decisions are taken at (Unix ms): a human step's deadline is counted from
    /// it, and a timeout is due once it has passed. The executor sets it before each input.
    now_ms: std::cell::Cell<i64>,
}

impl<'p> Machine<'p> {
    pub fn new(program: &'p Program) -> Self {
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        Self {
            program,
            networks: None,
            now_ms: std::cell::Cell::new(now),
        }
    }

    /// With the tools' fixed network hosts, for the policy's `hosts` rules.
    pub fn with_networks(
        mut self,
        networks: &'p std::collections::BTreeMap<String, Vec<String>>,
    ) -> Self {
        self.networks = Some(networks);
        self
    }

    /// The hosts `tool` reaches whatever its arguments.
    pub(super) fn network_of(&self, tool: &str) -> &'p [String] {
        self.networks
            .and_then(|n| n.get(tool))
            .map_or(&[], Vec::as_slice)
    }

    /// Sets the time the next decisions are taken at (Unix ms).
    pub fn set_now(&self, now_ms: i64) {
        self.now_ms.set(now_ms);
    }

    pub fn now_ms(&self) -> i64 {
        self.now_ms.get()
    }

    /// Takes an input and returns what it leads to (the events already applied to `st`).
    pub fn handle(&self, st: &mut RunState, input: Input) -> Result<Decision, Refused> {
        let mut out = Decision::default();
        self.handle_into(st, input, &mut out)?;
        Ok(out)
    }

    /// [`Machine::handle`], appending to `out` (left as it was when refused): the executor
    /// decides every input ready at once, then logs all their events in one write.
    pub fn handle_into(
        &self,
        st: &mut RunState,
        input: Input,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        if st.status.is_terminal() {
            return match input {
                Input::Done { .. } | Input::Progress { .. } | Input::RetryDue { .. } => Ok(()),
                _ => Err(Refused::Terminal(st.status)),
            };
        }
        if self.take_input(st, input, out)? {
            self.advance(st, out);
        }
        Ok(())
    }

    /// Applies `ev` and records it in `out`.
    fn emit(&self, st: &mut RunState, out: &mut Decision, ev: Event) {
        self.apply(st, &ev);
        out.events.push(ev);
    }
}

/// The idempotency key of one visit of a step instance: it identifies the step's effect, so
/// every attempt of the visit (retries, and a run of it again after a crash) sends the same key.
pub fn idempotency_key(run: baton_types::RunId, step: &str, visit: u32) -> String {
    // Written by hand: `format!` costs more than the rest of starting a step.
    let mut key = String::with_capacity(32 + step.len() + 12);
    run.write_to(&mut key);
    key.push(':');
    key.push_str(step);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(visit));
    key
}

/// The idempotency key of an agent's tool call: the step's key, `/`, the call's number (from 1,
/// counted across the attempt's turns).
pub fn call_key(step_key: &str, call: u32) -> String {
    format!("{step_key}/{call}")
}
