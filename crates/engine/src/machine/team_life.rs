//! The team's lifecycle decisions: a person pausing, resuming or stopping an agent, steps
//! that wait for a message (`wait_for`, its deadline, a wait nothing can end), a stopped
//! agent's steps failing, and a run left with only paused agents' work pausing.

use std::collections::BTreeSet;

use baton_types::{AgentAction, AgentState, Event, StepError, StepErrorKind, WaitFor, agent_name};

use super::decide::{Decided, Ended};
use super::state::{Phase, RunState};
use super::{Action, Decision, Machine, Refused};
use crate::program::{Node, NodeKind};

/// Why a person cannot pause, resume or stop `agent` of a run now, if they cannot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AgentRefusal {
    /// The run's workflow has no such agent (its agents listed).
    Unknown { agent: String, agents: Vec<String> },
    /// The change changes nothing, or the agent is stopped.
    Conflict { agent: String, why: String },
}

impl std::fmt::Display for AgentRefusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AgentRefusal::Unknown { agent, agents } => {
                write!(
                    f,
                    "no agent '{agent}' in this run (agents: {})",
                    agents.join(", ")
                )
            }
            AgentRefusal::Conflict { agent, why } => write!(f, "agent '{agent}' {why}"),
        }
    }
}

/// The rules of `baton agents pause|resume|stop`, for the machine and for front ends that
/// answer before queuing the request: a known agent, not stopped, and a change.
pub fn agent_control_refused(
    program: &crate::program::Program,
    st: &RunState,
    agent: &str,
    action: AgentAction,
) -> Option<AgentRefusal> {
    let mut agents: Vec<String> = Vec::new();
    for k in program.doc.agents.keys() {
        let n = agent_name(k);
        if !agents.iter().any(|a| a == n) {
            agents.push(n.to_string());
        }
    }
    if !agents.iter().any(|a| a == agent) {
        let agent = agent.to_string();
        return Some(AgentRefusal::Unknown { agent, agents });
    }
    let state = st.team.state_of(agent);
    let why = match (action, state) {
        (_, AgentState::Stopped) => "is stopped: a stopped agent does not come back".into(),
        (AgentAction::Pause, AgentState::Paused) => "is already paused".into(),
        (AgentAction::Resume, s) if s != AgentState::Paused => format!("is not paused (it is {s})"),
        _ => return None,
    };
    let agent = agent.to_string();
    Some(AgentRefusal::Conflict { agent, why })
}

