//! Forks: a new run whose log starts with another run's events up to a point (time travel),
//! and the changes a person makes to the state where it was forked.

use std::collections::BTreeSet;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::RunId;

/// Where a forked run came from: its parent and the parent's last event it copies.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ForkOrigin {
    pub run: RunId,
    pub seq: u64,
}

/// A change to the steps a run pauses before (`baton runs breakpoints`, `POST
/// /runs/{id}/breakpoints`): the whole set replaced by `set` when given, then `add`ed, then
/// `remove`d. Step ids as the workflow writes them.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakpointChange {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub set: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub add: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub remove: Vec<String>,
}

impl BreakpointChange {
    /// Whether it changes nothing whatever the breakpoints are.
    pub fn is_empty(&self) -> bool {
        self.set.is_none() && self.add.is_empty() && self.remove.is_empty()
    }

    /// Every step id it names, in the order given.
    pub fn ids(&self) -> impl Iterator<Item = &String> {
        self.set
            .iter()
            .flatten()
            .chain(&self.add)
            .chain(&self.remove)
    }

    /// The breakpoints after the change of `current`.
    pub fn applied_to(&self, current: &BTreeSet<String>) -> BTreeSet<String> {
        let mut out = match &self.set {
            Some(set) => set.iter().cloned().collect(),
            None => current.clone(),
        };
        out.extend(self.add.iter().cloned());
        for id in &self.remove {
            out.remove(id);
        }
        out
    }
}

/// What an edit of a forked run's state changes (`--set PATH=JSON`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EditTarget {
    /// `steps.<id>.output`: a finished step's output (`id`, or `id[2]` inside a map).
    StepOutput { step: String },
    /// `state.<key>`: a key of the run's shared state.
    State { key: String },
    /// `inputs.<name>`: one of the run's inputs (the fork is created with it).
    Input { name: String },
}

impl std::fmt::Display for EditTarget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EditTarget::StepOutput { step } => write!(f, "steps.{step}.output"),
            EditTarget::State { key } => write!(f, "state.{key}"),
            EditTarget::Input { name } => write!(f, "inputs.{name}"),
        }
    }
}

impl std::str::FromStr for EditTarget {
    type Err = String;

    /// `steps.<id>.output`, `state.<key>` or `inputs.<name>`.
    fn from_str(path: &str) -> Result<Self, String> {
        if let Some(name) = path.strip_prefix("inputs.") {
            if name.is_empty() {
                return Err(format!("'{path}': name the input, as in inputs.NAME"));
            }
            return Ok(EditTarget::Input { name: name.into() });
        }
        if let Some(key) = path.strip_prefix("state.") {
            if key.is_empty() {
                return Err(format!("'{path}': name the key, as in state.KEY"));
            }
            return Ok(EditTarget::State { key: key.into() });
        }
        if let Some(step) = path
            .strip_prefix("steps.")
            .and_then(|r| r.strip_suffix(".output"))
        {
            if step.is_empty() {
                return Err(format!("'{path}': name the step, as in steps.ID.output"));
            }
            return Ok(EditTarget::StepOutput { step: step.into() });
        }
        Err(format!(
            "'{path}' is not something a fork can set: write steps.ID.output, state.KEY or inputs.NAME"
        ))
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn paths_parse_and_print_back() {
        for p in [
            "steps.draft.output",
            "steps.lint[2].output",
            "state.count",
            "inputs.who",
        ] {
            let t: EditTarget = p.parse().unwrap();
            assert_eq!(t.to_string(), p);
        }
        assert_eq!(
            "state.a.b".parse::<EditTarget>().unwrap(),
            EditTarget::State { key: "a.b".into() }
        );
        for bad in [
            "input.x",
            "steps.a",
            "steps..output",
            "state.",
            "inputs.",
            "output",
        ] {
            let e = bad.parse::<EditTarget>().unwrap_err();
            assert!(e.contains(bad), "{e}");
        }
    }

    #[test]
    fn a_target_is_tagged_json() {
        let t = EditTarget::StepOutput { step: "a".into() };
        assert_eq!(
            serde_json::to_value(&t).unwrap(),
            serde_json::json!({"kind": "step_output", "step": "a"})
        );
    }
}
