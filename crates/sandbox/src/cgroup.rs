//! Cgroups, written directly as files. The layout (v1, v2 or the hybrid of both) is read from
//! what is mounted, never guessed: each controller comes from the v2 mount when it offers it,
//! else from its v1 mount.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde::Serialize;

use crate::Error;
use crate::policy::Limits;

/// The controllers a sandbox needs.
pub const NEEDED: &[&str] = &["memory", "pids", "cpu"];

/// What is mounted where.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct Layout {
    /// The cgroup2 mount and the controllers its root offers.
    pub v2: Option<(PathBuf, Vec<String>)>,
    /// v1 controller name -> mount point.
    pub v1: BTreeMap<String, PathBuf>,
    /// Every cgroup mount point (all v1 hierarchies, named ones too, and v2).
    pub all: Vec<PathBuf>,
}

impl Layout {
    /// Reads `/proc/self/mountinfo` and the v2 root's `cgroup.controllers`.
    pub fn detect() -> Result<Layout, Error> {
        let info = fs::read_to_string("/proc/self/mountinfo")
            .map_err(|e| Error::Unenforceable(format!("cannot read /proc/self/mountinfo: {e}")))?;
        let mut layout = Layout::parse_mountinfo(&info);
        if let Some((mount, ctrls)) = layout.v2.as_mut()
            && let Ok(s) = fs::read_to_string(mount.join("cgroup.controllers"))
        {
            *ctrls = s.split_whitespace().map(String::from).collect();
        }
        Ok(layout)
    }

    /// Parses mountinfo text (controllers of the v2 mount are filled in by [`Layout::detect`]).
    pub fn parse_mountinfo(info: &str) -> Layout {
        let mut layout = Layout::default();
        for line in info.lines() {
            let Some((left, right)) = line.split_once(" - ") else {
                continue;
            };
            let lf: Vec<&str> = left.split(' ').collect();
            let rf: Vec<&str> = right.split(' ').collect();
            if lf.len() < 5 || rf.len() < 3 {
                continue;
            }
            let mount_point = PathBuf::from(unescape(lf[4]));
            if matches!(rf[0], "cgroup" | "cgroup2") {
                layout.all.push(mount_point.clone());
            }
            match rf[0] {
                "cgroup2" if layout.v2.is_none() => {
                    layout.v2 = Some((mount_point, Vec::new()));
                }
                "cgroup" => {
                    for opt in rf[2].split(',') {
                        if matches!(
                            opt,
                            "memory" | "pids" | "cpu" | "cpuacct" | "freezer" | "cpuset"
                        ) {
                            layout
                                .v1
                                .entry(opt.to_string())
                                .or_insert_with(|| mount_point.clone());
                        }
                    }
                }
                _ => {}
            }
        }
        layout
    }

    /// Where each needed controller comes from: `v2` or `v1`.
    pub fn source_of(&self, controller: &str) -> Option<Version> {
        if let Some((_, ctrls)) = &self.v2
            && ctrls.iter().any(|c| c == controller)
        {
            return Some(Version::V2);
        }
        self.v1.contains_key(controller).then_some(Version::V1)
    }

    /// A one-line description, e.g. `hybrid: v1 memory,pids,cpu; v2 mounted (hugetlb)`.
    pub fn describe(&self) -> String {
        let v1: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|c| self.source_of(c) == Some(Version::V1))
            .collect();
        let v2: Vec<&str> = NEEDED
            .iter()
            .copied()
            .filter(|c| self.source_of(c) == Some(Version::V2))
            .collect();
        let kind = match (self.v1.is_empty(), &self.v2) {
            (true, Some(_)) => "v2",
            (false, Some(_)) => "hybrid",
            (false, None) => "v1",
            (true, None) => "none",
        };
        format!(
            "{kind} (memory, pids, cpu from: v1 [{}], v2 [{}])",
            v1.join(","),
            v2.join(",")
        )
    }
}

