#![allow(clippy::unwrap_used, clippy::expect_used)]

use baton_types::{Budget, RunId};
use serde_json::Value;

use super::*;
use crate::observe::tests::log;

fn record(id: RunId, status: RunStatus, created_at_ms: i64) -> RunRecord {
    RunRecord {
        id,
        workflow_name: "obs".into(),
        workflow_source: String::new(),
        workflow_path: None,
        inputs: Value::Null,
        options: Value::Null,
        status,
        created_at_ms,
        updated_at_ms: created_at_ms,
        outputs: None,
        error: None,
        last_seq: 0,
        tenant: Default::default(),
        started_by: None,
    }
}

fn kind(step: &str) -> String {
    match step {
        "ask" => "agent",
        "box" => "sandbox",
        _ => "tool",
    }
    .to_string()
}

#[test]
fn percentiles_are_nearest_rank() {
    let l = Latency::of((1..=100).rev().collect());
    assert_eq!((l.count, l.p50_ms, l.p95_ms, l.max_ms), (100, 50, 95, 100));
    assert_eq!(Latency::of(vec![]), Latency::default());
    let one = Latency::of(vec![7]);
    assert_eq!((one.p50_ms, one.p95_ms), (7, 7));
}

#[test]
fn a_window_is_1h_or_24h() {
    assert_eq!(Window::parse("1h").unwrap(), Window::Hour);
    assert_eq!(Window::parse("24h").unwrap().ms(), 86_400_000);
    let e = Window::parse("7d").unwrap_err();
    assert!(
        e.to_string()
            .contains("'7d' is not a window: use 1h or 24h"),
        "{e}"
    );
}

#[test]
fn a_runs_log_folds_into_steps_models_sandbox_and_budget() {
    let id = RunId::new();
    let mut acc = Acc::default();
    let budget = Budget {
        tokens: Some(68),
        ..Default::default()
    };
    acc.run(
        &record(id, RunStatus::Succeeded, 0),
        &log(id),
        &kind,
        Some(&budget),
    );
    let mut s = Stats::default();
    acc.finish(&mut s);
    // ask 1500 ms, box 2000 (failed) and 30 ms, say 1 ms.
    assert_eq!(s.steps.count, 4);
    assert_eq!((s.steps.p50_ms, s.steps.max_ms), (30, 2000));
    assert_eq!(s.steps_by_kind["sandbox"].count, 2);
    let m = &s.models[0];
    assert_eq!(
        (m.model.as_str(), m.provider.as_str()),
        ("scripted/bot", "scripted")
    );
    assert_eq!(
        (m.prompt_tokens, m.completion_tokens, m.latency.count),
        (24, 10, 2)
    );
    assert_eq!(
        m.latency.p50_ms, 100,
        "the reply came one event (100 ms) after its prompt"
    );
    let stops: Vec<_> = s
        .sandbox
        .iter()
        .map(|c| (c.stop.as_str(), c.count))
        .collect();
    assert_eq!(stops, [("exited", 2), ("time_limit", 1)]);
    assert_eq!((s.budget.tokens, s.budget.model_calls), (34, 2));
    assert!((s.budget.cost_usd - 0.5).abs() < 1e-9);
    assert_eq!(s.budget.runs.len(), 1);
    assert!(
        (s.budget.runs[0].used - 0.5).abs() < 1e-9,
        "34 of 68 tokens"
    );
}

#[test]
fn runs_count_by_status_and_slice() {
    let mut s = Stats {
        since_ms: 0,
        bucket_ms: 100,
        ..Default::default()
    };
    let runs = [
        record(RunId::new(), RunStatus::Succeeded, 5),
        record(RunId::new(), RunStatus::Failed, 150),
        record(RunId::new(), RunStatus::Succeeded, 1150),
        record(RunId::new(), RunStatus::Running, 1199),
    ];
    count_runs(&mut s, &runs);
    assert_eq!(s.runs, 4);
    assert_eq!(s.by_status["succeeded"], 2);
    assert_eq!(s.success_rate, Some(2.0 / 3.0));
    assert_eq!(s.over_time.len(), BUCKETS as usize);
    assert_eq!(s.over_time[1].by_status["failed"], 1);
    assert_eq!(s.over_time[11].by_status.values().sum::<u64>(), 2);
    let mut none = Stats::default();
    count_runs(&mut none, &[]);
    assert_eq!(none.success_rate, None);
}
