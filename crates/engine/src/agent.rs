//! An agent step: prompt -> model -> tool calls (up to `max_tool_turns` rounds) -> answer,
//! checked against the output schema, re-asking the model with the error when it does not fit.

use std::sync::Arc;

use baton_llm::{ChatModel, ChatRequest, Message, ResponseFormat, ToolCall};
use baton_tools::{Registry, ToolContext};
use baton_types::{Progress, StepError, StepErrorKind, Usage};
use serde_json::Value;

/// Everything an agent step needs, rendered.
pub struct AgentJob {
    pub model_ref: String,
    pub model: Arc<dyn ChatModel>,
    pub system: Option<String>,
    pub prompt: String,
    pub temperature: Option<f32>,
    pub max_tokens: Option<u32>,
    pub tools: Vec<String>,
    pub registry: Arc<Registry>,
    pub max_tool_turns: u32,
    pub schema: Option<(Value, u32)>,
    pub tool_ctx: ToolContext,
    /// Where streamed text goes (turn, text), when someone watches; `None`: whole answers.
    pub deltas: Option<DeltaFn>,
}

/// Receives a step's model output as it streams: (turn, text since the last call).
pub type DeltaFn = Arc<dyn Fn(u32, &str) + Send + Sync>;

/// How often streamed text is passed on: often enough to look live, rarely enough that a fast
/// model does not flood a WebSocket or a terminal with one event per token.
const DELTA_EVERY: std::time::Duration = std::time::Duration::from_millis(50);

/// One model call: streamed (and passed on, coalesced) when someone watches, else whole.
async fn call_model(
    job: &AgentJob,
    req: baton_llm::ChatRequest,
    turn: u32,
) -> Result<baton_llm::ChatResponse, baton_llm::Error> {
    let Some(deltas) = &job.deltas else {
        return job.model.complete(req).await;
    };
    use futures::StreamExt;
    let mut s = job.model.stream(req).await?;
    let mut resp = baton_llm::ChatResponse::default();
    let mut pending = String::new();
    let mut last = std::time::Instant::now();
    while let Some(chunk) = s.next().await {
        match chunk? {
            baton_llm::Chunk::Text(t) => {
                resp.content.push_str(&t);
                pending.push_str(&t);
                if last.elapsed() >= DELTA_EVERY {
                    deltas(turn, &pending);
                    pending.clear();
                    last = std::time::Instant::now();
                }
            }
            baton_llm::Chunk::ToolCall(c) => resp.tool_calls.push(c),
            baton_llm::Chunk::Usage(u) => resp.usage.add(&u),
            baton_llm::Chunk::Done(r) => {
                resp.stop_reason = r;
                break;
            }
        }
    }
    if !pending.is_empty() {
        deltas(turn, &pending);
    }
    Ok(resp)
}

fn model_error(e: &baton_llm::Error) -> StepError {
    StepError {
        retryable: e.is_retryable(),
        ..StepError::new(StepErrorKind::Model, format!("model: {e}"))
    }
}

/// Strips a Markdown code fence around a JSON answer.
fn strip_fence(s: &str) -> &str {
    let t = s.trim();
    if let Some(rest) = t.strip_prefix("```") {
        let rest = rest.trim_start_matches(|c: char| c.is_ascii_alphanumeric());
        if let Some(inner) = rest.trim_end().strip_suffix("```") {
            return inner.trim();
        }
    }
    t
}

/// Checks an answer against a schema; the error lists what is wrong.
pub fn check_output(schema: &Value, text: &str) -> Result<Value, String> {
    let v: Value = serde_json::from_str(strip_fence(text))
        .map_err(|e| format!("the answer is not JSON ({e})"))?;
    let validator =
        jsonschema::validator_for(schema).map_err(|e| format!("invalid output schema: {e}"))?;
    let errors: Vec<String> = validator
        .iter_errors(&v)
        .take(5)
        .map(|e| {
            let path = e.instance_path.to_string();
            if path.is_empty() {
                e.to_string()
            } else {
                format!("at {path}: {e}")
            }
        })
        .collect();
    if errors.is_empty() {
        Ok(v)
    } else {
        Err(errors.join("; "))
    }
}

