//! The HTTP layer under the adapters: the endpoint and its client, sending a request with
//! timeouts, a failure status turned into an [`Error`] (by `classify`, in its own module and
//! re-exported here), and driving a streamed body through a decoder and a parser into
//! [`Chunk`]s.

use std::collections::VecDeque;
use std::time::Duration;

use bytes::Bytes;
use futures::stream::{self, BoxStream, StreamExt};
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::sse::{LineDecoder, SseDecoder};

pub use crate::classify::{ErrorBody, classify, classify_in_stream, error_parts, retry_after};
use crate::{Chunk, Error};

/// Timeouts of one provider.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// To open the connection.
    pub connect: Duration,
    /// For the response to start, and then between two pieces of a streamed answer.
    pub idle: Duration,
    /// For the whole call, from sending to the last piece; `None`: no limit.
    pub total: Option<Duration>,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self {
            connect: Duration::from_secs(10),
            idle: Duration::from_secs(120),
            total: None,
        }
    }
}

/// Where and how to reach a provider: what every HTTP adapter is built from.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// The provider's name in Baton (`openai`, `groq`...), used in errors and logs.
    pub provider: String,
    pub base_url: String,
    pub api_key: Option<crate::Secret>,
    /// Extra headers sent with every request (values are marked sensitive).
    pub headers: HeaderMap,
    pub timeouts: Timeouts,
    pub prices: crate::pricing::PriceTable,
}

impl Endpoint {
    pub fn new(provider: impl Into<String>, base_url: impl Into<String>) -> Self {
        Self {
            provider: provider.into(),
            base_url: base_url.into(),
            api_key: None,
            headers: HeaderMap::new(),
            timeouts: Timeouts::default(),
            prices: Default::default(),
        }
    }

    pub fn with_api_key(mut self, key: crate::Secret) -> Self {
        self.api_key = Some(key);
        self
    }

    pub fn with_timeouts(mut self, t: Timeouts) -> Self {
        self.timeouts = t;
        self
    }

    pub fn with_prices(mut self, p: crate::pricing::PriceTable) -> Self {
        self.prices = p;
        self
    }

    pub fn with_headers(mut self, h: HeaderMap) -> Self {
        self.headers = h;
        self
    }

    /// The error with the API key blanked out of its text, in case a server echoed it back.
    pub fn scrub(&self, e: Error) -> Error {
        match self.api_key.as_ref().filter(|k| k.expose().len() >= 4) {
            Some(k) => scrub(e, k.expose()),
            None => e,
        }
    }
}

fn scrub(e: Error, secret: &str) -> Error {
    let s = |m: String| {
        if m.contains(secret) {
            m.replace(secret, "***")
        } else {
            m
        }
    };
    match e {
        Error::Auth { provider, message } => Error::Auth {
            provider,
            message: s(message),
        },
        Error::ContextLength { message } => Error::ContextLength {
            message: s(message),
        },
        Error::Transient { provider, message } => Error::Transient {
            provider,
            message: s(message),
        },
        Error::Provider {
            provider,
            status,
            message,
        } => Error::Provider {
            provider,
            status,
            message: s(message),
        },
        Error::InvalidRequest {
            provider,
            status,
            field,
            message,
        } => Error::InvalidRequest {
            provider,
            status,
            field,
            message: s(message),
        },
        Error::UnknownModel { model, reason } => Error::UnknownModel {
            model,
            reason: s(reason),
        },
        Error::InvalidResponse(m) => Error::InvalidResponse(s(m)),
        e => e,
    }
}

/// Builds the HTTP client of a provider. Loopback endpoints never go through a proxy.
pub fn client(base_url: &str, timeouts: &Timeouts) -> Result<reqwest::Client, Error> {
    let mut b = reqwest::Client::builder()
        .connect_timeout(timeouts.connect)
        .tcp_nodelay(true)
        .user_agent(concat!("baton/", env!("CARGO_PKG_VERSION")));
    if is_loopback(base_url) {
        b = b.no_proxy();
    }
    b.build()
        .map_err(|e| Error::Config(format!("cannot build the HTTP client: {e}")))
}

