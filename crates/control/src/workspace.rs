//! A run's workspace as people look at it: its history (one commit per change, with the step
//! and agent), what a step changed, putting the files back as before a step, and copying them
//! out. The files themselves are changed by agents through the `workspace.*` tools.

use std::path::Path;
use std::sync::Arc;

use baton_tools::workspace::{Author, Change, Workspace, Workspaces, history};
use serde::Serialize;
use serde_json::json;

use crate::Control;
use crate::audit::Outcome;
use crate::caller::{Caller, Permission};
use crate::error::{Error, Result};

/// A run's workspace history, oldest change first.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct WorkspaceLog {
    pub run: String,
    /// Where the files are on the host running Baton.
    pub dir: String,
    pub changes: Vec<ChangeView>,
}

#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ChangeView {
    pub commit: String,
    pub step: Option<String>,
    pub agent: Option<String>,
    pub summary: String,
    pub time_ms: i64,
}

impl From<Change> for ChangeView {
    fn from(c: Change) -> Self {
        Self {
            commit: c.commit,
            step: c.step,
            agent: c.agent,
            summary: c.summary,
            time_ms: c.time_ms,
        }
    }
}

/// What [`Control::workspace_rollback`] did.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RolledBack {
    pub run: String,
    pub step: String,
    /// The commit that put the files back (`None`: they already were).
    pub commit: Option<String>,
}

fn failed(e: history::Error) -> Error {
    match e {
        history::Error::NotFound(m) => Error::not_found(m),
        history::Error::Refused(r) => Error::invalid(r.to_string()),
        history::Error::History(m) => Error::internal(format!("the workspace history: {m}")),
        other => Error::invalid(other.to_string()),
    }
}

impl Control {
    /// The workspaces the `workspace.*` tools write to (set by the composition root).
    pub fn with_workspaces(mut self, workspaces: Arc<Workspaces>) -> Self {
        self.workspaces = Some(workspaces);
        self
    }

    /// `run`'s workspace (checked: the caller may read the run); not found when the run
    /// never wrote a file.
    async fn workspace_of(&self, caller: &Caller, run: &str) -> Result<(String, Workspace)> {
        let rec = self.find_run(caller, run).await?;
        self.workspace_for(&rec)
    }

    /// The workspace of a run already found.
    fn workspace_for(&self, rec: &baton_store::RunRecord) -> Result<(String, Workspace)> {
        let all = self.workspaces.as_ref().ok_or_else(|| Error::Unavailable {
            message: "this process has no workspaces configured".into(),
        })?;
        let id = rec.id.to_string();
        match all.existing(&id).map_err(failed)? {
            Some(ws) => Ok((id, ws)),
            None => Err(Error::not_found(format!(
                "run {id} has no workspace: none of its steps wrote a file with the workspace.* tools"
            ))),
        }
    }

    /// The history of `run`'s workspace.
    pub async fn workspace_log(&self, caller: &Caller, run: &str) -> Result<WorkspaceLog> {
        let (id, ws) = self.workspace_of(caller, run).await?;
        let changes = ws.log().map_err(failed)?;
        Ok(WorkspaceLog {
            dir: ws.files().path().display().to_string(),
            run: id,
            changes: changes.into_iter().map(ChangeView::from).collect(),
        })
    }

    /// The unified diff of what `step` changed in `run`'s workspace (all of its changes, in
    /// every visit), or of the whole run when `step` is `None`.
    pub async fn workspace_diff(
        &self,
        caller: &Caller,
        run: &str,
        step: Option<&str>,
    ) -> Result<String> {
        let (_, ws) = self.workspace_of(caller, run).await?;
        ws.diff(step).map_err(failed)
    }

    /// Puts `run`'s files back exactly as they were before `step` first changed them, as a
    /// new change (the history keeps everything). Authorized as operating a run, audited
    /// (`run.rollback`); refused while a process is running the run.
    pub async fn workspace_rollback(
        &self,
        caller: &Caller,
        run: &str,
        step: &str,
    ) -> Result<RolledBack> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, "run.rollback", Some(&object), e).await);
        }
        let (id, ws) = self.workspace_for(&rec)?;
        if rec.status == baton_types::RunStatus::Running && self.held_elsewhere(rec.id).await? {
            return Err(Error::conflict(format!(
                "run {id} is running: pause it (`baton runs pause {id}`) before rolling its files back"
            )));
        }
        let author = Author {
            run: id.clone(),
            step: format!("rollback-{step}"),
            agent: None,
            key: String::new(),
        };
        let _held = match &self.workspaces {
            Some(all) => Some(all.lock(&id).await),
            None => None,
        };
        let commit = ws.rollback_before(step, &author).map_err(failed)?;
        self.record(
            caller,
            "run.rollback",
            Some(&object),
            Outcome::Ok,
            json!({"step": step, "commit": commit}),
        )
        .await?;
        Ok(RolledBack {
            run: id,
            step: step.to_string(),
            commit,
        })
    }

    /// Copies the files of `run`'s workspace, as last committed, into `dest` (new or empty);
    /// the number of files.
    pub async fn workspace_export(&self, caller: &Caller, run: &str, dest: &Path) -> Result<usize> {
        let (_, ws) = self.workspace_of(caller, run).await?;
        ws.export(dest).map_err(failed)
    }
}
