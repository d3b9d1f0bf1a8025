//! Classifying a failed call by what the error is, not only its status: a request the server
//! rejects as invalid is [`Error::InvalidRequest`] whatever the status it used (servers such as
//! llama-cpp-python's answer an unsupported field with a 500 and a validation report), naming
//! the field and quoting the server; only rate limits, 408/502/503/504/529 and timeouts are
//! transient. Error bodies are read in the shapes servers use (OpenAI, Anthropic, FastAPI/
//! pydantic, plain text, an HTML page).

use std::time::{Duration, SystemTime};

use reqwest::header::HeaderMap;
use serde_json::Value;

use crate::Error;
use crate::http::{html_page, truncate};

/// How long a `Retry-After` (seconds or an HTTP date) or `retry-after-ms` header asks to wait.
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    if let Some(ms) = headers.get("retry-after-ms").and_then(|v| v.to_str().ok())
        && let Ok(ms) = ms.trim().parse::<f64>()
        && ms.is_finite()
        && ms >= 0.0
    {
        return Some(Duration::from_secs_f64(ms / 1000.0));
    }
    let v = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    if let Ok(secs) = v.parse::<f64>() {
        return (secs.is_finite() && secs >= 0.0).then(|| Duration::from_secs_f64(secs));
    }
    let at = httpdate::parse_http_date(v).ok()?;
    Some(
        at.duration_since(SystemTime::now())
            .unwrap_or(Duration::ZERO),
    )
}

/// What an error body says, in the shapes servers use: `{"error":{"message","type","code",
/// "param"}}`, `{"error":"..."}`, `{"type":"error","error":{"type","message"}}`, `{"message"}`,
/// and FastAPI/pydantic's `{"detail":[{"loc":[...],"msg":"..."}]}`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ErrorBody {
    /// The server's words.
    pub message: String,
    /// The machine-readable kind (`type` or `code`), when given.
    pub code: String,
    /// The request field the server named (`param`, or a validation error's `loc`).
    pub field: Option<String>,
    /// The body is a validation report (pydantic's `detail` list).
    pub validation: bool,
}

/// Reads an error body (see [`ErrorBody`]); a body that is not JSON is quoted as text.
pub fn error_parts(body: &[u8]) -> ErrorBody {
    let text = String::from_utf8_lossy(body);
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        let message = match html_page(&text) {
            Some(page) => format!("an HTML page ({page})"),
            None => truncate(text.trim(), 500),
        };
        return ErrorBody {
            message,
            ..ErrorBody::default()
        };
    };
    if let Some(report) = validation_report(&v) {
        return report;
    }
    let err = v.get("error").unwrap_or(&v);
    let message = match err {
        Value::String(s) => s.clone(),
        _ => err
            .get("message")
            .or_else(|| err.get("detail"))
            .and_then(Value::as_str)
            .map(str::to_string)
            .unwrap_or_else(|| truncate(text.trim(), 500)),
    };
    // Some gateways put the HTTP status in `code` as a number.
    let code = ["code", "type"]
        .iter()
        .filter_map(|k| match err.get(*k) {
            Some(Value::String(s)) => Some(s.clone()),
            Some(Value::Number(n)) => Some(n.to_string()),
            _ => None,
        })
        .find(|c| c != "error" && !c.is_empty())
        .unwrap_or_default();
    if let Some(report) = python_validation_report(&message, &code) {
        return report;
    }
    let field = err
        .get("param")
        .and_then(Value::as_str)
        .filter(|p| !p.is_empty())
        .map(str::to_string)
        .or_else(|| field_in_words(&message));
    ErrorBody {
        message,
        code,
        field,
        validation: false,
    }
}

