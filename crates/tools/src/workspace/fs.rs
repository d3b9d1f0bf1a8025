//! File access confined to one directory: every path is relative, checked word by word, and
//! opened one directory at a time from a descriptor of the root with `O_NOFOLLOW`, so neither
//! `..`, an absolute path nor a symlink (one planted later by sandboxed code included) leads
//! outside. Only regular files and directories are read or written; special files are refused.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use rustix::fs::{AtFlags, Dir, FileType, Mode, OFlags};
use rustix::io::Errno;

/// Why a path or a file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("`{path}`: {reason}")]
    Path { path: String, reason: String },
    #[error("`{path}` does not exist in the workspace")]
    Missing { path: String },
    #[error("`{path}`: {reason}")]
    Io { path: String, reason: String },
}

fn refused(path: &str, reason: impl Into<String>) -> Refused {
    Refused::Path {
        path: path.to_string(),
        reason: reason.into(),
    }
}

/// The words of a workspace path, after the checks: relative, no `..`, no `.git`, no empty or
/// over-long names. `.` words are dropped; `""` and `"."` are the root.
pub fn words(path: &str) -> Result<Vec<&str>, Refused> {
    if path.contains('\0') {
        return Err(refused(path, "a path may not contain a NUL byte"));
    }
    if path.starts_with('/') {
        return Err(refused(
            path,
            "absolute paths are refused: give a path relative to the workspace",
        ));
    }
    if path.len() > 1024 {
        return Err(refused(path, "the path is longer than 1024 bytes"));
    }
    let mut out = Vec::new();
    for w in path.split('/') {
        match w {
            "" | "." => {}
            ".." => return Err(refused(path, "`..` would leave the workspace")),
            ".git" => {
                return Err(refused(
                    path,
                    "`.git` is the workspace's history, which only Baton writes",
                ));
            }
            w if w.len() > 255 => return Err(refused(path, "a name is longer than 255 bytes")),
            w => out.push(w),
        }
    }
    Ok(out)
}

fn io(path: &str, what: &str, e: impl std::fmt::Display) -> Refused {
    Refused::Io {
        path: path.to_string(),
        reason: format!("{what}: {e}"),
    }
}

/// Opens directory `word` under `dir` without following a symlink.
fn open_dir(dir: impl AsFd, word: &str, path: &str, create: bool) -> Result<OwnedFd, Refused> {
    let flags = OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::RDONLY | OFlags::CLOEXEC;
    match rustix::fs::openat(&dir, word, flags, Mode::empty()) {
        Ok(fd) => Ok(fd),
        Err(Errno::NOENT) if create => {
            match rustix::fs::mkdirat(&dir, word, Mode::from_raw_mode(0o755)) {
                Ok(()) | Err(Errno::EXIST) => {}
                Err(e) => return Err(io(path, &format!("creating directory `{word}`"), e)),
            }
            rustix::fs::openat(&dir, word, flags, Mode::empty())
                .map_err(|e| io(path, &format!("opening directory `{word}`"), e))
        }
        Err(Errno::NOENT) => Err(Refused::Missing {
            path: path.to_string(),
        }),
        Err(Errno::LOOP | Errno::NOTDIR) => Err(refused(
            path,
            format!("`{word}` is a symlink or a file, not a directory: symlinks are not followed"),
        )),
        Err(e) => Err(io(path, &format!("opening directory `{word}`"), e)),
    }
}

/// Directories of caches that commands leave behind (Python's bytecode and test caches,
/// npm's packages, virtual environments): not listed, searched or committed.
pub const CACHES: [&str; 6] = [
    "__pycache__",
    ".pytest_cache",
    ".mypy_cache",
    ".ruff_cache",
    "node_modules",
    ".venv",
];

/// The workspace's files: a root directory every access starts from.
#[derive(Debug, Clone)]
pub struct Root {
    dir: PathBuf,
}

/// A file of the workspace as a listing shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: String,
    pub kind: Kind,
    pub bytes: u64,
    /// A file with an execute bit (kept in the history as mode 100755).
    pub executable: bool,
    /// A file's metadata when it was listed (the default for anything else).
    pub stamp: Stamp,
}

/// A file's metadata, as git's index keeps it: while it is the same, the file was not
/// changed (any write or metadata change sets the change time to the current time).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Stamp {
    pub dev: u64,
    pub ino: u64,
    pub size: u64,
    pub mode: u32,
    pub mtime: (i64, i64),
    pub ctime: (i64, i64),
}

/// How long after a file's last change its stamp is trusted: change times come from the
/// kernel's coarse clock (one tick, up to 10 ms), so two writes within a tick can leave the
/// same stamp. A file hashed this soon after its change is hashed again next time.
const RACY_NS: i128 = 50_000_000;

