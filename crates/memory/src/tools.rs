//! The memory tools. Reads (`memory.recall`, `memory.workflow.get/list/history`) change nothing
//! ([`Effects::None`]); writes (`memory.remember`, `memory.workflow.set/append`) store the
//! call's idempotency key with what they wrote and answer a repeated key with the first result
//! ([`Effects::IdempotentWithKey`]), so a call resumed after a crash writes once.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use baton_store::{KvEntry, KvOp, KvWrite, RunStore};
use baton_tools::{Effects, Registry, Tool, ToolContext, ToolSpec};
use baton_types::{RunId, TenantId};
use serde_json::{Value, json};

use crate::{Error, Memory, NewMemory, Scope, run_namespace, workflow_namespace};

/// The tools' names, in the order they are registered.
pub const NAMES: [&str; 7] = [
    "memory.remember",
    "memory.recall",
    "memory.workflow.get",
    "memory.workflow.set",
    "memory.workflow.append",
    "memory.workflow.list",
    "memory.workflow.history",
];

const MAX_K: u64 = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Remember,
    Recall,
    Get,
    Set,
    Append,
    List,
    History,
}

const KINDS: [Kind; 7] = [
    Kind::Remember,
    Kind::Recall,
    Kind::Get,
    Kind::Set,
    Kind::Append,
    Kind::List,
    Kind::History,
];

/// What the tools share: the memory service and the run store their runs' tenants are read
/// from (once per run).
struct Shared {
    memory: Arc<Memory>,
    runs: Arc<dyn RunStore>,
    tenants: std::sync::Mutex<HashMap<String, TenantId>>,
}

/// One memory tool.
pub struct MemoryTool {
    kind: Kind,
    shared: Arc<Shared>,
}

/// Adds the seven memory tools to `registry`.
pub fn register(registry: &mut Registry, memory: Arc<Memory>, runs: Arc<dyn RunStore>) {
    let shared = Arc::new(Shared {
        memory,
        runs,
        tenants: std::sync::Mutex::default(),
    });
    for kind in KINDS {
        registry.register(Arc::new(MemoryTool {
            kind,
            shared: shared.clone(),
        }));
    }
}

fn scope_schema() -> Value {
    json!({"type": "string", "enum": ["run", "workflow"], "description": "run: this run's own memories; workflow (default): shared by every run of the workflow"})
}

fn key_schema() -> Value {
    json!({"type": "string", "minLength": 1, "maxLength": 256})
}

impl Kind {
    fn name(self) -> &'static str {
        NAMES[KINDS.iter().position(|k| *k == self).unwrap_or(0)]
    }

    fn spec(self) -> ToolSpec {
        let (description, params) = match self {
            Kind::Remember => (
                "Remembers a text for later runs and agents, found again by meaning with memory.recall. Returns {id}.",
                json!({"type": "object", "required": ["text"], "additionalProperties": false, "properties": {
                    "text": {"type": "string", "minLength": 1},
                    "metadata": {"type": "object"},
                    "scope": scope_schema()}}),
            ),
            Kind::Recall => (
                "Finds the remembered texts closest in meaning to `query`, best first: [{id, text, score, metadata, agent}].",
                json!({"type": "object", "required": ["query"], "additionalProperties": false, "properties": {
                    "query": {"type": "string", "minLength": 1},
                    "k": {"type": "integer", "minimum": 1, "maximum": MAX_K, "default": 5},
                    "scope": scope_schema()}}),
            ),
            Kind::Get => (
                "Reads a key of the workflow's shared memory: {key, value, version} (version 0 and value null: not set).",
                json!({"type": "object", "required": ["key"], "additionalProperties": false, "properties": {"key": key_schema()}}),
            ),
            Kind::Set => (
                "Writes a key of the workflow's shared memory. With expect_version, only if the key is at that version (0: not set yet); else the call fails and says the current version.",
                json!({"type": "object", "required": ["key", "value"], "additionalProperties": false, "properties": {
                    "key": key_schema(), "value": {},
                    "expect_version": {"type": "integer", "minimum": 0}}}),
            ),
            Kind::Append => (
                "Appends a value to the list under a key of the workflow's shared memory (a new key starts a list).",
                json!({"type": "object", "required": ["key", "value"], "additionalProperties": false, "properties": {
                    "key": key_schema(), "value": {}}}),
            ),
            Kind::List => (
                "Lists the keys of the workflow's shared memory (those starting with `prefix`), with their values and versions.",
                json!({"type": "object", "additionalProperties": false, "properties": {"prefix": {"type": "string"}}}),
            ),
            Kind::History => (
                "Every write to a key of the workflow's shared memory, oldest first: value, version, op, who wrote it, run and step.",
                json!({"type": "object", "required": ["key"], "additionalProperties": false, "properties": {"key": key_schema()}}),
            ),
        };
        let effects = match self {
            Kind::Remember | Kind::Set | Kind::Append => Effects::IdempotentWithKey,
            _ => Effects::None,
        };
        ToolSpec::new(self.name(), description, params).with_effects(effects)
    }
}

