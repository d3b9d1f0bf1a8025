//! Providers built from `baton.toml` text, resolved by reference, against the cassette server.

use std::path::Path;

use baton_llm::config::{Config, register_providers_with};
use baton_llm::{ChatModel, ModelResolver, Providers};

use crate::common::*;
use crate::openai::text_request;

#[tokio::test]
async fn configured_provider_resolves_retries_and_prices() {
    let mut fail = cassette("openai/error_503.json");
    let ok = cassette("openai/stream_text.json");
    fail.request = ok.request.clone();
    let server = crate::cassette_server::CassetteServer::start(vec![fail, ok])
        .await
        .unwrap();
    let toml = format!(
        r#"
        [providers.gateway]
        kind = "openai"
        base_url = "{}/v1"
        api_key_env = "GATEWAY_TEST_KEY"
        organization = "org-test"
        project = "proj_test"
        max_retries = 1
        timeout = "5s"
        [providers.gateway.prices.gpt-4o-mini]
        input = 0.15
        output = 0.6
        "#,
        server.url()
    );
    let cfg = Config::from_toml(&toml, None).unwrap();
    let env = |k: &str| (k == "GATEWAY_TEST_KEY").then(|| "test-key".to_string());
    let mut providers = Providers::default();
    register_providers_with(&cfg, &mut providers, &env).unwrap();
    let m = providers
        .resolve("gateway/gpt-4o-mini", Path::new("."))
        .unwrap();
    let resp = m.complete(text_request()).await.unwrap();
    assert_eq!(resp.content, "Hello, Baton!");
    assert_close(resp.usage.cost_usd, (21.0 * 0.15 + 4.0 * 0.6) / 1e6);
    server.verify().unwrap();
    assert_eq!(providers.get("gateway").unwrap().list(), ["gpt-4o-mini"]);
}
