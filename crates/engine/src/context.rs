//! Templates and expressions evaluated against a run's context (the context itself is built
//! by the run state: [`crate::machine::RunState::template_context`]). Names are the compiled
//! templates' (`<step>.prompt`, `<step>.with/<key>`, `outputs.<name>`...) so errors say which
//! field failed.

use baton_types::{StepError, StepErrorKind};
use minijinja::Value as MjValue;
use serde_json::Value;

use crate::program::Program;
use crate::template;

fn template_error(what: &str, src: &str, e: &minijinja::Error) -> StepError {
    StepError::fatal(
        StepErrorKind::Template,
        format!("{what}: {} in `{}`", template::describe(e), excerpt(src, e)),
    )
}

/// The part of `src` an error is about (minijinja's span when it has one), else all of it;
/// cut to a readable length.
fn excerpt<'a>(src: &'a str, e: &minijinja::Error) -> std::borrow::Cow<'a, str> {
    let part = e
        .range()
        .and_then(|r| src.get(r))
        .filter(|p| !p.trim().is_empty())
        .unwrap_or(src)
        .trim();
    if part.chars().count() <= 120 {
        return part.into();
    }
    let cut: String = part.chars().take(117).collect();
    format!("{cut}...").into()
}

fn undefined(what: &str, expr: &str) -> StepError {
    StepError::fatal(
        StepErrorKind::Template,
        format!(
            "{what}: undefined value: `{expr}` names nothing (use `{expr} is defined` or `{expr} | default(...)` for optional values)"
        ),
    )
}

/// Renders the compiled template `name`.
pub fn render(program: &Program, name: &str, ctx: &MjValue) -> Result<String, StepError> {
    let t = program
        .env
        .get_template(name)
        .map_err(|e| template_error(name, "", &e))?;
    t.render(ctx)
        .map_err(|e| template_error(name, t.source(), &e))
}

/// Evaluates an expression. An expression whose value is undefined (`state.nokey`,
/// `steps.x.output[7]`) is an error, as in templates: only `is defined` and `default` make a
/// name optional.
pub fn eval(
    program: &Program,
    what: &str,
    expr: &str,
    ctx: &MjValue,
) -> Result<MjValue, StepError> {
    let e = program
        .env
        .compile_expression(expr)
        .map_err(|e| template_error(what, expr, &e))?;
    let v = e.eval(ctx).map_err(|e| template_error(what, expr, &e))?;
    if v.is_undefined() {
        return Err(undefined(what, expr));
    }
    Ok(v)
}

/// A template value as JSON (`null` for what JSON cannot hold).
pub fn to_json(v: &MjValue) -> Value {
    serde_json::to_value(v).unwrap_or(Value::Null)
}

/// Renders tool arguments: strings with templates are rendered; a string that is a single
/// `{{ expression }}` keeps the expression's type (a list stays a list).
pub fn render_args(
    program: &Program,
    name: &str,
    v: &Value,
    ctx: &MjValue,
) -> Result<Value, StepError> {
    Ok(match v {
        Value::String(s) if template::is_template(s) => match template::sole_expression(s) {
            Some(expr) => to_json(&eval(program, name, expr, ctx)?),
            None => Value::String(render(program, name, ctx)?),
        },
        Value::Array(a) => Value::Array(
            a.iter()
                .enumerate()
                .map(|(i, x)| render_args(program, &format!("{name}/{i}"), x, ctx))
                .collect::<Result<_, _>>()?,
        ),
        Value::Object(m) => Value::Object(
            m.iter()
                .map(|(k, x)| {
                    Ok((
                        k.clone(),
                        render_args(program, &format!("{name}/{k}"), x, ctx)?,
                    ))
                })
                .collect::<Result<_, StepError>>()?,
        ),
        other => other.clone(),
    })
}
