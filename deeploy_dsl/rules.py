"""The rule engine: map hints choose an engine per op, then lowering rules turn ops into kernel calls.

Rules are data. A lowering rule is a pattern over an op (kind, output dtype, engine) plus a small
named function that returns a plan Step or None; the first rule whose pattern matches and whose
function returns a Step wins, and the plan records the rule's name. Adding a kernel variant means
adding a kernel and a rule here.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Callable

from . import registry as R
from .cost import cluster_linear_cycles, npu_linear_cycles
from .errors import COMMAND_LINE, Collector, Pos, SpecError
from .graph import LINEAR_KINDS, Arg, Graph, Op, Plan, Step
from .kernelspec import KernelSpec
from .layout import npu_pack, npu_packed_bytes, padded_rows, unblock_rows, weight_row_bytes
from .quantize import QuantModel
from .spec import Deployment, MapHint, PathPattern

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


def weight_groups(graph: Graph, dep: Deployment) -> dict[str, int]:
    """Per linear op, its weights' int4 group size, 0 for int8: the quantize block's `weights`, then its
    `PATTERN -> int8 | int4(G)` lines, later ones winning. A line matching no linear layer is an error."""
    q, errs = dep.quant, Collector()
    linear = [op.name for op in graph.ops if op.kind in LINEAR_KINDS]
    groups = {name: q.group if q.weights == "int4" else 0 for name in linear}
    for o in q.overrides:
        hit = [n for n in linear if hint_matches(o.pattern, n)]
        if not hit:
            errs.add(o.pos, f"'{o.pattern.text}' matches no linear layer: weight formats are set per linear layer",
                     "linear layers are named like layers[0].attn.q, layers[*].attn.qkv, layers[*].mlp.*, lm_head")
        for n in hit:
            groups[n] = o.group
    errs.raise_if_errors(SpecError)
    return groups


@dataclass(frozen=True)
class Placement:
    engine: str
    cores: int
    reason: str
    pos: Pos


def npu_weight_bytes(op: Op, graph: Graph, dep: Deployment) -> int:
    """What a linear layer takes in the NPU's weight memory: packed int8 weights (input channels padded to
    the NPU's blocks) and its per-channel multipliers."""
    n_out, n_in = graph.values[op.outputs[0]].shape[-1], graph.values[op.inputs[0]].shape[0]
    return npu_packed_bytes(n_out, n_in) + 4 * n_out


