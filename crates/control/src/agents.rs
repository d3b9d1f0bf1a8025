//! The agent registry: agent templates (model, role, instructions, tools, output schema,
//! limits) stored per tenant with immutable versions. `create` stores the next version of a
//! name and makes it the default; `rollback` moves the default back. A workflow step refers
//! to `agent: coder` (the default version when the run starts) or pins `agent: coder@3`;
//! the versions a run resolved are frozen into it (its options and an `agents_resolved`
//! event), so it resumes and replays with them whatever the registry says later.

use std::collections::BTreeMap;
use std::str::FromStr;

use baton_engine::load;
use baton_store::{AgentRecord, NewAgentVersion, WorkflowFormat};
use baton_types::{AgentSpec, PinnedAgent, Step, StepKind, TenantId};
use serde::Serialize;
use serde_json::{Value, json};

use crate::audit::Outcome;
use crate::error::{Error, Result};
use crate::workflows::split_ref;
use crate::{Caller, Control, Diagnostic, Permission};

/// `name` or `name@version` of an agent.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AgentRef {
    pub name: String,
    pub version: Option<u32>,
}

impl FromStr for AgentRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, version) = split_ref(s, "agent")?;
        Ok(Self { name, version })
    }
}

impl std::fmt::Display for AgentRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// An agent in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct AgentInfo {
    pub name: String,
    /// The newest version.
    pub latest: u32,
    /// The version `agent: NAME` resolves to.
    pub default_version: u32,
    /// The default version's `model` (`provider/model`).
    pub model: String,
    /// The default version's `role`, when it has one.
    pub role: Option<String>,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One version of an agent.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AgentVersion {
    pub name: String,
    pub version: u32,
    pub latest: u32,
    pub default_version: u32,
    /// The template as runs use it.
    pub spec: AgentSpec,
    /// The file as written.
    pub source: String,
    pub format: WorkflowFormat,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// Problems that would stop its first model call here (warnings; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

impl AgentVersion {
    fn of(a: AgentRecord) -> Result<Self> {
        let spec = serde_json::from_value(a.spec).map_err(|e| {
            Error::internal(format!(
                "the stored agent {}@{} no longer reads: {e}",
                a.name, a.version
            ))
        })?;
        Ok(Self {
            name: a.name,
            version: a.version,
            latest: a.latest,
            default_version: a.default_version,
            spec,
            source: a.source,
            format: a.format,
            created_at_ms: a.created_at_ms,
            created_by: a.created_by,
            warnings: Vec::new(),
        })
    }
}

/// A field whose value differs between two versions (`null`: absent).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct FieldChange {
    pub field: String,
    pub from: Value,
    pub to: Value,
}

/// Two versions of an agent compared: field by field, and as a unified diff of the files.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct AgentDiff {
    pub name: String,
    pub from: u32,
    pub to: u32,
    pub changes: Vec<FieldChange>,
    pub unified: String,
}

impl Control {
    /// Checks an agent file (every problem, with line and column) and stores it as the next
    /// version of its `name:` (version 1 for a new name), which becomes the default.
    pub async fn create_agent(
        &self,
        caller: &Caller,
        file: &str,
        text: &str,
    ) -> Result<AgentVersion> {
        if let Err(e) = caller.check(Permission::EditWorkflows) {
            return Err(self.denied(caller, "agent.create", None, e).await);
        }
        let a = load::load_agent(file, text.as_bytes(), &self.env())
            .map_err(crate::runs::diagnostics)?;
        // A file named like a built-in agent stores that agent's next version.
        self.seed_builtin_agents(&caller.tenant).await?;
        let warnings = self.agent_model_problems(file, &a);
        let spec = serde_json::to_value(&a.spec).map_err(|e| Error::internal(e.to_string()))?;
        let rec = self
            .tenancy
            .put_agent(NewAgentVersion {
                tenant: caller.tenant.clone(),
                name: a.name.clone(),
                spec,
                source: a.source,
                format: crate::workflows::format_of(text),
                created_at_ms: baton_store::now_ms(),
                created_by: Some(caller.key_id.clone()),
            })
            .await?;
        let object = format!("agent/{}@{}", rec.name, rec.version);
        let details = json!({"version": rec.version});
        self.record(caller, "agent.create", Some(&object), Outcome::Ok, details)
            .await?;
        Ok(AgentVersion {
            warnings,
            ..AgentVersion::of(rec)?
        })
    }

