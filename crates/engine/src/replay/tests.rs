#![allow(clippy::unwrap_used)]

use super::*;
use baton_types::{RunId, Usage};
use serde_json::json;

/// A tool result holding a measured time (a sandbox's `wall_time`) is logged as JSON and
/// read back for the replay: the number must come back bit for bit, or the prompt that
/// embeds it differs (serde_json's `float_roundtrip`).
#[test]
fn measured_floats_read_back_exactly() {
    for x in [
        403.85519600000003_f64,
        0.1 + 0.2,
        1.0 / 3.0,
        162.006177,
        1e-7 * 3.0,
    ] {
        let text = serde_json::to_string(&json!({ "wall_time": x })).unwrap();
        let back: Value = serde_json::from_str(&text).unwrap();
        assert_eq!(
            back["wall_time"].as_f64().unwrap().to_bits(),
            x.to_bits(),
            "{text}"
        );
        assert_eq!(serde_json::to_string(&back).unwrap(), text);
    }
}

fn log(events: Vec<Event>) -> Vec<EventRecord> {
    let run = RunId::new();
    events
        .into_iter()
        .zip(1..)
        .map(|(event, seq)| EventRecord {
            run_id: run,
            seq,
            at_ms: 1000 + seq as i64,
            event,
        })
        .collect()
}

fn started(step: &str, attempt: u32) -> Event {
    Event::StepStarted {
        step: step.into(),
        attempt,
        visit: 1,
        key: format!("k:{step}"),
    }
}

fn reply(step: &str, text: &str) -> Event {
    Event::StepProgress {
        step: step.into(),
        progress: Progress::ModelReply {
            model: "scripted/x".into(),
            turn: 1,
            content: text.into(),
            tool_calls: Vec::new(),
            usage: Usage::default(),
        },
    }
}

fn succeeded(step: &str, out: &str, ms: u64) -> Event {
    Event::StepSucceeded {
        step: step.into(),
        output: json!(out),
        next: None,
        duration_ms: ms,
        usage: Usage::default(),
    }
}

#[test]
fn branches_may_interleave_but_each_branch_is_compared_in_order() {
    let recorded = log(vec![
        started("a", 1),
        started("b", 1),
        succeeded("a", "A", 5),
        succeeded("b", "B", 7),
    ]);
    // The replay logs b's end first, with other durations: still the same run.
    let replayed = log(vec![
        started("a", 1),
        started("b", 1),
        succeeded("b", "B", 1),
        succeeded("a", "A", 1),
    ]);
    let mut check = Check::new(&recorded, None);
    assert!(replayed.iter().all(|r| check.observe(r)));
    assert_eq!(check.matched(), 4);
    assert!(check.finish().is_none());
}

#[test]
fn the_first_difference_names_the_event_the_step_and_the_field() {
    let recorded = log(vec![started("a", 1), succeeded("a", "A", 5)]);
    let replayed = log(vec![started("a", 1), succeeded("a", "Z", 5)]);
    let mut check = Check::new(&recorded, None);
    assert!(check.observe(&replayed[0]));
    assert!(!check.observe(&replayed[1]));
    let d = check.divergence().unwrap();
    assert_eq!(d.seq, Some(2));
    assert_eq!(d.step.as_deref(), Some("a"));
    assert_eq!(d.message, "step_succeeded differs at /output");
    assert_eq!(d.expected.as_ref().unwrap()["output"], "A");
    assert_eq!(d.got.as_ref().unwrap()["output"], "Z");
}

#[test]
fn a_replay_that_stops_early_or_does_more_diverges() {
    let recorded = log(vec![started("a", 1), succeeded("a", "A", 5)]);
    let mut check = Check::new(&recorded, None);
    assert!(check.observe(&recorded[0]));
    let d = check.finish().unwrap();
    assert_eq!(d.seq, Some(2));
    assert!(
        d.message.starts_with("the replay ended before"),
        "{}",
        d.message
    );

    let mut check = Check::new(&recorded[..1], None);
    assert!(check.observe(&recorded[0]));
    assert!(!check.observe(&recorded[1]));
    let d = check.divergence().unwrap();
    assert_eq!(d.seq, None);
    assert!(d.message.contains("does not have"), "{}", d.message);
}

