//! The shape of a document: its JSON value checked against the format's JSON Schema, every
//! error turned into a message a person can act on, then the typed [`WorkflowDoc`].

use std::sync::OnceLock;

use baton_types::WorkflowDoc;
use jsonschema::error::ValidationErrorKind;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use super::suggest::{hint, list, paren_hint};
use super::{Diagnostic, SpanMap, diagnostic_at, index_path, key_path};

/// The format's schema as validation uses it: integers of `format: uint32` also get their
/// maximum, so a value that would not fit is a schema error with a position.
pub(super) fn schema() -> &'static Value {
    static SCHEMA: OnceLock<Value> = OnceLock::new();
    SCHEMA.get_or_init(|| {
        let mut s = baton_types::workflow_schema();
        add_uint32_maximum(&mut s);
        s
    })
}

fn add_uint32_maximum(v: &mut Value) {
    match v {
        Value::Object(o) => {
            if o.get("format").and_then(Value::as_str) == Some("uint32")
                && !o.contains_key("maximum")
            {
                o.insert("maximum".into(), json!(u32::MAX));
            }
            o.values_mut().for_each(add_uint32_maximum);
        }
        Value::Array(a) => a.iter_mut().for_each(add_uint32_maximum),
        _ => {}
    }
}

fn validator() -> Result<&'static jsonschema::Validator, String> {
    static VALIDATOR: OnceLock<Result<jsonschema::Validator, String>> = OnceLock::new();
    VALIDATOR
        .get_or_init(|| jsonschema::validator_for(schema()).map_err(|e| e.to_string()))
        .as_ref()
        .map_err(Clone::clone)
}

/// Checks `value` against the schema and, when it passes, makes it a [`WorkflowDoc`].
pub(super) fn check(
    file: &str,
    value: &Value,
    spans: &SpanMap,
) -> Result<WorkflowDoc, Vec<Diagnostic>> {
    // Fast path: a document serde accepts is valid under the schema too (unknown keys,
    // types, enums, required keys and durations are all checked by the typed decoding), and
    // compiling the schema validator costs tens of milliseconds of every `baton run`. Only a
    // document with problems pays for the full check, which reports every problem at once.
    if let Ok(doc) = serde_json::from_value::<WorkflowDoc>(value.clone()) {
        return Ok(doc);
    }
    let mut problems: Vec<(String, String)> = Vec::new();
    match validator() {
        Ok(v) => collect(schema(), schema(), v, value, "", &mut problems),
        Err(e) => problems.push((
            String::new(),
            format!("internal error: the workflow schema does not compile: {e}"),
        )),
    }
    if problems.is_empty() {
        return match serde_json::from_value::<WorkflowDoc>(value.clone()) {
            Ok(doc) => Ok(doc),
            Err(e) => {
                let (path, message) = blame(value).unwrap_or((String::new(), e.to_string()));
                Err(vec![diagnostic_at(file, spans, path, message)])
            }
        };
    }
    let mut out: Vec<Diagnostic> = problems
        .into_iter()
        .map(|(p, m)| diagnostic_at(file, spans, p, m))
        .collect();
    out.sort_by(|a, b| {
        (a.line, a.column, &a.path, &a.message).cmp(&(b.line, b.column, &b.path, &b.message))
    });
    out.dedup();
    Err(out)
}

