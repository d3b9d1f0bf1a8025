//! The judge join on the machine: asked once every branch ended (as the parallel step's own
//! work), its valid choice, its synthesis, and a choice that names no candidate; every log
//! replays to the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{
    Event, JoinStrategy, Progress, RunStatus, StepError, StepErrorKind, WorkflowDoc,
};
use serde_json::{Value, json};

use super::super::tests::{assert_replays, done, start};
use super::super::{Action, Decision, Machine, RunOptions, RunState};
use crate::program::Program;

fn program() -> Program {
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "t",
        "agents": { "reviewer": { "model": "scripted/reviewer" } },
        "steps": [{
            "id": "p",
            "parallel": [
                { "id": "a", "tool": "echo" },
                { "id": "b", "tool": "echo" },
                { "id": "c", "tool": "echo" }
            ],
            "join": { "strategy": "judge", "judge": "reviewer" }
        }]
    }))
    .unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// Runs the branches (c fails), then gives the judge's `answer`: the state, every decision.
fn judged(p: &Program, answer: Result<Value, StepError>) -> (RunState, Vec<Decision>) {
    let m = Machine::new(p);
    let (mut st, d0) = start(p, RunOptions::default());
    let mut ds = vec![d0];
    ds.push(
        m.handle(&mut st, done("a", 1, Ok(json!("plan A"))))
            .unwrap(),
    );
    let down = StepError::fatal(StepErrorKind::Execution, "down");
    ds.push(m.handle(&mut st, done("c", 1, Err(down))).unwrap());
    assert!(
        ds[2]
            .actions
            .iter()
            .all(|a| !matches!(a, Action::Launch { .. })),
        "b still runs"
    );
    ds.push(
        m.handle(&mut st, done("b", 1, Ok(json!({ "plan": "B" }))))
            .unwrap(),
    );
    let asked = ds.last().unwrap();
    assert!(
        asked.events.iter().any(|e| matches!(e,
            Event::StepProgress { step, progress: Progress::JudgeAsked { judge, candidates } }
                if step == "p" && judge == "reviewer" && candidates == &["a", "b"])),
        "{:?}",
        asked.events
    );
    assert_eq!(
        asked.actions,
        [
            Action::Release { step: "b".into() },
            Action::Launch { step: "p".into() }
        ]
    );
    let prompt = super::prompt(&st, p, "p").unwrap();
    assert!(
        prompt.contains("## a\nplan A\n") && prompt.contains("## b\n{\"plan\":\"B\"}"),
        "{prompt}"
    );
    assert!(prompt.contains("Failed branches:\n- c: down"), "{prompt}");
    ds.push(m.handle(&mut st, done("p", 1, answer)).unwrap());
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(p, &st, &refs);
    (st, ds)
}

fn decision(d: &Decision) -> (Option<String>, Vec<String>, String) {
    d.events
        .iter()
        .find_map(|e| match e {
            Event::StepProgress {
                progress:
                    Progress::JoinDecided {
                        strategy: JoinStrategy::Judge,
                        winner,
                        losers,
                        reason,
                    },
                ..
            } => Some((winner.clone(), losers.clone(), reason.clone())),
            _ => None,
        })
        .expect("a judge decision")
}

#[test]
fn the_judges_choice_is_the_steps_output() {
    let p = program();
    let (st, ds) = judged(&p, Ok(json!({ "choice": "b", "reason": "B is simpler" })));
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["p"], json!({ "plan": "B" }));
    let (winner, losers, reason) = decision(ds.last().unwrap());
    assert_eq!(
        (winner.as_deref(), losers, reason.as_str()),
        (Some("b"), vec!["a".to_string()], "B is simpler")
    );
}

#[test]
fn a_synthesis_is_the_judges_own_output() {
    let p = program();
    let answer = json!({ "choice": "synthesis", "output": "A then B", "reason": "both" });
    let (st, ds) = judged(&p, Ok(answer));
    assert_eq!(st.outputs["p"], "A then B");
    let (winner, losers, _) = decision(ds.last().unwrap());
    assert_eq!(winner.as_deref(), Some("synthesis"));
    assert_eq!(losers, ["a", "b"]);
}

#[test]
fn a_choice_that_names_no_candidate_fails_the_step() {
    let p = program();
    for (choice, why) in [("c", "a failed branch"), ("x", "no branch")] {
        let (st, ds) = judged(&p, Ok(json!({ "choice": choice, "reason": why })));
        assert_eq!(st.status, RunStatus::Failed, "{why}");
        let message = format!(
            "judge `reviewer` chose `{choice}`, which is not a candidate (candidates: a, b)"
        );
        assert_eq!(
            st.error.as_deref(),
            Some(format!("step 'p' failed: {message}").as_str())
        );
        let (winner, losers, reason) = decision(ds.last().unwrap());
        assert_eq!(
            (winner, losers, reason),
            (None, vec!["a".into(), "b".into()], message)
        );
    }
    // A judge whose work failed fails the step, with no retry (the branches would run again).
    let e = StepError::new(StepErrorKind::InvalidOutput, "not JSON");
    let (st, _) = judged(&p, Err(e));
    assert_eq!(
        st.error.as_deref(),
        Some("step 'p' failed: judge `reviewer` failed: not JSON")
    );
}

#[test]
fn no_judge_is_asked_when_every_branch_failed() {
    let p = program();
    let m = Machine::new(&p);
    let (mut st, _) = start(&p, RunOptions::default());
    for b in ["a", "b", "c"] {
        let e = StepError::fatal(StepErrorKind::Execution, format!("{b} down"));
        let d = m.handle(&mut st, done(b, 1, Err(e))).unwrap();
        assert!(
            d.actions
                .iter()
                .all(|a| !matches!(a, Action::Launch { .. }))
        );
    }
    assert_eq!(
        st.error.as_deref(),
        Some("step 'p' failed: no branch succeeded (a: a down; b: b down; c: c down)")
    );
}
