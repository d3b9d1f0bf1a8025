//! The fold: [`Machine::apply`] changes the state for one event and nothing else. Every
//! decision is already in the event (which step comes next, whether a failure is retried or
//! recovered), so replaying the log rebuilds exactly the state the run had.

use baton_types::{
    EditTarget, Event, JoinStrategy, PauseReason, Progress, Resolution, RunStatus, StepError,
    StepErrorKind, StepPath,
};
use serde_json::Value;

use super::Machine;
use super::state::{
    CallRecord, FanKind, FrameId, Journal, Outcome, Phase, ReplyRecord, RunState, StepRun,
};
use crate::program::{Node, NodeKind};

impl Machine<'_> {
    /// Applies one event to the state.
    pub fn apply(&self, st: &mut RunState, ev: &Event) {
        self.apply_budget(st, ev);
        match ev {
            Event::RunCreated { .. }
            | Event::AgentsResolved { .. }
            | Event::BudgetRaised { .. } => {}
            Event::StepProgress { step, progress } => journal_progress(st, step, progress),
            Event::ToolCallStarted { .. }
            | Event::ToolCallFinished { .. }
            | Event::StepAmbiguous { .. }
            | Event::HumanRequested { .. }
            | Event::HumanEscalated { .. }
            | Event::HumanResponded { .. } => record_within_step(st, ev),
            Event::StepResolved {
                step,
                resolution,
                value,
                ..
            } => resolved(st, step, *resolution, value),
            Event::RunStarted { .. } => {
                if !st.status.is_terminal() {
                    st.status = RunStatus::Running;
                }
            }
            Event::StepStarted {
                step,
                attempt,
                visit,
                key,
            } => self.step_started(st, step, *attempt, *visit, key),
            Event::MapStarted { step, items } => self.map_started(st, step, items),
            Event::StepSucceeded {
                step,
                output,
                next,
                usage,
                ..
            } => {
                st.usage.add(usage);
                self.step_succeeded(st, step, output, next.as_deref());
            }
            Event::StepFailed {
                step,
                error,
                retry_in_ms,
                recovered,
                next,
                usage,
                ..
            } => {
                st.usage.add(usage);
                let ended = retry_in_ms.is_none();
                self.step_failed(st, step, error, ended, *recovered, next.as_deref());
            }
            Event::StepCancelled { step } => {
                let err = StepError::fatal(StepErrorKind::Cancelled, "cancelled");
                self.leave_step(st, step, Err(err), None, false);
            }
            Event::StateSet { key, value, writer } => {
                self.note_state_owner(st, key, writer.as_deref());
                st.state.insert(key.clone(), value.clone());
            }
            Event::StateEdited { target, value, .. } => edited(st, target, value),
            Event::BreakpointsSet { breakpoints, .. } => {
                st.breakpoints = breakpoints.iter().cloned().collect();
            }
            Event::Paused { .. }
            | Event::Resumed { .. }
            | Event::CancelRequested
            | Event::RunSucceeded { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled => run_event(st, ev),
            Event::PolicyDecided {
                step,
                attempt,
                call: None,
                decision: baton_types::PolicyDecision::Allow,
                arguments,
                ..
            } => {
                if let Some(sr) = st.steps.get_mut(step) {
                    sr.checked = Some(Box::new(super::state::Checked {
                        attempt: *attempt,
                        arguments: arguments.clone(),
                    }));
                }
            }
            // An agent's call is journaled by its `tool_call_*` events; a denied step fails.
            Event::PolicyDecided { .. } => {}
            Event::StepWoke { step } => {
                if let Some(sr) = st.steps.get_mut(step) {
                    sr.phase = Phase::Running;
                }
            }
            Event::AgentControlled { .. }
            | Event::MessageSent { .. }
            | Event::MessagesDelivered { .. }
            | Event::ChannelSubscribed { .. }
            | Event::MemoryWritten { .. } => {}
        }
        self.apply_team(st, ev);
        st.recompute_status();
    }

    /// An attempt starts: a ready instance becomes active (a retry only updates it), and a
    /// parallel step or group starts its fan (a map's fan waits for its list).
    fn step_started(&self, st: &mut RunState, step: &str, attempt: u32, visit: u32, key: &str) {
        let Some(node) = self.program.node_by_id(StepPath::parse(step).id()) else {
            return;
        };
        self.note_loop_visit(st, node, step, attempt);
        if st.steps.contains_key(step) {
            let phase = self.start_phase(st, node);
            if let Some(sr) = st.steps.get_mut(step) {
                sr.attempt = attempt;
                sr.key = key.to_string();
                sr.phase = phase;
            }
        } else {
            let Some(frame) = st.ready.remove(step) else {
                return;
            };
            if st.released.as_deref() == Some(step) {
                st.released = None;
            }
            if let Some(s) = st.seq_mut(frame) {
                s.current = Some(step.to_string());
                s.started = true;
            }
            let phase = match node.kind {
                NodeKind::Human => Phase::Human {
                    requested: false,
                    deadline_ms: None,
                    escalated: false,
                },
                _ => self.start_phase(st, node),
            };
            let run = StepRun {
                node: node.idx,
                frame,
                attempt,
                visit,
                key: key.to_string(),
                phase,
                journal: None,
                checked: None,
            };
            st.steps.insert(step.to_string(), run);
        }
        st.visits.insert(step.to_string(), visit);
        // Fans start with their step (a retry starts a fresh one).
        let Some(frame) = st.steps.get(step).map(|s| s.frame) else {
            return;
        };
        if matches!(
            node.kind,
            NodeKind::Parallel { .. } | NodeKind::Group { .. } | NodeKind::Map { .. }
        ) && let Some(old) = st.fan_of_step(step)
        {
            st.remove_tree(old);
        }
        self.start_fan(st, node, step, frame);
    }

    /// Starts the sequences of a parallel step's branches or a group's body.
    fn start_fan(&self, st: &mut RunState, node: &Node, step: &str, host: FrameId) {
        let p = self.program;
        let suffix = st.frame_suffix(host).to_string();
        let (kind, scopes, join) = match &node.kind {
            NodeKind::Parallel { branches, strategy } => (
                FanKind::Parallel,
                branches.as_slice(),
                (*strategy, node.max_concurrency),
            ),
            NodeKind::Group { body } => (
                FanKind::Group,
                std::slice::from_ref(body),
                (JoinStrategy::All, None),
            ),
            _ => return,
        };
        let fan = st.new_fan(kind, step, host, join, scopes.len());
        for (slot, scope) in scopes.iter().enumerate() {
            let c = st.new_seq(p, *scope, Some((fan, slot)), suffix.clone(), None);
            if let Some(f) = st.fan_mut(fan) {
                f.children.push(c);
            }
        }
    }

    /// A map's list is known: one sequence per item, each binding the item.
    fn map_started(&self, st: &mut RunState, step: &str, items: &[Value]) {
        let p = self.program;
        let Some(node) = p.node_by_id(StepPath::parse(step).id()) else {
            return;
        };
        let NodeKind::Map { body, item } = &node.kind else {
            return;
        };
        let Some(frame) = st.steps.get(step).map(|s| s.frame) else {
            return;
        };
        let suffix = st.frame_suffix(frame).to_string();
        let join = (JoinStrategy::All, node.max_concurrency);
        let fan = st.new_fan(FanKind::Map, step, frame, join, items.len());
        for (i, v) in items.iter().enumerate() {
            let binding = Some((item.clone(), v.clone(), i));
            let c = st.new_seq(
                p,
                *body,
                Some((fan, i)),
                StepPath::item(&suffix, i),
                binding,
            );
            if let Some(f) = st.fan_mut(fan) {
                f.children.push(c);
            }
        }
    }

    /// A step instance succeeded: its output is kept and its sequence goes on to `next`.
    fn step_succeeded(&self, st: &mut RunState, step: &str, output: &Value, next: Option<&str>) {
        st.outputs.insert(step.to_string(), output.clone());
        st.errors.remove(step);
        self.leave_step(st, step, Ok(output.clone()), next, true);
    }

    /// An attempt failed: it waits for a retry, or the step ends (recovered: its sequence
    /// goes on to `next`; else the sequence fails).
    fn step_failed(
        &self,
        st: &mut RunState,
        step: &str,
        error: &StepError,
        ended: bool,
        recovered: bool,
        next: Option<&str>,
    ) {
        if !ended {
            if let Some(sr) = st.steps.get_mut(step) {
                sr.phase = Phase::RetryWait;
            }
            return;
        }
        st.errors
            .insert(step.to_string(), error.logged_message().into_owned());
        if recovered {
            st.outputs.insert(step.to_string(), Value::Null);
            self.leave_step(st, step, Ok(Value::Null), next, true);
        } else {
            st.last_failed = Some(step.to_string());
            self.leave_step(st, step, Err(error.clone()), None, false);
        }
    }

    /// A step instance ended: move its sequence on to `next`, or end the sequence.
    fn leave_step(
        &self,
        st: &mut RunState,
        step: &str,
        outcome: Outcome,
        next: Option<&str>,
        moves_on: bool,
    ) {
        let p = self.program;
        let Some(frame) = st.locate(step) else { return };
        st.steps.remove(step);
        st.ready.remove(step);
        if let Some(fan) = st.fan_of_step(step) {
            st.remove_tree(fan);
        }
        if !st.frames.contains_key(&frame) {
            return;
        }
        if !moves_on {
            st.finish_seq(frame, outcome);
            return;
        }
        let suffix = st.frame_suffix(frame).to_string();
        let next_node = next.and_then(|n| p.node_by_id(n)).map(|n| n.idx);
        let last = outcome.unwrap_or(Value::Null);
        if let Some(s) = st.seq_mut(frame) {
            s.current = None;
            s.last = last.clone();
            s.cursor = next_node;
        }
        let path = next_node.map(|n| StepPath::instance(&p.node(n).id, &suffix));
        match path {
            Some(path) => {
                st.ready.insert(path, frame);
            }
            None => st.finish_seq(frame, Ok(last)),
        }
    }
}

