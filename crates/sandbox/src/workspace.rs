//! A host workdir held to the disk limit as a whole.
//!
//! The tiers bind a workdir read-write as `/work`. A bind has no size of its own, so the
//! per-file RLIMIT_FSIZE capped each file but not their total: four 30 MiB files under a
//! 50 MiB limit all reached the host. Instead, for every tier that takes a workdir:
//!
//! ```text
//! workdir (host) ──copy in──▶ tmpfs of `disk` bytes, mounted on the host as
//!                             $TMPDIR/baton-<pid>-<n>-work  ──bound as /work by the tier──▶ run
//! workdir (host) ◀─copy back─ the tmpfs's tree, once the run has ended and nothing of it runs
//! ```
//!
//! A write past the limit fails inside (ENOSPC) and the host never gets more than the limit.
//! The copy back makes the workdir the tmpfs's tree: files, directories and symbolic links
//! with their modes, owners and times; what the run deleted is deleted; other file types are
//! not carried. Neither side is ever followed through a symbolic link. The tmpfs's pages are
//! charged to the memory cgroup of whoever writes them (the sandbox, for what it writes), as
//! for the tmpfs workspace of a run without a workdir. Mounting needs root, like the tiers'
//! cgroups; where it fails the run is refused (`Unenforceable`), never run uncapped.

use std::collections::BTreeSet;
use std::ffi::OsString;
use std::fs::{self, Metadata};
use std::io;
use std::os::unix::fs::{MetadataExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, UNIX_EPOCH};

use async_trait::async_trait;
use nix::mount::{MntFlags, MsFlags, mount, umount2};

use crate::policy::{Policy, Tier};
use crate::{Error, ExecOutput, ExecRequest, Sandbox};

static STAGED: AtomicU64 = AtomicU64::new(0);

/// A workdir copied onto a tmpfs of the disk limit's size; unmounted and removed on drop.
pub struct Staged {
    dir: PathBuf,
    host: PathBuf,
    mounted: bool,
}

impl Staged {
    /// Mounts the tmpfs (owner and mode of `host`) and copies `host`'s tree onto it.
    pub fn prepare(host: &Path, cap: u64) -> Result<Staged, Error> {
        Staged::prepare_as(host, cap, None)
    }

    /// [`Staged::prepare`], with the tmpfs and everything copied onto it owned by `owner`
    /// (uid, gid) when given: a private copy the sandbox's user may change, whoever owns the
    /// source (a deployment's files). Never copied back: dropping it throws it away.
    pub fn prepare_as(host: &Path, cap: u64, owner: Option<(u32, u32)>) -> Result<Staged, Error> {
        let md = fs::metadata(host)?;
        let (uid, gid) = owner.unwrap_or((md.uid(), md.gid()));
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("baton-{}-{n}-work", std::process::id()));
        fs::create_dir(&dir)?;
        let mut staged = Staged {
            dir,
            host: host.to_path_buf(),
            mounted: false,
        };
        let opts = format!(
            "size={cap},mode={:o},uid={},gid={}",
            md.mode() & 0o7777,
            uid,
            gid
        );
        mount(
            Some("baton-work"),
            &staged.dir,
            Some("tmpfs"),
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(opts.as_str()),
        )
        .map_err(|e| {
            Error::Unenforceable(format!(
                "cannot hold the workdir {} to the disk limit: mounting a tmpfs on {} failed: {e} (this needs root)",
                host.display(),
                staged.dir.display()
            ))
        })?;
        staged.mounted = true;
        sync(host, &staged.dir).map_err(|e| {
            if e.raw_os_error() == Some(libc::ENOSPC) {
                Error::InvalidRequest(format!(
                    "the workdir {} holds more than the disk limit ({cap} bytes)",
                    host.display()
                ))
            } else {
                Error::Runtime(format!(
                    "cannot copy the workdir {} in: {e}",
                    host.display()
                ))
            }
        })?;
        if owner.is_some() {
            chown_tree(&staged.dir, uid, gid).map_err(|e| {
                Error::Runtime(format!(
                    "cannot give the copy of {} to uid {uid}: {e}",
                    host.display()
                ))
            })?;
        }
        Ok(staged)
    }

    /// Where the tier binds the workspace from.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Copies the tree back over the host workdir, then unmounts.
    pub fn finish(mut self) -> Result<(), Error> {
        let r = sync(&self.dir, &self.host).map_err(|e| {
            Error::Runtime(format!(
                "cannot copy the workspace back to {}: {e}",
                self.host.display()
            ))
        });
        self.teardown();
        r
    }

    fn teardown(&mut self) {
        if self.mounted {
            let _ = umount2(&self.dir, MntFlags::MNT_DETACH);
            self.mounted = false;
        }
        let _ = fs::remove_dir(&self.dir);
    }

    /// `e` with the tmpfs's path replaced by the workdir's, so errors name what the caller gave.
    fn rename(&self, e: Error) -> Error {
        let (from, to) = (
            self.dir.display().to_string(),
            self.host.display().to_string(),
        );
        match e {
            Error::InvalidRequest(m) => Error::InvalidRequest(m.replace(&from, &to)),
            Error::Unenforceable(m) => Error::Unenforceable(m.replace(&from, &to)),
            Error::Runtime(m) => Error::Runtime(m.replace(&from, &to)),
            other => other,
        }
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        self.teardown();
    }
}

