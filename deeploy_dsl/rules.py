"""The rule engine: map hints choose an engine per op, then lowering rules turn ops into kernel calls.

Rules are data. A lowering rule is a pattern over an op (kind, output dtype, engine) plus a small
named function that returns a plan Step or None; the first rule whose pattern matches and whose
function returns a Step wins, and the plan records the rule's name. Adding a kernel variant means
adding a kernel and a rule here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Callable

from .errors import COMMAND_LINE, Collector, Pos, SpecError
from .graph import LINEAR_KINDS, Arg, Graph, Op, Plan, Step
from .quantize import QuantModel
from .spec import Deployment, PathPattern

# names a hint may use for an op besides its own last segment
ALIASES = {"qkv": ("q", "k", "v"), "softmax": ("attention",), "rope": ("rope_q", "rope_k"),
           "residual": ("residual",), "norm": ("attn_norm", "mlp_norm", "final_norm")}


# ---- mapping ------------------------------------------------------------------------------------

def _op_segments(name: str) -> list[tuple[str, int | None]]:
    parts = name.split(".")
    out, i = [], 0
    while i < len(parts):
        if i + 1 < len(parts) and parts[i + 1].isdigit():
            out.append((parts[i], int(parts[i + 1])))
            i += 2
        else:
            out.append((parts[i], None))
            i += 1
    return out


def hint_matches(p: PathPattern, op_name: str) -> bool:
    if p.segments == (("default", None),):
        return True
    segs = _op_segments(op_name)
    pat = list(p.segments)
    if pat and pat[-1] == ("*", None) and len(segs) >= len(pat):  # a trailing * takes the rest
        segs = segs[: len(pat) - 1] + [("*", None)]
    if len(pat) != len(segs):
        return False
    for (pn, prng), (sn, idx) in zip(pat, segs):
        if pn != "*" and pn != sn and sn not in ALIASES.get(pn, ()):
            return False
        if (prng is None) != (idx is None) and pn != "*":
            return False
        if prng is not None and idx is not None and not prng[0] <= idx <= prng[1]:
            return False
    return True


def _any_op_name(p: PathPattern) -> bool:
    """Whether the pattern leaves the op itself open (`layers[1].mlp.*`, `default`)."""
    return p.segments == (("default", None),) or any(name == "*" for name, _ in p.segments)


def _where(pos: Pos) -> str:
    """Where a hint was written, for Step.reason: a .dply line or the -D override."""
    if pos.file == COMMAND_LINE.file:
        return f"command line {pos.text}".rstrip()
    return f"line {pos.line}" if pos.line else str(pos)


@dataclass(frozen=True)
class Placement:
    engine: str
    cores: int
    reason: str
    pos: Pos


def place_ops(graph: Graph, dep: Deployment) -> tuple[dict[str, Placement], list]:
    """Engine per op from the hints: later lines override earlier ones; the NPU takes only linear ops."""
    errs = Collector()
    default = Placement("cluster", dep.target.cores, "default: cluster, all cores", dep.pos)
    placed = {op.name: default for op in graph.ops}
    kinds = {op.name: op.kind for op in graph.ops}
    for h in dep.hints:
        matched = [op.name for op in graph.ops if hint_matches(h.pattern, op.name)]
        if not matched:
            errs.add(h.pos, f"'{h.pattern.text}' matches no op",
                     "ops are named like embed, layers[0].attn.q, layers[*].attn.qkv, layers[*].mlp.down, "
                     "layers[*].attn.softmax, final_norm, lm_head")
            continue
        if h.engine == "auto":
            # the compiler chooses; with no NPU kernels in this version that is the whole cluster
            cores = h.cores if h.cores is not None else dep.target.cores
            for m in matched:
                placed[m] = Placement("cluster", cores, f"{h.pattern.text} -> auto: cluster ({_where(h.pos)})", h.pos)
            continue
        if h.engine == "npu":
            non_linear = [m for m in matched if kinds[m] not in LINEAR_KINDS]
            # a '*' in the op name (or 'default') selects ops of several kinds: keep the linear ones.
            # A named op (a layer range like layers[*] does not change which op) must be linear.
            if non_linear and not _any_op_name(h.pattern):
                what = h.pattern.segments[-1][0]
                errs.add(h.pos, f"{what} -> npu: the NPU runs only linear layers ({non_linear[0]} is {kinds[non_linear[0]]})")
                continue
            matched = [m for m in matched if kinds[m] in LINEAR_KINDS]
            if not matched:
                errs.add(h.pos, f"'{h.pattern.text}' matches no linear layer: the NPU runs only linear layers")
                continue
        cores = h.cores if h.cores is not None else (dep.target.cores if h.engine == "cluster" else 1)
        for m in matched:
            placed[m] = Placement(h.engine, cores, f"{h.pattern.text} -> {h.engine} ({_where(h.pos)})", h.pos)
    errs.raise_if_errors(SpecError)
    return placed, errs.warnings


# ---- lowering rules -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Ctx:
    graph: Graph
    q: QuantModel
    dep: Deployment


@dataclass(frozen=True)
class Rule:
    name: str
    kind: str
    engine: str = "cluster"
    out_dtype: str | None = None  # None: any
    lower: Callable = None  # (op, ctx) -> (kernel, args, math) or None
    split: Split | None = None  # how the cores share the work of one call (linear and attention tile instead)


@dataclass(frozen=True)
class Split:
    """Cores take contiguous shares of a kernel's elements: the `offset` arguments advance with the share,
    the `count` argument becomes its size, and shares are whole multiples of `unit` (a head for RoPE)."""

    offset: tuple[str, ...]
    count: str
    unit: str | int = 1  # an int, or the label of an argument that holds it
    bounds: tuple[str, str] | None = None  # or: the kernel takes [lo, hi) itself, and count stays whole


def _buf(name: str, label: str, row: str | None = None) -> Arg:
    return Arg("buf", name, row=row, label=label)


def _const(name: str, label: str, row: str | None = None) -> Arg:
    return Arg("const", name, row=row, label=label)


def _int(v: int, label: str) -> Arg:
    return Arg("int", value=int(v), label=label)


def lower_linear(kernel: str):
    def lower(op: Op, c: Ctx):
        p = c.q.params[op.name]
        n_out, n_in = p["n_out"], p["n_in"]
        out = _buf(op.outputs[0], "y", op.row)
        return kernel, (out, _buf(op.inputs[0], "x"), _const(p["weight"], "w"),
                        _const(op.name + ".mult", "mult"), _const(op.name + ".shift", "shift"),
                        _int(n_in, "n_in"), _int(n_out, "n_out")), \
            f"{op.outputs[0]}[{n_out}] = requant(W[{n_out},{n_in}] @ {op.inputs[0]}[{n_in}])"
    lower.__name__ = f"lower_{kernel}"
    return lower


def lower_rmsnorm(op: Op, c: Ctx):
    p, dim = c.q.params[op.name], c.dep.model.dims.dim
    return "rmsnorm_i8_part", (_buf(op.outputs[0], "y"), _buf(op.inputs[0], "x"), _const(op.name + ".gain", "gain"),
                               _int(p["gain_shift"], "gain_shift"), _int(p["eps_q"], "eps_q"), _int(dim, "dim"),
                               _int(0, "lo"), _int(dim, "hi")), \
        f"{op.outputs[0]} = int8(x / rms(x) * gain), x int16[{dim}]"


def lower_embed(op: Op, c: Ctx):
    # only the token's row (and its multiplier) is read, so only that row needs to move
    return "embed_i16", (_buf(op.outputs[0], "x"), _const("embed.w", "row", "token"),
                         _const("embed.mult", "mult", "token"), _const("embed.shift", "shift", "token"),
                         _int(c.dep.model.dims.dim, "dim")), "x = int16(embedding row of token)"


def lower_rope(op: Op, c: Ctx):
    d = c.dep.model.dims
    n = c.graph.values[op.inputs[0]].shape[0]
    return "rope_i8", (_buf(op.outputs[0], "y", op.row), _buf(op.inputs[0], "x"), _const("rope.cos", "cos_row", "pos"),
                       _const("rope.sin", "sin_row", "pos"), _int(n, "n"), _int(d.head_size, "head_size")), \
        f"rotate pairs of {op.inputs[0]}[{n}] by pos * theta_i (Q14 tables)"


def lower_attention(op: Op, c: Ctx):
    d, p = c.dep.model.dims, c.q.params[op.name]
    q, kc, vc = op.inputs
    return "attention_i8", (_buf(op.outputs[0], "out"), _buf(q, "q"), _buf(kc, "k_cache"), _buf(vc, "v_cache"),
                            _buf(op.outputs[1], "scratch"), Arg("pos", label="pos"), _int(d.heads, "n_heads"),
                            _int(d.kv_heads, "n_kv_heads"), _int(d.head_size, "head_size"),
                            _int(p["score_mult"], "score_mult"), _int(p["score_shift"], "score_shift"),
                            _int(p["score_cut"], "score_cut"), _int(p["out_mult"], "out_mult"), _int(p["out_shift"], "out_shift"),
                            _const("exp2", "exp_table")), \
        "out = softmax(q . K[0..pos] / sqrt(hs)) . V[0..pos], integer exp2, one division per head"


def lower_swiglu(op: Op, c: Ctx):
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    return "swiglu_i8", (_buf(op.outputs[0], "h"), _buf(op.inputs[0], "gate"), _buf(op.inputs[1], "up"),
                         _const(op.name + ".silu", "silu_table"), _int(p["mult"], "mult"), _int(p["shift"], "shift"),
                         _int(n, "n")), f"h = int8(silu(gate) * up), silu by 256-entry table, [{n}]"


def lower_add(op: Op, c: Ctx):
    n = c.graph.values[op.outputs[0]].shape[0]
    return "add_sat_i16", (_buf(op.outputs[0], "y"), _buf(op.inputs[0], "a"), _buf(op.inputs[1], "b"), _int(n, "n")), \
        f"{op.outputs[0]} += {op.inputs[1]} (int16, saturating, in place)"


RULES: tuple[Rule, ...] = (
    Rule("embed_i16", "embed", lower=lower_embed),
    Rule("rmsnorm_i16_to_i8", "rmsnorm", lower=lower_rmsnorm, split=Split((), "dim", bounds=("lo", "hi"))),
    Rule("linear_i8_cluster", "linear", out_dtype="int8", lower=lower_linear("gemv_i8")),
    Rule("linear_i16_cluster", "linear", out_dtype="int16", lower=lower_linear("gemv_i16")),
    Rule("linear_i32_cluster", "linear", out_dtype="int32", lower=lower_linear("gemv_i32")),
    Rule("rope_i8_q14", "rope", lower=lower_rope, split=Split(("y", "x"), "n", "head_size")),
    Rule("attention_i8_gqa", "attention", lower=lower_attention),
    Rule("swiglu_i8_table", "swiglu", lower=lower_swiglu, split=Split(("h", "gate", "up"), "n")),
    Rule("residual_add_i16_inplace", "add", lower=lower_add, split=Split(("y", "a", "b"), "n")),
)


def _first_match(op: Op, engine: str, ctx: Ctx):
    out_dtype = ctx.graph.values[op.outputs[0]].dtype
    for r in RULES:
        if r.kind == op.kind and r.engine == engine and r.out_dtype in (None, out_dtype):
            got = r.lower(op, ctx)
            if got is not None:
                return r, got
    return None, None


def lower(graph: Graph, q: QuantModel, dep: Deployment) -> Plan:
    placed, warnings = place_ops(graph, dep)
    ctx, steps, errs = Ctx(graph, q, dep), [], Collector()
    errs.extend(warnings)
    fell_back: dict[Pos, list[Op]] = {}
    for op in graph.ops:
        pl = placed[op.name]
        rule, got = _first_match(op, pl.engine, ctx)
        if rule is None and pl.engine != "cluster":
            fell_back.setdefault(pl.pos, []).append(op)
            pl = Placement("cluster", dep.target.cores, pl.reason + ", fell back to cluster: no kernel", pl.pos)
            rule, got = _first_match(op, "cluster", ctx)
        if rule is None:
            errs.add(pl.pos, f"no rule lowers {op.kind} {op.name}")
            continue
        kernel, args, math = got
        steps.append(Step(len(steps), op.name, rule.name, kernel, pl.engine, pl.cores, args, op.macs, math,
                          pl.reason, pl.pos, split=rule.split))
    for pos, ops in fell_back.items():
        # no kernel for this engine yet: one message per hint line, an error in strict mode
        engine, names = placed[ops[0].name].engine, ", ".join(o.name for o in ops[:3])
        more = f" and {len(ops) - 3} more" if len(ops) > 3 else ""
        errs.add(pos, f"no {engine} kernel implements {ops[0].kind} in this version: {names}{more}"
                 + ("" if dep.strict else f" run{'s' if len(ops) == 1 else ''} on the cluster"),
                 severity="error" if dep.strict else "warning")
    errs.raise_if_errors(SpecError)
    return Plan(tuple(steps), dict(graph.values), q.consts, tuple(errs.warnings))


def c_ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
