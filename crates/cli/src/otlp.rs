//! Run traces to an OpenTelemetry collector over OTLP/HTTP (protobuf), only when an endpoint is
//! configured: `baton serve --otlp-endpoint URL`, else `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`
//! (the traces URL itself), else `OTEL_EXPORTER_OTLP_ENDPOINT` (a base URL: `/v1/traces` is
//! added, as the OpenTelemetry specification says). Without one nothing is built and nothing is
//! sent. Headers (`OTEL_EXPORTER_OTLP_HEADERS`) are read by the exporter itself.

use std::borrow::Cow;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail};
use baton_control::observe::SpanSink;
use baton_control::observe::trace::{Attr, Span, SpanKind};
use opentelemetry::trace::{
    SpanContext, SpanId, SpanKind as OtelKind, Status, TraceFlags, TraceId, TraceState,
};
use opentelemetry::{InstrumentationScope, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::trace::{SpanData, SpanEvents, SpanExporter, SpanLinks};
use tokio::sync::{mpsc, oneshot};

/// The traces URL from the flag and the environment (`env` reads a variable), or `None`: off.
pub fn traces_endpoint(
    flag: Option<&str>,
    env: impl Fn(&str) -> Option<String>,
) -> Result<Option<String>> {
    let set = |v: Option<String>| v.map(|v| v.trim().to_string()).filter(|v| !v.is_empty());
    let (url, what) = if let Some(base) = set(flag.map(str::to_string)) {
        (signal_url(&base), "--otlp-endpoint")
    } else if let Some(url) = set(env("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")) {
        (url, "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT")
    } else if let Some(base) = set(env("OTEL_EXPORTER_OTLP_ENDPOINT")) {
        (signal_url(&base), "OTEL_EXPORTER_OTLP_ENDPOINT")
    } else {
        return Ok(None);
    };
    let parsed = reqwest::Url::parse(&url)
        .with_context(|| format!("{what}: '{url}' is not a URL (e.g. http://127.0.0.1:4318)"))?;
    if !matches!(parsed.scheme(), "http" | "https") || parsed.host_str().is_none() {
        bail!("{what}: '{url}' is not an http:// or https:// URL with a host");
    }
    Ok(Some(url))
}

/// A base endpoint with the traces path added.
fn signal_url(base: &str) -> String {
    format!("{}/v1/traces", base.trim_end_matches('/'))
}

/// An OTLP/HTTP trace exporter to one endpoint.
pub struct Otlp {
    exporter: opentelemetry_otlp::SpanExporter,
    scope: InstrumentationScope,
    endpoint: String,
}

impl Otlp {
    pub fn new(endpoint: &str) -> Result<Self> {
        let mut exporter = opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_http_client(reqwest::Client::new())
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(endpoint)
            .with_timeout(Duration::from_secs(10))
            .build()
            .with_context(|| format!("cannot make an OTLP exporter for {endpoint}"))?;
        exporter.set_resource(
            &Resource::builder_empty()
                .with_attributes([
                    KeyValue::new("service.name", "baton"),
                    KeyValue::new("service.version", env!("CARGO_PKG_VERSION")),
                ])
                .build(),
        );
        Ok(Self {
            exporter,
            scope: InstrumentationScope::builder("baton")
                .with_version(env!("CARGO_PKG_VERSION"))
                .build(),
            endpoint: endpoint.to_string(),
        })
    }

    /// Sends one run's spans and waits for the collector's answer.
    pub async fn send(&self, spans: Vec<Span>) -> Result<()> {
        let batch = spans
            .into_iter()
            .map(|s| span_data(s, &self.scope))
            .collect();
        self.exporter
            .export(batch)
            .await
            .map_err(|e| anyhow::anyhow!("traces to {} not sent: {e}", self.endpoint))
    }
}

/// What the sending task is asked to do.
enum Job {
    Send(Vec<Span>),
    /// Answer once everything asked before is sent.
    Flush(oneshot::Sender<()>),
}

/// Sends the spans it is given from a task of its own (so a slow or absent collector never
/// holds up a run); a failed export is logged and dropped.
pub struct OtlpSink {
    tx: mpsc::UnboundedSender<Job>,
}

impl OtlpSink {
    /// Must be called inside a tokio runtime.
    pub fn start(endpoint: &str) -> Result<Arc<Self>> {
        let otlp = Otlp::new(endpoint)?;
        let (tx, mut rx) = mpsc::unbounded_channel::<Job>();
        tokio::spawn(async move {
            while let Some(job) = rx.recv().await {
                match job {
                    Job::Send(spans) => {
                        if let Err(e) = otlp.send(spans).await {
                            tracing::warn!("{e:#}");
                        }
                    }
                    Job::Flush(done) => {
                        let _ = done.send(());
                    }
                }
            }
        });
        Ok(Arc::new(Self { tx }))
    }

    /// Waits (at most `limit`) until the traces handed over so far are sent: for a server
    /// stopping.
    pub async fn flush(&self, limit: Duration) {
        let (done, sent) = oneshot::channel();
        if self.tx.send(Job::Flush(done)).is_ok() {
            let _ = tokio::time::timeout(limit, sent).await;
        }
    }
}

impl SpanSink for OtlpSink {
    fn export(&self, spans: Vec<Span>) {
        // The task ends only with the runtime.
        let _ = self.tx.send(Job::Send(spans));
    }
}

/// After a foreground run (`baton run`, `baton resume`) ends: its trace to the collector the
/// environment names, if any (a failure is a warning; the run's own result stands).
pub async fn send_run_trace(control: &baton_control::Control, run: baton_types::RunId) {
    let endpoint = match traces_endpoint(None, |k| std::env::var(k).ok()) {
        Ok(Some(e)) => e,
        Ok(None) => return,
        Err(e) => {
            errln!("warning: no trace sent: {e:#}");
            return;
        }
    };
    let sent = async {
        let spans = control.run_trace(run).await?;
        Otlp::new(&endpoint)?.send(spans).await
    };
    if let Err(e) = sent.await {
        errln!("warning: {e:#}");
    }
}

fn time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(u64::try_from(ms).unwrap_or(0))
}

