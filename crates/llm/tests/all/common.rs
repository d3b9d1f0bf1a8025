use std::path::PathBuf;
use std::time::Duration;

use baton_llm::http::{Endpoint, Timeouts};
use baton_llm::pricing::{Price, PriceTable};
use baton_llm::{ChatModel, ChatRequest, Chunk, Error, Secret};
use futures::StreamExt;

use crate::cassette_server::{Cassette, CassetteServer, load};

pub fn cassette(name: &str) -> Cassette {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/cassettes")
        .join(name);
    load(&path).unwrap()
}

pub async fn serve(names: &[&str]) -> CassetteServer {
    CassetteServer::start(names.iter().map(|n| cassette(n)).collect())
        .await
        .unwrap()
}

/// An endpoint on the cassette server, with the test key and short timeouts.
pub fn endpoint(server: &CassetteServer, suffix: &str, provider: &str) -> Endpoint {
    Endpoint::new(provider, format!("{}{suffix}", server.url()))
        .with_api_key(Secret::new("test-key"))
        .with_timeouts(Timeouts {
            connect: Duration::from_secs(2),
            idle: Duration::from_secs(5),
            total: None,
        })
}

pub fn prices(model: &str, price: Price) -> PriceTable {
    let mut t = PriceTable::default();
    t.0.insert(model.into(), price);
    t
}

/// Every chunk of the stream, and the error that ended it, if one did.
pub async fn run(model: &dyn ChatModel, req: ChatRequest) -> (Vec<Chunk>, Option<Error>) {
    let mut s = match model.stream(req).await {
        Ok(s) => s,
        Err(e) => return (vec![], Some(e)),
    };
    let mut chunks = vec![];
    while let Some(c) = s.next().await {
        match c {
            Ok(c) => chunks.push(c),
            Err(e) => {
                assert!(
                    s.next().await.is_none(),
                    "the stream must end after an error"
                );
                return (chunks, Some(e));
            }
        }
    }
    (chunks, None)
}

pub fn text(chunks: &[Chunk]) -> String {
    chunks
        .iter()
        .filter_map(|c| match c {
            Chunk::Text(t) => Some(t.as_str()),
            _ => None,
        })
        .collect()
}

pub fn assert_close(a: f64, b: f64) {
    assert!((a - b).abs() < 1e-12, "{a} != {b}");
}
