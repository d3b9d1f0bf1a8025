//! Which step can come after which: the one place where the document's control-flow sugar
//! (list order, `next`, `then`/`else`, `switch`, `on_error: goto`, `edges:`) becomes edges.
//!
//! [`Flow::build`] numbers the steps in document order (a step before the steps nested in it,
//! as the engine's compiled program numbers its nodes), groups them in scopes (the top-level
//! list, each `parallel` list, each `steps:` body) and resolves every jump target. Validation
//! reports the targets that did not resolve and checks reachability and loops on it, the
//! compiled program takes each node's successors from it, and the graph export writes its
//! edges. A jump may only go to a step of the same list, or to `end` to leave the list.

use std::collections::{HashMap, HashSet, VecDeque};

use crate::graph::EdgeKind;
use crate::{END, OnError, Step, StepKind, WorkflowDoc};

/// A step's number: its position in document order, parents before children.
pub type StepIdx = usize;

/// The control flow of one document.
pub struct Flow<'d> {
    pub steps: Vec<FlowStep<'d>>,
    pub scopes: Vec<Scope>,
    /// The first step with each id (validation reports the duplicates).
    pub ids: HashMap<&'d str, StepIdx>,
    /// Every edge, grouped by the step it leaves (in document order), each step's in the
    /// order the engine considers them; then the document's `edges:`.
    pub edges: Vec<Edge<'d>>,
}

pub struct FlowStep<'d> {
    pub step: &'d Step,
    /// The list holding the step.
    pub scope: usize,
    /// Its position in that list.
    pub index: usize,
}

/// One list of steps.
pub struct Scope {
    /// The step whose list this is; `None` for the top level.
    pub container: Option<StepIdx>,
    /// A `parallel` list: every item is a branch of its own, nothing follows it.
    pub parallel: bool,
    pub members: Vec<StepIdx>,
}

/// Where an edge goes.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum Target {
    Step(StepIdx),
    /// The end of the list (`end`, or past its last step).
    End,
}

/// Why a target did not resolve.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Unresolved {
    /// No step has that id.
    Unknown,
    /// The step is in another list.
    OtherList,
}

#[derive(Clone, Debug)]
pub struct Edge<'d> {
    pub from: StepIdx,
    pub kind: EdgeKind,
    /// The case's position (`Case`) or the edge's position in the document's `edges:`
    /// (`Explicit`); 0 otherwise.
    pub index: usize,
    /// The condition under which the edge is taken (a `then`'s is its step's `if`).
    pub when: Option<&'d str>,
    /// The target as written (`end` for the end of the list).
    pub to: &'d str,
    pub target: Result<Target, Unresolved>,
}

