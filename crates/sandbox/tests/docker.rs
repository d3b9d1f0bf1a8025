//! The docker tier against a real Docker daemon: a private `dockerd` started for this test
//! (own data and exec roots and socket under a temporary directory, no iptables, no bridge, its
//! own cgroup parent), the default image imported from the root tarball that
//! `make sandbox-docker-image` builds, then the hostile-payload suite, feature checks, the
//! doctor's verdict and the `/bin/true` latency; finally the daemon is stopped and everything
//! it made is removed and checked gone (containers, processes, mounts, cgroups, files).
//!
//! Skips, saying why, when not root, when `dockerd` is not installed, when the root tarball is
//! missing, or when the daemon does not come up (its log is printed).
// The tests start a private Docker daemon.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]
// One `unsafe`: setting DOCKER_HOST before any thread of this test exists (see `main`).
#![allow(unsafe_code)]

#[path = "all/common.rs"]
mod common;
#[path = "all/hostile.rs"]
mod hostile;
#[path = "all/workdir.rs"]
mod workdir;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use baton_sandbox::{ExecRequest, Policy, Tier, docker};

/// Where `make sandbox-docker-image` leaves the image's root (override: BATON_DOCKER_ROOTFS).
const DEFAULT_ROOTFS: &str = "/var/lib/baton/docker/rootfs.tar";

struct Daemon {
    dir: PathBuf,
    sock: PathBuf,
    child: Option<Child>,
    cgroup_parent: String,
    cleaned: bool,
}

fn find_dockerd() -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(["/usr/sbin", "/usr/bin", "/sbin"])
        .map(|d| Path::new(d).join("dockerd"))
        .find(|p| p.is_file())
}

/// A request with a raw body streamed from a file (image import); returns status and body.
fn post_file(sock: &Path, path: &str, file: &Path) -> Result<(u16, String), String> {
    let mut f = std::fs::File::open(file).map_err(|e| format!("{}: {e}", file.display()))?;
    let len = f.metadata().map_err(|e| e.to_string())?.len();
    let mut s = UnixStream::connect(sock).map_err(|e| e.to_string())?;
    write!(
        s,
        "POST {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\nContent-Type: application/x-tar\r\nContent-Length: {len}\r\n\r\n"
    )
    .map_err(|e| e.to_string())?;
    std::io::copy(&mut f, &mut s).map_err(|e| e.to_string())?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).map_err(|e| e.to_string())?;
    let r = docker::parse_response(&raw).map_err(|e| e.to_string())?;
    Ok((r.status, String::from_utf8_lossy(&r.body).into_owned()))
}

fn api(sock: &Path, method: &str, path: &str) -> Result<docker::Response, String> {
    docker::request_blocking(sock, method, path, Duration::from_secs(30))
}

