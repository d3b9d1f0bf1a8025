//! How `runs show` prints the sandbox executions of a run (found by
//! `baton_control::view::sandbox_records`).

use baton_control::view::SandboxRecord;
use baton_engine::inputs::fmt_size as fmt_bytes;
use serde_json::Value;

/// One execution in a few lines: what ran where, under which limits, what it used, why it
/// stopped, what the scan found and which hosts it tried.
pub fn describe_sandbox(r: &SandboxRecord) -> Vec<String> {
    let v = &r.record;
    let mut lines = vec![headline(r)];
    lines.extend(command_line(v));
    lines.push(limits_line(&v["policy"]));
    let hit: Vec<&str> = v["limits_hit"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !hit.is_empty() {
        lines.push(format!("    limits hit: {}", hit.join(", ")));
    }
    for k in ["stdout", "stderr"] {
        if v[format!("{k}_truncated")] == true {
            lines.push(format!("    {k} truncated at the output limit"));
        }
    }
    lines.extend(scan_lines(&v["scan"]));
    for a in v["network"].as_array().cloned().unwrap_or_default() {
        lines.push(format!("    network: {a}"));
    }
    lines
}

/// `step visit 2 attempt 1 (step): tier process, exited, exit 0; wall 12ms, cpu 3ms, ...`
fn headline(r: &SandboxRecord) -> String {
    let v = &r.record;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let visit = r
        .visit
        .filter(|v| *v > 1)
        .map(|v| format!(" visit {v}"))
        .unwrap_or_default();
    let attempt = r
        .attempt
        .map(|a| format!(" attempt {a}"))
        .unwrap_or_default();
    let exit = match (
        v.get("exit_code").and_then(Value::as_i64),
        v.get("signal").and_then(Value::as_i64),
    ) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "no exit code".into(),
    };
    let ms = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map(|m| format!("{m:.0}ms"))
    };
    let mut usage = format!("wall {}", ms("wall_time").unwrap_or_else(|| "?".into()));
    if let Some(c) = ms("cpu_time") {
        usage.push_str(&format!(", cpu {c}"));
    }
    if let Some(m) = v.get("peak_memory_bytes").and_then(Value::as_u64) {
        usage.push_str(&format!(", peak memory {}", fmt_bytes(m)));
    }
    format!(
        "  {}{visit}{attempt} ({}): tier {}, {}, {exit}; {usage}",
        r.step,
        r.via,
        s("tier"),
        s("stop_reason"),
    )
}

/// `command: python3 -m pytest (files: t.py 120 B) in /work`, when the record has the request.
fn command_line(v: &Value) -> Option<String> {
    let argv = v["request"]["argv"].as_array()?;
    let argv: Vec<String> = argv
        .iter()
        .map(|a| {
            let a = a.as_str().unwrap_or_default();
            if a.contains(char::is_whitespace) || a.is_empty() {
                format!("{a:?}")
            } else {
                a.to_string()
            }
        })
        .collect();
    let files: Vec<String> = v["request"]["files"]
        .as_object()
        .map(|f| f.iter().map(|(k, n)| format!("{k} {n} B")).collect())
        .unwrap_or_default();
    let mut line = format!("    command: {}", argv.join(" "));
    if !files.is_empty() {
        line.push_str(&format!(" (files: {})", files.join(", ")));
    }
    if let Some(w) = v["request"]["workdir"].as_str() {
        line.push_str(&format!(" in {w}"));
    }
    Some(line)
}

/// `limits: cpu 1, memory 128.0 MiB, ... net none (policy file p.toml)`.
fn limits_line(p: &Value) -> String {
    let l = &p["limits"];
    let net = match p["net"]["mode"].as_str() {
        Some("allow") => format!(
            "allow:{}",
            p["net"]["hosts"]
                .as_array()
                .map(|h| h
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        Some(m) => m.to_string(),
        None => "?".into(),
    };
    let num = |k: &str| {
        l.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_else(|| "?".into())
    };
    let bytes = |k: &str| {
        l.get(k)
            .and_then(Value::as_u64)
            .map(fmt_bytes)
            .unwrap_or_else(|| "?".into())
    };
    let mut limits = format!(
        "    limits: cpu {}, memory {}, pids {}, disk {}, time {}, output {}, net {net}",
        num("cpus"),
        bytes("memory_bytes"),
        num("pids"),
        bytes("disk_bytes"),
        num("time"),
        bytes("output_bytes"),
    );
    if let Some(f) = p.get("file").and_then(Value::as_str) {
        limits.push_str(&format!(" (policy file {f})"));
    }
    limits
}

/// `scan: N finding(s)` and one line per finding.
fn scan_lines(scan: &Value) -> Vec<String> {
    let findings = scan["findings"].as_array().cloned().unwrap_or_default();
    let mut lines = vec![format!("    scan: {} finding(s)", findings.len())];
    for f in findings {
        let g = |k: &str| {
            f.get(k)
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .unwrap_or_default()
        };
        lines.push(format!(
            "      {}:{} {} {} {}",
            g("file"),
            g("line"),
            g("severity"),
            g("rule"),
            g("message")
        ));
    }
    lines
}
