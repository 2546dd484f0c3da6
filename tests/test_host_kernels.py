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
from attention_cases import (attention_edge, last_head_exps, out_params, random_attention,  # noqa: E402
                             random_attention_k16, random_attention_wide, random_rope_i16, score_params)
from conftest import INT8_EXAMPLE  # noqa: E402

KDIR = ROOT / "kernels_c"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
FLAG_SETS = {"native": ["-O3", "-march=native"], "O2": ["-O2"]}
STRICT = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion", "-Wshadow"]
OUT = {8: (np.int8, K.I8), 16: (np.int16, K.I16), 32: (np.int32, K.I32)}


@pytest.fixture(scope="module", params=sorted(FLAG_SETS))
def lib(request, tmp_path_factory):
    out = tmp_path_factory.mktemp("host") / f"libhost_{request.param}.so"
    cmd = [CC, *STRICT, *FLAG_SETS[request.param], "-shared", "-fPIC", "-o", str(out),
           *(str(KDIR / f) for f in ("host.c", "host_tok.c", "host_q12.c", "attention.c"))]
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
    for bits, (dt, _) in OUT.items():
        f = getattr(so, f"gemv_rows_tok_i{bits}")
        f.argtypes, f.restype = [arr(dt), i8, i8, i32, i32, c32, c32], None
    so.attention_host_q12.argtypes = [i8, i16, i8, i8, i32] + [c32] * 9 + [u16]
    so.attention_host_q12k16t.argtypes = [i8, i16, i16, i8, i32] + [c32] * 9 + [u16, c32]
    so.attention_host_q12.restype = so.attention_host_q12k16t.restype = None
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


def tok_case(seed: int):
    """gemv_case's x, W and multipliers with a token's factor {m, s}: m anywhere in 32 bits, s in every requantization
    form (33..62, below 33) and past 62 (the multipliers' low bits dropped); more rows than the kernel makes
    multipliers for at once (256) now and then."""
    x, w, mult, _, _ = gemv_case(seed)
    rng = np.random.default_rng(900 + seed)
    if seed % 6 == 5:
        w = rng.integers(-128, 128, (int(rng.integers(257, 600)), w.shape[1]), dtype=np.int8)
        mult = np.resize(mult, w.shape[0])
    s = int(rng.choice([int(rng.integers(0, 33)), int(rng.integers(33, 63)), int(rng.integers(63, 80))]))
    m = int(rng.integers(0, 2**32)) if seed % 3 else int(rng.integers(2**31, 2**32))
    return x, w, mult, np.array([m - 2**32 if m >= 2**31 else m, s], np.int32)


@pytest.mark.parametrize("seed", range(30))
def test_gemv_rows_tok(lib, seed):
    """gemv_rows_tok_iN on row-major weights with a token's factor: kernels.linear_tok, every output type."""
    x, w, mult, tok = tok_case(seed)
    for bits, (dt, bounds) in OUT.items():
        y = np.zeros(w.shape[0], dt)
        getattr(lib, f"gemv_rows_tok_i{bits}")(y, x, np.ascontiguousarray(w), mult, tok, w.shape[1], w.shape[0])
        np.testing.assert_array_equal(y, K.linear_tok(x, w, mult, tok, *bounds), err_msg=f"i{bits} tok {tok}")


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


def c_attention_q12(lib, c):
    """attention_host_q12 (int8 K in rows) or attention_host_q12k16t (int16 K transposed) on the kwargs of
    kernels.attention with int12 queries; scratch poisoned past pos + 1."""
    n = c["pos"] + 1
    scratch = np.full(n + 8, -12345, np.int32)
    out = np.zeros(c["n_heads"] * c["head_size"], np.int8)
    args = (c["v_cache"], scratch, c["pos"], c["n_heads"], c["n_kv_heads"], c["head_size"], c["score_mult"],
            c["score_shift"], c["score_cut"], c["out_mult"], c["out_shift"], c["table"])
    if c["k_cache"].dtype == np.int16:
        kt = np.ascontiguousarray(c["k_cache"].T)  # [kv_dim, context]
        lib.attention_host_q12k16t(out, c["q"], kt, *args, kt.shape[1])
    else:
        lib.attention_host_q12(out, c["q"], c["k_cache"], *args)
    assert (scratch[n:] == -12345).all(), "scratch written past pos"
    np.testing.assert_array_equal(scratch[:n], last_head_exps(c)[0], err_msg="the last head's exps")
    return out


