//! The rule of which key goes with which kind, in one table, and the conversion from the form
//! users write to a typed step that follows it and words every problem from it.

use super::{
    AgentStep, ConditionStep, MapStep, ParallelStep, Step, StepFields, StepKind, StepTag, ToolStep,
};

/// What a key of a step says about its kind.
#[derive(Clone, Copy, Debug)]
pub enum FieldRole {
    /// The key declares the step's kind.
    Declares(StepTag),
    /// The key belongs to these kinds only, named so in messages ("agent steps"); `note` adds
    /// a hint for one other kind.
    Only {
        kinds: &'static [StepTag],
        named: &'static str,
        note: Option<(StepTag, &'static str)>,
    },
    /// The key applies to every kind but these, each refused with its own message.
    NotOn(&'static [(StepTag, &'static str)]),
}

/// One row of [`FIELD_RULES`].
#[derive(Clone, Copy, Debug)]
pub struct FieldRule {
    /// The key as written in documents.
    pub key: &'static str,
    pub role: FieldRole,
    /// Whether a step sets the key.
    pub present: fn(&StepFields) -> bool,
}

/// Every step key tied to kinds, in the order problems are reported. The keys not listed
/// (`id`, `description`, `max_visits`, `timeout`, `retry`, `on_error`) apply to every kind.
pub const FIELD_RULES: &[FieldRule] = &[
    declares("agent", StepTag::Agent, |s| s.agent.is_some()),
    declares("tool", StepTag::Tool, |s| s.tool.is_some()),
    declares("if", StepTag::Condition, |s| s.condition.is_some()),
    declares("switch", StepTag::Switch, |s| s.switch.is_some()),
    declares("parallel", StepTag::Parallel, |s| s.parallel.is_some()),
    declares("map", StepTag::Map, |s| s.map.is_some()),
    // With `map`, `steps` is the map's body; alone, it makes a group.
    declares("steps", StepTag::Group, |s| {
        s.steps.is_some() && s.map.is_none()
    }),
    declares("human", StepTag::Human, |s| s.human.is_some()),
    declares("sandbox", StepTag::Sandbox, |s| s.sandbox.is_some()),
    FieldRule {
        key: "prompt",
        role: FieldRole::Only {
            kinds: &[StepTag::Agent],
            named: "agent steps",
            note: Some((
                StepTag::Human,
                " (a human step's question goes in `human.prompt`)",
            )),
        },
        present: |s| s.prompt.is_some(),
    },
    only("with", &[StepTag::Tool], "tool steps", |s| s.with.is_some()),
    only("then", &[StepTag::Condition], "`if` steps", |s| {
        s.then.is_some()
    }),
    only("else", &[StepTag::Condition], "`if` steps", |s| {
        s.otherwise.is_some()
    }),
    only("join", &[StepTag::Parallel], "parallel steps", |s| {
        s.join.is_some()
    }),
    only("output", &[StepTag::Agent], "agent steps", |s| {
        s.output.is_some()
    }),
    only("wait_for", &[StepTag::Agent], "agent steps", |s| {
        s.wait_for.is_some()
    }),
    only(
        "max_concurrency",
        &[StepTag::Parallel, StepTag::Map],
        "parallel and map steps",
        |s| s.max_concurrency.is_some(),
    ),
    FieldRule {
        key: "next",
        role: FieldRole::NotOn(&[
            (
                StepTag::Condition,
                "`next` does not apply to an `if` step: use `then` and `else` (each defaults to the next step)",
            ),
            (
                StepTag::Switch,
                "`next` does not apply to a `switch` step: use the cases' `goto` and `default` (which defaults to the next step)",
            ),
        ]),
        present: |s| s.next.is_some(),
    },
];

const fn declares(key: &'static str, tag: StepTag, present: fn(&StepFields) -> bool) -> FieldRule {
    FieldRule {
        key,
        role: FieldRole::Declares(tag),
        present,
    }
}

const fn only(
    key: &'static str,
    kinds: &'static [StepTag],
    named: &'static str,
    present: fn(&StepFields) -> bool,
) -> FieldRule {
    FieldRule {
        key,
        role: FieldRole::Only {
            kinds,
            named,
            note: None,
        },
        present,
    }
}

/// The keys that declare a kind, in table order.
pub fn kind_keys() -> impl Iterator<Item = &'static str> {
    FIELD_RULES
        .iter()
        .filter(|r| matches!(r.role, FieldRole::Declares(_)))
        .map(|r| r.key)
}

/// The key declaring `tag`.
fn declaring_key(tag: StepTag) -> &'static str {
    FIELD_RULES
        .iter()
        .find(|r| matches!(r.role, FieldRole::Declares(t) if t == tag))
        .map(|r| r.key)
        .unwrap_or_else(|| tag.name())
}

