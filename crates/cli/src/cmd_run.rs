//! `baton run`, `resume`, `validate` and `schema`, and what they share with `runs ...`: the
//! database and durability flags, exit codes, loading a stored run, driving a run on a terminal.

use std::path::{Path, PathBuf};

use anyhow::{anyhow, bail};
use baton_control::runs::model_problems;
use baton_control::view::step_rows;
use baton_control::{Caller, Control, Details, Diagnostic, Resumed, RunRequest, WorkflowSource};
use baton_engine::load::{self, ValidationEnv};
use baton_engine::{Program, RunState};
use baton_store::RunRecord;
use baton_store::sqlite::Durability;
use baton_types::{RunStatus, TenantId};
use clap::{Args, ValueEnum};
use serde_json::{Map, Value, json};

use crate::interactive::drive_interactive;
use crate::{view, wiring};

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
/// The run stopped but is not over: paused, or waiting for a person.
pub const EXIT_STOPPED: i32 = 3;
/// The run's budget stopped it: `baton resume RUN --budget KIND=+N` continues it.
pub const EXIT_BUDGET: i32 = 4;

#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// The run log: a SQLite file, or a PostgreSQL database as a `postgres://` URL. Default:
    /// $BATON_DB, else ~/.local/share/baton/baton.db.
    #[arg(long, global = true, value_name = "PATH|URL")]
    pub db: Option<String>,
    /// The tenant to act in (default: `default`; `keys list` and `audit verify`: every tenant).
    #[arg(long, global = true, value_name = "TENANT")]
    pub tenant: Option<String>,
}

impl DbArgs {
    /// The tenant named by `--tenant`, if any (it must be a tenant id).
    pub fn tenant_id(&self) -> anyhow::Result<Option<TenantId>> {
        Ok(self.tenant.as_deref().map(str::parse).transpose()?)
    }

    /// The local admin acting in `--tenant` (default `default`), which must exist.
    pub async fn caller(&self, control: &Control) -> anyhow::Result<Caller> {
        let Some(t) = self.tenant_id()? else {
            return Ok(Caller::local());
        };
        if control.tenancy().tenant(&t).await?.is_none() {
            bail!("no tenant {t} (see `baton tenants list`)");
        }
        Ok(Caller::local().in_tenant(t))
    }

    /// The use cases over `--db`, and the local admin acting in `--tenant`.
    pub async fn open(&self) -> anyhow::Result<(Control, Caller)> {
        let control = crate::wiring::control(self.db.as_deref()).await?;
        let caller = self.caller(&control).await?;
        Ok((control, caller))
    }
}

#[derive(Clone, Copy, Debug, Default, ValueEnum)]
pub enum DurabilityArg {
    /// A commit survives the process being killed (WAL, synchronous=NORMAL).
    #[default]
    Process,
    /// Every commit is fsynced and survives power loss (synchronous=FULL).
    Power,
}

impl From<DurabilityArg> for Durability {
    fn from(d: DurabilityArg) -> Self {
        match d {
            DurabilityArg::Process => Durability::Process,
            DurabilityArg::Power => Durability::Power,
        }
    }
}

