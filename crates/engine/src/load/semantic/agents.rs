//! The agents: their models, tools, temperature and output schema.

use baton_tools::sandbox_step::STEP_TOOL;

use super::Checker;
use crate::load::{index_path, key_path};

impl Checker<'_, '_> {
    pub(super) fn check_agents(&mut self) {
        for (name, agent) in &self.doc.agents {
            let ap = key_path("agents", name);
            if let Some(models) = self.env.models {
                match baton_llm::config::expand_env(&agent.model) {
                    Ok(model) => {
                        if let Err(e) = models.check(&model) {
                            self.error(key_path(&ap, "model"), format!("agent `{name}`: {e}"));
                        }
                    }
                    Err(m) => self.error(key_path(&ap, "model"), m),
                }
            }
            for (i, tool) in agent.tools.iter().enumerate() {
                if tool == STEP_TOOL {
                    self.error(
                        index_path(&key_path(&ap, "tools"), i),
                        format!("agents cannot use `{STEP_TOOL}`: it runs with the policy of a `sandbox:` step; give agents `sandbox.exec`"),
                    );
                } else if !self.env.tools.contains(tool) && !crate::team::is_team_tool(tool) {
                    let m = self.unknown_tool(tool, true);
                    self.error(index_path(&key_path(&ap, "tools"), i), m);
                }
            }
            if let Some(t) = agent.temperature
                && !(0.0..=2.0).contains(&t)
            {
                self.error(
                    key_path(&ap, "temperature"),
                    format!("`temperature` must be between 0 and 2, not {t}"),
                );
            }
            if let Some(schema) = agent.output.as_ref().and_then(|o| o.schema.as_ref()) {
                self.check_schema(schema, key_path(&key_path(&ap, "output"), "schema"));
            }
        }
    }
}
