//! The team on the machine: messages and channels, shared memory, agents' lifecycle,
//! `wait_for`, and runaway exchanges; each checked against a replay of its events.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{AgentAction, AgentState, Event, RunId, StepErrorKind, WorkflowDoc};

/// The time these tests' machines decide at.
const NOW: i64 = 1_000_000;
use serde_json::{Value, json};

use super::tests::{done, said};
use super::{Decision, Input, Machine, Refused, RunOptions, RunState};
use crate::bench_team::{inbox, team_call as call};
use crate::program::Program;

const TEAM_TOOLS: [&str; 7] = crate::team::TOOLS;

/// A workflow whose agents (each with every team tool) run the parallel branches
/// `branches` (`(step id, agent)`), with `extra` top-level keys.
fn team(branches: &[(&str, &str)], extra: Value) -> Program {
    let mut agents = serde_json::Map::new();
    for (_, a) in branches {
        agents.insert(
            (*a).into(),
            json!({ "model": "scripted/x", "tools": TEAM_TOOLS }),
        );
    }
    let steps: Vec<Value> = branches
        .iter()
        .map(|(id, a)| json!({ "id": id, "agent": a, "prompt": "go" }))
        .collect();
    let mut doc = json!({
        "version": 1, "name": "team", "agents": agents,
        "steps": [{ "id": "p", "parallel": steps }],
    });
    for (k, v) in extra.as_object().unwrap() {
        match k.as_str() {
            "join" => doc["steps"][0]["join"] = v.clone(),
            _ => doc[k] = v.clone(),
        }
    }
    let doc: WorkflowDoc = serde_json::from_value(doc).unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// The result the journal holds for call `n` of `step`.
fn result(st: &RunState, step: &str, n: u32) -> (Value, bool) {
    let j = st.steps[step].journal.as_ref().unwrap();
    j.call(n).unwrap().result.clone().unwrap()
}

struct Run<'p> {
    m: Machine<'p>,
    p: &'p Program,
    st: RunState,
    log: Vec<Decision>,
}

