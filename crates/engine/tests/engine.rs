//! The state machine and executor, driven end to end in memory with the scripted provider.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::Arc;

use baton_engine::executor::{create_run, load_state};
use baton_engine::{Executor, Input, Program, RunOptions, RunState, Services};
use baton_llm::Providers;
use baton_llm::scripted::{Reply, ScriptedModel};

use baton_store::memory::MemoryStore;
use baton_tools::Registry;
use baton_types::{Event, RunStatus, StepErrorKind, WorkflowDoc};
use serde_json::{Value, json};

struct Harness {
    program: Arc<Program>,
    services: Services,
    providers: Providers,
}

fn harness(yaml: &str) -> Harness {
    harness_with(yaml, Registry::with_builtins())
}

fn harness_with(yaml: &str, tools: Registry) -> Harness {
    let v = baton_llm::scripted::yaml_to_json(yaml).unwrap();
    let doc: WorkflowDoc = serde_json::from_value(v).unwrap();
    let program = Arc::new(Program::compile(doc, std::env::temp_dir()).unwrap());
    let providers = Providers::default();
    let services = Services {
        store: Arc::new(MemoryStore::new()),
        models: Arc::new(providers.clone()),
        tools: Arc::new(tools),
    };
    Harness {
        program,
        services,
        providers,
    }
}

impl Harness {
    fn model(&self, name: &str, replies: Vec<Reply>) -> Arc<ScriptedModel> {
        let m = Arc::new(ScriptedModel::new(name, replies).unwrap());
        self.providers.scripted.insert(name, m.clone());
        m
    }

    async fn start(&self, inputs: Value, options: RunOptions) -> RunState {
        let given = inputs.as_object().cloned().unwrap_or_default();
        let inputs = baton_engine::inputs::resolve(&self.program.doc, given).unwrap();
        let id = create_run(
            &self.services,
            &self.program,
            "",
            None,
            inputs.clone(),
            &options,
        )
        .await
        .unwrap();
        let st = RunState::new(id, inputs, &self.program, &options);
        self.drive(st, vec![Input::Start { resumed: false }]).await
    }

    async fn run(&self, inputs: Value) -> RunState {
        self.start(inputs, RunOptions::default()).await
    }

    async fn drive(&self, st: RunState, inputs: Vec<Input>) -> RunState {
        Executor::new(self.program.clone(), self.services.clone())
            .drive(st, inputs)
            .await
            .unwrap()
    }

    async fn events(&self, st: &RunState) -> Vec<Event> {
        self.events_of(st.run_id).await
    }

    async fn events_of(&self, run: baton_types::RunId) -> Vec<Event> {
        self.services
            .store
            .events(run, 0)
            .await
            .unwrap()
            .into_iter()
            .map(|e| e.event)
            .collect()
    }

    /// The state rebuilt from the log must equal the live state.
    async fn check_replay(&self, st: &RunState) {
        let replayed = load_state(&self.services, &self.program, st.run_id)
            .await
            .unwrap();
        assert_eq!(&replayed, st, "replaying the log gave another state");
        // And from scratch, ignoring the checkpoint.
        let rec = self.services.store.run(st.run_id).await.unwrap().unwrap();
        let mut fresh = RunState::new(st.run_id, rec.inputs, &self.program, &RunOptions::default());
        let m = baton_engine::Machine::new(&self.program);
        for e in self.services.store.events(st.run_id, 0).await.unwrap() {
            m.apply(&mut fresh, &e.event);
            fresh.last_seq = e.seq;
        }
        fresh.breakpoints = st.breakpoints.clone();
        assert_eq!(fresh.outputs, st.outputs);
        assert_eq!(fresh.status, st.status);
    }
}

mod budget;
mod effects;
mod joins;
mod policy;
mod team;

fn started(evs: &[Event], step: &str) -> usize {
    evs.iter()
        .filter(|e| matches!(e, Event::StepStarted { step: s, .. } if s == step))
        .count()
}

