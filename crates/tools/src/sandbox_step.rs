//! `sandbox.step`: what a workflow's `sandbox:` step runs. Unlike `sandbox.exec` (which agents
//! call under the policy Baton was started with), each call brings its own policy: a policy
//! file and/or overrides of the tier, the limits and the network, written by the workflow's
//! author. Models never get this tool (see [`STEP_TOOL`]): a model must not pick its own
//! isolation.
//!
//! The call scans the code, opens the sandbox the policy names (an unavailable tier is an
//! error carrying the tier's reason, never a fallback), runs the command and returns the
//! execution record. A non-zero exit or a limit stop is an error (retryable, so `retry` and
//! `on_error` apply) carrying the whole record ([`Error::SandboxFailed`]), unless the call says
//! `allow_failure`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use baton_sandbox::{ExecOutput, ExecRequest, Policy, Sandbox, StopReason, Tier, scan};
use serde_json::{Map, Value, json};

use crate::{Error, Tool, ToolContext, ToolSpec};

/// The tool `sandbox:` steps compile to. Reserved: not for agents, not for `tool:` steps.
pub const STEP_TOOL: &str = "sandbox.step";

/// The policy fields a step may override (the rest comes from its policy file).
pub const OVERRIDES: [&str; 8] = [
    "tier", "cpu", "memory", "pids", "disk", "time", "output", "net",
];

/// The step's `credentials:` (a list, not a scalar override): they replace the policy file's.
pub const CREDENTIALS: &str = "credentials";

/// Opens the sandbox a policy names (the host's backends, or a test double).
pub type Opener = dyn Fn(Policy) -> Result<Arc<dyn Sandbox>, baton_sandbox::Error> + Send + Sync;

/// The `sandbox.step` tool.
pub struct SandboxStep {
    open: Arc<Opener>,
}

impl SandboxStep {
    /// Over this host's sandbox tiers ([`baton_sandbox::open`]).
    pub fn host() -> SandboxStep {
        SandboxStep {
            open: Arc::new(baton_sandbox::open),
        }
    }

    pub fn with_opener(open: Arc<Opener>) -> SandboxStep {
        SandboxStep { open }
    }
}

fn invalid(message: impl Into<String>) -> Error {
    Error::InvalidArguments {
        tool: STEP_TOOL.into(),
        message: message.into(),
    }
}

/// Checks one overridable policy field (`memory: 256M`, `net: allow:a.example`...) the way
/// the step will apply it, limits' minimums included. The error names the problem.
pub fn check_policy_field(key: &str, value: &str) -> Result<(), String> {
    if !OVERRIDES.contains(&key) {
        return Err(format!("`{key}` is not a sandbox policy field"));
    }
    let mut p = Policy::new(Tier::Process);
    p.set(key, &Value::String(value.to_string()))
        .and_then(|()| p.validate())
        .map_err(|e| policy_message(&e))
}

/// Reads a policy file as the step will (the error names the file and the field).
pub fn check_policy_file(path: &Path) -> Result<(), String> {
    Policy::from_file(path)
        .map(|_| ())
        .map_err(|e| policy_message(&e))
}

fn policy_message(e: &baton_sandbox::Error) -> String {
    match e {
        baton_sandbox::Error::InvalidPolicy(m) => m.clone(),
        other => other.to_string(),
    }
}

/// What of a policy file's network the workflow's `policy.rules` cannot see (they read the
/// step, not the file): `net`, when it is `allow:`, and `credentials`, when it has any.
pub fn hidden_network(path: &Path) -> Result<Vec<&'static str>, String> {
    let p = Policy::from_file(path).map_err(|e| policy_message(&e))?;
    let mut out = Vec::new();
    if matches!(p.net, baton_sandbox::NetMode::Allow(_)) {
        out.push("net");
    }
    if !p.credentials.is_empty() {
        out.push(CREDENTIALS);
    }
    Ok(out)
}

