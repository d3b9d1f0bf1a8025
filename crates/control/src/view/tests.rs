use super::*;
use baton_types::RunId;

fn rec(seq: u64, at_ms: i64, event: Event) -> EventRecord {
    EventRecord {
        run_id: RunId::default(),
        seq,
        at_ms,
        event,
    }
}

#[test]
fn step_details_sum_attempts_and_keep_the_last_result() {
    let usage = Usage {
        prompt_tokens: 3,
        completion_tokens: 4,
        cost_usd: 0.0,
    };
    let evs = vec![
        rec(
            1,
            10,
            Event::StepStarted {
                step: "a".into(),
                attempt: 1,
                visit: 1,
                key: "k".into(),
            },
        ),
        rec(
            2,
            15,
            Event::StepFailed {
                step: "a".into(),
                attempt: 1,
                error: StepError {
                    kind: baton_types::StepErrorKind::Execution,
                    message: "boom".into(),
                    retryable: true,
                    sandbox: None,
                },
                retry_in_ms: Some(1),
                recovered: false,
                next: None,
                duration_ms: 5,
                usage,
            },
        ),
        rec(
            3,
            20,
            Event::StepStarted {
                step: "a".into(),
                attempt: 2,
                visit: 1,
                key: "k".into(),
            },
        ),
        rec(
            4,
            27,
            Event::StepSucceeded {
                step: "a".into(),
                output: json!("ok"),
                next: None,
                duration_ms: 7,
                usage,
            },
        ),
    ];
    let d = step_details(&evs);
    assert_eq!(d.len(), 1);
    let a = &d[0];
    assert_eq!(
        (a.row.status, a.row.duration_ms, a.row.tokens),
        ("succeeded", 12, 14)
    );
    assert_eq!(
        (a.started_at_ms, a.ended_at_ms, a.attempts),
        (Some(10), Some(27), 2)
    );
    assert_eq!(a.output, Some(json!("ok")));
    assert!(a.error.is_none());
    assert_eq!(step_rows(&evs)[0].tokens, 14);
}

