//! One error for every use case. Each variant is one HTTP status and one stable string code
//! (`not_found`, `invalid`, ...): front ends map it in one place and never parse messages.

use serde::Serialize;
use serde_json::Value;

/// A problem in a workflow document (or in a request field), located as precisely as known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, schemars::JsonSchema)]
pub struct Diagnostic {
    /// `error` or `warning`.
    pub level: &'static str,
    /// The file name as given (`<inline>` for a document sent in a request, `name@3` for a
    /// stored workflow).
    pub file: String,
    /// 1-based.
    pub line: u32,
    /// 1-based, in characters.
    pub column: u32,
    /// Field path such as `steps[2].agent`; empty for the whole document.
    pub path: String,
    pub message: String,
}

impl From<baton_engine::load::Diagnostic> for Diagnostic {
    fn from(d: baton_engine::load::Diagnostic) -> Self {
        Self {
            level: "error",
            file: d.file,
            line: d.line,
            column: d.column,
            path: d.path,
            message: d.message,
        }
    }
}

impl std::fmt::Display for Diagnostic {
    /// `file:line:column: error: message (at path)`, as `baton validate` prints it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}:{}: {}: {}",
            self.file, self.line, self.column, self.level, self.message
        )?;
        if !self.path.is_empty() {
            write!(f, " (at {})", self.path)?;
        }
        Ok(())
    }
}

/// What an `invalid` error is about, beyond its message.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Details {
    #[default]
    None,
    /// Every problem found in a workflow document.
    Diagnostics { diagnostics: Vec<Diagnostic> },
    /// A field of the request (e.g. `value`, `step`, `cursor`) is wrong.
    Field { field: String },
    /// The run's inputs: every problem, one sentence each.
    Inputs { problems: Vec<String> },
    /// A value does not match a JSON Schema (a `human` input step's, or an input's).
    Schema { field: String },
}

/// The stable codes of [`Error`], as they appear in the API's error body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Code {
    NotFound,
    Invalid,
    Forbidden,
    Unauthenticated,
    Conflict,
    Unavailable,
    Internal,
}

impl Code {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::NotFound => "not_found",
            Self::Invalid => "invalid",
            Self::Forbidden => "forbidden",
            Self::Unauthenticated => "unauthenticated",
            Self::Conflict => "conflict",
            Self::Unavailable => "unavailable",
            Self::Internal => "internal",
        }
    }

    /// The HTTP status of the code.
    pub fn http_status(self) -> u16 {
        match self {
            Self::NotFound => 404,
            Self::Invalid => 422,
            Self::Forbidden => 403,
            Self::Unauthenticated => 401,
            Self::Conflict => 409,
            Self::Unavailable => 503,
            Self::Internal => 500,
        }
    }
}

