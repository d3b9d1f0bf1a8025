//! What a document means: ids, kinds, references, control flow, templates. Every problem is
//! collected, each at its field path and position.

use std::collections::{HashMap, HashSet, VecDeque};

use baton_tools::sandbox_step::{self, STEP_TOOL};
use baton_types::flow::{Flow, Target, Unresolved};
use baton_types::graph::EdgeKind;
use baton_types::{
    END, HumanKind, InputType, SandboxCommand, SandboxSpec, Step, StepKind, WorkflowDoc,
};
use serde_json::Value;

use super::suggest::{closest, hint, list, paren_hint};
use super::{Diagnostic, Loaded, ValidationEnv, index_path, key_path};
use crate::template;

/// Most retries a step may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Most steps in one workflow, nested ones included.
pub const MAX_STEPS: usize = 10_000;

const KIND_FIELDS: &str =
    "`agent`, `tool`, `if`, `switch`, `parallel`, `map`, `steps`, `human`, `sandbox`";
const CONTEXT_ROOTS: [&str; 5] = ["inputs", "steps", "state", "run", "loop"];

/// Checks what the document means. Empty: the workflow is valid.
pub fn validate(loaded: &Loaded, env: &ValidationEnv) -> Vec<Diagnostic> {
    let mut v = Checker::new(loaded, env);
    v.run();
    let mut out = v.out;
    out.sort_by_key(|d| (d.line, d.column));
    out
}

struct Info<'d> {
    step: &'d Step,
    path: String,
    scope: usize,
    /// Item names of the maps whose body holds this step.
    items: Vec<String>,
}

struct Checker<'a, 'd> {
    loaded: &'d Loaded,
    doc: &'d WorkflowDoc,
    env: &'a ValidationEnv<'a>,
    infos: Vec<Info<'d>>,
    /// The document's control flow: scopes (numbered as `Info::scope`), successors, loops.
    flow: Flow<'d>,
    /// First step with each id.
    ids: HashMap<&'d str, usize>,
    children: Vec<Vec<usize>>,
    /// Control-flow successors inside each step's scope (valid targets only).
    succ: Vec<Vec<Target>>,
    /// The reverse of `succ`.
    preds: Vec<Vec<usize>>,
    /// For a step, the steps with a path to it (see `reaches`).
    reach_memo: std::cell::RefCell<HashMap<usize, Vec<u64>>>,
    out: Vec<Diagnostic>,
    globals: HashSet<String>,
}

impl<'a, 'd> Checker<'a, 'd> {
    fn new(loaded: &'d Loaded, env: &'a ValidationEnv<'a>) -> Self {
        let globals = template::environment()
            .globals()
            .map(|(k, _)| k.to_string())
            .collect();
        let mut c = Checker {
            loaded,
            doc: &loaded.doc,
            env,
            infos: Vec::new(),
            flow: Flow::build(&loaded.doc),
            ids: HashMap::new(),
            children: Vec::new(),
            succ: Vec::new(),
            preds: Vec::new(),
            reach_memo: std::cell::RefCell::new(HashMap::new()),
            out: Vec::new(),
            globals,
        };
        c.collect(&loaded.doc.steps, "steps", None, &[]);
        c
    }

    fn error(&mut self, path: impl Into<String>, message: impl Into<String>) {
        let d = self.loaded.diagnostic(path, message);
        self.out.push(d);
    }

    fn collect(
        &mut self,
        steps: &'d [Step],
        list_path: &str,
        container: Option<usize>,
        items: &[String],
    ) {
        for (index, step) in steps.iter().enumerate() {
            let me = self.infos.len();
            let path = index_path(list_path, index);
            // The flow numbers steps and scopes in this same order.
            let scope = self.flow.steps.get(me).map_or(0, |s| s.scope);
            self.infos.push(Info {
                step,
                path: path.clone(),
                scope,
                items: items.to_vec(),
            });
            self.children.push(Vec::new());
            if let Some(c) = container {
                self.children[c].push(me);
            }
            if let Some(branches) = &step.parallel {
                self.collect(branches, &key_path(&path, "parallel"), Some(me), items);
            }
            if let Some(body) = &step.steps {
                let mut inner = items.to_vec();
                if let Some(m) = &step.map {
                    inner.push(m.item.clone().unwrap_or_else(|| "item".into()));
                }
                self.collect(body, &key_path(&path, "steps"), Some(me), &inner);
            }
        }
    }

    fn run(&mut self) {
        if self.infos.len() > MAX_STEPS {
            // The flow checks grow with the square of the step count: refuse before them.
            self.error(
                "steps",
                format!(
                    "the workflow has {} steps (nested ones included); at most {MAX_STEPS} are allowed",
                    self.infos.len()
                ),
            );
            return;
        }
        self.check_header();
        self.check_ids();
        for i in 0..self.infos.len() {
            self.check_step(i);
        }
        self.build_flow();
        self.check_edges();
        for s in 0..self.flow.scopes.len() {
            self.check_reachability(s);
            self.check_loops(s);
        }
        self.check_agents();
        self.check_templates();
    }

    // ---- the document ------------------------------------------------------------------

