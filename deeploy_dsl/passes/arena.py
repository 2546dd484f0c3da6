"""Static memory: one arena per memory level, offsets from buffer lifetimes, and an independent checker.

Persistent buffers (the KV cache) sit at the bottom of their level's arena; per-step buffers are
placed above them by exact_alloc.solve over their lifetimes (a greedy start, then branch-and-bound up to
SEARCH_NODES). The lower bound printed next to each arena is the largest number of bytes live at any one
step, which no allocation can beat.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import Collector, MemoryBudgetError
from ..frontend.spec import Deployment
from ..ir.graph import Plan
from ..kinds import ArgKind, Engine, ValueKind
from . import exact_alloc


@dataclass(frozen=True)
class Buffer:
    name: str
    level: str
    offset: int
    size: int
    first_step: int
    last_step: int
    persistent: bool


@dataclass(frozen=True)
class Allocation:
    buffers: tuple[Buffer, ...]
    arena_bytes: dict  # level -> bytes of its arena
    lower_bound: dict  # level -> max bytes live at once (exact sizes): no allocation can do better
    weight_bytes: dict  # level -> bytes of constant data placed there
    aligned_lower_bound: dict = field(default_factory=dict)  # the same with sizes rounded to the alignment
    optimal: dict = field(default_factory=dict)  # level -> whether the arena is proven minimal
    search_nodes: dict = field(default_factory=dict)  # level -> nodes the exact search visited


# the exact search stops after this many nodes, never after a time, so builds stay reproducible
SEARCH_NODES = 200_000


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def lifetimes(plan: Plan) -> dict[str, tuple[int, int]]:
    """First and last step of every buffer: its argument uses plus the step's tiles and staging. The steps
    of a fork group run at once, so each member's buffers are live across the whole group; a first tile that the
    weight stream fetches early is live from the step it is fetched at."""
    spans: dict[str, tuple[int, int]] = {}

    def use(name: str, s) -> None:
        first, last = s.fork or (s.index, s.index)
        lo, hi = spans.get(name, (first, last))
        spans[name] = (min(lo, first), max(hi, last))

    for s in plan.steps:
        for a in s.args:
            if a.kind == ArgKind.BUF:
                use(a.name, s)
        for x in s.staging.xfers:
            use(x.buf, s)
        for names in (s.staging.tiling.buffers.values() if s.staging.tiling else ()):
            for n in names:
                use(n, s)
            if names and s.staging.early is not None:  # the first tile lands while the units before it run
                lo, hi = spans[names[0]]
                spans[names[0]] = (min(lo, s.staging.early), hi)
    return spans


def _overlaps(a: Buffer, b: Buffer) -> bool:
    live_together = a.first_step <= b.last_step and b.first_step <= a.last_step
    return live_together and a.offset < b.offset + b.size and b.offset < a.offset + a.size


def best_fit(items: list[tuple[str, int, int, int]], base: int, align: int) -> dict[str, int]:
    """Offsets for (name, size, first, last) items above `base`: largest first, into the tightest gap."""
    base = _align(base, align)
    offs = exact_alloc.best_fit([exact_alloc.Item(*it) for it in items], align)
    return {k: base + v for k, v in offs.items()}


def allocate(plan: Plan, dep: Deployment) -> Allocation:
    spans = lifetimes(plan)
    last = len(plan.steps) - 1
    compute = dep.level_holding("activations").name
    level_of = {"kv": dep.level_holding("kv_cache").name, "act": compute, "scratch": compute, "tile": compute}
    buffers: list[Buffer] = []
    arena, lower, aligned, optimal, nodes = {}, {}, {}, {}, {}
    weights_level = dep.level_holding("weights").name
    for lvl in dep.memory:
        mine = sorted((v for v in plan.values.values() if level_of[v.kind] == lvl.name and v.name in spans),
                      key=lambda v: v.name)
        top = 0
        for v in (v for v in mine if v.kind == ValueKind.KV):
            buffers.append(Buffer(v.name, lvl.name, top, v.nbytes, 0, last, True))
            top = _align(top + v.nbytes, lvl.alignment)
        persistent = top
        temps = [v for v in mine if v.kind != ValueKind.KV]
        items = [exact_alloc.Item(v.name, v.nbytes, *spans[v.name]) for v in temps]
        res = exact_alloc.solve(items, lvl.alignment, budget_s=float("inf"), max_nodes=SEARCH_NODES)
        for v in temps:
            buffers.append(Buffer(v.name, lvl.name, persistent + res.offsets[v.name], v.nbytes, *spans[v.name], False))
        ends = [b.offset + b.size for b in buffers if b.level == lvl.name]
        arena[lvl.name] = _align(max(ends, default=0), lvl.alignment)
        lower[lvl.name] = sum(v.nbytes for v in mine if v.kind == ValueKind.KV) + exact_alloc.lower_bound(items, 1)
        aligned[lvl.name] = persistent + res.lower_bound
        optimal[lvl.name] = res.optimal
        nodes[lvl.name] = res.nodes
    wbytes = {lvl.name: 0 for lvl in dep.memory}
    on_npu = npu_only_consts(plan)
    wbytes[weights_level] = sum(int(c.nbytes) for k, c in plan.consts.items() if k not in on_npu)
    alloc = Allocation(tuple(sorted(buffers, key=lambda b: (b.level, b.offset, b.name))), arena, lower, wbytes,
                       aligned, optimal, nodes)
    _check_budgets(alloc, dep)
    problems = check_allocation(alloc.buffers, {lvl.name: arena[lvl.name] for lvl in dep.memory})
    if problems:  # a bug in the allocator, never the user's fault: stop rather than emit wrong C
        raise AssertionError("allocation checker: " + "; ".join(problems))
    return alloc


def npu_only_consts(plan: Plan) -> set[str]:
    """Constants that only NPU steps read: they live in the NPU's weight memory, not in a memory level."""
    npu = {a.name for s in plan.steps if s.engine == Engine.NPU for a in s.args if a.kind == ArgKind.CONST}
    return npu - {a.name for s in plan.steps if s.engine != Engine.NPU for a in s.args if a.kind == ArgKind.CONST}


