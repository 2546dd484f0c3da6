"""The example deployments of the heterogeneous split (issue 17): `stories260k-npu.dply` (the attention projections and
the MLP on the NPU) and `stories260k-auto.dply` (`auto` wherever it applies). Each builds without a warning, maps what
it says, and computes golden's integers in the C on RV32 under QEMU on 8 harts (ids and every logit); `-m slow` adds
the C on the host, and QEMU on 1 and 8 harts with the prefill and token by token over more tokens."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import build_rv32, missing_tools, run_elf
from deeploy_dsl.engines.runner import run_c_compiled, run_golden_compiled
from deeploy_dsl.frontend.fmt import format_files

ROOT = Path(__file__).resolve().parents[1]
EXAMPLES = {"npu": ROOT / "deployments/stories260k-npu.dply", "auto": ROOT / "deployments/stories260k-auto.dply"}
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
LINEAR = ("attn.q", "attn.k", "attn.v", "attn.o", "mlp.gate", "mlp.up", "mlp.down")


_COMPILED: dict = {}  # each example compiled once for the module's tests


def compiled(name: str):
    if name not in _COMPILED:
        _COMPILED[name] = compile_deployment(EXAMPLES[name])
    return _COMPILED[name]


@pytest.fixture(scope="module", params=sorted(EXAMPLES))
def example(request, model_dir):
    return request.param, compiled(request.param)


def engines_of(c) -> dict[str, str]:
    return {s.op: str(s.engine) for s in c.plan.steps}


def test_the_examples_are_formatted():
    assert format_files(list(EXAMPLES.values()), check=True) == []


def test_the_npu_example_maps_the_projections_and_the_mlp(example):
    name, c = example
    engines = engines_of(c)
    assert not c.warnings
    on_npu = {op for op, e in engines.items() if e == "npu"}
    layers = {f"layers.{i}.{op}" for i in range(c.dep.model.dims.layers) for op in LINEAR}
    if name == "npu":  # exactly the projections and the MLP; norms, RoPE, attention, SwiGLU, lm_head on the cluster
        assert on_npu == layers
    else:  # auto: the cost model puts every linear layer on the NPU here (siracusa's constants), lm_head included
        assert on_npu == layers | {"lm_head"}
        assert all("-> auto (line" in s.reason for s in c.plan.steps if s.op in on_npu)
    assert {e for op, e in engines.items() if op not in on_npu} == {"cluster"}


@pytest.mark.slow  # the host compile of the C (~25 s on a loaded 2-core machine); CI runs the same C on RV32 below
@pytest.mark.parametrize("name", sorted(EXAMPLES))
def test_the_examples_c_matches_golden(name, model_dir, tmp_path):
    c = compiled(name)
    ids, logits = run_golden_compiled(c, PROMPT, 8, stop=False)
    c_ids, c_logits = run_c_compiled(c, PROMPT, 8, stop=False, build_dir=tmp_path / "c", prefill=True)
    assert c_ids == ids
    np.testing.assert_array_equal(c_logits, logits[len(PROMPT) - 1:])
    assert "npu_submit" in (tmp_path / "c" / "model.c").read_text()


def check_qemu(c, tmp_path: Path, cores: int, n_new: int, modes=(True,)) -> None:
    elf = build_rv32(c, tmp_path / "build")
    ids, logits = run_golden_compiled(c, PROMPT, n_new, stop=False)
    for prefill in modes:
        r = run_elf(elf, PROMPT, n_new, c.dep.model.dims.vocab, stop=False, cores=cores, prefill=prefill)
        assert r.ids == ids
        np.testing.assert_array_equal(r.logits, logits[len(PROMPT) - 1 if prefill else 0:])


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_the_examples_qemu_8_harts_are_bit_exact(example, tmp_path):
    check_qemu(example[1], tmp_path, 8, 3)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("cores", [1, 8])
def test_the_examples_qemu_longer_both_ways(example, tmp_path, cores):
    check_qemu(example[1], tmp_path, cores, 24, modes=(False, True))
