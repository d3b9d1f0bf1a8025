//! The allow-list network mode: an HTTP(S) proxy Baton runs for one sandbox, reached from
//! inside through a unix socket bound into the sandbox (and a small TCP forwarder on
//! 127.0.0.1:3128 in the sandbox's own network namespace). It serves `CONNECT host:port` and
//! absolute-URI HTTP requests, refuses every host not on the list, and logs every attempt.
//!
//! Credentials (the policy's `credentials:`): for a plain `http://` request to a credentialed
//! host the proxy sets the credential's header (dropping any the sandbox sent under that name)
//! and forwards the request itself, over TLS unless the credential says `upstream: http`. The
//! secret is read from Baton's environment when the proxy starts and lives only here: a
//! `CONNECT` to such a host is refused (a tunnel cannot carry the header), and the log, errors
//! and [`NetAttempt`] name the variable, never the value.

#![allow(unsafe_code)]

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixListener, UnixStream};
use tokio::task::JoinHandle;
use tokio_rustls::rustls;

use crate::Error;
use crate::policy::{Credential, Upstream};

/// One connection attempt through the proxy.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct NetAttempt {
    pub host: String,
    pub port: u16,
    pub method: String,
    pub allowed: bool,
    /// Why it was refused or failed, when it was.
    pub detail: Option<String>,
    /// The environment variable whose credential the proxy added (or would have, for a
    /// refused tunnel) to this request: its name, never its value.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub credential: Option<String>,
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

/// Every host a policy's sandbox may reach through the proxy: its `allow:` list and its
/// credentials' hosts (as written: `host`, `host:port`, `*.domain`).
pub fn policy_hosts(policy: &crate::Policy) -> Vec<String> {
    let mut out = match &policy.net {
        crate::NetMode::Allow(hosts) => hosts.clone(),
        _ => Vec::new(),
    };
    for c in &policy.credentials {
        if !out.contains(&c.host) {
            out.push(c.host.clone());
        }
    }
    out
}

/// A header value read from Baton's environment: never printed.
struct Secret(String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("[secret]")
    }
}

/// A credential with its value, as the proxy uses it.
#[derive(Debug)]
struct Armed {
    credential: Credential,
    value: Secret,
}

/// What one proxy enforces.
struct Rules {
    hosts: Vec<String>,
    credentials: Vec<Armed>,
    /// The TLS client for `upstream: https` credentials (built only when one needs it).
    tls: Option<tokio_rustls::TlsConnector>,
}

impl Rules {
    fn credential_for(&self, host: &str, port: u16) -> Option<&Armed> {
        self.credentials
            .iter()
            .find(|a| a.credential.applies_to(host, port))
    }
}

/// The TLS client: the public CAs built into Baton (`roots` replaces them in tests).
fn tls_connector(
    roots: Option<rustls::RootCertStore>,
) -> Result<tokio_rustls::TlsConnector, Error> {
    let roots = roots.unwrap_or_else(|| rustls::RootCertStore {
        roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
    });
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .map_err(|e| Error::Unenforceable(format!("cannot set up TLS for credentialed hosts: {e}")))?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(config)))
}

/// A running proxy for one sandbox.
pub struct Proxy {
    dir: PathBuf,
    sock: PathBuf,
    log: Arc<Mutex<Vec<NetAttempt>>>,
    task: JoinHandle<()>,
}

impl Proxy {
    /// Starts the proxy for `hosts`, adding `credentials` (each value read from Baton's
    /// environment now: a missing one is an error naming its variable, before anything runs).
    pub async fn start(hosts: Vec<String>, credentials: &[Credential]) -> Result<Proxy, Error> {
        let credentials = credentials
            .iter()
            .map(|c| {
                Ok(Armed {
                    credential: c.clone(),
                    value: Secret(c.resolve()?),
                })
            })
            .collect::<Result<Vec<_>, Error>>()?;
        Proxy::start_armed(hosts, credentials, None).await
    }

