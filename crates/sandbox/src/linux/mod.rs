//! The `process` tier: a launcher of our own on namespaces, seccomp, landlock and cgroups.
//!
//! Process tree, and who does what:
//!
//! ```text
//! supervisor thread (host)   creates the cgroups, forks A, writes A's uid/gid maps, polls the
//!   │                        pipes and a pidfd, kills B at the time limit, reads the usage
//!   └─ A (host pid ns)       joins the cgroups (the supervisor moves it), unshares user, mount,
//!       │                    pid, net, ipc, uts and cgroup namespaces, waits for its maps
//!       └─ B (pid 1 inside)  builds the filesystem (tmpfs root, read-only binds, /dev, /proc,
//!           │                /tmp, /work), pivots into it, sets hostname and loopback, writes
//!           │                the workspace files, reaps everything; when C exits it reports
//!           │                C's status and exits, and the kernel kills whatever is left
//!           ├─ D (optional)  allow-list mode: forwards 127.0.0.1:3128 to Baton's proxy socket
//!           └─ C             drops capabilities and groups, becomes the sandbox uid, sets
//!                            rlimits, closes stray fds, applies landlock then seccomp, execs
//! ```
//!
//! Every step before exec that fails is reported through a pipe and ends the run with
//! [`Error::Unenforceable`]; nothing runs with part of the policy missing.
//!
//! A, B, C and D are forked from a multi-threaded process. They only make system calls and
//! small allocations: glibc's `fork` resets the malloc locks in the child, and the code here
//! takes no other lock (no stdio, no `std::env`, no tracing).

#![allow(unsafe_code)]

mod children;
mod landlock;
mod plan;
mod rootfs;
pub mod spawn;
mod supervise;

use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use seccompiler::BpfProgram;

use crate::cgroup::{Cgroup, Layout, Usage};
use crate::policy::{NetMode, Policy, Tier};
use crate::proxy::Proxy;
use crate::{Error, ExecOutput, ExecRequest, Sandbox, StopReason};
use children::child_a;
use plan::{Plan, build_plan};
pub use spawn::{LogTail, Spawned};
use supervise::{Extras, Streams, Supervised, supervise};

/// Port of the in-sandbox forwarder to Baton's allow-list proxy (`--net allow:`).
pub const PROXY_PORT: u16 = 3128;
pub(super) const PROXY_SOCK_TARGET: &str = "/run/baton-proxy.sock";
/// Directories the new root may be built on (in a private mount namespace, so the host never
/// sees it); the first that exists and holds none of the run's bind sources is used.
pub(super) const STAGING_CANDIDATES: &[&str] =
    &["/mnt", "/media", "/srv", "/opt", "/dev/shm", "/tmp"];

/// The `process` tier.
pub struct ProcessSandbox {
    policy: Policy,
    layout: Layout,
    filters: Vec<BpfProgram>,
}

impl ProcessSandbox {
    /// Checks this host can enforce `policy` in the process tier (namespaces, cgroup
    /// controllers, seccomp) and prepares what every run shares.
    pub fn new(policy: Policy) -> Result<ProcessSandbox, Error> {
        policy.validate()?;
        let unavailable = |reason: String| Error::TierUnavailable {
            tier: Tier::Process,
            reason,
        };
        if !cfg!(target_os = "linux") {
            return Err(unavailable("the process tier needs Linux".into()));
        }
        if let Ok(s) = std::fs::read_to_string("/proc/sys/user/max_user_namespaces")
            && s.trim() == "0"
        {
            return Err(unavailable(
                "user namespaces are disabled (user.max_user_namespaces = 0)".into(),
            ));
        }
        let layout = Layout::detect()?;
        for c in crate::cgroup::NEEDED {
            if layout.source_of(c).is_none() {
                return Err(unavailable(format!(
                    "no cgroup '{c}' controller is mounted ({}), so limits cannot be enforced",
                    layout.describe()
                )));
            }
        }
        let filters = crate::seccomp::compile(&policy.syscall_deny)?;
        policy.resolve_runtimes()?;
        Ok(ProcessSandbox {
            policy,
            layout,
            filters,
        })
    }
}

