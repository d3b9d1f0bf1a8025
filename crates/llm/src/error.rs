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
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    #[error("cancelled")]
    Cancelled,
    #[error("{0}")]
    Config(String),
}

impl Error {
    /// Whether sending the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::RateLimited { .. } | Error::Transient { .. } | Error::Timeout(_)
        ) || matches!(self, Error::Provider { status, .. } if *status >= 500)
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
            Error::Provider { .. } => "provider",
            Error::UnknownModel { .. } => "unknown_model",
            Error::InvalidResponse(_) => "invalid_response",
            Error::InvalidToolArguments { .. } => "invalid_tool_arguments",
            Error::Timeout(_) => "timeout",
            Error::Cancelled => "cancelled",
            Error::Config(_) => "config",
        }
    }
}
