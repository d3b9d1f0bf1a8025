//! `[memory]` in `baton.toml`: which model embeds team memory.
//!
//! ```toml
//! [memory]
//! embeddings = "local"                          # the built-in MiniLM (the default)
//! embeddings = "openai/text-embedding-3-small"  # a provider's embeddings endpoint
//! ```

use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, bail};
use async_trait::async_trait;
use baton_llm::config::{Config, HttpProvider};
use baton_memory::{EmbedRemote, Embeddings};

/// The process's embedding model, as `[memory] embeddings` of the configuration says.
pub fn embeddings(config_path: Option<&Path>) -> anyhow::Result<Arc<Embeddings>> {
    let config =
        baton_llm::config::load_config(config_path).context("loading the configuration")?;
    let place = config
        .source
        .as_ref()
        .map_or_else(|| "baton.toml".to_string(), |p| p.display().to_string());
    match setting(&config).with_context(|| format!("{place}: [memory]"))? {
        None => Ok(Embeddings::shared()),
        Some((provider, model)) => {
            let built =
                baton_llm::config::embedding_provider(&config, &provider).with_context(|| {
                    format!("{place}: [memory] embeddings = \"{provider}/{model}\"")
                })?;
            Ok(Arc::new(Embeddings::remote(
                format!("{provider}/{model}"),
                Arc::new(Remote {
                    provider: built,
                    model,
                }),
            )))
        }
    }
}

/// `None` for the built-in model, else the provider and model named.
fn setting(config: &Config) -> anyhow::Result<Option<(String, String)>> {
    let Some(table) = config.rest.get("memory") else {
        return Ok(None);
    };
    let Some(table) = table.as_table() else {
        bail!("`memory` must be a table");
    };
    if let Some(unknown) = table.keys().find(|k| k.as_str() != "embeddings") {
        bail!("unknown key `{unknown}` (the table has `embeddings`)");
    }
    let Some(value) = table.get("embeddings") else {
        return Ok(None);
    };
    let Some(value) = value.as_str() else {
        bail!("`embeddings` must be a string: \"local\" or \"provider/model\"");
    };
    if value == "local" {
        return Ok(None);
    }
    match value.split_once('/') {
        Some((p, m)) if !p.is_empty() && !m.is_empty() && p != "local" => {
            Ok(Some((p.to_string(), m.to_string())))
        }
        Some(("local", _)) => bail!(
            "`embeddings = \"{value}\"`: the built-in model is written \"local\" (only all-MiniLM-L6-v2 is built in)"
        ),
        _ => bail!("`embeddings = \"{value}\"` is neither \"local\" nor \"provider/model\""),
    }
}

/// A provider's embeddings endpoint.
struct Remote {
    provider: HttpProvider,
    model: String,
}

#[async_trait]
impl EmbedRemote for Remote {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String> {
        self.provider
            .embed(&self.model, &texts)
            .await
            .map_err(|e| e.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> anyhow::Result<Option<(String, String)>> {
        setting(&Config::from_toml(text, None).unwrap())
    }

    #[test]
    fn the_setting_names_the_built_in_model_or_a_provider_model() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(parse("[memory]\nembeddings = \"local\"").unwrap(), None);
        assert_eq!(
            parse("[memory]\nembeddings = \"openai/text-embedding-3-small\"").unwrap(),
            Some(("openai".into(), "text-embedding-3-small".into()))
        );
        // Model names may hold slashes of their own.
        assert_eq!(
            parse("[memory]\nembeddings = \"vllm/BAAI/bge-small-en\"").unwrap(),
            Some(("vllm".into(), "BAAI/bge-small-en".into()))
        );
    }

    #[test]
    fn a_bad_setting_is_an_error_naming_it() {
        for (text, says) in [
            ("[memory]\nembeddings = \"minilm\"", "neither \"local\" nor"),
            ("[memory]\nembeddings = \"openai/\"", "neither"),
            ("[memory]\nembeddings = 3", "must be a string"),
            ("[memory]\nembedings = \"local\"", "unknown key `embedings`"),
            ("[memory]\nembeddings = \"local/bge\"", "written \"local\""),
            ("memory = 1", "must be a table"),
        ] {
            let e = parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn a_provider_without_embeddings_is_refused_when_building() {
        let config = Config::from_toml("", None).unwrap();
        let e = baton_llm::config::embedding_provider(&config, "anthropic").unwrap_err();
        assert!(e.to_string().contains("offers no embeddings"), "{e}");
        let e = baton_llm::config::embedding_provider(&config, "nope").unwrap_err();
        assert!(e.to_string().contains("no provider `nope`"), "{e}");
    }
}
