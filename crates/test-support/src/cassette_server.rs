//! A fake HTTP server on loopback that replays recorded exchanges ("cassettes") to the model
//! adapters, records what they sent so tests can check the request bodies, and injects faults:
//! delays, connections dropped in the middle of a stream, malformed chunks.
//!
//! A cassette is one JSON file, one exchange:
//!
//! ```json
//! {
//!   "description": "what this exchange shows",
//!   "request": {
//!     "method": "POST", "path": "/v1/chat/completions",
//!     "headers": { "authorization": "Bearer test-key" },
//!     "absent_headers": ["openai-organization"],
//!     "body": { "model": "gpt-4o-mini", "...": "..." }
//!   },
//!   "response": {
//!     "status": 200,
//!     "headers": { "content-type": "text/event-stream" },
//!     "chunks": ["data: {...}\n\n", "data: [DONE]\n\n"]
//!   },
//!   "faults": { "chunk_delay_ms": 0, "drop_after_chunks": 2 }
//! }
//! ```
//!
//! `response.body` (a JSON value, or a string sent as it is) is used instead of `chunks` for a
//! whole body. Streamed chunks go out one HTTP chunk each (`transfer-encoding: chunked`).
//! Only the loopback interface is ever bound.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

/// One recorded exchange.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Cassette {
    #[serde(default)]
    pub description: String,
    pub request: ExpectedRequest,
    pub response: RecordedResponse,
    #[serde(default)]
    pub faults: Faults,
}

/// What the client must send.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExpectedRequest {
    #[serde(default = "post")]
    pub method: String,
    pub path: String,
    /// Headers that must be present with these values (names in any case).
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Headers that must not be sent.
    #[serde(default)]
    pub absent_headers: Vec<String>,
    /// The JSON body, compared as JSON (key order does not matter); `None`: not checked.
    #[serde(default)]
    pub body: Option<Value>,
}

fn post() -> String {
    "POST".into()
}

/// What the server answers.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RecordedResponse {
    #[serde(default = "ok")]
    pub status: u16,
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// A whole body: a string is sent as it is, any other value as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// A streamed body, one HTTP chunk per entry.
    #[serde(default)]
    pub chunks: Vec<String>,
}

impl Default for RecordedResponse {
    fn default() -> Self {
        Self {
            status: 200,
            headers: BTreeMap::new(),
            body: None,
            chunks: Vec::new(),
        }
    }
}

fn ok() -> u16 {
    200
}

/// Faults to inject into a response.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Faults {
    /// Wait before sending the status line and headers.
    #[serde(default)]
    pub delay_headers_ms: u64,
    /// Wait before each streamed chunk.
    #[serde(default)]
    pub chunk_delay_ms: u64,
    /// Wait before ending a streamed body (its last, empty chunk).
    #[serde(default)]
    pub delay_end_ms: u64,
    /// Close the connection after this many chunks, without ending the body.
    #[serde(default)]
    pub drop_after_chunks: Option<usize>,
    /// Send the streamed body cut into pieces of this many bytes instead of one piece per
    /// chunk (applied after `replace_chunk`; `drop_after_chunks` then counts pieces).
    #[serde(default)]
    pub rechunk_bytes: Option<usize>,
    /// Replace chunk `index` with these bytes (as text).
    #[serde(default)]
    pub replace_chunk: Option<(usize, String)>,
}

/// A request as the server received it.
#[derive(Clone, Debug, PartialEq)]
pub struct ReceivedRequest {
    pub method: String,
    pub path: String,
    /// Header names lower-cased.
    pub headers: BTreeMap<String, String>,
    pub body: Vec<u8>,
}

impl ReceivedRequest {
    /// The body as JSON.
    pub fn json(&self) -> Result<Value, String> {
        serde_json::from_slice(&self.body).map_err(|e| format!("the request body is not JSON: {e}"))
    }
}

/// Reads a cassette file.
pub fn load(path: impl AsRef<Path>) -> Result<Cassette, String> {
    let path = path.as_ref();
    let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    serde_json::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
}

#[derive(Default)]
struct State {
    cassettes: Vec<Cassette>,
    repeat: bool,
    next: usize,
    received: Vec<ReceivedRequest>,
    aborted: usize,
    completed: usize,
    connections: usize,
    faults: Option<Faults>,
}

