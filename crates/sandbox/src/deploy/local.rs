//! The `local-sandbox` target: the app in a process-tier sandbox on this host.
//!
//! ```text
//! spec.dir ──copy──▶ tmpfs of `disk` bytes (owned by the sandbox's user) ──bound as /work──┐
//!   build:  `sh -c BUILD` in a sandbox (loopback network, the build timeout)              │
//!   app:    `sh -c START` spawned in a sandbox (private netns, loopback up, the limits) ◀─┘
//!   host:   127.0.0.1:<ephemeral> ──forwarder thread in the app's netns──▶ 127.0.0.1:PORT
//! ```
//!
//! The app keeps its cgroup limits (memory, pids, cpu), its time limit is its lifetime, and it
//! dies with Baton's process (its launcher's parent-death signal). When it ends on its own or
//! at its lifetime, the forwarder and the copy are removed at once; `stop` does the same for a
//! running app and forgets it.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::SystemTime;

use async_trait::async_trait;

use super::{
    DeploySpec, DeployTarget, Deployment, Health, Published, new_id, rfc3339, wait_healthy,
};
use crate::linux::{ProcessSandbox, Spawned};
use crate::policy::{NetMode, Policy, Tier};
use crate::workspace::Staged;
use crate::{Error, ExecOutput, ExecRequest, Sandbox, StopReason};

/// The target's name.
pub const NAME: &str = "local-sandbox";

/// One deployment: the app, its forwarder, its copy of the files.
struct Running {
    info: Mutex<Deployment>,
    port: u16,
    health_path: String,
    app: Spawned,
    /// Taken when the app ends (or is stopped): nothing of it is left then.
    published: Mutex<Option<Published>>,
    staged: Mutex<Option<Staged>>,
}

impl Running {
    fn teardown(&self) {
        if let Some(p) = lock(&self.published).take() {
            p.stop();
        }
        drop(lock(&self.staged).take());
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Deploys apps into process-tier sandboxes (see the module docs).
pub struct LocalSandbox {
    policy: Policy,
    running: Arc<Mutex<HashMap<String, Arc<Running>>>>,
}

impl LocalSandbox {
    /// The target over `policy` (tier `process`; its network becomes `loopback`, its limits
    /// each spec's). Fails, with the reason, where this host cannot run the process tier.
    pub fn new(mut policy: Policy) -> Result<LocalSandbox, Error> {
        if policy.tier != Tier::Process {
            return Err(Error::InvalidPolicy(format!(
                "the {NAME} target runs apps in the process tier, not {}",
                policy.tier
            )));
        }
        policy.net = NetMode::Loopback;
        ProcessSandbox::new(policy.clone())?;
        Ok(LocalSandbox {
            policy,
            running: Arc::default(),
        })
    }

    /// Who owns the app's copy: the sandbox's user when Baton runs as root (its workdir must
    /// not be root's), else whoever runs Baton.
    fn owner(&self) -> Option<(u32, u32)> {
        nix::unistd::geteuid().is_root().then(|| {
            let id = self.policy.host_uid_base + self.policy.uid;
            (id, id)
        })
    }

    fn get(&self, id: &str) -> Result<Arc<Running>, Error> {
        lock(&self.running).get(id).cloned().ok_or_else(|| {
            Error::InvalidRequest(format!("no deployment '{id}' in the {NAME} target"))
        })
    }

    async fn build(&self, spec: &DeploySpec, build: &str, staged: &Staged) -> Result<(), Error> {
        let mut policy = self.policy.clone();
        policy.limits = spec.limits.clone();
        policy.limits.time = spec.build_timeout;
        let sandbox = ProcessSandbox::new(policy)?;
        let out = sandbox
            .exec(ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), build.into()],
                env: spec.env_with_port(),
                stdin: Vec::new(),
                workdir: Some(staged.path().to_path_buf()),
                files: Default::default(),
            })
            .await?;
        if out.success() {
            return Ok(());
        }
        Err(Error::Deploy {
            reason: format!("the build `{build}` {}", ended(&out)),
            log_tail: both_streams(&out),
        })
    }
}

/// How a run ended, in words ("exited with status 1", "was stopped at its time limit").
fn ended(out: &ExecOutput) -> String {
    match (out.stop_reason, out.exit_code, out.signal) {
        (StopReason::Exited, Some(c), _) => format!("exited with status {c}"),
        (StopReason::Signal, _, Some(s)) => format!("was killed by signal {s}"),
        (r, _, _) => format!("was stopped: {}", r.as_str()),
    }
}

