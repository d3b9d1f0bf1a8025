//! Editing a paused run's state through control: an edit at a breakpoint is what the next
//! step's template sees; it is refused unless the run is paused, scoped, authorized, checked
//! and audited.

use baton_control::{Code, ControlOutcome, Resumed};
use baton_store::AuditQuery;
use baton_types::{EditTarget, Event, RunStatus};
use serde_json::{Value, json};

use super::*;

pub(crate) const STOPS: &str = r#"version: 1
name: stops
steps:
  - { id: one, tool: echo, with: { text: "one" } }
  - { id: two, tool: echo, with: { text: "two saw {{ steps.one.output }} and {{ state.note }}" } }
"#;

fn set(path: &str, value: Value) -> (EditTarget, Value) {
    (path.parse().unwrap(), value)
}

/// A run of STOPS paused at its breakpoint before `two`.
pub(crate) async fn at_breakpoint(c: &Control, who: &Caller) -> String {
    let req = RunRequest {
        breakpoints: vec!["two".into()],
        ..RunRequest::default()
    };
    let s = c
        .start_run(who, WorkflowSource::Inline { text: STOPS.into() }, req)
        .await
        .unwrap();
    let d = s.drive.unwrap();
    assert_eq!(c.spawn(d).await.unwrap().unwrap(), RunStatus::Paused);
    s.run.to_string()
}

#[tokio::test]
async fn an_edit_at_a_breakpoint_is_seen_by_the_next_step() {
    let c = memory();
    with_tenants(&c, &["acme"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let id = at_breakpoint(&c, &a).await;
    let edits = vec![
        set("steps.one.output", json!("EDITED")),
        set("state.note", json!("a note")),
    ];
    let done = c.edit_run(&a, &id, edits).await.unwrap();
    assert_eq!(done, ControlOutcome::Applied(RunStatus::Paused));
    let evs = c.events(&a, &id, 0, None).await.unwrap();
    let edited: Vec<String> = evs
        .iter()
        .filter_map(|e| match &e.event {
            Event::StateEdited { target, by, .. } => {
                assert_eq!(by.as_deref(), Some("ka"));
                Some(target.to_string())
            }
            _ => None,
        })
        .collect();
    assert_eq!(edited, ["steps.one.output", "state.note"]);

    let Resumed::Drive(d) = c.resume(&a, &id, false).await.unwrap() else {
        panic!("nobody holds the paused run: a drive");
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
    let detail = c.run_detail(&a, &id).await.unwrap();
    assert_eq!(detail.run.outputs, Some(json!("two saw EDITED and a note")));
    // Audited with what was set.
    let admin = caller("acme", "kadmin", Role::Admin);
    let entries = c.audit(&admin, None, &AuditQuery::default()).await.unwrap();
    let e = entries
        .iter()
        .find(|e| e.entry.action == "run.edit")
        .expect("a run.edit entry");
    assert_eq!(e.entry.key_id.as_deref(), Some("ka"));
    assert_eq!(
        e.entry.details["set"],
        json!(["steps.one.output", "state.note"])
    );
}

#[tokio::test]
async fn an_edit_is_refused_unless_paused_scoped_allowed_and_valid() {
    let c = memory();
    with_tenants(&c, &["acme", "beta"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let id = at_breakpoint(&c, &a).await;
    let note = || vec![set("state.note", json!(1))];
    let code = |r: baton_control::Result<ControlOutcome>| r.unwrap_err().code();

    let b = caller("beta", "kb", Role::Admin);
    assert_eq!(code(c.edit_run(&b, &id, note()).await), Code::NotFound);
    let v = caller("acme", "kv", Role::Viewer);
    assert_eq!(code(c.edit_run(&v, &id, note()).await), Code::Forbidden);
    assert_eq!(code(c.edit_run(&a, &id, vec![]).await), Code::Invalid);
    for bad in [
        set("inputs.who", json!("x")),
        set("steps.nope.output", json!("x")),
        set("steps.two.output", json!("x")),
    ] {
        let e = c.edit_run(&a, &id, vec![bad]).await.unwrap_err();
        assert_eq!(e.code(), Code::Invalid, "{e}");
    }
    // Nothing was logged by the refused edits.
    let evs = c.events(&a, &id, 0, None).await.unwrap();
    assert!(
        !evs.iter()
            .any(|e| matches!(e.event, Event::StateEdited { .. }))
    );

    // Once it ran on, it is no longer paused: a conflict.
    let Resumed::Drive(d) = c.resume(&a, &id, false).await.unwrap() else {
        panic!("a drive");
    };
    c.spawn(*d).await.unwrap().unwrap();
    let e = c.edit_run(&a, &id, note()).await.unwrap_err();
    assert_eq!(e.code(), Code::Conflict, "{e}");
    assert!(e.to_string().contains("not paused"), "{e}");
}
