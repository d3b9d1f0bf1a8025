//! One adapter for every OpenAI-compatible chat-completions server (OpenAI, vLLM, llama.cpp's
//! server, Ollama's `/v1`, LM Studio, Groq, Together, OpenRouter...). Where servers differ, an
//! [`Options`] field (set from config) or a [`RequestHook`] (set in code) covers it.

use std::collections::VecDeque;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, Connection, KeyHeader};
use crate::http::{self, Endpoint, Framing, StreamParser};
use crate::pricing::{Price, Tokens};
use crate::structured::{self, Learned, StructuredOutput};
use crate::{Capabilities, ChatRequest, Chunk, Error, ResponseFormat, Role, StopReason, ToolCall};

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
    /// How a schema is asked for; `auto` falls back as the server refuses (see
    /// [`crate::structured`]).
    pub structured_output: StructuredOutput,
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
            structured_output: StructuredOutput::Auto,
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
            .field("structured_output", &self.structured_output)
            .field("strict_json_schema", &self.strict_json_schema)
            .field("parallel_tool_calls", &self.parallel_tool_calls)
            .field("api_key_header", &self.api_key_header)
            .field("extra_body", &self.extra_body.keys().collect::<Vec<_>>())
            .field("request_hook", &self.request_hook.as_ref().map(|_| "<fn>"))
            .finish()
    }
}

/// An OpenAI-compatible model. Cheap to clone; clones share the connection pool and what was
/// learned about the server's structured output.
pub type OpenAi = Adapter<Protocol>;

/// The OpenAI chat-completions wire format, with its options.
#[derive(Debug)]
pub struct Protocol {
    options: Options,
    learned: Learned,
}

impl OpenAi {
    pub fn new(endpoint: Endpoint, options: Options) -> Result<Self, Error> {
        let key = match &options.api_key_header {
            None => KeyHeader::Bearer,
            Some(h) => KeyHeader::Named(h.clone()),
        };
        let mut conn = Connection::new(endpoint, &options.chat_path, &key, "text/event-stream")?;
        if let Some(o) = &options.organization {
            conn.set_header("openai-organization", o, "organization")?;
        }
        if let Some(p) = &options.project {
            conn.set_header("openai-project", p, "project")?;
        }
        let protocol = Protocol {
            options,
            learned: Learned::default(),
        };
        Ok(Adapter::with_protocol(conn, protocol))
    }

    /// The way of asking for structured output that worked for `model`, once one has.
    pub fn learned_structured_output(&self, model: &str) -> Option<StructuredOutput> {
        self.protocol().learned.get(model)
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

/// The description of the tool that carries structured output in `tools` mode.
const OUTPUT_TOOL_DESCRIPTION: &str =
    "Give the final answer as the arguments of this function, matching its parameters.";

/// The body for `req`, asking for its schema (if any) the way `mode` says, and the name of the
/// tool that carries the answer in `tools` mode.
fn build_body(
    opts: &Options,
    model: &str,
    req: &ChatRequest,
    mode: StructuredOutput,
) -> Result<(Value, Option<String>), Error> {
    let mut messages: Vec<Value> = req.messages.iter().map(message).collect();
    let mut body = Map::new();
    let mut output_tool = None;
    body.insert("model".into(), model.into());
    match &req.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("response_format".into(), json!({"type": "json_object"}));
        }
        Some(ResponseFormat::JsonSchema { name, schema }) => match mode {
            StructuredOutput::Auto | StructuredOutput::JsonSchema => {
                let mut js = json!({"name": schema_name(name), "schema": schema});
                if opts.strict_json_schema {
                    js["strict"] = true.into();
                }
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_schema", "json_schema": js}),
                );
            }
            StructuredOutput::JsonObject => {
                body.insert(
                    "response_format".into(),
                    json!({"type": "json_object", "schema": schema}),
                );
                let instruction = structured::instruction(schema);
                messages.insert(0, json!({"role": "system", "content": instruction}));
            }
            StructuredOutput::Tools => {
                let tool = schema_name(name);
                let choice = if req.tools.is_empty() {
                    json!({"type": "function", "function": {"name": tool}})
                } else {
                    json!("required")
                };
                body.insert("tool_choice".into(), choice);
                output_tool = Some((tool, schema.clone()));
            }
            StructuredOutput::Prompt => {
                let instruction = structured::instruction(schema);
                messages.insert(0, json!({"role": "system", "content": instruction}));
            }
        },
    }
    body.insert("messages".into(), messages.into());
    let function = |name: &str, description: &str, parameters: &Value| json!({"type": "function", "function": {"name": name, "description": description, "parameters": parameters}});
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(|t| function(&t.name, &t.description, &t.parameters))
        .collect();
    if let Some((name, schema)) = &output_tool {
        tools.push(function(name, OUTPUT_TOOL_DESCRIPTION, schema));
    }
    if !tools.is_empty() {
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
    Ok((Value::Object(body), output_tool.map(|(name, _)| name)))
}

