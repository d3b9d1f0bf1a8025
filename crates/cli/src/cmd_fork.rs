//! `baton runs fork RUN (--at SEQ | --before STEP | --after STEP) [--set PATH=JSON]...
//! [--model AGENT=MODEL]... [--detach]`: time travel. A new run starts from a copy of
//! another's log up to the cut, with the state and models changed as asked, and is followed
//! here like `baton run`. Thin over `Control::fork_run`, which checks, stores and audits.

use baton_control::{Cut, Details, ForkRequest};
use baton_types::EditTarget;
use clap::{ArgGroup, Args};
use serde_json::Value;

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, control_for_run, report_invalid};
use crate::interactive::{drive_interactive, parse_value};

#[derive(Args, Debug)]
#[command(group(ArgGroup::new("cut").required(true).args(["at", "before", "after"])))]
pub struct ForkArgs {
    /// The run to fork: its id, or a unique prefix of it.
    pub run: String,
    /// Copy the run's log up to and including this event (`baton runs logs` numbers them).
    #[arg(long, value_name = "SEQ")]
    pub at: Option<u64>,
    /// Fork just before this step first started: it runs again in the fork.
    #[arg(long, value_name = "STEP")]
    pub before: Option<String>,
    /// Fork just after this step first succeeded.
    #[arg(long, value_name = "STEP")]
    pub after: Option<String>,
    /// Change the state where the fork starts: `steps.ID.output=VALUE` (a step finished by
    /// then), `state.KEY=VALUE` or `inputs.NAME=VALUE`; VALUE is JSON, or plain text
    /// (repeatable).
    #[arg(long = "set", value_name = "PATH=VALUE")]
    pub set: Vec<String>,
    /// Run an agent on another model in the fork: `AGENT=MODEL` (repeatable).
    #[arg(long = "model", value_name = "AGENT=MODEL")]
    pub models: Vec<String>,
    /// Only create the fork and print its id; `baton resume ID` runs it.
    #[arg(long)]
    pub detach: bool,
    /// Print events as JSON lines (and the summary as one JSON object).
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// What the flags ask for, or the first problem with them.
fn request(a: &ForkArgs) -> Result<ForkRequest, String> {
    let cut = match (a.at, &a.before, &a.after) {
        (Some(seq), None, None) => Cut::At(seq),
        (None, Some(step), None) => Cut::Before(step.clone()),
        (None, None, Some(step)) => Cut::After(step.clone()),
        _ => return Err("give one of --at SEQ, --before STEP, --after STEP".into()),
    };
    let mut edits: Vec<(EditTarget, Value)> = Vec::new();
    for kv in &a.set {
        let Some((path, value)) = kv.split_once('=') else {
            return Err(format!(
                "--set '{kv}': write PATH=VALUE, as in steps.ID.output=VALUE, state.KEY=VALUE or inputs.NAME=VALUE"
            ));
        };
        let target = path.parse().map_err(|e| format!("--set {e}"))?;
        edits.push((target, parse_value(value)));
    }
    let mut models = Vec::new();
    for kv in &a.models {
        match kv.split_once('=') {
            Some((agent, model)) if !agent.is_empty() && !model.is_empty() => {
                models.push((agent.to_string(), model.to_string()));
            }
            _ => return Err(format!("--model '{kv}': write AGENT=MODEL")),
        }
    }
    Ok(ForkRequest { cut, edits, models })
}

pub async fn fork(a: ForkArgs) -> anyhow::Result<i32> {
    let req = match request(&a) {
        Ok(r) => r,
        Err(e) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let (control, rec) = control_for_run(&a.db, &a.run, None).await?;
    let caller = a.db.caller(&control).await?;
    let forked = match control.fork_run(&caller, &rec.id.to_string(), req).await {
        Ok(f) => f,
        Err(baton_control::Error::Invalid {
            message,
            details: Details::Field { field },
        }) => {
            let flag = if field == "models" { "model" } else { &field };
            errln!("error: --{flag}: {message}");
            return Ok(EXIT_INVALID);
        }
        Err(e) => return report_invalid(e),
    };
    if a.detach {
        outln!("{}", forked.run);
        return Ok(EXIT_OK);
    }
    if a.json {
        for e in control.services().store.events(forked.run, 0).await? {
            outln!("{}", serde_json::to_string(&e)?);
        }
    } else {
        errln!(
            "forked run {} from run {} at event {}",
            forked.run,
            forked.from.run,
            forked.from.seq
        );
    }
    drive_interactive(&control, forked.drive, a.json).await
}
