"""plan.yaml diffs: empty on identity, a line or two for a one-line .dply change, folded across layers."""
from __future__ import annotations

import copy
import subprocess
import sys
from pathlib import Path

import pytest

from deeploy_dsl.backend.plandiff import diff_plans, format_diff, load_plan

ROOT = Path(__file__).resolve().parents[1]
DPLY = ROOT / "deployments/stories260k.dply"
MODEL = ROOT.parent / "shared/models/stories260K/model.safetensors"
needs_model = pytest.mark.skipif(not MODEL.exists(), reason=f"shared model not found at {MODEL}")
VARIANTS = {"base": [], "lm1": ["-D", "map.lm_head=cluster(cores = 1)"], "l1": ["-D", "memory.L1=128KiB"]}


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """Build the three variants in parallel (about 1.5 s each); {name: build directory}."""
    root = tmp_path_factory.mktemp("plans")
    cli = [sys.executable, "-c", "from deeploy_dsl.cli import main; main()", "build", str(DPLY)]
    procs = {k: subprocess.Popen([*cli, *extra, "-o", str(root / k)], cwd=ROOT, stdout=subprocess.PIPE,
                                 stderr=subprocess.STDOUT, text=True) for k, extra in VARIANTS.items()}
    for k, p in procs.items():
        out = p.communicate(timeout=300)[0]
        assert p.returncode == 0, f"build {k} failed:\n{out}"
    return {k: root / k for k in VARIANTS}


@needs_model
def test_self_diff_is_empty(built):
    a = load_plan(built["base"])
    assert diff_plans(a, a) == [] and diff_plans(a, load_plan(built["base"] / "plan.yaml")) == []
    assert format_diff([]) == "no changes"


@needs_model
def test_load_plan_reads_real_plan(built):
    plan = load_plan(built["base"])
    assert plan["target"] == "siracusa" and plan["model"]["layers"] == 5
    assert [s["index"] for s in plan["steps"]] == list(range(len(plan["steps"])))
    assert plan["steps"][-1]["op"] == "lm_head" and isinstance(plan["steps"][0]["args"], list)
    assert all({"name", "level", "offset", "size"} <= set(b) for b in plan["buffers"])


@needs_model
def test_one_line_map_change(built):
    # one step changes (on 1 core its cost-chosen tiles may differ too), then only the buffers live at it
    lines = diff_plans(load_plan(built["base"]), load_plan(built["lm1"]))
    assert lines[0].startswith("lm_head: cores 8 -> 1"), lines
    assert not [ln for ln in lines[1:] if ln.split(":")[0].startswith(("layers", "lm_head", "embed", "final_norm"))
                and not ln.startswith("  ")], lines
    back = diff_plans(load_plan(built["lm1"]), load_plan(built["base"]))
    assert back[0].startswith("lm_head: cores 1 -> 8"), back


@needs_model
def test_one_line_memory_change(built):
    text = format_diff(diff_plans(load_plan(built["base"]), load_plan(built["l1"])))
    assert len(text.splitlines()) < 10 and "L1 budget 262,144 B -> 131,072 B (-131,072 B)" in text, text
    assert "L2" not in text and "step" not in text


def test_load_plan_errors(tmp_path):
    with pytest.raises(ValueError, match="no plan found"):
        load_plan(tmp_path)
    with pytest.raises(ValueError, match="no plan found"):
        load_plan(tmp_path / "missing.yaml")
    (tmp_path / "plan.yaml").write_text("steps: [unclosed\n  - {a: \n")
    with pytest.raises(ValueError, match="cannot parse"):
        load_plan(tmp_path)
    (tmp_path / "plan.yaml").write_text("just a string\n")
    with pytest.raises(ValueError, match="not a deeploy plan"):
        load_plan(tmp_path / "plan.yaml")


# ------------------------------------------------------------------ synthetic plans

OPS = ("attn_norm", "attn.q", "attn.k", "attn.o", "mlp.down")


def plan(layers: int = 5) -> dict:
    steps = [{"op": "embed", "rule": "embed_i16", "kernel": "embed_i16", "engine": "cluster", "cores": 8, "macs": 0}]
    steps += [{"op": f"layers.{i}.{o}", "rule": "linear_i8_cluster", "kernel": "linear_i8", "engine": "cluster",
               "cores": 8, "macs": 4096} for i in range(layers) for o in OPS]
    steps.append({"op": "lm_head", "rule": "linear_i32_cluster", "kernel": "linear_i32", "engine": "cluster",
                  "cores": 8, "macs": 32768})
    for i, s in enumerate(steps):
        s.update(index=i, args=[f"y={s['op']}"], why="default -> cluster (line 19)")
    bufs = [{"name": f"layers.{i}.{o}", "level": "L1", "offset": 64 * j, "size": 64, "first_step": 1 + 5 * i + j,
             "last_step": 2 + 5 * i + j, "dtype": "int8", "shape": [64]} for i in range(layers) for j, o in enumerate(OPS)]
    return {"deployment": "toy", "target": "siracusa", "model": {"layers": layers, "dim": 64},
            "quantization": {"weights": "int8 per_channel symmetric"},
            "memory": {"L1": {"budget_bytes": 262144, "capacity_bytes": 262144, "arena_bytes": 2304,
                              "lower_bound_bytes": 2304, "weight_bytes": 0, "alignment": 4, "holds": ["activations"]}},
            "scales": {f"s{i}": 0.1 * (i + 1) for i in range(20)}, "steps": steps, "buffers": bufs,
            "constants": [{"name": "embed.w", "dtype": "int8", "shape": [512, 64], "bytes": 32768}]}


