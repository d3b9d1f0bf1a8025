//! Operations: `/healthz`, `/readyz`, Prometheus `/metrics`, and the middleware that measures
//! every request and logs it with its request id.
//!
//! The metrics live in the app's state (not a process-global recorder), so each server, and
//! each test, counts only its own requests.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use baton_control::observe::{Histogram, LATENCY_BUCKETS};
use serde_json::json;
use tracing::Instrument as _;

use crate::exposition::Exposition;
use crate::{ApiError, AppState, REQUEST_ID};

/// Request counts and latencies by route, method and status; key uses.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    key_uses: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    fn observe(&self, route: &str, method: &str, status: u16, secs: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        m.entry((route.to_string(), method.to_string(), status))
            .or_insert_with(|| Histogram::new(LATENCY_BUCKETS))
            .observe(secs);
    }

    pub(crate) fn key_used(&self, key_id: &str) {
        let mut m = self.key_uses.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key_id.to_string()).or_default() += 1;
    }

    /// The server's own families: requests, key uses, runs driven here.
    fn render(&self, e: &mut Exposition, active_runs: usize) {
        let name = "baton_http_request_duration_seconds";
        e.family(
            name,
            "histogram",
            "Time to answer a request, by route, method and status.",
        );
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, method, status), h) in m.iter() {
            let status = status.to_string();
            e.histogram(
                name,
                &[("route", route), ("method", method), ("status", &status)],
                h,
            );
        }
        drop(m);
        let name = "baton_api_key_requests_total";
        e.family(name, "counter", "Authenticated requests by key id.");
        for (key, n) in self
            .key_uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            e.sample(name, &[("key", key)], n);
        }
        e.family(
            "baton_runs_active",
            "gauge",
            "Runs this process is driving now.",
        );
        e.sample("baton_runs_active", &[], active_runs);
    }
}

/// The longest request id taken from a client.
const MAX_REQUEST_ID: usize = 128;

/// Whether a client's request id may be kept (and so logged and echoed): 1 to 128 visible
/// ASCII letters, digits or `-_.:/+=@`, nothing that could break a log line or a header.
fn sane_request_id(v: &HeaderValue) -> bool {
    let b = v.as_bytes();
    !b.is_empty()
        && b.len() <= MAX_REQUEST_ID
        && b.iter()
            .all(|c| c.is_ascii_alphanumeric() || b"-_.:/+=@".contains(c))
}

/// Gives every request an id before anything else runs: the client's `x-request-id` when it
/// is sane, a new UUID otherwise (the answer echoes whichever it got).
pub(crate) async fn assign_request_id(mut req: Request, next: Next) -> Response {
    let keep = req.headers().get(REQUEST_ID).is_some_and(sane_request_id);
    if !keep {
        let id = uuid::Uuid::now_v7().to_string();
        if let Ok(v) = HeaderValue::from_str(&id) {
            req.headers_mut().insert(REQUEST_ID, v);
        }
    }
    next.run(req).await
}

/// Times and logs every request, and counts it under its route template
/// (`/api/v1/runs/{id}`, never the id itself). The request runs inside a span carrying its id,
/// method and route, so every log line written while handling it names the request.
pub(crate) async fn observe(State(state): State<AppState>, req: Request, next: Next) -> Response {
    let start = Instant::now();
    let route = req
        .extensions()
        .get::<MatchedPath>()
        .map_or("unmatched", |p| p.as_str())
        .to_string();
    let method = req.method().to_string();
    let id = req
        .headers()
        .get(REQUEST_ID)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-")
        .to_string();
    // At error level so that it is on whenever any log line is (a span filtered out would
    // leave the lines inside it without their request id).
    let span = tracing::error_span!("request", request_id = %id, %method, %route);
    let resp = next.run(req).instrument(span.clone()).await;
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    state.metrics.observe(&route, &method, status, secs);
    let _in = span.enter();
    if resp.status().is_server_error() {
        tracing::error!(status, "request failed");
    } else if resp.status().is_client_error() {
        tracing::warn!(status, "request refused");
    } else {
        tracing::debug!(status, secs, "request");
    }
    resp
}

/// The process is up.
pub(crate) async fn healthz() -> impl IntoResponse {
    axum::Json(json!({"status": "ok"}))
}

/// The process can serve: its database answers.
pub(crate) async fn readyz(State(state): State<AppState>) -> Response {
    match state.control.tenancy().tenants().await {
        Ok(_) => axum::Json(json!({"status": "ready"})).into_response(),
        Err(e) => ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "not_ready",
            format!("the database does not answer: {e}"),
        )
        .into_response(),
    }
}

/// The families of a worker (this server's, or a `baton worker` process's).
fn worker_families(e: &mut Exposition, w: &baton_control::worker::WorkerStats) {
    e.family(
        "baton_worker_runs_claimed_total",
        "counter",
        "Runs this process's worker claimed from the shared database.",
    );
    e.sample("baton_worker_runs_claimed_total", &[], w.claimed());
    e.family(
        "baton_worker_errors_total",
        "counter",
        "Claims, heartbeats and run loads of this process's worker that failed.",
    );
    e.sample("baton_worker_errors_total", &[], w.errors());
    e.family(
        "baton_worker_draining",
        "gauge",
        "1 once this process's worker was asked to drain.",
    );
    e.sample("baton_worker_draining", &[], u8::from(w.draining()));
}

/// The metrics of a `baton worker` process: the runs it drives, its worker's counts, and
/// what it folded from its runs' events (as a server's `/metrics` has them).
pub fn worker_exposition(
    control: &baton_control::Control,
    w: &baton_control::worker::WorkerStats,
) -> String {
    let mut e = Exposition::default();
    e.family(
        "baton_runs_active",
        "gauge",
        "Runs this process is driving now.",
    );
    e.sample("baton_runs_active", &[], control.active_runs().len());
    worker_families(&mut e, w);
    e.snapshot(&control.telemetry().snapshot());
    e.out
}

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut e = Exposition::default();
    state
        .metrics
        .render(&mut e, state.control.active_runs().len());
    if let Some(w) = &state.worker {
        worker_families(&mut e, w);
    }
    match state.control.run_counts().await {
        Ok(counts) => e.runs(&counts),
        // The other families still tell something; the log says why this one is missing.
        Err(err) => tracing::warn!("metrics: runs by status left out: {err}"),
    }
    e.snapshot(&state.control.telemetry().snapshot());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        e.out,
    )
        .into_response()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sane_client_request_ids_are_kept() {
        let ok = |s: &str| {
            sane_request_id(&HeaderValue::from_str(s).unwrap_or(HeaderValue::from_static("")))
        };
        assert!(ok("abc-123"));
        assert!(ok("01a241a1-31df-7043-a011-57308eea7e2b"));
        assert!(ok("trace:span/1+x=y@z_q.r"));
        assert!(ok(&"a".repeat(MAX_REQUEST_ID)));
        assert!(!ok(&"a".repeat(MAX_REQUEST_ID + 1)));
        assert!(!ok(""));
        assert!(!ok("two words"));
        assert!(!ok("semi;colon"));
        assert!(!ok("quote\"d"));
        assert!(!ok("new\\nline"));
    }
}
