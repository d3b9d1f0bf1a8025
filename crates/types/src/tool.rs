use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// What a model (or the validator) knows about a tool: its name, what it does and the JSON
/// Schema of its arguments; and what calling it again does ([`Effects`]), which the engine
/// reads when a run resumes after a crash (model adapters send only name, description and
/// parameters).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ToolSpec {
    pub name: String,
    pub description: String,
    /// JSON Schema of the arguments object.
    pub parameters: Value,
    /// What repeating a call does.
    #[serde(default)]
    pub effects: Effects,
}

impl ToolSpec {
    /// A spec with [`Effects::Unguarded`], the conservative default: say what a tool does with
    /// [`ToolSpec::with_effects`].
    pub fn new(name: impl Into<String>, description: impl Into<String>, parameters: Value) -> Self {
        Self {
            name: name.into(),
            description: description.into(),
            parameters,
            effects: Effects::default(),
        }
    }

    pub fn with_effects(mut self, effects: Effects) -> Self {
        self.effects = effects;
        self
    }
}

/// What calling a tool again does. A call whose start is in the run log but whose result is
/// not (the process died in between) may or may not have happened; this decides what a
/// resumed run does with it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Effects {
    /// Changes nothing outside the run (or only reads): calling again is harmless, so it is.
    None,
    /// Changes something, and takes the call's idempotency key (e.g. as the `Idempotency-Key`
    /// header): sent again with the same key, the effect is applied once.
    IdempotentWithKey,
    /// Changes something and cannot tell a repeat (the default for a tool that does not say):
    /// an interrupted call is `ambiguous` and waits for a person (`baton runs resolve`).
    #[default]
    Unguarded,
}

impl Effects {
    /// Whether an interrupted call may be sent again without asking anyone.
    pub fn may_repeat(self) -> bool {
        !matches!(self, Effects::Unguarded)
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Effects::None => "none",
            Effects::IdempotentWithKey => "idempotent_with_key",
            Effects::Unguarded => "unguarded",
        }
    }
}
