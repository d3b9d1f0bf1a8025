//! Building the configured remote providers: each `[providers.<name>]` table of a kind this
//! crate knows becomes an [`HttpProvider`] (its adapter behind its retry policy) in the registry.

use std::path::Path;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Config, Env, Kind, ProviderConfig, default_key_env, load_config, process_env};
use crate::http::{Endpoint, Timeouts};
use crate::retry::{RetryPolicy, Retrying};
use crate::{
    ChatModel, Error, Provider, Providers, Secret, StructuredOutput, anthropic, ollama, openai,
};

/// Registers every configured provider of a kind this crate builds into `providers`, reading
/// API keys from the process environment. Returns the names registered.
pub fn register_providers(
    config: &Config,
    providers: &mut Providers,
) -> Result<Vec<String>, Error> {
    register_providers_with(config, providers, &process_env)
}

/// Loads the configuration ([`load_config`]) and returns a registry holding `scripted` and
/// every provider it configures (`openai`, `anthropic`, `ollama` by default). Other crates'
/// providers (`local`) are registered on top by the caller.
pub fn load_providers(path: Option<&Path>) -> Result<(Config, Providers), Error> {
    let config = load_config(path)?;
    let mut providers = Providers::default();
    register_providers(&config, &mut providers)?;
    Ok((config, providers))
}

/// The provider `name` of `config`, built to call its embeddings endpoint (API keys from the
/// process environment): an error names a provider the file does not configure, or one whose
/// kind has no embeddings (`anthropic`; `local` belongs to another crate).
pub fn embedding_provider(config: &Config, name: &str) -> Result<HttpProvider, Error> {
    let Some(table) = config.providers.get(name) else {
        return Err(Error::Config(format!(
            "no provider `{name}`: configured are {}",
            config
                .providers
                .keys()
                .cloned()
                .collect::<Vec<_>>()
                .join(", ")
        )));
    };
    match HttpProvider::from_config(name, table, &process_env)? {
        Some(p) if p.kind() == Kind::Anthropic => Err(Error::Config(format!(
            "provider `{name}` is of kind anthropic, which offers no embeddings: use an openai-kind (any OpenAI-compatible server) or ollama provider"
        ))),
        Some(p) => Ok(p),
        None => Err(Error::Config(format!(
            "provider `{name}` is not an HTTP provider (kind {}); embeddings come from openai-kind or ollama providers",
            table.kind.as_deref().unwrap_or("?")
        ))),
    }
}

/// [`register_providers`] with the environment given.
pub fn register_providers_with(
    config: &Config,
    providers: &mut Providers,
    env: Env<'_>,
) -> Result<Vec<String>, Error> {
    let mut names = Vec::new();
    for (name, p) in &config.providers {
        if let Some(built) = HttpProvider::from_config(name, p, env)? {
            providers.register(name, Arc::new(built));
            names.push(name.clone());
        }
    }
    Ok(names)
}

fn to_json_map(
    t: &Option<toml::Table>,
    what: &str,
    name: &str,
) -> Result<Map<String, Value>, Error> {
    match t {
        None => Ok(Map::new()),
        Some(t) => match serde_json::to_value(t) {
            Ok(Value::Object(m)) => Ok(m),
            Ok(_) | Err(_) => Err(Error::Config(format!(
                "providers.{name}.{what}: cannot be turned into JSON"
            ))),
        },
    }
}

/// `OLLAMA_HOST` may be `host:port` without a scheme.
fn ollama_host(v: &str) -> String {
    if v.contains("://") {
        v.to_string()
    } else {
        format!("http://{v}")
    }
}

#[derive(Clone)]
pub(super) enum Adapter {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Ollama(ollama::Ollama),
}

/// A configured remote provider: hands out models of its adapter, wrapped in its retry policy.
pub struct HttpProvider {
    name: String,
    kind: Kind,
    pub(super) adapter: Adapter,
    retry: RetryPolicy,
    models: Vec<String>,
    /// The key's variable, when a required key is not set.
    missing_key: Option<String>,
}

impl std::fmt::Debug for HttpProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HttpProvider")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .field("retry", &self.retry)
            .field("models", &self.models)
            .field("missing_key", &self.missing_key)
            .finish_non_exhaustive()
    }
}

