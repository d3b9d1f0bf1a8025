//! Servers that answer badly: an HTML page, an empty body, a stream cut in the middle of a JSON
//! event, a tool call whose arguments are not JSON, a model that never matches the schema. Each
//! ends in one classified error after bounded retries, within a deadline (never a hang).

use std::collections::BTreeMap;
use std::future::Future;
use std::time::Duration;

use baton_llm::openai::{OpenAi, Options};
use baton_llm::{ChatRequest, Error, Message, ResponseFormat, RetryPolicy, Retrying, structured};
use serde_json::json;

use crate::cassette_server::{Cassette, CassetteServer, ExpectedRequest, RecordedResponse};
use crate::common::*;
use crate::openai::{simple_request, tools};

/// Every test must end well within this.
const DEADLINE: Duration = Duration::from_secs(20);

async fn within<T>(f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .expect("the adapter hung instead of failing")
}

/// A response to any chat-completions request (the body is not checked).
pub fn answer(status: u16, content_type: &str, body: Option<&str>, chunks: &[&str]) -> Cassette {
    Cassette {
        description: format!("{status} {content_type}"),
        request: ExpectedRequest {
            method: "POST".into(),
            path: "/v1/chat/completions".into(),
            ..Default::default()
        },
        response: RecordedResponse {
            status,
            headers: BTreeMap::from([("content-type".into(), content_type.into())]),
            body: body.map(|b| serde_json::Value::String(b.into())),
            chunks: chunks.iter().map(|c| c.to_string()).collect(),
        },
        faults: Default::default(),
    }
}

/// A stream of one text answer, the way OpenAI-compatible servers send it.
pub fn text_stream(text: &str) -> Vec<String> {
    let chunk = |delta: serde_json::Value, finish: serde_json::Value| {
        let c = json!({"id": "x", "object": "chat.completion.chunk", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]});
        format!("data: {c}\n\n")
    };
    vec![
        chunk(json!({"role": "assistant", "content": text}), json!(null)),
        chunk(json!({}), json!("stop")),
        "data: [DONE]\n\n".into(),
    ]
}

fn retrying(server: &CassetteServer, retries: u32) -> Retrying<OpenAi> {
    let m = OpenAi::new(endpoint(server, "/v1", "bad"), Options::default())
        .unwrap()
        .for_model("m");
    let policy = RetryPolicy {
        max_retries: retries,
        initial_backoff: Duration::from_millis(5),
        ..Default::default()
    };
    Retrying::new(m, policy, "bad/m")
}

async fn fail(server: &CassetteServer, retries: u32, req: ChatRequest) -> Error {
    let m = retrying(server, retries);
    let (_, err) = within(run(&m, req)).await;
    err.expect("the call must fail")
}

const NGINX_PAGE: &str = "<!DOCTYPE html>\n<html>\n<head>\n<title>Welcome to nginx!</title>\n</head>\n<body><h1>Welcome to nginx!</h1></body>\n</html>\n";

#[tokio::test]
async fn an_html_page_instead_of_the_api_is_named_and_not_retried() {
    let server = CassetteServer::start_repeating(answer(200, "text/html", Some(NGINX_PAGE), &[]))
        .await
        .unwrap();
    let e = fail(&server, 2, simple_request()).await;
    assert!(
        matches!(&e, Error::InvalidResponse(m) if m.contains("HTML page") && m.contains("Welcome to nginx!")),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 1, "an HTML page is not retried");
}

#[tokio::test]
async fn an_html_error_page_from_a_proxy_is_transient_and_retried_a_bounded_number_of_times() {
    let page = "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>";
    let server = CassetteServer::start_repeating(answer(502, "text/html", Some(page), &[]))
        .await
        .unwrap();
    let e = fail(&server, 2, simple_request()).await;
    assert_eq!(e.kind(), "transient", "{e:?}");
    assert!(e.to_string().contains("502 Bad Gateway"), "{e}");
    assert_eq!(server.requests().len(), 3, "one try and two retries");
}

