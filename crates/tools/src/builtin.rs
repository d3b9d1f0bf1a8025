//! Built-in tools. What each does when called again (its [`crate::Effects`]): `echo`, `fail`,
//! `sleep` and `state.set` change nothing outside the run; `http.get` and `http.post` send the
//! call's idempotency key as `Idempotency-Key`, so a server that honours it applies a repeat once.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use serde_json::{Value, json};

use crate::{Error, Registry, Tool, ToolContext, ToolSpec};

pub fn register(r: &mut Registry) {
    r.register(Arc::new(Echo));
    r.register(Arc::new(Fail));
    r.register(Arc::new(Sleep));
    r.register(Arc::new(StateSet));
    r.register(Arc::new(Http::get()));
    r.register(Arc::new(Http::post()));
}

/// The spec of a tool that changes nothing outside the run.
fn spec(name: &str, description: &str, parameters: Value) -> ToolSpec {
    ToolSpec::new(name, description, parameters).with_effects(crate::Effects::None)
}

fn invalid(tool: &str, message: impl Into<String>) -> Error {
    Error::InvalidArguments {
        tool: tool.into(),
        message: message.into(),
    }
}

/// `echo`: returns its arguments (`text` alone when that is the only one).
pub struct Echo;

#[async_trait]
impl Tool for Echo {
    fn spec(&self) -> ToolSpec {
        spec(
            "echo",
            "Returns its arguments unchanged (the value of `text` when it is the only argument).",
            json!({"type": "object", "properties": {"text": {"type": "string"}}, "additionalProperties": true}),
        )
    }
    async fn call(&self, args: Value, _: &ToolContext) -> Result<Value, Error> {
        match &args {
            Value::Object(m) if m.len() == 1 && m.contains_key("text") => Ok(m["text"].clone()),
            _ => Ok(args),
        }
    }
}

/// `fail`: always fails with `message` (for testing error handling).
pub struct Fail;

#[async_trait]
impl Tool for Fail {
    fn spec(&self) -> ToolSpec {
        spec(
            "fail",
            "Fails with `message`; with `retryable: false` the failure is final.",
            json!({"type": "object", "properties": {"message": {"type": "string"}, "retryable": {"type": "boolean"}}}),
        )
    }
    async fn call(&self, args: Value, _: &ToolContext) -> Result<Value, Error> {
        let msg = args
            .get("message")
            .and_then(Value::as_str)
            .unwrap_or("the fail tool failed, as asked")
            .to_string();
        if args.get("retryable").and_then(Value::as_bool) == Some(false) {
            Err(invalid("fail", msg))
        } else {
            Err(Error::Failed(msg))
        }
    }
}

/// `sleep`: waits `duration` (e.g. `200ms`), then returns it.
pub struct Sleep;

#[async_trait]
impl Tool for Sleep {
    fn spec(&self) -> ToolSpec {
        spec(
            "sleep",
            "Waits for `duration` (e.g. `200ms`, `2s`).",
            json!({"type": "object", "properties": {"duration": {"type": "string"}}, "required": ["duration"]}),
        )
    }
    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let d = args
            .get("duration")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid("sleep", "`duration` (a string such as `200ms`) is required"))?;
        let dur: Duration =
            humantime::parse_duration(d).map_err(|e| invalid("sleep", format!("'{d}': {e}")))?;
        tokio::select! {
            _ = tokio::time::sleep(dur) => Ok(json!({ "slept": d })),
            _ = ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }
}

/// `state.set`: sets keys of the run's `state`. The engine applies it itself (it is part of
/// the run's deterministic state); this entry gives it a spec and checks its arguments.
pub struct StateSet;

#[async_trait]
impl Tool for StateSet {
    fn spec(&self) -> ToolSpec {
        spec(
            "state.set",
            "Sets keys of the run's shared state: each argument `key: value` becomes `state.key`.",
            json!({"type": "object", "additionalProperties": true}),
        )
    }
    async fn call(&self, args: Value, _: &ToolContext) -> Result<Value, Error> {
        match args {
            Value::Object(_) => Ok(args),
            _ => Err(invalid(
                "state.set",
                "arguments must be a mapping of keys to values",
            )),
        }
    }
}

