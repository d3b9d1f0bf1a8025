//! A run's trace, built from its log: a span for the run, one per step attempt, and under a
//! step one per model call and per tool call, named and attributed after the OpenTelemetry
//! GenAI semantic conventions (`chat {model}` with `gen_ai.operation.name`,
//! `gen_ai.provider.name`, `gen_ai.request.model`, `gen_ai.usage.*`; `execute_tool {tool}` with
//! `gen_ai.tool.name`, `gen_ai.tool.call.id`).
//!
//! Times are the log's, so a run resumed after a crash, or one that waited for a person, has
//! one whole trace. Ids are derived, not drawn: the trace id is the run id (find a run's trace
//! by its id), a span id is a hash of the run id and the seq of the event that opened it.
//! Pure: no clock, no I/O.

use std::collections::{HashMap, VecDeque};

use baton_types::{Event, EventRecord, Progress, RunId};
use serde_json::Value;

/// What a span is to the OpenTelemetry span kinds: work inside Baton, or a call out of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SpanKind {
    Internal,
    Client,
}

/// An attribute's value.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Str(String),
    Int(i64),
}

impl From<&str> for Attr {
    fn from(s: &str) -> Self {
        Attr::Str(s.to_string())
    }
}

impl From<String> for Attr {
    fn from(s: String) -> Self {
        Attr::Str(s)
    }
}

impl From<u64> for Attr {
    fn from(n: u64) -> Self {
        Attr::Int(i64::try_from(n).unwrap_or(i64::MAX))
    }
}

impl From<u32> for Attr {
    fn from(n: u32) -> Self {
        Attr::Int(i64::from(n))
    }
}

/// One span of a run's trace.
#[derive(Clone, Debug, PartialEq)]
pub struct Span {
    pub trace_id: [u8; 16],
    pub span_id: [u8; 8],
    pub parent: Option<[u8; 8]>,
    pub name: String,
    pub kind: SpanKind,
    /// Unix ms, as the run log recorded them.
    pub start_ms: i64,
    pub end_ms: i64,
    pub attributes: Vec<(&'static str, Attr)>,
    /// The span failed, and why.
    pub error: Option<String>,
}

impl Span {
    /// An attribute's value, if set.
    pub fn attr(&self, key: &str) -> Option<&Attr> {
        self.attributes
            .iter()
            .find(|(k, _)| *k == key)
            .map(|(_, v)| v)
    }
}

/// Where finished traces go (an OTLP exporter, wired by the composition root).
pub trait SpanSink: Send + Sync {
    /// Takes the spans of one run; must not block (send them from a task of its own).
    fn export(&self, spans: Vec<Span>);
}

/// The span id of the span opened by event `seq` of `run` (seq 0: the run's own span).
pub fn span_id(run: RunId, seq: u64) -> [u8; 8] {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in run.0.as_bytes().iter().chain(seq.to_le_bytes().iter()) {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    // An all-zero span id is invalid.
    h.max(1).to_be_bytes()
}

/// The spans of run `run` of workflow `workflow` from its events; `kind` names a step's kind.
pub fn spans(
    run: RunId,
    workflow: &str,
    events: &[EventRecord],
    kind: &dyn Fn(&str) -> Option<&'static str>,
) -> Vec<Span> {
    let mut b = Builder {
        run,
        kind,
        root: Span {
            trace_id: *run.0.as_bytes(),
            span_id: span_id(run, 0),
            parent: None,
            name: format!("run {workflow}"),
            kind: SpanKind::Internal,
            start_ms: events.first().map_or(0, |e| e.at_ms),
            end_ms: events.last().map_or(0, |e| e.at_ms),
            attributes: vec![
                ("baton.run.id", run.to_string().into()),
                ("baton.workflow", workflow.into()),
            ],
            error: None,
        },
        done: Vec::new(),
        steps: HashMap::new(),
        models: HashMap::new(),
        tools: HashMap::new(),
        call_ids: HashMap::new(),
    };
    for ev in events {
        b.apply(ev);
    }
    b.finish()
}

struct Builder<'a> {
    run: RunId,
    kind: &'a dyn Fn(&str) -> Option<&'static str>,
    root: Span,
    done: Vec<Span>,
    /// Open step attempts by step instance path.
    steps: HashMap<String, Span>,
    /// Open model calls by (step, turn).
    models: HashMap<(String, u32), Span>,
    /// Open tool calls by (step, call).
    tools: HashMap<(String, u32), Span>,
    /// The ids models gave their tool calls, by step, in the order they are made.
    call_ids: HashMap<String, VecDeque<String>>,
}

impl Builder<'_> {
    fn open(&self, ev: &EventRecord, parent: [u8; 8], name: String, kind: SpanKind) -> Span {
        Span {
            trace_id: self.root.trace_id,
            span_id: span_id(self.run, ev.seq),
            parent: Some(parent),
            name,
            kind,
            start_ms: ev.at_ms,
            end_ms: ev.at_ms,
            attributes: Vec::new(),
            error: None,
        }
    }

    /// The span of `step`'s current attempt, or the run's when none is open.
    fn parent_of(&self, step: &str) -> [u8; 8] {
        self.steps
            .get(step)
            .map_or(self.root.span_id, |s| s.span_id)
    }

    fn close(&mut self, mut span: Span, at_ms: i64, error: Option<String>) {
        span.end_ms = at_ms.max(span.start_ms);
        if span.error.is_none() {
            span.error = error;
        }
        self.done.push(span);
    }