#[derive(Args, Debug)]
pub struct RunArgs {
    /// The workflow file (YAML or JSON).
    pub file: PathBuf,
    /// An input, `name=value` (repeatable). Arrays and objects are JSON.
    #[arg(long = "input", short = 'i', value_name = "NAME=VALUE")]
    pub inputs: Vec<String>,
    /// A JSON or YAML file of inputs.
    #[arg(long, value_name = "FILE")]
    pub input_file: Option<PathBuf>,
    /// The most a run's inputs may take, as JSON (e.g. 512K, 8M, 1G).
    #[arg(long, value_name = "SIZE", env = "BATON_MAX_INPUT_SIZE", default_value = "8M",
          value_parser = baton_engine::inputs::parse_size)]
    pub max_input_size: u64,
    /// Print events as JSON lines (and the summary as one JSON object).
    #[arg(long)]
    pub json: bool,
    /// Pause before this step (repeatable).
    #[arg(long = "break-before", value_name = "STEP")]
    pub break_before: Vec<String>,
    /// Pause before every step.
    #[arg(long)]
    pub step: bool,
    /// How hard commits are pushed to disk.
    #[arg(long, value_enum, default_value_t = DurabilityArg::Process)]
    pub durability: DurabilityArg,
    /// Create the run and leave it to the `baton worker` processes of the (PostgreSQL)
    /// database: prints its id and returns at once.
    #[arg(long)]
    pub queue: bool,
    /// The tags a worker must have to run it (with --queue), e.g. `sandbox-gvisor,gpu`.
    #[arg(
        long,
        value_delimiter = ',',
        value_name = "TAG,...",
        requires = "queue"
    )]
    pub worker_tags: Vec<String>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Pause before every step from here on.
    #[arg(long)]
    pub step: bool,
    /// Raise a budget limit first (repeatable): `tokens=+50000`, `cost_usd=+1.5`,
    /// `wall_time=+10m`, `model_calls=+20`, an absolute `tokens=200000`, or an agent's own
    /// limit `coder.tokens=+5000`.
    #[arg(long, value_name = "[AGENT.]KIND=[+]AMOUNT")]
    pub budget: Vec<String>,
    #[arg(long)]
    pub json: bool,
    /// Change the run's durability from here on (default: the one it was started with).
    #[arg(long, value_enum)]
    pub durability: Option<DurabilityArg>,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ValidateArgs {
    /// Workflow files.
    #[arg(required = true)]
    pub files: Vec<PathBuf>,
    /// Print diagnostics as JSON.
    #[arg(long)]
    pub json: bool,
    /// Steps that name agents of the registry are checked against this database's registry
    /// (opened only for such files).
    #[command(flatten)]
    pub db: DbArgs,
}

pub(crate) fn env<'a>(
    tools: &'a baton_tools::Registry,
    models: &'a baton_llm::Providers,
) -> ValidationEnv<'a> {
    ValidationEnv {
        tools,
        models: Some(models),
    }
}

