"""plan.yaml: the expanded plan as reviewers read it in a diff.

One line per step and per buffer, in plan order, so a change to the `.dply` shows up as a few
changed lines. Floats are printed with 6 significant digits so that recalibration noise below
that does not churn the diff; the C consumes integers only, which are all listed.
"""
from __future__ import annotations

import hashlib
import json

import yaml

from ..ir.graph import Arg
from ..kernels.layout import ROWS_PER_BLOCK
from ..kernels.packed import PK_LMAX, pk_unpack
from ..kernels.rvv import RVV_ROWS
from ..kinds import ArgKind
from ..passes.prefill import mode
from .report import tile_text


def _arg(a: Arg) -> str:
    if a.kind == ArgKind.INT:
        return f"{a.label}={a.value}"
    if a.kind in (ArgKind.POS, ArgKind.TOKEN):
        return f"{a.label}={a.kind}"
    if a.kind == ArgKind.BUF:
        row = "[pos]" if a.row == "pos" else ""
        return f"{a.label}={a.name}{row}"
    row = "[pos]" if a.row == "pos" else ""
    return f"{a.label}=const:{a.name}{row}"


def c_functions(s) -> str:
    """What plan.yaml names as a step's kernel: the C functions its code calls, joined by '+'
    (attention: its scores kernel + attn_exp_av_i8)."""
    return "+".join(s.spec.functions)


def _flow(items) -> str:
    return "[" + ", ".join(str(i) for i in items) + "]"


def _g(x: float) -> str:
    return f"{x:.6g}"


def _packed(plan) -> dict:
    """The packed GEMV's weight layout and, per layer, its compile-time chunk schedules (kernels.packed)."""
    layers = {}
    for st in plan.steps:
        w = st.arg("w") if st.has("w") else None
        if w is None or not w.name.endswith(".wp"):
            continue
        n_out, n_in = st.arg("n_out").value, st.arg("n_in").value
        chunks = [len(sc) for sc in pk_unpack(plan.consts[w.name], n_out, n_in)[1]]
        layers[st.op] = (f"{len(chunks)} blocks, {sum(chunks)} chunks, {len(chunks) * n_in / sum(chunks):.2f} columns a "
                         f"chunk")
    if not layers:
        return {}
    return {"packed_gemv": {
        "weight_layout": f"w .wp: blocks of {ROWS_PER_BLOCK} rows, each a chunk schedule (8 * ceil(n_in/8) bytes of "
                         f"chunk lengths 1..{PK_LMAX}) then per column {ROWS_PER_BLOCK // 2} int32 words "
                         "w[2j] + 2^16 w[2j+1] (kernels.packed.pk_pack)",
        "exactness": "a chunk's 16-bit partial sums proved at compile time for any int8 input: per row, the sum over "
                     "w < 0 of 128|w| and over w > 0 of 127 w at most 32767, and its mirror at most 32768",
        "layers": layers}}


