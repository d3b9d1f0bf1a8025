//! The engine's core: a deterministic state machine over the run log.
//!
//! [`RunState`] is a fold over [`Event`]s: [`Machine::apply`] changes the state for one event
//! and nothing else. [`Machine::handle`] takes an [`Input`] (a result, a command, a timer),
//! decides what happens, and returns the events that say so, already applied. The executor
//! writes those events to the log before it acts on them, so replaying the log through `apply`
//! rebuilds exactly the state the run had. No I/O here.

use std::collections::{BTreeMap, BTreeSet};

use baton_types::{
    Event, HumanKind, JoinStrategy, OnError, PauseReason, Progress, RunId, RunStatus, StepError,
    StepErrorKind, StepKind, Usage,
};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::context;
use crate::program::{NodeIdx, NodeKind, Program, ROOT, ScopeIdx};

pub type FrameId = u32;

/// What a finished sequence or step gave.
pub type Outcome = Result<Value, StepError>;

/// An active step instance.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct StepRun {
    pub node: NodeIdx,
    pub frame: FrameId,
    pub attempt: u32,
    pub visit: u32,
    pub key: String,
    pub phase: Phase,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "phase", rename_all = "snake_case")]
pub enum Phase {
    Running,
    /// Failed; another attempt starts after the delay.
    RetryWait,
    /// A human step: asked (or about to be), waiting for an answer.
    Human {
        requested: bool,
    },
    /// A human answered; the step ends on the next `handle`.
    Answered {
        approved: bool,
        /// Boxed: every step run carries a `Phase`, and few are answers.
        value: Box<Value>,
        comment: Option<String>,
    },
}

/// A sequence being run: the top level, a parallel branch, a group body, a map item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeqFrame {
    pub scope: ScopeIdx,
    /// The fan this sequence belongs to, and its slot there.
    pub fan: Option<(FrameId, usize)>,
    /// Appended to step ids to name step instances (`[2]` inside item 2 of a map).
    pub suffix: String,
    /// The map item bound in this sequence: (name, value, index).
    pub binding: Option<(String, Value, usize)>,
    /// The node to run next (none: the sequence is over).
    pub cursor: Option<NodeIdx>,
    /// The step instance running now.
    pub current: Option<String>,
    pub started: bool,
    pub last: Value,
    pub outcome: Option<Outcome>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FanKind {
    Parallel,
    Map,
    Group,
}

/// Several sequences run for one step (parallel branches, map items, a group body).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct FanFrame {
    pub kind: FanKind,
    /// The step instance this fan runs.
    pub step: String,
    /// The sequence holding that step.
    pub host: FrameId,
    pub children: Vec<FrameId>,
    pub results: Vec<Option<Outcome>>,
    /// Slots in the order they finished.
    pub finished: Vec<usize>,
    pub strategy: JoinStrategy,
    pub max_concurrency: Option<u32>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "frame", rename_all = "snake_case")]
#[allow(clippy::large_enum_variant)] // boxed as a whole in `RunState::frames`
pub enum Frame {
    Seq(SeqFrame),
    Fan(FanFrame),
}

/// Everything the engine knows about a run. Serializable: it is the checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunState {
    pub run_id: RunId,
    pub status: RunStatus,
    pub inputs: Value,
    pub state: Map<String, Value>,
    /// Outputs by step instance (`id`, or `id[2]` inside a map).
    pub outputs: BTreeMap<String, Value>,
    pub errors: BTreeMap<String, String>,
    pub visits: BTreeMap<String, u32>,
    /// Boxed: a map node holds eleven entries, allocated in full even for one frame.
    pub frames: BTreeMap<FrameId, Box<Frame>>,
    pub next_frame: FrameId,
    /// Active step instances.
    pub steps: BTreeMap<String, StepRun>,
    /// Step instances ready to start, with their sequence.
    pub ready: BTreeMap<String, FrameId>,
    pub pause: Option<PauseReason>,
    /// Pause before every step.
    pub stepping: bool,
    /// Step ids to pause before.
    pub breakpoints: BTreeSet<String>,
    /// The step instance let past its breakpoint by the last resume.
    pub released: Option<String>,
    pub cancelling: bool,
    pub usage: Usage,
    pub result: Option<Value>,
    pub error: Option<String>,
    /// The step instance whose failure last ended a sequence (named in the run's error).
    #[serde(default)]
    pub last_failed: Option<String>,
    /// Seq of the last event applied.
    pub last_seq: u64,
}

/// Something that happened outside the state machine.
#[derive(Clone, Debug)]
pub enum Input {
    /// A process starts the run (`resumed`: it was started before).
    Start {
        resumed: bool,
    },
    /// A step's work ended.
    Done {
        step: String,
        attempt: u32,
        result: Outcome,
        usage: Usage,
        duration_ms: u64,
    },
    /// A step reports progress.
    Progress {
        step: String,
        progress: Progress,
    },
    /// A retry delay passed.
    RetryDue {
        step: String,
    },
    Human {
        step: String,
        approved: bool,
        value: Value,
        comment: Option<String>,
        by: Option<String>,
    },
    Pause,
    Resume {
        stepping: bool,
    },
    Cancel,
}

/// Why an input was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refused {
    #[error("step '{0}' is not waiting for a person")]
    NotWaiting(String),
    #[error("the run is already {0}")]
    Terminal(RunStatus),
    #[error("the run is not paused")]
    NotPaused,
}