impl Daemon {
    /// Starts the daemon; returns it and the image root to import.
    fn start() -> Result<(Daemon, String), String> {
        if !nix::unistd::geteuid().is_root() {
            return Err("not root: a private dockerd needs root".into());
        }
        let dockerd = find_dockerd()
            .ok_or("dockerd is not installed (`make sandbox-deps` installs Debian's docker.io)")?;
        let rootfs = std::env::var("BATON_DOCKER_ROOTFS").unwrap_or_else(|_| DEFAULT_ROOTFS.into());
        if !Path::new(&rootfs).is_file() {
            return Err(format!(
                "the image root {rootfs} is missing: build it with `make sandbox-docker-image`"
            ));
        }
        // Short path: containerd's sockets live under the exec root (108-byte limit).
        let dir = PathBuf::from(format!("/tmp/bdk-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        // From here on, dropping `d` (on any error) undoes what was done.
        let mut d = Daemon {
            sock: dir.join("docker.sock"),
            dir: dir.clone(),
            child: None,
            cgroup_parent: format!("baton-dockerd-{}", std::process::id()),
            cleaned: false,
        };
        // All of it on a tmpfs: faster imports, and teardown is an unmount (deleting the
        // image's thousands of files from disk took 15 s on a loaded 2-core machine).
        nix::mount::mount(
            Some("bdk-tmpfs"),
            &dir,
            Some("tmpfs"),
            nix::mount::MsFlags::MS_NOSUID | nix::mount::MsFlags::MS_NODEV,
            Some("size=4g,mode=0700"),
        )
        .map_err(|e| format!("cannot mount a tmpfs on {}: {e}", dir.display()))?;
        std::fs::create_dir_all(dir.join("data")).map_err(|e| e.to_string())?;
        std::fs::create_dir_all(dir.join("exec")).map_err(|e| e.to_string())?;
        let log = std::fs::File::create(dir.join("dockerd.log")).map_err(|e| e.to_string())?;
        let log2 = log.try_clone().map_err(|e| e.to_string())?;
        let t0 = Instant::now();
        let child = Command::new(&dockerd)
            .arg(format!("--data-root={}", dir.join("data").display()))
            .arg(format!("--exec-root={}", dir.join("exec").display()))
            .arg(format!("--host=unix://{}", d.sock.display()))
            .arg(format!("--pidfile={}", dir.join("dockerd.pid").display()))
            // Absolute: a relative parent would land beneath this test's own cgroups.
            .arg(format!("--cgroup-parent=/{}", d.cgroup_parent))
            .args([
                "--iptables=false",
                "--ip6tables=false",
                "--ip-forward=false",
                "--ip-masq=false",
                "--bridge=none",
                "--storage-driver=overlay2",
                "--exec-opt=native.cgroupdriver=cgroupfs",
                "--containerd-namespace=baton-test",
                "--containerd-plugins-namespace=baton-test-plugins",
                "--userland-proxy=false",
                "--log-level=warn",
            ])
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log2)
            .spawn()
            .map_err(|e| format!("cannot start {}: {e}", dockerd.display()))?;
        d.child = Some(child);
        loop {
            if docker::ping(&d.sock).is_ok() {
                break;
            }
            let exited = d.child.as_mut().and_then(|c| c.try_wait().ok().flatten());
            if exited.is_some() || t0.elapsed() > Duration::from_secs(60) {
                let log = std::fs::read_to_string(d.dir.join("dockerd.log")).unwrap_or_default();
                let tail: Vec<&str> = log.lines().rev().take(15).collect();
                return Err(format!(
                    "dockerd did not come up ({}): {}",
                    match exited {
                        Some(s) => format!("exited: {s}"),
                        None => "no answer in 60 s".into(),
                    },
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        println!("dockerd answered in {:.2} s", t0.elapsed().as_secs_f64());
        Ok((d, rootfs))
    }

    /// Imports the image root as the default image; a failure here is a real failure.
    fn import(&self, rootfs: &str) -> Result<(), String> {
        let t = Instant::now();
        let (repo, tag) = docker::DEFAULT_IMAGE
            .split_once(':')
            .unwrap_or((docker::DEFAULT_IMAGE, "latest"));
        let (status, body) = post_file(
            &self.sock,
            &format!(
                "{}/images/create?fromSrc=-&repo={repo}&tag={tag}",
                docker::API
            ),
            Path::new(rootfs),
        )?;
        if status != 200 || body.contains("errorDetail") {
            return Err(format!("importing {rootfs} failed: HTTP {status}: {body}"));
        }
        println!(
            "imported {rootfs} as {} in {:.2} s",
            docker::DEFAULT_IMAGE,
            t.elapsed().as_secs_f64()
        );
        Ok(())
    }

    /// Containers (running or not) Baton left in the daemon.
    fn baton_containers(&self) -> Vec<String> {
        let filter = "%7B%22label%22%3A%5B%22baton.sandbox%22%5D%7D"; // {"label":["baton.sandbox"]}
        let Ok(r) = api(
            &self.sock,
            "GET",
            &format!("{}/containers/json?all=1&filters={filter}", docker::API),
        ) else {
            return vec!["cannot list containers".into()];
        };
        let v: serde_json::Value = serde_json::from_slice(&r.body).unwrap_or_default();
        v.as_array()
            .map(|a| {
                a.iter()
                    .map(|c| format!("container {} ({})", c["Id"], c["State"]))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Host processes inside this daemon's container cgroups.
    fn contained_processes(&self) -> Vec<String> {
        let mut out = Vec::new();
        let Ok(rd) = std::fs::read_dir("/proc") else {
            return out;
        };
        for e in rd.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if n.chars().all(|c| c.is_ascii_digit())
                && let Ok(cg) = std::fs::read_to_string(e.path().join("cgroup"))
                && cg.contains(&format!("/{}/", self.cgroup_parent))
            {
                let cmd = std::fs::read_to_string(e.path().join("cmdline"))
                    .unwrap_or_default()
                    .replace('\0', " ");
                out.push(format!("process {n}: {cmd}"));
            }
        }
        out
    }

    /// Stops the daemon and removes everything it made; returns what could not be removed.
    fn stop(&mut self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.cleaned {
            return problems;
        }
        self.cleaned = true;
        if let Some(mut child) = self.child.take() {
            for c in self.baton_containers() {
                problems.push(format!("left in the daemon: {c}"));
            }
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(child.id() as i32),
                nix::sys::signal::Signal::SIGTERM,
            );
            let t = Instant::now();
            loop {
                if let Ok(Some(_)) = child.try_wait() {
                    break;
                }
                if t.elapsed() > Duration::from_secs(20) {
                    problems.push("dockerd ignored SIGTERM for 20 s; killed".into());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
        // dockerd's containerd and shims (they run from binaries, their arguments name our dir).
        let dir = self.dir.to_string_lossy().to_string();
        let mut left = Vec::new();
        for _ in 0..100 {
            left = std::fs::read_dir("/proc")
                .into_iter()
                .flat_map(|rd| rd.flatten())
                .filter_map(|e| {
                    let pid: i32 = e.file_name().to_string_lossy().parse().ok()?;
                    let cmd = std::fs::read_to_string(e.path().join("cmdline")).ok()?;
                    (pid != std::process::id() as i32 && cmd.contains(&dir)).then_some(pid)
                })
                .collect::<Vec<i32>>();
            if left.is_empty() {
                break;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
        for pid in left {
            problems.push(format!(
                "process {pid} of the daemon still running 10 s after it stopped"
            ));
        }
        // Mounts under our directory (overlay layers, shm), deepest first.
        let mounts: Vec<String> = std::fs::read_to_string("/proc/self/mountinfo")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.split(' ').nth(4).map(str::to_string))
            .filter(|m| Path::new(m).starts_with(&self.dir))
            .collect();
        for m in mounts.iter().rev() {
            if Path::new(m) != self.dir {
                problems.push(format!("mount left by dockerd (unmounted now): {m}"));
            }
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        // The cgroup parent in every hierarchy, children first.
        fn rmdir_tree(p: &Path) {
            if let Ok(rd) = std::fs::read_dir(p) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        rmdir_tree(&e.path());
                    }
                }
            }
            let _ = std::fs::remove_dir(p);
        }
        fn find(dir: &Path, name: &str, depth: usize, out: &mut Vec<PathBuf>) {
            if depth > 6 {
                return;
            }
            if let Ok(rd) = std::fs::read_dir(dir) {
                for e in rd.flatten() {
                    if e.file_type().map(|t| t.is_dir()).unwrap_or(false) {
                        if e.file_name().to_string_lossy() == name {
                            out.push(e.path());
                        } else {
                            find(&e.path(), name, depth + 1, out);
                        }
                    }
                }
            }
        }
        let mut cgroups = Vec::new();
        find(
            Path::new("/sys/fs/cgroup"),
            &self.cgroup_parent,
            0,
            &mut cgroups,
        );
        for p in cgroups {
            rmdir_tree(&p);
            if p.exists() {
                problems.push(format!("cgroup {} could not be removed", p.display()));
            }
        }
        if let Err(e) = std::fs::remove_dir_all(&self.dir) {
            problems.push(format!("cannot remove {}: {e}", self.dir.display()));
        }
        problems
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let problems = self.stop();
        if !problems.is_empty() {
            eprintln!("docker fixture teardown: {problems:#?}");
        }
    }
}

fn policy(sock: &Path) -> Policy {
    let mut p = Policy::new(Tier::Docker);
    p.docker_host = Some(format!("unix://{}", sock.display()));
    p
}

fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split(' ')
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

async fn features(sock: &Path) {
    let open = |p: Policy| baton_sandbox::open(p).unwrap();

    // Identity, read-only root, tmpfs workspace, environment.
    let sb = open(policy(sock));
    let o = sb
        .exec(ExecRequest::new([
            "/bin/sh",
            "-c",
            "id -u; id -g; pwd; touch /work/a && echo work-rw; touch /x 2>/dev/null || echo root-ro; echo $HOME; grep -c . /proc/self/mountinfo >/dev/null && echo ok",
        ]))
        .await
        .unwrap();
    assert!(o.success(), "{o:?}");
    assert_eq!(
        o.stdout.lines().collect::<Vec<_>>(),
        ["1000", "1000", "/work", "work-rw", "root-ro", "/work", "ok"],
        "{o:?}"
    );
    println!("docker: enforced {:#?}", o.enforced);

    // A host workdir is held to the disk limit as a whole.
    let mut p = policy(sock);
    workdir::tweak(&mut p);
    workdir::four_files_over_the_total(open(p), Tier::Docker).await;

    // stdin reaches the command; exit codes come back; stderr is separate.
    let mut req = ExecRequest::new(["/bin/sh", "-c", "cat; echo oops >&2; exit 3"]);
    req.stdin = b"from stdin\n".to_vec();
    let o = sb.exec(req).await.unwrap();
    assert_eq!(
        (o.exit_code, o.stdout.as_str(), o.stderr.as_str()),
        (Some(3), "from stdin\n", "oops\n"),
        "{o:?}"
    );

    // Inline files land in the tmpfs /work.
    let mut req = ExecRequest::new(["python3", "main.py"]);
    req.files
        .insert("main.py".into(), "print(open('data/x.txt').read())".into());
    req.files.insert("data/x.txt".into(), "hello files".into());
    let o = sb.exec(req).await.unwrap();
    assert_eq!(o.stdout.trim(), "hello files", "{o:?}");

    // A host workdir is bound read-write and the code runs as its owner.
    let wd = tempfile::tempdir().unwrap();
    std::os::unix::fs::chown(wd.path(), Some(1234), Some(1234)).unwrap();
    let mut req = ExecRequest::new(["/bin/sh", "-c", "id -u; echo out > /work/result"]);
    req.workdir = Some(wd.path().to_path_buf());
    req.files.insert("in.txt".into(), "x".into());
    let o = sb.exec(req).await.unwrap();
    assert_eq!(o.stdout.trim(), "1234", "{o:?}");
    assert_eq!(
        std::fs::read_to_string(wd.path().join("result")).unwrap(),
        "out\n"
    );
    // A workdir owned by root is refused.
    let root_wd = tempfile::tempdir().unwrap();
    let mut req = ExecRequest::new(["true"]);
    req.workdir = Some(root_wd.path().to_path_buf());
    let e = sb.exec(req).await.unwrap_err();
    assert!(e.to_string().contains("owned by root"), "{e}");

    // A missing command is a spawn error, not a run.
    let e = sb
        .exec(ExecRequest::new(["/no/such/command"]))
        .await
        .unwrap_err();
    assert!(
        matches!(e, baton_sandbox::Error::Spawn { .. }),
        "expected a spawn error, got {e}"
    );

    // Output caps.
    let mut p = policy(sock);
    p.limits.output_bytes = 1000;
    let o = open(p)
        .exec(ExecRequest::new([
            "/bin/sh",
            "-c",
            "head -c 100000 /dev/zero | tr '\\0' a; head -c 5000 /dev/zero | tr '\\0' b >&2",
        ]))
        .await
        .unwrap();
    assert_eq!(
        (
            o.stdout.len(),
            o.stdout_truncated,
            o.stderr.len(),
            o.stderr_truncated
        ),
        (1000, true, 1000, true)
    );

    // The CPU quota: a busy loop for 1.5 s of wall time gets about half a CPU.
    let mut p = policy(sock);
    p.limits.cpus = 0.5;
    let o = open(p)
        .exec(ExecRequest::new([
            "python3",
            "-c",
            "import time, os\nt = time.time()\nwhile time.time() - t < 1.5:\n    pass\nc = os.times()\nprint(c.user + c.system)",
        ]))
        .await
        .unwrap();
    let cpu: f64 = o.stdout.trim().parse().unwrap_or(9.0);
    assert!(cpu < 1.05, "0.5 CPU for 1.5 s used {cpu} s of CPU: {o:?}");

    // A fork bomb stopped by the time limit also reports the pids limit it ran into.
    let mut p = policy(sock);
    p.limits.pids = 16;
    p.limits.time = Duration::from_secs(2);
    let o = open(p)
        .exec(ExecRequest::new([
            "/bin/bash",
            "-c",
            ":(){ :|:& };:; sleep 30",
        ]))
        .await
        .unwrap();
    assert_eq!(o.stop_reason, baton_sandbox::StopReason::TimeLimit, "{o:?}");
    assert!(
        o.limits_hit.contains(&baton_sandbox::StopReason::PidsLimit),
        "{:?}",
        o.limits_hit
    );

    // net loopback: the code can talk to itself; net none: not even that.
    let self_talk = "import socket\ntry:\n    s = socket.socket(); s.bind(('127.0.0.1', 0)); s.listen()\n    c = socket.create_connection(s.getsockname(), timeout=2)\n    print('TALKS')\nexcept OSError as e:\n    print('NO', e)";
    let mut p = policy(sock);
    p.net = baton_sandbox::NetMode::Loopback;
    let o = open(p)
        .exec(ExecRequest::new(["python3", "-c", self_talk]))
        .await
        .unwrap();
    assert_eq!(o.stdout.trim(), "TALKS", "{o:?}");
    let o = sb
        .exec(ExecRequest::new(["python3", "-c", self_talk]))
        .await
        .unwrap();
    assert!(o.stdout.starts_with("NO"), "{o:?}");

    // allow-lists are refused with the reason; a missing image is refused, never pulled.
    let mut p = policy(sock);
    p.net = "allow:example.com".parse().unwrap();
    let e = baton_sandbox::open(p).err().unwrap();
    assert!(
        e.to_string().contains("process, oci and gvisor tiers"),
        "{e}"
    );
    let mut p = policy(sock);
    p.docker_image = Some("baton-no-such-image:1".into());
    let e = baton_sandbox::open(p).err().unwrap();
    assert!(e.to_string().contains("never pulls"), "{e}");

    // The policy's runtimes must be in the image.
    let mut p = policy(sock);
    p.runtimes = vec!["python3".into(), "bash".into()];
    assert!(baton_sandbox::open(p.clone()).is_ok());
    p.runtimes.push("node".into());
    let e = baton_sandbox::open(p).err().unwrap();
    assert!(
        e.to_string().contains("runtime 'node' is not in image"),
        "{e}"
    );

    // Cancelling a run (dropping it) still removes its container.
    let fut = sb.exec(ExecRequest::new(["sleep", "30"]));
    let _ = tokio::time::timeout(Duration::from_millis(1500), fut).await;
}

/// Median and p90 of `n` sequential runs of /bin/true.
async fn latency(sock: &Path, n: usize) -> (f64, f64) {
    let sb = baton_sandbox::open(policy(sock)).unwrap();
    let mut ms = Vec::new();
    for _ in 0..n {
        let t = Instant::now();
        let o = sb.exec(ExecRequest::new(["/bin/true"])).await.unwrap();
        assert!(o.success(), "{o:?}");
        ms.push(t.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(|a, b| a.total_cmp(b));
    (ms[n / 2], ms[n * 9 / 10])
}

async fn run(daemon: &Daemon) {
    let sock = daemon.sock.clone();

    // The doctor sees the daemon (through DOCKER_HOST) and reports the tier as working.
    let t = Instant::now();
    let d = baton_sandbox::doctor::check(Tier::Docker).await;
    println!("doctor: docker works: {}: {}", d.works, d.detail);
    assert!(d.works, "doctor: {}", d.detail);
    println!(
        "docker: doctor check took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    features(&sock).await;
    println!(
        "docker: feature checks took {:.1} s",
        t.elapsed().as_secs_f64()
    );

    let t = Instant::now();
    let rows = hostile::run_suite(Tier::Docker)
        .await
        .expect("the docker tier opened for the doctor but not for the suite");
    hostile::report(Tier::Docker, &rows, t.elapsed());

    let load = loadavg();
    let (med, p90) = latency(&sock, 30).await;
    println!(
        "docker: /bin/true start-to-exit over 30 runs: median {med:.1} ms, p90 {p90:.1} ms (load average {load})"
    );

    // Nothing of the runs is left: containers, processes in their cgroups.
    let mut left = Vec::new();
    for _ in 0..50 {
        left = daemon.baton_containers();
        left.extend(daemon.contained_processes());
        if left.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(left.is_empty(), "runs left things behind: {left:#?}");
}

#[test]
fn docker_tier_against_a_private_daemon() {
    let rt = || {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap()
    };
    // Other sandbox tests check the host for leftovers: run alone.
    let guard = rt().block_on(common::lock());
    let before = common::leftovers();
    let t = Instant::now();
    let (mut daemon, rootfs) = match Daemon::start() {
        Ok(d) => d,
        Err(why) => {
            common::skip(Tier::Docker, "the docker tier tests (private daemon)", &why);
            return;
        }
    };
    if let Err(e) = daemon.import(&rootfs) {
        panic!("{e}");
    }
    // SAFETY: no other thread of this test reads the environment now (the runtime below is
    // not built yet), and this binary has this one test.
    unsafe {
        std::env::set_var("DOCKER_HOST", format!("unix://{}", daemon.sock.display()));
        std::env::remove_var("BATON_DOCKER_IMAGE");
    }
    let runtime = rt();
    runtime.block_on(run(&daemon));
    drop(runtime);
    let t_stop = Instant::now();
    let problems = daemon.stop();
    println!(
        "docker: daemon stopped and cleaned up in {:.1} s",
        t_stop.elapsed().as_secs_f64()
    );
    println!(
        "docker: daemon start, import, tests and teardown took {:.1} s",
        t.elapsed().as_secs_f64()
    );
    assert!(problems.is_empty(), "teardown: {problems:#?}");
    let mut after = Vec::new();
    for _ in 0..50 {
        after = common::leftovers()
            .into_iter()
            .filter(|l| !before.contains(l))
            .collect();
        if after.is_empty() {
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(after.is_empty(), "left on the host: {after:#?}");
    drop(guard);
}
