//! The run's workspace: files agents read and change through the `workspace.*` tools, confined
//! to one directory per run, with a git history of every change.
//!
//! - `workspace.read`, `workspace.list`, `workspace.search`, `workspace.diff` only read.
//! - `workspace.write` and `workspace.apply_patch` change files and commit, the step, agent
//!   and idempotency key in the message; called again with the same key (a retry, a resumed
//!   run) they answer from that commit instead of changing anything twice.
//!
//! Runs' workspaces live under one directory (`<data dir>/workspaces/<run id>/`), made on
//! first use.

pub mod fs;
pub mod history;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use serde_json::{Value, json};

pub use history::{Author, Change, Committed, HeadFiles, Limits, Memo, Workspace};

use crate::{Effects, Error, Tool, ToolContext, ToolSpec};

/// The workspaces of all runs, and one lock per run so that parallel branches change a
/// workspace one at a time.
#[derive(Debug)]
pub struct Workspaces {
    root: PathBuf,
    limits: Limits,
    locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
    /// What is known of the workspaces used lately (see [`Memo`]), at most [`MEMOS`].
    memos: Mutex<HashMap<String, Arc<Mutex<Memo>>>>,
}

/// How many workspaces' memos are kept: those of runs in flight, and some finished ones.
const MEMOS: usize = 64;

