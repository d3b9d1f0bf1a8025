//! A workflow compiled for execution: steps flattened into indexed nodes grouped in scopes
//! (the top-level sequence, each parallel branch, each `steps:` body), templates parsed once.
//! Where control goes after each node comes from the document's [`Flow`] (the successors
//! validation checked), resolved to node indexes once; the kind of each node says what runs
//! it (the engine itself for `state.set`, the `sandbox.step` tool for `sandbox:` steps).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use baton_types::flow::{Edge, Flow, Target};
use baton_types::graph::EdgeKind;
use baton_types::{
    HumanKind, JoinStrategy, MapStep, OnError, RetrySpec, SandboxCommand, SandboxSpec, Scalar,
    Step, StepKind, WorkflowDoc,
};
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::template;

pub type NodeIdx = u32;
pub type ScopeIdx = u32;

/// The root scope: the workflow's top-level steps.
pub const ROOT: ScopeIdx = 0;

/// The tool name a `state.set` step is written with (the engine runs it itself).
pub const STATE_SET: &str = "state.set";

#[derive(Debug, Clone)]
pub enum NodeKind {
    Agent {
        agent: String,
    },
    Tool {
        name: String,
    },
    /// `tool: state.set`: the engine sets the keys itself, logged before the step ends.
    StateSet,
    /// A `sandbox:` step: a call of the `sandbox.step` tool with the step's settings.
    Sandbox,
    Condition,
    Switch,
    Parallel {
        branches: Vec<ScopeIdx>,
        strategy: JoinStrategy,
    },
    Map {
        body: ScopeIdx,
        item: String,
    },
    Group {
        body: ScopeIdx,
    },
    Human,
}

impl NodeKind {
    /// The kind's name, as metrics and traces label steps (`agent`, `tool`, `sandbox`...).
    pub fn as_str(&self) -> &'static str {
        match self {
            NodeKind::Agent { .. } => "agent",
            NodeKind::Tool { .. } => "tool",
            NodeKind::StateSet => "state_set",
            NodeKind::Sandbox => "sandbox",
            NodeKind::Condition => "condition",
            NodeKind::Switch => "switch",
            NodeKind::Parallel { .. } => "parallel",
            NodeKind::Map { .. } => "map",
            NodeKind::Group { .. } => "group",
            NodeKind::Human => "human",
        }
    }
}

/// Where a sequence goes after a node: the node to run next, or `None` to end the list.
pub type Goto = Option<NodeIdx>;

/// How a condition or a switch picks the node after it.
#[derive(Debug, Clone, Default)]
pub enum Branches {
    #[default]
    None,
    /// `if`: `then` when the expression holds, else `otherwise`.
    Condition {
        expr: String,
        then: Goto,
        otherwise: Goto,
    },
    /// `switch`: the first case whose expression holds, else `default`.
    Switch {
        cases: Vec<(String, Goto)>,
        default: Goto,
    },
}

/// What a failure that is not retried does.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Recovery {
    #[default]
    Fail,
    /// Go on as if the step gave `null`.
    Continue,
    Goto(Goto),
}

#[derive(Debug)]
pub struct Node {
    pub idx: NodeIdx,
    pub id: String,
    pub scope: ScopeIdx,
    pub kind: NodeKind,
    pub step: Step,
    /// The next node of the same list (none at the end of a list and in parallel branches).
    pub seq_next: Option<NodeIdx>,
    /// An explicit `next:`.
    pub next: Option<Goto>,
    /// Explicit `edges:` leaving this node, in document order: (condition, target).
    pub edges: Vec<(Option<String>, Goto)>,
    pub branches: Branches,
    pub recovery: Recovery,
    pub retry: Option<RetrySpec>,
    pub max_visits: Option<u32>,
    pub max_concurrency: Option<u32>,
    /// A human step's kind.
    pub human: HumanKind,
    /// Tool, `state.set` and sandbox arguments, unrendered (an empty object when none).
    pub args: Value,
    /// Compiled output schema (agent steps), with how many re-asks are allowed.
    pub output_schema: Option<(Value, u32)>,
    /// Whether `prompt` needs rendering.
    pub prompt_is_template: bool,
}

impl Node {
    /// A human step's settings.
    pub fn human_spec(&self) -> Option<&baton_types::HumanSpec> {
        match &self.step.kind {
            StepKind::Human(h) => Some(h),
            _ => None,
        }
    }