impl Stamp {
    fn of(st: &rustix::fs::Stat) -> Stamp {
        Stamp {
            dev: st.st_dev,
            ino: st.st_ino,
            size: st.st_size as u64,
            mode: st.st_mode,
            mtime: (st.st_mtime, st.st_mtime_nsec as i64),
            ctime: (st.st_ctime, st.st_ctime_nsec as i64),
        }
    }

    /// Whether a file with this stamp, read at `now`, had stopped changing: its last change is
    /// more than a clock tick older (see [`RACY_NS`]), so any later change gives it another
    /// stamp.
    pub fn settled(&self, now: std::time::SystemTime) -> bool {
        let Ok(now) = now.duration_since(std::time::UNIX_EPOCH) else {
            return false;
        };
        let ns = |(s, n): (i64, i64)| i128::from(s) * 1_000_000_000 + i128::from(n);
        let changed = ns(self.ctime).max(ns(self.mtime));
        self != &Stamp::default() && changed + RACY_NS < now.as_nanos() as i128
    }
}

/// What [`Root::walk`] found: at most its limit of entries, and whether that was all.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listing {
    pub entries: Vec<Entry>,
    pub complete: bool,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// Symlinks, sockets, devices, FIFOs: listed, never read, written or committed.
    Other,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::File => "file",
            Kind::Dir => "dir",
            Kind::Other => "other",
        }
    }
}

impl Root {
    /// `dir`, created when missing.
    pub fn create(dir: &Path) -> Result<Self, Refused> {
        std::fs::create_dir_all(dir)
            .map_err(|e| io(&dir.display().to_string(), "creating the workspace", e))?;
        Ok(Self {
            dir: dir.to_path_buf(),
        })
    }

    pub fn path(&self) -> &Path {
        &self.dir
    }

    fn root_fd(&self) -> Result<OwnedFd, Refused> {
        rustix::fs::open(
            &self.dir,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| io(".", "opening the workspace", e))
    }

