//! Fault injection: retries over real HTTP, cancellation, timeouts, refused connections.

use std::time::{Duration, Instant};

use baton_llm::http::Timeouts;
use baton_llm::openai::{OpenAi, Options};
use baton_llm::{ChatModel, Chunk, Error, RetryPolicy, Retrying};
use futures::StreamExt;

use crate::cassette_server::{CassetteServer, Faults};
use crate::common::*;
use crate::openai::{org_options, simple_request, text_request};

fn model(server: &CassetteServer, timeouts: Option<Timeouts>) -> OpenAi {
    let mut ep = endpoint(server, "/v1", "openai");
    if let Some(t) = timeouts {
        ep.timeouts = t;
    }
    OpenAi::new(ep, org_options())
        .unwrap()
        .for_model("gpt-4o-mini")
}

fn fast_retries(n: u32) -> RetryPolicy {
    RetryPolicy {
        max_retries: n,
        initial_backoff: Duration::from_millis(10),
        ..Default::default()
    }
}

#[tokio::test]
async fn retries_rate_limits_and_5xx_honouring_retry_after() {
    // The same request three times: 429 with Retry-After: 1, then 503, then the answer.
    let mut ok = cassette("openai/stream_text.json");
    let mut limited = cassette("openai/error_429_retry_after.json");
    let mut unavailable = cassette("openai/error_503.json");
    limited.request = ok.request.clone();
    unavailable.request = ok.request.clone();
    ok.description = "the answer after two failures".into();
    let server = CassetteServer::start(vec![limited, unavailable, ok])
        .await
        .unwrap();
    let m = Retrying::new(model(&server, None), fast_retries(2), "openai/gpt-4o-mini");
    let start = Instant::now();
    let resp = m.complete(text_request()).await.unwrap();
    assert_eq!(resp.content, "Hello, Baton!");
    assert!(
        start.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured: {:?}",
        start.elapsed()
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn does_not_retry_what_cannot_succeed() {
    for name in [
        "openai/error_401.json",
        "openai/error_400_context_length.json",
        "openai/error_429_quota.json",
    ] {
        let server = serve(&[name]).await;
        let m = Retrying::new(model(&server, None), fast_retries(3), "t");
        let e = m.complete(simple_request()).await.unwrap_err();
        assert!(!e.is_retryable(), "{name}: {e:?}");
        assert_eq!(server.requests().len(), 1, "{name} was retried");
    }
    // Gives up after max_retries.
    let server = serve(&[
        "openai/error_503.json",
        "openai/error_503.json",
        "openai/error_503.json",
    ])
    .await;
    let m = Retrying::new(model(&server, None), fast_retries(2), "t");
    assert_eq!(
        m.complete(simple_request()).await.unwrap_err().kind(),
        "transient"
    );
    server.verify().unwrap();
}

#[tokio::test]
async fn a_drop_before_the_first_piece_is_retried_a_drop_after_it_is_not() {
    let mut dropped = cassette("openai/stream_text.json");
    dropped.faults = Faults {
        drop_after_chunks: Some(0),
        ..Default::default()
    };
    let server = CassetteServer::start(vec![dropped, cassette("openai/stream_text.json")])
        .await
        .unwrap();
    let m = Retrying::new(model(&server, None), fast_retries(2), "t");
    assert_eq!(
        m.complete(text_request()).await.unwrap().content,
        "Hello, Baton!"
    );
    server.verify().unwrap();

    let mut late = cassette("openai/stream_text.json");
    late.faults = Faults {
        drop_after_chunks: Some(3),
        ..Default::default()
    };
    let server = CassetteServer::start(vec![late]).await.unwrap();
    let m = Retrying::new(model(&server, None), fast_retries(2), "t");
    let (chunks, err) = run(&m, text_request()).await;
    assert_eq!(text(&chunks), "Hello, Baton");
    assert_eq!(err.map(|e| e.kind()), Some("transient"));
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn dropping_the_stream_closes_the_connection() {
    let server = serve(&["openai/slow_stream.json"]).await;
    let m = model(&server, None);
    let mut s = m.stream(text_request()).await.unwrap();
    for _ in 0..3 {
        assert!(matches!(s.next().await, Some(Ok(Chunk::Text(_)))));
    }
    drop(s);
    // 197 chunks were left at 20 ms each: the server must notice the hang-up long before.
    assert!(
        server.wait_aborted(1, Duration::from_secs(2)).await,
        "the server kept streaming to nobody"
    );
    assert_eq!(server.completed(), 0);
}

#[tokio::test]
async fn idle_total_and_header_timeouts() {
    let short = Timeouts {
        connect: Duration::from_secs(1),
        idle: Duration::from_millis(150),
        total: None,
    };

    // Between two pieces.
    let server = serve(&["openai/stream_text.json"]).await;
    server.set_faults(Faults {
        chunk_delay_ms: 400,
        ..Default::default()
    });
    let (_, err) = run(&model(&server, Some(short)), text_request()).await;
    assert!(
        matches!(err, Some(Error::Timeout(d)) if d == Duration::from_millis(150)),
        "{err:?}"
    );

    // Before the response starts.
    let server = serve(&["openai/stream_text.json"]).await;
    server.set_faults(Faults {
        delay_headers_ms: 400,
        ..Default::default()
    });
    let (chunks, err) = run(&model(&server, Some(short)), text_request()).await;
    assert!(chunks.is_empty());
    assert!(matches!(err, Some(Error::Timeout(_))), "{err:?}");

    // The whole call, although pieces keep coming.
    let server = serve(&["openai/slow_stream.json"]).await;
    let total = Timeouts {
        total: Some(Duration::from_millis(600)),
        ..Timeouts::default()
    };
    let start = Instant::now();
    let (chunks, err) = run(&model(&server, Some(total)), text_request()).await;
    assert!(!chunks.is_empty(), "pieces were streamed before the limit");
    assert!(
        matches!(err, Some(Error::Timeout(d)) if d == Duration::from_millis(600)),
        "{err:?}"
    );
    assert!(start.elapsed() < Duration::from_secs(3));
}

#[tokio::test]
async fn a_malformed_chunk_injected_into_a_good_stream() {
    let server = serve(&["openai/stream_text.json"]).await;
    server.set_faults(Faults {
        replace_chunk: Some((2, "data: {\"choices\": [tru\n\n".into())),
        ..Default::default()
    });
    let (chunks, err) = run(&model(&server, None), text_request()).await;
    assert_eq!(text(&chunks), "Hello");
    assert_eq!(err.map(|e| e.kind()), Some("invalid_response"));
}

#[tokio::test]
async fn refused_connection_is_transient() {
    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let ep = baton_llm::http::Endpoint::new("openai", format!("http://127.0.0.1:{port}/v1"));
    let m = OpenAi::new(ep, Options::default())
        .unwrap()
        .for_model("gpt-4o-mini");
    let e = m.complete(simple_request()).await.unwrap_err();
    assert!(
        e.is_retryable() && e.to_string().contains("cannot connect"),
        "{e:?}"
    );
}

#[tokio::test]
async fn connections_are_reused_after_complete_answers() {
    let server = serve(&[
        "openai/stream_text.json",
        "openai/stream_text.json",
        "openai/stream_text.json",
    ])
    .await;
    // The body's end comes late: `complete` has returned at Done long before.
    server.set_faults(Faults {
        delay_end_ms: 50,
        ..Default::default()
    });
    let m = model(&server, None);
    for _ in 0..3 {
        assert_eq!(
            m.complete(text_request()).await.unwrap().content,
            "Hello, Baton!"
        );
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(server.connections(), 1, "each call opened a new connection");
    server.verify().unwrap();
}

#[tokio::test]
async fn a_cancellation_token_stops_the_stream_and_the_request() {
    let server = serve(&["openai/slow_stream.json"]).await;
    let token = tokio_util::sync::CancellationToken::new();
    let s = model(&server, None).stream(text_request()).await.unwrap();
    let mut s = baton_llm::cancellable(s, token.clone());
    assert!(matches!(s.next().await, Some(Ok(Chunk::Text(_)))));
    token.cancel();
    assert!(matches!(s.next().await, Some(Err(Error::Cancelled))));
    assert!(s.next().await.is_none());
    assert!(
        server.wait_aborted(1, Duration::from_secs(2)).await,
        "the server kept streaming after the cancellation"
    );
}

#[tokio::test]
async fn streams_cut_at_any_byte_give_the_same_answer() {
    use baton_llm::anthropic::Anthropic;
    use baton_llm::ollama::Ollama;
    // (cassette, base path, which adapter)
    let cases = [
        ("openai/tool_calls_parallel.json", "/v1", 0),
        ("openai/stream_text.json", "/v1", 0),
        ("anthropic/tool_use.json", "", 1),
        ("ollama/tool_calls.json", "", 2),
    ];
    for (name, suffix, kind) in cases {
        let mut answers = Vec::new();
        for cut in [None, Some(1), Some(7), Some(64)] {
            let server = serve(&[name]).await;
            server.set_faults(Faults {
                rechunk_bytes: cut,
                ..Default::default()
            });
            let ep = endpoint(&server, suffix, ["openai", "anthropic", "ollama"][kind]);
            let m: Box<dyn ChatModel> = match kind {
                0 => Box::new(OpenAi::new(ep, Options::default()).unwrap()),
                1 => Box::new(Anthropic::new(ep, Default::default()).unwrap()),
                _ => Box::new(Ollama::new(ep, Default::default()).unwrap()),
            };
            // Only the response matters here: the request is not checked.
            let body = crate::common::cassette(name).request.body.unwrap();
            let model = body["model"].as_str().unwrap().to_string();
            let req = baton_llm::ChatRequest {
                model,
                messages: vec![baton_llm::Message::user("x")],
                ..Default::default()
            };
            let (chunks, err) = run(m.as_ref(), req).await;
            assert!(err.is_none(), "{name} cut every {cut:?} bytes: {err:?}");
            answers.push(chunks);
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "{name}: {answers:#?}"
        );
        assert!(answers[0].len() >= 3, "{name}: {:?}", answers[0]);
    }
}
