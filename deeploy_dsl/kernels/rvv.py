"""Kernels for cores with the RISC-V vector extension for embedded cores (Zve32x) and Zvqdotq (kernels_c/gemv_rvv.c).

The vector GEMV's weight layout is decided at compile time and recorded in the plan (the step's `w` constant, suffix
`.wv`): blocks of RVV_ROWS output rows (the e32 lanes of one LMUL-8 register group at VLEN 128), and within a block,
per quad of 4 input columns, each row's 4 weights,

    wv[b, j, r, k] = W[RVV_ROWS*b + r, 4j + k]        zero padded to whole quads and blocks,

so that one vle32.v loads a quad and one vqdot.vx adds to every row (a lane) the dot product of its 4 weights with 4
activations broadcast from a scalar register: no reduction per row. The integers are the scalar GEMV's (twins.linear).
"""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np

from ..engines.cost import Work, linear_work, one_core_work
from . import twins as K
from .kernelspec import KernelSpec, Param, Split
from .layout import q4_unpack, unblock_rows

RVV_ROWS = 32  # output rows per block; must equal GEMV_RVV_ROWS in kernels_c/gemv_rvv.h
ONE_CORE_MAX = 1024  # elements of a row the vector norm and residual add take on one core (32 vectors at VLEN 128)
VLEN_MIN = RVV_ROWS * 32 // 8  # bits: RVV_ROWS e32 lanes in a register group of LMUL 8
ISA = ("zve32x", "zvqdotq")  # the extensions these kernels need


