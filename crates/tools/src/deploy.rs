//! `deploy` and `deploy.stop`: the run's workspace deployed as an app, its port published on
//! the host's loopback and its health probe checked (see `baton_sandbox::deploy`).
//!
//! `deploy` copies the workspace's files as of its last commit (so the app cannot change the
//! recorded files), deploys the copy on a target (`local-sandbox`, the default, or `docker`)
//! and answers with `{url, command, target, health: {status, body}, deployment, ...}`. A call
//! sent again with the same idempotency key answers with the deployment its first attempt made
//! while that still runs. Every deployment has a lifetime (`lifetime`, default 10 minutes, at
//! most 1 hour), dies with Baton's process, and `deploy.stop` ends it before.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use baton_sandbox::deploy::{DeploySpec, DeployTarget, Deployment, DockerTarget, LocalSandbox};
use baton_sandbox::{Policy, Tier};
use serde_json::{Map, Value, json};

use crate::workspace::Workspaces;
use crate::{Effects, Error, Tool, ToolContext, ToolSpec};

const NAME: &str = "deploy";
const STOP: &str = "deploy.stop";
/// A deployment's lifetime unless the call says otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(10 * 60);
/// The longest lifetime a call may ask for.
pub const MAX_LIFETIME: Duration = Duration::from_secs(60 * 60);
/// The environment variable naming the docker target's image.
pub const DOCKER_IMAGE_ENV: &str = "BATON_DEPLOY_DOCKER_IMAGE";

/// The deploy targets and what was deployed through them.
pub struct Deployer {
    local: Result<Arc<LocalSandbox>, String>,
    docker: tokio::sync::Mutex<Option<Arc<DockerTarget>>>,
    docker_image: Option<String>,
    workspaces: Arc<Workspaces>,
    /// Idempotency key -> (target, deployment id, its first answer).
    by_key: Mutex<HashMap<String, (String, String, Value)>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Deployer {
    /// The targets of this host: `local-sandbox` over the process tier (its failure is kept
    /// and reported by each call that asks for it), `docker` opened on first use (the daemon of
    /// `DOCKER_HOST`, the image of `BATON_DEPLOY_DOCKER_IMAGE`).
    pub fn host(workspaces: Arc<Workspaces>) -> Arc<Deployer> {
        let local = LocalSandbox::new(Policy::new(Tier::Process))
            .map(Arc::new)
            .map_err(|e| e.to_string());
        let docker_image = std::env::var(DOCKER_IMAGE_ENV)
            .ok()
            .filter(|i| !i.is_empty());
        Arc::new(Deployer {
            local,
            docker: tokio::sync::Mutex::new(None),
            docker_image,
            workspaces,
            by_key: Mutex::default(),
        })
    }

    /// Registers `deploy` and `deploy.stop`.
    pub fn register(self: &Arc<Self>, r: &mut crate::Registry) {
        r.register(Arc::new(DeployTool(self.clone())));
        r.register(Arc::new(StopTool(self.clone())));
    }

    async fn target(&self, name: &str) -> Result<Arc<dyn DeployTarget>, Error> {
        match name {
            "local-sandbox" => match &self.local {
                Ok(t) => Ok(t.clone() as Arc<dyn DeployTarget>),
                Err(e) => Err(Error::Unavailable(format!(
                    "the local-sandbox deploy target is not available here: {e}"
                ))),
            },
            "docker" => {
                let mut held = self.docker.lock().await;
                if let Some(t) = held.as_ref() {
                    return Ok(t.clone() as Arc<dyn DeployTarget>);
                }
                let image = self.docker_image.clone();
                let t = tokio::task::spawn_blocking(move || DockerTarget::new(None, image))
                    .await
                    .map_err(|e| Error::Failed(format!("opening the docker target: {e}")))?
                    .map_err(|e| Error::Unavailable(format!("the docker deploy target: {e}")))?;
                let t = Arc::new(t);
                *held = Some(t.clone());
                Ok(t as Arc<dyn DeployTarget>)
            }
            other => Err(invalid(
                NAME,
                format!("unknown target '{other}' (expected local-sandbox or docker)"),
            )),
        }
    }

    /// The deployments made with `key` that still run, by target.
    async fn existing(&self, key: &str) -> Option<Value> {
        let (target, id, first) = lock(&self.by_key).get(key).cloned()?;
        let t = self.target(&target).await.ok()?;
        match t.status(&id).await {
            Ok(d) if d.running => {
                let mut v = first;
                v["health"] = json!(d.health);
                v["sent_again"] = json!(true);
                Some(v)
            }
            _ => None,
        }
    }
}

fn invalid(tool: &str, message: impl Into<String>) -> Error {
    Error::InvalidArguments {
        tool: tool.into(),
        message: message.into(),
    }
}

/// What a `deploy` call asks for.
#[derive(Debug, PartialEq)]
pub struct Request {
    pub target: String,
    pub build: Option<String>,
    pub start: String,
    pub port: u16,
    pub health: String,
    pub expect_status: u16,
    pub timeout: Duration,
    pub lifetime: Duration,
}

fn string(obj: &Map<String, Value>, k: &str) -> Result<Option<String>, Error> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(other) => Err(invalid(NAME, format!("{k} must be a string, not {other}"))),
    }
}