def linear_estimates(op: Op, graph: Graph, dep: Deployment, cores: int, group: int = 0) -> tuple[int, int]:
    """Estimated cycles of a decode step of a linear layer on the cluster (with its weights' DMA) and on the NPU."""
    t = dep.target
    n_out, n_in = graph.values[op.outputs[0]].shape[-1], graph.values[op.inputs[0]].shape[0]
    wbytes = padded_rows(n_out) * weight_row_bytes(n_in, group)  # group: int4 weights' (weight_groups), 0 for int8
    dma = -(-(wbytes + 5 * n_out) // t.dma_bytes_per_cycle) + 3 * t.dma_setup_cycles
    return cluster_linear_cycles(t, cores, op.macs) + dma, npu_linear_cycles(t, n_in, n_out)


def place_ops(graph: Graph, dep: Deployment) -> tuple[dict[str, Placement], list]:
    """Engine per op from the hints: later lines override earlier ones. The NPU takes only linear layers
    whose packed weights fit its weight memory; a hint it cannot honour is an error in strict mode, else a
    warning and the cluster. `auto` picks the engine with the smaller estimate (cost.py) and says why."""
    errs = Collector()
    t = dep.target
    groups = weight_groups(graph, dep)
    default = Placement("cluster", t.cores, "default: cluster, all cores", dep.pos)
    placed = {op.name: default for op in graph.ops}
    ops = {op.name: op for op in graph.ops}
    auto: dict[str, MapHint] = {}
    severity = "error" if dep.strict else "warning"
    for h in dep.hints:
        matched = [op.name for op in graph.ops if hint_matches(h.pattern, op.name)]
        if not matched:
            errs.add(h.pos, f"'{h.pattern.text}' matches no op",
                     "ops are named like embed, layers[0].attn.q, layers[*].attn.qkv, layers[*].mlp.down, "
                     "layers[*].attn.softmax, final_norm, lm_head")
            continue
        if h.engine == "auto":
            for m in matched:
                auto[m] = h
            continue
        for m in matched:
            auto.pop(m, None)
        if h.engine == "npu" and (q4 := [m for m in matched if groups.get(m)]):
            # the NPU's array multiplies int8 weights
            errs.add(h.pos, f"{h.pattern.text} -> npu: the NPU takes int8 weights and {q4[0]}"
                     f"{f' and {len(q4) - 1} more' if len(q4) > 1 else ''} have int4 weights (quantize block)"
                     + ("" if dep.strict else f"; {'they run' if len(q4) > 1 else 'it runs'} on the cluster"),
                     severity=severity, hint="give them int8 weights in the quantize block to map them to the NPU")
            matched = [m for m in matched if not groups.get(m)]
            if not matched:
                continue
        if h.engine == "npu":
            non_linear = [m for m in matched if ops[m].kind not in LINEAR_KINDS]
            # a '*' in the op name (or 'default') selects ops of several kinds: the NPU takes the linear ones.
            # A named op (a layer range like layers[*] does not change which op) must be linear.
            if non_linear and not _any_op_name(h.pattern):
                what = h.pattern.segments[-1][0]
                fallback = "" if dep.strict else f"; {', '.join(non_linear[:3])}{' ...' if len(non_linear) > 3 else ''} " \
                                                 f"run{'s' if len(non_linear) == 1 else ''} on the cluster"
                errs.add(h.pos, f"{what} -> npu: the NPU runs only linear layers ({non_linear[0]} is "
                         f"{ops[non_linear[0]].kind}){fallback}", severity=severity)
            matched = [m for m in matched if ops[m].kind in LINEAR_KINDS]
            if not matched:
                if _any_op_name(h.pattern):
                    errs.add(h.pos, f"'{h.pattern.text}' matches no linear layer: the NPU runs only linear layers",
                             severity=severity)
                continue
        cores = h.cores if h.cores is not None else (t.cores if h.engine == "cluster" else 1)
        for m in matched:
            placed[m] = Placement(h.engine, cores, f"{h.pattern.text} -> {h.engine} ({_where(h.pos)})", h.pos)
    _fit_npu_memory(graph, dep, placed, errs, severity)
    _choose_auto(graph, dep, placed, auto, groups)
    errs.raise_if_errors(SpecError)
    return placed, errs.warnings


def _fit_npu_memory(graph: Graph, dep: Deployment, placed: dict, errs: Collector, severity: str) -> None:
    """Hinted NPU layers in model order until the weight memory is full; the rest fall back, one message per line."""
    if dep.target.npu is None:
        return
    cap, used, over = dep.target.npu.weight_memory_bytes, 0, {}
    for op in graph.ops:
        pl = placed[op.name]
        if pl.engine != "npu":
            continue
        need = npu_weight_bytes(op, graph, dep)
        if used + need <= cap:
            used += need
            continue
        over.setdefault(pl.pos, []).append((op.name, need))
        placed[op.name] = Placement("cluster", dep.target.cores, pl.reason + ", fell back to cluster: NPU weight memory full",
                                    pl.pos)
    for pos, names in over.items():
        first, need = names[0]
        more = f" and {len(names) - 1} more layer{'s' if len(names) > 2 else ''}" if len(names) > 1 else ""
        errs.add(pos, f"the weights of {first} ({need:,} B packed){more} do not fit the NPU's weight memory: "
                 f"{cap:,} B, of which {used:,} B hold earlier layers"
                 + ("" if dep.strict else f"; {'they run' if more else 'it runs'} on the cluster"), severity=severity,
                 hint="map fewer layers to the npu, or use a target with a larger NPU weight memory")


def _choose_auto(graph: Graph, dep: Deployment, placed: dict, auto: dict, groups: dict) -> None:
    """Per op, the engine with the smaller estimated decode cycles; NPU room goes to the largest savings per byte."""
    t = dep.target
    ops = {op.name: op for op in graph.ops}
    free = t.npu.weight_memory_bytes - sum(npu_weight_bytes(ops[n], graph, dep) for n, pl in placed.items()
                                           if pl.engine == "npu") if t.npu else 0
    wants = []
    for name, h in auto.items():
        op, where = ops[name], f"{h.pattern.text} -> auto ({_where(h.pos)})"
        cores = h.cores if h.cores is not None else t.cores
        if op.kind not in LINEAR_KINDS or t.npu is None or op.kind not in t.npu.ops or groups.get(name):
            why = f"{t.name} has no NPU" if t.npu is None else "the NPU runs only linear layers" \
                if op.kind not in LINEAR_KINDS or op.kind not in t.npu.ops else "the NPU takes int8 weights, these are int4"
            placed[name] = Placement("cluster", cores, f"{where}: cluster, {why}", h.pos)
            continue
        on_cluster, on_npu = linear_estimates(op, graph, dep, cores, groups.get(name, 0))
        placed[name] = Placement("cluster", cores, f"{where}: cluster, ~{on_cluster:,} cycles against ~{on_npu:,} "
                                                    f"on the NPU", h.pos)
        if on_npu < on_cluster:
            wants.append(((on_cluster - on_npu) / npu_weight_bytes(op, graph, dep), name, on_cluster, on_npu, h))
    for _, name, on_cluster, on_npu, h in sorted(wants, key=lambda w: (-w[0], w[1])):
        need = npu_weight_bytes(ops[name], graph, dep)
        where = f"{h.pattern.text} -> auto ({_where(h.pos)})"
        if need <= free:
            free -= need
            placed[name] = Placement("npu", 1, f"{where}: npu, ~{on_npu:,} cycles against ~{on_cluster:,} on the "
                                               f"cluster", h.pos)
        else:
            placed[name] = Placement("cluster", placed[name].cores, f"{where}: cluster, the NPU would take ~{on_npu:,} "
                                     f"cycles against ~{on_cluster:,} but its weight memory is full", h.pos)


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
    lower: Callable = None  # (op, ctx) -> (KernelSpec, {parameter: Arg}, math) or None


def _buf(name: str, row: str | None = None) -> Arg:
    return Arg("buf", name, row=row)


def _const(name: str, row: str | None = None) -> Arg:
    return Arg("const", name, row=row)


def _int(v: int) -> Arg:
    return Arg("int", value=int(v))


def _shift_arg(op: Op) -> Arg:
    """A linear layer's shift: its own, or (an input with a per-token scale) this token's, which its producer wrote."""
    return _buf(op.inputs[1]) if len(op.inputs) > 1 else _const(op.name + ".shift")


def lower_linear(kernel: KernelSpec):
    """int8 weights (gemv_iN), or int4 weights with group scales (gemv_q4_iN: one more argument, the group size);
    each rule takes only its own weight format."""
    q4 = kernel.has_param("group")

    def lower(op: Op, c: Ctx):
        p = c.q.params[op.name]
        if bool(p.get("group")) != q4:
            return None
        n_out, n_in = p["n_out"], p["n_in"]
        w = f"W[{n_out},{n_in}] (int4, a scale per {p['group']} columns)" if q4 else f"W[{n_out},{n_in}]"
        args = dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), w=_const(p["weight"]),
                    mult=_const(op.name + ".mult"), shift=_shift_arg(op), n_in=_int(n_in), n_out=_int(n_out))
        if q4:
            args["group"] = _int(p["group"])
        return kernel, args, f"{op.outputs[0]}[{n_out}] = requant({w} @ {op.inputs[0]}[{n_in}])"
    lower.__name__ = f"lower_{kernel.name}"
    return lower


