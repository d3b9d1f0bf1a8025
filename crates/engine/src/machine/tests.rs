//! Input → events and actions, straight on the machine (no executor, no store): each test
//! feeds inputs and reads what the machine decided, then checks that replaying the events
//! through `apply` rebuilds the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{Event, RunId, RunStatus, StepError, StepErrorKind, Usage, WorkflowDoc};
use serde_json::{Value, json};

use super::{Action, Decision, Input, Machine, Refused, RunOptions, RunState};
use crate::program::Program;

pub(super) fn program(steps: Value) -> Program {
    let doc: WorkflowDoc =
        serde_json::from_value(json!({ "version": 1, "name": "t", "steps": steps })).unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// A run of `p` and the machine's decision on starting it.
pub(super) fn start(p: &Program, options: RunOptions) -> (RunState, Decision) {
    let mut st = RunState::new(RunId::new(), json!({}), p, &options);
    let d = Machine::new(p)
        .handle(&mut st, Input::Start { resumed: false })
        .unwrap();
    (st, d)
}

pub(super) fn done(step: &str, attempt: u32, result: Result<Value, StepError>) -> Input {
    Input::Done {
        step: step.into(),
        attempt,
        result,
        usage: Usage::default(),
        duration_ms: 1,
    }
}

/// The events as short lines.
pub(super) fn said(d: &Decision) -> Vec<String> {
    d.events.iter().map(line).collect()
}

fn line(ev: &Event) -> String {
    let to = |n: &Option<String>| n.clone().unwrap_or_else(|| "end".into());
    match ev {
        Event::RunStarted { .. } => "run started".into(),
        Event::StepStarted { step, attempt, .. } => format!("start {step}#{attempt}"),
        Event::StepSucceeded { step, next, .. } => format!("ok {step} -> {}", to(next)),
        Event::StepFailed {
            step,
            retry_in_ms: Some(ms),
            ..
        } => format!("fail {step}, retry in {ms}ms"),
        Event::StepFailed {
            step,
            recovered: true,
            next,
            ..
        } => format!("fail {step}, recovered -> {}", to(next)),
        Event::StepFailed { step, .. } => format!("fail {step}"),
        Event::StepCancelled { step } => format!("cancel {step}"),
        Event::StateSet { key, value, .. } => format!("set {key}={value}"),
        Event::MapStarted { step, items } => format!("map {step} over {}", items.len()),
        Event::HumanRequested { step, prompt, .. } => format!("ask {step}: {prompt}"),
        Event::HumanResponded { step, .. } => format!("answer {step}"),
        Event::Paused { .. } => "paused".into(),
        Event::Resumed { .. } => "resumed".into(),
        Event::CancelRequested => "cancel requested".into(),
        Event::RunSucceeded { outputs } => format!("run ok {outputs}"),
        Event::RunFailed { error } => format!("run failed: {error}"),
        Event::RunCancelled => "run cancelled".into(),
        other => format!("{other:?}"),
    }
}

fn launch(step: &str) -> Action {
    Action::Launch { step: step.into() }
}

fn release(step: &str) -> Action {
    Action::Release { step: step.into() }
}

/// Replaying every event decided so far gives the state the machine reached.
pub(super) fn assert_replays(p: &Program, st: &RunState, decisions: &[&Decision]) {
    let m = Machine::new(p);
    let mut fresh = RunState::new(st.run_id, st.inputs.clone(), p, &RunOptions::default());
    for ev in decisions.iter().flat_map(|d| &d.events) {
        m.apply(&mut fresh, ev);
    }
    // Agents' lifecycle times come from the clock (a replay sets it from each record's time;
    // these tests' machines read the real one).
    let mut st = st.clone();
    for life in fresh
        .team
        .agents
        .values_mut()
        .chain(st.team.agents.values_mut())
    {
        life.since_ms = 0;
    }
    assert_eq!(fresh, st);
}

#[test]
fn starting_a_run_starts_its_first_step_and_launches_its_work() {
    let p = program(json!([{ "id": "a", "tool": "echo" }, { "id": "b", "tool": "echo" }]));
    let (st, d) = start(&p, RunOptions::default());
    assert_eq!(said(&d), ["run started", "start a#1"]);
    assert_eq!(d.actions, [launch("a")]);
    assert_eq!(st.status, RunStatus::Running);
}

#[test]
fn a_result_moves_the_sequence_on_and_the_last_one_ends_the_run() {
    let p = program(json!([{ "id": "a", "tool": "echo" }, { "id": "b", "tool": "echo" }]));
    let (mut st, d0) = start(&p, RunOptions::default());
    let m = Machine::new(&p);
    let d1 = m.handle(&mut st, done("a", 1, Ok(json!("A")))).unwrap();
    assert_eq!(said(&d1), ["ok a -> b", "start b#1"]);
    assert_eq!(d1.actions, [release("a"), launch("b")]);
    let d2 = m.handle(&mut st, done("b", 1, Ok(json!("B")))).unwrap();
    assert_eq!(said(&d2), ["ok b -> end", "run ok \"B\""]);
    assert_eq!(d2.actions, [release("b")]);
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_replays(&p, &st, &[&d0, &d1, &d2]);
}

#[test]
fn a_late_result_of_an_old_attempt_decides_nothing() {
    let p = program(json!([{ "id": "a", "tool": "echo" }]));
    let (mut st, _) = start(&p, RunOptions::default());
    let d = Machine::new(&p)
        .handle(&mut st, done("a", 7, Ok(json!(1))))
        .unwrap();
    assert!(d.is_empty(), "{d:?}");
}

#[test]
fn a_retryable_failure_waits_then_starts_the_next_attempt() {
    let p = program(json!([
        { "id": "a", "tool": "echo", "retry": { "max": 1, "backoff": "10ms" } }
    ]));
    let (mut st, d0) = start(&p, RunOptions::default());
    let m = Machine::new(&p);
    let boom = StepError::new(StepErrorKind::Execution, "boom");
    let d1 = m.handle(&mut st, done("a", 1, Err(boom.clone()))).unwrap();
    assert_eq!(said(&d1), ["fail a, retry in 10ms"]);
    let retry = Action::RetryAfter {
        step: "a".into(),
        delay_ms: 10,
    };
    assert_eq!(d1.actions, [retry]);
    let d2 = m
        .handle(&mut st, Input::RetryDue { step: "a".into() })
        .unwrap();
    assert_eq!(said(&d2), ["start a#2"]);
    assert_eq!(d2.actions, [launch("a")]);
    // The retries are spent: the step fails, and with it the run.
    let d3 = m.handle(&mut st, done("a", 2, Err(boom))).unwrap();
    assert_eq!(said(&d3), ["fail a", "run failed: step 'a' failed: boom"]);
    assert_eq!(d3.actions, [release("a")]);
    assert_replays(&p, &st, &[&d0, &d1, &d2, &d3]);
}

#[test]
fn on_error_goto_recovers_to_its_target() {
    let p = program(json!([
        { "id": "a", "tool": "echo", "on_error": "goto c" },
        { "id": "b", "tool": "echo" },
        { "id": "c", "tool": "echo" }
    ]));
    let (mut st, _) = start(&p, RunOptions::default());
    let fatal = StepError::fatal(StepErrorKind::Execution, "no");
    let d = Machine::new(&p)
        .handle(&mut st, done("a", 1, Err(fatal)))
        .unwrap();
    assert_eq!(said(&d), ["fail a, recovered -> c", "start c#1"]);
    assert_eq!(d.actions, [release("a"), launch("c")]);
}

#[test]
fn conditions_and_state_set_run_in_the_machine_without_launching_anything() {
    let p = program(json!([
        { "id": "gate", "if": "inputs.go is undefined", "then": "set", "else": "end" },
        { "id": "skipped", "tool": "echo" },
        { "id": "set", "tool": "state.set", "with": { "count": 3 } }
    ]));
    let (st, d) = start(&p, RunOptions::default());
    assert_eq!(
        said(&d),
        [
            "run started",
            "start gate#1",
            "ok gate -> set",
            "start set#1",
            "set count=3",
            "ok set -> end",
            "run ok {\"count\":3}"
        ]
    );
    assert!(
        !d.actions.iter().any(|a| matches!(a, Action::Launch { .. })),
        "{:?}",
        d.actions
    );
    assert_eq!(st.state["count"], 3);
    assert_replays(&p, &st, &[&d]);
}

#[test]
fn a_human_step_asks_then_ends_with_the_answer() {
    let p = program(json!([{ "id": "ok", "human": { "prompt": "Ship it?" } }]));
    let (mut st, d0) = start(&p, RunOptions::default());
    assert_eq!(said(&d0), ["run started", "start ok#1", "ask ok: Ship it?"]);
    assert_eq!(st.status, RunStatus::Waiting);
    let m = Machine::new(&p);
    let answer = |step: &str, approved| Input::Human {
        step: step.into(),
        approved,
        value: Value::Null,
        comment: Some("why not".into()),
        by: None,
    };
    assert_eq!(
        m.handle(&mut st, answer("other", true)).unwrap_err(),
        Refused::NotWaiting("other".into())
    );
    let d1 = m.handle(&mut st, answer("ok", false)).unwrap();
    assert_eq!(
        said(&d1),
        [
            "answer ok",
            "fail ok",
            "run failed: step 'ok' failed: rejected: why not"
        ]
    );
    assert_replays(&p, &st, &[&d0, &d1]);
}

/// A run of a human step with `human` settings, started at `now` (Unix ms).
fn waiting_human(human: Value, now: i64) -> (Program, RunState, Decision) {
    let p = program(json!([{ "id": "ok", "human": human }]));
    let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
    let m = Machine::new(&p);
    m.set_now(now);
    let d = m.handle(&mut st, Input::Start { resumed: false }).unwrap();
    (p, st, d)
}

fn timeout_at(p: &Program, st: &mut RunState, now: i64) -> Result<Decision, Refused> {
    let m = Machine::new(p);
    m.set_now(now);
    m.handle(st, Input::HumanTimeout { step: "ok".into() })
}

#[test]
fn an_unanswered_human_step_escalates_once_then_fails_with_a_timeout() {
    let hour = 3_600_000;
    let human = json!({ "prompt": "Ship it?", "timeout": "1h", "escalate_to": "admin" });
    let (p, mut st, d0) = waiting_human(human, 1_000);
    let asked = d0.events.iter().find_map(|e| match e {
        Event::HumanRequested { deadline_ms, .. } => Some(*deadline_ms),
        _ => None,
    });
    assert_eq!(asked, Some(Some(1_000 + hour)));
    // Before the deadline a timeout is refused, and nothing changes.
    assert_eq!(
        timeout_at(&p, &mut st, 1_000 + hour - 1).unwrap_err(),
        Refused::NotDue("ok".into())
    );
    let d1 = timeout_at(&p, &mut st, 1_000 + hour).unwrap();
    assert!(
        matches!(&d1.events[..], [Event::HumanEscalated { step, to, deadline_ms }]
            if step == "ok" && to == "admin" && *deadline_ms == 1_000 + 2 * hour),
        "{:?}",
        d1.events
    );
    assert_eq!(st.status, RunStatus::Waiting);
    assert_eq!(st.escalated_humans(), ["ok"]);
    let d2 = timeout_at(&p, &mut st, 1_000 + 2 * hour).unwrap();
    assert_eq!(
        said(&d2),
        [
            "fail ok",
            "run failed: step 'ok' failed: no answer within 1h"
        ]
    );
    assert_replays(&p, &st, &[&d0, &d1, &d2]);
}

#[test]
fn an_unanswered_approval_can_approve_or_reject_itself() {
    for (on_timeout, outcome) in [("approve", "run ok"), ("reject", "run failed")] {
        let human = json!({ "prompt": "Ship it?", "timeout": "10s", "on_timeout": on_timeout });
        let (p, mut st, d0) = waiting_human(human, 0);
        let d1 = timeout_at(&p, &mut st, 10_000).unwrap();
        let answered = d1.events.iter().find_map(|e| match e {
            Event::HumanResponded {
                approved,
                by,
                comment,
                ..
            } => Some((*approved, by.clone(), comment.clone())),
            _ => None,
        });
        assert_eq!(
            answered,
            Some((
                on_timeout == "approve",
                Some("timeout".to_string()),
                Some("no answer within 10s".to_string())
            ))
        );
        let lines = said(&d1);
        assert!(lines.last().unwrap().starts_with(outcome), "{lines:?}");
        assert_replays(&p, &st, &[&d0, &d1]);
    }
}

#[test]
fn an_answer_before_the_timeout_leaves_nothing_to_time_out() {
    let human = json!({ "prompt": "Ship it?", "timeout": "1s" });
    let (p, mut st, _) = waiting_human(human, 0);
    let answer = Input::Human {
        step: "ok".into(),
        approved: true,
        value: Value::Null,
        comment: None,
        by: None,
    };
    Machine::new(&p).handle(&mut st, answer).unwrap();
    assert_eq!(st.status, RunStatus::Succeeded);
    assert!(timeout_at(&p, &mut st, 5_000).is_err());
}

#[test]
fn a_breakpoint_pauses_before_the_step_and_resuming_starts_it() {
    let p = program(json!([{ "id": "a", "tool": "echo" }]));
    let options = RunOptions {
        breakpoints: ["a".to_string()].into(),
        ..RunOptions::default()
    };
    let (mut st, d0) = start(&p, options);
    assert_eq!(said(&d0), ["run started", "paused"]);
    assert!(d0.actions.is_empty());
    assert_eq!(st.status, RunStatus::Paused);
    let d1 = Machine::new(&p)
        .handle(&mut st, Input::Resume { stepping: false })
        .unwrap();
    assert_eq!(said(&d1), ["resumed", "start a#1"]);
    assert_eq!(d1.actions, [launch("a")]);
}

#[test]
fn a_decided_join_cancels_the_branches_still_running() {
    let p = program(json!([{
        "id": "p",
        "parallel": [{ "id": "x", "tool": "echo" }, { "id": "y", "tool": "echo" }],
        "join": { "strategy": "any" }
    }]));
    let (mut st, d0) = start(&p, RunOptions::default());
    assert_eq!(
        said(&d0),
        ["run started", "start p#1", "start x#1", "start y#1"]
    );
    assert_eq!(d0.actions, [launch("x"), launch("y")]);
    let d1 = Machine::new(&p)
        .handle(&mut st, done("y", 1, Ok(json!("Y"))))
        .unwrap();
    assert_eq!(
        said(&d1),
        [
            "ok y -> end",
            "cancel x",
            "ok p -> end",
            "run ok {\"branch\":\"y\",\"output\":\"Y\"}"
        ]
    );
    let cancel = Action::Cancel { step: "x".into() };
    assert_eq!(d1.actions, [release("y"), cancel, release("p")]);
    assert_replays(&p, &st, &[&d0, &d1]);
}

#[test]
fn a_map_runs_one_instance_per_item() {
    let p = program(json!([{
        "id": "each",
        "map": { "over": "[1, 2]" },
        "steps": [{ "id": "work", "tool": "echo" }]
    }]));
    let (mut st, d0) = start(&p, RunOptions::default());
    assert_eq!(
        said(&d0),
        [
            "run started",
            "start each#1",
            "map each over 2",
            "start work[0]#1",
            "start work[1]#1"
        ]
    );
    let m = Machine::new(&p);
    let d1 = m
        .handle(&mut st, done("work[1]", 1, Ok(json!("b"))))
        .unwrap();
    let d2 = m
        .handle(&mut st, done("work[0]", 1, Ok(json!("a"))))
        .unwrap();
    assert_eq!(
        said(&d2),
        [
            "ok work[0] -> end",
            "ok each -> end",
            "run ok [\"a\",\"b\"]"
        ]
    );
    assert_replays(&p, &st, &[&d0, &d1, &d2]);
}

#[test]
fn cancelling_stops_every_active_step_then_the_run() {
    let p = program(json!([{ "id": "a", "tool": "echo" }]));
    let (mut st, _) = start(&p, RunOptions::default());
    let d = Machine::new(&p).handle(&mut st, Input::Cancel).unwrap();
    assert_eq!(said(&d), ["cancel requested", "cancel a", "run cancelled"]);
    let cancel = Action::Cancel { step: "a".into() };
    assert_eq!(d.actions, [cancel, Action::CancelAll]);
    let again = Machine::new(&p).handle(&mut st, Input::Cancel);
    assert_eq!(again.unwrap_err(), Refused::Terminal(RunStatus::Cancelled));
}

#[test]
fn a_failed_sandbox_steps_record_reaches_its_error_and_the_log_format() {
    let p = program(json!([
        { "id": "run", "sandbox": { "command": "exit 3" }, "on_error": "continue" },
        { "id": "after", "tool": "echo" }
    ]));
    let (mut st, d0) = start(&p, RunOptions::default());
    assert_eq!(d0.actions, [launch("run")]);
    let e = StepError::new(StepErrorKind::Execution, "exited with code 3")
        .with_sandbox(json!({ "exit_code": 3 }));
    let d1 = Machine::new(&p)
        .handle(&mut st, done("run", 1, Err(e)))
        .unwrap();
    assert_eq!(said(&d1), ["fail run, recovered -> after", "start after#1"]);
    // Templates see the error as the log has always written it.
    assert_eq!(
        st.errors["run"],
        "exited with code 3\nsandbox result: {\"exit_code\":3}"
    );
}

#[test]
fn a_call_is_logged_only_for_the_running_attempt_and_an_ambiguous_step_waits_for_a_person() {
    use super::{Pending, ToolCall};
    use baton_types::Resolution;
    let p = program(json!([{ "id": "pay", "tool": "charge" }, { "id": "after", "tool": "echo" }]));
    let (mut st, d0) = start(&p, RunOptions::default());
    let m = Machine::new(&p);
    let key = st.steps["pay"].key.clone();
    assert_eq!(key, format!("{}:pay:1", st.run_id));
    // A call of another attempt is refused (its sender is told it was not logged).
    let stale = Input::ToolCall {
        step: "pay".into(),
        attempt: 2,
        call: ToolCall::Finished {
            call: 1,
            tool: "charge".into(),
            output: Value::Null,
            is_error: false,
        },
    };
    assert_eq!(
        m.handle(&mut st, stale).unwrap_err(),
        Refused::NotRunning("pay".into(), 2)
    );
    let resolve = |r| Input::Resolve {
        step: "pay".into(),
        resolution: r,
        value: json!("receipt"),
        by: None,
    };
    assert_eq!(
        m.handle(&mut st, resolve(Resolution::Done)).unwrap_err(),
        Refused::NotAmbiguous("pay".into())
    );
    let effect = Pending {
        call: None,
        tool: "charge".into(),
        arguments: json!({}),
        key: key.clone(),
    };
    let d1 = m
        .handle(
            &mut st,
            Input::Ambiguous {
                step: "pay".into(),
                attempt: 1,
                effect,
            },
        )
        .unwrap();
    assert!(matches!(
        &d1.events[..],
        [Event::StepAmbiguous { call: None, .. }]
    ));
    assert_eq!(d1.actions, [Action::Release { step: "pay".into() }]);
    assert_eq!(st.status, RunStatus::Waiting);
    assert_eq!(st.ambiguous_steps(), ["pay"]);
    // Retried: a new attempt with the same key.
    let d2 = m.handle(&mut st, resolve(Resolution::Retry)).unwrap();
    assert_eq!(said(&d2)[1], "start pay#2");
    assert_eq!(st.steps["pay"].key, key);
    assert_eq!(d2.actions, [launch("pay")]);
    // Replaying the log gives the same state.
    let mut replayed = RunState::new(st.run_id, json!({}), &p, &RunOptions::default());
    for ev in d0.events.iter().chain(&d1.events).chain(&d2.events) {
        m.apply(&mut replayed, ev);
    }
    replayed.last_seq = st.last_seq;
    assert_eq!(replayed, st);
}
