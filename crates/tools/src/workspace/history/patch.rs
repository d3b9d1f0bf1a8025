//! Applying a model's unified diff to the workspace: no fuzz, every hunk where it says.

use super::*;

impl Workspace {
    /// Applies a unified diff (no fuzz: every hunk's context must be where it says); the
    /// paths it changed, with `added`, `modified`, `deleted` or `renamed`.
    pub fn apply_patch(&self, patch: &str) -> Result<Vec<(String, &'static str)>, Error> {
        self.with(|repo, _| {
            let base = match Self::head(repo)? {
                Some(c) => c.tree().map_err(history)?,
                None => {
                    let empty = repo
                        .treebuilder(None)
                        .and_then(|b| b.write())
                        .map_err(history)?;
                    repo.find_tree(empty).map_err(history)?
                }
            };
            let text = normalise_patch(patch)?;
            let diff = git2::Diff::from_buffer(text.as_bytes())
                .map_err(|e| Error::Patch(format!("not a unified diff: {}", e.message())))?;
            let index = repo
                .apply_to_tree(&base, &diff, None)
                .map_err(|e| Error::Patch(format!("the patch does not apply: {}", e.message())))?;
            let mut planned: Vec<(String, Option<Vec<u8>>, bool, &'static str)> = Vec::new();
            for delta in diff.deltas() {
                let new = delta
                    .new_file()
                    .path()
                    .map(|p| p.to_string_lossy().into_owned());
                let old = delta
                    .old_file()
                    .path()
                    .map(|p| p.to_string_lossy().into_owned());
                for p in new.iter().chain(old.iter()) {
                    crate::workspace::fs::words(p)?;
                }
                match delta.status() {
                    git2::Delta::Deleted => {
                        if let Some(old) = old {
                            planned.push((old, None, false, "deleted"));
                        }
                    }
                    status => {
                        let Some(path) = new else { continue };
                        let entry = index.get_path(Path::new(&path), 0).ok_or_else(|| {
                            Error::Patch(format!("the patch leaves no file at `{path}`"))
                        })?;
                        let blob = repo.find_blob(entry.id).map_err(history)?;
                        let what = match status {
                            git2::Delta::Added => "added",
                            git2::Delta::Renamed => "renamed",
                            _ => "modified",
                        };
                        if status == git2::Delta::Renamed
                            && let Some(old) = old.filter(|o| *o != path)
                        {
                            planned.push((old, None, false, "deleted"));
                        }
                        let exec = entry.mode == 0o100755;
                        planned.push((path, Some(blob.content().to_vec()), exec, what));
                    }
                }
            }
            // Checked before anything is written: the patch applies whole or not at all.
            let max = self.limits.max_file_bytes;
            if let Some((p, b)) = planned.iter().find_map(|(p, b, _, _)| {
                b.as_ref().filter(|b| b.len() as u64 > max).map(|b| (p, b))
            }) {
                return Err(Error::Limit(format!(
                    "the patch makes `{p}` {} bytes, more than the {max} a file may hold",
                    b.len()
                )));
            }
            let mut changed = Vec::new();
            for (path, bytes, exec, what) in planned {
                match bytes {
                    None => {
                        self.files.remove(&path)?;
                    }
                    Some(b) => {
                        self.files.write_mode(&path, &b, Some(exec))?;
                    }
                }
                changed.push((path, what));
            }
            Ok(changed)
        })
    }
}

/// A model's unified diff in the form git's parser reads: a `diff --git` header before each
/// file, `a/` and `b/` on the paths, a final newline.
fn normalise_patch(patch: &str) -> Result<String, Error> {
    if patch.trim().is_empty() {
        return Err(Error::Patch("the patch is empty".into()));
    }
    if patch.lines().any(|l| l.starts_with("diff --git ")) {
        let mut s = patch.to_string();
        if !s.ends_with('\n') {
            s.push('\n');
        }
        return Ok(s);
    }
    let lines: Vec<&str> = patch.lines().collect();
    let mut out = String::new();
    let mut i = 0;
    let mut files = 0;
    while i < lines.len() {
        let l = lines[i];
        if let (Some(old), Some(new)) = (
            l.strip_prefix("--- "),
            lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")),
        ) {
            let path = |p: &str, side: &str| -> String {
                let p = p.split('\t').next().unwrap_or(p).trim();
                if p == "/dev/null" || p.starts_with(&format!("{side}/")) {
                    p.to_string()
                } else {
                    format!("{side}/{p}")
                }
            };
            let (old, new) = (path(old, "a"), path(new, "b"));
            let name_a = if old == "/dev/null" {
                new.replacen("b/", "a/", 1)
            } else {
                old.clone()
            };
            let name_b = if new == "/dev/null" {
                old.replacen("a/", "b/", 1)
            } else {
                new.clone()
            };
            out.push_str(&format!("diff --git {name_a} {name_b}\n"));
            if old == "/dev/null" {
                out.push_str("new file mode 100644\n");
            } else if new == "/dev/null" {
                out.push_str("deleted file mode 100644\n");
            }
            out.push_str(&format!("--- {old}\n+++ {new}\n"));
            files += 1;
            i += 2;
            continue;
        }
        out.push_str(l);
        out.push('\n');
        i += 1;
    }
    if files == 0 {
        return Err(Error::Patch(
            "not a unified diff: no `--- a/PATH` and `+++ b/PATH` lines".into(),
        ));
    }
    Ok(out)
}
