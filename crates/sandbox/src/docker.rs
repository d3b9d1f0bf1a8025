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

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use crate::policy::{NetMode, Policy, Tier};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox};

/// The image used unless the policy's `docker_image` or `BATON_DOCKER_IMAGE` names another.
pub const DEFAULT_IMAGE: &str = "baton-sandbox:debian";

/// The Engine API version Baton speaks (Docker 20.10 and later).
pub const API: &str = "/v1.41";

/// Label put on every container Baton creates (find strays with
/// `docker ps -a --filter label=baton.sandbox`).
pub const LABEL: &str = "baton.sandbox";

/// Paths masked inside (Docker's defaults, plus all of /sys: the code sees no sysfs at all).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys",
];
/// Paths read-only inside (Docker's defaults).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

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

/// A response from the Engine API.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

fn request_head(method: &str, path: &str, payload: Option<&str>) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match payload {
        Some(p) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{p}",
            p.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    req
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
    let payload = body.map(|b| b.to_string());
    s.write_all(request_head(method, path, payload.as_deref()).as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

/// How long one API call (other than waiting for the container) may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);

/// [`request`] bounded by [`API_TIMEOUT`]: a daemon that stops answering is an error, not a hang.
async fn call(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    call_within(API_TIMEOUT, sock, method, path, body).await
}

async fn call_within(
    limit: Duration,
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    match tokio::time::timeout(limit, request(sock, method, path, body)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Runtime(format!(
            "the Docker daemon at {} did not answer {method} {path} within {} s",
            sock.display(),
            limit.as_secs_f64()
        ))),
    }
}

/// The same request, blocking, with a timeout (used while opening the tier).
pub fn request_blocking(
    sock: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, String> {
    request_blocking_json(sock, method, path, None, timeout)
}

/// A blocking request with an optional JSON body.
pub fn request_blocking_json(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Response, String> {
    use std::io::{Read, Write};
    if !sock.exists() {
        return Err(format!(
            "no Docker daemon: {} does not exist",
            sock.display()
        ));
    }
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot connect to the Docker daemon at {}: {e}",
            sock.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let payload = body.map(|b| b.to_string());
    s.write_all(request_head(method, path, payload.as_deref()).as_bytes())
        .map_err(|e| {
            format!(
                "cannot talk to the Docker daemon at {}: {e}",
                sock.display()
            )
        })?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| {
        format!(
            "the Docker daemon at {} did not answer {path}: {e}",
            sock.display()
        )
    })?;
    parse_response(&buf).map_err(|e| e.to_string())
}

/// Checks each of the policy's `runtimes` exists in the image (in /usr/local/bin, /usr/bin or
/// /bin, or at the absolute path given), through a container that is created, never started,
/// and removed.
fn check_runtimes(sock: &Path, image: &str, runtimes: &[String]) -> Result<(), Error> {
    if runtimes.is_empty() {
        return Ok(());
    }
    let t = Duration::from_secs(30);
    let runtime_err = |m: String| Error::Runtime(format!("checking the policy's runtimes: {m}"));
    let body = json!({"Image": image, "Entrypoint": [""], "Cmd": ["/bin/true"],
        "Labels": {LABEL: "1"}, "NetworkDisabled": true,
        "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none", "Config": {}}}});
    let r = request_blocking_json(
        sock,
        "POST",
        &format!("{API}/containers/create"),
        Some(&body),
        t,
    )
    .map_err(runtime_err)?;
    if r.status != 201 {
        return Err(runtime_err(format!(
            "HTTP {}: {}",
            r.status,
            api_message(&r)
        )));
    }
    let created: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let Some(id) = created["Id"].as_str() else {
        return Err(runtime_err("Docker returned no container id".into()));
    };
    let mut missing = None;
    for name in runtimes {
        let candidates: Vec<String> = if name.starts_with('/') {
            vec![name.clone()]
        } else {
            ["/usr/local/bin", "/usr/bin", "/bin"]
                .iter()
                .map(|d| format!("{d}/{name}"))
                .collect()
        };
        let found = candidates.iter().any(|p| {
            request_blocking(
                sock,
                "HEAD",
                &format!("{API}/containers/{id}/archive?path={}", enc(p)),
                t,
            )
            .is_ok_and(|r| r.status == 200)
        });
        if !found {
            missing = Some(name.clone());
            break;
        }
    }
    let _ = request_blocking(
        sock,
        "DELETE",
        &format!("{API}/containers/{id}?force=1&v=1"),
        t,
    );
    match missing {
        Some(name) => Err(Error::InvalidPolicy(format!(
            "runtime '{name}' is not in image '{image}' (looked in /usr/local/bin, /usr/bin, /bin)"
        ))),
        None => Ok(()),
    }
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

/// Splits the multiplexed attach stream (8-byte frame headers: stream, 0, 0, 0, size BE u32)
/// as it arrives, in pieces of any size.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    header: Vec<u8>,
    stream: u8,
    left: usize,
}

