//! `baton runs replay RUN [--live-tools] [--json]` and `baton runs compare A B [--json]`:
//! a run executed again from its own log, and two runs side by side. Thin over
//! `Control::replay_run` and `Control::compare_runs`; the text views fit 100 columns.

use baton_control::{ReplayMode, ReplayReport, RunComparison, StepSide, Verdict};
use clap::Args;

use crate::cmd_run::{DbArgs, EXIT_FAILED, EXIT_OK};

#[derive(Args, Debug)]
pub struct ReplayArgs {
    /// The run id, or a unique prefix of it.
    pub run: String,
    /// Take only the model replies from the recording: tools and sandboxes really run, in a
    /// new run (its id is printed), and every result that differs from the recorded one is
    /// reported.
    #[arg(long)]
    pub live_tools: bool,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

#[derive(Args, Debug)]
pub struct CompareArgs {
    /// The first run (A): its id, or a unique prefix of it.
    pub a: String,
    /// The second run (B).
    pub b: String,
    /// Print the comparison as JSON.
    #[arg(long)]
    pub json: bool,
    #[command(flatten)]
    pub db: DbArgs,
}

/// `baton runs replay`: exits 0 when the replay is identical to the recording, 1 otherwise.
pub async fn replay(a: ReplayArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let mode = if a.live_tools {
        ReplayMode::LiveTools
    } else {
        ReplayMode::Recorded
    };
    let report = control.replay_run(&caller, &a.run, mode).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print_replay(&report);
    }
    Ok(match report.verdict {
        Verdict::Identical => EXIT_OK,
        Verdict::Diverged => EXIT_FAILED,
    })
}

fn print_replay(r: &ReplayReport) {
    match (r.mode, r.replay_run) {
        (ReplayMode::LiveTools, Some(new)) => outln!(
            "replay of run {} with live tools, as new run {new} (model replies from the recording)",
            r.run
        ),
        _ => outln!(
            "replay of run {} from its log (no model, tool or sandbox called)",
            r.run
        ),
    }
    outln!("  steps replayed   {}", r.steps);
    outln!("  effects served   {}", r.effects);
    outln!(
        "  events matched   {} of {}",
        r.events_matched,
        r.events_recorded
    );
    outln!(
        "  status           {} (recorded: {})",
        r.status,
        r.recorded_status
    );
    outln!("  elapsed          {:.1} ms", r.elapsed_ms);
    match r.verdict {
        Verdict::Identical => {
            outln!("verdict: identical (the replay reached the recorded state)");
            return;
        }
        Verdict::Diverged => outln!("verdict: diverged"),
    }
    if let Some(d) = &r.divergence {
        let at = match (d.seq, d.replay_seq) {
            (Some(s), _) => format!("recorded event {s}"),
            (None, Some(s)) => format!("replay event {s}"),
            (None, None) => "the end".to_string(),
        };
        let step = d
            .step
            .as_deref()
            .map(|s| format!(", step {s}"))
            .unwrap_or_default();
        outln!("  at {at}{step}: {}", d.message);
        if let Some(v) = &d.expected {
            outln!("    recorded: {}", clip(&v.to_string(), 86));
        }
        if let Some(v) = &d.got {
            outln!("    replayed: {}", clip(&v.to_string(), 86));
        }
    }
    if !r.differences.is_empty() {
        outln!("  final state differences:");
        for d in &r.differences {
            outln!("    {}", d.field);
            outln!("      recorded: {}", clip(&d.recorded.to_string(), 84));
            outln!("      replayed: {}", clip(&d.replayed.to_string(), 84));
        }
    }
}

/// `s` cut to `max` characters, with `…` when cut.
fn clip(s: &str, max: usize) -> String {
    if s.chars().count() <= max {
        return s.to_string();
    }
    let mut out: String = s.chars().take(max.saturating_sub(1)).collect();
    out.push('…');
    out
}

/// `baton runs compare A B`.
pub async fn compare(a: CompareArgs) -> anyhow::Result<i32> {
    let (control, caller) = a.db.open().await?;
    let c = control.compare_runs(&caller, &a.a, &a.b).await?;
    if a.json {
        outln!("{}", serde_json::to_string_pretty(&c)?);
    } else {
        print_compare(&c);
    }
    Ok(EXIT_OK)
}

fn short(id: &impl std::fmt::Display) -> String {
    id.to_string().chars().take(12).collect()
}

fn duration(ms: u64) -> String {
    if ms < 1000 {
        format!("{ms}ms")
    } else {
        format!("{:.1}s", ms as f64 / 1000.0)
    }
}

