//! The `docker` tier: a container through the Docker Engine API over its unix socket, when a
//! daemon is reachable. Same limits and filesystem rules as the other tiers (read-only root,
//! tmpfs /work and /tmp, no capabilities, no-new-privileges, no network unless loopback).

use std::path::{Path, PathBuf};
use std::time::Instant;

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::policy::{NetMode, Policy, Tier};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox};

/// The image used unless `BATON_DOCKER_IMAGE` names another.
pub const DEFAULT_IMAGE: &str = "debian:bookworm-slim";

/// The daemon's socket: `DOCKER_HOST=unix://...` or `/var/run/docker.sock`.
pub fn socket_path() -> Result<PathBuf, String> {
    match std::env::var("DOCKER_HOST") {
        Ok(h) if !h.is_empty() => match h.strip_prefix("unix://") {
            Some(p) => Ok(PathBuf::from(p)),
            None => Err(format!(
                "DOCKER_HOST={h} is not a unix:// socket; only the local socket is supported"
            )),
        },
        _ => Ok(PathBuf::from("/var/run/docker.sock")),
    }
}

/// A response from the Engine API.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

/// One HTTP/1.1 request over the socket (`Connection: close`, chunked bodies decoded).
pub async fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    let mut s = UnixStream::connect(sock)
        .await
        .map_err(|e| Error::Runtime(format!("cannot reach Docker at {}: {e}", sock.display())))?;
    let payload = body.map(|b| b.to_string()).unwrap_or_default();
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    if body.is_some() {
        req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n",
            payload.len()
        ));
    }
    req.push_str("\r\n");
    req.push_str(&payload);
    s.write_all(req.as_bytes()).await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

pub fn parse_response(raw: &[u8]) -> Result<Response, Error> {
    let bad = || Error::Runtime("malformed response from the Docker daemon".into());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or(""),
                16,
            )
            .map_err(|_| bad())?;
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok(Response { status, body })
}

/// Splits the multiplexed log stream (8-byte frame headers: stream, 0, 0, 0, size BE u32).
pub(crate) fn demux(raw: &[u8], out: &mut Capped, err: &mut Capped) {
    let mut rest = raw;
    while rest.len() >= 8 {
        let size = u32::from_be_bytes([rest[4], rest[5], rest[6], rest[7]]) as usize;
        let end = (8 + size).min(rest.len());
        match rest[0] {
            2 => err.push(&rest[8..end]),
            _ => out.push(&rest[8..end]),
        }
        rest = &rest[end..];
    }
}

