use std::sync::Arc;
use std::time::Duration;

use baton_llm::openai::{OpenAi, Options};
use baton_llm::pricing::Price;
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Error, Message, ResponseFormat, StopReason, StructuredOutput,
    ToolCall, ToolSpec, Usage,
};
use serde_json::json;

use crate::common::*;

fn adapter(server: &crate::cassette_server::CassetteServer, opts: Options) -> OpenAi {
    let ep = endpoint(server, "/v1", "openai").with_prices(prices(
        "gpt-4o-mini",
        Price {
            input: 0.15,
            output: 0.6,
            cache_read: Some(0.075),
            cache_write: None,
        },
    ));
    OpenAi::new(ep, opts).unwrap().for_model("gpt-4o-mini")
}

pub fn text_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Say hello to Baton."),
        ],
        temperature: Some(0.2),
        max_tokens: Some(64),
        ..Default::default()
    }
}

pub fn simple_request() -> ChatRequest {
    ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::user("hi")],
        ..Default::default()
    }
}

pub fn org_options() -> Options {
    Options {
        organization: Some("org-test".into()),
        project: Some("proj_test".into()),
        ..Default::default()
    }
}

pub fn tools() -> Vec<ToolSpec> {
    let params =
        json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]});
    vec![
        ToolSpec {
            name: "get_weather".into(),
            description: "Current weather in a city".into(),
            parameters: params.clone(),
            effects: Default::default(),
        },
        ToolSpec {
            name: "get_time".into(),
            description: "Local time in a city".into(),
            parameters: params,
            effects: Default::default(),
        },
    ]
}

pub fn requirements_schema() -> serde_json::Value {
    json!({"type": "object", "properties": {"requirements": {"type": "array", "items": {"type": "string"}}}, "required": ["requirements"], "additionalProperties": false})
}

