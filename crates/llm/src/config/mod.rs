//! Provider configuration: the `[providers.<name>]` tables of `baton.toml`, environment
//! overrides (this file: the format and how it is found and read), registering the configured
//! providers into a [`Providers`] registry (`provider`), and `${VAR}` expansion in model
//! references (`env`).
//!
//! Every field is described for users in `docs/configuration.md`.

mod env;
mod provider;

pub use env::expand_env;
pub use provider::{
    HttpProvider, embedding_provider, load_providers, register_providers, register_providers_with,
};

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use baton_types::Dur;
use serde::{Deserialize, Serialize};

use crate::pricing::PriceTable;
use crate::{Error, StructuredOutput};

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

pub(super) fn process_env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// `BATON_<NAME>_...`: the name upper-cased, anything not a letter or digit as `_`.
pub(super) fn env_prefix(name: &str) -> String {
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

pub(super) fn default_key_env(name: &str) -> String {
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

#[cfg(test)]
mod tests;
