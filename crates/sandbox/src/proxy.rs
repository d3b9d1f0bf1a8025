//! The allow-list network mode: an HTTP(S) proxy Baton runs for one sandbox, reached from
//! inside through a unix socket bound into the sandbox (and a small TCP forwarder on
//! 127.0.0.1:3128 in the sandbox's own network namespace). It serves `CONNECT host:port` and
//! absolute-URI HTTP requests, refuses every host not on the list, and logs every attempt.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;

use crate::Error;

/// One connection attempt through the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAttempt {
    pub host: String,
    pub port: u16,
    pub method: String,
    pub allowed: bool,
    /// Why it was refused or failed, when it was.
    pub detail: Option<String>,
    /// Milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// Whether `host:port` matches one of the allow-list entries (`host`, `host:port`, `*.domain`).
/// Entries without a port allow 80 and 443.
pub fn allowed(list: &[String], host: &str, port: u16) -> bool {
    let host = host.trim_end_matches('.').to_ascii_lowercase();
    list.iter().any(|entry| {
        let entry = entry.to_ascii_lowercase();
        let (pat, p) = match entry.rsplit_once(':') {
            Some((h, p)) => (h.to_string(), p.parse::<u16>().ok()),
            None => (entry.clone(), None),
        };
        let port_ok = match p {
            Some(p) => p == port,
            None => port == 80 || port == 443,
        };
        let host_ok = match pat.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == pat,
        };
        port_ok && host_ok
    })
}

/// A running proxy for one sandbox.
pub struct Proxy {
    dir: PathBuf,
    sock: PathBuf,
    log: Arc<Mutex<Vec<NetAttempt>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    pub async fn start(hosts: Vec<String>) -> Result<Proxy, Error> {
        use std::os::unix::fs::PermissionsExt;
        let dir = std::env::temp_dir().join(format!(
            "baton-proxy-{}-{}",
            std::process::id(),
            SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0)
        ));
        std::fs::create_dir(&dir)?;
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o711))?;
        let sock = dir.join("proxy.sock");
        let listener = UnixListener::bind(&sock)?;
        // The sandbox's setup user (an unprivileged host uid) must be able to connect.
        std::fs::set_permissions(&sock, std::fs::Permissions::from_mode(0o666))?;
        let log = Arc::new(Mutex::new(Vec::new()));
        let hosts = Arc::new(hosts);
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let hosts = hosts.clone();
                let log = task_log.clone();
                tokio::spawn(async move {
                    handle(conn, &hosts, &log).await;
                });
            }
        });
        Ok(Proxy {
            dir,
            sock,
            log,
            task,
        })
    }

    pub fn socket_path(&self) -> &Path {
        &self.sock
    }

    /// Stops the proxy and returns what it saw.
    pub async fn finish(self) -> Vec<NetAttempt> {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn record(log: &Mutex<Vec<NetAttempt>>, a: NetAttempt) {
    tracing::info!(host = %a.host, port = a.port, method = %a.method, allowed = a.allowed, detail = ?a.detail, "sandbox network attempt");
    if let Ok(mut l) = log.lock() {
        l.push(a);
    }
}

/// Parses the request head: returns (method, host, port, rewritten head for plain HTTP).
pub fn parse_head(head: &str) -> Result<(String, String, u16, Option<String>), String> {
    let mut lines = head.split("\r\n");
    let first = lines.next().unwrap_or_default();
    let mut parts = first.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(format!("malformed request line '{first}'"));
    };
    if method == "CONNECT" {
        let (host, port) = split_host_port(target, 443)?;
        return Ok((method.into(), host, port, None));
    }
    let rest = target.strip_prefix("http://").ok_or_else(|| {
        format!("only CONNECT and absolute http:// URLs are proxied, got '{target}'")
    })?;
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    let (host, port) = split_host_port(authority, 80)?;
    let mut new_head = format!("{method} {path} {version}\r\n");
    for l in lines {
        if l.is_empty() || l.to_ascii_lowercase().starts_with("proxy-") {
            continue;
        }
        new_head.push_str(l);
        new_head.push_str("\r\n");
    }
    new_head.push_str("\r\n");
    Ok((method.into(), host, port, Some(new_head)))
}

