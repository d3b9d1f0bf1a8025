//! The OCI runtime-spec `config.json` a run's bundle holds, built from the policy.

use std::path::Path;

use serde_json::{Value, json};

use crate::policy::{Mount, Policy, Tier, WORKSPACE};
use crate::{Error, ExecRequest};

/// The OCI runtime-spec `config.json` for a run. `host_uid` is the unprivileged host uid the
/// code runs as; `files_dir` holds generated files (bound read-only).
pub fn spec(
    policy: &Policy,
    req: &ExecRequest,
    host_uid: u32,
    files_dir: &Path,
    cgroups_path: &str,
) -> Result<Value, Error> {
    let mounts = mounts(policy, req, host_uid, files_dir)?;
    let env: Vec<String> = policy
        .env_for(&req.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let l = &policy.limits;
    let mut namespaces = vec![
        json!({"type": "pid"}),
        json!({"type": "ipc"}),
        json!({"type": "uts"}),
        json!({"type": "mount"}),
        json!({"type": "network"}),
    ];
    if policy.tier != Tier::Gvisor {
        namespaces.push(json!({"type": "cgroup"}));
    }
    let no_caps: Vec<String> = Vec::new();
    Ok(json!({
        "ociVersion": "1.0.2",
        "process": {
            "terminal": false,
            "user": {"uid": host_uid, "gid": host_uid, "additionalGids": []},
            "args": req.argv,
            "env": env,
            "cwd": WORKSPACE,
            "capabilities": {"bounding": no_caps, "effective": no_caps, "inheritable": no_caps, "permitted": no_caps, "ambient": no_caps},
            "rlimits": [
                {"type": "RLIMIT_FSIZE", "hard": l.disk_bytes, "soft": l.disk_bytes},
                {"type": "RLIMIT_CORE", "hard": 0, "soft": 0},
                {"type": "RLIMIT_NOFILE", "hard": 4096, "soft": 4096},
            ],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": policy.hostname,
        "mounts": mounts,
        "linux": {
            "namespaces": namespaces,
            "cgroupsPath": cgroups_path,
            "seccomp": crate::seccomp::oci(&policy.syscall_deny),
            "maskedPaths": ["/proc/acpi", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list", "/proc/timer_stats", "/proc/sched_debug", "/proc/scsi", "/sys/firmware"],
            "readonlyPaths": ["/proc/asound", "/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    }))
}

/// The policy's mount plan as OCI mounts; generated files are written into `files_dir`.
fn mounts(
    policy: &Policy,
    req: &ExecRequest,
    host_uid: u32,
    files_dir: &Path,
) -> Result<Vec<Value>, Error> {
    let mut mounts = Vec::new();
    for m in policy.mounts_for(req.workdir.as_deref()) {
        match m {
            Mount::ReadOnly { source, target } => mounts.push(json!({
                "destination": target, "type": "bind", "source": source, "options": ["rbind", "ro", "nosuid", "nodev"]})),
            Mount::ReadWrite { source, target } => mounts.push(json!({
                "destination": target, "type": "bind", "source": source, "options": ["rbind", "rw", "nosuid", "nodev"]})),
            Mount::Tmpfs { target, size_bytes, mode, owned } => {
                let mut opts = vec!["nosuid".to_string(), "nodev".into(), format!("size={size_bytes}"), format!("mode={mode:o}")];
                if owned {
                    opts.push(format!("uid={host_uid}"));
                    opts.push(format!("gid={host_uid}"));
                }
                if target == Path::new("/dev") {
                    opts.retain(|o| o != "nodev");
                    opts.push("strictatime".into());
                }
                mounts.push(json!({"destination": target, "type": "tmpfs", "source": "tmpfs", "options": opts}));
            }
            Mount::Proc { target } => mounts.push(json!({"destination": target, "type": "proc", "source": "proc", "options": ["nosuid", "nodev", "noexec"]})),
            Mount::File { target, contents } => {
                let name = target.to_string_lossy().trim_start_matches('/').replace('/', "_");
                let host = files_dir.join(name);
                std::fs::write(&host, contents)?;
                mounts.push(json!({"destination": target, "type": "bind", "source": host, "options": ["bind", "ro", "nosuid", "nodev"]}));
            }
            // The runtime creates /dev's standard nodes and links itself; system-dir symlinks
            // are created in the rootfs by the caller.
            Mount::Device { .. } | Mount::Symlink { .. } => {}
        }
    }
    Ok(mounts)
}

/// Points the spec's network namespace at `path` (a namespace Baton prepared).
pub(super) fn join_netns(config: &mut Value, path: &Path) {
    if let Some(list) = config["linux"]["namespaces"].as_array_mut() {
        for ns in list {
            if ns["type"] == "network" {
                ns["path"] = json!(path);
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::Tier;

    #[test]
    fn spec_carries_the_policy() {
        let mut p = Policy::new(Tier::Oci);
        p.limits.disk_bytes = 1 << 20;
        let dir = tempfile::tempdir().unwrap();
        let req = ExecRequest::new(["python3", "-c", "print(1)"]);
        let s = spec(&p, &req, 101000, dir.path(), "x-ctr").unwrap();
        assert_eq!(s["process"]["user"]["uid"], 101000);
        assert_eq!(s["process"]["args"][0], "python3");
        assert_eq!(s["process"]["noNewPrivileges"], true);
        assert_eq!(s["process"]["capabilities"]["bounding"], json!([]));
        assert_eq!(s["root"]["readonly"], true);
        assert_eq!(s["linux"]["cgroupsPath"], "x-ctr");
        let mounts = s["mounts"].as_array().unwrap();
        let usr = mounts.iter().find(|m| m["destination"] == "/usr").unwrap();
        assert!(usr["options"].as_array().unwrap().contains(&json!("ro")));
        let work = mounts.iter().find(|m| m["destination"] == "/work").unwrap();
        assert_eq!(work["type"], "tmpfs");
        assert!(
            work["options"]
                .as_array()
                .unwrap()
                .contains(&json!("size=1048576"))
        );
        assert!(
            !mounts
                .iter()
                .any(|m| m["destination"] == "/home" || m["destination"] == "/root")
        );
        let ns: Vec<&str> = s["linux"]["namespaces"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|n| n["type"].as_str())
            .collect();
        assert!(ns.contains(&"network") && ns.contains(&"pid") && ns.contains(&"mount"));
    }
}
