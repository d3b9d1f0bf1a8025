//! Operating runs: pause, cancel, resume, answers to `human` steps, resolutions of ambiguous
//! steps, and the approvals inbox. Each is queued for the process that holds the run, or
//! handed back as a [`Drive`] when nobody does.

use super::*;

impl Control {
    /// Whether a live process holds `run` (a task of this one, or another process's claim).
    /// A process that executes nothing also counts a `running` run nobody holds
    /// (`interrupted`) as held elsewhere: applying a request here would start its work in
    /// flight again, so the request is queued for the worker that claims the run. A run that
    /// is not under way (queued, paused, waiting) gets it applied here, which starts nothing.
    pub(crate) async fn held_elsewhere(&self, run: RunId) -> Result<bool> {
        if self.runner.is_active(run) {
            return Ok(true);
        }
        if self.executes_nothing()
            && let Some(rec) = self.services.store.run(run).await?
            && matches!(rec.status, RunStatus::Running | RunStatus::Interrupted)
        {
            return Ok(true);
        }
        let owner = baton_store::process_owner();
        match self.services.store.claim(run, &owner, PROBE_LEASE_MS).await {
            Ok(()) => {
                self.services.store.release(run, &owner).await?;
                Ok(false)
            }
            Err(baton_store::Error::Claimed { .. }) => Ok(true),
            Err(e) => Err(e.into()),
        }
    }

