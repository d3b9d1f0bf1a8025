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

use std::ffi::CString;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use async_trait::async_trait;
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sched::{CloneFlags, unshare};
use nix::sys::signal::{Signal, kill};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use seccompiler::BpfProgram;

use crate::cgroup::{Cgroup, Layout};
use crate::policy::{Mount, NetMode, Policy, Tier, WORKSPACE};
use crate::proxy::{self, Proxy};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox, StopReason};

/// Port of the in-sandbox forwarder to Baton's allow-list proxy (`--net allow:`).
pub const PROXY_PORT: u16 = 3128;
const PROXY_SOCK_TARGET: &str = "/run/baton-proxy.sock";
/// Directories the new root may be built on (in a private mount namespace, so the host never
/// sees it); the first that exists and holds none of the run's bind sources is used.
const STAGING_CANDIDATES: &[&str] = &["/mnt", "/media", "/srv", "/opt", "/dev/shm", "/tmp"];

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
            NetMode::Allow(hosts) => Some(Proxy::start(hosts.clone()).await?),
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

/// One prepared mount step; all strings are built before forking.
enum Op {
    Mkdir(CString),
    Touch(CString),
    Bind {
        src: CString,
        dst: CString,
        readonly: bool,
        device: bool,
    },
    Tmpfs {
        dst: CString,
        data: CString,
    },
    Proc {
        dst: CString,
        sys: CString,
    },
    Symlink {
        to: CString,
        dst: CString,
    },
    Write {
        dst: CString,
        contents: Vec<u8>,
    },
}

struct Plan {
    ops: Vec<Op>,
    staging: CString,
    hostname: String,
    lo_up: bool,
    forwarder: bool,
    workspace_tmpfs: bool,
    files: Vec<(PathBuf, Vec<u8>)>,
    uid: u32,
    privileged: bool,
    exec_candidates: Vec<CString>,
    argv: Vec<CString>,
    envp: Vec<CString>,
    rlimits: Vec<(i32, u64)>,
    landlock: bool,
    net: NetMode,
    last_cap: u32,
}

fn cstr(s: impl AsRef<[u8]>) -> Result<CString, Error> {
    CString::new(s.as_ref())
        .map_err(|_| Error::InvalidRequest("a path or argument contains a NUL byte".into()))
}

fn staged(staging: &Path, target: &Path) -> Result<CString, Error> {
    let mut p = staging.to_path_buf();
    p.push(target.strip_prefix("/").unwrap_or(target));
    cstr(p.as_os_str().as_bytes())
}

fn pick_staging(sources: &[&Path]) -> Result<PathBuf, Error> {
    STAGING_CANDIDATES
        .iter()
        .map(PathBuf::from)
        .find(|c| c.is_dir() && !sources.iter().any(|s| s.starts_with(c)))
        .ok_or_else(|| Error::Unenforceable("no directory to build the sandbox root on (tried /mnt, /media, /srv, /opt, /dev/shm, /tmp)".into()))
}

