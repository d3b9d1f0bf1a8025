//! Conflict-resolution joins with real branches through the executor and the store: branches
//! that end at different times, one failing; the decision is in the log before the step's end,
//! and the state rebuilt from the log equals the live one.

use baton_types::{Event, JoinStrategy, Progress, RunStatus};
use serde_json::json;

use baton_llm::scripted::Reply;

use super::harness;

/// Branch c agrees with a unless `retries` differs from 1.
fn workflow(join: &str, retries: u32) -> String {
    format!(
        r#"
version: 1
name: joins
steps:
  - id: p
    parallel:
      - {{ id: a, tool: echo, with: {{ verdict: "Ship", cfg: {{ retries: 1, log: info }} }} }}
      - {{ id: b, tool: fail, with: {{ message: down, retryable: false }} }}
      - {{ id: c, tool: echo, with: {{ verdict: "Ship", cfg: {{ retries: {retries}, log: info }} }} }}
    join: {join}
"#
    )
}

/// The `join_decided` note of step `p`, and whether it came before the step's end.
fn decision(evs: &[Event]) -> (Progress, bool) {
    let note = evs.iter().position(|e| {
        matches!(e, Event::StepProgress { step, progress: Progress::JoinDecided { .. } } if step == "p")
    });
    let end = evs.iter().position(
        |e| matches!(e, Event::StepSucceeded { step, .. } | Event::StepFailed { step, .. } if step == "p"),
    );
    let i = note.unwrap_or_else(|| panic!("no join decision in {evs:?}"));
    let Event::StepProgress { progress, .. } = &evs[i] else {
        unreachable!()
    };
    (progress.clone(), end.is_some_and(|end| i < end))
}

#[tokio::test]
async fn vote_priority_and_merge_with_real_branches() {
    // vote: a and c agree; b failed and does not vote.
    let h = harness(&workflow("{ strategy: vote, tie_break: fail }", 1));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["p"]["cfg"]["retries"], 1);
    let (d, before) = decision(&h.events(&st).await);
    assert!(before, "the decision is logged before the step ends");
    assert!(
        matches!(&d, Progress::JoinDecided { strategy: JoinStrategy::Vote, winner: Some(w), .. } if w == "a"),
        "{d:?}"
    );
    h.check_replay(&st).await;

    // priority: b is first but failed; c is next.
    let h = harness(&workflow("{ strategy: priority, priority: [b, c] }", 3));
    let st = h.run(json!({})).await;
    assert_eq!(st.outputs["p"]["cfg"]["retries"], 3);
    h.check_replay(&st).await;

    // merge: `cfg.retries` conflicts: the step fails, naming the key and the branches...
    let h = harness(&workflow("{ strategy: merge }", 3));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Failed);
    let error = st.error.clone().unwrap_or_default();
    assert!(
        error.contains("merge conflict at `cfg.retries` (a and c)"),
        "{error}"
    );
    h.check_replay(&st).await;

    // ...or priority settles it.
    let h = harness(&workflow(
        "{ strategy: merge, on_conflict: priority, priority: [c] }",
        3,
    ));
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(
        st.outputs["p"],
        json!({"verdict": "Ship", "cfg": {"retries": 3, "log": "info"}})
    );
    h.check_replay(&st).await;
}

const JUDGED: &str = r#"
version: 1
name: judged
agents:
  reviewer: { model: scripted/reviewer, instructions: "Pick the plan that ships soonest." }
steps:
  - id: p
    parallel:
      - { id: a, tool: echo, with: { plan: "rewrite" } }
      - { id: b, tool: echo, with: { plan: "patch" } }
    join: { strategy: judge, judge: reviewer }
"#;

#[tokio::test]
async fn a_judge_picks_a_branch_after_a_bad_answer_is_asked_again() {
    let h = harness(JUDGED);
    let m = h.model(
        "reviewer",
        vec![
            Reply::text(r#"{"choice": "synthesis", "reason": "no output given"}"#),
            Reply::text(r#"{"choice": "b", "reason": "a patch ships today"}"#),
        ],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.outputs["p"], json!({ "plan": "patch" }));
    let reqs = m.requests();
    assert_eq!(reqs.len(), 2, "a synthesis without output is asked again");
    let asked = reqs[0].last_user_text();
    assert!(asked.contains("## a\n{\"plan\":\"rewrite\"}"), "{asked}");
    assert!(st.usage.total() > 0, "the judge's usage is the step's");
    let (d, before) = decision(&h.events(&st).await);
    assert!(before, "the decision is logged before the step ends");
    assert!(
        matches!(&d, Progress::JoinDecided { strategy: JoinStrategy::Judge, winner: Some(w), losers, reason }
            if w == "b" && losers == &["a"] && reason == "a patch ships today"),
        "{d:?}"
    );
    h.check_replay(&st).await;
}

#[tokio::test]
async fn the_judge_sees_each_candidate_with_its_author() {
    let h = harness(
        r#"
version: 1
name: authors
agents:
  bold: { model: scripted/bold }
  reviewer: { model: scripted/reviewer }
steps:
  - id: p
    parallel:
      - { id: a, agent: bold, prompt: "Name it." }
      - { id: b, tool: echo, with: { text: "taskrun" } }
    join: { strategy: judge, judge: reviewer }
"#,
    );
    h.model("bold", vec![Reply::text("Thunderclap")]);
    let m = h.model(
        "reviewer",
        vec![Reply::text(
            r#"{"choice": "synthesis", "output": "Thundertask", "reason": "both"}"#,
        )],
    );
    let st = h.run(json!({})).await;
    assert_eq!(st.outputs["p"], "Thundertask");
    let reqs = m.requests();
    let asked = reqs[0].last_user_text();
    assert!(
        asked.contains("## a (agent `bold`)\nThunderclap\n"),
        "{asked}"
    );
    assert!(asked.contains("## b\ntaskrun\n"), "{asked}");
    h.check_replay(&st).await;
}
