//! Baton's run log: the [`RunStore`] trait and its backends (`sqlite`, the embedded default,
//! `postgres`, a database shared by processes on several hosts, and `memory`, for benchmarks
//! and tests that need no durability).
//!
//! A run is a row plus an append-only list of events and a latest checkpoint. `append` writes
//! events, the run's new status and a checkpoint in one transaction: what the engine acts on is
//! on disk first.

pub mod agents;
pub mod memory;
pub mod postgres;
pub mod sqlite;
pub mod team_memory;
pub mod tenancy;
pub mod webhooks;

pub use agents::{AgentRecord, AgentRegistry, AgentSummary, NewAgentVersion};
pub use team_memory::{
    KvEntry, KvOp, KvWrite, NewSemanticMemory, NewVector, SemanticMemory, TeamMemory,
};
pub use tenancy::{
    ApiKeyRecord, AuditEntry, AuditQuery, NewAuditEntry, NewWorkflowVersion, TenantRecord,
    TenantStore, WorkflowFormat, WorkflowRecord, WorkflowSummary, WorkflowWrite,
};
pub use webhooks::WebhookStore;

use async_trait::async_trait;
use baton_types::{Event, EventRecord, RunId, RunStatus, TenantId};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A store failure.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("no run {0}")]
    NotFound(RunId),
    #[error("run {run} is being run by {owner} (lease held); stop it first or wait")]
    Claimed { run: RunId, owner: String },
    #[error(
        "conflicting write to run {run}: event {seq} already exists (another process appended)"
    )]
    Conflict { run: RunId, seq: u64 },
    #[error("database {path}: {message}")]
    Open { path: String, message: String },
    #[error("database error: {0}")]
    Db(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// A tenant, key or workflow with that name exists already.
    #[error("{what} already exists")]
    Exists { what: String },
    /// No such tenant, key or workflow (in the tenant asked about).
    #[error("no {what}")]
    Missing { what: String },
    /// A run was already started with this idempotency key (in this tenant).
    #[error("idempotency key '{key}' already started run {run}")]
    KeyUsed {
        key: String,
        run: RunId,
        /// The fingerprint of the request that started it.
        fingerprint: String,
    },
    /// A compare-and-set write found another version than the one it expected (0: absent).
    #[error("memory key '{key}' is at version {current}, not the expected version {expected}")]
    VersionMismatch {
        key: String,
        expected: u64,
        current: u64,
    },
    /// The request cannot be applied to what is stored.
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, Error>;

/// A run as created.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct NewRun {
    pub id: RunId,
    pub workflow_name: String,
    /// The workflow document as given (frozen for the run's life).
    pub workflow_source: String,
    /// Where it was read from, if a file (scripted fixtures are found next to it).
    pub workflow_path: Option<String>,
    pub inputs: Value,
    /// Engine options (breakpoints, stepping) as JSON.
    pub options: Value,
    pub created_at_ms: i64,
    /// The run's first events (seqs from 1), written in the same write as the run.
    pub events: Vec<EventRecord>,
    /// The tenant that owns the run.
    #[serde(default)]
    pub tenant: TenantId,
    /// The key that started it (`local` for the CLI); lets a `runner` key see its own runs.
    #[serde(default)]
    pub started_by: Option<String>,
    /// Makes a retried start return the same run: a second create with the same key in the
    /// same tenant fails with [`Error::KeyUsed`] and creates nothing.
    #[serde(default)]
    pub idempotency: Option<IdempotencyKey>,
}

/// An idempotency key of a run start, with the fingerprint of the request that used it (a
/// retry with another request under the same key is a conflict, not the same run).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdempotencyKey {
    pub key: String,
    pub fingerprint: String,
}

