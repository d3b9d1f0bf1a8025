//! The network namespace of an `allow:` run in the oci and gvisor tiers.

#![allow(unsafe_code)]

use std::path::PathBuf;

use crate::Error;

/// The network namespace of an `allow:` run: a thread of Baton's unshares its network
/// namespace, brings loopback up and listens on 127.0.0.1:3128 there; the container joins
/// that namespace (by the thread's `/proc/.../ns/net`), so the only thing it can reach is
/// the forwarder, which passes each connection to the run's allow-list proxy.
pub(super) struct ProxyNetns {
    pub path: PathBuf,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl ProxyNetns {
    pub async fn start(proxy_sock: PathBuf) -> Result<ProxyNetns, Error> {
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (tx, rx) = tokio::sync::oneshot::channel::<Result<PathBuf, String>>();
        let flag = stop.clone();
        let thread = std::thread::Builder::new()
            .name("baton-netns".into())
            .spawn(move || {
                // SAFETY: unshare with an integer flag; it changes only this thread's network
                // namespace (the rest of Baton keeps the host's).
                if unsafe { libc::unshare(libc::CLONE_NEWNET) } != 0 {
                    let e = std::io::Error::last_os_error();
                    let _ = tx.send(Err(format!("cannot create a network namespace: {e}")));
                    return;
                }
                if let Err(e) = crate::linux::loopback_up() {
                    let _ = tx.send(Err(format!("cannot bring loopback up: {e}")));
                    return;
                }
                let listener =
                    match std::net::TcpListener::bind(("127.0.0.1", crate::linux::PROXY_PORT)) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = tx.send(Err(format!(
                                "cannot listen on 127.0.0.1:{} for the proxy: {e}",
                                crate::linux::PROXY_PORT
                            )));
                            return;
                        }
                    };
                // SAFETY: gettid has no arguments and cannot fail.
                let tid = unsafe { libc::gettid() };
                let path = PathBuf::from(format!("/proc/{}/task/{tid}/ns/net", std::process::id()));
                if tx.send(Ok(path)).is_err() {
                    return;
                }
                crate::proxy::forward_until(&listener, &proxy_sock, &flag);
            })
            .map_err(|e| Error::Unenforceable(format!("cannot start the proxy forwarder: {e}")))?;
        let mut netns = ProxyNetns {
            path: PathBuf::new(),
            stop,
            thread: Some(thread),
        };
        match rx.await {
            Ok(Ok(path)) => {
                netns.path = path;
                Ok(netns)
            }
            Ok(Err(m)) => Err(Error::Unenforceable(format!(
                "the allow-list network mode: {m}"
            ))),
            Err(_) => Err(Error::Unenforceable(
                "the allow-list network mode: the forwarder thread ended early".into(),
            )),
        }
    }

    /// Stops accepting connections; the namespace goes when its last socket closes.
    pub fn stop(mut self) {
        self.halt();
    }

    fn halt(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for ProxyNetns {
    fn drop(&mut self) {
        self.halt();
    }
}