    /// A tool step's arguments, unrendered (an empty object when there are none).
    pub fn tool_args(&self) -> &Value {
        &self.args
    }

    /// An agent step's prompt (empty for other kinds).
    pub fn prompt(&self) -> &str {
        match &self.step.kind {
            StepKind::Agent(a) => &a.prompt,
            _ => "",
        }
    }

    /// The id of the node `goto` names (`None`: the end of the list), as events name it.
    pub fn goto_id(program: &Program, goto: Goto) -> Option<String> {
        goto.map(|n| program.node(n).id.clone())
    }
}

#[derive(Debug, Default)]
pub struct Scope {
    pub nodes: Vec<NodeIdx>,
    /// The parallel/map/group node owning this scope (none for the root).
    pub owner: Option<NodeIdx>,
}

/// A compiled workflow.
pub struct Program {
    pub doc: WorkflowDoc,
    /// The folder of the workflow file (scripted fixtures are found from it).
    pub base_dir: PathBuf,
    pub nodes: Vec<Node>,
    pub scopes: Vec<Scope>,
    pub by_id: HashMap<String, NodeIdx>,
    pub env: Environment<'static>,
    /// Some limit exists (the workflow's `budget` or an agent's): only then is spend folded
    /// and checked (see `machine/budget.rs`).
    pub budgeted: bool,
    /// The workflow's `policy.rules`, compiled (`None`: it has none, and nothing is checked).
    pub policy: Option<crate::policy::Rules>,
}

impl std::fmt::Debug for Program {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Program")
            .field("name", &self.doc.name)
            .field("nodes", &self.nodes.len())
            .finish()
    }
}

/// The arguments of the `sandbox.step` call a sandbox step makes. Strings stay templates
/// (rendered per attempt); `workdir` and `policy` are paths relative to the workflow's folder.
fn sandbox_args(spec: &SandboxSpec, base_dir: &Path) -> Map<String, Value> {
    let mut a = Map::new();
    let command = match &spec.command {
        SandboxCommand::Shell(s) => Value::String(s.clone()),
        SandboxCommand::Argv(v) => Value::Array(v.iter().cloned().map(Value::String).collect()),
    };
    a.insert("command".into(), command);
    let texts = |m: &indexmap::IndexMap<String, String>| -> Value {
        Value::Object(
            m.iter()
                .map(|(k, v)| (k.clone(), Value::String(v.clone())))
                .collect(),
        )
    };
    if !spec.files.is_empty() {
        a.insert("files".into(), texts(&spec.files));
    }
    if !spec.env.is_empty() {
        a.insert("env".into(), texts(&spec.env));
    }
    if let Some(i) = &spec.stdin {
        a.insert("stdin".into(), Value::String(i.clone()));
    }
    let path = |p: &str| Value::String(base_dir.join(p).display().to_string());
    if let Some(w) = &spec.workdir {
        a.insert("workdir".into(), path(w));
    }
    if let Some(f) = &spec.policy {
        a.insert("policy_file".into(), path(f));
    }
    let mut policy = Map::new();
    if let Some(t) = &spec.tier {
        policy.insert("tier".into(), Value::String(t.clone()));
    }
    for (name, f) in [
        ("cpu", &spec.cpu),
        ("memory", &spec.memory),
        ("pids", &spec.pids),
        ("disk", &spec.disk),
        ("time", &spec.time),
        ("output", &spec.output),
    ] {
        match f {
            Some(Scalar::Number(n)) => policy.insert(name.into(), Value::Number(n.clone())),
            Some(Scalar::Text(t)) => policy.insert(name.into(), Value::String(t.clone())),
            None => None,
        };
    }
    if let Some(n) = &spec.net {
        policy.insert("net".into(), Value::String(n.clone()));
    }
    if !spec.credentials.is_empty() {
        policy.insert(
            "credentials".into(),
            serde_json::to_value(&spec.credentials).unwrap_or_default(),
        );
    }
    if !policy.is_empty() {
        a.insert("policy".into(), Value::Object(policy));
    }
    if let Some(f) = spec.allow_failure {
        a.insert("allow_failure".into(), Value::Bool(f));
    }
    a
}

