//! Replaying a run from its own log (`baton runs replay`): the run's recorded program (its
//! frozen document, with the registry agents pinned at its start) is driven from scratch by a
//! fresh state machine, every effect served from the recording (see
//! [`baton_engine::replay`]); each event is compared with the recording as it is written,
//! and the final state with the recorded one.
//!
//! A replay writes nothing to the run: it runs under the run's own id in a scratch store in
//! memory, and no model, tool or sandbox is called. With `live_tools` the model replies still
//! come from the recording but tools and sandboxes really run: that writes effects (files,
//! commands), so it is a new run of the caller's tenant, logged as forked from the original
//! at its creation events, and the report names it. A fork replays from where it was forked:
//! the events it was created with (its parent's, copied, and its edits) are folded, the rest
//! is driven and compared.
//!
//! What a person did while the run was stopped (answers to `human` steps, resolutions,
//! raised budgets, resumes, edits, breakpoints, agent controls, a cancel) is fed again each
//! time the replay stops, in the recorded order.

use std::time::Instant;

use baton_engine::replay::{self, Check, Divergence, Recording, StateDifference};
use baton_engine::{EventSink, Machine, Services};
use baton_store::memory::MemoryStore;
use baton_types::{ForkOrigin, RunStatus};

use super::*;

/// How a replay gets the results of effects.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReplayMode {
    /// Every result from the recording: nothing is called, nothing is written.
    #[default]
    Recorded,
    /// Model replies from the recording; tools and sandboxes really run, in a new run.
    LiveTools,
}

/// Whether a replay reached the recorded run's state.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Verdict {
    /// Every event matched and the final state is the recorded one.
    Identical,
    /// An event differed (see `divergence`) or the final state did (`differences`).
    Diverged,
}

/// What a replay did and found.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct ReplayReport {
    /// The run replayed.
    pub run: RunId,
    pub mode: ReplayMode,
    /// The new run that holds a `live_tools` replay (absent: nothing was stored).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub replay_run: Option<RunId>,
    pub verdict: Verdict,
    /// The recorded run's status, and the status the replay ended in.
    pub recorded_status: RunStatus,
    pub status: RunStatus,
    /// Step attempts the replay ran.
    pub steps: u64,
    /// Results served from the recording (model replies, tool results, tool steps' results).
    pub effects: u64,
    /// Events of the replay that matched the recording.
    pub events_matched: u64,
    /// Events of the recording compared (those a process taking the run logs are left out).
    pub events_recorded: u64,
    pub elapsed_ms: f64,
    /// The first event that differed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub divergence: Option<Divergence>,
    /// How the final state differs from the recorded one (empty: identical).
    pub differences: Vec<StateDifference>,
}

/// Compares the replay's events as they are logged; stops the replay at the first divergence.
struct CheckSink {
    check: std::sync::Mutex<Check>,
    stop: tokio::sync::watch::Sender<bool>,
    steps: std::sync::atomic::AtomicU64,
}

impl CheckSink {
    fn lock(&self) -> std::sync::MutexGuard<'_, Check> {
        self.check.lock().unwrap_or_else(|p| p.into_inner())
    }
}

impl EventSink for CheckSink {
    fn publish(&self, ev: &EventRecord) {
        if matches!(ev.event, Event::StepStarted { .. }) {
            self.steps
                .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        }
        if !self.lock().observe(ev) {
            self.stop.send_replace(true);
        }
    }
}

/// The events a run was created with (before any process took it): copied, not replayed.
fn creation_len(evs: &[EventRecord]) -> usize {
    evs.iter()
        .take_while(|r| {
            matches!(
                r.event,
                Event::RunCreated { .. } | Event::AgentsResolved { .. }
            )
        })
        .count()
}

/// What a person did while the run was stopped, as the inputs that do it again: one group per
/// stop, in the recorded order.
fn person_groups(evs: &[EventRecord]) -> Vec<Vec<Input>> {
    let mut groups: Vec<Vec<Input>> = Vec::new();
    let mut open = false;
    for r in evs {
        let input = match r.event.clone() {
            Event::HumanResponded {
                step,
                approved,
                value,
                comment,
                by,
            } => Input::Human {
                step,
                approved,
                value,
                comment,
                by,
            },
            Event::StepResolved {
                step,
                resolution,
                value,
                by,
            } => Input::Resolve {
                step,
                resolution,
                value,
                by,
            },
            Event::BudgetRaised { changes, by } => Input::RaiseBudget { changes, by },
            Event::BreakpointsSet { breakpoints, by } => Input::Breakpoints {
                change: baton_types::BreakpointChange {
                    set: Some(breakpoints),
                    ..Default::default()
                },
                by,
            },
            Event::Resumed { stepping } => Input::Resume { stepping },
            Event::StateEdited { target, value, by } => Input::Edit {
                edits: vec![(target, value)],
                by,
            },
            Event::AgentControlled { agent, action, by } => Input::Agent { agent, action, by },
            Event::CancelRequested => Input::Cancel,
            Event::Paused {
                pause: baton_types::PauseReason::User,
            } => Input::Pause,
            // Taking the run does not end a group.
            Event::RunStarted { .. } => continue,
            _ => {
                open = false;
                continue;
            }
        };
        match groups.last_mut() {
            Some(g) if open => g.push(input),
            _ => groups.push(vec![input]),
        }
        open = true;
    }
    groups
}

