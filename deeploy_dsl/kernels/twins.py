"""Numpy twins of the C kernels in `kernels_c/`: the definition of deeploy's integer arithmetic.

Every function here computes exactly the integers its C twin computes (tests compare them bit for
bit). Conventions shared with C:
  * rounding: `rshift_round` and `requant` round half away from zero (like `round()` in C, not banker's
    rounding), except the linear layers (`linear`, `requant_half_up`: gemv_i8/i16/i32 and linear_i8/i16/i32),
    which round half up, floor(v + 1/2). The reason is speed: with a shift s >= 33 the half-up result is
    (mulh(acc, mult) + 2^(s-33)) >> (s-32), the high word of the product only, while half away from zero
    also needs to know whether a negative product has a zero low word (a branch). Every output row of every
    linear layer is requantized (~3,500 rows per token): ~8 RV32 instructions per row instead of ~14. The
    two differ only on exact ties of negative values (v = -n - 1/2, half up gives -n), which are rare with
    30-bit multipliers and no less accurate;
  * requantization: `acc * mult >> shift` in 64-bit, `mult` in [2^30, 2^31) from `quantize_multiplier`,
    then saturate. Linear layers have one shift per layer and a multiplier per output row
    (`layer_multipliers`: the largest row's in [2^30, 2^31), smaller rows' smaller);
  * `>>` on negative values is arithmetic (numpy does this; gcc documents it for signed types).
"""
from __future__ import annotations

import math

import numpy as np

from .layout import NPU_K, npu_k_blocks

I8 = (-128, 127)
I16 = (-32768, 32767)
I32 = (-(2**31), 2**31 - 1)
Q12 = (-2047, 2047)  # int12 queries (stored in int16): RoPE on q saturates to 12 bits, symmetric (qk_head_size_max)

ROPE_FRAC = 14  # sin/cos tables are Q14
EXP_FRAC = 9  # softmax works on log2 distances in Q9
EXP_ONE = 1 << EXP_FRAC  # entries of the exp table: one per 1/512 of an octave (1 KiB of uint16)
K16_SCORE_SHIFT = 8  # int16 keys: scores are round_half_up(q . k / 2^8), the int8 keys' score domain
QK_BITS = {"int8": 8, "int12": 12, "int16": 16}  # the widths of q (quantize `queries`) and k (`keys`)
QK_MAX = {8: 128, 12: 2047, 16: 32768}  # the largest |q| or |k| of a width (int12: Q12, symmetric)
EXP_SHIFT_MAX = 19  # score multipliers' shift: keeps the C's z computation within 32 bits
RMS_MIN = 256  # rmsnorm clamps rms*256 from below so the 64-bit product cannot overflow
RMS_INV_SHIFT = 39


def rshift_round(v, s: int):
    """v / 2^s rounded half away from zero (v is int64, s >= 0)."""
    v = np.asarray(v, dtype=np.int64)
    if s == 0:
        return v
    return (v + (np.int64(1) << (s - 1)) - (v < 0)) >> s


def quantize_multiplier(real: float) -> tuple[int, int]:
    """Split a positive real factor into (mult, shift) with real ~= mult / 2^shift, mult < 2^31."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"requantization factor must be positive and finite, got {real}")
    mant, exp = math.frexp(real)  # real = mant * 2^exp, mant in [0.5, 1)
    mult = round(mant * (1 << 31))
    if mult == 1 << 31:
        mult //= 2
        exp += 1
    shift = 31 - exp
    if shift > 62:  # tiny factor: give up mantissa bits rather than shift past int64
        mult = int(rshift_round(mult, shift - 62))
        shift = 62
    if shift < 0:
        raise ValueError(f"requantization factor {real} is too large (>= 2^31)")
    return int(mult), int(shift)


def requant(acc, mult, shift, lo: int, hi: int):
    """saturate(round(acc * mult / 2^shift)); mult/shift may be per-element arrays."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    v = acc * mult
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    out = (v + half - ((v < 0) & (shift > 0))) >> shift
    return np.clip(out, lo, hi)


