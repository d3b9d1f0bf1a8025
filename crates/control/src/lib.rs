//! Baton's use cases, shared by every front end and bound to none.
//!
//! The CLI formats their results for a terminal, the HTTP server serializes them as JSON, the
//! MCP server exposes them as tools: none of them re-implements a use case, and nothing here
//! knows about HTTP, terminals or argument parsing.
//!
//! ```text
//!   front end ── Caller (tenant, key, role) ──► Control::<use case>(&caller, request)
//!                                                 │ 1. authorize (caller.rs)
//!                                                 │ 2. act through the engine and the store,
//!                                                 │    every query scoped by caller.tenant
//!                                                 │ 3. append to the audit chain (writes, denials)
//!                                                 ▼
//!                                    typed result, or Error (code + HTTP status + details)
//! ```
//!
//! Runs move in one of two ways. In the foreground (the CLI) a use case hands back a
//! [`Drive`] and the front end drives it with [`Control::executor`], showing progress and
//! asking questions as it goes. In the background (a server) [`Control::spawn`] drives it on a
//! tokio task, publishes its events on the bus ([`Control::subscribe`]) and takes control
//! requests (pause, cancel, answers) while it runs; [`Control::resume_interrupted`] picks up
//! the runs a stopped process left behind.

pub mod agents;
pub mod audit;
pub mod builtin_agents;
pub mod caller;
pub mod error;
pub mod follow;
pub mod keys;
pub mod memory;
pub mod observe;
pub mod runner;
pub mod runs;
pub mod tenants;
mod timekeeper;
pub mod view;
pub mod webhooks;
pub mod worker;
pub mod workflows;
pub mod workspace;

use std::sync::Arc;

use baton_engine::Services;
use baton_store::TenantStore;

pub use agents::{AgentDiff, AgentInfo, AgentRef, AgentVersion, FieldChange};
pub use caller::{Abilities, Caller, LOCAL, Permission, Whoami};
pub use error::{Code, Details, Diagnostic, Error, Result};
pub use follow::{Followed, Follower};
pub use keys::{Authenticated, CreatedKey, KeyInfo, NewKey};
pub use runner::{BusEvent, BusItem, Drive};
pub use runs::{
    Answer, Answered, Approval, BudgetView, ControlOutcome, Cut, Decision, EventFilter, FileChange,
    ForkRequest, Forked, LoadedWorkflow, LogLevel, ReplayMode, ReplayReport, Resolve, Resolved,
    ResumeOptions, Resumed, RunComparison, RunControl, RunPage, RunQuery, RunRequest, RunSide,
    Started, StepPair, StepSide, Verdict, WorkflowSource, WorkspaceComparison,
};
pub use workflows::{WorkflowInfo, WorkflowRef, WorkflowVersion};

/// The use cases over one store: built once by the composition root, cheap to clone, shared
/// by every request.
#[derive(Clone)]
pub struct Control {
    services: Services,
    tenancy: Arc<dyn TenantStore>,
    runner: runner::Runner,
    /// Where the relative files (scripted replies) of workflows that are not files are found.
    base_dir: std::path::PathBuf,
    /// Inbound hooks and outbound subscriptions (`with_webhooks`; `None`: not configured).
    webhooks: Option<Arc<webhooks::Webhooks>>,
    /// Metrics of the runs this process drives, and where their traces go.
    telemetry: Arc<observe::Telemetry>,
    /// Team memory (`with_memory`; `None`: not configured).
    memory: Option<Arc<baton_memory::Memory>>,
    /// Runs' workspaces (`with_workspaces`; `None`: not configured).
    workspaces: Option<Arc<baton_tools::workspace::Workspaces>>,
    /// The tenants whose registry this process has given the built-in agents.
    seeded: Arc<std::sync::Mutex<std::collections::HashSet<baton_types::TenantId>>>,
}

impl Control {
    /// `services` are what the engine acts with (its store is the run log); `tenancy` is the
    /// same database's tenants, keys, audit and workflows.
    pub fn new(services: Services, tenancy: Arc<dyn TenantStore>) -> Self {
        Self {
            telemetry: Arc::new(observe::Telemetry::new(services.store.clone())),
            services,
            tenancy,
            runner: runner::Runner::new(),
            base_dir: std::path::PathBuf::new(),
            webhooks: None,
            memory: None,
            workspaces: None,
            seeded: Arc::default(),
        }
    }

    /// Sends the trace of every run this process drives to `sink` when the run ends (see
    /// [`observe::trace`]). Without it, no trace leaves the process.
    pub fn with_traces(mut self, sink: Arc<dyn observe::SpanSink>) -> Self {
        self.telemetry =
            Arc::new(observe::Telemetry::new(self.services.store.clone()).with_spans(sink));
        self
    }

    /// The metrics of the runs this process drives (and of its webhooks).
    pub fn telemetry(&self) -> &Arc<observe::Telemetry> {
        &self.telemetry
    }

    /// The folder where inline and stored workflows find their relative files (a `scripted/`
    /// model's replies), as a file workflow finds them next to itself. Default: the working
    /// directory. A server sets it from its configuration, never from a request.
    pub fn with_base_dir(mut self, dir: impl Into<std::path::PathBuf>) -> Self {
        self.base_dir = dir.into();
        self
    }

    /// The engine's services (store, models, tools).
    pub fn services(&self) -> &Services {
        &self.services
    }

    /// The tenants, keys, audit log and stored workflows.
    pub fn tenancy(&self) -> &Arc<dyn TenantStore> {
        &self.tenancy
    }
}