#[async_trait]
impl Sandbox for ProcessSandbox {
    fn tier(&self) -> Tier {
        Tier::Process
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        req.validate()?;
        let proxy = match &self.policy.net {
            NetMode::Allow(hosts) => {
                Some(Proxy::start(hosts.clone(), &self.policy.credentials).await?)
            }
            _ => None,
        };
        let policy = self.policy.clone();
        let layout = self.layout.clone();
        let filters = self.filters.clone();
        let sock = proxy.as_ref().map(|p| p.socket_path().to_path_buf());
        let result = tokio::task::spawn_blocking(move || {
            run(&policy, &layout, &filters, &req, sock.as_deref())
        })
        .await
        .map_err(|e| Error::Runtime(format!("sandbox supervisor thread failed: {e}")))?;
        let mut out = result?;
        if let Some(p) = proxy {
            out.network = p.finish().await;
        }
        Ok(out)
    }
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io(e.into()))
}

/// The pipes between the supervisor and the children (each pair: read end, write end).
pub(super) struct Pipes {
    pub to_a: (OwnedFd, OwnedFd),
    pub from_a: (OwnedFd, OwnedFd),
    pub err: (OwnedFd, OwnedFd),
    pub status: (OwnedFd, OwnedFd),
    pub stdin: (OwnedFd, OwnedFd),
    pub stdout: (OwnedFd, OwnedFd),
    pub stderr: (OwnedFd, OwnedFd),
}

/// Runs one request to completion on the calling (blocking) thread.
fn run(
    policy: &Policy,
    layout: &Layout,
    filters: &[BpfProgram],
    req: &ExecRequest,
    proxy_sock: Option<&Path>,
) -> Result<ExecOutput, Error> {
    run_watched(
        policy,
        layout,
        filters,
        req,
        proxy_sock,
        &mut |_| {},
        &Extras::default(),
    )
}

/// [`run`], telling `launched` A's pid once the sandbox exists (before the command may have
/// ended: A stays unreaped until the run is over, so its `/proc` entry is the sandbox's), with
/// a spawned run's cancel pipe and output tail.
fn run_watched(
    policy: &Policy,
    layout: &Layout,
    filters: &[BpfProgram],
    req: &ExecRequest,
    proxy_sock: Option<&Path>,
    launched_hook: &mut dyn FnMut(Pid),
    extras: &Extras<'_>,
) -> Result<ExecOutput, Error> {
    let host_payload_uid = prepare_workdir(policy, req)?;
    let plan = build_plan(policy, req, proxy_sock, host_payload_uid)?;
    let mut cgroup = Cgroup::create(layout, &policy.limits, "process")?;
    let start = Instant::now();
    let launched = launch(policy, &plan, filters, &mut cgroup, host_payload_uid)?;
    launched_hook(launched.a);
    if !req.stdin.is_empty() {
        let data = req.stdin.clone();
        let mut w = std::fs::File::from(launched.stdin);
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    } else {
        drop(launched.stdin);
    }
    let sup = supervise(
        launched.a,
        launched.b,
        start + policy.limits.time,
        policy.limits.output_bytes,
        launched.streams,
        extras,
    );
    let wall = start.elapsed();
    // Whatever the outcome, nothing of this sandbox may outlive the call.
    cgroup.kill_all();
    let usage = cgroup.usage();
    cgroup.remove();
    output(policy, layout, host_payload_uid, sup?, &usage, wall)
}