/// A stored run.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunRecord {
    pub id: RunId,
    pub workflow_name: String,
    pub workflow_source: String,
    pub workflow_path: Option<String>,
    pub inputs: Value,
    pub options: Value,
    pub status: RunStatus,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    /// Seq of the last event appended (0: none).
    pub last_seq: u64,
    /// The tenant that owns the run (`default` for runs from before tenants).
    #[serde(default)]
    pub tenant: TenantId,
    /// The key that started it, if recorded.
    #[serde(default)]
    pub started_by: Option<String>,
}

/// The engine's state after event `seq`.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Checkpoint {
    pub seq: u64,
    /// The engine's run state as JSON text (written once per step: kept as text, never as a
    /// `Value` tree).
    pub state: String,
}

/// One atomic write to a run.
#[derive(Clone, Debug, Default)]
pub struct Batch {
    pub events: Vec<EventRecord>,
    pub status: Option<RunStatus>,
    pub outputs: Option<Value>,
    pub error: Option<String>,
    pub checkpoint: Option<Checkpoint>,
}

/// A request to a running run from outside its process (CLI, API).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Control {
    Pause,
    Resume {
        #[serde(default)]
        stepping: bool,
    },
    /// Budget limits raised before a resume (`baton resume --budget tokens=+50000`).
    RaiseBudget {
        changes: Vec<baton_types::BudgetChange>,
        #[serde(default)]
        by: Option<String>,
    },
    Cancel,
    /// A person paused, resumed or stopped one agent (`baton agents pause RUN AGENT`).
    Agent {
        agent: String,
        action: baton_types::AgentAction,
        #[serde(default)]
        by: Option<String>,
    },
    Human {
        step: String,
        approved: bool,
        #[serde(default)]
        value: Value,
        #[serde(default)]
        comment: Option<String>,
        #[serde(default)]
        by: Option<String>,
    },
    /// A person edited a paused run's state (`baton runs edit RUN --set PATH=JSON`).
    Edit {
        edits: Vec<(baton_types::EditTarget, Value)>,
        #[serde(default)]
        by: Option<String>,
    },
    /// A person set the steps the run pauses before (`baton runs breakpoints`).
    Breakpoints {
        change: baton_types::BreakpointChange,
        #[serde(default)]
        by: Option<String>,
    },
    /// A person resolved an ambiguous step (`baton runs resolve`).
    Resolve {
        step: String,
        resolution: baton_types::Resolution,
        #[serde(default)]
        value: Value,
        #[serde(default)]
        by: Option<String>,
    },
}

/// Filters of `list_runs` (the tenant is its own argument: no query forgets it).
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    pub limit: Option<u32>,
    /// Only runs created at or after this time (Unix ms).
    pub since_ms: Option<i64>,
    /// Only runs whose workflow name, inputs, outputs or error contain this text
    /// (case-insensitive for ASCII).
    pub text: Option<String>,
    /// Only runs started by this key.
    pub started_by: Option<String>,
    /// Cursor: only runs listed after this one (its `created_at_ms` and id), newest first.
    pub after: Option<(i64, RunId)>,
}

impl ListQuery {
    /// Whether `r` passes the filters other than status, limit and cursor (backends that
    /// filter in memory share this).
    pub fn matches(&self, r: &RunRecord) -> bool {
        self.workflow.as_ref().is_none_or(|w| &r.workflow_name == w)
            && self.since_ms.is_none_or(|t| r.created_at_ms >= t)
            && self
                .started_by
                .as_ref()
                .is_none_or(|k| r.started_by.as_ref() == Some(k))
            && self
                .after
                .is_none_or(|(at, id)| (r.created_at_ms, r.id) < (at, id))
            && self.text.as_ref().is_none_or(|t| {
                let t = t.to_ascii_lowercase();
                r.workflow_name.to_ascii_lowercase().contains(&t)
                    || r.inputs.to_string().to_ascii_lowercase().contains(&t)
                    || r.outputs
                        .as_ref()
                        .is_some_and(|o| o.to_string().to_ascii_lowercase().contains(&t))
                    || r.error
                        .as_ref()
                        .is_some_and(|e| e.to_ascii_lowercase().contains(&t))
            })
    }
}

