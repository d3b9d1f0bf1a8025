//! YAML policy files, read with yaml-rust2 and turned into JSON values.

use serde_json::{Map, Number, Value};
use yaml_rust2::{Yaml, YamlLoader};

pub fn to_json(text: &str) -> Result<Value, String> {
    let docs = YamlLoader::load_from_str(text).map_err(|e| e.to_string())?;
    match docs.into_iter().next() {
        Some(doc) => convert(doc),
        None => Ok(Value::Object(Map::new())),
    }
}

fn convert(y: Yaml) -> Result<Value, String> {
    Ok(match y {
        Yaml::Real(s) => s
            .parse::<f64>()
            .ok()
            .and_then(Number::from_f64)
            .map(Value::Number)
            .unwrap_or(Value::String(s)),
        Yaml::Integer(i) => Value::Number(i.into()),
        Yaml::String(s) => Value::String(s),
        Yaml::Boolean(b) => Value::Bool(b),
        Yaml::Array(a) => Value::Array(a.into_iter().map(convert).collect::<Result<_, _>>()?),
        Yaml::Hash(h) => {
            let mut m = Map::new();
            for (k, v) in h {
                let key = match k {
                    Yaml::String(s) => s,
                    Yaml::Integer(i) => i.to_string(),
                    other => return Err(format!("mapping keys must be strings, found {other:?}")),
                };
                m.insert(key, convert(v)?);
            }
            Value::Object(m)
        }
        Yaml::Null => Value::Null,
        Yaml::Alias(_) => return Err("YAML aliases are not supported in policy files".into()),
        Yaml::BadValue => return Err("malformed YAML value".into()),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    #[test]
    fn yaml_policy_converts() {
        let v = super::to_json(
            "tier: process\nmemory: 64M\npids: 8\nruntimes: [python3]\nscan: {high: warn}\n",
        )
        .unwrap();
        assert_eq!(v["pids"], 8);
        assert_eq!(v["runtimes"][0], "python3");
        assert_eq!(v["scan"]["high"], "warn");
    }
}