/// The container-create body for a run (inspectable; the tests check it).
pub fn create_body(policy: &Policy, req: &ExecRequest, image: &str) -> Value {
    let l = &policy.limits;
    let uid = policy.uid;
    let env: Vec<String> = policy
        .env_for(&req.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut binds = Vec::new();
    if let Some(w) = &req.workdir {
        binds.push(format!("{}:/work:rw", w.display()));
    }
    let mut tmpfs = serde_json::Map::new();
    tmpfs.insert(
        "/tmp".into(),
        json!(format!("rw,nosuid,nodev,size={}", l.disk_bytes)),
    );
    if req.workdir.is_none() {
        tmpfs.insert(
            "/work".into(),
            json!(format!(
                "rw,nosuid,nodev,size={},uid={uid},gid={uid}",
                l.disk_bytes
            )),
        );
    }
    json!({
        "Image": image,
        "Cmd": req.argv,
        "Env": env,
        "User": format!("{uid}:{uid}"),
        "WorkingDir": "/work",
        "Hostname": policy.hostname,
        "NetworkDisabled": matches!(policy.net, NetMode::None),
        "AttachStdout": true,
        "AttachStderr": true,
        "HostConfig": {
            "Memory": l.memory_bytes,
            "MemorySwap": l.memory_bytes,
            "PidsLimit": l.pids,
            "NanoCpus": (l.cpus * 1e9) as u64,
            "NetworkMode": "none",
            "ReadonlyRootfs": true,
            "CapDrop": ["ALL"],
            "SecurityOpt": ["no-new-privileges"],
            "Tmpfs": tmpfs,
            "Binds": binds,
            "Ulimits": [{"Name": "fsize", "Soft": l.disk_bytes, "Hard": l.disk_bytes}, {"Name": "core", "Soft": 0, "Hard": 0}],
        }
    })
}

/// The docker tier.
pub struct DockerSandbox {
    policy: Policy,
    sock: PathBuf,
    image: String,
}

/// Checks a daemon answers on the socket (blocking, with a short timeout).
pub fn ping(sock: &Path) -> Result<(), String> {
    use std::io::{Read, Write};
    if !sock.exists() {
        return Err(format!(
            "no Docker daemon: {} does not exist",
            sock.display()
        ));
    }
    let mut s = std::os::unix::net::UnixStream::connect(sock)
        .map_err(|e| format!("cannot connect to {}: {e}", sock.display()))?;
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut buf = Vec::new();
    let _ = s.read_to_end(&mut buf);
    match parse_response(&buf) {
        Ok(r) if r.status == 200 => Ok(()),
        Ok(r) => Err(format!(
            "the Docker daemon answered /_ping with HTTP {}",
            r.status
        )),
        Err(e) => Err(e.to_string()),
    }
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
                "the allow-list network mode is provided by the process tier only".into(),
            ));
        }
        let sock = socket_path().map_err(unavailable)?;
        ping(&sock).map_err(unavailable)?;
        let image =
            std::env::var("BATON_DOCKER_IMAGE").unwrap_or_else(|_| DEFAULT_IMAGE.to_string());
        Ok(DockerSandbox {
            policy,
            sock,
            image,
        })
    }
}

fn check(r: &Response, what: &str) -> Result<(), Error> {
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "Docker {what} failed with HTTP {}: {}",
            r.status,
            String::from_utf8_lossy(&r.body).trim()
        )))
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
        if !req.files.is_empty() {
            return Err(Error::InvalidRequest(
                "the docker tier takes a workdir, not inline files".into(),
            ));
        }
        let start = Instant::now();
        let r = request(
            &self.sock,
            "POST",
            "/containers/create",
            Some(&create_body(&self.policy, &req, &self.image)),
        )
        .await?;
        check(&r, "container create")?;
        let created: Value = serde_json::from_slice(&r.body)
            .map_err(|e| Error::Runtime(format!("bad create response: {e}")))?;
        let id = created["Id"]
            .as_str()
            .ok_or_else(|| Error::Runtime("Docker returned no container id".into()))?
            .to_string();
        let result = self.run(&id, start).await;
        let _ = request(
            &self.sock,
            "DELETE",
            &format!("/containers/{id}?force=1"),
            None,
        )
        .await;
        result
    }
}