def test_gemv_rows_tok_edges(lib):
    """acc = w (x = 1) over every int8 value with the token's factor at its edges: m 0, 1, 2^31, 2^32 - 1 and the
    largest multipliers, shifts at each form's ends (0, 1, 32, 33, 62) and past 62 (63, 64, 90)."""
    w, x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1), np.ones(1, np.int8)
    for mult in (1, 3, 1 << 30, 2**31 - 1):
        for m in (0, 1, 2**31, 2**32 - 1):
            for sh in (0, 1, 32, 33, 62, 63, 64, 90):
                mm, tok = np.full(256, mult, np.int32), np.array([m - 2**32 if m >= 2**31 else m, sh], np.int32)
                for bits, (dt, bounds) in OUT.items():
                    y = np.zeros(256, dt)
                    getattr(lib, f"gemv_rows_tok_i{bits}")(y, x, w, mm, tok, 1, 256)
                    np.testing.assert_array_equal(y, K.linear_tok(x, w, mm, tok, *bounds),
                                                  err_msg=f"mult {mult} m {m} s {sh} i{bits}")


@pytest.mark.parametrize("k_bits", [8, 16])
def test_attention_host_q12_rounds_scores_half_up(lib, k_bits):
    """q . k_t exactly halfway between two scores at positions 0, 1, 4, 5, ... (every lane of the kernel's four
    positions at a time meets both), a whole score at the others (q = e_0, k_t[0] = 2^(shift-1) * (2 (t - 7) + half),
    both signs): the halves round up, and a score unit is 2^7 in the exps' z, so halves rounded otherwise change the
    exps relative to the whole ones."""
    sh = K.score_shift(12, k_bits)
    n, hs = 15, 8  # 3 positions past the last four
    q = np.zeros(hs, np.int16)
    q[0] = 1
    k = np.zeros((n, hs), np.int8 if k_bits == 8 else np.int16)
    half = (np.arange(n) // 2 + 1) % 2
    k[:, 0] = (1 << (sh - 1)) * (2 * (np.arange(n) - n // 2) + half)  # int8: -104 .. 112, int16: -26624 .. 28672
    v = np.random.default_rng(k_bits).integers(-128, 128, (n, hs), dtype=np.int8)
    c = dict(q=q, k_cache=k, v_cache=v, pos=n - 1, n_heads=1, n_kv_heads=1, head_size=hs, **score_params(K.EXP_ONE / 4),
             **out_params(0.01, 15), table=K.exp2_table(15), qk_shift=sh)
    assert K.attn_scores(q, k, sh)[0].tolist() == (np.arange(n) - n // 2 + half).tolist()
    np.testing.assert_array_equal(c_attention_q12(lib, c), K.attention(**c))


@pytest.mark.parametrize("seed", range(30))
@pytest.mark.parametrize("k_bits", [8, 16])
def test_attention_host_q12(lib, seed, k_bits):
    """attention_host_q12 and _q12k16t: kernels.attention with int12 queries and the scores' shift 4 (int8 keys) or 12
    (int16 keys): group sizes 1..8, head sizes 8 and 16 and the largest the int32 bound admits, q and K at their
    extremes every 5th seed."""
    c = random_attention_wide(seed, 12, k_bits)
    assert c["qk_shift"] == (4 if k_bits == 8 else 12)
    np.testing.assert_array_equal(c_attention_q12(lib, c), K.attention(**c))


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
    # the int8 setting: the accurate default's int12 q and per-token-factor layers have no int4 host kernels
    c = compile_deployment(ROOT / "deployments/stories260k.dply",
                           [*INT8_EXAMPLE, "target=host", "quantize.weights=int4 per_group(32)"])
    assert {"linear_q4_i8_host", "linear_q4_i16_host", "linear_q4_i32_host"} <= {s.rule for s in c.plan.steps}
    exe, pids, vocab = build_c(c, tmp_path / "build"), [1, 403, 407, 261, 378], c.dep.model.dims.vocab
    g_ids, g_logits = run_golden_compiled(c, pids, 12, stop=False)
    t_ids, t_logits = run_exe(exe, pids, 12, tmp_path / "t.bin", vocab, prefill=False)
    p_ids, p_logits = run_exe(exe, pids, 12, tmp_path / "p.bin", vocab, prefill=True)
    assert t_ids == p_ids == g_ids
    np.testing.assert_array_equal(t_logits, g_logits)
    np.testing.assert_array_equal(p_logits, g_logits[len(pids) - 1:])


# the example's default since issue 14 (queries int12, dynamic final_norm + swiglu_absmax, smooth 0.5, gate_up int16),
# written out so the test keeps its meaning if the example's file changes
NEW_DEFAULT = ["quantize.queries=int12", "quantize.dynamic=final_norm, swiglu_absmax", "quantize.smooth=0.5",
               "quantize.gate_up=int16"]


def check_host_build(c, tmp_path, pids, n_new):
    """The host program (the Makefile's -O3 -march=native) and golden: the same ids and every logit over n_new tokens,
    token by token and after a prefill of the prompt."""
    from test_prefill import run_exe
    from deeploy_dsl.engines.runner import build_c, run_golden_compiled
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("needs make and a C compiler")
    exe, vocab = build_c(c, tmp_path / "build"), c.dep.model.dims.vocab
    g_ids, g_logits = run_golden_compiled(c, pids, n_new, stop=False)
    t_ids, t_logits = run_exe(exe, pids, n_new, tmp_path / "t.bin", vocab, prefill=False)
    p_ids, p_logits = run_exe(exe, pids, n_new, tmp_path / "p.bin", vocab, prefill=True)
    assert t_ids == p_ids == g_ids
    np.testing.assert_array_equal(t_logits, g_logits)
    np.testing.assert_array_equal(p_logits, g_logits[len(pids) - 1:])


def test_host_build_new_default_c_equals_golden(tmp_path):
    """With the example's default every linear layer and attention takes a host rule (the q projection into int12
    queries, the down projection and the classifier on a per-token factor, attention of int12 queries on the
    transposed int16 K cache), and the program equals golden on every logit over 32 new tokens, token by token and
    after a prefill of 17 prompt tokens (a chunk of 16 and one more)."""
    from test_prefill import prompt_of
    from deeploy_dsl.compiler import compile_deployment
    c = compile_deployment(ROOT / "deployments/stories260k.dply", ["target=host", *NEW_DEFAULT])
    rules = {s.rule for s in c.plan.steps}
    assert {"linear_q12_host", "linear_tok_i16_host", "linear_tok_i32_host", "rope_k16_cols_host",
            "attention_q12k16t_host"} <= rules
    assert not any(r.startswith("linear") and not r.endswith("_host") or r.endswith("_gqa") for r in rules), rules
    check_host_build(c, tmp_path, prompt_of(17), 32)


@pytest.mark.slow
@pytest.mark.parametrize("knobs, rules", [
    (["quantize.queries=int12"], {"linear_q12_host", "rope_k16_cols_host", "attention_q12k16t_host"}),
    (["quantize.queries=int12", "quantize.keys=int8"], {"linear_q12_host", "attention_q12_host"}),
    (["quantize.queries=int12", "quantize.dynamic=norm, final_norm, swiglu_absmax"],
     {"linear_q12_tok_host", "linear_tok_i8_host", "linear_tok_i16_host", "linear_tok_i32_host",
      "attention_q12k16t_host"}),
], ids=["q12", "q12_keys8", "q12_dynamic_norm"])
def test_host_build_knobs_on_host_kernels(tmp_path, knobs, rules):
    """int12 queries (with int16 or int8 keys) and per-token factors on every norm output take the host's rules for
    every linear layer and attention, and the program equals golden on every logit (12 new tokens, token by token and
    after a prefill)."""
    from deeploy_dsl.compiler import compile_deployment
    c = compile_deployment(ROOT / "deployments/stories260k.dply", ["target=host", *knobs])
    fired = {s.rule for s in c.plan.steps}
    assert rules <= fired
    assert not any(r.startswith("linear") and not r.endswith("_host") or r.endswith("_gqa") for r in fired), fired
    check_host_build(c, tmp_path, [1, 403, 407, 261, 378], 12)
