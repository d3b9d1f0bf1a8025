//! The BERT encoder of MiniLM, on the CPU: weights read from `model.safetensors` (f32) once, a
//! forward pass over sequences of any lengths without padding (the rows of every sequence are
//! stacked for the linear layers; attention runs per sequence), in the kernels of
//! [`crate::kernel`]. The arithmetic is BERT's as `transformers` defines it: embeddings (word +
//! position + token type) and LayerNorm, then per layer self-attention (scaled dot products,
//! softmax), a residual and LayerNorm, a GELU feed-forward, a residual and LayerNorm.

use std::path::Path;

use pulp::Arch;
use safetensors::{Dtype, SafeTensors};
use serde::Deserialize;

use crate::Error;
use crate::kernel::{self, Packed, axpy, dot, linear};

/// The fields of `config.json` the forward pass uses.
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Config {
    pub hidden_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub intermediate_size: usize,
    pub max_position_embeddings: usize,
    pub vocab_size: usize,
    pub type_vocab_size: usize,
    #[serde(default = "default_act")]
    pub hidden_act: String,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
    #[serde(default)]
    pub position_embedding_type: Option<String>,
}

fn default_act() -> String {
    "gelu".into()
}

fn default_eps() -> f64 {
    1e-12
}

#[derive(Debug, Clone, Copy)]
enum Activation {
    /// `x·Φ(x)` with the exact normal CDF (`erf`), BERT's `gelu`.
    Gelu,
    /// The tanh approximation (`gelu_new`, `gelu_pytorch_tanh`).
    GeluTanh,
}

/// `y = x·Wᵀ + b` as the checkpoint stores it: `W` is `out × in`, row-major.
struct Linear {
    w: Vec<f32>,
    b: Vec<f32>,
}

impl Linear {
    fn pack(&self) -> Packed {
        Packed::new(&self.w, &self.b)
    }
}

struct Norm {
    gamma: Vec<f32>,
    beta: Vec<f32>,
}

struct Layer {
    /// Query, key and value stacked: one pass over the input makes all three.
    qkv: Packed,
    attn_out: Packed,
    attn_norm: Norm,
    up: Packed,
    down: Packed,
    out_norm: Norm,
}

pub(crate) struct Bert {
    arch: Arch,
    hidden: usize,
    heads: usize,
    inner: usize,
    max_positions: usize,
    eps: f32,
    act: Activation,
    word: Vec<f32>,
    position: Vec<f32>,
    token_type: Vec<f32>,
    emb_norm: Norm,
    layers: Vec<Layer>,
}

/// Reads named f32 tensors of the expected shapes out of a safetensors file.
struct Tensors<'a> {
    file: SafeTensors<'a>,
}

impl Tensors<'_> {
    fn get(&self, name: &str, shape: &[usize]) -> Result<Vec<f32>, String> {
        let t = self
            .file
            .tensor(name)
            .map_err(|_| format!("tensor `{name}` is missing"))?;
        if t.dtype() != Dtype::F32 {
            return Err(format!("tensor `{name}` is {:?}, not F32", t.dtype()));
        }
        if t.shape() != shape {
            return Err(format!(
                "tensor `{name}` has shape {:?}; config.json implies {shape:?}",
                t.shape()
            ));
        }
        Ok(t.data()
            .chunks_exact(4)
            .map(|b| f32::from_le_bytes([b[0], b[1], b[2], b[3]]))
            .collect())
    }

    fn linear(&self, prefix: &str, out: usize, inp: usize) -> Result<Linear, String> {
        Ok(Linear {
            w: self.get(&format!("{prefix}.weight"), &[out, inp])?,
            b: self.get(&format!("{prefix}.bias"), &[out])?,
        })
    }

    fn norm(&self, prefix: &str, dim: usize) -> Result<Norm, String> {
        Ok(Norm {
            gamma: self.get(&format!("{prefix}.weight"), &[dim])?,
            beta: self.get(&format!("{prefix}.bias"), &[dim])?,
        })
    }
}

