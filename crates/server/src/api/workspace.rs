//! A run's workspace (docs/workspace.md): its history, what a step changed, and putting the
//! files back as before a step. Thin over the `workspace_*` use cases.

use super::*;
use baton_control::workspace::{RolledBack, WorkspaceLog};

pub(super) async fn workspace_log(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<WorkspaceLog> {
    ok(s.control.workspace_log(&c, &id).await?)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct DiffQuery {
    /// Only what this step changed (every visit of it); without it, every change of the run.
    step: Option<String>,
}

/// A unified diff.
#[derive(Serialize, JsonSchema)]
pub(super) struct WorkspaceDiff {
    diff: String,
}

pub(super) async fn workspace_diff(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Params(q): Params<DiffQuery>,
) -> Out<WorkspaceDiff> {
    let diff = s.control.workspace_diff(&c, &id, q.step.as_deref()).await?;
    ok(WorkspaceDiff { diff })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct RollbackBody {
    /// The files are put back exactly as they were before this step first changed them.
    step: String,
}

pub(super) async fn workspace_rollback(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<RollbackBody>,
) -> Out<RolledBack> {
    ok(s.control.workspace_rollback(&c, &id, &b.step).await?)
}
