//! A workflow compiled for execution: steps flattened into indexed nodes grouped in scopes
//! (the top-level sequence, each parallel branch, each `steps:` body), templates parsed once.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use baton_types::{
    END, JoinStrategy, OnError, SandboxCommand, SandboxSpec, Scalar, Step, StepKind, WorkflowDoc,
};
use minijinja::Environment;
use serde_json::{Map, Value};

use crate::template;

pub type NodeIdx = u32;
pub type ScopeIdx = u32;

/// The root scope: the workflow's top-level steps.
pub const ROOT: ScopeIdx = 0;

#[derive(Debug, Clone)]
pub enum NodeKind {
    Agent {
        agent: String,
    },
    Tool {
        name: String,
    },
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

#[derive(Debug)]
pub struct Node {
    pub idx: NodeIdx,
    pub id: String,
    pub scope: ScopeIdx,
    pub kind: NodeKind,
    pub step: Step,
    /// The next node of the same list (none at the end of a list and in parallel branches).
    pub seq_next: Option<NodeIdx>,
    /// Compiled output schema (agent steps), with how many re-asks are allowed.
    pub output_schema: Option<(Value, u32)>,
    /// Explicit `edges:` leaving this node, in document order: (condition, target).
    pub edges: Vec<(Option<String>, Option<NodeIdx>)>,
    /// Whether `prompt` needs rendering.
    pub prompt_is_template: bool,
    /// A tool step's `with:` (a sandbox step's settings as `sandbox.step` arguments).
    pub args: Map<String, Value>,
}

impl Node {
    /// A tool step's `with:` arguments, unrendered (an empty object when there are none).
    pub fn tool_args(&self) -> Value {
        Value::Object(self.args.clone())
    }

    /// An agent step's prompt (empty for other kinds).
    pub fn prompt(&self) -> &str {
        match &self.step.kind {
            StepKind::Agent(a) => &a.prompt,
            _ => "",
        }
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
    if !policy.is_empty() {
        a.insert("policy".into(), Value::Object(policy));
    }
    if let Some(f) = spec.allow_failure {
        a.insert("allow_failure".into(), Value::Bool(f));
    }
    a
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
        let mut p = Program {
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
        // Resolve explicit edges.
        for (i, e) in doc.edges.iter().enumerate() {
            let from = *p.by_id.get(&e.from).ok_or_else(|| {
                err(
                    format!("edges[{i}].from"),
                    format!("unknown step '{}'", e.from),
                )
            })?;
            let to = p.target(&e.to, &format!("edges[{i}].to"))?;
            p.nodes[from as usize].edges.push((e.when.clone(), to));
        }
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
        if self.by_id.insert(s.id.clone(), idx).is_some() {
            return Err(err(path, format!("duplicate step id '{}'", s.id)));
        }
        // A sandbox step is a call of the `sandbox.step` tool with the step's settings as its
        // arguments (the tool registry provides the sandbox; the engine names no backend).
        let args = match &s.kind {
            StepKind::Tool(t) => t.with.clone().unwrap_or_default(),
            StepKind::Sandbox(spec) => sandbox_args(spec, &self.base_dir),
            _ => Map::new(),
        };
        let kind = match &s.kind {
            StepKind::Agent(a) => {
                let agent = a.agent.clone();
                if !self.doc.agents.contains_key(&agent) {
                    return Err(err(path, format!("unknown agent '{agent}'")));
                }
                NodeKind::Agent { agent }
            }
            StepKind::Tool(t) => NodeKind::Tool {
                name: t.tool.clone(),
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
            StepKind::Sandbox(_) => NodeKind::Tool {
                name: baton_tools::sandbox_step::STEP_TOOL.into(),
            },
        };
        let agent_output = match &kind {
            NodeKind::Agent { agent } => self.doc.agents.get(agent).and_then(|a| a.output.clone()),
            _ => None,
        };
        let (prompt, step_output) = match &s.kind {
            StepKind::Agent(a) => (Some(a.prompt.as_str()), a.output.clone()),
            _ => (None, None),
        };
        let output_schema = step_output.or(agent_output).and_then(|o| {
            o.schema.map(|sch| {
                (
                    sch,
                    o.max_retries.unwrap_or(baton_types::DEFAULT_OUTPUT_RETRIES),
                )
            })
        });
        if let Some((schema, _)) = &output_schema {
            jsonschema::validator_for(schema).map_err(|e| {
                err(
                    format!("{path}.output.schema"),
                    format!("invalid JSON Schema: {e}"),
                )
            })?;
        }
        let prompt_is_template = prompt.is_some_and(template::is_template);
        let with = (!args.is_empty()).then(|| Value::Object(args.clone()));
        self.nodes.push(Node {
            idx,
            id: s.id.clone(),
            scope,
            kind,
            step: s.clone(),
            seq_next: None,
            output_schema,
            edges: Vec::new(),
            prompt_is_template,
            args,
        });
        self.scopes[scope as usize].nodes.push(idx);
        if let Some(p) = prompt
            && prompt_is_template
        {
            self.add_template(&format!("{}.prompt", s.id), p)?;
        }
        if let StepKind::Human(h) = &s.kind {
            self.add_template(&format!("{}.human", s.id), &h.prompt)?;
        }
        if let Some(with) = &with {
            self.add_arg_templates(&format!("{}.with", s.id), with)?;
        }
        if let StepKind::Parallel(p) = &s.kind {
            let children = &p.branches;
            self.scopes.push(Scope {
                nodes: Vec::new(),
                owner: Some(idx),
            });
            let holder = (self.scopes.len() - 1) as ScopeIdx;
            self.add_list(children, holder, true, &format!("{path}.parallel"))?;
        }
        if let StepKind::Map(_) | StepKind::Group(_) = &s.kind {
            let children = s.children();
            let body = self.new_scope(Some(idx));
            match &mut self.nodes[idx as usize].kind {
                NodeKind::Map { body: b, .. } | NodeKind::Group { body: b } => *b = body,
                _ => return Err(err(path, "`steps` belongs to `map` steps and groups")),
            }
            self.add_list(children, body, false, &format!("{path}.steps"))?;
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

    /// Resolves a target name: `end` (or nothing) ends the sequence.
    pub fn target(&self, name: &str, path: &str) -> Result<Option<NodeIdx>, CompileError> {
        if name == END {
            return Ok(None);
        }
        self.by_id
            .get(name)
            .map(|&i| Some(i))
            .ok_or_else(|| err(path, format!("unknown step '{name}'")))
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

    pub fn on_error(&self, idx: NodeIdx) -> OnError {
        self.node(idx)
            .step
            .on_error
            .clone()
            .unwrap_or(OnError::Fail)
    }
}