/// The server. It stops when dropped.
pub struct CassetteServer {
    url: String,
    state: Arc<Mutex<State>>,
    changed: Arc<Notify>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for CassetteServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl CassetteServer {
    /// Serves `cassettes` in order, one per request.
    pub async fn start(cassettes: Vec<Cassette>) -> std::io::Result<Self> {
        Self::spawn(cassettes, false).await
    }

    /// Serves the same cassette to every request (benchmarks).
    pub async fn start_repeating(cassette: Cassette) -> std::io::Result<Self> {
        Self::spawn(vec![cassette], true).await
    }

    /// Loads cassette files (paths relative to `dir`) and serves them in order.
    pub async fn from_files(dir: impl AsRef<Path>, names: &[&str]) -> Result<Self, String> {
        let cassettes = names
            .iter()
            .map(|n| load(dir.as_ref().join(n)))
            .collect::<Result<Vec<_>, _>>()?;
        Self::start(cassettes)
            .await
            .map_err(|e| format!("cannot start the cassette server: {e}"))
    }

    async fn spawn(cassettes: Vec<Cassette>, repeat: bool) -> std::io::Result<Self> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let url = format!("http://{}", listener.local_addr()?);
        let state = Arc::new(Mutex::new(State {
            cassettes,
            repeat,
            ..Default::default()
        }));
        let changed = Arc::new(Notify::new());
        let (s, n) = (state.clone(), changed.clone());
        let task = tokio::spawn(async move {
            while let Ok((sock, _)) = listener.accept().await {
                let _ = sock.set_nodelay(true);
                lock(&s).connections += 1;
                tokio::spawn(serve(sock, s.clone(), n.clone()));
            }
        });
        Ok(Self {
            url,
            state,
            changed,
            task,
        })
    }

    /// Faults applied to every response from now on, over the cassettes' own.
    pub fn set_faults(&self, faults: Faults) {
        lock(&self.state).faults = Some(faults);
    }

    /// `http://127.0.0.1:<port>`.
    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn requests(&self) -> Vec<ReceivedRequest> {
        lock(&self.state).received.clone()
    }

    /// Responses whose client hung up before the end.
    pub fn aborted(&self) -> usize {
        lock(&self.state).aborted
    }

    /// Responses sent to their end.
    pub fn completed(&self) -> usize {
        lock(&self.state).completed
    }

    /// Connections accepted so far (clients reuse one for several requests when they can).
    pub fn connections(&self) -> usize {
        lock(&self.state).connections
    }

    /// Waits until `n` responses were cut off by their client, or `within` passes.
    pub async fn wait_aborted(&self, n: usize, within: Duration) -> bool {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let notified = self.changed.notified();
            if self.aborted() >= n {
                return true;
            }
            if tokio::time::timeout_at(deadline, notified).await.is_err() {
                return self.aborted() >= n;
            }
        }
    }

    /// Checks that every cassette was requested once, in order, and that each request matched
    /// its cassette: method, path, headers and JSON body.
    pub fn verify(&self) -> Result<(), String> {
        let st = lock(&self.state);
        let mut problems = Vec::new();
        if !st.repeat && st.received.len() != st.cassettes.len() {
            problems.push(format!(
                "{} cassette(s), {} request(s) received",
                st.cassettes.len(),
                st.received.len()
            ));
        }
        for (i, got) in st.received.iter().enumerate() {
            let Some(c) = (if st.repeat {
                st.cassettes.first()
            } else {
                st.cassettes.get(i)
            }) else {
                break;
            };
            if let Err(p) = check_request(&c.request, got) {
                problems.push(format!("request {i} ({}): {p}", c.description));
            }
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(problems.join("\n"))
        }
    }
}

/// Compares a received request with what a cassette expects.
pub fn check_request(want: &ExpectedRequest, got: &ReceivedRequest) -> Result<(), String> {
    let mut p = Vec::new();
    if !want.method.eq_ignore_ascii_case(&got.method) {
        p.push(format!("method {} instead of {}", got.method, want.method));
    }
    if want.path != got.path {
        p.push(format!("path {} instead of {}", got.path, want.path));
    }
    for (k, v) in &want.headers {
        match got.headers.get(&k.to_ascii_lowercase()) {
            Some(g) if g == v => {}
            Some(g) => p.push(format!("header {k}: '{g}' instead of '{v}'")),
            None => p.push(format!("header {k} missing")),
        }
    }
    for k in &want.absent_headers {
        if got.headers.contains_key(&k.to_ascii_lowercase()) {
            p.push(format!("header {k} sent but must not be"));
        }
    }
    if let Some(body) = &want.body {
        match got.json() {
            Ok(g) if &g == body => {}
            Ok(g) => p.push(format!(
                "body differs {}\n--- expected\n{}\n--- sent\n{}",
                first_difference(body, &g, "").unwrap_or_default(),
                serde_json::to_string_pretty(body).unwrap_or_default(),
                serde_json::to_string_pretty(&g).unwrap_or_default()
            )),
            Err(e) => p.push(e),
        }
    }
    if p.is_empty() {
        Ok(())
    } else {
        Err(p.join("; "))
    }
}