def lower_npu(kernel: KernelSpec):
    def lower(op: Op, c: Ctx):
        p = c.q.params[op.name]
        if p.get("group"):
            return None  # the NPU takes int8 weights only (place_ops keeps int4 layers on the cluster)
        n_out, n_in = p["n_out"], p["n_in"]
        return kernel, dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), w=_const(op.name + ".wn"),
                            mult=_const(op.name + ".mult"), shift=_shift_arg(op), n_in=_int(n_in), n_out=_int(n_out)), \
            f"{op.outputs[0]}[{n_out}] = requant(W[{n_out},{n_in}] @ {op.inputs[0]}[{n_in}]), one NPU job"
    lower.__name__ = f"lower_{kernel.name}"
    return lower


def lower_rmsnorm(op: Op, c: Ctx):
    p, dim = c.q.params[op.name], c.dep.model.dims.dim
    return R.RMSNORM, dict(y=_buf(op.outputs[0]), x=_buf(op.inputs[0]), gain=_const(op.name + ".gain"),
                           gain_shift=_int(p["gain_shift"]), eps_q=_int(p["eps_q"]), dim=_int(dim), lo=_int(0),
                           hi=_int(dim)), \
        f"{op.outputs[0]} = int8(x / rms(x) * gain), x int16[{dim}]"


