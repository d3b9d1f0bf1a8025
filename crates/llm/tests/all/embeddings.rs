//! Embeddings over real HTTP on loopback: a small server answers each request with the next
//! canned answer and keeps what it was sent.

use std::sync::{Arc, Mutex};

use baton_llm::config::{Config, embedding_provider};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// (path, body) of each request.
type Seen = Arc<Mutex<Vec<(String, Value)>>>;

/// Serves `answers` (status, body) in turn on a loopback port; returns its base URL.
async fn server(answers: Vec<(u16, Value)>) -> (String, Seen) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    let seen: Seen = Arc::default();
    let log = seen.clone();
    tokio::spawn(async move {
        for (status, body) in answers {
            let (mut sock, _) = listener.accept().await.unwrap();
            let mut buf = Vec::new();
            let mut chunk = [0u8; 4096];
            // Read the head, then as many body bytes as Content-Length says.
            let (head_end, length) = loop {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
                if let Some(at) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                    let head = String::from_utf8_lossy(&buf[..at]).to_lowercase();
                    let length = head
                        .lines()
                        .find_map(|l| l.strip_prefix("content-length:"))
                        .map_or(0, |v| v.trim().parse::<usize>().unwrap());
                    break (at + 4, length);
                }
            };
            while buf.len() < head_end + length {
                let n = sock.read(&mut chunk).await.unwrap();
                buf.extend_from_slice(&chunk[..n]);
            }
            let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
            let path = head.split_whitespace().nth(1).unwrap().to_string();
            let sent: Value = serde_json::from_slice(&buf[head_end..head_end + length]).unwrap();
            log.lock().unwrap().push((path, sent));
            let text = body.to_string();
            let reply = format!(
                "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{text}",
                text.len()
            );
            sock.write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (url, seen)
}

fn config(kind: &str, base_url: &str) -> Config {
    Config::from_toml(
        &format!(
            "[providers.emb]\nkind = \"{kind}\"\nbase_url = \"{base_url}\"\napi_key_env = \"\"\nmax_retries = 1\n"
        ),
        None,
    )
    .unwrap()
}

fn texts(n: usize) -> Vec<String> {
    (0..n).map(|i| format!("text {i}")).collect()
}

#[tokio::test]
async fn openai_kind_posts_to_embeddings_and_orders_by_index() {
    // The server answers out of order; `index` puts each vector back in place.
    let (url, seen) = server(vec![(
        200,
        json!({"data": [
            {"index": 1, "embedding": [0.0, 1.0]},
            {"index": 0, "embedding": [1.0, 0.0]}
        ], "usage": {"prompt_tokens": 4}}),
    )])
    .await;
    let p = embedding_provider(&config("openai", &format!("{url}/v1")), "emb").unwrap();
    let v = p.embed("bge-small", &texts(2)).await.unwrap();
    assert_eq!(v, [vec![1.0, 0.0], vec![0.0, 1.0]]);
    let seen = seen.lock().unwrap();
    assert_eq!(seen[0].0, "/v1/embeddings");
    assert_eq!(seen[0].1["model"], "bge-small");
    assert_eq!(seen[0].1["input"], json!(["text 0", "text 1"]));
}

#[tokio::test]
async fn ollama_kind_posts_to_api_embed() {
    let (url, seen) = server(vec![(200, json!({"embeddings": [[0.5, 0.5, 0.0]]}))]).await;
    let p = embedding_provider(&config("ollama", &url), "emb").unwrap();
    let v = p.embed("nomic-embed-text", &texts(1)).await.unwrap();
    assert_eq!(v, [vec![0.5, 0.5, 0.0]]);
    assert_eq!(seen.lock().unwrap()[0].0, "/api/embed");
}

#[tokio::test]
async fn a_503_is_retried_and_bad_answers_are_errors_naming_the_problem() {
    let (url, seen) = server(vec![
        (503, json!({"error": {"message": "busy"}})),
        (200, json!({"data": [{"index": 0, "embedding": [1.0]}]})),
    ])
    .await;
    let p = embedding_provider(&config("openai", &format!("{url}/v1")), "emb").unwrap();
    assert_eq!(p.embed("m", &texts(1)).await.unwrap(), [vec![1.0]]);
    assert_eq!(seen.lock().unwrap().len(), 2);

    for (answer, says) in [
        (
            json!({"data": [{"index": 0, "embedding": [1.0]}]}),
            "no vector for input 1",
        ),
        (json!({"nothing": true}), "no `data` list"),
        (
            json!({"data": [{"index": 0, "embedding": ["x"]}, {"index": 1, "embedding": [1.0]}]}),
            "other than numbers",
        ),
        (
            json!({"data": [{"index": 0, "embedding": [1.0]}, {"index": 1, "embedding": [1.0, 2.0]}]}),
            "vectors of",
        ),
    ] {
        let (url, _) = server(vec![(200, answer)]).await;
        let p = embedding_provider(&config("openai", &format!("{url}/v1")), "emb").unwrap();
        let e = p.embed("m", &texts(2)).await.unwrap_err().to_string();
        assert!(e.contains(says), "{says}: {e}");
    }
    // A model the server does not know: its 404 is an error, not retried.
    let (url, seen) = server(vec![(
        404,
        json!({"error": {"message": "model not found"}}),
    )])
    .await;
    let p = embedding_provider(&config("openai", &format!("{url}/v1")), "emb").unwrap();
    assert!(p.embed("m", &texts(1)).await.is_err());
    assert_eq!(seen.lock().unwrap().len(), 1);
}
