//! Constrained decoding: the JSON Schema a reply must match (a tool call, or a structured
//! output), the instructions that tell the model about it, and reading the reply back.

use baton_llm::{ChatRequest, ResponseFormat, Role, ToolCall, ToolSpec};
use serde_json::{Value, json};

use crate::Error;

/// What shape the reply must have.
#[derive(Clone, Debug, PartialEq)]
pub enum Shape {
    /// Free text.
    Text,
    /// A call of one of the tools, or (after a tool result) a final answer in text.
    Tools { allow_answer: bool },
    /// JSON matching the schema.
    Json(Value),
}

impl Shape {
    /// The shape `req` asks for. With tools, the model must call one, except right after a
    /// tool result, when it may also answer in text: a 135M model left free to choose rarely
    /// calls a tool at all.
    pub fn of(req: &ChatRequest) -> Shape {
        if !req.tools.is_empty() {
            let after_tool = req.messages.last().is_some_and(|m| m.role == Role::Tool);
            return Shape::Tools {
                allow_answer: after_tool,
            };
        }
        match &req.response_format {
            Some(ResponseFormat::JsonSchema { schema, .. }) => Shape::Json(schema.clone()),
            Some(ResponseFormat::JsonObject) => Shape::Json(json!({ "type": "object" })),
            None => Shape::Text,
        }
    }

    /// The JSON Schema of the whole reply, if constrained.
    pub fn schema(&self, tools: &[ToolSpec]) -> Option<Value> {
        match self {
            Shape::Text => None,
            Shape::Json(s) => Some(s.clone()),
            Shape::Tools { allow_answer } => {
                let mut options: Vec<Value> = tools
                    .iter()
                    .map(|t| {
                        json!({
                            "type": "object",
                            "properties": { "name": { "const": t.name }, "arguments": bounded(arguments_schema(t)) },
                            "required": ["name", "arguments"],
                            "additionalProperties": false
                        })
                    })
                    .collect();
                if *allow_answer {
                    options.push(json!({
                        "type": "object",
                        "properties": { "answer": { "type": "string", "maxLength": MAX_ANSWER_CHARS } },
                        "required": ["answer"],
                        "additionalProperties": false
                    }));
                }
                Some(if options.len() == 1 {
                    options.remove(0)
                } else {
                    json!({ "oneOf": options })
                })
            }
        }
    }

    /// The instruction appended to the system prompt.
    pub fn instructions(&self, tools: &[ToolSpec]) -> Option<String> {
        match self {
            Shape::Text => None,
            Shape::Json(s) => Some(format!(
                "Answer with only a JSON value that matches this JSON Schema:\n{}",
                compact(s)
            )),
            Shape::Tools { allow_answer } => {
                // Close to the function-calling prompt SmolLM2 was tuned on.
                let list: Vec<Value> = tools
                    .iter()
                    .map(|t| json!({ "name": t.name, "description": t.description, "parameters": arguments_schema(t) }))
                    .collect();
                let mut out = format!(
                    "You are an expert in composing functions. You are given a question and a set of possible \
                     functions. Based on the question, you will need to make one function/tool call to achieve \
                     the purpose.\n\nYou have access to the following tools:\n<tools>{}</tools>\n\n\
                     The output MUST strictly adhere to the following format: \
                     {{\"name\": <tool name>, \"arguments\": <arguments object>}}\n",
                    compact(&Value::Array(list))
                );
                if *allow_answer {
                    out.push_str(
                        "If the tool results already answer the question, give your final answer instead, \
                         as {\"answer\": <your answer as a string>}.\n",
                    );
                }
                Some(out)
            }
        }
    }
}

fn compact(v: &Value) -> String {
    serde_json::to_string(v).unwrap_or_default()
}

/// The most characters a tool argument's string may have when its schema sets no bound, and
/// a final answer after tool results: a 135M model inside a JSON string rarely closes it on
/// its own, and would run to `max_tokens` and fail the reply.
const MAX_ARGUMENT_CHARS: u64 = 280;
const MAX_ANSWER_CHARS: u64 = 800;