#[tokio::test]
async fn an_empty_body_is_a_clear_transient_error() {
    let server = CassetteServer::start_repeating(answer(200, "text/event-stream", None, &[]))
        .await
        .unwrap();
    let e = fail(&server, 1, simple_request()).await;
    assert!(
        matches!(&e, Error::Transient { message, .. } if message.contains("empty body")),
        "{e:?}"
    );
    assert_eq!(server.requests().len(), 2);

    // The same with a JSON content type (a server that ignored `stream: true`).
    let server = CassetteServer::start_repeating(answer(200, "application/json", None, &[]))
        .await
        .unwrap();
    let e = fail(&server, 0, simple_request()).await;
    assert!(e.to_string().contains("empty body"), "{e:?}");
}

#[tokio::test]
async fn a_stream_that_stops_in_the_middle_of_a_json_event() {
    let cut = "data: {\"id\":\"x\",\"object\":\"chat.completion.chunk\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hel";
    let server = CassetteServer::start_repeating(answer(200, "text/event-stream", None, &[cut]))
        .await
        .unwrap();
    let e = fail(&server, 1, simple_request()).await;
    assert!(
        matches!(&e, Error::Transient { message, .. } if message.contains("ended before the answer was complete")),
        "{e:?}"
    );
    assert_eq!(
        server.requests().len(),
        2,
        "nothing was streamed, so it is retried once"
    );

    // The same cut after a first piece went out: not retried (it cannot be taken back).
    let mut chunks = text_stream("Hel");
    chunks.truncate(1);
    chunks.push(cut.into());
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let server = CassetteServer::start_repeating(answer(200, "text/event-stream", None, &refs))
        .await
        .unwrap();
    let m = retrying(&server, 2);
    let (got, err) = within(run(&m, simple_request())).await;
    assert_eq!(text(&got), "Hel");
    assert_eq!(err.map(|e| e.kind()), Some("transient"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn a_tool_call_with_arguments_that_are_not_json_is_not_retried() {
    let server = serve(&["openai/invalid_tool_arguments.json"]).await;
    let req = ChatRequest {
        messages: vec![Message::user("Weather in Paris?")],
        tools: tools()[..1].to_vec(),
        ..simple_request()
    };
    let m = Retrying::new(
        OpenAi::new(endpoint(&server, "/v1", "openai"), Options::default())
            .unwrap()
            .for_model("gpt-4o-mini"),
        RetryPolicy::default(),
        "openai/gpt-4o-mini",
    );
    let (_, err) = within(run(&m, req)).await;
    let e = err.unwrap();
    assert!(
        matches!(&e, Error::InvalidToolArguments { tool, message } if tool == "get_weather" && message.contains("Paris}")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    server.verify().unwrap();
}

#[tokio::test]
async fn a_model_that_never_matches_the_schema_fails_after_its_re_asks() {
    let chunks = text_stream("{\"colour\": 7}");
    let refs: Vec<&str> = chunks.iter().map(String::as_str).collect();
    let server = CassetteServer::start_repeating(answer(200, "text/event-stream", None, &refs))
        .await
        .unwrap();
    let m = retrying(&server, 2);
    let schema = json!({"type": "object", "required": ["colour"], "properties": {"colour": {"type": "string"}}});
    let req = ChatRequest {
        messages: vec![Message::user("Name a colour.")],
        response_format: Some(ResponseFormat::JsonSchema {
            name: "colour".into(),
            schema,
        }),
        ..simple_request()
    };
    let e = within(structured::complete(&m, req, 2)).await.unwrap_err();
    assert!(
        matches!(&e, Error::InvalidOutput { attempts: 3, message } if message.contains("/colour")),
        "{e:?}"
    );
    assert!(!e.is_retryable());
    let sent = server.requests();
    assert_eq!(sent.len(), 3, "one ask and two re-asks");
    let last = sent[2].json().unwrap();
    let msgs = last["messages"].as_array().unwrap();
    assert_eq!(msgs.len(), 5, "{msgs:?}");
    assert!(
        msgs[4]["content"].as_str().unwrap().contains("/colour"),
        "the re-ask says what was wrong: {msgs:?}"
    );
}
