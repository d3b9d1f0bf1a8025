//! One adapter for every OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp's
//! server, Ollama's `/v1`, LM Studio, Groq, Together, OpenRouter...). Where servers differ, an
//! [`Options`] field (set from config) or a [`RequestHook`] (set in code) covers it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::http::{self, Endpoint, Framing, StreamParser};
use crate::pricing::{Price, Tokens};
use crate::{
    Capabilities, ChatModel, ChatRequest, Chunk, Error, ResponseFormat, Role, StopReason, ToolCall,
};

/// The default base URL of the OpenAI API.
pub const DEFAULT_BASE_URL: &str = "https://api.openai.com/v1";

/// Changes the request body just before it is sent, for what [`Options`] does not cover.
pub type RequestHook = Arc<dyn Fn(&ChatRequest, &mut Map<String, Value>) + Send + Sync>;

/// Where OpenAI-compatible servers differ.
#[derive(Clone)]
pub struct Options {
    /// Sent as `OpenAI-Organization`.
    pub organization: Option<String>,
    /// Sent as `OpenAI-Project`.
    pub project: Option<String>,
    /// The path of the endpoint under the base URL.
    pub chat_path: String,
    /// Ask for token usage in the stream (`stream_options.include_usage`); some older servers
    /// reject the field.
    pub stream_usage: bool,
    /// The body field that carries `max_tokens` (`max_tokens`, or `max_completion_tokens` that
    /// OpenAI's reasoning models require).
    pub max_tokens_field: String,
    /// The server supports `response_format: {type: json_schema}`. When not, a schema request
    /// is sent as JSON mode with the schema in a system message.
    pub json_schema: bool,
    /// Send `strict: true` with JSON schemas (OpenAI then guarantees the shape but only accepts
    /// schemas of its strict subset).
    pub strict_json_schema: bool,
    /// Sent as `parallel_tool_calls` when set and tools are offered.
    pub parallel_tool_calls: Option<bool>,
    /// The header that carries the API key; `Authorization: Bearer <key>` when `None`,
    /// the bare key in the named header otherwise (e.g. `api-key`).
    pub api_key_header: Option<String>,
    /// Fields merged into every request body (vendor extensions, e.g. OpenRouter's `provider`).
    pub extra_body: Map<String, Value>,
    pub request_hook: Option<RequestHook>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            organization: None,
            project: None,
            chat_path: "chat/completions".into(),
            stream_usage: true,
            max_tokens_field: "max_tokens".into(),
            json_schema: true,
            strict_json_schema: false,
            parallel_tool_calls: None,
            api_key_header: None,
            extra_body: Map::new(),
            request_hook: None,
        }
    }
}