/// Runs the step. `progress` receives what happens along the way.
pub async fn run(
    job: AgentJob,
    progress: impl Fn(Progress) + Send + Sync,
) -> (Result<Value, StepError>, Usage) {
    let mut usage = Usage::default();
    let mut messages = opening_messages(&job);
    let (tools, response_format) = offered(&job);
    let model_name = baton_llm::split_ref(&job.model_ref)
        .map(|(_, m)| m.to_string())
        .unwrap_or_default();
    let mut tool_turns = 0u32;
    let mut reasks = 0u32;
    let mut turn = 0u32;
    loop {
        turn += 1;
        let req = ChatRequest {
            model: model_name.clone(),
            messages: messages.clone(),
            tools: tools.clone(),
            temperature: job.temperature,
            max_tokens: job.max_tokens,
            response_format: response_format.clone(),
        };
        let resp = tokio::select! {
            r = call_model(&job, req, turn) => r,
            _ = job.tool_ctx.cancel.cancelled() => return (Err(StepError::fatal(StepErrorKind::Cancelled, "cancelled")), usage),
        };
        let resp = match resp {
            Ok(r) => r,
            Err(e) => return (Err(model_error(&e)), usage),
        };
        usage.add(&resp.usage);
        progress(model_reply(&job, turn, &resp));
        if !resp.tool_calls.is_empty() {
            if tool_turns >= job.max_tool_turns {
                let msg = format!(
                    "the model kept calling tools past max_tool_turns ({})",
                    job.max_tool_turns
                );
                return (Err(StepError::fatal(StepErrorKind::ToolTurns, msg)), usage);
            }
            tool_turns += 1;
            answer_tool_calls(&job, &resp, &mut messages, &progress).await;
            continue;
        }
        let Some((schema, max_retries)) = &job.schema else {
            return (Ok(Value::String(resp.content)), usage);
        };
        match check_output(schema, &resp.content) {
            Ok(v) => return (Ok(v), usage),
            Err(why) if reasks >= *max_retries => {
                let msg = format!(
                    "the answer did not match the output schema after {} attempts: {why}",
                    reasks + 1
                );
                return (
                    Err(StepError::fatal(StepErrorKind::InvalidOutput, msg)),
                    usage,
                );
            }
            Err(why) => {
                reasks += 1;
                progress(Progress::OutputRejected {
                    attempt: reasks,
                    error: why.clone(),
                });
                messages.push(Message::assistant(resp.content.clone(), Vec::new()));
                messages.push(Message::user(format!(
                    "Your answer was not valid: {why}. Answer again with only JSON matching the schema."
                )));
            }
        }
    }
}

/// What every request of the step offers the model: its tools (never the reserved sandbox step
/// tool) and, with an output schema, the structured answer asked for.
fn offered(job: &AgentJob) -> (Vec<baton_types::ToolSpec>, Option<ResponseFormat>) {
    let tools = job
        .tools
        .iter()
        .filter(|t| *t != baton_tools::sandbox_step::STEP_TOOL)
        .filter_map(|t| job.registry.get(t).map(|t| t.spec()))
        .collect();
    let response_format = job
        .schema
        .as_ref()
        .map(|(s, _)| ResponseFormat::JsonSchema {
            name: "output".into(),
            schema: s.clone(),
        });
    (tools, response_format)
}

/// The progress report of one model reply.
fn model_reply(job: &AgentJob, turn: u32, resp: &baton_llm::ChatResponse) -> Progress {
    Progress::ModelReply {
        model: job.model_ref.clone(),
        turn,
        content: resp.content.clone(),
        tool_calls: resp
            .tool_calls
            .iter()
            .map(|c| serde_json::to_value(c).unwrap_or(Value::Null))
            .collect(),
        usage: resp.usage,
    }
}

/// The system message (with the output schema, when there is one) and the prompt.
fn opening_messages(job: &AgentJob) -> Vec<Message> {
    let mut messages = Vec::new();
    let mut system = job.system.clone().unwrap_or_default();
    if let Some((schema, _)) = &job.schema {
        if !system.is_empty() {
            system.push_str("\n\n");
        }
        system.push_str(&format!(
            "Answer with only a JSON value matching this JSON Schema, nothing else:\n{schema}"
        ));
    }
    if !system.is_empty() {
        messages.push(Message::system(system));
    }
    messages.push(Message::user(job.prompt.clone()));
    messages
}

/// Runs the tools a reply calls, in order, and answers each call in `messages`.
async fn answer_tool_calls(
    job: &AgentJob,
    resp: &baton_llm::ChatResponse,
    messages: &mut Vec<Message>,
    progress: &(impl Fn(Progress) + Send + Sync),
) {
    messages.push(Message::assistant(
        resp.content.clone(),
        resp.tool_calls.clone(),
    ));
    for call in &resp.tool_calls {
        let (out, is_error) = call_tool(job, call).await;
        progress(Progress::ToolResult {
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            output: out.clone(),
            is_error,
        });
        let text = match &out {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        messages.push(Message::tool(call.id.clone(), text));
    }
}

async fn call_tool(job: &AgentJob, call: &ToolCall) -> (Value, bool) {
    // `sandbox.step` takes its policy from its arguments: a model must never choose one.
    if call.name == baton_tools::sandbox_step::STEP_TOOL
        || !job.tools.iter().any(|t| t == &call.name)
    {
        return (
            Value::String(format!(
                "error: tool '{}' is not available to this agent",
                call.name
            )),
            true,
        );
    }
    let Some(tool) = job.registry.get(&call.name) else {
        return (
            Value::String(format!("error: no tool '{}'", call.name)),
            true,
        );
    };
    match tool.call(call.arguments.clone(), &job.tool_ctx).await {
        Ok(v) => (v, false),
        Err(e) => (Value::String(format!("error: {e}")), true),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn output_checks() {
        let schema = serde_json::json!({"type": "object", "required": ["passed"], "properties": {"passed": {"type": "boolean"}}});
        assert!(check_output(&schema, "```json\n{\"passed\": true}\n```").is_ok());
        let e = check_output(&schema, "{\"passed\": 1}").unwrap_err();
        assert!(e.contains("passed"), "{e}");
        assert!(
            check_output(&schema, "not json")
                .unwrap_err()
                .contains("not JSON")
        );
    }
}