fn unescape(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum Version {
    V1,
    V2,
}

/// The current process's cgroup path in each hierarchy (`/proc/self/cgroup`).
fn own_paths() -> Result<(Option<String>, BTreeMap<String, String>), Error> {
    let s = fs::read_to_string("/proc/self/cgroup")
        .map_err(|e| Error::Unenforceable(format!("cannot read /proc/self/cgroup: {e}")))?;
    let mut v2 = None;
    let mut v1 = BTreeMap::new();
    for line in s.lines() {
        let mut parts = line.splitn(3, ':');
        let (Some(id), Some(ctrls), Some(path)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        if id == "0" && ctrls.is_empty() {
            v2 = Some(path.to_string());
        } else {
            for c in ctrls.split(',') {
                v1.insert(c.to_string(), path.to_string());
            }
        }
    }
    Ok((v2, v1))
}

/// One sandbox's cgroups (one directory per v1 hierarchy used, or one v2 directory).
#[derive(Debug)]
pub struct Cgroup {
    /// Controller -> directory.
    dirs: BTreeMap<&'static str, PathBuf>,
    version: BTreeMap<&'static str, Version>,
    /// Every directory created, deepest first for removal.
    created: Vec<PathBuf>,
    name: String,
    /// v1: an eventfd registered for OOM notifications of our memory cgroup (the v1 oom_kill
    /// count stays in the cgroup of the killed task, which may be a runtime's child cgroup).
    oom_events: Option<nix::sys::eventfd::EventFd>,
}

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// Usage read after a run.
#[derive(Clone, Debug, Default)]
pub struct Usage {
    pub cpu: Option<Duration>,
    pub peak_memory: Option<u64>,
    pub oom_kills: u64,
    pub pids_max_hits: u64,
}

impl Cgroup {
    /// Creates the cgroups for one sandbox beneath this process's own, with `limits` written.
    /// Any limit that cannot be written is an error: nothing runs without it.
    pub fn create(layout: &Layout, limits: &Limits, tag: &str) -> Result<Cgroup, Error> {
        Cgroup::create_in(layout, limits, tag, false)
    }

    /// Like [`Cgroup::create`], but at the top of every hierarchy, so the same absolute path
    /// names it in each (OCI runtimes take one `cgroupsPath` for all controllers).
    pub fn create_at_root(layout: &Layout, limits: &Limits, tag: &str) -> Result<Cgroup, Error> {
        Cgroup::create_in(layout, limits, tag, true)
    }

    /// The directory name shared by all hierarchies.
    pub fn name(&self) -> &str {
        &self.name
    }

    fn create_in(
        layout: &Layout,
        limits: &Limits,
        tag: &str,
        at_root: bool,
    ) -> Result<Cgroup, Error> {
        let (mut own_v2, mut own_v1) = own_paths()?;
        if at_root {
            own_v2 = None;
            own_v1.clear();
        }
        let name = format!(
            "baton-{tag}-{}-{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        let mut cg = Cgroup {
            dirs: BTreeMap::new(),
            version: BTreeMap::new(),
            created: Vec::new(),
            name: name.clone(),
            oom_events: None,
        };
        let mut v2_dir: Option<PathBuf> = None;
        let mut v2_ctrls = Vec::new();
        for ctrl in ["memory", "pids", "cpu", "cpuacct"] {
            let Some(ver) = layout.source_of(ctrl) else {
                if ctrl == "cpuacct" {
                    continue;
                }
                return Err(Error::Unenforceable(format!(
                    "no cgroup '{ctrl}' controller is mounted (cgroups: {}); cannot enforce the {ctrl} limit",
                    layout.describe()
                )));
            };
            let dir = match ver {
                Version::V2 => {
                    if let Some(d) = &v2_dir {
                        v2_ctrls.push(ctrl);
                        d.clone()
                    } else {
                        let Some((mount, _)) = &layout.v2 else {
                            continue;
                        };
                        let base =
                            mount.join(own_v2.clone().unwrap_or_default().trim_start_matches('/'));
                        let d = base.join(&name);
                        v2_ctrls.push(ctrl);
                        v2_dir = Some(d.clone());
                        d
                    }
                }
                Version::V1 => {
                    let mount = &layout.v1[ctrl];
                    let own = own_v1.get(ctrl).cloned().unwrap_or_default();
                    let d = mount.join(own.trim_start_matches('/')).join(&name);
                    if cg.dirs.values().any(|x| x == &d) {
                        cg.dirs.insert(ctrl, d);
                        cg.version.insert(ctrl, ver);
                        continue;
                    }
                    d
                }
            };
            if !cg.created.contains(&dir) {
                cg.make_dir(layout, &dir, ver)?;
            }
            cg.dirs.insert(ctrl, dir);
            cg.version.insert(ctrl, ver);
        }
        if let Err(e) = cg.write_limits(limits) {
            cg.remove();
            return Err(e);
        }
        if cg.version["memory"] == Version::V1 {
            cg.oom_events = register_oom_eventfd(&cg.dirs["memory"]);
        }
        Ok(cg)
    }

    /// Creates one of this cgroup's directories (on v2 after enabling the controllers in its
    /// parent's subtree).
    fn make_dir(&mut self, layout: &Layout, dir: &Path, ver: Version) -> Result<(), Error> {
        if ver == Version::V2
            && let Some(parent) = dir.parent()
        {
            let want: Vec<String> = ["memory", "pids", "cpu"]
                .iter()
                .filter(|c| layout.source_of(c) == Some(Version::V2))
                .map(|c| format!("+{c}"))
                .collect();
            enable_subtree(parent, &want)?;
        }
        fs::create_dir(dir).map_err(|e| {
            Error::Unenforceable(format!(
                "cannot create cgroup {}: {e} (is this cgroup delegated to you?)",
                dir.display()
            ))
        })?;
        self.created.push(dir.to_path_buf());
        Ok(())
    }

    fn write_limits(&self, l: &Limits) -> Result<(), Error> {
        let mem = self.dirs["memory"].as_path();
        match self.version["memory"] {
            Version::V2 => {
                write(mem, "memory.max", &l.memory_bytes.to_string())?;
                // Swap would let memory escape the limit; absent file = no swap accounting.
                write_optional(mem, "memory.swap.max", "0")?;
            }
            Version::V1 => {
                write(mem, "memory.limit_in_bytes", &l.memory_bytes.to_string())?;
                write_optional(
                    mem,
                    "memory.memsw.limit_in_bytes",
                    &l.memory_bytes.to_string(),
                )?;
                write_optional(mem, "memory.swappiness", "0")?;
            }
        }
        write(&self.dirs["pids"], "pids.max", &l.pids.to_string())?;
        let period: u64 = 100_000;
        let quota = ((l.cpus * period as f64).round() as u64).max(1000);
        match self.version["cpu"] {
            Version::V2 => write(&self.dirs["cpu"], "cpu.max", &format!("{quota} {period}"))?,
            Version::V1 => {
                write(&self.dirs["cpu"], "cpu.cfs_period_us", &period.to_string())?;
                write(&self.dirs["cpu"], "cpu.cfs_quota_us", &quota.to_string())?;
            }
        }
        Ok(())
    }

    /// Moves process `pid` (and so all it will start) into every cgroup of this sandbox.
    pub fn add(&self, pid: i32) -> Result<(), Error> {
        let mut done: Vec<&Path> = Vec::new();
        for dir in self.dirs.values() {
            if done.contains(&dir.as_path()) {
                continue;
            }
            write(dir, "cgroup.procs", &pid.to_string())?;
            done.push(dir);
        }
        Ok(())
    }

    /// The `cgroup.procs` files, for a child to join by writing "0" before it execs.
    pub fn procs_files(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = self.dirs.values().map(|d| d.join("cgroup.procs")).collect();
        v.sort();
        v.dedup();
        v
    }

    pub fn usage(&self) -> Usage {
        let mut u = Usage::default();
        let mem = &self.dirs["memory"];
        match self.version["memory"] {
            Version::V2 => {
                u.peak_memory = read_u64(mem, "memory.peak");
                u.oom_kills = read_kv(mem, "memory.events", "oom_kill").unwrap_or(0);
            }
            Version::V1 => {
                u.peak_memory = read_u64(mem, "memory.max_usage_in_bytes");
                u.oom_kills = read_kv(mem, "memory.oom_control", "oom_kill").unwrap_or(0);
                if let Some(efd) = &self.oom_events {
                    u.oom_kills = u.oom_kills.max(efd.read().unwrap_or(0));
                }
                if u.oom_kills == 0 {
                    // Kernels before 4.13 have no oom_kill count: a hit limit shows in failcnt.
                    let failcnt = read_u64(mem, "memory.failcnt").unwrap_or(0);
                    let under_oom = read_kv(mem, "memory.oom_control", "under_oom").unwrap_or(0);
                    if read_kv(mem, "memory.oom_control", "oom_kill").is_none() && failcnt > 0 {
                        u.oom_kills = under_oom.max(1);
                    }
                }
            }
        }
        u.pids_max_hits = read_kv(&self.dirs["pids"], "pids.events", "max").unwrap_or(0);
        u.cpu = match (self.version.get("cpuacct"), self.version["cpu"]) {
            (_, Version::V2) => {
                read_kv(&self.dirs["cpu"], "cpu.stat", "usage_usec").map(Duration::from_micros)
            }
            (Some(Version::V1), _) => {
                read_u64(&self.dirs["cpuacct"], "cpuacct.usage").map(Duration::from_nanos)
            }
            _ => None,
        };
        u
    }

    /// Removes `/<name>/...` directories a runtime created at the top of hierarchies this
    /// cgroup does not use (OCI runtimes join every mounted hierarchy).
    pub fn remove_foreign(&self, layout: &Layout) {
        fn rm_tree(d: &Path) {
            if let Ok(rd) = fs::read_dir(d) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        rm_tree(&e.path());
                    }
                }
            }
            let _ = fs::remove_dir(d);
        }
        for m in &layout.all {
            let d = m.join(&self.name);
            if d.is_dir() && !self.created.contains(&d) {
                rm_tree(&d);
            }
        }
    }

    /// Processes still in the sandbox's cgroups.
    pub fn pids(&self) -> Vec<i32> {
        let mut out = Vec::new();
        for f in self.procs_files() {
            if let Ok(s) = fs::read_to_string(&f) {
                out.extend(s.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
            }
        }
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Kills every process in the sandbox's cgroups (cgroup.kill on v2, else one by one until
    /// none is left).
    pub fn kill_all(&self) {
        if self.version.values().any(|v| *v == Version::V2) {
            for d in self.dirs.values() {
                let _ = write_optional(d, "cgroup.kill", "1");
            }
        }
        for _ in 0..200 {
            let pids = self.pids();
            if pids.is_empty() {
                return;
            }
            for p in pids {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(p),
                    nix::sys::signal::Signal::SIGKILL,
                );
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// Removes the directories (after killing anything left). Best effort, retried briefly
    /// while the kernel finishes tearing processes down.
    pub fn remove(&mut self) {
        if !self.pids().is_empty() {
            self.kill_all();
        }
        for dir in self.created.iter().rev() {
            for attempt in 0..100 {
                match fs::remove_dir(dir) {
                    Ok(()) => break,
                    Err(e) if e.kind() == std::io::ErrorKind::NotFound => break,
                    Err(_) if attempt < 99 => std::thread::sleep(Duration::from_millis(5)),
                    Err(e) => {
                        tracing::warn!(dir = %dir.display(), error = %e, "could not remove sandbox cgroup")
                    }
                }
            }
        }
        self.created.clear();
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        if !self.created.is_empty() {
            self.remove();
        }
    }
}

/// Registers an eventfd with `cgroup.event_control` for OOM events of this v1 memory cgroup and
/// its descendants. None when the kernel does not offer it (then only oom_kill counts).
fn register_oom_eventfd(mem: &Path) -> Option<nix::sys::eventfd::EventFd> {
    use nix::sys::eventfd::{EfdFlags, EventFd};
    use std::os::fd::AsRawFd;
    let efd =
        EventFd::from_value_and_flags(0, EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC).ok()?;
    let ctl = fs::File::open(mem.join("memory.oom_control")).ok()?;
    let line = format!("{} {}", efd.as_raw_fd(), ctl.as_raw_fd());
    write(mem, "cgroup.event_control", &line).ok()?;
    // The kernel holds its own references; our copy of the control file can go.
    drop(ctl);
    Some(efd)
}

fn enable_subtree(parent: &Path, want: &[String]) -> Result<(), Error> {
    if want.is_empty() {
        return Ok(());
    }
    let current = fs::read_to_string(parent.join("cgroup.subtree_control")).unwrap_or_default();
    let missing: Vec<&String> = want
        .iter()
        .filter(|w| !current.split_whitespace().any(|c| c == &w[1..]))
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    let line = missing
        .iter()
        .map(|s| s.as_str())
        .collect::<Vec<_>>()
        .join(" ");
    write(parent, "cgroup.subtree_control", &line).map_err(|e| {
        Error::Unenforceable(format!(
            "{e}; run Baton in a delegated cgroup with no processes of its own in the parent (e.g. `systemd-run --user --scope -p Delegate=yes`)"
        ))
    })
}

fn write(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    let p = dir.join(file);
    fs::OpenOptions::new()
        .write(true)
        .open(&p)
        .and_then(|mut f| f.write_all(value.as_bytes()))
        .map_err(|e| {
            Error::Unenforceable(format!("cannot write '{value}' to {}: {e}", p.display()))
        })
}

fn write_optional(dir: &Path, file: &str, value: &str) -> Result<(), Error> {
    if dir.join(file).exists() {
        write(dir, file, value)
    } else {
        Ok(())
    }
}

fn read_u64(dir: &Path, file: &str) -> Option<u64> {
    fs::read_to_string(dir.join(file)).ok()?.trim().parse().ok()
}

fn read_kv(dir: &Path, file: &str, key: &str) -> Option<u64> {
    let s = fs::read_to_string(dir.join(file)).ok()?;
    s.lines().find_map(|l| {
        let mut it = l.split_whitespace();
        (it.next() == Some(key))
            .then(|| it.next()?.parse().ok())
            .flatten()
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const HYBRID: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/cpuacct rw,relatime - cgroup cgroup rw,cpuacct
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
39 31 0:36 / /sys/fs/cgroup/pids rw,relatime - cgroup cgroup rw,pids
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw";

    const PURE_V2: &str = "27 1 254:0 / / rw,relatime - ext4 /dev/vda rw
30 25 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate";

    #[test]
    fn hybrid_uses_v1_for_controllers_the_v2_mount_lacks() {
        let mut l = Layout::parse_mountinfo(HYBRID);
        assert_eq!(l.v1["memory"], PathBuf::from("/sys/fs/cgroup/memory"));
        l.v2.as_mut().unwrap().1 = vec!["hugetlb".into()];
        assert_eq!(l.source_of("memory"), Some(Version::V1));
        assert_eq!(l.source_of("pids"), Some(Version::V1));
        assert!(l.describe().starts_with("hybrid"));
    }

    #[test]
    fn pure_v2_is_recognised() {
        let mut l = Layout::parse_mountinfo(PURE_V2);
        assert!(l.v1.is_empty());
        l.v2.as_mut().unwrap().1 = vec!["cpu".into(), "memory".into(), "pids".into()];
        assert_eq!(l.source_of("memory"), Some(Version::V2));
        assert!(l.describe().starts_with("v2"));
    }

    #[test]
    fn nothing_mounted_means_no_controller() {
        let l = Layout::parse_mountinfo("27 1 254:0 / / rw - ext4 /dev/vda rw");
        assert_eq!(l.source_of("memory"), None);
    }
}
