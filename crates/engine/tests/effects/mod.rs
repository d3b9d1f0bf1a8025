//! Effects once: one key per effect (the same for retries and resumes), a key and a journal
//! entry per tool call, recorded results reused on resume, ambiguous calls left to a person,
//! and the prompts a model was sent in the log. A "crash" drops the executor while a tool
//! call hangs, as `kill -9` would stop it.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use baton_engine::executor::{create_run, load_state};
use baton_engine::{Executor, Input, Machine, RunOptions, RunState};
use baton_llm::scripted::{Reply, ScriptedCall};
use baton_tools::{Effects, Registry, Tool, ToolContext, ToolSpec};
use baton_types::{Event, Progress, Resolution, RunId, RunStatus};
use serde_json::{Value, json};

use super::{Harness, harness_with};

/// A tool with an effect: it records every call (arguments, key); the calls numbered in
/// `hang_on` (counting from 1) never return.
struct Effect {
    effects: Effects,
    calls: Mutex<Vec<(Value, String)>>,
    hang_on: Vec<usize>,
    hung: tokio::sync::Notify,
}

impl Effect {
    fn new(effects: Effects, hang_on: impl Into<Vec<usize>>) -> Arc<Effect> {
        let hang_on = hang_on.into();
        Arc::new(Effect {
            effects,
            calls: Mutex::new(Vec::new()),
            hang_on,
            hung: tokio::sync::Notify::new(),
        })
    }

    fn keys(&self) -> Vec<String> {
        self.calls
            .lock()
            .unwrap()
            .iter()
            .map(|(_, k)| k.clone())
            .collect()
    }
}

#[async_trait]
impl Tool for Effect {
    fn spec(&self) -> ToolSpec {
        ToolSpec::new("effect", "changes the world", json!({"type": "object"}))
            .with_effects(self.effects)
    }
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, baton_tools::Error> {
        let n = {
            let mut c = self.calls.lock().unwrap();
            c.push((args.clone(), ctx.idempotency_key.clone()));
            c.len()
        };
        if self.hang_on.contains(&n) {
            self.hung.notify_one();
            std::future::pending::<()>().await;
        }
        Ok(json!({ "applied": args }))
    }
}

fn with_effect(yaml: &str, effect: &Arc<Effect>) -> Harness {
    let mut tools = Registry::with_builtins();
    tools.register(effect.clone());
    harness_with(yaml, tools)
}

fn calls(calls: &[Value]) -> Reply {
    Reply {
        tool_calls: calls
            .iter()
            .map(|a| ScriptedCall {
                name: "effect".into(),
                arguments: a.clone(),
            })
            .collect(),
        ..Default::default()
    }
}

const AGENT: &str = r#"
version: 1
name: effects
agents:
  a: { model: scripted/a, tools: [effect], instructions: "Be careful." }
steps:
  - { id: ask, agent: a, prompt: "go" }
"#;

impl Harness {
    /// Creates a run and drives it until `effect` hangs, then drops the executor.
    async fn crash_on(&self, effect: &Effect) -> RunId {
        let opts = RunOptions::default();
        let id = create_run(&self.services, &self.program, "", None, json!({}), &opts)
            .await
            .unwrap();
        let st = RunState::new(id, json!({}), &self.program, &opts);
        self.crash_in(st, vec![Input::Start { resumed: false }], effect)
            .await;
        id
    }

    /// Drives `st` with `inputs` until `effect` hangs, then drops the executor.
    async fn crash_in(&self, st: RunState, inputs: Vec<Input>, effect: &Effect) {
        let id = st.run_id;
        let exec = Executor::new(self.program.clone(), self.services.clone());
        tokio::select! {
            r = exec.drive(st, inputs) => {
                panic!("the run ended before the crash: {:?}", r.map(|s| s.status))
            }
            () = effect.hung.notified() => {}
        }
        self.services
            .store
            .release(id, &baton_store::sqlite::process_owner())
            .await
            .unwrap();
    }

    async fn resume(&self, id: RunId, inputs: Vec<Input>) -> RunState {
        let st = load_state(&self.services, &self.program, id).await.unwrap();
        let mut all = vec![Input::Start { resumed: true }];
        all.extend(inputs);
        self.drive(st, all).await
    }
}