impl<'d> Flow<'d> {
    pub fn build(doc: &'d WorkflowDoc) -> Flow<'d> {
        let mut flow = Flow {
            steps: Vec::new(),
            scopes: Vec::new(),
            ids: HashMap::new(),
            edges: Vec::new(),
        };
        flow.collect(&doc.steps, None, false);
        for i in 0..flow.steps.len() {
            flow.add_step_edges(i);
        }
        for (n, e) in doc.edges.iter().enumerate() {
            let Some(&from) = flow.ids.get(e.from.as_str()) else {
                continue; // validation names the unknown `from`
            };
            flow.edges.push(Edge {
                from,
                kind: EdgeKind::Explicit,
                index: n,
                when: e.when.as_deref(),
                to: &e.to,
                target: flow.resolve(from, &e.to),
            });
        }
        flow
    }

    fn collect(&mut self, steps: &'d [Step], container: Option<StepIdx>, parallel: bool) {
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            container,
            parallel,
            members: Vec::new(),
        });
        for (index, step) in steps.iter().enumerate() {
            let me = self.steps.len();
            self.steps.push(FlowStep { step, scope, index });
            self.scopes[scope].members.push(me);
            self.ids.entry(step.id.as_str()).or_insert(me);
            match &step.kind {
                StepKind::Parallel(p) => self.collect(&p.branches, Some(me), true),
                StepKind::Map(m) => self.collect(&m.steps, Some(me), false),
                StepKind::Group(body) => self.collect(body, Some(me), false),
                _ => {}
            }
        }
    }

    /// Resolves a jump target written on step `from`.
    pub fn resolve(&self, from: StepIdx, target: &str) -> Result<Target, Unresolved> {
        if target == END {
            return Ok(Target::End);
        }
        match self.ids.get(target) {
            Some(&t) if self.steps[t].scope == self.steps[from].scope => Ok(Target::Step(t)),
            Some(_) => Err(Unresolved::OtherList),
            None => Err(Unresolved::Unknown),
        }
    }

    /// The step after `i` in its list (none in a parallel list or at the end): (id, target).
    fn list_next(&self, i: StepIdx) -> (&'d str, Target) {
        let at = &self.steps[i];
        let scope = &self.scopes[at.scope];
        match scope.members.get(at.index + 1) {
            Some(&n) if !scope.parallel => (self.steps[n].step.id.as_str(), Target::Step(n)),
            _ => (END, Target::End),
        }
    }

    fn add_step_edges(&mut self, i: StepIdx) {
        let step = self.steps[i].step;
        let (next_id, next) = self.list_next(i);
        let edge = |flow: &mut Self, kind, index, when, to: Option<&'d String>| {
            let (to, target) = match to {
                Some(t) => (t.as_str(), flow.resolve(i, t)),
                None => (next_id, Ok(next)),
            };
            flow.edges.push(Edge {
                from: i,
                kind,
                index,
                when,
                to,
                target,
            });
        };
        match &step.kind {
            StepKind::Condition(c) => {
                let when = Some(c.condition.as_str());
                edge(self, EdgeKind::Then, 0, when, c.then.as_ref());
                edge(self, EdgeKind::Else, 0, None, c.otherwise.as_ref());
            }
            StepKind::Switch(sw) => {
                for (n, case) in sw.cases.iter().enumerate() {
                    edge(
                        self,
                        EdgeKind::Case,
                        n,
                        Some(case.when.as_str()),
                        Some(&case.goto),
                    );
                }
                edge(self, EdgeKind::Default, 0, None, sw.default.as_ref());
            }
            _ => match &step.next {
                Some(n) => edge(self, EdgeKind::Next, 0, None, Some(n)),
                None => edge(self, EdgeKind::Sequence, 0, None, None),
            },
        }
        if let Some(OnError::Goto(t)) = &step.on_error {
            edge(self, EdgeKind::OnError, 0, None, Some(t));
        }
    }

    /// The resolved successors of each step (unresolved targets left out).
    pub fn successors(&self) -> Vec<Vec<Target>> {
        let mut out = vec![Vec::new(); self.steps.len()];
        for e in &self.edges {
            if let Ok(t) = e.target {
                out[e.from].push(t);
            }
        }
        out
    }

    /// The reverse of [`Flow::successors`], steps only.
    pub fn predecessors(&self) -> Vec<Vec<StepIdx>> {
        let mut out = vec![Vec::new(); self.steps.len()];
        for e in &self.edges {
            if let Ok(Target::Step(to)) = e.target {
                out[to].push(e.from);
            }
        }
        out
    }

    /// The steps of `scope` that nothing leads to from its start (every branch of a parallel
    /// list is a start).
    pub fn unreachable(&self, scope: usize, successors: &[Vec<Target>]) -> Vec<StepIdx> {
        let members = &self.scopes[scope].members;
        let starts: Vec<StepIdx> = match (self.scopes[scope].parallel, members.first()) {
            (true, _) => members.clone(),
            (false, Some(&first)) => vec![first],
            (false, None) => Vec::new(),
        };
        let mut seen: HashSet<StepIdx> = starts.iter().copied().collect();
        let mut queue: VecDeque<StepIdx> = starts.into_iter().collect();
        while let Some(n) = queue.pop_front() {
            for t in &successors[n] {
                if let Target::Step(s) = t
                    && seen.insert(*s)
                {
                    queue.push_back(*s);
                }
            }
        }
        members
            .iter()
            .copied()
            .filter(|m| !seen.contains(m))
            .collect()
    }

    /// The loops of `scope` that no `bounded` step breaks: one cycle per looping component,
    /// as `first, ..., first` from its lowest-numbered step.
    pub fn unbounded_loops(
        &self,
        scope: usize,
        successors: &[Vec<Target>],
        bounded: &dyn Fn(StepIdx) -> bool,
    ) -> Vec<Vec<StepIdx>> {
        let members: Vec<StepIdx> = self.scopes[scope]
            .members
            .iter()
            .copied()
            .filter(|m| !bounded(*m))
            .collect();
        let inside: HashSet<StepIdx> = members.iter().copied().collect();
        let edges = |n: StepIdx| -> Vec<StepIdx> {
            successors[n]
                .iter()
                .filter_map(|t| match t {
                    Target::Step(s) if inside.contains(s) => Some(*s),
                    _ => None,
                })
                .collect()
        };
        let mut found = Vec::new();
        for component in strongly_connected(&members, &edges) {
            let first = component.iter().copied().min().unwrap_or(0);
            if component.len() > 1 || edges(first).contains(&first) {
                let set: HashSet<StepIdx> = component.iter().copied().collect();
                found.push(find_cycle(first, &set, &edges));
            }
        }
        found
    }
}

