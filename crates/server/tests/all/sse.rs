//! Fan-out: 1,000 subscribers on one run's server-sent events over real loopback sockets, each
//! receiving every event of the run in seq order, once, up to the event that ends it. The run
//! waits on a `human` step while they connect; the approval sends the rest live.
//!
//! Every stream is pulled by its connection (no queue per subscriber in the server); a
//! subscriber that falls behind the bus reads what it missed from the run log by seq (see
//! `baton_control::follow`), so nothing is skipped.

use std::time::{Duration, Instant};

use baton_llm::Providers;
use baton_server::ServerConfig;
use futures::StreamExt;
use serde_json::{Value, json};

use super::{key_for, serve_loopback, test_state};

const ASK: &str = "version: 1\nname: ask\nsteps:\n  - { id: first, tool: echo, with: { text: one } }\n  - id: ok\n    human: { prompt: Ship it? }\n  - { id: last, tool: echo, with: { text: shipped } }\n";

const SUBSCRIBERS: usize = 1000;

/// Two sockets per subscriber live in this process (client and server side).
fn raise_open_file_limit(need: u64) {
    use nix::sys::resource::{Resource, getrlimit, setrlimit};
    let (soft, hard) = getrlimit(Resource::RLIMIT_NOFILE).unwrap();
    if soft >= need {
        return;
    }
    assert!(
        hard >= need,
        "{SUBSCRIBERS} subscribers need {need} open files; the hard limit is {hard} (raise `ulimit -Hn`)"
    );
    setrlimit(Resource::RLIMIT_NOFILE, need, hard).unwrap();
}

/// The `(seq, kind)` of each event of one SSE stream, read to its end.
async fn subscribe(
    http: reqwest::Client,
    url: String,
    key: String,
    waiting: tokio::sync::mpsc::Sender<()>,
) -> Vec<(u64, String)> {
    let resp = http.get(url).bearer_auth(key).send().await.unwrap();
    assert_eq!(resp.status(), 200);
    let mut body = resp.bytes_stream();
    let (mut buf, mut seen) = (String::new(), Vec::new());
    while let Some(chunk) = body.next().await {
        buf.push_str(std::str::from_utf8(&chunk.unwrap()).unwrap());
        while let Some(end) = buf.find("\n\n") {
            let frame: String = buf.drain(..end + 2).collect();
            let field = |name: &str| {
                frame
                    .lines()
                    .find_map(|l| l.strip_prefix(name).map(str::trim).map(str::to_string))
            };
            let (Some(id), Some(kind)) = (field("id:"), field("event:")) else {
                continue; // a keep-alive comment or a model delta
            };
            if kind == "human_requested" {
                let _ = waiting.send(()).await;
            }
            seen.push((id.parse().unwrap(), kind));
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_subscribers_each_receive_every_event_in_order() {
    raise_open_file_limit(2 * SUBSCRIBERS as u64 + 512);
    let state = test_state(Providers::default()).with_config(ServerConfig {
        rate_limit: None,
        ..Default::default()
    });
    let key = key_for(&state).await;
    let server = serve_loopback(state).await;
    let base = format!("http://{}/api/v1", server.addr);
    let http = reqwest::Client::new();
    let run: Value = http
        .post(format!("{base}/runs"))
        .bearer_auth(&key)
        .json(&json!({"source": ASK}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = run["id"].as_str().unwrap().to_string();

    let (tx, mut rx) = tokio::sync::mpsc::channel(SUBSCRIBERS);
    let subscribers: Vec<_> = (0..SUBSCRIBERS)
        .map(|_| {
            let url = format!("{base}/runs/{id}/stream");
            tokio::spawn(subscribe(http.clone(), url, key.clone(), tx.clone()))
        })
        .collect();
    drop(tx);
    // Every subscriber is connected and has seen the run wait for its approval.
    for _ in 0..SUBSCRIBERS {
        tokio::time::timeout(Duration::from_secs(30), rx.recv())
            .await
            .expect("subscribers connecting too slowly")
            .expect("a subscriber ended before the run waited");
    }
    let approved = Instant::now();
    let r = http
        .post(format!("{base}/runs/{id}/approve"))
        .bearer_auth(&key)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let mut all = Vec::new();
    for s in subscribers {
        all.push(
            tokio::time::timeout(Duration::from_secs(30), s)
                .await
                .expect("a subscriber did not receive the end of the run")
                .unwrap(),
        );
    }
    let fan_out = approved.elapsed();

    let log: Vec<Value> = http
        .get(format!("{base}/runs/{id}/events?limit=1000"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let want: Vec<(u64, String)> = log
        .iter()
        .map(|e| {
            let kind = e["type"].as_str().unwrap().to_string();
            (e["seq"].as_u64().unwrap(), kind)
        })
        .collect();
    assert_eq!(
        want.last().map(|e| e.1.as_str()),
        Some("run_succeeded"),
        "{want:?}"
    );
    for (n, seen) in all.iter().enumerate() {
        assert_eq!(seen, &want, "subscriber {n}");
    }
    println!(
        "{SUBSCRIBERS} subscribers: every event to each, {fan_out:?} from the approval to the last end event"
    );
    server.stop().await;
}
