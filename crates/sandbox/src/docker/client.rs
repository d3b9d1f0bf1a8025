//! The HTTP/1.1 client to the Docker daemon over its unix socket: one request per
//! connection (`Connection: close`, chunked bodies decoded), async with a timeout or blocking
//! (while the tier opens), the upgraded attach stream and its demultiplexer.

use std::path::Path;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::UnixStream;

use super::API;
use crate::{Capped, Error};

/// A response from the Engine API.
#[derive(Debug)]
pub struct Response {
    pub status: u16,
    pub body: Vec<u8>,
}

pub(crate) fn request_head(method: &str, path: &str, payload: Option<&str>) -> String {
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n");
    match payload {
        Some(p) => req.push_str(&format!(
            "Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{p}",
            p.len()
        )),
        None => req.push_str("Content-Length: 0\r\n\r\n"),
    }
    req
}

/// One HTTP/1.1 request over the socket (`Connection: close`, chunked bodies decoded).
pub async fn request(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    let mut s = UnixStream::connect(sock)
        .await
        .map_err(|e| Error::Runtime(format!("cannot reach Docker at {}: {e}", sock.display())))?;
    let payload = body.map(|b| b.to_string());
    s.write_all(request_head(method, path, payload.as_deref()).as_bytes())
        .await?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw).await?;
    parse_response(&raw)
}

/// How long one API call (other than waiting for the container) may take.
pub const API_TIMEOUT: Duration = Duration::from_secs(60);

/// [`request`] bounded by [`API_TIMEOUT`]: a daemon that stops answering is an error, not a hang.
pub(crate) async fn call(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    call_within(API_TIMEOUT, sock, method, path, body).await
}

pub(crate) async fn call_within(
    limit: Duration,
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
) -> Result<Response, Error> {
    match tokio::time::timeout(limit, request(sock, method, path, body)).await {
        Ok(r) => r,
        Err(_) => Err(Error::Runtime(format!(
            "the Docker daemon at {} did not answer {method} {path} within {} s",
            sock.display(),
            limit.as_secs_f64()
        ))),
    }
}

/// The same request, blocking, with a timeout (used while opening the tier).
pub fn request_blocking(
    sock: &Path,
    method: &str,
    path: &str,
    timeout: Duration,
) -> Result<Response, String> {
    request_blocking_json(sock, method, path, None, timeout)
}

/// A blocking request with an optional JSON body.
pub fn request_blocking_json(
    sock: &Path,
    method: &str,
    path: &str,
    body: Option<&Value>,
    timeout: Duration,
) -> Result<Response, String> {
    use std::io::{Read, Write};
    if !sock.exists() {
        return Err(format!(
            "no Docker daemon: {} does not exist",
            sock.display()
        ));
    }
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| {
        format!(
            "cannot connect to the Docker daemon at {}: {e}",
            sock.display()
        )
    })?;
    let _ = s.set_read_timeout(Some(timeout));
    let _ = s.set_write_timeout(Some(timeout));
    let payload = body.map(|b| b.to_string());
    s.write_all(request_head(method, path, payload.as_deref()).as_bytes())
        .map_err(|e| {
            format!(
                "cannot talk to the Docker daemon at {}: {e}",
                sock.display()
            )
        })?;
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).map_err(|e| {
        format!(
            "the Docker daemon at {} did not answer {path}: {e}",
            sock.display()
        )
    })?;
    parse_response(&buf).map_err(|e| e.to_string())
}

pub fn parse_response(raw: &[u8]) -> Result<Response, Error> {
    let bad = || Error::Runtime("malformed response from the Docker daemon".into());
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or_else(bad)?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(bad)?;
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    let mut body = raw[split + 4..].to_vec();
    if chunked {
        let mut out = Vec::new();
        let mut rest = body.as_slice();
        while let Some(eol) = rest.windows(2).position(|w| w == b"\r\n") {
            let size = usize::from_str_radix(
                String::from_utf8_lossy(&rest[..eol])
                    .trim()
                    .split(';')
                    .next()
                    .unwrap_or(""),
                16,
            )
            .map_err(|_| bad())?;
            rest = &rest[eol + 2..];
            if size == 0 || rest.len() < size {
                break;
            }
            out.extend_from_slice(&rest[..size]);
            rest = rest.get(size + 2..).unwrap_or(&[]);
        }
        body = out;
    }
    Ok(Response { status, body })
}

