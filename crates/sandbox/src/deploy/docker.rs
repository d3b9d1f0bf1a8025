//! The `docker` target: the app in a container of a local Docker daemon (Engine API over its
//! unix socket, as the docker tier), the same as
//!
//! ```text
//! docker run -d --network none -v COPY:/app -w /app -e PORT=PORT IMAGE sh -c START
//! ```
//!
//! with the spec's memory, CPU and pids limits, no capabilities and no-new-privileges. The
//! files are a private copy (a tmpfs of the disk limit, owned by the container's user), and
//! the build (if any) runs first in a container of its own. The container has no network but
//! its loopback; its port is published on the host's 127.0.0.1 by Baton's forwarder, as for
//! `local-sandbox` (a thread in the container's network namespace, `/proc/<pid>/ns/net`), so it
//! works without a bridge or iptables and the app reaches nothing outside. The image is never
//! pulled. Containers carry the label `baton.deploy` and are removed at `stop`, at the end of
//! their lifetime, and when the target is dropped.

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime};

use async_trait::async_trait;
use serde_json::{Value, json};

use super::{
    DeploySpec, DeployTarget, Deployment, Health, Published, new_id, probe, rfc3339, wait_healthy,
};
use crate::docker::client::{Demux, api_message, call, call_within, check};
use crate::docker::{API, ping, request_blocking};
use crate::workspace::Staged;
use crate::{Capped, Error};

/// The target's name.
pub const NAME: &str = "docker";
/// The image apps run in unless configured otherwise (it must already be in the daemon).
pub const DEFAULT_DOCKER_IMAGE: &str = "python:3.12-slim";
/// The label on every deployment container (`docker ps --filter label=baton.deploy`).
pub const LABEL: &str = "baton.deploy";
/// The uid:gid the app runs as in its container.
const APP_USER: u32 = 1000;

struct Running {
    info: Mutex<Deployment>,
    container: String,
    addr: std::net::SocketAddr,
    health_path: String,
    published: Mutex<Option<Published>>,
    _staged: Staged,
    expiry: tokio::task::JoinHandle<()>,
}

/// Deploys apps as containers of a local Docker daemon.
pub struct DockerTarget {
    sock: PathBuf,
    image: String,
    running: Arc<Mutex<HashMap<String, Arc<Running>>>>,
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

fn unavailable(reason: String) -> Error {
    Error::TierUnavailable {
        tier: crate::Tier::Docker,
        reason,
    }
}

impl DockerTarget {
    /// The target over the daemon at `docker_host` (else `DOCKER_HOST`, else
    /// `/var/run/docker.sock`) with `image` (else [`DEFAULT_DOCKER_IMAGE`]); fails with the
    /// reason when no daemon answers or the image is not there.
    pub fn new(docker_host: Option<String>, image: Option<String>) -> Result<DockerTarget, Error> {
        let mut policy = crate::Policy::new(crate::Tier::Docker);
        policy.docker_host = docker_host;
        let sock = crate::docker::socket_path(&policy).map_err(unavailable)?;
        ping(&sock).map_err(unavailable)?;
        let image = image.unwrap_or_else(|| DEFAULT_DOCKER_IMAGE.to_string());
        crate::docker::image_present(
            &sock,
            &image,
            Duration::from_secs(5),
            "load it into the daemon, or configure another",
        )
        .map_err(unavailable)?;
        Ok(DockerTarget {
            sock,
            image,
            running: Arc::default(),
        })
    }

    fn get(&self, id: &str) -> Result<Arc<Running>, Error> {
        lock(&self.running).get(id).cloned().ok_or_else(|| {
            Error::InvalidRequest(format!("no deployment '{id}' in the {NAME} target"))
        })
    }

    /// The container's create body.
    fn body(&self, spec: &DeploySpec, dir: &str, cmd: &str) -> Value {
        let l = &spec.limits;
        let env: Vec<String> = spec
            .env_with_port()
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect();
        let host = json!({
            "Binds": [format!("{dir}:/app")],
            "NetworkMode": "none",
            "Memory": l.memory_bytes,
            "MemorySwap": l.memory_bytes,
            "PidsLimit": l.pids,
            "NanoCpus": (l.cpus * 1e9) as u64,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
        });
        json!({
            "Image": self.image,
            "Cmd": ["sh", "-c", cmd],
            "WorkingDir": "/app",
            "User": format!("{APP_USER}:{APP_USER}"),
            "Env": env,
            "Labels": { LABEL: "1" },
            "HostConfig": host,
        })
    }

