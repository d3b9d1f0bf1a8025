//! `baton runs ...`: list, show, logs and state of stored runs; pause, cancel and answer them.

use std::sync::Arc;

use anyhow::{anyhow, bail};
use baton_engine::{Executor, Input};
use baton_store::sqlite::Durability;
use baton_store::{Control, ListQuery};
use baton_types::{Event, HumanKind, RunStatus};
use clap::{Args, Subcommand};
use serde_json::Value;

use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK, get_run, program_of, services_for_run};
use crate::interactive::{drive_interactive, parse_value};
use crate::sandbox_view::{describe_sandbox, sandbox_records};
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
    Logs {
        /// The run id, or a unique prefix of it.
        run: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
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
        RunsCmd::Logs { run, json, db } => {
            let services = wiring::services(db.db.as_deref(), Durability::Process)?;
            let run = get_run(&services, &run).await?.id;
            for e in services.store.events(run, 0).await? {
                if json {
                    outln!("{}", serde_json::to_string(&e)?);
                } else {
                    let mut body = serde_json::to_value(&e.event)?;
                    if let Value::Object(m) = &mut body {
                        m.remove("type");
                        // A failed sandbox step carries its execution record in its message:
                        // show it as JSON, not as an escaped string.
                        if let Event::StepFailed { error, .. } = &e.event
                            && let Some(record) = &error.sandbox
                        {
                            m["error"]["message"] = Value::String(error.message.clone());
                            m.insert("sandbox".into(), (**record).clone());
                        }
                    }
                    outln!(
                        "{:>4} {} {:<16} {}",
                        e.seq,
                        fmt_time(e.at_ms),
                        e.event.kind(),
                        body
                    );
                }
            }
            Ok(EXIT_OK)
        }
        RunsCmd::State { run, db } => {
            let services = wiring::services(db.db.as_deref(), Durability::Process)?;
            let rec = get_run(&services, &run).await?;
            let program = program_of(&rec)?;
            let st = baton_engine::executor::load_state(&services, &program, rec.id).await?;
            outln!("{}", serde_json::to_string_pretty(&view::state_view(&st))?);
            Ok(EXIT_OK)
        }
        RunsCmd::Pause { run, db } => control(db, run, Control::Pause).await,
        RunsCmd::Cancel { run, db } => control(db, run, Control::Cancel).await,
        RunsCmd::Approve(a) => answer(a, Some(true)).await,
        RunsCmd::Reject(a) => answer(a, Some(false)).await,
        RunsCmd::Input(a) => answer(a, None).await,
        RunsCmd::Resolve(a) => crate::cmd_resolve::resolve(a).await,
    }
}

