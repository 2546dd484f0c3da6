"""The NPU's functional model (kernels_c/npu.c, API in npu.h) computes exactly the integers of its numpy twin
kernels.npu_linear, which are those of the cluster's linear layers (kernels.linear and the C gemv_i8/i16/i32) on the
unpacked weights; its counters follow kernels.npu_cycles; malformed jobs are refused. On the host via ctypes, and on
RV32 under QEMU with a small program of its own (skipped without the toolchain)."""
from __future__ import annotations

import ctypes
import os
import re
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels import layout as L  # noqa: E402

KDIR = ROOT / "kernels_c"
SRC, HDR = KDIR / "npu.c", KDIR / "npu.h"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
STRICT = ["-pedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow"]
EXTRA_CFLAGS = os.environ.get("DEEPLOY_KERNELS_CFLAGS", "").split()
DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}
RANGES = {8: K.I8, 16: K.I16, 32: K.I32}


def header_define(name: str) -> int:
    m = re.search(rf"#define\s+{name}\s+\(?(-?\d+)\)?", HDR.read_text())
    assert m, f"{name} not in npu.h"
    return int(m.group(1))


NPU_OK = header_define("NPU_OK")
ERR = {n: header_define(f"NPU_ERR_{n}") for n in ("NULL", "SIZE", "STRIDE", "BITS", "SHIFT", "ALIGN", "BUSY", "IDLE")}
NPU_MAX_IN = header_define("NPU_MAX_IN")


class NpuJob(ctypes.Structure):
    _fields_ = [("x", ctypes.c_void_p), ("w", ctypes.c_void_p), ("mult", ctypes.c_void_p), ("y", ctypes.c_void_p),
                ("shift", ctypes.c_int32), ("n_in", ctypes.c_int32), ("n_out", ctypes.c_int32),
                ("n_tok", ctypes.c_int32), ("x_stride", ctypes.c_int32), ("y_stride", ctypes.c_int32),
                ("out_bits", ctypes.c_int32)]


# ---------------------------------------------------------------------------------------------- build


