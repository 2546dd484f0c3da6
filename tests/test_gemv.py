"""gemv_i8/i16/i32 (kernels_c/gemv.c) over the row-blocked layout (deeploy_dsl/kernels/layout.py) compute exactly the
integers of kernels.linear (one shift per call, shift[0]; per-row mult; rounding half up): on the host through
ctypes, under ASan/UBSan on exact-size buffers, and on RV32 under QEMU (when the riscv64-unknown-elf toolchain and
qemu-system-riscv32 are installed)."""
from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import string
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels import layout as L  # noqa: E402

KDIR = ROOT / "kernels_c"
SRC = KDIR / "gemv.c"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
STRICT = ["-Wconversion", "-Wsign-conversion", "-Wshadow"]
EXTRA_CFLAGS = os.environ.get("DEEPLOY_KERNELS_CFLAGS", "").split()
RV_CC = "riscv64-unknown-elf-gcc"
RV_FLAGS = ["-march=rv32imac", "-mabi=ilp32", "-O2", "--specs=picolibc.specs"]
RV_LINK = ["--oslib=semihost", "--crt0=semihost", "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x400000",
           "-Wl,--defsym=__ram=0x80400000", "-Wl,--defsym=__ram_size=0x400000"]
QEMU = ["qemu-system-riscv32", "-machine", "virt", "-bios", "none", "-nographic", "-icount", "shift=0",
        "-semihosting-config", "enable=on,target=native", "-kernel"]
R = L.ROWS_PER_BLOCK
BOUNDS = {8: K.I8, 16: K.I16, 32: K.I32}
DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}


# ---------------------------------------------------------------------------------------------- build


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemv") / "libgemv.so"
    cmd = [CC, *CFLAGS, *EXTRA_CFLAGS, "-shared", "-fPIC", "-o", str(out), str(SRC)]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    so = ctypes.CDLL(str(out))
    arr = lambda dt: np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")  # noqa: E731
    for bits in (8, 16, 32):
        f = getattr(so, f"gemv_i{bits}")
        f.argtypes = [arr(DTYPES[bits]), arr(np.int8), arr(np.int8), arr(np.int32), arr(np.uint8), ctypes.c_int32,
                      ctypes.c_int32]
        f.restype = None
    return so


