//! A tenant's figures over a recent window (`GET /api/v1/stats?window=1h|24h`, the web app's
//! dashboard charts): runs by status and over time, success rate, step and model latency
//! percentiles, tokens and cost by model, sandbox executions by tier and stop reason, and
//! budget use. Folded from the store (the runs created in the window and their logs), so,
//! unlike `/metrics`, the figures are the tenant's own, whichever process drove the runs.

use std::collections::{BTreeMap, HashMap};

use baton_store::{ListQuery, RunRecord};
use baton_types::{Event, EventRecord, PauseReason, Progress, RunStatus, StepPath};
use serde::Serialize;
use serde_json::Value;

use super::{ModelKey, sandbox_execution};
use crate::{Caller, Control, Error, Permission, Result};

/// The most runs a window reads (newest first); past it, `truncated` says so.
pub const MAX_STATS_RUNS: u32 = 500;
/// Time buckets of the window's runs-over-time series.
pub const BUCKETS: i64 = 12;

/// The windows the figures are computed for: `1h` or `24h`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Window {
    Hour,
    Day,
}

impl Window {
    pub fn parse(s: &str) -> Result<Self> {
        match s {
            "1h" => Ok(Self::Hour),
            "24h" | "1d" => Ok(Self::Day),
            _ => Err(Error::invalid_field(
                "window",
                format!("'{s}' is not a window: use 1h or 24h"),
            )),
        }
    }

    pub fn ms(self) -> i64 {
        match self {
            Self::Hour => 3_600_000,
            Self::Day => 86_400_000,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Self::Hour => "1h",
            Self::Day => "24h",
        }
    }
}

/// Percentiles of a set of durations, in ms.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: u64,
    pub p95_ms: u64,
    pub max_ms: u64,
}

impl Latency {
    /// Nearest-rank percentiles of `values` (sorted here).
    pub fn of(mut values: Vec<u64>) -> Self {
        values.sort_unstable();
        let rank = |p: f64| -> u64 {
            if values.is_empty() {
                return 0;
            }
            let i = ((p * values.len() as f64).ceil() as usize).clamp(1, values.len()) - 1;
            values[i]
        };
        Latency {
            count: values.len() as u64,
            p50_ms: rank(0.5),
            p95_ms: rank(0.95),
            max_ms: values.last().copied().unwrap_or(0),
        }
    }
}

/// One slice of the window: the runs created in it, by status.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct TimeBucket {
    /// The slice's start (Unix ms); it lasts `bucket_ms`.
    pub start_ms: i64,
    pub by_status: BTreeMap<String, u64>,
}

/// One model's calls in the window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct ModelStats {
    /// The reference (`openai/gpt-4o-mini`).
    pub model: String,
    pub provider: String,
    /// From a prompt sent to its reply, per turn.
    pub latency: Latency,
    pub prompt_tokens: u64,
    pub completion_tokens: u64,
    pub cost_usd: f64,
}

/// Sandbox executions of one tier that stopped for one reason.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct SandboxCount {
    pub tier: String,
    /// `exited`, `time_limit`, `memory_limit`, `pids_limit`, `disk_full`, `signal`.
    pub stop: String,
    pub count: u64,
}

/// A run with a budget, and how much of it it used.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct RunBudget {
    pub run: String,
    pub workflow: String,
    pub tokens: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tokens_limit: Option<u64>,
    pub cost_usd: f64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cost_limit_usd: Option<f64>,
    /// The largest share of a limit used (1.0: all of it).
    pub used: f64,
}

/// Budget use in the window: spend, runs a limit stopped, the runs nearest their limits.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct BudgetUse {
    pub tokens: u64,
    pub cost_usd: f64,
    pub model_calls: u64,
    /// Runs a budget limit stopped (status `budget_exceeded` at the time).
    pub runs_stopped: u64,
    /// Runs whose workflow sets a token or cost limit, most used first (at most 10), against
    /// the limits the workflow set (not those raised on resume).
    pub runs: Vec<RunBudget>,
}

