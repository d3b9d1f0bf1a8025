//! `baton bench embed`: the team-memory figures, as JSON lines like the other workloads.
//!
//! - `embed_batch32`: MiniLM sentence embeddings, 256 sentences in batches of 32 (the same
//!   sentences `crates/embed/bench/reference.py bench` embeds with numpy, so `make bench` can
//!   put the two side by side); `throughput_per_s` is sentences per second.
//! - `recall_10000`: `memory.recall`'s work (embed the query, bring the index up to date from
//!   SQLite, search) over 10,000 stored memories, one query at a time.
//! - `search_10000`: the cosine top-5 alone over the same 10,000 vectors.
//!
//! The 10,000 memories are pseudo-random unit vectors written straight to the store (embedding
//! 10,000 texts would only time the model again); the queries are real sentences.

use std::sync::Arc;
use std::time::Instant;

use anyhow::Context;
use baton_embed::Embedder;
use baton_memory::{Embeddings, Memory};
use baton_store::sqlite::{Durability, SqliteStore};
use baton_store::{NewSemanticMemory, TeamMemory};
use baton_types::TenantId;

use crate::cmd_bench::{TempDir, report};

const SENTENCES: usize = 256;
const BATCH: usize = 32;
const ENTRIES: usize = 10_000;

/// The sentences the numpy reference embeds too.
fn sentence(i: usize) -> String {
    format!("Sentence number {i} says something about agents sharing memory.")
}

/// A deterministic pseudo-random vector (xorshift), not normalised: the index normalises.
fn random_vector(seed: u64, dim: usize) -> Vec<f32> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..dim)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            (x >> 40) as f32 / (1u64 << 23) as f32 - 1.0
        })
        .collect()
}

pub async fn embed(runs: usize) -> anyhow::Result<()> {
    let dir = baton_embed::installed_model_dir()?;
    let model = Arc::new(
        tokio::task::spawn_blocking(move || Embedder::load(&dir))
            .await?
            .context("loading the embedding model")?,
    );
    let texts: Vec<String> = (0..SENTENCES).map(sentence).collect();
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    model.embed(&refs[..BATCH])?; // warm-up
    let mut times = Vec::new();
    let start = Instant::now();
    for batch in refs.chunks(BATCH) {
        let t = Instant::now();
        model.embed(batch)?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    let wall = start.elapsed().as_secs_f64();
    // throughput_per_s: sentences per second (the median and p95 are per batch of 32).
    report_rate("embed_batch32", times, SENTENCES as f64 / wall);
    recall(model, runs).await
}

fn report_rate(workload: &str, times: Vec<f64>, per_s: f64) {
    let n = times.len() as f64;
    // `report` derives throughput from the wall time: give it the one that yields `per_s`.
    report(workload, times, Some(n / per_s));
}

async fn recall(model: Arc<Embedder>, runs: usize) -> anyhow::Result<()> {
    let tmp = TempDir::new("embed")?;
    let store = Arc::new(SqliteStore::open(
        &tmp.0.join("baton.db"),
        Durability::Process,
    )?);
    let tenant = TenantId::default();
    let ns = baton_memory::workflow_namespace("bench");
    for i in 0..ENTRIES {
        store
            .remember(NewSemanticMemory {
                model: baton_memory::LOCAL_MODEL.into(),
                tenant: tenant.clone(),
                namespace: ns.clone(),
                id: format!("m{i}"),
                text: sentence(i),
                metadata: serde_json::json!({}),
                vector: random_vector(i as u64, model.dim()),
                agent: None,
                run_id: None,
                call_key: None,
                created_ms: 0,
            })
            .await?;
    }
    let memory = Memory::new(store, Arc::new(Embeddings::given(model.clone())));
    let queries: Vec<String> = (0..runs)
        .map(|i| format!("what did run {i} learn about shared memory?"))
        .collect();
    // The first recall reads the 10,000 rows into the index: untimed, like a warm process.
    memory.recall(&tenant, &ns, &queries[0], 5).await?;
    let mut times = Vec::new();
    for q in &queries {
        let t = Instant::now();
        let hits = memory.recall(&tenant, &ns, q, 5).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
        anyhow::ensure!(hits.len() == 5, "recall found {} of 5", hits.len());
    }
    report(&format!("recall_{ENTRIES}"), times, None);
    let vector = random_vector(u64::MAX, model.dim());
    let mut times = Vec::new();
    for _ in 0..runs {
        let t = Instant::now();
        memory.search(&tenant, &ns, &vector, 5).await?;
        times.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    report(&format!("search_{ENTRIES}"), times, None);
    Ok(())
}