fn both_streams(out: &ExecOutput) -> String {
    let mut s = out.stdout.clone();
    s.push_str(&out.stderr);
    let cut = s.len().saturating_sub(crate::linux::spawn::TAIL_BYTES);
    let cut = (cut..=s.len())
        .find(|i| s.is_char_boundary(*i))
        .unwrap_or(s.len());
    s[cut..].to_string()
}

#[async_trait]
impl DeployTarget for LocalSandbox {
    fn name(&self) -> &str {
        NAME
    }

    async fn deploy(&self, spec: DeploySpec) -> Result<Deployment, Error> {
        spec.validate()?;
        let id = new_id("ls");
        let (dir, cap, owner) = (spec.dir.clone(), spec.limits.disk_bytes, self.owner());
        let staged = tokio::task::spawn_blocking(move || Staged::prepare_as(&dir, cap, owner))
            .await
            .map_err(|e| Error::Runtime(format!("the copy thread failed: {e}")))??;
        if let Some(build) = &spec.build {
            self.build(&spec, build, &staged).await?;
        }
        let mut policy = self.policy.clone();
        policy.limits = spec.limits.clone();
        let app = ProcessSandbox::new(policy)?
            .spawn(ExecRequest {
                argv: vec!["/bin/sh".into(), "-c".into(), spec.start.clone()],
                env: spec.env_with_port(),
                stdin: Vec::new(),
                workdir: Some(staged.path().to_path_buf()),
                files: Default::default(),
            })
            .await?;
        let started = SystemTime::now();
        let published = Published::start(app.netns(), spec.port)?;
        let outcome = || {
            std::future::ready(app.outcome().map(|o| match o {
                Ok(out) => ended(&out),
                Err(e) => format!("failed: {e}"),
            }))
        };
        let health = match wait_healthy(published.addr(), &spec, outcome).await {
            Ok(h) => h,
            Err(reason) => {
                app.kill();
                let _ = app.wait().await;
                published.stop();
                return Err(Error::Deploy {
                    reason,
                    log_tail: app.log_tail(),
                });
            }
        };
        let info = Deployment {
            id: id.clone(),
            target: NAME.into(),
            url: published.url(),
            command: spec.start.clone(),
            health,
            started_at: rfc3339(started),
            expires_at: rfc3339(started + spec.limits.time),
            running: true,
            log_tail: app.log_tail(),
        };
        let running = Arc::new(Running {
            info: Mutex::new(info.clone()),
            port: spec.port,
            health_path: spec.health_path.clone(),
            app,
            published: Mutex::new(Some(published)),
            staged: Mutex::new(Some(staged)),
        });
        lock(&self.running).insert(id, running.clone());
        // When the app ends on its own (or at its lifetime), nothing of it stays behind.
        tokio::spawn(async move {
            let _ = running.app.wait().await;
            running.teardown();
        });
        Ok(info)
    }

    async fn stop(&self, id: &str) -> Result<(), Error> {
        let running = self.get(id)?;
        running.app.kill();
        let waited = running.app.wait().await;
        running.teardown();
        lock(&self.running).remove(id);
        waited.map(|_| ())
    }

    async fn status(&self, id: &str) -> Result<Deployment, Error> {
        let running = self.get(id)?;
        let mut info = lock(&running.info).clone();
        info.running = running.app.is_running();
        info.log_tail = running.app.log_tail();
        let addr = lock(&running.published).as_ref().map(Published::addr);
        if let (true, Some(addr)) = (info.running, addr) {
            let path = running.health_path.clone();
            let probed = tokio::task::spawn_blocking(move || {
                super::probe(addr, &path, std::time::Duration::from_secs(2))
            })
            .await
            .map_err(|e| Error::Runtime(format!("the probe thread failed: {e}")))?;
            info.health = probed.unwrap_or_else(|e| Health {
                status: 0,
                body: format!("no answer on port {}: {e}", running.port),
            });
            lock(&running.info).health = info.health.clone();
        }
        Ok(info)
    }

    fn ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = lock(&self.running).keys().cloned().collect();
        ids.sort();
        ids
    }
}

impl Drop for LocalSandbox {
    fn drop(&mut self) {
        // Every app goes with its target (each handle kills its sandbox when dropped).
        for (_, r) in lock(&self.running).drain() {
            r.app.kill();
            r.teardown();
        }
    }
}