def rvv_quads(n_in: int) -> int:
    """ceil(n_in / 4): the quads of 4 input columns."""
    return -(-int(n_in) // 4)


def rvv_pack(w: np.ndarray) -> np.ndarray:
    """W int8 [n_out, n_in] -> wv int8 [n_blocks, quads, RVV_ROWS, 4] (see the module's docstring)."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2:
        raise ValueError(f"rvv_pack wants an int8 [n_out, n_in] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    blocks, quads = -(-n_out // RVV_ROWS), rvv_quads(n_in)
    padded = np.zeros((blocks * RVV_ROWS, quads * 4), np.int8)
    padded[:n_out, :n_in] = w
    return np.ascontiguousarray(padded.reshape(blocks, RVV_ROWS, quads, 4).transpose(0, 2, 1, 3))


def rvv_unpack(wv: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
    """The inverse of rvv_pack: W int8 [n_out, n_in], the padding dropped."""
    wv = np.asarray(wv, np.int8)
    blocks, quads = -(-int(n_out) // RVV_ROWS), rvv_quads(n_in)
    w = wv.reshape(blocks, quads, RVV_ROWS, 4).transpose(0, 2, 1, 3).reshape(blocks * RVV_ROWS, quads * 4)
    return np.ascontiguousarray(w[:n_out, :n_in])


def rvv_weights(wb: np.ndarray, p: dict) -> np.ndarray:
    """The vector GEMV's layout from the quantizer's GEMV blocks (layout.block_rows)."""
    return rvv_pack(unblock_rows(wb, p["n_out"]))


def _twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, lo, hi):
        y[lo:hi] = K.linear(x, rvv_unpack(w, n_out, n_in), mult, int(shift[0]) if n_out else 0, *bounds)[lo:hi]
    return twin


OUT = {"int8": ("int8_t", K.I8), "int16": ("int16_t", K.I16), "int32": ("int32_t", K.I32)}


def _params(ctype: str) -> tuple[Param, ...]:
    return (Param("y", f"{ctype} *", "[n_out] output"), Param("x", "const int8_t *", "[n_in] input"),
            Param("w", "const int8_t *", f"[ceil(n_out/{RVV_ROWS}), ceil(n_in/4), {RVV_ROWS}, 4] int8 weights in the "
                                         "vector layout (kernels.rvv.rvv_pack)"),
            Param("mult", "const int32_t *", "[n_out] requantization multiplier per row"),
            Param("shift", "const uint8_t *", "[n_out] the layer's shift (shift[0] is read)"),
            Param("n_in", "int32_t", "input features"), Param("n_out", "int32_t", "output features"),
            Param("lo", "int32_t", "first row written (a core's share)"),
            Param("hi", "int32_t", "one past the last row written"))


def gemv_rvv(out: str) -> KernelSpec:
    """vqdot.vx over output rows across the lanes; the weights read in place in the vector layout."""
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_rvv_i{out[3:]}", "gemv_rvv.c", _params(ctype), _twin(bounds), linear_rvv_work,
                      f"int8 weights x int8 input -> {out} on Zve32x + Zvqdotq: {RVV_ROWS} rows across the lanes, "
                      "vqdot.vx broadcasting 4 activations (gemv_rvv.h)", bounds=bounds,
                      resident=("w", "mult", "shift"), prefill="token", weights=(".wv", rvv_weights),
                      split=Split((), "n_out", bounds=("lo", "hi")), fragment="split")


def rvv_q4_pack(q: np.ndarray, e: np.ndarray, group: int) -> np.ndarray:
    """int4 weights q [n_out, n_in] in [-8, 7] and their group scales e uint8 [n_out, ceil(n_in / group)] -> the vector
    int4 layout (gemv_q4_rvv.h), int8 [n_blocks, groups, RVV_ROWS + octets * RVV_ROWS * 4]: per block and group the
    rows' scales, then per octet of the group's columns a word per row, byte k = q[c0 + 8p + k] & 15 |
    q[c0 + 8p + 4 + k] << 4 (zero padded)."""
    q, e = np.asarray(q, np.int64), np.asarray(e, np.uint8)
    n_out, n_in = q.shape
    blocks, groups, octets = -(-n_out // RVV_ROWS), -(-n_in // group), -(-group // 8)
    qp = np.zeros((blocks * RVV_ROWS, groups, octets * 8), np.int64)
    for g in range(groups):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        qp[:n_out, g, :c1 - c0] = q[:, c0:c1]
    qp = qp.reshape(blocks, RVV_ROWS, groups, octets, 2, 4)  # the octet's two quads, low nibbles first
    words = ((qp[..., 0, :] & 15) | ((qp[..., 1, :] & 15) << 4)).astype(np.uint8)  # [b, r, g, p, k]
    words = words.transpose(0, 2, 3, 1, 4).reshape(blocks, groups, octets * RVV_ROWS * 4)
    ep = np.zeros((blocks * RVV_ROWS, groups), np.uint8)
    ep[:n_out] = e
    scales = ep.reshape(blocks, RVV_ROWS, groups).transpose(0, 2, 1)
    return np.ascontiguousarray(np.concatenate([scales, words], axis=2)).view(np.int8)


def rvv_q4_unpack(wv: np.ndarray, n_out: int, n_in: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of rvv_q4_pack: (q int8 [n_out, n_in], e uint8 [n_out, groups]), the padding dropped."""
    blocks, groups, octets = -(-int(n_out) // RVV_ROWS), -(-int(n_in) // group), -(-int(group) // 8)
    b = np.asarray(wv).view(np.uint8).reshape(blocks, groups, RVV_ROWS * (1 + 4 * octets))
    e = b[:, :, :RVV_ROWS].transpose(0, 2, 1).reshape(blocks * RVV_ROWS, groups)[:n_out]
    words = b[:, :, RVV_ROWS:].reshape(blocks, groups, octets, RVV_ROWS, 4).astype(np.int64)
    lo, hi = (words & 15), (words >> 4)
    nib = np.stack([lo, hi], axis=3)  # [b, g, p, half, r, k]
    nib = np.where(nib >= 8, nib - 16, nib)
    qp = nib.transpose(0, 4, 1, 2, 3, 5).reshape(blocks * RVV_ROWS, groups, octets * 8)
    q = np.zeros((n_out, n_in), np.int8)
    for g in range(groups):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        q[:, c0:c1] = qp[:n_out, g, :c1 - c0]
    return q, np.ascontiguousarray(e)


def rvv_q4_weights(wq: np.ndarray, p: dict) -> np.ndarray:
    """The vector int4 layout from the quantizer's q4 blocks (layout.q4_pack)."""
    q, e = q4_unpack(wq, p["n_out"], p["n_in"], p["group"])
    return rvv_q4_pack(q, e, p["group"])


def _q4_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, group, lo, hi):
        q, e = rvv_q4_unpack(w, n_out, n_in, group)
        y[lo:hi] = K.linear_q4(x, q, e, group, mult, int(shift[0]) if n_out else 0, *bounds)[lo:hi]
    return twin


def gemv_q4_rvv(out: str) -> KernelSpec:
    """int4 weights with a scale per group on the vector unit (gemv_q4_rvv.c): rows across the lanes, each row's 8
    nibbles per vle32.v split into two int8 quads, vqdot.vx, the group scales by vmacc.vv."""
    ctype, bounds = OUT[out]
    p = _params(ctype)
    params = p[:7] + (Param("group", "int32_t", "input columns per group scale"),) + p[7:]
    params = tuple(replace(x, doc="[ceil(n_out/32), groups, 32 + ceil(group/8)*128] the vector int4 layout "
                                  "(kernels.rvv.rvv_q4_pack)") if x.name == "w" else x for x in params)
    return replace(gemv_rvv(out), name=f"gemv_q4_rvv_i{out[3:]}", source="gemv_q4_rvv.c", params=params,
                   twin=_q4_twin(bounds), weights=(".wq4v", rvv_q4_weights),
                   doc=f"int4 weights with group scales x int8 input -> {out} on Zve32x + Zvqdotq: {RVV_ROWS} rows across "
                       "the lanes, nibbles split by vsll/vsra, vqdot.vx, group scales by vmacc.vv (gemv_q4_rvv.h)")


def _q4_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, group, lo, hi):
        q, e = rvv_q4_unpack(w, n_out, n_in, group)
        m2, s = K.tok_multipliers(mult, shift)
        y[lo:hi] = K.linear_q4(x, q, e, group, m2, s, *bounds)[lo:hi]
    return twin