/// Makes `dst`'s tree the same as `src`'s (see the module docs).
fn sync(src: &Path, dst: &Path) -> io::Result<()> {
    let mut kept: BTreeSet<OsString> = BTreeSet::new();
    for entry in fs::read_dir(src)? {
        let entry = entry?;
        let name = entry.file_name();
        let (from, to) = (entry.path(), dst.join(&name));
        let md = fs::symlink_metadata(&from)?;
        let there = fs::symlink_metadata(&to).ok();
        let ft = md.file_type();
        if ft.is_dir() {
            match &there {
                Some(t) if t.is_dir() => {}
                Some(t) => {
                    remove(&to, t)?;
                    fs::create_dir(&to)?;
                }
                None => fs::create_dir(&to)?,
            }
            sync(&from, &to)?;
        } else if ft.is_file() {
            let same = there.as_ref().is_some_and(|t| {
                t.is_file()
                    && t.len() == md.len()
                    && t.mtime() == md.mtime()
                    && t.mtime_nsec() == md.mtime_nsec()
            });
            if !same {
                if let Some(t) = there.as_ref().filter(|t| !t.is_file()) {
                    remove(&to, t)?;
                }
                copy_file(&from, &to)?;
            }
        } else if ft.is_symlink() {
            if let Some(t) = &there {
                remove(&to, t)?;
            }
            std::os::unix::fs::symlink(fs::read_link(&from)?, &to)?;
        } else {
            continue;
        }
        set_attributes(&to, &md)?;
        kept.insert(name);
    }
    for entry in fs::read_dir(dst)? {
        let entry = entry?;
        if !kept.contains(&entry.file_name()) {
            let p = entry.path();
            remove(&p, &fs::symlink_metadata(&p)?)?;
        }
    }
    Ok(())
}

/// Gives everything under `dir` to `uid`:`gid`, never following a symbolic link.
fn chown_tree(dir: &Path, uid: u32, gid: u32) -> io::Result<()> {
    for entry in fs::read_dir(dir)? {
        let p = entry?.path();
        std::os::unix::fs::lchown(&p, Some(uid), Some(gid))?;
        if fs::symlink_metadata(&p)?.is_dir() {
            chown_tree(&p, uid, gid)?;
        }
    }
    Ok(())
}

/// Removes `p` without following it (std's `remove_dir_all` does not follow links).
fn remove(p: &Path, md: &Metadata) -> io::Result<()> {
    if md.is_dir() {
        fs::remove_dir_all(p)
    } else {
        fs::remove_file(p)
    }
}

fn copy_file(from: &Path, to: &Path) -> io::Result<()> {
    let mut r = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(from)?;
    let mut w = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .custom_flags(libc::O_NOFOLLOW)
        .open(to)?;
    io::copy(&mut r, &mut w)?;
    Ok(())
}

/// Owner, mode and times of `md` on `p` (a link gets its owner only).
fn set_attributes(p: &Path, md: &Metadata) -> io::Result<()> {
    // Not as root (the mount would have failed first): the copy keeps the caller's owner.
    let _ = std::os::unix::fs::lchown(p, Some(md.uid()), Some(md.gid()));
    if md.file_type().is_symlink() {
        return Ok(());
    }
    fs::set_permissions(p, fs::Permissions::from_mode(md.mode() & 0o7777))?;
    let at = |secs: i64, nsecs: i64| {
        let d = Duration::new(secs.unsigned_abs(), u32::try_from(nsecs).unwrap_or(0));
        if secs >= 0 {
            UNIX_EPOCH + d
        } else {
            UNIX_EPOCH - d
        }
    };
    let times = fs::FileTimes::new()
        .set_accessed(at(md.atime(), md.atime_nsec()))
        .set_modified(at(md.mtime(), md.mtime_nsec()));
    let f = fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW)
        .open(p)?;
    f.set_times(times)
}

