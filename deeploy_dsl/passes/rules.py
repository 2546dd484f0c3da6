"""Lowering: rules turn each op, on the engine the mapping chose, into a call of one kernel (registry.py).

A rule is a pattern and a kernel. The pattern states every condition that decides the rule: the op's kind, its
engine, its output dtype, a linear layer's weight format and its input's scale, attention's K cache and query
dtypes, the SwiGLU's and the norms' output scale (calibrated, a power of two or an absmax per token); the first
rule (in the order given) whose pattern holds lowers the op, and the plan records its name.
A rule's builder gives the kernel's arguments by parameter name, and a line of math for the plan and the C.
The rule set is passed in: `rules_for(target)` is the cluster's rules, and the NPU's on targets that have one.
`deeploy rules` prints them (`rules_text`).
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Callable

from ..errors import Collector, Pos, SpecError
from ..frontend.spec import Deployment, Target
from ..ir.graph import Arg, Graph, Op, Plan, Step
from ..kernels import registry as R
from ..kernels import rvv as RVV
from ..kernels.kernelspec import KernelSpec
from ..kernels.twins import NPU_TOK_ROWS
from ..kinds import ArgKind, DType, Engine, OpKind, ValueKind
from ..quant.quantize import QuantModel
from .mapping import Mapping, Placement


@dataclass(frozen=True)
class Ctx:
    graph: Graph
    q: QuantModel
    dep: Deployment


def facts(op: Op, c: Ctx) -> dict:
    """What a pattern can ask of an op, besides its engine."""
    p = c.q.params.get(op.name, {})
    f = {"kind": op.kind, "out": c.graph.values[op.outputs[0]].dtype}
    if op.kind == OpKind.LINEAR:
        f["weights"] = "int4" if p.get("group") else "int16" if p.get("wbits") == 16 else "int8"
        f["x"] = c.graph.values[op.inputs[0]].dtype
        f["in_scale"] = "calibrated" if len(op.inputs) < 2 else \
            "factor" if c.graph.values[op.inputs[1]].dtype == "int32" else "shift"
    if op.kind == OpKind.ATTENTION:
        f["keys"] = c.graph.values[op.inputs[1]].dtype
        f["queries"] = c.graph.values[op.inputs[0]].dtype
    if op.kind == OpKind.SWIGLU:
        f["gate_up"] = c.graph.values[op.inputs[0]].dtype
        f["scale"] = "absmax" if p.get("absmax") else "per_token" if p.get("dynamic") else "calibrated"
    if op.kind == OpKind.RMSNORM:
        f["scale"] = "absmax" if p.get("absmax") else "calibrated"
    return f


@dataclass(frozen=True)
class Pattern:
    """The ops a rule lowers: every field that is set must hold. `when`, a last resort for a condition the fields
    cannot state, is a predicate (op, ctx) -> bool whose docstring says what it asks."""

    kind: OpKind
    engine: Engine = Engine.CLUSTER
    out: DType | None = None  # the output's dtype
    weights: str | None = None  # a linear layer's weight format: int8 | int4
    keys: str | None = None  # attention: the K cache's dtype (quantize `keys`)
    queries: str | None = None  # attention: q's dtype (quantize `queries`)
    gate_up: str | None = None  # swiglu: its gate and up inputs' dtype (quantize `gate_up`)
    scale: str | None = None  # swiglu, rmsnorm: the output's scale, calibrated | per_token (a power of two) | absmax
    in_scale: str | None = None  # linear: its input's scale, calibrated | shift (a power of two per token) | factor
    x: str | None = None  # linear: its input's dtype; int8 unless the pattern says otherwise (quantize `swiglu`)
    isa: tuple[str, ...] = ()  # the ISA extensions the kernel needs on the target's cores (its `isa`)
    vlen: int = 0  # and the vector length it needs at least (the target's `vlen`)
    when: Callable | None = None

    def __post_init__(self):  # a misspelt op kind, engine or dtype fails where the rule is declared
        object.__setattr__(self, "kind", OpKind(self.kind))
        object.__setattr__(self, "engine", Engine(self.engine))
        if self.out is not None:
            object.__setattr__(self, "out", DType(self.out))
        if self.kind == OpKind.LINEAR and self.x is None:  # every GEMV but the wide one reads int8
            object.__setattr__(self, "x", "int8")

    def matches(self, f: dict, engine: str, op: Op, c: Ctx) -> bool:
        for key in ("kind", "out", "weights", "x", "keys", "queries", "gate_up", "scale", "in_scale"):
            want = getattr(self, key)
            if want is not None and f.get(key) != want:
                return False
        if self.isa and not (set(self.isa) <= set(c.dep.target.extensions) and c.dep.target.vlen >= self.vlen):
            return False
        return engine == self.engine and (self.when is None or bool(self.when(op, c)))

    @property
    def isa_text(self) -> str:
        """What the pattern needs of the cores' ISA, for the plan's why and `deeploy rules`."""
        return f"isa has {' + '.join(self.isa)}" + (f", vlen >= {self.vlen}" if self.vlen else "") if self.isa else ""

    @property
    def text(self) -> str:
        parts = [f"{self.kind} on {self.engine}"] + [f"{k} {getattr(self, k)}"
                                                     for k in ("out", "weights", "x", "keys", "queries", "gate_up",
                                                               "scale", "in_scale")
                                                     if getattr(self, k) is not None]
        if self.isa:
            parts.append(self.isa_text)
        if self.when is not None:
            parts.append(f"when {(self.when.__doc__ or self.when.__name__).strip()}")
        return ", ".join(parts)


@dataclass(frozen=True)
class Rule:
    name: str
    pattern: Pattern
    kernel: KernelSpec
    build: Callable  # (op, ctx, kernel) -> ({parameter: Arg}, math): its docstring says what the rule does

    @property
    def kind(self) -> str:
        return self.pattern.kind

    @property
    def engine(self) -> str:
        return self.pattern.engine

    @property
    def doc(self) -> str:
        return " ".join((self.build.__doc__ or "").split())


# ---- arguments ---------------------------------------------------------------------------------------------------

def _buf(name: str, row: str | None = None) -> Arg:
    return Arg(ArgKind.BUF, name, row=row)


def _const(name: str, row: str | None = None) -> Arg:
    return Arg(ArgKind.CONST, name, row=row)


def _int(v: int) -> Arg:
    return Arg(ArgKind.INT, value=int(v))


def _shift_arg(op: Op) -> Arg:
    """A linear layer's shift: its own, or (an input with a per-token scale) this token's, which its producer wrote."""
    return _buf(op.inputs[1]) if len(op.inputs) > 1 else _const(op.name + ".shift")


def _weights(op: Op, p: dict, k: KernelSpec) -> Arg:
    """A linear layer's weights: as the quantizer stores them (GEMV blocks), or the kernel's own layout
    (_step_consts makes that constant)."""
    return _const(op.name + k.weights[0]) if k.weights else _const(p["weight"])


# ---- builders: (op, ctx, kernel) -> ({parameter: Arg}, math) --------------------------------------------------------

def build_linear(op: Op, c: Ctx, k: KernelSpec):
    """A GEMV over weight rows in blocks of 8, requantized with a multiplier per row and one shift (int4 weights:
    their group scales and the group size too)."""
    p = c.q.params[op.name]
    n_out, n_in = p["n_out"], p["n_in"]
    args = dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), w=_weights(op, p, k),
                mult=_const(op.name + ".mult"), shift=_shift_arg(op), n_in=_int(n_in), n_out=_int(n_out))
    w = f"W[{n_out},{n_in}]"
    if k.has_param("group"):
        args["group"] = _int(p["group"])
        w += f" (int4, a scale per {p['group']} columns)"
    return args, f"{op.outputs[0]}[{n_out}] = requant({w} @ {op.inputs[0]}[{n_in}])"


def build_linear_q12(op: Op, c: Ctx, k: KernelSpec):
    """The q projection into int12 queries: the int16 GEMV (int16 saturation) at the queries' 12-bit scale; RoPE on q
    then saturates them to +-2047."""
    return build_linear(op, c, k)


def build_npu_q12(op: Op, c: Ctx, k: KernelSpec):
    """The q projection into int12 queries as an NPU job with int16 output at the queries' 12-bit scale; RoPE on q
    then saturates them to +-2047."""
    return build_npu(op, c, k)


def build_linear_tok(op: Op, c: Ctx, k: KernelSpec):
    """The GEMV of an activation with a per-token factor: each row's multiplier times the token's (one high multiply per
    row, once per token), the token's shift; the inner loops and the requantization are the GEMV's."""
    args, math = build_linear(op, c, k)
    return args, math.replace(" = requant(", " = requant_token(", 1)


def build_npu(op: Op, c: Ctx, k: KernelSpec):
    """One NPU job; the weights packed in the NPU's layout in its own memory."""
    p = c.q.params[op.name]
    n_out, n_in = p["n_out"], p["n_in"]
    return dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), w=_weights(op, p, k),
                mult=_const(op.name + ".mult"), shift=_shift_arg(op), n_in=_int(n_in), n_out=_int(n_out)), \
        f"{op.outputs[0]}[{n_out}] = requant(W[{n_out},{n_in}] @ {op.inputs[0]}[{n_in}]), one NPU job"


