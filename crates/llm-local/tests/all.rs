//! Tests with the real model. They need SmolLM2 installed (`make model`, or
//! `baton models pull smollm2`); without it they fail and say so.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_llm::{ChatModel, ChatRequest, Chunk, Message, ResponseFormat, StopReason, ToolSpec};
use baton_llm_local::{LocalConfig, LocalModel, LocalProvider, catalog};
use futures::StreamExt;
use serde_json::{Value, json};

/// Model tests run one at a time: they share the cores, and the cancellation test counts the
/// process's running generations.
static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// One inference thread: test runners (nextest) run several test processes on the same 2 cores,
/// and llama.cpp's OpenMP threads slow down badly when they outnumber the free cores.
fn test_config() -> LocalConfig {
    LocalConfig {
        threads: 1,
        ..LocalConfig::default()
    }
}

/// The installed SmolLM2, or a failure that says how to install it.
fn smollm2() -> Arc<LocalModel> {
    let dir = catalog::default_models_dir();
    let path = dir.join(catalog::SMOLLM2.file);
    assert!(
        path.is_file(),
        "the SmolLM2 model is not installed at {}: run `make model` (or `baton models pull smollm2`), \
         or point BATON_MODELS_DIR at a directory that holds it",
        path.display()
    );
    LocalProvider::new(test_config())
        .local_model("smollm2", Path::new("."))
        .unwrap_or_else(|e| panic!("cannot open local/smollm2: {e}"))
}

