//! llama.cpp, held safely: one backend per process, each model loaded once and shared, and the
//! generation loop. Everything here is blocking; callers run it on blocking threads.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use llama_cpp_2::context::LlamaContext;
use llama_cpp_2::context::params::LlamaContextParams;
use llama_cpp_2::context::session::{LlamaStateSeqFlags, SeqState};
use llama_cpp_2::llama_backend::LlamaBackend;
use llama_cpp_2::llama_batch::LlamaBatch;
use llama_cpp_2::model::params::LlamaModelParams;
use llama_cpp_2::model::{LlamaChatMessage, LlamaChatTemplate, LlamaModel};
use llama_cpp_2::sampling::LlamaSampler;
use llama_cpp_2::token::LlamaToken;
use llama_cpp_2::token::data::LlamaTokenData;
use llama_cpp_2::token::data_array::LlamaTokenDataArray;

use crate::Error;
use crate::catalog::{self, KnownModel};

/// llama.cpp's backend may be initialised once per process; every model shares it.
fn backend() -> Result<&'static LlamaBackend, Error> {
    static BACKEND: OnceLock<Result<LlamaBackend, String>> = OnceLock::new();
    BACKEND
        .get_or_init(|| {
            // llama.cpp logs to stderr by default; route it to tracing (at debug level and
            // below it stays quiet).
            llama_cpp_2::send_logs_to_tracing(llama_cpp_2::LogOptions::default());
            LlamaBackend::init().map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Inference(format!("cannot initialise llama.cpp: {e}")))
}

/// A model loaded in memory.
pub struct Loaded {
    pub(crate) model: LlamaModel,
    template: Option<LlamaChatTemplate>,
    pub path: PathBuf,
    /// How long loading took (reading and mapping the file, not the checksum).
    pub load_time: Duration,
    /// One generation at a time per model: two would only share the same cores, and llama.cpp
    /// does not allow contexts of one model to be created concurrently.
    generating: Mutex<()>,
    /// What the last generation left in its KV cache (see [`Prefix`]).
    prefix: Mutex<Option<Prefix>>,
}

/// The tokens the last generation evaluated (its prompt and what it generated) and its KV cache
/// for them: a next prompt that starts the same way (an agent's next turn, which repeats the
/// whole conversation so far) evaluates only what follows the common part.
struct Prefix {
    tokens: Vec<LlamaToken>,
    state: SeqState,
}

/// Fewer tokens in common than this are evaluated again: restoring a cache costs a copy of it.
const MIN_REUSE: usize = 32;

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("path", &self.path)
            .field("load_time", &self.load_time)
            .finish()
    }
}

impl Loaded {
    /// Loads `path`, checking first that it is intact when it is a known model. Blocking.
    pub fn load(path: &Path, known: Option<&KnownModel>) -> Result<Self, Error> {
        match known {
            Some(k) => catalog::ensure_intact(k, path)?,
            None if !path.is_file() => {
                return Err(Error::ModelMissing {
                    model: path.display().to_string(),
                    path: path.to_path_buf(),
                    fix: "check the path, or install the default model with `baton models pull smollm2`".into(),
                });
            }
            None => {}
        }
        catalog::check_gguf_magic(path)?;
        let backend = backend()?;
        let started = Instant::now();
        let model = LlamaModel::load_from_file(backend, path, &LlamaModelParams::default())
            .map_err(|e| Error::Load {
                path: path.to_path_buf(),
                message: e.to_string(),
            })?;
        let load_time = started.elapsed();
        // The template comes from the GGUF metadata (`tokenizer.chat_template`); llama.cpp
        // recognises the common families from it. Models without one fall back to ChatML.
        let template = model.chat_template(None).ok();
        Ok(Self {
            model,
            template,
            path: path.to_path_buf(),
            load_time,
            generating: Mutex::new(()),
            prefix: Mutex::new(None),
        })
    }

    /// The prompt for `messages` (role, content), in the model's own chat format, ending where
    /// the assistant's answer starts.
    pub fn render(&self, messages: &[(String, String)]) -> Result<String, Error> {
        let chat = messages
            .iter()
            .map(|(r, c)| LlamaChatMessage::new(r.clone(), c.clone()))
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| {
                Error::Inference(format!("a message cannot be passed to llama.cpp: {e}"))
            })?;
        let chatml;
        let template = match &self.template {
            Some(t) => t,
            None => {
                chatml = LlamaChatTemplate::new("chatml")
                    .map_err(|e| Error::Inference(e.to_string()))?;
                &chatml
            }
        };
        self.model
            .apply_chat_template(template, &chat, true)
            .map_err(|e| Error::Inference(format!("cannot apply the chat template: {e}")))
    }

    /// The prompt's tokens.
    pub fn tokenize(&self, prompt: &str) -> Vec<LlamaToken> {
        self.model.vocab().tokenize(prompt.as_bytes(), true, true)
    }

    /// Drops what the last generation left in its cache: the next prompt is evaluated whole
    /// (benchmarks of prompt evaluation).
    pub fn forget_cache(&self) {
        if let Ok(mut slot) = self.prefix.lock() {
            *slot = None;
        }
    }

    /// The model's training context length.
    pub fn n_ctx_train(&self) -> u32 {
        self.model.n_ctx_train()
    }
}

