//! Two runs side by side (`baton runs compare A B`): status, tokens, cost and time of each;
//! each step (paired by step instance) with both outputs, whether they differ and a short
//! unified diff when they do; and how the two runs' final workspace trees differ (files only
//! in one, changed files with a unified diff). Every listing and diff is bounded.

use baton_tools::workspace::HeadFiles;
use baton_types::{ForkOrigin, Usage};

use super::*;

/// The most lines one unified diff keeps (the rest is counted).
pub const DIFF_LINES: usize = 40;
/// The most files of a workspace compared.
pub const WORKSPACE_FILES: usize = 2_000;
/// The most changed files given a diff.
const CHANGED_DIFFS: usize = 20;

/// One run of a comparison, in totals.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RunSide {
    pub id: RunId,
    pub workflow: String,
    pub status: RunStatus,
    pub usage: Usage,
    pub tokens: u64,
    /// From its first event to its last.
    pub duration_ms: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub outputs: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub forked_from: Option<ForkOrigin>,
}

/// One step instance in one run.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StepSide {
    pub status: String,
    pub duration_ms: u64,
    pub tokens: u64,
    pub usage: Usage,
    /// The models its turns called (in order, each once).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Value>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// A step instance of either run, with each run's side (absent: that run never ran it).
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct StepPair {
    pub step: String,
    pub a: Option<StepSide>,
    pub b: Option<StepSide>,
    /// Whether the outputs (or errors) differ.
    pub differs: bool,
    /// A unified diff of the two outputs (A to B) when they differ, at most [`DIFF_LINES`]
    /// lines.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
}

/// A file whose content differs between the two final trees.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct FileChange {
    pub path: String,
    /// A unified diff (A to B), at most [`DIFF_LINES`] lines; absent for binary files and
    /// past the first changed files.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub diff: Option<String>,
    pub binary: bool,
}

/// How the two runs' final workspace trees differ.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct WorkspaceComparison {
    /// Each run's last workspace commit (absent: it has no workspace).
    pub a_commit: Option<String>,
    pub b_commit: Option<String>,
    pub only_in_a: Vec<String>,
    pub only_in_b: Vec<String>,
    pub changed: Vec<FileChange>,
    /// Files the same in both.
    pub same: u64,
    /// False when a tree had more than [`WORKSPACE_FILES`] files: only those were compared.
    pub complete: bool,
}

/// Two runs side by side.
#[derive(Clone, Debug, Serialize, schemars::JsonSchema)]
pub struct RunComparison {
    pub a: RunSide,
    pub b: RunSide,
    /// Every step instance of either run: A's in the order they first ran, then B's others.
    pub steps: Vec<StepPair>,
    /// Absent when neither run has a workspace (or this process has none configured).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workspace: Option<WorkspaceComparison>,
}

impl Control {
    /// Compares runs `a` and `b` of the caller's tenant (both read).
    pub async fn compare_runs(&self, caller: &Caller, a: &str, b: &str) -> Result<RunComparison> {
        let ra = self.find_run(caller, a).await?;
        let rb = self.find_run(caller, b).await?;
        let ea = self.services.store.events(ra.id, 0).await?;
        let eb = self.services.store.events(rb.id, 0).await?;
        let (sa, sb) = (steps_of(&ea), steps_of(&eb));
        let mut steps: Vec<StepPair> = Vec::new();
        for (step, side) in &sa {
            let other = sb.iter().find(|(s, _)| s == step).map(|(_, x)| x.clone());
            steps.push(pair(step, Some(side.clone()), other));
        }
        for (step, side) in &sb {
            if !sa.iter().any(|(s, _)| s == step) {
                steps.push(pair(step, None, Some(side.clone())));
            }
        }
        let workspace = self.compare_workspaces(&ra, &rb)?;
        Ok(RunComparison {
            a: side_of(&ra, &ea),
            b: side_of(&rb, &eb),
            steps,
            workspace,
        })
    }

