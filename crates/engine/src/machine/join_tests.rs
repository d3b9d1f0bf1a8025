//! Conflict-resolution joins on the machine: the decision is logged before the parallel step
//! ends, and replaying the log rebuilds the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_types::{Event, Progress, StepError, StepErrorKind};
use serde_json::{Value, json};

use super::tests::{assert_replays, done, program, said, start};
use super::{Decision, Machine, RunOptions, RunState};
use crate::program::Program;

fn parallel(join: Value) -> Program {
    program(json!([{
        "id": "p",
        "parallel": [
            { "id": "a", "tool": "echo" },
            { "id": "b", "tool": "echo" },
            { "id": "c", "tool": "echo" }
        ],
        "join": join
    }]))
}

/// Runs the three branches to `results` (in that order of finishing); the last decision and
/// every decision, for replay.
fn run(p: &Program, results: [(&str, Result<Value, StepError>); 3]) -> (RunState, Vec<Decision>) {
    let (mut st, d0) = start(p, RunOptions::default());
    let mut all = vec![d0];
    for (step, r) in results {
        let d = Machine::new(p).handle(&mut st, done(step, 1, r)).unwrap();
        all.push(d);
    }
    (st, all)
}

fn decision(d: &Decision) -> &Progress {
    d.events
        .iter()
        .find_map(|e| match e {
            Event::StepProgress { step, progress } if step == "p" => Some(progress),
            _ => None,
        })
        .expect("a join decision")
}

fn failed() -> Result<Value, StepError> {
    Err(StepError::fatal(StepErrorKind::Execution, "down"))
}

#[test]
fn a_vote_waits_for_every_branch_then_logs_its_decision_before_the_step_ends() {
    let p = parallel(json!({ "strategy": "vote" }));
    let (st, ds) = run(
        &p,
        [
            ("c", Ok(json!("Yes"))),
            ("a", Ok(json!("no"))),
            ("b", Ok(json!("yes "))),
        ],
    );
    assert_eq!(
        said(&ds[1]),
        ["ok c -> end"],
        "no decision before all ended"
    );
    let last = ds.last().unwrap();
    let lines = said(last);
    assert!(lines[1].starts_with("StepProgress"), "{lines:?}");
    assert_eq!(lines[2], "ok p -> end");
    assert_eq!(
        lines[3], "run ok \"yes \"",
        "b's output: the first branch with it"
    );
    let Progress::JoinDecided { winner, losers, .. } = decision(last) else {
        panic!()
    };
    assert_eq!(winner.as_deref(), Some("b"));
    assert_eq!(losers, &["a".to_string()]);
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(&p, &st, &refs);
}

#[test]
fn priority_and_merge_skip_failed_branches_and_a_merge_conflict_fails_the_run() {
    let p = parallel(json!({ "strategy": "priority", "priority": ["c", "b"] }));
    let (st, ds) = run(
        &p,
        [("c", failed()), ("a", Ok(json!(1))), ("b", Ok(json!(2)))],
    );
    assert_eq!(said(ds.last().unwrap()).last().unwrap(), "run ok 2");
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(&p, &st, &refs);

    let p = parallel(json!({ "strategy": "merge" }));
    let (st, ds) = run(
        &p,
        [
            ("a", Ok(json!({"k": {"x": 1}}))),
            ("b", Ok(json!({"k": {"x": 2}}))),
            ("c", failed()),
        ],
    );
    let lines = said(ds.last().unwrap());
    assert!(
        lines
            .iter()
            .any(|l| l.contains("merge conflict at `k.x` (a and b)")),
        "{lines:?}"
    );
    assert_eq!(
        st.status,
        baton_types::RunStatus::Failed,
        "the step fails, so the run does"
    );
    let Progress::JoinDecided { winner, .. } = decision(ds.last().unwrap()) else {
        panic!()
    };
    assert_eq!(winner, &None);
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(&p, &st, &refs);
}