impl Machine<'_> {
    /// A person pauses, resumes or stops an agent.
    pub(super) fn control_agent(
        &self,
        st: &mut RunState,
        agent: String,
        action: AgentAction,
        by: Option<String>,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        if let Some(why) = agent_control_refused(self.program, st, &agent, action) {
            return Err(Refused::Agent(why.to_string()));
        }
        self.emit(st, out, Event::AgentControlled { agent, action, by });
        Ok(())
    }

    /// A step's `wait_for` deadline may have passed: it fails with a timeout.
    pub(super) fn message_timeout(
        &self,
        st: &mut RunState,
        step: String,
        out: &mut Decision,
    ) -> Result<(), Refused> {
        let Some(sr) = st.steps.get(&step) else {
            return Err(Refused::NotDue(step));
        };
        let Phase::Message {
            from,
            deadline_ms: Some(deadline),
        } = &sr.phase
        else {
            return Err(Refused::NotDue(step));
        };
        if self.now_ms() < *deadline {
            return Err(Refused::NotDue(step));
        }
        let waited = self
            .wait_spec(sr.node)
            .and_then(|w| w.timeout)
            .map(|t| t.to_string())
            .unwrap_or_default();
        let e = StepError::new(
            StepErrorKind::Timeout,
            format!("no message from '{from}' within {waited} (wait_for)"),
        );
        let d = self.failure(st, &step, e, Ended::stopped(st, &step, sr.attempt));
        self.record(st, out, d);
        Ok(())
    }

    /// The `wait_for` of an agent step.
    pub(super) fn wait_spec(&self, node: crate::program::NodeIdx) -> Option<&WaitFor> {
        match &self.program.node(node).step.kind {
            baton_types::StepKind::Agent(a) => a.wait_for.as_ref(),
            _ => None,
        }
    }

    /// The phase a started attempt of `node` begins in: waiting for a message when its
    /// `wait_for` has none yet, else running.
    pub(super) fn start_phase(&self, st: &RunState, node: &Node) -> Phase {
        let NodeKind::Agent { agent } = &node.kind else {
            return Phase::Running;
        };
        match self.wait_spec(node.idx) {
            Some(w) if !st.team.has_message_from(agent_name(agent), &w.from) => Phase::Message {
                from: w.from.clone(),
                deadline_ms: w
                    .timeout
                    .map(|t| super::human::deadline_after(self.now_ms(), t)),
            },
            _ => Phase::Running,
        }
    }

    /// Whether a ready step may not start yet: its agent is paused.
    pub(super) fn held(&self, st: &RunState, step: &str) -> bool {
        !st.team.agents.is_empty()
            && self
                .agent_name_of(step)
                .is_some_and(|a| st.team.is_paused(a))
    }

    /// Team decisions: a stopped agent's steps fail, a waiting step whose message came
    /// starts its work, and a wait that nothing left can end fails.
    pub(super) fn decide_team(&self, st: &RunState) -> Option<Decided> {
        // Agents enter the team's state when their first step starts.
        if st.team.agents.is_empty() {
            return None;
        }
        for (step, sr) in &st.steps {
            let Some(agent) = self.agent_name_of(step) else {
                continue;
            };
            if st.team.is_stopped(agent) {
                let by = st.team.agents.get(agent).and_then(|l| l.by.clone());
                let who = by.map(|b| format!(" by {b}")).unwrap_or_default();
                let e = StepError::fatal(
                    StepErrorKind::AgentStopped,
                    format!("agent '{agent}' was stopped{who}"),
                );
                let mut d = self.failure(st, step, e, Ended::sync(sr.attempt));
                d.action = Some(Action::Cancel { step: step.clone() });
                return Some(d);
            }
            if let Phase::Message { from, .. } = &sr.phase
                && st.team.has_message_from(agent, from)
            {
                let ev = Event::StepWoke { step: step.clone() };
                return Some(Decided::with(ev, Action::Launch { step: step.clone() }));
            }
        }
        self.deadlock(st).or_else(|| self.all_held(st))
    }

    /// Nothing runs or waits, and every ready step belongs to a paused agent: the run pauses
    /// until one of them is resumed (rather than being held by a process with nothing to do).
    fn all_held(&self, st: &RunState) -> Option<Decided> {
        if st.pause.is_some() || st.ready.is_empty() {
            return None;
        }
        let busy = st
            .steps
            .values()
            .any(|sr| sr.phase != Phase::Running || self.is_work(sr.node));
        if busy {
            return None;
        }
        let mut agents = BTreeSet::new();
        for step in st.ready.keys() {
            match self.agent_name_of(step) {
                Some(a) if st.team.is_paused(a) => agents.insert(a.to_string()),
                _ => return None,
            };
        }
        let agents = agents.into_iter().collect();
        let pause = baton_types::PauseReason::Agents { agents };
        Some(Decided::event(Event::Paused { pause }))
    }

    /// Every active step waits for a message and nothing else can run: the first fails.
    fn deadlock(&self, st: &RunState) -> Option<Decided> {
        if !st.ready.is_empty() || st.pause.is_some() {
            return None;
        }
        let mut waiting = None;
        for (step, sr) in &st.steps {
            match &sr.phase {
                Phase::Message { from, .. } => waiting = waiting.or(Some((step, sr, from))),
                // A parallel, map or group step runs while its branches do.
                Phase::Running if !self.is_work(sr.node) => {}
                _ => return None,
            }
        }
        let (step, sr, from) = waiting?;
        let e = StepError::fatal(
            StepErrorKind::Timeout,
            format!(
                "waits for a message from '{from}' (wait_for), but no step left in the run can \
                 send one"
            ),
        );
        Some(self.failure(st, step, e, Ended::sync(sr.attempt)))
    }
}
