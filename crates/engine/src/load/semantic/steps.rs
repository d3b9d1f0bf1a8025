//! One step's own settings: the kind's references (agent, tool, sandbox), limits, retries,
//! schemas. (Which keys a kind may have was settled when the step was typed.)

use baton_tools::sandbox_step::{self, STEP_TOOL};
use baton_types::{
    AgentStep, HumanKind, HumanSpec, MapStep, SandboxCommand, SandboxSpec, Step, StepKind, ToolStep,
};
use serde_json::Value;

use super::document::show;
use super::{CONTEXT_ROOTS, Checker, MAX_RETRIES};
use crate::load::suggest::{hint, list, paren_hint};
use crate::load::{index_path, key_path};
use crate::template;

impl Checker<'_, '_> {
    pub(super) fn check_step(&mut self, i: usize) {
        let step = self.infos[i].step;
        let path = self.infos[i].path.clone();
        let id = &step.id;
        let at = |f: &str| key_path(&path, f);
        match &step.kind {
            StepKind::Agent(a) => self.check_agent_step(a, &path),
            StepKind::Tool(t) => self.check_tool_step(t, &path),
            StepKind::Switch(sw) if sw.cases.is_empty() => {
                self.error(
                    key_path(&at("switch"), "cases"),
                    format!("switch step `{id}` has no cases"),
                );
            }
            StepKind::Parallel(p) => {
                if p.branches.is_empty() {
                    self.error(
                        at("parallel"),
                        format!("parallel step `{id}` has no branches"),
                    );
                }
                self.check_max_concurrency(p.max_concurrency, &path);
                self.check_join(id, p, &path);
            }
            StepKind::Map(m) => self.check_map_step(id, m, &path),
            StepKind::Group(steps) if steps.is_empty() => {
                self.error(
                    at("steps"),
                    format!("step `{id}` has an empty `steps` list"),
                );
            }
            StepKind::Human(h) => self.check_human_step(h, &path),
            StepKind::Sandbox(spec) => self.check_sandbox(spec, &at("sandbox")),
            _ => {}
        }
        self.check_limits(step, &path);
    }

    fn check_agent_step(&mut self, step: &AgentStep, path: &str) {
        let agent = &step.agent;
        if !self.doc.agents.contains_key(agent) {
            let names: Vec<&str> = self.doc.agents.keys().map(String::as_str).collect();
            self.error(
                key_path(path, "agent"),
                format!(
                    "unknown agent `{agent}`: neither in `agents:` (defined: {}) nor in the agent registry{}",
                    list(names.iter().copied()),
                    hint(agent, names.iter().copied())
                ),
            );
        }
        if let Some(schema) = step.output.as_ref().and_then(|o| o.schema.as_ref()) {
            self.check_schema(schema, key_path(&key_path(path, "output"), "schema"));
        }
        if let Some(w) = &step.wait_for {
            self.check_wait_for(agent, w, &key_path(path, "wait_for"));
        }
    }

    fn check_tool_step(&mut self, step: &ToolStep, path: &str) {
        let tool = &step.tool;
        match self.env.tools.get(tool) {
            _ if crate::team::is_team_tool(tool) => {
                self.error(key_path(path, "tool"), format!("`{tool}` is a team tool: agents call it (list it in an agent's `tools:`); a tool step has no agent to send or write as"));
            }
            _ if tool == STEP_TOOL => {
                self.error(key_path(path, "tool"), format!("`{STEP_TOOL}` is what `sandbox:` steps run; write a `sandbox:` step instead (see docs/workflow-format.md)"));
            }
            None => {
                let m = self.unknown_tool(tool, false);
                self.error(key_path(path, "tool"), m);
            }
            _ if tool == "state.set" && step.with.as_ref().is_none_or(|w| w.is_empty()) => {
                self.error(
                    key_path(path, "with"),
                    "`state.set` needs at least one key in `with` (each key becomes `state.KEY`)",
                );
            }
            Some(t) => self.check_tool_arguments(&t.spec().parameters, step, path),
        }
    }