#[tokio::test]
async fn sequence_of_tools_with_templates_and_state() {
    let h = harness(
        r#"
version: 1
name: seq
inputs: { who: { type: string } }
steps:
  - { id: a, tool: echo, with: { text: "hi {{ inputs.who }}" } }
  - { id: s, tool: state.set, with: { count: 3, greeting: "{{ steps.a.output }}" } }
  - { id: b, tool: echo, with: { items: "{{ [state.count, 2] }}", g: "{{ state.greeting }}!" } }
outputs:
  final: "{{ steps.b.output.g }}"
  items: "{{ steps.b.output['items'] }}"
"#,
    );
    let st = h.run(json!({"who": "ann"})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["a"], json!("hi ann"));
    assert_eq!(st.state["count"], json!(3));
    assert_eq!(
        st.result,
        Some(json!({"final": "hi ann!", "items": [3, 2]}))
    );
    h.check_replay(&st).await;
}

#[tokio::test]
async fn agent_with_tool_calls_and_schema_reask() {
    let h = harness(
        r#"
version: 1
name: agent
agents:
  a:
    model: scripted/a
    tools: [echo]
    output: { schema: { type: object, required: [n], properties: { n: { type: integer } } }, max_retries: 2 }
steps:
  - { id: ask, agent: a, prompt: "count" }
"#,
    );
    let m = h.model(
        "a",
        vec![
            Reply::tool_call("echo", json!({"text": "tool says 7"})),
            Reply::text("not json"),
            Reply::text(r#"{"n": "seven"}"#),
            Reply::text(r#"{"n": 7}"#),
        ],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["ask"], json!({"n": 7}));
    let reqs = m.requests();
    assert_eq!(reqs.len(), 4);
    // The tool result went back to the model, and so did each validation error.
    assert!(reqs[1].messages.iter().any(|m| m.content == "tool says 7"));
    assert!(
        reqs[3].last_user_text().contains("not valid"),
        "{}",
        reqs[3].last_user_text()
    );
    assert!(st.usage.total() > 0);
    let evs = h.events(&st).await;
    assert!(evs.iter().any(|e| matches!(
        e,
        Event::StepProgress {
            progress: baton_types::Progress::OutputRejected { .. },
            ..
        }
    )));
    h.check_replay(&st).await;
}

#[tokio::test]
async fn invalid_output_after_every_reask_fails_the_step() {
    let h = harness(
        r#"
version: 1
name: bad
agents:
  a: { model: scripted/a, output: { schema: { type: object }, max_retries: 1 } }
steps:
  - { id: ask, agent: a, prompt: "x" }
"#,
    );
    h.model("a", vec![Reply::text("nope").repeating()]);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    let err = st.error.unwrap();
    assert!(
        err.contains("did not match the output schema after 2 attempts"),
        "{err}"
    );
}

#[tokio::test]
async fn never_ending_tool_calls_stop_at_max_tool_turns() {
    let h = harness(
        r#"
version: 1
name: loop
# The same call every turn would be a runaway first: off, to reach max_tool_turns.
runaway: { repeated_tool_calls: 0 }
agents:
  a: { model: scripted/a, tools: [echo], max_tool_turns: 3 }
steps:
  - { id: ask, agent: a, prompt: "x" }
"#,
    );
    h.model(
        "a",
        vec![Reply::tool_call("echo", json!({"text": "again"})).repeating()],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert!(st.error.unwrap().contains("max_tool_turns (3)"));
}

#[tokio::test]
async fn condition_and_switch_route() {
    let yaml = r#"
version: 1
name: route
inputs: { n: { type: integer } }
steps:
  - id: sw
    switch:
      cases:
        - { when: "inputs.n > 10", goto: big }
        - { when: "inputs.n > 5", goto: mid }
      default: small
  - { id: big, tool: echo, with: { text: big }, next: check }
  - { id: mid, tool: echo, with: { text: mid }, next: check }
  - { id: small, tool: echo, with: { text: small } }
  - id: check
    if: "inputs.n % 2 == 0"
    then: even
    else: end
  - { id: even, tool: echo, with: { text: even } }
"#;
    for (n, want, even) in [(12, "big", true), (7, "mid", false), (1, "small", false)] {
        let h = harness(yaml);
        let st = h.run(json!({"n": n})).await;
        assert_eq!(st.status, RunStatus::Succeeded);
        assert!(
            st.outputs.contains_key(want),
            "{n}: {:?}",
            st.outputs.keys()
        );
        assert_eq!(st.outputs.contains_key("even"), even, "{n}");
        for other in ["big", "mid", "small"].iter().filter(|o| **o != want) {
            assert!(!st.outputs.contains_key(*other), "{n} ran {other}");
        }
    }
}

#[tokio::test]
async fn parallel_join_strategies() {
    let base = |strategy: &str, b_fails: bool| {
        format!(
            r#"
version: 1
name: par
steps:
  - id: p
    parallel:
      - {{ id: a, tool: sleep, with: {{ duration: 200ms }} }}
      - {{ id: b, tool: {}, with: {{ duration: 20ms, message: boom, retryable: false }} }}
      - {{ id: c, tool: sleep, with: {{ duration: 60ms }} }}
    join: {{ strategy: {strategy} }}
"#,
            if b_fails { "fail" } else { "sleep" }
        )
    };
    // all: every branch's output, by branch id.
    let h = harness(&base("all", false));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded);
    let out = st.outputs["p"].as_object().unwrap();
    assert_eq!(out.keys().cloned().collect::<Vec<_>>(), vec!["a", "b", "c"]);
    h.check_replay(&st).await;

    // all fails fast when one branch fails, cancelling the rest.
    let h = harness(&base("all", true));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert!(
        st.error.as_ref().unwrap().contains("branch 'b' failed"),
        "{:?}",
        st.error
    );
    let evs = h.events(&st).await;
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::StepCancelled { step } if step == "a"))
    );

    // any: the first branch to end decides, whatever its outcome.
    let h = harness(&base("any", true));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);

    // first_success: the first success wins (c at 60ms), the failure of b is ignored.
    let h = harness(&base("first_success", true));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["p"]["branch"], json!("c"));
    h.check_replay(&st).await;
}