def gemv_q4_tok_rvv(out: str) -> KernelSpec:
    """gemv_q4_rvv on an input with a per-token factor (gemv_q4_tok_rvv.c), as gemv_tok_rvv for int8 weights."""
    base = gemv_q4_rvv(out)
    params = tuple(Param("shift", "const int32_t *", "[2] this token's factor {m, s}: the multipliers times m / 2^32, "
                         "shift s (kernels.tok_multipliers)") if p.name == "shift" else p for p in base.params)
    return replace(base, name=f"gemv_q4_tok_rvv_i{out[3:]}", source="gemv_q4_tok_rvv.c", params=params,
                   twin=_q4_tok_twin(base.bounds),
                   doc=f"gemv_q4_rvv_i{out[3:]} on an input with a per-token factor: the row multipliers times the "
                       "token's (vmulhu.vx, a chunk of blocks at a time), its shift (gemv_q4_tok_rvv.h)")


def _tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, lo, hi):
        y[lo:hi] = K.linear_tok(x, rvv_unpack(w, n_out, n_in), mult, shift, *bounds)[lo:hi]
    return twin


def gemv_tok_rvv(out: str) -> KernelSpec:
    """gemv_rvv on an input with a per-token factor (gemv_tok_rvv.c): the row multipliers times the token's in vectors,
    a chunk of blocks at a time, then gemv_rvv's loop with the token's shift."""
    ctype, bounds = OUT[out]
    params = tuple(Param("shift", "const int32_t *", "[2] this token's factor {m, s}: the multipliers times m / 2^32, "
                         "shift s (kernels.tok_multipliers)") if p.name == "shift" else p for p in _params(ctype))
    return replace(gemv_rvv(out), name=f"gemv_tok_rvv_i{out[3:]}", source="gemv_tok_rvv.c", params=params,
                   twin=_tok_twin(bounds),
                   doc=f"gemv_rvv_i{out[3:]} on an input with a per-token factor: the row multipliers times the token's "
                       "(vmulhu.vx, a chunk of blocks at a time), its shift (gemv_tok_rvv.h)")


def attention_k16_rvv(base: KernelSpec) -> KernelSpec:
    """The int16-key attention (base: attention_k16's spec) on the vector unit (attention_rvv.c): the same integers,
    the same tiles of positions."""
    return replace(base, name="attention_k16_rvv", source="attention_rvv.c",
                   calls=("attn_scores_k16_rvv", "attn_exp_av_i8_rvv"),
                   doc=base.doc + "; on Zve32x: positions across the lanes, int16 keys by widening MACs, the exps' "
                                  "table gathered, V's columns by strided loads")


