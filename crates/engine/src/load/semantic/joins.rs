//! A parallel step's `join:` settings fit its strategy: `tie_break` only on `vote`,
//! `on_conflict` only on `merge`, `priority` on `priority` (or `merge` with
//! `on_conflict: priority`), naming each branch of the step at most once, and `judge` (a
//! known agent) exactly on `judge`.

use baton_types::{JoinSpec, JoinStrategy, OnConflict, ParallelStep};

use super::Checker;
use crate::load::suggest::{list, paren_hint};
use crate::load::{index_path, key_path};

impl Checker<'_, '_> {
    pub(super) fn check_join(&mut self, id: &str, step: &ParallelStep, path: &str) {
        let Some(join) = &step.join else {
            return;
        };
        let at = |f: &str| key_path(&key_path(path, "join"), f);
        let strategy = join.strategy.as_str();
        if join.tie_break.is_some() && join.strategy != JoinStrategy::Vote {
            self.error(
                at("tie_break"),
                format!("`join.tie_break` only applies to `strategy: vote`, not `{strategy}`"),
            );
        }
        if join.on_conflict.is_some() && join.strategy != JoinStrategy::Merge {
            self.error(
                at("on_conflict"),
                format!("`join.on_conflict` only applies to `strategy: merge`, not `{strategy}`"),
            );
        }
        self.check_judge(join, &at("judge"), &key_path(path, "join"));
        if let Some(order) = &join.priority {
            if !takes_priority(join) {
                let m = match join.strategy {
                    JoinStrategy::Merge => "`join.priority` on a merge join needs `on_conflict: priority` (without it a conflict fails the step)".to_string(),
                    _ => format!("`join.priority` only applies to `strategy: priority` or `merge`, not `{strategy}`"),
                };
                self.error(at("priority"), m);
            }
            self.check_priority(id, step, order, &at("priority"));
        }
    }

    /// `judge` names an agent, and goes with `strategy: judge` only (which needs it).
    fn check_judge(&mut self, join: &JoinSpec, judge_path: &str, join_path: &str) {
        match (&join.judge, join.strategy) {
            (None, JoinStrategy::Judge) => self.error(
                join_path.to_string(),
                "`strategy: judge` needs `judge: AGENT`, the agent that picks a branch or writes a synthesis",
            ),
            (Some(_), s) if s != JoinStrategy::Judge => self.error(
                judge_path.to_string(),
                format!("`join.judge` only applies to `strategy: judge`, not `{}`", s.as_str()),
            ),
            (Some(agent), _) if !self.doc.agents.contains_key(agent) => {
                let names: Vec<&str> = self.doc.agents.keys().map(String::as_str).collect();
                self.error(
                    judge_path.to_string(),
                    format!(
                        "unknown agent `{agent}` as judge: neither in `agents:` (defined: {}) nor in the agent registry{}",
                        list(names.iter().copied()),
                        paren_hint(agent, names.iter().copied())
                    ),
                );
            }
            _ => {}
        }
    }

    /// Every listed id is a branch of the step, listed once.
    fn check_priority(&mut self, id: &str, step: &ParallelStep, order: &[String], path: &str) {
        let branches: Vec<&str> = step.branches.iter().map(|b| b.id.as_str()).collect();
        for (i, name) in order.iter().enumerate() {
            let at = index_path(path, i);
            if !branches.contains(&name.as_str()) {
                self.error(at, format!(
                    "`{name}` in `join.priority` is not a branch of parallel step `{id}` (its branches: {}){}",
                    list(branches.iter().copied()),
                    paren_hint(name, branches.iter().copied())
                ));
            } else if order[..i].contains(name) {
                self.error(
                    at,
                    format!("branch `{name}` is listed twice in `join.priority`"),
                );
            }
        }
    }
}

fn takes_priority(join: &JoinSpec) -> bool {
    match join.strategy {
        JoinStrategy::Priority => true,
        JoinStrategy::Merge => join.on_conflict == Some(OnConflict::Priority),
        _ => false,
    }
}