/// Engine options set when a run is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub breakpoints: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stepping: bool,
}

impl RunState {
    pub fn new(run_id: RunId, inputs: Value, program: &Program, options: &RunOptions) -> RunState {
        let mut st = RunState {
            run_id,
            status: RunStatus::Pending,
            inputs,
            state: program.doc.state.clone(),
            outputs: BTreeMap::new(),
            errors: BTreeMap::new(),
            visits: BTreeMap::new(),
            frames: BTreeMap::new(),
            next_frame: 0,
            steps: BTreeMap::new(),
            ready: BTreeMap::new(),
            pause: None,
            stepping: options.stepping,
            breakpoints: options.breakpoints.clone(),
            released: None,
            cancelling: false,
            usage: Usage::default(),
            result: None,
            error: None,
            last_failed: None,
            // Event 1 is always `RunCreated`, written when the run is created.
            last_seq: 1,
        };
        st.new_seq(program, ROOT, None, String::new(), None);
        st
    }

    pub fn seq(&self, f: FrameId) -> Option<&SeqFrame> {
        match self.frames.get(&f).map(Box::as_ref) {
            Some(Frame::Seq(s)) => Some(s),
            _ => None,
        }
    }

    fn seq_mut(&mut self, f: FrameId) -> Option<&mut SeqFrame> {
        match self.frames.get_mut(&f).map(Box::as_mut) {
            Some(Frame::Seq(s)) => Some(s),
            _ => None,
        }
    }

    fn fan_mut(&mut self, f: FrameId) -> Option<&mut FanFrame> {
        match self.frames.get_mut(&f).map(Box::as_mut) {
            Some(Frame::Fan(s)) => Some(s),
            _ => None,
        }
    }

    pub fn frame_suffix(&self, f: FrameId) -> &str {
        self.seq(f).map(|s| s.suffix.as_str()).unwrap_or("")
    }

    /// Map items bound around frame `f`, outermost first.
    pub fn bindings(&self, f: FrameId) -> Vec<(String, Value, usize)> {
        let mut out = Vec::new();
        let mut cur = Some(f);
        while let Some(id) = cur {
            match self.frames.get(&id).map(Box::as_ref) {
                Some(Frame::Seq(s)) => {
                    if let Some(b) = &s.binding {
                        out.push(b.clone());
                    }
                    cur = s.fan.map(|(fan, _)| fan);
                }
                Some(Frame::Fan(fan)) => cur = Some(fan.host),
                None => cur = None,
            }
        }
        out.reverse();
        out
    }

    fn new_seq(
        &mut self,
        program: &Program,
        scope: ScopeIdx,
        fan: Option<(FrameId, usize)>,
        suffix: String,
        binding: Option<(String, Value, usize)>,
    ) -> FrameId {
        let id = self.next_frame;
        self.next_frame += 1;
        let cursor = program.scope_start(scope);
        if let Some(c) = cursor {
            self.ready
                .insert(format!("{}{suffix}", program.node(c).id), id);
        }
        let outcome = if cursor.is_none() {
            Some(Ok(Value::Null))
        } else {
            None
        };
        self.frames.insert(
            id,
            Box::new(Frame::Seq(SeqFrame {
                scope,
                fan,
                suffix,
                binding,
                cursor,
                current: None,
                started: false,
                last: Value::Null,
                outcome: None,
            })),
        );
        if let Some(o) = outcome {
            self.finish_seq(id, o);
        }
        id
    }

    /// Ends a sequence and reports to its fan.
    fn finish_seq(&mut self, f: FrameId, outcome: Outcome) {
        let Some(s) = self.seq_mut(f) else { return };
        s.cursor = None;
        s.current = None;
        s.outcome = Some(outcome.clone());
        if let Some((fan, slot)) = s.fan
            && let Some(fan) = self.fan_mut(fan)
            && fan.results.get(slot).is_some_and(Option::is_none)
        {
            fan.results[slot] = Some(outcome);
            fan.finished.push(slot);
        }
    }

    /// Removes a frame and every frame under it, with their ready entries.
    fn remove_tree(&mut self, f: FrameId) {
        let mut stack = vec![f];
        while let Some(id) = stack.pop() {
            if let Some(fr) = self.frames.remove(&id) {
                match *fr {
                    Frame::Fan(fan) => stack.extend(fan.children),
                    Frame::Seq(s) => {
                        if let Some(cur) = &s.current
                            && let Some(sr) = self.steps.get(cur)
                            && sr.frame == id
                        {
                            self.steps.remove(cur);
                        }
                        // Sub-fans hosted by this sequence.
                        let hosted: Vec<FrameId> = self
                            .frames
                            .iter()
                            .filter(|(_, fr)| matches!(fr.as_ref(), Frame::Fan(x) if x.host == id))
                            .map(|(k, _)| *k)
                            .collect();
                        stack.extend(hosted);
                    }
                }
            }
        }
        self.ready.retain(|_, fr| self.frames.contains_key(fr));
    }

    fn fan_of_step(&self, step: &str) -> Option<FrameId> {
        self.frames.iter().find_map(|(id, f)| match f.as_ref() {
            Frame::Fan(x) if x.step == step => Some(*id),
            _ => None,
        })
    }

    /// Where an active or ready step instance lives.
    fn locate(&self, step: &str) -> Option<FrameId> {
        self.steps
            .get(step)
            .map(|s| s.frame)
            .or_else(|| self.ready.get(step).copied())
    }

