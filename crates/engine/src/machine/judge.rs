//! The `judge` join: once every branch of the parallel step ended, its judge agent is asked,
//! once, as the work of the parallel step itself. The `judge_asked` note (logged before the
//! launch) starts the step's journal, so a process that stops while the judge works launches
//! it again after a restart and the agent replays its logged replies. The judge sees every
//! successful branch's output with its branch id and every failed branch's error, and
//! answers `{"choice": BRANCH | "synthesis", "output": ..., "reason": ...}`: the chosen
//! branch's output (or the synthesis) is the step's; a `join_decided` note records it.

use baton_types::{Event, JoinStrategy, Progress, StepError, StepErrorKind, StepKind, StepPath};
use serde_json::{Value, json};

use super::Machine;
use super::decide::{Decided, Ended};
use super::state::{FanFrame, Outcome, RunState};
use super::{Action, join};
use crate::program::{Node, NodeKind, Program};

/// The choice of a judge that wrote its own output.
pub const SYNTHESIS: &str = "synthesis";

/// The judge agent of a parallel step with a `judge` join.
pub(crate) fn judge_of(node: &Node) -> Option<&str> {
    match &node.step.kind {
        StepKind::Parallel(p) => p
            .join
            .as_ref()
            .filter(|j| j.strategy == JoinStrategy::Judge)
            .and_then(|j| j.judge.as_deref()),
        _ => None,
    }
}

/// Whether parallel step instance `step` asked its judge (its work is the judge's).
pub(crate) fn judge_asked(st: &RunState, step: &str) -> bool {
    st.steps.get(step).is_some_and(|s| s.journal.is_some())
}

/// The JSON Schema of a judge's answer (a bad answer is asked again like any agent's).
pub(crate) fn answer_schema(candidates: &[String]) -> Value {
    // Two shapes, each complete on its own (a model held to the schema by a grammar cannot
    // name another branch, nor leave a synthesis without its output); a reason of a few
    // sentences.
    let reason = json!({ "type": "string", "maxLength": 600 });
    json!({
        "oneOf": [
            {
                "type": "object",
                "required": ["choice", "reason"],
                "properties": {
                    "choice": { "type": "string", "enum": candidates, "description": "a branch id" },
                    "reason": reason
                },
                "additionalProperties": false
            },
            {
                "type": "object",
                "required": ["choice", "output", "reason"],
                "properties": {
                    "choice": { "const": SYNTHESIS },
                    "output": { "description": "the synthesis" },
                    "reason": reason
                },
                "additionalProperties": false
            }
        ]
    })
}

/// The branches of parallel step instance `step` that succeeded: what the judge may choose.
pub(crate) fn step_candidates(st: &RunState, p: &Program, step: &str) -> Vec<String> {
    st.fan_of_step(step)
        .and_then(|f| st.fan(f))
        .map_or_else(Vec::new, |fan| candidates(fan, p))
}

/// Each branch: (id, outcome), in document order.
fn outcomes<'f>(fan: &'f FanFrame, p: &Program) -> Vec<(String, &'f Outcome)> {
    let (names, _) = join::branches(fan, p);
    fan.results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let name = names.get(i).cloned().unwrap_or_else(|| i.to_string());
            Some((name, r.as_ref()?))
        })
        .collect()
}

fn candidates(fan: &FanFrame, p: &Program) -> Vec<String> {
    outcomes(fan, p)
        .into_iter()
        .filter(|(_, r)| r.is_ok())
        .map(|(n, _)| n)
        .collect()
}

/// What the judge of parallel step instance `step` is asked.
pub(crate) fn prompt(st: &RunState, p: &Program, step: &str) -> Result<String, StepError> {
    let fan = st
        .fan_of_step(step)
        .and_then(|f| st.fan(f))
        .ok_or_else(|| {
            StepError::fatal(
                StepErrorKind::Execution,
                format!("step '{step}' has no branches to judge"),
            )
        })?;
    let id = StepPath::parse(step).id();
    let mut text = format!(
        "You are the judge of parallel step `{id}`: its branches worked on the same task, and you decide the outcome.\n\nCandidates (the output of each branch that succeeded, under its branch id and author):\n"
    );
    let mut failed = String::new();
    for (name, r) in outcomes(fan, p) {
        // The author: the branch, and its agent when the branch is an agent step.
        let by = match p.node_by_id(&name).map(|n| &n.kind) {
            Some(NodeKind::Agent { agent }) => format!("{name} (agent `{agent}`)"),
            _ => name.clone(),
        };
        match r {
            Ok(Value::String(s)) => text.push_str(&format!("\n## {by}\n{s}\n")),
            Ok(v) => text.push_str(&format!("\n## {by}\n{v}\n")),
            Err(e) => failed.push_str(&format!("- {name}: {}\n", e.logged_message())),
        }
    }
    if !failed.is_empty() {
        text.push_str(&format!("\nFailed branches:\n{failed}"));
    }
    text.push_str(&format!(
        "\nAnswer with JSON only: {{\"choice\": \"BRANCH\", \"reason\": \"...\"}} to take one candidate's output as it is, or {{\"choice\": \"{SYNTHESIS}\", \"output\": ..., \"reason\": \"...\"}} to give your own output made from them."
    ));
    Ok(text)
}

