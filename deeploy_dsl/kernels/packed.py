"""Two MACs per multiply: the packed GEMV's weight layout and its exactness schedule (kernels_c/gemv.c: gemv_pk_iN).

The weights of two output rows a, b of a block go into one 32-bit word P = w_a + w_b * 2^16 (as integers), so that
P * x = w_a x + (w_b x) 2^16 and a 32-bit accumulator acc = S_a + S_b 2^16 (mod 2^32) carries both rows' partial sums.
It holds them exactly while each lies in [-2^15, 2^15): the columns are cut into chunks, and at the end of a chunk the
kernel takes the high half h = (acc + 2^15) >> 16 (= S_b exactly in that range) into H and acc into T; at the end of
the row S_b = H and S_a = T - H 2^16 - chunks 2^15 (mod 2^32: exact, since |S_a| < 2^31).

Exactness is decided here, at compile time, from the known int8 weights and the input's range [-128, 127]: a chunk is
safe for a row when its largest positive partial sum (sum over w < 0 of 128|w|, over w > 0 of 127 w) is at most 32,767
and its most negative one at least -32,768. A block of R = 8 rows (4 pairs: rows 2j, 2j+1) gets one schedule, the
longest chunks (up to PK_LMAX columns) safe for all 8 rows, chosen greedily (which minimises the number of chunks).
One column alone is always safe (|w x| <= 2^14), so every int8 matrix has a schedule: adversarial weights only make
the chunks short.

Layout, per block of R rows (the last one padded with zero rows), so that a block is 8 * pk_row_bytes(n_in) bytes and
row tiles and core shares address it as the int8 blocks (whole blocks):

    sched  uint8 [8 * ceil(n_in / 8)]    chunk lengths 1 .. PK_LMAX, then zeros
    words  int32 [n_in, R / 2]           words[i, j] = W[2j, i] + 2^16 W[2j + 1, i]   (little-endian)
"""
from __future__ import annotations

import numpy as np

from . import twins as K
from .layout import ROWS_PER_BLOCK as R, n_blocks, unblock_rows

PK_LMAX = 16  # columns per chunk at most; must equal GEMV_PK_LMAX in kernels_c/gemv.h
HALF = 1 << 15


