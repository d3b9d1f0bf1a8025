//! `sandbox.exec`: runs a command (and the files it needs) in a Baton sandbox, after the
//! security scan; returns exit code, output, usage, why it stopped, and the record an audit
//! needs (tier, limits, what was enforced, scan findings).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use baton_sandbox::{ExecRequest, Policy, Sandbox, scan};
use serde_json::{Value, json};

use crate::workspace::{Author, Workspaces};
use crate::{Error, Tool, ToolContext, ToolSpec};

const NAME: &str = "sandbox.exec";

/// The `sandbox.exec` tool over any [`Sandbox`].
pub struct SandboxExec {
    sandbox: Arc<dyn Sandbox>,
    workspaces: Option<Arc<Workspaces>>,
}

impl SandboxExec {
    pub fn new(sandbox: Arc<dyn Sandbox>) -> SandboxExec {
        SandboxExec {
            sandbox,
            workspaces: None,
        }
    }

    /// Opens the sandbox `policy` names; fails (never falls back) when this host cannot.
    pub fn from_policy(policy: Policy) -> Result<SandboxExec, baton_sandbox::Error> {
        Ok(SandboxExec::new(baton_sandbox::open(policy)?))
    }

    /// Commands run in their run's workspace (`/work` is its files, and what they change
    /// there is committed), unless a call says `workspace: false`.
    pub fn with_workspaces(mut self, workspaces: Arc<Workspaces>) -> SandboxExec {
        self.workspaces = Some(workspaces);
        self
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArguments {
        tool: NAME.into(),
        message: message.into(),
    }
}

/// Reads the tool's arguments into a request.
pub fn request_from_args(args: &Value) -> Result<ExecRequest, Error> {
    let obj = args
        .as_object()
        .ok_or_else(|| invalid("arguments must be an object"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "command" | "files" | "stdin" | "env" | "workspace"
        ) {
            return Err(invalid(format!(
                "unknown argument '{k}' (expected command, files, stdin, env, workspace)"
            )));
        }
    }
    let argv: Vec<String> = match obj.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), s.clone()]
        }
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| {
                x.as_str()
                    .map(String::from)
                    .ok_or_else(|| invalid("command must be a string or a list of strings"))
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(invalid(
                "command must be a non-empty string or list of strings",
            ));
        }
        None => return Err(invalid("missing 'command'")),
    };
    let mut files = BTreeMap::new();
    if let Some(f) = obj.get("files") {
        let m = f
            .as_object()
            .ok_or_else(|| invalid("files must map relative paths to contents"))?;
        for (k, v) in m {
            let text = v
                .as_str()
                .ok_or_else(|| invalid(format!("files.{k} must be a string")))?;
            files.insert(k.clone(), text.to_string());
        }
    }
    let mut env = BTreeMap::new();
    if let Some(e) = obj.get("env") {
        let m = e
            .as_object()
            .ok_or_else(|| invalid("env must map names to strings"))?;
        for (k, v) in m {
            env.insert(
                k.clone(),
                v.as_str()
                    .ok_or_else(|| invalid(format!("env.{k} must be a string")))?
                    .to_string(),
            );
        }
    }
    let stdin = match obj.get("stdin") {
        Some(Value::String(s)) => s.as_bytes().to_vec(),
        Some(_) => return Err(invalid("stdin must be a string")),
        None => Vec::new(),
    };
    let req = ExecRequest {
        argv,
        env,
        stdin,
        workdir: None,
        files,
    };
    req.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(req)
}

