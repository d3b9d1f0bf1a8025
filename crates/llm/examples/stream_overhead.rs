//! Adapter overhead per streamed token, against the loopback cassette server.
//!
//! For each adapter, a response of `TOKENS` one-token events is streamed from the fake server
//! and parsed into chunks; the same bytes are also read raw (no decoding, no parsing) as the
//! transport baseline. The overhead is the difference: what decoding, parsing and handing out
//! chunks add per token; `pass` compares it with the target. Prints one JSON line:
//! `{"bench":"llm_stream_overhead", "results":[{"adapter", "us_per_token", "raw_us_per_token",
//! "overhead_us_per_token"}...], "target_us_per_token":20, "pass":bool}`.
//!
//! `cargo run --release -p baton-llm --example stream_overhead [tokens] [runs]`

#![allow(clippy::print_stdout)]

use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use baton_llm::http::{Endpoint, Timeouts};
use baton_llm::{ChatModel, ChatRequest, Chunk, Message, Secret};
use baton_test_support::cassette_server::{
    Cassette, CassetteServer, ExpectedRequest, RecordedResponse,
};
use futures::StreamExt;
use serde_json::json;

const TARGET_US: f64 = 20.0;

fn openai_chunks(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n)
        .map(|i| {
            let c = json!({"id": "chatcmpl-1", "object": "chat.completion.chunk", "created": 1, "model": "m",
                "choices": [{"index": 0, "delta": {"content": format!(" tok{i}")}, "finish_reason": null}]});
            format!("data: {c}\n\n")
        })
        .collect();
    v.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]})
    ));
    v.push(format!(
        "data: {}\n\n",
        json!({"id": "chatcmpl-1", "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": n}})
    ));
    v.push("data: [DONE]\n\n".into());
    v
}

fn anthropic_chunks(n: usize) -> Vec<String> {
    let ev = |name: &str, v: serde_json::Value| format!("event: {name}\ndata: {v}\n\n");
    let mut v = vec![
        ev(
            "message_start",
            json!({"type": "message_start", "message": {"usage": {"input_tokens": 5, "output_tokens": 1}}}),
        ),
        ev(
            "content_block_start",
            json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ),
    ];
    v.extend((0..n).map(|i| {
        ev(
            "content_block_delta",
            json!({"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": format!(" tok{i}")}}),
        )
    }));
    v.push(ev(
        "content_block_stop",
        json!({"type": "content_block_stop", "index": 0}),
    ));
    v.push(ev(
        "message_delta",
        json!({"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": {"output_tokens": n}}),
    ));
    v.push(ev("message_stop", json!({"type": "message_stop"})));
    v
}

fn ollama_chunks(n: usize) -> Vec<String> {
    let mut v: Vec<String> = (0..n)
        .map(|i| {
            format!(
                "{}\n",
                json!({"model": "m", "created_at": "2026-11-25T10:00:00Z", "message": {"role": "assistant", "content": format!(" tok{i}")}, "done": false})
            )
        })
        .collect();
    v.push(format!(
        "{}\n",
        json!({"model": "m", "message": {"role": "assistant", "content": ""}, "done": true, "done_reason": "stop", "prompt_eval_count": 5, "eval_count": n})
    ));
    v
}

fn cassette(path: &str, chunks: Vec<String>) -> Cassette {
    Cassette {
        description: "benchmark".into(),
        request: ExpectedRequest {
            method: "POST".into(),
            path: path.into(),
            ..Default::default()
        },
        response: RecordedResponse {
            chunks,
            ..Default::default()
        },
        faults: Default::default(),
    }
}

fn request() -> ChatRequest {
    ChatRequest {
        model: "m".into(),
        messages: vec![Message::user("count")],
        ..Default::default()
    }
}

