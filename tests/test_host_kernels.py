"""The host kernels (kernels_c/host.c, what `target host` builds call) compute exactly the integers of their numpy twins,
at the flags the generated Makefile uses (-O3 -march=native, vectorized) and at plain -O2; host builds lower to them
and agree with golden on every logit."""
from __future__ import annotations

import ctypes
import math
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels.layout import (block_rows, host_q4_rows, host_q4_unrows, host_rows, q4_pack,  # noqa: E402
                                        q4_row_bytes)
from attention_cases import attention_edge, random_attention, random_attention_k16, random_rope_i16  # noqa: E402
from conftest import INT8_EXAMPLE  # noqa: E402

KDIR = ROOT / "kernels_c"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
FLAG_SETS = {"native": ["-O3", "-march=native"], "O2": ["-O2"]}
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow"]
OUT = {8: (np.int8, K.I8), 16: (np.int16, K.I16), 32: (np.int32, K.I32)}


@pytest.fixture(scope="module", params=sorted(FLAG_SETS))
def lib(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("host") / f"libhost_{request.param}.so"
    cmd = [CC, *STRICT, *FLAG_SETS[request.param], "-shared", "-fPIC", "-o", str(out), str(KDIR / "host.c"),
           str(KDIR / "attention.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    so = ctypes.CDLL(str(out))

    def arr(dtype):
        return np.ctypeslib.ndpointer(dtype=dtype, flags="C_CONTIGUOUS")

    i8, i16, i32, u8, u16, c32 = arr(np.int8), arr(np.int16), arr(np.int32), arr(np.uint8), arr(np.uint16), ctypes.c_int32
    for bits, (dt, _) in OUT.items():
        f = getattr(so, f"gemv_rows_i{bits}")
        f.argtypes, f.restype = [arr(dt), i8, i8, i32, u8, c32, c32], None
    for bits, (dt, _) in OUT.items():
        f = getattr(so, f"gemv_q4_rows_i{bits}")
        f.argtypes, f.restype = [arr(dt), i8, i8, i32, u8, c32, c32, c32], None
    so.attention_host_i8.argtypes = [i8, i8, i8, i8, i32] + [c32] * 9 + [u16]
    so.attention_host_k16t.argtypes = [i8, i8, i16, i8, i32] + [c32] * 9 + [u16, c32]
    so.rope_k16_cols.argtypes = [i16, i16, i16, i16, c32, c32, c32, c32]
    so.attention_host_i8.restype = so.attention_host_k16t.restype = so.rope_k16_cols.restype = None
    return so


def gemv_case(seed: int):
    """x, W, mult, shifts (shift[0] the layer's, the rest garbage) and the shift: shapes around the kernel's blocks of
    8 and 4 rows, longer x than it widens on the stack, every requantization form (shifts 33..62, below 33, 0)."""
    rng = np.random.default_rng(seed)
    n_in = int(rng.choice([1, 7, 16, 64, 172, 333, 4097])) if seed % 4 else int(rng.integers(1, 300))
    n_out = int(rng.integers(1, 40))
    x = rng.integers(-128, 128, n_in, dtype=np.int8)
    w = rng.integers(-128, 128, (n_out, n_in), dtype=np.int8)
    if seed % 10 == 0:  # extreme accumulators of both signs
        x[:] = -128
        w[: n_out // 2], w[n_out // 2:] = -128, 127
    if seed % 5 == 2:  # tie-heavy tiny multipliers, small shifts
        mult, shift = rng.integers(1, 8, n_out).astype(np.int32), int(rng.integers(0, 4))
    else:
        reals = 10 ** rng.uniform(-4, 0, n_out) * 10 ** rng.uniform(-5, 3) if seed % 2 else \
            10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in))
        mult, shift = K.layer_multipliers(reals)
    shifts = rng.integers(0, 256, n_out).astype(np.uint8)
    shifts[0] = shift
    return x, w, mult, shifts, shift


@pytest.mark.parametrize("seed", range(40))
def test_gemv_rows(lib, seed):
    """gemv_rows_iN on row-major weights: kernels.linear, every output type."""
    x, w, mult, shifts, shift = gemv_case(seed)
    for bits, (dt, bounds) in OUT.items():
        y = np.zeros(w.shape[0], dt)
        getattr(lib, f"gemv_rows_i{bits}")(y, x, np.ascontiguousarray(w), mult, shifts, w.shape[1], w.shape[0])
        np.testing.assert_array_equal(y, K.linear(x, w, mult, shift, *bounds), err_msg=f"i{bits}")


def test_gemv_rows_rounding_and_saturation_edges(lib):
    """acc = w (x = 1): half up at every shift form, saturation of both ends."""
    w, x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1), np.ones(1, np.int8)
    for mult, shift in ((1 << 30, 31), (3, 1), (1, 1), (5, 3), (2**31 - 1, 0), (1, 62), (2**31 - 1, 62), (2**31 - 1, 33),
                        (1 << 30, 40)):
        m, s = np.full(256, mult, np.int32), np.full(256, shift, np.uint8)
        for bits, (dt, bounds) in OUT.items():
            y = np.zeros(256, dt)
            getattr(lib, f"gemv_rows_i{bits}")(y, x, w, m, s, 1, 256)
            np.testing.assert_array_equal(y, K.linear(x, w, m, shift, *bounds), err_msg=f"{mult} {shift} i{bits}")


def test_host_rows_layout():
    """layout.host_rows: the quantizer's GEMV blocks back to row-major rows, padding dropped."""
    w = np.random.default_rng(0).integers(-128, 128, (21, 13), dtype=np.int8)
    np.testing.assert_array_equal(host_rows(block_rows(w), {"n_out": 21}), w)


def q4_case(seed: int):
    """int4 weights (q in [-8, 7], group scales 1..255) of a random shape: groups of 8 to 64, a shorter last group,
    x longer than the kernel widens on the stack now and then."""
    rng = np.random.default_rng(500 + seed)
    group = int(rng.choice([8, 16, 32, 64]))
    n_in = 2 * int(rng.integers(1, 200)) if seed % 7 else 4100
    n_out = int(rng.integers(1, 30))
    q = rng.integers(-8, 8, (n_out, n_in), dtype=np.int8)
    e = rng.integers(1, 256, (n_out, -(-n_in // group)), dtype=np.uint8)
    x = rng.integers(-128, 128, n_in, dtype=np.int8)
    if seed % 5 == 0:  # the largest products: q -8, e 255, x -128
        q[:], e[:], x[:] = -8, 255, -128
    mult, shift = K.layer_multipliers(10 ** rng.uniform(-6, -2, n_out))
    return x, q, e, group, mult, np.full(n_out, shift, np.uint8), shift


@pytest.mark.parametrize("seed", range(20))
def test_gemv_q4_rows(lib, seed):
    """gemv_q4_rows_iN on the host's int4 layout (made from the quantizer's q4 blocks): kernels.linear_q4."""
    x, q, e, group, mult, shifts, shift = q4_case(seed)
    n_out, n_in = q.shape
    w = host_q4_rows(q4_pack(q, e, group), {"n_out": n_out, "n_in": n_in, "group": group})
    assert w.shape == (n_out, q4_row_bytes(n_in, group))
    for bits, (dt, bounds) in OUT.items():
        y = np.zeros(n_out, dt)
        getattr(lib, f"gemv_q4_rows_i{bits}")(y, x, w, mult, shifts, n_in, n_out, group)
        np.testing.assert_array_equal(y, K.linear_q4(x, q, e, group, mult, shift, *bounds), err_msg=f"i{bits}")


def test_host_q4_rows_round_trip():
    x, q, e, group, *_ = q4_case(3)
    w = host_q4_rows(q4_pack(q, e, group), {"n_out": q.shape[0], "n_in": q.shape[1], "group": group})
    q2, e2 = host_q4_unrows(w, q.shape[1], group)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(e2, e)


def c_attention(lib, c):
    """attention_host_i8, or with an int16 K cache attention_host_k16t on it transposed, on the kwargs of
    kernels.attention; scratch poisoned past pos + 1."""
    n = c["pos"] + 1
    scratch = np.full(n + 8, -12345, np.int32)
    out = np.zeros(c["n_heads"] * c["head_size"], np.int8)
    args = (c["v_cache"], scratch, c["pos"], c["n_heads"], c["n_kv_heads"], c["head_size"], c["score_mult"],
            c["score_shift"], c["score_cut"], c["out_mult"], c["out_shift"], c["table"])
    if c["k_cache"].dtype == np.int16:
        kt = np.ascontiguousarray(c["k_cache"].T)  # [kv_dim, context]
        lib.attention_host_k16t(out, c["q"], kt, *args, kt.shape[1])
    else:
        lib.attention_host_i8(out, c["q"], c["k_cache"], *args)
    assert (scratch[n:] == -12345).all(), "scratch written past pos"
    return out


@pytest.mark.parametrize("seed", range(30))
def test_attention_host(lib, seed):
    """attention_host_i8 and _k16t: kernels.attention on random cases (group sizes 1..8, head sizes 8 and 16)."""
    for c in (random_attention(seed), random_attention_k16(seed)):
        np.testing.assert_array_equal(c_attention(lib, c), K.attention(**c))


@pytest.mark.parametrize("seed", range(20))
def test_rope_k16_cols(lib, seed):
    """rope_k16_cols: kernels.rope_i16 of the token's keys, down column pos of the transposed cache, nothing else."""
    x, pos, cos_t, sin_t, head_size = random_rope_i16(seed)
    ctx = cos_t.shape[0]
    kt = np.full((x.size, ctx), 7, np.int16)
    lib.rope_k16_cols(kt, x, np.ascontiguousarray(cos_t[pos]), np.ascontiguousarray(sin_t[pos]), x.size, head_size,
                      pos, ctx)
    np.testing.assert_array_equal(kt[:, pos], K.rope_i16(x, pos, cos_t, sin_t, head_size))
    assert (np.delete(kt, pos, axis=1) == 7).all()


@pytest.mark.parametrize("name", ["pos0", "pos511", "equal_scores", "extreme", "exp_cutoff", "mult_min", "saturate",
                                  "acc_min", "acc_max", "bits8_ties", "hs128"])
def test_attention_host_edges(lib, name):
    """The edge cases of attention_i8 (tests/attention_cases.py) on the host kernel."""
    c = attention_edge(name)
    np.testing.assert_array_equal(c_attention(lib, c), K.attention(**c))


# ------------------------------------------------------------------------------------- host builds, end to end

@pytest.fixture(scope="module")
def host_compiled(model_dir):
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(ROOT / "deployments/stories260k.dply", ["target=host", *INT8_EXAMPLE])


def test_host_build_lowers_to_host_kernels(host_compiled):
    """On the host the linear layers and attention take the host rules: weights and the caches read in place."""
    from deeploy_dsl.backend.codegen import render
    rules = {s.rule for s in host_compiled.plan.steps}
    assert {"linear_i8_host", "linear_i16_host", "linear_i32_host", "rope_k16_cols_host",
            "attention_k16t_host"} <= rules
    assert not any(r.startswith(("linear_i8_cluster", "attention_k16_gqa")) for r in rules)
    files = render(host_compiled)
    assert "host.h" in files and '#include "host.h"' in files["model.c"]
    assert "linear_tile_load" not in files["model.c"] and "kv_tile_load" not in files["model.c"]
    assert "-O3 $(NATIVE_FLAGS)" in files["Makefile"]


def test_host_build_c_equals_golden(host_compiled, tmp_path):
    """The host program (built with the Makefile's -O3 -march=native) and golden: the same ids and every logit over
    40 new tokens, token by token and after a prefill of 17 prompt tokens (a chunk of 16 and one more)."""
    from test_prefill import prompt_of, run_exe
    from deeploy_dsl.engines.runner import build_c, run_golden_compiled
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("needs make and a C compiler")
    exe, pids, vocab = build_c(host_compiled, tmp_path / "build"), prompt_of(17), host_compiled.dep.model.dims.vocab
    g_ids, g_logits = run_golden_compiled(host_compiled, pids, 40, stop=False)
    t_ids, t_logits = run_exe(exe, pids, 40, tmp_path / "t.bin", vocab, prefill=False)
    p_ids, p_logits = run_exe(exe, pids, 40, tmp_path / "p.bin", vocab, prefill=True)
    assert t_ids == p_ids == g_ids
    np.testing.assert_array_equal(t_logits, g_logits)
    np.testing.assert_array_equal(p_logits, g_logits[len(pids) - 1:])


@pytest.mark.slow
def test_host_build_int4_c_equals_golden(tmp_path):
    """int4 weights on the host lower to gemv_q4_rows_*; the program equals golden on every logit (12 new tokens,
    token by token and after a prefill)."""
    from test_prefill import run_exe
    from deeploy_dsl.compiler import compile_deployment
    from deeploy_dsl.engines.runner import build_c, run_golden_compiled
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("needs make and a C compiler")
    c = compile_deployment(ROOT / "deployments/stories260k.dply", ["target=host", "quantize.weights=int4 per_group(32)"])
    assert {"linear_q4_i8_host", "linear_q4_i16_host", "linear_q4_i32_host"} <= {s.rule for s in c.plan.steps}
    exe, pids, vocab = build_c(c, tmp_path / "build"), [1, 403, 407, 261, 378], c.dep.model.dims.vocab
    g_ids, g_logits = run_golden_compiled(c, pids, 12, stop=False)
    t_ids, t_logits = run_exe(exe, pids, 12, tmp_path / "t.bin", vocab, prefill=False)
    p_ids, p_logits = run_exe(exe, pids, 12, tmp_path / "p.bin", vocab, prefill=True)
    assert t_ids == p_ids == g_ids
    np.testing.assert_array_equal(t_logits, g_logits)
    np.testing.assert_array_equal(p_logits, g_logits[len(pids) - 1:])


@pytest.mark.slow
def test_host_build_wider_queries_keeps_k_in_rows(tmp_path):
    """With int12 queries the host has no attention of its own: K stays in rows (the cluster's RoPE and attention)
    and the program still equals golden on every logit."""
    from test_prefill import run_exe
    from deeploy_dsl.compiler import compile_deployment
    from deeploy_dsl.engines.runner import build_c, run_golden_compiled
    c = compile_deployment(ROOT / "deployments/stories260k.dply", ["target=host", "quantize.queries=int12"])
    rules = {s.rule for s in c.plan.steps}
    assert "rope_k16_cols_host" not in rules and {"rope_i16_q14", "attention_q12k16_gqa", "linear_i8_host"} <= rules
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("needs make and a C compiler")
    exe, pids, vocab = build_c(c, tmp_path / "build"), [1, 403, 407, 261, 378], c.dep.model.dims.vocab
    g_ids, g_logits = run_golden_compiled(c, pids, 12, stop=False)
    t_ids, t_logits = run_exe(exe, pids, 12, tmp_path / "t.bin", vocab, prefill=False)
    assert t_ids == g_ids
    np.testing.assert_array_equal(t_logits, g_logits)