    /// `start` with the credentials' values given (`roots`: the TLS roots, tests only).
    async fn start_armed(
        hosts: Vec<String>,
        credentials: Vec<Armed>,
        roots: Option<rustls::RootCertStore>,
    ) -> Result<Proxy, Error> {
        use std::os::unix::fs::PermissionsExt;
        let tls = if credentials
            .iter()
            .any(|a| a.credential.upstream == Upstream::Https)
        {
            Some(tls_connector(roots)?)
        } else {
            None
        };
        let rules = Arc::new(Rules {
            hosts,
            credentials,
            tls,
        });
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
        let task_log = log.clone();
        let task = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let rules = rules.clone();
                let log = task_log.clone();
                tokio::spawn(async move {
                    handle(conn, &rules, &log).await;
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
    tracing::info!(host = %a.host, port = a.port, method = %a.method, allowed = a.allowed, detail = ?a.detail, credential = ?a.credential, "sandbox network attempt");
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

async fn handle(mut conn: UnixStream, rules: &Rules, log: &Mutex<Vec<NetAttempt>>) {
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
    if !allowed(&rules.hosts, &host, port) {
        let body =
            format!("baton sandbox proxy: {host}:{port} is not on this sandbox's allow-list\n");
        let why = Some("not on the allow-list".into());
        refuse(
            &mut conn,
            log,
            attempt(&host, port, &method, false, why),
            &forbidden(&body),
        )
        .await;
        return;
    }
    let body = &head[body_start..];
    let Some(armed) = rules.credential_for(&host, port) else {
        // No credential: a tunnel, or the request as sent (less its proxy headers).
        let Some(mut upstream) = connect(&mut conn, log, &host, port, &method, None).await else {
            return;
        };
        record(log, attempt(&host, port, &method, true, None));
        let first = match &rewritten {
            None => {
                if conn
                    .write_all(b"HTTP/1.1 200 Connection established\r\n\r\n")
                    .await
                    .is_err()
                {
                    return;
                }
                Vec::new()
            }
            Some(h) => h.as_bytes().to_vec(),
        };
        pipe(conn, &mut upstream, &first, body).await;
        return;
    };
    let c = &armed.credential;
    let var = Some(c.value_env.clone());
    let Some(rewritten) = rewritten else {
        // The URL to use instead: the port kept unless it is a default one.
        let authority = if port == 80 || port == 443 {
            host.clone()
        } else {
            format!("{host}:{port}")
        };
        let body = format!(
            "baton sandbox proxy: {host}:{port} has a credential that Baton adds to each request, which a tunnel (CONNECT, an https:// URL) cannot carry: call http://{authority}/... through this proxy instead, and Baton reaches the host over {} with the credential\n",
            c.upstream.as_str()
        );
        let mut a = attempt(
            &host,
            port,
            &method,
            false,
            Some(
                "a credentialed host is reached with http:// through the proxy, not a tunnel"
                    .into(),
            ),
        );
        a.credential = var;
        refuse(&mut conn, log, a, &forbidden(&body)).await;
        return;
    };
    let first = with_credential(&rewritten, &c.header, &armed.value.0);
    let up_port = match c.upstream {
        Upstream::Https if port == 80 => 443,
        _ => port,
    };
    let Some(tcp) = connect(&mut conn, log, &host, up_port, &method, var.clone()).await else {
        return;
    };
    let mut ok = attempt(&host, port, &method, true, None);
    ok.credential = var.clone();
    match (c.upstream, &rules.tls) {
        (Upstream::Http, _) => {
            record(log, ok);
            let mut tcp = tcp;
            pipe(conn, &mut tcp, first.as_bytes(), body).await;
        }
        (Upstream::Https, Some(tls)) => {
            let name = match rustls::pki_types::ServerName::try_from(host.clone()) {
                Ok(n) => n,
                Err(e) => {
                    let mut a = attempt(
                        &host,
                        port,
                        &method,
                        true,
                        Some(format!("bad TLS server name: {e}")),
                    );
                    a.credential = var;
                    refuse(&mut conn, log, a, BAD_GATEWAY).await;
                    return;
                }
            };
            match tls.connect(name, tcp).await {
                Ok(mut stream) => {
                    record(log, ok);
                    pipe(conn, &mut stream, first.as_bytes(), body).await;
                }
                Err(e) => {
                    let why = format!("TLS to {host}:{up_port} failed: {e}");
                    let mut a = attempt(&host, port, &method, true, Some(why));
                    a.credential = var;
                    refuse(&mut conn, log, a, BAD_GATEWAY).await;
                }
            }
        }
        (Upstream::Https, None) => {
            // `start` builds the TLS client whenever an https credential exists.
            let mut a = attempt(&host, port, &method, true, Some("no TLS client".into()));
            a.credential = var;
            refuse(&mut conn, log, a, BAD_GATEWAY).await;
        }
    }
}

const BAD_GATEWAY: &str = "HTTP/1.1 502 Bad Gateway\r\nConnection: close\r\n\r\n";

fn forbidden(body: &str) -> String {
    format!(
        "HTTP/1.1 403 Forbidden\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
}

/// Connects to the upstream host, or answers 502 and logs why.
async fn connect(
    conn: &mut UnixStream,
    log: &Mutex<Vec<NetAttempt>>,
    host: &str,
    port: u16,
    method: &str,
    credential: Option<String>,
) -> Option<TcpStream> {
    match TcpStream::connect((host, port)).await {
        Ok(s) => Some(s),
        Err(e) => {
            let mut a = attempt(
                host,
                port,
                method,
                true,
                Some(format!("connect failed: {e}")),
            );
            a.credential = credential;
            refuse(conn, log, a, BAD_GATEWAY).await;
            None
        }
    }
}

/// Sends `first` and the body bytes already read upstream, then copies both ways.
async fn pipe<S: AsyncRead + AsyncWrite + Unpin>(
    mut conn: UnixStream,
    upstream: &mut S,
    first: &[u8],
    body: &[u8],
) {
    if upstream.write_all(first).await.is_err() || upstream.write_all(body).await.is_err() {
        return;
    }
    let _ = tokio::io::copy_bidirectional(&mut conn, upstream).await;
}

/// A rewritten request head with `header: value` in place of any header of that name the
/// sandbox sent, and `Connection: close` (one request per connection, so every request that
/// reaches the host through this connection is one the proxy saw).
pub fn with_credential(head: &str, header: &str, value: &str) -> String {
    let mut out = String::with_capacity(head.len() + value.len() + 64);
    for (i, line) in head.split("\r\n").enumerate() {
        if line.is_empty() {
            continue;
        }
        if i > 0 {
            let name = line.split(':').next().unwrap_or_default().trim();
            if name.eq_ignore_ascii_case(header)
                || name.eq_ignore_ascii_case("connection")
                || name.eq_ignore_ascii_case("keep-alive")
            {
                continue;
            }
        }
        out.push_str(line);
        out.push_str("\r\n");
    }
    out.push_str(header);
    out.push_str(": ");
    out.push_str(value);
    out.push_str("\r\nConnection: close\r\n\r\n");
    out
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
        credential: None,
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
mod tests;