impl DockerSandbox {
    async fn run(&self, id: &str, start: Instant) -> Result<ExecOutput, Error> {
        check(
            &request(&self.sock, "POST", &format!("/containers/{id}/start"), None).await?,
            "container start",
        )?;
        let waited = tokio::time::timeout(
            self.policy.limits.time,
            request(&self.sock, "POST", &format!("/containers/{id}/wait"), None),
        )
        .await;
        let (exit, timed_out) = match waited {
            Ok(r) => {
                let r = r?;
                check(&r, "container wait")?;
                let v: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
                (v["StatusCode"].as_i64().map(|c| c as i32), false)
            }
            Err(_) => {
                let _ = request(&self.sock, "POST", &format!("/containers/{id}/kill"), None).await;
                (None, true)
            }
        };
        let wall = start.elapsed();
        let logs = request(
            &self.sock,
            "GET",
            &format!("/containers/{id}/logs?stdout=1&stderr=1"),
            None,
        )
        .await?;
        let mut out = Capped::new(self.policy.limits.output_bytes);
        let mut err = Capped::new(self.policy.limits.output_bytes);
        demux(&logs.body, &mut out, &mut err);
        let info = request(&self.sock, "GET", &format!("/containers/{id}/json"), None).await?;
        let state: Value = serde_json::from_slice(&info.body).unwrap_or(Value::Null);
        let oom = state["State"]["OOMKilled"].as_bool().unwrap_or(false);
        let (mut exit_code, mut signal) = (exit, None);
        if let Some(c) = exit {
            if (129..=192).contains(&c) {
                signal = Some(c - 128);
                exit_code = None;
            }
        } else {
            signal = Some(libc::SIGKILL);
        }
        let (stop, hit) = crate::stop_reason(timed_out, u64::from(oom), false, 0, signal);
        Ok(ExecOutput {
            tier: Tier::Docker,
            exit_code,
            signal,
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
            enforced: vec![
                format!(
                    "Docker container from {} (read-only root, no capabilities, no-new-privileges)",
                    self.image
                ),
                format!(
                    "memory {} B, pids {}, cpu {}",
                    self.policy.limits.memory_bytes,
                    self.policy.limits.pids,
                    self.policy.limits.cpus
                ),
                "network: none".into(),
            ],
        })
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn chunked_responses_are_decoded() {
        let raw = b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n5\r\n{\"Id\"\r\n7\r\n:\"abc\"}\r\n0\r\n\r\n";
        let r = parse_response(raw).unwrap();
        assert_eq!(r.status, 201);
        assert_eq!(r.body, b"{\"Id\":\"abc\"}");
        assert!(parse_response(b"garbage").is_err());
    }

    #[test]
    fn log_frames_are_split() {
        let mut raw = vec![1, 0, 0, 0, 0, 0, 0, 3];
        raw.extend_from_slice(b"out");
        raw.extend_from_slice(&[2, 0, 0, 0, 0, 0, 0, 3]);
        raw.extend_from_slice(b"err");
        let (mut o, mut e) = (Capped::new(100), Capped::new(100));
        demux(&raw, &mut o, &mut e);
        assert_eq!(
            (o.buf.as_slice(), e.buf.as_slice()),
            (&b"out"[..], &b"err"[..])
        );
    }

    #[test]
    fn create_body_carries_limits() {
        let p = Policy::new(Tier::Docker);
        let b = create_body(&p, &ExecRequest::new(["id"]), "img");
        assert_eq!(b["HostConfig"]["ReadonlyRootfs"], true);
        assert_eq!(b["HostConfig"]["CapDrop"], json!(["ALL"]));
        assert_eq!(b["HostConfig"]["PidsLimit"], 64);
        assert_eq!(b["User"], "1000:1000");
        assert!(
            b["HostConfig"]["Tmpfs"]["/work"]
                .as_str()
                .unwrap()
                .contains("size=104857600")
        );
    }

    #[tokio::test]
    async fn talks_to_a_daemon_over_its_socket() {
        // A one-shot fake daemon: answers one request and records it.
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let server = tokio::spawn(async move {
            let (mut c, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 4096];
            let n = c.read(&mut buf).await.unwrap();
            c.write_all(
                b"HTTP/1.1 201 Created\r\nContent-Type: application/json\r\n\r\n{\"Id\":\"x1\"}",
            )
            .await
            .unwrap();
            String::from_utf8_lossy(&buf[..n]).into_owned()
        });
        let body = json!({"Image": "img"});
        let r = request(&sock, "POST", "/containers/create", Some(&body))
            .await
            .unwrap();
        assert_eq!(r.status, 201);
        let seen = server.await.unwrap();
        assert!(seen.starts_with("POST /containers/create HTTP/1.1\r\n"));
        assert!(seen.ends_with("{\"Image\":\"img\"}"));
    }

    #[test]
    fn no_daemon_is_a_plain_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let err = ping(&dir.path().join("none.sock")).unwrap_err();
        assert!(err.contains("does not exist"));
    }
}
