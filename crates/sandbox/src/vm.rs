//! The `microvm` tier: a KVM microVM (QEMU `-M microvm`, or Firecracker when installed) booting
//! a minimal kernel and an initramfs whose `/init` runs one command and prints its status.
//!
//! Protocol with the guest's `/init` (see `mk/sandbox.mk`, target `sandbox-microvm-image`): the
//! request (files, env, argv) goes in as a base64 shell script on the kernel command line
//! (`baton.req=`, so requests are limited to about 1.5 KiB); the guest writes the command's
//! stdout and stderr base64-encoded between marker lines on the serial console and ends with
//! `BATON-EXIT <code>`. The workspace is the guest's own tmpfs.
//!
//! Before a tier is offered, a boot probe must succeed: nested or paravirtual KVM often exists
//! (`/dev/kvm` opens) but cannot boot a guest; that host gets a plain refusal, never a fallback.
// This crate starts processes (ARCHITECTURE §2): here QEMU or Firecracker.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use tokio::io::AsyncReadExt;

use crate::oci::find_binary;
use crate::policy::{NetMode, Policy, Tier};
use crate::{Capped, Error, ExecOutput, ExecRequest, Sandbox};

/// Where the image built by `make sandbox-microvm-image` lives (override with
/// `BATON_MICROVM_DIR`).
pub fn image_dir() -> PathBuf {
    std::env::var_os("BATON_MICROVM_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/lib/baton/microvm"))
}

/// The pieces a microVM needs on this host.
#[derive(Clone, Debug)]
pub struct VmHost {
    pub qemu: PathBuf,
    pub kernel: PathBuf,
    pub initrd: PathBuf,
}

/// Checks everything short of booting: KVM, QEMU, the image.
pub fn check_host() -> Result<VmHost, String> {
    check_host_with(
        Path::new("/dev/kvm"),
        find_binary("qemu-system-x86_64"),
        &image_dir(),
    )
}

/// [`check_host`] for a given KVM device, QEMU binary and image directory.
fn check_host_with(kvm: &Path, qemu: Option<PathBuf>, dir: &Path) -> Result<VmHost, String> {
    if !kvm.exists() {
        return Err(format!(
            "{} does not exist (no KVM on this host)",
            kvm.display()
        ));
    }
    if let Err(e) = std::fs::OpenOptions::new().read(true).write(true).open(kvm) {
        return Err(format!("{} cannot be opened: {e}", kvm.display()));
    }
    let Some(qemu) = qemu else {
        return Err(
            "QEMU (qemu-system-x86_64, Debian package qemu-system-x86) is not installed".into(),
        );
    };
    let (kernel, initrd) = (dir.join("vmlinuz"), dir.join("initrd.img"));
    if !kernel.is_file() || !initrd.is_file() {
        return Err(format!(
            "no microVM image in {} (build it with `make sandbox-microvm-image`)",
            dir.display()
        ));
    }
    Ok(VmHost {
        qemu,
        kernel,
        initrd,
    })
}

/// The QEMU command line for one run (inspectable; the tests check it).
pub fn qemu_args(host: &VmHost, policy: &Policy, req_b64: &str) -> Vec<String> {
    let mem_mb = (policy.limits.memory_bytes >> 20).max(64);
    let cpus = policy.limits.cpus.ceil().max(1.0) as u32;
    let mut args = vec![
        "-M".to_string(),
        "microvm,x-option-roms=off,rtc=off".into(),
        "-enable-kvm".into(),
        "-cpu".into(),
        "host".into(),
        "-m".into(),
        format!("{mem_mb}M"),
        "-smp".into(),
        cpus.to_string(),
        "-nodefaults".into(),
        "-no-user-config".into(),
        "-nographic".into(),
        "-no-reboot".into(),
        "-serial".into(),
        "stdio".into(),
        "-kernel".into(),
        host.kernel.display().to_string(),
        "-initrd".into(),
        host.initrd.display().to_string(),
        "-append".into(),
        format!(
            "console=ttyS0 quiet panic=-1 reboot=t baton.req={req_b64} baton.disk={} baton.pids={}",
            policy.limits.disk_bytes, policy.limits.pids
        ),
    ];
    if !matches!(policy.net, NetMode::None) {
        // Loopback exists inside the guest; no NIC is ever attached.
        args.push("-nic".into());
        args.push("none".into());
    }
    args
}