/// Where two JSON values first differ, as a JSON pointer with both sides.
fn first_difference(want: &Value, got: &Value, at: &str) -> Option<String> {
    match (want, got) {
        (Value::Object(w), Value::Object(g)) => {
            for (k, wv) in w {
                let here = format!("{at}/{k}");
                match g.get(k) {
                    Some(gv) => {
                        if let Some(d) = first_difference(wv, gv, &here) {
                            return Some(d);
                        }
                    }
                    None => return Some(format!("at {here}: missing from the request")),
                }
            }
            g.keys()
                .find(|k| !w.contains_key(*k))
                .map(|k| format!("at {at}/{k}: sent but not expected"))
        }
        (Value::Array(w), Value::Array(g)) => {
            for (i, (wv, gv)) in w.iter().zip(g).enumerate() {
                if let Some(d) = first_difference(wv, gv, &format!("{at}/{i}")) {
                    return Some(d);
                }
            }
            (w.len() != g.len())
                .then(|| format!("at {at}: {} items expected, {} sent", w.len(), g.len()))
        }
        (w, g) if w == g => None,
        (w, g) => Some(format!(
            "at {}: expected {w}, sent {g}",
            if at.is_empty() { "/" } else { at }
        )),
    }
}

async fn read_request(r: &mut BufReader<TcpStream>) -> std::io::Result<Option<ReceivedRequest>> {
    let mut line = String::new();
    if r.read_line(&mut line).await? == 0 {
        return Ok(None);
    }
    let mut parts = line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut headers = BTreeMap::new();
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).await? == 0 {
            return Ok(None);
        }
        let h = h.trim_end();
        if h.is_empty() {
            break;
        }
        if let Some((k, v)) = h.split_once(':') {
            headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_string());
        }
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = vec![0; len];
    r.read_exact(&mut body).await?;
    Ok(Some(ReceivedRequest {
        method,
        path,
        headers,
        body,
    }))
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        401 => "Unauthorized",
        403 => "Forbidden",
        404 => "Not Found",
        413 => "Payload Too Large",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        529 => "Overloaded",
        _ => "Status",
    }
}

enum Outcome {
    Completed,
    Dropped,
    Aborted,
}

async fn respond(w: &mut BufReader<TcpStream>, c: &Cassette, faults: &Faults) -> Outcome {
    let sock = w.get_mut();
    if faults.delay_headers_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_headers_ms)).await;
    }
    let r = &c.response;
    let mut head = format!("HTTP/1.1 {} {}\r\n", r.status, reason(r.status));
    for (k, v) in &r.headers {
        head.push_str(&format!("{k}: {v}\r\n"));
    }
    let streamed = r.body.is_none();
    let body = match &r.body {
        Some(Value::String(s)) => s.clone().into_bytes(),
        Some(v) => v.to_string().into_bytes(),
        None => Vec::new(),
    };
    if streamed {
        head.push_str("transfer-encoding: chunked\r\n\r\n");
    } else {
        head.push_str(&format!("content-length: {}\r\n\r\n", body.len()));
    }
    if sock.write_all(head.as_bytes()).await.is_err() {
        return Outcome::Aborted;
    }
    if !streamed {
        if faults.drop_after_chunks.is_some() {
            let half = &body[..body.len() / 2];
            let _ = sock.write_all(half).await;
            let _ = sock.shutdown().await;
            return Outcome::Dropped;
        }
        return match sock.write_all(&body).await {
            Ok(()) => Outcome::Completed,
            Err(_) => Outcome::Aborted,
        };
    }
    let chunks: Vec<Vec<u8>> = {
        let replaced = r
            .chunks
            .iter()
            .enumerate()
            .map(|(i, c)| match &faults.replace_chunk {
                Some((n, with)) if *n == i => with.as_bytes().to_vec(),
                _ => c.as_bytes().to_vec(),
            });
        match faults.rechunk_bytes.filter(|n| *n > 0) {
            // The same bytes cut at other places, as networks and proxies do.
            Some(n) => replaced
                .flatten()
                .collect::<Vec<u8>>()
                .chunks(n)
                .map(<[u8]>::to_vec)
                .collect(),
            None => replaced.collect(),
        }
    };
    for (i, data) in chunks.iter().enumerate() {
        if faults.drop_after_chunks == Some(i) {
            let _ = sock.flush().await;
            let _ = sock.shutdown().await;
            return Outcome::Dropped;
        }
        if faults.chunk_delay_ms > 0 {
            tokio::time::sleep(Duration::from_millis(faults.chunk_delay_ms)).await;
        }
        let mut frame = format!("{:x}\r\n", data.len()).into_bytes();
        frame.extend_from_slice(data);
        frame.extend_from_slice(b"\r\n");
        if sock.write_all(&frame).await.is_err() {
            return Outcome::Aborted;
        }
    }
    if faults.drop_after_chunks.is_some_and(|n| n >= chunks.len()) {
        let _ = sock.shutdown().await;
        return Outcome::Dropped;
    }
    if faults.delay_end_ms > 0 {
        tokio::time::sleep(Duration::from_millis(faults.delay_end_ms)).await;
    }
    match sock.write_all(b"0\r\n\r\n").await {
        Ok(()) => Outcome::Completed,
        Err(_) => Outcome::Aborted,
    }
}

