//! `/api/v1`: each handler reads the request, calls one `baton_control` use case with the
//! authenticated caller, and answers its result as JSON (or its error as the one error body).

use aide::axum::ApiRouter;
use aide::axum::routing::{delete_with, get_with, post_with};
use aide::transform::TransformOperation;
use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use baton_control::runs::{EventFilter, RunControl};
use baton_control::{
    AgentRef, Answer, Answered, ControlOutcome, Decision, NewKey, Resumed, RunQuery, RunRequest,
    WorkflowRef, WorkflowSource,
};
use baton_store::AuditQuery;
use baton_types::{EventRecord, RunStatus, TenantId};
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::auth::Auth;
use crate::{ApiError, AppState};

mod agents;
mod fork;
mod recordings;
mod runs;
mod stats;
mod workspace;

use fork::*;
use recordings::*;
use runs::*;
use workspace::*;

/// A JSON answer (200), or the one error body.
type Out<T> = Result<Json<T>, ApiError>;
/// A JSON answer with its status (201 for what a request created).
type Made<T> = Result<(StatusCode, Json<T>), ApiError>;

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/runs",
            post_with(start_run, |o| doc(o, "Start a run of a stored workflow or of a document sent along")
                .response_with::<201, Json<RunStarted>, _>(|r| r.description("a new run"))
                .response_with::<200, Json<RunStarted>, _>(|r| r.description("the run this Idempotency-Key already started")))
            .get_with(list_runs, |o| doc(o, "List the tenant's runs, newest first")),
        )
        .api_route("/runs/{id}", get_with(get_run, |o| doc(o, "A run in full: status, inputs, outputs, steps, usage, sandbox executions")))
        .api_route("/runs/{id}/state", get_with(run_state, |o| doc(o, "The engine state of a run")))
        .api_route("/runs/{id}/graph", get_with(run_graph, |o| doc(o, "The graph of a run's workflow as it was frozen at the start: nodes (each step's kind and fields), edges (sequence, next, then/else, cases, on_error)")))
        .api_route("/runs/{id}/events", get_with(run_events, |o| doc(o, "A run's logged events after a seq")))
        .api_route(
            "/runs/{id}/stream",
            get_with(crate::events::sse, |o| {
                doc(o, "A run's events live, as server-sent events (id = seq; reconnect with Last-Event-ID)")
                    .response_with::<200, String, _>(|r| r.description("text/event-stream: `id: <seq>`, `event: <kind>`, `data: <event JSON>`; `model_delta` events carry no id"))
            }),
        )
        .api_route(
            "/runs/{id}/logs",
            get_with(run_logs, |o| {
                doc(o, "A run's events by step, kind and text; `format=jsonl` exports JSON Lines")
                    .response_with::<200, Json<Vec<EventRecord>>, _>(|r| r.description("the matching events (JSON, or JSON Lines with format=jsonl)"))
            }),
        )
        .api_route("/runs/{id}/pause", post_with(pause_run, |o| doc(o, "Pause a run")))
        .api_route("/runs/{id}/cancel", post_with(cancel_run, |o| doc(o, "Cancel a run")))
        .api_route("/runs/{id}/agents/{agent}/{action}", post_with(control_agent, |o| doc(o, "Pause, resume or stop one agent of a run: a paused agent's running step finishes its current model call and holds, its other steps wait; a stopped agent's pending steps fail with the reason")))
        .api_route("/runs/{id}/resume", post_with(resume_run, |o| doc(o, "Resume a paused or interrupted run")))
        .api_route(
            "/runs/{id}/fork",
            post_with(fork_run, |o| doc(o, "Fork a new run from any point of a run's log (time travel), with state edited or agents on other models; it starts at once")
                .response_with::<201, Json<RunStarted>, _>(|r| r.description("the new run"))),
        )
        .api_route("/runs/{id}/replay", post_with(replay_run, |o| doc(o, "Execute a run again from its own log (docs/recordings.md): no model, tool or sandbox is called and nothing is written; every event is compared with the recording and the final state with the recorded one. `verdict` is `identical` or `diverged` (with the first differing event and the state differences). With `live_tools`, model replies come from the recording and tools really run, in a new run (`replay_run`)")))
        .api_route("/runs/{id}/compare/{other}", get_with(compare_runs, |o| doc(o, "Two runs side by side (docs/recordings.md): status, tokens, cost and time of each; every step with both outputs, whether they differ and a unified diff; the difference of their final workspace trees")))
        .api_route("/runs/{id}/edit", post_with(edit_run, |o| doc(o, "Edit a paused run's state (a finished step's output, a key of the shared state) before it continues: logged as `state_edited`, which the next steps see; 409 unless the run is paused")))
        .api_route("/runs/{id}/breakpoints", post_with(change_breakpoints, |o| doc(o, "Change the steps a run pauses before, while it runs or while it is stopped: `add` and `remove` step ids, or `set` the whole list; logged as `breakpoints_set`. Answers the run's breakpoints, whether it steps, and why it is paused; 422 for a step the workflow does not have, 409 once the run finished")))
        .api_route("/runs/{id}/workspace", get_with(workspace_log, |o| doc(o, "The history of a run's workspace (docs/workspace.md): each change with its commit, step, agent and summary; 404 when no step wrote a file")))
        .api_route("/runs/{id}/workspace/diff", get_with(workspace_diff, |o| doc(o, "The unified diff of what `step` changed in the run's workspace (every visit of it), or of every change of the run; 404 for a step that changed no file")))
        .api_route("/runs/{id}/workspace/rollback", post_with(workspace_rollback, |o| doc(o, "Put the run's files back exactly as they were before `step` first changed them, as a new change (`rollback-STEP`); audited as `run.rollback`; 409 while another process runs the run")))
        .api_route("/runs/{id}/approve", post_with(approve, |o| doc(o, "Approve a waiting human step")))
        .api_route("/runs/{id}/reject", post_with(reject, |o| doc(o, "Reject a waiting human step")))
        .api_route("/runs/{id}/input", post_with(input, |o| doc(o, "Answer a waiting human input step with a value")))
        .api_route("/runs/{id}/resolve", post_with(resolve, |o| doc(o, "Settle an ambiguous step: its call is `done` (with its result) or to `retry` (sent again with the same key)")))
        .api_route("/runs/{id}/steps/{step}", get_with(step_trace, |o| doc(o, "What a step's model saw and did: each turn's prompt (messages and tools offered) and each tool call with its key and result")))
        .api_route("/approvals", get_with(approvals, |o| doc(o, "Every human step waiting in the tenant's runs")))
        .api_route(
            "/workflows",
            post_with(create_workflow, |o| yaml_body(doc(o, "Store a workflow (YAML or JSON) as version 1")))
                .get_with(list_workflows, |o| doc(o, "The tenant's stored workflows")),
        )
        .api_route("/workflows/validate", post_with(validate_workflow, |o| yaml_body(doc(o, "Validate a workflow document without storing it"))))
        .api_route(
            "/workflows/{name}",
            get_with(get_workflow, |o| doc(o, "A stored workflow's latest version, or `name@3`"))
                .put_with(update_workflow, |o| yaml_body(doc(o, "Store the next version of a workflow")))
                .delete_with(delete_workflow, |o| doc(o, "Delete a workflow (its versions are kept)")),
        )
        .api_route(
            "/keys",
            post_with(create_key, |o| {
                doc(o, "Create an API key (its secret is in this answer only)")
                    .response_with::<201, Json<baton_control::CreatedKey>, _>(|r| r.description("the key, with its secret (shown only now)"))
            })
                .get_with(list_keys, |o| doc(o, "The tenant's API keys, without secrets")),
        )
        .api_route("/keys/{id}", delete_with(revoke_key, |o| doc(o, "Revoke an API key")))
        .api_route(
            "/tenants",
            post_with(create_tenant, |o| doc(o, "Create a tenant (the operator)"))
                .get_with(list_tenants, |o| doc(o, "The tenants (the operator)")),
        )
        .api_route("/me", get_with(me, |o| doc(o, "Who the key is: its tenant, role and what the role allows (what a front end shows)")))
        .api_route("/audit", get_with(audit, |o| doc(o, "The tenant's audit log")))
        .api_route("/audit/verify", get_with(verify_audit, |o| doc(o, "Check the audit log's hash chain")))
        .api_route(
            "/ws",
            get_with(crate::events::ws, |o| {
                doc(o, "A WebSocket for run events: subscribe to runs (from a seq) or to the tenant")
                    .response_with::<101, (), _>(|r| r.description("switching to the WebSocket protocol"))
            }),
        )
        .merge(agents::routes())
        .merge(stats::routes())
        .merge(crate::webhooks::routes())
}