def pk_sched_bytes(n_in: int) -> int:
    """The schedule's bytes in a block: room for n_in chunks of one column, rounded to 8 (the words stay aligned)."""
    return 8 * -(-int(n_in) // 8)


def pk_row_bytes(n_in: int) -> int:
    """Bytes per weight row in the packed layout: a block (R rows) is R times this."""
    return pk_sched_bytes(n_in) // R + 2 * int(n_in)


def chunk_bounds(w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per element of int8 w: the largest positive and the largest negative magnitude of w * x, x in [-128, 127]."""
    w = np.asarray(w, np.int64)
    return np.where(w < 0, -128 * w, 127 * w), np.where(w > 0, 128 * w, -127 * w)


def schedule(w: np.ndarray, lmax: int = PK_LMAX) -> list[int]:
    """The greedy chunk lengths for the rows of w [rows, n_in] (int8): each chunk as long as every row's partial sums
    provably stay in [-2^15, 2^15) for any int8 input, at most lmax columns."""
    pos, neg = chunk_bounds(w)
    n_in = w.shape[1]
    out, i = [], 0
    while i < n_in:  # per chunk: the first column at which some row's running bound breaks
        p, n = pos[:, i:i + lmax].cumsum(1), neg[:, i:i + lmax].cumsum(1)
        bad = ((p > HALF - 1) | (n > HALF)).any(0)
        L = int(bad.argmax()) if bad.any() else p.shape[1]
        out.append(L)
        i += L
    return out


def pk_pack(w: np.ndarray) -> np.ndarray:
    """W int8 [n_out, n_in] -> the packed layout (module docstring) as int8 [n_blocks, 8 * pk_row_bytes]."""
    w = np.asarray(w)
    if w.dtype != np.int8 or w.ndim != 2:
        raise ValueError(f"pk_pack wants an int8 [n_out, n_in] matrix, got {w.dtype} {w.shape}")
    n_out, n_in = w.shape
    nb, sb = n_blocks(n_out), pk_sched_bytes(n_in)
    padded = np.zeros((nb * R, n_in), np.int64)
    padded[:n_out] = w
    out = np.zeros((nb, sb + 16 * n_in), np.uint8)
    for b in range(nb):
        rows = padded[b * R:(b + 1) * R]
        sched = schedule(rows)
        out[b, :len(sched)] = sched
        words = (rows[0::2] + rows[1::2] * 65536).T.astype("<i4")  # [n_in, R/2]
        out[b, sb:] = np.frombuffer(words.tobytes(), np.uint8)
    return out.view(np.int8)


def pk_unpack(wp: np.ndarray, n_out: int, n_in: int) -> tuple[np.ndarray, list[list[int]]]:
    """The inverse of pk_pack: W int8 [n_out, n_in] and each block's schedule."""
    nb, sb = n_blocks(n_out), pk_sched_bytes(n_in)
    raw = np.asarray(wp, np.int8).view(np.uint8).reshape(nb, sb + 16 * n_in)
    words = raw[:, sb:].copy().view("<i4").astype(np.int64).reshape(nb, n_in, R // 2)
    hi = (words + HALF) >> 16
    lo = words - hi * 65536
    rows = np.zeros((nb, R, n_in), np.int64)
    rows[:, 0::2], rows[:, 1::2] = lo.transpose(0, 2, 1), hi.transpose(0, 2, 1)
    scheds = [[int(v) for v in raw[b, :sb] if v] for b in range(nb)]
    return rows.reshape(nb * R, n_in)[:n_out].astype(np.int8), scheds


def pk_weights(wb: np.ndarray, p: dict) -> np.ndarray:
    """The packed GEMV's layout from the quantizer's GEMV blocks (layout.block_rows)."""
    return pk_pack(unblock_rows(wb, p["n_out"]))


def pk_acc(x, wp, n_out: int, n_in: int) -> np.ndarray:
    """The accumulators gemv_pk computes, by its own 32-bit arithmetic (chunks, packed words, the extraction); equal to
    W @ x for every int8 x when the schedule is safe (the twin checks it)."""
    nb, sb = n_blocks(n_out), pk_sched_bytes(n_in)
    raw = np.asarray(wp, np.int8).view(np.uint8).reshape(nb, sb + 16 * n_in)
    words = raw[:, sb:].copy().view("<i4").astype(np.int64).reshape(nb, n_in, R // 2) & 0xFFFFFFFF
    x = np.asarray(x, np.int64) & 0xFFFFFFFF
    acc = np.zeros((nb, R), np.int64)
    for b in range(nb):
        T = np.zeros(R // 2, np.int64)
        H = T.copy()
        i = chunks = 0
        for L in (int(v) for v in raw[b, :sb] if v):
            a = (HALF + (x[i:i + L, None] * words[b, i:i + L]).sum(0)) & 0xFFFFFFFF
            H += (a - ((a & 0x80000000) << 1)) >> 16  # int32(a) >> 16
            T = (T + a) & 0xFFFFFFFF
            i, chunks = i + L, chunks + 1
        if i != n_in:
            raise ValueError(f"block {b}: its schedule covers {i} of {n_in} columns")
        sa = (T - (H << 16) - chunks * HALF) & 0xFFFFFFFF
        acc[b, 0::2], acc[b, 1::2] = sa - ((sa & 0x80000000) << 1), H
    return acc.reshape(-1)[:n_out]


def linear_pk(x, wp, n_out: int, n_in: int, mult, shift: int, lo: int, hi: int):
    """gemv_pk_iN's integers: twins.linear on the unpacked weights. The kernel's own 32-bit arithmetic (pk_acc) gives
    the same accumulators for every int8 x, since pk_pack's schedules are safe (tests/test_gemv_pk.py checks both
    against the C); golden takes this form, which is as fast as the blocked GEMV's twin."""
    return K.linear(x, pk_unpack(wp, n_out, n_in)[0], mult, int(shift), lo, hi)