fn validator(schema: &Value) -> jsonschema::Validator {
    jsonschema::validator_for(schema).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn generates_text_with_usage() {
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let req = ChatRequest {
        model: "smollm2".into(),
        messages: vec![Message::user(
            "What is the capital of France? Answer in one short sentence.",
        )],
        max_tokens: Some(48),
        temperature: Some(0.0),
        ..Default::default()
    };
    let mut stream = model.stream(req).await.unwrap();
    let (mut texts, mut usage, mut done) = (Vec::new(), None, None);
    while let Some(chunk) = stream.next().await {
        match chunk.unwrap() {
            Chunk::Text(t) => texts.push(t),
            Chunk::Usage(u) => usage = Some(u),
            Chunk::Done(r) => done = Some(r),
            Chunk::ToolCall(c) => panic!("unexpected tool call {c:?}"),
        }
    }
    let text: String = texts.concat();
    assert!(
        texts.len() > 1,
        "the reply is streamed in pieces: {texts:?}"
    );
    assert!(text.contains("Paris"), "{text:?}");
    let usage = usage.unwrap();
    assert!(
        usage.prompt_tokens > 10 && usage.completion_tokens > 0,
        "{usage:?}"
    );
    assert!(usage.completion_tokens <= 48);
    assert!(matches!(
        done,
        Some(StopReason::EndTurn | StopReason::MaxTokens)
    ));
}

fn weather_tool() -> ToolSpec {
    ToolSpec {
        name: "get_weather".into(),
        description: "Get the current weather of a city.".into(),
        parameters: json!({
            "type": "object",
            "properties": {
                "city": { "type": "string", "maxLength": 40 },
                "unit": { "type": "string", "enum": ["celsius", "fahrenheit"] }
            },
            "required": ["city", "unit"],
            "additionalProperties": false
        }),
        effects: Default::default(),
    }
}

fn search_tool() -> ToolSpec {
    ToolSpec {
        name: "search_web".into(),
        description: "Search the web.".into(),
        parameters: json!({
            "type": "object",
            "properties": { "query": { "type": "string", "maxLength": 60 }, "limit": { "type": "integer", "minimum": 1, "maximum": 10 } },
            "required": ["query"],
            "additionalProperties": false
        }),
        effects: Default::default(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_calls_are_valid_under_constrained_decoding() {
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let tools = [weather_tool(), search_tool()];
    for (i, temperature) in [0.0f32, 0.8, 0.8, 1.0, 1.2].into_iter().enumerate() {
        let req = ChatRequest {
            model: "smollm2".into(),
            messages: vec![Message::user(
                "What is the weather like in Paris today, in celsius?",
            )],
            tools: tools.to_vec(),
            temperature: Some(temperature),
            max_tokens: Some(160),
            ..Default::default()
        };
        let resp = model
            .complete(req)
            .await
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        assert_eq!(resp.stop_reason, StopReason::ToolCalls, "run {i}: {resp:?}");
        assert_eq!(resp.tool_calls.len(), 1, "run {i}: {resp:?}");
        let call = &resp.tool_calls[0];
        let tool = tools
            .iter()
            .find(|t| t.name == call.name)
            .unwrap_or_else(|| panic!("unknown tool {}", call.name));
        let v = validator(&tool.parameters);
        assert!(
            v.is_valid(&call.arguments),
            "run {i}: {} does not match {}",
            call.arguments,
            tool.parameters
        );
        if temperature == 0.0 {
            assert_eq!(call.name, "get_weather", "{call:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_tool_result_the_model_may_answer() {
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let mut req = ChatRequest {
        model: "smollm2".into(),
        messages: vec![Message::user(
            "What is the weather like in Paris today, in celsius?",
        )],
        tools: vec![weather_tool()],
        temperature: Some(0.0),
        max_tokens: Some(160),
        ..Default::default()
    };
    let first = model.complete(req.clone()).await.unwrap();
    let call = first.tool_calls.first().cloned().unwrap();
    req.messages
        .push(Message::assistant("", vec![call.clone()]));
    req.messages.push(Message::tool(
        call.id.clone(),
        r#"{"temperature": 18, "sky": "sunny"}"#,
    ));
    let second = model.complete(req).await.unwrap();
    // Either a final answer (text) or another valid call: never free-form garbage.
    if second.tool_calls.is_empty() {
        assert!(!second.content.trim().is_empty(), "{second:?}");
        assert_eq!(second.stop_reason, StopReason::EndTurn);
    } else {
        assert!(validator(&weather_tool().parameters).is_valid(&second.tool_calls[0].arguments));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn structured_output_matches_its_schema_20_times_in_a_row() {
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": { "type": "string", "minLength": 1, "maxLength": 40 },
            "age": { "type": "integer", "minimum": 0, "maximum": 150 },
            "hobbies": { "type": "array", "items": { "type": "string", "maxLength": 30 }, "minItems": 1, "maxItems": 3 },
            "employed": { "type": "boolean" }
        },
        "required": ["name", "age", "hobbies", "employed"],
        "additionalProperties": false
    });
    let v = validator(&schema);
    let started = Instant::now();
    let mut outputs = Vec::new();
    for i in 0..20 {
        let req = ChatRequest {
            model: "smollm2".into(),
            messages: vec![Message::user(
                "Invent a person: their name, age, hobbies and whether they have a job.",
            )],
            response_format: Some(ResponseFormat::JsonSchema {
                name: "person".into(),
                schema: schema.clone(),
            }),
            // Sampling, so the 20 runs differ: the grammar, not luck, keeps them valid.
            temperature: Some(0.9),
            max_tokens: Some(200),
            ..Default::default()
        };
        let resp = model
            .complete(req)
            .await
            .unwrap_or_else(|e| panic!("run {i}: {e}"));
        let value: Value = serde_json::from_str(&resp.content)
            .unwrap_or_else(|e| panic!("run {i}: not JSON ({e}): {:?}", resp.content));
        assert!(
            v.is_valid(&value),
            "run {i}: {value} does not match the schema"
        );
        outputs.push(value);
    }
    outputs.sort_by_key(|v| v.to_string());
    outputs.dedup();
    eprintln!(
        "20/20 valid, {} distinct, in {:?}",
        outputs.len(),
        started.elapsed()
    );
    assert!(outputs.len() > 1, "sampling should vary the outputs");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dropping_the_stream_stops_generation() {
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let req = ChatRequest {
        model: "smollm2".into(),
        messages: vec![Message::user(
            "Write a very long story about a dragon, at least two thousand words.",
        )],
        max_tokens: Some(1500),
        temperature: Some(0.7),
        ..Default::default()
    };
    let mut stream = model.stream(req).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(stream.next().await, Some(Ok(Chunk::Text(_)))));
    }
    assert_eq!(baton_llm_local::engine::active_generations(), 1);
    drop(stream);
    let t = Instant::now();
    while baton_llm_local::engine::active_generations() > 0 {
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "generation went on after the stream was dropped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overlong_prompt_is_a_context_length_error() {
    let _serial = SERIAL.lock().await;
    smollm2();
    let model = LocalProvider::new(LocalConfig {
        context_size: 64,
        ..Default::default()
    })
    .local_model("smollm2", Path::new("."))
    .unwrap();
    let req = ChatRequest {
        model: "smollm2".into(),
        messages: vec![Message::user("word ".repeat(200))],
        ..Default::default()
    };
    let err = model.complete(req).await.unwrap_err();
    assert_eq!(err.kind(), "context_length", "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_that_is_not_gguf_fails_clearly() {
    let _serial = SERIAL.lock().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("broken.gguf");
    std::fs::write(&path, b"this is not a model").unwrap();
    let model = LocalProvider::new(LocalConfig::default())
        .local_model(path.to_str().unwrap(), Path::new("."))
        .unwrap();
    let err = model
        .complete(ChatRequest {
            messages: vec![Message::user("hi")],
            ..Default::default()
        })
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("broken.gguf") && msg.contains("not a GGUF file"),
        "{msg}"
    );
}

/// An agent's next turn repeats the whole conversation so far: what the last generation already
/// evaluated is taken from its cache and only the rest is evaluated; a prompt that starts
/// otherwise is evaluated whole. The answers are still the model's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_prompt_that_continues_the_last_one_reuses_its_evaluation() {
    use baton_llm_local::engine::GenParams;
    let _serial = SERIAL.lock().await;
    let model = smollm2();
    let loaded = model.loaded().await.unwrap();
    let params = GenParams {
        max_tokens: 16,
        temperature: 0.0,
        seed: 1,
        threads: 1,
        context_size: 2048,
        grammar: None,
        ignore_eos: false,
    };
    let msg = |role: &str, text: &str| (role.to_string(), text.to_string());
    let system = "You are a helpful assistant who answers in one short line. ".repeat(6);
    let mut chat = vec![msg("system", &system), msg("user", "Name three colours.")];
    let gen_ = |chat: &[(String, String)]| {
        let prompt = loaded.render(chat).unwrap();
        LocalModel::generate_blocking(&loaded, &prompt, &params).unwrap()
    };
    let (first, s1) = gen_(&chat);
    assert!(!first.trim().is_empty());

    chat.push(msg("assistant", &first));
    chat.push(msg("user", "And three animals?"));
    let (second, s2) = gen_(&chat);
    assert!(!second.trim().is_empty());
    assert!(
        s2.cached_tokens >= s1.prompt_tokens && s2.cached_tokens < s2.prompt_tokens,
        "first prompt {} tokens; second {} tokens, {} from the cache",
        s1.prompt_tokens,
        s2.prompt_tokens,
        s2.cached_tokens
    );

    // Another conversation: nothing in common, all evaluated.
    let french = "Answer in French, politely and briefly. ".repeat(6);
    let other = vec![msg("system", &french), msg("user", "Say hello.")];
    let (_, s3) = gen_(&other);
    assert_eq!(s3.cached_tokens, 0);
    // The same prompt again: all but its last token from the cache.
    let (again, s4) = gen_(&other);
    assert!(!again.trim().is_empty());
    assert_eq!(s4.cached_tokens, s4.prompt_tokens - 1);
}
