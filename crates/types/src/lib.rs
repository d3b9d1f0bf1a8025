//! Baton's domain model: identifiers, the workflow document (and its canonical graph form),
//! run statuses and the events of the run log. Pure data: serde + schemars, no I/O, no tokio.

pub mod budget;
pub mod contract;
pub mod duration;
pub mod event;
pub mod flow;
pub mod fork;
pub mod graph;
pub mod ids;
pub mod paths;
pub mod policy;
pub mod step;
pub mod step_path;
pub mod team;
pub mod tenancy;
pub mod tool;
pub mod workflow;

pub use budget::{Budget, BudgetChange, BudgetCrossing, BudgetKind, BudgetStop, Runaway, Spend};
pub use contract::{Contract, Reducer, StateType};
pub use duration::Dur;
pub use event::{
    Event, EventRecord, ModelDelta, PauseReason, Progress, PromptContext, Resolution, RunStatus,
    SANDBOX_RECORD_MARKER, StepError, StepErrorKind, Usage,
};
pub use flow::Flow;
pub use fork::{BreakpointChange, EditTarget, ForkOrigin};
pub use ids::RunId;
pub use policy::{BudgetLeft, DEFAULT_DENY, PolicyDecision, PolicyEffect, PolicyRule};
pub use step::*;
pub use step_path::StepPath;
pub use team::{
    AgentAction, AgentLife, AgentState, ChannelSpec, MemoryEntry, MemoryOp, MessagesSpec,
    TeamMessage, TeamView, WaitFor, agent_name,
};
pub use tenancy::{Role, TenantId};
pub use tool::{Effects, ToolSpec};
pub use workflow::*;
