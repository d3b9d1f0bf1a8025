//! The sandbox's root filesystem: the plan's steps applied on the staging directory, the
//! PID namespace's /proc, and the pivot into the new root (in the children, see `children`).

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::mount::{MntFlags, MsFlags, mount, umount2};

use super::STAGING_CANDIDATES;
use super::children::die;
use super::plan::{Op, Plan};

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
pub(super) fn build_fs(plan: &Plan, errfd: RawFd) {
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
        apply(op, errfd);
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

/// One step of the filesystem plan (/proc waits for B).
fn apply(op: &Op, errfd: RawFd) {
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
        } => bind(src, dst, *readonly, *device, errfd),
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

/// Binds `src` on `dst`: read-only, or read-write with nosuid (and nodev unless a device),
/// keeping the flags the source mount has locked.
fn bind(src: &CString, dst: &CString, readonly: bool, device: bool, errfd: RawFd) {
    let none = None::<&str>;
    if let Err(e) = mount(
        Some(src.as_c_str()),
        dst.as_c_str(),
        none,
        MsFlags::MS_BIND | MsFlags::MS_REC,
        none,
    ) {
        mount_err(errfd, "cannot bind", dst, e);
    }
    if readonly {
        remount_ro(errfd, dst, false);
        return;
    }
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

/// A bind of the new root onto itself (a mount made in this namespace, not locked, which
/// pivot_root accepts), the PID namespace's own /proc inside it, then the pivot.
pub(super) fn mount_proc_and_pivot(plan: &Plan, errfd: RawFd) {
    let none = None::<&str>;
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
}