    fn recompute_status(&mut self) {
        if self.status.is_terminal() {
            return;
        }
        if self.status == RunStatus::Pending {
            return;
        }
        let working = self.steps.values().any(|s| {
            matches!(
                s.phase,
                Phase::Running | Phase::RetryWait | Phase::Answered { .. }
            )
        });
        self.status = if self.pause.is_some() {
            RunStatus::Paused
        } else if !working
            && self
                .steps
                .values()
                .any(|s| matches!(s.phase, Phase::Human { .. }))
        {
            RunStatus::Waiting
        } else {
            RunStatus::Running
        };
    }

    /// Step instances whose work must be (re)launched: agent and tool steps running now.
    pub fn running_work(&self) -> Vec<(String, StepRun)> {
        self.steps
            .iter()
            .filter(|(_, s)| s.phase == Phase::Running)
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect()
    }

    /// Steps waiting for a person: (step, prompt kind).
    pub fn waiting_humans(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Human { .. }))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Steps waiting for a retry.
    pub fn retry_waits(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| s.phase == Phase::RetryWait)
            .map(|(k, _)| k.clone())
            .collect()
    }
}

/// The state machine of one workflow.
pub struct Machine<'p> {
    pub program: &'p Program,
}

impl<'p> Machine<'p> {
    pub fn new(program: &'p Program) -> Self {
        Self { program }
    }

    /// Applies one event to the state. Pure bookkeeping: every decision is in the event.
    pub fn apply(&self, st: &mut RunState, ev: &Event) {
        let p = self.program;
        match ev {
            Event::RunCreated { .. } => {}
            Event::RunStarted { .. } => {
                if !st.status.is_terminal() {
                    st.status = RunStatus::Running;
                }
            }
            Event::StepStarted {
                step,
                attempt,
                visit,
                key,
            } => {
                let (id, _) = context::split_path(step);
                let Some(node) = p.node_by_id(id) else { return };
                if let Some(sr) = st.steps.get_mut(step) {
                    sr.attempt = *attempt;
                    sr.key = key.clone();
                    sr.phase = Phase::Running;
                } else {
                    let Some(frame) = st.ready.remove(step) else {
                        return;
                    };
                    if st.released.as_deref() == Some(step.as_str()) {
                        st.released = None;
                    }
                    if let Some(s) = st.seq_mut(frame) {
                        s.current = Some(step.clone());
                        s.started = true;
                    }
                    let phase = if matches!(node.kind, NodeKind::Human) {
                        Phase::Human { requested: false }
                    } else {
                        Phase::Running
                    };
                    st.steps.insert(
                        step.clone(),
                        StepRun {
                            node: node.idx,
                            frame,
                            attempt: *attempt,
                            visit: *visit,
                            key: key.clone(),
                            phase,
                        },
                    );
                }
                st.visits.insert(step.clone(), *visit);
                // Fans start with their step (a retry starts a fresh one).
                let Some(frame) = st.steps.get(step).map(|s| s.frame) else {
                    return;
                };
                let suffix = st.frame_suffix(frame).to_string();
                match &node.kind {
                    NodeKind::Parallel { branches, strategy } => {
                        if let Some(old) = st.fan_of_step(step) {
                            st.remove_tree(old);
                        }
                        let fan = self.new_fan(
                            st,
                            FanKind::Parallel,
                            step,
                            frame,
                            *strategy,
                            node.step.max_concurrency(),
                        );
                        for (slot, b) in branches.iter().enumerate() {
                            let c = st.new_seq(p, *b, Some((fan, slot)), suffix.clone(), None);
                            if let Some(f) = st.fan_mut(fan) {
                                f.children.push(c);
                            }
                        }
                    }
                    NodeKind::Group { body } => {
                        if let Some(old) = st.fan_of_step(step) {
                            st.remove_tree(old);
                        }
                        let fan =
                            self.new_fan(st, FanKind::Group, step, frame, JoinStrategy::All, None);
                        let c = st.new_seq(p, *body, Some((fan, 0)), suffix, None);
                        if let Some(f) = st.fan_mut(fan) {
                            f.children.push(c);
                        }
                    }
                    NodeKind::Map { .. } => {
                        if let Some(old) = st.fan_of_step(step) {
                            st.remove_tree(old);
                        }
                    }
                    _ => {}
                }
            }
            Event::MapStarted { step, items } => {
                let (id, _) = context::split_path(step);
                let Some(node) = p.node_by_id(id) else { return };
                let NodeKind::Map { body, item } = &node.kind else {
                    return;
                };
                let Some(frame) = st.steps.get(step).map(|s| s.frame) else {
                    return;
                };
                let suffix = st.frame_suffix(frame).to_string();
                let fan = self.new_fan(
                    st,
                    FanKind::Map,
                    step,
                    frame,
                    JoinStrategy::All,
                    node.step.max_concurrency(),
                );
                if let Some(f) = st.fan_mut(fan) {
                    f.results = vec![None; items.len()];
                }
                for (i, v) in items.iter().enumerate() {
                    let c = st.new_seq(
                        p,
                        *body,
                        Some((fan, i)),
                        format!("{suffix}[{i}]"),
                        Some((item.clone(), v.clone(), i)),
                    );
                    if let Some(f) = st.fan_mut(fan) {
                        f.children.push(c);
                    }
                }
            }
            Event::StepProgress { .. } => {}
            Event::StepSucceeded {
                step,
                output,
                next,
                usage,
                ..
            } => {
                st.usage.add(usage);
                st.outputs.insert(step.clone(), output.clone());
                st.errors.remove(step);
                self.leave_step(st, step, Ok(output.clone()), next.as_deref(), true);
            }
            Event::StepFailed {
                step,
                error,
                retry_in_ms,
                recovered,
                next,
                usage,
                ..
            } => {
                st.usage.add(usage);
                if retry_in_ms.is_some() {
                    if let Some(sr) = st.steps.get_mut(step) {
                        sr.phase = Phase::RetryWait;
                    }
                } else {
                    st.errors.insert(step.clone(), error.message.clone());
                    if *recovered {
                        st.outputs.insert(step.clone(), Value::Null);
                        self.leave_step(st, step, Ok(Value::Null), next.as_deref(), true);
                    } else {
                        st.last_failed = Some(step.clone());
                        self.leave_step(st, step, Err(error.clone()), None, false);
                    }
                }
            }
            Event::StepCancelled { step } => {
                let err = StepError::fatal(StepErrorKind::Cancelled, "cancelled");
                self.leave_step(st, step, Err(err), None, false);
            }
            Event::HumanRequested { step, .. } => {
                if let Some(sr) = st.steps.get_mut(step) {
                    sr.phase = Phase::Human { requested: true };
                }
            }
            Event::HumanResponded {
                step,
                approved,
                value,
                comment,
                ..
            } => {
                if let Some(sr) = st.steps.get_mut(step) {
                    sr.phase = Phase::Answered {
                        approved: *approved,
                        value: Box::new(value.clone()),
                        comment: comment.clone(),
                    };
                }
            }
            Event::StateSet { key, value } => {
                st.state.insert(key.clone(), value.clone());
            }
            Event::Paused { pause } => st.pause = Some(pause.clone()),
            Event::Resumed { stepping } => {
                if let Some(PauseReason::Breakpoint { step }) = st.pause.take() {
                    st.released = Some(step);
                }
                st.stepping = *stepping;
            }
            Event::CancelRequested => st.cancelling = true,
            Event::RunSucceeded { outputs } => {
                st.status = RunStatus::Succeeded;
                st.result = Some(outputs.clone());
            }
            Event::RunFailed { error } => {
                st.status = RunStatus::Failed;
                st.error = Some(error.clone());
            }
            Event::RunCancelled => {
                st.status = RunStatus::Cancelled;
                st.steps.clear();
                st.ready.clear();
            }
        }
        st.recompute_status();
    }

