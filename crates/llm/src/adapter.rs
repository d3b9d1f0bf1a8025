//! What the three HTTP adapters share, written once: a [`Connection`] (client, URL, headers
//! with the API key) built from an [`Endpoint`], the send path (POST, classify a failure, name
//! the model, blank the key out of errors) and the streamed answer; and [`Adapter`], the model
//! type every adapter is (`OpenAi`, `Anthropic`, `Ollama` are `Adapter<their Protocol>`).
//!
//! An adapter supplies only what is its own, as a [`Protocol`]: the request body, the parser
//! of the answer, its framing, and (the OpenAI adapter) a call that may send more than once.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use futures::stream::BoxStream;
use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderName, HeaderValue};
use serde_json::Value;

use crate::http::{self, Endpoint, Framing, StreamParser};
use crate::pricing::Price;
use crate::{Capabilities, ChatModel, ChatRequest, Chunk, Error};

/// How a provider takes its API key.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum KeyHeader {
    /// `Authorization: Bearer <key>`.
    Bearer,
    /// The bare key in the named header (`x-api-key`, `api-key`).
    Named(String),
}

/// A provider's endpoint ready to send: the HTTP client, the URL of its chat endpoint and the
/// headers of every request.
pub struct Connection {
    pub endpoint: Endpoint,
    client: reqwest::Client,
    url: String,
    headers: HeaderMap,
}

impl fmt::Debug for Connection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Connection")
            .field("endpoint", &self.endpoint)
            .field("url", &self.url)
            .finish_non_exhaustive()
    }
}

impl Connection {
    /// The endpoint's client for `path` under its base URL, sending the API key (when one is
    /// set) as `key` says and asking for `accept`.
    pub fn new(
        endpoint: Endpoint,
        path: &str,
        key: &KeyHeader,
        accept: &'static str,
    ) -> Result<Self, Error> {
        let client = http::client(&endpoint.base_url, &endpoint.timeouts)?;
        let url = http::join(&endpoint.base_url, path);
        let mut headers = endpoint.headers.clone();
        if let Some(k) = endpoint.api_key.as_ref().filter(|k| !k.is_empty()) {
            match key {
                KeyHeader::Bearer => {
                    let v = http::secret_header(&format!("Bearer {}", k.expose()))?;
                    headers.insert(AUTHORIZATION, v);
                }
                KeyHeader::Named(h) => {
                    let name = HeaderName::from_bytes(h.as_bytes()).map_err(|e| {
                        Error::Config(format!("api_key_header '{h}' is not a header name: {e}"))
                    })?;
                    headers.insert(name, http::secret_header(k.expose())?);
                }
            }
        }
        headers.insert(reqwest::header::ACCEPT, HeaderValue::from_static(accept));
        Ok(Self {
            endpoint,
            client,
            url,
            headers,
        })
    }

    /// Adds a header sent with every request; `what` names the setting it comes from.
    pub fn set_header(&mut self, name: &'static str, value: &str, what: &str) -> Result<(), Error> {
        let v = HeaderValue::from_str(value).map_err(|e| {
            Error::Config(format!("{what} '{value}' is not a valid header value: {e}"))
        })?;
        self.headers.insert(name, v);
        Ok(())
    }

    pub fn provider(&self) -> &str {
        &self.endpoint.provider
    }

    /// The price of `model`, from the endpoint's table.
    pub fn price(&self, model: &str) -> Option<Price> {
        self.endpoint.prices.get(model)
    }

    /// POSTs `body` to `path` under the base URL (with the same key and headers as chat calls)
    /// and reads the whole JSON answer, at most `cap` bytes. Used by the non-streaming
    /// endpoints (embeddings).
    pub async fn post_for_json(
        &self,
        path: &str,
        body: &Value,
        cap: usize,
    ) -> Result<Value, Error> {
        let provider = self.provider();
        let url = http::join(&self.endpoint.base_url, path);
        let mut headers = self.headers.clone();
        headers.insert(
            reqwest::header::ACCEPT,
            HeaderValue::from_static("application/json"),
        );
        let timeouts = &self.endpoint.timeouts;
        let resp = http::post_json(provider, &self.client, &url, headers, body, timeouts)
            .await
            .map_err(|e| self.endpoint.scrub(e))?;
        let wait = timeouts.total.unwrap_or(timeouts.idle);
        let bytes = match tokio::time::timeout(wait, http::read_limited(provider, resp, cap)).await
        {
            Err(_) => return Err(Error::Timeout(wait)),
            Ok(r) => r.map_err(|e| self.endpoint.scrub(e))?,
        };
        serde_json::from_slice(&bytes).map_err(|e| {
            Error::InvalidResponse(format!(
                "{provider}: {path} did not answer JSON ({e}): {}",
                http::snippet(&String::from_utf8_lossy(&bytes))
            ))
        })
    }