impl Demux {
    pub fn feed(&mut self, mut data: &[u8], out: &mut Capped, err: &mut Capped) {
        while !data.is_empty() {
            if self.left == 0 {
                let take = (8 - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 8 {
                    let h = &self.header;
                    self.stream = h[0];
                    self.left = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                    self.header.clear();
                }
                continue;
            }
            let n = self.left.min(data.len());
            match self.stream {
                2 => err.push(&data[..n]),
                _ => out.push(&data[..n]),
            }
            self.left -= n;
            data = &data[n..];
        }
    }
}

/// Splits a whole multiplexed stream.
#[cfg(test)]
pub(crate) fn demux(raw: &[u8], out: &mut Capped, err: &mut Capped) {
    Demux::default().feed(raw, out, err);
}

/// The seccomp profile (Docker's JSON format, which accepts the OCI form): the policy's deny
/// list as in the oci tier; with `net: none` also no IPv4/IPv6 sockets, since Docker's own
/// "none" network keeps loopback up.
pub fn seccomp_profile(policy: &Policy) -> Value {
    let mut prof = crate::seccomp::oci(&policy.syscall_deny);
    if matches!(policy.net, NetMode::None)
        && let Some(list) = prof["syscalls"].as_array_mut()
    {
        for fam in [libc::AF_INET, libc::AF_INET6] {
            list.push(json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM, "args": [{"index": 0, "value": fam, "op": "SCMP_CMP_EQ"}]}));
        }
    }
    prof
}