def attention_qk_rvv(base: KernelSpec) -> KernelSpec:
    """Attention with int8 keys (base: attention_i8's, attention_q12's or attention_q16's spec) or int12 queries with
    int16 keys (attention_q12k16's) on the vector unit (attention_qk_rvv.c): the same integers, the same tiles of
    positions; the exps and V by attention_rvv.c's attn_exp_av_i8_rvv."""
    return replace(base, name=base.name + "_rvv", source="attention_qk_rvv.c",
                   calls=(base.functions[0] + "_rvv", "attn_exp_av_i8_rvv"),
                   doc=base.doc + "; on Zve32x: positions across the lanes, " + QK_FORM[base.name] + ", the exps' "
                                  "table gathered, V's columns by strided loads")


# how each attention's scores run on the vector unit (attention_qk_rvv.c); attention_k16_rvv's are attention_rvv.c's
QK_FORM = {"attention_i8": "int8 keys 4 at a time by vlse32 + vqdot.vx",
           "attention_q12": "int8 keys 2 at a time by vlse16, split, widening MACs with the int12 queries",
           "attention_q16": "int8 keys 2 at a time by vlse16, split, widening MACs with the int16 queries",
           "attention_q12k16": "int16 keys by widening MACs with the int12 queries"}


def swiglu_dyn_rvv(base: KernelSpec) -> KernelSpec:
    """The SwiGLU with a per-token scale (base: swiglu_dyn_i8's spec) on the vector unit (swiglu_rvv.c): the same
    integers, on core 0 without a fork (its scale spans the vector; a few vector instructions)."""
    return replace(base, name="swiglu_dyn_i8_rvv", source="swiglu_rvv.c", calls=(), cost=one_core_work,
                   split=None,  # core 0 alone, no fork: a few vector instructions (its scale spans the vector)
                   doc=base.doc + "; on Zve32x: the silu table gathered by vluxei16, widening products, reductions")


def swiglu16_tok_rvv(base: KernelSpec) -> KernelSpec:
    """The SwiGLU on int16 gate and up with a per-token absmax scale (base: swiglu16_tok_i8's spec) on the vector unit
    (swiglu16_rvv.c): the same integers, on core 0 without a fork (as swiglu_dyn_rvv)."""
    return replace(base, name="swiglu16_tok_i8_rvv", source="swiglu16_rvv.c", calls=(), split=None, cost=one_core_work,
                   doc=base.doc + "; on Zve32x: the table's two entries gathered by vluxei16, the interpolation and "
                                  "products widening, reductions, the scale by vmulh; one core")


def rmsnorm_rvv(base: KernelSpec) -> KernelSpec:
    """RMSNorm (base: rmsnorm_i8_part's spec) on the vector unit (norm_rvv.c): the same integers, the whole row on one
    core (a row of up to ONE_CORE_MAX elements is a few vector instructions, fewer than a fork; the rms once)."""
    return replace(base, name="rmsnorm_i8_part_rvv", source="norm_rvv.c", split=None, cost=one_core_work,
                   doc=base.doc + "; on Zve32x: the squares by vwmul and two reductions, the outputs by vmulh; one core")


def rmsnorm_tok_rvv(base: KernelSpec) -> KernelSpec:
    """RMSNorm with a per-token absmax scale (base: rmsnorm_tok_i8's spec) on the vector unit (rmsnorm_tok_rvv.c): the
    same integers, the whole row on core 0 without a fork (as rmsnorm_rvv)."""
    return replace(base, name="rmsnorm_tok_i8_rvv", source="rmsnorm_tok_rvv.c", calls=(), split=None,
                   cost=one_core_work, doc=base.doc + "; on Zve32x: x * gain's span and the squares by reductions, the "
                                                      "outputs by vmulh; one core")


