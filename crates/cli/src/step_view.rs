//! What the run commands say about effects and prompts, from the run log: a step whose effect
//! is ambiguous (what was sent, with which key, and how a person resolves it), and one step
//! in detail (`baton runs show RUN --step STEP`): the prompts its model was sent, turn by
//! turn, rebuilt from the deduplicated records, and its tool calls with their keys.

use std::collections::HashMap;

use baton_types::{Event, EventRecord, Progress, PromptContext, RunId};
use serde::Serialize;
use serde_json::Value;

/// A step waiting for a person because an effect may or may not have happened.
#[derive(Clone, Debug, Serialize)]
pub struct Ambiguity {
    pub step: String,
    pub attempt: u32,
    /// The agent's tool call (absent: the `tool:` step's own call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    pub tool: String,
    pub key: String,
    pub arguments: Value,
}

/// The steps ambiguous now: an ambiguity not followed by a resolution or the step's end.
pub fn ambiguities(evs: &[EventRecord]) -> Vec<Ambiguity> {
    let mut open: Vec<Ambiguity> = Vec::new();
    for e in evs {
        match &e.event {
            Event::StepAmbiguous {
                step,
                attempt,
                call,
                tool,
                arguments,
                key,
            } => {
                open.retain(|a| a.step != *step);
                open.push(Ambiguity {
                    step: step.clone(),
                    attempt: *attempt,
                    call: *call,
                    tool: tool.clone(),
                    key: key.clone(),
                    arguments: arguments.clone(),
                });
            }
            Event::StepResolved { step, .. }
            | Event::StepSucceeded { step, .. }
            | Event::StepFailed { step, .. }
            | Event::StepCancelled { step } => open.retain(|a| a.step != *step),
            Event::RunCancelled | Event::RunFailed { .. } | Event::RunSucceeded { .. } => {
                open.clear()
            }
            _ => {}
        }
    }
    open
}

/// What an ambiguous step means and how to resolve it, for a terminal.
pub fn ambiguity_lines(run: RunId, a: &Ambiguity) -> Vec<String> {
    let what = match a.call {
        Some(n) => format!("its tool call {n} ({})", a.tool),
        None => format!("its call of {}", a.tool),
    };
    vec![
        format!(
            "step {} is ambiguous: {what} was sent but the process stopped before its result was logged, and {} cannot be repeated safely",
            a.step, a.tool
        ),
        format!("  arguments  {}", a.arguments),
        format!("  key        {}", a.key),
        format!(
            "  check whether it took effect, then: baton runs resolve {run} {} --as done [--value RESULT]   (it happened; RESULT is what it returned)",
            a.step
        ),
        format!(
            "                                  or: baton runs resolve {run} {} --as retry   (send it again, with the same key)",
            a.step
        ),
    ]
}

/// One turn's prompt as the model got it: the shared part (resolved from its hash) and the
/// messages this turn added.
#[derive(Debug, Serialize)]
pub struct TurnPrompt {
    pub turn: u32,
    pub model: String,
    pub context_hash: String,
    /// The system message, tools and answer format (`null` when the record it refers to is
    /// missing from the log).
    pub context: Option<PromptContext>,
    /// The messages added since the previous turn (turn 1: the prompt).
    pub messages: Vec<Value>,
    /// Bytes cut from this record to keep it under the cap.
    pub cut_bytes: u64,
}

/// One tool call of an agent step.
#[derive(Debug, Serialize)]
pub struct CallView {
    pub attempt: u32,
    pub call: u32,
    pub tool: String,
    pub key: String,
    pub arguments: Value,
    /// `finished`, `error`, or `no result` (started, its result never logged).
    pub status: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
}

/// `baton runs show RUN --step STEP`.
#[derive(Debug, Serialize)]
pub struct StepDetail {
    pub run: String,
    pub step: String,
    pub prompts: Vec<TurnPrompt>,
    pub tool_calls: Vec<CallView>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ambiguous: Option<Ambiguity>,
}