def step(p: dict, op: str) -> dict:
    return next(s for s in p["steps"] if s["op"] == op)


def test_per_layer_changes_fold():
    a, b = plan(), plan()
    for i in range(5):
        step(b, f"layers.{i}.mlp.down").update(engine="npu", rule="linear_i16_npu")
    for i in (0, 1, 2, 4):
        step(b, f"layers.{i}.attn.q")["cores"] = 4
    step(b, "layers.3.attn.q")["cores"] = 2
    step(b, "layers.2.attn.k")["cores"] = 1
    assert diff_plans(a, b) == [
        "layers[0..2,4].attn.q: cores 8 -> 4",        # a folded line sits where its first member is
        "layers[*].mlp.down: engine cluster -> npu, rule linear_i8_cluster -> linear_i16_npu",
        "layers.2.attn.k: cores 8 -> 1",
        "layers.3.attn.q: cores 8 -> 2",
    ]


def test_same_change_everywhere_is_one_line():
    a, b = plan(), plan()
    for s in b["steps"]:
        s["cores"] = 1
    assert diff_plans(a, b) == [f"all {len(a['steps'])} steps: cores 8 -> 1"]


def test_added_removed_steps_match_by_op_not_index():
    a, b = plan(), plan()
    b["steps"] = [s for s in b["steps"] if not s["op"].endswith("attn.k")]
    b["steps"].insert(3, {"op": "layers.0.attn.qk_fused", "rule": "qk_i8", "engine": "cluster", "cores": 8})
    for i, s in enumerate(b["steps"]):
        s["index"] = i                      # every index after the edit shifts; that alone is no change
    assert diff_plans(a, b) == ["step removed: layers[*].attn.k", "step added: layers.0.attn.qk_fused: qk_i8 on cluster"]


def test_new_step_keys_are_diffed_and_missing_ones_tolerated():
    a, b = plan(), plan()
    step(b, "lm_head").update(tiles=[4, 1], dma_bytes=8192)
    step(a, "embed").pop("kernel")
    lines = diff_plans(a, b)
    assert lines == ["embed: kernel (none) -> embed_i16", "lm_head: tiles (none) -> [4, 1], dma_bytes (none) -> 8,192"]
    c = copy.deepcopy(b)
    step(c, "lm_head").update(tiles=[8, 1], dma_bytes=4096, new_field="x")
    assert diff_plans(b, c) == ["lm_head: tiles [4, 1] -> [8, 1], dma_bytes 8,192 -> 4,096 (-4,096), new_field (none) -> x"]
    assert diff_plans({}, {}) == [] and diff_plans({"steps": None}, {"memory": {}}) == []


def test_header_and_memory_lines():
    a, b = plan(), plan()
    b["target"] = "host"
    b["quantization"]["weights"] = "int8 per_tensor symmetric"
    b["memory"]["L1"].update(arena_bytes=1792, lower_bound_bytes=1536, alignment=8)
    b["memory"]["L3"] = {"budget_bytes": 1 << 20}
    assert diff_plans(a, b) == [
        "target: siracusa -> host",
        "quantization.weights: int8 per_channel symmetric -> int8 per_tensor symmetric",
        "L1 arena 2,304 B -> 1,792 B (-512 B)",
        "L1 lower bound 2,304 B -> 1,536 B (-768 B)",
        "L1 alignment 4 -> 8",
        "memory level L3 added (1,048,576 B)",
    ]


def test_buffer_changes_are_summarised():
    a, b = plan(layers=40), plan(layers=40)
    for buf in b["buffers"]:
        buf["offset"] += 64 if buf["name"].endswith("attn.q") else 0
        buf["size"] = 128 if buf["name"].endswith("attn.o") else buf["size"]
        buf["level"] = "L2" if buf["name"] == "layers.7.mlp.down" else buf["level"]
    b["buffers"] = b["buffers"][:-1]        # layers.39.mlp.down
    lines = diff_plans(a, b)
    assert lines == [
        "buffers moved/resized: 81",
        "  layers[*].attn.q: offset 64 -> 128 (+64)",
        "  layers[*].attn.o: size 64 -> 128 (+64)",
        "  layers.7.mlp.down: level L1 -> L2",
        "buffers removed: 1",
        "  layers.39.mlp.down",
    ]


