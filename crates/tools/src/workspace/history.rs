//! The workspace's history: a bare git repository beside the files (never inside them, so
//! sandboxed code that can write the files cannot rewrite the history). Every change made
//! through the workspace tools is a commit whose message names the run, the step, the agent
//! and the call's idempotency key; a retried call finds its commit and is not applied twice.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use git2::{Commit, DiffFormat, Oid, Repository, Signature, Tree};

use super::fs::{Entry, Kind, Refused, Root};

mod memo;
mod patch;

use memo::Known;
pub use memo::Memo;

/// Bounds on what a workspace may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// One file (written, patched or read).
    pub max_file_bytes: u64,
    /// All files together.
    pub max_total_bytes: u64,
    /// Files and directories together.
    pub max_entries: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            max_file_bytes: 1 << 20,
            max_total_bytes: 64 << 20,
            max_entries: 5_000,
        }
    }
}

/// A workspace failure, for the agent and the run log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error(transparent)]
    Refused(#[from] Refused),
    #[error("{0}")]
    Limit(String),
    /// The patch is not a unified diff, or a hunk's context is not in the file.
    #[error("{0}")]
    Patch(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the workspace history: {0}")]
    History(String),
}

fn history(e: git2::Error) -> Error {
    Error::History(e.message().to_string())
}

/// Who changes the workspace, recorded in the commit.
#[derive(Debug, Clone, Default)]
pub struct Author {
    pub run: String,
    pub step: String,
    pub agent: Option<String>,
    /// The call's idempotency key (empty: none).
    pub key: String,
}

impl Author {
    /// The same author without the call's key: for a commit of what happened before the
    /// call (changes made outside the tools), which a retry must not take for the call's.
    pub fn before_call(&self) -> Author {
        Author {
            key: String::new(),
            ..self.clone()
        }
    }

    fn message(&self, summary: &str) -> String {
        let who = match &self.agent {
            Some(a) => format!("{} ({a})", self.step),
            None => self.step.clone(),
        };
        let mut m = format!(
            "{who}: {summary}\n\nBaton-Run: {}\nBaton-Step: {}\n",
            self.run, self.step
        );
        if let Some(a) = &self.agent {
            m.push_str(&format!("Baton-Agent: {a}\n"));
        }
        if !self.key.is_empty() {
            m.push_str(&format!("Baton-Key: {}\n", self.key));
        }
        m
    }
}

/// What [`Workspace::commit_command`] recorded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Committed {
    /// The commit, when the command changed a file.
    pub commit: Option<String>,
    /// The paths it changed, with `added`, `modified` or `deleted`.
    pub changed: Vec<(String, &'static str)>,
    /// Symbolic links and special files it made, removed.
    pub dropped: Vec<String>,
}

/// The files of a workspace's last commit (see [`Workspace::head_files`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeadFiles {
    /// The last commit (`None`: nothing committed yet).
    pub commit: Option<String>,
    /// (path, content), in path order.
    pub files: Vec<(String, Vec<u8>)>,
    /// Whether every file is there (false: the listing stopped at its limit).
    pub complete: bool,
}

/// One commit of the history.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Change {
    pub commit: String,
    pub step: Option<String>,
    pub agent: Option<String>,
    pub summary: String,
    pub time_ms: i64,
}

/// A run's workspace: `files/` and `history.git` under one directory.
#[derive(Debug, Clone)]
pub struct Workspace {
    dir: PathBuf,
    files: Root,
    limits: Limits,
    memo: Arc<Mutex<Memo>>,
}

impl Workspace {
    /// The workspace in `dir`, made when missing.
    pub fn open(dir: &Path, limits: Limits) -> Result<Self, Error> {
        Self::open_with(dir, limits, Arc::default())
    }

