//! The agent registry routes: create a version, list, get (`name` or `name@3`), versions,
//! roll back the default, diff two versions.

use super::*;

/// The tenant's agents.
#[derive(Serialize, JsonSchema)]
pub(crate) struct Agents {
    agents: Vec<baton_control::AgentInfo>,
}

/// Every version of an agent, oldest first.
#[derive(Serialize, JsonSchema)]
pub(crate) struct AgentVersions {
    versions: Vec<baton_control::AgentVersion>,
}

/// `POST /agents/{name}/rollback`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct Rollback {
    /// The version that becomes the default.
    to: u32,
}

/// `GET /agents/{name}/diff?from=2&to=3`.
#[derive(Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DiffQuery {
    /// The older version (default: the one before `to`).
    from: Option<u32>,
    /// The newer version (default: the default version).
    to: Option<u32>,
}

/// The `{name}` of an agent route (`name`, or `name@3` where a version is meant).
#[derive(Deserialize, JsonSchema)]
pub(crate) struct AgentPath {
    /// An agent's name, or `name@3` for one version (`GET /agents/{name}` only).
    name: String,
}

pub(crate) fn routes() -> ApiRouter<AppState> {
    ApiRouter::new()
        .api_route(
            "/agents",
            post_with(create_agent, |o| {
                yaml_body(doc(o, "Store an agent (YAML or JSON) as the next version of its `name`, which becomes the default"))
            })
            .get_with(list_agents, |o| doc(o, "The tenant's agents")),
        )
        .api_route("/agents/{name}", get_with(get_agent, |o| doc(o, "An agent's default version, or `name@3`")))
        .api_route("/agents/{name}/versions", get_with(agent_versions, |o| doc(o, "Every version of an agent")))
        .api_route("/agents/{name}/rollback", post_with(rollback_agent, |o| doc(o, "Make a version the default (runs that start from now on use it)")))
        .api_route("/agents/{name}/diff", get_with(diff_agent, |o| doc(o, "Two versions of an agent compared, field by field and as a unified diff")))
}

async fn create_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    headers: HeaderMap,
    body: Bytes,
) -> Made<baton_control::AgentVersion> {
    let (file, text) = document(&headers, &body)?;
    created(s.control.create_agent(&c, &file, &text).await?)
}

async fn list_agents(State(s): State<AppState>, Auth(c): Auth) -> Out<Agents> {
    ok(Agents {
        agents: s.control.list_agents(&c).await?,
    })
}

async fn get_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(AgentPath { name }): Path<AgentPath>,
) -> Out<baton_control::AgentVersion> {
    let r: AgentRef = name.parse()?;
    ok(s.control.get_agent(&c, &r).await?)
}

async fn agent_versions(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(AgentPath { name }): Path<AgentPath>,
) -> Out<AgentVersions> {
    ok(AgentVersions {
        versions: s.control.agent_versions(&c, &name).await?,
    })
}

async fn rollback_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(AgentPath { name }): Path<AgentPath>,
    Body(b): Body<Rollback>,
) -> Out<baton_control::AgentVersion> {
    ok(s.control.rollback_agent(&c, &name, b.to).await?)
}

async fn diff_agent(
    State(s): State<AppState>,
    Auth(c): Auth,
    Path(AgentPath { name }): Path<AgentPath>,
    Params(q): Params<DiffQuery>,
) -> Out<baton_control::AgentDiff> {
    let current = s.control.get_agent(&c, &name.parse()?).await?;
    let to = q.to.unwrap_or(current.default_version);
    let from = match q.from {
        Some(v) => v,
        None if to > 1 => to - 1,
        None => {
            return Err(baton_control::Error::invalid_field(
                "from",
                format!("agent {name} has no version before {to}: name the versions with `from` and `to`"),
            )
            .into());
        }
    };
    let at = |v: u32| AgentRef {
        name: current.name.clone(),
        version: Some(v),
    };
    ok(s.control.diff_agents(&c, &at(from), &at(to)).await?)
}
