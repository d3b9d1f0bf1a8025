//! Baton's sandboxes: run code Baton does not trust, with enforced limits.
//!
//! A [`Policy`] (plain data) says which [`Tier`] isolates the code and with which limits,
//! mounts, network and syscall rules; [`open`] returns the [`Sandbox`] for that tier or an
//! error saying why this host cannot provide it; there is never a fallback to a weaker tier.
//! The [`scan`] module checks code before it runs.
//!
//! This is the one crate of Baton that spawns processes and contains `unsafe` code (fork,
//! mount, seccomp). `unsafe` is allowed only in the modules that need it (`linux`, `proxy`,
//! `doctor`, `oci::run`, `oci::netns`, `deploy::publish`), and every unsafe block says why it
//! is sound. [`deploy`] runs apps (long-running, their port published on loopback) on top.

pub mod bench;
pub mod cgroup;
pub mod deploy;
pub mod docker;
pub mod doctor;
pub mod linux;
pub mod oci;
pub mod policy;
pub mod proxy;
pub mod scan;
pub mod seccomp;
pub mod vm;
pub mod workspace;
mod yaml;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};

pub use doctor::{TierReport, doctor};
pub use policy::{Credential, Limits, Mount, NetMode, Policy, ScanAction, Tier, Upstream};
pub use proxy::NetAttempt;
use workspace::CappedWorkdir;

/// The crate's error. "Could not enforce" is always an error, never a quiet downgrade.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("invalid sandbox policy: {0}")]
    InvalidPolicy(String),
    #[error("invalid exec request: {0}")]
    InvalidRequest(String),
    /// The tier cannot run on this host (missing runtime, no KVM, no daemon...).
    #[error("sandbox tier '{tier}' is not available here: {reason}")]
    TierUnavailable { tier: Tier, reason: String },
    /// A part of the policy could not be put in place; nothing was run.
    #[error("could not enforce the sandbox policy: {0}")]
    Unenforceable(String),
    /// The command could not be started inside the sandbox (not found, not executable).
    #[error("cannot start '{command}' in the sandbox: {reason}")]
    Spawn { command: String, reason: String },
    /// The scanner found problems the policy blocks on.
    #[error("blocked by the security scan: {0}")]
    Blocked(String),
    /// A credential's variable is missing from Baton's environment (or cannot be a header).
    /// Names the variable, never a value; nothing was started.
    #[error(
        "sandbox credential for host '{host}': environment variable {var} {why} in Baton's environment"
    )]
    MissingCredential {
        var: String,
        host: String,
        why: String,
    },
    #[error("sandbox I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("sandbox runtime failed: {0}")]
    Runtime(String),
    /// A deployment did not come up: its build failed, it ended, or its health probe never
    /// answered as expected. It was stopped; `log_tail` is its last output.
    #[error("{reason}; the app's last output: {}", shown_tail(.log_tail))]
    Deploy { reason: String, log_tail: String },
}

fn shown_tail(tail: &str) -> String {
    if tail.trim().is_empty() {
        "(none)".into()
    } else {
        format!("\n{}", tail.trim_end())
    }
}

impl Error {
    /// Whether trying the same request again may succeed (host busy, transient I/O).
    pub fn is_retryable(&self) -> bool {
        matches!(self, Error::Io(_) | Error::Runtime(_))
    }
}

/// What to run.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ExecRequest {
    /// The command and its arguments; the command is looked up in the sandbox's PATH.
    pub argv: Vec<String>,
    /// Extra environment variables (the host's environment is never passed in).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Bytes fed to the command's stdin.
    #[serde(default)]
    pub stdin: Vec<u8>,
    /// A host directory to bind read-write as the workspace (`/work`) instead of a tmpfs.
    #[serde(default)]
    pub workdir: Option<PathBuf>,
    /// Files written into the workspace before the command starts (relative path -> contents).
    #[serde(default)]
    pub files: BTreeMap<String, String>,
}

impl ExecRequest {
    pub fn new<I, S>(argv: I) -> ExecRequest
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        ExecRequest {
            argv: argv.into_iter().map(Into::into).collect(),
            ..Default::default()
        }
    }

    pub fn validate(&self) -> Result<(), Error> {
        let Some(cmd) = self.argv.first() else {
            return Err(Error::InvalidRequest("no command given".into()));
        };
        if cmd.is_empty() {
            return Err(Error::InvalidRequest(
                "the command is an empty string".into(),
            ));
        }
        for a in &self.argv {
            if a.contains('\0') {
                return Err(Error::InvalidRequest(
                    "arguments must not contain NUL bytes".into(),
                ));
            }
        }
        for (k, v) in &self.env {
            if k.is_empty() || k.contains('=') || k.contains('\0') || v.contains('\0') {
                return Err(Error::InvalidRequest(format!(
                    "bad environment variable name or value: '{k}'"
                )));
            }
        }
        for name in self.files.keys() {
            let p = std::path::Path::new(name);
            if name.is_empty()
                || p.is_absolute()
                || name.contains('\0')
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                return Err(Error::InvalidRequest(format!(
                    "workspace file name '{name}' must be a relative path without '..'"
                )));
            }
        }
        if let Some(w) = &self.workdir
            && !w.is_dir()
        {
            return Err(Error::InvalidRequest(format!(
                "workdir {} is not a directory",
                w.display()
            )));
        }
        Ok(())
    }
}

