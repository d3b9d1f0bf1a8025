//! Every `curl` request of docs/api.md runs as shown, in order, with the real `curl` against a
//! real `baton serve` (started in `examples/` with the scripted models, as the page says), and
//! answers 2xx or the status its comment names. Placeholders (`RUN_ID`, `HOOK_SECRET`...) are
//! the values of the fields the comments name in earlier answers. A route of the OpenAPI
//! document (or an operations or `/v1` route) without a request on the page fails the test.
//!
//! Without `curl` the test is skipped loudly, counting the requests not sent;
//! `BATON_REQUIRE_CURL=1` (set by `make test`) makes that a failure.

// End-to-end tests run the real binary and curl.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::{BTreeSet, HashMap};
use std::process::Command;
use std::time::Duration;

use common::serve::serve_with;
use common::{Db, root};
use regex::Regex;
use serde_json::Value;

/// One logical line of a `sh` block (continuations joined by bash itself).
#[derive(Debug)]
enum Line {
    /// Another shell line (an assignment): run before the block's later requests.
    Shell(String),
    Curl(Request),
    /// A comment for the reader.
    Note,
}

#[derive(Debug)]
struct Request {
    /// Where it is in docs/api.md (1-based).
    line: usize,
    command: String,
    /// The comment right after it, when it shows the answer (`{...}`, `[...]` or a status).
    answer: Option<String>,
}

/// The `sh` blocks of `md` that send at least one request.
fn blocks(md: &str) -> Vec<Vec<Line>> {
    let mut out = Vec::new();
    let mut block: Option<Vec<Line>> = None;
    let mut pending: Option<(usize, String)> = None;
    for (i, raw) in md.lines().enumerate() {
        let trimmed = raw.trim_start();
        if block.is_none() {
            if trimmed.starts_with("```sh") {
                block = Some(Vec::new());
            }
            continue;
        }
        if trimmed.starts_with("```") {
            let b = block.take().unwrap_or_default();
            if b.iter().any(|l| matches!(l, Line::Curl(_))) {
                out.push(b);
            }
            continue;
        }
        let lines = block.as_mut().unwrap();
        let (start, mut text) = pending.take().unwrap_or((i + 1, String::new()));
        text.push_str(raw);
        if raw.ends_with('\\') {
            text.push('\n');
            pending = Some((start, text));
            continue;
        }
        push_line(lines, start, text);
    }
    out
}

fn push_line(lines: &mut Vec<Line>, line: usize, text: String) {
    let t = text.trim();
    if t.is_empty() {
        return;
    }
    if let Some(comment) = t.strip_prefix('#') {
        let c = comment.trim();
        let shows_answer = c.starts_with('{')
            || c.starts_with('[')
            || c.chars().take(3).filter(char::is_ascii_digit).count() == 3;
        match lines.last_mut() {
            Some(Line::Curl(r)) if r.answer.is_none() && shows_answer => {
                r.answer = Some(c.to_string());
            }
            // Prose for the reader; it ends what a comment may attach to.
            _ => lines.push(Line::Note),
        }
        return;
    }
    if t.starts_with("curl ") {
        lines.push(Line::Curl(Request {
            line,
            command: text,
            answer: None,
        }));
    } else {
        lines.push(Line::Shell(text));
    }
}

/// The status a request must answer: its comment's, else any 2xx (`None`).
fn expected_status(answer: Option<&str>) -> Option<u16> {
    let a = answer?;
    let digits: String = a.chars().take(3).collect();
    (digits.len() == 3 && a.chars().nth(3).is_none_or(|c| !c.is_ascii_digit()))
        .then(|| digits.parse().ok())
        .flatten()
}

