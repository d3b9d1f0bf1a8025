use baton_llm::ollama::{Ollama, Options};
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Error, Message, ResponseFormat, StopReason, ToolCall, Usage,
};
use serde_json::json;

use crate::common::*;
use crate::openai::{requirements_schema, tools};

fn adapter(server: &crate::cassette_server::CassetteServer, opts: Options) -> Ollama {
    let mut ep = endpoint(server, "", "ollama");
    ep.api_key = None;
    Ollama::new(ep, opts).unwrap().for_model("llama3")
}

fn simple() -> ChatRequest {
    ChatRequest {
        model: "llama3".into(),
        messages: vec![Message::user("hi")],
        ..Default::default()
    }
}

#[tokio::test]
async fn streams_ndjson_text() {
    let server = serve(&["ollama/stream_text.json"]).await;
    let mut model_options = serde_json::Map::new();
    model_options.insert("num_ctx".into(), json!(8192));
    let m = adapter(
        &server,
        Options {
            keep_alive: Some("10m".into()),
            model_options,
            ..Default::default()
        },
    );
    let req = ChatRequest {
        model: "llama3".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::user("Say hello to Baton."),
        ],
        temperature: Some(0.2),
        max_tokens: Some(64),
        ..Default::default()
    };
    let (chunks, err) = run(&m, req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        chunks,
        vec![
            Chunk::Text("Hello".into()),
            Chunk::Text(", Bat".into()),
            Chunk::Text("on!".into()),
            Chunk::Usage(Usage {
                prompt_tokens: 26,
                completion_tokens: 5,
                cost_usd: 0.0
            }),
            Chunk::Done(StopReason::EndTurn),
        ]
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn tool_calls_and_tool_results_by_name() {
    let server = serve(&["ollama/tool_calls.json"]).await;
    let m = adapter(&server, Options::default());
    let req = ChatRequest {
        model: "llama3".into(),
        messages: vec![
            Message::user("Weather in Rome?"),
            Message::assistant(
                "",
                vec![ToolCall {
                    id: "call_r".into(),
                    name: "get_weather".into(),
                    arguments: json!({"city": "Rome"}),
                }],
            ),
            Message::tool("call_r", "sunny"),
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
                id: "call_0".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            },
            ToolCall {
                id: "call_1".into(),
                name: "get_time".into(),
                arguments: json!({"city": "Oslo"})
            },
        ]
    );
    assert_eq!(resp.stop_reason, StopReason::ToolCalls);
    assert_eq!(resp.usage.completion_tokens, 30);
    server.verify().unwrap();
}

#[tokio::test]
async fn structured_output_with_format_schema() {
    let server = serve(&["ollama/structured_output.json"]).await;
    let req = ChatRequest {
        model: "llama3".into(),
        messages: vec![Message::user("List two requirements of a todo app.")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "requirements".into(),
            schema: requirements_schema(),
        }),
        ..Default::default()
    };
    let resp = adapter(&server, Options::default())
        .complete(req)
        .await
        .unwrap();
    let v: serde_json::Value = serde_json::from_str(&resp.content).unwrap();
    assert_eq!(v, json!({"requirements": ["add a task", "list tasks"]}));
    server.verify().unwrap();
}

#[tokio::test]
async fn classifies_errors() {
    let run_one = |name: &'static str| async move {
        let server = serve(&[name]).await;
        let r = run(&adapter(&server, Options::default()), simple()).await;
        server.verify().unwrap();
        (r.0, r.1.unwrap())
    };
    let (_, e) = run_one("ollama/error_404_model.json").await;
    assert!(
        matches!(&e, Error::UnknownModel { model, reason } if model == "ollama/llama3" && reason.contains("try pulling it")),
        "{e:?}"
    );
    // A plain 500 (here the runner was killed) is the server's failure, not a transient one:
    // only 408/429/502/503/504/529, timeouts and connection failures are retried.
    let (_, e) = run_one("ollama/error_500.json").await;
    assert!(
        matches!(&e, Error::Provider { status: 500, message, .. } if message.contains("terminated")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    let (chunks, e) = run_one("ollama/stream_error_line.json").await;
    assert_eq!(text(&chunks), "Hi");
    assert!(e.to_string().contains("unexpected EOF"), "{e}");
    let (chunks, e) = run_one("ollama/dropped_mid_stream.json").await;
    assert_eq!(text(&chunks), "Hi there");
    assert_eq!(e.kind(), "transient");
    let (chunks, e) = run_one("ollama/malformed_line.json").await;
    assert_eq!(text(&chunks), "Hi");
    assert_eq!(e.kind(), "invalid_response");
}
