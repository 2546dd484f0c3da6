"""Exact static-memory placement: a heuristic first, then branch-and-bound to close the gap.

Buffers (size, inclusive live steps [first, last]) get offsets so that buffers live at the same step
never share a byte; the goal is the smallest peak (max offset + size). No placement can beat the
lower bound: the most bytes live at any one step. Sizes are rounded up to `align` here and the
search runs in units of `align`, so every offset (a sum of rounded sizes) is aligned.

1. Decomposition. A buffer live together with every other one can sit at the bottom of the
   arena (move it to 0, lift whatever was below it by its size: nothing collides); the rest then
   splits into groups with no buffer crossing between them, which are solved independently.
2. Per group, start from the best of three greedy placements, then search *canonical* solutions
   as in "MiniMalloc: A Lightweight Memory Allocator for Hardware-Accelerated Machine Learning"
   (Moffitt): pushing every buffer down until it rests on 0 or on the top of a buffer live with it
   never raises the peak, so it suffices to place buffers one at a time in nondecreasing offset
   order, each at its lowest offset above the placed buffers live with it (ties in preorder).
3. Pruning, each rule safe for at least one optimal solution:
   (a) a placement whose top reaches the incumbent's peak cannot improve it;
   (b) per step: unplaced buffers live at that step stack above max(current offset, their lowest
       possible offset), so that plus their bytes must stay under the incumbent;
   (c) dominance: never place a buffer at or above the top that some unplaced buffer would have at
       its lowest offset -- that buffer could drop below, and a solution with a smaller sum of
       offsets (also canonical) is enumerated elsewhere.
   The search stops at the lower bound, when the space is exhausted (optimality proven), or at
   `max_nodes` / `budget_s` (time is checked every 64 nodes); the result keeps the best found.
"""
from __future__ import annotations

import bisect
import sys
import time
from dataclasses import dataclass


@dataclass(frozen=True)
class Item:
    name: str
    size: int  # bytes, rounded up to `align` by solve()
    first: int  # first step the buffer is live
    last: int  # last step, inclusive


@dataclass(frozen=True)
class Result:
    offsets: dict  # name -> byte offset
    peak: int  # max offset + aligned size: the arena this placement needs
    lower_bound: int  # max bytes (aligned sizes) live at one step
    optimal: bool  # proven: peak == lower_bound, or the search exhausted the space
    nodes: int  # placements tried by the search
    seconds: float
    bound: int  # best proven lower bound on the optimum (>= lower_bound; == peak when optimal)

    @property
    def gap_bytes(self) -> int:
        return self.peak - self.lower_bound