/// Models loaded in this process, by path. Loading is single-flight: concurrent first uses of
/// one path wait for one load.
#[derive(Default)]
pub struct ModelCache {
    slots: Mutex<HashMap<PathBuf, Arc<tokio::sync::OnceCell<Arc<Loaded>>>>>,
}

impl ModelCache {
    /// The cache every `local` provider of this process shares.
    pub fn global() -> &'static ModelCache {
        static CACHE: OnceLock<ModelCache> = OnceLock::new();
        CACHE.get_or_init(ModelCache::default)
    }

    /// The loaded model at `path`, loading it on a blocking thread the first time.
    pub async fn get(
        &self,
        path: &Path,
        known: Option<&'static KnownModel>,
    ) -> Result<Arc<Loaded>, Error> {
        let slot = {
            let mut slots = self
                .slots
                .lock()
                .map_err(|_| Error::Inference("model cache poisoned".into()))?;
            slots.entry(path.to_path_buf()).or_default().clone()
        };
        let path = path.to_path_buf();
        slot.get_or_try_init(|| async move {
            tokio::task::spawn_blocking(move || Loaded::load(&path, known).map(Arc::new))
                .await
                .map_err(|e| Error::Inference(format!("the loading thread failed: {e}")))?
        })
        .await
        .cloned()
    }
}

static ACTIVE: AtomicUsize = AtomicUsize::new(0);

/// How many generations are running in this process right now.
pub fn active_generations() -> usize {
    ACTIVE.load(Ordering::SeqCst)
}

/// Counts a running generation until dropped.
struct Active;

impl Active {
    fn start() -> Self {
        ACTIVE.fetch_add(1, Ordering::SeqCst);
        Active
    }
}

impl Drop for Active {
    fn drop(&mut self) {
        ACTIVE.fetch_sub(1, Ordering::SeqCst);
    }
}

/// How to generate.
#[derive(Clone, Debug)]
pub struct GenParams {
    pub max_tokens: u32,
    /// 0 means greedy.
    pub temperature: f32,
    pub seed: u32,
    pub threads: i32,
    /// Upper bound of the context window.
    pub context_size: u32,
    /// GBNF grammar the output must match.
    pub grammar: Option<String>,
    /// Keep going past end-of-turn tokens (benchmarks only).
    pub ignore_eos: bool,
}

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Finish {
    EndOfTurn,
    MaxTokens,
    /// The receiver went away.
    Cancelled,
}

/// What a generation did, with its timings.
#[derive(Clone, Debug)]
pub struct GenStats {
    pub prompt_tokens: usize,
    /// Of the prompt's tokens, those whose evaluation was reused from the last generation's
    /// cache (the prompt started with them).
    pub cached_tokens: usize,
    pub completion_tokens: usize,
    pub finish: Finish,
    /// From the call to the end of the prompt's evaluation (context creation included).
    pub prompt_time: Duration,
    /// The prompt's evaluation alone (what llama-bench's pp tests time).
    pub prompt_eval_time: Duration,
    /// From the call to the first generated piece.
    pub first_token: Option<Duration>,
    /// From the first generated token to the last.
    pub gen_time: Duration,
}

/// The sampler of a generation: an optional grammar, then the sampling chain.
struct Sampler {
    grammar: Option<LlamaSampler>,
    chain: LlamaSampler,
}

impl Sampler {
    fn new(loaded: &Loaded, p: &GenParams) -> Result<Self, Error> {
        let grammar = match &p.grammar {
            Some(g) => Some(
                LlamaSampler::grammar(&loaded.model, g, "root")
                    .map_err(|e| Error::Grammar(format!("llama.cpp rejected the grammar: {e}")))?,
            ),
            None => None,
        };
        let chain = if p.temperature <= 0.0 {
            LlamaSampler::greedy()
        } else {
            let mut chain = Vec::new();
            // Small models loop easily; a light repetition penalty keeps free text moving. Under
            // a grammar it would fight the JSON syntax, so it is left out there.
            if p.grammar.is_none() {
                chain.push(LlamaSampler::penalties(
                    loaded.model.n_vocab(),
                    64,
                    1.1,
                    0.0,
                    0.0,
                ));
            }
            chain.push(LlamaSampler::top_k(40));
            chain.push(LlamaSampler::top_p(0.95, 1));
            chain.push(LlamaSampler::min_p(0.05, 1));
            chain.push(LlamaSampler::temp(p.temperature));
            chain.push(LlamaSampler::dist(p.seed));
            LlamaSampler::chain_simple(chain)
        };
        Ok(Self { grammar, chain })
    }

