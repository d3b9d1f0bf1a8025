//! Publishing a port of a sandbox with a private network namespace on the host's loopback.
//!
//! Baton listens on `127.0.0.1:<ephemeral>` in the host's namespace. A thread of Baton's joins
//! the sandbox's network namespace (`setns` on the namespace the [`Spawned`] handle holds
//! open) and stays there: for each connection it accepts on the host listener (a socket keeps
//! the namespace it was made in), it connects to `127.0.0.1:PORT` inside and copies bytes
//! both ways on two threads. Nothing else crosses: the sandbox still has no route out, and
//! the host sees only the one port.
//!
//! [`Spawned`]: crate::linux::Spawned

#![allow(unsafe_code)]

use std::collections::HashMap;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::Error;

/// Connections carried at once; more are refused (closed at once) until one ends.
pub const MAX_CONNECTIONS: usize = 64;

type Open = Arc<Mutex<HashMap<u64, [TcpStream; 2]>>>;

/// A sandbox's port, published on the host's loopback until stopped (or dropped).
pub struct Published {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
    open: Open,
}

impl Published {
    /// Listens on 127.0.0.1 (an ephemeral port) and forwards each connection to
    /// `127.0.0.1:port` in the network namespace `netns`.
    pub fn start(netns: BorrowedFd<'_>, port: u16) -> Result<Published, Error> {
        let listener = TcpListener::bind(("127.0.0.1", 0))?;
        listener.set_nonblocking(true)?;
        let addr = listener.local_addr()?;
        let ns: OwnedFd = netns.try_clone_to_owned()?;
        let stop = Arc::new(AtomicBool::new(false));
        let open: Open = Arc::default();
        let (tx, rx) = std::sync::mpsc::channel::<Result<(), String>>();
        let (flag, conns) = (stop.clone(), open.clone());
        let thread = std::thread::Builder::new()
            .name("baton-publish".into())
            .spawn(move || {
                // Only this thread changes namespace; the rest of Baton keeps the host's.
                if let Err(e) = nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET) {
                    let _ = tx.send(Err(format!(
                        "cannot enter the sandbox's network namespace: {e}"
                    )));
                    return;
                }
                drop(ns);
                let _ = tx.send(Ok(()));
                accept_until(&listener, port, &flag, &conns);
            })
            .map_err(|e| Error::Runtime(format!("cannot start the port forwarder: {e}")))?;
        let mut published = Published {
            addr,
            stop,
            thread: Some(thread),
            open,
        };
        match rx.recv() {
            Ok(Ok(())) => Ok(published),
            Ok(Err(m)) => {
                published.halt();
                Err(Error::Unenforceable(m))
            }
            Err(_) => {
                published.halt();
                Err(Error::Runtime("the port forwarder ended early".into()))
            }
        }
    }

    /// Where the port answers on the host.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops listening and cuts the connections in flight.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        let open = std::mem::take(&mut *self.open.lock().unwrap_or_else(|p| p.into_inner()));
        for s in open.values().flatten() {
            let _ = s.shutdown(Shutdown::Both);
        }
    }
}

impl Drop for Published {
    fn drop(&mut self) {
        self.halt();
    }
}

/// The forwarder's loop (in the sandbox's namespace): accepts until `stop` is set (checked
/// every 50 ms).
fn accept_until(listener: &TcpListener, port: u16, stop: &AtomicBool, open: &Open) {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    while !stop.load(Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n <= 0 {
            continue;
        }
        let Ok((outside, _)) = listener.accept() else {
            continue;
        };
        let full = open.lock().unwrap_or_else(|p| p.into_inner()).len() >= MAX_CONNECTIONS;
        // A refused connection (the app not listening yet) closes the client's at once.
        let inside = if full {
            None
        } else {
            TcpStream::connect_timeout(
                &SocketAddr::from(([127, 0, 0, 1], port)),
                Duration::from_secs(2),
            )
            .ok()
        };
        let Some(inside) = inside else {
            let _ = outside.shutdown(Shutdown::Both);
            continue;
        };
        let _ = outside.set_nonblocking(false);
        let id = NEXT.fetch_add(1, Ordering::Relaxed);
        if let (Ok(o), Ok(i)) = (outside.try_clone(), inside.try_clone()) {
            open.lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id, [o, i]);
        }
        let open = open.clone();
        std::thread::spawn(move || {
            pump(outside, inside);
            open.lock().unwrap_or_else(|p| p.into_inner()).remove(&id);
        });
    }
}

/// Copies both ways until both directions are done.
fn pump(a: TcpStream, b: TcpStream) {
    let (Ok(mut a2), Ok(mut b2)) = (a.try_clone(), b.try_clone()) else {
        return;
    };
    let (mut a1, mut b1) = (a, b);
    let up = std::thread::spawn(move || {
        let _ = std::io::copy(&mut a1, &mut b1);
        let _ = b1.shutdown(Shutdown::Write);
    });
    let _ = std::io::copy(&mut b2, &mut a2);
    let _ = a2.shutdown(Shutdown::Write);
    let _ = up.join();
}
