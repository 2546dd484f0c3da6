"""The wide SwiGLU output (`swiglu int12 | int16`) and the int16 classifier (`classifier int16`): their kernels
(wide.c: gemv_x16_tok_i16, gemv_w16_tok_i32, swiglu_tok_i16 and swiglu16_tok_i16 in one call and in two passes over N
cores) compute their numpy twins' integers on the host (here) and on RV32 (test_kernels_rv32.py runs these cases),
at odd sizes and at the extremes the checker admits; the generated C equals golden on every logit for each knob alone
and both (host; QEMU 8 harts with -m slow); the checker refuses what the int32 sums cannot hold, at the line; the
NPU takes neither and the layer falls back to the cluster with a warning."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import missing_tools
from deeploy_dsl.errors import SpecError
from deeploy_dsl.kernels import twins as K
from deeploy_dsl.kernels.layout import block_rows, w16_bytes

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
KDIR = ROOT / "kernels_c"
DPLY = ROOT / "deployments/stories260k.dply"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-O2"]
SWIGLU16 = "quantize.swiglu=int16"
CLASSIFIER16 = "quantize.classifier=int16"


# ---- cases, shared with test_kernels_rv32.py -----------------------------------------------------------------------

def _tok(rng, shift: int, k: int) -> np.ndarray:
    m = int(rng.integers(1 << 31, 1 << 32))
    s = (shift + int(rng.integers(-6, 12)), 70, 63, 1, 0)[k % 5] if k % 2 else shift + int(rng.integers(-6, 12))
    return np.array([m - (1 << 32), s], np.int32)


def gemv_x16_cases():
    """(x int16, w int8, mult, tok, label): odd sizes, token shifts above 62, and the largest sums the checker admits
    (n_in 516 of 32767 x 127, of either sign)."""
    rng = np.random.default_rng(1414)
    for k, (n_out, n_in) in enumerate(((1, 1), (7, 3), (8, 172), (9, 64), (17, 5), (64, 172), (65, 2), (200, 31))):
        x = rng.integers(-32767, 32768, n_in, dtype=np.int16)
        w = rng.integers(-127, 128, (n_out, n_in), dtype=np.int8)
        mult, shift = K.layer_multipliers(10 ** rng.uniform(-2, 0, n_out) * 2.0 ** -int(rng.integers(8, 20)))
        yield x, w, mult, _tok(rng, int(shift), k), f"n_out={n_out} n_in={n_in}"
    n_in = K.wide_gemv_n_in_max(16)
    x = np.full(n_in, 32767, np.int16)
    w = np.array([[127] * n_in, [-127] * n_in, [127, -127] * (n_in // 2), [1] * n_in], np.int8)
    mult, shift = K.layer_multipliers(np.full(4, 2.0 ** -40))
    yield x, w, mult, np.array([-1, shift + 31], np.int32), "extreme n_in=516"
    yield -x, w, mult, np.array([-(1 << 31), shift + 33], np.int32), "extreme negative"


def gemv_w16_cases():
    """(x int8 within +-127, w int16, mult, tok, label): odd sizes, and n_in 516 of 127 x 32767."""
    rng = np.random.default_rng(1415)
    for k, (n_out, n_in) in enumerate(((1, 1), (5, 7), (8, 64), (13, 9), (512, 64), (33, 100))):
        x = rng.integers(-127, 128, n_in, dtype=np.int8)
        w = rng.integers(-32767, 32768, (n_out, n_in), dtype=np.int16)
        mult, shift = K.layer_multipliers(10 ** rng.uniform(-2, 0, n_out) * 2.0 ** -int(rng.integers(8, 30)))
        yield x, w, mult, _tok(rng, int(shift), k), f"n_out={n_out} n_in={n_in}"
    n_in = K.wide_gemv_n_in_max(16)
    x = np.full(n_in, -127, np.int8)
    w = np.array([[32767] * n_in, [-32767] * n_in, [1] * n_in], np.int16)
    mult, shift = K.layer_multipliers(np.full(3, 2.0 ** -20))
    yield x, w, mult, np.array([-1, shift + 31], np.int32), "extreme n_in=516"


def swiglu_wide_cases(g16: bool):
    """(gate, up, table, qmax, base_shift, label): test_pertoken's cases at both wide widths."""
    from test_pertoken import swiglu16_tok_cases, swiglu_tok_cases
    cases = swiglu16_tok_cases() if g16 else swiglu_tok_cases()
    for i, (gate, up, table, base, label) in enumerate(cases):
        yield gate, up, table, (2047, 32767)[i % 2], base, label


