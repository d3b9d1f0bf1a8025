//! The filesystem a run gets, as a list of [`Mount`]s every tier applies.

use std::path::{Path, PathBuf};

use super::{Mount, Policy};

/// System directories bound read-only into every sandbox (those that exist on the host).
pub const SYSTEM_DIRS: &[&str] = &[
    "/usr", "/bin", "/sbin", "/lib", "/lib32", "/lib64", "/libx32",
];
/// Files and directories of /etc a dynamic binary or an HTTPS client needs; nothing else of /etc.
pub const ETC_ENTRIES: &[&str] = &[
    "/etc/ld.so.cache",
    "/etc/ld.so.conf",
    "/etc/ld.so.conf.d",
    "/etc/alternatives",
    "/etc/ssl",
    "/etc/ca-certificates",
    "/etc/localtime",
    "/etc/nsswitch.conf",
];
pub const DEVICES: &[&str] = &[
    "/dev/null",
    "/dev/zero",
    "/dev/full",
    "/dev/random",
    "/dev/urandom",
];
pub const WORKSPACE: &str = "/work";

impl Policy {
    /// The full mount plan for one run: system directories read-only, selected /etc entries,
    /// a private /dev and /proc, /tmp and the workspace (a tmpfs, or `workdir` bound read-write),
    /// then the policy's own mounts. Host paths that do not exist are left out.
    pub fn mounts_for(&self, workdir: Option<&Path>) -> Vec<Mount> {
        let mut out = system_mounts();
        out.extend(self.etc_mounts());
        out.extend(dev_mounts());
        out.push(Mount::Proc {
            target: "/proc".into(),
        });
        out.push(Mount::Tmpfs {
            target: "/tmp".into(),
            size_bytes: self.limits.disk_bytes,
            mode: 0o1777,
            owned: false,
        });
        match workdir {
            Some(dir) => out.push(Mount::ReadWrite {
                source: dir.into(),
                target: WORKSPACE.into(),
            }),
            None => out.push(Mount::Tmpfs {
                target: WORKSPACE.into(),
                size_bytes: self.limits.disk_bytes,
                mode: 0o755,
                owned: true,
            }),
        }
        out.extend(self.mounts.iter().cloned());
        out
    }

    /// The /etc entries of the host a run needs, and generated passwd, group and hosts.
    fn etc_mounts(&self) -> Vec<Mount> {
        let mut out: Vec<Mount> = ETC_ENTRIES
            .iter()
            .map(Path::new)
            .filter(|p| p.exists())
            .map(|p| Mount::ReadOnly {
                source: p.into(),
                target: p.into(),
            })
            .collect();
        let uid = self.uid;
        out.push(Mount::File {
            target: "/etc/passwd".into(),
            contents: format!("root:x:0:0:root:/nonexistent:/usr/sbin/nologin\nsandbox:x:{uid}:{uid}:sandbox:{WORKSPACE}:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        });
        out.push(Mount::File {
            target: "/etc/group".into(),
            contents: format!("root:x:0:\nsandbox:x:{uid}:\nnogroup:x:65534:\n"),
        });
        out.push(Mount::File {
            target: "/etc/hosts".into(),
            contents: format!("127.0.0.1 localhost {}\n::1 localhost\n", self.hostname),
        });
        out
    }
}

/// The host's system directories, read-only (merged-/usr symlinks recreated as links).
fn system_mounts() -> Vec<Mount> {
    let mut out = Vec::new();
    for d in SYSTEM_DIRS {
        let p = Path::new(d);
        match std::fs::symlink_metadata(p) {
            Ok(md) if md.file_type().is_symlink() => {
                if let Ok(to) = std::fs::read_link(p) {
                    out.push(Mount::Symlink {
                        target: p.into(),
                        link_to: to,
                    });
                }
            }
            Ok(md) if md.is_dir() => out.push(Mount::ReadOnly {
                source: p.into(),
                target: p.into(),
            }),
            _ => {}
        }
    }
    out
}

/// A private /dev: a small tmpfs with the harmless devices, the standard links and /dev/shm.
fn dev_mounts() -> Vec<Mount> {
    let mut out = vec![Mount::Tmpfs {
        target: "/dev".into(),
        size_bytes: 64 << 10,
        mode: 0o755,
        owned: false,
    }];
    for d in DEVICES {
        if Path::new(d).exists() {
            out.push(Mount::Device {
                source: PathBuf::from(d),
                target: PathBuf::from(d),
            });
        }
    }
    for (target, link_to) in [
        ("/dev/fd", "/proc/self/fd"),
        ("/dev/stdin", "/proc/self/fd/0"),
        ("/dev/stdout", "/proc/self/fd/1"),
        ("/dev/stderr", "/proc/self/fd/2"),
    ] {
        out.push(Mount::Symlink {
            target: target.into(),
            link_to: link_to.into(),
        });
    }
    out.push(Mount::Tmpfs {
        target: "/dev/shm".into(),
        size_bytes: 1 << 20,
        mode: 0o1777,
        owned: false,
    });
    out
}