/// Streams one answer through the adapter; returns the time and the number of text chunks.
async fn through_adapter(model: &dyn ChatModel) -> Result<(Duration, usize)> {
    let start = Instant::now();
    let mut s = model.stream(request()).await?;
    let mut n = 0;
    while let Some(c) = s.next().await {
        if let Chunk::Text(_) = c? {
            n += 1;
        }
    }
    Ok((start.elapsed(), n))
}

/// Reads the same answer as bytes, with no decoding: the transport's own cost.
async fn raw(client: &reqwest::Client, url: &str) -> Result<Duration> {
    let start = Instant::now();
    let resp = client.post(url).body("{}").send().await?;
    let mut body = resp.bytes_stream();
    let mut bytes = 0usize;
    while let Some(b) = body.next().await {
        bytes += b?.len();
    }
    if bytes == 0 {
        bail!("empty body");
    }
    Ok(start.elapsed())
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

async fn bench(
    name: &str,
    path: &str,
    chunks: Vec<String>,
    tokens: usize,
    runs: usize,
) -> Result<serde_json::Value> {
    let server = CassetteServer::start_repeating(cassette(path, chunks)).await?;
    let ep = Endpoint::new(name, server.url())
        .with_api_key(Secret::new("bench"))
        .with_timeouts(Timeouts {
            idle: Duration::from_secs(30),
            ..Timeouts::default()
        });
    let model: Box<dyn ChatModel> = match name {
        "openai" => Box::new(baton_llm::openai::OpenAi::new(
            ep,
            baton_llm::openai::Options {
                chat_path: path.into(),
                ..Default::default()
            },
        )?),
        "anthropic" => Box::new(baton_llm::anthropic::Anthropic::new(
            ep,
            Default::default(),
        )?),
        _ => Box::new(baton_llm::ollama::Ollama::new(ep, Default::default())?),
    };
    let client = reqwest::Client::builder().no_proxy().build()?;
    let url = format!("{}{path}", server.url());
    // Warm up connections and caches.
    through_adapter(model.as_ref()).await?;
    raw(&client, &url).await?;
    let mut adapter = Vec::new();
    let mut baseline = Vec::new();
    for _ in 0..runs {
        let (d, n) = through_adapter(model.as_ref()).await?;
        if n != tokens {
            bail!("{name}: {n} text chunks instead of {tokens}");
        }
        adapter.push(d);
        baseline.push(raw(&client, &url).await?);
    }
    let per = |d: Duration| d.as_secs_f64() * 1e6 / tokens as f64;
    let (a, b) = (per(median(adapter)), per(median(baseline)));
    Ok(json!({
        "adapter": name,
        "us_per_token": (a * 100.0).round() / 100.0,
        "raw_us_per_token": (b * 100.0).round() / 100.0,
        "overhead_us_per_token": ((a - b).max(0.0) * 100.0).round() / 100.0,
    }))
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() -> Result<()> {
    let mut args = std::env::args().skip(1);
    let tokens: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("tokens")?
        .unwrap_or(20_000);
    let runs: usize = args
        .next()
        .map(|a| a.parse())
        .transpose()
        .context("runs")?
        .unwrap_or(5)
        .max(1);
    let results = vec![
        bench(
            "openai",
            "/chat/completions",
            openai_chunks(tokens),
            tokens,
            runs,
        )
        .await?,
        bench(
            "anthropic",
            "/v1/messages",
            anthropic_chunks(tokens),
            tokens,
            runs,
        )
        .await?,
        bench("ollama", "/api/chat", ollama_chunks(tokens), tokens, runs).await?,
    ];
    let worst = results
        .iter()
        .filter_map(|r| r["overhead_us_per_token"].as_f64())
        .fold(0.0, f64::max);
    let line = json!({
        "bench": "llm_stream_overhead",
        "tokens": tokens,
        "runs": runs,
        "results": results,
        "target_us_per_token": TARGET_US,
        "pass": worst < TARGET_US,
    });
    println!("{line}");
    Ok(())
}
