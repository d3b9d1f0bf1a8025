//! What a run's container is made of: the create body (limits, mounts, user, seccomp) built
//! from the policy, the check that the policy's runtimes are in the image, the input directory
//! for inline files, and how the container ended.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::client::{api_message, enc, request_blocking, request_blocking_json};
use super::{API, LABEL};
use crate::policy::{NetMode, Policy};
use crate::{Error, ExecRequest};

/// Paths masked inside (Docker's defaults, plus all of /sys: the code sees no sysfs at all).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys",
];
/// Paths read-only inside (Docker's defaults).
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// The seccomp profile (Docker's JSON format, which accepts the OCI form): the policy's deny
/// list as in the oci tier; with `net: none` also no IPv4/IPv6 sockets, since Docker's own
/// "none" network keeps loopback up.
pub fn seccomp_profile(policy: &Policy) -> Value {
    let mut prof = crate::seccomp::oci(&policy.syscall_deny);
    if matches!(policy.net, NetMode::None)
        && let Some(list) = prof["syscalls"].as_array_mut()
    {
        for fam in [libc::AF_INET, libc::AF_INET6] {
            list.push(json!({"names": ["socket"], "action": "SCMP_ACT_ERRNO",
                "errnoRet": libc::EPERM, "args": [{"index": 0, "value": fam, "op": "SCMP_CMP_EQ"}]}));
        }
    }
    prof
}

/// The container-create body for a run (inspectable; the tests check it). `user` is the
/// uid:gid the code runs as; `input` a host directory copied into the tmpfs /work first.
pub fn create_body(
    policy: &Policy,
    req: &ExecRequest,
    image: &str,
    user: (u32, u32),
    input: Option<&Path>,
) -> Value {
    let l = &policy.limits;
    let (uid, gid) = user;
    let env: Vec<String> = policy
        .env_for(&req.env)
        .into_iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let binds = binds(policy, req, input);
    let tmpfs = tmpfs(policy, req, user);
    let mut argv = req.argv.clone();
    if input.is_some() {
        let mut a = vec![
            "/bin/sh".to_string(),
            "-c".into(),
            "cp -R /.baton-input/. /work/ && exec \"$@\"".into(),
            "sh".into(),
        ];
        a.append(&mut argv);
        argv = a;
    }
    let stdin = !req.stdin.is_empty();
    json!({
        "Image": image,
        "Entrypoint": [""],
        "Cmd": argv,
        "Env": env,
        "User": format!("{uid}:{gid}"),
        "WorkingDir": "/work",
        "Hostname": policy.hostname,
        "Labels": {LABEL: "1"},
        "AttachStdin": stdin,
        "OpenStdin": stdin,
        "StdinOnce": stdin,
        "AttachStdout": true,
        "AttachStderr": true,
        "Tty": false,
        "NetworkDisabled": matches!(policy.net, NetMode::None),
        "HostConfig": {
            "Memory": l.memory_bytes,
            "MemorySwap": l.memory_bytes,
            "PidsLimit": l.pids,
            "NanoCpus": (l.cpus * 1e9) as u64,
            "NetworkMode": "none",
            "Privileged": false,
            "ReadonlyRootfs": true,
            "CapDrop": ["ALL"],
            "SecurityOpt": [
                "no-new-privileges",
                format!("seccomp={}", seccomp_profile(policy)),
            ],
            "IpcMode": "private",
            "CgroupnsMode": "private",
            "ShmSize": l.disk_bytes,
            "Tmpfs": tmpfs,
            "Binds": binds,
            "MaskedPaths": MASKED_PATHS,
            "ReadonlyPaths": READONLY_PATHS,
            "LogConfig": {"Type": "none", "Config": {}},
            "Ulimits": [
                {"Name": "fsize", "Soft": l.disk_bytes, "Hard": l.disk_bytes},
                {"Name": "core", "Soft": 0, "Hard": 0},
                {"Name": "nofile", "Soft": 4096, "Hard": 4096},
            ],
        }
    })
}

/// The container's binds: the workdir (its capped copy) read-write, the input directory and
/// the policy's `readonly:` mounts read-only.
fn binds(policy: &Policy, req: &ExecRequest, input: Option<&Path>) -> Vec<String> {
    let mut binds = Vec::new();
    if let Some(w) = &req.workdir {
        binds.push(format!("{}:/work:rw", w.display()));
    }
    if let Some(i) = input {
        binds.push(format!("{}:/.baton-input:ro", i.display()));
    }
    for m in &policy.mounts {
        if let crate::policy::Mount::ReadOnly { source, target } = m {
            binds.push(format!("{}:{}:ro", source.display(), target.display()));
        }
    }
    binds
}

/// The tmpfs mounts of `disk` bytes: /tmp, and /work unless a workdir is bound there.
fn tmpfs(policy: &Policy, req: &ExecRequest, (uid, gid): (u32, u32)) -> Value {
    let disk = policy.limits.disk_bytes;
    let mut tmpfs = serde_json::Map::new();
    tmpfs.insert(
        "/tmp".into(),
        json!(format!("rw,nosuid,nodev,size={disk},mode=1777")),
    );
    if req.workdir.is_none() {
        tmpfs.insert(
            "/work".into(),
            json!(format!(
                "rw,nosuid,nodev,size={disk},uid={uid},gid={gid},mode=755"
            )),
        );
    }
    Value::Object(tmpfs)
}

