//! Decisions: what an input leads to ([`Machine::take_input`]), then everything the engine
//! decides on its own until it needs an outside result ([`Machine::advance`]). Each pass takes
//! the first decision of the first phase that has one, applies it and looks again:
//!
//! 0. a `tool:` or `sandbox:` step that started is checked against the policy (`policy`);
//! 1. a fan whose join is decided ends its step (after cancelling what still runs under it);
//! 2. a human step is asked, or ends with its answer;
//! 3. a synchronous step that started is run (see `sync`);
//! 4. a ready step starts (or stops at a breakpoint, or fails past its `max_visits`).

use baton_types::{Event, PauseReason, StepError, StepErrorKind, StepPath, Usage};
use serde_json::{Map, Value};

use super::state::{FrameId, Outcome, Phase, RunState};
use super::{Action, Decision, Input, Machine, Refused, idempotency_key, join};
use crate::context;
use crate::program::{Node, NodeKind, Recovery};

/// One decision taken on the engine's own: `before` (the keys a `state.set` step sets) and
/// `event` are logged in that order; `action` follows once they are.
pub(super) struct Decided {
    pub before: Vec<Event>,
    pub event: Event,
    pub action: Option<Action>,
}

impl Decided {
    pub fn event(event: Event) -> Decided {
        Decided {
            before: Vec::new(),
            event,
            action: None,
        }
    }

    pub fn with(event: Event, action: Action) -> Decided {
        Decided {
            before: Vec::new(),
            event,
            action: Some(action),
        }
    }
}

/// How a step's attempt ended, for [`Machine::step_ended`].
pub(super) struct Ended {
    pub attempt: u32,
    pub usage: Usage,
    pub duration_ms: u64,
}

impl Ended {
    /// An attempt the engine ended itself: no usage, no time.
    pub fn sync(attempt: u32) -> Ended {
        Ended {
            attempt,
            usage: Usage::default(),
            duration_ms: 0,
        }
    }

    /// An agent's attempt the engine stopped while it ran (a runaway, a wait that timed out):
    /// the usage of the replies the attempt had, from the step's journal, so that the run's
    /// tokens count them.
    pub fn stopped(st: &RunState, step: &str, attempt: u32) -> Ended {
        let mut usage = Usage::default();
        if let Some(j) = st.steps.get(step).and_then(|s| s.journal.as_deref()) {
            for r in j.replies.iter().filter(|r| r.attempt == attempt) {
                usage.add(&r.usage);
            }
        }
        Ended {
            usage,
            ..Ended::sync(attempt)
        }
    }
}

