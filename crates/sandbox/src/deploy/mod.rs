//! Deployments: an app started from a directory of files, its port published on the host's
//! loopback, checked by a health probe.
//!
//! A [`DeployTarget`] deploys a [`DeploySpec`] (the files, an optional build command, the
//! start command, the port the app listens on inside, the health probe, limits) and answers
//! with a [`Deployment`] (its id, `http://127.0.0.1:PORT`, the health answer, the log tail).
//! Two targets are built in:
//!
//! - [`LocalSandbox`] (`local-sandbox`): the build, then the app as a long-running process-tier
//!   sandbox with a private network namespace (`loopback`), its port published by a forwarder
//!   of Baton's (`publish`); it keeps the sandbox's limits, with the time limit as its lifetime.
//! - [`DockerTarget`] (`docker`): a container with the files bound at `/app` and the port
//!   published on 127.0.0.1 by the daemon.
//!
//! `deploy` waits until `GET <health>` answers the expected status, or stops the app and fails
//! with [`Error::Deploy`] (why, and the app's last output) once the startup timeout passes or
//! the app ends.

mod docker;
mod local;
mod publish;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime};

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use docker::{DEFAULT_DOCKER_IMAGE, DockerTarget};
pub use local::LocalSandbox;
pub use publish::Published;

use crate::{Error, Limits};

/// How long a deployed app lives unless its limits say otherwise.
pub const DEFAULT_LIFETIME: Duration = Duration::from_secs(30 * 60);
/// How long `deploy` waits for the health probe by default.
pub const DEFAULT_STARTUP_TIMEOUT: Duration = Duration::from_secs(30);
/// How long a build may take by default.
pub const DEFAULT_BUILD_TIMEOUT: Duration = Duration::from_secs(300);
/// Characters of the health answer's body a [`Deployment`] keeps.
pub const BODY_SNIPPET: usize = 512;

/// What to deploy.
#[derive(Clone, Debug)]
pub struct DeploySpec {
    /// The app's files (copied: the app never changes them).
    pub dir: PathBuf,
    /// Run once in the copy before the app starts (a shell command); a failure stops the deploy.
    pub build: Option<String>,
    /// Starts the app (a shell command, run in the copy; `PORT` is set to `port`).
    pub start: String,
    /// The TCP port the app listens on inside (on 127.0.0.1 or 0.0.0.0).
    pub port: u16,
    /// The path `GET` probes (default `/health`).
    pub health_path: String,
    /// The status the probe must answer (default 200).
    pub expected_status: u16,
    /// How long the app has to answer the probe.
    pub startup_timeout: Duration,
    /// How long the build may take.
    pub build_timeout: Duration,
    /// The app's limits; `time` is its lifetime (the whole tree is killed then).
    pub limits: Limits,
    /// Extra environment variables for the build and the app.
    pub env: BTreeMap<String, String>,
}

impl DeploySpec {
    /// A spec with the defaults: probe `GET /health` for 200 within 30 s, the default sandbox
    /// limits with a 30-minute lifetime.
    pub fn new(dir: impl Into<PathBuf>, start: impl Into<String>, port: u16) -> DeploySpec {
        DeploySpec {
            dir: dir.into(),
            build: None,
            start: start.into(),
            port,
            health_path: "/health".into(),
            expected_status: 200,
            startup_timeout: DEFAULT_STARTUP_TIMEOUT,
            build_timeout: DEFAULT_BUILD_TIMEOUT,
            limits: Limits {
                time: DEFAULT_LIFETIME,
                ..Limits::default()
            },
            env: BTreeMap::new(),
        }
    }

