//! Decisions about effects that happen inside a step: an agent's tool calls (logged before
//! they are sent and when they return), a call found started but never recorded
//! (`step_ambiguous`), and a person settling it (`step_resolved`).

use baton_types::{Event, Resolution};
use serde_json::Value;

use super::decide::Ended;
use super::state::{Phase, RunState};
use super::{Action, Decision, Machine, Refused, ToolCall};

impl Machine<'_> {
    /// Logs an agent's tool call (its start before it is sent, or its result), only for the
    /// attempt running now. A call that would repeat the same call once too often (see
    /// `budget`) is not logged: the step fails instead, and `true` says the run moves on. A
    /// call is checked against the policy first (see `policy`): a denied one is logged as
    /// started and finished with the refusal, and never sent.
    pub(super) fn tool_call(
        &self,
        st: &mut RunState,
        step: String,
        attempt: u32,
        call: ToolCall,
        out: &mut Decision,
    ) -> Result<bool, Refused> {
        if !st.runs_attempt(&step, attempt) {
            return Err(Refused::NotRunning(step, attempt));
        }
        if let ToolCall::Started {
            call,
            tool,
            arguments,
            ..
        } = &call
            && let Some(e) = self.runaway(st, &step, *call, (tool, arguments))
        {
            let d = self.failure(st, &step, e, Ended::stopped(st, &step, attempt));
            self.record(st, out, d);
            return Ok(true);
        }
        if let ToolCall::Started {
            call: n,
            tool,
            arguments,
            key,
        } = &call
            && let Some((decided, v)) = self.check_call(st, &step, attempt, *n, (tool, arguments))
        {
            if v.decision == baton_types::PolicyDecision::Deny {
                let what = (tool.clone(), arguments.clone());
                self.refuse_call(
                    st,
                    out,
                    decided,
                    &v,
                    (&step, attempt, *n, key.clone()),
                    what,
                );
                return Ok(false);
            }
            self.emit(st, out, decided);
        }
        let ev = match call {
            ToolCall::Started {
                call,
                tool,
                arguments,
                key,
            } => Event::ToolCallStarted {
                step,
                attempt,
                call,
                tool,
                arguments,
                key,
            },
            ToolCall::Finished {
                call,
                tool,
                output,
                is_error,
            } => Event::ToolCallFinished {
                step,
                attempt,
                call,
                tool,
                output,
                is_error,
            },
        };
        self.emit(st, out, ev);
        Ok(false)
    }

    /// A resumed attempt cannot go on without a person: the step becomes ambiguous.
    pub(super) fn ambiguous(
        &self,
        st: &mut RunState,
        step: String,
        attempt: u32,
        effect: super::Pending,
        out: &mut Decision,
    ) {
        if !st.runs_attempt(&step, attempt) {
            return; // a late report of a cancelled or superseded attempt
        }
        let ev = Event::StepAmbiguous {
            step: step.clone(),
            attempt,
            call: effect.call,
            tool: effect.tool,
            arguments: effect.arguments,
            key: effect.key,
        };
        self.emit(st, out, ev);
        out.actions.push(Action::Release { step });
    }

    /// A person resolved an ambiguous step: the step runs again from its journal (the call's
    /// result recorded, or sent again), or a `tool:` step resolved `done` ends with the value.
    pub(super) fn resolve(
        &self,
        st: &mut RunState,
        step: String,
        resolution: Resolution,
        value: Value,
        by: Option<String>,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        let Some(sr) = st.steps.get(&step) else {
            return Err(Refused::NotAmbiguous(step));
        };
        let Phase::Ambiguous { call, .. } = sr.phase else {
            return Err(Refused::NotAmbiguous(step));
        };
        let (attempt, visit, key) = (sr.attempt, sr.visit, sr.key.clone());
        let ev = Event::StepResolved {
            step: step.clone(),
            resolution,
            value: value.clone(),
            by,
        };
        self.emit(st, out, ev);
        match (resolution, call) {
            (Resolution::Done, None) => {
                let d = self.step_ended(st, &step, Ok(value), Ended::sync(attempt));
                self.record(st, out, d);
            }
            // A `tool:` step sends its call again as a new attempt (with the same key): if that
            // one is interrupted too, it is ambiguous again.
            (Resolution::Retry, None) => {
                let ev = Event::StepStarted {
                    step: step.clone(),
                    attempt: attempt + 1,
                    visit,
                    key,
                };
                self.emit(st, out, ev);
                out.actions.push(Action::Launch { step });
            }
            // An agent goes on from its journal: the call's result is recorded (`done`), or
            // it may send the call again (`retry`; its new start clears that).
            (_, Some(_)) => out.actions.push(Action::Launch { step }),
        }
        Ok(())
    }
}