/// `http.get` and `http.post`: a request to a host in the workflow's `policy.http_allow`,
/// sending the call's idempotency key as `Idempotency-Key`.
pub struct Http {
    client: reqwest::Client,
    method: reqwest::Method,
}

impl Http {
    fn new(method: reqwest::Method) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .unwrap_or_default();
        Self { client, method }
    }

    pub fn get() -> Self {
        Self::new(reqwest::Method::GET)
    }

    /// `http.post`: sends `body` (JSON, or a string as text).
    pub fn post() -> Self {
        Self::new(reqwest::Method::POST)
    }

    fn name(&self) -> &'static str {
        if self.method == reqwest::Method::POST {
            "http.post"
        } else {
            "http.get"
        }
    }
}

/// Whether `url`'s host is in `allow` (`host` or `host:port` entries).
pub fn host_allowed(url: &reqwest::Url, allow: &[String]) -> bool {
    let Some(host) = url.host_str() else {
        return false;
    };
    let port = url.port_or_known_default();
    allow.iter().any(|a| {
        let a = a.trim();
        match a.rsplit_once(':') {
            Some((h, p)) if p.chars().all(|c| c.is_ascii_digit()) => {
                h.eq_ignore_ascii_case(host) && p.parse::<u16>().ok() == port
            }
            _ => a.eq_ignore_ascii_case(host),
        }
    })
}

const MAX_BODY: usize = 1 << 20;