def _check_budgets(alloc: Allocation, dep: Deployment) -> None:
    errs = Collector()
    for lvl in dep.memory:
        need = alloc.arena_bytes[lvl.name] + alloc.weight_bytes[lvl.name]
        if need > lvl.size_bytes:
            parts = [f"arena {alloc.arena_bytes[lvl.name]} B (lower bound {alloc.lower_bound[lvl.name]} B)"]
            if alloc.weight_bytes[lvl.name]:
                parts.append(f"weights {alloc.weight_bytes[lvl.name]} B")
            errs.add(lvl.pos, f"{lvl.name} needs {need} B ({' + '.join(parts)}) but has {lvl.size_bytes} B",
                     f"raise {lvl.name}'s size, or place {', '.join(lvl.holds)} in another level with 'holds'")
    errs.raise_if_errors(MemoryBudgetError)


def check_allocation(buffers, capacity: dict[str, int]) -> list[str]:
    """Independent re-check: in bounds, and no two simultaneously live buffers share a byte."""
    problems = []
    by_level: dict[str, list] = {}
    for b in buffers:
        by_level.setdefault(b.level, []).append(b)
        if b.offset < 0 or b.offset + b.size > capacity.get(b.level, 0):
            problems.append(f"{b.name} [{b.offset}, {b.offset + b.size}) is outside {b.level} ({capacity.get(b.level, 0)} B)")
    for bs in by_level.values():
        for i, a in enumerate(bs):
            for b in bs[i + 1:]:
                if _overlaps(a, b):
                    problems.append(f"{a.name} and {b.name} overlap in {a.level} while both are live")
    return problems
