//! What a document means: ids, references, control flow, templates. Every problem is
//! collected, each at its field path and position.
//!
//! One [`Checker`] walks the typed document; this file holds its index of the steps and the
//! control flow (successors, reachability, loops), and each concern checks from its own file:
//! `document` (header, inputs, policy, ids), `steps` (one step's settings), `agents`,
//! `templates` (templates, expressions and the step outputs they may read).

mod agents;
mod document;
mod steps;
mod templates;

use std::collections::{HashMap, HashSet, VecDeque};

use baton_types::{END, OnError, Step, StepKind, WorkflowDoc};

use super::suggest::{closest, hint};
use super::{Diagnostic, Loaded, ValidationEnv, index_path, key_path};
use crate::template;

pub use agents::expand_env;

/// Most retries a step may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Most steps in one workflow, nested ones included.
pub const MAX_STEPS: usize = 10_000;

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
    /// Position in its scope's list.
    index: usize,
    /// Item names of the maps whose body holds this step.
    items: Vec<String>,
}

struct Scope {
    /// The step whose list this is; `None` for the top level.
    container: Option<usize>,
    parallel: bool,
    members: Vec<usize>,
}

#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
enum Target {
    Step(usize),
    End,
}

struct Checker<'a, 'd> {
    loaded: &'d Loaded,
    doc: &'d WorkflowDoc,
    env: &'a ValidationEnv<'a>,
    infos: Vec<Info<'d>>,
    scopes: Vec<Scope>,
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
            scopes: Vec::new(),
            ids: HashMap::new(),
            children: Vec::new(),
            succ: Vec::new(),
            preds: Vec::new(),
            reach_memo: std::cell::RefCell::new(HashMap::new()),
            out: Vec::new(),
            globals,
        };
        c.collect(&loaded.doc.steps, "steps", None, false, &[]);
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
        parallel: bool,
        items: &[String],
    ) {
        let scope = self.scopes.len();
        self.scopes.push(Scope {
            container,
            parallel,
            members: Vec::new(),
        });
        for (index, step) in steps.iter().enumerate() {
            let me = self.infos.len();
            let path = index_path(list_path, index);
            self.infos.push(Info {
                step,
                path: path.clone(),
                scope,
                index,
                items: items.to_vec(),
            });
            self.children.push(Vec::new());
            self.scopes[scope].members.push(me);
            if let Some(c) = container {
                self.children[c].push(me);
            }
            match &step.kind {
                StepKind::Parallel(p) => {
                    let at = key_path(&path, "parallel");
                    self.collect(&p.branches, &at, Some(me), true, items);
                }
                StepKind::Map(m) => {
                    let mut inner = items.to_vec();
                    inner.push(m.map.item.clone().unwrap_or_else(|| "item".into()));
                    self.collect(&m.steps, &key_path(&path, "steps"), Some(me), false, &inner);
                }
                StepKind::Group(body) => {
                    self.collect(body, &key_path(&path, "steps"), Some(me), false, items);
                }
                _ => {}
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
        for s in 0..self.scopes.len() {
            self.check_reachability(s);
            self.check_loops(s);
        }
        self.check_agents();
        self.check_templates();
    }

    // ---- control flow ------------------------------------------------------------------

    /// Resolves a jump target; reports unknown targets and targets outside the step's list.
    fn target(&mut self, from: usize, target: &str, path: String, what: &str) -> Option<Target> {
        if target == END {
            return Some(Target::End);
        }
        let scope = self.infos[from].scope;
        match self.ids.get(target).copied() {
            Some(t) if self.infos[t].scope == scope => Some(Target::Step(t)),
            Some(_) => {
                let here = self.scope_phrase(scope);
                self.error(path, format!("step `{target}` is not in the same list as step `{}` ({here}): {what} can only go to steps of that list, or `end` to leave it", self.infos[from].step.id));
                None
            }
            None => {
                let same: Vec<&str> = self.scopes[scope]
                    .members
                    .iter()
                    .map(|m| self.infos[*m].step.id.as_str())
                    .collect();
                let all: Vec<&str> = self.ids.keys().copied().collect();
                let suggestion = closest(target, same.iter().copied())
                    .or_else(|| closest(target, all.iter().copied()));
                let h = suggestion
                    .map(|s| format!("; did you mean `{s}`?"))
                    .unwrap_or_default();
                self.error(path, format!("{what} refers to unknown step `{target}`{h}"));
                None
            }
        }
    }

    fn scope_phrase(&self, scope: usize) -> String {
        match self.scopes[scope].container {
            None => "the top-level steps".into(),
            Some(c) => {
                let s = self.infos[c].step;
                if self.scopes[scope].parallel {
                    format!("the branches of `{}`", s.id)
                } else if matches!(s.kind, StepKind::Map(_)) {
                    format!("the body of map `{}`", s.id)
                } else {
                    format!("the steps of `{}`", s.id)
                }
            }
        }
    }

    fn build_flow(&mut self) {
        self.succ = vec![Vec::new(); self.infos.len()];
        for i in 0..self.infos.len() {
            let step = self.infos[i].step;
            let path = self.infos[i].path.clone();
            let scope = &self.scopes[self.infos[i].scope];
            // In a parallel list every item is its own branch: nothing follows it.
            let seq_next = if scope.parallel {
                Target::End
            } else {
                scope
                    .members
                    .get(self.infos[i].index + 1)
                    .map(|n| Target::Step(*n))
                    .unwrap_or(Target::End)
            };
            let mut succ = Vec::new();
            match &step.kind {
                StepKind::Condition(c) => {
                    for (field, t) in [("then", &c.then), ("else", &c.otherwise)] {
                        match t {
                            Some(t) => succ.extend(self.target(
                                i,
                                t,
                                key_path(&path, field),
                                &format!("`{field}`"),
                            )),
                            None => succ.push(seq_next),
                        }
                    }
                }
                StepKind::Switch(sw) => {
                    let sp = key_path(&path, "switch");
                    for (n, case) in sw.cases.iter().enumerate() {
                        let cp = key_path(&index_path(&key_path(&sp, "cases"), n), "goto");
                        succ.extend(self.target(i, &case.goto, cp, "`goto`"));
                    }
                    match &sw.default {
                        Some(d) => {
                            succ.extend(self.target(i, d, key_path(&sp, "default"), "`default`"))
                        }
                        None => succ.push(seq_next),
                    }
                }
                _ => match &step.next {
                    Some(n) => succ.extend(self.target(i, n, key_path(&path, "next"), "`next`")),
                    None => succ.push(seq_next),
                },
            }
            if let Some(OnError::Goto(t)) = &step.on_error {
                succ.extend(self.target(i, t, key_path(&path, "on_error"), "`on_error: goto`"));
            }
            self.succ[i] = succ;
        }
    }

    fn check_edges(&mut self) {
        for (n, edge) in self.doc.edges.iter().enumerate() {
            let ep = index_path("edges", n);
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
            if let Some(t) = self.target(from, &edge.to, key_path(&ep, "to"), "edge target") {
                self.succ[from].push(t);
            }
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
        let members = self.scopes[scope].members.clone();
        if members.is_empty() {
            return;
        }
        let starts: Vec<usize> = if self.scopes[scope].parallel {
            members.clone()
        } else {
            vec![members[0]]
        };
        let mut seen: HashSet<usize> = starts.iter().copied().collect();
        let mut queue: VecDeque<usize> = starts.into_iter().collect();
        while let Some(n) = queue.pop_front() {
            for t in &self.succ[n] {
                if let Target::Step(s) = t
                    && seen.insert(*s)
                {
                    queue.push_back(*s);
                }
            }
        }
        let phrase = self.scope_phrase(scope);
        for m in members {
            if !seen.contains(&m) {
                let id = self.infos[m].step.id.clone();
                let path = self.infos[m].path.clone();
                self.error(path, format!("step `{id}` can never run: nothing leads to it from the start of {phrase} (a step runs after the one before it, unless that one jumps away with `next`, `then`/`else`, `switch` or `end`)"));
            }
        }
    }

    /// Every cycle must hold a step with `max_visits`: remove those steps, and whatever cycle
    /// is left is a loop that could run forever.
    fn check_loops(&mut self, scope: usize) {
        let members: Vec<usize> = self.scopes[scope]
            .members
            .iter()
            .copied()
            .filter(|m| self.infos[*m].step.max_visits.is_none())
            .collect();
        let inside: HashSet<usize> = members.iter().copied().collect();
        let edges = |n: usize| -> Vec<usize> {
            self.succ[n]
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
            let looping = component.len() > 1 || edges(first).contains(&first);
            if !looping {
                continue;
            }
            let set: HashSet<usize> = component.iter().copied().collect();
            let cycle = find_cycle(first, &set, &edges);
            let names: Vec<String> = cycle
                .iter()
                .map(|n| format!("`{}`", self.infos[*n].step.id))
                .collect();
            let path = self.infos[first].path.clone();
            found.push((path, format!("loop without `max_visits`: {}; give one of these steps `max_visits` so the loop cannot run forever", names.join(" → "))));
        }
        for (path, message) in found {
            self.error(path, message);
        }
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