#[tokio::test]
async fn streams_text_with_usage_and_cost() {
    let server = serve(&["openai/stream_text.json"]).await;
    let m = adapter(&server, org_options());
    let (chunks, err) = run(&m, text_request()).await;
    assert!(err.is_none(), "{err:?}");
    let cost = (21.0 * 0.15 + 4.0 * 0.6) / 1e6;
    assert_eq!(
        chunks,
        vec![
            Chunk::Text("Hello".into()),
            Chunk::Text(", Baton".into()),
            Chunk::Text("!".into()),
            Chunk::Usage(Usage {
                prompt_tokens: 21,
                completion_tokens: 4,
                cost_usd: cost
            }),
            Chunk::Done(StopReason::EndTurn),
        ]
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn assembles_parallel_tool_calls_from_fragments() {
    let server = serve(&["openai/tool_calls_parallel.json"]).await;
    let m = adapter(
        &server,
        Options {
            parallel_tool_calls: Some(true),
            ..Default::default()
        },
    );
    let req = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![
            Message::user("Weather and time in Paris and Oslo?"),
            Message::assistant(
                "",
                vec![ToolCall {
                    id: "call_prev".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Rome"}),
                }],
            ),
            Message::tool("call_prev", "sunny, 21C"),
            Message::user("Now Paris weather and Oslo time."),
        ],
        tools: tools(),
        ..Default::default()
    };
    let resp = m.complete(req).await.unwrap();
    assert_eq!(
        resp.tool_calls,
        vec![
            ToolCall {
                id: "call_AAA".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            },
            ToolCall {
                id: "call_BBB".into(),
                name: "get_time".into(),
                arguments: json!({"city": "Oslo"})
            },
        ]
    );
    assert_eq!(resp.stop_reason, StopReason::ToolCalls);
    assert_eq!(resp.content, "");
    // 100 of the 120 prompt tokens were read from the cache, at the cache price.
    assert_eq!(
        (resp.usage.prompt_tokens, resp.usage.completion_tokens),
        (120, 40)
    );
    assert_close(
        resp.usage.cost_usd,
        (20.0 * 0.15 + 100.0 * 0.075 + 40.0 * 0.6) / 1e6,
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn json_schema_structured_output() {
    let server = serve(&["openai/structured_output.json"]).await;
    let m = adapter(
        &server,
        Options {
            strict_json_schema: true,
            ..Default::default()
        },
    );
    let req = ChatRequest {
        model: "gpt-4o-mini".into(),
        messages: vec![Message::user("List two requirements of a todo app.")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "requirements list".into(),
            schema: requirements_schema(),
        }),
        ..Default::default()
    };
    let resp = m.complete(req).await.unwrap();
    let v: serde_json::Value = serde_json::from_str(&resp.content).unwrap();
    assert_eq!(v, json!({"requirements": ["add a task", "list tasks"]}));
    server.verify().unwrap();
}

#[tokio::test]
async fn json_mode_on_a_server_without_usage_or_done_marker() {
    let server = serve(&["openai/json_mode.json"]).await;
    let ep = endpoint(&server, "/v1", "vllm");
    let m = OpenAi::new(
        ep,
        Options {
            stream_usage: false,
            ..Default::default()
        },
    )
    .unwrap();
    let req = ChatRequest {
        model: "qwen2.5".into(),
        messages: vec![Message::user("Give me a JSON object with ok=true.")],
        response_format: Some(ResponseFormat::JsonObject),
        ..Default::default()
    };
    let (chunks, err) = run(&m, req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        serde_json::from_str::<serde_json::Value>(&text(&chunks)).unwrap(),
        json!({"ok": true})
    );
    assert!(!chunks.iter().any(|c| matches!(c, Chunk::Usage(_))));
    assert_eq!(chunks.last(), Some(&Chunk::Done(StopReason::EndTurn)));
    server.verify().unwrap();
}

async fn error_of(name: &str) -> Error {
    let server = serve(&[name]).await;
    let m = adapter(&server, Options::default());
    let (chunks, err) = run(&m, simple_request()).await;
    assert!(chunks.is_empty(), "{chunks:?}");
    server.verify().unwrap();
    err.unwrap()
}

#[tokio::test]
async fn classifies_http_errors() {
    let e = error_of("openai/error_401.json").await;
    assert!(
        matches!(&e, Error::Auth { message, .. } if message.starts_with("Incorrect API key")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    // The server echoed the key back; it must not reach logs or the run log.
    assert!(!format!("{e} {e:?}").contains("test-key"), "{e:?}");

    let e = error_of("openai/error_404_model.json").await;
    assert!(
        matches!(&e, Error::UnknownModel { model, .. } if model == "openai/gpt-4o-mini"),
        "{e:?}"
    );
    assert!(!e.is_retryable());

    let e = error_of("openai/error_429_retry_after.json").await;
    assert_eq!(e.kind(), "rate_limit");
    assert_eq!(e.retry_after(), Some(Duration::from_secs(1)));
    assert!(e.is_retryable());

    let e = error_of("openai/error_429_no_retry_after.json").await;
    assert_eq!((e.kind(), e.retry_after()), ("rate_limit", None));

    let e = error_of("openai/error_429_quota.json").await;
    assert!(matches!(&e, Error::Provider { status: 429, .. }), "{e:?}");
    assert!(
        !e.is_retryable(),
        "an exhausted quota does not come back by retrying"
    );

    let e = error_of("openai/error_400_context_length.json").await;
    assert!(
        matches!(&e, Error::ContextLength { message } if message.contains("128000")),
        "{e:?}"
    );
    assert!(!e.is_retryable());

    let e = error_of("openai/error_503.json").await;
    assert_eq!(e.kind(), "transient");
    assert!(e.is_retryable());
    assert!(e.to_string().contains("503"), "{e}");
}

#[tokio::test]
async fn errors_in_the_middle_of_a_stream() {
    // The connection drops after two chunks.
    let server = serve(&["openai/dropped_mid_stream.json"]).await;
    let (chunks, err) = run(&adapter(&server, Options::default()), text_request()).await;
    assert_eq!(text(&chunks), "Hello");
    let err = err.unwrap();
    assert_eq!(err.kind(), "transient", "{err:?}");
    assert!(err.to_string().contains("dropped"), "{err}");

    // A data line that is not JSON.
    let server = serve(&["openai/malformed_sse.json"]).await;
    let (chunks, err) = run(&adapter(&server, Options::default()), text_request()).await;
    assert_eq!(text(&chunks), "Hi");
    assert!(
        matches!(err, Some(Error::InvalidResponse(ref m)) if m.contains("not a chat-completion chunk")),
        "{err:?}"
    );

    // Tool arguments that do not assemble into JSON.
    let server = serve(&["openai/invalid_tool_arguments.json"]).await;
    let req = ChatRequest {
        messages: vec![Message::user("Weather in Paris?")],
        tools: tools()[..1].to_vec(),
        ..simple_request()
    };
    let (_, err) = run(&adapter(&server, Options::default()), req).await;
    assert!(
        matches!(err, Some(Error::InvalidToolArguments { ref tool, .. }) if tool == "get_weather"),
        "{err:?}"
    );
    server.verify().unwrap();

    // An error object sent after the 200.
    let server = serve(&["openai/stream_error_event.json"]).await;
    let (chunks, err) = run(&adapter(&server, Options::default()), text_request()).await;
    assert_eq!(text(&chunks), "Par");
    let err = err.unwrap();
    assert!(
        err.is_retryable() && err.to_string().contains("Upstream provider disconnected"),
        "{err:?}"
    );
}

#[tokio::test]
async fn request_hook_and_extra_body_shape_the_request() {
    let server = serve(&["openai/stream_text.json"]).await;
    let mut extra = serde_json::Map::new();
    extra.insert("provider".into(), json!({"order": ["a", "b"]}));
    let opts = Options {
        extra_body: extra,
        max_tokens_field: "max_completion_tokens".into(),
        request_hook: Some(Arc::new(
            |req: &ChatRequest, body: &mut serde_json::Map<String, serde_json::Value>| {
                body.insert("user".into(), json!(format!("msgs-{}", req.messages.len())));
            },
        )),
        ..org_options()
    };
    let m = adapter(&server, opts);
    m.complete(text_request()).await.unwrap();
    let sent = server.requests()[0].json().unwrap();
    assert_eq!(sent["provider"], json!({"order": ["a", "b"]}));
    assert_eq!(sent["user"], json!("msgs-2"));
    assert_eq!(sent["max_completion_tokens"], json!(64));
    assert!(sent.get("max_tokens").is_none());
}

#[tokio::test]
async fn structured_output_json_object_sends_the_schema_in_a_system_message() {
    let server = serve(&["openai/json_mode.json"]).await;
    let ep = endpoint(&server, "/v1", "old");
    let m = OpenAi::new(
        ep,
        Options {
            structured_output: StructuredOutput::JsonObject,
            stream_usage: false,
            ..Default::default()
        },
    )
    .unwrap();
    assert!(m.capabilities().json_schema);
    let req = ChatRequest {
        model: "qwen2.5".into(),
        messages: vec![Message::user("Give me a JSON object with ok=true.")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "ok".into(),
            schema: json!({"type": "object"}),
        }),
        ..Default::default()
    };
    m.complete(req).await.unwrap();
    let sent = server.requests()[0].json().unwrap();
    // `schema` is llama.cpp's extension of JSON mode; other servers ignore it.
    assert_eq!(
        sent["response_format"],
        json!({"type": "json_object", "schema": {"type": "object"}})
    );
    assert_eq!(sent["messages"][0]["role"], "system");
    assert!(
        sent["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("{\"type\":\"object\"}")
    );
}

#[tokio::test]
async fn a_server_that_ignores_stream_true() {
    let server = serve(&["openai/whole_body.json"]).await;
    let req = ChatRequest {
        messages: vec![Message::user("Weather in Paris?")],
        tools: tools()[..1].to_vec(),
        ..simple_request()
    };
    let (chunks, err) = run(&adapter(&server, Options::default()), req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        chunks,
        vec![
            Chunk::ToolCall(ToolCall {
                id: "call_W".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }),
            Chunk::Usage(Usage {
                prompt_tokens: 50,
                completion_tokens: 10,
                cost_usd: (50.0 * 0.15 + 10.0 * 0.6) / 1e6
            }),
            Chunk::Done(StopReason::ToolCalls),
        ]
    );
    server.verify().unwrap();
}