    fn check_map_step(&mut self, id: &str, step: &MapStep, path: &str) {
        if step.steps.is_empty() {
            self.error(
                key_path(path, "steps"),
                format!("step `{id}` has an empty `steps` list"),
            );
        }
        self.check_max_concurrency(step.max_concurrency, path);
        if let Some(name) = &step.map.item {
            let as_path = key_path(&key_path(path, "map"), "as");
            if !is_identifier(name) {
                self.error(as_path, format!("`{name}` cannot name the item: use letters, digits and `_`, not starting with a digit"));
            } else if CONTEXT_ROOTS.contains(&name.as_str()) {
                self.error(as_path, format!("`{name}` cannot name the item: it would hide the template variable `{name}`"));
            }
        }
    }

    fn check_human_step(&mut self, step: &HumanSpec, path: &str) {
        self.check_human_wait(step, path);
        let Some(schema) = &step.schema else {
            return;
        };
        let schema_path = key_path(&key_path(path, "human"), "schema");
        if step.kind == HumanKind::Approval {
            self.error(schema_path, "`human.schema` only applies to `kind: input`");
        } else {
            self.check_schema(schema, schema_path);
        }
    }

    /// `human.timeout`, `escalate_to` and `on_timeout` fit together.
    fn check_human_wait(&mut self, step: &HumanSpec, path: &str) {
        let at = |f: &str| key_path(&key_path(path, "human"), f);
        if step.timeout.is_some_and(|t| t.0.is_zero()) {
            self.error(at("timeout"), "`human.timeout` must be more than 0");
        }
        if let Some(to) = &step.escalate_to {
            if to.trim().is_empty() {
                self.error(
                    at("escalate_to"),
                    "`human.escalate_to` is empty: name a role (`admin`, `editor`) or a key id",
                );
            } else if step.timeout.is_none() {
                self.error(at("escalate_to"), "`human.escalate_to` needs `human.timeout`: how long to wait before the request goes there");
            }
        }
        if !step.on_timeout.is_default() {
            if step.timeout.is_none() {
                self.error(
                    at("on_timeout"),
                    "`human.on_timeout` needs `human.timeout`: how long to wait for an answer",
                );
            } else if step.kind == HumanKind::Input {
                self.error(at("on_timeout"), format!("`human.on_timeout: {}` only applies to `kind: approval` (an input has no value to give on its own); leave it out to fail the step", step.on_timeout.as_str()));
            }
        }
    }

    fn check_max_concurrency(&mut self, max: Option<u32>, path: &str) {
        if max == Some(0) {
            self.error(
                key_path(path, "max_concurrency"),
                "`max_concurrency` must be at least 1",
            );
        }
    }

    /// What every kind has: visits, time limit, retries.
    fn check_limits(&mut self, step: &Step, path: &str) {
        let at = |f: &str| key_path(path, f);
        if step.max_visits == Some(0) {
            self.error(at("max_visits"), "`max_visits` must be at least 1");
        }
        if step.timeout.is_some_and(|t| t.0.is_zero()) {
            self.error(at("timeout"), "`timeout` must be more than 0");
        }
        let Some(r) = &step.retry else {
            return;
        };
        if r.max > MAX_RETRIES {
            self.error(
                key_path(&at("retry"), "max"),
                format!(
                    "`retry.max` is {}; at most {MAX_RETRIES} retries are allowed",
                    r.max
                ),
            );
        }
        if let Some(f) = r.factor
            && (!f.is_finite() || f < 1.0)
        {
            self.error(
                key_path(&at("retry"), "factor"),
                format!("`retry.factor` must be at least 1 (the delay grows by it), not {f}"),
            );
        }
        if let (Some(b), Some(m)) = (r.backoff, r.max_delay)
            && m < b
        {
            self.error(
                key_path(&at("retry"), "max_delay"),
                format!("`retry.max_delay` ({m}) is shorter than `retry.backoff` ({b})"),
            );
        }
    }