/// Runs `validator` on `instance` (found at `base`, checked against `start` inside `root`) and
/// turns each error into `(path, message)`.
fn collect(
    root: &Value,
    start: &Value,
    validator: &jsonschema::Validator,
    instance: &Value,
    base: &str,
    out: &mut Vec<(String, String)>,
) {
    for error in validator.iter_errors(instance) {
        let (path, segments) = pointer_to_path(instance, error.instance_path.as_str(), base);
        let here = node_at(root, start, &segments);
        let found = lookup(instance, &segments);
        match &error.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                let expected: Vec<&str> = here
                    .as_ref()
                    .and_then(|n| n.get("properties"))
                    .and_then(Value::as_object)
                    .map(|p| p.keys().map(String::as_str).collect())
                    .unwrap_or_default();
                let what = describe_object(root, start, &segments, found, &path);
                for key in unexpected {
                    let extra = if key == "<<" {
                        " (YAML merge keys are not supported: write the keys out)".to_string()
                    } else {
                        format!(
                            "{}; expected one of: {}",
                            paren_hint(key, expected.iter().copied()),
                            list(expected.iter().copied())
                        )
                    };
                    out.push((
                        key_path(&path, key),
                        format!("unknown key `{key}` in {what}{extra}"),
                    ));
                }
            }
            ValidationErrorKind::Required { property } => {
                let what = describe_object(root, start, &segments, found, &path);
                let name = property.as_str().unwrap_or_default();
                out.push((path, format!("missing required key `{name}` in {what}")));
            }
            ValidationErrorKind::Type { .. } => {
                let expected = here
                    .as_ref()
                    .map(expected_types)
                    .unwrap_or_else(|| "another type".into());
                out.push((
                    path.clone(),
                    format!(
                        "{} must be {expected}, not {}",
                        field_name(&path),
                        describe_found(&error.instance)
                    ),
                ));
            }
            ValidationErrorKind::AnyOf => {
                // `Option<T>` fields are `anyOf: [T, null]`; `here` is already the `T`: report
                // why the value is not one.
                match here.as_ref().filter(|n| n.get("anyOf").is_none()) {
                    Some(only) => {
                        let mut sub = only.clone();
                        if let (Value::Object(o), Some(defs)) = (&mut sub, root.get("$defs")) {
                            o.insert("$defs".into(), defs.clone());
                        }
                        match jsonschema::validator_for(&sub) {
                            Ok(v) => {
                                let before = out.len();
                                collect(root, only, &v, &error.instance, &path, out);
                                if out.len() == before {
                                    out.push((
                                        path,
                                        format!("invalid value for {}", field_name_of(&segments)),
                                    ));
                                }
                            }
                            Err(_) => out.push((path, error.to_string())),
                        }
                    }
                    None => out.push((path, error.to_string())),
                }
            }
            ValidationErrorKind::OneOfNotValid | ValidationErrorKind::Enum { .. } => {
                let allowed = here.as_ref().map(allowed_values).unwrap_or_default();
                let shown = describe_value(&error.instance);
                let mut msg = format!("{shown} is not a valid {}", field_name_of(&segments));
                if !allowed.is_empty() {
                    let word = error.instance.as_str().unwrap_or_default();
                    msg.push_str(&format!(
                        "; expected one of: {}{}",
                        list(allowed.iter().map(String::as_str)),
                        hint(word, allowed.iter().map(String::as_str))
                    ));
                }
                out.push((path, msg));
            }
            ValidationErrorKind::Pattern { .. } => {
                let shown = describe_value(&error.instance);
                let def = here.as_ref().and_then(|n| def_of(root, n));
                let msg = match def {
                    Some("Duration") => format!(
                        "{shown} is not a duration; write e.g. `500ms`, `10s`, `2m` or `1h 30m`"
                    ),
                    Some("OnError") => format!(
                        "{shown} is not an `on_error` action; write `fail`, `continue` or `goto STEP`"
                    ),
                    _ => {
                        let d = here
                            .as_ref()
                            .and_then(|n| n.get("description"))
                            .and_then(Value::as_str)
                            .unwrap_or("the expected form");
                        format!("{shown} does not match {d}")
                    }
                };
                out.push((path, msg));
            }
            ValidationErrorKind::Minimum { limit } => {
                out.push((
                    path.clone(),
                    format!(
                        "{} must be at least {limit}, not {}",
                        field_name(&path),
                        error.instance
                    ),
                ));
            }
            ValidationErrorKind::Maximum { limit } => {
                out.push((
                    path.clone(),
                    format!(
                        "{} must be at most {limit}, not {}",
                        field_name(&path),
                        error.instance
                    ),
                ));
            }
            _ => out.push((path, error.to_string())),
        }
    }
}

/// A JSON pointer into `instance` as a field path (below `base`) and its segments.
fn pointer_to_path(instance: &Value, pointer: &str, base: &str) -> (String, Vec<Seg>) {
    let mut path = base.to_string();
    let mut segments = Vec::new();
    let mut cur = Some(instance);
    for raw in pointer.split('/').skip(1) {
        let token = raw.replace("~1", "/").replace("~0", "~");
        match cur {
            Some(Value::Array(a)) => {
                let i = token.parse::<usize>().unwrap_or(0);
                path = index_path(&path, i);
                cur = a.get(i);
                segments.push(Seg::Index(i));
            }
            other => {
                path = key_path(&path, &token);
                cur = other.and_then(|v| v.get(&token));
                segments.push(Seg::Key(token));
            }
        }
    }
    (path, segments)
}

