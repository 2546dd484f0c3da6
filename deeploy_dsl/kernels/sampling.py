"""Integer sampling of the next token: the numpy twin of kernels_c/sampler.c, bit for bit.

llama2.c samples with float softmax, a sort and a float coin. The device has no float, so:
- the exps are 2^-z in Q15 from the same kind of table as the attention's softmax, z the logit's distance to the
  largest in Q9 log2 units, z = round((max - l) * mult / 2^shift), mult/shift from the logits' scale and T;
- top-p keeps the tokens whose exp is at least a threshold, the largest threshold whose kept mass reaches
  ceil(p * total): a binary search over the 2^15 exp values instead of a sort (ties are kept together), over the
  tokens whose exp is not 0, which the C packs as (e << 16 | token) (a few dozen of 512 at usual temperatures);
- the coin is xorshift32, scaled to the kept mass with a 32 x 32 -> 64-bit product (no division, no modulo bias
  beyond 2^-8 of a token's share with a mass under 2^24).
Temperature 0 is greedy (the argmax, lowest index on ties).
"""
from __future__ import annotations

import math

import numpy as np

EXP_FRAC = 9  # z in Q9 log2 units: 512 table entries per octave
EXP_ONE = 1 << EXP_FRAC
EXP_Q = 15  # exps in Q15: e = 2^15 at the largest logit
Z_MAX = 16 << EXP_FRAC  # 2^-16 is 0 in Q15: farther logits are never drawn
TOP_P_ONE = 1 << 16  # top_p in Q16: 65536 keeps everything
SHIFT = 24  # the multiplier's shift: the product (max - l) * mult is 64-bit in the C
SEED_MIX = 0x9E3779B9  # seeds are mixed so that seed 0 is a valid (non-zero) xorshift state


def exp2_q15() -> np.ndarray:
    """T[k] = round(2^(-k/512) * 2^15), k = 0..511 (uint16)."""
    return np.array([round(2.0 ** (-k / EXP_ONE) * (1 << EXP_Q)) for k in range(EXP_ONE)], dtype=np.uint16)


def temperature_multiplier(logit_scale: float, temperature: float) -> int:
    """mult with z = round((max - l) * mult / 2^SHIFT) = (max - l) * scale / (T ln 2) in Q9: the logits' distance in
    octaves of probability at temperature T."""
    if not (logit_scale > 0 and temperature > 0 and math.isfinite(logit_scale / temperature)):
        raise ValueError(f"sampling needs a positive logit scale and temperature, got {logit_scale}, {temperature}")
    return max(1, min(round(logit_scale / (temperature * math.log(2)) * EXP_ONE * (1 << SHIFT)), (1 << 31) - 1))


def top_p_q16(p: float) -> int:
    return max(1, min(TOP_P_ONE, round(p * TOP_P_ONE)))


def rng_seed(seed: int) -> int:
    """The xorshift32 state for a seed (any uint32): never 0, which xorshift would keep forever."""
    s = (seed ^ SEED_MIX) & 0xFFFFFFFF
    return s or SEED_MIX


def xorshift32(state: int) -> int:
    state ^= (state << 13) & 0xFFFFFFFF
    state ^= state >> 17
    state ^= (state << 5) & 0xFFFFFFFF
    return state


def exps(logits, mult: int) -> np.ndarray:
    """e[i] = 2^(-z_i / 512) in Q15, z_i = (max - l_i) * mult / 2^SHIFT rounded half up; 0 from z = 16 octaves."""
    lg = np.asarray(logits, dtype=np.int64)
    d = (lg.max() - lg).astype(object)  # exact: (max - l) * mult can pass 2^63 in numpy's int64
    z = np.array([min((int(x) * mult + (1 << (SHIFT - 1))) >> SHIFT, Z_MAX) for x in d], dtype=np.int64)
    t = exp2_q15().astype(np.int64)
    return np.where(z >= Z_MAX, 0, t[z & (EXP_ONE - 1)] >> (z >> EXP_FRAC))


VOCAB_MAX = 1 << 16  # a token index fits the low 16 bits of a packed entry


def packed(logits, mult: int) -> np.ndarray:
    """The C's scratch after a call: (e << 16 | i) for the tokens with e > 0, in index order (uint32)."""
    e = exps(logits, mult)
    nz = np.flatnonzero(e)
    return ((e[nz] << 16) | nz).astype(np.uint32)


def threshold(e: np.ndarray, p_q16: int) -> int:
    """The largest t in [1, 2^15] whose kept mass sum(e[e >= t]) reaches ceil(p * total)."""
    total = int(e.sum())
    need = (total * p_q16 + TOP_P_ONE - 1) >> 16
    lo, hi = 1, 1 << EXP_Q  # mass(lo) = total >= need; find the largest t with mass(t) >= need
    while lo < hi:
        mid = (lo + hi + 1) >> 1
        if int(e[e >= mid].sum()) >= need:
            lo = mid
        else:
            hi = mid - 1
    return lo


def sample(logits, mult: int, p_q16: int, state: int) -> tuple[int, int]:
    """(the next token, the new xorshift state). mult 0 means greedy: the argmax, and the state is not drawn from."""
    if mult == 0:
        return int(np.argmax(np.asarray(logits))), state
    e = exps(logits, mult)
    t = threshold(e, p_q16) if p_q16 < TOP_P_ONE else 1
    kept = np.where(e >= t, e, 0)
    state = xorshift32(state)
    target = (state * int(kept.sum())) >> 32  # in [0, mass)
    return int(np.searchsorted(np.cumsum(kept), target, side="right")), state
