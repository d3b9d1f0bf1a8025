//! The Anthropic Messages API: streaming, tool use, system prompts, stop reasons, prompt
//! caching. Structured output is asked for the way Anthropic documents it: a tool whose input
//! schema is the wanted schema, which the model is made to call; its input comes back as text.

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, Connection, KeyHeader};
use crate::http::{self, Endpoint, Framing, StreamParser};
use crate::openai::schema_name;
use crate::pricing::{Price, Tokens};
use crate::{ChatRequest, Chunk, Error, ResponseFormat, Role, StopReason, ToolCall};

/// The default base URL of the Anthropic API.
pub const DEFAULT_BASE_URL: &str = "https://api.anthropic.com";
/// The API version sent as `anthropic-version`.
pub const API_VERSION: &str = "2023-06-01";

/// Settings of the Anthropic adapter.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Sent as `anthropic-version`.
    pub api_version: String,
    /// Beta features, sent joined as `anthropic-beta` (e.g. a prompt-caching or a long-context
    /// beta); headers given in config pass through as well.
    pub beta: Vec<String>,
    /// `max_tokens` is required by the API: this is sent when the request sets none.
    pub default_max_tokens: u32,
    /// Mark the system prompt as a prompt-cache breakpoint (`cache_control: ephemeral`).
    pub cache_system_prompt: bool,
    /// Mark the tool definitions as a prompt-cache breakpoint.
    pub cache_tools: bool,
    /// Fields merged into every request body.
    pub extra_body: Map<String, Value>,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            api_version: API_VERSION.into(),
            beta: Vec::new(),
            default_max_tokens: 4096,
            cache_system_prompt: false,
            cache_tools: false,
            extra_body: Map::new(),
        }
    }
}

/// An Anthropic model. Cheap to clone.
pub type Anthropic = Adapter<Protocol>;

/// The Messages API wire format, with its options.
#[derive(Debug)]
pub struct Protocol {
    options: Options,
}

impl Anthropic {
    pub fn new(endpoint: Endpoint, options: Options) -> Result<Self, Error> {
        let key = KeyHeader::Named("x-api-key".into());
        let mut conn = Connection::new(endpoint, "v1/messages", &key, "text/event-stream")?;
        conn.set_header("anthropic-version", &options.api_version, "api_version")?;
        if !options.beta.is_empty() {
            conn.set_header("anthropic-beta", &options.beta.join(","), "beta")?;
        }
        Ok(Adapter::with_protocol(conn, Protocol { options }))
    }
}

/// The name of the tool that carries structured output, when one is asked for.
fn output_tool(req: &ChatRequest) -> Option<(String, Value)> {
    match &req.response_format {
        None => None,
        Some(ResponseFormat::JsonObject) => Some(("json_output".into(), json!({"type": "object"}))),
        Some(ResponseFormat::JsonSchema { name, schema }) => {
            Some((schema_name(name), schema.clone()))
        }
    }
}

fn push_user_blocks(messages: &mut Vec<Value>, blocks: Vec<Value>) {
    if let Some(last) = messages.last_mut().filter(|m| m["role"] == "user") {
        let content = &mut last["content"];
        if let Value::String(s) = content {
            *content = json!([{"type": "text", "text": s}]);
        }
        if let Value::Array(a) = content {
            a.extend(blocks);
            return;
        }
    }
    messages.push(json!({"role": "user", "content": blocks}));
}

