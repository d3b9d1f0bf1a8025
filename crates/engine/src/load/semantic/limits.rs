//! Budgets and runaway detection: every limit positive, `wall_time` at the run's level only.

use baton_types::{Budget, BudgetKind};

use super::Checker;
use crate::load::key_path;

impl Checker<'_, '_> {
    pub(super) fn check_budgets(&mut self) {
        let doc = self.doc;
        if let Some(b) = &doc.budget {
            self.check_budget(b, "budget".to_string());
        }
        for (name, agent) in &doc.agents {
            let Some(b) = &agent.budget else { continue };
            let path = key_path(&key_path("agents", name), "budget");
            if b.wall_time.is_some() {
                self.error(
                    key_path(&path, "wall_time"),
                    format!("agent `{name}`: `wall_time` is a limit of the whole run; set it in the workflow's `budget`"),
                );
            }
            self.check_budget(b, path);
        }
        if let Some(r) = &doc.runaway
            && r.repeated_tool_calls == 1
        {
            self.error(
                "runaway.repeated_tool_calls",
                "`repeated_tool_calls` must be 0 (off) or at least 2: 1 would stop every first call",
            );
        }
    }

    fn check_budget(&mut self, b: &Budget, path: String) {
        if b.is_empty() {
            self.error(
                path.clone(),
                "the budget sets no limit: give tokens, cost_usd, wall_time or model_calls",
            );
        }
        for kind in BudgetKind::ALL {
            if let Some(v) = b.limit(kind)
                && !(v.is_finite() && v > 0.0)
            {
                self.error(
                    key_path(&path, kind.as_str()),
                    format!("budget `{}` must be positive", kind.as_str()),
                );
            }
        }
    }
}