/// The host uid the code runs as (a workdir's owner when root runs the sandbox), after
/// checking the workdir and writing the request's files into it.
fn prepare_workdir(policy: &Policy, req: &ExecRequest) -> Result<u32, Error> {
    let mut host_payload_uid = policy.host_uid_base + policy.uid;
    let Some(dir) = &req.workdir else {
        return Ok(host_payload_uid);
    };
    use std::os::unix::fs::MetadataExt;
    let md = std::fs::metadata(dir)?;
    if nix::unistd::geteuid().is_root() {
        if md.uid() == 0 {
            return Err(Error::InvalidRequest(format!(
                "workdir {} is owned by root, and sandboxed code never runs as host root: chown it to an unprivileged user (e.g. `chown -R {host_payload_uid}:{host_payload_uid} {}`)",
                dir.display(),
                dir.display()
            )));
        }
        host_payload_uid = md.uid();
        if host_payload_uid == policy.host_uid_base {
            return Err(Error::InvalidRequest(format!(
                "workdir {} is owned by uid {}, the sandbox's setup uid (host_uid_base): use another owner",
                dir.display(),
                policy.host_uid_base
            )));
        }
    }
    for (name, contents) in &req.files {
        write_no_follow(dir, name, contents.as_bytes(), md.uid(), md.gid())?;
    }
    Ok(host_payload_uid)
}

/// The supervisor's side once A and B exist.
struct Launched {
    a: Pid,
    b: Pid,
    stdin: OwnedFd,
    streams: Streams,
}

