//! The `oci` and `gvisor` tiers: the policy written as an OCI bundle (`config.json` from
//! [`spec`]) and run by `crun`/`runc`, or by gVisor's `runsc --platform=ptrace`.
//!
//! Limits: the runtime itself is started inside a cgroup Baton creates with the policy's
//! limits, and told to put the container in a child of it (a relative `cgroupsPath`), so the
//! limits hold whatever the runtime does and usage is read from Baton's own cgroup. On hosts
//! with the hybrid v1+v2 layout `crun` is run in a mount namespace where the cgroup2 mount is
//! hidden (it otherwise picks the wrong hierarchy).

use std::collections::BTreeMap;
use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use serde_json::{Value, json};
use tokio::io::AsyncReadExt;

use crate::cgroup::{Cgroup, Layout};
use crate::policy::{Mount, NetMode, Policy, Tier, WORKSPACE};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox};

/// Which runtime family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `crun` when installed, else `runc`.
    Oci,
    /// gVisor's `runsc` with the ptrace platform.
    Gvisor,
}

/// A runtime binary found on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    pub name: String,
    pub path: PathBuf,
}

/// Looks for `name` in the usual system directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The runtime the engine would use here, or why there is none.
pub fn runtime_for(engine: Engine) -> Result<Runtime, String> {
    let names: &[&str] = match engine {
        Engine::Oci => &["crun", "runc"],
        Engine::Gvisor => &["runsc"],
    };
    if let Ok(forced) = std::env::var("BATON_OCI_RUNTIME")
        && engine == Engine::Oci
    {
        return find_binary(&forced)
            .map(|path| Runtime {
                name: forced.clone(),
                path,
            })
            .ok_or_else(|| format!("BATON_OCI_RUNTIME={forced} is not installed"));
    }
    names
        .iter()
        .find_map(|n| {
            find_binary(n).map(|path| Runtime {
                name: n.to_string(),
                path,
            })
        })
        .ok_or_else(|| {
            format!(
                "none of {} is installed (Debian packages: {})",
                names.join(", "),
                names.join(", ")
            )
        })
}

/// An OCI-runtime sandbox.
pub struct OciSandbox {
    policy: Policy,
    engine: Engine,
    runtime: Runtime,
    layout: Layout,
}

