"""The `golden` engine: runs the plan step by step with the numpy kernel twins, in the same arenas
and at the same offsets as the generated C, so an allocation bug would show here too."""
from __future__ import annotations

import numpy as np

from . import kernels as K
from .arena import Allocation
from .graph import Plan
from .layout import q4_unpack, unblock_rows

BOUNDS = {"gemv_i8": K.I8, "gemv_i16": K.I16, "gemv_i32": K.I32,
          "gemv_q4_i8": K.I8, "gemv_q4_i16": K.I16, "gemv_q4_i32": K.I32,
          "npu_linear_i8": K.I8, "npu_linear_i16": K.I16, "npu_linear_i32": K.I32}
NP_DTYPE = {"int8": np.int8, "int16": np.int16, "int32": np.int32, "uint8": np.uint8}


def _gemv(kernel):
    def run(y, x, wb, mult, shift, n_in, n_out):
        # one shift per layer: the C reads shift[0] (the per-row array, all entries equal, is for the tiles' DMA)
        y[:] = K.linear(x, unblock_rows(wb, n_out), mult, int(shift[0]) if n_out else 0, *BOUNDS[kernel])
    return run


def _gemv_q4(kernel):
    def run(y, x, wq, mult, shift, n_in, n_out, group):
        q, e = q4_unpack(wq, n_out, n_in, group)
        y[:] = K.linear_q4(x, q, e, group, mult, int(shift[0]) if n_out else 0, *BOUNDS[kernel])
    return run


def _npu(kernel):
    def run(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.npu_linear(x, w, mult, int(shift[0]), *BOUNDS[kernel])
    return run


def _rope(y, x, cos_row, sin_row, n, head_size):
    y[:] = K.rope(x, 0, cos_row[None], sin_row[None], head_size, K.I16 if y.dtype == np.int16 else K.I8)


def _attention(out, q, kc, vc, scratch, pos, nh, nkv, hs, sm, ss, cut, om, os_, table):
    out[:] = K.attention(q, kc, vc, pos, nh, nkv, hs, sm, ss, cut, om, os_, table)


def _embed(x, row, mult, shift, dim):
    x[:] = K.embed(row, int(mult), int(shift))


def _rmsnorm(y, x, gain, gshift, eps_q, dim, lo, hi):
    y[lo:hi] = K.rmsnorm(x, gain, gshift, eps_q)[lo:hi]


def _swiglu(h, gate, up, table, mult, shift, n):
    h[:] = K.swiglu(gate, up, table, mult, shift)


def _swiglu_dyn(h, shift_out, scratch, gate, up, table, base_shift, n):
    h[:], shift_out[0] = K.swiglu_dyn(gate, up, table, base_shift)


def _add(y, a, b, n):
    y[:] = K.add_sat16(a, b)


TWINS = {
    "gemv_i8": _gemv("gemv_i8"), "gemv_i16": _gemv("gemv_i16"), "gemv_i32": _gemv("gemv_i32"),
    "gemv_q4_i8": _gemv_q4("gemv_q4_i8"), "gemv_q4_i16": _gemv_q4("gemv_q4_i16"), "gemv_q4_i32": _gemv_q4("gemv_q4_i32"),
    "npu_linear_i8": _npu("npu_linear_i8"), "npu_linear_i16": _npu("npu_linear_i16"),
    "npu_linear_i32": _npu("npu_linear_i32"),
    "rope_i8": _rope, "rope_i16": _rope, "attention_i8": _attention, "attention_k16": _attention, "embed_i16": _embed, "rmsnorm_i8_part": _rmsnorm,
    "swiglu_i8": _swiglu, "swiglu_dyn_i8": _swiglu_dyn, "add_sat_i16": _add,
}


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
        args = []
        for a in s.args:
            if a.kind == "buf":
                args.append(self._view(a.name, a.row, pos, plan, where, t))
            elif a.kind == "const":
                c = plan.consts[a.name]
                args.append(c[pos] if a.row == "pos" else c[token] if a.row == "token" else c)
            elif a.kind == "int":
                args.append(a.value)
            else:
                args.append(pos if a.kind == "pos" else token)
        TWINS[s.kernel](*args)

    def forward(self, token: int, pos: int) -> np.ndarray:
        """int32 logits [vocab] for `token` at position `pos`."""
        for s in self.plan.steps:
            self._run(s, token, pos, self.plan, self.where)
        return self._view("logits", None, pos).copy()

    def prefill(self, tokens: list[int], pos0: int = 0) -> np.ndarray:
        """int32 logits [vocab] of the last of `tokens`, run at positions pos0.. as the C's prefill() does: chunks
        of the prefill plan, step-major, each step over the chunk's tokens (the twins are per token)."""
        from .prefill import mode
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
                if md == "last":
                    continue
                for t in range(m):
                    self._run(s, tokens[c0 + t], pos0 + c0 + t, plan, self.pwhere, t)
        t = (n - 1) % pre.chunk
        for s, md in zip(plan.steps, modes):
            if md == "last":
                self._run(s, tokens[-1], pos0 + n - 1, plan, self.pwhere, t)
        return self._view("logits", None, 0, plan, self.pwhere).copy()
