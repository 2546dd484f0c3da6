"""The C kernels in kernels_c/ compute exactly the integers of their numpy twins in deeploy_dsl/kernels/twins.py."""
from __future__ import annotations

import ctypes
import math
import os
import re
import shutil
import subprocess
import sys
from fractions import Fraction
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from attention_cases import random_attention_k16, random_rope_i16, rope_tables  # noqa: E402
from attention_cases import SCORE_FORMS, WIDE_ATTENTION, extremes, rand_width, random_attention_wide  # noqa: E402
from attention_cases import (ATTN_EDGES, CTX, TILED_POS, TILED_SHAPES, TILED_T, attention_case,  # noqa: E402
                             attention_edge, attn_out_edges, attn_out_input, check_edge, exp_av_extremes,
                             exp_av_input, exp_av_out_params, exp_cut_edges, last_head_exps, prm_array,
                             random_attention, table_bits, tile_case,
                             tiled_case, twin_attention_tiled, twin_exp_av, twin_exps, twin_scores_max, want_exp_av)

KDIR = ROOT / "kernels_c"
HEADER = KDIR / "deeploy_kernels.h"
KERNEL_SOURCES = ["linear.c", "rmsnorm.c", "rope.c", "attention.c", "swiglu.c", "residual_add.c", "embed.c", "argmax.c",
                  "dma.c"]
HEADERS = [HEADER.name, "dma.h"]
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
# e.g. DEEPLOY_KERNELS_CFLAGS="-fsanitize=undefined -fno-sanitize-recover=all" runs every case under UBSan
EXTRA_CFLAGS = os.environ.get("DEEPLOY_KERNELS_CFLAGS", "").split()
LIBGCC_AND_STRING = {"memcpy", "memset", "memmove", "__divdi3", "__udivdi3", "__moddi3", "__umoddi3"}

I8, I16, I32 = K.I8, K.I16, K.I32


class DmaJob(ctypes.Structure):
    _fields_ = [("pending", ctypes.c_uint32)]


# ---------------------------------------------------------------------------------------------- build


@pytest.fixture(scope="session")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("kernels_c") / "libdeeploy_kernels.so"
    srcs = [str(KDIR / f) for f in KERNEL_SOURCES]
    cmd = [CC, *CFLAGS, *EXTRA_CFLAGS, "-shared", "-fPIC", "-o", str(out), *srcs]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    so = ctypes.CDLL(str(out))

    def arr(dtype):
        return np.ctypeslib.ndpointer(dtype=dtype, flags="C_CONTIGUOUS")

    i8, i16, i32, u8, u16 = arr(np.int8), arr(np.int16), arr(np.int32), arr(np.uint8), arr(np.uint16)
    c32, c64 = ctypes.c_int32, ctypes.c_int64
    for name, y in (("linear_i8", i8), ("linear_i16", i16), ("linear_i32", i32)):
        getattr(so, name).argtypes = [y, i8, i8, i32, u8, c32, c32]
        getattr(so, name).restype = None
    so.rmsnorm_i8.argtypes = [i8, i16, i32, c32, c64, c32]
    so.rmsnorm_i8_part.argtypes = [i8, i16, i32, c32, c64, c32, c32, c32]
    so.rope_i8.argtypes = [i8, i8, i16, i16, c32, c32]
    so.rope_i16.argtypes = [i16, i16, i16, i16, c32, c32]
    so.rope_q12.argtypes = [i16, i16, i16, i16, c32, c32]
    for name, (qb, kb) in WIDE_ATTENTION.items():
        getattr(so, name).argtypes = [i8, i16, i16 if kb == 16 else i8, i8, i32] + [c32] * 9 + [u16]
    for name, (qb, kb) in SCORE_FORMS.items():
        getattr(so, name).argtypes = [i32, c32, i32, i8 if qb == 8 else i16, i8 if kb == 8 else i16] + [c32] * 5
    so.attention_k16.argtypes = [i8, i8, i16, i8, i32] + [c32] * 9 + [u16]
    so.attention_i8.argtypes = [i8, i8, i8, i8, i32] + [c32] * 9 + [u16]
    so.swiglu_i8.argtypes = [i8, i8, i8, i16, c32, c32, c32]
    so.swiglu_dyn_i8.argtypes = [i8, u8, i32, i8, i8, i16, c32, c32]
    so.residual_add_i16.argtypes = [i16, i16, i16, c32]
    so.embed_i16.argtypes = [i16, i8, i32, u8, c32]
    so.attn_exp_av_i8.argtypes = [i32, i32, i32, c32, i32, i8] + [c32] * 5 + [i32, u16, ctypes.c_void_p]
    so.attn_out_i8.argtypes = [i8, i32, i32, c32, c32, c32, c32, c32]
    so.zero_i32.argtypes = [i32, c32]
    job_p, vp, u32 = ctypes.POINTER(DmaJob), ctypes.c_void_p, ctypes.c_uint32
    so.dma_reset_counters.argtypes = []
    so.dma_start.argtypes = [job_p, vp, vp, u32]
    so.dma_start_2d.argtypes = [job_p, vp, vp, u32, u32, u32, u32]
    so.dma_wait.argtypes = [job_p]
    so.argmax_i32.argtypes = [i32, c32]
    so.argmax_i32.restype = c32
    for name in ("rope_i16", "rope_q12", *WIDE_ATTENTION, *SCORE_FORMS, "attention_k16", "rmsnorm_i8", "rope_i8", "attention_i8", "swiglu_i8", "swiglu_dyn_i8", "residual_add_i16", "embed_i16", "attn_scores_i8",
                 "attn_exp_av_i8", "attn_out_i8", "zero_i32", "dma_reset_counters", "dma_start",
                 "dma_start_2d", "dma_wait"):
        getattr(so, name).restype = None
    return so


