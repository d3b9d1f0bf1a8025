//! Templates and expressions evaluated against a run's context (the context itself is built
//! by the run state: [`crate::machine::RunState::template_context`]). Names are the compiled
//! templates' (`<step>.prompt`, `<step>.with/<key>`, `outputs.<name>`...) so errors say which
//! field failed.

use baton_types::{StepError, StepErrorKind};
use minijinja::Value as MjValue;
use serde_json::Value;

use crate::program::Program;
use crate::template;

fn template_error(what: &str, e: &minijinja::Error) -> StepError {
    StepError::fatal(
        StepErrorKind::Template,
        format!("{what}: {}", template::describe(e)),
    )
}

/// Renders the compiled template `name`.
pub fn render(program: &Program, name: &str, ctx: &MjValue) -> Result<String, StepError> {
    let t = program
        .env
        .get_template(name)
        .map_err(|e| template_error(name, &e))?;
    t.render(ctx).map_err(|e| template_error(name, &e))
}

/// Evaluates an expression.
pub fn eval(
    program: &Program,
    what: &str,
    expr: &str,
    ctx: &MjValue,
) -> Result<MjValue, StepError> {
    let e = program
        .env
        .compile_expression(expr)
        .map_err(|e| template_error(what, &e))?;
    e.eval(ctx).map_err(|e| template_error(what, &e))
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
