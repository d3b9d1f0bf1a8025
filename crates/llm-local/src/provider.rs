//! The `local` provider: `local/smollm2` and `local/<path>.gguf` as [`ChatModel`]s.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use async_trait::async_trait;
use baton_llm::{
    Capabilities, ChatModel, ChatRequest, Chunk, Message, Provider, Role, StopReason, Usage,
};
use futures::stream::{self, BoxStream};
use serde::{Deserialize, Serialize};
use tokio::sync::mpsc;

use crate::Error;
use crate::catalog::{self, KnownModel};
use crate::constrain::{self, Shape, ToolReply};
use crate::engine::{self, Finish, GenParams, ModelCache};
use crate::threads;

/// Settings of the embedded model.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LocalConfig {
    /// Inference threads at most (the machines we target have 2 cores). Each generation takes
    /// fewer when fewer cores are free at its start (see `threads::for_now`): llama.cpp's threads
    /// wait for each other after every operation, so one more thread than free cores costs far
    /// more than it brings.
    pub threads: u32,
    /// Upper bound of the context window, in tokens (the model's own limit still applies).
    pub context_size: u32,
    /// Default for requests that set no `max_tokens`.
    pub max_tokens: u32,
    /// Where installed models live; `None` is the default data directory.
    pub models_dir: Option<PathBuf>,
    /// Sampling seed; `None` picks one per request.
    pub seed: Option<u32>,
}

impl Default for LocalConfig {
    fn default() -> Self {
        Self {
            threads: 2,
            context_size: 4096,
            max_tokens: 512,
            models_dir: None,
            seed: None,
        }
    }
}

impl LocalConfig {
    /// The defaults, overridden by `BATON_LOCAL_THREADS` and `BATON_LOCAL_CONTEXT` when set.
    pub fn from_env() -> Result<Self, Error> {
        let mut cfg = Self::default();
        let num = |k: &str| -> Result<Option<u32>, Error> {
            match std::env::var(k) {
                Ok(v) if !v.trim().is_empty() => {
                    v.trim().parse::<u32>().map(Some).map_err(|_| Error::Io {
                        context: format!("{k}={v}"),
                        message: "expected a positive whole number".into(),
                    })
                }
                _ => Ok(None),
            }
        };
        if let Some(t) = num("BATON_LOCAL_THREADS")? {
            cfg.threads = t.max(1);
        }
        if let Some(c) = num("BATON_LOCAL_CONTEXT")? {
            cfg.context_size = c.max(64);
        }
        Ok(cfg)
    }

    /// The models directory in effect.
    pub fn models_dir(&self) -> PathBuf {
        self.models_dir
            .clone()
            .unwrap_or_else(catalog::default_models_dir)
    }
}

/// Serves `local/<name>` from GGUF files, loaded once per process and shared.
pub struct LocalProvider {
    cfg: LocalConfig,
    cache: &'static ModelCache,
}

impl LocalProvider {
    pub fn new(cfg: LocalConfig) -> Self {
        Self {
            cfg,
            cache: ModelCache::global(),
        }
    }

