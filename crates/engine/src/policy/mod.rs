//! Policy: the workflow's `policy.rules`, compiled once and checked by the state machine
//! before every tool, workspace and sandbox action (see `machine/policy.rs`). Pure: an action
//! and the budget left in, a verdict out.
//!
//! - Rules are tried in order; the first whose conditions all hold decides. A workflow with
//!   rules denies what none matches (`default-deny`); one without rules checks nothing.
//! - What an action touches is read from its tool and arguments ([`Facts`]): workspace paths
//!   (`workspace.*`'s `path`, the files a patch's headers name, a sandbox command's `files`),
//!   network hosts (an `http.*` call's `url`, a `sandbox:` step's `net: allow:...` and
//!   `credentials` hosts, and the hosts a tool reaches whatever its arguments, such as
//!   `sandbox.exec`'s allow-list: [`Action::network`]) and the sandbox command line.
//! - A condition over several values (paths, hosts, commands, an argument holding a list)
//!   holds for an `allow` rule when every value matches, and for a `deny` rule when one does:
//!   either way an action that touches something the rule does not cover is not let through by
//!   it. An action that touches no value of that kind does not match the condition.

pub mod glob;

use baton_types::{PolicyDecision, PolicyEffect, PolicyRule};
use serde_json::Value;

pub use glob::Glob;

/// The tool a `sandbox:` step calls (named so in rules: `tools: [sandbox.step]`).
const SANDBOX_STEP: &str = baton_tools::sandbox_step::STEP_TOOL;

/// One rule, its globs compiled.
#[derive(Clone, Debug)]
struct Rule {
    id: String,
    effect: PolicyEffect,
    reason: Option<String>,
    tools: Vec<Glob>,
    agents: Vec<String>,
    steps: Vec<String>,
    args: Vec<(String, Vec<Glob>)>,
    paths: Vec<Glob>,
    hosts: Vec<Glob>,
    commands: Vec<Glob>,
    budget: Option<baton_types::BudgetLeft>,
}

/// The compiled rules of a workflow.
#[derive(Clone, Debug)]
pub struct Rules {
    rules: Vec<Rule>,
}

/// A problem with one rule: the field path under `policy.rules[i]` and what is wrong.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct RuleError {
    /// `tools[1]`, `args.path[0]`, `id`...
    pub field: String,
    pub message: String,
}

/// An action about to happen.
#[derive(Clone, Copy, Debug)]
pub struct Action<'a> {
    pub tool: &'a str,
    /// The agent making the call (`coder`; none for a `tool:` or `sandbox:` step).
    pub agent: Option<&'a str>,
    /// The step's id (an instance `fix[2]` is step `fix`).
    pub step: &'a str,
    pub args: &'a Value,
    /// Hosts the tool reaches whatever the arguments (`sandbox.exec`'s allow-list and
    /// credential hosts, from the policy Baton was started with).
    pub network: &'a [String],
}

/// What the run has left of its budget (`None`: no such limit).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Left {
    pub usd: Option<f64>,
    pub tokens: Option<f64>,
}

/// A decision and the rule that took it (`default-deny` when none matched).
#[derive(Clone, Debug, PartialEq)]
pub struct Verdict {
    pub decision: PolicyDecision,
    pub rule: String,
    pub reason: Option<String>,
}

impl Verdict {
    /// What an agent is told of a denied call, as its result.
    pub fn refusal(&self, tool: &str) -> Value {
        let mut v = serde_json::json!({
            "error": "policy_denied",
            "rule": self.rule,
            "tool": tool,
        });
        if let (Some(r), Some(m)) = (&self.reason, v.as_object_mut()) {
            m.insert("reason".into(), Value::String(r.clone()));
        }
        v
    }

    /// The step error of a denied `tool:` or `sandbox:` step.
    pub fn message(&self, tool: &str) -> String {
        let why = self
            .reason
            .as_deref()
            .map(|r| format!(": {r}"))
            .unwrap_or_default();
        if self.rule == baton_types::DEFAULT_DENY {
            format!("policy denied `{tool}`: no rule allows it (default-deny){why}")
        } else {
            format!("policy denied `{tool}` by rule '{}'{why}", self.rule)
        }
    }
}

