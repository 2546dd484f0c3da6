"""The prefill plan: the prompt's tokens run a chunk at a time, step-major.

Each step runs for every token of the chunk before the next step starts, which gives the integers of
token-by-token decoding (every kernel's integers depend only on its inputs, and attention for token t reads
cache rows <= pos0 + t, which the chunk's earlier steps have written). The plan is derived from the
decode plan before tiling: the same ops and kernels; the activations get one row per token, [chunk, ...];
the KV cache is the same persistent tensor (and gets the same offsets: checked). It is then tiled, grouped
into forks and allocated like the decode plan. How each step runs over the chunk (`mode`):
  * gemm: a linear layer loads each weight tile once and applies it to every token (the cluster's rows
    task loops over tokens; on the NPU one job with n_tok tokens);
  * flat: an element-wise step (residual add, SwiGLU) runs over all the chunk's elements at once;
  * token: one call per token (embedding, RMSNorm, RoPE, attention), each with its own position and row;
  * last: only the last token of the prompt is needed (the final norm and the classifier), once.
If L1 cannot hold a chunk's activations, the chunk halves until it fits (Prefill.note says so).
"""
from __future__ import annotations

from dataclasses import dataclass, replace

from ..errors import DeeployError, MemoryBudgetError
from ..frontend.spec import Deployment
from ..ir.graph import Plan, Step, Value
from ..kinds import ArgKind, Mode, ValueKind
from .arena import Allocation, allocate
from .forks import group_forks
from .tiling import Tiler, align

LAST_ONLY = ("final_norm", "final_norm_tok", "logits")  # values only the last token needs


@dataclass(frozen=True)
class Prefill:
    plan: Plan
    alloc: Allocation
    chunk: int  # MODEL_PREFILL: tokens per chunk
    wanted: int  # the chunk the deployment asked for
    note: str  # why the chunk is smaller than asked, or ""


def derive(plan: Plan, chunk: int) -> Plan:
    """The untiled prefill plan of an untiled decode plan."""
    values, scaled = {}, set()
    for name, v in plan.values.items():
        if v.kind == ValueKind.ACT and name not in LAST_ONLY:
            values[name] = Value(name, v.dtype, (chunk,) + v.shape, v.kind)
            scaled.add(name)
        else:
            values[name] = v
    return replace(plan, values=values, chunk=chunk, scaled=frozenset(scaled))


def mode(s: Step, plan: Plan) -> str:
    """How a step of a prefill plan runs over the chunk: gemm, flat, token or last (see the module doc)."""
    out = s.output
    if out.kind == ArgKind.BUF and plan.values[out.name].kind == ValueKind.ACT and out.name not in plan.scaled:
        return "last"
    if s.spec.prefill == Mode.FLAT and (any(a.row for a in s.args)
                                     or not all(a.name in plan.scaled for a in s.args if a.kind == ArgKind.BUF)):
        return "token"  # an element-wise kernel that reads a cache row or an unscaled buffer runs per token
    return s.spec.prefill


class PrefillTiler(Tiler):
    """The decode tiler, but a GEMM step's KV rows (v's output when the cache is far) are staged for the whole
    chunk and copied out at once (they are contiguous rows pos0 .. pos0+n-1 of the cache). Its kernels are the decode
    plan's (tiling.adopt_kernels): no fallback of its own."""

    fallback = False

    def stage(self, s: Step, skip: tuple[str, ...] = ()):
        xfers, used = super().stage(s, skip)
        if mode(s, self.plan) != Mode.GEMM:
            return xfers, used
        for x in xfers:
            if x.out:
                v = self.values[x.buf]
                self.values[x.buf] = Value(v.name, v.dtype, (self.plan.chunk,) + v.shape, v.kind)
                used += align(self.plan.chunk * x.nbytes, self.align) - align(x.nbytes, self.align)
        return xfers, used


def _check_kv(decode: Allocation, pre: Allocation) -> None:
    """The KV cache lives on between prefill and decode: same level, offset and size in both allocations."""
    d = {b.name: b for b in decode.buffers if b.persistent}
    p = {b.name: b for b in pre.buffers if b.persistent}
    if set(d) != set(p) or any((d[n].level, d[n].offset, d[n].size) != (p[n].level, p[n].offset, p[n].size) for n in d):
        raise AssertionError("prefill and decode place the KV cache differently")


def build(lowered: Plan, decode_alloc: Allocation, dep: Deployment, counts: dict[str, int] | None = None) -> Prefill:
    """The prefill plan with the largest chunk up to generate.prefill that the memory holds; counts: the decode
    plan's tile count per linear layer, kept where it fits."""
    wanted = chunk = min(dep.generate.prefill, dep.model.dims.context)
    first_err = None
    while chunk >= 1:
        try:
            pp = derive(lowered, chunk)
            tiled = PrefillTiler(pp, dep, counts=counts).run()
            plan = group_forks(replace(tiled, chunk=chunk, scaled=pp.scaled), dep)
            alloc = allocate(plan, dep)
            _check_kv(decode_alloc, alloc)
            note = "" if chunk == wanted else (f"prefill chunk {chunk} instead of {wanted}: a chunk of {wanted} "
                                               f"does not fit ({first_err})")
            return Prefill(plan, alloc, chunk, wanted, note)
        except (MemoryBudgetError, DeeployError) as e:
            first_err = first_err or (str(e).splitlines()[0] if str(e) else type(e).__name__)
            if chunk == 1:
                raise
            chunk = max(1, chunk // 2)
    raise AssertionError("unreachable")