    fn new_fan(
        &self,
        st: &mut RunState,
        kind: FanKind,
        step: &str,
        host: FrameId,
        strategy: JoinStrategy,
        max_concurrency: Option<u32>,
    ) -> FrameId {
        let id = st.next_frame;
        st.next_frame += 1;
        let n = match kind {
            FanKind::Parallel => match &self
                .program
                .node_by_id(context::split_path(step).0)
                .map(|n| &n.kind)
            {
                Some(NodeKind::Parallel { branches, .. }) => branches.len(),
                _ => 0,
            },
            FanKind::Group => 1,
            FanKind::Map => 0,
        };
        st.frames.insert(
            id,
            Box::new(Frame::Fan(FanFrame {
                kind,
                step: step.to_string(),
                host,
                children: Vec::new(),
                results: vec![None; n],
                finished: Vec::new(),
                strategy,
                max_concurrency,
            })),
        );
        id
    }

    /// A step instance ended: move its sequence on to `next`, or end the sequence.
    fn leave_step(
        &self,
        st: &mut RunState,
        step: &str,
        outcome: Outcome,
        next: Option<&str>,
        moves_on: bool,
    ) {
        let p = self.program;
        let Some(frame) = st.locate(step) else { return };
        st.steps.remove(step);
        st.ready.remove(step);
        if let Some(fan) = st.fan_of_step(step) {
            st.remove_tree(fan);
        }
        if !st.frames.contains_key(&frame) {
            return;
        }
        if !moves_on {
            st.finish_seq(frame, outcome);
            return;
        }
        let suffix = st.frame_suffix(frame).to_string();
        let next_node = next.and_then(|n| p.node_by_id(n)).map(|n| n.idx);
        let last = outcome.unwrap_or(Value::Null);
        if let Some(s) = st.seq_mut(frame) {
            s.current = None;
            s.last = last.clone();
            s.cursor = next_node;
        }
        match next_node {
            Some(n) => {
                st.ready.insert(format!("{}{suffix}", p.node(n).id), frame);
            }
            None => st.finish_seq(frame, Ok(last)),
        }
    }

    /// Applies `ev` and records it in `out`.
    fn emit(&self, st: &mut RunState, out: &mut Vec<Event>, ev: Event) {
        self.apply(st, &ev);
        out.push(ev);
    }

    /// Takes an input and returns the events it leads to (already applied to `st`).
    pub fn handle(&self, st: &mut RunState, input: Input) -> Result<Vec<Event>, Refused> {
        let mut out = Vec::new();
        self.handle_into(st, input, &mut out)?;
        Ok(out)
    }

