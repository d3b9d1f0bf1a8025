//! The agent registry through the real binary: versions, the default, rollback, diff,
//! export; workflows that name registry agents; a run keeps the versions it started with.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, summary, text};
use serde_json::Value;

const CODER_V1: &str =
    "name: writer\nmodel: scripted/one\nrole: engineer\ninstructions: Write code.\n";
const CODER_V2: &str =
    "name: writer\nmodel: scripted/two\nrole: senior engineer\ninstructions: Write code.\n";

/// One registry agent, by default version.
const TEAM: &str =
    "version: 1\nname: team\nsteps:\n  - { id: write, agent: writer, prompt: Write it }\n";
/// Pinned to version 2.
const PINNED: &str =
    "version: 1\nname: pinned\nsteps:\n  - { id: write, agent: writer@2, prompt: Write it }\n";
/// Waits for a person before the agent works.
const LATER: &str = "version: 1\nname: later\nsteps:\n  - id: ok\n    human: { prompt: Go? }\n  - { id: write, agent: writer, prompt: Write it }\n";

fn setup() -> Db {
    let db = Db::new();
    let dir = db.0.path().join("scripted");
    std::fs::create_dir(&dir).unwrap();
    for (name, reply) in [("one", "from version one"), ("two", "from version two")] {
        let fixture = format!("replies:\n  - text: {reply}\n    repeat: true\n");
        std::fs::write(dir.join(format!("{name}.yaml")), fixture).unwrap();
    }
    db
}

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