    /// The argument names of `with` against the tool's parameter schema: required ones must be
    /// there, unknown ones are refused when the tool allows no others. (Values are templates,
    /// checked when the step runs.)
    fn check_tool_arguments(&mut self, params: &Value, step: &ToolStep, path: &str) {
        let tool = &step.tool;
        let given: Vec<&str> = step
            .with
            .iter()
            .flat_map(|w| w.keys().map(String::as_str))
            .collect();
        let known: Vec<&str> = params
            .get("properties")
            .and_then(Value::as_object)
            .map(|p| p.keys().map(String::as_str).collect())
            .unwrap_or_default();
        let required = params
            .get("required")
            .and_then(Value::as_array)
            .cloned()
            .unwrap_or_default();
        for name in required.iter().filter_map(Value::as_str) {
            if !given.contains(&name) {
                let at = if step.with.is_some() {
                    key_path(path, "with")
                } else {
                    key_path(path, "tool")
                };
                self.error(
                    at,
                    format!(
                        "tool `{tool}` needs the argument `{name}` in `with` (its arguments: {})",
                        list(known.iter().copied())
                    ),
                );
            }
        }
        if params.get("additionalProperties") == Some(&Value::Bool(false)) {
            for name in given.iter().filter(|g| !known.contains(g)) {
                self.error(
                    key_path(&key_path(path, "with"), name),
                    format!(
                        "tool `{tool}` has no argument `{name}`{} (its arguments: {})",
                        paren_hint(name, known.iter().copied()),
                        list(known.iter().copied())
                    ),
                );
            }
        }
    }

    /// A `sandbox:` step's settings: what can be known before it runs (templates are
    /// checked with the other templates, and their values when the step runs).
    fn check_sandbox(&mut self, spec: &SandboxSpec, path: &str) {
        let at = |f: &str| key_path(path, f);
        if !self.env.tools.contains(STEP_TOOL) {
            self.error(
                path.to_string(),
                format!("sandbox steps need the `{STEP_TOOL}` tool, which this Baton does not provide (it was started without sandbox support)"),
            );
        }
        match &spec.command {
            SandboxCommand::Shell(c) if c.trim().is_empty() => {
                self.error(
                    at("command"),
                    "`sandbox.command` is empty: give a shell command or an argv list",
                );
            }
            SandboxCommand::Argv(v) if v.is_empty() => {
                self.error(
                    at("command"),
                    "`sandbox.command` is an empty list: give at least the program to run",
                );
            }
            SandboxCommand::Argv(v) if v[0].is_empty() => {
                self.error(
                    index_path(&at("command"), 0),
                    "the program to run (`sandbox.command[0]`) is an empty string",
                );
            }
            _ => {}
        }
        for name in spec.files.keys() {
            let p = std::path::Path::new(name);
            if name.is_empty()
                || p.is_absolute()
                || p.components()
                    .any(|c| !matches!(c, std::path::Component::Normal(_)))
            {
                self.error(
                    key_path(&at("files"), name),
                    format!("workspace file `{name}` must be a relative path inside /work, without `..` or `.`"),
                );
            }
        }
        for name in spec.env.keys() {
            if name.is_empty() || name.contains(['=', '\0']) {
                self.error(
                    key_path(&at("env"), name),
                    format!("`{name}` is not an environment variable name"),
                );
            }
        }
        self.check_sandbox_files(spec, path);
    }

    /// `credentials:`: each entry's fields at its index, then the list against the network the
    /// step will have (its `net`, else its policy file's) unless that is a template.
    fn check_sandbox_credentials(
        &mut self,
        spec: &SandboxSpec,
        path: &str,
        base: &std::path::Path,
        file_ok: bool,
    ) {
        if spec.credentials.is_empty() {
            return;
        }
        let at = key_path(path, "credentials");
        let mut entries_ok = true;
        for (i, c) in spec.credentials.iter().enumerate() {
            let v = serde_json::to_value(c).unwrap_or_default();
            if let Err(m) = sandbox_step::check_credential(&v) {
                entries_ok = false;
                self.error(
                    index_path(&at, i),
                    format!("`sandbox.credentials[{i}]`: {m}"),
                );
            }
        }
        let net_templated = spec.net.as_deref().is_some_and(template::is_template);
        if !entries_ok || !file_ok || net_templated {
            return;
        }
        let list = serde_json::to_value(&spec.credentials).unwrap_or_default();
        let file = spec.policy.as_ref().map(|f| base.join(f));
        if let Err(m) = sandbox_step::check_credentials(&list, spec.net.as_deref(), file.as_deref())
        {
            self.error(at, format!("`sandbox.credentials`: {m}"));
        }
    }