impl Bert {
    /// Checks `config` against what is implemented ([`Error::Unsupported`]), then reads the
    /// weights from `bytes`, the contents of `model.safetensors` at `path` ([`Error::Broken`]
    /// naming the tensor that is missing or of the wrong shape).
    pub(crate) fn load(config: &Config, bytes: &[u8], path: &Path) -> Result<Bert, Error> {
        let broken = |message: String| Error::Broken {
            path: path.to_path_buf(),
            message,
        };
        let act = match config.hidden_act.as_str() {
            "gelu" => Activation::Gelu,
            "gelu_new" | "gelu_pytorch_tanh" => Activation::GeluTanh,
            other => {
                return Err(Error::Unsupported(format!(
                    "config.json asks for the activation `{other}`; gelu, gelu_new and gelu_pytorch_tanh are implemented"
                )));
            }
        };
        if let Some(p) = config
            .position_embedding_type
            .as_deref()
            .filter(|p| *p != "absolute")
        {
            return Err(Error::Unsupported(format!(
                "config.json asks for `{p}` position embeddings; only `absolute` is implemented"
            )));
        }
        let h = config.hidden_size;
        if config.num_attention_heads == 0 || !h.is_multiple_of(config.num_attention_heads) {
            return Err(Error::Unsupported(format!(
                "hidden_size {h} is not a multiple of num_attention_heads {}",
                config.num_attention_heads
            )));
        }
        let file = SafeTensors::deserialize(bytes).map_err(|e| broken(e.to_string()))?;
        let t = Tensors { file };
        // Checkpoints saved from `BertModel` have no prefix; from `BertForMaskedLM` etc. `bert.`.
        let prefix = if t
            .file
            .tensor("bert.embeddings.word_embeddings.weight")
            .is_ok()
        {
            "bert."
        } else {
            ""
        };
        let inner = config.intermediate_size;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for i in 0..config.num_hidden_layers {
            let p = format!("{prefix}encoder.layer.{i}");
            let q = t
                .linear(&format!("{p}.attention.self.query"), h, h)
                .map_err(broken)?;
            let k = t
                .linear(&format!("{p}.attention.self.key"), h, h)
                .map_err(broken)?;
            let v = t
                .linear(&format!("{p}.attention.self.value"), h, h)
                .map_err(broken)?;
            layers.push(Layer {
                qkv: Linear {
                    w: [q.w, k.w, v.w].concat(),
                    b: [q.b, k.b, v.b].concat(),
                }
                .pack(),
                attn_out: t
                    .linear(&format!("{p}.attention.output.dense"), h, h)
                    .map_err(broken)?
                    .pack(),
                attn_norm: t
                    .norm(&format!("{p}.attention.output.LayerNorm"), h)
                    .map_err(broken)?,
                up: t
                    .linear(&format!("{p}.intermediate.dense"), inner, h)
                    .map_err(broken)?
                    .pack(),
                down: t
                    .linear(&format!("{p}.output.dense"), h, inner)
                    .map_err(broken)?
                    .pack(),
                out_norm: t
                    .norm(&format!("{p}.output.LayerNorm"), h)
                    .map_err(broken)?,
            });
        }
        let e = format!("{prefix}embeddings");
        Ok(Bert {
            arch: Arch::new(),
            hidden: h,
            heads: config.num_attention_heads,
            inner,
            max_positions: config.max_position_embeddings,
            eps: config.layer_norm_eps as f32,
            act,
            word: t
                .get(
                    &format!("{e}.word_embeddings.weight"),
                    &[config.vocab_size, h],
                )
                .map_err(broken)?,
            position: t
                .get(
                    &format!("{e}.position_embeddings.weight"),
                    &[config.max_position_embeddings, h],
                )
                .map_err(broken)?,
            token_type: t
                .get(
                    &format!("{e}.token_type_embeddings.weight"),
                    &[config.type_vocab_size, h],
                )
                .map_err(broken)?,
            emb_norm: t.norm(&format!("{e}.LayerNorm"), h).map_err(broken)?,
            layers,
        })
    }

    /// The last hidden state of each sequence (`len × hidden`, row-major), for sequences given
    /// as (token ids, token type ids) of equal lengths. An id out of the vocabulary, a type out
    /// of range or a sequence longer than the position table is an error.
    pub(crate) fn forward(&self, seqs: &[(&[u32], &[u32])]) -> Result<Vec<Vec<f32>>, Error> {
        let h = self.hidden;
        let total: usize = seqs.iter().map(|(ids, _)| ids.len()).sum();
        let mut x = vec![0.0f32; total * h];
        let mut row = 0;
        for (ids, types) in seqs {
            if ids.len() > self.max_positions {
                return Err(Error::Inference(format!(
                    "a sequence of {} tokens is longer than the model's {} positions",
                    ids.len(),
                    self.max_positions
                )));
            }
            for (pos, (&id, &ty)) in ids.iter().zip(types.iter()).enumerate() {
                let word = self.row(&self.word, id, "token id")?;
                let ty = self.row(&self.token_type, ty, "token type")?;
                let p = &self.position[pos * h..(pos + 1) * h];
                let out = &mut x[row * h..(row + 1) * h];
                for (((o, a), b), c) in out.iter_mut().zip(word).zip(p).zip(ty) {
                    *o = a + b + c;
                }
                row += 1;
            }
        }
        layer_norm(&mut x, h, &self.emb_norm, self.eps);
        let mut qkv = vec![0.0f32; total * 3 * h];
        let mut ctx = vec![0.0f32; total * h];
        let mut attn = vec![0.0f32; total * h];
        let mut up = vec![0.0f32; total * self.inner];
        let mut down = vec![0.0f32; total * h];
        for layer in &self.layers {
            linear(self.arch, &x, &layer.qkv, &mut qkv);
            let mut start = 0;
            for (ids, _) in seqs {
                let n = ids.len();
                self.attention(
                    &qkv[start * 3 * h..(start + n) * 3 * h],
                    &mut ctx[start * h..(start + n) * h],
                    n,
                );
                start += n;
            }
            linear(self.arch, &ctx, &layer.attn_out, &mut attn);
            attn.iter_mut().zip(&x).for_each(|(a, r)| *a += r);
            layer_norm(&mut attn, h, &layer.attn_norm, self.eps);
            linear(self.arch, &attn, &layer.up, &mut up);
            match self.act {
                Activation::Gelu => kernel::gelu(self.arch, &mut up),
                Activation::GeluTanh => up.iter_mut().for_each(|v| *v = gelu_tanh(*v)),
            }
            linear(self.arch, &up, &layer.down, &mut down);
            down.iter_mut().zip(&attn).for_each(|(d, r)| *d += r);
            layer_norm(&mut down, h, &layer.out_norm, self.eps);
            std::mem::swap(&mut x, &mut down);
        }
        let mut out = Vec::with_capacity(seqs.len());
        let mut start = 0;
        for (ids, _) in seqs {
            let n = ids.len();
            out.push(x[start * h..(start + n) * h].to_vec());
            start += n;
        }
        Ok(out)
    }

