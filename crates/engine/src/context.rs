//! What templates and expressions see: `inputs`, `steps.<id>.output` (and `.error`), `state`,
//! `run`, and inside a `map` the item (default name `item`) and `loop.index`.

use baton_types::{StepError, StepErrorKind};
use minijinja::Value as MjValue;
use serde_json::{Map, Value};

use crate::machine::RunState;
use crate::program::Program;
use crate::template;

/// Splits a step path `id[2][0]` into `id` and `[2][0]`.
pub fn split_path(path: &str) -> (&str, &str) {
    match path.find('[') {
        Some(i) => (&path[..i], &path[i..]),
        None => (path, ""),
    }
}

/// The context of a step running in frame `frame`.
pub fn build(program: &Program, st: &RunState, frame: u32) -> MjValue {
    MjValue::from_serialize(build_json(program, st, frame))
}

pub fn build_json(program: &Program, st: &RunState, frame: u32) -> Value {
    let suffix = st.frame_suffix(frame);
    let mut steps: Map<String, Value> = Map::new();
    // For each step id, the output of the innermost iteration that encloses this frame.
    let mut best: std::collections::HashMap<&str, usize> = std::collections::HashMap::new();
    for (path, out) in &st.outputs {
        let (id, sfx) = split_path(path);
        if !suffix.starts_with(sfx) {
            continue;
        }
        if best.get(id).is_some_and(|&l| l > sfx.len()) {
            continue;
        }
        best.insert(id, sfx.len());
        let mut o = Map::new();
        o.insert("output".into(), out.clone());
        if let Some(e) = st.errors.get(path) {
            o.insert("error".into(), Value::String(e.clone()));
        }
        steps.insert(id.to_string(), Value::Object(o));
    }
    let mut ctx = Map::new();
    ctx.insert("inputs".into(), st.inputs.clone());
    ctx.insert("steps".into(), Value::Object(steps));
    ctx.insert("state".into(), Value::Object(st.state.clone()));
    ctx.insert(
        "run".into(),
        serde_json::json!({ "id": st.run_id.to_string(), "workflow": program.doc.name }),
    );
    for (name, value, index) in st.bindings(frame) {
        ctx.insert(name, value);
        ctx.insert(
            "loop".into(),
            serde_json::json!({ "index": index, "index1": index + 1 }),
        );
    }
    Value::Object(ctx)
}

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
