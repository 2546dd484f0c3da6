"""int4 weights with a scale per group of input channels (`weights int4 per_group(G)`): the q4 layout
(layout.q4_pack), the quantizer's choice of group scales, gemv_q4_i8/i16/i32 on the host against their twin
kernels.linear_q4, and whole deployments: golden == C (ids and every logit) on the host with tiled and forked
layers and prefill, and on RV32 under QEMU on 8 harts. RV32 kernel cases are in test_kernels_rv32.py."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels import layout as L  # noqa: E402
from conftest import INT8_EXAMPLE  # noqa: E402
from deeploy_dsl.compiler import compile_deployment  # noqa: E402
from deeploy_dsl.errors import SpecError  # noqa: E402
from deeploy_dsl.backend.plan_yaml import plan_yaml  # noqa: E402
from deeploy_dsl.engines.qemu import missing_tools  # noqa: E402
from deeploy_dsl.quant.quantize import weights_q4  # noqa: E402

DPLY = ROOT / "deployments/stories260k.dply"
INT4 = "quantize.weights=int4 per_group(32)"
CC = os.environ.get("CC") or shutil.which("cc") or "gcc"
DTYPES = {8: np.int8, 16: np.int16, 32: np.int32}
BOUNDS = {8: K.I8, 16: K.I16, 32: K.I32}


# ---- layout ----------------------------------------------------------------------------------------------------


def test_q4_layout_by_hand():
    """Two rows' nibbles a byte: 16 * q[2j+1] + q[2j] + 8; a block is its rows' group scales, then the columns."""
    q = np.zeros((8, 2), np.int8)
    q[0, 0], q[1, 0] = -8, 7  # byte 0 of column 0: 16 * 7 + 0 = 112
    q[2, 0], q[3, 0] = 7, -8  # byte 1: -128 + 15 = -113
    q[6, 1], q[7, 1] = 3, -1  # byte 3 of column 1: -16 + 11 = -5
    e = np.arange(1, 9, dtype=np.uint8).reshape(8, 1)
    wq = L.q4_pack(q, e, 8)
    assert wq.shape == (1, 8 * L.q4_row_bytes(2, 8)) == (1, 16)
    assert list(wq[0, :8].view(np.uint8)) == list(range(1, 9))
    assert list(wq[0, 8:12]) == [112, -113, 8, 8] and list(wq[0, 12:16]) == [8, 8, 8, -5]


@pytest.mark.parametrize("n_out, n_in, group", [(1, 2, 8), (8, 64, 32), (13, 172, 32), (64, 172, 16), (17, 44, 256),
                                                (9, 10, 8)])
def test_q4_pack_round_trips(n_out, n_in, group):
    rng = np.random.default_rng(n_out * 1000 + n_in)
    q = rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
    e = rng.integers(0, 256, (n_out, L.q4_groups(n_in, group))).astype(np.uint8)
    wq = L.q4_pack(q, e, group)
    assert wq.nbytes == L.padded_rows(n_out) * L.q4_row_bytes(n_in, group)
    q2, e2 = L.q4_unpack(wq, n_out, n_in, group)
    np.testing.assert_array_equal(q2, q)
    np.testing.assert_array_equal(e2, e)


def test_q4_layout_refuses_what_it_cannot_hold():
    with pytest.raises(ValueError, match="even"):
        L.q4_row_bytes(63, 32)
    with pytest.raises(ValueError, match=r"\[-8, 7\]"):
        L.q4_pack(np.full((2, 4), 8, np.int8), np.ones((2, 1), np.uint8), 8)


# ---- quantizer -------------------------------------------------------------------------------------------------


def test_group_scales_beat_nearest_rounding_at_the_group_max():
    rng = np.random.default_rng(0)
    w = rng.standard_normal((24, 96)) * np.exp(rng.standard_normal((24, 1)))  # rows of different magnitudes
    w[3] = 0.0  # an all-zero row
    w[5, 40] = 25.0  # an outlier in one group
    q, e, s = weights_q4(w, 32)
    assert q.dtype == np.int8 and q.min() >= -8 and q.max() <= 7
    assert e.dtype == np.uint8 and e.min() >= 1 and s.shape == (24,) and np.all(s > 0)
    assert not q[3].any()
    deq = q * np.repeat(e.astype(np.float64), 32, axis=1) * s[:, None]
    # nearest rounding on each group's own max (scale max/7, no clip search, no integer group scales)
    g = np.abs(w.reshape(24, 3, 32)).max(axis=2, keepdims=True) / 7
    g[g == 0] = 1
    rtn = (np.clip(np.round(w.reshape(24, 3, 32) / g), -8, 7) * g).reshape(24, 96)
    assert ((deq - w) ** 2).sum() < ((rtn - w) ** 2).sum()
    # the outlier's group does not cost the row's other groups their precision
    assert np.abs(deq[5, :32] - w[5, :32]).max() <= 0.6 * np.abs(w[5, :32]).max() / 7
    q2, e2, s2 = weights_q4(w, 32)
    assert (q2 == q).all() and (e2 == e).all() and (s2 == s).all()


# ---- the kernels on the host ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemv_q4") / "libgemv.so"
    cmd = [CC, "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-shared", "-fPIC", "-o", str(out),
           str(ROOT / "kernels_c/gemv.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    so = ctypes.CDLL(str(out))
    arr = lambda dt: np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")  # noqa: E731
    for bits in (8, 16, 32):
        f = getattr(so, f"gemv_q4_i{bits}")
        f.argtypes = [arr(DTYPES[bits]), arr(np.int8), arr(np.int8), arr(np.int32), arr(np.uint8), ctypes.c_int32,
                      ctypes.c_int32, ctypes.c_int32]
        f.restype = None
    return so


def c_gemv_q4(lib, bits, x, q, e, group, mult, shift):
    """gemv_q4_i<bits> on q4_pack(q, e); y has guard elements after n_out that must stay untouched, and only
    shift[0] may be read."""
    n_out, n_in = q.shape
    guard = np.iinfo(DTYPES[bits]).max - 3
    y = np.full(n_out + 8, guard, DTYPES[bits])
    shifts = np.full(max(n_out, 1), 200, np.uint8)
    shifts[0] = shift
    getattr(lib, f"gemv_q4_i{bits}")(y, np.ascontiguousarray(x, np.int8), L.q4_pack(q, e, group).reshape(-1),
                                     np.ascontiguousarray(mult, np.int32), shifts, n_in, n_out, group)
    assert (y[n_out:] == guard).all(), "gemv_q4 wrote past n_out"
    return y[:n_out]


@pytest.mark.parametrize("seed", range(60))
def test_gemv_q4_matches_its_twin(lib, seed):
    rng = np.random.default_rng(9000 + seed)
    group = int(rng.choice([8, 16, 32, 64, 128, 256]))
    n_in, n_out = 2 * int(rng.integers(1, 200)), int(rng.integers(1, 50))
    x = rng.integers(-128, 128, n_in).astype(np.int8)
    q = rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
    e = rng.integers(1, 256, (n_out, L.q4_groups(n_in, group))).astype(np.uint8)
    if seed % 6 == 0:  # the largest accumulators of both signs
        x[:], e[:] = -128, 255
        q[: n_out // 2], q[n_out // 2:] = -8, 7
    top = 10.0 ** rng.uniform(-14, -5) if seed % 4 else 10.0 ** rng.uniform(-5, 2)  # every requantization form
    mult, shift = K.layer_multipliers(10 ** rng.uniform(-1, 0, n_out) * top)
    for bits in (8, 16, 32):
        np.testing.assert_array_equal(c_gemv_q4(lib, bits, x, q, e, group, mult, shift),
                                      K.linear_q4(x, q, e, group, mult, shift, *BOUNDS[bits]),
                                      err_msg=f"gemv_q4_i{bits} {q.shape} G={group} shift {shift}")


def test_gemv_q4_at_the_largest_input(lib):
    """n_in = 8192 (the compiler's bound) of extreme products: the int32 accumulators hold."""
    n_in, group = 8192, 32
    x = np.full(n_in, -128, np.int8)
    q = np.full((3, n_in), -8, np.int8)
    q[1] = 7
    e = np.full((3, n_in // group), 255, np.uint8)
    acc = K.linear_q4(x, q, e, group, np.full(3, 1, np.int32), 0, *K.I32)
    assert acc[0] == 255 * 8 * 128 * n_in < 2**31
    for shift in (0, 20, 40):
        mult = np.full(3, 1 << 30, np.int32)
        for bits in (8, 16, 32):
            np.testing.assert_array_equal(c_gemv_q4(lib, bits, x, q, e, group, mult, shift),
                                          K.linear_q4(x, q, e, group, mult, shift, *BOUNDS[bits]))


# ---- deployments -------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def int4(model_dir):
    return compile_deployment(DPLY, [*INT8_EXAMPLE, INT4])


def test_int4_deployment_uses_q4_kernels_and_half_the_weight_bytes(int4, compiled):
    kernels = {s.op: s.kernel for s in int4.plan.steps}
    assert kernels["layers.0.attn.q"] == "gemv_q4_i8" and kernels["layers.0.mlp.down"] == "gemv_q4_i16"
    assert kernels["lm_head"] == "gemv_q4_i32" and kernels["embed"] == "embed_i16"  # the embedding table stays int8
    lin = [s.op for s in compiled.plan.steps if s.kernel.startswith("gemv")]
    b8 = sum(compiled.quant.consts[compiled.quant.params[o]["weight"]].nbytes for o in lin)  # as quantized (blocked int8)
    b4 = sum(int4.plan.consts[int4.quant.params[o]["weight"]].nbytes for o in lin)
    assert 0.5 < b4 / b8 < 0.56  # nibbles plus one byte per 32 weights
    assert "weights: int4 per_group(32), uint8 group scales times one per row symmetric" in plan_yaml(int4)


SLOW = pytest.mark.slow  # CI time: the kernel tests above cover every group size


@pytest.mark.parametrize("overrides", [[], pytest.param(["memory.L1=16KiB"], marks=SLOW), ["memory.L1=6KiB"],
                                       pytest.param(["quantize.weights=int4 per_group(8)"], marks=SLOW),
                                       ["quantize.weights=int4 per_group(256)", "memory.L1=12KiB"]])
def test_int4_c_matches_golden(model_dir, tmp_path, overrides):
    """Whole tiles, streamed double-buffered tiles, fork groups, every group size: ids and every logit, token by
    token and with prefill."""
    from test_keys16 import check_host
    c = compile_deployment(DPLY, [INT4] + overrides)
    tiled = [s for s in c.plan.steps if s.kernel.startswith("gemv_q4")]
    assert tiled and all(s.staging.tiling is not None and s.staging.tiling.kind == "rows" for s in tiled)
    if "memory.L1=6KiB" in overrides:
        assert any(s.staging.tiles > 1 for s in tiled)
    check_host(c, tmp_path, n_new=24)


def test_int4_layers_mapped_to_the_npu_run_on_the_cluster(model_dir, tmp_path):
    from test_npu_mapping import HINTS, variant
    path = variant(tmp_path, "hinted", *HINTS)
    c = compile_deployment(path, [INT4])
    assert not any(s.engine == "npu" for s in c.plan.steps)
    msg = [w.render() for w in c.warnings]
    assert any("the NPU takes int8 weights" in m and "run on the cluster" in m for m in msg), msg
    with pytest.raises(SpecError, match="the NPU takes int8 weights"):
        compile_deployment(path, [INT4], strict=True)
    auto = compile_deployment(variant(tmp_path, "auto", "layers[*].* -> auto", "lm_head -> auto"), [INT4])
    lm = next(s for s in auto.plan.steps if s.op == "lm_head")
    assert lm.engine == "cluster" and "int4" in lm.reason


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_int4_qemu_8_harts_is_bit_exact(int4, tmp_path):
    from test_keys16 import check_qemu
    check_qemu(int4, tmp_path)


# ---- per-layer formats -------------------------------------------------------------------------------------------


def with_quantize_lines(tmp_path: Path, name: str, *lines: str, weights: str = "int4 per_group(32)") -> Path:
    """stories260k.dply with `weights` and extra lines in its quantize block (weights by absolute path)."""
    text = DPLY.read_text().replace('"../../shared', f'"{ROOT.parent}/shared')
    text = text.replace("weights     int8 per_channel", f"weights     {weights}\n    " + "\n    ".join(lines), 1)
    path = tmp_path / f"{name}.dply"
    path.write_text(text)
    return path


def test_per_layer_formats_later_lines_win(model_dir, tmp_path):
    from test_keys16 import check_host
    path = with_quantize_lines(tmp_path, "mixed", "layers[*].attn.* -> int8", "layers[1].attn.o -> int4(16)",
                               "lm_head -> int8")
    c = compile_deployment(path, list(INT8_EXAMPLE))
    k = {s.op: s.kernel for s in c.plan.steps}
    # int8 layers take the blocked GEMV, or the packed one where the cost model prefers it (the same integers)
    assert k["layers.0.attn.q"].replace("_pk", "") == "gemv_i8" and k["layers.0.attn.o"].replace("_pk", "") == "gemv_i16"
    assert k["lm_head"] == "gemv_pk_i32"
    assert k["layers.1.attn.o"] == "gemv_q4_i16" and c.quant.params["layers.1.attn.o"]["group"] == 16
    assert k["layers.0.mlp.gate"] == "gemv_q4_i8" and c.quant.params["layers.0.mlp.gate"]["group"] == 32
    assert "lm_head -> int8 (line " in plan_yaml(c)
    check_host(c, tmp_path, n_new=16)


def test_int8_layers_of_a_mixed_model_still_go_to_the_npu(model_dir, tmp_path):
    path = with_quantize_lines(tmp_path, "mlp4", "layers[*].mlp.* -> int4(32)", weights="int8 per_channel")
    text = path.read_text().replace("lm_head -> cluster", "lm_head -> cluster\n    layers[*].* -> npu")
    path.write_text(text)
    c = compile_deployment(path, list(INT8_EXAMPLE))
    e = {s.op: (s.engine, s.kernel) for s in c.plan.steps}
    assert e["layers.0.attn.q"] == ("npu", "npu_linear_i8") and e["layers.0.mlp.up"] == ("cluster", "gemv_q4_i8")
    msg = [w.render() for w in c.warnings]
    assert any("layers.0.mlp.gate and 14 more have int4 weights" in m for m in msg), msg


@pytest.mark.parametrize("line, message", [
    ("embed -> int8", "'embed' matches no linear layer"),
    ("lm_head -> int3", "unknown weight format 'int3' for lm_head"),
    ("lm_head -> int4(12)", "unsupported group size 12"),
])
def test_per_layer_format_errors_point_at_the_line(model_dir, tmp_path, line, message):
    path = with_quantize_lines(tmp_path, "bad", line)
    with pytest.raises(SpecError) as info:
        compile_deployment(path)
    d = next(d for d in info.value.diagnostics if message in d.message)
    lines = path.read_text().split("\n")
    assert lines[d.pos.line - 1].strip().startswith(line) and d.pos.source_line().strip().startswith(line)


def test_int4_alone_needs_an_int4_default(model_dir, tmp_path):
    path = with_quantize_lines(tmp_path, "bad", "lm_head -> int4", weights="int8 per_channel")
    with pytest.raises(SpecError, match="unknown weight format 'int4' for lm_head"):
        compile_deployment(path)
