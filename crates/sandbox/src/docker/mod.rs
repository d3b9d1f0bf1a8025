//! The `docker` tier: a container through the Docker Engine API over its unix socket, when a
//! daemon is reachable. Same limits and rules as the other tiers: read-only root, tmpfs /work
//! and /tmp, no capabilities, no-new-privileges, the policy's seccomp deny list, an unprivileged
//! user, no network unless loopback.
//!
//! The image is never pulled: it must already be in the daemon (`docker_image` in the policy,
//! else `BATON_DOCKER_IMAGE`, else [`DEFAULT_IMAGE`], which `make sandbox-docker-image` builds
//! from Debian packages). The daemon is `docker_host` in the policy, else `DOCKER_HOST`, else
//! `/var/run/docker.sock`. Output is read from an attached stream while the command runs (the
//! container logs nothing to the daemon's disk), so the output cap holds for any volume.

pub(crate) mod client;
mod container;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::unix::OwnedWriteHalf;
use tokio::task::JoinHandle;

use crate::policy::{NetMode, Policy, Tier};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox};
pub use client::{
    API_TIMEOUT, Response, parse_response, ping, request, request_blocking, request_blocking_json,
};
use client::{Demux, api_message, attach, call, check, enc};
use container::{check_runtimes, ended, pids_events_max, write_input};
pub use container::{create_body, seccomp_profile};

/// The image used unless the policy's `docker_image` or `BATON_DOCKER_IMAGE` names another.
pub const DEFAULT_IMAGE: &str = "baton-sandbox:debian";

/// The Engine API version Baton speaks (Docker 20.10 and later).
pub const API: &str = "/v1.41";

/// Label put on every container Baton creates (find strays with
/// `docker ps -a --filter label=baton.sandbox`).
pub const LABEL: &str = "baton.sandbox";

/// The daemon's socket: the policy's `docker_host`, else `DOCKER_HOST`, else
/// `/var/run/docker.sock`. `unix:///path` and plain absolute paths are accepted.
pub fn socket_path(policy: &Policy) -> Result<PathBuf, String> {
    let (from, host) = match &policy.docker_host {
        Some(h) => ("docker_host", h.clone()),
        None => match std::env::var("DOCKER_HOST") {
            Ok(h) if !h.is_empty() => ("DOCKER_HOST", h),
            _ => return Ok(PathBuf::from("/var/run/docker.sock")),
        },
    };
    if let Some(p) = host.strip_prefix("unix://") {
        return Ok(PathBuf::from(p));
    }
    if host.starts_with('/') {
        return Ok(PathBuf::from(host));
    }
    Err(format!(
        "{from}={host} is not a unix socket (unix:///path or /path); only a local daemon is supported"
    ))
}

/// The image a policy runs: `docker_image`, else `BATON_DOCKER_IMAGE`, else [`DEFAULT_IMAGE`].
pub fn image_for(policy: &Policy) -> String {
    if let Some(i) = &policy.docker_image {
        return i.clone();
    }
    match std::env::var("BATON_DOCKER_IMAGE") {
        Ok(i) if !i.is_empty() => i,
        _ => DEFAULT_IMAGE.to_string(),
    }
}

/// The docker tier.
pub struct DockerSandbox {
    policy: Policy,
    sock: PathBuf,
    image: String,
    /// "Docker 20.10.24 (API 1.41)".
    daemon: String,
}