def build_npu_tok(op: Op, c: Ctx, k: KernelSpec):
    """NPU jobs on an input with a per-token factor: the core makes the rows' multipliers times the token's, a job per
    NPU_TOK_ROWS rows with the token's shift (int12 queries: the int16 output at their 12-bit scale)."""
    args, math = build_npu(op, c, k)
    return args, math.replace(" = requant(", " = requant_token(", 1).replace("one NPU job", f"NPU jobs of {NPU_TOK_ROWS} rows")


def build_rmsnorm(op: Op, c: Ctx, k: KernelSpec):
    """RMSNorm of the int16 residual stream into int8; the cores share out the elements, each computing the rms."""
    p, dim = c.q.params[op.name], c.dep.model.dims.dim
    return dict(y=_buf(op.outputs[0]), x=_buf(op.inputs[0]), gain=_const(op.name + ".gain"),
                gain_shift=_int(p["gain_shift"]), eps_q=_int(p["eps_q"]), dim=_int(dim), lo=_int(0), hi=_int(dim)), \
        f"{op.outputs[0]} = int8(x / rms(x) * gain), x int16[{dim}]"


def build_embed(op: Op, c: Ctx, k: KernelSpec):
    """The token's embedding row, requantized into the int16 residual stream; only that row is read."""
    return dict(x=_buf(op.outputs[0]), row=_const("embed.w", "token"), mult=_const("embed.mult", "token"),
                shift=_const("embed.shift", "token"), dim=_int(c.dep.model.dims.dim)), \
        "x = int16(embedding row of token)"


def build_rope(op: Op, c: Ctx, k: KernelSpec):
    """RoPE with Q14 sin/cos tables, the row of this position; the cores share out whole heads."""
    n = c.graph.values[op.inputs[0]].shape[0]
    return dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), cos_row=_const("rope.cos", "pos"),
                sin_row=_const("rope.sin", "pos"), n=_int(n), head_size=_int(c.dep.model.dims.head_size)), \
        f"rotate pairs of {op.inputs[0]}[{n}] by pos * theta_i (Q14 tables)"


