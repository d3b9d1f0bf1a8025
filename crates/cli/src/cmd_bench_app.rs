//! `baton bench app`: a recorded app-team run (issue 18), end to end on this host, and where
//! its time went.
//!
//! The workflow (`--workflow`, e.g. examples/app-team.yaml with
//! `BATON_MODEL=scripted/app-todo`) runs on a fresh SQLite run log in a temp dir with the real
//! tools and sandbox; its human steps are approved as soon as they wait. Every model call and
//! every sandbox call (`sandbox.exec`, `sandbox.step`, `deploy`, `deploy.stop`) is timed by a
//! wrapper around the model or tool, and the run's wall time (the time waiting on a person left
//! out) is split into:
//!
//! - `model_ms` and `sandbox_ms`: the union of those calls' intervals (parallel branches'
//!   calls that overlap count once), together `external_ms`;
//! - `orchestration_ms`: the rest, everything Baton itself did (the run log, prompts, the
//!   workspace's git commits, other tools, scheduling), and `orchestration_pct` of the run.
//!
//! Then the finished run is replayed from its log (`Control::replay_run`, recorded mode) and
//! timed: `app_team_replay`. JSON lines as the other workloads print, plus those fields.

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use anyhow::bail;
use async_trait::async_trait;
use baton_control::{Answer, Answered, Decision, ReplayMode, RunRequest, WorkflowSource};
use baton_llm::{ChatModel, ChatRequest, ChatResponse, Chunk, ModelResolver};
use baton_tools::{Registry, Tool, ToolContext, ToolSpec};
use baton_types::RunStatus;
use futures::StreamExt;
use futures::stream::BoxStream;
use serde_json::{Value, json};

use crate::cmd_bench::{TempDir, report, round};

/// The tools whose calls count as sandbox time.
const SANDBOX_TOOLS: [&str; 4] = ["sandbox.exec", "sandbox.step", "deploy", "deploy.stop"];

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    Model,
    Sandbox,
    /// Every other tool (workspace, scanner, memory...): Baton's own work, reported apart.
    Tool,
}

/// The intervals of the timed calls, in seconds since the bench's start.
#[derive(Clone)]
struct Clock {
    origin: Instant,
    spans: Arc<Mutex<Vec<(Kind, f64, f64)>>>,
    /// Each call of a tool that is neither the model nor a sandbox.
    by_tool: Arc<Mutex<Vec<ToolTime>>>,
}

/// A tool and milliseconds of its calls.
type ToolTime = (Arc<str>, f64);

impl Clock {
    fn new() -> Clock {
        Clock {
            origin: Instant::now(),
            spans: Arc::new(Mutex::new(Vec::new())),
            by_tool: Arc::new(Mutex::new(Vec::new())),
        }
    }

    fn now(&self) -> f64 {
        self.origin.elapsed().as_secs_f64()
    }

    fn record(&self, kind: Kind, start: f64) {
        let end = self.now();
        self.spans
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((kind, start, end));
    }

    fn take(&self) -> Vec<(Kind, f64, f64)> {
        std::mem::take(&mut *self.by_tool.lock().unwrap_or_else(|p| p.into_inner()));
        std::mem::take(&mut *self.spans.lock().unwrap_or_else(|p| p.into_inner()))
    }

    /// The calls of other tools since the last [`Clock::take`]: ms per tool, summed (calls in
    /// parallel branches each count whole), largest first.
    fn by_tool(&self) -> Vec<ToolTime> {
        let calls = self.by_tool.lock().unwrap_or_else(|p| p.into_inner());
        let mut sums: Vec<ToolTime> = Vec::new();
        for (name, ms) in calls.iter() {
            match sums.iter_mut().find(|(n, _)| n == name) {
                Some((_, sum)) => *sum += ms,
                None => sums.push((name.clone(), *ms)),
            }
        }
        sums.sort_by(|a, b| b.1.total_cmp(&a.1));
        sums
    }
}

