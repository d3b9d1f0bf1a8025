//! The authorization matrix: every route of the OpenAPI document × every caller (each role,
//! the operator, no key, a revoked key, an expired key) × an object of the caller's own
//! tenant, of another tenant, and one that does not exist.
//!
//! The route list is read from `/api/v1/openapi.json` at run time: a documented route without
//! an entry in [`case`] fails the test. Each cell runs in a fresh world (an in-memory store
//! with two tenants, their keys, workflows, runs waiting on people, an inbound hook and a
//! subscription), so a write that is allowed cannot change what the next cell sees.
//!
//! What is checked, from docs/api.md: no key or a revoked/expired one is 401; a role that may
//! not do something is 403; another tenant's object answers exactly as an object that does
//! not exist (404 for a caller that may otherwise act: never 403, never the object); a list
//! never shows another tenant's objects; every refusal is the standard error body; and a
//! refused write changes nothing (the world's listing before and after is the same).

use axum::body::Body;
use axum::http::{Request, StatusCode};
use baton_llm::Providers;
use baton_server::{AppState, app};
use http_body_util::BodyExt;
use serde_json::{Value, json};
use tower::ServiceExt;

use super::{key_for, test_state};

const ECHO: &str =
    "version: 1\nname: echo\nsteps:\n  - { id: first, tool: echo, with: { text: hi } }\n";
const ASK: &str = "version: 1\nname: ask\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n  - id: ok\n    human: { prompt: Ship it? }\n";
const FORM: &str =
    "version: 1\nname: form\nsteps:\n  - id: who\n    human: { prompt: Who?, kind: input }\n";
/// An agent file (`NAME` replaced).
const AGENT: &str = "name: NAME\nmodel: scripted/agent\nrole: tester\n";
const FRESH: &str =
    "version: 1\nname: fresh\nsteps:\n  - { id: a, tool: echo, with: { text: x } }\n";

/// What a route needs of the caller's role.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Need {
    Read,
    /// Read, but not a `runner` (webhooks: deliveries carry every run's events).
    ReadNotRunner,
    Start,
    Answer,
    Operate,
    Edit,
    Admin,
    Platform,
}

#[derive(Clone, Copy, Debug, PartialEq)]
enum Who {
    Viewer,
    Runner,
    Editor,
    Admin,
    /// The admin of tenant `default`.
    Operator,
    NoKey,
    Revoked,
    Expired,
}

const WHO: [Who; 8] = [
    Who::Viewer,
    Who::Runner,
    Who::Editor,
    Who::Admin,
    Who::Operator,
    Who::NoKey,
    Who::Revoked,
    Who::Expired,
];

#[derive(Clone, Copy, Debug, PartialEq)]
enum Target {
    Own,
    Other,
    Missing,
}

impl Who {
    fn allows(self, need: Need) -> bool {
        let rank = match self {
            Who::Viewer => 1,
            Who::Runner => 2,
            Who::Editor => 3,
            Who::Admin => 4,
            Who::Operator => 5,
            _ => return false,
        };
        match need {
            Need::Read => true,
            Need::ReadNotRunner => rank != 2,
            Need::Start | Need::Answer => rank >= 2,
            Need::Operate | Need::Edit => rank >= 3,
            Need::Admin => rank >= 4,
            Need::Platform => rank == 5,
        }
    }
}

/// Tenant objects of one tenant.
#[derive(Clone, Default)]
struct Objects {
    keys: std::collections::HashMap<&'static str, String>,
    /// A key to revoke.
    spare_key_id: String,
    ask_run: String,
    form_run: String,
    hook: String,
    sub: String,
}

struct World {
    state: AppState,
    operator: String,
    acme: Objects,
    globex: Objects,
    revoked: String,
    expired: String,
}

struct Answer {
    status: StatusCode,
    body: Value,
    text: String,
}

