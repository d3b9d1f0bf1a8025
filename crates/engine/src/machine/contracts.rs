//! Merge contracts at run time: a `state.set` of a key with a contract combines the value
//! written with the key's current one by the contract's reducer, and the `state_set` event
//! logs the result, so a replay sets exactly the same value. A value that does not fit the
//! contract's type fails the step.
//!
//! `last_writer_by_priority` remembers which branch wrote a key last ([`StateOwner`]): within
//! one visit of a parallel step, a write from a branch lower in `priority` than the one that
//! wrote before leaves the value as it is, so the highest branch wins whatever order writes
//! arrive in. A write from outside the listed branches simply replaces the value.

use baton_types::{Contract, Event, Reducer, StepError, StepErrorKind, StepKind, StepPath};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use super::Machine;
use super::state::{FanKind, Frame, FrameId, RunState};
use super::sync::kind_of;

/// The branch that wrote a `last_writer_by_priority` key last.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct StateOwner {
    /// The parallel step instance whose branch wrote it, and that step's visit.
    pub parallel: String,
    pub visit: u32,
    pub branch: String,
    /// The branch's place in `priority` (0: highest).
    pub rank: usize,
}

impl Machine<'_> {
    /// The `state_set` events of a `state.set` step's keys (`writes`), each combined with the
    /// key's current value by its contract.
    pub(super) fn state_writes(
        &self,
        st: &RunState,
        step: &str,
        writes: &Map<String, Value>,
    ) -> Result<Vec<Event>, StepError> {
        let contracts = &self.program.doc.contracts;
        writes
            .iter()
            .map(|(key, v)| {
                let value = match contracts.get(key) {
                    None => v.clone(),
                    Some(c) => self.combine(st, step, key, c, v)?,
                };
                Ok(Event::StateSet {
                    key: key.clone(),
                    value,
                    writer: Some(step.to_string()),
                })
            })
            .collect()
    }

    /// The value `key` takes when `step` writes `v`.
    fn combine(
        &self,
        st: &RunState,
        step: &str,
        key: &str,
        c: &Contract,
        v: &Value,
    ) -> Result<Value, StepError> {
        let t = c.state_type();
        let current = st.state.get(key);
        let bad = |what: String| {
            StepError::fatal(
                StepErrorKind::Execution,
                format!(
                    "state key `{key}` (contract `type: {}`, `reduce: {}`): {what}",
                    t.as_str(),
                    c.reduce.as_str()
                ),
            )
        };
        let wrote = |v: &Value| format!("the step wrote {} ({v})", kind_of(v));
        // `append` takes any item; every other reducer takes values of the key's type.
        if c.reduce != Reducer::Append && !t.fits(v) {
            return Err(bad(wrote(v)));
        }
        if let Some(cur) = current
            && !t.fits(cur)
        {
            return Err(bad(format!("its current value is {}", kind_of(cur))));
        }
        let out = match c.reduce {
            Reducer::Replace => v.clone(),
            Reducer::Append => {
                let mut list = current
                    .and_then(Value::as_array)
                    .cloned()
                    .unwrap_or_default();
                match v {
                    Value::Array(items) => list.extend(items.iter().cloned()),
                    item => list.push(item.clone()),
                }
                Value::Array(list)
            }
            Reducer::Merge => {
                let mut acc = current
                    .and_then(Value::as_object)
                    .cloned()
                    .unwrap_or_default();
                if let Value::Object(m) = v {
                    deep_merge(&mut acc, m, "").map_err(bad)?;
                }
                Value::Object(acc)
            }
            Reducer::Sum | Reducer::Max | Reducer::Min => match current {
                None => v.clone(),
                Some(cur) => arithmetic(c.reduce, cur, v),
            },
            Reducer::LastWriterByPriority => {
                match (self.contest(st, Some(step), key, c).0, current) {
                    (true, Some(cur)) => cur.clone(),
                    _ => v.clone(),
                }
            }
        };
        if !t.fits(&out) {
            return Err(bad(format!("the result would be {}", kind_of(&out))));
        }
        Ok(out)
    }

    /// The fold's part of a `state_set`: who now holds a `last_writer_by_priority` key.
    pub(super) fn note_state_owner(&self, st: &mut RunState, key: &str, writer: Option<&str>) {
        let Some(c) = self.program.doc.contracts.get(key) else {
            return;
        };
        if c.reduce != Reducer::LastWriterByPriority {
            return;
        }
        match self.contest(st, writer, key, c) {
            (true, _) => {}
            (false, Some(w)) => {
                st.state_owners.insert(key.to_string(), w);
            }
            (false, None) => {
                st.state_owners.remove(key);
            }
        }
    }

    /// Whether a write of `key` by step instance `writer` loses to the branch that holds the
    /// key (same visit of the same parallel step, higher in `priority`), and the writer's
    /// branch when it is listed.
    fn contest(
        &self,
        st: &RunState,
        writer: Option<&str>,
        key: &str,
        c: &Contract,
    ) -> (bool, Option<StateOwner>) {
        let w = writer.and_then(|s| self.writer_rank(st, s, c));
        let loses = match (st.state_owners.get(key), &w) {
            (Some(held), Some(w)) => {
                w.parallel == held.parallel && w.visit == held.visit && w.rank > held.rank
            }
            _ => false,
        };
        (loses, w)
    }

    /// The innermost parallel branch around `step` listed in `c.priority`, with its rank.
    fn writer_rank(&self, st: &RunState, step: &str, c: &Contract) -> Option<StateOwner> {
        let order = c.priority.as_deref().unwrap_or_default();
        let mut frame: FrameId = st.locate(step)?;
        loop {
            let (fan_id, slot) = st.seq(frame)?.fan?;
            let Some(Frame::Fan(fan)) = st.frames.get(&fan_id).map(Box::as_ref) else {
                return None;
            };
            if fan.kind == FanKind::Parallel
                && let Some(branch) = self.branch_id(&fan.step, slot)
                && let Some(rank) = order.iter().position(|b| *b == branch)
            {
                return Some(StateOwner {
                    parallel: fan.step.clone(),
                    visit: st.visits.get(&fan.step).copied().unwrap_or(0),
                    branch,
                    rank,
                });
            }
            frame = fan.host;
        }
    }

    /// The id of branch `slot` of parallel step instance `step`.
    fn branch_id(&self, step: &str, slot: usize) -> Option<String> {
        let node = self.program.node_by_id(StepPath::parse(step).id())?;
        match &node.step.kind {
            StepKind::Parallel(p) => p.branches.get(slot).map(|b| b.id.clone()),
            _ => None,
        }
    }
}