#[async_trait]
impl crate::adapter::Protocol for Protocol {
    const NAME: &'static str = "OpenAi";

    fn body(&self, model: &str, req: &ChatRequest) -> Result<Value, Error> {
        let mode = self.first_mode(model, req);
        Ok(build_body(&self.options, model, req, mode)?.0)
    }

    /// Sends `req`; under `auto`, a schema request the server refuses as invalid is sent again
    /// the next way (each way once), and the way that worked is remembered for the model.
    async fn call(
        &self,
        conn: &Connection,
        model: &str,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let auto = self.options.structured_output == StructuredOutput::Auto
            && matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. }));
        let mut mode = self.first_mode(model, &req);
        let mut refused: Option<Error> = None;
        loop {
            let (body, output_tool) = build_body(&self.options, model, &req, mode)?;
            let parser = Parser::new(conn.provider(), conn.price(model), output_tool);
            let err = match conn.call(model, &body, Framing::Sse, parser).await {
                Ok(s) => {
                    if auto {
                        self.learned
                            .remember(conn.provider(), model, mode, refused.as_ref());
                    }
                    return Ok(s);
                }
                Err(e) => e,
            };
            match mode.fallback() {
                Some(next) if auto && err.is_invalid_request() => {
                    tracing::debug!(
                        provider = conn.provider(),
                        model,
                        refused = mode.as_str(),
                        next = next.as_str(),
                        error = %err,
                        "structured output refused; trying the next way"
                    );
                    refused = Some(err);
                    mode = next;
                }
                _ => return Err(err),
            }
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: self.options.structured_output != StructuredOutput::Prompt,
            streaming: true,
        }
    }
}

impl Protocol {
    /// The way a request is asked first: the configured one, or under `auto` what worked for
    /// the model before (`json_schema` until something has).
    fn first_mode(&self, model: &str, req: &ChatRequest) -> StructuredOutput {
        match self.options.structured_output {
            StructuredOutput::Auto
                if matches!(req.response_format, Some(ResponseFormat::JsonSchema { .. })) =>
            {
                self.learned
                    .get(model)
                    .unwrap_or(StructuredOutput::JsonSchema)
            }
            m => m,
        }
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
    /// The tool whose arguments are the answer (structured output in `tools` mode).
    output_tool: Option<String>,
    calls: Vec<PartialCall>,
    calls_sent: bool,
    had_calls: bool,
    finish: Option<StopReason>,
    usage: Option<Tokens>,
    done: bool,
}

impl Parser {
    fn new(provider: &str, price: Option<Price>, output_tool: Option<String>) -> Self {
        Self {
            provider: provider.into(),
            price,
            output_tool,
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
            let call = ToolCall {
                id,
                name: c.name,
                arguments,
            };
            self.had_calls |= http::call_chunk(self.output_tool.as_deref(), call, out);
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
        let chunk: WireChunk = http::parse_item(&self.provider, "a chat-completion chunk", data)?;
        if let Some(err) = chunk.error {
            return Err(http::stream_error(&self.provider, err));
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
            // The only call carried the answer.
            Some(StopReason::ToolCalls) if !self.had_calls && self.output_tool.is_some() => {
                StopReason::EndTurn
            }
            Some(r) => r,
            None => StopReason::EndTurn,
        };
        out.push_back(Chunk::Done(reason));
        Ok(())
    }
}