static PROBE: OnceLock<Result<(), String>> = OnceLock::new();

/// Boots the image once per process with a no-op request; the tier is offered only if it
/// reaches `BATON-EXIT` within 10 s.
pub fn probe(host: &VmHost) -> Result<(), String> {
    PROBE
        .get_or_init(|| {
            let policy = Policy::new(Tier::Microvm);
            let req = encode_request(&ExecRequest::new(["true"]));
            let out = std::process::Command::new(&host.qemu)
                .args(qemu_args(host, &policy, &req))
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(|e| format!("cannot start QEMU: {e}"))?;
            let pid = out.id();
            let deadline = Instant::now() + Duration::from_secs(10);
            let waiter = std::thread::spawn(move || out.wait_with_output());
            while !waiter.is_finished() {
                if Instant::now() > deadline {
                    let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid as i32), nix::sys::signal::Signal::SIGKILL);
                    let _ = waiter.join();
                    return Err("a KVM guest did not boot within 10 s here (nested/paravirtual KVM that cannot run QEMU's microvm machine)".into());
                }
                std::thread::sleep(Duration::from_millis(20));
            }
            match waiter.join() {
                Ok(Ok(o)) if String::from_utf8_lossy(&o.stdout).contains("BATON-EXIT 0") => Ok(()),
                Ok(Ok(o)) => Err(format!("the microVM booted but did not run the probe: {}", String::from_utf8_lossy(&o.stderr).trim())),
                _ => Err("the microVM probe failed".into()),
            }
        })
        .clone()
}

