//! Budgets and runaway detection: limits the machine checks before it starts new work.
//!
//! - Spend is folded from the log: every `model_reply` progress is one model call, with its
//!   usage, counted for the run, the step's agent and the reply's model (only in workflows
//!   that set some limit: `Program::budgeted`).
//! - Wall time is counted only while the run is `running` (not paused, waiting for a person,
//!   stopped by its budget, or between a process's end and the next `run_started`), from the
//!   times the events were logged at; it is kept only when a `wall_time` limit exists.
//! - A limit is crossed once the spend reaches it. The check runs whenever a step is about to
//!   start: work already in flight finishes and its results are logged, nothing new starts,
//!   and the run stops with `paused` (reason `budget`): status `budget_exceeded`, resumable
//!   once a person raises the limit (`budget_raised`).
//! - Runaway: an agent step about to make the same tool call (same tool, same arguments) for
//!   the `runaway.repeated_tool_calls`-th time in a row fails instead (not retried), before
//!   that call is sent.

use std::collections::BTreeMap;

use baton_types::{
    Budget, BudgetChange, BudgetCrossing, BudgetKind, BudgetStop, Event, PauseReason, Progress,
    RunStatus, Spend, StepError, StepErrorKind, StepPath,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::Machine;
use super::decide::Decided;
use super::state::RunState;
use crate::program::NodeKind;

/// What a run spent, and the limit changes people made, folded from the log.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BudgetState {
    /// The run's spend (with its wall time).
    #[serde(default)]
    pub spent: Spend,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_agent: BTreeMap<String, Spend>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub by_model: BTreeMap<String, Spend>,
    /// Limit changes (`budget_raised`), in order, applied over the workflow's limits.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<BudgetChange>,
    /// When the last event was applied (Unix ms), kept while a `wall_time` limit exists.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clock_ms: Option<i64>,
}

impl BudgetState {
    pub fn is_empty(&self) -> bool {
        *self == BudgetState::default()
    }
}