/// A pydantic validation error printed into a message, as llama-cpp-python's server sends it
/// with HTTP 500: `1 validation error:\n  {'type': ..., 'loc': ('body', 'response_format',
/// 'type'), 'msg': "Input should be 'text' or 'json_object'", 'input': ...}` followed by a
/// traceback. Keeps the field and the `msg`, drops the traceback.
fn python_validation_report(message: &str, code: &str) -> Option<ErrorBody> {
    static LOC: std::sync::LazyLock<Option<regex::Regex>> =
        std::sync::LazyLock::new(|| regex::Regex::new(r"'loc':\s*\(([^)]*)\)").ok());
    static MSG: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(r#"'msg':\s*(?:"((?:[^"\\]|\\.)*)"|'((?:[^'\\]|\\.)*)')"#).ok()
    });
    if !message.contains("validation error") {
        return None;
    }
    let field = LOC.as_ref()?.captures(message).map(|c| {
        c[1].split(',')
            .map(|p| p.trim().trim_matches(|q| q == '\'' || q == '"'))
            .filter(|p| !p.is_empty())
            .skip_while(|p| *p == "body")
            .collect::<Vec<_>>()
            .join(".")
    });
    let msgs: Vec<&str> = MSG
        .as_ref()?
        .captures_iter(message)
        .filter_map(|c| c.get(1).or_else(|| c.get(2)).map(|m| m.as_str()))
        .collect();
    let words = if msgs.is_empty() {
        // The first paragraph: the report without the traceback after it.
        message
            .split("\n\n")
            .next()
            .unwrap_or(message)
            .trim()
            .to_string()
    } else {
        msgs.join("; ")
    };
    Some(ErrorBody {
        message: truncate(&words, 500),
        code: code.to_string(),
        field: field.filter(|f| !f.is_empty()),
        validation: true,
    })
}

/// FastAPI/pydantic's `{"detail": [{"loc": ["body", "response_format", "type"], "msg": ...}]}`.
fn validation_report(v: &Value) -> Option<ErrorBody> {
    let items = v.get("detail")?.as_array()?;
    let mut field = None;
    let mut words = Vec::new();
    for item in items {
        let loc: Vec<String> = item
            .get("loc")
            .and_then(Value::as_array)
            .map(|l| {
                l.iter()
                    .filter_map(|p| match p {
                        Value::String(s) => Some(s.clone()),
                        Value::Number(n) => Some(n.to_string()),
                        _ => None,
                    })
                    .skip_while(|p| p == "body")
                    .collect()
            })
            .unwrap_or_default();
        let msg = item.get("msg").and_then(Value::as_str).unwrap_or_default();
        let at = loc.join(".");
        if field.is_none() && !at.is_empty() {
            field = Some(at.clone());
        }
        words.push(if at.is_empty() {
            msg.to_string()
        } else {
            format!("{at}: {msg}")
        });
    }
    Some(ErrorBody {
        message: truncate(&words.join("; "), 500),
        code: String::new(),
        field,
        validation: true,
    })
}

/// A request field a message names in quotes or after `body ->` (`'response_format.type'`).
fn field_in_words(message: &str) -> Option<String> {
    static FIELD: std::sync::LazyLock<Option<regex::Regex>> = std::sync::LazyLock::new(|| {
        regex::Regex::new(
            r#"(?:['"`]|\bbody\s*->\s*)([a-z_][a-z0-9_]*(?:(?:\.|\s*->\s*)[a-z0-9_]+)+)['"`]?"#,
        )
        .ok()
    });
    let caps = FIELD.as_ref()?.captures(message)?;
    let f = caps.get(1)?.as_str();
    Some(
        f.split(|c: char| c == '.' || c == '-' || c == '>' || c.is_whitespace())
            .filter(|p| !p.is_empty())
            .collect::<Vec<_>>()
            .join("."),
    )
}

fn mentions_context_length(message: &str, code: &str) -> bool {
    let m = message.to_ascii_lowercase();
    code == "context_length_exceeded"
        || code == "request_too_large"
        || code == "exceed_context_size_error"
        || m.contains("context length")
        || m.contains("context_length")
        || m.contains("context window")
        || m.contains("maximum context")
        || m.contains("prompt is too long")
        || m.contains("too many tokens")
        || m.contains("exceeds the available context")
        || m.contains("input is too long")
}

/// Whether an error body says the request itself is invalid (rather than the server failing):
/// servers that answer a field they do not accept with a 500 say so in the body.
fn says_request_invalid(e: &ErrorBody) -> bool {
    const CODES: [&str; 8] = [
        "invalid_request_error",
        "invalid_request",
        "invalid_value",
        "invalid_type",
        "unsupported_parameter",
        "unsupported_value",
        "validation_error",
        "BadRequestError",
    ];
    const WORDS: [&str; 12] = [
        "validation error",
        "input should be",
        "not supported",
        "unsupported",
        "not permitted",
        "not allowed",
        "unrecognized",
        "unknown field",
        "unexpected field",
        "invalid value",
        "is not one of",
        "must be one of",
    ];
    let m = e.message.to_ascii_lowercase();
    e.validation || CODES.contains(&e.code.as_str()) || WORDS.iter().any(|w| m.contains(w))
}

