//! `make sandbox-bench`: cold start-to-exit latency (median of N) of `/bin/true` and
//! `python3 -c 'print(1)'` per tier against the bare command, then N concurrent runs.
//!
//! Usage: `sandbox_bench [RUNS] [CONCURRENT] [--json]`.

use baton_sandbox::Tier;

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let json = args.iter().any(|a| a == "--json");
    let nums: Vec<usize> = args
        .iter()
        .filter(|a| !a.starts_with("--"))
        .map(|a| a.parse())
        .collect::<Result<_, _>>()?;
    let runs = nums.first().copied().unwrap_or(100).max(1);
    let concurrent = nums.get(1).copied().unwrap_or(100);
    let report = baton_sandbox::bench::run(&Tier::ALL, runs, concurrent).await;
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        print!("{report}");
    }
    let ok = report
        .concurrency
        .as_ref()
        .is_none_or(|c| c.succeeded == c.runs);
    std::process::exit(if ok { 0 } else { 1 });
}