    fn compare_workspaces(
        &self,
        a: &RunRecord,
        b: &RunRecord,
    ) -> Result<Option<WorkspaceComparison>> {
        let Some(all) = &self.workspaces else {
            return Ok(None);
        };
        let files = |r: &RunRecord| -> Result<HeadFiles> {
            match all.existing(&r.id.to_string()) {
                Ok(Some(ws)) => ws
                    .head_files(WORKSPACE_FILES)
                    .map_err(|e| Error::internal(format!("the workspace of run {}: {e}", r.id))),
                Ok(None) => Ok(HeadFiles {
                    complete: true,
                    ..HeadFiles::default()
                }),
                Err(e) => Err(Error::internal(format!(
                    "the workspace of run {}: {e}",
                    r.id
                ))),
            }
        };
        let (fa, fb) = (files(a)?, files(b)?);
        if fa.commit.is_none() && fb.commit.is_none() {
            return Ok(None);
        }
        Ok(Some(compare_trees(fa, fb)))
    }
}

fn compare_trees(fa: HeadFiles, fb: HeadFiles) -> WorkspaceComparison {
    let mut out = WorkspaceComparison {
        a_commit: fa.commit,
        b_commit: fb.commit,
        only_in_a: Vec::new(),
        only_in_b: Vec::new(),
        changed: Vec::new(),
        same: 0,
        complete: fa.complete && fb.complete,
    };
    let bmap: BTreeMap<&str, &[u8]> = fb
        .files
        .iter()
        .map(|(p, c)| (p.as_str(), c.as_slice()))
        .collect();
    for (path, ca) in &fa.files {
        match bmap.get(path.as_str()) {
            None => out.only_in_a.push(path.clone()),
            Some(cb) if *cb == ca.as_slice() => out.same += 1,
            Some(cb) => {
                let texts = (std::str::from_utf8(ca), std::str::from_utf8(cb));
                let binary = !matches!(texts, (Ok(_), Ok(_)));
                let diff = match texts {
                    (Ok(x), Ok(y)) if out.changed.len() < CHANGED_DIFFS => {
                        Some(unified(x, y, &format!("a/{path}"), &format!("b/{path}")))
                    }
                    _ => None,
                };
                out.changed.push(FileChange {
                    path: path.clone(),
                    diff,
                    binary,
                });
            }
        }
    }
    let in_a: std::collections::BTreeSet<&str> = fa.files.iter().map(|(p, _)| p.as_str()).collect();
    out.only_in_b = fb
        .files
        .iter()
        .filter(|(p, _)| !in_a.contains(p.as_str()))
        .map(|(p, _)| p.clone())
        .collect();
    out
}

/// A unified diff from `a` to `b`, cut to [`DIFF_LINES`] lines (with a line saying how many
/// more there were).
pub fn unified(a: &str, b: &str, from: &str, to: &str) -> String {
    let text = similar::TextDiff::from_lines(a, b)
        .unified_diff()
        .context_radius(2)
        .header(from, to)
        .to_string();
    let lines: Vec<&str> = text.lines().collect();
    if lines.len() <= DIFF_LINES {
        return text;
    }
    let mut out = lines[..DIFF_LINES].join("\n");
    out.push_str(&format!(
        "\n... {} more lines of diff\n",
        lines.len() - DIFF_LINES
    ));
    out
}

/// An output as text to diff: a string as it is, anything else as pretty JSON.
fn text_of(v: &Value) -> String {
    match v {
        Value::String(s) => {
            let mut s = s.clone();
            if !s.ends_with('\n') {
                s.push('\n');
            }
            s
        }
        v => format!("{}\n", serde_json::to_string_pretty(v).unwrap_or_default()),
    }
}

fn pair(step: &str, a: Option<StepSide>, b: Option<StepSide>) -> StepPair {
    let result = |s: &Option<StepSide>| s.as_ref().map(|s| (s.output.clone(), s.error.clone()));
    let differs = result(&a) != result(&b);
    let diff = match (&a, &b) {
        (Some(x), Some(y)) if differs => {
            let t = |s: &StepSide| match (&s.output, &s.error) {
                (Some(o), _) => text_of(o),
                (None, Some(e)) => format!("error: {e}\n"),
                (None, None) => String::new(),
            };
            Some(unified(&t(x), &t(y), "a", "b"))
        }
        _ => None,
    };
    StepPair {
        step: step.to_string(),
        a,
        b,
        differs,
        diff,
    }
}