/// The figures of a window.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct Stats {
    /// `1h` or `24h`.
    pub window: String,
    pub since_ms: i64,
    pub until_ms: i64,
    pub bucket_ms: i64,
    /// Runs created in the window that were read.
    pub runs: u64,
    /// More runs were created in the window than are read ([`MAX_STATS_RUNS`], newest first).
    pub truncated: bool,
    pub by_status: BTreeMap<String, u64>,
    /// Succeeded among the finished (succeeded, failed, cancelled); none when none finished.
    pub success_rate: Option<f64>,
    /// The window's runs over time, oldest slice first.
    pub over_time: Vec<TimeBucket>,
    /// Step attempts (every kind), and by kind.
    pub steps: Latency,
    pub steps_by_kind: BTreeMap<String, Latency>,
    pub models: Vec<ModelStats>,
    pub sandbox: Vec<SandboxCount>,
    pub budget: BudgetUse,
}

/// What the fold gathers before percentiles are taken.
#[derive(Default)]
struct Acc {
    steps: Vec<u64>,
    steps_by_kind: BTreeMap<String, Vec<u64>>,
    model_latency: BTreeMap<ModelKey, Vec<u64>>,
    models: BTreeMap<ModelKey, ModelStats>,
    sandbox: BTreeMap<(String, String), u64>,
    budget: BudgetUse,
}

impl Acc {
    /// Folds one run's log; `kind` names the kind of a step id.
    fn run(
        &mut self,
        rec: &RunRecord,
        events: &[EventRecord],
        kind: &dyn Fn(&str) -> String,
        budget: Option<&baton_types::Budget>,
    ) {
        let mut prompts: HashMap<(String, u32), i64> = HashMap::new();
        let (mut tokens, mut cost) = (0u64, 0f64);
        for ev in events {
            match &ev.event {
                Event::StepSucceeded {
                    step,
                    output,
                    duration_ms,
                    ..
                } => {
                    let k = kind(step);
                    if matches!(k.as_str(), "sandbox" | "tool") {
                        self.sandbox_record(output);
                    }
                    self.step(k, *duration_ms);
                }
                Event::StepFailed {
                    step,
                    error,
                    duration_ms,
                    ..
                } => {
                    if let Some(record) = &error.sandbox {
                        self.sandbox_record(record);
                    }
                    self.step(kind(step), *duration_ms);
                }
                Event::ToolCallFinished { output, .. } => self.sandbox_record(output),
                Event::StepProgress {
                    step,
                    progress: Progress::Prompt { turn, .. },
                } => {
                    prompts.insert((step.clone(), *turn), ev.at_ms);
                }
                Event::StepProgress {
                    step,
                    progress:
                        Progress::ModelReply {
                            model, turn, usage, ..
                        },
                } => {
                    let key = ModelKey::of(model);
                    if let Some(sent) = prompts.remove(&(step.clone(), *turn)) {
                        self.model_latency
                            .entry(key.clone())
                            .or_default()
                            .push((ev.at_ms - sent).max(0) as u64);
                    }
                    let m = self
                        .models
                        .entry(key.clone())
                        .or_insert_with(|| ModelStats {
                            model: key.model.clone(),
                            provider: key.provider.clone(),
                            ..Default::default()
                        });
                    m.prompt_tokens += usage.prompt_tokens;
                    m.completion_tokens += usage.completion_tokens;
                    m.cost_usd += usage.cost_usd;
                    tokens += usage.total();
                    cost += usage.cost_usd;
                    self.budget.model_calls += 1;
                }
                Event::Paused {
                    pause: PauseReason::Budget(_),
                } => self.budget.runs_stopped += 1,
                _ => {}
            }
        }
        self.budget.tokens += tokens;
        self.budget.cost_usd += cost;
        if let Some(b) = budget.filter(|b| b.tokens.is_some() || b.cost_usd.is_some()) {
            let share = |used: f64, limit: Option<f64>| {
                limit.filter(|l| *l > 0.0).map_or(0.0, |l| used / l)
            };
            let used =
                share(tokens as f64, b.tokens.map(|t| t as f64)).max(share(cost, b.cost_usd));
            self.budget.runs.push(RunBudget {
                run: rec.id.to_string(),
                workflow: rec.workflow_name.clone(),
                tokens,
                tokens_limit: b.tokens,
                cost_usd: cost,
                cost_limit_usd: b.cost_usd,
                used,
            });
        }
    }

    fn step(&mut self, kind: String, ms: u64) {
        self.steps.push(ms);
        self.steps_by_kind.entry(kind).or_default().push(ms);
    }

