//! Baton's `openai` adapter against a real third-party OpenAI-compatible server:
//! llama-cpp-python's (`python -m llama_cpp.server`) on the embedded SmolLM2 GGUF, started on a
//! free loopback port with an API key. `make test` installs it (`make llama-server-deps`, a
//! virtualenv under ~/.cache/baton) and sets `BATON_REQUIRE_LLAMA_SERVER=1`, which turns a
//! missing server into a failure; elsewhere the checks are skipped, loudly and counted.
//!
//! One server for all the checks, one thread, a few tokens per answer: the whole test takes
//! seconds once the server is up.

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_llm::config::{Config, register_providers_with};
use baton_llm::openai::{OpenAi, Options};
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Error, ModelResolver, Providers, StopReason, StructuredOutput,
    structured,
};
use serde_json::json;

use crate::common::*;
use crate::fallback::{ask, colour_request, colour_schema};
use crate::openai::tools;

/// The checks this file makes, for the skip count.
const CHECKS: [&str; 6] = [
    "chat",
    "streaming",
    "tool call",
    "structured output 3/3 through the fallback",
    "API key from the environment",
    "a refused json_schema is an invalid request, not retried",
];

const KEY: &str = "baton-test-key-7c1f";
const KEY_VAR: &str = "BATON_TEST_LLAMA_SERVER_KEY";

/// The server's Python: `BATON_LLAMA_SERVER_PYTHON`, else the virtualenv `make` installs.
fn python() -> PathBuf {
    if let Some(p) = std::env::var_os("BATON_LLAMA_SERVER_PYTHON").filter(|p| !p.is_empty()) {
        return PathBuf::from(p);
    }
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    home.join(".cache/baton/llama-server-venv/bin/python")
}

/// SmolLM2's GGUF, where `make model` puts it.
fn gguf() -> PathBuf {
    let dir = std::env::var_os("BATON_MODELS_DIR")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("BATON_HOME").map(|h| PathBuf::from(h).join("models")))
        .unwrap_or_else(|| {
            let data = std::env::var_os("XDG_DATA_HOME")
                .map(PathBuf::from)
                .unwrap_or_else(|| {
                    let home = std::env::var_os("HOME")
                        .map(PathBuf::from)
                        .unwrap_or_default();
                    home.join(".local/share")
                });
            data.join("baton/models")
        });
    dir.join("SmolLM2-135M-Instruct.Q4_1.gguf")
}

/// Why the server cannot run here, if it cannot.
fn missing() -> Option<String> {
    let py = python();
    if !py.exists() {
        return Some(format!(
            "{} does not exist (make llama-server-deps installs it)",
            py.display()
        ));
    }
    let probe = Command::new(&py)
        .args(["-c", "import llama_cpp.server"])
        .output();
    match probe {
        Ok(o) if o.status.success() => {}
        Ok(o) => {
            return Some(format!(
                "{} cannot import llama_cpp.server: {}",
                py.display(),
                String::from_utf8_lossy(&o.stderr).trim()
            ));
        }
        Err(e) => return Some(format!("cannot run {}: {e}", py.display())),
    }
    let model = gguf();
    (!model.exists()).then(|| format!("{} does not exist (make model)", model.display()))
}

/// The running server; killed when dropped.
struct LlamaServer {
    child: Child,
    url: String,
}