/// The container-create body for a run (inspectable; the tests check it). `user` is the
/// uid:gid the code runs as; `input` a host directory copied into the tmpfs /work first.
pub fn create_body(
    policy: &Policy,
    req: &ExecRequest,
    image: &str,
    user: (u32, u32),
    input: Option<&Path>,
) -> Value {
    let l = &policy.limits;
    let (uid, gid) = user;
    let env: Vec<String> = policy
        .env_for(&req.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut binds = Vec::new();
    if let Some(w) = &req.workdir {
        binds.push(format!("{}:/work:rw", w.display()));
    }
    if let Some(i) = input {
        binds.push(format!("{}:/.baton-input:ro", i.display()));
    }
    for m in &policy.mounts {
        if let crate::policy::Mount::ReadOnly { source, target } = m {
            binds.push(format!("{}:{}:ro", source.display(), target.display()));
        }
    }
    let mut tmpfs = serde_json::Map::new();
    tmpfs.insert(
        "/tmp".into(),
        json!(format!("rw,nosuid,nodev,size={},mode=1777", l.disk_bytes)),
    );
    if req.workdir.is_none() {
        tmpfs.insert(
            "/work".into(),
            json!(format!(
                "rw,nosuid,nodev,size={},uid={uid},gid={gid},mode=755",
                l.disk_bytes
            )),
        );
    }
    let mut argv = req.argv.clone();
    if input.is_some() {
        let mut a = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "cp -R /.baton-input/. /work/ && exec \"$@\"".into(),
            "sh".into(),
        ];
        a.append(&mut argv);
        argv = a;
    }
    let stdin = !req.stdin.is_empty();
    json!({
        "Image": image,
        "Entrypoint": [""],
        "Cmd": argv,
        "Env": env,
        "User": format!("{uid}:{gid}"),
        "WorkingDir": "/work",
        "Hostname": policy.hostname,
        "Labels": {LABEL: "1"},
        "AttachStdin": stdin,
        "OpenStdin": stdin,
        "StdinOnce": stdin,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": false,
        "NetworkDisabled": matches!(policy.net, NetMode::None),
        "HostConfig": {
            "Memory": l.memory_bytes,
            "MemorySwap": l.memory_bytes,
            "PidsLimit": l.pids,
            "NanoCpus": (l.cpus * 1e9) as u64,
            "NetworkMode": "none",
            "Privileged": false,
            "ReadonlyRootfs": true,
            "CapDrop": ["ALL"],
            "SecurityOpt": [
                "no-new-privileges",
                format!("seccomp={}", seccomp_profile(policy)),
            ],
            "IpcMode": "private",
            "CgroupnsMode": "private",
            "ShmSize": l.disk_bytes,
            "Tmpfs": tmpfs,
            "Binds": binds,
            "MaskedPaths": MASKED_PATHS,
            "ReadonlyPaths": READONLY_PATHS,
            "LogConfig": {"Type": "none", "Config": {}},
            "Ulimits": [
                {"Name": "fsize", "Soft": l.disk_bytes, "Hard": l.disk_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
                {"Name": "nofile", "Soft": 4096, "Hard": 4096},
            ],
        }
    })
}

/// The docker tier.
pub struct DockerSandbox {
    policy: Policy,
    sock: PathBuf,
    image: String,
    /// "Docker 20.10.24 (API 1.41)".
    daemon: String,
}

/// Checks a daemon answers on the socket (blocking, with a short timeout).
pub fn ping(sock: &Path) -> Result<(), String> {
    match request_blocking(sock, "GET", "/_ping", Duration::from_secs(2))? {
        r if r.status == 200 => Ok(()),
        r => Err(format!(
            "the Docker daemon answered /_ping with HTTP {}",
            r.status
        )),
    }
}

fn api_message(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string())
}

/// Percent-encodes a path segment or query value.
fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
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
        let r = request_blocking(
            &sock,
            "GET",
            &format!("{API}/images/{}/json", enc(&image)),
            t,
        )
        .map_err(unavailable)?;
        match r.status {
            200 => {}
            404 => {
                return Err(unavailable(format!(
                    "image '{image}' is not in the Docker daemon at {} and Baton never pulls images: build the default one with `make sandbox-docker-image`, or name a local image with docker_image / BATON_DOCKER_IMAGE",
                    sock.display()
                )));
            }
            s => {
                return Err(unavailable(format!(
                    "cannot inspect image '{image}': HTTP {s}: {}",
                    api_message(&r)
                )));
            }
        }
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

fn check(r: &Response, what: &str) -> Result<(), Error> {
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "Docker {what} failed with HTTP {}: {}",
            r.status,
            api_message(r)
        )))
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