def test_strict_warnings_each_file_standalone(tmp_path):
    """Each kernel file compiles alone, pedantic and conversion-clean, and calls nothing outside libgcc/string.h."""
    strict = CFLAGS + ["-pedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow", "-c"]
    for f in KERNEL_SOURCES:
        obj = tmp_path / (f + ".o")
        r = subprocess.run([CC, *strict, "-o", str(obj), str(KDIR / f)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, f"{f}:\n{r.stderr}"
        if shutil.which("nm"):
            undef = subprocess.run(["nm", "-u", str(obj)], capture_output=True, text=True, check=True).stdout.split()
            assert set(undef[1::2]) <= LIBGCC_AND_STRING, f"{f} references {undef}"


def test_compiles_for_32_bit(tmp_path):
    """-m32 stands in for RV32 (int/long 32-bit); freestanding so no 32-bit libc headers are needed."""
    probe = tmp_path / "probe.c"
    probe.write_text("#include <stdint.h>\nint32_t f(void) { return 0; }\n")
    if subprocess.run([CC, "-m32", "-ffreestanding", "-c", "-o", str(tmp_path / "p.o"), str(probe)],
                      capture_output=True).returncode != 0:
        pytest.skip("compiler cannot target -m32")
    flags = CFLAGS + ["-m32", "-ffreestanding", "-pedantic", "-Wconversion", "-Wsign-conversion", "-c"]
    for f in KERNEL_SOURCES:
        r = subprocess.run([CC, *flags, "-o", str(tmp_path / (f + ".o")), str(KDIR / f)], capture_output=True, text=True)
        assert r.returncode == 0 and not r.stderr, f"{f}:\n{r.stderr}"


def _strip_comments(src: str) -> str:
    return re.sub(r"//[^\n]*", "", re.sub(r"/\*.*?\*/", "", src, flags=re.S))


def test_no_float_no_malloc_no_libc():
    for f in KERNEL_SOURCES + HEADERS:
        code = _strip_comments((KDIR / f).read_text())
        bad = re.findall(r"\b(float|double|malloc|calloc|realloc|free|long\s+double)\b", code)
        assert not bad, f"{f} uses {bad}"
        for inc in re.findall(r"#\s*include\s*([<\"][^>\"]+[>\"])", code):
            assert inc in ("<stdint.h>", "<stddef.h>", "<string.h>", '"deeploy_kernels.h"', '"dma.h"', '"perf.h"'), f"{f} includes {inc}"


# --------------------------------------------------------------------------- twins checked by hand


def _round_half_away(q: Fraction) -> int:
    n = math.floor(abs(q) + Fraction(1, 2))
    return n if q >= 0 else -n


def test_requant_by_hand():
    m, s = K.quantize_multiplier(0.5)
    assert (m, s) == (1 << 30, 31)
    assert K.requant(3, m, s, *I8) == 2  # 1.5 rounds away from zero
    assert K.requant(-3, m, s, *I8) == -2
    assert K.requant(1, m, s, *I8) == 1 and K.requant(-1, m, s, *I8) == -1
    assert K.requant(2, m, s, *I8) == 1 and K.requant(-2, m, s, *I8) == -1
    assert K.requant(-5, 1, 2, *I8) == -1 and K.requant(-6, 1, 2, *I8) == -2 and K.requant(-7, 1, 2, *I8) == -2
    assert K.requant(1000, m, s, *I8) == 127 and K.requant(-1000, m, s, *I8) == -128
    assert K.requant(-7, 3, 0, *I8) == -21  # shift 0: no rounding
    assert list(K.rshift_round(np.array([-3, -2, -1, 0, 1, 2, 3]), 1)) == [-2, -1, -1, 0, 1, 1, 2]


def test_requant_matches_exact_rationals():
    rng = np.random.default_rng(1)
    acc = rng.integers(-(2**31), 2**31, 2000)
    mult = rng.integers(0, 2**31, 2000)
    shift = rng.integers(0, 63, 2000)
    acc[:10], mult[:10], shift[:10] = [-3, 3, -1, 1, -5, 5, 0, -(2**31), 2**31 - 1, -6], 1, 1
    got = K.requant(acc, mult, shift, -(2**62), 2**62)
    want = [_round_half_away(Fraction(int(a) * int(m), 2 ** int(s))) for a, m, s in zip(acc, mult, shift)]
    np.testing.assert_array_equal(got, want)


def test_quantize_multiplier_by_hand():
    assert K.quantize_multiplier(1.0) == (1 << 30, 30)
    assert K.quantize_multiplier(0.75) == (3 << 29, 31)
    assert K.quantize_multiplier(2.0**-40) == (1 << 22, 62)  # shift 70 clamped to 62: 8 mantissa bits dropped
    assert K.quantize_multiplier(1 - 2**-40) == (1 << 30, 30)  # mantissa rounds up to 2^31: renormalised
    assert K.quantize_multiplier(2.0**30) == (1 << 30, 0)
    for bad in (0.0, -1.0, math.inf, math.nan, 2.0**31):
        with pytest.raises(ValueError):
            K.quantize_multiplier(bad)


def test_quantize_multiplier_precision():
    for real in 10 ** np.random.default_rng(2).uniform(-9, 9, 3000):
        mult, shift = K.quantize_multiplier(float(real))
        assert 0 <= mult < 2**31 and 0 <= shift <= 62
        if shift < 62:
            assert 2**30 <= mult and abs(Fraction(mult, 2**shift) - Fraction(real)) <= Fraction(real) / 2**31
        else:  # tiny factor: mantissa bits given up, still the nearest multiple of 2^-62
            assert abs(Fraction(mult, 2**62) - Fraction(real)) <= Fraction(1, 2**63)


# ----------------------------------------------------------------------------- C versus numpy twins


def qm_arrays(reals):
    ms = [K.quantize_multiplier(float(r)) for r in reals]
    return np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.uint8)


def wide_reals(rng, n):
    return 10 ** rng.uniform(-9, 3, n)


def tie_heavy(rng, n):
    """Tiny (mult, shift) pairs: acc * mult / 2^shift lands exactly on .5 often, of both signs."""
    return rng.integers(1, 8, n).astype(np.int32), rng.integers(1, 4, n).astype(np.uint8)


def rand_i8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def c_linear(lib, bits, x, w, mult, shift):
    y = np.zeros(w.shape[0], {8: np.int8, 16: np.int16, 32: np.int32}[bits])
    getattr(lib, f"linear_i{bits}")(y, x, w, mult, shift, w.shape[1], w.shape[0])
    return y


def layer_requant(rng, reals, n):
    """(mult [n], shift) of a linear layer: kernels.layer_multipliers, or tie-heavy tiny mults with one shift"""
    if reals is None:
        return rng.integers(1, 8, n).astype(np.int32), int(rng.integers(1, 4))
    return K.layer_multipliers(reals)


@pytest.mark.parametrize("seed", range(100))
def test_linear(lib, seed):
    """linear_iN: one shift per call (shift[0]; the other entries are garbage here), per-row mult, half up."""
    rng = np.random.default_rng(seed)
    n_in, n_out = int(rng.integers(1, 300)), int(rng.integers(1, 40))
    x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
    if seed % 10 == 0:  # extreme accumulators of both signs
        x[:] = -128
        w[: n_out // 2], w[n_out // 2:] = -128, 127
    reals = (10 ** rng.uniform(-4, 0, n_out) * 10 ** rng.uniform(-5, 3) if seed % 2
             else 10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in)))
    mult, shift = layer_requant(rng, reals if seed % 5 != 2 else None, n_out)
    shifts = rng.integers(0, 256, n_out).astype(np.uint8)
    shifts[0] = shift
    for bits, rng_ in ((8, I8), (16, I16), (32, I32)):
        np.testing.assert_array_equal(c_linear(lib, bits, x, w, mult, shifts), K.linear(x, w, mult, shift, *rng_))