/// The journal of `attempt` of `step`, when that attempt is the step's current one.
fn journal_of<'s>(st: &'s mut RunState, step: &str, attempt: u32) -> Option<&'s mut Journal> {
    let sr = st.steps.get_mut(step).filter(|s| s.attempt == attempt)?;
    Some(sr.journal.get_or_insert_with(Default::default))
}

/// A model's reply and a logged prompt context go into the step's journal.
fn journal_progress(st: &mut RunState, step: &str, progress: &Progress) {
    let Some(sr) = st.steps.get_mut(step) else {
        return;
    };
    match progress {
        Progress::ModelReply {
            turn,
            content,
            tool_calls,
            usage,
            ..
        } => {
            let attempt = sr.attempt;
            let j = sr.journal.get_or_insert_with(Default::default);
            let Some(i) = usize::try_from(*turn).ok().and_then(|t| t.checked_sub(1)) else {
                return;
            };
            j.replies.truncate(i);
            if j.replies.len() == i {
                j.replies.push(ReplyRecord {
                    attempt,
                    content: content.clone(),
                    tool_calls: tool_calls.clone(),
                    usage: *usage,
                });
            }
        }
        // The judge of a parallel step was asked: the step's work (the judge's) has begun.
        Progress::JudgeAsked { .. } => {
            sr.journal.get_or_insert_with(Default::default);
        }
        Progress::Prompt {
            context_hash,
            context: Some(_),
            ..
        } => {
            let j = sr.journal.get_or_insert_with(Default::default);
            j.prompts.insert(context_hash.clone());
        }
        _ => {}
    }
}

