//! The shape of a document: its JSON value checked against the format's JSON Schema, every
//! error turned into a message a person can act on, then the [`WorkflowDoc`] with its steps as
//! written. Finding things in the schema is `nav`, wording messages `words`, and finding the
//! field serde refused after the schema passed `blame`.

mod blame;
mod nav;
mod words;

use std::sync::OnceLock;

use baton_types::{StepFields, WorkflowDoc};
use jsonschema::error::ValidationErrorKind;
use serde_json::{Value, json};

use self::blame::blame;
use self::nav::{Seg, def_of, lookup, node_at};
use self::words::{
    allowed_values, describe_found, describe_object, describe_value, expected_types, field_name,
    field_name_of,
};
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

/// Checks `value` against the schema and, when it passes, makes it a [`WorkflowDoc`] whose
/// steps are as written (their kinds are checked next).
pub(super) fn check(
    file: &str,
    value: &Value,
    spans: &SpanMap,
) -> Result<WorkflowDoc<StepFields>, Vec<Diagnostic>> {
    // Fast path: a document serde accepts is valid under the schema too (unknown keys,
    // types, enums, required keys and durations are all checked by the typed decoding), and
    // compiling the schema validator costs tens of milliseconds of every `baton run`. Only a
    // document with problems pays for the full check, which reports every problem at once.
    if let Ok(doc) = serde_json::from_value::<WorkflowDoc<StepFields>>(value.clone()) {
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
        return match serde_json::from_value::<WorkflowDoc<StepFields>>(value.clone()) {
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
        let at = At {
            root,
            start,
            here: node_at(root, start, &segments),
            found: lookup(instance, &segments),
            segments,
            path,
        };
        match &error.kind {
            ValidationErrorKind::AdditionalProperties { unexpected } => {
                unknown_keys(&at, unexpected, out);
            }
            ValidationErrorKind::Required { property } => {
                let what = at.describe_object();
                let name = property.as_str().unwrap_or_default();
                out.push((at.path, format!("missing required key `{name}` in {what}")));
            }
            ValidationErrorKind::Type { .. } => {
                let expected = at
                    .here
                    .as_ref()
                    .map(expected_types)
                    .unwrap_or_else(|| "another type".into());
                let m = format!(
                    "{} must be {expected}, not {}",
                    field_name(&at.path),
                    describe_found(&error.instance)
                );
                out.push((at.path, m));
            }
            ValidationErrorKind::AnyOf => any_of(at, &error, out),
            ValidationErrorKind::OneOfNotValid | ValidationErrorKind::Enum { .. } => {
                let m = not_allowed(&at, &error.instance);
                out.push((at.path, m));
            }
            ValidationErrorKind::Pattern { .. } => {
                let m = no_match(&at, &error.instance);
                out.push((at.path, m));
            }
            ValidationErrorKind::Minimum { limit } => {
                let m = format!(
                    "{} must be at least {limit}, not {}",
                    field_name(&at.path),
                    error.instance
                );
                out.push((at.path, m));
            }
            ValidationErrorKind::Maximum { limit } => {
                let m = format!(
                    "{} must be at most {limit}, not {}",
                    field_name(&at.path),
                    error.instance
                );
                out.push((at.path, m));
            }
            ValidationErrorKind::MinItems { limit } | ValidationErrorKind::MaxItems { limit } => {
                let n = error.instance.as_array().map_or(0, Vec::len);
                let few = matches!(error.kind, ValidationErrorKind::MinItems { .. });
                let m = format!(
                    "{} must have {} {limit} item{}, not {n}",
                    field_name(&at.path),
                    if few { "at least" } else { "at most" },
                    if *limit == 1 { "" } else { "s" }
                );
                out.push((at.path, m));
            }
            _ => out.push((at.path, error.to_string())),
        }
    }
}

/// Where a schema error is: in the document and in the schema.
struct At<'s, 'v> {
    root: &'s Value,
    start: &'s Value,
    /// The schema of the value (refs followed, nullable unwrapped).
    here: Option<Value>,
    /// The value itself.
    found: Option<&'v Value>,
    segments: Vec<Seg>,
    path: String,
}

impl At<'_, '_> {
    fn describe_object(&self) -> String {
        describe_object(
            self.root,
            self.start,
            &self.segments,
            self.found,
            &self.path,
        )
    }
}

fn unknown_keys(at: &At, unexpected: &[String], out: &mut Vec<(String, String)>) {
    let expected: Vec<&str> = at
        .here
        .as_ref()
        .and_then(|n| n.get("properties"))
        .and_then(Value::as_object)
        .map(|p| p.keys().map(String::as_str).collect())
        .unwrap_or_default();
    let what = at.describe_object();
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
            key_path(&at.path, key),
            format!("unknown key `{key}` in {what}{extra}"),
        ));
    }
}

/// `Option<T>` fields are `anyOf: [T, null]`; `here` is already the `T`: report why the value
/// is not one.
fn any_of(at: At, error: &jsonschema::ValidationError, out: &mut Vec<(String, String)>) {
    let Some(only) = at.here.as_ref().filter(|n| n.get("anyOf").is_none()) else {
        out.push((at.path, error.to_string()));
        return;
    };
    let mut sub = only.clone();
    if let (Value::Object(o), Some(defs)) = (&mut sub, at.root.get("$defs")) {
        o.insert("$defs".into(), defs.clone());
    }
    match jsonschema::validator_for(&sub) {
        Ok(v) => {
            let before = out.len();
            collect(at.root, only, &v, &error.instance, &at.path, out);
            if out.len() == before {
                let m = format!("invalid value for {}", field_name_of(&at.segments));
                out.push((at.path, m));
            }
        }
        Err(_) => out.push((at.path, error.to_string())),
    }
}

/// A value outside an enum: the allowed ones, and the closest.
fn not_allowed(at: &At, instance: &Value) -> String {
    let allowed = at.here.as_ref().map(allowed_values).unwrap_or_default();
    let shown = describe_value(instance);
    let mut msg = format!("{shown} is not a valid {}", field_name_of(&at.segments));
    if !allowed.is_empty() {
        let word = instance.as_str().unwrap_or_default();
        msg.push_str(&format!(
            "; expected one of: {}{}",
            list(allowed.iter().map(String::as_str)),
            hint(word, allowed.iter().map(String::as_str))
        ));
    }
    msg
}

/// A string that does not match its pattern: what the pattern is for.
fn no_match(at: &At, instance: &Value) -> String {
    let shown = describe_value(instance);
    let def = at.here.as_ref().and_then(|n| def_of(at.root, n));
    match def {
        Some("Duration") => {
            format!("{shown} is not a duration; write e.g. `500ms`, `10s`, `2m` or `1h 30m`")
        }
        Some("OnError") => {
            format!("{shown} is not an `on_error` action; write `fail`, `continue` or `goto STEP`")
        }
        _ => {
            let d = at
                .here
                .as_ref()
                .and_then(|n| n.get("description"))
                .and_then(Value::as_str)
                .unwrap_or("the expected form");
            format!("{shown} does not match {d}")
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
        assert!(all.contains("`al` is not a valid `strategy`; expected one of: `all`, `any`, `first_success`, `vote`, `priority`, `merge`, `judge`; did you mean `all`?"), "{all}");
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
