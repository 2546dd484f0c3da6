"""GPTQ rounding (`weights ... gptq`): on the same grids as nearest rounding, a smaller output error on correlated
inputs; the calibration pass's input statistics; whole deployments stay bit-exact between golden and C."""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.quant.gptq import Hessians, gptq_int8, gptq_q4
from deeploy_dsl.backend.plan_yaml import plan_yaml
from deeploy_dsl.quant.quantize import weights_i8, weights_q4

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DPLY = ROOT / "deployments/stories260k.dply"


def correlated(rng, n: int, dim: int) -> np.ndarray:
    """Inputs with a few strong shared directions, like a layer's normalised activations."""
    return rng.standard_normal((n, 4)) @ rng.standard_normal((4, dim)) * 3 + rng.standard_normal((n, dim)) * 0.3


def output_error(w, deq, x) -> float:
    return float(np.mean(((w - deq) @ x.T) ** 2))


def test_hessians_are_the_mean_of_x_xT():
    rng = np.random.default_rng(0)
    a, b = rng.standard_normal((2, 5, 6)), rng.standard_normal((1, 3, 6))
    h = Hessians({"n"})
    h("n", a)
    h("other", b)  # not asked for: ignored
    h("n", b)
    x = np.concatenate([a.reshape(-1, 6), b.reshape(-1, 6)])
    np.testing.assert_allclose(h.mean("n"), x.T @ x / 13)
    assert set(h.sums) == {"n"}


def test_gptq_int8_keeps_the_grid_and_cuts_the_output_error():
    rng = np.random.default_rng(1)
    w, x = rng.standard_normal((48, 64)), correlated(rng, 2000, 64)
    h = x.T @ x / len(x)
    q, s = gptq_int8(w, h)
    qn, sn = weights_i8(w)
    np.testing.assert_array_equal(s, sn)  # the same scales: only the integers differ
    assert q.dtype == np.int8 and np.abs(q.astype(int)).max() <= 127
    assert output_error(w, q * s[:, None], x) < 0.5 * output_error(w, qn * sn[:, None], x)


def test_gptq_int4_keeps_the_format_and_cuts_the_output_error():
    rng = np.random.default_rng(2)
    w, x = rng.standard_normal((40, 96)), correlated(rng, 3000, 96)
    h = x.T @ x / len(x)
    h[5, :], h[:, 5] = 0, 0  # a channel that is always 0
    q, e, s = gptq_q4(w, h, 32)
    assert q.dtype == np.int8 and q.min() >= -8 and q.max() <= 7 and e.dtype == np.uint8 and e.min() >= 1
    assert not q[:, 5].any()
    deq = q * np.repeat(e.astype(float), 32, axis=1) * s[:, None]
    qn, en, sn = weights_q4(w, 32)
    near = qn * np.repeat(en.astype(float), 32, axis=1) * sn[:, None]
    x[:, 5] = 0
    assert output_error(w, deq, x) < 0.6 * output_error(w, near, x)
    q2, e2, s2 = gptq_q4(w, h, 32)
    assert (q2 == q).all() and (e2 == e).all()  # deterministic


@pytest.mark.parametrize("weights", ["int8 per_channel gptq",  # int4 with GPTQ: test_knobs's C == golden in CI
                                     pytest.param("int4 per_group(32) gptq", marks=pytest.mark.slow)])
def test_gptq_deployments_are_bit_exact(model_dir, tmp_path, weights):
    from test_keys16 import check_host
    c = compile_deployment(DPLY, [f"quantize.weights={weights}"])
    near = compile_deployment(DPLY, [f"quantize.weights={weights.replace(' gptq', '')}"])
    assert c.dep.quant.rounding == "gptq" and near.dep.quant.rounding == "nearest"
    w = c.quant.params["layers.0.mlp.down"]["weight"]
    assert c.quant.consts[w].shape == near.quant.consts[w].shape and (c.quant.consts[w] != near.quant.consts[w]).any()
    assert "GPTQ rounding" in plan_yaml(c) and "GPTQ" not in plan_yaml(near)
    check_host(c, tmp_path, n_new=16)
