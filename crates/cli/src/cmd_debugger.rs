//! The debugger on a stored run: `baton runs breakpoints RUN [--add STEP]... [--remove STEP]...
//! [--set STEP,...|--clear]` shows or changes the steps it pauses before, and
//! `baton runs edit RUN --set PATH=JSON...` edits a paused run's state. Thin over
//! `Control::change_breakpoints` and `Control::edit_run`, which check, log and audit; `baton
//! resume RUN [--step]` continues.

use baton_control::runs::DebugView;
use baton_control::{ControlOutcome, Details};
use baton_types::{BreakpointChange, EditTarget, PauseReason};
use clap::{ArgGroup, Args};
use serde_json::{Value, json};

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, control_for_run, report_invalid, run_error};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("whole").args(["set", "clear"])))]
pub struct BreakpointsArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Pause before this step too (repeatable).
    #[arg(long, value_name = "STEP")]
    pub add: Vec<String>,
    /// No longer pause before this step (repeatable).
    #[arg(long, value_name = "STEP")]
    pub remove: Vec<String>,
    /// Pause before exactly these steps (comma-separated), replacing the others.
    #[arg(long, value_name = "STEP,...", value_delimiter = ',')]
    pub set: Option<Vec<String>>,
    /// Remove every breakpoint.
    #[arg(long)]
    pub clear: bool,
    /// Print the run's debugger state as one JSON object.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct EditArgs {
    /// The paused run: its id, or a unique prefix of it.
    pub run: String,
    /// What to change: `steps.ID.output=JSON` (a step that finished) or `state.KEY=JSON`;
    /// JSON is parsed strictly (a string is quoted: `'"text"'`). Repeatable, applied in order.
    #[arg(long = "set", value_name = "PATH=JSON", required = true)]
    pub set: Vec<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

/// The change the flags ask for (none: only show the breakpoints).
fn change(a: &BreakpointsArgs) -> BreakpointChange {
    let set = if a.clear {
        Some(Vec::new())
    } else {
        a.set.clone()
    };
    BreakpointChange {
        set: set.map(|s| s.into_iter().filter(|id| !id.is_empty()).collect()),
        add: a.add.clone(),
        remove: a.remove.clone(),
    }
}

/// The edits the `--set` flags ask for, or the first bad one, named.
fn edits(set: &[String]) -> Result<Vec<(EditTarget, Value)>, String> {
    let mut out = Vec::new();
    for kv in set {
        let Some((path, value)) = kv.split_once('=') else {
            return Err(format!(
                "--set '{kv}': write PATH=JSON, as in steps.ID.output=JSON or state.KEY=JSON"
            ));
        };
        let target: EditTarget = path.parse().map_err(|e| format!("--set {e}"))?;
        let value = serde_json::from_str(value).map_err(|e| {
            format!(
                "--set {path}: the value is not JSON ({e}); quote a string, as in {path}='\"text\"'"
            )
        })?;
        out.push((target, value));
    }
    Ok(out)
}

fn describe(run: &str, d: &DebugView) {
    if d.breakpoints.is_empty() {
        outln!("run {run} has no breakpoints");
    } else {
        outln!("run {run} pauses before: {}", d.breakpoints.join(", "));
    }
    if d.stepping {
        outln!("stepping: it pauses before every step");
    }
    if let Some(PauseReason::Breakpoint { step }) = &d.paused {
        let why = if d.stepping { "stepping" } else { "breakpoint" };
        outln!(
            "paused before {step} ({why}): `baton runs edit` changes its state, `baton resume {run} [--step]` continues"
        );
    }
}

pub async fn breakpoints(a: BreakpointsArgs) -> anyhow::Result<i32> {
    let (control, rec) = control_for_run(&a.db, &a.run, None).await?;
    let caller = a.db.caller(&control).await?;
    let run = rec.id.to_string();
    let change = change(&a);
    if change.is_empty() {
        let st = control
            .run_state(&caller, &run)
            .await
            .map_err(|e| run_error(e, &run))?;
        let d = DebugView::of(&st);
        if a.json {
            let mut v = serde_json::to_value(&d)?;
            v["run"] = json!(run);
            outln!("{v}");
        } else {
            describe(&run, &d);
        }
        return Ok(EXIT_OK);
    }
    let changed = match control.change_breakpoints(&caller, &run, change).await {
        Ok(c) => c,
        Err(baton_control::Error::Invalid {
            message,
            details: Details::Field { .. },
        }) => {
            errln!("error: {message}");
            return Ok(EXIT_INVALID);
        }
        Err(e) => return report_invalid(e),
    };
    if a.json {
        outln!("{}", serde_json::to_string(&changed)?);
    } else {
        describe(&run, &changed.debug);
        if changed.queued {
            outln!("(the process running {run} applies the change in a moment)");
        }
    }
    Ok(EXIT_OK)
}

pub async fn edit(a: EditArgs) -> anyhow::Result<i32> {
    let edits = match edits(&a.set) {
        Ok(e) => e,
        Err(e) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let set: Vec<String> = edits.iter().map(|(t, _)| t.to_string()).collect();
    let (control, rec) = control_for_run(&a.db, &a.run, None).await?;
    let caller = a.db.caller(&control).await?;
    let run = rec.id.to_string();
    match control.edit_run(&caller, &run, edits).await {
        Ok(ControlOutcome::Applied(status)) => {
            outln!(
                "run {run} ({status}): set {}; `baton resume {run} [--step]` continues",
                set.join(", ")
            );
        }
        Ok(ControlOutcome::Queued) => {
            outln!("asked the process holding {run} to set {}", set.join(", "));
        }
        Err(baton_control::Error::Invalid {
            message,
            details: Details::Field { .. },
        }) => {
            errln!("error: --set {message}");
            return Ok(EXIT_INVALID);
        }
        Err(e) => return report_invalid(e),
    }
    Ok(EXIT_OK)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn edits_name_the_bad_set_and_the_parse_error() {
        let e = edits(&["steps.one.output=EDITED".into()]).unwrap_err();
        assert!(
            e.starts_with("--set steps.one.output: the value is not JSON (expected value"),
            "{e}"
        );
        let e = edits(&["state.note".into()]).unwrap_err();
        assert!(e.contains("write PATH=JSON"), "{e}");
        let ok = edits(&["state.note={\"a\":1}".into()]).unwrap();
        assert_eq!(ok[0].1, json!({"a": 1}));
    }
}
