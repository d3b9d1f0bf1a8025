//! Provider configuration: the `[providers.<name>]` tables of `baton.toml`, environment
//! overrides, and registering the configured providers into a [`Providers`] registry.
//!
//! Every field is described for users in `docs/configuration.md`.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use baton_types::Dur;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::http::{Endpoint, Timeouts};
use crate::pricing::PriceTable;
use crate::retry::{RetryPolicy, Retrying};
use crate::{
    ChatModel, Error, Provider, Providers, Secret, StructuredOutput, anthropic, ollama, openai,
};

/// The whole `baton.toml` as far as this crate reads it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Config {
    /// Providers by name: the `provider` of `provider/model` references.
    #[serde(default)]
    pub providers: BTreeMap<String, ProviderConfig>,
    /// The file this was read from; `None` when no file was found (defaults only).
    #[serde(skip)]
    pub source: Option<PathBuf>,
    /// The file's other tables, left for the crates that own them.
    #[serde(flatten)]
    pub rest: toml::Table,
}

/// One `[providers.<name>]` table. Fields a kind does not use are rejected for that kind.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ProviderConfig {
    /// `openai` (any OpenAI-compatible server), `anthropic` or `ollama`; may be left out for
    /// the providers named `openai`, `anthropic` and `ollama`. Other kinds (e.g. `local`) belong
    /// to other crates and are skipped here.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub base_url: Option<String>,
    /// The environment variable holding the API key; default `<NAME>_API_KEY`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_env: Option<String>,
    /// Fail before calling when the key is not set. Default: true for `openai` and `anthropic`
    /// at their official base URLs, false elsewhere (local servers take no key).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_required: Option<bool>,
    /// Extra headers sent with every request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub headers: BTreeMap<String, String>,
    /// Wait for the answer to start, and between two streamed pieces. Default 120s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Dur>,
    /// Wait to connect. Default 10s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<Dur>,
    /// Limit on a whole call. Default: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub total_timeout: Option<Dur>,
    /// Retries of a failed call when retrying can help. Default 2.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retries: Option<u32>,
    /// The longest `Retry-After` waited for before giving the error to the engine. Default 60s.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_retry_after: Option<Dur>,
    /// Models to list (`baton models list`, `GET /v1/models`); any model name can be used.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub models: Vec<String>,
    /// USD per million tokens, by model name (or name prefix).
    #[serde(default, skip_serializing_if = "is_empty_prices")]
    pub prices: PriceTable,
    /// Fields merged into every request body.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub extra_body: Option<toml::Table>,

    // kind = "openai"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub organization: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chat_path: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub stream_usage: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_tokens_field: Option<String>,
    /// How a schema is asked for: `auto` (default), `json_schema`, `json_object`, `tools`,
    /// `prompt`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub structured_output: Option<StructuredOutput>,
    /// The older spelling: `json_schema = false` is `structured_output = "json_object"`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub json_schema: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub strict_json_schema: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parallel_tool_calls: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_key_header: Option<String>,

    // kind = "anthropic"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub api_version: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub beta: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_max_tokens: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_system_prompt: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_tools: Option<bool>,

    // kind = "ollama"
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub keep_alive: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub options: Option<toml::Table>,

    /// Keys this crate does not know: an error for its kinds, kept for other kinds.
    #[serde(flatten)]
    pub other: toml::Table,
}

fn is_empty_prices(p: &PriceTable) -> bool {
    p.0.is_empty()
}

/// The kinds of provider this crate builds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    OpenAi,
    Anthropic,
    Ollama,
}

impl Kind {
    fn parse(s: &str) -> Option<Self> {
        match s {
            "openai" => Some(Kind::OpenAi),
            "anthropic" => Some(Kind::Anthropic),
            "ollama" => Some(Kind::Ollama),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::OpenAi => "openai",
            Kind::Anthropic => "anthropic",
            Kind::Ollama => "ollama",
        }
    }
}

/// Reads an environment variable; tests pass their own.
pub type Env<'a> = &'a dyn Fn(&str) -> Option<String>;

fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `BATON_<NAME>_...`: the name upper-cased, anything not a letter or digit as `_`.
fn env_prefix(name: &str) -> String {
    let mut s = String::from("BATON_");
    s.extend(name.chars().map(|c| {
        if c.is_ascii_alphanumeric() {
            c.to_ascii_uppercase()
        } else {
            '_'
        }
    }));
    s
}

fn default_key_env(name: &str) -> String {
    let mut s: String = name
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    s.push_str("_API_KEY");
    s
}

impl ProviderConfig {
    /// The kind, or `None` when the table belongs to another crate.
    pub fn kind(&self, name: &str) -> Result<Option<Kind>, Error> {
        match &self.kind {
            Some(k) => Ok(Kind::parse(k)),
            None => match Kind::parse(name) {
                Some(k) => Ok(Some(k)),
                None if name == "local" || name == "scripted" => Ok(None),
                None => Err(Error::Config(format!(
                    "providers.{name}: `kind` is missing; set kind = \"openai\" (any OpenAI-compatible server), \"anthropic\" or \"ollama\""
                ))),
            },
        }
    }

    /// Checks that only fields of its kind are set.
    fn validate(&self, name: &str, kind: Kind) -> Result<(), Error> {
        if let Some(k) = self.other.keys().next() {
            return Err(Error::Config(format!(
                "providers.{name}: unknown field `{k}`"
            )));
        }
        let set = |present: bool, field: &str, wanted: Kind| -> Result<(), Error> {
            if present && kind != wanted {
                return Err(Error::Config(format!(
                    "providers.{name}: `{field}` only applies to kind = \"{}\", and this provider is kind = \"{}\"",
                    wanted.as_str(),
                    kind.as_str()
                )));
            }
            Ok(())
        };
        set(self.organization.is_some(), "organization", Kind::OpenAi)?;
        set(self.project.is_some(), "project", Kind::OpenAi)?;
        set(self.chat_path.is_some(), "chat_path", Kind::OpenAi)?;
        set(self.stream_usage.is_some(), "stream_usage", Kind::OpenAi)?;
        set(
            self.max_tokens_field.is_some(),
            "max_tokens_field",
            Kind::OpenAi,
        )?;
        set(self.json_schema.is_some(), "json_schema", Kind::OpenAi)?;
        set(
            self.structured_output.is_some(),
            "structured_output",
            Kind::OpenAi,
        )?;
        if self.structured_output.is_some() && self.json_schema.is_some() {
            return Err(Error::Config(format!(
                "providers.{name}: set `structured_output` or the older `json_schema`, not both"
            )));
        }
        set(
            self.strict_json_schema.is_some(),
            "strict_json_schema",
            Kind::OpenAi,
        )?;
        set(
            self.parallel_tool_calls.is_some(),
            "parallel_tool_calls",
            Kind::OpenAi,
        )?;
        set(
            self.api_key_header.is_some(),
            "api_key_header",
            Kind::OpenAi,
        )?;
        set(self.api_version.is_some(), "api_version", Kind::Anthropic)?;
        set(!self.beta.is_empty(), "beta", Kind::Anthropic)?;
        set(
            self.default_max_tokens.is_some(),
            "default_max_tokens",
            Kind::Anthropic,
        )?;
        set(
            self.cache_system_prompt.is_some(),
            "cache_system_prompt",
            Kind::Anthropic,
        )?;
        set(self.cache_tools.is_some(), "cache_tools", Kind::Anthropic)?;
        set(self.keep_alive.is_some(), "keep_alive", Kind::Ollama)?;
        set(self.options.is_some(), "options", Kind::Ollama)?;
        Ok(())
    }
}

impl Config {
    /// The built-in providers (`openai`, `anthropic`, `ollama`) with nothing set, so they work
    /// from the usual environment variables alone.
    pub fn defaults() -> Self {
        let mut providers = BTreeMap::new();
        for name in ["openai", "anthropic", "ollama"] {
            providers.insert(name.to_string(), ProviderConfig::default());
        }
        Self {
            providers,
            source: None,
            rest: toml::Table::new(),
        }
    }