impl Workspaces {
    pub fn new(root: impl Into<PathBuf>, limits: Limits) -> Arc<Self> {
        Arc::new(Self {
            root: root.into(),
            limits,
            locks: Mutex::default(),
            memos: Mutex::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// Where run `run`'s workspace is (it may not exist yet).
    pub fn dir_of(&self, run: &str) -> PathBuf {
        self.root.join(run)
    }

    /// Run `run`'s workspace, made when missing.
    pub fn open(&self, run: &str) -> Result<Workspace, history::Error> {
        if run.is_empty() || !run.chars().all(|c| c.is_ascii_alphanumeric() || c == '-') {
            return Err(history::Error::NotFound(format!("`{run}` is not a run id")));
        }
        Workspace::open_with(&self.dir_of(run), self.limits, self.memo_of(run))
    }

    fn memo_of(&self, run: &str) -> Arc<Mutex<Memo>> {
        let mut all = self.memos.lock().unwrap_or_else(|p| p.into_inner());
        if all.len() >= MEMOS && !all.contains_key(run) {
            // Those no call is using go (each is only a shortcut).
            all.retain(|_, m| Arc::strong_count(m) > 1);
        }
        all.entry(run.to_string()).or_default().clone()
    }

    /// Run `run`'s workspace if it has one.
    pub fn existing(&self, run: &str) -> Result<Option<Workspace>, history::Error> {
        if Workspace::exists(&self.dir_of(run)) {
            self.open(run).map(Some)
        } else {
            Ok(None)
        }
    }

    fn lock_of(&self, run: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut all = self.locks.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(run.to_string()).or_default().clone()
    }

    /// Holds run `run`'s lock while `f` runs (from a blocking thread, never from a task).
    pub fn locked<T>(&self, run: &str, f: impl FnOnce() -> T) -> T {
        let _held = self.lock_of(run).blocking_lock_owned();
        f()
    }

    /// Run `run`'s lock, for as long as a sandboxed command works on its files.
    pub async fn lock(&self, run: &str) -> tokio::sync::OwnedMutexGuard<()> {
        self.lock_of(run).lock_owned().await
    }

    /// Registers the `workspace.*` tools over these workspaces.
    pub fn register(self: &Arc<Self>, r: &mut crate::Registry) {
        for op in [
            Op::Read,
            Op::Write,
            Op::List,
            Op::Search,
            Op::ApplyPatch,
            Op::Diff,
            Op::Scan,
        ] {
            r.register(Arc::new(WorkspaceTool {
                op,
                all: self.clone(),
            }));
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Op {
    Read,
    Write,
    List,
    Search,
    ApplyPatch,
    Diff,
    /// `security.scan`: the sandbox's security scanner over the workspace's files.
    Scan,
}

/// One `workspace.*` tool (or `security.scan`, which reads the workspace like them).
struct WorkspaceTool {
    op: Op,
    all: Arc<Workspaces>,
}

/// Most lines a search returns.
const MAX_MATCHES: usize = 200;
/// Most entries a listing returns.
const MAX_LISTED: usize = 1_000;

impl WorkspaceTool {
    fn name(&self) -> &'static str {
        match self.op {
            Op::Read => "workspace.read",
            Op::Write => "workspace.write",
            Op::List => "workspace.list",
            Op::Search => "workspace.search",
            Op::ApplyPatch => "workspace.apply_patch",
            Op::Diff => "workspace.diff",
            Op::Scan => "security.scan",
        }
    }

    fn invalid(&self, message: impl Into<String>) -> Error {
        Error::InvalidArguments {
            tool: self.name().into(),
            message: message.into(),
        }
    }

    fn run(&self, args: &Value, ctx: &ToolContext) -> Result<Value, Error> {
        let allowed: &[&str] = match self.op {
            Op::Read => &["path", "max_bytes"],
            Op::Write => &["path", "content"],
            Op::List => &["path"],
            Op::Search => &["query", "path", "regex", "ignore_case"],
            Op::ApplyPatch => &["patch"],
            Op::Diff => &["step"],
            Op::Scan => &["path", "external"],
        };
        let Some(obj) = args.as_object() else {
            return Err(self.invalid("arguments must be a mapping"));
        };
        if let Some(k) = obj.keys().find(|k| !allowed.contains(&k.as_str())) {
            return Err(self.invalid(format!(
                "unknown argument '{k}' (expected {})",
                allowed.join(", ")
            )));
        }
        let text = |k: &str| -> Result<Option<&str>, Error> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(None),
                Some(Value::String(s)) => Ok(Some(s)),
                Some(other) => Err(self.invalid(format!("`{k}` must be a string, not {other}"))),
            }
        };
        let need = |k: &str| -> Result<&str, Error> {
            text(k)?.ok_or_else(|| self.invalid(format!("`{k}` is required")))
        };
        let ws = self.all.open(&ctx.run_id).map_err(fail)?;
        let author = Author {
            run: ctx.run_id.clone(),
            step: ctx.step.clone(),
            agent: ctx.agent.clone(),
            key: ctx.idempotency_key.clone(),
        };
        match self.op {
            Op::Read => {
                let path = need("path")?;
                let max = match obj.get("max_bytes") {
                    None => ws.limits().max_file_bytes,
                    Some(v) => v
                        .as_u64()
                        .filter(|n| *n > 0)
                        .ok_or_else(|| self.invalid("`max_bytes` must be a positive integer"))?
                        .min(ws.limits().max_file_bytes),
                };
                let bytes = ws.files().read(path, max).map_err(|e| fail(e.into()))?;
                match String::from_utf8(bytes) {
                    Ok(content) => {
                        Ok(json!({"path": path, "bytes": content.len(), "content": content}))
                    }
                    Err(e) => Ok(json!({
                        "path": path,
                        "bytes": e.as_bytes().len(),
                        "binary": true,
                        "content": String::from_utf8_lossy(e.as_bytes()),
                    })),
                }
            }
            Op::List => {
                let path = text("path")?.unwrap_or("");
                let listing = ws
                    .files()
                    .walk(path, MAX_LISTED)
                    .map_err(|e| fail(e.into()))?;
                let entries: Vec<Value> = listing
                    .entries
                    .iter()
                    .map(|e| json!({"path": e.path, "kind": e.kind.as_str(), "bytes": e.bytes}))
                    .collect();
                Ok(json!({"entries": entries, "truncated": !listing.complete}))
            }
            Op::Search => self.search(&ws, need("query")?, text("path")?.unwrap_or(""), obj),
            Op::Scan => self.scan(&ws, text("path")?.unwrap_or(""), obj),
            Op::Diff => {
                let diff = ws.diff(text("step")?).map_err(fail)?;
                Ok(json!({"diff": diff}))
            }
            Op::Write => {
                let path = need("path")?;
                let content = need("content")?;
                self.all.locked(&ctx.run_id, || {
                    if let Some(commit) = ws.commit_of_key(&author.key).map_err(fail)? {
                        return Ok(json!({"path": path, "bytes": content.len(), "commit": commit, "already_applied": true}));
                    }
                    ws.snapshot(&author.before_call(), "changes made outside the workspace tools")
                        .map_err(fail)?;
                    let created = ws.write(path, content.as_bytes()).map_err(fail)?.is_none();
                    let verb = if created { "create" } else { "write" };
                    let commit = ws.snapshot(&author, &format!("{verb} {path}")).map_err(fail)?;
                    Ok(json!({"path": path, "bytes": content.len(), "created": created, "commit": commit}))
                })
            }
            Op::ApplyPatch => {
                let patch = need("patch")?;
                self.all.locked(&ctx.run_id, || {
                    if let Some(commit) = ws.commit_of_key(&author.key).map_err(fail)? {
                        return Ok(json!({"commit": commit, "already_applied": true}));
                    }
                    ws.snapshot(
                        &author.before_call(),
                        "changes made outside the workspace tools",
                    )
                    .map_err(fail)?;
                    let changed = ws.apply_patch(patch).map_err(fail)?;
                    let names: Vec<&str> = changed.iter().map(|(p, _)| p.as_str()).collect();
                    let commit = ws
                        .snapshot(&author, &format!("patch {}", names.join(", ")))
                        .map_err(fail)?;
                    let files: Vec<Value> = changed
                        .iter()
                        .map(|(p, what)| json!({"path": p, "change": what}))
                        .collect();
                    Ok(json!({"files": files, "commit": commit}))
                })
            }
        }
    }

    fn search(
        &self,
        ws: &Workspace,
        query: &str,
        path: &str,
        obj: &serde_json::Map<String, Value>,
    ) -> Result<Value, Error> {
        let flag = |k: &str| -> Result<bool, Error> {
            match obj.get(k) {
                None | Some(Value::Null) => Ok(false),
                Some(Value::Bool(b)) => Ok(*b),
                Some(other) => {
                    Err(self.invalid(format!("`{k}` must be true or false, not {other}")))
                }
            }
        };
        let pattern = if flag("regex")? {
            query.to_string()
        } else {
            regex::escape(query)
        };
        let re = regex::RegexBuilder::new(&pattern)
            .case_insensitive(flag("ignore_case")?)
            .size_limit(1 << 20)
            .build()
            .map_err(|e| self.invalid(format!("`query` is not a valid regular expression: {e}")))?;
        let listing = ws
            .files()
            .walk(path, ws.limits().max_entries)
            .map_err(|e| fail(e.into()))?;
        let mut matches = Vec::new();
        // A workspace over its entry limit is searched as far as the limit.
        let mut truncated = !listing.complete;
        'files: for e in listing.entries.iter().filter(|e| e.kind == fs::Kind::File) {
            let Ok(bytes) = ws.files().read(&e.path, ws.limits().max_file_bytes) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            for (n, line) in text.lines().enumerate() {
                if re.is_match(line) {
                    if matches.len() == MAX_MATCHES {
                        truncated = true;
                        break 'files;
                    }
                    let shown: String = line.chars().take(300).collect();
                    matches.push(json!({"path": e.path, "line": n + 1, "text": shown}));
                }
            }
        }
        Ok(json!({"matches": matches, "truncated": truncated}))
    }
}

impl WorkspaceTool {
    /// The built-in rules over every text file under `path` (and Bandit and Semgrep with
    /// `external: true`, where installed): the findings, counted by severity; `blocking` when
    /// one is high.
    fn scan(
        &self,
        ws: &Workspace,
        path: &str,
        obj: &serde_json::Map<String, Value>,
    ) -> Result<Value, Error> {
        use baton_sandbox::scan::{self, Lang, Severity};
        let external = match obj.get("external") {
            None | Some(Value::Null) => false,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(self.invalid(format!("`external` must be true or false, not {other}")));
            }
        };
        // A file is scanned alone; a directory (or the whole workspace) file by file.
        let one_file =
            !path.is_empty() && ws.files().read(path, ws.limits().max_file_bytes).is_ok();
        let listing = if one_file {
            fs::Listing {
                entries: vec![fs::Entry {
                    path: path.to_string(),
                    kind: fs::Kind::File,
                    bytes: 0,
                    executable: false,
                    stamp: fs::Stamp::default(),
                }],
                complete: true,
            }
        } else {
            ws.files()
                .walk(path, ws.limits().max_entries)
                .map_err(|e| fail(e.into()))?
        };
        let mut report = scan::Report {
            tools: vec!["baton".into()],
            ..Default::default()
        };
        for e in listing.entries.iter().filter(|e| e.kind == fs::Kind::File) {
            let Ok(bytes) = ws.files().read(&e.path, ws.limits().max_file_bytes) else {
                continue;
            };
            let Ok(text) = std::str::from_utf8(&bytes) else {
                continue;
            };
            if let Some(lang) = Lang::detect(&e.path, text) {
                report.files_scanned += 1;
                report
                    .findings
                    .extend(scan::scan_source(lang, &e.path, text));
            }
        }
        if external {
            // The external tools walk the directory themselves: only over regular files.
            if let Some(odd) = listing.entries.iter().find(|e| e.kind == fs::Kind::Other) {
                return Err(Error::Failed(format!(
                    "`external: true` needs a workspace of regular files only; {} is not one",
                    odd.path
                )));
            }
            let dir = ws.files().path().join(path);
            let opts = scan::Options {
                external: true,
                advisories: None,
            };
            let more = scan::scan_path(&dir, &opts).map_err(|e| Error::Failed(e.to_string()))?;
            let root = format!("{}/", ws.files().path().display());
            report
                .findings
                .extend(
                    more.findings
                        .into_iter()
                        .filter(|f| f.tool != "baton")
                        .map(|f| scan::Finding {
                            file: f.file.strip_prefix(&root).unwrap_or(&f.file).to_string(),
                            ..f
                        }),
                );
            report
                .tools
                .extend(more.tools.into_iter().filter(|t| t != "baton"));
            report.skipped = more.skipped;
        }
        report
            .findings
            .sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
        let count = |s: Severity| report.findings.iter().filter(|f| f.severity == s).count();
        let findings: Vec<Value> = report
            .findings
            .iter()
            .map(|f| {
                json!({"rule": f.rule, "severity": f.severity, "path": f.file, "line": f.line,
                       "message": f.message, "fix": f.fix, "tool": f.tool})
            })
            .collect();
        Ok(json!({
            "findings": findings,
            "counts": {"high": count(Severity::High), "medium": count(Severity::Medium), "low": count(Severity::Low)},
            "blocking": count(Severity::High) > 0,
            "files_scanned": report.files_scanned,
            "tools": report.tools,
            "skipped": report.skipped,
            "truncated": !listing.complete,
        }))
    }
}

/// A workspace failure as a tool error: the agent reads the message and can act on it.
fn fail(e: history::Error) -> Error {
    Error::Failed(e.to_string())
}

#[async_trait]
impl Tool for WorkspaceTool {
    fn spec(&self) -> ToolSpec {
        let path = json!({"type": "string", "description": "a path relative to the workspace, e.g. src/app.py"});
        let (description, parameters, effects) = match self.op {
            Op::Read => (
                "Read a file of the run's workspace (UTF-8 text; up to 1 MiB).",
                json!({"type": "object", "properties": {"path": path, "max_bytes": {"type": "integer", "minimum": 1}}, "required": ["path"]}),
                Effects::None,
            ),
            Op::Write => (
                "Create or replace a file of the run's workspace with `content` (directories are made as needed). Committed to the workspace's history.",
                json!({"type": "object", "properties": {"path": path, "content": {"type": "string"}}, "required": ["path", "content"]}),
                Effects::IdempotentWithKey,
            ),
            Op::List => (
                "List the files and directories of the run's workspace (or of `path` in it), with sizes.",
                json!({"type": "object", "properties": {"path": path}}),
                Effects::None,
            ),
            Op::Search => (
                "Find lines containing `query` (text, or a regular expression with `regex: true`) in the workspace's files; up to 200 matches with path and line number.",
                json!({"type": "object", "properties": {"query": {"type": "string"}, "path": path, "regex": {"type": "boolean"}, "ignore_case": {"type": "boolean"}}, "required": ["query"]}),
                Effects::None,
            ),
            Op::ApplyPatch => (
                "Apply a unified diff (`--- a/PATH`, `+++ b/PATH`, `@@` hunks) to the workspace. Every hunk's context must match exactly; otherwise nothing changes and the error says which hunk failed. Committed to the workspace's history.",
                json!({"type": "object", "properties": {"patch": {"type": "string"}}, "required": ["patch"]}),
                Effects::IdempotentWithKey,
            ),
            Op::Diff => (
                "The unified diff of what a step changed in the workspace (`step`), or of every change of the run.",
                json!({"type": "object", "properties": {"step": {"type": "string"}}}),
                Effects::None,
            ),
            Op::Scan => (
                "Scan the workspace's code (or `path` in it) for security problems: shell injection, eval, unsafe deserialisation, hard-coded secrets, weak crypto and more, in Python, JavaScript, TypeScript and shell; `external: true` adds Bandit and Semgrep where installed. Returns each finding (rule, severity, path, line, message, fix), counts by severity, and `blocking` (a high-severity finding).",
                json!({"type": "object", "properties": {"path": path, "external": {"type": "boolean"}}}),
                Effects::None,
            ),
        };
        ToolSpec::new(self.name(), description, parameters).with_effects(effects)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let tool = WorkspaceTool {
            op: self.op,
            all: self.all.clone(),
        };
        let ctx = ctx.clone();
        tokio::task::spawn_blocking(move || tool.run(&args, &ctx))
            .await
            .map_err(|e| Error::Failed(format!("the workspace tool stopped: {e}")))?
    }
}