fn span_data(s: Span, scope: &InstrumentationScope) -> SpanData {
    let attributes = s
        .attributes
        .into_iter()
        .map(|(k, v)| match v {
            Attr::Str(v) => KeyValue::new(k, v),
            Attr::Int(v) => KeyValue::new(k, v),
        })
        .collect();
    SpanData {
        span_context: SpanContext::new(
            TraceId::from_bytes(s.trace_id),
            SpanId::from_bytes(s.span_id),
            TraceFlags::SAMPLED,
            false,
            TraceState::default(),
        ),
        parent_span_id: s.parent.map_or(SpanId::INVALID, SpanId::from_bytes),
        parent_span_is_remote: false,
        span_kind: match s.kind {
            SpanKind::Internal => OtelKind::Internal,
            SpanKind::Client => OtelKind::Client,
        },
        name: Cow::Owned(s.name),
        start_time: time(s.start_ms),
        end_time: time(s.end_ms),
        attributes,
        dropped_attributes_count: 0,
        events: SpanEvents::default(),
        links: SpanLinks::default(),
        status: match s.error {
            Some(e) => Status::error(e),
            None => Status::Unset,
        },
        instrumentation_scope: scope.clone(),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn env<'a>(vars: &'a [(&'a str, &'a str)]) -> impl Fn(&str) -> Option<String> + 'a {
        |k| {
            vars.iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn nothing_is_configured_by_default() {
        assert_eq!(traces_endpoint(None, env(&[])).unwrap(), None);
        assert_eq!(traces_endpoint(Some(" "), env(&[])).unwrap(), None);
    }

    #[test]
    fn the_flag_comes_first_then_the_traces_endpoint_then_the_base() {
        let all = [
            ("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", "http://t:1/x"),
            ("OTEL_EXPORTER_OTLP_ENDPOINT", "http://b:2/"),
        ];
        assert_eq!(
            traces_endpoint(Some("http://f:3"), env(&all)).unwrap(),
            Some("http://f:3/v1/traces".into())
        );
        assert_eq!(
            traces_endpoint(None, env(&all)).unwrap(),
            Some("http://t:1/x".into())
        );
        assert_eq!(
            traces_endpoint(None, env(&all[1..])).unwrap(),
            Some("http://b:2/v1/traces".into())
        );
    }

    #[test]
    fn a_bad_endpoint_is_refused_naming_where_it_came_from() {
        let e = traces_endpoint(Some("collector:4318"), env(&[])).unwrap_err();
        assert!(e.to_string().contains("--otlp-endpoint"), "{e}");
        let e = traces_endpoint(None, env(&[("OTEL_EXPORTER_OTLP_ENDPOINT", "nope")])).unwrap_err();
        assert!(e.to_string().contains("OTEL_EXPORTER_OTLP_ENDPOINT"), "{e}");
    }
}
