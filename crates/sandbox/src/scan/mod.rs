//! The security scanner: checks code before it runs. Built-in rules over tree-sitter syntax
//! trees for Python, JavaScript/TypeScript and shell; Bandit and Semgrep as external tools
//! when installed; dependency manifests against a local advisory list when one is configured.
//! Findings are merged into one [`Report`]; the policy decides, per severity, `block`, `warn`
//! or `off`.
// This crate starts processes (ARCHITECTURE §2): here Bandit and Semgrep, when installed.
#![allow(clippy::disallowed_methods)]

mod advisories;
mod rules;

use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::Error;
use crate::policy::{Policy, ScanAction};

pub use advisories::{Advisory, check_manifest, load_advisories};
pub use rules::RULES;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Low,
    Medium,
    High,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
        }
    }
}

impl fmt::Display for Severity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Source languages the built-in rules understand.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Lang {
    Python,
    JavaScript,
    TypeScript,
    Tsx,
    Shell,
}

impl Lang {
    /// By extension, else by shebang.
    pub fn detect(name: &str, text: &str) -> Option<Lang> {
        let ext = Path::new(name)
            .extension()
            .and_then(|e| e.to_str())
            .unwrap_or("");
        match ext {
            "py" | "pyw" => return Some(Lang::Python),
            "js" | "mjs" | "cjs" | "jsx" => return Some(Lang::JavaScript),
            "ts" | "mts" | "cts" => return Some(Lang::TypeScript),
            "tsx" => return Some(Lang::Tsx),
            "sh" | "bash" => return Some(Lang::Shell),
            _ => {}
        }
        let first = text.lines().next().unwrap_or("");
        if !first.starts_with("#!") {
            return None;
        }
        if first.contains("python") {
            Some(Lang::Python)
        } else if first.contains("node") || first.contains("deno") {
            Some(Lang::JavaScript)
        } else if ["sh", "bash", "dash", "zsh", "ksh"].iter().any(|s| {
            first.ends_with(&format!("/{s}"))
                || first.contains(&format!("/{s} "))
                || first.contains(&format!("env {s}"))
        }) {
            Some(Lang::Shell)
        } else {
            None
        }
    }
}

/// One problem found.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// `PY001`, `bandit:B602`, `semgrep:<id>`, `ADV:<advisory id>`...
    pub rule: String,
    pub severity: Severity,
    pub file: String,
    pub line: usize,
    pub message: String,
    /// How to fix it.
    pub fix: String,
    /// `baton`, `bandit`, `semgrep` or `advisories`.
    pub tool: String,
}

/// Everything one scan found, and what ran.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Report {
    pub findings: Vec<Finding>,
    pub files_scanned: usize,
    /// Tools that ran (always `baton`).
    pub tools: Vec<String>,
    /// Tools that did not run, and why.
    pub skipped: Vec<String>,
}

/// What the policy makes of a report.
#[derive(Clone, Debug, Default, Serialize)]
pub struct Decision {
    pub blocked: Vec<Finding>,
    pub warnings: Vec<Finding>,
}

impl Report {
    pub fn decide(&self, policy: &Policy) -> Decision {
        let mut d = Decision::default();
        for f in &self.findings {
            match policy.scan_action(f.severity.as_str()) {
                ScanAction::Block => d.blocked.push(f.clone()),
                ScanAction::Warn => d.warnings.push(f.clone()),
                ScanAction::Off => {}
            }
        }
        d
    }

    fn sort(&mut self) {
        self.findings
            .sort_by(|a, b| (&a.file, a.line, &a.rule).cmp(&(&b.file, b.line, &b.rule)));
        self.findings.dedup();
    }
}

impl fmt::Display for Finding {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}:{}: [{}] {} {}: {} (fix: {})",
            self.file, self.line, self.severity, self.tool, self.rule, self.message, self.fix
        )
    }
}

/// Runs the built-in rules on one source text.
pub fn scan_source(lang: Lang, file: &str, text: &str) -> Vec<Finding> {
    rules::scan(lang, file, text)
}

/// Options for [`scan_path`].
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Also run Bandit and Semgrep when installed.
    pub external: bool,
    /// An advisory list (JSON) to check requirements.txt / package.json against.
    pub advisories: Option<PathBuf>,
}