fn build_body(opts: &Options, model: &str, req: &ChatRequest) -> (Value, Option<String>) {
    let mut system = Vec::new();
    let mut messages: Vec<Value> = Vec::new();
    for m in &req.messages {
        match m.role {
            Role::System => system.push(m.content.as_str()),
            Role::User => {
                if messages.last().is_some_and(|l| l["role"] == "user") {
                    push_user_blocks(
                        &mut messages,
                        vec![json!({"type": "text", "text": m.content})],
                    );
                } else {
                    messages.push(json!({"role": "user", "content": m.content}));
                }
            }
            Role::Assistant => {
                if m.tool_calls.is_empty() {
                    if !m.content.is_empty() {
                        messages.push(json!({"role": "assistant", "content": m.content}));
                    }
                    continue;
                }
                let mut blocks = Vec::new();
                if !m.content.is_empty() {
                    blocks.push(json!({"type": "text", "text": m.content}));
                }
                for c in &m.tool_calls {
                    let input = if c.arguments.is_object() {
                        c.arguments.clone()
                    } else {
                        json!({})
                    };
                    blocks.push(
                        json!({"type": "tool_use", "id": c.id, "name": c.name, "input": input}),
                    );
                }
                messages.push(json!({"role": "assistant", "content": blocks}));
            }
            Role::Tool => {
                let block = json!({
                    "type": "tool_result",
                    "tool_use_id": m.tool_call_id.clone().unwrap_or_default(),
                    "content": m.content,
                });
                push_user_blocks(&mut messages, vec![block]);
            }
        }
    }
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert(
        "max_tokens".into(),
        req.max_tokens.unwrap_or(opts.default_max_tokens).into(),
    );
    if !system.is_empty() {
        let text = system.join("\n\n");
        let value = if opts.cache_system_prompt {
            json!([{"type": "text", "text": text, "cache_control": {"type": "ephemeral"}}])
        } else {
            Value::String(text)
        };
        body.insert("system".into(), value);
    }
    body.insert("messages".into(), messages.into());
    let mut tools: Vec<Value> = req
        .tools
        .iter()
        .map(
            |t| json!({"name": t.name, "description": t.description, "input_schema": t.parameters}),
        )
        .collect();
    let output = output_tool(req);
    if let Some((name, schema)) = &output {
        tools.push(json!({
            "name": name,
            "description": "Give the final answer as the input of this tool, matching its schema.",
            "input_schema": schema,
        }));
        let choice = if req.tools.is_empty() {
            json!({"type": "tool", "name": name})
        } else {
            json!({"type": "any"})
        };
        body.insert("tool_choice".into(), choice);
    }
    if opts.cache_tools
        && let Some(last) = tools.last_mut()
    {
        last["cache_control"] = json!({"type": "ephemeral"});
    }
    if !tools.is_empty() {
        body.insert("tools".into(), tools.into());
    }
    if let Some(t) = req.temperature {
        body.insert("temperature".into(), http::number(t));
    }
    body.insert("stream".into(), true.into());
    for (k, v) in &opts.extra_body {
        body.insert(k.clone(), v.clone());
    }
    (Value::Object(body), output.map(|(n, _)| n))
}

#[async_trait]
impl crate::adapter::Protocol for Protocol {
    const NAME: &'static str = "Anthropic";

    fn body(&self, model: &str, req: &ChatRequest) -> Result<Value, Error> {
        Ok(build_body(&self.options, model, req).0)
    }

    async fn call(
        &self,
        conn: &Connection,
        model: &str,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let (body, output_tool) = build_body(&self.options, model, &req);
        let parser = Parser::new(conn.provider(), conn.price(model), output_tool);
        conn.call(model, &body, Framing::Sse, parser).await
    }
}

#[derive(Deserialize)]
struct WireEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    index: Option<u32>,
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    content_block: Option<WireBlock>,
    #[serde(default)]
    delta: Option<WireDelta>,
    #[serde(default)]
    usage: Option<WireUsage>,
    /// The blocks of a whole (non-streamed) message.
    #[serde(default)]
    content: Option<Vec<WireBlock>>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    usage: Option<WireUsage>,
}

#[derive(Deserialize)]
struct WireBlock {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    name: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    input: Option<Value>,
}

#[derive(Deserialize)]
struct WireDelta {
    #[serde(rename = "type", default)]
    kind: Option<String>,
    #[serde(default)]
    text: Option<String>,
    #[serde(default)]
    partial_json: Option<String>,
    #[serde(default)]
    stop_reason: Option<String>,
}

#[derive(Deserialize)]
struct WireUsage {
    #[serde(default)]
    input_tokens: Option<u64>,
    #[serde(default)]
    output_tokens: Option<u64>,
    #[serde(default)]
    cache_creation_input_tokens: Option<u64>,
    #[serde(default)]
    cache_read_input_tokens: Option<u64>,
}

enum Block {
    Text,
    ToolUse {
        id: String,
        name: String,
        json: String,
        initial: Option<Value>,
    },
    Other,
}

struct Parser {
    provider: String,
    price: Option<Price>,
    output_tool: Option<String>,
    blocks: Vec<(u32, Block)>,
    tokens: Tokens,
    stop: Option<StopReason>,
    had_calls: bool,
    done: bool,
}

impl Parser {
    fn new(provider: &str, price: Option<Price>, output_tool: Option<String>) -> Self {
        Self {
            provider: provider.into(),
            price,
            output_tool,
            blocks: Vec::new(),
            tokens: Tokens::default(),
            stop: None,
            had_calls: false,
            done: false,
        }
    }

    fn usage(&mut self, u: &WireUsage) {
        if let Some(n) = u.input_tokens {
            self.tokens.input = n;
        }
        if let Some(n) = u.output_tokens {
            self.tokens.output = n;
        }
        if let Some(n) = u.cache_creation_input_tokens {
            self.tokens.cache_write = n;
        }
        if let Some(n) = u.cache_read_input_tokens {
            self.tokens.cache_read = n;
        }
    }

