//! `policy.rules`: ids unique, globs that compile, and names that exist: the tools, agents
//! and steps a rule names, and the budget limit a `budget_left_below` counts from.

use std::collections::HashMap;

use super::Checker;
use crate::load::suggest::hint;
use crate::load::{index_path, key_path};
use crate::policy::{Glob, Rules};

impl Checker<'_, '_> {
    pub(super) fn check_policy(&mut self) {
        let doc = self.doc;
        let rules = &doc.policy.rules;
        if rules.is_empty() {
            return;
        }
        let mut seen: HashMap<&str, usize> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            let at = |field: &str| format!("{}.{field}", index_path("policy.rules", i));
            if let Some(first) = seen.insert(r.id.as_str(), i) {
                self.error(
                    at("id"),
                    format!(
                        "policy rule id `{}` is used twice (rules {first} and {i}); ids name \
                         decisions in the run log and must be unique",
                        r.id
                    ),
                );
            }
        }
        if let Err(errors) = Rules::compile(rules) {
            for (i, e) in errors {
                let id = rules.get(i).map_or("", |r| r.id.as_str());
                let path = format!("{}.{}", index_path("policy.rules", i), e.field);
                self.error(path, format!("policy rule `{id}`: {}", e.message));
            }
        }
        for (i, r) in rules.iter().enumerate() {
            let base = index_path("policy.rules", i);
            self.check_rule_tools(&base, r);
            let agents: Vec<&str> = doc
                .agents
                .keys()
                .map(|k| baton_types::agent_name(k))
                .collect();
            for (j, a) in r.agents.iter().enumerate() {
                if !agents.contains(&baton_types::agent_name(a)) {
                    self.error(
                        index_path(&key_path(&base, "agents"), j),
                        format!(
                            "policy rule `{}`: the workflow has no agent `{a}`{}",
                            r.id,
                            hint(a, agents.iter().copied())
                        ),
                    );
                }
            }
            for (j, s) in r.steps.iter().enumerate() {
                if !self.ids.contains_key(s.as_str()) {
                    let ids: Vec<&str> = self.ids.keys().copied().collect();
                    self.error(
                        index_path(&key_path(&base, "steps"), j),
                        format!(
                            "policy rule `{}`: the workflow has no step `{s}`{}",
                            r.id,
                            hint(s, ids.iter().copied())
                        ),
                    );
                }
            }
            if let Some(b) = &r.budget_left_below {
                let limits = doc.budget.clone().unwrap_or_default();
                let bp = key_path(&base, "budget_left_below");
                if b.usd.is_some() && limits.cost_usd.is_none() {
                    self.error(
                        key_path(&bp, "usd"),
                        format!(
                            "policy rule `{}`: `budget_left_below.usd` counts from the run's \
                             `budget.cost_usd`, which the workflow does not set",
                            r.id
                        ),
                    );
                }
                if b.tokens.is_some() && limits.tokens.is_none() {
                    self.error(
                        key_path(&bp, "tokens"),
                        format!(
                            "policy rule `{}`: `budget_left_below.tokens` counts from the run's \
                             `budget.tokens`, which the workflow does not set",
                            r.id
                        ),
                    );
                }
            }
        }
    }

    /// A rule's `tools`: each glob names a tool that exists (the registry's, the team tools,
    /// `sandbox.step`), or with a wildcard matches at least one.
    fn check_rule_tools(&mut self, base: &str, r: &baton_types::PolicyRule) {
        let known: Vec<String> = self
            .env
            .tools
            .names()
            .map(str::to_string)
            .chain(crate::team::TOOLS.iter().map(|t| t.to_string()))
            .chain(std::iter::once(
                baton_tools::sandbox_step::STEP_TOOL.to_string(),
            ))
            .collect();
        for (j, t) in r.tools.iter().enumerate() {
            let Ok(g) = Glob::text(t) else { continue };
            if known.iter().any(|k| g.matches(k)) {
                continue;
            }
            let what = if g.is_literal() {
                format!("unknown tool `{t}`")
            } else {
                format!("`{t}` matches no tool")
            };
            self.error(
                index_path(&key_path(base, "tools"), j),
                format!(
                    "policy rule `{}`: {what}{} (tools: {})",
                    r.id,
                    hint(t, known.iter().map(String::as_str)),
                    known.join(", ")
                ),
            );
        }
    }
}