    /// Pauses or cancels a run: queued for the process running it, or applied here when none
    /// does.
    pub async fn control_run(
        &self,
        caller: &Caller,
        run: &str,
        what: RunControl,
    ) -> Result<ControlOutcome> {
        let action = match what {
            RunControl::Pause => "run.pause",
            RunControl::Cancel => "run.cancel",
        };
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, action, Some(&object), e).await);
        }
        if rec.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is already {}",
                rec.id, rec.status
            )));
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        let outcome = if self.held_elsewhere(rec.id).await? {
            let c = match what {
                RunControl::Pause => StoreControl::Pause,
                RunControl::Cancel => StoreControl::Cancel,
            };
            self.services.store.send_control(rec.id, c).await?;
            ControlOutcome::Queued
        } else {
            let input = match what {
                RunControl::Pause => Input::Pause,
                RunControl::Cancel => Input::Cancel,
            };
            let st = self
                .publishing_executor(program, rec.tenant.clone())
                .drive(st, vec![input])
                .await?;
            ControlOutcome::Applied(st.status)
        };
        let details = json!({"queued": outcome == ControlOutcome::Queued});
        self.record(caller, action, Some(&object), Outcome::Ok, details)
            .await?;
        Ok(outcome)
    }

    /// Continues a run that stopped (a crash, a pause, a breakpoint): a [`Drive`] from its
    /// log, or the request queued for this process's task that drives it. `stepping`: pause
    /// before every step from here on.
    pub async fn resume(&self, caller: &Caller, run: &str, stepping: bool) -> Result<Resumed> {
        let opts = ResumeOptions {
            stepping,
            budget: Vec::new(),
        };
        self.resume_with(caller, run, opts).await
    }

    /// [`Control::resume`], with budget changes made first (logged as `budget_raised`): a run
    /// its budget stopped resumes only once they lift it over what was spent.
    pub async fn resume_with(
        &self,
        caller: &Caller,
        run: &str,
        opts: ResumeOptions,
    ) -> Result<Resumed> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, "run.resume", Some(&object), e).await);
        }
        if rec.status.is_terminal() {
            return Ok(Resumed::Finished(rec.status));
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        if let Some(baton_types::PauseReason::Agents { agents }) = &st.pause {
            return Err(Error::conflict(format!(
                "run {} waits for paused agents ({}): resume them with `baton agents resume {} {}`",
                rec.id,
                agents.join(", "),
                rec.id,
                agents.first().map_or("AGENT", String::as_str)
            )));
        }
        let raise = self.budget_input(caller, &program, &st, &opts)?;
        let stepping = opts.stepping;
        let budget: Vec<String> = opts.budget.iter().map(ToString::to_string).collect();
        let mut details = json!({"stepping": stepping});
        if !budget.is_empty() {
            details["budget"] = json!(budget);
        }
        self.record(caller, "run.resume", Some(&object), Outcome::Ok, details)
            .await?;
        if self.runner.is_active(rec.id) {
            if let Some(Input::RaiseBudget { changes, by }) = raise {
                let c = StoreControl::RaiseBudget { changes, by };
                self.services.store.send_control(rec.id, c).await?;
            }
            self.services
                .store
                .send_control(rec.id, StoreControl::Resume { stepping })
                .await?;
            return Ok(Resumed::Queued);
        }
        let mut inputs = vec![Input::Start { resumed: true }];
        inputs.extend(raise);
        if st.pause.is_some() || stepping != st.stepping {
            inputs.push(Input::Resume { stepping });
        }
        Ok(Resumed::Drive(Box::new(Drive {
            run: rec.id,
            tenant: rec.tenant,
            program,
            state: st,
            inputs,
        })))
    }

    /// Answers a waiting `human` step: approve, reject, or a value (checked against the
    /// step's schema). Recorded for the process holding the run, or handed back to drive.
    pub async fn answer(&self, caller: &Caller, run: &str, a: Answer) -> Result<Answered> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::AnswerApprovals) {
            return Err(self.denied(caller, "run.answer", Some(&object), e).await);
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        let step = waiting_step(&st, a.step.as_deref())?;
        if st.escalated_humans().contains(&step) {
            let evs = self.services.store.events(rec.id, 0).await?;
            if let Some((to, _)) = escalation_of(&evs, &step)
                && !may_answer_escalated(caller, &to)
            {
                let e = Error::forbidden(format!(
                    "step {step} was escalated to {to}: only {to} (or an admin) may answer it now"
                ));
                return Err(self.denied(caller, "run.answer", Some(&object), e).await);
            }
        }
        let node = program
            .node_by_id(baton_types::StepPath::parse(&step).id())
            .ok_or_else(|| Error::internal(format!("unknown step {step}")))?;
        let baton_types::StepKind::Human(spec) = node.step.kind.clone() else {
            return Err(Error::invalid_field(
                "step",
                format!("step {step} is not a human step"),
            ));
        };
        let (approved, value) = match a.decision {
            Decision::Input(value) => {
                if spec.kind != HumanKind::Input {
                    return Err(Error::invalid_field(
                        "decision",
                        format!(
                            "step {step} asks for approval: use `baton runs approve` or `reject`"
                        ),
                    ));
                }
                let Some(value) = value else {
                    return Err(Error::invalid_field(
                        "value",
                        format!("step {step} asks for a value: pass --value"),
                    ));
                };
                if let Some(schema) = &spec.schema
                    && let Err(e) = baton_engine::agent::check_output(schema, &value.to_string())
                {
                    return Err(Error::Invalid {
                        message: format!("the value does not match step {step}'s schema: {e}"),
                        details: Details::Schema {
                            field: "value".into(),
                        },
                    });
                }
                (true, value)
            }
            d => {
                if spec.kind == HumanKind::Input {
                    return Err(Error::invalid_field(
                        "decision",
                        format!("step {step} asks for a value: use `baton runs input --value ...`"),
                    ));
                }
                (d == Decision::Approve, Value::Null)
            }
        };
        let by = a.by.or_else(|| Some(caller.key_id.clone()));
        let held_elsewhere = self.held_elsewhere(rec.id).await?;
        let details = json!({"step": step, "approved": approved, "comment": a.comment});
        self.record(caller, "run.answer", Some(&object), Outcome::Ok, details)
            .await?;
        if held_elsewhere || a.no_resume {
            self.services
                .store
                .send_control(
                    rec.id,
                    StoreControl::Human {
                        step: step.clone(),
                        approved,
                        value,
                        comment: a.comment,
                        by,
                    },
                )
                .await?;
            return Ok(Answered::Recorded {
                step,
                held_elsewhere,
            });
        }
        Ok(Answered::Drive(Box::new(Drive {
            run: rec.id,
            tenant: rec.tenant,
            program,
            state: st,
            inputs: vec![
                Input::Start { resumed: true },
                Input::Human {
                    step,
                    approved,
                    value,
                    comment: a.comment,
                    by,
                },
            ],
        })))
    }

    /// Resolves an ambiguous step: its effect happened (`done`, with what it returned) or did
    /// not (`retry`: sent again with the same idempotency key). Recorded for the process
    /// holding the run, or handed back to drive.
    pub async fn resolve(&self, caller: &Caller, run: &str, r: Resolve) -> Result<Resolved> {
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, "run.resolve", Some(&object), e).await);
        }
        if r.resolution == Resolution::Retry && r.value.is_some() {
            return Err(Error::invalid_field(
                "value",
                "a value goes with resolving as done (a retry gets its result from the call)",
            ));
        }
        if rec.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is already {}: there is nothing to resolve",
                rec.id, rec.status
            )));
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        let ambiguous = st.ambiguous_steps();
        if !ambiguous.contains(&r.step) {
            let which = match ambiguous.as_slice() {
                [] => "no step is".to_string(),
                w => format!("ambiguous: {}", w.join(", ")),
            };
            return Err(Error::invalid_field(
                "step",
                format!(
                    "step '{}' of run {} is not ambiguous ({which})",
                    r.step, rec.id
                ),
            ));
        }
        let value = r.value.unwrap_or(Value::Null);
        let by = r.by.or_else(|| Some(caller.key_id.clone()));
        let held_elsewhere = self.held_elsewhere(rec.id).await?;
        let queued = held_elsewhere || r.no_resume;
        let details = json!({
            "step": r.step,
            "resolution": r.resolution,
            "queued": queued,
        });
        self.record(caller, "run.resolve", Some(&object), Outcome::Ok, details)
            .await?;
        if queued {
            self.services
                .store
                .send_control(
                    rec.id,
                    StoreControl::Resolve {
                        step: r.step.clone(),
                        resolution: r.resolution,
                        value,
                        by,
                    },
                )
                .await?;
            return Ok(Resolved::Recorded {
                step: r.step,
                resolution: r.resolution,
                held_elsewhere,
            });
        }
        Ok(Resolved::Drive(Box::new(Drive {
            run: rec.id,
            tenant: rec.tenant,
            program,
            state: st,
            inputs: vec![
                Input::Start { resumed: true },
                Input::Resolve {
                    step: r.step,
                    resolution: r.resolution,
                    value,
                    by,
                },
            ],
        })))
    }

    /// Every `human` step waiting in the caller's tenant's runs (a `runner`: in the runs it
    /// started), oldest request first.
    pub async fn approvals(&self, caller: &Caller) -> Result<Vec<Approval>> {
        caller.check(Permission::Read)?;
        let q = ListQuery {
            status: Some(RunStatus::Waiting),
            started_by: caller.own_runs_only().then(|| caller.key_id.clone()),
            ..Default::default()
        };
        let mut out = Vec::new();
        for rec in self.services.store.list_runs(&caller.tenant, q).await? {
            let Ok(program) = self.program(&rec) else {
                continue;
            };
            let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
            let waiting = st.waiting_humans();
            if waiting.is_empty() {
                continue;
            }
            let evs = self.services.store.events(rec.id, 0).await?;
            for step in waiting {
                let Some((prompt, kind, at, requested_deadline)) =
                    evs.iter().rev().find_map(|e| match &e.event {
                        Event::HumanRequested {
                            step: s,
                            prompt,
                            kind,
                            deadline_ms,
                        } if *s == step => Some((prompt.clone(), *kind, e.at_ms, *deadline_ms)),
                        _ => None,
                    })
                else {
                    continue;
                };
                let escalation = escalation_of(&evs, &step);
                let deadline_ms = escalation.as_ref().map(|(_, d)| *d).or(requested_deadline);
                let schema = program
                    .node_by_id(baton_types::StepPath::parse(&step).id())
                    .and_then(|n| match &n.step.kind {
                        baton_types::StepKind::Human(h) => h.schema.clone(),
                        _ => None,
                    });
                out.push(Approval {
                    run: rec.id,
                    workflow: rec.workflow_name.clone(),
                    step,
                    prompt,
                    kind,
                    schema,
                    requested_at_ms: at,
                    deadline_ms,
                    escalated_to: escalation.map(|(to, _)| to),
                    started_by: rec.started_by.clone(),
                });
            }
        }
        out.sort_by_key(|a| a.requested_at_ms);
        Ok(out)
    }
}

