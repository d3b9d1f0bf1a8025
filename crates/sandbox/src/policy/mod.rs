//! The sandbox policy as plain data: which tier, which limits, what is mounted where, which
//! network, which syscalls are denied. Every backend reads the same values; tests inspect them.

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod credential;
mod mounts;
mod parse;

use crate::Error;
pub use credential::{Credential, Upstream};
pub use mounts::{DEVICES, ETC_ENTRIES, SYSTEM_DIRS, WORKSPACE};
use parse::{duration_str, split_mount, string_list, val_str};
pub use parse::{parse_cpus, parse_duration, parse_pids, parse_size};

/// How strongly a command is isolated. Each tier is a separate backend; a policy naming a tier
/// the host cannot provide fails, it never runs in a weaker one.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Tier {
    /// Namespaces + seccomp + landlock + cgroups, launched by this crate (the default).
    Process,
    /// An OCI bundle run by `crun` or `runc`.
    Oci,
    /// The same bundle under gVisor's `runsc` (ptrace platform).
    Gvisor,
    /// A KVM microVM (QEMU `-M microvm` or Firecracker).
    Microvm,
    /// A container through the Docker Engine API.
    Docker,
}

impl Tier {
    pub const ALL: [Tier; 5] = [
        Tier::Process,
        Tier::Oci,
        Tier::Gvisor,
        Tier::Microvm,
        Tier::Docker,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Process => "process",
            Tier::Oci => "oci",
            Tier::Gvisor => "gvisor",
            Tier::Microvm => "microvm",
            Tier::Docker => "docker",
        }
    }
}

impl fmt::Display for Tier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Tier {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        Tier::ALL
            .into_iter()
            .find(|t| t.as_str() == s)
            .ok_or_else(|| {
                Error::InvalidPolicy(format!(
                    "unknown tier '{s}': expected one of process, oci, gvisor, microvm, docker"
                ))
            })
    }
}

/// Network access from inside the sandbox.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "mode", content = "hosts")]
pub enum NetMode {
    /// A private network namespace whose only interface, loopback, is down: no network at all.
    None,
    /// A private network namespace with its own loopback up: the sandbox can talk to itself.
    Loopback,
    /// Loopback plus an HTTP(S) proxy run by Baton that reaches only these hosts
    /// (`host`, `host:port` or `*.domain`); every attempt is logged.
    Allow(Vec<String>),
}

impl FromStr for NetMode {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self, Error> {
        match s {
            "none" => Ok(NetMode::None),
            "loopback" => Ok(NetMode::Loopback),
            _ => match s.strip_prefix("allow:") {
                Some(list) => {
                    let hosts: Vec<String> = list
                        .split(',')
                        .map(str::trim)
                        .filter(|h| !h.is_empty())
                        .map(String::from)
                        .collect();
                    if hosts.is_empty() {
                        return Err(Error::InvalidPolicy(
                            "`allow:` needs at least one host: allow:host[,host...]".into(),
                        ));
                    }
                    for h in &hosts {
                        validate_host_pattern(h)?;
                    }
                    Ok(NetMode::Allow(hosts))
                }
                None => Err(Error::InvalidPolicy(format!(
                    "unknown network mode '{s}': expected none, loopback or allow:host[,host...]"
                ))),
            },
        }
    }
}

fn validate_host_pattern(h: &str) -> Result<(), Error> {
    let (host, port) = match h.rsplit_once(':') {
        Some((host, port)) if !host.contains(':') => (host, Some(port)),
        _ => (h, None),
    };
    if let Some(p) = port {
        p.parse::<u16>()
            .map_err(|_| Error::InvalidPolicy(format!("bad port in allowed host '{h}'")))?;
    }
    let name = host.strip_prefix("*.").unwrap_or(host);
    if name.is_empty()
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
    {
        return Err(Error::InvalidPolicy(format!(
            "bad allowed host '{h}': expected host, host:port or *.domain"
        )));
    }
    Ok(())
}

/// What the scanner's findings do to an execution, per severity.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ScanAction {
    Block,
    Warn,
    Off,
}