/// Checks each of the policy's `runtimes` exists in the image (in /usr/local/bin, /usr/bin or
/// /bin, or at the absolute path given), through a container that is created, never started,
/// and removed.
pub(crate) fn check_runtimes(sock: &Path, image: &str, runtimes: &[String]) -> Result<(), Error> {
    if runtimes.is_empty() {
        return Ok(());
    }
    let t = Duration::from_secs(30);
    let runtime_err = |m: String| Error::Runtime(format!("checking the policy's runtimes: {m}"));
    let body = json!({"Image": image, "Entrypoint": [""], "Cmd": ["/bin/true"],
        "Labels": {LABEL: "1"}, "NetworkDisabled": true,
        "HostConfig": {"NetworkMode": "none", "LogConfig": {"Type": "none", "Config": {}}}});
    let r = request_blocking_json(
        sock,
        "POST",
        &format!("{API}/containers/create"),
        Some(&body),
        t,
    )
    .map_err(runtime_err)?;
    if r.status != 201 {
        return Err(runtime_err(format!(
            "HTTP {}: {}",
            r.status,
            api_message(&r)
        )));
    }
    let created: Value = serde_json::from_slice(&r.body).unwrap_or(Value::Null);
    let Some(id) = created["Id"].as_str() else {
        return Err(runtime_err("Docker returned no container id".into()));
    };
    let mut missing = None;
    for name in runtimes {
        let candidates: Vec<String> = if name.starts_with('/') {
            vec![name.clone()]
        } else {
            ["/usr/local/bin", "/usr/bin", "/bin"]
                .iter()
                .map(|d| format!("{d}/{name}"))
                .collect()
        };
        let found = candidates.iter().any(|p| {
            request_blocking(
                sock,
                "HEAD",
                &format!("{API}/containers/{id}/archive?path={}", enc(p)),
                t,
            )
            .is_ok_and(|r| r.status == 200)
        });
        if !found {
            missing = Some(name.clone());
            break;
        }
    }
    let _ = request_blocking(
        sock,
        "DELETE",
        &format!("{API}/containers/{id}?force=1&v=1"),
        t,
    );
    match missing {
        Some(name) => Err(Error::InvalidPolicy(format!(
            "runtime '{name}' is not in image '{image}' (looked in /usr/local/bin, /usr/bin, /bin)"
        ))),
        None => Ok(()),
    }
}

/// Writes the inline files into `dir` (world-readable: the container user copies them in).
pub(crate) fn write_input(dir: &Path, req: &ExecRequest) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir(dir)?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o755))?;
    for (name, contents) in &req.files {
        let p = dir.join(name);
        if let Some(parent) = p.parent() {
            std::fs::create_dir_all(parent)?;
            let mut d = parent;
            while d != dir {
                std::fs::set_permissions(d, std::fs::Permissions::from_mode(0o755))?;
                d = match d.parent() {
                    Some(x) => x,
                    None => break,
                };
            }
        }
        std::fs::write(&p, contents)?;
        std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o644))?;
    }
    Ok(())
}

/// The `max` count of `pids.events` for the cgroup of host process `pid` (v1 pids hierarchy or
/// cgroup2), when this host can see it.
pub(crate) fn pids_events_max(pid: i64) -> Option<u64> {
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let mut candidates = Vec::new();
    for line in cg.lines() {
        let mut parts = line.splitn(3, ':');
        let (_, ctrls, path) = (parts.next()?, parts.next()?, parts.next()?);
        let path = path.trim_start_matches('/');
        if ctrls.split(',').any(|c| c == "pids") {
            candidates.push(Path::new("/sys/fs/cgroup/pids").join(path));
        } else if ctrls.is_empty() {
            candidates.push(Path::new("/sys/fs/cgroup").join(path));
            candidates.push(Path::new("/sys/fs/cgroup/unified").join(path));
        }
    }
    candidates.into_iter().find_map(|dir| {
        let text = std::fs::read_to_string(dir.join("pids.events")).ok()?;
        text.lines()
            .find_map(|l| l.strip_prefix("max "))
            .and_then(|n| n.trim().parse().ok())
    })
}

/// How a container ended, from its inspect document.
pub(crate) struct Ended {
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    pub oom: bool,
}

pub(crate) fn ended(state: &Value, timed_out: bool) -> Ended {
    let oom = state["OOMKilled"].as_bool().unwrap_or(false);
    let code = state["ExitCode"].as_i64().map(|c| c as i32);
    // The runtime reports a death by signal N as 128 + N.
    match code {
        _ if timed_out => Ended {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            oom,
        },
        Some(c) if (129..=192).contains(&c) => Ended {
            exit_code: None,
            signal: Some(c - 128),
            oom,
        },
        Some(c) => Ended {
            exit_code: Some(c),
            signal: None,
            oom,
        },
        None => Ended {
            exit_code: None,
            signal: Some(libc::SIGKILL),
            oom,
        },
    }
}