#[async_trait]
impl Tool for SandboxExec {
    /// The hosts of the sandbox's `allow:` list and of its credentials: every call may
    /// reach them (the network comes from the policy Baton was started with, not the call).
    fn network(&self) -> Vec<String> {
        baton_sandbox::proxy::policy_hosts(self.sandbox.policy())
    }

    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: NAME.into(),
            description: "Runs a command in an isolated sandbox (no network unless the policy allows it, limited CPU, memory, processes, disk and time), in /work: the run's workspace (the files the workspace tools write; what the command changes there is committed). Extra files can be given in `files`. Returns exit_code, stdout, stderr (capped), stop_reason (exited, time_limit, memory_limit, pids_limit, disk_full, signal) and usage. Code with high-severity security findings is refused.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"description": "argv list, or a shell command string", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "files": {"type": "object", "additionalProperties": {"type": "string"}, "description": "relative path -> contents, written into the workspace (/work) first"},
                    "workspace": {"type": "boolean", "description": "run in the run's workspace (the default where the run has one): /work holds its files, and what the command changes there is committed; false: an empty /work thrown away afterwards"},
                    "stdin": {"type": "string"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
            // The key reaches the command as BATON_IDEMPOTENCY_KEY. In a workspace, a call
            // sent again with its key starts from the files as they were before its first
            // try (`Workspace::undo_key`), so its change to them is made once.
            effects: crate::Effects::IdempotentWithKey,
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let mut req = request_from_args(&args)?;
        crate::pass_key(&mut req.env, ctx);
        let in_workspace = match args.get("workspace") {
            None | Some(Value::Null) => true,
            Some(Value::Bool(b)) => *b,
            Some(other) => {
                return Err(invalid(format!(
                    "workspace must be true or false, not {other}"
                )));
            }
        };
        let bound = match &self.workspaces {
            Some(all) if in_workspace && !ctx.run_id.is_empty() => Some(all.clone()),
            _ => None,
        };
        let Some(all) = bound else {
            return self.run(req, ctx).await;
        };
        // The run's other writers wait while the command works on the files.
        let _held = all.lock(&ctx.run_id).await;
        let ws = all.open(&ctx.run_id).map_err(ws_failed)?;
        let author = Author {
            run: ctx.run_id.clone(),
            step: ctx.step.clone(),
            agent: ctx.agent.clone(),
            key: ctx.idempotency_key.clone(),
        };
        ws.snapshot(
            &author.before_call(),
            "changes made outside the workspace tools",
        )
        .map_err(ws_failed)?;
        let again = ws.undo_key(&author.key).map_err(ws_failed)?;
        // The scan sees the workspace's files too, overlaid with the call's.
        let mut seen = workspace_texts(&ws);
        seen.extend(req.files.clone());
        req.workdir = Some(ws.files().path().to_path_buf());
        // Sandboxed code never runs as host root: when Baton does, the files are handed to the
        // sandbox's unprivileged user first (the tools, as root, still read and write them).
        let policy = self.sandbox.policy();
        hand_over(ws.files().path(), policy.host_uid_base + policy.uid).map_err(|e| {
            Error::Failed(format!(
                "the run's workspace cannot be given to the sandbox: {e}"
            ))
        })?;
        let ran = self.run_scanned(req, &seen, ctx).await;
        let summary = format!("ran {}", shown_command(&args));
        let committed = ws.commit_command(&author, &summary).map_err(ws_failed)?;
        let mut v = ran?;
        if let Value::Object(m) = &mut v {
            let changed: Vec<Value> = committed
                .changed
                .iter()
                .map(|(p, what)| json!({"path": p, "change": what}))
                .collect();
            let mut w = json!({"commit": committed.commit, "changed": changed});
            if !committed.dropped.is_empty() {
                w["dropped"] = json!(committed.dropped);
            }
            if again {
                w["sent_again"] = json!(true);
            }
            m.insert("workspace".into(), w);
        }
        Ok(v)
    }
}

/// Makes `uid` the owner of `dir` and everything under it (never following a symlink) when
/// this process runs as root; otherwise the files are already the caller's.
fn hand_over(dir: &std::path::Path, uid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::MetadataExt;
    if std::fs::metadata("/proc/self")?.uid() != 0 {
        return Ok(());
    }
    let mut todo = vec![dir.to_path_buf()];
    while let Some(p) = todo.pop() {
        let md = std::fs::symlink_metadata(&p)?;
        if md.uid() != uid {
            std::os::unix::fs::lchown(&p, Some(uid), Some(uid))?;
        }
        if md.is_dir() {
            for e in std::fs::read_dir(&p)? {
                todo.push(e?.path());
            }
        }
    }
    Ok(())
}

/// A workspace failure as this tool's error.
fn ws_failed(e: crate::workspace::history::Error) -> Error {
    Error::Failed(format!("the run's workspace: {e}"))
}

