//! `baton run`, `resume`, `validate`, `schema` and `runs ...`.

use std::io::{BufRead, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use baton_engine::load::{self, ValidationEnv};
use baton_engine::{Executor, Input, Program, RunOptions, RunState, Services};
use baton_store::sqlite::Durability;
use baton_store::{Control, ListQuery, RunRecord};
use baton_types::{Event, HumanKind, RunId, RunStatus, Usage};
use clap::{Args, Subcommand, ValueEnum};
use serde_json::{Map, Value, json};

use crate::progress::{Mode, Printer};
use crate::wiring;

/// Exit codes.
pub const EXIT_OK: i32 = 0;
pub const EXIT_FAILED: i32 = 1;
pub const EXIT_INVALID: i32 = 2;
/// The run stopped but is not over: paused, or waiting for a person.
pub const EXIT_STOPPED: i32 = 3;

#[derive(Args, Clone, Debug)]
pub struct DbArgs {
    /// The run log (SQLite). Default: $BATON_DB, else ~/.local/share/baton/baton.db.
    #[arg(long, global = true, value_name = "PATH")]
    pub db: Option<PathBuf>,
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
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct ResumeArgs {
    pub run: RunId,
    /// Pause before every step from here on.
    #[arg(long)]
    pub step: bool,
    #[arg(long)]
    pub json: bool,
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
}

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
    /// A run's status, inputs, outputs and per-step durations and tokens.
    Show {
        run: RunId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// A run's events.
    Logs {
        run: RunId,
        #[arg(long)]
        json: bool,
        #[command(flatten)]
        db: DbArgs,
    },
    /// The engine state of a run (inputs, step outputs, shared state, what is active).
    State {
        run: RunId,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Ask the process running a run to pause it (or pause a run that is not running).
    Pause {
        run: RunId,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Cancel a run.
    Cancel {
        run: RunId,
        #[command(flatten)]
        db: DbArgs,
    },
    /// Approve a waiting `human` step, then continue the run.
    Approve(HumanArgs),
    /// Reject a waiting `human` step, then continue the run.
    Reject(HumanArgs),
    /// Answer a waiting `human` input step with a value, then continue the run.
    Input(HumanArgs),
}

#[derive(Args, Debug)]
pub struct HumanArgs {
    pub run: RunId,
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

fn env<'a>(
    tools: &'a baton_tools::Registry,
    models: &'a baton_llm::Providers,
) -> ValidationEnv<'a> {
    ValidationEnv {
        tools,
        models: Some(models),
    }
}

fn print_diagnostics(diags: &[load::Diagnostic]) {
    for d in diags {
        eprintln!("{d}");
    }
    eprintln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let tools = wiring::tools();
    let models = wiring::providers()?;
    let mut all = Vec::new();
    for f in &args.files {
        match load::load_and_validate(f, &env(&tools, &models)) {
            Ok(_) => {
                if !args.json {
                    println!("{}: ok", f.display());
                }
            }
            Err(d) => all.extend(d),
        }
    }
    if args.json {
        let v: Vec<Value> = all
            .iter()
            .map(|d| json!({"file": d.file, "line": d.line, "column": d.column, "path": d.path, "message": d.message}))
            .collect();
        println!("{}", serde_json::to_string_pretty(&v)?);
    } else if !all.is_empty() {
        print_diagnostics(&all);
    }
    Ok(if all.is_empty() { EXIT_OK } else { EXIT_FAILED })
}

pub fn schema() -> anyhow::Result<i32> {
    println!("{}", load::schema_json());
    Ok(EXIT_OK)
}

fn parse_inputs(program: &Program, args: &RunArgs) -> Result<Value, Vec<String>> {
    let mut given = Map::new();
    let mut errors = Vec::new();
    if let Some(f) = &args.input_file {
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
    if !errors.is_empty() {
        return Err(errors);
    }
    baton_engine::inputs::resolve(&program.doc, given)
}

fn mode(json: bool) -> Mode {
    if json {
        Mode::Json
    } else if std::io::stderr().is_terminal() {
        Mode::Tty
    } else {
        Mode::Plain
    }
}

pub async fn run(args: RunArgs) -> anyhow::Result<i32> {
    let tools = wiring::tools();
    let models = wiring::providers()?;
    let loaded = match load::load_and_validate(&args.file, &env(&tools, &models)) {
        Ok(l) => l,
        Err(d) => {
            print_diagnostics(&d);
            return Ok(EXIT_INVALID);
        }
    };
    let base = args
        .file
        .parent()
        .map(Path::to_path_buf)
        .unwrap_or_default();
    let program = match Program::compile(loaded.doc.clone(), base) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            eprintln!("{}: error: {e}", args.file.display());
            return Ok(EXIT_INVALID);
        }
    };
    for b in &args.break_before {
        if program.node_by_id(b).is_none() {
            eprintln!("error: --break-before {b}: the workflow has no step '{b}'");
            return Ok(EXIT_INVALID);
        }
    }
    let inputs = match parse_inputs(&program, &args) {
        Ok(v) => v,
        Err(errs) => {
            for e in &errs {
                eprintln!("error: {e}");
            }
            return Ok(EXIT_INVALID);
        }
    };
    let services = Services {
        store: wiring::open_store(args.db.db.as_deref(), args.durability.into())?,
        models: Arc::new(models),
        tools: Arc::new(tools),
    };
    let options = RunOptions {
        breakpoints: args.break_before.iter().cloned().collect(),
        stepping: args.step,
    };
    let abs = std::fs::canonicalize(&args.file).unwrap_or(args.file.clone());
    let id = baton_engine::executor::create_run(
        &services,
        &program,
        &loaded.source,
        Some(&abs),
        inputs.clone(),
        &options,
    )
    .await?;
    let st = RunState::new(id, inputs, &program, &options);
    drive_interactive(
        program,
        services,
        st,
        vec![Input::Start { resumed: false }],
        args.json,
    )
    .await
}

/// Loads the program of a stored run.
fn program_of(rec: &RunRecord) -> anyhow::Result<Program> {
    let file = rec
        .workflow_path
        .clone()
        .unwrap_or_else(|| "<stored workflow>".into());
    let loaded = load::load_bytes(&file, rec.workflow_source.as_bytes()).map_err(|d| {
        anyhow!(
            "the stored workflow of run {} no longer loads: {}",
            rec.id,
            d.first().map(|d| d.to_string()).unwrap_or_default()
        )
    })?;
    let base = rec
        .workflow_path
        .as_deref()
        .and_then(|p| Path::new(p).parent())
        .map(Path::to_path_buf)
        .unwrap_or_default();
    Program::compile(loaded.doc, base).map_err(|e| anyhow!("run {}: {e}", rec.id))
}

async fn get_run(services: &Services, run: RunId) -> anyhow::Result<RunRecord> {
    services
        .store
        .run(run)
        .await?
        .ok_or_else(|| anyhow!("no run {run} in this database (see `baton runs list`)"))
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<i32> {
    let services = wiring::services(args.db.db.as_deref(), Durability::Process)?;
    let rec = get_run(&services, args.run).await?;
    if rec.status.is_terminal() {
        eprintln!(
            "run {} is already {}: nothing to resume",
            rec.id, rec.status
        );
        return Ok(if rec.status == RunStatus::Succeeded {
            EXIT_OK
        } else {
            EXIT_FAILED
        });
    }
    let program = Arc::new(program_of(&rec)?);
    let st = baton_engine::executor::load_state(&services, &program, rec.id).await?;
    let mut inputs = vec![Input::Start { resumed: true }];
    if st.pause.is_some() || args.step != st.stepping {
        inputs.push(Input::Resume {
            stepping: args.step,
        });
    }
    drive_interactive(program, services, st, inputs, args.json).await
}

/// Drives a run; on a terminal, asks the person at breakpoints and human steps.
async fn drive_interactive(
    program: Arc<Program>,
    services: Services,
    mut st: RunState,
    mut inputs: Vec<Input>,
    json: bool,
) -> anyhow::Result<i32> {
    let mode = mode(json);
    let printer = Arc::new(Printer::new(mode));
    let interactive = !json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let exec = Executor::new(program.clone(), services.clone()).with_sink(printer.clone());
    loop {
        st = exec.drive(st, std::mem::take(&mut inputs)).await?;
        printer.clear();
        match st.status {
            RunStatus::Paused if interactive => match ask_at_pause(&st)? {
                Some(i) => inputs.push(i),
                None => break,
            },
            RunStatus::Waiting if interactive => match ask_human(&services, &st).await? {
                Some(i) => inputs.push(i),
                None => break,
            },
            _ => break,
        }
    }
    summary(&services, &st, json).await
}

fn prompt_line(q: &str) -> anyhow::Result<Option<String>> {
    eprint!("{q}");
    std::io::stderr().flush()?;
    let mut s = String::new();
    let n = std::io::stdin().lock().read_line(&mut s)?;
    Ok(if n == 0 {
        None
    } else {
        Some(s.trim().to_string())
    })
}

fn ask_at_pause(st: &RunState) -> anyhow::Result<Option<Input>> {
    let at = st
        .pause
        .as_ref()
        .map(crate::progress::describe_pause)
        .unwrap_or_default();
    loop {
        let Some(a) = prompt_line(&format!(
            "paused {at}: [c]ontinue, [s]tep, [i]nspect state, [q]uit > "
        ))?
        else {
            return Ok(None);
        };
        match a.as_str() {
            "c" | "" => return Ok(Some(Input::Resume { stepping: false })),
            "s" => return Ok(Some(Input::Resume { stepping: true })),
            "i" => eprintln!("{}", serde_json::to_string_pretty(&state_view(st))?),
            "q" => return Ok(None),
            _ => eprintln!("answer c, s, i or q"),
        }
    }
}

async fn ask_human(services: &Services, st: &RunState) -> anyhow::Result<Option<Input>> {
    let Some(step) = st.waiting_humans().into_iter().next() else {
        return Ok(None);
    };
    let evs = services.store.events(st.run_id, 0).await?;
    let (prompt, kind) = evs
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::HumanRequested {
                step: s,
                prompt,
                kind,
            } if *s == step => Some((prompt.clone(), *kind)),
            _ => None,
        })
        .unwrap_or_default();
    eprintln!("step {step} asks: {prompt}");
    match kind {
        HumanKind::Approval => loop {
            let Some(a) = prompt_line("approve? [y/n, q to stop here] > ")? else {
                return Ok(None);
            };
            match a.as_str() {
                "y" | "yes" => return Ok(Some(human(step, true, Value::Null, None))),
                "n" | "no" => {
                    let c = prompt_line("why (optional) > ")?.filter(|c| !c.is_empty());
                    return Ok(Some(human(step, false, Value::Null, c)));
                }
                "q" => return Ok(None),
                _ => eprintln!("answer y, n or q"),
            }
        },
        HumanKind::Input => {
            let Some(v) = prompt_line("value (JSON or text) > ")? else {
                return Ok(None);
            };
            Ok(Some(human(step, true, parse_value(&v), None)))
        }
    }
}

fn human(step: String, approved: bool, value: Value, comment: Option<String>) -> Input {
    Input::Human {
        step,
        approved,
        value,
        comment,
        by: std::env::var("USER").ok(),
    }
}

fn parse_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}

