//! How long one short query takes to embed (what `memory.recall` pays per call), and sentences
//! per second in batches of 32 (`baton bench embed` measures both against numpy):
//! `cargo run --release -p baton-embed --example query_latency [RUNS]`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Instant;

fn main() {
    let runs: usize = std::env::args()
        .nth(1)
        .and_then(|a| a.parse().ok())
        .unwrap_or(200);
    let model = baton_embed::Embedder::load_default().expect("model (make model-embed)");
    let mut times = Vec::with_capacity(runs);
    for i in 0..runs {
        let q = format!("what did run {i} learn about shared memory?");
        let t = Instant::now();
        let v = model.embed(&[q.as_str()]).unwrap();
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        assert_eq!(v[0].len(), model.dim());
    }
    let texts: Vec<String> = (0..256)
        .map(|i| format!("Sentence number {i} says something about agents sharing memory."))
        .collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let t = Instant::now();
    for batch in refs.chunks(32) {
        model.embed(batch).unwrap();
    }
    println!(
        "batches of 32: {:.0} sentences/s",
        refs.len() as f64 / t.elapsed().as_secs_f64()
    );
    times.sort_by(f64::total_cmp);
    println!(
        "query embedding over {runs} runs: p50 {:.2} ms, p95 {:.2} ms, min {:.2} ms",
        times[runs / 2],
        times[runs * 95 / 100],
        times[0]
    );
}
