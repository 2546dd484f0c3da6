"""Tiling across memory levels: every L1 budget gives the same integers, fits its budget, reaches the
allocation lower bound (or says how far it is), and moves close to the minimum number of DMA bytes."""
from __future__ import annotations

import re
from dataclasses import replace
import subprocess

import numpy as np
import pytest

from conftest import DPLY, needs_cc
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.cost import step_cost
from deeploy_dsl.errors import MemoryBudgetError
from deeploy_dsl.engines.program_io import parse_program_output
from deeploy_dsl.engines.runner import build_c, run_golden_compiled

BUDGETS = ("16KiB", "32KiB", "64KiB", "256KiB")
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"


@pytest.fixture(scope="module", params=BUDGETS)
def at_budget(request, model_dir):
    return request.param, compile_deployment(DPLY, [f"memory.L1={request.param}"])


def test_every_level_fits_its_budget_and_reaches_the_lower_bound(at_budget):
    budget, c = at_budget
    for lvl in c.dep.memory:
        arena, weights = c.alloc.arena_bytes[lvl.name], c.alloc.weight_bytes[lvl.name]
        assert arena + weights <= lvl.size_bytes, (budget, lvl.name)
        # the lower bound with sizes rounded to the alignment is reached, and the search proves it
        assert arena == c.alloc.aligned_lower_bound[lvl.name], (budget, lvl.name)
        assert c.alloc.optimal[lvl.name]
        assert arena - c.alloc.lower_bound[lvl.name] < lvl.alignment * len(c.alloc.buffers)


def test_tiles_shrink_with_the_budget_and_stream_where_streaming_is_cheaper(model_dir):
    rows = {}
    for budget in ("6KiB", "16KiB", "256KiB"):
        c = compile_deployment(DPLY, [f"memory.L1={budget}"])
        lm = next(s for s in c.plan.steps if s.op == "lm_head")
        rows[budget] = (lm.staging.tiling.tile, lm.staging.tiles)
        assert sum(s.staging.dma_bytes for s in c.plan.steps) >= c.plan.dma_lower_bound
    assert rows["6KiB"][0] < rows["16KiB"][0] <= rows["256KiB"][0]
    # 256 KiB holds lm_head's rows whole, but one tile cannot overlap its DMA with compute: the tiler streams them,
    # and the cost model prices that below the whole copy (the same bytes, fewer set-ups, no overlap)
    assert rows["256KiB"][1] > 1 and lm.staging.tiling.double_buffer
    t = c.dep.target
    whole = replace(lm, staging=replace(lm.staging, tiling=replace(lm.staging.tiling, tile=512, double_buffer=False),
                                        tiles=1, dma_cycles=lm.staging.dma_cycles
                                        - 3 * (lm.staging.tiles - 1) * t.dma_setup_cycles))
    assert step_cost(lm, c.plan, c.dep).cycles < step_cost(whole, c.plan, c.dep).cycles


def test_dma_is_within_ten_percent_of_its_lower_bound_at_64kib(model_dir):
    c = compile_deployment(DPLY, ["memory.L1=64KiB"])
    moved = sum(s.staging.dma_bytes for s in c.plan.steps)
    assert c.plan.dma_lower_bound <= moved <= 1.10 * c.plan.dma_lower_bound


def test_no_tiling_fits_names_the_layer_the_budget_and_the_smallest_working_set(model_dir):
    with pytest.raises(MemoryBudgetError) as e:
        compile_deployment(DPLY, ["memory.L1=1KiB"])
    text = e.value.render()
    assert "no tiling fits L1" in text and "smallest working set needs" in text
    assert re.search(r"layers\[0\.\.4\]\.\S+: no tiling fits", text)  # one message for all layers


@pytest.mark.parametrize("budget", BUDGETS + ("6KiB",))
def test_c_is_bit_exact_with_golden_at_every_budget(budget, model_dir, tmp_path):
    needs_cc()
    c = compile_deployment(DPLY, [f"memory.L1={budget}"])
    ids, logits = run_golden_compiled(c, PROMPT, 24, stop=False)
    exe = build_c(c, tmp_path / "out")
    out = subprocess.run([str(exe), "--ids", " ".join(map(str, PROMPT)), "--tokens", "24", "--print-ids", "--no-stop", "--no-prefill",
                          "--logits", str(tmp_path / "l.bin")], capture_output=True, text=True, check=True)
    assert parse_program_output(out.stdout)[0] == ids
    c_logits = np.fromfile(tmp_path / "l.bin", dtype="<i4").reshape(-1, c.dep.model.dims.vocab)
    np.testing.assert_array_equal(c_logits, logits)


def test_the_c_program_moves_what_the_plan_says(model_dir, tmp_path):
    """The DMA counters of the generated program at the report position equal the plan's total."""
    needs_cc()
    c = compile_deployment(DPLY, ["memory.L1=16KiB"])
    exe = build_c(c, tmp_path / "out")
    p = c.plan.report_pos
    res = subprocess.run([str(exe), "--ids", "1", "--tokens", str(p + 1), "--print-ids", "--no-stop", "--dma", "--no-prefill"],
                         capture_output=True, text=True, check=True)
    per_pos = parse_program_output(res.stdout + res.stderr)[2]
    assert per_pos[p] == sum(s.staging.dma_bytes for s in c.plan.steps)


@pytest.mark.parametrize("cores", [2, 3, 8])
def test_host_shares_give_the_same_integers_for_every_core_count(cores, model_dir, tmp_path):
    """On the host the cores' shares run one after another; the result must not depend on how many."""
    needs_cc()
    c = compile_deployment(DPLY, ["memory.L1=16KiB"])
    ids, logits = run_golden_compiled(c, PROMPT, 12, stop=False)
    exe = build_c(c, tmp_path / "out")
    out = subprocess.run([str(exe), "--ids", " ".join(map(str, PROMPT)), "--tokens", "12", "--print-ids", "--no-stop", "--no-prefill",
                          "--cores", str(cores), "--logits", str(tmp_path / "l.bin")],
                         capture_output=True, text=True, check=True)
    assert parse_program_output(out.stdout)[0] == ids
    np.testing.assert_array_equal(np.fromfile(tmp_path / "l.bin", dtype="<i4").reshape(-1, c.dep.model.dims.vocab), logits)
