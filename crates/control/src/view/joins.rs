//! The conflict resolutions of a run's parallel steps (`vote`, `priority`, `merge`, `judge`
//! joins), as their `join_decided` notes in the log say: the winner, the losing candidates,
//! why.

use baton_types::{Event, EventRecord, JoinStrategy, Progress};
use serde::Serialize;

/// How one parallel step's join was decided (each visit of the step has its own).
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct JoinDecision {
    /// The parallel step instance.
    pub step: String,
    pub strategy: JoinStrategy,
    /// The branch whose output won; absent: the step failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub winner: Option<String>,
    /// The other successful branches whose outputs lost.
    pub losers: Vec<String>,
    pub reason: String,
}

/// Every join decision in a run's log, in log order.
pub fn join_decisions(evs: &[EventRecord]) -> Vec<JoinDecision> {
    evs.iter()
        .filter_map(|e| match &e.event {
            Event::StepProgress {
                step,
                progress:
                    Progress::JoinDecided {
                        strategy,
                        winner,
                        losers,
                        reason,
                    },
            } => Some(JoinDecision {
                step: step.clone(),
                strategy: *strategy,
                winner: winner.clone(),
                losers: losers.clone(),
                reason: reason.clone(),
            }),
            _ => None,
        })
        .collect()
}

impl JoinDecision {
    /// One line for people: `verdict  vote: first won (2 of 3 votes ...); lost: third`.
    pub fn line(&self) -> String {
        let outcome = match &self.winner {
            Some(w) => format!("{w} won"),
            None => "no winner, the step failed".to_string(),
        };
        let mut line = format!(
            "{}  {}: {outcome} ({})",
            self.step,
            self.strategy.as_str(),
            self.reason
        );
        if !self.losers.is_empty() {
            line.push_str(&format!("; lost: {}", self.losers.join(", ")));
        }
        line
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decisions_are_read_from_the_log_in_order() {
        let ev = |seq, event| EventRecord {
            run_id: baton_types::RunId::new(),
            seq,
            at_ms: 0,
            event,
        };
        let evs = vec![
            ev(1, Event::RunCancelled),
            ev(
                2,
                Event::StepProgress {
                    step: "verdict".into(),
                    progress: Progress::JoinDecided {
                        strategy: JoinStrategy::Vote,
                        winner: Some("a".into()),
                        losers: vec!["c".into()],
                        reason: "2 of 3 votes".into(),
                    },
                },
            ),
        ];
        let d = join_decisions(&evs);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].line(), "verdict  vote: a won (2 of 3 votes); lost: c");
    }
}
