"""Fork groups (forks.py): which steps share one cluster fork, and that the memory plan allows it."""
from __future__ import annotations

from pathlib import Path

import pytest

from deeploy_dsl.passes.arena import lifetimes
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.passes.forks import candidate_runs, fits_in_a_fork

DPLY = Path(__file__).resolve().parents[1] / "deployments/stories260k.dply"
# without double buffering every linear layer is one tile and q, k, v and gate, up each share one fork; the example's
# double-buffered L1 streams gate and up in tiles (the cost model prices that lower), and a streamed step forks per tile
WHOLE = "memory.L1=256KiB holds activations"


@pytest.fixture(scope="module")
def whole(model_dir):
    return compile_deployment(DPLY, [WHOLE])


def groups(plan) -> list[list[str]]:
    return [[m.op for m in plan.steps[s.fork[0]:s.fork[1] + 1]] for s in plan.steps if s.fork and s.fork[0] == s.index]


def test_q_k_v_and_gate_up_share_a_fork(whole):
    compiled = whole
    got = groups(compiled.plan)
    want = []
    for i in range(compiled.dep.model.dims.layers):
        want += [[f"layers.{i}.attn.q", f"layers.{i}.attn.k", f"layers.{i}.attn.v"],
                 [f"layers.{i}.mlp.gate", f"layers.{i}.mlp.up"]]
    assert got == want
    for s in compiled.plan.steps:  # members are fork-able, and never read what an earlier member writes
        if s.fork:
            assert fits_in_a_fork(s) and s.fork[0] <= s.index <= s.fork[1]
            earlier = {a.name for m in compiled.plan.steps[s.fork[0]:s.index] for a in m.args if a.label == "y"}
            assert not earlier & {a.name for a in s.args if a.kind == "buf"}


def test_a_group_keeps_its_members_buffers_apart(whole):
    """All members run at once: every buffer a member uses is live over the whole group."""
    compiled = whole
    spans = lifetimes(compiled.plan)
    for s in compiled.plan.steps:
        if s.fork:
            for a in s.args:
                if a.kind == "buf" and compiled.plan.values[a.name].kind != "kv":
                    lo, hi = spans[a.name]
                    assert lo <= s.fork[0] and hi >= s.fork[1], (s.op, a.name)
    by_name = {b.name: b for b in compiled.alloc.buffers}
    q, k = by_name["layers.0.attn.q.w_tile0"], by_name["layers.0.attn.k.w_tile0"]
    assert q.offset + q.size <= k.offset or k.offset + k.size <= q.offset


def test_groups_only_where_the_level_holds_them():
    """Without double buffering (one tile a layer where it fits): at 6 KiB of L1, q, k and v each arrive in one tile
    but not all three at once: separate forks. At 16 KiB q+k+v fit together but gate+up (2 x 11 KiB of weights) do
    not; at 32 KiB both do. The packed GEMV's weights take twice the blocked int8 bytes (2 n_in + ceil(n_in/8) a row):
    the same at twice the budgets. Double-buffered (the example's L1), gate and up stream in tiles from 16 KiB on,
    each tile a fork of its own, and only q+k+v group."""
    counts = {}
    for budget, gemv in (("6KiB", "auto"), ("16KiB", "auto"), ("32KiB", "auto"), ("32KiB", "packed"),
                         ("64KiB", "packed")):
        for held in (" holds activations", ""):
            c = compile_deployment(DPLY, [f"memory.L1={budget}{held}", f"gemv={gemv}"])
            counts[budget, gemv, bool(held)] = [len(g) for g in groups(c.plan)]
            assert c.alloc.arena_bytes["L1"] <= c.dep.memory[0].size_bytes
    assert counts == {("6KiB", "auto", True): [], ("16KiB", "auto", True): [3] * 5, ("32KiB", "auto", True): [3, 2] * 5,
                      ("32KiB", "packed", True): [3] * 5, ("64KiB", "packed", True): [3, 2] * 5,
                      ("6KiB", "auto", False): [], ("16KiB", "auto", False): [3] * 5,
                      ("32KiB", "auto", False): [3] * 5, ("32KiB", "packed", False): [3] * 5,
                      ("64KiB", "packed", False): [3] * 5}
    c6 = compile_deployment(DPLY, ["memory.L1=6KiB"])
    assert candidate_runs(c6.plan) and all(s.fork is None for s in c6.plan.steps)


def test_plan_yaml_names_the_group(rendered):
    lines = [ln for ln in rendered["plan.yaml"].splitlines() if ln.startswith("  - {") and "op: layers.0.attn." in ln and "fork:" in ln]
    assert len(lines) == 3 and all("fork: [2, 4]" in ln for ln in lines)
    assert "cluster_run(c->n == 1 ? attn_q_k_v_task : attn_q_k_v_tokens, c)" in rendered["model.c"]


@pytest.mark.parametrize("packed", [True, False])
def test_half_block_shares_give_the_same_integers_on_any_core_count(whole, tmp_path, packed):
    """With gate and up one tile each (no double buffering), the blocked int8 GEMV (what `gemv auto` takes then on
    siracusa, whose weights come from L2) shares gate and up out as 86 half blocks of 4 rows, so with 3, 7 or 8 cores some shares start at a block's second half; the packed GEMV
    (`gemv packed`) shares their 44 whole blocks. The per-token SwiGLU runs as two forks whose spans every core combines: the host
    program (which runs the N shares one after another) gives golden's logits, with and without prefill, for every
    core count."""
    import subprocess

    import numpy as np

    from deeploy_dsl.engines.runner import build_c, run_golden_compiled

    compiled = compile_deployment(DPLY, [WHOLE, "gemv=packed"]) if packed else whole
    exe = build_c(compiled, tmp_path / "build")
    share = "cluster_share(44," if packed else "cluster_share(86,"
    assert f"{share} core, n_cores, &lo, &hi);" in (tmp_path / "build" / "model.c").read_text()
    pids, vocab = [1, 403, 407, 261, 378], compiled.dep.model.dims.vocab
    _, want = run_golden_compiled(compiled, pids, 6, stop=False)
    for cores in (3, 7, 8):
        for prefill in (False, True):
            out = tmp_path / f"logits{cores}{prefill}.bin"
            subprocess.run([str(exe), "--ids", " ".join(map(str, pids)), "--tokens", "6", "--logits", str(out),
                            "--no-stop", "--cores", str(cores)] + ([] if prefill else ["--no-prefill"]),
                           capture_output=True, text=True, check=True)
            got = np.fromfile(out, dtype="<i4").reshape(-1, vocab)
            np.testing.assert_array_equal(got, want[len(pids) - 1:] if prefill else want)