def build_attention(op: Op, c: Ctx, k: KernelSpec):
    """Grouped-query attention over the cache, K and V streamed in tiles of positions: the scores of a tile of K,
    then the exps and exp-weighted V of a tile of V, one division per head at the end."""
    d, p = c.dep.model.dims, c.q.params[op.name]
    q, kc, vc = op.inputs
    return dict(out=_buf(op.outputs[0]), q=_buf(q), k_cache=_buf(kc), v_cache=_buf(vc), scratch=_buf(op.outputs[1]),
                pos=Arg(ArgKind.POS), n_heads=_int(d.heads), n_kv_heads=_int(d.kv_heads), head_size=_int(d.head_size),
                score_mult=_int(p["score_mult"]), score_shift=_int(p["score_shift"]), score_cut=_int(p["score_cut"]),
                out_mult=_int(p["out_mult"]), out_shift=_int(p["out_shift"]), exp_table=_const("exp2")), \
        "out = softmax(q . K[0..pos] / sqrt(hs)) . V[0..pos], integer exp2, one division per head"


def build_swiglu(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up by a 256-entry silu table, requantized with the calibrated scale."""
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    return dict(h=_buf(op.outputs[0]), gate=_buf(op.inputs[0]), up=_buf(op.inputs[1]),
                silu_table=_const(op.name + ".silu"), mult=_int(p["mult"]), shift=_int(p["shift"]), n=_int(n)), \
        f"h = int8(silu(gate) * up), silu by 256-entry table, [{n}]"


def build_swiglu_dyn(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up with a power-of-two scale per token, which it hands to the down projection as its shift;
    the vector is one unit of work (the last core takes it)."""
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    return dict(h=_buf(op.outputs[0]), shift_out=_buf(op.outputs[1]), p=_buf(op.outputs[2]), gate=_buf(op.inputs[0]),
                up=_buf(op.inputs[1]), silu_table=_const(op.name + ".silu"), base_shift=_int(p["base_shift"]),
                n=_int(n)), \
        f"h = int8(silu(gate) * up / 2^k), k per token from max |silu(gate) * up|; shift_out = base_shift - k, [{n}]"


def build_rmsnorm_tok(op: Op, c: Ctx, k: KernelSpec):
    """RMSNorm into int8 with a per-token absmax scale: x * gain scaled so the token's largest is 127 by an integer
    multiplier; the token's factor (its rms and that scale) goes to the consumers, which fold it into their
    requantization. Two passes over all cores: each its share's span, then each the scale from every span and its
    share's outputs."""
    p, dim = c.q.params[op.name], c.dep.model.dims.dim
    return dict(y=_buf(op.outputs[0]), tok=_buf(op.outputs[1]), x=_buf(op.inputs[0]), gain=_const(op.name + ".gain"),
                gain_shift=_int(p["gain_shift"]), eps_q=_int(p["eps_q"]), base_shift=_int(p["base_shift"]),
                dim=_int(dim)), \
        f"{op.outputs[0]} = int8(x * gain * 127 / max|x * gain|), tok = its factor with 1 / rms(x), x int16[{dim}]"


def build_swiglu_tok(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up with a per-token absmax scale: the products scaled so the token's largest is 127 by an integer
    multiplier, whose inverse goes to the down projection as the token's factor; the vector is one unit of work."""
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    return dict(h=_buf(op.outputs[0]), tok=_buf(op.outputs[1]), p=_buf(op.outputs[2]), gate=_buf(op.inputs[0]),
                up=_buf(op.inputs[1]), silu_table=_const(op.name + ".silu"), base_shift=_int(p["base_shift"]),
                n=_int(n)), \
        f"h = int8(silu(gate) * up * 127 / max|silu(gate) * up|), tok = its factor for the down projection, [{n}]"


def build_swiglu16_tok(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up on int16 gate and up with a per-token absmax scale: silu by a 513-entry table over the int16 range,
    interpolated linearly in integers; the products scaled so the token's largest is 127 by an integer multiplier, whose
    inverse goes to the down projection as the token's factor. Two passes over all cores: each its share's products and
    their span, then each the scale from every span and its share's outputs."""
    args, _ = build_swiglu_tok(op, c, k)
    n = c.graph.values[op.outputs[0]].shape[0]
    return args, \
        (f"h = int8(silu(gate) * up * 127 / max|silu(gate) * up|), gate and up int16, silu by 513-entry table "
         f"interpolated; tok = its factor for the down projection, [{n}]")


def build_swiglu_tok_wide(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up with a per-token absmax scale to a wide output (`swiglu int12 | int16`): the token's largest
    becomes 2047 or 32767 (int16 storage), the token's factor goes to the down projection. Two passes over all cores as
    the int8 output's."""
    args, _ = build_swiglu_tok(op, c, k)
    qmax, n = c.q.params[op.name]["qmax"], c.graph.values[op.outputs[0]].shape[0]
    return {**args, "qmax": _int(qmax)}, \
        f"h = int16(silu(gate) * up * {qmax} / max|silu(gate) * up|), tok = its factor for the down projection, [{n}]"


def build_linear_wide(op: Op, c: Ctx, k: KernelSpec):
    """A GEMV with a wide operand whose activations carry a per-token factor (wide.c): the down projection on an
    int12/int16 SwiGLU output, or the classifier on int16 weights; int32 sums (the checker bounds n_in), each row
    requantized in 64 bits with its multiplier times the token's."""
    args, math = build_linear_tok(op, c, k)
    return args, math + (", W int16" if k.name == "gemv_w16_tok_i32" else f", x {c.graph.values[op.inputs[0]].dtype}")


def build_residual_add(op: Op, c: Ctx, k: KernelSpec):
    """The residual add, saturating to int16, in place."""
    n = c.graph.values[op.outputs[0]].shape[0]
    return dict(y=_buf(op.outputs[0]), a=_buf(op.inputs[0]), b=_buf(op.inputs[1]), n=_int(n)), \
        f"{op.outputs[0]} += {op.inputs[1]} (int16, saturating, in place)"


def _rv32_cores(op: Op, c: Ctx) -> bool:
    """the target's cores are RV32 (not the host, whose GEMVs are its own or, for a per-token factor, the blocked one)
    and its memory levels align buffers to 4 bytes (the packed GEMV reads its tiles as 32-bit words)"""
    return c.dep.target.isa != "host" and all(lvl.alignment % 4 == 0 for lvl in c.dep.memory)


def build_linear_pk(op: Op, c: Ctx, k: KernelSpec):
    """A GEMV with two MACs per multiply: two rows' int8 weights in one 32-bit word (.wp, kernels.packed), the columns
    in chunks whose 16-bit partial sums the compiler proved for any int8 activations; the same integers as the blocked
    GEMV, which tiling falls back to when L1 cannot hold a block of packed rows (int12 queries: the int16 output)."""
    args, math = build_linear(op, c, k)
    return args, math + ", two rows a 32-bit word (.wp)"


def build_linear_pk_tok(op: Op, c: Ctx, k: KernelSpec):
    """The packed GEMV on activations with a per-token factor: each row's multiplier times the token's, the token's shift
    (gemv_tok.c), the packed inner loops (int12 queries: the int16 output)."""
    args, math = build_linear_pk(op, c, k)
    return args, math.replace(" = requant(", " = requant_token(", 1)


K = R.KERNELS
CLUSTER_RULES: tuple[Rule, ...] = (
    Rule("embed_i16", Pattern("embed"), R.EMBED, build_embed),
    Rule("rmsnorm_i16_to_i8_absmax", Pattern("rmsnorm", scale="absmax"), R.RMSNORM_TOK, build_rmsnorm_tok),
    Rule("rmsnorm_i16_to_i8", Pattern("rmsnorm"), R.RMSNORM, build_rmsnorm),
    # int8 weights on RV32 cores: the packed GEMV (two MACs per multiply), before the blocked GEMV's rules below
    *(Rule(f"linear_pk_tok_i{b}_cluster", Pattern("linear", out=f"int{b}", weights="int8", in_scale="factor",
                                                  when=_rv32_cores), K[f"gemv_pk_tok_i{b}"], build_linear_pk_tok)
      for b in (8, 16, 32)),
    Rule("linear_pk_q12_tok_cluster", Pattern("linear", out="int12", weights="int8", in_scale="factor", when=_rv32_cores),
         K["gemv_pk_tok_i16"], build_linear_pk_tok),
    *(Rule(f"linear_pk_i{b}_cluster", Pattern("linear", out=f"int{b}", weights="int8", when=_rv32_cores),
           K[f"gemv_pk_i{b}"], build_linear_pk) for b in (8, 16, 32)),
    Rule("linear_pk_q12_cluster", Pattern("linear", out="int12", weights="int8", when=_rv32_cores), K["gemv_pk_i16"],
         build_linear_pk),
    *(Rule(f"linear{q}_tok_i{b}_cluster", Pattern("linear", out=f"int{b}", weights=w, in_scale="factor"),
           K[f"gemv{q}_tok_i{b}"], build_linear_tok) for q, w in (("", "int8"), ("_q4", "int4")) for b in (8, 16, 32)),
    Rule("linear_i8_cluster", Pattern("linear", out="int8", weights="int8"), K["gemv_i8"], build_linear),
    Rule("linear_q4_i8_cluster", Pattern("linear", out="int8", weights="int4"), K["gemv_q4_i8"], build_linear),
    Rule("linear_q4_i16_cluster", Pattern("linear", out="int16", weights="int4"), K["gemv_q4_i16"], build_linear),
    Rule("linear_q4_i32_cluster", Pattern("linear", out="int32", weights="int4"), K["gemv_q4_i32"], build_linear),
    Rule("linear_i16_cluster", Pattern("linear", out="int16", weights="int8"), K["gemv_i16"], build_linear),
    Rule("linear_i32_cluster", Pattern("linear", out="int32", weights="int8"), K["gemv_i32"], build_linear),
    Rule("linear_q12_tok_cluster", Pattern("linear", out="int12", weights="int8", in_scale="factor"), K["gemv_tok_i16"],
         build_linear_tok),
    Rule("linear_q4_q12_tok_cluster", Pattern("linear", out="int12", weights="int4", in_scale="factor"),
         K["gemv_q4_tok_i16"], build_linear_tok),
    Rule("linear_q12_cluster", Pattern("linear", out="int12", weights="int8"), K["gemv_i16"], build_linear_q12),
    Rule("linear_q4_q12_cluster", Pattern("linear", out="int12", weights="int4"), K["gemv_q4_i16"], build_linear_q12),
    Rule("rope_i8_q14", Pattern("rope", out="int8"), K["rope_i8"], build_rope),
    Rule("rope_i16_q14", Pattern("rope", out="int16"), K["rope_i16"], build_rope),
    Rule("rope_q12_q14", Pattern("rope", out="int12"), K["rope_q12"], build_rope),
    Rule("attention_i8_gqa", Pattern("attention", keys="int8", queries="int8"), K["attention_i8"], build_attention),
    Rule("attention_k16_gqa", Pattern("attention", keys="int16", queries="int8"), K["attention_k16"], build_attention),
    Rule("attention_q12_gqa", Pattern("attention", keys="int8", queries="int12"), K["attention_q12"], build_attention),
    Rule("attention_q12k16_gqa", Pattern("attention", keys="int16", queries="int12"), K["attention_q12k16"],
         build_attention),
    Rule("attention_q16_gqa", Pattern("attention", keys="int8", queries="int16"), K["attention_q16"], build_attention),
    Rule("swiglu_i8_table", Pattern("swiglu", gate_up="int8", scale="calibrated"), R.SWIGLU, build_swiglu),
    Rule("swiglu_i8_per_token", Pattern("swiglu", gate_up="int8", scale="per_token"), R.SWIGLU_DYN, build_swiglu_dyn),
    Rule("swiglu_i8_absmax", Pattern("swiglu", out="int8", gate_up="int8", scale="absmax"), R.SWIGLU_TOK,
         build_swiglu_tok),
    Rule("swiglu16_i8_absmax", Pattern("swiglu", out="int8", gate_up="int16", scale="absmax"), R.SWIGLU16_TOK,
         build_swiglu16_tok),
    # a wide SwiGLU output (`swiglu int12 | int16`, int16 storage) and the down projection that reads it
    *(Rule(f"swiglu{g}_i{o[3:]}_absmax", Pattern("swiglu", out=o, gate_up=f"int{g or 8}", scale="absmax"),
           R.SWIGLU16_TOK_WIDE if g else R.SWIGLU_TOK_WIDE, build_swiglu_tok_wide)
      for g in ("", "16") for o in ("int12", "int16")),
    *(Rule(f"linear_x{x[3:]}_tok_cluster", Pattern("linear", out="int16", weights="int8", x=x, in_scale="factor"),
           R.GEMV_X16_TOK, build_linear_wide) for x in ("int12", "int16")),
    # int16 classifier weights (`classifier int16`), on the final norm's per-token factor
    Rule("linear_w16_tok_i32_cluster", Pattern("linear", out="int32", weights="int16", in_scale="factor"),
         R.GEMV_W16_TOK, build_linear_wide),
    Rule("residual_add_i16", Pattern("residual_add"), R.RESIDUAL_ADD, build_residual_add),
)
NPU_RULES: tuple[Rule, ...] = tuple(
    Rule(f"linear_tok_i{b}_npu", Pattern("linear", "npu", out=f"int{b}", weights="int8", in_scale="factor"),
         K[f"npu_linear_tok_i{b}"], build_npu_tok) for b in (8, 16, 32)) + (
    Rule("linear_q12_tok_npu", Pattern("linear", "npu", out="int12", weights="int8", in_scale="factor"),
         K["npu_linear_tok_i16"], build_npu_tok),) + tuple(
    Rule(f"linear_i{b}_npu", Pattern("linear", "npu", out=f"int{b}", weights="int8"), K[f"npu_linear_i{b}"], build_npu)
    for b in (8, 16, 32)) + (
    Rule("linear_q12_npu", Pattern("linear", "npu", out="int12", weights="int8"), K["npu_linear_i16"], build_npu_q12),)


def build_linear_rows(op: Op, c: Ctx, k: KernelSpec):
    """A GEMV over contiguous weight rows read where they are, which gcc vectorizes; requantized with a multiplier
    per row and one shift (int4 weights: their group scales and the group size too)."""
    args, math = build_linear(op, c, k)
    return args, math + ", rows in place"


def build_attention_host(op: Op, c: Ctx, k: KernelSpec):
    """Grouped-query attention over the cache, K and V read in place: per head its scores, their exps and the
    exp-weighted V, one division per head at the end."""
    return build_attention(op, c, k)


def build_rope_cols(op: Op, c: Ctx, k: KernelSpec):
    """RoPE on this token's int16 keys with Q14 sin/cos tables, written into column pos of the K cache, which the
    host keeps transposed (a row per head dimension)."""
    d = c.dep.model.dims
    n = c.graph.values[op.inputs[0]].shape[0]
    return dict(kt=_buf(op.outputs[0]), x=_buf(op.inputs[0]), cos_row=_const("rope.cos", "pos"),
                sin_row=_const("rope.sin", "pos"), n=_int(n), head_size=_int(d.head_size), pos=Arg(ArgKind.POS),
                context=_int(d.context)), \
        f"rotate pairs of {op.inputs[0]}[{n}] by pos * theta_i (Q14 tables) into column pos of {op.outputs[0]}"


def build_attention_cols(op: Op, c: Ctx, k: KernelSpec):
    """Grouped-query attention over the cache, int16 keys kept transposed and read in place: per head its scores a
    row of positions at a time, their exps and the exp-weighted V, one division per head at the end."""
    args, math = build_attention(op, c, k)
    return dict(args, context=_int(c.dep.model.dims.context)), math + ", K transposed"


def build_linear_rows_q12(op: Op, c: Ctx, k: KernelSpec):
    """The q projection into int12 queries: the host's int16 GEMV over contiguous rows read where they are, at the
    queries' 12-bit scale; RoPE on q then saturates them to +-2047."""
    args, math = build_linear(op, c, k)
    return args, math + ", rows in place"


def build_linear_rows_tok(op: Op, c: Ctx, k: KernelSpec):
    """The GEMV of an activation with a per-token factor over contiguous weight rows read where they are: each row's
    multiplier times the token's (one high multiply per row, once per token), the token's shift; the dot products and
    the requantization are the host's GEMV's."""
    args, math = build_linear_tok(op, c, k)
    return args, math + ", rows in place"


def _writes_k_cache(op: Op, c: Ctx) -> bool:
    """it writes the K cache of an attention with int8 or int12 queries (attention_k16t_host's or
    attention_q12k16t_host's, which read it transposed)"""
    out = op.outputs[0]
    return c.graph.values[out].kind == ValueKind.KV and all(
        c.graph.values[a.inputs[0]].dtype in (DType.INT8, DType.INT12) for a in c.graph.ops
        if a.kind == OpKind.ATTENTION and a.inputs[1] == out)


# the host CPU (target isa host): kernels shaped for its SIMD and caches, tried before the cluster's
def _no_token_factor(op: Op, c: Ctx) -> bool:
    """its activations carry no per-token factor (quantize dynamic norm, final_norm, swiglu_absmax: the token GEMV)"""
    return facts(op, c).get("in_scale") != "factor"


HOST_RULES: tuple[Rule, ...] = tuple(
    Rule(f"linear_i{b}_host", Pattern("linear", out=f"int{b}", weights="int8", when=_no_token_factor),
         K[f"gemv_rows_i{b}"], build_linear_rows) for b in (8, 16, 32)) + tuple(
    Rule(f"linear_q4_i{b}_host", Pattern("linear", out=f"int{b}", weights="int4", when=_no_token_factor),
         K[f"gemv_q4_rows_i{b}"], build_linear_rows) for b in (8, 16, 32)) + (
    Rule("attention_i8_host", Pattern("attention", keys="int8", queries="int8"), K["attention_host_i8"], build_attention_host),
    Rule("rope_k16_cols_host", Pattern("rope", out="int16", when=_writes_k_cache), R.ROPE_K16_COLS, build_rope_cols),
    Rule("attention_k16t_host", Pattern("attention", keys="int16", queries="int8"), R.ATTENTION_HOST_K16T, build_attention_cols),
    Rule("linear_q12_host", Pattern("linear", out="int12", weights="int8", when=_no_token_factor), K["gemv_rows_i16"],
         build_linear_rows_q12),
    *(Rule(f"linear_tok_i{b}_host", Pattern("linear", out=f"int{b}", weights="int8", in_scale="factor"),
           K[f"gemv_rows_tok_i{b}"], build_linear_rows_tok) for b in (8, 16, 32)),
    Rule("linear_q12_tok_host", Pattern("linear", out="int12", weights="int8", in_scale="factor"),
         K["gemv_rows_tok_i16"], build_linear_rows_tok),
    Rule("attention_q12_host", Pattern("attention", keys="int8", queries="int12"), K["attention_host_q12"],
         build_attention_host),
    Rule("attention_q12k16t_host", Pattern("attention", keys="int16", queries="int12"), K["attention_host_q12k16t"],
         build_attention_cols),
)


def build_linear_rvv(op: Op, c: Ctx, k: KernelSpec):
    """A GEMV on the cores' vector unit: 32 output rows across the lanes, vqdot.vx adding 4 activations' products to
    every row at once (no reduction per row), weights in the vector layout chosen at compile time (.wv:
    kernels.rvv.rvv_pack); requantized with a multiplier per row and one shift."""
    args, math = build_linear(op, c, k)
    args.update(lo=_int(0), hi=_int(args["n_out"].value))
    return args, math + f", vector layout .wv ({RVV.RVV_ROWS} rows across the lanes, quads of 4 columns)"


def _calibrated_norm(op: Op, c: Ctx) -> bool:
    """its output has the calibrated scale (not absmax: rmsnorm_tok) and the row fits one core's vectors"""
    return facts(op, c).get("scale") != "absmax" and c.dep.model.dims.dim <= RVV.ONE_CORE_MAX


def _short_norm(op: Op, c: Ctx) -> bool:
    """the row fits one core's vectors (kernels.rvv.ONE_CORE_MAX)"""
    return c.dep.model.dims.dim <= RVV.ONE_CORE_MAX


def build_rmsnorm_tok_rvv(op: Op, c: Ctx, k: KernelSpec):
    """RMSNorm into int8 with a per-token absmax scale on the vector unit of core 0 without a fork: x * gain scaled so
    the token's largest is 127 by an integer multiplier; the token's factor (its rms and that scale) goes to the
    consumers, which fold it into their requantization."""
    return build_rmsnorm_tok(op, c, k)


def _short_row(op: Op, c: Ctx) -> bool:
    """the row fits one core's vectors (kernels.rvv.ONE_CORE_MAX)"""
    return c.graph.values[op.outputs[0]].shape[0] <= RVV.ONE_CORE_MAX


def build_linear_tok_rvv(op: Op, c: Ctx, k: KernelSpec):
    """The vector GEMV (32 output rows across the lanes, vqdot.vx, weights in the vector layout .wv) of an activation
    with a per-token factor: each row's multiplier times the token's (vmulhu.vx, once per token), the token's shift."""
    args, math = build_linear_rvv(op, c, k)
    return args, math.replace(" = requant(", " = requant_token(", 1)


def build_linear_q12_rvv(op: Op, c: Ctx, k: KernelSpec):
    """The q projection into int12 queries on the vector unit: the int16 vector GEMV (int16 saturation, weights in the
    vector layout .wv) at the queries' 12-bit scale; RoPE on q then saturates them to +-2047 (a per-token factor: the
    row multipliers times the token's)."""
    build = build_linear_tok_rvv if facts(op, c).get("in_scale") == "factor" else build_linear_rvv
    return build(op, c, k)


def build_swiglu16_tok_rvv(op: Op, c: Ctx, k: KernelSpec):
    """silu(gate) * up on int16 gate and up with a per-token absmax scale, on the vector unit of core 0 without a fork:
    silu by the 513-entry table gathered and interpolated in integers, the products scaled so the token's largest is
    127, whose inverse goes to the down projection as the token's factor."""
    return build_swiglu16_tok(op, c, k)


def build_linear_q4_rvv(op: Op, c: Ctx, k: KernelSpec):
    """An int4 GEMV on the cores' vector unit: 32 output rows across the lanes, each row's 8 nibbles per load split into
    two quads of int8 weights for vqdot.vx, the group scales applied per group (vmacc.vv), weights in the vector int4
    layout chosen at compile time (.wq4v: kernels.rvv.rvv_q4_pack); requantized with a multiplier per row and one
    shift (int12 queries: the int16 output at their 12-bit scale)."""
    args, math = build_linear_rvv(op, c, k)
    return args, math.replace(".wv (", ".wq4v (", 1)


def build_linear_q4_tok_rvv(op: Op, c: Ctx, k: KernelSpec):
    """The vector int4 GEMV (nibbles into int8 quads for vqdot.vx, group scales by vmacc.vv, layout .wq4v) of an
    activation with a per-token factor: each row's multiplier times the token's (vmulhu.vx, once per token), the
    token's shift."""
    args, math = build_linear_q4_rvv(op, c, k)
    return args, math.replace(" = requant(", " = requant_token(", 1)


# cores with Zve32x + Zvqdotq (target isa rv32imac_zve32x_zvqdotq, vlen >= 128): tried before the cluster's
RVV_RULES: tuple[Rule, ...] = tuple(
    Rule(f"linear_tok_i{b}_rvv", Pattern("linear", out=f"int{b}", weights="int8", in_scale="factor", isa=RVV.ISA,
                                         vlen=RVV.VLEN_MIN), RVV.KERNELS[f"gemv_tok_rvv_i{b}"], build_linear_tok_rvv)
    for b in (8, 16, 32)) + (
    Rule("linear_q12_tok_rvv", Pattern("linear", out="int12", weights="int8", in_scale="factor", isa=RVV.ISA,
                                       vlen=RVV.VLEN_MIN), RVV.KERNELS["gemv_tok_rvv_i16"], build_linear_q12_rvv),
    Rule("linear_q12_rvv", Pattern("linear", out="int12", weights="int8", isa=RVV.ISA, vlen=RVV.VLEN_MIN),
         RVV.KERNELS["gemv_rvv_i16"], build_linear_q12_rvv)) + tuple(
    Rule(f"linear_q4_i{b}_rvv", Pattern("linear", out=f"int{b}", weights="int4", isa=RVV.ISA, vlen=RVV.VLEN_MIN,
                                        when=_no_token_factor), RVV.Q4_KERNELS[f"gemv_q4_rvv_i{b}"], build_linear_q4_rvv)
    for b in (8, 16, 32)) + (
    Rule("linear_q4_q12_rvv", Pattern("linear", out="int12", weights="int4", isa=RVV.ISA, vlen=RVV.VLEN_MIN,
                                      when=_no_token_factor), RVV.Q4_KERNELS["gemv_q4_rvv_i16"], build_linear_q4_rvv),
) + tuple(
    Rule(f"linear_q4_tok_i{b}_rvv", Pattern("linear", out=f"int{b}", weights="int4", in_scale="factor", isa=RVV.ISA,
                                            vlen=RVV.VLEN_MIN), RVV.Q4_KERNELS[f"gemv_q4_tok_rvv_i{b}"],
         build_linear_q4_tok_rvv) for b in (8, 16, 32)) + (
    Rule("linear_q4_q12_tok_rvv", Pattern("linear", out="int12", weights="int4", in_scale="factor", isa=RVV.ISA,
                                          vlen=RVV.VLEN_MIN), RVV.Q4_KERNELS["gemv_q4_tok_rvv_i16"],
         build_linear_q4_tok_rvv),
) + tuple(
    Rule(f"linear_i{b}_rvv", Pattern("linear", out=f"int{b}", weights="int8", isa=RVV.ISA, vlen=RVV.VLEN_MIN,
                                     when=_no_token_factor), RVV.KERNELS[f"gemv_rvv_i{b}"], build_linear_rvv)
    for b in (8, 16, 32)) + (
    Rule("attention_k16_rvv", Pattern("attention", keys="int16", queries="int8", isa=("zve32x",), vlen=RVV.VLEN_MIN),
         K["attention_k16_rvv"], build_attention),
    Rule("attention_i8_rvv", Pattern("attention", keys="int8", queries="int8", isa=RVV.ISA, vlen=RVV.VLEN_MIN),
         K["attention_i8_rvv"], build_attention),
    Rule("attention_q12_rvv", Pattern("attention", keys="int8", queries="int12", isa=("zve32x",), vlen=RVV.VLEN_MIN),
         K["attention_q12_rvv"], build_attention),
    Rule("attention_q12k16_rvv", Pattern("attention", keys="int16", queries="int12", isa=("zve32x",),
                                         vlen=RVV.VLEN_MIN), K["attention_q12k16_rvv"], build_attention),
    Rule("attention_q16_rvv", Pattern("attention", keys="int8", queries="int16", isa=("zve32x",), vlen=RVV.VLEN_MIN),
         K["attention_q16_rvv"], build_attention),
    Rule("swiglu_i8_per_token_rvv", Pattern("swiglu", scale="per_token", isa=("zve32x",), vlen=RVV.VLEN_MIN),
         K["swiglu_dyn_i8_rvv"], build_swiglu_dyn),
    Rule("swiglu16_i8_absmax_rvv", Pattern("swiglu", out="int8", gate_up="int16", scale="absmax", isa=("zve32x",),
                                           vlen=RVV.VLEN_MIN), K["swiglu16_tok_i8_rvv"], build_swiglu16_tok_rvv),
    Rule("rmsnorm_i8_absmax_rvv", Pattern("rmsnorm", scale="absmax", isa=("zve32x",), vlen=RVV.VLEN_MIN,
                                          when=_short_norm), K["rmsnorm_tok_i8_rvv"], build_rmsnorm_tok_rvv),
    Rule("rmsnorm_i16_to_i8_rvv", Pattern("rmsnorm", isa=("zve32x",), vlen=RVV.VLEN_MIN, when=_calibrated_norm),
         K["rmsnorm_i8_part_rvv"], build_rmsnorm),
    Rule("residual_add_i16_rvv", Pattern("residual_add", isa=("zve32x",), vlen=RVV.VLEN_MIN, when=_short_row),
         K["residual_add_i16_rvv"],
         build_residual_add)) + tuple(
    Rule(R.ROPE[o][0] + "_q14_rvv",
         Pattern("rope", out=o, isa=("zve32x",), vlen=RVV.VLEN_MIN), K[R.ROPE[o][0] + "_rvv"], build_rope)
    for o in ("int8", "int16", "int12"))
RULES = CLUSTER_RULES + NPU_RULES + HOST_RULES + RVV_RULES  # every rule deeploy has, for `deeploy rules` and the tests


def rules_for(target: Target) -> tuple[Rule, ...]:
    """The rules a target offers: the host's first on the host, the vector kernels first on cores with the extensions
    they need, the cluster's everywhere, the NPU's where it has one."""
    rvv = tuple(r for r in RVV_RULES if set(r.pattern.isa) <= set(target.extensions) and target.vlen >= r.pattern.vlen)
    return (HOST_RULES if target.isa == "host" else ()) + rvv + CLUSTER_RULES + (NPU_RULES if target.npu is not None else ())


def rules_text(rules: tuple[Rule, ...] = RULES) -> str:
    """`deeploy rules`: every rule with its pattern, its kernel (and the C functions a step of it calls), and what it
    does, in the order they are tried."""
    out = []
    for r in rules:
        calls = f" (calls {', '.join(r.kernel.functions)})" if r.kernel.functions != (r.kernel.name,) else ""
        out.append(f"{r.name}\n    when:   {r.pattern.text}\n    kernel: {r.kernel.name}{calls}, "
                   f"{r.kernel.source}\n    does:   {r.doc}")
    return "\n".join(out) + "\n"


# ---- the lowering pass -------------------------------------------------------------------------------------------

def _first_match(op: Op, engine: str, ctx: Ctx, rules: tuple[Rule, ...]) -> Rule | None:
    f = facts(op, ctx)
    return next((r for r in rules if r.pattern.matches(f, engine, op, ctx)), None)


def _call(spec: KernelSpec, named: dict) -> tuple[Arg, ...]:
    """The arguments in the kernel's parameter order, each labelled with its parameter; exactly the spec's."""
    if set(named) != set(spec.names):
        raise AssertionError(f"{spec.name} takes {spec.names}, a rule gave {tuple(named)}")
    return tuple(replace(named[n], label=n) for n in spec.names)


def lower(graph: Graph, q: QuantModel, dep: Deployment, mapping: Mapping, rules: tuple[Rule, ...]) -> Plan:
    """The plan: per op, the first rule whose pattern holds on its engine. An engine with no rule for the op falls
    back to the cluster (a warning per hint line, an error in strict mode); an op no rule lowers is an error."""
    ctx, steps, errs = Ctx(graph, q, dep), [], Collector()
    errs.extend(mapping.warnings)
    fell_back: dict[Pos, list[Op]] = {}
    for op in graph.ops:
        pl = mapping.placed[op.name]
        rule = _first_match(op, pl.engine, ctx, rules)
        if rule is None and pl.engine != Engine.CLUSTER:
            fell_back.setdefault(pl.pos, []).append(op)
            pl = Placement(Engine.CLUSTER, dep.target.cores, pl.reason + ", fell back to cluster: no kernel", pl.pos)
            rule = _first_match(op, "cluster", ctx, rules)
        if rule is None:
            errs.add(pl.pos, f"no rule lowers {op.kind} {op.name}")
            continue
        named, math = rule.build(op, ctx, rule.kernel)
        why = pl.reason + (f"; rule {rule.name}: the cores' {rule.pattern.isa_text}" if rule.pattern.isa else "")
        steps.append(Step(len(steps), op.name, rule.name, rule.kernel, pl.engine, pl.cores, _call(rule.kernel, named),
                          op.macs, math, why, pl.pos))
    for pos, ops in fell_back.items():
        # no kernel for this engine yet: one message per hint line, an error in strict mode
        engine, names = mapping.placed[ops[0].name].engine, ", ".join(o.name for o in ops[:3])
        more = f" and {len(ops) - 3} more" if len(ops) > 3 else ""
        errs.add(pos, f"no {engine} kernel implements {ops[0].kind} in this version: {names}{more}"
                 + ("" if dep.strict else f" run{'s' if len(ops) == 1 else ''} on the cluster"),
                 severity="error" if dep.strict else "warning")
    errs.raise_if_errors(SpecError)
    return Plan(tuple(steps), dict(graph.values), _step_consts(steps, q), tuple(errs.warnings))


def _step_consts(steps: list[Step], q: QuantModel) -> dict:
    """The constants the steps read: weights in the layout of a kernel that has its own (the NPU's, the host's, the
    packed GEMV's), nothing unused (but a packed GEMV's fallback weights, which tiling drops if it does not need them)."""
    consts = dict(q.consts)
    for s in steps:
        if s.spec.weights:
            p = q.params[s.op]
            suffix, layout = s.spec.weights
            consts[s.op + suffix] = layout(q.consts[p["weight"]], p)
    used = {a.name for s in steps for a in s.args if a.kind == ArgKind.CONST}
    # a packed GEMV's blocked int8 weights stay until tiling, which falls back to them when L1 is too small
    used |= {q.params[s.op]["weight"] for s in steps if s.spec.fallback is not None}
    return {k: v for k, v in consts.items() if k in used}
