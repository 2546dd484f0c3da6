"""Static memory: the allocator's checker catches what it should, plan.yaml re-checks on its own, and
best-fit never puts two live buffers on the same bytes."""
from __future__ import annotations

import shutil
import subprocess
import sys
from dataclasses import replace
from itertools import combinations
from pathlib import Path

import pytest
import yaml
from hypothesis import given, settings, strategies as st

from deeploy_dsl.passes.arena import Buffer, allocate, best_fit, check_allocation
from deeploy_dsl.errors import DeeployError, MemoryBudgetError

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
DPLY = ROOT / "deployments/stories260k.dply"
needs_model = pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").exists(),
                                 reason=f"the stories260K model is not at {MODEL_DIR}")


# ---- an independent checker: plain tuples, no deeploy code ---------------------------------------

def live_together(a: dict, b: dict) -> bool:
    return a["first_step"] <= b["last_step"] and b["first_step"] <= a["last_step"]


def share_bytes(a: dict, b: dict) -> bool:
    return a["offset"] < b["offset"] + b["size"] and b["offset"] < a["offset"] + a["size"]


def clashes(buffers: list[dict]) -> list[tuple[str, str]]:
    """Pairs of buffers of one level that are live at a common step and share a byte."""
    return [(a["name"], b["name"]) for a, b in combinations(buffers, 2)
            if a["level"] == b["level"] and live_together(a, b) and share_bytes(a, b)]


def max_live_bytes(buffers: list[dict], level: str) -> int:
    mine = [b for b in buffers if b["level"] == level]
    steps = {s for b in mine for s in range(b["first_step"], b["last_step"] + 1)}
    return max((sum(b["size"] for b in mine if b["first_step"] <= t <= b["last_step"]) for t in steps), default=0)


def as_dict(b: Buffer) -> dict:
    return {"name": b.name, "level": b.level, "offset": b.offset, "size": b.size,
            "first_step": b.first_step, "last_step": b.last_step}


# ---- the real allocation of stories260k ------------------------------------------------------------

@pytest.fixture(scope="module")
def c260k():
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.skip(f"the stories260K model is not at {MODEL_DIR}")
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(DPLY)


def _capacity(alloc) -> dict[str, int]:
    return dict(alloc.arena_bytes)


def test_real_allocation_is_clean(c260k):
    alloc = c260k.alloc
    assert check_allocation(alloc.buffers, _capacity(alloc)) == []
    assert clashes([as_dict(b) for b in alloc.buffers]) == []
    # the activations really are packed: several buffers reuse offset 0 of L1 at different times
    at_zero = [b for b in alloc.buffers if b.level == "L1" and b.offset == 0]
    assert len(at_zero) > 2


def test_checker_reports_an_injected_overlap(c260k):
    bufs = list(c260k.alloc.buffers)
    # two buffers of one level, live at a common step, on different bytes
    a, b = next((a, b) for a, b in combinations(bufs, 2)
                if a.level == b.level and live_together(as_dict(a), as_dict(b)) and a.offset != b.offset)
    moved = [replace(x, offset=a.offset) if x is b else x for x in bufs]
    problems = check_allocation(moved, _capacity(c260k.alloc))
    assert problems, "moving a live buffer onto another must be reported"
    assert any(a.name in p and b.name in p and "overlap" in p for p in problems), problems
    # the independent checker agrees
    assert (a.name, b.name) in clashes([as_dict(x) for x in moved]) or \
        (b.name, a.name) in clashes([as_dict(x) for x in moved])


def test_checker_reports_buffers_outside_the_arena(c260k):
    cap = _capacity(c260k.alloc)
    bufs = list(c260k.alloc.buffers)
    victim = max((b for b in bufs if b.level == "L1"), key=lambda b: b.offset + b.size)
    past_end = [replace(b, offset=cap["L1"] - b.size + 1) if b is victim else b for b in bufs]
    problems = check_allocation(past_end, cap)
    assert any(victim.name in p and "outside L1" in p for p in problems), problems
    negative = [replace(b, offset=-4) if b is victim else b for b in bufs]
    assert any(victim.name in p and "outside" in p for p in check_allocation(negative, cap))
    # a level the capacity table does not know holds nothing
    assert any("outside L3" in p for p in check_allocation([replace(victim, level="L3")], cap))


def test_shared_bytes_with_disjoint_lifetimes_are_fine(c260k):
    # the real allocation reuses bytes across lifetimes ...
    bufs = c260k.alloc.buffers
    reuse = [(a, b) for a, b in combinations(bufs, 2)
             if a.level == b.level and share_bytes(as_dict(a), as_dict(b))]
    assert reuse and all(not live_together(as_dict(a), as_dict(b)) for a, b in reuse)
    # ... and the checker's notion of "live together" is inclusive at both ends
    first = Buffer("a", "L1", 0, 64, 0, 3, False)
    assert check_allocation([first, Buffer("b", "L1", 0, 64, 4, 9, False)], {"L1": 64}) == []
    assert check_allocation([first, Buffer("b", "L1", 32, 64, 3, 9, False)], {"L1": 96}) == \
        ["a and b overlap in L1 while both are live"]
    # touching byte ranges do not overlap; different levels never do
    assert check_allocation([first, Buffer("b", "L1", 64, 64, 0, 3, False)], {"L1": 128}) == []
    assert check_allocation([first, Buffer("b", "L2", 0, 64, 0, 3, False)], {"L1": 64, "L2": 64}) == []


