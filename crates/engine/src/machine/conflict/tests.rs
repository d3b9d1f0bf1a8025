#![allow(clippy::unwrap_used)]

use serde_json::json;

use super::*;
use crate::machine::state::FanKind;

fn fan(strategy: JoinStrategy, results: Vec<Option<Outcome>>) -> FanFrame {
    FanFrame {
        kind: FanKind::Parallel,
        step: "p".into(),
        host: 0,
        children: vec![],
        finished: (0..results.len()).collect(),
        results,
        strategy,
        max_concurrency: None,
    }
}

fn names() -> Vec<String> {
    vec!["a".into(), "b".into(), "c".into()]
}

fn spec(strategy: JoinStrategy) -> JoinSpec {
    JoinSpec {
        strategy,
        ..JoinSpec::default()
    }
}

fn failed_branch() -> Option<Outcome> {
    Some(Err(StepError::new(StepErrorKind::Execution, "boom")))
}

fn run(s: &JoinSpec, results: Vec<Option<Outcome>>) -> Resolved {
    resolve(&fan(s.strategy, results), &names(), s).unwrap()
}

fn winner(p: &Progress) -> Option<String> {
    match p {
        Progress::JoinDecided { winner, .. } => winner.clone(),
        _ => None,
    }
}

fn reason(p: &Progress) -> String {
    match p {
        Progress::JoinDecided { reason, .. } => reason.clone(),
        _ => String::new(),
    }
}

#[test]
fn every_strategy_waits_for_every_branch() {
    for st in [
        JoinStrategy::Vote,
        JoinStrategy::Priority,
        JoinStrategy::Merge,
    ] {
        let f = fan(st, vec![Some(Ok(json!({}))), None, None]);
        assert!(resolve(&f, &names(), &spec(st)).is_none());
    }
}

#[test]
fn vote_takes_the_majority_over_normalised_outputs() {
    let (o, d) = run(
        &spec(JoinStrategy::Vote),
        vec![
            Some(Ok(json!("No"))),
            Some(Ok(json!(" yes "))),
            Some(Ok(json!("YES"))),
        ],
    );
    assert_eq!(
        o.unwrap(),
        json!(" yes "),
        "the first branch's original output"
    );
    assert_eq!(winner(&d).as_deref(), Some("b"));
    let Progress::JoinDecided { losers, .. } = &d else {
        panic!()
    };
    assert_eq!(losers, &["a".to_string()]);
    assert!(reason(&d).starts_with("2 of 3 votes"), "{}", reason(&d));
    // JSON is compared canonically: key order does not matter.
    let (o, _) = run(
        &spec(JoinStrategy::Vote),
        vec![
            Some(Ok(json!({"x": 1, "y": 2}))),
            Some(Ok(json!(3))),
            Some(Ok(json!({"y": 2, "x": 1}))),
        ],
    );
    assert_eq!(o.unwrap(), json!({"x": 1, "y": 2}));
}

#[test]
fn failed_branches_do_not_vote_and_ties_follow_tie_break() {
    let results = || vec![Some(Ok(json!("x"))), failed_branch(), Some(Ok(json!("y")))];
    let (o, d) = run(&spec(JoinStrategy::Vote), results());
    assert_eq!(o.unwrap(), json!("x"), "first: the earliest branch");
    assert!(reason(&d).contains("tie broken"), "{}", reason(&d));
    let s = JoinSpec {
        tie_break: Some(TieBreak::Fail),
        ..spec(JoinStrategy::Vote)
    };
    let (o, d) = run(&s, results());
    let e = o.unwrap_err();
    assert_eq!(e.message, "vote tied at 1 each: a | c (tie_break: fail)");
    assert_eq!(winner(&d), None);
    let (o, _) = run(&s, vec![failed_branch(), failed_branch(), failed_branch()]);
    assert!(
        o.unwrap_err()
            .message
            .starts_with("no branch succeeded (a: boom")
    );
}

#[test]
fn priority_takes_the_highest_successful_branch() {
    let s = JoinSpec {
        priority: Some(vec!["c".into(), "a".into()]),
        ..spec(JoinStrategy::Priority)
    };
    let (o, d) = run(
        &s,
        vec![Some(Ok(json!(1))), Some(Ok(json!(2))), failed_branch()],
    );
    assert_eq!(o.unwrap(), json!(1));
    assert_eq!(winner(&d).as_deref(), Some("a"));
    assert!(reason(&d).contains("failed before it: c"), "{}", reason(&d));
    // Default: document order.
    let (o, _) = run(
        &spec(JoinStrategy::Priority),
        vec![failed_branch(), Some(Ok(json!(2))), Some(Ok(json!(3)))],
    );
    assert_eq!(o.unwrap(), json!(2));
}

#[test]
fn merge_deep_merges_and_fails_on_a_conflict() {
    let results = || {
        vec![
            Some(Ok(json!({"cfg": {"a": 1, "shared": true}, "x": "a"}))),
            Some(Ok(json!({"cfg": {"b": 2, "shared": true}}))),
            Some(Ok(json!({"cfg": {"a": 9}}))),
        ]
    };
    let (o, d) = run(&spec(JoinStrategy::Merge), results());
    assert_eq!(
        o.unwrap_err().message,
        "merge conflict at `cfg.a` (a and c)"
    );
    assert_eq!(winner(&d), None);
    let s = JoinSpec {
        on_conflict: Some(OnConflict::Priority),
        priority: Some(vec!["c".into()]),
        ..spec(JoinStrategy::Merge)
    };
    let (o, d) = run(&s, results());
    assert_eq!(
        o.unwrap(),
        json!({"cfg": {"a": 9, "b": 2, "shared": true}, "x": "a"})
    );
    let Progress::JoinDecided { losers, .. } = &d else {
        panic!()
    };
    assert_eq!(losers, &["a".to_string()]);
}

#[test]
fn merge_refuses_outputs_that_are_not_objects() {
    let (o, _) = run(
        &spec(JoinStrategy::Merge),
        vec![
            Some(Ok(json!({}))),
            Some(Ok(json!("text"))),
            failed_branch(),
        ],
    );
    assert_eq!(
        o.unwrap_err().message,
        "branch 'b' gave a string, not an object: a merge join needs objects"
    );
}

#[test]
fn the_decision_depends_on_the_outcomes_alone() {
    let results = || {
        vec![
            Some(Ok(json!("x"))),
            Some(Ok(json!("x"))),
            Some(Ok(json!("y"))),
        ]
    };
    let mut f = fan(JoinStrategy::Vote, results());
    let first = resolve(&f, &names(), &spec(JoinStrategy::Vote));
    f.finished = vec![2, 1, 0];
    assert_eq!(resolve(&f, &names(), &spec(JoinStrategy::Vote)), first);
}