def layer_multipliers(reals) -> tuple[np.ndarray, int]:
    """One shift for all rows of a linear layer, a multiplier per row: real[o] ~= mult[o] / 2^shift.

    The shift is the largest that keeps every mult < 2^31, so the largest factor gets a mult in [2^30, 2^31)
    and a row with an r times smaller factor keeps about 31 - log2(r) significant bits (stories260K: r < 22,
    >= 25.6 bits). The kernels are fastest for shift >= 33 (factors < 1/4: in stories260K all but mlp.down,
    one attn.o and lm_head); smaller shifts cost 3 instructions more per row (gemv.c). Returns (mult, shift).
    """
    r = np.atleast_1d(np.asarray(reals, dtype=np.float64))
    if r.size == 0:
        return np.zeros(0, np.int32), 0
    if not (np.all(r > 0) and np.all(np.isfinite(r))):
        bad = r[~(np.isfinite(r) & (r > 0))][:3]
        raise ValueError(f"requantization factors must be positive and finite, got {bad}")
    shift = 31 - math.frexp(float(r.max()))[1]  # max(r) * 2^shift in [2^30, 2^31)
    shift = min(shift, 62)
    mult = [round(float(v) * 2.0 ** shift) for v in r]  # exact: v * 2^shift < 2^31 is a float with 53 bits
    if max(mult) >= 1 << 31:  # rounded up to 2^31
        shift -= 1
        mult = [round(float(v) * 2.0 ** shift) for v in r]
    if shift < 0:
        raise ValueError(f"requantization factor {float(r.max())} is too large (>= 2^31)")
    return np.array(mult, np.int32), int(shift)


def requant_half_up(acc, mult, shift, lo: int, hi: int):
    """saturate(floor(acc * mult / 2^shift + 1/2)), 0 <= shift <= 62: rounding half up (linear layers)."""
    acc = np.asarray(acc, dtype=np.int64)
    mult = np.asarray(mult, dtype=np.int64)
    shift = np.asarray(shift, dtype=np.int64)
    half = np.where(shift > 0, np.int64(1) << np.maximum(shift - 1, 0), 0)
    return np.clip((acc * mult + half) >> shift, lo, hi)


def linear(x, w, mult, shift: int, lo: int, hi: int):
    """y[o] = sat(floor(sum_i w[o,i] * x[i] * mult[o] / 2^shift + 1/2)); x int8 [in], w int8 [out, in].

    One shift for the layer (the C kernels take a per-row shift array for the tiles' DMA and read shift[0]).
    """
    if np.ndim(shift) != 0:
        raise ValueError("linear takes the layer's one shift (the C kernels read shift[0]), not an array")
    acc = w.astype(np.int64) @ np.asarray(x, dtype=np.int64)
    return requant_half_up(acc, mult, int(shift), lo, hi)


def linear_q4(x, q, e, group: int, mult, shift: int, lo: int, hi: int):
    """int4 weights with a scale per group of `group` input channels (gemv_q4_i8/i16/i32):
    y[o] = sat(floor(sum_i q[o,i] * e[o, i // group] * x[i] * mult[o] / 2^shift + 1/2)); q in [-8, 7] [out, in],
    e uint8 [out, ceil(in / group)]. The same as `linear` with the integer weights q * e."""
    q = np.asarray(q, np.int64)
    w = q * np.repeat(np.asarray(e, np.int64), group, axis=1)[:, : q.shape[1]]
    return linear(x, w, mult, shift, lo, hi)


def isqrt64(n: int) -> int:
    """floor(sqrt(n)) for 0 <= n < 2^63, the same bit-by-bit method the C uses."""
    return math.isqrt(int(n))


