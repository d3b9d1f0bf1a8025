//! Helpers shared by the integration tests.

use std::os::fd::OwnedFd;
use std::path::PathBuf;

/// Serialises the tests that start sandboxes, so the host-cleanliness checks see only their
/// own: within this process, and across processes (nextest runs each test in its own) with a
/// lock on this crate's directory, which the CLI's sandbox tests take too.
static LOCK: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

pub struct Guard {
    _inner: tokio::sync::MutexGuard<'static, ()>,
    _file: std::fs::File,
}

pub async fn lock() -> Guard {
    let inner = LOCK.lock().await;
    let file = tokio::task::spawn_blocking(|| {
        // flock(2) on the directory; released when the File is closed.
        let dir = std::fs::File::open(env!("CARGO_MANIFEST_DIR")).unwrap();
        dir.lock().unwrap();
        dir
    })
    .await
    .unwrap();
    Guard {
        _inner: inner,
        _file: file,
    }
}

/// A descriptor opened without close-on-exec, holding `secret`: a sandbox must not see it.
pub fn leaked_fd(secret: &str) -> Option<(tempfile::NamedTempFile, OwnedFd)> {
    let f = tempfile::NamedTempFile::new().ok()?;
    std::fs::write(f.path(), secret).ok()?;
    let fd = nix::fcntl::open(
        f.path(),
        nix::fcntl::OFlag::O_RDONLY,
        nix::sys::stat::Mode::empty(),
    )
    .ok()?;
    Some((f, fd))
}

/// What a sandbox could leave behind on the host: processes of the sandbox uids, cgroups,
/// bundle and proxy directories, mounts.
pub fn leftovers() -> Vec<String> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir("/proc") {
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            if !name.chars().all(|c| c.is_ascii_digit()) {
                continue;
            }
            if let Ok(status) = std::fs::read_to_string(e.path().join("status")) {
                let uid = status
                    .lines()
                    .find(|l| l.starts_with("Uid:"))
                    .and_then(|l| l.split_whitespace().nth(1))
                    .and_then(|u| u.parse::<u32>().ok());
                if matches!(uid, Some(100_000..=101_999)) {
                    let cmd = std::fs::read_to_string(e.path().join("cmdline"))
                        .unwrap_or_default()
                        .replace('\0', " ");
                    out.push(format!("process {name} (uid {uid:?}): {cmd}"));
                }
            }
        }
    }
    fn walk(dir: PathBuf, depth: usize, out: &mut Vec<String>) {
        if depth > 6 {
            return;
        }
        if let Ok(rd) = std::fs::read_dir(&dir) {
            for e in rd.flatten() {
                if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                    let n = e.file_name().to_string_lossy().to_string();
                    if n.starts_with("baton-") {
                        out.push(format!("cgroup {}", e.path().display()));
                    } else {
                        walk(e.path(), depth + 1, out);
                    }
                }
            }
        }
    }
    walk(PathBuf::from("/sys/fs/cgroup"), 0, &mut out);
    if let Ok(rd) = std::fs::read_dir(std::env::temp_dir()) {
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.starts_with(&format!("baton-{}-", std::process::id()))
                || n.starts_with(&format!("baton-proxy-{}-", std::process::id()))
            {
                out.push(format!("directory {}", e.path().display()));
            }
        }
    }
    if let Ok(m) = std::fs::read_to_string("/proc/self/mountinfo") {
        for l in m.lines().filter(|l| l.contains("baton")) {
            out.push(format!("mount {l}"));
        }
    }
    out
}

/// Whether `BATON_REQUIRE_TIERS` (a comma-separated list of tier names, as `make test` sets
/// it) lists `tier`: then a test that cannot run it fails instead of skipping.
pub fn required(tier: baton_sandbox::Tier) -> bool {
    let list = std::env::var("BATON_REQUIRE_TIERS").unwrap_or_default();
    let mut found = false;
    for name in list.split(',').map(str::trim).filter(|n| !n.is_empty()) {
        let t: baton_sandbox::Tier = name
            .parse()
            .unwrap_or_else(|e| panic!("BATON_REQUIRE_TIERS: {e}"));
        found |= t == tier;
    }
    found
}

/// Skips `what` in `tier` loudly, saying why; fails instead when the tier is required.
pub fn skip(tier: baton_sandbox::Tier, what: &str, why: &dyn std::fmt::Display) {
    assert!(
        !required(tier),
        "{what}: the {tier} tier is required here (BATON_REQUIRE_TIERS) but cannot run: {why}"
    );
    println!("SKIPPED {what} in the {tier} tier: {why}");
    eprintln!("SKIPPED {what} in the {tier} tier: {why}");
}
