//! `baton bench`: Baton's side of the peer benchmarks (`../shared/peer-bench/`).
//!
//! Same workloads, shapes, fake model and JSON line as the peers' scripts, so `make bench` can
//! print the ratios:
//! `{"framework", "workload", "runs", "median_ms", "p95_ms", "throughput_per_s", "peak_rss_mb"}`.
//!
//! - `w1` `chain10`: a workflow of 10 sequential agent steps; the fake model answers at once.
//! - `w2` `fanout8`: a `parallel` step of 8 agent branches, then a join agent step.
//! - `w3` `concurrent{N}x10x50ms`: N runs of the chain at once, each a tokio task on the
//!   multi-thread runtime; every model call first sleeps 50 ms.
//! - `w4` `chain10_sqlite`: the chain on the SQLite run log in a temp dir (every event logged,
//!   a checkpoint after every step) with the default durability (WAL, synchronous=NORMAL);
//!   `w4full` (or `w4 --durability power`) is `chain10_sqlite_full` (synchronous=FULL).
//! - `w5` `cold_start_one_step`: this binary, spawned as `baton run` on a one-step workflow
//!   with a fresh `--db` in a temp dir; the median of `--cold-runs` runs.
//!
//! In-memory workloads (w1-w3) use the in-memory store; `--memory-log` says what it keeps
//! (default `events`: every event of the run log, no state snapshots, as durare's in-memory
//! provider keeps every step's result).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use baton_engine::bench::{self, Bench, chain_doc, fanout_doc};
use baton_store::memory::MemoryStore;
use baton_store::sqlite::{Durability, SqliteStore};
use baton_types::WorkflowDoc;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cmd_run::DurabilityArg;

const FRAMEWORK: &str = "baton";

#[derive(Args, Debug)]
pub struct BenchArgs {
    /// Workloads: w1 (chain10), w2 (fanout8), w3 (concurrent), w4 (chain10_sqlite),
    /// w4full (chain10_sqlite_full), w5 (cold start), team (message_delivery: a direct message
    /// sent and taken by its receiver's next turn; broadcast100: a broadcast taken by 100
    /// subscribers, one run per 10 of `--runs`), embed (team memory: MiniLM throughput, recall
    /// over 10,000 memories; needs `make model-embed`), app (a recorded app-team run with
    /// real tools and sandbox: its orchestration overhead and its replay; needs --workflow).
    /// Default: w1 w2 w3 w4.
    pub workloads: Vec<String>,
    /// Timed runs per workload (w1, w2, w4).
    #[arg(long, default_value_t = 200)]
    pub runs: usize,
    /// Untimed runs before the timed ones.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Concurrent runs in w3.
    #[arg(long, default_value_t = 1000)]
    pub concurrency: usize,
    /// Durability of the SQLite run log in w4 (`power` names the workload chain10_sqlite_full).
    #[arg(long, value_enum, default_value_t = DurabilityArg::Process)]
    pub durability: DurabilityArg,
    /// What the in-memory store keeps in w1-w3 (other than `events`, the workload name says it).
    #[arg(long, value_enum, default_value_t = MemoryLog::Events)]
    pub memory_log: MemoryLog,
    /// Timed process starts in w5.
    #[arg(long, default_value_t = 20)]
    pub cold_runs: usize,
    /// Instead of workloads: serve the floor of the HTTP benchmark (`bench/http_bench.py`), a
    /// bare axum route answering every GET with this file's bytes as JSON, on
    /// `--floor-addr`, until stopped.
    #[arg(long, value_name = "FILE")]
    pub http_floor: Option<std::path::PathBuf>,
    #[arg(long, default_value = "127.0.0.1:0")]
    pub floor_addr: std::net::SocketAddr,
    /// The workflow of the `app` workload (e.g. examples/app-team.yaml, with
    /// `BATON_MODEL=scripted/app-todo`).
    #[arg(long, value_name = "FILE")]
    pub workflow: Option<PathBuf>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum MemoryLog {
    /// Every event is kept (the run can be rebuilt from them); no state snapshots.
    Events,
    /// Every event, plus a snapshot of the run state after every step (as on SQLite).
    Checkpoints,
    /// Events are counted, not kept; no snapshots: the engine alone.
    None,
}

impl MemoryLog {
    fn suffix(self) -> &'static str {
        match self {
            MemoryLog::Events => "",
            MemoryLog::Checkpoints => "_memcp",
            MemoryLog::None => "_nolog",
        }
    }
}

