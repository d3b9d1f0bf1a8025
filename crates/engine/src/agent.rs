//! An agent step: prompt -> model -> tool calls (up to `max_tool_turns` rounds) -> answer,
//! checked against the output schema, re-asking the model with the error when it does not fit.
//!
//! Journaled: what each turn sent is logged (`Progress::Prompt`, deduplicated and capped),
//! then the model's reply (`Progress::ModelReply`); each tool call gets its own idempotency key
//! (the step's key, `/`, the call's number), its start is logged before it is sent and its
//! result when it returns. An attempt that runs again (after a crash, or as a retry) replays
//! the journal: recorded replies and results are reused, not asked or called again; a call
//! started but never finished is sent again with its key when its tool allows that, and
//! otherwise ends the attempt as ambiguous, for a person to resolve.

use std::sync::Arc;

use baton_llm::{ChatModel, ChatRequest, ChatResponse, Message, ResponseFormat, Role, ToolCall};
use baton_tools::{Registry, ToolContext};
use baton_types::{Progress, PromptContext, StepError, StepErrorKind, Usage};
use serde_json::Value;

use crate::machine::{self, Journal, Pending};

/// How a step's work ended: with its result, or ambiguous (an effect that may have happened
/// and cannot be repeated safely).
#[derive(Debug)]
pub enum WorkEnd {
    Done(Result<Value, StepError>),
    /// Boxed: rare, and larger than a result.
    Ambiguous(Box<Pending>),
}

/// What a running agent reports: progress, and its tool calls for the journal (a call is
/// sent only once `logged` has fired with `None`: its start is in the run log; with a value,
/// the machine answered it instead, e.g. the policy's refusal); its team tool calls and its
/// turns' inbox, answered by the machine once logged.
pub enum Report {
    Progress(Progress),
    Call {
        call: machine::ToolCall,
        logged: Option<tokio::sync::oneshot::Sender<Option<Value>>>,
    },
    Team {
        call: machine::TeamCall,
        answer: tokio::sync::oneshot::Sender<(Value, bool)>,
    },
    Inbox {
        turn: u32,
        answer: tokio::sync::oneshot::Sender<Vec<baton_types::TeamMessage>>,
    },
}

/// The agent's place in its team.
pub struct TeamLink {
    /// Its name (`coder@3` is `coder`).
    pub agent: String,
    /// Whether each turn takes the messages waiting in its inbox (some agent of the workflow
    /// may send one).
    pub inbox: bool,
    /// The agents a person paused: the step holds before its next model call while its agent
    /// is among them.
    pub paused: Option<tokio::sync::watch::Receiver<std::collections::BTreeSet<String>>>,
    /// The other agents and the channels it can reach (listed in the team tools it is offered).
    pub reach: Arc<crate::team::Reach>,
}

/// The most bytes of one text (a message, the system prompt, a tool's description) a prompt
/// record keeps; the rest is cut, with a marker saying how much.
pub const PROMPT_TEXT_CAP: usize = 16 * 1024;

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
    /// What the step did so far in this visit, replayed before anything new is done.
    pub journal: Journal,
    /// The attempt running (replayed replies of earlier attempts were counted with those).
    pub attempt: u32,
    /// The agent's team (messages, pause); `None`: a lone agent.
    pub team: Option<TeamLink>,
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