/// The workspace's text files (for the scan), as far as its limits go.
fn workspace_texts(ws: &crate::workspace::Workspace) -> BTreeMap<String, String> {
    let mut out = BTreeMap::new();
    let Ok(listing) = ws.files().walk("", ws.limits().max_entries) else {
        return out;
    };
    for e in listing
        .entries
        .iter()
        .filter(|e| e.kind == crate::workspace::fs::Kind::File)
    {
        if let Ok(bytes) = ws.files().read(&e.path, ws.limits().max_file_bytes)
            && let Ok(text) = String::from_utf8(bytes)
        {
            out.insert(e.path.clone(), text);
        }
    }
    out
}

/// The command as a commit's summary shows it (cut at 72 characters).
fn shown_command(args: &Value) -> String {
    let c = match args.get("command") {
        Some(Value::String(s)) => s.clone(),
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .collect::<Vec<_>>()
            .join(" "),
        _ => String::new(),
    };
    let line = c.lines().next().unwrap_or_default();
    if line.chars().count() > 72 || c.lines().count() > 1 {
        format!("{}...", line.chars().take(69).collect::<String>())
    } else {
        line.to_string()
    }
}

impl SandboxExec {
    /// Runs a request with no workspace (what the scan sees: its own files).
    async fn run(&self, req: ExecRequest, ctx: &ToolContext) -> Result<Value, Error> {
        let files = req.files.clone();
        self.run_scanned(req, &files, ctx).await
    }

    /// Scans `files` and the command line, runs the request, and adds the record.
    async fn run_scanned(
        &self,
        req: ExecRequest,
        files: &BTreeMap<String, String>,
        ctx: &ToolContext,
    ) -> Result<Value, Error> {
        let policy = self.sandbox.policy();
        let report = match scan::check(policy, files, &req.argv) {
            Ok(r) => r,
            // Blocked code stays blocked on a retry: not retryable.
            Err(e @ baton_sandbox::Error::Blocked(_)) => return Err(invalid(e.to_string())),
            Err(e) => return Err(Error::Failed(e.to_string())),
        };
        let out = tokio::select! {
            r = self.sandbox.exec(req) => r,
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
        };
        let out = out.map_err(|e| match e {
            e if e.is_retryable() => Error::Transient(e.to_string()),
            baton_sandbox::Error::InvalidRequest(m) => invalid(m),
            // Another attempt fails the same way until Baton's environment changes.
            baton_sandbox::Error::MissingCredential { .. } => Error::Unavailable(e.to_string()),
            e => Error::Failed(e.to_string()),
        })?;
        let mut v = serde_json::to_value(&out).map_err(|e| Error::Failed(e.to_string()))?;
        if let Value::Object(m) = &mut v {
            let mut p = json!({"tier": policy.tier, "limits": policy.limits, "net": policy.net});
            if !policy.credentials.is_empty() {
                // Which variables were used where: names, never values.
                p["credentials"] = json!(policy.credentials);
            }
            m.insert("policy".into(), p);
            m.insert(
                "scan".into(),
                json!({"findings": report.findings, "tools": report.tools}),
            );
        }
        Ok(v)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use baton_sandbox::{ExecOutput, StopReason, Tier};
    use std::sync::Mutex;
    use std::time::Duration;

    /// A sandbox that records requests and answers with a fixed output (the real tiers are
    /// tested in baton-sandbox).
    struct Recorder {
        policy: Policy,
        seen: Mutex<Vec<ExecRequest>>,
    }

    #[async_trait]
    impl Sandbox for Recorder {
        fn tier(&self) -> Tier {
            Tier::Process
        }
        fn policy(&self) -> &Policy {
            &self.policy
        }
        async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, baton_sandbox::Error> {
            self.seen.lock().unwrap().push(req);
            Ok(ExecOutput {
                tier: Tier::Process,
                exit_code: Some(0),
                signal: None,
                stop_reason: StopReason::Exited,
                limits_hit: vec![],
                stdout: "ok\n".into(),
                stdout_truncated: false,
                stderr: String::new(),
                stderr_truncated: false,
                wall_time: Duration::from_millis(5),
                cpu_time: None,
                peak_memory_bytes: None,
                network: vec![],
                enforced: vec![],
            })
        }
    }

    fn tool() -> (Arc<Recorder>, SandboxExec) {
        let r = Arc::new(Recorder {
            policy: Policy::new(Tier::Process),
            seen: Mutex::new(vec![]),
        });
        (r.clone(), SandboxExec::new(r))
    }

    #[tokio::test]
    async fn runs_files_and_records_policy_and_scan() {
        let (rec, t) = tool();
        let v = t
            .call(json!({"command": ["python3", "main.py"], "files": {"main.py": "print(1)"}, "env": {"A": "b"}}), &ToolContext::default())
            .await
            .unwrap();
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["stdout"], "ok\n");
        assert_eq!(v["policy"]["tier"], "process");
        assert!(v["scan"]["findings"].as_array().unwrap().is_empty());
        let seen = rec.seen.lock().unwrap();
        assert_eq!(seen[0].argv, ["python3", "main.py"]);
        assert_eq!(seen[0].files["main.py"], "print(1)");
    }