def residual_add_rvv(base: KernelSpec) -> KernelSpec:
    """The residual add (base: residual_add_i16's spec) on the vector unit (norm_rvv.c): one vsadd per vl elements, on
    one core (as rmsnorm_rvv)."""
    return replace(base, name="residual_add_i16_rvv", source="norm_rvv.c", split=None, prefill="token", cost=one_core_work,
                   doc=base.doc + "; on Zve32x: vsadd.vv, one core")


def rope_rvv(base: KernelSpec) -> KernelSpec:
    """RoPE (base: rope_i8's, rope_i16's or rope_q12's spec) on the vector unit (rope_rvv.c): the same integers, every
    head on core 0 without a fork (the heads across the lanes: fewer instructions than a fork)."""
    return replace(base, name=base.name + "_rvv", source="rope_rvv.c", split=None, cost=one_core_work,
                   doc=base.doc + "; on Zve32x: pairs split by vlseg2, vmul + vnmsac / vmacc, joined by vsseg2")




# ---- estimated cycles: the vector instructions of gemv_rvv.c, by its loop structure --------------------------------

def vector_ops(n_in: int, rows: int, out_bits: int, shift: int) -> list[tuple[int, int, int]]:
    """(count, vl, SEW) of the vector instructions one block segment of `rows` rows executes (gemv_rvv.c): vmv, per
    quad a vle32.v and a vqdot.vx, then the requantization and the narrowing store (shift >= 33) or a vse32.v of the
    accumulators (the scalar requantization below)."""
    ops = [(1, rows, 32), (2 * rvv_quads(n_in), rows, 32)]
    if shift >= 33:
        ops += [(6, rows, 32)] + {8: [(2, rows, 32), (1, rows, 8)], 16: [(1, rows, 32), (1, rows, 16)],
                                  32: [(1, rows, 32)]}[out_bits]
    else:
        ops += [(1, rows, 32)]
    return ops