/// A step that breaks the kind rules.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KindProblem {
    /// The field below the step's own path (`then`, `parallel[1].join`); empty: the step.
    pub path: String,
    pub message: String,
}

impl std::fmt::Display for KindProblem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            f.write_str(&self.message)
        } else {
            write!(f, "{} (at {})", self.message, self.path)
        }
    }
}

impl StepFields {
    /// The kinds this step's keys declare. A valid step declares exactly one.
    pub fn kinds(&self) -> Vec<StepTag> {
        FIELD_RULES
            .iter()
            .filter_map(|r| match r.role {
                FieldRole::Declares(t) if (r.present)(self) => Some(t),
                _ => None,
            })
            .collect()
    }

    /// The typed step, sub-steps included, or every problem of this step and its sub-steps
    /// (a step's own before its branches' and body's).
    pub fn into_step(mut self) -> Result<Step, Vec<KindProblem>> {
        let mut problems = Vec::new();
        let kind = self.check_kind(&mut problems);
        let has_steps = self.steps.is_some();
        let parallel = children(self.parallel.take(), "parallel", &mut problems);
        let steps = children(self.steps.take(), "steps", &mut problems);
        let Some(tag) = kind else {
            return Err(problems);
        };
        let step = self.build(tag, parallel, (has_steps, steps), &mut problems);
        match step {
            Some(s) if problems.is_empty() => Ok(s),
            _ => Err(problems),
        }
    }

    /// The step's kind when it declares exactly one, and every key that does not belong to it.
    fn check_kind(&self, problems: &mut Vec<KindProblem>) -> Option<StepTag> {
        let id = &self.id;
        let kind = match self.kinds().as_slice() {
            [one] => *one,
            [] => {
                problems.push(KindProblem {
                    path: String::new(),
                    message: format!(
                        "step `{id}` has no kind: give it exactly one of {}{}",
                        backticked(kind_keys()),
                        self.missing_kind_hint()
                    ),
                });
                return None;
            }
            many => {
                problems.push(KindProblem {
                    path: String::new(),
                    message: format!(
                        "step `{id}` declares several kinds ({}); a step has exactly one",
                        backticked(many.iter().map(|k| k.name()))
                    ),
                });
                return None;
            }
        };
        for rule in FIELD_RULES.iter().filter(|r| (r.present)(self)) {
            let message = match rule.role {
                FieldRole::Only { kinds, named, note } if !kinds.contains(&kind) => {
                    let note = note.filter(|(t, _)| *t == kind).map_or("", |(_, n)| n);
                    format!(
                        "`{}` only applies to {named}; step `{id}` is {}{note}",
                        rule.key,
                        kind.phrase()
                    )
                }
                FieldRole::NotOn(refused) => match refused.iter().find(|(t, _)| *t == kind) {
                    Some((_, m)) => (*m).to_string(),
                    None => continue,
                },
                _ => continue,
            };
            problems.push(KindProblem {
                path: rule.key.to_string(),
                message,
            });
        }
        Some(kind)
    }

    /// For a step without a kind: the kind its other keys point to, as a question.
    fn missing_kind_hint(&self) -> String {
        FIELD_RULES
            .iter()
            .filter(|r| (r.present)(self))
            .find_map(|r| match r.role {
                FieldRole::Only { kinds: [one], .. } => Some(format!(
                    " (it has a `{}`: is `{}` missing?)",
                    r.key,
                    declaring_key(*one)
                )),
                _ => None,
            })
            .unwrap_or_default()
    }

    /// The typed step of kind `tag` (its keys already checked against it), with its typed
    /// branches and body (`None` when one of them had problems; `has_steps`: `steps` was
    /// given); `None` when a key the kind needs is missing (reported) or a sub-step failed.
    fn build(
        self,
        tag: StepTag,
        parallel: Option<Vec<Step>>,
        (has_steps, steps): (bool, Option<Vec<Step>>),
        problems: &mut Vec<KindProblem>,
    ) -> Option<Step> {
        let id = self.id;
        let mut missing = |message: String| {
            problems.push(KindProblem {
                path: String::new(),
                message,
            });
            None
        };
        let kind = match tag {
            StepTag::Agent => match (self.agent, self.prompt) {
                (Some(agent), Some(prompt)) => StepKind::Agent(AgentStep {
                    agent,
                    prompt,
                    output: self.output,
                    wait_for: self.wait_for,
                }),
                _ => return missing(format!("agent step `{id}` needs a `prompt`")),
            },
            StepTag::Tool => StepKind::Tool(ToolStep {
                tool: self.tool.unwrap_or_default(),
                with: self.with,
            }),
            StepTag::Condition => StepKind::Condition(ConditionStep {
                condition: self.condition.unwrap_or_default(),
                then: self.then,
                otherwise: self.otherwise,
            }),
            StepTag::Switch => StepKind::Switch(self.switch?),
            StepTag::Parallel => StepKind::Parallel(ParallelStep {
                branches: parallel?,
                join: self.join,
                max_concurrency: self.max_concurrency,
            }),
            StepTag::Map => match (self.map, has_steps) {
                (Some(map), true) => StepKind::Map(MapStep {
                    map,
                    steps: steps?,
                    max_concurrency: self.max_concurrency,
                }),
                _ => {
                    return missing(format!(
                        "map step `{id}` needs `steps`: the sub-steps run for each item"
                    ));
                }
            },
            StepTag::Group => StepKind::Group(steps?),
            StepTag::Human => StepKind::Human(self.human?),
            StepTag::Sandbox => StepKind::Sandbox(Box::new(self.sandbox?)),
        };
        Some(Step {
            id,
            description: self.description,
            kind,
            next: self.next,
            max_visits: self.max_visits,
            timeout: self.timeout,
            retry: self.retry,
            on_error: self.on_error,
        })
    }
}