async fn send(
    state: &AppState,
    key: Option<&str>,
    method: &str,
    uri: &str,
    ct: &str,
    body: Option<String>,
) -> Answer {
    let mut req = Request::builder().method(method).uri(uri);
    if let Some(k) = key {
        req = req.header("authorization", format!("Bearer {k}"));
    }
    if !ct.is_empty() {
        req = req.header("content-type", ct);
    }
    let resp = app(state.clone())
        .oneshot(req.body(body.map_or_else(Body::empty, Body::from)).unwrap())
        .await
        .unwrap();
    let status = resp.status();
    // An event stream of a run that waits goes on: only its status matters here.
    let streaming = resp
        .headers()
        .get("content-type")
        .is_some_and(|v| v.to_str().unwrap_or("").starts_with("text/event-stream"));
    if streaming {
        return Answer {
            status,
            body: Value::Null,
            text: String::new(),
        };
    }
    let bytes = resp.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    Answer { status, body, text }
}

async fn json_req(state: &AppState, key: &str, method: &str, uri: &str, body: Value) -> Value {
    let a = send(
        state,
        Some(key),
        method,
        uri,
        "application/json",
        Some(body.to_string()),
    )
    .await;
    assert!(
        a.status.is_success(),
        "{method} {uri}: {} {}",
        a.status,
        a.text
    );
    a.body
}

/// Waits until a run waits on a person (through its own event stream, never by sleeping).
async fn wait_for_human(state: &AppState, tenant: &str, run: &str) {
    let caller = baton_control::Caller::local().in_tenant(tenant.parse().unwrap());
    let mut f = state
        .control
        .follow(&caller, run, 0)
        .await
        .unwrap()
        .until_end(true);
    loop {
        let d = state.control.run_detail(&caller, run).await.unwrap();
        if serde_json::to_value(&d).unwrap()["run"]["status"] == "waiting" {
            return;
        }
        assert!(f.next().await.is_some(), "run {run} ended without waiting");
    }
}

async fn tenant_objects(state: &AppState, operator: &str, tenant: &str) -> Objects {
    json_req(
        state,
        operator,
        "POST",
        "/api/v1/tenants",
        json!({"id": tenant}),
    )
    .await;
    let mut o = Objects::default();
    for role in ["admin", "editor", "runner", "viewer"] {
        let k = json_req(
            state,
            operator,
            "POST",
            "/api/v1/keys",
            json!({"role": role, "tenant": tenant}),
        )
        .await;
        o.keys.insert(role, k["key"].as_str().unwrap().to_string());
    }
    let spare = json_req(
        state,
        operator,
        "POST",
        "/api/v1/keys",
        json!({"role": "viewer", "tenant": tenant, "name": "spare"}),
    )
    .await;
    o.spare_key_id = spare["id"].as_str().unwrap().to_string();
    let editor = o.keys["editor"].clone();
    for doc in [ECHO, ASK, FORM] {
        let a = send(
            state,
            Some(&editor),
            "POST",
            "/api/v1/workflows",
            "application/yaml",
            Some(doc.into()),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }
    // A workflow only this tenant has (the other tenant guesses its name).
    let own = FRESH.replace("fresh", &format!("only_{tenant}"));
    let a = send(
        state,
        Some(&editor),
        "POST",
        "/api/v1/workflows",
        "application/yaml",
        Some(own),
    )
    .await;
    assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    // An agent only this tenant has, in two versions (version 2 the default).
    for role in ["tester", "reviewer"] {
        let doc = AGENT
            .replace("NAME", &format!("only_{tenant}"))
            .replace("tester", role);
        let a = send(
            state,
            Some(&editor),
            "POST",
            "/api/v1/agents",
            "application/yaml",
            Some(doc),
        )
        .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.text);
    }
    let runner = o.keys["runner"].clone();
    for (wf, slot) in [("ask", &mut o.ask_run), ("form", &mut o.form_run)] {
        let r = json_req(
            state,
            &runner,
            "POST",
            "/api/v1/runs",
            json!({"workflow": wf}),
        )
        .await;
        *slot = r["id"].as_str().unwrap().to_string();
        wait_for_human(state, tenant, slot).await;
    }
    let h = json_req(
        state,
        &editor,
        "POST",
        "/api/v1/webhooks/inbound",
        json!({"workflow": "echo"}),
    )
    .await;
    o.hook = h["id"].as_str().unwrap().to_string();
    let s = json_req(
        state,
        &editor,
        "POST",
        "/api/v1/webhooks/subscriptions",
        json!({"url": "https://hooks.example.com/in", "events": ["run.succeeded"]}),
    )
    .await;
    o.sub = s["id"].as_str().unwrap().to_string();
    o
}