impl Machine<'_> {
    /// Records what an input says; returns whether the run may move on from there.
    pub(super) fn take_input(
        &self,
        st: &mut RunState,
        input: Input,
        out: &mut Decision,
    ) -> Result<bool, Refused> {
        match input {
            Input::Start { resumed } => self.emit(st, out, Event::RunStarted { resumed }),
            Input::Done {
                step,
                attempt,
                result,
                usage,
                duration_ms,
            } => {
                let how = Ended {
                    attempt,
                    usage,
                    duration_ms,
                };
                self.done(st, step, result, how, out);
            }
            Input::Progress { step, progress } => {
                // Progress decides nothing: log it (while the step is active) and stop here.
                if st.steps.contains_key(&step) {
                    self.emit(st, out, Event::StepProgress { step, progress });
                }
                return Ok(false);
            }
            Input::RetryDue { step } => self.retry_due(st, step, out),
            Input::HumanTimeout { step } => self.human_timeout(st, step, out)?,
            Input::ToolCall {
                step,
                attempt,
                call,
            } => return self.tool_call(st, step, attempt, call, out),
            Input::Ambiguous {
                step,
                attempt,
                effect,
            } => self.ambiguous(st, step, attempt, effect, out),
            Input::Resolve {
                step,
                resolution,
                value,
                by,
            } => self.resolve(st, step, resolution, value, by, out)?,
            Input::Human {
                step,
                approved,
                value,
                comment,
                by,
            } => {
                let ev = Event::HumanResponded {
                    step,
                    approved,
                    value,
                    comment,
                    by,
                };
                self.answer(st, ev, out)?;
            }
            Input::RaiseBudget { changes, by } => {
                for c in &changes {
                    self.check_change(st, c).map_err(Refused::Budget)?;
                }
                self.emit(st, out, Event::BudgetRaised { changes, by });
            }
            Input::TeamCall {
                step,
                attempt,
                call,
            } => return self.team_call(st, step, attempt, call, out),
            Input::Inbox {
                step,
                attempt,
                turn,
            } => {
                self.inbox(st, step, attempt, turn, out)?;
                return Ok(false);
            }
            Input::Agent { agent, action, by } => self.control_agent(st, agent, action, by, out)?,
            Input::MessageTimeout { step } => self.message_timeout(st, step, out)?,
            Input::Breakpoints { change, by } => {
                // Nothing moves: a new breakpoint counts when a step next starts.
                let breakpoints = change.applied_to(&st.breakpoints);
                if breakpoints != st.breakpoints {
                    let breakpoints = breakpoints.into_iter().collect();
                    self.emit(st, out, Event::BreakpointsSet { breakpoints, by });
                }
                return Ok(false);
            }
            Input::Edit { edits, by } => {
                if st.pause.is_none() {
                    return Err(Refused::NotPaused);
                }
                for (target, value) in edits {
                    let by = by.clone();
                    self.emit(st, out, Event::StateEdited { target, value, by });
                }
                return Ok(false);
            }
            Input::Pause | Input::Resume { .. } | Input::Cancel => self.operate(st, input, out)?,
        }
        Ok(true)
    }

    /// A step's attempt ended; a late result of a cancelled or superseded attempt is ignored.
    fn done(
        &self,
        st: &mut RunState,
        step: String,
        result: Outcome,
        how: Ended,
        out: &mut Decision,
    ) {
        if !st.runs_attempt(&step, how.attempt) {
            return;
        }
        let d = self.work_ended(st, &step, result, how);
        self.record(st, out, d);
    }

    /// Pause, resume and cancel: each logged once, a resume of a run that is not paused refused.
    fn operate(&self, st: &mut RunState, input: Input, out: &mut Decision) -> Result<(), Refused> {
        match input {
            Input::Pause if st.pause.is_none() => {
                let pause = PauseReason::User;
                self.emit(st, out, Event::Paused { pause });
            }
            Input::Resume { stepping } => {
                if st.pause.is_none() && stepping == st.stepping {
                    return Err(Refused::NotPaused);
                }
                if let Some(PauseReason::Agents { agents }) = &st.pause {
                    return Err(Refused::Agent(format!(
                        "the run waits for paused agents ({}): resume them (`baton agents \
                         resume RUN AGENT`)",
                        agents.join(", ")
                    )));
                }
                if matches!(st.pause, Some(PauseReason::Budget(_)))
                    && let Some(crossed) = self.crossing(st)
                {
                    return Err(Refused::OverBudget(crossed));
                }
                self.emit(st, out, Event::Resumed { stepping });
            }
            Input::Cancel if !st.cancelling => self.emit(st, out, Event::CancelRequested),
            _ => {} // a pause of a paused run, a second cancel: nothing to log
        }
        Ok(())
    }

    /// The next attempt of a step waiting for its retry.
    fn retry_due(&self, st: &mut RunState, step: String, out: &mut Decision) {
        let Some(sr) = st.steps.get(&step).filter(|s| s.phase == Phase::RetryWait) else {
            return;
        };
        let attempt = sr.attempt + 1;
        let visit = sr.visit;
        let launch = self.is_work(sr.node);
        // The same effect as the first attempt: the same key.
        let key = sr.key.clone();
        let ev = Event::StepStarted {
            step: step.clone(),
            attempt,
            visit,
            key,
        };
        self.emit(st, out, ev);
        // A step that waits for a message (`wait_for`) launches when it comes.
        if launch
            && st
                .steps
                .get(&step)
                .is_some_and(|s| s.phase == Phase::Running)
        {
            out.actions.push(Action::Launch { step });
        }
    }

    /// Logs a decision: its events, then its action.
    pub(super) fn record(&self, st: &mut RunState, out: &mut Decision, d: Decided) {
        for ev in d.before {
            self.emit(st, out, ev);
        }
        self.emit(st, out, d.event);
        out.actions.extend(d.action);
    }

    /// Moves the run forward as far as it can go without outside results.
    pub(super) fn advance(&self, st: &mut RunState, out: &mut Decision) {
        for _ in 0..100_000 {
            if st.status.is_terminal() {
                return;
            }
            if st.cancelling {
                return self.cancel_all(st, out);
            }
            if let Some(ev) = self.run_end(st) {
                return self.emit(st, out, ev);
            }
            match self.decide(st) {
                Some(d) => self.record(st, out, d),
                None => return,
            }
        }
    }

    /// The next thing the engine decides on its own, phase by phase.
    pub(super) fn decide(&self, st: &RunState) -> Option<Decided> {
        self.decide_policy(st)
            .or_else(|| self.decide_join(st))
            .or_else(|| self.decide_human(st))
            .or_else(|| self.decide_sync(st))
            .or_else(|| self.decide_team(st))
            .or_else(|| self.decide_start(st))
    }

    /// Cancels every active step, then the run.
    fn cancel_all(&self, st: &mut RunState, out: &mut Decision) {
        let active: Vec<String> = st.steps.keys().cloned().collect();
        for step in active {
            self.emit(st, out, Event::StepCancelled { step: step.clone() });
            out.actions.push(Action::Cancel { step });
        }
        self.emit(st, out, Event::RunCancelled);
        out.actions.push(Action::CancelAll);
    }

    /// The run's end, once its top-level sequence has an outcome.
    fn run_end(&self, st: &RunState) -> Option<Event> {
        let outcome = st.seq(0)?.outcome.clone()?;
        Some(match outcome {
            Ok(last) => match self.run_outputs(st, last) {
                Ok(outputs) => Event::RunSucceeded { outputs },
                Err(e) => Event::RunFailed {
                    error: format!("outputs: {}", e.logged_message()),
                },
            },
            Err(e) => Event::RunFailed {
                error: match &st.last_failed {
                    Some(s) => format!("step '{s}' failed: {}", e.logged_message()),
                    None => e.logged_message().into_owned(),
                },
            },
        })
    }

    fn run_outputs(&self, st: &RunState, last: Value) -> Result<Value, StepError> {
        let p = self.program;
        if p.doc.outputs.is_empty() {
            return Ok(last);
        }
        let ctx = st.template_context(p, 0);
        let mut m = Map::new();
        for (k, src) in &p.doc.outputs {
            let name = format!("outputs.{k}");
            let v = match crate::template::sole_expression(src) {
                Some(expr) => context::to_json(&context::eval(p, &name, expr, &ctx)?),
                None => Value::String(context::render(p, &name, &ctx)?),
            };
            m.insert(k.clone(), v);
        }
        Ok(Value::Object(m))
    }

    /// Phase 1: a fan whose join is decided ends its step.
    fn decide_join(&self, st: &RunState) -> Option<Decided> {
        for (&fid, f) in &st.frames {
            let super::Frame::Fan(fan) = f.as_ref() else {
                continue;
            };
            if !st.is_running(&fan.step) {
                continue;
            }
            if fan.strategy == baton_types::JoinStrategy::Judge {
                match self.decide_judge(st, fan) {
                    Some(d) => return Some(d),
                    None => continue,
                }
            }
            let Some((outcome, decision)) = join::outcome(fan, self.program) else {
                continue;
            };
            // Stop branches still running before the fan's step ends.
            if let Some(step) = st.active_under(fid) {
                let ev = Event::StepCancelled { step: step.clone() };
                return Some(Decided::with(ev, Action::Cancel { step }));
            }
            let attempt = st.steps.get(&fan.step).map_or(1, |s| s.attempt);
            let mut d = self.step_ended(st, &fan.step, outcome, Ended::sync(attempt));
            if let Some(progress) = decision {
                let step = fan.step.clone();
                d.before.insert(0, Event::StepProgress { step, progress });
            }
            return Some(d);
        }
        None
    }

    /// Phase 3: a synchronous step that started runs now.
    fn decide_sync(&self, st: &RunState) -> Option<Decided> {
        st.steps
            .iter()
            .filter(|(_, sr)| sr.phase == Phase::Running)
            .find(|(step, sr)| self.is_sync(st, step, sr))
            .map(|(step, sr)| self.run_sync(st, step, sr))
    }

    /// Phase 4: the first ready step that may start does (unless the run is paused).
    fn decide_start(&self, st: &RunState) -> Option<Decided> {
        if st.pause.is_some() {
            return None;
        }
        let p = self.program;
        for (step, &frame) in &st.ready {
            if !self.may_start(st, frame) || self.held(st, step) {
                continue;
            }
            let id = StepPath::parse(step).id();
            // The sequence's cursor is the ready step's node.
            let Some(node) = st
                .seq(frame)
                .and_then(|s| s.cursor)
                .map(|c| p.node(c))
                .filter(|n| n.id == id)
                .or_else(|| p.node_by_id(id))
            else {
                continue;
            };
            let visit = st.visits.get(step).copied().unwrap_or(0) + 1;
            if let Some(max) = node.max_visits
                && visit > max
            {
                let e = StepError::fatal(
                    StepErrorKind::MaxVisits,
                    format!(
                        "step '{id}' would run a {} time, past its max_visits of {max}",
                        ordinal(visit)
                    ),
                );
                return Some(self.failure(st, step, e, Ended::sync(1)));
            }
            if let Some(e) = self.unchanged_loop(st, step, node, visit) {
                return Some(self.failure(st, step, e, Ended::sync(1)));
            }
            // Over budget: nothing new starts, the run stops here.
            if let Some(stop) = self.budget_stop(st) {
                return Some(stop);
            }
            let breaks = st.stepping || st.breakpoints.contains(id);
            if breaks && st.released.as_deref() != Some(step.as_str()) {
                let pause = PauseReason::Breakpoint { step: step.clone() };
                return Some(Decided::event(Event::Paused { pause }));
            }
            let key = idempotency_key(st.run_id, step, visit);
            let ev = Event::StepStarted {
                step: step.clone(),
                attempt: 1,
                visit,
                key,
            };
            let waits = || matches!(self.start_phase(st, node), Phase::Message { .. });
            return Some(if self.is_work(node.idx) && !waits() {
                Decided::with(ev, Action::Launch { step: step.clone() })
            } else {
                Decided::event(ev)
            });
        }
        None
    }

    /// Whether a node's work is done outside the machine (an agent, a tool, a sandbox).
    pub(super) fn is_work(&self, node: crate::program::NodeIdx) -> bool {
        matches!(
            self.program.node(node).kind,
            NodeKind::Agent { .. } | NodeKind::Tool { .. } | NodeKind::Sandbox
        )
    }

    /// Whether a sequence may start its next step (its fan's `max_concurrency`).
    fn may_start(&self, st: &RunState, frame: FrameId) -> bool {
        let Some(seq) = st.seq(frame) else {
            return false;
        };
        if seq.started {
            return true;
        }
        let Some((fid, _)) = seq.fan else { return true };
        let Some(fan) = st.fan(fid) else { return true };
        let Some(max) = fan.max_concurrency else {
            return true;
        };
        let running = fan
            .children
            .iter()
            .filter(|c| {
                st.seq(**c)
                    .is_some_and(|s| s.started && s.outcome.is_none())
            })
            .count();
        running < max as usize
    }

    /// A step's attempt ended with `result`: it succeeds and its sequence goes on, or it
    /// fails (see [`Machine::failure`]).
    pub(super) fn step_ended(
        &self,
        st: &RunState,
        step: &str,
        result: Result<Value, StepError>,
        how: Ended,
    ) -> Decided {
        let output = match result {
            Ok(output) => output,
            Err(e) => return self.failure(st, step, e, how),
        };
        match self.successor(st, step) {
            Ok(next) => Decided::with(
                Event::StepSucceeded {
                    step: step.into(),
                    output,
                    next,
                    duration_ms: how.duration_ms,
                    usage: how.usage,
                },
                Action::Release { step: step.into() },
            ),
            Err(e) => self.failure(st, step, e, how),
        }
    }

    /// A failed attempt: a retry after the delay, a recovery through `on_error`, or a
    /// failure of the step's sequence.
    pub(super) fn failure(
        &self,
        st: &RunState,
        step: &str,
        error: StepError,
        how: Ended,
    ) -> Decided {
        let p = self.program;
        let node = p.node_by_id(StepPath::parse(step).id());
        let failed = |retry_in_ms, recovered, next| Event::StepFailed {
            step: step.into(),
            attempt: how.attempt,
            error: error.clone(),
            retry_in_ms,
            recovered,
            next,
            duration_ms: how.duration_ms,
            usage: how.usage,
        };
        if let Some(r) = node.and_then(|n| n.retry.as_ref())
            && error.retryable
            && how.attempt <= r.max
        {
            let delay_ms = u64::try_from(r.delay(how.attempt).as_millis()).unwrap_or(u64::MAX);
            let retry = Action::RetryAfter {
                step: step.into(),
                delay_ms,
            };
            return Decided::with(failed(Some(delay_ms), false, None), retry);
        }
        let (recovered, next) = match node.map_or(Recovery::Fail, |n| n.recovery) {
            Recovery::Fail => (false, None),
            Recovery::Continue => match self.successor(st, step) {
                Ok(n) => (true, n),
                Err(_) => (false, None),
            },
            Recovery::Goto(goto) => (true, Node::goto_id(p, goto)),
        };
        let release = Action::Release { step: step.into() };
        Decided::with(failed(None, recovered, next), release)
    }

    /// The step after `step` in its sequence: explicit `next`, else the first edge whose
    /// condition holds, else the next in the list. `None`: the sequence ends.
    pub(super) fn successor(&self, st: &RunState, step: &str) -> Result<Option<String>, StepError> {
        let p = self.program;
        let Some(node) = p.node_by_id(StepPath::parse(step).id()) else {
            return Ok(None);
        };
        if let Some(next) = node.next {
            return Ok(Node::goto_id(p, next));
        }
        if !node.edges.is_empty() {
            let frame = st.locate(step).unwrap_or(0);
            let ctx = st.template_context(p, frame);
            for (i, (when, to)) in node.edges.iter().enumerate() {
                let take = match when {
                    None => true,
                    Some(w) => {
                        context::eval(p, &format!("edge {i} from {}", node.id), w, &ctx)?.is_true()
                    }
                };
                if take {
                    return Ok(Node::goto_id(p, *to));
                }
            }
        }
        Ok(Node::goto_id(p, node.seq_next))
    }
}

pub(super) fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}