impl Rules {
    /// Compiles the rules; every problem of every rule, by rule index.
    pub fn compile(rules: &[PolicyRule]) -> Result<Rules, Vec<(usize, RuleError)>> {
        let mut out = Vec::new();
        let mut errors = Vec::new();
        for (i, r) in rules.iter().enumerate() {
            match compile_rule(r) {
                Ok(rule) => out.push(rule),
                Err(es) => errors.extend(es.into_iter().map(|e| (i, e))),
            }
        }
        if errors.is_empty() {
            Ok(Rules { rules: out })
        } else {
            Err(errors)
        }
    }

    /// The first rule that matches decides; none: denied.
    pub fn decide(&self, action: &Action<'_>, left: Left) -> Verdict {
        let mut facts = Facts::of(action.tool, action.args);
        for h in action.network.iter().map(|h| host_only(h)) {
            if !facts.hosts.contains(&h) {
                facts.hosts.push(h);
            }
        }
        for r in &self.rules {
            if r.matches(action, &facts, left) {
                return Verdict {
                    decision: r.effect.into(),
                    rule: r.id.clone(),
                    reason: r.reason.clone(),
                };
            }
        }
        Verdict {
            decision: PolicyDecision::Deny,
            rule: baton_types::DEFAULT_DENY.into(),
            reason: Some("no policy rule allows this action".into()),
        }
    }
}

fn globs(list: &[String], field: &str, path: bool, errors: &mut Vec<RuleError>) -> Vec<Glob> {
    let mut out = Vec::new();
    for (i, g) in list.iter().enumerate() {
        let compiled = if path { Glob::path(g) } else { Glob::text(g) };
        match compiled {
            Ok(g) => out.push(g),
            Err(m) => errors.push(RuleError {
                field: format!("{field}[{i}]"),
                message: format!("bad glob: {m}"),
            }),
        }
    }
    out
}

fn compile_rule(r: &PolicyRule) -> Result<Rule, Vec<RuleError>> {
    let mut errors = Vec::new();
    if r.id.trim().is_empty() {
        errors.push(RuleError {
            field: "id".into(),
            message: "a rule's `id` is empty".into(),
        });
    }
    let tools = globs(&r.tools, "tools", false, &mut errors);
    let mut args = Vec::new();
    for (k, list) in &r.args {
        let field = crate::load::key_path("args", k);
        if k.is_empty() || k.split('.').any(str::is_empty) {
            errors.push(RuleError {
                field: field.clone(),
                message: format!("`{k}` is not an argument path (names joined by `.`)"),
            });
        }
        if list.is_empty() {
            errors.push(RuleError {
                field: field.clone(),
                message: format!("argument `{k}` has no globs: it would match nothing"),
            });
        }
        args.push((k.clone(), globs(list, &field, false, &mut errors)));
    }
    let paths = globs(&r.paths, "paths", true, &mut errors);
    let hosts = globs(&r.hosts, "hosts", false, &mut errors);
    let commands = globs(&r.commands, "commands", false, &mut errors);
    if let Some(b) = &r.budget_left_below {
        if b.usd.is_none() && b.tokens.is_none() {
            errors.push(RuleError {
                field: "budget_left_below".into(),
                message: "`budget_left_below` needs `usd` or `tokens`".into(),
            });
        }
        if b.usd.is_some_and(|u| !u.is_finite() || u <= 0.0) {
            errors.push(RuleError {
                field: "budget_left_below.usd".into(),
                message: "`usd` must be a positive amount".into(),
            });
        }
        if b.tokens == Some(0) {
            errors.push(RuleError {
                field: "budget_left_below.tokens".into(),
                message: "`tokens` must be positive".into(),
            });
        }
    }
    if !errors.is_empty() {
        return Err(errors);
    }
    Ok(Rule {
        id: r.id.clone(),
        effect: r.effect,
        reason: r.reason.clone(),
        tools,
        agents: r.agents.clone(),
        steps: r.steps.clone(),
        args,
        paths,
        hosts,
        commands,
        budget: r.budget_left_below.clone(),
    })
}

