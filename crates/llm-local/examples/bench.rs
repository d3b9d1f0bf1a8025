//! `make llm-local-bench`: Baton's local inference against llama.cpp's own `llama-bench` on the
//! same model, threads and sizes.
//!
//! cargo run --release -p baton-llm-local --example bench -- [--threads N] [--model FILE]
//!     [--llama-bench-json FILE]

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_llm::{ChatModel, ChatRequest, Chunk, Message};
use baton_llm_local::engine::{self, GenParams};
use baton_llm_local::{LocalConfig, LocalProvider};
use futures::StreamExt;
use serde_json::Value;

const PP: usize = 512;
const TG: u32 = 128;
const REPS: usize = 3;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut threads = 2u32;
    let mut model_path: Option<PathBuf> = None;
    let mut reference: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().context("--threads N")?.parse()?,
            "--model" => model_path = Some(args.next().context("--model FILE")?.into()),
            "--llama-bench-json" => {
                reference = Some(args.next().context("--llama-bench-json FILE")?.into())
            }
            other => bail!("unknown argument {other}"),
        }
    }
    let cfg = LocalConfig {
        threads,
        ..LocalConfig::default()
    };
    let name = match &model_path {
        Some(p) => p.display().to_string(),
        None => "smollm2".to_string(),
    };
    let model = LocalProvider::new(cfg.clone()).local_model(&name, Path::new("."))?;

    let t = Instant::now();
    let loaded = model.loaded().await?;
    let load_wall = t.elapsed();

    let params = |max_tokens: u32, temperature: f32, ignore_eos: bool| GenParams {
        max_tokens,
        temperature,
        seed: 42,
        threads: threads as i32,
        context_size: 4096,
        grammar: None,
        ignore_eos,
    };

    // Prompt processing: PP tokens in one batch, as llama-bench's pp512.
    let text =
        "The quick brown fox jumps over the lazy dog while the river keeps flowing. ".repeat(64);
    let mut tokens = loaded.tokenize(&text);
    if tokens.len() < PP {
        bail!("the benchmark prompt has only {} tokens", tokens.len());
    }
    tokens.truncate(PP);
    let mut pp = Vec::new();
    for _ in 0..=REPS {
        let stats = engine::generate(&loaded, &tokens, &params(1, 0.0, true), &mut |_| true)?;
        pp.push(PP as f64 / stats.prompt_time.as_secs_f64());
    }
    pp.remove(0); // warm-up
    let pp = median(pp);

    // Generation: TG tokens after a one-token prompt, as llama-bench's tg128 (which does no
    // sampling: greedy is the closest; the sampling chain of chat is reported beside it).
    let short = loaded.tokenize("Once upon a time");
    let mut tg = Vec::new();
    let mut tg_sampled = Vec::new();
    for _ in 0..REPS {
        let s = engine::generate(&loaded, &short, &params(TG, 0.0, true), &mut |_| true)?;
        tg.push(s.completion_tokens as f64 / s.gen_time.as_secs_f64());
        let s = engine::generate(&loaded, &short, &params(TG, 0.4, true), &mut |_| true)?;
        tg_sampled.push(s.completion_tokens as f64 / s.gen_time.as_secs_f64());
    }
    let (tg, tg_sampled) = (median(tg), median(tg_sampled));

    // Time to first token through the public streaming API, chat template included.
    let mut ttft = Vec::new();
    for _ in 0..5 {
        let req = ChatRequest {
            model: name.clone(),
            messages: vec![Message::user("Say hello to the new user of Baton.")],
            max_tokens: Some(8),
            temperature: Some(0.0),
            ..Default::default()
        };
        let t = Instant::now();
        let mut s = model.stream(req).await?;
        while let Some(c) = s.next().await {
            if let Chunk::Text(_) = c? {
                ttft.push(t.elapsed().as_secs_f64() * 1000.0);
                break;
            }
        }
    }
    let ttft = median(ttft);

    println!("model: {}", loaded.path.display());
    println!("threads: {threads}");
    println!(
        "load time: {:.1} ms (llama.cpp load {:.1} ms)",
        ms(load_wall),
        ms(loaded.load_time)
    );
    println!("time to first token: {ttft:.1} ms (median of 5, chat prompt)");
    println!("prompt processing pp{PP}: {pp:.1} tokens/s");
    println!(
        "generation tg{TG}: {tg:.1} tokens/s greedy, {tg_sampled:.1} tokens/s with chat sampling"
    );

    if let Some(file) = reference {
        let json: Value = serde_json::from_str(&std::fs::read_to_string(&file)?)
            .with_context(|| format!("cannot read llama-bench output {}", file.display()))?;
        let pick = |n_prompt: u64, n_gen: u64| {
            json.as_array()
                .and_then(|a| {
                    a.iter().find(|r| {
                        r["n_prompt"].as_u64() == Some(n_prompt)
                            && r["n_gen"].as_u64() == Some(n_gen)
                    })
                })
                .and_then(|r| r["avg_ts"].as_f64())
        };
        let ref_pp = pick(PP as u64, 0).context("no pp512 row in the llama-bench output")?;
        let ref_tg = pick(0, u64::from(TG)).context("no tg128 row in the llama-bench output")?;
        println!();
        println!("| test | baton tokens/s | llama.cpp tokens/s | ratio |");
        println!("|---|---|---|---|");
        println!(
            "| pp{PP} | {pp:.1} | {ref_pp:.1} | {:.0} % |",
            100.0 * pp / ref_pp
        );
        println!(
            "| tg{TG} | {tg:.1} | {ref_tg:.1} | {:.0} % |",
            100.0 * tg / ref_tg
        );
    }
    Ok(())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
