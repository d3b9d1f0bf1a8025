//! Conflict resolution of parallel branches that disagree: the `vote`, `priority` and `merge`
//! joins. Each waits for every branch; failed branches take no part. The decision (the winning
//! branch, the other candidates, why) is logged as a `join_decided` progress note before the
//! step ends, and follows from the branches' outcomes alone, so a replay decides the same.

use std::collections::BTreeMap;

use baton_types::{
    JoinSpec, JoinStrategy, OnConflict, Progress, StepError, StepErrorKind, TieBreak,
};
use serde_json::{Map, Value};

use super::state::{FanFrame, Outcome};

/// A decided join: the step's outcome and the record of how it was reached.
pub(super) type Resolved = (Outcome, Progress);

/// The successful branches, in document order: (slot, output).
fn successes(fan: &FanFrame) -> Vec<(usize, &Value)> {
    fan.results
        .iter()
        .enumerate()
        .filter_map(|(i, r)| Some((i, r.as_ref()?.as_ref().ok()?)))
        .collect()
}

/// Decides a `vote`, `priority` or `merge` join once every branch ended.
pub(super) fn resolve(fan: &FanFrame, names: &[String], spec: &JoinSpec) -> Option<Resolved> {
    if !fan.results.iter().all(Option::is_some) {
        return None;
    }
    let name = |i: usize| names.get(i).cloned().unwrap_or_else(|| i.to_string());
    let ok = successes(fan);
    if ok.is_empty() {
        let reason = format!(
            "no branch succeeded ({})",
            super::join::branch_errors(fan, names)
        );
        return Some(failed(spec.strategy, reason, Vec::new()));
    }
    let order = priority_order(names, spec.priority.as_deref(), fan.results.len());
    Some(match spec.strategy {
        JoinStrategy::Vote => vote(&ok, &name, spec.tie_break.unwrap_or_default()),
        JoinStrategy::Merge => merge(&ok, &name, &order, spec.on_conflict.unwrap_or_default()),
        _ => priority(&ok, &name, &order),
    })
}

fn failed(strategy: JoinStrategy, reason: String, losers: Vec<String>) -> Resolved {
    let e = StepError::fatal(StepErrorKind::Branch, reason.clone());
    let note = Progress::JoinDecided {
        strategy,
        winner: None,
        losers,
        reason,
    };
    (Err(e), note)
}

fn decided(
    strategy: JoinStrategy,
    winner: String,
    losers: Vec<String>,
    reason: String,
) -> Progress {
    Progress::JoinDecided {
        strategy,
        winner: Some(winner),
        losers,
        reason,
    }
}

/// Slots, highest priority first: the listed branches, then the others in document order.
fn priority_order(names: &[String], listed: Option<&[String]>, slots: usize) -> Vec<usize> {
    let mut order: Vec<usize> = listed
        .unwrap_or_default()
        .iter()
        .filter_map(|id| names.iter().position(|n| n == id))
        .collect();
    let rest: Vec<usize> = (0..slots).filter(|i| !order.contains(i)).collect();
    order.extend(rest);
    order
}

/// The form outputs are compared in: strings trimmed and case-folded, JSON with sorted keys.
pub(super) fn normalised(v: &Value) -> String {
    match v {
        Value::String(s) => Value::String(s.trim().to_lowercase()).to_string(),
        other => canonical(other),
    }
}

fn canonical(v: &Value) -> String {
    match v {
        Value::Object(m) => {
            let sorted: BTreeMap<&String, String> =
                m.iter().map(|(k, v)| (k, canonical(v))).collect();
            let parts: Vec<String> = sorted
                .iter()
                .map(|(k, v)| format!("{}:{v}", Value::String((*k).clone())))
                .collect();
            format!("{{{}}}", parts.join(","))
        }
        Value::Array(a) => {
            let parts: Vec<String> = a.iter().map(canonical).collect();
            format!("[{}]", parts.join(","))
        }
        other => other.to_string(),
    }
}

fn vote(ok: &[(usize, &Value)], name: &dyn Fn(usize) -> String, tie: TieBreak) -> Resolved {
    // Groups of agreeing branches, in order of their first member.
    let mut groups: Vec<(String, Vec<usize>)> = Vec::new();
    for &(i, v) in ok {
        let key = normalised(v);
        match groups.iter_mut().find(|(k, _)| *k == key) {
            Some((_, members)) => members.push(i),
            None => groups.push((key, vec![i])),
        }
    }
    let most = groups.iter().map(|(_, m)| m.len()).max().unwrap_or(0);
    let tied: Vec<&Vec<usize>> = groups
        .iter()
        .map(|(_, m)| m)
        .filter(|m| m.len() == most)
        .collect();
    let list = |m: &[usize]| m.iter().map(|&i| name(i)).collect::<Vec<_>>().join(", ");
    let tally = groups
        .iter()
        .map(|(_, m)| list(m))
        .collect::<Vec<_>>()
        .join(" | ");
    let all: Vec<String> = ok.iter().map(|&(i, _)| name(i)).collect();
    if tied.len() > 1 && tie == TieBreak::Fail {
        let reason = format!("vote tied at {most} each: {tally} (tie_break: fail)");
        return failed(JoinStrategy::Vote, reason, all);
    }
    let Some(win) = tied.first() else {
        return failed(JoinStrategy::Vote, "no votes".into(), all);
    };
    let first = win[0];
    let output = ok
        .iter()
        .find(|&&(i, _)| i == first)
        .map_or(Value::Null, |&(_, v)| v.clone());
    let losers: Vec<String> = ok
        .iter()
        .filter(|(i, _)| !win.contains(i))
        .map(|&(i, _)| name(i))
        .collect();
    let mut reason = format!("{most} of {} votes: {tally}", ok.len());
    if tied.len() > 1 {
        reason.push_str("; tie broken by tie_break: first");
    }
    (
        Ok(output),
        decided(JoinStrategy::Vote, name(first), losers, reason),
    )
}