def test_scales_summary_counts_and_ranks():
    a, b = plan(), plan()
    b["scales"].update(s0=0.1 * 1.5, s1=0.2 * 0.9, s2=0.3 * 1.02, s3=0.4 * 1.005, s5="1e-06", extra=1.0)
    del b["scales"]["s19"]
    lines = diff_plans(a, b)
    assert lines[0] == ("scales: 4 changed by >1%; largest: s5 0.6 -> 1e-06 (-100.0%), s0 0.1 -> 0.15 (+50.0%), "
                        "s1 0.2 -> 0.18 (-10.0%)")
    assert lines[1:] == ["scales added: 1 (extra)", "scales removed: 1 (s19)"]


def test_output_is_deterministic():
    a, b = plan(), plan()
    for s in b["steps"][1:-1]:
        s["rule"] = "x"
    b["constants"].append({"name": "new.w", "bytes": 100})
    out = [format_diff(diff_plans(copy.deepcopy(a), copy.deepcopy(b))) for _ in range(3)]
    assert out[0] == out[1] == out[2]
    assert out[0].splitlines()[-1] == "constants: 1 added (+100 B)"


def test_reorder_partial_fold_and_args():
    a, b = plan(), plan()
    for s in b["steps"][1:-1]:
        if not s["op"].endswith("attn.o"):
            s["rule"] = "x"
    step(b, "lm_head")["args"] = ["y=other"]
    b["steps"][1], b["steps"][2] = b["steps"][2], b["steps"][1]
    assert diff_plans(a, b) == [
        "step order changed (first at layers.0.attn.q)",
        "20 steps: rule linear_i8_cluster -> x (layers[*].attn.q, layers[*].attn_norm, layers[*].attn.k, ...)",
        "lm_head: args changed",
    ]


def with_prefill(p: dict) -> dict:
    p = copy.deepcopy(p)
    p["prefill"] = {"chunk": 16, "arena_bytes": {"L1": 4096}, "steps": [dict(s, mode="gemm") for s in p["steps"]],
                    "buffers": copy.deepcopy(p["buffers"])}
    return p


def test_prefill_is_summarised_like_the_decode_plan():
    a = with_prefill(plan())
    b = copy.deepcopy(a)
    b["prefill"]["arena_bytes"] = {"L1": 2048}
    for s in b["prefill"]["steps"]:
        if s["op"].endswith("attn.q"):
            s["cores"] = 4
    b["prefill"]["buffers"][0]["offset"] = 640
    assert diff_plans(a, b) == ["prefill arena_bytes: {L1: 4,096} -> {L1: 2,048}", "prefill layers[*].attn.q: cores 8 -> 4",
                                "prefill buffers moved/resized: 1", "  layers.0.attn_norm: offset 0 -> 640 (+640)"]
    assert diff_plans(plan(), a) == ["prefill plan added"] and diff_plans(a, a) == []


def test_all_shows_every_example_and_lines_fit_a_terminal():
    a, b = plan(layers=40), plan(layers=40)
    for i, buf in enumerate(b["buffers"]):
        buf["offset"] += i          # a different change on every buffer: nothing folds
    few, every = diff_plans(a, b), diff_plans(a, b, few=None)
    assert len(few) == 5 and few[-1] == "  ... and 196 more (deeploy diff --all shows them)"
    assert len(every) == 200 and not any("more" in x for x in every)  # the first buffer does not move
    b["quantization"]["weights"] = "w" * 500
    text = format_diff(diff_plans(a, b))
    assert max(map(len, text.splitlines())) <= 160 and "chars)" in text.splitlines()[0]


def test_cli_diff_exit_codes_and_json(tmp_path):
    import json
    import yaml
    from conftest import invoke
    for name, p in (("a", plan()), ("b", plan())):
        (tmp_path / name).mkdir()
        if name == "b":
            step(p, "lm_head")["cores"] = 1
        (tmp_path / name / "plan.yaml").write_text(yaml.safe_dump(p))
    same, differ = invoke("diff", tmp_path / "a", tmp_path / "a"), invoke("diff", tmp_path / "a", tmp_path / "b")
    assert (same.returncode, same.stdout) == (0, "no changes\n")
    assert (differ.returncode, differ.stdout) == (1, "lm_head: cores 8 -> 1\n")
    js = invoke("diff", tmp_path / "a", tmp_path / "b", "--json")
    assert js.returncode == 1 and json.loads(js.stdout) == {"equal": False, "changes": ["lm_head: cores 8 -> 1"]}
    missing = invoke("diff", tmp_path / "a", tmp_path / "nowhere")
    assert missing.returncode == 2 and "no plan found" in missing.stderr
