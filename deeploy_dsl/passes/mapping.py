"""Mapping, the phase before lowering: which engine (and how many cores) runs each op.

The deployment's map hints name ops by pattern (`layers[*].attn.qkv -> npu`); later lines override earlier ones.
The NPU takes only linear layers with int8 weights whose packed weights fit its weight memory; a hint it cannot
honour is an error in strict mode, else a warning and the cluster. `auto` picks the engine with the smaller
estimated decode cycles (cost.py) and says why. Also here: the per-layer weight formats (`weight_groups`), which
the quantize block's pattern lines set the same way.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

from ..engines.cost import PK_COST, TOK_ROW_CYCLES, cluster_linear_cycles, npu_linear_cycles, npu_tok_cycles
from ..errors import COMMAND_LINE, Collector, Pos, SpecError
from ..frontend.spec import Deployment, MapHint, PathPattern
from ..ir.graph import LINEAR_KINDS, Graph, Op
from ..kernels.layout import npu_packed_bytes, padded_rows, weight_row_bytes
from ..kernels.packed import pk_row_bytes
from ..kinds import Engine

# names a hint may use for an op besides its own last segment
ALIASES = {"qkv": ("q", "k", "v"), "softmax": ("attention",), "rope": ("rope_q", "rope_k"),
           "residual": ("residual",), "norm": ("attn_norm", "mlp_norm", "final_norm")}


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
    if q.classifier == "int16":  # its weights are int16 (quantize.py), whatever `weights` says
        groups["lm_head"] = 0
    for o in q.overrides:
        hit = [n for n in linear if hint_matches(o.pattern, n)]
        if not hit:
            errs.add(o.pos, f"'{o.pattern.text}' matches no linear layer: weight formats are set per linear layer",
                     "linear layers are named like layers[0].attn.q, layers[*].attn.qkv, layers[*].mlp.*, lm_head")
        if q.classifier == "int16" and "lm_head" in hit:
            errs.add(o.pos, f"'{o.pattern.text}' sets lm_head's weight format, which 'classifier int16' sets to int16",
                     "drop this line for lm_head, or use 'classifier int8'")
            hit.remove("lm_head")
        for n in hit:
            groups[n] = o.group
    errs.raise_if_errors(SpecError)
    return groups


@dataclass(frozen=True)
class Placement:
    engine: Engine
    cores: int
    reason: str  # why this engine: the hint line, or the default
    pos: Pos  # the hint's place in the .dply (the deployment's for the default)

    def __post_init__(self):
        object.__setattr__(self, "engine", Engine(self.engine))


class Mapping(NamedTuple):
    """The mapping phase's result: an engine per op, and the warnings about hints it could not honour."""

    placed: dict  # op name -> Placement
    warnings: tuple


def npu_weight_bytes(op: Op, graph: Graph, dep: Deployment) -> int:
    """What a linear layer takes in the NPU's weight memory: packed int8 weights (input channels padded to
    the NPU's blocks) and its per-channel multipliers."""
    n_out, n_in = graph.values[op.outputs[0]].shape[-1], graph.values[op.inputs[0]].shape[0]
    return npu_packed_bytes(n_out, n_in) + 4 * n_out


