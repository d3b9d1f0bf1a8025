//! Team memory as people see it: a workflow's shared keys (their values, versions and the
//! history of every write) and a search of its semantic memories by meaning. Reading only;
//! agents write through the `memory.*` tools. Everything is scoped by the caller's tenant:
//! another tenant's workflow of the same name has other memories.

use std::sync::Arc;

use baton_memory::{Hit, Memory};
use baton_store::KvEntry;

use crate::error::{Error, Result};
use crate::{Caller, Control, Permission};

/// Most memories one recall returns.
pub const MAX_K: usize = 100;

fn memory_error(e: baton_memory::Error) -> Error {
    match e {
        baton_memory::Error::Store(s) => s.into(),
        baton_memory::Error::Embedding(message) => Error::Unavailable { message },
        baton_memory::Error::Invalid(m) => Error::invalid(m),
        baton_memory::Error::OtherModel(message) => Error::Conflict { message },
    }
}

fn check_workflow(workflow: &str) -> Result<()> {
    if workflow.trim().is_empty() {
        return Err(Error::invalid_field(
            "workflow",
            "the workflow name is empty",
        ));
    }
    Ok(())
}

impl Control {
    /// Team memory over the same database (`None` until the composition root sets it).
    pub fn with_memory(mut self, memory: Arc<Memory>) -> Self {
        self.memory = Some(memory);
        self
    }

    fn memory(&self) -> Result<&Arc<Memory>> {
        self.memory.as_ref().ok_or_else(|| Error::Unavailable {
            message: "team memory is not configured in this process".into(),
        })
    }

    /// The embedding model of team memory in this process (`local/all-MiniLM-L6-v2` or
    /// `provider/model`), when team memory is configured.
    pub fn memory_model(&self) -> Option<&str> {
        self.memory.as_ref().map(|m| m.embeddings().name())
    }

    /// The workflow's shared keys starting with `prefix`, by key.
    pub async fn memory_list(
        &self,
        caller: &Caller,
        workflow: &str,
        prefix: &str,
    ) -> Result<Vec<KvEntry>> {
        caller.check(Permission::Read)?;
        check_workflow(workflow)?;
        let store = self.memory()?.store();
        Ok(store.kv_list(&caller.tenant, workflow, prefix).await?)
    }

    /// A shared key's current value and version.
    pub async fn memory_get(&self, caller: &Caller, workflow: &str, key: &str) -> Result<KvEntry> {
        caller.check(Permission::Read)?;
        check_workflow(workflow)?;
        let store = self.memory()?.store();
        store
            .kv_get(&caller.tenant, workflow, key)
            .await?
            .ok_or_else(|| {
                Error::not_found(format!("no memory key '{key}' in workflow {workflow}"))
            })
    }

    /// Every write to a shared key, oldest first.
    pub async fn memory_history(
        &self,
        caller: &Caller,
        workflow: &str,
        key: &str,
    ) -> Result<Vec<KvEntry>> {
        caller.check(Permission::Read)?;
        check_workflow(workflow)?;
        let store = self.memory()?.store();
        let all = store.kv_history(&caller.tenant, workflow, key).await?;
        if all.is_empty() {
            return Err(Error::not_found(format!(
                "no memory key '{key}' in workflow {workflow}"
            )));
        }
        Ok(all)
    }

    /// Embeds again, with this process's embedding model, the semantic memories another model
    /// embedded: a workflow's (`run` = `None`) or one run's own. Returns how many.
    pub async fn memory_reembed(
        &self,
        caller: &Caller,
        workflow: &str,
        run: Option<&str>,
    ) -> Result<usize> {
        caller.check(Permission::EditWorkflows)?;
        let ns = match run {
            Some(id) => {
                // The run must be the caller's tenant's (another tenant's is "not found").
                let rec = self.find_run(caller, id).await?;
                baton_memory::run_namespace(&rec.id.to_string())
            }
            None => {
                check_workflow(workflow)?;
                baton_memory::workflow_namespace(workflow)
            }
        };
        self.memory()?
            .reembed(&caller.tenant, &ns)
            .await
            .map_err(memory_error)
    }

    /// The `k` semantic memories of the workflow closest in meaning to `query`.
    pub async fn memory_recall(
        &self,
        caller: &Caller,
        workflow: &str,
        query: &str,
        k: usize,
    ) -> Result<Vec<Hit>> {
        caller.check(Permission::Read)?;
        check_workflow(workflow)?;
        if !(1..=MAX_K).contains(&k) {
            return Err(Error::invalid_field(
                "k",
                format!("k must be from 1 to {MAX_K}"),
            ));
        }
        let ns = baton_memory::workflow_namespace(workflow);
        self.memory()?
            .recall(&caller.tenant, &ns, query, k)
            .await
            .map_err(memory_error)
    }
}
