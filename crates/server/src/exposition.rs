//! The Prometheus text exposition (format 0.0.4) of the server's metrics: its own request
//! counts, and what `baton_control::observe` folded from the runs this process drives.

use std::fmt::Display;
use std::fmt::Write as _;

use baton_control::observe::{Histogram, Snapshot};
use baton_types::RunStatus;

/// Writes metric families, one `# HELP`/`# TYPE` header each, label values escaped.
#[derive(Default)]
pub(crate) struct Exposition {
    pub(crate) out: String,
}

/// A label value with `\`, `"` and line breaks escaped, as the text format wants.
fn escaped(v: &str) -> std::borrow::Cow<'_, str> {
    if !v.contains(['\\', '"', '\n']) {
        return v.into();
    }
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
        .into()
}

fn labels(pairs: &[(&str, &str)]) -> String {
    let mut s = String::new();
    for (i, (k, v)) in pairs.iter().enumerate() {
        if i > 0 {
            s.push(',');
        }
        let _ = write!(s, "{k}=\"{}\"", escaped(v));
    }
    s
}

impl Exposition {
    pub(crate) fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    pub(crate) fn sample(&mut self, name: &str, pairs: &[(&str, &str)], value: impl Display) {
        if pairs.is_empty() {
            let _ = writeln!(self.out, "{name} {value}");
        } else {
            let _ = writeln!(self.out, "{name}{{{}}} {value}", labels(pairs));
        }
    }

    pub(crate) fn histogram(&mut self, name: &str, pairs: &[(&str, &str)], h: &Histogram) {
        let l = labels(pairs);
        let sep = if l.is_empty() { "" } else { "," };
        for (le, n) in h.bounds.iter().zip(&h.counts) {
            let _ = writeln!(self.out, "{name}_bucket{{{l}{sep}le=\"{le}\"}} {n}");
        }
        let _ = writeln!(
            self.out,
            "{name}_bucket{{{l}{sep}le=\"+Inf\"}} {}\n{name}_sum{{{l}}} {}\n{name}_count{{{l}}} {}",
            h.count, h.sum, h.count
        );
    }

    /// `baton_runs{status}`: every status, zero included.
    pub(crate) fn runs(&mut self, counts: &[(RunStatus, u64)]) {
        self.family(
            "baton_runs",
            "gauge",
            "Runs of every tenant by status (from the store at scrape time).",
        );
        for status in RunStatus::ALL {
            let n: u64 = counts
                .iter()
                .filter(|(s, _)| *s == status)
                .map(|(_, n)| n)
                .sum();
            self.sample("baton_runs", &[("status", status.as_str())], n);
        }
    }

    /// The families folded from run events and webhooks.
    pub(crate) fn snapshot(&mut self, s: &Snapshot) {
        let name = "baton_step_duration_seconds";
        self.family(name, "histogram", "Step attempts by step kind and outcome.");
        for ((kind, outcome), h) in &s.steps {
            self.histogram(name, &[("kind", kind), ("outcome", outcome)], h);
        }
        let name = "baton_model_request_duration_seconds";
        self.family(
            name,
            "histogram",
            "Time from a prompt sent to a model to its reply, by provider and model.",
        );
        for (m, h) in &s.model_latency {
            self.histogram(name, &[("provider", &m.provider), ("model", &m.model)], h);
        }
        let name = "baton_model_tokens_total";
        self.family(
            name,
            "counter",
            "Tokens models read (prompt) and wrote (completion), by provider and model.",
        );
        for (m, u) in &s.model_usage {
            for (direction, n) in [
                ("prompt", u.prompt_tokens),
                ("completion", u.completion_tokens),
            ] {
                let pairs = [
                    ("provider", m.provider.as_str()),
                    ("model", &m.model),
                    ("direction", direction),
                ];
                self.sample(name, &pairs, n);
            }
        }
        let name = "baton_model_cost_usd_total";
        self.family(
            name,
            "counter",
            "What model calls cost, in US dollars (priced models only), by provider and model.",
        );
        for (m, u) in &s.model_usage {
            self.sample(
                name,
                &[("provider", &m.provider), ("model", &m.model)],
                u.cost_usd,
            );
        }
        let name = "baton_sandbox_executions_total";
        self.family(
            name,
            "counter",
            "Sandbox executions by tier and stop reason.",
        );
        for ((tier, stop), n) in &s.sandbox {
            self.sample(name, &[("tier", tier), ("stop", stop)], n);
        }
        let name = "baton_webhook_deliveries_total";
        self.family(
            name,
            "counter",
            "Outbound webhook delivery attempts by outcome (succeeded, retrying, failed).",
        );
        for (outcome, n) in &s.deliveries {
            self.sample(name, &[("outcome", outcome)], n);
        }
        let name = "baton_webhook_inbound_total";
        self.family(
            name,
            "counter",
            "Inbound hook requests by outcome (accepted, refused).",
        );
        for (outcome, n) in &s.inbound {
            self.sample(name, &[("outcome", outcome)], n);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn label_values_are_escaped() {
        let mut e = Exposition::default();
        e.sample("m", &[("model", "a\"b\\c\nd")], 1);
        assert_eq!(e.out, "m{model=\"a\\\"b\\\\c\\nd\"} 1\n");
    }

    #[test]
    fn a_histogram_has_cumulative_buckets_a_sum_and_a_count() {
        let mut h = Histogram::new(&[0.1, 1.0]);
        h.observe(0.05);
        h.observe(0.5);
        let mut e = Exposition::default();
        e.histogram("t", &[("k", "v")], &h);
        assert_eq!(
            e.out,
            "t_bucket{k=\"v\",le=\"0.1\"} 1\nt_bucket{k=\"v\",le=\"1\"} 2\nt_bucket{k=\"v\",le=\"+Inf\"} 2\nt_sum{k=\"v\"} 0.55\nt_count{k=\"v\"} 2\n"
        );
    }
}
