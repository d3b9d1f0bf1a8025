//! Baton's engine: loading and validating workflows, the durable state machine, and the
//! executor that carries out its actions.

pub mod agent;
pub mod bench;
pub mod bench_team;
pub mod context;
pub mod executor;
pub mod fork;
pub mod inputs;
pub mod load;
pub mod machine;
pub mod policy;
pub mod program;
pub mod replay;
pub mod team;
pub mod template;

pub use executor::{EventSink, Executor, Services};
pub use machine::{Action, Decision, Input, Machine, RunOptions, RunState};
pub use program::Program;
