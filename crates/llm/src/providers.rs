//! The registry of providers: `provider/model` references are resolved here.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use crate::scripted::ScriptedProvider;
use crate::{ChatModel, Error, ModelResolver, split_ref};

/// A source of models: `openai`, `anthropic`, `ollama`, `local`, `scripted`...
pub trait Provider: Send + Sync {
    /// The model named `model` (the part after `provider/`). `base_dir` is the folder of the
    /// workflow file that refers to it.
    fn model(&self, model: &str, base_dir: &Path) -> Result<Arc<dyn ChatModel>, Error>;

    /// Checks `model` without loading it (validation). Default: accept.
    fn check(&self, _model: &str) -> Result<(), Error> {
        Ok(())
    }

    /// Models this provider knows of, for `baton models list` and `GET /v1/models`.
    fn list(&self) -> Vec<String> {
        Vec::new()
    }
}

impl Provider for ScriptedProvider {
    fn model(&self, model: &str, base_dir: &Path) -> Result<Arc<dyn ChatModel>, Error> {
        Ok(self.get(model, base_dir)?)
    }
}

/// Providers by name. Always holds `scripted`.
#[derive(Clone)]
pub struct Providers {
    providers: BTreeMap<String, Arc<dyn Provider>>,
    /// The scripted provider, kept typed so tests can insert models.
    pub scripted: Arc<ScriptedProvider>,
}

impl Default for Providers {
    fn default() -> Self {
        let scripted = Arc::new(ScriptedProvider::default());
        let mut providers: BTreeMap<String, Arc<dyn Provider>> = BTreeMap::new();
        providers.insert("scripted".into(), scripted.clone());
        Self {
            providers,
            scripted,
        }
    }
}

impl Providers {
    pub fn register(&mut self, name: &str, provider: Arc<dyn Provider>) {
        self.providers.insert(name.to_string(), provider);
    }

    pub fn get(&self, name: &str) -> Option<&Arc<dyn Provider>> {
        self.providers.get(name)
    }

    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.providers.keys().map(String::as_str)
    }

    fn provider<'a>(&self, reference: &'a str) -> Result<(&Arc<dyn Provider>, &'a str), Error> {
        let (p, m) = split_ref(reference)?;
        let provider = self.providers.get(p).ok_or_else(|| Error::UnknownModel {
            model: reference.to_string(),
            reason: format!(
                "no provider '{p}' is configured (configured: {})",
                self.providers
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })?;
        Ok((provider, m))
    }
}

impl ModelResolver for Providers {
    fn resolve(&self, reference: &str, base_dir: &Path) -> Result<Arc<dyn ChatModel>, Error> {
        let (p, m) = self.provider(reference)?;
        p.model(m, base_dir)
    }

    fn check(&self, reference: &str) -> Result<(), Error> {
        let (p, m) = self.provider(reference)?;
        p.check(m)
    }
}