#[async_trait]
impl Tool for Http {
    fn spec(&self) -> ToolSpec {
        let (description, parameters) = if self.method == reqwest::Method::POST {
            (
                "POST to a URL (only hosts in the workflow's policy.http_allow), with `body` as JSON (a string is sent as text). Returns status and body (JSON when the response is JSON).",
                json!({"type": "object", "properties": {"url": {"type": "string"}, "body": {}, "headers": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["url"]}),
            )
        } else {
            (
                "GET a URL (only hosts in the workflow's policy.http_allow). Returns status and body (JSON when the response is JSON).",
                json!({"type": "object", "properties": {"url": {"type": "string"}, "headers": {"type": "object", "additionalProperties": {"type": "string"}}}, "required": ["url"]}),
            )
        };
        ToolSpec::new(self.name(), description, parameters)
            .with_effects(crate::Effects::IdempotentWithKey)
    }

    async fn call(&self, args: Value, ctx: &ToolContext) -> Result<Value, Error> {
        let tool = self.name();
        let raw = args
            .get("url")
            .and_then(Value::as_str)
            .ok_or_else(|| invalid(tool, "`url` is required"))?;
        let url = reqwest::Url::parse(raw)
            .map_err(|e| invalid(tool, format!("'{raw}' is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(invalid(tool, format!("'{raw}': only http and https URLs")));
        }
        if !host_allowed(&url, &ctx.http_allow) {
            return Err(Error::NotAllowed {
                tool: tool.into(),
                host: url.host_str().unwrap_or("").into(),
            });
        }
        let method = self.method.as_str();
        let mut req = self.client.request(self.method.clone(), url.clone());
        if !ctx.idempotency_key.is_empty() {
            req = req.header("Idempotency-Key", &ctx.idempotency_key);
        }
        if let Some(Value::Object(h)) = args.get("headers") {
            for (k, v) in h {
                if let Some(v) = v.as_str() {
                    req = req.header(k.as_str(), v);
                }
            }
        }
        match args.get("body") {
            None | Some(Value::Null) => {}
            Some(Value::String(text)) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "text/plain; charset=utf-8")
                    .body(text.clone());
            }
            Some(v) => {
                req = req
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(v.to_string());
            }
        }
        let send = async {
            let resp = req
                .send()
                .await
                .map_err(|e| Error::Transient(format!("{method} {url}: {e}")))?;
            let status = resp.status().as_u16();
            let is_json = resp
                .headers()
                .get(reqwest::header::CONTENT_TYPE)
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("json"));
            let mut body = resp
                .bytes()
                .await
                .map_err(|e| Error::Transient(format!("{method} {url}: {e}")))?
                .to_vec();
            let truncated = body.len() > MAX_BODY;
            body.truncate(MAX_BODY);
            let text = String::from_utf8_lossy(&body).into_owned();
            let body = if is_json && !truncated {
                serde_json::from_str(&text).unwrap_or(Value::String(text))
            } else {
                Value::String(text)
            };
            if status >= 500 {
                return Err(Error::Transient(format!(
                    "{method} {url}: server answered {status}"
                )));
            }
            Ok(json!({ "status": status, "body": body, "truncated": truncated }))
        };
        tokio::select! {
            r = send => r,
            _ = ctx.cancel.cancelled() => Err(Error::Cancelled),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn allow_list() {
        let u = reqwest::Url::parse("http://127.0.0.1:8080/x").unwrap();
        assert!(host_allowed(&u, &["127.0.0.1".into()]));
        assert!(host_allowed(&u, &["127.0.0.1:8080".into()]));
        assert!(!host_allowed(&u, &["127.0.0.1:9090".into()]));
        assert!(!host_allowed(&u, &[]));
    }

    /// One request read off a loopback socket: (request line, headers, body).
    fn one_request(listener: std::net::TcpListener) -> (String, Vec<(String, String)>, String) {
        use std::io::{BufRead, BufReader, Read, Write};
        let (mut stream, _) = listener.accept().unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut first = String::new();
        reader.read_line(&mut first).unwrap();
        let mut headers = Vec::new();
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
            let (k, v) = line.split_once(':').unwrap();
            headers.push((k.to_ascii_lowercase(), v.trim().to_string()));
        }
        let length: usize = headers
            .iter()
            .find(|(k, _)| k == "content-length")
            .map_or(0, |(_, v)| v.parse().unwrap());
        let mut body = vec![0; length];
        reader.read_exact(&mut body).unwrap();
        let reply = "{\"ok\":1}";
        write!(
            stream,
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{reply}",
            reply.len()
        )
        .unwrap();
        (first, headers, String::from_utf8(body).unwrap())
    }

    #[tokio::test]
    async fn http_post_sends_the_body_and_the_call_key() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let server = std::thread::spawn(move || one_request(listener));
        let ctx = ToolContext {
            idempotency_key: "run:pay:1".into(),
            http_allow: vec![format!("127.0.0.1:{port}")],
            ..ToolContext::default()
        };
        let v = Http::post()
            .call(
                json!({"url": format!("http://127.0.0.1:{port}/pay"), "body": {"amount": 5}}),
                &ctx,
            )
            .await
            .unwrap();
        assert_eq!(v["status"], 201);
        assert_eq!(v["body"], json!({"ok": 1}));
        let (first, headers, body) = server.join().unwrap();
        assert!(first.starts_with("POST /pay "), "{first}");
        let header = |name: &str| {
            headers
                .iter()
                .find(|(k, _)| k == name)
                .map(|(_, v)| v.clone())
        };
        assert_eq!(header("idempotency-key").as_deref(), Some("run:pay:1"));
        assert_eq!(header("content-type").as_deref(), Some("application/json"));
        assert_eq!(
            serde_json::from_str::<Value>(&body).unwrap(),
            json!({"amount": 5})
        );
        assert_eq!(
            Http::post().spec().effects,
            crate::Effects::IdempotentWithKey
        );
        assert_eq!(Echo.spec().effects, crate::Effects::None);
    }

    #[tokio::test]
    async fn echo_and_fail() {
        let ctx = ToolContext::default();
        assert_eq!(
            Echo.call(json!({"text": "hi"}), &ctx).await.unwrap(),
            json!("hi")
        );
        assert!(Fail.call(json!({}), &ctx).await.is_err());
        let e = Http::get()
            .call(json!({"url": "http://example.invalid/"}), &ctx)
            .await
            .unwrap_err();
        assert!(matches!(e, Error::NotAllowed { .. }), "{e}");
    }
}