pub async fn run(args: BenchArgs) -> anyhow::Result<i32> {
    let workloads: Vec<String> = if args.workloads.is_empty() {
        ["w1", "w2", "w3", "w4"].map(String::from).to_vec()
    } else {
        args.workloads.clone()
    };
    if let Some(file) = &args.http_floor {
        return http_floor(file, args.floor_addr).await;
    }
    if args.runs == 0 || args.concurrency == 0 || args.cold_runs == 0 {
        bail!("--runs, --concurrency and --cold-runs must be at least 1");
    }
    for w in &workloads {
        match w.as_str() {
            "w1" => {
                let b = in_memory(chain_doc(10, "fake/echo")?, args.memory_log)?;
                let t = bench::timed(&b, args.runs, args.warmup, 10).await?;
                report(&format!("chain10{}", args.memory_log.suffix()), t, None);
            }
            "w2" => {
                let b = in_memory(fanout_doc(8)?, args.memory_log)?;
                let t = bench::timed(&b, args.runs, args.warmup, 9).await?;
                report(&format!("fanout8{}", args.memory_log.suffix()), t, None);
            }
            "w3" => w3(&args).await?,
            "w4" => w4(&args, args.durability.into()).await?,
            "w4full" => w4(&args, Durability::Power).await?,
            "w5" => w5(&args).await?,
            "team" => {
                let n = args.runs;
                let t = baton_engine::bench_team::message_delivery(n).await?;
                report("message_delivery", t, None);
                let t = baton_engine::bench_team::broadcast_100(n.div_ceil(10)).await?;
                report("broadcast100", t, None);
            }
            "embed" => crate::cmd_bench_embed::embed(args.runs).await?,
            "app" => {
                let Some(file) = &args.workflow else {
                    bail!("the app workload needs --workflow FILE (e.g. examples/app-team.yaml)");
                };
                crate::cmd_bench_app::app(file, args.runs).await?
            }
            other => bail!("unknown workload '{other}' (w1 w2 w3 w4 w4full w5 team embed app)"),
        }
    }
    Ok(0)
}

/// A workload on the in-memory store, keeping what `log` says.
fn in_memory(doc: WorkflowDoc, log: MemoryLog) -> anyhow::Result<Bench> {
    let store = MemoryStore::new().keep_events(log != MemoryLog::None);
    Ok(Bench::new(
        doc,
        Arc::new(store),
        log == MemoryLog::Checkpoints,
    )?)
}

async fn w3(args: &BenchArgs) -> anyhow::Result<()> {
    let b = Arc::new(in_memory(chain_doc(10, "fake/slow50")?, args.memory_log)?);
    let (times, wall) = bench::concurrent(b, args.concurrency, 10).await?;
    report(
        &format!(
            "concurrent{}x10x50ms{}",
            args.concurrency,
            args.memory_log.suffix()
        ),
        times,
        Some(wall),
    );
    Ok(())
}

async fn w4(args: &BenchArgs, durability: Durability) -> anyhow::Result<()> {
    let dir = TempDir::new("w4")?;
    let store = SqliteStore::open(&dir.0.join("baton.db"), durability)?;
    let b = Bench::new(chain_doc(10, "fake/echo")?, Arc::new(store), true)?;
    let t = bench::timed(&b, args.runs, args.warmup, 10).await?;
    let name = match durability {
        Durability::Process => "chain10_sqlite",
        Durability::Power => "chain10_sqlite_full",
    };
    report(name, t, None);
    Ok(())
}

const COLD_WORKFLOW: &str = "version: 1
name: one
agents:
  a:
    model: scripted/one
steps:
  - id: n0
    agent: a
    prompt: step0
";

const COLD_REPLIES: &str = "replies:
  - text: \"ok:step0\"
    repeat: true
";

/// The one process the CLI starts itself: `baton bench w5` measures Baton's own cold start, so
/// it runs its own binary, exactly as a user would (everything else starts processes through
/// baton-sandbox; clippy.toml enforces it).
#[allow(clippy::disallowed_methods)]
fn self_command(exe: &std::path::Path) -> tokio::process::Command {
    tokio::process::Command::new(exe)
}

