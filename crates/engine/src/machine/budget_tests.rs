//! Budgets and runaway detection on the machine: input -> events, and replay equality.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{
    BudgetChange, BudgetKind, Event, PauseReason, Progress, RunId, RunStatus, StepErrorKind, Usage,
    WorkflowDoc,
};
use serde_json::{Value, json};

use super::tests::{assert_replays, done, said};
use super::{Decision, Input, Machine, Refused, RunOptions, RunState, ToolCall};
use crate::program::Program;

/// A workflow of agent steps (`(id, agent)`) with `extra` keys (agents, budget, runaway).
fn workflow(steps: &[(&str, &str)], extra: Value) -> Program {
    let steps: Vec<Value> = steps
        .iter()
        .map(|(id, agent)| json!({ "id": id, "agent": agent, "prompt": "go" }))
        .collect();
    let mut doc = json!({ "version": 1, "name": "b", "steps": steps });
    for (k, v) in extra.as_object().unwrap() {
        doc[k] = v.clone();
    }
    let doc: WorkflowDoc = serde_json::from_value(doc).unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// One model reply of `tokens` tokens by `model`, for `step`.
fn reply(step: &str, model: &str, tokens: u64) -> Input {
    let usage = Usage {
        prompt_tokens: tokens / 2,
        completion_tokens: tokens - tokens / 2,
        cost_usd: 0.0,
    };
    Input::Progress {
        step: step.into(),
        progress: Progress::ModelReply {
            model: model.into(),
            turn: 1,
            content: "ok".into(),
            tool_calls: Vec::new(),
            usage,
        },
    }
}

/// Feeds `inputs` at `now`, returning the decisions (every one accepted).
fn feed(m: &Machine, st: &mut RunState, inputs: Vec<Input>) -> Decision {
    let mut out = Decision::default();
    for i in inputs {
        m.handle_into(st, i, &mut out).unwrap();
    }
    out
}

fn stop_of(st: &RunState) -> baton_types::BudgetStop {
    match &st.pause {
        Some(PauseReason::Budget(stop)) => (**stop).clone(),
        other => panic!("not stopped by its budget: {other:?}"),
    }
}

fn raise(pair: &str) -> Input {
    Input::RaiseBudget {
        changes: vec![BudgetChange::parse_pair(pair).unwrap()],
        by: Some("ops".into()),
    }
}

#[test]
fn crossing_the_run_budget_stops_before_the_next_step_and_a_raise_resumes_it() {
    let agents = json!({ "a": { "model": "scripted/a" }, "b": { "model": "scripted/b" } });
    let p = workflow(
        &[("s1", "a"), ("s2", "b"), ("s3", "a")],
        json!({ "agents": agents, "budget": { "tokens": 150 } }),
    );
    let m = Machine::new(&p);
    let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
    let d0 = feed(&m, &mut st, vec![Input::Start { resumed: false }]);
    let d1 = feed(
        &m,
        &mut st,
        vec![reply("s1", "m1", 100), done("s1", 1, Ok(json!(1)))],
    );
    assert_eq!(said(&d1).last().unwrap(), "start s2#1");
    let d2 = feed(
        &m,
        &mut st,
        vec![reply("s2", "m2", 100), done("s2", 1, Ok(json!(2)))],
    );
    // s2's result crossed the limit: nothing new starts, the run stops with who spent what.
    assert_eq!(said(&d2)[1..], ["ok s2 -> s3", "paused"]);
    assert_eq!(st.status, RunStatus::BudgetExceeded);
    let stop = stop_of(&st);
    assert_eq!(stop.crossed.agent, None);
    assert_eq!(stop.crossed.kind, BudgetKind::Tokens);
    assert_eq!((stop.crossed.limit, stop.crossed.spent), (150.0, 200.0));
    assert_eq!(stop.by_agent["a"].tokens, 100);
    assert_eq!(stop.by_agent["b"].tokens, 100);
    assert_eq!(stop.by_model["m2"].model_calls, 1);
    assert_eq!(stop.spent.model_calls, 2);
    // A resume without more budget is refused, and logs nothing.
    let again = m.handle(&mut st, Input::Resume { stepping: false });
    assert!(matches!(again, Err(Refused::OverBudget(ref c)) if c.kind == BudgetKind::Tokens));
    assert!(
        again
            .unwrap_err()
            .to_string()
            .contains("the run spent 200 tokens of its budget of 150")
    );
    // Raised by 100 (to 250): the resume starts s3.
    let d3 = feed(
        &m,
        &mut st,
        vec![raise("tokens=+100"), Input::Resume { stepping: false }],
    );
    assert!(
        matches!(&d3.events[0], Event::BudgetRaised { changes, by } if changes[0].amount == 100.0 && by.as_deref() == Some("ops"))
    );
    assert_eq!(said(&d3)[1..], ["resumed", "start s3#1"]);
    assert_eq!(m.limits(&st, None).tokens, Some(250));
    let d4 = feed(
        &m,
        &mut st,
        vec![reply("s3", "m1", 10), done("s3", 1, Ok(json!(3)))],
    );
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.budget.spent.tokens, 210);
    assert_replays(&p, &st, &[&d0, &d1, &d2, &d3, &d4]);
}

