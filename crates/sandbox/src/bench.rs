//! `baton sandbox bench`: cold start-to-exit latency per tier against the bare command, and
//! many concurrent sandboxed runs.
// The bare command is timed outside any sandbox, to compare against: a process of our own.
#![allow(clippy::disallowed_methods)]

use std::time::{Duration, Instant};

use serde::Serialize;

use crate::policy::{Policy, Tier};
use crate::{ExecRequest, open};

/// Latency of one command in one tier (or bare).
#[derive(Clone, Debug, Serialize)]
pub struct Latency {
    /// `bare` or a tier name.
    pub tier: String,
    pub command: String,
    pub runs: usize,
    pub median_ms: f64,
    pub p90_ms: f64,
    /// Median minus the bare median of the same command.
    pub overhead_ms: Option<f64>,
    /// Why the tier was not measured, when it was not.
    pub skipped: Option<String>,
}

/// The concurrency figure.
#[derive(Clone, Debug, Serialize)]
pub struct Concurrency {
    pub tier: Tier,
    pub runs: usize,
    pub succeeded: usize,
    pub failed: Vec<String>,
    pub wall_ms: f64,
}

#[derive(Clone, Debug, Serialize)]
pub struct Report {
    pub latency: Vec<Latency>,
    pub concurrency: Option<Concurrency>,
}

fn stats(mut v: Vec<Duration>) -> (f64, f64) {
    v.sort();
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    if v.is_empty() {
        return (0.0, 0.0);
    }
    (
        ms(v[v.len() / 2]),
        ms(v[(v.len() * 9 / 10).min(v.len() - 1)]),
    )
}

/// The executable the sandbox would run for `name` (its PATH, not the caller's), so bare and
/// sandboxed runs start the same binary.
fn resolve(name: &str) -> String {
    if name.contains('/') {
        return name.to_string();
    }
    let env = Policy::new(Tier::Process).env_for(&Default::default());
    env.get("PATH")
        .into_iter()
        .flat_map(|p| p.split(':'))
        .map(|d| format!("{d}/{name}"))
        .find(|p| std::path::Path::new(p).is_file())
        .unwrap_or_else(|| name.to_string())
}

fn bare(argv: &[&str], n: usize) -> Result<Vec<Duration>, String> {
    let mut out = Vec::with_capacity(n);
    let exe = resolve(argv[0]);
    for _ in 0..n {
        let t = Instant::now();
        let st = std::process::Command::new(&exe)
            .args(&argv[1..])
            .stdout(std::process::Stdio::null())
            .status()
            .map_err(|e| e.to_string())?;
        out.push(t.elapsed());
        if !st.success() {
            return Err(format!("{} failed bare", argv.join(" ")));
        }
    }
    Ok(out)
}

/// Measures `runs` cold runs of each command per tier, then `concurrent` simultaneous runs of
/// `/bin/true` in the process tier.
pub async fn run(tiers: &[Tier], runs: usize, concurrent: usize) -> Report {
    let commands: [&[&str]; 2] = [&["/bin/true"], &["python3", "-c", "print(1)"]];
    let mut latency = Vec::new();
    for cmd in commands {
        let name = cmd.join(" ");
        let row = |tier: String, runs, times: Result<Vec<Duration>, String>, bare: Option<f64>| {
            match times {
                Ok(v) => {
                    let (m, p) = stats(v);
                    Latency {
                        tier,
                        command: name.clone(),
                        runs,
                        median_ms: m,
                        p90_ms: p,
                        overhead_ms: bare.map(|b| m - b),
                        skipped: None,
                    }
                }
                Err(e) => Latency {
                    tier,
                    command: name.clone(),
                    runs: 0,
                    median_ms: 0.0,
                    p90_ms: 0.0,
                    overhead_ms: None,
                    skipped: Some(e),
                },
            }
        };
        let bare_row = row("bare".into(), runs, bare(cmd, runs), None);
        let bare_median = bare_row.skipped.is_none().then_some(bare_row.median_ms);
        latency.push(bare_row);
        for &tier in tiers {
            latency.push(row(
                tier.to_string(),
                runs,
                tier_times(tier, cmd, runs).await,
                bare_median,
            ));
        }
    }
    let concurrency = if concurrent > 0 && tiers.contains(&Tier::Process) {
        Some(concurrent_runs(Tier::Process, concurrent).await)
    } else {
        None
    };
    Report {
        latency,
        concurrency,
    }
}

/// `runs` sequential start-to-exit times of `cmd` in `tier`, or why they could not be taken.
async fn tier_times(tier: Tier, cmd: &[&str], runs: usize) -> Result<Vec<Duration>, String> {
    let sb = open(Policy::new(tier)).map_err(|e| e.to_string())?;
    let mut times = Vec::with_capacity(runs);
    for _ in 0..runs {
        let t = Instant::now();
        match sb.exec(ExecRequest::new(cmd.iter().copied())).await {
            Ok(o) if o.success() => times.push(t.elapsed()),
            Ok(o) => {
                return Err(format!(
                    "exit {:?}, stop {:?}: {}",
                    o.exit_code,
                    o.stop_reason,
                    o.stderr.trim()
                ));
            }
            Err(e) => return Err(e.to_string()),
        }
    }
    Ok(times)
}

/// Starts `n` runs of `/bin/true` at once and counts the successes.
pub async fn concurrent_runs(tier: Tier, n: usize) -> Concurrency {
    let start = Instant::now();
    let mut failed = Vec::new();
    let mut succeeded = 0;
    match open(Policy::new(tier)) {
        Err(e) => failed.push(e.to_string()),
        Ok(sb) => {
            let mut set = tokio::task::JoinSet::new();
            for _ in 0..n {
                let sb = sb.clone();
                set.spawn(async move { sb.exec(ExecRequest::new(["/bin/true"])).await });
            }
            while let Some(r) = set.join_next().await {
                match r {
                    Ok(Ok(o)) if o.success() => succeeded += 1,
                    Ok(Ok(o)) => {
                        failed.push(format!("exit {:?} stop {:?}", o.exit_code, o.stop_reason))
                    }
                    Ok(Err(e)) => failed.push(e.to_string()),
                    Err(e) => failed.push(e.to_string()),
                }
            }
        }
    }
    Concurrency {
        tier,
        runs: n,
        succeeded,
        failed,
        wall_ms: start.elapsed().as_secs_f64() * 1000.0,
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(
            f,
            "{:<10} {:<26} {:>6} {:>11} {:>9} {:>13}",
            "tier", "command", "runs", "median ms", "p90 ms", "overhead ms"
        )?;
        for l in &self.latency {
            match &l.skipped {
                Some(why) => writeln!(f, "{:<10} {:<26} skipped: {why}", l.tier, l.command)?,
                None => writeln!(
                    f,
                    "{:<10} {:<26} {:>6} {:>11.2} {:>9.2} {:>13}",
                    l.tier,
                    l.command,
                    l.runs,
                    l.median_ms,
                    l.p90_ms,
                    l.overhead_ms
                        .map(|o| format!("{o:+.2}"))
                        .unwrap_or_else(|| "-".into())
                )?,
            }
        }
        if let Some(c) = &self.concurrency {
            writeln!(
                f,
                "concurrent: {} runs of /bin/true in the {} tier: {} succeeded, {} failed, {:.0} ms wall",
                c.runs,
                c.tier,
                c.succeeded,
                c.failed.len(),
                c.wall_ms
            )?;
            for e in c.failed.iter().take(5) {
                writeln!(f, "  failure: {e}")?;
            }
        }
        Ok(())
    }
}
