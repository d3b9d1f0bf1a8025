//! Replaying a run from its own log: the run's program is driven again from scratch by an
//! ordinary [`crate::Executor`] (`with_replay`), and every effect it asks for is served from
//! the recording instead of being performed.
//!
//! - [`Recording`] indexes a run's log: each attempt's model replies in turn order, each tool
//!   call's result by its idempotency key, each attempt's end (a `tool:` or `sandbox:` step's
//!   result). The executor takes an agent's model from it ([`Recording::model`]), its tools
//!   from [`Recording::registry`] and a tool step's result from [`Recording::tool_step`]. With
//!   `live_tools` only the model replies come from it: tools and sandboxes really run.
//! - [`Check`] compares the replay's log with the recording as it is written, one stream per
//!   step instance (parallel branches may interleave differently; each branch's own events
//!   may not), and reports the first event that differs: a prompt, a tool call's arguments,
//!   a result, a step's outcome. [`final_differences`] compares the states both logs fold to.
//!
//! An effect the recording does not hold is never performed: a model turn or a call it has no
//! result for fails with a message that says so, and the check reports the divergence.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use async_trait::async_trait;
use baton_llm::{ChatModel, ChatRequest, ChatResponse, Chunk, ToolCall};
use baton_tools::{Registry, Tool, ToolContext, ToolSpec};
use baton_types::{Event, EventRecord, Progress, StepError, StepErrorKind};
use futures::future::BoxFuture;
use futures::stream::BoxStream;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

use crate::machine::RunState;

/// How long an effect the recording has no result for waits to be cancelled (the recorded
/// attempt was cancelled: a parallel branch that lost an `any` join) before it fails.
const UNRECORDED_WAIT: Duration = Duration::from_secs(2);

/// How a recorded attempt ended.
#[derive(Clone, Debug)]
enum AttemptEnd {
    Succeeded(Value),
    Failed(StepError),
    Cancelled,
}

/// A step instance's attempt in one of its visits: (step, visit, attempt). A step a loop
/// comes back to starts again at attempt 1 in its next visit.
type Attempt = (String, u32, u32);

/// A run's log, indexed for replay.
pub struct Recording {
    replies: HashMap<Attempt, Vec<ChatResponse>>,
    /// The model reference each attempt's prompts and replies were logged with (the
    /// reference as expanded from the environment when the run ran, not as it is now).
    labels: HashMap<Attempt, String>,
    ends: HashMap<Attempt, AttemptEnd>,
    /// Each sent tool call's results (a resent call has several), by its idempotency key.
    calls: Mutex<HashMap<String, VecDeque<(Value, bool)>>>,
    live_tools: bool,
    served: AtomicU64,
}

