//! `baton agents`: the agent registry (create, list, show, versions, diff, rollback, export),
//! and the agents of a run (pause, resume, stop), thin over `baton_control`.

use std::path::PathBuf;

use baton_control::{AgentRef, AgentVersion, ControlOutcome};
use baton_types::AgentAction;
use clap::Subcommand;

use crate::cmd_admin::{read_doc, refused, report_stored, stored_at};
use crate::cmd_run::{DbArgs, EXIT_INVALID, EXIT_OK};
use crate::view::fmt_time;

#[derive(Subcommand, Debug)]
pub enum AgentsCmd {
    /// Check an agent file (`name`, `model`, `role`, `instructions`, `tools`, `output`...) and
    /// store it as the next version of its `name:`, which becomes the default.
    Create {
        file: PathBuf,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the registry's agents.
    List {
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print an agent: NAME (its default version) or NAME@VERSION.
    Show {
        agent: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// List the versions of an agent.
    Versions {
        name: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Compare two versions, e.g. `diff coder@2 coder@3`.
    Diff {
        from: String,
        to: String,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Make an older (or any) version the default: `rollback coder --to 2`.
    Rollback {
        name: String,
        #[arg(long, value_name = "VERSION")]
        to: u32,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Pause one agent of a run: its running step finishes its current model call and then
    /// holds; its other steps wait; the other agents go on.
    Pause {
        run: String,
        agent: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Let a paused agent of a run go on.
    Resume {
        run: String,
        agent: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Stop one agent of a run for good: its pending steps fail with the reason (their
    /// `on_error` applies), and it receives no more messages.
    Stop {
        run: String,
        agent: String,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print every version of the agents (all, or those named) as JSON, or write each
    /// agent's default version as `NAME.yaml` (or `.json`) into `--dir`.
    Export {
        names: Vec<String>,
        #[arg(long, value_name = "DIR")]
        dir: Option<PathBuf>,
        #[command(flatten)]
        db: DbArgs,
    },
}

fn parse_ref(s: &str) -> Result<AgentRef, i32> {
    s.parse().map_err(|e| {
        errln!("error: {e}");
        EXIT_INVALID
    })
}

pub async fn agents(cmd: AgentsCmd) -> anyhow::Result<i32> {
    match cmd {
        AgentsCmd::Create { file, db } => create(&file, db).await,
        AgentsCmd::List { json, db } => list(json, db).await,
        AgentsCmd::Show { agent, json, db } => show(&agent, json, db).await,
        AgentsCmd::Versions { name, json, db } => versions(&name, json, db).await,
        AgentsCmd::Diff { from, to, json, db } => diff(&from, &to, json, db).await,
        AgentsCmd::Rollback { name, to, db } => {
            let (control, caller) = db.open().await?;
            let a = control.rollback_agent(&caller, &name, to).await?;
            outln!(
                "agent {} now defaults to version {} (latest {})",
                a.name,
                a.version,
                a.latest
            );
            Ok(EXIT_OK)
        }
        AgentsCmd::Pause { run, agent, db } => {
            lifecycle(db, &run, &agent, AgentAction::Pause).await
        }
        AgentsCmd::Resume { run, agent, db } => {
            lifecycle(db, &run, &agent, AgentAction::Resume).await
        }
        AgentsCmd::Stop { run, agent, db } => lifecycle(db, &run, &agent, AgentAction::Stop).await,
        AgentsCmd::Export { names, dir, db } => {
            let (control, caller) = db.open().await?;
            let all = control.export_agents(&caller, &names).await?;
            match dir {
                None => outln!("{}", serde_json::to_string_pretty(&all)?),
                Some(dir) => write_defaults(&all, &dir)?,
            }
            Ok(EXIT_OK)
        }
    }
}

/// `baton agents pause|resume|stop RUN AGENT`.
async fn lifecycle(db: DbArgs, run: &str, agent: &str, action: AgentAction) -> anyhow::Result<i32> {
    let (control, rec) = crate::cmd_run::control_for_run(&db, run, None).await?;
    let caller = db.caller(&control).await?;
    let run = rec.id;
    match control
        .control_agent(&caller, &run.to_string(), agent, action)
        .await
    {
        Ok(ControlOutcome::Applied(status)) => {
            let done = match action {
                AgentAction::Pause => "paused",
                AgentAction::Resume => "resumed",
                AgentAction::Stop => "stopped",
            };
            outln!("agent {agent} of run {run} is {done} (the run is {status})");
        }
        Ok(ControlOutcome::Queued) => {
            outln!(
                "asked the process running {run} to {} agent {agent}",
                action.as_str()
            );
        }
        Err(e) => return refused(e),
    }
    Ok(EXIT_OK)
}

async fn create(file: &std::path::Path, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let text = read_doc(file)?;
    let name = file.display().to_string();
    match control.create_agent(&caller, &name, &text).await {
        Ok(a) => Ok(report_stored(
            &a.warnings,
            &format!("agent {}@{} (default)", a.name, a.version),
        )),
        Err(e) => refused(e),
    }
}

async fn list(json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let all = control.list_agents(&caller).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
    } else if all.is_empty() {
        outln!("no agents");
    } else {
        outln!("{:<32}  {:>7}  {:>6}  UPDATED", "NAME", "DEFAULT", "LATEST");
        for a in &all {
            let updated = fmt_time(a.updated_at_ms);
            let (n, d, l) = (&a.name, a.default_version, a.latest);
            outln!("{n:<32}  {d:>7}  {l:>6}  {updated}");
        }
    }
    Ok(EXIT_OK)
}

async fn show(agent: &str, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let r = match parse_ref(agent) {
        Ok(r) => r,
        Err(code) => return Ok(code),
    };
    let (control, caller) = db.open().await?;
    let a = control.get_agent(&caller, &r).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&a)?);
    } else {
        outln!("# {}", headline(&a));
        outln!("{}", a.source.trim_end());
    }
    Ok(EXIT_OK)
}

async fn versions(name: &str, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (control, caller) = db.open().await?;
    let all = control.agent_versions(&caller, name).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&all)?);
        return Ok(EXIT_OK);
    }
    outln!("{:>7}  {:<20}  {:<24}  BY", "VERSION", "CREATED", "MODEL");
    for a in &all {
        let mark = if a.version == a.default_version {
            "*"
        } else {
            " "
        };
        let by = a.created_by.as_deref().unwrap_or("-");
        let (v, at, m) = (a.version, fmt_time(a.created_at_ms), &a.spec.model);
        outln!("{v:>6}{mark}  {at:<20}  {m:<24}  {by}");
    }
    outln!("(* the default version)");
    Ok(EXIT_OK)
}

async fn diff(from: &str, to: &str, json: bool, db: DbArgs) -> anyhow::Result<i32> {
    let (a, b) = match (parse_ref(from), parse_ref(to)) {
        (Ok(a), Ok(b)) => (a, b),
        (Err(code), _) | (_, Err(code)) => return Ok(code),
    };
    let (control, caller) = db.open().await?;
    let d = control.diff_agents(&caller, &a, &b).await?;
    if json {
        outln!("{}", serde_json::to_string_pretty(&d)?);
        return Ok(EXIT_OK);
    }
    if d.changes.is_empty() {
        outln!("{}@{} and @{} are the same agent", d.name, d.from, d.to);
        return Ok(EXIT_OK);
    }
    for c in &d.changes {
        outln!("{}: {} -> {}", c.field, c.from, c.to);
    }
    outln!();
    outln!("{}", d.unified.trim_end());
    Ok(EXIT_OK)
}

/// `NAME@VERSION (default N, latest M), stored WHEN by WHO`.
fn headline(a: &AgentVersion) -> String {
    let stored = stored_at(a.created_at_ms, a.created_by.as_deref());
    let (n, v, d, l) = (&a.name, a.version, a.default_version, a.latest);
    format!("{n}@{v} (default {d}, latest {l}), {stored}")
}

/// Writes each agent's default version as it was written, `NAME.yaml` or `NAME.json`.
fn write_defaults(all: &[AgentVersion], dir: &std::path::Path) -> anyhow::Result<()> {
    use anyhow::Context;
    std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    for a in all.iter().filter(|a| a.version == a.default_version) {
        let ext = match a.format {
            baton_store::WorkflowFormat::Json => "json",
            baton_store::WorkflowFormat::Yaml => "yaml",
        };
        let path = dir.join(format!("{}.{ext}", a.name));
        std::fs::write(&path, &a.source).with_context(|| format!("writing {}", path.display()))?;
        outln!("wrote {}", path.display());
    }
    Ok(())
}