/// Runs the step. `report` receives what happens along the way.
pub async fn run(job: AgentJob, report: impl Fn(Report) + Send + Sync) -> (WorkEnd, Usage) {
    let progress = |p| report(Report::Progress(p));
    let mut usage = Usage::default();
    let mut messages = opening_messages(&job);
    let (tools, response_format) = offered(&job);
    let mut prompts = PromptLog::new(&job, &messages, &tools, response_format.as_ref());
    let model_name = baton_llm::split_ref(&job.model_ref)
        .map(|(_, m)| m.to_string())
        .unwrap_or_default();
    let mut tool_turns = 0u32;
    let mut reasks = 0u32;
    let mut turn = 0u32;
    let mut calls = 0u32;
    let fail = |e: StepError, usage| (WorkEnd::Done(Err(e)), usage);
    loop {
        turn += 1;
        let recorded = recorded_reply(&job.journal, turn);
        let replayed = recorded.is_some();
        if let Err(e) = receive(&job, turn, replayed, &mut messages, &report).await {
            return fail(e, usage);
        }
        let resp = match recorded {
            Some((r, attempt)) => {
                prompts.replayed(&messages);
                // Tokens an earlier attempt spent were counted when it ended.
                if attempt == job.attempt {
                    usage.add(&r.usage);
                }
                r
            }
            None => {
                progress(prompts.record(turn, &messages));
                let req = ChatRequest {
                    model: model_name.clone(),
                    messages: messages.clone(),
                    // Its last tool turn used, the model is offered no tools: it answers.
                    tools: if tool_turns < job.max_tool_turns {
                        tools.clone()
                    } else {
                        Vec::new()
                    },
                    temperature: job.temperature,
                    max_tokens: job.max_tokens,
                    response_format: response_format.clone(),
                };
                match ask(&job, req, turn, &progress).await {
                    Ok(resp) => {
                        usage.add(&resp.usage);
                        resp
                    }
                    Err(e) => return fail(e, usage),
                }
            }
        };
        if !resp.tool_calls.is_empty() {
            if tool_turns >= job.max_tool_turns {
                let msg = format!(
                    "the model kept calling tools past max_tool_turns ({})",
                    job.max_tool_turns
                );
                return fail(StepError::fatal(StepErrorKind::ToolTurns, msg), usage);
            }
            tool_turns += 1;
            if let Err(end) =
                answer_tool_calls(&job, &resp, &mut messages, &mut calls, &report).await
            {
                return (end, usage);
            }
            continue;
        }
        let answer = resp.content;
        if let Some(end) = settle(
            &job,
            answer,
            &mut reasks,
            replayed,
            &mut messages,
            &progress,
        ) {
            return (WorkEnd::Done(end), usage);
        }
    }
}

/// Before `turn` asks the model: holds while a person paused the agent, then adds the
/// messages its inbox received for that turn (a replayed turn gets the ones it got then).
async fn receive(
    job: &AgentJob,
    turn: u32,
    replayed: bool,
    messages: &mut Vec<Message>,
    report: &(impl Fn(Report) + Send + Sync),
) -> Result<(), StepError> {
    let Some(team) = &job.team else {
        return Ok(());
    };
    if !replayed && let Some(paused) = &team.paused {
        let mut rx = paused.clone();
        tokio::select! {
            r = rx.wait_for(|p| !p.contains(&team.agent)) => { let _ = r; }
            _ = job.tool_ctx.cancel.cancelled() => return Err(cancelled()),
        }
    }
    if !team.inbox {
        return Ok(());
    }
    let received = match job.journal.inbox_of(turn) {
        Some(m) => m.to_vec(),
        None if replayed => Vec::new(),
        None => {
            let (tx, rx) = tokio::sync::oneshot::channel();
            report(Report::Inbox { turn, answer: tx });
            tokio::select! {
                r = rx => r.map_err(|_| cancelled())?,
                _ = job.tool_ctx.cancel.cancelled() => return Err(cancelled()),
            }
        }
    };
    if !received.is_empty() {
        messages.push(Message::user(inbox_text(&received)));
    }
    Ok(())
}

/// The messages a turn received, as the model reads them: in arrival order, each with its
/// sender, channel and time.
fn inbox_text(received: &[baton_types::TeamMessage]) -> String {
    let mut s = String::from("Messages from your team, oldest first:");
    for m in received {
        let at = chrono_like(m.at_ms);
        let on = m
            .channel
            .as_ref()
            .map(|c| format!(" on #{c}"))
            .unwrap_or_default();
        s.push_str(&format!(
            "\n[{} from {}{on} at {at}] {}",
            m.id, m.from, m.content
        ));
    }
    s
}

