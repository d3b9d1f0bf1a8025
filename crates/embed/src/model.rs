//! Loading and running MiniLM: config and weights into [`crate::bert`]'s encoder, the tokenizer
//! from `tokenizer.json` with the truncation sentence-transformers applies (`max_seq_length` from
//! `sentence_bert_config.json`, 256), then mean pooling over the tokens and L2 normalisation.
//! Sequences are not padded: each runs at its own length.

use std::path::{Path, PathBuf};

use tokenizers::{Tokenizer, TruncationParams};

use crate::Error;
use crate::bert::{Bert, Config};

/// The folder, under the models directory, that `make model-embed` installs.
pub const MODEL_DIR_NAME: &str = "minilm-l6-v2";

/// What to tell someone whose model is missing.
pub const INSTALL_HINT: &str = "install the embedding model with `make model-embed`";

/// Texts run through the model at once; longer inputs are cut into batches of this size.
const BATCH: usize = 32;

/// `<models dir>/minilm-l6-v2`, the models directory found as [`baton_types::paths::models_dir`]
/// says.
pub fn default_model_dir() -> PathBuf {
    baton_types::paths::models_dir(|k| std::env::var_os(k)).join(MODEL_DIR_NAME)
}

/// [`default_model_dir`] when its weights and tokenizer are there, else the [`Error::Missing`]
/// that says how to install them. Cheap: it only looks at the files.
pub fn installed_model_dir() -> Result<PathBuf, Error> {
    let dir = default_model_dir();
    for file in ["model.safetensors", "tokenizer.json", "config.json"] {
        present(&dir.join(file))?;
    }
    Ok(dir)
}

/// A loaded sentence-embedding model. Loading reads 91 MB of weights; keep one per process.
pub struct Embedder {
    model: Bert,
    tokenizer: Tokenizer,
    dim: usize,
    dir: PathBuf,
}

impl std::fmt::Debug for Embedder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Embedder")
            .field("dir", &self.dir)
            .field("dim", &self.dim)
            .finish_non_exhaustive()
    }
}

impl Embedder {
    /// Loads the sentence-transformers folder `dir` (`config.json`, `model.safetensors`,
    /// `tokenizer.json`, `1_Pooling/config.json`, optionally `sentence_bert_config.json`).
    pub fn load(dir: &Path) -> Result<Embedder, Error> {
        let pooling: serde_json::Value = read_json(&dir.join("1_Pooling/config.json"))?;
        if pooling.get("pooling_mode_mean_tokens") != Some(&serde_json::Value::Bool(true)) {
            return Err(Error::Unsupported(format!(
                "{} does not ask for mean pooling, the only pooling implemented",
                dir.join("1_Pooling/config.json").display()
            )));
        }
        let config: Config = read_json(&dir.join("config.json"))?;
        let max_len = max_seq_length(dir)?.min(config.max_position_embeddings);
        let tokenizer = load_tokenizer(&dir.join("tokenizer.json"), max_len)?;
        let weights = dir.join("model.safetensors");
        present(&weights)?;
        let bytes = std::fs::read(&weights).map_err(|e| Error::Broken {
            path: weights.clone(),
            message: e.to_string(),
        })?;
        let model = Bert::load(&config, &bytes, &weights)?;
        Ok(Embedder {
            model,
            tokenizer,
            dim: config.hidden_size,
            dir: dir.to_path_buf(),
        })
    }

    /// Loads the model from [`default_model_dir`].
    pub fn load_default() -> Result<Embedder, Error> {
        Self::load(&default_model_dir())
    }

    /// The length of every vector.
    pub fn dim(&self) -> usize {
        self.dim
    }

    /// The folder the model was loaded from.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// One unit-length vector per text, in order, run in batches of 32 (no padding: every text
    /// is encoded at its own length, so a batch's order does not matter and no time goes to
    /// padding). Blocking and CPU-bound: call it from a blocking thread in async code.
    pub fn embed(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let mut out = Vec::with_capacity(texts.len());
        for batch in texts.chunks(BATCH) {
            out.extend(self.embed_batch(batch)?);
        }
        Ok(out)
    }