impl OciSandbox {
    pub fn new(policy: Policy, engine: Engine) -> Result<OciSandbox, Error> {
        policy.validate()?;
        let tier = policy.tier;
        let runtime =
            runtime_for(engine).map_err(|reason| Error::TierUnavailable { tier, reason })?;
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::TierUnavailable {
                tier,
                reason: "the oci and gvisor tiers run the runtime as root; use the process tier when not root".into(),
            });
        }
        let layout = Layout::detect()?;
        for c in crate::cgroup::NEEDED {
            if layout.source_of(c).is_none() {
                return Err(Error::TierUnavailable {
                    tier,
                    reason: format!("no cgroup '{c}' controller is mounted"),
                });
            }
        }
        policy.resolve_runtimes()?;
        Ok(OciSandbox {
            policy,
            engine,
            runtime,
            layout,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Memory and tasks the runtime itself uses inside the sandbox's cgroup (runc/crun wait
    /// for the container; gVisor's sentry and gofer hold the code's memory and many threads).
    pub fn overhead(&self) -> (u64, u32) {
        match self.engine {
            Engine::Oci => (32 << 20, 32),
            Engine::Gvisor => (160 << 20, 256),
        }
    }
}

/// The OCI runtime-spec `config.json` for a run. `host_uid` is the unprivileged host uid the
/// code runs as; `files_dir` holds generated files (bound read-only).
pub fn spec(
    policy: &Policy,
    req: &ExecRequest,
    host_uid: u32,
    files_dir: &Path,
    cgroups_path: &str,
) -> Result<Value, Error> {
    let mut mounts = Vec::new();
    for m in policy.mounts_for(req.workdir.as_deref()) {
        match m {
            Mount::ReadOnly { source, target } => mounts.push(json!({
                "destination": target, "type": "bind", "source": source, "options": ["rbind", "ro", "nosuid", "nodev"]})),
            Mount::ReadWrite { source, target } => mounts.push(json!({
                "destination": target, "type": "bind", "source": source, "options": ["rbind", "rw", "nosuid", "nodev"]})),
            Mount::Tmpfs { target, size_bytes, mode, owned } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".into(), format!("size={size_bytes}"), format!("mode={mode:o}")];
                if owned {
                    opts.push(format!("uid={host_uid}"));
                    opts.push(format!("gid={host_uid}"));
                }
                if target == Path::new("/dev") {
                    opts.retain(|o| o != "nodev");
                    opts.push("strictatime".into());
                }
                mounts.push(json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
            Mount::Proc { target } => mounts.push(json!({"destination": target, "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]})),
            Mount::File { target, contents } => {
                let name = target.to_string_lossy().trim_start_matches('/').replace('/', "_");
                let host = files_dir.join(name);
                std::fs::write(&host, contents)?;
                mounts.push(json!({"destination": target, "type": "bind", "source": host, "options": ["bind", "ro", "nosuid", "nodev"]}));
            }
            // The runtime creates /dev's standard nodes and links itself; system-dir symlinks
            // are created in the rootfs by the caller.
            Mount::Device { .. } | Mount::Symlink { .. } => {}
        }
    }
    let env: Vec<String> = policy
        .env_for(&req.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let l = &policy.limits;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "network"}),
    ];
    if policy.tier != Tier::Gvisor {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let no_caps: Vec<String> = Vec::new();
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": host_uid, "gid": host_uid, "additionalGids": []},
            "args": req.argv,
            "env": env,
            "cwd": WORKSPACE,
            "capabilities": {"bounding": no_caps, "effective": no_caps, "inheritable": no_caps, "permitted": no_caps, "ambient": no_caps},
            "rlimits": [
                {"type": "RLIMIT_FSIZE", "hard": l.disk_bytes, "soft": l.disk_bytes},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096},
            ],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": policy.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "seccomp": crate::seccomp::oci(&policy.syscall_deny),
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// A bundle directory (and host mounts in it), removed on drop.
struct Bundle {
    dir: PathBuf,
    mounts: std::sync::Mutex<Vec<PathBuf>>,
}

impl Drop for Bundle {
    fn drop(&mut self) {
        if let Ok(m) = self.mounts.lock() {
            for p in m.iter() {
                let _ = nix::mount::umount2(p, nix::mount::MntFlags::MNT_DETACH);
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[async_trait]
impl Sandbox for OciSandbox {
    fn tier(&self) -> Tier {
        self.policy.tier
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        req.validate()?;
        let id = format!(
            "baton-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let bundle = Bundle {
            dir: std::env::temp_dir().join(&id),
            mounts: std::sync::Mutex::new(Vec::new()),
        };
        let rootfs = bundle.dir.join("rootfs");
        let files_dir = bundle.dir.join("files");
        let state = bundle.dir.join("state");
        for d in [&rootfs, &files_dir, &state] {
            std::fs::create_dir_all(d)?;
        }
        let mut host_uid = self.policy.host_uid_base + self.policy.uid;
        if let Some(dir) = &req.workdir {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(dir)?;
            if md.uid() == 0 {
                return Err(Error::InvalidRequest(format!(
                    "workdir {} is owned by root, and sandboxed code never runs as host root: chown it to an unprivileged user",
                    dir.display()
                )));
            }
            host_uid = md.uid();
        }
        // System-dir symlinks (/bin -> usr/bin on merged-/usr hosts) live in the rootfs itself.
        for m in self.policy.mounts_for(None) {
            if let Mount::Symlink { target, link_to } = m
                && !target.starts_with("/dev")
            {
                let p = rootfs.join(target.strip_prefix("/").unwrap_or(&target));
                std::os::unix::fs::symlink(&link_to, &p)?;
            }
        }
        let mut req = req;
        if !req.files.is_empty() {
            if let Some(dir) = &req.workdir {
                for (name, contents) in &req.files {
                    crate::linux::write_no_follow(
                        dir,
                        name,
                        contents.as_bytes(),
                        host_uid,
                        host_uid,
                    )?;
                }
            } else {
                // The tmpfs workspace exists only inside: copy the files in from a read-only bind.
                let input = bundle.dir.join("input");
                for (name, contents) in &req.files {
                    let p = input.join(name);
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&p, contents)?;
                }
                chmod_tree(&input)?;
                let mut argv = vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    "cp -R /.baton-input/. /work/ && exec \"$@\"".into(),
                    "sh".into(),
                ];
                argv.extend(req.argv.iter().cloned());
                req.argv = argv;
                let mut p = self.policy.clone();
                p.mounts.push(Mount::ReadOnly {
                    source: input,
                    target: "/.baton-input".into(),
                });
                return self.run_bundle(&p, &req, &bundle, &id, host_uid).await;
            }
        }
        self.run_bundle(&self.policy, &req, &bundle, &id, host_uid)
            .await
    }
}

fn chmod_tree(p: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(p)?;
    let mode = if md.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if md.is_dir() {
        for e in std::fs::read_dir(p)? {
            chmod_tree(&e?.path())?;
        }
    }
    Ok(())
}

impl OciSandbox {
    async fn run_bundle(
        &self,
        policy: &Policy,
        req: &ExecRequest,
        bundle: &Bundle,
        id: &str,
        host_uid: u32,
    ) -> Result<ExecOutput, Error> {
        // The bundle directory must be reachable by the runtime's unprivileged container user.
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&bundle.dir, std::fs::Permissions::from_mode(0o755))?;
        }
        let mut policy = policy.clone();
        if self.engine == Engine::Gvisor {
            // gVisor's own tmpfs ignores size limits: give it host tmpfs mounts that have them.
            for (name, target) in [("work", WORKSPACE), ("tmp", "/tmp")] {
                if target == WORKSPACE && req.workdir.is_some() {
                    continue;
                }
                let dir = bundle.dir.join(name);
                std::fs::create_dir_all(&dir)?;
                let mode = if target == "/tmp" { "1777" } else { "755" };
                let data = format!(
                    "size={},mode={mode},uid={host_uid},gid={host_uid}",
                    policy.limits.disk_bytes
                );
                let flags = nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV;
                nix::mount::mount(
                    Some("tmpfs"),
                    &dir,
                    Some("tmpfs"),
                    flags,
                    Some(data.as_str()),
                )
                .map_err(|e| {
                    Error::Unenforceable(format!(
                        "cannot mount a size-limited tmpfs for {target}: {e}"
                    ))
                })?;
                bundle
                    .mounts
                    .lock()
                    .map_err(|_| Error::Runtime("bundle lock poisoned".into()))?
                    .push(dir.clone());
                policy.mounts.push(Mount::ReadWrite {
                    source: dir,
                    target: target.into(),
                });
            }
        }
        let policy = &policy;
        // `allow:`: Baton's proxy for this run, and the network namespace the container joins
        // (loopback with a forwarder to the proxy, nothing else).
        let (proxy, netns) = match &policy.net {
            NetMode::Allow(hosts) => {
                let proxy = crate::proxy::Proxy::start(hosts.clone()).await?;
                let netns = ProxyNetns::start(proxy.socket_path().to_path_buf()).await?;
                (Some(proxy), Some(netns))
            }
            _ => (None, None),
        };
        let with_proxy_env;
        let req = match &netns {
            Some(_) => {
                let mut r = req.clone();
                r.env.extend(crate::proxy::env_vars());
                with_proxy_env = r;
                &with_proxy_env
            }
            None => req,
        };
        let mut cgroup = {
            let (extra_mem, extra_pids) = self.overhead();
            let mut limits = policy.limits.clone();
            limits.memory_bytes += extra_mem;
            limits.pids += extra_pids;
            Cgroup::create_at_root(&self.layout, &limits, "oci")?
        };
        let mut config = spec(
            policy,
            req,
            host_uid,
            &bundle.dir.join("files"),
            &format!("/{}/ctr", cgroup.name()),
        )?;
        if let Some(n) = &netns {
            join_netns(&mut config, &n.path);
        }
        std::fs::write(
            bundle.dir.join("config.json"),
            serde_json::to_vec_pretty(&config).map_err(|e| Error::Runtime(e.to_string()))?,
        )?;
        // The runtime runs inside the same cgroup as the code, with an allowance for itself.
        let (extra_mem, extra_pids) = self.overhead();
        let procs: Vec<OwnedFd> = cgroup
            .procs_files()
            .iter()
            .map(|p| {
                std::fs::OpenOptions::new()
                    .write(true)
                    .open(p)
                    .map(OwnedFd::from)
            })
            .collect::<Result<_, _>>()?;
        let state = bundle.dir.join("state");
        let mut cmd = tokio::process::Command::new(&self.runtime.path);
        cmd.arg("--root").arg(&state);
        if self.engine == Engine::Gvisor {
            // `allow:` runs the sentry in the prepared namespace with the host's network
            // stack for it (loopback and the forwarder only); otherwise gVisor's own stack
            // with loopback alone.
            let network = if netns.is_some() {
                "--network=host"
            } else {
                "--network=none"
            };
            cmd.arg("--platform=ptrace")
                .arg(network)
                .arg("--ignore-cgroups")
                .arg("--oci-seccomp");
        }
        cmd.arg("run").arg("--bundle").arg(&bundle.dir).arg(id);
        cmd.stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        let hide_cgroup2 = self.runtime.name == "crun" && !self.layout.v1.is_empty();
        let unified = match (&self.layout.v2, hide_cgroup2) {
            (Some((m, _)), true) => Some(
                CString::new(m.as_os_str().as_bytes())
                    .map_err(|_| Error::Runtime("bad cgroup2 mount path".into()))?,
            ),
            _ => None,
        };
        let raw: Vec<i32> = procs.iter().map(|f| f.as_raw_fd()).collect();
        // SAFETY: the closure runs between fork and exec and only makes async-signal-safe
        // system calls (write, unshare, mount, umount2) on data prepared before the fork.
        unsafe {
            cmd.pre_exec(move || {
                for fd in &raw {
                    if libc::write(*fd, b"0".as_ptr().cast(), 1) != 1 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                if let Some(u) = &unified {
                    if libc::unshare(libc::CLONE_NEWNS) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                    let root = b"/\0";
                    if libc::mount(
                        std::ptr::null(),
                        root.as_ptr().cast(),
                        std::ptr::null(),
                        libc::MS_REC | libc::MS_PRIVATE,
                        std::ptr::null(),
                    ) != 0
                    {
                        return Err(std::io::Error::last_os_error());
                    }
                    if libc::umount2(u.as_ptr(), libc::MNT_DETACH) != 0 {
                        return Err(std::io::Error::last_os_error());
                    }
                }
                Ok(())
            });
        }
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            Error::Runtime(format!("cannot start {}: {e}", self.runtime.path.display()))
        })?;
        drop(procs);
        let cap = policy.limits.output_bytes;
        let mut so = child.stdout.take();
        let mut se = child.stderr.take();
        let read_out = async move {
            let mut c = Capped::new(cap);
            if let Some(s) = so.as_mut() {
                read_capped(s, &mut c).await;
            }
            c
        };
        let read_err = async move {
            let mut c = Capped::new(cap);
            if let Some(s) = se.as_mut() {
                read_capped(s, &mut c).await;
            }
            c
        };
        let out_task = tokio::spawn(read_out);
        let err_task = tokio::spawn(read_err);
        let waited = tokio::time::timeout(policy.limits.time, child.wait()).await;
        let (status, timed_out) = match waited {
            Ok(s) => (Some(s?), false),
            Err(_) => {
                cgroup.kill_all();
                let _ = child.kill().await;
                (None, true)
            }
        };
        let wall = start.elapsed();
        let stdout = tokio::time::timeout(Duration::from_secs(5), out_task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let stderr = tokio::time::timeout(Duration::from_secs(5), err_task)
            .await
            .ok()
            .and_then(|r| r.ok())
            .unwrap_or_default();
        let usage = cgroup.usage();
        cgroup.kill_all();
        // The runtime's own state for this container (it normally deletes it on exit).
        let _ = tokio::process::Command::new(&self.runtime.path)
            .arg("--root")
            .arg(&state)
            .args(["delete", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        remove_child_cgroups(&cgroup);
        cgroup.remove();
        cgroup.remove_foreign(&self.layout);
        if let Some(n) = netns {
            n.stop();
        }
        let network = match proxy {
            Some(p) => p.finish().await,
            None => Vec::new(),
        };
        use std::os::unix::process::ExitStatusExt;
        let (mut exit_code, mut signal) = match status {
            Some(s) => (s.code(), s.signal()),
            None => (None, Some(libc::SIGKILL)),
        };
        // Runtimes report a container killed by signal N as exit status 128+N.
        if let Some(c) = exit_code
            && (129..=128 + 64).contains(&c)
        {
            signal = Some(c - 128);
            exit_code = None;
        }
        let stderr_text = stderr.text();
        if exit_code.is_some_and(|c| c != 0)
            && usage.oom_kills == 0
            && !timed_out
            && runtime_failed(&stderr_text)
        {
            return Err(Error::Runtime(format!(
                "{} failed: {}",
                self.runtime.name,
                stderr_text.trim()
            )));
        }
        let (stop, hit) = crate::stop_reason(
            timed_out,
            usage.oom_kills,
            false,
            usage.pids_max_hits,
            signal,
        );
        Ok(ExecOutput {
            tier: policy.tier,
            exit_code,
            signal,
            stop_reason: stop,
            limits_hit: hit,
            stdout: stdout.text(),
            stdout_truncated: stdout.truncated,
            stderr: stderr_text,
            stderr_truncated: stderr.truncated,
            wall_time: wall,
            cpu_time: usage.cpu,
            peak_memory_bytes: usage.peak_memory,
            network,
            enforced: vec![
                format!(
                    "runtime: {} ({})",
                    self.runtime.name,
                    self.runtime.path.display()
                ),
                format!(
                    "namespaces: pid, mount, net, ipc, uts{}",
                    if policy.tier == Tier::Gvisor {
                        " inside gVisor's user-space kernel"
                    } else {
                        ", cgroup"
                    }
                ),
                format!("host uid {host_uid}, no capabilities, no_new_privs"),
                format!(
                    "cgroups {} (runtime and container inside): memory {} B + {extra_mem} B and pids {} + {extra_pids} for the runtime itself, cpu {}",
                    self.layout.describe(),
                    policy.limits.memory_bytes,
                    policy.limits.pids,
                    policy.limits.cpus
                ),
                format!("seccomp: {} syscalls denied", policy.syscall_deny.len()),
                match &policy.net {
                    NetMode::Allow(_) => format!(
                        "network: {}, reached at 127.0.0.1:{} in a network namespace with loopback only{}",
                        crate::linux::net_desc(&policy.net),
                        crate::linux::PROXY_PORT,
                        if policy.tier == Tier::Gvisor {
                            " (gVisor's sentry uses that namespace's stack)"
                        } else {
                            ""
                        }
                    ),
                    other => format!("network: {}", crate::linux::net_desc(other)),
                },
            ],
        })
    }
}

/// Points the spec's network namespace at `path` (a namespace Baton prepared).
fn join_netns(config: &mut Value, path: &Path) {
    if let Some(list) = config["linux"]["namespaces"].as_array_mut() {
        for ns in list {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    }
}

/// The network namespace of an `allow:` run: a thread of Baton's unshares its network
/// namespace, brings loopback up and listens on 127.0.0.1:3128 there; the container joins
/// that namespace (by the thread's `/proc/.../ns/net`), so the only thing it can reach is
/// the forwarder, which passes each connection to the run's allow-list proxy.
struct ProxyNetns {
    path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyNetns {
    async fn start(proxy_sock: PathBuf) -> Result<ProxyNetns, Error> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<PathBuf, String>>();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("baton-netns".into())
            .spawn(move || {
                // SAFETY: unshare with an integer flag; it changes only this thread's network
                // namespace (the rest of Baton keeps the host's).
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    let _ = tx.send(Err(format!("cannot create a network namespace: {e}")));
                    return;
                }
                if let Err(e) = crate::linux::loopback_up() {
                    let _ = tx.send(Err(format!("cannot bring loopback up: {e}")));
                    return;
                }
                let listener =
                    match std::net::TcpListener::bind(("127.0.0.1", crate::linux::PROXY_PORT)) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(format!(
                                "cannot listen on 127.0.0.1:{} for the proxy: {e}",
                                crate::linux::PROXY_PORT
                            )));
                            return;
                        }
                    };
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::gettid() };
                let path = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
                if tx.send(Ok(path)).is_err() {
                    return;
                }
                crate::proxy::forward_until(&listener, &proxy_sock, &flag);
            })
            .map_err(|e| Error::Unenforceable(format!("cannot start the proxy forwarder: {e}")))?;
        let mut netns = ProxyNetns {
            path: PathBuf::new(),
            stop,
            thread: Some(thread),
        };
        match rx.await {
            Ok(Ok(path)) => {
                netns.path = path;
                Ok(netns)
            }
            Ok(Err(m)) => Err(Error::Unenforceable(format!(
                "the allow-list network mode: {m}"
            ))),
            Err(_) => Err(Error::Unenforceable(
                "the allow-list network mode: the forwarder thread ended early".into(),
            )),
        }
    }

    /// Stops accepting connections; the namespace goes when its last socket closes.
    fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyNetns {
    fn drop(&mut self) {
        self.halt();
    }
}

/// Whether the runtime, not the command, failed (its messages are recognisable).
fn runtime_failed(stderr: &str) -> bool {
    let s = stderr.to_ascii_lowercase();
    [
        "oci runtime error",
        "running container:",
        "container_linux.go",
        "runc run failed",
        "crun: ",
        "error creating container",
        "creating container: ",
    ]
    .iter()
    .any(|m| s.contains(m))
}

/// Removes sub-cgroups the runtime left behind in ours (deepest first).
fn remove_child_cgroups(cg: &Cgroup) {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    walk(&e.path(), out);
                    out.push(e.path());
                }
            }
        }
    }
    let mut dirs = Vec::new();
    for f in cg.procs_files() {
        if let Some(d) = f.parent() {
            walk(d, &mut dirs);
        }
    }
    for d in dirs {
        let _ = std::fs::remove_dir(&d);
    }
}

