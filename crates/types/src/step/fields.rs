//! The form users write: every key of every kind, all optional. Documents are read and written
//! in this form; a [`Step`] converts from it by the kind rules and back without loss.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use super::{Step, StepKind};
use crate::{
    Dur, HumanSpec, JoinSpec, MapSpec, OnError, OutputSpec, RetrySpec, SandboxSpec, SwitchSpec,
};

/// One step. Exactly one of `agent`, `tool`, `if`, `switch`, `parallel`, `map`, `steps`,
/// `human` says what kind of step it is; the other fields apply to every kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Step")]
pub struct StepFields {
    /// Unique in the whole workflow: letters, digits, `_` and `-`.
    pub id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,

    /// Agent step: the agent that answers `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// Agent step: the prompt (a template).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub prompt: Option<String>,

    /// Tool step: the registered tool to call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// Tool step: its arguments; every string in it is a template.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub with: Option<serde_json::Map<String, Value>>,

    /// Condition step: an expression; `then` is taken when it is true, `else` otherwise.
    #[serde(default, rename = "if", skip_serializing_if = "Option::is_none")]
    pub condition: Option<String>,
    /// Step id (or `end`) to go to when the condition holds; default: the next step.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub then: Option<String>,
    /// Step id (or `end`) to go to when it does not; default: the next step.
    #[serde(default, rename = "else", skip_serializing_if = "Option::is_none")]
    pub otherwise: Option<String>,

    /// Switch step: several cases, the first that holds is taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub switch: Option<SwitchSpec>,

    /// Parallel step: branches run at the same time, then joined.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel: Option<Vec<StepFields>>,
    /// Parallel step: how the branches are joined (default `all`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub join: Option<JoinSpec>,

    /// Map step: run `steps` once per item of a list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub map: Option<MapSpec>,
    /// Map step: the sub-steps run per item. Alone (without `map`): a group run in sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub steps: Option<Vec<StepFields>>,

    /// Human step: the run waits for approval or input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub human: Option<HumanSpec>,

    /// Sandbox step: runs a command in a Baton sandbox; its output is the execution result.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sandbox: Option<SandboxSpec>,

    /// Agent step: the output contract (schema and re-asks).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output: Option<OutputSpec>,
    /// Agent step: start only once a message from this agent is in the step's agent's inbox.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait_for: Option<crate::WaitFor>,

    /// The step to run after this one (or `end`); default: the next in the list.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
    /// How many times this step may run in one run; required on every loop.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_visits: Option<u32>,
    /// Parallel and map steps: how many branches or items run at once (default: all).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_concurrency: Option<u32>,
    /// Time limit of one attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Retries after a failed attempt.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// What a failure (after retries) does: `fail` (default), `continue`, or `goto STEP`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub on_error: Option<OnError>,
}

// The schema of a step is the schema of what users write.
impl JsonSchema for Step {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        StepFields::schema_name()
    }
    fn schema_id() -> std::borrow::Cow<'static, str> {
        StepFields::schema_id()
    }
    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        StepFields::json_schema(generator)
    }
}

impl TryFrom<StepFields> for Step {
    type Error = String;
    fn try_from(fields: StepFields) -> Result<Step, String> {
        let id = fields.id.clone();
        fields
            .into_step()
            .map_err(|problems| match problems.first() {
                Some(p) => format!("step `{id}`: {p}"),
                None => format!("step `{id}` is not a valid step"),
            })
    }
}

impl From<Step> for StepFields {
    fn from(step: Step) -> StepFields {
        let lower = |list: Vec<Step>| Some(list.into_iter().map(StepFields::from).collect());
        let mut f = StepFields {
            id: step.id,
            description: step.description,
            next: step.next,
            max_visits: step.max_visits,
            timeout: step.timeout,
            retry: step.retry,
            on_error: step.on_error,
            ..StepFields::default()
        };
        match step.kind {
            StepKind::Agent(a) => {
                f.agent = Some(a.agent);
                f.prompt = Some(a.prompt);
                f.output = a.output;
                f.wait_for = a.wait_for;
            }
            StepKind::Tool(t) => {
                f.tool = Some(t.tool);
                f.with = t.with;
            }
            StepKind::Condition(c) => {
                f.condition = Some(c.condition);
                f.then = c.then;
                f.otherwise = c.otherwise;
            }
            StepKind::Switch(s) => f.switch = Some(s),
            StepKind::Parallel(p) => {
                f.parallel = lower(p.branches);
                f.join = p.join;
                f.max_concurrency = p.max_concurrency;
            }
            StepKind::Map(m) => {
                f.map = Some(m.map);
                f.steps = lower(m.steps);
                f.max_concurrency = m.max_concurrency;
            }
            StepKind::Group(steps) => f.steps = lower(steps),
            StepKind::Human(h) => f.human = Some(h),
            StepKind::Sandbox(s) => f.sandbox = Some(*s),
        }
        f
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::StepTag;
    use serde_json::json;

    fn fields(v: Value) -> StepFields {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn a_step_becomes_its_kind() {
        let s: Step = serde_json::from_value(json!({
            "id": "p", "parallel": [{"id": "a", "tool": "echo"}, {"id": "b", "agent": "x", "prompt": "hi"}],
            "join": {"strategy": "any"}, "max_concurrency": 1, "timeout": "1s"
        }))
        .unwrap();
        assert_eq!(s.tag(), StepTag::Parallel);
        assert_eq!(s.children().len(), 2);
        assert_eq!(s.children()[1].tag(), StepTag::Agent);
        let StepKind::Parallel(p) = &s.kind else {
            panic!("{s:?}")
        };
        assert_eq!(p.max_concurrency, Some(1));
        let m: Step = serde_json::from_value(
            json!({"id": "m", "map": {"over": "x"}, "steps": [{"id": "w", "tool": "echo"}]}),
        )
        .unwrap();
        assert_eq!(m.tag(), StepTag::Map);
        let g: Step =
            serde_json::from_value(json!({"id": "g", "steps": [{"id": "w", "tool": "echo"}]}))
                .unwrap();
        assert_eq!(g.tag(), StepTag::Group);
    }

    #[test]
    fn steps_serialize_as_written() {
        for v in [
            json!({"id": "a", "agent": "pm", "prompt": "p", "output": {"max_retries": 1}, "next": "end"}),
            json!({"id": "c", "if": "x", "then": "a", "else": "end", "max_visits": 3}),
            json!({"id": "s", "switch": {"cases": [{"when": "x", "goto": "a"}]}}),
            json!({"id": "m", "map": {"over": "x", "as": "f"}, "steps": [{"id": "t", "tool": "echo", "with": {"x": 1}}], "max_concurrency": 2}),
            json!({"id": "h", "human": {"prompt": "ok?"}, "on_error": "continue"}),
            json!({"id": "g", "steps": []}),
        ] {
            let s: Step = serde_json::from_value(v.clone()).unwrap();
            let back = serde_json::to_value(&s).unwrap();
            let again: Step = serde_json::from_value(back.clone()).unwrap();
            assert_eq!(again, s);
            let expected = serde_json::to_value(fields(v)).unwrap();
            assert_eq!(back, expected);
        }
    }
}
