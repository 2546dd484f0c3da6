"""The generated model.c reads like llama2.c's run.c: a LayerWeights table and a RunState per plan, forward() and
prefill() looping over runs of identically mapped layers, one body per step shared by both; and a mapping that
differs between layers splits the loop without changing an integer."""
from __future__ import annotations

import re

from conftest import DPLY
from deeploy_dsl.backend.cmodel import Rendering, Slot, group_runs
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.backend.codegen import render
from test_prefill import check_host

FUNCTION = re.compile(r"^(?!typedef\b|struct\b|return\b)[A-Za-z_][\w\s\*]*?\b\w+\s*\([^;{]*\)\s*\{", re.M)


def called(body: str) -> list[str]:
    return re.findall(r"\b(\w+)\(&c\)", body) + re.findall(r"each_token\(&c, (\w+)\)", body)


def function(model_c: str, name: str) -> str:
    return model_c[model_c.index(f"int {name}("):].split("\n}\n", 1)[0]


def test_model_c_shows_the_model(rendered):
    model = rendered["model.c"]
    assert model.count("\n") <= 1500 and len(FUNCTION.findall(model)) <= 80  # issue 13 (5,114 lines, 264 before)
    assert "} LayerWeights;" in model and "static const LayerWeights layers[MODEL_LAYERS] = {" in model
    # the weight stream's early tiles make the allocator place each layer's decode buffers apart: a RunState per layer
    assert "static const RunState decode_state[MODEL_LAYERS] = {" in model
    assert "static const RunState prefill_state = {" in model
    assert "#define buf_" not in model and "for (j.h0 = 0;" not in model  # no aliases, no single-trip loops
    forward, prefill = function(model, "forward"), function(model, "prefill")
    assert "for (l = 0; l <= 4; l++) { /* layers 0..4 */" in forward and "c.L = &layers[l];" in prefill
    # one body per step: every function prefill() runs is one forward() runs
    assert set(called(prefill)) == set(called(forward)) - {"each_token"}
    # named parameters: the attention's are a field of the layer, each name said
    assert "int32_t attn_attention_prm[6]; /* score_mult, score_shift, score_cut, out_mult, out_shift, exp bits */" \
        in model


def test_layers_mapped_differently_are_separate_runs(model_dir, tmp_path):
    c = compile_deployment(DPLY, ["map.layers[3..4].mlp.*=npu", "generate.prefill=4"])
    model = render(c)["model.c"]
    forward = function(model, "forward")
    assert "for (l = 0; l <= 2; l++) { /* layers 0..2 */" in forward
    assert "for (l = 3; l <= 4; l++) { /* layers 3..4 */" in forward
    assert "mlp_down(&c)" in forward and re.search(r"mlp_down_l3\(&c\)", forward)
    check_host(c, tmp_path)


def rendering(plan: str, layer: int, text: str, value: str) -> Rendering:
    r = Rendering(plan, layer, "x.y", f"layers.{layer}.x.y", False, False, [], text)
    r.values, r.slots = {"@{B:x.y}": value}, {"@{B:x.y}": Slot("B", "x.y", "int8_t *", "[4] int8")}
    return r


def test_a_buffer_that_moves_with_the_layer_and_the_plan_is_a_per_layer_run_state_field():
    text = "f(@{B:x.y});"
    same = {p: [rendering(p, i, text, f"{p}-at-0") for i in range(3)] for p in ("decode", "prefill")}
    _, runs, _ = group_runs(same, 3)
    assert [r.layers for r in runs] == [[0, 1, 2]] and set(runs[0].where.values()) == {"S"}
    kv = {p: [rendering(p, i, text, f"layer-{i}") for i in range(3)] for p in ("decode", "prefill")}
    _, runs, _ = group_runs(kv, 3)
    assert [r.layers for r in runs] == [[0, 1, 2]] and set(runs[0].where.values()) == {"L"}
    both = {p: [rendering(p, i, text, f"{p}-{i}") for i in range(3)] for p in ("decode", "prefill")}
    _, runs, _ = group_runs(both, 3)
    assert [r.layers for r in runs] == [[0, 1, 2]] and set(runs[0].where.values()) == {"SL"}
    # an integer that differs with the layer and the plan still starts a new run
    ints = {p: [rendering(p, i, text, f"{p}-{i}") for i in range(3)] for p in ("decode", "prefill")}
    for rs in ints.values():
        for r in rs:
            r.slots = {"@{B:x.y}": Slot("I", "x.y", "int32_t", "n")}
    _, runs, _ = group_runs(ints, 3)
    assert [r.layers for r in runs] == [[0], [1], [2]]
