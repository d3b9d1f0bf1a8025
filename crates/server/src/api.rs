//! `/api/v1`: each handler reads the request, calls one `baton_control` use case with the
//! authenticated caller, and answers its result as JSON (or its error as the one error body).

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use baton_control::runs::{EventFilter, RunControl};
use baton_control::{
    Answer, Answered, ControlOutcome, Decision, NewKey, Resumed, RunQuery, RunRequest, WorkflowRef,
    WorkflowSource,
};
use baton_store::AuditQuery;
use baton_types::{RunStatus, TenantId};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::{ApiError, AppState, events};

type ApiResult = Result<Response, ApiError>;

pub(crate) fn routes() -> axum::Router<AppState> {
    axum::Router::new()
        .route("/runs", post(start_run).get(list_runs))
        .route("/runs/{id}", get(get_run))
        .route("/runs/{id}/state", get(run_state))
        .route("/runs/{id}/events", get(run_events))
        .route("/runs/{id}/stream", get(events::sse))
        .route("/runs/{id}/logs", get(run_logs))
        .route("/runs/{id}/pause", post(pause_run))
        .route("/runs/{id}/cancel", post(cancel_run))
        .route("/runs/{id}/resume", post(resume_run))
        .route("/runs/{id}/approve", post(approve))
        .route("/runs/{id}/reject", post(reject))
        .route("/runs/{id}/input", post(input))
        .route("/approvals", get(approvals))
        .route("/workflows", post(create_workflow).get(list_workflows))
        .route("/workflows/validate", post(validate_workflow))
        .route(
            "/workflows/{name}",
            get(get_workflow)
                .put(update_workflow)
                .delete(delete_workflow),
        )
        .route("/keys", post(create_key).get(list_keys))
        .route("/keys/{id}", axum::routing::delete(revoke_key))
        .route("/tenants", post(create_tenant).get(list_tenants))
        .route("/audit", get(audit))
        .route("/audit/verify", get(verify_audit))
        .route("/ws", get(events::ws))
        .merge(crate::webhooks::routes())
}

/// A JSON body that fits `T`, or the standard 4xx.
pub(crate) struct Body<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        // An empty body reads as `{}` (every request body here has only optional fields or
        // says which are missing).
        let empty = req
            .headers()
            .get(header::CONTENT_LENGTH)
            .is_some_and(|v| v == "0");
        if empty {
            return serde_json::from_value(json!({})).map(Body).map_err(|e| {
                ApiError::new(StatusCode::UNPROCESSABLE_ENTITY, "invalid", e.to_string())
            });
        }
        let Json(v) = Json::<T>::from_request(req, state).await?;
        Ok(Body(v))
    }
}

/// A query string that fits `T`, or 400 naming the parameter.
pub(crate) struct Params<T>(pub T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, ApiError> {
        Query::<T>::from_request_parts(parts, state)
            .await
            .map(|Query(q)| Params(q))
            .map_err(|e| ApiError::bad_request(format!("query string: {}", e.body_text())))
    }
}

fn ok(v: impl serde::Serialize) -> ApiResult {
    Ok(Json(v).into_response())
}

fn created(v: impl serde::Serialize) -> ApiResult {
    Ok((StatusCode::CREATED, Json(v)).into_response())
}

// ---- runs ----------------------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct StartRun {
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
}

