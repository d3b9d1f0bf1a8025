//! Finding things in the format's schema: the schema of the value at a path, the name of its
//! type.

use serde_json::Value;

#[derive(Clone, Debug)]
pub(super) enum Seg {
    Key(String),
    Index(usize),
}

pub(super) fn lookup<'v>(instance: &'v Value, segments: &[Seg]) -> Option<&'v Value> {
    segments.iter().try_fold(instance, |v, s| match s {
        Seg::Key(k) => v.get(k),
        Seg::Index(i) => v.get(i),
    })
}

/// Follows `$ref`s into `root`'s `$defs`.
pub(super) fn deref<'s>(root: &'s Value, mut node: &'s Value) -> &'s Value {
    for _ in 0..16 {
        match node
            .get("$ref")
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/$defs/"))
        {
            Some(name) => match root.get("$defs").and_then(|d| d.get(name)) {
                Some(n) => node = n,
                None => return node,
            },
            None => return node,
        }
    }
    node
}

/// The `T` of `anyOf: [T, null]`, else the node itself.
pub(super) fn non_null(root: &Value, node: &Value) -> Option<Value> {
    let node = deref(root, node);
    if let Some(branches) = node.get("anyOf").and_then(Value::as_array) {
        let mut others = branches
            .iter()
            .filter(|b| b.get("type").and_then(Value::as_str) != Some("null"));
        if let (Some(one), None) = (others.next(), others.next()) {
            return Some(deref(root, one).clone());
        }
    }
    Some(node.clone())
}

/// The schema (refs followed, nullable unwrapped) of the value at `segments`.
pub(super) fn node_at(root: &Value, start: &Value, segments: &[Seg]) -> Option<Value> {
    let mut node = non_null(root, start)?;
    for s in segments {
        let next = match s {
            Seg::Key(k) => node
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| node.get("additionalProperties").filter(|a| a.is_object()))?,
            Seg::Index(_) => node.get("items")?,
        };
        node = non_null(root, next)?;
    }
    Some(node)
}

/// The `$defs` name of the type at `segments`, when it has one.
pub(super) fn def_name(root: &Value, start: &Value, segments: &[Seg]) -> Option<String> {
    let mut node = start;
    let mut name = ref_name(node);
    for s in segments {
        let here = deref(root, unwrap_any(root, node));
        node = match s {
            Seg::Key(k) => here
                .get("properties")
                .and_then(|p| p.get(k))
                .or_else(|| here.get("additionalProperties").filter(|a| a.is_object()))?,
            Seg::Index(_) => here.get("items")?,
        };
        name = ref_name(unwrap_any(root, node));
    }
    name
}

pub(super) fn unwrap_any<'s>(root: &'s Value, node: &'s Value) -> &'s Value {
    let node = deref(root, node)
        .get("anyOf")
        .map(|_| deref(root, node))
        .unwrap_or(node);
    match node.get("anyOf").and_then(Value::as_array) {
        Some(b) => b
            .iter()
            .find(|b| b.get("type").and_then(Value::as_str) != Some("null"))
            .unwrap_or(node),
        None => node,
    }
}

/// The name of the `$defs` entry that is exactly `node`.
pub(super) fn def_of<'s>(root: &'s Value, node: &Value) -> Option<&'s str> {
    root.get("$defs")?
        .as_object()?
        .iter()
        .find(|(_, d)| *d == node)
        .map(|(k, _)| k.as_str())
}

pub(super) fn ref_name(node: &Value) -> Option<String> {
    node.get("$ref")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("#/$defs/"))
        .map(str::to_string)
}