def test_linear_rounding_and_saturation_edges(lib):
    acc = np.arange(-128, 128, dtype=np.int8)  # n_in = 1, x = 1: acc = w
    w, x = acc.reshape(-1, 1), np.ones(1, np.int8)
    for mult, shift in ((1 << 30, 31), (3, 1), (1, 1), (1, 2), (5, 3), (2**31 - 1, 0), (1, 62), (2**31 - 1, 62)):
        m, s = np.full(256, mult, np.int32), np.full(256, shift, np.uint8)
        for bits, r in ((8, I8), (16, I16), (32, I32)):
            np.testing.assert_array_equal(c_linear(lib, bits, x, w, m, s), K.linear(x, w, m, shift, *r))
    m, s = np.full(256, 1 << 30, np.int32), np.full(256, 31, np.uint8)
    want = [math.floor(Fraction(int(a), 2) + Fraction(1, 2)) for a in acc]  # half up: -1.5 -> -1
    np.testing.assert_array_equal(c_linear(lib, 8, x, w, m, s), want)


def test_requant_half_up_matches_exact_rationals():
    rng = np.random.default_rng(11)
    acc = rng.integers(-(2**31), 2**31, 2000)
    mult = rng.integers(-(2**31), 2**31, 2000)
    shift = rng.integers(0, 63, 2000)
    acc[:10], mult[:10], shift[:10] = [-3, 3, -1, 1, -5, 5, 0, -(2**31), 2**31 - 1, -6], 1, 1
    acc[10], mult[10], shift[10] = -(2**31), -(2**31), 62  # the largest product, 2^62
    got = K.requant_half_up(acc, mult, shift, -(2**62), 2**62)
    want = [math.floor(Fraction(int(a) * int(m), 2 ** int(s)) + Fraction(1, 2)) for a, m, s in zip(acc, mult, shift)]
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", range(100))
def test_rmsnorm(lib, seed):
    rng = np.random.default_rng(seed)
    dim = int(rng.choice([1, 7, 64, 288, 512, 2048]))
    mag = 10 ** rng.uniform(0, math.log10(32768))
    x = np.clip(np.round(rng.standard_normal(dim) * mag), *I16).astype(np.int16)
    if seed % 7 == 0:
        x = rng.integers(-32768, 32768, dim, dtype=np.int16)
    gain = rng.integers(-(2**15) if seed % 2 else 0, 2**15 + 1, dim).astype(np.int32)  # norm weights can be < 0
    gain_shift = int(rng.integers(0, 25))
    eps_q = int(rng.integers(0, 10**8 + 1)) if seed % 3 else 0
    y = np.zeros(dim, np.int8)
    lib.rmsnorm_i8(y, x, gain, gain_shift, eps_q, dim)
    np.testing.assert_array_equal(y, K.rmsnorm(x, gain, gain_shift, eps_q))


@pytest.mark.parametrize("seed", range(40))
def test_rmsnorm_part_writes_only_its_share(lib, seed):
    """A core's share: the rms of the whole row, outputs only in [lo, hi); shares tile the row exactly."""
    rng = np.random.default_rng(seed)
    dim = int(rng.choice([1, 7, 64, 172]))
    x = rng.integers(-32768, 32768, dim, dtype=np.int16)
    gain = rng.integers(-(2**15), 2**15 + 1, dim).astype(np.int32)
    gain_shift, eps_q = int(rng.integers(0, 25)), int(rng.integers(0, 10**8 + 1))
    want = K.rmsnorm(x, gain, gain_shift, eps_q)
    cuts = np.sort(rng.integers(0, dim + 1, int(rng.integers(0, 4))))
    edges = [0, *cuts.tolist(), dim]
    y = np.full(dim, 77, np.int8)
    for lo, hi in zip(edges, edges[1:]):
        before = y.copy()
        lib.rmsnorm_i8_part(y, x, gain, gain_shift, eps_q, dim, lo, hi)
        outside = np.r_[0:lo, hi:dim]
        np.testing.assert_array_equal(y[outside], before[outside])
        np.testing.assert_array_equal(y[lo:hi], want[lo:hi])
    np.testing.assert_array_equal(y, want)


@pytest.mark.parametrize("case", ["zero", "zero_eps", "tiny", "ones", "full_pos", "full_neg", "sat", "shift31",
                                  "eps_huge"])
def test_rmsnorm_edges(lib, case):
    dim = 512
    x, gain, gain_shift, eps_q = np.zeros(dim, np.int16), np.full(dim, 1 << 12, np.int32), 12, 0
    if case == "zero_eps":
        eps_q = 10**8
    elif case == "tiny":  # r = isqrt(2^16/512) = 11 < 256: the clamp decides
        x[3] = 1
    elif case == "ones":  # r = 256 exactly
        x[:] = np.where(np.arange(dim) % 2, 1, -1)
    elif case in ("full_pos", "full_neg"):
        x[:] = 32767 if case == "full_pos" else -32768
    elif case == "sat":  # large gain, one outlier: saturate at both ends
        x[:] = np.where(np.arange(dim) % 2, 300, -300)
        x[0] = -32768
        gain[:], gain_shift = 1 << 15, 0
    elif case == "shift31":
        x[:], gain[:], gain_shift = -32768, 1 << 15, 31
    elif case == "eps_huge":  # isqrt argument >= 2^48 and r >= 2^24: the C's 64-bit fallbacks
        x[:], eps_q = 1000, (1 << 52) + 12345
    y = np.zeros(dim, np.int8)
    lib.rmsnorm_i8(y, x, gain, gain_shift, eps_q, dim)
    want = K.rmsnorm(x, gain, gain_shift, eps_q)
    np.testing.assert_array_equal(y, want)
    if case.startswith("zero") or case == "tiny":
        assert not want[4:].any()
    if case == "sat":
        assert want.min() == -128 and want.max() == 127


