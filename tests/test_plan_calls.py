"""The reviewed plan names what runs: every `kernel:` in plan.yaml is a function the generated C calls, and every
kernel the C calls is in plan.yaml; the plan invariants that verify.py checks between phases catch broken plans;
`deeploy rules` lists every rule."""
from __future__ import annotations

import re
import subprocess
from dataclasses import replace

import pytest
import yaml

from conftest import DPLY, deeploy_cmd
from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.kernels.registry import KERNELS
from deeploy_dsl.passes.rules import RULES, rules_text
from deeploy_dsl.passes.verify import PlanInvariantError, check_plan

ALL_FUNCTIONS = {f for k in KERNELS.values() for f in k.functions}


def plan_kernels(plan_yaml: str) -> set[str]:
    plan = yaml.safe_load(plan_yaml)
    steps = plan["steps"] + (plan["prefill"]["steps"] if "prefill" in plan else [])
    return {f for s in steps for f in s["kernel"].split("+")}


def called(model_c: str) -> set[str]:
    return {f for f in ALL_FUNCTIONS if re.search(rf"\b{f}\(", model_c)}


def test_plan_yaml_names_exactly_the_kernels_the_c_calls(rendered):
    named = plan_kernels(rendered["plan.yaml"])
    assert named and named == called(rendered["model.c"])
    # stories260k's knobs: int12 queries on int16 keys, int16 gate/up into the SwiGLU, per-token final norm and SwiGLU;
    # `gemv auto` packs every linear layer (the weight stream hides the doubled bytes)
    assert {"attn_scores_q12k16", "attn_exp_av_i8", "rope_q12", "gemv_pk_i8", "gemv_pk_tok_i16", "gemv_pk_i16",
            "gemv_pk_tok_i32", "swiglu16_tok_i8_span", "swiglu16_tok_i8_out", "rmsnorm_tok_i8"} <= named


def test_npu_steps_name_the_npu_call(model_dir, tmp_path):
    c = compile_deployment(DPLY, ["map.layers[*].mlp.*=npu", "quantize.keys=int8"])
    files = render(c)
    named = plan_kernels(files["plan.yaml"])
    assert {"npu_submit", "npu_wait", "npu_run_tok", "attn_scores_q12"} <= named  # down takes the SwiGLU's factor
    assert named == called(files["model.c"])


def test_broken_plans_are_caught_between_phases(compiled):
    plan = compiled.plan
    check_plan(plan, "the test", compiled.alloc)  # the real plan keeps every invariant
    s = plan.steps[3]
    swapped = replace(s, args=s.args[1:] + s.args[:1])
    with pytest.raises(PlanInvariantError, match=r"after tiling, step 3 .*passes \['x',"):
        check_plan(replace(plan, steps=plan.steps[:3] + (swapped,) + plan.steps[4:]), "tiling")
    # the first norm before the embedding that writes x: x is read before any step writes it
    reordered = (replace(plan.steps[1], index=0), replace(plan.steps[0], index=1)) + plan.steps[2:]
    with pytest.raises(PlanInvariantError, match="reads 'x'"):
        check_plan(replace(plan, steps=reordered), "forks")
    gone = {k: v for k, v in plan.values.items() if k != "layers.0.attn.q"}
    with pytest.raises(PlanInvariantError, match="no value of the plan"):
        check_plan(replace(plan, values=gone), "lowering")
    with pytest.raises(PlanInvariantError, match="places no"):
        check_plan(plan, "allocation", replace(compiled.alloc, buffers=compiled.alloc.buffers[1:]))


def test_deeploy_rules_lists_every_rule_with_its_pattern_and_kernel():
    text = rules_text()
    for r in RULES:
        block = text.split(r.name + "\n", 1)[1].split("\n    does:", 1)[0]
        assert f"when:   {r.pattern.text}" in block and f"kernel: {r.kernel.name}" in block, r.name
    assert "when:   attention on cluster, keys int16" in text and "calls attn_scores_k16, attn_exp_av_i8" in text
    res = subprocess.run(deeploy_cmd() + ["rules", "--target", "host"], capture_output=True, text=True)
    assert res.returncode == 0 and "linear_i8_cluster" in res.stdout and "npu" not in res.stdout