/// Splits the multiplexed attach stream (8-byte frame headers: stream, 0, 0, 0, size BE u32)
/// as it arrives, in pieces of any size.
#[derive(Debug, Default)]
pub(crate) struct Demux {
    header: Vec<u8>,
    stream: u8,
    left: usize,
}

impl Demux {
    pub fn feed(&mut self, mut data: &[u8], out: &mut Capped, err: &mut Capped) {
        while !data.is_empty() {
            if self.left == 0 {
                let take = (8 - self.header.len()).min(data.len());
                self.header.extend_from_slice(&data[..take]);
                data = &data[take..];
                if self.header.len() == 8 {
                    let h = &self.header;
                    self.stream = h[0];
                    self.left = u32::from_be_bytes([h[4], h[5], h[6], h[7]]) as usize;
                    self.header.clear();
                }
                continue;
            }
            let n = self.left.min(data.len());
            match self.stream {
                2 => err.push(&data[..n]),
                _ => out.push(&data[..n]),
            }
            self.left -= n;
            data = &data[n..];
        }
    }
}

/// Splits a whole multiplexed stream.
#[cfg(test)]
pub(crate) fn demux(raw: &[u8], out: &mut Capped, err: &mut Capped) {
    Demux::default().feed(raw, out, err);
}

/// Checks a daemon answers on the socket (blocking, with a short timeout).
pub fn ping(sock: &Path) -> Result<(), String> {
    match request_blocking(sock, "GET", "/_ping", Duration::from_secs(2))? {
        r if r.status == 200 => Ok(()),
        r => Err(format!(
            "the Docker daemon answered /_ping with HTTP {}",
            r.status
        )),
    }
}

/// The daemon's error message in a response (its JSON `message`, else the body).
pub(crate) fn api_message(r: &Response) -> String {
    serde_json::from_slice::<Value>(&r.body)
        .ok()
        .and_then(|v| v["message"].as_str().map(str::to_string))
        .unwrap_or_else(|| String::from_utf8_lossy(&r.body).trim().to_string())
}

/// Percent-encodes a path segment or query value.
pub(crate) fn enc(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// A 2xx response, or an error naming what failed.
pub(crate) fn check(r: &Response, what: &str) -> Result<(), Error> {
    if (200..300).contains(&r.status) {
        Ok(())
    } else {
        Err(Error::Runtime(format!(
            "Docker {what} failed with HTTP {}: {}",
            r.status,
            api_message(r)
        )))
    }
}

/// Opens the container's attach stream (an upgraded connection); returns the stream and any
/// stream bytes that came with the response head.
pub(crate) async fn attach(
    sock: &Path,
    id: &str,
    stdin: bool,
) -> Result<(UnixStream, Vec<u8>), Error> {
    let mut s = UnixStream::connect(sock)
        .await
        .map_err(|e| Error::Runtime(format!("cannot reach Docker at {}: {e}", sock.display())))?;
    let q = if stdin { "&stdin=1" } else { "" };
    s.write_all(
        format!(
            "POST {API}/containers/{id}/attach?stream=1&stdout=1&stderr=1{q} HTTP/1.1\r\nHost: docker\r\nConnection: Upgrade\r\nUpgrade: tcp\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
    )
    .await?;
    let mut raw = Vec::new();
    let mut buf = [0u8; 4096];
    let split = loop {
        let n = s.read(&mut buf).await?;
        if n == 0 {
            return Err(Error::Runtime(
                "the Docker daemon closed the attach connection".into(),
            ));
        }
        raw.extend_from_slice(&buf[..n]);
        if let Some(p) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break p;
        }
        if raw.len() > 64 << 10 {
            return Err(Error::Runtime(
                "malformed attach response from the Docker daemon".into(),
            ));
        }
    };
    let head = String::from_utf8_lossy(&raw[..split]).into_owned();
    let status: u16 = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    if status != 101 && status != 200 {
        return Err(Error::Runtime(format!(
            "Docker container attach failed: {}",
            head.lines().next().unwrap_or("")
        )));
    }
    Ok((s, raw[split + 4..].to_vec()))
}