#[derive(Clone, Debug)]
enum Seg {
    Key(String),
    Index(usize),
}

fn lookup<'v>(instance: &'v Value, segments: &[Seg]) -> Option<&'v Value> {
    segments.iter().try_fold(instance, |v, s| match s {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

/// Follows `$ref`s into `root`'s `$defs`.
fn deref<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        match node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            Some(name) => match root.get("$defs").and_then(|d| d.get(name)) {
                Some(n) => node = n,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

/// The `T` of `anyOf: [T, null]`, else the node itself.
fn non_null(root: &Value, node: &Value) -> Option<Value> {
    let node = deref(root, node);
    if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
        let mut others = branches
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"));
        if let (Some(one), None) = (others.next(), others.next()) {
            return Some(deref(root, one).clone());
        }
    }
    Some(node.clone())
}

/// The schema (refs followed, nullable unwrapped) of the value at `segments`.
fn node_at(root: &Value, start: &Value, segments: &[Seg]) -> Option<Value> {
    let mut node = non_null(root, start)?;
    for s in segments {
        let next = match s {
            Seg::Key(k) => node
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            Seg::Index(_) => node.get("items")?,
        };
        node = non_null(root, next)?;
    }
    Some(node)
}

/// The `$defs` name of the type at `segments`, when it has one.
fn def_name(root: &Value, start: &Value, segments: &[Seg]) -> Option<String> {
    let mut node = start;
    let mut name = ref_name(node);
    for s in segments {
        let here = deref(root, unwrap_any(root, node));
        node = match s {
            Seg::Key(k) => here
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| here.get("additionalProperties").filter(|a| a.is_object()))?,
            Seg::Index(_) => here.get("items")?,
        };
        name = ref_name(unwrap_any(root, node));
    }
    name
}

fn unwrap_any<'s>(root: &'s Value, node: &'s Value) -> &'s Value {
    let node = deref(root, node)
        .get("anyOf")
        .map(|_| deref(root, node))
        .unwrap_or(node);
    match node.get("anyOf").and_then(Value::as_array) {
        Some(b) => b
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .unwrap_or(node),
        None => node,
    }
}

/// The name of the `$defs` entry that is exactly `node`.
fn def_of<'s>(root: &'s Value, node: &Value) -> Option<&'s str> {
    root.get("$defs")?
        .as_object()?
        .iter()
        .find(|(_, d)| *d == node)
        .map(|(k, _)| k.as_str())
}

fn ref_name(node: &Value) -> Option<String> {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_string)
}

