//! Two `baton serve` replicas on one PostgreSQL database: A with its embedded worker, B
//! API-only (`--no-worker`). A run started on A streams its events to subscribers of B (an
//! SSE stream, and B's tenant-wide WebSocket, which only `LISTEN/NOTIFY` can feed: B drives
//! nothing); an approval sent to B reaches the worker of A; a run started on B is queued and
//! run by A's worker.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::time::{Duration, Instant};

use common::serve::serve_on;
use futures::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const GATE: &str = "version: 1\nname: gate\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n  - { id: nap, tool: sleep, with: { duration: 300ms } }\n  - id: ok\n    human: { prompt: \"Ship it?\" }\n  - { id: last, tool: echo, with: { text: shipped } }\n";
/// A run that waits for a person while another branch still runs: its driver holds it.
const HELD: &str = "version: 1\nname: held\nsteps:\n  - id: both\n    parallel:\n      - id: ok\n        human: { prompt: \"Ship it?\" }\n      - { id: nap, tool: sleep, with: { duration: 2s } }\n    join: { strategy: all }\n  - { id: last, tool: echo, with: { text: shipped } }\n";
const PLAIN: &str =
    "version: 1\nname: plain\nsteps:\n  - { id: only, tool: echo, with: { text: queued } }\n";

struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.key)
            .json(&body)
            .send()
            .await
            .unwrap();
        (r.status().as_u16(), r.json().await.unwrap_or(Value::Null))
    }

    async fn get(&self, path: &str) -> Value {
        let r = self
            .http
            .get(format!("{}/api/v1{path}", self.base))
            .bearer_auth(&self.key)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200, "GET {path}");
        r.json().await.unwrap()
    }

    async fn start(&self, source: &str) -> String {
        let (status, r) = self.post("/runs", json!({ "source": source })).await;
        assert_eq!(status, 201, "{r}");
        r["id"].as_str().unwrap().to_string()
    }

    async fn until_status(&self, run: &str, want: &str, secs: u64) {
        let end = Instant::now() + Duration::from_secs(secs);
        loop {
            let st = self.get(&format!("/runs/{run}")).await["run"]["status"].clone();
            if st == want {
                return;
            }
            assert!(
                Instant::now() < end,
                "waited {secs}s for run {run} to be {want} (is {st})"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_replicas_share_events_approvals_and_runs_through_the_database() {
    let Some(url) = baton_test_support::postgres::database("two serve replicas") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_path_buf();
    let a = serve_on(url.as_ref(), |c| {
        c.env("BATON_HOME", &h)
            .args(["--lease", "1500ms", "--poll", "100ms"]);
    });
    let key = a.key.clone().expect("the first start prints an admin key");
    let h = home.path().to_path_buf();
    let b = serve_on(url.as_ref(), |c| {
        c.env("BATON_HOME", &h).arg("--no-worker");
    });
    assert_eq!(b.key, None, "one database: the key was made by A");
    let api = |addr: &str| Api {
        http: reqwest::Client::new(),
        base: format!("http://{addr}"),
        key: key.clone(),
    };
    let (on_a, on_b) = (api(&a.addr), api(&b.addr));

    // B's tenant-wide WebSocket: B drives nothing, so only relayed events reach it.
    let mut req = format!("ws://{}/api/v1/ws", b.addr)
        .into_client_request()
        .unwrap();
    req.headers_mut()
        .insert("authorization", format!("Bearer {key}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    ws.send(Message::Text(
        json!({"subscribe_tenant": {}}).to_string().into(),
    ))
    .await
    .unwrap();

    let run = on_a.start(GATE).await;
    // An SSE subscriber on B follows the run A drives, to its end.
    let sse = {
        let url = format!("{}/api/v1/runs/{run}/stream", on_b.base);
        let http = on_b.http.clone();
        let key = key.clone();
        tokio::spawn(async move {
            http.get(url)
                .bearer_auth(key)
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap()
        })
    };
    on_b.until_status(&run, "waiting", 30).await;
    // The approval goes to B, which executes nothing: it is queued for a worker, and A's
    // worker (the only one) claims the run and continues it.
    let (code, answered) = on_b.post(&format!("/runs/{run}/approve"), json!({})).await;
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["recorded"], true, "{answered}");
    on_a.until_status(&run, "succeeded", 30).await;
    let text = tokio::time::timeout(Duration::from_secs(30), sse)
        .await
        .expect("the SSE stream on B ends with the run")
        .unwrap();
    for kind in [
        "run_created",
        "human_requested",
        "human_responded",
        "run_succeeded",
    ] {
        assert!(text.contains(&format!("event: {kind}")), "{kind}:\n{text}");
    }
    let seqs: Vec<u64> = text
        .lines()
        .filter_map(|l| l.strip_prefix("id: "))
        .map(|s| s.trim().parse().unwrap())
        .collect();
    assert_eq!(
        seqs,
        (1..=*seqs.last().unwrap()).collect::<Vec<_>>(),
        "{text}"
    );

    // B's tenant stream saw A's events of the run, through to its end.
    let mut kinds = Vec::new();
    let end = Instant::now() + Duration::from_secs(30);
    while !kinds.iter().any(|k| k == "run_succeeded") {
        let left = end.saturating_duration_since(Instant::now());
        let msg = tokio::time::timeout(left, ws.next())
            .await
            .expect("B's tenant stream got the run's end")
            .unwrap()
            .unwrap();
        let Message::Text(t) = msg else { continue };
        let v: Value = serde_json::from_str(&t).unwrap();
        if v["type"] == "event" && v["event"]["run_id"] == run.as_str() {
            kinds.push(v["event"]["type"].as_str().unwrap().to_string());
        }
    }
    for kind in ["step_succeeded", "human_responded", "run_succeeded"] {
        assert!(kinds.iter().any(|k| k == kind), "{kind}: {kinds:?}");
    }

    // A run started on B is queued (B executes nothing) and A's worker runs it.
    let queued = on_b.start(PLAIN).await;
    on_b.until_status(&queued, "succeeded", 30).await;
    let d = on_b.get(&format!("/runs/{queued}")).await;
    assert_eq!(d["run"]["outputs"], "queued", "{d}");
    // A's worker claimed both (the approved run and the queued one); B has none.
    let metrics = |base: String| async move {
        reqwest::get(format!("{base}/metrics"))
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    };
    let ma = metrics(on_a.base.clone()).await;
    assert!(ma.contains("baton_worker_runs_claimed_total 2"), "{ma}");
    let mb = metrics(on_b.base.clone()).await;
    assert!(!mb.contains("baton_worker_runs_claimed_total"), "{mb}");

    // An approval sent to B for a run A drives (held while its other branch sleeps): queued
    // for A, whose executor takes it while it runs.
    let held = on_a.start(HELD).await;
    let end = Instant::now() + Duration::from_secs(30);
    loop {
        let evs = on_b.get(&format!("/runs/{held}/events")).await;
        if evs
            .as_array()
            .unwrap()
            .iter()
            .any(|e| e["type"] == "human_requested")
        {
            break;
        }
        assert!(Instant::now() < end, "run {held} never asked for approval");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let (code, answered) = on_b.post(&format!("/runs/{held}/approve"), json!({})).await;
    assert_eq!(code, 200, "{answered}");
    assert_eq!(answered["held_elsewhere"], true, "{answered}");
    on_b.until_status(&held, "succeeded", 30).await;
    let evs = on_b.get(&format!("/runs/{held}/events")).await;
    let kinds: Vec<&str> = evs
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    // Driven by A from start to end: started once, never resumed elsewhere.
    assert_eq!(
        kinds.iter().filter(|k| **k == "run_started").count(),
        1,
        "{kinds:?}"
    );
    assert!(kinds.contains(&"human_responded"), "{kinds:?}");

    // A run that requires a tag A's worker lacks: A leaves it to the workers; it waits until
    // a worker with the tag starts.
    let (code, r) = on_a
        .post("/runs", json!({"source": PLAIN, "worker_tags": ["gpu"]}))
        .await;
    assert_eq!(code, 201, "{r}");
    let tagged = r["id"].as_str().unwrap().to_string();
    let (code, r) = on_a
        .post(
            "/runs",
            json!({"source": PLAIN, "worker_tags": ["no good"]}),
        )
        .await;
    assert_eq!(
        (code, r["error"]["details"]["field"].clone()),
        (422, json!("worker_tags")),
        "{r}"
    );
    // Another run after it is done first: the tagged one was not taken.
    let later = on_a.start(PLAIN).await;
    on_a.until_status(&later, "succeeded", 30).await;
    assert_eq!(
        on_a.get(&format!("/runs/{tagged}")).await["run"]["status"],
        "pending"
    );
    // A run no worker can take, cancelled through B (which executes nothing): cancelled
    // there and then, nothing of it run.
    let (code, r) = on_b
        .post(
            "/runs",
            json!({"source": PLAIN, "worker_tags": ["nowhere"]}),
        )
        .await;
    assert_eq!(code, 201, "{r}");
    let stuck = r["id"].as_str().unwrap().to_string();
    let (code, r) = on_b.post(&format!("/runs/{stuck}/cancel"), json!({})).await;
    assert_eq!(code, 200, "{r}");
    let d = on_a.get(&format!("/runs/{stuck}")).await;
    assert_eq!(d["run"]["status"], "cancelled", "{d}");
    assert!(d["steps"].as_array().unwrap().is_empty(), "{d}");
    let mut gpu = common::baton()
        .env("BATON_HOME", home.path())
        .args([
            "worker",
            "--db",
            &url,
            "--worker-tags",
            "gpu",
            "--poll",
            "100ms",
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    on_a.until_status(&tagged, "succeeded", 30).await;
    gpu.kill().unwrap();
    gpu.wait().unwrap();
    drop(a);
    drop(b);
}

/// On SQLite nothing shares the work: a run cannot require worker tags.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn worker_tags_are_refused_on_sqlite() {
    let db = common::Db::new();
    let s = common::serve::serve(&db);
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", s.addr),
        key: s.key.clone().unwrap(),
    };
    let (code, r) = api
        .post("/runs", json!({"source": PLAIN, "worker_tags": ["gpu"]}))
        .await;
    assert_eq!(code, 422, "{r}");
    assert_eq!(r["error"]["details"]["field"], "worker_tags", "{r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("PostgreSQL"),
        "{r}"
    );
}

/// `baton workers drain` of a server's embedded worker stops the server (it would otherwise
/// take runs it no longer runs).
#[test]
fn draining_a_servers_worker_stops_the_server() {
    let Some(url) = baton_test_support::postgres::database("drain a server's worker") else {
        return;
    };
    let home = tempfile::tempdir().unwrap();
    let h = home.path().to_path_buf();
    let mut s = serve_on(url.as_ref(), |c| {
        c.env("BATON_HOME", &h);
    });
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let id = format!("{}:{}", host.trim(), s.child.id());
    let o = common::baton()
        .env("BATON_HOME", home.path())
        .args(["workers", "drain", &id, "--db", &url])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", common::text(&o));
    let end = Instant::now() + Duration::from_secs(30);
    let st = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st;
        }
        assert!(
            Instant::now() < end,
            "the server did not stop after its worker drained"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert!(st.success(), "{st:?}");
}