/// Every operation: its summary, the key it needs, and the errors any route may answer.
pub(crate) fn doc<'a>(o: TransformOperation<'a>, summary: &str) -> TransformOperation<'a> {
    type E = Json<crate::error::ErrorBody>;
    o.summary(summary)
        .security_requirement("api_key")
        .response_with::<400, E, _>(|r| {
            r.description("malformed request (JSON syntax, query string)")
        })
        .response_with::<401, E, _>(|r| {
            r.description("no key, or an unknown, revoked or expired one")
        })
        .response_with::<403, E, _>(|r| r.description("the key's role may not do this"))
        .response_with::<404, E, _>(|r| r.description("no such object in the key's tenant"))
        .response_with::<409, E, _>(|r| r.description("conflict with the current state"))
        .response_with::<413, E, _>(|r| r.description("body over the size limit"))
        .response_with::<415, E, _>(|r| r.description("wrong content type"))
        .response_with::<422, E, _>(|r| r.description("well-formed but invalid (details say what)"))
        .response_with::<429, E, _>(|r| r.description("the key is over its rate (see Retry-After)"))
}

/// A route whose body is a workflow or agent document (YAML or JSON text).
fn yaml_body(o: TransformOperation<'_>) -> TransformOperation<'_> {
    o.description("The body is the document (a workflow, or an agent): `Content-Type: application/yaml` (or `text/yaml`) for YAML, `application/json` for JSON.")
}

/// The `{id}` of a route's path (a run id or unique prefix, a key, hook or subscription id),
/// named so that the OpenAPI document declares it.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct IdPath {
    /// The object's id (for a run: its id or a unique prefix of it).
    pub(crate) id: String,
}

