//! Run inputs: given values checked against the workflow's declared inputs, defaults filled.

use baton_types::{InputSpec, InputType, WorkflowDoc};
use serde_json::{Map, Value};

/// Parses a `--input k=v` value for an input of type `t`.
pub fn parse_cli_value(name: &str, t: InputType, raw: &str) -> Result<Value, String> {
    let bad = |why: &str| format!("input '{name}': '{raw}' is not {why}");
    match t {
        InputType::String => Ok(Value::String(raw.to_string())),
        InputType::Integer => raw
            .trim()
            .parse::<i64>()
            .map(Value::from)
            .map_err(|_| bad("an integer")),
        InputType::Number => raw
            .trim()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number)
            .ok_or_else(|| bad("a number")),
        InputType::Boolean => match raw.trim() {
            "true" | "yes" | "1" => Ok(Value::Bool(true)),
            "false" | "no" | "0" => Ok(Value::Bool(false)),
            _ => Err(bad("a boolean (true/false)")),
        },
        InputType::Array | InputType::Object => {
            serde_json::from_str(raw).map_err(|e| bad(&format!("JSON ({e})")))
        }
    }
}

fn type_matches(t: InputType, v: &Value) -> bool {
    match t {
        InputType::String => v.is_string(),
        InputType::Number => v.is_number(),
        InputType::Integer => v.is_i64() || v.is_u64(),
        InputType::Boolean => v.is_boolean(),
        InputType::Array => v.is_array(),
        InputType::Object => v.is_object(),
    }
}

/// Checks `given` against the declared inputs and fills defaults. Every problem is reported.
pub fn resolve(doc: &WorkflowDoc, given: Map<String, Value>) -> Result<Value, Vec<String>> {
    let mut errors = Vec::new();
    let mut out = Map::new();
    for k in given.keys() {
        if !doc.inputs.contains_key(k) {
            let known: Vec<&str> = doc.inputs.keys().map(String::as_str).collect();
            errors.push(if known.is_empty() {
                format!("unknown input '{k}': the workflow takes no inputs")
            } else {
                format!(
                    "unknown input '{k}' (the workflow takes: {})",
                    known.join(", ")
                )
            });
        }
    }
    for (name, spec) in &doc.inputs {
        let InputSpec {
            kind,
            default,
            allowed,
            ..
        } = spec;
        let v = match given.get(name).cloned().or_else(|| default.clone()) {
            Some(v) => v,
            None => {
                errors.push(format!(
                    "input '{name}' ({}) is required: pass --input {name}=VALUE",
                    kind.name()
                ));
                continue;
            }
        };
        if !type_matches(*kind, &v) {
            errors.push(format!("input '{name}' must be {} but is {v}", kind.name()));
            continue;
        }
        if let Some(a) = allowed
            && !a.contains(&v)
        {
            let opts: Vec<String> = a.iter().map(Value::to_string).collect();
            errors.push(format!(
                "input '{name}' is {v}, not one of {}",
                opts.join(", ")
            ));
            continue;
        }
        out.insert(name.clone(), v);
    }
    if errors.is_empty() {
        Ok(Value::Object(out))
    } else {
        Err(errors)
    }
}