impl Machine<'_> {
    /// A `judge` join whose branches all ended: its judge is asked (or, when no branch
    /// succeeded, the step fails without asking). `None` while branches run or the judge
    /// works.
    pub(super) fn decide_judge(&self, st: &RunState, fan: &FanFrame) -> Option<Decided> {
        if !fan.results.iter().all(Option::is_some) || judge_asked(st, &fan.step) {
            return None;
        }
        let node = self.program.node_by_id(StepPath::parse(&fan.step).id())?;
        let judge = judge_of(node)?.to_string();
        let candidates = candidates(fan, self.program);
        if candidates.is_empty() {
            let (names, _) = join::branches(fan, self.program);
            let reason = format!("no branch succeeded ({})", join::branch_errors(fan, &names));
            let attempt = st.steps.get(&fan.step).map_or(1, |s| s.attempt);
            let how = Ended::sync(attempt);
            return Some(self.judged(st, &fan.step, Err(reason), Vec::new(), how));
        }
        let ev = Event::StepProgress {
            step: fan.step.clone(),
            progress: Progress::JudgeAsked { judge, candidates },
        };
        Some(Decided::with(
            ev,
            Action::Launch {
                step: fan.step.clone(),
            },
        ))
    }

    /// A step's work ended: a judge's answer decides its parallel step's join; any other
    /// result ends its step as it is.
    pub(super) fn work_ended(
        &self,
        st: &RunState,
        step: &str,
        result: Outcome,
        how: Ended,
    ) -> Decided {
        let judge = st
            .steps
            .get(step)
            .and_then(|sr| judge_of(self.program.node(sr.node)));
        let fan = st.fan_of_step(step).and_then(|f| st.fan(f));
        let (Some(judge), Some(fan)) = (judge, fan) else {
            return self.step_ended(st, step, result, how);
        };
        let candidates = candidates(fan, self.program);
        let choice = match result {
            Ok(answer) => self.choose(fan, judge, &candidates, &answer),
            Err(e) => Err(format!("judge `{judge}` failed: {}", e.logged_message())),
        };
        self.judged(st, step, choice, candidates, how)
    }

    /// The judge's answer, checked: (winner, output, reason), or why it is no decision.
    fn choose(
        &self,
        fan: &FanFrame,
        judge: &str,
        candidates: &[String],
        answer: &Value,
    ) -> Result<(String, Value, String), String> {
        let choice = answer
            .get("choice")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let reason = answer
            .get("reason")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string();
        if choice == SYNTHESIS {
            return match answer.get("output") {
                Some(out) => Ok((SYNTHESIS.to_string(), out.clone(), reason)),
                None => Err(format!(
                    "judge `{judge}` chose `{SYNTHESIS}` without an `output`"
                )),
            };
        }
        let output = outcomes(fan, self.program)
            .into_iter()
            .find(|(n, r)| n == choice && r.is_ok())
            .and_then(|(_, r)| r.as_ref().ok().cloned());
        match output {
            Some(out) => Ok((choice.to_string(), out, reason)),
            None => Err(format!(
                "judge `{judge}` chose `{choice}`, which is not a candidate (candidates: {})",
                candidates.join(", ")
            )),
        }
    }

    /// The end of a judge join: its `join_decided` note, then the step's end (a failure is
    /// not retried: the branches would run again).
    fn judged(
        &self,
        st: &RunState,
        step: &str,
        choice: Result<(String, Value, String), String>,
        candidates: Vec<String>,
        how: Ended,
    ) -> Decided {
        let (note, outcome) = match choice {
            Ok((winner, output, reason)) => {
                let losers = candidates.into_iter().filter(|c| *c != winner).collect();
                let note = Progress::JoinDecided {
                    strategy: JoinStrategy::Judge,
                    winner: Some(winner),
                    losers,
                    reason,
                };
                (note, Ok(output))
            }
            Err(reason) => {
                let e = StepError::fatal(StepErrorKind::Branch, reason.clone());
                let note = Progress::JoinDecided {
                    strategy: JoinStrategy::Judge,
                    winner: None,
                    losers: candidates,
                    reason,
                };
                (note, Err(e))
            }
        };
        let mut d = self.step_ended(st, step, outcome, how);
        let progress = Event::StepProgress {
            step: step.to_string(),
            progress: note,
        };
        d.before.insert(0, progress);
        d
    }
}

#[cfg(test)]
mod tests;
