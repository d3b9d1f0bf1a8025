//! The agents of a run as a team: a person pauses, resumes or stops one agent (`baton agents
//! pause|resume|stop RUN AGENT`, `POST /api/v1/runs/{id}/agents/{agent}/{action}`), and the
//! team part of a run's detail (each agent's state, undelivered messages, channels, memory).

use std::collections::BTreeMap;

use baton_types::{AgentAction, AgentLife, AgentState, TeamView, agent_name};

use super::*;

impl Control {
    /// Pauses, resumes or stops one agent of a run: queued for the process running it, or
    /// applied here when none does.
    pub async fn control_agent(
        &self,
        caller: &Caller,
        run: &str,
        agent: &str,
        action: AgentAction,
    ) -> Result<ControlOutcome> {
        let what = format!("agent.{}", action.as_str());
        let rec = self.find_run(caller, run).await?;
        let object = format!("run/{}/agent/{agent}", rec.id);
        if let Err(e) = caller.check(Permission::OperateRuns) {
            return Err(self.denied(caller, &what, Some(&object), e).await);
        }
        if rec.status.is_terminal() {
            return Err(Error::conflict(format!(
                "run {} is already {}: its agents can no longer change",
                rec.id, rec.status
            )));
        }
        let program = Arc::new(self.program(&rec)?);
        let st = baton_engine::executor::load_state(&self.services, &program, rec.id).await?;
        check_agent_action(&program, &st, agent, action)?;
        let by = Some(caller.key_id.clone());
        let outcome = if self.held_elsewhere(rec.id).await? {
            let c = StoreControl::Agent {
                agent: agent.to_string(),
                action,
                by,
            };
            self.services.store.send_control(rec.id, c).await?;
            ControlOutcome::Queued
        } else {
            let input = Input::Agent {
                agent: agent.to_string(),
                action,
                by,
            };
            let st = self.executor(program).drive(st, vec![input]).await?;
            ControlOutcome::Applied(st.status)
        };
        let details = json!({"queued": outcome == ControlOutcome::Queued});
        self.record(caller, &what, Some(&object), Outcome::Ok, details)
            .await?;
        Ok(outcome)
    }
}

/// Whether `action` applies to `agent` now (the machine's own rule): the error names the
/// problem otherwise.
fn check_agent_action(
    program: &Program,
    st: &RunState,
    agent: &str,
    action: AgentAction,
) -> Result<()> {
    use baton_engine::machine::{AgentRefusal, agent_control_refused};
    match agent_control_refused(program, st, agent, action) {
        None => Ok(()),
        Some(r @ AgentRefusal::Unknown { .. }) => {
            Err(Error::not_found(format!("run {}: {r}", st.run_id)))
        }
        Some(r) => Err(Error::conflict(format!("run {}: {r}", st.run_id))),
    }
}

/// The agent names of a workflow (`coder@3` is `coder`), each once, in order.
fn agent_names(program: &Program) -> Vec<String> {
    let mut names: Vec<String> = Vec::new();
    for k in program.doc.agents.keys() {
        let n = agent_name(k).to_string();
        if !names.contains(&n) {
            names.push(n);
        }
    }
    names
}

/// The team part of a run's detail: every agent of its workflow with its state (idle since
/// the run was created when it never changed), the messages not yet delivered, each
/// channel's subscribers and the shared memory.
pub(super) fn team_view(program: &Program, st: &RunState, created_ms: i64) -> TeamView {
    let agents: BTreeMap<String, AgentLife> = agent_names(program)
        .into_iter()
        .map(|n| {
            let life = st.team.agents.get(&n).cloned().unwrap_or(AgentLife {
                state: AgentState::Idle,
                since_ms: created_ms,
                by: None,
            });
            (n, life)
        })
        .collect();
    let inboxes = st
        .team
        .inboxes
        .iter()
        .map(|(a, q)| (a.clone(), q.iter().cloned().collect()))
        .collect();
    let channels = program
        .doc
        .channels
        .iter()
        .map(|(name, spec)| {
            let mut subs = spec.subscribers.clone();
            for j in st.team.joined.get(name).into_iter().flatten() {
                if !subs.contains(j) {
                    subs.push(j.clone());
                }
            }
            (name.clone(), subs)
        })
        .collect();
    TeamView {
        agents,
        inboxes,
        channels,
        memory: st.team.memory.clone(),
        messages_sent: st.team.sent,
    }
}
