//! Budgets of runs: the changes a resume brings (`--budget tokens=+50000`), checked by the
//! engine's own rules on a copy of the run's state before anything is recorded, and what a
//! run's detail shows (limits, spend by agent and by model, the limit crossed).

use std::collections::BTreeMap;

use baton_engine::Machine;
use baton_engine::machine::Refused;
use baton_types::{Budget, BudgetChange, BudgetCrossing, PauseReason, Spend};

use super::*;

/// How to resume a run: step-through or not, and budget changes to make first.
#[derive(Clone, Debug, Default)]
pub struct ResumeOptions {
    pub stepping: bool,
    pub budget: Vec<BudgetChange>,
}

/// A run's budget as shown: the limits (with the changes people made), what was spent, by
/// agent and by model, and the limit that stopped the run if one did.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct BudgetView {
    /// The run's limits (empty: none).
    pub limits: Budget,
    /// The agents' own limits, for the agents that have some.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agent_limits: BTreeMap<String, Budget>,
    pub spent: Spend,
    pub by_agent: BTreeMap<String, Spend>,
    pub by_model: BTreeMap<String, Spend>,
    /// The limit that stopped the run (status `budget_exceeded`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exceeded: Option<BudgetCrossing>,
    /// The limit changes made so far, in order (`tokens=+50000`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub changes: Vec<String>,
}

impl BudgetView {
    pub fn of(program: &Program, st: &RunState) -> BudgetView {
        let m = Machine::new(program);
        let agent_limits = program
            .doc
            .agents
            .keys()
            .map(|a| (a.clone(), m.limits(st, Some(a))))
            .filter(|(_, b)| !b.is_empty())
            .collect();
        let exceeded = match &st.pause {
            Some(PauseReason::Budget(stop)) => Some(stop.crossed.clone()),
            _ => None,
        };
        BudgetView {
            limits: m.limits(st, None),
            agent_limits,
            spent: st.budget.spent,
            by_agent: st.budget.by_agent.clone(),
            by_model: st.budget.by_model.clone(),
            exceeded,
            changes: st.budget.changes.iter().map(ToString::to_string).collect(),
        }
    }

    /// Whether the run has limits to show.
    pub fn has_limits(&self) -> bool {
        !self.limits.is_empty() || !self.agent_limits.is_empty()
    }
}

impl Control {
    /// The input that makes `changes` (none: nothing to make), once the engine's rules accept
    /// them and, for a run its budget stopped, the resume they allow.
    pub(super) fn budget_input(
        &self,
        caller: &Caller,
        program: &Program,
        st: &RunState,
        opts: &ResumeOptions,
    ) -> Result<Option<Input>> {
        let raise = (!opts.budget.is_empty()).then(|| Input::RaiseBudget {
            changes: opts.budget.clone(),
            by: Some(caller.key_id.clone()),
        });
        // The same decisions on a copy: a refused change or a run still over its budget is
        // answered before anything is recorded.
        let m = Machine::new(program);
        let mut copy = st.clone();
        if let Some(input) = raise.clone() {
            m.handle(&mut copy, input).map_err(|e| match e {
                Refused::Budget(why) => Error::invalid_field("budget", why),
                other => Error::conflict(other.to_string()),
            })?;
        }
        if copy.status == RunStatus::BudgetExceeded {
            let resume = Input::Resume {
                stepping: opts.stepping,
            };
            if let Err(Refused::OverBudget(crossed)) = m.handle(&mut copy, resume) {
                return Err(Error::conflict(format!(
                    "run {} is still over its budget: {crossed}; resume it with more, e.g. --budget {}=+N{}",
                    st.run_id,
                    crossed.kind.as_str(),
                    crossed
                        .agent
                        .as_ref()
                        .map(|a| format!(
                            " (this agent's own: --budget {a}.{}=+N)",
                            crossed.kind.as_str()
                        ))
                        .unwrap_or_default()
                )));
            }
        }
        Ok(raise)
    }

    /// The parts of a run's detail its state gives: the budget (for runs with limits) and
    /// the team (for runs with agents); none when its workflow no longer compiles.
    pub(super) async fn state_views(
        &self,
        program: Option<&Program>,
        rec: &RunRecord,
    ) -> Result<(Option<BudgetView>, Option<baton_types::TeamView>)> {
        let Some(program) = program else {
            return Ok((None, None));
        };
        let budgeted =
            program.doc.budget.is_some() || program.doc.agents.values().any(|a| a.budget.is_some());
        // A run with neither has nothing to show (and a run's detail, read often, does not
        // rebuild the run's state for nothing).
        if !budgeted && program.doc.agents.is_empty() {
            return Ok((None, None));
        }
        let st = baton_engine::executor::load_state(&self.services, program, rec.id).await?;
        let budget = budgeted.then(|| BudgetView::of(program, &st));
        let team = (!program.doc.agents.is_empty())
            .then(|| super::team::team_view(program, &st, rec.created_at_ms));
        Ok((budget, team))
    }
}
