//! What a document means: ids, references, control flow, templates. Every problem is
//! collected, each at its field path and position.
//!
//! One [`Checker`] walks the typed document; this file holds its index of the steps and the
//! control flow (successors, reachability, loops), and each concern checks from its own file:
//! `document` (header, inputs, policy, ids), `steps` (one step's settings), `agents`,
//! `templates` (templates, expressions and the step outputs they may read).

mod agents;
mod contracts;
mod document;
mod joins;
mod limits;
mod policy;
mod steps;
mod team;
mod templates;

use std::collections::{HashMap, HashSet};

use baton_types::flow::{Flow, Target, Unresolved};
use baton_types::graph::EdgeKind;
use baton_types::{Step, StepKind, WorkflowDoc};

use super::suggest::{closest, hint};
use super::{Diagnostic, Loaded, ValidationEnv, index_path, key_path};
use crate::template;

/// Most retries a step may ask for.
pub const MAX_RETRIES: u32 = 100;
/// Most steps in one workflow, nested ones included.
pub const MAX_STEPS: usize = 10_000;

const CONTEXT_ROOTS: [&str; 6] = ["inputs", "steps", "state", "memory", "run", "loop"];

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
            match &step.kind {
                StepKind::Parallel(p) => {
                    let at = key_path(&path, "parallel");
                    self.collect(&p.branches, &at, Some(me), items);
                }
                StepKind::Map(m) => {
                    let mut inner = items.to_vec();
                    inner.push(m.map.item.clone().unwrap_or_else(|| "item".into()));
                    self.collect(&m.steps, &key_path(&path, "steps"), Some(me), &inner);
                }
                StepKind::Group(body) => {
                    self.collect(body, &key_path(&path, "steps"), Some(me), items);
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
        self.check_layout();
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
        self.check_team();
        self.check_budgets();
        self.check_policy();
        self.check_contracts();
        self.check_templates();
    }

    // ---- control flow ------------------------------------------------------------------

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
                } else if matches!(s.kind, StepKind::Map(_)) {
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
    fn layout_places_steps_only() {
        let doc = |layout: &str| {
            problems(&format!(
                "{HEAD}steps:\n  - id: g\n    steps:\n      - {{ id: inner, tool: echo }}\nlayout:\n{layout}"
            ))
        };
        // Nested steps have positions too; whole and fractional numbers are fine.
        assert!(doc("  g: [0, 0]\n  inner: [-20.5, 130]\n").is_empty());
        assert_eq!(
            doc("  g: [0, 0]\n  inner: [1e9, 0]\n"),
            vec![
                "the position of step `inner` in `layout` must be two numbers between -10000000 and 10000000 @ layout.inner"
            ]
        );
        let p = doc("  innr: [0, 0]\n");
        assert_eq!(p.len(), 1, "{p:?}");
        assert!(
            p[0].contains("unknown step `innr` (did you mean `inner`?)"),
            "{p:?}"
        );
        assert!(p[0].ends_with("@ layout.innr"), "{p:?}");
    }
}
