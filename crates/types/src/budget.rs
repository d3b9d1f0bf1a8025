//! Budgets: limits on what a run (and each of its agents) may spend, what was spent, and how a
//! person raises a limit to let a stopped run go on. The engine's state machine checks them
//! (see the engine's `machine::budget`); these are the shapes in documents and in the run log.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{Dur, Usage};

/// Limits on what a run (workflow `budget:`) or one agent (`agents.X.budget`) may spend.
/// Every limit is optional; a run that crosses one stops with status `budget_exceeded`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Budget {
    /// Tokens (prompt and completion) of every model call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens: Option<u64>,
    /// Money spent on model calls (priced models only), in US dollars.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost_usd: Option<f64>,
    /// Time the run is at work (`10m`, `1h`): counted while it runs, not while it is paused,
    /// waiting for a person, stopped, or held by no process. Run-level only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wall_time: Option<Dur>,
    /// Model calls (one per model reply).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_calls: Option<u64>,
}

impl Budget {
    /// The limit of one kind, in that kind's unit (see [`BudgetKind`]).
    pub fn limit(&self, kind: BudgetKind) -> Option<f64> {
        match kind {
            BudgetKind::Tokens => self.tokens.map(|v| v as f64),
            BudgetKind::CostUsd => self.cost_usd,
            BudgetKind::WallTime => self.wall_time.map(|d| d.as_millis() as f64),
            BudgetKind::ModelCalls => self.model_calls.map(|v| v as f64),
        }
    }

    /// Sets the limit of one kind (in that kind's unit).
    pub fn set_limit(&mut self, kind: BudgetKind, v: f64) {
        let whole = v.max(0.0).round() as u64;
        match kind {
            BudgetKind::Tokens => self.tokens = Some(whole),
            BudgetKind::CostUsd => self.cost_usd = Some(v.max(0.0)),
            BudgetKind::WallTime => self.wall_time = Some(Dur::from_millis(whole)),
            BudgetKind::ModelCalls => self.model_calls = Some(whole),
        }
    }

    pub fn is_empty(&self) -> bool {
        BudgetKind::ALL.iter().all(|k| self.limit(*k).is_none())
    }
}

/// What a budget limits. Units: tokens, US dollars, milliseconds, calls.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum BudgetKind {
    Tokens,
    CostUsd,
    WallTime,
    ModelCalls,
}

impl BudgetKind {
    pub const ALL: [BudgetKind; 4] = [
        Self::Tokens,
        Self::CostUsd,
        Self::WallTime,
        Self::ModelCalls,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Self::Tokens => "tokens",
            Self::CostUsd => "cost_usd",
            Self::WallTime => "wall_time",
            Self::ModelCalls => "model_calls",
        }
    }

    /// A value of this kind for people: `1200`, `$0.25`, `1m 30s`.
    pub fn show(self, v: f64) -> String {
        match self {
            Self::Tokens | Self::ModelCalls => format!("{}", v.round() as u64),
            Self::CostUsd => format!("${v:.4}"),
            Self::WallTime => Dur::from_millis(v.max(0.0).round() as u64).to_string(),
        }
    }
}

impl std::str::FromStr for BudgetKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        BudgetKind::ALL
            .into_iter()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| {
                format!("unknown budget limit '{s}' (expected tokens, cost_usd, wall_time or model_calls)")
            })
    }
}

/// What was spent: by the run, one agent, or one model.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Spend {
    #[serde(default)]
    pub tokens: u64,
    #[serde(default)]
    pub cost_usd: f64,
    #[serde(default)]
    pub model_calls: u64,
    /// Time at work (the run's only; ms).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub wall_time_ms: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl Spend {
    /// One model call with its usage.
    pub fn add_call(&mut self, usage: &Usage) {
        self.tokens += usage.total();
        self.cost_usd += usage.cost_usd;
        self.model_calls += 1;
    }

    /// The amount of one kind (in that kind's unit).
    pub fn get(&self, kind: BudgetKind) -> f64 {
        match kind {
            BudgetKind::Tokens => self.tokens as f64,
            BudgetKind::CostUsd => self.cost_usd,
            BudgetKind::WallTime => self.wall_time_ms as f64,
            BudgetKind::ModelCalls => self.model_calls as f64,
        }
    }
}

/// The limit a run crossed: the run's own (`agent` absent) or one agent's.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetCrossing {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub kind: BudgetKind,
    /// The limit, in the kind's unit.
    pub limit: f64,
    /// What was spent when the run stopped, in the same unit.
    pub spent: f64,
}

impl std::fmt::Display for BudgetCrossing {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let whose = match &self.agent {
            Some(a) => format!("agent '{a}'"),
            None => "the run".to_string(),
        };
        write!(
            f,
            "{whose} spent {} {} of its budget of {}",
            self.kind.show(self.spent),
            self.kind.as_str(),
            self.kind.show(self.limit)
        )
    }
}

/// A run's budget stop, as logged (`paused` with reason `budget`): the limit crossed and who
/// spent what.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetStop {
    pub crossed: BudgetCrossing,
    pub spent: Spend,
    #[serde(default)]
    pub by_agent: BTreeMap<String, Spend>,
    #[serde(default)]
    pub by_model: BTreeMap<String, Spend>,
}

