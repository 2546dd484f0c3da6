"""`deeploy eval`: the metrics by hand on tiny distributions, then on the real model and through the CLI; its
sequences are held out from the calibration's (heldout.py)."""
from __future__ import annotations

import json
import math
import subprocess

import numpy as np
import pytest

from dataclasses import replace

from conftest import DPLY, deeploy_cmd
from deeploy_dsl.engines.evaluate import bootstrap_ci, compare, eval_set, evaluate, per_layer
from deeploy_dsl.engines.heldout import EvalSet, check_held_out, from_text
from deeploy_dsl.errors import SpecError
from deeploy_dsl.quant.quantize import calibration_ids


def test_identical_models_agree_perfectly():
    rng = np.random.default_rng(0)
    f = rng.normal(size=(3, 5, 7))
    r = compare(f, f + 2.5, rng.integers(0, 7, (3, 5)))  # a constant shift changes no distribution
    assert r["top1_agreement"] == 1.0 and r["ppl_ratio"] == pytest.approx(1.0) and r["kl_mean"] == pytest.approx(0.0)
    assert r["ppl_float"] == pytest.approx(r["ppl_int"])


def test_metrics_by_hand():
    """Two tokens: float says (1/4, 3/4), int says (3/4, 1/4), the true next token is the second one."""
    f = np.log(np.array([[0.25, 0.75]]))
    i = np.log(np.array([[0.75, 0.25]]))
    r = compare(f, i, np.array([1]))
    assert r["top1_agreement"] == 0.0
    assert r["ppl_float"] == pytest.approx(4 / 3) and r["ppl_int"] == pytest.approx(4.0)
    assert r["ppl_ratio"] == pytest.approx(3.0)
    assert r["kl_mean"] == pytest.approx(0.25 * math.log(1 / 3) + 0.75 * math.log(3))


def test_metrics_average_over_positions():
    """Position 1 agrees, position 2 does not: half the positions, the mean of the two KLs and NLLs."""
    f = np.log(np.array([[0.5, 0.25, 0.25], [0.1, 0.1, 0.8]]))
    i = np.log(np.array([[0.5, 0.25, 0.25], [0.8, 0.1, 0.1]]))
    r = compare(f, i, np.array([0, 2]))
    assert r["top1_agreement"] == 0.5
    assert r["ppl_float"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.8)) / 2))
    assert r["ppl_int"] == pytest.approx(math.exp(-(math.log(0.5) + math.log(0.1)) / 2))
    kl2 = 0.1 * math.log(0.1 / 0.8) + 0.8 * math.log(0.8 / 0.1)
    assert r["kl_mean"] == pytest.approx(kl2 / 2)


def test_bootstrap_interval():
    hits = np.array([[1, 1, 1, 0], [1, 0, 1, 1], [1, 1, 1, 1], [0, 1, 1, 1], [1, 1, 0, 1]], np.float64)
    lo, hi = bootstrap_ci(hits)
    assert lo < hits.mean() < hi and 0.5 <= lo and hi <= 1.0
    assert bootstrap_ci(hits) == [lo, hi]  # seeded: the same interval every time
    assert bootstrap_ci(np.ones((7, 9))) == [1.0, 1.0] and bootstrap_ci(hits[:1]) is None
    # sequences are resampled whole: a sequence that is all wrong widens the interval more than scattered misses
    lumped = np.ones((8, 16))
    lumped[0] = 0
    spread = np.ones((8, 16))
    spread[np.arange(8), np.arange(8) * 2] = 0
    spread[np.arange(8), np.arange(8) * 2 + 1] = 0
    assert lumped.mean() == spread.mean()
    assert np.diff(bootstrap_ci(lumped))[0] > 3 * np.diff(bootstrap_ci(spread))[0]


def test_eval_sequences_are_held_out_from_calibration(compiled):
    """The issue's check: before, eval's default seed-0 samples were the calibration's (np.array_equal); now the eval
    samples in its own stream, for the default seed and for a seed equal to the calibration's."""
    c, cal, n = compiled, compiled.dep.quant.calibration, 48
    calib = np.stack(calibration_ids(c.fm, cal, c.tokenizer, n))
    assert cal.source == "samples" and cal.seed == 0 and calib.shape == (16, n)
    assert np.array_equal(c.fm.sample(16, n, 0), calib)  # the old default, which the eval no longer draws
    for seed, cc in ((0, c), (7, replace(c, dep=replace(c.dep, quant=replace(c.dep.quant, calibration=replace(cal, seed=7)))))):
        calib = np.stack(calibration_ids(cc.fm, cc.dep.quant.calibration, cc.tokenizer, n))
        ev = eval_set(cc, 16, n, seed)
        assert not np.array_equal(ev.ids, calib) and ev.source == {"kind": "samples", "seed": seed, "stream": "eval"}
        assert not any(np.array_equal(e, k) for e in ev.ids for k in calib)
    # the calibration's own samples, handed to the eval, are refused, not measured
    with pytest.raises(SpecError, match="eval sequence 0 is calibration sequence 0 over its first 64 tokens"):
        check_held_out(c, EvalSet(np.stack(calibration_ids(c.fm, cal, c.tokenizer, 64)), {"kind": "samples"}))


