//! The disk limit holds for a host workdir as a whole, in every tier that takes one.

use std::sync::Arc;

use baton_sandbox::{ExecRequest, Sandbox, Tier};

/// The policy tweak the check needs: a 100 MiB disk limit and time to write 120 MiB.
pub fn tweak(p: &mut baton_sandbox::Policy) {
    p.limits.disk_bytes = 100 << 20;
    p.limits.time = std::time::Duration::from_secs(60);
}

/// Four 30 MiB files into a workdir under a 100 MiB limit: three fit, the fourth fails, and the
/// host workdir never holds more than the limit (it used to get all 120 MiB).
pub async fn four_files_over_the_total(sb: Arc<dyn Sandbox>, tier: Tier) {
    let dir = tempfile::tempdir().unwrap();
    let ws = dir.path().join("ws");
    std::fs::create_dir(&ws).unwrap();
    nix::unistd::chown(
        &ws,
        Some(nix::unistd::Uid::from_raw(101_000)),
        Some(nix::unistd::Gid::from_raw(101_000)),
    )
    .unwrap();
    std::fs::write(ws.join("before.txt"), "was here").unwrap();
    let mut req = ExecRequest::new([
        "/bin/sh",
        "-c",
        "cat before.txt; echo; for i in 1 2 3 4; do head -c 31457280 /dev/zero > /work/f$i 2>/dev/null && echo wrote $i || echo failed $i; done",
    ]);
    req.workdir = Some(ws.clone());
    let out = sb.exec(req).await.unwrap();
    let size = |n: &str| std::fs::metadata(ws.join(n)).map(|m| m.len()).unwrap_or(0);
    let total: u64 = std::fs::read_dir(&ws)
        .unwrap()
        .map(|e| e.unwrap().metadata().unwrap().len())
        .sum();
    println!(
        "{tier}: workdir disk total: 4 x 30 MiB under a 100 MiB limit: {:?}, {:.1} MiB reached the host (f4: {:.1} MiB)",
        out.stdout.lines().collect::<Vec<_>>(),
        total as f64 / (1u64 << 20) as f64,
        size("f4") as f64 / (1u64 << 20) as f64
    );
    assert_eq!(
        out.stdout.lines().collect::<Vec<_>>(),
        ["was here", "wrote 1", "wrote 2", "wrote 3", "failed 4"],
        "{out:?}"
    );
    for f in ["f1", "f2", "f3"] {
        assert_eq!(size(f), 30 << 20, "{f}");
    }
    assert!(size("f4") < 30 << 20);
    assert!(total <= 100 << 20, "{total} bytes reached the host");
    assert!(
        out.enforced.iter().any(|l| l.starts_with("workspace:")),
        "{:?}",
        out.enforced
    );
}
