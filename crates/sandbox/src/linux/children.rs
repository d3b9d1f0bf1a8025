//! The children's side (A, B, C and D in the diagram in `linux/mod.rs`). Everything here runs
//! in forked children and ends in `_exit` or `execve`: system calls and small allocations
//! only, no locks; every failure is reported on the message pipe (`die`).

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, RawFd};
use std::path::Path;

use nix::sched::{CloneFlags, unshare};
use nix::unistd::{ForkResult, Gid, Pid, Uid, fork};
use seccompiler::BpfProgram;

use super::landlock::apply_landlock;
use super::plan::Plan;
use super::rootfs::{build_fs, mount_proc_and_pivot};
use super::{PROXY_PORT, PROXY_SOCK_TARGET, Pipes, loopback_up};
use crate::policy::WORKSPACE;
use crate::proxy;

/// Sends one message line (`E` failure, `X` exec failure, `I` information) to the supervisor.
fn report(fd: RawFd, kind: u8, msg: &str) {
    let mut line = Vec::with_capacity(msg.len() + 2);
    line.push(kind);
    line.extend_from_slice(msg.replace('\n', " ").as_bytes());
    line.push(b'\n');
    // SAFETY: writing a buffer we own to a pipe descriptor; errors are ignored (the parent
    // then reports a generic failure).
    unsafe { libc::write(fd, line.as_ptr().cast(), line.len()) };
}

/// Reports a setup failure and ends this child.
pub(super) fn die(fd: RawFd, msg: &str) -> ! {
    report(fd, b'E', msg);
    // SAFETY: _exit ends the forked child without running the parent's destructors.
    unsafe { libc::_exit(126) }
}

/// A: closes the supervisor's pipe ends, waits for the go, builds the filesystem (as host root
/// when privileged), unshares the namespaces, waits for its uid/gid maps, forks B.
pub(super) fn child_a(plan: &Plan, filters: &[BpfProgram], p: &Pipes) -> ! {
    let errfd = p.err.1.as_raw_fd();
    setup_stdio(p, errfd);
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
    enter_namespaces(plan, p, errfd);
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

/// Closes the supervisor's ends of the pipes and puts the command's pipes on 0, 1 and 2.
fn setup_stdio(p: &Pipes, errfd: RawFd) {
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
    } // Everything else Baton had open (listeners, other sandboxes' pipes, a deployment's
    // published port) must not be held by this sandbox's launcher and init while they live.
    close_all_but(&[
        p.to_a.0.as_raw_fd(),
        p.from_a.1.as_raw_fd(),
        p.err.1.as_raw_fd(),
        p.status.1.as_raw_fd(),
    ]);
}

/// Closes every descriptor from 3 up except `keep`.
fn close_all_but(keep: &[RawFd]) {
    let mut keep: Vec<u32> = keep.iter().filter(|f| **f > 2).map(|f| *f as u32).collect();
    keep.sort_unstable();
    let mut from = 3u32;
    for k in keep {
        if k > from {
            // SAFETY: close_range on descriptor numbers only; the kept ones are skipped.
            unsafe { libc::syscall(libc::SYS_close_range, from, k - 1, 0u32) };
        }
        from = from.max(k + 1);
    }
    // SAFETY: as above.
    unsafe { libc::syscall(libc::SYS_close_range, from, u32::MAX, 0u32) };
}

/// Unshares the sandbox's namespaces, has the supervisor write the uid/gid maps, and (when
/// privileged) becomes root of the new user namespace for the setup.
fn enter_namespaces(plan: &Plan, p: &Pipes, errfd: RawFd) {
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
    let mut b = [0u8; 1];
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
}

/// B, the sandbox's init: finishes the filesystem, pivots into it, sets hostname and loopback,
/// writes the workspace files, starts D (allow mode) and C, then reaps until C exits and
/// reports C's status.
fn child_b(plan: &Plan, filters: &[BpfProgram], p: &Pipes) -> ! {
    let errfd = p.err.1.as_raw_fd();
    // SAFETY: prctl with integer arguments.
    unsafe { libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL) };
    if !plan.privileged {
        build_fs(plan, errfd);
    }
    mount_proc_and_pivot(plan, errfd);
    if let Err(e) = nix::unistd::sethostname(&plan.hostname) {
        die(errfd, &format!("cannot set the hostname: {e}"));
    }
    if plan.lo_up
        && let Err(e) = loopback_up()
    {
        die(errfd, &format!("cannot bring up loopback: {e}"));
    }
    if plan.workspace_tmpfs {
        write_files(plan, errfd);
    }
    if plan.forwarder {
        start_forwarder(errfd);
    }
    // SAFETY: as for the first fork; the child runs `child_c`, which ends in execve or _exit.
    let c = match unsafe { fork() } {
        Ok(ForkResult::Child) => child_c(plan, filters, errfd),
        Ok(ForkResult::Parent { child }) => child,
        Err(e) => die(errfd, &format!("cannot fork the command: {e}")),
    };
    // SAFETY: closing our copy of the message pipe so the supervisor sees EOF once C execs.
    unsafe { libc::close(errfd) };
    let status = reap_until(c);
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

/// Init duty: reaps everything until `c` exits; returns its wait status.
fn reap_until(c: Pid) -> i32 {
    loop {
        let mut st: libc::c_int = 0;
        // SAFETY: waitpid with a valid out-pointer.
        let r = unsafe { libc::waitpid(-1, &mut st, 0) };
        if r == c.as_raw() {
            return st;
        }
        if r < 0 && nix::Error::last() != nix::Error::EINTR {
            return 0x7f00;
        }
    }
}

/// Writes the request's files into the tmpfs workspace, owned by the sandbox user.
fn write_files(plan: &Plan, errfd: RawFd) {
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

/// D: listens on 127.0.0.1:3128 inside and forwards each connection to Baton's proxy socket.
fn start_forwarder(errfd: RawFd) {
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

/// C: drops everything it may hold, applies landlock and seccomp, and execs the command.
fn child_c(plan: &Plan, filters: &[BpfProgram], errfd: RawFd) -> ! {
    reset_signals();
    drop_privileges(plan, errfd);
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
    exec(plan, errfd)
}

/// Default signal dispositions and mask, and a session of its own.
fn reset_signals() {
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
}

/// Capabilities: empties the bounding and ambient sets, then leaves root for the sandbox uid
/// (which clears the rest).
fn drop_privileges(plan: &Plan, errfd: RawFd) {
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
}

/// Tries each path of the command; reports why none could be executed.
fn exec(plan: &Plan, errfd: RawFd) -> ! {
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
