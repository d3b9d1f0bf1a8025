//! Structured output on servers that differ: the ways of asking for JSON that matches a schema,
//! the order `auto` tries them in, what each provider learned about its models, and checking an
//! answer against the schema (with bounded re-asks) for callers that want it done here.
//!
//! `auto` asks for `json_schema`; a server that refuses the request as invalid (a 4xx, or a 5xx
//! whose body says a field is not accepted: [`Error::InvalidRequest`]) is asked again, once per
//! way, with `json_object` (the schema in a system message), then a forced tool call, then the
//! prompt alone. What worked is remembered per model for the process and logged once.

use std::collections::HashMap;
use std::str::FromStr;
use std::sync::Mutex;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::{ChatModel, ChatRequest, ChatResponse, Error, Message, ResponseFormat};

/// How a schema is asked for (`structured_output` in `baton.toml`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StructuredOutput {
    /// `json_schema`, falling back as the server refuses.
    #[default]
    Auto,
    /// `response_format: {type: json_schema}`.
    JsonSchema,
    /// `response_format: {type: json_object}` with the schema in a system message (and as
    /// `schema`, which llama.cpp's servers use to constrain the answer).
    JsonObject,
    /// A tool whose parameters are the schema, which the model is made to call.
    Tools,
    /// The schema in a system message, nothing else.
    Prompt,
}

impl StructuredOutput {
    pub const ALL: [StructuredOutput; 5] = [
        StructuredOutput::Auto,
        StructuredOutput::JsonSchema,
        StructuredOutput::JsonObject,
        StructuredOutput::Tools,
        StructuredOutput::Prompt,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            StructuredOutput::Auto => "auto",
            StructuredOutput::JsonSchema => "json_schema",
            StructuredOutput::JsonObject => "json_object",
            StructuredOutput::Tools => "tools",
            StructuredOutput::Prompt => "prompt",
        }
    }

    /// The way `auto` tries after this one is refused.
    pub fn fallback(self) -> Option<Self> {
        match self {
            StructuredOutput::Auto => Some(StructuredOutput::JsonSchema),
            StructuredOutput::JsonSchema => Some(StructuredOutput::JsonObject),
            StructuredOutput::JsonObject => Some(StructuredOutput::Tools),
            StructuredOutput::Tools => Some(StructuredOutput::Prompt),
            StructuredOutput::Prompt => None,
        }
    }
}

impl FromStr for StructuredOutput {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|m| m.as_str() == s)
            .ok_or_else(|| {
                format!(
                    "'{s}' is not a structured_output; one of: {}",
                    Self::ALL.map(Self::as_str).join(", ")
                )
            })
    }
}

/// The way that worked, per model, for one provider; shared by the clones of its adapter, so it
/// lasts for the process.
#[derive(Debug, Default)]
pub struct Learned {
    by_model: Mutex<HashMap<String, StructuredOutput>>,
}

impl Learned {
    /// What worked for `model` before, if anything did.
    pub fn get(&self, model: &str) -> Option<StructuredOutput> {
        self.by_model
            .lock()
            .ok()
            .and_then(|m| m.get(model).copied())
    }

    /// Remembers that `mode` worked for `model`; the first time a fallback is remembered it is
    /// logged, with the refusal that led to it.
    pub fn remember(
        &self,
        provider: &str,
        model: &str,
        mode: StructuredOutput,
        refused: Option<&Error>,
    ) {
        let Ok(mut m) = self.by_model.lock() else {
            return;
        };
        let before = m.insert(model.to_string(), mode);
        if before != Some(mode)
            && let Some(e) = refused
        {
            tracing::warn!(
                provider,
                model,
                structured_output = mode.as_str(),
                refused = %e,
                "the server refused the richer ways of asking for structured output; using {} for this model from now on",
                mode.as_str()
            );
        }
    }
}

/// The system message that asks for JSON matching `schema`.
pub fn instruction(schema: &Value) -> String {
    format!("Reply with one JSON value that matches this JSON Schema, and nothing else:\n{schema}")
}

