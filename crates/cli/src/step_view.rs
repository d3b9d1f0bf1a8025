//! How the run commands print effects and prompts (the values come from
//! `baton_control::view`): a step whose effect is ambiguous (what was sent, with which key,
//! and how a person resolves it), and one step in detail (`baton runs show RUN --step STEP`):
//! the prompts its model was sent, turn by turn, and its tool calls with their keys.

use baton_control::view::{Ambiguity, StepTrace};
use baton_types::{PromptContext, RunId};
use serde_json::Value;

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

/// A step's trace as terminal lines.
pub fn detail_lines(d: &StepTrace) -> Vec<String> {
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