/// Tarjan's algorithm, iterative (no recursion on user input).
fn strongly_connected(nodes: &[usize], edges: &dyn Fn(usize) -> Vec<usize>) -> Vec<Vec<usize>> {
    let mut index: HashMap<usize, usize> = HashMap::new();
    let mut low: HashMap<usize, usize> = HashMap::new();
    let mut on_stack: HashSet<usize> = HashSet::new();
    let mut stack: Vec<usize> = Vec::new();
    let mut out = Vec::new();
    let mut counter = 0;
    for &root in nodes {
        if index.contains_key(&root) {
            continue;
        }
        let mut work: Vec<(usize, Vec<usize>, usize)> = vec![(root, edges(root), 0)];
        index.insert(root, counter);
        low.insert(root, counter);
        counter += 1;
        stack.push(root);
        on_stack.insert(root);
        while let Some((v, succ, pos)) = work.last_mut() {
            let v = *v;
            if *pos < succ.len() {
                let w = succ[*pos];
                *pos += 1;
                if let std::collections::hash_map::Entry::Vacant(e) = index.entry(w) {
                    e.insert(counter);
                    low.insert(w, counter);
                    counter += 1;
                    stack.push(w);
                    on_stack.insert(w);
                    let ws = edges(w);
                    work.push((w, ws, 0));
                } else if on_stack.contains(&w) {
                    let lw = index[&w].min(low[&v]);
                    low.insert(v, lw);
                }
            } else {
                work.pop();
                if let Some((parent, _, _)) = work.last() {
                    let lp = low[parent].min(low[&v]);
                    low.insert(*parent, lp);
                }
                if low[&v] == index[&v] {
                    let mut component = Vec::new();
                    while let Some(w) = stack.pop() {
                        on_stack.remove(&w);
                        component.push(w);
                        if w == v {
                            break;
                        }
                    }
                    component.sort_unstable();
                    out.push(component);
                }
            }
        }
    }
    out.sort();
    out
}

