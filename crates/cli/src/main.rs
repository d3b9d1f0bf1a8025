//! `baton`: the command-line interface and the composition root of Baton.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

// Output macros (`outln!`, `errln!`) for every module below: declared first.
#[macro_use]
mod out;

mod budget_view;
mod cmd_admin;
mod cmd_agents;
mod cmd_bench;
mod cmd_bench_app;
mod cmd_bench_embed;
mod cmd_db;
mod cmd_debugger;
mod cmd_fork;
mod cmd_memory;
mod cmd_models;
mod cmd_recordings;
mod cmd_resolve;
mod cmd_run;
mod cmd_runs;
mod cmd_sandbox;
mod cmd_serve;
mod cmd_webhooks;
mod cmd_worker;
mod cmd_workspace;
mod interactive;
mod memory_config;
mod otlp;
mod progress;
mod sandbox_view;
mod step_view;
mod team_view;
mod view;
mod wiring;

// mimalloc: the engine allocates small objects at every step; measured on `baton bench`,
// chain10 went from 40 µs to 26 µs per run against glibc's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(
    name = "baton",
    version,
    about = "Orchestrate teams of LLM agents, durably."
)]
struct Cli {
    /// The configuration file (baton.toml) to read instead of searching for one; it must exist.
    #[arg(long, global = true, value_name = "PATH")]
    config: Option<std::path::PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run a workflow and show its progress.
    Run(cmd_run::RunArgs),
    /// Continue a run that stopped (crash, pause, breakpoint).
    Resume(cmd_run::ResumeArgs),
    /// Check workflow files; prints every error with file:line:column.
    Validate(cmd_run::ValidateArgs),
    /// Print the JSON Schema of the workflow format.
    Schema,
    /// Inspect and control runs.
    #[command(subcommand)]
    Runs(cmd_runs::RunsCmd),
    // Subcommands from other modules: add a variant here and an arm in `main`.
    /// Run commands in a sandbox, check which sandbox tiers work here, benchmark them.
    #[command(subcommand)]
    Sandbox(cmd_sandbox::SandboxCmd),
    /// Scan code for security problems (built-in rules, Bandit/Semgrep when installed).
    Scan(cmd_sandbox::ScanArgs),
    /// List and install models (`models list`, `models pull smollm2`).
    Models(cmd_models::ModelsArgs),
    /// Chat with a model, e.g. `baton chat local/smollm2` (reads stdin when it is not a terminal).
    Chat(cmd_models::ChatArgs),
    /// Serve the HTTP API (the OpenAI-compatible /v1 routes).
    Serve(cmd_serve::ServeArgs),
    /// Measure Baton on the peer-bench workloads (one JSON line per workload).
    Bench(cmd_bench::BenchArgs),
    /// Create, list and revoke API keys (`keys create --tenant T --role R [--expires 30d]`).
    #[command(subcommand)]
    Keys(cmd_admin::KeysCmd),
    /// Create and list tenants.
    #[command(subcommand)]
    Tenants(cmd_admin::TenantsCmd),
    /// Store workflows with versions: create, update, list, show NAME[@VERSION], delete.
    #[command(subcommand)]
    Workflows(cmd_admin::WorkflowsCmd),
    /// The agent registry: create, list, show NAME[@VERSION], versions, diff, rollback, export.
    #[command(subcommand)]
    Agents(cmd_agents::AgentsCmd),
    /// Team memory of a workflow: list, get, history of its shared keys; recall by meaning.
    #[command(subcommand)]
    Memory(cmd_memory::MemoryCmd),
    /// The `human` steps waiting for an answer, in every run.
    Approvals(cmd_admin::ApprovalsArgs),
    /// Read and verify the audit log (a hash chain per tenant).
    #[command(subcommand)]
    Audit(cmd_admin::AuditCmd),
    /// Inbound hooks that start workflows, and subscriptions that POST run events (Standard
    /// Webhooks signatures).
    #[command(subcommand)]
    Webhooks(cmd_webhooks::WebhooksCmd),
    /// The database: `db status` (backend, schema, pending migrations), `db migrate`.
    #[command(subcommand)]
    Db(cmd_db::DbCmd),
    /// A worker: claims and runs the runs of a PostgreSQL database shared with other workers
    /// and servers (see docs/scale-out.md).
    Worker(cmd_worker::WorkerArgs),
    /// The workers of a PostgreSQL database: `workers list`, `workers drain ID`.
    #[command(subcommand)]
    Workers(cmd_worker::WorkersCmd),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    wiring::set_config(cli.config.clone());
    let rt = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            errln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(1);
        }
    };
    let code: anyhow::Result<i32> = rt.block_on(async move {
        match cli.command {
            Command::Run(args) => cmd_run::run(args).await,
            Command::Resume(args) => cmd_run::resume(args).await,
            Command::Validate(args) => cmd_run::validate(args).await,
            Command::Schema => cmd_run::schema(),
            Command::Runs(cmd) => cmd_runs::runs(cmd).await,
            // Arms for subcommands from other modules go here.
            Command::Sandbox(cmd) => cmd_sandbox::sandbox(cmd).await,
            Command::Scan(args) => cmd_sandbox::scan(args).await,
            Command::Models(args) => cmd_models::run(args).await,
            Command::Chat(args) => cmd_models::chat(args).await,
            Command::Serve(args) => cmd_serve::run(args).await,
            Command::Bench(args) => cmd_bench::run(args).await,
            Command::Keys(cmd) => cmd_admin::keys(cmd).await,
            Command::Tenants(cmd) => cmd_admin::tenants(cmd).await,
            Command::Workflows(cmd) => cmd_admin::workflows(cmd).await,
            Command::Agents(cmd) => cmd_agents::agents(cmd).await,
            Command::Memory(cmd) => cmd_memory::memory(cmd).await,
            Command::Audit(cmd) => cmd_admin::audit(cmd).await,
            Command::Webhooks(cmd) => cmd_webhooks::webhooks(cmd).await,
            Command::Approvals(args) => cmd_admin::approvals(args).await,
            Command::Db(cmd) => cmd_db::db(cmd).await,
            Command::Worker(args) => cmd_worker::worker(args).await,
            Command::Workers(cmd) => cmd_worker::workers(cmd).await,
        }
    });
    match code {
        Ok(c) => ExitCode::from(u8::try_from(c).unwrap_or(1)),
        Err(e) => {
            errln!("error: {e:#}");
            ExitCode::from(1)
        }
    }
}