async fn world() -> World {
    // No rate limit: the matrix makes thousands of requests with a handful of keys.
    let state = test_state(Providers::default()).with_config(baton_server::ServerConfig {
        rate_limit: None,
        ..Default::default()
    });
    let operator = key_for(&state).await;
    let acme = tenant_objects(&state, &operator, "acme").await;
    let globex = tenant_objects(&state, &operator, "globex").await;
    let revoked = json_req(
        &state,
        &operator,
        "POST",
        "/api/v1/keys",
        json!({"role": "admin", "tenant": "acme"}),
    )
    .await;
    let revoked_id = revoked["id"].as_str().unwrap();
    json_req(
        &state,
        &operator,
        "DELETE",
        &format!("/api/v1/keys/{revoked_id}"),
        json!({}),
    )
    .await;
    // A key that expires in 5 ms, used once it has (no key can be made already expired).
    let expires_at_ms = baton_store::now_ms() + 5;
    let expired = state
        .control
        .create_key(
            &baton_control::Caller::local(),
            baton_control::NewKey {
                tenant: Some("acme".parse().unwrap()),
                role: baton_types::Role::Admin,
                name: None,
                expires_at_ms: Some(expires_at_ms),
            },
        )
        .await
        .unwrap()
        .key;
    while baton_store::now_ms() <= expires_at_ms {
        tokio::time::sleep(std::time::Duration::from_millis(2)).await;
    }
    World {
        revoked: revoked["key"].as_str().unwrap().to_string(),
        expired,
        state,
        operator,
        acme,
        globex,
    }
}

impl World {
    fn key(&self, who: Who) -> Option<String> {
        Some(match who {
            Who::Viewer => self.acme.keys["viewer"].clone(),
            Who::Runner => self.acme.keys["runner"].clone(),
            Who::Editor => self.acme.keys["editor"].clone(),
            Who::Admin => self.acme.keys["admin"].clone(),
            Who::Operator => self.operator.clone(),
            Who::NoKey => return None,
            Who::Revoked => self.revoked.clone(),
            Who::Expired => self.expired.clone(),
        })
    }

    fn objects(&self, t: Target) -> Option<&Objects> {
        match t {
            Target::Own => Some(&self.acme),
            Target::Other => Some(&self.globex),
            Target::Missing => None,
        }
    }

    /// Everything a refused write could have changed (the audit log aside: refusals are
    /// recorded there on purpose), as the admins of both tenants and the operator see it.
    async fn snapshot(&self) -> String {
        let mut out = String::new();
        for o in [&self.acme, &self.globex] {
            let admin = o.keys["admin"].clone();
            for uri in [
                "/api/v1/runs",
                "/api/v1/workflows",
                "/api/v1/agents",
                "/api/v1/keys",
                "/api/v1/approvals",
                "/api/v1/webhooks/inbound",
                "/api/v1/webhooks/subscriptions",
            ] {
                let a = send(&self.state, Some(&admin), "GET", uri, "", None).await;
                out.push_str(&format!("{uri} {} {}\n", a.status, a.text));
            }
        }
        let a = send(
            &self.state,
            Some(&self.operator),
            "GET",
            "/api/v1/tenants",
            "",
            None,
        )
        .await;
        out.push_str(&a.text);
        out
    }
}

/// A route's entry: what it needs, its success status, and its request for a target.
struct Case {
    need: Need,
    ok: u16,
    /// The route acts on an object named in its path or body (else: a collection).
    object: bool,
}