    /// The directory holding `words`' last word, and that word.
    fn parent<'a>(
        &self,
        path: &str,
        words: &'a [&'a str],
        create: bool,
    ) -> Result<(OwnedFd, &'a str), Refused> {
        let Some((name, dirs)) = words.split_last() else {
            return Err(refused(path, "names the workspace itself, not a file"));
        };
        let mut fd = self.root_fd()?;
        for w in dirs {
            fd = open_dir(&fd, w, path, create)?;
        }
        Ok((fd, name))
    }

    /// The directory `path` names (`""` for the root).
    fn dir_fd(&self, path: &str) -> Result<OwnedFd, Refused> {
        let mut fd = self.root_fd()?;
        for w in words(path)? {
            fd = open_dir(&fd, w, path, false)?;
        }
        Ok(fd)
    }

    /// The bytes of file `path`, refused above `max` bytes.
    pub fn read(&self, path: &str, max: u64) -> Result<Vec<u8>, Refused> {
        let ws = words(path)?;
        let (dir, name) = self.parent(path, &ws, false)?;
        let flags = OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::empty()) {
            Ok(fd) => fd,
            Err(Errno::NOENT) => {
                return Err(Refused::Missing {
                    path: path.to_string(),
                });
            }
            Err(Errno::LOOP) => {
                return Err(refused(path, "is a symlink: symlinks are not followed"));
            }
            Err(e) => return Err(io(path, "opening", e)),
        };
        let size = regular(&fd, path)?;
        if size > max {
            return Err(refused(
                path,
                format!("is {size} bytes, more than the {max} a read may return"),
            ));
        }
        let mut out = Vec::with_capacity(size as usize);
        std::fs::File::from(fd)
            .take(max.saturating_add(1))
            .read_to_end(&mut out)
            .map_err(|e| io(path, "reading", e))?;
        Ok(out)
    }

    /// Writes `bytes` to file `path` (directories made as needed); the size it had before
    /// (0 for a new file).
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<u64, Refused> {
        self.write_mode(path, bytes, None)
    }

    /// [`Root::write`], setting the execute bits (`Some(true)`: 0755, `Some(false)`: 0644;
    /// `None` keeps the mode a file has, 0644 for a new one).
    pub fn write_mode(
        &self,
        path: &str,
        bytes: &[u8],
        executable: Option<bool>,
    ) -> Result<u64, Refused> {
        let ws = words(path)?;
        let (dir, name) = self.parent(path, &ws, true)?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::CLOEXEC;
        let fd = match rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(0o644)) {
            Ok(fd) => fd,
            Err(Errno::LOOP) => {
                return Err(refused(path, "is a symlink: symlinks are not followed"));
            }
            Err(Errno::ISDIR) => return Err(refused(path, "is a directory")),
            Err(e) => return Err(io(path, "opening for writing", e)),
        };
        let before = regular(&fd, path)?;
        rustix::fs::ftruncate(&fd, 0).map_err(|e| io(path, "truncating", e))?;
        if let Some(x) = executable {
            let mode = if x { 0o755 } else { 0o644 };
            rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode))
                .map_err(|e| io(path, "setting its mode", e))?;
        }
        std::fs::File::from(fd)
            .write_all(bytes)
            .map_err(|e| io(path, "writing", e))?;
        Ok(before)
    }

    /// Removes file `path`; whether it existed.
    pub fn remove(&self, path: &str) -> Result<bool, Refused> {
        let ws = words(path)?;
        let (dir, name) = match self.parent(path, &ws, false) {
            Ok(p) => p,
            Err(Refused::Missing { .. }) => return Ok(false),
            Err(e) => return Err(e),
        };
        match rustix::fs::unlinkat(&dir, name, AtFlags::empty()) {
            Ok(()) => Ok(true),
            Err(Errno::NOENT) => Ok(false),
            Err(Errno::ISDIR) => Err(refused(path, "is a directory")),
            Err(e) => Err(io(path, "removing", e)),
        }
    }

    /// The entries under `path` (a directory), depth first, names sorted, at most `limit`.
    pub fn walk(&self, path: &str, limit: usize) -> Result<Listing, Refused> {
        let prefix = words(path)?.join("/");
        let fd = self.dir_fd(path)?;
        let mut entries = Vec::new();
        let complete = self.walk_into(fd, &prefix, &mut entries, limit)?;
        Ok(Listing { entries, complete })
    }

    /// False once `limit` is passed.
    fn walk_into(
        &self,
        fd: OwnedFd,
        prefix: &str,
        out: &mut Vec<Entry>,
        limit: usize,
    ) -> Result<bool, Refused> {
        let shown = if prefix.is_empty() { "." } else { prefix };
        let mut names: Vec<(String, FileType)> = Vec::new();
        let dir = Dir::read_from(&fd).map_err(|e| io(shown, "listing", e))?;
        for entry in dir {
            let entry = entry.map_err(|e| io(shown, "listing", e))?;
            let name = entry.file_name().to_string_lossy().into_owned();
            if name == "." || name == ".." || (prefix.is_empty() && name == ".git") {
                continue;
            }
            let ty = entry.file_type();
            if ty == FileType::Directory && CACHES.contains(&name.as_str()) {
                continue;
            }
            names.push((name, ty));
        }
        names.sort_by(|a, b| a.0.cmp(&b.0));
        for (name, ty) in names {
            if out.len() >= limit {
                return Ok(false);
            }
            let path = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}/{name}")
            };
            match ty {
                FileType::Directory => {
                    out.push(Entry {
                        path: path.clone(),
                        kind: Kind::Dir,
                        bytes: 0,
                        executable: false,
                        stamp: Stamp::default(),
                    });
                    let sub = open_dir(&fd, &name, &path, false)?;
                    if !self.walk_into(sub, &path, out, limit)? {
                        return Ok(false);
                    }
                }
                FileType::RegularFile => {
                    let st = rustix::fs::statat(&fd, name.as_str(), AtFlags::SYMLINK_NOFOLLOW)
                        .map_err(|e| io(&path, "reading its size", e))?;
                    out.push(Entry {
                        path,
                        kind: Kind::File,
                        bytes: st.st_size as u64,
                        executable: st.st_mode & 0o111 != 0,
                        stamp: Stamp::of(&st),
                    });
                }
                _ => out.push(Entry {
                    path,
                    kind: Kind::Other,
                    bytes: 0,
                    executable: false,
                    stamp: Stamp::default(),
                }),
            }
        }
        Ok(true)
    }
}

