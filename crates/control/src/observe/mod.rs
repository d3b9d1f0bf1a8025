//! Telemetry derived from the run events this process publishes: metrics folded as events
//! arrive, and (`trace`) one OpenTelemetry trace per run, built from the run's log when it ends.
//!
//! ```text
//!   executor ──publish(event)──► BusSink ──► bus (followers, SSE, WebSocket)
//!                                   └──────► Telemetry::record (program at hand: step kinds)
//!                                              ├─ counters and histograms (Snapshot, scraped)
//!                                              └─ on the event that ends a run: the whole log
//!                                                 ──► trace::spans ──► SpanSink (OTLP, if set)
//! ```
//!
//! Nothing here knows a wire format: a server renders a [`Snapshot`] as Prometheus text, and
//! the composition root decides where spans go (nowhere unless it is told to). Counters are
//! this process's; run counts by status come from the store at scrape time.

pub mod stats;
pub mod trace;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use baton_engine::Program;
use baton_store::RunStore;
use baton_types::{Event, EventRecord, Progress, RunId, StepPath, Usage};
use serde_json::Value;

pub use trace::{Span, SpanSink};

/// Upper bounds of the request and model latency histograms, in seconds.
pub const LATENCY_BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
    60.0,
];

/// Upper bounds of the step duration histogram, in seconds (steps wait for people and
/// sandboxes: longer than requests).
pub const STEP_BUCKETS: &[f64] = &[
    0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1.0, 5.0, 10.0, 30.0, 60.0, 300.0, 900.0, 3600.0,
];

/// The most label sets a family keeps for values that come from workflows and tools (model
/// references, sandbox tiers): past it, new ones are counted under `other`, so that a tenant
/// naming ever new models cannot grow `/metrics` without bound.
pub const MAX_SERIES: usize = 100;

/// The label value new series get once a family holds [`MAX_SERIES`].
pub const OTHER: &str = "other";

/// `key` if `map` has it or room for it, else `other(key)`.
fn bounded<K: Ord, V>(map: &BTreeMap<K, V>, key: K, other: impl FnOnce(K) -> K) -> K {
    if map.len() < MAX_SERIES || map.contains_key(&key) {
        key
    } else {
        other(key)
    }
}

/// A cumulative histogram over fixed bucket bounds.
#[derive(Clone, Debug)]
pub struct Histogram {
    pub bounds: &'static [f64],
    /// Observations at or below each bound (cumulative, as Prometheus exposes them).
    pub counts: Vec<u64>,
    pub count: u64,
    pub sum: f64,
}

impl Histogram {
    pub fn new(bounds: &'static [f64]) -> Self {
        Self {
            bounds,
            counts: vec![0; bounds.len()],
            count: 0,
            sum: 0.0,
        }
    }

    pub fn observe(&mut self, value: f64) {
        for (i, le) in self.bounds.iter().enumerate() {
            if value <= *le {
                self.counts[i] += 1;
            }
        }
        self.count += 1;
        self.sum += value;
    }
}

/// The model a reply came from: `provider` is the part of the reference before `/`
/// (`local/smollm2` -> `local`; `scripted` alone -> `scripted`).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ModelKey {
    pub provider: String,
    pub model: String,
}

impl ModelKey {
    pub fn of(reference: &str) -> Self {
        let provider = reference.split_once('/').map_or(reference, |(p, _)| p);
        Self {
            provider: provider.to_string(),
            model: reference.to_string(),
        }
    }
}

/// What a sandbox execution record (the output of `sandbox.exec` and `sandbox:` steps, the
/// record of a failed sandbox step) says about where it ran and why it stopped.
pub fn sandbox_execution(record: &Value) -> Option<(String, String)> {
    let tier = record.get("tier")?.as_str()?;
    let stop = record.get("stop_reason")?.as_str()?;
    // With the wall time, the three fields every execution record has.
    record.get("wall_time")?;
    Some((tier.to_string(), stop.to_string()))
}