impl<'p> Run<'p> {
    fn new(p: &'p Program) -> Run<'p> {
        let m = Machine::new(p);
        m.set_now(NOW);
        let mut st = RunState::new(RunId::new(), json!({}), p, &RunOptions::default());
        let d0 = m.handle(&mut st, Input::Start { resumed: false }).unwrap();
        Run {
            m,
            p,
            st,
            log: vec![d0],
        }
    }

    fn feed(&mut self, input: Input) -> Result<&Decision, Refused> {
        let d = self.m.handle(&mut self.st, input)?;
        self.log.push(d);
        Ok(self.log.last().unwrap())
    }

    fn ok(&mut self, input: Input) -> &Decision {
        self.feed(input).unwrap()
    }

    /// Replaying the log (at the same time: message times come from the clock) rebuilds the
    /// same state.
    fn replays(&self) {
        let m = Machine::new(self.p);
        m.set_now(self.m.now_ms());
        let mut fresh = RunState::new(self.st.run_id, json!({}), self.p, &RunOptions::default());
        for ev in self.log.iter().flat_map(|d| &d.events) {
            m.apply(&mut fresh, ev);
        }
        assert!(fresh == self.st, "the replay differs");
    }
}

#[test]
fn a_direct_message_reaches_the_next_turn_of_its_receiver_once_in_order() {
    let p = team(&[("a", "alice"), ("b", "bob")], json!({}));
    let mut r = Run::new(&p);
    r.ok(call(
        "a",
        1,
        "message.send",
        json!({"to": "bob", "content": "first"}),
    ));
    r.ok(call(
        "a",
        2,
        "message.send",
        json!({"to": "bob", "content": "second"}),
    ));
    assert_eq!(
        result(&r.st, "a", 1),
        (json!({"sent": 1, "to": ["bob"]}), false)
    );
    let d = r.ok(inbox("b", 1));
    assert!(matches!(
        d.events[..],
        [Event::MessagesDelivered {
            count: 2,
            turn: 1,
            ..
        }]
    ));
    let got = r.st.steps["b"]
        .journal
        .as_ref()
        .unwrap()
        .inbox_of(1)
        .unwrap();
    let order: Vec<&str> = got.iter().map(|m| m.content.as_str()).collect();
    assert_eq!(order, ["first", "second"]);
    assert_eq!(got[0].from, "alice");
    // Asked again for the same turn (a resume): nothing more is delivered.
    assert!(r.ok(inbox("b", 1)).events.is_empty());
    // The next turn gets only what came since.
    assert!(r.ok(inbox("b", 2)).events.is_empty());
    assert!(r.st.team.inboxes.is_empty());
    r.replays();
}

#[test]
fn bad_messages_are_refused_with_the_reason_and_logged() {
    let p = team(
        &[("a", "alice"), ("b", "bob")],
        json!({"messages": {"max_bytes": 10}}),
    );
    let mut r = Run::new(&p);
    r.ok(call(
        "a",
        1,
        "message.send",
        json!({"to": "carol", "content": "x"}),
    ));
    let (out, err) = result(&r.st, "a", 1);
    assert!(err);
    assert!(
        out.as_str()
            .unwrap()
            .contains("no agent 'carol' in this run (agents: bob)"),
        "{out}"
    );
    r.ok(call(
        "a",
        2,
        "message.send",
        json!({"to": "bob", "content": "far too long"}),
    ));
    let (out, err) = result(&r.st, "a", 2);
    assert!(
        err && out.as_str().unwrap().contains("over the limit of 10"),
        "{out}"
    );
    r.ok(call(
        "a",
        3,
        "message.broadcast",
        json!({"channel": "x", "content": "y"}),
    ));
    let (out, _) = result(&r.st, "a", 3);
    assert!(out.as_str().unwrap().contains("no channel 'x'"), "{out}");
    assert_eq!(r.st.team.sent, 0);
    r.replays();
}

#[test]
fn a_broadcast_reaches_every_subscriber_but_its_sender() {
    let names: Vec<(String, String)> = (0..101)
        .map(|i| (format!("s{i}"), format!("a{i}")))
        .collect();
    let branches: Vec<(&str, &str)> = names
        .iter()
        .map(|(s, a)| (s.as_str(), a.as_str()))
        .collect();
    let subscribers: Vec<&str> = branches.iter().map(|(_, a)| *a).collect();
    let p = team(
        &branches,
        json!({"channels": {"design": {"subscribers": subscribers}}}),
    );
    let mut r = Run::new(&p);
    r.ok(call(
        "s0",
        1,
        "message.broadcast",
        json!({"channel": "design", "content": "plan"}),
    ));
    assert_eq!(r.st.team.inboxes.len(), 100);
    assert!(!r.st.team.inboxes.contains_key("a0"));
    r.ok(inbox("s57", 1));
    let got = r.st.steps["s57"]
        .journal
        .as_ref()
        .unwrap()
        .inbox_of(1)
        .unwrap();
    assert_eq!(got[0].channel.as_deref(), Some("design"));
    r.replays();
}

#[test]
fn compare_and_set_increments_from_many_writers_end_at_exactly_their_count() {
    let names: Vec<(String, String)> = (0..10)
        .map(|i| (format!("s{i}"), format!("a{i}")))
        .collect();
    let branches: Vec<(&str, &str)> = names
        .iter()
        .map(|(s, a)| (s.as_str(), a.as_str()))
        .collect();
    let p = team(&branches, json!({}));
    let mut r = Run::new(&p);
    let mut calls = [0u32; 10];
    let mut done_count = 0;
    let mut left = [100u32; 10];
    // Every writer reads, then all write with what they read: all but one lose and retry.
    while done_count < 1000 {
        let mut seen = Vec::new();
        for (i, (s, _)) in branches.iter().enumerate() {
            if left[i] == 0 {
                continue;
            }
            calls[i] += 1;
            r.ok(call(s, calls[i], "memory.get", json!({"key": "n"})));
            let (v, _) = result(&r.st, s, calls[i]);
            seen.push((
                i,
                v["version"].as_u64().unwrap(),
                v["value"].as_u64().unwrap_or(0),
            ));
        }
        for (i, version, n) in seen {
            let s = branches[i].0;
            calls[i] += 1;
            let args = json!({"key": "n", "value": n + 1, "expect_version": version});
            r.ok(call(s, calls[i], "memory.set", args));
            let (out, err) = result(&r.st, s, calls[i]);
            if !err {
                left[i] -= 1;
                done_count += 1;
            } else {
                assert!(out.as_str().unwrap().contains("version mismatch"), "{out}");
            }
        }
    }
    assert_eq!(r.st.team.memory["n"].value, json!(1000));
    assert_eq!(r.st.team.memory["n"].version, 1000);
}

#[test]
fn memory_append_list_and_templates_see_the_shared_memory() {
    let p = team(&[("a", "alice"), ("b", "bob")], json!({}));
    let mut r = Run::new(&p);
    r.ok(call(
        "a",
        1,
        "memory.append",
        json!({"key": "log", "value": "one"}),
    ));
    r.ok(call(
        "b",
        1,
        "memory.append",
        json!({"key": "log", "value": "two"}),
    ));
    r.ok(call(
        "b",
        2,
        "memory.set",
        json!({"key": "plan", "value": {"x": 1}}),
    ));
    r.ok(call(
        "a",
        2,
        "memory.append",
        json!({"key": "plan", "value": 3}),
    ));
    assert!(
        result(&r.st, "a", 2)
            .0
            .as_str()
            .unwrap()
            .contains("not a list")
    );
    r.ok(call("a", 3, "memory.list", json!({})));
    let (list, _) = result(&r.st, "a", 3);
    assert_eq!(list[0], json!({"key": "log", "version": 2, "by": "bob"}));
    let ctx = r.st.context_json(&p, 0);
    assert_eq!(ctx["memory"]["log"], json!(["one", "two"]));
    r.replays();
}

#[test]
fn a_paused_agent_holds_its_next_step_and_others_go_on_until_it_is_resumed() {
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "life",
        "agents": {"alice": {"model": "scripted/x"}, "bob": {"model": "scripted/x"}},
        "steps": [{"id": "p", "parallel": [
            {"id": "b1", "steps": [
                {"id": "a1", "agent": "alice", "prompt": "go"},
                {"id": "a2", "agent": "alice", "prompt": "go"}]},
            {"id": "c1", "agent": "bob", "prompt": "go"}]}],
    }))
    .unwrap();
    let p = Program::compile(doc, PathBuf::from(".")).unwrap();
    let mut r = Run::new(&p);
    assert_eq!(r.st.team.state_of("alice"), AgentState::Running);
    let pause = Input::Agent {
        agent: "alice".into(),
        action: AgentAction::Pause,
        by: Some("ops".into()),
    };
    r.ok(pause.clone());
    assert_eq!(r.st.team.state_of("alice"), AgentState::Paused);
    assert_eq!(
        r.feed(pause).unwrap_err(),
        Refused::Agent("agent 'alice' is already paused".into())
    );
    let d = r.ok(done("a1", 1, Ok(json!("A"))));
    assert_eq!(said(d), ["ok a1 -> a2"], "a2 waits for alice");
    r.ok(done("c1", 1, Ok(json!("C"))));
    assert_eq!(r.st.team.state_of("bob"), AgentState::Idle);
    // Only alice's step is left: the run pauses for her, and a run resume is refused.
    let agents = vec!["alice".to_string()];
    assert_eq!(
        r.st.pause,
        Some(baton_types::PauseReason::Agents { agents })
    );
    assert_eq!(r.st.status, baton_types::RunStatus::Paused);
    assert!(matches!(
        r.feed(Input::Resume { stepping: false }),
        Err(Refused::Agent(_))
    ));
    let resume = Input::Agent {
        agent: "alice".into(),
        action: AgentAction::Resume,
        by: None,
    };
    let d = r.ok(resume);
    assert!(said(d).contains(&"start a2#1".to_string()));
    assert_eq!(r.st.team.state_of("alice"), AgentState::Running);
    let unknown = Input::Agent {
        agent: "zed".into(),
        action: AgentAction::Stop,
        by: None,
    };
    let e = r.feed(unknown).unwrap_err();
    assert_eq!(
        e,
        Refused::Agent("no agent 'zed' in this run (agents: alice, bob)".into())
    );
    r.replays();
}