/// What runs a step, from its kind.
fn node_kind(s: &Step) -> NodeKind {
    match &s.kind {
        StepKind::Agent(a) => NodeKind::Agent {
            agent: a.agent.clone(),
        },
        StepKind::Tool(t) => match t.tool.as_str() {
            STATE_SET => NodeKind::StateSet,
            name => NodeKind::Tool { name: name.into() },
        },
        StepKind::Condition(_) => NodeKind::Condition,
        StepKind::Switch(_) => NodeKind::Switch,
        StepKind::Parallel(p) => NodeKind::Parallel {
            branches: Vec::new(),
            strategy: p.join.as_ref().map(|j| j.strategy).unwrap_or_default(),
        },
        StepKind::Map(m) => NodeKind::Map {
            body: 0,
            item: m.map.item.clone().unwrap_or_else(|| "item".into()),
        },
        StepKind::Group(_) => NodeKind::Group { body: 0 },
        StepKind::Human(_) => NodeKind::Human,
        StepKind::Sandbox(_) => NodeKind::Sandbox,
    }
}

/// A compile failure: the document was not validated, or validation missed something.
#[derive(Debug, thiserror::Error)]
#[error("{path}: {message}")]
pub struct CompileError {
    pub path: String,
    pub message: String,
}

fn err(path: impl Into<String>, message: impl Into<String>) -> CompileError {
    CompileError {
        path: path.into(),
        message: message.into(),
    }
}

impl Program {
    pub fn compile(doc: WorkflowDoc, base_dir: PathBuf) -> Result<Program, CompileError> {
        let budgeted = doc.budget.is_some() || doc.agents.values().any(|a| a.budget.is_some());
        let policy = if doc.policy.rules.is_empty() {
            None
        } else {
            let rules = crate::policy::Rules::compile(&doc.policy.rules).map_err(|errs| {
                let (i, e) = errs.into_iter().next().unwrap_or_default();
                err(format!("policy.rules[{i}].{}", e.field), e.message)
            })?;
            Some(rules)
        };
        let mut p = Program {
            policy,
            budgeted,
            doc: WorkflowDoc {
                steps: Vec::new(),
                ..doc.clone()
            },
            base_dir,
            nodes: Vec::new(),
            scopes: vec![Scope::default()],
            by_id: HashMap::new(),
            env: template::environment(),
        };
        p.add_list(&doc.steps, ROOT, false, "steps")?;
        p.add_exits(&Flow::build(&doc))?;
        for (k, agent) in &doc.agents {
            if let Some(ins) = &agent.instructions {
                p.add_template(&format!("agents.{k}.instructions"), ins)?;
            }
        }
        for (k, t) in &doc.outputs {
            p.add_template(&format!("outputs.{k}"), t)?;
        }
        p.doc = doc;
        Ok(p)
    }

    fn add_template(&mut self, name: &str, src: &str) -> Result<(), CompileError> {
        self.env
            .add_template_owned(name.to_string(), src.to_string())
            .map_err(|e| err(name, template::describe(&e)))
    }

    /// Each node's successors, from the flow (numbered as the nodes are). A target the flow
    /// could not resolve means the document was not validated.
    fn add_exits(&mut self, flow: &Flow) -> Result<(), CompileError> {
        for e in &flow.edges {
            let goto = self.goto_of(flow, e)?;
            let node = &mut self.nodes[e.from];
            let when = e.when.map(str::to_string);
            match e.kind {
                EdgeKind::Sequence => {}
                EdgeKind::Next => node.next = Some(goto),
                EdgeKind::Explicit => node.edges.push((when, goto)),
                EdgeKind::OnError => node.recovery = Recovery::Goto(goto),
                EdgeKind::Then => {
                    node.branches = Branches::Condition {
                        expr: when.unwrap_or_else(|| "false".into()),
                        then: goto,
                        otherwise: None,
                    }
                }
                EdgeKind::Else => {
                    if let Branches::Condition { otherwise, .. } = &mut node.branches {
                        *otherwise = goto;
                    }
                }
                EdgeKind::Case => {
                    if !matches!(node.branches, Branches::Switch { .. }) {
                        node.branches = Branches::Switch {
                            cases: Vec::new(),
                            default: None,
                        };
                    }
                    if let Branches::Switch { cases, .. } = &mut node.branches {
                        cases.push((when.unwrap_or_default(), goto));
                    }
                }
                EdgeKind::Default => match &mut node.branches {
                    Branches::Switch { default, .. } => *default = goto,
                    other => {
                        *other = Branches::Switch {
                            cases: Vec::new(),
                            default: goto,
                        }
                    }
                },
            }
        }
        Ok(())
    }

