"""The kernel registry: one KernelSpec per C kernel, everything the compiler knows about it in one place.

A spec names the kernel's C source, its parameters in the C signature's order (with their C types and what they
hold), the C functions a step of it calls, its numpy twin (golden), the range its output saturates to, how it
moves its operands through L1 (tiling), how the cores share one call (split), its cost function (cost.py), how a
prefill chunk runs it, and the steps.c.j2 fragment that prints it. Lowering rules (rules.py) emit a spec with
named arguments; tiling, cost, golden and codegen read the spec's fields and the arguments by name.

Adding a kernel variant: its C in kernels_c/ (and prototype in deeploy_kernels.h), its numpy twin in twins.py,
one spec here, one rule in rules.py.
"""
from __future__ import annotations

from ..engines.cost import (attention_work, elementwise_work, linear_pk_tok_work, linear_pk_work, linear_q4_tok_work,
                            linear_q4_work, linear_tok_work, linear_wide_tok_work, linear_work, npu_tok_work, npu_work)
from . import twins as K
from .kernelspec import KernelSpec, Param, Split
from .packed import linear_pk, pk_row_bytes, pk_weights
from .layout import (host_q4_rows, host_q4_unrows, host_rows, npu_weights, q4_row_bytes, q4_unpack, unblock_rows,
                     w16_bytes, w16_unbytes)
from .rvv import (KERNELS as RVV_KERNELS, Q4_KERNELS as RVV_Q4_KERNELS, attention_k16_rvv, attention_qk_rvv, residual_add_rvv, rmsnorm_rvv, rope_rvv,
                  rmsnorm_tok_rvv, swiglu16_tok_rvv, swiglu_dyn_rvv)


def _p(spec: str) -> tuple[Param, ...]:
    """Parameters from 'name | ctype | doc' lines."""
    out = []
    for line in spec.strip().splitlines():
        name, ctype, doc = (f.strip() for f in line.split("|"))
        out.append(Param(name, ctype, doc))
    return tuple(out)


# ---- linear layers ------------------------------------------------------------------------------------------

def _linear_params(out_ctype: str, q4: bool) -> tuple[Param, ...]:
    w = "int4 weights in GEMV blocks with their group scales (layout.q4_pack)" if q4 else \
        "[ceil(n_out/8), n_in, 8] int8 weights in GEMV blocks (layout.block_rows)"
    return _p(f"""
        y      | {out_ctype} *     | [n_out] output
        x      | const int8_t *   | [n_in] input
        w      | const int8_t *   | {w}
        mult   | const int32_t *  | [n_out] requantization multiplier per row
        shift  | const uint8_t *  | [n_out] the layer's shift (shift[0] is read), or this token's (a per-token scale)
        n_in   | int32_t          | input features
        n_out  | int32_t          | output features""") + (_p("group | int32_t | input channels per int4 group scale")
                                                          if q4 else ())