const MAX_FILE: u64 = 2 << 20;

/// Scans a file or a directory tree (skipping `.git`, `node_modules`, virtualenvs and files
/// over 2 MiB).
pub fn scan_path(path: &Path, opts: &Options) -> Result<Report, Error> {
    if !path.exists() {
        return Err(Error::InvalidRequest(format!(
            "{} does not exist",
            path.display()
        )));
    }
    let mut report = Report {
        tools: vec!["baton".into()],
        ..Default::default()
    };
    let mut files = Vec::new();
    collect(path, &mut files)?;
    let advisories = match &opts.advisories {
        Some(p) => Some(load_advisories(p)?),
        None => None,
    };
    for f in &files {
        let name = f.display().to_string();
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        let base = f.file_name().and_then(|n| n.to_str()).unwrap_or("");
        if let Some(adv) = &advisories
            && (base == "requirements.txt" || base == "package.json")
        {
            report
                .findings
                .extend(check_manifest(base, &name, &text, adv));
        }
        if let Some(lang) = Lang::detect(&name, &text) {
            report.files_scanned += 1;
            report.findings.extend(rules::scan(lang, &name, &text));
        }
    }
    if opts.external {
        external(path, &mut report);
    }
    report.sort();
    Ok(report)
}

/// Scans in-memory files (a tool call's or a request's files) with the built-in rules and the
/// advisory list of the policy, and applies the policy: `Err(Blocked)` when it blocks.
pub fn check(
    policy: &Policy,
    files: &BTreeMap<String, String>,
    argv: &[String],
) -> Result<Report, Error> {
    let mut report = Report {
        tools: vec!["baton".into()],
        ..Default::default()
    };
    let advisories = match &policy.advisories {
        Some(p) => Some(load_advisories(p)?),
        None => None,
    };
    for (name, text) in files {
        if let Some(adv) = &advisories {
            let base = Path::new(name)
                .file_name()
                .and_then(|n| n.to_str())
                .unwrap_or("");
            report
                .findings
                .extend(check_manifest(base, name, text, adv));
        }
        if let Some(lang) = Lang::detect(name, text) {
            report.files_scanned += 1;
            report.findings.extend(rules::scan(lang, name, text));
        }
    }
    // Inline code: `python3 -c CODE`, `node -e CODE`, `sh -c CODE`.
    if argv.len() >= 3 {
        let prog = Path::new(&argv[0])
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or("");
        let lang = match (prog, argv[1].as_str()) {
            (p, "-c") if p.starts_with("python") => Some(Lang::Python),
            ("node", "-e" | "--eval") => Some(Lang::JavaScript),
            ("sh" | "bash" | "dash", "-c") => Some(Lang::Shell),
            _ => None,
        };
        if let Some(lang) = lang {
            report.files_scanned += 1;
            report
                .findings
                .extend(rules::scan(lang, "<command line>", &argv[2]));
        }
    }
    report.sort();
    let d = report.decide(policy);
    if !d.blocked.is_empty() {
        let list: Vec<String> = d.blocked.iter().map(|f| f.to_string()).collect();
        return Err(Error::Blocked(list.join("; ")));
    }
    Ok(report)
}

fn collect(p: &Path, out: &mut Vec<PathBuf>) -> Result<(), Error> {
    let md = std::fs::symlink_metadata(p)?;
    if md.is_file() {
        if md.len() <= MAX_FILE {
            out.push(p.to_path_buf());
        }
        return Ok(());
    }
    if !md.is_dir() {
        return Ok(());
    }
    let name = p.file_name().and_then(|n| n.to_str()).unwrap_or("");
    if matches!(
        name,
        ".git" | "node_modules" | ".venv" | "venv" | "__pycache__" | "target"
    ) {
        return Ok(());
    }
    let mut entries: Vec<PathBuf> = std::fs::read_dir(p)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .collect();
    entries.sort();
    for e in entries {
        collect(&e, out)?;
    }
    Ok(())
}

