"""The weight stream: each linear layer's first weight tile is fetched while the unit before it computes.

A step that streams its weight rows from a far level waits for its first tile before its cores can start, and a
layer that fits one tile waits for all of its weights. Where the compute level double-buffers, forward() instead
starts that first tile's DMA before it calls an earlier unit (a step, or a fork group): the unit of the linear layer
before it (the stream's previous fetch has landed there), or the first unit of the token. Its transfer then overlaps
every unit in between, and the linear layer starts computing at once. The price is L1: the first tile's buffers are
live from the fetch on (arena.lifetimes), so a layer is streamed only where the level still holds everything live in
that window (with the fork groups' margin for alignment); otherwise it fetches its own first tile, as before, and the
next layer's fetch waits for it.

Only the decode plan streams: a prefill chunk runs the units in another order (per-token steps, the last token's),
and its units fetch their own tiles (StepCtx.pf < 0).
"""
from __future__ import annotations

from dataclasses import replace

from ..frontend.spec import Deployment
from ..ir.graph import Plan, Step
from ..kinds import TileScheme
from .forks import peak


def streamable(s: Step) -> bool:
    """A linear layer on the cluster whose weight rows arrive in tiles from a far level."""
    t = s.staging.tiling
    return t is not None and t.kind == TileScheme.ROWS and s.spec.tiling == TileScheme.ROWS


def units(plan: Plan) -> list[tuple[Step, ...]]:
    """What forward() calls, in order: a step, or the steps of a fork group."""
    return [tuple(plan.steps[s.fork[0]:s.fork[1] + 1]) if s.fork else (s,) for s in plan.steps
            if not s.fork or s.index == s.fork[0]]


def weight_stream(plan: Plan, dep: Deployment) -> Plan:
    """The plan with `staging.early` set on the linear layers whose first tile the stream fetches, where L1 holds it."""
    l1 = dep.memory[0]
    if not l1.double_buffer or dep.level_holding("weights").name == l1.name:
        return plan
    steps = [replace(s, staging=replace(s.staging, early=None)) for s in plan.steps]  # the tiler's, as priced
    at = 0  # where the next fetch starts: the token's first unit, then each streamed linear layer's unit
    for unit in units(plan):
        if not all(streamable(s) for s in unit):
            continue
        first, last = unit[0].index, unit[-1].index
        if at >= first:  # nothing runs between the fetch and the layer: it fetches its own tile
            at = last + 1
            continue
        trial = steps[:first] + [replace(s, staging=replace(s.staging, early=at)) for s in steps[first:last + 1]] \
            + steps[last + 1:]
        if peak(replace(plan, steps=tuple(trial)), l1.name, dep, (at, last)) <= l1.size_bytes * 15 // 16:
            steps = trial
            at = first
        else:  # this layer fetches its own first tile: the next fetch starts after it
            at = last + 1
    return replace(plan, steps=tuple(steps))
