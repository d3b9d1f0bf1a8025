//! `${NAME}` and `${NAME:-default}` in model references.

use super::process_env;

/// Expands `${NAME}` and `${NAME:-default}` in a model reference, as workflows write agents'
/// models (an empty variable counts as unset). Validation checks a workflow's references with
/// it and the engine resolves the same expansion.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{s}` has a `${{` without its closing `}}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (process_env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the model reference `{s}` uses the environment variable `{name}`, which is not set; set it or give a default: `${{{name}:-provider/model}}`"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}
