"""Compile-time smoothing (`smooth alpha = A` in the quantize block, quant/smooth.py): SmoothQuant into q/k/v and
gate/up and the final norm's gain folded into the classifier are exact rewrites of the float model; the setting is
checked at its line; the generated C computes golden's integers with it (host, and RV32 under QEMU on 1 and 8 harts,
token by token and with prefill)."""
from __future__ import annotations

import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from conftest import invoke
from deeploy_dsl.backend.plan_yaml import plan_yaml
from deeploy_dsl.compiler import compile_deployment, load_tokenizer
from deeploy_dsl.engines.qemu import missing_tools
from deeploy_dsl.errors import SpecError
from deeploy_dsl.frontend.interpret import load_deployment
from deeploy_dsl.model.float_model import FloatModel
from deeploy_dsl.model.weights import load_weights
from deeploy_dsl.quant.smooth import channel_maxes, smooth, smoothing_factors

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DPLY = ROOT / "deployments/stories260k.dply"
SMALL_CAL = "quantize.activations=int8 calibrate(samples, tokens = 512, stat = percentile(99.99))"  # cheap in CI
SMOOTH = ["quantize.smooth=alpha = 0.5", SMALL_CAL]


def _f64(fm: FloatModel) -> FloatModel:
    """The same model computed in float64, so that the comparison sees the rewrite, not float32's rounding."""
    w = fm.w
    lw = tuple(replace(x, **{k: getattr(x, k).astype(np.float64) for k in
                             ("att_norm", "wq", "wk", "wv", "wo", "ffn_norm", "w1", "w2", "w3")}) for x in w.layers)
    return FloatModel(replace(w, embed=w.embed.astype(np.float64), final_norm=w.final_norm.astype(np.float64),
                              lm_head=w.lm_head.astype(np.float64), layers=lw), fm.d)


@pytest.fixture(scope="module")
def models(model_dir):
    dep = load_deployment(DPLY, SMOOTH)
    fm = FloatModel(load_weights(dep.model), dep.model.dims)
    return dep, fm, FloatModel(smooth(fm, dep.quant.calibration, 0.5, load_tokenizer(dep)), fm.d)


def test_smoothing_is_an_exact_rewrite(models):
    dep, fm, sm = models
    ids = np.random.default_rng(0).integers(0, fm.d.vocab, (2, 48))
    a, b = (_f64(m).forward(ids, 0, _f64(m).new_cache(2)) for m in (fm, sm))
    assert np.abs(a - b).max() < 1e-5  # the smoothed weights are rounded to float32 once: ~5e-6 here
    f32 = sm.forward(ids, 0, sm.new_cache(2))
    assert np.abs(f32 - a).max() < 1e-4  # float32 evaluation alone is ~2e-5 off float64 on this model
    # and it did rewrite: the final norm has unit gain, the classifier is no longer the embedding
    np.testing.assert_array_equal(sm.w.final_norm, np.ones_like(fm.w.final_norm))
    assert not np.array_equal(sm.w.lm_head, sm.w.embed) and np.array_equal(sm.w.embed, fm.w.embed)
    assert fm.d.tied and fm.w.lm_head is fm.w.embed


def test_alpha_one_half_gives_activations_and_weights_one_range_per_channel(models):
    """SmoothQuant's balance: with alpha 0.5 each norm output channel's range equals its weight columns' (joint over
    q, k and v, and over gate and up), on the calibration tokens."""
    dep, fm, sm = models
    x_max = channel_maxes(sm, dep.quant.calibration)
    for i, lw in enumerate(sm.w.layers):
        for norm, ws in (("attn_norm", (lw.wq, lw.wk, lw.wv)), ("mlp_norm", (lw.w1, lw.w3))):
            w_max = np.max([np.abs(w).max(axis=0) for w in ws], axis=0)
            np.testing.assert_allclose(x_max[f"layers.{i}.{norm}"], w_max, rtol=1e-4)
    before = channel_maxes(fm, dep.quant.calibration)["layers.1.attn_norm"]
    assert before.max() / before.min() > 1.5 * x_max["layers.1.attn_norm"].max() / x_max["layers.1.attn_norm"].min()