#[async_trait]
pub trait RunStore: Send + Sync {
    async fn create_run(&self, run: NewRun) -> Result<()>;
    /// Appends events (their seqs must follow the run's last), and sets status, outputs,
    /// error and checkpoint when given: all or nothing.
    async fn append(&self, run: RunId, batch: Batch) -> Result<()>;
    /// A run by id, whatever its tenant: for the executor, which already holds the run. Front
    /// ends read through [`RunStore::tenant_run`].
    async fn run(&self, run: RunId) -> Result<Option<RunRecord>>;
    /// A run of `tenant` (another tenant's run is `None`, as if it did not exist).
    async fn tenant_run(&self, tenant: &TenantId, run: RunId) -> Result<Option<RunRecord>> {
        Ok(self.run(run).await?.filter(|r| &r.tenant == tenant))
    }
    /// The runs of `tenant`, newest first (`created_at_ms`, then id). A `running` run that no
    /// live process holds is listed as `interrupted`.
    async fn list_runs(&self, tenant: &TenantId, q: ListQuery) -> Result<Vec<RunRecord>>;
    /// How many runs of every tenant have each status (a `running` run no live process holds
    /// counts as `interrupted`); statuses without runs are left out. For metrics.
    async fn count_runs(&self) -> Result<Vec<(RunStatus, u64)>>;
    /// The ids of `tenant`'s runs that start with `prefix` (hex digits, as `baton runs list`
    /// prints them), in id order, at most `limit`: lets people name a run by a unique prefix,
    /// as git does.
    async fn runs_by_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<RunId>>;
    /// The run an idempotency key of `tenant` started, with its request fingerprint.
    async fn run_for_key(&self, tenant: &TenantId, key: &str) -> Result<Option<(RunId, String)>>;
    /// Events with seq > `after`, in order.
    async fn events(&self, run: RunId, after: u64) -> Result<Vec<EventRecord>>;
    async fn checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>>;
    /// Queues a control request for whichever process runs `run`.
    async fn send_control(&self, run: RunId, control: Control) -> Result<()>;
    /// Takes (removes and returns) the queued control requests, oldest first.
    async fn take_controls(&self, run: RunId) -> Result<Vec<Control>>;
    /// Takes the run for `owner` (`host:pid`). Fails with `Claimed` while another live owner
    /// holds it; a lease whose owner process is gone, or that expired, is taken over.
    async fn claim(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()>;
    /// Extends the lease (called periodically by the owner).
    async fn renew(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()>;
    async fn release(&self, run: RunId, owner: &str) -> Result<()>;
}

/// The owner string of this process, as [`RunStore::claim`] takes it: `host:pid`.
pub fn process_owner() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "localhost".into())
}

/// Current Unix time in milliseconds.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}

/// An event as stored: `run_created` without its inputs, which the run's row holds (a large
/// input is stored once; [`restore_inputs`] puts them back when the event is read).
pub(crate) fn stored_payload(ev: &Event) -> serde_json::Result<String> {
    match ev {
        Event::RunCreated {
            workflow,
            inputs,
            forked_from,
        } if !inputs.is_null() => serde_json::to_string(&Event::RunCreated {
            workflow: workflow.clone(),
            inputs: Value::Null,
            forked_from: *forked_from,
        }),
        ev => serde_json::to_string(ev),
    }
}

/// Gives `run_created` (when among `events`) the run's inputs back; `inputs` is asked only
/// then.
pub(crate) fn restore_inputs(
    events: &mut [EventRecord],
    inputs: impl FnOnce() -> Result<Value>,
) -> Result<()> {
    if let Some(EventRecord {
        event: Event::RunCreated { inputs: slot, .. },
        ..
    }) = events.first_mut()
        && slot.is_null()
    {
        *slot = inputs()?;
    }
    Ok(())
}
