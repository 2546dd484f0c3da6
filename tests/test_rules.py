"""The rule engine: map hints choose an engine per op, lowering rules turn ops into kernel calls.

Patterns are parsed from real `.dply` text so that positions and pattern texts are what a user sees.
The quantized model does not depend on the map block, so one compiled stories260k provides the graph
and QuantModel that every deployment here is lowered against.
"""
from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.errors import SpecError
from deeploy_dsl.ir.graph import build_graph
from deeploy_dsl.frontend.interpret import load_deployment
from deeploy_dsl.passes.mapping import hint_matches, place_ops
from deeploy_dsl.passes.rules import (HOST_RULES, RULES, RVV_RULES, Pattern, Rule, build_residual_add, build_rmsnorm, lower,
                                      rules_for)
from deeploy_dsl.kernels.registry import RESIDUAL_ADD, RMSNORM
from conftest import INT8_EXAMPLE

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
LAYERS = range(5)  # stories260K

pytestmark = pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").exists(),
                                reason=f"the stories260K model is not at {MODEL_DIR}")


def write_dply(tmp_path: Path, *map_lines: str, target: str = "siracusa", top: str = "",
               name: str = "t.dply") -> Path:
    """A small deployment of the shared model (by absolute path) with the given map lines."""
    body = "\n".join(f"    {m}" for m in map_lines)
    path = tmp_path / name
    path.write_text(f"deployment t\ntarget {target}\n{top}\n"
                    f"model llama {{\n    weights   \"{MODEL_DIR}/model.safetensors\"\n"
                    f"    tokenizer \"{MODEL_DIR}/tok512.bin\"\n}}\n"
                    f"map {{\n{body}\n}}\n")
    return path


def line_of(path: Path, text: str) -> int:
    return [ln.strip() for ln in path.read_text().split("\n")].index(text) + 1


@pytest.fixture(scope="module")
def base():
    from deeploy_dsl.compiler import compile_deployment
    # int8 queries, no smoothing: the quantization the deployments written here (no quantize block) lower with
    return compile_deployment(ROOT / "deployments/stories260k.dply", list(INT8_EXAMPLE))


def plan_for(base, path: Path, overrides=None, rules=None, strict=None):
    dep = load_deployment(path, overrides, strict)
    return lower(base.graph, base.quant, dep, place_ops(base.graph, dep), rules_for(dep.target) if rules is None else rules)


def by_op(plan) -> dict:
    return {s.op: s for s in plan.steps}


# ---- which ops a pattern names ---------------------------------------------------------------------

def layer_ops(names, layers=LAYERS, part="attn") -> set[str]:
    return {f"layers.{i}.{part}.{n}" for i in layers for n in names}


PATTERNS = {
    "layers[*].attn.qkv": layer_ops("qkv"),
    "layers[0..2].mlp.*": layer_ops(("gate", "up", "swiglu", "down", "residual"), range(3), "mlp"),
    "layers[1].mlp.down": {"layers.1.mlp.down"},
    "lm_head": {"lm_head"},
    "layers[*].attn.softmax": layer_ops(["attention"]),
    "layers[*].attn.*": layer_ops(("q", "k", "v", "rope_q", "rope_k", "attention", "o", "residual")),
    "layers[*].norm": {f"layers.{i}.{n}" for i in LAYERS for n in ("attn_norm", "mlp_norm")},
    "layers[3].attn.rope": {"layers.3.attn.rope_q", "layers.3.attn.rope_k"},
}


def test_patterns_match_the_ops_they_name(tmp_path):
    path = write_dply(tmp_path, "default -> cluster", *(f"{p} -> cluster" for p in PATTERNS))
    dep = load_deployment(path)
    graph = build_graph(dep.model.dims)
    all_ops = {op.name for op in graph.ops}
    assert [h.pattern.text for h in dep.hints] == ["default", *PATTERNS]
    for h in dep.hints:
        # positions are the pattern's own place in the file
        assert (h.pos.line, h.pos.col) == (line_of(path, f"{h.pattern.text} -> cluster"), 5)
        got = {name for name in all_ops if hint_matches(h.pattern, name)}
        assert got == (all_ops if h.pattern.text == "default" else PATTERNS[h.pattern.text]), h.pattern.text