def test_eval_on_a_text_file(compiled, tmp_path):
    c = compiled
    text = tmp_path / "stories.txt"
    text.write_text("Tom had a red ball. He liked to throw it high in the sky. " * 12)
    ev = from_text(c, text, 3, 20)
    ids = c.tokenizer.encode(text.read_text(), bos=False)
    assert ev.ids.shape == (3, 20) and (ev.ids[:, 0] == 1).all()
    np.testing.assert_array_equal(ev.ids[:, 1:].ravel(), ids[:57])
    assert ev.source == {"kind": "text", "path": str(text), "tokens": 57}
    assert from_text(c, text, 1000, 20).ids.shape[0] == len(ids) // 19  # as many as the text holds
    with pytest.raises(SpecError, match="fewer than one sequence"):
        from_text(c, text, 2, 500)
    # the calibration's text (or a copy of it) is refused
    copy = tmp_path / "copy.txt"
    copy.write_bytes(text.read_bytes())
    cc = replace(c, dep=replace(c.dep, quant=replace(c.dep.quant, calibration=replace(c.dep.quant.calibration,
                                                                                   source=str(text)))))
    for path in (text, copy):
        with pytest.raises(SpecError, match="is the calibration text"):
            check_held_out(cc, from_text(cc, path, 3, 20))


def test_evaluate_the_real_model(compiled):
    r = evaluate(compiled, sequences=2, length=24, seed=3, prompts=("Once upon a time",))
    assert r["positions"] == 2 * 23 and r["source"] == {"kind": "samples", "seed": 3, "stream": "eval"}
    lo, hi = r["top1_ci95"]
    assert lo <= r["top1_agreement"] <= hi and r["kl_ci95"][0] <= r["kl_mean"] <= r["kl_ci95"][1]
    assert 0.5 < r["top1_agreement"] <= 1.0 and 0.9 < r["ppl_ratio"] < 1.2 and r["kl_mean"] >= 0
    at = r["greedy_divergence"]["Once upon a time"]
    assert at is None or 0 <= at < 64
    assert evaluate(compiled, sequences=2, length=24, seed=3, prompts=()) == {**r, "greedy_divergence": {}}
    d = compiled.dep.model.dims  # int8 weights, rows padded to blocks of 8: q, k, v, o, gate, up, down, lm_head
    per_layer = d.dim * (d.dim + 2 * d.kv_dim + d.dim) + 2 * 176 * d.dim + d.dim * d.hidden
    assert r["linear_weight_bytes"] == d.layers * per_layer + d.vocab * d.dim
    assert r["const_bytes"] == sum(v.nbytes for v in compiled.plan.consts.values()) > r["linear_weight_bytes"]


def test_per_layer_ranks_every_layer(compiled):
    rows = per_layer(compiled, sequences=2, length=16, seed=1)
    assert sorted(r["layer"] for r in rows if r["layer"] != "lm_head") == list(range(compiled.dep.model.dims.layers))
    assert sum(r["layer"] == "lm_head" for r in rows) == 1
    kls = [r["kl_mean"] for r in rows]
    assert kls == sorted(kls, reverse=True) and all(k > 0 for k in kls)


def test_the_cli_prints_json():
    dply = DPLY
    res = subprocess.run(deeploy_cmd() + ["eval", str(dply), "--sequences", "1", "--length", "12", "--json"],
                         capture_output=True, text=True)
    assert res.returncode == 0, res.stderr
    r = json.loads(res.stdout)
    assert {"top1_agreement", "ppl_float", "ppl_int", "ppl_ratio", "kl_mean", "greedy_divergence", "positions",
            "top1_ci95", "source", "calibration_overlap"} <= set(r)
    assert r["positions"] == 11 and r["top1_ci95"] is None and r["source"]["kind"] == "samples"
    bad = subprocess.run(deeploy_cmd() + ["eval", str(dply), "--length", "100000"], capture_output=True, text=True)
    assert bad.returncode == 1 and "longer than the context (512 tokens)" in bad.stderr and "Traceback" not in bad.stderr


def test_mse_range_clips_outliers_and_keeps_flat_distributions():
    from deeploy_dsl.quant.quantize import mse_range
    rng = np.random.default_rng(5)
    flat = rng.uniform(-1, 1, 100_000)
    assert mse_range(flat) == pytest.approx(np.abs(flat).max(), rel=0.03)
    spiky = rng.laplace(0, 1, 100_000)  # a heavy tail: the max is ~11 scales out
    r = mse_range(spiky)
    # the known 8-bit optimum for a Laplace(b) is a clip near 9.9 b (Banner et al., ACIQ)
    assert 8.5 < r < 10.5 and r < np.abs(spiky).max() - 1
    assert mse_range(np.zeros(10)) == 0.0
    # the chosen range really has the smallest error among its neighbours
    def err(rr):
        s = rr / 127
        return np.mean((np.minimum(np.round(np.abs(spiky) / s), 127) * s - np.abs(spiky)) ** 2)
    assert err(r) <= min(err(r * 1.1), err(r * 0.9), err(np.abs(spiky).max()))