/// Per-step figures from the log: (step, status, duration ms, tokens).
fn step_rows(evs: &[baton_types::EventRecord]) -> Vec<(String, String, u64, Usage)> {
    let mut rows: Vec<(String, String, u64, Usage)> = Vec::new();
    let mut index = std::collections::HashMap::new();
    for e in evs {
        let (step, status, d, u) = match &e.event {
            Event::StepStarted { step, .. } => (step, "running", 0, Usage::default()),
            Event::StepSucceeded {
                step,
                duration_ms,
                usage,
                ..
            } => (step, "succeeded", *duration_ms, *usage),
            Event::StepFailed {
                step,
                duration_ms,
                usage,
                retry_in_ms,
                recovered,
                ..
            } => {
                let s = if retry_in_ms.is_some() {
                    "retrying"
                } else if *recovered {
                    "failed (continued)"
                } else {
                    "failed"
                };
                (step, s, *duration_ms, *usage)
            }
            Event::StepCancelled { step } => (step, "cancelled", 0, Usage::default()),
            Event::HumanRequested { step, .. } => (step, "waiting", 0, Usage::default()),
            _ => continue,
        };
        match index.get(step) {
            Some(&i) => {
                let r: &mut (String, String, u64, Usage) = &mut rows[i];
                r.1 = status.to_string();
                r.2 += d;
                r.3.add(&u);
            }
            None => {
                index.insert(step.clone(), rows.len());
                rows.push((step.clone(), status.to_string(), d, u));
            }
        }
    }
    rows
}

