//! Baton's built-in agents through the real binary, as docs/agents.md shows them: in the
//! registry from the first command, versioned and editable like any agent, and working as a
//! team (examples/builtin-team.yaml on a scripted model: files written, tests run in the
//! sandbox, the code scanned, the diff reviewed).
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{Db, baton, root, summary, text};
use serde_json::Value;

const TEAM: [&str; 8] = [
    "architect",
    "coder",
    "debugger",
    "deployer",
    "product-manager",
    "reviewer",
    "security-reviewer",
    "tester",
];

fn ok(o: &std::process::Output) -> String {
    assert_eq!(o.status.code(), Some(0), "{}", text(o));
    String::from_utf8_lossy(&o.stdout).into_owned()
}

fn json(o: &std::process::Output) -> Value {
    serde_json::from_str(&ok(o)).unwrap_or_else(|e| panic!("{e}: {}", text(o)))
}

#[test]
fn the_team_is_in_the_registry_from_the_start_and_edits_like_any_agent() {
    let db = Db::new();
    let list = json(&db.run(&["agents", "list", "--json"]));
    let names: Vec<&str> = list
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, TEAM);
    assert!(
        list.as_array()
            .unwrap()
            .iter()
            .all(|a| a["default_version"] == 1
                && a["model"] == "${BATON_MODEL:-local/smollm2}"
                && a["role"].is_string()),
        "{list}"
    );
    // Each is stored as shipped, by Baton, and passes the checks `agents create` makes here
    // (its tools exist on this host).
    for name in TEAM {
        let v = json(&db.run(&["agents", "show", name, "--json"]));
        assert_eq!(v["created_by"], "baton", "{v}");
        let shipped =
            std::fs::read_to_string(root().join(format!("crates/control/agents/{name}.yaml")))
                .unwrap();
        assert_eq!(v["source"], shipped.as_str());
        assert!(v["spec"]["output"]["schema"].is_object(), "{v}");
        let file = db.workflow(&format!("{name}.yaml"), &shipped);
        let o = db.run(&["agents", "create", &file]);
        assert!(
            ok(&o).contains(&format!("stored agent {name}@2 (default)")),
            "{}",
            text(&o)
        );
    }
    // A new version edits one; rollback returns to the built-in text.
    let edited = db.workflow(
        "coder-edit.yaml",
        "name: coder\nrole: terse engineer\nmodel: scripted/x\ninstructions: Be terse.\n",
    );
    assert!(ok(&db.run(&["agents", "create", &edited])).contains("stored agent coder@3 (default)"));
    let diff = ok(&db.run(&["agents", "diff", "coder@1", "coder@3"]));
    assert!(
        diff.contains("terse engineer") && diff.contains("software engineer"),
        "{diff}"
    );
    ok(&db.run(&["agents", "rollback", "coder", "--to", "1"]));
    let v = json(&db.run(&["agents", "show", "coder", "--json"]));
    assert_eq!(
        (v["version"].as_u64(), v["latest"].as_u64()),
        (Some(1), Some(3))
    );

    // Every tenant has its own team from its creation.
    ok(&db.run(&["tenants", "create", "acme"]));
    let acme = json(&db.run(&["agents", "list", "--tenant", "acme", "--json"]));
    assert_eq!(acme.as_array().unwrap().len(), TEAM.len(), "{acme}");
    assert!(
        acme.as_array().unwrap().iter().all(|a| a["latest"] == 1),
        "{acme}"
    );
}

/// `BATON_MODEL=scripted/builtin-team baton run examples/builtin-team.yaml`, as
/// docs/agents.md shows it.
#[test]
fn the_team_builds_tests_scans_and_reviews_in_the_workspace() {
    if !common::process_tier_works() {
        return;
    }
    let _l = common::lock();
    let db = Db::new();
    let file = root().join("examples/builtin-team.yaml");
    let o = baton()
        .env("BATON_MODEL", "scripted/builtin-team")
        .args(["run", file.to_str().unwrap(), "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"]["tests_passed"], true, "{s}");
    assert_eq!(s["outputs"]["review"], "approve", "{s}");
    let id = s["id"].as_str().unwrap();

    // Who changed what: the coder's module, the tester's test.
    let files = ok(&db.run(&["runs", "files", id]));
    assert!(
        files.contains("implement") && files.contains("coder") && files.contains("calc.py"),
        "{files}"
    );
    assert!(
        files.contains("test") && files.contains("tester") && files.contains("test_calc.py"),
        "{files}"
    );
    // The tests really ran in the sandbox, in the workspace, and passed; the scan really ran.
    let logs = ok(&db.run(&["runs", "logs", id, "--json"]));
    let results: Vec<Value> = logs
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e.to_string().contains("tool_call_finished"))
        .collect();
    let exec = results
        .iter()
        .find(|e| e.to_string().contains("exit_code"))
        .unwrap_or_else(|| panic!("no sandbox.exec result in {logs}"));
    let exec = exec.to_string();
    assert!(
        exec.contains(r#"\"exit_code\":0"#) || exec.contains(r#""exit_code":0"#),
        "{exec}"
    );
    assert!(exec.contains("test_sum") && exec.contains("OK"), "{exec}");
    let scan = results
        .iter()
        .find(|e| e.to_string().contains("files_scanned"))
        .unwrap_or_else(|| panic!("no security.scan result in {logs}"))
        .to_string();
    assert!(scan.contains("blocking"), "{scan}");
    let out = db.0.path().join("app");
    ok(&db.run(&["runs", "export", id, out.to_str().unwrap()]));
    assert!(out.join("calc.py").is_file() && out.join("test_calc.py").is_file());
}

