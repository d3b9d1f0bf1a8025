//! The OpenAI-compatible `/v1` routes: the wire format in, Baton's `ChatRequest` through the
//! providers, the wire format out (one JSON body, or server-sent events).

use std::convert::Infallible;
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use baton_llm::{
    ChatModel, ChatRequest, Chunk, Message, ModelResolver, ResponseFormat, Role, StopReason,
    ToolCall, ToolSpec, Usage, split_ref,
};
use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::{ApiError, AppState};

#[derive(Deserialize)]
struct WireRequest {
    model: String,
    messages: Vec<WireMessage>,
    #[serde(default)]
    tools: Vec<WireTool>,
    #[serde(default)]
    temperature: Option<f32>,
    #[serde(default)]
    max_tokens: Option<u32>,
    #[serde(default)]
    max_completion_tokens: Option<u32>,
    #[serde(default)]
    response_format: Option<WireResponseFormat>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    stream_options: Option<StreamOptions>,
}

#[derive(Deserialize)]
struct StreamOptions {
    #[serde(default)]
    include_usage: bool,
}

#[derive(Deserialize)]
struct WireMessage {
    role: String,
    #[serde(default)]
    content: Option<Value>,
    #[serde(default)]
    tool_calls: Vec<WireToolCall>,
    #[serde(default)]
    tool_call_id: Option<String>,
}

#[derive(Deserialize)]
struct WireToolCall {
    id: String,
    function: WireFunctionCall,
}

#[derive(Deserialize)]
struct WireFunctionCall {
    name: String,
    #[serde(default)]
    arguments: String,
}

#[derive(Deserialize)]
struct WireTool {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    description: String,
    #[serde(default)]
    parameters: Option<Value>,
}

#[derive(Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
enum WireResponseFormat {
    Text,
    JsonObject,
    JsonSchema { json_schema: WireJsonSchema },
}

#[derive(Deserialize)]
struct WireJsonSchema {
    #[serde(default)]
    name: String,
    schema: Value,
}

/// The text of a message's `content`: a string, or an array of parts whose text parts are
/// joined.
fn content_text(content: Option<Value>) -> Result<String, ApiError> {
    match content {
        None | Some(Value::Null) => Ok(String::new()),
        Some(Value::String(s)) => Ok(s),
        Some(Value::Array(parts)) => {
            let mut out = String::new();
            for p in parts {
                match (
                    p.get("type").and_then(Value::as_str),
                    p.get("text").and_then(Value::as_str),
                ) {
                    (Some("text"), Some(t)) => out.push_str(t),
                    (kind, _) => {
                        return Err(ApiError::bad_request(format!(
                            "content parts of type {} are not supported; only text",
                            kind.unwrap_or("(none)")
                        )));
                    }
                }
            }
            Ok(out)
        }
        Some(_) => Err(ApiError::bad_request(
            "`content` must be a string or an array of parts",
        )),
    }
}