/// A person resolved an ambiguous step: it runs again, either with the effect's result
/// recorded (`done`, for an agent's call) or told to send it again (`retry`). A `tool:` step
/// resolved `done` ends with the value, and `retry` starts a new attempt (the machine logs
/// either right after).
fn resolved(st: &mut RunState, step: &str, resolution: Resolution, value: &Value) {
    let Some(sr) = st.steps.get_mut(step) else {
        return;
    };
    let Phase::Ambiguous { call, .. } = sr.phase.clone() else {
        return;
    };
    sr.phase = Phase::Running;
    let j = sr.journal.get_or_insert_with(Default::default);
    match (resolution, call) {
        (Resolution::Retry, Some(_)) => j.resend = true,
        // A `tool:` step's retry is a new attempt (its `step_started` follows).
        (Resolution::Retry, None) => {}
        (Resolution::Done, Some(n)) => {
            let tool = j.call(n).map(|c| c.tool.clone()).unwrap_or_default();
            j.set_result(n, &tool, (value.clone(), false));
        }
        (Resolution::Done, None) => {}
    }
}

/// A person's edit of a forked run: a finished step now gave `value` (as if it had succeeded
/// with it: a recovered failure's error goes), or a key of the shared state or an input is
/// `value` (the fork's row holds its inputs edited too). The flow does not move: what comes
/// next was decided when the step ended.
fn edited(st: &mut RunState, target: &EditTarget, value: &Value) {
    match target {
        EditTarget::StepOutput { step } => {
            st.outputs.insert(step.clone(), value.clone());
            st.errors.remove(step);
        }
        EditTarget::State { key } => {
            st.state.insert(key.clone(), value.clone());
        }
        EditTarget::Input { name } => {
            if let Value::Object(inputs) = &mut st.inputs {
                inputs.insert(name.clone(), value.clone());
            }
        }
    }
}

