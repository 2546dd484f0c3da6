"""Compile-time smoothing (`smooth alpha = A` in the quantize block): rewrites of the float model, exact but for
float rounding, that move activation outliers into the weights before anything is quantized (SmoothQuant,
Xiao et al. 2023), and fold the final norm's gain into the classifier.

Every RMSNorm feeds linear layers only: attn_norm feeds q, k and v, mlp_norm gate and up, the final norm the
classifier. A norm's output channel x_j = n_j * g_j (n the normalised residual, g the gain) reaches those layers
only through W[:, j] * x_j, so dividing g_j by s_j and multiplying every such layer's column W[:, j] by s_j
changes no logit. Per layer norm,

    s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha)

with max|x_j| over the calibration tokens and max|W[:, j]| over all the layers the norm feeds (q, k and v share
one s, as do gate and up): the int8 norm output's channels come closer to one range, the weights' columns move
apart (alpha 0.5 splits the difference). The final norm's gain goes into the classifier whole (s = g, so the
norm has unit gain): the classifier's weights become W * g, which needs a classifier of its own when it is tied
to the embedding. The quantized classifier already is one (a blocked copy of the rows, quantize.linear), so the
build holds no more bytes than without.

With `down = D` (`smooth alpha = 0.5, down = 0.5`), the MLP's hidden activation, the SwiGLU output
h_j = silu(gate_j) * up_j that the down projection reads, is smoothed too: h is linear in up_j, so dividing up's
row j by s_j and multiplying down's column j by it changes no logit, with s_j from max|h_j| and max|W_down[:, j]|
by D (the same formula). Its range per channel is what the int8 SwiGLU output loses most to (on the demo, held out:
KL 0.000137 -> 0.000097 with D = 0.5); the silu reads the gate, which stays as it is.
"""
from __future__ import annotations

from dataclasses import replace

import numpy as np

from ..frontend.spec import Calibration
from ..model.float_model import FloatModel
from ..model.weights import Weights
from .quantize import calibration_pass


class _ChannelMax:
    """Observer: max |x| per channel (the last axis) of the norms' outputs."""

    def __init__(self, names: set[str]):
        self.names, self.top = names, {}

    def __call__(self, name: str, a: np.ndarray) -> None:
        if name in self.names:
            m = np.abs(a.astype(np.float64)).reshape(-1, a.shape[-1]).max(axis=0)
            self.top[name] = np.maximum(self.top.get(name, m), m)


def channel_maxes(fm: FloatModel, cal: Calibration, tokenizer=None) -> dict[str, np.ndarray]:
    """max |x_j| of every layer norm's output and SwiGLU output over the calibration tokens (the pass calibrate()
    makes)."""
    names = {f"layers.{i}.{n}" for i in range(fm.d.layers) for n in ("attn_norm", "mlp_norm", "mlp.swiglu")}
    obs = _ChannelMax(names)
    with np.errstate(over="ignore", invalid="ignore"):  # calibrate() reports an overflow, by the value it starts at
        calibration_pass(fm, cal, tokenizer, obs)
    return obs.top


def smoothing_factors(x_max: np.ndarray, weights: list[np.ndarray], alpha: float) -> np.ndarray:
    """s_j = max|x_j|^alpha / max|W[:, j]|^(1 - alpha) over the layers that read x; 1 for a channel that is zero
    in either (nothing to balance), or whose factor is not a finite positive number."""
    w_max = np.max([np.abs(np.asarray(w, np.float64)).max(axis=0) for w in weights], axis=0)
    x_max = np.asarray(x_max, np.float64)
    with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
        s = x_max ** alpha / w_max ** (1.0 - alpha)
    return np.where((x_max > 0) & (w_max > 0) & np.isfinite(s) & (s > 0), s, 1.0)


def _scaled(g: np.ndarray, s: np.ndarray, *ws: np.ndarray) -> tuple[np.ndarray, ...]:
    """The gain divided by s and each weight's columns multiplied by it, rounded to float32 once."""
    out = [(np.asarray(g, np.float64) / s).astype(np.float32)]
    return tuple(out + [(np.asarray(w, np.float64) * s[None, :]).astype(np.float32) for w in ws])


def _down_scaled(w3: np.ndarray, w2: np.ndarray, s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """up's rows divided by s and down's columns multiplied by it, rounded to float32 once."""
    return ((np.asarray(w3, np.float64) / s[:, None]).astype(np.float32),
            (np.asarray(w2, np.float64) * s[None, :]).astype(np.float32))


def smooth(fm: FloatModel, cal: Calibration, alpha: float, tokenizer=None, down: float | None = None) -> Weights:
    """The weights with every layer norm smoothed into the linear layers it feeds and the final norm's gain folded
    into the classifier, and with `down`, every SwiGLU output into its down projection (module docstring)."""
    x_max = channel_maxes(fm, cal, tokenizer)
    layers = []
    for i, lw in enumerate(fm.w.layers):
        s = smoothing_factors(x_max[f"layers.{i}.attn_norm"], [lw.wq, lw.wk, lw.wv], alpha)
        att_norm, wq, wk, wv = _scaled(lw.att_norm, s, lw.wq, lw.wk, lw.wv)
        s = smoothing_factors(x_max[f"layers.{i}.mlp_norm"], [lw.w1, lw.w3], alpha)
        ffn_norm, w1, w3 = _scaled(lw.ffn_norm, s, lw.w1, lw.w3)
        w2 = lw.w2
        if down is not None:  # the norm's rewrite left h as it was: the pass's max |h_j| still hold
            w3, w2 = _down_scaled(w3, w2, smoothing_factors(x_max[f"layers.{i}.mlp.swiglu"], [w2], down))
        layers.append(replace(lw, att_norm=att_norm, wq=wq, wk=wk, wv=wv, ffn_norm=ffn_norm, w1=w1, w3=w3, w2=w2))
    g = np.asarray(fm.w.final_norm, np.float64)
    s = np.where(g != 0, g, 1.0)  # a zero gain stays: its channel reads nothing
    final_norm, lm_head = _scaled(fm.w.final_norm, s, fm.w.lm_head)
    return replace(fm.w, layers=tuple(layers), final_norm=final_norm, lm_head=lm_head)
