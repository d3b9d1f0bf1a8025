//! What an operator watches, on a real `baton serve`: the Prometheus families after a scripted
//! run (steps, model latency, tokens and cost, sandbox executions, webhooks, runs by status),
//! the run's OpenTelemetry trace received by a loopback OTLP/HTTP collector, and the request id
//! on every log line of a request.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Child, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::body::Bytes;
use axum::routing::post;
use common::{Db, baton};
use opentelemetry_proto::tonic::collector::trace::v1::ExportTraceServiceRequest;
use opentelemetry_proto::tonic::common::v1::any_value::Value as Any;
use opentelemetry_proto::tonic::trace::v1::Span;
use prost::Message as _;
use serde_json::{Value, json};

/// A running `baton serve` whose stderr is kept.
struct Server {
    child: Child,
    base: String,
    key: String,
    log: Arc<Mutex<String>>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Server {
    /// `baton serve` on a free port in the test's directory (scripted fixtures are found
    /// there), with `args` added; waits for its banner.
    fn start(db: &Db, args: &[&str]) -> Server {
        let mut child = baton()
            .args(["serve", "--addr", "127.0.0.1:0", "--rate-limit", "off"])
            .args(args)
            .arg("--db")
            .arg(db.path())
            .current_dir(db.0.path())
            .env("BATON_LOG", "warn,baton_server=debug")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut err = BufReader::new(child.stderr.take().unwrap());
        let log = Arc::new(Mutex::new(String::new()));
        let mut line = String::new();
        while err.read_line(&mut line).unwrap() > 0 && !line.contains("metrics:") {}
        let banner = line.clone();
        let base = banner
            .lines()
            .find_map(|l| l.trim().strip_prefix("baton serving on "))
            .expect("the server says where it listens")
            .to_string();
        log.lock().unwrap().push_str(&banner);
        let sink = log.clone();
        std::thread::spawn(move || {
            let mut l = String::new();
            while err.read_line(&mut l).unwrap_or(0) > 0 {
                sink.lock().unwrap().push_str(&l);
                l.clear();
            }
        });
        let mut key = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut key)
            .unwrap();
        Server {
            child,
            base,
            key: key.trim().to_string(),
            log,
        }
    }