fn invalid(tool: &str, message: impl Into<String>) -> baton_tools::Error {
    baton_tools::Error::InvalidArguments {
        tool: tool.into(),
        message: message.into(),
    }
}

/// A memory error as the tool reports it: a missing model or memories of another model are
/// `Unavailable` (another attempt fails the same way), a version mismatch or a bad request is the caller's to fix.
fn tool_error(tool: &str, e: Error) -> baton_tools::Error {
    use baton_store::Error as S;
    match e {
        // Neither is the agent's to fix: the operator installs the model or re-embeds.
        Error::Embedding(m) | Error::OtherModel(m) => {
            baton_tools::Error::Unavailable(format!("{tool}: {m}"))
        }
        Error::Invalid(m) | Error::Store(S::Invalid(m)) => invalid(tool, m),
        Error::Store(e @ (S::VersionMismatch { .. } | S::Exists { .. })) => {
            invalid(tool, e.to_string())
        }
        Error::Store(e) => baton_tools::Error::Transient(format!("{tool}: {e}")),
    }
}

fn str_arg<'a>(tool: &str, args: &'a Value, name: &str) -> Result<&'a str, baton_tools::Error> {
    args.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .ok_or_else(|| invalid(tool, format!("`{name}` is required (a non-empty string)")))
}

fn key_arg<'a>(tool: &str, args: &'a Value) -> Result<&'a str, baton_tools::Error> {
    let key = str_arg(tool, args, "key")?;
    if key.len() > 256 {
        return Err(invalid(tool, "`key` is longer than 256 bytes"));
    }
    Ok(key)
}

fn scope_arg(tool: &str, args: &Value) -> Result<Scope, baton_tools::Error> {
    match args.get("scope") {
        None | Some(Value::Null) => Ok(Scope::default()),
        Some(Value::String(s)) => Scope::parse(s)
            .ok_or_else(|| invalid(tool, format!("`scope` is '{s}'; use run or workflow"))),
        Some(_) => Err(invalid(tool, "`scope` must be run or workflow")),
    }
}

fn entry_json(e: KvEntry) -> Value {
    serde_json::to_value(e).unwrap_or(Value::Null)
}