    fn check_header(&mut self) {
        let doc = self.doc;
        if doc.version != 1 {
            self.error(
                "version",
                format!(
                    "unsupported `version: {}`; the only version of the format is 1",
                    doc.version
                ),
            );
        }
        if doc.name.trim().is_empty() {
            self.error("name", "the workflow's `name` is empty");
        }
        if doc.steps.is_empty() {
            self.error("steps", "the workflow has no steps");
        }
        for (name, input) in &doc.inputs {
            let path = key_path("inputs", name);
            if let Some(allowed) = &input.allowed {
                if allowed.is_empty() {
                    self.error(
                        key_path(&path, "enum"),
                        format!("input `{name}` has an empty `enum`: no value would be allowed"),
                    );
                }
                for (i, v) in allowed.iter().enumerate() {
                    if !type_matches(input.kind, v) {
                        self.error(
                            index_path(&key_path(&path, "enum"), i),
                            format!(
                                "{} in the `enum` of input `{name}` is not {}",
                                show(v),
                                type_phrase(input.kind)
                            ),
                        );
                    }
                }
            }
            if let Some(default) = &input.default {
                let dp = key_path(&path, "default");
                if !type_matches(input.kind, default) {
                    self.error(
                        dp,
                        format!(
                            "the default of input `{name}` must be {}, not {}",
                            type_phrase(input.kind),
                            show(default)
                        ),
                    );
                } else if let Some(allowed) = &input.allowed
                    && !allowed.is_empty()
                    && !allowed.contains(default)
                {
                    let shown: Vec<String> = allowed.iter().map(raw).collect();
                    self.error(dp, format!("the default of input `{name}` ({}) is not one of its allowed values: {}", raw(default), shown.join(", ")));
                }
            }
        }
        for (i, entry) in doc.policy.http_allow.iter().enumerate() {
            if let Err(why) = check_host_entry(entry) {
                self.error(
                    index_path("policy.http_allow", i),
                    format!("`{entry}` is not a `host` or `host:port`: {why}"),
                );
            }
        }
    }

    fn check_ids(&mut self) {
        for i in 0..self.infos.len() {
            let (id, path) = (self.infos[i].step.id.as_str(), self.infos[i].path.clone());
            let id_path = key_path(&path, "id");
            if id.is_empty() {
                self.error(id_path, "a step id cannot be empty");
                continue;
            }
            if let Some(bad) = id
                .chars()
                .find(|c| !(c.is_ascii_alphanumeric() || *c == '_' || *c == '-'))
            {
                self.error(
                    id_path.clone(),
                    format!(
                        "step id `{id}` contains {}; ids may only use letters, digits, `_` and `-`",
                        describe_char(bad)
                    ),
                );
            }
            if id == END {
                self.error(
                    id_path,
                    "`end` cannot be a step id: it is the target that ends a list of steps",
                );
                continue;
            }
            match self.ids.get(id) {
                Some(first) => {
                    let (line, col) = self.loaded.location(&self.infos[*first].path);
                    self.error(id_path, format!("duplicate step id `{id}` (first used at line {line}, column {col}); step ids are unique in the whole workflow"));
                }
                None => {
                    self.ids.insert(self.infos[i].step.id.as_str(), i);
                }
            }
        }
    }

    // ---- one step ----------------------------------------------------------------------