fn duration(obj: &Map<String, Value>, k: &str) -> Result<Option<Duration>, Error> {
    match obj.get(k) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => match n.as_f64().map(Duration::try_from_secs_f64) {
            Some(Ok(d)) if !d.is_zero() => Ok(Some(d)),
            _ => Err(invalid(
                NAME,
                format!("{k} must be a number of seconds above zero, not {n}"),
            )),
        },
        Some(Value::String(s)) => humantime::parse_duration(s)
            .map(Some)
            .map_err(|e| invalid(NAME, format!("{k} '{s}' is not a duration like 30s: {e}"))),
        Some(other) => Err(invalid(
            NAME,
            format!("{k} must be seconds or a duration like \"30s\", not {other}"),
        )),
    }
}

/// Reads `deploy`'s arguments.
pub fn request_from_args(args: &Value) -> Result<Request, Error> {
    let obj = args
        .as_object()
        .ok_or_else(|| invalid(NAME, "arguments must be an object"))?;
    const KEYS: &[&str] = &[
        "target",
        "build",
        "start",
        "port",
        "health",
        "expect_status",
        "timeout",
        "lifetime",
    ];
    if let Some(k) = obj.keys().find(|k| !KEYS.contains(&k.as_str())) {
        return Err(invalid(
            NAME,
            format!("unknown argument '{k}' (expected {})", KEYS.join(", ")),
        ));
    }
    let start = string(obj, "start")?
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| invalid(NAME, "missing 'start': the command that starts the app"))?;
    let port = match obj.get("port") {
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|p| (1..=65535).contains(p))
            .map(|p| p as u16)
            .ok_or_else(|| invalid(NAME, format!("port must be 1-65535, not {n}")))?,
        Some(other) => return Err(invalid(NAME, format!("port must be a number, not {other}"))),
        None => {
            return Err(invalid(NAME, "missing 'port': the port the app listens on"));
        }
    };
    let expect_status = match obj.get("expect_status") {
        None | Some(Value::Null) => 200,
        Some(Value::Number(n)) => n
            .as_u64()
            .filter(|s| (100..=599).contains(s))
            .map(|s| s as u16)
            .ok_or_else(|| invalid(NAME, format!("expect_status must be 100-599, not {n}")))?,
        Some(other) => {
            return Err(invalid(
                NAME,
                format!("expect_status must be a number, not {other}"),
            ));
        }
    };
    let lifetime = duration(obj, "lifetime")?.unwrap_or(DEFAULT_LIFETIME);
    if lifetime > MAX_LIFETIME {
        return Err(invalid(
            NAME,
            format!(
                "lifetime {} is above the most a deployment may live ({})",
                humantime::format_duration(lifetime),
                humantime::format_duration(MAX_LIFETIME)
            ),
        ));
    }
    let build = string(obj, "build")?;
    if build.as_deref().is_some_and(|b| b.trim().is_empty()) {
        return Err(invalid(NAME, "build is empty: leave it out instead"));
    }
    Ok(Request {
        target: string(obj, "target")?.unwrap_or_else(|| "local-sandbox".into()),
        build,
        start,
        port,
        health: string(obj, "health")?.unwrap_or_else(|| "/health".into()),
        expect_status,
        timeout: duration(obj, "timeout")?.unwrap_or(Duration::from_secs(30)),
        lifetime,
    })
}