impl fmt::Debug for Options {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Options")
            .field("organization", &self.organization)
            .field("project", &self.project)
            .field("chat_path", &self.chat_path)
            .field("stream_usage", &self.stream_usage)
            .field("max_tokens_field", &self.max_tokens_field)
            .field("json_schema", &self.json_schema)
            .field("strict_json_schema", &self.strict_json_schema)
            .field("parallel_tool_calls", &self.parallel_tool_calls)
            .field("api_key_header", &self.api_key_header)
            .field("extra_body", &self.extra_body.keys().collect::<Vec<_>>())
            .field("request_hook", &self.request_hook.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

struct Inner {
    endpoint: Endpoint,
    options: Options,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

/// An OpenAI-compatible model. Cheap to clone; clones share the connection pool.
#[derive(Clone)]
pub struct OpenAi {
    inner: Arc<Inner>,
    model: Option<String>,
}

impl fmt::Debug for OpenAi {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OpenAi")
            .field("endpoint", &self.inner.endpoint)
            .field("options", &self.inner.options)
            .field("model", &self.model)
            .finish()
    }
}

impl OpenAi {
    pub fn new(endpoint: Endpoint, options: Options) -> Result<Self, Error> {
        let client = http::client(&endpoint.base_url, &endpoint.timeouts)?;
        let url = http::join(&endpoint.base_url, &options.chat_path);
        let mut headers = endpoint.headers.clone();
        if let Some(key) = endpoint.api_key.as_ref().filter(|k| !k.is_empty()) {
            match &options.api_key_header {
                None => {
                    headers.insert(
                        AUTHORIZATION,
                        http::secret_header(&format!("Bearer {}", key.expose()))?,
                    );
                }
                Some(h) => {
                    let name = HeaderName::from_bytes(h.as_bytes()).map_err(|e| {
                        Error::Config(format!("api_key_header '{h}' is not a header name: {e}"))
                    })?;
                    headers.insert(name, http::secret_header(key.expose())?);
                }
            }
        }
        for (name, value) in [
            ("openai-organization", &options.organization),
            ("openai-project", &options.project),
        ] {
            if let Some(v) = value {
                let v = HeaderValue::from_str(v).map_err(|e| {
                    Error::Config(format!("the {name} header value is invalid: {e}"))
                })?;
                headers.insert(name, v);
            }
        }
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("text/event-stream"),
        );
        Ok(Self {
            inner: Arc::new(Inner {
                endpoint,
                options,
                client,
                url,
                headers,
            }),
            model: None,
        })
    }

    /// The same adapter, bound to `model` (used when a request names none).
    pub fn for_model(&self, model: impl Into<String>) -> Self {
        Self {
            inner: self.inner.clone(),
            model: Some(model.into()),
        }
    }

    /// The request body sent for `req`.
    pub fn body(&self, req: &ChatRequest) -> Result<Value, Error> {
        let model = model_name(
            self.model.as_deref(),
            &req.model,
            &self.inner.endpoint.provider,
        )?;
        build_body(&self.inner.options, model, req)
    }
}

pub(crate) fn model_name<'a>(
    bound: Option<&'a str>,
    requested: &'a str,
    provider: &str,
) -> Result<&'a str, Error> {
    match bound.filter(|m| !m.is_empty()) {
        Some(m) => Ok(m),
        None if !requested.is_empty() => Ok(requested),
        None => Err(Error::Config(format!(
            "no model named for provider {provider}"
        ))),
    }
}

fn message(m: &crate::Message) -> Value {
    match m.role {
        Role::System => json!({"role": "system", "content": m.content}),
        Role::User => json!({"role": "user", "content": m.content}),
        Role::Assistant => {
            let mut o = Map::new();
            o.insert("role".into(), "assistant".into());
            if m.tool_calls.is_empty() || !m.content.is_empty() {
                o.insert("content".into(), m.content.clone().into());
            } else {
                o.insert("content".into(), Value::Null);
            }
            if !m.tool_calls.is_empty() {
                let calls = m
                    .tool_calls
                    .iter()
                    .map(|c| {
                        json!({
                            "id": c.id,
                            "type": "function",
                            "function": {"name": c.name, "arguments": c.arguments.to_string()},
                        })
                    })
                    .collect::<Vec<_>>();
                o.insert("tool_calls".into(), calls.into());
            }
            Value::Object(o)
        }
        Role::Tool => json!({
            "role": "tool",
            "tool_call_id": m.tool_call_id.clone().unwrap_or_default(),
            "content": m.content,
        }),
    }
}

/// A schema name as OpenAI accepts it: `[a-zA-Z0-9_-]{1,64}`.
pub(crate) fn schema_name(name: &str) -> String {
    let s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .take(64)
        .collect();
    if s.is_empty() { "output".into() } else { s }
}

fn build_body(opts: &Options, model: &str, req: &ChatRequest) -> Result<Value, Error> {
    let mut messages: Vec<Value> = req.messages.iter().map(message).collect();
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    match &req.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { name, schema }) if opts.json_schema => {
            let mut js = json!({"name": schema_name(name), "schema": schema});
            if opts.strict_json_schema {
                js["strict"] = true.into();
            }
            body.insert(
                "response_format".into(),
                json!({"type": "json_schema", "json_schema": js}),
            );
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
            messages.insert(
                0,
                json!({"role": "system", "content": format!("Reply with one JSON value that matches this JSON Schema, and nothing else:\n{schema}")}),
            );
        }
    }
    body.insert("messages".into(), messages.into());
    if !req.tools.is_empty() {
        let tools = req
            .tools
            .iter()
            .map(|t| {
                json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}})
            })
            .collect::<Vec<_>>();
        body.insert("tools".into(), tools.into());
        if let Some(p) = opts.parallel_tool_calls {
            body.insert("parallel_tool_calls".into(), p.into());
        }
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), http::number(t));
    }
    if let Some(n) = req.max_tokens {
        body.insert(opts.max_tokens_field.clone(), n.into());
    }
    body.insert("stream".into(), true.into());
    if opts.stream_usage {
        body.insert("stream_options".into(), json!({"include_usage": true}));
    }
    for (k, v) in &opts.extra_body {
        body.insert(k.clone(), v.clone());
    }
    if let Some(hook) = &opts.request_hook {
        hook(req, &mut body);
    }
    Ok(Value::Object(body))
}

