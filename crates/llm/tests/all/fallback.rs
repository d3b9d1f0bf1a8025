//! Structured output and classification on exchanges recorded from llama-cpp-python's server
//! (`tests/cassettes/llama_cpp/`, see `record.py` there): `json_schema` refused with HTTP 500
//! and a validation error, then `json_object`, a forced tool call, the prompt alone.

use std::time::Duration;

use baton_llm::openai::{OpenAi, Options};
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Error, Message, ResponseFormat, RetryPolicy, Retrying,
    StopReason, StructuredOutput, ToolCall, structured,
};
use serde_json::{Value, json};

use crate::bad_input::{answer, text_stream};
use crate::cassette_server::{Cassette, CassetteServer};
use crate::common::*;

pub fn colour_schema() -> Value {
    json!({
        "type": "object",
        "properties": {"colour": {"type": "string", "enum": ["red", "green", "blue"]}},
        "required": ["colour"],
        "additionalProperties": false
    })
}

pub fn ask(prompt: &str, max_tokens: u32) -> ChatRequest {
    ChatRequest {
        model: "smollm2".into(),
        messages: vec![Message::user(prompt)],
        temperature: Some(0.0),
        max_tokens: Some(max_tokens),
        ..Default::default()
    }
}

pub fn colour_request() -> ChatRequest {
    ChatRequest {
        response_format: Some(ResponseFormat::JsonSchema {
            name: "colour".into(),
            schema: colour_schema(),
        }),
        ..ask("Name one colour of the sky or grass, as JSON.", 24)
    }
}

fn llama(server: &CassetteServer, mode: StructuredOutput) -> OpenAi {
    let opts = Options {
        structured_output: mode,
        ..Default::default()
    };
    OpenAi::new(endpoint(server, "/v1", "llamacpp"), opts)
        .unwrap()
        .for_model("smollm2")
}

/// The recorded request of `name`, answered with a refusal of the field `field`.
fn refused(name: &str, field: &str) -> Cassette {
    let mut c = cassette(name);
    let body = json!({"error": {"message": format!("'{field}' is not supported by this server"), "type": "invalid_request_error", "param": field}});
    c.response = answer(400, "application/json", None, &[]).response;
    c.response.body = Some(body);
    c
}

#[tokio::test]
async fn auto_falls_back_from_a_refused_json_schema_to_json_object_and_remembers_it() {
    let server = CassetteServer::start(vec![
        cassette("llama_cpp/json_schema_refused.json"),
        cassette("llama_cpp/json_object.json"),
        cassette("llama_cpp/json_object.json"),
    ])
    .await
    .unwrap();
    let m = llama(&server, StructuredOutput::Auto);
    for _ in 0..2 {
        let resp = m.complete(colour_request()).await.unwrap();
        assert_eq!(
            structured::validate(&colour_schema(), &resp.content).unwrap(),
            json!({"colour": "blue"})
        );
        assert_eq!(resp.stop_reason, StopReason::EndTurn);
    }
    assert_eq!(
        m.learned_structured_output("smollm2"),
        Some(StructuredOutput::JsonObject)
    );
    // Three requests: the refused one, its fallback, and the next call straight to json_object.
    server.verify().unwrap();
}

