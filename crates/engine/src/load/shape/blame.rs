//! The field that made decoding fail, when the schema let it through.

use baton_types::{StepFields, WorkflowDoc};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::load::{index_path, key_path};

/// Finds the field that made deserialization fail (the schema lets a few values through that
/// serde refuses, such as `10 parsecs` as a duration).
pub(super) fn blame(doc: &Value) -> Option<(String, String)> {
    let obj = doc.as_object()?;
    for (key, v) in obj {
        let path = key_path("", key);
        let found = match key.as_str() {
            "steps" => blame_steps(v, &path),
            "agents" => blame_entries::<baton_types::AgentSpec>(v, &path, "model", json!("x/y")),
            "inputs" => blame_entries::<baton_types::InputSpec>(v, &path, "type", json!("string")),
            _ => None,
        };
        if found.is_some() {
            return found;
        }
        let mut only = serde_json::Map::new();
        only.insert("version".into(), json!(1));
        only.insert("name".into(), json!("x"));
        only.insert("steps".into(), json!([]));
        only.insert(key.clone(), v.clone());
        if let Err(e) = serde_json::from_value::<WorkflowDoc<StepFields>>(Value::Object(only)) {
            return Some((path, e.to_string()));
        }
    }
    None
}

fn blame_steps(list: &Value, path: &str) -> Option<(String, String)> {
    for (i, step) in list.as_array()?.iter().enumerate() {
        let sp = index_path(path, i);
        let Some(fields) = step.as_object() else {
            continue;
        };
        for (k, v) in fields {
            let fp = key_path(&sp, k);
            if k == "parallel" || k == "steps" {
                if let Some(found) = blame_steps(v, &fp) {
                    return Some(found);
                }
                continue;
            }
            if k == "id" {
                continue;
            }
            if let Err(e) = from::<StepFields>(json!({ "id": "x", k.as_str(): v })) {
                return Some((fp, e));
            }
        }
    }
    None
}

fn blame_entries<T: DeserializeOwned>(
    map: &Value,
    path: &str,
    required: &str,
    filler: Value,
) -> Option<(String, String)> {
    for (name, entry) in map.as_object()? {
        let ep = key_path(path, name);
        for (k, v) in entry.as_object()? {
            let mut one = serde_json::Map::new();
            one.insert(required.into(), filler.clone());
            one.insert(k.clone(), v.clone());
            if let Err(e) = from::<T>(Value::Object(one)) {
                return Some((key_path(&ep, k), e));
            }
        }
    }
    None
}

fn from<T: DeserializeOwned>(v: Value) -> Result<T, String> {
    serde_json::from_value(v).map_err(|e| e.to_string())
}