/// Records a span when dropped (a streamed reply ends when its stream is dropped).
struct Span {
    clock: Clock,
    kind: Kind,
    start: f64,
}

impl Drop for Span {
    fn drop(&mut self) {
        self.clock.record(self.kind, self.start);
    }
}

struct TimedModel {
    inner: Arc<dyn ChatModel>,
    clock: Clock,
}

#[async_trait]
impl ChatModel for TimedModel {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, baton_llm::Error>>, baton_llm::Error> {
        let span = Span {
            clock: self.clock.clone(),
            kind: Kind::Model,
            start: self.clock.now(),
        };
        let s = self.inner.stream(req).await?;
        Ok(s.map(move |c| {
            let _ = &span;
            c
        })
        .boxed())
    }

    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, baton_llm::Error> {
        let _span = Span {
            clock: self.clock.clone(),
            kind: Kind::Model,
            start: self.clock.now(),
        };
        self.inner.complete(req).await
    }

    fn capabilities(&self) -> baton_llm::Capabilities {
        self.inner.capabilities()
    }
}

struct TimedModels {
    inner: Arc<dyn ModelResolver>,
    clock: Clock,
}

impl ModelResolver for TimedModels {
    fn resolve(
        &self,
        reference: &str,
        base_dir: &Path,
    ) -> Result<Arc<dyn ChatModel>, baton_llm::Error> {
        Ok(Arc::new(TimedModel {
            inner: self.inner.resolve(reference, base_dir)?,
            clock: self.clock.clone(),
        }))
    }

    fn check(&self, reference: &str) -> Result<(), baton_llm::Error> {
        self.inner.check(reference)
    }
}

struct TimedTool {
    inner: Arc<dyn Tool>,
    name: Arc<str>,
    clock: Clock,
    kind: Kind,
}

#[async_trait]
impl Tool for TimedTool {
    fn spec(&self) -> ToolSpec {
        self.inner.spec()
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, baton_tools::Error> {
        let span = Span {
            clock: self.clock.clone(),
            kind: self.kind,
            start: self.clock.now(),
        };
        let out = self.inner.call(args, ctx).await;
        if self.kind == Kind::Tool {
            let ms = (self.clock.now() - span.start) * 1000.0;
            self.clock
                .by_tool
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .push((self.name.clone(), ms));
        }
        out
    }
}

/// The length of the union of `spans` (each `(start, end)`), clipped to `[from, to]`.
fn union_len(mut spans: Vec<(f64, f64)>, from: f64, to: f64) -> f64 {
    spans.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut total = 0.0;
    let mut cur: Option<(f64, f64)> = None;
    for (s, e) in spans {
        let (s, e) = (s.max(from), e.min(to));
        if e <= s {
            continue;
        }
        cur = match cur {
            Some((cs, ce)) if s <= ce => Some((cs, ce.max(e))),
            Some((cs, ce)) => {
                total += ce - cs;
                Some((s, e))
            }
            None => Some((s, e)),
        };
    }
    if let Some((cs, ce)) = cur {
        total += ce - cs;
    }
    total
}

/// One run's split, in ms.
struct Split {
    wall: f64,
    model: f64,
    sandbox: f64,
    tools: f64,
    external: f64,
}

/// Splits the windows `[a, b]` (the run's time, a person's waits left out) by the spans:
/// model and sandbox time together are `external` (overlaps count once); other tools are
/// Baton's own work, reported apart.
fn split(windows: &[(f64, f64)], spans: &[(Kind, f64, f64)]) -> Split {
    let of = |keep: &dyn Fn(Kind) -> bool| -> f64 {
        windows
            .iter()
            .map(|&(a, b)| {
                let picked = spans
                    .iter()
                    .filter(|(kind, _, _)| keep(*kind))
                    .map(|&(_, s, e)| (s, e))
                    .collect();
                union_len(picked, a, b)
            })
            .sum::<f64>()
            * 1000.0
    };
    Split {
        wall: windows.iter().map(|(a, b)| b - a).sum::<f64>() * 1000.0,
        model: of(&|k| k == Kind::Model),
        sandbox: of(&|k| k == Kind::Sandbox),
        tools: of(&|k| k == Kind::Tool),
        external: of(&|k| k != Kind::Tool),
    }
}

/// The median of `v`, in any order.
fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    crate::cmd_bench::median(&v)
}