/// Checks one `credentials:` entry on its own (its fields; not yet the allow-list).
pub fn check_credential(entry: &Value) -> Result<(), String> {
    baton_sandbox::Credential::from_value("credential", entry)
        .map(|_| ())
        .map_err(|e| {
            let m = policy_message(&e);
            m.strip_prefix("credential: ")
                .map_or(m.clone(), str::to_string)
        })
}

/// Checks a step's `credentials:` list against the network the step will have: its `net`
/// (`None` when it is a template, checked when the step runs), else its policy file's.
/// The error names the entry (`credentials[1]: ...`).
pub fn check_credentials(
    credentials: &Value,
    net: Option<&str>,
    file: Option<&Path>,
) -> Result<(), String> {
    let mut p = match file {
        Some(f) => Policy::from_file(f).map_err(|e| policy_message(&e))?,
        None => Policy::new(Tier::Process),
    };
    if let Some(n) = net {
        p.set("net", &Value::String(n.to_string()))
            .map_err(|e| policy_message(&e))?;
    }
    p.set(CREDENTIALS, credentials)
        .map_err(|e| policy_message(&e))?;
    p.validate().map_err(|e| policy_message(&e))
}

/// The policy of one call: the file (or the `process` tier's defaults), then the overrides.
pub fn step_policy(file: Option<&Path>, overrides: &Map<String, Value>) -> Result<Policy, String> {
    let mut p = match file {
        Some(f) => Policy::from_file(f).map_err(|e| policy_message(&e))?,
        None => Policy::new(Tier::Process),
    };
    for (k, v) in overrides {
        if k == CREDENTIALS {
            p.set(k, v).map_err(|e| policy_message(&e))?;
            continue;
        }
        if !OVERRIDES.contains(&k.as_str()) {
            return Err(format!(
                "unknown policy override '{k}' (expected {}, {CREDENTIALS})",
                OVERRIDES.join(", ")
            ));
        }
        let text = match v {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("{k} must be a string or a number, not {other}")),
        };
        p.set(k, &Value::String(text))
            .map_err(|e| format!("{k}: {}", policy_message(&e)))?;
    }
    p.validate().map_err(|e| policy_message(&e))?;
    Ok(p)
}

/// Text for a templated value: strings as they are, anything else as JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => serde_json::to_string_pretty(other).unwrap_or_default(),
    }
}

fn text_map(obj: &Map<String, Value>, key: &str) -> Result<BTreeMap<String, String>, Error> {
    match obj.get(key) {
        None | Some(Value::Null) => Ok(BTreeMap::new()),
        Some(Value::Object(m)) => Ok(m.iter().map(|(k, v)| (k.clone(), text_of(v))).collect()),
        Some(other) => Err(invalid(format!(
            "{key} must map names to strings, not {other}"
        ))),
    }
}

/// One call, read from its arguments.
struct Call {
    req: ExecRequest,
    policy: Policy,
    policy_file: Option<PathBuf>,
    allow_failure: bool,
}

