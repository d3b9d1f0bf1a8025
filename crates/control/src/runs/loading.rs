//! Loading workflows for runs: a document (a file, inline, stored) validated, its models
//! checked and compiled; and the program of a stored run, compiled again from its frozen
//! document.

use super::*;

/// Problems that would stop an agent's first model call although the workflow is valid: a
/// scripted model with no reply file, a provider whose key is unset, a local model not
/// installed. `baton validate` shows them as warnings; a run refuses to start with them.
pub fn model_problems(
    models: &dyn baton_llm::ModelResolver,
    loaded: &load::Loaded,
    base: &Path,
) -> Vec<Diagnostic> {
    let mut out = Vec::new();
    for (name, agent) in &loaded.doc.agents {
        let Ok(reference) = baton_llm::config::expand_env(&agent.model) else {
            continue; // validation reported it
        };
        if let Err(e) = models.resolve(&reference, base) {
            out.push(Diagnostic::from(loaded.diagnostic(
                format!("agents.{name}.model"),
                format!("agent `{name}` cannot call `{reference}`: {e}"),
            )));
        }
    }
    out
}

/// The program of a stored run (its frozen document, compiled again); relative files
/// (scripted replies) are found next to its workflow file, else in the working directory.
pub fn program_of(rec: &RunRecord) -> Result<Program> {
    program_in(rec, Path::new(""))
}

/// The name diagnostics give a stored run's workflow: its path, if it was a file.
pub(super) fn workflow_file(rec: &RunRecord) -> String {
    rec.workflow_path
        .clone()
        .unwrap_or_else(|| "<stored workflow>".into())
}

/// Where a stored run's relative files are: next to its workflow file, else in `base_dir`.
pub(super) fn base_of(rec: &RunRecord, base_dir: &Path) -> PathBuf {
    match rec.workflow_path.as_deref() {
        Some(p) => Path::new(p)
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_default(),
        None => base_dir.to_path_buf(),
    }
}

/// [`program_of`], with `base` for runs whose workflow was not a file.
fn program_in(rec: &RunRecord, base_dir: &Path) -> Result<Program> {
    let mut doc = stored_doc(rec)?;
    for (reference, pin) in pinned_agents(rec) {
        doc.agents.insert(reference, pin.spec);
    }
    Program::compile(doc, base_of(rec, base_dir))
        .map_err(|e| Error::internal(format!("run {}: {e}", rec.id)))
}

/// A stored run's frozen document, parsed again.
pub(crate) fn stored_doc(rec: &RunRecord) -> Result<baton_types::WorkflowDoc> {
    let loaded =
        load::load_bytes(&workflow_file(rec), rec.workflow_source.as_bytes()).map_err(|d| {
            Error::internal(format!(
                "the stored workflow of run {} no longer loads: {}",
                rec.id,
                d.first().map(|d| d.to_string()).unwrap_or_default()
            ))
        })?;
    Ok(loaded.doc)
}

/// The registry agents a run pinned when it was created (see [`RunOptions::agents`]).
pub fn pinned_agents(rec: &RunRecord) -> BTreeMap<String, PinnedAgent> {
    rec.options
        .get("agents")
        .and_then(|a| serde_json::from_value(a.clone()).ok())
        .unwrap_or_default()
}

/// A new run's first events: `run_created`, then `agents_resolved` when it uses registry
/// agents.
pub(super) fn first_events(
    id: RunId,
    now: i64,
    w: &LoadedWorkflow,
    inputs: &Value,
) -> Vec<EventRecord> {
    let created = Event::RunCreated {
        workflow: w.program.doc.name.clone(),
        inputs: inputs.clone(),
        forked_from: None,
    };
    let resolved = (!w.agents.is_empty()).then(|| Event::AgentsResolved {
        agents: w.agents.clone(),
    });
    std::iter::once(created)
        .chain(resolved)
        .zip(1..)
        .map(|(event, seq)| EventRecord {
            run_id: id,
            seq,
            at_ms: now,
            event,
        })
        .collect()
}

pub(crate) fn diagnostics(ds: Vec<load::Diagnostic>) -> Error {
    let diagnostics: Vec<Diagnostic> = ds.into_iter().map(Diagnostic::from).collect();
    let n = diagnostics.len();
    Error::Invalid {
        message: match diagnostics.first() {
            Some(d) if n == 1 => d.to_string(),
            Some(d) => format!("{d} (and {} more)", n - 1),
            None => "the workflow is not valid".into(),
        },
        details: Details::Diagnostics { diagnostics },
    }
}

impl Control {
    /// The graph of a run's frozen workflow (nodes, edges, each step's fields): what a run
    /// viewer draws. Another tenant's run (or one a `runner` did not start) is not found.
    pub async fn run_graph(&self, caller: &Caller, run: &str) -> Result<baton_types::graph::Graph> {
        let rec = self.find_run(caller, run).await?;
        Ok(baton_types::graph::Graph::from_doc(&stored_doc(&rec)?))
    }