    /// The problems that would stop the agent's first model call here (as warnings).
    fn agent_model_problems(&self, file: &str, a: &load::AgentFile) -> Vec<Diagnostic> {
        match baton_llm::config::expand_env(&a.spec.model)
            .map_err(|e| e.to_string())
            .and_then(|m| self.services.models.check(&m).map_err(|e| e.to_string()))
        {
            Ok(()) => Vec::new(),
            Err(message) => vec![Diagnostic {
                level: "warning",
                file: file.to_string(),
                line: 1,
                column: 1,
                path: "model".into(),
                message,
            }],
        }
    }

    /// The tenant's agents, by name.
    pub async fn list_agents(&self, caller: &Caller) -> Result<Vec<AgentInfo>> {
        caller.check(Permission::Read)?;
        self.seed_builtin_agents(&caller.tenant).await?;
        let mut out = Vec::new();
        for a in self.tenancy.agents(&caller.tenant).await? {
            // The default version's model and role: what a listing shows of each agent.
            let rec = self
                .tenancy
                .agent(&caller.tenant, &a.name, Some(a.default_version))
                .await?
                .ok_or_else(|| {
                    Error::internal(format!(
                        "agent {} lists default version {} that the store does not hold",
                        a.name, a.default_version
                    ))
                })?;
            let spec = AgentVersion::of(rec)?.spec;
            out.push(AgentInfo {
                model: spec.model,
                role: spec.role,
                name: a.name,
                latest: a.latest,
                default_version: a.default_version,
                created_at_ms: a.created_at_ms,
                updated_at_ms: a.updated_at_ms,
            });
        }
        Ok(out)
    }

    /// A version of an agent (its default unless pinned).
    pub async fn get_agent(&self, caller: &Caller, r: &AgentRef) -> Result<AgentVersion> {
        caller.check(Permission::Read)?;
        self.seed_builtin_agents(&caller.tenant).await?;
        let rec = self
            .tenancy
            .agent(&caller.tenant, &r.name, r.version)
            .await?
            .ok_or_else(|| match r.version {
                Some(v) => Error::not_found(format!("no version {v} of agent {}", r.name)),
                None => Error::not_found(format!("no agent {}", r.name)),
            })?;
        AgentVersion::of(rec)
    }

    /// Every version of an agent, oldest first.
    pub async fn agent_versions(&self, caller: &Caller, name: &str) -> Result<Vec<AgentVersion>> {
        caller.check(Permission::Read)?;
        crate::workflows::check_name(name, "agent")?;
        self.seed_builtin_agents(&caller.tenant).await?;
        let all = self.tenancy.agent_versions(&caller.tenant, name).await?;
        if all.is_empty() {
            return Err(Error::not_found(format!("no agent {name}")));
        }
        all.into_iter().map(AgentVersion::of).collect()
    }

    /// Compares two versions (of one agent, or of two).
    pub async fn diff_agents(
        &self,
        caller: &Caller,
        a: &AgentRef,
        b: &AgentRef,
    ) -> Result<AgentDiff> {
        let (old, new) = (
            self.get_agent(caller, a).await?,
            self.get_agent(caller, b).await?,
        );
        let (os, ns) = (spec_fields(&old.spec), spec_fields(&new.spec));
        let mut fields: Vec<&String> = os.keys().chain(ns.keys()).collect();
        fields.sort();
        fields.dedup();
        let changes = fields
            .into_iter()
            .filter_map(|f| {
                let (from, to) = (os.get(f).cloned(), ns.get(f).cloned());
                (from != to).then(|| FieldChange {
                    field: f.clone(),
                    from: from.unwrap_or(Value::Null),
                    to: to.unwrap_or(Value::Null),
                })
            })
            .collect();
        let unified = similar::TextDiff::from_lines(&old.source, &new.source)
            .unified_diff()
            .header(
                &format!("{}@{}", old.name, old.version),
                &format!("{}@{}", new.name, new.version),
            )
            .to_string();
        Ok(AgentDiff {
            name: new.name,
            from: old.version,
            to: new.version,
            changes,
            unified,
        })
    }

    /// Makes version `to` the default of agent `name` (runs that start from now on use it).
    pub async fn rollback_agent(
        &self,
        caller: &Caller,
        name: &str,
        to: u32,
    ) -> Result<AgentVersion> {
        let object = format!("agent/{name}@{to}");
        if let Err(e) = caller.check(Permission::EditWorkflows) {
            return Err(self
                .denied(caller, "agent.rollback", Some(&object), e)
                .await);
        }
        crate::workflows::check_name(name, "agent")?;
        self.seed_builtin_agents(&caller.tenant).await?;
        let rec = self
            .tenancy
            .set_default_agent(&caller.tenant, name, to, baton_store::now_ms())
            .await?;
        self.record(
            caller,
            "agent.rollback",
            Some(&object),
            Outcome::Ok,
            json!({"to": to}),
        )
        .await?;
        AgentVersion::of(rec)
    }