fn split_host_port(s: &str, default: u16) -> Result<(String, u16), String> {
    if let Some(rest) = s.strip_prefix('[') {
        let (h, p) = rest
            .split_once(']')
            .ok_or_else(|| format!("bad host '{s}'"))?;
        let port = match p.strip_prefix(':') {
            Some(p) => p.parse().map_err(|_| format!("bad port in '{s}'"))?,
            None => default,
        };
        return Ok((h.to_string(), port));
    }
    match s.rsplit_once(':') {
        Some((h, p)) => Ok((
            h.to_string(),
            p.parse().map_err(|_| format!("bad port in '{s}'"))?,
        )),
        None => Ok((s.to_string(), default)),
    }
}

async fn handle(mut conn: UnixStream, hosts: &[String], log: &Mutex<Vec<NetAttempt>>) {
    let Some((head, body_start)) = read_head(&mut conn).await else {
        return;
    };
    let text = String::from_utf8_lossy(&head[..body_start]).into_owned();
    let (method, host, port, rewritten) = match parse_head(&text) {
        Ok(x) => x,
        Err(e) => {
            let reply = format!("HTTP/1.1 400 Bad Request\r\nConnection: close\r\n\r\n{e}\n");
            refuse(&mut conn, log, attempt("", 0, "", false, Some(e)), &reply).await;
            return;
        }
    };
    if !allowed(hosts, &host, port) {
        let body =
            format!("baton sandbox proxy: {host}:{port} is not on this sandbox's allow-list\n");
        let reply = format!(
            "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let why = Some("not on the allow-list".into());
        refuse(
            &mut conn,
            log,
            attempt(&host, port, &method, false, why),
            &reply,
        )
        .await;
        return;
    }
    let mut upstream = match TcpStream::connect((host.as_str(), port)).await {
        Ok(s) => s,
        Err(e) => {
            let why = Some(format!("connect failed: {e}"));
            let reply = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n";
            refuse(
                &mut conn,
                log,
                attempt(&host, port, &method, true, why),
                reply,
            )
            .await;
            return;
        }
    };
    record(log, attempt(&host, port, &method, true, None));
    let ok = match rewritten {
        None => conn
            .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
            .await
            .is_ok(),
        Some(h) => upstream.write_all(h.as_bytes()).await.is_ok(),
    };
    if ok && body_start < head.len() && upstream.write_all(&head[body_start..]).await.is_err() {
        return;
    }
    if ok {
        let _ = tokio::io::copy_bidirectional(&mut conn, &mut upstream).await;
    }
}

/// Reads a request head (up to 16 KiB); returns the bytes read and where the body starts.
async fn read_head(conn: &mut UnixStream) -> Option<(Vec<u8>, usize)> {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return None,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if let Some(i) = head.windows(4).position(|w| w == b"\r\n\r\n") {
            return Some((head, i + 4));
        }
        if head.len() > 16 << 10 {
            let _ = conn
                .write_all(
                    b"HTTP/1.1 431 Request Header Fields Too Large\r\nConnection: close\r\n\r\n",
                )
                .await;
            return None;
        }
    }
}

fn attempt(
    host: &str,
    port: u16,
    method: &str,
    allowed: bool,
    detail: Option<String>,
) -> NetAttempt {
    NetAttempt {
        host: host.to_string(),
        port,
        method: method.to_string(),
        allowed,
        detail,
        at_ms: now_ms(),
    }
}

/// Logs a refused attempt and answers it.
async fn refuse(
    conn: &mut UnixStream,
    log: &Mutex<Vec<NetAttempt>>,
    attempt: NetAttempt,
    reply: &str,
) {
    record(log, attempt);
    let _ = conn.write_all(reply.as_bytes()).await;
}

