//! The kinds of the steps: each step as written ([`StepFields`]) becomes a typed [`Step`]
//! following the one table of which key goes with which kind ([`baton_types::FIELD_RULES`]).
//! Every step that breaks it is reported, at the key at fault.

use baton_types::{StepFields, WorkflowDoc};

use super::{Diagnostic, SpanMap, diagnostic_at, index_path};

/// The document with typed steps, or a diagnostic for every kind problem of every step.
pub(super) fn check(
    file: &str,
    mut written: WorkflowDoc<StepFields>,
    spans: &SpanMap,
) -> Result<WorkflowDoc, Vec<Diagnostic>> {
    let as_written = std::mem::take(&mut written.steps);
    let mut steps = Vec::with_capacity(as_written.len());
    let mut out = Vec::new();
    for (i, fields) in as_written.into_iter().enumerate() {
        match fields.into_step() {
            Ok(step) => steps.push(step),
            Err(problems) => {
                let step_path = index_path("steps", i);
                out.extend(problems.into_iter().map(|p| {
                    let path = if p.path.is_empty() {
                        step_path.clone()
                    } else {
                        format!("{step_path}.{}", p.path)
                    };
                    diagnostic_at(file, spans, path, p.message)
                }));
            }
        }
    }
    if !out.is_empty() {
        out.sort_by_key(|d| (d.line, d.column));
        return Err(out);
    }
    Ok(written.with_steps(steps))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    #[test]
    fn every_kind_problem_is_reported_at_its_key() {
        let yaml = "version: 1\nname: t\nsteps:\n  - id: p\n    parallel:\n      - { id: a, tool: echo }\n      - id: b\n        tool: echo\n        then: a\n  - id: c\n    prompt: hi\n";
        let e = crate::load::load_bytes("w.yaml", yaml.as_bytes()).unwrap_err();
        let got: Vec<String> = e
            .iter()
            .map(|d| format!("{}:{} {} @ {}", d.line, d.column, d.message, d.path))
            .collect();
        assert_eq!(
            got,
            [
                "9:9 `then` only applies to `if` steps; step `b` is a tool step @ steps[0].parallel[1].then",
                "10:5 step `c` has no kind: give it exactly one of `agent`, `tool`, `if`, `switch`, `parallel`, `map`, `steps`, `human`, `sandbox` (it has a `prompt`: is `agent` missing?) @ steps[1]",
            ]
        );
    }
}
