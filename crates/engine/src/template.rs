//! Templates and expressions (minijinja) over `inputs`, `steps.<id>.output`, `state`, `run`
//! (and the item name inside a `map`).
//!
//! Undefined names are errors (strict mode), so a typo fails the step with a clear message
//! instead of rendering an empty string. `x is defined` still works for optional values.

use minijinja::{Environment, UndefinedBehavior, Value};

/// A fresh environment with Baton's settings and filters.
pub fn environment() -> Environment<'static> {
    let mut env = Environment::new();
    env.set_undefined_behavior(UndefinedBehavior::Strict);
    env.set_keep_trailing_newline(true);
    // Prompts are text, not HTML.
    env.set_auto_escape_callback(|_| minijinja::AutoEscape::None);
    env.add_filter("fromjson", fromjson);
    env
}

fn fromjson(s: String) -> Result<Value, minijinja::Error> {
    serde_json::from_str::<serde_json::Value>(&s)
        .map(|v| Value::from_serialize(&v))
        .map_err(|e| {
            minijinja::Error::new(
                minijinja::ErrorKind::InvalidOperation,
                format!("fromjson: {e}"),
            )
        })
}

/// Checks the syntax of a template; the error says what and where (line in the template).
pub fn check_template(src: &str) -> Result<(), String> {
    let env = environment();
    env.template_from_str(src)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Checks the syntax of an expression.
pub fn check_expression(src: &str) -> Result<(), String> {
    let env = environment();
    env.compile_expression(src)
        .map(|_| ())
        .map_err(|e| describe(&e))
}

/// Names (dotted paths such as `steps.review.output`) a template reads from its context.
pub fn template_references(src: &str) -> Vec<String> {
    let env = environment();
    match env.template_from_str(src) {
        Ok(t) => {
            let mut v: Vec<String> = t.undeclared_variables(true).into_iter().collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// Names an expression reads from its context.
pub fn expression_references(src: &str) -> Vec<String> {
    let env = environment();
    match env.compile_expression(src) {
        Ok(e) => {
            let mut v: Vec<String> = e.undeclared_variables(true).into_iter().collect();
            v.sort();
            v
        }
        Err(_) => Vec::new(),
    }
}

/// A template error as one line: the kind, the detail and the line within the template.
pub fn describe(e: &minijinja::Error) -> String {
    let mut s = match e.detail() {
        Some(d) => format!("{}: {d}", e.kind()),
        None => e.kind().to_string(),
    };
    if let Some(line) = e.line() {
        s.push_str(&format!(" (template line {line})"));
    }
    s
}

/// If `src` is exactly one `{{ expression }}`, the expression (so its value keeps its type).
pub fn sole_expression(src: &str) -> Option<&str> {
    let t = src.trim();
    let inner = t.strip_prefix("{{")?.strip_suffix("}}")?;
    if inner.contains("{{") || inner.contains("}}") || inner.contains("{%") {
        return None;
    }
    Some(inner.trim())
}

/// Whether a string needs rendering at all.
pub fn is_template(src: &str) -> bool {
    src.contains("{{") || src.contains("{%") || src.contains("{#")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn syntax_errors_are_caught() {
        assert!(check_template("hello {{ name }}").is_ok());
        let e = check_template("hello {{ name ").unwrap_err();
        assert!(e.contains("syntax error"), "{e}");
        assert!(check_expression("a and").is_err());
    }

    #[test]
    fn references_are_dotted() {
        let r = template_references("{{ steps.review.output }} and {{ inputs.idea }}");
        assert!(r.contains(&"steps.review.output".to_string()), "{r:?}");
        assert!(r.contains(&"inputs.idea".to_string()), "{r:?}");
    }

    #[test]
    fn sole_expression_detection() {
        assert_eq!(
            sole_expression("{{ steps.a.output }}"),
            Some("steps.a.output")
        );
        assert_eq!(sole_expression("x {{ a }}"), None);
        assert_eq!(sole_expression("{{ a }}{{ b }}"), None);
    }
}
