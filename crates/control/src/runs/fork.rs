//! Forking a run (time travel): a new run of the caller's tenant whose log starts with a copy
//! of another run's events up to a cut (`baton_engine::fork` says which), then the edits a
//! person asks for as `state_edited` events (an edited input is also the fork's input), with
//! agents' models changed in its own copy of the workflow document. The fork is an ordinary
//! run from there: driven, resumed, shown and replayed like any other; its `run_created`
//! names where it came from.

use baton_engine::Machine;
use baton_engine::fork::{self, Cut};
use baton_types::{EditTarget, ForkOrigin, StepPath};

use super::*;

/// What a fork takes besides its parent.
#[derive(Clone, Debug)]
pub struct ForkRequest {
    pub cut: Cut,
    /// Changes to the state at the cut, applied in order.
    pub edits: Vec<(EditTarget, Value)>,
    /// Agents whose model the fork changes: (agent, model reference).
    pub models: Vec<(String, String)>,
}

/// A new fork, ready to drive (foreground) or [`Control::spawn`] (background).
pub struct Forked {
    pub run: RunId,
    pub from: ForkOrigin,
    pub drive: Drive,
}

impl Control {
    /// Forks `run` at `req.cut`: a new run of the caller's tenant (started by the caller), as
    /// starting one is authorized; another tenant's run is not found, and a `runner` forks
    /// only its own runs. Every problem with the request is refused before anything is stored.
    pub async fn fork_run(&self, caller: &Caller, run: &str, req: ForkRequest) -> Result<Forked> {
        let parent = self.find_run(caller, run).await?;
        if let Err(e) = caller.check(Permission::StartRuns) {
            let object = format!("run/{}", parent.id);
            return Err(self.denied(caller, "run.fork", Some(&object), e).await);
        }
        let program = Arc::new(self.program(&parent)?);
        let evs = self.services.store.events(parent.id, 0).await?;
        let seq = fork::cut_seq(&program, &evs, &req.cut)
            .map_err(|e| Error::invalid_field(e.field, e.message))?;
        let (source, program) = self.fork_source(&parent, program, &req.models)?;
        let from = ForkOrigin {
            run: parent.id,
            seq,
        };
        let set: Vec<String> = req.edits.iter().map(|(t, _)| t.to_string()).collect();
        let inputs = fork_inputs(&program, &parent.inputs, &req.edits)?;
        let log = ForkLog::new(&program, &parent, inputs.clone(), from, &evs);
        let log = log.edit(caller, req.edits)?;
        let (id, now) = (log.state.run_id, baton_store::now_ms());
        self.services
            .store
            .create_run(NewRun {
                id,
                workflow_name: parent.workflow_name.clone(),
                workflow_source: source,
                workflow_path: parent.workflow_path.clone(),
                inputs,
                options: parent.options.clone(),
                created_at_ms: now,
                events: log.events,
                tenant: caller.tenant.clone(),
                started_by: Some(caller.key_id.clone()),
                idempotency: None,
            })
            .await?;
        let models: Map<String, Value> = req
            .models
            .into_iter()
            .map(|(a, m)| (a, Value::String(m)))
            .collect();
        let details = json!({"forked_from": from, "set": set, "models": models});
        let object = format!("run/{id}");
        self.record(caller, "run.fork", Some(&object), Outcome::Ok, details)
            .await?;
        let st = log.state;
        let mut inputs = vec![Input::Start { resumed: false }];
        if st.pause.is_some() {
            inputs.push(Input::Resume {
                stepping: st.stepping,
            });
        }
        Ok(Forked {
            run: id,
            from,
            drive: Drive {
                run: id,
                tenant: caller.tenant.clone(),
                program,
                state: st,
                inputs,
            },
        })
    }

    /// The fork's workflow document and program: the parent's, or, with `models`, a copy
    /// (as JSON) whose agents call those models, checked as a new run's document is.
    fn fork_source(
        &self,
        parent: &RunRecord,
        program: Arc<Program>,
        models: &[(String, String)],
    ) -> Result<(String, Arc<Program>)> {
        if models.is_empty() {
            return Ok((parent.workflow_source.clone(), program));
        }
        let file = workflow_file(parent);
        let mut doc = load::document_value(&file, &parent.workflow_source).map_err(diagnostics)?;
        // The registry agents the parent pinned become inline agents of the copy.
        let pinned = pinned_agents(parent);
        if let (false, Some(d)) = (pinned.is_empty(), doc.as_object_mut()) {
            let agents = d
                .entry("agents")
                .or_insert_with(|| Value::Object(Map::new()));
            if let Some(agents) = agents.as_object_mut() {
                for (reference, pin) in pinned {
                    let spec = serde_json::to_value(pin.spec)
                        .map_err(|e| Error::internal(format!("a pinned agent: {e}")))?;
                    agents.insert(reference, spec);
                }
            }
        }
        for (agent, model) in models {
            let Some(spec) = doc
                .get_mut("agents")
                .and_then(|a| a.get_mut(agent))
                .and_then(Value::as_object_mut)
            else {
                let known: Vec<&str> = program.doc.agents.keys().map(String::as_str).collect();
                return Err(Error::invalid_field(
                    "models",
                    format!(
                        "the workflow has no agent '{agent}' (agents: {})",
                        if known.is_empty() {
                            "none".to_string()
                        } else {
                            known.join(", ")
                        }
                    ),
                ));
            };
            spec.insert("model".into(), Value::String(model.clone()));
        }
        let text = serde_json::to_string_pretty(&doc)
            .map_err(|e| Error::internal(format!("cannot write the fork's workflow: {e}")))?;
        // Lines and columns are the copy's, not the parent's file's.
        let copy = format!("{file} (the fork's copy)");
        let loaded = load::load_bytes(&copy, text.as_bytes()).map_err(diagnostics)?;
        let program = self.checked_program(&loaded, base_of(parent, &self.base_dir), true)?;
        Ok((text, Arc::new(program)))
    }
}

