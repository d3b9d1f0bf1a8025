//! The team benchmarks (`baton bench team`): a direct message from one agent's tool call to
//! the receiver's next turn, and a broadcast to 100 subscribers taken by each of them, through
//! the state machine with every event appended to the in-memory store (what the executor does
//! between a step's report and its answer, without the agents' model calls).

use std::time::Instant;

use baton_store::{Batch, RunStore};
use baton_types::EventRecord;
use serde_json::{Value, json};

use crate::bench::BenchError;
use crate::executor::{Services, create_run};
use crate::machine::{Decision, Input, Machine, RunOptions, RunState, TeamCall};
use crate::program::Program;

/// A run of `agents` agents, each with the team tools, one parallel branch each, all
/// subscribed to channel `all`; started, with the machine that drives it.
struct TeamRun {
    program: Program,
    store: std::sync::Arc<baton_store::memory::MemoryStore>,
    st: RunState,
}

async fn team_run(agents: usize) -> Result<TeamRun, BenchError> {
    let names: Vec<String> = (0..agents).map(|i| format!("a{i}")).collect();
    let defs: serde_json::Map<String, Value> = names
        .iter()
        .map(|n| {
            let tools = ["message.send", "message.broadcast"];
            (n.clone(), json!({"model": "fake/echo", "tools": tools}))
        })
        .collect();
    let branches: Vec<Value> = names
        .iter()
        .map(|n| json!({"id": format!("s{n}"), "agent": n, "prompt": "go"}))
        .collect();
    let doc = json!({
        "version": 1, "name": "team-bench", "agents": defs,
        "channels": {"all": {"subscribers": names}},
        "runaway": {"repeated_tool_calls": 0, "repeated_messages": 0},
        "steps": [{"id": "p", "parallel": branches}],
    });
    let doc = serde_json::from_value(doc).map_err(|e| BenchError::Workflow(e.to_string()))?;
    let program = Program::compile(doc, std::path::PathBuf::from("."))
        .map_err(|e| BenchError::Workflow(e.to_string()))?;
    let store = std::sync::Arc::new(baton_store::memory::MemoryStore::new());
    let services = Services {
        store: store.clone(),
        models: std::sync::Arc::new(crate::bench::providers()),
        tools: std::sync::Arc::new(baton_tools::Registry::with_builtins()),
    };
    let opts = RunOptions::default();
    let id = create_run(&services, &program, "", None, json!({}), &opts).await?;
    let st = RunState::new(id, json!({}), &program, &opts);
    let mut run = TeamRun { program, store, st };
    run.feed(Input::Start { resumed: false }).await?;
    Ok(run)
}

impl TeamRun {
    /// Decides `input` and appends its events to the store, as the executor does.
    async fn feed(&mut self, input: Input) -> Result<(), BenchError> {
        let m = Machine::new(&self.program);
        let mut d = Decision::default();
        if let Err(e) = m.handle_into(&mut self.st, input, &mut d) {
            return Err(BenchError::Task(e.to_string()));
        }
        append(&*self.store, &mut self.st, d).await
    }
}

async fn append(store: &dyn RunStore, st: &mut RunState, d: Decision) -> Result<(), BenchError> {
    if d.events.is_empty() {
        return Ok(());
    }
    let first = st.last_seq + 1;
    st.last_seq += d.events.len() as u64;
    let events = d
        .events
        .into_iter()
        .enumerate()
        .map(|(i, event)| EventRecord {
            run_id: st.run_id,
            seq: first + i as u64,
            at_ms: 0,
            event,
        })
        .collect();
    let batch = Batch {
        events,
        status: Some(st.status),
        outputs: None,
        error: None,
        checkpoint: None,
    };
    store
        .append(st.run_id, batch)
        .await
        .map_err(|e| BenchError::Engine(e.into()))
}

/// Team tool call `call` of the running attempt (1) of `step`.
pub(crate) fn team_call(step: &str, call: u32, tool: &str, arguments: Value) -> Input {
    Input::TeamCall {
        step: step.into(),
        attempt: 1,
        call: TeamCall {
            call,
            tool: tool.into(),
            arguments,
            key: format!("{step}/{call}"),
        },
    }
}

/// `step`'s running attempt (1) is about to ask its model for `turn`.
pub(crate) fn inbox(step: &str, turn: u32) -> Input {
    Input::Inbox {
        step: step.into(),
        attempt: 1,
        turn,
    }
}

/// `n` direct messages from `a0` to `a1`, each taken by `a1`'s next turn: the time of each
/// (send + delivery), in ms.
pub async fn message_delivery(n: usize) -> Result<Vec<f64>, BenchError> {
    let mut run = team_run(2).await?;
    let mut times = Vec::with_capacity(n);
    for i in 1..=u32::try_from(n).unwrap_or(u32::MAX) {
        let t = Instant::now();
        let args = json!({"to": "a1", "content": format!("message {i}")});
        run.feed(team_call("sa0", i, "message.send", args)).await?;
        run.feed(inbox("sa1", i)).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    check_delivered(&run.st, "sa1", n)?;
    Ok(times)
}

/// `n` broadcasts from `a0` on a channel of 101 agents, each taken by the 100 others in their
/// next turn: the time of each (broadcast + 100 deliveries), in ms.
pub async fn broadcast_100(n: usize) -> Result<Vec<f64>, BenchError> {
    let mut run = team_run(101).await?;
    let mut times = Vec::with_capacity(n);
    for i in 1..=u32::try_from(n).unwrap_or(u32::MAX) {
        let t = Instant::now();
        let args = json!({"channel": "all", "content": format!("broadcast {i}")});
        run.feed(team_call("sa0", i, "message.broadcast", args))
            .await?;
        for r in 1..=100 {
            run.feed(inbox(&format!("sa{r}"), i)).await?;
        }
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    check_delivered(&run.st, "sa100", n)?;
    Ok(times)
}

/// Every message reached its receiver's turns: the bench measured what it claims.
fn check_delivered(st: &RunState, step: &str, n: usize) -> Result<(), BenchError> {
    let got = st
        .steps
        .get(step)
        .and_then(|s| s.journal.as_ref())
        .map_or(0, |j| j.inbox.iter().map(|r| r.messages.len()).sum());
    if got == n && st.team.inboxes.is_empty() {
        Ok(())
    } else {
        Err(BenchError::Answers { got, want: n })
    }
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn the_team_benchmarks_deliver_every_message() {
        assert_eq!(super::message_delivery(50).await.unwrap().len(), 50);
        assert_eq!(super::broadcast_100(3).await.unwrap().len(), 3);
    }
}
