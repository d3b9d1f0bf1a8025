//! Baton's HTTP server: the platform's REST API under `/api/v1` (runs, workflows, approvals,
//! keys, tenants, audit; run events as server-sent events and over a WebSocket), the
//! OpenAI-compatible `/v1` routes over the configured providers, and operations routes
//! (`/healthz`, `/readyz`, `/metrics`). Every route but the operations ones needs an API key.
//!
//! The handlers are thin: they establish who the caller is (`auth`), turn the request into a
//! call of a `baton_control` use case, and its result or error into JSON. Nothing here
//! re-implements a use case.

mod api;
mod auth;
pub mod error;
mod events;
mod exposition;
mod openai;
mod openapi;
mod ops;
mod web;
pub mod webhooks;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderName, HeaderValue, Method, StatusCode};
use axum::routing::{get, post};
use baton_control::Control;
use baton_llm::Providers;
use tower_http::cors::{AllowOrigin, CorsLayer};
use tower_http::limit::RequestBodyLimitLayer;
use tower_http::request_id::PropagateRequestIdLayer;

pub use error::ApiError;
pub use ops::{Metrics, worker_exposition};

/// The header that carries a request's id (set by the client or made here, echoed back).
pub const REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");

/// How the server behaves towards clients.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// The largest request body accepted, in bytes (413 above it).
    pub body_limit: usize,
    /// Origins allowed to call the API from a browser (CORS); empty: CORS off.
    pub cors_origins: Vec<String>,
    /// How often an event stream reads the run log while the bus is quiet (runs driven by
    /// another process).
    pub poll: Duration,
    /// Requests per second each key may make (with a burst of twice that); `None`: no limit.
    pub rate_limit: Option<f64>,
    /// On shutdown, how long the steps in flight get to finish before the runs are stopped
    /// where they are (see `Control::shutdown`).
    pub shutdown_grace: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            body_limit: 10 << 20,
            cors_origins: Vec::new(),
            poll: Duration::from_millis(500),
            rate_limit: Some(50.0),
            shutdown_grace: Duration::from_secs(10),
        }
    }
}

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub control: Control,
    /// The models the `/v1` routes serve.
    pub providers: Arc<Providers>,
    /// Where relative model references (`local/models/x.gguf`, scripted fixtures) are found.
    pub base_dir: PathBuf,
    pub config: Arc<ServerConfig>,
    pub metrics: Arc<Metrics>,
    pub(crate) limiter: Arc<auth::Limiter>,
    /// The OpenAPI document of `/api/v1`, made from the handlers' types when the app is built.
    pub(crate) openapi: Arc<aide::openapi::OpenApi>,
    /// The counts of this server's embedded worker (on `/metrics`), when it has one.
    pub worker: Option<Arc<baton_control::worker::WorkerStats>>,
}

impl AppState {
    pub fn new(control: Control, providers: Providers) -> Self {
        Self {
            control,
            providers: Arc::new(providers),
            base_dir: PathBuf::from("."),
            config: Arc::new(ServerConfig::default()),
            metrics: Arc::new(Metrics::default()),
            limiter: Arc::new(auth::Limiter::default()),
            openapi: Arc::default(),
            worker: None,
        }
    }

    /// Shows this worker's counts on `/metrics`.
    pub fn with_worker(mut self, stats: Arc<baton_control::worker::WorkerStats>) -> Self {
        self.worker = Some(stats);
        self
    }

    pub fn with_config(mut self, config: ServerConfig) -> Self {
        self.config = Arc::new(config);
        self
    }
}

/// The `/api/v1` routes with the OpenAPI document made from them.
fn api_router() -> (Router<AppState>, aide::openapi::OpenApi) {
    let mut doc = openapi::base();
    let router = aide::axum::ApiRouter::new()
        .nest("/api/v1", api::routes())
        .finish_api(&mut doc);
    (router, doc)
}

/// The OpenAPI document of `/api/v1` as `GET /api/v1/openapi.json` answers it, without a
/// server (`baton serve --print-openapi`; the web app's API types are generated from it).
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(&api_router().1).unwrap_or_default()
}

/// The router; tests drive it without a socket.
pub fn app(state: AppState) -> Router {
    let config = state.config.clone();
    let (api_router, doc) = api_router();
    let state = AppState {
        openapi: Arc::new(doc),
        ..state
    };
    let router = Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .merge(api_router)
        .route("/api/v1/openapi.json", get(openapi::json))
        .route("/api/v1/docs", get(openapi::page))
        .route("/hooks/{id}", post(webhooks::receive))
        .route("/healthz", get(ops::healthz))
        .route("/readyz", get(ops::readyz))
        .route("/metrics", get(ops::metrics))
        // The web app's paths; anything else is the API's 404.
        .fallback(web::fallback)
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::new(
                    StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} does not accept {method}", uri.path()),
                )
            },
        )
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            ops::observe,
        ))
        .layer(RequestBodyLimitLayer::new(config.body_limit))
        .layer(axum::extract::DefaultBodyLimit::max(config.body_limit));
    let router = match cors(&config.cors_origins) {
        Some(c) => router.layer(c),
        None => router,
    };
    router
        .layer(axum::middleware::from_fn(error::uniform))
        // Outermost: the id is set before anything else runs, and echoed on every answer.
        .layer(PropagateRequestIdLayer::new(REQUEST_ID))
        .layer(axum::middleware::from_fn(ops::assign_request_id))
        .with_state(state)
}

fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let list: Vec<HeaderValue> = origins
        .iter()
        .filter_map(|o| HeaderValue::from_str(o).ok())
        .collect();
    Some(
        CorsLayer::new()
            .allow_origin(AllowOrigin::list(list))
            .allow_methods([Method::GET, Method::POST, Method::PUT, Method::DELETE])
            .allow_headers([
                axum::http::header::AUTHORIZATION,
                axum::http::header::CONTENT_TYPE,
                HeaderName::from_static("last-event-id"),
                HeaderName::from_static("idempotency-key"),
                REQUEST_ID,
            ])
            .expose_headers([REQUEST_ID]),
    )
}

/// Serves `app(state)` on `listener` until `shutdown` completes: then it accepts no more
/// connections, answers the requests it has, and drains the runs this process drives (the
/// steps in flight finish within `shutdown_grace` and are checkpointed; every run reads as
/// `interrupted` and the next start resumes it).
/// A worker's `/metrics` (see [`worker_exposition`]) and `/healthz`, on `listener`, until
/// `shutdown`.
pub async fn serve_worker_metrics(
    listener: tokio::net::TcpListener,
    control: Control,
    stats: Arc<baton_control::worker::WorkerStats>,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let app = Router::new()
        .route(
            "/metrics",
            axum::routing::get(move || {
                let body = worker_exposition(&control, &stats);
                async move {
                    (
                        [(
                            axum::http::header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        body,
                    )
                }
            }),
        )
        .route("/healthz", axum::routing::get(ops::healthz));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
}

pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let control = state.control.clone();
    let grace = state.config.shutdown_grace;
    let served = axum::serve(
        listener,
        app(state).into_make_service_with_connect_info::<std::net::SocketAddr>(),
    )
    .with_graceful_shutdown(shutdown)
    .await;
    control.shutdown(grace).await;
    served
}