fn is_loopback(url: &str) -> bool {
    let Ok(u) = reqwest::Url::parse(url) else {
        return false;
    };
    match u.host_str() {
        Some("localhost") => true,
        Some(h) => h
            .trim_start_matches('[')
            .trim_end_matches(']')
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback()),
        None => false,
    }
}

/// Joins a base URL and a path with exactly one `/` between them.
pub fn join(base_url: &str, path: &str) -> String {
    format!(
        "{}/{}",
        base_url.trim_end_matches('/'),
        path.trim_start_matches('/')
    )
}

/// Turns configured extra headers into a header map, rejecting invalid names or values.
pub fn header_map<'a>(
    provider: &str,
    headers: impl IntoIterator<Item = (&'a String, &'a String)>,
) -> Result<HeaderMap, Error> {
    let mut map = HeaderMap::new();
    for (k, v) in headers {
        let name = HeaderName::from_bytes(k.as_bytes()).map_err(|e| {
            Error::Config(format!(
                "provider {provider}: header name '{k}' is invalid: {e}"
            ))
        })?;
        let mut value = HeaderValue::from_str(v).map_err(|e| {
            Error::Config(format!(
                "provider {provider}: the value of header '{k}' is invalid: {e}"
            ))
        })?;
        // Extra headers often carry credentials: keep them out of reqwest's Debug output.
        value.set_sensitive(true);
        map.insert(name, value);
    }
    Ok(map)
}

/// A header value holding a credential, marked sensitive.
pub fn secret_header(value: &str) -> Result<HeaderValue, Error> {
    let mut v = HeaderValue::from_str(value).map_err(|_| {
        Error::Config("the API key holds characters that cannot be sent in a header".into())
    })?;
    v.set_sensitive(true);
    Ok(v)
}

/// Sends a JSON POST and returns the response once its status is a success; a failure status
/// is read and classified.
pub async fn post_json(
    provider: &str,
    client: &reqwest::Client,
    url: &str,
    headers: HeaderMap,
    body: &Value,
    timeouts: &Timeouts,
) -> Result<reqwest::Response, Error> {
    let bytes = serde_json::to_vec(body)
        .map_err(|e| Error::InvalidResponse(format!("cannot encode the request: {e}")))?;
    let send = client
        .post(url)
        .headers(headers)
        .header(reqwest::header::CONTENT_TYPE, "application/json")
        .body(bytes)
        .send();
    let wait = timeouts
        .total
        .map_or(timeouts.idle, |t| t.min(timeouts.idle));
    let resp = match tokio::time::timeout(wait, send).await {
        Err(_) => return Err(Error::Timeout(wait)),
        Ok(Err(e)) => return Err(transport_error(provider, url, e)),
        Ok(Ok(r)) => r,
    };
    let status = resp.status();
    tracing::debug!(
        provider,
        url = redact_url(url),
        status = status.as_u16(),
        "model request answered"
    );
    if status.is_success() {
        return Ok(resp);
    }
    let headers = resp.headers().clone();
    let body = tokio::time::timeout(timeouts.idle, read_capped(resp, 256 << 10))
        .await
        .unwrap_or_default();
    Err(classify(provider, status.as_u16(), &headers, &body))
}

/// A whole answer body, refused when it grows past `cap` bytes.
pub async fn read_limited(
    provider: &str,
    resp: reqwest::Response,
    cap: usize,
) -> Result<Vec<u8>, Error> {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.map_err(|e| Error::Transient {
            provider: provider.to_string(),
            message: format!("the answer broke off: {}", e.without_url()),
        })?;
        if out.len() + chunk.len() > cap {
            return Err(Error::InvalidResponse(format!(
                "{provider}: the answer is larger than {cap} bytes"
            )));
        }
        out.extend_from_slice(&chunk);
    }
    Ok(out)
}

/// The start of a body (an error body is small, but a misbehaving server's may not be); what
/// could be read when the connection fails.
async fn read_capped(resp: reqwest::Response, cap: usize) -> Vec<u8> {
    let mut body = resp.bytes_stream();
    let mut out = Vec::new();
    while let Some(Ok(b)) = body.next().await {
        let room = cap.saturating_sub(out.len());
        out.extend_from_slice(&b[..b.len().min(room)]);
        if out.len() >= cap {
            break;
        }
    }
    out
}

