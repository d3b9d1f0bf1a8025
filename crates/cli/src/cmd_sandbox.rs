//! `baton sandbox exec|doctor|bench` and `baton scan PATH`.

use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use baton_sandbox::policy::{parse_cpus, parse_duration, parse_pids, parse_size};
use baton_sandbox::scan::{self, Options, Report};
use baton_sandbox::{ExecOutput, ExecRequest, Policy, ScanAction, Tier};
use clap::{Args, Subcommand};

#[derive(Subcommand)]
#[allow(clippy::large_enum_variant)] // parsed once per process
pub enum SandboxCmd {
    /// Run a command in a sandbox: `baton sandbox exec [flags] -- CMD ARGS...`.
    ///
    /// The command's stdout and stderr are passed through; a report (tier, why it stopped,
    /// time, memory, what was enforced) follows on stderr. The exit status is the command's
    /// (128 + N when signal N ended it).
    Exec(ExecArgs),
    /// Which sandbox tiers work on this host, and why the others do not.
    Doctor {
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Cold start-to-exit latency per tier against the bare command, and concurrent runs.
    Bench(BenchArgs),
}

#[derive(Args)]
pub struct ExecArgs {
    /// A policy file (JSON or YAML); the flags below override its fields.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// process, oci, gvisor, microvm or docker. An unavailable tier is an error, never a fallback.
    #[arg(long, value_name = "TIER")]
    tier: Option<String>,
    /// CPUs (fractions allowed), e.g. 0.5.
    #[arg(long, value_name = "N")]
    cpu: Option<String>,
    /// Memory limit, e.g. 256M.
    #[arg(long, value_name = "SIZE")]
    memory: Option<String>,
    /// Most processes and threads at once.
    #[arg(long, value_name = "N")]
    pids: Option<String>,
    /// Size of the workspace and of /tmp, e.g. 100M.
    #[arg(long, value_name = "SIZE")]
    disk: Option<String>,
    /// Wall-clock limit, e.g. 10s.
    #[arg(long, value_name = "DURATION")]
    time: Option<String>,
    /// none, loopback or allow:host[,host...].
    #[arg(long, value_name = "MODE")]
    net: Option<String>,
    /// A host directory to use as the workspace (/work) instead of a fresh tmpfs.
    #[arg(long, value_name = "DIR")]
    workdir: Option<PathBuf>,
    /// Extra environment variables inside (repeatable).
    #[arg(long = "env", value_name = "KEY=VALUE")]
    env: Vec<String>,
    /// Scan the workdir and inline code (`python3 -c ...`) first; blocks per the policy.
    #[arg(long)]
    scan: bool,
    /// Print the result as JSON on stdout (the command's output is inside it).
    #[arg(long)]
    json: bool,
    /// The command and its arguments, after `--`.
    #[arg(last = true, required = true, value_name = "CMD")]
    command: Vec<String>,
}

#[derive(Args)]
pub struct BenchArgs {
    /// Runs per measurement (the median is reported).
    #[arg(long, default_value_t = 100)]
    runs: usize,
    /// Concurrent runs of /bin/true in the process tier (0 to skip).
    #[arg(long, default_value_t = 100)]
    concurrent: usize,
    /// Tiers to measure (default: all).
    #[arg(long, value_name = "TIER")]
    tier: Vec<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
pub struct ScanArgs {
    /// A file or directory.
    path: PathBuf,
    /// A policy file: its `scan` severities decide what blocks, its `advisories` list is used.
    #[arg(long, value_name = "FILE")]
    policy: Option<PathBuf>,
    /// An advisory list (JSON) to check requirements.txt and package.json against.
    #[arg(long, value_name = "FILE")]
    advisories: Option<PathBuf>,
    /// Built-in rules only (do not run Bandit or Semgrep even when installed).
    #[arg(long)]
    no_external: bool,
    #[arg(long)]
    json: bool,
}

pub async fn sandbox(cmd: SandboxCmd) -> Result<i32> {
    match cmd {
        SandboxCmd::Exec(args) => exec(args).await,
        SandboxCmd::Doctor { json } => doctor(json).await,
        SandboxCmd::Bench(args) => bench(args).await,
    }
}

fn build_policy(a: &ExecArgs) -> Result<Policy> {
    let mut p = match &a.policy {
        Some(f) => Policy::from_file(f)?,
        None => Policy::new(Tier::Process),
    };
    if let Some(t) = &a.tier {
        p.tier = t.parse()?;
    }
    if let Some(v) = &a.cpu {
        p.limits.cpus = parse_cpus(v)?;
    }
    if let Some(v) = &a.memory {
        p.limits.memory_bytes = parse_size(v)?;
    }
    if let Some(v) = &a.pids {
        p.limits.pids = parse_pids(v)?;
    }
    if let Some(v) = &a.disk {
        p.limits.disk_bytes = parse_size(v)?;
    }
    if let Some(v) = &a.time {
        p.limits.time = parse_duration(v)?;
    }
    if let Some(v) = &a.net {
        p.net = v.parse()?;
    }
    p.validate()?;
    Ok(p)
}

async fn exec(a: ExecArgs) -> Result<i32> {
    let policy = build_policy(&a)?;
    let mut env = BTreeMap::new();
    for kv in &a.env {
        let Some((k, v)) = kv.split_once('=') else {
            bail!("--env expects KEY=VALUE, got '{kv}'")
        };
        env.insert(k.to_string(), v.to_string());
    }
    let workdir = match &a.workdir {
        Some(d) => {
            Some(std::fs::canonicalize(d).with_context(|| format!("--workdir {}", d.display()))?)
        }
        None => None,
    };
    if a.scan {
        let mut report = match &workdir {
            Some(d) => scan::scan_path(
                d,
                &Options {
                    external: true,
                    advisories: policy.advisories.clone(),
                },
            )?,
            None => Report::default(),
        };
        match scan::check(&policy, &BTreeMap::new(), &a.command) {
            Ok(r) => report.findings.extend(r.findings),
            Err(e) => {
                errln!("{e}");
                return Ok(2);
            }
        }
        let d = report.decide(&policy);
        for f in &d.warnings {
            errln!("scan warning: {f}");
        }
        if !d.blocked.is_empty() {
            for f in &d.blocked {
                errln!("scan blocked: {f}");
            }
            errln!(
                "not run: {} finding(s) the policy blocks on",
                d.blocked.len()
            );
            return Ok(2);
        }
    }
    let sb = baton_sandbox::open(policy)?;
    let req = ExecRequest {
        argv: a.command.clone(),
        env,
        stdin: Vec::new(),
        workdir,
        files: BTreeMap::new(),
    };
    let out = sb.exec(req).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&out)?);
    } else {
        // The command's own output, byte for byte; a reader that went away stops it quietly.
        let mut so = std::io::stdout();
        let _ = so
            .write_all(out.stdout.as_bytes())
            .and_then(|()| so.flush());
        let mut se = std::io::stderr();
        let _ = se.write_all(out.stderr.as_bytes());
        errln!("{}", report(&out).trim_end_matches('\n'));
    }
    Ok(status_of(&out))
}