/// A change of one limit (`baton resume --budget tokens=+50000`): of the run's budget, or of
/// agent `agent`'s (`coder.tokens=+5000`); by `amount` (`+`) or to it.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct BudgetChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub agent: Option<String>,
    pub kind: BudgetKind,
    /// In the kind's unit (ms for `wall_time`).
    pub amount: f64,
    /// `+amount`: added to the limit; otherwise the limit becomes `amount`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub relative: bool,
}

impl BudgetChange {
    /// Reads `KEY` and `VALUE` of `[AGENT.]KIND=[+]VALUE`: `tokens`, `+50000`; `wall_time`,
    /// `+10m`; `coder.cost_usd`, `1.5`.
    pub fn parse(key: &str, value: &str) -> Result<BudgetChange, String> {
        let (agent, kind) = match key.trim().rsplit_once('.') {
            Some((a, k)) if !a.is_empty() => (Some(a.to_string()), k),
            _ => (None, key.trim()),
        };
        let kind: BudgetKind = kind.parse()?;
        let value = value.trim();
        let (relative, amount) = match value.strip_prefix('+') {
            Some(rest) => (true, rest.trim()),
            None => (false, value),
        };
        let bad = |why: String| format!("budget {key}={value}: {why}");
        let amount = match kind {
            BudgetKind::WallTime => amount.parse::<Dur>().map_err(bad)?.as_millis() as f64,
            BudgetKind::CostUsd => amount
                .parse::<f64>()
                .map_err(|_| bad(format!("'{amount}' is not a number")))?,
            BudgetKind::Tokens | BudgetKind::ModelCalls => amount
                .parse::<u64>()
                .map_err(|_| bad(format!("'{amount}' is not a whole number")))?
                as f64,
        };
        if !amount.is_finite() || amount <= 0.0 {
            return Err(bad("the amount must be positive".into()));
        }
        Ok(BudgetChange {
            agent,
            kind,
            amount,
            relative,
        })
    }

    /// Reads `[AGENT.]KIND=[+]VALUE`.
    pub fn parse_pair(pair: &str) -> Result<BudgetChange, String> {
        let (k, v) = pair.split_once('=').ok_or_else(|| {
            format!("budget '{pair}': write KIND=+AMOUNT or KIND=AMOUNT, e.g. tokens=+50000")
        })?;
        BudgetChange::parse(k, v)
    }

    /// Applies the change to `budget`.
    pub fn apply_to(&self, budget: &mut Budget) {
        let base = if self.relative {
            budget.limit(self.kind).unwrap_or(0.0)
        } else {
            0.0
        };
        budget.set_limit(self.kind, base + self.amount);
    }
}

impl std::fmt::Display for BudgetChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if let Some(a) = &self.agent {
            write!(f, "{a}.")?;
        }
        let plus = if self.relative { "+" } else { "" };
        let v = match self.kind {
            BudgetKind::CostUsd => format!("{}", self.amount),
            k => k.show(self.amount),
        };
        write!(f, "{}={plus}{v}", self.kind.as_str())
    }
}

/// Runaway detection (workflow `runaway:`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Runaway {
    /// An agent step making the same tool call (same tool, same arguments) this many times in
    /// a row stops the run before that call is sent (default 3; 0: never).
    #[serde(default = "default_repeats")]
    pub repeated_tool_calls: u32,
    /// Two agents sending each other the same direct messages (the same content from one to
    /// the other) this many times, each answered by the other, stops the run before the last
    /// one is delivered (default 3; 0: never).
    #[serde(default = "default_repeats")]
    pub repeated_messages: u32,
    /// A step visited again in a loop after this many iterations in a row in which neither
    /// the run's shared state nor the outputs of the loop's steps changed stops the run
    /// (default 3; 0: never).
    #[serde(default = "default_repeats")]
    pub unchanged_loop: u32,
}

fn default_repeats() -> u32 {
    3
}

impl Default for Runaway {
    fn default() -> Self {
        Runaway {
            repeated_tool_calls: default_repeats(),
            repeated_messages: default_repeats(),
            unchanged_loop: default_repeats(),
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn changes_parse_relative_absolute_and_per_agent() {
        let c = BudgetChange::parse_pair("tokens=+50000").unwrap();
        assert_eq!(
            (c.kind, c.amount, c.relative, c.agent),
            (BudgetKind::Tokens, 50000.0, true, None)
        );
        let c = BudgetChange::parse_pair("coder.cost_usd=1.5").unwrap();
        assert_eq!(c.agent.as_deref(), Some("coder"));
        assert!(!c.relative);
        let c = BudgetChange::parse_pair("wall_time=+10m").unwrap();
        assert_eq!(c.amount, 600_000.0);
        assert_eq!(c.to_string(), "wall_time=+10m");
        let mut b = Budget {
            tokens: Some(100),
            ..Budget::default()
        };
        BudgetChange::parse_pair("tokens=+50")
            .unwrap()
            .apply_to(&mut b);
        assert_eq!(b.tokens, Some(150));
        for bad in [
            "tokens",
            "tokenz=+5",
            "tokens=+-5",
            "tokens=abc",
            "tokens=0",
            "wall_time=+soon",
        ] {
            assert!(BudgetChange::parse_pair(bad).is_err(), "{bad} accepted");
        }
        let e = BudgetChange::parse_pair("tokenz=5").unwrap_err();
        assert!(e.contains("unknown budget limit 'tokenz'"), "{e}");
    }
}
