//! An in-memory store: same semantics as SQLite, nothing durable. For benchmarks of the engine
//! alone and for tests.

use std::collections::{BTreeMap, HashMap};
use std::sync::Mutex;

use async_trait::async_trait;
use baton_types::{EventRecord, RunId, TenantId};

mod agents;
mod team_memory;
mod webhooks;

use crate::tenancy::{
    ApiKeyRecord, AuditEntry, AuditQuery, GENESIS_HASH, NewAuditEntry, NewWorkflowVersion,
    TenantRecord, TenantStore, WorkflowRecord, WorkflowSummary, WorkflowWrite, audit_hash,
};
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

/// A stored workflow: its versions, oldest first.
struct Workflow {
    versions: Vec<WorkflowRecord>,
    created_at_ms: i64,
    updated_at_ms: i64,
    deleted: bool,
}

/// Tenants, keys, audit chains, workflows and idempotency keys.
struct Tenancy {
    tenants: BTreeMap<TenantId, TenantRecord>,
    keys: Vec<ApiKeyRecord>,
    audit: HashMap<TenantId, Vec<AuditEntry>>,
    workflows: BTreeMap<(TenantId, String), Workflow>,
    run_starts: HashMap<(TenantId, String), (RunId, String)>,
}

impl Default for Tenancy {
    fn default() -> Self {
        let default = TenantRecord {
            id: TenantId::default(),
            name: TenantId::DEFAULT.into(),
            created_at_ms: 0,
        };
        Self {
            tenants: BTreeMap::from([(default.id.clone(), default)]),
            keys: Vec::new(),
            audit: HashMap::new(),
            workflows: BTreeMap::new(),
            run_starts: HashMap::new(),
        }
    }
}

/// Runs kept in memory. With `keep_events(false)` events are counted but not kept (benchmarks).
pub struct MemoryStore {
    runs: Mutex<HashMap<RunId, Run>>,
    order: Mutex<BTreeMap<(i64, RunId), ()>>,
    tenancy: Mutex<Tenancy>,
    webhooks: Mutex<webhooks::Hooks>,
    agents: Mutex<agents::Agents>,
    team: Mutex<team_memory::Team>,
    keep_events: bool,
}

