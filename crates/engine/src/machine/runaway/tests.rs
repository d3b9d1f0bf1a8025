//! Unchanging loops on the machine: a loop whose iterations change nothing is stopped as a
//! runaway before its next visit, naming its steps; one that changes the state runs on to
//! its `max_visits`; `unchanged_loop: 0` turns the check off. Every log replays.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{RunStatus, StepErrorKind, WorkflowDoc};
use serde_json::{Value, json};

use super::super::tests::{assert_replays, done, start};
use super::super::{Decision, Machine, RunOptions, RunState};
use crate::program::Program;

/// `a` (a tool step, given `outputs` in turn) then `grow` (sets `n` to `n + step`), looping
/// back to `a` until its `max_visits` of 6.
fn looping(step: u32, runaway: Value) -> Program {
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "t",
        "state": { "n": 0 },
        "runaway": runaway,
        "steps": [
            { "id": "a", "tool": "echo", "max_visits": 10 },
            { "id": "grow", "tool": "state.set", "with": { "n": format!("{{{{ state.n + {step} }}}}") } },
            { "id": "again", "if": "true", "then": "a" }
        ]
    }))
    .unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// Gives `a` the same output until the run ends; the run and how many times `a` ran.
fn run(p: &Program) -> (RunState, u32) {
    let m = Machine::new(p);
    let (mut st, d0) = start(p, RunOptions::default());
    let mut ds: Vec<Decision> = vec![d0];
    let mut runs = 0;
    while !st.status.is_terminal() {
        runs += 1;
        ds.push(m.handle(&mut st, done("a", 1, Ok(json!("same")))).unwrap());
    }
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(p, &st, &refs);
    (st, runs)
}

/// The kind of the error that ended `a`.
fn failure_kind(st: &RunState) -> Option<StepErrorKind> {
    st.errors.get("a")?;
    let e = st.error.as_deref()?;
    Some(if e.contains("runaway:") {
        StepErrorKind::Runaway
    } else {
        StepErrorKind::MaxVisits
    })
}

#[test]
fn a_loop_that_changes_nothing_is_stopped_before_its_next_visit() {
    let p = looping(0, json!({}));
    let (st, runs) = run(&p);
    // The first iteration gave the steps their outputs; the next three changed nothing.
    assert_eq!(runs, 4);
    assert_eq!(st.status, RunStatus::Failed);
    assert_eq!(
        st.error.as_deref(),
        Some(
            "step 'a' failed: runaway: the loop through steps 'a', 'grow', 'again' went round 3 \
             times in a row without changing the run's state or any step's output; stopped \
             before step 'a' ran a 5th time (runaway.unchanged_loop: 3)"
        )
    );
    let p = looping(0, json!({ "unchanged_loop": 2 }));
    assert_eq!(run(&p).1, 3);
}

#[test]
fn a_loop_that_changes_the_state_runs_to_its_max_visits_and_zero_turns_the_check_off() {
    for p in [
        looping(1, json!({})),
        looping(0, json!({ "unchanged_loop": 0 })),
    ] {
        let (st, runs) = run(&p);
        assert_eq!(runs, 10);
        assert_eq!(
            failure_kind(&st),
            Some(StepErrorKind::MaxVisits),
            "{:?}",
            st.error
        );
    }
}

#[test]
fn the_count_restarts_when_an_iteration_changes_something() {
    let p = looping(0, json!({}));
    let m = Machine::new(&p);
    let (mut st, _) = start(&p, RunOptions::default());
    // The change at the third run restarts the count: three runs of `y` changed nothing.
    let mut runs = 0;
    for out in ["x", "x", "y", "y", "y", "y", "y"] {
        if st.status.is_terminal() {
            break;
        }
        runs += 1;
        m.handle(&mut st, done("a", 1, Ok(json!(out)))).unwrap();
    }
    assert_eq!(runs, 6, "{:?}", st.error);
    assert!(st.error.unwrap().contains("ran a 7th time"));
}