/// The exit status `baton sandbox exec` returns for a result.
pub fn status_of(out: &ExecOutput) -> i32 {
    match (out.exit_code, out.signal) {
        (Some(c), _) => c,
        (None, Some(s)) => 128 + s,
        (None, None) => 1,
    }
}

fn mib(b: u64) -> String {
    format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
}

/// The human-readable summary printed after a run.
pub fn report(o: &ExecOutput) -> String {
    let mut s = String::from("\n── baton sandbox ──\n");
    let ended = match (o.exit_code, o.signal) {
        (Some(c), _) => format!("exit code {c}"),
        (None, Some(sig)) => format!("killed by signal {sig}"),
        _ => "no status".into(),
    };
    s.push_str(&format!(
        "tier {}  ·  stopped: {}  ·  {ended}\n",
        o.tier,
        o.stop_reason.as_str()
    ));
    if !o.limits_hit.is_empty() {
        let hit: Vec<&str> = o.limits_hit.iter().map(|r| r.as_str()).collect();
        s.push_str(&format!("limits hit: {}\n", hit.join(", ")));
    }
    s.push_str(&format!(
        "wall {:.1} ms  ·  cpu {}  ·  peak memory {}\n",
        o.wall_time.as_secs_f64() * 1000.0,
        o.cpu_time
            .map(|c| format!("{:.1} ms", c.as_secs_f64() * 1000.0))
            .unwrap_or_else(|| "n/a".into()),
        o.peak_memory_bytes.map(mib).unwrap_or_else(|| "n/a".into())
    ));
    if o.stdout_truncated || o.stderr_truncated {
        s.push_str(&format!(
            "output truncated: stdout {}, stderr {}\n",
            o.stdout_truncated, o.stderr_truncated
        ));
    }
    for a in &o.network {
        s.push_str(&format!(
            "network: {} {}:{} {}\n",
            a.method,
            a.host,
            a.port,
            if a.allowed { "allowed" } else { "refused" }
        ));
    }
    s.push_str("enforced:\n");
    for e in &o.enforced {
        s.push_str(&format!("  {e}\n"));
    }
    s
}