fn case(method: &str, path: &str) -> Option<Case> {
    use Need::*;
    let c = |need, ok, object| Some(Case { need, ok, object });
    match (method, path) {
        ("POST", "/api/v1/runs") => c(Start, 201, true),
        ("GET", "/api/v1/runs") => c(Read, 200, false),
        ("GET", "/api/v1/runs/{id}")
        | ("GET", "/api/v1/runs/{id}/state")
        | ("GET", "/api/v1/runs/{id}/graph")
        | ("GET", "/api/v1/runs/{id}/events")
        | ("GET", "/api/v1/runs/{id}/stream")
        | ("GET", "/api/v1/runs/{id}/logs")
        | ("GET", "/api/v1/runs/{id}/steps/{step}") => c(Read, 200, true),
        ("POST", "/api/v1/runs/{id}/pause") | ("POST", "/api/v1/runs/{id}/cancel") => {
            c(Operate, 200, true)
        }
        ("POST", "/api/v1/runs/{id}/resume") => c(Operate, 200, true),
        // The run has no agents: once allowed, the agent is not found.
        ("POST", "/api/v1/runs/{id}/agents/{agent}/{action}") => c(Operate, 404, true),
        // A fork is a new run: whoever may start runs may fork the runs it sees.
        ("POST", "/api/v1/runs/{id}/fork") => c(Start, 201, true),
        // A replay reads the run and writes nothing; so does a comparison (of the run with
        // itself here).
        ("POST", "/api/v1/runs/{id}/replay") | ("GET", "/api/v1/runs/{id}/compare/{other}") => {
            c(Read, 200, true)
        }
        // The run waits for a person, not paused: once allowed, its state cannot be edited.
        ("POST", "/api/v1/runs/{id}/edit") => c(Operate, 409, true),
        // An empty body changes nothing: once allowed, it is refused as such.
        ("POST", "/api/v1/runs/{id}/breakpoints") => c(Operate, 422, true),
        // The run wrote no file: once allowed, it has no workspace.
        ("GET", "/api/v1/runs/{id}/workspace") | ("GET", "/api/v1/runs/{id}/workspace/diff") => {
            c(Read, 404, true)
        }
        ("POST", "/api/v1/runs/{id}/workspace/rollback") => c(Operate, 404, true),
        ("POST", "/api/v1/runs/{id}/approve")
        | ("POST", "/api/v1/runs/{id}/reject")
        | ("POST", "/api/v1/runs/{id}/input") => c(Answer, 200, true),
        // No ambiguous step to settle.
        ("POST", "/api/v1/runs/{id}/resolve") => c(Operate, 422, true),
        ("GET", "/api/v1/approvals") | ("GET", "/api/v1/stats") => c(Read, 200, false),
        // Every key may ask who it is.
        ("GET", "/api/v1/me") => c(Read, 200, false),
        ("POST", "/api/v1/workflows") => c(Edit, 201, false),
        ("POST", "/api/v1/workflows/validate") => c(Read, 200, false),
        ("GET", "/api/v1/workflows") => c(Read, 200, false),
        ("GET", "/api/v1/workflows/{name}") => c(Read, 200, true),
        ("PUT", "/api/v1/workflows/{name}") => c(Edit, 200, true),
        ("DELETE", "/api/v1/workflows/{name}") => c(Edit, 204, true),
        ("POST", "/api/v1/agents") => c(Edit, 201, false),
        ("GET", "/api/v1/agents") => c(Read, 200, false),
        ("GET", "/api/v1/agents/{name}")
        | ("GET", "/api/v1/agents/{name}/versions")
        | ("GET", "/api/v1/agents/{name}/diff") => c(Read, 200, true),
        ("POST", "/api/v1/agents/{name}/rollback") => c(Edit, 200, true),
        ("POST", "/api/v1/keys") => c(Admin, 201, true),
        ("GET", "/api/v1/keys") => c(Admin, 200, false),
        ("DELETE", "/api/v1/keys/{id}") => c(Admin, 200, true),
        ("POST", "/api/v1/tenants") => c(Platform, 201, false),
        // Every caller sees its own tenant; the operator every tenant.
        ("GET", "/api/v1/tenants") => c(Read, 200, false),
        ("GET", "/api/v1/audit") | ("GET", "/api/v1/audit/verify") => c(Admin, 200, false),
        // Past authorization, a request without the upgrade headers is refused as such.
        ("GET", "/api/v1/ws") => c(Read, 400, false),
        ("POST", "/api/v1/webhooks/inbound") => c(Edit, 201, true),
        ("GET", "/api/v1/webhooks/inbound") => c(ReadNotRunner, 200, false),
        ("GET", "/api/v1/webhooks/inbound/{id}") => c(ReadNotRunner, 200, true),
        ("DELETE", "/api/v1/webhooks/inbound/{id}") => c(Edit, 204, true),
        ("POST", "/api/v1/webhooks/inbound/{id}/rotate") => c(Edit, 200, true),
        ("POST", "/api/v1/webhooks/subscriptions") => c(Edit, 201, false),
        ("GET", "/api/v1/webhooks/subscriptions") => c(ReadNotRunner, 200, false),
        ("GET", "/api/v1/webhooks/subscriptions/{id}")
        | ("GET", "/api/v1/webhooks/subscriptions/{id}/deliveries") => c(ReadNotRunner, 200, true),
        ("DELETE", "/api/v1/webhooks/subscriptions/{id}") => c(Edit, 204, true),
        _ => None,
    }
}