    fn embed_batch(&self, texts: &[&str]) -> Result<Vec<Vec<f32>>, Error> {
        let encodings = self
            .tokenizer
            .encode_batch(texts.to_vec(), true)
            .map_err(|e| Error::Tokenize(e.to_string()))?;
        let seqs: Vec<(&[u32], &[u32])> = encodings
            .iter()
            .map(|e| (e.get_ids(), e.get_type_ids()))
            .collect();
        let hidden = self.model.forward(&seqs)?;
        Ok(hidden.iter().map(|h| mean_pool(h, self.dim)).collect())
    }
}

/// The mean of a sequence's token vectors (`len × dim`, row-major), scaled to unit length.
fn mean_pool(hidden: &[f32], dim: usize) -> Vec<f32> {
    let mut sum = vec![0.0f32; dim];
    let rows = hidden.len() / dim.max(1);
    for row in hidden.chunks_exact(dim) {
        sum.iter_mut().zip(row).for_each(|(s, h)| *s += h);
    }
    let count = (rows as f32).max(1e-9);
    sum.iter_mut().for_each(|s| *s /= count);
    let norm = sum.iter().map(|x| x * x).sum::<f32>().sqrt().max(1e-12);
    sum.iter_mut().for_each(|s| *s /= norm);
    sum
}

fn present(path: &Path) -> Result<(), Error> {
    if path.is_file() {
        Ok(())
    } else {
        Err(Error::Missing {
            path: path.to_path_buf(),
        })
    }
}

fn read_json<T: serde::de::DeserializeOwned>(path: &Path) -> Result<T, Error> {
    present(path)?;
    let broken = |message: String| Error::Broken {
        path: path.to_path_buf(),
        message,
    };
    let text = std::fs::read_to_string(path).map_err(|e| broken(e.to_string()))?;
    serde_json::from_str(&text).map_err(|e| broken(e.to_string()))
}

/// `max_seq_length` from `sentence_bert_config.json` (256 for MiniLM), or 512 without it.
fn max_seq_length(dir: &Path) -> Result<usize, Error> {
    let path = dir.join("sentence_bert_config.json");
    if !path.is_file() {
        return Ok(512);
    }
    let v: serde_json::Value = read_json(&path)?;
    Ok(v.get("max_seq_length")
        .and_then(serde_json::Value::as_u64)
        .map_or(512, |n| n as usize))
}

fn load_tokenizer(path: &Path, max_len: usize) -> Result<Tokenizer, Error> {
    present(path)?;
    let broken = |message: String| Error::Broken {
        path: path.to_path_buf(),
        message,
    };
    let mut tokenizer = Tokenizer::from_file(path).map_err(|e| broken(e.to_string()))?;
    tokenizer
        .with_truncation(Some(TruncationParams {
            max_length: max_len,
            ..Default::default()
        }))
        .map_err(|e| broken(e.to_string()))?;
    // No padding: every sequence runs at its own length.
    tokenizer.with_padding(None);
    Ok(tokenizer)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_model_names_the_file_and_the_make_target() {
        let dir = tempfile::tempdir().unwrap();
        let err = Embedder::load(dir.path()).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("1_Pooling/config.json"), "{msg}");
        assert!(msg.contains("make model-embed"), "{msg}");
        assert!(err.is_install_problem());
    }

    #[test]
    fn a_broken_config_says_which_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("1_Pooling")).unwrap();
        std::fs::write(
            dir.path().join("1_Pooling/config.json"),
            r#"{"pooling_mode_mean_tokens": true}"#,
        )
        .unwrap();
        std::fs::write(dir.path().join("config.json"), "{not json").unwrap();
        let msg = Embedder::load(dir.path()).unwrap_err().to_string();
        assert!(msg.contains("config.json is broken"), "{msg}");
    }

    #[test]
    fn mean_pool_averages_the_tokens_and_normalises() {
        // Two tokens of dim 2: their mean is (3, 4), of length 5.
        let hidden = [2.0, 5.0, 4.0, 3.0];
        let v = mean_pool(&hidden, 2);
        assert!(
            (v[0] - 0.6).abs() < 1e-6 && (v[1] - 0.8).abs() < 1e-6,
            "{v:?}"
        );
    }
}
