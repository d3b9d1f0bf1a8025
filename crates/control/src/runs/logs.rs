//! The logs query of a run: its events by step, agent, level, kind and text.

use std::str::FromStr;

use baton_engine::program::NodeKind;
use baton_types::{Event, Progress, StepPath};

use super::*;

/// How much an event matters to someone reading a run's log, least first.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum LogLevel {
    /// What a model was sent (prompts): large, for debugging an agent.
    Debug,
    Info,
    /// Something went wrong and was handled: an attempt retried or recovered, an answer
    /// re-asked, a request escalated, a budget crossed, an action the policy denied, a cancel.
    Warn,
    /// A step or the run failed, or an effect is ambiguous.
    Error,
}

impl LogLevel {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Debug => "debug",
            Self::Info => "info",
            Self::Warn => "warn",
            Self::Error => "error",
        }
    }

    /// The level of an event.
    pub fn of(e: &Event) -> LogLevel {
        match e {
            Event::RunFailed { .. } | Event::StepAmbiguous { .. } => Self::Error,
            Event::StepFailed {
                retry_in_ms,
                recovered,
                ..
            } => {
                if retry_in_ms.is_some() || *recovered {
                    Self::Warn
                } else {
                    Self::Error
                }
            }
            Event::Paused {
                pause: baton_types::PauseReason::Budget(_),
            } => Self::Warn,
            Event::PolicyDecided {
                decision: baton_types::PolicyDecision::Deny,
                ..
            } => Self::Warn,
            Event::HumanEscalated { .. }
            | Event::RunCancelled
            | Event::CancelRequested
            | Event::StepCancelled { .. } => Self::Warn,
            Event::StepProgress { progress, .. } => match progress {
                Progress::OutputRejected { .. } => Self::Warn,
                Progress::Prompt { .. } => Self::Debug,
                _ => Self::Info,
            },
            _ => Self::Info,
        }
    }
}

impl FromStr for LogLevel {
    type Err = Error;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s {
            "debug" => Self::Debug,
            "info" => Self::Info,
            "warn" | "warning" => Self::Warn,
            "error" => Self::Error,
            _ => {
                return Err(Error::invalid_field(
                    "level",
                    format!("'{s}' is not a level: debug, info, warn or error"),
                ));
            }
        })
    }
}

/// Which events of a run [`Control::search_events`] returns.
#[derive(Clone, Debug, Default)]
pub struct EventFilter {
    /// Only events with seq > `after`.
    pub after: u64,
    /// Only events about this step (an id matches every instance: `lint` matches `lint[2]`).
    pub step: Option<String>,
    /// Only events about the steps of this agent (`coder` matches a registry `coder@2` too).
    pub agent: Option<String>,
    /// Only events at this level or above.
    pub level: Option<LogLevel>,
    /// Only these kinds (`step_failed`, `human_requested`, ...); empty: all.
    pub kinds: Vec<String>,
    /// Only events whose JSON contains this text (case-insensitive).
    pub text: Option<String>,
    pub limit: Option<usize>,
}

impl Control {
    /// A run's events that match `f` (the logs query: step, agent, level, kind, text), in
    /// order. An agent the workflow does not have is an error naming the ones it has.
    pub async fn search_events(
        &self,
        caller: &Caller,
        run: &str,
        f: &EventFilter,
    ) -> Result<Vec<EventRecord>> {
        let rec = self.find_run(caller, run).await?;
        let program = match &f.agent {
            Some(a) => {
                let p = self.program(&rec)?;
                if !p.doc.agents.keys().any(|k| same_agent(k, a)) {
                    let known: Vec<&str> = p.doc.agents.keys().map(String::as_str).collect();
                    return Err(Error::invalid_field(
                        "agent",
                        format!(
                            "the run's workflow has no agent '{a}' (agents: {})",
                            known.join(", ")
                        ),
                    ));
                }
                Some(p)
            }
            None => None,
        };
        let text = f.text.as_ref().map(|t| t.to_lowercase());
        let mut out: Vec<EventRecord> = self
            .services
            .store
            .events(rec.id, f.after)
            .await?
            .into_iter()
            .filter(|e| {
                let step_ok = f.step.as_ref().is_none_or(|s| {
                    e.event
                        .step()
                        .is_some_and(|x| x == s || StepPath::parse(x).id() == s)
                });
                let agent_ok = match (&f.agent, &program) {
                    (Some(a), Some(p)) => e.event.step().is_some_and(|x| {
                        p.node_by_id(StepPath::parse(x).id()).is_some_and(|n| {
                            matches!(&n.kind, NodeKind::Agent { agent } if same_agent(agent, a))
                        })
                    }),
                    _ => true,
                };
                let level_ok = f.level.is_none_or(|l| LogLevel::of(&e.event) >= l);
                let kind_ok = f.kinds.is_empty() || f.kinds.iter().any(|k| k == e.event.kind());
                let text_ok = text.as_ref().is_none_or(|t| {
                    serde_json::to_string(&e.event)
                        .is_ok_and(|j| j.to_lowercase().contains(t.as_str()))
                });
                step_ok && agent_ok && level_ok && kind_ok && text_ok
            })
            .collect();
        if let Some(l) = f.limit {
            out.truncate(l);
        }
        Ok(out)
    }
}

/// Whether the agent `key` of a workflow (`coder`, or a registry reference `coder@2`) is the
/// agent asked for (`coder`, or exactly `coder@2`).
fn same_agent(key: &str, asked: &str) -> bool {
    key == asked || key.split_once('@').is_some_and(|(name, _)| name == asked)
}

#[cfg(test)]
mod tests {
    use super::*;
    use baton_types::{StepError, StepErrorKind, Usage};

    #[test]
    fn levels_order_and_classify() {
        assert!(LogLevel::Debug < LogLevel::Info && LogLevel::Warn < LogLevel::Error);
        let failed = |retry: Option<u64>| Event::StepFailed {
            step: "a".into(),
            attempt: 1,
            error: StepError::fatal(StepErrorKind::Execution, "boom"),
            retry_in_ms: retry,
            recovered: false,
            next: None,
            duration_ms: 0,
            usage: Usage::default(),
        };
        assert_eq!(LogLevel::of(&failed(None)), LogLevel::Error);
        assert_eq!(LogLevel::of(&failed(Some(10))), LogLevel::Warn);
        assert_eq!(
            LogLevel::of(&Event::RunStarted { resumed: false }),
            LogLevel::Info
        );
        assert_eq!("warning".parse::<LogLevel>().ok(), Some(LogLevel::Warn));
        assert!("loud".parse::<LogLevel>().is_err());
        assert!(same_agent("coder@2", "coder") && same_agent("coder", "coder"));
        assert!(!same_agent("coder2", "coder") && !same_agent("coder@2", "coder@3"));
    }
}
