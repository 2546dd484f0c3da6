"""Fork groups: consecutive independent steps that one cluster fork runs together.

On a cluster, every step is a fork and a join: core 0 programs the DMA, wakes the others, and waits
for the last one. Small linear layers that read the same input (a layer's q, k and v; its gate and
up) each have too few weight blocks to keep 8 cores busy: k with 4 blocks leaves half of them idle.
Grouped, the cores share out the blocks of all members as one list, and core 0 forks once.

A group is consecutive steps that each match `fits_in_a_fork` and none of which reads what an
earlier member writes. Its members' buffers are live across the whole group (they run at once), so a
group is only formed when the level can hold every member's tiles together; otherwise the steps
stay separate forks, which is always correct.
"""
from __future__ import annotations

from dataclasses import replace

from ..frontend.spec import Deployment
from ..ir.graph import Plan, Step
from ..kinds import ArgKind, Engine, TileScheme, ValueKind
from .arena import lifetimes
from .tiling import align


def fits_in_a_fork(s: Step) -> bool:
    """A linear layer on the cluster whose weights arrive as one tile (nothing to stream between forks)."""
    return s.spec.tiling == TileScheme.ROWS and s.engine == Engine.CLUSTER and s.staging.tiling is not None \
        and s.staging.tiling.kind == TileScheme.ROWS and s.staging.tiles == 1


def _writes(s: Step) -> set[str]:
    return {a.name for a in s.args if a.kind == ArgKind.BUF and a.label == "y"}


def _reads(s: Step) -> set[str]:
    return {a.name for a in s.args if a.kind == ArgKind.BUF and a.label != "y"}


def candidate_runs(plan: Plan) -> list[tuple[int, int]]:
    """Maximal runs [first, last] of at least two consecutive, independent, fork-able steps on the same cores."""
    runs, cur = [], []
    for s in plan.steps:
        ok = fits_in_a_fork(s) and cur and s.cores == cur[0].cores \
            and not (_reads(s) | _writes(s)) & set().union(*(_writes(m) for m in cur))
        if ok:
            cur.append(s)
            continue
        if len(cur) > 1:
            runs.append((cur[0].index, cur[-1].index))
        cur = [s] if fits_in_a_fork(s) else []
    if len(cur) > 1:
        runs.append((cur[0].index, cur[-1].index))
    return runs


def peak(plan: Plan, level: str, dep: Deployment, span: tuple[int, int]) -> int:
    """Most bytes live at once in `level` during steps span[0]..span[1] (aligned sizes), with the plan's
    groups' lifetimes; a group changes nothing outside its own steps."""
    alignment = dep.memory[0].alignment
    compute = dep.level_holding("activations").name
    kv_level = dep.level_holding("kv_cache").name
    live = [0] * len(plan.steps)
    for name, (lo, hi) in lifetimes(plan).items():
        v = plan.values[name]
        where = kv_level if v.kind == ValueKind.KV else compute
        if where != level:
            continue
        for t in range(0, len(live)) if v.kind == ValueKind.KV else range(lo, hi + 1):
            live[t] += align(v.nbytes, alignment)
    return max(live[span[0]:span[1] + 1], default=0)


def group_forks(plan: Plan, dep: Deployment) -> Plan:
    """The plan with `fork` set on the members of every group that the compute level can hold."""
    l1 = dep.memory[0]
    steps = list(plan.steps)
    for first, last in candidate_runs(plan):
        trial = steps[:first] + [replace(s, fork=(first, last)) for s in steps[first:last + 1]] + steps[last + 1:]
        # a margin for alignment and fragmentation: the exact allocator needs at least the peak
        if peak(replace(plan, steps=tuple(trial)), l1.name, dep, (first, last)) <= l1.size_bytes * 15 // 16:
            steps = trial
    return replace(plan, steps=tuple(steps))