def lower_embed(op: Op, c: Ctx):
    # only the token's row (and its multiplier) is read, so only that row needs to move
    return R.EMBED, dict(x=_buf(op.outputs[0]), row=_const("embed.w", "token"), mult=_const("embed.mult", "token"),
                         shift=_const("embed.shift", "token"), dim=_int(c.dep.model.dims.dim)), \
        "x = int16(embedding row of token)"


def lower_rope(kernel: KernelSpec):
    def lower(op: Op, c: Ctx):
        d = c.dep.model.dims
        n = c.graph.values[op.inputs[0]].shape[0]
        return kernel, dict(y=_buf(op.outputs[0], op.row), x=_buf(op.inputs[0]), cos_row=_const("rope.cos", "pos"),
                            sin_row=_const("rope.sin", "pos"), n=_int(n), head_size=_int(d.head_size)), \
            f"rotate pairs of {op.inputs[0]}[{n}] by pos * theta_i (Q14 tables)"
    lower.__name__ = f"lower_{kernel.name}"
    return lower


def lower_attention(op: Op, c: Ctx):
    d, p = c.dep.model.dims, c.q.params[op.name]
    q, kc, vc = op.inputs
    # the K cache's dtype picks the kernel: int16 keys (quantize `keys int16`) score (q . k) / 2^8
    kernel = R.KERNELS["attention_k16" if c.graph.values[kc].dtype == "int16" else "attention_i8"]
    return kernel, dict(out=_buf(op.outputs[0]), q=_buf(q), k_cache=_buf(kc), v_cache=_buf(vc),
                        scratch=_buf(op.outputs[1]), pos=Arg("pos"), n_heads=_int(d.heads),
                        n_kv_heads=_int(d.kv_heads), head_size=_int(d.head_size), score_mult=_int(p["score_mult"]),
                        score_shift=_int(p["score_shift"]), score_cut=_int(p["score_cut"]),
                        out_mult=_int(p["out_mult"]), out_shift=_int(p["out_shift"]), exp_table=_const("exp2")), \
        "out = softmax(q . K[0..pos] / sqrt(hs)) . V[0..pos], integer exp2, one division per head"


def lower_swiglu(op: Op, c: Ctx):
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    if p.get("dynamic"):
        return None
    return R.SWIGLU, dict(h=_buf(op.outputs[0]), gate=_buf(op.inputs[0]), up=_buf(op.inputs[1]),
                          silu_table=_const(op.name + ".silu"), mult=_int(p["mult"]), shift=_int(p["shift"]),
                          n=_int(n)), f"h = int8(silu(gate) * up), silu by 256-entry table, [{n}]"


def lower_swiglu_dyn(op: Op, c: Ctx):
    p, n = c.q.params[op.name], c.graph.values[op.outputs[0]].shape[0]
    if not p.get("dynamic"):
        return None
    return R.SWIGLU_DYN, dict(h=_buf(op.outputs[0]), shift_out=_buf(op.outputs[1]), p=_buf(op.outputs[2]),
                              gate=_buf(op.inputs[0]), up=_buf(op.inputs[1]), silu_table=_const(op.name + ".silu"),
                              base_shift=_int(p["base_shift"]), n=_int(n)), \
        f"h = int8(silu(gate) * up / 2^k), k per token from max |silu(gate) * up|; shift_out = {p['base_shift']} - k, [{n}]"