impl MemoryTool {
    /// The tenant of the call's run, read from its record once per run.
    async fn tenant(&self, ctx: &ToolContext) -> Result<TenantId, baton_tools::Error> {
        let tool = self.kind.name();
        if let Some(t) = self
            .shared
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&ctx.run_id)
        {
            return Ok(t.clone());
        }
        let run: RunId = ctx.run_id.parse().map_err(|_| {
            baton_tools::Error::Failed(format!(
                "{tool} needs a run; '{}' is not a run id",
                ctx.run_id
            ))
        })?;
        let rec = self
            .shared
            .runs
            .run(run)
            .await
            .map_err(|e| baton_tools::Error::Transient(format!("{tool}: {e}")))?
            .ok_or_else(|| baton_tools::Error::Failed(format!("{tool}: no run {run}")))?;
        self.shared
            .tenants
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(ctx.run_id.clone(), rec.tenant.clone());
        Ok(rec.tenant)
    }

    fn namespace(&self, scope: Scope, ctx: &ToolContext) -> String {
        match scope {
            Scope::Run => run_namespace(&ctx.run_id),
            Scope::Workflow => workflow_namespace(&ctx.workflow),
        }
    }

    fn write(&self, tenant: TenantId, ctx: &ToolContext, key: &str, op: KvOp) -> KvWrite {
        KvWrite {
            tenant,
            workflow: ctx.workflow.clone(),
            key: key.to_string(),
            op,
            writer: ctx.agent.clone(),
            run_id: Some(ctx.run_id.clone()),
            step: Some(ctx.step.clone()),
            call_key: Some(ctx.idempotency_key.clone()).filter(|k| !k.is_empty()),
            at_ms: baton_store::now_ms(),
        }
    }

    async fn semantic(&self, args: &Value, ctx: &ToolContext) -> Result<Value, Error> {
        let tool = self.kind.name();
        let tenant = self
            .tenant(ctx)
            .await
            .map_err(|e| Error::Invalid(e.to_string()))?;
        let scope = scope_arg(tool, args).map_err(|e| Error::Invalid(e.to_string()))?;
        let ns = self.namespace(scope, ctx);
        let memory = &self.shared.memory;
        if self.kind == Kind::Remember {
            let text = args.get("text").and_then(Value::as_str).unwrap_or_default();
            let metadata = args.get("metadata").cloned().unwrap_or_else(|| json!({}));
            if !metadata.is_object() {
                return Err(Error::Invalid("`metadata` must be an object".into()));
            }
            let m = NewMemory {
                text: text.to_string(),
                metadata,
                agent: ctx.agent.clone(),
                run_id: Some(ctx.run_id.clone()),
                call_key: Some(ctx.idempotency_key.clone()).filter(|k| !k.is_empty()),
            };
            let stored = memory.remember(&tenant, &ns, m).await?;
            return Ok(json!({"id": stored.id}));
        }
        let query = args
            .get("query")
            .and_then(Value::as_str)
            .unwrap_or_default();
        let k = match args.get("k") {
            None | Some(Value::Null) => 5,
            Some(v) => v
                .as_u64()
                .filter(|k| (1..=MAX_K).contains(k))
                .ok_or_else(|| {
                    Error::Invalid(format!("`k` must be an integer from 1 to {MAX_K}"))
                })?,
        };
        let hits = memory.recall(&tenant, &ns, query, k as usize).await?;
        Ok(serde_json::to_value(hits).unwrap_or(Value::Null))
    }

    async fn workflow_kv(
        &self,
        args: &Value,
        ctx: &ToolContext,
    ) -> Result<Value, baton_tools::Error> {
        let tool = self.kind.name();
        let tenant = self.tenant(ctx).await?;
        let store = self.shared.memory.store();
        let wf = ctx.workflow.as_str();
        let err = |e: baton_store::Error| tool_error(tool, Error::Store(e));
        match self.kind {
            Kind::Get => {
                let key = key_arg(tool, args)?;
                Ok(match store.kv_get(&tenant, wf, key).await.map_err(err)? {
                    Some(e) => entry_json(e),
                    None => json!({"key": key, "value": null, "version": 0}),
                })
            }
            Kind::Set | Kind::Append => {
                let key = key_arg(tool, args)?;
                let value = args
                    .get("value")
                    .cloned()
                    .ok_or_else(|| invalid(tool, "`value` is required"))?;
                let op = if self.kind == Kind::Append {
                    KvOp::Append { value }
                } else {
                    let expect_version = match args.get("expect_version") {
                        None | Some(Value::Null) => None,
                        Some(v) => Some(v.as_u64().ok_or_else(|| {
                            invalid(tool, "`expect_version` must be an integer >= 0")
                        })?),
                    };
                    KvOp::Set {
                        value,
                        expect_version,
                    }
                };
                let w = self.write(tenant, ctx, key, op);
                Ok(entry_json(store.kv_write(w).await.map_err(err)?))
            }
            Kind::List => {
                let prefix = args.get("prefix").and_then(Value::as_str).unwrap_or("");
                let all = store.kv_list(&tenant, wf, prefix).await.map_err(err)?;
                Ok(Value::Array(all.into_iter().map(entry_json).collect()))
            }
            _ => {
                let key = key_arg(tool, args)?;
                let all = store.kv_history(&tenant, wf, key).await.map_err(err)?;
                Ok(Value::Array(all.into_iter().map(entry_json).collect()))
            }
        }
    }
}

#[async_trait]
impl Tool for MemoryTool {
    fn spec(&self) -> ToolSpec {
        self.kind.spec()
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, baton_tools::Error> {
        let tool = self.kind.name();
        if !args.is_object() {
            return Err(invalid(tool, "the arguments must be an object"));
        }
        if ctx.workflow.is_empty() {
            return Err(baton_tools::Error::Failed(format!(
                "{tool} runs only inside a workflow run"
            )));
        }
        match self.kind {
            Kind::Remember | Kind::Recall => {
                if self.kind == Kind::Remember {
                    str_arg(tool, &args, "text")?;
                } else {
                    str_arg(tool, &args, "query")?;
                }
                self.semantic(&args, ctx)
                    .await
                    .map_err(|e| tool_error(tool, e))
            }
            _ => self.workflow_kv(&args, ctx).await,
        }
    }
}
