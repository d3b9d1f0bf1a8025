//! Human steps: asking a person, their answer, and the deadline of a request that has a
//! `human.timeout` (escalation, then `human.on_timeout`).

use baton_types::{Dur, Event, OnTimeout, StepError, StepErrorKind};
use serde_json::{Value, json};

use super::decide::{Decided, Ended};
use super::state::{Phase, RunState};
use super::{Decision, Machine, Refused};
use crate::context;
use crate::program::Node;

impl Machine<'_> {
    /// A person's answer to a waiting `human` step.
    pub(super) fn answer(
        &self,
        st: &mut RunState,
        ev: Event,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        let Event::HumanResponded { step, .. } = &ev else {
            return Ok(());
        };
        let asked = st.steps.get(step);
        if !asked.is_some_and(|s| matches!(s.phase, Phase::Human { .. })) {
            return Err(Refused::NotWaiting(step.clone()));
        }
        self.emit(st, out, ev);
        Ok(())
    }

    /// A human step's deadline passed unanswered: the request escalates (once, when
    /// `human.escalate_to` names someone), or the step ends as `human.on_timeout` says.
    pub(super) fn human_timeout(
        &self,
        st: &mut RunState,
        step: String,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        let now = self.now_ms();
        let Some(sr) = st.steps.get(&step) else {
            return Err(Refused::NotWaiting(step));
        };
        let Phase::Human {
            requested: true,
            deadline_ms: Some(deadline),
            escalated,
        } = sr.phase
        else {
            return Err(Refused::NotDue(step));
        };
        if now < deadline {
            return Err(Refused::NotDue(step));
        }
        let attempt = sr.attempt;
        let node = self.program.node(sr.node);
        let Some(spec) = node.human_spec() else {
            return Err(Refused::NotWaiting(step));
        };
        let waited = spec.timeout.map(|t| t.to_string()).unwrap_or_default();
        if let (Some(to), false, Some(t)) = (&spec.escalate_to, escalated, spec.timeout) {
            let deadline_ms = deadline_after(now, t);
            let to = to.clone();
            self.emit(
                st,
                out,
                Event::HumanEscalated {
                    step,
                    to,
                    deadline_ms,
                },
            );
            return Ok(());
        }
        let comment = Some(format!("no answer within {waited}"));
        let by = Some("timeout".to_string());
        match spec.on_timeout {
            OnTimeout::Fail => {
                let msg = format!("no answer within {waited}");
                let err = StepError::fatal(StepErrorKind::Timeout, msg);
                let d = self.failure(st, &step, err, Ended::sync(attempt));
                self.record(st, out, d);
            }
            OnTimeout::Reject | OnTimeout::Approve => {
                let approved = spec.on_timeout == OnTimeout::Approve;
                let ev = Event::HumanResponded {
                    step,
                    approved,
                    value: Value::Null,
                    comment,
                    by,
                };
                self.emit(st, out, ev);
            }
        }
        Ok(())
    }

    /// Phase 2: a human step is asked, or ends with its answer.
    pub(super) fn decide_human(&self, st: &RunState) -> Option<Decided> {
        let p = self.program;
        for (step, sr) in &st.steps {
            let node = p.node(sr.node);
            match &sr.phase {
                Phase::Human {
                    requested: false, ..
                } => {
                    let ctx = st.template_context(p, sr.frame);
                    let name = format!("{}.human", node.id);
                    let deadline_ms = node
                        .human_spec()
                        .and_then(|h| h.timeout)
                        .map(|t| deadline_after(self.now_ms(), t));
                    return Some(match context::render(p, &name, &ctx) {
                        Ok(prompt) => Decided::event(Event::HumanRequested {
                            step: step.clone(),
                            prompt,
                            kind: node.human,
                            deadline_ms,
                        }),
                        Err(e) => self.failure(st, step, e, Ended::sync(sr.attempt)),
                    });
                }
                Phase::Answered {
                    approved,
                    value,
                    comment,
                } => {
                    let answer = human_outcome(node, *approved, value, comment.as_deref());
                    return Some(self.step_ended(st, step, answer, Ended::sync(sr.attempt)));
                }
                _ => {}
            }
        }
        None
    }
}

/// What a human's answer makes of the step: a rejected approval fails it, anything else
/// gives `{approved, value, comment}`.
fn human_outcome(
    node: &Node,
    approved: bool,
    value: &Value,
    comment: Option<&str>,
) -> Result<Value, StepError> {
    if node.human == baton_types::HumanKind::Approval && !approved {
        let msg = match comment {
            Some(c) => format!("rejected: {c}"),
            None => "rejected".to_string(),
        };
        return Err(StepError::fatal(StepErrorKind::Rejected, msg));
    }
    Ok(json!({ "approved": approved, "value": value, "comment": comment }))
}

/// Unix ms `wait` after `now_ms` (saturating: a wait too long to count never ends).
pub(super) fn deadline_after(now_ms: i64, wait: Dur) -> i64 {
    now_ms.saturating_add(i64::try_from(wait.as_millis()).unwrap_or(i64::MAX))
}