def test_qkv_leaves_the_output_projection_alone(tmp_path):
    (h,) = load_deployment(write_dply(tmp_path, "layers[*].attn.qkv -> cluster")).hints
    assert hint_matches(h.pattern, "layers.4.attn.v") and not hint_matches(h.pattern, "layers.4.attn.o")
    assert not hint_matches(h.pattern, "layers.4.mlp.up") and not hint_matches(h.pattern, "lm_head")


# ---- placement: later lines override earlier ones --------------------------------------------------

def test_later_lines_override_earlier_ones(base, tmp_path):
    path = write_dply(tmp_path, "default -> cluster(cores = 8)", "layers[*].mlp.* -> cluster(cores = 2)",
                      "layers[1].mlp.down -> cluster(cores = 4)", "lm_head -> cluster(cores = 1)")
    steps = by_op(plan_for(base, path))
    d, mlp, down = (line_of(path, t) for t in ("default -> cluster(cores = 8)",
                                                "layers[*].mlp.* -> cluster(cores = 2)",
                                                "layers[1].mlp.down -> cluster(cores = 4)"))
    assert (steps["embed"].cores, steps["embed"].reason) == (8, f"default -> cluster (line {d})")
    assert (steps["layers.0.mlp.down"].cores, steps["layers.0.mlp.down"].reason) == \
        (2, f"layers[*].mlp.* -> cluster (line {mlp})")
    assert (steps["layers.1.mlp.down"].cores, steps["layers.1.mlp.down"].reason) == \
        (4, f"layers[1].mlp.down -> cluster (line {down})")
    assert steps["layers.1.mlp.down"].pos.line == down
    assert steps["layers.1.mlp.up"].cores == 2 and steps["lm_head"].cores == 1
    assert all(s.engine == "cluster" for s in steps.values())


def test_a_command_line_hint_comes_last(base, tmp_path):
    path = write_dply(tmp_path, "layers[1].mlp.down -> cluster(cores = 4)")
    steps = by_op(plan_for(base, path, ["map.layers[*].mlp.down=cluster(cores = 3)"]))
    assert steps["layers.1.mlp.down"].cores == 3
    assert steps["layers.1.mlp.down"].reason == \
        "layers[*].mlp.down -> cluster (command line -D map.layers[*].mlp.down=cluster(cores = 3))"
    assert steps["layers.1.mlp.down"].pos.file == "<command line>"


def test_without_hints_everything_runs_on_all_cores(base, tmp_path):
    steps = plan_for(base, write_dply(tmp_path)).steps
    assert {(s.engine, s.cores, s.reason) for s in steps} == {("cluster", 8, "default: cluster, all cores")}


def test_cores_beyond_the_target_are_clamped_with_a_warning(base, tmp_path):
    path = write_dply(tmp_path, "default -> cluster(cores = 8)", target="host")
    dep = load_deployment(path)
    assert {h.cores for h in dep.hints} == {1}
    assert any("target host has 1 core(s); using 1" in w.message for w in dep.warnings)
    with pytest.raises(SpecError, match="has 1 core"):
        load_deployment(write_dply(tmp_path, "default -> cluster(cores = 8)", target="host", top="strict yes",
                                   name="strict.dply"))


# ---- the NPU ---------------------------------------------------------------------------------------

def test_softmax_on_the_npu_is_a_warning_at_the_line_and_runs_on_the_cluster(tmp_path):
    path = write_dply(tmp_path, "default -> cluster", "layers[*].attn.softmax -> npu")
    dep = load_deployment(path)
    placed, warnings = place_ops(build_graph(dep.model.dims), dep)
    (d,) = warnings
    assert (d.pos.line, d.pos.col) == (line_of(path, "layers[*].attn.softmax -> npu"), 5)
    assert d.severity == "warning" and d.message.startswith("softmax -> npu: the NPU runs only linear layers")
    assert d.message.endswith("layers.0.attn.attention, layers.1.attn.attention, layers.2.attn.attention ... "
                              "run on the cluster")
    assert {placed[f"layers.{i}.attn.attention"].engine for i in LAYERS} == {"cluster"}


def test_softmax_on_the_npu_is_an_error_when_strict(tmp_path):
    path = write_dply(tmp_path, "default -> cluster", "layers[*].attn.softmax -> npu", top="strict yes")
    dep = load_deployment(path)
    with pytest.raises(SpecError) as e:
        place_ops(build_graph(dep.model.dims), dep)
    (d,) = e.value.diagnostics
    assert (d.pos.line, d.pos.col) == (line_of(path, "layers[*].attn.softmax -> npu"), 5)
    assert d.message == "softmax -> npu: the NPU runs only linear layers (layers.0.attn.attention is attention)"
    assert f"t.dply:{d.pos.line}:5: error: softmax -> npu" in e.value.render()