/// "step `review`", "agent `pm`", "the workflow", ...
fn describe_object(
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
fn last_key(path: &str) -> Option<String> {
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
fn field_name(path: &str) -> String {
    match last_key(path) {
        Some(k) => format!("`{k}`"),
        None if path.is_empty() => "the document".into(),
        None => format!("`{path}`"),
    }
}

fn field_name_of(segments: &[Seg]) -> String {
    match segments.last() {
        Some(Seg::Key(k)) => format!("`{k}`"),
        Some(Seg::Index(_)) | None => "value".into(),
    }
}

fn type_phrase(t: &str) -> &'static str {
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

fn expected_types(node: &Value) -> String {
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

fn allowed_values(node: &Value) -> Vec<String> {
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
fn describe_found(v: &Value) -> String {
    match v {
        Value::String(s) => format!("a string (`{}`)", shorten(s)),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::Bool(b) => format!("`{b}`"),
        other => describe_value(other),
    }
}

/// A value as shown in messages: `text`, a list, ...
fn describe_value(v: &Value) -> String {
    match v {
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        Value::Null => "empty (null)".into(),
        Value::String(s) => format!("`{}`", shorten(s)),
        other => format!("`{}`", shorten(&other.to_string())),
    }
}

fn shorten(s: &str) -> String {
    let flat = s.replace('\n', "\\n");
    if flat.chars().count() > 40 {
        format!("{}...", flat.chars().take(40).collect::<String>())
    } else {
        flat
    }
}

/// Finds the field that made deserialization fail (the schema lets a few values through that
/// serde refuses, such as `10 parsecs` as a duration).
fn blame(doc: &Value) -> Option<(String, String)> {
    let obj = doc.as_object()?;
    for (key, v) in obj {
        let path = key_path("", key);
        let found = match key.as_str() {
            "steps" => blame_steps(v, &path),
            "agents" => blame_entries::<baton_types::AgentSpec>(v, &path, "model", json!("x/y")),
            "inputs" => blame_entries::<baton_types::InputSpec>(v, &path, "type", json!("string")),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        let mut only = serde_json::Map::new();
        only.insert("version".into(), json!(1));
        only.insert("name".into(), json!("x"));
        only.insert("steps".into(), json!([]));
        only.insert(key.clone(), v.clone());
        if let Err(e) = serde_json::from_value::<WorkflowDoc>(Value::Object(only)) {
            return Some((path, e.to_string()));
        }
    }
    None
}

fn blame_steps(list: &Value, path: &str) -> Option<(String, String)> {
    for (i, step) in list.as_array()?.iter().enumerate() {
        let sp = index_path(path, i);
        let Some(fields) = step.as_object() else {
            continue;
        };
        for (k, v) in fields {
            let fp = key_path(&sp, k);
            if k == "parallel" || k == "steps" {
                if let Some(found) = blame_steps(v, &fp) {
                    return Some(found);
                }
                continue;
            }
            if k == "id" {
                continue;
            }
            if let Err(e) = from::<baton_types::Step>(json!({ "id": "x", k.as_str(): v })) {
                return Some((fp, e));
            }
        }
    }
    None
}

fn blame_entries<T: DeserializeOwned>(
    map: &Value,
    path: &str,
    required: &str,
    filler: Value,
) -> Option<(String, String)> {
    for (name, entry) in map.as_object()? {
        let ep = key_path(path, name);
        for (k, v) in entry.as_object()? {
            let mut one = serde_json::Map::new();
            one.insert(required.into(), filler.clone());
            one.insert(k.clone(), v.clone());
            if let Err(e) = from::<T>(Value::Object(one)) {
                return Some((key_path(&ep, k), e));
            }
        }
    }
    None
}

fn from<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn problems(v: Value) -> Vec<String> {
        let spans = SpanMap::new();
        match check("w.yaml", &v, &spans) {
            Ok(_) => Vec::new(),
            Err(d) => d
                .into_iter()
                .map(|d| format!("{} @ {}", d.message, d.path))
                .collect(),
        }
    }

    #[test]
    fn the_schema_compiles() {
        assert!(validator().is_ok());
    }

    #[test]
    fn friendly_messages() {
        let p = problems(json!({
            "version": "1", "name": "x",
            "steps": [{"id": "a", "agnt": "pm", "timeout": "ten", "on_error": "retry", "switch": {"cases": [{"when": "x"}]}, "join": {"strategy": "al"}}],
            "inputs": {"i": {"type": "strin"}}
        }));
        let all = p.join("\n");
        assert!(
            all.contains("`version` must be an integer, not a string (`1`) @ version"),
            "{all}"
        );
        assert!(
            all.contains(
                "unknown key `agnt` in step `a` (did you mean `agent`?); expected one of: `id`,"
            ),
            "{all}"
        );
        assert!(all.contains("`ten` is not a duration"), "{all}");
        assert!(all.contains("`retry` is not an `on_error` action"), "{all}");
        assert!(
            all.contains("missing required key `goto` in a switch case @ steps[0].switch.cases[0]"),
            "{all}"
        );
        assert!(all.contains("`al` is not a valid `strategy`; expected one of: `all`, `any`, `first_success`; did you mean `all`?"), "{all}");
        assert!(all.contains("`strin` is not a valid `type`"), "{all}");
    }

    #[test]
    fn serde_failures_are_located() {
        let p = problems(
            json!({"version": 1, "name": "x", "steps": [{"id": "a", "tool": "echo", "timeout": "10 parsecs"}]}),
        );
        assert_eq!(p.len(), 1);
        assert!(p[0].ends_with("@ steps[0].timeout"), "{p:?}");
        assert!(p[0].contains("is not a duration"), "{p:?}");
    }

    #[test]
    fn too_large_integers() {
        let p = problems(
            json!({"version": 1, "name": "x", "steps": [{"id": "a", "tool": "echo", "max_visits": 5_000_000_000u64}]}),
        );
        assert_eq!(
            p,
            vec!["`max_visits` must be at most 4294967295, not 5000000000 @ steps[0].max_visits"]
        );
    }
}
