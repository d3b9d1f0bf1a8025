//! Agents as a team through the executor and the store: a message and a memory write reach
//! a waiting agent, and a process that dies in the middle of delivering leaves nothing lost
//! or doubled.

use std::time::Duration;

use baton_engine::executor::load_state;
use baton_engine::{Executor, Input};
use baton_llm::scripted::Reply;
use baton_types::{Event, RunStatus};
use serde_json::json;

use super::harness;

const WORKFLOW: &str = r#"
version: 1
name: team
agents:
  alice: { model: scripted/alice, tools: [message.send, memory.set] }
  bob: { model: scripted/bob, tools: [memory.get] }
steps:
  - id: p
    parallel:
      - { id: propose, agent: alice, prompt: propose a plan }
      - id: review
        agent: bob
        prompt: "review the plan: {{ memory.plan }}"
        wait_for: { from: alice, timeout: 30s }
"#;

fn alice_replies() -> Vec<Reply> {
    let calls = Reply {
        tool_calls: vec![
            baton_llm::scripted::ScriptedCall {
                name: "memory.set".into(),
                arguments: json!({"key": "plan", "value": "use sqlite"}),
            },
            baton_llm::scripted::ScriptedCall {
                name: "message.send".into(),
                arguments: json!({"to": "bob", "content": "the plan is ready"}),
            },
        ],
        ..Reply::default()
    };
    vec![calls, Reply::text("proposed")]
}

fn delivered(evs: &[Event]) -> usize {
    evs.iter()
        .filter(|e| matches!(e, Event::MessagesDelivered { .. }))
        .count()
}

#[tokio::test]
async fn a_message_and_a_memory_write_reach_the_agent_waiting_for_them() {
    let h = harness(WORKFLOW);
    h.model("alice", alice_replies());
    let bob = h.model("bob", vec![Reply::text("approved")]);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let req = &bob.requests()[0];
    let texts: Vec<&str> = req.messages.iter().map(|m| m.content.as_str()).collect();
    assert!(texts.contains(&"review the plan: use sqlite"), "{texts:?}");
    let inbox = texts
        .iter()
        .find(|t| t.contains("Messages from your team"))
        .unwrap();
    assert!(
        inbox.contains("from alice") && inbox.contains("the plan is ready"),
        "{inbox}"
    );
    assert_eq!(st.team.memory["plan"].by, "alice");
    let evs = h.events(&st).await;
    assert_eq!(delivered(&evs), 1);
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::StepWoke { step } if step == "review"))
    );
    h.check_replay(&st).await;
}

#[tokio::test]
async fn a_crash_while_a_turn_holds_its_messages_loses_and_doubles_nothing() {
    let h = harness(WORKFLOW);
    h.model("alice", alice_replies());
    let hang = Reply {
        text: Some("never".into()),
        delay: Some(baton_types::Dur(Duration::from_secs(60))),
        ..Reply::default()
    };
    let bob = h.model("bob", vec![hang, Reply::text("approved")]);
    let given = baton_engine::inputs::resolve(&h.program.doc, Default::default()).unwrap();
    let opts = baton_engine::RunOptions::default();
    let id =
        baton_engine::executor::create_run(&h.services, &h.program, "", None, given.clone(), &opts)
            .await
            .unwrap();
    let st = baton_engine::RunState::new(id, given, &h.program, &opts);
    let exec = Executor::new(h.program.clone(), h.services.clone());
    // The process dies while bob's first turn waits for its model: its messages were delivered.
    let drive = exec.drive(st, vec![Input::Start { resumed: false }]);
    assert!(
        tokio::time::timeout(Duration::from_secs(2), drive)
            .await
            .is_err()
    );
    let evs = h.events_of(id).await;
    assert_eq!(delivered(&evs), 1, "delivered before the crash");
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    let st = h.drive(st, vec![Input::Start { resumed: true }]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let evs = h.events(&st).await;
    assert_eq!(delivered(&evs), 1, "not delivered again");
    let resumed = &bob.requests()[1];
    let seen = resumed
        .messages
        .iter()
        .filter(|m| m.content.contains("the plan is ready"))
        .count();
    assert_eq!(seen, 1, "the resumed turn sees the message once");
    h.check_replay(&st).await;
}
