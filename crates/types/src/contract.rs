//! Merge contracts (workflow `contracts:`): how writes of one key of the run's shared state
//! combine, so that parallel branches may write the same key.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The contract of one state key.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Contract {
    /// The type every value of the key has (default: the one its reducer needs: `list` for
    /// `append`, `object` for `merge`, `number` for `sum`/`max`/`min`, else `any`).
    #[serde(default, rename = "type", skip_serializing_if = "Option::is_none")]
    pub kind: Option<StateType>,
    /// How a write combines with the key's current value.
    pub reduce: Reducer,
    /// `last_writer_by_priority` only: branch ids of parallel steps, highest first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<Vec<String>>,
}

impl Contract {
    /// The declared type, or the one the reducer needs.
    pub fn state_type(&self) -> StateType {
        self.kind.unwrap_or(match self.reduce {
            Reducer::Append => StateType::List,
            Reducer::Merge => StateType::Object,
            Reducer::Sum | Reducer::Max | Reducer::Min => StateType::Number,
            Reducer::Replace | Reducer::LastWriterByPriority => StateType::Any,
        })
    }
}

/// The type of a state key's values.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum StateType {
    List,
    Object,
    String,
    Number,
    Boolean,
    Any,
}

impl StateType {
    pub fn as_str(self) -> &'static str {
        match self {
            StateType::List => "list",
            StateType::Object => "object",
            StateType::String => "string",
            StateType::Number => "number",
            StateType::Boolean => "boolean",
            StateType::Any => "any",
        }
    }

    /// Whether `v` is of this type.
    pub fn fits(self, v: &Value) -> bool {
        match self {
            StateType::List => v.is_array(),
            StateType::Object => v.is_object(),
            StateType::String => v.is_string(),
            StateType::Number => v.is_number(),
            StateType::Boolean => v.is_boolean(),
            StateType::Any => true,
        }
    }
}

/// How a write combines with the current value.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Reducer {
    /// The last write wins.
    Replace,
    /// Lists: a list written is concatenated, any other value pushed.
    Append,
    /// Objects: deep-merged; one key set to two different values fails the step.
    Merge,
    /// Numbers: added.
    Sum,
    /// Numbers: the largest is kept.
    Max,
    /// Numbers: the smallest is kept.
    Min,
    /// The write of the branch highest in `priority` wins, whatever order writes arrive in.
    LastWriterByPriority,
}

impl Reducer {
    pub fn as_str(self) -> &'static str {
        match self {
            Reducer::Replace => "replace",
            Reducer::Append => "append",
            Reducer::Merge => "merge",
            Reducer::Sum => "sum",
            Reducer::Max => "max",
            Reducer::Min => "min",
            Reducer::LastWriterByPriority => "last_writer_by_priority",
        }
    }

    /// The types this reducer works on.
    pub fn fits_type(self, t: StateType) -> bool {
        match self {
            Reducer::Replace | Reducer::LastWriterByPriority => true,
            Reducer::Append => t == StateType::List,
            Reducer::Merge => t == StateType::Object,
            Reducer::Sum | Reducer::Max | Reducer::Min => t == StateType::Number,
        }
    }
}
