//! The engine's benchmark workloads, the same shapes as `../shared/peer-bench/`: used by
//! `baton bench` (which prints the peers' JSON lines) and by `examples/hotpath.rs` (a harness
//! for profilers that needs neither the CLI nor llama.cpp).
//!
//! The fake model is the peers': it answers `"ok:" + prompt[:8]` (the last message), after an
//! optional delay. Runs go through the whole engine: `create_run`, the executor, the store.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use baton_llm::{ChatModel, ChatRequest, ChatResponse, Chunk, Provider, Providers, StopReason};
use baton_store::RunStore;
use baton_tools::Registry;
use baton_types::{RunStatus, WorkflowDoc};
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Map, Value, json};

use crate::executor::{Services, create_run};
use crate::{Executor, Input, Program, RunOptions, RunState};

/// A failed benchmark run, or a workflow that does not compile.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    #[error("building the bench workflow: {0}")]
    Workflow(String),
    #[error(transparent)]
    Engine(#[from] crate::executor::Error),
    #[error("run {run} ended {status} ({error})")]
    RunEnded {
        run: baton_types::RunId,
        status: RunStatus,
        error: String,
    },
    #[error("a run gave {got} agent answers instead of {want}")]
    Answers { got: usize, want: usize },
    #[error("a run's task failed: {0}")]
    Task(String),
}

/// The peers' fake model: `"ok:" + prompt[:8]`, after `delay`.
struct FakeModel {
    delay: Option<Duration>,
}

/// What the fake model answers to `prompt`.
pub fn fake_answer(prompt: &str) -> String {
    let end = prompt
        .char_indices()
        .nth(8)
        .map_or(prompt.len(), |(i, _)| i);
    let mut s = String::with_capacity(3 + end);
    s.push_str("ok:");
    s.push_str(&prompt[..end]);
    s
}

#[async_trait]
impl ChatModel for FakeModel {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, baton_llm::Error>>, baton_llm::Error> {
        let r = self.complete(req).await?;
        Ok(futures::stream::iter([
            Ok(Chunk::Text(r.content)),
            Ok(Chunk::Done(StopReason::EndTurn)),
        ])
        .boxed())
    }

    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, baton_llm::Error> {
        if let Some(d) = self.delay {
            tokio::time::sleep(d).await;
        }
        let prompt = req.messages.last().map_or("", |m| m.content.as_str());
        Ok(ChatResponse {
            content: fake_answer(prompt),
            ..Default::default()
        })
    }
}

/// `fake/echo` answers at once, `fake/slow50` after 50 ms.
struct FakeProvider {
    echo: Arc<dyn ChatModel>,
    slow: Arc<dyn ChatModel>,
}

impl Provider for FakeProvider {
    fn model(&self, model: &str, _base_dir: &Path) -> Result<Arc<dyn ChatModel>, baton_llm::Error> {
        match model {
            "echo" => Ok(self.echo.clone()),
            "slow50" => Ok(self.slow.clone()),
            other => Err(baton_llm::Error::UnknownModel {
                model: format!("fake/{other}"),
                reason: "the bench's fake provider has `echo` and `slow50`".into(),
            }),
        }
    }

    fn list(&self) -> Vec<String> {
        vec!["echo".into(), "slow50".into()]
    }
}

/// The providers of the workloads: `fake/echo` and `fake/slow50`.
pub fn providers() -> Providers {
    let mut p = Providers::default();
    p.register(
        "fake",
        Arc::new(FakeProvider {
            echo: Arc::new(FakeModel { delay: None }),
            slow: Arc::new(FakeModel {
                delay: Some(Duration::from_millis(50)),
            }),
        }),
    );
    p
}

fn doc_from(v: Value) -> Result<WorkflowDoc, BenchError> {
    serde_json::from_value(v).map_err(|e| BenchError::Workflow(e.to_string()))
}

/// `n` agent steps in sequence, step `i` prompting `step{i}`, on `model`.
pub fn chain_doc(n: usize, model: &str) -> Result<WorkflowDoc, BenchError> {
    let steps: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("n{i}"), "agent": "a", "prompt": format!("step{i}")}))
        .collect();
    doc_from(
        json!({"version": 1, "name": format!("chain{n}"), "agents": {"a": {"model": model}}, "steps": steps}),
    )
}

/// A parallel step of `n` agent branches, then a join agent step.
pub fn fanout_doc(n: usize) -> Result<WorkflowDoc, BenchError> {
    let branches: Vec<Value> = (0..n)
        .map(|i| json!({"id": format!("b{i}"), "agent": "a", "prompt": format!("step{i}")}))
        .collect();
    doc_from(json!({
        "version": 1,
        "name": format!("fanout{n}"),
        "agents": {"a": {"model": "fake/echo"}},
        "steps": [
            {"id": "fan", "parallel": branches},
            {"id": "join", "agent": "a", "prompt": "step99"}
        ]
    }))
}

