//! Sentence embeddings in-process, with no network: all-MiniLM-L6-v2 (a 6-layer BERT, 384
//! dimensions) run on the CPU by its own small BERT encoder (SIMD kernels chosen at run time), tokenised with the `tokenizers` crate from the
//! model's own `tokenizer.json`, then mean-pooled over the attention mask and L2-normalised,
//! exactly as sentence-transformers does for this model. [`VectorIndex`] is the brute-force
//! cosine top-k over one contiguous `f32` matrix that the memory tools search.
//!
//! The model is installed by `make model-embed` into `<models dir>/minilm-l6-v2/`
//! ([`default_model_dir`]); nothing here downloads anything.

mod bert;
mod error;
mod index;
mod kernel;
mod model;

pub use error::Error;
pub use index::VectorIndex;
pub use model::{Embedder, INSTALL_HINT, MODEL_DIR_NAME, default_model_dir, installed_model_dir};

/// Cosine similarity of two vectors (the dot product divided by both norms; 0 for a zero
/// vector). On vectors from [`Embedder::embed`] this equals their dot product.
pub fn cosine(a: &[f32], b: &[f32]) -> f32 {
    let dot = index::dot(a, b);
    let norms = (index::dot(a, a) * index::dot(b, b)).sqrt();
    if norms == 0.0 { 0.0 } else { dot / norms }
}
