"""Per-token absmax scales (`dynamic norm`, `final_norm`, `swiglu_absmax` in the quantize block): the producers'
kernels (rmsnorm_tok_i8, swiglu_tok_i8, swiglu16_tok_i8, each in one call and in two passes over N cores) and the
consumer GEMVs (gemv_tok_*, gemv_q4_tok_*) compute their numpy twins' integers on the host (here) and on RV32
(test_kernels_rv32.py runs these cases); the twins use the int8 range and hand a factor that gives the values back;
the generated C equals golden on every logit (host: decode and prefill, streamed tiles, int4 weights, 1, 3 and 8
cores; QEMU on 1 and 8 harts); the NPU takes no per-token factor: such layers fall back to the cluster with a
warning."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from conftest import INT8_EXAMPLE
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import SpecError
from deeploy_dsl.engines.qemu import missing_tools
from deeploy_dsl.kernels import twins as K
from deeploy_dsl.kernels.layout import block_rows, q4_pack

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
KDIR = ROOT / "kernels_c"
DPLY = ROOT / "deployments/stories260k.dply"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
OUT = {8: (np.int8, K.I8), 16: (np.int16, K.I16), 32: (np.int32, K.I32)}


# ---- cases, shared with test_kernels_rv32.py -----------------------------------------------------------------------

def rmsnorm_tok_cases():
    """(x, gain, gain_shift, eps_q, base_shift, label): random rows, and the edges of the absmax's mantissa."""
    rng = np.random.default_rng(1401)
    for seed in range(30):
        dim = int(rng.choice([1, 3, 7, 64, 288]))
        mag = 10 ** rng.uniform(0, 4.5)
        x = np.clip(np.round(rng.standard_normal(dim) * mag), *K.I16).astype(np.int16)
        gain = rng.integers(-(2**15) if seed % 2 else 0, 2**15 + 1, dim).astype(np.int32)
        yield x, gain, int(rng.integers(0, 25)), int(rng.integers(0, 10**8)) if seed % 3 else 0, 62, f"seed={seed}"
    for label, x, g in (("zero", np.zeros(8, np.int16), np.ones(8, np.int32)),
                        ("largest", np.full(8, -32768, np.int16), np.full(8, 1 << 15, np.int32)),
                        ("a rounds up to 2^15", np.array([32767, 5, -2], np.int16), np.array([32769, 3, 1], np.int32)),
                        ("one", np.array([0, 1, 0], np.int16), np.array([1, 1, 1], np.int32)),
                        ("ties", np.array([256, -256, 128, -128], np.int16), np.array([255, 255, 255, 255], np.int32))):
        yield x, g, 12, 0, 62, f"edge {label}"


def swiglu_tok_cases():
    """(gate, up, table, base_shift, label): random, tiny and the largest products."""
    from test_kernels_c import rand_i8, silu_table
    rng = np.random.default_rng(1402)
    for seed in range(30):
        n = int(rng.integers(1, 600))
        table = silu_table(rng) if seed % 2 else rng.integers(-32768, 32768, 256, dtype=np.int16)
        yield rand_i8(rng, n), rand_i8(rng, n), table, 40, f"random n={n}"
    t = np.zeros(256, np.int16)
    t[128 + 1], t[128 + 2] = 1, -32768
    yield np.array([0, 0], np.int8), np.array([5, -5], np.int8), t, 40, "all zero"
    yield np.array([1, 1, 1], np.int8), np.array([1, -1, 0], np.int8), t, 40, "max |p| = 1"
    yield np.array([2, 2, 1], np.int8), np.array([-128, 127, 3], np.int8), t, 40, "max |p| = 2^22"


