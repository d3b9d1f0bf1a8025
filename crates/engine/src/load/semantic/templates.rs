//! Templates and expressions: their syntax, the names they read, and whether a step whose
//! output they read can have run before them.

use std::collections::{HashMap, VecDeque};

use baton_types::{SandboxCommand, SandboxSpec, StepKind};
use serde_json::Value;

use super::{CONTEXT_ROOTS, Checker, Target};
use crate::load::suggest::{hint, list, paren_hint};
use crate::load::{MAX_DEPTH, index_path, key_path, to_u32};
use crate::template;

impl Checker<'_, '_> {
    pub(super) fn check_templates(&mut self) {
        self.preds = vec![Vec::new(); self.infos.len()];
        for (from, targets) in self.succ.iter().enumerate() {
            for t in targets {
                if let Target::Step(to) = t {
                    self.preds[*to].push(from);
                }
            }
        }
        for i in 0..self.infos.len() {
            self.check_step_texts(i);
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

    /// The templates and expressions of step `i`, read where the step runs.
    fn check_step_texts(&mut self, i: usize) {
        let step = self.infos[i].step;
        let path = self.infos[i].path.clone();
        let at = |f: &str| key_path(&path, f);
        let ctx = RefCtx {
            reader: Some(i),
            after: None,
            items: self.infos[i].items.clone(),
        };
        match &step.kind {
            StepKind::Agent(a) => self.check_text(&a.prompt, at("prompt"), &ctx, Syntax::Template),
            StepKind::Condition(c) => {
                self.check_text(&c.condition, at("if"), &ctx, Syntax::Expression);
            }
            StepKind::Switch(sw) => {
                for (n, case) in sw.cases.iter().enumerate() {
                    let cp = index_path(&key_path(&at("switch"), "cases"), n);
                    self.check_text(&case.when, key_path(&cp, "when"), &ctx, Syntax::Expression);
                }
            }
            StepKind::Map(m) => {
                let over = key_path(&at("map"), "over");
                self.check_text(&m.map.over, over, &ctx, Syntax::Expression);
            }
            StepKind::Human(h) => {
                let prompt = key_path(&at("human"), "prompt");
                self.check_text(&h.prompt, prompt, &ctx, Syntax::Template);
            }
            StepKind::Tool(t) => {
                for (k, v) in t.with.iter().flatten() {
                    self.check_value(v, key_path(&at("with"), k), &ctx, 0);
                }
            }
            StepKind::Sandbox(spec) => self.check_sandbox_texts(spec, &at("sandbox"), &ctx),
            StepKind::Parallel(_) | StepKind::Group(_) => {}
        }
    }

    fn check_sandbox_texts(&mut self, spec: &SandboxSpec, sp: &str, ctx: &RefCtx) {
        match &spec.command {
            SandboxCommand::Shell(c) => {
                self.check_text(c, key_path(sp, "command"), ctx, Syntax::Template);
            }
            SandboxCommand::Argv(v) => {
                for (n, a) in v.iter().enumerate() {
                    let ap = index_path(&key_path(sp, "command"), n);
                    self.check_text(a, ap, ctx, Syntax::Template);
                }
            }
        }
        for (k, v) in &spec.files {
            self.check_text(
                v,
                key_path(&key_path(sp, "files"), k),
                ctx,
                Syntax::Template,
            );
        }
        for (k, v) in &spec.env {
            self.check_text(v, key_path(&key_path(sp, "env"), k), ctx, Syntax::Template);
        }
        if let Some(i) = &spec.stdin {
            self.check_text(i, key_path(sp, "stdin"), ctx, Syntax::Template);
        }
        for (name, value) in spec.overrides() {
            self.check_text(&value, key_path(sp, name), ctx, Syntax::Template);
        }
    }

    fn check_value(&mut self, v: &Value, path: String, ctx: &RefCtx, depth: usize) {
        match v {
            Value::String(s) => self.check_text(s, path, ctx, Syntax::Template),
            Value::Array(a) if depth < MAX_DEPTH => {
                for (i, x) in a.iter().enumerate() {
                    self.check_value(x, index_path(&path, i), ctx, depth + 1);
                }
            }
            Value::Object(o) if depth < MAX_DEPTH => {
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
        Some((line, to_u32(column)))
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