async fn summary(services: &Services, st: &RunState, json: bool) -> anyhow::Result<i32> {
    let evs = services.store.events(st.run_id, 0).await?;
    let rows = step_rows(&evs);
    let code = match st.status {
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Failed | RunStatus::Cancelled => EXIT_FAILED,
        _ => EXIT_STOPPED,
    };
    if json {
        let steps: Vec<Value> = rows
            .iter()
            .map(|(s, status, d, u)| json!({"step": s, "status": status, "duration_ms": d, "tokens": u.total()}))
            .collect();
        let v = json!({
            "summary": {
                "run_id": st.run_id.to_string(),
                "status": st.status,
                "outputs": st.result,
                "error": st.error,
                "tokens": st.usage.total(),
                "steps": steps,
            }
        });
        println!("{}", serde_json::to_string(&v)?);
        return Ok(code);
    }
    let mut out = std::io::stdout().lock();
    writeln!(out)?;
    writeln!(out, "run {}  {}", st.run_id, st.status)?;
    for (s, status, d, u) in &rows {
        let tok = if u.total() > 0 {
            format!("{:>7} tok", u.total())
        } else {
            String::new()
        };
        writeln!(out, "  {s:<24} {status:<20} {:>9}  {tok}", format!("{d}ms"))?;
    }
    if st.usage.total() > 0 {
        writeln!(
            out,
            "  tokens: {} ({} prompt, {} completion)",
            st.usage.total(),
            st.usage.prompt_tokens,
            st.usage.completion_tokens
        )?;
    }
    match st.status {
        RunStatus::Succeeded => {
            let o = st.result.clone().unwrap_or(Value::Null);
            let text = match &o {
                Value::String(s) => s.clone(),
                v => serde_json::to_string_pretty(v)?,
            };
            writeln!(out, "output:\n{text}")?;
        }
        RunStatus::Failed => writeln!(
            out,
            "error: {}",
            crate::progress::brief(st.error.as_deref().unwrap_or_default())
        )?,
        RunStatus::Paused => {
            let at = st
                .pause
                .as_ref()
                .map(crate::progress::describe_pause)
                .unwrap_or_default();
            writeln!(
                out,
                "paused {at}. Inspect: baton runs state {id}   Continue: baton resume {id} [--step]",
                id = st.run_id
            )?;
        }
        RunStatus::Waiting => {
            for s in st.waiting_humans() {
                writeln!(
                    out,
                    "waiting for a person at step {s}. Answer: baton runs approve {id} --step {s}  (or reject / input --value ...)",
                    id = st.run_id
                )?;
            }
        }
        _ => {}
    }
    Ok(code)
}

