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