/// Where a waiting step's request was escalated to, and its new deadline (the latest
/// `human_escalated` of the step after its latest request).
fn escalation_of(evs: &[baton_types::EventRecord], step: &str) -> Option<(String, i64)> {
    evs.iter().rev().find_map(|e| match &e.event {
        Event::HumanEscalated {
            step: s,
            to,
            deadline_ms,
        } if s == step => Some(Some((to.clone(), *deadline_ms))),
        Event::HumanRequested { step: s, .. } if s == step => Some(None),
        _ => None,
    })?
}

/// Whether `caller` may answer a request escalated to `to`: an admin, a key of that role,
/// or that key.
fn may_answer_escalated(caller: &Caller, to: &str) -> bool {
    caller.role == baton_types::Role::Admin || caller.role.as_str() == to || caller.key_id == to
}

/// The step an answer is for: the one named (it must be waiting), or the only one waiting.
fn waiting_step(st: &RunState, named: Option<&str>) -> Result<String> {
    let run = st.run_id;
    let waiting = st.waiting_humans();
    let err = |m: String| Err(Error::invalid_field("step", m));
    match (named, waiting.as_slice()) {
        (Some(s), w) if w.iter().any(|x| x == s) => Ok(s.to_string()),
        (Some(s), []) => err(format!(
            "step '{s}' of run {run} is not waiting for a person (no step is)"
        )),
        (Some(s), w) => err(format!(
            "step '{s}' of run {run} is not waiting for a person (waiting: {})",
            w.join(", ")
        )),
        (None, [one]) => Ok(one.clone()),
        (None, []) => Err(Error::conflict(match st.ambiguous_steps().first() {
            Some(step) => format!(
                "no step of run {run} asks a question, but step '{step}' is ambiguous: see `baton runs show {run}`, then `baton runs resolve {run} {step} --as done|retry`"
            ),
            None => format!(
                "no step of run {run} is waiting for a person (status: {})",
                st.status
            ),
        })),
        (None, w) => err(format!(
            "several steps wait ({}): name one with --step",
            w.join(", ")
        )),
    }
}