/// Bandit and Semgrep, when installed; their findings join the report.
fn external(path: &Path, report: &mut Report) {
    match crate::oci::find_binary("bandit") {
        None => report
            .skipped
            .push("bandit: not installed (make sandbox-deps installs it)".into()),
        Some(bandit) => {
            let out = std::process::Command::new(bandit)
                .args(["-r", "-f", "json", "-q"])
                .arg(path)
                .output();
            match out {
                Ok(o) => match parse_bandit(&o.stdout) {
                    Ok(f) => {
                        report.findings.extend(f);
                        report.tools.push("bandit".into());
                    }
                    Err(e) => report.skipped.push(format!(
                        "bandit: {e}: {}",
                        String::from_utf8_lossy(&o.stderr).trim()
                    )),
                },
                Err(e) => report.skipped.push(format!("bandit: cannot run: {e}")),
            }
        }
    }
    match (crate::oci::find_binary("semgrep"), std::env::var("BATON_SEMGREP_CONFIG")) {
        (None, _) => report.skipped.push("semgrep: not installed (optional)".into()),
        (Some(_), Err(_)) => report.skipped.push("semgrep: installed, but no local rules configured (set BATON_SEMGREP_CONFIG; scans stay offline)".into()),
        (Some(semgrep), Ok(cfg)) => {
            let out = std::process::Command::new(semgrep).args(["scan", "--json", "--quiet", "--metrics=off", "--config"]).arg(&cfg).arg(path).output();
            match out {
                Ok(o) => match parse_semgrep(&o.stdout) {
                    Ok(f) => {
                        report.findings.extend(f);
                        report.tools.push("semgrep".into());
                    }
                    Err(e) => report.skipped.push(format!("semgrep: {e}")),
                },
                Err(e) => report.skipped.push(format!("semgrep: cannot run: {e}")),
            }
        }
    }
}

fn sev(s: &str) -> Severity {
    match s.to_ascii_uppercase().as_str() {
        "HIGH" | "ERROR" | "CRITICAL" => Severity::High,
        "MEDIUM" | "WARNING" => Severity::Medium,
        _ => Severity::Low,
    }
}

/// The `results` list of a scanner's JSON output (Bandit and Semgrep both write one).
fn json_results(out: &[u8]) -> Result<Vec<serde_json::Value>, String> {
    let mut v: serde_json::Value =
        serde_json::from_slice(out).map_err(|e| format!("unreadable JSON output ({e})"))?;
    match v.get_mut("results").map(serde_json::Value::take) {
        Some(serde_json::Value::Array(results)) => Ok(results),
        _ => Err("no results in the JSON output".into()),
    }
}

/// Bandit's `-f json` output.
pub fn parse_bandit(out: &[u8]) -> Result<Vec<Finding>, String> {
    let results = json_results(out)?;
    Ok(results
        .iter()
        .map(|r| Finding {
            rule: format!("bandit:{}", r["test_id"].as_str().unwrap_or("?")),
            severity: sev(r["issue_severity"].as_str().unwrap_or("LOW")),
            file: r["filename"].as_str().unwrap_or("").to_string(),
            line: r["line_number"].as_u64().unwrap_or(0) as usize,
            message: r["issue_text"].as_str().unwrap_or("").to_string(),
            fix: r["more_info"]
                .as_str()
                .map(|u| format!("see {u}"))
                .unwrap_or_else(|| "see Bandit's documentation".into()),
            tool: "bandit".into(),
        })
        .collect())
}