#[async_trait]
impl ChatModel for OpenAi {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let i = &self.inner;
        let model =
            model_name(self.model.as_deref(), &req.model, &i.endpoint.provider)?.to_string();
        let body = build_body(&i.options, &model, &req)?;
        let started = tokio::time::Instant::now();
        let resp = http::post_json(
            &i.endpoint.provider,
            &i.client,
            &i.url,
            i.headers.clone(),
            &body,
            &i.endpoint.timeouts,
        )
        .await
        .map_err(|e| {
            i.endpoint
                .scrub(name_model(e, &i.endpoint.provider, &model))
        })?;
        let parser = Parser::new(&i.endpoint.provider, i.endpoint.prices.get(&model));
        Ok(http::drive(
            &i.endpoint.provider,
            resp,
            Framing::Sse,
            parser,
            &i.endpoint.timeouts,
            started,
        ))
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: self.inner.options.json_schema,
            streaming: true,
        }
    }
}

/// Puts the model's name into an unknown-model error classified from a bare status.
pub(crate) fn name_model(e: Error, provider: &str, model: &str) -> Error {
    match e {
        Error::UnknownModel { reason, .. } => Error::UnknownModel {
            model: format!("{provider}/{model}"),
            reason,
        },
        e => e,
    }
}

#[derive(Deserialize)]
struct WireChunk {
    #[serde(default)]
    choices: Option<Vec<WireChoice>>,
    #[serde(default)]
    usage: Option<WireUsage>,
    #[serde(default)]
    error: Option<Value>,
    /// Groq reports usage here rather than in `usage`.
    #[serde(default)]
    x_groq: Option<WireVendorExtra>,
}

#[derive(Deserialize)]
struct WireVendorExtra {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireChoice {
    #[serde(default)]
    index: u32,
    /// `message` in a whole (non-streamed) completion, which has the same fields.
    #[serde(default, alias = "message")]
    delta: Option<WireDelta>,
    #[serde(default)]
    finish_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    refusal: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireToolDelta>>,
}

#[derive(Deserialize)]
struct WireToolDelta {
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    function: Option<WireFunction>,
}

#[derive(Deserialize)]
struct WireFunction {
    #[serde(default)]
    name: Option<String>,
    /// A string of JSON fragments; a few servers send the whole object instead.
    #[serde(default)]
    arguments: Option<Value>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    prompt_tokens: u64,
    #[serde(default)]
    completion_tokens: u64,
    #[serde(default)]
    prompt_tokens_details: Option<WirePromptDetails>,
}

#[derive(Deserialize)]
struct WirePromptDetails {
    #[serde(default)]
    cached_tokens: Option<u64>,
}

#[derive(Default)]
struct PartialCall {
    index: u32,
    id: String,
    name: String,
    arguments: String,
}

/// Assembles an OpenAI chat-completions stream.
struct Parser {
    provider: String,
    price: Option<Price>,
    calls: Vec<PartialCall>,
    calls_sent: bool,
    had_calls: bool,
    finish: Option<StopReason>,
    usage: Option<Tokens>,
    done: bool,
}

impl Parser {
    fn new(provider: &str, price: Option<Price>) -> Self {
        Self {
            provider: provider.into(),
            price,
            calls: Vec::new(),
            calls_sent: false,
            had_calls: false,
            finish: None,
            usage: None,
            done: false,
        }
    }