def gemv_tok_cases(q4: bool):
    """(x, w, mult, tok, group, label): every chunk edge of 64 rows, tiny and huge token shifts (above 62: dropped
    bits), int4 weights with their groups."""
    rng = np.random.default_rng(1403 + q4)
    for k, n_out in enumerate((1, 7, 8, 16, 17, 63, 64, 65, 129, 200)):
        n_in = int(rng.choice([8, 9, 16, 64, 172])) if not q4 else int(rng.choice([8, 16, 64, 172]))
        x = rng.integers(-128, 128, n_in, dtype=np.int8)
        w = rng.integers(-8, 8, (n_out, n_in), dtype=np.int8) if q4 else \
            rng.integers(-128, 128, (n_out, n_in), dtype=np.int8)
        mult, shift = K.layer_multipliers(10 ** rng.uniform(-2, 0, n_out) * 2.0 ** -int(rng.integers(0, 12)))
        m = int(rng.integers(1 << 31, 1 << 32))
        s = (shift + int(rng.integers(-6, 12)), 70, 63, 1, 0)[k % 5] if k % 2 else shift + int(rng.integers(-6, 12))
        group = int(rng.choice([8, 16, 32])) if q4 else 0
        yield x, w, mult, np.array([m - (1 << 32), s], np.int32), group, f"n_out={n_out} n_in={n_in} s={s}"


