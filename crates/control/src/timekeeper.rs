//! Deadlines of human steps (`human.timeout`) while nobody drives their runs: a run that only
//! waits for people is not driven, so a server keeps the time for it. The timekeeper learns
//! every deadline of the database when it starts and every new one from the bus, and when one
//! passes it drives the run, whose executor applies the timeout (`Input::HumanTimeout`: the
//! request escalates, or the step ends as `human.on_timeout` says). A run some process drives
//! meanwhile gets its timeouts from that process (the executor checks on every poll).

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use baton_engine::Input;
use baton_types::{Event, RunId, RunStatus};
use tokio::sync::broadcast::error::RecvError;
use tokio::task::JoinHandle;

use crate::error::Result;
use crate::runner::{BusItem, Drive};
use crate::{Caller, Control, Permission};

/// A deadline: when, which run, which step.
type Due = (i64, RunId, String);

impl Control {
    /// Starts the timekeeper on a task (for a server: needs the operator,
    /// [`Permission::Platform`], as it acts in every tenant).
    pub fn keep_time(&self, caller: &Caller) -> Result<JoinHandle<()>> {
        caller.check(Permission::Platform)?;
        let me = self.clone();
        // Subscribed before the scan: a deadline logged meanwhile is not missed.
        let mut bus = self.subscribe();
        Ok(tokio::spawn(async move {
            let mut due = me.stored_deadlines().await;
            loop {
                let next = due.first().map(|(at, _, _)| *at);
                let wait = next.map(|at| {
                    let ms = at.saturating_sub(baton_store::now_ms()).max(0);
                    Duration::from_millis(u64::try_from(ms).unwrap_or(0))
                });
                tokio::select! {
                    got = bus.recv() => match got {
                        Ok(ev) => {
                            if let BusItem::Event(rec) = &ev.item
                                && let Some(d) = deadline_of(rec.run_id, &rec.event)
                            {
                                due.insert(d);
                            }
                        }
                        // Fell behind: read every deadline again from the store.
                        Err(RecvError::Lagged(_)) => due = me.stored_deadlines().await,
                        Err(RecvError::Closed) => return,
                    },
                    () = sleep_for(wait) => {
                        let now = baton_store::now_ms();
                        while let Some(first) = due.first().cloned() {
                            if first.0 > now {
                                break;
                            }
                            due.remove(&first);
                            if let Err(e) = me.time_out(first.1).await {
                                tracing::warn!(run = %first.1, step = %first.2, "cannot apply a human step's timeout: {e}");
                            }
                        }
                    }
                }
            }
        }))
    }

    /// Every deadline of a human step waiting in any tenant's runs.
    async fn stored_deadlines(&self) -> BTreeSet<Due> {
        let mut due = BTreeSet::new();
        let tenants = match self.tenancy.tenants().await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!("timekeeper: cannot list tenants: {e}");
                return due;
            }
        };
        for t in tenants {
            let q = baton_store::ListQuery {
                status: Some(RunStatus::Waiting),
                ..Default::default()
            };
            let Ok(runs) = self.services.store.list_runs(&t.id, q).await else {
                continue;
            };
            for rec in runs {
                let Ok(program) = self.program(&rec) else {
                    continue;
                };
                let Ok(st) =
                    baton_engine::executor::load_state(&self.services, &program, rec.id).await
                else {
                    continue;
                };
                for (step, at) in st.human_deadlines() {
                    due.insert((at, rec.id, step));
                }
            }
        }
        due
    }

    /// Drives `run` so that its executor applies the timeouts due, unless a process (this
    /// one or another) drives it already: that one applies them.
    async fn time_out(&self, run: RunId) -> Result<()> {
        if self.held_elsewhere(run).await? {
            return Ok(());
        }
        let Some(rec) = self.services.store.run(run).await? else {
            return Ok(());
        };
        if rec.status != RunStatus::Waiting {
            return Ok(());
        }
        let program = Arc::new(self.program(&rec)?);
        let state = baton_engine::executor::load_state(&self.services, &program, run).await?;
        drop(self.spawn(Drive {
            run,
            tenant: rec.tenant,
            program,
            state,
            inputs: vec![Input::Start { resumed: true }],
        }));
        Ok(())
    }
}

/// The deadline an event sets, if it sets one.
fn deadline_of(run: RunId, ev: &Event) -> Option<Due> {
    match ev {
        Event::HumanRequested {
            step,
            deadline_ms: Some(at),
            ..
        }
        | Event::HumanEscalated {
            step,
            deadline_ms: at,
            ..
        } => Some((*at, run, step.clone())),
        _ => None,
    }
}

async fn sleep_for(wait: Option<Duration>) {
    match wait {
        Some(d) => tokio::time::sleep(d).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_and_escalations_set_deadlines_and_nothing_else_does() {
        let run = RunId::new();
        let asked = Event::HumanRequested {
            step: "ok".into(),
            prompt: "?".into(),
            kind: baton_types::HumanKind::Approval,
            deadline_ms: Some(5),
        };
        assert_eq!(deadline_of(run, &asked), Some((5, run, "ok".into())));
        let escalated = Event::HumanEscalated {
            step: "ok".into(),
            to: "admin".into(),
            deadline_ms: 9,
        };
        assert_eq!(deadline_of(run, &escalated), Some((9, run, "ok".into())));
        let no_timeout = Event::HumanRequested {
            step: "ok".into(),
            prompt: "?".into(),
            kind: baton_types::HumanKind::Approval,
            deadline_ms: None,
        };
        assert_eq!(deadline_of(run, &no_timeout), None);
    }
}
