//! Whole-run recordings (docs/recordings.md): a run executed again from its own log, and two
//! runs side by side. Thin over `Control::replay_run` and `Control::compare_runs`.

use super::*;
use baton_control::{ReplayMode, ReplayReport, RunComparison};

#[derive(Deserialize, JsonSchema, Default)]
#[serde(deny_unknown_fields)]
pub(super) struct ReplayBody {
    /// Take only the model replies from the recording: tools and sandboxes really run, in a
    /// new run (`replay_run` in the answer). Default false: nothing is called or written.
    #[serde(default)]
    live_tools: bool,
}

pub(super) async fn replay_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<ReplayBody>,
) -> Out<ReplayReport> {
    let mode = if b.live_tools {
        ReplayMode::LiveTools
    } else {
        ReplayMode::Recorded
    };
    ok(s.control.replay_run(&c, &id, mode).await?)
}

/// `/runs/{id}/compare/{other}`.
#[derive(Deserialize, JsonSchema)]
pub(super) struct ComparePath {
    /// Run A: its id or a unique prefix of it.
    id: String,
    /// Run B.
    other: String,
}

pub(super) async fn compare_runs(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(ComparePath { id, other }): Path<ComparePath>,
) -> Out<RunComparison> {
    ok(s.control.compare_runs(&c, &id, &other).await?)
}