fn read_call(args: &Value) -> Result<Call, Error> {
    let obj = args
        .as_object()
        .ok_or_else(|| invalid("arguments must be an object"))?;
    for k in obj.keys() {
        if !matches!(
            k.as_str(),
            "command"
                | "files"
                | "stdin"
                | "env"
                | "workdir"
                | "policy_file"
                | "policy"
                | "allow_failure"
        ) {
            return Err(invalid(format!(
                "unknown argument '{k}' (expected command, files, stdin, env, workdir, policy_file, policy, allow_failure)"
            )));
        }
    }
    let argv: Vec<String> = match obj.get("command") {
        Some(Value::String(s)) if !s.trim().is_empty() => {
            vec!["/bin/sh".into(), "-c".into(), s.clone()]
        }
        Some(Value::Array(a)) if !a.is_empty() => a
            .iter()
            .map(|x| match x {
                Value::String(s) => Ok(s.clone()),
                Value::Number(n) => Ok(n.to_string()),
                Value::Bool(b) => Ok(b.to_string()),
                other => Err(invalid(format!(
                    "command: each argument must be a string, not {other}"
                ))),
            })
            .collect::<Result<_, _>>()?,
        Some(Value::String(_)) => return Err(invalid("command is an empty string")),
        Some(Value::Array(_)) => return Err(invalid("command is an empty list")),
        Some(other) => {
            return Err(invalid(format!(
                "command must be a string or a list of strings, not {other}"
            )));
        }
        None => return Err(invalid("missing 'command'")),
    };
    let files = text_map(obj, "files")?;
    let env = text_map(obj, "env")?;
    let stdin = match obj.get("stdin") {
        None | Some(Value::Null) => Vec::new(),
        Some(v) => text_of(v).into_bytes(),
    };
    let workdir = match obj.get("workdir") {
        None | Some(Value::Null) => None,
        Some(Value::String(d)) => {
            Some(std::fs::canonicalize(d).map_err(|e| invalid(format!("workdir {d}: {e}")))?)
        }
        Some(other) => return Err(invalid(format!("workdir must be a path, not {other}"))),
    };
    let policy_file = match obj.get("policy_file") {
        None | Some(Value::Null) => None,
        Some(Value::String(f)) => Some(PathBuf::from(f)),
        Some(other) => {
            return Err(invalid(format!("policy_file must be a path, not {other}")));
        }
    };
    let overrides = match obj.get("policy") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(m)) => m.clone(),
        Some(other) => {
            return Err(invalid(format!(
                "policy must map fields to values, not {other}"
            )));
        }
    };
    let allow_failure = match obj.get("allow_failure") {
        None | Some(Value::Null) => false,
        Some(Value::Bool(b)) => *b,
        Some(other) => {
            return Err(invalid(format!(
                "allow_failure must be true or false, not {other}"
            )));
        }
    };
    let policy = step_policy(policy_file.as_deref(), &overrides)
        .map_err(|m| invalid(format!("sandbox policy: {m}")))?;
    let req = ExecRequest {
        argv,
        env,
        stdin,
        workdir,
        files,
    };
    req.validate().map_err(|e| invalid(e.to_string()))?;
    Ok(Call {
        req,
        policy,
        policy_file,
        allow_failure,
    })
}

fn size(bytes: u64) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{}M", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{}k", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}

/// One line saying why a run counts as failed, or `None` when it succeeded.
pub fn failure(out: &ExecOutput, policy: &Policy) -> Option<String> {
    let l = &policy.limits;
    let why = match out.stop_reason {
        StopReason::Exited if out.exit_code == Some(0) => return None,
        StopReason::Exited => match out.exit_code {
            Some(c) => format!("exited with code {c}"),
            None => "ended without an exit code".into(),
        },
        StopReason::TimeLimit => format!(
            "was stopped by the time limit ({})",
            humantime::format_duration(l.time)
        ),
        StopReason::MemoryLimit => {
            format!("was stopped by the memory limit ({})", size(l.memory_bytes))
        }
        StopReason::PidsLimit => format!("hit the process limit ({} pids)", l.pids),
        StopReason::DiskFull => format!(
            "filled its disk (the workspace or /tmp, {} each)",
            size(l.disk_bytes)
        ),
        StopReason::Signal => format!("was killed by signal {}", out.signal.unwrap_or_default()),
    };
    let mut line = format!(
        "the sandboxed command {why} (tier {}, {} ms)",
        out.tier,
        out.wall_time.as_millis()
    );
    let tail: String = {
        let t = out.stderr.trim_end();
        let skip = t.chars().count().saturating_sub(400);
        t.chars().skip(skip).collect()
    };
    if !tail.is_empty() {
        line.push_str(&format!("; stderr: {tail}"));
    }
    Some(line)
}

/// What ran, for the record: the argv, the workspace files' names and sizes, the names of
/// the environment variables (their values may be secrets), the workdir and stdin's size.
fn request_summary(req: &ExecRequest) -> Value {
    let files: Map<String, Value> = req
        .files
        .iter()
        .map(|(k, v)| (k.clone(), json!(v.len())))
        .collect();
    json!({
        "argv": req.argv,
        "files": files,
        "env": req.env.keys().collect::<Vec<_>>(),
        "workdir": req.workdir.as_ref().map(|w| w.display().to_string()),
        "stdin_bytes": req.stdin.len(),
    })
}