def test_smoothing_factors_by_hand():
    x = np.array([4.0, 1.0, 0.0, 9.0])
    w1, w2 = np.array([[1.0, 2.0, 3.0, 0.0]]), np.array([[-4.0, 0.5, 1.0, 0.0]])
    s = smoothing_factors(x, [w1, w2], 0.5)
    # sqrt(max|x_j|) / sqrt(max over both layers of |W[:, j]|); a zero channel on either side keeps s = 1
    np.testing.assert_allclose(s, [np.sqrt(4.0 / 4.0), np.sqrt(1.0 / 2.0), 1.0, 1.0])
    np.testing.assert_allclose(smoothing_factors(x, [w1], 1.0), [4.0, 1.0, 1.0, 1.0])
    np.testing.assert_allclose(smoothing_factors(x, [w1], 0.0), [1.0, 0.5, 1.0, 1.0])  # channel 2 reads nothing


@pytest.mark.parametrize("value,alpha", [("alpha = 0.5", 0.5), ("0.25", 0.25), ("alpha = 1", 1.0), ("none", None)])
def test_smooth_setting_values(model_dir, value, alpha):
    dep = load_deployment(DPLY, [f"quantize.smooth={value}"])
    assert dep.quant.smooth == alpha
    assert load_deployment(DPLY, ["quantize.smooth=none"]).quant.smooth is None
    assert load_deployment(DPLY).quant.smooth == 0.5  # the example's setting


@pytest.mark.parametrize("value,message,col", [
    ("alpha = 1.5", "smooth alpha must be a number from 0 to 1, got 1.5", 28),
    ("alpha = -0.1", "smooth alpha must be a number from 0 to 1, got -0.1", 28),
    ("alpha = big", "smooth alpha must be a number from 0 to 1, got big", 28),
    ("beta = 0.5", "unknown smooth parameter 'beta'", 20),
    ("0.5 0.7", "'smooth' expects 'smooth alpha = A'", 24),
    ('"0.5"', "'smooth' expects 'smooth alpha = A'", 20),
])
def test_bad_smooth_values_are_errors_at_their_column(model_dir, value, message, col):
    with pytest.raises(SpecError) as e:
        load_deployment(DPLY, [f"quantize.smooth={value}"])
    d = e.value.diagnostics[0]
    assert message in d.message and d.pos.file == "<command line>" and d.pos.col == col


def test_a_bad_smooth_line_in_a_file(model_dir, tmp_path):
    text = DPLY.read_text().replace("    kv_cache    int8\n", "    kv_cache    int8\n    smooth      alpha = 2\n")
    text = text.replace('"../../shared/', f'"{model_dir.parent.parent}/shared/')
    bad = tmp_path / "bad.dply"
    bad.write_text(text)
    res = invoke("check", bad)
    line = text.splitlines().index("    smooth      alpha = 2") + 1
    assert res.returncode == 1 and "Traceback" not in res.stderr
    assert f"bad.dply:{line}:25: error: smooth alpha must be a number from 0 to 1, got 2" in res.stderr
    assert "smooth      alpha = 2\n" in res.stderr and "^" in res.stderr


@pytest.fixture(scope="module")
def smoothed(model_dir):
    return compile_deployment(DPLY, SMOOTH)


def test_smoothed_c_matches_golden(smoothed, tmp_path):
    from test_keys16 import check_host
    assert smoothed.dep.quant.smooth == 0.5
    assert "smoothing: SmoothQuant alpha 0.5" in plan_yaml(smoothed)
    check_host(smoothed, tmp_path, n_new=8)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_smoothed_qemu_1_and_8_harts_are_bit_exact(smoothed, tmp_path):
    from test_keys16 import check_qemu
    check_qemu(smoothed, tmp_path / "8", cores=8)
    check_qemu(smoothed, tmp_path / "1", cores=1, n_new=3)


# ---- `smooth alpha = A, down = D`: the SwiGLU output smoothed into the down projection, through up's rows