/// Applies a control: queued for the process running the run, or applied here when none does.
async fn control(db: DbArgs, run: String, c: Control) -> anyhow::Result<i32> {
    let (services, rec) = services_for_run(&db, &run, None).await?;
    let run = rec.id;
    if rec.status.is_terminal() {
        bail!("run {run} is already {}", rec.status);
    }
    let program = Arc::new(program_of(&rec)?);
    let st = baton_engine::executor::load_state(&services, &program, run).await?;
    let owner = baton_store::sqlite::process_owner();
    // If no live process holds the run, apply it here; else queue it for that process.
    match services.store.claim(run, &owner, 30_000).await {
        Ok(()) => {
            services.store.release(run, &owner).await?;
            let input = match &c {
                Control::Pause => Input::Pause,
                Control::Cancel => Input::Cancel,
                _ => return Ok(EXIT_OK),
            };
            let exec = Executor::new(program, services.clone());
            let st = exec.drive(st, vec![input]).await?;
            outln!("run {run} is {}", st.status);
        }
        Err(baton_store::Error::Claimed { .. }) => {
            let what = if c == Control::Cancel {
                "cancel it"
            } else {
                "pause it"
            };
            services.store.send_control(run, c).await?;
            outln!("asked the process running {run} to {what}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(EXIT_OK)
}

async fn answer(a: HumanArgs, approved: Option<bool>) -> anyhow::Result<i32> {
    let (services, rec) = services_for_run(&a.db, &a.run, None).await?;
    let run = rec.id;
    let program = Arc::new(program_of(&rec)?);
    let st = baton_engine::executor::load_state(&services, &program, run).await?;
    let step = waiting_step(&st, a.step.as_deref())?;
    let node = program
        .node_by_id(crate::split_id(&step))
        .ok_or_else(|| anyhow!("unknown step {step}"))?;
    let baton_types::StepKind::Human(spec) = node.step.kind.clone() else {
        bail!("step {step} is not a human step");
    };
    let value = a.value.as_deref().map(parse_value).unwrap_or(Value::Null);
    if approved.is_none() {
        if spec.kind != HumanKind::Input {
            bail!("step {step} asks for approval: use `baton runs approve` or `reject`");
        }
        if a.value.is_none() {
            bail!("step {step} asks for a value: pass --value");
        }
        if let Some(schema) = &spec.schema
            && let Err(e) = baton_engine::agent::check_output(schema, &value.to_string())
        {
            errln!("error: the value does not match step {step}'s schema: {e}");
            return Ok(EXIT_INVALID);
        }
    } else if spec.kind == HumanKind::Input {
        bail!("step {step} asks for a value: use `baton runs input --value ...`");
    }
    let approved = approved.unwrap_or(true);
    let by = std::env::var("USER").ok();
    let owner = baton_store::sqlite::process_owner();
    let held_elsewhere = matches!(
        services.store.claim(run, &owner, 30_000).await,
        Err(baton_store::Error::Claimed { .. })
    );
    if !held_elsewhere {
        services.store.release(run, &owner).await?;
    }
    if held_elsewhere || a.no_resume {
        services
            .store
            .send_control(
                run,
                Control::Human {
                    step: step.clone(),
                    approved,
                    value,
                    comment: a.comment,
                    by,
                },
            )
            .await?;
        outln!(
            "recorded the answer for step {step}{}",
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
        Input::Human {
            step,
            approved,
            value,
            comment: a.comment,
            by,
        },
    ];
    drive_interactive(program, services, st, inputs, a.json).await
}

/// The step an answer is for: the one named (it must be waiting), or the only one waiting.
fn waiting_step(st: &baton_engine::RunState, named: Option<&str>) -> anyhow::Result<String> {
    let run = st.run_id;
    let waiting = st.waiting_humans();
    Ok(match (named, waiting.as_slice()) {
        (Some(s), w) if w.iter().any(|x| x == s) => s.to_string(),
        (Some(s), []) => bail!("step '{s}' of run {run} is not waiting for a person (no step is)"),
        (Some(s), w) => bail!(
            "step '{s}' of run {run} is not waiting for a person (waiting: {})",
            w.join(", ")
        ),
        (None, [one]) => one.clone(),
        (None, []) => match st.ambiguous_steps().first() {
            Some(step) => bail!(
                "no step of run {run} asks a question, but step '{step}' is ambiguous: see `baton runs show {run}`, then `baton runs resolve {run} {step} --as done|retry`"
            ),
            None => bail!(
                "no step of run {run} is waiting for a person (status: {})",
                st.status
            ),
        },
        (None, w) => bail!(
            "several steps wait ({}): name one with --step",
            w.join(", ")
        ),
    })
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
    let services = wiring::services(db.db.as_deref(), Durability::Process)?;
    let runs = services
        .store
        .list_runs(ListQuery {
            status,
            workflow,
            limit: Some(limit),
        })
        .await?;
    if json {
        let v: Vec<view::RunListItem> = runs.iter().map(view::RunListItem::of).collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else if runs.is_empty() {
        outln!("no runs");
    } else {
        outln!(
            "{:<32}  {:<20}  {:<11}  CREATED",
            "ID",
            "WORKFLOW",
            "STATUS"
        );
        for r in &runs {
            outln!(
                "{:<32}  {:<20}  {:<11}  {}",
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
    let store = wiring::open_store(db.db.as_deref(), Durability::Process)?;
    let services = wiring::services_on(store.clone())?;
    let rec = get_run(&services, &run).await?;
    let durability = store.run_durability(rec.id)?.unwrap_or_default().as_str();
    let evs = services.store.events(rec.id, 0).await?;
    let rows = view::step_rows(&evs);
    let tokens: u64 = rows.iter().map(|r| r.tokens).sum();
    // The program tells `sandbox:` steps apart (a run whose workflow no longer compiles still
    // shows agents' sandbox.exec calls).
    let program = program_of(&rec).ok();
    let sandboxed = sandbox_records(&evs, program.as_ref());
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
            tokens,
            steps: &rows,
            sandbox: sandboxed.iter().map(view::SandboxRow::of).collect(),
            ambiguous: step_view::ambiguities(&evs),
        };
        outln!("{}", serde_json::to_string_pretty(&v)?);
        return Ok(EXIT_OK);
    }
    outln!("run       {}", rec.id);
    let path = rec.workflow_path.as_ref().map(|p| format!(" ({p})"));
    outln!(
        "workflow  {}{}",
        rec.workflow_name,
        path.unwrap_or_default()
    );
    outln!("status    {}", rec.status);
    if rec.status == RunStatus::Interrupted {
        outln!(
            "          the process running it is gone; continue with `baton resume {}`",
            rec.id
        );
    }
    outln!("created   {}", fmt_time(rec.created_at_ms));
    outln!("durable   {durability} (resume --durability changes it)");
    outln!("inputs    {}", rec.inputs);
    for r in &rows {
        outln!("{}", r.line());
    }
    if !sandboxed.is_empty() {
        outln!("sandbox executions:");
        for r in &sandboxed {
            for line in describe_sandbox(r) {
                outln!("{line}");
            }
        }
    }
    for a in step_view::ambiguities(&evs) {
        for line in step_view::ambiguity_lines(rec.id, &a) {
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

/// `baton runs show RUN --step STEP`: what the step's model was sent, turn by turn, and its
/// tool calls.
async fn show_step(run: String, step: String, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let services = wiring::services(db.db.as_deref(), Durability::Process)?;
    let rec = get_run(&services, &run).await?;
    let evs = services.store.events(rec.id, 0).await?;
    let Some(detail) = step_view::step_detail(rec.id, &evs, &step) else {
        let known = step_view::steps_in(&evs);
        errln!(
            "error: run {} has no step '{step}' in its log (steps: {})",
            rec.id,
            if known.is_empty() {
                "none yet".to_string()
            } else {
                known.join(", ")
            }
        );
        return Ok(EXIT_INVALID);
    };
    if json {
        outln!("{}", serde_json::to_string_pretty(&detail)?);
    } else {
        for line in step_view::detail_lines(&detail) {
            outln!("{line}");
        }
    }
    Ok(EXIT_OK)
}
