//! Baton's run log: the [`RunStore`] trait and its backends (`sqlite`, the embedded default,
//! and `memory`, for benchmarks and tests that need no durability).
//!
//! A run is a row plus an append-only list of events and a latest checkpoint. `append` writes
//! events, the run's new status and a checkpoint in one transaction: what the engine acts on is
//! on disk first.

pub mod memory;
pub mod sqlite;

use async_trait::async_trait;
use baton_types::{Event, EventRecord, RunId, RunStatus};
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
    Cancel,
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

/// Filters of `list_runs`.
#[derive(Clone, Debug, Default)]
pub struct ListQuery {
    pub status: Option<RunStatus>,
    pub workflow: Option<String>,
    pub limit: Option<u32>,
}

#[async_trait]
pub trait RunStore: Send + Sync {
    async fn create_run(&self, run: NewRun) -> Result<()>;
    /// Appends events (their seqs must follow the run's last), and sets status, outputs,
    /// error and checkpoint when given: all or nothing.
    async fn append(&self, run: RunId, batch: Batch) -> Result<()>;
    async fn run(&self, run: RunId) -> Result<Option<RunRecord>>;
    /// Newest first. A `running` run that no live process holds is listed as `interrupted`.
    async fn list_runs(&self, q: ListQuery) -> Result<Vec<RunRecord>>;
    /// The ids that start with `prefix` (hex digits, as `baton runs list` prints them), in id
    /// order, at most `limit`: lets people name a run by a unique prefix, as git does.
    async fn runs_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<RunId>>;
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
        Event::RunCreated { workflow, inputs } if !inputs.is_null() => {
            serde_json::to_string(&Event::RunCreated {
                workflow: workflow.clone(),
                inputs: Value::Null,
            })
        }
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
