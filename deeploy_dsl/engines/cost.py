"""The cost model: cycles and energy per step on the target, for the build summary and for `auto` mapping.

Estimates, not measurements (bench/rv32_report.py measures instructions under QEMU). Every constant comes
from the target's YAML, which says where each figure comes from or that it is an assumption:
  * cluster linear layer: MACs / (cores * MACs per cycle per core) + one fork; attention the same for its
    MACs plus one element's work per score; element-wise kernels: elements * cycles per element / cores;
  * NPU linear layer: job setup + max(k-blocks * column-blocks * tokens, weight bytes / weight bandwidth);
  * DMA: the tiler's bytes and transfers (bytes / bandwidth + setup per transfer); a double-buffered step
    with several tiles overlaps the bytes' moving with compute (not the set-ups, which a core programs), otherwise
    it adds; a first tile the weight stream fetches early costs only what the units since its fetch did not hide;
  * energy: MACs, element operations, DMA bytes and NPU weight bytes times their pJ, plus idle power over
    the time the step takes.
A decode token is the plan's steps at the report position; a prefill of N tokens runs each step once for
all N (linear layers as GEMMs: the weights move once), attention over positions 0..N-1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ..frontend.spec import Deployment, Target
from ..ir.graph import Plan, Step
from ..kernels.twins import NPU_TOK_ROWS
from ..kernels.layout import ROWS_PER_BLOCK, npu_packed_bytes
from ..kinds import ArgKind, Engine, Mode, TileScheme
from ..passes.prefill import mode


@dataclass(frozen=True)
class StepCost:
    op: str
    engine: str
    macs: int
    cycles: int
    compute_cycles: int
    dma_cycles: int
    utilisation: float  # MACs done / MACs the engine could have done in those cycles (0 for element-wise steps)
    energy_pj: float


Q4_COST = 4.04 / 3.29  # gemv_q4 against gemv per MAC, bench/gemv_q4_rv32.py (stories260K's layers, group 32)


def npu_linear_cycles(t: Target, n_in: int, n_out: int, n_tok: int = 1) -> int:
    """One NPU job: setup, then the array's k-blocks x column-blocks per token, or the weights' streaming."""
    npu = t.npu
    array = math.ceil(n_in / npu.k_block) * math.ceil(n_out / npu.cols) * n_tok
    return npu.setup_cycles + max(array, math.ceil(npu_packed_bytes(n_out, n_in) / npu.weight_bytes_per_cycle))


def cluster_linear_cycles(t: Target, cores: int, macs: int) -> int:
    return math.ceil(macs / (cores * t.macs_per_cycle_per_core)) + (t.fork_cycles if cores > 1 else 0)


def _elements(s: Step, plan: Plan) -> int:
    """Elements an element-wise step produces: its output argument (a cache row counts one row, and so does a
    token's column of a transposed cache)."""
    a = s.output
    v = plan.values[a.name]
    n = int(math.prod(v.shape))
    # a prefill plan's activations: per token
    return n // v.shape[0] if a.row or a.name in plan.scaled or v.kind == "kv" else n


@dataclass(frozen=True)
class Work:
    """What one call of a kernel does for n_tok tokens: compute cycles (DMA apart), MACs, element operations."""

    compute: int
    macs: int
    ops: int = 0


# ---- the cost functions a KernelSpec names: (step, plan, deployment, n_tok, pos, pos0) -> Work ----

def linear_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """A cluster GEMV: per tile of rows (all of them untiled), the busiest core's share of whole blocks of
    ROWS_PER_BLOCK rows and a fork; a tile of fewer blocks than cores leaves cores idle."""
    t = dep.target
    n_out, n_in = s.arg("n_out").value, s.arg("n_in").value
    tiling = s.staging.tiling
    tile = tiling.tile if tiling is not None and tiling.kind == TileScheme.ROWS else n_out
    fork = t.fork_cycles if s.cores > 1 else 0
    compute = 0.0
    for r0 in range(0, n_out, tile):
        rows = min(tile, n_out - r0)
        busiest = min(math.ceil(math.ceil(rows / ROWS_PER_BLOCK) / s.cores) * ROWS_PER_BLOCK, rows)
        compute += busiest * n_in * n_tok / t.macs_per_cycle_per_core + fork
    return Work(math.ceil(compute), s.macs * n_tok)


def linear_q4_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """A cluster GEMV on int4 weights: unpacking nibbles costs Q4_COST more per MAC (RV32 4.04 against 3.29)."""
    w = linear_work(s, plan, dep, n_tok, pos, pos0)
    return Work(math.ceil(w.compute * Q4_COST), w.macs)


PK_COST = 2.870 / 3.333  # gemv_pk against gemv per MAC, bench/gemv_pk_rv32.py (stories260K's 36 layers, one call each)


def linear_pk_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """A cluster GEMV with two MACs per multiply (packed row pairs): PK_COST of the int8 GEMV's cycles per MAC."""
    w = linear_work(s, plan, dep, n_tok, pos, pos0)
    return Work(math.ceil(w.compute * PK_COST), w.macs)


TOK_ROW_CYCLES = 5  # gemv_tok.c: a row's multiplier times the token's (load, mulhu, store) and a call per 64 rows (RV32)


def linear_tok_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """A cluster GEMV on an input with a per-token factor: the GEMV, and each row's multiplier made for the token."""
    w = linear_work(s, plan, dep, n_tok, pos, pos0)
    return Work(w.compute + math.ceil(s.arg("n_out").value * n_tok * TOK_ROW_CYCLES / s.cores), w.macs)


WIDE_ROW_CYCLES = 14  # wide.c: a row's requantization by the definition in 64 bits, on RV32 (beyond TOK_ROW_CYCLES)
WIDE_MAC_COST = 3.5 / 3.333  # wide.c's one block per pass (an x load per 8 MACs) against gemv's two


def linear_wide_tok_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """A wide GEMV (wide.c: an int16 input or int16 weights) on an input with a per-token factor: one block per pass
    and each row requantized in 64 bits."""
    w = linear_work(s, plan, dep, n_tok, pos, pos0)
    rows = math.ceil(s.arg("n_out").value * n_tok * (TOK_ROW_CYCLES + WIDE_ROW_CYCLES) / s.cores)
    return Work(math.ceil(w.compute * WIDE_MAC_COST) + rows, w.macs)


def linear_pk_tok_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """linear_tok_work with two MACs per multiply."""
    w = linear_pk_work(s, plan, dep, n_tok, pos, pos0)
    return Work(w.compute + math.ceil(s.arg("n_out").value * n_tok * TOK_ROW_CYCLES / s.cores), w.macs)


def linear_q4_tok_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """linear_tok_work on int4 weights."""
    w = linear_q4_work(s, plan, dep, n_tok, pos, pos0)
    return Work(w.compute + math.ceil(s.arg("n_out").value * n_tok * TOK_ROW_CYCLES / s.cores), w.macs)


def npu_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """An NPU job for n_tok tokens, or a job per token when its input has per-token scales."""
    t = dep.target
    n_in, n_out = s.arg("n_in").value, s.arg("n_out").value
    per_token = s.arg("shift").kind == ArgKind.BUF  # its input has per-token scales: a job per token
    compute = n_tok * npu_linear_cycles(t, n_in, n_out) if per_token else npu_linear_cycles(t, n_in, n_out, n_tok)
    return Work(compute, s.macs * n_tok)


def npu_tok_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """NPU jobs on an input with a per-token factor: per token, a job per NPU_TOK_ROWS rows, each after the core has
    made its rows' multipliers (npu_run_tok)."""
    return Work(n_tok * npu_tok_cycles(dep.target, s.arg("n_in").value, s.arg("n_out").value), s.macs * n_tok)


def npu_tok_cycles(t: Target, n_in: int, n_out: int) -> int:
    """A token's NPU jobs on an input with a per-token factor: a job per NPU_TOK_ROWS rows, each after the core has
    made its rows' multipliers (npu_run_tok)."""
    return sum(npu_linear_cycles(t, n_in, rows) + rows * TOK_ROW_CYCLES
               for rows in (min(NPU_TOK_ROWS, n_out - r0) for r0 in range(0, n_out, NPU_TOK_ROWS)))


def attention_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """MACs over the cores plus one element's work per score. s.macs is at the report position; a prefill chunk of
    n_tok queries at positions pos0.. visits positions 0..pos0+t for query t."""
    t, d = dep.target, dep.model.dims
    macs = s.macs * n_tok
    visited = n_tok * pos0 + n_tok * (n_tok + 1) // 2  # positions the chunk's queries read
    if n_tok > 1:
        macs = 2 * d.heads * d.head_size * visited
    ops = d.heads * (visited if n_tok > 1 else pos + 1)
    compute = math.ceil(macs / (s.cores * t.macs_per_cycle_per_core) + ops * t.cycles_per_element / s.cores) \
        + (t.fork_cycles if s.cores > 1 else 0)
    return Work(compute, macs, ops)


def elementwise_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """Elements times cycles per element over the cores that share them, plus a fork."""
    t = dep.target
    ops = _elements(s, plan) * n_tok
    # a split whose unit is the whole vector (a per-token scale) runs on one core per token, unless it runs as two
    # forks over all cores (Split.passes)
    whole = s.split is not None and s.split.unit == s.split.count and not s.split.passes
    busy = min(s.cores, n_tok) if whole else s.cores
    forks = 2 if s.split is not None and s.split.passes else 1
    compute = math.ceil(ops * t.cycles_per_element / busy) + (forks * t.fork_cycles if s.cores > 1 else 0)
    return Work(compute, s.macs * n_tok, ops)


def one_core_work(s: Step, plan: Plan, dep: Deployment, n_tok: int, pos: int, pos0: int) -> Work:
    """Elements times cycles per element on one core, no fork: a kernel that runs on core 0 alone (the vector unit's
    norm, RoPE, residual add and per-token SwiGLU, kernels.rvv), whatever cores its op is mapped to."""
    ops = _elements(s, plan) * n_tok
    return Work(math.ceil(ops * dep.target.cycles_per_element), s.macs * n_tok, ops)


def step_cost(s: Step, plan: Plan, dep: Deployment, n_tok: int = 1, pos: int | None = None, pos0: int = 0) -> StepCost:
    """Cycles and energy of one step for n_tok tokens at once (a decode step: 1, at the plan's report position;
    a prefill chunk: n_tok tokens at positions pos0 ..): the kernel's cost function, then DMA and energy."""
    t, e = dep.target, dep.target.energy
    pos = plan.report_pos if pos is None else pos
    dma = s.staging.dma_cycles
    w = s.spec.cost(s, plan, dep, n_tok, pos, pos0)
    macs = w.macs
    if s.engine == Engine.NPU:
        cycles = w.compute + dma
        peak = t.npu.k_block * t.npu.cols
        wbytes = npu_packed_bytes(s.arg("n_out").value, s.arg("n_in").value)
        dyn = macs * t.npu.pj_per_mac + wbytes * t.npu.pj_per_weight_byte + s.staging.dma_bytes * e.dma_pj_per_byte
    else:
        overlapped = s.staging.tiling is not None and s.staging.tiling.double_buffer and s.staging.tiles > 1
        # a transfer's set-up is a core programming the engine (not overlapped); the bytes move while cores compute
        move = math.ceil(s.staging.dma_bytes / t.dma_bytes_per_cycle) if s.staging.dma_bytes else 0
        setup = dma - move
        if s.staging.early is not None:  # the weight stream fetched the first tile while the units before it ran
            first = math.ceil(first_tile_bytes(s) / t.dma_bytes_per_cycle)
            late = exposed_first_tile(s, plan, dep)
            cycles = max(w.compute + setup, move - first) + late if overlapped else w.compute + setup + move - first + late
        else:
            cycles = max(w.compute + setup, move) + math.ceil(move / s.staging.tiles) if overlapped else w.compute + dma
        peak = s.cores * t.macs_per_cycle_per_core
        dyn = macs * e.cluster_pj_per_mac + w.ops * e.cluster_pj_per_op + s.staging.dma_bytes * e.dma_pj_per_byte
    util = macs / (cycles * peak) if macs and cycles else 0.0
    idle = e.idle_mw * 1e-3 * cycles / t.clock_hz * 1e12  # pJ
    return StepCost(s.op, s.engine, macs, cycles, w.compute, dma, util, dyn + idle)


def first_tile_bytes(s: Step) -> int:
    """Bytes of a linear layer's first tile of rows: its weights (whole blocks) with their multipliers and shifts."""
    t = s.staging.tiling
    n_out = s.arg("n_out").value
    rows = min(t.tile, n_out)
    return math.ceil(rows / ROWS_PER_BLOCK) * ROWS_PER_BLOCK * s.spec.row_bytes(s) + rows * (4 + bool(t.buffers.get("shift")))


def exposed_first_tile(s: Step, plan: Plan, dep: Deployment) -> int:
    """DMA cycles of a first tile the weight stream fetched early that the units in between did not hide: they hide
    what their cores compute beyond their own transfers. A fork group's members share the cycles left over."""
    t = dep.target
    start = s.fork[0] if s.fork else s.index
    members = plan.steps[s.fork[0]:s.fork[1] + 1] if s.fork else (s,)
    slack = 0
    for o in plan.steps[s.staging.early:start]:
        early = first_tile_bytes(o) if o.staging.early is not None else 0  # fetched before the window
        move = math.ceil((o.staging.dma_bytes - early) / t.dma_bytes_per_cycle)
        slack += max(0, o.spec.cost(o, plan, dep, 1, plan.report_pos, 0).compute - move)
    first = [math.ceil(first_tile_bytes(m) / t.dma_bytes_per_cycle) for m in members]
    late = max(0, sum(first) - slack)
    mine = math.ceil(first_tile_bytes(s) / t.dma_bytes_per_cycle)
    return math.ceil(late * mine / sum(first)) if late else 0


def plan_costs(plan: Plan, dep: Deployment, n_tok: int = 1) -> list[StepCost]:
    return [step_cost(s, plan, dep, n_tok) for s in plan.steps]


def prefill_costs(pre, dep: Deployment, n: int) -> list[StepCost]:
    """The steps of a prefill of n prompt tokens with the prefill plan (prefill.Prefill): per chunk, a GEMM or
    element-wise step once for the chunk's tokens (weights and their DMA once), a per-token step once per token
    (a fork each), attention over the positions its queries read; the last-token steps once."""
    plan, out = pre.plan, []
    for pos0 in range(0, n, pre.chunk):
        m = min(pre.chunk, n - pos0)
        for s in plan.steps:
            md = mode(s, plan)
            if md == Mode.LAST:
                continue
            if md == Mode.TOKEN and not s.spec.chunk_cost:
                one = step_cost(s, plan, dep)
                out.append(StepCost(s.op, s.engine, one.macs * m, one.cycles * m, one.compute_cycles * m,
                                    one.dma_cycles * m, one.utilisation, one.energy_pj * m))
            else:
                out.append(step_cost(s, plan, dep, m, pos0=pos0))
    out += [step_cost(s, plan, dep, pos=n - 1) for s in plan.steps if mode(s, plan) == Mode.LAST]
    return out


def summary(plan: Plan, dep: Deployment, prefill_tokens: int, prefill=None) -> dict:
    """Per token and per prefill: cycles, tokens/s, uJ/token, and each engine's share of ops and MACs. The prefill
    figure comes from the prefill plan when given (else the decode plan's steps, each once for all tokens)."""
    t = dep.target
    dec = plan_costs(plan, dep)
    pre = prefill_costs(prefill, dep, prefill_tokens) if prefill is not None else plan_costs(plan, dep, prefill_tokens)
    cycles = sum(c.cycles for c in dec)
    energy = sum(c.energy_pj for c in dec)
    macs = sum(c.macs for c in dec) or 1
    engines = {}
    for c in dec:
        e = engines.setdefault(c.engine, {"ops": 0, "macs": 0, "cycles": 0})
        e["ops"] += 1
        e["macs"] += c.macs
        e["cycles"] += c.cycles
    for e in engines.values():
        e["mac_share"] = round(e["macs"] / macs, 4)
    pre_cycles = sum(c.cycles for c in pre)
    npu_consts = {a.name for s in plan.steps if s.engine == Engine.NPU for a in s.args if a.kind == ArgKind.CONST}
    return {
        "clock_hz": t.clock_hz,
        "npu_weight_memory": {"used_bytes": sum(int(plan.consts[k].nbytes) for k in sorted(npu_consts)),
                              "capacity_bytes": t.npu.weight_memory_bytes} if t.npu else None,
        "decode": {"position": plan.report_pos, "cycles_per_token": cycles,
                   "tokens_per_s": round(t.clock_hz / cycles, 1) if cycles else 0.0,
                   "uj_per_token": round(energy / 1e6, 3), "macs_per_token": sum(c.macs for c in dec)},
        "prefill": {"tokens": prefill_tokens, "chunk": prefill.chunk if prefill is not None else prefill_tokens,
                    "cycles": pre_cycles,
                    "cycles_per_token": round(pre_cycles / prefill_tokens) if prefill_tokens else 0,
                    "uj": round(sum(c.energy_pj for c in pre) / 1e6, 3)},
        "engines": engines,
        "steps": [{"op": c.op, "engine": c.engine, "macs": c.macs, "cycles": c.cycles, "share": round(c.cycles / cycles, 4)
                   if cycles else 0.0, "utilisation": round(c.utilisation, 3), "dma_cycles": c.dma_cycles,
                   "dma_exposed": max(0, c.cycles - c.compute_cycles) if c.dma_cycles else 0,
                   "uj": round(c.energy_pj / 1e6, 4)} for c in dec],
    }