/// Why the command stopped.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// It exited on its own.
    Exited,
    /// The wall-clock limit was reached; the whole tree was killed.
    TimeLimit,
    /// The memory limit was reached and the kernel killed it.
    MemoryLimit,
    /// The process limit was reached (fork/clone failed inside).
    PidsLimit,
    /// The workspace or /tmp filled up, or a file hit the size limit.
    DiskFull,
    /// A signal ended it.
    Signal,
}

impl StopReason {
    pub fn as_str(self) -> &'static str {
        match self {
            StopReason::Exited => "exited",
            StopReason::TimeLimit => "time_limit",
            StopReason::MemoryLimit => "memory_limit",
            StopReason::PidsLimit => "pids_limit",
            StopReason::DiskFull => "disk_full",
            StopReason::Signal => "signal",
        }
    }
}

/// What came back from one execution; also what the run log records.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct ExecOutput {
    pub tier: Tier,
    /// The exit code, when the command exited.
    pub exit_code: Option<i32>,
    /// The signal that ended it, when one did.
    pub signal: Option<i32>,
    pub stop_reason: StopReason,
    /// Every limit that was hit during the run (the stop reason is the decisive one).
    pub limits_hit: Vec<StopReason>,
    pub stdout: String,
    pub stdout_truncated: bool,
    pub stderr: String,
    pub stderr_truncated: bool,
    #[serde(with = "millis")]
    pub wall_time: Duration,
    #[serde(with = "opt_millis")]
    pub cpu_time: Option<Duration>,
    pub peak_memory_bytes: Option<u64>,
    /// Connection attempts through the allow-list proxy.
    pub network: Vec<NetAttempt>,
    /// What was enforced, one line each (namespaces, seccomp, landlock, cgroups, rlimits).
    pub enforced: Vec<String>,
}

impl ExecOutput {
    /// True when the command exited with status 0 on its own: a run stopped by a limit (a
    /// fork bomb whose shell still exited 0, a write cut short by the disk limit) never is.
    pub fn success(&self) -> bool {
        self.stop_reason == StopReason::Exited && self.exit_code == Some(0)
    }

    /// The status a command-line front end exits with: the command's exit code, or 128 + the
    /// signal that ended it; a run stopped by a limit is never 0 (its own non-zero status, or 1).
    pub fn exit_status(&self) -> i32 {
        let own = match (self.exit_code, self.signal) {
            (Some(c), _) => c,
            (None, Some(s)) => 128 + s,
            (None, None) => 1,
        };
        if own == 0 && !self.success() { 1 } else { own }
    }
}

mod millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_f64(d.as_secs_f64() * 1000.0)
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let ms = f64::deserialize(d)?;
        Ok(Duration::from_secs_f64((ms / 1000.0).max(0.0)))
    }
}

mod opt_millis {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_some(&(d.as_secs_f64() * 1000.0)),
            None => s.serialize_none(),
        }
    }
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Duration>, D::Error> {
        Ok(
            Option::<f64>::deserialize(d)?
                .map(|ms| Duration::from_secs_f64((ms / 1000.0).max(0.0))),
        )
    }
}

/// A place to run untrusted commands. One method; every tier implements it.
#[async_trait]
pub trait Sandbox: Send + Sync {
    fn tier(&self) -> Tier;
    fn policy(&self) -> &Policy;
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error>;
}

#[async_trait]
impl<T: Sandbox + ?Sized> Sandbox for Arc<T> {
    fn tier(&self) -> Tier {
        (**self).tier()
    }
    fn policy(&self) -> &Policy {
        (**self).policy()
    }
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        (**self).exec(req).await
    }
}

/// The sandbox for `policy.tier`, or why this host cannot provide it. Never another tier.
pub fn open(policy: Policy) -> Result<Arc<dyn Sandbox>, Error> {
    policy.validate()?;
    Ok(match policy.tier {
        Tier::Process => Arc::new(CappedWorkdir(linux::ProcessSandbox::new(policy)?)),
        Tier::Oci => Arc::new(CappedWorkdir(oci::OciSandbox::new(
            policy,
            oci::Engine::Oci,
        )?)),
        Tier::Gvisor => Arc::new(CappedWorkdir(oci::OciSandbox::new(
            policy,
            oci::Engine::Gvisor,
        )?)),
        // It takes no workdir (refused with a reason).
        Tier::Microvm => Arc::new(vm::MicroVm::new(policy)?),
        Tier::Docker => Arc::new(CappedWorkdir(docker::DockerSandbox::new(policy)?)),
    })
}