    fn row<'a>(&self, table: &'a [f32], i: u32, what: &str) -> Result<&'a [f32], Error> {
        let h = self.hidden;
        let i = i as usize;
        table
            .get(i * h..(i + 1) * h)
            .ok_or_else(|| Error::Inference(format!("{what} {i} is outside the model's table")))
    }

    /// Multi-head self-attention of one sequence of `n` tokens: `qkv` holds each token's query,
    /// key and value side by side (`n × 3h`); the context vectors go to `ctx` (`n × h`).
    fn attention(&self, qkv: &[f32], ctx: &mut [f32], n: usize) {
        let h = self.hidden;
        let d = h / self.heads;
        let scale = 1.0 / (d as f32).sqrt();
        let mut scores = vec![0.0f32; n];
        ctx.iter_mut().for_each(|c| *c = 0.0);
        for head in 0..self.heads {
            let at = |t: usize, part: usize| {
                let s = t * 3 * h + part * h + head * d;
                &qkv[s..s + d]
            };
            for i in 0..n {
                let q = at(i, 0);
                for (j, s) in scores.iter_mut().enumerate() {
                    *s = dot(self.arch, q, at(j, 1)) * scale;
                }
                let max = scores.iter().copied().fold(f32::NEG_INFINITY, f32::max);
                let mut sum = 0.0;
                for s in &mut scores {
                    *s = (*s - max).exp();
                    sum += *s;
                }
                let out = &mut ctx[i * h + head * d..i * h + (head + 1) * d];
                for (j, s) in scores.iter().enumerate() {
                    axpy(self.arch, s / sum, at(j, 2), out);
                }
            }
        }
    }
}

/// LayerNorm over each `dim`-long row of `x`, in place.
fn layer_norm(x: &mut [f32], dim: usize, norm: &Norm, eps: f32) {
    for row in x.chunks_exact_mut(dim) {
        let mean = row.iter().sum::<f32>() / dim as f32;
        let var = row.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / dim as f32;
        let inv = 1.0 / (var + eps).sqrt();
        for ((v, g), b) in row.iter_mut().zip(&norm.gamma).zip(&norm.beta) {
            *v = (*v - mean) * inv * g + b;
        }
    }
}

fn gelu_tanh(x: f32) -> f32 {
    const C: f32 = 0.797_884_6; // sqrt(2/pi)
    0.5 * x * (1.0 + (C * (x + 0.044_715 * x * x * x)).tanh())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn gelu_matches_known_values() {
        // torch.nn.functional.gelu at -1, 0, 1, 2.
        let mut x = vec![-1.0, 0.0, 1.0, 2.0];
        kernel::gelu(Arch::new(), &mut x);
        for (got, want) in x.iter().zip([-0.158_655_25, 0.0, 0.841_344_7, 1.954_5]) {
            assert!((got - want).abs() < 1e-4, "{x:?}");
        }
        assert!((gelu_tanh(1.0) - 0.841_192).abs() < 1e-4);
    }

    #[test]
    fn layer_norm_centres_and_scales() {
        let mut x = vec![1.0, 2.0, 3.0, 4.0];
        let norm = Norm {
            gamma: vec![1.0; 4],
            beta: vec![0.5; 4],
        };
        layer_norm(&mut x, 4, &norm, 1e-12);
        let mean: f32 = x.iter().sum::<f32>() / 4.0;
        assert!((mean - 0.5).abs() < 1e-5, "{x:?}");
        assert!(
            (x[3] - x[0] - 2.0 * 3.0 / 5.0f32.sqrt()).abs() < 1e-4,
            "{x:?}"
        );
    }
}