/// `sum`, `max` or `min` of two numbers (integers stay integers while they fit).
fn arithmetic(r: Reducer, a: &Value, b: &Value) -> Value {
    if let (Some(x), Some(y)) = (a.as_i64(), b.as_i64()) {
        let n = match r {
            Reducer::Sum => x.checked_add(y),
            Reducer::Max => Some(x.max(y)),
            _ => Some(x.min(y)),
        };
        if let Some(n) = n {
            return Value::from(n);
        }
    }
    let (x, y) = (a.as_f64().unwrap_or(0.0), b.as_f64().unwrap_or(0.0));
    let n = match r {
        Reducer::Sum => x + y,
        Reducer::Max => x.max(y),
        _ => x.min(y),
    };
    serde_json::Number::from_f64(n).map_or(Value::Null, Value::Number)
}

/// Deep-merges `m` into `acc`; a key already holding another non-object value is a conflict,
/// described with its path and both values.
fn deep_merge(
    acc: &mut Map<String, Value>,
    m: &Map<String, Value>,
    at: &str,
) -> Result<(), String> {
    for (k, v) in m {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match acc.get_mut(k) {
            None => {
                acc.insert(k.clone(), v.clone());
            }
            Some(Value::Object(mine)) if v.is_object() => {
                if let Value::Object(theirs) = v {
                    deep_merge(mine, theirs, &path)?;
                }
            }
            Some(mine) if mine == v => {}
            Some(mine) => return Err(format!("merge conflict at `{path}`: {mine} and {v}")),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