/// `schema` with [`MAX_ARGUMENT_CHARS`] on the string properties that set no `maxLength`
/// (top level: the arguments a tool takes).
fn bounded(mut schema: Value) -> Value {
    if let Some(props) = schema.get_mut("properties").and_then(Value::as_object_mut) {
        for p in props.values_mut() {
            if let Some(o) = p.as_object_mut()
                && o.get("type").and_then(Value::as_str) == Some("string")
                && !o.contains_key("maxLength")
                && !o.contains_key("enum")
            {
                o.insert("maxLength".into(), json!(MAX_ARGUMENT_CHARS));
            }
        }
    }
    schema
}

/// A tool's argument schema; a tool without one takes any object.
fn arguments_schema(t: &ToolSpec) -> Value {
    match &t.parameters {
        Value::Object(o) if !o.is_empty() => t.parameters.clone(),
        _ => json!({ "type": "object" }),
    }
}

/// The GBNF grammar for `schema`, through llama.cpp's own converter.
pub fn grammar_for(schema: &Value) -> Result<String, Error> {
    llama_cpp_2::json_schema_to_grammar(&compact(schema)).map_err(|e| Error::Grammar(e.to_string()))
}

/// What a constrained tool reply said.
#[derive(Clone, Debug, PartialEq)]
pub enum ToolReply {
    Call(ToolCall),
    Answer(String),
}

/// Reads a reply generated under [`Shape::Tools`].
pub fn parse_tool_reply(text: &str, call_id: String) -> Result<ToolReply, Error> {
    let v: Value = serde_json::from_str(text.trim())
        .map_err(|e| Error::InvalidOutput(format!("{e} in {:?}", truncate(text))))?;
    if let Some(answer) = v.get("answer").and_then(Value::as_str) {
        return Ok(ToolReply::Answer(answer.to_string()));
    }
    match (v.get("name").and_then(Value::as_str), v.get("arguments")) {
        (Some(name), Some(arguments)) => Ok(ToolReply::Call(ToolCall {
            id: call_id,
            name: name.to_string(),
            arguments: arguments.clone(),
        })),
        _ => Err(Error::InvalidOutput(format!(
            "not a tool call: {:?}",
            truncate(text)
        ))),
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(200).collect()
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use baton_llm::Message;

    fn weather() -> ToolSpec {
        ToolSpec {
            name: "get_weather".into(),
            description: "Weather of a city.".into(),
            parameters: json!({"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}),
            effects: Default::default(),
        }
    }

    #[test]
    fn tools_force_a_call_until_a_result_comes_back() {
        let mut req = ChatRequest {
            tools: vec![weather()],
            messages: vec![Message::user("hi")],
            ..Default::default()
        };
        assert_eq!(
            Shape::of(&req),
            Shape::Tools {
                allow_answer: false
            }
        );
        let schema = Shape::of(&req).schema(&req.tools).unwrap();
        assert_eq!(schema["properties"]["name"]["const"], "get_weather");
        req.messages.push(Message::tool("call_0", "sunny"));
        let shape = Shape::of(&req);
        assert_eq!(shape, Shape::Tools { allow_answer: true });
        assert_eq!(
            shape.schema(&req.tools).unwrap()["oneOf"]
                .as_array()
                .unwrap()
                .len(),
            2
        );
    }

    #[test]
    fn replies_are_read_back() {
        let call = parse_tool_reply(
            r#" {"name": "get_weather", "arguments": {"city": "Paris"}} "#,
            "c1".into(),
        )
        .unwrap();
        assert_eq!(
            call,
            ToolReply::Call(ToolCall {
                id: "c1".into(),
                name: "get_weather".into(),
                arguments: json!({"city": "Paris"})
            })
        );
        assert_eq!(
            parse_tool_reply(r#"{"answer": "sunny"}"#, "c".into()).unwrap(),
            ToolReply::Answer("sunny".into())
        );
        assert!(matches!(
            parse_tool_reply(r#"{"name": "x""#, "c".into()),
            Err(Error::InvalidOutput(_))
        ));
    }
}