    async fn post(&self, path: &str, body: Value) -> Value {
        let r = reqwest::Client::new()
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "POST {path}: {}", r.status());
        r.json().await.unwrap()
    }

    /// Starts a run of `source` and follows its events to its end; returns its id.
    async fn run_to_end(&self, source: &str) -> String {
        let run = self.post("/api/v1/runs", json!({ "source": source })).await;
        let id = run["id"].as_str().unwrap().to_string();
        let stream = reqwest::Client::new()
            .get(format!("{}/api/v1/runs/{id}/stream", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(stream.contains("event: run_succeeded"), "{stream}");
        id
    }

    async fn metrics(&self) -> String {
        reqwest::get(format!("{}/metrics", self.base))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }

    /// Scrapes until `line` (a sample with its labels, without its value) has a non-zero
    /// value, at most 20 s; returns the value.
    async fn until_counted(&self, sample: &str) -> f64 {
        let end = Instant::now() + Duration::from_secs(20);
        loop {
            let text = self.metrics().await;
            if let Some(v) = value_of(&text, sample)
                && v > 0.0
            {
                return v;
            }
            assert!(Instant::now() < end, "no {sample} > 0 in:\n{text}");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}

fn value_of(text: &str, sample: &str) -> Option<f64> {
    text.lines()
        .find_map(|l| l.strip_prefix(sample)?.strip_prefix(' ')?.parse().ok())
}

/// A loopback collector: OTLP/HTTP traces on `/v1/traces`, and a webhook receiver on `/hook`.
struct Collector {
    url: String,
    spans: Arc<Mutex<Vec<Span>>>,
    hooks: Arc<Mutex<u32>>,
    /// Every request it got, whatever its path.
    requests: Arc<Mutex<u32>>,
}

async fn collector() -> Collector {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    collector_on(listener)
}

fn collector_on(listener: tokio::net::TcpListener) -> Collector {
    let spans: Arc<Mutex<Vec<Span>>> = Arc::default();
    let hooks: Arc<Mutex<u32>> = Arc::default();
    let requests: Arc<Mutex<u32>> = Arc::default();
    let (s, h, r) = (spans.clone(), hooks.clone(), requests.clone());
    let app = axum::Router::new()
        .route(
            "/v1/traces",
            post(move |body: Bytes| async move {
                let req = ExportTraceServiceRequest::decode(body).unwrap();
                for rs in req.resource_spans {
                    for ss in rs.scope_spans {
                        s.lock().unwrap().extend(ss.spans);
                    }
                }
                (
                    [("content-type", "application/x-protobuf")],
                    Vec::<u8>::new(),
                )
            }),
        )
        .route(
            "/hook",
            post(move || async move {
                *h.lock().unwrap() += 1;
                "ok"
            }),
        )
        .layer(axum::middleware::from_fn(
            move |req: axum::extract::Request, next: axum::middleware::Next| {
                *r.lock().unwrap() += 1;
                next.run(req)
            },
        ));
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Collector {
        url,
        spans,
        hooks,
        requests,
    }
}

const QUIET: &str =
    "version: 1\nname: quiet\nsteps:\n  - { id: say, tool: echo, with: { text: hi } }\n";

const FIXTURE: &str = "replies:\n  - turn: 1\n    tool_calls: [{ name: sandbox.exec, arguments: { command: [\"true\"] } }]\n    usage: { prompt_tokens: 20, completion_tokens: 7, cost_usd: 0.002 }\n  - turn: 2\n    text: done\n    usage: { prompt_tokens: 30, completion_tokens: 3, cost_usd: 0.001 }\n";

const WORKFLOW: &str = "version: 1\nname: observed\nagents:\n  bot: { model: scripted/bot, tools: [sandbox.exec] }\nsteps:\n  - { id: ask, agent: bot, prompt: Run something }\n  - { id: box, sandbox: { command: [\"true\"] } }\n  - { id: say, tool: echo, with: { text: done } }\n";

fn attr<'a>(s: &'a Span, key: &str) -> Option<&'a Any> {
    s.attributes
        .iter()
        .find(|a| a.key == key)
        .and_then(|a| a.value.as_ref()?.value.as_ref())
}

fn str_attr<'a>(s: &'a Span, key: &str) -> Option<&'a str> {
    match attr(s, key)? {
        Any::StringValue(v) => Some(v.as_str()),
        _ => None,
    }
}