/// The request of a route for a target: its URI, content type and body.
fn request(w: &World, method: &str, path: &str, t: Target) -> (String, &'static str, String) {
    let o = w.objects(t);
    let pick = |f: fn(&Objects) -> &String, missing: &str| {
        o.map_or_else(|| missing.to_string(), |o| f(o).clone())
    };
    let run_missing = "0123456789abcdef0123456789abcdef";
    let run = if path.ends_with("/input") {
        pick(|o| &o.form_run, run_missing)
    } else {
        pick(|o| &o.ask_run, run_missing)
    };
    let mut uri = path
        .replace("{step}", "first")
        .replace("{agent}", "coder")
        .replace("{action}", "pause");
    if path.starts_with("/api/v1/runs/") {
        uri = uri.replace("{id}", &run).replace("{other}", &run);
    } else if path.starts_with("/api/v1/keys/") {
        uri = uri.replace("{id}", &pick(|o| &o.spare_key_id, "k_nosuchkey00"));
    } else if path.starts_with("/api/v1/webhooks/inbound/") {
        uri = uri.replace("{id}", &pick(|o| &o.hook, "wh_nosuchhook000000"));
    } else if path.starts_with("/api/v1/webhooks/subscriptions/") {
        uri = uri.replace("{id}", &pick(|o| &o.sub, "ws_nosuchsub0000000"));
    }
    // The workflow only the target's tenant has (`echo` and `ask` exist in both).
    let only = match t {
        Target::Own => "only_acme",
        Target::Other => "only_globex",
        Target::Missing => "only_nobody",
    };
    uri = uri.replace("{name}", only);
    let tenant = match t {
        Target::Own => "acme",
        Target::Other => "globex",
        Target::Missing => "nobody",
    };
    let j = |v: Value| ("application/json", v.to_string());
    let (ct, body) = match (method, path) {
        ("POST", "/api/v1/runs") => j(json!({"workflow": only})),
        ("POST", p) if p.ends_with("/approve") || p.ends_with("/reject") => {
            j(json!({"step": "ok", "no_resume": true}))
        }
        ("POST", p) if p.ends_with("/input") => {
            j(json!({"step": "who", "value": "ann", "no_resume": true}))
        }
        ("POST", p) if p.ends_with("/fork") => j(json!({"after": "first"})),
        ("POST", p) if p.ends_with("/replay") => j(json!({})),
        ("POST", p) if p.ends_with("/edit") => j(json!({"set": {"state.k": 1}})),
        ("POST", p) if p.ends_with("/resolve") => {
            j(json!({"step": "first", "as": "retry", "no_resume": true}))
        }
        ("POST", "/api/v1/workflows") | ("POST", "/api/v1/workflows/validate") => {
            ("application/yaml", FRESH.to_string())
        }
        ("PUT", _) => ("application/yaml", FRESH.replace("fresh", only)),
        ("POST", "/api/v1/agents") => ("application/yaml", AGENT.replace("NAME", "fresh")),
        ("POST", p) if p.ends_with("/workspace/rollback") => j(json!({"step": "first"})),
        ("POST", p) if p.ends_with("/rollback") => j(json!({"to": 1})),
        ("POST", "/api/v1/keys") => j(json!({"role": "viewer", "tenant": tenant})),
        ("POST", "/api/v1/tenants") => j(json!({"id": "newco"})),
        ("POST", "/api/v1/webhooks/inbound") => j(json!({"workflow": only})),
        ("POST", "/api/v1/webhooks/subscriptions") => {
            j(json!({"url": "https://hooks.example.com/new", "events": ["run.failed"]}))
        }
        ("POST", _) => j(json!({})),
        _ => ("", String::new()),
    };
    (uri, ct, body)
}