    /// Every problem is an error naming the field.
    pub fn validate(&self) -> Result<(), Error> {
        let bad = |m: String| Err(Error::InvalidRequest(m));
        if !self.dir.is_dir() {
            return bad(format!(
                "deploy: dir {} is not a directory",
                self.dir.display()
            ));
        }
        if self.start.trim().is_empty() {
            return bad("deploy: the start command is empty".into());
        }
        if self.build.as_deref().is_some_and(|b| b.trim().is_empty()) {
            return bad("deploy: the build command is empty (leave it out instead)".into());
        }
        for (what, c) in [("start", Some(&self.start)), ("build", self.build.as_ref())] {
            if c.is_some_and(|c| c.contains('\0')) {
                return bad(format!("deploy: the {what} command contains a NUL byte"));
            }
        }
        if self.port == 0 {
            return bad("deploy: port must be between 1 and 65535, not 0".into());
        }
        if !self.health_path.starts_with('/')
            || self
                .health_path
                .chars()
                .any(|c| c.is_whitespace() || c.is_control())
        {
            return bad(format!(
                "deploy: the health path '{}' must start with '/' and contain no spaces or control characters",
                self.health_path
            ));
        }
        if !(100..=599).contains(&self.expected_status) {
            return bad(format!(
                "deploy: the expected status {} is not an HTTP status (100-599)",
                self.expected_status
            ));
        }
        if self.startup_timeout.is_zero() || self.build_timeout.is_zero() {
            return bad("deploy: the startup and build timeouts must be above zero".into());
        }
        if self.startup_timeout > self.limits.time {
            return bad(format!(
                "deploy: the startup timeout ({}) is longer than the app's lifetime ({})",
                humantime::format_duration(self.startup_timeout),
                humantime::format_duration(self.limits.time)
            ));
        }
        for k in self.env.keys() {
            if k.is_empty() || k.contains('=') || k.contains('\0') {
                return bad(format!("deploy: bad environment variable name '{k}'"));
            }
        }
        Ok(())
    }

    /// The environment of the build and the app: `env` and `PORT`.
    fn env_with_port(&self) -> BTreeMap<String, String> {
        let mut env = self.env.clone();
        env.insert("PORT".into(), self.port.to_string());
        env
    }
}

/// The health probe's answer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Health {
    pub status: u16,
    /// The start of the body (at most [`BODY_SNIPPET`] characters).
    pub body: String,
}

/// A deployed app.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Deployment {
    pub id: String,
    /// The target's name (`local-sandbox`, `docker`).
    pub target: String,
    /// Where the app answers on the host: `http://127.0.0.1:PORT`.
    pub url: String,
    /// How the app was started.
    pub command: String,
    /// The last health answer (at deploy time, or when `status` probed again).
    pub health: Health,
    /// RFC 3339, UTC.
    pub started_at: String,
    /// When its lifetime ends (RFC 3339, UTC): it is stopped then.
    pub expires_at: String,
    /// Whether the app still runs.
    pub running: bool,
    /// The app's last output.
    pub log_tail: String,
}

/// Somewhere apps can be deployed.
#[async_trait]
pub trait DeployTarget: Send + Sync {
    /// `local-sandbox`, `docker`, ...
    fn name(&self) -> &str;
    /// Builds and starts the app, publishes its port, and waits until its health probe answers.
    async fn deploy(&self, spec: DeploySpec) -> Result<Deployment, Error>;
    /// Stops the app (every process of it) and removes what was made for it.
    async fn stop(&self, id: &str) -> Result<(), Error>;
    /// The deployment now: running or not, a fresh health answer when it runs, the log tail.
    async fn status(&self, id: &str) -> Result<Deployment, Error>;
    /// The ids of the deployments this target holds (running or ended, not yet stopped).
    fn ids(&self) -> Vec<String>;
}

/// A new deployment id: the target's short prefix and 16 hex digits.
fn new_id(prefix: &str) -> String {
    static N: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0);
    let mixed = nanos
        ^ (u64::from(std::process::id()) << 40)
        ^ N.fetch_add(1, Ordering::Relaxed)
            .wrapping_mul(0x9e37_79b9_7f4a_7c15);
    format!("{prefix}-{mixed:016x}")
}

fn rfc3339(t: SystemTime) -> String {
    humantime::format_rfc3339_seconds(t).to_string()
}

/// One `GET path` against `addr` (HTTP/1.0, so the answer is never chunked).
pub fn probe(addr: SocketAddr, path: &str, timeout: Duration) -> Result<Health, String> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect_timeout(&addr, timeout)
        .map_err(|e| format!("cannot connect to {addr}: {e}"))?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    s.write_all(
        format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\nUser-Agent: baton-deploy\r\n\r\n")
            .as_bytes(),
    )
    .map_err(|e| format!("cannot send the request to {addr}: {e}"))?;
    let mut raw = Vec::new();
    let _ = s.take(64 << 10).read_to_end(&mut raw);
    if raw.is_empty() {
        return Err(format!(
            "the connection to {addr} closed without an answer (is the app listening on its port yet?)"
        ));
    }
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .lines()
        .next()
        .and_then(|l| {
            let mut w = l.split_whitespace();
            w.next()
                .filter(|v| v.starts_with("HTTP/"))
                .and(w.next())
                .and_then(|c| c.parse::<u16>().ok())
        })
        .ok_or_else(|| {
            format!(
                "the answer from {addr} is not HTTP: {}",
                text.chars().take(80).collect::<String>()
            )
        })?;
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.chars().take(BODY_SNIPPET).collect())
        .unwrap_or_default();
    Ok(Health { status, body })
}