#[test]
fn an_agent_crossing_its_own_budget_stops_the_run_naming_it() {
    let agents = json!({
        "a": { "model": "scripted/a", "budget": { "model_calls": 1 } },
        "b": { "model": "scripted/b" }
    });
    let p = workflow(&[("s1", "a"), ("s2", "b")], json!({ "agents": agents }));
    let m = Machine::new(&p);
    let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
    let d0 = feed(&m, &mut st, vec![Input::Start { resumed: false }]);
    let d1 = feed(
        &m,
        &mut st,
        vec![reply("s1", "m", 5), done("s1", 1, Ok(json!(1)))],
    );
    assert_eq!(said(&d1)[1..], ["ok s1 -> s2", "paused"]);
    let stop = stop_of(&st);
    assert_eq!(stop.crossed.agent.as_deref(), Some("a"));
    assert_eq!(
        stop.crossed.to_string(),
        "agent 'a' spent 1 model_calls of its budget of 1"
    );
    // Changes must name a limit the workflow sets; none of these is logged.
    for bad in [
        "tokens=+5",
        "b.model_calls=+1",
        "c.tokens=+1",
        "a.wall_time=+1m",
    ] {
        let r = m.handle(&mut st, raise(bad));
        assert!(matches!(r, Err(Refused::Budget(_))), "{bad}: {r:?}");
    }
    // Raising the run's limits would not help: only a's.
    let d2 = feed(
        &m,
        &mut st,
        vec![raise("a.model_calls=+1"), Input::Resume { stepping: false }],
    );
    assert_eq!(said(&d2)[1..], ["resumed", "start s2#1"]);
    assert_replays(&p, &st, &[&d0, &d1, &d2]);
}

#[test]
fn wall_time_counts_only_while_running_and_replays_at_the_logged_times() {
    let agents = json!({ "a": { "model": "scripted/a" } });
    let p = workflow(
        &[("s1", "a"), ("s2", "a"), ("s3", "a")],
        json!({ "agents": agents, "budget": { "wall_time": "10s" } }),
    );
    let m = Machine::new(&p);
    let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
    let mut log: Vec<(i64, Decision)> = Vec::new();
    let mut at = |st: &mut RunState, now: i64, inputs: Vec<Input>| {
        m.set_now(now);
        let d = feed(&m, st, inputs);
        log.push((now, d));
    };
    at(&mut st, 0, vec![Input::Start { resumed: false }]);
    at(&mut st, 1_000, vec![Input::Pause]);
    // 50 s paused do not count.
    at(&mut st, 51_000, vec![Input::Resume { stepping: false }]);
    at(&mut st, 55_000, vec![done("s1", 1, Ok(json!(1)))]);
    assert_eq!(st.budget.spent.wall_time_ms, 5_000);
    assert_eq!(st.status, RunStatus::Running);
    // A process that went away: the time until the next start does not count.
    at(&mut st, 90_000, vec![Input::Start { resumed: true }]);
    at(&mut st, 96_000, vec![done("s2", 1, Ok(json!(2)))]);
    assert_eq!(st.budget.spent.wall_time_ms, 11_000);
    assert_eq!(st.status, RunStatus::BudgetExceeded);
    assert_eq!(stop_of(&st).crossed.kind, BudgetKind::WallTime);
    // Replayed at the logged times: the same state.
    let r = Machine::new(&p);
    let mut fresh = RunState::new(st.run_id, json!({}), &p, &RunOptions::default());
    for (now, d) in &log {
        r.set_now(*now);
        for ev in &d.events {
            r.apply(&mut fresh, ev);
        }
    }
    assert_eq!(fresh, st);
}