/// A failure to talk to the server at all.
pub fn transport_error(provider: &str, url: &str, e: reqwest::Error) -> Error {
    let e = e.without_url();
    if e.is_timeout() {
        return Error::Transient {
            provider: provider.into(),
            message: format!("timed out talking to the server: {e}"),
        };
    }
    let what = if e.is_connect() {
        "cannot connect to"
    } else {
        "request failed to"
    };
    let mut message = format!("{what} {}: {e}", redact_url(url));
    let mut src = std::error::Error::source(&e);
    while let Some(s) = src {
        message.push_str(&format!(": {s}"));
        src = s.source();
    }
    Error::Transient {
        provider: provider.into(),
        message,
    }
}

/// A URL without its query string (some gateways take keys as query parameters).
fn redact_url(url: &str) -> &str {
    url.split('?').next().unwrap_or(url)
}

/// The start of a long text, for error messages.
pub fn snippet(s: &str) -> String {
    truncate(s, 200)
}

pub(crate) fn truncate(s: &str, n: usize) -> String {
    match s.char_indices().nth(n) {
        Some((i, _)) => format!("{}...", &s[..i]),
        None => s.to_string(),
    }
}

/// A finished tool call as a chunk: the answer itself (its arguments as JSON text) when it
/// calls `output_tool`, the tool that carries structured output; a tool call otherwise.
/// Returns whether it was a tool call.
pub fn call_chunk(
    output_tool: Option<&str>,
    call: crate::ToolCall,
    out: &mut VecDeque<Chunk>,
) -> bool {
    if output_tool == Some(call.name.as_str()) {
        out.push_back(Chunk::Text(call.arguments.to_string()));
        return false;
    }
    out.push_back(Chunk::ToolCall(call));
    true
}

/// Parses one streamed item as `T`; an item that is not one is an invalid response saying what
/// it should have been (`what`: "a chat-completion chunk").
pub fn parse_item<T: serde::de::DeserializeOwned>(
    provider: &str,
    what: &str,
    data: &str,
) -> Result<T, Error> {
    serde_json::from_str(data).map_err(|e| {
        Error::InvalidResponse(format!(
            "{provider}: a streamed item is not {what} ({e}): {}",
            snippet(data)
        ))
    })
}

/// The error an `error` object sent inside a stream stands for.
pub fn stream_error(provider: &str, err: Value) -> Error {
    let body = serde_json::json!({ "error": err }).to_string();
    classify_in_stream(provider, body.as_bytes())
}

/// Turns a decoded stream item into chunks. One parser per response.
pub trait StreamParser: Send + 'static {
    /// One item: an SSE event (`event` is its `event:` field) or one NDJSON line (`event` empty).
    fn item(&mut self, event: &str, data: &str, out: &mut VecDeque<Chunk>) -> Result<(), Error>;
    /// Whether the provider has said the answer is complete (nothing more is read after it).
    fn finished(&self) -> bool;
    /// The body ended: emit what is pending, or fail when the answer was cut short.
    fn end(&mut self, out: &mut VecDeque<Chunk>) -> Result<(), Error>;
}

/// How a streamed body is framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Framing {
    Sse,
    Ndjson,
}

enum Decoder {
    Sse(SseDecoder),
    Lines(LineDecoder),
    /// A server that ignored `stream: true` and sent one JSON document: parsed whole at the end.
    Whole(Vec<u8>),
}

/// Bodies of one JSON document are kept whole up to this size.
const MAX_WHOLE_BODY: usize = 64 << 20;

struct Driver<P> {
    provider: String,
    body: BoxStream<'static, reqwest::Result<Bytes>>,
    decoder: Decoder,
    parser: P,
    out: VecDeque<Chunk>,
    idle: Duration,
    deadline: Option<tokio::time::Instant>,
    total: Option<Duration>,
    /// Bytes of body read so far.
    received: usize,
    done: bool,
}

