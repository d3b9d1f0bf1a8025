//! The document around the steps: version, name, inputs, policy; and the step ids.

use baton_types::{END, InputSpec, InputType};
use serde_json::Value;

use super::Checker;
use crate::load::suggest::closest;
use crate::load::{index_path, key_path};

impl Checker<'_, '_> {
    pub(super) fn check_header(&mut self) {
        let doc = self.doc;
        if doc.version != 1 {
            self.error(
                "version",
                format!(
                    "unsupported `version: {}`; the only version of the format is 1",
                    doc.version
                ),
            );
        }
        if doc.name.trim().is_empty() {
            self.error("name", "the workflow's `name` is empty");
        }
        if doc.steps.is_empty() {
            self.error("steps", "the workflow has no steps");
        }
        for (name, input) in &doc.inputs {
            self.check_input(name, input);
        }
        for (i, entry) in doc.policy.http_allow.iter().enumerate() {
            if let Err(why) = check_host_entry(entry) {
                self.error(
                    index_path("policy.http_allow", i),
                    format!("`{entry}` is not a `host` or `host:port`: {why}"),
                );
            }
        }
    }

    /// An input's allowed values and default against its type.
    fn check_input(&mut self, name: &str, input: &InputSpec) {
        let path = key_path("inputs", name);
        if let Some(allowed) = &input.allowed {
            if allowed.is_empty() {
                self.error(
                    key_path(&path, "enum"),
                    format!("input `{name}` has an empty `enum`: no value would be allowed"),
                );
            }
            for (i, v) in allowed.iter().enumerate() {
                if !type_matches(input.kind, v) {
                    self.error(
                        index_path(&key_path(&path, "enum"), i),
                        format!(
                            "{} in the `enum` of input `{name}` is not {}",
                            show(v),
                            type_phrase(input.kind)
                        ),
                    );
                }
            }
        }
        if let Some(default) = &input.default {
            let dp = key_path(&path, "default");
            if !type_matches(input.kind, default) {
                self.error(
                    dp,
                    format!(
                        "the default of input `{name}` must be {}, not {}",
                        type_phrase(input.kind),
                        show(default)
                    ),
                );
            } else if let Some(allowed) = &input.allowed
                && !allowed.is_empty()
                && !allowed.contains(default)
            {
                let shown: Vec<String> = allowed.iter().map(raw).collect();
                self.error(
                    dp,
                    format!(
                        "the default of input `{name}` ({}) is not one of its allowed values: {}",
                        raw(default),
                        shown.join(", ")
                    ),
                );
            }
        }
    }

    pub(super) fn check_ids(&mut self) {
        for i in 0..self.infos.len() {
            let (id, path) = (self.infos[i].step.id.as_str(), self.infos[i].path.clone());
            let id_path = key_path(&path, "id");
            if id.is_empty() {
                self.error(id_path, "a step id cannot be empty");
                continue;
            }
            if let Some(bad) = id
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                self.error(
                    id_path.clone(),
                    format!(
                        "step id `{id}` contains {}; ids may only use ASCII letters and digits, `_` and `-`",
                        describe_char(bad)
                    ),
                );
            }
            if id == END {
                self.error(
                    id_path,
                    "`end` cannot be a step id: it is the target that ends a list of steps",
                );
                continue;
            }
            match self.ids.get(id) {
                Some(first) => {
                    let (line, col) = self.loaded.location(&self.infos[*first].path);
                    self.error(id_path, format!("duplicate step id `{id}` (first used at line {line}, column {col}); step ids are unique in the whole workflow"));
                }
                None => {
                    self.ids.insert(self.infos[i].step.id.as_str(), i);
                }
            }
        }
    }

    /// The builder's `layout`: every key names a step (a stale one says so, it is not
    /// dropped), and every coordinate is a finite number.
    pub(super) fn check_layout(&mut self) {
        for (id, at) in &self.doc.layout {
            let path = key_path("layout", id);
            if !self.ids.contains_key(id.as_str()) {
                let hint = closest(id, self.ids.keys().copied())
                    .map(|s| format!(" (did you mean `{s}`?)"))
                    .unwrap_or_default();
                self.error(
                    path,
                    format!("`layout` places unknown step `{id}`{hint}: each key of `layout` is a step id; remove the entries of steps that are gone"),
                );
            } else if at
                .iter()
                .any(|v| !v.is_finite() || v.abs() > MAX_COORDINATE)
            {
                self.error(
                    path,
                    format!("the position of step `{id}` in `layout` must be two numbers between -{MAX_COORDINATE} and {MAX_COORDINATE}"),
                );
            }
        }
    }
}

/// Largest coordinate `layout` accepts, either way (a canvas far larger than any screen).
const MAX_COORDINATE: f64 = 1e7;

fn type_matches(t: InputType, v: &Value) -> bool {
    match t {
        InputType::String => v.is_string(),
        InputType::Number => v.is_number(),
        InputType::Integer => {
            v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        InputType::Boolean => v.is_boolean(),
        InputType::Array => v.is_array(),
        InputType::Object => v.is_object(),
    }
}

fn type_phrase(t: InputType) -> &'static str {
    match t {
        InputType::String => "a string",
        InputType::Number => "a number",
        InputType::Integer => "an integer",
        InputType::Boolean => "true or false",
        InputType::Array => "a list",
        InputType::Object => "a mapping",
    }
}

/// A value with its type, for "must be X, not ...": "a string (`x`)", "a list", ...
pub(super) fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        Value::Null => "empty (null)".into(),
        Value::String(s) => format!("a string (`{s}`)"),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::Bool(b) => format!("`{b}`"),
    }
}

/// A value as written: `x`, `3`, `[1,2]`.
fn raw(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else if c.is_control() || c.is_whitespace() {
        format!("`{}`", c.escape_default())
    } else {
        format!("`{c}` (U+{:04X})", u32::from(c))
    }
}

/// `host` or `host:port`; IPv6 addresses in brackets.
fn check_host_entry(entry: &str) -> Result<(), String> {
    if entry.contains("://") || entry.contains('/') {
        return Err("write the host alone, without a scheme or path (e.g. `api.example.com` or `localhost:8080`)".into());
    }
    if entry.trim() != entry || entry.is_empty() {
        return Err("it is empty or has spaces around it".into());
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err("an IPv6 address needs its closing `]`".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err("only `:port` may follow `]`".into()),
            },
        }
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(entry), None),
        }
    };
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("`{p}` is not a port (1 to 65535)")),
        }
    }
    if let Some(h) = host {
        if h.is_empty() || h.len() > 253 {
            return Err("the host name is empty or too long".into());
        }
        for label in h.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "`{label}` is not a valid part of a host name (letters, digits and `-`, separated by dots)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn host_entries() {
        assert!(check_host_entry("example.com").is_ok());
        assert!(check_host_entry("127.0.0.1:8080").is_ok());
        assert!(check_host_entry("[::1]:80").is_ok());
        assert!(check_host_entry("localhost").is_ok());
        assert!(check_host_entry("https://example.com").is_err());
        assert!(check_host_entry("example.com:99999").is_err());
        assert!(check_host_entry("exa mple.com").is_err());
        assert!(check_host_entry("-bad.com").is_err());
        assert!(check_host_entry("").is_err());
    }
}