fn to_request(w: WireRequest, model: &str) -> Result<ChatRequest, ApiError> {
    let mut messages = Vec::with_capacity(w.messages.len());
    for (i, m) in w.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => Role::System,
            "user" => Role::User,
            "assistant" => Role::Assistant,
            "tool" => Role::Tool,
            other => {
                return Err(ApiError::bad_request(format!(
                    "messages[{i}]: unknown role '{other}'"
                )));
            }
        };
        let mut tool_calls = Vec::new();
        for c in m.tool_calls {
            let arguments = if c.function.arguments.trim().is_empty() {
                json!({})
            } else {
                serde_json::from_str(&c.function.arguments).map_err(|e| {
                    ApiError::bad_request(format!(
                        "messages[{i}]: the arguments of tool call {} are not valid JSON: {e}",
                        c.id
                    ))
                })?
            };
            tool_calls.push(ToolCall {
                id: c.id,
                name: c.function.name,
                arguments,
            });
        }
        if role == Role::Tool && m.tool_call_id.is_none() {
            return Err(ApiError::bad_request(format!(
                "messages[{i}]: a tool message needs `tool_call_id`"
            )));
        }
        messages.push(Message {
            role,
            content: content_text(m.content)?,
            tool_calls,
            tool_call_id: m.tool_call_id,
        });
    }
    if messages.is_empty() {
        return Err(ApiError::bad_request("`messages` is empty"));
    }
    let mut tools = Vec::with_capacity(w.tools.len());
    for t in w.tools {
        if let Some(kind) = t.kind.as_deref()
            && kind != "function"
        {
            return Err(ApiError::bad_request(format!(
                "tools of type '{kind}' are not supported"
            )));
        }
        tools.push(ToolSpec {
            name: t.function.name,
            description: t.function.description,
            parameters: t
                .function
                .parameters
                .unwrap_or_else(|| json!({ "type": "object" })),
            effects: Default::default(),
        });
    }
    if let Some(t) = w.temperature
        && !(0.0..=2.0).contains(&t)
    {
        return Err(ApiError::bad_request(format!(
            "`temperature` is {t}: it must be between 0 and 2"
        )));
    }
    if let Some(0) = w.max_completion_tokens.or(w.max_tokens) {
        return Err(ApiError::bad_request(
            "`max_tokens` is 0: ask for at least 1 token",
        ));
    }
    let response_format = match w.response_format {
        None | Some(WireResponseFormat::Text) => None,
        Some(WireResponseFormat::JsonSchema { json_schema }) if !json_schema.schema.is_object() => {
            return Err(ApiError::bad_request(
                "`response_format.json_schema.schema` must be a JSON Schema object",
            ));
        }
        Some(WireResponseFormat::JsonObject) => Some(ResponseFormat::JsonObject),
        Some(WireResponseFormat::JsonSchema { json_schema }) => {
            if let Err(e) = jsonschema::validator_for(&json_schema.schema) {
                return Err(ApiError::bad_request(format!(
                    "`response_format.json_schema.schema` is not a valid JSON Schema: {e}"
                )));
            }
            Some(ResponseFormat::JsonSchema {
                name: json_schema.name,
                schema: json_schema.schema,
            })
        }
    };
    Ok(ChatRequest {
        model: model.to_string(),
        messages,
        tools,
        temperature: w.temperature,
        max_tokens: w.max_completion_tokens.or(w.max_tokens),
        response_format,
    })
}

fn finish_reason(r: StopReason) -> &'static str {
    match r {
        StopReason::EndTurn | StopReason::StopSequence => "stop",
        StopReason::ToolCalls => "tool_calls",
        StopReason::MaxTokens => "length",
        StopReason::ContentFilter => "content_filter",
    }
}

fn wire_tool_call(index: usize, c: &ToolCall) -> Value {
    json!({
        "index": index,
        "id": c.id,
        "type": "function",
        "function": { "name": c.name, "arguments": c.arguments.to_string() }
    })
}