def lower_add(op: Op, c: Ctx):
    n = c.graph.values[op.outputs[0]].shape[0]
    return R.ADD, dict(y=_buf(op.outputs[0]), a=_buf(op.inputs[0]), b=_buf(op.inputs[1]), n=_int(n)), \
        f"{op.outputs[0]} += {op.inputs[1]} (int16, saturating, in place)"


K_ = R.KERNELS
RULES: tuple[Rule, ...] = (
    Rule("embed_i16", "embed", lower=lower_embed),
    Rule("rmsnorm_i16_to_i8", "rmsnorm", lower=lower_rmsnorm),
    Rule("linear_i8_cluster", "linear", out_dtype="int8", lower=lower_linear(K_["gemv_i8"])),
    Rule("linear_q4_i8_cluster", "linear", out_dtype="int8", lower=lower_linear(K_["gemv_q4_i8"])),
    Rule("linear_q4_i16_cluster", "linear", out_dtype="int16", lower=lower_linear(K_["gemv_q4_i16"])),
    Rule("linear_q4_i32_cluster", "linear", out_dtype="int32", lower=lower_linear(K_["gemv_q4_i32"])),
    Rule("linear_i16_cluster", "linear", out_dtype="int16", lower=lower_linear(K_["gemv_i16"])),
    Rule("linear_i32_cluster", "linear", out_dtype="int32", lower=lower_linear(K_["gemv_i32"])),
    Rule("linear_i8_npu", "linear", engine="npu", out_dtype="int8", lower=lower_npu(K_["npu_linear_i8"])),
    Rule("linear_i16_npu", "linear", engine="npu", out_dtype="int16", lower=lower_npu(K_["npu_linear_i16"])),
    Rule("linear_i32_npu", "linear", engine="npu", out_dtype="int32", lower=lower_npu(K_["npu_linear_i32"])),
    Rule("rope_i8_q14", "rope", out_dtype="int8", lower=lower_rope(K_["rope_i8"])),
    Rule("rope_i16_q14", "rope", out_dtype="int16", lower=lower_rope(K_["rope_i16"])),
    Rule("attention_i8_gqa", "attention", lower=lower_attention),
    Rule("swiglu_i8_table", "swiglu", lower=lower_swiglu),
    Rule("swiglu_i8_per_token", "swiglu", lower=lower_swiglu_dyn),
    Rule("residual_add_i16_inplace", "add", lower=lower_add),
)


def _call(spec: KernelSpec, named: dict) -> tuple[Arg, ...]:
    """The arguments in the kernel's parameter order, each labelled with its parameter; exactly the spec's."""
    if set(named) != set(spec.names):
        raise AssertionError(f"{spec.name} takes {spec.names}, a rule gave {tuple(named)}")
    return tuple(replace(named[n], label=n) for n in spec.names)


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
        spec, named, math = got
        steps.append(Step(len(steps), op.name, rule.name, spec, pl.engine, pl.cores, _call(spec, named), op.macs,
                          math, pl.reason, pl.pos))
    for pos, ops in fell_back.items():
        # no kernel for this engine yet: one message per hint line, an error in strict mode
        engine, names = placed[ops[0].name].engine, ", ".join(o.name for o in ops[:3])
        more = f" and {len(ops) - 3} more" if len(ops) > 3 else ""
        errs.add(pos, f"no {engine} kernel implements {ops[0].kind} in this version: {names}{more}"
                 + ("" if dep.strict else f" run{'s' if len(ops) == 1 else ''} on the cluster"),
                 severity="error" if dep.strict else "warning")
    errs.raise_if_errors(SpecError)
    return Plan(tuple(steps), dict(graph.values), _step_consts(steps, q), tuple(errs.warnings))


def _step_consts(steps: list[Step], q: QuantModel) -> dict:
    """The constants the steps read: NPU layers' weights packed in the NPU's layout, nothing unused."""
    consts = dict(q.consts)
    for s in steps:
        if s.engine == "npu":
            p = q.params[s.op]
            consts[s.op + ".wn"] = npu_pack(unblock_rows(q.consts[p["weight"]], p["n_out"]))
    used = {a.name for s in steps for a in s.args if a.kind == "const"}
    return {k: v for k, v in consts.items() if k in used}


def c_ident(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_]", "_", name)