impl Machine<'_> {
    /// The limits of the run (`agent` absent) or of one agent, with people's changes.
    pub fn limits(&self, st: &RunState, agent: Option<&str>) -> Budget {
        let doc = &self.program.doc;
        let mut b = match agent {
            None => doc.budget.clone(),
            Some(a) => doc.agents.get(a).and_then(|s| s.budget.clone()),
        }
        .unwrap_or_default();
        for c in st
            .budget
            .changes
            .iter()
            .filter(|c| c.agent.as_deref() == agent)
        {
            c.apply_to(&mut b);
        }
        b
    }

    /// Whether a change names a limit that exists: the run's, or an agent's that has one.
    pub fn check_change(&self, st: &RunState, c: &BudgetChange) -> Result<(), String> {
        let whose = match &c.agent {
            None => "the workflow".to_string(),
            Some(a) if self.program.doc.agents.contains_key(a) => format!("agent '{a}'"),
            Some(a) => return Err(format!("budget {c}: the workflow has no agent '{a}'")),
        };
        if c.agent.is_some() && c.kind == BudgetKind::WallTime {
            return Err(format!("budget {c}: wall_time is a run-level limit only"));
        }
        if self.limits(st, c.agent.as_deref()).limit(c.kind).is_none() {
            return Err(format!(
                "budget {c}: {whose} sets no {} limit to change",
                c.kind.as_str()
            ));
        }
        Ok(())
    }

    /// The first limit the run has reached: the run's, then each agent's in document order.
    pub fn crossing(&self, st: &RunState) -> Option<BudgetCrossing> {
        if !self.program.budgeted {
            return None;
        }
        let b = &st.budget;
        let scopes = std::iter::once((None, &b.spent)).chain(
            self.program
                .doc
                .agents
                .keys()
                .filter_map(|a| b.by_agent.get(a).map(|s| (Some(a.as_str()), s))),
        );
        for (agent, spent) in scopes {
            let limits = self.limits(st, agent);
            for kind in BudgetKind::ALL {
                if let Some(limit) = limits.limit(kind)
                    && spent.get(kind) >= limit
                {
                    return Some(BudgetCrossing {
                        agent: agent.map(str::to_string),
                        kind,
                        limit,
                        spent: spent.get(kind),
                    });
                }
            }
        }
        None
    }

    /// The stop of a run that has reached a limit, when one has.
    pub(super) fn budget_stop(&self, st: &RunState) -> Option<Decided> {
        let crossed = self.crossing(st)?;
        let stop = BudgetStop {
            crossed,
            spent: st.budget.spent,
            by_agent: st.budget.by_agent.clone(),
            by_model: st.budget.by_model.clone(),
        };
        let pause = PauseReason::Budget(Box::new(stop));
        Some(Decided::event(Event::Paused { pause }))
    }

    /// Whether the clock is kept: some limit counts wall time.
    fn keeps_clock(&self) -> bool {
        self.program
            .doc
            .budget
            .as_ref()
            .is_some_and(|b| b.wall_time.is_some())
    }

    /// The fold's part: the clock before an event is applied (`st.status` is still the one
    /// before it), model calls, and limit changes.
    pub(super) fn apply_budget(&self, st: &mut RunState, ev: &Event) {
        if self.keeps_clock() {
            let now = self.now_ms();
            let b = &mut st.budget;
            if let Some(last) = b.clock_ms
                && st.status == RunStatus::Running
                && !matches!(ev, Event::RunStarted { .. })
            {
                b.spent.wall_time_ms += u64::try_from(now - last).unwrap_or(0);
            }
            b.clock_ms = Some(now);
        }
        match ev {
            // Spend is kept only where some limit exists: a run without one pays nothing
            // per model reply, and its checkpoints carry no spend.
            Event::StepProgress {
                step,
                progress: Progress::ModelReply { model, usage, .. },
            } if self.program.budgeted && st.steps.contains_key(step) => {
                let b = &mut st.budget;
                b.spent.add_call(usage);
                b.by_model.entry(model.clone()).or_default().add_call(usage);
                if let Some(agent) = self.agent_of(step) {
                    b.by_agent.entry(agent).or_default().add_call(usage);
                }
            }
            Event::BudgetRaised { changes, .. } => {
                st.budget.changes.extend(changes.iter().cloned());
            }
            _ => {}
        }
    }

    /// The agent an agent step instance runs (a parallel step: its judge).
    pub(super) fn agent_of(&self, step: &str) -> Option<String> {
        let node = self.program.node_by_id(StepPath::parse(step).id())?;
        match &node.kind {
            NodeKind::Agent { agent } => Some(agent.clone()),
            // A parallel step's work is its judge's.
            _ => super::judge_of(node).map(str::to_string),
        }
    }

    /// The workflow's runaway thresholds (the defaults when it sets none).
    pub(super) fn runaway_limits(&self) -> baton_types::Runaway {
        self.program.doc.runaway.clone().unwrap_or_default()
    }

    /// The error of a runaway: `step` is about to send `tool` with `arguments` again, after
    /// `repeats - 1` identical calls in a row (its journal).
    pub(super) fn runaway(
        &self,
        st: &RunState,
        step: &str,
        call: u32,
        (tool, arguments): (&str, &Value),
    ) -> Option<StepError> {
        let limit = self.runaway_limits().repeated_tool_calls;
        if limit == 0 {
            return None;
        }
        let journal = st.steps.get(step)?.journal.as_ref()?;
        // The calls before this one (a call sent again after a resume has its number).
        let before = usize::try_from(call.saturating_sub(1)).unwrap_or(usize::MAX);
        let calls = journal.calls.get(..before).unwrap_or(&journal.calls);
        let same = calls
            .iter()
            .rev()
            .take_while(|c| c.tool == tool && &c.arguments == arguments)
            .count();
        if same + 1 < limit as usize {
            return None;
        }
        let agent = self.agent_of(step).unwrap_or_default();
        Some(StepError::fatal(
            StepErrorKind::Runaway,
            format!(
                "runaway: agent '{agent}' in step '{step}' was about to call tool '{tool}' with \
                 the same arguments {arguments} for the {} time in a row (calls {}-{}); stopped \
                 before sending it (runaway.repeated_tool_calls: {limit})",
                super::decide::ordinal(limit),
                call - same as u32,
                call,
            ),
        ))
    }
}