impl<P: StreamParser> Driver<P> {
    fn decode(&mut self, at_eof: bool) -> Result<(), Error> {
        let bad = |e: crate::sse::DecodeError| Error::InvalidResponse(e.0);
        match &mut self.decoder {
            Decoder::Sse(d) => loop {
                if self.parser.finished() {
                    return Ok(());
                }
                let ev = if at_eof { d.finish() } else { d.next_event() }.map_err(bad)?;
                match ev {
                    Some(ev) => self.parser.item(&ev.event, &ev.data, &mut self.out)?,
                    None => return Ok(()),
                }
            },
            Decoder::Lines(d) => loop {
                if self.parser.finished() {
                    return Ok(());
                }
                match d.next_line(at_eof).map_err(bad)? {
                    Some(line) => self.parser.item("", line, &mut self.out)?,
                    None => return Ok(()),
                }
            },
            Decoder::Whole(buf) if at_eof => {
                let text = std::str::from_utf8(buf).map_err(|e| {
                    Error::InvalidResponse(format!("the body is not valid UTF-8 ({e})"))
                })?;
                if let Some(page) = html_page(text) {
                    return Err(Error::InvalidResponse(format!(
                        "{} answered an HTML page instead of a chat answer ({page}); is base_url the API's URL?",
                        self.provider
                    )));
                }
                self.parser.item("", text, &mut self.out)
            }
            Decoder::Whole(buf) if buf.len() > MAX_WHOLE_BODY => Err(Error::InvalidResponse(
                "the server sent one JSON document of more than 64 MiB instead of a stream".into(),
            )),
            Decoder::Whole(_) => Ok(()),
        }
    }

    /// The answer is complete, but the body's last bytes (the chunked terminator) may still be
    /// on the way. Read them in the background so the connection goes back to the pool instead
    /// of being closed, which saves a new connection (and TLS handshake) on the next call.
    fn release_connection(&mut self) {
        let mut body = std::mem::replace(&mut self.body, stream::empty().boxed());
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            rt.spawn(async move {
                let drain = async { while let Some(Ok(_)) = body.next().await {} };
                let _ = tokio::time::timeout(Duration::from_secs(2), drain).await;
            });
        }
    }

    async fn next(&mut self) -> Option<Result<Chunk, Error>> {
        loop {
            if let Some(c) = self.out.pop_front() {
                return Some(Ok(c));
            }
            if self.done {
                return None;
            }
            if self.parser.finished() {
                self.done = true;
                self.release_connection();
                if let Err(e) = self.parser.end(&mut self.out) {
                    return Some(Err(e));
                }
                continue;
            }
            let wait = match self.deadline {
                Some(d) => self
                    .idle
                    .min(d.saturating_duration_since(tokio::time::Instant::now())),
                None => self.idle,
            };
            let read = match tokio::time::timeout(wait, self.body.next()).await {
                Ok(r) => r,
                Err(_) => {
                    self.done = true;
                    let limit = if wait < self.idle {
                        self.total.unwrap_or(wait)
                    } else {
                        self.idle
                    };
                    return Some(Err(Error::Timeout(limit)));
                }
            };
            let step = match read {
                Some(Ok(bytes)) => {
                    self.received += bytes.len();
                    match &mut self.decoder {
                        Decoder::Sse(d) => d.feed(&bytes),
                        Decoder::Lines(d) => d.feed(&bytes),
                        Decoder::Whole(buf) => buf.extend_from_slice(&bytes),
                    }
                    self.decode(false)
                }
                Some(Err(e)) => Err(Error::Transient {
                    provider: self.provider.clone(),
                    message: format!(
                        "the connection dropped in the middle of the answer: {}",
                        describe(&e)
                    ),
                }),
                None if self.received == 0 => {
                    self.done = true;
                    Err(Error::Transient {
                        provider: self.provider.clone(),
                        message: "the server answered with an empty body".into(),
                    })
                }
                None => {
                    self.done = true;
                    self.decode(true)
                        .and_then(|()| self.parser.end(&mut self.out))
                }
            };
            if let Err(e) = step {
                self.done = true;
                self.out.clear();
                return Some(Err(e));
            }
        }
    }
}