/// A use case's failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No such object in the caller's tenant (another tenant's object is reported the same
    /// way: its existence is not revealed).
    #[error("{message}")]
    NotFound { message: String },
    /// The request is wrong: `details` says where.
    #[error("{message}")]
    Invalid { message: String, details: Details },
    /// The caller's role does not allow this, on an object of its own tenant.
    #[error("{message}")]
    Forbidden { message: String },
    /// No key, or a key that is unknown, expired or revoked.
    #[error("{message}")]
    Unauthenticated { message: String },
    /// The object's state does not allow it now (a finished run, a name taken, an
    /// idempotency key used for another request, a run held by another process).
    #[error("{message}")]
    Conflict { message: String },
    /// Something this process needs is not available now (a model, the database); retrying
    /// later may work.
    #[error("{message}")]
    Unavailable { message: String },
    /// A bug or corrupt data: the message is for the operator's log.
    #[error("{message}")]
    Internal { message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn not_found(message: impl Into<String>) -> Self {
        Self::NotFound {
            message: message.into(),
        }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            details: Details::None,
        }
    }

    pub fn invalid_field(field: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Invalid {
            message: message.into(),
            details: Details::Field {
                field: field.into(),
            },
        }
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        Self::Conflict {
            message: message.into(),
        }
    }

    pub fn forbidden(message: impl Into<String>) -> Self {
        Self::Forbidden {
            message: message.into(),
        }
    }

    pub fn unauthenticated(message: impl Into<String>) -> Self {
        Self::Unauthenticated {
            message: message.into(),
        }
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::Internal {
            message: message.into(),
        }
    }

    pub fn code(&self) -> Code {
        match self {
            Self::NotFound { .. } => Code::NotFound,
            Self::Invalid { .. } => Code::Invalid,
            Self::Forbidden { .. } => Code::Forbidden,
            Self::Unauthenticated { .. } => Code::Unauthenticated,
            Self::Conflict { .. } => Code::Conflict,
            Self::Unavailable { .. } => Code::Unavailable,
            Self::Internal { .. } => Code::Internal,
        }
    }

    pub fn http_status(&self) -> u16 {
        self.code().http_status()
    }

    /// The `details` of the API's error body (`null` when there are none).
    pub fn details(&self) -> Value {
        match self {
            Self::Invalid { details, .. } if *details != Details::None => {
                serde_json::to_value(details).unwrap_or(Value::Null)
            }
            _ => Value::Null,
        }
    }

    /// The diagnostics of an invalid workflow (empty for other errors).
    pub fn diagnostics(&self) -> &[Diagnostic] {
        match self {
            Self::Invalid {
                details: Details::Diagnostics { diagnostics },
                ..
            } => diagnostics,
            _ => &[],
        }
    }

    /// Whether the same request may succeed later unchanged.
    pub fn is_retryable(&self) -> bool {
        matches!(self, Self::Unavailable { .. })
    }

    /// `{"error": {"code", "message", "details"}}`: the API's one error body.
    pub fn body(&self) -> Value {
        serde_json::json!({"error": {
            "code": self.code().as_str(),
            "message": self.to_string(),
            "details": self.details(),
        }})
    }
}

impl From<baton_store::Error> for Error {
    fn from(e: baton_store::Error) -> Self {
        use baton_store::Error as S;
        match e {
            S::NotFound(run) => Self::not_found(format!("no run {run}")),
            S::Missing { what } => Self::not_found(format!("no {what}")),
            S::Exists { what } => Self::conflict(format!("{what} already exists")),
            S::Invalid(message) => Self::invalid(message),
            e @ (S::Claimed { .. }
            | S::Conflict { .. }
            | S::KeyUsed { .. }
            | S::VersionMismatch { .. }) => Self::conflict(e.to_string()),
            e @ S::Open { .. } => Self::Unavailable {
                message: e.to_string(),
            },
            e @ (S::Db(_) | S::Corrupt(_)) => Self::internal(e.to_string()),
        }
    }
}

impl From<baton_engine::executor::Error> for Error {
    fn from(e: baton_engine::executor::Error) -> Self {
        use baton_engine::executor::Error as E;
        match e {
            E::Store(s) => s.into(),
            e @ E::State { .. } => Self::internal(e.to_string()),
            E::Refused(r) => Self::conflict(r.to_string()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_error_has_a_code_a_status_and_one_body() {
        let e = Error::Invalid {
            message: "bad".into(),
            details: Details::Field {
                field: "inputs.n".into(),
            },
        };
        assert_eq!(e.code().as_str(), "invalid");
        assert_eq!(e.http_status(), 422);
        assert_eq!(
            e.body(),
            serde_json::json!({"error": {"code": "invalid", "message": "bad",
                "details": {"kind": "field", "field": "inputs.n"}}})
        );
        let nf: Error = baton_store::Error::Missing {
            what: "workflow x".into(),
        }
        .into();
        assert_eq!(
            (nf.http_status(), nf.to_string()),
            (404, "no workflow x".into())
        );
        assert_eq!(nf.details(), Value::Null);
        for (e, code) in [
            (Error::forbidden("x"), 403),
            (Error::unauthenticated("x"), 401),
            (Error::conflict("x"), 409),
            (Error::internal("x"), 500),
        ] {
            assert_eq!(e.http_status(), code);
        }
    }
}
