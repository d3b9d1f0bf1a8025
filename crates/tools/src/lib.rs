//! Baton's tools: the [`Tool`] trait, the [`Registry`] steps and agents find them in, and the
//! built-in tools (`echo`, `fail`, `sleep`, `state.set`, `http.get`).

pub mod builtin;
pub mod sandbox_exec;
pub mod sandbox_step;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The sandbox types [`sandbox_step::SandboxStep::with_opener`] and `sandbox.exec` work with.
pub use baton_sandbox as sandbox;
pub use baton_types::ToolSpec;

/// What a tool call knows about where it runs.
#[derive(Clone, Debug, Default)]
pub struct ToolContext {
    /// The step attempt's idempotency key: the same when a crashed attempt is run again.
    pub idempotency_key: String,
    pub run_id: String,
    pub step: String,
    /// Hosts the `http.*` tools may reach (the workflow's `policy.http_allow`).
    pub http_allow: Vec<String>,
    pub cancel: CancellationToken,
}

/// A tool failure.
#[derive(Debug, Clone, thiserror::Error)]
pub enum Error {
    #[error("invalid arguments for {tool}: {message}")]
    InvalidArguments { tool: String, message: String },
    #[error("{0}")]
    Failed(String),
    /// Worth another attempt (a network hiccup, a 5xx).
    #[error("{0}")]
    Transient(String),
    #[error("{tool} may not reach '{host}': it is not in the workflow's policy.http_allow")]
    NotAllowed { tool: String, host: String },
    /// What the call needs cannot be had here (e.g. a sandbox tier this host lacks); another
    /// attempt would fail the same way.
    #[error("{0}")]
    Unavailable(String),
    #[error("cancelled")]
    Cancelled,
    /// A sandboxed command failed (non-zero exit, a limit): the message, and the whole
    /// execution record for the run log (it becomes the step error's `sandbox` record).
    #[error("{message}")]
    SandboxFailed {
        message: String,
        record: Box<serde_json::Value>,
    },
}

impl Error {
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Transient(_) | Error::Failed(_) | Error::SandboxFailed { .. }
        )
    }
}

#[async_trait]
pub trait Tool: Send + Sync {
    fn spec(&self) -> ToolSpec;
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error>;
}

/// The tools a run may use, by name.
#[derive(Clone, Default)]
pub struct Registry {
    tools: BTreeMap<String, Arc<dyn Tool>>,
}

impl Registry {
    pub fn empty() -> Self {
        Self::default()
    }

    /// The built-in tools.
    pub fn with_builtins() -> Self {
        let mut r = Self::default();
        builtin::register(&mut r);
        r
    }

    pub fn register(&mut self, tool: Arc<dyn Tool>) {
        self.tools.insert(tool.spec().name, tool);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Tool>> {
        self.tools.get(name)
    }

    pub fn contains(&self, name: &str) -> bool {
        self.tools.contains_key(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.tools.keys().map(String::as_str)
    }

    pub fn specs(&self) -> Vec<ToolSpec> {
        self.tools.values().map(|t| t.spec()).collect()
    }
}
