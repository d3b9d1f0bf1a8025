use std::time::Duration;

use baton_llm::anthropic::{Anthropic, Options};
use baton_llm::pricing::Price;
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Error, Message, ResponseFormat, StopReason, ToolCall, Usage,
};
use serde_json::json;

use crate::common::*;
use crate::openai::{requirements_schema, tools};

fn adapter(server: &crate::cassette_server::CassetteServer, opts: Options) -> Anthropic {
    let price = Price {
        input: 3.0,
        output: 15.0,
        cache_read: Some(0.3),
        cache_write: Some(3.75),
    };
    let ep = endpoint(server, "", "anthropic").with_prices(prices("claude-sonnet-4-5", price));
    Anthropic::new(ep, opts)
        .unwrap()
        .for_model("claude-sonnet-4-5")
}

fn simple() -> ChatRequest {
    ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::user("hi")],
        ..Default::default()
    }
}

#[tokio::test]
async fn streams_text_with_cached_system_prompt() {
    let server = serve(&["anthropic/stream_text.json"]).await;
    let opts = Options {
        beta: vec!["prompt-caching-2024-07-31".into()],
        cache_system_prompt: true,
        ..Default::default()
    };
    let m = adapter(&server, opts);
    let req = ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![
            Message::system("You are terse."),
            Message::system("Answer in English."),
            Message::user("Say hello to Baton."),
        ],
        temperature: Some(0.2),
        max_tokens: Some(1024),
        ..Default::default()
    };
    let (chunks, err) = run(&m, req).await;
    assert!(err.is_none(), "{err:?}");
    let cost = (12.0 * 3.0 + 1800.0 * 3.75 + 6.0 * 15.0) / 1e6;
    assert_eq!(
        chunks,
        vec![
            Chunk::Text("Hello".into()),
            Chunk::Text(", Baton!".into()),
            Chunk::Usage(Usage {
                prompt_tokens: 1812,
                completion_tokens: 6,
                cost_usd: cost
            }),
            Chunk::Done(StopReason::EndTurn),
        ]
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn tool_use_blocks_and_merged_tool_results() {
    let server = serve(&["anthropic/tool_use.json"]).await;
    let m = adapter(&server, Options::default());
    let req = ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![
            Message::user("Weather in Rome and Oslo?"),
            Message::assistant(
                "Checking.",
                vec![
                    ToolCall {
                        id: "toolu_prev1".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Rome"}),
                    },
                    ToolCall {
                        id: "toolu_prev2".into(),
                        name: "get_weather".into(),
                        arguments: json!({"city": "Oslo"}),
                    },
                ],
            ),
            Message::tool("toolu_prev1", "sunny"),
            Message::tool("toolu_prev2", "snow"),
            Message::user("Now Paris weather and Oslo time."),
        ],
        tools: tools(),
        ..Default::default()
    };
    let (chunks, err) = run(&m, req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        chunks,
        vec![
            Chunk::Text("Let me check.".into()),
            Chunk::ToolCall(ToolCall {
                id: "toolu_01A".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            }),
            Chunk::ToolCall(ToolCall {
                id: "toolu_01B".into(),
                name: "get_time".into(),
                arguments: json!({"city": "Oslo"})
            }),
            Chunk::Usage(Usage {
                prompt_tokens: 400,
                completion_tokens: 89,
                cost_usd: (400.0 * 3.0 + 89.0 * 15.0) / 1e6
            }),
            Chunk::Done(StopReason::ToolCalls),
        ]
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn structured_output_through_a_forced_tool() {
    let server = serve(&["anthropic/structured_output.json"]).await;
    let m = adapter(&server, Options::default());
    let req = ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![Message::user("List two requirements of a todo app.")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "requirements list".into(),
            schema: requirements_schema(),
        }),
        ..Default::default()
    };
    let resp = m.complete(req).await.unwrap();
    assert!(resp.tool_calls.is_empty());
    assert_eq!(resp.stop_reason, StopReason::EndTurn);
    let v: serde_json::Value = serde_json::from_str(&resp.content).unwrap();
    assert_eq!(v, json!({"requirements": ["add a task", "list tasks"]}));
    server.verify().unwrap();
}

#[tokio::test]
async fn max_tokens_stop_reason() {
    let server = serve(&["anthropic/max_tokens.json"]).await;
    let req = ChatRequest {
        messages: vec![Message::user("Tell me a story.")],
        max_tokens: Some(3),
        ..simple()
    };
    let resp = adapter(&server, Options::default())
        .complete(req)
        .await
        .unwrap();
    assert_eq!(
        (resp.content.as_str(), resp.stop_reason),
        ("Once upon a", StopReason::MaxTokens)
    );
    server.verify().unwrap();
}

async fn error_of(name: &str) -> (Vec<Chunk>, Error) {
    let server = serve(&[name]).await;
    let (chunks, err) = run(&adapter(&server, Options::default()), simple()).await;
    server.verify().unwrap();
    (chunks, err.unwrap())
}

#[tokio::test]
async fn classifies_errors() {
    let (_, e) = error_of("anthropic/error_401.json").await;
    assert!(
        matches!(&e, Error::Auth { message, .. } if message == "invalid x-api-key"),
        "{e:?}"
    );
    let (_, e) = error_of("anthropic/error_403.json").await;
    assert_eq!(e.kind(), "auth");
    let (_, e) = error_of("anthropic/error_404_model.json").await;
    assert!(
        matches!(&e, Error::UnknownModel { model, .. } if model == "anthropic/claude-sonnet-4-5"),
        "{e:?}"
    );
    let (_, e) = error_of("anthropic/error_429_retry_after.json").await;
    assert_eq!(
        (e.kind(), e.retry_after()),
        ("rate_limit", Some(Duration::from_secs(2)))
    );
    let (_, e) = error_of("anthropic/error_400_context_length.json").await;
    assert!(
        matches!(&e, Error::ContextLength { message } if message.contains("208315")),
        "{e:?}"
    );
    let (_, e) = error_of("anthropic/error_529_overloaded.json").await;
    assert!(
        e.is_retryable() && e.to_string().contains("Overloaded"),
        "{e:?}"
    );

    let (chunks, e) = error_of("anthropic/stream_error_event.json").await;
    assert_eq!(text(&chunks), "Hi");
    assert!(e.is_retryable() && e.kind() == "transient", "{e:?}");
    let (chunks, e) = error_of("anthropic/dropped_mid_stream.json").await;
    assert_eq!(text(&chunks), "Hi");
    assert_eq!(e.kind(), "transient");
    let (_, e) = error_of("anthropic/malformed_sse.json").await;
    assert_eq!(e.kind(), "invalid_response");
    let (_, e) = error_of("anthropic/invalid_tool_input.json").await;
    assert!(
        matches!(&e, Error::InvalidToolArguments { tool, .. } if tool == "get_weather"),
        "{e:?}"
    );
}

#[tokio::test]
async fn a_server_that_ignores_stream_true() {
    let server = serve(&["anthropic/whole_body.json"]).await;
    let resp = adapter(&server, Options::default())
        .complete(simple())
        .await
        .unwrap();
    assert_eq!(resp.content, "Checking.");
    assert_eq!(
        resp.tool_calls,
        vec![ToolCall {
            id: "toolu_W".into(),
            name: "get_weather".into(),
            arguments: json!({"city": "Paris"})
        }]
    );
    assert_eq!(resp.stop_reason, StopReason::ToolCalls);
    assert_eq!(
        (resp.usage.prompt_tokens, resp.usage.completion_tokens),
        (30, 12)
    );
    server.verify().unwrap();
}
