//! `baton memory`: what a workflow's runs remember: its shared keys (list, get, history) and a
//! search of its semantic memories (recall), thin over `baton_control`.

use baton_store::KvEntry;
use clap::{Args, Subcommand};

use crate::cmd_run::{DbArgs, EXIT_OK};
use crate::view::fmt_time;

/// One shared key of a workflow (`baton memory get|history WORKFLOW KEY`).
#[derive(Args, Debug)]
pub struct KeyArgs {
    /// The workflow's name (its `name:`).
    workflow: String,
    /// The key, as the memory.workflow.* tools wrote it.
    key: String,
    /// Print JSON.
    #[arg(long)]
    json: bool,
    #[command(flatten)]
    db: DbArgs,
}

#[derive(Subcommand, Debug)]
pub enum MemoryCmd {
    /// List a workflow's shared keys with their versions and values.
    List {
        /// The workflow's name (its `name:`).
        workflow: String,
        /// Only keys starting with this.
        #[arg(long, default_value = "")]
        prefix: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Print a shared key's value (JSON) and, with --json, its version and writer.
    Get(KeyArgs),
    /// Every write to a shared key, oldest first: version, op, writer, run, step, value.
    History(KeyArgs),
    /// Embed a workflow's semantic memories (or, with --run, a run's own) again with the model
    /// `[memory] embeddings` in baton.toml names, after that setting changed.
    Reembed {
        /// The workflow's name (its `name:`); leave out with --run.
        #[arg(required_unless_present = "run", conflicts_with = "run")]
        workflow: Option<String>,
        /// A run's own memories (`scope: run`) instead of a workflow's.
        #[arg(long, value_name = "RUN_ID")]
        run: Option<String>,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The workflow's semantic memories closest in meaning to QUERY (needs `make model-embed`).
    Recall {
        /// The workflow's name (its `name:`).
        workflow: String,
        /// What to look for, in words.
        query: String,
        /// How many to show (1-100).
        #[arg(short = 'k', value_name = "N", default_value_t = 5)]
        k: usize,
        /// Print JSON.
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
}

/// A value on one line, cut to `width` characters.
fn short(v: &serde_json::Value, width: usize) -> String {
    let s = v.to_string();
    if s.chars().count() <= width {
        s
    } else {
        let cut: String = s.chars().take(width.saturating_sub(3)).collect();
        format!("{cut}...")
    }
}

fn by(e: &KvEntry) -> &str {
    e.written_by.as_deref().unwrap_or("-")
}

pub async fn memory(cmd: MemoryCmd) -> anyhow::Result<i32> {
    match cmd {
        MemoryCmd::List {
            workflow,
            prefix,
            json,
            db,
        } => {
            let (control, caller) = db.open().await?;
            let all = control.memory_list(&caller, &workflow, &prefix).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&all)?);
            } else if all.is_empty() {
                outln!("no memory keys in workflow {workflow}");
            } else {
                outln!(
                    "{:<24}  {:>7}  {:<12}  {:<20}  VALUE",
                    "KEY",
                    "VERSION",
                    "BY",
                    "AT"
                );
                for e in &all {
                    let (k, v, at) = (&e.key, e.version, fmt_time(e.at_ms));
                    outln!(
                        "{k:<24}  {v:>7}  {:<12}  {at:<20}  {}",
                        by(e),
                        short(&e.value, 60)
                    );
                }
            }
        }
        MemoryCmd::Get(KeyArgs {
            workflow,
            key,
            json,
            db,
        }) => {
            let (control, caller) = db.open().await?;
            let e = control.memory_get(&caller, &workflow, &key).await?;
            let shown = if json {
                serde_json::to_value(&e)?
            } else {
                e.value
            };
            outln!("{}", serde_json::to_string_pretty(&shown)?);
        }
        MemoryCmd::History(KeyArgs {
            workflow,
            key,
            json,
            db,
        }) => {
            let (control, caller) = db.open().await?;
            let all = control.memory_history(&caller, &workflow, &key).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&all)?);
                return Ok(EXIT_OK);
            }
            outln!(
                "{:>7}  {:<6}  {:<12}  {:<20}  {:<12}  VALUE",
                "VERSION",
                "OP",
                "BY",
                "AT",
                "STEP"
            );
            for e in &all {
                let (v, op, at) = (e.version, &e.op, fmt_time(e.at_ms));
                let step = e.step.as_deref().unwrap_or("-");
                outln!(
                    "{v:>7}  {op:<6}  {:<12}  {at:<20}  {step:<12}  {}",
                    by(e),
                    short(&e.value, 60)
                );
            }
        }
        MemoryCmd::Reembed { workflow, run, db } => {
            let (control, caller) = db.open().await?;
            let workflow = workflow.unwrap_or_default();
            let n = control
                .memory_reembed(&caller, &workflow, run.as_deref())
                .await?;
            let whose = match &run {
                Some(r) => format!("run {r}"),
                None => format!("workflow {workflow}"),
            };
            let model = control.memory_model().unwrap_or("?");
            outln!("embedded {n} memories of {whose} again with {model}");
        }
        MemoryCmd::Recall {
            workflow,
            query,
            k,
            json,
            db,
        } => {
            let (control, caller) = db.open().await?;
            let hits = control.memory_recall(&caller, &workflow, &query, k).await?;
            if json {
                outln!("{}", serde_json::to_string_pretty(&hits)?);
            } else if hits.is_empty() {
                outln!("no memories in workflow {workflow}");
            } else {
                for h in &hits {
                    let agent = h.agent.as_deref().unwrap_or("-");
                    outln!("{:.3}  {}  ({agent})  {}", h.score, h.id, h.text);
                }
            }
        }
    }
    Ok(EXIT_OK)
}
