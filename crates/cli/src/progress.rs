//! Live progress of a run: a spinner per running step on a terminal, plain lines otherwise,
//! JSON lines with `--json`.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use baton_engine::EventSink;
use baton_types::{Event, EventRecord, Progress};
use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Tty,
    Plain,
    Json,
}

pub struct Printer {
    mode: Mode,
    multi: MultiProgress,
    bars: Mutex<HashMap<String, ProgressBar>>,
    tokens: Mutex<HashMap<String, u64>>,
    /// Spend shown live, when the workflow sets a budget.
    budget: Option<crate::budget_view::LiveSpend>,
}

impl Printer {
    pub fn new(mode: Mode) -> Self {
        let multi = match mode {
            Mode::Tty => MultiProgress::with_draw_target(ProgressDrawTarget::stderr()),
            _ => MultiProgress::with_draw_target(ProgressDrawTarget::hidden()),
        };
        Self {
            mode,
            multi,
            bars: Mutex::default(),
            tokens: Mutex::default(),
            budget: None,
        }
    }

    /// Shows the spend by agent as it grows, when `program` sets a budget (from what `st`
    /// spent so far).
    pub fn with_budget(
        mut self,
        program: &baton_engine::Program,
        st: &baton_engine::RunState,
    ) -> Self {
        self.budget = crate::budget_view::LiveSpend::new(program, st);
        self
    }

    fn line(&self, s: String) {
        match self.mode {
            Mode::Tty => {
                let _ = self.multi.println(s);
            }
            _ => crate::out::line(s),
        }
    }

    /// Stops every spinner (before prompting or printing the summary).
    pub fn clear(&self) {
        for (_, b) in self.bars.lock().unwrap_or_else(|p| p.into_inner()).drain() {
            b.finish_and_clear();
        }
    }
}

fn ms(d: u64) -> String {
    if d < 1000 {
        format!("{d}ms")
    } else {
        format!("{:.2}s", d as f64 / 1000.0)
    }
}

type Bars = HashMap<String, ProgressBar>;

impl Printer {
    fn started(&self, bars: &mut Bars, step: &str, attempt: u32) {
        let label = if attempt > 1 {
            format!("{step} (attempt {attempt})")
        } else {
            step.to_string()
        };
        if self.mode != Mode::Tty {
            return self.line(format!("  ▶ {label}"));
        }
        let b = self.multi.add(ProgressBar::new_spinner());
        b.set_style(
            ProgressStyle::with_template("{spinner} {msg} {elapsed}")
                .unwrap_or_else(|_| ProgressStyle::default_spinner()),
        );
        b.set_message(label);
        b.enable_steady_tick(Duration::from_millis(100));
        bars.insert(step.to_string(), b);
    }

    fn progressed(&self, bars: &Bars, step: &str, progress: &Progress) {
        match progress {
            Progress::ModelReply { usage, .. } => {
                let mut t = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
                let n = t.entry(step.to_string()).or_default();
                *n += usage.total();
                let spent = self.budget.as_ref().map(|b| b.add(step, usage));
                if let Some(b) = bars.get(step) {
                    let spent = spent
                        .as_ref()
                        .map(|s| format!(" · {s}"))
                        .unwrap_or_default();
                    b.set_message(format!("{step} · {n} tokens{spent}"));
                } else if let Some(s) = spent {
                    self.line(format!("    {step}: {s}"));
                }
            }
            Progress::ToolResult { tool, is_error, .. } => self.line(format!(
                "    {step}: called {tool}{}",
                if *is_error { " (error)" } else { "" }
            )),
            Progress::JudgeAsked { judge, candidates } => self.line(format!(
                "    {step}: judge {judge} asked to choose between {}",
                candidates.join(", ")
            )),
            _ => {}
        }
    }

    /// A step's end: its spinner goes, a line stays.
    fn ended(&self, bars: &mut Bars, step: &str, line: String) {
        if let Some(b) = bars.remove(step) {
            b.finish_and_clear();
        }
        self.line(line);
    }
}

/// `  ? step waits for a person: first line`, and the prompt's other lines below it: a person
/// answering from another shell has only this.
fn human_prompt(step: &str, prompt: &str) -> String {
    let mut lines = prompt.lines();
    let mut text = format!(
        "  ? {step} waits for a person: {}",
        lines.next().unwrap_or("")
    );
    for l in lines {
        text.push_str("\n      ");
        text.push_str(l);
    }
    text
}

impl EventSink for Printer {
    /// `--json` shows agents typing: model output as `model_delta` lines between the events.
    fn wants_deltas(&self) -> bool {
        self.mode == Mode::Json
    }

    fn delta(&self, d: &baton_types::ModelDelta) {
        if let Ok(s) = serde_json::to_string(d) {
            crate::out::line(s);
        }
    }

    fn publish(&self, r: &EventRecord) {
        if self.mode == Mode::Json {
            if let Ok(s) = serde_json::to_string(r) {
                crate::out::line(s);
            }
            return;
        }
        let mut bars = self.bars.lock().unwrap_or_else(|p| p.into_inner());
        match &r.event {
            Event::StepStarted { step, attempt, .. } => self.started(&mut bars, step, *attempt),
            Event::StepProgress { step, progress } => self.progressed(&bars, step, progress),
            Event::BudgetRaised { changes, .. } => {
                if let Some(b) = &self.budget {
                    b.raised(changes);
                }
                if let Some(line) = note_line(r) {
                    self.line(line);
                }
            }
            ev => {
                if let Some((step, line)) = step_end_line(ev) {
                    self.ended(&mut bars, step, line);
                } else if let Some(line) = note_line(r) {
                    self.line(line);
                }
            }
        }
    }
}

