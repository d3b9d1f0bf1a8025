//! The plan of one run, made before any fork: every mount step, path and string the children
//! need, so that after forking they only make system calls.

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use super::{PROXY_PORT, PROXY_SOCK_TARGET, STAGING_CANDIDATES};
use crate::policy::{Limits, Mount, NetMode, Policy, WORKSPACE};
use crate::{Error, ExecRequest};

/// One prepared mount step; all strings are built before forking.
pub(super) enum Op {
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

pub(super) struct Plan {
    pub ops: Vec<Op>,
    pub staging: CString,
    pub hostname: String,
    pub lo_up: bool,
    pub forwarder: bool,
    pub workspace_tmpfs: bool,
    pub files: Vec<(PathBuf, Vec<u8>)>,
    pub uid: u32,
    pub privileged: bool,
    pub exec_candidates: Vec<CString>,
    pub argv: Vec<CString>,
    pub envp: Vec<CString>,
    pub rlimits: Vec<(i32, u64)>,
    pub landlock: bool,
    pub net: NetMode,
    pub last_cap: u32,
}

pub(super) fn cstr(s: impl AsRef<[u8]>) -> Result<CString, Error> {
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

/// Everything one run needs, resolved from the policy and the request.
pub(super) fn build_plan(
    policy: &Policy,
    req: &ExecRequest,
    proxy_sock: Option<&Path>,
    host_payload_uid: u32,
) -> Result<Plan, Error> {
    let privileged = nix::unistd::geteuid().is_root();
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
    // uid= of an owned tmpfs is read in the mounter's user namespace: the host's when root
    // builds the filesystem.
    let tmpfs_owner = if privileged {
        host_payload_uid
    } else {
        policy.uid
    };
    let ops = MountOps::new(&staging, proxy_sock, tmpfs_owner).build(&mounts)?;
    let (exec_candidates, argv, envp) = command(policy, req)?;
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
        staging: cstr(staging.as_os_str().as_bytes())?,
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
        rlimits: rlimits(&policy.limits),
        landlock: policy.landlock,
        net: policy.net.clone(),
        last_cap,
    })
}

/// Turns the mount plan into steps on the staging directory, creating each parent once.
struct MountOps<'a> {
    staging: &'a Path,
    proxy_sock: Option<&'a Path>,
    tmpfs_owner: u32,
    made: Vec<PathBuf>,
    ops: Vec<Op>,
}

impl<'a> MountOps<'a> {
    fn new(staging: &'a Path, proxy_sock: Option<&'a Path>, tmpfs_owner: u32) -> Self {
        MountOps {
            staging,
            proxy_sock,
            tmpfs_owner,
            made: Vec::new(),
            ops: Vec::new(),
        }
    }

    fn build(mut self, mounts: &[Mount]) -> Result<Vec<Op>, Error> {
        for m in mounts {
            self.add(m)?;
        }
        Ok(self.ops)
    }

    fn staged(&self, target: &Path) -> Result<CString, Error> {
        staged(self.staging, target)
    }

    fn mkdirs(&mut self, dir: &Path) -> Result<(), Error> {
        let mut cur = PathBuf::from("/");
        for comp in dir.components().skip(1) {
            cur.push(comp);
            if !self.made.contains(&cur) {
                self.made.push(cur.clone());
                self.ops.push(Op::Mkdir(staged(self.staging, &cur)?));
            }
        }
        Ok(())
    }

    fn parent(&mut self, target: &Path) -> Result<(), Error> {
        match target.parent() {
            Some(parent) => self.mkdirs(parent),
            None => Ok(()),
        }
    }

