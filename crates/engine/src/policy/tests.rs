#![allow(clippy::unwrap_used)]

use baton_types::{BudgetLeft, PolicyDecision, PolicyEffect, PolicyRule};
use serde_json::{Value, json};

use super::*;

fn rule(id: &str, effect: PolicyEffect) -> PolicyRule {
    PolicyRule {
        id: id.into(),
        effect,
        reason: None,
        tools: vec![],
        agents: vec![],
        steps: vec![],
        args: Default::default(),
        paths: vec![],
        hosts: vec![],
        commands: vec![],
        budget_left_below: None,
    }
}

fn decide(rules: &[PolicyRule], tool: &str, args: Value) -> Verdict {
    let r = Rules::compile(rules).unwrap();
    r.decide(
        &Action {
            tool,
            agent: Some("coder"),
            step: "implement",
            args: &args,
            network: &[],
        },
        Left::default(),
    )
}

#[test]
fn the_first_matching_rule_decides_and_nothing_matching_is_denied() {
    let deny = PolicyRule {
        tools: vec!["workspace.write".into()],
        paths: vec![".github/**".into()],
        reason: Some("CI files are off limits".into()),
        ..rule("no-ci", PolicyEffect::Deny)
    };
    let allow = PolicyRule {
        tools: vec!["workspace.*".into()],
        ..rule("workspace", PolicyEffect::Allow)
    };
    let rules = [deny, allow];
    let v = decide(
        &rules,
        "workspace.write",
        json!({"path": ".github/workflows/x.yml"}),
    );
    assert_eq!(v.decision, PolicyDecision::Deny);
    assert_eq!(v.rule, "no-ci");
    assert_eq!(
        v.refusal("workspace.write"),
        json!({"error": "policy_denied", "rule": "no-ci", "reason": "CI files are off limits", "tool": "workspace.write"})
    );
    let v = decide(&rules, "workspace.write", json!({"path": "src/a.py"}));
    assert_eq!(
        (v.decision, v.rule.as_str()),
        (PolicyDecision::Allow, "workspace")
    );
    // `./` and `..` do not hide a path.
    let v = decide(
        &rules,
        "workspace.write",
        json!({"path": "./src/../.github/x.yml"}),
    );
    assert_eq!(v.rule, "no-ci");
    let v = decide(&rules, "sandbox.exec", json!({"command": "ls"}));
    assert_eq!(
        (v.decision, v.rule.as_str()),
        (PolicyDecision::Deny, "default-deny")
    );
}

#[test]
fn lists_need_every_value_to_allow_and_one_to_deny() {
    let allow_src = PolicyRule {
        paths: vec!["src/**".into()],
        ..rule("src-only", PolicyEffect::Allow)
    };
    let patch = "--- a/src/a.py\n+++ b/src/a.py\n@@ -1 +1 @@\n-x\n+y\n--- a/.github/w.yml\n+++ b/.github/w.yml\n@@ -1 +1 @@\n-a\n+b\n";
    let v = decide(
        std::slice::from_ref(&allow_src),
        "workspace.apply_patch",
        json!({"patch": patch}),
    );
    assert_eq!(
        v.rule, "default-deny",
        "one path outside src/ is enough to refuse"
    );
    let only_src = "--- a/src/a.py\n+++ b/src/a.py\n@@ -1 +1 @@\n-x\n+y\n";
    let v = decide(
        &[allow_src],
        "workspace.apply_patch",
        json!({"patch": only_src}),
    );
    assert_eq!(v.rule, "src-only");
    let deny_ci = PolicyRule {
        paths: vec![".github/**".into()],
        ..rule("no-ci", PolicyEffect::Deny)
    };
    let v = decide(&[deny_ci], "workspace.apply_patch", json!({"patch": patch}));
    assert_eq!(v.rule, "no-ci");
}

#[test]
fn patch_headers_name_every_file() {
    let p = "diff --git a/old.txt b/new.txt\nrename from old.txt\nrename to new.txt\n--- /dev/null\n+++ b/created.md\n@@ -0,0 +1 @@\n+hi\n";
    assert_eq!(patch_paths(p), ["old.txt", "new.txt", "created.md"]);
    assert_eq!(patch_paths("--- x.py\t2024-01-01\n+++ x.py\n"), ["x.py"]);
}

