//! `baton run`, `resume`, `validate` and `schema`, and what they share with `runs ...`: the
//! database and durability flags, exit codes, loading a stored run, driving a run on a terminal.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{anyhow, bail};
use baton_engine::load::{self, ValidationEnv};
use baton_engine::{Input, Program, RunOptions, RunState, Services};
use baton_store::RunRecord;
use baton_store::sqlite::Durability;
use baton_types::{RunId, RunStatus};
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

fn print_diagnostics(diags: &[load::Diagnostic]) {
    for d in diags {
        errln!("{d}");
    }
    errln!(
        "{} error{}",
        diags.len(),
        if diags.len() == 1 { "" } else { "s" }
    );
}

/// What would stop an agent's first model call although the workflow is valid: a scripted
/// model with no reply file, a provider whose API key variable is unset, a local model that is
/// not installed. `validate` reports them as warnings (the file may be valid elsewhere); `run`
/// refuses to start with them.
fn model_problems(
    loaded: &load::Loaded,
    models: &baton_llm::Providers,
    base: &Path,
) -> Vec<load::Diagnostic> {
    use baton_llm::ModelResolver;
    let mut out = Vec::new();
    for (name, agent) in &loaded.doc.agents {
        let Ok(reference) = baton_llm::config::expand_env(&agent.model) else {
            continue; // validation reported it
        };
        if let Err(e) = models.resolve(&reference, base) {
            out.push(loaded.diagnostic(
                format!("agents.{name}.model"),
                format!("agent `{name}` cannot call `{reference}`: {e}"),
            ));
        }
    }
    out
}

fn base_dir(file: &Path) -> PathBuf {
    file.parent().map(Path::to_path_buf).unwrap_or_default()
}

pub fn validate(args: ValidateArgs) -> anyhow::Result<i32> {
    let tools = wiring::tools();
    let models = wiring::providers()?;
    let mut all = Vec::new();
    let mut warnings = Vec::new();
    for f in &args.files {
        match load::load_and_validate(f, &env(&tools, &models)) {
            Ok(loaded) => {
                let problems = model_problems(&loaded, &models, &base_dir(f));
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
        let level = |d: &load::Diagnostic, level: &str| json!({"level": level, "file": d.file, "line": d.line, "column": d.column, "path": d.path, "message": d.message});
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

fn parse_inputs(program: &Program, args: &RunArgs) -> Result<Value, Vec<String>> {
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
    if !errors.is_empty() {
        return Err(errors);
    }
    let inputs = baton_engine::inputs::resolve(&program.doc, given)?;
    baton_engine::inputs::check_size(&inputs, args.max_input_size).map_err(|e| vec![e])?;
    Ok(inputs)
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
    // Checked before the run is created: a run that cannot make its first call never starts.
    let problems = model_problems(&loaded, &models, &base);
    if !problems.is_empty() {
        print_diagnostics(&problems);
        return Ok(EXIT_INVALID);
    }
    let program = match Program::compile(loaded.doc.clone(), base) {
        Ok(p) => Arc::new(p),
        Err(e) => {
            errln!("{}: error: {e}", args.file.display());
            return Ok(EXIT_INVALID);
        }
    };
    for b in &args.break_before {
        if program.node_by_id(b).is_none() {
            errln!("error: --break-before {b}: the workflow has no step '{b}'");
            return Ok(EXIT_INVALID);
        }
    }
    let inputs = match parse_inputs(&program, &args) {
        Ok(v) => v,
        Err(errs) => {
            for e in &errs {
                errln!("error: {e}");
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
    // The events written with the run (`run_created`): the sink sees only those that follow.
    if args.json {
        for e in services.store.events(id, 0).await? {
            outln!("{}", serde_json::to_string(&e)?);
        }
    }
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
pub(crate) fn program_of(rec: &RunRecord) -> anyhow::Result<Program> {
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

/// Opens the run log for a stored run (named by id or unique prefix) with the durability the run
/// was started with, or with `change`, which is then recorded as the run's durability.
pub(crate) async fn services_for_run(
    db: &DbArgs,
    run: &str,
    change: Option<DurabilityArg>,
) -> anyhow::Result<(Services, RunRecord)> {
    let store = wiring::open_store(db.db.as_deref(), Durability::Process)?;
    let services = wiring::services_on(store.clone())?;
    let rec = get_run(&services, run).await?;
    let kept = store.run_durability(rec.id)?.unwrap_or_default();
    let want = change.map(Durability::from).unwrap_or(kept);
    if want != kept {
        store.set_run_durability(rec.id, want).await?;
    }
    if want == Durability::Process {
        return Ok((services, rec));
    }
    drop(services);
    drop(store);
    let services = wiring::services_on(wiring::open_store(db.db.as_deref(), want)?)?;
    Ok((services, rec))
}

/// Finds a stored run by its id or a unique prefix of it (as git does with commits).
pub(crate) async fn get_run(services: &Services, run: &str) -> anyhow::Result<RunRecord> {
    let not_found = || anyhow!("no run {run} in this database (see `baton runs list`)");
    if let Ok(id) = run.parse::<RunId>() {
        return services.store.run(id).await?.ok_or_else(not_found);
    }
    if run.len() < 4 || !run.bytes().all(|b| b.is_ascii_hexdigit()) {
        bail!(
            "'{run}' is not a run id: give the 32 hex digits `baton runs list` prints, or a unique prefix of at least 4"
        );
    }
    let ids = services.store.runs_by_prefix(run, 6).await?;
    match ids.as_slice() {
        [] => Err(not_found()),
        [id] => services.store.run(*id).await?.ok_or_else(not_found),
        many => {
            let listed: Vec<String> = many.iter().take(5).map(ToString::to_string).collect();
            bail!(
                "run id prefix '{run}' is ambiguous: it matches {}{}; give more digits",
                listed.join(", "),
                if many.len() > 5 { ", ..." } else { "" }
            )
        }
    }
}

pub async fn resume(args: ResumeArgs) -> anyhow::Result<i32> {
    let (services, rec) = services_for_run(&args.db, &args.run, args.durability).await?;
    if rec.status.is_terminal() {
        errln!(
            "run {} is already {}: nothing to resume",
            rec.id,
            rec.status
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

pub(crate) async fn summary(services: &Services, st: &RunState, json: bool) -> anyhow::Result<i32> {
    let evs = services.store.events(st.run_id, 0).await?;
    let rows = view::step_rows(&evs);
    let code = match st.status {
        RunStatus::Succeeded => EXIT_OK,
        RunStatus::Failed | RunStatus::Cancelled => EXIT_FAILED,
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
        outln!("{}", r.line());
    }
    if st.usage.total() > 0 {
        outln!(
            "  tokens: {} ({} prompt, {} completion)",
            st.usage.total(),
            st.usage.prompt_tokens,
            st.usage.completion_tokens
        );
    }
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
        RunStatus::Waiting => {
            for a in crate::step_view::ambiguities(&evs) {
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
    Ok(code)
}
