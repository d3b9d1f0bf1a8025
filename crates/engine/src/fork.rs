//! Forking a run (time travel): which of a parent run's events a fork copies.
//!
//! A fork's log starts with its parent's events up to a cut: `at` a seq, `before` a step's
//! first start, or `after` its first success. What was in flight at the cut is left out, so
//! it runs again in the fork under the fork's own idempotency keys and nothing the parent did
//! is repeated under the parent's key:
//! - every event of a step instance after its last end in the prefix (attempts under way,
//!   their progress and tool calls, a question not answered yet, a retry's wait);
//! - every event inside a parallel, map or group step in flight (its branches and items
//!   start over with it).
//!
//! The run's own ending (success, failure, cancellation, a cancel request) is left out too:
//! the fork decides its own. Edits (`state_edited`, a fork's own) belong to no step and are
//! kept, so a fork of a fork sees them. Nothing here does I/O; the control layer stores the
//! result.

use std::collections::HashMap;

use baton_types::{Event, EventRecord, StepPath};

use crate::program::{NodeKind, Program};

/// Where a fork cuts its parent's log.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Cut {
    /// After event `seq` (included).
    At(u64),
    /// Just before the step's first `step_started` (an id matches its first instance).
    Before(String),
    /// Just after the step's first `step_succeeded`.
    After(String),
}

impl Cut {
    /// The request field that names the cut (`at`, `before`, `after`).
    pub fn field(&self) -> &'static str {
        match self {
            Cut::At(_) => "at",
            Cut::Before(_) => "before",
            Cut::After(_) => "after",
        }
    }
}

/// Why a cut cannot be made; `field` names the request field at fault.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{message}")]
pub struct CutError {
    pub field: &'static str,
    pub message: String,
}

/// The seq of the parent's last event a fork at `cut` copies.
pub fn cut_seq(program: &Program, events: &[EventRecord], cut: &Cut) -> Result<u64, CutError> {
    let field = cut.field();
    let bad = |message: String| CutError { field, message };
    let last = events.last().map_or(0, |e| e.seq);
    let (step, after) = match cut {
        Cut::At(seq) if (1..=last).contains(seq) => return Ok(*seq),
        Cut::At(seq) => {
            return Err(bad(format!(
                "the run has events 1 to {last}: there is no event {seq} to fork at"
            )));
        }
        Cut::Before(step) => (step, false),
        Cut::After(step) => (step, true),
    };
    if program.node_by_id(StepPath::parse(step).id()).is_none() {
        let known: Vec<&str> = program.nodes.iter().map(|n| n.id.as_str()).collect();
        return Err(bad(format!(
            "the workflow has no step '{step}' (steps: {})",
            known.join(", ")
        )));
    }
    let of_step = |e: &&EventRecord| e.event.step().is_some_and(|s| names(step, s));
    let found = events.iter().filter(of_step).find(|e| match &e.event {
        Event::StepStarted { .. } => !after,
        Event::StepSucceeded { .. } => after,
        _ => false,
    });
    match found {
        Some(e) if after => Ok(e.seq),
        Some(e) => Ok(e.seq - 1),
        None if !events.iter().any(|e| of_step(&e)) => Err(bad(format!(
            "step '{step}' never ran in this run: fork at a step that did, or at a seq"
        ))),
        None => Err(bad(format!(
            "step '{step}' never succeeded in this run: fork --before it, or at a seq"
        ))),
    }
}

/// Whether `wanted` (an instance `id[2]`, or an id: any of its instances) names `path`.
fn names(wanted: &str, path: &str) -> bool {
    wanted == path || (!wanted.contains('[') && StepPath::parse(path).id() == wanted)
}

/// The events a fork at `seq` copies, in order, as the parent logged them (see the module).
pub fn prefix(program: &Program, events: &[EventRecord], seq: u64) -> Vec<EventRecord> {
    let cut: Vec<&EventRecord> = events.iter().take_while(|e| e.seq <= seq).collect();
    // Where each step instance last ended within the cut.
    let mut ended: HashMap<&str, usize> = HashMap::new();
    for (i, e) in cut.iter().enumerate() {
        match &e.event {
            Event::StepSucceeded { step, .. }
            | Event::StepCancelled { step }
            | Event::StepFailed {
                step,
                retry_in_ms: None,
                ..
            } => {
                ended.insert(step, i);
            }
            _ => {}
        }
    }
    cut.iter()
        .enumerate()
        .filter(|(i, e)| match &e.event {
            Event::RunSucceeded { .. }
            | Event::RunFailed { .. }
            | Event::RunCancelled
            | Event::CancelRequested => false,
            ev => ev.step().is_none_or(|step| {
                enclosing(program, step)
                    .iter()
                    .all(|s| ended.get(s.as_str()).is_some_and(|end| i <= end))
            }),
        })
        .map(|(_, e)| (*e).clone())
        .collect()
}