/// A tier whose workdir runs are held to the disk limit as a whole (see the module docs).
pub struct CappedWorkdir<S>(pub S);

#[async_trait]
impl<S: Sandbox> Sandbox for CappedWorkdir<S> {
    fn tier(&self) -> Tier {
        self.0.tier()
    }
    fn policy(&self) -> &Policy {
        self.0.policy()
    }
    async fn exec(&self, mut req: ExecRequest) -> Result<ExecOutput, Error> {
        let Some(host) = req.workdir.clone() else {
            return self.0.exec(req).await;
        };
        req.validate()?;
        let cap = self.0.policy().limits.disk_bytes;
        let staged = tokio::task::spawn_blocking(move || Staged::prepare(&host, cap))
            .await
            .map_err(|e| Error::Runtime(format!("workspace copy thread failed: {e}")))??;
        req.workdir = Some(staged.path().to_path_buf());
        let mut out = match self.0.exec(req).await {
            Ok(out) => out,
            Err(e) => return Err(staged.rename(e)),
        };
        let host = staged.host.display().to_string();
        tokio::task::spawn_blocking(move || staged.finish())
            .await
            .map_err(|e| Error::Runtime(format!("workspace copy thread failed: {e}")))??;
        out.enforced.push(format!(
            "workspace: the workdir {host} on a tmpfs of {cap} B in all, copied back after the run"
        ));
        Ok(out)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn tree(root: &Path) -> Vec<String> {
        let mut out = Vec::new();
        fn walk(root: &Path, d: &Path, out: &mut Vec<String>) {
            let mut es: Vec<_> = fs::read_dir(d)
                .unwrap()
                .map(|e| e.unwrap().path())
                .collect();
            es.sort();
            for p in es {
                let md = fs::symlink_metadata(&p).unwrap();
                let rel = p.strip_prefix(root).unwrap().display().to_string();
                if md.file_type().is_symlink() {
                    out.push(format!("{rel} -> {}", fs::read_link(&p).unwrap().display()));
                } else if md.is_dir() {
                    out.push(format!("{rel}/ {:o}", md.mode() & 0o7777));
                    walk(root, &p, out);
                } else {
                    out.push(format!(
                        "{rel} {:o} {}",
                        md.mode() & 0o7777,
                        fs::read_to_string(&p).unwrap()
                    ));
                }
            }
        }
        walk(root, root, &mut out);
        out
    }

    #[test]
    fn sync_makes_the_destination_the_same_tree_without_following_links() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let outside = tempfile::tempdir().unwrap();
        fs::create_dir_all(a.path().join("d/e")).unwrap();
        fs::write(a.path().join("d/e/f.txt"), "new").unwrap();
        fs::write(a.path().join("x"), "x").unwrap();
        fs::set_permissions(a.path().join("x"), fs::Permissions::from_mode(0o750)).unwrap();
        std::os::unix::fs::symlink("/etc/passwd", a.path().join("link")).unwrap();
        // The destination has stale entries, and links where the source has files and dirs.
        fs::write(b.path().join("stale"), "old").unwrap();
        fs::create_dir(b.path().join("stale-dir")).unwrap();
        fs::write(outside.path().join("victim"), "keep").unwrap();
        std::os::unix::fs::symlink(outside.path().join("victim"), b.path().join("x")).unwrap();
        std::os::unix::fs::symlink(outside.path(), b.path().join("d")).unwrap();
        sync(a.path(), b.path()).unwrap();
        assert_eq!(tree(a.path()), tree(b.path()));
        assert_eq!(
            fs::read_to_string(outside.path().join("victim")).unwrap(),
            "keep"
        );
        assert_eq!(fs::read_dir(outside.path()).unwrap().count(), 1);
        // Unchanged files are left as they are; a second sync changes nothing.
        sync(a.path(), b.path()).unwrap();
        assert_eq!(tree(a.path()), tree(b.path()));
    }
}