    /// Sends `body` for `model` and streams the answer through `parser`. A failure status is
    /// classified, names the model when the server did not know it, and never holds the key.
    pub async fn call<P: StreamParser>(
        &self,
        model: &str,
        body: &Value,
        framing: Framing,
        parser: P,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let started = tokio::time::Instant::now();
        let provider = self.provider();
        let resp = http::post_json(
            provider,
            &self.client,
            &self.url,
            self.headers.clone(),
            body,
            &self.endpoint.timeouts,
        )
        .await
        .map_err(|e| self.endpoint.scrub(name_model(e, provider, model)))?;
        Ok(http::drive(
            provider,
            resp,
            framing,
            parser,
            &self.endpoint.timeouts,
            started,
        ))
    }
}

/// Puts the model's name into an unknown-model error classified from a bare status.
fn name_model(e: Error, provider: &str, model: &str) -> Error {
    match e {
        Error::UnknownModel { reason, .. } => Error::UnknownModel {
            model: format!("{provider}/{model}"),
            reason,
        },
        e => e,
    }
}

/// What one adapter adds to a [`Connection`]: its wire format.
#[async_trait]
pub trait Protocol: fmt::Debug + Send + Sync + 'static {
    /// The adapter's name in `Debug` output (`OpenAi`).
    const NAME: &'static str;

    /// The request body sent for `req` to `model`.
    fn body(&self, model: &str, req: &ChatRequest) -> Result<Value, Error>;

    /// Sends `req` and streams the answer.
    async fn call(
        &self,
        conn: &Connection,
        model: &str,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error>;

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            streaming: true,
        }
    }
}

struct Shared<P> {
    conn: Connection,
    protocol: P,
}

/// A model of an HTTP adapter. Cheap to clone; clones share the connection pool (and what the
/// protocol learns about the server).
pub struct Adapter<P> {
    shared: Arc<Shared<P>>,
    model: Option<String>,
}

impl<P> Clone for Adapter<P> {
    fn clone(&self) -> Self {
        Self {
            shared: self.shared.clone(),
            model: self.model.clone(),
        }
    }
}

impl<P: Protocol> fmt::Debug for Adapter<P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(P::NAME)
            .field("endpoint", &self.shared.conn.endpoint)
            .field("protocol", &self.shared.protocol)
            .field("model", &self.model)
            .finish()
    }
}

impl<P: Protocol> Adapter<P> {
    /// An adapter on `conn` speaking `protocol`.
    pub fn with_protocol(conn: Connection, protocol: P) -> Self {
        Self {
            shared: Arc::new(Shared { conn, protocol }),
            model: None,
        }
    }

    /// The same adapter, bound to `model` (used when a request names none).
    pub fn for_model(&self, model: impl Into<String>) -> Self {
        Self {
            shared: self.shared.clone(),
            model: Some(model.into()),
        }
    }

    /// The request body sent for `req`.
    pub fn body(&self, req: &ChatRequest) -> Result<Value, Error> {
        let model = self.model_for(req)?;
        self.shared.protocol.body(model, req)
    }

    pub fn protocol(&self) -> &P {
        &self.shared.protocol
    }

    /// The connection the adapter's calls go through.
    pub fn connection(&self) -> &Connection {
        &self.shared.conn
    }

    fn model_for<'a>(&'a self, req: &'a ChatRequest) -> Result<&'a str, Error> {
        match self.model.as_deref().filter(|m| !m.is_empty()) {
            Some(m) => Ok(m),
            None if !req.model.is_empty() => Ok(&req.model),
            None => Err(Error::Config(format!(
                "no model named for provider {}",
                self.shared.conn.provider()
            ))),
        }
    }
}

#[async_trait]
impl<P: Protocol> ChatModel for Adapter<P> {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, Error>>, Error> {
        let model = self.model_for(&req)?.to_string();
        let s = &self.shared;
        s.protocol.call(&s.conn, &model, req).await
    }

    fn capabilities(&self) -> Capabilities {
        self.shared.protocol.capabilities()
    }
}
