"""Memory-map SVGs: valid XML, one box per buffer, byte-stable, hash-seed independent, readable."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from deeploy_dsl.backend.memory_map import base_name, colour, memory_map_svg, memory_maps
from deeploy_dsl.backend.plandiff import load_plan

ROOT = Path(__file__).resolve().parents[1]
MODEL = ROOT.parent / "shared/models/stories260K/model.safetensors"
needs_model = pytest.mark.skipif(not MODEL.exists(), reason=f"shared model not found at {MODEL}")
NS = "{http://www.w3.org/2000/svg}"


@pytest.fixture(scope="module")
def real_plan(tmp_path_factory):
    out = tmp_path_factory.mktemp("build") / "stories260k"
    cli = [sys.executable, "-c", "from deeploy_dsl.cli import main; main()", "build",
           str(ROOT / "deployments/stories260k.dply"), "-o", str(out)]
    r = subprocess.run(cli, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout + r.stderr
    return load_plan(out)


def toy_plan() -> dict:
    bufs = [{"name": "x", "level": "L1", "offset": 0, "size": 512, "first_step": 0, "last_step": 9},
            {"name": "layers.0.attn.q", "level": "L1", "offset": 512, "size": 64, "first_step": 1, "last_step": 1},
            {"name": "layers.1.attn.q", "level": "L1", "offset": 512, "size": 64, "first_step": 6, "last_step": 6},
            {"name": "kv.k.0", "level": "L2", "offset": 0, "size": 4096, "first_step": 0, "last_step": 9,
             "persistent": True, "dtype": "int8", "shape": [64, 64]},
            {"name": "odd<&>", "level": "L1", "offset": 576, "size": 8, "first_step": 3, "last_step": 4}]
    mem = {"L1": {"budget_bytes": 8192, "arena_bytes": 640, "lower_bound_bytes": 584},
           "L2": {"budget_bytes": 65536, "arena_bytes": 4096, "lower_bound_bytes": 4096},
           "L3": {"budget_bytes": 1 << 20, "arena_bytes": 0, "lower_bound_bytes": 0}}
    return {"deployment": "toy", "memory": mem, "steps": [{"op": f"s{i}"} for i in range(10)], "buffers": bufs}


def rects(svg: str) -> list:
    return ET.fromstring(svg.encode()).iter(f"{NS}rect")


@needs_model
@pytest.mark.parametrize("level", ["L1", "L2"])
def test_real_plan_one_rect_per_buffer(real_plan, level):
    svg = memory_map_svg(real_plan, level)
    root = ET.fromstring(svg.encode())
    names = sorted(b["name"] for b in real_plan["buffers"] if b["level"] == level)
    got = sorted(r.find(f"{NS}title").text.split(":")[0] for r in root.iter(f"{NS}rect"))
    assert got == names and names
    title = root.find(f"{NS}title").text
    arena = real_plan["memory"][level]["arena_bytes"]
    assert level in title and f"arena {arena:,} B" in title and "lower bound" in title
    assert svg == memory_map_svg(real_plan, level)


@needs_model
def test_real_plan_maps(real_plan):
    maps = memory_maps(real_plan)
    assert sorted(maps) == ["memory_L1.svg", "memory_L2.svg"]
    assert all(v.startswith("<?xml") and "</svg>" in v for v in maps.values())
    l2 = ET.fromstring(maps["memory_L2.svg"].encode())
    assert all("persistent" in r.get("class") and r.get("fill").startswith("url(#hatch-") for r in l2.iter(f"{NS}rect"))


def test_geometry_follows_offsets_and_lifetimes():
    svg = memory_map_svg(toy_plan(), "L1")
    boxes = {r.find(f"{NS}title").text.split(":")[0]: r for r in rects(svg)}
    assert sorted(boxes) == ["layers.0.attn.q", "layers.1.attn.q", "odd<&>", "x"]
    x, q0, q1 = boxes["x"], boxes["layers.0.attn.q"], boxes["layers.1.attn.q"]
    f = lambda r, k: float(r.get(k))                                    # noqa: E731
    assert f(q0, "y") + f(q0, "height") == pytest.approx(f(x, "y"), abs=0.02)   # q sits right on top of x
    assert f(x, "width") == pytest.approx(10 * f(q0, "width"), abs=0.05)         # 10 steps vs 1 step
    assert f(q1, "x") - f(q0, "x") == pytest.approx(5 * f(q0, "width"), abs=0.05)
    assert q0.get("fill") == q1.get("fill") != x.get("fill")           # colour follows the base name
    assert "persistent" not in x.get("class")


def test_labels_only_when_they_fit():
    root = ET.fromstring(memory_map_svg(toy_plan(), "L1").encode())
    labels = [t.text for g in root.iter(f"{NS}g") if g.get("class") == "labels" for t in g]
    assert "x" in labels and "odd<&>" not in labels                     # the 8-byte box is too thin to write in
    assert any(r.find(f"{NS}title").text.startswith("odd<&>: [576, 584) = 8 B") for r in rects(memory_map_svg(toy_plan(), "L1")))


def test_lines_and_persistent_style():
    svg = memory_map_svg(toy_plan(), "L2")
    root = ET.fromstring(svg.encode())
    lines = {ln.get("class"): ln for ln in root.iter(f"{NS}line")}
    assert lines["lower-bound"].get("stroke-dasharray") and not lines["arena"].get("stroke-dasharray")
    (kv,) = rects(svg)
    assert kv.get("class") == "buffer persistent" and kv.get("fill").startswith("url(#hatch-")
    assert "kv.k.0: [0, 4,096) = 4,096 B, steps 0..9, int8, shape [64, 64], persistent" == kv.find(f"{NS}title").text
    l1 = ET.fromstring(memory_map_svg(toy_plan(), "L1").encode())
    l1_lines = {ln.get("class"): float(ln.get("y1")) for ln in l1.iter(f"{NS}line")}
    assert l1_lines["lower-bound"] > l1_lines["arena"]                  # 584 B is drawn below 640 B


def test_memory_maps_skips_empty_levels_and_unknown_level_raises():
    assert sorted(memory_maps(toy_plan())) == ["memory_L1.svg", "memory_L2.svg"]
    with pytest.raises(ValueError, match="no memory level 'L9'"):
        memory_map_svg(toy_plan(), "L9")
    tolerant = {"buffers": [{"name": "a", "level": "L1", "size": 16}]}  # no memory, steps or offsets
    assert len(list(rects(memory_maps(tolerant)["memory_L1.svg"]))) == 1


def test_colour_is_stable_across_processes():
    assert base_name("layers.12.attn.q") == "layers.attn.q" and base_name("kv.k.3") == "kv.k"
    code = ("import json, sys; from deeploy_dsl.backend.memory_map import memory_map_svg as m; "
            "print(json.dumps(m(json.loads(sys.argv[1]), 'L1')))")
    outs = {json.loads(subprocess.run([sys.executable, "-c", code, json.dumps(toy_plan())], cwd=ROOT, check=True,
                                      capture_output=True, text=True, env={**os.environ, "PYTHONHASHSEED": seed}).stdout)
            for seed in ("1", "2")}
    assert outs == {memory_map_svg(toy_plan(), "L1")}
    assert colour("layers.0.mlp.up") == colour("layers.4.mlp.up") and colour("x").startswith("#") and len(colour("x")) == 7