impl Control {
    /// Replays `run` (see the module doc). Reading the run is enough for a recorded replay; a
    /// `live_tools` replay starts a run, and is authorized and audited as one.
    pub async fn replay_run(
        &self,
        caller: &Caller,
        run: &str,
        mode: ReplayMode,
    ) -> Result<ReplayReport> {
        let rec = self.find_run(caller, run).await?;
        if mode == ReplayMode::LiveTools
            && let Err(e) = caller.check(Permission::StartRuns)
        {
            let object = format!("run/{}", rec.id);
            return Err(self.denied(caller, "run.replay", Some(&object), e).await);
        }
        let evs = self.services.store.events(rec.id, 0).await?;
        let program = Arc::new(self.program(&rec)?);
        let created = match evs.first().map(|r| &r.event) {
            Some(Event::RunCreated {
                forked_from: Some(from),
                ..
            }) => {
                let parent = self.services.store.events(from.run, 0).await?;
                fork_creation_len(&program, &parent, from, &evs).ok_or_else(|| {
                    Error::invalid_field(
                        "run",
                        format!(
                            "run {} is a fork of run {} at event {}, and its first events are not that run's as the fork copied them: replay run {} instead",
                            rec.id, from.run, from.seq, from.run
                        ),
                    )
                })?
            }
            _ => creation_len(&evs),
        };
        let recording = Recording::new(&evs, mode == ReplayMode::LiveTools)
            .map_err(|e| Error::invalid(format!("run {}: {e}", rec.id)))?;
        let recording = Arc::new(recording);
        let options: RunOptions = serde_json::from_value(rec.options.clone()).unwrap_or_default();
        let started = Instant::now();

        // Where the replay runs: a scratch store under the same id, or a new run.
        let (services, id) = match mode {
            ReplayMode::Recorded => {
                let services = Services {
                    store: Arc::new(MemoryStore::new()),
                    ..self.services.clone()
                };
                (services, rec.id)
            }
            ReplayMode::LiveTools => (self.services.clone(), RunId::new()),
        };
        let now = baton_store::now_ms();
        let mut first: Vec<EventRecord> = evs[..created]
            .iter()
            .map(|r| EventRecord {
                run_id: id,
                ..r.clone()
            })
            .collect();
        if let (ReplayMode::LiveTools, Some(r)) = (mode, first.first_mut()) {
            r.at_ms = now;
            r.event = Event::RunCreated {
                workflow: rec.workflow_name.clone(),
                inputs: Value::Null,
                forked_from: Some(ForkOrigin {
                    run: rec.id,
                    seq: created as u64,
                }),
            };
        }
        services
            .store
            .create_run(NewRun {
                id,
                workflow_name: rec.workflow_name.clone(),
                workflow_source: rec.workflow_source.clone(),
                workflow_path: rec.workflow_path.clone(),
                inputs: rec.inputs.clone(),
                options: rec.options.clone(),
                created_at_ms: now,
                events: first.clone(),
                tenant: caller.tenant.clone(),
                started_by: Some(caller.key_id.clone()),
                idempotency: None,
            })
            .await?;
        if mode == ReplayMode::LiveTools {
            let object = format!("run/{id}");
            let details = json!({"replay_of": rec.id, "live_tools": true});
            self.record(
                caller,
                "run.replay",
                Some(&object),
                crate::audit::Outcome::Ok,
                details,
            )
            .await?;
        }

        let machine = Machine::new(&program);
        let mut st = RunState::new(id, rec.inputs.clone(), &program, &options);
        for r in &first {
            machine.set_now(r.at_ms);
            machine.apply(&mut st, &r.event);
            st.last_seq = r.seq;
        }
        let replay_id = (mode == ReplayMode::LiveTools).then(|| id.to_string());
        let check = Check::new(&evs[created..], replay_id.as_deref());
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let sink = Arc::new(CheckSink {
            check: std::sync::Mutex::new(check),
            stop,
            steps: Default::default(),
        });
        let exec = baton_engine::Executor::new(program.clone(), services)
            .with_replay(recording.clone())
            .with_drain(stopped)
            .with_sink(sink.clone());
        let mut groups = person_groups(&evs[created..]).into_iter();
        let mut inputs = vec![Input::Start { resumed: false }];
        loop {
            st = exec.drive(st, inputs).await.map_err(Error::from)?;
            let diverged = sink.lock().divergence().is_some();
            if diverged || st.status.is_terminal() {
                break;
            }
            match groups.next() {
                Some(g) => {
                    inputs = std::iter::once(Input::Start { resumed: true })
                        .chain(g)
                        .collect();
                }
                None => break,
            }
        }
        let elapsed_ms = started.elapsed().as_secs_f64() * 1000.0;

        let recorded = fold(&program, &rec, &options, &evs);
        let (divergence, matched) = {
            let mut check = sink.lock();
            (check.finish().cloned(), check.matched())
        };
        let differences = replay::final_differences(&recorded, &st, mode == ReplayMode::LiveTools);
        let verdict = if divergence.is_none() && differences.is_empty() {
            Verdict::Identical
        } else {
            Verdict::Diverged
        };
        Ok(ReplayReport {
            run: rec.id,
            mode,
            replay_run: (mode == ReplayMode::LiveTools).then_some(id),
            verdict,
            recorded_status: recorded.status,
            status: st.status,
            steps: sink.steps.load(std::sync::atomic::Ordering::Relaxed),
            effects: recording.served(),
            events_matched: matched,
            events_recorded: evs[created..]
                .iter()
                .filter(|r| !matches!(r.event, Event::RunStarted { .. }))
                .count() as u64,
            elapsed_ms,
            divergence,
            differences,
        })
    }
}