#[test]
fn a_stopped_agent_fails_its_pending_steps_with_the_reason() {
    let p = team(
        &[("a", "alice"), ("b", "bob")],
        json!({"join": {"strategy": "first_success"}}),
    );
    let mut r = Run::new(&p);
    let stop = Input::Agent {
        agent: "bob".into(),
        action: AgentAction::Stop,
        by: Some("ops".into()),
    };
    let d = r.ok(stop);
    let failed = d.events.iter().find_map(|e| match e {
        Event::StepFailed { step, error, .. } => Some((step.clone(), error.clone())),
        _ => None,
    });
    let (step, error) = failed.expect("b fails");
    assert_eq!(step, "b");
    assert_eq!(error.kind, StepErrorKind::AgentStopped);
    assert_eq!(error.message, "agent 'bob' was stopped by ops");
    assert!(
        d.actions
            .contains(&super::Action::Cancel { step: "b".into() })
    );
    assert_eq!(r.st.team.state_of("bob"), AgentState::Stopped);
    // Messages to a stopped agent are refused; its writes can no longer happen.
    r.ok(call(
        "a",
        1,
        "message.send",
        json!({"to": "bob", "content": "hi"}),
    ));
    assert!(
        result(&r.st, "a", 1)
            .0
            .as_str()
            .unwrap()
            .contains("stopped")
    );
    assert!(
        r.feed(call("b", 1, "memory.set", json!({"key": "k", "value": 1})))
            .is_err()
    );
    let resume = Input::Agent {
        agent: "bob".into(),
        action: AgentAction::Resume,
        by: None,
    };
    assert_eq!(
        r.feed(resume).unwrap_err(),
        Refused::Agent("agent 'bob' is stopped: a stopped agent does not come back".into())
    );
    r.replays();
}

