//! How messages name what the schema expected and what the document has.

use serde_json::Value;

use super::nav::{Seg, def_name, def_of};

/// "step `review`", "agent `pm`", "the workflow", ...
pub(super) fn describe_object(
    root: &Value,
    start: &Value,
    segments: &[Seg],
    found: Option<&Value>,
    path: &str,
) -> String {
    let last_key = last_key(path);
    let def = if segments.is_empty() {
        if std::ptr::eq(start, root) {
            None
        } else {
            def_of(root, start).map(str::to_string)
        }
    } else {
        def_name(root, start, segments)
    };
    match def.as_deref() {
        None if path.is_empty() => "the workflow".into(),
        Some("Step") => match found.and_then(|f| f.get("id")).and_then(Value::as_str) {
            Some(id) => format!("step `{id}`"),
            None => "a step".into(),
        },
        Some("AgentSpec") => format!("agent `{}`", last_key.unwrap_or_default()),
        Some("InputSpec") => format!("input `{}`", last_key.unwrap_or_default()),
        Some("SwitchCase") => "a switch case".into(),
        Some("EdgeSpec") => "an edge".into(),
        _ => match last_key {
            Some(k) => format!("`{k}`"),
            None => format!("`{path}`"),
        },
    }
}

/// The key a field path ends with (`steps[0].retry` -> `retry`); `None` when it ends with an
/// index.
pub(super) fn last_key(path: &str) -> Option<String> {
    if let Some(inner) = path.strip_suffix("\"]") {
        let start = inner.rfind("[\"")?;
        return serde_json::from_str(&path[start + 1..path.len() - 1]).ok();
    }
    if path.ends_with(']') || path.is_empty() {
        return None;
    }
    Some(path.rsplit('.').next().unwrap_or(path).to_string())
}

/// How a message names the field at `path`: its key, or the whole path for list items.
pub(super) fn field_name(path: &str) -> String {
    match last_key(path) {
        Some(k) => format!("`{k}`"),
        None if path.is_empty() => "the document".into(),
        None => format!("`{path}`"),
    }
}

pub(super) fn field_name_of(segments: &[Seg]) -> String {
    match segments.last() {
        Some(Seg::Key(k)) => format!("`{k}`"),
        Some(Seg::Index(_)) | None => "value".into(),
    }
}

pub(super) fn type_phrase(t: &str) -> &'static str {
    match t {
        "object" => "a mapping",
        "array" => "a list",
        "string" => "a string",
        "integer" => "an integer",
        "number" => "a number",
        "boolean" => "true or false",
        "null" => "empty",
        _ => "a value",
    }
}

pub(super) fn expected_types(node: &Value) -> String {
    let types: Vec<&str> = match node.get("type") {
        Some(Value::String(s)) => vec![s.as_str()],
        Some(Value::Array(a)) => a
            .iter()
            .filter_map(Value::as_str)
            .filter(|t| *t != "null")
            .collect(),
        _ => Vec::new(),
    };
    let phrases: Vec<&str> = types.into_iter().map(type_phrase).collect();
    if phrases.is_empty() {
        "another type".into()
    } else {
        phrases.join(" or ")
    }
}

pub(super) fn allowed_values(node: &Value) -> Vec<String> {
    let from_enum = node.get("enum").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|v| v.as_str().map(str::to_string))
            .collect::<Vec<_>>()
    });
    let from_one_of = node.get("oneOf").and_then(Value::as_array).map(|a| {
        a.iter()
            .filter_map(|b| b.get("const").and_then(Value::as_str).map(str::to_string))
            .collect::<Vec<_>>()
    });
    from_enum.or(from_one_of).unwrap_or_default()
}

/// What was found instead of the expected type: "a string (`1`)", "a list", ...
pub(super) fn describe_found(v: &Value) -> String {
    match v {
        Value::String(s) => format!("a string (`{}`)", shorten(s)),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::Bool(b) => format!("`{b}`"),
        other => describe_value(other),
    }
}

/// A value as shown in messages: `text`, a list, ...
pub(super) fn describe_value(v: &Value) -> String {
    match v {
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        Value::Null => "empty (null)".into(),
        Value::String(s) => format!("`{}`", shorten(s)),
        other => format!("`{}`", shorten(&other.to_string())),
    }
}

pub(super) fn shorten(s: &str) -> String {
    let flat = s.replace('\n', "\\n");
    if flat.chars().count() > 40 {
        format!("{}...", flat.chars().take(40).collect::<String>())
    } else {
        flat
    }
}