    /// Every version of the tenant's agents (or of the ones named), for a backup or a move.
    pub async fn export_agents(
        &self,
        caller: &Caller,
        names: &[String],
    ) -> Result<Vec<AgentVersion>> {
        caller.check(Permission::Read)?;
        let names: Vec<String> = if names.is_empty() {
            self.list_agents(caller)
                .await?
                .into_iter()
                .map(|a| a.name)
                .collect()
        } else {
            names.to_vec()
        };
        let mut out = Vec::new();
        for n in names {
            out.extend(self.agent_versions(caller, &n).await?);
        }
        Ok(out)
    }

    /// Puts the registry agents that `loaded`'s steps name, and that its own `agents:` does
    /// not define, into its `agents:` (under the reference as written), and returns them
    /// pinned. A reference to a version that does not exist is a diagnostic; a name the
    /// registry does not have is left to validation (an unknown agent).
    pub(crate) async fn resolve_agents(
        &self,
        tenant: &TenantId,
        loaded: &mut load::Loaded,
    ) -> Result<(BTreeMap<String, PinnedAgent>, Vec<load::Diagnostic>)> {
        let mut refs = Vec::new();
        agent_refs(&loaded.doc.steps, "steps", &mut refs);
        if refs.iter().any(|(r, _)| !loaded.doc.agents.contains_key(r)) {
            self.seed_builtin_agents(tenant).await?;
        }
        let mut pinned = BTreeMap::new();
        let mut problems = Vec::new();
        for (reference, path) in refs {
            if loaded.doc.agents.contains_key(&reference) || pinned.contains_key(&reference) {
                continue;
            }
            let Ok(r) = reference.parse::<AgentRef>() else {
                continue;
            };
            match self.tenancy.agent(tenant, &r.name, r.version).await? {
                Some(rec) => {
                    let a = AgentVersion::of(rec)?;
                    loaded.doc.agents.insert(reference.clone(), a.spec.clone());
                    let pin = PinnedAgent {
                        name: a.name,
                        version: a.version,
                        spec: a.spec,
                    };
                    pinned.insert(reference, pin);
                }
                None if r.version.is_some() => {
                    if let Some(d) = self.tenancy.agent(tenant, &r.name, None).await? {
                        let msg = format!(
                            "agent `{}` has no version {} (versions 1 to {})",
                            r.name,
                            r.version.unwrap_or_default(),
                            d.latest
                        );
                        problems.push(loaded.diagnostic(path, msg));
                    }
                }
                None => {}
            }
        }
        Ok((pinned, problems))
    }
}

/// Whether some step names an agent that the document's `agents:` does not define (one the
/// registry may have).
pub fn names_registry_agents(doc: &baton_types::WorkflowDoc) -> bool {
    let mut refs = Vec::new();
    agent_refs(&doc.steps, "steps", &mut refs);
    refs.iter().any(|(r, _)| !doc.agents.contains_key(r))
}

/// Every agent `steps` and their sub-steps name (`agent:`, a judge join's `judge:`), with the
/// field path that names it.
fn agent_refs(steps: &[Step], list: &str, out: &mut Vec<(String, String)>) {
    for (i, s) in steps.iter().enumerate() {
        let path = format!("{list}[{i}]");
        match &s.kind {
            StepKind::Agent(a) => out.push((a.agent.clone(), format!("{path}.agent"))),
            StepKind::Parallel(p) => {
                if let Some(judge) = p.join.as_ref().and_then(|j| j.judge.as_ref()) {
                    out.push((judge.clone(), format!("{path}.join.judge")));
                }
            }
            _ => {}
        }
        let field = match &s.kind {
            StepKind::Parallel(_) => "parallel",
            _ => "steps",
        };
        agent_refs(s.children(), &format!("{path}.{field}"), out);
    }
}

/// The spec's fields as JSON, for a field-by-field diff.
fn spec_fields(spec: &AgentSpec) -> serde_json::Map<String, Value> {
    match serde_json::to_value(spec) {
        Ok(Value::Object(m)) => m,
        _ => serde_json::Map::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: AgentRef = "coder@3".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.name.as_str(), r.version), ("coder", Some(3)));
        assert_eq!(r.to_string(), "coder@3");
        for bad in ["", "x@", "x@0", "a b", "x@1@2"] {
            let e = bad.parse::<AgentRef>().unwrap_err();
            assert!(
                e.to_string().contains("agent") || e.to_string().contains('@'),
                "{e}"
            );
        }
    }
}
