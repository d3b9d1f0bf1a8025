//! The steps the engine runs itself, at once, when they start: a condition or a switch picks
//! the next step, `state.set` sets keys of the run's state (logged before the step ends), and
//! a map evaluates its list (its items then run as a fan).

use baton_types::{Event, StepError, StepErrorKind, StepKind, Usage};
use serde_json::{Value, json};

use super::Machine;
use super::decide::{Decided, Ended};
use super::state::{RunState, StepRun};
use crate::context;
use crate::program::{Branches, Node, NodeKind};

impl Machine<'_> {
    /// Whether a running step is one the engine runs itself now (a map only until its list
    /// is known: then its fan runs).
    pub(super) fn is_sync(&self, st: &RunState, step: &str, sr: &StepRun) -> bool {
        match self.program.node(sr.node).kind {
            NodeKind::Condition | NodeKind::Switch | NodeKind::StateSet => true,
            NodeKind::Map { .. } => st.fan_of_step(step).is_none(),
            _ => false,
        }
    }

    /// Runs a synchronous step.
    pub(super) fn run_sync(&self, st: &RunState, step: &str, sr: &StepRun) -> Decided {
        let node = self.program.node(sr.node);
        let ctx = st.template_context(self.program, sr.frame);
        let result = match &node.kind {
            NodeKind::Condition | NodeKind::Switch => self.branch(node, &ctx),
            NodeKind::StateSet => return self.state_set(st, step, sr, node, &ctx),
            NodeKind::Map { .. } => match self.map_items(node, &ctx) {
                Ok(items) => {
                    return Decided::event(Event::MapStarted {
                        step: step.into(),
                        items,
                    });
                }
                Err(e) => Err(e),
            },
            _ => Err(StepError::fatal(
                StepErrorKind::Execution,
                "not a synchronous step",
            )),
        };
        match result {
            // A branch names its next step itself.
            Ok((output, next)) => Decided::with(
                Event::StepSucceeded {
                    step: step.into(),
                    output,
                    next,
                    duration_ms: 0,
                    usage: Usage::default(),
                },
                super::Action::Release { step: step.into() },
            ),
            Err(e) => self.failure(st, step, e, Ended::sync(sr.attempt)),
        }
    }

    /// A condition's or a switch's choice: its output and the step it goes to.
    fn branch(
        &self,
        node: &Node,
        ctx: &minijinja::Value,
    ) -> Result<(Value, Option<String>), StepError> {
        let p = self.program;
        match &node.branches {
            Branches::Condition {
                expr,
                then,
                otherwise,
            } => {
                let taken = context::eval(p, &format!("{}.if", node.id), expr, ctx)?.is_true();
                let next = Node::goto_id(p, if taken { *then } else { *otherwise });
                Ok((json!({ "result": taken, "next": next }), next))
            }
            Branches::Switch { cases, default } => {
                for (i, (when, goto)) in cases.iter().enumerate() {
                    let what = format!("{}.switch.cases[{i}]", node.id);
                    if context::eval(p, &what, when, ctx)?.is_true() {
                        let next = Node::goto_id(p, *goto);
                        return Ok((json!({ "case": i, "next": next }), next));
                    }
                }
                let next = Node::goto_id(p, *default);
                Ok((json!({ "case": null, "next": next }), next))
            }
            Branches::None => Err(StepError::fatal(StepErrorKind::Template, "no cases")),
        }
    }

    /// `state.set`: the rendered keys are set by events logged before the step's success.
    fn state_set(
        &self,
        st: &RunState,
        step: &str,
        sr: &StepRun,
        node: &Node,
        ctx: &minijinja::Value,
    ) -> Decided {
        let p = self.program;
        let what = format!("{}.with", node.id);
        let args = context::render_args(p, &what, node.tool_args(), ctx);
        let mut d = self.step_ended(st, step, args, Ended::sync(sr.attempt));
        if let Event::StepSucceeded {
            output: Value::Object(m),
            ..
        } = &d.event
        {
            // Keys with a merge contract combine with their current values.
            match self.state_writes(st, step, m) {
                Ok(events) => d.before = events,
                Err(e) => return self.failure(st, step, e, Ended::sync(sr.attempt)),
            }
        }
        d
    }

    /// A map's list.
    fn map_items(&self, node: &Node, ctx: &minijinja::Value) -> Result<Vec<Value>, StepError> {
        let over = match &node.step.kind {
            StepKind::Map(m) => m.map.over.as_str(),
            _ => "[]",
        };
        let v = context::eval(self.program, &format!("{}.map.over", node.id), over, ctx)?;
        match context::to_json(&v) {
            Value::Array(items) => Ok(items),
            other => Err(StepError::fatal(
                StepErrorKind::Template,
                format!(
                    "map.over of '{}' gave {} instead of a list",
                    node.id,
                    kind_of(&other)
                ),
            )),
        }
    }
}

/// What a value is, for messages (`a string`, `a mapping`...).
pub(crate) fn kind_of(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "a mapping",
    }
}