/// Semgrep's `--json` output.
pub fn parse_semgrep(out: &[u8]) -> Result<Vec<Finding>, String> {
    let results = json_results(out)?;
    Ok(results
        .iter()
        .map(|r| Finding {
            rule: format!("semgrep:{}", r["check_id"].as_str().unwrap_or("?")),
            severity: sev(r["extra"]["severity"].as_str().unwrap_or("INFO")),
            file: r["path"].as_str().unwrap_or("").to_string(),
            line: r["start"]["line"].as_u64().unwrap_or(0) as usize,
            message: r["extra"]["message"].as_str().unwrap_or("").to_string(),
            fix: r["extra"]["fix"]
                .as_str()
                .map(|f| format!("replace with: {f}"))
                .unwrap_or_else(|| "see the rule's documentation".into()),
            tool: "semgrep".into(),
        })
        .collect())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::policy::Tier;

    #[test]
    fn languages_are_detected() {
        assert_eq!(Lang::detect("a.py", ""), Some(Lang::Python));
        assert_eq!(Lang::detect("a.tsx", ""), Some(Lang::Tsx));
        assert_eq!(
            Lang::detect("run", "#!/usr/bin/env bash\necho"),
            Some(Lang::Shell)
        );
        assert_eq!(
            Lang::detect("run", "#!/usr/bin/env python3\n"),
            Some(Lang::Python)
        );
        assert_eq!(Lang::detect("notes.txt", "hello"), None);
    }

    #[test]
    fn policy_decides_block_or_warn() {
        let mut files = BTreeMap::new();
        files.insert(
            "a.py".to_string(),
            "import os\nos.system('ls ' + x)\neval(input())\n".to_string(),
        );
        let p = Policy::new(Tier::Process);
        let err = check(&p, &files, &[]).unwrap_err();
        assert!(err.to_string().contains("PY001"), "{err}");
        let mut p2 = p.clone();
        p2.scan.insert("high".into(), ScanAction::Warn);
        let r = check(&p2, &files, &[]).unwrap();
        assert!(r.decide(&p2).warnings.iter().any(|f| f.rule == "PY001"));
        let mut p3 = p.clone();
        for s in ["high", "medium", "low"] {
            p3.scan.insert(s.into(), ScanAction::Off);
        }
        let r = check(&p3, &files, &[]).unwrap();
        let d = r.decide(&p3);
        assert!(d.blocked.is_empty() && d.warnings.is_empty());
    }

    #[test]
    fn inline_code_is_scanned() {
        let p = Policy::new(Tier::Process);
        let argv: Vec<String> = ["python3", "-c", "import pickle; pickle.loads(b'')"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(check(&p, &BTreeMap::new(), &argv).is_err());
        let ok: Vec<String> = ["python3", "-c", "print(1)"]
            .iter()
            .map(|s| s.to_string())
            .collect();
        assert!(
            check(&p, &BTreeMap::new(), &ok)
                .unwrap()
                .findings
                .is_empty()
        );
    }

    #[test]
    fn bandit_and_semgrep_output_parse() {
        let b = br#"{"results":[{"test_id":"B602","issue_severity":"HIGH","filename":"x.py","line_number":3,"issue_text":"shell=True","more_info":"https://b"}]}"#;
        let f = parse_bandit(b).unwrap();
        assert_eq!(
            (f[0].rule.as_str(), f[0].severity, f[0].line),
            ("bandit:B602", Severity::High, 3)
        );
        let s = br#"{"results":[{"check_id":"r1","path":"a.js","start":{"line":7},"extra":{"severity":"WARNING","message":"m"}}]}"#;
        let f = parse_semgrep(s).unwrap();
        assert_eq!((f[0].severity, f[0].line), (Severity::Medium, 7));
        assert!(parse_bandit(b"not json").is_err());
    }

    #[test]
    fn bandit_findings_are_merged_when_installed() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.py"),
            "import subprocess\nsubprocess.call(cmd, shell=True)\n",
        )
        .unwrap();
        let r = scan_path(
            dir.path(),
            &Options {
                external: true,
                advisories: None,
            },
        )
        .unwrap();
        assert!(
            r.findings
                .iter()
                .any(|f| f.tool == "baton" && f.rule == "PY002")
        );
        if crate::oci::find_binary("bandit").is_some() {
            assert!(r.tools.contains(&"bandit".to_string()), "{:?}", r.skipped);
            assert!(
                r.findings.iter().any(|f| f.tool == "bandit" && f.line == 2),
                "{:?}",
                r.findings
            );
        } else {
            assert!(
                r.skipped
                    .iter()
                    .any(|s| s.starts_with("bandit: not installed"))
            );
        }
    }

    #[test]
    fn directories_are_walked() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.py"),
            "import pickle\npickle.loads(data)\n",
        )
        .unwrap();
        std::fs::create_dir(dir.path().join("node_modules")).unwrap();
        std::fs::write(dir.path().join("node_modules/x.js"), "eval(x)").unwrap();
        std::fs::write(dir.path().join("b.js"), "const x = 1;\n").unwrap();
        let r = scan_path(dir.path(), &Options::default()).unwrap();
        assert_eq!(r.files_scanned, 2);
        assert_eq!(r.findings.len(), 1);
        assert_eq!(r.findings[0].rule, "PY003");
        assert!(scan_path(&dir.path().join("missing"), &Options::default()).is_err());
    }
}