@pytest.fixture(scope="module")
def down_models(model_dir):
    dep = load_deployment(DPLY, ["quantize.smooth=alpha = 0.5, down = 0.5", SMALL_CAL])
    fm = FloatModel(load_weights(dep.model), dep.model.dims)
    tok = load_tokenizer(dep)
    plain = FloatModel(smooth(fm, dep.quant.calibration, 0.5, tok), fm.d)
    return dep, fm, plain, FloatModel(smooth(fm, dep.quant.calibration, 0.5, tok, down=0.5), fm.d)


def test_down_smoothing_is_an_exact_rewrite(down_models):
    dep, fm, plain, sm = down_models
    ids = np.random.default_rng(1).integers(0, fm.d.vocab, (2, 48))
    a, b = (_f64(m).forward(ids, 0, _f64(m).new_cache(2)) for m in (fm, sm))
    assert np.abs(a - b).max() < 1e-5
    # it rewrote up and down only, on top of the norms' smoothing
    for lp, ls in zip(plain.w.layers, sm.w.layers):
        assert not np.array_equal(lp.w2, ls.w2) and not np.array_equal(lp.w3, ls.w3)
        for k in ("wq", "wk", "wv", "wo", "w1", "att_norm", "ffn_norm"):
            np.testing.assert_array_equal(getattr(lp, k), getattr(ls, k))


def test_down_one_half_gives_the_swiglu_output_and_down_one_range_per_channel(down_models):
    dep, fm, plain, sm = down_models
    x_max = channel_maxes(sm, dep.quant.calibration)
    for i, lw in enumerate(sm.w.layers):
        np.testing.assert_allclose(x_max[f"layers.{i}.mlp.swiglu"], np.abs(lw.w2).max(axis=0), rtol=1e-4)
    before = channel_maxes(fm, dep.quant.calibration)["layers.0.mlp.swiglu"]
    after = x_max["layers.0.mlp.swiglu"]
    assert before.max() / before.min() > 1.5 * after.max() / after.min()


@pytest.mark.parametrize("value,alpha,down", [("alpha = 0.5, down = 0.5", 0.5, 0.5), ("0.25, down = 1", 0.25, 1.0),
                                              ("alpha = 0.5", 0.5, None), ("none", None, None)])
def test_smooth_down_setting_values(model_dir, value, alpha, down):
    q = load_deployment(DPLY, [f"quantize.smooth={value}"]).quant
    assert (q.smooth, q.smooth_down) == (alpha, down)


@pytest.mark.parametrize("value,message,col", [
    ("alpha = 0.5, down = 2", "smooth down must be a number from 0 to 1, got 2", 40),
    ("alpha = 0.5, up = 0.5", "'smooth' expects 'smooth alpha = A'", 33),
    ("down = 0.5", "smooth down follows alpha", 20),
    ("alpha = 0.5, down = 0.5, down = 0.5", "'smooth' expects 'smooth alpha = A'", 45),
])
def test_bad_smooth_down_values_are_errors_at_their_column(model_dir, value, message, col):
    with pytest.raises(SpecError) as e:
        load_deployment(DPLY, [f"quantize.smooth={value}"])
    d = e.value.diagnostics[0]
    assert message in d.message and d.pos.col == col


@pytest.fixture(scope="module")
def down_smoothed(model_dir):
    return compile_deployment(DPLY, ["quantize.smooth=alpha = 0.5, down = 0.5", SMALL_CAL, "quantize.gate_up=int16",
                                     "quantize.dynamic=final_norm, swiglu_absmax"])


def test_down_smoothed_c_matches_golden(down_smoothed, tmp_path):
    from test_keys16 import check_host
    assert "the SwiGLU output by 0.5 into down" in plan_yaml(down_smoothed)
    check_host(down_smoothed, tmp_path, n_new=8)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_down_smoothed_qemu_8_harts_is_bit_exact(down_smoothed, tmp_path):
    from test_keys16 import check_qemu
    check_qemu(down_smoothed, tmp_path / "8", cores=8)
