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
    """W int8 (or int16) [n_out, n_in] -> wb [n_blocks, n_in, R] of its dtype, wb[b, i, r] = W[b*R + r, i], zero rows
    padded."""
    w = np.asarray(w)
    if w.dtype not in (np.int8, np.int16) or w.ndim != 2:  # int16: the classifier's (`classifier int16`)
        raise ValueError(f"block_rows wants an int8 or int16 [n_out, n_in] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    padded = np.zeros((padded_rows(n_out), n_in), w.dtype)
    padded[:n_out] = w
    return np.ascontiguousarray(padded.reshape(n_blocks(n_out), ROWS_PER_BLOCK, n_in).transpose(0, 2, 1))


def unblock_rows(wb: np.ndarray, n_out: int) -> np.ndarray:
    """The inverse of block_rows: wb int8 (or int16) [n_blocks, n_in, R] -> W [n_out, n_in] (padding dropped)."""
    wb = np.asarray(wb)
    if wb.dtype not in (np.int8, np.int16) or wb.ndim != 3 or wb.shape[2] != ROWS_PER_BLOCK \
            or wb.shape[0] != n_blocks(n_out):
        raise ValueError(f"unblock_rows wants int8 or int16 [{n_blocks(n_out)}, n_in, {ROWS_PER_BLOCK}], "
                         f"got {wb.dtype} {wb.shape}")
    n_in = wb.shape[1]
    return np.ascontiguousarray(wb.transpose(0, 2, 1).reshape(wb.shape[0] * ROWS_PER_BLOCK, n_in)[:n_out])


def host_rows(wb: np.ndarray, p: dict) -> np.ndarray:
    """The host GEMV's layout (kernels_c/host.c, gemv_rows_*): the layer's int8 weights row-major [n_out, n_in], each
    output's row contiguous, from the quantizer's blocks."""
    return unblock_rows(wb, p["n_out"])


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


def npu_weights(wb: np.ndarray, p: dict) -> np.ndarray:
    """A linear layer's weights for the NPU, from the quantizer's GEMV blocks: npu_pack of its rows."""
    return npu_pack(unblock_rows(wb, p["n_out"]))


# ------------------------------------------------------------------------------------------- int4 (q4)
# int4 weights with a scale per group of G input channels (quantize block: `weights int4 per_group(G)`), read by the
# gemv_q4_i8/i16/i32 kernels. Row o's weight at input channel i is q[o, i] * e[o, i // G] (times the row's real scale,
# folded into the requantization multiplier): q in [-8, 7], e in [1, 255] (uint8). Rows are blocked by R as for int8;
# a block of R rows is, group by group, the R group scales e[b*R + r, g] (bytes), then for each of the group's
# columns R/2 bytes, byte j holding rows 2j and 2j+1:
#
#     byte = 16 * q[2j+1, i] + (q[2j, i] + 8)      (as a signed byte: the high nibble signed, the low one offset by 8)
#
# so that b * x (b the byte sign-extended) = 16 q_hi x + (q_lo + 8) x and (b >> 4) * x = q_hi x: the kernel gets both
# rows' products with two multiplies and one shift, and takes 8 * sum(x) out of the low row per group.
# A block is R * ceil(n_in / G) + R * n_in / 2 bytes: per row ceil(n_in / G) + n_in / 2 (n_in even).

Q4_MIN, Q4_MAX = -8, 7
Q4_EMAX = 255  # group scales are uint8


def q4_groups(n_in: int, group: int) -> int:
    return -(-int(n_in) // int(group))


def q4_row_bytes(n_in: int, group: int) -> int:
    """Bytes per row of the q4 layout (a tile of whole blocks of R rows is R times this): ceil(n_in / G) + n_in / 2."""
    if int(n_in) % 2:
        raise ValueError(f"the int4 layout needs an even number of input channels, got {n_in}")
    return q4_groups(n_in, group) + int(n_in) // 2


def weight_row_bytes(n_in: int, group: int = 0) -> int:
    """Bytes per row of a linear layer's blocked weights: n_in for int8 (group 0), q4_row_bytes for int4."""
    return q4_row_bytes(n_in, group) if group else int(n_in)


def q4_pack(q: np.ndarray, e: np.ndarray, group: int) -> np.ndarray:
    """q int8 [n_out, n_in] in [-8, 7], e uint8 [n_out, ceil(n_in / G)] -> int8 [n_blocks, R * q4_row_bytes]."""
    q, e = np.asarray(q), np.asarray(e)
    n_out, n_in = q.shape
    ng = q4_groups(n_in, group)
    if q.dtype != np.int8 or q.min(initial=0) < Q4_MIN or q.max(initial=0) > Q4_MAX:
        raise ValueError("q4_pack wants int8 values in [-8, 7]")
    if e.dtype != np.uint8 or e.shape != (n_out, ng):
        raise ValueError(f"q4_pack wants uint8 group scales [{n_out}, {ng}], got {e.dtype} {e.shape}")
    rows = padded_rows(n_out)
    qp = np.zeros((rows, n_in), np.int16)
    qp[:n_out] = q
    ep = np.zeros((rows, ng), np.uint8)
    ep[:n_out] = e
    nb, R = n_blocks(n_out), ROWS_PER_BLOCK
    qb = qp.reshape(nb, R, n_in)
    pairs = (16 * qb[:, 1::2, :] + qb[:, 0::2, :] + 8).astype(np.int8)  # [nb, R/2, n_in]
    out = np.zeros((nb, R * q4_row_bytes(n_in, group)), np.int8)
    off = 0
    for g in range(ng):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        out[:, off:off + R] = ep.reshape(nb, R, ng)[:, :, g].view(np.int8)
        off += R
        n = (c1 - c0) * R // 2
        out[:, off:off + n] = pairs[:, :, c0:c1].transpose(0, 2, 1).reshape(nb, n)
        off += n
    return out


def q4_unpack(wq: np.ndarray, n_out: int, n_in: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of q4_pack: (q int8 [n_out, n_in], e uint8 [n_out, ceil(n_in / G)]), padding dropped."""
    wq = np.asarray(wq)
    nb, R, ng = n_blocks(n_out), ROWS_PER_BLOCK, q4_groups(n_in, group)
    if wq.dtype != np.int8 or wq.shape != (nb, R * q4_row_bytes(n_in, group)):
        raise ValueError(f"q4_unpack wants int8 [{nb}, {R * q4_row_bytes(n_in, group)}], got {wq.dtype} {wq.shape}")
    q = np.zeros((nb, R, n_in), np.int8)
    e = np.zeros((nb, R, ng), np.uint8)
    off = 0
    for g in range(ng):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        e[:, :, g] = wq[:, off:off + R].view(np.uint8)
        off += R
        n = (c1 - c0) * R // 2
        b = wq[:, off:off + n].reshape(nb, c1 - c0, R // 2).transpose(0, 2, 1).astype(np.int16)
        off += n
        hi = b >> 4
        q[:, 1::2, c0:c1] = hi
        q[:, 0::2, c0:c1] = b - 16 * hi - 8
    return q.reshape(nb * R, n_in)[:n_out], e.reshape(nb * R, ng)[:n_out]


def q4_effective(q: np.ndarray, e: np.ndarray, group: int) -> np.ndarray:
    """The integer weights the q4 kernels multiply by: W[o, i] = q[o, i] * e[o, i // G] (int32)."""
    return np.asarray(q, np.int32) * np.repeat(np.asarray(e, np.int32), group, axis=1)[:, : q.shape[1]]


def host_q4_rows(wq: np.ndarray, p: dict) -> np.ndarray:
    """The host int4 GEMV's layout (kernels_c/host.c, gemv_q4_rows_*), from the quantizer's q4 blocks: per row, group
    after group, the group's scale (a byte), then for its L columns (L even) L/2 bytes, byte j = 16 * q[c0 + L/2 + j]
    + (q[c0 + j] + 8) as a signed byte: int8 [n_out, q4_row_bytes]."""
    n_out, n_in, group = p["n_out"], p["n_in"], p["group"]
    q, e = q4_unpack(wq, n_out, n_in, group)
    q16 = q.astype(np.int16)
    parts = []
    for g in range(q4_groups(n_in, group)):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        m = (c1 - c0) // 2
        parts += [e[:, g:g + 1].view(np.int8), (16 * q16[:, c0 + m:c1] + q16[:, c0:c0 + m] + 8).astype(np.int8)]
    return np.ascontiguousarray(np.concatenate(parts, axis=1))


def host_q4_unrows(w: np.ndarray, n_in: int, group: int) -> tuple[np.ndarray, np.ndarray]:
    """The inverse of host_q4_rows: (q int8 [n_out, n_in], e uint8 [n_out, ceil(n_in / G)])."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2 or w.shape[1] != q4_row_bytes(n_in, group):
        raise ValueError(f"host_q4_unrows wants int8 [n_out, {q4_row_bytes(n_in, group)}], got {w.dtype} {w.shape}")
    q = np.zeros((w.shape[0], n_in), np.int8)
    e = np.zeros((w.shape[0], q4_groups(n_in, group)), np.uint8)
    off = 0
    for g in range(e.shape[1]):
        c0, c1 = g * group, min(n_in, (g + 1) * group)
        m = (c1 - c0) // 2
        e[:, g] = w[:, off].view(np.uint8)
        b = w[:, off + 1:off + 1 + m].astype(np.int16)
        q[:, c0:c0 + m], q[:, c0 + m:c1] = (b & 15) - 8, b >> 4
        off += 1 + m
    return q, e


def w16_bytes(wb: np.ndarray, p: dict) -> np.ndarray:
    """The int16 GEMV's weights (gemv_w16_tok, `classifier int16`): the quantizer's int16 GEMV blocks as their
    little-endian bytes, int8 [n_blocks, 2 * n_in * R], so that the tiles' DMA and a row's offset count bytes."""
    wb = np.asarray(wb)
    if wb.dtype != np.int16 or wb.ndim != 3 or wb.shape[2] != ROWS_PER_BLOCK:
        raise ValueError(f"w16_bytes wants int16 [n_blocks, n_in, {ROWS_PER_BLOCK}], got {wb.dtype} {wb.shape}")
    return np.ascontiguousarray(wb.astype("<i2")).view(np.int8).reshape(wb.shape[0], -1)


def w16_unbytes(w: np.ndarray, n_out: int, n_in: int) -> np.ndarray:
    """The inverse of w16_bytes, unblocked: W int16 [n_out, n_in]."""
    raw = np.ascontiguousarray(np.asarray(w, np.int8)).view("<i2").astype(np.int16)
    return unblock_rows(raw.reshape(n_blocks(n_out), n_in, ROWS_PER_BLOCK), n_out)
