//! Editing a paused run's state (the debugger's "edit, then continue"): a finished step's
//! output or a key of the shared state, each checked against the workflow as a fork's edits
//! are, then logged as `state_edited` (the fold applies it; the next step's templates see it).
//! Only while the run is paused; queued for the process holding it, or applied here.

use baton_types::EditTarget;

use super::fork::check_edit;
use super::*;

/// Why a paused run cannot set the output of a step that has not finished.
const RUN_UNFINISHED: &str = "yet (it has not finished: it runs when the run continues)";

impl Control {
    /// Applies `edits` to `run`'s state, in order. Authorized as operating a run; another
    /// tenant's run is not found; a run that is not paused is a conflict; every edit is
    /// checked before anything is logged.
    pub async fn edit_run(
        &self,
        caller: &Caller,
        run: &str,
        edits: Vec<(EditTarget, Value)>,
    ) -> Result<ControlOutcome> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, "run.edit", Some(&object), e).await);
        }
        if edits.is_empty() {
            return Err(Error::invalid_field(
                "set",
                "name at least one edit, as in state.KEY or steps.ID.output to a JSON value",
            ));
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        if st.status.is_terminal() || st.pause.is_none() {
            return Err(Error::conflict(format!(
                "run {} is {}, not paused: its state is edited only while it is paused (pause it, or start it with breakpoints)",
                rec.id, st.status
            )));
        }
        for (target, value) in &edits {
            if let EditTarget::Input { .. } = target {
                return Err(Error::invalid_field(
                    "set",
                    format!(
                        "{target}: a run's inputs do not change once it started; fork it with the input set (`baton runs fork --set {target}=...`)"
                    ),
                ));
            }
            check_edit(&program, &st, target, value, RUN_UNFINISHED)?;
        }
        let set: Vec<String> = edits.iter().map(|(t, _)| t.to_string()).collect();
        let by = Some(caller.key_id.clone());
        let outcome = if self.held_elsewhere(rec.id).await? {
            let c = StoreControl::Edit { edits, by };
            self.services.store.send_control(rec.id, c).await?;
            ControlOutcome::Queued
        } else {
            let st = self
                .publishing_executor(program, rec.tenant.clone())
                .drive(st, vec![Input::Edit { edits, by }])
                .await?;
            ControlOutcome::Applied(st.status)
        };
        let details = json!({"set": set, "queued": outcome == ControlOutcome::Queued});
        self.record(caller, "run.edit", Some(&object), Outcome::Ok, details)
            .await?;
        Ok(outcome)
    }
}