/// Decides the stop reason from what was observed, most decisive first.
pub(crate) fn stop_reason(
    timed_out: bool,
    oom_kills: u64,
    disk_full: bool,
    pids_hits: u64,
    signal: Option<i32>,
) -> (StopReason, Vec<StopReason>) {
    let mut hit = Vec::new();
    if timed_out {
        hit.push(StopReason::TimeLimit);
    }
    if oom_kills > 0 {
        hit.push(StopReason::MemoryLimit);
    }
    if disk_full || signal == Some(libc::SIGXFSZ) {
        hit.push(StopReason::DiskFull);
    }
    if pids_hits > 0 {
        hit.push(StopReason::PidsLimit);
    }
    let reason = hit.first().copied().unwrap_or(if signal.is_some() {
        StopReason::Signal
    } else {
        StopReason::Exited
    });
    (reason, hit)
}

/// Keeps the first `cap` bytes of a stream and counts the rest.
#[derive(Debug, Default)]
pub(crate) struct Capped {
    pub buf: Vec<u8>,
    pub cap: usize,
    pub truncated: bool,
}

impl Capped {
    pub fn new(cap: u64) -> Capped {
        Capped {
            buf: Vec::new(),
            cap: usize::try_from(cap).unwrap_or(usize::MAX),
            truncated: false,
        }
    }
    pub fn push(&mut self, data: &[u8]) {
        let room = self.cap.saturating_sub(self.buf.len());
        if data.len() > room {
            self.truncated = true;
        }
        self.buf.extend_from_slice(&data[..data.len().min(room)]);
    }
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.buf).into_owned()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_validated() {
        assert!(ExecRequest::default().validate().is_err());
        assert!(ExecRequest::new(["true"]).validate().is_ok());
        let mut r = ExecRequest::new(["true"]);
        r.files.insert("../escape".into(), String::new());
        assert!(
            r.validate()
                .unwrap_err()
                .to_string()
                .contains("without '..'")
        );
        let mut r = ExecRequest::new(["true"]);
        r.files.insert("/etc/x".into(), String::new());
        assert!(r.validate().is_err());
        let mut r = ExecRequest::new(["true"]);
        r.env.insert("A=B".into(), String::new());
        assert!(r.validate().is_err());
    }

    #[test]
    fn stop_reasons_have_a_precedence() {
        assert_eq!(
            stop_reason(true, 1, false, 0, Some(9)).0,
            StopReason::TimeLimit
        );
        assert_eq!(
            stop_reason(false, 1, false, 0, Some(9)).0,
            StopReason::MemoryLimit
        );
        assert_eq!(
            stop_reason(false, 0, false, 0, Some(libc::SIGXFSZ)).0,
            StopReason::DiskFull
        );
        assert_eq!(
            stop_reason(false, 0, false, 3, None).0,
            StopReason::PidsLimit
        );
        assert_eq!(
            stop_reason(false, 0, false, 0, Some(15)).0,
            StopReason::Signal
        );
        assert_eq!(stop_reason(false, 0, false, 0, None).0, StopReason::Exited);
    }

    fn output(stop: StopReason, exit_code: Option<i32>, signal: Option<i32>) -> ExecOutput {
        ExecOutput {
            tier: Tier::Process,
            exit_code,
            signal,
            stop_reason: stop,
            limits_hit: if stop == StopReason::Exited || stop == StopReason::Signal {
                Vec::new()
            } else {
                vec![stop]
            },
            stdout: String::new(),
            stdout_truncated: false,
            stderr: String::new(),
            stderr_truncated: false,
            wall_time: Duration::ZERO,
            cpu_time: None,
            peak_memory_bytes: None,
            network: Vec::new(),
            enforced: Vec::new(),
        }
    }

    #[test]
    fn a_run_stopped_by_a_limit_is_never_a_success() {
        let ok = output(StopReason::Exited, Some(0), None);
        assert!(ok.success());
        assert_eq!(ok.exit_status(), 0);
        assert_eq!(output(StopReason::Exited, Some(3), None).exit_status(), 3);
        assert_eq!(
            output(StopReason::Signal, None, Some(15)).exit_status(),
            143
        );
        // A fork bomb's shell exits 0 while the pids limit stops its children.
        for stop in [
            StopReason::PidsLimit,
            StopReason::DiskFull,
            StopReason::MemoryLimit,
            StopReason::TimeLimit,
        ] {
            let o = output(stop, Some(0), None);
            assert!(!o.success(), "{stop:?}");
            assert_eq!(o.exit_status(), 1, "{stop:?}");
        }
        assert_eq!(
            output(StopReason::TimeLimit, None, Some(9)).exit_status(),
            137
        );
        assert_eq!(output(StopReason::DiskFull, Some(2), None).exit_status(), 2);
    }

    #[test]
    fn capped_output_is_flagged() {
        let mut c = Capped::new(4);
        c.push(b"ab");
        c.push(b"cdef");
        assert_eq!(c.buf, b"abcd");
        assert!(c.truncated);
    }
}