    fn add(&mut self, m: &Mount) -> Result<(), Error> {
        match m {
            Mount::ReadOnly { source, target }
            | Mount::ReadWrite { source, target }
            | Mount::Device { source, target } => {
                let md = std::fs::metadata(source).map_err(|e| {
                    Error::Unenforceable(format!("cannot bind {}: {e}", source.display()))
                })?;
                if md.is_dir() {
                    self.mkdirs(target)?;
                } else {
                    self.parent(target)?;
                    self.ops.push(Op::Touch(self.staged(target)?));
                }
                let is_socket = self.proxy_sock.is_some_and(|s| s == source);
                self.ops.push(Op::Bind {
                    src: cstr(source.as_os_str().as_bytes())?,
                    dst: self.staged(target)?,
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
                self.mkdirs(target)?;
                let mut data = format!("size={size_bytes},mode={mode:o}");
                if *owned {
                    let owner = self.tmpfs_owner;
                    data.push_str(&format!(",uid={owner},gid={owner}"));
                }
                self.ops.push(Op::Tmpfs {
                    dst: self.staged(target)?,
                    data: cstr(data)?,
                });
            }
            Mount::Proc { target } => {
                self.mkdirs(target)?;
                self.ops.push(Op::Proc {
                    dst: self.staged(target)?,
                    sys: self.staged(&target.join("sys"))?,
                });
            }
            Mount::Symlink { target, link_to } => {
                self.parent(target)?;
                self.ops.push(Op::Symlink {
                    to: cstr(link_to.as_os_str().as_bytes())?,
                    dst: self.staged(target)?,
                });
            }
            Mount::File { target, contents } => {
                self.parent(target)?;
                self.ops.push(Op::Write {
                    dst: self.staged(target)?,
                    contents: contents.as_bytes().to_vec(),
                });
            }
        }
        Ok(())
    }
}

type Command = (Vec<CString>, Vec<CString>, Vec<CString>);

/// The paths to try for the command (its PATH lookup done here), its argv and its environment
/// (with the proxy variables in `allow:` mode).
fn command(policy: &Policy, req: &ExecRequest) -> Result<Command, Error> {
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
    let cmd = req
        .argv
        .first()
        .ok_or_else(|| Error::InvalidRequest("no command given".into()))?;
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
    Ok((exec_candidates, argv, envp))
}

/// The rlimits set on the command: a second line behind the cgroups.
fn rlimits(l: &Limits) -> Vec<(i32, u64)> {
    let time_secs = l.time.as_secs() + 2;
    vec![
        (libc::RLIMIT_FSIZE as i32, l.disk_bytes),
        (libc::RLIMIT_CORE as i32, 0),
        (libc::RLIMIT_NPROC as i32, u64::from(l.pids)),
        (
            libc::RLIMIT_CPU as i32,
            time_secs.saturating_mul(l.cpus.ceil().max(1.0) as u64),
        ),
        (libc::RLIMIT_NOFILE as i32, 4096),
        (libc::RLIMIT_MEMLOCK as i32, 64 << 10),
    ]
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::Tier;

    fn dst(op: &Op) -> Option<String> {
        let d = match op {
            Op::Mkdir(d) | Op::Touch(d) => d,
            Op::Bind { dst, .. }
            | Op::Tmpfs { dst, .. }
            | Op::Proc { dst, .. }
            | Op::Symlink { dst, .. }
            | Op::Write { dst, .. } => dst,
        };
        Some(d.to_string_lossy().into_owned())
    }

    fn plan(policy: &Policy, req: &ExecRequest) -> Plan {
        build_plan(policy, req, None, 101_000).unwrap()
    }

    #[test]
    fn the_plan_builds_the_policys_filesystem_on_the_staging_dir() {
        let p = Policy::new(Tier::Process);
        let req = ExecRequest::new(["python3", "-c", "print(1)"]);
        let pl = plan(&p, &req);
        let staging = pl.staging.to_string_lossy().into_owned();
        assert!(STAGING_CANDIDATES.contains(&staging.as_str()), "{staging}");
        // Every step happens under the staging directory, and each directory is made once.
        let mut mkdirs = Vec::new();
        for op in &pl.ops {
            let d = dst(op).unwrap();
            assert!(d.starts_with(&staging), "{d} is outside {staging}");
            if let Op::Mkdir(m) = op {
                assert!(!mkdirs.contains(m), "{m:?} made twice");
                mkdirs.push(m.clone());
            }
        }
        let at = |t: &str| format!("{}{t}", staging.trim_end_matches('/'));
        let usr = pl.ops.iter().find_map(|op| match op {
            Op::Bind { dst, readonly, .. } if *dst.to_string_lossy() == at("/usr") => {
                Some(*readonly)
            }
            _ => None,
        });
        assert_eq!(usr, Some(true), "/usr is bound read-only");
        let work = pl.ops.iter().find_map(|op| match op {
            Op::Tmpfs { dst, data } if *dst.to_string_lossy() == at("/work") => {
                Some(data.to_string_lossy().into_owned())
            }
            _ => None,
        });
        let work = work.expect("a tmpfs /work");
        assert!(
            work.contains(&format!("size={}", p.limits.disk_bytes)),
            "{work}"
        );
        assert!(pl.ops.iter().any(|op| matches!(op, Op::Proc { .. })));
        assert!(pl.workspace_tmpfs && !pl.forwarder && !pl.lo_up);
        assert_eq!(pl.uid, 1000);
    }

    #[test]
    fn the_command_is_looked_up_in_the_sandboxs_path() {
        let p = Policy::new(Tier::Process);
        let pl = plan(&p, &ExecRequest::new(["python3", "x.py"]));
        let cands: Vec<String> = pl
            .exec_candidates
            .iter()
            .map(|c| c.to_string_lossy().into_owned())
            .collect();
        assert!(cands.iter().all(|c| c.ends_with("/python3")), "{cands:?}");
        assert!(cands.contains(&"/usr/bin/python3".to_string()), "{cands:?}");
        let pl = plan(&p, &ExecRequest::new(["/bin/sh", "-c", "true"]));
        assert_eq!(pl.exec_candidates, vec![cstr("/bin/sh").unwrap()]);
        assert_eq!(pl.argv.len(), 3);
        // Nothing of the host's environment.
        assert!(
            !pl.envp
                .iter()
                .any(|e| e.to_string_lossy().starts_with("CARGO")),
            "{:?}",
            pl.envp
        );
    }

    #[test]
    fn allow_mode_sets_the_proxy_and_the_limits_become_rlimits() {
        let mut p = Policy::new(Tier::Process);
        p.net = NetMode::Allow(vec!["example.org".into()]);
        p.limits.disk_bytes = 5 << 20;
        let pl = plan(&p, &ExecRequest::new(["true"]));
        assert!(pl.forwarder && pl.lo_up);
        let proxy = format!("HTTPS_PROXY=http://127.0.0.1:{PROXY_PORT}");
        assert!(
            pl.envp.iter().any(|e| e.to_string_lossy() == proxy),
            "{:?}",
            pl.envp
        );
        assert!(pl.rlimits.contains(&(libc::RLIMIT_FSIZE as i32, 5 << 20)));
        assert!(pl.rlimits.contains(&(libc::RLIMIT_NPROC as i32, 64)));
    }

    #[test]
    fn a_workdir_is_bound_read_write_and_files_go_to_the_workspace() {
        let p = Policy::new(Tier::Process);
        let dir = tempfile::tempdir().unwrap();
        let mut req = ExecRequest::new(["true"]);
        req.workdir = Some(dir.path().to_path_buf());
        req.files.insert("a/b.txt".into(), "x".into());
        let pl = plan(&p, &req);
        assert!(!pl.workspace_tmpfs);
        let src = cstr(dir.path().as_os_str().as_bytes()).unwrap();
        assert!(pl.ops.iter().any(|op| matches!(op,
            Op::Bind { src: s, readonly: false, .. } if *s == src)));
        assert_eq!(
            pl.files,
            vec![(PathBuf::from("/work/a/b.txt"), b"x".to_vec())]
        );
        // A NUL byte in an argument cannot become a C string.
        assert!(build_plan(&p, &ExecRequest::new(["a\0b"]), None, 1).is_err());
    }
}