/// Everything counted so far, for a scrape.
#[derive(Clone, Debug, Default)]
pub struct Snapshot {
    /// Step attempt durations by step kind and outcome (`succeeded`, `failed`).
    pub steps: BTreeMap<(String, &'static str), Histogram>,
    /// Time from a prompt being sent to the reply, by model.
    pub model_latency: BTreeMap<ModelKey, Histogram>,
    /// Tokens and cost by model.
    pub model_usage: BTreeMap<ModelKey, Usage>,
    /// Sandbox executions by tier and stop reason.
    pub sandbox: BTreeMap<(String, String), u64>,
    /// Outbound webhook delivery attempts by outcome (`succeeded`, `retrying`, `failed`).
    pub deliveries: BTreeMap<&'static str, u64>,
    /// Inbound hook requests by outcome (`accepted`, `refused`).
    pub inbound: BTreeMap<&'static str, u64>,
}

#[derive(Default)]
struct Folded {
    counted: Snapshot,
    /// Prompts sent and not answered yet: (run, step, turn) -> when.
    prompts: HashMap<(RunId, String, u32), i64>,
}

/// The metrics of the runs this process drives, and where their traces go.
pub struct Telemetry {
    folded: Mutex<Folded>,
    store: Arc<dyn RunStore>,
    spans: Option<Arc<dyn SpanSink>>,
}

impl Telemetry {
    pub fn new(store: Arc<dyn RunStore>) -> Self {
        Self {
            folded: Mutex::default(),
            store,
            spans: None,
        }
    }

    /// Each run's trace goes to `sink` when the run ends.
    pub fn with_spans(mut self, sink: Arc<dyn SpanSink>) -> Self {
        self.spans = Some(sink);
        self
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Folded> {
        self.folded.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Folds one event of a run driven by `program`; the event that ends the run sends its
    /// trace (built from its whole log, so a run resumed after a crash has all of it).
    pub fn record(&self, program: &Arc<Program>, ev: &EventRecord) {
        self.lock().fold(program, ev);
        if crate::follow::ends_run(&ev.event)
            && let Some(sink) = &self.spans
        {
            self.export_trace(program.clone(), sink.clone(), ev.run_id);
        }
    }

    fn export_trace(&self, program: Arc<Program>, sink: Arc<dyn SpanSink>, run: RunId) {
        let Ok(rt) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let store = self.store.clone();
        rt.spawn(async move {
            match trace_of(store.as_ref(), &program, run).await {
                Ok(spans) => sink.export(spans),
                Err(e) => {
                    tracing::warn!(run = %run, "no trace for the run: its log cannot be read: {e}")
                }
            }
        });
    }

    /// An outbound webhook delivery attempt ended with `outcome`.
    pub fn delivery(&self, outcome: &'static str) {
        *self.lock().counted.deliveries.entry(outcome).or_default() += 1;
    }

    /// An inbound hook request was accepted (it started a run) or refused.
    pub fn inbound(&self, accepted: bool) {
        let outcome = if accepted { "accepted" } else { "refused" };
        *self.lock().counted.inbound.entry(outcome).or_default() += 1;
    }

    /// An inbound hook request was refused by the hook's rate limit (before it was read).
    pub fn inbound_rate_limited(&self) {
        *self
            .lock()
            .counted
            .inbound
            .entry("rate_limited")
            .or_default() += 1;
    }

    /// Everything counted so far.
    pub fn snapshot(&self) -> Snapshot {
        self.lock().counted.clone()
    }
}

/// The spans of run `run` of `program`, from its log.
async fn trace_of(
    store: &dyn RunStore,
    program: &Program,
    run: RunId,
) -> baton_store::Result<Vec<Span>> {
    let events = store.events(run, 0).await?;
    let kind = |step: &str| step_kind(program, step);
    Ok(trace::spans(run, &program.doc.name, &events, &kind))
}

/// The kind of the step a step instance path (`lint[2]`) names.
fn step_kind(program: &Program, step: &str) -> Option<&'static str> {
    program
        .node_by_id(StepPath::parse(step).id())
        .map(|n| n.kind.as_str())
}

impl crate::Control {
    /// The trace of a run this process drove in the foreground (`baton run`), built from its
    /// log as a server builds the trace of its background runs.
    pub async fn run_trace(&self, run: RunId) -> crate::Result<Vec<Span>> {
        let rec = self
            .services
            .store
            .run(run)
            .await?
            .ok_or_else(|| crate::Error::not_found(format!("no run {run}")))?;
        let program = self.program(&rec)?;
        Ok(trace_of(self.services.store.as_ref(), &program, run).await?)
    }