impl Default for MemoryStore {
    fn default() -> Self {
        Self {
            runs: Mutex::default(),
            order: Mutex::default(),
            tenancy: Mutex::default(),
            webhooks: Mutex::default(),
            agents: Mutex::default(),
            team: Mutex::default(),
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

    fn tenancy(&self) -> std::sync::MutexGuard<'_, Tenancy> {
        self.tenancy.lock().unwrap_or_else(|p| p.into_inner())
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
        let workflow = run.workflow_name.clone();
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
            tenant: run.tenant.clone(),
            started_by: run.started_by.clone(),
        };
        // For the webhook outbox once the run is in (cloned only when it is wanted).
        let outbox = self
            .hooks()
            .has_subscriptions(&run.tenant)
            .then(|| run.events.clone());
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
            if let Some(k) = &run.idempotency {
                let mut t = self.tenancy();
                let slot = (run.tenant.clone(), k.key.clone());
                if let Some((id, fingerprint)) = t.run_starts.get(&slot) {
                    return Err(Error::KeyUsed {
                        key: k.key.clone(),
                        run: *id,
                        fingerprint: fingerprint.clone(),
                    });
                }
                t.run_starts.insert(slot, (run.id, k.fingerprint.clone()));
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
        if let Some(evs) = outbox {
            self.hooks().appended(&run.tenant, &workflow, &evs);
        }
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
            // The webhook outbox, as SQLite's trigger fills it.
            self.hooks()
                .appended(&rec.tenant, &rec.workflow_name, &batch.events);
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

    async fn run_for_key(&self, tenant: &TenantId, key: &str) -> Result<Option<(RunId, String)>> {
        Ok(self
            .tenancy()
            .run_starts
            .get(&(tenant.clone(), key.to_string()))
            .cloned())
    }

    async fn list_runs(&self, tenant: &TenantId, q: ListQuery) -> Result<Vec<RunRecord>> {
        let order = self.order.lock().unwrap_or_else(|p| p.into_inner());
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        Ok(order
            .keys()
            .rev()
            .filter_map(|(_, id)| runs.get(id).and_then(|r| r.record.clone()))
            .filter(|r| &r.tenant == tenant)
            .filter(|r| q.status.is_none_or(|s| r.status == s))
            .filter(|r| q.matches(r))
            .take(q.limit.map_or(usize::MAX, |l| l as usize))
            .collect())
    }

    async fn count_runs(&self) -> Result<Vec<(baton_types::RunStatus, u64)>> {
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut counts: Vec<(baton_types::RunStatus, u64)> = Vec::new();
        for r in runs.values().filter_map(|r| r.record.as_ref()) {
            match counts.iter_mut().find(|(s, _)| *s == r.status) {
                Some((_, n)) => *n += 1,
                None => counts.push((r.status, 1)),
            }
        }
        Ok(counts)
    }

    async fn runs_by_prefix(
        &self,
        tenant: &TenantId,
        prefix: &str,
        limit: u32,
    ) -> Result<Vec<RunId>> {
        let prefix = prefix.trim().to_ascii_lowercase().replace('-', "");
        let runs = self.runs.lock().unwrap_or_else(|p| p.into_inner());
        let mut ids: Vec<RunId> = runs
            .iter()
            .filter(|(_, r)| r.record.as_ref().is_some_and(|r| &r.tenant == tenant))
            .map(|(id, _)| id)
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

#[async_trait]
impl TenantStore for MemoryStore {
    async fn create_tenant(&self, t: TenantRecord) -> Result<()> {
        let mut ten = self.tenancy();
        if ten.tenants.contains_key(&t.id) {
            return Err(Error::Exists {
                what: format!("tenant {}", t.id),
            });
        }
        ten.tenants.insert(t.id.clone(), t);
        Ok(())
    }

    async fn tenants(&self) -> Result<Vec<TenantRecord>> {
        Ok(self.tenancy().tenants.values().cloned().collect())
    }

    async fn tenant(&self, id: &TenantId) -> Result<Option<TenantRecord>> {
        Ok(self.tenancy().tenants.get(id).cloned())
    }

    async fn create_key(&self, key: ApiKeyRecord) -> Result<()> {
        let mut t = self.tenancy();
        if !t.tenants.contains_key(&key.tenant) {
            return Err(Error::Missing {
                what: format!("tenant {}", key.tenant),
            });
        }
        if t.keys.iter().any(|k| k.id == key.id) {
            return Err(Error::Exists {
                what: format!("key {}", key.id),
            });
        }
        t.keys.push(key);
        Ok(())
    }

    async fn keys(&self, tenant: &TenantId) -> Result<Vec<ApiKeyRecord>> {
        let mut keys: Vec<ApiKeyRecord> = self
            .tenancy()
            .keys
            .iter()
            .filter(|k| &k.tenant == tenant)
            .cloned()
            .collect();
        keys.sort_by(|a, b| (a.created_at_ms, &a.id).cmp(&(b.created_at_ms, &b.id)));
        Ok(keys)
    }

    async fn key(&self, tenant: &TenantId, id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self
            .tenancy()
            .keys
            .iter()
            .find(|k| &k.tenant == tenant && k.id == id)
            .cloned())
    }

    async fn key_for_auth(&self, id: &str) -> Result<Option<ApiKeyRecord>> {
        Ok(self.tenancy().keys.iter().find(|k| k.id == id).cloned())
    }

    async fn revoke_key(&self, tenant: &TenantId, id: &str, at_ms: i64) -> Result<()> {
        let mut t = self.tenancy();
        match t
            .keys
            .iter_mut()
            .find(|k| &k.tenant == tenant && k.id == id)
        {
            Some(k) => {
                k.revoked_at_ms.get_or_insert(at_ms);
                Ok(())
            }
            None => Err(Error::Missing {
                what: format!("key {id}"),
            }),
        }
    }

    async fn append_audit(&self, entry: NewAuditEntry) -> Result<AuditEntry> {
        let mut t = self.tenancy();
        let chain = t.audit.entry(entry.tenant.clone()).or_default();
        let (seq, prev_hash) = chain.last().map_or((1, GENESIS_HASH.to_string()), |e| {
            (e.seq + 1, e.hash.clone())
        });
        let hash = audit_hash(&prev_hash, seq, &entry);
        let e = AuditEntry {
            seq,
            entry,
            prev_hash,
            hash,
        };
        chain.push(e.clone());
        Ok(e)
    }

    async fn audit(&self, tenant: &TenantId, q: &AuditQuery) -> Result<Vec<AuditEntry>> {
        Ok(self
            .tenancy()
            .audit
            .get(tenant)
            .map(|chain| {
                chain
                    .iter()
                    .filter(|e| q.matches(e))
                    .take(q.limit.map_or(usize::MAX, |l| l as usize))
                    .cloned()
                    .collect()
            })
            .unwrap_or_default())
    }

    async fn put_workflow(
        &self,
        w: NewWorkflowVersion,
        write: WorkflowWrite,
    ) -> Result<WorkflowRecord> {
        let mut t = self.tenancy();
        let slot = (w.tenant.clone(), w.name.clone());
        let live = t.workflows.get(&slot).is_some_and(|x| !x.deleted);
        match write {
            WorkflowWrite::Create if live => {
                return Err(Error::Exists {
                    what: format!("workflow {}", w.name),
                });
            }
            WorkflowWrite::Update if !live => {
                return Err(Error::Missing {
                    what: format!("workflow {}", w.name),
                });
            }
            _ => {}
        }
        let entry = t.workflows.entry(slot).or_insert_with(|| Workflow {
            versions: Vec::new(),
            created_at_ms: w.created_at_ms,
            updated_at_ms: w.created_at_ms,
            deleted: false,
        });
        if entry.deleted {
            entry.created_at_ms = w.created_at_ms;
        }
        entry.deleted = false;
        entry.updated_at_ms = w.created_at_ms;
        let version = entry.versions.last().map_or(1, |v| v.version + 1);
        let rec = WorkflowRecord {
            tenant: w.tenant,
            name: w.name,
            version,
            source: w.source,
            format: w.format,
            created_at_ms: w.created_at_ms,
            created_by: w.created_by,
            latest: version,
        };
        entry.versions.push(rec.clone());
        Ok(rec)
    }

    async fn workflows(&self, tenant: &TenantId) -> Result<Vec<WorkflowSummary>> {
        Ok(self
            .tenancy()
            .workflows
            .iter()
            .filter(|((t, _), w)| t == tenant && !w.deleted)
            .map(|((_, name), w)| WorkflowSummary {
                name: name.clone(),
                latest: w.versions.last().map_or(0, |v| v.version),
                created_at_ms: w.created_at_ms,
                updated_at_ms: w.updated_at_ms,
            })
            .collect())
    }

    async fn workflow(
        &self,
        tenant: &TenantId,
        name: &str,
        version: Option<u32>,
    ) -> Result<Option<WorkflowRecord>> {
        let t = self.tenancy();
        let Some(w) = t
            .workflows
            .get(&(tenant.clone(), name.to_string()))
            .filter(|w| !w.deleted)
        else {
            return Ok(None);
        };
        let latest = w.versions.last().map_or(0, |v| v.version);
        let want = version.unwrap_or(latest);
        Ok(w.versions
            .iter()
            .find(|v| v.version == want)
            .map(|v| WorkflowRecord {
                latest,
                ..v.clone()
            }))
    }

    async fn delete_workflow(&self, tenant: &TenantId, name: &str, at_ms: i64) -> Result<()> {
        let mut t = self.tenancy();
        match t
            .workflows
            .get_mut(&(tenant.clone(), name.to_string()))
            .filter(|w| !w.deleted)
        {
            Some(w) => {
                w.deleted = true;
                w.updated_at_ms = at_ms;
                Ok(())
            }
            None => Err(Error::Missing {
                what: format!("workflow {name}"),
            }),
        }
    }
}
