//! `baton runs resolve RUN_ID STEP --as done|retry`: a person says what became of an effect
//! whose result was never logged (see `baton runs show`), and the run goes on. Thin over
//! `Control::resolve`, which checks, audits, and queues or hands back the run to drive.

use baton_control::{Resolve, Resolved};
use baton_types::Resolution;
use clap::{Args, ValueEnum};

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, control_for_run};
use crate::cmd_runs::then_what;
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
    let request = Resolve {
        step: a.step,
        resolution,
        value: a.value.as_deref().map(parse_value),
        by: std::env::var("USER").ok(),
        no_resume: a.no_resume,
    };
    match control
        .resolve(&a.db.caller(&control).await?, &rec.id.to_string(), request)
        .await?
    {
        Resolved::Recorded {
            step,
            resolution,
            held_elsewhere,
        } => {
            outln!(
                "recorded: step {step} resolved as {}{}",
                resolution.as_str(),
                then_what(held_elsewhere)
            );
            Ok(EXIT_OK)
        }
        Resolved::Drive(d) => drive_interactive(&control, *d, a.json).await,
    }
}
