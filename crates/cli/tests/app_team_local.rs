//! examples/app-team.yaml on the embedded model (`local/smollm2`, 135M parameters, offline).
//! Issue 18's honesty about models: a model this small cannot build the app, but the
//! workflow's mechanics must hold on it: every step runs, its failures are caught and looped
//! (at most 3 rounds of fixes), and the run ends with a clear status in bounded time; nothing
//! crashes or hangs. The model is installed by `make test` (`make model`); without it this
//! test fails and says how to install it.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::{Db, baton, root, summary, text};
use serde_json::Value;

/// Far more than the run needs (a few minutes on a quiet 2-core machine): past it, the run
/// hung.
const LIMIT: Duration = Duration::from_secs(40 * 60);

fn models_dir() -> std::path::PathBuf {
    match std::env::var_os("BATON_MODELS_DIR") {
        Some(d) => d.into(),
        None => std::env::var_os("HOME")
            .map(std::path::PathBuf::from)
            .unwrap_or_default()
            .join(".local/share/baton/models"),
    }
}

#[test]
fn the_app_team_on_the_embedded_model_runs_every_step_and_ends_with_a_clear_status() {
    let model = models_dir().join("SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        model.is_file(),
        "the embedded model is not installed at {}: run `make model` (or `baton models pull \
         smollm2`), or point BATON_MODELS_DIR at a directory that holds it",
        model.display()
    );
    // No sandbox lock (see common::lock): held for the minutes this run takes, it would stop
    // every other sandboxed test. The embedded model's tester does not run code here (checked
    // below); should it start to, this test must take the lock.
    let db = Db::new();
    let file = root().join("examples/app-team.yaml");
    let started = Instant::now();
    let o = common::output_within(
        baton()
            .env("BATON_MODEL", "local/smollm2")
            .args(["run", file.to_str().unwrap(), "--json", "--db"])
            .arg(db.path()),
        LIMIT,
    )
    .unwrap_or_else(|| panic!("the run did not end within {LIMIT:?}: it hung"));
    eprintln!(
        "app-team on local/smollm2: exit {:?} after {:.0} s",
        o.status.code(),
        started.elapsed().as_secs_f64()
    );
    // Failed (1) or, should the model pass every check, waiting for the person's approval (3):
    // never a crash (101), an invalid workflow (2) or a signal.
    let code = o.status.code();
    assert!(matches!(code, Some(1 | 3)), "{}", text(&o));
    let s = summary(&o);
    let id = s["id"].as_str().unwrap().to_string();

    let show: Value =
        serde_json::from_slice(&db.run(&["runs", "show", &id, "--json"]).stdout).unwrap();
    let steps: Vec<(&str, &str)> = show["steps"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["step"].as_str().unwrap(), s["status"].as_str().unwrap()))
        .collect();
    // Every step up to the gate ran, whatever the model did.
    for step in [
        "requirements",
        "design",
        "implement",
        "review",
        "review_issues",
        "test",
        "test_issues",
        "security",
        "security_issues",
        "gate",
    ] {
        assert!(
            steps.iter().any(|(s, _)| *s == step),
            "step {step} did not run: {steps:?}"
        );
    }
    // The run's log, read once.
    let events: Vec<Value> =
        String::from_utf8_lossy(&db.run(&["runs", "logs", &id, "--json"]).stdout)
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect();
    let sandboxed: Vec<String> = events
        .iter()
        .filter(|e| e["type"] == "tool_call_started")
        .filter_map(|e| e["tool"].as_str().map(str::to_string))
        .filter(|t| t.starts_with("sandbox.") || t.starts_with("deploy"))
        .collect();
    assert!(
        sandboxed.is_empty(),
        "the model ran {sandboxed:?}: take common::lock() for this test (sandboxed runs are \
         serialised with baton-sandbox's tests)"
    );
    if code == Some(3) {
        assert_eq!(s["status"], "waiting", "{s}");
        return;
    }
    // Failed: the checks failed round after round, every failure was caught, and the run
    // ended where the workflow gives up, saying why.
    assert_eq!(s["status"], "failed", "{s}");
    let error = s["error"].as_str().unwrap();
    assert!(
        error.contains("step 'gave_up' failed: the checks still fail and the team stops (")
            && (error.contains("max_visits") || error.contains("runaway")),
        "{error}"
    );
    for (step, status) in &steps {
        let want = match *step {
            "gave_up" => "failed",
            // Past its 3 rounds, or stopped as a loop that changed nothing.
            "round" => "failed (continued)",
            _ => status,
        };
        assert!(
            *status == want && (*status != "failed" || *step == "gave_up"),
            "{step} {status}: {steps:?}"
        );
    }
    let visits = |step: &str| -> usize {
        events
            .iter()
            .filter(|e| e["type"] == "step_started" && e["step"] == step && e["attempt"] == 1)
            .count()
    };
    // The failures looped: the debugger ran, the coder and the checks ran again, at most 3
    // rounds.
    let (implement, test, fix, round) = (
        visits("implement"),
        visits("test"),
        visits("fix"),
        visits("round"),
    );
    assert!(
        (1..=3).contains(&fix)
            && round == fix
            && (2..=4).contains(&implement)
            && (2..=4).contains(&test),
        "implement {implement}, test {test}, fix {fix}, round {round}: {steps:?}"
    );
}