    /// Parses a `baton.toml` text over the defaults (a table replaces the default of its name).
    pub fn from_toml(text: &str, source: Option<&Path>) -> Result<Self, Error> {
        let place = source
            .map(|p| format!("{}: ", p.display()))
            .unwrap_or_default();
        let file: Config =
            toml::from_str(text).map_err(|e| Error::Config(format!("{place}{e}")))?;
        let mut cfg = Self::defaults();
        cfg.providers.extend(file.providers);
        cfg.rest = file.rest;
        cfg.source = source.map(Path::to_path_buf);
        for (name, p) in &cfg.providers {
            if let Some(kind) = p
                .kind(name)
                .map_err(|e| Error::Config(format!("{place}{e}")))?
            {
                p.validate(name, kind)
                    .map_err(|e| Error::Config(format!("{place}{e}")))?;
            }
        }
        Ok(cfg)
    }

    /// Applies `BATON_<NAME>_BASE_URL`, `_API_KEY_ENV`, `_TIMEOUT` and `_MAX_RETRIES`.
    pub fn apply_env(&mut self, env: Env<'_>) -> Result<(), Error> {
        for (name, p) in self.providers.iter_mut() {
            let prefix = env_prefix(name);
            if let Some(v) = env(&format!("{prefix}_BASE_URL")) {
                p.base_url = Some(v);
            }
            if let Some(v) = env(&format!("{prefix}_API_KEY_ENV")) {
                p.api_key_env = Some(v);
            }
            if let Some(v) = env(&format!("{prefix}_TIMEOUT")) {
                p.timeout = Some(
                    v.parse()
                        .map_err(|e| Error::Config(format!("{prefix}_TIMEOUT: {e}")))?,
                );
            }
            if let Some(v) = env(&format!("{prefix}_MAX_RETRIES")) {
                p.max_retries = Some(v.trim().parse().map_err(|_| {
                    Error::Config(format!("{prefix}_MAX_RETRIES: '{v}' is not a whole number"))
                })?);
            }
        }
        Ok(())
    }
}

/// Finds and reads `baton.toml`: `path` (from `--config`), else `$BATON_CONFIG`, else
/// `./baton.toml`, else `$XDG_CONFIG_HOME/baton/baton.toml` (`~/.config/baton/baton.toml`).
/// A path named by `--config` or `BATON_CONFIG` must exist; when no file is found the defaults
/// are used. Environment overrides are applied.
pub fn load_config(path: Option<&Path>) -> Result<Config, Error> {
    let cwd = std::env::current_dir().ok();
    load_config_with(path, &process_env, cwd.as_deref())
}

/// [`load_config`] with the environment and working directory given.
pub fn load_config_with(
    path: Option<&Path>,
    env: Env<'_>,
    cwd: Option<&Path>,
) -> Result<Config, Error> {
    let mut cfg = match find_config(path, env, cwd)? {
        Some(p) => {
            let text = std::fs::read_to_string(&p).map_err(|e| {
                Error::Config(format!(
                    "cannot read the configuration {}: {e}",
                    p.display()
                ))
            })?;
            Config::from_toml(&text, Some(&p))?
        }
        None => Config::defaults(),
    };
    cfg.apply_env(env)?;
    Ok(cfg)
}

/// The configuration file that [`load_config`] reads, if any.
pub fn find_config(
    path: Option<&Path>,
    env: Env<'_>,
    cwd: Option<&Path>,
) -> Result<Option<PathBuf>, Error> {
    if let Some(p) = path {
        if !p.is_file() {
            return Err(Error::Config(format!(
                "the configuration file {} (--config) does not exist",
                p.display()
            )));
        }
        return Ok(Some(p.to_path_buf()));
    }
    if let Some(p) = env("BATON_CONFIG") {
        let p = PathBuf::from(p);
        if !p.is_file() {
            return Err(Error::Config(format!(
                "the configuration file {} (BATON_CONFIG) does not exist",
                p.display()
            )));
        }
        return Ok(Some(p));
    }
    if let Some(p) = cwd.map(|d| d.join("baton.toml")).filter(|p| p.is_file()) {
        return Ok(Some(p));
    }
    let config_home = env("XDG_CONFIG_HOME")
        .map(PathBuf::from)
        .or_else(|| env("HOME").map(|h| Path::new(&h).join(".config")));
    Ok(config_home
        .map(|d| d.join("baton").join("baton.toml"))
        .filter(|p| p.is_file()))
}

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
enum Adapter {
    OpenAi(openai::OpenAi),
    Anthropic(anthropic::Anthropic),
    Ollama(ollama::Ollama),
}