@pytest.mark.parametrize("pattern", ["layers[*].norm", "layers[2].attn.rope", "final_norm", "embed"])
def test_other_named_non_linear_ops_on_the_npu_are_errors_when_strict(tmp_path, pattern):
    dep = load_deployment(write_dply(tmp_path, f"{pattern} -> npu", top="strict yes"))
    with pytest.raises(SpecError, match=r"-> npu: the NPU runs only linear layers \(.* is (rmsnorm|rope|embed)\)"):
        place_ops(build_graph(dep.model.dims), dep)


def test_a_wildcard_on_the_npu_takes_only_linear_ops(tmp_path):
    path = write_dply(tmp_path, "layers[*].mlp.* -> npu")
    dep = load_deployment(path)
    placed, warnings = place_ops(build_graph(dep.model.dims), dep)
    on_npu = {name for name, p in placed.items() if p.engine == "npu"}
    assert on_npu == layer_ops(("gate", "up", "down"), part="mlp") and not warnings
    assert all(placed[n].cores == 1 for n in on_npu)
    assert placed["layers.0.mlp.swiglu"].reason == "default: cluster, all cores"


def test_npu_layers_lower_to_npu_jobs_with_packed_weights(base, tmp_path):
    path = write_dply(tmp_path, "default -> cluster(cores = 8)", "layers[*].attn.qkv -> npu", "layers[*].mlp.* -> npu")
    plan = plan_for(base, path)
    steps = by_op(plan)
    assert not plan.warnings
    for name in layer_ops("qkv") | layer_ops(("gate", "up", "down"), part="mlp"):
        s = steps[name]
        assert (s.engine, s.cores, s.kernel) == ("npu", 1, "npu_" + s.rule.removesuffix("_npu"))
        w = plan.consts[name + ".wn"]
        n_out, n_in = s.args[-1].value, s.args[-2].value
        assert w.shape == (n_out, -(-n_in // 32) * 32) and w.dtype == np.int8
        assert name + ".wb" not in plan.consts  # the cluster's blocked copy is not built in
    assert steps["layers.0.attn.o"].engine == "cluster" and "layers.0.attn.o.wp" in plan.consts  # the packed GEMV's copy


WITHOUT_NPU = tuple(r for r in RULES if r.engine != "npu")


def test_an_engine_without_a_kernel_falls_back_with_one_warning_per_line(base, tmp_path):
    path = write_dply(tmp_path, "default -> cluster(cores = 8)", "layers[*].mlp.* -> npu")
    line = line_of(path, "layers[*].mlp.* -> npu")
    plan = plan_for(base, path, rules=WITHOUT_NPU)
    steps = by_op(plan)
    linear = layer_ops(("gate", "up", "down"), part="mlp")
    for name in linear:
        s = steps[name]
        assert (s.engine, s.cores) == ("cluster", 8), name
        assert s.reason == f"layers[*].mlp.* -> npu (line {line}), fell back to cluster: no kernel"
    assert steps["layers.0.mlp.swiglu"].reason == f"default -> cluster (line {line - 1})"
    (w,) = plan.warnings  # one message for the hint line, not one per op
    assert w.severity == "warning" and w.pos.line == line
    assert w.message == ("no npu kernel implements linear in this version: layers.0.mlp.gate, layers.0.mlp.up, "
                         f"layers.0.mlp.down and {len(linear) - 3} more run on the cluster")


def test_a_missing_kernel_is_an_error_when_strict(base, tmp_path):
    path = write_dply(tmp_path, "layers[1].mlp.down -> npu", top="strict yes")
    with pytest.raises(SpecError) as e:
        plan_for(base, path, rules=WITHOUT_NPU)
    (d,) = e.value.diagnostics
    assert d.message == "no npu kernel implements linear in this version: layers.1.mlp.down"
    assert d.severity == "error" and d.pos.line == line_of(path, "layers[1].mlp.down -> npu")
    # --strict on the command line means the same
    with pytest.raises(SpecError):
        plan_for(base, write_dply(tmp_path, "layers[1].mlp.down -> npu", name="b.dply"), rules=WITHOUT_NPU, strict=True)


def test_npu_on_a_target_without_one_is_an_error(tmp_path):
    path = write_dply(tmp_path, "lm_head -> npu", target="host")
    with pytest.raises(SpecError) as e:
        load_deployment(path)
    (d,) = e.value.diagnostics
    assert d.message == "target host has no NPU"
    assert (d.pos.line, d.pos.col) == (line_of(path, "lm_head -> npu"), 16)  # the engine's column


def test_auto_says_why_each_layer_went_where(base, tmp_path):
    plan = plan_for(base, write_dply(tmp_path, "layers[*].mlp.* -> auto"))
    steps = by_op(plan)
    assert not plan.warnings
    # the element-wise ops have only the cluster; the linear ones go where the estimate is smaller
    assert steps["layers.0.mlp.swiglu"].reason.endswith("auto (line 9): cluster, the NPU runs only linear layers")
    for name in layer_ops(("gate", "up", "down"), part="mlp"):
        r = steps[name].reason
        assert r.startswith("layers[*].mlp.* -> auto (line 9): npu, ~") and "cycles against ~" in r, r
        assert steps[name].engine == "npu"


def test_auto_on_a_target_without_an_npu_is_the_cluster(base, tmp_path):
    plan = plan_for(base, write_dply(tmp_path, "layers[*].mlp.* -> auto", target="generic-rv32"))
    assert {s.engine for s in plan.steps} == {"cluster"}
    assert by_op(plan)["layers.0.mlp.gate"].reason.endswith("cluster, generic-rv32 has no NPU")


# ---- patterns that name nothing ------------------------------------------------------------------------

def test_a_pattern_matching_no_op_is_an_error_with_examples(tmp_path):
    path = write_dply(tmp_path, "layers[7].mlp.down -> cluster", "layers[*].attn.qkvo -> cluster",
                      "layers.attn.q -> cluster", "lm_head -> cluster")
    dep = load_deployment(path)
    with pytest.raises(SpecError) as e:
        place_ops(build_graph(dep.model.dims), dep)
    diags = e.value.diagnostics
    assert [d.pos.line for d in diags] == [line_of(path, t) for t in (
        "layers[7].mlp.down -> cluster", "layers[*].attn.qkvo -> cluster", "layers.attn.q -> cluster")]
    assert diags[0].message == "'layers[7].mlp.down' matches no op"
    for name in ("embed", "layers[0].attn.q", "layers[*].attn.qkv", "layers[*].attn.softmax", "lm_head"):
        assert name in diags[0].hint


# ---- lowering rules ---------------------------------------------------------------------------------

def test_every_step_records_the_rule_that_fired(base):
    names = {r.name: r for r in RULES}
    kinds = {op.name: op.kind for op in base.graph.ops}
    assert [s.op for s in base.plan.steps] == [op.name for op in base.graph.ops]
    for s in base.plan.steps:
        assert s.rule in names and names[s.rule].kind == kinds[s.op], s
    steps = by_op(base.plan)
    # linear rules are chosen by the output's type
    assert steps["layers.0.attn.q"].rule == "linear_pk_i8_cluster"
    assert steps["layers.0.attn.v"].rule == "linear_pk_i8_cluster"  # writes the int8 KV cache row
    assert steps["layers.0.attn.o"].rule == "linear_pk_i16_cluster" and steps["lm_head"].rule == "linear_pk_i32_cluster"
    # every cluster rule fires but the other variant of each quantize knob (and the blocked int8 GEMV's, which the
    # packed GEMV's rules take before them on RV32 cores): RoPE on int16 values only with int16 keys,
    # the int4 GEMVs only with int4 weights, one SwiGLU rule per `dynamic` setting, the wider queries' rules only
    # with `queries int12 | int16`, the wide SwiGLU outputs' only with `swiglu int12 | int16`
    q = base.dep.quant
    assert q.queries == "int8"
    unused = ({"rope_i16_q14", "attention_k16_gqa"} if q.keys != "int16" else {"attention_i8_gqa"}) \
        | ({"swiglu_i8_table"} if "swiglu" in q.dynamic else {"swiglu_i8_per_token"}) \
        | ({"linear_q4_i8_cluster", "linear_q4_i16_cluster", "linear_q4_i32_cluster"} if q.weights == "int8" else set()) \
        | {"linear_i8_cluster", "linear_i16_cluster", "linear_i32_cluster"} \
        | {"linear_q12_cluster", "linear_pk_q12_cluster", "linear_q4_q12_cluster", "rope_q12_q14", "attention_q12_gqa", "attention_q12k16_gqa",
           "attention_q16_gqa"} \
        | ({"rmsnorm_i16_to_i8_absmax"} if "norm" not in q.dynamic else set()) \
        | ({"swiglu_i8_absmax"} if "swiglu_absmax" not in q.dynamic else set()) \
        | {"swiglu16_i8_absmax"} \
        | {"swiglu_i12_absmax", "swiglu_i16_absmax", "swiglu16_i12_absmax", "swiglu16_i16_absmax"} \
        | ({n for n in names if "_tok_" in n} if not {"norm", "swiglu_absmax"} & set(q.dynamic) else set())
    assert {s.rule for s in base.plan.steps} == {n for n, r in names.items()
                                                 if r.engine == "cluster" and r not in HOST_RULES + RVV_RULES} - unused
    from deeploy_dsl.compiler import compile_deployment
    q4 = compile_deployment(ROOT / "deployments/stories260k.dply", [*INT8_EXAMPLE, "quantize.weights=int4 per_group(32)",
                                                                    "quantize.dynamic=none"])
    assert {s.rule for s in q4.plan.steps} >= {"linear_q4_i8_cluster", "linear_q4_i16_cluster", "linear_q4_i32_cluster",
                                                 "swiglu_i8_table"}


def test_a_rule_that_declines_passes_to_the_next(base, tmp_path):
    declined = []

    def decline(op, ctx):
        """never"""
        declined.append(op.name)
        return False

    plan = plan_for(base, write_dply(tmp_path), rules=(Rule("declines", Pattern("rmsnorm", when=decline), RMSNORM,
                                                            build_rmsnorm),) + RULES)
    norms = [s for s in plan.steps if s.kernel == "rmsnorm_i8_part"]
    assert len(norms) == 11 and {s.rule for s in norms} == {"rmsnorm_i16_to_i8"}
    assert declined == [s.op for s in norms]


def test_the_first_matching_rule_wins(base, tmp_path):
    late = RULES + (Rule("late_add", Pattern("residual_add"), RESIDUAL_ADD, build_residual_add),)
    assert "late_add" not in {s.rule for s in plan_for(base, write_dply(tmp_path), rules=late).steps}
    early = (Rule("early_add", Pattern("residual_add"), RESIDUAL_ADD, build_residual_add),) + RULES
    adds = [s for s in plan_for(base, write_dply(tmp_path), rules=early).steps if s.kernel == "residual_add_i16"]
    assert len(adds) == 10 and {s.rule for s in adds} == {"early_add"}


def test_an_op_no_rule_lowers_is_an_error(base, tmp_path):
    with pytest.raises(SpecError, match="no rule lowers swiglu layers.0.mlp.swiglu"):
        plan_for(base, write_dply(tmp_path), rules=tuple(r for r in RULES if r.kind != "swiglu"))


def test_vocabularies_are_checked_where_records_are_made():
    """A misspelt op kind, engine, dtype, value kind or prefill mode fails at once instead of never matching."""
    from deeploy_dsl.ir.graph import Arg, Value
    from deeploy_dsl.kinds import DType, OpKind
    for bad in (lambda: Pattern("linaer"), lambda: Pattern("linear", "npuu"), lambda: Pattern("linear", out="int9"),
                lambda: Value("x", "int9", (4,), "act"), lambda: Value("x", "int8", (4,), "actv"), lambda: Arg("buff"),
                lambda: dataclasses.replace(RMSNORM, prefill="gemv")):
        with pytest.raises(ValueError):
            bad()
    p = Pattern("linear", out="int8")
    assert p.kind is OpKind.LINEAR and p.out is DType.INT8 and p.out == "int8" and f"{p.out}" == "int8"
    assert Value("x", "int16", (3,), "act").nbytes == 6 and DType.INT16.ctype == "int16_t"


def test_host_rules_only_on_the_host():
    """rules_for: the host's rules come first on `target host` (so they win), and no other target has them."""
    from deeploy_dsl.errors import BUILTIN
    from deeploy_dsl.frontend.interpret import load_target
    host = rules_for(load_target("host", BUILTIN))
    assert host[:len(HOST_RULES)] == HOST_RULES
    for name in ("siracusa", "generic-rv32"):
        assert not set(HOST_RULES) & set(rules_for(load_target(name, BUILTIN)))
