//! The work of a step, as a future giving its result: a tool call (a `sandbox:` step is a
//! call of the `sandbox.step` tool) or an agent's model + tool loop, under the step's
//! timeout and a cancellation token the executor keeps per attempt.
//!
//! A `tool:` step's call carries the step's key. Launched again after a crash (`resumed`), a
//! call of a tool that cannot be repeated safely ([`baton_tools::Effects::Unguarded`]) is not
//! sent: the step becomes ambiguous. An agent replays its journal (see [`crate::agent`]).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use baton_tools::ToolContext;
use baton_types::{ModelDelta, RunId, StepError, StepErrorKind, Usage};
use futures::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::{Ack, Executor, ProgressQueue, ResolvedModel, Work};
use crate::agent::{self, AgentJob, Report, WorkEnd};
use crate::context;
use crate::machine::{Input, Pending, RunState, StepRun};
use crate::program::{Node, NodeKind};

/// The cancellation token of each step's running attempt.
pub(super) type Tokens = BTreeMap<String, (u32, CancellationToken)>;

type WorkResult = (WorkEnd, Usage);

/// How a step's work is launched.
pub(super) struct Launch<'a> {
    /// The attempt was launched before, by a process that stopped before its result.
    pub resumed: bool,
    pub run_str: &'a str,
    pub progress: &'a Arc<ProgressQueue>,
    /// The agents a person paused (see [`crate::agent::TeamLink`]).
    pub paused: Option<&'a tokio::sync::watch::Sender<std::collections::BTreeSet<String>>>,
}

impl Executor {
    /// The work of an agent, tool or sandbox step, as a future giving its result (`None` for
    /// steps the machine runs itself).
    pub(super) fn launch(
        &self,
        st: &RunState,
        step: &str,
        sr: &StepRun,
        how: Launch<'_>,
        tokens: &mut Tokens,
    ) -> Option<Work> {
        let node = self.program.node(sr.node);
        let tool = match &node.kind {
            NodeKind::Tool { name } => Some(name.as_str()),
            NodeKind::Sandbox => Some(baton_tools::sandbox_step::STEP_TOOL),
            NodeKind::Agent { .. } => None,
            // A judge join's step, once its judge is asked.
            NodeKind::Parallel { .. } if crate::machine::judge_asked(st, step) => None,
            _ => return None,
        };
        let cancel = CancellationToken::new();
        tokens.insert(step.to_string(), (sr.attempt, cancel.clone()));
        let tool_ctx = ToolContext {
            idempotency_key: sr.key.clone(),
            run_id: how.run_str.to_string(),
            step: step.to_string(),
            workflow: self.program.doc.name.clone(),
            agent: match &node.kind {
                NodeKind::Agent { agent } => Some(agent.clone()),
                _ => None,
            },
            http_allow: self.http_allow.clone(),
            cancel: cancel.clone(),
        };
        let fut = match (tool, &node.kind) {
            (Some(name), _) => match &self.replay {
                Some((rec, _)) if !rec.live_tools() => {
                    let result = rec.tool_step(step, sr.visit, sr.attempt, cancel.clone());
                    Box::pin(async move { (WorkEnd::Done(result.await), Usage::default()) })
                        as BoxFuture<'static, WorkResult>
                }
                _ => self.tool_work(st, node, sr, name, how.resumed, tool_ctx),
            },
            (None, NodeKind::Agent { agent }) => {
                let job = self.agent_job(st, node, agent, sr.frame, tool_ctx);
                self.agent_work(st, sr, (job, agent), step, &how)
            }
            (None, _) => {
                let judge = crate::machine::judge_of(node)?;
                let job = self.judge_job(st, judge, step, sr.frame, tool_ctx);
                self.agent_work(st, sr, (job, judge), step, &how)
            }
        };
        let timeout = node.step.timeout.map(|d| d.0);
        let (step, attempt) = (step.to_string(), sr.attempt);
        Some(Box::pin(async move {
            let started = Instant::now();
            let (end, usage) = with_timeout(fut, timeout, &cancel).await;
            let duration_ms = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
            match end {
                WorkEnd::Done(result) => Input::Done {
                    step,
                    attempt,
                    result,
                    usage,
                    duration_ms,
                },
                WorkEnd::Ambiguous(effect) => Input::Ambiguous {
                    step,
                    attempt,
                    effect: *effect,
                },
            }
        }))
    }

