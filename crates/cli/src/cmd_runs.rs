//! `baton runs ...`: list, show, logs and state of stored runs; pause, cancel and answer them
//! (breakpoints and state edits: `cmd_debugger`).

use baton_control::view::{RunListItem, state_view};
use baton_control::{
    Answer, Answered, ControlOutcome, Decision, Details, EventFilter, LogLevel, RunControl,
    RunQuery,
};
use baton_store::sqlite::Durability;
use baton_types::{Event, RunStatus};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, control_for_run, run_error};
use crate::interactive::{drive_interactive, parse_value};
use crate::sandbox_view::describe_sandbox;
use crate::step_view;
use crate::view::{self, fmt_time};
use crate::wiring;

#[derive(Subcommand, Debug)]
pub enum RunsCmd {
    /// List runs, newest first.
    List {
        #[arg(long)]
        status: Option<String>,
        #[arg(long)]
        workflow: Option<String>,
        #[arg(long, default_value_t = 20)]
        limit: u32,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A run's status, inputs, outputs and per-step durations and tokens; with `--step`, one
    /// step's prompts (what its model was sent, turn by turn) and tool calls.
    Show {
        /// The run id, or a unique prefix of it.
        run: String,
        /// Show this step (`id`, or `id[2]` inside a map) in detail.
        #[arg(long)]
        step: Option<String>,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A run's events.
    Logs(LogsArgs),
    /// The engine state of a run (inputs, step outputs, shared state, what is active).
    State {
        /// The run id, or a unique prefix of it.
        run: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Ask the process running a run to pause it (or pause a run that is not running).
    Pause {
        /// The run id, or a unique prefix of it.
        run: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel a run.
    Cancel {
        /// The run id, or a unique prefix of it.
        run: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Approve a waiting `human` step, then continue the run.
    Approve(HumanArgs),
    /// Reject a waiting `human` step, then continue the run.
    Reject(HumanArgs),
    /// Answer a waiting `human` input step with a value, then continue the run.
    Input(HumanArgs),
    /// Say what became of an ambiguous step's effect (`--as done|retry`), then continue the run.
    Resolve(crate::cmd_resolve::ResolveArgs),
    /// Fork a new run from any point of a run's log (time travel), with state edited or agents
    /// on other models, and follow it.
    Fork(crate::cmd_fork::ForkArgs),
    /// Execute a run again from its own log (no model, tool or sandbox called) and check that
    /// it reaches the recorded state; exits 1 on a divergence.
    Replay(crate::cmd_recordings::ReplayArgs),
    /// Two runs side by side: status, each step's output, tokens, cost, time, and their
    /// workspaces' difference.
    Compare(crate::cmd_recordings::CompareArgs),
    /// The history of a run's workspace: each change with its step and agent.
    Files(crate::cmd_workspace::FilesArgs),
    /// The unified diff of what a step changed in the run's workspace (or the whole run).
    Diff(crate::cmd_workspace::DiffArgs),
    /// Put a run's files back exactly as they were before a step changed them.
    Rollback(crate::cmd_workspace::RollbackArgs),
    /// Copy a run's files into a new or empty directory.
    Export(crate::cmd_workspace::ExportArgs),
    /// The steps a run pauses before (the debugger's breakpoints): show them, or change them
    /// on a running or stopped run.
    Breakpoints(crate::cmd_debugger::BreakpointsArgs),
    /// Edit a paused run's state (a finished step's output, a shared-state key), then
    /// `baton resume` continues with it.
    Edit(crate::cmd_debugger::EditArgs),
}

#[derive(Args, Debug)]
pub struct HumanArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// The step (default: the only one waiting).
    #[arg(long)]
    pub step: Option<String>,
    /// The value (`input`): JSON, or plain text.
    #[arg(long)]
    pub value: Option<String>,
    #[arg(long)]
    pub comment: Option<String>,
    /// Only record the answer; do not continue the run here.
    #[arg(long)]
    pub no_resume: bool,
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `baton runs logs`: a run's events, filtered.
#[derive(Args, Debug)]
pub struct LogsArgs {
    /// The run id, or a unique prefix of it.
    run: String,
    /// Only the events of this step (an id matches each of its instances).
    #[arg(long)]
    step: Option<String>,
    /// Only the events of this agent's steps.
    #[arg(long)]
    agent: Option<String>,
    /// Only events at this level or above: debug, info, warn, error.
    #[arg(long)]
    level: Option<String>,
    /// Only these event kinds (comma-separated, e.g. `step_failed,human_requested`).
    #[arg(long, value_delimiter = ',')]
    kind: Vec<String>,
    /// Only events whose JSON contains this text (case-insensitive).
    #[arg(long)]
    text: Option<String>,
    /// Print JSON Lines (an export of the events).
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

pub async fn runs(cmd: RunsCmd) -> anyhow::Result<i32> {
    match cmd {
        RunsCmd::List {
            status,
            workflow,
            limit,
            json,
            db,
        } => list(status, workflow, limit, json, db).await,
        RunsCmd::Show {
            run,
            step: Some(step),
            json,
            db,
        } => show_step(run, step, json, db).await,
        RunsCmd::Show {
            run,
            step: None,
            json,
            db,
        } => show(run, json, db).await,
        RunsCmd::Logs(a) => logs(a).await,
        RunsCmd::State { run, db } => {
            let (control, caller) = db.open().await?;
            let st = control
                .run_state(&caller, &run)
                .await
                .map_err(|e| run_error(e, &run))?;
            outln!("{}", serde_json::to_string_pretty(&state_view(&st))?);
            Ok(EXIT_OK)
        }
        RunsCmd::Pause { run, db } => control(db, run, RunControl::Pause).await,
        RunsCmd::Cancel { run, db } => control(db, run, RunControl::Cancel).await,
        RunsCmd::Approve(a) => answer(a, Some(true)).await,
        RunsCmd::Reject(a) => answer(a, Some(false)).await,
        RunsCmd::Input(a) => answer(a, None).await,
        RunsCmd::Resolve(a) => crate::cmd_resolve::resolve(a).await,
        RunsCmd::Fork(a) => crate::cmd_fork::fork(a).await,
        RunsCmd::Replay(a) => crate::cmd_recordings::replay(a).await,
        RunsCmd::Compare(a) => crate::cmd_recordings::compare(a).await,
        RunsCmd::Files(a) => crate::cmd_workspace::files(a).await,
        RunsCmd::Diff(a) => crate::cmd_workspace::diff(a).await,
        RunsCmd::Rollback(a) => crate::cmd_workspace::rollback(a).await,
        RunsCmd::Export(a) => crate::cmd_workspace::export(a).await,
        RunsCmd::Breakpoints(a) => crate::cmd_debugger::breakpoints(a).await,
        RunsCmd::Edit(a) => crate::cmd_debugger::edit(a).await,
    }
}

/// `baton runs logs`: the events that match the filters, as lines or JSON Lines.
async fn logs(a: LogsArgs) -> anyhow::Result<i32> {
    let level = match a.level.as_deref().map(str::parse::<LogLevel>).transpose() {
        Ok(l) => l,
        Err(e) => {
            errln!("error: --level: {e}");
            return Ok(EXIT_INVALID);
        }
    };
    let filter = EventFilter {
        step: a.step,
        agent: a.agent,
        level,
        kinds: a.kind,
        text: a.text,
        ..EventFilter::default()
    };
    let (control, caller) = a.db.open().await?;
    let evs = control
        .search_events(&caller, &a.run, &filter)
        .await
        .map_err(|e| run_error(e, &a.run))?;
    for e in evs {
        if a.json {
            outln!("{}", serde_json::to_string(&e)?);
            continue;
        }
        let mut body = serde_json::to_value(&e.event)?;
        if let Value::Object(m) = &mut body {
            m.remove("type");
            // A failed sandbox step carries its execution record in its message: show it as
            // JSON, not as an escaped string.
            if let Event::StepFailed { error, .. } = &e.event
                && let Some(record) = &error.sandbox
            {
                m["error"]["message"] = Value::String(error.message.clone());
                m.insert("sandbox".into(), (**record).clone());
            }
        }
        let (seq, at, kind) = (e.seq, fmt_time(e.at_ms), e.event.kind());
        outln!("{seq:>4} {at} {kind:<16} {body}");
    }
    Ok(EXIT_OK)
}

/// Applies a control: queued for the process running the run, or applied here when none does.
async fn control(db: DbArgs, run: String, c: RunControl) -> anyhow::Result<i32> {
    let (control, rec) = control_for_run(&db, &run, None).await?;
    let run = rec.id;
    match control
        .control_run(&db.caller(&control).await?, &run.to_string(), c)
        .await?
    {
        ControlOutcome::Applied(status) => outln!("run {run} is {status}"),
        ControlOutcome::Queued => {
            let what = if c == RunControl::Cancel {
                "cancel it"
            } else {
                "pause it"
            };
            outln!("asked the process running {run} to {what}");
        }
    }
    Ok(EXIT_OK)
}

async fn answer(a: HumanArgs, approved: Option<bool>) -> anyhow::Result<i32> {
    let (control, rec) = control_for_run(&a.db, &a.run, None).await?;
    let decision = match approved {
        Some(true) => Decision::Approve,
        Some(false) => Decision::Reject,
        None => Decision::Input(a.value.as_deref().map(parse_value)),
    };
    let answer = Answer {
        step: a.step,
        decision,
        comment: a.comment,
        by: std::env::var("USER").ok(),
        no_resume: a.no_resume,
    };
    let answered = match control
        .answer(&a.db.caller(&control).await?, &rec.id.to_string(), answer)
        .await
    {
        Ok(x) => x,
        Err(
            e @ baton_control::Error::Invalid {
                details: Details::Schema { .. },
                ..
            },
        ) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
        Err(e) => return Err(e.into()),
    };
    match answered {
        Answered::Recorded {
            step,
            held_elsewhere,
        } => {
            outln!(
                "recorded the answer for step {step}{}",
                then_what(held_elsewhere)
            );
            Ok(EXIT_OK)
        }
        Answered::Drive(d) => drive_interactive(&control, *d, a.json).await,
    }
}

async fn list(
    status: Option<String>,
    workflow: Option<String>,
    limit: u32,
    json: bool,
    db: DbArgs,
) -> anyhow::Result<i32> {
    let status = match status.as_deref().map(str::parse::<RunStatus>).transpose() {
        Ok(s) => s,
        Err(_) => {
            errln!(
                "error: --status {}: not a run status (one of: {})",
                status.unwrap_or_default(),
                RunStatus::ALL.map(RunStatus::as_str).join(", ")
            );
            return Ok(EXIT_INVALID);
        }
    };
    let (control, caller) = db.open().await?;
    let runs = control
        .list_runs(
            &caller,
            RunQuery {
                status,
                workflow,
                limit: Some(limit),
                ..Default::default()
            },
        )
        .await?
        .runs;
    if json {
        let v: Vec<RunListItem> = runs.iter().map(RunListItem::of).collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if runs.is_empty() {
        outln!("no runs");
    } else {
        outln!(
            "{:<32}  {:<20}  {:<15}  CREATED",
            "ID",
            "WORKFLOW",
            "STATUS"
        );
        for r in &runs {
            outln!(
                "{:<32}  {:<20}  {:<15}  {}",
                r.id.to_string(),
                r.workflow_name,
                r.status.as_str(),
                fmt_time(r.created_at_ms)
            );
        }
        if let Some(r) = runs.iter().find(|r| r.status == RunStatus::Interrupted) {
            outln!(
                "interrupted: the process running it is gone; continue with `baton resume {}`",
                r.id
            );
        }
    }
    Ok(EXIT_OK)
}

async fn show(run: String, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let store = wiring::open_store(db.db.as_deref(), Durability::Process).await?;
    let control = wiring::control_on(&store)?;
    let detail = control
        .run_detail(&db.caller(&control).await?, &run)
        .await
        .map_err(|e| run_error(e, &run))?;
    let rec = &detail.run;
    let durability = store.run_durability(rec.id)?.unwrap_or("process");
    let placement = match &store {
        wiring::Store::Postgres(pg) => crate::cmd_worker::placement(pg, rec).await?,
        wiring::Store::Sqlite(_) => None,
    };
    let rows = detail.rows();
    let sandboxed = &detail.sandbox;
    if json {
        let v = view::RunView {
            id: rec.id.to_string(),
            workflow: &rec.workflow_name,
            path: &rec.workflow_path,
            status: rec.status,
            durability,
            inputs: &rec.inputs,
            outputs: &rec.outputs,
            error: &rec.error,
            created_at_ms: rec.created_at_ms,
            updated_at_ms: rec.updated_at_ms,
            tokens: detail.tokens,
            steps: &rows,
            sandbox: sandboxed.iter().map(view::SandboxRow::of).collect(),
            ambiguous: &detail.ambiguous,
            joins: &detail.joins,
            policy: detail.policy.as_ref(),
            forked_from: detail.forked_from,
            // Present only for runs whose workflow sets limits (see `Control::run_detail`).
            budget: detail.budget.as_ref(),
            team: detail.team.as_ref(),
            placement: placement.as_ref().map(|(v, _)| v),
        };
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(EXIT_OK);
    }
    for line in header_lines(rec, &detail, &durability) {
        outln!("{line}");
    }
    if let Some((_, line)) = &placement {
        outln!("{line}");
    }
    for line in detail
        .budget
        .iter()
        .flat_map(crate::budget_view::show_lines)
    {
        outln!("{line}");
    }
    for r in &rows {
        outln!("{}", view::step_line(r));
    }
    for line in detail.team.iter().flat_map(crate::team_view::show_lines) {
        outln!("{line}");
    }
    if !detail.joins.is_empty() {
        outln!("joins:");
        for j in &detail.joins {
            outln!("  {}", j.line());
        }
    }
    if let Some(p) = &detail.policy {
        outln!("policy    {} allowed, {} denied", p.allowed, p.denied);
        for d in &p.denials {
            outln!(
                "  denied  {}",
                baton_control::view::PolicySummary::denial_line(d)
            );
        }
    }
    if !sandboxed.is_empty() {
        outln!("sandbox executions:");
        for r in sandboxed {
            for line in describe_sandbox(r) {
                outln!("{line}");
            }
        }
    }
    for a in &detail.ambiguous {
        for line in step_view::ambiguity_lines(rec.id, a) {
            outln!("{line}");
        }
    }
    if let Some(o) = &rec.outputs {
        outln!("outputs   {o}");
    }
    if let Some(e) = &rec.error {
        outln!("error     {}", crate::progress::brief(e));
    }
    Ok(EXIT_OK)
}

/// The first lines of `runs show`: the run, its workflow, status, times, origin, inputs.
fn header_lines(
    rec: &baton_store::RunRecord,
    detail: &baton_control::view::RunDetail,
    durability: &impl std::fmt::Display,
) -> Vec<String> {
    let mut out = vec![format!("run       {}", rec.id)];
    let path = rec.workflow_path.as_ref().map(|p| format!(" ({p})"));
    out.push(format!(
        "workflow  {}{}",
        rec.workflow_name,
        path.unwrap_or_default()
    ));
    out.push(format!("status    {}", rec.status));
    if rec.status == RunStatus::Interrupted {
        out.push(format!(
            "          the process running it is gone; continue with `baton resume {}`",
            rec.id
        ));
    }
    out.push(format!("created   {}", fmt_time(rec.created_at_ms)));
    if let Some(f) = &detail.forked_from {
        out.push(format!("forked    from run {} at event {}", f.run, f.seq));
    }
    let durability = durability.to_string();
    out.push(if durability == "server" {
        "durable   server (the PostgreSQL server's synchronous_commit)".to_string()
    } else {
        format!("durable   {durability} (resume --durability changes it)")
    });
    out.push(format!("inputs    {}", rec.inputs));
    out
}

/// `baton runs show RUN --step STEP`: what the step's model was sent, turn by turn, and its
/// tool calls.
async fn show_step(run: String, step: String, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let rec = control
        .find_run(&caller, &run)
        .await
        .map_err(|e| run_error(e, &run))?;
    let trace = match control
        .step_trace(&caller, &rec.id.to_string(), &step)
        .await
    {
        Ok(t) => t,
        Err(e @ baton_control::Error::NotFound { .. }) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
        Err(e) => return Err(e.into()),
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&trace)?);
    } else {
        for line in step_view::detail_lines(&trace) {
            outln!("{line}");
        }
    }
    Ok(EXIT_OK)
}

/// What happens to a recorded answer or resolution: the process that holds the run takes it,
/// or the user resumes the run.
pub(crate) fn then_what(held_elsewhere: bool) -> &'static str {
    if held_elsewhere {
        " (the running process takes it)"
    } else {
        "; continue with `baton resume`"
    }
}
