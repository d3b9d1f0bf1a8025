//! Forking runs through control: the fork copies the log up to the cut, its edits are what
//! the next steps see, and it is authorized, scoped and audited like a start.

use baton_control::{Code, Cut, ForkRequest, Resumed};
use baton_types::{EditTarget, Event, RunStatus};
use serde_json::{Value, json};

use super::*;

const THREE: &str = r#"version: 1
name: three
steps:
  - { id: one, tool: echo, with: { text: "one" } }
  - { id: two, tool: echo, with: { text: "two saw {{ steps.one.output }}" } }
  - { id: three, tool: echo, with: { text: "three saw {{ steps.two.output }}" } }
"#;

fn fork_req(cut: Cut, edits: Vec<(EditTarget, Value)>) -> ForkRequest {
    ForkRequest {
        cut,
        edits,
        models: Vec::new(),
    }
}

fn output_of(one: &str) -> (EditTarget, Value) {
    (EditTarget::StepOutput { step: one.into() }, json!("EDITED"))
}

#[tokio::test]
async fn a_fork_before_a_step_runs_it_again_on_the_edited_state() {
    let c = memory();
    with_tenants(&c, &["acme", "beta"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let parent = start(&c, &a, THREE).await;
    let pid = parent.to_string();
    let parent_events = c.events(&a, &pid, 0, None).await.unwrap();

    let req = fork_req(Cut::Before("two".into()), vec![output_of("one")]);
    let f = c.fork_run(&a, &pid, req).await.unwrap();
    assert_eq!(f.from.run, parent);
    assert_eq!(
        c.spawn(f.drive).await.unwrap().unwrap(),
        RunStatus::Succeeded
    );
    let fid = f.run.to_string();
    let d = c.run_detail(&a, &fid).await.unwrap();
    assert_eq!(d.forked_from, Some(f.from));
    assert_eq!(d.run.started_by.as_deref(), Some("ka"));
    assert_eq!(d.run.outputs, Some(json!("three saw two saw EDITED")));
    // The copied prefix is the parent's, seq for seq, then the edit, then the fork's own.
    let evs = c.events(&a, &fid, 0, None).await.unwrap();
    let cut = usize::try_from(f.from.seq).unwrap();
    for (mine, theirs) in evs.iter().zip(&parent_events).take(cut).skip(1) {
        assert_eq!(mine.event, theirs.event);
    }
    assert!(matches!(
        &evs[0].event,
        Event::RunCreated { forked_from: Some(o), .. } if *o == f.from
    ));
    assert!(matches!(
        &evs[cut].event,
        Event::StateEdited { by: Some(by), .. } if by == "ka"
    ));
    // Step two ran again, under the fork's own key.
    let keys: Vec<&str> = evs
        .iter()
        .filter_map(|e| match &e.event {
            Event::StepStarted { step, key, .. } if step == "two" => Some(key.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(keys.len(), 1);
    assert!(keys[0].starts_with(&fid), "{keys:?}");
    // A fork of the fork keeps the edit it copies, and names its own parent.
    let g = c
        .fork_run(&a, &fid, fork_req(Cut::After("two".into()), vec![]))
        .await
        .unwrap();
    assert_eq!(g.from.run, f.run);
    assert_eq!(
        c.spawn(g.drive).await.unwrap().unwrap(),
        RunStatus::Succeeded
    );
    let d = c.run_detail(&a, &g.run.to_string()).await.unwrap();
    assert_eq!(d.run.outputs, Some(json!("three saw two saw EDITED")));
    // The parent is untouched.
    assert_eq!(c.events(&a, &pid, 0, None).await.unwrap(), parent_events);
    // Audited as a start of the new run, naming its origin.
    let audit = c
        .audit(
            &caller("acme", "adm", Role::Admin),
            None,
            &AuditQuery::default(),
        )
        .await
        .unwrap();
    let entry = &audit
        .iter()
        .find(|e| e.entry.action == "run.fork")
        .unwrap()
        .entry;
    assert_eq!(entry.object.as_deref(), Some(format!("run/{fid}").as_str()));
    assert!(
        entry.details.to_string().contains(&pid),
        "{:?}",
        entry.details
    );
}

#[tokio::test]
async fn a_fork_is_refused_with_a_reason_and_scoped_like_a_start() {
    let c = memory();
    with_tenants(&c, &["acme", "beta"]).await;
    let a = caller("acme", "ka", Role::Editor);
    let parent = start(&c, &a, THREE).await.to_string();
    let runs_before = c
        .list_runs(&a, RunQuery::default())
        .await
        .unwrap()
        .runs
        .len();
    let refused = |e: Error, code: Code, text: &str| {
        assert_eq!(e.code(), code, "{e}");
        assert!(e.to_string().contains(text), "{e}");
    };
    for (req, text) in [
        (fork_req(Cut::At(999), vec![]), "no event 999"),
        (
            fork_req(Cut::Before("nope".into()), vec![]),
            "no step 'nope'",
        ),
        (
            fork_req(Cut::Before("two".into()), vec![output_of("two")]),
            "step two has no output",
        ),
        (
            fork_req(Cut::After("one".into()), vec![output_of("ghost")]),
            "no step 'ghost'",
        ),
        (
            ForkRequest {
                models: vec![("nobody".into(), "scripted/x".into())],
                ..fork_req(Cut::At(2), vec![])
            },
            "no agent 'nobody'",
        ),
    ] {
        refused(
            c.fork_run(&a, &parent, req).await.err().unwrap(),
            Code::Invalid,
            text,
        );
    }
    let ok = || fork_req(Cut::After("one".into()), vec![]);
    let viewer = caller("acme", "kv", Role::Viewer);
    refused(
        c.fork_run(&viewer, &parent, ok()).await.err().unwrap(),
        Code::Forbidden,
        "may not start runs",
    );
    let other = caller("beta", "kb", Role::Admin);
    refused(
        c.fork_run(&other, &parent, ok()).await.err().unwrap(),
        Code::NotFound,
        "no run",
    );
    // A runner forks only the runs it started.
    let runner = caller("acme", "kr", Role::Runner);
    refused(
        c.fork_run(&runner, &parent, ok()).await.err().unwrap(),
        Code::NotFound,
        "no run",
    );
    let after = c
        .list_runs(&a, RunQuery::default())
        .await
        .unwrap()
        .runs
        .len();
    assert_eq!(after, runs_before, "a refused fork stored a run");
}

#[tokio::test]
async fn a_fork_with_an_input_edited_is_created_with_it() {
    let c = memory();
    let a = Caller::local();
    let parent = start(&c, &a, ECHO).await.to_string();
    let who = (EditTarget::Input { name: "who".into() }, json!("Ada"));
    let f = c
        .fork_run(&a, &parent, fork_req(Cut::Before("hi".into()), vec![who]))
        .await
        .unwrap();
    assert_eq!(
        c.spawn(f.drive).await.unwrap().unwrap(),
        RunStatus::Succeeded
    );
    let d = c.run_detail(&a, &f.run.to_string()).await.unwrap();
    assert_eq!(d.run.inputs, json!({"who": "Ada"}));
    assert_eq!(d.run.outputs, Some(json!("hi Ada")));
    // An input the workflow does not take, or of the wrong type, is refused.
    for (value, says) in [(json!(3), "who"), (json!("x"), "unknown input 'nope'")] {
        let name = if says == "who" { "who" } else { "nope" };
        let edit = (EditTarget::Input { name: name.into() }, value);
        let req = fork_req(Cut::Before("hi".into()), vec![edit]);
        let e = c.fork_run(&a, &parent, req).await.err().unwrap();
        assert_eq!(e.code(), Code::Invalid, "{e}");
        assert!(e.to_string().contains(says), "{e}");
    }
}

#[tokio::test]
async fn a_fork_left_undriven_is_resumed_from_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let (c, _store) = sqlite(&dir);
    let a = Caller::local();
    let parent = start(&c, &a, THREE).await.to_string();
    let req = fork_req(
        Cut::After("one".into()),
        vec![
            output_of("one"),
            (EditTarget::State { key: "k".into() }, json!(1)),
        ],
    );
    // As if the process that forked it died before driving it.
    let f = c.fork_run(&a, &parent, req).await.unwrap();
    let fid = f.run.to_string();
    drop(f.drive);
    let st = c.run_state(&a, &fid).await.unwrap();
    assert_eq!(st.outputs["one"], json!("EDITED"));
    assert_eq!(st.state["k"], json!(1));
    let Resumed::Drive(d) = c.resume(&a, &fid, false).await.unwrap() else {
        panic!("the fork was not handed back to drive");
    };
    assert_eq!(c.spawn(*d).await.unwrap().unwrap(), RunStatus::Succeeded);
    let d = c.run_detail(&a, &fid).await.unwrap();
    assert_eq!(d.run.outputs, Some(json!("three saw two saw EDITED")));
}