/// Why the launch handshake failed: an error of the supervisor's own, or A died (its
/// messages then say why, else the fallback text).
enum Handshake {
    Failed(Error),
    Died(&'static str),
}

/// Forks A and walks it through the handshake: A joins the cgroup, creates its namespaces,
/// gets its uid/gid maps, and reports B's pid.
fn launch(
    policy: &Policy,
    plan: &Plan,
    filters: &[BpfProgram],
    cgroup: &mut Cgroup,
    host_payload_uid: u32,
) -> Result<Launched, Error> {
    let pipes = Pipes {
        to_a: pipe()?,
        from_a: pipe()?,
        err: pipe()?,
        status: pipe()?,
        stdin: pipe()?,
        stdout: pipe()?,
        stderr: pipe()?,
    };
    // SAFETY: the child only runs `child_a`, which makes system calls and small allocations
    // (safe after glibc's fork, see the module docs) and ends with `_exit`; it never returns
    // into the parent's runtime.
    let fork_result = unsafe { fork() }.map_err(|e| Error::Runtime(format!("fork failed: {e}")))?;
    let a = match fork_result {
        ForkResult::Child => child_a(plan, filters, &pipes),
        ForkResult::Parent { child } => child,
    };
    let Pipes {
        to_a,
        from_a,
        err,
        status,
        stdin,
        stdout,
        stderr,
    } = pipes;
    drop((
        to_a.0, from_a.1, err.1, status.1, stdin.0, stdout.1, stderr.1,
    ));
    let mut err_r = std::fs::File::from(err.0);
    let to_a = std::fs::File::from(to_a.1);
    let from_a = std::fs::File::from(from_a.0);
    match handshake(a, policy, cgroup, host_payload_uid, to_a, from_a) {
        Ok(b) => Ok(Launched {
            a,
            b,
            stdin: stdin.1,
            streams: Streams {
                stdout: stdout.0,
                stderr: stderr.0,
                messages: OwnedFd::from(err_r),
                status: status.0,
            },
        }),
        Err(h) => {
            let _ = kill(a, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(a, None);
            cgroup.remove();
            Err(match h {
                Handshake::Failed(e) => e,
                Handshake::Died(fallback) => {
                    let mut msg = String::new();
                    let _ = err_r.read_to_string(&mut msg);
                    setup_error(&msg).unwrap_or(Error::Unenforceable(fallback.into()))
                }
            })
        }
    }
}

/// The supervisor's steps of the launch; returns B's pid.
fn handshake(
    a: Pid,
    policy: &Policy,
    cgroup: &Cgroup,
    host_payload_uid: u32,
    mut to_a: std::fs::File,
    mut from_a: std::fs::File,
) -> Result<Pid, Handshake> {
    cgroup.add(a.as_raw()).map_err(Handshake::Failed)?;
    if to_a.write_all(b"g").is_err() {
        return Err(Handshake::Died(
            "the sandbox launcher died before it started",
        ));
    }
    let mut byte = [0u8; 1];
    if from_a.read_exact(&mut byte).is_err() {
        return Err(Handshake::Died(
            "the sandbox launcher died while creating namespaces",
        ));
    }
    write_id_maps(a, policy, host_payload_uid).map_err(Handshake::Failed)?;
    if to_a.write_all(b"m").is_err() {
        return Err(Handshake::Died(
            "the sandbox launcher died after its namespaces were created",
        ));
    }
    let mut pid_bytes = [0u8; 4];
    if from_a.read_exact(&mut pid_bytes).is_err() {
        return Err(Handshake::Died(
            "the sandbox launcher died before starting the sandbox init",
        ));
    }
    Ok(Pid::from_raw(i32::from_le_bytes(pid_bytes)))
}

/// The run's result from what the supervisor saw and the cgroup's usage.
fn output(
    policy: &Policy,
    layout: &Layout,
    host_payload_uid: u32,
    sup: Supervised,
    usage: &Usage,
    wall: Duration,
) -> Result<ExecOutput, Error> {
    if let Some(e) = setup_error(&sup.messages) {
        return Err(e);
    }
    let (exit_code, signal) = match sup.status {
        Some(st) if libc::WIFEXITED(st) => (Some(libc::WEXITSTATUS(st)), None),
        Some(st) if libc::WIFSIGNALED(st) => (None, Some(libc::WTERMSIG(st))),
        _ => (None, Some(libc::SIGKILL)),
    };
    if sup.status.is_none() && !sup.timed_out && !sup.cancelled {
        return Err(Error::Runtime(
            "the sandbox init ended without reporting the command's status".into(),
        ));
    }
    let (stop, hit) = crate::stop_reason(
        sup.timed_out,
        usage.oom_kills,
        sup.disk_full,
        usage.pids_max_hits,
        signal,
    );
    let mut enforced = enforced(policy, layout, host_payload_uid);
    enforced.extend(
        sup.messages
            .lines()
            .filter_map(|l| l.strip_prefix('I'))
            .map(String::from),
    );
    Ok(ExecOutput {
        tier: Tier::Process,
        exit_code,
        signal,
        stop_reason: if stop == StopReason::Exited && signal.is_some() {
            StopReason::Signal
        } else {
            stop
        },
        limits_hit: hit,
        stdout: sup.stdout.text(),
        stdout_truncated: sup.stdout.truncated,
        stderr: sup.stderr.text(),
        stderr_truncated: sup.stderr.truncated,
        wall_time: wall,
        cpu_time: usage.cpu.or(sup.rusage_cpu),
        peak_memory_bytes: usage.peak_memory.or(sup.rusage_maxrss),
        network: Vec::new(),
        enforced,
    })
}

/// What a run has in place, one line per mechanism (landlock's line comes from C).
fn enforced(policy: &Policy, layout: &Layout, host_payload_uid: u32) -> Vec<String> {
    vec![
        "namespaces: user, mount, pid, net, ipc, uts, cgroup".to_string(),
        format!(
            "uid {} inside (host uid {host_payload_uid}), no capabilities, no_new_privs",
            policy.uid
        ),
        format!(
            "cgroups {}: memory {} B, pids {}, cpu {}",
            layout.describe(),
            policy.limits.memory_bytes,
            policy.limits.pids,
            policy.limits.cpus
        ),
        format!(
            "seccomp: {} syscalls denied + namespace clone flags + raw, packet and vsock sockets",
            policy.syscall_deny.len()
        ),
        format!(
            "rlimits: fsize {} B, nproc {}, core 0",
            policy.limits.disk_bytes, policy.limits.pids
        ),
        format!("network: {}", net_desc(&policy.net)),
    ]
}

/// Writes `name` (relative) under `dir` as root on behalf of the sandbox, never following a
/// symbolic link: code that ran in the workspace before may have planted links to host files.
pub(crate) fn write_no_follow(
    dir: &Path,
    name: &str,
    contents: &[u8],
    uid: u32,
    gid: u32,
) -> Result<(), Error> {
    use std::os::unix::fs::OpenOptionsExt;
    let rel = Path::new(name);
    let mut cur = dir.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for (i, c) in comps.iter().enumerate() {
        cur.push(c);
        let last = i + 1 == comps.len();
        match std::fs::symlink_metadata(&cur) {
            Ok(md) if md.file_type().is_symlink() => {
                return Err(Error::InvalidRequest(format!(
                    "refusing to write {name}: {} is a symbolic link",
                    cur.display()
                )));
            }
            Ok(md) if !last && !md.is_dir() => {
                return Err(Error::InvalidRequest(format!(
                    "refusing to write {name}: {} is not a directory",
                    cur.display()
                )));
            }
            Ok(_) => {}
            Err(_) if !last => {
                std::fs::create_dir(&cur)?;
                let _ =
                    nix::unistd::chown(&cur, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
            }
            Err(_) => {}
        }
    }
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .custom_flags(libc::O_NOFOLLOW)
        .mode(0o644)
        .open(&cur)?;
    f.write_all(contents)?;
    let _ = nix::unistd::fchown(&f, Some(Uid::from_raw(uid)), Some(Gid::from_raw(gid)));
    Ok(())
}

pub(crate) fn net_desc(n: &NetMode) -> String {
    match n {
        NetMode::None => "none (private namespace, loopback down)".into(),
        NetMode::Loopback => "loopback only (private namespace)".into(),
        NetMode::Allow(h) => format!("allow-list proxy for {}", h.join(", ")),
    }
}

/// Turns the launcher's messages into an error: `E...` setup failures, `X...` exec failures.
fn setup_error(msgs: &str) -> Option<Error> {
    for line in msgs.lines() {
        if let Some(m) = line.strip_prefix('E') {
            return Some(Error::Unenforceable(m.to_string()));
        }
        if let Some(m) = line.strip_prefix('X') {
            let (command, reason) = m.split_once('\t').unwrap_or((m, "cannot be executed"));
            return Some(Error::Spawn {
                command: command.to_string(),
                reason: reason.to_string(),
            });
        }
    }
    None
}

fn write_id_maps(a: Pid, policy: &Policy, host_payload_uid: u32) -> Result<(), Error> {
    let base = policy.host_uid_base;
    let uid = policy.uid;
    let proc = PathBuf::from(format!("/proc/{}", a.as_raw()));
    let w = |file: &str, s: &str| {
        std::fs::write(proc.join(file), s)
            .map_err(|e| Error::Unenforceable(format!("cannot write {file} of the sandbox: {e}")))
    };
    if nix::unistd::geteuid().is_root() {
        // Root inside (setup only) is host `base`; the code's uid is an unprivileged host uid.
        let map = format!("0 {base} 1\n{uid} {host_payload_uid} 1\n");
        w("uid_map", &map)?;
        w("gid_map", &map)?;
    } else {
        w("setgroups", "deny")?;
        w("uid_map", &format!("{uid} {} 1\n", nix::unistd::geteuid()))?;
        w("gid_map", &format!("{uid} {} 1\n", nix::unistd::getegid()))?;
    }
    Ok(())
}

pub(crate) fn loopback_up() -> Result<(), std::io::Error> {
    // SAFETY: a datagram socket used only for the interface ioctls, closed below; the ifreq
    // is zero-initialised and its name is NUL-terminated.
    unsafe {
        let s = libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0);
        if s < 0 {
            return Err(std::io::Error::last_os_error());
        }
        let mut ifr: libc::ifreq = std::mem::zeroed();
        for (i, c) in b"lo\0".iter().enumerate() {
            ifr.ifr_name[i] = *c as libc::c_char;
        }
        if libc::ioctl(s, libc::SIOCGIFFLAGS, &mut ifr) < 0 {
            let e = std::io::Error::last_os_error();
            libc::close(s);
            return Err(e);
        }
        ifr.ifr_ifru.ifru_flags |= (libc::IFF_UP | libc::IFF_RUNNING) as libc::c_short;
        let r = libc::ioctl(s, libc::SIOCSIFFLAGS, &ifr);
        let e = std::io::Error::last_os_error();
        libc::close(s);
        if r < 0 {
            return Err(e);
        }
    }
    Ok(())
}