/// Resource limits. Every one is enforced (cgroups first, rlimits second) or the run fails.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Limits {
    /// CPUs the sandbox may use (fractions allowed): a CFS quota.
    pub cpus: f64,
    /// Memory in bytes (includes files written to the tmpfs workspace and /tmp).
    pub memory_bytes: u64,
    /// Processes and threads at once.
    pub pids: u32,
    /// Size of the writable tmpfs workspace and of /tmp, each; also the largest file (RLIMIT_FSIZE).
    pub disk_bytes: u64,
    /// Wall-clock limit; the whole process tree is killed when it is reached.
    #[serde(with = "duration_str")]
    pub time: Duration,
    /// Bytes kept of stdout and of stderr each; the rest is read and discarded.
    pub output_bytes: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            cpus: 1.0,
            memory_bytes: 512 << 20,
            pids: 64,
            disk_bytes: 100 << 20,
            time: Duration::from_secs(10),
            output_bytes: 1 << 20,
        }
    }
}

/// One entry of the sandbox's filesystem, in the order it is built.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Mount {
    /// A host path bound read-only (nosuid, nodev).
    ReadOnly { source: PathBuf, target: PathBuf },
    /// A host directory bound read-write (nosuid, nodev).
    ReadWrite { source: PathBuf, target: PathBuf },
    /// A fresh tmpfs of `size_bytes`, owned by the sandbox user when `owned`.
    Tmpfs {
        target: PathBuf,
        size_bytes: u64,
        mode: u32,
        owned: bool,
    },
    /// A host device node bound into the sandbox's private /dev.
    Device { source: PathBuf, target: PathBuf },
    /// A fresh procfs for the sandbox's PID namespace (its /proc/sys read-only).
    Proc { target: PathBuf },
    /// A symbolic link.
    Symlink { target: PathBuf, link_to: PathBuf },
    /// A small generated file (passwd, group, hosts), read-only.
    File { target: PathBuf, contents: String },
}

impl Mount {
    pub fn target(&self) -> &Path {
        match self {
            Mount::ReadOnly { target, .. }
            | Mount::ReadWrite { target, .. }
            | Mount::Tmpfs { target, .. }
            | Mount::Device { target, .. }
            | Mount::Proc { target }
            | Mount::Symlink { target, .. }
            | Mount::File { target, .. } => target,
        }
    }
}

/// The sandbox policy. Build one with [`Policy::new`] or [`Policy::from_file`]; everything a
/// backend enforces is in here.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct Policy {
    pub tier: Tier,
    pub limits: Limits,
    pub net: NetMode,
    /// The filesystem, in build order (see [`Policy::mounts_for`] for the one used by a run).
    pub mounts: Vec<Mount>,
    /// Runtimes the code may use (`python3`, `node`, `bash`, `cc`...): each must resolve to an
    /// executable under a read-only mount, or the run fails.
    pub runtimes: Vec<String>,
    /// Syscalls that fail with EPERM inside (plus namespace-creating `clone` flags and raw sockets).
    pub syscall_deny: Vec<String>,
    /// The uid/gid the code runs as inside.
    pub uid: u32,
    /// Host uid the sandbox's root (setup only) maps to; the code's uid maps to `host_uid_base + uid`.
    pub host_uid_base: u32,
    /// Apply landlock rules (when the kernel supports landlock; what was enforced is reported).
    pub landlock: bool,
    /// Scanner action per severity: high, medium, low.
    pub scan: BTreeMap<String, ScanAction>,
    /// Advisory list (JSON) the scanner checks dependency manifests against, when set.
    pub advisories: Option<PathBuf>,
    pub hostname: String,
    /// docker tier: the image to run (never pulled; default `baton-sandbox:debian`, see
    /// `make sandbox-docker-image`); `BATON_DOCKER_IMAGE` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_image: Option<String>,
    /// docker tier: the daemon's socket (`unix:///path` or a path); `DOCKER_HOST` when unset.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub docker_host: Option<String>,
    /// Headers the allow-list proxy adds to requests to some of the allowed hosts, their
    /// values read from Baton's environment (never passed into the sandbox).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub credentials: Vec<Credential>,
}