    fn check_step(&mut self, i: usize) {
        let step = self.infos[i].step;
        let path = self.infos[i].path.clone();
        let id = step.id.clone();
        let at = |f: &str| key_path(&path, f);
        let kinds = step.kinds();
        let kind = match kinds.as_slice() {
            [one] => Some(*one),
            [] => {
                let extra = if step.prompt.is_some() {
                    " (it has a `prompt`: is `agent` missing?)"
                } else {
                    ""
                };
                self.error(
                    path.clone(),
                    format!("step `{id}` has no kind: give it exactly one of {KIND_FIELDS}{extra}"),
                );
                None
            }
            many => {
                let names: Vec<&str> = many.iter().map(|k| k.name()).collect();
                self.error(
                    path.clone(),
                    format!(
                        "step `{id}` declares several kinds ({}); a step has exactly one",
                        list(names)
                    ),
                );
                None
            }
        };
        if let Some(kind) = kind {
            let kind_name = kind_phrase(kind);
            let only = |field: &str, wanted: &str| {
                format!("`{field}` only applies to {wanted}; step `{id}` is {kind_name}")
            };
            if step.prompt.is_some() && kind != StepKind::Agent {
                let mut m = only("prompt", "agent steps");
                if kind == StepKind::Human {
                    m.push_str(" (a human step's question goes in `human.prompt`)");
                }
                self.error(at("prompt"), m);
            }
            if step.with.is_some() && kind != StepKind::Tool {
                self.error(at("with"), only("with", "tool steps"));
            }
            if step.then.is_some() && kind != StepKind::Condition {
                self.error(at("then"), only("then", "`if` steps"));
            }
            if step.otherwise.is_some() && kind != StepKind::Condition {
                self.error(at("else"), only("else", "`if` steps"));
            }
            if step.join.is_some() && kind != StepKind::Parallel {
                self.error(at("join"), only("join", "parallel steps"));
            }
            if step.output.is_some() && kind != StepKind::Agent {
                self.error(at("output"), only("output", "agent steps"));
            }
            if step.max_concurrency.is_some() && !matches!(kind, StepKind::Parallel | StepKind::Map)
            {
                self.error(
                    at("max_concurrency"),
                    only("max_concurrency", "parallel and map steps"),
                );
            }
            match kind {
                StepKind::Condition if step.next.is_some() => {
                    self.error(at("next"), "`next` does not apply to an `if` step: use `then` and `else` (each defaults to the next step)".to_string());
                }
                StepKind::Switch if step.next.is_some() => {
                    self.error(at("next"), "`next` does not apply to a `switch` step: use the cases' `goto` and `default` (which defaults to the next step)".to_string());
                }
                StepKind::Agent if step.prompt.is_none() => {
                    self.error(path.clone(), format!("agent step `{id}` needs a `prompt`"));
                }
                StepKind::Map if step.steps.is_none() => {
                    self.error(
                        path.clone(),
                        format!("map step `{id}` needs `steps`: the sub-steps run for each item"),
                    );
                }
                StepKind::Map | StepKind::Group
                    if step.steps.as_ref().is_some_and(Vec::is_empty) =>
                {
                    self.error(
                        at("steps"),
                        format!("step `{id}` has an empty `steps` list"),
                    );
                }
                StepKind::Parallel if step.parallel.as_ref().is_some_and(Vec::is_empty) => {
                    self.error(
                        at("parallel"),
                        format!("parallel step `{id}` has no branches"),
                    );
                }
                StepKind::Switch if step.switch.as_ref().is_some_and(|s| s.cases.is_empty()) => {
                    self.error(
                        key_path(&at("switch"), "cases"),
                        format!("switch step `{id}` has no cases"),
                    );
                }
                _ => {}
            }
        }
        if let Some(agent) = &step.agent
            && !self.doc.agents.contains_key(agent)
        {
            let names: Vec<&str> = self.doc.agents.keys().map(String::as_str).collect();
            self.error(
                at("agent"),
                format!(
                    "unknown agent `{agent}`{} (defined agents: {})",
                    hint(agent, names.iter().copied()),
                    list(names.iter().copied())
                ),
            );
        }
        if let Some(spec) = &step.sandbox {
            self.check_sandbox(spec, &at("sandbox"));
        }
        if let Some(tool) = &step.tool {
            match self.env.tools.get(tool) {
                _ if tool == STEP_TOOL => {
                    self.error(at("tool"), format!("`{STEP_TOOL}` is what `sandbox:` steps run; write a `sandbox:` step instead (see docs/workflow-format.md)"));
                }
                None => {
                    let m = self.unknown_tool(tool);
                    self.error(at("tool"), m);
                }
                Some(t) => self.check_tool_arguments(tool, &t.spec().parameters, step, &path),
            }
        }
        if step.max_visits == Some(0) {
            self.error(at("max_visits"), "`max_visits` must be at least 1");
        }
        if step.max_concurrency == Some(0) {
            self.error(
                at("max_concurrency"),
                "`max_concurrency` must be at least 1",
            );
        }
        if step.timeout.is_some_and(|t| t.0.is_zero()) {
            self.error(at("timeout"), "`timeout` must be more than 0");
        }
        if let Some(r) = &step.retry {
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
        if let Some(m) = &step.map
            && let Some(name) = &m.item
        {
            if !is_identifier(name) {
                self.error(key_path(&at("map"), "as"), format!("`{name}` cannot name the item: use letters, digits and `_`, not starting with a digit"));
            } else if CONTEXT_ROOTS.contains(&name.as_str()) {
                self.error(key_path(&at("map"), "as"), format!("`{name}` cannot name the item: it would hide the template variable `{name}`"));
            }
        }
        if let Some(h) = &step.human
            && let Some(schema) = &h.schema
        {
            if h.kind == HumanKind::Approval {
                self.error(
                    key_path(&at("human"), "schema"),
                    "`human.schema` only applies to `kind: input`",
                );
            } else {
                self.check_schema(schema, key_path(&at("human"), "schema"));
            }
        }
        if let Some(schema) = step.output.as_ref().and_then(|o| o.schema.as_ref()) {
            self.check_schema(schema, key_path(&at("output"), "schema"));
        }
    }

    /// The argument names of `with` against the tool's parameter schema: required ones must be
    /// there, unknown ones are refused when the tool allows no others. (Values are templates,
    /// checked when the step runs.)
    fn check_tool_arguments(&mut self, tool: &str, params: &Value, step: &Step, path: &str) {
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
        if let Some(f) = &spec.policy {
            if template::is_template(f) {
                self.error(
                    at("policy"),
                    "`sandbox.policy` is a file path, not a template",
                );
            } else if let Err(m) = sandbox_step::check_policy_file(&base.join(f)) {
                self.error(at("policy"), format!("`sandbox.policy`: {m}"));
            }
        }
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

    fn unknown_tool(&self, tool: &str) -> String {
        let names: Vec<&str> = self.env.tools.names().filter(|n| *n != STEP_TOOL).collect();
        format!(
            "unknown tool `{tool}`{} (available tools: {})",
            hint(tool, names.iter().copied()),
            list(names.iter().copied())
        )
    }

    fn check_schema(&mut self, schema: &Value, path: String) {
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

    // ---- control flow ------------------------------------------------------------------

    /// Resolves a jump target through the flow; reports unknown targets and targets outside
    /// the step's list.
    fn target(&mut self, from: usize, target: &str, path: String, what: &str) -> Option<Target> {
        match self.flow.resolve(from, target) {
            Ok(t) => Some(t),
            Err(why) => {
                self.report_target(from, target, why, path, what);
                None
            }
        }
    }

    fn report_target(
        &mut self,
        from: usize,
        target: &str,
        why: Unresolved,
        path: String,
        what: &str,
    ) {
        let scope = self.infos[from].scope;
        match why {
            Unresolved::OtherList => {
                let here = self.scope_phrase(scope);
                self.error(path, format!("step `{target}` is not in the same list as step `{}` ({here}): {what} can only go to steps of that list, or `end` to leave it", self.infos[from].step.id));
            }
            Unresolved::Unknown => {
                let same: Vec<&str> = self.flow.scopes[scope]
                    .members
                    .iter()
                    .map(|m| self.infos[*m].step.id.as_str())
                    .collect();
                let all: Vec<&str> = self.flow.ids.keys().copied().collect();
                let suggestion = closest(target, same.iter().copied())
                    .or_else(|| closest(target, all.iter().copied()));
                let h = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(path, format!("{what} refers to unknown step `{target}`{h}"));
            }
        }
    }

    fn scope_phrase(&self, scope: usize) -> String {
        match self.flow.scopes[scope].container {
            None => "the top-level steps".into(),
            Some(c) => {
                let s = self.infos[c].step;
                if self.flow.scopes[scope].parallel {
                    format!("the branches of `{}`", s.id)
                } else if s.map.is_some() {
                    format!("the body of map `{}`", s.id)
                } else {
                    format!("the steps of `{}`", s.id)
                }
            }
        }
    }

    /// Reports the jump targets the flow could not resolve, at the field that names them,
    /// and takes the flow's successors.
    fn build_flow(&mut self) {
        let unresolved: Vec<(usize, EdgeKind, usize, &'d str, Unresolved)> = self
            .flow
            .edges
            .iter()
            .filter_map(|e| Some((e.from, e.kind, e.index, e.to, e.target.err()?)))
            .collect();
        for (from, kind, index, to, why) in unresolved {
            let path = self.infos[from].path.clone();
            let (path, what) = match kind {
                EdgeKind::Then => (key_path(&path, "then"), "`then`"),
                EdgeKind::Else => (key_path(&path, "else"), "`else`"),
                EdgeKind::Case => {
                    let cases = key_path(&key_path(&path, "switch"), "cases");
                    (key_path(&index_path(&cases, index), "goto"), "`goto`")
                }
                EdgeKind::Default => (key_path(&key_path(&path, "switch"), "default"), "`default`"),
                EdgeKind::Next => (key_path(&path, "next"), "`next`"),
                EdgeKind::OnError => (key_path(&path, "on_error"), "`on_error: goto`"),
                EdgeKind::Explicit => (key_path(&index_path("edges", index), "to"), "edge target"),
                EdgeKind::Sequence => continue,
            };
            self.report_target(from, to, why, path, what);
        }
        // `then`/`else` on other kinds were reported already; their targets are still checked.
        for i in 0..self.infos.len() {
            let step = self.infos[i].step;
            if step.kind() != Some(StepKind::Condition) && step.kind().is_some() {
                for (field, t) in [("then", &step.then), ("else", &step.otherwise)] {
                    if let Some(t) = t {
                        let path = key_path(&self.infos[i].path, field);
                        self.target(i, t, path, &format!("`{field}`"));
                    }
                }
            }
        }
        self.succ = self.flow.successors();
    }

    fn check_edges(&mut self) {
        for (n, edge) in self.doc.edges.iter().enumerate() {
            let ep = index_path("edges", n);
            // Targets are the flow's (see `build_flow`).
            let Some(from) = self.ids.get(edge.from.as_str()).copied() else {
                let all: Vec<&str> = self.ids.keys().copied().collect();
                self.error(
                    key_path(&ep, "from"),
                    format!(
                        "edge from unknown step `{}`{}",
                        edge.from,
                        hint(&edge.from, all.iter().copied())
                    ),
                );
                continue;
            };
            // The engine takes `next` before any edge: such an edge is dead.
            if let Some(next) = &self.infos[from].step.next {
                self.error(
                    key_path(&ep, "from"),
                    format!(
                        "this edge is never taken: step `{}` has `next: {next}`, which always wins over edges; remove one of them",
                        edge.from
                    ),
                );
            }
        }
    }

    fn check_reachability(&mut self, scope: usize) {
        let phrase = self.scope_phrase(scope);
        for m in self.flow.unreachable(scope, &self.succ) {
            let id = self.infos[m].step.id.clone();
            let path = self.infos[m].path.clone();
            self.error(path, format!("step `{id}` can never run: nothing leads to it from the start of {phrase} (a step runs after the one before it, unless that one jumps away with `next`, `then`/`else`, `switch` or `end`)"));
        }
    }

    /// Every cycle must hold a step with `max_visits`: remove those steps, and whatever cycle
    /// is left is a loop that could run forever.
    fn check_loops(&mut self, scope: usize) {
        let bounded = |m: usize| self.infos[m].step.max_visits.is_some();
        let found: Vec<(String, String)> = self
            .flow
            .unbounded_loops(scope, &self.succ, &bounded)
            .into_iter()
            .map(|cycle| {
                let names: Vec<String> = cycle
                    .iter()
                    .map(|n| format!("`{}`", self.infos[*n].step.id))
                    .collect();
                let path = self.infos[cycle[0]].path.clone();
                (path, format!("loop without `max_visits`: {}; give one of these steps `max_visits` so the loop cannot run forever", names.join(" → ")))
            })
            .collect();
        for (path, message) in found {
            self.error(path, message);
        }
    }

    // ---- agents ------------------------------------------------------------------------

    fn check_agents(&mut self) {
        for (name, agent) in &self.doc.agents {
            let ap = key_path("agents", name);
            if let Some(models) = self.env.models {
                match baton_llm::config::expand_env(&agent.model) {
                    Ok(model) => {
                        if let Err(e) = models.check(&model) {
                            self.error(key_path(&ap, "model"), format!("agent `{name}`: {e}"));
                        }
                    }
                    Err(m) => self.error(key_path(&ap, "model"), m),
                }
            }
            for (i, tool) in agent.tools.iter().enumerate() {
                if tool == STEP_TOOL {
                    self.error(
                        index_path(&key_path(&ap, "tools"), i),
                        format!("agents cannot use `{STEP_TOOL}`: it runs with the policy of a `sandbox:` step; give agents `sandbox.exec`"),
                    );
                } else if !self.env.tools.contains(tool) {
                    let m = self.unknown_tool(tool);
                    self.error(index_path(&key_path(&ap, "tools"), i), m);
                }
            }
            if let Some(t) = agent.temperature
                && !(0.0..=2.0).contains(&t)
            {
                self.error(
                    key_path(&ap, "temperature"),
                    format!("`temperature` must be between 0 and 2, not {t}"),
                );
            }
            if let Some(schema) = agent.output.as_ref().and_then(|o| o.schema.as_ref()) {
                self.check_schema(schema, key_path(&key_path(&ap, "output"), "schema"));
            }
        }
    }

    // ---- templates and expressions -----------------------------------------------------

    fn check_templates(&mut self) {
        self.preds = self.flow.predecessors();
        for i in 0..self.infos.len() {
            let step = self.infos[i].step;
            let path = self.infos[i].path.clone();
            let ctx = RefCtx {
                reader: Some(i),
                after: None,
                items: self.infos[i].items.clone(),
            };
            if let Some(p) = &step.prompt {
                self.check_text(p, key_path(&path, "prompt"), &ctx, Syntax::Template);
            }
            if let Some(c) = &step.condition {
                self.check_text(c, key_path(&path, "if"), &ctx, Syntax::Expression);
            }
            if let Some(sw) = &step.switch {
                for (n, case) in sw.cases.iter().enumerate() {
                    let cp = index_path(&key_path(&key_path(&path, "switch"), "cases"), n);
                    self.check_text(&case.when, key_path(&cp, "when"), &ctx, Syntax::Expression);
                }
            }
            if let Some(m) = &step.map {
                self.check_text(
                    &m.over,
                    key_path(&key_path(&path, "map"), "over"),
                    &ctx,
                    Syntax::Expression,
                );
            }
            if let Some(h) = &step.human {
                self.check_text(
                    &h.prompt,
                    key_path(&key_path(&path, "human"), "prompt"),
                    &ctx,
                    Syntax::Template,
                );
            }
            if let Some(with) = &step.with {
                for (k, v) in with {
                    self.check_value(v, key_path(&key_path(&path, "with"), k), &ctx, 0);
                }
            }
            if let Some(spec) = &step.sandbox {
                let sp = key_path(&path, "sandbox");
                match &spec.command {
                    SandboxCommand::Shell(c) => {
                        self.check_text(c, key_path(&sp, "command"), &ctx, Syntax::Template);
                    }
                    SandboxCommand::Argv(v) => {
                        for (n, a) in v.iter().enumerate() {
                            let ap = index_path(&key_path(&sp, "command"), n);
                            self.check_text(a, ap, &ctx, Syntax::Template);
                        }
                    }
                }
                for (k, v) in &spec.files {
                    self.check_text(
                        v,
                        key_path(&key_path(&sp, "files"), k),
                        &ctx,
                        Syntax::Template,
                    );
                }
                for (k, v) in &spec.env {
                    self.check_text(
                        v,
                        key_path(&key_path(&sp, "env"), k),
                        &ctx,
                        Syntax::Template,
                    );
                }
                if let Some(i) = &spec.stdin {
                    self.check_text(i, key_path(&sp, "stdin"), &ctx, Syntax::Template);
                }
                for (name, value) in spec.overrides() {
                    self.check_text(&value, key_path(&sp, name), &ctx, Syntax::Template);
                }
            }
        }
        let anywhere = RefCtx {
            reader: None,
            after: None,
            items: Vec::new(),
        };
        for (name, agent) in &self.doc.agents {
            if let Some(ins) = &agent.instructions {
                self.check_text(
                    ins,
                    key_path(&key_path("agents", name), "instructions"),
                    &anywhere,
                    Syntax::Template,
                );
            }
        }
        for (name, t) in &self.doc.outputs {
            self.check_text(t, key_path("outputs", name), &anywhere, Syntax::Template);
        }
        for (n, edge) in self.doc.edges.iter().enumerate() {
            let Some(when) = &edge.when else { continue };
            let wp = key_path(&index_path("edges", n), "when");
            match self.ids.get(edge.from.as_str()).copied() {
                Some(from) => {
                    // Evaluated once `from` has ended: it and what it contains can be read.
                    let ctx = RefCtx {
                        reader: Some(from),
                        after: Some(from),
                        items: self.infos[from].items.clone(),
                    };
                    self.check_text(when, wp, &ctx, Syntax::Expression);
                }
                None => self.check_text(when, wp, &anywhere, Syntax::Expression),
            }
        }
    }

    fn check_value(&mut self, v: &Value, path: String, ctx: &RefCtx, depth: usize) {
        match v {
            Value::String(s) => self.check_text(s, path, ctx, Syntax::Template),
            Value::Array(a) if depth < super::MAX_DEPTH => {
                for (i, x) in a.iter().enumerate() {
                    self.check_value(x, index_path(&path, i), ctx, depth + 1);
                }
            }
            Value::Object(o) if depth < super::MAX_DEPTH => {
                for (k, x) in o {
                    self.check_value(x, key_path(&path, k), ctx, depth + 1);
                }
            }
            _ => {}
        }
    }

    fn check_text(&mut self, src: &str, path: String, ctx: &RefCtx, syntax: Syntax) {
        let (checked, refs) = match syntax {
            Syntax::Template => (
                template::check_template(src),
                template::template_references(src),
            ),
            Syntax::Expression => (
                template::check_expression(src),
                template::expression_references(src),
            ),
        };
        if let Err(e) = checked {
            let what = match syntax {
                Syntax::Template => "template",
                Syntax::Expression => "expression",
            };
            let extra = if syntax == Syntax::Expression && src.contains("{{") {
                " (conditions are expressions: write them without `{{ }}`)"
            } else {
                ""
            };
            let mut d = self
                .loaded
                .diagnostic(path, format!("invalid {what}: {e}{extra}"));
            if let Some((line, column)) = self.block_scalar_line(d.line, &e) {
                d.line = line;
                d.column = column;
            }
            self.out.push(d);
            return;
        }
        for r in refs {
            if let Some(m) = self.check_reference(&r, ctx) {
                self.error(path.clone(), m);
            }
        }
    }

    fn check_reference(&self, reference: &str, ctx: &RefCtx) -> Option<String> {
        let mut parts = reference.split('.');
        let root = parts.next().unwrap_or_default();
        let second = parts.next();
        match root {
            "steps" => {
                let x = second?;
                let Some(&target) = self.ids.get(x) else {
                    let all: Vec<&str> = self.ids.keys().copied().collect();
                    let dashed = all
                        .iter()
                        .find(|id| id.starts_with(&format!("{x}-")))
                        .map(|id| format!(" (an id with `-` is read as `steps[\"{id}\"]`)"));
                    let h = dashed.unwrap_or_else(|| hint(x, all.iter().copied()));
                    return Some(format!("`{reference}` refers to unknown step `{x}`{h}"));
                };
                let after = ctx
                    .after
                    .is_some_and(|a| target == a || self.is_descendant(target, a));
                match ctx.reader {
                    Some(reader) if !after && !self.can_read(reader, target) => {
                        let reader_id = &self.infos[reader].step.id;
                        let why = if target == reader {
                            "a step cannot read its own output unless it is in a loop".to_string()
                        } else if self.is_descendant(target, reader) {
                            format!("`{x}` runs inside step `{reader_id}`")
                        } else {
                            format!("no path leads from `{x}` to `{reader_id}`")
                        };
                        Some(format!(
                            "`{reference}`: step `{x}` cannot have run before step `{reader_id}` ({why})"
                        ))
                    }
                    _ => None,
                }
            }
            "inputs" => {
                let y = second?;
                if self.doc.inputs.contains_key(y) {
                    return None;
                }
                let names: Vec<&str> = self.doc.inputs.keys().map(String::as_str).collect();
                Some(format!(
                    "`{reference}` refers to undeclared input `{y}`{} (declared inputs: {})",
                    hint(y, names.iter().copied()),
                    list(names.iter().copied())
                ))
            }
            r if CONTEXT_ROOTS.contains(&r)
                || ctx.items.iter().any(|i| i == r)
                || self.globals.contains(r) =>
            {
                None
            }
            other => {
                let mut known: Vec<&str> = CONTEXT_ROOTS.to_vec();
                known.extend(ctx.items.iter().map(String::as_str));
                let h = paren_hint(other, known.iter().copied());
                let item_note = match ctx.items.as_slice() {
                    [] => String::new(),
                    items => format!(
                        " and the map item ({})",
                        list(items.iter().map(String::as_str))
                    ),
                };
                Some(format!(
                    "unknown name `{other}`{h}; templates can read `inputs`, `steps`, `state`, `run`{item_note}"
                ))
            }
        }
    }

    /// A template written as a block scalar (`prompt: |`) starts on the line after its key:
    /// an error on its line N is on the file's line `key + N`. Other strings keep the key's
    /// position.
    fn block_scalar_line(&self, key_line: u32, error: &str) -> Option<(u32, u32)> {
        let n: u32 = error
            .rsplit_once("(template line ")?
            .1
            .split(')')
            .next()?
            .parse()
            .ok()?;
        let source_line = self
            .loaded
            .source
            .lines()
            .nth(usize::try_from(key_line).ok()?.checked_sub(1)?)?;
        let after_key = source_line
            .split_once(": ")
            .map(|(_, v)| v)
            .or_else(|| source_line.strip_suffix(':').map(|_| ""))?;
        if !after_key.trim_start().starts_with(['|', '>']) {
            return None;
        }
        let line = key_line.checked_add(n)?;
        let text = self
            .loaded
            .source
            .lines()
            .nth(usize::try_from(line).ok()?.checked_sub(1)?)?;
        let column = text.chars().take_while(|c| *c == ' ').count() + 1;
        Some((line, super::to_u32(column)))
    }

    /// Whether `ancestor` encloses `node` (at any depth).
    fn is_descendant(&self, node: usize, ancestor: usize) -> bool {
        let mut n = node;
        while let Some(c) = self.flow.scopes[self.infos[n].scope].container {
            if c == ancestor {
                return true;
            }
            n = c;
        }
        false
    }

    /// Whether step `reader` may read the output of step `target`: some enclosing step of
    /// `target` (or `target` itself) has a path to `reader` (or to one of `reader`'s
    /// enclosing steps) in their common list. Parallel siblings have no such path.
    fn can_read(&self, reader: usize, target: usize) -> bool {
        // `target` and its enclosing steps, by the list they are in.
        let mut by_scope: HashMap<usize, usize> = HashMap::new();
        let mut t = target;
        loop {
            by_scope.insert(self.infos[t].scope, t);
            match self.flow.scopes[self.infos[t].scope].container {
                Some(c) => t = c,
                None => break,
            }
        }
        let mut r = reader;
        loop {
            let scope = self.infos[r].scope;
            if let Some(&x) = by_scope.get(&scope)
                && self.reaches(x, r)
            {
                return true;
            }
            match self.flow.scopes[scope].container {
                Some(c) => r = c,
                None => return false,
            }
        }
    }

    /// Whether a path of at least one edge leads from `from` to `to` (same list). The steps
    /// that reach `to` are found once per `to`, as a bit set, and only for steps whose
    /// templates name other steps.
    fn reaches(&self, from: usize, to: usize) -> bool {
        let mut memo = self.reach_memo.borrow_mut();
        let bits = memo.entry(to).or_insert_with(|| {
            let mut bits = vec![0u64; self.infos.len().div_ceil(64)];
            let mut queue: VecDeque<usize> = self.preds[to].iter().copied().collect();
            while let Some(p) = queue.pop_front() {
                let (word, bit) = (p / 64, 1u64 << (p % 64));
                if bits[word] & bit != 0 {
                    continue;
                }
                bits[word] |= bit;
                queue.extend(self.preds[p].iter().copied());
            }
            bits
        });
        bits.get(from / 64)
            .is_some_and(|w| w & (1u64 << (from % 64)) != 0)
    }
}

struct RefCtx {
    /// The step whose text it is; `None`: any step may be named (outputs, instructions).
    reader: Option<usize>,
    /// A step that has ended when the text is evaluated (an edge's `from`).
    after: Option<usize>,
    items: Vec<String>,
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Syntax {
    Template,
    Expression,
}

fn type_matches(t: InputType, v: &Value) -> bool {
    match t {
        InputType::String => v.is_string(),
        InputType::Number => v.is_number(),
        InputType::Integer => {
            v.is_i64() || v.is_u64() || v.as_f64().is_some_and(|f| f.fract() == 0.0)
        }
        InputType::Boolean => v.is_boolean(),
        InputType::Array => v.is_array(),
        InputType::Object => v.is_object(),
    }
}

fn type_phrase(t: InputType) -> &'static str {
    match t {
        InputType::String => "a string",
        InputType::Number => "a number",
        InputType::Integer => "an integer",
        InputType::Boolean => "true or false",
        InputType::Array => "a list",
        InputType::Object => "a mapping",
    }
}

fn kind_phrase(k: StepKind) -> &'static str {
    match k {
        StepKind::Agent => "an agent step",
        StepKind::Tool => "a tool step",
        StepKind::Condition => "an `if` step",
        StepKind::Switch => "a `switch` step",
        StepKind::Parallel => "a parallel step",
        StepKind::Map => "a map step",
        StepKind::Group => "a `steps` group",
        StepKind::Human => "a human step",
        StepKind::Sandbox => "a sandbox step",
    }
}

/// A value with its type, for "must be X, not ...": "a string (`x`)", "a list", ...
fn show(v: &Value) -> String {
    match v {
        Value::Object(_) => "a mapping".into(),
        Value::Array(_) => "a list".into(),
        Value::Null => "empty (null)".into(),
        Value::String(s) => format!("a string (`{s}`)"),
        Value::Number(n) => format!("a number (`{n}`)"),
        Value::Bool(b) => format!("`{b}`"),
    }
}

/// A value as written: `x`, `3`, `[1,2]`.
fn raw(v: &Value) -> String {
    match v {
        Value::String(s) => format!("`{s}`"),
        other => format!("`{other}`"),
    }
}

fn describe_char(c: char) -> String {
    if c == ' ' {
        "a space".into()
    } else {
        format!("`{}`", c.escape_default())
    }
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// `host` or `host:port`; IPv6 addresses in brackets.
fn check_host_entry(entry: &str) -> Result<(), String> {
    if entry.contains("://") || entry.contains('/') {
        return Err("write the host alone, without a scheme or path (e.g. `api.example.com` or `localhost:8080`)".into());
    }
    if entry.trim() != entry || entry.is_empty() {
        return Err("it is empty or has spaces around it".into());
    }
    let (host, port) = if let Some(rest) = entry.strip_prefix('[') {
        let Some((addr, after)) = rest.split_once(']') else {
            return Err("an IPv6 address needs its closing `]`".into());
        };
        if addr.parse::<std::net::Ipv6Addr>().is_err() {
            return Err(format!("`{addr}` is not an IPv6 address"));
        }
        match after {
            "" => return Ok(()),
            p => match p.strip_prefix(':') {
                Some(p) => (None, Some(p)),
                None => return Err("only `:port` may follow `]`".into()),
            },
        }
    } else {
        match entry.rsplit_once(':') {
            Some((h, p)) => (Some(h), Some(p)),
            None => (Some(entry), None),
        }
    };
    if let Some(p) = port {
        match p.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) && p.bytes().all(|b| b.is_ascii_digit()) => {}
            _ => return Err(format!("`{p}` is not a port (1 to 65535)")),
        }
    }
    if let Some(h) = host {
        if h.is_empty() || h.len() > 253 {
            return Err("the host name is empty or too long".into());
        }
        for label in h.split('.') {
            let ok = !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                && !label.starts_with('-')
                && !label.ends_with('-');
            if !ok {
                return Err(format!(
                    "`{label}` is not a valid part of a host name (letters, digits and `-`, separated by dots)"
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::load::ValidationEnv;

    fn problems(yaml: &str) -> Vec<String> {
        let loaded = match super::super::load_bytes("w.yaml", yaml.as_bytes()) {
            Ok(l) => l,
            Err(d) => {
                return d
                    .into_iter()
                    .map(|d| format!("load: {}", d.message))
                    .collect();
            }
        };
        let tools = baton_tools::Registry::with_builtins();
        let env = ValidationEnv {
            tools: &tools,
            models: None,
        };
        validate(&loaded, &env)
            .into_iter()
            .map(|d| format!("{} @ {}", d.message, d.path))
            .collect()
    }

    const HEAD: &str = "version: 1\nname: t\n";

    #[test]
    fn visibility_follows_control_flow() {
        // A step reading itself outside a loop, and a map reading its own body.
        let p = problems(&format!(
            "{HEAD}steps:\n  - {{ id: a, tool: echo, with: {{ x: '{{{{ steps.a.output }}}}' }} }}\n  - id: m\n    map: {{ over: steps.w.output }}\n    steps:\n      - {{ id: w, tool: echo, with: {{ x: '{{{{ item }}}} {{{{ loop.index }}}} {{{{ steps.a.output }}}}' }} }}\n"
        ));
        assert_eq!(p.len(), 2, "{p:?}");
        assert!(
            p[0].contains("a step cannot read its own output unless it is in a loop"),
            "{p:?}"
        );
        assert!(p[1].contains("`w` runs inside step `m`"), "{p:?}");
        // In a loop, a step may read itself and the steps after it.
        let p = problems(&format!(
            "{HEAD}steps:\n  - {{ id: a, tool: echo, max_visits: 2, with: {{ x: '{{{{ steps.a.output }}}} {{{{ steps.b.output }}}}' }} }}\n  - {{ id: b, tool: echo, next: a }}\n"
        ));
        assert!(p.is_empty(), "{p:?}");
        // Groups: their steps see what came before the group; later steps see inside it.
        let p = problems(&format!(
            "{HEAD}steps:\n  - {{ id: a, tool: echo }}\n  - id: g\n    steps:\n      - {{ id: b, tool: echo, with: {{ x: '{{{{ steps.a.output }}}}' }} }}\n  - {{ id: c, tool: echo, with: {{ x: '{{{{ steps.b.output }}}}' }} }}\n"
        ));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn block_template_errors_point_at_their_line() {
        let yaml = format!(
            "{HEAD}steps:\n  - id: a\n    tool: echo\n    with:\n      text: |\n        fine {{{{ x is defined }}}}\n        broken {{{{ x\n"
        );
        let loaded = crate::load::load_bytes("w.yaml", yaml.as_bytes()).unwrap();
        let tools = baton_tools::Registry::with_builtins();
        let d = validate(
            &loaded,
            &ValidationEnv {
                tools: &tools,
                models: None,
            },
        );
        assert_eq!(d.len(), 1, "{d:?}");
        assert!(d[0].message.contains("(template line 2)"), "{}", d[0]);
        assert_eq!((d[0].line, d[0].column), (9, 9), "{}", d[0]);
    }

    #[test]
    fn big_workflows_validate_quickly_or_are_refused() {
        // A 5,000-step chain where every step reads the one before: every read is checked.
        let mut yaml = format!("{HEAD}steps:\n  - {{ id: s0, tool: echo }}\n");
        for i in 1..5000 {
            yaml.push_str(&format!(
                "  - {{ id: s{i}, tool: echo, with: {{ x: '{{{{ steps.s{}.output }}}}' }} }}\n",
                i - 1
            ));
        }
        let started = std::time::Instant::now();
        assert_eq!(problems(&yaml), Vec::<String>::new());
        assert!(
            started.elapsed() < std::time::Duration::from_secs(60),
            "{:?}",
            started.elapsed()
        );
        let mut yaml = format!("{HEAD}steps:\n");
        for i in 0..=MAX_STEPS {
            yaml.push_str(&format!("  - {{ id: s{i}, tool: echo }}\n"));
        }
        let p = problems(&yaml);
        assert_eq!(
            p,
            vec![format!(
                "the workflow has {} steps (nested ones included); at most {MAX_STEPS} are allowed @ steps",
                MAX_STEPS + 1
            )]
        );
    }

    #[test]
    fn map_item_names() {
        let p = problems(&format!(
            "{HEAD}steps:\n  - id: m\n    map: {{ over: '[1]', as: file }}\n    steps:\n      - {{ id: w, tool: echo, with: {{ x: '{{{{ file }}}} {{{{ item }}}}' }} }}\n"
        ));
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(p[0].starts_with("unknown name `item`"), "{p:?}");
        assert!(p[0].contains("the map item (`file`)"), "{p:?}");
        let p = problems(&format!(
            "{HEAD}steps:\n  - id: m\n    map: {{ over: '[1]', as: steps }}\n    steps: [{{ id: w, tool: echo }}]\n"
        ));
        assert_eq!(
            p,
            vec![
                "`steps` cannot name the item: it would hide the template variable `steps` @ steps[0].map.as"
            ]
        );
    }

    #[test]
    fn loops_through_max_visits_are_fine() {
        let looped = |extra: &str| {
            problems(&format!(
                "{HEAD}steps:\n  - {{ id: a, tool: echo{extra} }}\n  - {{ id: b, tool: echo, next: a }}\n"
            ))
        };
        assert_eq!(looped(", max_visits: 3"), Vec::<String>::new());
        let p = looped("");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].starts_with("loop without `max_visits`: `a` → `b` → `a`"),
            "{p:?}"
        );
    }

    #[test]
    fn parallel_branches_all_start() {
        let p = problems(&format!(
            "{HEAD}steps:\n  - id: p\n    parallel:\n      - {{ id: a, tool: echo }}\n      - {{ id: b, tool: echo }}\n    join: {{ strategy: any }}\n  - {{ id: c, tool: echo, with: {{ x: '{{{{ steps.a.output }}}} {{{{ steps.b.output }}}}' }} }}\n"
        ));
        assert!(p.is_empty(), "{p:?}");
    }

    #[test]
    fn host_entries() {
        assert!(check_host_entry("example.com").is_ok());
        assert!(check_host_entry("127.0.0.1:8080").is_ok());
        assert!(check_host_entry("[::1]:80").is_ok());
        assert!(check_host_entry("localhost").is_ok());
        assert!(check_host_entry("https://example.com").is_err());
        assert!(check_host_entry("example.com:99999").is_err());
        assert!(check_host_entry("exa mple.com").is_err());
        assert!(check_host_entry("-bad.com").is_err());
        assert!(check_host_entry("").is_err());
    }
}