async fn doctor(json: bool) -> Result<i32> {
    let r = baton_sandbox::doctor().await;
    if json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
        return Ok(0);
    }
    outln!(
        "kernel {}  ·  root: {}  ·  landlock ABI: {}",
        r.kernel,
        r.root,
        r.landlock_abi
            .map(|v| v.to_string())
            .unwrap_or_else(|| "none".into())
    );
    outln!("cgroups: {}", r.cgroups);
    for t in &r.tiers {
        outln!(
            "{:<8} {:<6} {}",
            t.tier.as_str(),
            if t.works { "works" } else { "no" },
            t.detail
        );
    }
    Ok(0)
}

async fn bench(a: BenchArgs) -> Result<i32> {
    let tiers: Vec<Tier> = if a.tier.is_empty() {
        Tier::ALL.to_vec()
    } else {
        a.tier
            .iter()
            .map(|t| t.parse::<Tier>())
            .collect::<Result<_, _>>()?
    };
    if a.runs == 0 {
        bail!("--runs must be at least 1");
    }
    let r = baton_sandbox::bench::run(&tiers, a.runs, a.concurrent).await;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&r)?);
    } else {
        outln!("{}", r.to_string().trim_end_matches('\n'));
    }
    let failed = r
        .concurrency
        .as_ref()
        .is_some_and(|c| c.succeeded != c.runs);
    Ok(if failed { 1 } else { 0 })
}

/// `baton scan PATH`: exit 0 when nothing blocks, 2 when the policy blocks on a finding.
pub async fn scan(a: ScanArgs) -> Result<i32> {
    let policy = match &a.policy {
        Some(f) => Policy::from_file(f)?,
        None => Policy::new(Tier::Process),
    };
    let advisories = a.advisories.clone().or(policy.advisories.clone());
    let path = a.path.clone();
    let opts = Options {
        external: !a.no_external,
        advisories,
    };
    let report = tokio::task::spawn_blocking(move || scan::scan_path(&path, &opts)).await??;
    let d = report.decide(&policy);
    if a.json {
        let v = serde_json::json!({"report": report, "blocked": d.blocked.len(), "warnings": d.warnings.len()});
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for f in &report.findings {
            let action = match policy.scan_action(f.severity.as_str()) {
                ScanAction::Block => "BLOCK",
                ScanAction::Warn => "warn ",
                ScanAction::Off => "off  ",
            };
            outln!("{action} {f}");
        }
        outln!(
            "{} file(s) scanned with {}; {} finding(s): {} blocking, {} warning(s)",
            report.files_scanned,
            report.tools.join(", "),
            report.findings.len(),
            d.blocked.len(),
            d.warnings.len()
        );
        for s in &report.skipped {
            outln!("not run: {s}");
        }
    }
    Ok(if d.blocked.is_empty() { 0 } else { 2 })
}