    /// [`Machine::handle`], appending the events to `out` (left as it was when refused).
    pub fn handle_into(
        &self,
        st: &mut RunState,
        input: Input,
        out: &mut Vec<Event>,
    ) -> Result<(), Refused> {
        if st.status.is_terminal() {
            return match input {
                Input::Done { .. } | Input::Progress { .. } | Input::RetryDue { .. } => Ok(()),
                _ => Err(Refused::Terminal(st.status)),
            };
        }
        match input {
            Input::Start { resumed } => self.emit(st, out, Event::RunStarted { resumed }),
            Input::Done {
                step,
                attempt,
                result,
                usage,
                duration_ms,
            } => {
                let current = st
                    .steps
                    .get(&step)
                    .is_some_and(|s| s.attempt == attempt && s.phase == Phase::Running);
                if !current {
                    return Ok(()); // a late result of a cancelled or superseded attempt
                }
                match result {
                    Ok(output) => {
                        let ev = match self.successor(st, &step) {
                            Ok(next) => Event::StepSucceeded {
                                step,
                                output,
                                next,
                                duration_ms,
                                usage,
                            },
                            Err(e) => self.failure(st, &step, attempt, e, usage, duration_ms),
                        };
                        self.emit(st, out, ev);
                    }
                    Err(e) => {
                        let ev = self.failure(st, &step, attempt, e, usage, duration_ms);
                        self.emit(st, out, ev);
                    }
                }
            }
            Input::Progress { step, progress } => {
                // Progress decides nothing: log it (while the step is active) and stop here.
                if st.steps.contains_key(&step) {
                    self.emit(st, out, Event::StepProgress { step, progress });
                }
                return Ok(());
            }
            Input::RetryDue { step } => {
                if let Some(sr) = st.steps.get(&step).filter(|s| s.phase == Phase::RetryWait) {
                    let attempt = sr.attempt + 1;
                    let visit = sr.visit;
                    let key = idempotency_key(st.run_id, &step, visit, attempt);
                    self.emit(
                        st,
                        out,
                        Event::StepStarted {
                            step,
                            attempt,
                            visit,
                            key,
                        },
                    );
                }
            }
            Input::Human {
                step,
                approved,
                value,
                comment,
                by,
            } => {
                if !st
                    .steps
                    .get(&step)
                    .is_some_and(|s| matches!(s.phase, Phase::Human { .. }))
                {
                    return Err(Refused::NotWaiting(step));
                }
                self.emit(
                    st,
                    out,
                    Event::HumanResponded {
                        step,
                        approved,
                        value,
                        comment,
                        by,
                    },
                );
            }
            Input::Pause => {
                if st.pause.is_none() {
                    self.emit(
                        st,
                        out,
                        Event::Paused {
                            pause: PauseReason::User,
                        },
                    );
                }
            }
            Input::Resume { stepping } => {
                if st.pause.is_none() && stepping == st.stepping {
                    return Err(Refused::NotPaused);
                }
                self.emit(st, out, Event::Resumed { stepping });
            }
            Input::Cancel => {
                if !st.cancelling {
                    self.emit(st, out, Event::CancelRequested);
                }
            }
        }
        self.advance(st, out);
        Ok(())
    }

    /// The event for a failed attempt: a retry, a recovery through `on_error`, or a failure.
    fn failure(
        &self,
        st: &RunState,
        step: &str,
        attempt: u32,
        error: StepError,
        usage: Usage,
        duration_ms: u64,
    ) -> Event {
        let p = self.program;
        let node = p.node_by_id(context::split_path(step).0);
        let retry = node.and_then(|n| n.step.retry.as_ref());
        if let Some(r) = retry
            && error.retryable
            && attempt <= r.max
        {
            let delay = u64::try_from(r.delay(attempt).as_millis()).unwrap_or(u64::MAX);
            return Event::StepFailed {
                step: step.into(),
                attempt,
                error,
                retry_in_ms: Some(delay),
                recovered: false,
                next: None,
                duration_ms,
                usage,
            };
        }
        let on_error = node.map(|n| p.on_error(n.idx)).unwrap_or(OnError::Fail);
        let (recovered, next) = match on_error {
            OnError::Fail => (false, None),
            OnError::Continue => match self.successor(st, step) {
                Ok(n) => (true, n),
                Err(_) => (false, None),
            },
            OnError::Goto(t) => (true, if t == baton_types::END { None } else { Some(t) }),
        };
        Event::StepFailed {
            step: step.into(),
            attempt,
            error,
            retry_in_ms: None,
            recovered,
            next,
            duration_ms,
            usage,
        }
    }

    /// The step after `step` in its sequence: explicit `next`, else the first matching edge,
    /// else the next in the list. `None`: the sequence ends.
    fn successor(&self, st: &RunState, step: &str) -> Result<Option<String>, StepError> {
        let p = self.program;
        let Some(node) = p.node_by_id(context::split_path(step).0) else {
            return Ok(None);
        };
        if let Some(n) = &node.step.next {
            return Ok(if n == baton_types::END {
                None
            } else {
                Some(n.clone())
            });
        }
        if !node.edges.is_empty() {
            let frame = st.locate(step).unwrap_or(0);
            let ctx = context::build(p, st, frame);
            for (i, (when, to)) in node.edges.iter().enumerate() {
                let take = match when {
                    None => true,
                    Some(w) => {
                        context::eval(p, &format!("edge {i} from {}", node.id), w, &ctx)?.is_true()
                    }
                };
                if take {
                    return Ok(to.map(|t| p.node(t).id.clone()));
                }
            }
        }
        Ok(node.seq_next.map(|n| p.node(n).id.clone()))
    }

