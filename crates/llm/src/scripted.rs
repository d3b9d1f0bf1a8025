//! The scripted provider: `scripted/<name>` replies from a fixture file, in order or matched by
//! a pattern on the prompt, including tool calls, errors and delays. Tests also drive a
//! [`ScriptedModel`] directly by pushing replies.
//!
//! Fixture (`<workflow dir>/scripted/<name>.yaml` or `.json`):
//!
//! ```yaml
//! replies:
//!   - match: "(?i)review"        # optional regex on the last user message
//!     text: "Looks good"
//!   - json: { passed: true }     # sent as the text, serialized
//!   - tool_calls: [{ name: echo, arguments: { text: hi } }]
//!   - error: { kind: rate_limit, message: slow down, retry_after: 1s }
//!     delay: 50ms
//!   - text: a long answer, streamed word by word
//!     pace: 100ms                # between streamed pieces (a model typing)
//!     repeat: true               # may be used any number of times
//!   - turn: 2                    # only as the step's 2nd model call (after one round of tools)
//!     text: done
//!   - json: { healthy: true }
//!     from_tool: { url: /url }     # keys of `json` copied from the last tool result (JSON pointer)
//! ```

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use futures::stream::{self, BoxStream, StreamExt};
use serde::Deserialize;
use serde_json::Value;

use crate::{Capabilities, ChatModel, ChatRequest, Chunk, Error, StopReason, ToolCall, Usage};

/// One scripted reply.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Reply {
    /// Regex on the last user message; a reply with `match` is only used when it matches.
    #[serde(default, rename = "match")]
    pub pattern: Option<String>,
    #[serde(default)]
    pub text: Option<String>,
    #[serde(default)]
    pub json: Option<Value>,
    #[serde(default)]
    pub tool_calls: Vec<ScriptedCall>,
    #[serde(default)]
    pub error: Option<ScriptedError>,
    #[serde(default)]
    pub delay: Option<baton_types::Dur>,
    /// The pause between streamed pieces of the text (a model typing), so front ends see the
    /// answer arrive piece by piece; none: the pieces come at once.
    #[serde(default)]
    pub pace: Option<baton_types::Dur>,
    #[serde(default)]
    pub usage: Option<Usage>,
    #[serde(default)]
    pub repeat: bool,
    /// Only for this turn of an agent step (1 + the assistant messages in the request): a
    /// step resumed in a new process asks for its next turn, not its first.
    #[serde(default)]
    pub turn: Option<u32>,
    /// Keys of the `json` object filled from the request's last tool result, each by a JSON
    /// pointer into it (`""`: the whole result; a result that is not JSON is a string): what
    /// a model copies from a tool's answer that a script cannot know in advance (a port
    /// picked at run time, an error's text).
    #[serde(default)]
    pub from_tool: std::collections::BTreeMap<String, String>,
}