/// Each step instance's side, in the order they first ran.
fn steps_of(evs: &[EventRecord]) -> Vec<(String, StepSide)> {
    let mut models: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    for r in evs {
        if let Event::StepProgress {
            step,
            progress: baton_types::Progress::ModelReply { model, .. },
        } = &r.event
        {
            let m = models.entry(step).or_default();
            if !m.contains(model) {
                m.push(model.clone());
            }
        }
    }
    view::step_details(evs)
        .into_iter()
        .map(|d| {
            let side = StepSide {
                status: d.row.status.to_string(),
                duration_ms: d.row.duration_ms,
                tokens: d.row.tokens,
                usage: d.usage,
                models: models.remove(d.row.step.as_str()).unwrap_or_default(),
                output: d.output,
                error: d.error.map(|e| e.message),
            };
            (d.row.step, side)
        })
        .collect()
}

fn side_of(r: &RunRecord, evs: &[EventRecord]) -> RunSide {
    let mut usage = Usage::default();
    let mut forked_from = None;
    for e in evs {
        match &e.event {
            Event::StepSucceeded { usage: u, .. } | Event::StepFailed { usage: u, .. } => {
                usage.add(u);
            }
            Event::RunCreated { forked_from: f, .. } => forked_from = *f,
            _ => {}
        }
    }
    let duration_ms = match (evs.first(), evs.last()) {
        (Some(f), Some(l)) => u64::try_from(l.at_ms - f.at_ms).unwrap_or(0),
        _ => 0,
    };
    RunSide {
        id: r.id,
        workflow: r.workflow_name.clone(),
        status: r.status,
        tokens: usage.total(),
        usage,
        duration_ms,
        error: r.error.clone(),
        outputs: r.outputs.clone(),
        forked_from,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trees_compare_file_by_file() {
        let a = HeadFiles {
            commit: Some("1".into()),
            files: vec![
                ("app.py".into(), b"print(1)\n".to_vec()),
                ("old.txt".into(), b"x".to_vec()),
                ("same.txt".into(), b"s".to_vec()),
            ],
            complete: true,
        };
        let b = HeadFiles {
            commit: Some("2".into()),
            files: vec![
                ("app.py".into(), b"print(2)\n".to_vec()),
                ("new.txt".into(), b"y".to_vec()),
                ("same.txt".into(), b"s".to_vec()),
            ],
            complete: true,
        };
        let c = compare_trees(a, b);
        assert_eq!(c.only_in_a, vec!["old.txt"]);
        assert_eq!(c.only_in_b, vec!["new.txt"]);
        assert_eq!(c.same, 1);
        assert_eq!(c.changed.len(), 1);
        let diff = c.changed[0].diff.as_deref().unwrap_or_default();
        assert!(
            diff.contains("-print(1)") && diff.contains("+print(2)"),
            "{diff}"
        );
    }

    #[test]
    fn long_diffs_are_cut() {
        let a: String = (0..200).map(|i| format!("a{i}\n")).collect();
        let b: String = (0..200).map(|i| format!("b{i}\n")).collect();
        let d = unified(&a, &b, "a", "b");
        assert_eq!(d.lines().count(), DIFF_LINES + 1, "{d}");
        assert!(d.ends_with("more lines of diff\n"), "{d}");
    }

    #[test]
    fn outputs_that_differ_get_a_diff() {
        let side = |o: &str| StepSide {
            status: "succeeded".into(),
            duration_ms: 1,
            tokens: 0,
            usage: Usage::default(),
            models: Vec::new(),
            output: Some(Value::String(o.into())),
            error: None,
        };
        let p = pair("s", Some(side("hello")), Some(side("bye")));
        assert!(p.differs);
        assert!(p.diff.as_deref().is_some_and(|d| d.contains("-hello")));
        let same = pair("s", Some(side("x")), Some(side("x")));
        assert!(!same.differs && same.diff.is_none());
    }
}
