//! A run's policy decisions (`policy_decided` events): how many actions were allowed and
//! denied, and each denial with its rule, for `runs show` and the API's run view.

use baton_types::{Event, EventRecord, PolicyDecision};
use serde::Serialize;

/// The policy decisions of a run.
#[derive(Clone, Debug, Default, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PolicySummary {
    pub allowed: u64,
    pub denied: u64,
    /// Each denial, in log order.
    pub denials: Vec<PolicyDenial>,
}

/// One action the policy denied.
#[derive(Clone, Debug, PartialEq, Serialize, schemars::JsonSchema)]
pub struct PolicyDenial {
    /// Where it is in the run log.
    pub seq: u64,
    /// The step instance.
    pub step: String,
    /// The agent's call number in the step's attempt; absent: the step's own call.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub call: Option<u32>,
    pub tool: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    /// The rule's id, or `default-deny`.
    pub rule: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}

impl PolicySummary {
    /// One line for people: `step implement (coder, call 1): workspace.write denied by rule
    /// 'no-ci': CI files are off limits`.
    pub fn denial_line(d: &PolicyDenial) -> String {
        let mut who = Vec::new();
        if let Some(a) = &d.agent {
            who.push(a.clone());
        }
        if let Some(c) = d.call {
            who.push(format!("call {c}"));
        }
        let who = if who.is_empty() {
            String::new()
        } else {
            format!(" ({})", who.join(", "))
        };
        let why = d
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        format!(
            "{}{who}: {} denied by rule '{}'{why}",
            d.step, d.tool, d.rule
        )
    }
}

/// The policy decisions in a run's log; `None` when it has none (no rules).
pub fn policy_summary(evs: &[EventRecord]) -> Option<PolicySummary> {
    let mut s = PolicySummary::default();
    let mut any = false;
    for e in evs {
        let Event::PolicyDecided {
            step,
            call,
            tool,
            agent,
            decision,
            rule,
            reason,
            ..
        } = &e.event
        else {
            continue;
        };
        any = true;
        match decision {
            PolicyDecision::Allow => s.allowed += 1,
            PolicyDecision::Deny => {
                s.denied += 1;
                s.denials.push(PolicyDenial {
                    seq: e.seq,
                    step: step.clone(),
                    call: *call,
                    tool: tool.clone(),
                    agent: agent.clone(),
                    rule: rule.clone(),
                    reason: reason.clone(),
                });
            }
        }
    }
    any.then_some(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use baton_types::RunId;

    fn rec(seq: u64, event: Event) -> EventRecord {
        EventRecord {
            run_id: RunId::new(),
            seq,
            at_ms: 0,
            event,
        }
    }

    fn decided(decision: PolicyDecision, rule: &str, call: Option<u32>) -> Event {
        Event::PolicyDecided {
            step: "implement".into(),
            attempt: 1,
            call,
            tool: "workspace.write".into(),
            agent: call.map(|_| "coder".to_string()),
            decision,
            rule: rule.into(),
            reason: (decision == PolicyDecision::Deny).then(|| "CI files are off limits".into()),
            arguments: serde_json::Value::Null,
        }
    }

    #[test]
    fn counts_and_denials_in_log_order() {
        assert_eq!(
            policy_summary(&[rec(1, Event::RunStarted { resumed: false })]),
            None
        );
        let evs = [
            rec(3, decided(PolicyDecision::Deny, "no-ci", Some(1))),
            rec(6, decided(PolicyDecision::Allow, "workspace", Some(2))),
            rec(9, decided(PolicyDecision::Deny, "default-deny", None)),
        ];
        let s = policy_summary(&evs).unwrap();
        assert_eq!((s.allowed, s.denied), (1, 2));
        assert_eq!(s.denials[0].seq, 3);
        assert_eq!(
            PolicySummary::denial_line(&s.denials[0]),
            "implement (coder, call 1): workspace.write denied by rule 'no-ci': CI files are off limits"
        );
        assert_eq!(
            PolicySummary::denial_line(&s.denials[1]),
            "implement: workspace.write denied by rule 'default-deny': CI files are off limits"
        );
    }
}