fn build_plan(
    policy: &Policy,
    req: &ExecRequest,
    proxy_sock: Option<&Path>,
    host_payload_uid: u32,
) -> Result<Plan, Error> {
    let privileged = nix::unistd::geteuid().is_root();
    let mut ops = Vec::new();
    let mut made: Vec<PathBuf> = Vec::new();
    let mut mounts = policy.mounts_for(req.workdir.as_deref());
    if let Some(sock) = proxy_sock {
        mounts.push(Mount::Device {
            source: sock.to_path_buf(),
            target: PROXY_SOCK_TARGET.into(),
        });
    }
    let sources: Vec<&Path> = mounts
        .iter()
        .filter_map(|m| match m {
            Mount::ReadOnly { source, .. }
            | Mount::ReadWrite { source, .. }
            | Mount::Device { source, .. } => Some(source.as_path()),
            _ => None,
        })
        .collect();
    let staging = pick_staging(&sources)?;
    let st = staging.as_path();
    let mut mkdirs = |ops: &mut Vec<Op>, dir: &Path| -> Result<(), Error> {
        let mut cur = PathBuf::from("/");
        for comp in dir.components().skip(1) {
            cur.push(comp);
            if !made.contains(&cur) {
                made.push(cur.clone());
                ops.push(Op::Mkdir(staged(st, &cur)?));
            }
        }
        Ok(())
    };
    for m in &mounts {
        match m {
            Mount::ReadOnly { source, target }
            | Mount::ReadWrite { source, target }
            | Mount::Device { source, target } => {
                let md = std::fs::metadata(source).map_err(|e| {
                    Error::Unenforceable(format!("cannot bind {}: {e}", source.display()))
                })?;
                let src = cstr(source.as_os_str().as_bytes())?;
                if md.is_dir() {
                    mkdirs(&mut ops, target)?;
                } else {
                    if let Some(parent) = target.parent() {
                        mkdirs(&mut ops, parent)?;
                    }
                    ops.push(Op::Touch(staged(st, target)?));
                }
                let is_socket = proxy_sock.is_some_and(|s| s == source);
                ops.push(Op::Bind {
                    src,
                    dst: staged(st, target)?,
                    readonly: matches!(m, Mount::ReadOnly { .. }),
                    device: matches!(m, Mount::Device { .. }) && !is_socket,
                });
            }
            Mount::Tmpfs {
                target,
                size_bytes,
                mode,
                owned,
            } => {
                mkdirs(&mut ops, target)?;
                let mut data = format!("size={size_bytes},mode={mode:o}");
                if *owned {
                    // uid= is read in the mounter's user namespace: the host's when root builds it.
                    let owner = if privileged {
                        host_payload_uid
                    } else {
                        policy.uid
                    };
                    data.push_str(&format!(",uid={owner},gid={owner}"));
                }
                ops.push(Op::Tmpfs {
                    dst: staged(st, target)?,
                    data: cstr(data)?,
                });
            }
            Mount::Proc { target } => {
                mkdirs(&mut ops, target)?;
                ops.push(Op::Proc {
                    dst: staged(st, target)?,
                    sys: staged(st, &target.join("sys"))?,
                });
            }
            Mount::Symlink { target, link_to } => {
                if let Some(parent) = target.parent() {
                    mkdirs(&mut ops, parent)?;
                }
                ops.push(Op::Symlink {
                    to: cstr(link_to.as_os_str().as_bytes())?,
                    dst: staged(st, target)?,
                });
            }
            Mount::File { target, contents } => {
                if let Some(parent) = target.parent() {
                    mkdirs(&mut ops, parent)?;
                }
                ops.push(Op::Write {
                    dst: staged(st, target)?,
                    contents: contents.as_bytes().to_vec(),
                });
            }
        }
    }

    let env = {
        let mut extra = req.env.clone();
        if matches!(policy.net, NetMode::Allow(_)) {
            let url = format!("http://127.0.0.1:{PROXY_PORT}");
            for k in [
                "HTTP_PROXY",
                "HTTPS_PROXY",
                "http_proxy",
                "https_proxy",
                "ALL_PROXY",
            ] {
                extra.insert(k.into(), url.clone());
            }
        }
        policy.env_for(&extra)
    };
    let path_var = env.get("PATH").cloned().unwrap_or_default();
    let cmd = &req.argv[0];
    let exec_candidates = if cmd.contains('/') {
        vec![cstr(cmd)?]
    } else {
        path_var
            .split(':')
            .filter(|d| !d.is_empty())
            .map(|d| cstr(format!("{d}/{cmd}")))
            .collect::<Result<_, _>>()?
    };
    let argv = req.argv.iter().map(cstr).collect::<Result<Vec<_>, _>>()?;
    let envp = env
        .iter()
        .map(|(k, v)| cstr(format!("{k}={v}")))
        .collect::<Result<Vec<_>, _>>()?;
    let l = &policy.limits;
    let time_secs = l.time.as_secs() + 2;
    let rlimits = vec![
        (libc::RLIMIT_FSIZE as i32, l.disk_bytes),
        (libc::RLIMIT_CORE as i32, 0),
        (libc::RLIMIT_NPROC as i32, u64::from(l.pids)),
        (
            libc::RLIMIT_CPU as i32,
            time_secs.saturating_mul(l.cpus.ceil().max(1.0) as u64),
        ),
        (libc::RLIMIT_NOFILE as i32, 4096),
        (libc::RLIMIT_MEMLOCK as i32, 64 << 10),
    ];
    let files = req
        .files
        .iter()
        .map(|(k, v)| (Path::new(WORKSPACE).join(k), v.as_bytes().to_vec()))
        .collect();
    let last_cap = std::fs::read_to_string("/proc/sys/kernel/cap_last_cap")
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(40);
    Ok(Plan {
        ops,
        staging: cstr(st.as_os_str().as_bytes())?,
        hostname: policy.hostname.clone(),
        lo_up: !matches!(policy.net, NetMode::None),
        forwarder: matches!(policy.net, NetMode::Allow(_)),
        workspace_tmpfs: req.workdir.is_none(),
        files,
        uid: policy.uid,
        privileged,
        exec_candidates,
        argv,
        envp,
        rlimits,
        landlock: policy.landlock,
        net: policy.net.clone(),
        last_cap,
    })
}

fn pipe() -> Result<(OwnedFd, OwnedFd), Error> {
    nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| Error::Io(e.into()))
}

struct Pipes {
    to_a: (OwnedFd, OwnedFd),
    from_a: (OwnedFd, OwnedFd),
    err: (OwnedFd, OwnedFd),
    status: (OwnedFd, OwnedFd),
    stdin: (OwnedFd, OwnedFd),
    stdout: (OwnedFd, OwnedFd),
    stderr: (OwnedFd, OwnedFd),
}