/// When `text` is an HTML page: its title (or its start).
pub(crate) fn html_page(text: &str) -> Option<String> {
    let t = text.trim_start();
    let head = t.get(..t.len().min(15))?.to_ascii_lowercase();
    if !(head.starts_with("<!doctype html") || head.starts_with("<html")) {
        return None;
    }
    let lower = t.to_ascii_lowercase();
    let title = lower
        .find("<title>")
        .map(|i| i + "<title>".len())
        .and_then(|start| {
            let end = start + lower[start..].find("</title>")?;
            t.get(start..end)
        })
        .map(|x| format!("title \"{}\"", x.trim()))
        .unwrap_or_else(|| format!("starting {}", snippet(t)));
    Some(title)
}

fn describe(e: &reqwest::Error) -> String {
    let mut s = e.to_string();
    let mut src = std::error::Error::source(e);
    while let Some(x) = src {
        s.push_str(&format!(": {x}"));
        src = x.source();
    }
    s
}

/// Streams the body of `resp` as chunks. Dropping the stream drops the response, which closes
/// the connection, so the server stops generating.
///
/// `started` is when the request was sent: `total` timeouts count from it.
pub fn drive<P: StreamParser>(
    provider: &str,
    resp: reqwest::Response,
    framing: Framing,
    parser: P,
    timeouts: &Timeouts,
    started: tokio::time::Instant,
) -> BoxStream<'static, Result<Chunk, Error>> {
    // One JSON document (a server that ignored `stream: true`), or a web page where the API
    // was expected: read whole, so the page can be named rather than parsed line by line.
    let content_type = resp
        .headers()
        .get(reqwest::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .trim_start();
    let html = content_type.starts_with("text/html");
    let whole = html || content_type.starts_with("application/json");
    let driver = Driver {
        provider: provider.to_string(),
        body: resp.bytes_stream().boxed(),
        decoder: match framing {
            Framing::Sse if whole => Decoder::Whole(Vec::new()),
            Framing::Sse => Decoder::Sse(SseDecoder::new()),
            Framing::Ndjson if html => Decoder::Whole(Vec::new()),
            Framing::Ndjson => Decoder::Lines(LineDecoder::new()),
        },
        parser,
        out: VecDeque::new(),
        idle: timeouts.idle,
        deadline: timeouts.total.map(|t| started + t),
        total: timeouts.total,
        received: 0,
        done: false,
    };
    stream::unfold(driver, |mut d| async move {
        d.next().await.map(|item| (item, d))
    })
    .boxed()
}

/// An `f32` as the JSON number it was written as (`0.2`, not `0.20000000298023224`).
pub fn number(x: f32) -> Value {
    x.to_string()
        .parse::<f64>()
        .ok()
        .and_then(serde_json::Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Parses a tool call's arguments; an empty string means no arguments.
pub fn parse_arguments(tool: &str, raw: &str) -> Result<Value, Error> {
    if raw.trim().is_empty() {
        return Ok(Value::Object(Default::default()));
    }
    serde_json::from_str(raw).map_err(|e| Error::InvalidToolArguments {
        tool: tool.to_string(),
        message: format!("{e} in {}", truncate(raw, 200)),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn loopback_and_join() {
        assert!(is_loopback("http://127.0.0.1:8080/v1"));
        assert!(is_loopback("http://localhost:11434"));
        assert!(is_loopback("http://[::1]:80"));
        assert!(!is_loopback("https://example.invalid/v1"));
        assert_eq!(
            join("http://h/v1/", "/chat/completions"),
            "http://h/v1/chat/completions"
        );
    }

    #[test]
    fn f32_numbers_stay_short() {
        assert_eq!(number(0.2).to_string(), "0.2");
        assert_eq!(number(1.0).to_string(), "1.0");
        assert_eq!(number(f32::NAN), Value::Null);
    }

    #[test]
    fn arguments() {
        assert_eq!(parse_arguments("t", "").unwrap(), serde_json::json!({}));
        assert_eq!(
            parse_arguments("t", "{\"a\":1}").unwrap(),
            serde_json::json!({"a":1})
        );
        let e = parse_arguments("t", "{\"a\":").unwrap_err();
        assert_eq!(e.kind(), "invalid_tool_arguments");
        assert!(e.to_string().contains("'t'"), "{e}");
    }
}
