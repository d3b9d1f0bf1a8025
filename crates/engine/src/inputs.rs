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
        // Only JSON's spellings: `yes`, `1` or `on` would mean true to one reader and be a
        // typo to another, and an --input-file (YAML 1.2) reads `yes` as a string too.
        InputType::Boolean => match raw.trim() {
            "true" => Ok(Value::Bool(true)),
            "false" => Ok(Value::Bool(false)),
            _ => Err(bad("a boolean: write true or false")),
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
            errors.push(format!(
                "input '{name}' must be {} but is {}",
                kind.name(),
                preview(&v)
            ));
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

/// The default cap on a run's inputs, as JSON: a run's inputs are kept in its log and shown by
/// every front end, so a value this large is almost always a mistake (a file meant for a tool).
pub const DEFAULT_MAX_INPUT_BYTES: u64 = 8 << 20;

/// A value in an error message: short values whole, long ones cut with their size.
pub fn preview(v: &Value) -> String {
    let s = v.to_string();
    if s.len() <= 80 {
        return s;
    }
    let mut end = 60;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}... ({})", &s[..end], fmt_size(s.len() as u64))
}

/// `1234` as `1.2 KiB`.
pub fn fmt_size(b: u64) -> String {
    match b {
        b if b >= 1 << 30 => format!("{:.1} GiB", b as f64 / f64::from(1u32 << 30)),
        b if b >= 1 << 20 => format!("{:.1} MiB", b as f64 / f64::from(1u32 << 20)),
        b if b >= 1 << 10 => format!("{:.1} KiB", b as f64 / 1024.0),
        b => format!("{b} B"),
    }
}

/// A size as people write it: `512`, `64K`, `8M`, `1G` (binary units; `KiB`/`MiB`/`GiB` and
/// a trailing `B` are accepted too).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let digits = t.find(|c: char| !c.is_ascii_digit()).unwrap_or(t.len());
    let (n, unit) = t.split_at(digits);
    let n: u64 = n
        .parse()
        .map_err(|_| format!("'{s}' is not a size: write e.g. 512K, 8M or 1G"))?;
    let shift = match unit.trim().to_ascii_uppercase().as_str() {
        "" | "B" => 0,
        "K" | "KB" | "KIB" => 10,
        "M" | "MB" | "MIB" => 20,
        "G" | "GB" | "GIB" => 30,
        _ => return Err(format!("'{s}' is not a size: write e.g. 512K, 8M or 1G")),
    };
    n.checked_mul(1 << shift)
        .ok_or_else(|| format!("'{s}' is too large"))
}

/// Refuses inputs whose JSON is over `limit` bytes, naming the largest ones.
pub fn check_size(inputs: &Value, limit: u64) -> Result<(), String> {
    let total = inputs.to_string().len() as u64;
    if total <= limit {
        return Ok(());
    }
    let mut sizes: Vec<(String, u64)> = inputs
        .as_object()
        .map(|m| {
            m.iter()
                .map(|(k, v)| (k.clone(), v.to_string().len() as u64))
                .collect()
        })
        .unwrap_or_default();
    sizes.sort_by_key(|s| std::cmp::Reverse(s.1));
    let largest: Vec<String> = sizes
        .iter()
        .take(3)
        .map(|(k, n)| format!("'{k}' {}", fmt_size(*n)))
        .collect();
    Err(format!(
        "the inputs are {} as JSON ({}), over the {} limit on a run's inputs; pass large data as a file a tool reads, or raise the limit (--max-input-size, BATON_MAX_INPUT_SIZE)",
        fmt_size(total),
        largest.join(", "),
        fmt_size(limit)
    ))
}

#[cfg(test)]
mod size_tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn sizes_parse_in_binary_units() {
        assert_eq!(parse_size("512").unwrap(), 512);
        assert_eq!(parse_size("64K").unwrap(), 64 << 10);
        assert_eq!(parse_size("8MiB").unwrap(), 8 << 20);
        assert_eq!(parse_size(" 1g ").unwrap(), 1 << 30);
        assert!(parse_size("8 parsecs").unwrap_err().contains("not a size"));
        assert!(parse_size("").is_err());
        assert!(
            parse_size("99999999999999G")
                .unwrap_err()
                .contains("too large")
        );
    }

    #[test]
    fn oversized_inputs_are_refused_naming_the_largest() {
        let v = json!({"small": "x", "big": "y".repeat(5000)});
        assert!(check_size(&v, 10_000).is_ok());
        let e = check_size(&v, 1000).unwrap_err();
        assert!(e.contains("'big' 4.9 KiB"), "{e}");
        assert!(e.contains("1000 B limit"), "{e}");
    }

    #[test]
    fn long_values_are_cut_in_messages() {
        let p = preview(&json!("z".repeat(100_000)));
        assert!(p.len() < 100, "{p}");
        assert!(p.ends_with("(97.7 KiB)"), "{p}");
        assert_eq!(preview(&json!(3)), "3");
    }
}