    fn goto_of(&self, flow: &Flow, e: &Edge) -> Result<Goto, CompileError> {
        let from = &flow.steps[e.from].step.id;
        if self.nodes.get(e.from).is_none_or(|n| &n.id != from) {
            return Err(err(format!("step '{from}'"), "steps out of order"));
        }
        match e.target {
            Ok(Target::Step(t)) => Ok(Some(t as NodeIdx)),
            Ok(Target::End) => Ok(None),
            Err(_) => Err(err(
                format!("step '{from}'"),
                format!("unknown step '{}' (or not in the same list)", e.to),
            )),
        }
    }

    fn add_list(
        &mut self,
        steps: &[Step],
        scope: ScopeIdx,
        branches: bool,
        path: &str,
    ) -> Result<(), CompileError> {
        let first = self.nodes.len();
        for (i, s) in steps.iter().enumerate() {
            let here = format!("{path}[{i}]");
            if branches {
                // Each branch is a scope of its own holding one node.
                let b = self.new_scope(self.scopes[scope as usize].owner);
                if let Some(owner) = self.scopes[scope as usize].owner
                    && let NodeKind::Parallel { branches, .. } =
                        &mut self.nodes[owner as usize].kind
                {
                    branches.push(b);
                }
                self.add_node(s, b, &here)?;
            } else {
                self.add_node(s, scope, &here)?;
            }
        }
        if !branches {
            let idxs: Vec<NodeIdx> = (first..self.nodes.len())
                .filter(|&n| self.nodes[n].scope == scope)
                .map(|n| n as NodeIdx)
                .collect();
            for w in idxs.windows(2) {
                self.nodes[w[0] as usize].seq_next = Some(w[1]);
            }
        }
        Ok(())
    }

    fn new_scope(&mut self, owner: Option<NodeIdx>) -> ScopeIdx {
        self.scopes.push(Scope {
            nodes: Vec::new(),
            owner,
        });
        (self.scopes.len() - 1) as ScopeIdx
    }

    fn add_node(&mut self, s: &Step, scope: ScopeIdx, path: &str) -> Result<(), CompileError> {
        let idx = self.nodes.len() as NodeIdx;
        // Validation reported duplicate ids; the first one is the one jumps name.
        self.by_id.entry(s.id.clone()).or_insert(idx);
        // A sandbox step is a call of the `sandbox.step` tool with the step's settings as its
        // arguments (the tool registry provides the sandbox; the engine names no backend).
        let args = match &s.kind {
            StepKind::Tool(t) => t.with.clone().unwrap_or_default(),
            StepKind::Sandbox(spec) => sandbox_args(spec, &self.base_dir),
            _ => Map::new(),
        };
        let args = Value::Object(args);
        let kind = node_kind(s);
        let output_schema = self.output_schema(s, &kind);
        let prompt_is_template = match &s.kind {
            StepKind::Agent(a) => template::is_template(&a.prompt),
            _ => false,
        };
        self.add_step_templates(s, &args, prompt_is_template)?;
        self.nodes.push(Node {
            idx,
            id: s.id.clone(),
            scope,
            kind,
            step: s.clone(),
            seq_next: None,
            next: None,
            edges: Vec::new(),
            branches: Branches::None,
            recovery: match s.on_error {
                Some(OnError::Continue) => Recovery::Continue,
                // `goto` targets come from the flow.
                _ => Recovery::Fail,
            },
            retry: s.retry.clone(),
            max_visits: s.max_visits,
            max_concurrency: s.max_concurrency(),
            human: match &s.kind {
                StepKind::Human(h) => h.kind,
                _ => HumanKind::default(),
            },
            args,
            output_schema,
            prompt_is_template,
        });
        self.scopes[scope as usize].nodes.push(idx);
        if let StepKind::Parallel(p) = &s.kind {
            let children = &p.branches;
            self.scopes.push(Scope {
                nodes: Vec::new(),
                owner: Some(idx),
            });
            let holder = (self.scopes.len() - 1) as ScopeIdx;
            self.add_list(children, holder, true, &format!("{path}.parallel"))?;
        }
        if let StepKind::Map(MapStep {
            steps: children, ..
        })
        | StepKind::Group(children) = &s.kind
        {
            let body = self.new_scope(Some(idx));
            match &mut self.nodes[idx as usize].kind {
                NodeKind::Map { body: b, .. } | NodeKind::Group { body: b } => *b = body,
                _ => return Err(err(path, "`steps` belongs to `map` steps and groups")),
            }
            self.add_list(children, body, false, &format!("{path}.steps"))?;
        }
        Ok(())
    }