def linear_estimates(op: Op, graph: Graph, dep: Deployment, cores: int, group: int = 0) -> tuple[int, int]:
    """Estimated cycles of a decode step of a linear layer on the cluster (with its weights' DMA) and on the NPU; an
    input with a per-token factor adds the token's multipliers on either."""
    t = dep.target
    n_out, n_in = graph.values[op.outputs[0]].shape[-1], graph.values[op.inputs[0]].shape[0]
    wbytes = padded_rows(n_out) * weight_row_bytes(n_in, group)  # group: int4 weights' (weight_groups), 0 for int8

    def cycles(wbytes: int, per_mac: float) -> int:
        dma = -(-(wbytes + 5 * n_out) // t.dma_bytes_per_cycle) + 3 * t.dma_setup_cycles
        return math.ceil(cluster_linear_cycles(t, cores, op.macs) * per_mac) + dma

    cluster = cycles(wbytes, 1.0)
    # int8 weights on RV32 cores may take the packed GEMV (rules.py, `gemv`): fewer instructions per MAC, twice the
    # weight bytes; `gemv auto` takes the cheaper (the tiler decides it again on the real tiles)
    if group == 0 and t.isa != "host" and (not t.vlen or token_factor_input(op, graph)) and dep.gemv != "blocked":
        packed = cycles(padded_rows(n_out) * pk_row_bytes(n_in), PK_COST)
        cluster = packed if dep.gemv == "packed" else min(cluster, packed)
    if token_factor_input(op, graph):
        return cluster + -(-n_out * TOK_ROW_CYCLES // cores), npu_tok_cycles(t, n_in, n_out)
    return cluster, npu_linear_cycles(t, n_in, n_out)


def token_factor_input(op: Op, graph: Graph) -> bool:
    """A linear layer whose input has a per-token factor (quantize `dynamic norm`, `swiglu_absmax`): its second input."""
    return op.kind == "linear" and len(op.inputs) > 1 and graph.values[op.inputs[1]].dtype == "int32"


def place_ops(graph: Graph, dep: Deployment) -> Mapping:
    """Engine per op from the hints: later lines override earlier ones. The NPU takes only linear layers
    whose packed weights fit its weight memory; a hint it cannot honour is an error in strict mode, else a
    warning and the cluster. `auto` picks the engine with the smaller estimate (cost.py) and says why."""
    errs = Collector()
    t = dep.target
    groups = weight_groups(graph, dep)
    default = Placement(Engine.CLUSTER, t.cores, "default: cluster, all cores", dep.pos)
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
        if h.engine == Engine.NPU and (q4 := [m for m in matched if groups.get(m)]):
            # the NPU's array multiplies int8 weights
            errs.add(h.pos, f"{h.pattern.text} -> npu: the NPU takes int8 weights and {q4[0]}"
                     f"{f' and {len(q4) - 1} more' if len(q4) > 1 else ''} have int4 weights (quantize block)"
                     + ("" if dep.strict else f"; {'they run' if len(q4) > 1 else 'it runs'} on the cluster"),
                     severity=severity, hint="give them int8 weights in the quantize block to map them to the NPU")
            matched = [m for m in matched if not groups.get(m)]
            if not matched:
                continue
        if h.engine == Engine.NPU:
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
        cores = h.cores if h.cores is not None else (t.cores if h.engine == Engine.CLUSTER else 1)
        for m in matched:
            placed[m] = Placement(h.engine, cores, f"{h.pattern.text} -> {h.engine} ({_where(h.pos)})", h.pos)
    _fit_npu_memory(graph, dep, placed, errs, severity)
    _choose_auto(graph, dep, placed, auto, groups)
    errs.raise_if_errors(SpecError)
    return Mapping(placed, tuple(errs.warnings))


def _fit_npu_memory(graph: Graph, dep: Deployment, placed: dict, errs: Collector, severity: str) -> None:
    """Hinted NPU layers in model order until the weight memory is full; the rest fall back, one message per line."""
    if dep.target.npu is None:
        return
    cap, used, over = dep.target.npu.weight_memory_bytes, 0, {}
    for op in graph.ops:
        pl = placed[op.name]
        if pl.engine != Engine.NPU:
            continue
        need = npu_weight_bytes(op, graph, dep)
        if used + need <= cap:
            used += need
            continue
        over.setdefault(pl.pos, []).append((op.name, need))
        placed[op.name] = Placement(Engine.CLUSTER, dep.target.cores, pl.reason + ", fell back to cluster: NPU weight memory full",
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
                                           if pl.engine == Engine.NPU) if t.npu else 0
    wants = []
    for name, h in auto.items():
        op, where = ops[name], f"{h.pattern.text} -> auto ({_where(h.pos)})"
        cores = h.cores if h.cores is not None else t.cores
        if op.kind not in LINEAR_KINDS or t.npu is None or op.kind not in t.npu.ops or groups.get(name):
            why = f"{t.name} has no NPU" if t.npu is None else "the NPU runs only linear layers" \
                if op.kind not in LINEAR_KINDS or op.kind not in t.npu.ops else "the NPU takes int8 weights, these are int4"
            placed[name] = Placement(Engine.CLUSTER, cores, f"{where}: cluster, {why}", h.pos)
            continue
        on_cluster, on_npu = linear_estimates(op, graph, dep, cores, groups.get(name, 0))
        placed[name] = Placement(Engine.CLUSTER, cores, f"{where}: cluster, ~{on_cluster:,} cycles against ~{on_npu:,} "
                                                    f"on the NPU", h.pos)
        if on_npu < on_cluster:
            wants.append(((on_cluster - on_npu) / npu_weight_bytes(op, graph, dep), name, on_cluster, on_npu, h))
    for _, name, on_cluster, on_npu, h in sorted(wants, key=lambda w: (-w[0], w[1])):
        need = npu_weight_bytes(ops[name], graph, dep)
        where = f"{h.pattern.text} -> auto ({_where(h.pos)})"
        if need <= free:
            free -= need
            placed[name] = Placement(Engine.NPU, 1, f"{where}: npu, ~{on_npu:,} cycles against ~{on_cluster:,} on the "
                                               f"cluster", h.pos)
        else:
            placed[name] = Placement(Engine.CLUSTER, placed[name].cores, f"{where}: cluster, the NPU would take ~{on_npu:,} "
                                     f"cycles against ~{on_cluster:,} but its weight memory is full", h.pos)
