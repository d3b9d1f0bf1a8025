//! Policy before every tool call, through the real binary: examples/policy.yaml runs (the
//! coder's CI file and the sandbox step's download denied, the coder's module allowed), and
//! `baton runs show` and `baton logs` name the rules that decided; bad policies are refused by
//! `baton validate` with the rule and the field.

#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, root, summary, text};
use serde_json::Value;

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn the_example_denies_logs_and_shows_decisions_with_their_rules() {
    let db = Db::new();
    let wf = root().join("examples/policy.yaml");
    let o = db.run(&["run", wf.to_str().unwrap(), "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    let run = s["id"].as_str().unwrap().to_string();
    assert!(
        s["outputs"]["coder"]
            .as_str()
            .unwrap()
            .contains("no-ci-files"),
        "{s}"
    );
    assert!(
        s["outputs"]["install"]
            .as_str()
            .unwrap()
            .contains("policy denied `sandbox.step` by rule 'no-downloads'"),
        "{s}"
    );

    let shown = ok(&db.run(&["runs", "show", &run]));
    assert!(shown.contains("policy    2 allowed, 2 denied"), "{shown}");
    assert!(
        shown.contains(
            "denied  implement (coder, call 1): workspace.write denied by rule 'no-ci-files': \
             CI configuration is changed by people, not agents"
        ),
        "{shown}"
    );
    assert!(
        shown.contains("denied  install: sandbox.step denied by rule 'no-downloads'"),
        "{shown}"
    );
    let json: Value =
        serde_json::from_str(&ok(&db.run(&["runs", "show", &run, "--json"]))).unwrap();
    assert_eq!(json["policy"]["allowed"], 2, "{json}");
    let rules: Vec<&str> = json["policy"]["denials"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["rule"].as_str().unwrap())
        .collect();
    assert_eq!(rules, ["no-ci-files", "no-downloads"]);

    // Every decision is an event of the log, in order, with its rule.
    let logs = ok(&db.run(&["runs", "logs", &run, "--kind", "policy_decided", "--json"]));
    let decided: Vec<(String, String)> = logs
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .map(|e| {
            (
                e["decision"].as_str().unwrap().to_string(),
                e["rule"].as_str().unwrap().to_string(),
            )
        })
        .collect();
    assert_eq!(
        decided,
        [
            ("allow".into(), "seed-readme".into()),
            ("deny".into(), "no-ci-files".into()),
            ("allow".into(), "coder-edits-src".into()),
            ("deny".into(), "no-downloads".into()),
        ]
    );
    let warned = ok(&db.run(&["runs", "logs", &run, "--level", "warn"]));
    assert!(
        warned.contains("policy_decided") && warned.contains("no-ci-files"),
        "{warned}"
    );

    // The denied file was never written; the allowed one was.
    let files = ok(&db.run(&["runs", "files", &run]));
    assert!(files.contains("src/todo.py"), "{files}");
    assert!(!files.contains(".github"), "{files}");
}

/// A workflow with one bad policy; `baton validate` must fail and say `expected`.
fn refused(db: &Db, name: &str, policy: &str, expected: &[&str]) {
    let yaml = format!(
        "version: 1\nname: {name}\nbudget: {{ tokens: 100 }}\nagents:\n  coder: {{ model: scripted/x, tools: [workspace.write] }}\npolicy:\n{policy}steps:\n  - {{ id: seed, tool: echo, with: {{ text: hi }} }}\n"
    );
    let file = db.workflow(&format!("{name}.yaml"), &yaml);
    let o = db.run(&["validate", &file]);
    assert_eq!(o.status.code(), Some(2), "{name}: {}", text(&o));
    for part in expected {
        assert!(
            text(&o).contains(part),
            "{name}: {part:?} missing in {}",
            text(&o)
        );
    }
}

#[test]
fn bad_policies_are_refused_with_the_rule_and_field() {
    let db = Db::new();
    refused(
        &db,
        "duplicate",
        "  rules:\n    - { id: a, effect: allow }\n    - { id: a, effect: deny }\n",
        &[
            "policy rule id `a` is used twice",
            "(at policy.rules[1].id)",
        ],
    );
    refused(
        &db,
        "glob",
        "  rules:\n    - { id: ci, effect: deny, paths: [\".github/[abc\"] }\n",
        &[
            "policy rule `ci`: bad glob: `.github/[abc`: a `[` is never closed by `]`",
            "(at policy.rules[0].paths[0])",
        ],
    );
    refused(
        &db,
        "tool",
        "  rules:\n    - { id: w, effect: allow, tools: [workspace.wrte] }\n",
        &[
            "policy rule `w`: unknown tool `workspace.wrte`; did you mean `workspace.write`?",
            "(at policy.rules[0].tools[0])",
        ],
    );
    refused(
        &db,
        "wildcard",
        "  rules:\n    - { id: w, effect: allow, tools: [\"worksp.*\"] }\n",
        &["policy rule `w`: `worksp.*` matches no tool"],
    );
    refused(
        &db,
        "field",
        "  rules:\n    - { id: w, effect: allow, path: [src] }\n",
        &["path", "policy.rules[0]"],
    );
    refused(
        &db,
        "effect",
        "  rules:\n    - { id: w, effect: permit }\n",
        &["permit", "policy.rules[0].effect"],
    );
    refused(
        &db,
        "names",
        "  rules:\n    - { id: n, effect: allow, agents: [codr], steps: [sed] }\n",
        &[
            "policy rule `n`: the workflow has no agent `codr`; did you mean `coder`?",
            "policy rule `n`: the workflow has no step `sed`; did you mean `seed`?",
        ],
    );
    refused(
        &db,
        "budget",
        "  rules:\n    - { id: b, effect: deny, budget_left_below: { usd: 0.5 } }\n",
        &[
            "policy rule `b`: `budget_left_below.usd` counts from the run's `budget.cost_usd`, which the workflow does not set",
        ],
    );
}
