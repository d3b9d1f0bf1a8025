use std::time::Duration;

/// What went wrong talking to a model, classified so the engine can act on the kind.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("rate limited by {provider}{}", retry_after.map(|d| format!(" (retry after {d:?})")).unwrap_or_default())]
    RateLimited {
        provider: String,
        retry_after: Option<Duration>,
    },
    #[error("authentication failed at {provider}: {message}")]
    Auth { provider: String, message: String },
    #[error("the request is over the model's context length: {message}")]
    ContextLength { message: String },
    #[error("transient error from {provider}: {message}")]
    Transient { provider: String, message: String },
    /// The server rejected the request itself as invalid (a field it does not accept, a value
    /// out of range), whatever the status code it used: sending it again cannot succeed.
    #[error("{provider} rejected the request as invalid (HTTP {status}){}: {message}", field.as_ref().map(|f| format!(", field `{f}`")).unwrap_or_default())]
    InvalidRequest {
        provider: String,
        status: u16,
        /// The field the server named, when it named one (`response_format.type`).
        field: Option<String>,
        /// The server's own words.
        message: String,
    },
    #[error("{provider} answered {status}: {message}")]
    Provider {
        provider: String,
        status: u16,
        message: String,
    },
    #[error("unknown model '{model}': {reason}")]
    UnknownModel { model: String, reason: String },
    #[error("invalid response from the model: {0}")]
    InvalidResponse(String),
    /// The model called a tool with arguments that are not valid JSON.
    #[error("the model called tool '{tool}' with arguments that are not valid JSON: {message}")]
    InvalidToolArguments { tool: String, message: String },
    /// The answer never matched the requested output schema, after the re-asks allowed.
    #[error("the answer did not match the output schema after {attempts} attempts: {message}")]
    InvalidOutput { attempts: u32, message: String },
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Whether sending the same request again may succeed: only rate limits, timeouts and
    /// transient failures (502/503/504, overloaded, refused or dropped connections). A server
    /// error that is not one of those (a plain 500) is not retried.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Transient { .. } | Error::Timeout(_)
        )
    }

    /// Whether the server refused the request as invalid (what structured-output fallback
    /// reacts to).
    pub fn is_invalid_request(&self) -> bool {
        matches!(self, Error::InvalidRequest { .. })
    }

    /// How long the provider asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Error::RateLimited { retry_after, .. } => *retry_after,
            _ => None,
        }
    }

    /// A short name of the kind, as logged.
    pub fn kind(&self) -> &'static str {
        match self {
            Error::RateLimited { .. } => "rate_limit",
            Error::Auth { .. } => "auth",
            Error::ContextLength { .. } => "context_length",
            Error::Transient { .. } => "transient",
            Error::InvalidRequest { .. } => "invalid_request",
            Error::Provider { .. } => "provider",
            Error::UnknownModel { .. } => "unknown_model",
            Error::InvalidResponse(_) => "invalid_response",
            Error::InvalidToolArguments { .. } => "invalid_tool_arguments",
            Error::InvalidOutput { .. } => "invalid_output",
            Error::Timeout(_) => "timeout",
            Error::Cancelled => "cancelled",
            Error::Config(_) => "config",
        }
    }
}