/// The detail of `step` (a step instance: `id`, or `id[2]` inside a map); `None` when the log
/// never mentions it.
pub fn step_detail(run: RunId, evs: &[EventRecord], step: &str) -> Option<StepDetail> {
    if !evs.iter().any(|e| e.event.step() == Some(step)) {
        return None;
    }
    let mut contexts: HashMap<&str, &PromptContext> = HashMap::new();
    let mut prompts = Vec::new();
    let mut calls: Vec<CallView> = Vec::new();
    for e in evs.iter().filter(|e| e.event.step() == Some(step)) {
        match &e.event {
            Event::StepProgress {
                progress:
                    Progress::Prompt {
                        turn,
                        model,
                        context_hash,
                        context,
                        messages,
                        cut_bytes,
                    },
                ..
            } => {
                if let Some(c) = context {
                    contexts.insert(context_hash, c);
                }
                prompts.push(TurnPrompt {
                    turn: *turn,
                    model: model.clone(),
                    context_hash: context_hash.clone(),
                    context: contexts.get(context_hash.as_str()).map(|c| (*c).clone()),
                    messages: messages.clone(),
                    cut_bytes: *cut_bytes,
                });
            }
            Event::ToolCallStarted {
                attempt,
                call,
                tool,
                arguments,
                key,
                ..
            } => calls.push(CallView {
                attempt: *attempt,
                call: *call,
                tool: tool.clone(),
                key: key.clone(),
                arguments: arguments.clone(),
                status: "no result",
                output: None,
            }),
            Event::ToolCallFinished {
                attempt,
                call,
                tool,
                output,
                is_error,
                ..
            } => {
                let status = if *is_error { "error" } else { "finished" };
                match calls
                    .iter_mut()
                    .rev()
                    .find(|c| c.call == *call && c.output.is_none())
                {
                    Some(c) => {
                        c.status = status;
                        c.output = Some(output.clone());
                    }
                    // Answered without being sent (a tool the agent may not use).
                    None => calls.push(CallView {
                        attempt: *attempt,
                        call: *call,
                        tool: tool.clone(),
                        key: String::new(),
                        arguments: Value::Null,
                        status,
                        output: Some(output.clone()),
                    }),
                }
            }
            _ => {}
        }
    }
    let ambiguous = ambiguities(evs).into_iter().find(|a| a.step == step);
    Some(StepDetail {
        run: run.to_string(),
        step: step.to_string(),
        prompts,
        tool_calls: calls,
        ambiguous,
    })
}

/// The steps the log mentions, in order of first appearance (for "did you mean").
pub fn steps_in(evs: &[EventRecord]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for s in evs.iter().filter_map(|e| e.event.step()) {
        if !out.iter().any(|o| o == s) {
            out.push(s.to_string());
        }
    }
    out
}

/// The detail as terminal lines.
pub fn detail_lines(d: &StepDetail) -> Vec<String> {
    let mut lines = vec![format!("step      {}", d.step)];
    if d.prompts.is_empty() {
        lines.push(
            "prompts   none logged (not an agent step, or a run logged before prompts were)".into(),
        );
    }
    let mut shown: Option<&str> = None;
    for p in &d.prompts {
        let cut = if p.cut_bytes > 0 {
            format!("  ({} bytes cut)", p.cut_bytes)
        } else {
            String::new()
        };
        lines.push(format!("prompt, turn {} to {}{cut}", p.turn, p.model));
        if shown != Some(p.context_hash.as_str()) {
            match &p.context {
                Some(c) => lines.extend(context_lines(c)),
                None => lines.push(format!("  (context {} is not in the log)", p.context_hash)),
            }
            shown = Some(&p.context_hash);
        }
        for m in &p.messages {
            lines.extend(message_lines(m));
        }
    }
    if !d.tool_calls.is_empty() {
        lines.push("tool calls".into());
        for c in &d.tool_calls {
            let key = if c.key.is_empty() {
                "(not sent)".to_string()
            } else {
                format!("key {}", c.key)
            };
            lines.push(format!(
                "  #{} {}  (attempt {})  {}  {key}",
                c.call, c.tool, c.attempt, c.status
            ));
            if !c.arguments.is_null() {
                lines.push(format!("      arguments {}", c.arguments));
            }
            if let Some(o) = &c.output {
                lines.push(format!("      output    {}", one_line(o, 300)));
            }
        }
    }
    if let Some(a) = &d.ambiguous
        && let Ok(run) = d.run.parse::<RunId>()
    {
        lines.extend(ambiguity_lines(run, a));
    }
    lines
}

fn context_lines(c: &PromptContext) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(s) = &c.system {
        lines.extend(labelled("system", s));
    }
    if !c.tools.is_empty() {
        let names: Vec<&str> = c.tools.iter().filter_map(|t| t["name"].as_str()).collect();
        lines.push(format!("  tools: {}", names.join(", ")));
    }
    if let Some(f) = &c.response_format {
        lines.push(format!("  answer format: {}", one_line(f, 300)));
    }
    lines
}

fn message_lines(m: &Value) -> Vec<String> {
    let role = m["role"].as_str().unwrap_or("?");
    let label = match m["tool_call_id"].as_str() {
        Some(id) => format!("{role} ({id})"),
        None => role.to_string(),
    };
    let mut lines = labelled(&label, m["content"].as_str().unwrap_or_default());
    if let Some(calls) = m["tool_calls"].as_array() {
        for c in calls {
            lines.push(format!(
                "    calls {} {}",
                c["name"].as_str().unwrap_or("?"),
                one_line(&c["arguments"], 300)
            ));
        }
    }
    lines
}

/// `label: text`, continuation lines indented.
fn labelled(label: &str, text: &str) -> Vec<String> {
    let mut it = text.lines();
    let mut lines = vec![format!("  {label}: {}", it.next().unwrap_or_default())];
    lines.extend(it.map(|l| format!("    {l}")));
    lines
}

fn one_line(v: &Value, max: usize) -> String {
    let s = v.to_string();
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({} bytes)", &s[..end], s.len())
}