/// A compiled workflow with its services and executor, ready to run many times.
pub struct Bench {
    program: Arc<Program>,
    services: Services,
    exec: Executor,
    source: String,
}

impl Bench {
    /// `checkpoints`: whether a state snapshot is written after every step.
    pub fn new(
        doc: WorkflowDoc,
        store: Arc<dyn RunStore>,
        checkpoints: bool,
    ) -> Result<Bench, BenchError> {
        let source =
            serde_json::to_string(&doc).map_err(|e| BenchError::Workflow(e.to_string()))?;
        let program = Arc::new(
            Program::compile(doc, std::env::temp_dir())
                .map_err(|e| BenchError::Workflow(e.to_string()))?,
        );
        let services = Services {
            store,
            models: Arc::new(providers()),
            tools: Arc::new(Registry::with_builtins()),
        };
        let exec = Executor::new(program.clone(), services.clone()).with_checkpoints(checkpoints);
        Ok(Bench {
            program,
            services,
            exec,
            source,
        })
    }

    /// One run from creation to its end; gives the number of agent answers in its outputs.
    pub async fn run_once(&self) -> Result<usize, BenchError> {
        let options = RunOptions::default();
        let inputs = Value::Object(Map::new());
        let id = create_run(
            &self.services,
            &self.program,
            &self.source,
            None,
            inputs.clone(),
            &options,
        )
        .await?;
        let st = RunState::new(id, inputs, &self.program, &options);
        let st = self
            .exec
            .drive(st, vec![Input::Start { resumed: false }])
            .await?;
        if st.status != RunStatus::Succeeded {
            return Err(BenchError::RunEnded {
                run: id,
                status: st.status,
                error: st.error.unwrap_or_default(),
            });
        }
        Ok(st
            .outputs
            .values()
            .filter(|v| v.as_str().is_some_and(|s| s.starts_with("ok:")))
            .count())
    }
}

/// Per-run latencies (ms) of `runs` sequential runs after `warmup` untimed ones; each run must
/// give `answers` agent answers.
pub async fn timed(
    b: &Bench,
    runs: usize,
    warmup: usize,
    answers: usize,
) -> Result<Vec<f64>, BenchError> {
    for _ in 0..warmup {
        check(b.run_once().await?, answers)?;
    }
    let mut out = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        let n = b.run_once().await?;
        out.push(t.elapsed().as_secs_f64() * 1000.0);
        check(n, answers)?;
    }
    Ok(out)
}

fn check(got: usize, want: usize) -> Result<(), BenchError> {
    if got != want {
        return Err(BenchError::Answers { got, want });
    }
    Ok(())
}

/// `n` runs of `b` at once, each a tokio task; each must give `answers` agent answers.
/// Gives every run's latency (ms) and the wall time (s).
pub async fn concurrent(
    b: Arc<Bench>,
    n: usize,
    answers: usize,
) -> Result<(Vec<f64>, f64), BenchError> {
    let t0 = Instant::now();
    let handles: Vec<_> = (0..n)
        .map(|_| {
            let b = b.clone();
            tokio::spawn(async move {
                let t = Instant::now();
                let got = b.run_once().await?;
                check(got, answers)?;
                Ok::<f64, BenchError>(t.elapsed().as_secs_f64() * 1000.0)
            })
        })
        .collect();
    let mut times = Vec::with_capacity(handles.len());
    for h in handles {
        times.push(h.await.map_err(|e| BenchError::Task(e.to_string()))??);
    }
    Ok((times, t0.elapsed().as_secs_f64()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use baton_store::memory::MemoryStore;

    #[test]
    fn fake_answer_is_the_peers() {
        assert_eq!(fake_answer("step3"), "ok:step3");
        assert_eq!(fake_answer("step99 and more"), "ok:step99 a");
        assert_eq!(fake_answer(""), "ok:");
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn workloads_run_their_shapes() {
        let store = Arc::new(MemoryStore::new());
        let b = Bench::new(chain_doc(10, "fake/echo").unwrap(), store.clone(), false).unwrap();
        assert_eq!(b.run_once().await.unwrap(), 10);
        let b = Bench::new(fanout_doc(8).unwrap(), store, true).unwrap();
        assert_eq!(timed(&b, 3, 1, 9).await.unwrap().len(), 3);
        let b = Arc::new(
            Bench::new(
                chain_doc(3, "fake/echo").unwrap(),
                Arc::new(MemoryStore::new()),
                false,
            )
            .unwrap(),
        );
        let (times, wall) = concurrent(b, 20, 3).await.unwrap();
        assert_eq!(times.len(), 20);
        assert!(wall > 0.0);
    }
}
