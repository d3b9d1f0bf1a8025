//! Ollama's native chat API (`POST /api/chat`): streamed as newline-delimited JSON, with tools
//! and structured output (`format`).

use std::collections::VecDeque;

use async_trait::async_trait;
use futures::stream::BoxStream;
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::adapter::{Adapter, Connection, KeyHeader};
use crate::http::{self, Endpoint, Framing, StreamParser};
use crate::pricing::{Price, Tokens};
use crate::{ChatRequest, Chunk, Error, ResponseFormat, Role, StopReason, ToolCall};

/// The default base URL of a local Ollama server.
pub const DEFAULT_BASE_URL: &str = "http://localhost:11434";

/// Settings of the Ollama adapter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Options {
    /// How long Ollama keeps the model loaded after the call (`keep_alive`, e.g. `5m`).
    pub keep_alive: Option<String>,
    /// Model options sent in `options` with every call (e.g. `num_ctx`, `top_p`).
    pub model_options: Map<String, Value>,
    /// Fields merged into every request body.
    pub extra_body: Map<String, Value>,
}

/// A model served by Ollama. Cheap to clone.
pub type Ollama = Adapter<Protocol>;

/// Ollama's `/api/chat` wire format, with its options.
#[derive(Debug)]
pub struct Protocol {
    options: Options,
}

impl Ollama {
    pub fn new(endpoint: Endpoint, options: Options) -> Result<Self, Error> {
        // Ollama itself takes no key, but it is often put behind a proxy that does.
        let conn = Connection::new(
            endpoint,
            "api/chat",
            &KeyHeader::Bearer,
            "application/x-ndjson",
        )?;
        Ok(Adapter::with_protocol(conn, Protocol { options }))
    }
}

fn build_body(opts: &Options, model: &str, req: &ChatRequest) -> Value {
    let mut messages = Vec::with_capacity(req.messages.len());
    for m in &req.messages {
        let v = match m.role {
            Role::System => json!({"role": "system", "content": m.content}),
            Role::User => json!({"role": "user", "content": m.content}),
            Role::Assistant => {
                let mut o = json!({"role": "assistant", "content": m.content});
                if !m.tool_calls.is_empty() {
                    o["tool_calls"] = m
                        .tool_calls
                        .iter()
                        .map(|c| json!({"function": {"name": c.name, "arguments": c.arguments}}))
                        .collect();
                }
                o
            }
            Role::Tool => {
                // Ollama matches results to calls by tool name; find it from the call's id.
                let name = m.tool_call_id.as_deref().and_then(|id| {
                    req.messages
                        .iter()
                        .flat_map(|x| x.tool_calls.iter())
                        .find(|c| c.id == id)
                        .map(|c| c.name.clone())
                });
                let mut o = json!({"role": "tool", "content": m.content});
                if let Some(n) = name {
                    o["tool_name"] = n.into();
                }
                o
            }
        };
        messages.push(v);
    }
    let mut body = Map::new();
    body.insert("model".into(), model.into());
    body.insert("messages".into(), messages.into());
    if !req.tools.is_empty() {
        let tools: Vec<Value> = req
            .tools
            .iter()
            .map(|t| json!({"type": "function", "function": {"name": t.name, "description": t.description, "parameters": t.parameters}}))
            .collect();
        body.insert("tools".into(), tools.into());
    }
    match &req.response_format {
        None => {}
        Some(ResponseFormat::JsonObject) => {
            body.insert("format".into(), "json".into());
        }
        Some(ResponseFormat::JsonSchema { schema, .. }) => {
            body.insert("format".into(), schema.clone());
        }
    }
    let mut options = opts.model_options.clone();
    if let Some(t) = req.temperature {
        options.insert("temperature".into(), http::number(t));
    }
    if let Some(n) = req.max_tokens {
        options.insert("num_predict".into(), n.into());
    }
    if !options.is_empty() {
        body.insert("options".into(), options.into());
    }
    if let Some(k) = &opts.keep_alive {
        body.insert("keep_alive".into(), k.clone().into());
    }
    body.insert("stream".into(), true.into());
    for (k, v) in &opts.extra_body {
        body.insert(k.clone(), v.clone());
    }
    Value::Object(body)
}