/// The state as people read it.
fn state_view(st: &RunState) -> Value {
    let active: Vec<Value> = st
        .steps
        .iter()
        .map(|(k, s)| json!({"step": k, "attempt": s.attempt, "visit": s.visit, "phase": s.phase}))
        .collect();
    json!({
        "run_id": st.run_id.to_string(),
        "status": st.status,
        "paused": st.pause,
        "stepping": st.stepping,
        "breakpoints": st.breakpoints,
        "inputs": st.inputs,
        "state": st.state,
        "steps": st.outputs.iter().map(|(k, v)| (k.clone(), json!({"output": v, "error": st.errors.get(k)}))).collect::<Map<String, Value>>(),
        "active": active,
        "ready": st.ready.keys().collect::<Vec<_>>(),
        "visits": st.visits,
        "tokens": st.usage.total(),
        "outputs": st.result,
        "error": st.error,
    })
}

/// One sandbox execution found in a run's log: a `sandbox:` step's result (succeeded, or
/// carried by its failure) or an agent's `sandbox.exec` call.
struct SandboxRecord {
    step: String,
    /// Which run of the step (a loop runs it again) and which attempt of that run.
    visit: Option<u32>,
    attempt: Option<u32>,
    /// `step` (a `sandbox:` step) or the tool an agent called.
    via: &'static str,
    record: Value,
}

