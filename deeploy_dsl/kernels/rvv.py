"""Kernels for cores with the RISC-V vector extension for embedded cores (Zve32x) and Zvqdotq (kernels_c/gemv_rvv.c).

The vector GEMV's weight layout is decided at compile time and recorded in the plan (the step's `w` constant, suffix
`.wv`): blocks of RVV_ROWS output rows (the e32 lanes of one LMUL-8 register group at VLEN 128), and within a block,
per quad of 4 input columns, each row's 4 weights,

    wv[b, j, r, k] = W[RVV_ROWS*b + r, 4j + k]        zero padded to whole quads and blocks,

so that one vle32.v loads a quad and one vqdot.vx adds to every row (a lane) the dot product of its 4 weights with 4
activations broadcast from a scalar register: no reduction per row. The integers are the scalar GEMV's (twins.linear).
"""
from __future__ import annotations

import numpy as np

from ..engines.cost import linear_work
from . import twins as K
from .kernelspec import KernelSpec, Param
from .layout import unblock_rows

RVV_ROWS = 32  # output rows per block; must equal GEMV_RVV_ROWS in kernels_c/gemv_rvv.h
VLEN_MIN = RVV_ROWS * 32 // 8  # bits: RVV_ROWS e32 lanes in a register group of LMUL 8
ISA = ("zve32x", "zvqdotq")  # the extensions these kernels need


def rvv_quads(n_in: int) -> int:
    """ceil(n_in / 4): the quads of 4 input columns."""
    return -(-int(n_in) // 4)


def rvv_pack(w: np.ndarray) -> np.ndarray:
    """W int8 [n_out, n_in] -> wv int8 [n_blocks, quads, RVV_ROWS, 4] (see the module's docstring)."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2:
        raise ValueError(f"rvv_pack wants an int8 [n_out, n_in] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    blocks, quads = -(-n_out // RVV_ROWS), rvv_quads(n_in)
    padded = np.zeros((blocks * RVV_ROWS, quads * 4), np.int8)
    padded[:n_out, :n_in] = w
    return np.ascontiguousarray(padded.reshape(blocks, RVV_ROWS, quads, 4).transpose(0, 2, 1, 3))


def rvv_unpack(wv: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
    """The inverse of rvv_pack: W int8 [n_out, n_in], the padding dropped."""
    wv = np.asarray(wv, np.int8)
    blocks, quads = -(-int(n_out) // RVV_ROWS), rvv_quads(n_in)
    w = wv.reshape(blocks, quads, RVV_ROWS, 4).transpose(0, 2, 1, 3).reshape(blocks * RVV_ROWS, quads * 4)
    return np.ascontiguousarray(w[:n_out, :n_in])


def rvv_weights(wb: np.ndarray, p: dict) -> np.ndarray:
    """The vector GEMV's layout from the quantizer's GEMV blocks (layout.block_rows)."""
    return rvv_pack(unblock_rows(wb, p["n_out"]))


def _twin(bounds):
    def twin(y, x, w, mult, shift, n_in, n_out):
        y[:] = K.linear(x, rvv_unpack(w, n_out, n_in), mult, int(shift[0]) if n_out else 0, *bounds)
    return twin


OUT = {"int8": ("int8_t", K.I8), "int16": ("int16_t", K.I16), "int32": ("int32_t", K.I32)}


def _params(ctype: str) -> tuple[Param, ...]:
    return (Param("y", f"{ctype} *", "[n_out] output"), Param("x", "const int8_t *", "[n_in] input"),
            Param("w", "const int8_t *", f"[ceil(n_out/{RVV_ROWS}), ceil(n_in/4), {RVV_ROWS}, 4] int8 weights in the "
                                         "vector layout (kernels.rvv.rvv_pack)"),
            Param("mult", "const int32_t *", "[n_out] requantization multiplier per row"),
            Param("shift", "const uint8_t *", "[n_out] the layer's shift (shift[0] is read)"),
            Param("n_in", "int32_t", "input features"), Param("n_out", "int32_t", "output features"))


def gemv_rvv(out: str) -> KernelSpec:
    """vqdot.vx over output rows across the lanes; the weights read in place in the vector layout."""
    ctype, bounds = OUT[out]
    return KernelSpec(f"gemv_rvv_i{out[3:]}", "gemv_rvv.c", _params(ctype), _twin(bounds), linear_work,
                      f"int8 weights x int8 input -> {out} on Zve32x + Zvqdotq: {RVV_ROWS} rows across the lanes, "
                      "vqdot.vx broadcasting 4 activations (gemv_rvv.h)", bounds=bounds,
                      resident=("w", "mult", "shift"), prefill="token", weights=(".wv", rvv_weights))


KERNELS = {k.name: k for k in (gemv_rvv(o) for o in OUT)}
