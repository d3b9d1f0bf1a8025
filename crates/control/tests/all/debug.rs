//! The debugger's breakpoints through control: changed on a stopped run (logged, published on
//! the bus for live viewers, audited), queued for the process that drives a running one and
//! honoured there, and refused with reasons (another tenant, a viewer, an unknown step, no
//! change, a finished run). An edit of a stopped run reaches the bus too.

use std::time::Duration;

use baton_control::{BusItem, Code, ControlOutcome, Resumed};
use baton_store::AuditQuery;
use baton_types::{BreakpointChange, Event, PauseReason, RunStatus};
use serde_json::json;

use super::edit::at_breakpoint;
use super::*;

fn add(ids: &[&str]) -> BreakpointChange {
    BreakpointChange {
        add: ids.iter().map(|s| s.to_string()).collect(),
        ..BreakpointChange::default()
    }
}

/// The next logged event of `run` on the bus, within a few seconds.
async fn next_on_bus(
    rx: &mut tokio::sync::broadcast::Receiver<baton_control::BusEvent>,
    run: &str,
) -> Event {
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            let ev = rx.recv().await.unwrap();
            if let BusItem::Event(r) = &ev.item
                && r.run_id.to_string() == run
            {
                return r.event.clone();
            }
        }
    })
    .await
    .expect("an event on the bus")
}

#[tokio::test]
async fn breakpoints_of_a_stopped_run_are_logged_published_and_audited() {
    let c = memory();
    with_tenants(&c, &["acme"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let id = at_breakpoint(&c, &a).await;
    let mut bus = c.subscribe();

    let done = c.change_breakpoints(&a, &id, add(&["one"])).await.unwrap();
    assert!(!done.queued);
    assert_eq!(done.debug.breakpoints, ["one", "two"]);
    assert_eq!(
        done.debug.paused,
        Some(PauseReason::Breakpoint { step: "two".into() })
    );
    // Live viewers see it without reading the log again.
    match next_on_bus(&mut bus, &id).await {
        Event::BreakpointsSet { breakpoints, by } => {
            assert_eq!(breakpoints, ["one", "two"]);
            assert_eq!(by.as_deref(), Some("ka"));
        }
        other => panic!("not breakpoints_set: {other:?}"),
    }
    // So does an edit of the stopped run.
    let edit = vec![("state.note".parse().unwrap(), json!("n"))];
    assert_eq!(
        c.edit_run(&a, &id, edit).await.unwrap(),
        ControlOutcome::Applied(RunStatus::Paused)
    );
    assert!(matches!(
        next_on_bus(&mut bus, &id).await,
        Event::StateEdited { .. }
    ));
    // The run detail shows the debugger's state.
    let d = c.run_detail(&a, &id).await.unwrap().debug.unwrap();
    assert_eq!(d.breakpoints, ["one", "two"]);

    let set = BreakpointChange {
        set: Some(vec![]),
        ..BreakpointChange::default()
    };
    let done = c.change_breakpoints(&a, &id, set).await.unwrap();
    assert!(done.debug.breakpoints.is_empty());
    let admin = caller("acme", "kadmin", Role::Admin);
    let entries = c.audit(&admin, None, &AuditQuery::default()).await.unwrap();
    let changes: Vec<_> = entries
        .iter()
        .filter(|e| e.entry.action == "run.breakpoints")
        .collect();
    assert_eq!(changes.len(), 2, "{changes:?}");
    assert!(
        changes
            .iter()
            .all(|e| e.entry.key_id.as_deref() == Some("ka"))
    );
    assert!(
        changes
            .iter()
            .any(|e| e.entry.details["breakpoints"] == json!(["one", "two"])),
        "{changes:?}"
    );

    // With none left, the run finishes when resumed.
    let Resumed::Drive(d) = c.resume(&a, &id, false).await.unwrap() else {
        panic!("nobody holds the paused run: a drive");
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
}

#[tokio::test]
async fn a_breakpoint_added_while_a_process_drives_the_run_is_honoured() {
    let c = memory();
    with_tenants(&c, &["acme"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let wf = "version: 1\nname: slow\nsteps:\n  - { id: wait, tool: sleep, with: { duration: 1s } }\n  - { id: next, tool: echo, with: { text: next } }\n";
    let s = c
        .start_run(
            &a,
            WorkflowSource::Inline { text: wf.into() },
            RunRequest::default(),
        )
        .await
        .unwrap();
    let id = s.run.to_string();
    let task = c.spawn(s.drive.unwrap());
    let done = c.change_breakpoints(&a, &id, add(&["next"])).await.unwrap();
    assert!(done.queued, "the spawned task holds the run");
    assert_eq!(done.debug.breakpoints, ["next"]);
    assert_eq!(task.await.unwrap().unwrap(), RunStatus::Paused);
    let d = c.run_detail(&a, &id).await.unwrap().debug.unwrap();
    assert_eq!(
        d.paused,
        Some(PauseReason::Breakpoint {
            step: "next".into()
        })
    );
}

#[tokio::test]
async fn a_breakpoint_change_is_refused_with_reasons() {
    let c = memory();
    with_tenants(&c, &["acme", "beta"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let id = at_breakpoint(&c, &a).await;
    let code =
        |r: baton_control::Result<baton_control::runs::BreakpointsChanged>| r.unwrap_err().code();
    let b = caller("beta", "kb", Role::Admin);
    assert_eq!(
        code(c.change_breakpoints(&b, &id, add(&["one"])).await),
        Code::NotFound
    );
    let v = caller("acme", "kv", Role::Viewer);
    assert_eq!(
        code(c.change_breakpoints(&v, &id, add(&["one"])).await),
        Code::Forbidden
    );
    let e = c
        .change_breakpoints(&a, &id, BreakpointChange::default())
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Invalid, "{e}");
    let e = c
        .change_breakpoints(&a, &id, add(&["one", "nope"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Invalid, "{e}");
    assert!(
        e.to_string().contains("no step 'nope' (steps: one, two)"),
        "{e}"
    );
    // Nothing was logged by the refusals; the viewer's was audited as denied.
    let evs = c.events(&a, &id, 0, None).await.unwrap();
    assert!(
        !evs.iter()
            .any(|e| matches!(e.event, Event::BreakpointsSet { .. }))
    );
    let admin = caller("acme", "kadmin", Role::Admin);
    let entries = c.audit(&admin, None, &AuditQuery::default()).await.unwrap();
    assert!(entries.iter().any(|e| e.entry.action == "run.breakpoints"
        && e.entry.key_id.as_deref() == Some("kv")));

    // Once the run is over (STOPS fails without `state.note`): nothing left to pause before.
    let Resumed::Drive(d) = c.resume(&a, &id, false).await.unwrap() else {
        panic!("a drive");
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Failed);
    let e = c
        .change_breakpoints(&a, &id, add(&["one"]))
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::Conflict, "{e}");
    assert!(e.to_string().contains("is already failed"), "{e}");
}
