//! Steps: a typed union of kinds, and the flat form users write.
//!
//! A document names a step's kind by the key it uses (`agent:`, `tool:`, `if:`, ...), and a few
//! keys belong to some kinds only (`prompt` to agent steps, `then` to `if` steps). [`FIELD_RULES`]
//! is that rule, in one table: converting the flat [`StepFields`] into a [`Step`] follows it and
//! words every problem from it, so the loader's "has no kind", "declares several kinds" and
//! "only applies to" messages and serde's refusal all come from the same place.

mod fields;
mod rules;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{
    Dur, HumanSpec, JoinSpec, MapSpec, OnError, OutputSpec, RetrySpec, SandboxSpec, SwitchSpec,
};

pub use fields::StepFields;
pub use rules::{FIELD_RULES, FieldRole, FieldRule, KindProblem, kind_keys};

/// One step: what every kind has, and its kind with the kind's own fields.
///
/// Serialized as [`StepFields`] (the form users write); reading one that breaks the kind rules
/// ([`FIELD_RULES`]) fails with the first problem.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "StepFields", into = "StepFields")]
pub struct Step {
    /// Unique in the whole workflow: letters, digits, `_` and `-`.
    pub id: String,
    pub description: Option<String>,
    pub kind: StepKind,
    /// The step to run after this one (or `end`); default: the next in the list. Never set on
    /// `if` and `switch` steps, which name their targets themselves.
    pub next: Option<String>,
    /// How many times this step may run in one run; required on every loop.
    pub max_visits: Option<u32>,
    /// Time limit of one attempt.
    pub timeout: Option<Dur>,
    /// Retries after a failed attempt.
    pub retry: Option<RetrySpec>,
    /// What a failure (after retries) does (default: fail).
    pub on_error: Option<OnError>,
}

/// What a step does, with the fields that belong to that kind only.
#[derive(Clone, Debug, PartialEq)]
pub enum StepKind {
    Agent(AgentStep),
    Tool(ToolStep),
    Condition(ConditionStep),
    Switch(SwitchSpec),
    Parallel(ParallelStep),
    Map(MapStep),
    /// `steps:` without `map:`: sub-steps run in sequence.
    Group(Vec<Step>),
    Human(HumanSpec),
    /// Boxed: its settings are by far the largest.
    Sandbox(Box<SandboxSpec>),
}

/// An agent answers a prompt.
#[derive(Clone, Debug, PartialEq)]
pub struct AgentStep {
    pub agent: String,
    /// A template.
    pub prompt: String,
    /// The output contract (schema and re-asks); the agent's own applies when absent.
    pub output: Option<OutputSpec>,
    /// Start only once a message from this agent is in the inbox.
    pub wait_for: Option<crate::WaitFor>,
}

/// A registered tool is called.
#[derive(Clone, Debug, PartialEq)]
pub struct ToolStep {
    pub tool: String,
    /// Its arguments; every string in it is a template.
    pub with: Option<serde_json::Map<String, Value>>,
}

/// `if:`: an expression chooses between two targets.
#[derive(Clone, Debug, PartialEq)]
pub struct ConditionStep {
    pub condition: String,
    /// Step id (or `end`) when the condition holds; default: the next step.
    pub then: Option<String>,
    /// Step id (or `end`) when it does not; default: the next step.
    pub otherwise: Option<String>,
}

/// `parallel:`: branches run at the same time, then joined.
#[derive(Clone, Debug, PartialEq)]
pub struct ParallelStep {
    pub branches: Vec<Step>,
    /// Default: `all`.
    pub join: Option<JoinSpec>,
    /// How many branches run at once (default: all).
    pub max_concurrency: Option<u32>,
}

/// `map:`: `steps` run once per item of a list.
#[derive(Clone, Debug, PartialEq)]
pub struct MapStep {
    pub map: MapSpec,
    pub steps: Vec<Step>,
    /// How many items run at once (default: all).
    pub max_concurrency: Option<u32>,
}

/// The kind of a step, without its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StepTag {
    Agent,
    Tool,
    Condition,
    Switch,
    Parallel,
    Map,
    Group,
    Human,
    Sandbox,
}

impl StepTag {
    /// The key that declares this kind in a document.
    pub fn name(self) -> &'static str {
        match self {
            Self::Agent => "agent",
            Self::Tool => "tool",
            Self::Condition => "if",
            Self::Switch => "switch",
            Self::Parallel => "parallel",
            Self::Map => "map",
            Self::Group => "steps",
            Self::Human => "human",
            Self::Sandbox => "sandbox",
        }
    }

    /// How messages call a step of this kind: "an agent step", "an `if` step", ...
    pub fn phrase(self) -> &'static str {
        match self {
            Self::Agent => "an agent step",
            Self::Tool => "a tool step",
            Self::Condition => "an `if` step",
            Self::Switch => "a `switch` step",
            Self::Parallel => "a parallel step",
            Self::Map => "a map step",
            Self::Group => "a `steps` group",
            Self::Human => "a human step",
            Self::Sandbox => "a sandbox step",
        }
    }
}

impl StepKind {
    pub fn tag(&self) -> StepTag {
        match self {
            Self::Agent(_) => StepTag::Agent,
            Self::Tool(_) => StepTag::Tool,
            Self::Condition(_) => StepTag::Condition,
            Self::Switch(_) => StepTag::Switch,
            Self::Parallel(_) => StepTag::Parallel,
            Self::Map(_) => StepTag::Map,
            Self::Group(_) => StepTag::Group,
            Self::Human(_) => StepTag::Human,
            Self::Sandbox(_) => StepTag::Sandbox,
        }
    }
}

impl Step {
    pub fn tag(&self) -> StepTag {
        self.kind.tag()
    }

    /// Sub-steps (parallel branches, map body, group), in document order.
    pub fn children(&self) -> &[Step] {
        match &self.kind {
            StepKind::Parallel(p) => &p.branches,
            StepKind::Map(m) => &m.steps,
            StepKind::Group(steps) => steps,
            _ => &[],
        }
    }

    /// Parallel and map steps: how many branches or items run at once (`None`: all).
    pub fn max_concurrency(&self) -> Option<u32> {
        match &self.kind {
            StepKind::Parallel(p) => p.max_concurrency,
            StepKind::Map(m) => m.max_concurrency,
            _ => None,
        }
    }

    /// The list holding the sub-steps, for kinds that have one.
    pub fn children_mut(&mut self) -> Option<&mut Vec<Step>> {
        match &mut self.kind {
            StepKind::Parallel(p) => Some(&mut p.branches),
            StepKind::Map(m) => Some(&mut m.steps),
            StepKind::Group(steps) => Some(steps),
            _ => None,
        }
    }
}
