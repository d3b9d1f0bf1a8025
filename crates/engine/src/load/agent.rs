//! Agent files for the registry (`baton agents create FILE`): a `name` and the fields of an
//! agent in a workflow's `agents:` (model, role, instructions, tools, output...), in YAML or
//! JSON. The file is checked by the workflow checks themselves: its agent is put in a one-step
//! document and validated there, and each diagnostic is moved back to the file's own field
//! paths and positions.

use baton_types::AgentSpec;
use serde_json::{Value, json};

use super::{
    Diagnostic, Loaded, SpanMap, ValidationEnv, diagnostic_at, key_path, kinds, read_value, shape,
    text_of, validate,
};

/// An agent file that passed every check.
#[derive(Clone, Debug)]
pub struct AgentFile {
    pub name: String,
    pub spec: AgentSpec,
    /// The file as written.
    pub source: String,
}

/// Reads and checks an agent file; `file` names it in diagnostics.
pub fn load_agent(
    file: &str,
    bytes: &[u8],
    env: &ValidationEnv,
) -> Result<AgentFile, Vec<Diagnostic>> {
    check_agent(file, bytes, Some(env))
}

/// Reads an agent file and checks its shape and fields, but not what depends on the host (its
/// tools and model): for templates that are stored wherever they are later run (Baton's
/// built-in agents), which are checked in full when a run uses them.
pub fn read_agent(file: &str, bytes: &[u8]) -> Result<AgentFile, Vec<Diagnostic>> {
    check_agent(file, bytes, None)
}

fn check_agent(
    file: &str,
    bytes: &[u8],
    env: Option<&ValidationEnv>,
) -> Result<AgentFile, Vec<Diagnostic>> {
    let text = text_of(file, bytes)?;
    let (value, spans) = read_value(file, text)?;
    let at = |path: &str, message: String| vec![diagnostic_at(file, &spans, path.into(), message)];
    let Value::Object(mut fields) = value else {
        return Err(at(
            "",
            "an agent file is a mapping: `name`, `model`, and optionally `role`, `instructions`, `tools`, `output`...".into(),
        ));
    };
    let name = match fields.remove("name") {
        Some(Value::String(n)) if is_name(&n) => n,
        Some(Value::String(n)) => {
            return Err(at(
                "name",
                format!("'{n}' is not an agent name: use 1-100 letters, digits, '-', '_' or '.'"),
            ));
        }
        Some(_) => return Err(at("name", "`name` must be a string".into())),
        None => {
            return Err(at(
                "",
                "missing `name`: the name the registry keeps the agent under".into(),
            ));
        }
    };
    // The agent, as the only agent of a one-step workflow.
    let prefix = key_path("agents", &name);
    let doc = json!({
        "version": 1,
        "name": "agent-file",
        "agents": { name.clone(): Value::Object(fields) },
        "steps": [{ "id": "check", "agent": name.clone(), "prompt": "-" }],
    });
    let wrapped_spans: SpanMap = spans
        .iter()
        .map(|(k, pos)| (under(&prefix, k), *pos))
        .collect();
    let back = |ds: Vec<Diagnostic>| -> Vec<Diagnostic> {
        ds.into_iter()
            .map(|d| Diagnostic {
                path: back_to_file(&prefix, &d.path),
                ..d
            })
            .collect()
    };
    let written = shape::check(file, &doc, &wrapped_spans).map_err(back)?;
    let mut typed = kinds::check(file, written, &wrapped_spans).map_err(back)?;
    let loaded = Loaded {
        doc: typed.clone(),
        source: text.to_string(),
        file: file.to_string(),
        spans: wrapped_spans,
    };
    if let Some(env) = env {
        let problems = validate(&loaded, env);
        if !problems.is_empty() {
            return Err(back(problems));
        }
    }
    let spec = typed
        .agents
        .shift_remove(&name)
        .ok_or_else(|| at("", "the agent was lost while checking it".into()))?;
    Ok(AgentFile {
        name,
        spec,
        source: text.to_string(),
    })
}

/// Agent names: 1-100 characters of letters, digits, `-`, `_` and `.`.
pub fn is_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 100
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// A path of the file, as a path of the agent inside the wrapping document.
fn under(prefix: &str, path: &str) -> String {
    if path.is_empty() {
        prefix.to_string()
    } else if path.starts_with('[') {
        format!("{prefix}{path}")
    } else {
        format!("{prefix}.{path}")
    }
}

/// A path of the wrapping document, as a path of the file (the inverse of [`under`]).
fn back_to_file(prefix: &str, path: &str) -> String {
    match path.strip_prefix(prefix) {
        Some(rest) => rest.strip_prefix('.').unwrap_or(rest).to_string(),
        None => String::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env_check(text: &str) -> Result<AgentFile, Vec<Diagnostic>> {
        let tools = baton_tools::Registry::with_builtins();
        let env = ValidationEnv {
            tools: &tools,
            models: None,
        };
        load_agent("coder.yaml", text.as_bytes(), &env)
    }

    #[test]
    fn a_valid_file_gives_its_name_and_spec() {
        let a = env_check("name: coder\nmodel: scripted/x\nrole: engineer\ntools: [http.get]\n")
            .unwrap_or_else(|d| panic!("{d:?}"));
        assert_eq!(a.name, "coder");
        assert_eq!(a.spec.model, "scripted/x");
        assert_eq!(a.spec.tools, ["http.get"]);
    }

    #[test]
    fn problems_point_into_the_file() {
        let ds = env_check("name: coder\nmodel: scripted/x\ntools: [http.gte]\n").unwrap_err();
        assert_eq!(ds.len(), 1, "{ds:?}");
        assert_eq!((ds[0].path.as_str(), ds[0].line), ("tools[0]", 3));
        assert!(ds[0].message.contains("http.get"), "{}", ds[0].message);

        let ds = env_check("name: coder\nmodle: scripted/x\n").unwrap_err();
        assert!(ds.iter().any(|d| d.line == 2), "{ds:?}");
        let ds = env_check("model: scripted/x\n").unwrap_err();
        assert!(ds[0].message.contains("missing `name`"), "{ds:?}");
        let ds = env_check("name: a b\nmodel: scripted/x\n").unwrap_err();
        assert_eq!((ds[0].path.as_str(), ds[0].line), ("name", 1));
        let ds = env_check("- 1\n").unwrap_err();
        assert!(ds[0].message.contains("mapping"), "{ds:?}");
        let ds = env_check("name: c\nmodel: scripted/x\ntemperature: 9\n").unwrap_err();
        assert_eq!((ds[0].path.as_str(), ds[0].line), ("temperature", 3));
    }
}