fn int_attr(s: &Span, key: &str) -> Option<i64> {
    match attr(s, key)? {
        Any::IntValue(v) => Some(*v),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scripted_run_fills_every_metric_family_and_sends_its_trace() {
    if !common::process_tier_works() {
        return;
    }
    let _lock = common::lock();
    let db = Db::new();
    std::fs::create_dir(db.0.path().join("scripted")).unwrap();
    std::fs::write(db.0.path().join("scripted/bot.yaml"), FIXTURE).unwrap();
    let c = collector().await;
    let s = Server::start(
        &db,
        &["--otlp-endpoint", &c.url, "--webhook-allow", "127.0.0.0/8"],
    );
    let banner = format!("traces:      OTLP to {}/v1/traces", c.url);
    assert!(s.log.lock().unwrap().contains(&banner), "{banner}");
    s.post(
        "/api/v1/webhooks/subscriptions",
        json!({"url": format!("{}/hook", c.url), "events": ["run.succeeded"]}),
    )
    .await;
    // A refused inbound hook: no such hook.
    let r = reqwest::Client::new()
        .post(format!("{}/hooks/wh_nope", s.base))
        .body("{}")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let id = s.run_to_end(WORKFLOW).await;
    check_metrics(&s).await;
    assert!(*c.hooks.lock().unwrap() >= 1);
    check_trace(&c, &id).await;
}

/// Every family has the run's samples.
async fn check_metrics(s: &Server) {
    let model = "provider=\"scripted\",model=\"scripted/bot\"";
    let exited = "baton_sandbox_executions_total{tier=\"process\",stop=\"exited\"}";
    for sample in [
        "baton_runs{status=\"succeeded\"}",
        "baton_step_duration_seconds_count{kind=\"agent\",outcome=\"succeeded\"}",
        "baton_step_duration_seconds_count{kind=\"sandbox\",outcome=\"succeeded\"}",
        "baton_step_duration_seconds_count{kind=\"tool\",outcome=\"succeeded\"}",
        &format!("baton_model_request_duration_seconds_count{{{model}}}"),
        exited,
        "baton_webhook_inbound_total{outcome=\"refused\"}",
        "baton_webhook_deliveries_total{outcome=\"succeeded\"}",
    ] {
        s.until_counted(sample).await;
    }
    let text = s.metrics().await;
    let got = |sample: &str| value_of(&text, sample).unwrap_or_else(|| panic!("{sample}:\n{text}"));
    let tokens = |d: &str| {
        got(&format!(
            "baton_model_tokens_total{{{model},direction=\"{d}\"}}"
        ))
    };
    assert_eq!(
        got(&format!(
            "baton_model_request_duration_seconds_count{{{model}}}"
        )),
        2.0
    );
    assert_eq!(tokens("prompt"), 50.0);
    assert_eq!(tokens("completion"), 10.0);
    assert!((got(&format!("baton_model_cost_usd_total{{{model}}}")) - 0.003).abs() < 1e-9);
    // The agent's call and the sandbox step.
    assert_eq!(got(exited), 2.0);
    assert_eq!(got("baton_runs{status=\"failed\"}"), 0.0);
}

/// The run's trace: a run span, its step attempts, the model calls and the tool call under
/// the agent's step, with the GenAI attributes.
async fn check_trace(c: &Collector, id: &str) {
    let end = Instant::now() + Duration::from_secs(20);
    while c.spans.lock().unwrap().len() < 7 {
        assert!(Instant::now() < end, "spans: {:?}", c.spans.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let spans = c.spans.lock().unwrap().clone();
    let by_name: HashMap<&str, Vec<&Span>> = spans.iter().fold(HashMap::new(), |mut m, s| {
        m.entry(s.name.as_str()).or_default().push(s);
        m
    });
    let one = |n: &str| {
        let v = by_name
            .get(n)
            .unwrap_or_else(|| panic!("no span {n}: {spans:?}"));
        assert_eq!(v.len(), 1, "{n}");
        v[0]
    };
    let root = one("run observed");
    assert!(root.parent_span_id.is_empty());
    assert_eq!(hex(&root.trace_id), id, "the trace id is the run id");
    assert!(spans.iter().all(|s| s.trace_id == root.trace_id));
    let ask = one("step ask");
    assert_eq!(ask.parent_span_id, root.span_id);
    assert_eq!(str_attr(ask, "baton.step.kind"), Some("agent"));
    for step in ["step box", "step say"] {
        assert_eq!(one(step).parent_span_id, root.span_id);
    }
    let chats = &by_name["chat bot"];
    assert_eq!(chats.len(), 2);
    for chat in chats {
        assert_eq!(chat.parent_span_id, ask.span_id);
        assert_eq!(str_attr(chat, "gen_ai.operation.name"), Some("chat"));
        assert_eq!(str_attr(chat, "gen_ai.provider.name"), Some("scripted"));
        assert_eq!(str_attr(chat, "gen_ai.request.model"), Some("bot"));
        assert!(int_attr(chat, "gen_ai.usage.input_tokens").unwrap() > 0);
        assert!(int_attr(chat, "gen_ai.usage.output_tokens").unwrap() > 0);
    }
    let tool = one("execute_tool sandbox.exec");
    assert_eq!(tool.parent_span_id, ask.span_id);
    assert_eq!(
        str_attr(tool, "gen_ai.operation.name"),
        Some("execute_tool")
    );
    assert_eq!(str_attr(tool, "gen_ai.tool.name"), Some("sandbox.exec"));
    assert!(str_attr(tool, "gen_ai.tool.call.id").is_some());
    assert!(root.start_time_unix_nano <= ask.start_time_unix_nano);
    assert!(root.end_time_unix_nano >= one("step say").end_time_unix_nano);
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_log_line_of_a_request_carries_its_id() {
    let db = Db::new();
    let s = Server::start(&db, &[]);
    // No endpoint configured: no exporter, nothing sent.
    assert!(!s.log.lock().unwrap().contains("traces:"));
    let http = reqwest::Client::new();
    // Refused (no key): the authentication failure and the refusal are logged.
    let r = http
        .get(format!("{}/api/v1/runs", s.base))
        .header("x-request-id", "obs-test-42")
        .bearer_auth("bk_not_a_key")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(r.headers()["x-request-id"], "obs-test-42");
    // Served: logged at debug.
    let r = http
        .get(format!("{}/healthz", s.base))
        .header("x-request-id", "obs-ok-7")
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["x-request-id"], "obs-ok-7");
    // An id that is not sane is replaced by one of ours.
    let r = http
        .get(format!("{}/healthz", s.base))
        .header("x-request-id", "two words; and more")
        .send()
        .await
        .unwrap();
    let given = r.headers()["x-request-id"].to_str().unwrap().to_string();
    assert_ne!(given, "two words; and more");
    assert_eq!(given.len(), 36, "a UUID: {given}");
    let end = Instant::now() + Duration::from_secs(10);
    loop {
        let log = s.log.lock().unwrap().clone();
        let lines = |id: &str| -> Vec<String> {
            log.lines()
                .filter(|l| l.contains(&format!("request_id={id}")))
                .map(str::to_string)
                .collect()
        };
        let refused = lines("obs-test-42");
        let ok = lines("obs-ok-7");
        let ours = lines(&given);
        if refused.len() >= 2 && !ok.is_empty() && !ours.is_empty() {
            assert!(
                refused.iter().any(|l| l.contains("request refused")),
                "{log}"
            );
            assert!(
                refused.iter().all(|l| l.contains("route=/api/v1/runs")),
                "{log}"
            );
            assert!(ok[0].contains("route=/healthz"), "{log}");
            assert!(!log.contains("two words"), "{log}");
            // Every line the request middleware writes names its request.
            for l in log.lines().filter(|l| l.contains(": request")) {
                assert!(l.contains("request_id="), "{l}");
            }
            break;
        }
        assert!(Instant::now() < end, "{log}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// Without `--otlp-endpoint` or `OTEL_EXPORTER_OTLP_*`, a finished run sends nothing, not even
/// to the OTLP default address (`localhost:4318`, where a collector listens in this test).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn without_an_endpoint_no_trace_is_sent_anywhere() {
    let Ok(listener) = tokio::net::TcpListener::bind("127.0.0.1:4318").await else {
        println!("SKIPPED: 127.0.0.1:4318 is in use here (a collector of this host?)");
        return;
    };
    let c = collector_on(listener);
    let db = Db::new();
    let s = Server::start(&db, &[]);
    assert!(!s.log.lock().unwrap().contains("traces:"));
    s.run_to_end(
        "version: 1\nname: quiet\nsteps:\n  - { id: say, tool: echo, with: { text: hi } }\n",
    )
    .await;
    s.until_counted("baton_runs{status=\"succeeded\"}").await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert_eq!(*c.requests.lock().unwrap(), 0, "something was sent");
}

/// `baton run` sends its run's trace when it ends, to the collector the environment names.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cli_run_sends_its_trace_to_the_collector_the_environment_names() {
    let c = collector().await;
    let db = Db::new();
    let wf = db.workflow("quiet.yaml", QUIET);
    let url = c.url.clone();
    let out = tokio::task::spawn_blocking(move || {
        baton()
            .args(["run", &wf, "--db"])
            .arg(db.path())
            .env("OTEL_EXPORTER_OTLP_ENDPOINT", url)
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    assert!(out.status.success(), "{}", common::text(&out));
    let spans = c.spans.lock().unwrap().clone();
    let root = spans
        .iter()
        .find(|s| s.name == "run quiet")
        .expect("the run's span");
    let say = spans
        .iter()
        .find(|s| s.name == "step say")
        .expect("the step's span");
    assert_eq!(say.parent_span_id, root.span_id);
    assert_eq!(str_attr(say, "baton.step.kind"), Some("tool"));
    assert_eq!(str_attr(root, "baton.run.status"), Some("succeeded"));
}