impl Recording {
    /// Indexes `events` (a whole run log, in order). `live_tools`: tools and sandboxes run
    /// for real; only model replies are served from the recording.
    pub fn new(events: &[EventRecord], live_tools: bool) -> Result<Recording, String> {
        let mut current: HashMap<String, (u32, u32)> = HashMap::new();
        let mut replies: HashMap<Attempt, Vec<ChatResponse>> = HashMap::new();
        let mut labels: HashMap<Attempt, String> = HashMap::new();
        let mut ends = HashMap::new();
        let mut keys: HashMap<(String, u32, u32), String> = HashMap::new();
        let mut calls: HashMap<String, VecDeque<(Value, bool)>> = HashMap::new();
        let attempt_of = |current: &HashMap<String, (u32, u32)>, step: &str| -> Attempt {
            let (visit, attempt) = current.get(step).copied().unwrap_or((1, 1));
            (step.to_string(), visit, attempt)
        };
        for r in events {
            match &r.event {
                Event::StepStarted {
                    step,
                    attempt,
                    visit,
                    ..
                } => {
                    current.insert(step.clone(), (*visit, *attempt));
                }
                Event::StepProgress {
                    step,
                    progress: Progress::Prompt { model, .. },
                } => {
                    labels
                        .entry(attempt_of(&current, step))
                        .or_insert_with(|| model.clone());
                }
                Event::StepProgress {
                    step,
                    progress:
                        Progress::ModelReply {
                            model,
                            content,
                            tool_calls,
                            usage,
                            ..
                        },
                } => {
                    let tool_calls = tool_calls
                        .iter()
                        .map(|c| serde_json::from_value::<ToolCall>(c.clone()))
                        .collect::<Result<Vec<_>, _>>()
                        .map_err(|e| {
                            format!(
                                "event {}: a model reply of step '{step}' holds a tool call that cannot be read: {e}",
                                r.seq
                            )
                        })?;
                    labels
                        .entry(attempt_of(&current, step))
                        .or_insert_with(|| model.clone());
                    replies
                        .entry(attempt_of(&current, step))
                        .or_default()
                        .push(ChatResponse {
                            content: content.clone(),
                            tool_calls,
                            usage: *usage,
                            stop_reason: Default::default(),
                        });
                }
                Event::ToolCallStarted {
                    step,
                    attempt,
                    call,
                    key,
                    ..
                } => {
                    keys.insert((step.clone(), *attempt, *call), key.clone());
                }
                Event::ToolCallFinished {
                    step,
                    attempt,
                    call,
                    output,
                    is_error,
                    ..
                } => {
                    // A call answered without being sent (a tool the agent may not use) has
                    // no start and no key: the replay answers it the same way by itself.
                    if let Some(key) = keys.get(&(step.clone(), *attempt, *call)) {
                        calls
                            .entry(key.clone())
                            .or_default()
                            .push_back((output.clone(), *is_error));
                    }
                }
                Event::StepSucceeded { step, output, .. } => {
                    ends.insert(
                        attempt_of(&current, step),
                        AttemptEnd::Succeeded(output.clone()),
                    );
                }
                Event::StepFailed {
                    step,
                    attempt,
                    error,
                    ..
                } => {
                    let visit = current.get(step).map_or(1, |c| c.0);
                    ends.insert(
                        (step.clone(), visit, *attempt),
                        AttemptEnd::Failed(error.clone()),
                    );
                }
                Event::StepCancelled { step } => {
                    ends.insert(attempt_of(&current, step), AttemptEnd::Cancelled);
                }
                _ => {}
            }
        }
        Ok(Recording {
            replies,
            labels,
            ends,
            calls: Mutex::new(calls),
            live_tools,
            served: AtomicU64::new(0),
        })
    }

    /// Whether tools and sandboxes really run (only model replies are replayed).
    pub fn live_tools(&self) -> bool {
        self.live_tools
    }

    /// How many recorded results (model replies, tool results, tool steps' results) the
    /// replay was served.
    pub fn served(&self) -> u64 {
        self.served.load(Ordering::Relaxed)
    }

