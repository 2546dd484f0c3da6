"""The weight stream (passes/stream.py): a linear layer's first weight tile is fetched while the units before it run."""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from deeploy_dsl.backend.cmodel import per_layer_c
from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.cost import exposed_first_tile, first_tile_bytes, step_cost
from deeploy_dsl.passes.arena import lifetimes
from deeploy_dsl.passes.forks import peak
from deeploy_dsl.passes.stream import streamable, units

from test_prefill import check_host

DPLY = Path(__file__).resolve().parents[1] / "deployments/stories260k.dply"


@pytest.fixture(scope="module")
def builds(model_dir):
    made = {}

    def build(*overrides: str):
        if overrides not in made:
            made[overrides] = compile_deployment(DPLY, list(overrides))
        return made[overrides]
    return build


def stream_units(c):
    return [u for u in units(c.plan) if all(streamable(s) for s in u)]


def test_at_256_kib_every_linear_layer_is_fetched_during_the_one_before(builds):
    """The example's L1 holds every window: each linear layer's unit (q+k+v is one fork group) is fetched before the
    unit of the linear layer before it runs, the first at the token's start (step 0, the embedding)."""
    c = builds()
    us = stream_units(c)
    assert len(us) == 5 * c.dep.model.dims.layers + 1  # q+k+v, o, gate, up, down per layer; lm_head
    at = 0
    for u in us:
        assert {s.staging.early for s in u} == {at}, u[0].op
        at = u[0].index
    spans = lifetimes(c.plan)
    for u in us:
        for s in u:  # the first tile is live from its fetch; the other buffers of a streamed layer from its unit
            for names in s.staging.tiling.buffers.values():
                if names:
                    assert spans[names[0]][0] == s.staging.early
                    assert all(spans[n][0] >= u[0].index for n in names[1:])


def test_a_window_the_level_cannot_hold_is_not_streamed(builds):
    """At 16 KiB some windows do not hold the next layer's first tile: that layer fetches its own, the next fetch
    starts after it, and every streamed window fits the level (with the fork groups' margin)."""
    c = builds("memory.L1=16KiB")
    l1 = c.dep.memory[0]
    us = stream_units(c)
    streamed = [u for u in us if u[0].staging.early is not None]
    assert streamed and len(streamed) < len(us)
    at = 0
    for u in us:
        e = u[0].staging.early
        if e is not None:
            assert e == at and peak(c.plan, l1.name, c.dep, (e, u[-1].index)) <= l1.size_bytes * 15 // 16
            at = u[0].index
        else:
            at = u[-1].index + 1
    assert c.alloc.arena_bytes["L1"] <= l1.size_bytes


def test_without_double_buffering_nothing_streams(builds):
    c = builds("memory.L1=256KiB holds activations")
    assert all(s.staging.early is None for s in c.plan.steps)
    assert "stream_fetch" not in render(c)["model.c"]


def test_the_cost_model_charges_only_what_the_window_does_not_hide(builds):
    """A streamed layer's first tile costs the DMA cycles beyond what the units since its fetch computed, never more
    than the tile's own move: none for down (fetched while up and the SwiGLU compute), some for layer 0's q+k+v (the
    embedding and a norm hide little); without the stream a layer pays it whole."""
    c = builds()
    t = c.dep.target
    for s in c.plan.steps:
        if s.staging.early is None:
            continue
        move = -(-first_tile_bytes(s) // t.dma_bytes_per_cycle)
        late = exposed_first_tile(s, c.plan, c.dep)
        assert 0 <= late <= move
        alone = replace(s, staging=replace(s.staging, early=None))
        assert step_cost(s, c.plan, c.dep).cycles <= step_cost(alone, c.plan, c.dep).cycles
        if s.op == "layers.1.mlp.down":
            assert late == 0 and step_cost(s, c.plan, c.dep).cycles < step_cost(alone, c.plan, c.dep).cycles
        if s.op == "layers.0.attn.q":
            assert late > 0


def test_every_layer_takes_the_last_layers_choices(builds):
    """One body serves an op in every layer: layer 0's q, whose window (the embedding and a norm) hides little,
    takes the packed GEMV as the steady-state layers do, and says why."""
    c = builds()
    by_role = {}
    for s in c.plan.steps:
        if s.op.startswith("layers.") and streamable(s):
            by_role.setdefault(s.op.split(".", 2)[2], set()).add((s.spec.name, s.staging.tiles))
    assert all(len(v) == 1 for v in by_role.values()), by_role
    q0 = next(s for s in c.plan.steps if s.op == "layers.0.attn.q")
    assert "as in the last layer" in q0.reason


def test_forward_fetches_before_the_unit_it_overlaps_and_prefill_does_not(builds):
    model = render(builds())["model.c"]
    fwd = model[model.index("int forward("):model.index("int prefill(")]
    pre = model[model.index("int prefill("):]
    assert fwd.index("STEP(0, stream_fetch(0));") < fwd.index("STEP(0, embed(&c));")
    assert "STEP(2 + 13 * l, stream_fetch(1 + 5 * l));" in fwd and "c.pf = 5 * l;" in fwd and "c.pf = 25;" in fwd
    assert "stream_fetch" not in pre and "c.pf = -1" in pre
    assert "weight_stream_wait(c->pf);" in model


def test_per_layer_values_as_c():
    assert per_layer_c([1, 6, 11], [0, 1, 2]) == ("", "1 + 5 * l")
    assert per_layer_c([0, 5, 10], [0, 1, 2]) == ("", "5 * l")
    assert per_layer_c([7, 7], [3, 4]) == ("", "7")
    assert per_layer_c([6, 11, None], [1, 2, 3]) == ("l <= 2", "6 + 5 * (l - 1)")
    assert per_layer_c([None, 3], [0, 1]) == ("l >= 1", "3")
    with pytest.raises(AssertionError):
        per_layer_c([1, 2, 4], [0, 1, 2])


@pytest.mark.parametrize("budget", ["256KiB", "16KiB"])
def test_c_with_the_stream_equals_golden(builds, tmp_path, budget):
    """Host C == golden on every logit, token by token and after prefills, all layers streamed (256 KiB) and some
    fetching their own tiles (16 KiB)."""
    check_host(builds(f"memory.L1={budget}"), tmp_path)