    #[tokio::test]
    async fn the_call_key_reaches_the_command() {
        let (rec, t) = tool();
        let ctx = ToolContext {
            idempotency_key: "run:step:1/2".into(),
            ..ToolContext::default()
        };
        t.call(json!({"command": "true"}), &ctx).await.unwrap();
        // Arguments that set the variable themselves keep their value.
        t.call(
            json!({"command": "true", "env": {"BATON_IDEMPOTENCY_KEY": "mine"}}),
            &ctx,
        )
        .await
        .unwrap();
        let seen = rec.seen.lock().unwrap();
        assert_eq!(seen[0].env[crate::KEY_ENV], "run:step:1/2");
        assert_eq!(seen[1].env[crate::KEY_ENV], "mine");
        assert_eq!(t.spec().effects, crate::Effects::IdempotentWithKey);
    }

    #[tokio::test]
    async fn blocked_code_never_runs() {
        let (rec, t) = tool();
        let err = t.call(json!({"command": "python3 a.py", "files": {"a.py": "import os\nos.system(input())"}}), &ToolContext::default()).await.unwrap_err();
        assert!(err.to_string().contains("PY002"), "{err}");
        assert!(!err.is_retryable());
        assert!(rec.seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn bad_arguments_are_explained() {
        let (_, t) = tool();
        for (args, needle) in [
            (json!({}), "missing 'command'"),
            (json!({"command": []}), "non-empty"),
            (
                json!({"command": "ls", "files": {"../x": "y"}}),
                "without '..'",
            ),
            (json!({"command": "ls", "extra": 1}), "unknown argument"),
            (json!("ls"), "must be an object"),
        ] {
            let e = t.call(args, &ToolContext::default()).await.unwrap_err();
            assert!(e.to_string().contains(needle), "{e}");
        }
    }

    /// A sandbox whose "command" appends a line to `log.txt` in its workdir, makes a symbolic
    /// link, and writes `big.bin` of the size in its `BIG` variable.
    struct Appender {
        policy: Policy,
        seen: Mutex<Vec<ExecRequest>>,
    }

    #[async_trait]
    impl Sandbox for Appender {
        fn tier(&self) -> Tier {
            Tier::Process
        }
        fn policy(&self) -> &Policy {
            &self.policy
        }
        async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, baton_sandbox::Error> {
            if let Some(dir) = &req.workdir {
                let log = dir.join("log.txt");
                let mut text = std::fs::read_to_string(&log).unwrap_or_default();
                text.push_str("ran\n");
                std::fs::write(&log, text).unwrap();
                std::fs::create_dir_all(dir.join("__pycache__")).unwrap();
                std::fs::write(dir.join("__pycache__/a.pyc"), "cache").unwrap();
                let link = dir.join("escape");
                if !link.exists() {
                    std::os::unix::fs::symlink("/etc/passwd", link).unwrap();
                }
                if let Some(n) = req.env.get("BIG") {
                    let n: usize = n.parse().unwrap();
                    std::fs::write(dir.join("big.bin"), vec![b'x'; n]).unwrap();
                }
            }
            self.seen.lock().unwrap().push(req);
            Recorder {
                policy: self.policy.clone(),
                seen: Mutex::new(vec![]),
            }
            .exec(ExecRequest::new(["true"]))
            .await
        }
    }

    fn in_workspace() -> (
        tempfile::TempDir,
        Arc<Workspaces>,
        Arc<Appender>,
        SandboxExec,
    ) {
        let dir = tempfile::tempdir().unwrap();
        let all = Workspaces::new(dir.path(), crate::workspace::Limits::default());
        let sb = Arc::new(Appender {
            policy: Policy::new(Tier::Process),
            seen: Mutex::new(vec![]),
        });
        let t = SandboxExec::new(sb.clone()).with_workspaces(all.clone());
        (dir, all, sb, t)
    }

    fn ctx(key: &str) -> ToolContext {
        ToolContext {
            run_id: "run1".into(),
            step: "test".into(),
            agent: Some("tester".into()),
            idempotency_key: key.into(),
            ..ToolContext::default()
        }
    }

    #[tokio::test]
    async fn commands_run_in_the_workspace_and_what_they_change_is_committed_once() {
        let (_d, all, sb, t) = in_workspace();
        let ws = all.open("run1").unwrap();
        ws.write("app.py", b"print(1)\n").unwrap();
        let v = t
            .call(json!({"command": "python3 app.py"}), &ctx("k1"))
            .await
            .unwrap();
        // The workdir is the workspace's files; the command saw app.py there.
        let seen = sb.seen.lock().unwrap().pop().unwrap();
        assert_eq!(seen.workdir.as_deref(), Some(ws.files().path()));
        assert_eq!(
            v["workspace"]["changed"],
            json!([{"path": "log.txt", "change": "added"}]),
            "{v}"
        );
        // The link is removed, the cache is not committed.
        assert_eq!(v["workspace"]["dropped"], json!(["escape"]));
        assert!(!ws.files().path().join("escape").exists());
        let log = ws.log().unwrap();
        // app.py (written outside the tools) first, then the command's commit.
        assert_eq!(log.len(), 2);
        assert_eq!(log[1].summary, "test (tester): ran python3 app.py");
        assert_eq!(log[1].step.as_deref(), Some("test"));
        assert!(!ws.diff(Some("test")).unwrap().contains("pyc"));
        // Sent again with its key: the files go back first, so the line is added once.
        let again = t
            .call(json!({"command": "python3 app.py"}), &ctx("k1"))
            .await
            .unwrap();
        assert_eq!(again["workspace"]["sent_again"], true);
        assert_eq!(again["workspace"]["commit"], v["workspace"]["commit"]);
        assert_eq!(
            std::fs::read_to_string(ws.files().path().join("log.txt")).unwrap(),
            "ran\n"
        );
        // Another call adds its own line, in its own commit.
        t.call(json!({"command": "python3 app.py"}), &ctx("k2"))
            .await
            .unwrap();
        assert_eq!(
            std::fs::read_to_string(ws.files().path().join("log.txt")).unwrap(),
            "ran\nran\n"
        );
        assert_eq!(ws.log().unwrap().len(), 3);
    }

    #[tokio::test]
    async fn a_file_over_the_limit_puts_the_files_back_and_says_which() {
        let (_d, all, _sb, t) = in_workspace();
        let err = t
            .call(
                json!({"command": "make", "env": {"BIG": "2000000"}}),
                &ctx("k1"),
            )
            .await
            .unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("`big.bin` of 2000000 bytes"), "{msg}");
        assert!(msg.contains("back as they were"), "{msg}");
        let ws = all.open("run1").unwrap();
        assert!(!ws.files().path().join("big.bin").exists());
        assert!(!ws.files().path().join("log.txt").exists());
    }

    #[tokio::test]
    async fn the_scan_sees_the_workspace_and_workspace_false_runs_apart() {
        let (_d, all, sb, t) = in_workspace();
        all.open("run1")
            .unwrap()
            .write("a.py", b"import os\nos.system(input())\n")
            .unwrap();
        let err = t
            .call(json!({"command": "python3 a.py"}), &ctx("k1"))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("PY002"), "{err}");
        assert!(sb.seen.lock().unwrap().is_empty());
        // Apart from the workspace: an empty /work, nothing committed.
        let v = t
            .call(json!({"command": "true", "workspace": false}), &ctx("k2"))
            .await
            .unwrap();
        assert!(v.get("workspace").is_none());
        assert!(sb.seen.lock().unwrap()[0].workdir.is_none());
        let e = t
            .call(json!({"command": "true", "workspace": "yes"}), &ctx("k3"))
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains("workspace must be true or false"),
            "{e}"
        );
    }
}