    /// The result attempt `attempt` of tool or sandbox step `step` had in its visit `visit`.
    /// One the recording has none of (the attempt was cancelled, or never ended) waits for
    /// its cancellation, then fails saying so.
    pub fn tool_step(
        self: &Arc<Self>,
        step: &str,
        visit: u32,
        attempt: u32,
        cancel: CancellationToken,
    ) -> BoxFuture<'static, Result<Value, StepError>> {
        let end = self.ends.get(&(step.to_string(), visit, attempt)).cloned();
        let this = self.clone();
        let what = format!("attempt {attempt} of step '{step}' (visit {visit})");
        Box::pin(async move {
            match end {
                Some(AttemptEnd::Succeeded(v)) => {
                    this.served.fetch_add(1, Ordering::Relaxed);
                    Ok(v)
                }
                Some(AttemptEnd::Failed(e)) => {
                    this.served.fetch_add(1, Ordering::Relaxed);
                    Err(e)
                }
                Some(AttemptEnd::Cancelled) | None => {
                    let _ = tokio::time::timeout(UNRECORDED_WAIT, cancel.cancelled()).await;
                    Err(StepError::fatal(
                        StepErrorKind::Execution,
                        format!("replay: the recording holds no result for {what}"),
                    ))
                }
            }
        })
    }

    /// The model of attempt `attempt` of agent step `step` in its visit `visit`: it answers
    /// with the attempt's recorded replies, in turn order.
    pub fn model(self: &Arc<Self>, step: &str, visit: u32, attempt: u32) -> Arc<dyn ChatModel> {
        let key = (step.to_string(), visit, attempt);
        Arc::new(ReplayModel {
            replies: self.replies.get(&key).cloned().unwrap_or_default(),
            end: self.ends.get(&key).cloned(),
            next: AtomicUsize::new(0),
            what: format!("step '{step}' (visit {visit}, attempt {attempt})"),
            recording: self.clone(),
        })
    }

    /// The model reference attempt `attempt` of agent step `step` (in its visit `visit`) was
    /// logged with, if it asked a model.
    pub fn model_label(&self, step: &str, visit: u32, attempt: u32) -> Option<&str> {
        self.labels
            .get(&(step.to_string(), visit, attempt))
            .map(String::as_str)
    }

    /// `real`'s tools, each answering with the recorded results of its calls (by their
    /// idempotency keys); `real` itself with `live_tools`.
    pub fn registry(self: &Arc<Self>, real: &Registry) -> Registry {
        if self.live_tools {
            return real.clone();
        }
        let mut r = Registry::empty();
        for name in real.names() {
            if let Some(tool) = real.get(name) {
                r.register(Arc::new(RecordedTool {
                    spec: tool.spec(),
                    recording: self.clone(),
                }));
            }
        }
        r
    }
}

/// A model that answers with a recorded attempt's replies.
struct ReplayModel {
    replies: Vec<ChatResponse>,
    end: Option<AttemptEnd>,
    next: AtomicUsize,
    what: String,
    recording: Arc<Recording>,
}

#[async_trait]
impl ChatModel for ReplayModel {
    async fn stream(
        &self,
        _req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, baton_llm::Error>>, baton_llm::Error> {
        let i = self.next.fetch_add(1, Ordering::Relaxed);
        if let Some(r) = self.replies.get(i) {
            self.recording.served.fetch_add(1, Ordering::Relaxed);
            let mut chunks = Vec::new();
            if !r.content.is_empty() {
                chunks.push(Ok(Chunk::Text(r.content.clone())));
            }
            chunks.extend(r.tool_calls.iter().cloned().map(|c| Ok(Chunk::ToolCall(c))));
            chunks.push(Ok(Chunk::Usage(r.usage)));
            chunks.push(Ok(Chunk::Done(r.stop_reason)));
            return Ok(Box::pin(futures::stream::iter(chunks)));
        }
        match &self.end {
            // The attempt ended on this call's failure: the same failure.
            Some(AttemptEnd::Failed(e)) if e.kind == StepErrorKind::Model => {
                self.recording.served.fetch_add(1, Ordering::Relaxed);
                Err(model_error(e))
            }
            // Cancelled while it waited for this reply: wait to be cancelled again.
            Some(AttemptEnd::Cancelled) | None => {
                tokio::time::sleep(UNRECORDED_WAIT).await;
                Err(unrecorded_turn(i, &self.what))
            }
            _ => Err(unrecorded_turn(i, &self.what)),
        }
    }
}

fn unrecorded_turn(i: usize, what: &str) -> baton_llm::Error {
    baton_llm::Error::Config(format!(
        "replay: the recording holds no model reply for turn {} of {what}",
        i + 1
    ))
}

/// The model error a logged failure came from (`model: <error>`), with its retryability.
fn model_error(e: &StepError) -> baton_llm::Error {
    let text = e.message.strip_prefix("model: ").unwrap_or(&e.message);
    if e.retryable
        && let Some(rest) = text.strip_prefix("transient error from ")
        && let Some((provider, message)) = rest.split_once(": ")
    {
        return baton_llm::Error::Transient {
            provider: provider.to_string(),
            message: message.to_string(),
        };
    }
    if e.retryable
        && let Some(provider) = text.strip_prefix("rate limited by ")
        && !provider.contains(' ')
    {
        return baton_llm::Error::RateLimited {
            provider: provider.to_string(),
            retry_after: None,
        };
    }
    baton_llm::Error::Config(text.to_string())
}

/// A tool that answers with the recorded results of its calls.
struct RecordedTool {
    spec: ToolSpec,
    recording: Arc<Recording>,
}

#[async_trait]
impl Tool for RecordedTool {
    fn spec(&self) -> ToolSpec {
        self.spec.clone()
    }

