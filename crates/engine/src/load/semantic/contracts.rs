//! Merge contracts (`contracts:`): each reducer fits its key's type, the initial value in
//! `state:` fits it too, `priority` names branches of parallel steps; and every state key
//! that concurrent writers can set (two branches of a parallel step, or the items of a map,
//! which run at once) has a contract, else both writers are named with their positions.

use std::collections::BTreeMap;

use baton_types::{Contract, Reducer, StepKind};

use super::Checker;
use crate::load::suggest::{list, paren_hint};
use crate::load::{index_path, key_path};
use crate::program::STATE_SET;

/// A `state.set` step's key: the key and the field path of its `with:` entry.
struct Write {
    key: String,
    path: String,
}

impl Checker<'_, '_> {
    pub(super) fn check_contracts(&mut self) {
        let doc = self.doc;
        for (key, c) in &doc.contracts {
            let at = key_path("contracts", key);
            self.check_contract(key, c, &at);
        }
        for i in 0..self.infos.len() {
            let step = self.infos[i].step;
            let concurrent = match &step.kind {
                StepKind::Parallel(p) => p.max_concurrency != Some(1),
                StepKind::Map(m) => m.max_concurrency != Some(1),
                _ => false,
            };
            if concurrent {
                self.check_concurrent_writes(i);
            }
        }
    }

    fn check_contract(&mut self, key: &str, c: &Contract, at: &str) {
        let t = c.state_type();
        if !c.reduce.fits_type(t) {
            let needs = Contract {
                kind: None,
                ..c.clone()
            }
            .state_type();
            self.error(
                key_path(at, "reduce"),
                format!(
                    "state key `{key}`: reducer `{}` does not fit `type: {}`: it works on `{}` values",
                    c.reduce.as_str(),
                    t.as_str(),
                    needs.as_str()
                ),
            );
        }
        if let Some(v) = self.doc.state.get(key)
            && !t.fits(v)
        {
            self.error(
                key_path("state", key),
                format!(
                    "the initial value of state key `{key}` is {}, but its contract says `type: {}`",
                    crate::machine::kind_of(v),
                    t.as_str()
                ),
            );
        }
        match (&c.priority, c.reduce) {
            (None, Reducer::LastWriterByPriority) => self.error(
                at.to_string(),
                format!("state key `{key}`: `last_writer_by_priority` needs `priority`: branch ids of a parallel step, highest first"),
            ),
            (Some(_), r) if r != Reducer::LastWriterByPriority => self.error(
                key_path(at, "priority"),
                format!("state key `{key}`: `priority` only applies to `reduce: last_writer_by_priority`, not `{}`", r.as_str()),
            ),
            (Some(order), _) => self.check_contract_priority(key, order, &key_path(at, "priority")),
            (None, _) => {}
        }
    }

    /// Every id in a contract's `priority` is a branch of some parallel step.
    fn check_contract_priority(&mut self, key: &str, order: &[String], at: &str) {
        let branches: Vec<&str> = self
            .infos
            .iter()
            .filter_map(|i| match &i.step.kind {
                StepKind::Parallel(p) => Some(p.branches.iter().map(|b| b.id.as_str())),
                _ => None,
            })
            .flatten()
            .collect();
        for (i, name) in order.iter().enumerate() {
            if !branches.contains(&name.as_str()) {
                self.error(
                    index_path(at, i),
                    format!(
                        "state key `{key}`: `{name}` in `priority` is not a branch of a parallel step (branches: {}){}",
                        list(branches.iter().copied()),
                        paren_hint(name, branches.iter().copied())
                    ),
                );
            }
        }
    }

    /// The keys `state.set` steps at or under step `i` write.
    fn writes_under(&self, i: usize, out: &mut Vec<Write>) {
        let info = &self.infos[i];
        if let StepKind::Tool(t) = &info.step.kind
            && t.tool == STATE_SET
        {
            let with = key_path(&info.path, "with");
            for key in t.with.iter().flat_map(|w| w.keys()) {
                out.push(Write {
                    key: key.clone(),
                    path: key_path(&with, key),
                });
            }
        }
        for &c in &self.children[i] {
            self.writes_under(c, out);
        }
    }

    fn position(&self, path: &str) -> String {
        let (line, col) = self.loaded.location(path);
        format!("line {line}:{col}")
    }

    /// Step `i` runs its children at once: a key that two branches (or a map's body, once
    /// per item) can write needs a contract.
    fn check_concurrent_writes(&mut self, i: usize) {
        let id = self.infos[i].step.id.clone();
        let is_map = matches!(self.infos[i].step.kind, StepKind::Map(_));
        // key -> its writers outside contracts: (branch, path), in document order.
        let mut writers: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
        for c in self.children[i].clone() {
            let mut writes = Vec::new();
            self.writes_under(c, &mut writes);
            for w in writes {
                if !self.doc.contracts.contains_key(&w.key) {
                    let branch = self.infos[c].step.id.clone();
                    writers.entry(w.key).or_default().push((branch, w.path));
                }
            }
        }
        for (key, ws) in writers {
            let fix = format!("declare `contracts: {{{key}: {{reduce: ...}}}}`");
            let (b1, p1) = &ws[0];
            if is_map {
                let m = format!(
                    "state key `{key}` is written by `{b1}` ({}) in the body of map `{id}`, whose items run at once, without a contract; {fix} (or give the map `max_concurrency: 1`)",
                    self.position(p1)
                );
                self.error(p1.clone(), m);
            } else if let Some((b2, p2)) = ws.iter().find(|(b, _)| b != b1) {
                let m = format!(
                    "state key `{key}` is written by parallel branches `{b1}` ({}) and `{b2}` ({}) without a contract; {fix}",
                    self.position(p1),
                    self.position(p2)
                );
                self.error(p2.clone(), m);
            }
        }
    }
}