#[test]
fn another_run_id_in_keys_reads_as_the_recorded_one() {
    let mut recorded = log(vec![started("a", 1)]);
    let old = recorded[0].run_id.to_string();
    let new = RunId::new().to_string();
    let keyed = |id: &str| Event::StepStarted {
        step: "a".into(),
        attempt: 1,
        visit: 1,
        key: format!("{id}:a:1"),
    };
    recorded[0].event = keyed(&old);
    let mut replayed = recorded[0].clone();
    replayed.event = keyed(&new);
    assert!(Check::new(&recorded, Some(&new)).observe(&replayed));
    assert!(!Check::new(&recorded, None).observe(&replayed));
}

#[tokio::test]
async fn recorded_results_are_served_by_attempt_turn_and_key() {
    let recorded = log(vec![
        started("a", 1),
        reply("a", "first"),
        Event::ToolCallStarted {
            step: "a".into(),
            attempt: 1,
            call: 1,
            tool: "echo".into(),
            arguments: json!({"text": "x"}),
            key: "k:a/1".into(),
        },
        Event::ToolCallFinished {
            step: "a".into(),
            attempt: 1,
            call: 1,
            tool: "echo".into(),
            output: json!("error: boom"),
            is_error: true,
        },
        reply("a", "second"),
        succeeded("a", "second", 3),
        started("t", 1),
        Event::StepFailed {
            step: "t".into(),
            attempt: 1,
            error: StepError::new(StepErrorKind::Execution, "exit 3"),
            retry_in_ms: Some(10),
            recovered: false,
            next: None,
            duration_ms: 1,
            usage: Usage::default(),
        },
        started("t", 2),
        succeeded("t", "ok", 1),
    ]);
    let rec = Arc::new(Recording::new(&recorded, false).unwrap());
    let model = rec.model("a", 1, 1);
    let req = ChatRequest::default();
    assert_eq!(model.complete(req.clone()).await.unwrap().content, "first");
    assert_eq!(model.complete(req.clone()).await.unwrap().content, "second");
    let e = model.complete(req).await.unwrap_err().to_string();
    assert!(e.contains("no model reply for turn 3 of step 'a'"), "{e}");

    let mut real = Registry::empty();
    baton_tools::builtin::register(&mut real);
    let tools = rec.registry(&real);
    let ctx = ToolContext {
        idempotency_key: "k:a/1".into(),
        step: "a".into(),
        ..Default::default()
    };
    let echo = tools.get("echo").unwrap();
    assert_eq!(echo.spec(), real.get("echo").unwrap().spec());
    let e = echo.call(json!({}), &ctx).await.unwrap_err();
    assert_eq!(format!("error: {e}"), "error: boom");
    let e = echo.call(json!({}), &ctx).await.unwrap_err().to_string();
    assert!(e.contains("holds no result for tool call k:a/1"), "{e}");

    let cancel = CancellationToken::new();
    let first = rec.tool_step("t", 1, 1, cancel.clone()).await.unwrap_err();
    assert_eq!(first.message, "exit 3");
    assert_eq!(
        rec.tool_step("t", 1, 2, cancel.clone()).await.unwrap(),
        "ok"
    );
    cancel.cancel();
    let none = rec.tool_step("t", 1, 3, cancel).await.unwrap_err();
    assert!(none.message.contains("no result for attempt 3"), "{none}");
    assert_eq!(rec.served(), 5);
}

/// A step a loop comes back to starts at attempt 1 again: each visit is served its own
/// replies and result, not the first visit's.
#[tokio::test]
async fn each_visit_of_a_looped_step_is_served_its_own_recording() {
    let visit = |step: &str, visit: u32| Event::StepStarted {
        step: step.into(),
        attempt: 1,
        visit,
        key: format!("k:{step}:{visit}"),
    };
    let recorded = log(vec![
        visit("a", 1),
        reply("a", "first visit"),
        succeeded("a", "first visit", 1),
        visit("t", 1),
        succeeded("t", "one", 1),
        visit("a", 2),
        reply("a", "second visit"),
        succeeded("a", "second visit", 1),
        visit("t", 2),
        succeeded("t", "two", 1),
    ]);
    let rec = Arc::new(Recording::new(&recorded, false).unwrap());
    let req = ChatRequest::default();
    let second = rec.model("a", 2, 1).complete(req.clone()).await.unwrap();
    assert_eq!(second.content, "second visit");
    let first = rec.model("a", 1, 1).complete(req).await.unwrap();
    assert_eq!(first.content, "first visit");
    let cancel = CancellationToken::new();
    assert_eq!(
        rec.tool_step("t", 2, 1, cancel.clone()).await.unwrap(),
        "two"
    );
    assert_eq!(rec.tool_step("t", 1, 1, cancel).await.unwrap(), "one");
}
