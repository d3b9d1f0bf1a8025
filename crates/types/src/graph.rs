//! The canonical form of a workflow: a graph of nodes and edges.
//!
//! The document's sugar (sequence by default, `next`, `then`/`else`, `switch`, nested
//! `parallel`/`steps`) becomes explicit edges here (read from the document's
//! [`Flow`](crate::flow::Flow), the same successors the engine follows); `Graph::to_doc` gives the same document
//! back, so the CLI, the API and the visual builder can all edit either form without loss.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::flow::{Flow, Target};
use crate::{Step, StepTag, WorkflowDoc};

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Graph {
    /// Everything of the document but its steps and edges.
    pub header: WorkflowDoc,
    /// Every step, parents before children, in document order.
    pub nodes: Vec<Node>,
    pub edges: Vec<Edge>,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Node {
    pub id: String,
    pub kind: StepTag,
    /// The enclosing step, for branches, map bodies and groups.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent: Option<String>,
    /// Whether the node is a `parallel` branch (else a `steps` child) of its parent.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub branch: bool,
    /// The step's own fields (its `parallel` and `steps` lists emptied: their items are nodes).
    pub step: Step,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EdgeKind {
    /// Default order of a sequence.
    Sequence,
    Next,
    Then,
    Else,
    Case,
    Default,
    OnError,
    /// From the document's `edges:` list.
    Explicit,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct Edge {
    pub from: String,
    /// A step id or `end`.
    pub to: String,
    pub kind: EdgeKind,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
}

impl Graph {
    pub fn from_doc(doc: &WorkflowDoc) -> Graph {
        let mut header = doc.clone();
        header.steps.clear();
        header.edges.clear();
        let mut g = Graph {
            header,
            nodes: Vec::new(),
            edges: Vec::new(),
        };
        add_nodes(&mut g, &doc.steps, None, false);
        add_step_edges(&mut g, doc);
        for e in &doc.edges {
            g.edges.push(Edge {
                from: e.from.clone(),
                to: e.to.clone(),
                kind: EdgeKind::Explicit,
                when: e.when.clone(),
            });
        }
        g
    }

    pub fn to_doc(&self) -> WorkflowDoc {
        let mut doc = self.header.clone();
        doc.steps = build_seq(&self.nodes, None, false);
        doc.edges = self
            .edges
            .iter()
            .filter(|e| e.kind == EdgeKind::Explicit)
            .map(|e| crate::EdgeSpec {
                from: e.from.clone(),
                to: e.to.clone(),
                when: e.when.clone(),
            })
            .collect();
        doc
    }
}

/// The steps as nodes, parents before children, in document order.
fn add_nodes(g: &mut Graph, steps: &[Step], parent: Option<&str>, branch: bool) {
    for s in steps {
        let mut own = s.clone();
        if let Some(children) = own.children_mut() {
            children.clear();
        }
        g.nodes.push(Node {
            id: s.id.clone(),
            kind: s.tag(),
            parent: parent.map(str::to_string),
            branch,
            step: own,
        });
        let branches = s.tag() == StepTag::Parallel;
        add_nodes(g, s.children(), Some(&s.id), branches);
    }
}

/// The steps' own edges, from the document's [`Flow`]. The end of a list is implicit (no
/// `sequence` edge to `end`); the document's `edges:` are written by the caller as they are,
/// unknown steps included.
fn add_step_edges(g: &mut Graph, doc: &WorkflowDoc) {
    let flow = Flow::build(doc);
    for e in &flow.edges {
        let implicit_end = e.kind == EdgeKind::Sequence && e.target == Ok(Target::End);
        if e.kind == EdgeKind::Explicit || implicit_end {
            continue;
        }
        g.edges.push(Edge {
            from: flow.steps[e.from].step.id.clone(),
            to: e.to.to_string(),
            kind: e.kind,
            when: e.when.map(str::to_string),
        });
    }
}

fn build_seq(nodes: &[Node], parent: Option<&str>, branch: bool) -> Vec<Step> {
    nodes
        .iter()
        .filter(|n| n.parent.as_deref() == parent && n.branch == branch)
        .map(|n| {
            let mut s = n.step.clone();
            let branches = s.tag() == StepTag::Parallel;
            if let Some(children) = s.children_mut() {
                *children = build_seq(nodes, Some(&n.id), branches);
            }
            s
        })
        .collect()
}