/// (field, placeholder) pairs a comment names: `"id": "RUN_ID"`.
fn captures(answer: &str) -> Vec<(String, String)> {
    let re =
        Regex::new(r#""([A-Za-z_]+)":\s*"([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:ID|SECRET))""#).unwrap();
    re.captures_iter(answer)
        .map(|c| (c[1].to_string(), c[2].to_string()))
        .collect()
}

/// The first value of `field` in `v`, top level first.
fn find_field(v: &Value, field: &str) -> Option<String> {
    let map = v.as_object()?;
    if let Some(x) = map.get(field) {
        return Some(x.as_str().map_or_else(|| x.to_string(), str::to_string));
    }
    map.values().find_map(|x| find_field(x, field))
}

/// Replaces each known placeholder where it is a whole word.
fn substitute(command: &str, values: &HashMap<String, String>) -> String {
    let word = Regex::new(r"[A-Za-z0-9_]+").unwrap();
    word.replace_all(command, |c: &regex::Captures| {
        values
            .get(&c[0])
            .cloned()
            .unwrap_or_else(|| c[0].to_string())
    })
    .into_owned()
}

/// A placeholder left in a request after substitution: no earlier answer gave it.
fn unresolved(command: &str) -> Option<String> {
    let re =
        Regex::new(r"(^|[^$A-Za-z0-9_{])([A-Z][A-Z0-9]*(?:_[A-Z0-9]+)*_(?:ID|SECRET))\b").unwrap();
    re.captures(command).map(|c| c[2].to_string())
}

/// What one curl transfer reported (through `-w`).
#[derive(Debug)]
struct Transfer {
    method: String,
    status: u16,
    path: String,
}

struct Outcome {
    stdout: String,
    stderr: String,
    transfers: Vec<Transfer>,
}

/// Each `curl` of the script reports its method, status and URL on stderr.
const WRAPPER: &str = r#"curl() { command curl -w '%{stderr}\n@@curl %{method} %{response_code} %{url_effective}\n' "$@"; }"#;

/// Runs `script` in bash from the repository's root with `$BASE` and `$KEY` set.
fn run_shell(script: &str, base: &str, key: &str) -> Outcome {
    let o = common::output_within(
        Command::new("bash")
            .arg("-c")
            .arg(format!("{WRAPPER}\n{script}"))
            .current_dir(root())
            .env("BASE", base)
            .env("KEY", key),
        Duration::from_secs(60),
    )
    .unwrap_or_else(|| panic!("a request did not end within 60 s:\n{script}"));
    let stdout = String::from_utf8_lossy(&o.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&o.stderr).into_owned();
    let transfers = stderr
        .lines()
        .filter_map(|l| l.strip_prefix("@@curl "))
        .map(|l| {
            let mut parts = l.splitn(3, ' ');
            let method = parts.next().unwrap_or_default().to_string();
            let status = parts.next().unwrap_or_default().parse().unwrap_or(0);
            let url = parts.next().unwrap_or_default();
            let path = url
                .split_once("://")
                .and_then(|(_, rest)| rest.split_once('/'))
                .map(|(_, p)| format!("/{}", p.split('?').next().unwrap_or_default()))
                .unwrap_or_default();
            Transfer {
                method,
                status,
                path,
            }
        })
        .collect();
    Outcome {
        stdout,
        stderr,
        transfers,
    }
}

/// The routes every page of requests must cover: the OpenAPI document's, and the others.
fn routes(base: &str) -> BTreeSet<(String, String)> {
    let out = run_shell(
        &format!("command curl -s {base}/api/v1/openapi.json"),
        base,
        "",
    );
    let doc: Value = serde_json::from_str(&out.stdout).unwrap();
    let mut all = BTreeSet::new();
    for (path, ops) in doc["paths"].as_object().unwrap() {
        for method in ops.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                all.insert((method.to_uppercase(), path.clone()));
            }
        }
    }
    for (m, p) in [
        ("POST", "/hooks/{id}"),
        ("GET", "/healthz"),
        ("GET", "/readyz"),
        ("GET", "/metrics"),
        ("GET", "/v1/models"),
        ("POST", "/v1/chat/completions"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/docs"),
    ] {
        all.insert((m.to_string(), p.to_string()));
    }
    all
}

/// The route template `path` is sent to: the one with the most literal segments that matches.
fn route_of<'a>(
    routes: &'a BTreeSet<(String, String)>,
    method: &str,
    path: &str,
) -> Option<&'a (String, String)> {
    let segs: Vec<&str> = path.split('/').collect();
    routes
        .iter()
        .filter(|(m, t)| {
            let ts: Vec<&str> = t.split('/').collect();
            m == method
                && ts.len() == segs.len()
                && ts
                    .iter()
                    .zip(&segs)
                    .all(|(t, s)| (t.starts_with('{') && !s.is_empty()) || t == s)
        })
        .max_by_key(|(_, t)| t.split('/').filter(|s| !s.starts_with('{')).count())
}

/// Whether Debian's `curl` is here; when not, says so (counting what is not sent), and fails
/// when `BATON_REQUIRE_CURL=1`.
fn curl_present(requests: usize) -> bool {
    let ok = Command::new("curl")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !ok {
        let required = std::env::var("BATON_REQUIRE_CURL").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "BATON_REQUIRE_CURL=1 and curl is not installed (apt-get install curl)"
        );
        println!("SKIPPED: curl is not installed: {requests} requests of docs/api.md not sent");
        eprintln!("SKIPPED: curl is not installed: {requests} requests of docs/api.md not sent");
    }
    ok
}

/// The state carried through the page: the values placeholders stand for, the routes sent.
struct Page {
    base: String,
    key: String,
    values: HashMap<String, String>,
    sent: BTreeSet<(String, String)>,
    routes: BTreeSet<(String, String)>,
}

