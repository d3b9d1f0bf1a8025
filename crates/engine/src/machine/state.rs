//! What the engine knows about a run: [`RunState`], the checkpoint. Its step instances
//! ([`StepRun`]) live in frames: a [`SeqFrame`] runs one list of steps (the top level, a
//! parallel branch, a group body, a map item), a [`FanFrame`] runs several sequences for one
//! step and collects their outcomes for its join. This file holds the state and the
//! bookkeeping the fold ([`super::apply`]) does on it; it decides nothing.

use std::collections::{BTreeMap, BTreeSet};

use baton_types::{JoinStrategy, PauseReason, RunId, RunStatus, StepError, StepPath, Usage};
use minijinja::Value as MjValue;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

pub use super::journal::{CallRecord, Journal, ReplyRecord};
use crate::program::{NodeIdx, Program, ROOT, ScopeIdx};

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
    /// What the step's work did so far in this visit (agent steps: model replies and tool
    /// calls): what a resumed or retried attempt replays instead of doing again.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub journal: Option<Box<Journal>>,
    /// A `tool:` or `sandbox:` step's call as the policy allowed it (`policy_decided`): the
    /// attempt and the rendered arguments it sends. Absent: not checked (no policy rules).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checked: Option<Box<Checked>>,
}

/// The call a `tool:` or `sandbox:` step's attempt was allowed to make.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Checked {
    pub attempt: u32,
    pub arguments: Value,
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
        /// When the wait ends unanswered (Unix ms), once asked.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<i64>,
        /// Whether the request went to `human.escalate_to`.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        escalated: bool,
    },
    /// A human answered; the step ends on the next `handle`.
    Answered {
        approved: bool,
        /// Boxed: every step run carries a `Phase`, and few are answers.
        value: Box<Value>,
        comment: Option<String>,
    },
    /// An agent step with `wait_for`: waits until a message from `from` is in its agent's
    /// inbox (then `step_woke` starts its work), or until the deadline (Unix ms).
    Message {
        from: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        deadline_ms: Option<i64>,
    },
    /// A resumed attempt found an effect that was started but never finished, of a tool that
    /// cannot be repeated safely: waits for `baton runs resolve`.
    Ambiguous {
        /// The agent's tool call (absent: the `tool:` step's own call).
        call: Option<u32>,
        tool: String,
    },
}

/// A sequence being run: the top level, a parallel branch, a group body, a map item.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct SeqFrame {
    pub scope: ScopeIdx,
    /// The fan this sequence belongs to, and its slot there.
    pub fan: Option<(FrameId, usize)>,
    /// The map items this sequence runs in (`[2]` inside item 2 of a map): appended to step
    /// ids to name step instances (see [`StepPath`]).
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
    /// What the run spent, against its budget.
    #[serde(default, skip_serializing_if = "super::BudgetState::is_empty")]
    pub budget: super::BudgetState,
    /// The agents as a team: lifecycle, inboxes, channels, shared memory.
    #[serde(default, skip_serializing_if = "super::TeamState::is_empty")]
    pub team: super::TeamState,
    /// The branch holding each `last_writer_by_priority` state key (see `contracts`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub state_owners: BTreeMap<String, super::StateOwner>,
    /// What the last visit of each loop step saw (see `runaway`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub loop_marks: BTreeMap<String, super::LoopMark>,
}