    /// The file and, for known models, the catalog entry behind `local/<name>`.
    pub fn locate(
        &self,
        name: &str,
        base_dir: &Path,
    ) -> Result<(PathBuf, Option<&'static KnownModel>), Error> {
        if let Some(k) = catalog::known(name) {
            return Ok((self.cfg.models_dir().join(k.file), Some(k)));
        }
        if name.ends_with(".gguf") {
            let p = PathBuf::from(name);
            if p.is_relative() && base_dir.join(&p).is_file() {
                return Ok((base_dir.join(p), None));
            }
            return Ok((p, None));
        }
        Err(Error::UnknownModel {
            name: name.to_string(),
            reason: format!(
                "known models are {}; any other GGUF file is `local/path/to/model.gguf`",
                catalog::KNOWN
                    .iter()
                    .map(|k| format!("local/{}", k.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        })
    }

    /// The model `local/<name>`, as a concrete type (benchmarks use its timings).
    pub fn local_model(&self, name: &str, base_dir: &Path) -> Result<Arc<LocalModel>, Error> {
        let (path, known) = self.locate(name, base_dir)?;
        if !path.is_file() {
            return Err(Error::ModelMissing {
                model: name.to_string(),
                path,
                fix: match known {
                    Some(k) => catalog::fix_for(k),
                    None => "check the path of the GGUF file".into(),
                },
            });
        }
        Ok(Arc::new(LocalModel {
            path,
            known,
            cfg: self.cfg.clone(),
            cache: self.cache,
        }))
    }
}

impl Provider for LocalProvider {
    fn model(&self, model: &str, base_dir: &Path) -> Result<Arc<dyn ChatModel>, baton_llm::Error> {
        Ok(self.local_model(model, base_dir)?)
    }

    fn check(&self, model: &str) -> Result<(), baton_llm::Error> {
        self.locate(model, Path::new("."))
            .map(|_| ())
            .map_err(Into::into)
    }

    fn list(&self) -> Vec<String> {
        catalog::KNOWN.iter().map(|k| k.name.to_string()).collect()
    }
}

/// One GGUF model as a [`ChatModel`]. Cheap to create: the weights are loaded on first use and
/// shared by every `LocalModel` of the same file.
pub struct LocalModel {
    path: PathBuf,
    known: Option<&'static KnownModel>,
    cfg: LocalConfig,
    cache: &'static ModelCache,
}

static CALL_IDS: AtomicU64 = AtomicU64::new(0);

fn seed(cfg: &LocalConfig) -> u32 {
    cfg.seed.unwrap_or_else(|| {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        nanos ^ (CALL_IDS.load(Ordering::Relaxed) as u32).wrapping_mul(2_654_435_761)
    })
}

/// The conversation as (role, content) pairs for the chat template, with the shape's
/// instructions added to the system prompt.
fn conversation(messages: &[Message], instructions: Option<String>) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = messages
        .iter()
        .map(|m| {
            let role = match m.role {
                Role::System => "system",
                Role::User => "user",
                Role::Assistant => "assistant",
                Role::Tool => "tool",
            };
            let mut content = m.content.clone();
            for c in &m.tool_calls {
                if !content.is_empty() {
                    content.push('\n');
                }
                content.push_str(
                    &serde_json::json!({ "name": c.name, "arguments": c.arguments }).to_string(),
                );
            }
            (role.to_string(), content)
        })
        .collect();
    if let Some(ins) = instructions {
        match out.first_mut() {
            Some((role, content)) if role == "system" => {
                content.push_str("\n\n");
                content.push_str(&ins);
            }
            _ => out.insert(0, ("system".into(), ins)),
        }
    }
    out
}

impl LocalModel {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Loads the weights now (otherwise the first request does). Returns the load time.
    pub async fn preload(&self) -> Result<std::time::Duration, Error> {
        Ok(self.cache.get(&self.path, self.known).await?.load_time)
    }

    /// Runs `req` to completion on the calling (blocking) thread and returns the generation's
    /// statistics along with the text; used by the benchmark.
    pub fn generate_blocking(
        loaded: &engine::Loaded,
        prompt: &str,
        params: &GenParams,
    ) -> Result<(String, engine::GenStats), Error> {
        let tokens = loaded.tokenize(prompt);
        let mut text = String::new();
        let stats = engine::generate(loaded, &tokens, params, &mut |s| {
            text.push_str(s);
            true
        })?;
        Ok((text, stats))
    }

    /// The loaded weights (loading them if needed).
    pub async fn loaded(&self) -> Result<Arc<engine::Loaded>, Error> {
        self.cache.get(&self.path, self.known).await
    }

    async fn start(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, baton_llm::Error>>, Error> {
        let loaded = self.loaded().await?;
        let shape = Shape::of(&req);
        let grammar = shape
            .schema(&req.tools)
            .map(|s| constrain::grammar_for(&s))
            .transpose()?;
        let messages = conversation(&req.messages, shape.instructions(&req.tools));
        let prompt = loaded.render(&messages)?;
        let tokens = loaded.tokenize(&prompt);
        let constrained = grammar.is_some();
        let params = GenParams {
            max_tokens: req.max_tokens.unwrap_or(self.cfg.max_tokens).max(1),
            temperature: req
                .temperature
                .unwrap_or(if constrained { 0.0 } else { 0.4 }),
            seed: seed(&self.cfg),
            // The most; `run` lowers it to the cores free when generation starts.
            threads: i32::try_from(self.cfg.threads.max(1)).unwrap_or(1),
            context_size: self.cfg.context_size,
            grammar,
            ignore_eos: false,
        };
        let (tx, rx) = mpsc::channel::<Result<Chunk, baton_llm::Error>>(64);
        tokio::task::spawn_blocking(move || run(loaded, tokens, params, shape, tx));
        Ok(Box::pin(stream::unfold(rx, |mut rx| async move {
            rx.recv().await.map(|c| (c, rx))
        })))
    }
}

/// The generation thread: streams chunks into `tx` until done or until the receiver is gone
/// (the caller dropped the stream: generation stops at the next token).
fn run(
    loaded: Arc<engine::Loaded>,
    tokens: Vec<llama_cpp_2::token::LlamaToken>,
    mut params: GenParams,
    shape: Shape,
    tx: mpsc::Sender<Result<Chunk, baton_llm::Error>>,
) {
    let most = u32::try_from(params.threads).unwrap_or(1);
    params.threads = i32::try_from(threads::for_now(most)).unwrap_or(1);
    tracing::debug!(threads = params.threads, most, "local generation threads");
    let mut whole = String::new();
    let stream_text = !matches!(shape, Shape::Tools { .. });
    let result = engine::generate(&loaded, &tokens, &params, &mut |piece| {
        whole.push_str(piece);
        if stream_text {
            tx.blocking_send(Ok(Chunk::Text(piece.to_string()))).is_ok()
        } else {
            !tx.is_closed()
        }
    });
    let stats = match result {
        Ok(s) => {
            tracing::debug!(
                prompt = s.prompt_tokens,
                cached = s.cached_tokens,
                completion = s.completion_tokens,
                prompt_ms = s.prompt_eval_time.as_millis() as u64,
                "local generation"
            );
            s
        }
        Err(e) => {
            let _ = tx.blocking_send(Err(e.into()));
            return;
        }
    };
    if stats.finish == Finish::Cancelled {
        return;
    }
    let constrained = params.grammar.is_some();
    let mut stop = match stats.finish {
        Finish::MaxTokens => StopReason::MaxTokens,
        _ => StopReason::EndTurn,
    };
    if constrained && stats.finish == Finish::MaxTokens {
        let _ = tx.blocking_send(Err(Error::InvalidOutput(format!(
            "generation reached max_tokens ({}) before the JSON was complete; raise max_tokens",
            params.max_tokens
        ))
        .into()));
        return;
    }
    if let Shape::Tools { .. } = shape {
        let id = format!("call_{}", CALL_IDS.fetch_add(1, Ordering::Relaxed));
        match constrain::parse_tool_reply(&whole, id) {
            Ok(ToolReply::Call(call)) => {
                stop = StopReason::ToolCalls;
                let _ = tx.blocking_send(Ok(Chunk::ToolCall(call)));
            }
            Ok(ToolReply::Answer(text)) => {
                let _ = tx.blocking_send(Ok(Chunk::Text(text)));
            }
            Err(e) => {
                let _ = tx.blocking_send(Err(e.into()));
                return;
            }
        }
    }
    let usage = Usage {
        prompt_tokens: stats.prompt_tokens as u64,
        completion_tokens: stats.completion_tokens as u64,
        ..Default::default()
    };
    let _ = tx.blocking_send(Ok(Chunk::Usage(usage)));
    let _ = tx.blocking_send(Ok(Chunk::Done(stop)));
}

#[async_trait]
impl ChatModel for LocalModel {
    async fn stream(
        &self,
        req: ChatRequest,
    ) -> Result<BoxStream<'static, Result<Chunk, baton_llm::Error>>, baton_llm::Error> {
        Ok(self.start(req).await?)
    }

    fn capabilities(&self) -> Capabilities {
        Capabilities {
            tools: true,
            json_schema: true,
            streaming: true,
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn references_resolve_to_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(LocalConfig {
            models_dir: Some(dir.path().into()),
            ..Default::default()
        });
        let (path, known) = p.locate("smollm2", Path::new(".")).unwrap();
        assert_eq!(path, dir.path().join(catalog::SMOLLM2.file));
        assert!(known.is_some());
        std::fs::write(dir.path().join("m.gguf"), b"GGUF").unwrap();
        let (path, known) = p.locate("m.gguf", dir.path()).unwrap();
        assert_eq!(path, dir.path().join("m.gguf"));
        assert!(known.is_none());
        assert!(matches!(
            p.locate("gpt-9", Path::new(".")),
            Err(Error::UnknownModel { .. })
        ));
    }

    #[test]
    fn a_missing_model_fails_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let p = LocalProvider::new(LocalConfig {
            models_dir: Some(dir.path().into()),
            ..Default::default()
        });
        let err = p.model("smollm2", Path::new(".")).err().unwrap();
        let msg = err.to_string();
        assert!(
            msg.contains("baton models pull smollm2")
                && msg.contains("SmolLM2-135M-Instruct.Q4_1.gguf"),
            "{msg}"
        );
    }

    #[test]
    fn instructions_join_the_system_prompt() {
        let msgs = vec![Message::system("Be brief."), Message::user("hi")];
        let c = conversation(&msgs, Some("Answer in JSON.".into()));
        assert_eq!(
            c[0],
            ("system".into(), "Be brief.\n\nAnswer in JSON.".into())
        );
        let c = conversation(&[Message::user("hi")], Some("X".into()));
        assert_eq!(c[0], ("system".into(), "X".into()));
        assert_eq!(c.len(), 2);
    }
}