fn tokens(t: u64, cost: f64) -> String {
    if cost > 0.0 {
        format!("{t} (${cost:.4})")
    } else {
        t.to_string()
    }
}

fn print_compare(c: &RunComparison) {
    let row = |label: &str, a: String, b: String| {
        outln!("{label:<10} {:<40} {}", clip(&a, 40), clip(&b, 48));
    };
    row("", "A".into(), "B".into());
    let run = |s: &baton_control::RunSide| {
        let fork = s
            .forked_from
            .map(|f| format!(", fork of {} @{}", short(&f.run), f.seq))
            .unwrap_or_default();
        format!("{} ({}{fork})", short(&s.id), s.workflow)
    };
    row("run", run(&c.a), run(&c.b));
    row("status", c.a.status.to_string(), c.b.status.to_string());
    row(
        "tokens",
        tokens(c.a.tokens, c.a.usage.cost_usd),
        tokens(c.b.tokens, c.b.usage.cost_usd),
    );
    row(
        "duration",
        duration(c.a.duration_ms),
        duration(c.b.duration_ms),
    );
    if c.a.error.is_some() || c.b.error.is_some() {
        row(
            "error",
            c.a.error.clone().unwrap_or_else(|| "-".into()),
            c.b.error.clone().unwrap_or_else(|| "-".into()),
        );
    }
    outln!();
    outln!(
        "{:<22} {:<11} {:<11} {:>8} {:>8} {:>8} {:>8}  {}",
        "STEP",
        "A STATUS",
        "B STATUS",
        "A TOKENS",
        "B TOKENS",
        "A TIME",
        "B TIME",
        "OUTPUT"
    );
    let status = |s: &Option<StepSide>| {
        s.as_ref()
            .map_or_else(|| "-".to_string(), |s| clip(&s.status, 11))
    };
    let num = |s: &Option<StepSide>, f: fn(&StepSide) -> String| {
        s.as_ref().map_or_else(|| "-".to_string(), f)
    };
    for p in &c.steps {
        let out = match (&p.a, &p.b) {
            (Some(_), None) => "only in A",
            (None, Some(_)) => "only in B",
            _ if p.differs => "differs",
            _ => "same",
        };
        outln!(
            "{:<22} {:<11} {:<11} {:>8} {:>8} {:>8} {:>8}  {}",
            clip(&p.step, 22),
            status(&p.a),
            status(&p.b),
            num(&p.a, |s| s.tokens.to_string()),
            num(&p.b, |s| s.tokens.to_string()),
            num(&p.a, |s| duration(s.duration_ms)),
            num(&p.b, |s| duration(s.duration_ms)),
            out
        );
    }
    let models = |s: &Option<StepSide>| {
        s.as_ref()
            .map(|s| s.models.join(", "))
            .filter(|m| !m.is_empty())
            .unwrap_or_else(|| "-".into())
    };
    for p in c.steps.iter().filter(|p| p.differs) {
        outln!();
        outln!("step {}:", p.step);
        let (ma, mb) = (models(&p.a), models(&p.b));
        if ma != mb {
            outln!("  model  A: {}", clip(&ma, 80));
            outln!("         B: {}", clip(&mb, 80));
        }
        if let Some(d) = &p.diff {
            for line in d.lines() {
                outln!("  {}", clip(line, 96));
            }
        }
    }
    if let Some(w) = &c.workspace {
        outln!();
        let commit = |c: &Option<String>| {
            c.as_deref()
                .map_or_else(|| "none".to_string(), |c| c.chars().take(12).collect())
        };
        outln!(
            "workspace  A {}  B {}: {} only in A, {} only in B, {} changed, {} the same{}",
            commit(&w.a_commit),
            commit(&w.b_commit),
            w.only_in_a.len(),
            w.only_in_b.len(),
            w.changed.len(),
            w.same,
            if w.complete {
                ""
            } else {
                " (first files only)"
            }
        );
        for p in &w.only_in_a {
            outln!("  only in A  {}", clip(p, 86));
        }
        for p in &w.only_in_b {
            outln!("  only in B  {}", clip(p, 86));
        }
        for f in &w.changed {
            let how = if f.binary { " (binary)" } else { "" };
            outln!("  changed    {}{how}", clip(&f.path, 80));
            for line in f.diff.as_deref().unwrap_or_default().lines() {
                outln!("    {}", clip(line, 94));
            }
        }
    }
}