    async fn create_and_start(&self, body: &Value) -> Result<String, Error> {
        let r = call(
            &self.sock,
            "POST",
            &format!("{API}/containers/create"),
            Some(body),
        )
        .await?;
        check(&r, "container create")?;
        let id = serde_json::from_slice::<Value>(&r.body)
            .ok()
            .and_then(|v| v["Id"].as_str().map(str::to_string))
            .ok_or_else(|| Error::Runtime("Docker returned no container id".into()))?;
        let r = call(
            &self.sock,
            "POST",
            &format!("{API}/containers/{id}/start"),
            None,
        )
        .await?;
        if let Err(e) = check(&r, "container start") {
            self.remove(&id).await;
            return Err(e);
        }
        Ok(id)
    }

    async fn remove(&self, id: &str) {
        let _ = call(
            &self.sock,
            "DELETE",
            &format!("{API}/containers/{id}?force=1&v=1"),
            None,
        )
        .await;
    }

    async fn logs(&self, id: &str) -> String {
        logs(&self.sock, id).await
    }

    async fn build(&self, spec: &DeploySpec, build: &str, dir: &str) -> Result<(), Error> {
        let id = self.create_and_start(&self.body(spec, dir, build)).await?;
        let waited = call_within(
            spec.build_timeout,
            &self.sock,
            "POST",
            &format!("{API}/containers/{id}/wait"),
            None,
        )
        .await;
        let log_tail = self.logs(&id).await;
        self.remove(&id).await;
        let code = match waited {
            Ok(r) if r.status == 200 => serde_json::from_slice::<Value>(&r.body)
                .ok()
                .and_then(|v| v["StatusCode"].as_i64()),
            Ok(r) => {
                return Err(Error::Runtime(format!(
                    "Docker container wait failed with HTTP {}: {}",
                    r.status,
                    api_message(&r)
                )));
            }
            Err(_) => {
                return Err(Error::Deploy {
                    reason: format!(
                        "the build `{build}` did not finish within {}",
                        humantime::format_duration(spec.build_timeout)
                    ),
                    log_tail,
                });
            }
        };
        match code {
            Some(0) => Ok(()),
            c => Err(Error::Deploy {
                reason: format!(
                    "the build `{build}` exited with status {}",
                    c.map_or("?".into(), |c| c.to_string())
                ),
                log_tail,
            }),
        }
    }

