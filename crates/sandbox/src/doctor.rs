//! `baton sandbox doctor`: which tiers work on this host, and why the others do not. A tier is
//! reported as working only after it has really run `/bin/true`.

#![allow(unsafe_code)]

use serde::Serialize;

use crate::cgroup::Layout;
use crate::policy::{Policy, Tier};
use crate::{ExecRequest, open};

/// One tier's verdict.
#[derive(Clone, Debug, Serialize)]
pub struct TierReport {
    pub tier: Tier,
    pub works: bool,
    /// What it runs on, or why it cannot run here.
    pub detail: String,
}

/// Facts about the host that decide the verdicts.
#[derive(Clone, Debug, Serialize)]
pub struct HostReport {
    pub kernel: String,
    pub root: bool,
    pub cgroups: String,
    pub landlock_abi: Option<i64>,
    pub tiers: Vec<TierReport>,
}

/// The landlock ABI version the kernel offers (None when landlock is off).
pub fn landlock_abi() -> Option<i64> {
    // SAFETY: landlock_create_ruleset with a NULL attribute, size 0 and the VERSION flag only
    // returns the ABI version (or -1); it creates nothing.
    let v = unsafe {
        libc::syscall(
            libc::SYS_landlock_create_ruleset,
            std::ptr::null::<u8>(),
            0usize,
            1u32,
        )
    };
    (v > 0).then_some(v)
}

/// Checks one tier by opening it and running `/bin/true` in it.
pub async fn check(tier: Tier) -> TierReport {
    match open(Policy::new(tier)) {
        Err(e) => TierReport {
            tier,
            works: false,
            detail: e.to_string(),
        },
        Ok(sb) => match sb.exec(ExecRequest::new(["/bin/true"])).await {
            Ok(o) if o.success() => TierReport {
                tier,
                works: true,
                detail: format!(
                    "ran /bin/true in {:.1} ms; {}",
                    o.wall_time.as_secs_f64() * 1000.0,
                    o.enforced.first().cloned().unwrap_or_default()
                ),
            },
            Ok(o) => TierReport {
                tier,
                works: false,
                detail: format!(
                    "/bin/true did not succeed: stop {:?}, stderr {}",
                    o.stop_reason,
                    o.stderr.trim()
                ),
            },
            Err(e) => TierReport {
                tier,
                works: false,
                detail: e.to_string(),
            },
        },
    }
}

/// Checks every tier by opening it and running `/bin/true` in it.
pub async fn doctor() -> HostReport {
    let mut tiers = Vec::new();
    for tier in Tier::ALL {
        tiers.push(check(tier).await);
    }
    let kernel = nix::sys::utsname::uname()
        .map(|u| u.release().to_string_lossy().into_owned())
        .unwrap_or_default();
    HostReport {
        kernel,
        root: nix::unistd::geteuid().is_root(),
        cgroups: Layout::detect()
            .map(|l| l.describe())
            .unwrap_or_else(|e| e.to_string()),
        landlock_abi: landlock_abi(),
        tiers,
    }
}