    /// Picks the next token from the logits at batch index `idx` and accepts it (once) into the
    /// grammar and the chain.
    ///
    /// Checking the grammar against the whole 49k vocabulary at every step is what makes naive
    /// constrained decoding slow; like llama.cpp's own sampler, this samples first and checks the
    /// one token picked, and only when the grammar rejects it samples again with the grammar
    /// applied to every candidate.
    fn sample(&mut self, ctx: &LlamaContext<'_>, idx: i32) -> Result<LlamaToken, Error> {
        let mut cur = ctx.token_data_array_ith(idx);
        cur.apply_sampler(&mut self.chain);
        let mut token = cur
            .selected_token()
            .ok_or_else(|| Error::Inference("the sampler picked no token".into()))?;
        if let Some(g) = &mut self.grammar {
            let mut single =
                LlamaTokenDataArray::new(vec![LlamaTokenData::new(token, 1.0, 0.0)], false);
            single.apply_sampler(g);
            if single
                .data
                .first()
                .is_none_or(|d| d.logit() == f32::NEG_INFINITY)
            {
                let mut cur = ctx.token_data_array_ith(idx);
                cur.apply_sampler(g);
                cur.apply_sampler(&mut self.chain);
                token = cur
                    .selected_token()
                    .ok_or_else(|| Error::Inference("no token is allowed by the grammar".into()))?;
            }
            g.accept(token);
        }
        self.chain.accept(token);
        Ok(token)
    }
}

/// Bytes of pieces turned into text without splitting a UTF-8 character across two pieces.
#[derive(Default)]
struct Utf8Buf(Vec<u8>);

impl Utf8Buf {
    fn push(&mut self, bytes: &[u8]) -> String {
        self.0.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.0) {
            Ok(_) => self.0.len(),
            // An incomplete character at the end waits for the next piece.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            // Invalid bytes are replaced, as a model may emit anything.
            Err(_) => {
                let s = String::from_utf8_lossy(&self.0).into_owned();
                self.0.clear();
                return s;
            }
        };
        let s = String::from_utf8_lossy(&self.0[..valid]).into_owned();
        self.0.drain(..valid);
        s
    }

    fn finish(&mut self) -> String {
        let s = String::from_utf8_lossy(&self.0).into_owned();
        self.0.clear();
        s
    }
}