impl Reply {
    pub fn text(t: impl Into<String>) -> Self {
        Self {
            text: Some(t.into()),
            ..Default::default()
        }
    }
    pub fn error(kind: &str, message: &str) -> Self {
        Self {
            error: Some(ScriptedError {
                kind: kind.into(),
                message: message.into(),
                retry_after: None,
            }),
            ..Default::default()
        }
    }
    pub fn tool_call(name: &str, arguments: Value) -> Self {
        Self {
            tool_calls: vec![ScriptedCall {
                name: name.into(),
                arguments,
            }],
            ..Default::default()
        }
    }
    pub fn repeating(mut self) -> Self {
        self.repeat = true;
        self
    }
    pub fn matching(mut self, pattern: &str) -> Self {
        self.pattern = Some(pattern.into());
        self
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedCall {
    pub name: String,
    #[serde(default)]
    pub arguments: Value,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ScriptedError {
    /// rate_limit, auth, context_length, transient, provider, invalid_response, timeout
    pub kind: String,
    #[serde(default)]
    pub message: String,
    #[serde(default)]
    pub retry_after: Option<baton_types::Dur>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Fixture {
    replies: Vec<Reply>,
}

struct Entry {
    reply: Reply,
    regex: Option<regex::Regex>,
    used: bool,
}

/// A model whose replies are scripted.
pub struct ScriptedModel {
    name: String,
    entries: Mutex<Vec<Entry>>,
    calls: Mutex<Vec<ChatRequest>>,
}

impl ScriptedModel {
    pub fn new(name: impl Into<String>, replies: Vec<Reply>) -> Result<Self, Error> {
        let m = Self {
            name: name.into(),
            entries: Mutex::new(Vec::new()),
            calls: Mutex::new(Vec::new()),
        };
        for r in replies {
            m.push(r)?;
        }
        Ok(m)
    }

    /// Loads a fixture file (YAML or JSON).
    pub fn from_file(name: &str, path: &Path) -> Result<Self, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| Error::UnknownModel {
            model: format!("scripted/{name}"),
            reason: format!("cannot read its fixture {}: {e}", path.display()),
        })?;
        let value = yaml_to_json(&text)
            .map_err(|e| Error::Config(format!("scripted fixture {}: {e}", path.display())))?;
        let fx: Fixture = serde_json::from_value(value)
            .map_err(|e| Error::Config(format!("scripted fixture {}: {e}", path.display())))?;
        Self::new(name, fx.replies)
    }

    /// Adds a reply at the end of the script.
    pub fn push(&self, reply: Reply) -> Result<(), Error> {
        if !reply.from_tool.is_empty() && !reply.json.as_ref().is_some_and(Value::is_object) {
            return Err(Error::Config(format!(
                "scripted/{}: from_tool fills keys of a `json` object, and this reply has none",
                self.name
            )));
        }
        if let Some(p) = reply
            .from_tool
            .values()
            .find(|p| !p.is_empty() && !p.starts_with('/'))
        {
            return Err(Error::Config(format!(
                "scripted/{}: from_tool pointer '{p}' must be empty or start with '/'",
                self.name
            )));
        }
        let regex = match &reply.pattern {
            Some(p) => Some(regex::Regex::new(p).map_err(|e| {
                Error::Config(format!(
                    "scripted/{}: bad match pattern '{p}': {e}",
                    self.name
                ))
            })?),
            None => None,
        };
        lock(&self.entries).push(Entry {
            reply,
            regex,
            used: false,
        });
        Ok(())
    }

    /// Every request received so far.
    pub fn requests(&self) -> Vec<ChatRequest> {
        lock(&self.calls).clone()
    }

    fn take(&self, req: &ChatRequest) -> Result<Reply, Error> {
        let prompt = req.last_user_text();
        let turn = 1 + req
            .messages
            .iter()
            .filter(|m| m.role == crate::Role::Assistant)
            .count();
        let mut entries = lock(&self.entries);
        let open = |e: &Entry| {
            !e.used
                && e.reply
                    .turn
                    .is_none_or(|t| usize::try_from(t).ok() == Some(turn))
        };
        let pick = entries
            .iter()
            .position(|e| open(e) && e.regex.as_ref().is_some_and(|r| r.is_match(prompt)))
            .or_else(|| entries.iter().position(|e| open(e) && e.regex.is_none()));
        match pick {
            Some(i) => {
                let e = &mut entries[i];
                if !e.reply.repeat {
                    e.used = true;
                }
                Ok(e.reply.clone())
            }
            None => Err(Error::InvalidResponse(format!(
                "scripted/{}: no scripted reply left for the prompt '{}'",
                self.name,
                truncate(prompt, 80)
            ))),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// Rough token count for scripted usage figures: one token per 4 bytes, at least 1.
fn estimate_tokens(s: &str) -> u64 {
    (s.len() as u64).div_ceil(4).max(1)
}

/// `json` with the keys of `from_tool` set from the last tool result of `req`.
fn fill_from_tool(
    name: &str,
    json: &Value,
    from_tool: &std::collections::BTreeMap<String, String>,
    req: &ChatRequest,
) -> Result<Value, Error> {
    if from_tool.is_empty() {
        return Ok(json.clone());
    }
    let result = req
        .messages
        .iter()
        .rev()
        .find(|m| m.role == crate::Role::Tool)
        .ok_or_else(|| {
            Error::InvalidResponse(format!(
                "scripted/{name}: from_tool needs a tool result, and this request has none"
            ))
        })?;
    let result: Value = serde_json::from_str(&result.content)
        .unwrap_or_else(|_| Value::String(result.content.clone()));
    let mut out = json.clone();
    for (key, pointer) in from_tool {
        let v = result.pointer(pointer).ok_or_else(|| {
            Error::InvalidResponse(format!(
                "scripted/{name}: from_tool {key}: the last tool result has nothing at '{pointer}': {}",
                truncate(&result.to_string(), 200)
            ))
        })?;
        if let Some(o) = out.as_object_mut() {
            o.insert(key.clone(), v.clone());
        }
    }
    Ok(out)
}

fn scripted_error(name: &str, e: &ScriptedError) -> Error {
    let provider = format!("scripted/{name}");
    let message = e.message.clone();
    match e.kind.as_str() {
        "rate_limit" => Error::RateLimited {
            provider,
            retry_after: e.retry_after.map(|d| d.0),
        },
        "auth" => Error::Auth { provider, message },
        "context_length" => Error::ContextLength { message },
        "transient" => Error::Transient { provider, message },
        "invalid_response" => Error::InvalidResponse(message),
        "timeout" => Error::Timeout(e.retry_after.map(|d| d.0).unwrap_or(Duration::from_secs(1))),
        _ => Error::Provider {
            provider,
            status: 500,
            message,
        },
    }
}

#[async_trait]
impl ChatModel for ScriptedModel {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let mut reply = self.take(&req)?;
        if let Some(j) = &reply.json {
            reply.json = Some(fill_from_tool(&self.name, j, &reply.from_tool, &req)?);
        }
        let prompt_tokens: u64 = req
            .messages
            .iter()
            .map(|m| estimate_tokens(&m.content))
            .sum();
        lock(&self.calls).push(req);
        if let Some(d) = reply.delay {
            tokio::time::sleep(d.0).await;
        }
        if let Some(e) = &reply.error {
            return Err(scripted_error(&self.name, e));
        }
        let text = match (&reply.text, &reply.json) {
            (Some(t), _) => t.clone(),
            (None, Some(j)) => j.to_string(),
            (None, None) => String::new(),
        };
        let usage = reply.usage.unwrap_or(Usage {
            prompt_tokens,
            completion_tokens: estimate_tokens(&text),
            cost_usd: 0.0,
        });
        let mut chunks = Vec::new();
        // Stream the text in word-sized pieces, as a real model would.
        let mut rest = text.as_str();
        while !rest.is_empty() {
            let cut = rest[1..].find(' ').map(|i| i + 1).unwrap_or(rest.len());
            chunks.push(Ok(Chunk::Text(rest[..cut].to_string())));
            rest = &rest[cut..];
        }
        let has_calls = !reply.tool_calls.is_empty();
        for (i, c) in reply.tool_calls.iter().enumerate() {
            chunks.push(Ok(Chunk::ToolCall(ToolCall {
                id: format!("call_{i}"),
                name: c.name.clone(),
                arguments: c.arguments.clone(),
            })));
        }
        chunks.push(Ok(Chunk::Usage(usage)));
        chunks.push(Ok(Chunk::Done(if has_calls {
            StopReason::ToolCalls
        } else {
            StopReason::EndTurn
        })));
        match reply.pace.map(|p| p.0).filter(|p| !p.is_zero()) {
            None => Ok(stream::iter(chunks).boxed()),
            // Each text piece after the first waits `pace`; the rest follows at once.
            Some(pace) => Ok(stream::iter(chunks)
                .enumerate()
                .then(move |(i, c)| async move {
                    if i > 0 && matches!(c, Ok(Chunk::Text(_))) {
                        tokio::time::sleep(pace).await;
                    }
                    c
                })
                .boxed()),
        }
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            streaming: true,
        }
    }
}

/// The `scripted` provider: one [`ScriptedModel`] per fixture file, shared for the process so
/// in-order replies advance across steps.
#[derive(Default)]
pub struct ScriptedProvider {
    models: Mutex<HashMap<PathBuf, Arc<ScriptedModel>>>,
    fixed: Mutex<HashMap<String, Arc<ScriptedModel>>>,
}

impl ScriptedProvider {
    /// Registers a model by name (tests), used instead of a fixture file.
    pub fn insert(&self, name: &str, model: Arc<ScriptedModel>) {
        lock(&self.fixed).insert(name.to_string(), model);
    }

    pub fn get(&self, name: &str, base_dir: &Path) -> Result<Arc<ScriptedModel>, Error> {
        if let Some(m) = lock(&self.fixed).get(name) {
            return Ok(m.clone());
        }
        let dir = base_dir.join("scripted");
        let path = ["yaml", "yml", "json"]
            .iter()
            .map(|ext| dir.join(format!("{name}.{ext}")))
            .find(|p| p.is_file())
            .ok_or_else(|| Error::UnknownModel {
                model: format!("scripted/{name}"),
                reason: format!("no fixture {}/{name}.yaml (or .json)", dir.display()),
            })?;
        let mut models = lock(&self.models);
        if let Some(m) = models.get(&path) {
            return Ok(m.clone());
        }
        let m = Arc::new(ScriptedModel::from_file(name, &path)?);
        models.insert(path, m.clone());
        Ok(m)
    }
}

/// Reads a small YAML (or JSON) document into JSON.
pub fn yaml_to_json(text: &str) -> Result<Value, String> {
    use yaml_rust2::{Yaml, YamlLoader};
    fn conv(y: &Yaml) -> Result<Value, String> {
        Ok(match y {
            Yaml::Real(s) => s
                .parse::<f64>()
                .ok()
                .and_then(serde_json::Number::from_f64)
                .map(Value::Number)
                .unwrap_or_else(|| Value::String(s.clone())),
            Yaml::Integer(i) => Value::from(*i),
            Yaml::String(s) => Value::String(s.clone()),
            Yaml::Boolean(b) => Value::Bool(*b),
            Yaml::Array(a) => Value::Array(a.iter().map(conv).collect::<Result<_, _>>()?),
            Yaml::Hash(h) => {
                let mut m = serde_json::Map::new();
                for (k, v) in h {
                    let key = match k {
                        Yaml::String(s) => s.clone(),
                        Yaml::Integer(i) => i.to_string(),
                        Yaml::Boolean(b) => b.to_string(),
                        other => return Err(format!("unsupported mapping key {other:?}")),
                    };
                    m.insert(key, conv(v)?);
                }
                Value::Object(m)
            }
            Yaml::Null => Value::Null,
            Yaml::Alias(_) | Yaml::BadValue => return Err("unsupported YAML value".into()),
        })
    }
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match docs.first() {
        Some(d) => conv(d),
        None => Ok(Value::Null),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::Message;

    fn req(p: &str) -> ChatRequest {
        ChatRequest {
            model: "t".into(),
            messages: vec![Message::user(p)],
            ..Default::default()
        }
    }

    #[tokio::test]
    async fn in_order_then_matched_then_exhausted() {
        let m = ScriptedModel::new(
            "t",
            vec![
                Reply::text("first"),
                Reply::text("matched").matching("^special"),
                Reply::text("second"),
            ],
        )
        .unwrap();
        assert_eq!(m.complete(req("a")).await.unwrap().content, "first");
        assert_eq!(
            m.complete(req("special one")).await.unwrap().content,
            "matched"
        );
        assert_eq!(m.complete(req("b")).await.unwrap().content, "second");
        let err = m.complete(req("c")).await.unwrap_err();
        assert!(err.to_string().contains("no scripted reply left"), "{err}");
    }

    #[tokio::test]
    async fn errors_and_tool_calls() {
        let m = ScriptedModel::new(
            "t",
            vec![
                Reply::error("rate_limit", "slow"),
                Reply::tool_call("echo", serde_json::json!({"text": "x"})),
            ],
        )
        .unwrap();
        let e = m.complete(req("a")).await.unwrap_err();
        assert!(e.is_retryable());
        let r = m.complete(req("a")).await.unwrap();
        assert_eq!(r.tool_calls[0].name, "echo");
        assert_eq!(r.stop_reason, StopReason::ToolCalls);
    }

    #[tokio::test]
    async fn a_paced_reply_streams_its_pieces_apart() {
        let v = yaml_to_json("replies:\n  - text: one two three\n    pace: 30ms\n").unwrap();
        let f: Fixture = serde_json::from_value(v).unwrap();
        let m = ScriptedModel::new("t", f.replies).unwrap();
        let mut s = m.stream(req("a")).await.unwrap();
        let started = std::time::Instant::now();
        let mut pieces = Vec::new();
        while let Some(c) = s.next().await {
            if let Chunk::Text(t) = c.unwrap() {
                pieces.push((t, started.elapsed()));
            }
        }
        let text: String = pieces.iter().map(|(t, _)| t.as_str()).collect();
        assert_eq!(text, "one two three");
        assert_eq!(pieces.len(), 3);
        // Each piece after the first comes a pace after the one before.
        let gap = pieces[2].1 - pieces[0].1;
        assert!(gap >= std::time::Duration::from_millis(60), "{pieces:?}");
    }

    #[tokio::test]
    async fn from_tool_copies_the_last_tool_result() {
        let v = yaml_to_json(
            "replies:\n  - json: { healthy: true }\n    from_tool: { url: /url, code: /health/status }\n  - json: { healthy: false }\n    from_tool: { notes: '' }\n  - json: { a: 1 }\n    from_tool: { b: /missing }\n",
        )
        .unwrap();
        let f: Fixture = serde_json::from_value(v).unwrap();
        let m = ScriptedModel::new("t", f.replies).unwrap();
        let with = |result: &str| {
            let mut r = req("deploy");
            r.messages.push(Message::assistant("", vec![]));
            r.messages.push(Message::tool("call_0", "older"));
            r.messages.push(Message::tool("call_1", result));
            r
        };
        let a = m
            .complete(with(
                r#"{"url":"http://127.0.0.1:4000","health":{"status":200}}"#,
            ))
            .await
            .unwrap();
        let a: Value = serde_json::from_str(&a.content).unwrap();
        assert_eq!(
            a,
            serde_json::json!({"healthy": true, "url": "http://127.0.0.1:4000", "code": 200})
        );
        // A result that is not JSON is its text.
        let b = m.complete(with("error: deploy failed: 404")).await.unwrap();
        let b: Value = serde_json::from_str(&b.content).unwrap();
        assert_eq!(b["notes"], "error: deploy failed: 404");
        let e = m.complete(with("{}")).await.unwrap_err().to_string();
        assert!(e.contains("from_tool b") && e.contains("'/missing'"), "{e}");
        // Without a tool result, or without a json object to fill, it is refused.
        let m = ScriptedModel::new("t", vec![]).unwrap();
        let mut r = Reply {
            json: Some(serde_json::json!({})),
            ..Default::default()
        };
        r.from_tool.insert("x".into(), "/x".into());
        m.push(r.clone()).unwrap();
        let e = m.complete(req("a")).await.unwrap_err().to_string();
        assert!(e.contains("needs a tool result"), "{e}");
        r.json = Some(serde_json::json!([1]));
        assert!(m.push(r.clone()).unwrap_err().to_string().contains("json"));
        r.json = Some(serde_json::json!({}));
        r.from_tool.insert("y".into(), "y".into());
        assert!(
            m.push(r)
                .unwrap_err()
                .to_string()
                .contains("must be empty or start")
        );
    }

    #[test]
    fn fixture_yaml() {
        let v = yaml_to_json("replies:\n  - text: hi\n    delay: 5ms\n").unwrap();
        let f: Fixture = serde_json::from_value(v).unwrap();
        assert_eq!(f.replies[0].text.as_deref(), Some("hi"));
    }
}
