//! Who is calling: the API key of a request (`Authorization: Bearer KEY`, or `X-Api-Key: KEY`)
//! checked by `Control::authenticate`, which also records failures in the audit log. The
//! handlers take an [`Auth`] and pass its caller to the use cases, which authorize it.

use std::net::SocketAddr;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use baton_control::Caller;

use crate::{ApiError, AppState, REQUEST_ID};

/// An authenticated caller.
pub struct Auth(pub Caller);

/// The key a request presents, if any.
fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(key.trim());
    }
    parts.headers.get("x-api-key")?.to_str().ok().map(str::trim)
}

pub(crate) fn request_id(parts: &Parts) -> Option<String> {
    parts
        .headers
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

pub(crate) fn source(parts: &Parts) -> Option<String> {
    parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map(|c| c.0.ip().to_string())
}

impl FromRequestParts<AppState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &AppState) -> Result<Self, ApiError> {
        let Some(key) = presented_key(parts) else {
            return Err(ApiError::new(
                StatusCode::UNAUTHORIZED,
                "unauthenticated",
                "an API key is required: send `Authorization: Bearer <key>` (create one with `baton keys create`)",
            ));
        };
        let who = state
            .control
            .authenticate(key, request_id(parts), source(parts))
            .await
            .map_err(|e| {
                tracing::warn!(
                    request_id = request_id(parts).as_deref().unwrap_or("-"),
                    "authentication failed: {e}"
                );
                ApiError::from(e)
            })?;
        state.metrics.key_used(&who.caller.key_id);
        Ok(Auth(who.caller))
    }
}