/// Classifies a failure answer from its status, headers and body.
///
/// Only 408, 429, 502, 503, 504 and 529 (overloaded) are transient. A request the server
/// rejects as invalid is [`Error::InvalidRequest`] whatever its status (400 and 422 always; any
/// other status when the body says so); any other failure keeps its status in
/// [`Error::Provider`], which is not retried.
pub fn classify(provider: &str, status: u16, headers: &HeaderMap, body: &[u8]) -> Error {
    let mut parts = error_parts(body);
    if parts.message.is_empty() {
        parts.message = format!("HTTP {status}");
    }
    let p = provider.to_string();
    match status {
        401 | 403 => Error::Auth {
            provider: p,
            message: parts.message,
        },
        404 => Error::UnknownModel {
            model: format!("{provider}/?"),
            reason: format!(
                "the server answered 404 (the model does not exist there, or base_url is wrong): {}",
                parts.message
            ),
        },
        429 if parts.code == "insufficient_quota" => Error::Provider {
            provider: p,
            status,
            message: parts.message,
        },
        429 => Error::RateLimited {
            provider: p,
            retry_after: retry_after(headers),
        },
        408 | 502 | 503 | 504 | 529 => Error::Transient {
            provider: p,
            message: format!("HTTP {status}: {}", parts.message),
        },
        400 | 413 | 422 | 500 if mentions_context_length(&parts.message, &parts.code) => {
            Error::ContextLength {
                message: parts.message,
            }
        }
        400 | 422 => invalid_request(p, status, parts),
        _ if says_request_invalid(&parts) => invalid_request(p, status, parts),
        _ => Error::Provider {
            provider: p,
            status,
            message: parts.message,
        },
    }
}

fn invalid_request(provider: String, status: u16, parts: ErrorBody) -> Error {
    Error::InvalidRequest {
        provider,
        status,
        field: parts.field,
        message: parts.message,
    }
}