/// The size of `fd`, refused unless it is a regular file.
fn regular(fd: &OwnedFd, path: &str) -> Result<u64, Refused> {
    let st = rustix::fs::fstat(fd).map_err(|e| io(path, "reading its type", e))?;
    match FileType::from_raw_mode(st.st_mode) {
        FileType::RegularFile => Ok(st.st_size as u64),
        FileType::Directory => Err(refused(path, "is a directory")),
        other => Err(refused(
            path,
            format!("is a special file ({other:?}): only regular files are read or written"),
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn root() -> (tempfile::TempDir, Root) {
        let t = tempfile::tempdir().unwrap();
        let r = Root::create(&t.path().join("files")).unwrap();
        (t, r)
    }

    /// A stamp is trusted only once its file's last change is more than a clock tick old: a
    /// change within the same tick would leave the same stamp.
    #[test]
    fn a_stamp_settles_a_tick_after_the_files_last_change() {
        use std::time::{Duration, UNIX_EPOCH};
        let at = |ms: u64| UNIX_EPOCH + Duration::from_millis(ms);
        let t = 1_796_000_000_000u64;
        let stamp = |mtime_ms: u64, ctime_ms: u64| Stamp {
            dev: 1,
            ino: 2,
            size: 3,
            mode: 0o100644,
            mtime: (
                (mtime_ms / 1000) as i64,
                ((mtime_ms % 1000) * 1_000_000) as i64,
            ),
            ctime: (
                (ctime_ms / 1000) as i64,
                ((ctime_ms % 1000) * 1_000_000) as i64,
            ),
        };
        assert!(stamp(t, t).settled(at(t + 51)));
        assert!(!stamp(t, t).settled(at(t + 50)), "within the racy window");
        assert!(!stamp(t, t).settled(at(t + 4)), "the same tick");
        assert!(
            !stamp(t - 1000, t).settled(at(t + 10)),
            "changed lately, whatever its mtime"
        );
        assert!(
            !stamp(t + 5000, t).settled(at(t + 100)),
            "an mtime in the future"
        );
        assert!(!Stamp::default().settled(at(t)), "not a file's stamp");
        let (_t, r) = root();
        r.write("a.txt", b"abc").unwrap();
        let e = r.walk("", 10).unwrap().entries.remove(0);
        assert_eq!((e.stamp.size, e.stamp.mode & 0o170000), (3, 0o100000));
        assert!(
            !e.stamp.settled(std::time::SystemTime::now()),
            "just written"
        );
        assert!(
            e.stamp
                .settled(std::time::SystemTime::now() + Duration::from_secs(1))
        );
    }

    #[test]
    fn writes_reads_lists_and_removes_inside() {
        let (_t, r) = root();
        assert_eq!(r.write("src/app/main.py", b"print(1)\n").unwrap(), 0);
        assert_eq!(r.write("./src/app/main.py", b"print(2)\n").unwrap(), 9);
        assert_eq!(r.read("src/app/main.py", 100).unwrap(), b"print(2)\n");
        let all = r.walk("", 100).unwrap();
        assert!(all.complete);
        let all = all.entries;
        let paths: Vec<_> = all.iter().map(|e| (e.path.as_str(), e.kind)).collect();
        assert_eq!(
            paths,
            [
                ("src", Kind::Dir),
                ("src/app", Kind::Dir),
                ("src/app/main.py", Kind::File)
            ]
        );
        let cut = r.walk("", 2).unwrap();
        assert!(!cut.complete);
        assert_eq!(cut.entries.len(), 2);
        assert!(r.remove("src/app/main.py").unwrap());
        assert!(!r.remove("src/app/main.py").unwrap());
        assert!(matches!(
            r.read("nope.txt", 10),
            Err(Refused::Missing { .. })
        ));
    }

    #[test]
    fn escapes_are_refused() {
        let (t, r) = root();
        let outside = t.path().join("secret.txt");
        std::fs::write(&outside, "s3cret").unwrap();
        std::os::unix::fs::symlink(&outside, r.path().join("link.txt")).unwrap();
        std::os::unix::fs::symlink(t.path(), r.path().join("up")).unwrap();
        std::fs::create_dir(r.path().join("d")).unwrap();
        rustix::fs::mknodat(
            rustix::fs::CWD,
            r.path().join("fifo"),
            FileType::Fifo,
            Mode::from_raw_mode(0o644),
            0,
        )
        .unwrap();
        let tries = [
            "../secret.txt",
            "a/../../secret.txt",
            "/etc/passwd",
            "link.txt",
            "up/secret.txt",
            "fifo",
            ".git/config",
            "d/.git/hooks/pre-commit",
            "",
            "d",
            "bad\0name",
        ];
        for p in tries {
            assert!(r.read(p, 1000).is_err(), "read {p:?} was allowed");
            assert!(r.write(p, b"x").is_err(), "write {p:?} was allowed");
        }
        assert_eq!(std::fs::read_to_string(&outside).unwrap(), "s3cret");
        assert!(r.remove("../secret.txt").is_err());
        assert!(r.walk("up", 10).is_err());
        let e = r.read("link.txt", 10).unwrap_err().to_string();
        assert!(e.contains("symlinks are not followed"), "{e}");
        let e = r.read("fifo", 10).unwrap_err().to_string();
        assert!(e.contains("special file"), "{e}");
        let e = r.read("a/../../secret.txt", 10).unwrap_err().to_string();
        assert!(e.contains("`..` would leave the workspace"), "{e}");
        let listed = r.walk("", 10).unwrap().entries;
        let fifo = listed.iter().find(|e| e.path == "fifo").unwrap();
        assert_eq!(fifo.kind, Kind::Other);
    }

    #[test]
    fn big_reads_are_refused() {
        let (_t, r) = root();
        r.write("big.bin", &vec![7u8; 5000]).unwrap();
        let e = r.read("big.bin", 4096).unwrap_err().to_string();
        assert!(e.contains("5000 bytes"), "{e}");
    }
}