    /// The program of a stored run (see [`program_of`]), with this control's base folder.
    pub fn program(&self, rec: &RunRecord) -> Result<Program> {
        program_in(rec, &self.base_dir)
    }

    pub(crate) fn env(&self) -> ValidationEnv<'_> {
        ValidationEnv {
            tools: &self.services.tools,
            models: Some(self.services.models.as_ref()),
        }
    }

    /// [`model_problems`] with this control's models.
    pub fn model_problems(&self, loaded: &load::Loaded, base: &Path) -> Vec<Diagnostic> {
        model_problems(self.services.models.as_ref(), loaded, base)
    }

    /// Validates a document without storing or running anything: every problem, then the
    /// model problems as warnings. `Ok` when it has no error. Steps that name registry agents
    /// are checked against the caller's tenant's registry.
    pub async fn validate(
        &self,
        caller: &Caller,
        file: &str,
        text: &str,
    ) -> std::result::Result<Vec<Diagnostic>, Error> {
        let mut loaded = load::load_bytes(file, text.as_bytes()).map_err(diagnostics)?;
        self.check_loaded(caller, &mut loaded).await?;
        Ok(self
            .model_problems(&loaded, &self.base_dir)
            .into_iter()
            .map(|d| Diagnostic {
                level: "warning",
                ..d
            })
            .collect())
    }

    /// Resolves the registry agents of a loaded document (into its `agents:`) and validates
    /// it: the pinned agents, or every problem.
    pub async fn check_loaded(
        &self,
        caller: &Caller,
        loaded: &mut load::Loaded,
    ) -> Result<BTreeMap<String, PinnedAgent>> {
        let (pinned, mut problems) = self.resolve_agents(&caller.tenant, loaded).await?;
        problems.extend(load::validate(loaded, &self.env()));
        if problems.is_empty() {
            Ok(pinned)
        } else {
            problems.sort_by_key(|d| (d.line, d.column));
            Err(diagnostics(problems))
        }
    }

    /// Loads, validates and compiles a workflow to start runs of. Every problem comes back
    /// as [`Error::Invalid`] with [`Details::Diagnostics`]; a workflow that cannot compile
    /// as `Invalid` with the message `file: error: ...`.
    pub async fn load_workflow(
        &self,
        caller: &Caller,
        source: WorkflowSource,
    ) -> Result<LoadedWorkflow> {
        caller.check(Permission::Read)?;
        let (mut loaded, path, stored) = match source {
            WorkflowSource::File(p) => {
                let loaded = load::load_file(&p).map_err(diagnostics)?;
                let abs = std::fs::canonicalize(&p).unwrap_or(p);
                (loaded, Some(abs), None)
            }
            WorkflowSource::Inline { text } => {
                let loaded = load::load_bytes("<inline>", text.as_bytes()).map_err(diagnostics)?;
                (loaded, None, None)
            }
            WorkflowSource::Stored(r) => {
                let w = self.stored_workflow(caller, &r).await?;
                let file = format!("{}@{}", w.name, w.version);
                let loaded = load::load_bytes(&file, w.source.as_bytes()).map_err(diagnostics)?;
                (loaded, None, Some((w.name, w.version)))
            }
        };
        let agents = self.check_loaded(caller, &mut loaded).await?;
        let base = match path.as_deref() {
            Some(p) => p.parent().map(Path::to_path_buf).unwrap_or_default(),
            None => self.base_dir.clone(),
        };
        // Validated with its registry agents above.
        let program = self.checked_program(&loaded, base, false)?;
        Ok(LoadedWorkflow {
            program: Arc::new(program),
            source: loaded.source,
            path,
            file: loaded.file,
            stored,
            agents,
        })
    }

    /// Compiles a loaded document for runs: validated first (`validate`), and refused when
    /// an agent's model cannot be called (checked before a run is created: a run that cannot
    /// make its first call never starts). `base`: where its relative files are.
    pub(super) fn checked_program(
        &self,
        loaded: &load::Loaded,
        base: PathBuf,
        validate: bool,
    ) -> Result<Program> {
        if validate {
            let ds = load::validate(loaded, &self.env());
            if !ds.is_empty() {
                return Err(diagnostics(ds));
            }
        }
        let problems = self.model_problems(loaded, &base);
        if !problems.is_empty() {
            let n = problems.len();
            return Err(Error::Invalid {
                message: format!(
                    "{} ({n} problem{})",
                    problems[0],
                    if n == 1 { "" } else { "s" }
                ),
                details: Details::Diagnostics {
                    diagnostics: problems,
                },
            });
        }
        Program::compile(loaded.doc.clone(), base)
            .map_err(|e| Error::invalid(format!("{}: error: {e}", loaded.file)))
    }
}