/// The variables that point HTTP clients inside at the forwarder (`allow:` mode).
pub(crate) fn env_vars() -> Vec<(String, String)> {
    let url = format!("http://127.0.0.1:{}", crate::linux::PROXY_PORT);
    [
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "http_proxy",
        "https_proxy",
        "ALL_PROXY",
    ]
    .into_iter()
    .map(|k| (k.to_string(), url.clone()))
    .collect()
}

/// Passes one accepted connection to the proxy's unix socket, both ways, on threads.
fn forward_one(tcp: std::net::TcpStream, sock: PathBuf) {
    std::thread::spawn(move || {
        let Ok(unix) = std::os::unix::net::UnixStream::connect(&sock) else {
            return;
        };
        let (Ok(mut t2), Ok(mut u2)) = (tcp.try_clone(), unix.try_clone()) else {
            return;
        };
        let (mut t1, mut u1) = (tcp, unix);
        let up = std::thread::spawn(move || {
            let _ = std::io::copy(&mut t1, &mut u1);
            let _ = u1.shutdown(std::net::Shutdown::Write);
        });
        let _ = std::io::copy(&mut u2, &mut t2);
        let _ = t2.shutdown(std::net::Shutdown::Write);
        let _ = up.join();
    });
}

/// The OCI tiers' forwarder (a thread of Baton's in the container's network namespace):
/// forwards connections to the proxy's socket until `stop` is set (checked every 50 ms).
pub(crate) fn forward_until(
    listener: &std::net::TcpListener,
    sock: &Path,
    stop: &std::sync::atomic::AtomicBool,
) {
    use std::os::fd::AsRawFd;
    while !stop.load(std::sync::atomic::Ordering::SeqCst) {
        let mut pfd = libc::pollfd {
            fd: listener.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let n = unsafe { libc::poll(&mut pfd, 1, 50) };
        if n > 0
            && let Ok((tcp, _)) = listener.accept()
        {
            forward_one(tcp, sock.to_path_buf());
        }
    }
}

/// The in-sandbox forwarder (runs in the forked process D): TCP on loopback to the proxy's
/// unix socket. Never returns.
pub(crate) fn forward_loop(listener: std::net::TcpListener, sock: &Path) -> ! {
    for conn in listener.incoming() {
        let Ok(tcp) = conn else { continue };
        forward_one(tcp, sock.to_path_buf());
    }
    // SAFETY: ends the forked forwarder process.
    unsafe { libc::_exit(0) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn allow_list_matching() {
        let l = vec![
            "example.org".to_string(),
            "*.pkg.example".to_string(),
            "127.0.0.1:8080".to_string(),
        ];
        assert!(allowed(&l, "example.org", 443));
        assert!(allowed(&l, "EXAMPLE.org.", 80));
        assert!(!allowed(&l, "example.org", 22));
        assert!(!allowed(&l, "evil-example.org", 443));
        assert!(allowed(&l, "a.pkg.example", 443));
        assert!(!allowed(&l, "pkg.example", 443));
        assert!(allowed(&l, "127.0.0.1", 8080));
        assert!(!allowed(&l, "127.0.0.1", 80));
    }

    #[test]
    fn heads_are_parsed_and_rewritten() {
        let (m, h, p, r) =
            parse_head("CONNECT example.org:443 HTTP/1.1\r\nHost: example.org\r\n\r\n").unwrap();
        assert_eq!(
            (m.as_str(), h.as_str(), p, r),
            ("CONNECT", "example.org", 443, None)
        );
        let (_, h, p, r) = parse_head(
            "GET http://a.example:8080/x?y HTTP/1.1\r\nHost: a\r\nProxy-Authorization: z\r\n\r\n",
        )
        .unwrap();
        assert_eq!((h.as_str(), p), ("a.example", 8080));
        assert_eq!(r.unwrap(), "GET /x?y HTTP/1.1\r\nHost: a\r\n\r\n");
        assert!(parse_head("GET /relative HTTP/1.1\r\n\r\n").is_err());
    }
}