fn wire_usage(u: &Usage) -> Value {
    json!({ "prompt_tokens": u.prompt_tokens, "completion_tokens": u.completion_tokens, "total_tokens": u.total() })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// `POST /v1/chat/completions`.
pub(crate) async fn chat_completions(
    State(state): State<AppState>,
    // Any role: a served model is not an open relay.
    _auth: crate::auth::Auth,
    body: Bytes,
) -> Result<Response, ApiError> {
    let wire: WireRequest = serde_json::from_slice(&body).map_err(|e| {
        ApiError::bad_request(format!(
            "the request body is not a valid chat completion request: {e}"
        ))
    })?;
    let reference = wire.model.clone();
    let (_, model_name) = split_ref(&reference).map_err(ApiError::from)?;
    let stream = wire.stream;
    let include_usage = wire
        .stream_options
        .as_ref()
        .is_some_and(|o| o.include_usage);
    let req = to_request(wire, model_name)?;
    let model = state.providers.resolve(&reference, &state.base_dir)?;
    let id = format!("chatcmpl-{}", uuid::Uuid::now_v7().simple());
    if stream {
        let chunks = model.stream(req).await?;
        Ok(sse(chunks, id, reference, include_usage).into_response())
    } else {
        let resp = model.complete(req).await?;
        let tool_calls: Vec<Value> = resp
            .tool_calls
            .iter()
            .enumerate()
            .map(|(i, c)| wire_tool_call(i, c))
            .collect();
        let mut message = json!({ "role": "assistant", "content": resp.content });
        if !tool_calls.is_empty() {
            message["tool_calls"] = Value::Array(tool_calls);
            if resp.content.is_empty() {
                message["content"] = Value::Null;
            }
        }
        Ok(Json(json!({
            "id": id,
            "object": "chat.completion",
            "created": now(),
            "model": reference,
            "choices": [{ "index": 0, "message": message, "finish_reason": finish_reason(resp.stop_reason) }],
            "usage": wire_usage(&resp.usage),
        }))
        .into_response())
    }
}

struct SseState {
    chunks: Option<BoxStream<'static, Result<Chunk, baton_llm::Error>>>,
    id: String,
    model: String,
    created: u64,
    include_usage: bool,
    usage: Usage,
    tool_calls: usize,
    started: bool,
}

impl SseState {
    fn event(&self, delta: Value, finish: Option<&str>) -> Event {
        let body = json!({
            "id": self.id,
            "object": "chat.completion.chunk",
            "created": self.created,
            "model": self.model,
            "choices": [{ "index": 0, "delta": delta, "finish_reason": finish }],
        });
        Event::default().data(body.to_string())
    }
}

/// The chunks as server-sent events in OpenAI's format, ending with `[DONE]`. An error after
/// the stream started is sent as an `{"error": ...}` event and ends the stream. When the client
/// goes away the model's stream is dropped, which stops generation.
fn sse(
    chunks: BoxStream<'static, Result<Chunk, baton_llm::Error>>,
    id: String,
    model: String,
    include_usage: bool,
) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    let st = SseState {
        chunks: Some(chunks),
        id,
        model,
        created: now(),
        include_usage,
        usage: Usage::default(),
        tool_calls: 0,
        started: false,
    };
    let events = stream::unfold(st, |mut st| async move {
        st.chunks.as_ref()?;
        let mut out: Vec<Event> = Vec::new();
        if !st.started {
            st.started = true;
            out.push(st.event(json!({ "role": "assistant", "content": "" }), None));
        }
        let next = match st.chunks.as_mut() {
            Some(chunks) => chunks.next().await,
            None => None,
        };
        match next {
            Some(Ok(Chunk::Text(t))) => out.push(st.event(json!({ "content": t }), None)),
            Some(Ok(Chunk::ToolCall(c))) => {
                out.push(st.event(
                    json!({ "tool_calls": [wire_tool_call(st.tool_calls, &c)] }),
                    None,
                ));
                st.tool_calls += 1;
            }
            Some(Ok(Chunk::Usage(u))) => st.usage.add(&u),
            Some(Ok(Chunk::Done(r))) => {
                out.push(st.event(json!({}), Some(finish_reason(r))));
                if st.include_usage {
                    let body = json!({
                        "id": st.id,
                        "object": "chat.completion.chunk",
                        "created": st.created,
                        "model": st.model,
                        "choices": [],
                        "usage": wire_usage(&st.usage),
                    });
                    out.push(Event::default().data(body.to_string()));
                }
                out.push(Event::default().data("[DONE]"));
                st.chunks = None;
            }
            Some(Err(e)) => {
                out.push(Event::default().data(ApiError::from(e).body().to_string()));
                st.chunks = None;
            }
            None => {
                // A stream that ends without `Done` is cut short: say so rather than pretend.
                let e = ApiError::new(
                    axum::http::StatusCode::BAD_GATEWAY,
                    "stream_ended",
                    "the model's stream ended before it was done",
                );
                out.push(Event::default().data(e.body().to_string()));
                st.chunks = None;
            }
        }
        Some((stream::iter(out.into_iter().map(Ok::<_, Infallible>)), st))
    })
    .flatten();
    Sse::new(events).keep_alive(KeepAlive::default())
}

/// `GET /v1/models`: every model the providers list, as `provider/model`.
pub(crate) async fn models(State(state): State<AppState>, _auth: crate::auth::Auth) -> Json<Value> {
    let mut data = Vec::new();
    for name in state.providers.names() {
        if let Some(p) = state.providers.get(name) {
            for m in p.list() {
                data.push(json!({ "id": format!("{name}/{m}"), "object": "model", "created": 0, "owned_by": name }));
            }
        }
    }
    Json(json!({ "object": "list", "data": data }))
}
