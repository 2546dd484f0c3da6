"""Static memory: one arena per memory level, offsets from buffer lifetimes, and an independent checker.

Persistent buffers (the KV cache) sit at the bottom of their level's arena; per-step buffers are
placed above them by greedy best-fit over lifetimes. The lower bound printed next to each arena is
the largest number of bytes live at any one step, which no allocation can beat.
"""
from __future__ import annotations

from dataclasses import dataclass

from .errors import Collector, MemoryError_
from .graph import Plan
from .spec import Deployment


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
    lower_bound: dict  # level -> max bytes live at once
    weight_bytes: dict  # level -> bytes of constant data placed there


def _align(n: int, a: int) -> int:
    return (n + a - 1) // a * a


def lifetimes(plan: Plan) -> dict[str, tuple[int, int]]:
    spans: dict[str, tuple[int, int]] = {}
    for s in plan.steps:
        for a in s.args:
            if a.kind == "buf":
                lo, hi = spans.get(a.name, (s.index, s.index))
                spans[a.name] = (min(lo, s.index), max(hi, s.index))
    return spans


def _overlaps(a: Buffer, b: Buffer) -> bool:
    live_together = a.first_step <= b.last_step and b.first_step <= a.last_step
    return live_together and a.offset < b.offset + b.size and b.offset < a.offset + a.size


def best_fit(items: list[tuple[str, int, int, int]], base: int, align: int) -> dict[str, int]:
    """Offsets for (name, size, first, last) items: largest first, each into the tightest gap."""
    placed: list[tuple[int, int, int, int]] = []  # offset, size, first, last
    out: dict[str, int] = {}
    for name, size, first, last in sorted(items, key=lambda t: (-t[1], t[2], t[0])):
        busy = sorted((o, o + s) for o, s, f, l in placed if f <= last and first <= l)
        best, best_gap, cur = None, None, _align(base, align)
        for lo, hi in busy + [(1 << 62, 1 << 62)]:
            gap = lo - cur
            if gap >= size and (best_gap is None or gap < best_gap):
                best, best_gap = cur, gap
            cur = max(cur, _align(hi, align))
        out[name] = best
        placed.append((best, size, first, last))
    return out


def allocate(plan: Plan, dep: Deployment) -> Allocation:
    spans = lifetimes(plan)
    last = len(plan.steps) - 1
    level_of = {"kv": dep.level_holding("kv_cache").name, "act": dep.level_holding("activations").name,
                "scratch": dep.level_holding("activations").name}
    buffers: list[Buffer] = []
    arena, lower = {}, {}
    weights_level = dep.level_holding("weights").name
    for lvl in dep.memory:
        mine = sorted((v for v in plan.values.values() if level_of[v.kind] == lvl.name and v.name in spans),
                      key=lambda v: v.name)
        top = 0
        for v in (v for v in mine if v.kind == "kv"):
            buffers.append(Buffer(v.name, lvl.name, top, v.nbytes, 0, last, True))
            top = _align(top + v.nbytes, lvl.alignment)
        persistent = top
        items = [(v.name, _align(v.nbytes, lvl.alignment), *spans[v.name]) for v in mine if v.kind != "kv"]
        offsets = best_fit(items, persistent, lvl.alignment)
        for v in (v for v in mine if v.kind != "kv"):
            buffers.append(Buffer(v.name, lvl.name, offsets[v.name], v.nbytes, *spans[v.name], False))
        ends = [b.offset + b.size for b in buffers if b.level == lvl.name]
        arena[lvl.name] = _align(max(ends, default=0), lvl.alignment)
        lower[lvl.name] = persistent + max(
            (sum(sz for _, sz, f, l in items if f <= t <= l) for t in range(len(plan.steps))), default=0)
    wbytes = {lvl.name: 0 for lvl in dep.memory}
    wbytes[weights_level] = sum(int(c.nbytes) for c in plan.consts.values())
    alloc = Allocation(tuple(sorted(buffers, key=lambda b: (b.level, b.offset, b.name))), arena, lower, wbytes)
    _check_budgets(alloc, dep)
    problems = check_allocation(alloc.buffers, {lvl.name: arena[lvl.name] for lvl in dep.memory})
    if problems:  # a bug in the allocator, never the user's fault: stop rather than emit wrong C
        raise AssertionError("allocation checker: " + "; ".join(problems))
    return alloc


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
    errs.raise_if_errors(MemoryError_)


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