/// Opens the container's attach stream (an upgraded connection); returns the stream and any
/// stream bytes that came with the response head.
async fn attach(sock: &Path, id: &str, stdin: bool) -> Result<(UnixStream, Vec<u8>), Error> {
    let mut s = UnixStream::connect(sock)
        .await
        .map_err(|e| Error::Runtime(format!("cannot reach Docker at {}: {e}", sock.display())))?;
    let q = if stdin { "&stdin=1" } else { "" };
    s.write_all(
        format!(
            "POST {API}/containers/{id}/attach?stream=1&stdout=1&stderr=1{q} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(Error::Runtime(
                "the Docker daemon closed the attach connection".into(),
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if raw.len() > 64 << 10 {
            return Err(Error::Runtime(
                "malformed attach response from the Docker daemon".into(),
            ));
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 && status != 200 {
        return Err(Error::Runtime(format!(
            "Docker container attach failed: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok((s, raw[split + 4..].to_vec()))
}

/// How a container ended, from its inspect document.
struct Ended {
    exit_code: Option<i32>,
    signal: Option<i32>,
    oom: bool,
}

fn ended(state: &Value, timed_out: bool) -> Ended {
    let oom = state["OOMKilled"].as_bool().unwrap_or(false);
    let code = state["ExitCode"].as_i64().map(|c| c as i32);
    // The runtime reports a death by signal N as 128 + N.
    match code {
        _ if timed_out => Ended {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            oom,
        },
        Some(c) if (129..=192).contains(&c) => Ended {
            exit_code: None,
            signal: Some(c - 128),
            oom,
        },
        Some(c) => Ended {
            exit_code: Some(c),
            signal: None,
            oom,
        },
        None => Ended {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            oom,
        },
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

fn write_input(dir: &Path, req: &ExecRequest) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, contents) in &req.files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
            let mut d = parent;
            while d != dir {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
                d = match d.parent() {
                    Some(x) => x,
                    None => break,
                };
            }
        }
        std::fs::write(&p, contents)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The `max` count of `pids.events` for the cgroup of host process `pid` (v1 pids hierarchy or
/// cgroup2), when this host can see it.
fn pids_events_max(pid: i64) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut candidates = Vec::new();
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "pids") {
            candidates.push(Path::new("/sys/fs/cgroup/pids").join(path));
        } else if ctrls.is_empty() {
            candidates.push(Path::new("/sys/fs/cgroup").join(path));
            candidates.push(Path::new("/sys/fs/cgroup/unified").join(path));
        }
    }
    candidates.into_iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("pids.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
    })
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
        let cap = limits.output_bytes;
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
            let msg = api_message(&started);
            let command = req.argv.first().cloned().unwrap_or_default();
            if msg.contains("executable file not found")
                || msg.contains("no such file or directory")
                || msg.contains("permission denied")
            {
                return Err(Error::Spawn {
                    command,
                    reason: msg,
                });
            }
            return Err(Error::Runtime(format!(
                "Docker container start failed with HTTP {}: {msg}",
                started.status
            )));
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
        let wait_path = format!("{API}/containers/{id}/wait");
        let mut pids_hits = 0;
        let waited =
            tokio::time::timeout(limits.time, request(&self.sock, "POST", &wait_path, None)).await;
        let timed_out = match waited {
            Ok(r) => {
                check(&r?, "container wait")?;
                false
            }
            Err(_) => {
                // Before the kill, while its cgroup exists: did it run into pids.max?
                pids_hits = self.pids_hits(id).await;
                // Time limit: SIGKILL to the container's init ends its whole PID namespace.
                let kill = format!("{API}/containers/{id}/kill?signal=KILL");
                let _ = call(&self.sock, "POST", &kill, None).await;
                let _ = tokio::time::timeout(
                    Duration::from_secs(10),
                    request(&self.sock, "POST", &wait_path, None),
                )
                .await;
                true
            }
        };
        let wall = start.elapsed();
        // The stream ends when the container's output closes; a little grace for the tail.
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
        let net = match &self.policy.net {
            NetMode::None => {
                "network: none (Docker's none network; IPv4/IPv6 sockets refused by seccomp)"
            }
            _ => "network: loopback only (Docker's none network)",
        };
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
            enforced: vec![
                format!(
                    "{} at {}: container from image {} as uid {}",
                    self.daemon,
                    self.sock.display(),
                    self.image,
                    doc["Config"]["User"].as_str().unwrap_or("?")
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
        // The same stream fed one byte at a time.
        let (mut o, mut e) = (Capped::new(100), Capped::new(2));
        let mut d = Demux::default();
        for b in &raw {
            d.feed(std::slice::from_ref(b), &mut o, &mut e);
        }
        assert_eq!(
            (o.buf.as_slice(), e.buf.as_slice()),
            (&b"out"[..], &b"er"[..])
        );
        assert!(e.truncated && !o.truncated);
    }

    #[test]
    fn create_body_carries_limits() {
        let p = Policy::new(Tier::Docker);
        let b = create_body(&p, &ExecRequest::new(["id"]), "img", (1000, 1000), None);
        let h = &b["HostConfig"];
        assert_eq!(h["ReadonlyRootfs"], true);
        assert_eq!(h["Privileged"], false);
        assert_eq!(h["CapDrop"], json!(["ALL"]));
        assert_eq!(h["PidsLimit"], 64);
        assert_eq!(h["NetworkMode"], "none");
        assert_eq!(h["LogConfig"]["Type"], "none");
        assert_eq!(b["User"], "1000:1000");
        assert_eq!(b["Labels"][LABEL], "1");
        assert!(
            h["Tmpfs"]["/work"]
                .as_str()
                .unwrap()
                .contains("size=104857600")
        );
        let sec: Vec<&str> = h["SecurityOpt"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(sec[0], "no-new-privileges");
        let prof: Value = serde_json::from_str(sec[1].strip_prefix("seccomp=").unwrap()).unwrap();
        assert!(
            prof["syscalls"][0]["names"]
                .as_array()
                .unwrap()
                .contains(&json!("ptrace"))
        );
        assert!(
            h["MaskedPaths"]
                .as_array()
                .unwrap()
                .contains(&json!("/sys"))
        );
    }

    #[test]
    fn files_go_in_through_a_readonly_bind() {
        let p = Policy::new(Tier::Docker);
        let b = create_body(
            &p,
            &ExecRequest::new(["python3", "main.py"]),
            "img",
            (1000, 1000),
            Some(Path::new("/tmp/in")),
        );
        assert_eq!(b["Cmd"][0], "/bin/sh");
        assert_eq!(b["Cmd"][4], "python3");
        assert!(
            b["HostConfig"]["Binds"]
                .as_array()
                .unwrap()
                .contains(&json!("/tmp/in:/.baton-input:ro"))
        );
    }

    #[test]
    fn loopback_allows_inet_sockets_and_none_does_not() {
        let mut p = Policy::new(Tier::Docker);
        let none = seccomp_profile(&p).to_string();
        p.net = NetMode::Loopback;
        let lo = seccomp_profile(&p).to_string();
        assert!(none.len() > lo.len());
        assert!(none.contains(&format!("\"value\":{}", libc::AF_INET6)));
    }

    #[test]
    fn the_socket_comes_from_the_policy_first() {
        let mut p = Policy::new(Tier::Docker);
        p.docker_host = Some("unix:///run/x.sock".into());
        assert_eq!(socket_path(&p).unwrap(), PathBuf::from("/run/x.sock"));
        p.docker_host = Some("/run/y.sock".into());
        assert_eq!(socket_path(&p).unwrap(), PathBuf::from("/run/y.sock"));
        p.docker_host = Some("tcp://10.0.0.1:2375".into());
        assert!(socket_path(&p).unwrap_err().contains("not a unix socket"));
        p.docker_image = Some("mine:1".into());
        assert_eq!(image_for(&p), "mine:1");
        let p = Policy::from_value(
            &json!({"tier": "docker", "docker_image": "img:2", "docker_host": "unix:///d.sock"}),
        )
        .unwrap();
        assert_eq!(
            (p.docker_image.as_deref(), p.docker_host.as_deref()),
            (Some("img:2"), Some("unix:///d.sock"))
        );
    }

    #[test]
    fn exit_statuses_are_decoded() {
        let e = ended(&json!({"ExitCode": 137, "OOMKilled": true}), false);
        assert_eq!((e.exit_code, e.signal, e.oom), (None, Some(9), true));
        let e = ended(&json!({"ExitCode": 3}), false);
        assert_eq!((e.exit_code, e.signal), (Some(3), None));
        let e = ended(&json!({"ExitCode": 0}), true);
        assert_eq!(e.signal, Some(libc::SIGKILL));
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

    #[tokio::test]
    async fn a_daemon_that_never_answers_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("d.sock");
        let _listener = tokio::net::UnixListener::bind(&sock).unwrap();
        let e = call_within(Duration::from_millis(200), &sock, "GET", "/x", None)
            .await
            .unwrap_err();
        assert!(e.to_string().contains("did not answer GET /x"), "{e}");
    }

    #[test]
    fn no_daemon_is_a_plain_refusal() {
        let dir = tempfile::tempdir().unwrap();
        let err = ping(&dir.path().join("none.sock")).unwrap_err();
        assert!(err.contains("does not exist"));
    }
}
