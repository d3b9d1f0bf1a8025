//! Policy rules: what a workflow allows its tools, workspace and sandbox actions to do, decided
//! by the engine (never by a model) before each action, and the decision as the run log keeps
//! it. The engine's `policy` module evaluates them; this is their shape in documents and logs.

use indexmap::IndexMap;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The rule id a decision names when no rule matched (the action is denied).
pub const DEFAULT_DENY: &str = "default-deny";

/// What a rule does with an action it matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyEffect {
    Allow,
    Deny,
}

impl PolicyEffect {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

/// One rule of `policy.rules`. Every condition given must hold for the rule to match; a rule
/// with none matches every action. Rules are tried in order and the first that matches
/// decides.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct PolicyRule {
    /// Names the rule in the run log and in the refusal an agent gets (unique).
    pub id: String,
    pub effect: PolicyEffect,
    /// Why, shown to the agent whose call this rule denies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Globs over the tool's name (`workspace.*`, `sandbox.exec`; a `sandbox:` step is
    /// `sandbox.step`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub tools: Vec<String>,
    /// The agents whose calls it matches (a `tool:` or `sandbox:` step has no agent).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub agents: Vec<String>,
    /// The step ids it matches.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub steps: Vec<String>,
    /// Argument path (`path`, `policy.net`, `files.x`) -> globs over its value.
    #[serde(default, skip_serializing_if = "IndexMap::is_empty")]
    pub args: IndexMap<String, Vec<String>>,
    /// Globs over every workspace path the action touches (`*` stays within one folder,
    /// `**` crosses folders).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub paths: Vec<String>,
    /// Globs over every network host the action may reach.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Globs over the sandbox command line.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub commands: Vec<String>,
    /// Holds when the run's remaining budget (its `budget:` limit minus what it spent) is
    /// below one of these.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub budget_left_below: Option<BudgetLeft>,
}

/// Amounts of the run's budget left (`budget_left_below`).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BudgetLeft {
    /// US dollars (against the run's `budget.cost_usd`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usd: Option<f64>,
    /// Tokens (against the run's `budget.tokens`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
}

/// What the engine decided about one action (logged as `policy_decided`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum PolicyDecision {
    Allow,
    Deny,
}

impl PolicyDecision {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allow => "allow",
            Self::Deny => "deny",
        }
    }
}

impl From<PolicyEffect> for PolicyDecision {
    fn from(e: PolicyEffect) -> Self {
        match e {
            PolicyEffect::Allow => Self::Allow,
            PolicyEffect::Deny => Self::Deny,
        }
    }
}