    /// Moves the run forward as far as it can go without outside results.
    fn advance(&self, st: &mut RunState, out: &mut Vec<Event>) {
        for _ in 0..100_000 {
            if st.status.is_terminal() {
                return;
            }
            if st.cancelling {
                let active: Vec<String> = st.steps.keys().cloned().collect();
                for s in active {
                    self.emit(st, out, Event::StepCancelled { step: s });
                }
                self.emit(st, out, Event::RunCancelled);
                return;
            }
            if let Some(Frame::Seq(root)) = st.frames.get(&0).map(Box::as_ref)
                && let Some(outcome) = root.outcome.clone()
            {
                let ev = match outcome {
                    Ok(last) => match self.run_outputs(st, last) {
                        Ok(outputs) => Event::RunSucceeded { outputs },
                        Err(e) => Event::RunFailed {
                            error: format!("outputs: {}", e.message),
                        },
                    },
                    Err(e) => Event::RunFailed {
                        error: self.describe_failure(st, &e),
                    },
                };
                self.emit(st, out, ev);
                return;
            }
            let evs = self.next_decision(st);
            if evs.is_empty() {
                return;
            }
            for ev in evs {
                self.emit(st, out, ev);
            }
        }
    }

    fn describe_failure(&self, st: &RunState, e: &StepError) -> String {
        match &st.last_failed {
            Some(s) => format!("step '{s}' failed: {}", e.message),
            None => e.message.clone(),
        }
    }

    fn run_outputs(&self, st: &RunState, last: Value) -> Result<Value, StepError> {
        let p = self.program;
        if p.doc.outputs.is_empty() {
            return Ok(last);
        }
        let ctx = context::build(p, st, 0);
        let mut m = Map::new();
        for k in p.doc.outputs.keys() {
            let name = format!("outputs.{k}");
            let src = &p.doc.outputs[k];
            let v = match crate::template::sole_expression(src) {
                Some(expr) => context::to_json(&context::eval(p, &name, expr, &ctx)?),
                None => Value::String(context::render(p, &name, &ctx)?),
            };
            m.insert(k.clone(), v);
        }
        Ok(Value::Object(m))
    }

    /// The next thing the engine decides on its own, if any.
    fn next_decision(&self, st: &RunState) -> Vec<Event> {
        let Some(ev) = self.decide(st) else {
            return Vec::new();
        };
        // state.set: the keys are set by events logged before the step's success.
        if let Event::StepSucceeded {
            step,
            output: Value::Object(m),
            ..
        } = &ev
            && let Some(node) = self.program.node_by_id(context::split_path(step).0)
            && matches!(&node.kind, NodeKind::Tool { name } if name == "state.set")
        {
            let mut evs: Vec<Event> = m
                .iter()
                .map(|(k, v)| Event::StateSet {
                    key: k.clone(),
                    value: v.clone(),
                })
                .collect();
            evs.push(ev);
            return evs;
        }
        vec![ev]
    }

    fn decide(&self, st: &RunState) -> Option<Event> {
        let p = self.program;
        // 1. Fans whose join is decided.
        for (&fid, f) in &st.frames {
            let Frame::Fan(fan) = f.as_ref() else {
                continue;
            };
            if !st
                .steps
                .get(&fan.step)
                .is_some_and(|s| s.phase == Phase::Running)
            {
                continue;
            }
            let Some(outcome) = join(fan, p) else {
                continue;
            };
            // Stop branches still running before the fan's step ends.
            if let Some(running) = self.running_under(st, fid) {
                return Some(Event::StepCancelled { step: running });
            }
            let attempt = st.steps.get(&fan.step).map(|s| s.attempt).unwrap_or(1);
            return Some(match outcome {
                Ok(v) => match self.successor(st, &fan.step) {
                    Ok(next) => Event::StepSucceeded {
                        step: fan.step.clone(),
                        output: v,
                        next,
                        duration_ms: 0,
                        usage: Usage::default(),
                    },
                    Err(e) => self.failure(st, &fan.step, attempt, e, Usage::default(), 0),
                },
                Err(e) => self.failure(st, &fan.step, attempt, e, Usage::default(), 0),
            });
        }
        // 2. Human steps: ask, or end with the answer.
        for (step, sr) in &st.steps {
            match &sr.phase {
                Phase::Human { requested: false } => {
                    let node = p.node(sr.node);
                    let (kind, ctx) = (human_kind(node), context::build(p, st, sr.frame));
                    return Some(
                        match context::render(p, &format!("{}.human", node.id), &ctx) {
                            Ok(prompt) => Event::HumanRequested {
                                step: step.clone(),
                                prompt,
                                kind,
                            },
                            Err(e) => self.failure(st, step, sr.attempt, e, Usage::default(), 0),
                        },
                    );
                }
                Phase::Answered {
                    approved,
                    value,
                    comment,
                } => {
                    let node = p.node(sr.node);
                    let kind = human_kind(node);
                    if kind == HumanKind::Approval && !approved {
                        let msg = match comment {
                            Some(c) => format!("rejected: {c}"),
                            None => "rejected".to_string(),
                        };
                        let e = StepError::fatal(StepErrorKind::Rejected, msg);
                        return Some(self.failure(st, step, sr.attempt, e, Usage::default(), 0));
                    }
                    let output =
                        json!({ "approved": approved, "value": value, "comment": comment });
                    return Some(match self.successor(st, step) {
                        Ok(next) => Event::StepSucceeded {
                            step: step.clone(),
                            output,
                            next,
                            duration_ms: 0,
                            usage: Usage::default(),
                        },
                        Err(e) => self.failure(st, step, sr.attempt, e, Usage::default(), 0),
                    });
                }
                _ => {}
            }
        }
        // 3. Synchronous steps that started: conditions, switches, state.set, map lists.
        for (step, sr) in &st.steps {
            if sr.phase != Phase::Running {
                continue;
            }
            let node = p.node(sr.node);
            let sync = match &node.kind {
                NodeKind::Condition | NodeKind::Switch => true,
                NodeKind::Tool { name } => name == "state.set",
                NodeKind::Map { .. } => st.fan_of_step(step).is_none(),
                _ => false,
            };
            if sync {
                return Some(self.run_sync(st, step, sr));
            }
        }
        // 4. Start ready steps.
        if st.pause.is_some() {
            return None;
        }
        for (step, &frame) in &st.ready {
            if !self.may_start(st, frame) {
                continue;
            }
            let id = context::split_path(step).0;
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
            if let Some(max) = node.step.max_visits
                && visit > max
            {
                let e = StepError::fatal(
                    StepErrorKind::MaxVisits,
                    format!(
                        "step '{id}' would run a {} time, past its max_visits of {max}",
                        ordinal(visit)
                    ),
                );
                return Some(self.failure(st, step, 1, e, Usage::default(), 0));
            }
            let breaks = st.stepping || st.breakpoints.contains(id);
            if breaks && st.released.as_deref() != Some(step.as_str()) {
                return Some(Event::Paused {
                    pause: PauseReason::Breakpoint { step: step.clone() },
                });
            }
            let key = idempotency_key(st.run_id, step, visit, 1);
            return Some(Event::StepStarted {
                step: step.clone(),
                attempt: 1,
                visit,
                key,
            });
        }
        None
    }