/// The line that stays when a step's attempt ends (its spinner goes).
fn step_end_line(ev: &Event) -> Option<(&str, String)> {
    let (step, line) = match ev {
        Event::StepSucceeded {
            step,
            duration_ms,
            usage,
            ..
        } => {
            let tok = if usage.total() > 0 {
                format!(" · {} tokens", usage.total())
            } else {
                String::new()
            };
            let line = format!("  ✓ {step} {}{tok}", ms(*duration_ms));
            (step, line)
        }
        Event::StepFailed {
            step,
            error,
            retry_in_ms,
            recovered,
            ..
        } => {
            let what = match (retry_in_ms, recovered) {
                (Some(d), _) => format!(", retrying in {}", ms(*d)),
                (None, true) => ", going on (on_error)".into(),
                _ => String::new(),
            };
            let line = format!("  ✗ {step}: {}{what}", brief(&error.message));
            (step, line)
        }
        Event::StepCancelled { step } => (step, format!("  ⊘ {step} cancelled")),
        Event::StepAmbiguous {
            step, call, tool, ..
        } => {
            let what = match call {
                Some(n) => format!("tool call {n} ({tool})"),
                None => format!("its call of {tool}"),
            };
            let line = format!(
                "  ? {step}: ambiguous: {what} was sent but its result never logged; see `baton runs show`, then `baton runs resolve`"
            );
            (step, line)
        }
        _ => return None,
    };
    Some((step.as_str(), line))
}

/// The line an event that is not a step's start, progress or end shows, if any.
fn note_line(r: &EventRecord) -> Option<String> {
    let line = match &r.event {
        Event::RunStarted { resumed } => {
            format!(
                "{} run {}",
                if *resumed { "resuming" } else { "starting" },
                r.run_id
            )
        }
        Event::HumanRequested { step, prompt, .. } => human_prompt(step, prompt),
        Event::HumanEscalated { step, to, .. } => {
            format!("  ? {step}: no answer in time, escalated to {to}")
        }
        Event::HumanResponded {
            step, approved, by, ..
        } => {
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            let (mark, what) = if *approved {
                ("✓", "approved")
            } else {
                ("✗", "rejected")
            };
            format!("  {mark} {step}: {what}{by}")
        }
        Event::Paused {
            pause: baton_types::PauseReason::Budget(stop),
        } => format!("  ⏹ stopped: budget exceeded: {}", stop.crossed),
        Event::Paused { pause } => format!("  ⏸ paused ({})", describe_pause(pause)),
        Event::BudgetRaised { changes, by } => {
            let changes: Vec<String> = changes.iter().map(ToString::to_string).collect();
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            format!("  ▲ budget raised: {}{by}", changes.join(", "))
        }
        Event::Resumed { .. } => "  ▶ resumed".into(),
        Event::PolicyDecided {
            step,
            call,
            tool,
            decision: baton_types::PolicyDecision::Deny,
            rule,
            reason,
            ..
        } => {
            let what = match call {
                Some(n) => format!("tool call {n} ({tool})"),
                None => format!("its call of {tool}"),
            };
            let why = reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default();
            format!("  ⛔ {step}: policy denied {what} (rule '{rule}'){why}")
        }
        Event::ToolCallFinished {
            step,
            tool,
            is_error,
            ..
        } => {
            format!(
                "    {step}: called {tool}{}",
                if *is_error { " (error)" } else { "" }
            )
        }
        Event::StepResolved {
            step,
            resolution,
            by,
            ..
        } => {
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            format!("  ✓ {step}: resolved as {}{by}", resolution.as_str())
        }
        ev => return team_line(ev),
    };
    Some(line)
}

/// The line of a team event: an agent paused, resumed or stopped, a message, a memory write.
fn team_line(ev: &Event) -> Option<String> {
    Some(match ev {
        Event::AgentControlled { agent, action, by } => {
            let by = by.as_ref().map(|b| format!(" by {b}")).unwrap_or_default();
            let (mark, done) = match action {
                baton_types::AgentAction::Pause => ("⏸", "paused"),
                baton_types::AgentAction::Resume => ("▶", "resumed"),
                baton_types::AgentAction::Stop => ("⏹", "stopped"),
            };
            format!("  {mark} agent {agent} {done}{by}")
        }
        Event::MessageSent {
            from,
            to,
            channel,
            content,
            ..
        } => {
            let to = match channel {
                Some(c) => format!("#{c} ({})", to.join(", ")),
                None => to.join(", "),
            };
            let first: String = content
                .lines()
                .next()
                .unwrap_or_default()
                .chars()
                .take(60)
                .collect();
            format!("    ✉ {from} → {to}: {first}")
        }
        Event::MemoryWritten { agent, key, .. } => format!("    ✎ {agent} wrote memory.{key}"),
        Event::StepWoke { step } => format!("  ▶ {step}: its message came"),
        _ => return None,
    })
}

pub fn describe_pause(p: &baton_types::PauseReason) -> String {
    match p {
        baton_types::PauseReason::User => "by request".into(),
        baton_types::PauseReason::Breakpoint { step } => format!("before step {step}"),
        baton_types::PauseReason::Budget(stop) => format!("budget exceeded: {}", stop.crossed),
        baton_types::PauseReason::Agents { agents } => {
            format!("waiting for paused agents: {}", agents.join(", "))
        }
    }
}

/// An error message for a line on the terminal: a failed sandbox step's message without the
/// execution record it carries (`baton runs show` and `--json` have it).
pub fn brief(message: &str) -> &str {
    message
        .split_once(baton_types::SANDBOX_RECORD_MARKER)
        .map_or(message, |(line, _)| line)
}