    /// [`Workspace::open`], remembering what it learns in `memo` for the next call (see
    /// [`Memo`]; [`super::Workspaces`] keeps one per run).
    pub fn open_with(dir: &Path, limits: Limits, memo: Arc<Mutex<Memo>>) -> Result<Self, Error> {
        let files = Root::create(&dir.join("files"))?;
        let repo = dir.join("history.git");
        if !repo.exists() {
            // Made aside and renamed into place, so that two calls opening a new workspace at
            // once (the steps of a `map`, parallel branches, two processes) never see a
            // half-made repository: the first rename wins and the others use its repository.
            static MADE: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
            let aside = dir.join(format!(
                ".history.git.{}.{}",
                std::process::id(),
                MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
            ));
            // No template (hooks and samples copied from the host's git installation): Baton
            // never runs hooks, and copying them was most of the time a new workspace took.
            let mut opts = git2::RepositoryInitOptions::new();
            opts.bare(true).external_template(false).mkpath(true);
            Repository::init_opts(&aside, &opts).map_err(history)?;
            if let Err(e) = std::fs::rename(&aside, &repo) {
                let _ = std::fs::remove_dir_all(&aside);
                if !repo.is_dir() {
                    return Err(Error::History(format!(
                        "cannot create {}: {e}",
                        repo.display()
                    )));
                }
            }
            // Nothing remembered of a workspace that was here before holds for this one.
            *memo.lock().unwrap_or_else(|p| p.into_inner()) = Memo::default();
        }
        Ok(Self {
            dir: dir.to_path_buf(),
            files,
            limits,
            memo,
        })
    }

    /// Whether `dir` holds a workspace (a run that never touched one has none).
    pub fn exists(dir: &Path) -> bool {
        dir.join("history.git").is_dir()
    }

    pub fn files(&self) -> &Root {
        &self.files
    }

    pub fn limits(&self) -> Limits {
        self.limits
    }