/// A Unix time in ms as `HH:MM:SS` UTC (enough to order a run's messages by eye).
fn chrono_like(ms: i64) -> String {
    let secs = ms.div_euclid(1000).rem_euclid(86_400);
    format!("{:02}:{:02}:{:02}Z", secs / 3600, secs / 60 % 60, secs % 60)
}

/// Settles a final answer: the step's output, or `None` after asking again for an answer
/// that did not match the output schema (while re-asks are left).
fn settle(
    job: &AgentJob,
    answer: String,
    reasks: &mut u32,
    replayed: bool,
    messages: &mut Vec<Message>,
    progress: &impl Fn(Progress),
) -> Option<Result<Value, StepError>> {
    let Some((schema, max_retries)) = &job.schema else {
        return Some(Ok(Value::String(answer)));
    };
    match check_output(schema, &answer) {
        Ok(v) => Some(Ok(v)),
        Err(why) if *reasks >= *max_retries => {
            let msg = format!(
                "the answer did not match the output schema after {} attempts: {why}",
                *reasks + 1
            );
            Some(Err(StepError::fatal(StepErrorKind::InvalidOutput, msg)))
        }
        Err(why) => {
            *reasks += 1;
            // A replayed turn's rejection is in the log already.
            if !replayed {
                progress(Progress::OutputRejected {
                    attempt: *reasks,
                    error: why.clone(),
                });
            }
            messages.push(Message::assistant(answer, Vec::new()));
            messages.push(Message::user(format!(
                "Your answer was not valid: {why}. Answer again with only JSON matching the schema."
            )));
            None
        }
    }
}

/// Asks the model for one turn (unless the step is cancelled first) and reports its reply.
async fn ask(
    job: &AgentJob,
    req: ChatRequest,
    turn: u32,
    progress: &impl Fn(Progress),
) -> Result<ChatResponse, StepError> {
    let resp = tokio::select! {
        r = call_model(job, req, turn) => r,
        _ = job.tool_ctx.cancel.cancelled() => return Err(cancelled()),
    };
    let resp = resp.map_err(|e| model_error(&e))?;
    progress(model_reply(job, turn, &resp));
    Ok(resp)
}

fn cancelled() -> StepError {
    StepError::fatal(StepErrorKind::Cancelled, "cancelled")
}

/// The reply of `turn` as the journal recorded it, if it did, and the attempt that got it.
fn recorded_reply(journal: &Journal, turn: u32) -> Option<(ChatResponse, u32)> {
    let logged = journal
        .replies
        .get(usize::try_from(turn).ok()?.checked_sub(1)?)?;
    let tool_calls = logged
        .tool_calls
        .iter()
        .map(|c| serde_json::from_value::<ToolCall>(c.clone()))
        .collect::<Result<Vec<_>, _>>()
        .ok()?;
    let resp = ChatResponse {
        content: logged.content.clone(),
        tool_calls,
        usage: logged.usage,
        stop_reason: Default::default(),
    };
    Some((resp, logged.attempt))
}

/// What the step logs of its prompts: the shared part (system message, tools, answer format)
/// once per visit, referenced by its hash after that, and each turn's new messages.
struct PromptLog {
    model: String,
    context: PromptContext,
    cut: u64,
    hash: String,
    /// Whether the context is in the log already.
    logged: bool,
    /// How many messages earlier records hold.
    sent: usize,
}

impl PromptLog {
    fn new(
        job: &AgentJob,
        messages: &[Message],
        tools: &[baton_types::ToolSpec],
        format: Option<&ResponseFormat>,
    ) -> PromptLog {
        let mut cut = 0u64;
        let system = messages
            .first()
            .filter(|m| m.role == Role::System)
            .map(|m| cap_text(&m.content, &mut cut));
        let tools = tools
            .iter()
            .map(|t| {
                serde_json::json!({
                    "name": t.name,
                    "description": cap_text(&t.description, &mut cut),
                    "parameters": t.parameters,
                })
            })
            .collect();
        let response_format = format.and_then(|f| serde_json::to_value(f).ok());
        let context = PromptContext {
            system,
            tools,
            response_format,
        };
        let hash = fnv_hex(&serde_json::to_string(&context).unwrap_or_default());
        PromptLog {
            model: job.model_ref.clone(),
            logged: job.journal.prompts.contains(&hash),
            context,
            cut,
            hash,
            sent: usize::from(messages.first().is_some_and(|m| m.role == Role::System)),
        }
    }

