"""The plan's invariants, checked between phases (after Vela's verify-health habit): a phase that breaks one is a
compiler bug, reported as such with the phase and the step, before a later phase turns it into wrong C.

  * steps are numbered in order; each passes exactly its kernel's parameters, in order;
  * every buffer argument is a value of the plan, every constant a constant, every integer an int; rows are
    `pos` or `token` only where they make sense;
  * a value is read only after a step (or an earlier decode step: the KV cache) has written it;
  * tiles and staging buffers are values of kind tile (or the step's own arguments) and staging stands in for
    array arguments the step has;
  * fork groups are runs of consecutive steps that agree on their group;
  * after allocation: every value a step uses has a place in an arena.
"""
from __future__ import annotations

from ..ir.graph import Plan
from ..kinds import ArgKind, ValueKind


class PlanInvariantError(AssertionError):
    """A phase produced a plan that breaks an invariant: a bug in the compiler, not in the deployment."""


def _fail(after: str, where: str, what: str) -> None:
    raise PlanInvariantError(f"internal error: after {after}, {where}: {what} (a compiler bug; please report it)")


def _check_args(plan: Plan, after: str) -> None:
    for i, s in enumerate(plan.steps):
        where = f"step {s.index} ({s.op})"
        if s.index != i:
            _fail(after, where, f"is at position {i}")
        if tuple(a.label for a in s.args) != s.spec.names:
            _fail(after, where, f"passes {[a.label for a in s.args]}, {s.kernel} takes {list(s.spec.names)}")
        for a, p in zip(s.args, s.spec.params):
            if a.kind == ArgKind.BUF and a.name not in plan.values:
                _fail(after, where, f"{p.name} names {a.name!r}, which is no value of the plan")
            elif a.kind == ArgKind.CONST and a.name not in plan.consts:
                _fail(after, where, f"{p.name} names {a.name!r}, which is no constant of the plan")
            elif a.kind == ArgKind.INT and (p.pointer or not isinstance(a.value, int)):
                _fail(after, where, f"{p.name} ({p.ctype}) gets the integer {a.value!r}")
            elif a.kind in (ArgKind.BUF, ArgKind.CONST) and not p.pointer:
                _fail(after, where, f"{p.name} ({p.ctype}) gets the array {a.name!r}")
            elif a.kind not in ("buf", "const", "int", "pos", "token"):
                _fail(after, where, f"{p.name} has an argument of kind {a.kind!r}")
            if a.row not in (None, "pos", "token") or (a.row == "token" and a.kind != ArgKind.CONST):
                _fail(after, where, f"{p.name} reads row {a.row!r} of {a.name!r}")
        if s.output.kind != ArgKind.BUF:
            _fail(after, where, f"writes its output {s.spec.output} to a {s.output.kind}")


def _check_dataflow(plan: Plan, after: str) -> None:
    """Reads follow writes: a pointer parameter without const is written; the KV cache persists between tokens."""
    written = {n for n, v in plan.values.items() if v.kind == ValueKind.KV}
    for s in plan.steps:
        for a, p in zip(s.args, s.spec.params):
            if a.kind == ArgKind.BUF and p.ctype.startswith("const") and a.name not in written:
                _fail(after, f"step {s.index} ({s.op})", f"reads {a.name!r} ({p.name}) before any step writes it")
        written |= {a.name for a, p in zip(s.args, s.spec.params) if a.kind == ArgKind.BUF and not p.ctype.startswith("const")}


def _check_staging(plan: Plan, after: str) -> None:
    for s in plan.steps:
        where = f"step {s.index} ({s.op})"
        for x in s.staging.xfers:
            if not 0 <= x.arg < len(s.args) or s.args[x.arg].kind not in ("buf", "const"):
                _fail(after, where, f"stages argument {x.arg}, which is no array argument")
        names = [x.buf for x in s.staging.xfers] + [b for bs in (s.staging.tiling.buffers.values() if s.staging.tiling else ()) for b in bs]
        own = {a.name for a in s.args if a.kind == ArgKind.BUF}  # attention's first lane scores into its scratch argument
        for n in names:
            if n not in plan.values or (plan.values[n].kind != ValueKind.TILE and n not in own):
                _fail(after, where, f"stages through {n!r}, which is no tile buffer of the plan")
        if s.staging.tiling is not None and s.staging.tiling.kind != s.spec.tiling:
            _fail(after, where, f"is tiled by {s.staging.tiling.kind}, its kernel by {s.spec.tiling}")
        if s.fork is not None:
            first, last = s.fork
            members = plan.steps[first:last + 1] if 0 <= first <= s.index <= last < len(plan.steps) else ()
            if not members or any(m.fork != s.fork for m in members):
                _fail(after, where, f"is in fork group {s.fork}, whose steps do not all agree")


def check_plan(plan: Plan, after: str, alloc=None) -> Plan:
    """The plan unchanged if it keeps every invariant (with `alloc`, the allocation's too), else PlanInvariantError."""
    _check_args(plan, after)
    _check_dataflow(plan, after)
    _check_staging(plan, after)
    if alloc is not None:
        placed = {b.name for b in alloc.buffers}
        used = {a.name for s in plan.steps for a in s.args if a.kind == ArgKind.BUF} \
            | {x.buf for s in plan.steps for x in s.staging.xfers} \
            | {b for s in plan.steps if s.staging.tiling for bs in s.staging.tiling.buffers.values() for b in bs}
        if used - placed:
            _fail(after, "the allocation", f"places no {sorted(used - placed)[:3]}")
    return plan