/// The request as a POSIX shell script (base64, for the kernel command line): it writes the
/// files, sets the environment and runs the command in /work. The guest's `/init` runs it.
pub fn encode_request(req: &ExecRequest) -> String {
    fn q(s: &str) -> String {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
    let mut sh = String::from("set -e\ncd /work\n");
    for (name, contents) in &req.files {
        sh.push_str(&format!(
            "mkdir -p \"$(dirname {n})\"\nprintf %s {b} | base64 -d > {n}\n",
            n = q(name),
            b = q(&base64_encode(contents.as_bytes()))
        ));
    }
    for (k, v) in &req.env {
        sh.push_str(&format!("export {k}={}\n", q(v)));
    }
    sh.push_str("set +e\nexec");
    for a in &req.argv {
        sh.push(' ');
        sh.push_str(&q(a));
    }
    sh.push('\n');
    base64_encode(sh.as_bytes())
}

fn base64_encode(data: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(data.len().div_ceil(3) * 4);
    for chunk in data.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

fn base64_decode(s: &str) -> Vec<u8> {
    let val = |c: u8| -> Option<u32> {
        Some(match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        } as u32)
    };
    let clean: Vec<u32> = s.bytes().filter_map(val).collect();
    let mut out = Vec::with_capacity(clean.len() * 3 / 4);
    for c in clean.chunks(4) {
        let n = c
            .iter()
            .enumerate()
            .fold(0u32, |acc, (i, v)| acc | (v << (18 - 6 * i)));
        let bytes = [(n >> 16) as u8, (n >> 8) as u8, n as u8];
        out.extend_from_slice(&bytes[..c.len().saturating_sub(1)]);
    }
    out
}

/// Parses the guest's console: returns (stdout, stderr, exit code).
pub fn parse_console(text: &str) -> (Vec<u8>, Vec<u8>, Option<i32>) {
    let (mut out, mut err, mut code) = (String::new(), String::new(), None);
    let mut section = 0;
    for line in text.lines() {
        let line = line.trim_end_matches('\r');
        match line {
            "BATON-STDOUT" => section = 1,
            "BATON-STDERR" => section = 2,
            "BATON-END" => section = 0,
            _ => {
                if let Some(c) = line.strip_prefix("BATON-EXIT ") {
                    code = c.trim().parse().ok();
                } else if section == 1 {
                    out.push_str(line);
                } else if section == 2 {
                    err.push_str(line);
                }
            }
        }
    }
    (base64_decode(&out), base64_decode(&err), code)
}

/// The microVM tier.
pub struct MicroVm {
    policy: Policy,
    host: VmHost,
}

impl MicroVm {
    pub fn new(policy: Policy) -> Result<MicroVm, Error> {
        policy.validate()?;
        let unavailable = |reason: String| Error::TierUnavailable {
            tier: Tier::Microvm,
            reason,
        };
        if matches!(policy.net, NetMode::Allow(_)) {
            return Err(unavailable(
                "the allow-list network mode is provided by the process, oci and gvisor tiers (a microVM has no route to Baton's proxy)".into(),
            ));
        }
        let host = check_host().map_err(unavailable)?;
        probe(&host).map_err(unavailable)?;
        Ok(MicroVm { policy, host })
    }
}

#[async_trait]
impl Sandbox for MicroVm {
    fn tier(&self) -> Tier {
        Tier::Microvm
    }
    fn policy(&self) -> &Policy {
        &self.policy
    }
    async fn exec(&self, req: ExecRequest) -> Result<ExecOutput, Error> {
        req.validate()?;
        if req.workdir.is_some() {
            return Err(Error::InvalidRequest(
                "the microvm tier has no host workdir: pass files instead".into(),
            ));
        }
        let encoded = encode_request(&req);
        if encoded.len() > 1500 {
            return Err(Error::InvalidRequest(format!(
                "the request is {} bytes encoded; the microvm tier passes it on the kernel command line, which holds about 1500",
                encoded.len()
            )));
        }
        let start = Instant::now();
        let mut child = tokio::process::Command::new(&self.host.qemu)
            .args(qemu_args(&self.host, &self.policy, &encoded))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| Error::Runtime(format!("cannot start QEMU: {e}")))?;
        let mut console = Vec::new();
        let limit = self.policy.limits.output_bytes.saturating_mul(2) + (64 << 10);
        let read = read_console(child.stdout.take(), limit, &mut console);
        let timed_out = tokio::time::timeout(self.policy.limits.time, read)
            .await
            .is_err();
        if timed_out {
            let _ = child.kill().await;
        }
        let _ = child.wait().await;
        let (o, e, code) = parse_console(&String::from_utf8_lossy(&console));
        let mut stdout = Capped::new(self.policy.limits.output_bytes);
        stdout.push(&o);
        let mut stderr = Capped::new(self.policy.limits.output_bytes);
        stderr.push(&e);
        let signal = code.is_none().then_some(libc::SIGKILL);
        let (stop, hit) = crate::stop_reason(timed_out, 0, false, 0, signal);
        Ok(ExecOutput {
            tier: Tier::Microvm,
            exit_code: code,
            signal,
            stop_reason: stop,
            limits_hit: hit,
            stdout: stdout.text(),
            stdout_truncated: stdout.truncated || (console.len() as u64) >= limit,
            stderr: stderr.text(),
            stderr_truncated: stderr.truncated,
            wall_time: start.elapsed(),
            cpu_time: None,
            peak_memory_bytes: None,
            network: Vec::new(),
            enforced: vec![
                format!(
                    "KVM microVM ({}), {} MiB RAM, {} vCPU",
                    self.host.qemu.display(),
                    self.policy.limits.memory_bytes >> 20,
                    self.policy.limits.cpus.ceil()
                ),
                "no network device".into(),
            ],
        })
    }
}