/// A cycle through `start` inside `set`, as `start, ..., start`.
fn find_cycle(
    start: usize,
    set: &HashSet<usize>,
    edges: &dyn Fn(usize) -> Vec<usize>,
) -> Vec<usize> {
    let mut prev: HashMap<usize, usize> = HashMap::new();
    let mut queue = VecDeque::from([start]);
    let mut seen = HashSet::from([start]);
    while let Some(n) = queue.pop_front() {
        let mut next = edges(n);
        next.sort_unstable();
        for w in next {
            if !set.contains(&w) {
                continue;
            }
            if w == start {
                // Walk back from `n` to `start`, then read it forwards.
                let mut back = Vec::new();
                let mut cur = n;
                while cur != start {
                    back.push(cur);
                    cur = prev.get(&cur).copied().unwrap_or(start);
                }
                let mut ordered = vec![start];
                ordered.extend(back.into_iter().rev());
                ordered.push(start);
                return ordered;
            }
            if seen.insert(w) {
                prev.insert(w, n);
                queue.push_back(w);
            }
        }
    }
    vec![start, start]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn doc(json: serde_json::Value) -> WorkflowDoc {
        serde_json::from_value(json).unwrap()
    }

    fn targets(flow: &Flow, id: &str) -> Vec<(EdgeKind, Result<Target, Unresolved>)> {
        let i = flow.ids[id];
        flow.edges
            .iter()
            .filter(|e| e.from == i)
            .map(|e| (e.kind, e.target))
            .collect()
    }

    #[test]
    fn list_order_next_and_branches() {
        let d = doc(serde_json::json!({
            "version": 1, "name": "f",
            "steps": [
                { "id": "a", "tool": "echo" },
                { "id": "gate", "if": "x", "then": "a" },
                { "id": "p", "parallel": [ { "id": "b1", "tool": "echo" }, { "id": "b2", "tool": "echo", "next": "b1" } ] },
                { "id": "last", "tool": "echo", "next": "nowhere", "on_error": "goto b1" }
            ]
        }));
        let flow = Flow::build(&d);
        let [a, gate, p, b1, _b2, last] =
            ["a", "gate", "p", "b1", "b2", "last"].map(|i| flow.ids[i]);
        assert_eq!(
            targets(&flow, "a"),
            vec![(EdgeKind::Sequence, Ok(Target::Step(gate)))]
        );
        assert_eq!(
            targets(&flow, "gate"),
            vec![
                (EdgeKind::Then, Ok(Target::Step(a))),
                (EdgeKind::Else, Ok(Target::Step(p)))
            ]
        );
        // Branches are lists of their own: nothing follows a branch, jumps stay inside.
        assert_eq!(
            targets(&flow, "b1"),
            vec![(EdgeKind::Sequence, Ok(Target::End))]
        );
        assert_eq!(
            targets(&flow, "b2"),
            vec![(EdgeKind::Next, Ok(Target::Step(b1)))]
        );
        assert_eq!(
            targets(&flow, "last"),
            vec![
                (EdgeKind::Next, Err(Unresolved::Unknown)),
                (EdgeKind::OnError, Err(Unresolved::OtherList))
            ]
        );
        assert_eq!(flow.steps[last].index, 3);
        assert_eq!(flow.scopes[flow.steps[b1].scope].container, Some(p));
    }

    #[test]
    fn loops_without_a_bound_are_found() {
        let d = doc(serde_json::json!({
            "version": 1, "name": "f",
            "steps": [
                { "id": "a", "tool": "echo" },
                { "id": "b", "tool": "echo", "next": "a" },
                { "id": "c", "tool": "echo" }
            ]
        }));
        let flow = Flow::build(&d);
        let succ = flow.successors();
        assert_eq!(
            flow.unbounded_loops(0, &succ, &|_| false),
            vec![vec![0, 1, 0]]
        );
        assert!(flow.unbounded_loops(0, &succ, &|s| s == 1).is_empty());
        assert_eq!(flow.unreachable(0, &succ), vec![2]);
    }

    #[test]
    fn cycles_are_found() {
        // 0 -> 1 -> 2 -> 0, 3 -> 3, 4 alone.
        let edges = |n: usize| -> Vec<usize> {
            match n {
                0 => vec![1],
                1 => vec![2],
                2 => vec![0, 4],
                3 => vec![3],
                _ => vec![],
            }
        };
        let sccs = strongly_connected(&[0, 1, 2, 3, 4], &edges);
        assert_eq!(sccs, vec![vec![0, 1, 2], vec![3], vec![4]]);
        let set: HashSet<usize> = [0, 1, 2].into();
        assert_eq!(find_cycle(0, &set, &edges), vec![0, 1, 2, 0]);
        let set: HashSet<usize> = [3].into();
        assert_eq!(find_cycle(3, &set, &edges), vec![3, 3]);
    }
}
