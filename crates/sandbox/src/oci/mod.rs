//! The `oci` and `gvisor` tiers: the policy written as an OCI bundle (`config.json` from
//! [`spec`]) and run by `crun`/`runc`, or by gVisor's `runsc --platform=ptrace`.
//!
//! Limits: the runtime itself is started inside a cgroup Baton creates with the policy's
//! limits, and told to put the container in a child of it (a relative `cgroupsPath`), so the
//! limits hold whatever the runtime does and usage is read from Baton's own cgroup. On hosts
//! with the hybrid v1+v2 layout `crun` is run in a mount namespace where the cgroup2 mount is
//! hidden (it otherwise picks the wrong hierarchy).

mod netns;
mod run;
mod spec;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use async_trait::async_trait;

use crate::cgroup::Layout;
use crate::policy::{Mount, Policy, Tier};
use crate::{Error, ExecOutput, ExecRequest, Sandbox};
use run::Bundle;
pub use spec::spec;

/// Which runtime family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Engine {
    /// `crun` when installed, else `runc`.
    Oci,
    /// gVisor's `runsc` with the ptrace platform.
    Gvisor,
}

/// A runtime binary found on this host.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Runtime {
    pub name: String,
    pub path: PathBuf,
}

/// Looks for `name` in the usual system directories.
pub fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain([
            "/usr/local/sbin",
            "/usr/local/bin",
            "/usr/sbin",
            "/usr/bin",
            "/sbin",
            "/bin",
        ])
        .map(|d| Path::new(d).join(name))
        .find(|p| p.is_file())
}

/// The runtime the engine would use here, or why there is none.
pub fn runtime_for(engine: Engine) -> Result<Runtime, String> {
    let names: &[&str] = match engine {
        Engine::Oci => &["crun", "runc"],
        Engine::Gvisor => &["runsc"],
    };
    if let Ok(forced) = std::env::var("BATON_OCI_RUNTIME")
        && engine == Engine::Oci
    {
        return find_binary(&forced)
            .map(|path| Runtime {
                name: forced.clone(),
                path,
            })
            .ok_or_else(|| format!("BATON_OCI_RUNTIME={forced} is not installed"));
    }
    names
        .iter()
        .find_map(|n| {
            find_binary(n).map(|path| Runtime {
                name: n.to_string(),
                path,
            })
        })
        .ok_or_else(|| {
            format!(
                "none of {} is installed (Debian packages: {})",
                names.join(", "),
                names.join(", ")
            )
        })
}

/// An OCI-runtime sandbox.
pub struct OciSandbox {
    policy: Policy,
    engine: Engine,
    runtime: Runtime,
    layout: Layout,
}

impl OciSandbox {
    pub fn new(policy: Policy, engine: Engine) -> Result<OciSandbox, Error> {
        policy.validate()?;
        let tier = policy.tier;
        let runtime =
            runtime_for(engine).map_err(|reason| Error::TierUnavailable { tier, reason })?;
        if !nix::unistd::geteuid().is_root() {
            return Err(Error::TierUnavailable {
                tier,
                reason: "the oci and gvisor tiers run the runtime as root; use the process tier when not root".into(),
            });
        }
        let layout = Layout::detect()?;
        for c in crate::cgroup::NEEDED {
            if layout.source_of(c).is_none() {
                return Err(Error::TierUnavailable {
                    tier,
                    reason: format!("no cgroup '{c}' controller is mounted"),
                });
            }
        }
        policy.resolve_runtimes()?;
        Ok(OciSandbox {
            policy,
            engine,
            runtime,
            layout,
        })
    }

    pub fn runtime(&self) -> &Runtime {
        &self.runtime
    }

    /// Memory and tasks the runtime itself uses inside the sandbox's cgroup (runc/crun wait
    /// for the container; gVisor's sentry and gofer hold the code's memory and many threads).
    pub fn overhead(&self) -> (u64, u32) {
        match self.engine {
            Engine::Oci => (32 << 20, 32),
            Engine::Gvisor => (160 << 20, 256),
        }
    }
}

static RUN: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);

#[async_trait]
impl Sandbox for OciSandbox {
    fn tier(&self) -> Tier {
        self.policy.tier
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }

    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        req.validate()?;
        let id = format!(
            "baton-{}-{}",
            std::process::id(),
            RUN.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        );
        let bundle = Bundle {
            dir: std::env::temp_dir().join(&id),
            mounts: std::sync::Mutex::new(Vec::new()),
        };
        let rootfs = bundle.dir.join("rootfs");
        let files_dir = bundle.dir.join("files");
        let state = bundle.dir.join("state");
        for d in [&rootfs, &files_dir, &state] {
            std::fs::create_dir_all(d)?;
        }
        let mut host_uid = self.policy.host_uid_base + self.policy.uid;
        if let Some(dir) = &req.workdir {
            use std::os::unix::fs::MetadataExt;
            let md = std::fs::metadata(dir)?;
            if md.uid() == 0 {
                return Err(Error::InvalidRequest(format!(
                    "workdir {} is owned by root, and sandboxed code never runs as host root: chown it to an unprivileged user",
                    dir.display()
                )));
            }
            host_uid = md.uid();
        }
        // System-dir symlinks (/bin -> usr/bin on merged-/usr hosts) live in the rootfs itself.
        for m in self.policy.mounts_for(None) {
            if let Mount::Symlink { target, link_to } = m
                && !target.starts_with("/dev")
            {
                let p = rootfs.join(target.strip_prefix("/").unwrap_or(&target));
                std::os::unix::fs::symlink(&link_to, &p)?;
            }
        }
        let mut req = req;
        if !req.files.is_empty() {
            if let Some(dir) = &req.workdir {
                for (name, contents) in &req.files {
                    crate::linux::write_no_follow(
                        dir,
                        name,
                        contents.as_bytes(),
                        host_uid,
                        host_uid,
                    )?;
                }
            } else {
                // The tmpfs workspace exists only inside: copy the files in from a read-only bind.
                let input = bundle.dir.join("input");
                for (name, contents) in &req.files {
                    let p = input.join(name);
                    if let Some(parent) = p.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::write(&p, contents)?;
                }
                chmod_tree(&input)?;
                let mut argv = vec![
                    "/bin/sh".to_string(),
                    "-c".into(),
                    "cp -R /.baton-input/. /work/ && exec \"$@\"".into(),
                    "sh".into(),
                ];
                argv.extend(req.argv.iter().cloned());
                req.argv = argv;
                let mut p = self.policy.clone();
                p.mounts.push(Mount::ReadOnly {
                    source: input,
                    target: "/.baton-input".into(),
                });
                return self.run_bundle(&p, &req, &bundle, &id, host_uid).await;
            }
        }
        self.run_bundle(&self.policy, &req, &bundle, &id, host_uid)
            .await
    }
}

fn chmod_tree(p: &Path) -> Result<(), Error> {
    use std::os::unix::fs::PermissionsExt;
    let md = std::fs::metadata(p)?;
    let mode = if md.is_dir() { 0o755 } else { 0o644 };
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(mode))?;
    if md.is_dir() {
        for e in std::fs::read_dir(p)? {
            chmod_tree(&e?.path())?;
        }
    }
    Ok(())
}

/// The tiers' config as the doctor reports it.
pub fn describe(engine: Engine) -> BTreeMap<&'static str, String> {
    let mut m = BTreeMap::new();
    match runtime_for(engine) {
        Ok(r) => m.insert("runtime", format!("{} at {}", r.name, r.path.display())),
        Err(e) => m.insert("runtime", e),
    };
    m
}