fn is_exec_record(v: &Value) -> bool {
    v.get("stop_reason").is_some() && v.get("policy").is_some_and(|p| p.get("tier").is_some())
}

fn sandbox_records(
    evs: &[baton_types::EventRecord],
    program: Option<&Program>,
) -> Vec<SandboxRecord> {
    let is_sandbox_step = |step: &str| {
        let id = baton_engine::context::split_path(step).0;
        program
            .and_then(|p| p.node_by_id(id))
            .is_some_and(|n| matches!(n.step.kind, baton_types::StepKind::Sandbox(_)))
    };
    // Step -> (visit, attempt) of its latest start.
    let mut started: std::collections::HashMap<&str, (u32, u32)> = Default::default();
    let mut out = Vec::new();
    for e in evs {
        let (step, attempt, via, record) = match &e.event {
            Event::StepStarted {
                step,
                attempt,
                visit,
                ..
            } => {
                started.insert(step, (*visit, *attempt));
                continue;
            }
            Event::StepSucceeded { step, output, .. }
                if is_sandbox_step(step) && is_exec_record(output) =>
            {
                (step, None, "step", output.clone())
            }
            Event::StepFailed {
                step,
                attempt,
                error,
                ..
            } if is_sandbox_step(step) => {
                match baton_tools::sandbox_step::result_in_error(&error.message) {
                    Some(record) => (step, Some(*attempt), "step", record),
                    None => continue,
                }
            }
            Event::StepProgress {
                step,
                progress: baton_types::Progress::ToolResult { tool, output, .. },
            } if tool == "sandbox.exec" && is_exec_record(output) => {
                (step, None, "sandbox.exec", output.clone())
            }
            _ => continue,
        };
        let (visit, last) = started.get(step.as_str()).copied().unzip();
        out.push(SandboxRecord {
            step: step.clone(),
            visit,
            attempt: attempt.or(last),
            via,
            record,
        });
    }
    out
}

fn fmt_bytes(b: u64) -> String {
    if b >= 1 << 20 {
        format!("{:.1} MiB", b as f64 / (1u64 << 20) as f64)
    } else {
        format!("{:.1} KiB", b as f64 / 1024.0)
    }
}