    /// How many runs of every tenant have each status: for metrics, which show counts, never
    /// ids or tenants.
    pub async fn run_counts(&self) -> crate::Result<Vec<(baton_types::RunStatus, u64)>> {
        Ok(self.services.store.count_runs().await?)
    }
}

impl Folded {
    fn fold(&mut self, program: &Program, ev: &EventRecord) {
        let c = &mut self.counted;
        let kind = |step: &str| step_kind(program, step).unwrap_or("unknown").to_string();
        match &ev.event {
            Event::StepSucceeded {
                step,
                output,
                duration_ms,
                ..
            } => {
                let kind = kind(step);
                // A `sandbox:` step, or a tool step calling `sandbox.exec`: the output is the
                // execution record (an agent's output is its answer, never counted).
                if matches!(kind.as_str(), "sandbox" | "tool") {
                    count_sandbox(c, output);
                }
                step_time(c, kind, "succeeded", *duration_ms);
            }
            Event::StepFailed {
                step,
                error,
                duration_ms,
                ..
            } => {
                if let Some(record) = &error.sandbox {
                    count_sandbox(c, record);
                }
                step_time(c, kind(step), "failed", *duration_ms);
                self.prompts
                    .retain(|(r, s, _), _| *r != ev.run_id || s != step);
            }
            Event::ToolCallFinished { output, .. } => count_sandbox(c, output),
            Event::StepProgress { step, progress } => self.progress(ev, step, progress),
            e if crate::follow::ends_run(e) => self.prompts.retain(|(r, _, _), _| *r != ev.run_id),
            _ => {}
        }
    }

    fn progress(&mut self, ev: &EventRecord, step: &str, progress: &Progress) {
        match progress {
            Progress::Prompt { turn, .. } => {
                self.prompts
                    .insert((ev.run_id, step.to_string(), *turn), ev.at_ms);
            }
            Progress::ModelReply {
                model, turn, usage, ..
            } => {
                let c = &mut self.counted;
                let key = bounded(&c.model_usage, ModelKey::of(model), |k| ModelKey {
                    provider: k.provider,
                    model: OTHER.into(),
                });
                if let Some(sent) = self.prompts.remove(&(ev.run_id, step.to_string(), *turn)) {
                    let secs = (ev.at_ms - sent).max(0) as f64 / 1000.0;
                    c.model_latency
                        .entry(key.clone())
                        .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
                        .observe(secs);
                }
                c.model_usage.entry(key).or_default().add(usage);
            }
            _ => {}
        }
    }
}

fn step_time(c: &mut Snapshot, kind: String, outcome: &'static str, ms: u64) {
    c.steps
        .entry((kind, outcome))
        .or_insert_with(|| Histogram::new(STEP_BUCKETS))
        .observe(ms as f64 / 1000.0);
}

fn count_sandbox(c: &mut Snapshot, record: &Value) {
    if let Some(key) = sandbox_execution(record) {
        let key = bounded(&c.sandbox, key, |_| (OTHER.into(), OTHER.into()));
        *c.sandbox.entry(key).or_default() += 1;
    }
}

#[cfg(test)]
mod tests;
