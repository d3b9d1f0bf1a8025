//! Baton's HTTP server. For now it serves what Baton has: an OpenAI-compatible
//! `POST /v1/chat/completions` (streaming and not) and `GET /v1/models` over the configured
//! providers, so other tools can use Baton's models (the embedded one included).

pub mod error;
mod openai;

use std::path::PathBuf;
use std::sync::Arc;

use axum::Router;
use axum::routing::{get, post};
use baton_llm::Providers;

pub use error::ApiError;

/// What the handlers share.
#[derive(Clone)]
pub struct AppState {
    pub providers: Arc<Providers>,
    /// Where relative model references (`local/models/x.gguf`, scripted fixtures) are found.
    pub base_dir: PathBuf,
}

impl AppState {
    pub fn new(providers: Providers) -> Self {
        Self {
            providers: Arc::new(providers),
            base_dir: PathBuf::from("."),
        }
    }
}

/// The router; tests drive it without a socket.
pub fn app(state: AppState) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(openai::chat_completions))
        .route("/v1/models", get(openai::models))
        .fallback(|| async { ApiError::not_found("no such route") })
        .method_not_allowed_fallback(
            |method: axum::http::Method, uri: axum::http::Uri| async move {
                ApiError::new(
                    axum::http::StatusCode::METHOD_NOT_ALLOWED,
                    "method_not_allowed",
                    format!("{} does not accept {method}", uri.path()),
                )
            },
        )
        .with_state(state)
}

/// Serves `app(state)` on `listener` until `shutdown` completes.
pub async fn serve(
    listener: tokio::net::TcpListener,
    state: AppState,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, app(state))
        .with_graceful_shutdown(shutdown)
        .await
}