    /// The first step instance still active under fan `fid`, if any.
    fn running_under(&self, st: &RunState, fid: FrameId) -> Option<String> {
        let mut under = BTreeSet::new();
        let mut stack = vec![fid];
        while let Some(id) = stack.pop() {
            under.insert(id);
            match st.frames.get(&id).map(Box::as_ref) {
                Some(Frame::Fan(f)) => stack.extend(f.children.iter().copied()),
                Some(Frame::Seq(_)) => {
                    for (k, f) in &st.frames {
                        if let Frame::Fan(x) = f.as_ref()
                            && x.host == id
                        {
                            stack.push(*k);
                        }
                    }
                }
                None => {}
            }
        }
        st.steps
            .iter()
            .find(|(_, s)| under.contains(&s.frame))
            .map(|(k, _)| k.clone())
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
        let Some(Frame::Fan(fan)) = st.frames.get(&fid).map(Box::as_ref) else {
            return true;
        };
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

    fn run_sync(&self, st: &RunState, step: &str, sr: &StepRun) -> Event {
        let p = self.program;
        let node = p.node(sr.node);
        let ctx = context::build(p, st, sr.frame);
        let ok = |output: Value, next: Option<String>| Event::StepSucceeded {
            step: step.into(),
            output,
            next,
            duration_ms: 0,
            usage: Usage::default(),
        };
        let fail = |e: StepError| self.failure(st, step, sr.attempt, e, Usage::default(), 0);
        let target = |name: Option<&String>| -> Option<String> {
            match name {
                Some(n) if n == baton_types::END => None,
                Some(n) => Some(n.clone()),
                None => node.seq_next.map(|n| p.node(n).id.clone()),
            }
        };
        match &node.kind {
            NodeKind::Condition => {
                let StepKind::Condition(c) = &node.step.kind else {
                    return fail(StepError::fatal(StepErrorKind::Template, "no condition"));
                };
                match context::eval(p, &format!("{}.if", node.id), &c.condition, &ctx) {
                    Ok(v) => {
                        let taken = v.is_true();
                        let next = target(if taken {
                            c.then.as_ref()
                        } else {
                            c.otherwise.as_ref()
                        });
                        ok(json!({ "result": taken, "next": next }), next)
                    }
                    Err(e) => fail(e),
                }
            }
            NodeKind::Switch => {
                let StepKind::Switch(sw) = &node.step.kind else {
                    return fail(StepError::fatal(StepErrorKind::Template, "no cases"));
                };
                for (i, c) in sw.cases.iter().enumerate() {
                    match context::eval(p, &format!("{}.switch.cases[{i}]", node.id), &c.when, &ctx)
                    {
                        Ok(v) if v.is_true() => {
                            let next = target(Some(&c.goto));
                            return ok(json!({ "case": i, "next": next }), next);
                        }
                        Ok(_) => {}
                        Err(e) => return fail(e),
                    }
                }
                let next = target(sw.default.as_ref());
                ok(json!({ "case": null, "next": next }), next)
            }
            NodeKind::Tool { .. } => {
                let args = node.tool_args();
                match context::render_args(p, &format!("{}.with", node.id), &args, &ctx) {
                    Ok(v) => match self.successor(st, step) {
                        Ok(next) => ok(v, next),
                        Err(e) => fail(e),
                    },
                    Err(e) => fail(e),
                }
            }
            NodeKind::Map { .. } => {
                let over = match &node.step.kind {
                    StepKind::Map(m) => m.map.over.as_str(),
                    _ => "[]",
                };
                match context::eval(p, &format!("{}.map.over", node.id), over, &ctx) {
                    Ok(v) => match context::to_json(&v) {
                        Value::Array(items) => Event::MapStarted {
                            step: step.into(),
                            items,
                        },
                        other => fail(StepError::fatal(
                            StepErrorKind::Template,
                            format!(
                                "map.over of '{}' gave {} instead of a list",
                                node.id,
                                kind_of(&other)
                            ),
                        )),
                    },
                    Err(e) => fail(e),
                }
            }
            _ => fail(StepError::fatal(
                StepErrorKind::Execution,
                "not a synchronous step",
            )),
        }
    }
}

/// The outcome of a fan when its join is decided.
fn join(fan: &FanFrame, p: &Program) -> Option<Outcome> {
    let n = fan.results.len();
    match fan.kind {
        FanKind::Group => fan.results.first().cloned().flatten(),
        FanKind::Map => {
            if let Some(e) = fan
                .finished
                .iter()
                .find_map(|&i| fan.results[i].as_ref().and_then(|r| r.as_ref().err()))
            {
                return Some(Err(wrap(e, "an item failed")));
            }
            if fan.results.iter().all(Option::is_some) {
                return Some(Ok(Value::Array(
                    fan.results
                        .iter()
                        .map(|r| r.clone().and_then(Result::ok).unwrap_or(Value::Null))
                        .collect(),
                )));
            }
            None
        }
        FanKind::Parallel => {
            let names: Vec<String> = match p
                .node_by_id(context::split_path(&fan.step).0)
                .map(|n| &n.step)
            {
                Some(s) => s.children().iter().map(|b| b.id.clone()).collect(),
                None => (0..n).map(|i| i.to_string()).collect(),
            };
            match fan.strategy {
                JoinStrategy::All => {
                    if let Some(&i) = fan
                        .finished
                        .iter()
                        .find(|&&i| fan.results[i].as_ref().is_some_and(|r| r.is_err()))
                    {
                        let e = fan.results[i].clone().and_then(Result::err)?;
                        return Some(Err(wrap(
                            &e,
                            &format!(
                                "branch '{}' failed",
                                names.get(i).cloned().unwrap_or_default()
                            ),
                        )));
                    }
                    if fan.results.iter().all(Option::is_some) {
                        let mut m = Map::new();
                        for (i, r) in fan.results.iter().enumerate() {
                            m.insert(
                                names.get(i).cloned().unwrap_or_else(|| i.to_string()),
                                r.clone().and_then(Result::ok).unwrap_or(Value::Null),
                            );
                        }
                        return Some(Ok(Value::Object(m)));
                    }
                    None
                }
                JoinStrategy::Any => fan.finished.first().and_then(|&i| {
                    fan.results[i].clone().map(|r| {
                        r.map(|v| json!({ "branch": names.get(i), "output": v }))
                            .map_err(|e| {
                                wrap(
                                    &e,
                                    &format!(
                                        "branch '{}' failed",
                                        names.get(i).cloned().unwrap_or_default()
                                    ),
                                )
                            })
                    })
                }),
                JoinStrategy::FirstSuccess => {
                    if let Some(&i) = fan
                        .finished
                        .iter()
                        .find(|&&i| fan.results[i].as_ref().is_some_and(|r| r.is_ok()))
                    {
                        let v = fan.results[i]
                            .clone()
                            .and_then(Result::ok)
                            .unwrap_or(Value::Null);
                        return Some(Ok(json!({ "branch": names.get(i), "output": v })));
                    }
                    if fan.results.iter().all(Option::is_some) {
                        let msgs: Vec<String> = fan
                            .results
                            .iter()
                            .enumerate()
                            .filter_map(|(i, r)| {
                                r.as_ref().and_then(|r| r.as_ref().err()).map(|e| {
                                    format!(
                                        "{}: {}",
                                        names.get(i).cloned().unwrap_or_default(),
                                        e.message
                                    )
                                })
                            })
                            .collect();
                        return Some(Err(StepError::fatal(
                            StepErrorKind::Branch,
                            format!("every branch failed ({})", msgs.join("; ")),
                        )));
                    }
                    None
                }
            }
        }
    }
}

fn human_kind(node: &crate::program::Node) -> HumanKind {
    match &node.step.kind {
        StepKind::Human(h) => h.kind,
        _ => HumanKind::default(),
    }
}

fn wrap(e: &StepError, what: &str) -> StepError {
    StepError {
        kind: StepErrorKind::Branch,
        message: format!("{what}: {}", e.message),
        retryable: e.retryable,
    }
}

fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}

fn ordinal(n: u32) -> String {
    let suffix = match (n % 10, n % 100) {
        (1, x) if x != 11 => "st",
        (2, x) if x != 12 => "nd",
        (3, x) if x != 13 => "rd",
        _ => "th",
    };
    format!("{n}{suffix}")
}

/// The idempotency key of one attempt of one visit of a step instance.
pub fn idempotency_key(run: RunId, step: &str, visit: u32, attempt: u32) -> String {
    // Written by hand: `format!` costs more than the rest of starting a step.
    let mut key = String::with_capacity(32 + step.len() + 24);
    run.write_to(&mut key);
    key.push(':');
    key.push_str(step);
    key.push(':');
    key.push_str(itoa::Buffer::new().format(visit));
    key.push(':');
    key.push_str(itoa::Buffer::new().format(attempt));
    key
}
