//! Stored workflows: a name per tenant, each update a new immutable version, any version
//! pinned with `name@3`, soft delete. A document is validated with every diagnostic before
//! it is stored; its `name:` must be the name it is stored under.

use std::str::FromStr;

use baton_engine::load;
use baton_store::{NewWorkflowVersion, WorkflowFormat, WorkflowRecord, WorkflowWrite};
use serde::Serialize;
use serde_json::json;

use crate::audit::Outcome;
use crate::error::{Error, Result};
use crate::{Caller, Control, Diagnostic, Permission};

/// `name` or `name@version`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WorkflowRef {
    pub name: String,
    pub version: Option<u32>,
}

impl FromStr for WorkflowRef {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        let (name, version) = split_ref(s, "workflow")?;
        Ok(Self { name, version })
    }
}

/// `name` or `name@version` of a `what` (a workflow, an agent): the name checked, the version
/// a number from 1.
pub(crate) fn split_ref(s: &str, what: &str) -> Result<(String, Option<u32>)> {
    let (name, version) = match s.rsplit_once('@') {
        Some((n, v)) => {
            let v: u32 = v.parse().ok().filter(|v| *v > 0).ok_or_else(|| {
                Error::invalid_field(
                    what,
                    format!("'{s}': the version after '@' must be a number from 1"),
                )
            })?;
            (n, Some(v))
        }
        None => (s, None),
    };
    check_name(name, what)?;
    Ok((name.to_string(), version))
}

impl std::fmt::Display for WorkflowRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.version {
            Some(v) => write!(f, "{}@{v}", self.name),
            None => f.write_str(&self.name),
        }
    }
}

/// Workflow and agent names: 1-100 characters of letters, digits, `-`, `_` and `.`.
pub(crate) fn check_name(name: &str, what: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid_field(
            "name",
            format!("'{name}' is not a {what} name: use 1-100 letters, digits, '-', '_' or '.'"),
        ))
    }
}

/// A stored workflow in a listing.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct WorkflowInfo {
    pub name: String,
    pub latest: u32,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

/// One version of a stored workflow.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkflowVersion {
    pub name: String,
    pub version: u32,
    pub latest: u32,
    pub format: WorkflowFormat,
    pub source: String,
    pub created_at_ms: i64,
    pub created_by: Option<String>,
    /// Problems that would stop its runs' first model calls here (warnings; absent when none).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<Diagnostic>,
}

impl WorkflowVersion {
    fn of(w: WorkflowRecord, warnings: Vec<Diagnostic>) -> Self {
        Self {
            name: w.name,
            version: w.version,
            latest: w.latest,
            format: w.format,
            source: w.source,
            created_at_ms: w.created_at_ms,
            created_by: w.created_by,
            warnings,
        }
    }
}

/// JSON when the document starts with `{`, else YAML.
pub(crate) fn format_of(text: &str) -> WorkflowFormat {
    if text.trim_start().starts_with('{') {
        WorkflowFormat::Json
    } else {
        WorkflowFormat::Yaml
    }
}

impl Control {
    /// Validates `text` (every diagnostic) and stores it as version 1 of its `name:`
    /// (`Conflict` when that name exists) or as the next version (`update`; `NotFound` when it
    /// does not). `file` names the document in diagnostics.
    async fn put_workflow(
        &self,
        caller: &Caller,
        file: &str,
        text: &str,
        write: WorkflowWrite,
        expect_name: Option<&str>,
    ) -> Result<WorkflowVersion> {
        let action = match write {
            WorkflowWrite::Create => "workflow.create",
            WorkflowWrite::Update => "workflow.update",
        };
        if let Err(e) = caller.check(Permission::EditWorkflows) {
            return Err(self.denied(caller, action, None, e).await);
        }
        let warnings = self.validate(caller, file, text).await?;
        let loaded = load::load_bytes(file, text.as_bytes())
            .map_err(|_| Error::internal("a validated document no longer loads"))?;
        let name = loaded.doc.name.clone();
        check_name(&name, "workflow")?;
        if let Some(want) = expect_name
            && want != name
        {
            return Err(Error::invalid_field(
                "name",
                format!("the document is named '{name}', not '{want}': a workflow keeps its name"),
            ));
        }
        let rec = self
            .tenancy
            .put_workflow(
                NewWorkflowVersion {
                    tenant: caller.tenant.clone(),
                    name: name.clone(),
                    source: text.to_string(),
                    format: format_of(text),
                    created_at_ms: baton_store::now_ms(),
                    created_by: Some(caller.key_id.clone()),
                },
                write,
            )
            .await?;
        let object = format!("workflow/{name}@{}", rec.version);
        self.record(
            caller,
            action,
            Some(&object),
            Outcome::Ok,
            json!({"version": rec.version}),
        )
        .await?;
        Ok(WorkflowVersion::of(rec, warnings))
    }