impl DockerSandbox {
    pub fn new(policy: Policy) -> Result<DockerSandbox, Error> {
        policy.validate()?;
        let unavailable = |reason: String| Error::TierUnavailable {
            tier: Tier::Docker,
            reason,
        };
        if matches!(policy.net, NetMode::Allow(_)) {
            return Err(unavailable(
                "the allow-list network mode is provided by the process, oci and gvisor tiers (a Docker container has no route to Baton's proxy)".into(),
            ));
        }
        let sock = socket_path(&policy).map_err(unavailable)?;
        ping(&sock).map_err(unavailable)?;
        let t = Duration::from_secs(5);
        let v =
            request_blocking(&sock, "GET", &format!("{API}/version"), t).map_err(unavailable)?;
        if v.status != 200 {
            return Err(unavailable(format!(
                "the Docker daemon at {} does not speak API {}: {}",
                sock.display(),
                API.trim_start_matches("/v"),
                api_message(&v)
            )));
        }
        let ver: Value = serde_json::from_slice(&v.body).unwrap_or(Value::Null);
        let daemon = format!(
            "Docker {} (API {})",
            ver["Version"].as_str().unwrap_or("?"),
            ver["ApiVersion"].as_str().unwrap_or("?")
        );
        let image = image_for(&policy);
        image_present(
            &sock,
            &image,
            t,
            "build the default one with `make sandbox-docker-image`, or name a local image with docker_image / BATON_DOCKER_IMAGE",
        )
        .map_err(unavailable)?;
        check_runtimes(&sock, &image, &policy.runtimes)?;
        Ok(DockerSandbox {
            policy,
            sock,
            image,
            daemon,
        })
    }

    /// The daemon's socket.
    pub fn socket(&self) -> &Path {
        &self.sock
    }

    /// The image runs use.
    pub fn image(&self) -> &str {
        &self.image
    }

    /// The uid:gid the code runs as: the policy's uid, or a workdir's owner (never root).
    fn user_for(&self, req: &ExecRequest) -> Result<(u32, u32), Error> {
        let Some(dir) = &req.workdir else {
            return Ok((self.policy.uid, self.policy.uid));
        };
        use std::os::unix::fs::MetadataExt;
        let md = std::fs::metadata(dir)?;
        if md.uid() == 0 {
            return Err(Error::InvalidRequest(format!(
                "workdir {} is owned by root, and sandboxed code never runs as root: chown it to an unprivileged user (e.g. `chown -R {u}:{u} {}`)",
                dir.display(),
                dir.display(),
                u = self.policy.uid
            )));
        }
        Ok((md.uid(), md.gid()))
    }
}

/// Removes the container and the input directory when a run ends, however it ends (also when
/// the caller drops the future mid-run).
struct Cleanup {
    sock: PathBuf,
    id: Option<String>,
    input: Option<PathBuf>,
}

impl Cleanup {
    async fn finish(mut self) {
        if let Some(id) = self.id.take() {
            let _ = call(
                &self.sock,
                "DELETE",
                &format!("{API}/containers/{id}?force=1&v=1"),
                None,
            )
            .await;
        }
        if let Some(dir) = self.input.take() {
            let _ = tokio::fs::remove_dir_all(dir).await;
        }
    }
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let (id, input, sock) = (self.id.take(), self.input.take(), self.sock.clone());
        if id.is_none() && input.is_none() {
            return;
        }
        // Dropped mid-run: remove from a plain thread (works with or without a runtime).
        std::thread::spawn(move || {
            if let Some(id) = id {
                let _ = request_blocking(
                    &sock,
                    "DELETE",
                    &format!("{API}/containers/{id}?force=1&v=1"),
                    Duration::from_secs(30),
                );
            }
            if let Some(dir) = input {
                let _ = std::fs::remove_dir_all(dir);
            }
        });
    }
}

#[async_trait]
impl Sandbox for DockerSandbox {
    fn tier(&self) -> Tier {
        Tier::Docker
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        req.validate()?;
        let start = Instant::now();
        let user = self.user_for(&req)?;
        let mut cleanup = Cleanup {
            sock: self.sock.clone(),
            id: None,
            input: None,
        };
        if !req.files.is_empty() {
            if let Some(dir) = &req.workdir {
                for (name, contents) in &req.files {
                    crate::linux::write_no_follow(dir, name, contents.as_bytes(), user.0, user.1)?;
                }
            } else {
                // The tmpfs /work exists only inside: the files go in through a read-only bind.
                static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
                let dir = std::env::temp_dir().join(format!(
                    "baton-{}-docker-{}",
                    std::process::id(),
                    N.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
                ));
                cleanup.input = Some(dir.clone());
                write_input(&dir, &req)?;
            }
        }
        let body = create_body(
            &self.policy,
            &req,
            &self.image,
            user,
            cleanup.input.as_deref(),
        );
        let r = call(
            &self.sock,
            "POST",
            &format!("{API}/containers/create"),
            Some(&body),
        )
        .await?;
        check(&r, "container create")?;
        let created: Value = serde_json::from_slice(&r.body)
            .map_err(|e| Error::Runtime(format!("bad create response from Docker: {e}")))?;
        let id = created["Id"]
            .as_str()
            .ok_or_else(|| Error::Runtime("Docker returned no container id".into()))?
            .to_string();
        cleanup.id = Some(id.clone());
        let result = self.run(&id, &req, start).await;
        cleanup.finish().await;
        result
    }
}