/// Generates from `tokens`, calling `on_piece` with each piece of text; `on_piece` returns
/// `false` to stop (the consumer went away). Blocking.
pub fn generate(
    loaded: &Loaded,
    tokens: &[LlamaToken],
    p: &GenParams,
    on_piece: &mut dyn FnMut(&str) -> bool,
) -> Result<GenStats, Error> {
    let started = Instant::now();
    let window = p.context_size.min(loaded.n_ctx_train()).max(64);
    let n_prompt = tokens.len();
    if n_prompt == 0 {
        return Err(Error::Inference("the prompt is empty".into()));
    }
    if n_prompt as u64 >= u64::from(window) {
        return Err(Error::ContextLength {
            prompt_tokens: n_prompt,
            context: window,
        });
    }
    let room = window - n_prompt as u32;
    let max_new = p.max_tokens.min(room);

    let _turn = loaded
        .generating
        .lock()
        .map_err(|_| Error::Inference("model lock poisoned".into()))?;
    // The last generation's cache, when this prompt starts the way its tokens did; at least the
    // prompt's last token is evaluated again (its logits start the generation).
    let reuse = loaded
        .prefix
        .lock()
        .map_err(|_| Error::Inference("model cache lock poisoned".into()))?
        .take()
        .map(|prefix| {
            let common = prefix
                .tokens
                .iter()
                .zip(tokens)
                .take_while(|(a, b)| a == b)
                .count()
                .min(n_prompt - 1);
            (prefix, common)
        })
        .filter(|(_, common)| *common >= MIN_REUSE);
    // Size the KV cache to what this request can use (smaller allocations start faster), and
    // to what the restored cache holds.
    let restored = reuse.as_ref().map_or(0, |(p, _)| p.tokens.len() as u32);
    let n_ctx = (n_prompt as u32 + max_new)
        .max(restored)
        .div_ceil(256)
        .saturating_mul(256)
        .min(window);
    let params = LlamaContextParams::default()
        .with_n_ctx(NonZeroU32::new(n_ctx))
        .with_n_batch((n_prompt as u32).clamp(1, n_ctx))
        .with_n_ubatch((n_prompt as u32).clamp(1, n_ctx).min(512))
        .with_n_threads(p.threads)
        .with_n_threads_batch(p.threads);

    let _active = Active::start();
    let backend = backend()?;
    let mut ctx = loaded
        .model
        .new_context(backend, params)
        .map_err(|e| Error::Inference(format!("cannot create a context: {e}")))?;
    let mut sampler = Sampler::new(loaded, p)?;

    // A cache that cannot be restored or cut back (another shape, a recurrent model) is not
    // used: the whole prompt is evaluated, as without one.
    let cached = match reuse {
        Some((prefix, common))
            if restored <= n_ctx
                && ctx.state_seq_set(&prefix.state, 0).is_ok()
                && ctx
                    .clear_kv_cache_seq(Some(0), Some(common as u32), None)
                    .unwrap_or(false) =>
        {
            common
        }
        Some(_) => {
            ctx.clear_kv_cache();
            0
        }
        None => 0,
    };
    let fresh = &tokens[cached..];
    let mut batch = LlamaBatch::new(fresh.len(), 1);
    let last = fresh.len() - 1;
    for (i, t) in fresh.iter().enumerate() {
        batch
            .add(*t, (cached + i) as i32, &[0], i == last)
            .map_err(|e| Error::Inference(format!("cannot batch the prompt: {e}")))?;
    }
    let eval_started = Instant::now();
    ctx.decode(&mut batch)
        .map_err(|e| Error::Inference(format!("cannot evaluate the prompt: {e}")))?;
    let prompt_eval_time = eval_started.elapsed();
    let prompt_time = started.elapsed();
    // The tokens the cache holds, in order.
    let mut evaluated = tokens.to_vec();

    let vocab = loaded.model.vocab();
    let mut text = Utf8Buf::default();
    let mut n_cur = n_prompt as i32;
    let mut generated = 0usize;
    let mut first_token = None;
    let mut gen_started = None;
    let mut finish = Finish::MaxTokens;
    let mut piece = Vec::with_capacity(32);
    while generated < max_new as usize {
        let token = sampler.sample(&ctx, batch.n_tokens() - 1)?;
        if gen_started.is_none() {
            gen_started = Some(Instant::now());
        }
        if vocab.is_eog(token) && !p.ignore_eos {
            finish = Finish::EndOfTurn;
            break;
        }
        generated += 1;
        piece.clear();
        vocab.token_to_piece_into(token, &mut piece, false, None);
        let s = text.push(&piece);
        if first_token.is_none() {
            first_token = Some(started.elapsed());
        }
        if !s.is_empty() && !on_piece(&s) {
            finish = Finish::Cancelled;
            break;
        }
        batch.clear();
        batch
            .add(token, n_cur, &[0], true)
            .map_err(|e| Error::Inference(format!("cannot batch a token: {e}")))?;
        n_cur += 1;
        ctx.decode(&mut batch)
            .map_err(|e| Error::Inference(format!("decoding failed: {e}")))?;
        evaluated.push(token);
    }
    // Kept for the next prompt (a cache that cannot be read is only not kept).
    if let Ok(state) = ctx.state_seq_get(0, LlamaStateSeqFlags::empty())
        && let Ok(mut slot) = loaded.prefix.lock()
    {
        *slot = Some(Prefix {
            tokens: evaluated,
            state,
        });
    }
    let rest = text.finish();
    if !rest.is_empty() && finish != Finish::Cancelled && !on_piece(&rest) {
        finish = Finish::Cancelled;
    }
    Ok(GenStats {
        prompt_tokens: n_prompt,
        cached_tokens: cached,
        completion_tokens: generated,
        finish,
        prompt_time,
        prompt_eval_time,
        first_token,
        gen_time: gen_started.map(|t| t.elapsed()).unwrap_or_default(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::Utf8Buf;

    #[test]
    fn utf8_is_not_split_across_pieces() {
        let mut b = Utf8Buf::default();
        let e = "é".as_bytes();
        assert_eq!(b.push(b"a"), "a");
        assert_eq!(b.push(&e[..1]), "");
        assert_eq!(b.push(&e[1..]), "é");
        assert_eq!(b.push(&[0xff, b'x']), "\u{fffd}x");
        assert_eq!(b.push(&e[..1]), "");
        assert_eq!(b.finish(), "\u{fffd}");
    }
}
