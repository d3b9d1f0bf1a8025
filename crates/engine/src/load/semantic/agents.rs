//! The agents: their models, tools, temperature and output schema.

use baton_tools::sandbox_step::STEP_TOOL;

use super::Checker;
use crate::load::{index_path, key_path};

impl Checker<'_, '_> {
    pub(super) fn check_agents(&mut self) {
        for (name, agent) in &self.doc.agents {
            let ap = key_path("agents", name);
            if let Some(models) = self.env.models {
                match expand_env(&agent.model) {
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
                } else if !self.env.tools.contains(tool) {
                    let m = self.unknown_tool(tool);
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

/// Expands `${NAME}` and `${NAME:-default}` in a model reference (an empty variable counts as
/// unset). The engine must resolve the same expansion that validation checked.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{s}` has a `${{` without its closing `}}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the model reference `{s}` uses the environment variable `{name}`, which is not set; set it or give a default: `${{{name}:-provider/model}}`"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn env_expansion() {
        assert_eq!(expand_env("local/smollm2").unwrap(), "local/smollm2");
        assert_eq!(
            expand_env("${BATON_TEST_SURELY_UNSET_VAR:-local/smollm2}").unwrap(),
            "local/smollm2"
        );
        assert!(
            expand_env("${BATON_TEST_SURELY_UNSET_VAR}")
                .unwrap_err()
                .contains("not set")
        );
        assert!(expand_env("${oops").is_err());
    }
}
