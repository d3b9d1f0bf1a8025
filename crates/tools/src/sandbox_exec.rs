//! `sandbox.exec`: runs a command (and the files it needs) in a Baton sandbox, after the
//! security scan; returns exit code, output, usage, why it stopped, and the record an audit
//! needs (tier, limits, what was enforced, scan findings).

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use baton_sandbox::{ExecRequest, Policy, Sandbox, scan};
use serde_json::{Value, json};

use crate::{Error, Tool, ToolContext, ToolSpec};

const NAME: &str = "sandbox.exec";

/// The `sandbox.exec` tool over any [`Sandbox`].
pub struct SandboxExec {
    sandbox: Arc<dyn Sandbox>,
}

impl SandboxExec {
    pub fn new(sandbox: Arc<dyn Sandbox>) -> SandboxExec {
        SandboxExec { sandbox }
    }

    /// Opens the sandbox `policy` names; fails (never falls back) when this host cannot.
    pub fn from_policy(policy: Policy) -> Result<SandboxExec, baton_sandbox::Error> {
        Ok(SandboxExec {
            sandbox: baton_sandbox::open(policy)?,
        })
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
        if !matches!(k.as_str(), "command" | "files" | "stdin" | "env") {
            return Err(invalid(format!(
                "unknown argument '{k}' (expected command, files, stdin, env)"
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
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: NAME.into(),
            description: "Runs a command in an isolated sandbox (no network unless the policy allows it, limited CPU, memory, processes, disk and time). Put the code in `files` and run it with `command`. Returns exit_code, stdout, stderr (capped), stop_reason (exited, time_limit, memory_limit, pids_limit, disk_full, signal) and usage. Code with high-severity security findings is refused.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"description": "argv list, or a shell command string", "oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "files": {"type": "object", "additionalProperties": {"type": "string"}, "description": "relative path -> contents, written into the workspace (/work) first"},
                    "stdin": {"type": "string"},
                    "env": {"type": "object", "additionalProperties": {"type": "string"}}
                },
                "required": ["command"],
                "additionalProperties": false
            }),
            // The key reaches the command as BATON_IDEMPOTENCY_KEY; what the sandbox itself
            // changes is thrown away with it.
            effects: crate::Effects::IdempotentWithKey,
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let mut req = request_from_args(&args)?;
        crate::pass_key(&mut req.env, ctx);
        let policy = self.sandbox.policy();
        let report = match scan::check(policy, &req.files, &req.argv) {
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
            e => Error::Failed(e.to_string()),
        })?;
        let mut v = serde_json::to_value(&out).map_err(|e| Error::Failed(e.to_string()))?;
        if let Value::Object(m) = &mut v {
            m.insert(
                "policy".into(),
                json!({"tier": policy.tier, "limits": policy.limits, "net": policy.net}),
            );
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
}