/// Runs one request to completion on the calling (blocking) thread.
fn run(
    policy: &Policy,
    layout: &Layout,
    filters: &[BpfProgram],
    req: &ExecRequest,
    proxy_sock: Option<&Path>,
) -> Result<ExecOutput, Error> {
    let mut host_payload_uid = policy.host_uid_base + policy.uid;
    if let Some(dir) = &req.workdir {
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
    }
    let plan = build_plan(policy, req, proxy_sock, host_payload_uid)?;
    let mut cgroup = Cgroup::create(layout, &policy.limits, "process")?;
    let pipes = Pipes {
        to_a: pipe()?,
        from_a: pipe()?,
        err: pipe()?,
        status: pipe()?,
        stdin: pipe()?,
        stdout: pipe()?,
        stderr: pipe()?,
    };
    let start = Instant::now();
    // SAFETY: the child only runs `child_a`, which makes system calls and small allocations
    // (safe after glibc's fork, see the module docs) and ends with `_exit`; it never returns
    // into the parent's runtime.
    let fork_result = unsafe { fork() }.map_err(|e| Error::Runtime(format!("fork failed: {e}")))?;
    let a = match fork_result {
        ForkResult::Child => child_a(&plan, filters, &pipes),
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
    let mut to_a = std::fs::File::from(to_a.1);
    let mut from_a = std::fs::File::from(from_a.0);
    let mut err_r = std::fs::File::from(err.0);

    let fail = |cgroup: &mut Cgroup, err_r: &mut std::fs::File, fallback: String| -> Error {
        let _ = kill(a, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(a, None);
        cgroup.remove();
        let mut msg = String::new();
        let _ = err_r.read_to_string(&mut msg);
        setup_error(&msg).unwrap_or(Error::Unenforceable(fallback))
    };

    if let Err(e) = cgroup.add(a.as_raw()) {
        let _ = kill(a, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(a, None);
        cgroup.remove();
        return Err(e);
    }
    if to_a.write_all(b"g").is_err() {
        return Err(fail(
            &mut cgroup,
            &mut err_r,
            "the sandbox launcher died before it started".into(),
        ));
    }
    let mut byte = [0u8; 1];
    if from_a.read_exact(&mut byte).is_err() {
        return Err(fail(
            &mut cgroup,
            &mut err_r,
            "the sandbox launcher died while creating namespaces".into(),
        ));
    }
    if let Err(e) = write_id_maps(a, policy, host_payload_uid) {
        let _ = kill(a, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(a, None);
        cgroup.remove();
        return Err(e);
    }
    if to_a.write_all(b"m").is_err() {
        return Err(fail(
            &mut cgroup,
            &mut err_r,
            "the sandbox launcher died after its namespaces were created".into(),
        ));
    }
    let mut pid_bytes = [0u8; 4];
    if from_a.read_exact(&mut pid_bytes).is_err() {
        return Err(fail(
            &mut cgroup,
            &mut err_r,
            "the sandbox launcher died before starting the sandbox init".into(),
        ));
    }
    let b = Pid::from_raw(i32::from_le_bytes(pid_bytes));
    drop(to_a);
    drop(from_a);

    if !req.stdin.is_empty() {
        let data = req.stdin.clone();
        let mut w = std::fs::File::from(stdin.1);
        std::thread::spawn(move || {
            let _ = w.write_all(&data);
        });
    } else {
        drop(stdin.1);
    }

    let sup = supervise(
        a,
        b,
        start + policy.limits.time,
        policy.limits.output_bytes,
        stdout.0,
        stderr.0,
        err_r,
        status.0,
    );
    let wall = start.elapsed();
    // Whatever the outcome, nothing of this sandbox may outlive the call.
    cgroup.kill_all();
    let usage = cgroup.usage();
    cgroup.remove();
    let sup = sup?;
    if let Some(e) = setup_error(&sup.messages) {
        return Err(e);
    }
    let (exit_code, signal) = match sup.status {
        Some(st) if libc::WIFEXITED(st) => (Some(libc::WEXITSTATUS(st)), None),
        Some(st) if libc::WIFSIGNALED(st) => (None, Some(libc::WTERMSIG(st))),
        _ => (None, Some(libc::SIGKILL)),
    };
    if sup.status.is_none() && !sup.timed_out {
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
    let mut enforced = vec![
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
    ];
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

struct Supervised {
    status: Option<i32>,
    disk_full: bool,
    timed_out: bool,
    stdout: Capped,
    stderr: Capped,
    messages: String,
    rusage_cpu: Option<Duration>,
    rusage_maxrss: Option<u64>,
}

#[allow(clippy::too_many_arguments)]
fn supervise(
    a: Pid,
    b: Pid,
    deadline: Instant,
    cap: u64,
    stdout: OwnedFd,
    stderr: OwnedFd,
    err_r: std::fs::File,
    status: OwnedFd,
) -> Result<Supervised, Error> {
    let err_fd = OwnedFd::from(err_r);
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, a.as_raw(), 0) } as RawFd;
    if pidfd < 0 {
        let _ = kill(b, Signal::SIGKILL);
        return Err(Error::Runtime(format!(
            "pidfd_open failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `pidfd` was just returned by the kernel and is owned by nobody else.
    let pidfd = unsafe { OwnedFd::from_raw_fd(pidfd) };
    let mut out = Supervised {
        status: None,
        disk_full: false,
        timed_out: false,
        stdout: Capped::new(cap),
        stderr: Capped::new(cap),
        messages: String::new(),
        rusage_cpu: None,
        rusage_maxrss: None,
    };
    let mut status_buf = Vec::new();
    let mut msg_buf = Vec::new();
    let fds = [
        stdout.as_raw_fd(),
        stderr.as_raw_fd(),
        err_fd.as_raw_fd(),
        status.as_raw_fd(),
    ];
    for fd in fds {
        // SAFETY: fcntl on descriptors this function owns.
        unsafe {
            let fl = libc::fcntl(fd, libc::F_GETFL);
            libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
        }
    }
    let mut open = [true; 4];
    let mut reaped = false;
    let mut drain_deadline: Option<Instant> = None;
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let now = Instant::now();
        if !out.timed_out && now >= deadline && !reaped {
            out.timed_out = true;
            // B is the init of the sandbox's PID namespace: killing it kills every process in it.
            let _ = kill(b, Signal::SIGKILL);
            let _ = kill(a, Signal::SIGKILL);
        }
        if reaped && !open.iter().any(|o| *o) {
            break;
        }
        if let Some(d) = drain_deadline
            && now >= d
        {
            break;
        }
        let mut pfds: Vec<libc::pollfd> = Vec::with_capacity(5);
        for (i, fd) in fds.iter().enumerate() {
            pfds.push(libc::pollfd {
                fd: if open[i] { *fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            });
        }
        pfds.push(libc::pollfd {
            fd: if reaped { -1 } else { pidfd.as_raw_fd() },
            events: libc::POLLIN,
            revents: 0,
        });
        let wait_until = if out.timed_out || reaped {
            drain_deadline.unwrap_or(now + Duration::from_millis(100))
        } else {
            deadline
        };
        let timeout_ms = wait_until
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, 1000) as i32;
        // SAFETY: `pfds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            let _ = kill(b, Signal::SIGKILL);
            return Err(Error::Io(e));
        }
        for i in 0..4 {
            if !open[i] || pfds[i].revents == 0 {
                continue;
            }
            loop {
                // SAFETY: reading into a buffer we own, of the length given.
                let r = unsafe { libc::read(fds[i], buf.as_mut_ptr().cast(), buf.len()) };
                if r > 0 {
                    let data = &buf[..r as usize];
                    match i {
                        0 => out.stdout.push(data),
                        1 => out.stderr.push(data),
                        2 => msg_buf.extend_from_slice(data),
                        _ => status_buf.extend_from_slice(data),
                    }
                    continue;
                }
                if r == 0 {
                    open[i] = false;
                }
                break;
            }
        }
        if !reaped && pfds[4].revents != 0 {
            let mut st: libc::c_int = 0;
            // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
            let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
            // SAFETY: wait4 on our own child with valid out-pointers.
            let r = unsafe { libc::wait4(a.as_raw(), &mut st, libc::WNOHANG, &mut ru) };
            if r == a.as_raw() {
                reaped = true;
                let tv = |t: libc::timeval| {
                    Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
                };
                out.rusage_cpu = Some(tv(ru.ru_utime) + tv(ru.ru_stime));
                out.rusage_maxrss = Some(ru.ru_maxrss as u64 * 1024);
                drain_deadline = Some(Instant::now() + Duration::from_secs(2));
            }
        }
    }
    if !reaped {
        let _ = kill(b, Signal::SIGKILL);
        let _ = kill(a, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(a, None);
    }
    if status_buf.len() >= 5 {
        out.status = Some(i32::from_le_bytes([
            status_buf[0],
            status_buf[1],
            status_buf[2],
            status_buf[3],
        ]));
        out.disk_full = status_buf[4] != 0;
    }
    out.messages = String::from_utf8_lossy(&msg_buf).into_owned();
    Ok(out)
}

// ---------------------------------------------------------------------------------------------
// Child side. Everything below runs in forked children and ends in `_exit` or `execve`.

fn report(fd: RawFd, kind: u8, msg: &str) {
    let mut line = Vec::with_capacity(msg.len() + 2);
    line.push(kind);
    line.extend_from_slice(msg.replace('\n', " ").as_bytes());
    line.push(b'\n');
    // SAFETY: writing a buffer we own to a pipe descriptor; errors are ignored (the parent
    // then reports a generic failure).
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

fn die(fd: RawFd, msg: &str) -> ! {
    report(fd, b'E', msg);
    // SAFETY: _exit ends the forked child without running the parent's destructors.
    unsafe { libc::_exit(126) }
}

fn child_a(plan: &Plan, filters: &[BpfProgram], p: &Pipes) -> ! {
    let errfd = p.err.1.as_raw_fd();
    // SAFETY: closing the supervisor's ends of the pipes in this child (they must not be held
    // open here, or the command would never see EOF on stdin); these OwnedFds are never
    // dropped in this process, which ends in _exit.
    unsafe {
        for fd in [
            p.to_a.1.as_raw_fd(),
            p.from_a.0.as_raw_fd(),
            p.err.0.as_raw_fd(),
            p.status.0.as_raw_fd(),
            p.stdin.1.as_raw_fd(),
            p.stdout.0.as_raw_fd(),
            p.stderr.0.as_raw_fd(),
        ] {
            libc::close(fd);
        }
    }
    // SAFETY: prctl with integer arguments; dup2 onto the standard descriptors.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        if libc::dup2(p.stdin.0.as_raw_fd(), 0) < 0
            || libc::dup2(p.stdout.1.as_raw_fd(), 1) < 0
            || libc::dup2(p.stderr.1.as_raw_fd(), 2) < 0
        {
            die(errfd, "cannot set up the standard descriptors");
        }
    }
    let mut b = [0u8; 1];
    if nix::unistd::read(&p.to_a.0, &mut b).ok() != Some(1) {
        die(errfd, "the supervisor went away");
    }
    if plan.privileged {
        if let Err(e) = unshare(CloneFlags::CLONE_NEWNS) {
            die(
                errfd,
                &format!("cannot create the sandbox mount namespace: {e}"),
            );
        }
        build_fs(plan, errfd);
    }
    let flags = CloneFlags::CLONE_NEWUSER
        | CloneFlags::CLONE_NEWNS
        | CloneFlags::CLONE_NEWPID
        | CloneFlags::CLONE_NEWNET
        | CloneFlags::CLONE_NEWIPC
        | CloneFlags::CLONE_NEWUTS
        | CloneFlags::CLONE_NEWCGROUP;
    if let Err(e) = unshare(flags) {
        die(
            errfd,
            &format!(
                "cannot create the sandbox namespaces (user, mount, pid, net, ipc, uts, cgroup): {e}"
            ),
        );
    }
    if nix::unistd::write(&p.from_a.1, b"u").is_err() {
        die(errfd, "the supervisor went away");
    }
    if nix::unistd::read(&p.to_a.0, &mut b).ok() != Some(1) {
        die(errfd, "the supervisor did not write the uid/gid maps");
    }
    if plan.privileged {
        // Become root of the new user namespace (host uid `host_uid_base`) for the setup.
        if let Err(e) = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
            .and_then(|_| {
                nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0))
            })
        {
            die(
                errfd,
                &format!("cannot become root of the sandbox's user namespace: {e}"),
            );
        }
    }
    // SAFETY: as for the first fork (see the module docs); the child runs `child_b` only.
    match unsafe { fork() } {
        Ok(ForkResult::Child) => child_b(plan, filters, p),
        Ok(ForkResult::Parent { child }) => {
            let _ = nix::unistd::write(&p.from_a.1, &child.as_raw().to_le_bytes());
            let _ = nix::sys::wait::waitpid(child, None);
            // SAFETY: ends the forked child.
            unsafe { libc::_exit(0) }
        }
        Err(e) => die(errfd, &format!("cannot fork the sandbox init: {e}")),
    }
}

fn mount_err(errfd: RawFd, what: &str, path: &CString, e: nix::Error) -> ! {
    let shown = path.to_string_lossy();
    let shown = shown
        .strip_prefix(
            STAGING_CANDIDATES
                .iter()
                .find(|c| shown.starts_with(**c))
                .copied()
                .unwrap_or(""),
        )
        .unwrap_or(&shown);
    die(errfd, &format!("{what} {shown}: {e}"))
}

fn remount_ro(errfd: RawFd, dst: &CString, device: bool) {
    let mut flags =
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID;
    if !device {
        flags |= MsFlags::MS_NODEV;
    }
    // Flags the source mount already has are locked in a user namespace: keep them.
    if let Ok(st) = nix::sys::statvfs::statvfs(dst.as_c_str()) {
        use nix::sys::statvfs::FsFlags;
        let f = st.flags();
        if f.contains(FsFlags::ST_NOEXEC) {
            flags |= MsFlags::MS_NOEXEC;
        }
        if f.contains(FsFlags::ST_NODEV) {
            flags |= MsFlags::MS_NODEV;
        }
        if f.contains(FsFlags::ST_NOATIME) {
            flags |= MsFlags::MS_NOATIME;
        }
        if f.contains(FsFlags::ST_NODIRATIME) {
            flags |= MsFlags::MS_NODIRATIME;
        }
        if f.contains(FsFlags::ST_RELATIME) {
            flags |= MsFlags::MS_RELATIME;
        }
    }
    if let Err(e) = mount(
        None::<&str>,
        dst.as_c_str(),
        None::<&str>,
        flags,
        None::<&str>,
    ) {
        mount_err(errfd, "cannot make read-only", dst, e);
    }
}

/// Builds the new root's filesystem on the staging directory: by A as host root before it
/// enters the user namespace (privileged), else by B inside it. /proc is mounted later by B.
fn build_fs(plan: &Plan, errfd: RawFd) {
    let none = None::<&str>;
    if let Err(e) = mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none) {
        die(
            errfd,
            &format!("cannot make the mount namespace private: {e}"),
        );
    }
    if let Err(e) = mount(
        Some("tmpfs"),
        plan.staging.as_c_str(),
        Some("tmpfs"),
        MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
        Some("size=1m,mode=0755"),
    ) {
        die(errfd, &format!("cannot mount the sandbox root: {e}"));
    }
    for op in &plan.ops {
        match op {
            Op::Mkdir(d) => {
                if let Err(e) = nix::unistd::mkdir(
                    d.as_c_str(),
                    nix::sys::stat::Mode::from_bits_truncate(0o755),
                ) && e != nix::Error::EEXIST
                {
                    mount_err(errfd, "cannot create", d, e);
                }
            }
            Op::Touch(f) => {
                // SAFETY: open/close with a valid path.
                let fd = unsafe {
                    libc::open(
                        f.as_ptr(),
                        libc::O_CREAT | libc::O_WRONLY | libc::O_CLOEXEC,
                        0o644,
                    )
                };
                if fd < 0 {
                    mount_err(errfd, "cannot create", f, nix::Error::last());
                }
                // SAFETY: closing the descriptor just opened.
                unsafe { libc::close(fd) };
            }
            Op::Bind {
                src,
                dst,
                readonly,
                device,
            } => {
                if let Err(e) = mount(
                    Some(src.as_c_str()),
                    dst.as_c_str(),
                    none,
                    MsFlags::MS_BIND | MsFlags::MS_REC,
                    none,
                ) {
                    mount_err(errfd, "cannot bind", dst, e);
                }
                if *readonly {
                    remount_ro(errfd, dst, false);
                } else {
                    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_NOSUID;
                    if !device {
                        flags |= MsFlags::MS_NODEV;
                    }
                    if let Ok(st) = nix::sys::statvfs::statvfs(dst.as_c_str()) {
                        use nix::sys::statvfs::FsFlags;
                        if st.flags().contains(FsFlags::ST_NOEXEC) {
                            flags |= MsFlags::MS_NOEXEC;
                        }
                        if st.flags().contains(FsFlags::ST_RELATIME) {
                            flags |= MsFlags::MS_RELATIME;
                        }
                        if st.flags().contains(FsFlags::ST_NOATIME) {
                            flags |= MsFlags::MS_NOATIME;
                        }
                        if st.flags().contains(FsFlags::ST_NODEV) {
                            flags |= MsFlags::MS_NODEV;
                        }
                    }
                    if let Err(e) = mount(none, dst.as_c_str(), none, flags, none) {
                        mount_err(errfd, "cannot set nosuid on", dst, e);
                    }
                }
            }
            Op::Tmpfs { dst, data } => {
                if let Err(e) = mount(
                    Some("tmpfs"),
                    dst.as_c_str(),
                    Some("tmpfs"),
                    MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
                    Some(data.as_c_str()),
                ) {
                    mount_err(errfd, "cannot mount tmpfs on", dst, e);
                }
            }
            Op::Proc { .. } => {}
            Op::Symlink { to, dst } => {
                if let Err(e) =
                    nix::unistd::symlinkat(to.as_c_str(), nix::fcntl::AT_FDCWD, dst.as_c_str())
                    && e != nix::Error::EEXIST
                {
                    mount_err(errfd, "cannot create symlink", dst, e);
                }
            }
            Op::Write { dst, contents } => {
                if let Err(e) = std::fs::write(
                    Path::new(std::ffi::OsStr::from_bytes(dst.as_bytes())),
                    contents,
                ) {
                    die(
                        errfd,
                        &format!("cannot write {}: {e}", dst.to_string_lossy()),
                    );
                }
            }
        }
    }
    let ro = MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV;
    if let Err(e) = mount(
        None::<&str>,
        plan.staging.as_c_str(),
        None::<&str>,
        ro,
        Some("size=1m,mode=0755"),
    ) {
        die(
            errfd,
            &format!("cannot make the sandbox root read-only: {e}"),
        );
    }
}

fn child_b(plan: &Plan, filters: &[BpfProgram], p: &Pipes) -> ! {
    let errfd = p.err.1.as_raw_fd();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    let none = None::<&str>;
    if !plan.privileged {
        build_fs(plan, errfd);
    }
    // A bind of the new root onto itself: a mount made in this namespace (not locked), which
    // pivot_root accepts; then the PID namespace's own /proc inside it.
    let rec = MsFlags::MS_BIND | MsFlags::MS_REC;
    if let Err(e) = mount(
        Some(plan.staging.as_c_str()),
        plan.staging.as_c_str(),
        none,
        rec,
        none,
    ) {
        die(errfd, &format!("cannot bind the sandbox root: {e}"));
    }
    for op in &plan.ops {
        if let Op::Proc { dst, sys } = op {
            let f = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
            // hidepid=2: the code sees only its own processes, not the init or the forwarder.
            if let Err(e) = mount(
                Some("proc"),
                dst.as_c_str(),
                Some("proc"),
                f,
                Some("hidepid=2"),
            ) {
                mount_err(errfd, "cannot mount proc on", dst, e);
            }
            if let Err(e) = mount(Some(sys.as_c_str()), sys.as_c_str(), none, rec, none) {
                mount_err(errfd, "cannot bind", sys, e);
            }
            remount_ro(errfd, sys, false);
        }
    }
    // Enter the new root and drop the host's filesystem.
    if let Err(e) = nix::unistd::chdir(plan.staging.as_c_str()) {
        die(errfd, &format!("cannot enter the sandbox root: {e}"));
    }
    if let Err(e) = nix::unistd::pivot_root(".", ".") {
        die(errfd, &format!("pivot_root failed: {e}"));
    }
    if let Err(e) = umount2(".", MntFlags::MNT_DETACH) {
        die(errfd, &format!("cannot detach the host's filesystem: {e}"));
    }
    if let Err(e) = nix::unistd::chdir("/") {
        die(errfd, &format!("cannot chdir to the new root: {e}"));
    }
    if let Err(e) = nix::unistd::sethostname(&plan.hostname) {
        die(errfd, &format!("cannot set the hostname: {e}"));
    }
    if plan.lo_up
        && let Err(e) = loopback_up()
    {
        die(errfd, &format!("cannot bring up loopback: {e}"));
    }
    if plan.workspace_tmpfs {
        for (path, contents) in &plan.files {
            if let Some(parent) = path.parent() {
                if let Err(e) = std::fs::create_dir_all(parent) {
                    die(errfd, &format!("cannot create {}: {e}", parent.display()));
                }
                let mut cur = parent.to_path_buf();
                while cur != Path::new(WORKSPACE) && cur.starts_with(WORKSPACE) {
                    let _ = nix::unistd::chown(
                        &cur,
                        Some(Uid::from_raw(plan.uid)),
                        Some(Gid::from_raw(plan.uid)),
                    );
                    if !cur.pop() {
                        break;
                    }
                }
            }
            if let Err(e) = std::fs::write(path, contents) {
                die(errfd, &format!("cannot write {}: {e}", path.display()));
            }
            let _ = nix::unistd::chown(
                path,
                Some(Uid::from_raw(plan.uid)),
                Some(Gid::from_raw(plan.uid)),
            );
        }
    }
    if plan.forwarder {
        let listener = match std::net::TcpListener::bind(("127.0.0.1", PROXY_PORT)) {
            Ok(l) => l,
            Err(e) => die(
                errfd,
                &format!("cannot listen on 127.0.0.1:{PROXY_PORT} for the proxy: {e}"),
            ),
        };
        // SAFETY: as for the first fork; the child runs the forwarder loop and exits.
        match unsafe { fork() } {
            Ok(ForkResult::Child) => proxy::forward_loop(listener, Path::new(PROXY_SOCK_TARGET)),
            Ok(ForkResult::Parent { .. }) => drop(listener),
            Err(e) => die(errfd, &format!("cannot start the proxy forwarder: {e}")),
        }
    }
    // SAFETY: as for the first fork; the child runs `child_c`, which ends in execve or _exit.
    let c = match unsafe { fork() } {
        Ok(ForkResult::Child) => child_c(plan, filters, errfd),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => die(errfd, &format!("cannot fork the command: {e}")),
    };
    // SAFETY: closing our copy of the message pipe so the supervisor sees EOF once C execs.
    unsafe { libc::close(errfd) };
    // Init duty: reap everything; when C exits, report and leave (the kernel then kills the rest).
    let status = loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == c.as_raw() {
            break st;
        }
        if r < 0 && nix::Error::last() != nix::Error::EINTR {
            break 0x7f00;
        }
    };
    let full = |p: &str| {
        nix::sys::statvfs::statvfs(p)
            .map(|s| s.blocks_available() == 0)
            .unwrap_or(false)
    };
    let disk_full = full("/tmp") || full(WORKSPACE);
    let mut msg = status.to_le_bytes().to_vec();
    msg.push(u8::from(disk_full));
    let _ = nix::unistd::write(&p.status.1, &msg);
    // SAFETY: ends the sandbox init; the kernel kills every process left in the namespace.
    unsafe { libc::_exit(0) }
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

fn child_c(plan: &Plan, filters: &[BpfProgram], errfd: RawFd) -> ! {
    // SAFETY: prctl/signal calls with integer arguments on the calling process.
    unsafe {
        libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
        // Rust ignores SIGPIPE; an ignored disposition survives exec, so restore the default.
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigprocmask(libc::SIG_SETMASK, &set, std::ptr::null_mut());
        libc::setsid();
    }
    // Capabilities: empty the bounding and ambient sets, then leave root (which clears the rest).
    for cap in 0..=plan.last_cap {
        // SAFETY: prctl with integer arguments.
        let r = unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) };
        if r < 0 && nix::Error::last() != nix::Error::EINVAL {
            die(
                errfd,
                &format!(
                    "cannot drop capability {cap} from the bounding set: {}",
                    nix::Error::last()
                ),
            );
        }
    }
    // SAFETY: prctl with integer arguments.
    unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL,
            0,
            0,
            0,
        )
    };
    let id = plan.uid;
    if let Err(e) = nix::unistd::setgroups(&[Gid::from_raw(id)])
        && plan.privileged
    {
        die(errfd, &format!("cannot set the groups: {e}"));
    }
    if let Err(e) = nix::unistd::setresgid(Gid::from_raw(id), Gid::from_raw(id), Gid::from_raw(id))
    {
        die(errfd, &format!("cannot set gid {id}: {e}"));
    }
    if let Err(e) = nix::unistd::setresuid(Uid::from_raw(id), Uid::from_raw(id), Uid::from_raw(id))
    {
        die(errfd, &format!("cannot set uid {id}: {e}"));
    }
    for (res, value) in &plan.rlimits {
        let lim = libc::rlimit {
            rlim_cur: *value,
            rlim_max: *value,
        };
        // SAFETY: setrlimit with a valid rlimit value.
        if unsafe { libc::setrlimit(*res as _, &lim) } < 0 {
            die(
                errfd,
                &format!("cannot set rlimit {res}: {}", nix::Error::last()),
            );
        }
    }
    if let Err(e) = nix::unistd::chdir(WORKSPACE) {
        die(errfd, &format!("cannot enter the workspace: {e}"));
    }
    // Descriptors leaked from the parent process must not reach the command.
    // SAFETY: close_range on descriptor numbers only; the message pipe is CLOEXEC and kept.
    unsafe {
        if errfd > 3 {
            libc::syscall(libc::SYS_close_range, 3u32, (errfd - 1) as u32, 0u32);
        }
        libc::syscall(libc::SYS_close_range, (errfd + 1) as u32, u32::MAX, 0u32);
    }
    if plan.landlock {
        match apply_landlock(&plan.net) {
            Ok(msg) => report(errfd, b'I', &msg),
            Err(e) => die(errfd, &format!("landlock: {e}")),
        }
    }
    for f in filters {
        if let Err(e) = seccompiler::apply_filter(f) {
            die(errfd, &format!("cannot apply the seccomp filter: {e}"));
        }
    }
    let mut argv: Vec<*const libc::c_char> = plan.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(std::ptr::null());
    let mut envp: Vec<*const libc::c_char> = plan.envp.iter().map(|a| a.as_ptr()).collect();
    envp.push(std::ptr::null());
    let mut last = nix::Error::ENOENT;
    for cand in &plan.exec_candidates {
        // SAFETY: argv and envp are NULL-terminated arrays of pointers to live CStrings.
        unsafe { libc::execve(cand.as_ptr(), argv.as_ptr(), envp.as_ptr()) };
        let e = nix::Error::last();
        if e != nix::Error::ENOENT && e != nix::Error::ENOTDIR {
            last = e;
            if e != nix::Error::EACCES {
                break;
            }
        }
    }
    report(
        errfd,
        b'X',
        &format!("{}\t{}", plan.argv[0].to_string_lossy(), last.desc()),
    );
    // SAFETY: ends the forked child.
    unsafe { libc::_exit(127) }
}

