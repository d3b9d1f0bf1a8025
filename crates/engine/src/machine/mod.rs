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
//! - `join`: how a fan's outcome follows from its branches' (the join strategies).

mod apply;
mod decide;
mod join;
mod state;
mod sync;
#[cfg(test)]
mod tests;

use baton_types::{Event, Progress, RunStatus, Usage};
use serde_json::Value;

pub use state::{
    FanFrame, FanKind, Frame, FrameId, Outcome, Phase, RunOptions, RunState, SeqFrame, StepRun,
};

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
    /// A retry delay passed.
    RetryDue {
        step: String,
    },
    Human {
        step: String,
        approved: bool,
        value: Value,
        comment: Option<String>,
        by: Option<String>,
    },
    Pause,
    Resume {
        stepping: bool,
    },
    Cancel,
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
}

impl<'p> Machine<'p> {
    pub fn new(program: &'p Program) -> Self {
        Self { program }
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

/// The idempotency key of one attempt of one visit of a step instance.
pub fn idempotency_key(run: baton_types::RunId, step: &str, visit: u32, attempt: u32) -> String {
    // Written by hand: `format!` costs more than the rest of starting a step.
    let mut key = String::with_capacity(32 + step.len() + 24);
    run.write_to(&mut key);
    key.push(':');
    key.push_str(step);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(visit));
    key.push(':');
    key.push_str(itoa::Buffer::new().format(attempt));
    key
}