#[test]
fn hosts_commands_and_args() {
    let no_curl = PolicyRule {
        commands: vec!["*curl *".into(), "*wget *".into()],
        reason: Some("no downloads".into()),
        ..rule("no-curl", PolicyEffect::Deny)
    };
    let hosts = PolicyRule {
        hosts: vec!["*.internal.example".into()],
        ..rule("internal", PolicyEffect::Allow)
    };
    let py = PolicyRule {
        args: [("command".to_string(), vec!["python3 *".to_string()])]
            .into_iter()
            .collect(),
        ..rule("python", PolicyEffect::Allow)
    };
    let rules = [no_curl, hosts, py];
    let v = decide(
        &rules,
        "sandbox.exec",
        json!({"command": "cd x && curl https://a.b/c"}),
    );
    assert_eq!(v.rule, "no-curl");
    let v = decide(
        &rules,
        "sandbox.exec",
        json!({"command": ["python3", "-m", "pytest"]}),
    );
    assert_eq!(
        v.rule, "default-deny",
        "a list argument: every item must match"
    );
    let v = decide(
        &rules,
        "sandbox.exec",
        json!({"command": "python3 -m pytest"}),
    );
    assert_eq!(v.rule, "python");
    let step = json!({"command": "pip download x", "policy": {"net": "allow:pypi.internal.example:443,evil.example"}});
    assert_eq!(decide(&rules, "sandbox.step", step).rule, "default-deny");
    let step =
        json!({"command": "pip download x", "policy": {"net": "allow:PyPI.internal.example:443"}});
    assert_eq!(decide(&rules, "sandbox.step", step).rule, "internal");
    let get = json!({"url": "https://user@api.internal.example:8443/x?y"});
    assert_eq!(decide(&rules, "http.get", get).rule, "internal");
    let get = json!({"url": "https://api.other.example/x"});
    assert_eq!(decide(&rules, "http.get", get).rule, "default-deny");
}

#[test]
fn sandbox_credential_hosts_and_fixed_networks_are_hosts() {
    let internal = PolicyRule {
        hosts: vec!["*.internal.example".into()],
        ..rule("internal", PolicyEffect::Allow)
    };
    let no_paid = PolicyRule {
        hosts: vec!["api.paid.example".into()],
        reason: Some("no paid APIs".into()),
        ..rule("no-paid-api", PolicyEffect::Deny)
    };
    let rules = [no_paid, internal];
    // A credential's host counts even when the allow-list lives in the policy file.
    let step = json!({"command": "python3 x.py", "policy": {"credentials": [
        {"host": "api.paid.example", "header": "Authorization", "value_env": "PAID_TOKEN"}
    ]}});
    assert_eq!(decide(&rules, "sandbox.step", step).rule, "no-paid-api");
    let step = json!({"command": "python3 x.py", "policy": {
        "net": "allow:api.internal.example",
        "credentials": [{"host": "api.internal.example", "header": "X-Key", "value_env": "K"}]
    }});
    assert_eq!(decide(&rules, "sandbox.step", step).rule, "internal");

    // `sandbox.exec`: its network is the tool's own, not in the arguments.
    let r = Rules::compile(&rules).unwrap();
    let args = json!({"command": "python3 x.py"});
    let call = |network: &[String]| {
        r.decide(
            &Action {
                tool: "sandbox.exec",
                agent: Some("coder"),
                step: "implement",
                args: &args,
                network,
            },
            Left::default(),
        )
    };
    assert_eq!(
        call(&[]).rule,
        "default-deny",
        "no hosts: no host rule matches"
    );
    assert_eq!(call(&["api.internal.example:443".into()]).rule, "internal");
    let v = call(&["api.internal.example".into(), "API.paid.example".into()]);
    assert_eq!(v.rule, "no-paid-api");
    assert_eq!(v.decision, PolicyDecision::Deny);
}

#[test]
fn agents_steps_and_budget() {
    let low = PolicyRule {
        budget_left_below: Some(BudgetLeft {
            usd: Some(0.5),
            tokens: None,
        }),
        reason: Some("budget nearly spent".into()),
        ..rule("low-budget", PolicyEffect::Deny)
    };
    let coder = PolicyRule {
        agents: vec!["coder".into()],
        steps: vec!["implement".into()],
        ..rule("coder", PolicyEffect::Allow)
    };
    let r = Rules::compile(&[low, coder]).unwrap();
    let args = json!({});
    let a = Action {
        tool: "workspace.read",
        agent: Some("coder@3"),
        step: "implement",
        args: &args,
        network: &[],
    };
    let rich = Left {
        usd: Some(2.0),
        tokens: None,
    };
    assert_eq!(r.decide(&a, rich).rule, "coder");
    let poor = Left {
        usd: Some(0.25),
        tokens: None,
    };
    assert_eq!(r.decide(&a, poor).rule, "low-budget");
    let other = Action {
        agent: Some("tester"),
        ..a
    };
    assert_eq!(r.decide(&other, rich).rule, "default-deny");
    let tool_step = Action { agent: None, ..a };
    assert_eq!(r.decide(&tool_step, rich).rule, "default-deny");
}

#[test]
fn bad_rules_name_the_field() {
    let bad = PolicyRule {
        tools: vec!["workspace.[".into()],
        paths: vec!["a/***".into()],
        args: [("".to_string(), vec![])].into_iter().collect(),
        budget_left_below: Some(BudgetLeft::default()),
        ..rule("x", PolicyEffect::Allow)
    };
    let errs = Rules::compile(&[rule("ok", PolicyEffect::Allow), bad]).unwrap_err();
    let fields: Vec<(usize, &str)> = errs.iter().map(|(i, e)| (*i, e.field.as_str())).collect();
    assert_eq!(
        fields,
        [
            (1, "tools[0]"),
            (1, "args[\"\"]"),
            (1, "args[\"\"]"),
            (1, "paths[0]"),
            (1, "budget_left_below")
        ]
    );
    assert!(errs[0].1.message.contains("never closed"), "{:?}", errs[0]);
}
