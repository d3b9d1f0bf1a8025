//! `baton runs files|diff|rollback|export`: a run's workspace (the files its agents wrote
//! through the `workspace.*` tools), thin over the `workspace_*` use cases of `Control`.

use std::path::PathBuf;

use clap::Args;

use crate::cmd_run::{DbArgs, EXIT_OK};

#[derive(Args, Debug)]
pub struct FilesArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Print the history as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct DiffArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Only what this step changed (every visit of it); without it, every change of the run.
    pub step: Option<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct RollbackArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Put the files back exactly as they were before this step first changed them.
    pub step: String,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ExportArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// A new or empty directory to copy the files into.
    pub dir: PathBuf,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `baton runs files RUN`: the workspace's history, one change per line.
pub async fn files(a: FilesArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let log = control.workspace_log(&caller, &a.run).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&log)?);
        return Ok(EXIT_OK);
    }
    outln!("workspace {}", log.dir);
    outln!("{:<12} {:<20} {:<16} SUMMARY", "COMMIT", "STEP", "AGENT");
    for c in &log.changes {
        outln!(
            "{:<12} {:<20} {:<16} {}",
            &c.commit[..12.min(c.commit.len())],
            c.step.as_deref().unwrap_or("-"),
            c.agent.as_deref().unwrap_or("-"),
            c.summary
        );
    }
    Ok(EXIT_OK)
}

/// `baton runs diff RUN [STEP]`: a unified diff.
pub async fn diff(a: DiffArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let diff = control
        .workspace_diff(&caller, &a.run, a.step.as_deref())
        .await?;
    if !diff.is_empty() {
        outln!("{}", diff.trim_end_matches('\n'));
    }
    Ok(EXIT_OK)
}

/// `baton runs rollback RUN STEP`.
pub async fn rollback(a: RollbackArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let done = control.workspace_rollback(&caller, &a.run, &a.step).await?;
    match &done.commit {
        Some(c) => outln!(
            "run {}: the files are as before step {} (commit {})",
            done.run,
            done.step,
            &c[..12.min(c.len())]
        ),
        None => outln!(
            "run {}: the files already were as before step {}",
            done.run,
            done.step
        ),
    }
    Ok(EXIT_OK)
}

/// `baton runs export RUN DIR`.
pub async fn export(a: ExportArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let n = control.workspace_export(&caller, &a.run, &a.dir).await?;
    let files = if n == 1 { "file" } else { "files" };
    outln!("copied {n} {files} to {}", a.dir.display());
    Ok(EXIT_OK)
}