/// Converts a list of sub-steps; their problems are reported under `key[i]`.
fn children(
    list: Option<Vec<StepFields>>,
    key: &str,
    problems: &mut Vec<KindProblem>,
) -> Option<Vec<Step>> {
    let mut out = Vec::new();
    let mut ok = true;
    for (i, fields) in list?.into_iter().enumerate() {
        match fields.into_step() {
            Ok(s) => out.push(s),
            Err(inner) => {
                ok = false;
                problems.extend(inner.into_iter().map(|p| KindProblem {
                    path: if p.path.is_empty() {
                        format!("{key}[{i}]")
                    } else {
                        format!("{key}[{i}].{}", p.path)
                    },
                    message: p.message,
                }));
            }
        }
    }
    ok.then_some(out)
}

fn backticked<'a>(items: impl IntoIterator<Item = &'a str>) -> String {
    let v: Vec<String> = items.into_iter().map(|s| format!("`{s}`")).collect();
    v.join(", ")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::{Value, json};

    fn fields(v: Value) -> StepFields {
        serde_json::from_value(v).unwrap()
    }

    fn problems(v: Value) -> Vec<String> {
        match fields(v).into_step() {
            Ok(_) => Vec::new(),
            Err(p) => p
                .iter()
                .map(|p| format!("{} @ {}", p.message, p.path))
                .collect(),
        }
    }

    #[test]
    fn kind_problems_come_from_the_table() {
        assert_eq!(
            problems(json!({"id": "a", "prompt": "hi"})),
            [
                "step `a` has no kind: give it exactly one of `agent`, `tool`, `if`, `switch`, `parallel`, `map`, `steps`, `human`, `sandbox` (it has a `prompt`: is `agent` missing?) @ "
            ]
        );
        assert_eq!(
            problems(json!({"id": "a", "then": "b"})),
            [
                "step `a` has no kind: give it exactly one of `agent`, `tool`, `if`, `switch`, `parallel`, `map`, `steps`, `human`, `sandbox` (it has a `then`: is `if` missing?) @ "
            ]
        );
        assert_eq!(
            problems(json!({"id": "a", "agent": "x", "tool": "y", "prompt": "p"})),
            ["step `a` declares several kinds (`agent`, `tool`); a step has exactly one @ "]
        );
        assert_eq!(
            problems(
                json!({"id": "a", "human": {"prompt": "?"}, "prompt": "p", "join": {}, "max_concurrency": 2})
            ),
            [
                "`prompt` only applies to agent steps; step `a` is a human step (a human step's question goes in `human.prompt`) @ prompt",
                "`join` only applies to parallel steps; step `a` is a human step @ join",
                "`max_concurrency` only applies to parallel and map steps; step `a` is a human step @ max_concurrency",
            ]
        );
        assert_eq!(
            problems(json!({"id": "a", "if": "x", "next": "b"})),
            [
                "`next` does not apply to an `if` step: use `then` and `else` (each defaults to the next step) @ next"
            ]
        );
        assert_eq!(
            problems(json!({"id": "a", "agent": "x"})),
            ["agent step `a` needs a `prompt` @ "]
        );
        assert_eq!(
            problems(json!({"id": "a", "map": {"over": "x"}})),
            ["map step `a` needs `steps`: the sub-steps run for each item @ "]
        );
    }

    #[test]
    fn sub_step_problems_carry_their_path() {
        assert_eq!(
            problems(json!({"id": "p", "parallel": [
                {"id": "a", "tool": "echo"},
                {"id": "b", "steps": [{"id": "c", "tool": "echo", "then": "x"}]}
            ]})),
            [
                "`then` only applies to `if` steps; step `c` is a tool step @ parallel[1].steps[0].then"
            ]
        );
        let e = serde_json::from_value::<Step>(json!({"id": "a", "tool": "t", "prompt": "p"}))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("step `a`: `prompt` only applies to agent steps; step `a` is a tool step (at prompt)"),
            "{e}"
        );
    }
}