/// A configured remote provider: hands out models of its adapter, wrapped in its retry policy.
pub struct HttpProvider {
    name: String,
    kind: Kind,
    adapter: Adapter,
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
}

impl Provider for HttpProvider {
    fn model(&self, model: &str, _base_dir: &Path) -> Result<Arc<dyn ChatModel>, Error> {
        if let Some(var) = &self.missing_key {
            return Err(Error::Auth {
                provider: self.name.clone(),
                message: format!(
                    "no API key: set the environment variable {var} (or api_key_env in [providers.{}])",
                    self.name
                ),
            });
        }
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

/// Expands `${NAME}` and `${NAME:-default}` in a model reference, as workflows write agents'
/// models (an empty variable counts as unset). Validation checks a workflow's references with
/// it and the engine resolves the same expansion.
pub fn expand_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("`{s}` has a `${{` without its closing `}}`"));
        };
        let inner = &after[..end];
        let (name, default) = match inner.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (inner, None),
        };
        match (process_env(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(format!(
                    "the model reference `{s}` uses the environment variable `{name}`, which is not set; set it or give a default: `${{{name}:-provider/model}}`"
                ));
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::ModelResolver;

    fn env_of(pairs: &'static [(&'static str, &'static str)]) -> impl Fn(&str) -> Option<String> {
        move |k| {
            pairs
                .iter()
                .find(|(n, _)| *n == k)
                .map(|(_, v)| v.to_string())
        }
    }

    #[test]
    fn env_expansion() {
        assert_eq!(expand_env("local/smollm2").unwrap(), "local/smollm2");
        assert_eq!(
            expand_env("${BATON_TEST_SURELY_UNSET_VAR:-local/smollm2}").unwrap(),
            "local/smollm2"
        );
        assert!(
            expand_env("${BATON_TEST_SURELY_UNSET_VAR}")
                .unwrap_err()
                .contains("not set")
        );
        assert!(expand_env("${oops").is_err());
    }

    #[test]
    fn defaults_work_from_the_usual_variables() {
        let mut cfg = Config::defaults();
        let env = env_of(&[("OPENAI_API_KEY", "sk-1"), ("ANTHROPIC_API_KEY", "ak-1")]);
        cfg.apply_env(&env).unwrap();
        let mut p = Providers::default();
        let names = register_providers_with(&cfg, &mut p, &env).unwrap();
        assert_eq!(names, ["anthropic", "ollama", "openai"]);
        let dir = Path::new(".");
        assert!(p.resolve("openai/gpt-4o-mini", dir).is_ok());
        assert!(p.resolve("anthropic/claude-sonnet-4-5", dir).is_ok());
        assert!(p.resolve("ollama/llama3", dir).is_ok());
    }

    #[test]
    fn missing_key_is_an_auth_error_naming_the_variable() {
        let cfg = Config::defaults();
        let mut p = Providers::default();
        register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
        let Err(e) = p.resolve("openai/gpt-4o-mini", Path::new(".")) else {
            panic!("expected an error")
        };
        assert_eq!(e.kind(), "auth");
        assert!(e.to_string().contains("OPENAI_API_KEY"), "{e}");
        // Ollama needs none.
        assert!(p.resolve("ollama/llama3", Path::new(".")).is_ok());
    }

    #[test]
    fn structured_output_setting() {
        let cfg = Config::from_toml(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\nstructured_output = \"tools\"\n[providers.b]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\njson_schema = false\n",
            None,
        )
        .unwrap();
        assert_eq!(
            cfg.providers["a"].structured_output,
            Some(StructuredOutput::Tools)
        );
        let e = Config::from_toml(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nstructured_output = \"xml\"\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("structured_output"), "{e}");
        let e = Config::from_toml(
            "[providers.a]\nkind = \"openai\"\nbase_url = \"http://x/v1\"\nstructured_output = \"auto\"\njson_schema = true\n",
            None,
        )
        .unwrap_err();
        assert!(e.to_string().contains("not both"), "{e}");
        let e = Config::from_toml(
            "[providers.anthropic]\nstructured_output = \"tools\"\n",
            None,
        )
        .unwrap_err();
        assert!(
            e.to_string().contains("only applies to kind = \"openai\""),
            "{e}"
        );
        let mut p = Providers::default();
        register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
        assert!(p.resolve("b/m", Path::new(".")).is_ok());
    }

    #[test]
    fn file_tables_env_overrides_and_validation() {
        let text = r#"
            [server]
            port = 8080

            [providers.openai]
            timeout = "30s"
            organization = "org-1"
            max_retries = 5
            [providers.openai.prices.gpt-4o-mini]
            input = 0.15
            output = 0.6

            [providers.groq]
            kind = "openai"
            base_url = "https://groq.example/openai/v1"
            headers = { "X-Trace" = "1" }

            [providers.local]
            model_dir = "/models"
        "#;
        let mut cfg = Config::from_toml(text, None).unwrap();
        cfg.apply_env(&env_of(&[
            ("BATON_GROQ_BASE_URL", "http://127.0.0.1:9/v1"),
            ("BATON_OPENAI_TIMEOUT", "5s"),
        ]))
        .unwrap();
        assert_eq!(
            cfg.providers["openai"].timeout,
            Some(Dur(std::time::Duration::from_secs(5)))
        );
        assert_eq!(cfg.providers["openai"].max_retries, Some(5));
        assert_eq!(
            cfg.providers["groq"].base_url.as_deref(),
            Some("http://127.0.0.1:9/v1")
        );
        assert!(cfg.providers["local"].other.contains_key("model_dir"));
        assert!(cfg.rest.contains_key("server"));
        let mut p = Providers::default();
        let names =
            register_providers_with(&cfg, &mut p, &env_of(&[("OPENAI_API_KEY", "k")])).unwrap();
        assert!(names.contains(&"groq".to_string()) && !names.contains(&"local".to_string()));
        assert_eq!(p.get("openai").unwrap().list(), ["gpt-4o-mini"]);

        let e = Config::from_toml("[providers.openai]\ntimeot = \"1s\"\n", None).unwrap_err();
        assert!(e.to_string().contains("unknown field `timeot`"), "{e}");
        let e =
            Config::from_toml("[providers.anthropic]\norganization = \"x\"\n", None).unwrap_err();
        assert!(
            e.to_string().contains("only applies to kind = \"openai\""),
            "{e}"
        );
        let e = Config::from_toml("[providers.vllm]\nbase_url = \"http://h\"\n", None).unwrap_err();
        assert!(e.to_string().contains("`kind` is missing"), "{e}");
        let e = Config::from_toml("[providers.openai]\ntimeout = \"soon\"\n", None).unwrap_err();
        assert!(e.to_string().contains("not a duration"), "{e}");
    }

    #[test]
    fn custom_openai_servers_need_a_base_url_and_no_key() {
        let cfg = Config::from_toml("[providers.vllm]\nkind = \"openai\"\n", None).unwrap();
        let e = register_providers_with(&cfg, &mut Providers::default(), &env_of(&[])).unwrap_err();
        assert!(e.to_string().contains("`base_url` is missing"), "{e}");
        let cfg = Config::from_toml(
            "[providers.vllm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:8000/v1\"\n",
            None,
        )
        .unwrap();
        let mut p = Providers::default();
        register_providers_with(&cfg, &mut p, &env_of(&[])).unwrap();
        assert!(p.resolve("vllm/qwen", Path::new(".")).is_ok());
    }

    #[test]
    fn search_order() {
        let dir = std::env::temp_dir().join(format!("baton-llm-config-{}", std::process::id()));
        let home = dir.join("home");
        std::fs::create_dir_all(home.join(".config/baton")).unwrap();
        std::fs::create_dir_all(dir.join("cwd")).unwrap();
        let user = home.join(".config/baton/baton.toml");
        std::fs::write(&user, "[providers.openai]\nmax_retries = 1\n").unwrap();
        let home_s: &'static str = Box::leak(home.display().to_string().into_boxed_str());
        let pairs: &'static [(&'static str, &'static str)] =
            Box::leak(vec![("HOME", home_s)].into_boxed_slice());
        let env = env_of(pairs);
        let cwd = dir.join("cwd");
        assert_eq!(
            find_config(None, &env, Some(&cwd)).unwrap(),
            Some(user.clone())
        );
        std::fs::write(cwd.join("baton.toml"), "").unwrap();
        assert_eq!(
            find_config(None, &env, Some(&cwd)).unwrap(),
            Some(cwd.join("baton.toml"))
        );
        assert_eq!(
            find_config(Some(&user), &env, Some(&cwd)).unwrap(),
            Some(user.clone())
        );
        assert!(find_config(Some(&dir.join("nope.toml")), &env, Some(&cwd)).is_err());
        let cfg = load_config_with(Some(&user), &env, Some(&cwd)).unwrap();
        assert_eq!(cfg.providers["openai"].max_retries, Some(1));
        assert_eq!(cfg.source.as_deref(), Some(user.as_path()));
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn official_openai_uses_max_completion_tokens_and_ollama_host_gets_a_scheme() {
        let env = env_of(&[("OPENAI_API_KEY", "k"), ("OLLAMA_HOST", "127.0.0.1:11435")]);
        let cfg = Config::defaults();
        let req = crate::ChatRequest {
            max_tokens: Some(5),
            ..Default::default()
        };
        let p = HttpProvider::from_config("openai", &cfg.providers["openai"], &env)
            .unwrap()
            .unwrap();
        let Adapter::OpenAi(a) = &p.adapter else {
            panic!("openai adapter expected")
        };
        let body = a.for_model("o3-mini").body(&req).unwrap();
        assert_eq!(body["max_completion_tokens"], 5);
        let p = HttpProvider::from_config("ollama", &cfg.providers["ollama"], &env)
            .unwrap()
            .unwrap();
        let Adapter::Ollama(a) = &p.adapter else {
            panic!("ollama adapter expected")
        };
        assert!(format!("{a:?}").contains("http://127.0.0.1:11435"), "{a:?}");
        // A compatible server elsewhere keeps the field every server knows.
        let cfg = Config::from_toml(
            "[providers.vllm]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
            None,
        )
        .unwrap();
        let p = HttpProvider::from_config("vllm", &cfg.providers["vllm"], &env)
            .unwrap()
            .unwrap();
        let Adapter::OpenAi(a) = &p.adapter else {
            panic!("openai adapter expected")
        };
        assert_eq!(a.for_model("m").body(&req).unwrap()["max_tokens"], 5);
    }

    #[test]
    fn load_providers_from_a_file() {
        let path = std::env::temp_dir().join(format!("baton-llm-load-{}.toml", std::process::id()));
        std::fs::write(
            &path,
            "[providers.lab]\nkind = \"openai\"\nbase_url = \"http://127.0.0.1:1/v1\"\n",
        )
        .unwrap();
        let (cfg, providers) = load_providers(Some(&path)).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(cfg.source.as_deref(), Some(path.as_path()));
        let names: Vec<&str> = providers.names().collect();
        assert_eq!(names, ["anthropic", "lab", "ollama", "openai", "scripted"]);
        let Err(e) = load_providers(Some(Path::new("/nonexistent/baton.toml"))) else {
            panic!("a missing --config file must be an error")
        };
        assert!(e.to_string().contains("does not exist"), "{e}");
    }

    #[test]
    fn debug_output_has_no_secrets() {
        let cfg = Config::from_toml(
            "[providers.openai]\nheaders = { \"X-Key\" = \"hdr-secret\" }\n",
            None,
        )
        .unwrap();
        let p = HttpProvider::from_config(
            "openai",
            &cfg.providers["openai"],
            &env_of(&[("OPENAI_API_KEY", "sk-secret")]),
        )
        .unwrap()
        .unwrap();
        let Adapter::OpenAi(a) = &p.adapter else {
            panic!("openai adapter expected")
        };
        let dbg = format!("{p:?} {a:?}");
        assert!(
            !dbg.contains("sk-secret") && !dbg.contains("hdr-secret"),
            "{dbg}"
        );
    }
}