    fn start_block(&mut self, b: WireBlock, out: &mut VecDeque<Chunk>) -> Block {
        match b.kind.as_str() {
            "text" => {
                if let Some(t) = b.text.filter(|t| !t.is_empty()) {
                    out.push_back(Chunk::Text(t));
                }
                Block::Text
            }
            "tool_use" => Block::ToolUse {
                id: b.id.unwrap_or_default(),
                name: b.name.unwrap_or_default(),
                json: String::new(),
                initial: b.input,
            },
            _ => Block::Other,
        }
    }

    fn block_mut(&mut self, index: u32) -> Option<&mut Block> {
        self.blocks
            .iter_mut()
            .rev()
            .find(|(i, _)| *i == index)
            .map(|(_, b)| b)
    }

    fn stop_block(&mut self, index: u32, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        let Some(pos) = self.blocks.iter().rposition(|(i, _)| *i == index) else {
            return Ok(());
        };
        let (_, block) = self.blocks.remove(pos);
        if let Block::ToolUse {
            id,
            name,
            json,
            initial,
        } = block
        {
            let arguments = if json.trim().is_empty() {
                initial
                    .filter(|v| v.is_object())
                    .unwrap_or_else(|| Value::Object(Map::new()))
            } else {
                http::parse_arguments(&name, &json)?
            };
            let call = ToolCall {
                id,
                name,
                arguments,
            };
            self.had_calls |= http::call_chunk(self.output_tool.as_deref(), call, out);
        }
        Ok(())
    }
}

fn stop_reason(r: &str) -> StopReason {
    match r {
        "tool_use" => StopReason::ToolCalls,
        "max_tokens" | "model_context_window_exceeded" => StopReason::MaxTokens,
        "stop_sequence" => StopReason::StopSequence,
        "refusal" => StopReason::ContentFilter,
        _ => StopReason::EndTurn,
    }
}

impl StreamParser for Parser {
    fn item(&mut self, _event: &str, data: &str, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        let ev: WireEvent = http::parse_item(&self.provider, "a Messages API event", data)?;
        match ev.kind.as_str() {
            "message_start" => {
                if let Some(u) = ev.message.and_then(|m| m.usage) {
                    self.usage(&u);
                }
            }
            "content_block_start" => {
                let index = ev.index.unwrap_or(0);
                let block = match ev.content_block {
                    Some(b) => self.start_block(b, out),
                    None => Block::Other,
                };
                self.blocks.push((index, block));
            }
            "content_block_delta" => {
                let index = ev.index.unwrap_or(0);
                let Some(d) = ev.delta else { return Ok(()) };
                match (d.kind.as_deref(), self.block_mut(index)) {
                    (Some("text_delta"), _) => {
                        if let Some(t) = d.text.filter(|t| !t.is_empty()) {
                            out.push_back(Chunk::Text(t));
                        }
                    }
                    (Some("input_json_delta"), Some(Block::ToolUse { json, .. })) => {
                        json.push_str(d.partial_json.as_deref().unwrap_or(""));
                    }
                    (Some("input_json_delta"), _) => {
                        return Err(Error::InvalidResponse(format!(
                            "{}: tool input for content block {index}, which is not a tool call",
                            self.provider
                        )));
                    }
                    // thinking, signature and citations deltas carry nothing Baton keeps.
                    _ => {}
                }
            }
            "content_block_stop" => self.stop_block(ev.index.unwrap_or(0), out)?,
            "message_delta" => {
                if let Some(r) = ev.delta.and_then(|d| d.stop_reason) {
                    self.stop = Some(stop_reason(&r));
                }
                if let Some(u) = &ev.usage {
                    self.usage(u);
                }
            }
            "message_stop" => self.done = true,
            // A server that answered with the whole message instead of a stream.
            "message" => {
                for (i, b) in ev.content.into_iter().flatten().enumerate() {
                    let index = u32::try_from(i).unwrap_or(u32::MAX);
                    let block = self.start_block(b, out);
                    self.blocks.push((index, block));
                    self.stop_block(index, out)?;
                }
                if let Some(r) = ev.stop_reason {
                    self.stop = Some(stop_reason(&r));
                }
                if let Some(u) = &ev.usage {
                    self.usage(u);
                }
                self.done = true;
            }
            "error" => return Err(http::classify_in_stream(&self.provider, data.as_bytes())),
            // ping, and event types added later.
            _ => {}
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn end(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        if !self.done {
            return Err(Error::Transient {
                provider: self.provider.clone(),
                message: "the stream ended before the answer was complete (no message_stop)".into(),
            });
        }
        out.push_back(Chunk::Usage(self.tokens.usage(self.price)));
        let reason = match self.stop {
            // The forced output tool ends the turn; the caller sees a plain answer.
            Some(StopReason::ToolCalls) if !self.had_calls => StopReason::EndTurn,
            Some(r) => r,
            None if self.had_calls => StopReason::ToolCalls,
            None => StopReason::EndTurn,
        };
        out.push_back(Chunk::Done(reason));
        Ok(())
    }
}
