#!/usr/bin/env python3
"""The reference MiniLM sentence embedding, in numpy, for Baton's tests and benchmark.

Torch is not used: the PyPI torch wheel for Linux pulls in gigabytes of CUDA packages. This is
the same computation sentence-transformers runs for all-MiniLM-L6-v2 (BERT encoder, exact erf
GELU, mean pooling over the attention mask, L2 normalisation), written from the HF BERT code,
reading the same model.safetensors and tokenizer.json (HF `tokenizers`, truncation 256).

  reference.py MODEL_DIR embed SENTENCE...   -> JSON: the sentences, their vectors, the cosines
  reference.py MODEL_DIR bench [N] [BATCH]   -> prints "python-reference: S sentences/s"
"""
import json
import math
import sys
import time

import numpy as np
from safetensors.numpy import load_file
from tokenizers import Tokenizer

MAX_LEN = 256


def erf(x):
    # numpy has no erf (the HF "gelu" is the erf form). Abramowitz & Stegun 7.1.26: absolute
    # error below 1.5e-7, under float32's resolution for these activations, and vectorised
    # (math.erf per element made this reference ten times slower than the model itself).
    s = np.sign(x)
    a = np.abs(x)
    t = 1.0 / (1.0 + 0.3275911 * a)
    y = 1.0 - (((((1.061405429 * t - 1.453152027) * t) + 1.421413741) * t - 0.284496736) * t
               + 0.254829592) * t * np.exp(-a * a)
    return (s * y).astype(np.float32)


class MiniLM:
    def __init__(self, model_dir):
        self.w = load_file(f"{model_dir}/model.safetensors")
        cfg = json.load(open(f"{model_dir}/config.json"))
        self.layers = cfg["num_hidden_layers"]
        self.heads = cfg["num_attention_heads"]
        self.eps = cfg["layer_norm_eps"]
        self.tok = Tokenizer.from_file(f"{model_dir}/tokenizer.json")
        self.tok.enable_truncation(MAX_LEN)
        self.tok.enable_padding(pad_id=0, pad_token="[PAD]")

    def ln(self, x, p):
        mu = x.mean(-1, keepdims=True)
        var = ((x - mu) ** 2).mean(-1, keepdims=True)
        return (x - mu) / np.sqrt(var + self.eps) * self.w[p + ".weight"] + self.w[p + ".bias"]

    def lin(self, x, p):
        return x @ self.w[p + ".weight"].T + self.w[p + ".bias"]

    def embed(self, sentences):
        enc = self.tok.encode_batch(sentences)
        ids = np.array([e.ids for e in enc])
        types = np.array([e.type_ids for e in enc])
        mask = np.array([e.attention_mask for e in enc], dtype=np.float32)
        b, n = ids.shape
        w = self.w
        x = (w["embeddings.word_embeddings.weight"][ids]
             + w["embeddings.position_embeddings.weight"][np.arange(n)][None]
             + w["embeddings.token_type_embeddings.weight"][types])
        x = self.ln(x, "embeddings.LayerNorm")
        bias = ((1.0 - mask) * np.finfo(np.float32).min)[:, None, None, :]
        hd = x.shape[-1] // self.heads
        for i in range(self.layers):
            p = f"encoder.layer.{i}."
            def split(t):
                return t.reshape(b, n, self.heads, hd).transpose(0, 2, 1, 3)
            q = split(self.lin(x, p + "attention.self.query"))
            k = split(self.lin(x, p + "attention.self.key"))
            v = split(self.lin(x, p + "attention.self.value"))
            s = q @ k.transpose(0, 1, 3, 2) / math.sqrt(hd) + bias
            s = np.exp(s - s.max(-1, keepdims=True))
            s /= s.sum(-1, keepdims=True)
            a = (s @ v).transpose(0, 2, 1, 3).reshape(b, n, -1)
            x = self.ln(self.lin(a, p + "attention.output.dense") + x, p + "attention.output.LayerNorm")
            h = self.lin(x, p + "intermediate.dense")
            h = 0.5 * h * (1.0 + erf(h / math.sqrt(2.0)))
            x = self.ln(self.lin(h, p + "output.dense") + x, p + "output.LayerNorm")
        pooled = (x * mask[..., None]).sum(1) / np.clip(mask.sum(1, keepdims=True), 1e-9, None)
        return pooled / np.clip(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12, None)


def main():
    model = MiniLM(sys.argv[1])
    if sys.argv[2] == "embed":
        v = model.embed(sys.argv[3:]).astype(np.float64)
        cos = [[round(float(a @ c), 6) for c in v] for a in v]
        print(json.dumps({
            "sentences": sys.argv[3:],
            "vectors": [[round(float(x), 7) for x in r] for r in v],
            "cosine": cos,
        }))
        return
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 256
    batch = int(sys.argv[4]) if len(sys.argv) > 4 else 32
    sentences = [f"Sentence number {i} says something about agents sharing memory." for i in range(n)]
    model.embed(sentences[:batch])  # warm-up
    start = time.perf_counter()
    for i in range(0, n, batch):
        model.embed(sentences[i:i + batch])
    secs = time.perf_counter() - start
    print(f"python-reference: {n / secs:.1f} sentences/s (numpy, batch {batch}, {n} sentences)")


if __name__ == "__main__":
    main()
