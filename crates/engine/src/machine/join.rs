//! How a fan's outcome follows from its sequences' outcomes. A group gives its body's; a map
//! gives the list of its items' outputs and fails with its first failed item; a parallel step
//! follows its join strategy: `all` (every branch, by name; the first failure fails it),
//! `any` (the first branch to finish, success or failure), `first_success` (the first
//! success; a failure only when every branch failed), or a conflict resolution (`vote`,
//! `priority`, `merge`: see [`conflict`]; `judge` is decided by its agent: see `judge`).
//! `None`: not decided yet.

use baton_types::{JoinSpec, JoinStrategy, Progress, StepError, StepErrorKind, StepKind, StepPath};
use serde_json::{Map, Value, json};

use super::conflict;
use super::state::{FanFrame, FanKind, Outcome};
use crate::program::Program;

/// The outcome of a fan, once its join is decided, with the record of a conflict
/// resolution's decision (`vote`, `priority`, `merge`).
pub(super) fn outcome(fan: &FanFrame, p: &Program) -> Option<(Outcome, Option<Progress>)> {
    let plain = |o: Option<Outcome>| o.map(|o| (o, None));
    match fan.kind {
        FanKind::Group => plain(fan.results.first().cloned().flatten()),
        FanKind::Map => plain(map_outcome(fan)),
        FanKind::Parallel => {
            let (names, spec) = branches(fan, p);
            match fan.strategy {
                // Decided by its judge agent's answer (see `judge`).
                JoinStrategy::Judge => None,
                JoinStrategy::All => plain(all_outcome(fan, &names)),
                JoinStrategy::Any => plain(any_outcome(fan, &names)),
                JoinStrategy::FirstSuccess => plain(first_success_outcome(fan, &names)),
                JoinStrategy::Vote | JoinStrategy::Priority | JoinStrategy::Merge => {
                    let spec = JoinSpec {
                        strategy: fan.strategy,
                        ..spec
                    };
                    conflict::resolve(fan, &names, &spec).map(|(o, d)| (o, Some(d)))
                }
            }
        }
    }
}

/// The branches' step ids, by slot, and the step's join settings.
pub(super) fn branches(fan: &FanFrame, p: &Program) -> (Vec<String>, JoinSpec) {
    match p.node_by_id(StepPath::parse(&fan.step).id()) {
        Some(n) => match &n.step.kind {
            StepKind::Parallel(par) => (
                par.branches.iter().map(|b| b.id.clone()).collect(),
                par.join.clone().unwrap_or_default(),
            ),
            _ => (Vec::new(), JoinSpec::default()),
        },
        None => (
            (0..fan.results.len()).map(|i| i.to_string()).collect(),
            JoinSpec::default(),
        ),
    }
}

fn name(names: &[String], i: usize) -> &str {
    names.get(i).map_or("", String::as_str)
}

/// The first slot to finish with an error, if any.
fn first_failure(fan: &FanFrame) -> Option<(usize, &StepError)> {
    fan.finished.iter().find_map(|&i| {
        fan.results[i]
            .as_ref()
            .and_then(|r| r.as_ref().err())
            .map(|e| (i, e))
    })
}

fn all_finished(fan: &FanFrame) -> bool {
    fan.results.iter().all(Option::is_some)
}

fn output_of(r: &Option<Outcome>) -> Value {
    r.clone().and_then(Result::ok).unwrap_or(Value::Null)
}

fn map_outcome(fan: &FanFrame) -> Option<Outcome> {
    if let Some((_, e)) = first_failure(fan) {
        return Some(Err(wrap(e, "an item failed")));
    }
    all_finished(fan).then(|| Ok(Value::Array(fan.results.iter().map(output_of).collect())))
}

fn all_outcome(fan: &FanFrame, names: &[String]) -> Option<Outcome> {
    if let Some((i, e)) = first_failure(fan) {
        let what = format!("branch '{}' failed", name(names, i));
        return Some(Err(wrap(e, &what)));
    }
    if !all_finished(fan) {
        return None;
    }
    let mut m = Map::new();
    for (i, r) in fan.results.iter().enumerate() {
        let key = names.get(i).cloned().unwrap_or_else(|| i.to_string());
        m.insert(key, output_of(r));
    }
    Some(Ok(Value::Object(m)))
}

fn any_outcome(fan: &FanFrame, names: &[String]) -> Option<Outcome> {
    let &i = fan.finished.first()?;
    let r = fan.results[i].clone()?;
    Some(
        r.map(|v| json!({ "branch": names.get(i), "output": v }))
            .map_err(|e| wrap(&e, &format!("branch '{}' failed", name(names, i)))),
    )
}

