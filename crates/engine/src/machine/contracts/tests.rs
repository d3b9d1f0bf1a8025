//! Every reducer on the machine, a type mismatch failing its step, and
//! `last_writer_by_priority` deciding the same whatever order the branches write in; each
//! run's log replays to the same state.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::PathBuf;

use baton_types::{RunStatus, WorkflowDoc};
use serde_json::{Value, json};

use super::super::tests::{assert_replays, done, said, start};
use super::super::{Decision, Machine, RunOptions, RunState};
use crate::program::Program;

fn program(state: Value, contracts: Value, steps: Value) -> Program {
    let doc: WorkflowDoc = serde_json::from_value(json!({
        "version": 1, "name": "t", "state": state, "contracts": contracts, "steps": steps
    }))
    .unwrap();
    Program::compile(doc, PathBuf::from(".")).unwrap()
}

/// `state.set` steps writing `k` once for each value, in order.
fn writes(values: &[Value]) -> Value {
    let steps: Vec<Value> = values
        .iter()
        .enumerate()
        .map(|(i, v)| json!({ "id": format!("s{i}"), "tool": "state.set", "with": { "k": v } }))
        .collect();
    Value::Array(steps)
}

/// Runs `values` into key `k` (initial value `initial`) under `contract`.
fn reduce(initial: Value, contract: Value, values: &[Value]) -> RunState {
    let p = program(
        json!({ "k": initial }),
        json!({ "k": contract }),
        writes(values),
    );
    let (st, d) = start(&p, RunOptions::default());
    assert_replays(&p, &st, &[&d]);
    st
}

#[test]
fn each_reducer_combines_writes_with_the_current_value() {
    let cases = [
        (
            json!(1),
            json!({ "reduce": "replace" }),
            vec![json!(2), json!(3)],
            json!(3),
        ),
        (
            json!([1]),
            json!({ "reduce": "append" }),
            vec![json!(2), json!([3, 4])],
            json!([1, 2, 3, 4]),
        ),
        (
            json!({ "a": { "x": 1 } }),
            json!({ "reduce": "merge" }),
            vec![
                json!({ "a": { "y": 2 } }),
                json!({ "b": 3, "a": { "x": 1 } }),
            ],
            json!({ "a": { "x": 1, "y": 2 }, "b": 3 }),
        ),
        (
            json!(1),
            json!({ "reduce": "sum" }),
            vec![json!(2), json!(3)],
            json!(6),
        ),
        (
            json!(1),
            json!({ "reduce": "sum" }),
            vec![json!(0.5)],
            json!(1.5),
        ),
        (
            json!(1),
            json!({ "type": "number", "reduce": "max" }),
            vec![json!(7), json!(3)],
            json!(7),
        ),
        (
            json!(5),
            json!({ "reduce": "min" }),
            vec![json!(7), json!(-2)],
            json!(-2),
        ),
    ];
    for (initial, contract, values, want) in cases {
        let st = reduce(initial, contract.clone(), &values);
        assert_eq!(
            st.status,
            RunStatus::Succeeded,
            "{contract}: {:?}",
            st.error
        );
        assert_eq!(st.state["k"], want, "{contract}");
    }
    // Without an initial value, the first write is the value (a list for `append`).
    let p = program(
        json!({}),
        json!({ "k": { "reduce": "append" } }),
        writes(&[json!("x")]),
    );
    let (st, _) = start(&p, RunOptions::default());
    assert_eq!(st.state["k"], json!(["x"]));
}

