//! `baton serve` as a user starts it: the first start prints an admin key once, the API runs
//! workflows, and a server killed with `kill -9` in the middle of 100 runs resumes them all on
//! its next start.
// End-to-end tests run the real binary.
#![allow(clippy::disallowed_methods)]
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::Db;
use common::serve::serve;
use serde_json::{Value, json};

const SLOW: &str = "version: 1\nname: slow\ninputs:\n  n: { type: integer }\nsteps:\n  - { id: first, tool: echo, with: { text: \"{{ inputs.n }}\" } }\n  - { id: nap, tool: sleep, with: { duration: 2s } }\n  - { id: last, tool: echo, with: { text: done } }\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_killed_server_resumes_every_run_on_its_next_start() {
    let db = Db::new();
    let mut s = serve(&db);
    let key = s.key.clone().expect("the first start prints an admin key");
    assert!(key.starts_with("bk_"), "{key}");
    let base = format!("http://{}", s.addr);
    let http = reqwest::Client::new();
    assert_eq!(
        http.get(format!("{base}/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    // No key, no API.
    assert_eq!(
        http.get(format!("{base}/api/v1/runs"))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    let mut ids = Vec::new();
    for n in 0..100 {
        let r: Value = http
            .post(format!("{base}/api/v1/runs"))
            .bearer_auth(&key)
            .json(&json!({"source": SLOW, "inputs": {"n": n}}))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        ids.push(r["id"].as_str().expect("a run id").to_string());
    }
    // Mid-flight: the runs are sleeping in their second step.
    s.child.kill().unwrap();
    s.child.wait().unwrap();

    let mut s2 = serve(&db);
    assert_eq!(
        s2.key, None,
        "the admin key is printed on the first start only"
    );
    // Every run was still sleeping when the server was killed: all were resumed.
    assert_eq!(s2.resumed, 100);
    let base = format!("http://{}", s2.addr);
    for (n, id) in ids.iter().enumerate() {
        // Follow each run to its end (the stream ends with the event that ends the run).
        let text = http
            .get(format!("{base}/api/v1/runs/{id}/stream"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            text.contains("event: run_succeeded"),
            "run {n} {id}:\n{text}"
        );
        let d: Value = http
            .get(format!("{base}/api/v1/runs/{id}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(d["run"]["status"], "succeeded", "{d}");
        assert_eq!(d["run"]["outputs"], "done");
        // The first step finished before the kill and did not run again.
        let firsts: Vec<&Value> = d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "first")
            .collect();
        assert_eq!(firsts.len(), 1, "{d}");
        assert_eq!(firsts[0]["attempts"], 1, "{d}");
        assert_eq!(firsts[0]["output"], n, "{d}");
    }
    s2.child.kill().unwrap();
    s2.child.wait().unwrap();
}

const ESCALATES: &str = "version: 1\nname: gate\nsteps:\n  - id: ok\n    human: { prompt: \"Ship it?\", timeout: 3s, escalate_to: admin }\n";
const LAPSES: &str = "version: 1\nname: lapse\nsteps:\n  - id: ok\n    human: { prompt: \"Ship it?\", timeout: 1s, on_timeout: reject }\n";

/// A client of one server with one key.
struct Api {
    http: reqwest::Client,
    base: String,
    key: String,
}

impl Api {
    async fn post(&self, path: &str, key: &str, body: Value) -> (u16, Value) {
        let r = self
            .http
            .post(format!("{}/api/v1{path}", self.base))
            .bearer_auth(key)
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
        let (status, r) = self
            .post("/runs", &self.key, json!({ "source": source }))
            .await;
        assert_eq!(status, 201, "{r}");
        r["id"].as_str().unwrap().to_string()
    }

    /// Waits (real time: the deadlines are) until `check` holds, at most `secs` seconds.
    async fn until(&self, what: &str, secs: u64, check: impl AsyncFn(&Api) -> bool) {
        let end = std::time::Instant::now() + std::time::Duration::from_secs(secs);
        while !check(self).await {
            assert!(std::time::Instant::now() < end, "waited {secs}s for {what}");
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
    }

    async fn status(&self, run: &str) -> String {
        self.get(&format!("/runs/{run}")).await["run"]["status"]
            .as_str()
            .unwrap()
            .to_string()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unanswered_human_steps_escalate_and_time_out_in_a_running_and_a_restarted_server() {
    let db = Db::new();
    let mut s = serve(&db);
    let key = s.key.clone().expect("the first start prints an admin key");
    let editor = db.run(&["keys", "create", "--role", "editor"]);
    let editor = String::from_utf8(editor.stdout).unwrap().trim().to_string();
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", s.addr),
        key,
    };
    let gate = api.start(ESCALATES).await;
    let lapse = api.start(LAPSES).await;

    // Nobody answers `lapse` within its second: the server rejects it on time.
    api.until("the lapsed run to fail", 30, async |a| {
        a.status(&lapse).await == "failed"
    })
    .await;
    let run = api.get(&format!("/runs/{lapse}")).await;
    assert!(
        run["run"]["error"]
            .as_str()
            .is_some_and(|e| e.contains("no answer within 1s")),
        "{run}"
    );

    // `gate` goes to the admins after 3 s: the inbox says so, an editor may no longer answer.
    api.until("the escalation", 30, async |a| {
        a.get("/approvals").await["approvals"]
            .as_array()
            .unwrap()
            .iter()
            .any(|w| w["run"] == gate.as_str() && w["escalated_to"] == "admin")
    })
    .await;
    let (status, refused) = api
        .post(&format!("/runs/{gate}/approve"), &editor, json!({}))
        .await;
    assert_eq!(status, 403, "{refused}");
    assert!(
        refused["error"]["message"]
            .as_str()
            .unwrap()
            .contains("escalated to admin"),
        "{refused}"
    );
    let (status, r) = api
        .post(&format!("/runs/{gate}/approve"), &api.key, json!({}))
        .await;
    assert_eq!(status, 200, "{r}");
    api.until("the approved run to succeed", 30, async |a| {
        a.status(&gate).await == "succeeded"
    })
    .await;

    // A deadline that passes while no server runs is applied by the next one as it starts.
    let late = api.start(LAPSES).await;
    api.until("the run to wait", 30, async |a| {
        a.status(&late).await == "waiting"
    })
    .await;
    s.child.kill().unwrap();
    s.child.wait().unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    let s2 = serve(&db);
    let api = Api {
        base: format!("http://{}", s2.addr),
        ..api
    };
    api.until("the late run to fail", 30, async |a| {
        a.status(&late).await == "failed"
    })
    .await;
}

/// SIGTERM (what `kill` and service managers send) stops the server gracefully: the steps in
/// flight finish and are logged (not cut and run again), nothing new starts, the process exits
/// 0, and the next start resumes every run from where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_drains_the_runs_in_flight_and_the_next_start_finishes_them() {
    let db = Db::new();
    let mut s = serve(&db);
    let key = s.key.clone().expect("the first start prints an admin key");
    let api = Api {
        http: reqwest::Client::new(),
        base: format!("http://{}", s.addr),
        key: key.clone(),
    };
    let mut ids = Vec::new();
    for n in 0..5 {
        let (status, r) = api
            .post("/runs", &key, json!({"source": SLOW, "inputs": {"n": n}}))
            .await;
        assert_eq!(status, 201, "{r}");
        ids.push(r["id"].as_str().unwrap().to_string());
    }
    // Every run sleeps in `nap` when the signal comes.
    for id in &ids {
        api.until("the nap to start", 20, async |a: &Api| {
            let d = a.get(&format!("/runs/{id}")).await;
            d["steps"]
                .as_array()
                .unwrap()
                .iter()
                .any(|s| s["step"] == "nap")
        })
        .await;
    }
    let pid = s.child.id().to_string();
    let killed = std::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .unwrap();
    assert!(killed.success());
    let end = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let code = loop {
        if let Some(st) = s.child.try_wait().unwrap() {
            break st.code();
        }
        assert!(
            std::time::Instant::now() < end,
            "the server did not stop within 20 s"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    };
    assert_eq!(code, Some(0), "a graceful stop exits 0");
    for id in &ids {
        let o = db.run(&["runs", "logs", id, "--json"]);
        let log = String::from_utf8_lossy(&o.stdout);
        assert!(
            log.lines()
                .any(|l| l.contains("\"step_succeeded\"") && l.contains("\"nap\"")),
            "the nap in flight finished before the stop:\n{log}"
        );
        assert!(
            !log.contains("\"run_succeeded\""),
            "nothing new was done:\n{log}"
        );
    }

    let s2 = serve(&db);
    assert_eq!(s2.resumed, 5, "the next start resumes every run");
    let api = Api {
        base: format!("http://{}", s2.addr),
        ..api
    };
    for id in &ids {
        api.until("the run to end", 20, async |a: &Api| {
            a.status(id).await == "succeeded"
        })
        .await;
        let d = api.get(&format!("/runs/{id}")).await;
        let naps: Vec<&Value> = d["steps"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["step"] == "nap")
            .collect();
        assert_eq!(
            (naps.len(), naps[0]["attempts"].as_u64()),
            (1, Some(1)),
            "the nap ran once: {d}"
        );
        assert_eq!(d["run"]["outputs"], "done");
    }
}
