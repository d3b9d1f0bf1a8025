//! Scalars: YAML 1.2 core schema resolution of plain scalars, and the few tags allowed.

use serde_json::{Number, Value};
use yaml_rust2::parser::Tag;
use yaml_rust2::scanner::TScalarStyle;

use super::CORE_TAG;

pub(super) fn short_handle(t: &Tag) -> String {
    if t.handle == CORE_TAG {
        "!!".into()
    } else {
        t.handle.clone()
    }
}

pub(super) fn scalar(text: &str, style: TScalarStyle, tag: Option<&Tag>) -> Result<Value, String> {
    let Some(tag) = tag else {
        return Ok(match style {
            TScalarStyle::Plain => resolve_plain(text),
            _ => Value::String(text.to_string()),
        });
    };
    if tag.handle != CORE_TAG {
        return Err(format!(
            "unsupported tag `{}{}`",
            short_handle(tag),
            tag.suffix
        ));
    }
    let resolved = resolve_plain(text);
    let bad = |what: &str| Err(format!("`{text}` is not {what} (tag `!!{}`)", tag.suffix));
    match tag.suffix.as_str() {
        "str" => Ok(Value::String(text.to_string())),
        "null" if resolved.is_null() => Ok(Value::Null),
        "null" => bad("null"),
        "bool" if resolved.is_boolean() => Ok(resolved),
        "bool" => bad("a boolean"),
        "int" if resolved.is_i64() || resolved.is_u64() => Ok(resolved),
        "int" => bad("an integer"),
        "float" => match resolved {
            Value::Number(n) => Ok(n
                .as_f64()
                .and_then(Number::from_f64)
                .map(Value::Number)
                .unwrap_or(Value::Number(n))),
            _ => bad("a number"),
        },
        other => Err(format!("unsupported tag `!!{other}`")),
    }
}

/// YAML 1.2 core schema resolution of a plain scalar.
pub(super) fn resolve_plain(s: &str) -> Value {
    match s {
        "" | "~" | "null" | "Null" | "NULL" => return Value::Null,
        "true" | "True" | "TRUE" => return Value::Bool(true),
        "false" | "False" | "FALSE" => return Value::Bool(false),
        _ => {}
    }
    if is_decimal_int(s) {
        if let Ok(i) = s.parse::<i64>() {
            return Value::Number(i.into());
        }
        if let Ok(u) = s.trim_start_matches('+').parse::<u64>() {
            return Value::Number(u.into());
        }
        return float(s);
    }
    if let Some(oct) = s
        .strip_prefix("0o")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| (b'0'..=b'7').contains(&b)))
        && let Ok(i) = i64::from_str_radix(oct, 8)
    {
        return Value::Number(i.into());
    }
    if let Some(hex) = s
        .strip_prefix("0x")
        .filter(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_hexdigit()))
        && let Ok(i) = i64::from_str_radix(hex, 16)
    {
        return Value::Number(i.into());
    }
    if is_float(s) {
        return float(s);
    }
    // `.inf` and `.nan` have no JSON form: they stay strings.
    Value::String(s.to_string())
}

pub(super) fn float(s: &str) -> Value {
    s.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map(Value::Number)
        .unwrap_or_else(|| Value::String(s.to_string()))
}

pub(super) fn is_decimal_int(s: &str) -> bool {
    let d = s.strip_prefix(['-', '+']).unwrap_or(s);
    !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit())
}

/// `[-+]?(\.[0-9]+|[0-9]+(\.[0-9]*)?)([eE][-+]?[0-9]+)?`
pub(super) fn is_float(s: &str) -> bool {
    let s = s.strip_prefix(['-', '+']).unwrap_or(s);
    let (mantissa, exp) = match s.find(['e', 'E']) {
        Some(i) => (&s[..i], Some(&s[i + 1..])),
        None => (s, None),
    };
    let mantissa_ok = match mantissa.split_once('.') {
        Some((int, frac)) => {
            int.bytes().all(|b| b.is_ascii_digit())
                && frac.bytes().all(|b| b.is_ascii_digit())
                && !(int.is_empty() && frac.is_empty())
        }
        None => !mantissa.is_empty() && mantissa.bytes().all(|b| b.is_ascii_digit()),
    };
    let exp_ok = match exp {
        None => true,
        Some(e) => {
            let e = e.strip_prefix(['-', '+']).unwrap_or(e);
            !e.is_empty() && e.bytes().all(|b| b.is_ascii_digit())
        }
    };
    mantissa_ok && exp_ok
}
