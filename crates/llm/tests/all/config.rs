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

#[tokio::test]
async fn configured_anthropic_and_ollama_providers() {
    let server = crate::cassette_server::CassetteServer::start(vec![
        cassette("anthropic/stream_text.json"),
        cassette("ollama/stream_text.json"),
    ])
    .await
    .unwrap();
    let toml = format!(
        r#"
        [providers.claude]
        kind = "anthropic"
        base_url = "{url}"
        api_key_env = "CLAUDE_TEST_KEY"
        beta = ["prompt-caching-2024-07-31"]
        cache_system_prompt = true
        [providers.claude.prices.claude-sonnet-4-5]
        input = 3.0
        output = 15.0
        cache_write = 3.75

        [providers.ollama]
        base_url = "{url}"
        keep_alive = "10m"
        options = {{ num_ctx = 8192 }}
        "#,
        url = server.url()
    );
    let cfg = Config::from_toml(&toml, None).unwrap();
    let env = |k: &str| (k == "CLAUDE_TEST_KEY").then(|| "test-key".to_string());
    let mut providers = Providers::default();
    register_providers_with(&cfg, &mut providers, &env).unwrap();

    let req = baton_llm::ChatRequest {
        model: "claude-sonnet-4-5".into(),
        messages: vec![
            baton_llm::Message::system("You are terse."),
            baton_llm::Message::system("Answer in English."),
            baton_llm::Message::user("Say hello to Baton."),
        ],
        temperature: Some(0.2),
        max_tokens: Some(1024),
        ..Default::default()
    };
    let m = providers
        .resolve("claude/claude-sonnet-4-5", Path::new("."))
        .unwrap();
    let resp = m.complete(req).await.unwrap();
    assert_eq!(resp.content, "Hello, Baton!");
    assert_close(
        resp.usage.cost_usd,
        (12.0 * 3.0 + 1800.0 * 3.75 + 6.0 * 15.0) / 1e6,
    );

    let req = baton_llm::ChatRequest {
        model: "llama3".into(),
        messages: vec![
            baton_llm::Message::system("You are terse."),
            baton_llm::Message::user("Say hello to Baton."),
        ],
        temperature: Some(0.2),
        max_tokens: Some(64),
        ..Default::default()
    };
    let m = providers.resolve("ollama/llama3", Path::new(".")).unwrap();
    assert_eq!(m.complete(req).await.unwrap().content, "Hello, Baton!");
    server.verify().unwrap();
}