def q4_weights(w, group):
    """Packed int4 weights with group scales all 1..3, and the integer weights they stand for."""
    rng = np.random.default_rng(w.size)
    e = rng.integers(1, 4, (w.shape[0], -(-w.shape[1] // group)), dtype=np.uint8)
    return q4_pack(w, e, group), w.astype(np.int64) * np.repeat(e.astype(np.int64), group, axis=1)[:, :w.shape[1]]


# ---- the twins ------------------------------------------------------------------------------------------------------

def test_absmax_uses_the_int8_range_and_the_factor_gives_the_values_back():
    rng = np.random.default_rng(3)
    for amax in (1, 2, 127, 128, 32767, 32768, 2**22, 2**30, 123457, 2**15 * 2 - 1, (2**15 - 1) * 4 + 1):
        v = np.concatenate([rng.integers(-amax, amax + 1, 50), [amax, -amax // 2]])
        y, a, t = K.absmax_i8(v)
        assert 2**14 <= a < 2**15 and a * 2.0**t >= amax and np.abs(y).max() <= 127
        assert np.abs(y).max() >= 126, amax  # the token's largest lands at the top of the range
        # y * a * 2^t / 127 is v to within half a step of the output, and the forward multiplier's rounding (< 2^-14)
        step = a * 2.0**t / 127
        assert (np.abs(y * step - v) <= step / 2 + np.abs(v) * 2.0**-14 + 1e-9).all(), amax


def test_tok_factor_and_multipliers():
    for p, e in ((1, 0), (3, 5), (2**14 + 7, -20), (2**46 - 1, -40), (2**31, 0), (2**32 - 1, 3)):
        m, s = K.tok_factor(p, e, 60)
        m &= 0xFFFFFFFF
        assert 2**31 <= m < 2**32
        # a consumer with multiplier 2^30 at shift 60 and this factor: 2^30 / 2^60 * p * 2^e
        m2, s2 = K.tok_multipliers(np.array([1 << 30]), np.array([m - (1 << 32), s], np.int64))
        assert abs(m2[0] / 2.0**s2 / (2.0**-30 * p * 2.0**e) - 1) < 2**-28


# ---- the C kernels on the host --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("pertoken") / "libpt.so"
    srcs = [str(KDIR / f) for f in ("rmsnorm.c", "rmsnorm_tok.c", "swiglu.c", "swiglu16.c", "gemv.c", "gemv_tok.c")]
    r = subprocess.run([CC, *CFLAGS, "-shared", "-fPIC", "-o", str(out), *srcs], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    so = ctypes.CDLL(str(out))

    def arr(dt):
        return np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")
    i8, i16, i32, c32, c64 = arr(np.int8), arr(np.int16), arr(np.int32), ctypes.c_int32, ctypes.c_int64
    so.rmsnorm_tok_i8_part.argtypes = [i8, i32, i16, i32, c32, c64, c32, c32, c32, c32]
    so.rmsnorm_tok_i8.argtypes = [i8, i32, i16, i32, c32, c64, c32, c32]
    for f in ("rmsnorm_tok_i8_span", "rmsnorm_tok_i8_out"):
        getattr(so, f).argtypes = [i8, i32, i16, i32, c32, c64, c32, c32, i32, c32, c32, c32, c32]
    so.swiglu_tok_i8.argtypes = [i8, i32, i32, i8, i8, i16, c32, c32]
    so.swiglu16_tok_i8.argtypes = [i8, i32, i32, i16, i16, i16, c32, c32]
    for f in ("swiglu16_tok_i8_span", "swiglu16_tok_i8_out"):
        getattr(so, f).argtypes = [i8, i32, i32, i16, i16, i16, c32, c32, i32, c32, c32, c32, c32]
    for bits, dt in ((8, i8), (16, i16), (32, i32)):
        getattr(so, f"gemv_tok_i{bits}").argtypes = [dt, i8, i8, i32, i32, c32, c32]
        getattr(so, f"gemv_q4_tok_i{bits}").argtypes = [dt, i8, i8, i32, i32, c32, c32, c32]
    for f in ("rmsnorm_tok_i8_part", "rmsnorm_tok_i8", "rmsnorm_tok_i8_span", "rmsnorm_tok_i8_out", "swiglu_tok_i8",
              "swiglu16_tok_i8", "swiglu16_tok_i8_span", "swiglu16_tok_i8_out",
              *(f"gemv{q}_tok_i{b}" for q in ("", "_q4") for b in OUT)):
        getattr(so, f).restype = None
    return so


def test_rmsnorm_tok(lib):
    for x, gain, gs, eps, base, label in rmsnorm_tok_cases():
        dim = x.size
        want_y, want_tok = K.rmsnorm_tok(x, gain, gs, eps, base)
        y, tok = np.full(dim + 2, 77, np.int8), np.zeros(3, np.int32)
        cut = dim // 3
        for lo, hi in ((cut, dim), (0, cut)) if cut else ((0, dim),):  # shares, as the cores take them
            lib.rmsnorm_tok_i8_part(y, tok, x, gain, gs, eps, base, dim, lo, hi)
        np.testing.assert_array_equal(y[:dim], want_y, err_msg=label)
        assert (y[dim:] == 77).all() and tok[2] == 0, label
        assert (tok[0], tok[1]) == want_tok, label


def random_shares(n: int, cores: int, seed: int) -> list[tuple[int, int]]:
    """cores contiguous shares [lo, hi) of n, any sizes (empty ones too); on odd seeds core 0's is empty, so two
    shares start at 0."""
    cuts = np.sort(np.random.default_rng(seed).integers(0, n + 1, cores - 1)).tolist()
    cuts[0] = 0 if seed % 2 else cuts[0]
    return list(zip([0] + cuts, cuts + [n]))


def test_rmsnorm_tok_passes(lib):
    """rmsnorm_tok_i8 in one call, and its two passes on 2..8 cores with any shares run one core after another (the
    second pass's cores in reverse order): the twin's integers, whatever the cores."""
    for i, (x, gain, gs, eps, base, label) in enumerate(rmsnorm_tok_cases()):
        dim, cores = x.size, 2 + i % 7
        want_y, want_tok = K.rmsnorm_tok(x, gain, gs, eps, base)
        y, tok = np.full(dim + 2, 77, np.int8), np.zeros(3, np.int32)
        lib.rmsnorm_tok_i8(y, tok, x, gain, gs, eps, base, dim)
        np.testing.assert_array_equal(y[:dim], want_y, err_msg=label)
        assert (y[dim:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label
        y, tok, spans = np.full(dim + 2, 77, np.int8), np.zeros(3, np.int32), np.full(2 * cores, 12345, np.int32)
        shares = random_shares(dim, cores, i)
        for core in range(cores):
            lib.rmsnorm_tok_i8_span(y, tok, x, gain, gs, eps, base, dim, spans, core, cores, *shares[core])
        for core in reversed(range(cores)):
            lib.rmsnorm_tok_i8_out(y, tok, x, gain, gs, eps, base, dim, spans, core, cores, *shares[core])
        np.testing.assert_array_equal(y[:dim], want_y, err_msg=f"{label} {shares}")
        assert (y[dim:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label


def silu16_table(rng) -> np.ndarray:
    """A 513-entry silu table over an int16 gate at a random scale, as quantize makes it (kernels.silu16)."""
    xs = (np.arange(K.SILU16_ENTRIES) * (1 << K.SILU16_STEP) - 32768) * 10 ** rng.uniform(-4, -2.5)
    silu = xs / (1.0 + np.exp(-xs))
    return np.round(silu / np.abs(silu).max() * 32767).astype(np.int16)


def swiglu16_tok_cases():
    """(gate, up, table, base_shift, label) for int16 gate and up: random, and the largest products."""
    rng = np.random.default_rng(1403)
    for seed in range(24):
        n = int(rng.integers(1, 600))
        table = silu16_table(rng) if seed % 2 else rng.integers(-32768, 32768, K.SILU16_ENTRIES, dtype=np.int16)
        mag = 10 ** rng.uniform(0, 4.6)
        gate, up = (np.clip(np.round(rng.standard_normal(n) * mag), *K.I16).astype(np.int16) for _ in range(2))
        yield gate, up, table, 40, f"random n={n}"
    ends = np.array([-32768, 32767, -32768, 32767, -1, 0, 127, -129], np.int16)
    for label, table in (("+32767", np.full(K.SILU16_ENTRIES, 32767, np.int16)),
                         ("-32768", np.full(K.SILU16_ENTRIES, -32768, np.int16)),
                         ("alternating", np.resize(np.array([32767, -32768], np.int16), K.SILU16_ENTRIES))):
        yield ends, np.array([-32768, -32768, 32767, 32767, 5, -3, 1, 1], np.int16), table, 31, f"edge {label}"


def test_silu16_interpolates_the_table_and_stays_int16():
    rng = np.random.default_rng(1404)
    table = silu16_table(rng)
    g = np.arange(-32768, 32768, dtype=np.int64)
    s = K.silu16(g, table)
    assert s.min() >= -32768 and s.max() <= 32767
    np.testing.assert_array_equal(s[::1 << K.SILU16_STEP], table[:-1])  # exact at the entries
    mid = (table[:-1].astype(np.int64) + table[1:]) / 2
    assert np.abs(s[64::128] - mid).max() <= 0.5 + 1e-9  # halfway between them, rounded


def test_swiglu16_tok(lib):
    """The one-pass kernel, and its two passes on 2..8 cores with any shares (empty ones too) run one core after
    another, the second pass's cores in reverse order: the twin's integers, whatever the cores."""
    for i, (gate, up, table, base, label) in enumerate(swiglu16_tok_cases()):
        n, cores = gate.size, 2 + i % 7
        want_h, want_tok = K.swiglu_tok_g16(gate, up, table, base)
        assert np.abs(K.silu16(gate, table) * up.astype(np.int64)).max() <= 1 << 30, label
        assert np.abs(want_h).max() == 127 or not (K.silu16(gate, table) * up.astype(np.int64)).any(), label
        h, tok = np.full(n + 2, 77, np.int8), np.zeros(3, np.int32)
        lib.swiglu16_tok_i8(h, tok, np.zeros(n, np.int32), gate, up, table, base, n)
        np.testing.assert_array_equal(h[:n], want_h, err_msg=label)
        assert (h[n:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label
        h, tok, p, spans = np.full(n + 2, 77, np.int8), np.zeros(3, np.int32), np.zeros(n, np.int32), \
            np.full(2 * cores, 12345, np.int32)
        shares = random_shares(n, cores, i)
        for core in range(cores):
            lib.swiglu16_tok_i8_span(h, tok, p, gate, up, table, base, n, spans, core, cores, *shares[core])
        for core in reversed(range(cores)):
            lib.swiglu16_tok_i8_out(h, tok, p, gate, up, table, base, n, spans, core, cores, *shares[core])
        np.testing.assert_array_equal(h[:n], want_h, err_msg=f"{label} cores={cores} {shares}")
        assert (h[n:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label


def test_swiglu_tok(lib):
    for gate, up, table, base, label in swiglu_tok_cases():
        n = gate.size
        h, tok = np.full(n + 2, 77, np.int8), np.zeros(3, np.int32)
        lib.swiglu_tok_i8(h, tok, np.zeros(n, np.int32), gate, up, table, base, n)
        want_h, want_tok = K.swiglu_tok(gate, up, table, base)
        np.testing.assert_array_equal(h[:n], want_h, err_msg=label)
        assert (h[n:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label


@pytest.mark.parametrize("bits", [8, 16, 32])
@pytest.mark.parametrize("q4", [False, True])
def test_gemv_tok(lib, bits, q4):
    dt, lim = OUT[bits]
    for x, w, mult, tok, group, label in gemv_tok_cases(q4):
        n_out, n_in = w.shape
        y = np.full(n_out + 2, 99, dt)
        if q4:
            wq, wint = q4_weights(w, group)
            getattr(lib, f"gemv_q4_tok_i{bits}")(y, x, wq, mult, tok, n_in, n_out, group)
        else:
            wint = w
            getattr(lib, f"gemv_tok_i{bits}")(y, x, np.ascontiguousarray(block_rows(w)).reshape(-1), mult, tok, n_in,
                                             n_out)
        np.testing.assert_array_equal(y[:n_out], K.linear_tok(x, wint, mult, tok, *lim), err_msg=label)
        assert (y[n_out:] == 99).all(), label


# ---- end to end -----------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("dynamic,overrides", [
    ("norm,final_norm,swiglu_absmax", ["memory.L1=6KiB"]),  # streamed weight tiles
    pytest.param("norm", [], marks=pytest.mark.slow),
    pytest.param("final_norm", [], marks=pytest.mark.slow),
    pytest.param("swiglu_absmax", [], marks=pytest.mark.slow),
    pytest.param("norm,swiglu", ["quantize.weights=int4 per_group(32)"], marks=pytest.mark.slow),
    ("swiglu_absmax", ["quantize.gate_up=int16"]),  # int16 gate and up, silu interpolated (swiglu16_tok_i8)
    pytest.param("final_norm,swiglu_absmax", ["quantize.gate_up=int16", "quantize.queries=int12", "quantize.smooth=0.5"],
                 marks=pytest.mark.slow),  # the most accurate setting
    pytest.param("norm,final_norm,swiglu_absmax", ["quantize.gate_up=int16", "quantize.queries=int12",
                                                   "quantize.smooth=0.5"], marks=pytest.mark.slow),
])
def test_c_matches_golden(model_dir, tmp_path, dynamic, overrides):
    """Every logit, decode token by token and with prefill (test_keys16.check_host)."""
    from test_keys16 import check_host
    c = compile_deployment(DPLY, [*INT8_EXAMPLE, f"quantize.dynamic={dynamic}"] + overrides)
    steps, values = {s.op: s for s in c.plan.steps}, set(dynamic.split(","))
    if "norm" in values:
        assert steps["layers.0.attn_norm"].kernel == "rmsnorm_tok_i8"
        assert steps["layers.0.attn.k"].arg("shift").name == "layers.0.attn_norm_tok"
    if "swiglu_absmax" in values:
        wide = "quantize.gate_up=int16" in overrides
        assert steps["layers.0.mlp.swiglu"].kernel == ("swiglu16_tok_i8" if wide else "swiglu_tok_i8")
        assert steps["layers.0.mlp.gate"].kernel.endswith("_i16" if wide else "_i8")
        assert steps["layers.0.mlp.down"].kernel.replace("_pk", "") == "gemv_tok_i16"  # packed or blocked
        assert "unpacked" in steps["layers.0.mlp.down"].reason  # siracusa streams the weights: blocked is cheaper
    if "final_norm" in values:
        # siracusa streams lm_head in tiles that overlap the packed GEMV's doubled bytes: the cost model packs it, but
        # 6 KiB of L1 cannot hold a block of packed rows beside the rest: the blocked GEMV
        small = "memory.L1=6KiB" in overrides
        assert steps["final_norm"].kernel == "rmsnorm_tok_i8"
        assert steps["lm_head"].kernel == ("gemv_tok_i32" if small else "gemv_pk_tok_i32")
        assert ("unpacked" if small else "packed: ~") in steps["lm_head"].reason
    check_host(c, tmp_path, n_new=10)
    check_host_cores(c, tmp_path, (3, 8))


def check_host_cores(c, tmp_path: Path, cores: tuple[int, ...]) -> None:
    """The host program built by check_host on N cores (it runs the N shares one after another, so the second pass
    of a two-fork norm or SwiGLU reads every core's span): golden's logits, token by token and with prefill."""
    from deeploy_dsl.backend.cmodel import c_ident
    from deeploy_dsl.engines.runner import run_golden_compiled
    from test_keys16 import PROMPT
    exe, vocab = tmp_path / "build" / c_ident(c.dep.name), c.dep.model.dims.vocab
    assert "_tok_i8_span(" in (tmp_path / "build" / "model.c").read_text()
    _, want = run_golden_compiled(c, PROMPT, 6, stop=False)
    for n, prefill in ((n, prefill) for n in cores for prefill in (False, True)):
        out = tmp_path / f"logits{n}{prefill}.bin"
        subprocess.run([str(exe), "--ids", " ".join(map(str, PROMPT)), "--tokens", "6", "--logits", str(out),
                        "--no-stop", "--cores", str(n)] + ([] if prefill else ["--no-prefill"]), check=True)
        got = np.fromfile(out, dtype="<i4").reshape(-1, vocab)
        np.testing.assert_array_equal(got, want[len(PROMPT) - 1:] if prefill else want, err_msg=f"{n} cores")


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("cores", [1, 8])
def test_qemu_is_bit_exact(model_dir, tmp_path, cores):
    from test_keys16 import check_qemu
    check_qemu(compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.dynamic=norm,final_norm,swiglu_absmax"]), tmp_path,
               cores=cores)


def test_the_npu_takes_the_per_token_factor(model_dir, tmp_path):
    """A layer whose input has a per-token factor runs on the NPU: the core makes the token's multipliers, a job per
    NPU_TOK_ROWS rows (npu_run_tok); golden == C, prefill and decode; `auto` weighs the multipliers on both engines."""
    from test_keys16 import check_host
    from test_npu_mapping import HINTS, variant
    c = compile_deployment(variant(tmp_path, "hinted", *HINTS, "lm_head -> npu"),
                           [*INT8_EXAMPLE, "quantize.dynamic=norm,final_norm,swiglu_absmax", "quantize.queries=int12"])
    steps = {s.op: s for s in c.plan.steps}
    assert not c.warnings
    assert (steps["layers.0.mlp.down"].engine, steps["layers.0.mlp.down"].kernel) == ("npu", "npu_linear_tok_i16")
    assert steps["layers.0.attn.q"].rule == "linear_q12_tok_npu" and steps["lm_head"].kernel == "npu_linear_tok_i32"
    check_host(c, tmp_path, n_new=12)
    model = (tmp_path / "build" / "model.c").read_text()
    assert "npu_run_tok(&job, " in model and "each token's input has its own factor" in model
    auto = compile_deployment(variant(tmp_path, "auto", "layers[*].* -> auto"), [*INT8_EXAMPLE, "quantize.dynamic=norm"])
    q = {s.op: s for s in auto.plan.steps}["layers.0.attn.q"]
    assert "cycles" in q.reason and "per-token factor" not in q.reason


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_the_npu_per_token_factor_under_qemu(model_dir, tmp_path):
    from test_keys16 import check_qemu
    from test_npu_mapping import HINTS, variant
    check_qemu(compile_deployment(variant(tmp_path, "hinted", *HINTS, "lm_head -> npu"),
                                  [*INT8_EXAMPLE, "quantize.dynamic=norm,final_norm,swiglu_absmax"]), tmp_path)


def test_dynamic_values(model_dir):
    with pytest.raises(SpecError, match="two scales for the same output"):
        compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.dynamic=swiglu,swiglu_absmax"])


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("cores", [1, 8])
def test_qemu_gate_up_int16_is_bit_exact(model_dir, tmp_path, cores):
    from test_keys16 import check_qemu
    check_qemu(compile_deployment(DPLY, ["quantize.dynamic=final_norm,swiglu_absmax", "quantize.gate_up=int16",
                                         "quantize.queries=int12", "quantize.smooth=0.5"]), tmp_path, cores=cores)


def test_gate_up_values(model_dir):
    """gate_up is int8 or int16; int16 needs the SwiGLU's absmax scale (its products reach 2^30), said at the line."""
    with pytest.raises(SpecError, match="unsupported gate_up 'int12'"):
        compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.gate_up=int12", "quantize.dynamic=swiglu_absmax"])
    for dynamic in ("swiglu", "norm"):
        with pytest.raises(SpecError) as e:
            compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.gate_up=int16", f"quantize.dynamic={dynamic}"])
        d = e.value.diagnostics[0]
        assert "gate_up int16 needs the SwiGLU's per-token absmax scale" in d.message and "swiglu_absmax" in d.hint
        assert d.pos.line == 1  # the -D line
