//! Operations: `/healthz`, `/readyz`, Prometheus `/metrics`, and the middleware that measures
//! every request and logs it with its request id.
//!
//! The metrics live in the app's state (not a process-global recorder), so each server, and
//! each test, counts only its own requests.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::sync::Mutex;
use std::time::Instant;

use axum::extract::{MatchedPath, Request, State};
use axum::http::StatusCode;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde_json::json;

use crate::{ApiError, AppState, REQUEST_ID};

/// Upper bounds of the latency histogram, in seconds.
const BUCKETS: [f64; 12] = [
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0,
];

#[derive(Default)]
struct Histogram {
    counts: [u64; BUCKETS.len()],
    count: u64,
    sum: f64,
}

/// Request counts and latencies by route, method and status; key uses.
#[derive(Default)]
pub struct Metrics {
    requests: Mutex<BTreeMap<(String, String, u16), Histogram>>,
    key_uses: Mutex<BTreeMap<String, u64>>,
}

impl Metrics {
    fn observe(&self, route: &str, method: &str, status: u16, secs: f64) {
        let mut m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        let h = m
            .entry((route.to_string(), method.to_string(), status))
            .or_default();
        for (i, le) in BUCKETS.iter().enumerate() {
            if secs <= *le {
                h.counts[i] += 1;
            }
        }
        h.count += 1;
        h.sum += secs;
    }

    pub(crate) fn key_used(&self, key_id: &str) {
        let mut m = self.key_uses.lock().unwrap_or_else(|p| p.into_inner());
        *m.entry(key_id.to_string()).or_default() += 1;
    }

    /// The Prometheus text exposition of everything counted so far.
    fn render(&self, out: &mut String, active_runs: usize) {
        let _ = writeln!(
            out,
            "# HELP baton_http_request_duration_seconds Time to answer a request, by route, method and status.\n# TYPE baton_http_request_duration_seconds histogram"
        );
        let m = self.requests.lock().unwrap_or_else(|p| p.into_inner());
        for ((route, method, status), h) in m.iter() {
            let labels = format!("route=\"{route}\",method=\"{method}\",status=\"{status}\"");
            for (i, le) in BUCKETS.iter().enumerate() {
                let _ = writeln!(
                    out,
                    "baton_http_request_duration_seconds_bucket{{{labels},le=\"{le}\"}} {}",
                    h.counts[i]
                );
            }
            let _ = writeln!(
                out,
                "baton_http_request_duration_seconds_bucket{{{labels},le=\"+Inf\"}} {}\nbaton_http_request_duration_seconds_sum{{{labels}}} {}\nbaton_http_request_duration_seconds_count{{{labels}}} {}",
                h.count, h.sum, h.count
            );
        }
        drop(m);
        let _ = writeln!(
            out,
            "# HELP baton_api_key_requests_total Authenticated requests by key id.\n# TYPE baton_api_key_requests_total counter"
        );
        for (key, n) in self
            .key_uses
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .iter()
        {
            let _ = writeln!(out, "baton_api_key_requests_total{{key=\"{key}\"}} {n}");
        }
        let _ = writeln!(
            out,
            "# HELP baton_runs_active Runs this process is driving now.\n# TYPE baton_runs_active gauge\nbaton_runs_active {active_runs}"
        );
    }
}

/// Times and logs every request (with its request id), and counts it under its route
/// template (`/api/v1/runs/{id}`, never the id itself).
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
    let resp = next.run(req).await;
    let status = resp.status().as_u16();
    let secs = start.elapsed().as_secs_f64();
    state.metrics.observe(&route, &method, status, secs);
    if resp.status().is_server_error() {
        tracing::error!(request_id = %id, %method, %route, status, "request failed");
    } else if resp.status().is_client_error() {
        tracing::warn!(request_id = %id, %method, %route, status, "request refused");
    } else {
        tracing::debug!(request_id = %id, %method, %route, status, secs, "request");
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

pub(crate) async fn metrics(State(state): State<AppState>) -> Response {
    let mut out = String::new();
    state
        .metrics
        .render(&mut out, state.control.active_runs().len());
    (
        [(
            axum::http::header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        out,
    )
        .into_response()
}
