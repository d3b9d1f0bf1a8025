//! Time travel and the debugger: fork a run from a point of its log, edit the state of a
//! paused run before it continues, and change the steps a live run pauses before.

use super::runs::{Applied, RunStarted, outcome};
use super::*;
use baton_types::EditTarget;

/// The `set` of a request (`steps.ID.output`, `state.KEY`, `inputs.NAME` to JSON values), in
/// order, or a 422 naming the bad path.
fn edits_of(set: Map<String, Value>) -> Result<Vec<(EditTarget, Value)>, baton_control::Error> {
    set.into_iter()
        .map(|(path, value)| {
            let target = path
                .parse()
                .map_err(|e| baton_control::Error::invalid_field("set", format!("set: {e}")))?;
            Ok((target, value))
        })
        .collect()
}

/// Where to fork a run, and what to change in the fork. Exactly one of `at`, `before`,
/// `after`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ForkBody {
    /// Copy the run's log up to and including this event (its seq).
    at: Option<u64>,
    /// Fork just before this step first started: it runs again in the fork.
    before: Option<String>,
    /// Fork just after this step first succeeded.
    after: Option<String>,
    /// Changes to the state where the fork starts: `steps.<id>.output` (a step finished by
    /// then), `state.<key>` or `inputs.<name>`, each to a JSON value.
    #[serde(default)]
    set: Map<String, Value>,
    /// Agents that call another model in the fork: agent name -> model reference.
    #[serde(default)]
    models: std::collections::BTreeMap<String, String>,
}

pub(super) async fn fork_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<ForkBody>,
) -> Made<RunStarted> {
    use baton_control::{Cut, Error};
    let cut = match (b.at, b.before, b.after) {
        (Some(seq), None, None) => Cut::At(seq),
        (None, Some(step), None) => Cut::Before(step),
        (None, None, Some(step)) => Cut::After(step),
        _ => {
            return Err(Error::invalid_field(
                "at",
                "give exactly one of `at` (an event's seq), `before` or `after` (a step)",
            )
            .into());
        }
    };
    let req = baton_control::ForkRequest {
        cut,
        edits: edits_of(b.set)?,
        models: b.models.into_iter().collect(),
    };
    let forked = s.control.fork_run(&c, &id, req).await?;
    let run = forked.run;
    drop(s.control.spawn(forked.drive));
    created(RunStarted {
        id: run.to_string(),
        reused: false,
        url: format!("/api/v1/runs/{run}"),
    })
}

/// What to change in a paused run's state.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EditBody {
    /// Changes, applied in order: `steps.<id>.output` (a step that finished) or `state.<key>`,
    /// each to a JSON value.
    set: Map<String, Value>,
}

pub(super) async fn edit_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<EditBody>,
) -> Out<Applied> {
    let done = s.control.edit_run(&c, &id, edits_of(b.set)?).await?;
    ok(outcome(done))
}

pub(super) async fn change_breakpoints(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<baton_types::BreakpointChange>,
) -> Out<baton_control::runs::BreakpointsChanged> {
    ok(s.control.change_breakpoints(&c, &id, b).await?)
}