    /// An agent step's output schema (its own, else its agent's), with its re-asks.
    fn output_schema(&self, s: &Step, kind: &NodeKind) -> Option<(Value, u32)> {
        let agent_output = match kind {
            NodeKind::Agent { agent } => self.doc.agents.get(agent).and_then(|a| a.output.clone()),
            _ => None,
        };
        let own = match &s.kind {
            StepKind::Agent(a) => a.output.clone(),
            _ => None,
        };
        own.or(agent_output).and_then(|o| {
            o.schema.map(|sch| {
                (
                    sch,
                    o.max_retries.unwrap_or(baton_types::DEFAULT_OUTPUT_RETRIES),
                )
            })
        })
    }

    /// Parses a step's templates once: its prompt, its human prompt, its arguments.
    fn add_step_templates(
        &mut self,
        s: &Step,
        args: &Value,
        prompt_is_template: bool,
    ) -> Result<(), CompileError> {
        match &s.kind {
            StepKind::Agent(a) if prompt_is_template => {
                self.add_template(&format!("{}.prompt", s.id), &a.prompt)?;
            }
            StepKind::Human(h) => {
                self.add_template(&format!("{}.human", s.id), &h.prompt)?;
            }
            _ => {}
        }
        // Tool arguments, and a sandbox step's settings as `sandbox.step` arguments.
        if args.as_object().is_some_and(|m| !m.is_empty()) {
            self.add_arg_templates(&format!("{}.with", s.id), args)?;
        }
        Ok(())
    }

    fn add_arg_templates(&mut self, name: &str, v: &Value) -> Result<(), CompileError> {
        match v {
            Value::String(s)
                if template::is_template(s) && template::sole_expression(s).is_none() =>
            {
                self.add_template(name, s)
            }
            Value::Array(a) => {
                for (i, x) in a.iter().enumerate() {
                    self.add_arg_templates(&format!("{name}/{i}"), x)?;
                }
                Ok(())
            }
            Value::Object(m) => {
                for (k, x) in m {
                    self.add_arg_templates(&format!("{name}/{k}"), x)?;
                }
                Ok(())
            }
            _ => Ok(()),
        }
    }

    pub fn node(&self, idx: NodeIdx) -> &Node {
        &self.nodes[idx as usize]
    }

    pub fn node_by_id(&self, id: &str) -> Option<&Node> {
        self.by_id.get(id).map(|&i| self.node(i))
    }

    /// The first node of a scope.
    pub fn scope_start(&self, scope: ScopeIdx) -> Option<NodeIdx> {
        self.scopes[scope as usize].nodes.first().copied()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn compile(steps: Value) -> Result<Program, CompileError> {
        let doc = serde_json::json!({ "version": 1, "name": "t", "steps": steps });
        Program::compile(
            serde_json::from_value(doc).unwrap(),
            PathBuf::from("/flows"),
        )
    }

    #[test]
    fn successors_come_from_the_flow_as_node_indexes() {
        let p = compile(serde_json::json!([
            { "id": "gate", "if": "x", "then": "c" },
            { "id": "b", "tool": "echo", "next": "end", "on_error": "goto c" },
            { "id": "c", "tool": "state.set", "with": { "k": 1 } },
            { "id": "s", "sandbox": { "command": "true" } }
        ]))
        .unwrap();
        let [gate, b, c, s] = ["gate", "b", "c", "s"].map(|id| p.node_by_id(id).unwrap());
        match &gate.branches {
            Branches::Condition {
                expr,
                then,
                otherwise,
            } => {
                assert_eq!(expr, "x");
                assert_eq!((*then, *otherwise), (Some(c.idx), Some(b.idx)));
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(b.next, Some(None), "`next: end` leaves the list");
        assert_eq!(b.recovery, Recovery::Goto(Some(c.idx)));
        assert!(matches!(c.kind, NodeKind::StateSet));
        assert_eq!(c.tool_args()["k"], 1);
        assert!(matches!(s.kind, NodeKind::Sandbox));
        assert_eq!(s.tool_args()["command"], "true");
    }

    #[test]
    fn a_target_the_flow_could_not_resolve_fails_compilation() {
        let e = compile(serde_json::json!([{ "id": "a", "tool": "echo", "next": "nowhere" }]))
            .unwrap_err();
        assert_eq!(e.path, "step 'a'");
        assert!(e.message.contains("unknown step 'nowhere'"), "{e}");
    }
}