fn waiting(timeout: Option<&str>) -> Program {
    let mut wait = json!({"from": "alice"});
    if let Some(t) = timeout {
        wait["timeout"] = json!(t);
    }
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "wait",
        "agents": {"alice": {"model": "scripted/x", "tools": ["message.send"]},
                   "bob": {"model": "scripted/x"}},
        "steps": [{"id": "p", "parallel": [
            {"id": "a", "agent": "alice", "prompt": "go"},
            {"id": "b", "agent": "bob", "prompt": "go", "wait_for": wait}]}],
    }))
    .unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

#[test]
fn a_step_waiting_for_a_message_starts_its_work_when_it_comes() {
    let p = waiting(None);
    let mut r = Run::new(&p);
    let launched: Vec<_> = r.log[0]
        .actions
        .iter()
        .filter(|a| matches!(a, super::Action::Launch { .. }))
        .collect();
    assert_eq!(launched, [&super::Action::Launch { step: "a".into() }]);
    assert_eq!(r.st.team.state_of("bob"), AgentState::Waiting);
    let d = r.ok(call(
        "a",
        1,
        "message.send",
        json!({"to": "bob", "content": "go on"}),
    ));
    assert!(
        d.events
            .iter()
            .any(|e| matches!(e, Event::StepWoke { step } if step == "b"))
    );
    assert!(
        d.actions
            .contains(&super::Action::Launch { step: "b".into() })
    );
    assert_eq!(r.st.team.state_of("bob"), AgentState::Running);
    r.replays();
}