async fn w5(args: &BenchArgs) -> anyhow::Result<()> {
    let exe = std::env::current_exe().context("finding the baton binary")?;
    let dir = TempDir::new("w5")?;
    let file = dir.0.join("one.yaml");
    std::fs::write(&file, COLD_WORKFLOW)?;
    std::fs::create_dir_all(dir.0.join("scripted"))?;
    std::fs::write(dir.0.join("scripted/one.yaml"), COLD_REPLIES)?;
    let mut times = Vec::with_capacity(args.cold_runs);
    for i in 0..(args.warmup + args.cold_runs) {
        let db = dir.0.join(format!("run{i}")).join("baton.db");
        let t0 = Instant::now();
        let out = self_command(&exe)
            .arg("run")
            .arg(&file)
            .arg("--db")
            .arg(&db)
            .env_remove("BATON_DB")
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .output()
            .await
            .context("starting baton run")?;
        let ms = t0.elapsed().as_secs_f64() * 1000.0;
        if !out.status.success() {
            bail!(
                "baton run exited with {}: {}",
                out.status,
                String::from_utf8_lossy(&out.stderr).trim()
            );
        }
        if i >= args.warmup {
            times.push(ms);
        }
    }
    report("cold_start_one_step", times, None);
    Ok(())
}

/// A folder under the system temp dir, removed when dropped.
pub(crate) struct TempDir(pub(crate) PathBuf);

impl TempDir {
    pub(crate) fn new(tag: &str) -> anyhow::Result<TempDir> {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let p =
            std::env::temp_dir().join(format!("baton-bench-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(TempDir(p))
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(crate) fn peak_rss_mb() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("VmHWM:"))
        .and_then(|l| l.split_whitespace().nth(1))
        .and_then(|kb| kb.parse::<f64>().ok())
        .map_or(0.0, |kb| kb / 1024.0)
}

pub(crate) fn round(x: f64, d: i32) -> f64 {
    let p = 10f64.powi(d);
    (x * p).round() / p
}

/// The median of `sorted` (ascending); 0 for none.
pub(crate) fn median(sorted: &[f64]) -> f64 {
    let n = sorted.len();
    match n {
        0 => 0.0,
        _ if n % 2 == 1 => sorted[n / 2],
        _ => (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0,
    }
}

/// Prints the peers' JSON line (same keys, same order, same rounding).
pub(crate) fn report(workload: &str, mut times_ms: Vec<f64>, wall_s: Option<f64>) {
    if times_ms.is_empty() {
        return;
    }
    times_ms.sort_by(f64::total_cmp);
    let n = times_ms.len();
    let median = median(&times_ms);
    let p95 = times_ms[((0.95 * (n - 1) as f64) as usize).min(n - 1)];
    let thr = match wall_s {
        Some(w) => n as f64 / w,
        None => 1000.0 / median,
    };
    outln!(
        "{{\"framework\": {}, \"workload\": {}, \"runs\": {}, \"median_ms\": {}, \"p95_ms\": {}, \"throughput_per_s\": {}, \"peak_rss_mb\": {}}}",
        Value::from(FRAMEWORK),
        Value::from(workload),
        n,
        Value::from(round(median, 4)),
        Value::from(round(p95, 4)),
        Value::from(round(thr, 2)),
        Value::from(round(peak_rss_mb(), 1)),
    );
}

/// The HTTP benchmark's floor: what axum alone costs to answer the same bytes.
async fn http_floor(file: &std::path::Path, addr: std::net::SocketAddr) -> anyhow::Result<i32> {
    let body = bytes::Bytes::from(std::fs::read(file)?);
    let app = axum::Router::new().fallback(move || {
        let body = body.clone();
        async move {
            (
                [(axum::http::header::CONTENT_TYPE, "application/json")],
                body,
            )
        }
    });
    let listener = tokio::net::TcpListener::bind(addr).await?;
    errln!("floor listening on http://{}", listener.local_addr()?);
    axum::serve(listener, app).await?;
    Ok(0)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn sqlite_workload_runs_its_shape() {
        let b = in_memory(fanout_doc(8).unwrap(), MemoryLog::None).unwrap();
        assert_eq!(b.run_once().await.unwrap(), 9);
        let dir = TempDir::new("test").unwrap();
        let store = SqliteStore::open(&dir.0.join("b.db"), Durability::Process).unwrap();
        let b = Bench::new(chain_doc(10, "fake/echo").unwrap(), Arc::new(store), true).unwrap();
        assert_eq!(bench::timed(&b, 3, 1, 10).await.unwrap().len(), 3);
    }
}