/// The events a fork was created with (a copy of its parent's log up to `from`, then the
/// fork's own edits): copied, not replayed. `None` when the fork's log does not start with
/// the copy its parent's log gives (the parent's log is not the one it was copied from).
fn fork_creation_len(
    program: &Program,
    parent: &[EventRecord],
    from: &ForkOrigin,
    evs: &[EventRecord],
) -> Option<usize> {
    let copied = baton_engine::fork::prefix(program, parent, from.seq);
    if copied.len() > evs.len()
        || copied
            .iter()
            .zip(evs)
            .skip(1)
            .any(|(p, f)| p.event != f.event)
    {
        return None;
    }
    let edits = evs[copied.len()..]
        .iter()
        .take_while(|r| matches!(r.event, Event::StateEdited { .. }))
        .count();
    Some(copied.len() + edits)
}

/// The state a whole recorded log folds to.
fn fold(program: &Program, rec: &RunRecord, options: &RunOptions, evs: &[EventRecord]) -> RunState {
    let machine = Machine::new(program);
    let mut st = RunState::new(rec.id, rec.inputs.clone(), program, options);
    for r in evs {
        machine.set_now(r.at_ms);
        machine.apply(&mut st, &r.event);
        st.last_seq = r.seq;
    }
    st
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(seq: u64, event: Event) -> EventRecord {
        EventRecord {
            run_id: RunId::new(),
            seq,
            at_ms: 0,
            event,
        }
    }

    #[test]
    fn person_inputs_are_grouped_by_stop() {
        let evs = vec![
            rec(
                1,
                Event::HumanRequested {
                    step: "ok".into(),
                    prompt: "?".into(),
                    kind: baton_types::HumanKind::Approval,
                    deadline_ms: None,
                },
            ),
            rec(
                2,
                Event::HumanResponded {
                    step: "ok".into(),
                    approved: true,
                    value: Value::Null,
                    comment: None,
                    by: None,
                },
            ),
            rec(3, Event::RunStarted { resumed: true }),
            rec(4, Event::Resumed { stepping: false }),
            rec(5, Event::StepCancelled { step: "x".into() }),
            rec(6, Event::CancelRequested),
        ];
        let groups = person_groups(&evs);
        assert_eq!(groups.len(), 2);
        assert_eq!(groups[0].len(), 2);
        assert!(matches!(groups[0][0], Input::Human { approved: true, .. }));
        assert!(matches!(groups[0][1], Input::Resume { stepping: false }));
        assert!(matches!(groups[1][0], Input::Cancel));
        assert_eq!(creation_len(&evs), 0);
    }
}
