//! `baton runs resolve RUN_ID STEP --as done|retry`: a person says what became of an effect
//! whose result was never logged (see `baton runs show`), and the run goes on.

use std::sync::Arc;

use anyhow::bail;
use baton_engine::Input;
use baton_store::Control;
use baton_types::Resolution;
use clap::{Args, ValueEnum};
use serde_json::Value;

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, control_for_run};
use crate::interactive::{drive_interactive, parse_value};

#[derive(Args, Debug)]
pub struct ResolveArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// The ambiguous step (as `baton runs show` names it).
    pub step: String,
    /// `done`: the effect happened (its result is `--value`); `retry`: send it again, with the
    /// same idempotency key.
    #[arg(long = "as", value_enum, value_name = "done|retry")]
    pub resolution: ResolveAs,
    /// With `--as done`: what the call returned (JSON, or plain text; default null).
    #[arg(long)]
    pub value: Option<String>,
    /// Only record the resolution; do not continue the run here.
    #[arg(long)]
    pub no_resume: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum ResolveAs {
    Done,
    Retry,
}

impl From<ResolveAs> for Resolution {
    fn from(r: ResolveAs) -> Self {
        match r {
            ResolveAs::Done => Resolution::Done,
            ResolveAs::Retry => Resolution::Retry,
        }
    }
}

pub async fn resolve(a: ResolveArgs) -> anyhow::Result<i32> {
    let resolution = Resolution::from(a.resolution);
    if resolution == Resolution::Retry && a.value.is_some() {
        errln!("error: --value goes with --as done (a retry gets its result from the call)");
        return Ok(EXIT_INVALID);
    }
    let (control, rec) = control_for_run(&a.db, &a.run, None).await?;
    let services = control.services();
    let run = rec.id;
    if rec.status.is_terminal() {
        bail!(
            "run {run} is already {}: there is nothing to resolve",
            rec.status
        );
    }
    let program = Arc::new(control.program(&rec)?);
    let st = baton_engine::executor::load_state(services, &program, run).await?;
    let ambiguous = st.ambiguous_steps();
    if !ambiguous.contains(&a.step) {
        match ambiguous.as_slice() {
            [] => bail!(
                "step '{}' of run {run} is not ambiguous (no step is)",
                a.step
            ),
            w => bail!(
                "step '{}' of run {run} is not ambiguous (ambiguous: {})",
                a.step,
                w.join(", ")
            ),
        }
    }
    let value = a.value.as_deref().map(parse_value).unwrap_or(Value::Null);
    let by = std::env::var("USER").ok();
    let owner = baton_store::process_owner();
    let held_elsewhere = matches!(
        services.store.claim(run, &owner, 30_000).await,
        Err(baton_store::Error::Claimed { .. })
    );
    if !held_elsewhere {
        services.store.release(run, &owner).await?;
    }
    if held_elsewhere || a.no_resume {
        let c = Control::Resolve {
            step: a.step.clone(),
            resolution,
            value,
            by,
        };
        services.store.send_control(run, c).await?;
        outln!(
            "recorded: step {} resolved as {}{}",
            a.step,
            resolution.as_str(),
            if held_elsewhere {
                " (the running process takes it)"
            } else {
                "; continue with `baton resume`"
            }
        );
        return Ok(EXIT_OK);
    }
    let inputs = vec![
        Input::Start { resumed: true },
        Input::Resolve {
            step: a.step,
            resolution,
            value,
            by,
        },
    ];
    let d = baton_control::Drive {
        run,
        tenant: rec.tenant,
        program,
        state: st,
        inputs,
    };
    drive_interactive(&control, d, a.json).await
}