def test_kv_cache_in_the_activation_level(c260k, tmp_path):
    """KV cache and activations sharing L1: the cache sits at the bottom, activations above it. With int8 keys: with
    int16 keys the cache alone is 240 KiB, which siracusa's 256 KiB L1 cannot hold beside the activations."""
    from deeploy_dsl.compiler import compile_deployment
    from deeploy_dsl.frontend.interpret import load_deployment
    c260k = compile_deployment(DPLY, ["quantize.keys=int8"])
    dep = load_deployment(DPLY, ["memory.L1=256KiB holds activations, kv_cache", "memory.L2=2MiB holds weights",
                                 "quantize.keys=int8"])
    alloc = allocate(c260k.plan, dep)
    l1 = [b for b in alloc.buffers if b.level == "L1"]
    kv = [b for b in l1 if b.persistent]
    acts = [b for b in l1 if not b.persistent]
    assert {b.name for b in kv} == {f"kv.{w}.{i}" for w in "kv" for i in range(5)}
    kv_top = max(b.offset + b.size for b in kv)
    assert kv_top == sum(b.size for b in kv) and min(b.offset for b in acts) >= kv_top
    assert all(b.first_step == 0 and b.last_step == len(c260k.plan.steps) - 1 for b in kv)
    assert alloc.lower_bound["L1"] == kv_top + c260k.alloc.lower_bound["L1"]
    assert alloc.arena_bytes["L1"] >= alloc.lower_bound["L1"]
    assert alloc.arena_bytes["L2"] == 0 and alloc.weight_bytes["L2"] == c260k.alloc.weight_bytes["L2"]
    assert clashes([as_dict(b) for b in alloc.buffers]) == []


# ---- plan.yaml alone ---------------------------------------------------------------------------

def deeploy_cmd() -> list[str]:
    beside = Path(sys.executable).parent / "deeploy"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("deeploy")
    return [found] if found else [sys.executable, "-m", "deeploy_dsl.cli"]


def _buffer_uses(steps: list[dict], names: set[str]) -> dict[str, list[int]]:
    """Step indices at which each buffer appears among the step's arguments (`label=name[pos]`); the steps of
    a fork group (`fork: [first, last]`) run at once, so a member's buffers are in use over the whole group; a first
    tile the weight stream fetches (`stream: {fetched_at: i, tiles: [...]}`) is in use from step i."""
    uses: dict[str, list[int]] = {}
    for s in steps:
        span = s.get("fork", [s["index"], s["index"]])
        for arg in s["args"]:
            value = str(arg).split("=", 1)[1].removesuffix("[pos]")
            if value in names:
                uses.setdefault(value, []).extend(span)
        for value in s.get("staging", []):  # DMA staging buffers and tiles of this step
            uses.setdefault(value, []).extend(span)
        for value in s.get("stream", {}).get("tiles", []):  # a first tile the weight stream fetches early
            uses.setdefault(value, []).append(s["stream"]["fetched_at"])
    return uses


def load_plan_yaml(text: str) -> dict:
    """plan.yaml as data: plain YAML, read without any deeploy code."""
    return yaml.safe_load(text)


@pytest.fixture(scope="module")
def build_dirs(tmp_path_factory):
    """deeploy build through the console script, as a user runs it; one build per set of -D."""
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.skip(f"the stories260K model is not at {MODEL_DIR}")
    made: dict[tuple, Path] = {}

    def build(*defines: str) -> Path:
        if defines not in made:
            out = tmp_path_factory.mktemp("build")
            res = subprocess.run(deeploy_cmd() + ["build", "deployments/stories260k.dply", "-o", str(out), *defines],
                                 cwd=ROOT, capture_output=True, text=True)
            assert res.returncode == 0, res.stderr
            made[defines] = out
        return made[defines]
    return build


def test_plan_yaml_is_valid_yaml(build_dirs):
    plan = yaml.safe_load((build_dirs() / "plan.yaml").read_text())
    assert {"steps", "buffers", "memory"} <= set(plan)