impl Rule {
    fn matches(&self, a: &Action<'_>, facts: &Facts, left: Left) -> bool {
        if !self.tools.is_empty() && !self.tools.iter().any(|g| g.matches(a.tool)) {
            return false;
        }
        if !self.agents.is_empty() {
            let Some(agent) = a.agent else { return false };
            let name = baton_types::agent_name(agent);
            if !self.agents.iter().any(|x| x == name || x == agent) {
                return false;
            }
        }
        if !self.steps.is_empty() && !self.steps.iter().any(|s| s == a.step) {
            return false;
        }
        for (path, globs) in &self.args {
            if !self.holds(globs, &arg_values(a.args, path)) {
                return false;
            }
        }
        if !self.paths.is_empty() && !self.holds(&self.paths, &facts.paths) {
            return false;
        }
        if !self.hosts.is_empty() && !self.holds(&self.hosts, &facts.hosts) {
            return false;
        }
        if !self.commands.is_empty() && !self.holds(&self.commands, &facts.commands) {
            return false;
        }
        if let Some(b) = &self.budget {
            let below = |limit: Option<f64>, have: Option<f64>| matches!((limit, have), (Some(l), Some(h)) if h < l);
            if !(below(b.usd, left.usd) || below(b.tokens.map(|t| t as f64), left.tokens)) {
                return false;
            }
        }
        true
    }

    /// A condition over `values`: every one matches (allow), or one does (deny); never on
    /// no values.
    fn holds(&self, globs: &[Glob], values: &[String]) -> bool {
        if values.is_empty() {
            return false;
        }
        let hit = |v: &String| globs.iter().any(|g| g.matches(v));
        match self.effect {
            PolicyEffect::Allow => values.iter().all(hit),
            PolicyEffect::Deny => values.iter().any(hit),
        }
    }
}

/// The values at an argument path (`a.b.0`): a scalar's text, each scalar of a list; nothing
/// for a missing value, `null` or a mapping.
fn arg_values(args: &Value, path: &str) -> Vec<String> {
    let mut v = args;
    for part in path.split('.') {
        v = match v {
            Value::Object(m) => match m.get(part) {
                Some(x) => x,
                None => return Vec::new(),
            },
            Value::Array(a) => match part.parse::<usize>().ok().and_then(|i| a.get(i)) {
                Some(x) => x,
                None => return Vec::new(),
            },
            _ => return Vec::new(),
        };
    }
    let scalar = |x: &Value| match x {
        Value::String(s) => Some(s.clone()),
        Value::Number(n) => Some(n.to_string()),
        Value::Bool(b) => Some(b.to_string()),
        _ => None,
    };
    match v {
        Value::Array(a) => a.iter().filter_map(scalar).collect(),
        x => scalar(x).into_iter().collect(),
    }
}

/// What an action touches, read from its tool and arguments.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Facts {
    /// Workspace paths, normalised (`./a/../b` is `b`; the whole workspace is `.`).
    pub paths: Vec<String>,
    /// Network hosts, lower case, without a port.
    pub hosts: Vec<String>,
    /// Command lines (an argument list joined by spaces).
    pub commands: Vec<String>,
}

impl Facts {
    pub fn of(tool: &str, args: &Value) -> Facts {
        let mut f = Facts::default();
        let text = |k: &str| args.get(k).and_then(Value::as_str);
        match tool {
            "workspace.read" | "workspace.write" => {
                if let Some(p) = text("path") {
                    f.paths.push(normalise(p));
                }
            }
            "workspace.list" | "workspace.search" => {
                f.paths.push(normalise(text("path").unwrap_or(".")));
            }
            "workspace.apply_patch" => {
                if let Some(patch) = text("patch") {
                    f.paths = patch_paths(patch);
                }
            }
            "sandbox.exec" | SANDBOX_STEP => {
                match args.get("command") {
                    Some(Value::String(s)) => f.commands.push(s.clone()),
                    Some(Value::Array(a)) => f.commands.push(
                        a.iter()
                            .map(|x| x.as_str().map_or_else(|| x.to_string(), str::to_string))
                            .collect::<Vec<_>>()
                            .join(" "),
                    ),
                    _ => {}
                }
                if let Some(Value::Object(files)) = args.get("files") {
                    f.paths.extend(files.keys().map(|k| normalise(k.as_str())));
                }
                let policy = args.get("policy");
                if let Some(net) = policy.and_then(|p| p.get("net")).and_then(Value::as_str)
                    && let Some(hosts) = net.strip_prefix("allow:")
                {
                    f.hosts.extend(
                        hosts
                            .split(',')
                            .map(str::trim)
                            .filter(|h| !h.is_empty())
                            .map(host_only),
                    );
                }
                // A credential's host is reached with the secret: the rules see it too.
                if let Some(Value::Array(creds)) = policy.and_then(|p| p.get("credentials")) {
                    for h in creds
                        .iter()
                        .filter_map(|c| c.get("host").and_then(Value::as_str))
                        .map(host_only)
                    {
                        if !f.hosts.contains(&h) {
                            f.hosts.push(h);
                        }
                    }
                }
            }
            t if t.starts_with("http.") => {
                if let Some(h) = text("url").and_then(url_host) {
                    f.hosts.push(h);
                }
            }
            _ => {}
        }
        f
    }
}

