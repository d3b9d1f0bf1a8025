//! Errors as HTTP: every failure is one JSON body `{"error": {"code", "message", "details"}}`
//! with a status that says whose fault it was.

use axum::Json;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;

/// An error answered to a client.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{code}: {message}")]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
    /// Structured details (validation diagnostics, the field at fault...); `null` when none.
    /// Boxed: most errors have none, and every handler's result carries this type.
    pub details: Option<Box<serde_json::Value>>,
    /// Sent as `Retry-After` (seconds).
    pub retry_after: Option<u32>,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            details: None,
            retry_after: None,
        }
    }

    pub fn with_details(mut self, details: serde_json::Value) -> Self {
        self.details = (!details.is_null()).then(|| Box::new(details));
        self
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_request", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(StatusCode::NOT_FOUND, "not_found", message)
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        let details = self.details.as_deref().unwrap_or(&serde_json::Value::Null);
        json!({ "error": { "code": self.code, "message": self.message, "details": details } })
    }
}

impl From<baton_llm::Error> for ApiError {
    fn from(e: baton_llm::Error) -> Self {
        // By kind rather than by variant, so kinds added later land on a sensible default.
        let (status, code) = match e.kind() {
            "unknown_model" => (StatusCode::NOT_FOUND, "model_not_found"),
            "context_length" => (StatusCode::BAD_REQUEST, "context_length_exceeded"),
            // The model's server refused the request as invalid (a field it does not accept):
            // the caller's request, not the gateway, is what has to change.
            "invalid_request" => (StatusCode::BAD_REQUEST, "invalid_request"),
            "rate_limit" => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            // The upstream provider refused Baton's credentials: a gateway problem, not the
            // client's (the client is not authenticated against the upstream).
            "auth" => (StatusCode::BAD_GATEWAY, "upstream_auth"),
            "transient" => (StatusCode::SERVICE_UNAVAILABLE, "upstream_unavailable"),
            "timeout" => (StatusCode::GATEWAY_TIMEOUT, "timeout"),
            "cancelled" => (StatusCode::SERVICE_UNAVAILABLE, "cancelled"),
            "config" => (StatusCode::INTERNAL_SERVER_ERROR, "server_config"),
            "invalid_response" | "invalid_tool_arguments" => {
                (StatusCode::BAD_GATEWAY, "invalid_model_response")
            }
            _ => (StatusCode::BAD_GATEWAY, "upstream_error"),
        };
        let mut err = ApiError::new(status, code, e.to_string());
        if let Some(d) = e.retry_after() {
            err.message = format!("{} (retry after {}s)", err.message, d.as_secs().max(1));
            err.retry_after = Some(u32::try_from(d.as_secs().max(1)).unwrap_or(u32::MAX));
        }
        err
    }
}

impl From<baton_control::Error> for ApiError {
    fn from(e: baton_control::Error) -> Self {
        let status =
            StatusCode::from_u16(e.http_status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        if status.is_server_error() {
            tracing::error!("request failed: {e}");
        }
        ApiError::new(status, e.code().as_str(), e.to_string()).with_details(e.details())
    }
}

impl From<axum::extract::rejection::JsonRejection> for ApiError {
    fn from(r: axum::extract::rejection::JsonRejection) -> Self {
        use axum::extract::rejection::JsonRejection as J;
        match r {
            J::MissingJsonContentType(_) => ApiError::new(
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
                "the body must be JSON, sent with `Content-Type: application/json`",
            ),
            J::JsonSyntaxError(e) => {
                ApiError::bad_request(format!("malformed JSON: {}", e.body_text()))
            }
            J::JsonDataError(e) => ApiError::new(
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid",
                format!("the JSON does not fit the request: {}", e.body_text()),
            ),
            J::BytesRejection(e) => too_large_or(e.status(), e.body_text()),
            other => ApiError::bad_request(other.body_text()),
        }
    }
}

/// A body refused while being read: over the size limit (413), or unreadable (400).
pub(crate) fn too_large_or(status: StatusCode, text: String) -> ApiError {
    if status == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "payload_too_large",
            "the body is over the server's size limit",
        )
    } else {
        ApiError::bad_request(text)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let mut resp = (self.status, Json(self.body())).into_response();
        if let Some(s) = self.retry_after
            && let Ok(v) = axum::http::HeaderValue::from_str(&s.to_string())
        {
            resp.headers_mut()
                .insert(axum::http::header::RETRY_AFTER, v);
        }
        resp
    }
}

/// The one error body, as the API documents it.
#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ErrorBody {
    pub error: ErrorFields,
}

#[derive(serde::Serialize, schemars::JsonSchema)]
pub struct ErrorFields {
    /// A stable code: `invalid`, `not_found`, `unauthenticated`, `forbidden`, ...
    pub code: String,
    /// What went wrong, for people.
    pub message: String,
    /// What a program needs to fix the request (validation diagnostics, the field at fault), or
    /// null.
    pub details: serde_json::Value,
}

impl aide::OperationOutput for ApiError {
    type Inner = ErrorBody;
}

/// The largest plain-text error body rewritten by [`uniform`] (extractor rejections are one
/// sentence).
const PLAIN_ERROR_MAX: usize = 16 << 10;

/// Middleware: an error answered by a layer or an extractor outside Baton's own code (a
/// path segment that is not UTF-8, a WebSocket request without its handshake, a body cut by
/// the size limit...) is plain text; it becomes the one JSON error body, with its status.
pub(crate) async fn uniform(req: axum::extract::Request, next: axum::middleware::Next) -> Response {
    let resp = next.run(req).await;
    let status = resp.status();
    let json = resp
        .headers()
        .get(axum::http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/json"));
    if !(status.is_client_error() || status.is_server_error()) || json {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let text = match axum::body::to_bytes(body, PLAIN_ERROR_MAX).await {
        Ok(b) => String::from_utf8_lossy(&b).trim().to_string(),
        Err(_) => String::new(),
    };
    let code = match status {
        StatusCode::BAD_REQUEST => "invalid_request",
        StatusCode::UNAUTHORIZED => "unauthenticated",
        StatusCode::FORBIDDEN => "forbidden",
        StatusCode::NOT_FOUND => "not_found",
        StatusCode::METHOD_NOT_ALLOWED => "method_not_allowed",
        StatusCode::PAYLOAD_TOO_LARGE => "payload_too_large",
        StatusCode::UNSUPPORTED_MEDIA_TYPE => "unsupported_media_type",
        StatusCode::UNPROCESSABLE_ENTITY => "invalid",
        StatusCode::TOO_MANY_REQUESTS => "rate_limited",
        s if s.is_server_error() => "internal",
        _ => "invalid_request",
    };
    let message = if status == StatusCode::PAYLOAD_TOO_LARGE {
        "the body is over the server's size limit".to_string()
    } else if text.is_empty() {
        status
            .canonical_reason()
            .unwrap_or("request refused")
            .to_string()
    } else {
        text
    };
    let mut out = ApiError::new(status, code, message).into_response();
    // Keep what the layer said besides its body (Allow, Retry-After...).
    for (name, value) in &parts.headers {
        if name != axum::http::header::CONTENT_TYPE && name != axum::http::header::CONTENT_LENGTH {
            out.headers_mut().insert(name.clone(), value.clone());
        }
    }
    out
}
