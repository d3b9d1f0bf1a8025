//! Dependency manifests against a local advisory list (no network: the list is a file an
//! admin keeps up to date).
//!
//! The list is JSON: `[{"id": "GHSA-...", "ecosystem": "pypi"|"npm", "package": "name",
//! "versions": ["1.0.0"], "below": "2.0.0", "severity": "high", "summary": "..."}]`; a pinned
//! version is affected when it is listed in `versions` or lower than `below`.

use std::cmp::Ordering;
use std::path::Path;

use serde::Deserialize;

use super::{Finding, Severity};
use crate::Error;

#[derive(Clone, Debug, Deserialize)]
pub struct Advisory {
    pub id: String,
    pub ecosystem: String,
    pub package: String,
    #[serde(default)]
    pub versions: Vec<String>,
    #[serde(default)]
    pub below: Option<String>,
    #[serde(default = "default_sev")]
    pub severity: Severity,
    #[serde(default)]
    pub summary: String,
}

fn default_sev() -> Severity {
    Severity::High
}

pub fn load_advisories(path: &Path) -> Result<Vec<Advisory>, Error> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Error::InvalidPolicy(format!("cannot read advisory list {}: {e}", path.display()))
    })?;
    serde_json::from_str(&text)
        .map_err(|e| Error::InvalidPolicy(format!("advisory list {}: {e}", path.display())))
}

fn normalise(name: &str) -> String {
    name.trim().to_ascii_lowercase().replace('_', "-")
}

/// Compares dotted versions numerically (`1.10` > `1.9`); non-numeric parts compare as text.
pub fn cmp_versions(a: &str, b: &str) -> Ordering {
    let pa: Vec<&str> = a.split(['.', '-', '+']).collect();
    let pb: Vec<&str> = b.split(['.', '-', '+']).collect();
    for i in 0..pa.len().max(pb.len()) {
        let (x, y) = (
            pa.get(i).copied().unwrap_or("0"),
            pb.get(i).copied().unwrap_or("0"),
        );
        let o = match (x.parse::<u64>(), y.parse::<u64>()) {
            (Ok(x), Ok(y)) => x.cmp(&y),
            _ => x.cmp(y),
        };
        if o != Ordering::Equal {
            return o;
        }
    }
    Ordering::Equal
}

/// (package, version, line) pins found in a manifest.
pub fn pins(kind: &str, text: &str) -> Vec<(String, String, usize)> {
    let mut out = Vec::new();
    match kind {
        "requirements.txt" => {
            for (i, l) in text.lines().enumerate() {
                let l = l.split('#').next().unwrap_or("").trim();
                if let Some((name, ver)) = l.split_once("==") {
                    let name = name.split('[').next().unwrap_or(name);
                    let ver = ver.split([';', ' ', ',']).next().unwrap_or("").trim();
                    if !name.is_empty() && !ver.is_empty() {
                        out.push((normalise(name), ver.to_string(), i + 1));
                    }
                }
            }
        }
        "package.json" => {
            let Ok(v) = serde_json::from_str::<serde_json::Value>(text) else {
                return out;
            };
            for section in ["dependencies", "devDependencies", "optionalDependencies"] {
                if let Some(m) = v[section].as_object() {
                    for (name, ver) in m {
                        let Some(ver) = ver.as_str() else { continue };
                        let ver = ver.trim_start_matches(['^', '~', '=', '>', 'v', ' ']);
                        if ver.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                            let line = text
                                .lines()
                                .position(|l| l.contains(&format!("\"{name}\"")))
                                .map(|p| p + 1)
                                .unwrap_or(1);
                            out.push((name.to_ascii_lowercase(), ver.to_string(), line));
                        }
                    }
                }
            }
        }
        _ => {}
    }
    out
}

/// Findings for the pins of one manifest (`requirements.txt` or `package.json`).
pub fn check_manifest(kind: &str, file: &str, text: &str, advisories: &[Advisory]) -> Vec<Finding> {
    let eco = match kind {
        "requirements.txt" => "pypi",
        "package.json" => "npm",
        _ => return Vec::new(),
    };
    let mut out = Vec::new();
    for (name, ver, line) in pins(kind, text) {
        for a in advisories
            .iter()
            .filter(|a| a.ecosystem.eq_ignore_ascii_case(eco) && normalise(&a.package) == name)
        {
            let hit = a.versions.iter().any(|v| v == &ver)
                || a.below
                    .as_deref()
                    .is_some_and(|b| cmp_versions(&ver, b) == Ordering::Less);
            if hit {
                out.push(Finding {
                    rule: format!("ADV:{}", a.id),
                    severity: a.severity,
                    file: file.into(),
                    line,
                    message: format!("{name} {ver} is affected: {}", a.summary),
                    fix: match &a.below {
                        Some(b) => format!("upgrade {name} to {b} or later"),
                        None => format!("upgrade {name} to a version not listed in {}", a.id),
                    },
                    tool: "advisories".into(),
                });
            }
        }
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    fn adv() -> Vec<Advisory> {
        serde_json::from_str(r#"[
            {"id": "ADV-1", "ecosystem": "pypi", "package": "PyYAML", "below": "5.4", "summary": "arbitrary code"},
            {"id": "ADV-2", "ecosystem": "npm", "package": "lodash", "versions": ["4.17.15"], "severity": "medium", "summary": "prototype pollution"}
        ]"#).unwrap()
    }

    #[test]
    fn versions_compare_numerically() {
        assert_eq!(cmp_versions("5.3.1", "5.4"), Ordering::Less);
        assert_eq!(cmp_versions("5.10", "5.9"), Ordering::Greater);
        assert_eq!(cmp_versions("1.0", "1.0.0"), Ordering::Equal);
    }

    #[test]
    fn manifests_are_checked() {
        let f = check_manifest(
            "requirements.txt",
            "r.txt",
            "requests==2.31.0\npyyaml==5.3.1  # old\n",
            &adv(),
        );
        assert_eq!(f.len(), 1);
        assert_eq!((f[0].rule.as_str(), f[0].line), ("ADV:ADV-1", 2));
        assert!(check_manifest("requirements.txt", "r.txt", "pyyaml==6.0\n", &adv()).is_empty());
        let f = check_manifest(
            "package.json",
            "p.json",
            "{\n \"dependencies\": {\n  \"lodash\": \"^4.17.15\"\n }\n}",
            &adv(),
        );
        assert_eq!(
            (f.len(), f[0].severity, f[0].line),
            (1, Severity::Medium, 3)
        );
    }
}