async fn start_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    headers: HeaderMap,
    Body(b): Body<StartRun>,
) -> ApiResult {
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
            },
        )
        .await?;
    if let Some(d) = started.drive {
        drop(s.control.spawn(d));
    }
    let body = json!({
        "id": started.run.to_string(),
        "reused": started.reused,
        "url": format!("/api/v1/runs/{}", started.run),
    });
    if started.reused {
        ok(body)
    } else {
        created(body)
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ListRuns {
    status: Option<String>,
    workflow: Option<String>,
    /// Unix ms, or a time like `2026-12-03T10:00:00Z`.
    since: Option<String>,
    text: Option<String>,
    limit: Option<u32>,
    cursor: Option<String>,
}

fn parse_since(s: &str) -> Result<i64, ApiError> {
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

async fn list_runs(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<ListRuns>,
) -> ApiResult {
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
    ok(json!({"runs": runs, "next": page.next}))
}

async fn get_run(State(s): State<AppState>, Auth(c): Auth, Path(id): Path<String>) -> ApiResult {
    ok(s.control.run_detail(&c, &id).await?)
}

async fn run_state(State(s): State<AppState>, Auth(c): Auth, Path(id): Path<String>) -> ApiResult {
    let st = s.control.run_state(&c, &id).await?;
    ok(baton_control::view::state_view(&st))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct EventsQuery {
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
}

async fn run_events(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Params(q): Params<EventsQuery>,
) -> ApiResult {
    ok(s.control.events(&c, &id, q.after, q.limit).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    step: Option<String>,
    /// Event kinds, comma-separated (`step_failed,human_requested`).
    kind: Option<String>,
    text: Option<String>,
    #[serde(default)]
    after: u64,
    limit: Option<usize>,
    /// `json` (default) or `jsonl` (JSON Lines, for export).
    format: Option<String>,
}

async fn run_logs(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Params(q): Params<LogsQuery>,
) -> ApiResult {
    let jsonl = match q.format.as_deref() {
        None | Some("json") => false,
        Some("jsonl") => true,
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "format: '{other}' is not one of json, jsonl"
            )));
        }
    };
    let filter = EventFilter {
        after: q.after,
        step: q.step,
        kinds: q
            .kind
            .map(|k| k.split(',').map(|s| s.trim().to_string()).collect())
            .unwrap_or_default(),
        text: q.text,
        limit: q.limit,
    };
    let evs = s.control.search_events(&c, &id, &filter).await?;
    if !jsonl {
        return ok(evs);
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

fn outcome(o: ControlOutcome) -> Value {
    match o {
        ControlOutcome::Applied(status) => json!({"applied": true, "status": status}),
        ControlOutcome::Queued => json!({"applied": false, "queued": true}),
    }
}

async fn pause_run(State(s): State<AppState>, Auth(c): Auth, Path(id): Path<String>) -> ApiResult {
    ok(outcome(
        s.control.control_run(&c, &id, RunControl::Pause).await?,
    ))
}

async fn cancel_run(State(s): State<AppState>, Auth(c): Auth, Path(id): Path<String>) -> ApiResult {
    ok(outcome(
        s.control.control_run(&c, &id, RunControl::Cancel).await?,
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ResumeBody {
    /// Pause again before the next step.
    #[serde(default)]
    stepping: bool,
}

async fn resume_run(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<ResumeBody>,
) -> ApiResult {
    match s.control.resume(&c, &id, b.stepping).await? {
        Resumed::Finished(status) => ok(json!({"resumed": false, "status": status})),
        Resumed::Queued => ok(json!({"resumed": true, "queued": true})),
        Resumed::Drive(d) => {
            drop(s.control.spawn(*d));
            ok(json!({"resumed": true}))
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AnswerBody {
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
) -> ApiResult {
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
        } => ok(
            json!({"step": step, "recorded": true, "continued": false, "held_elsewhere": held_elsewhere}),
        ),
        Answered::Drive(d) => {
            drop(s.control.spawn(*d));
            ok(json!({"recorded": true, "continued": true}))
        }
    }
}

async fn approve(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<AnswerBody>,
) -> ApiResult {
    answer(s, c, id, Decision::Approve, b).await
}

async fn reject(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(b): Body<AnswerBody>,
) -> ApiResult {
    answer(s, c, id, Decision::Reject, b).await
}

async fn input(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(id): Path<String>,
    Body(mut b): Body<AnswerBody>,
) -> ApiResult {
    let value = b.value.take();
    answer(s, c, id, Decision::Input(value), b).await
}

async fn approvals(State(s): State<AppState>, Auth(c): Auth) -> ApiResult {
    ok(json!({"approvals": s.control.approvals(&c).await?}))
}

// ---- workflows -----------------------------------------------------------------------------

/// A workflow document from the body: YAML (`application/yaml`, `text/yaml`, `text/plain`) or
/// JSON (`application/json`), as text.
fn document(headers: &HeaderMap, body: &Bytes) -> Result<(String, String), ApiError> {
    let ct = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .split(';')
        .next()
        .unwrap_or("")
        .trim()
        .to_ascii_lowercase();
    let file = match ct.as_str() {
        "application/json" => "<request>.json",
        "application/yaml" | "application/x-yaml" | "text/yaml" | "text/x-yaml" | "text/plain" => {
            "<request>.yaml"
        }
        other => {
            return Err(ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                format!(
                    "a workflow is sent as YAML (Content-Type: application/yaml) or JSON (application/json), not '{other}'"
                ),
            ));
        }
    };
    let text = std::str::from_utf8(body)
        .map_err(|e| ApiError::bad_request(format!("the document is not UTF-8: {e}")))?;
    Ok((file.to_string(), text.to_string()))
}

async fn create_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (file, text) = document(&headers, &body)?;
    created(s.control.create_workflow(&c, &file, &text).await?)
}

async fn validate_workflow(
    State(s): State<AppState>,
    Auth(_c): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (file, text) = document(&headers, &body)?;
    match s.control.validate(&file, &text) {
        Ok(warnings) => ok(json!({"valid": true, "diagnostics": warnings})),
        Err(e) if !e.diagnostics().is_empty() => {
            ok(json!({"valid": false, "diagnostics": e.diagnostics()}))
        }
        Err(e) => Err(e.into()),
    }
}

async fn list_workflows(State(s): State<AppState>, Auth(c): Auth) -> ApiResult {
    ok(json!({"workflows": s.control.list_workflows(&c).await?}))
}

async fn get_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(name): Path<String>,
) -> ApiResult {
    let r: WorkflowRef = name.parse()?;
    ok(s.control.get_workflow(&c, &r).await?)
}

async fn update_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> ApiResult {
    let (file, text) = document(&headers, &body)?;
    ok(s.control.update_workflow(&c, &name, &file, &text).await?)
}

async fn delete_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(name): Path<String>,
) -> ApiResult {
    s.control.delete_workflow(&c, &name).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- keys, tenants, audit ------------------------------------------------------------------

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateKey {
    role: String,
    tenant: Option<String>,
    name: Option<String>,
    /// How long the key works: `30d`, `12h`... (absent: until revoked).
    expires_in: Option<String>,
}

async fn create_key(
    State(s): State<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateKey>,
) -> ApiResult {
    let role = b.role.parse().map_err(|e: String| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("role: {e}"),
        )
    })?;
    let tenant = b
        .tenant
        .map(|t| t.parse::<TenantId>())
        .transpose()
        .map_err(|e| {
            ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("tenant: {e}"),
            )
        })?;
    let expires_at_ms = match b.expires_in {
        Some(d) => {
            let d = humantime::parse_duration(&d).map_err(|e| {
                ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "invalid",
                    format!("expires_in: '{d}': {e} (write a duration like 30d or 12h)"),
                )
            })?;
            Some(
                baton_store::now_ms()
                    .saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX)),
            )
        }
        None => None,
    };
    created(
        s.control
            .create_key(
                &c,
                NewKey {
                    tenant,
                    role,
                    name: b.name,
                    expires_at_ms,
                },
            )
            .await?,
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantQuery {
    tenant: Option<String>,
}

fn tenant_param(t: Option<String>) -> Result<Option<TenantId>, ApiError> {
    t.map(|t| t.parse::<TenantId>())
        .transpose()
        .map_err(|e| ApiError::bad_request(format!("tenant: {e}")))
}

async fn list_keys(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<TenantQuery>,
) -> ApiResult {
    let t = tenant_param(q.tenant)?;
    ok(json!({"keys": s.control.list_keys(&c, t.as_ref()).await?}))
}

async fn revoke_key(State(s): State<AppState>, Auth(c): Auth, Path(id): Path<String>) -> ApiResult {
    ok(s.control.revoke_key(&c, &id).await?)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: String,
    name: Option<String>,
}

async fn create_tenant(
    State(s): State<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateTenant>,
) -> ApiResult {
    created(s.control.create_tenant(&c, &b.id, b.name).await?)
}

async fn list_tenants(State(s): State<AppState>, Auth(c): Auth) -> ApiResult {
    ok(json!({"tenants": s.control.list_tenants(&c).await?}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AuditParams {
    tenant: Option<String>,
    after: Option<u64>,
    limit: Option<u32>,
    action: Option<String>,
    key_id: Option<String>,
    since: Option<String>,
}

async fn audit(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<AuditParams>,
) -> ApiResult {
    let t = tenant_param(q.tenant)?;
    let query = AuditQuery {
        after: q.after,
        limit: q.limit,
        action: q.action,
        key_id: q.key_id,
        since_ms: q.since.as_deref().map(parse_since).transpose()?,
    };
    ok(json!({"entries": s.control.audit(&c, t.as_ref(), &query).await?}))
}

async fn verify_audit(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<TenantQuery>,
) -> ApiResult {
    let t = tenant_param(q.tenant)?;
    ok(s.control.verify_audit(&c, t.as_ref()).await?)
}