fn first_success_outcome(fan: &FanFrame, names: &[String]) -> Option<Outcome> {
    let success = fan
        .finished
        .iter()
        .find(|&&i| fan.results[i].as_ref().is_some_and(|r| r.is_ok()));
    if let Some(&i) = success {
        let v = output_of(&fan.results[i]);
        return Some(Ok(json!({ "branch": names.get(i), "output": v })));
    }
    if !all_finished(fan) {
        return None;
    }
    Some(Err(StepError::fatal(
        StepErrorKind::Branch,
        format!("every branch failed ({})", branch_errors(fan, names)),
    )))
}

/// Each failed branch's error, `name: message`, joined with `; `.
pub(super) fn branch_errors(fan: &FanFrame, names: &[String]) -> String {
    let msgs: Vec<String> = fan
        .results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| {
            let e = r.as_ref()?.as_ref().err()?;
            Some(format!("{}: {}", name(names, i), e.logged_message()))
        })
        .collect();
    msgs.join("; ")
}

/// A branch's or an item's error, as its fan's (the sandbox record kept).
fn wrap(e: &StepError, what: &str) -> StepError {
    StepError {
        kind: StepErrorKind::Branch,
        message: format!("{what}: {}", e.message),
        retryable: e.retryable,
        sandbox: e.sandbox.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn fan(kind: FanKind, strategy: JoinStrategy, results: Vec<Option<Outcome>>) -> FanFrame {
        let finished = results
            .iter()
            .enumerate()
            .filter(|(_, r)| r.is_some())
            .map(|(i, _)| i)
            .collect();
        FanFrame {
            kind,
            step: "p".into(),
            host: 0,
            children: vec![],
            results,
            finished,
            strategy,
            max_concurrency: None,
        }
    }

    fn names() -> Vec<String> {
        vec!["a".into(), "b".into()]
    }

    fn failed(m: &str) -> Option<Outcome> {
        Some(Err(StepError::new(StepErrorKind::Execution, m)))
    }

    #[test]
    fn all_waits_for_every_branch_and_fails_with_the_first_failure() {
        let f = fan(
            FanKind::Parallel,
            JoinStrategy::All,
            vec![Some(Ok(json!(1))), None],
        );
        assert_eq!(all_outcome(&f, &names()), None);
        let f = fan(
            FanKind::Parallel,
            JoinStrategy::All,
            vec![Some(Ok(json!(1))), Some(Ok(json!(2)))],
        );
        assert_eq!(
            all_outcome(&f, &names()),
            Some(Ok(json!({ "a": 1, "b": 2 })))
        );
        let f = fan(
            FanKind::Parallel,
            JoinStrategy::All,
            vec![None, failed("boom")],
        );
        let e = all_outcome(&f, &names()).unwrap().unwrap_err();
        assert_eq!(e.message, "branch 'b' failed: boom");
        assert!(e.retryable, "a branch's retryable failure stays retryable");
    }

    #[test]
    fn any_takes_the_first_to_finish() {
        let mut f = fan(
            FanKind::Parallel,
            JoinStrategy::Any,
            vec![failed("x"), Some(Ok(json!(2)))],
        );
        f.finished = vec![1, 0];
        assert_eq!(
            any_outcome(&f, &names()),
            Some(Ok(json!({ "branch": "b", "output": 2 })))
        );
    }

    #[test]
    fn first_success_fails_only_when_every_branch_did() {
        let f = fan(
            FanKind::Parallel,
            JoinStrategy::FirstSuccess,
            vec![failed("x"), None],
        );
        assert_eq!(first_success_outcome(&f, &names()), None);
        let f = fan(
            FanKind::Parallel,
            JoinStrategy::FirstSuccess,
            vec![failed("x"), failed("y")],
        );
        let e = first_success_outcome(&f, &names()).unwrap().unwrap_err();
        assert_eq!(e.message, "every branch failed (a: x; b: y)");
    }

    #[test]
    fn a_map_lists_its_outputs_and_keeps_a_failed_items_sandbox_record() {
        let f = fan(
            FanKind::Map,
            JoinStrategy::All,
            vec![Some(Ok(json!(1))), Some(Ok(json!(2)))],
        );
        assert_eq!(map_outcome(&f), Some(Ok(json!([1, 2]))));
        let e = StepError::new(StepErrorKind::Execution, "exit 3")
            .with_sandbox(json!({"exit_code": 3}));
        let f = fan(FanKind::Map, JoinStrategy::All, vec![Some(Err(e)), None]);
        let e = map_outcome(&f).unwrap().unwrap_err();
        assert_eq!(e.message, "an item failed: exit 3");
        assert_eq!(e.sandbox.unwrap()["exit_code"], 3);
    }
}