def test_compiles_strict_host_and_32_bit(tmp_path):
    r = subprocess.run([CC, *CFLAGS, *STRICT, "-c", "-o", str(tmp_path / "g.o"), str(SRC)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    if shutil.which("nm"):
        undef = subprocess.run(["nm", "-u", str(tmp_path / "g.o")], capture_output=True, text=True, check=True).stdout
        assert not set(undef.split()[1::2]) - {"__divdi3", "__ashrdi3", "__muldi3"}, undef
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\nint32_t f(void) { return 0; }\n")
    if subprocess.run([CC, "-m32", "-ffreestanding", "-c", "-o", str(tmp_path / "p.o"), str(probe)],
                      capture_output=True).returncode == 0:
        r = subprocess.run([CC, *CFLAGS, *STRICT, "-m32", "-ffreestanding", "-c", "-o", str(tmp_path / "g32.o"), str(SRC)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr


@pytest.mark.skipif(shutil.which(RV_CC) is None, reason="needs riscv64-unknown-elf-gcc")
def test_compiles_strict_rv32(tmp_path):
    for extra in (["--specs=picolibc.specs"], ["-ffreestanding"]):
        flags = [f for f in RV_FLAGS if not f.startswith("--specs")] + extra
        r = subprocess.run([RV_CC, *flags, *CFLAGS, *STRICT, "-c", "-o", str(tmp_path / "g.o"), str(SRC)],
                           capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr


def _strip_comments(src: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", src, flags=re.S))


def test_no_float_no_malloc_no_asm():
    for f in (SRC, KDIR / "gemv.h"):
        code = _strip_comments(f.read_text())
        bad = re.findall(r"\b(float|double|malloc|calloc|realloc|free|asm|__asm__)\b", code)
        assert not bad, f"{f.name} uses {bad}"
        for inc in re.findall(r"#\s*include\s*([<\"][^>\"]+[>\"])", code):
            assert inc in ("<stdint.h>", '"gemv.h"', '"deeploy_kernels.h"'), f"{f.name} includes {inc}"


def test_header_block_size_matches_layout():
    m = re.search(r"#define\s+GEMV_ROWS_PER_BLOCK\s+(\d+)", (KDIR / "gemv.h").read_text())
    assert m and int(m.group(1)) == L.ROWS_PER_BLOCK


# --------------------------------------------------------------------------------------------- layout


def test_layout_by_hand():
    w = np.arange(-60, 60, dtype=np.int8).reshape(12, 10)  # 12 rows: one full block of 8, one of 4 + 4 zero rows
    wb = L.block_rows(w)
    assert wb.shape == (2, 10, R) and wb.dtype == np.int8 and wb.flags.c_contiguous
    assert L.padded_rows(12) == 16 and L.n_blocks(12) == 2 and L.blocked_bytes(12, 10) == wb.nbytes == 160
    for b in range(2):
        for i in range(10):
            for r in range(R):
                o = b * R + r
                assert wb[b, i, r] == (w[o, i] if o < 12 else 0)
    flat = wb.tobytes()  # the order C reads: column i of block b is R adjacent bytes
    assert flat[:R] == w[:R, 0].tobytes() and flat[R:2 * R] == w[:R, 1].tobytes()
    assert flat[10 * R:10 * R + 4] == w[8:12, 0].tobytes() and flat[10 * R + 4:11 * R] == bytes(4)


@pytest.mark.parametrize("shape", [(1, 1), (0, 5), (7, 3), (8, 8), (9, 1), (172, 64), (64, 172), (512, 64), (33, 17)])
def test_layout_round_trip(shape):
    w = np.random.default_rng(sum(shape)).integers(-128, 128, shape, dtype=np.int8)
    wb = L.block_rows(w)
    n_out = shape[0]
    assert wb.shape == (L.n_blocks(n_out), shape[1], R)
    assert L.padded_rows(n_out) % R == 0 and 0 <= L.padded_rows(n_out) - n_out < R
    assert not wb.transpose(0, 2, 1).reshape(-1, shape[1])[n_out:].any()  # padding rows are zero
    np.testing.assert_array_equal(L.unblock_rows(wb, n_out), w)


def test_layout_rejects_bad_input():
    with pytest.raises(ValueError):
        L.block_rows(np.zeros((4, 4), np.int32))
    with pytest.raises(ValueError):
        L.block_rows(np.zeros((4, 4), np.float32))
    w16 = np.arange(-40, 40, dtype=np.int16).reshape(5, 16)  # int16 (`classifier int16`) round-trips
    assert np.array_equal(L.unblock_rows(L.block_rows(w16), 5), w16)
    with pytest.raises(ValueError):
        L.block_rows(np.zeros(4, np.int8))
    with pytest.raises(ValueError):
        L.unblock_rows(np.zeros((2, 4, R), np.int8), 17)


def test_tile_of_blocks_is_a_contiguous_slice():
    """Rows [o0, o0+rows) with o0 % R == 0 are one contiguous byte range of wb, itself the layout of those rows."""
    w = np.random.default_rng(5).integers(-128, 128, (172, 64), dtype=np.int8)
    flat = L.block_rows(w).tobytes()
    for o0, rows in ((0, 64), (64, 64), (128, 44), (168, 4), (16, 8)):
        start = (o0 // R) * 64 * R
        assert flat[start:start + L.blocked_bytes(rows, 64)] == L.block_rows(w[o0:o0 + rows]).tobytes()


# ----------------------------------------------------------------------------------------- host kernel


def c_gemv(lib, bits, x, w, mult, shift: int):
    """Run gemv_i<bits> on block_rows(w) with the layer's shift in shift[0] and garbage in the other entries (the
    kernel reads shift[0] only); y has R guard elements after n_out that must stay untouched."""
    n_out, n_in = w.shape
    guard = np.iinfo(DTYPES[bits]).max - 3
    y = np.full(n_out + R, guard, DTYPES[bits])
    wb = L.block_rows(w).reshape(-1)
    shifts = np.full(max(n_out, 1), 255, np.uint8)
    shifts[1::2] = 7
    shifts[0] = shift
    getattr(lib, f"gemv_i{bits}")(y, np.ascontiguousarray(x, np.int8), wb, np.ascontiguousarray(mult, np.int32),
                                  shifts, n_in, n_out)
    assert (y[n_out:] == guard).all(), "gemv wrote past n_out"
    return y[:n_out]


def check(lib, x, w, mult, shift):
    """C against kernels.linear for one shift, or for per-row shifts: one call per distinct shift on its rows."""
    shift = np.asarray(shift)
    for s in (np.unique(shift) if shift.ndim else [shift]):
        rows = shift == s if shift.ndim else slice(None)
        ws, ms = w[rows], np.asarray(mult)[rows]
        for bits in (8, 16, 32):
            np.testing.assert_array_equal(c_gemv(lib, bits, x, ws, ms, int(s)),
                                          K.linear(x, ws, ms, int(s), *BOUNDS[bits]),
                                          err_msg=f"gemv_i{bits} {ws.shape} shift {int(s)}")


def rand_i8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def qm_arrays(reals):
    """The compiler's multipliers for a layer: per-row mult, one shift (kernels.layer_multipliers)."""
    return K.layer_multipliers(reals)


def any_requant(rng, n):
    """Any int32 multiplier (negative too) with one shift in [0, 62]."""
    return rng.integers(-2**31, 2**31, n).astype(np.int32), int(rng.integers(0, 63))


@pytest.mark.parametrize("seed", range(100))
def test_gemv_random(lib, seed):
    rng = np.random.default_rng(1000 + seed)
    n_in = int(rng.integers(1, 300)) if seed % 3 else int(rng.integers(1, 12))  # small and odd n_in too
    n_out = int(rng.integers(1, 60))
    x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
    if seed % 10 == 0:  # extreme accumulators of both signs
        x[:] = -128
        w[: n_out // 2], w[n_out // 2:] = -128, 127
    kind = seed % 4
    if kind == 0:  # the model's range: outputs mostly in range
        mult, shift = qm_arrays(10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in)))
    elif kind == 1:  # factors spread over 1e4 around 1e-9 .. 1e3: shifts from 21 to 62, saturation at the top
        mult, shift = qm_arrays(10 ** rng.uniform(-4, 0, n_out) * 10 ** rng.uniform(-5, 3))
    elif kind == 2:  # tiny (mult, shift): exact .5 ties of both signs
        mult, shift = rng.integers(1, 8, n_out).astype(np.int32), int(rng.integers(1, 4))
    else:
        mult, shift = any_requant(rng, n_out)
    check(lib, x, w, mult, shift)


@pytest.mark.parametrize("shape", [(1, 1), (512, 64), (172, 64), (64, 172), (64, 64), (32, 64), (1, 300), (7, 1),
                                   (9, 3), (15, 5), (17, 7), (8, 8), (3, 9), (0, 4), (5, 0)])
def test_gemv_shapes(lib, shape):
    n_out, n_in = shape
    rng = np.random.default_rng(n_out * 1000 + n_in)
    x, w = rand_i8(rng, n_in), rand_i8(rng, shape)
    check(lib, x, w, *qm_arrays(10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(max(n_in, 1)))))
    check(lib, x, w, *any_requant(rng, n_out))


def test_gemv_rounding_shift_and_saturation_edges(lib):
    """acc = w (n_in = 1, x = 1) over all int8 values and acc = +-n_in * 2^14 against every shift 0..62."""
    w = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1)
    x = np.ones(1, np.int8)
    for mult in (1 << 30, 3, 1, 5, 2**31 - 1, -(2**31), -7, 0, (1 << 30) + 12345):
        for s in range(63):
            check(lib, x, w, np.full(256, mult, np.int32), np.full(256, s, np.uint8))
    for n_in in (1, 63, 172, 4099):
        x = np.full(n_in, -128, np.int8)
        w = np.array([[-128] * n_in, [127] * n_in, [-127] * n_in, [1] * n_in] * 3, np.int8)
        for mult in (1 << 30, 2**31 - 1, -(2**31)):
            for s in range(63):
                check(lib, x, w, np.full(12, mult, np.int32), np.full(12, s, np.uint8))


def _rows_with_acc(targets, n_in):
    """x = (-128, ..., -128, 1) and one weight row per target a with sum_i w[i] * x[i] == a exactly."""
    x = np.full(n_in, -128, np.int8)
    x[-1] = 1
    w = np.zeros((len(targets), n_in), np.int8)
    for row, a in zip(w, targets):
        m, rem = divmod(int(a), 128)  # a = 128 m + rem, 0 <= rem < 128: the body sums to -m, the last byte is rem
        row[-1] = rem
        big, step = (-128, 128) if m >= 0 else (127, 127)
        q, r = divmod(abs(m), step)
        assert q + 1 < n_in
        row[:q] = big
        row[q] = r if m < 0 else -r
    assert (w.astype(np.int64) @ x.astype(np.int64) == np.array(targets)).all()
    return x, w


@pytest.mark.parametrize("shifts,n_in", [(range(3, 23), 4100), (range(23, 33), 100000)])
def test_gemv_small_shift_path_boundary(lib, shifts, n_in):
    """For shift < 33 the kernel rescales acc by 2^(33-shift) when that fits 32 bits: accs around the limit (one
    call per shift)."""
    targets, shift = [], []
    for s in shifts:
        limit = 2 ** (s - 2)  # |acc| < 2^(s-2) takes the rescaled path
        for a in (limit - 1, limit, limit + 1, -limit + 1, -limit, -limit - 1, 3 * limit // 2, -(3 * limit // 2)):
            targets.append(a)
            shift.append(s)
    x, w = _rows_with_acc(targets, n_in)
    shift = np.array(shift, np.uint8)
    rng = np.random.default_rng(n_in)
    for mult in ((1 << 30) + 1, 2**31 - 1, 1 << 30, -(2**31) + 1):
        check(lib, x, w, np.full(len(targets), mult, np.int32), shift)
    check(lib, x, w, rng.integers(2**30, 2**31, len(targets)).astype(np.int32), shift)


@pytest.mark.parametrize("n_in", [1, 7, 8, 9, 64, 172])
def test_gemv_two_block_passes(lib, n_in):
    """Every n_out from 1 to 41: one block, two blocks per pass (full, or with a partial second block), pairs then an
    odd last block (full or partial), with and without the column tail (n_in % 8)."""
    rng = np.random.default_rng(7 * n_in)
    for n_out in list(range(1, 42)) + [172]:
        x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
        check(lib, x, w, *qm_arrays(10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in))))
        check(lib, x, w, *any_requant(rng, n_out))


def test_gemv_product_low_word_zero(lib):
    """acc * mult a multiple of 2^32 (the high word alone must do), in particular exact .5 ties of both signs (half
    up: -2.5 -> -2), for every shift: acc = +-odd * 2^e against mult = 2^j and 3 * 2^j."""
    targets, shift, mult = [], [], []
    for s in range(3, 63):
        for m in (1 << 30, 3 << 28, (1 << 31) - 1):
            for odd in (1, 3, 5):
                e = max(0, s - 1 - (m.bit_length() - 1))  # acc * m is (close to) an odd multiple of 2^(s-1)
                if odd << e < 2**24:
                    for sign in (1, -1):
                        targets.append(sign * (odd << e))
                        shift.append(s)
                        mult.append(m)
        for j in range(min(s - 1, 30) + 1):  # mult = 2^j, odd acc: ties wherever j = s - 1
            for a in (1, -1, 3, -3, 7, -7):
                targets.append(a)
                shift.append(s)
                mult.append(1 << j)
    x, w = _rows_with_acc(targets, 1100)
    mult, shift = np.array(mult, np.int32), np.array(shift, np.uint8)
    check(lib, x, w, mult, shift)
    check(lib, x, w, -mult, shift)


def test_gemv_reads_shift_0_only(lib):
    """The layer's shift is shift[0]; the other entries (all equal in a deployment) are not read."""
    rng = np.random.default_rng(3)
    x, w = rand_i8(rng, 64), rand_i8(rng, (40, 64))
    mult, shift = qm_arrays(10 ** rng.uniform(-1, 0, 40) / (128 * 8))
    want = K.linear(x, w, mult, shift, *K.I8)
    for other in (0, 62, shift - 5, shift + 5):
        shifts = np.full(40, other, np.uint8)
        shifts[0] = shift
        y = np.zeros(40, np.int8)
        lib.gemv_i8(y, x, L.block_rows(w).reshape(-1), mult, shifts, 64, 40)
        np.testing.assert_array_equal(y, want)


def test_requant_half_up_by_hand():
    """floor(v + 1/2): ties go up, for both signs; kernels.requant (other kernels) still rounds half away from zero."""
    acc = np.array([-7, -6, -5, -3, -2, -1, 0, 1, 2, 3, 5, 6, 7])
    assert K.requant_half_up(acc, 1, 1, -100, 100).tolist() == [-3, -3, -2, -1, -1, 0, 0, 1, 1, 2, 3, 3, 4]
    assert K.requant_half_up(acc, 1, 2, -100, 100).tolist() == [-2, -1, -1, -1, 0, 0, 0, 0, 1, 1, 1, 2, 2]
    assert K.requant(acc, 1, 1, -100, 100).tolist() == [-4, -3, -3, -2, -1, -1, 0, 1, 1, 2, 3, 3, 4]
    assert K.requant_half_up(acc, 3, 0, -10, 10).tolist() == [-10, -10, -10, -9, -6, -3, 0, 3, 6, 9, 10, 10, 10]
    with pytest.raises(ValueError):
        K.linear(np.ones(1, np.int8), np.ones((2, 1), np.int8), [1, 1], np.array([3, 3]), *K.I8)


@pytest.mark.parametrize("top,spread", [(0.3, 1), (1e-3, 20), (2.0, 100), (5e3, 4), (1e-12, 10), (0.2499, 1)])
def test_layer_multipliers(top, spread):
    """One shift, the largest that keeps mult < 2^31: the largest factor's mult in [2^30, 2^31), every mult within
    half a unit of real * 2^shift, so a row r times smaller keeps ~31 - log2(r) bits."""
    reals = top / np.geomspace(1, spread, 9)
    mult, shift = K.layer_multipliers(reals)
    assert mult.dtype == np.int32 and isinstance(shift, int) and 0 <= shift <= 62
    assert (mult >= 0).all() and mult.max() < 2**31
    if shift < 62:
        assert mult.max() >= 2**30
    assert np.all(np.abs(mult - reals * 2.0 ** shift) <= 0.5)
    assert (shift >= 33) == (top < 0.25 - 1e-9)
    for bad in ([0.1, 0.0], [float("nan")], [2.0 ** 31]):
        with pytest.raises(ValueError):
            K.layer_multipliers(bad)


# ------------------------------------------------------------------------------------ sanitizers, RV32

LCG_C = r"""
static uint32_t lcg_state;
static uint32_t lcg(void) { lcg_state = lcg_state * 1664525u + 1013904223u; return lcg_state; }
/* W [n_out, n_in] row-major, x, mult in [2^30, 2^31), shift in [shift_lo, shift_lo + shift_span) from the LCG */
static void make_case(int8_t *w, int8_t *x, int32_t *mult, uint8_t *shift, int32_t n_out, int32_t n_in,
                      uint32_t shift_lo, uint32_t shift_span) {
    for (int32_t i = 0; i < n_out * n_in; i++) w[i] = (int8_t)(lcg() >> 24);
    for (int32_t i = 0; i < n_in; i++) x[i] = (int8_t)(lcg() >> 24);
    for (int32_t o = 0; o < n_out; o++) mult[o] = (int32_t)(0x40000000u | (lcg() >> 2));
    for (int32_t o = 0; o < n_out; o++) shift[o] = (uint8_t)(shift_lo + lcg() % shift_span);
}
/* wb[b][i][r] = W[b*R + r][i], zero rows after n_out: deeploy_dsl.kernels.layout.block_rows */
static void block_rows(int8_t *wb, const int8_t *w, int32_t n_out, int32_t n_in) {
    int32_t nb = (n_out + GEMV_ROWS_PER_BLOCK - 1) / GEMV_ROWS_PER_BLOCK;
    for (int32_t b = 0; b < nb; b++)
        for (int32_t i = 0; i < n_in; i++)
            for (int32_t r = 0; r < GEMV_ROWS_PER_BLOCK; r++) {
                int32_t o = b * GEMV_ROWS_PER_BLOCK + r;
                wb[(b * n_in + i) * GEMV_ROWS_PER_BLOCK + r] = o < n_out ? w[o * n_in + i] : 0;
            }
}
"""


def lcg_case(state: int, n_out: int, n_in: int, shift_lo: int, shift_span: int):
    """numpy twin of make_case: (w, x, mult, shift, next state)."""
    vals = []
    for _ in range(n_out * n_in + n_in + 2 * n_out):
        state = (state * 1664525 + 1013904223) & 0xFFFFFFFF
        vals.append(state)
    v = np.array(vals, np.uint64)
    a, b, c = n_out * n_in, n_out * n_in + n_in, n_out * n_in + n_in + n_out
    byte = lambda u: (u >> 24).astype(np.uint8).view(np.int8)  # noqa: E731
    w, x = byte(v[:a]).reshape(n_out, n_in), byte(v[a:b])
    mult = (0x40000000 | (v[b:c] >> 2)).astype(np.int64).astype(np.int32)
    shift = (shift_lo + v[c:] % shift_span).astype(np.uint8)
    return w, x, mult, shift, state


ASAN_MAIN = r"""
#include <stdio.h>
#include <stdlib.h>
#include "gemv.h"
#include "deeploy_kernels.h"
""" + LCG_C + r"""
int main(void) {
    int bad = 0, cases = 0;
    lcg_state = 1u;
    for (int32_t n_out = 0; n_out <= 41; n_out += (n_out < 18 ? 1 : 7))
        for (int32_t n_in = 0; n_in <= 70; n_in += (n_in < 20 ? 1 : 17)) {
            int32_t nb = (n_out + GEMV_ROWS_PER_BLOCK - 1) / GEMV_ROWS_PER_BLOCK;
            /* exact-size heap buffers: ASan catches any read or write outside them */
            int8_t *w = malloc((size_t)(n_out * n_in)), *x = malloc((size_t)n_in);
            int8_t *wb = malloc((size_t)(nb * n_in * GEMV_ROWS_PER_BLOCK));
            int32_t *mult = malloc(sizeof(int32_t) * (size_t)n_out);
            uint8_t *shift = malloc((size_t)n_out);
            int8_t *y8 = malloc((size_t)n_out), *r8 = malloc((size_t)n_out);
            int16_t *y16 = malloc(2 * (size_t)n_out), *r16 = malloc(2 * (size_t)n_out);
            int32_t *y32 = malloc(4 * (size_t)n_out), *r32 = malloc(4 * (size_t)n_out);
            make_case(w, x, mult, shift, n_out, n_in, 0, 63);
            block_rows(wb, w, n_out, n_in);
            gemv_i8(y8, x, wb, mult, shift, n_in, n_out);
            linear_i8(r8, x, w, mult, shift, n_in, n_out);
            gemv_i16(y16, x, wb, mult, shift, n_in, n_out);
            linear_i16(r16, x, w, mult, shift, n_in, n_out);
            gemv_i32(y32, x, wb, mult, shift, n_in, n_out);
            linear_i32(r32, x, w, mult, shift, n_in, n_out);
            for (int32_t o = 0; o < n_out; o++) bad += (y8[o] != r8[o]) + (y16[o] != r16[o]) + (y32[o] != r32[o]);
            cases++;
            free(w);
            free(x);
            free(wb);
            free(mult);
            free(shift);
            free(y8);
            free(r8);
            free(y16);
            free(r16);
            free(y32);
            free(r32);
        }
    printf("cases %d bad %d\n", cases, bad);
    return bad != 0;
}
"""


def test_gemv_under_sanitizers_on_exact_buffers(tmp_path):
    """No access outside x, wb, mult, shift, y of their exact sizes, no UB, same integers as linear.c."""
    prog = tmp_path / "asan_main.c"
    prog.write_text(ASAN_MAIN)
    exe = tmp_path / "asan_main"
    san = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"]
    r = subprocess.run([CC, "-std=c99", "-O1", *san, f"-I{KDIR}", "-o", str(exe), str(prog), str(SRC),
                        str(KDIR / "linear.c")], capture_output=True, text=True)
    if r.returncode != 0 and "sanitize" in r.stderr:
        pytest.skip(f"no sanitizer runtime: {r.stderr[:200]}")
    assert r.returncode == 0, r.stderr
    run = subprocess.run([str(exe)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0 and "bad 0" in run.stdout, run.stdout + run.stderr


RV_SHAPES = [(1, 1), (3, 5), (8, 64), (13, 37), (64, 64), (172, 64), (64, 172), (9, 2), (20, 11), (24, 9), (16, 1),
             (17, 64)]
RV_SEED = 12345
RV_SHIFT = (20, 31)  # shifts 20..50: the rescaled small-shift path, the plain path, saturation and small outputs

RV_MAIN = r"""
#include <stdio.h>
#include "gemv.h"
""" + LCG_C + r"""
#include "perf.h"
#define instret dpl_instret
static const int32_t shapes[][2] = {$SHAPES};
static int8_t w[$MAX_W], wb[$MAX_WB], x[$MAX_IN], y8[$MAX_OUT];
static int16_t y16[$MAX_OUT];
static int32_t y32[$MAX_OUT], mult[$MAX_OUT];
static uint8_t shift[$MAX_OUT];
int main(void) {
    lcg_state = $SEED;
    for (unsigned k = 0; k < sizeof shapes / sizeof shapes[0]; k++) {
        int32_t n_out = shapes[k][0], n_in = shapes[k][1];
        make_case(w, x, mult, shift, n_out, n_in, $SHIFT_LO, $SHIFT_SPAN);
        block_rows(wb, w, n_out, n_in);
        uint64_t t0 = instret();
        gemv_i8(y8, x, wb, mult, shift, n_in, n_out);
        uint64_t t1 = instret();
        gemv_i16(y16, x, wb, mult, shift, n_in, n_out);
        gemv_i32(y32, x, wb, mult, shift, n_in, n_out);
        printf("case %u instret %lu\n", k, (unsigned long)(t1 - t0));
        for (int32_t o = 0; o < n_out; o++) printf("%d %d %ld\n", y8[o], y16[o], (long)y32[o]);
    }
    return 0;
}
"""


OUT_LINE = re.compile(r"^(case \d+ instret \d+|-?\d+ -?\d+ -?\d+)$")


@pytest.mark.skipif(shutil.which(RV_CC) is None or shutil.which(QEMU[0]) is None,
                    reason="needs riscv64-unknown-elf-gcc and qemu-system-riscv32")
def test_gemv_rv32_qemu(tmp_path):
    shapes = ", ".join(f"{{{o}, {i}}}" for o, i in RV_SHAPES)
    src = string.Template(RV_MAIN).substitute(
        SHAPES=shapes, SEED=f"{RV_SEED}u", SHIFT_LO=f"{RV_SHIFT[0]}u", SHIFT_SPAN=f"{RV_SHIFT[1]}u",
        MAX_W=max(o * i for o, i in RV_SHAPES), MAX_WB=max(L.blocked_bytes(o, i) for o, i in RV_SHAPES),
        MAX_IN=max(i for _, i in RV_SHAPES), MAX_OUT=max(o for o, _ in RV_SHAPES))
    prog = tmp_path / "prog.c"
    prog.write_text(src)
    elf = tmp_path / "prog.elf"
    r = subprocess.run([RV_CC, *RV_FLAGS, *RV_LINK, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{KDIR}", "-o", str(elf),
                        str(prog), str(SRC)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    run = subprocess.run([*QEMU, str(elf)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    # picolibc's semihosted stdout reaches QEMU's stderr or stdout depending on the version: keep our lines
    lines = [ln for ln in (run.stdout + "\n" + run.stderr).splitlines() if OUT_LINE.match(ln)]
    state = RV_SEED
    at = 0
    for k, (n_out, n_in) in enumerate(RV_SHAPES):
        w, x, mult, shift, state = lcg_case(state, n_out, n_in, *RV_SHIFT)
        head = lines[at].split()
        assert head[:2] == ["case", str(k)], lines[at]
        got = np.array([[int(t) for t in ln.split()] for ln in lines[at + 1:at + 1 + n_out]], np.int64).reshape(n_out, 3)
        at += 1 + n_out
        for col, bits in enumerate((8, 16, 32)):
            want = K.linear(x, w, mult, int(shift[0]) if n_out else 0, *BOUNDS[bits])  # the kernel reads shift[0]
            np.testing.assert_array_equal(got[:, col], want,
                                          err_msg=f"rv32 gemv_i{bits} {n_out}x{n_in}")
        if (n_out, n_in) == (64, 64):  # the tight two-block loop survived the compiler (no spills): ~3.45 per MAC
            per_mac = int(head[3]) / (n_out * n_in)
            assert per_mac < 3.6, f"gemv_i8 64x64 takes {per_mac:.2f} RV32 instructions per MAC"
    assert at == len(lines)