/// The syscalls denied by default: every call Docker's default profile refuses to a
/// container without capabilities, plus the io_uring family (Docker 25+ and gVisor refuse it
/// too: its rings perform I/O that no syscall filter sees, and it has been a leading source of
/// kernel escapes). Grouped by what they would give sandboxed code; none is needed to run
/// ordinary programs. `clone` with namespace flags, `clone3` (ENOSYS, so libc falls back to
/// `clone`) and raw, packet and vsock sockets are refused by argument filters in addition
/// (see `seccomp.rs`). Names that do not exist on this architecture are left out.
pub const DEFAULT_SYSCALL_DENY: &[&str] = &[
    // Other processes' memory and descriptors.
    "ptrace",
    "process_vm_readv",
    "process_vm_writev",
    "kcmp",
    "pidfd_getfd",
    "process_madvise",
    // Mounts, old and new API.
    "mount",
    "umount2",
    "pivot_root",
    "chroot",
    "fsopen",
    "fsconfig",
    "fsmount",
    "fspick",
    "move_mount",
    "open_tree",
    "mount_setattr",
    // Kernel programs, tracing and monitoring.
    "bpf",
    "perf_event_open",
    "fanotify_init",
    "lookup_dcookie",
    // Kernels and modules.
    "kexec_load",
    "kexec_file_load",
    "init_module",
    "finit_module",
    "delete_module",
    // Namespaces.
    "unshare",
    "setns",
    // The kernel keyring (not namespaced).
    "keyctl",
    "add_key",
    "request_key",
    // Page-fault handling from user space (used to win kernel races).
    "userfaultfd",
    // Asynchronous I/O rings.
    "io_uring_setup",
    "io_uring_enter",
    "io_uring_register",
    // File handles (bypass path checks).
    "open_by_handle_at",
    "name_to_handle_at",
    // NUMA memory placement (other processes' pages).
    "mbind",
    "set_mempolicy",
    "get_mempolicy",
    "migrate_pages",
    "move_pages",
    "set_mempolicy_home_node",
    // Port I/O.
    "iopl",
    "ioperm",
    // Host-wide state: swap, reboot, accounting, quotas, kernel log, terminals, clocks, names.
    "swapon",
    "swapoff",
    "reboot",
    "acct",
    "quotactl",
    "quotactl_fd",
    "syslog",
    "vhangup",
    "settimeofday",
    "clock_settime",
    "clock_adjtime",
    "adjtimex",
    "sethostname",
    "setdomainname",
    // Execution domains (can re-enable legacy address-space layouts).
    "personality",
    // Obsolete interfaces.
    "uselib",
    "ustat",
    "sysfs",
    "_sysctl",
    "nfsservctl",
];

impl Policy {
    /// The default policy for `tier`: default limits, no network, the system directories
    /// read-only, a private /tmp and a tmpfs workspace.
    pub fn new(tier: Tier) -> Policy {
        let mut scan = BTreeMap::new();
        scan.insert("high".to_string(), ScanAction::Block);
        scan.insert("medium".to_string(), ScanAction::Warn);
        scan.insert("low".to_string(), ScanAction::Warn);
        Policy {
            tier,
            limits: Limits::default(),
            net: NetMode::None,
            mounts: Vec::new(),
            runtimes: Vec::new(),
            syscall_deny: DEFAULT_SYSCALL_DENY
                .iter()
                .filter(|s| crate::seccomp::syscall_number(s).is_some())
                .map(|s| s.to_string())
                .collect(),
            uid: 1000,
            host_uid_base: 100_000,
            landlock: true,
            scan,
            advisories: None,
            hostname: "baton-sandbox".into(),
            docker_image: None,
            docker_host: None,
            credentials: Vec::new(),
        }
    }