impl DockerSandbox {
    /// How often the running container hit its pids limit (0 when unknown: a remote daemon,
    /// or a host whose cgroups are not visible here).
    async fn pids_hits(&self, id: &str) -> u64 {
        let Ok(r) = call(
            &self.sock,
            "GET",
            &format!("{API}/containers/{id}/json"),
            None,
        )
        .await
        else {
            return 0;
        };
        let doc: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
        match doc["State"]["Pid"].as_i64() {
            Some(pid) if pid > 0 => pids_events_max(pid).unwrap_or(0),
            _ => 0,
        }
    }

    async fn run(&self, id: &str, req: &ExecRequest, start: Instant) -> Result<ExecOutput, Error> {
        let limits = &self.policy.limits;
        let (reader, writer) = self.attach_and_start(id, req).await?;
        let (timed_out, pids_hits) = self.wait_or_kill(id).await?;
        let wall = start.elapsed();
        // The stream ends when the container's output closes; a little grace for the tail.
        let cap = limits.output_bytes;
        let (out, err) = match tokio::time::timeout(Duration::from_secs(5), reader).await {
            Ok(Ok(pair)) => pair,
            _ => (Capped::new(cap), Capped::new(cap)),
        };
        writer.abort();
        let info = call(
            &self.sock,
            "GET",
            &format!("{API}/containers/{id}/json"),
            None,
        )
        .await?;
        check(&info, "container inspect")?;
        let doc: Value = serde_json::from_slice(&info.body).unwrap_or(Value::Null);
        let e = ended(&doc["State"], timed_out);
        let (stop, hit) =
            crate::stop_reason(timed_out, u64::from(e.oom), false, pids_hits, e.signal);
        Ok(ExecOutput {
            tier: Tier::Docker,
            exit_code: e.exit_code,
            signal: e.signal,
            stop_reason: stop,
            limits_hit: hit,
            stdout: out.text(),
            stdout_truncated: out.truncated,
            stderr: err.text(),
            stderr_truncated: err.truncated,
            wall_time: wall,
            cpu_time: None,
            peak_memory_bytes: None,
            network: Vec::new(),
            enforced: self.enforced(req, doc["Config"]["User"].as_str().unwrap_or("?")),
        })
    }

