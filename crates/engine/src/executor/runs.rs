//! Runs in the store: creating one (with its first event) and rebuilding a run's state from
//! its checkpoint and the events after it.

use std::path::Path;

use baton_store::{Checkpoint, NewRun};
use baton_types::{Event, EventRecord, RunId};
use serde_json::Value;

use super::{Error, Services};
use crate::machine::{Machine, RunOptions, RunState};
use crate::program::Program;

/// Creates a run in the store.
pub async fn create_run(
    services: &Services,
    program: &Program,
    source: &str,
    path: Option<&Path>,
    inputs: Value,
    options: &RunOptions,
) -> Result<RunId, Error> {
    let id = RunId::new();
    let now = baton_store::now_ms();
    // The run and its first event in one write.
    services
        .store
        .create_run(NewRun {
            id,
            workflow_name: program.doc.name.clone(),
            workflow_source: source.to_string(),
            workflow_path: path.map(|p| p.display().to_string()),
            inputs,
            options: serde_json::to_value(options).unwrap_or(Value::Null),
            created_at_ms: now,
            events: vec![EventRecord {
                run_id: id,
                seq: 1,
                at_ms: now,
                // The store keeps the inputs once, in the run's row, and gives them back
                // with this event.
                event: Event::RunCreated {
                    workflow: program.doc.name.clone(),
                    inputs: Value::Null,
                    forked_from: None,
                },
            }],
            tenant: baton_types::TenantId::default(),
            started_by: None,
            idempotency: None,
        })
        .await?;
    Ok(id)
}

/// Rebuilds a run's state from its checkpoint and the events after it.
pub async fn load_state(
    services: &Services,
    program: &Program,
    run: RunId,
) -> Result<RunState, Error> {
    let rec = services
        .store
        .run(run)
        .await?
        .ok_or(baton_store::Error::NotFound(run))?;
    let options: RunOptions = serde_json::from_value(rec.options.clone()).unwrap_or_default();
    let machine = Machine::new(program);
    let (mut st, after) = match services.store.checkpoint(run).await? {
        Some(Checkpoint { seq, state }) => {
            let mut st: RunState = serde_json::from_str(&state).map_err(|e| Error::State {
                run,
                message: e.to_string(),
            })?;
            // Checkpoints leave the inputs to the run's row (see `Executor`'s checkpoint).
            if st.inputs.is_null() {
                st.inputs = rec.inputs;
            }
            (st, seq)
        }
        None => (RunState::new(run, rec.inputs, program, &options), 0),
    };
    for ev in services.store.events(run, after).await? {
        // At the time it was logged (see `Executor::drive`).
        machine.set_now(ev.at_ms);
        machine.apply(&mut st, &ev.event);
        st.last_seq = ev.seq;
    }
    Ok(st)
}
