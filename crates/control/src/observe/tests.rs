#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_engine::Program;
use baton_engine::load;
use baton_store::memory::MemoryStore;
use baton_types::{Event, EventRecord, Progress, RunId, StepError, StepErrorKind, Usage};
use serde_json::{Value, json};

use super::trace::{Attr, SpanKind, span_id, spans};
use super::*;

pub(super) const DOC: &str = "version: 1\nname: obs\nagents:\n  bot: { model: scripted/bot, tools: [sandbox.exec] }\nsteps:\n  - { id: ask, agent: bot, prompt: hi }\n  - { id: box, sandbox: { command: \"true\" } }\n  - { id: say, tool: echo, with: { text: x } }\n";

fn program() -> Arc<Program> {
    let loaded = load::load_bytes("obs.yaml", DOC.as_bytes()).unwrap();
    Arc::new(Program::compile(loaded.doc, Default::default()).unwrap())
}

fn exec_record(stop: &str) -> Value {
    json!({"tier": "process", "stop_reason": stop, "exit_code": 0, "wall_time": 5})
}

/// The log of a run: an agent turn that calls `sandbox.exec`, then answers; a sandbox step
/// that fails once on its time limit and then succeeds; a tool step.
pub(super) fn log(run: RunId) -> Vec<EventRecord> {
    let usage = Usage {
        prompt_tokens: 12,
        completion_tokens: 5,
        cost_usd: 0.25,
    };
    let prompt = |turn| Progress::Prompt {
        turn,
        model: "scripted/bot".into(),
        context_hash: "h".into(),
        context: None,
        messages: vec![],
        cut_bytes: 0,
    };
    let reply = |turn, tool_calls| Progress::ModelReply {
        model: "scripted/bot".into(),
        turn,
        content: String::new(),
        tool_calls,
        usage,
    };
    let step = |step: &str, progress| Event::StepProgress {
        step: step.into(),
        progress,
    };
    let started = |s: &str, attempt| Event::StepStarted {
        step: s.into(),
        attempt,
        visit: 1,
        key: format!("{s}-k"),
    };
    let ok = |s: &str, duration_ms, output| Event::StepSucceeded {
        step: s.into(),
        output,
        next: None,
        duration_ms,
        usage: Usage::default(),
    };
    let events = vec![
        Event::RunCreated {
            workflow: "obs".into(),
            inputs: Value::Null,
            forked_from: None,
        },
        Event::RunStarted { resumed: false },
        started("ask", 1),
        step("ask", prompt(1)),
        step(
            "ask",
            reply(
                1,
                vec![json!({"id": "call_7", "name": "sandbox.exec", "arguments": {}})],
            ),
        ),
        Event::ToolCallStarted {
            step: "ask".into(),
            attempt: 1,
            call: 1,
            tool: "sandbox.exec".into(),
            arguments: json!({}),
            key: "ask-k/1".into(),
        },
        Event::ToolCallFinished {
            step: "ask".into(),
            attempt: 1,
            call: 1,
            tool: "sandbox.exec".into(),
            output: exec_record("exited"),
            is_error: false,
        },
        step("ask", prompt(2)),
        step("ask", reply(2, vec![])),
        ok("ask", 1500, json!("done")),
        started("box", 1),
        Event::StepFailed {
            step: "box".into(),
            attempt: 1,
            error: StepError::new(StepErrorKind::Execution, "too slow")
                .with_sandbox(exec_record("time_limit")),
            retry_in_ms: Some(10),
            recovered: false,
            next: None,
            duration_ms: 2000,
            usage: Usage::default(),
        },
        started("box", 2),
        ok("box", 30, exec_record("exited")),
        started("say", 1),
        ok("say", 1, json!({"text": "x"})),
        Event::RunSucceeded { outputs: json!({}) },
    ];
    events
        .into_iter()
        .enumerate()
        .map(|(i, event)| EventRecord {
            run_id: run,
            seq: i as u64 + 1,
            at_ms: 1_000 + 100 * i as i64,
            event,
        })
        .collect()
}

#[test]
fn metrics_fold_steps_models_and_sandbox_executions() {
    let t = Telemetry::new(Arc::new(MemoryStore::new()));
    let p = program();
    for ev in log(RunId::new()) {
        t.record(&p, &ev);
    }
    t.delivery("succeeded");
    t.inbound(false);
    let s = t.snapshot();
    assert_eq!(s.steps[&("agent".to_string(), "succeeded")].count, 1);
    assert_eq!(s.steps[&("agent".to_string(), "succeeded")].sum, 1.5);
    assert_eq!(s.steps[&("sandbox".to_string(), "failed")].count, 1);
    assert_eq!(s.steps[&("sandbox".to_string(), "succeeded")].count, 1);
    assert_eq!(s.steps[&("tool".to_string(), "succeeded")].count, 1);
    let bot = ModelKey::of("scripted/bot");
    assert_eq!(bot.provider, "scripted");
    // Two turns, each answered 100 ms after its prompt.
    assert_eq!(s.model_latency[&bot].count, 2);
    assert!((s.model_latency[&bot].sum - 0.2).abs() < 1e-9);
    assert_eq!(s.model_usage[&bot].prompt_tokens, 24);
    assert_eq!(s.model_usage[&bot].completion_tokens, 10);
    assert_eq!(s.model_usage[&bot].cost_usd, 0.5);
    let key = |stop: &str| ("process".to_string(), stop.to_string());
    // The agent's call and the step's second attempt exited; the first hit its time limit.
    assert_eq!(s.sandbox[&key("exited")], 2);
    assert_eq!(s.sandbox[&key("time_limit")], 1);
    assert_eq!(s.deliveries["succeeded"], 1);
    assert_eq!(s.inbound["refused"], 1);
}