impl Page {
    /// Sends one request (after the block's shell lines) and checks its answer.
    fn send(&mut self, shell: &str, r: &Request) {
        let at = format!("docs/api.md:{}", r.line);
        let command = substitute(&r.command, &self.values);
        if let Some(p) = unresolved(&command) {
            panic!("{at}: {p} is not given by any earlier answer's comment:\n{command}");
        }
        let out = run_shell(&format!("{shell}\n{command}"), &self.base, &self.key);
        let context = format!(
            "{at}:\n{command}\nstdout: {}\nstderr: {}",
            out.stdout, out.stderr
        );
        assert!(!out.transfers.is_empty(), "{context}\nno request was sent");
        let want = expected_status(r.answer.as_deref());
        for (n, t) in out.transfers.iter().enumerate() {
            let last = n + 1 == out.transfers.len();
            match want.filter(|_| last) {
                Some(w) => assert_eq!(t.status, w, "{context}"),
                None => assert!((200..300).contains(&t.status), "{context}\n{t:?}"),
            }
            match route_of(&self.routes, &t.method, &t.path) {
                Some(route) => {
                    self.sent.insert(route.clone());
                }
                None => panic!("{context}\n{} {} is no route of the API", t.method, t.path),
            }
        }
        let fields = r.answer.as_deref().map(captures).unwrap_or_default();
        if fields.is_empty() {
            return;
        }
        let answer: Value = serde_json::from_str(out.stdout.trim())
            .unwrap_or_else(|e| panic!("{context}\nthe answer is not JSON ({e})"));
        for (field, placeholder) in fields {
            let v = find_field(&answer, &field)
                .unwrap_or_else(|| panic!("{context}\nthe answer has no `{field}`"));
            self.values.insert(placeholder, v);
        }
    }
}

#[test]
fn every_curl_request_in_the_api_docs_answers_as_shown() {
    let md = std::fs::read_to_string(root().join("docs/api.md")).unwrap();
    let blocks = blocks(&md);
    let requests = blocks
        .iter()
        .flatten()
        .filter(|l| matches!(l, Line::Curl(_)))
        .count();
    assert!(
        requests > 50,
        "only {requests} requests found in docs/api.md"
    );
    if !curl_present(requests) {
        return;
    }
    let db = Db::new();
    let server = serve_with(&db, |c| {
        c.current_dir(root().join("examples"))
            .env("BATON_MODEL", "scripted/hello");
    });
    let base = format!("http://{}", server.addr);
    let mut page = Page {
        routes: routes(&base),
        key: server
            .key
            .clone()
            .expect("the first start prints an admin key"),
        base,
        values: HashMap::new(),
        sent: BTreeSet::new(),
    };
    for block in &blocks {
        let mut shell = String::new();
        for line in block {
            match line {
                Line::Shell(s) => {
                    shell.push_str(&substitute(s, &page.values));
                    shell.push('\n');
                }
                Line::Curl(r) => page.send(&shell, r),
                Line::Note => {}
            }
        }
    }
    let missing: Vec<String> = page
        .routes
        .difference(&page.sent)
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "routes without a curl request in docs/api.md: {missing:?}"
    );
    println!(
        "{requests} requests of docs/api.md sent, {} routes covered",
        page.sent.len()
    );
}

#[test]
fn the_parser_reads_requests_statuses_and_placeholders() {
    let md = "text\n```sh\nA=1\ncurl -s \\\n  $BASE/x\n# 404 {\"id\": \"RUN_ID\"}\n# prose\ncurl -s $BASE/y/RUN_ID\n```\n```sh\nbaton serve\n```\n";
    let b = blocks(md);
    assert_eq!(b.len(), 1, "{b:?}");
    let reqs: Vec<&Request> = b[0]
        .iter()
        .filter_map(|l| match l {
            Line::Curl(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].line, 4);
    assert!(reqs[0].command.contains("$BASE/x"));
    assert_eq!(expected_status(reqs[0].answer.as_deref()), Some(404));
    assert_eq!(reqs[1].answer, None);
    assert_eq!(
        captures(reqs[0].answer.as_deref().unwrap()),
        vec![("id".to_string(), "RUN_ID".to_string())]
    );
    let values = HashMap::from([("RUN_ID".to_string(), "r1".to_string())]);
    assert_eq!(substitute("$BASE/y/RUN_ID", &values), "$BASE/y/r1");
    assert_eq!(unresolved("$BASE/y/HOOK_ID"), Some("HOOK_ID".into()));
    assert_eq!(unresolved("${SECRET#whsec_} $ROUTE_ID"), None);
    assert_eq!(expected_status(Some("{\"a\": 1}")), None);
}