/// Classifies an error object sent inside a stream (after a 200), where only its kind is known.
pub fn classify_in_stream(provider: &str, body: &[u8]) -> Error {
    let ErrorBody {
        message,
        code,
        field,
        ..
    } = error_parts(body);
    let p = provider.to_string();
    let c = code.as_str();
    if mentions_context_length(&message, c) {
        return Error::ContextLength { message };
    }
    match c {
        "rate_limit_error" | "rate_limit_exceeded" | "rate_limit" | "429" => Error::RateLimited {
            provider: p,
            retry_after: None,
        },
        "authentication_error" | "permission_error" | "invalid_api_key" | "401" | "403" => {
            Error::Auth {
                provider: p,
                message,
            }
        }
        "not_found_error" | "model_not_found" | "404" => Error::UnknownModel {
            model: format!("{provider}/?"),
            reason: message,
        },
        "invalid_request_error" | "400" => Error::InvalidRequest {
            provider: p,
            status: 400,
            field,
            message,
        },
        // overloaded_error, api_error, server_error and anything unnamed: the server gave up on
        // this answer; another try may well work.
        _ => Error::Transient {
            provider: p,
            message: format!("error in the stream: {message}"),
        },
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use reqwest::header::HeaderValue;

    fn headers(pairs: &[(&'static str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(*k, HeaderValue::from_str(v).unwrap());
        }
        h
    }

    #[test]
    fn retry_after_forms() {
        assert_eq!(
            retry_after(&headers(&[("retry-after", "7")])),
            Some(Duration::from_secs(7))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "1.5")])),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            retry_after(&headers(&[("retry-after", "3"), ("retry-after-ms", "250")])),
            Some(Duration::from_millis(250))
        );
        let later = httpdate::fmt_http_date(SystemTime::now() + Duration::from_secs(30));
        let d = retry_after(&headers(&[("retry-after", &later)])).unwrap();
        assert!(
            d > Duration::from_secs(25) && d <= Duration::from_secs(30),
            "{d:?}"
        );
        assert_eq!(retry_after(&headers(&[("retry-after", "soon")])), None);
        assert_eq!(retry_after(&HeaderMap::new()), None);
    }

    #[test]
    fn classification() {
        let none = HeaderMap::new();
        let e = classify(
            "p",
            401,
            &none,
            br#"{"error":{"message":"Incorrect API key","type":"invalid_request_error"}}"#,
        );
        assert!(
            matches!(e, Error::Auth { ref message, .. } if message == "Incorrect API key"),
            "{e:?}"
        );
        assert_eq!(classify("p", 403, &none, b"forbidden").kind(), "auth");
        assert_eq!(
            classify("p", 404, &none, br#"{"error":"model 'x' not found"}"#).kind(),
            "unknown_model"
        );
        let e = classify("p", 429, &headers(&[("retry-after", "2")]), b"{}");
        assert_eq!(e.retry_after(), Some(Duration::from_secs(2)));
        assert!(e.is_retryable());
        let e = classify(
            "p",
            429,
            &none,
            br#"{"error":{"code":"insufficient_quota","message":"quota"}}"#,
        );
        assert!(!e.is_retryable(), "{e:?}");
        let e = classify("p", 400, &none, br#"{"error":{"message":"This model's maximum context length is 8192 tokens","code":"context_length_exceeded"}}"#);
        assert_eq!(e.kind(), "context_length");
        let e = classify("p", 400, &none, br#"{"type":"error","error":{"type":"invalid_request_error","message":"prompt is too long: 210000 tokens > 200000 maximum"}}"#);
        assert_eq!(e.kind(), "context_length");
        assert_eq!(classify("p", 400, &none, b"{}").kind(), "invalid_request");
        assert_eq!(classify("p", 402, &none, b"{}").kind(), "provider");
        assert!(classify("p", 503, &none, b"").is_retryable());
        assert!(
            classify(
                "p",
                529,
                &none,
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            )
            .is_retryable()
        );
        assert_eq!(
            classify_in_stream(
                "p",
                br#"{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}"#
            )
            .kind(),
            "transient"
        );
        assert_eq!(
            classify_in_stream(
                "p",
                br#"{"error":{"type":"rate_limit_error","message":"x"}}"#
            )
            .kind(),
            "rate_limit"
        );
        let in_stream = |b: &[u8]| classify_in_stream("p", b).kind();
        assert_eq!(
            in_stream(br#"{"error":{"code":429,"message":"x"}}"#),
            "rate_limit"
        );
        assert_eq!(
            in_stream(br#"{"error":{"code":401,"message":"x"}}"#),
            "auth"
        );
    }

    #[test]
    fn invalid_requests_are_told_by_their_body_whatever_the_status() {
        let none = HeaderMap::new();
        // OpenAI names the field in `param`.
        let e = classify(
            "p",
            400,
            &none,
            br#"{"error":{"message":"Invalid value: 'xml'.","type":"invalid_request_error","param":"response_format.type","code":"invalid_value"}}"#,
        );
        assert!(
            matches!(&e, Error::InvalidRequest { status: 400, field: Some(f), message, .. } if f == "response_format.type" && message == "Invalid value: 'xml'."),
            "{e:?}"
        );
        // FastAPI's 422 report.
        let e = classify(
            "p",
            422,
            &none,
            br#"{"detail":[{"type":"literal_error","loc":["body","response_format","type"],"msg":"Input should be 'text' or 'json_object'","input":"json_schema"}]}"#,
        );
        assert!(
            matches!(&e, Error::InvalidRequest { field: Some(f), message, .. } if f == "response_format.type" && message == "response_format.type: Input should be 'text' or 'json_object'"),
            "{e:?}"
        );
        // A 500 whose words say the request is invalid; the traceback after them is dropped.
        let body = br#"{"error":{"message":"1 validation error:\n  {'type': 'literal_error', 'loc': ('body', 'messages', 0, 'role'), 'msg': \"Input should be 'user'\", 'input': 'x'}\n\n  File \"app.py\", line 3","type":"internal_server_error","param":null,"code":null}}"#;
        let e = classify("p", 500, &none, body);
        assert!(
            matches!(&e, Error::InvalidRequest { status: 500, field: Some(f), message, .. } if f == "messages.0.role" && message == "Input should be 'user'"),
            "{e:?}"
        );
        assert!(!e.is_retryable());
        let e = classify(
            "p",
            500,
            &none,
            br#"{"error":{"message":"'response_format.json_schema' is not supported"}}"#,
        );
        assert!(
            matches!(&e, Error::InvalidRequest { field: Some(f), .. } if f == "response_format.json_schema"),
            "{e:?}"
        );
        // A 500 that says nothing of the kind is the server's failure: not retried either.
        let e = classify("p", 500, &none, br#"{"error":"out of memory"}"#);
        assert!(matches!(&e, Error::Provider { status: 500, .. }), "{e:?}");
        assert!(!e.is_retryable());
        for status in [408, 502, 503, 504, 529] {
            assert!(classify("p", status, &none, b"").is_retryable(), "{status}");
        }
        // An HTML error page is named by its title.
        let e = classify(
            "p",
            502,
            &none,
            b"<html><head><title>502 Bad Gateway</title></head><body></body></html>",
        );
        assert!(
            e.to_string()
                .contains("HTML page (title \"502 Bad Gateway\")"),
            "{e}"
        );
    }
}