pub(crate) fn print_diagnostics<D: std::fmt::Display>(diags: &[D]) {
    for d in diags {
        errln!("{d}");
    }
    errln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

/// Loads and validates one file; a file whose steps name registry agents is checked with
/// them (the database is opened only then).
async fn check_file(
    f: &Path,
    db: &DbArgs,
    tools: &baton_tools::Registry,
    models: &baton_llm::Providers,
) -> anyhow::Result<Result<load::Loaded, Vec<Diagnostic>>> {
    let mut loaded = match load::load_file(f) {
        Ok(l) => l,
        Err(d) => return Ok(Err(d.into_iter().map(Diagnostic::from).collect())),
    };
    if baton_control::agents::names_registry_agents(&loaded.doc) {
        let (control, caller) = db.open().await?;
        return Ok(match control.check_loaded(&caller, &mut loaded).await {
            Ok(_) => Ok(loaded),
            Err(e) if !e.diagnostics().is_empty() => Err(e.diagnostics().to_vec()),
            Err(e) => return Err(e.into()),
        });
    }
    let ds = load::validate(&loaded, &env(tools, models));
    Ok(if ds.is_empty() {
        Ok(loaded)
    } else {
        Err(ds.into_iter().map(Diagnostic::from).collect())
    })
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

pub async fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let tools = wiring::tools();
    let models = wiring::providers()?;
    let mut all = Vec::new();
    let mut warnings = Vec::new();
    for f in &args.files {
        match check_file(f, &args.db, &tools, &models).await? {
            Ok(loaded) => {
                let problems = model_problems(&models, &loaded, &base_dir(f));
                if !args.json {
                    let note = match problems.len() {
                        0 => String::new(),
                        n => format!(" ({n} warning{})", if n == 1 { "" } else { "s" }),
                    };
                    outln!("{}: ok{note}", f.display());
                }
                warnings.extend(problems);
            }
            Err(d) => all.extend(d),
        }
    }
    if args.json {
        let level = |d: &Diagnostic, level: &str| json!({"level": level, "file": d.file, "line": d.line, "column": d.column, "path": d.path, "message": d.message});
        let v: Vec<Value> = all
            .iter()
            .map(|d| level(d, "error"))
            .chain(warnings.iter().map(|d| level(d, "warning")))
            .collect();
        outln!("{}", serde_json::to_string_pretty(&v)?);
    } else {
        for w in &warnings {
            errln!("{}", w.to_string().replacen(": error: ", ": warning: ", 1));
        }
        if !all.is_empty() {
            print_diagnostics(&all);
        }
    }
    Ok(if all.is_empty() {
        EXIT_OK
    } else {
        EXIT_INVALID
    })
}

pub fn schema() -> anyhow::Result<i32> {
    outln!("{}", load::schema_json());
    Ok(EXIT_OK)
}

/// The inputs given on the command line (`--input-file`, then `--input NAME=VALUE`, typed by
/// the workflow's declarations); `Control::create_run` checks them and fills defaults.
fn parse_inputs(program: &Program, args: &RunArgs) -> Result<Map<String, Value>, Vec<String>> {
    let mut given = Map::new();
    let mut errors = Vec::new();
    if let Some(f) = &args.input_file {
        // Refused before it is read: a file over the limit never enters memory.
        if let Ok(m) = std::fs::metadata(f)
            && m.len() > args.max_input_size
        {
            return Err(vec![format!(
                "--input-file {}: the file is {}, over the {} limit on a run's inputs (raise it with --max-input-size or BATON_MAX_INPUT_SIZE)",
                f.display(),
                baton_engine::inputs::fmt_size(m.len()),
                baton_engine::inputs::fmt_size(args.max_input_size)
            )]);
        }
        match std::fs::read_to_string(f) {
            Ok(text) => match baton_llm::scripted::yaml_to_json(&text) {
                Ok(Value::Object(m)) => given.extend(m),
                Ok(_) => errors.push(format!(
                    "{}: inputs must be a mapping of names to values",
                    f.display()
                )),
                Err(e) => errors.push(format!("{}: {e}", f.display())),
            },
            Err(e) => errors.push(format!("{}: {e}", f.display())),
        }
    }
    for kv in &args.inputs {
        let Some((k, v)) = kv.split_once('=') else {
            errors.push(format!("--input '{kv}': write NAME=VALUE"));
            continue;
        };
        match program.doc.inputs.get(k) {
            Some(spec) => match baton_engine::inputs::parse_cli_value(k, spec.kind, v) {
                Ok(v) => {
                    given.insert(k.to_string(), v);
                }
                Err(e) => errors.push(e),
            },
            None => {
                given.insert(k.to_string(), Value::String(v.to_string()));
            }
        }
    }
    if errors.is_empty() {
        Ok(given)
    } else {
        Err(errors)
    }
}

/// Prints a use case's refusal of a workflow or a run's inputs as `baton` always has; the exit
/// code for it, or the error itself when it is not about the request.
pub(crate) fn report_invalid(e: baton_control::Error) -> anyhow::Result<i32> {
    match &e {
        baton_control::Error::Invalid { details, message } => {
            match details {
                Details::Diagnostics { diagnostics } => print_diagnostics(diagnostics),
                Details::Inputs { problems } => {
                    for p in problems {
                        errln!("error: {p}");
                    }
                }
                _ => errln!("{message}"),
            }
            Ok(EXIT_INVALID)
        }
        _ => Err(e.into()),
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let store = wiring::open_store(args.db.db.as_deref(), args.durability.into()).await?;
    let queue = match (&store, args.queue) {
        (wiring::Store::Postgres(pg), true) => Some(pg.clone()),
        (wiring::Store::Sqlite(_), true) => bail!(
            "--queue leaves the run to `baton worker` processes, which share a PostgreSQL database: pass --db postgres://..."
        ),
        (_, false) => None,
    };
    let mut control = wiring::control_on(&store)?;
    if let Some(pg) = &queue {
        control = control.with_queue(pg.clone());
    }
    let caller = args.db.caller(&control).await?;
    let w = match control
        .load_workflow(&caller, WorkflowSource::File(args.file.clone()))
        .await
    {
        Ok(w) => w,
        Err(e) => return report_invalid(e),
    };
    for b in &args.break_before {
        if w.program.node_by_id(b).is_none() {
            errln!("error: --break-before {b}: the workflow has no step '{b}'");
            return Ok(EXIT_INVALID);
        }
    }
    let given = match parse_inputs(&w.program, &args) {
        Ok(v) => v,
        Err(errs) => {
            for e in &errs {
                errln!("error: {e}");
            }
            return Ok(EXIT_INVALID);
        }
    };
    let req = RunRequest {
        inputs: given,
        breakpoints: args.break_before.clone(),
        stepping: args.step,
        idempotency_key: None,
        max_input_size: Some(args.max_input_size),
        worker_tags: args.worker_tags.clone(),
    };
    let started = match control.create_run(&caller, &w, req).await {
        Ok(s) => s,
        Err(e) => return report_invalid(e),
    };
    let Some(drive) = started.drive else {
        bail!("run {} was started before", started.run);
    };
    if queue.is_some() {
        // Left to the workers: the creation hold is released, a worker claims it.
        let run = drive.run;
        control
            .spawn(drive)
            .await
            .map_err(|e| anyhow!("queueing run {run}: {e}"))??;
        if args.json {
            outln!(
                "{}",
                serde_json::json!({"id": run, "status": "pending", "queued": true, "worker_tags": args.worker_tags})
            );
        } else {
            outln!("{run}");
            errln!("queued: a `baton worker` of this database runs it (`baton runs show {run}`)");
        }
        return Ok(0);
    }
    // The events written with the run (`run_created`): the sink sees only those that follow.
    if args.json {
        for e in control.services().store.events(drive.run, 0).await? {
            outln!("{}", serde_json::to_string(&e)?);
        }
    }
    drive_interactive(&control, drive, args.json).await
}

/// A run-naming error as `baton` words it (a run not found is "not in this database").
pub(crate) fn run_error(e: baton_control::Error, run: &str) -> anyhow::Error {
    match e {
        baton_control::Error::NotFound { .. } => {
            anyhow!("no run {run} in this database (see `baton runs list`)")
        }
        e => e.into(),
    }
}

/// The use cases over the run log, for a stored run (named by id or unique prefix) with the
/// durability the run was started with, or with `change`, which is then recorded as the run's
/// durability.
pub(crate) async fn control_for_run(
    db: &DbArgs,
    run: &str,
    change: Option<DurabilityArg>,
) -> anyhow::Result<(Control, RunRecord)> {
    let store = wiring::open_store(db.db.as_deref(), Durability::Process).await?;
    let control = wiring::control_on(&store)?;
    let rec = control
        .find_run(&db.caller(&control).await?, run)
        .await
        .map_err(|e| run_error(e, run))?;
    let store = match store {
        wiring::Store::Sqlite(s) => s,
        wiring::Store::Postgres(_) => {
            if change.is_some() {
                bail!(
                    "--durability applies to SQLite files: a PostgreSQL database commits as its server is configured (synchronous_commit)"
                );
            }
            return Ok((control, rec));
        }
    };
    let kept = store.run_durability(rec.id)?.unwrap_or_default();
    let want = change.map(Durability::from).unwrap_or(kept);
    if want != kept {
        store.set_run_durability(rec.id, want).await?;
    }
    if want == Durability::Process {
        return Ok((control, rec));
    }
    drop(control);
    drop(store);
    let control = wiring::control_on(&wiring::open_store(db.db.as_deref(), want).await?)?;
    Ok((control, rec))
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<i32> {
    let mut budget = Vec::new();
    for pair in &args.budget {
        match baton_types::BudgetChange::parse_pair(pair) {
            Ok(c) => budget.push(c),
            Err(e) => {
                errln!("error: --budget {e}");
                return Ok(EXIT_INVALID);
            }
        }
    }
    let (control, rec) = control_for_run(&args.db, &args.run, args.durability).await?;
    let opts = baton_control::ResumeOptions {
        stepping: args.step,
        budget,
    };
    let resumed = match control
        .resume_with(&args.db.caller(&control).await?, &rec.id.to_string(), opts)
        .await
    {
        Ok(r) => r,
        // A bad change, or a run still over its budget: said plainly, with the run's exit code.
        Err(e @ baton_control::Error::Invalid { .. }) => {
            errln!("error: {e}");
            return Ok(EXIT_INVALID);
        }
        Err(e @ baton_control::Error::Conflict { .. })
            if rec.status == RunStatus::BudgetExceeded =>
        {
            errln!("error: {e}");
            return Ok(EXIT_BUDGET);
        }
        Err(e) => return Err(run_error(e, &args.run)),
    };
    match resumed {
        Resumed::Finished(status) => {
            errln!("run {} is already {}: nothing to resume", rec.id, status);
            Ok(if status == RunStatus::Succeeded {
                EXIT_OK
            } else {
                EXIT_FAILED
            })
        }
        Resumed::Queued => {
            outln!("asked the process running {} to resume it", rec.id);
            Ok(EXIT_OK)
        }
        Resumed::Drive(d) => drive_interactive(&control, *d, args.json).await,
    }
}

pub(crate) async fn summary(control: &Control, st: &RunState, json: bool) -> anyhow::Result<i32> {
    if st.status.is_terminal() {
        crate::otlp::send_run_trace(control, st.run_id).await;
    }
    let evs = control.services().store.events(st.run_id, 0).await?;
    let rows = step_rows(&evs);
    let code = match st.status {
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Failed | RunStatus::Cancelled => EXIT_FAILED,
        RunStatus::BudgetExceeded => EXIT_BUDGET,
        _ => EXIT_STOPPED,
    };
    if json {
        let summary = view::Summary {
            id: st.run_id.to_string(),
            status: st.status,
            outputs: &st.result,
            error: &st.error,
            tokens: st.usage.total(),
            steps: &rows,
        };
        outln!("{}", serde_json::to_string(&json!({ "summary": summary }))?);
        return Ok(code);
    }
    outln!();
    outln!("run {}  {}", st.run_id, st.status);
    for r in &rows {
        outln!("{}", view::step_line(r));
    }
    if st.usage.total() > 0 {
        outln!(
            "  tokens: {} ({} prompt, {} completion)",
            st.usage.total(),
            st.usage.prompt_tokens,
            st.usage.completion_tokens
        );
    }
    print_ending(st, &evs)?;
    Ok(code)
}

/// What the end of `summary` says for each status: the output, the error, how to continue.
fn print_ending(st: &RunState, evs: &[baton_types::EventRecord]) -> anyhow::Result<()> {
    match st.status {
        RunStatus::Succeeded => {
            let text = match &st.result {
                Some(Value::String(s)) => s.clone(),
                Some(v) => serde_json::to_string_pretty(v)?,
                None => "null".into(),
            };
            outln!("output:\n{text}");
        }
        RunStatus::Failed => outln!(
            "error: {}",
            crate::progress::brief(st.error.as_deref().unwrap_or_default())
        ),
        RunStatus::Paused => {
            if let Some(baton_types::PauseReason::Agents { agents }) = &st.pause {
                outln!(
                    "paused: waiting for paused agents: {}. Continue: baton agents resume {} {}",
                    agents.join(", "),
                    st.run_id,
                    agents.first().map_or("AGENT", String::as_str)
                );
                return Ok(());
            }
            let at = st
                .pause
                .as_ref()
                .map(crate::progress::describe_pause)
                .unwrap_or_default();
            outln!(
                "paused {at}. Inspect: baton runs state {id}   Continue: baton resume {id} [--step]",
                id = st.run_id
            );
        }
        RunStatus::BudgetExceeded => {
            if let Some(baton_types::PauseReason::Budget(stop)) = &st.pause {
                for line in crate::budget_view::stop_lines(&st.run_id.to_string(), stop) {
                    outln!("{line}");
                }
            }
        }
        RunStatus::Waiting => {
            for a in baton_control::view::ambiguities(evs) {
                for line in crate::step_view::ambiguity_lines(st.run_id, &a) {
                    outln!("{line}");
                }
            }
            for s in st.waiting_humans() {
                outln!(
                    "waiting for a person at step {s}. Answer: baton runs approve {id} --step {s}  (or reject / input --value ...)",
                    id = st.run_id
                );
            }
        }
        _ => {}
    }
    Ok(())
}
