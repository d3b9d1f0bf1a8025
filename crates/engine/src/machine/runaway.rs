//! Unchanging loops (`runaway.unchanged_loop`, default 3; 0: off). Every loop holds a step
//! with `max_visits` (validation makes sure), so the visits of those steps count a loop's
//! iterations. Each time one starts, the fold notes a fingerprint of the run's shared state
//! and of every step's output ([`LoopMark`]); when the fingerprint has not changed over the
//! last N iterations, the step fails as a runaway before its next visit starts, naming the
//! loop's steps. The fingerprint is computed from logged values only, so a replay counts the
//! same.

use baton_types::flow::{Flow, Target};
use baton_types::{StepError, StepErrorKind};
use serde::{Deserialize, Serialize};

use super::Machine;
use super::state::RunState;
use crate::program::Node;

/// What the last visit of a loop's step saw.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoopMark {
    /// FNV-1a of the shared state and the steps' outputs when the visit started.
    pub fingerprint: u64,
    /// How many iterations in a row ended with the same fingerprint.
    pub unchanged: u32,
}

impl Machine<'_> {
    fn unchanged_limit(&self, node: &Node) -> Option<u32> {
        node.max_visits?;
        let limit = self.runaway_limits().unchanged_loop;
        (limit > 0).then_some(limit)
    }

    /// The fold's part of a step's first attempt of a visit: its loop mark.
    pub(super) fn note_loop_visit(&self, st: &mut RunState, node: &Node, step: &str, attempt: u32) {
        if attempt != 1 || self.unchanged_limit(node).is_none() {
            return;
        }
        let fingerprint = fingerprint(st);
        let unchanged = match st.loop_marks.get(step) {
            Some(m) if m.fingerprint == fingerprint => m.unchanged + 1,
            _ => 0,
        };
        st.loop_marks.insert(
            step.to_string(),
            LoopMark {
                fingerprint,
                unchanged,
            },
        );
    }

    /// The runaway error of a loop's step about to start `visit` when its last iterations
    /// changed nothing.
    pub(super) fn unchanged_loop(
        &self,
        st: &RunState,
        step: &str,
        node: &Node,
        visit: u32,
    ) -> Option<StepError> {
        let limit = self.unchanged_limit(node)?;
        let mark = st.loop_marks.get(step)?;
        if mark.fingerprint != fingerprint(st) || mark.unchanged + 1 < limit {
            return None;
        }
        let steps = self.loop_steps(&node.id);
        Some(StepError::fatal(
            StepErrorKind::Runaway,
            format!(
                "runaway: the loop through steps {} went round {limit} times in a row without \
                 changing the run's state or any step's output; stopped before step '{step}' \
                 ran a {} time (runaway.unchanged_loop: {limit})",
                steps.join(", "),
                super::decide::ordinal(visit),
            ),
        ))
    }

    /// The steps of the loops through step `id` (those it leads to that lead back to it),
    /// in document order, quoted.
    fn loop_steps(&self, id: &str) -> Vec<String> {
        let flow = Flow::build(&self.program.doc);
        let Some(&start) = flow.ids.get(id) else {
            return vec![format!("'{id}'")];
        };
        let succ: Vec<Vec<usize>> = flow
            .successors()
            .into_iter()
            .map(|ts| {
                ts.into_iter()
                    .filter_map(|t| match t {
                        Target::Step(s) => Some(s),
                        _ => None,
                    })
                    .collect()
            })
            .collect();
        let forward = reach(start, &succ);
        let backward = reach(start, &flow.predecessors());
        (0..flow.steps.len())
            .filter(|i| forward[*i] && backward[*i])
            .map(|i| format!("'{}'", flow.steps[i].step.id))
            .collect()
    }
}

/// Which steps `edges` lead to from `start` (`start` itself included).
fn reach(start: usize, edges: &[Vec<usize>]) -> Vec<bool> {
    let mut seen = vec![false; edges.len()];
    let mut stack = vec![start];
    while let Some(n) = stack.pop() {
        if std::mem::replace(&mut seen[n], true) {
            continue;
        }
        stack.extend(edges[n].iter().copied());
    }
    seen
}

/// FNV-1a (stable across builds, unlike the std hasher) of the state and the outputs.
fn fingerprint(st: &RunState) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let state = serde_json::to_string(&st.state).unwrap_or_default();
    let outputs = serde_json::to_string(&st.outputs).unwrap_or_default();
    for b in state.bytes().chain([0]).chain(outputs.bytes()) {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

#[cfg(test)]
mod tests;
