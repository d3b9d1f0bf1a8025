//! The embedding model: the built-in MiniLM, loaded on first use and then shared by the whole
//! process (a load that fails, because the model is not installed, is not remembered: the next
//! call tries again, so `make model-embed` while the server runs is enough), or a provider's
//! model on its server (`[memory] embeddings = "provider/model"` in `baton.toml`).
//!
//! Each memory records the model that embedded it: vectors of two models cannot be compared.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use baton_embed::Embedder;

use crate::Error;

/// The built-in model, as recorded with the memories it embeds.
pub const LOCAL_MODEL: &str = "local/all-MiniLM-L6-v2";

/// Turns texts into vectors on this machine. [`Embedder`] is the real one; tests may bring
/// their own.
pub trait Embed: Send + Sync {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

impl Embed for Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Embedder::embed(self, texts).map_err(|e| e.to_string())
    }
}

/// Turns texts into vectors somewhere else (a provider's embeddings endpoint).
#[async_trait]
pub trait EmbedRemote: Send + Sync {
    async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, String>;
}

enum Source {
    /// Loaded from a folder on first use (or given).
    Local {
        dir: PathBuf,
        loaded: tokio::sync::OnceCell<Arc<dyn Embed>>,
    },
    Remote(Arc<dyn EmbedRemote>),
}

/// The process's embedding model and its name.
pub struct Embeddings {
    name: String,
    source: Source,
}

impl Embeddings {
    /// The built-in model in `dir`, loaded on first use.
    pub fn from_dir(dir: PathBuf) -> Self {
        Self {
            name: LOCAL_MODEL.into(),
            source: Source::Local {
                dir,
                loaded: tokio::sync::OnceCell::new(),
            },
        }
    }

    /// An embedder that is already there (tests, benchmarks), named as the built-in model.
    pub fn given(model: Arc<dyn Embed>) -> Self {
        Self {
            name: LOCAL_MODEL.into(),
            source: Source::Local {
                dir: PathBuf::new(),
                loaded: tokio::sync::OnceCell::new_with(Some(model)),
            },
        }
    }

    /// A model behind an API, recorded under `name` (`provider/model`).
    pub fn remote(name: impl Into<String>, model: Arc<dyn EmbedRemote>) -> Self {
        Self {
            name: name.into(),
            source: Source::Remote(model),
        }
    }

    /// The same source under another name (tests: two "models" in one process).
    pub fn named(mut self, name: impl Into<String>) -> Self {
        self.name = name.into();
        self
    }

    /// The model's name, as recorded with each memory: `local/all-MiniLM-L6-v2` or
    /// `provider/model`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The built-in model, from [`baton_embed::default_model_dir`]: loaded once per process
    /// however many registries, services and requests use it.
    pub fn shared() -> Arc<Embeddings> {
        static SHARED: OnceLock<Arc<Embeddings>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Embeddings::from_dir(baton_embed::default_model_dir())))
            .clone()
    }

    /// The local model, loading it (on a blocking thread) if this is the first use.
    async fn local(
        dir: &std::path::Path,
        loaded: &tokio::sync::OnceCell<Arc<dyn Embed>>,
    ) -> Result<Arc<dyn Embed>, Error> {
        let dir = dir.to_path_buf();
        loaded
            .get_or_try_init(|| async move {
                let loaded = tokio::task::spawn_blocking(move || Embedder::load(&dir))
                    .await
                    .map_err(|e| Error::Embedding(format!("the model loader stopped: {e}")))?;
                let model = loaded.map_err(|e| Error::Embedding(e.to_string()))?;
                Ok::<Arc<dyn Embed>, Error>(Arc::new(model))
            })
            .await
            .cloned()
    }

    /// Embeds `texts`: the built-in model on a blocking thread, a remote one by its API. A
    /// remote answer of the wrong count is an error, not a silent shift.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Error> {
        let count = texts.len();
        let vectors = match &self.source {
            Source::Local { dir, loaded } => {
                let model = Self::local(dir, loaded).await?;
                tokio::task::spawn_blocking(move || {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    model.embed(&refs)
                })
                .await
                .map_err(|e| Error::Embedding(format!("embedding stopped: {e}")))?
                .map_err(Error::Embedding)?
            }
            Source::Remote(model) => model
                .embed(texts)
                .await
                .map_err(|e| Error::Embedding(format!("embedding with {}: {e}", self.name)))?,
        };
        if vectors.len() != count {
            return Err(Error::Embedding(format!(
                "{} returned {} vectors for {count} texts",
                self.name,
                vectors.len()
            )));
        }
        Ok(vectors)
    }
}
