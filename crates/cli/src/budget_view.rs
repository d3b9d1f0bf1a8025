//! Budgets on a terminal: the stop's summary (the limit crossed, who spent what), the limits
//! and spend of `baton runs show`, and the spend line of live progress.

use std::collections::BTreeMap;

use baton_control::BudgetView;
use baton_types::{Budget, BudgetKind, BudgetStop, Spend};

/// `1200 tokens · 3 calls · $0.0120 · 1m 5s` (the parts that are not zero; tokens always).
pub fn spend(s: &Spend) -> String {
    let mut parts = vec![format!("{} tokens", s.tokens)];
    if s.model_calls > 0 {
        parts.push(format!("{} calls", s.model_calls));
    }
    if s.cost_usd > 0.0 {
        parts.push(BudgetKind::CostUsd.show(s.cost_usd));
    }
    if s.wall_time_ms > 0 {
        parts.push(BudgetKind::WallTime.show(s.wall_time_ms as f64));
    }
    parts.join(" · ")
}

/// `tokens 150, model_calls 10`.
pub fn limits(b: &Budget) -> String {
    let parts: Vec<String> = BudgetKind::ALL
        .into_iter()
        .filter_map(|k| b.limit(k).map(|v| format!("{} {}", k.as_str(), k.show(v))))
        .collect();
    parts.join(", ")
}

fn spend_lines(title: &str, by: &BTreeMap<String, Spend>) -> Vec<String> {
    by.iter()
        .map(|(name, s)| format!("  {title} {name}: {}", spend(s)))
        .collect()
}

/// The summary of a run its budget stopped: the limit, then the spend by agent and model, and
/// how to go on.
pub fn stop_lines(run: &str, stop: &BudgetStop) -> Vec<String> {
    let mut out = vec![format!("budget exceeded: {}", stop.crossed)];
    out.push(format!("  spent: {}", spend(&stop.spent)));
    out.extend(spend_lines("agent", &stop.by_agent));
    out.extend(spend_lines("model", &stop.by_model));
    let key = match &stop.crossed.agent {
        Some(a) => format!("{a}.{}", stop.crossed.kind.as_str()),
        None => stop.crossed.kind.as_str().to_string(),
    };
    out.push(format!(
        "Continue with more: baton resume {run} --budget {key}=+N"
    ));
    out
}

/// The budget part of `baton runs show`.
pub fn show_lines(b: &BudgetView) -> Vec<String> {
    let mut out = Vec::new();
    if !b.limits.is_empty() {
        out.push(format!("budget    {}", limits(&b.limits)));
    }
    for (agent, l) in &b.agent_limits {
        out.push(format!("          agent {agent}: {}", limits(l)));
    }
    if !b.changes.is_empty() {
        out.push(format!("raised    {}", b.changes.join(", ")));
    }
    if let Some(c) = &b.exceeded {
        out.push(format!("exceeded  {c}"));
    }
    out.push(format!("spent     {}", spend(&b.spent)));
    out.extend(spend_lines("agent", &b.by_agent));
    out.extend(spend_lines("model", &b.by_model));
    out
}

/// The spend of a run with a budget, shown as it grows: `spent: run 120 tokens of 1000 ·
/// coder 80 tokens of 500 · tester 40 tokens`.
pub struct LiveSpend {
    /// The agent of each agent step (by step id).
    steps: BTreeMap<String, String>,
    now: std::sync::Mutex<Live>,
}

/// The limits (the run's, the agents') and what was spent (by the run, by agent).
struct Live {
    run: Budget,
    agents: BTreeMap<String, Budget>,
    spent: Spend,
    by_agent: BTreeMap<String, Spend>,
}

impl LiveSpend {
    /// `None` when the workflow sets no budget.
    pub fn new(program: &baton_engine::Program, st: &baton_engine::RunState) -> Option<Self> {
        let view = BudgetView::of(program, st);
        if !view.has_limits() {
            return None;
        }
        let steps = program
            .nodes
            .iter()
            .filter_map(|n| match &n.kind {
                baton_engine::program::NodeKind::Agent { agent } => {
                    Some((n.id.clone(), agent.clone()))
                }
                _ => None,
            })
            .collect();
        let live = Live {
            run: view.limits,
            agents: view.agent_limits,
            spent: view.spent,
            by_agent: view.by_agent,
        };
        Some(LiveSpend {
            steps,
            now: std::sync::Mutex::new(live),
        })
    }

    /// Counts one model reply of `step`, and says where the spend stands.
    pub fn add(&self, step: &str, usage: &baton_types::Usage) -> String {
        let mut g = self.now.lock().unwrap_or_else(|p| p.into_inner());
        g.spent.add_call(usage);
        let id = baton_types::StepPath::parse(step).id().to_string();
        if let Some(agent) = self.steps.get(&id) {
            g.by_agent.entry(agent.clone()).or_default().add_call(usage);
        }
        let mut parts = vec![format!("run {}", against(&g.spent, &g.run))];
        for (agent, s) in &g.by_agent {
            let limits = g.agents.get(agent).cloned().unwrap_or_default();
            parts.push(format!("{agent} {}", against(s, &limits)));
        }
        format!("spent: {}", parts.join(" · "))
    }

    /// Limits people raised (`budget_raised`).
    pub fn raised(&self, changes: &[baton_types::BudgetChange]) {
        let mut g = self.now.lock().unwrap_or_else(|p| p.into_inner());
        for c in changes {
            match &c.agent {
                None => c.apply_to(&mut g.run),
                Some(a) => c.apply_to(g.agents.entry(a.clone()).or_default()),
            }
        }
    }
}

/// `120 tokens of 1000` (each limit set but wall time, against its spend; tokens when none
/// is). Wall time is counted in the run log, not here: `baton runs show` has it.
fn against(s: &Spend, b: &Budget) -> String {
    let parts: Vec<String> = BudgetKind::ALL
        .into_iter()
        .filter(|k| *k != BudgetKind::WallTime)
        .filter_map(|k| {
            b.limit(k)
                .map(|l| format!("{} {} of {}", k.show(s.get(k)), k.as_str(), k.show(l)))
        })
        .collect();
    if parts.is_empty() {
        format!("{} tokens", s.tokens)
    } else {
        parts.join(", ")
    }
}