/// A workspace path as the rules see it: `.` segments and `a/..` pairs gone, no leading `./`
/// or repeated `/`; the whole workspace is `.`.
pub fn normalise(p: &str) -> String {
    let mut parts: Vec<&str> = Vec::new();
    for seg in p.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                if parts.last().is_some_and(|l| *l != "..") {
                    parts.pop();
                } else {
                    parts.push("..");
                }
            }
            s => parts.push(s),
        }
    }
    let joined = parts.join("/");
    match (p.starts_with('/'), joined.is_empty()) {
        (true, _) => format!("/{joined}"),
        (false, true) => ".".into(),
        (false, false) => joined,
    }
}

/// Every path a unified diff names: its `---`/`+++` headers (a `+++` right after a `---`),
/// `diff --git a/x b/y` lines, and renames and copies; `a/` and `b/` prefixes dropped,
/// `/dev/null` left out.
pub fn patch_paths(patch: &str) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    let mut add = |p: &str| {
        let p = p.split('\t').next().unwrap_or(p).trim();
        if p.is_empty() || p == "/dev/null" {
            return;
        }
        let p = p
            .strip_prefix("a/")
            .or_else(|| p.strip_prefix("b/"))
            .unwrap_or(p);
        let n = normalise(p);
        if !out.contains(&n) {
            out.push(n);
        }
    };
    let lines: Vec<&str> = patch.lines().collect();
    for (i, l) in lines.iter().enumerate() {
        if let (Some(old), Some(new)) = (
            l.strip_prefix("--- "),
            lines.get(i + 1).and_then(|n| n.strip_prefix("+++ ")),
        ) {
            add(old);
            add(new);
        } else if let Some(rest) = l.strip_prefix("diff --git ") {
            // `a/x b/y`: split before the ` b/`.
            match rest.find(" b/") {
                Some(at) => {
                    add(&rest[..at]);
                    add(&rest[at + 1..]);
                }
                None => rest.split_whitespace().for_each(&mut add),
            }
        } else if let Some(p) = ["rename from ", "rename to ", "copy from ", "copy to "]
            .iter()
            .find_map(|h| l.strip_prefix(h))
        {
            add(p);
        }
    }
    out
}

/// `host` of `host:port` (or of `[v6]:port`), lower case.
fn host_only(h: &str) -> String {
    let h = h.trim();
    let bare = if let Some(rest) = h.strip_prefix('[') {
        rest.split(']').next().unwrap_or(rest)
    } else {
        match h.rsplit_once(':') {
            Some((host, port)) if port.chars().all(|c| c.is_ascii_digit()) => host,
            _ => h,
        }
    };
    bare.to_ascii_lowercase()
}

/// The host of an `http(s)://` URL.
fn url_host(url: &str) -> Option<String> {
    let rest = url.split_once("://").map_or(url, |(_, r)| r);
    let authority = rest.split(['/', '?', '#']).next()?;
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let h = host_only(authority);
    (!h.is_empty()).then_some(h)
}

/// The tool names a rule may name besides the registry's: the sandbox step's.
pub fn is_engine_tool(name: &str) -> bool {
    name == SANDBOX_STEP
}

#[cfg(test)]
mod tests;
