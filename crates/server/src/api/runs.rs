//! The run routes: start, list, inspect, follow the log of, operate and answer runs.

use super::*;
use baton_control::ResumeOptions;
use baton_types::BudgetChange;

/// A started run.
#[derive(Serialize, JsonSchema)]
pub(crate) struct RunStarted {
    pub(super) id: String,
    /// True when the request's Idempotency-Key had already started this run.
    pub(super) reused: bool,
    pub(super) url: String,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct RunPageJson {
    runs: Vec<baton_control::view::RunListItem>,
    /// The cursor of the next page (absent on the last).
    next: Option<String>,
}

/// What a pause, cancel or resume did.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Applied {
    /// Done here (no process held the run) or queued for the process that holds it.
    applied: bool,
    queued: bool,
    /// The run's status when applied here, or when it had already ended.
    status: Option<RunStatus>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct AnswerJson {
    step: Option<String>,
    recorded: bool,
    /// The run went on (in the background) with the answer.
    continued: bool,
    /// A process holds the run: it takes the answer.
    held_elsewhere: bool,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Approvals {
    approvals: Vec<baton_control::runs::Approval>,
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct StartRun {
    /// A stored workflow: `name` (its latest version) or `name@3`.
    workflow: Option<String>,
    /// Or a whole workflow document, YAML or JSON text.
    source: Option<String>,
    #[serde(default)]
    inputs: Map<String, Value>,
    #[serde(default)]
    breakpoints: Vec<String>,
    #[serde(default)]
    stepping: bool,
    /// The tags a worker must have to run it (e.g. `["gpu"]`): on a PostgreSQL database, only
    /// a worker having all of them claims it (see docs/scale-out.md).
    #[serde(default)]
    worker_tags: Vec<String>,
}

pub(super) async fn start_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    headers: HeaderMap,
    Body(b): Body<StartRun>,
) -> Made<RunStarted> {
    let source = match (b.workflow, b.source) {
        (Some(w), None) => WorkflowSource::Stored(w.parse::<WorkflowRef>()?),
        (None, Some(text)) => WorkflowSource::Inline { text },
        _ => {
            return Err(ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                "give either `workflow` (a stored workflow, `name` or `name@version`) or `source` (a workflow document), not both",
            ));
        }
    };
    let idempotency_key = match headers.get("idempotency-key") {
        Some(v) => Some(
            v.to_str()
                .ok()
                .filter(|k| !k.is_empty() && k.len() <= 255)
                .ok_or_else(|| {
                    ApiError::bad_request("Idempotency-Key must be 1-255 visible ASCII characters")
                })?
                .to_string(),
        ),
        None => None,
    };
    let started = s
        .control
        .start_run(
            &c,
            source,
            RunRequest {
                inputs: b.inputs,
                breakpoints: b.breakpoints,
                stepping: b.stepping,
                idempotency_key,
                max_input_size: None,
                worker_tags: b.worker_tags,
            },
        )
        .await?;
    if let Some(d) = started.drive {
        drop(s.control.spawn(d));
    }
    let body = RunStarted {
        id: started.run.to_string(),
        reused: started.reused,
        url: format!("/api/v1/runs/{}", started.run),
    };
    if started.reused {
        Ok((StatusCode::OK, Json(body)))
    } else {
        created(body)
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ListRuns {
    status: Option<String>,
    workflow: Option<String>,
    /// Unix ms, or a time like `2026-12-03T10:00:00Z`.
    since: Option<String>,
    text: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

pub(super) fn parse_since(s: &str) -> Result<i64, ApiError> {
    if let Ok(ms) = s.parse::<i64>() {
        return Ok(ms);
    }
    humantime::parse_rfc3339_weak(s)
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .ok_or_else(|| {
            ApiError::bad_request(format!(
                "since: '{s}' is neither Unix milliseconds nor a time like 2026-12-03T10:00:00Z"
            ))
        })
}

pub(super) async fn list_runs(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<ListRuns>,
) -> Out<RunPageJson> {
    let status = q
        .status
        .as_deref()
        .map(|st| {
            st.parse::<RunStatus>()
                .map_err(|e| ApiError::bad_request(format!("status: {e}")))
        })
        .transpose()?;
    let since_ms = q.since.as_deref().map(parse_since).transpose()?;
    let page = s
        .control
        .list_runs(
            &c,
            RunQuery {
                status,
                workflow: q.workflow,
                since_ms,
                text: q.text,
                limit: q.limit,
                cursor: q.cursor,
            },
        )
        .await?;
    let runs: Vec<_> = page
        .runs
        .iter()
        .map(baton_control::view::RunListItem::of)
        .collect();
    ok(RunPageJson {
        runs,
        next: page.next,
    })
}

pub(super) async fn get_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<baton_control::view::RunDetail> {
    ok(s.control.run_detail(&c, &id).await?)
}

pub(super) async fn run_graph(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<baton_types::graph::Graph> {
    ok(s.control.run_graph(&c, &id).await?)
}

pub(super) async fn run_state(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<Value> {
    let st = s.control.run_state(&c, &id).await?;
    ok(baton_control::view::state_view(&st))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

pub(super) async fn run_events(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Params(q): Params<EventsQuery>,
) -> Out<Vec<EventRecord>> {
    ok(s.control.events(&c, &id, q.after, q.limit).await?)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct LogsQuery {
    step: Option<String>,
    /// Only the events of this agent's steps.
    agent: Option<String>,
    /// Only events at this level or above: `debug`, `info`, `warn`, `error`.
    level: Option<String>,
    /// Event kinds, comma-separated (`step_failed,human_requested`).
    kind: Option<String>,
    text: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// `json` (default) or `jsonl` (JSON Lines, for export).
    format: Option<String>,
}

pub(super) async fn run_logs(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Params(q): Params<LogsQuery>,
) -> Result<Response, ApiError> {
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: '{other}' is not one of json, jsonl"
            )));
        }
    };
    let level = match q.level.as_deref() {
        Some(l) => Some(
            l.parse()
                .map_err(|e: baton_control::Error| ApiError::bad_request(format!("level: {e}")))?,
        ),
        None => None,
    };
    let filter = EventFilter {
        after: q.after,
        step: q.step,
        agent: q.agent,
        level,
        kinds: q
            .kind
            .map(|k| k.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        text: q.text,
        limit: q.limit,
    };
    let evs = s.control.search_events(&c, &id, &filter).await?;
    if !jsonl {
        return Ok(Json(evs).into_response());
    }
    let mut out = String::new();
    for e in &evs {
        out.push_str(&serde_json::to_string(e).map_err(|e| {
            ApiError::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", e.to_string())
        })?);
        out.push('\n');
    }
    Ok(([(header::CONTENT_TYPE, "application/jsonl")], out).into_response())
}

pub(super) fn outcome(o: ControlOutcome) -> Applied {
    match o {
        ControlOutcome::Applied(status) => Applied {
            applied: true,
            queued: false,
            status: Some(status),
        },
        ControlOutcome::Queued => Applied {
            applied: false,
            queued: true,
            status: None,
        },
    }
}

pub(super) async fn pause_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<Applied> {
    ok(outcome(
        s.control.control_run(&c, &id, RunControl::Pause).await?,
    ))
}

pub(super) async fn control_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(p): Path<super::AgentActionPath>,
) -> Out<Applied> {
    let done = s
        .control
        .control_agent(&c, &p.id, &p.agent, p.action)
        .await?;
    ok(outcome(done))
}

pub(super) async fn cancel_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<Applied> {
    ok(outcome(
        s.control.control_run(&c, &id, RunControl::Cancel).await?,
    ))
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResumeBody {
    /// Pause again before the next step.
    #[serde(default)]
    stepping: bool,
    /// Budget limits to change first, as `baton resume --budget` takes them: `[AGENT.]KIND`
    /// (`tokens`, `cost_usd`, `wall_time`, `model_calls`) to `+AMOUNT` (added) or `AMOUNT`
    /// (set), e.g. `{"tokens": "+50000", "wall_time": "+10m", "coder.cost_usd": 2}`.
    #[serde(default)]
    budget: Map<String, Value>,
}

/// The budget changes of a resume body, in order.
fn budget_changes(budget: &Map<String, Value>) -> Result<Vec<BudgetChange>, baton_control::Error> {
    budget
        .iter()
        .map(|(k, v)| {
            let amount = match v {
                Value::String(s) => s.clone(),
                Value::Number(n) => n.to_string(),
                other => {
                    return Err(format!(
                        "budget {k}: give the amount as a string (\"+50000\") or a number, not {other}"
                    ));
                }
            };
            BudgetChange::parse(k, &amount)
        })
        .collect::<Result<_, _>>()
        .map_err(|why| baton_control::Error::invalid_field("budget", why))
}

pub(super) async fn resume_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<ResumeBody>,
) -> Out<Applied> {
    let opts = ResumeOptions {
        stepping: b.stepping,
        budget: budget_changes(&b.budget)?,
    };
    match s.control.resume_with(&c, &id, opts).await? {
        Resumed::Finished(status) => ok(Applied {
            applied: false,
            queued: false,
            status: Some(status),
        }),
        Resumed::Queued => ok(Applied {
            applied: false,
            queued: true,
            status: None,
        }),
        Resumed::Drive(d) => {
            drop(s.control.spawn(*d));
            ok(Applied {
                applied: true,
                queued: false,
                status: Some(RunStatus::Running),
            })
        }
    }
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct AnswerBody {
    /// The step (default: the only one waiting).
    step: Option<String>,
    comment: Option<String>,
    /// The value of an `input` step.
    value: Option<Value>,
    /// Only record the answer; do not continue the run.
    #[serde(default)]
    no_resume: bool,
}

async fn answer(
    s: AppState,
    c: baton_control::Caller,
    id: String,
    decision: Decision,
    b: AnswerBody,
) -> Out<AnswerJson> {
    let a = Answer {
        step: b.step,
        decision,
        comment: b.comment,
        by: None,
        no_resume: b.no_resume,
    };
    match s.control.answer(&c, &id, a).await? {
        Answered::Recorded {
            step,
            held_elsewhere,
        } => ok(AnswerJson {
            step: Some(step),
            recorded: true,
            continued: false,
            held_elsewhere,
        }),
        Answered::Drive(d) => {
            drop(s.control.spawn(*d));
            ok(AnswerJson {
                step: None,
                recorded: true,
                continued: true,
                held_elsewhere: false,
            })
        }
    }
}

pub(super) async fn approve(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<AnswerBody>,
) -> Out<AnswerJson> {
    answer(s, c, id, Decision::Approve, b).await
}

pub(super) async fn reject(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<AnswerBody>,
) -> Out<AnswerJson> {
    answer(s, c, id, Decision::Reject, b).await
}

pub(super) async fn input(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(mut b): Body<AnswerBody>,
) -> Out<AnswerJson> {
    let value = b.value.take();
    answer(s, c, id, Decision::Input(value), b).await
}

pub(super) async fn approvals(State(s): State<AppState>, Auth(c): Auth) -> Out<Approvals> {
    ok(Approvals {
        approvals: s.control.approvals(&c).await?,
    })
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(super) struct ResolveBody {
    step: String,
    /// `done` (the call took effect; `value` is its result) or `retry` (send it again, with the
    /// same idempotency key).
    #[serde(rename = "as")]
    resolution: baton_types::Resolution,
    value: Option<Value>,
    /// Only record the resolution; do not continue the run.
    #[serde(default)]
    no_resume: bool,
}

pub(super) async fn resolve(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<ResolveBody>,
) -> Out<AnswerJson> {
    let r = baton_control::Resolve {
        step: b.step,
        resolution: b.resolution,
        value: b.value,
        by: None,
        no_resume: b.no_resume,
    };
    match s.control.resolve(&c, &id, r).await? {
        baton_control::Resolved::Recorded {
            step,
            held_elsewhere,
            ..
        } => ok(AnswerJson {
            step: Some(step),
            recorded: true,
            continued: false,
            held_elsewhere,
        }),
        baton_control::Resolved::Drive(d) => {
            drop(s.control.spawn(*d));
            ok(AnswerJson {
                step: None,
                recorded: true,
                continued: true,
                held_elsewhere: false,
            })
        }
    }
}

pub(super) async fn step_trace(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(StepPath { id, step }): Path<StepPath>,
) -> Out<baton_control::view::StepTrace> {
    ok(s.control.step_trace(&c, &id, &step).await?)
}
