//! Webhooks over HTTP: `POST /hooks/{id}` (an inbound hook: no API key, the Standard
//! Webhooks signature is the authentication), the `/api/v1/webhooks/...` routes that manage
//! inbound hooks and outbound subscriptions, and (`delivery`) the worker that sends the
//! outbound deliveries. Every handler is one `baton_control` use case.

pub mod delivery;

use axum::Json;
use axum::body::Bytes;
use axum::extract::{FromRequest, Path, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use baton_control::webhooks::{
    DeliveryPage, Incoming, NewInboundHook, NewSubscription, Subscription, SubscriptionWithSecret,
};
use serde::Deserialize;
use serde_json::json;

pub use delivery::{Deliverer, DeliveryConfig};

use crate::api::IdPath;
use crate::api::{Body, Params};
use crate::auth::{Auth, request_id, source};
use crate::error::too_large_or;
use crate::{ApiError, AppState};

type ApiResult = Result<Response, ApiError>;

/// The `/api/v1` routes (nested by `api::routes`).
pub(crate) fn routes() -> aide::axum::ApiRouter<AppState> {
    use crate::api::doc;
    use aide::axum::routing::{get_with, post_with};
    aide::axum::ApiRouter::new()
        .api_route(
            "/webhooks/inbound",
            post_with(create_inbound, |o| doc(o, "Create an inbound hook bound to a stored workflow (its secret is in this answer only)"))
                .get_with(list_inbound, |o| doc(o, "The tenant's inbound hooks")),
        )
        .api_route(
            "/webhooks/inbound/{id}",
            get_with(get_inbound, |o| doc(o, "An inbound hook"))
                .delete_with(delete_inbound, |o| doc(o, "Delete an inbound hook")),
        )
        .api_route(
            "/webhooks/inbound/{id}/rotate",
            post_with(rotate_inbound, |o| doc(o, "A new secret for an inbound hook; the old one stays valid for a while")),
        )
        .api_route(
            "/webhooks/subscriptions",
            post_with(create_subscription, |o| {
                doc(o, "Subscribe a URL to run events (deliveries signed as Standard Webhooks)")
                    .response_with::<201, Json<SubscriptionWithSecret>, _>(|r| r.description("the subscription, with its secret (shown only now)"))
            })
                .get_with(list_subscriptions, |o| doc(o, "The tenant's webhook subscriptions")),
        )
        .api_route(
            "/webhooks/subscriptions/{id}",
            get_with(get_subscription, |o| doc(o, "A webhook subscription"))
                .delete_with(delete_subscription, |o| doc(o, "Delete a webhook subscription")),
        )
        .api_route(
            "/webhooks/subscriptions/{id}/deliveries",
            get_with(deliveries, |o| doc(o, "A subscription's deliveries and their attempts")),
        )
}

fn header<'a>(h: &'a HeaderMap, name: &str) -> Option<&'a str> {
    h.get(name).and_then(|v| v.to_str().ok())
}