    /// Stores a new workflow (YAML or JSON) as version 1.
    pub async fn create_workflow(
        &self,
        caller: &Caller,
        file: &str,
        text: &str,
    ) -> Result<WorkflowVersion> {
        self.put_workflow(caller, file, text, WorkflowWrite::Create, None)
            .await
    }

    /// Stores the next version of workflow `name` (the document must keep the name).
    pub async fn update_workflow(
        &self,
        caller: &Caller,
        name: &str,
        file: &str,
        text: &str,
    ) -> Result<WorkflowVersion> {
        check_name(name, "workflow")?;
        self.put_workflow(caller, file, text, WorkflowWrite::Update, Some(name))
            .await
    }

    /// The tenant's workflows, by name.
    pub async fn list_workflows(&self, caller: &Caller) -> Result<Vec<WorkflowInfo>> {
        caller.check(Permission::Read)?;
        Ok(self
            .tenancy
            .workflows(&caller.tenant)
            .await?
            .into_iter()
            .map(|w| WorkflowInfo {
                name: w.name,
                latest: w.latest,
                created_at_ms: w.created_at_ms,
                updated_at_ms: w.updated_at_ms,
            })
            .collect())
    }

    pub(crate) async fn stored_workflow(
        &self,
        caller: &Caller,
        r: &WorkflowRef,
    ) -> Result<WorkflowRecord> {
        caller.check(Permission::Read)?;
        self.tenancy
            .workflow(&caller.tenant, &r.name, r.version)
            .await?
            .ok_or_else(|| match r.version {
                Some(v) => Error::not_found(format!("no version {v} of workflow {}", r.name)),
                None => Error::not_found(format!("no workflow {}", r.name)),
            })
    }

    /// A version of a workflow (its latest unless pinned).
    pub async fn get_workflow(&self, caller: &Caller, r: &WorkflowRef) -> Result<WorkflowVersion> {
        Ok(WorkflowVersion::of(
            self.stored_workflow(caller, r).await?,
            Vec::new(),
        ))
    }

    /// Deletes a workflow (soft: its versions are kept, runs keep their own copy).
    pub async fn delete_workflow(&self, caller: &Caller, name: &str) -> Result<()> {
        let object = format!("workflow/{name}");
        if let Err(e) = caller.check(Permission::EditWorkflows) {
            return Err(self
                .denied(caller, "workflow.delete", Some(&object), e)
                .await);
        }
        check_name(name, "workflow")?;
        self.tenancy
            .delete_workflow(&caller.tenant, name, baton_store::now_ms())
            .await?;
        self.record(
            caller,
            "workflow.delete",
            Some(&object),
            Outcome::Ok,
            serde_json::Value::Null,
        )
        .await?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_parse() {
        let r: WorkflowRef = "hello@3".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!((r.name.as_str(), r.version), ("hello", Some(3)));
        assert_eq!(r.to_string(), "hello@3");
        let r: WorkflowRef = "a.b-c_d".parse().unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(r.version, None);
        for bad in ["", "x@", "x@0", "x@-1", "x@y", "a b", "../x", "x@1@2"] {
            assert!(bad.parse::<WorkflowRef>().is_err(), "{bad}");
        }
    }
}