    /// A tool call with the step's arguments rendered now. Resumed, a call of a tool that
    /// cannot be repeated safely is not sent again: ambiguous (a person's `retry` is a new
    /// attempt, launched fresh).
    fn tool_work(
        &self,
        st: &RunState,
        node: &Node,
        sr: &StepRun,
        name: &str,
        resumed: bool,
        tool_ctx: ToolContext,
    ) -> BoxFuture<'static, WorkResult> {
        let p = &self.program;
        // The arguments the policy allowed, when it checked them (rendered once, logged).
        let args = match sr.checked.as_deref() {
            Some(c) if c.attempt == sr.attempt => Ok(c.arguments.clone()),
            _ => {
                let ctx = st.template_context(p, sr.frame);
                let what = format!("{}.with", node.id);
                context::render_args(p, &what, node.tool_args(), &ctx)
            }
        };
        let tool = self.services.tools.get(name).cloned();
        let name = name.to_string();
        Box::pin(async move {
            let done = |r| (WorkEnd::Done(r), Usage::default());
            let args = match args {
                Ok(a) => a,
                Err(e) => return done(Err(e)),
            };
            let Some(tool) = tool else {
                let e = StepError::fatal(StepErrorKind::Execution, format!("no tool '{name}'"));
                return done(Err(e));
            };
            if resumed && !tool.spec().effects.may_repeat() {
                let effect = Pending {
                    call: None,
                    tool: name,
                    arguments: args,
                    key: tool_ctx.idempotency_key,
                };
                return (WorkEnd::Ambiguous(Box::new(effect)), Usage::default());
            }
            done(tool.call(args, &tool_ctx).await.map_err(tool_error))
        })
    }

    /// An agent's model + tool loop (the job, or why there is none, and the agent's name);
    /// its progress goes to the executor's queue.
    fn agent_work(
        &self,
        st: &RunState,
        sr: &StepRun,
        (job, agent): (Result<AgentJob, StepError>, &str),
        step: &str,
        how: &Launch<'_>,
    ) -> BoxFuture<'static, WorkResult> {
        let job = job.map(|mut j| {
            if let Some((rec, tools)) = &self.replay {
                j.model = rec.model(step, sr.visit, sr.attempt);
                j.registry = tools.clone();
            }
            j.deltas = self.delta_fn(st.run_id, step, agent);
            j.journal = sr.journal.as_deref().cloned().unwrap_or_default();
            j.attempt = sr.attempt;
            let name = baton_types::agent_name(agent);
            j.team = Some(agent::TeamLink {
                agent: name.to_string(),
                inbox: self.messaging,
                paused: how.paused.map(|p| p.subscribe()),
                reach: self.reach_of(name),
            });
            j
        });
        let tx = how.progress.clone();
        let (step, attempt) = (step.to_string(), sr.attempt);
        Box::pin(async move {
            let job = match job {
                Ok(j) => j,
                Err(e) => return (WorkEnd::Done(Err(e)), Usage::default()),
            };
            agent::run(job, move |report| match report {
                Report::Progress(progress) => tx.push(
                    Input::Progress {
                        step: step.clone(),
                        progress,
                    },
                    None,
                ),
                Report::Call { call, logged } => {
                    let n = match &call {
                        crate::machine::ToolCall::Started { call, .. }
                        | crate::machine::ToolCall::Finished { call, .. } => *call,
                    };
                    let ack = logged.map(|tx| Ack::Logged {
                        step: step.clone(),
                        call: n,
                        tx,
                    });
                    let input = Input::ToolCall {
                        step: step.clone(),
                        attempt,
                        call,
                    };
                    tx.push(input, ack);
                }
                Report::Team { call, answer } => {
                    let ack = Ack::Answer {
                        step: step.clone(),
                        call: call.call,
                        answer,
                    };
                    let input = Input::TeamCall {
                        step: step.clone(),
                        attempt,
                        call,
                    };
                    tx.push(input, Some(ack));
                }
                Report::Inbox { turn, answer } => {
                    let ack = Ack::Inbox {
                        step: step.clone(),
                        turn,
                        answer,
                    };
                    let input = Input::Inbox {
                        step: step.clone(),
                        attempt,
                        turn,
                    };
                    tx.push(input, Some(ack));
                }
            })
            .await
        })
    }

    /// The model of `agent` (its reference with the environment expanded, resolved), resolved
    /// once per executor; a failure is not kept, so the next attempt tries again.
    fn model_of(&self, agent: &str, model: &str) -> Result<ResolvedModel, StepError> {
        if let Some(cell) = self.models.get(agent)
            && let Some(m) = cell.get()
        {
            return Ok(m.clone());
        }
        let model_ref = baton_llm::config::expand_env(model)
            .map_err(|e| StepError::fatal(StepErrorKind::Model, format!("model {model}: {e}")))?;
        // A replay resolves no model: each attempt gets one that answers from the recording.
        if let Some((rec, _)) = &self.replay {
            return Ok((model_ref, rec.model("", 0, 0)));
        }
        let resolved = self
            .services
            .models
            .resolve(&model_ref, &self.program.base_dir)
            .map_err(|e| {
                StepError::fatal(StepErrorKind::Model, format!("model {model_ref}: {e}"))
            })?;
        let m = (model_ref, resolved);
        if let Some(cell) = self.models.get(agent) {
            let _ = cell.set(m.clone());
        }
        Ok(m)
    }

    fn agent_job(
        &self,
        st: &RunState,
        node: &Node,
        agent: &str,
        frame: u32,
        tool_ctx: ToolContext,
    ) -> Result<AgentJob, StepError> {
        let p = &self.program;
        let spec = self.agent_spec(agent)?;
        let needs_ctx = node.prompt_is_template || spec.instructions.is_some();
        let ctx = needs_ctx.then(|| st.template_context(p, frame));
        let prompt = match (&ctx, node.prompt_is_template) {
            (Some(c), true) => context::render(p, &format!("{}.prompt", node.id), c)?,
            _ => node.prompt().to_string(),
        };
        let schema = node.output_schema.clone();
        self.job_for(agent, prompt, ctx.as_ref(), schema, tool_ctx)
    }

    pub(super) fn agent_spec(&self, agent: &str) -> Result<&baton_types::AgentSpec, StepError> {
        self.program.doc.agents.get(agent).ok_or_else(|| {
            StepError::fatal(StepErrorKind::Execution, format!("unknown agent '{agent}'"))
        })
    }

    /// The job of `agent` asked `prompt` (its instructions rendered in `ctx`), its answer
    /// checked against `schema`.
    pub(super) fn job_for(
        &self,
        agent: &str,
        prompt: String,
        ctx: Option<&minijinja::Value>,
        schema: Option<(serde_json::Value, u32)>,
        tool_ctx: ToolContext,
    ) -> Result<AgentJob, StepError> {
        let p = &self.program;
        let spec = self.agent_spec(agent)?;
        let mut system = String::new();
        if let Some(role) = &spec.role {
            system.push_str(&format!("You are the {role}."));
        }
        if let (Some(_), Some(c)) = (&spec.instructions, ctx) {
            if !system.is_empty() {
                system.push('\n');
            }
            let name = format!("agents.{agent}.instructions");
            system.push_str(&context::render(p, &name, c)?);
        }
        let (model_ref, model) = self.model_of(agent, &spec.model)?;
        Ok(AgentJob {
            model_ref,
            model,
            system: (!system.is_empty()).then_some(system),
            prompt,
            temperature: spec.temperature,
            max_tokens: spec.max_tokens,
            tools: spec.tools.clone(),
            registry: self.services.tools.clone(),
            max_tool_turns: spec
                .max_tool_turns
                .unwrap_or(baton_types::DEFAULT_MAX_TOOL_TURNS),
            schema,
            tool_ctx,
            deltas: None,
            journal: Default::default(),
            attempt: 1,
            team: None,
        })
    }

    /// The agents (but `agent`) and channels an agent can reach (the same for all its steps:
    /// built once per executor).
    fn reach_of(&self, agent: &str) -> Arc<crate::team::Reach> {
        if let Some(r) = self.reach.get(agent) {
            return r.clone();
        }
        Arc::new(super::reach(&self.program.doc, agent))
    }

    /// Passes an agent's streamed text to the sink, when it shows it.
    fn delta_fn(&self, run_id: RunId, step: &str, agent: &str) -> Option<agent::DeltaFn> {
        let sink = self.sink.clone().filter(|s| s.wants_deltas())?;
        let (step, agent) = (step.to_string(), agent.to_string());
        Some(Arc::new(move |turn, text: &str| {
            sink.delta(&ModelDelta {
                run_id,
                step: step.clone(),
                agent: agent.clone(),
                turn,
                text: text.to_string(),
            });
        }))
    }
}

/// A tool's failure as the step's error; a failed sandbox run keeps its execution record.
fn tool_error(e: baton_tools::Error) -> StepError {
    let retryable = e.is_retryable();
    let err = match e {
        baton_tools::Error::SandboxFailed { message, record } => {
            StepError::new(StepErrorKind::Execution, message).with_sandbox(*record)
        }
        e => StepError::new(StepErrorKind::Execution, e.to_string()),
    };
    StepError { retryable, ..err }
}

/// Runs `fut` under the step's timeout (cancelling its work when it runs out).
async fn with_timeout(
    fut: BoxFuture<'static, WorkResult>,
    timeout: Option<Duration>,
    cancel: &CancellationToken,
) -> WorkResult {
    let Some(t) = timeout else {
        return fut.await;
    };
    match tokio::time::timeout(t, fut).await {
        Ok(r) => r,
        Err(_) => {
            cancel.cancel();
            let e = StepError::new(
                StepErrorKind::Timeout,
                format!("timed out after {}", humanize(t)),
            );
            (WorkEnd::Done(Err(e)), Usage::default())
        }
    }
}

fn humanize(d: Duration) -> String {
    let ms = d.as_millis();
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", d.as_secs_f64())
    }
}