/// The `{name}` of a workflow route (`name`, or `name@3` for a version).
#[derive(Deserialize, JsonSchema)]
pub(crate) struct NamePath {
    /// A stored workflow's name, or `name@3` for one version.
    pub(crate) name: String,
}

/// `/runs/{id}/steps/{step}`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct StepPath {
    /// The run's id (or a unique prefix of it).
    pub(crate) id: String,
    /// The step's path (`build`, `loop/3/check`...).
    pub(crate) step: String,
}

/// `/runs/{id}/agents/{agent}/{action}`.
#[derive(Deserialize, JsonSchema)]
pub(crate) struct AgentActionPath {
    /// The run's id (or a unique prefix of it).
    pub(crate) id: String,
    /// The agent's name in the run's workflow.
    pub(crate) agent: String,
    /// `pause`, `resume` or `stop`.
    pub(crate) action: baton_types::AgentAction,
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

fn ok<T>(v: T) -> Out<T> {
    Ok(Json(v))
}

fn created<T>(v: T) -> Made<T> {
    Ok((StatusCode::CREATED, Json(v)))
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Validation {
    valid: bool,
    diagnostics: Vec<baton_control::Diagnostic>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Workflows {
    workflows: Vec<baton_control::WorkflowInfo>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Keys {
    keys: Vec<baton_control::KeyInfo>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct Tenants {
    tenants: Vec<baton_store::TenantRecord>,
}

#[derive(Serialize, JsonSchema)]
pub(crate) struct AuditPage {
    entries: Vec<baton_store::AuditEntry>,
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
                    "a document is sent as YAML (Content-Type: application/yaml) or JSON (application/json), not '{other}'"
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
) -> Made<baton_control::WorkflowVersion> {
    let (file, text) = document(&headers, &body)?;
    created(s.control.create_workflow(&c, &file, &text).await?)
}

async fn validate_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Out<Validation> {
    let (file, text) = document(&headers, &body)?;
    match s.control.validate(&c, &file, &text).await {
        Ok(warnings) => ok(Validation {
            valid: true,
            diagnostics: warnings,
        }),
        Err(e) if !e.diagnostics().is_empty() => ok(Validation {
            valid: false,
            diagnostics: e.diagnostics().to_vec(),
        }),
        Err(e) => Err(e.into()),
    }
}

async fn list_workflows(State(s): State<AppState>, Auth(c): Auth) -> Out<Workflows> {
    ok(Workflows {
        workflows: s.control.list_workflows(&c).await?,
    })
}

async fn get_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(NamePath { name }): Path<NamePath>,
) -> Out<baton_control::WorkflowVersion> {
    let r: WorkflowRef = name.parse()?;
    ok(s.control.get_workflow(&c, &r).await?)
}

async fn update_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(NamePath { name }): Path<NamePath>,
    headers: HeaderMap,
    body: Bytes,
) -> Out<baton_control::WorkflowVersion> {
    let (file, text) = document(&headers, &body)?;
    ok(s.control.update_workflow(&c, &name, &file, &text).await?)
}

async fn delete_workflow(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(NamePath { name }): Path<NamePath>,
) -> Result<axum::response::NoContent, ApiError> {
    s.control.delete_workflow(&c, &name).await?;
    Ok(axum::response::NoContent)
}

// ---- keys, tenants, audit ------------------------------------------------------------------

#[derive(Deserialize, JsonSchema)]
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
) -> Made<baton_control::CreatedKey> {
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

#[derive(Deserialize, JsonSchema)]
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
) -> Out<Keys> {
    let t = tenant_param(q.tenant)?;
    ok(Keys {
        keys: s.control.list_keys(&c, t.as_ref()).await?,
    })
}

async fn revoke_key(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Out<baton_control::KeyInfo> {
    ok(s.control.revoke_key(&c, &id).await?)
}

#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateTenant {
    id: String,
    name: Option<String>,
}

async fn create_tenant(
    State(s): State<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateTenant>,
) -> Made<baton_store::TenantRecord> {
    created(s.control.create_tenant(&c, &b.id, b.name).await?)
}

async fn me(Auth(c): Auth) -> Out<baton_control::Whoami> {
    ok(c.whoami())
}

async fn list_tenants(State(s): State<AppState>, Auth(c): Auth) -> Out<Tenants> {
    ok(Tenants {
        tenants: s.control.list_tenants(&c).await?,
    })
}

#[derive(Deserialize, JsonSchema)]
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
) -> Out<AuditPage> {
    let t = tenant_param(q.tenant)?;
    let query = AuditQuery {
        after: q.after,
        limit: q.limit,
        action: q.action,
        key_id: q.key_id,
        since_ms: q.since.as_deref().map(parse_since).transpose()?,
    };
    ok(AuditPage {
        entries: s.control.audit(&c, t.as_ref(), &query).await?,
    })
}

async fn verify_audit(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<TenantQuery>,
) -> Out<baton_control::audit::Verified> {
    let t = tenant_param(q.tenant)?;
    ok(s.control.verify_audit(&c, t.as_ref()).await?)
}

impl<T: JsonSchema> aide::OperationInput for Body<T> {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        Json::<T>::operation_input(ctx, operation);
    }
}

impl<T: JsonSchema> aide::OperationInput for Params<T> {
    fn operation_input(
        ctx: &mut aide::generate::GenContext,
        operation: &mut aide::openapi::Operation,
    ) {
        Query::<T>::operation_input(ctx, operation);
    }
}