#[test]
fn a_tool_output_that_is_not_an_execution_record_is_not_counted() {
    assert_eq!(sandbox_execution(&json!({"tier": "x"})), None);
    assert_eq!(sandbox_execution(&json!("process")), None);
    assert_eq!(
        sandbox_execution(&exec_record("pids_limit")),
        Some(("process".into(), "pids_limit".into()))
    );
}

#[test]
fn a_trace_has_the_run_its_step_attempts_and_gen_ai_calls() {
    let run = RunId::new();
    let p = program();
    let kind = |s: &str| p.node_by_id(s).map(|n| n.kind.as_str());
    let all = spans(run, "obs", &log(run), &kind);
    let root = &all[0];
    assert_eq!(root.name, "run obs");
    assert_eq!(root.parent, None);
    assert_eq!(root.trace_id, *run.0.as_bytes());
    assert_eq!(root.span_id, span_id(run, 0));
    assert_eq!((root.start_ms, root.end_ms), (1_000, 2_600));
    assert_eq!(
        root.attr("baton.run.status"),
        Some(&Attr::from("succeeded"))
    );
    assert!(all.iter().all(|s| s.trace_id == root.trace_id));
    let named = |n: &'static str| all.iter().filter(move |s| s.name == n);
    let ask = named("step ask").next().unwrap();
    assert_eq!(ask.parent, Some(root.span_id));
    assert_eq!(ask.attr("baton.step.kind"), Some(&Attr::from("agent")));
    assert_eq!((ask.start_ms, ask.end_ms), (1_200, 1_900));
    let chats: Vec<_> = named("chat bot").collect();
    assert_eq!(chats.len(), 2);
    for c in &chats {
        assert_eq!(c.parent, Some(ask.span_id));
        assert_eq!(c.kind, SpanKind::Client);
        assert_eq!(c.attr("gen_ai.operation.name"), Some(&Attr::from("chat")));
        assert_eq!(
            c.attr("gen_ai.provider.name"),
            Some(&Attr::from("scripted"))
        );
        assert_eq!(c.attr("gen_ai.request.model"), Some(&Attr::from("bot")));
        assert_eq!(c.attr("gen_ai.usage.input_tokens"), Some(&Attr::Int(12)));
        assert_eq!(c.attr("gen_ai.usage.output_tokens"), Some(&Attr::Int(5)));
        assert_eq!(c.end_ms - c.start_ms, 100);
    }
    let tool = named("execute_tool sandbox.exec").next().unwrap();
    assert_eq!(tool.parent, Some(ask.span_id));
    assert_eq!(
        tool.attr("gen_ai.tool.name"),
        Some(&Attr::from("sandbox.exec"))
    );
    assert_eq!(
        tool.attr("gen_ai.tool.call.id"),
        Some(&Attr::from("call_7"))
    );
    assert_eq!(tool.error, None);
    // Two attempts of the sandbox step: the first failed.
    let boxes: Vec<_> = named("step box").collect();
    assert_eq!(boxes.len(), 2);
    assert_eq!(boxes[0].error.as_deref(), Some("too slow"));
    assert_eq!(boxes[0].attr("baton.step.attempt"), Some(&Attr::Int(1)));
    assert_eq!(boxes[1].error, None);
    assert_eq!(all.len(), 1 + 4 + 2 + 1);
    // The same log gives the same ids (a trace exported twice is the same trace).
    assert_eq!(spans(run, "obs", &log(run), &kind), all);
}

#[test]
fn a_step_started_again_after_a_crash_ends_its_first_span_as_interrupted() {
    let run = RunId::new();
    let mut events = log(run);
    // The process died after the agent's first prompt; the next start ran the step again.
    let again = EventRecord {
        seq: 100,
        at_ms: 1_350,
        ..events[2].clone()
    };
    events.insert(4, again);
    let all = spans(run, "obs", &events, &|_| None);
    let asks: Vec<_> = all.iter().filter(|s| s.name == "step ask").collect();
    assert_eq!(asks.len(), 2);
    assert_eq!(asks[0].error.as_deref(), Some("interrupted"));
    // The unanswered prompt ended with its step.
    assert!(
        all.iter()
            .any(|s| s.name == "chat bot" && s.error.as_deref() == Some("the step interrupted"))
    );
}

#[test]
fn models_past_the_series_cap_are_counted_as_other() {
    let t = Telemetry::new(Arc::new(MemoryStore::new()));
    let p = program();
    let run = RunId::new();
    for i in 0..(MAX_SERIES as u32 + 5) {
        let ev = EventRecord {
            run_id: run,
            seq: u64::from(i) + 1,
            at_ms: 0,
            event: Event::StepProgress {
                step: "ask".into(),
                progress: Progress::ModelReply {
                    model: format!("openai/m{i}"),
                    turn: 1,
                    content: String::new(),
                    tool_calls: vec![],
                    usage: Usage {
                        prompt_tokens: 1,
                        ..Default::default()
                    },
                },
            },
        };
        t.record(&p, &ev);
    }
    let s = t.snapshot();
    assert_eq!(s.model_usage.len(), MAX_SERIES + 1);
    let other = ModelKey {
        provider: "openai".into(),
        model: OTHER.into(),
    };
    assert_eq!(s.model_usage[&other].prompt_tokens, 5);
}