    /// Reads a policy file (JSON, or YAML with the same fields). Missing fields keep the
    /// defaults of [`Policy::new`]; sizes are strings like `256M`, durations like `10s`.
    pub fn from_file(path: &Path) -> Result<Policy, Error> {
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::InvalidPolicy(format!("cannot read policy file {}: {e}", path.display()))
        })?;
        let value: serde_json::Value = if text.trim_start().starts_with('{') {
            serde_json::from_str(&text)
                .map_err(|e| Error::InvalidPolicy(format!("{}: {e}", path.display())))?
        } else {
            crate::yaml::to_json(&text)
                .map_err(|e| Error::InvalidPolicy(format!("{}: {e}", path.display())))?
        };
        Policy::from_value(&value).map_err(|e| match e {
            Error::InvalidPolicy(m) => Error::InvalidPolicy(format!("{}: {m}", path.display())),
            other => other,
        })
    }

    /// Builds a policy from a loosely typed document (the policy file format).
    pub fn from_value(v: &serde_json::Value) -> Result<Policy, Error> {
        let obj = v
            .as_object()
            .ok_or_else(|| Error::InvalidPolicy("a policy must be a mapping".into()))?;
        let tier = match obj.get("tier") {
            Some(t) => t
                .as_str()
                .ok_or_else(|| Error::InvalidPolicy("tier must be a string".into()))?
                .parse()?,
            None => Tier::Process,
        };
        let mut p = Policy::new(tier);
        for (key, val) in obj {
            if key != "tier" {
                p.set(key, val)?;
            }
        }
        p.validate()?;
        Ok(p)
    }

    /// Sets one field of the policy file format (`tier`, `memory`, `net`, ...) from its value,
    /// as a policy file or an override would; [`Policy::validate`] checks the whole afterwards.
    pub fn set(&mut self, key: &str, val: &serde_json::Value) -> Result<(), Error> {
        let p = self;
        let s = || val_str(key, val);
        match key {
            "tier" => p.tier = s()?.parse()?,
            "cpu" | "cpus" => p.limits.cpus = parse_cpus(&s()?)?,
            "memory" => p.limits.memory_bytes = parse_size(&s()?)?,
            "pids" => p.limits.pids = parse_pids(&s()?)?,
            "disk" => p.limits.disk_bytes = parse_size(&s()?)?,
            "time" => p.limits.time = parse_duration(&s()?)?,
            "output" => p.limits.output_bytes = parse_size(&s()?)?,
            "net" => p.net = s()?.parse()?,
            "runtimes" => p.runtimes = string_list(key, val)?,
            "syscall_deny" => p.syscall_deny = string_list(key, val)?,
            "syscall_deny_extra" => p.syscall_deny.extend(string_list(key, val)?),
            "landlock" => {
                p.landlock = val
                    .as_bool()
                    .ok_or_else(|| Error::InvalidPolicy("landlock must be true or false".into()))?
            }
            "hostname" => p.hostname = s()?,
            "advisories" => p.advisories = Some(PathBuf::from(s()?)),
            "docker_image" => p.docker_image = Some(s()?),
            "docker_host" => p.docker_host = Some(s()?),
            "credentials" => {
                let list = val.as_array().ok_or_else(|| {
                    Error::InvalidPolicy(
                        "credentials must be a list of {host, header, value_env, format?, upstream?}"
                            .into(),
                    )
                })?;
                p.credentials = list
                    .iter()
                    .enumerate()
                    .map(|(i, c)| Credential::from_value(&format!("credentials[{i}]"), c))
                    .collect::<Result<_, _>>()?;
            }
            "readonly" | "read_only" => {
                for m in string_list(key, val)? {
                    let (src, dst) = split_mount(&m)?;
                    p.mounts.push(Mount::ReadOnly {
                        source: src,
                        target: dst,
                    });
                }
            }
            "scan" => {
                let m = val.as_object().ok_or_else(|| {
                    Error::InvalidPolicy(
                        "scan must map severities (high, medium, low) to block|warn|off".into(),
                    )
                })?;
                for (sev, act) in m {
                    if !matches!(sev.as_str(), "high" | "medium" | "low") {
                        return Err(Error::InvalidPolicy(format!(
                            "scan: unknown severity '{sev}'"
                        )));
                    }
                    let a = match act.as_str() {
                        Some("block") => ScanAction::Block,
                        Some("warn") => ScanAction::Warn,
                        Some("off") => ScanAction::Off,
                        _ => {
                            return Err(Error::InvalidPolicy(format!(
                                "scan.{sev}: expected block, warn or off"
                            )));
                        }
                    };
                    p.scan.insert(sev.clone(), a);
                }
            }
            other => {
                return Err(Error::InvalidPolicy(format!(
                    "unknown policy field '{other}' (fields: tier, cpu, memory, pids, disk, time, output, net, runtimes, syscall_deny, syscall_deny_extra, landlock, hostname, advisories, readonly, scan, docker_image, docker_host, credentials)"
                )));
            }
        }
        Ok(())
    }

    /// Checks the values make sense; called by every backend before it starts anything.
    pub fn validate(&self) -> Result<(), Error> {
        let l = &self.limits;
        if !(l.cpus > 0.0 && l.cpus <= 1024.0) {
            return Err(Error::InvalidPolicy(format!(
                "cpu must be > 0 and <= 1024, got {}",
                l.cpus
            )));
        }
        if l.memory_bytes < (8 << 20) {
            return Err(Error::InvalidPolicy("memory must be at least 8M".into()));
        }
        if l.pids < 2 {
            return Err(Error::InvalidPolicy("pids must be at least 2".into()));
        }
        if l.disk_bytes < (64 << 10) {
            return Err(Error::InvalidPolicy("disk must be at least 64k".into()));
        }
        if l.time.is_zero() {
            return Err(Error::InvalidPolicy("time must be more than zero".into()));
        }
        if self.uid == 0 {
            return Err(Error::InvalidPolicy(
                "uid must not be 0: code never runs as root inside".into(),
            ));
        }
        if self.host_uid_base == 0 {
            return Err(Error::InvalidPolicy("host_uid_base must not be 0".into()));
        }
        if let NetMode::Allow(hosts) = &self.net {
            for h in hosts {
                validate_host_pattern(h)?;
            }
        }
        credential::check_all(&self.credentials, &self.net)?;
        for name in &self.syscall_deny {
            if crate::seccomp::syscall_number(name).is_none() {
                return Err(Error::InvalidPolicy(format!(
                    "syscall_deny: unknown syscall '{name}'"
                )));
            }
        }
        for m in &self.mounts {
            let t = m.target();
            if !t.is_absolute()
                || t.components()
                    .any(|c| matches!(c, std::path::Component::ParentDir))
            {
                return Err(Error::InvalidPolicy(format!(
                    "mount target {} must be absolute without '..'",
                    t.display()
                )));
            }
        }
        if self.hostname.is_empty() || self.hostname.len() > 63 {
            return Err(Error::InvalidPolicy(
                "hostname must be 1 to 63 characters".into(),
            ));
        }
        Ok(())
    }

    /// The environment the code starts with: nothing of the host's, plus `extra`.
    pub fn env_for(&self, extra: &BTreeMap<String, String>) -> BTreeMap<String, String> {
        let mut env = BTreeMap::new();
        env.insert(
            "PATH".into(),
            "/usr/local/bin:/usr/bin:/bin:/usr/local/sbin:/usr/sbin:/sbin".into(),
        );
        env.insert("HOME".into(), WORKSPACE.into());
        env.insert("TMPDIR".into(), "/tmp".into());
        env.insert("LANG".into(), "C.UTF-8".into());
        env.insert("USER".into(), "sandbox".into());
        for (k, v) in extra {
            env.insert(k.clone(), v.clone());
        }
        env
    }

    /// Resolves each runtime the policy names to its host path, checking it lies under a
    /// read-only mount of this policy.
    pub fn resolve_runtimes(&self) -> Result<Vec<(String, PathBuf)>, Error> {
        let ro: Vec<PathBuf> = self
            .mounts_for(None)
            .into_iter()
            .filter_map(|m| match m {
                Mount::ReadOnly { target, .. } => Some(target),
                _ => None,
            })
            .collect();
        let mut out = Vec::new();
        for name in &self.runtimes {
            let found = ["/usr/local/bin", "/usr/bin", "/bin"]
                .iter()
                .map(|d| Path::new(d).join(name))
                .find(|p| p.is_file());
            let Some(path) = found else {
                return Err(Error::InvalidPolicy(format!(
                    "runtime '{name}' is not installed in the host's system directories (/usr/local/bin, /usr/bin, /bin)"
                )));
            };
            let real = std::fs::canonicalize(&path).unwrap_or(path);
            if !ro.iter().any(|r| real.starts_with(r)) {
                return Err(Error::InvalidPolicy(format!(
                    "runtime '{name}' resolves to {} which is outside the sandbox's read-only mounts",
                    real.display()
                )));
            }
            out.push((name.clone(), real));
        }
        Ok(out)
    }

    /// The scanner's action for a severity.
    pub fn scan_action(&self, severity: &str) -> ScanAction {
        self.scan.get(severity).copied().unwrap_or(ScanAction::Warn)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests;