fn apply_landlock(net: &NetMode) -> Result<String, String> {
    use landlock::{
        ABI, Access, AccessFs, AccessNet, NetPort, Ruleset, RulesetAttr, RulesetCreatedAttr,
        RulesetStatus, Scope, path_beneath_rules,
    };
    let abi = ABI::V6;
    let read_exec = AccessFs::from_read(abi);
    let mut ruleset = Ruleset::default()
        .handle_access(AccessFs::from_all(abi))
        .map_err(|e| e.to_string())?;
    let handle_net = !matches!(net, NetMode::Loopback);
    if handle_net {
        ruleset = ruleset
            .handle_access(AccessNet::from_all(abi))
            .map_err(|e| e.to_string())?;
    }
    ruleset = ruleset
        .scope(Scope::Signal | Scope::AbstractUnixSocket)
        .map_err(|e| e.to_string())?;
    let mut created = ruleset
        .create()
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            [
                "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32", "/etc", "/proc",
                "/dev",
            ]
            .iter()
            .filter(|p| Path::new(p).exists()),
            read_exec,
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(["/"], AccessFs::ReadDir))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            ["/tmp", WORKSPACE, "/dev/shm"],
            AccessFs::from_all(abi),
        ))
        .map_err(|e| e.to_string())?
        .add_rules(path_beneath_rules(
            crate::policy::DEVICES
                .iter()
                .filter(|p| Path::new(p).exists()),
            AccessFs::ReadFile | AccessFs::WriteFile,
        ))
        .map_err(|e| e.to_string())?;
    if matches!(net, NetMode::Allow(_)) {
        created = created
            .add_rule(NetPort::new(PROXY_PORT, AccessNet::ConnectTcp))
            .map_err(|e| e.to_string())?;
    }
    let status = created.restrict_self().map_err(|e| e.to_string())?;
    let state = match status.ruleset {
        RulesetStatus::FullyEnforced => "fully enforced",
        RulesetStatus::PartiallyEnforced => "partially enforced (older kernel ABI)",
        RulesetStatus::NotEnforced => {
            "not supported by this kernel (mount namespace still applies)"
        }
    };
    Ok(format!(
        "landlock: {state}; read/exec system dirs, read/write /tmp /work /dev/shm{}",
        if handle_net {
            ", TCP bind/connect denied except the proxy port"
        } else {
            ""
        }
    ))
}
