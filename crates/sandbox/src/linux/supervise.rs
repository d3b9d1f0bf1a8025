//! The supervisor's side of a run once the children exist: it polls the output, message and
//! status pipes and a pidfd of A, kills B (the sandbox's init, so its whole PID namespace) at
//! the deadline, reaps A and drains what is left.

#![allow(unsafe_code)]

use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::{Capped, Error};

/// What the supervisor saw of a run.
pub(super) struct Supervised {
    pub status: Option<i32>,
    pub disk_full: bool,
    pub timed_out: bool,
    pub stdout: Capped,
    pub stderr: Capped,
    pub messages: String,
    pub rusage_cpu: Option<Duration>,
    pub rusage_maxrss: Option<u64>,
    /// The owner asked for the run to end (a spawned run's `kill`, or its handle dropped).
    pub cancelled: bool,
}

/// The supervisor's read ends: the command's output, the launcher's messages, B's status.
pub(super) struct Streams {
    pub stdout: OwnedFd,
    pub stderr: OwnedFd,
    pub messages: OwnedFd,
    pub status: OwnedFd,
}

/// What a spawned run adds to the watch: a pipe whose read end wakes the supervisor to kill
/// the sandbox (a byte written, or the write end closed), and a tail of the output kept
/// while it runs.
#[derive(Default)]
pub(super) struct Extras<'a> {
    pub cancel: Option<&'a OwnedFd>,
    pub tail: Option<&'a crate::linux::spawn::LogTail>,
}

/// The four read ends being drained.
struct Reader {
    fds: [RawFd; 4],
    open: [bool; 4],
    msg_buf: Vec<u8>,
    status_buf: Vec<u8>,
    buf: Vec<u8>,
}

impl Reader {
    /// Puts the descriptors in non-blocking mode; `streams` must outlive the reader.
    fn new(streams: &Streams) -> Reader {
        let fds = [
            streams.stdout.as_raw_fd(),
            streams.stderr.as_raw_fd(),
            streams.messages.as_raw_fd(),
            streams.status.as_raw_fd(),
        ];
        for fd in fds {
            // SAFETY: fcntl on descriptors `streams` owns for the whole loop.
            unsafe {
                let fl = libc::fcntl(fd, libc::F_GETFL);
                libc::fcntl(fd, libc::F_SETFL, fl | libc::O_NONBLOCK);
            }
        }
        Reader {
            fds,
            open: [true; 4],
            msg_buf: Vec::new(),
            status_buf: Vec::new(),
            buf: vec![0u8; 64 << 10],
        }
    }

    /// Reads every ready descriptor until it would block; a closed one is marked done.
    fn read_ready(
        &mut self,
        pfds: &[libc::pollfd],
        out: &mut Supervised,
        tail: Option<&crate::linux::spawn::LogTail>,
    ) {
        for (i, pfd) in pfds.iter().take(4).enumerate() {
            if !self.open[i] || pfd.revents == 0 {
                continue;
            }
            loop {
                // SAFETY: reading into a buffer we own, of the length given.
                let r = unsafe {
                    libc::read(self.fds[i], self.buf.as_mut_ptr().cast(), self.buf.len())
                };
                if r > 0 {
                    let data = &self.buf[..r as usize];
                    if i < 2
                        && let Some(t) = tail
                    {
                        t.push(data);
                    }
                    match i {
                        0 => out.stdout.push(data),
                        1 => out.stderr.push(data),
                        2 => self.msg_buf.extend_from_slice(data),
                        _ => self.status_buf.extend_from_slice(data),
                    }
                    continue;
                }
                if r == 0 {
                    self.open[i] = false;
                }
                break;
            }
        }
    }

    fn pollfds(&self, pidfd: Option<RawFd>, cancel: Option<RawFd>) -> Vec<libc::pollfd> {
        let mut pfds: Vec<libc::pollfd> = self
            .fds
            .iter()
            .zip(self.open)
            .map(|(fd, open)| libc::pollfd {
                fd: if open { *fd } else { -1 },
                events: libc::POLLIN,
                revents: 0,
            })
            .collect();
        for fd in [pidfd, cancel] {
            pfds.push(libc::pollfd {
                fd: fd.unwrap_or(-1),
                events: libc::POLLIN,
                revents: 0,
            });
        }
        pfds
    }
}