@pytest.mark.parametrize("seed", range(100))
def test_rope(lib, seed):
    rng = np.random.default_rng(seed)
    head_size = int(rng.choice([2, 8, 16, 32, 64]))
    n = head_size * int(rng.integers(1, 9))
    ctx = 512
    if seed % 4:
        cos_t, sin_t = rope_tables(ctx, head_size)
    else:  # arbitrary Q14 entries, including +-1.0 on both axes: the sums saturate
        cos_t, sin_t = (rng.integers(-(2**14), 2**14 + 1, (ctx, head_size // 2), dtype=np.int16) for _ in range(2))
        cos_t[0], sin_t[0] = 2**14, 2**14
        cos_t[1], sin_t[1] = -(2**14), 2**14
    if seed % 4 == 1:  # multiples of 2^12: the Q14 products land exactly on .5 often
        cos_t, sin_t = (rng.integers(-4, 5, (ctx, head_size // 2)).astype(np.int16) * 4096 for _ in range(2))
    pos = int(rng.integers(0, ctx)) if seed % 5 else int(rng.integers(0, 2))
    x = rand_i8(rng, n)
    if seed % 6 == 0:
        x[::2], x[1::2] = 127, -128
    want = K.rope(x, pos, cos_t, sin_t, head_size)
    y = np.zeros(n, np.int8)
    lib.rope_i8(y, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)
    np.testing.assert_array_equal(y, want)
    lib.rope_i8(x, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)  # in place
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("seed", range(60))
def test_rope_i16(lib, seed):
    """rope_i16 (the int16 keys) against kernels.rope_i16: random int16 values, the extremes (products of 2^29 summed:
    2^30, no overflow) and tables that saturate both ways; in place too."""
    x, pos, cos_t, sin_t, head_size = random_rope_i16(seed)
    n = x.size
    want = K.rope_i16(x, pos, cos_t, sin_t, head_size)
    if seed % 12 == 0 and pos < 2:
        assert want.min() == -32768 or want.max() == 32767
    y = np.zeros(n, np.int16)
    lib.rope_i16(y, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)
    np.testing.assert_array_equal(y, want)
    lib.rope_i16(x, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("seed", range(60))
def test_attention_k16(lib, seed):
    """attention_k16 (int16 K cache, scores (q . k + 128) >> 8) against kernels.attention on the int16 cache."""
    c = random_attention_k16(seed)
    want = K.attention(**c)
    scratch = np.full(c["pos"] + 1 + 8, -12345, np.int32)
    out = np.zeros(c["n_heads"] * c["head_size"], np.int8)
    lib.attention_k16(out, c["q"], c["k_cache"], c["v_cache"], scratch, c["pos"], c["n_heads"], c["n_kv_heads"],
                      c["head_size"], c["score_mult"], c["score_shift"], c["score_cut"], c["out_mult"],
                      c["out_shift"], c["table"])
    np.testing.assert_array_equal(out, want)
    assert (scratch[c["pos"] + 1:] == -12345).all(), "scratch written past pos"


def test_attn_scores_k16_rounds_half_up():
    """The twin's int16-key scores: floor(q . k / 2^8 + 1/2), ties up, both signs."""
    q = np.array([1], np.int8)
    k = np.array([[128], [-128], [384], [-384], [127], [-129]], np.int16)
    assert K.attn_scores(q, k).ravel().tolist() == [1, 0, 2, -1, 0, -1]


def c_attention(lib, c, guard=8):
    """attention_i8 on the kwargs c of kernels.attention: (out, scratch with `guard` poisoned entries past pos)."""
    scratch = np.full(c["pos"] + 1 + guard, -12345, np.int32)
    out = np.zeros(c["n_heads"] * c["head_size"], np.int8)
    lib.attention_i8(out, c["q"], c["k_cache"], c["v_cache"], scratch, c["pos"], c["n_heads"], c["n_kv_heads"],
                     c["head_size"], c["score_mult"], c["score_shift"], c["score_cut"], c["out_mult"], c["out_shift"],
                     c["table"])
    return out, scratch


def check_attention(lib, c):
    want = K.attention(**c)
    out, scratch = c_attention(lib, c)
    np.testing.assert_array_equal(out, want)
    n = c["pos"] + 1
    assert (scratch[n:] == -12345).all(), "scratch written past pos"
    # scratch ends holding the last head's exps: check the integer softmax on its own
    np.testing.assert_array_equal(scratch[:n], last_head_exps(c)[0])
    return want


@pytest.mark.parametrize("seed", range(120))
def test_attention(lib, seed):
    check_attention(lib, random_attention(seed))


@pytest.mark.parametrize("case", list(ATTN_EDGES))
def test_attention_edges(lib, case):
    c = attention_edge(case)
    check_edge(case, c, check_attention(lib, c))


# ------------------------------------------------------- the integer softmax against its meaning (numpy only)


def float_softmax(scores, real):
    """softmax of scores * scale, real = scale * log2(e) * 2^10 (the score multiplier's real value)."""
    x = (np.asarray(scores, np.float64) - np.max(scores)) * real / K.EXP_ONE * math.log(2)
    e = np.exp(x)
    return e / e.sum()


def test_exp2_table_and_exp_bits():
    for bits in (8, 12, 15):
        t = K.exp2_table(bits)
        assert t.dtype == np.uint16 and t.size == K.EXP_ONE and t[0] == 1 << bits and table_bits(t) == bits
        assert (np.diff(t.astype(np.int64)) <= 0).all() and t[-1] == round(2 ** (bits - 1 + 1 / K.EXP_ONE))
    for ctx in (1, 2, 256, 512, 513, 1024, 4096, 1 << 16):
        bits = K.exp_bits(ctx)
        assert bits <= 15 and ctx * (128 << bits) <= 2**31  # acc = sum_t e_t v_t fits int32 over the context
        assert bits == 15 or ctx * (128 << (bits + 1)) > 2**31
    assert K.exp_bits(512) == 15 and K.exp_bits(4096) == 12


def test_score_multiplier():
    """d <= cut: d * mult + 2^(shift-1) fits 32 bits and z < 16 * 2^9; d = cut + 1: z >= 16 * 2^9."""
    rng = np.random.default_rng(3)
    top = 2.0 ** (31 - K.EXP_SHIFT_MAX)  # the first real whose multiplier does not fit
    for real in [2.0**-22, 2.0**-18, 1.0, 2.0**8, top - 1, *top * 10 ** rng.uniform(-10, -0.01, 500)]:
        mult, shift, cut = K.score_multiplier(float(real))
        assert shift == K.EXP_SHIFT_MAX and 1 <= mult < 2**31 and cut >= 0
        assert abs(mult - real * 2**shift) <= 0.5 or mult == 1
        z = lambda d: (d * mult + (1 << (shift - 1))) >> shift  # noqa: E731
        assert cut * mult + (1 << (shift - 1)) < 2**32 and z(cut) < 16 << K.EXP_FRAC
        assert z(cut + 1) >= 16 << K.EXP_FRAC or cut == 2**31 - 1  # clamped: distances stay below 2^31
    for bad in (0.0, -1.0, math.inf, math.nan, top):
        with pytest.raises(ValueError):
            K.score_multiplier(bad)


@pytest.mark.parametrize("seed", range(20))
def test_softmax_exp_approximates_float_softmax(seed):
    rng = np.random.default_rng(seed)
    n, hs = int(rng.integers(1, 513)), int(rng.choice([8, 16, 64]))
    scores = rng.integers(-hs * 2**14, hs * 2**14 + 1, n)
    scale = 10 ** rng.uniform(-1, 1.5) / (np.ptp(scores) + 1)  # max - min spans 0.1 .. 30 nats
    real = scale * math.log2(math.e) * K.EXP_ONE
    m, s, cut = K.score_multiplier(real)
    want = float_softmax(scores, m / 2**s)
    for bits, tol in ((15, 2e-3), (K.exp_bits(4096), 1e-2)):
        e = K.softmax_exp(scores, m, s, K.exp2_table(bits))
        assert e.max() == 1 << bits
        assert np.abs(e / e.sum() - want).max() < tol


@pytest.mark.parametrize("seed", range(10))
def test_attention_approximates_float_attention(seed):
    """K.attention = round(softmax(q . k * scale) . v * s_v / s_att), up to the integer softmax's error."""
    rng = np.random.default_rng(seed)
    c = attention_case(rng, 4, 16, int(rng.integers(0, 512)), n_heads=8)
    om, os_ = K.quantize_multiplier(10 ** rng.uniform(-1, 0))  # v * s_v / s_att stays within int8
    c["out_mult"], c["out_shift"] = om, os_ + 15
    got = K.attention(**c)
    n, hs, g = c["pos"] + 1, c["head_size"], 2
    q = c["q"].reshape(8, hs).astype(np.float64)
    want = []
    for h in range(8):
        kh = h // g
        k, v = (c[x][:n, kh * hs:(kh + 1) * hs].astype(np.float64) for x in ("k_cache", "v_cache"))
        p = float_softmax(k @ q[h], c["score_mult"] / 2 ** c["score_shift"])
        want.append(p @ v * om / 2**os_)
    assert np.abs(got - np.concatenate(want)).max() <= 1.0


# -------------------------------------------------------------- tiled attention: pieces and composition


def _kv_rows(cache_flat, kv_dim, kh, hs, t0, n_t, tile):
    """(pointer view, stride, rows [n_t, hs]) for positions t0.. of kv head kh: straight from the cache or a dense tile."""
    rows = cache_flat.reshape(-1, kv_dim)[t0:t0 + n_t, kh * hs:(kh + 1) * hs]
    if tile:
        return np.ascontiguousarray(rows).reshape(-1), hs, rows
    return cache_flat[t0 * kv_dim + kh * hs:], kv_dim, rows


@pytest.mark.parametrize("seed", range(60))
@pytest.mark.parametrize("kernel", list(SCORE_FORMS))
def test_attn_scores(lib, seed, kernel):
    """attn_scores_i8 and its wider forms (int16 keys, int12 or int16 queries: the scores / 2^score_shift, rounded half
    up) against the twin and the definition: the two-head and one-head hs 8 paths, the generic one, tiles and strides,
    the running max, the largest products of both signs."""
    qb, kb = SCORE_FORMS[kernel]
    shift = K.score_shift(qb, kb)
    rng = np.random.default_rng(seed + 700 * list(SCORE_FORMS).index(kernel))
    g, hs, n_kv, n_t, t0, stride, kh, tile = tile_case(rng, seed)
    hs = min(hs, K.qk_head_size_max(qb, kb))
    q, cache = rand_width(rng, qb, g * hs), rand_width(rng, kb, 80 * n_kv * hs)
    if seed % 10 == 3:  # largest products of both signs
        q[:], (cache[::2], cache[1::2]) = extremes(qb)[0], extremes(kb)
    k, k_stride, rows = _kv_rows(cache, n_kv * hs, kh, hs, t0, n_t, tile)
    scores = np.full((g, stride), -777, np.int32)
    # the max so far (t0 > 0): above, below or within this tile's scores; poison at t0 = 0
    prev = rng.integers(-(2**17), 2**17, g).astype(np.int32) if t0 else np.full(g, 2**30, np.int32)
    max_ = np.concatenate([prev, np.full(4, -555, np.int32)])
    getattr(lib, kernel)(scores, stride, max_, q, k, k_stride, t0, n_t, g, hs)
    want, want_max = twin_scores_max(q, rows, prev if t0 else None, shift)
    assert want.shape == (g, n_t)
    dots = np.array([[int(np.dot(q[h * hs:(h + 1) * hs].astype(np.int64), r)) for r in rows] for h in range(g)],
                    np.int64).reshape(g, n_t)
    np.testing.assert_array_equal(want, (dots + ((1 << shift) >> 1)) >> shift)
    np.testing.assert_array_equal(scores[:, t0:t0 + n_t], want)
    np.testing.assert_array_equal(max_[:g], want_max)
    assert (max_[g:] == -555).all(), "attn_scores wrote past g maxima"
    scores[:, t0:t0 + n_t] = -777
    assert (scores == -777).all(), "scores written outside [t0, t0 + n_t)"


def test_wide_scores_reach_the_int32_bound(lib):
    """int12 queries with int16 keys at head size 32, every product at its largest (-2047 * -32768): q . k =
    2,146,435,072, 2^20 - 1 below 2^31, and the score (+ 2^11) >> 12 = 524,032 = 32 * 2047 * 8; the other sign too."""
    hs = 32
    q = np.full(hs, -2047, np.int16)
    k = np.array([[-32768] * hs, [32767] * hs, [-32768, 32767] * (hs // 2)], np.int16)
    scores, max_ = np.zeros((1, 3), np.int32), np.zeros(1, np.int32)
    lib.attn_scores_q12k16(scores, 3, max_, q, k.reshape(-1), hs, 0, 3, 1, hs)
    assert scores.tolist() == [[524032, -524016, 8]] == K.attn_scores(q, k, 12).tolist()
    assert max_[0] == 524032


@pytest.mark.parametrize("seed", range(40))
def test_rope_q12(lib, seed):
    """rope_q12 (int16 values into int12 queries) against kernels.rope_q12: saturating to +-2047 both ways (from int16
    inputs, and from inputs within +-2047 that the rotation takes out); in place too."""
    x, pos, cos_t, sin_t, head_size = random_rope_i16(seed)
    if seed % 2:  # queries the q projection left within 12 bits: only the rotation (up to sqrt 2) takes them out
        x = np.clip(x // 16, -2047, 2047).astype(np.int16)
    n = x.size
    want = K.rope_q12(x, pos, cos_t, sin_t, head_size)
    assert want.min() >= -2047 and want.max() <= 2047
    if seed % 4 == 0:  # random_rope_i16's extremes
        assert np.abs(want).max() == 2047
    y = np.zeros(n, np.int16)
    lib.rope_q12(y, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)
    np.testing.assert_array_equal(y, want)
    lib.rope_q12(x, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), n, head_size)
    np.testing.assert_array_equal(x, want)


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("kernel", list(WIDE_ATTENTION))
def test_attention_wide_queries(lib, seed, kernel):
    """attention_q12, _q12k16, _q16 (int16 q, int8 or int16 K) against kernels.attention with their score shift."""
    c = random_attention_wide(seed, *WIDE_ATTENTION[kernel])
    want = K.attention(**c)
    scratch = np.full(c["pos"] + 1 + 8, -12345, np.int32)
    out = np.zeros(c["n_heads"] * c["head_size"], np.int8)
    getattr(lib, kernel)(out, c["q"], c["k_cache"], c["v_cache"], scratch, c["pos"], c["n_heads"], c["n_kv_heads"],
                         c["head_size"], c["score_mult"], c["score_shift"], c["score_cut"], c["out_mult"],
                         c["out_shift"], c["table"])
    np.testing.assert_array_equal(out, want)
    np.testing.assert_array_equal(scratch[:c["pos"] + 1], last_head_exps(c)[0])
    assert (scratch[c["pos"] + 1:] == -12345).all(), "scratch written past pos"


def c_exp_av(lib, scores, max_, v, tiles, acc0, sums0, p, table, o=None):
    """attn_exp_av_i8 over the tiles one after another, v read in place (v_stride = hs): (acc [g, hs], sums [g]);
    with out params o, the last tile finishes them: out [g, hs] instead."""
    g, stride = scores.shape
    hs = v.shape[1]
    acc = np.concatenate([acc0.reshape(-1), np.full(4, -777, np.int32)])
    sums = np.concatenate([sums0, np.full(4, -5, np.int32)])
    out = np.full(g * hs + 4, 99, np.int8)
    vflat = np.ascontiguousarray(v).reshape(-1)
    prm = prm_array(p, o)
    for i, (t0, n_t) in enumerate(tiles):
        last = o is not None and i + 1 == len(tiles)
        lib.attn_exp_av_i8(acc, sums, scores, stride, max_, vflat[t0 * hs:], hs, t0, n_t, g, hs, prm, table,
                           out.ctypes.data if last else None)
    assert (acc[g * hs:] == -777).all() and (sums[g:] == -5).all(), "attn_exp_av wrote past g heads"
    if o is not None:
        assert (out[g * hs:] == 99).all(), "attn_exp_av wrote past g*hs outputs"
        return out[:g * hs].reshape(g, hs)
    assert (out == 99).all(), "attn_exp_av wrote out without out"
    return acc[:g * hs].reshape(g, hs), sums[:g]


@pytest.mark.parametrize("seed", range(80))
def test_attn_exp_av(lib, seed):
    case = exp_av_input(seed)
    acc, sums = c_exp_av(lib, *case)
    want_acc, want_sums = want_exp_av(*case)
    np.testing.assert_array_equal(acc, want_acc)
    np.testing.assert_array_equal(sums, want_sums)
    scores, max_, _v, tiles, _a, _s, p, table = case
    if tiles[0][0] == 0:  # a whole row: the exps are softmax_exp's, its max weighs 2^bits
        n = tiles[-1][0] + tiles[-1][1]
        for h in range(scores.shape[0]):
            e = K.softmax_exp(scores[h, :n], p["score_mult"], p["score_shift"], table)
            assert e.max() == table[0] and want_sums[h] == e.sum()
        o = exp_av_out_params(seed, table)  # finished on the last tile: attn_out of the sums
        np.testing.assert_array_equal(c_exp_av(lib, *case, o=o),
                                      K.attn_out(want_acc, want_sums, o["out_mult"], o["out_shift"], o["bits"]))


def test_attn_exp_av_cut_edges(lib):
    """Each position's exp on its own (one-hot v: acc[t] = e_t), through the hs 8 path (v row t one-hot in dim t % 8)
    and the generic one (hs = n)."""
    for scores, n, p, table, label in exp_cut_edges():
        want = K.softmax_exp(scores[0], p["score_mult"], p["score_shift"], table)
        assert want[0] == 1 << 15 and not want[3:6].any(), label  # d = 0 weighs 2^15, d > cut 0
        np.testing.assert_array_equal(twin_exps(scores, [0], p["score_mult"], p["score_shift"], table)[0], want)
        for hs in (8, n):
            v = np.zeros((n, hs), np.int8)
            v[np.arange(n), np.arange(n) % hs] = 1
            acc, sums = c_exp_av(lib, scores, np.zeros(1, np.int32), v, [(0, n)], np.zeros((1, hs), np.int32),
                                 np.zeros(1, np.int32), p, table)
            np.testing.assert_array_equal(acc[0], want @ v.astype(np.int64), err_msg=label)
            assert sums[0] == want.sum(), label


def test_attn_exp_av_extremes(lib):
    for g, hs, scores, v, label in exp_av_extremes():
        p = dict(score_mult=1 << 18, score_shift=19, score_cut=2**13 - 1)  # z = d / 2
        table = K.exp2_table(15)
        acc, sums = c_exp_av(lib, scores, scores.max(axis=1), v, [(0, CTX)], np.zeros((g, hs), np.int32),
                             np.zeros(g, np.int32), p, table)
        want, want_sums = twin_exp_av(scores, scores.max(axis=1), v, 1 << 18, 19, table)
        assert (want == (-(2**31) if v[0, 0] < 0 else 127 << 24)).all() and (want_sums == 1 << 24).all(), label
        np.testing.assert_array_equal(acc, want, err_msg=label)
        np.testing.assert_array_equal(sums, want_sums, err_msg=label)


def check_attn_out(lib, acc, sums, g, hs, mult, shift, bits, exact=False):
    out = np.full(g * hs + 4, 99, np.int8)
    lib.attn_out_i8(out, acc.reshape(-1), sums, g, hs, mult, shift, bits)
    want = K.attn_out(acc, sums, mult, shift, bits)
    assert want.shape == (g, hs)
    np.testing.assert_array_equal(out[: g * hs], want.reshape(-1))
    assert (out[g * hs:] == 99).all(), "attn_out wrote past g*hs"
    if exact:  # the twin by its definition, in exact rationals
        m = [(int(mult) << bits) // int(s) for s in sums]
        ref = [[_round_half_away(Fraction(int(a) * m[h], 2**shift)) for a in acc[h]] for h in range(g)]
        np.testing.assert_array_equal(want, np.clip(ref, *I8))


@pytest.mark.parametrize("seed", range(40))
def test_attn_out(lib, seed):
    check_attn_out(lib, *attn_out_input(seed), exact=seed < 10)


def test_attn_out_edges(lib):
    for acc, sums, g, hs, mult, shift, bits, _label in attn_out_edges():
        check_attn_out(lib, acc, sums, g, hs, mult, shift, bits, exact=True)


def test_zero_i32(lib):
    for n in (1, 7, 300):
        x = np.full(n + 4, -5, np.int32)
        lib.zero_i32(x, n)
        assert not x[:n].any() and (x[n:] == -5).all()


def c_attention_tiled(lib, c, T, dma, lanes=1):
    """attention_i8 rebuilt from the tiled kernels as the generated code composes them: kv heads `lanes` at a time
    (the last group maybe fewer), each lane with its scores, maxima, acc and sums; dma: each tile of K/V of the
    group's kv heads side by side copied dense by one dma_start_2d, else read in place; the last V tile finishes."""
    n, nh, nkv, hs = c["pos"] + 1, c["n_heads"], c["n_kv_heads"], c["head_size"]
    g, kv_dim, stride = nh // nkv, nkv * hs, c["pos"] + 4
    scores = np.full((lanes, g, stride), -777, np.int32)
    acc = np.full((lanes, g * hs), 12345, np.int32)  # the first V tile must start from 0, whatever was left there
    sums = np.full((lanes, g), -5, np.int32)
    max_ = np.full((lanes, g), 2**30, np.int32)  # and the first K tile
    out = np.zeros(nh * hs, np.int8)
    tile_buf = np.zeros(min(T, n) * hs * lanes, np.int8)
    job = DmaJob(0)
    prm = prm_array(c, dict(out_mult=c["out_mult"], out_shift=c["out_shift"], bits=table_bits(c["table"])))

    def kv_tile(cache, h0, nl, t0, n_t):
        if not dma:
            return cache[t0 * kv_dim + h0 * hs:], kv_dim
        lib.dma_start_2d(ctypes.byref(job), tile_buf.ctypes.data, cache.ctypes.data + t0 * kv_dim + h0 * hs,
                         n_t, nl * hs, kv_dim, nl * hs)
        lib.dma_wait(ctypes.byref(job))
        return tile_buf, nl * hs

    kc, vc = c["k_cache"].reshape(-1), c["v_cache"].reshape(-1)
    for h0 in range(0, nkv, lanes):
        nl = min(lanes, nkv - h0)
        for t0 in range(0, n, T):
            n_t = min(T, n - t0)
            k, k_stride = kv_tile(kc, h0, nl, t0, n_t)
            for l in range(nl):
                lib.attn_scores_i8(scores[l], stride, max_[l], c["q"][(h0 + l) * g * hs:], k[l * hs:], k_stride, t0,
                                   n_t, g, hs)
        for t0 in range(0, n, T):
            n_t = min(T, n - t0)
            v, v_stride = kv_tile(vc, h0, nl, t0, n_t)
            for l in range(nl):
                lib.attn_exp_av_i8(acc[l], sums[l], scores[l], stride, max_[l], v[l * hs:], v_stride, t0, n_t, g, hs,
                                   prm, c["table"], out[(h0 + l) * g * hs:].ctypes.data if t0 + n_t == n else None)
    assert (scores[:, :, n:] == -777).all(), "scores written past pos"
    return out


@pytest.mark.parametrize("dma", [False, True], ids=["in_place", "dma"])
@pytest.mark.parametrize("T", TILED_T)
@pytest.mark.parametrize("shape", TILED_SHAPES, ids=lambda s: "h{}kv{}hs{}".format(*s))
@pytest.mark.parametrize("pos", TILED_POS)
def test_attention_tiled_composition(lib, pos, shape, T, dma):
    c, T = tiled_case(pos, shape, T)
    want = K.attention(**c)
    np.testing.assert_array_equal(c_attention(lib, c, guard=0)[0], want)
    n_tiles, n_kv_heads, hs = -(-(pos + 1) // T), c["n_kv_heads"], c["head_size"]
    for lanes in (1, 3):  # 3: a last group of fewer lanes for 4 or 8 kv heads
        lib.dma_reset_counters()
        np.testing.assert_array_equal(c_attention_tiled(lib, c, T, dma, lanes), want)
        assert ctypes.c_uint32.in_dll(lib, "dma_bytes").value == (2 * n_kv_heads * (pos + 1) * hs if dma else 0)
        assert ctypes.c_uint32.in_dll(lib, "dma_transfers").value == \
            (2 * -(-n_kv_heads // lanes) * n_tiles if dma else 0)
    np.testing.assert_array_equal(twin_attention_tiled(c, T), want)


def silu_table(rng):
    g = np.arange(-128, 128) * 10 ** rng.uniform(-2, -0.5)
    silu = g / (1 + np.exp(-g))
    return np.clip(np.round(silu / np.abs(silu).max() * 32767), *I16).astype(np.int16)


@pytest.mark.parametrize("seed", range(100))
def test_swiglu(lib, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 1000))
    gate, up = rand_i8(rng, n), rand_i8(rng, n)
    table = silu_table(rng) if seed % 3 else rng.integers(-32768, 32768, 256, dtype=np.int16)
    real = float(wide_reals(rng, 1)[0]) if seed % 2 else 10 ** rng.uniform(-6.5, -4.5)
    mult, shift = K.quantize_multiplier(real) if seed % 5 != 2 else (int(rng.integers(1, 8)), int(rng.integers(1, 4)))
    if seed == 0:
        gate[:2], up[:2], table[0], table[255] = [-128, 127], [-128, -128], -32768, 32767
    h = np.zeros(n, np.int8)
    lib.swiglu_i8(h, gate, up, table, mult, shift, n)
    np.testing.assert_array_equal(h, K.swiglu(gate, up, table, mult, shift))


def swiglu_dyn_cases():
    """(gate, up, table, label): random, every max |silu * up| around the k steps' edges, zeros, the largest."""
    rng = np.random.default_rng(31)
    for seed in range(40):
        n = int(rng.integers(1, 600))
        table = silu_table(rng) if seed % 2 else rng.integers(-32768, 32768, 256, dtype=np.int16)
        yield rand_i8(rng, n), rand_i8(rng, n), table, f"random n={n}"
    table = np.zeros(256, np.int16)
    table[128 + 1] = 1  # silu(1) = 1: p = up exactly, so max |p| can be any value up to 128
    for hi, lo in ((0, 0), (1, -1), (127, -128), (127, -127), (126, -128), (0, -128), (127, 0), (5, -3)):
        gate = np.ones(5, np.int8)
        up = np.array([hi, lo, 3, -3, 0], np.int8)
        yield gate, up, table, f"p in [{lo}, {hi}]"
    t2 = np.zeros(256, np.int16)
    t2[128 + 1], t2[128 + 2] = 2, 3  # p = 2 * up or 3 * up: the edges of k = 1 and 2, both signs
    for u in (63, 64, -64, -65, 42, 43, -43, -44, -128, 127):
        yield np.array([1, 2, 1], np.int8), np.array([u, u, -1], np.int8), t2, f"u={u}"
    for v in (-32768, 32767, 255 * 128 + 64, 381, 382, 383, 767, 768, 769):  # max |p| = |v| * 128 or v itself
        t = np.zeros(256, np.int16)
        t[128 + 2], t[128 + 3] = np.int16(v), 1
        yield np.array([2, 2, 3, 3], np.int8), np.array([-128, 127, v % 128 or 1, -(v % 127) or -1], np.int8), t, f"v={v}"


def test_swiglu_dyn(lib):
    for gate, up, table, label in swiglu_dyn_cases():
        n = gate.size
        h, shift = np.full(n + 4, 77, np.int8), np.zeros(2, np.uint8)
        lib.swiglu_dyn_i8(h, shift, np.zeros(n, np.int32), gate, up, table, 40, n)
        want, want_shift = K.swiglu_dyn(gate, up, table, 40)
        np.testing.assert_array_equal(h[:n], want, err_msg=label)
        assert (h[n:] == 77).all() and shift[0] == want_shift and shift[1] == 0, label
        p = table[gate.astype(int) + 128].astype(np.int64) * up
        k = 40 - want_shift
        assert 0 <= k <= 16 and -128 <= want.min(initial=0) and want.max(initial=0) <= 127, label
        if k:  # the smallest shift: one less would not fit int8 (rounding half up)
            r = (p + ((1 << (k - 1)) >> 1)) >> (k - 1)
            assert r.max() > 127 or r.min() < -128, label


@pytest.mark.parametrize("seed", range(50))
def test_residual_add_i16(lib, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 2000))
    a, b = (rng.integers(-32768, 32768, n, dtype=np.int16) for _ in range(2))
    a[:4], b[:4] = [32767, -32768, 32767, -32768], [32767, -32768, -32768, 1]
    want = K.residual_add(a, b)
    y = np.zeros(n, np.int16)
    lib.residual_add_i16(y, a, b, n)
    np.testing.assert_array_equal(y, want)
    lib.residual_add_i16(a, a, b, n)  # in place
    np.testing.assert_array_equal(a, want)


@pytest.mark.parametrize("seed", range(100))
def test_embed(lib, seed):
    rng = np.random.default_rng(seed)
    vocab, dim = int(rng.integers(1, 600)), int(rng.integers(1, 300))
    table = rand_i8(rng, (vocab, dim))
    table[0, :2] = [-128, 127]
    reals = wide_reals(rng, vocab) if seed % 2 else 10 ** rng.uniform(0, 2.4, vocab)
    mult, shift = qm_arrays(reals) if seed % 5 != 2 else tie_heavy(rng, vocab)
    for token in {0, vocab - 1, int(rng.integers(0, vocab))}:
        x = np.zeros(dim + 4, np.int16)  # the token's row and its (mult, shift) entries, as a DMA would fetch them
        lib.embed_i16(x, table[token], mult[token:], shift[token:], dim)
        want = K.embed(table[token], mult[token], shift[token])
        np.testing.assert_array_equal(x[:dim], want)
        assert not x[dim:].any(), "embed wrote past dim"
        exact = [_round_half_away(Fraction(int(r) * int(mult[token]), 2 ** int(shift[token]))) for r in table[token]]
        np.testing.assert_array_equal(want, np.clip(exact, *I16))


# (mult, shift) at the edges of the C's one-high-multiply form (dpl_rq32) and past them: low zero bits in mult,
# shifts just above / below 33 where acc is scaled up
@pytest.mark.parametrize("mult,shift", [(3 << 20, 44), (1 << 30, 44), (1 << 30, 30), (2**31 - 1, 25), (2**31 - 1, 24),
                                        (2**31 - 1, 62), (5, 33), (2**31 - 1, 8), (2**31 - 1, 10), (1 << 30, 12)])
def test_requant_edges(lib, mult, shift):
    rng = np.random.default_rng(shift)
    gate, up = np.repeat(np.arange(-128, 128), 4).astype(np.int8), np.tile([-128, -1, 1, 127], 256).astype(np.int8)
    table = rng.integers(-32768, 32768, 256, dtype=np.int16)
    table[0], table[255] = -32768, 32767
    h = np.zeros(gate.size, np.int8)
    lib.swiglu_i8(h, gate, up, table, mult, shift, gate.size)
    np.testing.assert_array_equal(h, K.swiglu(gate, up, table, mult, shift))
    row = np.arange(-128, 128).astype(np.int8)
    x = np.zeros(256, np.int16)
    lib.embed_i16(x, row, np.array([mult], np.int32), np.array([shift], np.uint8), 256)
    np.testing.assert_array_equal(x, K.embed(row, mult, shift))


@pytest.mark.parametrize("seed", range(100))
def test_argmax(lib, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.integers(1, 40000))
    x = rng.integers(-(2**31), 2**31, n, dtype=np.int32) if seed % 2 else rng.integers(-3, 3, n, dtype=np.int32)
    assert lib.argmax_i32(x, n) == K.argmax(x)


def test_argmax_edges(lib):
    for x in ([5], [7, 7, 7], [-(2**31)] * 5, [1, 3, 3, 2], [0, 0, 2**31 - 1], [2**31 - 1, 2**31 - 1]):
        a = np.array(x, np.int32)
        assert lib.argmax_i32(a, len(a)) == K.argmax(a) == int(np.flatnonzero(a == a.max())[0])



# ------------------------------------------------------------------------------------------------ dma


def dma_counters(lib):
    return ctypes.c_uint32.in_dll(lib, "dma_bytes").value, ctypes.c_uint32.in_dll(lib, "dma_transfers").value


def test_dma_1d_and_counters(lib):
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, 2000, dtype=np.uint8)
    dst = np.full(2100, 0xAB, np.uint8)
    want = dst.copy()
    lib.dma_reset_counters()
    assert dma_counters(lib) == (0, 0)
    job = DmaJob(0)
    moved = 0
    for i, (s0, d0, n) in enumerate([(0, 0, 1), (5, 100, 0), (17, 200, 7), (1000, 300, 999), (3, 1500, 256)]):
        lib.dma_start(ctypes.byref(job), dst.ctypes.data + d0, src.ctypes.data + s0, n)
        want[d0:d0 + n] = src[s0:s0 + n]
        moved += n
        assert job.pending == i + 1 and dma_counters(lib) == (moved, i + 1)  # a zero-byte transfer still counts
    lib.dma_wait(ctypes.byref(job))
    assert job.pending == 0 and dma_counters(lib) == (moved, 5)
    np.testing.assert_array_equal(dst, want)
    other = DmaJob(0)
    lib.dma_start(ctypes.byref(other), dst.ctypes.data, src.ctypes.data, 10)
    assert job.pending == 0 and other.pending == 1 and dma_counters(lib) == (moved + 10, 6)  # counters are global
    lib.dma_wait(ctypes.byref(other))
    lib.dma_reset_counters()
    assert dma_counters(lib) == (0, 0) and other.pending == 0


@pytest.mark.parametrize("seed", range(30))
def test_dma_2d(lib, seed):
    rng = np.random.default_rng(seed)
    rows = 0 if seed == 1 else 1 if seed % 5 == 0 else int(rng.integers(1, 40))
    row_bytes = 0 if seed == 2 else int(rng.integers(1, 64))
    src_stride = row_bytes + int(rng.integers(0, 3)) * int(rng.integers(0, 50))
    dst_stride = row_bytes if seed % 3 == 0 else row_bytes + int(rng.integers(0, 20))  # dense tile or strided
    src = rng.integers(0, 256, max(rows, 1) * max(src_stride, 1) + 8, dtype=np.uint8)
    s0 = int(rng.integers(0, 8))
    dst = np.full(max(rows, 1) * max(dst_stride, 1) + 8, 0xAB, np.uint8)
    want = dst.copy()
    for r in range(rows):
        want[r * dst_stride:r * dst_stride + row_bytes] = src[s0 + r * src_stride:s0 + r * src_stride + row_bytes]
    lib.dma_reset_counters()
    job = DmaJob(0)
    lib.dma_start_2d(ctypes.byref(job), dst.ctypes.data, src.ctypes.data + s0, rows, row_bytes, src_stride, dst_stride)
    assert job.pending == 1 and dma_counters(lib) == (rows * row_bytes, 1)
    lib.dma_wait(ctypes.byref(job))
    assert job.pending == 0
    np.testing.assert_array_equal(dst, want)  # gaps between destination rows untouched


def test_dma_2d_kv_tile(lib):
    """The transfer the generated code issues for attention: n_t positions of one kv head into a dense [n_t, hs] tile."""
    rng = np.random.default_rng(7)
    ctx, n_kv, hs = 64, 4, 16
    cache = rand_i8(rng, (ctx, n_kv * hs))
    lib.dma_reset_counters()
    job = DmaJob(0)
    for kh, t0, n_t in ((0, 0, 1), (3, 5, 7), (2, 0, ctx), (1, 60, 4)):
        tile = np.zeros(n_t * hs, np.int8)
        lib.dma_start_2d(ctypes.byref(job), tile.ctypes.data, cache.ctypes.data + t0 * n_kv * hs + kh * hs,
                         n_t, hs, n_kv * hs, hs)
        lib.dma_wait(ctypes.byref(job))
        np.testing.assert_array_equal(tile.reshape(n_t, hs), cache[t0:t0 + n_t, kh * hs:(kh + 1) * hs])
    assert dma_counters(lib) == ((1 + 7 + ctx + 4) * hs, 4)