def rmsnorm(x, gain, gain_shift: int, eps_q: int):
    """y[i] = sat8(x[i] / rms(x) * gain[i] / 2^gain_shift); x int16 [dim], gain int32 [dim].

    rms is computed as r = isqrt(sum(x^2) * 2^16 / dim + eps_q), i.e. rms * 256 in x's units.
    """
    x = np.asarray(x, dtype=np.int64)
    dim = x.shape[0]
    ss = int(np.dot(x, x))
    r = max(isqrt64((ss << 16) // dim + eps_q), RMS_MIN)
    inv = (1 << RMS_INV_SHIFT) // r
    t = x * np.asarray(gain, dtype=np.int64)
    return np.clip(rshift_round(t * inv, RMS_INV_SHIFT - 8 + gain_shift), *I8)


def rope(x, pos: int, cos_t, sin_t, head_size: int, bounds=I8):
    """Rotate interleaved pairs (2i, 2i+1) of every head by pos*theta_i; Q14 tables [ctx, hs/2]. Saturates to
    `bounds`: int8 (rope_i8), I16 (rope_i16, the int16 keys and queries) or Q12 (rope_q12, the int12 queries)."""
    x = np.asarray(x, dtype=np.int64).reshape(-1, head_size // 2, 2)
    c = np.asarray(cos_t[pos], dtype=np.int64)
    s = np.asarray(sin_t[pos], dtype=np.int64)
    x0, x1 = x[..., 0], x[..., 1]
    y0 = rshift_round(x0 * c - x1 * s, ROPE_FRAC)
    y1 = rshift_round(x0 * s + x1 * c, ROPE_FRAC)
    return np.clip(np.stack([y0, y1], axis=-1).reshape(-1), *bounds)


def rope_i16(x, pos: int, cos_t, sin_t, head_size: int):
    """rope on int16 values (the int16 keys): the same formula, int16 saturation."""
    return rope(x, pos, cos_t, sin_t, head_size, I16)


def rope_q12(x, pos: int, cos_t, sin_t, head_size: int):
    """rope on int16 values into int12 queries: the same formula, saturating to Q12 (+-2047)."""
    return rope(x, pos, cos_t, sin_t, head_size, Q12)


def exp_bits(context: int) -> int:
    """Bits of the exps (Q format of 1.0): the largest that keeps sum_t e_t * v_t within int32 over the
    whole context (|v| <= 2^7), at most 15."""
    return min(15, 24 - max(context - 1, 1).bit_length())


def exp2_table(bits: int = 15) -> np.ndarray:
    """T[k] = round(2^(-k/512) * 2^bits), k = 0..511: the only table behind the integer exp (uint16)."""
    return np.array([round(2.0 ** (-k / EXP_ONE) * (1 << bits)) for k in range(EXP_ONE)], dtype=np.uint16)


def score_multiplier(real: float) -> tuple[int, int, int]:
    """(mult, shift, cut) for z = round(d * real) in Q9 log2 units of a score distance d >= 0.

    shift <= 19 keeps d * mult + 2^(shift-1) below 2^32 for every d <= cut, the largest d whose z is below
    16 * 2^9 (farther, 2^-z is 0 in Q15): the C computes z in 32 bits and skips the rest."""
    if not real > 0 or not math.isfinite(real):
        raise ValueError(f"score scale must be positive and finite, got {real}")
    shift = EXP_SHIFT_MAX
    mult = round(real * (1 << shift))
    if mult >= 1 << 31:
        raise ValueError(f"score scale {real} is too large")
    mult = max(mult, 1)
    limit = (16 << EXP_FRAC << shift) - (1 << (shift - 1))  # z(d) < 16 * 2^9  <=>  d * mult < limit
    # distances are below hs * 2^15 < 2^31, so a cut past INT32_MAX is never reached: keep it a C int32
    return int(mult), int(shift), min(int(-(-limit // mult) - 1), 2**31 - 1)


def softmax_exp(scores, mult: int, shift: int, table):
    """e[t] = 2^(-z_t / 2^9) in the table's Q format, z_t = round((max - s_t) * mult / 2^shift); the exps of
    one head's scores, unnormalised (the output stage divides by their sum). Zero once z_t >= 16 * 2^9."""
    s = np.asarray(scores, dtype=np.int64)
    z = ((s.max() - s) * mult + (1 << (shift - 1))) >> shift
    t = np.asarray(table, dtype=np.int64)
    ip = np.minimum(z >> EXP_FRAC, 16)
    return np.where(ip >= 16, 0, t[z & (EXP_ONE - 1)] >> ip)


def k_shift(k) -> int:
    """The scores' shift for keys of k's dtype and int8 queries: K16_SCORE_SHIFT for int16 keys, 0 for int8."""
    return K16_SCORE_SHIFT if np.asarray(k).dtype == np.int16 else 0


def score_shift(q_bits: int, k_bits: int) -> int:
    """The scores' shift for q and k of these widths: the bits both carry beyond int8, so that every width gives
    scores in int8 x int8 units (|s| <= hs * 2^14: the exp's 32-bit z computation holds, kernels.score_multiplier)."""
    return q_bits + k_bits - 16


def qk_head_size_max(q_bits: int, k_bits: int) -> int:
    """The largest head size whose q . k sums, plus the rounding's 2^(shift-1), stay within int32 (the score kernels
    add hs products in 32 bits before they shift): hs * max|q| * max|k| + 2^(shift-1) <= 2^31 - 1, with max|q|,
    max|k| = 128 (int8: -128 * -128), 2047 (int12 queries: RoPE saturates them to +-2047) and 32768 (int16). Every
    partial sum is within the same bound, so no intermediate overflows either. int8 q, int8 k: 131,071; int8 q,
    int16 k: 511 (as int16 q, int8 k); int12 q, int8 k: 8,196; int12 q, int16 k: 32 (2047 rather than 2048 is what
    admits 32); int16 q, int16 k: 1, no Llama head."""
    sh = score_shift(q_bits, k_bits)
    return (I32[1] - ((1 << sh) >> 1)) // (QK_MAX[q_bits] * QK_MAX[k_bits])


def attn_scores(q, k, shift: int | None = None):
    """scores[h, t] = q[h] . k[t] for the g query heads sharing one kv head; q [g*hs], k [n_t, hs] -> [g, n_t].
    int16 keys (shift None: from k's dtype, k_shift): round_half_up(q[h] . k[t] / 2^8), floor(v / 2^8 + 1/2),
    so that the scores keep int8 keys' range (|s| <= hs * 2^14) and the exp's 32-bit z computation holds; wider
    queries: round_half_up(q[h] . k[t] / 2^shift), shift = score_shift(q bits, k bits)."""
    sh = k_shift(k) if shift is None else shift
    k = np.asarray(k, dtype=np.int64)
    s = np.asarray(q, dtype=np.int64).reshape(-1, k.shape[1]) @ k.T
    return (s + (1 << (sh - 1))) >> sh if sh else s


def softmax_exp_rows(scores, mult: int, shift: int, table):
    """softmax_exp of each row of scores [g, n] -> (e [g, n], their row sums [g])."""
    e = np.stack([softmax_exp(row, mult, shift, table) for row in np.asarray(scores, dtype=np.int64)])
    return e, e.sum(axis=1)


def attn_av(p, v):
    """acc[h, d] = sum_t p[h, t] * v[t, d]; p [g, n_t], v [n_t, hs] -> [g, hs]."""
    return np.asarray(p, dtype=np.int64) @ np.asarray(v, dtype=np.int64)


def attn_out(acc, sums, mult: int, shift: int, bits: int):
    """out[h, d] = sat8(round(acc[h, d] * m_h / 2^shift)), m_h = floor(mult * 2^bits / sum_h): the weighted
    sum divided by the head's exp sum and rescaled, with one division per head (acc [g, hs], sums [g])."""
    acc = np.asarray(acc, dtype=np.int64)
    m = (np.int64(mult) << bits) // np.asarray(sums, dtype=np.int64)
    return requant(acc * m[:, None], 1, shift, *I8)


def attention(q, k_cache, v_cache, pos: int, n_heads: int, n_kv_heads: int, head_size: int,
              score_mult: int, score_shift: int, score_cut: int, out_mult: int, out_shift: int, table,
              qk_shift: int | None = None):
    """Causal grouped-query attention of one query position over cache rows 0..pos, int8 out; the K cache
    int8 (attention_i8) or int16 (attention_k16: scores / 2^8, attn_scores), from its dtype, int8 queries. Wider
    queries (attention_q12, _q12k16, _q16: int16 storage) give the scores' shift `qk_shift` (score_shift).

    Query heads h in [kh*g, (kh+1)*g), g = n_heads / n_kv_heads, share kv head kh. `score_cut` only lets
    the C skip exps that are zero; the integers do not depend on it. The table's Q format is its first entry.
    """
    del score_cut
    bits = int(table[0]).bit_length() - 1
    ks = k_shift(k_cache) if qk_shift is None else qk_shift
    q = np.asarray(q, dtype=np.int64).reshape(n_kv_heads, -1)  # row kh: the g query heads of kv head kh
    kv_dim = n_kv_heads * head_size
    k = np.asarray(k_cache, dtype=np.int64).reshape(-1, kv_dim)[: pos + 1].reshape(pos + 1, n_kv_heads, head_size)
    v = np.asarray(v_cache, dtype=np.int64).reshape(-1, kv_dim)[: pos + 1].reshape(pos + 1, n_kv_heads, head_size)
    out = np.empty((n_kv_heads, n_heads // n_kv_heads * head_size), dtype=np.int64)
    for kh in range(n_kv_heads):
        e, sums = softmax_exp_rows(attn_scores(q[kh], k[:, kh, :], ks), score_mult, score_shift, table)
        out[kh] = attn_out(attn_av(e, v[:, kh, :]), sums, out_mult, out_shift, bits).reshape(-1)
    return out.reshape(-1)


def swiglu(gate, up, silu_table, mult: int, shift: int):
    """h[i] = sat8(silu(gate[i]) * up[i] * scale); silu comes from a 256-entry int16 table over int8."""
    g = np.asarray(gate, dtype=np.int64) + 128
    acc = np.asarray(silu_table, dtype=np.int64)[g] * np.asarray(up, dtype=np.int64)
    return requant(acc, mult, shift, *I8)


def swiglu_dyn(gate, up, silu_table, base_shift: int):
    """SwiGLU with a per-token scale (`dynamic swiglu`): the products p[i] = silu(gate[i]) * up[i] (|p| <= 2^22) are
    shifted right by the smallest k >= 0 that brings them all into int8, rounding half up (as the linear layers):
    h[i] = floor(p[i] / 2^k + 1/2). Returns (h, base_shift - k): the next layer's shift, so that its requantization
    takes the token's scale 2^k back (the down projection's multipliers are made for the unit of p)."""
    g = np.asarray(gate, dtype=np.int64) + 128
    p = np.asarray(silu_table, dtype=np.int64)[g] * np.asarray(up, dtype=np.int64)
    k = 0
    while p.size and (((p + ((1 << k) >> 1)) >> k) > I8[1]).any() | (((p + ((1 << k) >> 1)) >> k) < I8[0]).any():
        k += 1
    return (p + ((1 << k) >> 1)) >> k, base_shift - k


# ---- per-token absmax scales (`dynamic norm`, `dynamic swiglu_absmax`): int8 outputs at their full range ------------
# A producer finds A = max |v| of the token's int32 values v and writes y = round(v * 127 / A) through an integer
# multiplier (absmax_i8); it hands its consumers the token's factor as tok = {m, s}: m a 32-bit mantissa (uint32 bits
# in an int32) and s the consumer's shift for this token, and the consumer GEMV (linear_tok) requantizes each row
# with floor(mult[o] * m / 2^32) and s: one high multiply per row, the inner loops unchanged.
TOK_A_BITS = 15  # the absmax's mantissa a: A <= a * 2^t, a in [2^14, 2^15)
TOK_FWD_SHIFT = 23  # the forward multiplier fm = floor(127 * 2^23 / a) (< 2^16)


def tok_mantissa(amax: int) -> tuple[int, int]:
    """(a, t) with a in [2^14, 2^15) and a * 2^t >= amax, the smallest such: a = ceil(amax / 2^t) (amax >= 1)."""
    amax = max(int(amax), 1)
    t = amax.bit_length() - TOK_A_BITS
    a = (amax + (1 << t) - 1) >> t if t > 0 else amax << -t
    if a == 1 << TOK_A_BITS:
        a, t = a >> 1, t + 1
    return a, t


def absmax_i8(v, qmax: int = 127):
    """y = floor(v * fm / 2^(23 + t) + 1/2), fm = floor(qmax * 2^23 / a), (a, t) = tok_mantissa(max |v|): |y| <= qmax
    (no saturation: |v| <= a * 2^t). v int32 (|v| < 2^31). Returns (y, a, t); the output's unit is a * 2^t / qmax of
    v's. qmax 127 (int8), or 2047 / 32767 for a wide SwiGLU output (`swiglu int12 | int16`: fm < 2^24, v * fm < 2^55)."""
    v = np.asarray(v, dtype=np.int64)
    a, t = tok_mantissa(int(np.abs(v).max()) if v.size else 0)
    fm = (int(qmax) << TOK_FWD_SHIFT) // a
    s = TOK_FWD_SHIFT + t
    return (v * fm + (1 << (s - 1))) >> s, a, t


# the SwiGLU output's widths (quantize `swiglu`) and the largest |value| of each: the per-token absmax scale's target
SWIGLU_BITS = {"int8": 8, "int12": 12, "int16": 16}
WIDE_MAX = {8: 127, 12: 2047, 16: 32767}


def wide_gemv_n_in_max(bits: int) -> int:
    """The largest n_in whose int32 sums of a wide GEMV hold: n_in * WIDE_MAX[bits] * 127 <= 2^31 - 1 (an int12/int16
    input by int8 weights, gemv_x16_tok; an int8 input within +-127 by int16 weights, gemv_w16_tok): 8,260 and 516."""
    return I32[1] // (WIDE_MAX[bits] * 127)


def tok_factor(p: int, e: int, base_shift: int) -> tuple[int, int]:
    """The token's factor p * 2^e (p >= 1) as {m, s} for a consumer whose multipliers are made for factor 1 and shift
    base_shift: m = p's top 32 bits (truncated), in [2^31, 2^32), as int32 bits, so that p ~ m * 2^(n - 32) with
    n = bitlen(p), and s = base_shift - e - n, the shift that goes with floor(mult * m / 2^32)."""
    n = int(p).bit_length()
    m = p >> (n - 32) if n >= 32 else p << (32 - n)
    return m - (1 << 32), base_shift - e - n


def rmsnorm_tok(x, gain, gain_shift: int, eps_q: int, base_shift: int):
    """RMSNorm with a per-token absmax scale (`dynamic norm`): y = absmax_i8(x * gain) (the rms is common to the
    row, so it only enters the token's factor), tok = tok_factor(a * inv, t - 31 - gain_shift): the output's unit,
    a * 2^t * inv / 2^(31 + gain_shift) / 127 of the calibrated scale's, inv = 2^39 // r as in rmsnorm."""
    x = np.asarray(x, dtype=np.int64)
    ss = int(np.dot(x, x))
    r = max(isqrt64((ss << 16) // x.shape[0] + eps_q), RMS_MIN)
    inv = (1 << RMS_INV_SHIFT) // r
    y, a, t = absmax_i8(x * np.asarray(gain, dtype=np.int64))
    return y, tok_factor(a * inv, t - 31 - gain_shift, base_shift)


def swiglu_tok(gate, up, silu_table, base_shift: int, qmax: int = 127):
    """SwiGLU with a per-token absmax scale (`dynamic swiglu_absmax`): y = absmax_i8(silu(gate) * up, qmax)
    (|p| <= 2^22), tok = tok_factor(a, t): the output's unit a * 2^t / qmax of the products'."""
    g = np.asarray(gate, dtype=np.int64) + 128
    y, a, t = absmax_i8(np.asarray(silu_table, dtype=np.int64)[g] * np.asarray(up, dtype=np.int64), qmax)
    return y, tok_factor(a, t, base_shift)


# ---- int16 gate and up (`gate_up int16`): silu of an int16 gate by a table with linear interpolation ----------------
SILU16_STEP = 7  # the table has an entry every 2^7 gate steps: 2^16 / 2^7 + 1 = 513 int16 entries, both ends included
SILU16_ENTRIES = (1 << (16 - SILU16_STEP)) + 1


def silu16(gate, silu_table):
    """silu of int16 gates from the 513-entry table T over the int16 range (T[j] at gate j * 2^7 - 32768), linearly
    interpolated in integers: j = (g + 32768) >> 7, f = (g + 32768) & 127, silu = T[j] + ((T[j+1] - T[j]) * f + 64) >> 7.
    It lies between T[j] and T[j+1], so within int16."""
    u = np.asarray(gate, dtype=np.int64) + 32768
    t = np.asarray(silu_table, dtype=np.int64)
    j, f = u >> SILU16_STEP, u & ((1 << SILU16_STEP) - 1)
    return t[j] + (((t[j + 1] - t[j]) * f + (1 << (SILU16_STEP - 1))) >> SILU16_STEP)


def swiglu_tok_g16(gate, up, silu_table, base_shift: int, qmax: int = 127):
    """swiglu_tok on int16 gate and up (`gate_up int16`): p = silu16(gate) * up, |p| <= 32768 * 32768 = 2^30, then
    y = absmax_i8(p, qmax), tok = tok_factor(a, t): the output's unit a * 2^t / qmax of the products'."""
    y, a, t = absmax_i8(silu16(gate, silu_table) * np.asarray(up, dtype=np.int64), qmax)
    return y, tok_factor(a, t, base_shift)


TOK_SHIFT_MAX = 62  # a token shift above it drops the multipliers' low bits instead


def tok_multipliers(mult, tok) -> tuple[np.ndarray, int]:
    """The consumer's multipliers and shift for this token: floor(mult[o] * m / 2^32) and s; a shift s > 62 (a token
    of tiny values) becomes 62 with the multipliers shifted right by s - 62."""
    m = int(tok[0]) & 0xFFFFFFFF
    s = int(tok[1])
    m2 = (np.asarray(mult, dtype=np.int64) * m) >> 32
    if s > TOK_SHIFT_MAX:
        m2, s = m2 >> (s - TOK_SHIFT_MAX), TOK_SHIFT_MAX
    return m2, s


def linear_tok(x, w, mult, tok, lo: int, hi: int):
    """`linear` on an input with a per-token factor tok (gemv_tok_*): the multipliers and shift of tok_multipliers."""
    m2, s = tok_multipliers(mult, tok)
    if s < 0:
        raise ValueError(f"a token's shift {s} is negative: the compiler's bound on the token factor does not hold")
    return linear(x, w, m2, s, lo, hi)


def residual_add(x, y):
    """Residual add: sat16(x + y)."""
    return np.clip(np.asarray(x, dtype=np.int64) + np.asarray(y, dtype=np.int64), *I16)


def embed(row, mult: int, shift: int):
    """Residual row of one token from its int8 embedding row: sat16(round(row * mult / 2^shift))."""
    return requant(np.asarray(row, dtype=np.int64), mult, shift, *I16)


def argmax(x) -> int:
    """Index of the largest value; the lowest index wins ties (as the C loop does)."""
    return int(np.argmax(np.asarray(x)))


# ------------------------------------------------------------------------------------------------- NPU
# The int8 pointwise-layer accelerator (kernels_c/npu.h, npu.c): the cluster's linear layers on the NPU, with the
# weights in its packed layout (layout.npu_pack). Its timing model's figures are assumptions standing in for
# N-EUREKA's real ones: an array of NPU_COLS output x NPU_K input channels per cycle, NPU_SETUP_CYCLES per job.
NPU_COLS = 32  # must equal NPU_COLS in kernels_c/npu.h
NPU_SETUP_CYCLES = 100  # must equal NPU_SETUP_CYCLES in kernels_c/npu.h
NPU_TOK_ROWS = 128  # rows per job of npu_run_tok; must equal NPU_TOK_ROWS in kernels_c/npu.h


def npu_linear(x, w_packed, mult, shift: int, lo: int, hi: int):
    """The NPU job: y[t, o] = sat(floor(sum_i W[o, i] * x[t, i] * mult[o] / 2^shift + 1/2)), the integers of `linear`.

    x int8 [n_tok, n_in] (-> y [n_tok, n_out]) or [n_in] (-> y [n_out]); w_packed = layout.npu_pack(W), int8
    [n_out, ceil(n_in / NPU_K) * NPU_K]; mult [n_out]; one shift, 0..62. Walks the packed rows block by block as the
    engine does (int32 block sums added up; the same integers as one dot product), the padding never used.
    """

    if np.ndim(shift) != 0 or not 0 <= int(shift) <= 62:
        raise ValueError(f"npu_linear takes the layer's one shift in 0..62, got {shift!r}")
    x = np.asarray(x)
    one = x.ndim == 1
    x2 = np.atleast_2d(x).astype(np.int64)
    wp = np.asarray(w_packed)
    if x2.ndim != 2 or x2.shape[1] < 1:
        raise ValueError(f"npu_linear wants x [n_tok, n_in] or [n_in], got {x.shape}")
    n_in = x2.shape[1]
    if wp.ndim != 2 or wp.shape[1] != npu_k_blocks(n_in) * NPU_K:
        raise ValueError(f"npu_linear wants w_packed [n_out, {npu_k_blocks(n_in) * NPU_K}] for n_in={n_in}, "
                         f"got {wp.shape}")
    wp = wp.astype(np.int64)
    acc = np.zeros((x2.shape[0], wp.shape[0]), np.int64)
    for i0 in range(0, n_in, NPU_K):
        i1 = min(i0 + NPU_K, n_in)
        acc += x2[:, i0:i1] @ wp[:, i0:i1].T
    y = requant_half_up(acc, np.asarray(mult, np.int64)[None, :], int(shift), lo, hi)
    return y[0] if one else y


def npu_linear_tok(x, w_packed, mult, tok, lo: int, hi: int):
    """npu_run_tok: a token's job on an input with a per-token factor tok = {m, s}, the multipliers and shift of
    tok_multipliers (made by the core, NPU_TOK_ROWS rows a job): the integers of linear_tok."""
    m2, s = tok_multipliers(mult, tok)
    if s < 0:
        raise ValueError(f"a token's shift {s} is negative: the compiler's bound on the token factor does not hold")
    return npu_linear(x, w_packed, m2, s, lo, hi)


def npu_cycles(n_in: int, n_out: int, n_tok: int = 1) -> int:
    """Modelled NPU cycles of one job: NPU_SETUP_CYCLES + ceil(n_in / NPU_K) * ceil(n_out / NPU_COLS) * n_tok."""

    return NPU_SETUP_CYCLES + npu_k_blocks(n_in) * (-(-int(n_out) // NPU_COLS)) * int(n_tok)