#[test]
fn ambiguity_resolution_tool_calls_and_prompts_are_read_from_the_log() {
    let run = RunId::default();
    let exec = json!({"stop_reason": "exited", "policy": {"tier": "process"}, "exit_code": 0});
    let ctx = PromptContext {
        system: Some("You are a helper.".into()),
        tools: vec![json!({"name": "sandbox.exec"})],
        response_format: None,
    };
    let started = |seq, attempt| {
        rec(
            seq,
            seq as i64,
            Event::StepStarted {
                step: "a".into(),
                attempt,
                visit: 1,
                key: "r:a:1".into(),
            },
        )
    };
    let progress = |seq, progress| {
        rec(
            seq,
            seq as i64,
            Event::StepProgress {
                step: "a".into(),
                progress,
            },
        )
    };
    let evs = vec![
        started(1, 1),
        progress(
            2,
            Progress::Prompt {
                turn: 1,
                model: "scripted/a".into(),
                context_hash: "h1".into(),
                context: Some(Box::new(ctx.clone())),
                messages: vec![json!({"role": "user", "content": "go"})],
                cut_bytes: 0,
            },
        ),
        rec(
            3,
            3,
            Event::ToolCallStarted {
                step: "a".into(),
                attempt: 1,
                call: 1,
                tool: "sandbox.exec".into(),
                arguments: json!({"argv": ["true"]}),
                key: "r:a:1/1".into(),
            },
        ),
        rec(
            4,
            4,
            Event::ToolCallFinished {
                step: "a".into(),
                attempt: 1,
                call: 1,
                tool: "sandbox.exec".into(),
                output: exec.clone(),
                is_error: false,
            },
        ),
        // An older log's form of an agent's sandbox call: a tool_result progress.
        progress(
            5,
            Progress::ToolResult {
                tool: "sandbox.exec".into(),
                arguments: json!({"argv": ["true"]}),
                output: exec.clone(),
                is_error: false,
            },
        ),
        progress(
            6,
            Progress::Prompt {
                turn: 2,
                model: "scripted/a".into(),
                context_hash: "h1".into(),
                context: None,
                messages: vec![json!({"role": "tool", "content": "ok"})],
                cut_bytes: 0,
            },
        ),
        rec(
            7,
            7,
            Event::ToolCallStarted {
                step: "a".into(),
                attempt: 1,
                call: 2,
                tool: "http.post".into(),
                arguments: json!({"url": "http://127.0.0.1/pay"}),
                key: "r:a:1/2".into(),
            },
        ),
        rec(
            8,
            8,
            Event::StepAmbiguous {
                step: "a".into(),
                attempt: 1,
                call: Some(2),
                tool: "http.post".into(),
                arguments: json!({"url": "http://127.0.0.1/pay"}),
                key: "r:a:1/2".into(),
            },
        ),
    ];
    assert_eq!(step_rows(&evs)[0].status, "ambiguous");
    let open = ambiguities(&evs);
    assert_eq!(
        (open.len(), open[0].call, open[0].key.as_str()),
        (1, Some(2), "r:a:1/2")
    );
    let sandbox = sandbox_records(&evs, None);
    assert_eq!(sandbox.len(), 2, "{sandbox:?}");
    assert_eq!(
        (sandbox[0].via, sandbox[0].attempt, sandbox[0].visit),
        ("sandbox.exec", Some(1), Some(1))
    );
    let t = step_trace(run, &evs, "a").unwrap();
    assert_eq!(t.prompts.len(), 2);
    assert_eq!(
        t.prompts[1].context.as_ref(),
        Some(&ctx),
        "a later turn's context is resolved from its hash"
    );
    let calls: Vec<(u32, &str, &str)> = t
        .tool_calls
        .iter()
        .map(|c| (c.call, c.status, c.key.as_str()))
        .collect();
    assert_eq!(
        calls,
        vec![(1, "finished", "r:a:1/1"), (2, "no result", "r:a:1/2")]
    );
    assert!(t.ambiguous.is_some());
    assert!(step_trace(run, &evs, "b").is_none());
    assert_eq!(steps_in(&evs), vec!["a".to_string()]);

    // Resolved: running again, no longer ambiguous.
    let mut evs = evs;
    evs.push(rec(
        9,
        9,
        Event::StepResolved {
            step: "a".into(),
            resolution: baton_types::Resolution::Retry,
            value: Value::Null,
            by: Some("ann".into()),
        },
    ));
    assert_eq!(step_rows(&evs)[0].status, "running");
    assert!(ambiguities(&evs).is_empty());
    assert!(step_trace(run, &evs, "a").unwrap().ambiguous.is_none());
}

/// A looped step's last visit refused past its `max_visits` never started: it adds no time
/// (it added the whole loop's, from its previous start).
#[test]
fn a_visit_refused_before_it_started_takes_no_time() {
    let started = |seq, at, visit| {
        rec(
            seq,
            at,
            Event::StepStarted {
                step: "round".into(),
                attempt: 1,
                visit,
                key: format!("k{visit}"),
            },
        )
    };
    let done = |seq, at| {
        rec(
            seq,
            at,
            Event::StepSucceeded {
                step: "round".into(),
                output: Value::Null,
                next: None,
                duration_ms: 0,
                usage: Usage::default(),
            },
        )
    };
    let evs = vec![
        started(1, 100, 1),
        done(2, 102),
        started(3, 5_000, 2),
        done(4, 5_003),
        rec(
            5,
            60_000,
            Event::StepFailed {
                step: "round".into(),
                attempt: 1,
                error: StepError {
                    kind: baton_types::StepErrorKind::MaxVisits,
                    message: "past its max_visits".into(),
                    retryable: false,
                    sandbox: None,
                },
                retry_in_ms: None,
                recovered: true,
                next: Some("gave_up".into()),
                duration_ms: 0,
                usage: Usage::default(),
            },
        ),
    ];
    let rows = step_rows(&evs);
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].status, rows[0].duration_ms),
        ("failed (continued)", 5)
    );
}