fn priority(ok: &[(usize, &Value)], name: &dyn Fn(usize) -> String, order: &[usize]) -> Resolved {
    let ranked: Vec<(usize, &Value)> = order
        .iter()
        .filter_map(|&i| ok.iter().find(|&&(j, _)| j == i).copied())
        .collect();
    let Some(&(first, output)) = ranked.first() else {
        return failed(
            JoinStrategy::Priority,
            "no branch succeeded".into(),
            Vec::new(),
        );
    };
    let skipped: Vec<String> = order
        .iter()
        .take_while(|&&i| i != first)
        .map(|&i| name(i))
        .collect();
    let mut reason = "the highest-priority branch that succeeded".to_string();
    if !skipped.is_empty() {
        reason.push_str(&format!("; failed before it: {}", skipped.join(", ")));
    }
    let losers = ranked[1..].iter().map(|&(i, _)| name(i)).collect();
    (
        Ok(output.clone()),
        decided(JoinStrategy::Priority, name(first), losers, reason),
    )
}

/// One key two branches set to different values.
struct Conflict {
    path: String,
    kept: String,
    other: String,
}

fn merge(
    ok: &[(usize, &Value)],
    name: &dyn Fn(usize) -> String,
    order: &[usize],
    on_conflict: OnConflict,
) -> Resolved {
    if let Some(&(i, v)) = ok.iter().find(|(_, v)| !v.is_object()) {
        let reason = format!(
            "branch '{}' gave {}, not an object: a merge join needs objects",
            name(i),
            super::sync::kind_of(v)
        );
        return failed(JoinStrategy::Merge, reason, Vec::new());
    }
    // With `priority`, the highest first: what is merged first is kept on a conflict.
    let ranked: Vec<(usize, &Value)> = match on_conflict {
        OnConflict::Priority => order
            .iter()
            .filter_map(|&i| ok.iter().find(|&&(j, _)| j == i).copied())
            .collect(),
        OnConflict::Fail => ok.to_vec(),
    };
    let mut acc = Map::new();
    let mut owners = BTreeMap::new();
    let mut conflicts = Vec::new();
    for &(i, v) in &ranked {
        if let Value::Object(m) = v {
            merge_into(&mut acc, m, "", &name(i), &mut owners, &mut conflicts);
        }
    }
    let word = match on_conflict {
        OnConflict::Fail => "and",
        OnConflict::Priority => "over",
    };
    let shown: Vec<String> = conflicts
        .iter()
        .map(|c| format!("`{}` ({} {word} {})", c.path, c.kept, c.other))
        .collect();
    let branches: Vec<String> = ranked.iter().map(|&(i, _)| name(i)).collect();
    if !conflicts.is_empty() && on_conflict == OnConflict::Fail {
        let reason = format!("merge conflict at {}", shown.join(", "));
        return failed(JoinStrategy::Merge, reason, branches);
    }
    let mut losers: Vec<String> = conflicts.iter().map(|c| c.other.clone()).collect();
    losers.dedup();
    let mut reason = format!("merged {}", branches.join(", "));
    if !conflicts.is_empty() {
        reason.push_str(&format!(
            "; conflicts settled by priority: {}",
            shown.join(", ")
        ));
    }
    let winner = branches.first().cloned().unwrap_or_default();
    (
        Ok(Value::Object(acc)),
        decided(JoinStrategy::Merge, winner, losers, reason),
    )
}

/// Deep-merges `m` (from `branch`) into `acc`; keys already set with a different value are
/// kept and noted as conflicts. `owners` remembers which branch set each path.
fn merge_into(
    acc: &mut Map<String, Value>,
    m: &Map<String, Value>,
    at: &str,
    branch: &str,
    owners: &mut BTreeMap<String, String>,
    conflicts: &mut Vec<Conflict>,
) {
    for (k, v) in m {
        let path = if at.is_empty() {
            k.clone()
        } else {
            format!("{at}.{k}")
        };
        match acc.get_mut(k) {
            None => {
                acc.insert(k.clone(), v.clone());
                owners.insert(path, branch.to_string());
            }
            Some(Value::Object(mine)) if v.is_object() => {
                if let Value::Object(theirs) = v {
                    merge_into(mine, theirs, &path, branch, owners, conflicts);
                }
            }
            Some(mine) if canonical(mine) == canonical(v) => {}
            Some(_) => {
                let kept = owner(owners, &path);
                conflicts.push(Conflict {
                    path,
                    kept,
                    other: branch.to_string(),
                });
            }
        }
    }
}

/// The branch that set `path` or the object holding it.
fn owner(owners: &BTreeMap<String, String>, path: &str) -> String {
    let mut p = path;
    loop {
        if let Some(b) = owners.get(p) {
            return b.clone();
        }
        match p.rfind('.') {
            Some(cut) => p = &p[..cut],
            None => return String::new(),
        }
    }
}

#[cfg(test)]
mod tests;