    /// The record of a turn about to be sent.
    fn record(&mut self, turn: u32, messages: &[Message]) -> Progress {
        let mut cut = 0u64;
        let new = messages
            .get(self.sent..)
            .unwrap_or_default()
            .iter()
            .map(|m| {
                let mut m = m.clone();
                m.content = cap_text(&m.content, &mut cut);
                serde_json::to_value(m).unwrap_or(Value::Null)
            })
            .collect();
        self.sent = messages.len();
        let context = (!self.logged).then(|| {
            cut += self.cut;
            Box::new(self.context.clone())
        });
        self.logged = true;
        Progress::Prompt {
            turn,
            model: self.model.clone(),
            context_hash: self.hash.clone(),
            context,
            messages: new,
            cut_bytes: cut,
        }
    }

    /// A turn replayed from the journal: its prompt was logged when it was first sent.
    fn replayed(&mut self, messages: &[Message]) {
        self.sent = messages.len();
        self.logged = true;
    }
}

/// `s`, cut to [`PROMPT_TEXT_CAP`] bytes (at a character boundary) with a marker saying how
/// much was cut; adds that to `cut`.
fn cap_text(s: &str, cut: &mut u64) -> String {
    if s.len() <= PROMPT_TEXT_CAP {
        return s.to_string();
    }
    let mut end = PROMPT_TEXT_CAP;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    let gone = s.len() - end;
    *cut += gone as u64;
    format!("{}[... {gone} more bytes cut from the record]", &s[..end])
}

