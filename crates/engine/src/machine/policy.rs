//! The policy before every action (see `crate::policy`): decided here, logged as
//! `policy_decided` in the same write as what follows from it, so a replay reads the decision
//! from the log instead of taking it again.
//!
//! - An agent's tool call (and team call) is decided when its start is reported, before it is
//!   logged as started: allowed, it goes on as always; denied, it is journaled as started and
//!   finished with the refusal as its result (never sent), and the agent reads the refusal.
//!   A call sent again after a crash was allowed before: it is not decided again.
//! - A `tool:` or `sandbox:` step is decided right after its attempt starts, in the same
//!   write: its arguments are rendered here and logged with the decision, and the work sends
//!   exactly those (`StepRun::checked`). Denied, the attempt fails with `policy_denied` (not
//!   retried; `on_error` applies).

use baton_types::{BudgetKind, Event, PolicyDecision, StepError, StepErrorKind, StepPath};
use serde_json::Value;

use super::Machine;
use super::decide::{Decided, Ended};
use super::state::{Phase, RunState};
use crate::context;
use crate::policy::{Action, Left, Verdict};
use crate::program::NodeKind;

impl Machine<'_> {
    /// What the run has left of its own budget (its `budget:` limits, with people's changes).
    fn budget_left(&self, st: &RunState) -> Left {
        let limits = self.limits(st, None);
        let left = |k: BudgetKind| limits.limit(k).map(|l| l - st.budget.spent.get(k));
        Left {
            usd: left(BudgetKind::CostUsd),
            tokens: left(BudgetKind::Tokens),
        }
    }

    /// The decision about call `call` of an agent step, with its event; `None` when the
    /// workflow has no rules or the call was decided before (it is in the journal).
    pub(super) fn check_call(
        &self,
        st: &RunState,
        step: &str,
        attempt: u32,
        call: u32,
        (tool, args): (&str, &Value),
    ) -> Option<(Event, Verdict)> {
        let rules = self.program.policy.as_ref()?;
        let sr = st.steps.get(step)?;
        if sr
            .journal
            .as_ref()
            .and_then(|j| j.call(call))
            .is_some_and(|c| c.call == call)
        {
            return None;
        }
        let agent = self.agent_of(step);
        let action = Action {
            tool,
            agent: agent.as_deref(),
            step: StepPath::parse(step).id(),
            args,
            network: self.network_of(tool),
        };
        let v = rules.decide(&action, self.budget_left(st));
        let ev = Event::PolicyDecided {
            step: step.to_string(),
            attempt,
            call: Some(call),
            tool: tool.to_string(),
            agent: agent.map(|a| baton_types::agent_name(&a).to_string()),
            decision: v.decision,
            rule: v.rule.clone(),
            reason: v
                .reason
                .clone()
                .filter(|_| v.decision == PolicyDecision::Deny),
            arguments: Value::Null,
        };
        Some((ev, v))
    }

    /// Logs a denied call of an agent step: the decision, then the call started and finished
    /// with the refusal as its result (the agent reads it from there; nothing is sent).
    pub(super) fn refuse_call(
        &self,
        st: &mut RunState,
        out: &mut super::Decision,
        decided: Event,
        v: &Verdict,
        (step, attempt, call, key): (&str, u32, u32, String),
        (tool, arguments): (String, Value),
    ) {
        self.emit(st, out, decided);
        let output = v.refusal(&tool);
        let started = Event::ToolCallStarted {
            step: step.to_string(),
            attempt,
            call,
            tool: tool.clone(),
            arguments,
            key,
        };
        self.emit(st, out, started);
        let finished = Event::ToolCallFinished {
            step: step.to_string(),
            attempt,
            call,
            tool,
            output,
            is_error: true,
        };
        self.emit(st, out, finished);
    }

    /// Phase 0: a `tool:` or `sandbox:` step whose attempt started and was not decided yet
    /// is decided (with the arguments it will send), or fails.
    pub(super) fn decide_policy(&self, st: &RunState) -> Option<Decided> {
        let rules = self.program.policy.as_ref()?;
        let p = self.program;
        for (step, sr) in &st.steps {
            if sr.phase != Phase::Running
                || sr.checked.as_ref().is_some_and(|c| c.attempt == sr.attempt)
            {
                continue;
            }
            let node = p.node(sr.node);
            let tool = match &node.kind {
                NodeKind::Tool { name } => name.as_str(),
                NodeKind::Sandbox => baton_tools::sandbox_step::STEP_TOOL,
                _ => continue,
            };
            let ctx = st.template_context(p, sr.frame);
            let what = format!("{}.with", node.id);
            let args = match context::render_args(p, &what, node.tool_args(), &ctx) {
                Ok(a) => a,
                Err(e) => return Some(self.failure(st, step, e, Ended::sync(sr.attempt))),
            };
            let action = Action {
                tool,
                agent: None,
                step: &node.id,
                args: &args,
                network: self.network_of(tool),
            };
            let v = rules.decide(&action, self.budget_left(st));
            let decided = Event::PolicyDecided {
                step: step.clone(),
                attempt: sr.attempt,
                call: None,
                tool: tool.to_string(),
                agent: None,
                decision: v.decision,
                rule: v.rule.clone(),
                reason: v
                    .reason
                    .clone()
                    .filter(|_| v.decision == PolicyDecision::Deny),
                arguments: args,
            };
            if v.decision == PolicyDecision::Allow {
                return Some(Decided::event(decided));
            }
            let e = StepError::fatal(StepErrorKind::PolicyDenied, v.message(tool));
            let mut d = self.failure(st, step, e, Ended::sync(sr.attempt));
            d.before.insert(0, decided);
            return Some(d);
        }
        None
    }
}