def q4_vector_ops(n_in: int, group: int, rows: int, out_bits: int, shift: int) -> list[tuple[int, int, int]]:
    """(count, vl, SEW) of the vector instructions of gemv_q4_rvv.c on one block segment: vmv, per group a vmv, per
    octet of its columns vle32.v, vsll, two vand and two vqdot.vx, then vsra, vle8, vzext and vmacc; the
    requantization and store as vector_ops'."""
    groups, octets = -(-n_in // group), -(-group // 8)
    per_group = [(2 + 6 * octets, rows, 32), (1, rows, 8), (2, rows, 32)]
    return [(1, rows, 32)] + [(c * groups, vl, sew) for c, vl, sew in per_group] + vector_ops(n_in, rows, out_bits,
                                                                                                shift)[2:]


def segments(lo: int, hi: int) -> list[int]:
    """The rows of each block segment the kernel runs for rows [lo, hi)."""
    out, o = [], lo
    while o < hi:
        rows = min(hi - o, RVV_ROWS - o % RVV_ROWS)
        out.append(rows)
        o += rows
    return out


GEMV_UNIT = 8  # rows; must equal GEMV_RVV_UNIT in kernels_c/gemv_rvv.h
SPARE_FROM = 3  # cores from which core 0 takes no GEMV rows nor query heads; must equal DPL_RVV_SPARE_FROM (gemv_rvv.h)


def gemv_share(n: int, core: int, n_cores: int) -> tuple[int, int]:
    """gemv_rvv_share's rows of n for `core` of `n_cores` (kernels_c/gemv_rvv.h): units of GEMV_UNIT rows, none on
    core 0 when n_cores >= SPARE_FROM and there are at least n_cores - 1 units, the larger shares to the last cores."""
    units = -(-n // GEMV_UNIT)
    if n_cores >= SPARE_FROM and units >= n_cores - 1:
        if core == 0:
            return 0, 0
        core, n_cores = core - 1, n_cores - 1
    base, first_big = units // n_cores, n_cores - units % n_cores
    u0 = core * base + max(0, core - first_big)
    u1 = u0 + base + (1 if core >= first_big else 0)
    return min(n, u0 * GEMV_UNIT), min(n, u1 * GEMV_UNIT)


def head_share(n: int, core: int, n_cores: int) -> tuple[int, int]:
    """attn_rvv_share's share of n query heads (kernels_c/attention_rvv.h): none on core 0 when n_cores >= SPARE_FROM and
    n >= n_cores - 1, the larger shares to the first of the others."""
    if n_cores >= SPARE_FROM and n >= n_cores - 1:
        if core == 0:
            return 0, 0
        core, n_cores = core - 1, n_cores - 1
    base, big = n // n_cores, n % n_cores
    lo = core * base + min(core, big)
    return lo, lo + base + (1 if core < big else 0)


def _c(vl: int, sew: int, dp: int) -> int:
    """Cycles beyond the first of a vector instruction on vl elements of SEW bits (arithmetic, unit-stride memory)."""
    return max(1, math.ceil(vl * sew / dp)) - 1


def _lanes(n: int) -> list[int]:
    """The vl of each vector of positions over n of them (32 lanes of e32 at LMUL 8, VLEN 128)."""
    return [min(RVV_ROWS, n - t) for t in range(0, n, RVV_ROWS)]


def scores_dims_extra(form: str, vl: int, hs: int, dp: int) -> int:
    """The scores' loads and MACs over the head's dimensions for vl positions and a pair of heads: int16 keys
    (attention_k16_rvv, _q12k16_rvv) per dimension a vlse16 and two widening MACs; int8 keys with int8 queries per quad
    a vlse32 and two vqdot.vx; with int16 queries per pair a vlse16, three e16 splits and four widening MACs (aligned
    rows, the odd last dimension counted as a pair)."""
    c32, mem = _c(vl, 32, dp), vl - 1
    if form == "attention_i8_rvv":
        return -(-hs // 4) * (mem + 2 * c32)
    if form in ("attention_q12_rvv", "attention_q16_rvv"):
        return -(-hs // 2) * (mem + 3 * _c(vl, 16, dp) + 4 * c32)
    return hs * (mem + 2 * c32)


def attention_extra(n: int, g: int, hs: int, dp: int, form: str = "attention_k16_rvv") -> int:
    """attention_rvv.c (attention_qk_rvv.c's scores for the other widths: scores_dims_extra) on one kv head's g query
    heads over n positions: the scores' vectors (vmv, the loads and MACs, the rounding, store and running max), then
    per head the exps (7 e32 operations, the table's indexed gather, 4 more) and per dimension a strided vlse8, vsext,
    vmul, vredsum. Strided and indexed loads take one element per cycle (assumption: a single-ported lane memory
    interface)."""
    extra = 0
    for vl in _lanes(n):
        c32, mem = _c(vl, 32, dp), vl - 1
        for pair in range(0, g, 2):
            heads = min(2, g - pair)
            extra += 2 * c32 + scores_dims_extra(form, vl, hs, dp) + heads * 4 * c32
        extra += g * (11 * c32 + mem + hs * (mem + 3 * c32))
    return extra


def swiglu_extra(n: int, dp: int) -> int:
    """swiglu_rvv.c over n elements: per vector two vle8, the index arithmetic (e16), the table's indexed gather, the
    widening product, store and two reductions (e32); then vle32, the rounding shift, two narrowings and vse8."""
    return sum(2 * _c(vl, 8, dp) + 4 * _c(vl, 16, dp) + (vl - 1) + 4 * _c(vl, 32, dp)
               + 5 * _c(vl, 32, dp) + _c(vl, 8, dp) for vl in _lanes(n))


# gemv_rvv.c's scalar instructions, fitted to Spike's exact counts of stories260k's attn.q (2 blocks) and mlp.gate
# (6 blocks) on 1 hart (bench/spike_profile.py): per quad the activations' lw and the pointer steps, per block segment
# its setup and the loop's control, per call the arguments and the share
GEMV_RVV_SCALAR_PER_QUAD = 2.5
GEMV_RVV_SCALAR_PER_BLOCK = 56
GEMV_RVV_SCALAR_PER_CALL = 118


def gemv_rvv_cycles(n_in: int, lo: int, hi: int, out_bits: int, dp: int, shift: int = 40) -> int:
    """Estimated cycles of gemv_rvv.c over rows [lo, hi) under a datapath of dp bits: its scalar instructions one cycle
    each, each vector instruction ceil(vl * SEW / dp) cycles (at least 1)."""
    if hi <= lo:
        return 0
    cycles = GEMV_RVV_SCALAR_PER_CALL
    for rows in segments(lo, hi):
        cycles += GEMV_RVV_SCALAR_PER_BLOCK + math.ceil(rvv_quads(n_in) * GEMV_RVV_SCALAR_PER_QUAD)
        cycles += sum(count * (_c(vl, sew, dp) + 1) for count, vl, sew in vector_ops(n_in, rows, out_bits, shift))
    return cycles


def linear_rvv_work(s, plan, dep, n_tok: int, pos: int, pos0: int) -> Work:
    """The vector GEMV under the target's datapath model (targets' cluster.vector): the busiest core's share of the
    rows in gemv_rvv_cycles, per token, plus a fork; without a model, the flat MACs per cycle per core."""
    t = dep.target
    dp = t.vector.datapath_bits if t.vector is not None else 0
    if not dp:
        return linear_work(s, plan, dep, n_tok, pos, pos0)
    n_in, n_out = s.arg("n_in").value, s.arg("n_out").value
    bits = int(s.spec.name.rsplit("_i", 1)[1])
    busiest = max(gemv_rvv_cycles(n_in, *gemv_share(n_out, c, s.cores), bits, dp) for c in range(s.cores))
    return Work(n_tok * busiest + (t.fork_cycles if s.cores > 1 else 0), s.macs * n_tok)


def swiglu16_extra(n: int, dp: int) -> int:
    """swiglu16_rvv.c over n elements: per vector two vle16 and five e16 operations, two indexed gathers (one element a
    cycle), four widening products and sums, a narrowing, the rounding, store and two reductions (e32); then vle32,
    four e32 operations, two narrowings and vse8."""
    return sum(7 * _c(vl, 16, dp) + 2 * (vl - 1) + 9 * _c(vl, 32, dp) + 5 * _c(vl, 32, dp) + _c(vl, 16, dp)
               + 2 * _c(vl, 8, dp) for vl in _lanes(n))


def _strips(n: int, vlmax: int) -> list[int]:
    """The vl of each strip over n elements at vlmax elements per vector."""
    return [min(vlmax, n - t) for t in range(0, n, vlmax)]


def rmsnorm_extra(dim: int, lo: int, hi: int, dp: int) -> int:
    """norm_rvv.c: per strip of the row (e16 m4) a vle16, the widening square and four e32 operations (two of them
    reductions); per strip of the share a vle16, the vsext, vle32 and six e32 operations, two narrowings and vse8."""
    return (sum(_c(vl, 16, dp) + 5 * _c(vl, 32, dp) for vl in _strips(dim, 32))
            + sum(_c(vl, 16, dp) + 9 * _c(vl, 32, dp) + _c(vl, 16, dp) + _c(vl, 8, dp) for vl in _strips(hi - lo, 32)))


def rmsnorm_tok_extra(dim: int, dp: int) -> int:
    """rmsnorm_tok_rvv.c: per strip of the row a vle16, the widening square, vsext, vle32 and eight e32 operations (four
    of them reductions); then per strip vle32, vle16, vsext and six e32 operations, two narrowings and vse8."""
    return sum(2 * _c(vl, 16, dp) + 10 * _c(vl, 32, dp) + _c(vl, 16, dp) + 8 * _c(vl, 32, dp) + _c(vl, 16, dp)
               + 2 * _c(vl, 8, dp) for vl in _strips(dim, 32))


def residual_add_extra(n: int, dp: int) -> int:
    """norm_rvv.c's residual add: per strip (e16 m8) two loads, vsadd and the store."""
    return sum(4 * _c(vl, 16, dp) for vl in _strips(n, 64))


def rope_extra(heads: int, head_size: int, in_bits: int, dp: int) -> int:
    """rope_rvv.c per strip: the segment load and store one element per cycle (as strided loads), 2 vsext, 4 products,
    8 roundings, 4 clamps, 2 narrowings (e32), per head's pairs also the two vle16 rows and 2 more vsext; int8 values 4
    more e16. Heads across the lanes (a strip per pair index) when there are at least as many as pairs, else pairs."""
    pairs = head_size // 2
    across = heads >= pairs and heads > 1
    strips = [vl for _ in range(pairs) for vl in _strips(heads, 16)] if across else \
        [vl for _ in range(heads) for vl in _strips(pairs, 16)]
    return sum(2 * (2 * vl - 1) + 20 * _c(vl, 32, dp) + (0 if across else 2 * _c(vl, 16, dp) + 2 * _c(vl, 32, dp))
               + (4 * _c(vl, 16, dp) if in_bits == 8 else 0) for vl in strips)


def step_vector_cycles(step, target, n_cores: int, core: int, positions: tuple[int, ...] = ()) -> float:
    """The cycles beyond one per instruction that the vector instructions of a step take on `core` of `n_cores`: each
    vector instruction ceil(vl * SEW / datapath_bits) cycles (at least 1) under the target's datapath model, where the
    exact count (minstret) charged it one; attention averaged over the decode `positions` (its n = pos + 1). 0 for
    steps without vector instructions or targets without a model. The
    requantization is counted in its vector form (shifts >= 33, stories260k's layers; a smaller shift runs it in
    scalar instructions, which minstret counts exactly, and makes this a slight overestimate)."""
    dp = target.vector.datapath_bits if target.vector is not None else 0
    if not dp:
        return 0
    if step.spec.name == "swiglu_dyn_i8_rvv":  # on core 0 alone (no fork)
        return swiglu_extra(step.arg("n").value, dp) if core == 0 else 0
    if step.spec.name == "swiglu16_tok_i8_rvv":
        return swiglu16_extra(step.arg("n").value, dp) if core == 0 else 0
    if step.spec.name in ATTENTION_RVV:  # this core's query heads, per kv head, averaged over the positions
        nh, nkv, hs = step.arg("n_heads").value, step.arg("n_kv_heads").value, step.arg("head_size").value
        lo, hi = head_share(nh, core, n_cores)
        groups = [sum(1 for h in range(lo, hi) if h // (nh // nkv) == kv) for kv in range(nkv)]
        return sum(attention_extra(n, g, hs, dp, step.spec.name) for n in positions for g in groups if g) / max(
            1, len(positions))
    name = step.spec.name
    if name == "rmsnorm_i8_part_rvv":  # the whole row on core 0 (no fork)
        dim = step.arg("dim").value
        return rmsnorm_extra(dim, 0, dim, dp) if core == 0 else 0
    if name == "rmsnorm_tok_i8_rvv":
        return rmsnorm_tok_extra(step.arg("dim").value, dp) if core == 0 else 0
    if name == "residual_add_i16_rvv":
        return residual_add_extra(step.arg("n").value, dp) if core == 0 else 0
    if name.startswith("rope_") and name.endswith("_rvv"):  # on core 0 alone (no fork)
        n, hs = step.arg("n").value, step.arg("head_size").value
        return rope_extra(n // hs, hs, 8 if name == "rope_i8_rvv" else 16, dp) if core == 0 else 0
    if name not in KERNELS and name not in Q4_KERNELS:
        return 0
    n_out, n_in, shift = step.arg("n_out").value, step.arg("n_in").value, 40
    bits = int(step.spec.name.rsplit("_i", 1)[1])
    lo, hi = gemv_share(n_out, core, n_cores)
    extra = 0
    for rows in segments(lo, hi):
        ops = q4_vector_ops(n_in, step.arg("group").value, rows, bits, shift) if name in Q4_KERNELS else \
            vector_ops(n_in, rows, bits, shift)
        for count, vl, sew in ops:
            extra += count * _c(vl, sew, dp)
    return extra


ATTENTION_RVV = ("attention_k16_rvv", "attention_i8_rvv", "attention_q12_rvv", "attention_q16_rvv",
                 "attention_q12k16_rvv")  # the vector attentions: heads shared by attn_rvv_share (attention_rvv.h)
KERNELS = {k.name: k for k in (*(gemv_rvv(o) for o in OUT), *(gemv_tok_rvv(o) for o in OUT))}
Q4_KERNELS = {k.name: k for k in (*(gemv_q4_rvv(o) for o in OUT), *(gemv_q4_tok_rvv(o) for o in OUT))}  # priced by gemv_rvv's model (an approximation)