/// A 64-bit FNV-1a hash, in hex: names a prompt context within a step's records.
fn fnv_hex(s: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in s.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// What every request of the step offers the model: its tools (never the reserved sandbox step
/// tool) and, with an output schema, the structured answer asked for.
fn offered(job: &AgentJob) -> (Vec<baton_types::ToolSpec>, Option<ResponseFormat>) {
    let tools = job
        .tools
        .iter()
        .filter(|t| *t != baton_tools::sandbox_step::STEP_TOOL)
        .filter_map(|t| {
            let team = match &job.team {
                Some(link) => crate::team::spec_for(t, &link.reach),
                None => crate::team::spec(t),
            };
            team.or_else(|| job.registry.get(t).map(|t| t.spec()))
        })
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

/// Runs the tools a reply calls, in order, and answers each call in `messages`. A call the
/// journal holds a result for is not made again; one it holds only the start of is sent again
/// when its tool allows that, and otherwise ends the attempt as ambiguous.
async fn answer_tool_calls(
    job: &AgentJob,
    resp: &ChatResponse,
    messages: &mut Vec<Message>,
    calls: &mut u32,
    report: &(impl Fn(Report) + Send + Sync),
) -> Result<(), WorkEnd> {
    messages.push(Message::assistant(
        resp.content.clone(),
        resp.tool_calls.clone(),
    ));
    for call in &resp.tool_calls {
        *calls += 1;
        let n = *calls;
        let recorded = job.journal.call(n).filter(|c| c.call == n);
        let (out, _) = match recorded {
            Some(c) if c.result.is_some() => c.result.clone().unwrap_or_default(),
            _ if crate::team::is_team_tool(&call.name) => ask_team(job, call, n, report).await?,
            Some(c) => {
                let may_repeat = job
                    .registry
                    .get(&call.name)
                    .is_some_and(|t| t.spec().effects.may_repeat());
                if !(may_repeat || job.journal.resend) {
                    return Err(WorkEnd::Ambiguous(Box::new(Pending {
                        call: Some(n),
                        tool: c.tool.clone(),
                        arguments: c.arguments.clone(),
                        key: c.key.clone(),
                    })));
                }
                send(job, call, n, report).await?
            }
            None => send(job, call, n, report).await?,
        };
        let text = match &out {
            Value::String(s) => s.clone(),
            v => v.to_string(),
        };
        messages.push(Message::tool(call.id.clone(), text));
    }
    Ok(())
}

/// Sends call `n` with its own key, once its start is logged, and logs its result.
async fn send(
    job: &AgentJob,
    call: &ToolCall,
    n: u32,
    report: &(impl Fn(Report) + Send + Sync),
) -> Result<(Value, bool), WorkEnd> {
    let key = machine::call_key(&job.tool_ctx.idempotency_key, n);
    let finished = |output: Value, is_error: bool| {
        report(Report::Call {
            call: machine::ToolCall::Finished {
                call: n,
                tool: call.name.clone(),
                output: output.clone(),
                is_error,
            },
            logged: None,
        });
        Ok((output, is_error))
    };
    let tool = match available(job, call) {
        Ok(t) => t,
        // Answered without being sent: nothing to log first.
        Err(why) => return finished(Value::String(why), true),
    };
    let (tx, rx) = tokio::sync::oneshot::channel();
    report(Report::Call {
        call: machine::ToolCall::Started {
            call: n,
            tool: call.name.clone(),
            arguments: call.arguments.clone(),
            key: key.clone(),
        },
        logged: Some(tx),
    });
    // Not logged (the attempt is over): never sent.
    let logged = tokio::select! {
        r = rx => r.ok(),
        _ = job.tool_ctx.cancel.cancelled() => None,
    };
    match logged {
        None => return Err(WorkEnd::Done(Err(cancelled()))),
        // Answered by the machine (denied by the policy): logged with its result, not sent.
        Some(Some(answer)) => return Ok((answer, true)),
        Some(None) => {}
    }
    let ctx = ToolContext {
        idempotency_key: key,
        ..job.tool_ctx.clone()
    };
    match tool.call(call.arguments.clone(), &ctx).await {
        Ok(v) => finished(v, false),
        Err(e) => finished(Value::String(format!("error: {e}")), true),
    }
}

/// A team tool call, answered by the engine once it is logged (with what it changed).
async fn ask_team(
    job: &AgentJob,
    call: &ToolCall,
    n: u32,
    report: &(impl Fn(Report) + Send + Sync),
) -> Result<(Value, bool), WorkEnd> {
    if !job.tools.iter().any(|t| t == &call.name) {
        let why = format!("error: tool '{}' is not available to this agent", call.name);
        report(Report::Call {
            call: machine::ToolCall::Finished {
                call: n,
                tool: call.name.clone(),
                output: Value::String(why.clone()),
                is_error: true,
            },
            logged: None,
        });
        return Ok((Value::String(why), true));
    }
    let (tx, rx) = tokio::sync::oneshot::channel();
    let team_call = machine::TeamCall {
        call: n,
        tool: call.name.clone(),
        arguments: call.arguments.clone(),
        key: machine::call_key(&job.tool_ctx.idempotency_key, n),
    };
    report(Report::Team {
        call: team_call,
        answer: tx,
    });
    tokio::select! {
        r = rx => r.map_err(|_| WorkEnd::Done(Err(cancelled()))),
        _ = job.tool_ctx.cancel.cancelled() => Err(WorkEnd::Done(Err(cancelled()))),
    }
}

/// The tool a call names, when this agent may use it; else the error the model is told.
fn available<'j>(
    job: &'j AgentJob,
    call: &ToolCall,
) -> Result<&'j Arc<dyn baton_tools::Tool>, String> {
    // `sandbox.step` takes its policy from its arguments: a model must never choose one.
    if call.name == baton_tools::sandbox_step::STEP_TOOL
        || !job.tools.iter().any(|t| t == &call.name)
    {
        return Err(format!(
            "error: tool '{}' is not available to this agent",
            call.name
        ));
    }
    job.registry
        .get(&call.name)
        .ok_or_else(|| format!("error: no tool '{}'", call.name))
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