    async fn call(&self, _args: Value, ctx: &ToolContext) -> Result<Value, baton_tools::Error> {
        let got = self
            .recording
            .calls
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_mut(&ctx.idempotency_key)
            .and_then(VecDeque::pop_front);
        match got {
            Some((output, is_error)) => {
                self.recording.served.fetch_add(1, Ordering::Relaxed);
                if is_error {
                    // The agent reads a failed call as `error: <message>`.
                    let text = match &output {
                        Value::String(s) => s.strip_prefix("error: ").unwrap_or(s).to_string(),
                        v => v.to_string(),
                    };
                    Err(baton_tools::Error::Failed(text))
                } else {
                    Ok(output)
                }
            }
            None => Err(baton_tools::Error::Failed(format!(
                "replay: the recording holds no result for tool call {} ({})",
                ctx.idempotency_key, self.spec.name
            ))),
        }
    }
}

/// Where a replay first differed from its recording.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct Divergence {
    /// The recorded event that differs (absent: the replay did something the recording never
    /// did, or the recording's stream ended).
    pub seq: Option<u64>,
    /// The replay's event at that place (absent: the replay ended before it).
    pub replay_seq: Option<u64>,
    /// The step instance (absent: an event of the run itself).
    pub step: Option<String>,
    /// One line: what differs.
    pub message: String,
    /// The recorded event, as compared (durations and deadlines left out).
    pub expected: Option<Value>,
    /// The replay's event, as compared.
    pub got: Option<Value>,
}

/// Compares a replay's events with its recording as they are logged (see the module doc).
pub struct Check {
    expected: BTreeMap<String, VecDeque<(u64, Value)>>,
    /// The replay runs under another id (`live_tools`): its id in keys reads as the recorded one.
    ids: Option<(String, String)>,
    matched: u64,
    divergence: Option<Divergence>,
}

/// The stream an event belongs to: its step instance, the writer of a `state_set`, or the run.
fn stream_of(e: &Event) -> String {
    match e {
        Event::StateSet {
            writer: Some(w), ..
        } => w.clone(),
        e => e.step().unwrap_or("").to_string(),
    }
}

/// Events left out of the comparison: a process taking the run (a replay drives it in one go,
/// the recording may have been resumed many times).
fn compared(e: &Event) -> bool {
    !matches!(e, Event::RunStarted { .. })
}

/// An event as compared: durations and deadlines (which depend on the clock) left out.
fn normalized(e: &Event) -> Value {
    let mut e = e.clone();
    match &mut e {
        Event::StepSucceeded { duration_ms, .. } | Event::StepFailed { duration_ms, .. } => {
            *duration_ms = 0;
        }
        Event::HumanRequested { deadline_ms, .. } => *deadline_ms = None,
        Event::HumanEscalated { deadline_ms, .. } => *deadline_ms = 0,
        _ => {}
    }
    serde_json::to_value(&e).unwrap_or(Value::Null)
}

impl Check {
    /// A check against `recorded` (a whole run log). `replay_id`: the replay's run id when it
    /// is not the recording's.
    pub fn new(recorded: &[EventRecord], replay_id: Option<&str>) -> Check {
        let mut expected: BTreeMap<String, VecDeque<(u64, Value)>> = BTreeMap::new();
        for r in recorded.iter().filter(|r| compared(&r.event)) {
            let mut v = normalized(&r.event);
            if replay_id.is_some() {
                v = without_volatile(v);
            }
            expected
                .entry(stream_of(&r.event))
                .or_default()
                .push_back((r.seq, v));
        }
        let ids = match (replay_id, recorded.first()) {
            (Some(new), Some(first)) => Some((new.to_string(), first.run_id.to_string())),
            _ => None,
        };
        Check {
            expected,
            ids,
            matched: 0,
            divergence: None,
        }
    }