/// Reads QEMU's serial console into `console`, keeping at most `limit` bytes.
async fn read_console(out: Option<tokio::process::ChildStdout>, limit: u64, console: &mut Vec<u8>) {
    let Some(mut s) = out else { return };
    let mut buf = vec![0u8; 64 << 10];
    while let Ok(n) = s.read(&mut buf).await {
        if n == 0 {
            break;
        }
        if (console.len() as u64) < limit {
            console.extend_from_slice(&buf[..n]);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn base64_round_trips() {
        for s in ["", "a", "ab", "abc", "abcd", "{\"argv\":[\"true\"]}"] {
            assert_eq!(base64_decode(&base64_encode(s.as_bytes())), s.as_bytes());
        }
    }

    #[test]
    fn requests_become_a_quoted_script() {
        let mut r = ExecRequest::new(["python3", "-c", "print('hi')"]);
        r.files.insert("a b.txt".into(), "x".into());
        r.env.insert("K".into(), "it's".into());
        let script = String::from_utf8(base64_decode(&encode_request(&r))).unwrap();
        assert!(
            script.contains("exec 'python3' '-c' 'print('\\''hi'\\'')'"),
            "{script}"
        );
        assert!(script.contains("export K='it'\\''s'"), "{script}");
        assert!(script.contains("> 'a b.txt'"), "{script}");
    }

    #[test]
    fn console_is_parsed() {
        let text = format!(
            "boot noise\nBATON-STDOUT\n{}\nBATON-END\nBATON-STDERR\n{}\nBATON-END\nBATON-EXIT 3\n",
            base64_encode(b"out\n"),
            base64_encode(b"err")
        );
        let (o, e, c) = parse_console(&text);
        assert_eq!(
            (o.as_slice(), e.as_slice(), c),
            (&b"out\n"[..], &b"err"[..], Some(3))
        );
    }

    #[test]
    fn qemu_command_line_has_limits_and_no_nic() {
        let host = VmHost {
            qemu: "/usr/bin/qemu-system-x86_64".into(),
            kernel: "/k".into(),
            initrd: "/i".into(),
        };
        let mut p = Policy::new(Tier::Microvm);
        p.limits.memory_bytes = 256 << 20;
        let a = qemu_args(&host, &p, "e30=");
        assert!(a.windows(2).any(|w| w[0] == "-m" && w[1] == "256M"));
        assert!(a.iter().any(|x| x.starts_with("microvm")));
        assert!(a.iter().any(|x| x.contains("baton.req=e30=")));
        assert!(a.contains(&"-nodefaults".to_string()));
    }

    /// The documented reasons, in order: no KVM device, KVM not openable, no QEMU, no image.
    #[test]
    fn the_host_check_names_what_is_missing() {
        let dir = tempfile::tempdir().unwrap();
        let kvm = dir.path().join("kvm");
        let qemu = Some(dir.path().join("qemu"));
        let e = check_host_with(&kvm, qemu.clone(), dir.path()).unwrap_err();
        assert_eq!(
            e,
            format!("{} does not exist (no KVM on this host)", kvm.display())
        );
        std::fs::write(&kvm, "").unwrap();
        let e = check_host_with(&kvm, None, dir.path()).unwrap_err();
        assert!(e.starts_with("QEMU (qemu-system-x86_64"), "{e}");
        let e = check_host_with(&kvm, qemu.clone(), dir.path()).unwrap_err();
        assert_eq!(
            e,
            format!(
                "no microVM image in {} (build it with `make sandbox-microvm-image`)",
                dir.path().display()
            )
        );
        std::fs::write(dir.path().join("vmlinuz"), "").unwrap();
        std::fs::write(dir.path().join("initrd.img"), "").unwrap();
        let host = check_host_with(&kvm, qemu, dir.path()).unwrap();
        assert_eq!(host.kernel, dir.path().join("vmlinuz"));
    }
}
