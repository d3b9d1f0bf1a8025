//! Baton's model interface.
//!
//! One trait, [`ChatModel`], with a single streaming method; [`ChatModel::complete`] is derived
//! from it. Providers are found by the `provider/model` reference of an agent through a
//! [`ModelResolver`]. The scripted provider (`scripted/<name>`) replies from a fixture file so
//! tests and demos are deterministic.

pub mod adapter;
pub mod anthropic;
mod cancel;
mod classify;
pub mod config;
pub mod embeddings;
mod error;
pub mod http;
pub mod ollama;
pub mod openai;
pub mod pricing;
pub mod providers;
pub mod retry;
pub mod scripted;
mod secret;
pub mod sse;
pub mod structured;
mod types;

use std::sync::Arc;

use async_trait::async_trait;
use futures::StreamExt;
use futures::stream::BoxStream;

pub use cancel::cancellable;
pub use error::Error;
pub use providers::{Provider, Providers};
pub use retry::{RetryPolicy, Retrying};
pub use secret::Secret;
pub use structured::StructuredOutput;
pub use types::*;

/// A chat model. Implement `stream`; `complete` collects it.
#[async_trait]
pub trait ChatModel: Send + Sync {
    /// Streams the answer to `req` as chunks. The stream ends after a `Chunk::Done`.
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error>;

    /// The answer as a whole.
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, Error> {
        let mut s = self.stream(req).await?;
        let mut resp = ChatResponse::default();
        while let Some(chunk) = s.next().await {
            match chunk? {
                Chunk::Text(t) => resp.content.push_str(&t),
                Chunk::ToolCall(c) => resp.tool_calls.push(c),
                Chunk::Usage(u) => resp.usage.add(&u),
                Chunk::Done(r) => {
                    resp.stop_reason = r;
                    break;
                }
            }
        }
        Ok(resp)
    }

    /// What the model can do; conservative by default.
    fn capabilities(&self) -> Capabilities {
        Capabilities::default()
    }
}

#[async_trait]
impl<T: ChatModel + ?Sized> ChatModel for Arc<T> {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        (**self).stream(req).await
    }
    async fn complete(&self, req: ChatRequest) -> Result<ChatResponse, Error> {
        (**self).complete(req).await
    }
    fn capabilities(&self) -> Capabilities {
        (**self).capabilities()
    }
}

/// Finds the model for a `provider/model` reference.
pub trait ModelResolver: Send + Sync {
    /// `base_dir` is the folder of the workflow file (scripted fixtures are found from it).
    fn resolve(
        &self,
        reference: &str,
        base_dir: &std::path::Path,
    ) -> Result<Arc<dyn ChatModel>, Error>;

    /// Checks a reference without loading anything (used by validation).
    fn check(&self, reference: &str) -> Result<(), Error> {
        split_ref(reference).map(|_| ())
    }
}

/// Splits `provider/model`.
pub fn split_ref(reference: &str) -> Result<(&str, &str), Error> {
    match reference.split_once('/') {
        Some((p, m)) if !p.is_empty() && !m.is_empty() => Ok((p, m)),
        _ => Err(Error::UnknownModel {
            model: reference.to_string(),
            reason:
                "a model reference is `provider/model`, e.g. `local/smollm2` or `scripted/hello`"
                    .into(),
        }),
    }
}
