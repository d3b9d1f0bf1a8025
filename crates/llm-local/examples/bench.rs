//! `make llm-local-bench`: Baton's local inference against llama.cpp's own `llama-bench` on the
//! same model, threads and sizes.
//!
//! cargo run --release -p baton-llm-local --example bench -- [--threads N [--auto-threads]] [--model FILE]
//!     [--llama-bench-json FILE]... [--save FILE | --saved FILE]
//!
//! Each `--llama-bench-json` is the output of `llama-bench -p 512 -n 128 -o json`; with two (one
//! run before this bench, one after, as `make llm-local-bench` does) the reference is their mean,
//! so that a change of the machine's load during the run weighs on both sides alike.
//! `--save FILE` keeps this bench's pp and tg; `--saved FILE` compares those instead of measuring
//! again (make measures between the two llama-bench runs, then compares).

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
const REPS: usize = 5;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v[v.len() / 2]
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut threads = 2u32;
    let mut auto = false;
    let mut model_path: Option<PathBuf> = None;
    let mut references: Vec<PathBuf> = Vec::new();
    let mut save: Option<PathBuf> = None;
    let mut saved: Option<PathBuf> = None;
    let mut args = std::env::args().skip(1);
    while let Some(a) = args.next() {
        match a.as_str() {
            "--threads" => threads = args.next().context("--threads N")?.parse()?,
            "--auto-threads" => auto = true,
            "--model" => model_path = Some(args.next().context("--model FILE")?.into()),
            "--llama-bench-json" => {
                references.push(args.next().context("--llama-bench-json FILE")?.into())
            }
            "--save" => save = Some(args.next().context("--save FILE")?.into()),
            "--saved" => saved = Some(args.next().context("--saved FILE")?.into()),
            other => bail!("unknown argument {other}"),
        }
    }
    let ours = match &saved {
        Some(file) => {
            let v: Value = serde_json::from_str(&std::fs::read_to_string(file)?)
                .with_context(|| format!("cannot read {}", file.display()))?;
            if v["threads"].as_u64() != Some(u64::from(threads)) {
                bail!("{} was measured with other threads", file.display());
            }
            Figures {
                pp: v["pp"].as_f64().context("no pp")?,
                tg: v["tg"].as_f64().context("no tg")?,
                ttft_ms: v["ttft_ms"].as_f64().context("no ttft_ms")?,
                load_ms: v["load_ms"].as_f64().context("no load_ms")?,
            }
        }
        None => measure(threads, auto, model_path).await?,
    };
    if let Some(file) = &save {
        let v = serde_json::json!({
            "threads": threads, "pp": ours.pp, "tg": ours.tg,
            "ttft_ms": ours.ttft_ms, "load_ms": ours.load_ms,
        });
        std::fs::write(file, v.to_string())?;
    }

    if !references.is_empty() {
        let threads_n = threads;
        // (test, ours in tokens/s, n_prompt, n_gen, llama-bench's (avg, stddev, threads) per run)
        let mut rows = vec![(format!("pp{PP}"), ours.pp, PP as u64, 0, Vec::new())];
        rows.push((format!("tg{TG}"), ours.tg, 0, u64::from(TG), Vec::new()));
        for file in &references {
            let json: Value = serde_json::from_str(&std::fs::read_to_string(file)?)
                .with_context(|| format!("cannot read llama-bench output {}", file.display()))?;
            for (name, _, n_prompt, n_gen, runs) in &mut rows {
                let r = json
                    .as_array()
                    .and_then(|a| {
                        a.iter().find(|r| {
                            r["n_prompt"].as_u64() == Some(*n_prompt)
                                && r["n_gen"].as_u64() == Some(*n_gen)
                        })
                    })
                    .with_context(|| format!("no {name} row in {}", file.display()))?;
                let avg = r["avg_ts"]
                    .as_f64()
                    .context("llama-bench row without avg_ts")?;
                let sd = r["stddev_ts"].as_f64().unwrap_or(0.0);
                let threads = r["n_threads"].as_u64().unwrap_or(0);
                if threads != u64::from(threads_n) {
                    bail!(
                        "{} ran llama-bench with {threads} threads, this bench {threads_n}",
                        file.display()
                    );
                }
                runs.push((avg, sd, threads));
            }
        }
        println!();
        println!(
            "| test | baton tokens/s | llama-bench tokens/s (each run) | ratio to their mean |"
        );
        println!("|---|---|---|---|");
        for (name, baton, _, _, runs) in rows {
            let mean = runs.iter().map(|r| r.0).sum::<f64>() / runs.len() as f64;
            let each = runs
                .iter()
                .map(|(avg, sd, _)| format!("{avg:.1} ± {sd:.1}"))
                .collect::<Vec<_>>()
                .join(", ");
            println!(
                "| {name} | {baton:.1} | {each} | {:.0} % |",
                100.0 * baton / mean
            );
        }
        println!(
            "\nBaton: time to first token {:.1} ms, model load {:.1} ms",
            ours.ttft_ms, ours.load_ms
        );
    }
    Ok(())
}