impl HttpProvider {
    /// Builds the provider `name` from its table; `None` when the kind is not one of this crate's.
    pub fn from_config(
        name: &str,
        p: &ProviderConfig,
        env: Env<'_>,
    ) -> Result<Option<Self>, Error> {
        let Some(kind) = p.kind(name)? else {
            return Ok(None);
        };
        p.validate(name, kind)?;
        let official = match kind {
            Kind::OpenAi => openai::DEFAULT_BASE_URL,
            Kind::Anthropic => anthropic::DEFAULT_BASE_URL,
            Kind::Ollama => ollama::DEFAULT_BASE_URL,
        };
        // The vendors' own variables count for the built-in providers only.
        let vendor_env = match (kind, name) {
            (Kind::OpenAi, "openai") => env("OPENAI_BASE_URL"),
            (Kind::Anthropic, "anthropic") => env("ANTHROPIC_BASE_URL"),
            (Kind::Ollama, "ollama") => env("OLLAMA_HOST").map(|h| ollama_host(&h)),
            _ => None,
        };
        let base_url = match (&p.base_url, vendor_env) {
            (Some(b), _) => b.clone(),
            (None, Some(v)) => v,
            (None, None) if kind == Kind::Ollama || name == kind.as_str() => official.to_string(),
            (None, None) => {
                return Err(Error::Config(format!(
                    "providers.{name}: `base_url` is missing (the OpenAI-compatible server's URL, e.g. http://localhost:8000/v1)"
                )));
            }
        };
        reqwest::Url::parse(&base_url).map_err(|e| {
            Error::Config(format!(
                "providers.{name}: base_url '{base_url}' is not a URL: {e}"
            ))
        })?;
        let key_env = p
            .api_key_env
            .clone()
            .unwrap_or_else(|| default_key_env(name));
        let api_key = if key_env.is_empty() {
            None
        } else {
            env(&key_env).map(Secret::new)
        };
        // `api_key_env = ""` means: this provider takes no key.
        let required = !key_env.is_empty()
            && p.api_key_required
                .unwrap_or(kind != Kind::Ollama && base_url.trim_end_matches('/') == official);
        let missing_key = (required && api_key.is_none()).then(|| key_env.clone());

        let defaults = Timeouts::default();
        let timeouts = Timeouts {
            connect: p.connect_timeout.map_or(defaults.connect, |d| d.0),
            idle: p.timeout.map_or(defaults.idle, |d| d.0),
            total: p.total_timeout.map(|d| d.0),
        };
        let mut endpoint = Endpoint::new(name, base_url)
            .with_timeouts(timeouts)
            .with_prices(p.prices.clone())
            .with_headers(crate::http::header_map(name, &p.headers)?);
        endpoint.api_key = api_key;
        let extra_body = to_json_map(&p.extra_body, "extra_body", name)?;
        let adapter = match kind {
            Kind::OpenAi => {
                let d = openai::Options::default();
                let official_openai =
                    name == "openai" && endpoint.base_url.trim_end_matches('/') == official;
                let opts = openai::Options {
                    organization: p.organization.clone(),
                    project: p.project.clone(),
                    chat_path: p.chat_path.clone().unwrap_or(d.chat_path),
                    stream_usage: p.stream_usage.unwrap_or(d.stream_usage),
                    // OpenAI's reasoning models reject `max_tokens`; other servers may not know
                    // the newer field.
                    max_tokens_field: p.max_tokens_field.clone().unwrap_or_else(|| {
                        if official_openai {
                            "max_completion_tokens".into()
                        } else {
                            d.max_tokens_field
                        }
                    }),
                    structured_output: match (p.structured_output, p.json_schema) {
                        (Some(m), _) => m,
                        (None, Some(false)) => StructuredOutput::JsonObject,
                        (None, _) => d.structured_output,
                    },
                    strict_json_schema: p.strict_json_schema.unwrap_or(d.strict_json_schema),
                    parallel_tool_calls: p.parallel_tool_calls,
                    api_key_header: p.api_key_header.clone(),
                    extra_body,
                    request_hook: None,
                };
                Adapter::OpenAi(openai::OpenAi::new(endpoint, opts)?)
            }
            Kind::Anthropic => {
                let d = anthropic::Options::default();
                let opts = anthropic::Options {
                    api_version: p.api_version.clone().unwrap_or(d.api_version),
                    beta: p.beta.clone(),
                    default_max_tokens: p.default_max_tokens.unwrap_or(d.default_max_tokens),
                    cache_system_prompt: p.cache_system_prompt.unwrap_or(false),
                    cache_tools: p.cache_tools.unwrap_or(false),
                    extra_body,
                };
                Adapter::Anthropic(anthropic::Anthropic::new(endpoint, opts)?)
            }
            Kind::Ollama => {
                let opts = ollama::Options {
                    keep_alive: p.keep_alive.clone(),
                    model_options: to_json_map(&p.options, "options", name)?,
                    extra_body,
                };
                Adapter::Ollama(ollama::Ollama::new(endpoint, opts)?)
            }
        };
        let d = RetryPolicy::default();
        let retry = RetryPolicy {
            max_retries: p.max_retries.unwrap_or(d.max_retries),
            max_retry_after: p.max_retry_after.map_or(d.max_retry_after, |x| x.0),
            ..d
        };
        let mut models = p.models.clone();
        for m in p.prices.0.keys() {
            if !models.contains(m) {
                models.push(m.clone());
            }
        }
        Ok(Some(Self {
            name: name.to_string(),
            kind,
            adapter,
            retry,
            models,
            missing_key,
        }))
    }

