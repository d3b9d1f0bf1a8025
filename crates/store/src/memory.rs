//! An in-memory store: same semantics as SQLite, nothing durable. For benchmarks of the engine
//! alone and for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use baton_types::{EventRecord, RunId};

use crate::{
    Batch, Checkpoint, Control, Error, ListQuery, NewRun, Result, RunRecord, RunStore, now_ms,
};

#[derive(Default)]
struct Run {
    record: Option<RunRecord>,
    events: Vec<EventRecord>,
    checkpoint: Option<Checkpoint>,
    controls: Vec<Control>,
    owner: Option<String>,
}

/// Runs kept in memory. With `keep_events(false)` events are counted but not kept (benchmarks).
pub struct MemoryStore {
    runs: Mutex<HashMap<RunId, Run>>,
    order: Mutex<BTreeMap<(i64, RunId), ()>>,
    keep_events: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            runs: Mutex::default(),
            order: Mutex::default(),
            keep_events: true,
        }
    }
}

impl MemoryStore {
    pub fn new() -> Self {
        Self::default()
    }

    /// Whether appended events and checkpoints are kept (default true).
    pub fn keep_events(mut self, keep: bool) -> Self {
        self.keep_events = keep;
        self
    }

    fn with<T>(&self, run: RunId, f: impl FnOnce(&mut Run) -> Result<T>) -> Result<T> {
        let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        match runs.get_mut(&run) {
            Some(r) if r.record.is_some() => f(r),
            _ => Err(Error::NotFound(run)),
        }
    }
}

#[async_trait]
impl RunStore for MemoryStore {
    async fn create_run(&self, run: NewRun) -> Result<()> {
        for (i, ev) in run.events.iter().enumerate() {
            if ev.seq != i as u64 + 1 {
                return Err(Error::Conflict {
                    run: run.id,
                    seq: ev.seq,
                });
            }
        }
        let rec = RunRecord {
            id: run.id,
            workflow_name: run.workflow_name,
            workflow_source: run.workflow_source,
            workflow_path: run.workflow_path,
            inputs: run.inputs,
            options: run.options,
            status: baton_types::RunStatus::Pending,
            created_at_ms: run.created_at_ms,
            updated_at_ms: run.created_at_ms,
            outputs: None,
            error: None,
            last_seq: run.events.len() as u64,
        };
        let events = if self.keep_events {
            let mut events = run.events;
            // The inputs are kept once, in the record (as in every store).
            if let Some(EventRecord {
                event: baton_types::Event::RunCreated { inputs, .. },
                ..
            }) = events.first_mut()
            {
                *inputs = serde_json::Value::Null;
            }
            events
        } else {
            Vec::new()
        };
        {
            let mut runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
            if runs.contains_key(&run.id) {
                return Err(Error::Db(format!("run {} already exists", run.id)));
            }
            runs.insert(
                run.id,
                Run {
                    record: Some(rec),
                    events,
                    ..Default::default()
                },
            );
        }
        self.order
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((run.created_at_ms, run.id), ());
        Ok(())
    }

    async fn append(&self, run: RunId, batch: Batch) -> Result<()> {
        let keep = self.keep_events;
        self.with(run, |r| {
            let rec = r.record.as_mut().ok_or(Error::NotFound(run))?;
            let mut expect = rec.last_seq + 1;
            for ev in &batch.events {
                if ev.seq != expect {
                    return Err(Error::Conflict { run, seq: ev.seq });
                }
                expect += 1;
            }
            rec.last_seq = expect - 1;
            rec.updated_at_ms = now_ms();
            if let Some(s) = batch.status {
                rec.status = s;
            }
            if batch.outputs.is_some() {
                rec.outputs = batch.outputs;
            }
            if batch.error.is_some() {
                rec.error = batch.error;
            }
            if keep {
                r.events.extend(batch.events);
                if batch.checkpoint.is_some() {
                    r.checkpoint = batch.checkpoint;
                }
                // A finished run's log no longer grows: give back the room kept for growth.
                if rec.status.is_terminal() {
                    r.events.shrink_to_fit();
                }
            }
            Ok(())
        })
    }

    async fn run(&self, run: RunId) -> Result<Option<RunRecord>> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(runs.get(&run).and_then(|r| r.record.clone()))
    }

    async fn list_runs(&self, q: ListQuery) -> Result<Vec<RunRecord>> {
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(order
            .keys()
            .rev()
            .filter_map(|(_, id)| runs.get(id).and_then(|r| r.record.clone()))
            .filter(|r| q.status.is_none_or(|s| r.status == s))
            .filter(|r| q.workflow.as_ref().is_none_or(|w| &r.workflow_name == w))
            .take(q.limit.map_or(usize::MAX, |l| l as usize))
            .collect())
    }

    async fn runs_by_prefix(&self, prefix: &str, limit: u32) -> Result<Vec<RunId>> {
        let prefix = prefix.trim().to_ascii_lowercase().replace('-', "");
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<RunId> = runs
            .keys()
            .filter(|id| !prefix.is_empty() && id.to_string().starts_with(&prefix))
            .copied()
            .collect();
        ids.sort_by_key(|id| id.to_string());
        ids.truncate(limit as usize);
        Ok(ids)
    }

    async fn events(&self, run: RunId, after: u64) -> Result<Vec<EventRecord>> {
        self.with(run, |r| {
            let mut events: Vec<EventRecord> =
                r.events.iter().filter(|e| e.seq > after).cloned().collect();
            crate::restore_inputs(&mut events, || {
                Ok(r.record
                    .as_ref()
                    .map(|x| x.inputs.clone())
                    .unwrap_or_default())
            })?;
            Ok(events)
        })
    }

    async fn checkpoint(&self, run: RunId) -> Result<Option<Checkpoint>> {
        self.with(run, |r| Ok(r.checkpoint.clone()))
    }

    async fn send_control(&self, run: RunId, control: Control) -> Result<()> {
        self.with(run, |r| {
            r.controls.push(control);
            Ok(())
        })
    }

    async fn take_controls(&self, run: RunId) -> Result<Vec<Control>> {
        self.with(run, |r| Ok(std::mem::take(&mut r.controls)))
    }

    async fn claim(&self, run: RunId, owner: &str, _lease_ms: u64) -> Result<()> {
        self.with(run, |r| match &r.owner {
            Some(o) if o != owner => Err(Error::Claimed {
                run,
                owner: o.clone(),
            }),
            _ => {
                r.owner = Some(owner.to_string());
                Ok(())
            }
        })
    }

    async fn renew(&self, run: RunId, owner: &str, lease_ms: u64) -> Result<()> {
        self.claim(run, owner, lease_ms).await
    }

    async fn release(&self, run: RunId, owner: &str) -> Result<()> {
        self.with(run, |r| {
            if r.owner.as_deref() == Some(owner) {
                r.owner = None;
            }
            Ok(())
        })
    }
}