/// The events about the run as a whole: pauses, resumes, cancellation, its end.
fn run_event(st: &mut RunState, ev: &Event) {
    match ev {
        Event::Paused { pause } => st.pause = Some(pause.clone()),
        Event::Resumed { stepping } => {
            if let Some(PauseReason::Breakpoint { step }) = st.pause.take() {
                st.released = Some(step);
            }
            st.stepping = *stepping;
        }
        Event::CancelRequested => st.cancelling = true,
        Event::RunSucceeded { outputs } => {
            st.status = RunStatus::Succeeded;
            st.result = Some(outputs.clone());
        }
        Event::RunFailed { error } => {
            st.status = RunStatus::Failed;
            st.error = Some(error.clone());
        }
        Event::RunCancelled => {
            st.status = RunStatus::Cancelled;
            st.steps.clear();
            st.ready.clear();
        }
        _ => {}
    }
}

/// The events that record something within a step (a tool call, a question, an answer)
/// without moving the flow.
fn record_within_step(st: &mut RunState, ev: &Event) {
    match ev {
        Event::ToolCallStarted {
            step,
            attempt,
            call,
            tool,
            arguments,
            key,
        } => call_started(st, step, *attempt, *call, tool, arguments, key),
        Event::ToolCallFinished {
            step,
            attempt,
            call,
            tool,
            output,
            is_error,
        } => {
            if let Some(j) = journal_of(st, step, *attempt) {
                j.set_result(*call, tool, (output.clone(), *is_error));
            }
        }
        Event::StepAmbiguous {
            step, call, tool, ..
        } => set_phase(
            st,
            step,
            Phase::Ambiguous {
                call: *call,
                tool: tool.clone(),
            },
        ),
        Event::HumanRequested {
            step, deadline_ms, ..
        } => human_waits(st, step, *deadline_ms, false),
        Event::HumanEscalated {
            step, deadline_ms, ..
        } => human_waits(st, step, Some(*deadline_ms), true),
        Event::HumanResponded {
            step,
            approved,
            value,
            comment,
            ..
        } => set_phase(
            st,
            step,
            Phase::Answered {
                approved: *approved,
                value: Box::new(value.clone()),
                comment: comment.clone(),
            },
        ),
        _ => {} // only the events listed in `apply`
    }
}

/// Sets the phase of a step instance that exists.
fn set_phase(st: &mut RunState, step: &str, phase: Phase) {
    if let Some(sr) = st.steps.get_mut(step) {
        sr.phase = phase;
    }
}

/// A tool call is about to be sent: it joins the attempt's journal (a call sent again uses up
/// a person's `retry`).
fn call_started(
    st: &mut RunState,
    step: &str,
    attempt: u32,
    call: u32,
    tool: &str,
    arguments: &Value,
    key: &str,
) {
    if let Some(j) = journal_of(st, step, attempt) {
        j.resend = false;
        j.set_call(CallRecord {
            call,
            tool: tool.to_string(),
            arguments: arguments.clone(),
            key: key.to_string(),
            result: None,
        });
    }
}

/// A human step waits for an answer (until `deadline_ms`, when its request has a timeout).
fn human_waits(st: &mut RunState, step: &str, deadline_ms: Option<i64>, escalated: bool) {
    set_phase(
        st,
        step,
        Phase::Human {
            requested: true,
            deadline_ms,
            escalated,
        },
    );
}