def plan_yaml(c) -> str:
    dep, plan, alloc = c.dep, c.plan, c.alloc
    d = dep.model.dims
    wsha = hashlib.sha256(dep.model.weights.read_bytes()).hexdigest()[:16]
    head = {
        "deployment": dep.name,
        "source": dep.source.name,
        "target": dep.target.name,
        **({"cores": {"isa": dep.target.isa, "vlen": dep.target.vlen,
                      "weight_layout": f"w .wv: the vector GEMV's, blocks of {RVV_ROWS} rows across the lanes, per quad "
                                       "of 4 input columns each row's 4 weights (kernels.rvv.rvv_pack)"}}
           if dep.target.vlen else {}),
        "model": {"arch": "llama", "weights": dep.model.weights.name, "weights_sha256": wsha,
                  "dim": d.dim, "layers": d.layers, "heads": d.heads, "kv_heads": d.kv_heads, "hidden": d.hidden,
                  "vocab": d.vocab, "context": d.context, "norm_eps": d.norm_eps, "rope_theta": d.rope_theta,
                  "tied": d.tied},
        "quantization": {
            "weights": f"{dep.quant.weights} {dep.quant.granularity}"
                       + (f"({dep.quant.group}), uint8 group scales times one per row" if dep.quant.group else "")
                       + " symmetric" + (", GPTQ rounding" if dep.quant.rounding == "gptq" else ""),
            **({"weight_overrides": [f"{o.pattern.text} -> " + (f"int4 per_group({o.group})" if o.group else "int8")
                                     + f" (line {o.pos.line})" for o in dep.quant.overrides]}
               if dep.quant.overrides else {}),
            "activations": f"{dep.quant.activations} per-tensor symmetric",
            "calibration": f"{dep.quant.calibration.source if dep.quant.calibration.source == 'samples' else 'file'}"
                           f", {dep.quant.calibration.tokens} tokens, seed {dep.quant.calibration.seed}, "
                           f"stat {dep.quant.calibration.stat}"
                           + (f"({dep.quant.calibration.percentile:g})" if dep.quant.calibration.stat == "percentile" else ""),
            "kv_cache": dep.quant.kv_cache, "keys": dep.quant.keys,
            **({"queries": dep.quant.queries + (" (in int16, +-2047)" if dep.quant.queries == "int12" else "")}
               if dep.quant.queries != "int8" else {}),
            **({"gate_up": dep.quant.gate_up} if dep.quant.gate_up != "int8" else {}),
            **({"per_token_scales": list(dep.quant.dynamic)} if dep.quant.dynamic else {}), "residual": dep.quant.residual, "logits": "int32",
            **({"smoothing": f"SmoothQuant alpha {dep.quant.smooth:g} into q/k/v and gate/up; the final norm's gain "
                             "folded into the classifier (its own copy of the weights)"
                             + (f"; the SwiGLU output by {dep.quant.smooth_down:g} into down (through up's rows)"
                                if dep.quant.smooth_down is not None else "")} if dep.quant.smooth is not None else {}),
            "rounding": "half up in linear layers (one shift per layer), half away from zero elsewhere",
        },
        "memory": {lvl.name: {"budget_bytes": lvl.size_bytes, "capacity_bytes": lvl.capacity_bytes,
                              "arena_bytes": alloc.arena_bytes[lvl.name], "lower_bound_bytes": alloc.lower_bound[lvl.name],
                              "aligned_lower_bound_bytes": alloc.aligned_lower_bound[lvl.name],
                              "optimal": alloc.optimal[lvl.name],
                              "weight_bytes": alloc.weight_bytes[lvl.name], "alignment": lvl.alignment,
                              "double_buffer": lvl.double_buffer, "holds": list(lvl.holds)} for lvl in dep.memory},
        "dma": {"report_position": plan.report_pos, "bytes_per_token": sum(s.staging.dma_bytes for s in plan.steps),
                "lower_bound_bytes": plan.dma_lower_bound},
        **_packed(plan),
    }
    out = [yaml.safe_dump(head, sort_keys=False, width=120).rstrip()]
    out.append("scales:  # real value = integer * scale")
    for k in sorted(c.quant.scales):
        out.append(f"  {k}: {_g(c.quant.scales[k])}")
    out.append("steps:  # one flow mapping per step: what runs, on which engine, with which arguments, and why")
    for s in plan.steps:
        out.append(f"  - {{index: {s.index}, op: {s.op}, rule: {s.rule}, kernel: {c_functions(s)}, engine: {s.engine}, "
                   f"cores: {s.cores}, macs: {s.macs}, tiles: {s.staging.tiles}, tile: {json.dumps(tile_text(s))}, dma_bytes: {s.staging.dma_bytes},"
                   + (f" fork: [{s.fork[0]}, {s.fork[1]}]," if s.fork else ""))
        out.append(f"     args: [{', '.join(json.dumps(_arg(a)) for a in s.args)}],")
        staging = [x.buf for x in s.staging.xfers] + [b for bs in (s.staging.tiling.buffers.values() if s.staging.tiling else ()) for b in bs]
        if staging:  # L1 buffers this step alone uses: DMA staging and tiles
            out.append(f"     staging: [{', '.join(json.dumps(b) for b in staging)}],")
        if s.staging.early is not None:  # the weight stream: the first tile, fetched before step `at` runs
            first = [bs[0] for bs in s.staging.tiling.buffers.values() if bs]
            out.append(f"     stream: {{fetched_at: {s.staging.early}, tiles: [{', '.join(json.dumps(b) for b in first)}]}},")
        out.append(f"     why: {json.dumps(s.reason)}}}")
    pre = getattr(c, "prefill", None)
    if pre is not None:
        out.append(f"prefill:  # the prompt's plan: chunks of {pre.chunk} tokens, step-major; mode gemm: weights once for "
                   "the chunk, flat: all the chunk's elements, token: once per token, last: the last token only")
        out.append(f"  chunk: {pre.chunk}")
        if pre.note:
            out.append(f"  note: {json.dumps(pre.note)}")
        out.append("  arena_bytes: {" + ", ".join(f"{k}: {v}" for k, v in pre.alloc.arena_bytes.items()) + "}")
        out.append("  steps:")
        for s in pre.plan.steps:
            shapes = [f"{a.label}={_flow(pre.plan.values[a.name].shape)}" for a in s.args
                      if a.kind == ArgKind.BUF and a.name in pre.plan.scaled]
            out.append(f"    - {{index: {s.index}, op: {s.op}, kernel: {c_functions(s)}, engine: {s.engine}, mode: {mode(s, pre.plan)}, "
                       f"tiles: {s.staging.tiles}, tile: {json.dumps(tile_text(s))}, dma_bytes: {s.staging.dma_bytes},"
                       + (f" fork: [{s.fork[0]}, {s.fork[1]}]," if s.fork else "")
                       + f" chunk_shapes: [{', '.join(json.dumps(x) for x in shapes)}]}}")
        out.append("  buffers:")
        for b in pre.alloc.buffers:
            v = pre.plan.values[b.name]
            out.append(f"    - {{name: {b.name}, level: {b.level}, offset: {b.offset}, size: {b.size}, "
                       f"first_step: {b.first_step}, last_step: {b.last_step}, dtype: {v.dtype}, "
                       f"shape: {_flow(v.shape)}{', persistent: true' if b.persistent else ''}}}")
    out.append("buffers:  # every tensor in an arena; offsets and sizes in bytes, lifetimes in steps")
    for b in alloc.buffers:
        v = plan.values[b.name]
        out.append(f"  - {{name: {b.name}, level: {b.level}, offset: {b.offset}, size: {b.size}, "
                   f"first_step: {b.first_step}, last_step: {b.last_step}, dtype: {v.dtype}, "
                   f"shape: {_flow(v.shape)}{', persistent: true' if b.persistent else ''}}}")
    out.append("constants:  # read-only data in the weights level")
    for k in sorted(plan.consts):
        arr = plan.consts[k]
        out.append(f"  - {{name: {k}, dtype: {arr.dtype}, shape: {_flow(arr.shape)}, bytes: {arr.nbytes}}}")
    return "\n".join(out) + "\n"
