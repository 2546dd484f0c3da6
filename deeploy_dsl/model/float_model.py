"""The `float` engine: a numpy float32 Llama, the reference the integer model is measured against.

It runs a chunk of new tokens for a batch of sequences against a KV cache, so the same code serves
teacher-forced evaluation, batched sampling for calibration, and token-by-token generation.
`observe`, when given, receives every named activation (the names of the integer graph's values),
which is how calibration learns activation ranges; `transform`, when given, may replace it (how
`deeploy eval --per-layer` simulates one layer's int8 activations).
"""
from __future__ import annotations

from typing import Callable

import numpy as np

from ..frontend.spec import Dims
from .weights import Weights

Observer = Callable[[str, np.ndarray], None]
Transform = Callable[[str, np.ndarray], np.ndarray]


def rope_angles(d: Dims) -> tuple[np.ndarray, np.ndarray]:
    """cos/sin [context, head_size/2] for interleaved pairs, computed in float64 then rounded once."""
    i = np.arange(0, d.head_size, 2, dtype=np.float64)
    freq = 1.0 / (d.rope_theta ** (i / d.head_size))
    ang = np.outer(np.arange(d.context, dtype=np.float64), freq)
    return np.cos(ang), np.sin(ang)


class FloatModel:
    def __init__(self, w: Weights, d: Dims):
        self.w, self.d = w, d
        cos, sin = rope_angles(d)
        self.cos, self.sin = cos.astype(np.float32), sin.astype(np.float32)

    def new_cache(self, batch: int, length: int | None = None) -> list[np.ndarray]:
        """K and V caches for `length` positions (default: the whole context; calibration needs fewer)."""
        shape = (batch, self.d.context if length is None else length, self.d.kv_dim)
        return [np.zeros(shape, np.float32) for _ in range(2 * self.d.layers)]

    def _norm(self, x: np.ndarray, g: np.ndarray) -> np.ndarray:
        ms = np.mean(x * x, axis=-1, keepdims=True)
        return (x / np.sqrt(ms + np.float32(self.d.norm_eps))) * g

    def _rope(self, x: np.ndarray, start: int) -> np.ndarray:
        b, t, n = x.shape
        hs = self.d.head_size
        x = x.reshape(b, t, n // hs, hs // 2, 2)
        c = self.cos[start:start + t][None, :, None, :]
        s = self.sin[start:start + t][None, :, None, :]
        x0, x1 = x[..., 0], x[..., 1]
        return np.stack([x0 * c - x1 * s, x0 * s + x1 * c], axis=-1).reshape(b, t, n)

    def forward(self, tokens: np.ndarray, start: int, cache: list[np.ndarray],
                observe: Observer | None = None, transform: Transform | None = None) -> np.ndarray:
        """Logits [batch, t, vocab] for tokens [batch, t] at positions start..start+t-1."""
        d, w = self.d, self.w

        def obs(name: str, a: np.ndarray) -> np.ndarray:
            if observe:
                observe(name, a)
            return transform(name, a) if transform else a
        b, t = tokens.shape
        hs, group = d.head_size, d.heads // d.kv_heads
        end = start + t
        x = obs("residual", w.embed[tokens])
        mask = np.triu(np.full((t, end), -np.inf, np.float32), k=start + 1)
        for li, lw in enumerate(w.layers):
            p = f"layers.{li}."
            xb = obs(p + "attn_norm", self._norm(x, lw.att_norm))
            q, k, v = obs(p + "attn.q", xb @ lw.wq.T), obs(p + "attn.k", xb @ lw.wk.T), obs(p + "attn.v", xb @ lw.wv.T)
            q, k = obs(p + "attn.q", self._rope(q, start)), obs(p + "attn.k", self._rope(k, start))
            kc, vc = cache[2 * li], cache[2 * li + 1]
            kc[:, start:end], vc[:, start:end] = k, v
            qh = q.reshape(b, t, d.heads, hs).transpose(0, 2, 1, 3)
            kh = np.repeat(kc[:, :end].reshape(b, end, d.kv_heads, hs).transpose(0, 2, 1, 3), group, axis=1)
            vh = np.repeat(vc[:, :end].reshape(b, end, d.kv_heads, hs).transpose(0, 2, 1, 3), group, axis=1)
            att = qh @ kh.transpose(0, 1, 3, 2) / np.float32(np.sqrt(hs)) + mask
            att = np.exp(att - att.max(axis=-1, keepdims=True))
            att /= att.sum(axis=-1, keepdims=True)
            o = obs(p + "attn.attention", (att @ vh).transpose(0, 2, 1, 3).reshape(b, t, d.dim))
            x = obs("residual", x + o @ lw.wo.T)
            xb = obs(p + "mlp_norm", self._norm(x, lw.ffn_norm))
            g, u = obs(p + "mlp.gate", xb @ lw.w1.T), obs(p + "mlp.up", xb @ lw.w3.T)
            with np.errstate(over="ignore"):  # exp(-g) = inf for g << 0 gives silu -0, as it should
                h = obs(p + "mlp.swiglu", g / (1.0 + np.exp(-g)) * u)
            x = obs("residual", x + h @ lw.w2.T)
        xf = obs("final_norm", self._norm(x, w.final_norm))
        return obs("lm_head", xf @ w.lm_head.T)

    def sample(self, n_seq: int, length: int, seed: int | np.random.SeedSequence, temperature: float = 1.0,
               observe: Observer | None = None) -> np.ndarray:
        """n_seq sequences of `length` ids sampled from BOS (seeded, so calibration is reproducible; `deeploy eval`
        passes a SeedSequence of its own stream)."""
        rng = np.random.default_rng(seed)
        ids = np.ones((n_seq, 1), dtype=np.int64)
        cache = self.new_cache(n_seq, length)
        for pos in range(length - 1):
            logits = self.forward(ids[:, -1:], pos, cache, observe)[:, -1].astype(np.float64) / temperature
            p = np.exp(logits - logits.max(axis=-1, keepdims=True))
            cdf = np.cumsum(p / p.sum(axis=-1, keepdims=True), axis=-1)
            nxt = np.minimum((cdf < rng.random((n_seq, 1))).sum(axis=-1), self.d.vocab - 1)
            ids = np.concatenate([ids, nxt[:, None]], axis=1)
        return ids

    def generate(self, prompt_ids: list[int], n_new: int, stop_ids: tuple[int, ...] = ()) -> tuple[list[int], np.ndarray]:
        """Greedy continuation of prompt_ids: (new ids, logits [steps, vocab] of every step)."""
        cache = self.new_cache(1)
        ids, all_logits = list(prompt_ids), []
        pos = 0
        while len(ids) - len(prompt_ids) < n_new and pos < self.d.context:
            logits = self.forward(np.array([[ids[pos]]]), pos, cache)[0, -1]
            all_logits.append(logits)
            pos += 1
            if pos < len(ids):
                continue  # still consuming the prompt
            nxt = int(np.argmax(logits))
            if nxt in stop_ids:
                break
            ids.append(nxt)
        return ids[len(prompt_ids):], np.array(all_logits)