#[test]
fn a_merge_conflict_or_a_value_of_the_wrong_type_fails_the_step() {
    let st = reduce(
        json!({ "a": { "x": 1 } }),
        json!({ "reduce": "merge" }),
        &[json!({ "a": { "x": 5 } })],
    );
    assert_eq!(st.status, RunStatus::Failed);
    assert_eq!(
        st.error.as_deref(),
        Some(
            "step 's0' failed: state key `k` (contract `type: object`, `reduce: merge`): merge conflict at `a.x`: 1 and 5"
        )
    );
    assert_eq!(st.state["k"], json!({ "a": { "x": 1 } }), "nothing was set");
    let st = reduce(json!(1), json!({ "reduce": "sum" }), &[json!("two")]);
    assert_eq!(
        st.error.as_deref(),
        Some(
            "step 's0' failed: state key `k` (contract `type: number`, `reduce: sum`): the step wrote a string (\"two\")"
        )
    );
    let st = reduce(
        json!("a"),
        json!({ "type": "string", "reduce": "replace" }),
        &[json!(3)],
    );
    assert!(st.error.unwrap().contains("the step wrote a number (3)"));
}

/// Branches `a` and `b` each echo, then write `verdict`; `priority: [a, b]`.
fn prioritised() -> Program {
    let branch = |id: &str| {
        json!({ "id": format!("g{id}"), "steps": [
            { "id": format!("w{id}"), "tool": "echo" },
            { "id": format!("s{id}"), "tool": "state.set", "with": { "verdict": id.to_uppercase() } }
        ]})
    };
    let mut a = branch("a");
    a["id"] = json!("a");
    let mut b = branch("b");
    b["id"] = json!("b");
    program(
        json!({}),
        json!({ "verdict": { "type": "string", "reduce": "last_writer_by_priority", "priority": ["a", "b"] } }),
        json!([
            { "id": "p", "parallel": [a, b] },
            { "id": "after", "tool": "state.set", "with": { "verdict": "later" } }
        ]),
    )
}

/// Runs `prioritised` with the branches' echoes ending in `order`; the state just after the
/// parallel step and at the end.
fn run_in(order: [&str; 2]) -> (Vec<Value>, RunState) {
    let p = prioritised();
    let (mut st, d0) = start(&p, RunOptions::default());
    let mut ds: Vec<Decision> = vec![d0];
    let mut seen = Vec::new();
    for step in order {
        let d = Machine::new(&p)
            .handle(&mut st, done(step, 1, Ok(json!(null))))
            .unwrap();
        seen.extend(
            said(&d)
                .into_iter()
                .filter(|l| l.starts_with("set"))
                .map(Value::String),
        );
        ds.push(d);
    }
    let refs: Vec<&Decision> = ds.iter().collect();
    assert_replays(&p, &st, &refs);
    (seen, st)
}

#[test]
fn the_highest_priority_branch_wins_whatever_order_writes_arrive_in() {
    let (seen, st) = run_in(["wb", "wa"]);
    assert_eq!(
        seen,
        [
            json!("set verdict=\"B\""),
            json!("set verdict=\"A\""),
            json!("set verdict=\"later\"")
        ]
    );
    assert_eq!(
        st.state["verdict"], "later",
        "a write outside the branches replaces it"
    );
    let (seen, _) = run_in(["wa", "wb"]);
    assert_eq!(
        seen,
        [
            json!("set verdict=\"A\""),
            json!("set verdict=\"A\""),
            json!("set verdict=\"later\"")
        ],
        "b's later write keeps a's value (the event logs the resulting value)"
    );
}

#[test]
fn a_branch_writing_twice_keeps_its_own_last_write() {
    // A tie on rank (the same branch): its later write wins, as `replace` would.
    let p = program(
        json!({}),
        json!({ "v": { "reduce": "last_writer_by_priority", "priority": ["a", "b"] } }),
        json!([{ "id": "p", "parallel": [
            { "id": "a", "steps": [
                { "id": "s1", "tool": "state.set", "with": { "v": 1 } },
                { "id": "s2", "tool": "state.set", "with": { "v": 2 } }
            ]},
            { "id": "b", "tool": "state.set", "with": { "v": 3 } }
        ]}]),
    );
    let (st, d) = start(&p, RunOptions::default());
    assert_eq!(st.status, RunStatus::Succeeded, "{:?}", st.error);
    assert_eq!(st.state["v"], 2, "{:?}", said(&d));
    assert_eq!(st.state_owners["v"].branch, "a");
    assert_replays(&p, &st, &[&d]);
}