/// A scratch directory for the workspace's files, removed on drop.
struct Scratch(PathBuf);

impl Scratch {
    fn new() -> Scratch {
        static N: AtomicU64 = AtomicU64::new(0);
        Scratch(std::env::temp_dir().join(format!(
            "baton-deploy-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        )))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The `deploy` tool.
pub struct DeployTool(Arc<Deployer>);

#[async_trait]
impl Tool for DeployTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: NAME.into(),
            description: "Deploys the run's workspace (its files as last committed) as an app: runs `build` once (if given), starts the app with `start` (a shell command; PORT is set to `port`) in a sandbox on the host, publishes `port` on 127.0.0.1 and waits until GET `health` answers `expect_status`. Returns url (http://127.0.0.1:PORT on the host), command, target, health {status, body} and the deployment id; on failure the error says why with the app's last output. The app lives `lifetime` (default 10m) unless deploy.stop ends it first.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "target": {"type": "string", "enum": ["local-sandbox", "docker"], "description": "where the app runs (default local-sandbox)"},
                    "build": {"type": "string", "description": "a shell command run once in the app's directory before it starts"},
                    "start": {"type": "string", "description": "the shell command that starts the app (it must keep running)"},
                    "port": {"type": "integer", "minimum": 1, "maximum": 65535, "description": "the TCP port the app listens on"},
                    "health": {"type": "string", "description": "the path probed with GET (default /health)"},
                    "expect_status": {"type": "integer", "minimum": 100, "maximum": 599, "description": "the status the probe must answer (default 200)"},
                    "timeout": {"description": "how long the app has to answer its probe (default 30s)", "oneOf": [{"type": "number"}, {"type": "string"}]},
                    "lifetime": {"description": "how long the app runs before it is stopped (default 10m, at most 1h)", "oneOf": [{"type": "number"}, {"type": "string"}]}
                },
                "required": ["start", "port"],
                "additionalProperties": false
            }),
            // Sent again with its key, the call answers with the deployment its first attempt
            // made (while that runs) instead of starting a second app.
            effects: Effects::IdempotentWithKey,
        }
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let d = &self.0;
        let req = request_from_args(&args)?;
        if !ctx.idempotency_key.is_empty()
            && let Some(v) = d.existing(&ctx.idempotency_key).await
        {
            return Ok(v);
        }
        let target = d.target(&req.target).await?;
        if ctx.run_id.is_empty() {
            return Err(Error::Failed(
                "deploy deploys a run's workspace, and this call belongs to no run".into(),
            ));
        }
        let scratch = Scratch::new();
        let files = {
            let _held = d.workspaces.lock(&ctx.run_id).await;
            let ws = d
                .workspaces
                .existing(&ctx.run_id)
                .map_err(|e| Error::Failed(format!("the run's workspace: {e}")))?
                .ok_or_else(|| {
                    Error::Failed(
                        "the run has no workspace yet: write the app's files with workspace.write first".into(),
                    )
                })?;
            ws.export(&scratch.0)
                .map_err(|e| Error::Failed(format!("copying the run's workspace: {e}")))?
        };
        if files == 0 {
            return Err(Error::Failed(
                "the run's workspace has no committed files to deploy".into(),
            ));
        }
        let mut spec = DeploySpec::new(&scratch.0, &req.start, req.port);
        spec.build = req.build.clone();
        spec.health_path = req.health.clone();
        spec.expected_status = req.expect_status;
        spec.startup_timeout = req.timeout;
        spec.limits.time = req.lifetime;
        let deployed = tokio::select! {
            r = target.deploy(spec) => r,
            _ = ctx.cancel.cancelled() => return Err(Error::Cancelled),
        };
        let dep = deployed.map_err(|e| match e {
            baton_sandbox::Error::InvalidRequest(m) => invalid(NAME, m),
            baton_sandbox::Error::TierUnavailable { .. } => Error::Unavailable(e.to_string()),
            e => Error::Failed(format!("deploy failed: {e}")),
        })?;
        let v = answer(&dep, files);
        if !ctx.idempotency_key.is_empty() {
            lock(&d.by_key).insert(
                ctx.idempotency_key.clone(),
                (req.target, dep.id.clone(), v.clone()),
            );
        }
        Ok(v)
    }
}