/// A step instance and the instances of the fan steps around it, innermost first: `c[2]` in
/// a map `m` inside a group `g` gives `c[2]`, `m`, `g`.
fn enclosing(program: &Program, path: &str) -> Vec<String> {
    let mut out = vec![path.to_string()];
    let p = StepPath::parse(path);
    let mut items: Vec<usize> = p.indexes().collect();
    let Some(mut node) = program.node_by_id(p.id()) else {
        return out;
    };
    while let Some(owner) = program
        .scopes
        .get(node.scope as usize)
        .and_then(|s| s.owner)
    {
        let o = program.node(owner);
        if matches!(o.kind, NodeKind::Map { .. }) {
            items.pop();
        }
        let suffix: String = items.iter().map(|i| format!("[{i}]")).collect();
        out.push(StepPath::instance(&o.id, &suffix));
        node = o;
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use std::path::PathBuf;

    use baton_types::{RunId, StepError, StepErrorKind, Usage};
    use serde_json::{Value, json};

    use super::*;

    fn program(steps: Value) -> Program {
        let doc = json!({ "version": 1, "name": "t", "steps": steps });
        Program::compile(serde_json::from_value(doc).unwrap(), PathBuf::from("/")).unwrap()
    }

    fn three() -> Program {
        program(json!([
            { "id": "a", "tool": "echo" },
            { "id": "b", "tool": "echo" },
            { "id": "c", "tool": "echo" },
        ]))
    }

    fn log(events: Vec<Event>) -> Vec<EventRecord> {
        let run = RunId::new();
        events
            .into_iter()
            .enumerate()
            .map(|(i, event)| EventRecord {
                run_id: run,
                seq: i as u64 + 1,
                at_ms: 0,
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

    fn ok(step: &str, next: Option<&str>) -> Event {
        Event::StepSucceeded {
            step: step.into(),
            output: json!(step),
            next: next.map(Into::into),
            duration_ms: 1,
            usage: Usage::default(),
        }
    }

    fn created() -> Event {
        Event::RunCreated {
            workflow: "t".into(),
            inputs: Value::Null,
            forked_from: None,
        }
    }

    fn sequence() -> Vec<EventRecord> {
        log(vec![
            created(),
            Event::RunStarted { resumed: false },
            started("a", 1),
            ok("a", Some("b")),
            started("b", 1),
            Event::StepFailed {
                step: "b".into(),
                attempt: 1,
                error: StepError::new(StepErrorKind::Execution, "flaky"),
                retry_in_ms: Some(10),
                recovered: false,
                next: None,
                duration_ms: 1,
                usage: Usage::default(),
            },
            started("b", 2),
            ok("b", Some("c")),
            started("c", 1),
            ok("c", None),
            Event::RunSucceeded {
                outputs: json!("c"),
            },
        ])
    }

    fn kinds(evs: &[EventRecord]) -> Vec<String> {
        evs.iter()
            .map(|e| format!("{} {}", e.event.kind(), e.event.step().unwrap_or("")))
            .collect()
    }

    #[test]
    fn before_and_after_a_step_and_at_a_seq() {
        let p = three();
        let evs = sequence();
        let cut = |c: Cut| cut_seq(&p, &evs, &c);
        assert_eq!(cut(Cut::Before("b".into())), Ok(4));
        assert_eq!(cut(Cut::After("b".into())), Ok(8));
        assert_eq!(cut(Cut::Before("a".into())), Ok(2));
        assert_eq!(cut(Cut::At(11)), Ok(11));
        let e = cut(Cut::At(12)).unwrap_err();
        assert_eq!(e.field, "at");
        assert!(e.message.contains("1 to 11"), "{e}");
        assert!(cut(Cut::At(0)).is_err());
        let e = cut(Cut::Before("nope".into())).unwrap_err();
        assert_eq!(e.field, "before");
        assert!(e.message.contains("no step 'nope' (steps: a, b, c)"), "{e}");
        // A step that never ran, or never succeeded.
        let short = &evs[..5];
        let e = cut_seq(&p, short, &Cut::After("c".into())).unwrap_err();
        assert!(e.message.contains("never ran"), "{e}");
        let e = cut_seq(&p, short, &Cut::After("b".into())).unwrap_err();
        assert!(e.message.contains("never succeeded"), "{e}");
    }

    #[test]
    fn attempts_in_flight_and_the_run_end_are_not_copied() {
        let p = three();
        let evs = sequence();
        // Inside b's second attempt: b starts over in the fork.
        assert_eq!(
            kinds(&prefix(&p, &evs, 7)),
            [
                "run_created ",
                "run_started ",
                "step_started a",
                "step_succeeded a"
            ]
        );
        // After b: everything up to its success.
        assert_eq!(prefix(&p, &evs, 8).len(), 8);
        // At the very end: the run's success is the fork's to decide.
        let all = prefix(&p, &evs, 11);
        assert_eq!(all.len(), 10);
        assert_eq!(all.last().unwrap().event.kind(), "step_succeeded");
    }

    #[test]
    fn a_fan_in_flight_starts_over_with_its_branches() {
        let p = program(json!([
            { "id": "a", "tool": "echo" },
            { "id": "fan", "parallel": [
                { "id": "x", "tool": "echo" },
                { "id": "y", "tool": "echo" },
            ] },
        ]));
        let evs = log(vec![
            created(),
            started("a", 1),
            ok("a", Some("fan")),
            started("fan", 1),
            started("x", 1),
            started("y", 1),
            ok("x", None),
            ok("y", None),
            ok("fan", None),
        ]);
        // x finished but its parallel did not: x runs again too.
        assert_eq!(
            kinds(&prefix(&p, &evs, 7)),
            ["run_created ", "step_started a", "step_succeeded a"]
        );
        assert_eq!(prefix(&p, &evs, 9).len(), 9);
    }

    /// Runs `p` on the machine to its end, feeding each launched step `output(step)`.
    fn run_to_end(p: &Program, output: fn(&str) -> Value) -> Vec<EventRecord> {
        use crate::machine::{Action, Input, Machine, RunOptions, RunState};
        let m = Machine::new(p);
        let mut st = RunState::new(RunId::new(), json!({}), p, &RunOptions::default());
        let mut evs = vec![created()];
        let mut inputs = vec![Input::Start { resumed: false }];
        while let Some(input) = inputs.pop() {
            let d = m.handle(&mut st, input).unwrap();
            evs.extend(d.events);
            for a in d.actions {
                if let Action::Launch { step } = a {
                    inputs.push(Input::Done {
                        result: Ok(output(&step)),
                        step,
                        attempt: 1,
                        usage: Usage::default(),
                        duration_ms: 1,
                    });
                }
            }
        }
        log(evs)
    }

    /// The fork's state: the copied events, then `edits`, folded from a fresh state.
    fn fold(p: &Program, copied: &[EventRecord], edits: Vec<Event>) -> crate::RunState {
        use crate::machine::{Machine, RunOptions, RunState};
        let m = Machine::new(p);
        let mut st = RunState::new(RunId::new(), json!({}), p, &RunOptions::default());
        for e in copied.iter().skip(1) {
            m.apply(&mut st, &e.event);
            st.last_seq = e.seq;
        }
        for e in &edits {
            m.apply(&mut st, e);
        }
        st
    }

    #[test]
    fn an_edited_output_is_what_the_fork_decides_on() {
        use crate::machine::{Input, Machine};
        use baton_types::{EditTarget, RunStatus};
        let p = program(json!([
            { "id": "a", "tool": "echo" },
            { "id": "gate", "if": "steps.a.output == 'edited'", "then": "yes", "else": "no" },
            { "id": "no", "tool": "echo", "next": "end" },
            { "id": "yes", "tool": "echo" },
        ]));
        let parent = run_to_end(&p, |s| json!(s));
        let took = |evs: &[EventRecord], step: &str| {
            evs.iter()
                .any(|e| matches!(&e.event, Event::StepStarted { step: s, .. } if s == step))
        };
        assert!(took(&parent, "no") && !took(&parent, "yes"));
        let seq = cut_seq(&p, &parent, &Cut::Before("gate".into())).unwrap();
        let copied = prefix(&p, &parent, seq);
        let edit = Event::StateEdited {
            target: EditTarget::StepOutput { step: "a".into() },
            value: json!("edited"),
            by: Some("ann".into()),
        };
        let mut st = fold(&p, &copied, vec![edit]);
        assert_eq!(st.outputs["a"], json!("edited"));
        assert!(st.ready.contains_key("gate"), "{:?}", st.ready);
        let d = Machine::new(&p)
            .handle(&mut st, Input::Start { resumed: false })
            .unwrap();
        let started: Vec<&str> = d
            .events
            .iter()
            .filter_map(|e| match e {
                Event::StepStarted { step, .. } => Some(step.as_str()),
                _ => None,
            })
            .collect();
        assert_eq!(started, ["gate", "yes"]);
        assert_eq!(st.status, RunStatus::Running);
    }

    #[test]
    fn an_edited_state_key_input_and_a_recovered_error() {
        use baton_types::EditTarget;
        let p = three();
        let evs = sequence();
        let set = |target, value| Event::StateEdited {
            target,
            value,
            by: None,
        };
        let st = fold(
            &p,
            &prefix(&p, &evs, 8),
            vec![
                set(EditTarget::State { key: "k".into() }, json!([1])),
                set(EditTarget::StepOutput { step: "b".into() }, json!({"x": 1})),
                set(EditTarget::Input { name: "who".into() }, json!("Ada")),
            ],
        );
        assert_eq!(st.inputs["who"], json!("Ada"));
        assert_eq!(st.state["k"], json!([1]));
        assert_eq!(st.outputs["b"], json!({"x": 1}));
        assert!(!st.errors.contains_key("b"));
        assert!(st.ready.contains_key("c"));
    }

    #[test]
    fn map_items_belong_to_their_map() {
        let p = program(json!([
            { "id": "m", "map": { "over": "[1, 2]" }, "steps": [
                { "id": "c", "tool": "echo" },
            ] },
        ]));
        assert_eq!(
            enclosing(&p, "c[1]"),
            vec!["c[1]".to_string(), "m".to_string()]
        );
    }
}