/// One execution in a few lines: what ran where, under which limits, what it used, why it
/// stopped, what the scan found and which hosts it tried.
fn describe_sandbox(r: &SandboxRecord) -> Vec<String> {
    let v = &r.record;
    let s = |k: &str| v.get(k).and_then(Value::as_str).unwrap_or("?").to_string();
    let visit = r
        .visit
        .filter(|v| *v > 1)
        .map(|v| format!(" visit {v}"))
        .unwrap_or_default();
    let attempt = r
        .attempt
        .map(|a| format!(" attempt {a}"))
        .unwrap_or_default();
    let exit = match (
        v.get("exit_code").and_then(Value::as_i64),
        v.get("signal").and_then(Value::as_i64),
    ) {
        (Some(c), _) => format!("exit {c}"),
        (None, Some(sig)) => format!("signal {sig}"),
        _ => "no exit code".into(),
    };
    let ms = |k: &str| {
        v.get(k)
            .and_then(Value::as_f64)
            .map(|m| format!("{m:.0}ms"))
    };
    let mut usage = format!("wall {}", ms("wall_time").unwrap_or_else(|| "?".into()));
    if let Some(c) = ms("cpu_time") {
        usage.push_str(&format!(", cpu {c}"));
    }
    if let Some(m) = v.get("peak_memory_bytes").and_then(Value::as_u64) {
        usage.push_str(&format!(", peak memory {}", fmt_bytes(m)));
    }
    let mut lines = vec![format!(
        "  {}{visit}{attempt} ({}): tier {}, {}, {exit}; {usage}",
        r.step,
        r.via,
        s("tier"),
        s("stop_reason"),
    )];
    if let Some(argv) = v["request"]["argv"].as_array() {
        let argv: Vec<String> = argv
            .iter()
            .map(|a| {
                let a = a.as_str().unwrap_or_default();
                if a.contains(char::is_whitespace) || a.is_empty() {
                    format!("{a:?}")
                } else {
                    a.to_string()
                }
            })
            .collect();
        let files: Vec<String> = v["request"]["files"]
            .as_object()
            .map(|f| f.iter().map(|(k, n)| format!("{k} {n} B")).collect())
            .unwrap_or_default();
        let mut line = format!("    command: {}", argv.join(" "));
        if !files.is_empty() {
            line.push_str(&format!(" (files: {})", files.join(", ")));
        }
        if let Some(w) = v["request"]["workdir"].as_str() {
            line.push_str(&format!(" in {w}"));
        }
        lines.push(line);
    }
    let p = &v["policy"];
    let l = &p["limits"];
    let net = match p["net"]["mode"].as_str() {
        Some("allow") => format!(
            "allow:{}",
            p["net"]["hosts"]
                .as_array()
                .map(|h| h
                    .iter()
                    .filter_map(Value::as_str)
                    .collect::<Vec<_>>()
                    .join(","))
                .unwrap_or_default()
        ),
        Some(m) => m.to_string(),
        None => "?".into(),
    };
    let num = |k: &str| {
        l.get(k)
            .map(|x| x.to_string().trim_matches('"').to_string())
            .unwrap_or_else(|| "?".into())
    };
    let bytes = |k: &str| {
        l.get(k)
            .and_then(Value::as_u64)
            .map(fmt_bytes)
            .unwrap_or_else(|| "?".into())
    };
    let mut limits = format!(
        "    limits: cpu {}, memory {}, pids {}, disk {}, time {}, output {}, net {net}",
        num("cpus"),
        bytes("memory_bytes"),
        num("pids"),
        bytes("disk_bytes"),
        num("time"),
        bytes("output_bytes"),
    );
    if let Some(f) = p.get("file").and_then(Value::as_str) {
        limits.push_str(&format!(" (policy file {f})"));
    }
    lines.push(limits);
    let hit: Vec<&str> = v["limits_hit"]
        .as_array()
        .map(|a| a.iter().filter_map(Value::as_str).collect())
        .unwrap_or_default();
    if !hit.is_empty() {
        lines.push(format!("    limits hit: {}", hit.join(", ")));
    }
    for k in ["stdout", "stderr"] {
        if v[format!("{k}_truncated")] == true {
            lines.push(format!("    {k} truncated at the output limit"));
        }
    }
    let findings = v["scan"]["findings"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    lines.push(format!("    scan: {} finding(s)", findings.len()));
    for f in findings {
        let g = |k: &str| {
            f.get(k)
                .map(|x| {
                    x.as_str()
                        .map(String::from)
                        .unwrap_or_else(|| x.to_string())
                })
                .unwrap_or_default()
        };
        lines.push(format!(
            "      {}:{} {} {} {}",
            g("file"),
            g("line"),
            g("severity"),
            g("rule"),
            g("message")
        ));
    }
    for a in v["network"].as_array().cloned().unwrap_or_default() {
        lines.push(format!("    network: {a}"));
    }
    lines
}

fn fmt_time(ms: i64) -> String {
    let t =
        std::time::UNIX_EPOCH + std::time::Duration::from_millis(u64::try_from(ms).unwrap_or(0));
    humantime::format_rfc3339_seconds(t).to_string()
}

pub async fn runs(cmd: RunsCmd) -> anyhow::Result<i32> {
    match cmd {
        RunsCmd::List {
            status,
            workflow,
            limit,
            json,
            db,
        } => {
            let services = wiring::services(db.db.as_deref(), Durability::Process)?;
            let status = status
                .map(|s| s.parse::<RunStatus>())
                .transpose()
                .map_err(|e| anyhow!(e))?;
            let runs = services
                .store
                .list_runs(ListQuery {
                    status,
                    workflow,
                    limit: Some(limit),
                })
                .await?;
            if json {
                let v: Vec<Value> = runs
                    .iter()
                    .map(|r| json!({"id": r.id.to_string(), "workflow": r.workflow_name, "status": r.status, "created_at_ms": r.created_at_ms, "updated_at_ms": r.updated_at_ms, "error": r.error}))
                    .collect();
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else if runs.is_empty() {
                println!("no runs");
            } else {
                println!(
                    "{:<32}  {:<20}  {:<10}  CREATED",
                    "ID", "WORKFLOW", "STATUS"
                );
                for r in runs {
                    println!(
                        "{:<32}  {:<20}  {:<10}  {}",
                        r.id.to_string(),
                        r.workflow_name,
                        r.status.as_str(),
                        fmt_time(r.created_at_ms)
                    );
                }
            }
            Ok(EXIT_OK)
        }
        RunsCmd::Show { run, json, db } => {
            let services = wiring::services(db.db.as_deref(), Durability::Process)?;
            let rec = get_run(&services, run).await?;
            let evs = services.store.events(run, 0).await?;
            let rows = step_rows(&evs);
            let tokens: u64 = rows.iter().map(|r| r.3.total()).sum();
            // The program tells `sandbox:` steps apart (a run whose workflow no longer
            // compiles still shows agents' sandbox.exec calls).
            let program = program_of(&rec).ok();
            let sandboxed = sandbox_records(&evs, program.as_ref());
            if json {
                let steps: Vec<Value> = rows
                    .iter()
                    .map(|(s, st, d, u)| json!({"step": s, "status": st, "duration_ms": d, "tokens": u.total()}))
                    .collect();
                let sandbox: Vec<Value> = sandboxed
                    .iter()
                    .map(|r| json!({"step": r.step, "visit": r.visit, "attempt": r.attempt, "via": r.via, "record": r.record}))
                    .collect();
                println!(
                    "{}",
                    serde_json::to_string_pretty(
                        &json!({"id": rec.id.to_string(), "workflow": rec.workflow_name, "path": rec.workflow_path, "status": rec.status, "inputs": rec.inputs, "outputs": rec.outputs, "error": rec.error, "created_at_ms": rec.created_at_ms, "updated_at_ms": rec.updated_at_ms, "tokens": tokens, "steps": steps, "sandbox": sandbox})
                    )?
                );
            } else {
                println!("run       {}", rec.id);
                println!(
                    "workflow  {}{}",
                    rec.workflow_name,
                    rec.workflow_path
                        .map(|p| format!(" ({p})"))
                        .unwrap_or_default()
                );
                println!("status    {}", rec.status);
                println!("created   {}", fmt_time(rec.created_at_ms));
                println!("inputs    {}", rec.inputs);
                for (s, st, d, u) in &rows {
                    let tok = if u.total() > 0 {
                        format!("{} tok", u.total())
                    } else {
                        String::new()
                    };
                    println!("  {s:<24} {st:<20} {:>9}  {tok}", format!("{d}ms"));
                }
                if !sandboxed.is_empty() {
                    println!("sandbox executions:");
                    for r in &sandboxed {
                        for line in describe_sandbox(r) {
                            println!("{line}");
                        }
                    }
                }
                if let Some(o) = rec.outputs {
                    println!("outputs   {o}");
                }
                if let Some(e) = rec.error {
                    println!("error     {}", crate::progress::brief(&e));
                }
            }
            Ok(EXIT_OK)
        }
        RunsCmd::Logs { run, json, db } => {
            let services = wiring::services(db.db.as_deref(), Durability::Process)?;
            get_run(&services, run).await?;
            for e in services.store.events(run, 0).await? {
                if json {
                    println!("{}", serde_json::to_string(&e)?);
                } else {
                    let mut body = serde_json::to_value(&e.event)?;
                    if let Value::Object(m) = &mut body {
                        m.remove("type");
                        // A failed sandbox step carries its execution record in its message:
                        // show it as JSON, not as an escaped string.
                        if let Event::StepFailed { error, .. } = &e.event
                            && let Some((line, _)) = error
                                .message
                                .split_once(baton_tools::sandbox_step::RESULT_MARKER)
                            && let Some(record) =
                                baton_tools::sandbox_step::result_in_error(&error.message)
                        {
                            m["error"]["message"] = Value::String(line.to_string());
                            m.insert("sandbox".into(), record);
                        }
                    }
                    println!(
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
            let rec = get_run(&services, run).await?;
            let program = program_of(&rec)?;
            let st = baton_engine::executor::load_state(&services, &program, run).await?;
            println!("{}", serde_json::to_string_pretty(&state_view(&st))?);
            Ok(EXIT_OK)
        }
        RunsCmd::Pause { run, db } => control(db, run, Control::Pause).await,
        RunsCmd::Cancel { run, db } => control(db, run, Control::Cancel).await,
        RunsCmd::Approve(a) => answer(a, Some(true)).await,
        RunsCmd::Reject(a) => answer(a, Some(false)).await,
        RunsCmd::Input(a) => answer(a, None).await,
    }
}

/// Applies a control: queued for the process running the run, or applied here when none does.
async fn control(db: DbArgs, run: RunId, c: Control) -> anyhow::Result<i32> {
    let services = wiring::services(db.db.as_deref(), Durability::Process)?;
    let rec = get_run(&services, run).await?;
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
            println!("run {run} is {}", st.status);
        }
        Err(baton_store::Error::Claimed { .. }) => {
            let what = if c == Control::Cancel {
                "cancel it"
            } else {
                "pause it"
            };
            services.store.send_control(run, c).await?;
            println!("asked the process running {run} to {what}");
        }
        Err(e) => return Err(e.into()),
    }
    Ok(EXIT_OK)
}

async fn answer(a: HumanArgs, approved: Option<bool>) -> anyhow::Result<i32> {
    let services = wiring::services(a.db.db.as_deref(), Durability::Process)?;
    let rec = get_run(&services, a.run).await?;
    let program = Arc::new(program_of(&rec)?);
    let st = baton_engine::executor::load_state(&services, &program, a.run).await?;
    let waiting = st.waiting_humans();
    let step = match (&a.step, waiting.as_slice()) {
        (Some(s), w) if w.contains(s) => s.clone(),
        (Some(s), []) => bail!(
            "step '{s}' of run {} is not waiting for a person (no step is)",
            a.run
        ),
        (Some(s), w) => bail!(
            "step '{s}' of run {} is not waiting for a person (waiting: {})",
            a.run,
            w.join(", ")
        ),
        (None, [one]) => one.clone(),
        (None, []) => bail!(
            "no step of run {} is waiting for a person (status: {})",
            a.run,
            st.status
        ),
        (None, w) => bail!(
            "several steps wait ({}): name one with --step",
            w.join(", ")
        ),
    };
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
            eprintln!("error: the value does not match step {step}'s schema: {e}");
            return Ok(EXIT_INVALID);
        }
    } else if spec.kind == HumanKind::Input {
        bail!("step {step} asks for a value: use `baton runs input --value ...`");
    }
    let approved = approved.unwrap_or(true);
    let by = std::env::var("USER").ok();
    let owner = baton_store::sqlite::process_owner();
    let held_elsewhere = matches!(
        services.store.claim(a.run, &owner, 30_000).await,
        Err(baton_store::Error::Claimed { .. })
    );
    if !held_elsewhere {
        services.store.release(a.run, &owner).await?;
    }
    if held_elsewhere || a.no_resume {
        services
            .store
            .send_control(
                a.run,
                Control::Human {
                    step: step.clone(),
                    approved,
                    value,
                    comment: a.comment,
                    by,
                },
            )
            .await?;
        println!(
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
