//! The debugger's breakpoints on a live run: the steps it pauses before, changed while it runs
//! or while it is stopped. Every id is checked against the run's workflow; the change is
//! queued for the process holding the run, or logged here (`breakpoints_set`) when none does,
//! so a replay after a crash keeps it.

use baton_types::{BreakpointChange, PauseReason};

use super::*;

/// Where a run's debugger stands: the steps it pauses before, whether it pauses before every
/// step, and why it is paused now (`reason: breakpoint` names the step it stopped before).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct DebugView {
    pub breakpoints: Vec<String>,
    pub stepping: bool,
    pub paused: Option<PauseReason>,
}

impl DebugView {
    pub fn of(st: &RunState) -> DebugView {
        DebugView {
            breakpoints: st.breakpoints.iter().cloned().collect(),
            stepping: st.stepping,
            paused: st.pause.clone(),
        }
    }
}

/// What [`Control::change_breakpoints`] did: the run's breakpoints once the change applies.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BreakpointsChanged {
    pub run: String,
    #[serde(flatten)]
    pub debug: DebugView,
    /// A process drives the run: the change is queued for it (applied within a moment).
    pub queued: bool,
}

impl Control {
    /// Changes the steps `run` pauses before. Authorized as operating a run; another tenant's
    /// run is not found; a finished run is a conflict; an id the workflow does not have is
    /// invalid (the message lists its steps) and nothing changes.
    pub async fn change_breakpoints(
        &self,
        caller: &Caller,
        run: &str,
        change: BreakpointChange,
    ) -> Result<BreakpointsChanged> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self
                .denied(caller, "run.breakpoints", Some(&object), e)
                .await);
        }
        if change.is_empty() {
            return Err(Error::invalid_field(
                "breakpoints",
                "name a change: step ids to `add` or `remove`, or the whole `set`",
            ));
        }
        let program = Arc::new(self.program(&rec)?);
        if let Some(unknown) = change.ids().find(|id| program.node_by_id(id).is_none()) {
            let steps: Vec<&str> = program.nodes.iter().map(|n| n.id.as_str()).collect();
            return Err(Error::invalid_field(
                "breakpoints",
                format!(
                    "run {}'s workflow has no step '{unknown}' (steps: {})",
                    rec.id,
                    steps.join(", ")
                ),
            ));
        }
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        if st.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is already {}: it has no step left to pause before",
                rec.id, st.status
            )));
        }
        let by = Some(caller.key_id.clone());
        let queued = self.held_elsewhere(rec.id).await?;
        let debug = if queued {
            let breakpoints = change.applied_to(&st.breakpoints);
            let c = StoreControl::Breakpoints {
                change: change.clone(),
                by,
            };
            self.services.store.send_control(rec.id, c).await?;
            DebugView {
                breakpoints: breakpoints.into_iter().collect(),
                ..DebugView::of(&st)
            }
        } else {
            DebugView::of(
                &self
                    .publishing_executor(program, rec.tenant.clone())
                    .change_breakpoints(st, change.clone(), by)
                    .await?,
            )
        };
        let details = json!({
            "change": change,
            "breakpoints": debug.breakpoints,
            "queued": queued,
        });
        self.record(
            caller,
            "run.breakpoints",
            Some(&object),
            Outcome::Ok,
            details,
        )
        .await?;
        Ok(BreakpointsChanged {
            run: rec.id.to_string(),
            debug,
            queued,
        })
    }
}