# ---- the kernels on the host --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("wide") / "libwide.so"
    r = subprocess.run([CC, *CFLAGS, "-shared", "-fPIC", "-o", str(out), str(KDIR / "wide.c")], capture_output=True,
                       text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    so = ctypes.CDLL(str(out))

    def arr(dt):
        return np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")
    i8, i16, i32, c32 = arr(np.int8), arr(np.int16), arr(np.int32), ctypes.c_int32
    so.gemv_x16_tok_i16.argtypes = [i16, i16, i8, i32, i32, c32, c32]
    so.gemv_w16_tok_i32.argtypes = [i32, i8, i8, i32, i32, c32, c32]
    for name, g in (("swiglu_tok_i16", i8), ("swiglu16_tok_i16", i16)):
        getattr(so, name).argtypes = [i16, i32, i32, g, g, i16, c32, c32, c32]
        for f in (name + "_span", name + "_out"):
            getattr(so, f).argtypes = [i16, i32, i32, g, g, i16, c32, c32, c32, i32, c32, c32, c32, c32]
    return so


def test_wide_bounds():
    """The checker's n_in bounds are exactly where n_in products of the widest operands leave int32."""
    for bits, top in ((12, 8260), (16, 516)):
        assert K.wide_gemv_n_in_max(bits) == top
        assert top * K.WIDE_MAX[bits] * 127 <= 2**31 - 1 < (top + 1) * K.WIDE_MAX[bits] * 127


def test_gemv_x16_tok(lib):
    for x, w, mult, tok, label in gemv_x16_cases():
        n_out, n_in = w.shape
        y = np.full(n_out + 2, 99, np.int16)
        lib.gemv_x16_tok_i16(y, x, block_rows(w).reshape(-1), mult, tok, n_in, n_out)
        np.testing.assert_array_equal(y[:n_out], K.linear_tok(x, w, mult, tok, *K.I16), err_msg=label)
        assert (y[n_out:] == 99).all(), label


def test_gemv_w16_tok(lib):
    for x, w, mult, tok, label in gemv_w16_cases():
        n_out, n_in = w.shape
        y = np.full(n_out + 2, 99, np.int32)
        wb = w16_bytes(block_rows(w), {}).reshape(-1)
        lib.gemv_w16_tok_i32(y, x, wb, mult, tok, n_in, n_out)
        np.testing.assert_array_equal(y[:n_out], K.linear_tok(x, w, mult, tok, *K.I32), err_msg=label)
        assert (y[n_out:] == 99).all(), label


@pytest.mark.parametrize("g16", [False, True])
def test_swiglu_wide(lib, g16):
    """One call, and the two passes on 2..8 cores with any shares, the second in reverse order: the twin's integers,
    the token's largest |h| at qmax."""
    from test_pertoken import random_shares
    name, twin = ("swiglu16_tok_i16", K.swiglu_tok_g16) if g16 else ("swiglu_tok_i16", K.swiglu_tok)
    for i, (gate, up, table, qmax, base, label) in enumerate(swiglu_wide_cases(g16)):
        n, cores = gate.size, 2 + i % 7
        want_h, want_tok = twin(gate, up, table, base, qmax)
        top = int(np.abs(want_h).max())  # a * 2^t is max|p| rounded up in its top 15 bits: qmax, or a step below
        assert top == 0 or qmax - 2 <= top <= qmax, label
        h, tok = np.full(n + 2, 77, np.int16), np.zeros(3, np.int32)
        getattr(lib, name)(h, tok, np.zeros(n, np.int32), gate, up, table, qmax, base, n)
        np.testing.assert_array_equal(h[:n], want_h, err_msg=label)
        assert (h[n:] == 77).all() and (tok[0], tok[1]) == want_tok and tok[2] == 0, label
        h, tok, p = np.full(n + 2, 77, np.int16), np.zeros(3, np.int32), np.zeros(n, np.int32)
        spans, shares = np.full(2 * cores, 12345, np.int32), random_shares(n, cores, i)
        for core in range(cores):
            getattr(lib, name + "_span")(h, tok, p, gate, up, table, qmax, base, n, spans, core, cores, *shares[core])
        for core in reversed(range(cores)):
            getattr(lib, name + "_out")(h, tok, p, gate, up, table, qmax, base, n, spans, core, cores, *shares[core])
        np.testing.assert_array_equal(h[:n], want_h, err_msg=f"{label} cores={cores}")
        assert (tok[0], tok[1]) == want_tok, label


# ---- end to end -----------------------------------------------------------------------------------------------------

def _check_kernels(c, swiglu: str, classifier: str, gate_up: str = "int16") -> None:
    steps = {s.op: s for s in c.plan.steps}
    sw, down, head = steps["layers.0.mlp.swiglu"], steps["layers.0.mlp.down"], steps["lm_head"]
    g = "16" if gate_up == "int16" else ""
    assert sw.kernel == (f"swiglu{g}_tok_i8" if swiglu == "int8" else f"swiglu{g}_tok_i16")
    assert down.kernel.replace("_pk", "") == ("gemv_tok_i16" if swiglu == "int8" else "gemv_x16_tok_i16")  # or packed
    assert head.kernel == ("gemv_w16_tok_i32" if classifier == "int16" else "gemv_pk_tok_i32")  # int8: streamed, packed
    if swiglu != "int8":
        assert c.quant.params["layers.0.mlp.swiglu"]["qmax"] == K.WIDE_MAX[K.SWIGLU_BITS[swiglu]]
    if classifier == "int16":
        assert c.plan.consts["lm_head.wh"].dtype == np.int8 and c.quant.consts["lm_head.wb"].dtype == np.int16


@pytest.mark.parametrize("overrides,swiglu,classifier", [
    ([SWIGLU16, CLASSIFIER16, "memory.L1=8KiB"], "int16", "int16"),  # both, weight tiles streamed
    pytest.param([SWIGLU16], "int16", "int8", marks=pytest.mark.slow),
    pytest.param(["quantize.swiglu=int12"], "int12", "int8", marks=pytest.mark.slow),
    pytest.param([CLASSIFIER16], "int8", "int16", marks=pytest.mark.slow),
])
def test_c_matches_golden(model_dir, tmp_path, overrides, swiglu, classifier):
    """Every logit, decode token by token and with prefill, on 1, 3 and 8 cores (host)."""
    from test_keys16 import check_host
    from test_pertoken import check_host_cores
    c = compile_deployment(DPLY, overrides)
    _check_kernels(c, swiglu, classifier)
    check_host(c, tmp_path, n_new=10)
    check_host_cores(c, tmp_path, (3, 8))


def test_int12_swiglu_on_int8_gate_up(model_dir, tmp_path):
    """swiglu_tok_i16 (int8 gate and up) into int12, both knobs: golden's logits from the host C."""
    from test_keys16 import check_host
    c = compile_deployment(DPLY, ["quantize.gate_up=int8", "quantize.swiglu=int12", CLASSIFIER16])
    _check_kernels(c, "int12", "int16", gate_up="int8")
    check_host(c, tmp_path, n_new=6)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_qemu_8_harts_is_bit_exact(model_dir, tmp_path):
    from test_keys16 import check_qemu
    check_qemu(compile_deployment(DPLY, [SWIGLU16, CLASSIFIER16]), tmp_path, cores=8)


def test_the_npu_falls_back_with_a_warning(model_dir):
    """Neither wide GEMV runs on the NPU: mapped there, down and lm_head fall back to the cluster with a warning at the
    hint's line (an error in strict mode)."""
    dply = ROOT / "deployments/stories260k-auto.dply"
    c = compile_deployment(dply, [SWIGLU16, CLASSIFIER16])
    steps = {s.op: s for s in c.plan.steps}
    assert steps["layers.0.mlp.down"].engine == "cluster" and steps["lm_head"].engine == "cluster"
    assert steps["layers.0.mlp.gate"].engine == "npu"
    assert any("no npu kernel implements linear" in w.message for w in c.plan.warnings)
    with pytest.raises(SpecError, match="no npu kernel implements linear"):
        compile_deployment(dply, [SWIGLU16, CLASSIFIER16], strict=True)


# ---- the checker -------------------------------------------------------------------------------------------------

def test_wide_settings_need_their_per_token_scales(model_dir):
    for overrides, words in (([SWIGLU16, "quantize.dynamic=final_norm"], "swiglu int16 needs"),
                             ([CLASSIFIER16, "quantize.dynamic=swiglu_absmax"], "classifier int16 needs")):
        with pytest.raises(SpecError) as e:
            compile_deployment(DPLY, [*overrides, "quantize.gate_up=int8"])
        d = e.value.diagnostics[0]
        assert words in d.message and d.pos.line == 1 and "dynamic" in d.hint, d.message
    with pytest.raises(SpecError, match="unsupported classifier 'int12'"):
        compile_deployment(DPLY, ["quantize.classifier=int12"])


def test_sums_beyond_int32_are_refused_at_the_line(tmp_path):
    """A model whose down projection sums 600 int16 products (hidden 600 > 516) or whose classifier sums 640 (dim 640):
    an error at the setting's line and column with its caret, and the narrower width that holds in the hint."""
    from test_sanitize import synthetic_llama
    dply = synthetic_llama(tmp_path / "model", context=64, dim=640, heads=10, hidden=600)
    text = dply.read_text().replace("map {", "quantize {\n    dynamic    final_norm, swiglu_absmax\n"
                                    "    swiglu     int16\n    classifier int16\n}\nmap {", 1)
    dply.write_text(text)
    with pytest.raises(SpecError) as e:
        compile_deployment(dply)
    lines = text.splitlines()
    got = {d.message.split(":")[0]: d for d in e.value.diagnostics}
    for key, hint in (("swiglu int16", "swiglu int12"), ("classifier int16", "classifier int8")):
        d = got[key]
        assert lines[d.pos.line - 1].strip().startswith(key.split()[0]) and d.pos.col == 5, d
        assert "beyond the int32" in d.message and hint in d.hint, d.message
    assert "hidden 600" in got["swiglu int16"].message and "dim 640" in got["classifier int16"].message
    rendered = e.value.diagnostics[0].render() if hasattr(e.value.diagnostics[0], "render") else str(e.value)
    assert "^" in rendered
    dply.write_text(text.replace("swiglu     int16", "swiglu     int12").replace("classifier int16", "classifier int8"))
    from deeploy_dsl.frontend.interpret import load_deployment
    assert load_deployment(dply).quant.swiglu == "int12"  # hidden 600 x 2047 x 127 holds