#[tokio::test]
async fn auto_goes_on_to_a_forced_tool_call() {
    let server = CassetteServer::start(vec![
        cassette("llama_cpp/json_schema_refused.json"),
        refused("llama_cpp/json_object.json", "response_format.schema"),
        cassette("llama_cpp/structured_tool.json"),
    ])
    .await
    .unwrap();
    let m = llama(&server, StructuredOutput::Auto);
    let (chunks, err) = run(&m, colour_request()).await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        !chunks.iter().any(|c| matches!(c, Chunk::ToolCall(_))),
        "the output tool's call is the answer, not a tool call: {chunks:?}"
    );
    assert_eq!(
        serde_json::from_str::<Value>(&text(&chunks)).unwrap(),
        json!({"colour": "blue"})
    );
    assert_eq!(chunks.last(), Some(&Chunk::Done(StopReason::EndTurn)));
    assert_eq!(
        m.learned_structured_output("smollm2"),
        Some(StructuredOutput::Tools)
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn auto_ends_with_the_prompt_alone() {
    let prompt_answer = text_stream("{\"colour\": \"red\"}");
    let refs: Vec<&str> = prompt_answer.iter().map(String::as_str).collect();
    let server = CassetteServer::start(vec![
        cassette("llama_cpp/json_schema_refused.json"),
        refused("llama_cpp/json_object.json", "response_format.schema"),
        refused("llama_cpp/structured_tool.json", "tool_choice"),
        answer(200, "text/event-stream", None, &refs),
    ])
    .await
    .unwrap();
    let m = llama(&server, StructuredOutput::Auto);
    let resp = m.complete(colour_request()).await.unwrap();
    assert!(structured::validate(&colour_schema(), &resp.content).is_ok());
    server.verify().unwrap();
    let last = server.requests()[3].json().unwrap();
    assert!(last.get("response_format").is_none() && last.get("tools").is_none());
    assert_eq!(last["messages"][0]["role"], "system");
    assert!(
        last["messages"][0]["content"]
            .as_str()
            .unwrap()
            .contains("JSON Schema")
    );
    assert_eq!(
        m.learned_structured_output("smollm2"),
        Some(StructuredOutput::Prompt)
    );
}

#[tokio::test]
async fn when_every_way_is_refused_the_last_refusal_is_the_error() {
    let server = CassetteServer::start(vec![
        cassette("llama_cpp/json_schema_refused.json"),
        refused("llama_cpp/json_object.json", "response_format.schema"),
        refused("llama_cpp/structured_tool.json", "tool_choice"),
        refused("llama_cpp/structured_tool.json", "messages"),
    ])
    .await
    .unwrap();
    let e = llama(&server, StructuredOutput::Auto)
        .complete(colour_request())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, Error::InvalidRequest { field: Some(f), .. } if f == "messages"),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 4, "each way once");
}

#[tokio::test]
async fn a_500_validation_error_is_an_invalid_request_naming_the_field_and_not_retried() {
    let server = serve(&["llama_cpp/json_schema_refused.json"]).await;
    let m = Retrying::new(
        llama(&server, StructuredOutput::JsonSchema),
        RetryPolicy {
            max_retries: 2,
            initial_backoff: Duration::from_millis(5),
            ..Default::default()
        },
        "llamacpp/smollm2",
    );
    let e = m.complete(colour_request()).await.unwrap_err();
    match &e {
        Error::InvalidRequest {
            status,
            field,
            message,
            ..
        } => {
            assert_eq!(*status, 500);
            assert_eq!(field.as_deref(), Some("response_format.type"));
            assert_eq!(message, "Input should be 'text' or 'json_object'");
        }
        e => panic!("{e:?}"),
    }
    assert!(!e.is_retryable());
    assert_eq!(
        e.to_string(),
        "llamacpp rejected the request as invalid (HTTP 500), field `response_format.type`: Input should be 'text' or 'json_object'"
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn a_recorded_tool_call_and_text_stream() {
    let server = serve(&["llama_cpp/tool_call.json", "llama_cpp/stream.json"]).await;
    let m = OpenAi::new(
        endpoint(&server, "/v1", "llamacpp"),
        Options {
            request_hook: Some(std::sync::Arc::new(|_, body| {
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
        tools: crate::openai::tools(),
        ..ask("What is the weather in Paris?", 24)
    };
    let (chunks, err) = run(&m, req).await;
    assert!(err.is_none(), "{err:?}");
    assert_eq!(
        chunks,
        vec![
            Chunk::ToolCall(ToolCall {
                id: "call__0_get_weather_cmpl-ecd09d60-edb5-4cbb-9f07-d4fc5d6c453e".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"}),
            }),
            Chunk::Done(StopReason::ToolCalls),
        ]
    );

    let m = llama(&server, StructuredOutput::Auto);
    let (chunks, err) = run(&m, ask("Count from one to five.", 12)).await;
    assert!(err.is_none(), "{err:?}");
    assert!(
        chunks
            .iter()
            .filter(|c| matches!(c, Chunk::Text(_)))
            .count()
            > 5
    );
    assert!(text(&chunks).starts_with("1."), "{chunks:?}");
    // llama-cpp-python reports no usage in a stream; the cut at max_tokens is `length`.
    assert!(!chunks.iter().any(|c| matches!(c, Chunk::Usage(_))));
    assert_eq!(chunks.last(), Some(&Chunk::Done(StopReason::MaxTokens)));
    server.verify().unwrap();
}