async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: &mut R, c: &mut Capped) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => c.push(&buf[..n]),
        }
    }
}

/// The tiers' config as the doctor reports it.
pub fn describe(engine: Engine) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    match runtime_for(engine) {
        Ok(r) => m.insert("runtime", format!("{} at {}", r.name, r.path.display())),
        Err(e) => m.insert("runtime", e),
    };
    m
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn spec_carries_the_policy() {
        let mut p = Policy::new(Tier::Oci);
        p.limits.disk_bytes = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let req = ExecRequest::new(["python3", "-c", "print(1)"]);
        let s = spec(&p, &req, 101000, dir.path(), "x-ctr").unwrap();
        assert_eq!(s["process"]["user"]["uid"], 101000);
        assert_eq!(s["process"]["args"][0], "python3");
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["linux"]["cgroupsPath"], "x-ctr");
        let mounts = s["mounts"].as_array().unwrap();
        let usr = mounts.iter().find(|m| m["destination"] == "/usr").unwrap();
        assert!(usr["options"].as_array().unwrap().contains(&json!("ro")));
        let work = mounts.iter().find(|m| m["destination"] == "/work").unwrap();
        assert_eq!(work["type"], "tmpfs");
        assert!(
            work["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1048576"))
        );
        assert!(
            !mounts
                .iter()
                .any(|m| m["destination"] == "/home" || m["destination"] == "/root")
        );
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"mount"));
    }
}
