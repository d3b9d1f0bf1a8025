//! Long-running commands in the process tier: [`ProcessSandbox::spawn`] starts a command under
//! the same policy as `exec` (namespaces, cgroups, seccomp, landlock, the time limit as its
//! lifetime) and returns once the sandbox exists, with a [`Spawned`] handle: the sandbox's
//! network namespace (to publish a port from it), the tail of its output, `kill`, and `wait`.
//!
//! The run is supervised by a thread of its own, which is the parent of the sandbox's
//! launcher: when that thread ends (the run is over) or Baton's process dies, the kernel kills
//! the launcher (`PR_SET_PDEATHSIG`) and with it the sandbox's whole PID namespace. `kill` (or
//! dropping the handle) wakes the supervisor through a pipe; it kills the sandbox's init, so
//! every process of the app, and removes the cgroups.

use std::collections::VecDeque;
use std::io::Write;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::{Arc, Mutex};

use nix::unistd::Pid;

use super::supervise::Extras;
use super::{ProcessSandbox, pipe, run_watched};
use crate::policy::NetMode;
use crate::{Error, ExecOutput, ExecRequest};

/// Bytes of output a [`Spawned`] keeps (stdout and stderr interleaved, the most recent).
pub const TAIL_BYTES: usize = 16 << 10;

/// The last bytes a running command wrote to stdout and stderr.
pub struct LogTail {
    buf: Mutex<VecDeque<u8>>,
    cap: usize,
}

impl LogTail {
    pub fn new(cap: usize) -> LogTail {
        LogTail {
            buf: Mutex::new(VecDeque::with_capacity(cap.min(64 << 10))),
            cap,
        }
    }

    pub fn push(&self, data: &[u8]) {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        let data = &data[data.len().saturating_sub(self.cap)..];
        let over = (b.len() + data.len()).saturating_sub(self.cap);
        let n = over.min(b.len());
        b.drain(..n);
        b.extend(data);
    }

    /// The tail as text (invalid UTF-8 replaced), at most `cap` bytes.
    pub fn text(&self) -> String {
        let mut b = self.buf.lock().unwrap_or_else(|p| p.into_inner());
        String::from_utf8_lossy(b.make_contiguous()).into_owned()
    }
}

type Outcome = Arc<Mutex<Option<Result<ExecOutput, String>>>>;

/// A command running in a process-tier sandbox. Dropping the handle kills it.
pub struct Spawned {
    pid: i32,
    netns: OwnedFd,
    cancel: Mutex<std::fs::File>,
    tail: Arc<LogTail>,
    done: tokio::sync::watch::Receiver<bool>,
    outcome: Outcome,
}

impl Spawned {
    /// The host pid of the sandbox's launcher (the parent of its PID namespace's init).
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// The sandbox's network namespace (held open, so it outlives the sandbox's processes):
    /// a thread that joins it with `setns` reaches the sandbox's loopback.
    pub fn netns(&self) -> BorrowedFd<'_> {
        self.netns.as_fd()
    }

    /// The last output of the command (stdout and stderr interleaved).
    pub fn log_tail(&self) -> String {
        self.tail.text()
    }

    /// Ends the command and every process of its sandbox (does not wait: see [`Spawned::wait`]).
    pub fn kill(&self) {
        let mut w = self.cancel.lock().unwrap_or_else(|p| p.into_inner());
        let _ = w.write_all(b"k");
    }

    /// Whether the sandbox still runs (its supervisor has not reported the end).
    pub fn is_running(&self) -> bool {
        !*self.done.borrow()
    }

    /// How the run ended, once it has.
    pub fn outcome(&self) -> Option<Result<ExecOutput, String>> {
        self.outcome
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Waits for the run to end (on its own, by `kill`, or at its time limit): its record,
    /// with the sandbox and its cgroups gone.
    pub async fn wait(&self) -> Result<ExecOutput, Error> {
        let mut rx = self.done.clone();
        if rx.wait_for(|d| *d).await.is_err() {
            return Err(Error::Runtime(
                "the sandbox supervisor ended without reporting the run".into(),
            ));
        }
        match self.outcome() {
            Some(Ok(out)) => Ok(out),
            Some(Err(m)) => Err(Error::Runtime(m)),
            None => Err(Error::Runtime(
                "the sandbox supervisor ended without reporting the run".into(),
            )),
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        self.kill();
    }
}

impl ProcessSandbox {
    /// Starts `req` and returns once its sandbox exists (the command may still be starting).
    /// The policy's time limit is the command's lifetime. The network must be `none` or
    /// `loopback` (an allow-list proxy lives only as long as one `exec`).
    pub async fn spawn(&self, req: ExecRequest) -> Result<Spawned, Error> {
        req.validate()?;
        if matches!(self.policy.net, NetMode::Allow(_)) {
            return Err(Error::InvalidPolicy(
                "a long-running command takes the network mode none or loopback, not allow:".into(),
            ));
        }
        let (cancel_r, cancel_w) = pipe()?;
        let cancel = std::fs::File::from(cancel_w);
        let tail = Arc::new(LogTail::new(TAIL_BYTES));
        let outcome: Outcome = Arc::default();
        let (started_tx, started_rx) =
            tokio::sync::oneshot::channel::<Result<(i32, OwnedFd), Error>>();
        let (done_tx, done_rx) = tokio::sync::watch::channel(false);
        let policy = self.policy.clone();
        let layout = self.layout.clone();
        let filters = self.filters.clone();
        let (tail2, outcome2) = (tail.clone(), outcome.clone());
        std::thread::Builder::new()
            .name("baton-spawned".into())
            .spawn(move || {
                let mut started = Some(started_tx);
                let mut hook = |a: Pid| {
                    let ns = std::fs::File::open(format!("/proc/{}/ns/net", a.as_raw()))
                        .map(OwnedFd::from)
                        .map_err(|e| {
                            Error::Runtime(format!(
                                "cannot open the sandbox's network namespace: {e}"
                            ))
                        });
                    if let Some(tx) = started.take() {
                        let _ = tx.send(ns.map(|fd| (a.as_raw(), fd)));
                    }
                };
                let extras = Extras {
                    cancel: Some(&cancel_r),
                    tail: Some(&tail2),
                };
                let r = run_watched(&policy, &layout, &filters, &req, None, &mut hook, &extras);
                if let Some(tx) = started.take() {
                    // It never started: the caller gets the reason.
                    let _ = tx.send(Err(r.err().unwrap_or_else(|| {
                        Error::Runtime("the sandbox ended before it started".into())
                    })));
                    return;
                }
                *outcome2.lock().unwrap_or_else(|p| p.into_inner()) =
                    Some(r.map_err(|e| e.to_string()));
                let _ = done_tx.send(true);
            })
            .map_err(|e| Error::Runtime(format!("cannot start the sandbox supervisor: {e}")))?;
        match started_rx.await {
            Ok(Ok((pid, netns))) => Ok(Spawned {
                pid,
                netns,
                cancel: Mutex::new(cancel),
                tail,
                done: done_rx,
                outcome,
            }),
            Ok(Err(e)) => {
                // The sandbox's processes hold copies of the pipe: closing ours is not enough.
                let _ = (&cancel).write_all(b"k");
                Err(e)
            }
            Err(_) => Err(Error::Runtime(
                "the sandbox supervisor ended before the sandbox started".into(),
            )),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tail_keeps_the_last_bytes() {
        let t = LogTail::new(8);
        t.push(b"hello ");
        t.push(b"world");
        assert_eq!(t.text(), "lo world");
        t.push(b"0123456789abc");
        assert_eq!(t.text(), "56789abc");
    }
}
