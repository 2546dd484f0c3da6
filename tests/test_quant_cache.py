"""The quant phase's cache (quant/cache.py): the build is byte-identical computed, from memory and from disk; the
key follows the weights, the quantize block and the code, never the memory, cores or mapping; a bad file is a miss."""
from __future__ import annotations

import numpy as np
import pytest

from conftest import DPLY
from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.quant import cache

FAST = ["quantize.activations=int8 calibrate(samples, tokens = 256)"]  # a cheap calibration: tests only


@pytest.fixture
def fresh(tmp_path, monkeypatch):
    """An empty cache of this process, its disk level off; restored after the test."""
    c = cache.QuantCache()
    monkeypatch.setattr(cache, "CACHE", c)
    monkeypatch.setattr("deeploy_dsl.compiler.QUANT_CACHE", c)
    return c


@pytest.mark.parametrize("extra", [[], ["quantize.smooth=alpha = 0.5", "quantize.weights=int4 per_group(32)"]],
                         ids=["int8", "smooth-int4"])
def test_build_is_byte_identical_computed_from_memory_and_from_disk(fresh, tmp_path, model_dir, extra):
    ovs = FAST + extra
    computed = render(compile_deployment(DPLY, ovs))
    assert fresh.stats == {"memory": 0, "disk": 0, "miss": 1}
    first = fresh.get(next(iter(fresh._mem)))
    assert compile_deployment(DPLY, ovs).quant is first.quant  # from memory: the very same result
    fresh.disk = tmp_path / "cache"
    fresh.clear()
    compile_deployment(DPLY, ovs)  # a miss again: computed and written
    assert fresh.stats["miss"] == 2
    assert len(list(fresh.disk.glob("quant-*.npz"))) == 1 and not list(fresh.disk.glob(".quant-*"))
    fresh.clear()
    c = compile_deployment(DPLY, ovs)
    assert fresh.stats["disk"] == 1 and render(c) == computed
    a = next(iter(c.quant.consts.values()))
    with pytest.raises(ValueError):  # shared by every build that hits it: nobody may write into it
        a[...] = 0


def test_key_ignores_memory_cores_mapping_and_follows_quantize_weights_and_code(fresh, model_dir, monkeypatch):
    compile_deployment(DPLY, FAST)
    for ov in ["memory.L1=32KiB", "map.default=cluster(cores = 2)", "map.layers[*].mlp.*=npu", "target=host"]:
        compile_deployment(DPLY, FAST + [ov])
    assert fresh.stats == {"memory": 4, "disk": 0, "miss": 1}
    compile_deployment(DPLY, FAST + ["quantize.activations=int8 calibrate(samples, tokens = 256, seed = 2)"])
    compile_deployment(DPLY, FAST + ["quantize.keys=int8"])
    assert fresh.stats["miss"] == 3
    monkeypatch.setattr(cache, "code_digest", lambda: "another deeploy")
    compile_deployment(DPLY, FAST)
    assert fresh.stats["miss"] == 4
    # other weights (one value changed) are another key
    from deeploy_dsl.frontend.interpret import load_deployment
    from deeploy_dsl.model.weights import load_weights
    dep = load_deployment(DPLY, FAST)
    w = load_weights(dep.model)
    before = cache.quant_key(dep, w)
    w.embed[0, 0] = np.nextafter(w.embed[0, 0], np.float32(1))
    assert cache.quant_key(dep, w) != before


def test_a_bad_or_foreign_file_on_disk_is_a_miss(fresh, tmp_path, model_dir):
    fresh.disk = tmp_path
    compile_deployment(DPLY, FAST)
    (path,) = tmp_path.glob("quant-*.npz")
    good = path.read_bytes()
    (tmp_path / "quant-other.npz").write_bytes(good)  # a whole, readable file under another key's name
    assert fresh._read("other") is None
    for n, bad in enumerate([good[: len(good) // 2], b"not a zip"], start=2):
        fresh.clear()
        path.write_bytes(bad)
        compile_deployment(DPLY, FAST)
        assert fresh.stats == {"memory": 0, "disk": 0, "miss": n}
        assert path.read_bytes() == good  # computed and written again, whole and the same