fn open_pidfd(a: Pid, b: Pid) -> Result<OwnedFd, Error> {
    // SAFETY: pidfd_open takes a pid and flags and returns a new descriptor or -1.
    let pidfd = unsafe { libc::syscall(libc::SYS_pidfd_open, a.as_raw(), 0) } as RawFd;
    if pidfd < 0 {
        let _ = kill(b, Signal::SIGKILL);
        return Err(Error::Runtime(format!(
            "pidfd_open failed: {}",
            std::io::Error::last_os_error()
        )));
    }
    // SAFETY: `pidfd` was just returned by the kernel and is owned by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(pidfd) })
}

/// Reaps A if it has ended, recording its CPU time and peak memory.
fn try_reap(a: Pid, out: &mut Supervised) -> bool {
    let mut st: libc::c_int = 0;
    // SAFETY: a zeroed rusage is a valid value for wait4 to fill in.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: wait4 on our own child with valid out-pointers.
    let r = unsafe { libc::wait4(a.as_raw(), &mut st, libc::WNOHANG, &mut ru) };
    if r != a.as_raw() {
        return false;
    }
    let tv = |t: libc::timeval| {
        Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64)
    };
    out.rusage_cpu = Some(tv(ru.ru_utime) + tv(ru.ru_stime));
    out.rusage_maxrss = Some(ru.ru_maxrss as u64 * 1024);
    true
}

/// Watches A and B until A is reaped and the pipes are drained (or 2 s after A ended).
pub(super) fn supervise(
    a: Pid,
    b: Pid,
    deadline: Instant,
    cap: u64,
    streams: Streams,
    extras: &Extras<'_>,
) -> Result<Supervised, Error> {
    let pidfd = open_pidfd(a, b)?;
    let mut out = Supervised {
        status: None,
        disk_full: false,
        timed_out: false,
        stdout: Capped::new(cap),
        stderr: Capped::new(cap),
        messages: String::new(),
        rusage_cpu: None,
        rusage_maxrss: None,
        cancelled: false,
    };
    let mut rd = Reader::new(&streams);
    let mut reaped = false;
    let mut drain_deadline: Option<Instant> = None;
    loop {
        let now = Instant::now();
        if !out.timed_out && !out.cancelled && now >= deadline && !reaped {
            out.timed_out = true;
            // B is the init of the sandbox's PID namespace: killing it kills every process in it.
            let _ = kill(b, Signal::SIGKILL);
            let _ = kill(a, Signal::SIGKILL);
        }
        if (reaped && !rd.open.iter().any(|o| *o)) || drain_deadline.is_some_and(|d| now >= d) {
            break;
        }
        let cancel = extras
            .cancel
            .filter(|_| !out.cancelled && !reaped)
            .map(|c| c.as_raw_fd());
        let mut pfds = rd.pollfds((!reaped).then(|| pidfd.as_raw_fd()), cancel);
        let wait_until = if out.timed_out || out.cancelled || reaped {
            drain_deadline.unwrap_or(now + Duration::from_millis(100))
        } else {
            deadline
        };
        let timeout_ms = wait_until
            .saturating_duration_since(now)
            .as_millis()
            .clamp(1, 1000) as i32;
        // SAFETY: `pfds` is a valid array of pollfd of the given length.
        let n = unsafe { libc::poll(pfds.as_mut_ptr(), pfds.len() as libc::nfds_t, timeout_ms) };
        if n < 0 {
            let e = std::io::Error::last_os_error();
            if e.kind() == std::io::ErrorKind::Interrupted {
                continue;
            }
            let _ = kill(b, Signal::SIGKILL);
            return Err(Error::Io(e));
        }
        rd.read_ready(&pfds, &mut out, extras.tail);
        if !reaped && !out.timed_out && pfds[5].revents != 0 {
            out.cancelled = true;
            // As at the deadline: B's death ends its whole PID namespace.
            let _ = kill(b, Signal::SIGKILL);
            let _ = kill(a, Signal::SIGKILL);
        }
        if !reaped && pfds[4].revents != 0 && try_reap(a, &mut out) {
            reaped = true;
            drain_deadline = Some(Instant::now() + Duration::from_secs(2));
        }
    }
    if !reaped {
        let _ = kill(b, Signal::SIGKILL);
        let _ = kill(a, Signal::SIGKILL);
        let _ = nix::sys::wait::waitpid(a, None);
    }
    if let [s0, s1, s2, s3, full, ..] = rd.status_buf[..] {
        out.status = Some(i32::from_le_bytes([s0, s1, s2, s3]));
        out.disk_full = full != 0;
    }
    out.messages = String::from_utf8_lossy(&rd.msg_buf).into_owned();
    Ok(out)
}
