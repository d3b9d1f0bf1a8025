//! Baton's built-in agent templates: the application-development team (docs/agents.md). Every
//! tenant's registry holds them from its first use: each name the tenant lacks is stored as its
//! version 1 (`created_by: baton`), once per process and tenant, before the registry is read or
//! a run resolves its agents. They are then agents like any other: a new version edits one,
//! `rollback` returns to the built-in text. A tenant that already has an agent of a built-in's
//! name keeps its own; an upgrade of Baton never changes a stored version.

use baton_engine::load;
use baton_store::{NewAgentVersion, WorkflowFormat};
use baton_types::TenantId;

use crate::Control;
use crate::error::{Error, Result};

/// The templates: name, and the file as shipped.
pub const BUILTIN_AGENTS: &[(&str, &str)] = &[
    (
        "product-manager",
        include_str!("../agents/product-manager.yaml"),
    ),
    ("architect", include_str!("../agents/architect.yaml")),
    ("coder", include_str!("../agents/coder.yaml")),
    ("reviewer", include_str!("../agents/reviewer.yaml")),
    ("tester", include_str!("../agents/tester.yaml")),
    (
        "security-reviewer",
        include_str!("../agents/security-reviewer.yaml"),
    ),
    ("debugger", include_str!("../agents/debugger.yaml")),
    ("deployer", include_str!("../agents/deployer.yaml")),
];

/// Who the registry says stored a built-in version.
pub const BUILTIN_AUTHOR: &str = "baton";

impl Control {
    /// Stores the built-in agents that `tenant`'s registry lacks (once per process and tenant).
    pub(crate) async fn seed_builtin_agents(&self, tenant: &TenantId) -> Result<()> {
        if self.seeded_lock().contains(tenant) {
            return Ok(());
        }
        for (name, text) in BUILTIN_AGENTS {
            let file = format!("built-in agent {name}");
            let a = load::read_agent(&file, text.as_bytes()).map_err(|ds| {
                Error::internal(format!(
                    "{file} does not read: {}",
                    ds.iter()
                        .map(|d| d.message.as_str())
                        .collect::<Vec<_>>()
                        .join("; ")
                ))
            })?;
            let spec = serde_json::to_value(&a.spec).map_err(|e| Error::internal(e.to_string()))?;
            self.tenancy
                .seed_agent(NewAgentVersion {
                    tenant: tenant.clone(),
                    name: a.name,
                    spec,
                    source: (*text).to_string(),
                    format: WorkflowFormat::Yaml,
                    created_at_ms: baton_store::now_ms(),
                    created_by: Some(BUILTIN_AUTHOR.into()),
                })
                .await?;
        }
        self.seeded_lock().insert(tenant.clone());
        Ok(())
    }

    fn seeded_lock(&self) -> std::sync::MutexGuard<'_, std::collections::HashSet<TenantId>> {
        self.seeded.lock().unwrap_or_else(|p| p.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every template reads, names itself, and documents its role, instructions and output
    /// (the CLI's tests check them against the tools as well).
    #[test]
    fn every_template_reads_and_names_itself() {
        for (name, text) in BUILTIN_AGENTS {
            let a = load::read_agent(name, text.as_bytes())
                .unwrap_or_else(|ds| panic!("{name}: {ds:?}"));
            assert_eq!(&a.name, name);
            assert!(a.spec.role.is_some(), "{name} has a role");
            assert!(a.spec.instructions.is_some(), "{name} has instructions");
            assert!(
                a.spec
                    .output
                    .as_ref()
                    .and_then(|o| o.schema.as_ref())
                    .is_some(),
                "{name} has an output schema"
            );
            assert_eq!(a.spec.model, "${BATON_MODEL:-local/smollm2}");
        }
    }
}
