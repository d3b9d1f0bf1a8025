//! The work of a parallel step with a `judge` join, once its branches ended: its judge agent,
//! asked to pick a branch or write a synthesis (see `machine::judge`), its answer held to
//! the judge's answer schema (a bad answer is asked again, like any agent's).

use baton_tools::ToolContext;
use baton_types::{DEFAULT_OUTPUT_RETRIES, StepError};

use super::Executor;
use crate::agent::AgentJob;
use crate::machine::{RunState, answer_schema, judge_candidates, judge_prompt};

impl Executor {
    /// The judge's job for parallel step instance `step`, running in frame `frame`.
    pub(super) fn judge_job(
        &self,
        st: &RunState,
        judge: &str,
        step: &str,
        frame: u32,
        tool_ctx: ToolContext,
    ) -> Result<AgentJob, StepError> {
        let p = &self.program;
        let prompt = judge_prompt(st, p, step)?;
        let spec = self.agent_spec(judge)?;
        let retries = spec
            .output
            .as_ref()
            .and_then(|o| o.max_retries)
            .unwrap_or(DEFAULT_OUTPUT_RETRIES);
        let ctx = spec
            .instructions
            .is_some()
            .then(|| st.template_context(p, frame));
        self.job_for(
            judge,
            prompt,
            ctx.as_ref(),
            Some((answer_schema(&judge_candidates(st, p, step)), retries)),
            tool_ctx,
        )
    }
}