@pytest.mark.parametrize("defines", [[], ["-D", "memory.L1=16KiB"]], ids=["as-written", "L1=16KiB"])
def test_plan_yaml_rechecked_alone(build_dirs, defines):
    plan = load_plan_yaml((build_dirs(*defines) / "plan.yaml").read_text())
    memory, buffers, steps = plan["memory"], plan["buffers"], plan["steps"]
    if defines:
        assert memory["L1"]["budget_bytes"] == 16 * 1024
    assert buffers and {b["level"] for b in buffers} <= set(memory)

    assert clashes(buffers) == []
    for b in buffers:
        lvl = memory[b["level"]]
        assert b["size"] > 0 and 0 <= b["offset"], b
        assert b["offset"] % lvl["alignment"] == 0, b
        assert b["offset"] + b["size"] <= lvl["arena_bytes"] <= lvl["budget_bytes"], b
        assert 0 <= b["first_step"] <= b["last_step"] < len(steps), b
    for name, lvl in memory.items():
        assert lvl["lower_bound_bytes"] <= lvl["arena_bytes"], name
        assert lvl["arena_bytes"] + lvl["weight_bytes"] <= lvl["budget_bytes"] <= lvl["capacity_bytes"], name
        # the reported bound is no weaker than the bytes this plan really has live at once
        assert max_live_bytes(buffers, name) <= lvl["lower_bound_bytes"], name

    # lifetimes are exactly the steps that use a buffer (the KV cache persists over the whole step)
    names = {b["name"] for b in buffers}
    uses = _buffer_uses(steps, names)
    assert set(uses) == names
    for b in buffers:
        if b.get("persistent"):
            assert (b["first_step"], b["last_step"]) == (0, len(steps) - 1), b
        else:
            assert (b["first_step"], b["last_step"]) == (min(uses[b["name"]]), max(uses[b["name"]])), b


# ---- best_fit on random lifetimes --------------------------------------------------------------

items_strategy = st.lists(
    st.tuples(st.integers(1, 4096), st.integers(0, 50), st.integers(0, 50)), min_size=0, max_size=40,
).map(lambda xs: [(f"b{i}", size, min(f, l), max(f, l)) for i, (size, f, l) in enumerate(xs)])


@settings(max_examples=150, deadline=None)
@given(items=items_strategy, align=st.sampled_from([1, 4, 8]))
def test_best_fit_never_overlaps_live_buffers(items, align):
    offsets = best_fit(items, base=0, align=align)
    assert set(offsets) == {name for name, *_ in items}
    bufs = [Buffer(name, "L1", offsets[name], size, first, last, False) for name, size, first, last in items]
    arena = max((b.offset + b.size for b in bufs), default=0)
    assert check_allocation(bufs, {"L1": arena}) == []
    as_dicts = [as_dict(b) for b in bufs]
    assert clashes(as_dicts) == []
    assert all(b.offset >= 0 and b.offset % align == 0 for b in bufs)
    assert arena >= max_live_bytes(as_dicts, "L1")


@given(items=items_strategy, base=st.integers(0, 100), align=st.sampled_from([1, 4, 8]))
@settings(max_examples=50, deadline=None)
def test_best_fit_respects_the_base(items, base, align):
    offsets = best_fit(items, base=base, align=align)
    assert all(o >= base and o % align == 0 for o in offsets.values())


def test_best_fit_reuses_freed_bytes():
    # b lives after a ends: it takes a's bytes; c overlaps both in time and goes above
    offsets = best_fit([("a", 64, 0, 2), ("b", 64, 3, 5), ("c", 16, 2, 3)], base=0, align=8)
    assert offsets == {"a": 0, "b": 0, "c": 64}


# ---- the memory budget ---------------------------------------------------------------------------

def test_budget_error_names_level_need_bound_and_budget_from_the_command_line(c260k):
    # the plan does not depend on the budget, so the compiled plan is allocated again under -D
    # (tests/test_cli.py runs the same through `deeploy check`)
    from deeploy_dsl.frontend.interpret import load_deployment
    need, bound = c260k.alloc.arena_bytes["L1"], c260k.alloc.lower_bound["L1"]
    assert need > 1024, "the test needs activations that do not fit 1 KiB"
    with pytest.raises(MemoryBudgetError) as e:
        allocate(c260k.plan, load_deployment(DPLY, ["memory.L1=1KiB"]))
    assert isinstance(e.value, DeeployError)
    (d,) = e.value.diagnostics
    assert d.pos.file == "<command line>" and d.pos.text == "-D memory.L1=1KiB"
    for part in ("L1", f"needs {need} B", f"lower bound {bound} B", "has 1024 B"):
        assert part in d.message, (part, d.message)
    assert "-D memory.L1=1KiB" in e.value.render()


def test_budget_error_points_at_the_level_line(c260k, tmp_path):
    from deeploy_dsl.frontend.interpret import load_deployment
    text = DPLY.read_text().replace("L1 256 KiB holds activations", "L1 1 KiB   holds activations")
    assert "L1 1 KiB   holds activations" in text
    text = text.replace('"../../shared/models/', f'"{MODEL_DIR.parent}/')
    path = tmp_path / "tight.dply"
    path.write_text(text)
    line = next(i for i, ln in enumerate(text.split("\n"), 1) if ln.startswith("    L1 1 KiB   holds activations"))
    with pytest.raises(MemoryBudgetError) as e:
        allocate(c260k.plan, load_deployment(path))
    (d,) = e.value.diagnostics
    assert (d.pos.line, d.pos.col) == (line, 5)
    assert f"needs {c260k.alloc.arena_bytes['L1']} B" in d.message and "but has 1024 B" in d.message
    rendered = e.value.render()
    assert f":{line}:5: error: L1 needs" in rendered and "L1 1 KiB   holds activations" in rendered
    assert "raise L1's size" in rendered