impl Drop for LlamaServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl LlamaServer {
    async fn start() -> LlamaServer {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = std::env::temp_dir().join(format!("baton-llama-server-{port}.log"));
        let child = Command::new(python())
            .args(["-m", "llama_cpp.server", "--model"])
            .arg(gguf())
            .args(["--host", "127.0.0.1", "--port", &port.to_string()])
            .args(["--api_key", KEY, "--model_alias", "smollm2"])
            .args([
                "--n_threads",
                "1",
                "--n_threads_batch",
                "1",
                "--n_ctx",
                "2048",
            ])
            .args(["--seed", "7", "--verbose", "false"])
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut server = LlamaServer {
            child,
            url: format!("http://127.0.0.1:{port}/v1"),
        };
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        loop {
            if let Some(status) = server.child.try_wait().unwrap() {
                panic!(
                    "llama_cpp.server exited ({status}): {}",
                    std::fs::read_to_string(&log).unwrap_or_default()
                );
            }
            let up = client
                .get(format!("{}/models", server.url))
                .bearer_auth(KEY)
                .send()
                .await
                .is_ok_and(|r| r.status().is_success());
            if up {
                return server;
            }
            assert!(
                Instant::now() < deadline,
                "llama_cpp.server did not answer within 120 s: {}",
                std::fs::read_to_string(&log).unwrap_or_default()
            );
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// An adapter on the server, structured output as `mode`.
    fn adapter(&self, mode: StructuredOutput) -> OpenAi {
        let ep = baton_llm::http::Endpoint::new("llamacpp", &self.url)
            .with_api_key(baton_llm::Secret::new(KEY))
            .with_timeouts(baton_llm::http::Timeouts {
                connect: Duration::from_secs(2),
                idle: Duration::from_secs(60),
                total: Some(Duration::from_secs(120)),
            });
        let opts = Options {
            structured_output: mode,
            ..Default::default()
        };
        OpenAi::new(ep, opts).unwrap().for_model("smollm2")
    }
}

#[tokio::test]
async fn the_openai_adapter_against_llama_cpp_python_server() {
    if let Some(why) = missing() {
        let required = std::env::var("BATON_REQUIRE_LLAMA_SERVER").is_ok_and(|v| v == "1");
        eprintln!(
            "SKIPPED {} checks against llama-cpp-python's server ({}): {why}",
            CHECKS.len(),
            CHECKS.join(", ")
        );
        assert!(
            !required,
            "BATON_REQUIRE_LLAMA_SERVER=1 and llama-cpp-python's server is missing: {why}"
        );
        return;
    }
    let server = LlamaServer::start().await;
    let started = Instant::now();

    // chat
    let m = server.adapter(StructuredOutput::Auto);
    let resp = m.complete(ask("Say hello.", 8)).await.unwrap();
    assert!(!resp.content.trim().is_empty(), "{resp:?}");

    // streaming: several text pieces, then usage and the end
    let (chunks, err) = run(&m, ask("Count from one to five.", 12)).await;
    assert!(err.is_none(), "{err:?}");
    let pieces = chunks
        .iter()
        .filter(|c| matches!(c, Chunk::Text(_)))
        .count();
    assert!(pieces >= 2, "the answer came in one piece: {chunks:?}");
    assert!(matches!(chunks.last(), Some(Chunk::Done(_))), "{chunks:?}");

    // a tool call (llama-cpp-python calls tools when told which one: tool_choice)
    let forced = OpenAi::new(
        baton_llm::http::Endpoint::new("llamacpp", &server.url)
            .with_api_key(baton_llm::Secret::new(KEY)),
        Options {
            request_hook: Some(Arc::new(|_, body| {
                body.insert(
                    "tool_choice".into(),
                    json!({"type": "function", "function": {"name": "get_weather"}}),
                );
            })),
            ..Default::default()
        },
    )
    .unwrap()
    .for_model("smollm2");
    let req = ChatRequest {
        tools: tools(),
        ..ask("What is the weather in Paris?", 24)
    };
    let (chunks, err) = run(&forced, req).await;
    assert!(err.is_none(), "{err:?}");
    let call = chunks
        .iter()
        .find_map(|c| match c {
            Chunk::ToolCall(c) => Some(c.clone()),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no tool call in {chunks:?}"));
    assert_eq!(call.name, "get_weather");
    assert!(call.arguments["city"].is_string(), "{call:?}");
    assert_eq!(chunks.last(), Some(&Chunk::Done(StopReason::ToolCalls)));

    // structured output: json_schema is refused (HTTP 500, a validation error), `auto` falls
    // back to json_object with the schema, and remembers it; 3 answers of 3 match the schema.
    let m = server.adapter(StructuredOutput::Auto);
    let mut valid = 0;
    for _ in 0..3 {
        let resp = m.complete(colour_request()).await.unwrap();
        if structured::validate(&colour_schema(), &resp.content).is_ok() {
            valid += 1;
        } else {
            eprintln!("not valid: {}", resp.content);
        }
    }
    assert_eq!(valid, 3, "structured output valid {valid} of 3");
    assert_eq!(
        m.learned_structured_output("smollm2"),
        Some(StructuredOutput::JsonObject)
    );

    // a fixed json_schema: the refusal is an invalid request naming the field, not retried
    let m = baton_llm::Retrying::new(
        server.adapter(StructuredOutput::JsonSchema),
        baton_llm::RetryPolicy::default(),
        "llamacpp/smollm2",
    );
    let at = Instant::now();
    let e = m.complete(colour_request()).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidRequest { field: Some(f), .. } if f.contains("response_format")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    assert!(at.elapsed() < Duration::from_millis(700), "it was retried");

    // the key from the environment, through the configuration
    let cfg = Config::from_toml(
        &format!(
            "[providers.llamacpp]\nkind = \"openai\"\nbase_url = \"{}\"\napi_key_env = \"{KEY_VAR}\"\napi_key_required = true\n",
            server.url
        ),
        None,
    )
    .unwrap();
    let with_key = |k: &str| {
        let key = k.to_string();
        move |name: &str| (name == KEY_VAR).then(|| key.clone())
    };
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &with_key(KEY)).unwrap();
    let m = p
        .resolve("llamacpp/smollm2", std::path::Path::new("."))
        .unwrap();
    assert!(!m.complete(ask("Hi.", 4)).await.unwrap().content.is_empty());
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &with_key("wrong-key")).unwrap();
    let m = p
        .resolve("llamacpp/smollm2", std::path::Path::new("."))
        .unwrap();
    let e = m.complete(ask("Hi.", 4)).await.unwrap_err();
    assert_eq!(e.kind(), "auth", "{e:?}");
    let mut p = Providers::default();
    register_providers_with(&cfg, &mut p, &|_: &str| None).unwrap();
    let e = p
        .resolve("llamacpp/smollm2", std::path::Path::new("."))
        .err()
        .unwrap();
    assert!(e.to_string().contains(KEY_VAR), "{e}");

    eprintln!(
        "llama-cpp-python server: {} checks passed in {:?}",
        CHECKS.len(),
        started.elapsed()
    );
}