/// The record of one execution, as the step's output and the run log keep it: the result,
/// what ran, the policy it ran under and the scan's findings.
fn record(
    out: &ExecOutput,
    request: Value,
    policy: &Policy,
    policy_file: Option<&Path>,
    report: &scan::Report,
) -> Result<Value, Error> {
    let mut v = serde_json::to_value(out).map_err(|e| Error::Failed(e.to_string()))?;
    if let Value::Object(m) = &mut v {
        m.insert("request".into(), request);
        let mut p = json!({"tier": policy.tier, "limits": policy.limits, "net": policy.net});
        if let (false, Value::Object(pm)) = (policy.credentials.is_empty(), &mut p) {
            // Which variables were used where: names, never values.
            pm.insert("credentials".into(), json!(policy.credentials));
        }
        if let (Some(f), Value::Object(pm)) = (policy_file, &mut p) {
            pm.insert("file".into(), json!(f.display().to_string()));
        }
        m.insert("policy".into(), p);
        m.insert(
            "scan".into(),
            json!({"findings": report.findings, "tools": report.tools}),
        );
    }
    Ok(v)
}

#[async_trait]
impl Tool for SandboxStep {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: STEP_TOOL.into(),
            description: "Runs a workflow's `sandbox:` step: a command in a sandbox under the step's own policy. Not offered to models.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "command": {"oneOf": [{"type": "string"}, {"type": "array", "items": {"type": "string"}, "minItems": 1}]},
                    "files": {"type": "object"},
                    "stdin": {"type": "string"},
                    "env": {"type": "object"},
                    "workdir": {"type": "string"},
                    "policy_file": {"type": "string"},
                    "policy": {"type": "object"},
                    "allow_failure": {"type": "boolean"}
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
        let mut call = read_call(&args)?;
        // Every credential's variable must be set before anything starts: never a call
        // without the credential the step asked for. The value is dropped here; the proxy
        // reads it again when it starts.
        for c in &call.policy.credentials {
            if let Err(e) = c.resolve() {
                // The engine's error names the step.
                return Err(Error::Unavailable(e.to_string()));
            }
        }
        crate::pass_key(&mut call.req.env, ctx);
        let report = match scan::check(&call.policy, &call.req.files, &call.req.argv) {
            Ok(r) => r,
            // Blocked code stays blocked on a retry: not retryable.
            Err(e @ baton_sandbox::Error::Blocked(_)) => return Err(invalid(e.to_string())),
            Err(e) => return Err(Error::Failed(e.to_string())),
        };
        let sandbox = (self.open)(call.policy.clone()).map_err(|e| match e {
            baton_sandbox::Error::InvalidPolicy(m) => invalid(format!("sandbox policy: {m}")),
            e if e.is_retryable() => Error::Transient(e.to_string()),
            e => Error::Unavailable(e.to_string()),
        })?;
        let request = request_summary(&call.req);
        let out = tokio::select! {
            r = sandbox.exec(call.req) => r,
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
        };
        let out = out.map_err(|e| match e {
            e if e.is_retryable() => Error::Transient(e.to_string()),
            baton_sandbox::Error::InvalidRequest(m) => invalid(m),
            baton_sandbox::Error::MissingCredential { .. } => Error::Unavailable(e.to_string()),
            baton_sandbox::Error::TierUnavailable { .. } => Error::Unavailable(e.to_string()),
            e => Error::Failed(e.to_string()),
        })?;
        let v = record(
            &out,
            request,
            &call.policy,
            call.policy_file.as_deref(),
            &report,
        )?;
        match failure(&out, &call.policy) {
            Some(line) if !call.allow_failure => Err(Error::SandboxFailed {
                message: line,
                record: Box::new(v),
            }),
            _ => Ok(v),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use std::sync::Mutex;
    use std::time::Duration;

    /// Answers with a fixed outcome and records what it was asked (the real tiers are tested
    /// in baton-sandbox and end to end).
    struct Fake {
        policy: Policy,
        exit: Option<i32>,
        stop: StopReason,
        seen: Arc<Mutex<Vec<(Policy, ExecRequest)>>>,
    }

    #[async_trait]
    impl Sandbox for Fake {
        fn tier(&self) -> Tier {
            self.policy.tier
        }
        fn policy(&self) -> &Policy {
            &self.policy
        }
        async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, baton_sandbox::Error> {
            self.seen.lock().unwrap().push((self.policy.clone(), req));
            Ok(ExecOutput {
                tier: self.policy.tier,
                exit_code: self.exit,
                signal: None,
                stop_reason: self.stop,
                limits_hit: vec![],
                stdout: "out\n".into(),
                stdout_truncated: false,
                stderr: "boom\n".into(),
                stderr_truncated: false,
                wall_time: Duration::from_millis(7),
                cpu_time: Some(Duration::from_millis(3)),
                peak_memory_bytes: Some(1 << 20),
                network: vec![],
                enforced: vec!["seccomp".into()],
            })
        }
    }

    type Seen = Arc<Mutex<Vec<(Policy, ExecRequest)>>>;

    fn tool(exit: Option<i32>, stop: StopReason) -> (Seen, SandboxStep) {
        let seen: Seen = Arc::new(Mutex::new(vec![]));
        let s2 = seen.clone();
        let open = move |policy: Policy| -> Result<Arc<dyn Sandbox>, baton_sandbox::Error> {
            if policy.tier == Tier::Microvm {
                return Err(baton_sandbox::Error::TierUnavailable {
                    tier: Tier::Microvm,
                    reason: "no KVM here".into(),
                });
            }
            Ok(Arc::new(Fake {
                policy,
                exit,
                stop,
                seen: s2.clone(),
            }))
        };
        (seen, SandboxStep::with_opener(Arc::new(open)))
    }

    #[tokio::test]
    async fn applies_the_call_policy_and_records_it() {
        let (seen, t) = tool(Some(0), StopReason::Exited);
        let v = t
            .call(
                json!({"command": ["python3", "main.py"], "files": {"main.py": "print(1)", "data.json": {"a": 1}},
                       "env": {"N": 3}, "stdin": "in",
                       "policy": {"tier": "gvisor", "memory": "64M", "time": "3s", "cpu": 0.5, "net": "allow:example.org"}}),
                &ToolContext::default(),
            )
            .await
            .unwrap();
        assert_eq!(v["exit_code"], 0);
        assert_eq!(v["tier"], "gvisor");
        assert_eq!(v["policy"]["tier"], "gvisor");
        assert_eq!(v["policy"]["limits"]["memory_bytes"], 64 << 20);
        assert_eq!(v["policy"]["limits"]["time"], "3s");
        assert_eq!(v["policy"]["net"]["hosts"][0], "example.org");
        assert!(v["scan"]["findings"].as_array().unwrap().is_empty());
        assert_eq!(v["peak_memory_bytes"], 1 << 20);
        assert_eq!(v["request"]["argv"], json!(["python3", "main.py"]));
        assert_eq!(v["request"]["files"]["main.py"], 8);
        assert_eq!(v["request"]["env"], json!(["N"]));
        assert_eq!(v["request"]["stdin_bytes"], 2);
        let seen = seen.lock().unwrap();
        let (p, req) = &seen[0];
        assert_eq!(p.limits.cpus, 0.5);
        assert_eq!(req.argv, ["python3", "main.py"]);
        assert!(req.files["data.json"].contains("\"a\": 1"));
        assert_eq!(req.env["N"], "3");
        assert_eq!(req.stdin, b"in");
    }

    #[tokio::test]
    async fn a_failed_command_fails_the_call_with_its_record() {
        let (_, t) = tool(Some(3), StopReason::Exited);
        let e = t
            .call(json!({"command": "exit 3"}), &ToolContext::default())
            .await
            .unwrap_err();
        assert!(e.is_retryable());
        let m = e.to_string();
        assert!(
            m.starts_with(
                "the sandboxed command exited with code 3 (tier process, 7 ms); stderr: boom"
            ),
            "{m}"
        );
        let Error::SandboxFailed { record: rec, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(rec["exit_code"], 3);
        assert_eq!(rec["stdout"], "out\n");
        assert_eq!(rec["policy"]["tier"], "process");

        let (_, t) = tool(None, StopReason::TimeLimit);
        let e = t
            .call(
                json!({"command": "sleep 9", "policy": {"time": "2s"}}),
                &ToolContext::default(),
            )
            .await
            .unwrap_err();
        let m = e.to_string();
        assert!(
            m.starts_with("the sandboxed command was stopped by the time limit (2s)"),
            "{m}"
        );
        let Error::SandboxFailed { record, .. } = e else {
            panic!("{e:?}")
        };
        assert_eq!(record["stop_reason"], "time_limit");
    }

    #[tokio::test]
    async fn allow_failure_returns_the_record() {
        let (_, t) = tool(Some(1), StopReason::Exited);
        let v = t
            .call(
                json!({"command": "false", "allow_failure": true}),
                &ToolContext::default(),
            )
            .await
            .unwrap();
        assert_eq!(v["exit_code"], 1);
    }

    #[tokio::test]
    async fn an_unavailable_tier_fails_for_good_with_its_reason() {
        let (seen, t) = tool(Some(0), StopReason::Exited);
        let e = t
            .call(
                json!({"command": "true", "policy": {"tier": "microvm"}}),
                &ToolContext::default(),
            )
            .await
            .unwrap_err();
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "sandbox tier 'microvm' is not available here: no KVM here"
        );
        assert!(seen.lock().unwrap().is_empty());
    }

    #[tokio::test]
    async fn blocked_code_and_bad_arguments_are_refused() {
        let (seen, t) = tool(Some(0), StopReason::Exited);
        for (args, needle) in [
            (
                json!({"command": "python3 a.py", "files": {"a.py": "import os\nos.system(input())"}}),
                "PY002",
            ),
            (json!({"command": ""}), "empty string"),
            (json!({"command": []}), "empty list"),
            (
                json!({"command": "ls", "policy": {"memory": "lots"}}),
                "sandbox policy: memory:",
            ),
            (
                json!({"command": "ls", "policy": {"tier": "vm"}}),
                "unknown tier 'vm'",
            ),
            (
                json!({"command": "ls", "policy": {"net": "everything"}}),
                "unknown network mode",
            ),
            (
                json!({"command": "ls", "policy": {"landlock": false}}),
                "unknown policy override",
            ),
            (
                json!({"command": "ls", "files": {"../x": ""}}),
                "without '..'",
            ),
            (
                json!({"command": "ls", "bogus": 1}),
                "unknown argument 'bogus'",
            ),
            (
                json!({"command": "ls", "policy_file": "/nonexistent/p.yaml"}),
                "cannot read policy file",
            ),
        ] {
            let e = t.call(args, &ToolContext::default()).await.unwrap_err();
            assert!(!e.is_retryable(), "{e}");
            assert!(e.to_string().contains(needle), "{e} (wanted {needle})");
        }
        assert!(seen.lock().unwrap().is_empty());
    }

    #[test]
    fn fields_are_checked_as_they_will_apply() {
        assert!(check_policy_field("memory", "256M").is_ok());
        assert!(
            check_policy_field("memory", "1M")
                .unwrap_err()
                .contains("at least 8M")
        );
        assert!(
            check_policy_field("time", "soon")
                .unwrap_err()
                .contains("bad duration")
        );
        assert!(check_policy_field("tier", "microvm").is_ok());
        assert!(check_policy_field("net", "allow:").is_err());
        assert!(check_policy_field("landlock", "false").is_err());
    }
}