/// Engine options set when a run is created.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct RunOptions {
    #[serde(default, skip_serializing_if = "BTreeSet::is_empty")]
    pub breakpoints: BTreeSet<String>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stepping: bool,
    /// The registry agents the run's steps refer to, by reference as written, frozen when the
    /// run was created (also logged as `agents_resolved`): every resume compiles the workflow
    /// with these versions.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub agents: BTreeMap<String, baton_types::PinnedAgent>,
    /// The tags a worker must have to run it (`baton run --queue --worker-tags`): only a
    /// `baton worker` having all of them claims the run. The engine never reads them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub worker_tags: Vec<String>,
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
            budget: Default::default(),
            team: Default::default(),
            state_owners: BTreeMap::new(),
            loop_marks: BTreeMap::new(),
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

    pub(super) fn seq_mut(&mut self, f: FrameId) -> Option<&mut SeqFrame> {
        match self.frames.get_mut(&f).map(Box::as_mut) {
            Some(Frame::Seq(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn fan(&self, f: FrameId) -> Option<&FanFrame> {
        match self.frames.get(&f).map(Box::as_ref) {
            Some(Frame::Fan(s)) => Some(s),
            _ => None,
        }
    }

    pub(super) fn fan_mut(&mut self, f: FrameId) -> Option<&mut FanFrame> {
        match self.frames.get_mut(&f).map(Box::as_mut) {
            Some(Frame::Fan(s)) => Some(s),
            _ => None,
        }
    }

    /// The map items frame `f` runs in (see [`SeqFrame::suffix`]).
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

    /// Starts a sequence over `scope` (ending it at once when the scope is empty).
    pub(super) fn new_seq(
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
                .insert(StepPath::instance(&program.node(c).id, &suffix), id);
        }
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
        if cursor.is_none() {
            self.finish_seq(id, Ok(Value::Null));
        }
        id
    }

    /// Starts a fan for `step` (hosted by sequence `host`) with `slots` result slots.
    pub(super) fn new_fan(
        &mut self,
        kind: FanKind,
        step: &str,
        host: FrameId,
        (strategy, max_concurrency): (JoinStrategy, Option<u32>),
        slots: usize,
    ) -> FrameId {
        let id = self.next_frame;
        self.next_frame += 1;
        self.frames.insert(
            id,
            Box::new(Frame::Fan(FanFrame {
                kind,
                step: step.to_string(),
                host,
                children: Vec::new(),
                results: vec![None; slots],
                finished: Vec::new(),
                strategy,
                max_concurrency,
            })),
        );
        id
    }

    /// Ends a sequence and reports to its fan.
    pub(super) fn finish_seq(&mut self, f: FrameId, outcome: Outcome) {
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

    /// The frames hosted by sequence `f` (the fans of its steps).
    fn hosted_by(&self, f: FrameId) -> impl Iterator<Item = FrameId> + '_ {
        self.frames
            .iter()
            .filter_map(move |(k, fr)| match fr.as_ref() {
                Frame::Fan(x) if x.host == f => Some(*k),
                _ => None,
            })
    }

    /// Removes a frame and every frame under it, with their ready entries.
    pub(super) fn remove_tree(&mut self, f: FrameId) {
        let mut stack = vec![f];
        while let Some(id) = stack.pop() {
            let Some(fr) = self.frames.remove(&id) else {
                continue;
            };
            match *fr {
                Frame::Fan(fan) => stack.extend(fan.children),
                Frame::Seq(s) => {
                    if let Some(cur) = &s.current
                        && self.steps.get(cur).is_some_and(|sr| sr.frame == id)
                    {
                        self.steps.remove(cur);
                    }
                    stack.extend(self.hosted_by(id));
                }
            }
        }
        self.ready.retain(|_, fr| self.frames.contains_key(fr));
    }

    /// The fan a step instance runs, if it has one.
    pub(super) fn fan_of_step(&self, step: &str) -> Option<FrameId> {
        self.frames.iter().find_map(|(id, f)| match f.as_ref() {
            Frame::Fan(x) if x.step == step => Some(*id),
            _ => None,
        })
    }

    /// The first step instance still active under fan `fid`, if any.
    pub(super) fn active_under(&self, fid: FrameId) -> Option<String> {
        let mut under = BTreeSet::new();
        let mut stack = vec![fid];
        while let Some(id) = stack.pop() {
            under.insert(id);
            match self.frames.get(&id).map(Box::as_ref) {
                Some(Frame::Fan(f)) => stack.extend(f.children.iter().copied()),
                Some(Frame::Seq(_)) => stack.extend(self.hosted_by(id)),
                None => {}
            }
        }
        self.steps
            .iter()
            .find(|(_, s)| under.contains(&s.frame))
            .map(|(k, _)| k.clone())
    }

    /// Where an active or ready step instance lives.
    pub(super) fn locate(&self, step: &str) -> Option<FrameId> {
        self.steps
            .get(step)
            .map(|s| s.frame)
            .or_else(|| self.ready.get(step).copied())
    }

    /// Whether step instance `step` is running now (not waiting for a retry or a person).
    pub(super) fn is_running(&self, step: &str) -> bool {
        self.steps
            .get(step)
            .is_some_and(|s| s.phase == Phase::Running)
    }

    pub(super) fn recompute_status(&mut self) {
        if self.status.is_terminal() || self.status == RunStatus::Pending {
            return;
        }
        let working = self.steps.values().any(|s| {
            matches!(
                s.phase,
                Phase::Running | Phase::RetryWait | Phase::Answered { .. }
            )
        });
        let asking = || {
            self.steps
                .values()
                .any(|s| matches!(s.phase, Phase::Human { .. } | Phase::Ambiguous { .. }))
        };
        self.status = if matches!(self.pause, Some(PauseReason::Budget(_))) {
            RunStatus::BudgetExceeded
        } else if self.pause.is_some() {
            RunStatus::Paused
        } else if !working && asking() {
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

    /// Steps waiting for a person.
    pub fn waiting_humans(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Human { .. }))
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Steps waiting for a person with a deadline, and the deadline (Unix ms).
    pub fn human_deadlines(&self) -> Vec<(String, i64)> {
        self.deadlines(|p| match p {
            Phase::Human { deadline_ms, .. } => *deadline_ms,
            _ => None,
        })
    }

    /// Steps waiting for a message (`wait_for`) with a deadline, and when it is.
    pub fn message_deadlines(&self) -> Vec<(String, i64)> {
        self.deadlines(|p| match p {
            Phase::Message { deadline_ms, .. } => *deadline_ms,
            _ => None,
        })
    }

    /// The steps whose phase has a deadline (as `of` reads it), and when it is.
    fn deadlines(&self, of: impl Fn(&Phase) -> Option<i64>) -> Vec<(String, i64)> {
        self.steps
            .iter()
            .filter_map(|(k, s)| Some((k.clone(), of(&s.phase)?)))
            .collect()
    }

    /// Whether `attempt` of `step` is the one running now.
    pub fn runs_attempt(&self, step: &str, attempt: u32) -> bool {
        self.steps
            .get(step)
            .is_some_and(|s| s.attempt == attempt && s.phase == Phase::Running)
    }

    /// Steps waiting for a person whose request was escalated.
    pub fn escalated_humans(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| {
                matches!(
                    s.phase,
                    Phase::Human {
                        escalated: true,
                        ..
                    }
                )
            })
            .map(|(k, _)| k.clone())
            .collect()
    }

    /// Steps whose effect is ambiguous, waiting for a person to resolve it.
    pub fn ambiguous_steps(&self) -> Vec<String> {
        self.steps
            .iter()
            .filter(|(_, s)| matches!(s.phase, Phase::Ambiguous { .. }))
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

    /// What templates and expressions of a step running in frame `frame` see: `inputs`,
    /// `steps.<id>.output` (and `.error`), `state`, `run`, and inside a `map` the item
    /// (default name `item`) and `loop.index`.
    pub fn template_context(&self, program: &Program, frame: FrameId) -> MjValue {
        MjValue::from_serialize(self.context_json(program, frame))
    }

    /// [`RunState::template_context`] as JSON.
    pub fn context_json(&self, program: &Program, frame: FrameId) -> Value {
        let suffix = self.frame_suffix(frame);
        let mut steps: Map<String, Value> = Map::new();
        // For each step id, the output of the innermost iteration that encloses this frame.
        let mut best: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
        for (path, out) in &self.outputs {
            let path_of = StepPath::parse(path);
            let (id, items) = (path_of.id(), path_of.items());
            if !path_of.encloses(suffix) {
                continue;
            }
            if best.get(id).is_some_and(|&l| l > items.len()) {
                continue;
            }
            best.insert(id, items.len());
            let mut o = Map::new();
            o.insert("output".into(), out.clone());
            if let Some(e) = self.errors.get(path) {
                o.insert("error".into(), Value::String(e.clone()));
            }
            steps.insert(id.to_string(), Value::Object(o));
        }
        let mut ctx = Map::new();
        ctx.insert("inputs".into(), self.inputs.clone());
        ctx.insert("steps".into(), Value::Object(steps));
        ctx.insert("state".into(), Value::Object(self.state.clone()));
        ctx.insert("memory".into(), self.team.memory_values());
        ctx.insert(
            "run".into(),
            serde_json::json!({ "id": self.run_id.to_string(), "workflow": program.doc.name }),
        );
        for (name, value, index) in self.bindings(frame) {
            ctx.insert(name, value);
            ctx.insert(
                "loop".into(),
                serde_json::json!({ "index": index, "index1": index + 1 }),
            );
        }
        Value::Object(ctx)
    }
}