fn answer(dep: &Deployment, files: usize) -> Value {
    json!({
        "url": dep.url,
        "command": dep.command,
        "target": dep.target,
        "health": {"status": dep.health.status, "body": dep.health.body},
        "deployment": dep.id,
        "started_at": dep.started_at,
        "expires_at": dep.expires_at,
        "files": files,
    })
}

/// The `deploy.stop` tool.
pub struct StopTool(Arc<Deployer>);

#[async_trait]
impl Tool for StopTool {
    fn spec(&self) -> ToolSpec {
        ToolSpec {
            name: STOP.into(),
            description: "Stops an app `deploy` started (every process of it) and removes what was made for it. Stopping one already stopped is an error naming it.".into(),
            parameters: json!({
                "type": "object",
                "properties": {
                    "deployment": {"type": "string", "description": "the id deploy returned"}
                },
                "required": ["deployment"],
                "additionalProperties": false
            }),
            // Stopping twice stops once; the second call says there is no such deployment.
            effects: Effects::IdempotentWithKey,
        }
    }

    async fn call(&self, args: Value, _ctx: &ToolContext) -> Result<Value, Error> {
        let obj = args
            .as_object()
            .ok_or_else(|| invalid(STOP, "arguments must be an object"))?;
        if let Some(k) = obj.keys().find(|k| k.as_str() != "deployment") {
            return Err(invalid(
                STOP,
                format!("unknown argument '{k}' (expected deployment)"),
            ));
        }
        let id = obj
            .get("deployment")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(STOP, "missing 'deployment': the id deploy returned"))?;
        let target = match id.split_once('-').map(|(p, _)| p) {
            Some("ls") => "local-sandbox",
            Some("dk") => "docker",
            _ => return Err(invalid(STOP, format!("'{id}' is not a deployment id"))),
        };
        let t = self.0.target(target).await?;
        t.stop(id).await.map_err(|e| match e {
            baton_sandbox::Error::InvalidRequest(m) => invalid(STOP, m),
            e => Error::Failed(format!("stopping {id}: {e}")),
        })?;
        lock(&self.0.by_key).retain(|_, (_, d, _)| d != id);
        Ok(json!({"stopped": id}))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn arguments_are_read_with_defaults_and_checked() {
        let r = request_from_args(&json!({"start": "python3 app.py", "port": 8000})).unwrap();
        assert_eq!(
            r,
            Request {
                target: "local-sandbox".into(),
                build: None,
                start: "python3 app.py".into(),
                port: 8000,
                health: "/health".into(),
                expect_status: 200,
                timeout: Duration::from_secs(30),
                lifetime: DEFAULT_LIFETIME,
            }
        );
        let r = request_from_args(
            &json!({"start": "x", "port": 1, "timeout": "5s", "lifetime": 60, "target": "docker"}),
        )
        .unwrap();
        assert_eq!(r.timeout, Duration::from_secs(5));
        assert_eq!(r.lifetime, Duration::from_secs(60));
        for (args, want) in [
            (json!({"port": 1}), "missing 'start'"),
            (json!({"start": "x"}), "missing 'port'"),
            (json!({"start": "x", "port": 0}), "port must be 1-65535"),
            (json!({"start": "x", "port": 70000}), "port must be 1-65535"),
            (json!({"start": "x", "port": "80"}), "port must be a number"),
            (
                json!({"start": "x", "port": 1, "timeout": "soon"}),
                "not a duration",
            ),
            (
                json!({"start": "x", "port": 1, "timeout": -1}),
                "above zero",
            ),
            (
                json!({"start": "x", "port": 1, "lifetime": "2h"}),
                "above the most",
            ),
            (
                json!({"start": "x", "port": 1, "build": " "}),
                "build is empty",
            ),
            (
                json!({"start": "x", "port": 1, "expect_status": 42}),
                "expect_status must be",
            ),
            (
                json!({"start": "x", "port": 1, "dir": "/"}),
                "unknown argument 'dir'",
            ),
            (json!([1]), "must be an object"),
        ] {
            let e = request_from_args(&args).unwrap_err().to_string();
            assert!(e.contains(want), "{args}: {e} should say {want}");
        }
    }
}
