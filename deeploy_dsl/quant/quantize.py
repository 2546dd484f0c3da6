"""Post-training quantization: calibrate activation ranges on the float model, then turn every op's
float parameters into the integers the kernels in `kernels/twins.py` consume.

Scales are float only here, at compile time. Weights are symmetric int8 per output channel,
activations symmetric int8 per tensor, the residual stream int16 with one scale for all layers (so
residual adds need no rescaling), logits int32.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from types import MappingProxyType
from pathlib import Path

import numpy as np

from .. import progress
from ..errors import BUILTIN, Diagnostic, SpecError, WeightsError
from ..frontend.spec import Calibration, Dims
from ..kernels import twins as K
from ..kernels.layout import Q4_MAX, Q4_MIN, block_rows, q4_groups, q4_pack
from ..model.float_model import FloatModel, rope_angles
from ..model.modelfiles import FileProblem, read_regular
from ..model.weights import file_row, tensor_name
from .gptq import Hessians, gptq_int8, gptq_q4, group_scale, q4_row_scale

CALIB_SEQ_LEN = 256
# a calibration text is read and tokenized whole: 8 MiB is ~2 M tokens, more than the bounded pass takes
CALIB_TEXT_MAX_BYTES = 8 << 20
DYN_SHIFT_MIN = 16  # swiglu_dyn's k is at most 16 (|silu * up| <= 2^22)
# a token's factor p * 2^e takes at most this much off its consumers' shift (kernels.tok_factor: bitlen(p) + e):
# RMSNorm's is below 2^(31 - gain_shift) (|x * gain| <= 2^30, 2^39 / r <= 2^31), SwiGLU's below 2^22 (|silu * up|)
TOK_NORM_ROOM = 32
TOK_SWIGLU_ROOM = 23
TOK_SWIGLU16_ROOM = 31  # int16 gate and up (`gate_up int16`): |silu * up| <= 2^30, bitlen <= 31
LOGIT_BITS = 24  # logits are int32 with the largest calibrated logit at about 2^24


@dataclass(frozen=True)
class QuantModel:
    consts: dict  # name -> typed numpy array (weights, multipliers, tables)
    params: dict  # op name -> {param: int}
    scales: dict  # value name -> float scale (real = int * scale), for reports and dequantization

    def __post_init__(self):  # read-only: lowering reads these, nothing edits them
        for f in ("consts", "params", "scales"):
            object.__setattr__(self, f, MappingProxyType(dict(getattr(self, f))))


MSE_SAMPLES = 1 << 18  # values per tensor the MSE search looks at (a fixed-seed subsample beyond that)
MSE_STEPS = 64  # candidate ranges, from a quarter of the max to the max
WIDE = ("residual", "lm_head")  # int16 residual and int32 logits: their range is their max


def mse_range(a: np.ndarray, bits: int = 8) -> float:
    """The clipping range r minimising the mean squared error of symmetric `bits`-bit quantization of |a|
    (scale r / (2^(bits-1) - 1), values beyond r clipped): outliers stop stretching the grid of the rest."""
    a = np.abs(np.asarray(a, np.float64).ravel())
    top = float(a.max()) if a.size else 0.0
    if top == 0.0:
        return 0.0
    levels = (1 << (bits - 1)) - 1
    best, best_err = top, np.inf
    for r in np.linspace(top / 4, top, MSE_STEPS):
        s = r / levels
        err = float(np.mean((np.minimum(np.round(a / s), levels) * s - a) ** 2))
        if err < best_err:
            best, best_err = float(r), err
    return best


class _Ranges:
    """Observer collecting |activation| statistics per value name."""

    def __init__(self, stat: str, percentile: float):
        self.stat, self.pct = stat, percentile
        self.maxes: dict[str, float] = {}
        self.samples: dict[str, list[np.ndarray]] = {}
        self.overflow: list[str] = []  # values that were NaN or infinite, in the order the model computed them

    def __call__(self, name: str, a: np.ndarray) -> None:
        a = np.abs(a)
        top = float(a.max())
        if not math.isfinite(top) and name not in self.overflow:  # max() is NaN if any element is
            self.overflow.append(name)
        self.maxes[name] = max(self.maxes.get(name, 0.0), top)
        if self.stat in ("percentile", "mse"):
            self.samples.setdefault(name, []).append(a.ravel())

    def result(self) -> dict[str, float]:
        if self.stat == "max":
            return dict(self.maxes)
        if self.stat == "percentile":  # the wide ones keep their max: clipping buys int16/int32 nothing
            return {n: self.maxes[n] if n in WIDE else float(np.percentile(np.concatenate(v), self.pct))
                    for n, v in self.samples.items()}
        rng = np.random.default_rng(0)
        out = {}
        for n, v in sorted(self.samples.items()):
            a = np.concatenate(v)
            if n in WIDE:
                out[n] = self.maxes[n]
                continue
            if a.size > MSE_SAMPLES:
                a = rng.choice(a, MSE_SAMPLES, replace=False)
            out[n] = mse_range(a)
        return out


LINEAR_INPUTS = ("attn_norm", "attn.attention", "mlp_norm", "mlp.swiglu")  # what a layer's linear ops read


def calibrate(fm: FloatModel, cal: Calibration, tokenizer=None, hessians: Hessians | None = None) -> dict[str, float]:
    """Activation ranges from the float model on the calibration tokens (and, given `hessians`, the linear layers'
    input statistics that GPTQ rounding needs, from the same pass)."""
    ranges = _Ranges(cal.stat, cal.percentile)

    def obs(name: str, a: np.ndarray) -> None:
        ranges(name, a)
        if hessians is not None:
            hessians(name, a)
    with np.errstate(over="ignore", invalid="ignore"):  # an overflow is reported below, by the value it starts at
        calibration_pass(fm, cal, tokenizer, obs)
    if ranges.overflow:
        name = ranges.overflow[0]
        raise _numeric_error(fm, f"the float model overflows float32 at {name} on the calibration tokens "
                             f"(NaN or infinity): its weights are too large to quantize",
                             f"{name} is computed from {', '.join(_sources(name, fm.d))}")
    return ranges.result()


def calibration_pass(fm: FloatModel, cal: Calibration, tokenizer, observe) -> None:
    """The float model over the calibration tokens, every named activation to `observe`."""
    if cal.source == "samples":
        length = min(CALIB_SEQ_LEN, fm.d.context)
        with progress.task("calibration", length - 1) as tick:
            def counted(name: str, a: np.ndarray) -> None:
                observe(name, a)
                if name == "lm_head":  # the last activation of a forward step: one position of every sequence
                    tick()
            fm.sample(max(1, math.ceil(cal.tokens / length)), length, cal.seed, observe=counted)
    else:
        chunks = _text_chunks(fm, cal, tokenizer)
        with progress.task("calibration", len(chunks)) as tick:
            for chunk in chunks:
                fm.forward(chunk[None], 0, fm.new_cache(1, len(chunk)), observe)
                tick()


def _text_chunks(fm: FloatModel, cal: Calibration, tokenizer) -> list[np.ndarray]:
    """A calibration text's first `cal.tokens` ids (BOS first), cut into sequences of CALIB_SEQ_LEN, each read from
    position 0."""
    if tokenizer is None:
        raise SpecError([Diagnostic(cal.pos, "calibrating on a text file needs a tokenizer in the model block")])
    try:
        text = read_regular(Path(cal.source), CALIB_TEXT_MAX_BYTES, "calibration text")
    except FileProblem as e:  # changed since the .dply was checked
        raise SpecError([Diagnostic(cal.pos, f"calibration text {cal.source} {e}")]) from None
    ids = tokenizer.encode(text.decode("utf-8", errors="replace"), bos=True)[: cal.tokens]
    length = min(CALIB_SEQ_LEN, fm.d.context)
    return [np.array(ids[s:s + length]) for s in range(0, len(ids), length)]


def calibration_ids(fm: FloatModel, cal: Calibration, tokenizer=None, length: int | None = None) -> list[np.ndarray]:
    """The token sequences calibrate() reads, each from position 0, cut to their first `length` tokens (sampling
    stops there: a sample's first tokens do not depend on how long it runs)."""
    if cal.source != "samples":
        return [c[:length] for c in _text_chunks(fm, cal, tokenizer)]
    full = min(CALIB_SEQ_LEN, fm.d.context)
    return list(fm.sample(max(1, math.ceil(cal.tokens / full)), min(full, length or full), cal.seed))


def _sources(value: str, d: Dims) -> list[str]:
    """The file's tensors a value of the float model is computed from (for messages)."""
    layer = value.split(".")[1] if value.startswith("layers.") else None
    p = f"layers.{layer}." if layer is not None else ""
    ops = {"attn.q": ["attn.q"], "attn.k": ["attn.k"], "attn.v": ["attn.v"], "attn.attention": ["attn.q", "attn.k", "attn.v"],
           "attn_norm": ["attn_norm"], "mlp_norm": ["mlp_norm"], "mlp.gate": ["mlp.gate"], "mlp.up": ["mlp.up"],
           "mlp.swiglu": ["mlp.gate", "mlp.up"]}.get(value[len(p):]) if layer is not None else None
    if ops is not None:
        return [tensor_name(p + o, d) for o in ops]
    if value == "residual":
        return ["model.embed_tokens.weight", "every layer's o_proj and down_proj"]
    return [tensor_name(value, d)]


def _numeric_error(fm: FloatModel, message: str, hint: str = "") -> WeightsError:
    """A factor the integer model cannot represent: an error at the weights line (the weights cause it)."""
    return WeightsError([Diagnostic(fm.w.pos or BUILTIN, message, hint=hint)])


def _multiplier(fm: FloatModel, real: float, what: str, hint: str) -> tuple[int, int]:
    """K.quantize_multiplier, with a factor it cannot represent reported as `what` and the tensors in `hint`."""
    try:
        return K.quantize_multiplier(real)
    except ValueError:
        raise _numeric_error(fm, f"{what}: its requantization factor {real:.3g} is not a positive number below 2^31, "
                             "the largest a 32-bit multiplier takes", hint) from None


def _layer_multipliers(fm: FloatModel, op: str, reals: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, int]:
    """K.layer_multipliers; a row whose factor cannot be represented is reported by the file's tensor and row."""
    try:
        return K.layer_multipliers(reals)
    except ValueError:
        bad = ~(np.isfinite(reals) & (reals > 0))
        row = int(np.argmax(bad)) if bad.any() else int(np.argmax(reals))
        name = tensor_name(op, fm.d)
        raise _numeric_error(
            fm, f"tensor {name} row {file_row(op, row, fm.d)}: its requantization factor {reals[row]:.3g} (input scale "
            "x the row's weight scale / output scale) is not a positive number below 2^31, the largest a 32-bit "
            "multiplier takes", f"the row's largest weight is {float(np.abs(w[row]).max()):.3g}; the layer's output "
            "range from calibration cannot represent it") from None


def input_hessians(d: Dims) -> Hessians:
    """An empty collector for the inputs of every linear layer of a model."""
    return Hessians({f"layers.{i}.{n}" for i in range(d.layers) for n in LINEAR_INPUTS} | {"final_norm"})


def weights_i8(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int8: (q [rows, cols], scale [rows])."""
    s = np.abs(w).max(axis=1).astype(np.float64) / 127.0
    s[s == 0] = 1.0
    q = np.clip(np.round(w / s[:, None]), -127, 127).astype(np.int8)
    return q, s


def weights_i16(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric per-row int16 (`classifier int16`): (q [rows, cols] within +-32767, scale [rows])."""
    s = np.abs(w).max(axis=1).astype(np.float64) / 32767.0
    s[s == 0] = 1.0
    q = np.clip(np.round(w / s[:, None]), -32767, 32767).astype(np.int16)
    return q, s


def weights_q4(w: np.ndarray, group: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """int4 with a scale per group of `group` input channels: (q int8 [rows, cols] in [-8, 7], e uint8 [rows, groups],
    s [rows]) with w ~= q * e[:, col // group] * s[:, None]. The group scales are integers relative to the row's s
    (the integer path has one multiplier per row), and per group the clip (a fraction of the group's max) and so its
    e are the ones of least squared error (gptq.group_scale), with q rounded on the grid that e really gives."""
    w = np.asarray(w, np.float64)
    n_out, n_in = w.shape
    s = q4_row_scale(w)
    q = np.zeros(w.shape, np.int8)
    e = np.ones((n_out, q4_groups(n_in, group)), np.uint8)
    for g, c0 in enumerate(range(0, n_in, group)):
        wg = w[:, c0:c0 + group]
        e[:, g] = group_scale(wg, s)
        q[:, c0:c0 + group] = np.clip(np.round(wg / (e[:, g] * s)[:, None]), Q4_MIN, Q4_MAX)
    return q, e, s


def _mults(reals) -> tuple[np.ndarray, np.ndarray]:
    pairs = [K.quantize_multiplier(float(r)) for r in np.atleast_1d(reals)]
    return np.array([m for m, _ in pairs], np.int32), np.array([s for _, s in pairs], np.uint8)


def quantize(fm: FloatModel, ranges: dict[str, float], keys: str = "int8", groups: dict[str, int] | None = None,
             hessians: Hessians | None = None, dynamic: tuple[str, ...] = (), queries: str = "int8",
             on_gptq_layer=None, gate_up: str = "int8", swiglu: str = "int8", classifier: str = "int8") -> QuantModel:
    """With `hessians` (calibrate's), the weights are rounded by GPTQ (gptq.py) on the same grids, else to nearest.
    groups[op] > 0 (mapping.weight_groups): that linear layer's weights are int4 with a scale per groups[op] input
    channels (weights_q4), in layout.q4_pack's layout for the gemv_q4 kernels; else int8 per row. The embedding
    stays int8 (a table, one row read per token). dynamic ("swiglu"): the SwiGLU output has a per-token power-of-two
    scale (kernels.swiglu_dyn); the down projection's multipliers are made for the unit of silu * up, and the
    SwiGLU kernel hands it its shift minus the token's. dynamic "norm" / "final_norm" / "swiglu_absmax": the attention
    and MLP norms' / the final norm's / the SwiGLU's output has a per-token absmax scale (kernels.rmsnorm_tok, swiglu_tok); their consumers' multipliers
    are made for 1/127 of the calibrated (products') unit, with one shift for all of a producer's consumers.
    keys "int16": the k projection's output (and so RoPE on k and the K cache) is int16, calibrated for 16
    bits; attention's scores are then (q . k) / 2^K_SCORE_SHIFT (kernels.attn_scores), which the score
    multiplier takes back. queries "int12" | "int16": the q projection's output is calibrated for 12 (+-2047) or 16
    bits, and the scores are q . k / 2^score_shift(q bits, k bits), which the score multiplier takes back too.
    gate_up "int16" (with dynamic "swiglu_absmax"): the gate and up projections' outputs are calibrated for 16 bits,
    and silu is a 513-entry table over the int16 gate, interpolated linearly (kernels.silu16).
    swiglu "int12" | "int16" (with dynamic "swiglu_absmax"): the SwiGLU's per-token scale makes the token's largest
    2047 or 32767 instead of 127, and the down projection's multipliers are made for 1/2047 or 1/32767 of the products'
    unit. classifier "int16": lm_head's weights int16 per row (rounded to nearest, GPTQ or not), whatever `weights`
    says.
    on_gptq_layer() is called after each linear layer GPTQ has rounded (a progress count)."""
    d: Dims = fm.d
    k_bits, q_bits = K.QK_BITS[keys], K.QK_BITS[queries]
    w = fm.w
    consts: dict[str, np.ndarray] = {}
    params: dict[str, dict] = {}
    sc: dict[str, float] = {}

    def act_scale(name: str, bits: int = 8) -> float:
        r = ranges.get(name, 0.0)
        s = (r if r > 0 else 1.0) / float((1 << (bits - 1)) - 1)
        return s if s > 0 else 1.0 / float((1 << (bits - 1)) - 1)  # a range so small its scale underflows: as 0

    sc["residual"] = act_scale("residual", 16)

    def linear(op: str, src: str, wf: np.ndarray, s_in: float, s_out: float, wbits: int = 8):
        # rows in blocks of R, interleaved by column: the layout the GEMV kernel walks (layout.py);
        # a tied classifier gets its own blocked copy, since the embedding reads plain rows
        h = hessians.mean(src) if hessians is not None and wbits == 8 else None
        group = (groups or {}).get(op, 0) if wbits == 8 else 0
        try:
            if wbits == 16:  # int16 rounding error is far below what GPTQ corrects
                q, sw = weights_i16(wf)
                consts[op + ".wb"] = block_rows(q)
            elif group:
                q, e, sw = weights_q4(wf, group) if h is None else gptq_q4(wf, h, group)
                consts[op + ".wq4"] = q4_pack(q, e, group)
            else:
                q, sw = weights_i8(wf) if h is None else gptq_int8(wf, h)
                consts[op + ".wb"] = block_rows(q)
        except np.linalg.LinAlgError:  # GPTQ's Cholesky factor of the inputs' statistics
            raise _numeric_error(fm, f"tensor {tensor_name(op, d)}: GPTQ cannot factor the statistics of its inputs",
                                 "the calibration inputs are degenerate; round to nearest (drop 'gptq')") from None
        if h is not None and on_gptq_layer is not None:
            on_gptq_layer()
        live = q.any(axis=1)
        # one shift for the layer, a multiplier per row (kernels.layer_multipliers); the shift stays a per-row
        # array (all entries equal) that the tiles' DMA slices with the rows. An all-zero row's factor is
        # arbitrary (its outputs are 0): it takes the smallest, so that it cannot cost the other rows' precision
        reals = s_in * sw / s_out
        if live.any() and not live.all():
            reals = np.where(live, reals, reals[live].min())
        mult, shift = _layer_multipliers(fm, op, reals, wf)
        consts[op + ".mult"], consts[op + ".shift"] = mult, np.full(q.shape[0], shift, np.uint8)
        params[op] = {"weight": op + (".wq4" if group else ".wb"), "n_out": int(q.shape[0]),
                      "n_in": int(q.shape[1]), "group": group, **({"wbits": 16} if wbits == 16 else {})}

    def norm(op: str, g: np.ndarray):
        s_out = act_scale(op)
        sc[op] = s_out
        gr = g.astype(np.float64) / s_out
        top = float(np.abs(gr).max()) or 1.0
        if not top <= 32767.0:  # the gains are int16 steps of the output (a shift of 0 at most)
            c = int(np.argmax(np.abs(gr)))
            raise _numeric_error(fm, f"tensor {tensor_name(op, d)} channel {c}: the gain {float(g[c]):.3g} is {top:.3g} "
                                 "steps of the norm's int8 output, more than the 16 bits the integer RMSNorm gives "
                                 "a gain", f"the calibrated output range is {ranges.get(op, 0.0):.3g}")
        gshift = min(int(math.floor(math.log2(32767.0 / top))), 31)
        consts[op + ".gain"] = np.round(gr * (1 << gshift)).astype(np.int32)
        eps_q = int(round(d.norm_eps / sc["residual"] ** 2 * 65536))
        if eps_q >= 1 << 62:  # the C adds it to a 64-bit sum of squares
            raise _numeric_error(fm, f"rms_norm_eps {d.norm_eps:g} is {eps_q:.3g} in the integer RMSNorm's units "
                                 f"(2^16 / residual scale^2, the residual's range being {ranges.get('residual', 0):.3g}); "
                                 "its 64-bit sum takes at most 2^62", "a smaller eps, or larger activations")
        params[op] = {"gain_shift": gshift, "eps_q": eps_q}

    # embedding rows go straight into the int16 residual scale
    emb_q, emb_s = weights_i8(w.embed)
    consts["embed.w"] = emb_q
    try:
        consts["embed.mult"], consts["embed.shift"] = _mults(emb_s / sc["residual"])
    except ValueError:
        row = int(np.argmax(emb_s / sc["residual"]))
        raise _numeric_error(fm, f"tensor model.embed_tokens.weight row {row}: its factor into the residual's int16 "
                             f"scale, {emb_s[row] / sc['residual']:.3g}, is not below 2^31") from None
    cos, sin = rope_angles(d)
    consts["rope.cos"] = np.round(cos * (1 << K.ROPE_FRAC)).astype(np.int16)
    consts["rope.sin"] = np.round(sin * (1 << K.ROPE_FRAC)).astype(np.int16)
    exp_bits = K.exp_bits(d.context)
    consts["exp2"] = K.exp2_table(exp_bits)
    def share_shift(producer: str, ops: tuple[str, ...], need: int, hint: str) -> None:
        # a per-token producer hands all its consumers one shift: each keeps its multipliers, rescaled to the smallest
        base = min(int(consts[o + ".shift"][0]) for o in ops)
        for o in ops:
            drop = int(consts[o + ".shift"][0]) - base
            if drop:
                consts[o + ".mult"] = np.maximum(K.rshift_round(consts[o + ".mult"], drop), 1).astype(np.int32)
                consts[o + ".shift"] = np.full(consts[o + ".shift"].shape, base, np.uint8)
        if base < need:  # the token's factor may bring the shift down by `need`: it must stay >= 0
            raise _numeric_error(fm, f"tensor {tensor_name(ops[0], d)}: its requantization shift {base} leaves no room "
                                 f"for the per-token scale of {producer} (needs {need})", hint)
        params[producer].update(absmax=True, base_shift=base)

    tok_norm = "norm" in dynamic
    for li, lw in enumerate(w.layers):
        p = f"layers.{li}."
        norm(p + "attn_norm", lw.att_norm)
        # a per-token scale: the consumers' multipliers are made for 1/127 of the calibrated scale, the token's
        # factor (kernels.rmsnorm_tok) says how many of those one step of its output is
        s_in = sc[p + "attn_norm"] / 127.0 if tok_norm else sc[p + "attn_norm"]
        for name, wf in (("q", lw.wq), ("k", lw.wk), ("v", lw.wv)):
            sc[p + "attn." + name] = act_scale(p + "attn." + name, {"q": q_bits, "k": k_bits}.get(name, 8))
            linear(p + "attn." + name, p + "attn_norm", wf, s_in, sc[p + "attn." + name])
        if tok_norm:
            share_shift(p + "attn_norm", (p + "attn.q", p + "attn.k", p + "attn.v"),
                        TOK_NORM_ROOM - params[p + "attn_norm"]["gain_shift"], "try without 'dynamic norm'")
        s_att = sc[p + "attn.attention"] = act_scale(p + "attn.attention")
        unit = 1 << K.score_shift(q_bits, k_bits)  # q.k units in a score: 2^8 with int16 keys, 2^4 with int12 q, ...
        score = sc[p + "attn.q"] * sc[p + "attn.k"] * unit / math.sqrt(d.head_size) * math.log2(math.e) * (1 << K.EXP_FRAC)
        try:
            sm, ss, cut = K.score_multiplier(score)
        except ValueError:
            raise _numeric_error(fm, f"layer {li} attention: one integer step of q . k is {score / (1 << K.EXP_FRAC):.3g} "
                                 f"octaves of the softmax (q's range {ranges.get(p + 'attn.q', 0):.3g}, k's "
                                 f"{ranges.get(p + 'attn.k', 0):.3g}); the integer softmax takes at most "
                                 f"{2 ** 31 / (1 << K.EXP_SHIFT_MAX) / (1 << K.EXP_FRAC):g}",
                                 _largest_row(p + "attn.q", lw.wq, d) + "; " + _largest_row(p + "attn.k", lw.wk, d)) from None
        # out = (sum_t e_t v_t / sum_t e_t) * s_v / s_att; the kernel's shift also takes the exps' Q format out
        om, os_ = _multiplier(fm, sc[p + "attn.v"] / s_att, f"layer {li} attention output",
                              f"from tensor {tensor_name(p + 'attn.v', d)}'s range over the attention output's")
        if os_ + exp_bits > 62:  # keep the product's shift within int64: give up low mantissa bits
            om, os_ = int(K.rshift_round(om, os_ + exp_bits - 62)) or 1, 62 - exp_bits
        params[p + "attn.attention"] = {"score_mult": sm, "score_shift": ss, "score_cut": cut, "out_mult": om,
                                        "out_shift": os_ + exp_bits}
        linear(p + "attn.o", p + "attn.attention", lw.wo, s_att, sc["residual"])
        norm(p + "mlp_norm", lw.ffn_norm)
        s_in = sc[p + "mlp_norm"] / 127.0 if tok_norm else sc[p + "mlp_norm"]
        for name, wf in (("gate", lw.w1), ("up", lw.w3)):
            sc[p + "mlp." + name] = act_scale(p + "mlp." + name, 16 if gate_up == "int16" else 8)
            linear(p + "mlp." + name, p + "mlp_norm", wf, s_in, sc[p + "mlp." + name])
        if tok_norm:
            share_shift(p + "mlp_norm", (p + "mlp.gate", p + "mlp.up"),
                        TOK_NORM_ROOM - params[p + "mlp_norm"]["gain_shift"], "try without 'dynamic norm'")
        # SiLU is exact as a table: the gate is int8, so there are only 256 inputs; an int16 gate reads a table of
        # 513 (an entry every 2^7 steps, kernels.silu16) between which it interpolates
        xs = ((np.arange(256) - 128) if gate_up == "int8" else
              np.arange(K.SILU16_ENTRIES) * (1 << K.SILU16_STEP) - 32768) * sc[p + "mlp.gate"]
        silu = xs / (1.0 + np.exp(-xs))
        s_t = float(np.abs(silu).max()) / 32767.0 or 1.0
        consts[p + "mlp.swiglu.silu"] = np.round(silu / s_t).astype(np.int16)
        s_h = sc[p + "mlp.swiglu"] = act_scale(p + "mlp.swiglu")
        if "swiglu_absmax" in dynamic:  # the multipliers for 1/qmax of the products' unit (kernels.swiglu_tok)
            qmax = K.WIDE_MAX[K.SWIGLU_BITS[swiglu]]
            linear(p + "mlp.down", p + "mlp.swiglu", lw.w2, s_t * sc[p + "mlp.up"] / qmax, sc["residual"])
            params[p + "mlp.swiglu"] = {"qmax": qmax} if qmax != 127 else {}
            share_shift(p + "mlp.swiglu", (p + "mlp.down",), TOK_SWIGLU16_ROOM if gate_up == "int16" else TOK_SWIGLU_ROOM,
                        "try without 'dynamic swiglu_absmax'" + (" and 'gate_up int16'" if gate_up == "int16" else ""))
        elif "swiglu" in dynamic:
            s_p = s_t * sc[p + "mlp.up"]  # the unit of the products; a token's scale is s_p * 2^k
            linear(p + "mlp.down", p + "mlp.swiglu", lw.w2, s_p, sc["residual"])
            base = int(consts[p + "mlp.down.shift"][0])
            if base < DYN_SHIFT_MIN:  # the token's k (<= 16) must leave a shift >= 0
                raise _numeric_error(fm, f"tensor {tensor_name(p + 'mlp.down', d)}: its requantization shift {base} "
                                     f"leaves no room for the per-token SwiGLU scale (needs {DYN_SHIFT_MIN})",
                                     "its weights are too large for the residual's range; try without 'dynamic swiglu'")
            params[p + "mlp.swiglu"] = {"dynamic": True, "base_shift": base}
        else:
            hm, hs = _multiplier(fm, s_t * sc[p + "mlp.up"] / s_h, f"layer {li} SwiGLU",
                                 f"from tensors {tensor_name(p + 'mlp.gate', d)} and {tensor_name(p + 'mlp.up', d)}")
            params[p + "mlp.swiglu"] = {"mult": hm, "shift": hs}
            linear(p + "mlp.down", p + "mlp.swiglu", lw.w2, s_h, sc["residual"])
    norm("final_norm", w.final_norm)
    sc["lm_head"] = (ranges.get("lm_head", 0.0) or 1.0) / (1 << LOGIT_BITS)
    tok_final = "final_norm" in dynamic
    linear("lm_head", "final_norm", w.lm_head, sc["final_norm"] / 127.0 if tok_final else sc["final_norm"],
           sc["lm_head"], 16 if classifier == "int16" else 8)
    if tok_final:
        share_shift("final_norm", ("lm_head",), TOK_NORM_ROOM - params["final_norm"]["gain_shift"],
                    "try without 'dynamic final_norm'")
    return QuantModel(consts, params, sc)


def _largest_row(op: str, w: np.ndarray, d: Dims) -> str:
    """The row of a q or k projection that reaches furthest (largest sum of |w|), as the file numbers it."""
    norms = np.abs(np.asarray(w, np.float64)).sum(axis=1)
    row = int(np.argmax(norms))
    return (f"{tensor_name(op, d)}'s largest row is {file_row(op, row, d)} (sum |w| {norms[row]:.3g}, "
            f"the median row's {float(np.median(norms)):.3g})")
