"""GPTQ rounding of linear-layer weights (`weights ... gptq` in the quantize block).

Rounding each weight to its nearest grid point minimises the weights' error, but a layer's output error is
(w - q) . x, and the inputs x are correlated. GPTQ (Frantar et al., "GPTQ: Accurate Post-Training Quantization for
Generative Pre-trained Transformers", ICLR 2023) rounds the input channels of a layer one at a time and moves each
one's rounding error onto the channels not yet rounded, in proportion to the inverse of H = E[x x^T] (here from the
calibration pass's layer inputs). The grids are the same as nearest rounding's (kernels unchanged, only which integers
the weights are): int8 per output row; int4 per group, each group's scale chosen (as in quantize.weights_q4) on the
weights as they are when the pass reaches the group (group_scale, which nearest rounding uses too). Compile time only; deterministic (float64 numpy).
"""
from __future__ import annotations

import numpy as np

from ..kernels.layout import Q4_EMAX, Q4_MAX, Q4_MIN, q4_groups

DAMP = 0.01  # added to H's diagonal, as a share of its mean: keeps the inverse stable (the paper's default)
Q4_CLIPS = np.linspace(0.5, 1.0, 26)  # the group ranges the int4 search tries, as fractions of the group's max


class Hessians:
    """Observer of the calibration pass: sum of x x^T and the count of rows per input tensor name."""

    def __init__(self, names: set[str]):
        self.names = names
        self.sums: dict[str, np.ndarray] = {}
        self.rows: dict[str, int] = {}

    def __call__(self, name: str, a: np.ndarray) -> None:
        if name not in self.names:
            return
        x = np.asarray(a, np.float64).reshape(-1, a.shape[-1])
        self.sums[name] = self.sums.get(name, 0.0) + x.T @ x
        self.rows[name] = self.rows.get(name, 0) + x.shape[0]

    def mean(self, name: str) -> np.ndarray:
        return self.sums[name] / max(self.rows[name], 1)


def _inverse_factor(h: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(w with dead input channels zeroed, the upper Cholesky factor of (H + damping)^-1)."""
    h = np.array(h, np.float64)
    w = np.array(w, np.float64)
    dead = np.diag(h) == 0  # a channel that is always 0 cannot matter: any weight will do
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    h[np.diag_indices_from(h)] += DAMP * float(np.mean(np.diag(h)))
    hinv = np.linalg.inv(h)
    hinv = (hinv + hinv.T) / 2
    return w, np.linalg.cholesky(hinv).T


def _spread(w: np.ndarray, u: np.ndarray, i: int, q_real: np.ndarray) -> None:
    """Column i is now q_real: its error, scaled by the factor's diagonal, moves onto columns i+1.. (in place)."""
    err = (w[:, i] - q_real) / u[i, i]
    w[:, i + 1:] -= np.outer(err, u[i, i + 1:])


def gptq_int8(w: np.ndarray, h: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8 with GPTQ rounding: (q [rows, cols], scale [rows]), the grid of nearest rounding."""
    s = np.abs(np.asarray(w, np.float64)).max(axis=1) / 127.0
    s[s == 0] = 1.0
    w, u = _inverse_factor(h, w)
    q = np.zeros(w.shape, np.int8)
    for i in range(w.shape[1]):
        q[:, i] = np.clip(np.round(w[:, i] / s), -127, 127)
        _spread(w, u, i, q[:, i] * s)
    return q, s


def q4_row_scale(w: np.ndarray) -> np.ndarray:
    """s [rows]: the unit of a row's int4 group scales, so that e = 255 gives the row's largest weight a step of max / 7."""
    s = np.abs(np.asarray(w, np.float64)).max(axis=1) / (Q4_MAX * Q4_EMAX)
    s[s == 0] = 1.0
    return s


def group_scale(wg: np.ndarray, s: np.ndarray) -> np.ndarray:
    """e [rows] (uint8) for one group's weights wg [rows, cols]: the clip (a fraction of the group's largest |w|) of
    least squared error on the grid e * s, ties to the smaller clip."""
    gmax = np.abs(wg).max(axis=1)
    best_err, best_e = np.full(len(wg), np.inf), np.ones(len(wg))
    for f in Q4_CLIPS:
        e = np.clip(np.round(f * gmax / (Q4_MAX * s)), 1, Q4_EMAX)
        step = (e * s)[:, None]
        err = ((np.clip(np.round(wg / step), Q4_MIN, Q4_MAX) * step - wg) ** 2).sum(axis=1)
        better = err < best_err
        best_err, best_e = np.where(better, err, best_err), np.where(better, e, best_e)
    return best_e.astype(np.uint8)


def gptq_q4(w: np.ndarray, h: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int4 per group with GPTQ rounding: (q int8 [rows, cols] in [-8, 7], e uint8 [rows, groups], s [rows]), the
    format of quantize.weights_q4. A row's s comes from the weights before the pass; a group whose updated weights
    outgrow it gets e = 255 and clips."""
    w0 = np.asarray(w, np.float64)
    n_out, n_in = w0.shape
    s = q4_row_scale(w0)
    w, u = _inverse_factor(h, w0)
    q = np.zeros(w.shape, np.int8)
    e = np.ones((n_out, q4_groups(n_in, group)), np.uint8)
    step = s
    for i in range(n_in):
        if i % group == 0:
            e[:, i // group] = group_scale(w[:, i:i + group], s)
            step = e[:, i // group] * s
        q[:, i] = np.clip(np.round(w[:, i] / step), Q4_MIN, Q4_MAX)
        _spread(w, u, i, q[:, i] * step)
    return q, e, s