/// A fresh run log in `dir` with the host's tools and models, the sandbox tools and the models
/// timed on `clock` (scripted models answer each reply once per process: one per run).
fn control_in(dir: &TempDir, clock: &Clock) -> anyhow::Result<baton_control::Control> {
    let store = crate::wiring::open_sqlite(
        &dir.0.join("bench.db"),
        baton_store::sqlite::Durability::Process,
    )?;
    let memory = crate::wiring::memory_on(&store)?;
    let mut services = crate::wiring::services_with(&store, memory.clone())?;
    services.models = Arc::new(TimedModels {
        inner: services.models.clone(),
        clock: clock.clone(),
    });
    let mut tools = Registry::empty();
    for name in services.tools.names() {
        if let Some(t) = services.tools.get(name).cloned() {
            let kind = if SANDBOX_TOOLS.contains(&name) {
                Kind::Sandbox
            } else {
                Kind::Tool
            };
            tools.register(Arc::new(TimedTool {
                inner: t,
                name: name.into(),
                clock: clock.clone(),
                kind,
            }));
        }
    }
    services.tools = Arc::new(tools);
    let policy = crate::wiring::webhook_policy(&[])?;
    Ok(crate::wiring::control_with(&store, services, policy).with_memory(memory))
}

/// `baton bench app`: `runs` recorded runs of `workflow`, each then replayed.
pub async fn app(workflow: &Path, runs: usize) -> anyhow::Result<()> {
    if !workflow.is_file() {
        bail!(
            "bench app: no workflow file {} (pass --workflow FILE, e.g. examples/app-team.yaml)",
            workflow.display()
        );
    }
    let (mut walls, mut orch, mut pcts, mut models, mut sandboxes, mut replays) =
        (vec![], vec![], vec![], vec![], vec![], vec![]);
    let mut other_tools = vec![];
    // Per tool, the run with the median other-tools time's figures.
    let mut per_run_tools: Vec<Vec<ToolTime>> = vec![];
    let clock = Clock::new();
    let caller = baton_control::Caller::local();
    for _ in 0..runs {
        let dir = TempDir::new("app")?;
        let control = control_in(&dir, &clock)?;
        clock.take();
        let started = control
            .start_run(
                &caller,
                WorkflowSource::File(workflow.to_path_buf()),
                RunRequest::default(),
            )
            .await
            .map_err(|e| anyhow::anyhow!("bench app: {}: {e}", workflow.display()))?;
        let Some(drive) = started.drive else {
            bail!("bench app: run {} was started before", started.run);
        };
        let exec = control.executor(drive.program.clone());
        let mut from = clock.now();
        let mut windows = Vec::new();
        let mut st = exec.drive(drive.state, drive.inputs).await?;
        while st.status == RunStatus::Waiting {
            windows.push((from, clock.now()));
            let answered = control
                .answer(
                    &caller,
                    &started.run.to_string(),
                    Answer {
                        step: None,
                        decision: Decision::Approve,
                        comment: Some("bench".into()),
                        by: Some("bench".into()),
                        no_resume: false,
                    },
                )
                .await?;
            from = clock.now();
            let Answered::Drive(d) = answered else {
                bail!("bench app: the approval was queued, nothing drives the run");
            };
            st = exec.drive(d.state, d.inputs).await?;
        }
        windows.push((from, clock.now()));
        if st.status != RunStatus::Succeeded {
            bail!(
                "bench app: run {} ended {:?}: {}",
                started.run,
                st.status,
                st.error.as_deref().unwrap_or("(no error)")
            );
        }
        per_run_tools.push(clock.by_tool());
        let s = split(&windows, &clock.take());
        walls.push(s.wall);
        orch.push(s.wall - s.external);
        pcts.push(100.0 * (s.wall - s.external) / s.wall.max(f64::MIN_POSITIVE));
        models.push(s.model);
        sandboxes.push(s.sandbox);
        other_tools.push(s.tools);

        let t = Instant::now();
        let r = control
            .replay_run(&caller, &started.run.to_string(), ReplayMode::Recorded)
            .await?;
        replays.push(t.elapsed().as_secs_f64() * 1000.0);
        if r.verdict != baton_control::Verdict::Identical {
            bail!(
                "bench app: the replay of run {} diverged: {}",
                started.run,
                serde_json::to_string(&r.divergence)?
            );
        }
    }
    let n = walls.len();
    let tools_ms: serde_json::Map<String, Value> = {
        let mut order: Vec<usize> = (0..other_tools.len()).collect();
        order.sort_by(|&a, &b| other_tools[a].total_cmp(&other_tools[b]));
        order
            .get(order.len() / 2)
            .map(|&i| &per_run_tools[i])
            .into_iter()
            .flatten()
            .map(|(name, ms)| (name.to_string(), json!(round(*ms, 3))))
            .collect()
    };
    let rss = crate::cmd_bench::peak_rss_mb();
    outln!(
        "{}",
        json!({
            "framework": "baton", "workload": "app_team_run", "runs": n,
            "median_ms": round(median(walls.clone()), 2),
            "p95_ms": round(walls.iter().copied().fold(0.0, f64::max), 2),
            "throughput_per_s": round(1000.0 / median(walls).max(f64::MIN_POSITIVE), 3),
            "peak_rss_mb": round(rss, 1),
            "model_ms": round(median(models), 2),
            "sandbox_ms": round(median(sandboxes), 2),
        })
    );
    outln!(
        "{}",
        json!({
            "framework": "baton", "workload": "app_team_orchestration", "runs": n,
            "median_ms": round(median(orch.clone()), 3),
            "p95_ms": round(orch.iter().copied().fold(0.0, f64::max), 3),
            "throughput_per_s": 0.0,
            "peak_rss_mb": round(rss, 1),
            "percent_of_run": round(median(pcts), 3),
            "other_tools_ms": round(median(other_tools), 3),
            "tools_ms": tools_ms,
        })
    );
    report("app_team_replay", replays, None);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overlapping_spans_count_once_and_are_clipped() {
        let spans = vec![(1.0, 3.0), (2.0, 4.0), (6.0, 7.0), (9.0, 12.0)];
        assert_eq!(union_len(spans.clone(), 0.0, 20.0), 3.0 + 1.0 + 3.0);
        assert_eq!(union_len(spans, 2.5, 10.0), 1.5 + 1.0 + 1.0);
        assert_eq!(union_len(vec![], 0.0, 1.0), 0.0);
    }

    #[test]
    fn a_persons_wait_is_left_out_of_the_split() {
        let spans = vec![
            (Kind::Model, 0.1, 0.2),
            (Kind::Sandbox, 0.15, 0.5),
            (Kind::Sandbox, 0.9, 1.0),
            (Kind::Model, 2.1, 2.2),
            (Kind::Tool, 0.55, 0.6),
        ];
        // Waiting on a person from 0.6 to 2.0.
        let s = split(&[(0.0, 0.6), (2.0, 2.5)], &spans);
        assert!((s.wall - 1100.0).abs() < 1e-6);
        assert!((s.model - 200.0).abs() < 1e-6);
        assert!((s.sandbox - 350.0).abs() < 1e-6);
        assert!((s.external - 500.0).abs() < 1e-6);
        assert!((s.tools - 50.0).abs() < 1e-6);
    }
}