async fn serve(sock: TcpStream, state: Arc<Mutex<State>>, changed: Arc<Notify>) {
    let mut r = BufReader::new(sock);
    // Keep-alive: one connection may carry several exchanges.
    while let Ok(Some(req)) = read_request(&mut r).await {
        let picked = {
            let mut st = lock(&state);
            st.received.push(req);
            let i = st.next;
            st.next += 1;
            let c = if st.repeat {
                st.cassettes.first().cloned()
            } else {
                st.cassettes.get(i).cloned()
            };
            c.map(|c| {
                let f = st.faults.clone().unwrap_or_else(|| c.faults.clone());
                (c, f)
            })
        };
        let (cassette, faults) = picked.unwrap_or_else(|| {
            let c = Cassette {
                response: RecordedResponse {
                    status: 599,
                    body: Some(serde_json::json!({"error": {"message": "cassette server: no cassette left for this request"}})),
                    ..Default::default()
                },
                ..Default::default()
            };
            (c, Faults::default())
        });
        let outcome = respond(&mut r, &cassette, &faults).await;
        {
            let mut st = lock(&state);
            match outcome {
                Outcome::Completed => st.completed += 1,
                Outcome::Aborted => st.aborted += 1,
                Outcome::Dropped => {}
            }
        }
        changed.notify_waiters();
        if !matches!(outcome, Outcome::Completed) {
            return;
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn names_the_first_difference() {
        let want = json!({"a": [1, {"b": true}], "c": "x"});
        assert_eq!(first_difference(&want, &want, ""), None);
        let got = json!({"a": [1, {"b": false}], "c": "x"});
        assert_eq!(
            first_difference(&want, &got, "").as_deref(),
            Some("at /a/1/b: expected true, sent false")
        );
        let got = json!({"a": [1], "c": "x", "d": 1});
        assert_eq!(
            first_difference(&want, &got, "").as_deref(),
            Some("at /a: 2 items expected, 1 sent")
        );
        let got = json!({"a": [1, {"b": true}], "c": "x", "d": 1});
        assert_eq!(
            first_difference(&want, &got, "").as_deref(),
            Some("at /d: sent but not expected")
        );
    }

    #[test]
    fn checks_headers_and_body() {
        let want = ExpectedRequest {
            method: "POST".into(),
            path: "/v1/x".into(),
            headers: BTreeMap::from([("Authorization".into(), "Bearer k".into())]),
            absent_headers: vec!["x-api-key".into()],
            body: Some(json!({"a": 1})),
        };
        let mut got = ReceivedRequest {
            method: "POST".into(),
            path: "/v1/x".into(),
            headers: BTreeMap::from([("authorization".into(), "Bearer k".into())]),
            body: br#"{"a":1}"#.to_vec(),
        };
        assert_eq!(check_request(&want, &got), Ok(()));
        got.headers.insert("x-api-key".into(), "k".into());
        got.body = br#"{"a":2}"#.to_vec();
        let err = check_request(&want, &got).unwrap_err();
        assert!(
            err.contains("x-api-key sent") && err.contains("at /a: expected 1, sent 2"),
            "{err}"
        );
    }
}