#[tokio::test]
async fn parallel_branches_really_overlap_and_max_concurrency_limits_them() {
    let yaml = |mc: u32| {
        format!(
            r#"
version: 1
name: par
steps:
  - id: p
    max_concurrency: {mc}
    parallel:
      - {{ id: a, tool: sleep, with: {{ duration: 100ms }} }}
      - {{ id: b, tool: sleep, with: {{ duration: 100ms }} }}
      - {{ id: c, tool: sleep, with: {{ duration: 100ms }} }}
      - {{ id: d, tool: sleep, with: {{ duration: 100ms }} }}
"#
        )
    };
    // Count the most branches running at once from the log.
    async fn peak(h: &Harness, st: &RunState) -> usize {
        let (mut cur, mut max) = (0usize, 0usize);
        for e in h.events(st).await {
            match e {
                Event::StepStarted { step, .. } if step != "p" => cur += 1,
                Event::StepSucceeded { step, .. } if step != "p" => cur -= 1,
                _ => {}
            }
            max = max.max(cur);
        }
        max
    }
    let h = harness(&yaml(4));
    let st = h.run(json!({})).await;
    assert_eq!(peak(&h, &st).await, 4);
    let h = harness(&yaml(2));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(peak(&h, &st).await, 2);
}

#[tokio::test]
async fn map_collects_in_order() {
    let h = harness(
        r#"
version: 1
name: map
inputs: { files: { type: array, default: [x.py, y.py, z.py] } }
steps:
  - id: each
    map: { over: "inputs.files", as: file }
    max_concurrency: 2
    steps:
      - { id: lint, tool: echo, with: { text: "lint {{ file }} #{{ loop.index }}" } }
      - { id: fix, tool: echo, with: { text: "fixed ({{ steps.lint.output }})" } }
  - { id: after, tool: echo, with: { text: "{{ steps.each.output | join(', ') }}" } }
"#,
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(
        st.outputs["each"],
        json!([
            "fixed (lint x.py #0)",
            "fixed (lint y.py #1)",
            "fixed (lint z.py #2)"
        ])
    );
    assert_eq!(st.outputs["lint[1]"], json!("lint y.py #1"));
    h.check_replay(&st).await;
}

#[tokio::test]
async fn loops_stop_at_max_visits() {
    let h = harness(
        r#"
version: 1
name: loop
steps:
  - { id: work, tool: echo, with: { text: "again" }, max_visits: 3 }
  - { id: gate, if: "false", then: end, else: work }
"#,
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert!(
        st.error.as_ref().unwrap().starts_with("step 'work' failed"),
        "{:?}",
        st.error
    );
    assert!(
        st.error.as_ref().unwrap().contains("max_visits of 3"),
        "{:?}",
        st.error
    );
    assert_eq!(started(&h.events(&st).await, "work"), 3);
}

#[tokio::test]
async fn retries_then_on_error_continue_and_goto() {
    let h = harness(
        r#"
version: 1
name: retry
steps:
  - { id: flaky, tool: fail, with: { message: down }, retry: { max: 2, backoff: 10ms }, on_error: continue }
  - { id: after, tool: echo, with: { text: "error was: {{ steps.flaky.error }}" } }
  - { id: bad, tool: fail, with: { message: nope, retryable: false }, on_error: goto recover, retry: { max: 5 } }
  - { id: skipped, tool: echo, with: { text: never } }
  - { id: recover, tool: echo, with: { text: recovered } }
"#,
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    let evs = h.events(&st).await;
    assert_eq!(started(&evs, "flaky"), 3, "1 attempt + 2 retries");
    assert_eq!(
        started(&evs, "bad"),
        1,
        "a non-retryable error is not retried"
    );
    assert_eq!(st.outputs["after"], json!("error was: down"));
    assert!(!st.outputs.contains_key("skipped"));
    assert_eq!(st.outputs["recover"], json!("recovered"));
    // The key names the effect: every attempt of the visit sends the same one.
    let keys: Vec<String> = evs
        .iter()
        .filter_map(|e| match e {
            Event::StepStarted { step, key, .. } if step == "flaky" => Some(key.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 3);
    assert!(
        keys.iter().all(|k| *k == format!("{}:flaky:1", st.run_id)),
        "{keys:?}"
    );
    h.check_replay(&st).await;
}

#[tokio::test]
async fn timeouts_fail_the_attempt() {
    let h = harness(
        r#"
version: 1
name: slow
steps:
  - { id: slow, tool: sleep, with: { duration: 5s }, timeout: 50ms }
"#,
    );
    let t = std::time::Instant::now();
    let st = h.run(json!({})).await;
    assert!(t.elapsed() < std::time::Duration::from_secs(3));
    assert_eq!(st.status, RunStatus::Failed);
    let evs = h.events(&st).await;
    assert!(evs.iter().any(
        |e| matches!(e, Event::StepFailed { error, .. } if error.kind == StepErrorKind::Timeout)
    ));
}

#[tokio::test]
async fn template_errors_at_run_time_fail_the_step_cleanly() {
    let h = harness(
        r#"
version: 1
name: tpl
steps:
  - { id: a, tool: echo, with: { text: "{{ state.missing.deeper }}" } }
"#,
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert!(
        st.error.as_ref().unwrap().contains("undefined"),
        "{:?}",
        st.error
    );
}

#[tokio::test]
async fn breakpoints_pause_and_resume_steps_through() {
    let h = harness(
        r#"
version: 1
name: bp
steps:
  - { id: a, tool: echo, with: { text: a } }
  - { id: b, tool: echo, with: { text: b } }
  - { id: c, tool: echo, with: { text: c } }
"#,
    );
    let opts = RunOptions {
        breakpoints: ["b".to_string()].into(),
        ..RunOptions::default()
    };
    let st = h.start(json!({}), opts).await;
    assert_eq!(st.status, RunStatus::Paused);
    assert!(st.outputs.contains_key("a") && !st.outputs.contains_key("b"));
    // Resume in stepping mode: runs b, stops before c.
    let st = h.drive(st, vec![Input::Resume { stepping: true }]).await;
    assert_eq!(st.status, RunStatus::Paused);
    assert!(st.outputs.contains_key("b") && !st.outputs.contains_key("c"));
    h.check_replay(&st).await;
    // A fresh process picks it up from the log.
    let st = load_state(&h.services, &h.program, st.run_id)
        .await
        .unwrap();
    let st = h
        .drive(
            st,
            vec![
                Input::Start { resumed: true },
                Input::Resume { stepping: false },
            ],
        )
        .await;
    assert_eq!(st.status, RunStatus::Succeeded);
}

/// A breakpoint added while a process drives the run (a control request, as the API sends
/// it) stops the run before that step, and the log keeps it: a fresh process rebuilds the
/// same breakpoints from the `breakpoints_set` event, and a removal lets the run finish.
#[tokio::test]
async fn breakpoints_set_on_a_running_machine_are_honoured_and_replayed() {
    let h = harness(
        r#"
version: 1
name: live
steps:
  # Long enough for the executor's control poll (200 ms) on a busy machine.
  - { id: a, tool: sleep, with: { duration: 1s } }
  - { id: b, tool: echo, with: { text: b } }
  - { id: c, tool: echo, with: { text: "c after {{ steps.b.output }}" } }
"#,
    );
    let opts = RunOptions::default();
    let id = create_run(&h.services, &h.program, "", None, json!({}), &opts)
        .await
        .unwrap();
    let st = RunState::new(id, json!({}), &h.program, &opts);
    let exec = Executor::new(h.program.clone(), h.services.clone());
    let drive =
        tokio::spawn(async move { exec.drive(st, vec![Input::Start { resumed: false }]).await });
    // While `a` runs, without a breakpoint so far.
    while started(&h.events_of(id).await, "a") != 1 {
        tokio::task::yield_now().await;
    }
    let change = baton_types::BreakpointChange {
        add: vec!["c".into()],
        ..Default::default()
    };
    h.services
        .store
        .send_control(
            id,
            baton_store::Control::Breakpoints {
                change,
                by: Some("k1".into()),
            },
        )
        .await
        .unwrap();
    let st = drive.await.unwrap().unwrap();
    assert_eq!(st.status, RunStatus::Paused);
    assert!(st.outputs.contains_key("b") && !st.outputs.contains_key("c"));
    assert_eq!(
        st.pause,
        Some(baton_types::PauseReason::Breakpoint { step: "c".into() })
    );
    let evs = h.events(&st).await;
    assert!(
        evs.iter().any(|e| matches!(
            e,
            Event::BreakpointsSet { breakpoints, by }
                if breakpoints.iter().eq(["c"]) && by.as_deref() == Some("k1")
        )),
        "{evs:?}"
    );
    h.check_replay(&st).await;
    // From the log alone (no options): the breakpoint is there.
    let replayed = load_state(&h.services, &h.program, id).await.unwrap();
    assert_eq!(replayed.breakpoints, ["c".to_string()].into());
    let mut fresh = RunState::new(id, json!({}), &h.program, &RunOptions::default());
    let m = baton_engine::Machine::new(&h.program);
    for e in h.services.store.events(id, 0).await.unwrap() {
        m.apply(&mut fresh, &e.event);
    }
    assert_eq!(fresh.breakpoints, ["c".to_string()].into());
    // Removed on the stopped run (no process holds it): logged, and the run finishes.
    let change = baton_types::BreakpointChange {
        remove: vec!["c".into()],
        ..Default::default()
    };
    let exec = Executor::new(h.program.clone(), h.services.clone());
    let st = exec
        .change_breakpoints(replayed, change, None)
        .await
        .unwrap();
    assert!(st.breakpoints.is_empty());
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    assert!(st.breakpoints.is_empty(), "the removal is in the log");
    let st = h
        .drive(
            st,
            vec![
                Input::Start { resumed: true },
                Input::Resume { stepping: false },
            ],
        )
        .await;
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.outputs["c"], json!("c after b"));
}

#[tokio::test]
async fn pause_and_cancel_through_controls() {
    let h = harness(
        r#"
version: 1
name: pc
steps:
  - { id: a, tool: sleep, with: { duration: 300ms } }
  - { id: b, tool: sleep, with: { duration: 300ms } }
"#,
    );
    let id = create_run(
        &h.services,
        &h.program,
        "",
        None,
        json!({}),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let st = RunState::new(id, json!({}), &h.program, &RunOptions::default());
    h.services
        .store
        .send_control(id, baton_store::Control::Pause)
        .await
        .unwrap();
    let st = h.drive(st, vec![Input::Start { resumed: false }]).await;
    // The step already running finishes; nothing new starts.
    assert_eq!(st.status, RunStatus::Paused);
    assert!(st.outputs.contains_key("a") && !st.outputs.contains_key("b"));
    let st = h
        .drive(st, vec![Input::Resume { stepping: false }, Input::Cancel])
        .await;
    assert_eq!(st.status, RunStatus::Cancelled);
    let evs = h.events(&st).await;
    assert!(matches!(evs.last(), Some(Event::RunCancelled)));
}

/// A process that stops drains its runs: the step in flight finishes and is logged, nothing
/// new is launched, the run stays `running` and a later drive finishes it from the log.
#[tokio::test]
async fn a_draining_executor_finishes_the_work_in_flight_and_starts_nothing() {
    let h = harness(
        r#"
version: 1
name: drain
steps:
  - { id: a, tool: sleep, with: { duration: 300ms } }
  - { id: b, tool: echo, with: { text: "after {{ steps.a.output }}" } }
"#,
    );
    let opts = RunOptions::default();
    let id = create_run(&h.services, &h.program, "", None, json!({}), &opts)
        .await
        .unwrap();
    let st = RunState::new(id, json!({}), &h.program, &opts);
    let (tx, rx) = tokio::sync::watch::channel(false);
    let exec = Executor::new(h.program.clone(), h.services.clone()).with_drain(rx);
    let drive =
        tokio::spawn(async move { exec.drive(st, vec![Input::Start { resumed: false }]).await });
    // Asked to stop while `a` sleeps.
    while !started(&h.events_of(id).await, "a").eq(&1) {
        tokio::task::yield_now().await;
    }
    tx.send_replace(true);
    let st = drive.await.unwrap().unwrap();
    assert_eq!(st.status, RunStatus::Running, "left to be resumed");
    assert!(st.outputs.contains_key("a"), "the step in flight finished");
    let evs = h.events(&st).await;
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Event::StepSucceeded { step, .. } if step == "b"))
    );
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    let st = h.drive(st, vec![Input::Start { resumed: true }]).await;
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.outputs["b"], json!(r#"after {"slept": "300ms"}"#));
    h.check_replay(&st).await;
}

#[tokio::test]
async fn human_approval_and_rejection() {
    let yaml = r#"
version: 1
name: hu
steps:
  - id: ok
    human: { prompt: "Ship {{ run.workflow }}?" }
  - { id: done, tool: echo, with: { text: "shipped: {{ steps.ok.output.approved }}" } }
"#;
    let h = harness(yaml);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Waiting);
    assert_eq!(st.waiting_humans(), vec!["ok".to_string()]);
    let evs = h.events(&st).await;
    assert!(
        evs.iter()
            .any(|e| matches!(e, Event::HumanRequested { prompt, .. } if prompt == "Ship hu?"))
    );
    let answer = |approved| Input::Human {
        step: "ok".into(),
        approved,
        value: Value::Null,
        comment: Some("fine".into()),
        by: None,
    };
    let st2 = h.drive(st.clone(), vec![answer(true)]).await;
    assert_eq!(st2.status, RunStatus::Succeeded);
    // Jinja prints booleans the Python way.
    assert_eq!(st2.outputs["done"], json!("shipped: True"));

    let h = harness(yaml);
    let st = h.run(json!({})).await;
    let st = h.drive(st, vec![answer(false)]).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert!(st.error.unwrap().contains("rejected: fine"));
}

#[tokio::test]
async fn model_errors_are_classified_and_retried_when_it_helps() {
    let h = harness(
        r#"
version: 1
name: me
agents: { a: { model: scripted/a } }
steps:
  - { id: ask, agent: a, prompt: x, retry: { max: 2, backoff: 1ms } }
"#,
    );
    h.model(
        "a",
        vec![Reply::error("rate_limit", "slow down"), Reply::text("ok")],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded);
    assert_eq!(st.outputs["ask"], json!("ok"));

    let h = harness(
        r#"
version: 1
name: me
agents: { a: { model: scripted/a } }
steps:
  - { id: ask, agent: a, prompt: x, retry: { max: 2, backoff: 1ms } }
"#,
    );
    h.model("a", vec![Reply::error("auth", "bad key").repeating()]);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    assert_eq!(
        started(&h.events(&st).await, "ask"),
        1,
        "auth errors are not retried"
    );
}

#[tokio::test]
async fn an_interrupted_step_runs_again_with_the_same_key() {
    let h = harness(
        r#"
version: 1
name: crash
steps:
  - { id: a, tool: echo, with: { text: a } }
  - { id: b, tool: sleep, with: { duration: 10s } }
"#,
    );
    let id = create_run(
        &h.services,
        &h.program,
        "",
        None,
        json!({}),
        &RunOptions::default(),
    )
    .await
    .unwrap();
    let st = RunState::new(id, json!({}), &h.program, &RunOptions::default());
    // Drive until b has started, then drop the executor (as a crash would).
    let exec = Executor::new(h.program.clone(), h.services.clone());
    let _ = tokio::time::timeout(
        std::time::Duration::from_millis(200),
        exec.drive(st, vec![Input::Start { resumed: false }]),
    )
    .await;
    h.services
        .store
        .release(id, &baton_store::sqlite::process_owner())
        .await
        .unwrap();
    let st = load_state(&h.services, &h.program, id).await.unwrap();
    assert!(st.outputs.contains_key("a"));
    let running = st.running_work();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].0, "b");
    assert_eq!(running[0].1.key, format!("{id}:b:1"));
}

/// A sandbox that exits with the code its request's `EXIT` variable names (0 without one) and
/// counts its runs; `microvm` is unavailable. The real tiers run in baton-sandbox's and the
/// CLI's tests.
mod fake_sandbox {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use async_trait::async_trait;
    use baton_tools::sandbox::{ExecOutput, ExecRequest, Policy, Sandbox, StopReason, Tier};

    pub struct Fake {
        policy: Policy,
        runs: Arc<AtomicUsize>,
        seen: Arc<Mutex<Vec<ExecRequest>>>,
    }

    #[async_trait]
    impl Sandbox for Fake {
        fn tier(&self) -> Tier {
            self.policy.tier
        }
        fn policy(&self) -> &Policy {
            &self.policy
        }
        async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, baton_tools::sandbox::Error> {
            self.runs.fetch_add(1, Ordering::SeqCst);
            let code = req.env.get("EXIT").map(|e| e.parse().unwrap()).unwrap_or(0);
            let stdout = req.files.values().cloned().collect::<Vec<_>>().join("|");
            self.seen.lock().unwrap().push(req);
            Ok(ExecOutput {
                tier: self.policy.tier,
                exit_code: Some(code),
                signal: None,
                stop_reason: StopReason::Exited,
                limits_hit: vec![],
                stdout,
                stdout_truncated: false,
                stderr: if code == 0 {
                    String::new()
                } else {
                    "it broke".into()
                },
                stderr_truncated: false,
                wall_time: Duration::from_millis(2),
                cpu_time: Some(Duration::from_millis(1)),
                peak_memory_bytes: Some(4096),
                network: vec![],
                enforced: vec![],
            })
        }
    }

    pub fn registry() -> (
        baton_tools::Registry,
        Arc<AtomicUsize>,
        Arc<Mutex<Vec<ExecRequest>>>,
    ) {
        let runs = Arc::new(AtomicUsize::new(0));
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (r2, s2) = (runs.clone(), seen.clone());
        let open = move |policy: Policy| -> Result<Arc<dyn Sandbox>, baton_tools::sandbox::Error> {
            if policy.tier == Tier::Microvm {
                return Err(baton_tools::sandbox::Error::TierUnavailable {
                    tier: Tier::Microvm,
                    reason: "no KVM in this test".into(),
                });
            }
            Ok(Arc::new(Fake {
                policy,
                runs: r2.clone(),
                seen: s2.clone(),
            }))
        };
        let mut tools = baton_tools::Registry::with_builtins();
        tools.register(Arc::new(
            baton_tools::sandbox_step::SandboxStep::with_opener(Arc::new(open)),
        ));
        (tools, runs, seen)
    }
}

#[tokio::test]
async fn sandbox_steps_run_retry_recover_and_refuse_unavailable_tiers() {
    let (tools, runs, seen) = fake_sandbox::registry();
    let h = harness_with(
        r#"
version: 1
name: sandboxed
inputs: { n: { type: integer, default: 7 } }
steps:
  - id: gen
    tool: echo
    with: { code: "print({{ inputs.n }})" }
  - id: flaky
    sandbox: { command: "exit 3", env: { EXIT: "3" }, memory: 64M }
    retry: { max: 1, backoff: 10ms }
    on_error: continue
  - id: after
    tool: echo
    with: { text: "{{ steps.flaky.error }}" }
  - id: inspect
    sandbox: { command: ["sh", "-c", "exit 5"], env: { EXIT: "5" }, allow_failure: true }
  - id: ok
    sandbox:
      command: ["python3", "main.py", "{{ inputs.n }}"]
      files: { main.py: "{{ steps.gen.output.code }}", data.json: "{{ {'n': inputs.n} }}" }
      tier: gvisor
      time: "{{ inputs.n }}s"
  - id: micro
    sandbox: { command: "true", tier: microvm }
    retry: { max: 2, backoff: 10ms }
"#,
        tools,
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    let evs = h.events(&st).await;
    // A non-zero exit fails the attempt, is retried, then `on_error: continue` goes on.
    assert_eq!(started(&evs, "flaky"), 2);
    let err = st.errors.get("flaky").unwrap();
    assert!(
        err.starts_with(
            "the sandboxed command exited with code 3 (tier process, 2 ms); stderr: it broke"
        ),
        "{err}"
    );
    // The failure carries the execution record as a typed field of its error.
    let record = evs
        .iter()
        .rev()
        .find_map(|e| match e {
            Event::StepFailed { step, error, .. } if step == "flaky" => error.sandbox.clone(),
            _ => None,
        })
        .unwrap();
    assert_eq!(record["exit_code"], 3);
    assert_eq!(record["policy"]["limits"]["memory_bytes"], 64 << 20);
    assert_eq!(st.outputs["after"], json!(err));
    // allow_failure: the step succeeds and its output says what happened.
    assert_eq!(st.outputs["inspect"]["exit_code"], 5);
    // Templated arguments and limits; the tier the step asked for.
    let ok = &st.outputs["ok"];
    assert_eq!(ok["tier"], "gvisor");
    assert_eq!(ok["policy"]["limits"]["time"], "7s");
    assert_eq!(ok["stdout"], json!("{\n  \"n\": 7\n}|print(7)"));
    assert!(ok["scan"]["findings"].as_array().unwrap().is_empty());
    assert_eq!(seen.lock().unwrap()[3].argv, ["python3", "main.py", "7"]);
    // An unavailable tier fails the step at once (no retry) with the tier's reason.
    assert_eq!(started(&evs, "micro"), 1);
    let e = st.error.clone().unwrap();
    assert!(
        e.contains("sandbox tier 'microvm' is not available here: no KVM in this test"),
        "{e}"
    );
    assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 4);
    h.check_replay(&st).await;
}