def _up(n: int, a: int) -> int:
    return -(-n // a) * a


def lower_bound(items, align: int = 1) -> int:
    """Max over steps of the (aligned) bytes live at that step, by a sweep over start/end events."""
    events = sorted([(it.first, 1, _up(it.size, align)) for it in items]
                    + [(it.last + 1, 0, -_up(it.size, align)) for it in items])  # ends sort first
    live = best = 0
    for _, _, delta in events:
        live += delta
        best = max(best, live)
    return best


def check(items, offsets: dict, align: int = 1) -> list[str]:
    """Independent re-check: every item placed, aligned, non-negative, no byte shared while live."""
    problems = []
    for it in items:
        o = offsets.get(it.name)
        if not isinstance(o, int) or o < 0 or o % align:
            problems.append(f"{it.name}: offset {o!r} is missing, negative or not a multiple of {align}")
    ok = [it for it in items if isinstance(offsets.get(it.name), int) and it.size > 0]
    for i, a in enumerate(ok):
        for b in ok[i + 1:]:
            oa, ob = offsets[a.name], offsets[b.name]
            if a.first <= b.last and b.first <= a.last and oa < ob + b.size and ob < oa + a.size:
                problems.append(f"{a.name} [{oa}, {oa + a.size}) and {b.name} [{ob}, {ob + b.size}) overlap while live")
    return problems


def _greedy(items, tightest: bool) -> dict:
    """Place items in the given order at the lowest (or tightest-gap) offset that fits."""
    placed, out = [], {}
    for it in items:
        busy = sorted((o, o + s) for o, s, f, l in placed if f <= it.last and it.first <= l)
        best, best_gap, cur = None, None, 0
        for lo, hi in busy + [(1 << 62, 1 << 62)]:
            gap = lo - cur
            if gap >= it.size and (best_gap is None or gap < best_gap):
                best, best_gap = cur, gap
                if not tightest:
                    break  # first fit: the lowest gap that fits
            cur = max(cur, hi)
        out[it.name] = best
        placed.append((best, it.size, it.first, it.last))
    return out


def best_fit(items, align: int = 1) -> dict:
    """The heuristic arena.py uses: largest first, each into the tightest gap (sizes rounded to align)."""
    units = [Item(it.name, _up(it.size, align) // align, it.first, it.last) for it in items]
    order = sorted(units, key=lambda it: (-it.size, it.first, it.name))
    return {n: o * align for n, o in _greedy(order, True).items()}


def _peak(items, offsets) -> int:
    return max((offsets[it.name] + it.size for it in items), default=0)


class _Stop(Exception):
    pass


class _Search:
    def __init__(self, max_nodes: int, deadline: float):
        self.nodes, self.max_nodes, self.deadline, self.stopped = 0, max_nodes, deadline, False

    def tick(self) -> None:
        self.nodes += 1
        if self.nodes >= self.max_nodes or (self.nodes % 64 == 0 and time.perf_counter() > self.deadline):
            self.stopped = True
            raise _Stop

    def group(self, items, floor: int) -> tuple[dict, int, int]:
        """(offsets, peak, proven lower bound) for items in units; stop early once peak <= floor."""
        if not items:
            return {}, 0, 0
        min_last, max_first = min(it.last for it in items), max(it.first for it in items)
        pinned = sorted((it for it in items if it.first <= min_last and it.last >= max_first),
                        key=lambda it: (-it.size, it.name))
        if pinned:  # live with everything else: stack at the bottom, solve the rest above them
            out, base = {}, 0
            for it in pinned:
                out[it.name], base = base, base + it.size
            rest = [it for it in items if it.name not in out]
            offs, peak, proven = self.group(rest, max(floor - base, 0))
            out.update({n: o + base for n, o in offs.items()})
            return out, base + peak, base + proven
        parts, end = [], None
        for it in sorted(items, key=lambda it: (it.first, it.last, it.name)):
            if end is None or it.first > end:
                parts.append([])  # nothing live crosses this step: an independent subproblem
            parts[-1].append(it)
            end = it.last if end is None or it.first > end else max(end, it.last)
        if len(parts) == 1:
            return self.branch_and_bound(items, floor)
        out, peak, proven = {}, 0, 0
        for part in sorted(parts, key=lambda p: (-lower_bound(p), p[0].name)):  # hardest first raises floor
            offs, p_peak, p_proven = self.group(part, max(floor, proven))
            out.update(offs)
            peak, proven = max(peak, p_peak), max(proven, p_proven)
        return out, peak, proven

    def branch_and_bound(self, items, floor: int) -> tuple[dict, int, int]:
        lb = lower_bound(items)
        starts = [sorted(items, key=lambda it: (-it.size, it.first, it.name)),
                  sorted(items, key=lambda it: (it.first, -it.size, it.name))]
        tries = [_greedy(starts[0], True), _greedy(starts[0], False), _greedy(starts[1], False)]
        best_off = min(tries, key=lambda o: _peak(items, o))  # min keeps the first on ties
        best = _peak(items, best_off)
        target = max(lb, floor)  # at or below this, the group cannot raise the overall peak
        if best <= target or self.stopped:
            return best_off, best, best if best <= lb else lb
        n = len(items)
        size = [it.size for it in items]
        points = sorted({it.first for it in items})  # live sets only grow at a start: check those
        secs = [range(bisect.bisect_left(points, it.first), bisect.bisect_right(points, it.last)) for it in items]
        over = [[j for j in range(n) if j != i and items[j].first <= items[i].last
                 and items[i].first <= items[j].last] for i in range(n)]
        rest = [0] * len(points)  # unplaced bytes live at each point
        for i in range(n):
            for k in secs[i]:
                rest[k] += size[i]
        press = [max(rest[k] for k in secs[i]) for i in range(n)]
        order = sorted(range(n), key=lambda i: (-press[i], -size[i] * (items[i].last - items[i].first + 1),
                                                -size[i], items[i].name))  # most constrained first
        rank = [0] * n
        for r, i in enumerate(order):
            rank[i] = r
        off, minoff = [-1] * n, [0] * n
        state = {"best": best, "off": None}

        def feasible(o: int) -> bool:
            low = [1 << 62] * len(points)  # lowest possible offset of an unplaced buffer at each point
            for j in range(n):
                if off[j] < 0:
                    for k in secs[j]:
                        low[k] = min(low[k], minoff[j])
            return all(not rest[k] or max(o, low[k]) + rest[k] < state["best"] for k in range(len(points)))

        def dfs(last_off: int, last_rank: int, left: int) -> None:
            if not left:  # every top is below the incumbent (rules a, b): a strictly better solution
                state["best"], state["off"] = max(off[i] + size[i] for i in range(n)), off[:]
                return
            cands = sorted((minoff[i], rank[i], i) for i in range(n) if off[i] < 0)
            lowest_top = min(mo + size[i] for mo, _, i in cands)
            for mo, r, i in cands:
                if (mo, r) < (last_off, last_rank):
                    continue  # canonical order: offsets never decrease along a branch
                if mo >= lowest_top:
                    break  # rule (c); candidates are sorted by offset, so all later ones too
                if mo + size[i] >= state["best"]:
                    continue  # rule (a)
                self.tick()
                off[i], top, undo = mo, mo + size[i], []
                for j in over[i]:
                    if off[j] < 0 and minoff[j] < top:
                        undo.append((j, minoff[j]))
                        minoff[j] = top  # it can only go above this buffer now
                for k in secs[i]:
                    rest[k] -= size[i]
                if feasible(mo):  # rule (b)
                    dfs(mo, r, left - 1)
                for k in secs[i]:
                    rest[k] += size[i]
                for j, v in undo:
                    minoff[j] = v
                off[i] = -1
                if state["best"] <= target:
                    return

        sys.setrecursionlimit(max(sys.getrecursionlimit(), n + 200))  # depth = buffers in the group
        exhausted = False
        try:
            dfs(-1, -1, n)
            exhausted = state["best"] > target  # ran to the end rather than stopping at the target
        except _Stop:
            pass
        if state["off"] is not None:
            best_off = {it.name: state["off"][i] for i, it in enumerate(items)}
        best = state["best"]
        return best_off, best, best if exhausted or best <= lb else lb


def solve(items, align: int = 1, budget_s: float = 1.0, start: dict | None = None,
          max_nodes: int = 10**9) -> Result:
    """Offsets for items (sizes rounded up to align) with a proven-optimal or gap-reporting peak.

    `start`, a valid placement (byte offsets), is returned instead if the search does not beat it.
    With `max_nodes` as the binding limit the result is deterministic; a time cut may not be.
    """
    t0 = time.perf_counter()
    items = list(items)
    if len({it.name for it in items}) != len(items):
        raise ValueError("item names must be unique")
    if align < 1 or any(it.size < 0 or it.first > it.last for it in items):
        raise ValueError("need align >= 1, sizes >= 0 and first <= last")
    units = [Item(it.name, _up(it.size, align) // align, it.first, it.last) for it in items]
    lb = lower_bound(units)
    search = _Search(max_nodes, t0 + budget_s)
    offs, peak, proven = search.group([u for u in units if u.size > 0], 0)
    offsets = {u.name: offs.get(u.name, 0) * align for u in units}  # empty buffers sit at 0
    peak, proven = peak * align, proven * align
    if start is not None:
        if check(items, start, align) or check(units, {n: o // align for n, o in start.items()}):
            raise ValueError("start is not a valid placement: " + "; ".join(check(items, start, align)))
        s_peak = max((start[u.name] + u.size * align for u in units), default=0)
        if s_peak < peak:
            offsets, peak = dict(start), s_peak
    proven = min(max(proven, lb * align), peak)
    return Result(offsets, peak, lb * align, peak == proven, search.nodes, time.perf_counter() - t0, proven)
