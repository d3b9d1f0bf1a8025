//! `GET /api/v1/stats?window=1h|24h`: the tenant's figures over a recent window (the web
//! app's dashboard charts), computed by `Control::stats` from the store.

use baton_control::observe::stats::{Stats, Window};

use super::*;

/// `GET /stats?window=1h`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StatsQuery {
    /// `1h` (default) or `24h`.
    window: Option<String>,
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new().api_route(
        "/stats",
        get_with(stats, |o| doc(o, "The tenant's figures over the last hour or day (a runner's: its own runs'): runs by status and over time, success rate, step and model latency p50/p95, tokens and cost by model, sandbox executions by tier and stop reason, budget use")),
    )
}

async fn stats(
    State(s): State<AppState>,
    Auth(c): Auth,
    Params(q): Params<StatsQuery>,
) -> Out<Stats> {
    let window = Window::parse(q.window.as_deref().unwrap_or("1h"))?;
    Ok(Json(s.control.stats(&c, window).await?))
}