    fn head(repo: &Repository) -> Result<Option<Commit<'_>>, Error> {
        match repo.head() {
            Ok(h) => Ok(Some(h.peel_to_commit().map_err(history)?)),
            Err(e)
                if e.code() == git2::ErrorCode::UnbornBranch
                    || e.code() == git2::ErrorCode::NotFound =>
            {
                Ok(None)
            }
            Err(e) => Err(history(e)),
        }
    }

    /// Every entry of the workspace, refused above `limit`.
    fn entries(&self, limit: usize) -> Result<Vec<Entry>, Error> {
        let listing = self.files.walk("", limit)?;
        if !listing.complete {
            return Err(Error::Limit(format!(
                "the workspace holds more than {limit} files and directories"
            )));
        }
        Ok(listing.entries)
    }

    /// Commits the files as they are, when they differ from the last commit; the commit.
    pub fn snapshot(&self, author: &Author, summary: &str) -> Result<Option<String>, Error> {
        self.with(|repo, known| self.snapshot_in(repo, known, author, summary))
    }

    fn snapshot_in(
        &self,
        repo: &Repository,
        known: &mut Known,
        author: &Author,
        summary: &str,
    ) -> Result<Option<String>, Error> {
        let tree = self.tree_now(repo, known)?;
        let head = Self::head(repo)?;
        let unchanged = match &head {
            Some(h) => h.tree_id() == tree,
            // Nothing to record before the first file.
            None => repo.find_tree(tree).map_err(history)?.is_empty(),
        };
        if unchanged {
            return Ok(None);
        }
        let tree = repo.find_tree(tree).map_err(history)?;
        let sig = Signature::now("Baton", "baton@localhost").map_err(history)?;
        let parents: Vec<&Commit> = head.iter().collect();
        let oid = repo
            .commit(
                Some("HEAD"),
                &sig,
                &sig,
                &author.message(summary),
                &tree,
                &parents,
            )
            .map_err(history)?;
        Ok(Some(oid.to_string()))
    }

    /// Every commit, oldest first.
    fn commits(repo: &Repository) -> Result<Vec<Commit<'_>>, Error> {
        let Some(head) = Self::head(repo)? else {
            return Ok(Vec::new());
        };
        let mut walk = repo.revwalk().map_err(history)?;
        walk.push(head.id()).map_err(history)?;
        walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
            .map_err(history)?;
        walk.map(|id| id.and_then(|id| repo.find_commit(id)).map_err(history))
            .collect()
    }

    /// The history, oldest first.
    pub fn log(&self) -> Result<Vec<Change>, Error> {
        self.with(|repo, _| {
            Ok(Self::commits(repo)?
                .iter()
                .map(|c| Change {
                    commit: c.id().to_string(),
                    step: trailer(c, "Baton-Step"),
                    agent: trailer(c, "Baton-Agent"),
                    summary: c.summary().unwrap_or_default().to_string(),
                    time_ms: c.time().seconds() * 1000,
                })
                .collect())
        })
    }

    /// The commit a call with idempotency key `key` made, if it made one.
    pub fn commit_of_key(&self, key: &str) -> Result<Option<String>, Error> {
        if key.is_empty() {
            return Ok(None);
        }
        self.with(|repo, known| Self::key_commit(repo, known, key))
    }

    /// The unified diff from `from` to `to` (`None`: the empty tree, and the last commit).
    fn diff_trees(
        repo: &Repository,
        from: Option<&Tree>,
        to: Option<&Tree>,
    ) -> Result<String, Error> {
        let diff = repo.diff_tree_to_tree(from, to, None).map_err(history)?;
        let mut out = String::new();
        diff.print(DiffFormat::Patch, |_, _, line| {
            if matches!(line.origin(), '+' | '-' | ' ') {
                out.push(line.origin());
            }
            out.push_str(&String::from_utf8_lossy(line.content()));
            true
        })
        .map_err(history)?;
        Ok(out)
    }

    /// What `step` changed (all its commits together), or the whole run's changes.
    pub fn diff(&self, step: Option<&str>) -> Result<String, Error> {
        self.with(|repo, _| {
            let commits = Self::commits(repo)?;
            let Some(step) = step else {
                let last = commits
                    .last()
                    .map(|c| c.tree())
                    .transpose()
                    .map_err(history)?;
                return Self::diff_trees(repo, None, last.as_ref());
            };
            let (before, after) = Self::span(&commits, step)?;
            let before = before.map(|c| c.tree()).transpose().map_err(history)?;
            let after = after.tree().map_err(history)?;
            Self::diff_trees(repo, before.as_ref(), Some(&after))
        })
    }

    /// The commit before `step`'s first change (`None`: the start) and its last change.
    fn span<'r>(
        commits: &'r [Commit<'r>],
        step: &str,
    ) -> Result<(Option<&'r Commit<'r>>, &'r Commit<'r>), Error> {
        let of_step: Vec<usize> = commits
            .iter()
            .enumerate()
            .filter(|(_, c)| trailer(c, "Baton-Step").as_deref() == Some(step))
            .map(|(i, _)| i)
            .collect();
        let (Some(&first), Some(&last)) = (of_step.first(), of_step.last()) else {
            let steps: Vec<String> = commits
                .iter()
                .filter_map(|c| trailer(c, "Baton-Step"))
                .fold(Vec::new(), |mut v, s| {
                    if !v.contains(&s) {
                        v.push(s);
                    }
                    v
                });
            return Err(Error::NotFound(format!(
                "step `{step}` changed no file in this workspace (steps that did: {})",
                if steps.is_empty() {
                    "none".to_string()
                } else {
                    steps.join(", ")
                }
            )));
        };
        Ok((first.checked_sub(1).map(|i| &commits[i]), &commits[last]))
    }

    /// Puts the files back as they were before `step`'s first change, as a new commit (the
    /// history keeps everything); the commit, if anything changed.
    pub fn rollback_before(&self, step: &str, author: &Author) -> Result<Option<String>, Error> {
        self.with(|repo, known| {
            self.snapshot_in(
                repo,
                known,
                &author.before_call(),
                "changes made outside the workspace tools",
            )?;
            let commits = Self::commits(repo)?;
            let (before, _) = Self::span(&commits, step)?;
            let tree = before.map(|c| c.tree()).transpose().map_err(history)?;
            self.restore(repo, tree.as_ref())?;
            self.snapshot_in(
                repo,
                known,
                author,
                &format!("rollback: the files as before step {step}"),
            )
        })
    }

    /// Makes the files exactly `tree` (`None`: empty).
    fn restore(&self, repo: &Repository, tree: Option<&Tree>) -> Result<(), Error> {
        let wanted: std::collections::BTreeSet<String> = match tree {
            Some(tree) => write_tree(repo, tree, &self.files)?.into_iter().collect(),
            None => Default::default(),
        };
        // Room for the files written and those left from before.
        let now = self.entries(self.limits.max_entries * 2)?;
        for e in now.iter().filter(|e| e.kind != Kind::Dir) {
            if !wanted.contains(&e.path) {
                self.files.remove(&e.path)?;
            }
        }
        Ok(())
    }

    /// Writes `path` within the limits; its size before (`None`: a new file).
    pub fn write(&self, path: &str, bytes: &[u8]) -> Result<Option<u64>, Error> {
        let max = self.limits.max_file_bytes;
        if bytes.len() as u64 > max {
            return Err(Error::Limit(format!(
                "`{path}` would be {} bytes, more than the {max} a file may hold",
                bytes.len()
            )));
        }
        let entries = self.entries(self.limits.max_entries)?;
        let old = entries
            .iter()
            .find(|e| e.kind == Kind::File && e.path == path)
            .map(|e| e.bytes);
        let total: u64 =
            entries.iter().map(|e| e.bytes).sum::<u64>() - old.unwrap_or(0) + bytes.len() as u64;
        if total > self.limits.max_total_bytes {
            return Err(Error::Limit(format!(
                "writing `{path}` would bring the workspace to {total} bytes, more than its {}",
                self.limits.max_total_bytes
            )));
        }
        self.files.write(path, bytes)?;
        Ok(old)
    }

    /// Before a command runs on the files again with the same idempotency key (a retry, a
    /// resumed run): when the last commit is that key's, the files go back to its parent, so
    /// that the command's effect on the workspace is applied once. Whether they went back.
    pub fn undo_key(&self, key: &str) -> Result<bool, Error> {
        self.with(|repo, _| {
            let Some(head) = Self::head(repo)? else {
                return Ok(false);
            };
            if key.is_empty() || trailer(&head, "Baton-Key").as_deref() != Some(key) {
                return Ok(false);
            }
            let parent = match head.parent(0) {
                Ok(p) => Some(p.tree().map_err(history)?),
                Err(_) => None,
            };
            self.restore(repo, parent.as_ref())?;
            Ok(true)
        })
    }

    /// Commits what a sandboxed command left in the files. Symbolic links and special
    /// files it made are removed (they are never kept); when it left a file or a workspace
    /// over the limits, the files go back to the last commit and the error names the file.
    pub fn commit_command(&self, author: &Author, summary: &str) -> Result<Committed, Error> {
        self.with(|repo, known| {
            let head = Self::head(repo)?;
            let listing = self.files.walk("", self.limits.max_entries)?;
            let mut problem = None;
            if !listing.complete {
                problem = Some(format!(
                    "the command left more than {} files and directories in the workspace",
                    self.limits.max_entries
                ));
            }
            let files = || listing.entries.iter().filter(|e| e.kind == Kind::File);
            if let Some(big) = files().find(|e| e.bytes > self.limits.max_file_bytes) {
                problem = Some(format!(
                    "the command left `{}` of {} bytes, more than the {} a file may hold",
                    big.path, big.bytes, self.limits.max_file_bytes
                ));
            }
            let total: u64 = files().map(|e| e.bytes).sum();
            if total > self.limits.max_total_bytes {
                problem = Some(format!(
                    "the command left {total} bytes of files, more than the workspace's {}",
                    self.limits.max_total_bytes
                ));
            }
            if let Some(p) = problem {
                let tree = head
                    .as_ref()
                    .map(|c| c.tree())
                    .transpose()
                    .map_err(history)?;
                self.restore(repo, tree.as_ref())?;
                return Err(Error::Limit(format!(
                    "{p}; the workspace's files are back as they were before the command"
                )));
            }
            let mut dropped = Vec::new();
            for e in listing.entries.iter().filter(|e| e.kind == Kind::Other) {
                self.files.remove(&e.path)?;
                dropped.push(e.path.clone());
            }
            let before = head
                .as_ref()
                .map(|c| c.tree())
                .transpose()
                .map_err(history)?;
            let commit = match self.snapshot_in(repo, known, author, summary)? {
                Some(c) => Some(c),
                // Run again after `undo_key`, to the same files: the first try's commit.
                None => Self::key_commit(repo, known, &author.key)?
                    .filter(|c| head.as_ref().is_some_and(|h| h.id().to_string() == *c)),
            };
            let changed = match &commit {
                Some(c) => {
                    let c = repo
                        .find_commit(Oid::from_str(c).map_err(history)?)
                        .map_err(history)?;
                    let parent = match c.parent(0) {
                        Ok(p) => Some(p.tree().map_err(history)?),
                        Err(_) => None,
                    };
                    let after = c.tree().map_err(history)?;
                    let from = if before.as_ref().map(|t| t.id()) == Some(after.id()) {
                        parent
                    } else {
                        before
                    };
                    Self::changed_paths(repo, from.as_ref(), &after)?
                }
                None => Vec::new(),
            };
            Ok(Committed {
                commit,
                changed,
                dropped,
            })
        })
    }

    /// The paths that differ from `from` to `to`, with `added`, `modified` or `deleted`.
    fn changed_paths(
        repo: &Repository,
        from: Option<&Tree>,
        to: &Tree,
    ) -> Result<Vec<(String, &'static str)>, Error> {
        let diff = repo
            .diff_tree_to_tree(from, Some(to), None)
            .map_err(history)?;
        Ok(diff
            .deltas()
            .filter_map(|d| {
                let what = match d.status() {
                    git2::Delta::Added => "added",
                    git2::Delta::Deleted => "deleted",
                    _ => "modified",
                };
                let path = d.new_file().path().or_else(|| d.old_file().path())?;
                Some((path.to_string_lossy().into_owned(), what))
            })
            .collect())
    }

    /// The files of the last commit (path, content), in path order, with the commit; at
    /// most `max_files` files (`complete` false when there were more).
    pub fn head_files(&self, max_files: usize) -> Result<HeadFiles, Error> {
        self.with(|repo, _| {
            let Some(head) = Self::head(repo)? else {
                return Ok(HeadFiles::default());
            };
            let tree = head.tree().map_err(history)?;
            let mut out = HeadFiles {
                commit: Some(head.id().to_string()),
                files: Vec::new(),
                complete: true,
            };
            let mut failed = None;
            tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
                if entry.kind() != Some(git2::ObjectType::Blob) {
                    return git2::TreeWalkResult::Ok;
                }
                if out.files.len() >= max_files {
                    out.complete = false;
                    return git2::TreeWalkResult::Abort;
                }
                match repo.find_blob(entry.id()) {
                    Ok(b) => {
                        let path = format!("{dir}{}", entry.name().unwrap_or_default());
                        out.files.push((path, b.content().to_vec()));
                        git2::TreeWalkResult::Ok
                    }
                    Err(e) => {
                        failed = Some(history(e));
                        git2::TreeWalkResult::Abort
                    }
                }
            })
            .or_else(|e| {
                if out.complete && failed.is_none() {
                    Err(history(e))
                } else {
                    Ok(())
                }
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
            out.files.sort_by(|a, b| a.0.cmp(&b.0));
            Ok(out)
        })
    }

    /// Copies the files of the last commit into `dest` (which must not exist or be empty);
    /// the number of files.
    pub fn export(&self, dest: &Path) -> Result<usize, Error> {
        self.with(|repo, _| {
            if dest.exists()
                && std::fs::read_dir(dest)
                    .map(|mut d| d.next().is_some())
                    .unwrap_or(true)
            {
                return Err(Error::Refused(Refused::Path {
                    path: dest.display().to_string(),
                    reason: "exists and is not empty: give a new or empty directory".into(),
                }));
            }
            let out = Root::create(dest)?;
            let Some(head) = Self::head(repo)? else {
                return Ok(0);
            };
            let tree = head.tree().map_err(history)?;
            Ok(write_tree(repo, &tree, &out)?.len())
        })
    }
}

/// Writes every file of `tree` under `root` (modes kept); their paths.
fn write_tree(repo: &Repository, tree: &Tree, root: &Root) -> Result<Vec<String>, Error> {
    let mut written = Vec::new();
    let mut failed = None;
    tree.walk(git2::TreeWalkMode::PreOrder, |dir, entry| {
        if entry.kind() != Some(git2::ObjectType::Blob) {
            return git2::TreeWalkResult::Ok;
        }
        let path = format!("{dir}{}", entry.name().unwrap_or_default());
        let done = repo.find_blob(entry.id()).map_err(history).and_then(|b| {
            root.write_mode(&path, b.content(), Some(entry.filemode() == 0o100755))
                .map_err(Error::from)
        });
        match done {
            Ok(_) => {
                written.push(path);
                git2::TreeWalkResult::Ok
            }
            Err(e) => {
                failed = Some(e);
                git2::TreeWalkResult::Abort
            }
        }
    })
    .ok();
    match failed {
        Some(e) => Err(e),
        None => Ok(written),
    }
}

/// A trailer's value (`Name: value` lines after the summary).
fn trailer(c: &Commit<'_>, name: &str) -> Option<String> {
    let msg = c.message()?;
    msg.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(": "))
        .map(str::to_string)
}