#[test]
fn a_wait_that_nothing_can_end_fails_and_a_deadline_times_out() {
    let p = waiting(None);
    let mut r = Run::new(&p);
    let d = r.ok(done("a", 1, Ok(json!("done, said nothing"))));
    let error = d.events.iter().find_map(|e| match e {
        Event::StepFailed { step, error, .. } if step == "b" => Some(error.message.clone()),
        _ => None,
    });
    assert!(
        error
            .unwrap()
            .contains("no step left in the run can send one")
    );
    r.replays();

    let p = waiting(Some("30s"));
    let mut r = Run::new(&p);
    let early = r.feed(Input::MessageTimeout { step: "b".into() });
    assert!(matches!(early, Err(Refused::NotDue(_))));
    r.m.set_now(r.m.now_ms() + 31_000);
    let d = r.ok(Input::MessageTimeout { step: "b".into() });
    let error = d.events.iter().find_map(|e| match e {
        Event::StepFailed { error, .. } => Some(error.message.clone()),
        _ => None,
    });
    assert_eq!(
        error.unwrap(),
        "no message from 'alice' within 30s (wait_for)"
    );
}

#[test]
fn two_agents_bouncing_the_same_messages_are_stopped_as_a_runaway() {
    // (In a real bounce each message comes from a new visit of a loop; here from one step, so
    // the repeated-call check is off to let the exchange check speak.)
    let off = json!({"runaway": {"repeated_tool_calls": 0, "repeated_messages": 3}});
    let p = team(&[("a", "alice"), ("b", "bob")], off);
    let mut r = Run::new(&p);
    let send = |from: &str, n: u32, to: &str, what: &str| {
        call(from, n, "message.send", json!({"to": to, "content": what}))
    };
    for n in 1..=2 {
        r.ok(send("a", n, "bob", "you first"));
        r.ok(send("b", n, "alice", "no, you first"));
    }
    let d = r.ok(send("a", 3, "bob", "you first"));
    let error = d.events.iter().find_map(|e| match e {
        Event::StepFailed { error, .. } => Some(error.clone()),
        _ => None,
    });
    let error = error.expect("a runaway");
    assert_eq!(error.kind, StepErrorKind::Runaway);
    assert!(
        error
            .message
            .contains("agents 'alice' and 'bob' keep sending each other the same messages"),
        "{}",
        error.message
    );
    assert_eq!(r.st.team.sent, 4, "the third is not delivered");
    r.replays();
}

#[test]
fn an_agents_state_follows_its_steps_running_waiting_failed_idle() {
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "life",
        "agents": {"alice": {"model": "scripted/x"}},
        "steps": [
            {"id": "a1", "agent": "alice", "prompt": "go", "retry": {"max": 1, "backoff": "1s"},
             "on_error": "continue"},
            {"id": "a2", "agent": "alice", "prompt": "go"}],
    }))
    .unwrap();
    let p = Program::compile(doc, PathBuf::from(".")).unwrap();
    let mut r = Run::new(&p);
    assert_eq!(r.st.team.state_of("alice"), AgentState::Running);
    let down = || {
        Err(baton_types::StepError::new(
            StepErrorKind::Execution,
            "down",
        ))
    };
    r.ok(done("a1", 1, down()));
    assert_eq!(
        r.st.team.state_of("alice"),
        AgentState::Waiting,
        "its retry waits"
    );
    r.ok(Input::RetryDue { step: "a1".into() });
    assert_eq!(r.st.team.state_of("alice"), AgentState::Running);
    r.ok(done("a1", 2, down()));
    // Failed, recovered by `on_error: continue`: a2 starts at once.
    assert_eq!(r.st.team.state_of("alice"), AgentState::Running);
    r.ok(done("a2", 1, down()));
    assert_eq!(r.st.team.state_of("alice"), AgentState::Failed);
    assert_eq!(r.st.team.agents["alice"].since_ms, NOW);
    r.replays();
}
