"""Per-token scales for the SwiGLU output (`dynamic swiglu` in the quantize block): swiglu_dyn_i8 picks a
power-of-two scale per token and hands the down projection its shift through a buffer. The generated C computes
golden's integers on the host (streamed tiles, int4 weights, prefill, the NPU) and on RV32 under QEMU on 8 harts. The kernel's own tests are in test_kernels_c.py and
test_kernels_rv32.py."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import INT8_EXAMPLE
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import SpecError
from deeploy_dsl.backend.plan_yaml import plan_yaml
from deeploy_dsl.engines.qemu import missing_tools

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DPLY = ROOT / "deployments/stories260k.dply"
DYN = "quantize.dynamic=swiglu"


@pytest.fixture(scope="module")
def dyn(model_dir):
    return compile_deployment(DPLY, [*INT8_EXAMPLE, DYN])


def test_the_swiglu_hands_the_down_projection_its_shift(dyn):
    steps = {s.op: s for s in dyn.plan.steps}
    sw, down = steps["layers.0.mlp.swiglu"], steps["layers.0.mlp.down"]
    assert sw.kernel == "swiglu_dyn_i8" and sw.rule == "swiglu_i8_per_token" and sw.split.unit == sw.split.count
    assert sw.args[1].name == down.args[4].name == "layers.0.mlp.swiglu_shift" and down.args[4].kind == "buf"
    assert down.staging.tiling.buffers["shift"] == ()  # no shift tiles: the kernel reads the token's
    base = dyn.quant.params["layers.0.mlp.swiglu"]["base_shift"]
    assert base == int(dyn.quant.consts["layers.0.mlp.down.shift"][0]) >= 16
    assert "per_token_scales:\n  - swiglu" in plan_yaml(dyn)


@pytest.mark.parametrize("overrides", [[], ["memory.L1=6KiB"],
                                       pytest.param(["quantize.weights=int4 per_group(32)"], marks=pytest.mark.slow)])
def test_dynamic_c_matches_golden(model_dir, tmp_path, overrides):
    from test_keys16 import check_host
    c = compile_deployment(DPLY, [*INT8_EXAMPLE, DYN] + overrides)
    check_host(c, tmp_path, n_new=24)
    text = (tmp_path / "build" / "model.c").read_text()
    assert "swiglu_dyn_i8_span(" in text and "swiglu_dyn_i8_out(" in text  # two forks over the cores


def test_the_npu_takes_the_tokens_shift(model_dir, tmp_path):
    """A decode job takes the token's shift; in prefill, where a job would have one shift for all its tokens, the
    layer runs a job per token."""
    from test_keys16 import check_host
    from test_npu_mapping import HINTS, variant
    c = compile_deployment(variant(tmp_path, "hinted", *HINTS), [*INT8_EXAMPLE, DYN])
    steps = {s.op: s for s in c.plan.steps}
    assert steps["layers.0.mlp.down"].engine == "npu" and steps["layers.0.mlp.down"].args[4].kind == "buf"
    assert not c.warnings
    check_host(c, tmp_path, n_new=12)
    model = (tmp_path / "build" / "model.c").read_text()
    assert "a job per token: each token's input has its own scale" in model


def test_dynamic_setting_is_validated(model_dir):
    with pytest.raises(SpecError, match="no per-token scale for 'attention'"):
        compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.dynamic=attention"])
    assert compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.dynamic=none"]).dep.quant.dynamic == ()


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_dynamic_qemu_8_harts_is_bit_exact(dyn, tmp_path):
    from test_keys16 import check_qemu
    check_qemu(dyn, tmp_path)