fn count(evs: &[Event], kind: &str) -> usize {
    evs.iter().filter(|e| e.kind() == kind).count()
}

#[tokio::test]
async fn each_tool_call_has_its_own_key_and_is_journaled_with_the_prompts() {
    let effect = Effect::new(Effects::IdempotentWithKey, []);
    let h = with_effect(AGENT, &effect);
    let m = h.model(
        "a",
        vec![
            calls(&[json!({"n": 1}), json!({"n": 2})]),
            calls(&[json!({"n": 3})]),
            Reply::text("done"),
        ],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let step_key = format!("{}:ask:1", st.run_id);
    assert_eq!(
        effect.keys(),
        vec![
            format!("{step_key}/1"),
            format!("{step_key}/2"),
            format!("{step_key}/3")
        ]
    );
    let evs = h.events(&st).await;
    // Each call's start is logged before its result, with the key it was sent with.
    for n in 1..=3u32 {
        let started = evs.iter().position(
            |e| matches!(e, Event::ToolCallStarted { call, key, .. } if *call == n && *key == format!("{step_key}/{n}")),
        );
        let finished = evs.iter().position(
            |e| matches!(e, Event::ToolCallFinished { call, output, .. } if *call == n && output["applied"]["n"] == n),
        );
        assert!(
            started.is_some() && started < finished,
            "call {n}: {started:?} {finished:?}"
        );
    }
    // The prompts: the shared part once, then each turn's new messages only.
    let prompts: Vec<&Progress> = evs
        .iter()
        .filter_map(|e| match e {
            Event::StepProgress {
                progress: p @ Progress::Prompt { .. },
                ..
            } => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(prompts.len(), 3);
    let hashes: Vec<&String> = prompts
        .iter()
        .map(|p| match p {
            Progress::Prompt { context_hash, .. } => context_hash,
            _ => unreachable!(),
        })
        .collect();
    assert!(hashes.iter().all(|h| *h == hashes[0]));
    let Progress::Prompt {
        context, messages, ..
    } = prompts[0]
    else {
        unreachable!()
    };
    let context = context.as_ref().expect("turn 1 carries the context");
    assert_eq!(context.system.as_deref(), Some("Be careful."));
    assert_eq!(context.tools[0]["name"], "effect");
    assert_eq!(messages.len(), 1);
    assert_eq!(messages[0]["content"], "go");
    let Progress::Prompt {
        context, messages, ..
    } = prompts[1]
    else {
        unreachable!()
    };
    assert!(context.is_none(), "later turns refer to it by its hash");
    // The model's two calls, then their two results.
    assert_eq!(messages.len(), 3, "{messages:?}");
    assert_eq!(messages[0]["role"], "assistant");
    assert_eq!(messages[2]["role"], "tool");
    // What was recorded is what was sent.
    let sent = &m.requests()[1].messages;
    assert_eq!(sent.len(), 5);
    h.check_replay(&st).await;
}

#[tokio::test]
async fn a_resumed_agent_reuses_recorded_results_and_resends_a_keyed_call() {
    let effect = Effect::new(Effects::IdempotentWithKey, [2]);
    let h = with_effect(AGENT, &effect);
    let m = h.model(
        "a",
        vec![
            calls(&[json!({"n": 1}), json!({"n": 2})]),
            Reply::text("done"),
        ],
    );
    let id = h.crash_on(&effect).await;
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    let journal = st.steps["ask"].journal.as_deref().unwrap();
    assert!(journal.calls[0].result.is_some());
    assert!(journal.calls[1].result.is_none(), "call 2 never returned");
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let key = format!("{id}:ask:1");
    // Call 1 was not made again; call 2 was, with the same key.
    assert_eq!(
        effect.keys(),
        vec![format!("{key}/1"), format!("{key}/2"), format!("{key}/2")]
    );
    // Turn 1 came from the journal: the model was asked twice in all, not three times.
    assert_eq!(m.requests().len(), 2);
    let evs = h.events(&st).await;
    assert_eq!(count(&evs, "step_started"), 1, "the same attempt went on");
    assert_eq!(count(&evs, "tool_call_finished"), 2);
    assert_eq!(count(&evs, "step_ambiguous"), 0);
    h.check_replay(&st).await;
}

#[tokio::test]
async fn an_unguarded_call_whose_result_was_lost_waits_for_a_person() {
    for resolution in [Resolution::Done, Resolution::Retry] {
        let effect = Effect::new(Effects::Unguarded, [2]);
        let h = with_effect(AGENT, &effect);
        let m = h.model(
            "a",
            vec![
                calls(&[json!({"n": 1}), json!({"n": 2})]),
                Reply::text("done"),
            ],
        );
        let id = h.crash_on(&effect).await;
        let st = h.resume(id, vec![]).await;
        assert_eq!(st.status, RunStatus::Waiting);
        assert_eq!(st.ambiguous_steps(), vec!["ask".to_string()]);
        assert_eq!(effect.keys().len(), 2, "call 2 was not sent again");
        let evs = h.events(&st).await;
        assert!(
            evs.iter().any(|e| matches!(
                e,
                Event::StepAmbiguous { step, call: Some(2), tool, key, arguments, .. }
                    if step == "ask" && tool == "effect" && *key == format!("{id}:ask:1/2") && arguments["n"] == 2
            )),
            "{evs:?}"
        );
        h.check_replay(&st).await;
        // Only an ambiguous step can be resolved.
        let mut probe = st.clone();
        let refused = Machine::new(&h.program).handle(
            &mut probe,
            Input::Resolve {
                step: "nope".into(),
                resolution,
                value: Value::Null,
                by: None,
            },
        );
        assert!(refused.is_err());
        // Resumed again without an answer, it stays put and sends nothing.
        let st = h.resume(id, vec![]).await;
        assert_eq!(st.status, RunStatus::Waiting);
        assert_eq!(effect.keys().len(), 2);
        let st = h
            .resume(
                id,
                vec![Input::Resolve {
                    step: "ask".into(),
                    resolution,
                    value: json!("applied by hand"),
                    by: Some("ops".into()),
                }],
            )
            .await;
        assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
        let reqs = m.requests();
        let answered = &reqs.last().unwrap().messages;
        match resolution {
            Resolution::Done => {
                assert_eq!(effect.keys().len(), 2, "done: not sent again");
                assert!(answered.iter().any(|m| m.content == "applied by hand"));
            }
            Resolution::Retry => {
                let keys = effect.keys();
                assert_eq!(keys.len(), 3, "retry: sent again");
                assert_eq!(keys[2], keys[1], "with the same key");
            }
        }
        h.check_replay(&st).await;
    }
}

const TOOL_STEP: &str = r#"
version: 1
name: pay
steps:
  - { id: pay, tool: effect, with: { amount: 5 } }
  - { id: after, tool: echo, with: { text: "{{ steps.pay.output }}" } }
"#;

#[tokio::test]
async fn an_interrupted_tool_step_is_resent_with_its_key_or_left_to_a_person() {
    // A tool that takes the key: sent again, same key.
    let effect = Effect::new(Effects::IdempotentWithKey, [1]);
    let h = with_effect(TOOL_STEP, &effect);
    let id = h.crash_on(&effect).await;
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(
        effect.keys(),
        vec![format!("{id}:pay:1"), format!("{id}:pay:1")]
    );
    // One that does not: ambiguous, then resolved with the result a person found.
    let effect = Effect::new(Effects::Unguarded, [1]);
    let h = with_effect(TOOL_STEP, &effect);
    let id = h.crash_on(&effect).await;
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Waiting);
    let evs = h.events(&st).await;
    assert!(evs.iter().any(|e| matches!(
        e,
        Event::StepAmbiguous { step, call: None, key, .. } if step == "pay" && *key == format!("{id}:pay:1")
    )));
    h.check_replay(&st).await;
    let resolve = Input::Resolve {
        step: "pay".into(),
        resolution: Resolution::Done,
        value: json!({"receipt": 7}),
        by: None,
    };
    let st = h.resume(id, vec![resolve]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["pay"], json!({"receipt": 7}));
    assert_eq!(effect.keys().len(), 1, "never sent twice");
    h.check_replay(&st).await;

    // Resolved as retry: a new attempt with the same key; interrupted too, ambiguous again.
    let effect = Effect::new(Effects::Unguarded, [1, 2]);
    let h = with_effect(TOOL_STEP, &effect);
    let id = h.crash_on(&effect).await;
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Waiting);
    let retry = |step: &str| Input::Resolve {
        step: step.into(),
        resolution: Resolution::Retry,
        value: Value::Null,
        by: None,
    };
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    h.crash_in(
        st,
        vec![Input::Start { resumed: true }, retry("pay")],
        &effect,
    )
    .await;
    assert_eq!(effect.keys(), vec![format!("{id}:pay:1"); 2]);
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Waiting, "ambiguous again");
    assert_eq!(st.steps["pay"].attempt, 2);
    assert_eq!(effect.keys().len(), 2, "not sent a third time by itself");
    let st = h.resume(id, vec![retry("pay")]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(effect.keys(), vec![format!("{id}:pay:1"); 3]);
    h.check_replay(&st).await;
}

#[tokio::test]
async fn a_retry_after_a_timeout_continues_from_the_journal_with_the_same_key() {
    let effect = Effect::new(Effects::IdempotentWithKey, [1]);
    let h = with_effect(
        r#"
version: 1
name: effects
agents:
  a: { model: scripted/a, tools: [effect] }
steps:
  - { id: ask, agent: a, prompt: "go", timeout: 300ms, retry: { max: 1, backoff: 10ms } }
"#,
        &effect,
    );
    let m = h.model("a", vec![calls(&[json!({"n": 1})]), Reply::text("done")]);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let key = format!("{}:ask:1/1", st.run_id);
    assert_eq!(effect.keys(), vec![key.clone(), key]);
    assert_eq!(m.requests().len(), 2, "turn 1 was not asked again");
    h.check_replay(&st).await;
}

#[tokio::test]
async fn long_prompts_are_recorded_cut_with_a_marker() {
    let effect = Effect::new(Effects::None, []);
    let h = with_effect(
        r#"
version: 1
name: big
inputs: { text: { type: string } }
agents:
  a: { model: scripted/a }
steps:
  - { id: ask, agent: a, prompt: "{{ inputs.text }}" }
"#,
        &effect,
    );
    let m = h.model("a", vec![Reply::text("ok")]);
    let big = "x".repeat(40_000);
    let st = h.run(json!({ "text": big })).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    // The model got all of it; the log keeps the cap.
    assert_eq!(m.requests()[0].last_user_text().len(), 40_000);
    let evs = h.events(&st).await;
    let (messages, cut) = evs
        .iter()
        .find_map(|e| match e {
            Event::StepProgress {
                progress:
                    Progress::Prompt {
                        messages,
                        cut_bytes,
                        ..
                    },
                ..
            } => Some((messages.clone(), *cut_bytes)),
            _ => None,
        })
        .unwrap();
    let text = messages[0]["content"].as_str().unwrap();
    assert!(text.len() < 17_000, "{}", text.len());
    assert_eq!(cut as usize, 40_000 - baton_engine::agent::PROMPT_TEXT_CAP);
    assert!(text.ends_with(&format!("[... {cut} more bytes cut from the record]")));
}

#[tokio::test]
async fn a_judge_interrupted_by_a_crash_replays_its_journal_on_resume() {
    let effect = Effect::new(Effects::IdempotentWithKey, [1]);
    let h = with_effect(
        r#"
version: 1
name: judged
agents:
  judge: { model: scripted/judge, tools: [effect] }
steps:
  - id: p
    parallel:
      - { id: a, tool: echo, with: { text: "A" } }
      - { id: b, tool: echo, with: { text: "B" } }
    join: { strategy: judge, judge: judge }
"#,
        &effect,
    );
    let m = h.model(
        "judge",
        vec![
            calls(&[json!({"note": "deciding"})]),
            Reply::text(r#"{"choice": "a", "reason": "A first"}"#),
        ],
    );
    let id = h.crash_on(&effect).await;
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    assert!(st.steps["p"].journal.is_some(), "the judge was asked");
    let st = h.resume(id, vec![]).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["p"], json!("A"));
    // Turn 1 came from the journal; the call was sent again with its key.
    assert_eq!(m.requests().len(), 2);
    assert_eq!(
        effect.keys(),
        vec![format!("{id}:p:1/1"), format!("{id}:p:1/1")]
    );
    let evs = h.events(&st).await;
    assert_eq!(
        count(&evs, "step_started"),
        3,
        "p, a and b started once each"
    );
    h.check_replay(&st).await;
}