    /// How many events matched so far.
    pub fn matched(&self) -> u64 {
        self.matched
    }

    /// The first divergence found, if any.
    pub fn divergence(&self) -> Option<&Divergence> {
        self.divergence.as_ref()
    }

    /// Compares one event of the replay with the recording's next event of its stream;
    /// returns whether it matched (after a divergence nothing more is compared).
    pub fn observe(&mut self, ev: &EventRecord) -> bool {
        if self.divergence.is_some() {
            return false;
        }
        if !compared(&ev.event) {
            return true;
        }
        let stream = stream_of(&ev.event);
        let mut got = normalized(&ev.event);
        if let Some((new, old)) = &self.ids {
            got = without_volatile(with_id(got, new, old));
        }
        let step = (!stream.is_empty()).then(|| stream.clone());
        match self.expected.get_mut(&stream).and_then(VecDeque::pop_front) {
            Some((_, want)) if want == got => {
                self.matched += 1;
                true
            }
            Some((seq, want)) => {
                let message = describe(&want, &got);
                self.divergence = Some(Divergence {
                    seq: Some(seq),
                    replay_seq: Some(ev.seq),
                    step,
                    message,
                    expected: Some(want),
                    got: Some(got),
                });
                false
            }
            None => {
                self.divergence = Some(Divergence {
                    seq: None,
                    replay_seq: Some(ev.seq),
                    step,
                    message: format!(
                        "the replay logged a {} the recording does not have",
                        kind_of(&got)
                    ),
                    expected: None,
                    got: Some(got),
                });
                false
            }
        }
    }

    /// After the replay: the first recorded event it never reached, if nothing differed
    /// before.
    pub fn finish(&mut self) -> Option<&Divergence> {
        if self.divergence.is_none()
            && let Some((stream, (seq, want))) = self
                .expected
                .iter()
                .filter_map(|(s, q)| q.front().map(|f| (s, f)))
                .min_by_key(|(_, (seq, _))| *seq)
        {
            self.divergence = Some(Divergence {
                seq: Some(*seq),
                replay_seq: None,
                step: (!stream.is_empty()).then(|| stream.clone()),
                message: format!(
                    "the replay ended before the recording's {} (event {seq})",
                    kind_of(want)
                ),
                expected: Some(want.clone()),
                got: None,
            });
        }
        self.divergence.as_ref()
    }
}

/// Fields of tool and sandbox results that differ on every real execution, left out when a
/// live-tools replay is compared: workspace commit ids (they hash the run and the time) and a
/// sandbox run's measured times and memory.
const VOLATILE: [&str; 4] = ["commit", "wall_time", "cpu_time", "peak_memory_bytes"];

fn without_volatile(v: Value) -> Value {
    match v {
        Value::Array(a) => Value::Array(a.into_iter().map(without_volatile).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .filter(|(k, _)| !VOLATILE.contains(&k.as_str()))
                .map(|(k, x)| (k, without_volatile(x)))
                .collect(),
        ),
        v => v,
    }
}

/// `v` with every occurrence of `new` in its strings read as `old`.
fn with_id(v: Value, new: &str, old: &str) -> Value {
    match v {
        Value::String(s) => Value::String(s.replace(new, old)),
        Value::Array(a) => Value::Array(a.into_iter().map(|x| with_id(x, new, old)).collect()),
        Value::Object(m) => Value::Object(
            m.into_iter()
                .map(|(k, x)| (k, with_id(x, new, old)))
                .collect(),
        ),
        v => v,
    }
}