    /// Ends `step`'s attempt span and whatever is still open under it.
    fn close_step(&mut self, step: &str, at_ms: i64, outcome: &str, error: Option<String>) {
        let models: Vec<_> = self
            .models
            .keys()
            .filter(|k| k.0 == step)
            .cloned()
            .collect();
        for k in models {
            if let Some(s) = self.models.remove(&k) {
                self.close(s, at_ms, Some(format!("the step {outcome}")));
            }
        }
        let tools: Vec<_> = self.tools.keys().filter(|k| k.0 == step).cloned().collect();
        for k in tools {
            if let Some(s) = self.tools.remove(&k) {
                self.close(s, at_ms, Some(format!("the step {outcome}")));
            }
        }
        self.call_ids.remove(step);
        if let Some(mut s) = self.steps.remove(step) {
            s.attributes.push(("baton.step.outcome", outcome.into()));
            self.close(s, at_ms, error);
        }
    }

    fn apply(&mut self, ev: &EventRecord) {
        match &ev.event {
            Event::StepStarted {
                step,
                attempt,
                visit,
                ..
            } => {
                // Started again without an end: the process driving it stopped.
                self.close_step(step, ev.at_ms, "interrupted", Some("interrupted".into()));
                let mut s = self.open(
                    ev,
                    self.root.span_id,
                    format!("step {step}"),
                    SpanKind::Internal,
                );
                s.attributes.push(("baton.step.id", step.as_str().into()));
                if let Some(k) = (self.kind)(step) {
                    s.attributes.push(("baton.step.kind", k.into()));
                }
                s.attributes.push(("baton.step.attempt", (*attempt).into()));
                s.attributes.push(("baton.step.visit", (*visit).into()));
                self.steps.insert(step.clone(), s);
            }
            Event::StepProgress { step, progress } => self.progress(ev, step, progress),
            Event::ToolCallStarted {
                step,
                call,
                tool,
                key,
                ..
            } => {
                let parent = self.parent_of(step);
                let mut s = self.open(
                    ev,
                    parent,
                    format!("execute_tool {tool}"),
                    SpanKind::Internal,
                );
                let id = self
                    .call_ids
                    .get_mut(step)
                    .and_then(VecDeque::pop_front)
                    .unwrap_or_else(|| key.clone());
                s.attributes.extend([
                    ("gen_ai.operation.name", "execute_tool".into()),
                    ("gen_ai.tool.name", tool.as_str().into()),
                    ("gen_ai.tool.call.id", id.into()),
                    ("baton.idempotency_key", key.as_str().into()),
                ]);
                self.tools.insert((step.clone(), *call), s);
            }
            Event::ToolCallFinished {
                step,
                call,
                is_error,
                ..
            } => {
                if let Some(s) = self.tools.remove(&(step.clone(), *call)) {
                    let error = is_error.then(|| "the tool reported an error".to_string());
                    self.close(s, ev.at_ms, error);
                }
            }
            Event::StepSucceeded { step, .. } => self.close_step(step, ev.at_ms, "succeeded", None),
            Event::StepFailed { step, error, .. } => {
                self.close_step(step, ev.at_ms, "failed", Some(error.message.clone()))
            }
            Event::StepCancelled { step } => {
                self.close_step(step, ev.at_ms, "cancelled", Some("cancelled".into()))
            }
            Event::RunSucceeded { .. } => self.end_run(ev, "succeeded", None),
            Event::RunFailed { error } => self.end_run(ev, "failed", Some(error.clone())),
            Event::RunCancelled => self.end_run(ev, "cancelled", Some("cancelled".into())),
            _ => {}
        }
    }

    fn progress(&mut self, ev: &EventRecord, step: &str, progress: &Progress) {
        match progress {
            Progress::Prompt { turn, model, .. } => {
                let (provider, name) = model.split_once('/').unwrap_or((model, model));
                let parent = self.parent_of(step);
                let mut s = self.open(ev, parent, format!("chat {name}"), SpanKind::Client);
                s.attributes.extend([
                    ("gen_ai.operation.name", "chat".into()),
                    ("gen_ai.provider.name", provider.into()),
                    ("gen_ai.system", provider.into()),
                    ("gen_ai.request.model", name.into()),
                    ("baton.model", model.as_str().into()),
                    ("baton.turn", (*turn).into()),
                ]);
                self.models.insert((step.to_string(), *turn), s);
            }
            Progress::ModelReply {
                turn,
                usage,
                tool_calls,
                ..
            } => {
                let ids = tool_calls
                    .iter()
                    .filter_map(|c| c.get("id").and_then(Value::as_str))
                    .map(str::to_string);
                self.call_ids
                    .entry(step.to_string())
                    .or_default()
                    .extend(ids);
                if let Some(mut s) = self.models.remove(&(step.to_string(), *turn)) {
                    s.attributes.extend([
                        ("gen_ai.usage.input_tokens", usage.prompt_tokens.into()),
                        ("gen_ai.usage.output_tokens", usage.completion_tokens.into()),
                    ]);
                    self.close(s, ev.at_ms, None);
                }
            }
            _ => {}
        }
    }

    fn end_run(&mut self, ev: &EventRecord, status: &str, error: Option<String>) {
        self.root.end_ms = ev.at_ms;
        self.root.error = error;
        self.root
            .attributes
            .push(("baton.run.status", status.into()));
    }

    /// Everything still open ends with the run (a step waiting for a person when the log
    /// was read, an effect never finished); the run's span comes first.
    fn finish(mut self) -> Vec<Span> {
        let end = self.root.end_ms;
        let open: Vec<Span> = self
            .models
            .drain()
            .chain(self.tools.drain())
            .map(|(_, s)| s)
            .chain(self.steps.drain().map(|(_, s)| s))
            .collect();
        for s in open {
            self.close(s, end, None);
        }
        let mut out = vec![self.root];
        out.append(&mut self.done);
        out
    }
}
