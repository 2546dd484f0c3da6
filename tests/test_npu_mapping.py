"""Layers mapped to the NPU (issue 5): the same integers as the cluster, diagnostics for hints the NPU
cannot honour, `auto` never estimated slower than either engine alone, and the build summary."""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import SpecError
from deeploy_dsl.ir.graph import build_graph
from deeploy_dsl.frontend.interpret import load_deployment
from deeploy_dsl.backend.report import report_dict
from deeploy_dsl.passes.mapping import place_ops
from deeploy_dsl.engines.runner import run_c_compiled, run_golden_compiled

ROOT = Path(__file__).resolve().parents[1]
DPLY = ROOT / "deployments/stories260k.dply"
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
HINTS = ("layers[*].attn.qkv -> npu", "layers[*].mlp.* -> npu")


def variant(tmp_path: Path, name: str, *map_lines: str, strict: bool = False) -> Path:
    """stories260k.dply with its map block replaced (weights by absolute path)."""
    text = DPLY.read_text().replace('"../../shared', f'"{ROOT.parent}/shared')
    head, rest = text.split("map {", 1)
    body = "\n".join(f"    {m}" for m in ("default -> cluster(cores = 8)",) + map_lines)
    path = tmp_path / f"{name}.dply"
    path.write_text(("strict yes\n" if strict else "") + head + "map {\n" + body + "\n}" + rest.split("}", 1)[1])
    return path


@pytest.fixture(scope="module")
def hinted(tmp_path_factory):
    return compile_deployment(variant(tmp_path_factory.mktemp("npu"), "hinted", *HINTS))


def test_hinted_layers_run_as_npu_jobs(hinted):
    engines = {s.op: s.engine for s in hinted.plan.steps}
    for i in range(5):
        assert {engines[f"layers.{i}.attn.{n}"] for n in "qkv"} == {"npu"}
        assert {engines[f"layers.{i}.mlp.{n}"] for n in ("gate", "up", "down")} == {"npu"}
        assert engines[f"layers.{i}.mlp.swiglu"] == engines[f"layers.{i}.attn.o"] == "cluster"
    assert not hinted.warnings


def test_npu_mapping_keeps_every_integer(compiled, hinted, tmp_path):
    """C and golden of the hinted build, and golden of the all-cluster build: the same ids and logits."""
    ids, logits = run_golden_compiled(compiled, PROMPT, 48, stop=False)
    h_ids, h_logits = run_golden_compiled(hinted, PROMPT, 48, stop=False)
    c_ids, c_logits = run_c_compiled(hinted, PROMPT, 48, stop=False, build_dir=tmp_path / "c")
    assert ids == h_ids == c_ids
    np.testing.assert_array_equal(logits, h_logits)
    np.testing.assert_array_equal(logits, c_logits)
    assert "npu_submit" in (tmp_path / "c" / "model.c").read_text()


def test_weights_that_overflow_the_npu_memory_fall_back_with_the_sizes(tmp_path):
    path = variant(tmp_path, "small", *HINTS)
    dep = load_deployment(path)
    small = dataclasses.replace(dep.target, npu=dataclasses.replace(dep.target.npu, weight_memory_bytes=40_000))
    dep = dataclasses.replace(dep, target=small)
    placed, warnings = place_ops(build_graph(dep.model.dims), dep)
    on_npu = [n for n, p in placed.items() if p.engine == "npu"]
    assert on_npu and len(on_npu) < 30
    lines = [ln.strip() for ln in path.read_text().splitlines()]
    by_line = {w.pos.line: w for w in warnings}
    assert set(by_line) <= {lines.index(h) + 1 for h in HINTS}
    w = by_line[lines.index("layers[*].mlp.* -> npu") + 1]
    assert w.severity == "warning" and "do not fit the NPU's weight memory: 40,000 B, of which" in w.message
    assert "B packed)" in w.message and w.message.endswith("on the cluster")
    fell = [n for n, p in placed.items() if "NPU weight memory full" in p.reason]
    assert fell and all(placed[n].engine == "cluster" for n in fell)
    with pytest.raises(SpecError, match="do not fit the NPU's weight memory: 40,000 B"):
        place_ops(build_graph(dep.model.dims), dataclasses.replace(dep, strict=True))


def test_auto_is_never_estimated_slower_than_either_engine_alone(tmp_path):
    cycles = {}
    for name, lines in (("cluster", ()), ("npu", ("layers[*].* -> npu", "lm_head -> npu")),
                        ("auto", ("layers[*].* -> auto", "lm_head -> auto"))):
        c = compile_deployment(variant(tmp_path, name, *lines))
        perf = report_dict(c)["performance"]
        cycles[name] = perf["decode"]["cycles_per_token"], perf["prefill"]["cycles"]
        if name == "auto":
            why = [s.reason for s in c.plan.steps if s.op.startswith("layers.0.")]
            assert all("-> auto (line" in r and ("cycles against" in r or "only linear" in r) for r in why), why
    assert cycles["auto"][0] <= min(cycles["cluster"][0], cycles["npu"][0]), cycles


def test_the_summary_shows_both_engines(hinted):
    perf = report_dict(hinted)["performance"]
    assert set(perf["engines"]) == {"cluster", "npu"}
    assert abs(sum(e["mac_share"] for e in perf["engines"].values()) - 1) < 1e-3
    assert perf["decode"]["cycles_per_token"] > 0 and perf["decode"]["uj_per_token"] > 0
    assert perf["prefill"]["tokens"] == len(PROMPT) and perf["prefill"]["cycles"] > perf["decode"]["cycles_per_token"]
