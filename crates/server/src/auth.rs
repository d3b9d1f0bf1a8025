//! Who is calling: the API key of a request (`Authorization: Bearer KEY`, or `X-Api-Key: KEY`;
//! on a WebSocket handshake, which a browser cannot give headers, also the subprotocol
//! `baton.key.KEY` next to `baton.v1`, see [`WS_PROTOCOL`]) checked by `Control::authenticate`, which also records failures in the audit log. The
//! handlers take an [`Auth`] and pass its caller to the use cases, which authorize it.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use baton_control::Caller;

use crate::{ApiError, AppState, REQUEST_ID};

/// An authenticated caller.
pub struct Auth(pub Caller);

/// The subprotocol a WebSocket client asks for, and the one the server answers with.
pub(crate) const WS_PROTOCOL: &str = "baton.v1";
/// The prefix of the subprotocol that carries a browser's key on a WebSocket handshake
/// (`Sec-WebSocket-Protocol: baton.v1, baton.key.KEY`); never echoed, never in a query string.
const WS_KEY_PREFIX: &str = "baton.key.";

/// The key a request presents, if any.
fn presented_key(parts: &Parts) -> Option<&str> {
    if let Some(v) = parts.headers.get(axum::http::header::AUTHORIZATION) {
        let v = v.to_str().ok()?;
        let (scheme, key) = v.split_once(' ')?;
        return scheme.eq_ignore_ascii_case("bearer").then_some(key.trim());
    }
    if let Some(v) = parts.headers.get("x-api-key") {
        return v.to_str().ok().map(str::trim);
    }
    websocket_key(parts)
}

/// The key in a WebSocket handshake's subprotocols (`baton.key.KEY`), only on a handshake.
fn websocket_key(parts: &Parts) -> Option<&str> {
    let upgrade = parts
        .headers
        .get(axum::http::header::UPGRADE)?
        .to_str()
        .ok()?;
    if !upgrade.eq_ignore_ascii_case("websocket") {
        return None;
    }
    parts
        .headers
        .get_all(axum::http::header::SEC_WEBSOCKET_PROTOCOL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .find_map(|p| p.trim().strip_prefix(WS_KEY_PREFIX))
        .filter(|k| !k.is_empty())
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
                "an API key is required: send `Authorization: Bearer <key>` (a browser's WebSocket: the subprotocols `baton.v1` and `baton.key.<key>`; create one with `baton keys create`)",
            ));
        };
        let who = state
            .control
            .authenticate(key, request_id(parts), source(parts))
            .await
            .map_err(|e| {
                // The request's span names the request.
                tracing::warn!("authentication failed: {e}");
                ApiError::from(e)
            })?;
        state.metrics.key_used(&who.caller.key_id);
        state
            .limiter
            .admit(&who.caller.key_id, state.config.rate_limit, "this key made")?;
        Ok(Auth(who.caller))
    }
}

/// A token bucket per key: `rate` requests a second, bursts up to twice that.
#[derive(Default)]
pub(crate) struct Limiter {
    buckets: Mutex<HashMap<String, (f64, Instant)>>,
}

impl Limiter {
    /// Admits one request of `bucket` at `rate` a second (`None`: no limit), or refuses it
    /// with 429 and `Retry-After`; `who` starts the message ("this key made").
    pub(crate) fn admit(&self, bucket: &str, rate: Option<f64>, who: &str) -> Result<(), ApiError> {
        let Some(rate) = rate else { return Ok(()) };
        let Err(wait) = self.take(bucket, rate) else {
            return Ok(());
        };
        let secs = wait.as_secs_f64().ceil().max(1.0);
        let mut resp = ApiError::new(
            StatusCode::TOO_MANY_REQUESTS,
            "rate_limited",
            format!("{who} more than {rate} requests a second: retry in {secs} s"),
        );
        resp.retry_after = Some(secs as u32);
        Err(resp)
    }

    /// Takes one request's token, or says how long until there is one.
    pub(crate) fn take(&self, key: &str, rate: f64) -> Result<(), Duration> {
        let burst = (rate * 2.0).max(1.0);
        let now = Instant::now();
        let mut b = self.buckets.lock().unwrap_or_else(|p| p.into_inner());
        let (tokens, at) = b.entry(key.to_string()).or_insert((burst, now));
        *tokens = (*tokens + now.duration_since(*at).as_secs_f64() * rate).min(burst);
        *at = now;
        if *tokens >= 1.0 {
            *tokens -= 1.0;
            Ok(())
        } else {
            Err(Duration::from_secs_f64((1.0 - *tokens) / rate))
        }
    }
}

/// The key is documented once, as the API's `api_key` security scheme (see `api::doc`).
impl aide::OperationInput for Auth {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_key_gets_its_burst_then_waits() {
        let l = Limiter::default();
        for _ in 0..20 {
            assert!(l.take("k", 10.0).is_ok());
        }
        let wait = l.take("k", 10.0).unwrap_err();
        assert!(
            wait > Duration::ZERO && wait <= Duration::from_millis(100),
            "{wait:?}"
        );
        // Another key has its own bucket.
        assert!(l.take("other", 10.0).is_ok());
    }
}
