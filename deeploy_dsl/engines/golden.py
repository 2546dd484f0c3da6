"""The `golden` engine: runs the plan step by step with the numpy kernel twins, in the same arenas
and at the same offsets as the generated C, so an allocation bug would show here too."""
from __future__ import annotations

import numpy as np

from ..ir.graph import Plan
from ..kinds import ArgKind, Mode
from ..passes.arena import Allocation
from ..passes.prefill import mode

NP_DTYPE = {"int8": np.int8, "int12": np.int16, "int16": np.int16, "int32": np.int32, "uint8": np.uint8}


class Golden:
    """Holds the arenas between calls, like the C program's static memory. With the prefill plan and its
    allocation, the arenas are the larger of both (as in the C) and the KV cache is shared."""

    def __init__(self, plan: Plan, alloc: Allocation, prefill=None):
        self.plan, self.alloc, self.prefill_plan = plan, alloc, prefill
        sizes = dict(alloc.arena_bytes)
        if prefill is not None:
            for lvl, n in prefill.alloc.arena_bytes.items():
                sizes[lvl] = max(sizes.get(lvl, 0), n)
        self.arenas = {lvl: np.zeros(n, np.uint8) for lvl, n in sizes.items()}
        self.where = {b.name: b for b in alloc.buffers}
        self.pwhere = {b.name: b for b in prefill.alloc.buffers} if prefill is not None else {}

    def _view(self, name: str, row: str | None, pos: int, plan: Plan | None = None, where=None,
              t: int = 0) -> np.ndarray:
        plan, where = plan or self.plan, where or self.where
        b, v = where[name], plan.values[name]
        dt = NP_DTYPE[v.dtype]
        arr = self.arenas[b.level][b.offset:b.offset + b.size].view(dt).reshape(v.shape)
        if name in plan.scaled:
            arr = arr[t]
        return arr[pos] if row == "pos" else arr

    def _run(self, s, token: int, pos: int, plan: Plan, where, t: int = 0) -> None:
        """One step: the kernel's numpy twin on its arguments, by parameter name."""
        args = {}
        for a in s.args:
            if a.kind == ArgKind.BUF:
                args[a.label] = self._view(a.name, a.row, pos, plan, where, t)
            elif a.kind == ArgKind.CONST:
                c = plan.consts[a.name]
                args[a.label] = c[pos] if a.row == "pos" else c[token] if a.row == "token" else c
            elif a.kind == ArgKind.INT:
                args[a.label] = a.value
            else:
                args[a.label] = pos if a.kind == ArgKind.POS else token
        s.spec.twin(**args)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """int32 logits [vocab] for `token` at position `pos`."""
        for s in self.plan.steps:
            self._run(s, token, pos, self.plan, self.where)
        return self._view("logits", None, pos).copy()

    def prefill(self, tokens: list[int], pos0: int = 0) -> np.ndarray:
        """int32 logits [vocab] of the last of `tokens`, run at positions pos0.. as the C's prefill() does: chunks
        of the prefill plan, step-major, each step over the chunk's tokens (the twins are per token)."""
        pre = self.prefill_plan
        if pre is None:
            raise ValueError("this Golden has no prefill plan")
        plan, n = pre.plan, len(tokens)
        if n < 1 or pos0 < 0 or pos0 + n > self.plan.values["kv.k.0"].shape[0]:
            raise ValueError(f"prefill of {n} tokens at {pos0} does not fit the context")
        modes = [mode(s, plan) for s in plan.steps]
        for c0 in range(0, n, pre.chunk):
            m = min(pre.chunk, n - c0)
            for s, md in zip(plan.steps, modes):
                if md == Mode.LAST:
                    continue
                for t in range(m):
                    self._run(s, tokens[c0 + t], pos0 + c0 + t, plan, self.pwhere, t)
        t = (n - 1) % pre.chunk
        for s, md in zip(plan.steps, modes):
            if md == Mode.LAST:
                self._run(s, tokens[-1], pos0 + n - 1, plan, self.pwhere, t)
        return self._view("logits", None, 0, plan, self.pwhere).copy()