def build_so(out: Path) -> ctypes.CDLL:
    cmd = [CC, *CFLAGS, *EXTRA_CFLAGS, "-shared", "-fPIC", "-o", str(out), str(SRC), str(KDIR / "gemv.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    return ctypes.CDLL(str(out))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    so = build_so(tmp_path_factory.mktemp("npu") / "libnpu.so")
    so.npu_submit.argtypes = [ctypes.POINTER(NpuJob)]
    so.npu_submit.restype = ctypes.c_int
    so.npu_wait.argtypes = []
    so.npu_wait.restype = ctypes.c_int
    so.npu_run_tok.argtypes = [ctypes.POINTER(NpuJob), ctypes.c_void_p]
    so.npu_run_tok.restype = ctypes.c_int
    so.npu_reset_counters.argtypes = []
    so.npu_reset_counters.restype = None
    arr = lambda dt: np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")  # noqa: E731
    for bits in (8, 16, 32):
        f = getattr(so, f"gemv_i{bits}")
        f.argtypes = [arr(DTYPES[bits]), arr(np.int8), arr(np.int8), arr(np.int32), arr(np.uint8), ctypes.c_int32,
                      ctypes.c_int32]
        f.restype = None
    return so


def counters(lib) -> tuple[int, int, int]:
    return tuple(ctypes.c_uint64.in_dll(lib, n).value for n in ("npu_jobs", "npu_macs", "npu_cycles"))


def ptr(a: np.ndarray) -> int:
    return a.ctypes.data


def make_job(x, wp, mult, y, shift, n_in, n_out, n_tok, x_stride, y_stride, bits) -> NpuJob:
    return NpuJob(ptr(x) if x is not None else None, ptr(wp) if wp is not None else None,
                  ptr(mult) if mult is not None else None, ptr(y) if y is not None else None,
                  shift, n_in, n_out, n_tok, x_stride, y_stride, bits)


def c_npu(lib, x, w, mult, shift: int, bits: int, x_stride: int | None = None, y_stride: int | None = None,
          wp=None, seed: int = 0):
    """Run one NPU job on x [n_tok, n_in], W [n_out, n_in] (packed here unless wp is given). x sits in a
    [n_tok, x_stride] buffer with garbage between the rows; y in a [n_tok, y_stride] buffer of guards, which must
    stay untouched outside y's rows. Returns y [n_tok, n_out]; checks the counters moved by one job."""
    rng = np.random.default_rng(seed)
    x = np.atleast_2d(np.asarray(x, np.int8))
    n_tok, n_in = x.shape
    n_out = w.shape[0] if w is not None else wp.shape[0]
    xs = n_in if x_stride is None else x_stride
    ys = n_out if y_stride is None else y_stride
    xb = rng.integers(-128, 128, (n_tok, xs), dtype=np.int8)
    xb[:, :n_in] = x
    wp = L.npu_pack(w) if wp is None else wp
    guard = np.iinfo(DTYPES[bits]).max - 3
    yb = np.full((n_tok, ys), guard, DTYPES[bits])
    mult = np.ascontiguousarray(mult, np.int32)
    before = counters(lib)
    job = make_job(xb, wp, mult, yb, shift, n_in, n_out, n_tok, xs, ys, bits)
    assert lib.npu_submit(ctypes.byref(job)) == NPU_OK
    assert lib.npu_wait() == NPU_OK
    after = counters(lib)
    assert after[0] - before[0] == 1
    assert after[1] - before[1] == n_in * n_out * n_tok
    assert after[2] - before[2] == K.npu_cycles(n_in, n_out, n_tok)
    assert (yb[:, n_out:] == guard).all(), "the NPU wrote between y's rows"
    return yb[:, :n_out]


def c_gemv(lib, bits, x, w, mult, shift: int):
    """The cluster's gemv_i<bits> on one token (row-blocked weights, the layer's shift in shift[0])."""
    n_out, n_in = w.shape
    y = np.zeros(n_out, DTYPES[bits])
    shifts = np.full(max(n_out, 1), shift, np.uint8)
    getattr(lib, f"gemv_i{bits}")(y, np.ascontiguousarray(x, np.int8), L.block_rows(w).reshape(-1),
                                  np.ascontiguousarray(mult, np.int32), shifts, n_in, n_out)
    return y


def check(lib, x, w, mult, shift: int, bits: int, what: str = "", gemv: bool = True, **kw):
    """C NPU == twin npu_linear == cluster twin K.linear per token (== C gemv per token)."""
    x = np.atleast_2d(np.asarray(x, np.int8))
    lo, hi = RANGES[bits]
    wp = L.npu_pack(w)
    twin = K.npu_linear(x, wp, mult, shift, lo, hi)
    cluster = np.stack([K.linear(xt, w, mult, shift, lo, hi) for xt in x])
    np.testing.assert_array_equal(twin, cluster, err_msg=f"twin vs K.linear {what}")
    got = c_npu(lib, x, w, mult, shift, bits, **kw)
    np.testing.assert_array_equal(got, twin, err_msg=f"C npu vs twin {what}")
    if gemv:
        for t in range(x.shape[0]):
            np.testing.assert_array_equal(got[t], c_gemv(lib, bits, x[t], w, mult, shift),
                                          err_msg=f"C npu vs C gemv token {t} {what}")


def rand_i8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def layer(rng, n_in, n_out, kind: int):
    """(mult, shift) of a layer: compiler-style from layer_multipliers, or tie-heavy tiny ones."""
    if kind == 2:
        return rng.integers(1, 8, n_out).astype(np.int32), int(rng.integers(1, 4))
    reals = (10 ** rng.uniform(-4, 0, n_out) * 10 ** rng.uniform(-5, 3) if kind
             else 10 ** rng.uniform(-1, 1, n_out) / (128 * np.sqrt(n_in)))
    return K.layer_multipliers(reals)


# ---------------------------------------------------------------------------------------------- source


def c_npu_tok(lib, x, w, mult, tok, bits: int) -> tuple[int, np.ndarray]:
    """npu_run_tok on one token: (status, y); y's guard past n_out must stay, and the counters move by a job per
    NPU_TOK_ROWS rows."""
    n_out, n_in = w.shape
    wp, guard = L.npu_pack(w), np.iinfo(DTYPES[bits]).max - 3
    yb = np.full(n_out + 3, guard, DTYPES[bits])
    x, mult, tokb = (np.ascontiguousarray(x, np.int8), np.ascontiguousarray(mult, np.int32),
                     np.array(tok, np.int64).astype(np.int32))
    before = counters(lib)
    status = lib.npu_run_tok(ctypes.byref(make_job(x, wp, mult, yb, 99, n_in, n_out, 1, n_in, n_out, bits)), ptr(tokb))
    if status == NPU_OK:
        assert counters(lib)[0] - before[0] == -(-n_out // K.NPU_TOK_ROWS)
        assert (yb[n_out:] == guard).all(), "npu_run_tok wrote past y"
    return status, yb[:n_out]


def test_npu_run_tok_matches_the_cluster_token_gemv(lib):
    """The per-token factor's jobs: the integers of linear_tok (the cluster's gemv_tok), chunks of NPU_TOK_ROWS rows
    (odd counts across the boundaries), every output width, token shifts above 62 (the multipliers' low bits given up)."""
    assert header_define("NPU_TOK_ROWS") == K.NPU_TOK_ROWS
    for i, n_out in enumerate((1, 7, 127, 128, 129, 300, 512)):
        for bits in (8, 16, 32):
            rng = np.random.default_rng(700 + 10 * i + bits)
            n_in = int(rng.integers(1, 200))
            x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
            mult, base = K.layer_multipliers(10 ** rng.uniform(-3, -1, n_out) / np.sqrt(n_in))
            tok = K.tok_factor(int(rng.integers(1, 1 << 16)), int(rng.integers(-8, 1)), base + 40 * (i == 3))
            assert tok[1] >= 0 and (tok[1] > 62) == (i == 3)
            lo, hi = RANGES[bits]
            want = K.linear_tok(x, w, mult, tok, lo, hi)
            np.testing.assert_array_equal(K.npu_linear_tok(x, L.npu_pack(w), mult, tok, lo, hi), want)
            status, got = c_npu_tok(lib, x, w, mult, tok, bits)
            assert status == NPU_OK
            np.testing.assert_array_equal(got, want, err_msg=f"n_out={n_out} bits={bits} tok={tok}")


def test_npu_run_tok_refuses_what_it_cannot_run(lib):
    rng = np.random.default_rng(3)
    x, w, mult = rand_i8(rng, 10), rand_i8(rng, (5, 10)), np.ones(5, np.int32)
    assert c_npu_tok(lib, x, w, mult, (-(1 << 31), -1), 8)[0] == ERR["SHIFT"]
    wp, y, tok = L.npu_pack(w), np.zeros(10, np.int32), np.array([0, 3], np.int32)
    for n_tok, bits, err in ((2, 8, "SIZE"), (1, 12, "BITS")):
        job = make_job(x, wp, mult, y, 0, 10, 5, n_tok, 10, 5, bits)
        assert lib.npu_run_tok(ctypes.byref(job), ptr(tok)) == ERR[err]


def test_compiles_strict_host_and_32_bit(tmp_path):
    r = subprocess.run([CC, *CFLAGS, *STRICT, "-c", "-o", str(tmp_path / "n.o"), str(SRC)], capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    if shutil.which("nm"):
        undef = subprocess.run(["nm", "-u", str(tmp_path / "n.o")], capture_output=True, text=True, check=True).stdout
        assert set(undef.split()[1::2]) <= {"memset", "memcpy", "_GLOBAL_OFFSET_TABLE_"}, undef
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\nint32_t f(void) { return 0; }\n")
    if subprocess.run([CC, "-m32", "-ffreestanding", "-c", "-o", str(tmp_path / "p.o"), str(probe)],
                      capture_output=True).returncode == 0:
        r = subprocess.run([CC, *CFLAGS, *STRICT, "-m32", "-ffreestanding", "-c", "-o", str(tmp_path / "n32.o"),
                            str(SRC)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, r.stderr


def test_no_float_no_malloc_no_exit():
    for f in (SRC, HDR):
        code = re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", f.read_text(), flags=re.S))
        bad = re.findall(r"\b(float|double|malloc|calloc|realloc|free|exit|abort)\b", code)
        assert not bad, f"{f.name} uses {bad}"
        for inc in re.findall(r"#\s*include\s*([<\"][^>\"]+[>\"])", code):
            assert inc in ("<stdint.h>", "<stddef.h>", '"npu.h"', '"perf.h"', '"gemv.h"'), f"{f.name} includes {inc}"


def test_constants_match_python():
    assert header_define("NPU_K") == L.NPU_K == 32
    assert header_define("NPU_COLS") == K.NPU_COLS == 32
    assert header_define("NPU_SETUP_CYCLES") == K.NPU_SETUP_CYCLES == 100


# ---------------------------------------------------------------------------------------------- layout


@pytest.mark.parametrize("n_in", [1, 31, 32, 33, 64, 172])
def test_pack_unpack(n_in):
    rng = np.random.default_rng(n_in)
    w = rand_i8(rng, (7, n_in))
    wp = L.npu_pack(w)
    k = -(-n_in // 32)
    assert wp.shape == (7, k * 32) and wp.dtype == np.int8 and wp.flags.c_contiguous
    assert L.npu_k_blocks(n_in) == k and L.npu_packed_bytes(7, n_in) == wp.nbytes
    assert (wp[:, n_in:] == 0).all()
    np.testing.assert_array_equal(wp[:, :n_in], w)
    np.testing.assert_array_equal(L.npu_unpack(wp, n_in), w)


def test_pack_rejects():
    with pytest.raises(ValueError):
        L.npu_pack(np.zeros((3, 4), np.int16))
    with pytest.raises(ValueError):
        L.npu_pack(np.zeros(4, np.int8))
    with pytest.raises(ValueError):
        L.npu_unpack(np.zeros((3, 32), np.int8), 33)
    with pytest.raises(ValueError):
        K.npu_linear(np.zeros(33, np.int8), np.zeros((3, 32), np.int8), np.ones(3, np.int32), 1, *K.I8)
    with pytest.raises(ValueError):
        K.npu_linear(np.zeros(3, np.int8), np.zeros((3, 32), np.int8), np.ones(3, np.int32), 63, *K.I8)


def test_npu_cycles_formula():
    assert K.npu_cycles(1, 1, 1) == 101
    assert K.npu_cycles(32, 32, 1) == 101
    assert K.npu_cycles(33, 32, 1) == 102
    assert K.npu_cycles(64, 33, 3) == 100 + 2 * 2 * 3
    assert K.npu_cycles(288, 768, 16) == 100 + 9 * 24 * 16


def test_twin_vector_and_matrix_forms():
    rng = np.random.default_rng(3)
    w, x = rand_i8(rng, (5, 40)), rand_i8(rng, (2, 40))
    mult, shift = K.layer_multipliers(10 ** rng.uniform(-3, -2, 5))
    wp = L.npu_pack(w)
    y2 = K.npu_linear(x, wp, mult, shift, *K.I8)
    assert y2.shape == (2, 5)
    for t in range(2):
        y1 = K.npu_linear(x[t], wp, mult, shift, *K.I8)
        assert y1.shape == (5,)
        np.testing.assert_array_equal(y1, y2[t])


# ---------------------------------------------------------------------------------------------- host: integers


@pytest.mark.parametrize("n_tok", [1, 3, 16])
@pytest.mark.parametrize("n_in", [1, 31, 32, 33, 64, 172])
def test_shapes(lib, n_in, n_tok):
    for n_out in (1, 2, 8, 31, 32, 33, 70):
        for bits in (8, 16, 32):
            rng = np.random.default_rng(n_in * 1000 + n_out * 10 + n_tok + bits)
            x, w = rand_i8(rng, (n_tok, n_in)), rand_i8(rng, (n_out, n_in))
            mult, shift = layer(rng, n_in, n_out, (n_out + bits) % 3)
            check(lib, x, w, mult, shift, bits, f"n_in={n_in} n_out={n_out} n_tok={n_tok} bits={bits}",
                  x_stride=n_in + (n_out % 5), y_stride=n_out + (bits // 8 - 1), seed=n_out)


@pytest.mark.parametrize("seed", range(60))
def test_random(lib, seed):
    rng = np.random.default_rng(10_000 + seed)
    n_in, n_out, n_tok = int(rng.integers(1, 300)), int(rng.integers(1, 100)), int(rng.integers(1, 9))
    x, w = rand_i8(rng, (n_tok, n_in)), rand_i8(rng, (n_out, n_in))
    if seed % 10 == 0:  # extreme accumulators of both signs
        x[:] = -128
        w[: n_out // 2], w[n_out // 2:] = -128, 127
    mult, shift = layer(rng, n_in, n_out, seed % 3)
    bits = (8, 16, 32)[seed % 3]
    check(lib, x, w, mult, shift, bits, f"seed={seed}", x_stride=n_in + int(rng.integers(0, 40)),
          y_stride=n_out + int(rng.integers(0, 9)), seed=seed)


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_rounding_ties_and_saturation(lib, bits):
    """n_in = 1, x = 1: acc = w = -128..127 over 256 channels, exact .5 ties of both signs, clamps at both ends."""
    w, x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1), np.ones((1, 1), np.int8)
    for mult, shift in ((1 << 30, 31), (3, 1), (1, 1), (1, 2), (5, 3), (2**31 - 1, 0), (1, 62), (2**31 - 1, 62),
                        (-(2**31), 0), (-3, 1), (1 << 20, 0)):
        check(lib, x, w, np.full(256, mult, np.int32), shift, bits, f"mult={mult} shift={shift}")
    # the products' ties, several tokens: x = +-1, +-3 against all w
    x = np.array([[1], [-1], [3], [-3]], np.int8)
    check(lib, x, w, np.full(256, 1, np.int32), 1, bits, "ties over tokens")
    # saturation: large products and multipliers
    rng = np.random.default_rng(bits)
    x, w = rand_i8(rng, (3, 100)), rand_i8(rng, (40, 100))
    check(lib, x, w, rng.integers(2**30, 2**31, 40).astype(np.int32), 10, bits, "saturating")


def test_every_shift(lib):
    for shift in range(63):
        rng = np.random.default_rng(5000 + shift)
        n_in, n_out = 37, 21
        x, w = rand_i8(rng, (2, n_in)), rand_i8(rng, (n_out, n_in))
        x[:, :5], w[:3] = -128, [[-128], [127], [0]]
        w[3, :] = 0
        w[3, 0] = 1
        mult = np.array([1, 2, 3, 5, 7, 1 << 30, 2**31 - 1] * 3, np.int32)
        mult[14:] = rng.integers(2**30, 2**31, 7)
        for bits in (8, 16, 32):
            check(lib, x, w, mult, shift, bits, f"shift={shift} bits={bits}")


def test_long_rows_extreme_accumulators(lib):
    """Accumulators up to NPU_MAX_IN * 2^14 < 2^31 of both signs: the int32 block sums never overflow."""
    for n_in in (8192, NPU_MAX_IN):
        x, w = np.full((1, n_in), -128, np.int8), np.full((4, n_in), -128, np.int8)
        w[1::2] = 127
        for top in (1e-9, 1e-3, 1.0):
            m, s = K.layer_multipliers(top * np.array([1.0, 0.5, 0.1, 0.03]))
            for bits in (8, 32):
                check(lib, x, w, m, s, bits, f"n_in={n_in} top={top}", gemv=n_in < 2**17)


def test_padding_weights_unused(lib):
    """The engine multiplies only the n_in real channels: garbage in the padding of the packed rows changes
    nothing (and x's bytes past n_in, garbage here, are never multiplied)."""
    rng = np.random.default_rng(7)
    for n_in in (1, 31, 33, 172):
        x, w = rand_i8(rng, (3, n_in)), rand_i8(rng, (9, n_in))
        mult, shift = layer(rng, n_in, 9, 0)
        wp = L.npu_pack(w)
        wp[:, n_in:] = rand_i8(rng, wp[:, n_in:].shape) | 1
        want = K.npu_linear(x, L.npu_pack(w), mult, shift, *K.I8)
        np.testing.assert_array_equal(c_npu(lib, x, None, mult, shift, 8, x_stride=wp.shape[1] + 3, wp=wp), want)


GUARD_SCRIPT = textwrap.dedent(r"""
    import ctypes, mmap, sys
    import numpy as np
    sys.path.insert(0, sys.argv[2])
    from test_npu import NpuJob, NPU_OK
    from deeploy_dsl.kernels import twins as K
    from deeploy_dsl.kernels import layout as L
    lib = ctypes.CDLL(sys.argv[1])
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    PAGE = mmap.PAGESIZE
    keep = []

    def at_page_end(a):
        '''a copy of a that ends exactly where an inaccessible page starts'''
        a = np.ascontiguousarray(a)
        pages = -(-a.nbytes // PAGE) + 1
        mm = mmap.mmap(-1, (pages + 1) * PAGE)
        base = ctypes.addressof(ctypes.c_char.from_buffer(mm))
        assert libc.mprotect(base + pages * PAGE, PAGE, 0) == 0
        view = np.frombuffer(mm, a.dtype, a.size, pages * PAGE - a.nbytes).reshape(a.shape)
        view[...] = a
        keep.append(mm)
        return view

    rng = np.random.default_rng(1)
    n = 0
    for n_in in (1, 31, 32, 33, 172):
        for n_out in (1, 33):
            for bits, dt, rg in ((8, np.int8, K.I8), (16, np.int16, K.I16), (32, np.int32, K.I32)):
                n_tok = 3
                x = rng.integers(-128, 128, (n_tok, n_in), dtype=np.int8)
                w = rng.integers(-128, 128, (n_out, n_in), dtype=np.int8)
                mult, shift = K.layer_multipliers(10 ** rng.uniform(-4, -2, n_out))
                # strides: only the last row of x and y ends at the guard; the stride gap of earlier rows is not
                # part of the buffer's end, so x_stride = n_in + 5 rows end with 5 bytes and the last row with none
                xs = n_in + 5
                xb = np.zeros(n_tok * xs - 5, np.int8)
                for t in range(n_tok):
                    xb[t * xs: t * xs + n_in] = x[t]
                xg, wg, mg = at_page_end(xb), at_page_end(L.npu_pack(w)), at_page_end(mult)
                yg = at_page_end(np.zeros(n_tok * n_out, dt))
                job = NpuJob(xg.ctypes.data, wg.ctypes.data, mg.ctypes.data, yg.ctypes.data, shift, n_in, n_out,
                             n_tok, xs, n_out, bits)
                assert lib.npu_submit(ctypes.byref(job)) == NPU_OK
                assert lib.npu_wait() == NPU_OK
                want = K.npu_linear(x, L.npu_pack(w), mult, shift, *rg)
                assert (yg.reshape(n_tok, n_out) == want).all(), (n_in, n_out, bits)
                n += 1
    print("guarded jobs", n)
""")


def test_reads_and_writes_nothing_past_the_buffers(lib, tmp_path):
    """x, the packed weights, mult and y each end right before an inaccessible page: a read or write past the last
    row would fault (in a child process)."""
    so = tmp_path / "libnpu_guard.so"
    build_so(so)
    script = tmp_path / "guard.py"
    script.write_text(GUARD_SCRIPT)
    r = subprocess.run([sys.executable, str(script), str(so), str(Path(__file__).parent)], capture_output=True,
                       text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0 and "guarded jobs 30" in r.stdout, f"rc={r.returncode}\n{r.stdout}\n{r.stderr[-3000:]}"


# ---------------------------------------------------------------------------------------------- host: driver


def valid_job(n_in=40, n_out=9, n_tok=2, bits=8):
    rng = np.random.default_rng(0)
    x = rand_i8(rng, (n_tok, n_in))
    wp = L.npu_pack(rand_i8(rng, (n_out, n_in)))
    mult = np.full(n_out, 1 << 20, np.int32)
    y = np.full((n_tok, n_out), 5, DTYPES[bits])
    return dict(x=x, wp=wp, mult=mult, y=y, shift=30, n_in=n_in, n_out=n_out, n_tok=n_tok, x_stride=n_in,
                y_stride=n_out, bits=bits)


def test_error_statuses(lib):
    base = valid_job()
    y32 = np.zeros(64, np.int32)
    bad = [
        ("NULL", dict(x=None)), ("NULL", dict(wp=None)), ("NULL", dict(mult=None)), ("NULL", dict(y=None)),
        ("SIZE", dict(n_in=0)), ("SIZE", dict(n_out=0)), ("SIZE", dict(n_tok=0)), ("SIZE", dict(n_in=-3)),
        ("SIZE", dict(n_out=-1)), ("SIZE", dict(n_tok=-1)), ("SIZE", dict(n_in=NPU_MAX_IN + 1, x_stride=1 << 20)),
        ("STRIDE", dict(x_stride=39)), ("STRIDE", dict(y_stride=8)), ("STRIDE", dict(x_stride=0)),
        ("BITS", dict(bits=0)), ("BITS", dict(bits=7)), ("BITS", dict(bits=64)), ("BITS", dict(bits=-8)),
        ("SHIFT", dict(shift=-1)), ("SHIFT", dict(shift=63)), ("SHIFT", dict(shift=1 << 30)),
        ("ALIGN", dict(bits=32, y=y32[1:].view(np.int8)[1:])),  # y not 4-byte aligned for int32
        ("ALIGN", dict(mult=np.zeros(40, np.int8)[1:])),
    ]
    lib.npu_reset_counters()
    for name, change in bad:
        kw = {**base, **change}
        y = kw["y"]
        before = None if y is None else y.copy()
        job = make_job(kw["x"], kw["wp"], kw["mult"], y, kw["shift"], kw["n_in"], kw["n_out"], kw["n_tok"],
                       kw["x_stride"], kw["y_stride"], kw["bits"])
        assert lib.npu_submit(ctypes.byref(job)) == ERR[name], f"{name}: {change.keys()}"
        assert lib.npu_wait() == ERR["IDLE"], "a refused job was queued"
        if y is not None:
            np.testing.assert_array_equal(y, before, err_msg=f"{name}: y written")
    assert lib.npu_submit(None) == ERR["NULL"]
    assert counters(lib) == (0, 0, 0)


def test_queue_depth_one_and_copy_at_submit(lib):
    j = valid_job()
    job = make_job(j["x"], j["wp"], j["mult"], j["y"], j["shift"], j["n_in"], j["n_out"], j["n_tok"],
                   j["x_stride"], j["y_stride"], j["bits"])
    assert lib.npu_wait() == ERR["IDLE"]
    assert lib.npu_submit(ctypes.byref(job)) == NPU_OK
    assert lib.npu_submit(ctypes.byref(job)) == ERR["BUSY"]
    job.n_tok = 1  # the descriptor was copied at submit: this changes nothing
    j["x"][:] = 1  # the job runs in npu_wait: it sees x as it is then
    assert lib.npu_wait() == NPU_OK
    assert lib.npu_wait() == ERR["IDLE"]
    want = K.npu_linear(j["x"], j["wp"], j["mult"], j["shift"], *K.I8)
    np.testing.assert_array_equal(j["y"], want)


def test_counters(lib):
    lib.npu_reset_counters()
    assert counters(lib) == (0, 0, 0)
    rng = np.random.default_rng(11)
    jobs = macs = cycles = 0
    for n_in, n_out, n_tok in ((1, 1, 1), (31, 5, 3), (32, 32, 1), (33, 33, 16), (172, 64, 2), (64, 100, 3)):
        x, w = rand_i8(rng, (n_tok, n_in)), rand_i8(rng, (n_out, n_in))
        c_npu(lib, x, w, np.ones(n_out, np.int32), 4, 16)
        jobs, macs, cycles = jobs + 1, macs + n_in * n_out * n_tok, cycles + K.npu_cycles(n_in, n_out, n_tok)
        assert counters(lib) == (jobs, macs, cycles)
    instret = (ctypes.c_uint64 * 8).in_dll(lib, "npu_engine_instret")
    assert list(instret) == [0] * 8  # no counter on the host
    lib.npu_reset_counters()
    assert counters(lib) == (0, 0, 0)


# ---------------------------------------------------------------------------------------------- RV32 under QEMU

GCC, QEMU = "riscv64-unknown-elf-gcc", "qemu-system-riscv32"
RV_CFLAGS = ["-march=rv32imac", "-mabi=ilp32", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
             "-DPICOLIBC_INTEGER_PRINTF_SCANF"]
RV_LDFLAGS = ["--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost",
              "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x01000000",
              "-Wl,--defsym=__ram=0x81000000", "-Wl,--defsym=__ram_size=0x01000000"]
CTYPE = {8: "int8_t", 16: "int16_t", 32: "int32_t"}


def c_array(name: str, ctype: str, a, const: bool = True) -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(a).reshape(-1))
    q = "const " if const else ""
    return f"static {q}{ctype} {name}[] __attribute__((aligned(4))) = {{{vals}}};\n"


def rv32_jobs():
    """(x [n_tok, x_stride] buffer, x, W, mult, shift, bits, x_stride, y_stride) of the RV32 program's jobs."""
    rng = np.random.default_rng(2024)
    out = []
    for n_in, n_out, n_tok, bits, kind in ((1, 3, 1, 8, 0), (31, 8, 3, 16, 1), (33, 40, 2, 8, 2), (64, 64, 1, 8, 0),
                                           (172, 33, 3, 32, 1), (96, 17, 16, 16, 0)):
        x, w = rand_i8(rng, (n_tok, n_in)), rand_i8(rng, (n_out, n_in))
        if kind == 2:
            x[0], w[0] = -128, -128
        mult, shift = layer(rng, n_in, n_out, kind)
        xs, ys = n_in + int(rng.integers(0, 5)), n_out + int(rng.integers(0, 3))
        xb = rand_i8(rng, (n_tok, xs))
        xb[:, :n_in] = x
        out.append((xb, x, w, mult, shift, bits, xs, ys))
    return out


def rv32_program(jobs) -> str:
    src = ["#include <stdint.h>\n#include <stdio.h>\n#include \"npu.h\"\n#include \"gemv.h\"\n#include \"perf.h\"\n"]
    body = []
    for k, (xb, x, w, mult, shift, bits, xs, ys) in enumerate(jobs):
        n_tok, n_in = x.shape
        n_out = w.shape[0]
        t = CTYPE[bits]
        src += [c_array(f"x{k}", "int8_t", xb), c_array(f"w{k}", "int8_t", L.npu_pack(w)),
                c_array(f"wb{k}", "int8_t", L.block_rows(w)), c_array(f"m{k}", "int32_t", mult),
                c_array(f"s{k}", "uint8_t", np.full(n_out, shift)),
                f"static {t} y{k}[{n_tok * ys}] __attribute__((aligned(4)));\n",
                f"static {t} g{k}[{n_out}] __attribute__((aligned(4)));\n"]
        body.append(f"""
    {{
        npu_job j = {{x{k}, w{k}, m{k}, y{k}, {shift}, {n_in}, {n_out}, {n_tok}, {xs}, {ys}, {bits}}};
        uint64_t e0 = npu_engine_instret[0], t0 = dpl_instret();
        int s = npu_submit(&j);
        int r = npu_wait();
        uint64_t t1 = dpl_instret();
        printf("status {k} %d %d\\n", s, r);
        printf("instret {k} %lu %lu\\n", (unsigned long)(t1 - t0), (unsigned long)(npu_engine_instret[0] - e0));
        printf("y {k}");
        for (int i = 0; i < {n_tok * ys}; i++) {{
            if (i % {ys} < {n_out}) printf(" %ld", (long)y{k}[i]);
        }}
        printf("\\n");
        printf("gemv {k}");
        for (int t = 0; t < {n_tok}; t++) {{
            gemv_i{bits}(g{k}, x{k} + t * {xs}, wb{k}, m{k}, s{k}, {n_in}, {n_out});
            for (int i = 0; i < {n_out}; i++) printf(" %ld", (long)g{k}[i]);
        }}
        printf("\\n");
    }}""")
    errors = """
    {
        npu_job j = {x0, w0, m0, y0, 70, 1, 3, 1, 1, 3, 8};
        printf("err %d", npu_submit(&j));
        j.shift = 4; j.out_bits = 12; printf(" %d", npu_submit(&j));
        j.out_bits = 8; j.x_stride = 0; printf(" %d", npu_submit(&j));
        j.x_stride = 1; j.n_tok = 0; printf(" %d", npu_submit(&j));
        j.n_tok = 1; j.w = 0; printf(" %d", npu_submit(&j));
        printf(" %d\\n", npu_wait());
    }"""
    tail = ('    printf("counters %lu %lu %lu\\n", (unsigned long)npu_jobs, (unsigned long)npu_macs, '
            '(unsigned long)npu_cycles);\n    return 0;\n}\n')
    return "".join(src) + "int main(void) {\n    npu_reset_counters();" + "".join(body) + errors + "\n" + tail


def test_rv32_under_qemu(tmp_path):
    missing = [t for t in (GCC, QEMU) if shutil.which(t) is None]
    if missing:
        pytest.skip(f"needs {', '.join(missing)} (Debian: apt-get install -y gcc-riscv64-unknown-elf "
                    "picolibc-riscv64-unknown-elf qemu-system-misc)")
    jobs = rv32_jobs()
    prog = tmp_path / "npu_main.c"
    prog.write_text(rv32_program(jobs))
    elf = tmp_path / "npu.elf"
    cmd = [GCC, *RV_CFLAGS, *RV_LDFLAGS, f"-I{KDIR}", "-o", str(elf), str(prog), str(SRC), str(KDIR / "gemv.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    if r.returncode != 0 and "picolibc.specs" in r.stderr:
        pytest.skip("picolibc for riscv64-unknown-elf-gcc is missing")
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    qemu = [QEMU, "-machine", "virt", "-bios", "none", "-nographic", "-monitor", "none", "-icount", "shift=0",
            "-semihosting-config", "enable=on,target=native", "-kernel", str(elf)]
    r = subprocess.run(qemu, capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout + r.stderr  # picolibc's semihosted stdout comes out on QEMU's stderr
    lines = {tuple(ln.split()[:2]): [int(v) for v in ln.split()[2:]] for ln in out.splitlines()
             if ln.split() and ln.split()[0] in ("status", "instret", "y", "gemv")}
    macs = cycles = 0
    for k, (xb, x, w, mult, shift, bits, xs, ys) in enumerate(jobs):
        n_tok, n_in = x.shape
        n_out = w.shape[0]
        assert lines[("status", str(k))] == [NPU_OK, NPU_OK]
        want = K.npu_linear(x, L.npu_pack(w), mult, shift, *RANGES[bits])
        np.testing.assert_array_equal(np.array(lines[("y", str(k))]).reshape(n_tok, n_out), want, err_msg=f"job {k}")
        np.testing.assert_array_equal(np.array(lines[("gemv", str(k))]).reshape(n_tok, n_out), want,
                                      err_msg=f"gemv job {k}")
        total, engine = lines[("instret", str(k))]
        # the engine's work (>= 1 instruction per MAC) is counted as its own; what stays with the core is the
        # driver's: validation, the descriptor copy, the calls
        assert engine >= n_in * n_out * n_tok, (k, engine)
        assert 0 < total - engine < 200, (k, total, engine)
        macs += n_in * n_out * n_tok
        cycles += K.npu_cycles(n_in, n_out, n_tok)
    err = next(ln for ln in out.splitlines() if ln.startswith("err"))
    assert [int(v) for v in err.split()[1:]] == [ERR["SHIFT"], ERR["BITS"], ERR["STRIDE"], ERR["SIZE"], ERR["NULL"],
                                                  ERR["IDLE"]]
    cnt = next(ln for ln in out.splitlines() if ln.startswith("counters"))
    assert [int(v) for v in cnt.split()[1:]] == [len(jobs), macs, cycles]
