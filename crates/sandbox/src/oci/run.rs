//! One run of a bundle: size-limited host tmpfs mounts (gVisor), the `allow:` network, the
//! runtime started inside the sandbox's cgroup, its output and status, and the teardown.
// This crate starts processes (ARCHITECTURE §2): here the OCI runtime.
#![allow(clippy::disallowed_methods)]
#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;

use super::netns::ProxyNetns;
use super::spec::{join_netns, spec};
use super::{Engine, OciSandbox};
use crate::cgroup::{Cgroup, Usage};
use crate::policy::{Mount, NetMode, Policy, Tier, WORKSPACE};
use crate::proxy::{NetAttempt, Proxy};
use crate::{Capped, Error, ExecOutput, ExecRequest};

/// A bundle directory (and host mounts in it), removed on drop.
pub(super) struct Bundle {
    pub dir: PathBuf,
    pub mounts: std::sync::Mutex<Vec<PathBuf>>,
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

/// What the runtime process did.
struct Ran {
    status: Option<std::process::ExitStatus>,
    timed_out: bool,
    wall: Duration,
    stdout: Capped,
    stderr: Capped,
}

impl OciSandbox {
    pub(super) async fn run_bundle(
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
        let policy = &self.with_host_tmpfs(policy, req, bundle, host_uid)?;
        // `allow:`: Baton's proxy for this run, and the network namespace the container joins
        // (loopback with a forwarder to the proxy, nothing else).
        let (proxy, netns) = match &policy.net {
            NetMode::Allow(hosts) => {
                let proxy = Proxy::start(hosts.clone(), &policy.credentials).await?;
                let netns = ProxyNetns::start(proxy.socket_path().to_path_buf()).await?;
                (Some(proxy), Some(netns))
            }
            _ => (None, None),
        };
        let mut req = std::borrow::Cow::Borrowed(req);
        if netns.is_some() {
            req.to_mut().env.extend(crate::proxy::env_vars());
        }
        let mut cgroup = {
            let (extra_mem, extra_pids) = self.overhead();
            let mut limits = policy.limits.clone();
            limits.memory_bytes += extra_mem;
            limits.pids += extra_pids;
            Cgroup::create_at_root(&self.layout, &limits, "oci")?
        };
        let mut config = spec(
            policy,
            &req,
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
        let state = bundle.dir.join("state");
        let ran = self
            .run_runtime(&state, bundle, id, netns.is_some(), policy, &mut cgroup)
            .await?;
        let usage = cgroup.usage();
        self.teardown(cgroup, &state, id).await;
        if let Some(n) = netns {
            n.stop();
        }
        let network = match proxy {
            Some(p) => p.finish().await,
            None => Vec::new(),
        };
        self.output(policy, host_uid, ran, &usage, network)
    }

    /// gVisor's own tmpfs ignores size limits: the policy with host tmpfs mounts of the disk
    /// limit for /work (unless a workdir is bound there) and /tmp, mounted in the bundle.
    fn with_host_tmpfs(
        &self,
        policy: &Policy,
        req: &ExecRequest,
        bundle: &Bundle,
        host_uid: u32,
    ) -> Result<Policy, Error> {
        let mut policy = policy.clone();
        if self.engine != Engine::Gvisor {
            return Ok(policy);
        }
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
        Ok(policy)
    }

    /// The runtime's command line: `run` of the bundle, for gVisor with its platform, network
    /// and seccomp flags.
    fn runtime_command(
        &self,
        state: &Path,
        bundle: &Bundle,
        id: &str,
        own_netns: bool,
    ) -> tokio::process::Command {
        let mut cmd = tokio::process::Command::new(&self.runtime.path);
        cmd.arg("--root").arg(state);
        if self.engine == Engine::Gvisor {
            // `allow:` runs the sentry in the prepared namespace with the host's network
            // stack for it (loopback and the forwarder only); otherwise gVisor's own stack
            // with loopback alone.
            let network = if own_netns {
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
        cmd
    }

    /// Starts the runtime inside `cgroup` (with crun on the hybrid layout, in a mount
    /// namespace without the cgroup2 mount), reads its output and waits up to the time limit.
    async fn run_runtime(
        &self,
        state: &Path,
        bundle: &Bundle,
        id: &str,
        own_netns: bool,
        policy: &Policy,
        cgroup: &mut Cgroup,
    ) -> Result<Ran, Error> {
        let mut cmd = self.runtime_command(state, bundle, id, own_netns);
        // The runtime runs inside the same cgroup as the code, with an allowance for itself.
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
            cmd.pre_exec(move || join_cgroup_and_hide_cgroup2(&raw, unified.as_ref()));
        }
        let start = Instant::now();
        let mut child = cmd.spawn().map_err(|e| {
            Error::Runtime(format!("cannot start {}: {e}", self.runtime.path.display()))
        })?;
        drop(procs);
        let cap = policy.limits.output_bytes;
        let out_task = tokio::spawn(read_capped(child.stdout.take(), cap));
        let err_task = tokio::spawn(read_capped(child.stderr.take(), cap));
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
        let grace = |t| async move {
            tokio::time::timeout(Duration::from_secs(5), t)
                .await
                .ok()
                .and_then(|r: Result<Capped, _>| r.ok())
                .unwrap_or_default()
        };
        Ok(Ran {
            status,
            timed_out,
            wall,
            stdout: grace(out_task).await,
            stderr: grace(err_task).await,
        })
    }

    /// Kills what is left, deletes the runtime's state and removes the cgroups.
    async fn teardown(&self, mut cgroup: Cgroup, state: &Path, id: &str) {
        cgroup.kill_all();
        // The runtime's own state for this container (it normally deletes it on exit).
        let _ = tokio::process::Command::new(&self.runtime.path)
            .arg("--root")
            .arg(state)
            .args(["delete", "-f", id])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
        remove_child_cgroups(&cgroup);
        cgroup.remove();
        cgroup.remove_foreign(&self.layout);
    }

    /// The run's result, or the runtime's own failure as an error.
    fn output(
        &self,
        policy: &Policy,
        host_uid: u32,
        ran: Ran,
        usage: &Usage,
        network: Vec<NetAttempt>,
    ) -> Result<ExecOutput, Error> {
        use std::os::unix::process::ExitStatusExt;
        let (mut exit_code, mut signal) = match ran.status {
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
        let stderr_text = ran.stderr.text();
        if exit_code.is_some_and(|c| c != 0)
            && usage.oom_kills == 0
            && !ran.timed_out
            && runtime_failed(&stderr_text)
        {
            return Err(Error::Runtime(format!(
                "{} failed: {}",
                self.runtime.name,
                stderr_text.trim()
            )));
        }
        let (stop, hit) = crate::stop_reason(
            ran.timed_out,
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
            stdout: ran.stdout.text(),
            stdout_truncated: ran.stdout.truncated,
            stderr: stderr_text,
            stderr_truncated: ran.stderr.truncated,
            wall_time: ran.wall,
            cpu_time: usage.cpu,
            peak_memory_bytes: usage.peak_memory,
            network,
            enforced: self.enforced(policy, host_uid),
        })
    }

    /// What a run had in place, one line per mechanism.
    fn enforced(&self, policy: &Policy, host_uid: u32) -> Vec<String> {
        let (extra_mem, extra_pids) = self.overhead();
        let gvisor = policy.tier == Tier::Gvisor;
        vec![
            format!(
                "runtime: {} ({})",
                self.runtime.name,
                self.runtime.path.display()
            ),
            format!(
                "namespaces: pid, mount, net, ipc, uts{}",
                if gvisor {
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
                    if gvisor {
                        " (gVisor's sentry uses that namespace's stack)"
                    } else {
                        ""
                    }
                ),
                other => format!("network: {}", crate::linux::net_desc(other)),
            },
        ]
    }
}

/// In the runtime's child between fork and exec: joins the sandbox's cgroups (writes "0" to
/// each `cgroup.procs`), then, when `unified` names the cgroup2 mount, unmounts it in a
/// private mount namespace. Async-signal-safe system calls only.
fn join_cgroup_and_hide_cgroup2(procs: &[i32], unified: Option<&CString>) -> std::io::Result<()> {
    for fd in procs {
        // SAFETY: writes one byte from a static buffer to a descriptor that stays open until
        // after exec.
        if unsafe { libc::write(*fd, b"0".as_ptr().cast(), 1) } != 1 {
            return Err(std::io::Error::last_os_error());
        }
    }
    let Some(u) = unified else {
        return Ok(());
    };
    // SAFETY: unshare with an integer flag affects only this (forked) process.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    let root = b"/\0";
    // SAFETY: NUL-terminated static path and null pointers where the call allows them.
    let private = unsafe {
        libc::mount(
            std::ptr::null(),
            root.as_ptr().cast(),
            std::ptr::null(),
            libc::MS_REC | libc::MS_PRIVATE,
            std::ptr::null(),
        )
    };
    if private != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `u` is a valid C string prepared before the fork.
    if unsafe { libc::umount2(u.as_ptr(), libc::MNT_DETACH) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
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

/// Reads a stream to its end, keeping the first `cap` bytes.
async fn read_capped<R: tokio::io::AsyncRead + Unpin>(r: Option<R>, cap: u64) -> Capped {
    let mut c = Capped::new(cap);
    let Some(mut r) = r else { return c };
    let mut buf = vec![0u8; 64 << 10];
    loop {
        match r.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => c.push(&buf[..n]),
        }
    }
    c
}