#[async_trait]
impl crate::adapter::Protocol for Protocol {
    const NAME: &'static str = "Ollama";

    fn body(&self, model: &str, req: &ChatRequest) -> Result<Value, Error> {
        Ok(build_body(&self.options, model, req))
    }

    async fn call(
        &self,
        conn: &Connection,
        model: &str,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let body = build_body(&self.options, model, &req);
        let parser = Parser {
            provider: conn.provider().to_string(),
            price: conn.price(model),
            calls: 0,
            done: false,
        };
        conn.call(model, &body, Framing::Ndjson, parser).await
    }
}

#[derive(Deserialize)]
struct WireLine {
    #[serde(default)]
    message: Option<WireMessage>,
    #[serde(default)]
    done: bool,
    #[serde(default)]
    done_reason: Option<String>,
    #[serde(default)]
    prompt_eval_count: Option<u64>,
    #[serde(default)]
    eval_count: Option<u64>,
    #[serde(default)]
    error: Option<Value>,
}

#[derive(Deserialize)]
struct WireMessage {
    #[serde(default)]
    content: Option<String>,
    #[serde(default)]
    tool_calls: Option<Vec<WireCall>>,
}

#[derive(Deserialize)]
struct WireCall {
    #[serde(default)]
    id: Option<String>,
    function: WireFunction,
}

#[derive(Deserialize)]
struct WireFunction {
    name: String,
    #[serde(default)]
    arguments: Option<Value>,
}

struct Parser {
    provider: String,
    price: Option<Price>,
    calls: usize,
    done: bool,
}

impl StreamParser for Parser {
    fn item(&mut self, _event: &str, data: &str, out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        let line: WireLine = http::parse_item(&self.provider, "an Ollama chat message", data)?;
        if let Some(err) = line.error {
            return Err(http::stream_error(&self.provider, err));
        }
        if let Some(m) = line.message {
            if let Some(t) = m.content.filter(|t| !t.is_empty()) {
                out.push_back(Chunk::Text(t));
            }
            for c in m.tool_calls.into_iter().flatten() {
                let name = c.function.name;
                let arguments = match c.function.arguments {
                    None | Some(Value::Null) => Value::Object(Map::new()),
                    Some(Value::String(s)) => http::parse_arguments(&name, &s)?,
                    Some(v @ Value::Object(_)) => v,
                    Some(other) => {
                        return Err(Error::InvalidToolArguments {
                            tool: name,
                            message: format!("arguments must be a JSON object, got {other}"),
                        });
                    }
                };
                let id =
                    c.id.filter(|i| !i.is_empty())
                        .unwrap_or_else(|| format!("call_{}", self.calls));
                self.calls += 1;
                out.push_back(Chunk::ToolCall(ToolCall {
                    id,
                    name,
                    arguments,
                }));
            }
        }
        if line.done {
            self.done = true;
            let tokens = Tokens {
                input: line.prompt_eval_count.unwrap_or(0),
                output: line.eval_count.unwrap_or(0),
                ..Default::default()
            };
            out.push_back(Chunk::Usage(tokens.usage(self.price)));
            let reason = match line.done_reason.as_deref() {
                Some("length") => StopReason::MaxTokens,
                _ if self.calls > 0 => StopReason::ToolCalls,
                _ => StopReason::EndTurn,
            };
            out.push_back(Chunk::Done(reason));
        }
        Ok(())
    }

    fn finished(&self) -> bool {
        self.done
    }

    fn end(&mut self, _out: &mut VecDeque<Chunk>) -> Result<(), Error> {
        if self.done {
            return Ok(());
        }
        Err(Error::Transient {
            provider: self.provider.clone(),
            message: "the stream ended before the answer was complete (no line with done: true)"
                .into(),
        })
    }
}