    /// Attaches to the container's output (read into capped buffers by a task), starts it and
    /// feeds its stdin (a task that half-closes the stream when done).
    async fn attach_and_start(
        &self,
        id: &str,
        req: &ExecRequest,
    ) -> Result<(JoinHandle<(Capped, Capped)>, JoinHandle<OwnedWriteHalf>), Error> {
        let with_stdin = !req.stdin.is_empty();
        let (stream, first) = tokio::time::timeout(API_TIMEOUT, attach(&self.sock, id, with_stdin))
            .await
            .map_err(|_| {
                Error::Runtime(format!(
                    "the Docker daemon at {} did not answer the attach within {} s",
                    self.sock.display(),
                    API_TIMEOUT.as_secs()
                ))
            })??;
        let (mut rd, mut wr) = stream.into_split();
        let cap = self.policy.limits.output_bytes;
        let reader = tokio::spawn(async move {
            let (mut out, mut err) = (Capped::new(cap), Capped::new(cap));
            let mut dm = Demux::default();
            dm.feed(&first, &mut out, &mut err);
            let mut buf = vec![0u8; 64 << 10];
            loop {
                match rd.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => dm.feed(&buf[..n], &mut out, &mut err),
                }
            }
            (out, err)
        });
        let started = call(
            &self.sock,
            "POST",
            &format!("{API}/containers/{id}/start"),
            None,
        )
        .await?;
        if !(200..300).contains(&started.status) {
            reader.abort();
            return Err(start_failed(&started, req));
        }
        let stdin = req.stdin.clone();
        let writer = tokio::spawn(async move {
            if !stdin.is_empty() {
                let _ = wr.write_all(&stdin).await;
            }
            // Half-close: with StdinOnce the daemon then closes the container's stdin.
            let _ = wr.shutdown().await;
            wr
        });
        Ok((reader, writer))
    }

    /// Waits for the container up to the time limit, else kills it; returns whether it timed
    /// out and how often it hit its pids limit (read before the kill, while its cgroup exists).
    async fn wait_or_kill(&self, id: &str) -> Result<(bool, u64), Error> {
        let wait_path = format!("{API}/containers/{id}/wait");
        let limit = self.policy.limits.time;
        match tokio::time::timeout(limit, request(&self.sock, "POST", &wait_path, None)).await {
            Ok(r) => {
                check(&r?, "container wait")?;
                Ok((false, 0))
            }
            Err(_) => {
                let pids_hits = self.pids_hits(id).await;
                // Time limit: SIGKILL to the container's init ends its whole PID namespace.
                let kill = format!("{API}/containers/{id}/kill?signal=KILL");
                let _ = call(&self.sock, "POST", &kill, None).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    request(&self.sock, "POST", &wait_path, None),
                )
                .await;
                Ok((true, pids_hits))
            }
        }
    }

    /// What a run had in place, one line per mechanism.
    fn enforced(&self, req: &ExecRequest, user: &str) -> Vec<String> {
        let limits = &self.policy.limits;
        let net = match &self.policy.net {
            NetMode::None => {
                "network: none (Docker's none network; IPv4/IPv6 sockets refused by seccomp)"
            }
            _ => "network: loopback only (Docker's none network)",
        };
        vec![
            format!(
                "{} at {}: container from image {} as uid {user}",
                self.daemon,
                self.sock.display(),
                self.image,
            ),
            "read-only root, no capabilities, no-new-privileges, /sys masked, no logs kept by the daemon".into(),
            format!(
                "seccomp: {} syscalls denied (the policy's list)",
                self.policy.syscall_deny.len()
            ),
            format!(
                "cgroup limits by Docker: memory {} B (no swap), pids {}, cpu {}",
                limits.memory_bytes, limits.pids, limits.cpus
            ),
            format!(
                "tmpfs /tmp{} of {} B; RLIMIT_FSIZE {} B, RLIMIT_NOFILE 4096",
                if req.workdir.is_none() { " and /work" } else { "" },
                limits.disk_bytes,
                limits.disk_bytes
            ),
            net.into(),
        ]
    }
}

/// A failed container start: the command cannot be run (a spawn error), or Docker failed.
fn start_failed(started: &Response, req: &ExecRequest) -> Error {
    let msg = api_message(started);
    let command = req.argv.first().cloned().unwrap_or_default();
    if msg.contains("executable file not found")
        || msg.contains("no such file or directory")
        || msg.contains("permission denied")
    {
        return Error::Spawn {
            command,
            reason: msg,
        };
    }
    Error::Runtime(format!(
        "Docker container start failed with HTTP {}: {msg}",
        started.status
    ))
}

/// Whether `image` is in the daemon at `sock` (Baton never pulls): the reason it cannot be
/// used otherwise, ending with `missing_hint` when the daemon does not have it.
pub(crate) fn image_present(
    sock: &Path,
    image: &str,
    timeout: Duration,
    missing_hint: &str,
) -> Result<(), String> {
    let r = request_blocking(
        sock,
        "GET",
        &format!("{API}/images/{}/json", enc(image)),
        timeout,
    )?;
    match r.status {
        200 => Ok(()),
        404 => Err(format!(
            "image '{image}' is not in the Docker daemon at {} and Baton never pulls images: {missing_hint}",
            sock.display()
        )),
        s => Err(format!(
            "cannot inspect image '{image}': HTTP {s}: {}",
            api_message(&r)
        )),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
