//! Baton's tools: the [`Tool`] trait, the [`Registry`] steps and agents find them in, and the
//! built-in tools (`echo`, `fail`, `sleep`, `state.set`, `http.get`, `http.post`).
//!
//! Every call carries an idempotency key ([`ToolContext::idempotency_key`]) that identifies its
//! effect: the same for every attempt and every resume. A tool says in its spec what calling it
//! again does ([`Effects`]); the engine reads that when a run resumes after a crash.

pub mod builtin;
pub mod deploy;
pub mod sandbox_exec;
pub mod sandbox_step;
pub mod workspace;

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use serde_json::Value;
use tokio_util::sync::CancellationToken;

/// The sandbox types [`sandbox_step::SandboxStep::with_opener`] and `sandbox.exec` work with.
pub use baton_sandbox as sandbox;
pub use baton_types::{Effects, ToolSpec};

/// What a tool call knows about where it runs.
#[derive(Clone, Debug, Default)]
pub struct ToolContext {
    /// The effect's idempotency key: a `tool:` step's key (one per visit of the step, the
    /// same for its retries and after a crash), or for a model's tool call the step's key,
    /// `/`, and the call's number. Tools with effects pass it on (`http.*` as the
    /// `Idempotency-Key` header, the sandbox tools as `BATON_IDEMPOTENCY_KEY`); a plugin tool
    /// gets it in its call's metadata.
    pub idempotency_key: String,
    pub run_id: String,
    pub step: String,
    /// The workflow's name (the `name:` of its document): the scope of workflow memory.
    pub workflow: String,
    /// The agent whose tool call this is (`None` for a `tool:` step): who wrote a memory.
    pub agent: Option<String>,
    /// Hosts the `http.*` tools may reach (the workflow's `policy.http_allow`).
    pub http_allow: Vec<String>,
    pub cancel: CancellationToken,
}

/// The environment variable a sandboxed command finds its call's idempotency key in.
pub const KEY_ENV: &str = "BATON_IDEMPOTENCY_KEY";

/// Puts the call's idempotency key into a sandboxed command's environment (unless the
/// arguments set the variable themselves).
fn pass_key(env: &mut BTreeMap<String, String>, ctx: &ToolContext) {
    if !ctx.idempotency_key.is_empty() {
        env.entry(KEY_ENV.to_string())
            .or_insert_with(|| ctx.idempotency_key.clone());
    }
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
    /// Network hosts (`host`, `host:port`, `*.domain`) every call may reach whatever its
    /// arguments, e.g. a sandbox's allow-list: the workflow's `policy.rules` check them like
    /// the hosts a call's arguments name. Default: none.
    fn network(&self) -> Vec<String> {
        Vec::new()
    }
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

    /// Each tool that reaches hosts whatever its arguments, with those hosts
    /// ([`Tool::network`]).
    pub fn networks(&self) -> BTreeMap<String, Vec<String>> {
        self.tools
            .iter()
            .map(|(name, t)| (name.clone(), t.network()))
            .filter(|(_, hosts)| !hosts.is_empty())
            .collect()
    }
}