    /// The overrides that are not templates, and the policy file and workdir, which are paths
    /// relative to the workflow file.
    fn check_sandbox_files(&mut self, spec: &SandboxSpec, path: &str) {
        let at = |f: &str| key_path(path, f);
        for (name, value) in spec.overrides() {
            if template::is_template(&value) {
                continue;
            }
            if let Err(m) = sandbox_step::check_policy_field(name, &value) {
                self.error(at(name), format!("`sandbox.{name}`: {m}"));
            }
        }
        let base = std::path::Path::new(&self.loaded.file)
            .parent()
            .map(std::path::Path::to_path_buf)
            .unwrap_or_default();
        let mut file_ok = true;
        if let Some(f) = &spec.policy {
            if template::is_template(f) {
                file_ok = false;
                self.error(
                    at("policy"),
                    "`sandbox.policy` is a file path, not a template",
                );
            } else if let Err(m) = sandbox_step::check_policy_file(&base.join(f)) {
                file_ok = false;
                self.error(at("policy"), format!("`sandbox.policy`: {m}"));
            }
        }
        if file_ok
            && !self.loaded.doc.policy.rules.is_empty()
            && let Some(f) = &spec.policy
        {
            // Fail closed: rules must see every host the sandbox reaches.
            for field in sandbox_step::hidden_network(&base.join(f)).unwrap_or_default() {
                let on_step = match field {
                    "net" => spec.net.is_some(),
                    _ => !spec.credentials.is_empty(),
                };
                if !on_step {
                    self.error(
                        at("policy"),
                        format!("`sandbox.policy`: the file's `{field}` gives the sandbox network access, which `policy.rules` cannot see in a file: write `{field}` on the step"),
                    );
                }
            }
        }
        self.check_sandbox_credentials(spec, path, &base, file_ok);
        if let Some(w) = &spec.workdir {
            if template::is_template(w) {
                self.error(
                    at("workdir"),
                    "`sandbox.workdir` is a directory path, not a template",
                );
            } else if !base.join(w).is_dir() {
                self.error(
                    at("workdir"),
                    format!("`sandbox.workdir`: `{w}` is not a directory (paths are relative to the workflow file)"),
                );
            }
        }
    }

    /// An unknown tool, with the ones there are (`for_agent`: the team tools too).
    pub(super) fn unknown_tool(&self, tool: &str, for_agent: bool) -> String {
        let team = if for_agent {
            &crate::team::TOOLS[..]
        } else {
            &[]
        };
        let names: Vec<&str> = self
            .env
            .tools
            .names()
            .filter(|n| *n != STEP_TOOL)
            .chain(team.iter().copied())
            .collect();
        format!(
            "unknown tool `{tool}`{} (available tools: {})",
            hint(tool, names.iter().copied()),
            list(names.iter().copied())
        )
    }

    pub(super) fn check_schema(&mut self, schema: &Value, path: String) {
        if !(schema.is_object() || schema.is_boolean()) {
            self.error(
                path,
                format!(
                    "a JSON Schema is a mapping (or true/false), not {}",
                    show(schema)
                ),
            );
            return;
        }
        if let Err(e) = jsonschema::validator_for(schema) {
            let at = e.instance_path.as_str();
            if let (true, Some(t)) = (at.ends_with("/type"), e.instance.as_str()) {
                const TYPES: [&str; 7] = [
                    "string", "number", "integer", "boolean", "array", "object", "null",
                ];
                self.error(
                    path,
                    format!(
                        "invalid JSON Schema at `{at}`: `{t}` is not a JSON type{}; use one of {}",
                        paren_hint(t, TYPES),
                        list(TYPES)
                    ),
                );
                return;
            }
            let where_ = if at.is_empty() {
                String::new()
            } else {
                format!(" at `{at}`")
            };
            self.error(path, format!("invalid JSON Schema{where_}: {e}"));
        }
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}
