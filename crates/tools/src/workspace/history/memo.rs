//! What a process remembers of a workspace's history between calls (see [`Memo`]): the open
//! repository, each file's blob by its stamp, the last tree and the commits' keys.

use std::collections::HashMap;

use git2::{IndexEntry, IndexTime, Oid, Repository};

use super::{Error, Kind, Workspace, history, trailer};
use crate::workspace::fs::Stamp;

/// What a process remembers of a workspace between calls, so that a call neither opens its
/// repository again nor reads and hashes files that did not change since they were hashed
/// (the git index's idea). Only ever a shortcut: the files and the history on disk decide,
/// whatever another process did to them.
#[derive(Default)]
pub struct Memo {
    /// The repository, opened once (its configuration read once), and the identity of its
    /// directory then: a workspace deleted and made again is opened again.
    repo: Option<(Repository, RepoId)>,
    known: Known,
}

impl std::fmt::Debug for Memo {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Memo")
            .field("open", &self.repo.is_some())
            .field("blobs", &self.known.blobs.len())
            .field("keys", &self.known.keys.len())
            .finish()
    }
}

/// A repository directory's device, inode and birth time: another directory made in its place
/// has another (an inode number alone can be reused).
type RepoId = (u64, u64, Option<std::time::SystemTime>);

/// A file of a tree: path, mode, blob.
type Row = (String, u32, Oid);

#[derive(Default)]
pub(super) struct Known {
    /// path → the stamp the file had when it was hashed, and its blob; only files whose stamp
    /// had settled (see [`Stamp::settled`]).
    blobs: HashMap<String, (Stamp, Oid)>,
    /// The last tree written, and what it holds: (path, mode, blob) in path order.
    tree: Option<(Vec<Row>, Oid)>,
    /// The idempotency keys of the commits up to `keys_at`, each with its newest commit.
    keys: HashMap<String, Oid>,
    keys_at: Option<Oid>,
}

impl Workspace {
    /// Runs `f` with the repository (opened once per memo) and what is known of it, one call
    /// at a time.
    pub(super) fn with<T>(
        &self,
        f: impl FnOnce(&Repository, &mut Known) -> Result<T, Error>,
    ) -> Result<T, Error> {
        let path = self.dir.join("history.git");
        let id: RepoId = std::fs::metadata(&path)
            .map(|m| {
                use std::os::unix::fs::MetadataExt;
                (m.dev(), m.ino(), m.created().ok())
            })
            .map_err(|e| Error::History(format!("{}: {e}", path.display())))?;
        let mut memo = self.memo.lock().unwrap_or_else(|p| p.into_inner());
        let repo = match memo.repo.take() {
            Some((repo, was)) if was == id => repo,
            _ => {
                memo.known = Known::default();
                Repository::open_bare(&path).map_err(history)?
            }
        };
        let out = f(&repo, &mut memo.known);
        memo.repo = Some((repo, id));
        out
    }

    /// The tree of the files as they are now (symlinks and special files are not kept). A
    /// file whose stamp is the one it had when it was hashed is not read again.
    pub(super) fn tree_now(&self, repo: &Repository, known: &mut Known) -> Result<Oid, Error> {
        let entries = self.entries(self.limits.max_entries)?;
        let now = std::time::SystemTime::now();
        let mut blobs = HashMap::with_capacity(known.blobs.len());
        let mut rows = Vec::with_capacity(entries.len());
        for e in entries.iter().filter(|e| e.kind == Kind::File) {
            let id = match known.blobs.get(&e.path) {
                Some((stamp, id)) if *stamp == e.stamp => *id,
                _ => {
                    let bytes = self.files.read(&e.path, self.limits.max_total_bytes)?;
                    repo.blob(&bytes).map_err(history)?
                }
            };
            if e.stamp.settled(now) {
                blobs.insert(e.path.clone(), (e.stamp, id));
            }
            let mode = if e.executable { 0o100755 } else { 0o100644 };
            rows.push((e.path.clone(), mode, id));
        }
        known.blobs = blobs;
        if let Some((last, tree)) = &known.tree
            && *last == rows
            && repo.odb().map_err(history)?.exists(*tree)
        {
            return Ok(*tree);
        }
        let mut index = git2::Index::new().map_err(history)?;
        for (path, mode, id) in &rows {
            let entry = IndexEntry {
                ctime: IndexTime::new(0, 0),
                mtime: IndexTime::new(0, 0),
                dev: 0,
                ino: 0,
                mode: *mode,
                uid: 0,
                gid: 0,
                file_size: 0,
                id: *id,
                flags: 0,
                flags_extended: 0,
                path: path.as_bytes().to_vec(),
            };
            index.add(&entry).map_err(history)?;
        }
        let tree = index.write_tree_to(repo).map_err(history)?;
        known.tree = Some((rows, tree));
        Ok(tree)
    }

    /// [`Workspace::commit_of_key`]: the keys of the commits made since the last look are
    /// read, not the whole history again.
    pub(super) fn key_commit(
        repo: &Repository,
        known: &mut Known,
        key: &str,
    ) -> Result<Option<String>, Error> {
        if key.is_empty() {
            return Ok(None);
        }
        let head = Self::head(repo)?.map(|c| c.id());
        if known.keys_at != head {
            let mut walk = repo.revwalk().map_err(history)?;
            if let Some(head) = head {
                walk.push(head).map_err(history)?;
            }
            match (head, known.keys_at) {
                // (Not knowing `at` any more is not going on from it.)
                (Some(head), Some(at)) if repo.graph_descendant_of(head, at).unwrap_or(false) => {
                    walk.hide(at).map_err(history)?;
                }
                // A history that does not go on from the one read: read it all.
                _ => known.keys.clear(),
            }
            walk.set_sorting(git2::Sort::TOPOLOGICAL | git2::Sort::REVERSE)
                .map_err(history)?;
            for id in walk {
                let id = id.map_err(history)?;
                let c = repo.find_commit(id).map_err(history)?;
                if let Some(k) = trailer(&c, "Baton-Key") {
                    // Oldest first: the newest commit of a key is the one kept.
                    known.keys.insert(k, id);
                }
            }
            known.keys_at = head;
        }
        Ok(known.keys.get(key).map(Oid::to_string))
    }
}