    fn tool_delta(&mut self, d: WireToolDelta, position: u32) {
        let index = d.index.unwrap_or(position);
        let id = d.id.filter(|s| !s.is_empty());
        // A new call starts when its index is new, or when a server reuses an index for a call
        // with another id (some do for parallel calls).
        let existing = self.calls.iter().rposition(|c| c.index == index);
        let slot = match (existing, &id) {
            (Some(i), Some(id)) if !self.calls[i].id.is_empty() && self.calls[i].id != *id => None,
            (Some(i), _) => Some(i),
            (None, _) => None,
        };
        let i = match slot {
            Some(i) => i,
            None => {
                self.calls.push(PartialCall {
                    index,
                    ..Default::default()
                });
                self.calls.len() - 1
            }
        };
        let call = &mut self.calls[i];
        if let Some(id) = id {
            call.id = id;
        }
        if let Some(f) = d.function {
            if let Some(n) = f.name.filter(|n| !n.is_empty()) {
                call.name = n;
            }
            match f.arguments {
                Some(Value::String(s)) => call.arguments.push_str(&s),
                Some(Value::Null) | None => {}
                Some(v) => call.arguments.push_str(&v.to_string()),
            }
        }
    }

    fn flush_calls(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        if self.calls_sent {
            return Ok(());
        }
        self.calls_sent = true;
        let mut calls = std::mem::take(&mut self.calls);
        calls.sort_by_key(|c| c.index);
        for (n, c) in calls.into_iter().enumerate() {
            if c.name.is_empty() {
                return Err(Error::InvalidResponse(format!(
                    "tool call {n} in the stream has no function name"
                )));
            }
            let arguments = http::parse_arguments(&c.name, &c.arguments)?;
            let id = if c.id.is_empty() {
                format!("call_{n}")
            } else {
                c.id
            };
            self.had_calls = true;
            out.push_back(Chunk::ToolCall(ToolCall {
                id,
                name: c.name,
                arguments,
            }));
        }
        Ok(())
    }
}

fn stop_reason(r: &str) -> StopReason {
    match r {
        "length" => StopReason::MaxTokens,
        "tool_calls" | "function_call" => StopReason::ToolCalls,
        "content_filter" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

impl StreamParser for Parser {
    fn item(&mut self, _event: &str, data: &str, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        let data = data.trim();
        if data == "[DONE]" {
            self.done = true;
            return Ok(());
        }
        let chunk: WireChunk = serde_json::from_str(data).map_err(|e| {
            Error::InvalidResponse(format!(
                "{}: a streamed event is not a chat-completion chunk ({e}): {}",
                self.provider,
                http::snippet(data)
            ))
        })?;
        if let Some(err) = chunk.error {
            let body = json!({ "error": err }).to_string();
            return Err(http::classify_in_stream(&self.provider, body.as_bytes()));
        }
        for choice in chunk.choices.into_iter().flatten().filter(|c| c.index == 0) {
            if let Some(delta) = choice.delta {
                if let Some(t) = delta.content.filter(|t| !t.is_empty()) {
                    out.push_back(Chunk::Text(t));
                }
                if let Some(t) = delta.refusal.filter(|t| !t.is_empty()) {
                    out.push_back(Chunk::Text(t));
                }
                for (pos, d) in delta.tool_calls.into_iter().flatten().enumerate() {
                    self.tool_delta(d, u32::try_from(pos).unwrap_or(u32::MAX));
                }
            }
            if let Some(r) = choice.finish_reason.filter(|r| !r.is_empty()) {
                self.finish = Some(stop_reason(&r));
                self.flush_calls(out)?;
            }
        }
        if let Some(u) = chunk.usage.or_else(|| chunk.x_groq.and_then(|x| x.usage)) {
            let cached = u
                .prompt_tokens_details
                .and_then(|d| d.cached_tokens)
                .unwrap_or(0)
                .min(u.prompt_tokens);
            self.usage = Some(Tokens {
                input: u.prompt_tokens - cached,
                output: u.completion_tokens,
                cache_read: cached,
                cache_write: 0,
            });
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn end(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        if !self.done && self.finish.is_none() {
            return Err(Error::Transient {
                provider: self.provider.clone(),
                message: "the stream ended before the answer was complete".into(),
            });
        }
        self.flush_calls(out)?;
        if let Some(t) = self.usage.take() {
            out.push_back(Chunk::Usage(t.usage(self.price)));
        }
        let reason = match self.finish {
            // Some servers end a tool-calling turn with "stop".
            Some(StopReason::EndTurn) | None if self.had_calls => StopReason::ToolCalls,
            Some(r) => r,
            None => StopReason::EndTurn,
        };
        out.push_back(Chunk::Done(reason));
        Ok(())
    }
}
