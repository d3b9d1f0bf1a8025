//! A harness for profilers on the engine's hot path, without the CLI or llama.cpp:
//!
//!     cargo build --release -p baton-engine --example hotpath
//!     valgrind --tool=callgrind target/release/examples/hotpath chain 2000
//!
//! Workloads: `chain` (chain10), `fanout` (fanout8), `concurrent` (N runs of the chain with a
//! 50 ms model), each on the in-memory store keeping every event, and `sqlite` (chain10 on the
//! SQLite run log, synchronous=NORMAL, a checkpoint after every step). Prints the median per run.
//! The figures of record come from `baton bench` (`make bench`), next to the peers.

use std::sync::Arc;

use baton_engine::bench::{self, Bench, chain_doc, fanout_doc};
use baton_store::memory::MemoryStore;

// As the `baton` binary.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let workload = args.next().unwrap_or_else(|| "chain".into());
    let n: usize = args.next().map_or(Ok(1000), |s| s.parse())?;
    // HOTPATH_NOLOG=1: the store counts events without keeping them (the engine alone).
    let keep = std::env::var_os("HOTPATH_NOLOG").is_none();
    let store = Arc::new(MemoryStore::new().keep_events(keep));
    match workload.as_str() {
        "chain" | "fanout" => {
            let (doc, answers) = if workload == "chain" {
                (chain_doc(10, "fake/echo")?, 10)
            } else {
                (fanout_doc(8)?, 9)
            };
            let b = Bench::new(doc, store, false)?;
            let mut t = bench::timed(&b, n, 1, answers).await?;
            t.sort_by(f64::total_cmp);
            println!(
                "{workload}: median {:.2} µs over {n} runs",
                t[n / 2] * 1000.0
            );
        }
        "sqlite" => {
            let dir = tempfile::tempdir()?;
            let store = baton_store::sqlite::SqliteStore::open(
                &dir.path().join("baton.db"),
                baton_store::sqlite::Durability::Process,
            )?;
            let b = Bench::new(chain_doc(10, "fake/echo")?, Arc::new(store), true)?;
            let mut t = bench::timed(&b, n, 1, 10).await?;
            t.sort_by(f64::total_cmp);
            println!("sqlite: median {:.2} µs over {n} runs", t[n / 2] * 1000.0);
        }
        "concurrent" => {
            let b = Arc::new(Bench::new(chain_doc(10, "fake/slow50")?, store, false)?);
            if std::env::var_os("HOTPATH_SIZES").is_some() {
                let f = b.run_once();
                eprintln!("run_once future: {} bytes", std::mem::size_of_val(&f));
            }
            let (_, wall) = bench::concurrent(b, n, 10).await?;
            println!("concurrent{n}: wall {wall:.3} s");
        }
        other => {
            return Err(format!("unknown workload '{other}' (chain, fanout, concurrent)").into());
        }
    }
    Ok(())
}