/// A fork's first events and the state they fold to.
struct ForkLog<'p> {
    program: &'p Program,
    machine: Machine<'p>,
    events: Vec<EventRecord>,
    state: RunState,
}

impl<'p> ForkLog<'p> {
    /// The parent's events a fork at `from` copies, as a new run's (with `inputs`), folded.
    fn new(
        program: &'p Program,
        parent: &RunRecord,
        inputs: Value,
        from: ForkOrigin,
        evs: &[EventRecord],
    ) -> Self {
        let id = RunId::new();
        let events = copied(id, from, fork::prefix(program, evs, from.seq));
        let options: RunOptions =
            serde_json::from_value(parent.options.clone()).unwrap_or_default();
        let machine = Machine::new(program);
        let mut state = RunState::new(id, inputs, program, &options);
        for e in events.iter().skip(1) {
            machine.set_now(e.at_ms);
            machine.apply(&mut state, &e.event);
            state.last_seq = e.seq;
        }
        ForkLog {
            program,
            machine,
            events,
            state,
        }
    }

    /// The edits, each checked against the state it applies to, logged after the copy.
    fn edit(mut self, caller: &Caller, edits: Vec<(EditTarget, Value)>) -> Result<Self> {
        let at_ms = baton_store::now_ms();
        self.machine.set_now(at_ms);
        for (target, value) in edits {
            check_edit(self.program, &self.state, &target, &value, FORK_UNFINISHED)?;
            let event = Event::StateEdited {
                target,
                value,
                by: Some(caller.key_id.clone()),
            };
            self.machine.apply(&mut self.state, &event);
            self.state.last_seq += 1;
            self.events.push(EventRecord {
                run_id: self.state.run_id,
                seq: self.state.last_seq,
                at_ms,
                event,
            });
        }
        Ok(self)
    }
}

/// The fork's inputs: the parent's, with the `inputs.NAME` edits, checked as a start's are.
fn fork_inputs(program: &Program, parent: &Value, edits: &[(EditTarget, Value)]) -> Result<Value> {
    let mut given = match parent {
        Value::Object(m) => m.clone(),
        _ => Map::new(),
    };
    let mut edited = false;
    for (target, value) in edits {
        if let EditTarget::Input { name } = target {
            given.insert(name.clone(), value.clone());
            edited = true;
        }
    }
    if !edited {
        return Ok(parent.clone());
    }
    let inputs = baton_engine::inputs::resolve(&program.doc, given)
        .map_err(|p| Error::invalid_field("set", p.join("; ")))?;
    baton_engine::inputs::check_size(&inputs, DEFAULT_MAX_INPUT_SIZE)
        .map_err(|p| Error::invalid_field("set", p))?;
    Ok(inputs)
}

/// The parent's events as the fork's: its own run id, seqs from 1, and `run_created` naming
/// where it came from.
fn copied(id: RunId, from: ForkOrigin, prefix: Vec<EventRecord>) -> Vec<EventRecord> {
    prefix
        .into_iter()
        .zip(1u64..)
        .map(|(mut e, seq)| {
            e.run_id = id;
            e.seq = seq;
            if let Event::RunCreated { forked_from, .. } = &mut e.event {
                *forked_from = Some(from);
            }
            e
        })
        .collect()
}

/// Why a fork cannot set the output of a step that had not finished at the cut.
const FORK_UNFINISHED: &str = "where the fork starts (it had not finished there, so it runs in the fork); fork after it to set its output";

/// Refuses an edit a state cannot take: a step the workflow lacks, a step with no output
/// there (`unfinished` says why that is: it had not finished), an output its schema refuses.
pub(super) fn check_edit(
    program: &Program,
    st: &RunState,
    target: &EditTarget,
    value: &Value,
    unfinished: &str,
) -> Result<()> {
    let EditTarget::StepOutput { step } = target else {
        return Ok(());
    };
    let Some(node) = program.node_by_id(StepPath::parse(step).id()) else {
        return Err(Error::invalid_field(
            "set",
            format!("{target}: the workflow has no step '{step}'"),
        ));
    };
    if !st.outputs.contains_key(step) {
        return Err(Error::invalid_field(
            "set",
            format!("{target}: step {step} has no output {unfinished}"),
        ));
    }
    if let Some((schema, _)) = &node.output_schema
        && let Err(e) = baton_engine::agent::check_output(schema, &value.to_string())
    {
        return Err(Error::invalid_field(
            "set",
            format!("{target} does not match the step's output schema: {e}"),
        ));
    }
    Ok(())
}