    pub fn kind(&self) -> Kind {
        self.kind
    }

    pub fn retry_policy(&self) -> RetryPolicy {
        self.retry
    }

    /// An `auth` error naming the variable when a required API key is not set.
    fn check_key(&self) -> Result<(), Error> {
        match &self.missing_key {
            None => Ok(()),
            Some(var) => Err(Error::Auth {
                provider: self.name.clone(),
                message: format!(
                    "no API key: set the environment variable {var} (or api_key_env in [providers.{}])",
                    self.name
                ),
            }),
        }
    }

    /// The provider's name in `baton.toml` (the `provider` of `provider/model`).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Embeds `texts` with `model` on the provider's server (`/embeddings` for `openai` kind,
    /// `/api/embed` for `ollama`), in order, in requests of at most
    /// [`crate::embeddings::BATCH`] texts, each retried as chat calls are. Anthropic has no
    /// embeddings endpoint: a [`Error::Config`] says so.
    pub async fn embed(&self, model: &str, texts: &[String]) -> Result<Vec<Vec<f32>>, Error> {
        self.check_key()?;
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(crate::embeddings::BATCH) {
            let mut attempt = 0;
            let vectors = loop {
                let got = match &self.adapter {
                    Adapter::OpenAi(a) => {
                        crate::embeddings::openai(a.connection(), model, batch).await
                    }
                    Adapter::Ollama(a) => {
                        crate::embeddings::ollama(a.connection(), model, batch).await
                    }
                    Adapter::Anthropic(_) => {
                        return Err(Error::Config(format!(
                            "provider {} is of kind anthropic, which offers no embeddings: use an openai-kind or ollama provider",
                            self.name
                        )));
                    }
                };
                match got {
                    Ok(v) => break v,
                    Err(e) => match self.retry.delay(attempt, &e) {
                        Some(wait) => {
                            tracing::debug!(provider = %self.name, model, attempt, error = %e, "embeddings call failed; retrying");
                            tokio::time::sleep(wait).await;
                            attempt += 1;
                        }
                        None => return Err(e),
                    },
                }
            };
            out.extend(vectors);
        }
        Ok(out)
    }
}

impl Provider for HttpProvider {
    fn model(&self, model: &str, _base_dir: &Path) -> Result<Arc<dyn ChatModel>, Error> {
        self.check_key()?;
        let label = format!("{}/{model}", self.name);
        Ok(match &self.adapter {
            Adapter::OpenAi(a) => Arc::new(Retrying::new(a.for_model(model), self.retry, label)),
            Adapter::Anthropic(a) => Arc::new(Retrying::new(a.for_model(model), self.retry, label)),
            Adapter::Ollama(a) => Arc::new(Retrying::new(a.for_model(model), self.retry, label)),
        })
    }

    fn list(&self) -> Vec<String> {
        self.models.clone()
    }
}