fn kind_of(v: &Value) -> String {
    let kind = v.get("type").and_then(Value::as_str).unwrap_or("event");
    match v.pointer("/progress/kind").and_then(Value::as_str) {
        Some(p) => format!("{kind} ({p})"),
        None => kind.to_string(),
    }
}

/// One line on how two events differ: their kinds, or the first fields that differ.
fn describe(want: &Value, got: &Value) -> String {
    let (wk, gk) = (kind_of(want), kind_of(got));
    if wk != gk {
        return format!("the recording has a {wk} here, the replay a {gk}");
    }
    let mut fields = Vec::new();
    differing_fields("", want, got, &mut fields);
    format!("{wk} differs at {}", fields.join(", "))
}

fn differing_fields(path: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
    if out.len() >= 3 || a == b {
        return;
    }
    match (a, b) {
        (Value::Object(x), Value::Object(y)) => {
            let mut keys: Vec<&String> = x.keys().chain(y.keys()).collect();
            keys.sort();
            keys.dedup();
            for k in keys {
                let (va, vb) = (
                    x.get(k).unwrap_or(&Value::Null),
                    y.get(k).unwrap_or(&Value::Null),
                );
                differing_fields(&format!("{path}/{k}"), va, vb, out);
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                differing_fields(&format!("{path}/{i}"), va, vb, out);
            }
        }
        _ => out.push(if path.is_empty() {
            "/".into()
        } else {
            path.into()
        }),
    }
}

/// One difference between two final states.
#[derive(Clone, Debug, PartialEq, serde::Serialize, schemars::JsonSchema)]
pub struct StateDifference {
    /// What differs: `status`, `outputs`, `error`, `usage`, `state.<key>`, `steps.<id>.output`,
    /// `steps.<id>.error`.
    pub field: String,
    pub recorded: Value,
    pub replayed: Value,
}

/// How the state a replay reached differs from the recording's (empty: identical).
/// With `live`, the fields that differ on every real execution (workspace commit ids, a
/// sandbox's measured times) are left out of the comparison, as they are for events.
pub fn final_differences(
    recorded: &RunState,
    replayed: &RunState,
    live: bool,
) -> Vec<StateDifference> {
    let mut out = Vec::new();
    let mut diff = |field: String, a: Value, b: Value| {
        let same = if live {
            without_volatile(a.clone()) == without_volatile(b.clone())
        } else {
            a == b
        };
        if !same {
            out.push(StateDifference {
                field,
                recorded: a,
                replayed: b,
            });
        }
    };
    diff(
        "status".into(),
        json(&recorded.status),
        json(&replayed.status),
    );
    diff(
        "outputs".into(),
        recorded.result.clone().unwrap_or(Value::Null),
        replayed.result.clone().unwrap_or(Value::Null),
    );
    diff("error".into(), json(&recorded.error), json(&replayed.error));
    diff("usage".into(), json(&recorded.usage), json(&replayed.usage));
    for key in union(recorded.state.keys(), replayed.state.keys()) {
        diff(
            format!("state.{key}"),
            recorded.state.get(&key).cloned().unwrap_or(Value::Null),
            replayed.state.get(&key).cloned().unwrap_or(Value::Null),
        );
    }
    for step in union(recorded.outputs.keys(), replayed.outputs.keys()) {
        diff(
            format!("steps.{step}.output"),
            recorded.outputs.get(&step).cloned().unwrap_or(Value::Null),
            replayed.outputs.get(&step).cloned().unwrap_or(Value::Null),
        );
    }
    for step in union(recorded.errors.keys(), replayed.errors.keys()) {
        diff(
            format!("steps.{step}.error"),
            json(&recorded.errors.get(&step)),
            json(&replayed.errors.get(&step)),
        );
    }
    out
}

fn union<'a>(
    a: impl Iterator<Item = &'a String>,
    b: impl Iterator<Item = &'a String>,
) -> Vec<String> {
    let mut v: Vec<String> = a.chain(b).cloned().collect();
    v.sort();
    v.dedup();
    v
}

fn json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

#[cfg(test)]
mod tests;