    /// Publishes `port` of the running container `id` on the host's loopback.
    async fn publish(&self, id: &str, port: u16) -> Result<Published, Error> {
        let r = call(
            &self.sock,
            "GET",
            &format!("{API}/containers/{id}/json"),
            None,
        )
        .await?;
        check(&r, "container inspect")?;
        let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        let pid = v["State"]["Pid"]
            .as_i64()
            .filter(|p| *p > 0)
            .ok_or_else(|| {
                Error::Runtime("the container is not running (Docker reports no pid)".into())
            })?;
        let ns = std::fs::File::open(format!("/proc/{pid}/ns/net")).map_err(|e| {
            Error::Runtime(format!(
                "cannot open the container's network namespace (pid {pid}): {e}"
            ))
        })?;
        use std::os::fd::AsFd;
        Published::start(ns.as_fd(), port)
    }
}

/// The container's last 200 lines of output (stdout and stderr).
async fn logs(sock: &std::path::Path, id: &str) -> String {
    let Ok(r) = call(
        sock,
        "GET",
        &format!("{API}/containers/{id}/logs?stdout=1&stderr=1&tail=200"),
        None,
    )
    .await
    else {
        return String::new();
    };
    let (mut out, mut err) = (Capped::new(64 << 10), Capped::new(64 << 10));
    Demux::default().feed(&r.body, &mut out, &mut err);
    format!("{}{}", out.text(), err.text())
}

/// How the container ended, or `None` while it runs.
async fn container_ended(sock: &std::path::Path, id: &str) -> Option<String> {
    let r = call(sock, "GET", &format!("{API}/containers/{id}/json"), None)
        .await
        .ok()?;
    if r.status == 404 {
        return Some("was removed".into());
    }
    let v: Value = serde_json::from_slice(&r.body).ok()?;
    let state = &v["State"];
    if state["Running"].as_bool() == Some(true) {
        return None;
    }
    Some(if state["OOMKilled"].as_bool() == Some(true) {
        "was killed at its memory limit".into()
    } else {
        format!(
            "exited with status {}",
            state["ExitCode"].as_i64().unwrap_or(-1)
        )
    })
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[async_trait]
impl DeployTarget for DockerTarget {
    fn name(&self) -> &str {
        NAME
    }

    async fn deploy(&self, spec: DeploySpec) -> Result<Deployment, Error> {
        spec.validate()?;
        let id = new_id("dk");
        let (src, cap) = (spec.dir.clone(), spec.limits.disk_bytes);
        let staged = tokio::task::spawn_blocking(move || {
            Staged::prepare_as(&src, cap, Some((APP_USER, APP_USER)))
        })
        .await
        .map_err(|e| Error::Runtime(format!("the copy thread failed: {e}")))??;
        let dir = staged.path().display().to_string();
        if let Some(build) = &spec.build {
            self.build(&spec, build, &dir).await?;
        }
        let container = self
            .create_and_start(&self.body(&spec, &dir, &spec.start))
            .await?;
        let started = SystemTime::now();
        let published = match self.publish(&container, spec.port).await {
            Ok(p) => p,
            Err(e) => {
                let log_tail = self.logs(&container).await;
                self.remove(&container).await;
                return Err(Error::Deploy {
                    reason: format!("the app's port could not be published: {e}"),
                    log_tail,
                });
            }
        };
        let addr = published.addr();
        let ended = || container_ended(&self.sock, &container);
        let health = match wait_healthy(addr, &spec, ended).await {
            Ok(h) => h,
            Err(reason) => {
                let log_tail = self.logs(&container).await;
                self.remove(&container).await;
                published.stop();
                return Err(Error::Deploy { reason, log_tail });
            }
        };
        let command = format!(
            "docker run -d --network none -v {dir}:/app -w /app -e PORT={} {} sh -c {}",
            spec.port,
            self.image,
            shell_quote(&spec.start),
        );
        let info = Deployment {
            id: id.clone(),
            target: NAME.into(),
            url: format!("http://{addr}"),
            command,
            health,
            started_at: rfc3339(started),
            expires_at: rfc3339(started + spec.limits.time),
            running: true,
            log_tail: self.logs(&container).await,
        };
        // The lifetime: the container is removed when it is over.
        let (sock, c, life) = (self.sock.clone(), container.clone(), spec.limits.time);
        let expiry = tokio::spawn(async move {
            tokio::time::sleep(life).await;
            let _ = call(
                &sock,
                "DELETE",
                &format!("{API}/containers/{c}?force=1&v=1"),
                None,
            )
            .await;
        });
        lock(&self.running).insert(
            id,
            Arc::new(Running {
                info: Mutex::new(info.clone()),
                container,
                addr,
                health_path: spec.health_path.clone(),
                published: Mutex::new(Some(published)),
                _staged: staged,
                expiry,
            }),
        );
        Ok(info)
    }

    async fn stop(&self, id: &str) -> Result<(), Error> {
        let running = self.get(id)?;
        running.expiry.abort();
        let r = call(
            &self.sock,
            "DELETE",
            &format!("{API}/containers/{}?force=1&v=1", running.container),
            None,
        )
        .await?;
        if let Some(p) = lock(&running.published).take() {
            p.stop();
        }
        lock(&self.running).remove(id);
        if r.status == 404 {
            return Ok(());
        }
        check(&r, "container remove")
    }

    async fn status(&self, id: &str) -> Result<Deployment, Error> {
        let running = self.get(id)?;
        let mut info = lock(&running.info).clone();
        info.running = container_ended(&self.sock, &running.container)
            .await
            .is_none();
        info.log_tail = self.logs(&running.container).await;
        if info.running {
            let (addr, path) = (running.addr, running.health_path.clone());
            let probed =
                tokio::task::spawn_blocking(move || probe(addr, &path, Duration::from_secs(2)))
                    .await
                    .map_err(|e| Error::Runtime(format!("the probe thread failed: {e}")))?;
            info.health = probed.unwrap_or_else(|e| Health {
                status: 0,
                body: format!("no answer: {e}"),
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

impl Drop for DockerTarget {
    fn drop(&mut self) {
        for (_, r) in lock(&self.running).drain() {
            r.expiry.abort();
            drop(lock(&r.published).take());
            let _ = request_blocking(
                &self.sock,
                "DELETE",
                &format!("{API}/containers/{}?force=1&v=1", r.container),
                Duration::from_secs(10),
            );
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_command_is_quoted_for_a_shell() {
        assert_eq!(shell_quote("echo 'hi'"), r"'echo '\''hi'\'''");
    }
}