fn expected(c: &Case, who: Who, t: Target, method: &str, path: &str) -> Vec<u16> {
    if matches!(who, Who::NoKey | Who::Revoked | Who::Expired) {
        return vec![401];
    }
    let allowed = who.allows(c.need);
    // The operator's own tenant is `default`: acme's objects are another tenant's to it,
    // except keys, which it manages in every tenant.
    if who == Who::Operator && c.object {
        return match (method, path, t) {
            ("POST", "/api/v1/keys", Target::Missing) => vec![404],
            ("POST", "/api/v1/keys", _) => vec![201],
            ("DELETE", "/api/v1/keys/{id}", Target::Missing) => vec![404],
            ("DELETE", "/api/v1/keys/{id}", _) => vec![200],
            _ => vec![404],
        };
    }
    if !c.object || t == Target::Own {
        if !allowed {
            return vec![403];
        }
        return vec![c.ok];
    }
    // Another tenant's object, or none at all: the same answer.
    if allowed { vec![404] } else { vec![403, 404] }
}

fn is_error_body(a: &Answer) -> bool {
    let e = &a.body["error"];
    e["code"].is_string()
        && e["message"].as_str().is_some_and(|m| !m.is_empty())
        && e.as_object().is_some_and(|o| o.contains_key("details"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_route_every_role_every_tenant() {
    let probe = world().await;
    let doc = send(&probe.state, None, "GET", "/api/v1/openapi.json", "", None).await;
    assert_eq!(doc.status, StatusCode::OK);
    let mut routes = Vec::new();
    for (path, item) in doc.body["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            if ["get", "post", "put", "delete", "patch"].contains(&method.as_str()) {
                routes.push((method.to_uppercase(), path.clone()));
            }
        }
    }
    let missing: Vec<String> = routes
        .iter()
        .filter(|(m, p)| case(m, p).is_none())
        .map(|(m, p)| format!("{m} {p}"))
        .collect();
    assert!(
        missing.is_empty(),
        "documented routes without an entry in the authorization matrix: {missing:?}"
    );
    assert!(routes.len() >= 40, "{routes:?}");

    let shared = probe;
    let mut cells = Vec::new();
    for (method, path) in &routes {
        let c = case(method, path).unwrap();
        let targets: &[Target] = if c.object {
            &[Target::Own, Target::Other, Target::Missing]
        } else {
            &[Target::Own]
        };
        for &who in &WHO {
            for &t in targets {
                cells.push((method.as_str(), path.as_str(), who, t));
            }
        }
    }
    let count = cells.len();
    // Cells that share the world only read or are refused, so they may run side by side.
    use futures::StreamExt;
    let failures: Vec<String> = futures::stream::iter(cells)
        .map(|(m, p, who, t)| check_cell(&shared, m, p, who, t))
        .buffer_unordered(8)
        .flat_map(futures::stream::iter)
        .collect()
        .await;
    assert!(
        failures.is_empty(),
        "{} wrong in {count} cells:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// One cell of the matrix: what went wrong, if anything.
async fn check_cell(shared: &World, method: &str, path: &str, who: Who, t: Target) -> Vec<String> {
    let mut failures = Vec::new();
    let c = case(method, path).unwrap();
    // A write that may succeed gets a world of its own; the rest share one.
    let want = expected(&c, who, t, method, path);
    let writes = method != "GET" && want.iter().any(|s| *s < 300);
    let own_world;
    let w = if writes {
        own_world = world().await;
        &own_world
    } else {
        shared
    };
    let (uri, ct, body) = request(w, method, path, t);
    // Reads change nothing by construction; every other refused request is checked.
    let before = if method == "GET" {
        String::new()
    } else {
        w.snapshot().await
    };
    let key = w.key(who);
    let a = send(
        &w.state,
        key.as_deref(),
        method,
        &uri,
        ct,
        (!body.is_empty()).then_some(body),
    )
    .await;
    let cell = format!("{method} {path} as {who:?} on {t:?} ({uri})");
    if !want.contains(&a.status.as_u16()) {
        failures.push(format!("{cell}: {} (want {want:?}) {}", a.status, a.text));
        return failures;
    }
    if a.status.is_client_error() {
        if !is_error_body(&a) {
            failures.push(format!("{cell}: not the error body: {}", a.text));
        }
        if method != "GET" && w.snapshot().await != before {
            failures.push(format!("{cell}: a refused request changed the world"));
        }
    }
    // What a caller of acme sees never names globex's objects (the audit log aside: it
    // records what acme's own callers asked for, guessed names included).
    if who != Who::Operator && t != Target::Other && path != "/api/v1/audit" {
        for secret in [&w.globex.ask_run, &w.globex.hook, &w.globex.sub] {
            if a.text.contains(secret.as_str()) {
                failures.push(format!("{cell}: shows another tenant's {secret}"));
            }
        }
        if a.text.contains("only_globex") || a.text.contains(&w.globex.spare_key_id) {
            failures.push(format!("{cell}: shows another tenant's object"));
        }
    }
    failures
}

/// A runner sees and answers only the runs it started: another key's run of its own tenant
/// is not there for it (404), as another tenant's.
#[tokio::test]
async fn a_runner_sees_only_its_own_runs() {
    let w = world().await;
    let editor = w.acme.keys["editor"].clone();
    let r = json_req(
        &w.state,
        &editor,
        "POST",
        "/api/v1/runs",
        json!({"workflow": "ask"}),
    )
    .await;
    let id = r["id"].as_str().unwrap().to_string();
    wait_for_human(&w.state, "acme", &id).await;
    let runner = w.acme.keys["runner"].clone();
    for (m, uri) in [
        ("GET", format!("/api/v1/runs/{id}")),
        ("GET", format!("/api/v1/runs/{id}/events")),
        ("POST", format!("/api/v1/runs/{id}/approve")),
    ] {
        let a = send(
            &w.state,
            Some(&runner),
            m,
            &uri,
            "application/json",
            Some("{}".into()),
        )
        .await;
        assert_eq!(a.status, StatusCode::NOT_FOUND, "{m} {uri}: {}", a.text);
        assert!(is_error_body(&a), "{}", a.text);
    }
    let list = send(&w.state, Some(&runner), "GET", "/api/v1/runs", "", None).await;
    assert!(!list.text.contains(&id), "{}", list.text);
    assert!(list.text.contains(&w.acme.ask_run), "{}", list.text);
    let approvals = send(
        &w.state,
        Some(&runner),
        "GET",
        "/api/v1/approvals",
        "",
        None,
    )
    .await;
    assert!(!approvals.text.contains(&id), "{}", approvals.text);
}
