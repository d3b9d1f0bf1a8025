//! The embedding model, loaded on first use and then shared by the whole process. A load that
//! fails (the model is not installed) is not remembered: the next call tries again, so
//! `make model-embed` while the server runs is enough.

use std::path::PathBuf;
use std::sync::{Arc, OnceLock};

use baton_embed::Embedder;

use crate::Error;

/// Turns texts into unit-length vectors. [`Embedder`] is the real one; tests may bring their
/// own.
pub trait Embed: Send + Sync {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String>;
}

impl Embed for Embedder {
    fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, String> {
        Embedder::embed(self, texts).map_err(|e| e.to_string())
    }
}

/// Where the model comes from: loaded from a folder on first use, or given.
pub struct Embeddings {
    dir: PathBuf,
    loaded: tokio::sync::OnceCell<Arc<dyn Embed>>,
}

impl Embeddings {
    /// The model in `dir`, loaded on first use.
    pub fn from_dir(dir: PathBuf) -> Self {
        Self {
            dir,
            loaded: tokio::sync::OnceCell::new(),
        }
    }

    /// An embedder that is already there (tests, benchmarks).
    pub fn given(model: Arc<dyn Embed>) -> Self {
        Self {
            dir: PathBuf::new(),
            loaded: tokio::sync::OnceCell::new_with(Some(model)),
        }
    }

    /// The process's model, from [`baton_embed::default_model_dir`]: loaded once per process
    /// however many registries, services and requests use it.
    pub fn shared() -> Arc<Embeddings> {
        static SHARED: OnceLock<Arc<Embeddings>> = OnceLock::new();
        SHARED
            .get_or_init(|| Arc::new(Embeddings::from_dir(baton_embed::default_model_dir())))
            .clone()
    }

    /// The model, loading it (on a blocking thread) if this is the first use.
    pub async fn model(&self) -> Result<Arc<dyn Embed>, Error> {
        let dir = self.dir.clone();
        self.loaded
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

    /// Embeds `texts` on a blocking thread.
    pub async fn embed(&self, texts: Vec<String>) -> Result<Vec<Vec<f32>>, Error> {
        let model = self.model().await?;
        tokio::task::spawn_blocking(move || {
            let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
            model.embed(&refs)
        })
        .await
        .map_err(|e| Error::Embedding(format!("embedding stopped: {e}")))?
        .map_err(Error::Embedding)
    }
}