/// `POST /hooks/{id}`: checks the signature and starts the hook's workflow (202 with the run).
pub(crate) async fn receive(
    State(s): State<AppState>,
    Path(IdPath { id }): Path<IdPath>,
    req: Request,
) -> ApiResult {
    // Per hook, at the keys' rate, before anything is read or recorded: a flood of requests
    // to one URL neither starts runs nor fills the audit log.
    if let Err(e) = s.limiter.admit(
        &format!("hook/{id}"),
        s.config.rate_limit,
        "this hook received",
    ) {
        s.control.telemetry().inbound_rate_limited();
        return Err(e);
    }
    let (parts, body) = req.into_parts();
    let (rid, from) = (request_id(&parts), source(&parts));
    let headers = parts.headers.clone();
    let req = Request::from_parts(parts, body);
    let body = Bytes::from_request(req, &s)
        .await
        .map_err(|e| too_large_or(e.status(), e.body_text()))?;
    let h = &headers;
    let received = s
        .control
        .receive_webhook(Incoming {
            hook: &id,
            msg_id: header(h, "webhook-id"),
            timestamp: header(h, "webhook-timestamp"),
            signature: header(h, "webhook-signature"),
            body: &body,
            request_id: rid,
            source: from,
        })
        .await
        .map_err(|e| {
            // Never the secret or the signature: which hook, and why.
            // (The request's span names the request.)
            tracing::warn!(hook = %id, "webhook refused: {e}");
            ApiError::from(e)
        })?;
    if let Some(d) = received.drive {
        drop(s.control.spawn(d));
    }
    Ok((
        StatusCode::ACCEPTED,
        Json(json!({
            "run_id": received.run.to_string(),
            "url": format!("/api/v1/runs/{}", received.run),
        })),
    )
        .into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateInbound {
    /// A stored workflow: `name` or `name@3`.
    workflow: String,
    /// Give the whole body as this input (absent: the body's fields are the inputs).
    body_input: Option<String>,
    name: Option<String>,
}

async fn create_inbound(
    State(s): State<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateInbound>,
) -> ApiResult {
    let h = s
        .control
        .create_inbound_hook(
            &c,
            NewInboundHook {
                workflow: b.workflow,
                body_input: b.body_input,
                name: b.name,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(h)).into_response())
}

async fn list_inbound(State(s): State<AppState>, Auth(c): Auth) -> ApiResult {
    Ok(Json(json!({"hooks": s.control.list_inbound_hooks(&c).await?})).into_response())
}

async fn get_inbound(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult {
    Ok(Json(s.control.get_inbound_hook(&c, &id).await?).into_response())
}

async fn delete_inbound(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult {
    s.control.delete_inbound_hook(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct Rotate {
    /// How long the old secret stays valid: `24h`, `30m`, `0s` (default `24h`).
    old_secret_valid_for: Option<String>,
}

/// The default time the old secret stays valid after a rotation.
const ROTATION_OVERLAP: &str = "24h";

async fn rotate_inbound(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Body(b): Body<Rotate>,
) -> ApiResult {
    let text = b
        .old_secret_valid_for
        .unwrap_or_else(|| ROTATION_OVERLAP.into());
    let d = humantime::parse_duration(&text).map_err(|e| {
        ApiError::new(
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid",
            format!("old_secret_valid_for: '{text}': {e} (write a duration like 24h or 0s)"),
        )
    })?;
    let ms = i64::try_from(d.as_millis()).unwrap_or(i64::MAX);
    Ok(Json(s.control.rotate_inbound_hook(&c, &id, ms).await?).into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct CreateSubscription {
    url: String,
    events: Vec<String>,
    description: Option<String>,
}

/// The tenant's webhook subscriptions.
#[derive(serde::Serialize, schemars::JsonSchema)]
struct Subscriptions {
    subscriptions: Vec<Subscription>,
}

async fn create_subscription(
    State(s): State<AppState>,
    Auth(c): Auth,
    Body(b): Body<CreateSubscription>,
) -> Result<(StatusCode, Json<SubscriptionWithSecret>), ApiError> {
    let sub = s
        .control
        .create_subscription(
            &c,
            NewSubscription {
                url: b.url,
                events: b.events,
                description: b.description,
            },
        )
        .await?;
    Ok((StatusCode::CREATED, Json(sub)))
}

async fn list_subscriptions(
    State(s): State<AppState>,
    Auth(c): Auth,
) -> Result<Json<Subscriptions>, ApiError> {
    Ok(Json(Subscriptions {
        subscriptions: s.control.list_subscriptions(&c).await?,
    }))
}

async fn get_subscription(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> Result<Json<Subscription>, ApiError> {
    Ok(Json(s.control.get_subscription(&c, &id).await?))
}

async fn delete_subscription(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
) -> ApiResult {
    s.control.delete_subscription(&c, &id).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

#[derive(Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
struct DeliveriesQuery {
    limit: Option<u32>,
    cursor: Option<String>,
}

async fn deliveries(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(IdPath { id }): Path<IdPath>,
    Params(q): Params<DeliveriesQuery>,
) -> Result<Json<DeliveryPage>, ApiError> {
    Ok(Json(
        s.control
            .deliveries(&c, &id, q.cursor.as_deref(), q.limit)
            .await?,
    ))
}