/// Baton's figures: pp and tg in tokens/s, time to first token and model load in ms.
struct Figures {
    pp: f64,
    tg: f64,
    ttft_ms: f64,
    load_ms: f64,
}

/// Measures and prints Baton's figures.
/// With `auto`, each generation takes `threads::for_now(threads)`, as the provider does.
async fn measure(threads: u32, auto: bool, model_path: Option<PathBuf>) -> Result<Figures> {
    let picked = std::sync::Mutex::new(Vec::new());
    let threads_now = || {
        let n = if auto {
            baton_llm_local::threads::for_now(threads)
        } else {
            threads
        };
        if let Ok(mut p) = picked.lock() {
            p.push(n);
        }
        n as i32
    };
    let cfg = LocalConfig {
        threads,
        ..LocalConfig::default()
    };
    let name = match &model_path {
        Some(p) => p.display().to_string(),
        None => "smollm2".to_string(),
    };
    let model = LocalProvider::new(cfg.clone()).local_model(&name, Path::new("."))?;

    let load_before = loadavg();
    let t = Instant::now();
    let loaded = model.loaded().await?;
    let load_wall = t.elapsed();

    let params = |max_tokens: u32, temperature: f32, ignore_eos: bool| GenParams {
        max_tokens,
        temperature,
        seed: 42,
        threads: threads_now(),
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
    let mut setup = Vec::new();
    for _ in 0..=REPS {
        // Each repetition evaluates the whole prompt, not the last one's cache.
        loaded.forget_cache();
        let stats = engine::generate(&loaded, &tokens, &params(1, 0.0, true), &mut |_| true)?;
        let evaluated = stats.prompt_tokens - stats.cached_tokens;
        pp.push(evaluated as f64 / stats.prompt_eval_time.as_secs_f64());
        setup.push(ms(stats.prompt_time - stats.prompt_eval_time));
    }
    pp.remove(0); // warm-up
    setup.remove(0);
    let (pp, setup) = (median(pp), median(setup));

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
    let picked = picked.into_inner().unwrap_or_default();
    if auto {
        let two = picked.iter().filter(|&&n| n >= 2).count();
        println!(
            "threads: at most {threads}, chosen per generation: {} of {} with {threads}, the others fewer",
            two,
            picked.len()
        );
    } else {
        println!("threads: {threads}");
    }
    println!(
        "load average (1, 5, 15 min): {load_before} before, {} after",
        loadavg()
    );
    println!(
        "load time: {:.1} ms (llama.cpp load {:.1} ms)",
        ms(load_wall),
        ms(loaded.load_time)
    );
    println!("time to first token: {ttft:.1} ms (median of 5, chat prompt)");
    println!(
        "prompt processing pp{PP}: {pp:.1} tokens/s (evaluation; creating the context before it: {setup:.1} ms)"
    );
    println!(
        "generation tg{TG}: {tg:.1} tokens/s greedy, {tg_sampled:.1} tokens/s with chat sampling"
    );
    Ok(Figures {
        pp,
        tg,
        ttft_ms: ttft,
        load_ms: ms(load_wall),
    })
}

/// The first three fields of /proc/loadavg ("?" where it cannot be read).
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "?".into())
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