fn run_output(db: &Db, file: &str) -> Value {
    let o = db.run(&["run", file, "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    s["outputs"].clone()
}

#[test]
fn agents_have_versions_a_default_and_runs_pin_theirs() {
    let db = setup();
    let v1 = db.workflow("writer.yaml", CODER_V1);
    let v2 = db.workflow("writer-v2.yaml", CODER_V2);
    assert!(ok(&db.run(&["agents", "create", &v1])).contains("stored agent writer@1 (default)"));
    assert!(ok(&db.run(&["agents", "create", &v2])).contains("stored agent writer@2 (default)"));

    let list = json(&db.run(&["agents", "list", "--json"]));
    let writer = list
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == "writer")
        .unwrap();
    assert_eq!(
        (
            writer["latest"].as_u64(),
            writer["default_version"].as_u64()
        ),
        (Some(2), Some(2))
    );
    let shown = ok(&db.run(&["agents", "show", "writer@1"]));
    assert!(
        shown.contains("writer@1 (default 2, latest 2)") && shown.contains("scripted/one"),
        "{shown}"
    );
    let versions = ok(&db.run(&["agents", "versions", "writer"]));
    assert!(
        versions.contains("     2*") && versions.contains("scripted/two"),
        "{versions}"
    );
    let diff = ok(&db.run(&["agents", "diff", "writer@1", "writer@2"]));
    assert!(
        diff.contains("model: \"scripted/one\" -> \"scripted/two\""),
        "{diff}"
    );
    assert!(
        diff.contains("-model: scripted/one") && diff.contains("+model: scripted/two"),
        "{diff}"
    );

    // A workflow names the default; a pinned reference keeps its version.
    let team = db.workflow("team.yaml", TEAM);
    let pinned = db.workflow("pinned.yaml", PINNED);
    assert!(ok(&db.run(&["validate", &team])).contains("team.yaml: ok"));
    assert_eq!(run_output(&db, &team), "from version two");
    let later = db.workflow("later.yaml", LATER);
    let o = db.run(&["run", &later, "--json"]);
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let waiting = summary(&o)["id"].as_str().unwrap().to_string();

    let o = db.run(&["agents", "rollback", "writer", "--to", "1"]);
    assert!(ok(&o).contains("agent writer now defaults to version 1 (latest 2)"));
    assert_eq!(run_output(&db, &team), "from version one");
    assert_eq!(run_output(&db, &pinned), "from version two");

    // The run created before the rollback goes on with the version it resolved then.
    let o = db.run(&["runs", "approve", &waiting, "--json"]);
    assert_eq!(o.status.code(), Some(0), "{}", text(&o));
    assert_eq!(summary(&o)["outputs"], "from version two");
    let logs = ok(&db.run(&["runs", "logs", &waiting, "--json"]));
    let resolved = logs
        .lines()
        .find(|l| l.contains("\"agents_resolved\""))
        .expect("logged");
    let ev: Value = serde_json::from_str(resolved).unwrap();
    assert_eq!(ev["agents"]["writer"]["version"], 2, "{ev}");

    // Export: every version as JSON, or the default versions as files.
    // (with the built-in team's one version each)
    let all = json(&db.run(&["agents", "export"]));
    assert_eq!(
        all.as_array().unwrap().len(),
        2 + baton_control::builtin_agents::BUILTIN_AGENTS.len()
    );
    let out = db.0.path().join("exported");
    ok(&db.run(&["agents", "export", "--dir", out.to_str().unwrap()]));
    assert_eq!(
        std::fs::read_to_string(out.join("writer.yaml")).unwrap(),
        CODER_V1
    );

    // Another tenant has none of it.
    ok(&db.run(&["tenants", "create", "acme"]));
    let o = db.run(&["agents", "show", "writer", "--tenant", "acme"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(text(&o).contains("no agent writer"), "{}", text(&o));
    let o = db.run(&["run", &team, "--tenant", "acme", "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn bad_agent_files_and_references_are_refused_with_their_place() {
    let db = setup();
    let typo = db.workflow(
        "typo.yaml",
        "name: writer\nmodel: scripted/one\ntools: [ecoh]\n",
    );
    let o = db.run(&["agents", "create", &typo]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("typo.yaml:3:") && text(&o).contains("echo"),
        "{}",
        text(&o)
    );
    let nameless = db.workflow("nameless.yaml", "model: scripted/one\n");
    let o = db.run(&["agents", "create", &nameless]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("missing `name`"), "{}", text(&o));
    let field = db.workflow("field.yaml", "name: writer\nmodle: scripted/one\n");
    let o = db.run(&["agents", "create", &field]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(text(&o).contains("field.yaml:2:"), "{}", text(&o));
    // Nothing stored but the built-in team.
    let json_list = json(&db.run(&["agents", "list", "--json"]));
    let names: Vec<&str> = json_list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert!(!names.contains(&"writer"), "{names:?}");
    assert_eq!(
        names.len(),
        baton_control::builtin_agents::BUILTIN_AGENTS.len(),
        "{names:?}"
    );

    ok(&db.run(&["agents", "create", &db.workflow("writer.yaml", CODER_V1)]));
    let nine = db.workflow("nine.yaml", &PINNED.replace("writer@2", "writer@9"));
    let o = db.run(&["validate", &nine]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("nine.yaml:4:")
            && text(&o).contains("agent `writer` has no version 9 (versions 1 to 1)"),
        "{}",
        text(&o)
    );
    let ghost = db.workflow("ghost.yaml", &TEAM.replace("agent: writer", "agent: ghost"));
    let o = db.run(&["run", &ghost, "--json"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    assert!(
        text(&o).contains("unknown agent `ghost`: neither in `agents:`"),
        "{}",
        text(&o)
    );
    let o = db.run(&["agents", "rollback", "writer", "--to", "4"]);
    assert_eq!(o.status.code(), Some(1), "{}", text(&o));
    assert!(
        text(&o).contains("no version 4 of agent writer"),
        "{}",
        text(&o)
    );
    let o = db.run(&["agents", "show", "writer@x"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
}

#[test]
fn a_fork_of_a_run_with_registry_agents_may_give_one_another_model() {
    let db = setup();
    ok(&db.run(&["agents", "create", &db.workflow("writer.yaml", CODER_V1)]));
    let team = db.workflow("team.yaml", TEAM);
    let o = db.run(&["run", &team, "--json"]);
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let o = db.run(&[
        "runs",
        "fork",
        &id,
        "--before",
        "write",
        "--model",
        "writer=scripted/two",
        "--json",
    ]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"], "from version two");
    // The run's log by agent and level.
    let log = ok(&db.run(&["runs", "logs", &id, "--agent", "writer", "--json"]));
    assert!(log.lines().count() >= 3, "{log}");
    assert!(
        log.lines().all(|l| l.contains("\"step\":\"write\"")),
        "{log}"
    );
    assert_eq!(ok(&db.run(&["runs", "logs", &id, "--level", "warn"])), "");
    let o = db.run(&["runs", "logs", &id, "--level", "loud"]);
    assert_eq!(o.status.code(), Some(2), "{}", text(&o));
    let o = db.run(&["runs", "logs", &id, "--agent", "nobody"]);
    assert_ne!(o.status.code(), Some(0), "{}", text(&o));
    assert!(text(&o).contains("no agent 'nobody'"), "{}", text(&o));
    // Without another model the fork keeps the parent's pinned version.
    let o = db.run(&["runs", "fork", &id, "--before", "write", "--json"]);
    assert_eq!(summary(&o)["outputs"], "from version one", "{}", text(&o));
}
