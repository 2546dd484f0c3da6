"""Row-blocked weight layout read by the gemv_i8/i16/i32 kernels (kernels_c/gemv.c).

A linear weight W [n_out, n_in] (int8) is stored as blocks of R = ROWS_PER_BLOCK output rows,
interleaved column by column:

    wb[b, i, r] = W[b*R + r, i]        wb: int8 [n_blocks, n_in, R], n_blocks = ceil(n_out / R)

and C reads it flattened in that order (`wb.tobytes()`). The kernel walks x once per block and
keeps R accumulators in registers; the R weights of a column are adjacent bytes.

Padding: when n_out is not a multiple of R, the last block is completed with zero rows
(padded_rows(n_out) - n_out of them). The kernel still gets the real n_out: it writes y[0..n_out)
only and reads mult/shift only for real rows, so those arrays keep their n_out length.

Tiling note for the integrator: a tile of rows must be a whole number of blocks, i.e. a multiple
of R rows, except the layer's last tile, which ends at n_out. Rows [o0, o0 + rows) with o0 % R == 0
are blocks o0/R .. ceil((o0 + rows)/R) - 1, one contiguous run of blocks * n_in * R bytes starting
at byte (o0 / R) * n_in * R of wb (one 1-D DMA), and the kernel is called on that tile with
n_out = rows, y/mult/shift offset by o0 and wb offset by that byte.
"""
from __future__ import annotations

import numpy as np

ROWS_PER_BLOCK = 8  # R; must equal GEMV_ROWS_PER_BLOCK in kernels_c/gemv.h


def n_blocks(n_out: int) -> int:
    """ceil(n_out / R): the blocks of a layer with n_out rows."""
    return -(-int(n_out) // ROWS_PER_BLOCK)


def padded_rows(n_out: int) -> int:
    """n_out rounded up to a multiple of R: the rows the blocked layout stores (zero rows at the end)."""
    return n_blocks(n_out) * ROWS_PER_BLOCK


def blocked_bytes(n_out: int, n_in: int) -> int:
    """Size of the blocked weight in bytes: padded_rows(n_out) * n_in."""
    return padded_rows(n_out) * int(n_in)


def block_rows(w: np.ndarray) -> np.ndarray:
    """W int8 [n_out, n_in] -> wb int8 [n_blocks, n_in, R], wb[b, i, r] = W[b*R + r, i], zero rows padded."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2:
        raise ValueError(f"block_rows wants an int8 [n_out, n_in] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    padded = np.zeros((padded_rows(n_out), n_in), np.int8)
    padded[:n_out] = w
    return np.ascontiguousarray(padded.reshape(n_blocks(n_out), ROWS_PER_BLOCK, n_in).transpose(0, 2, 1))


def unblock_rows(wb: np.ndarray, n_out: int) -> np.ndarray:
    """The inverse of block_rows: wb int8 [n_blocks, n_in, R] -> W int8 [n_out, n_in] (padding dropped)."""
    wb = np.asarray(wb)
    if wb.dtype != np.int8 or wb.ndim != 3 or wb.shape[2] != ROWS_PER_BLOCK or wb.shape[0] != n_blocks(n_out):
        raise ValueError(f"unblock_rows wants int8 [{n_blocks(n_out)}, n_in, {ROWS_PER_BLOCK}], got {wb.dtype} {wb.shape}")
    n_in = wb.shape[1]
    return np.ascontiguousarray(wb.transpose(0, 2, 1).reshape(wb.shape[0] * ROWS_PER_BLOCK, n_in)[:n_out])


# ------------------------------------------------------------------------------------------------- NPU
# The NPU's weight layout (kernels_c/npu.h): W [n_out, n_in] int8 row-major, each row zero-padded to a whole number
# of NPU_K-channel blocks, [n_out, ceil(n_in / NPU_K) * NPU_K], stored as `wp.tobytes()` in the NPU's weight memory.
# The engine multiplies only the n_in real channels of the last block; the zeros are there for its block walk.

NPU_K = 32  # input channels per weight block; must equal NPU_K in kernels_c/npu.h


def npu_k_blocks(n_in: int) -> int:
    """ceil(n_in / NPU_K): the weight blocks of a packed row."""
    return -(-int(n_in) // NPU_K)


def npu_packed_bytes(n_out: int, n_in: int) -> int:
    """Size of the packed weight in bytes: n_out * ceil(n_in / NPU_K) * NPU_K."""
    return int(n_out) * npu_k_blocks(n_in) * NPU_K


def npu_pack(w: np.ndarray) -> np.ndarray:
    """W int8 [n_out, n_in] -> int8 [n_out, ceil(n_in / NPU_K) * NPU_K], input channels zero-padded."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] < 1:
        raise ValueError(f"npu_pack wants an int8 [n_out, n_in >= 1] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    wp = np.zeros((n_out, npu_k_blocks(n_in) * NPU_K), np.int8)
    wp[:, :n_in] = w
    return wp


def npu_unpack(wp: np.ndarray, n_in: int) -> np.ndarray:
    """The inverse of npu_pack: int8 [n_out, ceil(n_in / NPU_K) * NPU_K] -> W int8 [n_out, n_in] (padding dropped)."""
    wp = np.asarray(wp)
    if wp.dtype != np.int8 or wp.ndim != 2 or int(n_in) < 1 or wp.shape[1] != npu_k_blocks(n_in) * NPU_K:
        raise ValueError(f"npu_unpack wants int8 [n_out, {npu_k_blocks(n_in) * NPU_K}] for n_in={n_in}, "
                         f"got {wp.dtype} {wp.shape}")
    return np.ascontiguousarray(wp[:, : int(n_in)])