def _gemv_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        # one shift per layer: the C reads shift[0] (the per-row array, all entries equal, is for the tiles' DMA)
        y[:] = K.linear(x, unblock_rows(w, n_out), mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


def _gemv_q4_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, group):
        q, e = q4_unpack(w, n_out, n_in, group)
        y[:] = K.linear_q4(x, q, e, group, mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


def _rows_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.linear(x, w, mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


def _q4_rows_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, group):
        q, e = host_q4_unrows(w, n_in, group)
        y[:] = K.linear_q4(x, q, e, group, mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


def _npu_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.npu_linear(x, w, mult, int(shift[0]), *bounds)
    return twin


def _int8_row(s) -> int:
    """An int8 weight row: n_in bytes."""
    return s.arg("n_in").value


def _q4_row(s) -> int:
    """An int4 weight row: its group scales and n_in nibbles (layout.q4_row_bytes)."""
    return q4_row_bytes(s.arg("n_in").value, s.arg("group").value)


OUT = {"int8": ("int8_t", K.I8), "int16": ("int16_t", K.I16), "int32": ("int32_t", K.I32)}


def gemv(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_i{out[3:]}", "gemv.c", _linear_params(ctype, False), _gemv_twin(bounds),
                      linear_work, f"int8 weights x int8 input -> {out}, rows in blocks of 8 (gemv.h)", bounds=bounds,
                      tiling="rows", row_bytes=_int8_row, prefill="gemm", fragment="rows")


def gemv_q4(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_q4_i{out[3:]}", "gemv.c", _linear_params(ctype, True), _gemv_q4_twin(bounds),
                      linear_q4_work, f"int4 weights with group scales x int8 input -> {out} (gemv.h)", bounds=bounds,
                      tiling="rows", row_bytes=_q4_row, prefill="gemm", fragment="rows")


def npu_linear(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    params = _linear_params(ctype, False)
    params = tuple(Param("w", p.ctype, "[n_out, ceil(n_in/32)*32] int8 weights in the NPU's layout (layout.npu_pack)")
                   if p.name == "w" else p for p in params)
    return KernelSpec(f"npu_linear_i{out[3:]}", "npu.c", params, _npu_twin(bounds), npu_work,
                      f"one NPU job: int8 weights x int8 input -> {out} (npu.h)", calls=("npu_submit", "npu_wait"),
                      bounds=bounds,
                      resident=("w", "mult", "shift"), prefill="gemm", fragment="npu", weights=(".wn", npu_weights))


def _npu_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.npu_linear_tok(x, w, mult, shift, *bounds)
    return twin


def npu_linear_tok(out: str) -> KernelSpec:
    """npu_linear on an input with a per-token factor: the core makes the token's multipliers, a job per NPU_TOK_ROWS
    rows (npu_run_tok)."""
    base = npu_linear(out)
    return KernelSpec(f"npu_linear_tok_i{out[3:]}", "npu.c", _tok_params(base.params), _npu_tok_twin(base.bounds),
                      npu_tok_work, f"NPU jobs on an input with a per-token factor: int8 weights x int8 input -> {out}, "
                      "the row multipliers times the token's, made by the core (npu.h)", calls=("npu_run_tok",),
                      bounds=base.bounds, resident=base.resident, prefill="gemm", fragment="npu", weights=base.weights)


def gemv_rows(out: str) -> KernelSpec:
    """The host's GEMV (host.c): rows contiguous, read where they are; a prefill runs it token by token (the weights
    stay in the host's caches)."""
    ctype, bounds = OUT[out]
    params = tuple(Param("w", p.ctype, "[n_out, n_in] int8 weights, row-major (layout.host_rows)")
                   if p.name == "w" else p for p in _linear_params(ctype, False))
    return KernelSpec(f"gemv_rows_i{out[3:]}", "host.c", params, _rows_twin(bounds), linear_work,
                      f"int8 weights x int8 input -> {out}, contiguous rows that gcc vectorizes (host.h)",
                      bounds=bounds, resident=("w", "mult", "shift"), prefill="token", weights=(".wr", host_rows))


def gemv_q4_rows(out: str) -> KernelSpec:
    """The host's int4 GEMV (host.c): rows contiguous, each group's nibbles in two halves that gcc vectorizes."""
    ctype, bounds = OUT[out]
    params = tuple(Param("w", p.ctype, "int4 weights with their group scales, rows contiguous (layout.host_q4_rows)")
                   if p.name == "w" else p for p in _linear_params(ctype, True))
    return KernelSpec(f"gemv_q4_rows_i{out[3:]}", "host.c", params, _q4_rows_twin(bounds), linear_q4_work,
                      f"int4 weights with group scales x int8 input -> {out}, contiguous rows (host.h)",
                      bounds=bounds, resident=("w", "mult", "shift"), prefill="token", weights=(".wr", host_q4_rows))


def _tok_params(params: tuple[Param, ...]) -> tuple[Param, ...]:
    """A GEMV's parameters with the shift taken from the token's factor (gemv_tok.c)."""
    return tuple(Param("shift", "const int32_t *", "[2] this token's factor {m, s}: the multipliers times m / 2^32, "
                       "shift s (kernels.tok_multipliers)") if p.name == "shift" else p for p in params)


def _gemv_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.linear_tok(x, unblock_rows(w, n_out), mult, shift, *bounds)
    return twin


def _gemv_q4_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out, group):
        q, e = q4_unpack(w, n_out, n_in, group)
        m2, s = K.tok_multipliers(mult, shift)
        y[:] = K.linear_q4(x, q, e, group, m2, s, *bounds)
    return twin


def gemv_tok(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_tok_i{out[3:]}", "gemv_tok.c", _tok_params(_linear_params(ctype, False)),
                      _gemv_tok_twin(bounds), linear_tok_work,
                      f"gemv_i{out[3:]} on an input with a per-token factor: the row multipliers times the token's "
                      "(one high multiply per row), its shift (gemv.h)", bounds=bounds, tiling="rows",
                      row_bytes=_int8_row, prefill="gemm", fragment="rows")


def _rows_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.linear_tok(x, w, mult, shift, *bounds)
    return twin


def gemv_rows_tok(out: str) -> KernelSpec:
    """The host's GEMV on an input with a per-token factor (host_tok.c): gemv_rows_iN on the row multipliers times the
    token's; a prefill runs it token by token, each token with its own factor."""
    ctype, bounds = OUT[out]
    base = gemv_rows(out)
    return KernelSpec(f"gemv_rows_tok_i{out[3:]}", "host_tok.c", _tok_params(base.params), _rows_tok_twin(bounds),
                      linear_tok_work, f"gemv_rows_i{out[3:]} on an input with a per-token factor: the row multipliers "
                      "times the token's (one high multiply per row), its shift (host_tok.h)", bounds=bounds,
                      resident=base.resident, prefill="token", weights=base.weights)


def gemv_q4_tok(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_q4_tok_i{out[3:]}", "gemv_tok.c", _tok_params(_linear_params(ctype, True)),
                      _gemv_q4_tok_twin(bounds), linear_q4_tok_work,
                      f"gemv_q4_i{out[3:]} on an input with a per-token factor (gemv.h)", bounds=bounds,
                      tiling="rows", row_bytes=_q4_row, prefill="gemm", fragment="rows")


def _gemv_x16_tok(y, x, w, mult, shift, n_in, n_out):
    y[:] = K.linear_tok(x, unblock_rows(w, n_out), mult, shift, *K.I16)


def _gemv_w16_tok(y, x, w, mult, shift, n_in, n_out):
    y[:] = K.linear_tok(x, w16_unbytes(w, n_out, n_in), mult, shift, *K.I32)


# the down projection on a wide SwiGLU output (`swiglu int12 | int16`): int16 x, int8 weights in GEMV blocks
GEMV_X16_TOK = KernelSpec("gemv_x16_tok_i16", "wide.c", tuple(
    Param("x", "const int16_t *", "[n_in] input: int12 or int16 values, stored in int16") if p.name == "x" else p
    for p in _tok_params(_linear_params("int16_t", False))), _gemv_x16_tok, linear_wide_tok_work,
    "int8 weights x int16 input -> int16 on an input with a per-token factor, int32 sums (n_in * max|x| * 127 < 2^31), "
    "rows in blocks of 8 (wide.h)", bounds=K.I16, tiling="rows", row_bytes=_int8_row, prefill="gemm", fragment="rows")


def _w16_row(s) -> int:
    """An int16 weight row: 2 n_in bytes."""
    return 2 * s.arg("n_in").value


# the classifier on int16 weights (`classifier int16`): int8 x with the final norm's factor, int32 logits
GEMV_W16_TOK = KernelSpec("gemv_w16_tok_i32", "wide.c", tuple(
    Param("w", "const int8_t *", "[ceil(n_out/8), n_in, 8] int16 weights in GEMV blocks as little-endian bytes "
          "(layout.w16_bytes)") if p.name == "w" else p
    for p in _tok_params(_linear_params("int32_t", False))), _gemv_w16_tok, linear_wide_tok_work,
    "int16 weights x int8 input -> int32 on an input with a per-token factor, int32 sums (n_in * 127 * 32767 < 2^31), "
    "rows in blocks of 8 (wide.h)", bounds=K.I32, tiling="rows", row_bytes=_w16_row, prefill="gemm", fragment="rows",
    weights=(".wh", w16_bytes))


def _pk_params(ctype: str) -> tuple[Param, ...]:
    return tuple(Param("w", "const int8_t *", "packed blocks of 8 rows: a chunk schedule and per column 4 int32 words "
                       "w[2j] + 2^16 w[2j+1], 4-byte aligned (packed.pk_pack)") if p.name == "w" else p
                 for p in _linear_params(ctype, False))


def _pk_row(s) -> int:
    """A packed weight row: 2 n_in bytes and its share of the block's schedule (packed.pk_row_bytes)."""
    return pk_row_bytes(s.arg("n_in").value)


def _gemv_pk_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = linear_pk(x, w, n_out, n_in, mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


def gemv_pk(out: str) -> KernelSpec:
    """The cluster's int8 GEMV with two MACs per multiply: two rows' weights in one 32-bit word, the columns in chunks
    whose 16-bit partial sums the compiler proved exact for any int8 input (packed.py)."""
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_pk_i{out[3:]}", "gemv.c", _pk_params(ctype), _gemv_pk_twin(bounds), linear_pk_work,
                      f"int8 weights x int8 input -> {out}, two rows per 32-bit word, one multiply for two MACs "
                      "(gemv.h)", bounds=bounds, tiling="rows", row_bytes=_pk_row, prefill="gemm", fragment="rows",
                      weights=(".wp", pk_weights), fallback=gemv(out))


def _gemv_pk_tok_twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        m2, s = K.tok_multipliers(mult, shift)
        y[:] = linear_pk(x, w, n_out, n_in, m2, s, *bounds)
    return twin


def gemv_pk_tok(out: str) -> KernelSpec:
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_pk_tok_i{out[3:]}", "gemv_tok.c", _tok_params(_pk_params(ctype)),
                      _gemv_pk_tok_twin(bounds), linear_pk_tok_work,
                      f"gemv_pk_i{out[3:]} on an input with a per-token factor: the row multipliers times the token's "
                      "(gemv.h)", bounds=bounds, tiling="rows", row_bytes=_pk_row, prefill="gemm", fragment="rows",
                      weights=(".wp", pk_weights), fallback=gemv_tok(out))


# ---- the rest ---------------------------------------------------------------------------------------------------

def _embed(x, row, mult, shift, dim):
    x[:] = K.embed(row, int(mult), int(shift))


def _rmsnorm(y, x, gain, gain_shift, eps_q, dim, lo, hi):
    y[lo:hi] = K.rmsnorm(x, gain, gain_shift, eps_q)[lo:hi]


def _rope(bounds):
    def twin(y, x, cos_row, sin_row, n, head_size):
        y[:] = K.rope(x, 0, cos_row[None], sin_row[None], head_size, bounds)
    return twin


def _swiglu(h, gate, up, silu_table, mult, shift, n):
    h[:] = K.swiglu(gate, up, silu_table, mult, shift)


def _swiglu_dyn(h, shift_out, p, gate, up, silu_table, base_shift, n):
    h[:], shift_out[0] = K.swiglu_dyn(gate, up, silu_table, base_shift)


def _rmsnorm_tok(y, tok, x, gain, gain_shift, eps_q, base_shift, dim):
    y[:], tok[:] = K.rmsnorm_tok(x, gain, gain_shift, eps_q, base_shift)


def _swiglu_tok(h, tok, p, gate, up, silu_table, base_shift, n):
    h[:], tok[:] = K.swiglu_tok(gate, up, silu_table, base_shift)


def _swiglu16_tok(h, tok, p, gate, up, silu_table, base_shift, n):
    h[:], tok[:] = K.swiglu_tok_g16(gate, up, silu_table, base_shift)


def _swiglu_tok_wide(h, tok, p, gate, up, silu_table, qmax, base_shift, n):
    h[:], tok[:] = K.swiglu_tok(gate, up, silu_table, base_shift, qmax)


def _swiglu16_tok_wide(h, tok, p, gate, up, silu_table, qmax, base_shift, n):
    h[:], tok[:] = K.swiglu_tok_g16(gate, up, silu_table, base_shift, qmax)


def _residual_add(y, a, b, n):
    y[:] = K.residual_add(a, b)


EMBED = KernelSpec("embed_i16", "embed.c", _p("""
    x      | int16_t *       | [dim] the residual stream
    row    | const int8_t *  | [dim] the token's embedding row
    mult   | const int32_t * | [1] the row's multiplier
    shift  | const uint8_t * | [1] the row's shift
    dim    | int32_t         | model dimension"""), _embed, elementwise_work,
    "x = sat16(round(row * mult / 2^shift)): the token's residual row", bounds=K.I16)

RMSNORM = KernelSpec("rmsnorm_i8_part", "rmsnorm.c", _p("""
    y          | int8_t *        | [dim] output
    x          | const int16_t * | [dim] the residual stream
    gain       | const int32_t * | [dim] gains
    gain_shift | int32_t         | the gains' shift
    eps_q      | int64_t         | epsilon in x's units squared, times 2^16
    dim        | int32_t         | model dimension
    lo         | int32_t         | first element written
    hi         | int32_t         | one past the last element written"""), _rmsnorm, elementwise_work,
    "y[lo:hi] = sat8(x / rms(x) * gain / 2^gain_shift), the rms of the whole row", bounds=K.I8,
    split=Split((), "dim", bounds=("lo", "hi")), fragment="split")


# RoPE's output type: (kernel, C type, the range it saturates to); int12 queries are int16 values within +-2047
ROPE = {"int8": ("rope_i8", "int8_t", K.I8), "int16": ("rope_i16", "int16_t", K.I16),
        "int12": ("rope_q12", "int16_t", K.Q12)}

# the token's scale spans the row: two forks (Split.passes), the cores' spans of their shares, then the scale from them
# all and the shares' outputs; the share that ends the row computes the rms and the token's factor (core 0 is the
# busiest: it also runs forward()); one core calls the kernel itself
RMSNORM_TOK = KernelSpec("rmsnorm_tok_i8", "rmsnorm_tok.c", _p("""
    y          | int8_t *        | [dim] output
    tok        | int32_t *       | [2] the token's factor {m, s} for the consumers
    x          | const int16_t * | [dim] the residual stream
    gain       | const int32_t * | [dim] gains
    gain_shift | int32_t         | the gains' shift
    eps_q      | int64_t         | epsilon in x's units squared, times 2^16
    base_shift | int32_t         | the consumers' shift at factor 1
    dim        | int32_t         | model dimension"""), _rmsnorm_tok, elementwise_work,
    "y = x * gain * 127 / max|x * gain| (an integer multiplier), the token's factor a * 2^t / rms for the consumers",
    bounds=K.I8,
    split=Split(("y", "x", "gain"), "dim", unit="dim", passes=("rmsnorm_tok_i8_span", "rmsnorm_tok_i8_out")),
    calls=("rmsnorm_tok_i8", "rmsnorm_tok_i8_span", "rmsnorm_tok_i8_out"), fragment="split")


def rope(out: str) -> KernelSpec:
    name, ctype, bounds = ROPE[out]
    return KernelSpec(name, "rope.c", _p(f"""
        y         | {ctype} *        | [n] output (may equal x)
        x         | const {ctype} *  | [n] input
        cos_row   | const int16_t *  | [head_size/2] Q14 cosines of this position
        sin_row   | const int16_t *  | [head_size/2] Q14 sines of this position
        n         | int32_t          | elements (whole heads)
        head_size | int32_t          | elements per head"""), _rope(bounds), elementwise_work,
        f"rotate interleaved pairs of each head by the Q14 cos/sin row of this position, {out}", bounds=bounds,
        split=Split(("y", "x"), "n", "head_size"), fragment="split")


# (queries, keys) -> the untiled attention kernel and the scores kernel a tiled step calls; int16 queries with int16
# keys have none: q . k would not fit int32 (kernels.qk_head_size_max)
ATTENTION = {("int8", "int8"): ("attention_i8", "attn_scores_i8"), ("int8", "int16"): ("attention_k16", "attn_scores_k16"),
             ("int12", "int8"): ("attention_q12", "attn_scores_q12"),
             ("int12", "int16"): ("attention_q12k16", "attn_scores_q12k16"),
             ("int16", "int8"): ("attention_q16", "attn_scores_q16")}


def _attention(qk_shift: int):
    def twin(out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift,
             score_cut, out_mult, out_shift, exp_table):
        out[:] = K.attention(q, k_cache, v_cache, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift,
                             score_cut, out_mult, out_shift, exp_table, qk_shift)
    return twin


def _attention_params(keys: str, queries: str = "int8") -> tuple[Param, ...]:
    kt, qt = OUT[keys][0], OUT["int8" if queries == "int8" else "int16"][0]
    qdoc = "queries" if queries == "int8" else f"queries, {queries} in int16"
    return _p(f"""
        out         | int8_t *         | [n_heads*head_size] output
        q           | const {qt} *     | [n_heads*head_size] {qdoc}
        k_cache     | const {kt} *     | [context, n_kv_heads*head_size] K cache
        v_cache     | const int8_t *   | [context, n_kv_heads*head_size] V cache
        scratch     | int32_t *        | [heads per kv head, context] scores
        pos         | int32_t          | this token's position: rows 0..pos are read
        n_heads     | int32_t          | query heads
        n_kv_heads  | int32_t          | kv heads
        head_size   | int32_t          | elements per head
        score_mult  | int32_t          | the scores' multiplier into Q9 log2 units
        score_shift | int32_t          | its shift
        score_cut   | int32_t          | the largest score distance whose exp is not 0
        out_mult    | int32_t          | the output's multiplier
        out_shift   | int32_t          | its shift
        exp_table   | const uint16_t * | [512] 2^(-k/512) in Q(bits)""")


def attention(keys: str, queries: str = "int8") -> KernelSpec:
    """Causal GQA attention with an int8 or (`keys int16`) int16 K cache and int8, int12 or int16 queries
    (`queries`, the wider ones in int16); the tiled step calls the scores kernel of its q and K types and
    attn_exp_av_i8, whose integers are those of the untiled reference named by the spec."""
    name, scores = ATTENTION[queries, keys]
    shift = K.score_shift(K.QK_BITS[queries], K.QK_BITS[keys])
    return KernelSpec(name, "attention.c", _attention_params(keys, queries), _attention(shift), attention_work,
        "out = softmax(q . K / sqrt(hs)) . V over positions 0..pos, integer exp2, one division per head",
        calls=(scores, "attn_exp_av_i8"), bounds=K.I8, tiling="positions", chunk_cost=True, fragment="positions")


def _attention_k16t(out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift,
                    score_cut, out_mult, out_shift, exp_table, context):
    kt = k_cache.reshape(n_kv_heads * head_size, context)  # the cache holds a row per head dimension
    out[:] = K.attention(q, kt.T, v_cache, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift, score_cut,
                         out_mult, out_shift, exp_table)


def _rope_k16_cols(kt, x, cos_row, sin_row, n, head_size, pos, context):
    kt.reshape(n, context)[:, pos] = K.rope(x, 0, cos_row[None], sin_row[None], head_size, K.I16)


# int16 keys on the host: the K cache transposed, [kv_dim, context], so that attention scores positions in vectors
ROPE_K16_COLS = KernelSpec("rope_k16_cols", "host.c", _p("""
    kt        | int16_t *       | [kv_dim, context] the K cache, transposed (a row per head dimension): column pos
    x         | const int16_t * | [n] this token's keys
    cos_row   | const int16_t * | [head_size/2] Q14 cosines of this position
    sin_row   | const int16_t * | [head_size/2] Q14 sines of this position
    n         | int32_t         | elements (whole heads)
    head_size | int32_t         | elements per head
    pos       | int32_t         | this token's position: the column written
    context   | int32_t         | positions of the cache (its rows' length)"""), _rope_k16_cols, elementwise_work,
    "rope_i16's rotation of this token's keys, written into column pos of the transposed K cache (host.h)",
    bounds=K.I16)

ATTENTION_HOST_K16T = KernelSpec("attention_host_k16t", "host.c", tuple(
    Param("k_cache", p.ctype, "[kv_dim, context] K cache, transposed (rope_k16_cols writes it)")
    if p.name == "k_cache" else p for p in _attention_params("int16")) + _p("""
    context     | int32_t          | positions of the cache (the K rows' length)"""), _attention_k16t, attention_work,
    "out = softmax(q . K / sqrt(hs)) . V, int16 keys in a transposed cache scored a row of positions at a time "
    "(host.h)", bounds=K.I8, resident=("exp_table",), chunk_cost=True)


def _attention_t(qk_shift: int):
    """The twin of an attention whose K cache is transposed, [kv_dim, context] (rope_k16_cols writes it)."""
    def twin(out, q, k_cache, v_cache, scratch, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift,
             score_cut, out_mult, out_shift, exp_table, context):
        kt = k_cache.reshape(n_kv_heads * head_size, context)
        out[:] = K.attention(q, kt.T, v_cache, pos, n_heads, n_kv_heads, head_size, score_mult, score_shift, score_cut,
                             out_mult, out_shift, exp_table, qk_shift)
    return twin


def attention_host_q12(keys: str) -> KernelSpec:
    """The host's attention for int12 queries (host_q12.c): int8 keys in rows, or int16 keys in the transposed cache
    (rope_k16_cols writes it), K and V read in place."""
    shift = K.score_shift(K.QK_BITS["int12"], K.QK_BITS[keys])
    params = _attention_params(keys, "int12")
    if keys == "int8":
        return KernelSpec("attention_host_q12", "host_q12.c", params, _attention(shift), attention_work,
                          "out = softmax(q . K / sqrt(hs)) . V, int12 queries, int8 keys in place (host_q12.h)",
                          bounds=K.I8, resident=("exp_table",), chunk_cost=True)
    params = tuple(Param("k_cache", p.ctype, "[kv_dim, context] K cache, transposed (rope_k16_cols writes it)")
                   if p.name == "k_cache" else p for p in params) + _p("""
        context     | int32_t          | positions of the cache (the K rows' length)""")
    return KernelSpec("attention_host_q12k16t", "host_q12.c", params, _attention_t(shift), attention_work,
                      "out = softmax(q . K / sqrt(hs)) . V, int12 queries, int16 keys in a transposed cache scored a "
                      "row of positions at a time (host_q12.h)", bounds=K.I8, resident=("exp_table",), chunk_cost=True)


def attention_host(keys: str) -> KernelSpec:
    """The host's attention (host.c) with int8 keys: the same integers, K and V read in place in the caches (nothing
    streamed), one head at a time in loops that gcc unrolls or vectorizes."""
    return KernelSpec("attention_host_i8", "host.c", _attention_params(keys),
                      _attention(K.score_shift(K.QK_BITS["int8"], K.QK_BITS[keys])), attention_work,
                      "out = softmax(q . K / sqrt(hs)) . V over positions 0..pos, K and V in place (host.h)",
                      bounds=K.I8, resident=("exp_table",), chunk_cost=True)


SWIGLU = KernelSpec("swiglu_i8", "swiglu.c", _p("""
    h          | int8_t *        | [n] output
    gate       | const int8_t *  | [n] gate projection
    up         | const int8_t *  | [n] up projection
    silu_table | const int16_t * | [256] silu over int8
    mult       | int32_t         | the output's multiplier
    shift      | int32_t         | its shift
    n          | int32_t         | hidden units"""), _swiglu, elementwise_work,
    "h = sat8(round(silu(gate) * up * mult / 2^shift)), a calibrated scale", bounds=K.I8,
    split=Split(("h", "gate", "up"), "n"), prefill="flat", fragment="split")

# the token's scale spans the vector: two forks, the cores' spans of their shares, then the scale from them all and
# the shares' outputs (Split.passes); one core calls the kernel itself
SWIGLU_DYN = KernelSpec("swiglu_dyn_i8", "swiglu.c", _p("""
    h          | int8_t *        | [n] output
    shift_out  | uint8_t *       | [1] the next layer's shift for this token
    p          | int32_t *       | [n] scratch: the products
    gate       | const int8_t *  | [n] gate projection
    up         | const int8_t *  | [n] up projection
    silu_table | const int16_t * | [256] silu over int8
    base_shift | int32_t         | the next layer's shift at scale 2^0
    n          | int32_t         | hidden units"""), _swiglu_dyn, elementwise_work,
    "h = silu(gate) * up / 2^k rounded half up, k per token the smallest that fits int8; shift_out = base_shift - k",
    bounds=K.I8, split=Split(("h", "gate", "up"), "n", unit="n", passes=("swiglu_dyn_i8_span", "swiglu_dyn_i8_out")),
    calls=("swiglu_dyn_i8", "swiglu_dyn_i8_span", "swiglu_dyn_i8_out"), fragment="split")

SWIGLU_TOK = KernelSpec("swiglu_tok_i8", "swiglu.c", _p("""
    h          | int8_t *        | [n] output
    tok        | int32_t *       | [2] the token's factor {m, s} for the down projection
    p          | int32_t *       | [n] scratch: the products
    gate       | const int8_t *  | [n] gate projection
    up         | const int8_t *  | [n] up projection
    silu_table | const int16_t * | [256] silu over int8
    base_shift | int32_t         | the down projection's shift at factor 1
    n          | int32_t         | hidden units"""), _swiglu_tok, elementwise_work,
    "h = silu(gate) * up * 127 / max|silu(gate) * up| (an integer multiplier); the token's factor for the down "
    "projection", bounds=K.I8, split=Split(("h", "gate", "up"), "n", unit="n", passes=("swiglu_tok_i8_span",
                                                                                   "swiglu_tok_i8_out")),
    calls=("swiglu_tok_i8", "swiglu_tok_i8_span", "swiglu_tok_i8_out"), fragment="split")

# as swiglu_tok_i8: two forks, the cores' spans of their shares, then the scale from them all and the shares' outputs
# (Split.passes); one core calls the kernel itself
SWIGLU16_TOK = KernelSpec("swiglu16_tok_i8", "swiglu16.c", _p("""
    h          | int8_t *        | [n] output
    tok        | int32_t *       | [2] the token's factor {m, s} for the down projection
    p          | int32_t *       | [n] scratch: the products
    gate       | const int16_t * | [n] gate projection (int16)
    up         | const int16_t * | [n] up projection (int16)
    silu_table | const int16_t * | [513] silu over int16, an entry every 128 steps
    base_shift | int32_t         | the down projection's shift at factor 1
    n          | int32_t         | hidden units"""), _swiglu16_tok, elementwise_work,
    "h = silu(gate) * up * 127 / max|silu(gate) * up| on int16 gate and up, silu by a 513-entry table interpolated "
    "linearly; the token's factor for the down projection", bounds=K.I8,
    split=Split(("h", "gate", "up"), "n", unit="n", passes=("swiglu16_tok_i8_span", "swiglu16_tok_i8_out")),
    calls=("swiglu16_tok_i8", "swiglu16_tok_i8_span", "swiglu16_tok_i8_out"), fragment="split")



def swiglu_wide(g16: bool) -> KernelSpec:
    """The SwiGLU with a wide output (`swiglu int12 | int16`): the per-token absmax scale makes the token's largest
    qmax (2047 or 32767), stored in int16; two forks as swiglu_tok_i8's, one core calls the kernel itself."""
    name, t, gt = ("swiglu16_tok_i16", 513, "int16_t") if g16 else ("swiglu_tok_i16", 256, "int8_t")
    return KernelSpec(name, "wide.c", _p(f"""
        h          | int16_t *         | [n] output, within +-qmax
        tok        | int32_t *         | [2] the token's factor {{m, s}} for the down projection
        p          | int32_t *         | [n] scratch: the products
        gate       | const {gt} *  | [n] gate projection
        up         | const {gt} *  | [n] up projection
        silu_table | const int16_t *   | [{t}] silu over the gate's range
        qmax       | int32_t           | the token's largest output: 2047 (int12) or 32767 (int16)
        base_shift | int32_t           | the down projection's shift at factor 1
        n          | int32_t           | hidden units"""), _swiglu16_tok_wide if g16 else _swiglu_tok_wide,
        elementwise_work, "h = silu(gate) * up * qmax / max|silu(gate) * up| (an integer multiplier), int16 storage"
        + (", int16 gate and up (silu by a 513-entry table interpolated)" if g16 else "")
        + "; the token's factor for the down projection", bounds=K.I16,
        split=Split(("h", "gate", "up"), "n", unit="n", passes=(name + "_span", name + "_out")),
        calls=(name, name + "_span", name + "_out"), fragment="split")


SWIGLU_TOK_WIDE, SWIGLU16_TOK_WIDE = swiglu_wide(False), swiglu_wide(True)

RESIDUAL_ADD = KernelSpec("residual_add_i16", "residual_add.c", _p("""
    y | int16_t *       | [n] output (may equal a: in place)
    a | const int16_t * | [n] the residual stream
    b | const int16_t * | [n] what is added
    n | int32_t         | elements"""), _residual_add, elementwise_work, "y = sat16(a + b)", bounds=K.I16,
    split=Split(("y", "a", "b"), "n"), prefill="flat", fragment="split")

KERNELS: dict[str, KernelSpec] = {k.name: k for k in (
    EMBED, RMSNORM, *(gemv(o) for o in OUT), *(gemv_q4(o) for o in OUT), *(npu_linear(o) for o in OUT),
    *(npu_linear_tok(o) for o in OUT), *(gemv_rows(o) for o in OUT), *(gemv_q4_rows(o) for o in OUT), attention_host("int8"), ROPE_K16_COLS,
    *(gemv_rows_tok(o) for o in OUT), attention_host_q12("int8"), attention_host_q12("int16"),
    ATTENTION_HOST_K16T, *(rope(o) for o in ROPE), *(attention(k, q) for q, k in ATTENTION), SWIGLU, SWIGLU_DYN,
    RESIDUAL_ADD, RMSNORM_TOK, SWIGLU_TOK, SWIGLU16_TOK, SWIGLU_TOK_WIDE, SWIGLU16_TOK_WIDE, GEMV_X16_TOK,
    GEMV_W16_TOK, *(gemv_tok(o) for o in OUT), *(gemv_q4_tok(o) for o in OUT),
    *(gemv_pk(o) for o in OUT), *(gemv_pk_tok(o) for o in OUT),
    *RVV_KERNELS.values(), *RVV_Q4_KERNELS.values(), attention_k16_rvv(attention("int16")), swiglu_dyn_rvv(SWIGLU_DYN),
    *(attention_qk_rvv(attention(k, q)) for q, k in ATTENTION if (q, k) != ("int8", "int16")),
    swiglu16_tok_rvv(SWIGLU16_TOK), rmsnorm_tok_rvv(RMSNORM_TOK), rmsnorm_rvv(RMSNORM), residual_add_rvv(RESIDUAL_ADD),
    *(rope_rvv(rope(o)) for o in ROPE))}
# headers of kernel sources that not every build has: a build includes them when one of its steps calls into them
SOURCE_HEADERS = {"host.c": "host.h", "host_tok.c": "host_tok.h", "host_q12.c": "host_q12.h",
                  "gemv_rvv.c": "gemv_rvv.h", "gemv_tok_rvv.c": "gemv_tok_rvv.h",
                  "gemv_q4_rvv.c": "gemv_q4_rvv.h", "gemv_q4_tok_rvv.c": "gemv_q4_tok_rvv.h",
                  "attention_rvv.c": "attention_rvv.h", "attention_qk_rvv.c": "attention_qk_rvv.h",
                  "swiglu_rvv.c": "swiglu_rvv.h", "swiglu16_rvv.c": "swiglu16_rvv.h", "norm_rvv.c": "norm_rvv.h",
                  "rope_rvv.c": "rope_rvv.h", "rmsnorm_tok_rvv.c": "rmsnorm_tok_rvv.h",
                  "swiglu16.c": "swiglu16.h", "rmsnorm_tok.c": "rmsnorm_tok.h", "wide.c": "wide.h"}
# kernel sources that call into another's: the token GEMVs wrap the blocked GEMVs (a host build has no other use of
# them) and the host's rows GEMVs; norm_rvv takes the scalar path out of bounds
SOURCE_NEEDS = {"gemv_tok.c": ("gemv.c",), "norm_rvv.c": ("rmsnorm.c",), "gemv_tok_rvv.c": ("gemv_rvv.c",),
                "gemv_q4_rvv.c": ("gemv_rvv.c",), "gemv_q4_tok_rvv.c": ("gemv_q4_rvv.c", "gemv_rvv.c"),
                "swiglu16_rvv.c": ("swiglu16.c",), "rmsnorm_tok_rvv.c": ("rmsnorm_tok.c",),
                "attention_qk_rvv.c": ("attention_rvv.c",), "host_tok.c": ("host.c",)}
# what every build links besides its steps' kernels: the runtime (cluster, DMA, tiles, profile), argmax and the sampler,
# attention.c's pieces, the NPU driver
RUNTIME_FILES = ("argmax.c", "attention.c", "cluster.c", "dma.c", "npu.c", "profile.c", "sampler.c", "tiles.c")