/// examples/app-team.yaml building a todo CLI (BATON_MODEL=scripted/app-todo): the first
/// round's tests really fail in the sandbox, the debugger's fix is applied, the second round
/// passes, the deploy is skipped (a CLI serves nothing), a person approves, the run replays
/// identically and the exported files work. The converter and the HTTP service are in
/// app_team.rs.
#[test]
fn the_app_team_fixes_a_failing_round_and_ships_working_code() {
    if !common::process_tier_works() {
        return;
    }
    let _l = common::lock();
    let db = Db::new();
    let file = root().join("examples/app-team.yaml");
    let o = baton()
        .env("BATON_MODEL", "scripted/app-todo")
        .args(["run", file.to_str().unwrap(), "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    // It stops for the person's approval. A CLI has no port: its design names no service
    // (`serve`), so nothing was deployed, and the prompt says so.
    assert_eq!(o.status.code(), Some(3), "{}", text(&o));
    let id = summary(&o)["id"].as_str().unwrap().to_string();
    let events = String::from_utf8_lossy(&o.stdout);
    assert!(
        events.contains("Not deployed: the design names no service to run"),
        "{}",
        text(&o)
    );
    assert!(!events.contains("\"step\":\"deploy\""), "{}", text(&o));
    let o = db.run(&["runs", "approve", &id, "--json"]);
    let s = summary(&o);
    assert_eq!(s["status"], "succeeded", "{}", text(&o));
    assert_eq!(s["outputs"]["tests"]["passed"], true, "{s}");
    assert_eq!(s["outputs"]["review"], "approve", "{s}");
    assert_eq!(
        s["outputs"]["deploy"]["skipped"], "the design names no service to run",
        "{s}"
    );
    assert_eq!(
        s["outputs"]["export"],
        format!("baton runs export {id} DIR")
    );
    // The first round's failure went through the merge contract to the debugger.
    let issues = s["outputs"]["issues_found"].as_array().unwrap();
    assert_eq!(issues.len(), 1, "{s}");
    assert_eq!(issues[0]["check"], "tests", "{s}");

    // The sandbox really ran the tests: one failure, then none.
    let logs = ok(&db.run(&["runs", "logs", &id, "--json"]));
    let runs: Vec<String> = logs
        .lines()
        .filter(|l| l.contains("tool_call_finished") && l.contains("exit_code"))
        .map(str::to_string)
        .collect();
    assert_eq!(runs.len(), 2, "{logs}");
    assert!(runs[0].contains("FAILED (failures=1)"), "{}", runs[0]);
    assert!(
        runs[1].contains("Ran 4 tests") && runs[1].contains("OK"),
        "{}",
        runs[1]
    );

    // The history: the coder's file, the tester's tests, the coder's fix in its second visit.
    let files = ok(&db.run(&["runs", "files", &id]));
    assert!(files.contains("create todo.py"), "{files}");
    assert!(files.contains("create test_todo.py"), "{files}");
    assert!(files.contains("patch todo.py"), "{files}");
    let diff = ok(&db.run(&["runs", "diff", &id, "implement"]));
    assert!(
        diff.contains("+    items[number - 1][\"done\"] = True"),
        "{diff}"
    );

    // Replayed from its log (no model, tool or sandbox called), it reaches the same state.
    // Without the run's `BATON_MODEL`: the replay uses the model references the run logged.
    let o = baton()
        .args(["runs", "replay", &id, "--json", "--db"])
        .arg(db.path())
        .output()
        .unwrap();
    let r: Value =
        serde_json::from_slice(&o.stdout).unwrap_or_else(|e| panic!("{e}: {}", text(&o)));
    assert_eq!(o.status.code(), Some(0), "{r}");
    assert_eq!(r["verdict"], "identical", "{r}");
    assert_eq!(r["events_matched"], r["events_recorded"], "{r}");

    // The exported app works.
    let out = db.0.path().join("todo-app");
    ok(&db.run(&["runs", "export", &id, out.to_str().unwrap()]));
    let work = tempfile::tempdir().unwrap();
    let todo = |args: &[&str]| {
        let o = std::process::Command::new("python3")
            .arg(out.join("todo.py"))
            .args(args)
            .current_dir(work.path())
            .output()
            .unwrap();
        assert!(o.status.success(), "{}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    };
    assert_eq!(todo(&["add", "milk"]), "1\n");
    assert_eq!(todo(&["add", "bread"]), "2\n");
    todo(&["done", "1"]);
    assert_eq!(todo(&["list"]), "1. [x] milk\n2. [ ] bread\n");
}