    fn sandbox_record(&mut self, record: &Value) {
        if let Some(key) = sandbox_execution(record) {
            *self.sandbox.entry(key).or_default() += 1;
        }
    }

    fn finish(mut self, stats: &mut Stats) {
        stats.steps = Latency::of(std::mem::take(&mut self.steps));
        stats.steps_by_kind = self
            .steps_by_kind
            .into_iter()
            .map(|(k, v)| (k, Latency::of(v)))
            .collect();
        stats.models = self
            .models
            .into_iter()
            .map(|(k, mut m)| {
                m.latency = Latency::of(self.model_latency.remove(&k).unwrap_or_default());
                m
            })
            .collect();
        stats.sandbox = self
            .sandbox
            .into_iter()
            .map(|((tier, stop), count)| SandboxCount { tier, stop, count })
            .collect();
        self.budget.runs.sort_by(|a, b| b.used.total_cmp(&a.used));
        self.budget.runs.truncate(10);
        stats.budget = self.budget;
    }
}

/// The runs' counts by status, the success rate and the over-time series.
fn count_runs(stats: &mut Stats, runs: &[RunRecord]) {
    stats.runs = runs.len() as u64;
    stats.over_time = (0..BUCKETS)
        .map(|i| TimeBucket {
            start_ms: stats.since_ms + i * stats.bucket_ms,
            by_status: BTreeMap::new(),
        })
        .collect();
    for r in runs {
        let status = r.status.to_string();
        *stats.by_status.entry(status.clone()).or_default() += 1;
        let i = ((r.created_at_ms - stats.since_ms) / stats.bucket_ms.max(1)).clamp(0, BUCKETS - 1);
        if let Some(b) = stats.over_time.get_mut(i as usize) {
            *b.by_status.entry(status).or_default() += 1;
        }
    }
    let n = |s: RunStatus| stats.by_status.get(&s.to_string()).copied().unwrap_or(0);
    let (ok, failed, cancelled) = (
        n(RunStatus::Succeeded),
        n(RunStatus::Failed),
        n(RunStatus::Cancelled),
    );
    let finished = ok + failed + cancelled;
    stats.success_rate = (finished > 0).then(|| ok as f64 / finished as f64);
}

impl Control {
    /// The caller's tenant's figures over the last `window` (a runner's: its own runs').
    pub async fn stats(&self, caller: &Caller, window: Window) -> Result<Stats> {
        caller.check(Permission::Read)?;
        let until_ms = baton_store::now_ms();
        let since_ms = until_ms - window.ms();
        let store = &self.services.store;
        let mut runs = store
            .list_runs(
                &caller.tenant,
                ListQuery {
                    limit: Some(MAX_STATS_RUNS + 1),
                    since_ms: Some(since_ms),
                    started_by: caller.own_runs_only().then(|| caller.key_id.clone()),
                    ..Default::default()
                },
            )
            .await?;
        let truncated = runs.len() > MAX_STATS_RUNS as usize;
        runs.truncate(MAX_STATS_RUNS as usize);
        let mut stats = Stats {
            window: window.name().into(),
            since_ms,
            until_ms,
            bucket_ms: window.ms() / BUCKETS,
            truncated,
            ..Default::default()
        };
        count_runs(&mut stats, &runs);
        let mut acc = Acc::default();
        for rec in &runs {
            let events = store.events(rec.id, 0).await?;
            // A run whose stored workflow no longer loads still counts, its steps as `unknown`.
            let doc = crate::runs::stored_doc(rec).ok();
            let kinds: HashMap<String, &'static str> = doc
                .as_ref()
                .map(baton_types::graph::Graph::from_doc)
                .map(|g| g.nodes.into_iter().map(|n| (n.id, n.kind.name())).collect())
                .unwrap_or_default();
            let kind = |step: &str| {
                kinds
                    .get(StepPath::parse(step).id())
                    .copied()
                    .unwrap_or("unknown")
                    .to_string()
            };
            acc.run(
                rec,
                &events,
                &kind,
                doc.as_ref().and_then(|d| d.budget.as_ref()),
            );
        }
        acc.finish(&mut stats);
        Ok(stats)
    }
}

#[cfg(test)]
#[path = "stats_tests.rs"]
mod tests;