/// The JSON inside an answer: the text itself, or the body of a Markdown code block around it.
fn json_text(answer: &str) -> &str {
    let t = answer.trim();
    let Some(fenced) = t.strip_prefix("```") else {
        return t;
    };
    // The fence's first line may name a language (```json).
    let body = fenced.split_once('\n').map_or(fenced, |(_, rest)| rest);
    body.trim_end().strip_suffix("```").unwrap_or(body).trim()
}

/// Checks `answer` against `schema`: the JSON value, or what is wrong with it.
pub fn validate(schema: &Value, answer: &str) -> Result<Value, String> {
    let validator = jsonschema::validator_for(schema)
        .map_err(|e| format!("the output schema itself is invalid: {e}"))?;
    let value: Value = serde_json::from_str(json_text(answer))
        .map_err(|e| format!("the answer is not JSON ({e})"))?;
    let problems: Vec<String> = validator
        .iter_errors(&value)
        .take(5)
        .map(|e| match e.instance_path.to_string() {
            p if p.is_empty() => e.to_string(),
            p => format!("at {p}: {e}"),
        })
        .collect();
    if problems.is_empty() {
        Ok(value)
    } else {
        Err(problems.join("; "))
    }
}

/// Asks `model` for an answer matching the request's schema, checks it, and asks again with
/// what was wrong, at most `max_retries` times; then fails with [`Error::InvalidOutput`]. A
/// request without a schema is answered as it is (`Value::String` of the text).
pub async fn complete(
    model: &dyn ChatModel,
    mut req: ChatRequest,
    max_retries: u32,
) -> Result<(Value, ChatResponse), Error> {
    let Some(ResponseFormat::JsonSchema { schema, .. }) = req.response_format.clone() else {
        let resp = model.complete(req).await?;
        return Ok((Value::String(resp.content.clone()), resp));
    };
    let mut attempt = 0;
    loop {
        attempt += 1;
        let resp = model.complete(req.clone()).await?;
        let why = match validate(&schema, &resp.content) {
            Ok(v) => return Ok((v, resp)),
            Err(why) => why,
        };
        if attempt > max_retries {
            return Err(Error::InvalidOutput {
                attempts: attempt,
                message: why,
            });
        }
        req.messages
            .push(Message::assistant(resp.content, Vec::new()));
        req.messages.push(Message::user(format!(
            "That answer does not match the schema: {why}. Reply again with only the JSON."
        )));
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_and_order() {
        for m in StructuredOutput::ALL {
            assert_eq!(m.as_str().parse::<StructuredOutput>().unwrap(), m);
        }
        let e = "xml".parse::<StructuredOutput>().unwrap_err();
        assert!(e.contains("json_object"), "{e}");
        let mut order = vec![];
        let mut m = StructuredOutput::Auto;
        while let Some(next) = m.fallback() {
            order.push(next.as_str());
            m = next;
        }
        assert_eq!(order, ["json_schema", "json_object", "tools", "prompt"]);
    }

    #[test]
    fn validation_reads_fenced_json_and_names_what_is_wrong() {
        let schema = json!({"type": "object", "required": ["ok"], "properties": {"ok": {"type": "boolean"}}});
        assert_eq!(
            validate(&schema, "```json\n{\"ok\": true}\n```").unwrap(),
            json!({"ok": true})
        );
        assert!(
            validate(&schema, "{\"ok\": 1}")
                .unwrap_err()
                .contains("/ok")
        );
        assert!(validate(&schema, "sure!").unwrap_err().contains("not JSON"));
        assert!(
            validate(&json!({"type": 7}), "{}")
                .unwrap_err()
                .contains("schema itself")
        );
    }

    #[test]
    fn learned_per_model() {
        let l = Learned::default();
        assert_eq!(l.get("m"), None);
        let refused = Error::InvalidRequest {
            provider: "p".into(),
            status: 500,
            field: Some("response_format.type".into()),
            message: "no".into(),
        };
        l.remember("p", "m", StructuredOutput::JsonObject, Some(&refused));
        assert_eq!(l.get("m"), Some(StructuredOutput::JsonObject));
        assert_eq!(l.get("other"), None);
    }
}