fn started(call: u32, args: Value) -> Input {
    Input::ToolCall {
        step: "s1".into(),
        attempt: 1,
        call: ToolCall::Started {
            call,
            tool: "echo".into(),
            arguments: args,
            key: format!("k/{call}"),
        },
    }
}

fn finished(call: u32) -> Input {
    Input::ToolCall {
        step: "s1".into(),
        attempt: 1,
        call: ToolCall::Finished {
            call,
            tool: "echo".into(),
            output: json!("same"),
            is_error: false,
        },
    }
}

#[test]
fn the_third_identical_tool_call_in_a_row_fails_the_step_before_it_is_sent() {
    let agents = json!({ "coder": { "model": "scripted/a", "tools": ["echo"] } });
    let p = workflow(&[("s1", "coder")], json!({ "agents": agents }));
    let m = Machine::new(&p);
    let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
    let d0 = feed(&m, &mut st, vec![Input::Start { resumed: false }]);
    let x = json!({ "text": "x" });
    // Another call between two identical ones breaks the row.
    let d1 = feed(
        &m,
        &mut st,
        vec![
            reply("s1", "scripted/a", 100),
            started(1, x.clone()),
            finished(1),
            started(2, json!({ "text": "y" })),
            finished(2),
            started(3, x.clone()),
            finished(3),
            started(4, x.clone()),
            finished(4),
        ],
    );
    assert!(st.is_running("s1"));
    let d2 = feed(&m, &mut st, vec![started(5, x.clone())]);
    let Event::StepFailed { error, .. } = &d2.events[0] else {
        panic!("{:?}", d2.events);
    };
    assert_eq!(error.kind, StepErrorKind::Runaway);
    assert!(!error.retryable);
    let msg = &error.message;
    for part in [
        "agent 'coder'",
        "step 's1'",
        "tool 'echo'",
        r#"{"text":"x"}"#,
        "3rd time",
        "calls 3-5",
    ] {
        assert!(msg.contains(part), "{part} not in {msg}");
    }
    // The call itself was never logged (so never sent), and the run failed.
    assert!(
        !d2.events
            .iter()
            .any(|e| matches!(e, Event::ToolCallStarted { .. }))
    );
    assert_eq!(st.status, RunStatus::Failed);
    assert!(st.error.as_deref().unwrap().contains("runaway"));
    // The replies the stopped attempt had count in the run's tokens.
    let Event::StepFailed { usage, .. } = &d2.events[0] else {
        unreachable!()
    };
    assert_eq!((usage.total(), st.usage.total()), (100, 100));
    assert_replays(&p, &st, &[&d0, &d1, &d2]);
}

#[test]
fn runaway_detection_can_be_turned_off_or_given_another_threshold() {
    let agents = json!({ "coder": { "model": "scripted/a", "tools": ["echo"] } });
    for (n, stops_at) in [(0, None), (5, Some(5))] {
        let p = workflow(
            &[("s1", "coder")],
            json!({ "agents": agents, "runaway": { "repeated_tool_calls": n } }),
        );
        let m = Machine::new(&p);
        let mut st = RunState::new(RunId::new(), json!({}), &p, &RunOptions::default());
        feed(&m, &mut st, vec![Input::Start { resumed: false }]);
        let mut stopped = None;
        for call in 1..=8 {
            feed(&m, &mut st, vec![started(call, json!({}))]);
            if !st.is_running("s1") {
                stopped = Some(call);
                break;
            }
            feed(&m, &mut st, vec![finished(call)]);
        }
        assert_eq!(stopped, stops_at, "repeated_tool_calls: {n}");
    }
}
