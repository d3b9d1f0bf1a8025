//! Budgets through the executor and the store, with the scripted provider: the stop is logged
//! and checkpointed, the state rebuilt from the log (and from the checkpoint) equals the live
//! one, a resume without more is refused, and one after a raise finishes the run.

use baton_engine::executor::load_state;
use baton_engine::machine::Refused;
use baton_engine::{Input, Machine};
use baton_llm::scripted::Reply;
use baton_types::{BudgetChange, BudgetKind, Event, PauseReason, RunStatus};
use serde_json::json;

use super::harness;

const WORKFLOW: &str = r#"
version: 1
name: spend
budget: { tokens: 150, wall_time: 1h }
agents:
  a: { model: scripted/a, budget: { model_calls: 5 } }
  b: { model: scripted/b }
steps:
  - { id: one, agent: a, prompt: "x" }
  - { id: two, agent: b, prompt: "y" }
  - { id: three, agent: a, prompt: "z" }
"#;

/// A reply that costs 100 tokens.
fn costly(text: &str) -> Reply {
    Reply {
        usage: Some(baton_llm::Usage {
            prompt_tokens: 60,
            completion_tokens: 40,
            cost_usd: 0.0,
        }),
        ..Reply::text(text)
    }
}

#[tokio::test]
async fn a_budget_stop_is_logged_replayed_and_resumed_after_a_raise() {
    let h = harness(WORKFLOW);
    h.model("a", vec![costly("one").repeating()]);
    h.model("b", vec![costly("two")]);
    let st = h.run(json!({})).await;
    assert_eq!(st.status, RunStatus::BudgetExceeded);
    let evs = h.events(&st).await;
    let stop = evs.iter().find_map(|e| match e {
        Event::Paused {
            pause: PauseReason::Budget(stop),
        } => Some(stop.clone()),
        _ => None,
    });
    let stop = stop.expect("no budget stop in the log");
    assert_eq!(stop.crossed.kind, BudgetKind::Tokens);
    assert_eq!(stop.by_agent["a"].tokens, 100);
    assert_eq!(stop.by_model["scripted/b"].tokens, 100);
    // `three` never started.
    assert!(
        !evs.iter()
            .any(|e| matches!(e, Event::StepStarted { step, .. } if step == "three"))
    );
    // The log (and the checkpoint) rebuild the live state, wall time included.
    assert!(st.budget.clock_ms.is_some());
    h.check_replay(&st).await;
    // Without more: refused.
    let mut again = load_state(&h.services, &h.program, st.run_id)
        .await
        .unwrap();
    let refused = Machine::new(&h.program).handle(&mut again, Input::Resume { stepping: false });
    assert!(
        matches!(refused, Err(Refused::OverBudget(_))),
        "{refused:?}"
    );
    // Raised: it finishes, and what was spent before the stop still counts.
    let st = load_state(&h.services, &h.program, st.run_id)
        .await
        .unwrap();
    let raise = Input::RaiseBudget {
        changes: vec![BudgetChange::parse_pair("tokens=+100").unwrap()],
        by: Some("ops".into()),
    };
    let inputs = vec![
        Input::Start { resumed: true },
        raise,
        Input::Resume { stepping: false },
    ];
    let st = h.drive(st, inputs).await;
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.budget.spent.tokens, 300);
    assert_eq!(st.budget.by_agent["a"].model_calls, 2);
    h.check_replay(&st).await;
}