/// Probes `addr` every 100 ms until it answers `spec`'s status; `ended` says how the app
/// ended when it has (then waiting stops at once). The error says why, for [`Error::Deploy`].
async fn wait_healthy<F, Fut>(
    addr: SocketAddr,
    spec: &DeploySpec,
    mut ended: F,
) -> Result<Health, String>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<String>>,
{
    let deadline = Instant::now() + spec.startup_timeout;
    let want = format!("GET {} with {}", spec.health_path, spec.expected_status);
    loop {
        if let Some(how) = ended().await {
            return Err(format!("the app {how} before it answered {want}"));
        }
        let path = spec.health_path.clone();
        let left = deadline.saturating_duration_since(Instant::now());
        let per_try = left.clamp(Duration::from_millis(200), Duration::from_secs(2));
        let last = match tokio::task::spawn_blocking(move || probe(addr, &path, per_try)).await {
            Ok(Ok(h)) if h.status == spec.expected_status => return Ok(h),
            Ok(Ok(h)) => format!(
                "it answered {} ({})",
                h.status,
                h.body.chars().take(120).collect::<String>().trim()
            ),
            Ok(Err(e)) => e,
            Err(e) => format!("the probe failed: {e}"),
        };
        if Instant::now() >= deadline {
            if let Some(how) = ended().await {
                return Err(format!("the app {how} before it answered {want}"));
            }
            return Err(format!(
                "the app did not answer {want} within {}: {last}",
                humantime::format_duration(spec.startup_timeout)
            ));
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn specs_are_validated_field_by_field() {
        let dir = tempfile::tempdir().unwrap();
        let ok = DeploySpec::new(dir.path(), "python3 app.py", 8000);
        ok.validate().unwrap();
        let cases: Vec<(DeploySpec, &str)> = vec![
            (DeploySpec::new("/nonexistent/x", "a", 1), "not a directory"),
            (
                DeploySpec::new(dir.path(), " ", 1),
                "start command is empty",
            ),
            (DeploySpec::new(dir.path(), "a", 0), "port must be"),
            (
                DeploySpec {
                    health_path: "health".into(),
                    ..ok.clone()
                },
                "must start with '/'",
            ),
            (
                DeploySpec {
                    health_path: "/a b".into(),
                    ..ok.clone()
                },
                "no spaces",
            ),
            (
                DeploySpec {
                    expected_status: 42,
                    ..ok.clone()
                },
                "not an HTTP status",
            ),
            (
                DeploySpec {
                    build: Some("".into()),
                    ..ok.clone()
                },
                "build command is empty",
            ),
            (
                DeploySpec {
                    startup_timeout: Duration::from_secs(3600),
                    ..ok.clone()
                },
                "longer than the app's lifetime",
            ),
        ];
        for (spec, want) in cases {
            let e = spec.validate().unwrap_err().to_string();
            assert!(e.contains(want), "{e} should say {want}");
        }
    }

    #[test]
    fn ids_differ() {
        let a = new_id("ls");
        let b = new_id("ls");
        assert_ne!(a, b);
        assert!(a.starts_with("ls-") && a.len() == 19, "{a}");
    }

    #[test]
    fn probe_reads_status_and_body() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let t = std::thread::spawn(move || {
            let (mut c, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let n = c.read(&mut buf).unwrap();
            let req = String::from_utf8_lossy(&buf[..n]).to_string();
            c.write_all(
                b"HTTP/1.0 503 Service Unavailable\r\nContent-Type: text/plain\r\n\r\nwarming up",
            )
            .unwrap();
            req
        });
        let h = probe(addr, "/health", Duration::from_secs(2)).unwrap();
        assert_eq!(h.status, 503);
        assert_eq!(h.body, "warming up");
        assert!(t.join().unwrap().starts_with("GET /health HTTP/1.0\r\n"));
        // Nobody listening any more: a clear error, not a panic.
        let e = probe(addr, "/health", Duration::from_millis(300)).unwrap_err();
        assert!(e.contains(&addr.to_string()), "{e}");
    }
}
