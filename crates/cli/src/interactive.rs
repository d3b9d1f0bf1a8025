//! Driving a run from a terminal: progress on the way, and at a breakpoint or a `human` step
//! the person at the terminal is asked inline (elsewhere the run stops with exit code 3 and is
//! answered from any shell).

use std::io::{BufRead, IsTerminal, Write};
use std::sync::Arc;

use baton_control::view::state_view;
use baton_control::{Control, Drive};
use baton_engine::{Input, RunState};
use baton_types::{Event, HumanKind, RunStatus};
use serde_json::Value;

use crate::cmd_run::summary;
use crate::progress::{Mode, Printer};

fn mode(json: bool) -> Mode {
    if json {
        Mode::Json
    } else if std::io::stderr().is_terminal() {
        Mode::Tty
    } else {
        Mode::Plain
    }
}

/// Drives a run; on a terminal, asks the person at breakpoints and human steps.
pub(crate) async fn drive_interactive(
    control: &Control,
    d: Drive,
    json: bool,
) -> anyhow::Result<i32> {
    let Drive {
        program,
        state: mut st,
        mut inputs,
        ..
    } = d;
    let mode = mode(json);
    let printer = Arc::new(Printer::new(mode).with_budget(&program, &st));
    let interactive = !json && std::io::stdin().is_terminal() && std::io::stderr().is_terminal();
    let exec = control.executor(program).with_sink(printer.clone());
    loop {
        st = exec.drive(st, std::mem::take(&mut inputs)).await?;
        printer.clear();
        match st.status {
            RunStatus::Paused if interactive => match ask_at_pause(&st)? {
                Some(i) => inputs.push(i),
                None => break,
            },
            RunStatus::Waiting if interactive => match ask_human(control, &st).await? {
                Some(i) => inputs.push(i),
                None => break,
            },
            _ => break,
        }
    }
    summary(control, &st, json).await
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
            "i" => errln!("{}", serde_json::to_string_pretty(&state_view(st))?),
            "q" => return Ok(None),
            _ => errln!("answer c, s, i or q"),
        }
    }
}

async fn ask_human(control: &Control, st: &RunState) -> anyhow::Result<Option<Input>> {
    let Some(step) = st.waiting_humans().into_iter().next() else {
        return Ok(None);
    };
    let evs = control.services().store.events(st.run_id, 0).await?;
    let (prompt, kind) = evs
        .iter()
        .rev()
        .find_map(|e| match &e.event {
            Event::HumanRequested {
                step: s,
                prompt,
                kind,
                ..
            } if *s == step => Some((prompt.clone(), *kind)),
            _ => None,
        })
        .unwrap_or_default();
    errln!("step {step} asks: {prompt}");
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
                _ => errln!("answer y, n or q"),
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

pub(crate) fn human(step: String, approved: bool, value: Value, comment: Option<String>) -> Input {
    Input::Human {
        step,
        approved,
        value,
        comment,
        by: std::env::var("USER").ok(),
    }
}

pub(crate) fn parse_value(s: &str) -> Value {
    serde_json::from_str(s).unwrap_or_else(|_| Value::String(s.to_string()))
}
