"""Prefill (issue 5): the prompt runs as chunks of tokens, step-major, with the integers of token-by-token
decoding: C prefill == C token by token == golden (ids and every logit), the KV cache the same, on the host
(cluster and NPU mapping) and on RV32 under QEMU (1 and 8 harts)."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest
import yaml

from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import SpecError
from deeploy_dsl.engines.golden import Golden
from deeploy_dsl.passes.prefill import mode
from deeploy_dsl.engines.qemu import build_rv32, decode_instret, missing_tools, run_elf
from deeploy_dsl.backend.report import report_dict
from deeploy_dsl.engines.runner import build_c, run_golden_compiled

ROOT = Path(__file__).resolve().parents[1]
DPLY = ROOT / "deployments/stories260k.dply"
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
N_NEW = 6


def prompt_of(n: int) -> list[int]:
    return [1] + [3 + (i * 37) % 500 for i in range(n - 1)]


def lengths(chunk: int) -> list[int]:
    return sorted({1, max(chunk - 1, 1), chunk, chunk + 1, 2 * chunk + 3})


def run_exe(exe: Path, pids: list[int], n_new: int, logits_path: Path, vocab: int, prefill: bool):
    cmd = [str(exe), "--ids", " ".join(map(str, pids)), "--tokens", str(n_new), "--print-ids", "--logits",
           str(logits_path), "--no-stop"] + ([] if prefill else ["--no-prefill"])
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    ids = next(ln.split()[1:] for ln in res.stdout.splitlines() if ln.startswith("ids:"))
    return [int(t) for t in ids], np.fromfile(logits_path, dtype="<i4").reshape(-1, vocab)


def check_host(c, tmp_path: Path) -> None:
    exe = build_c(c, tmp_path / "build")
    vocab = c.dep.model.dims.vocab
    for n in lengths(c.prefill.chunk):
        pids = prompt_of(n)
        g_ids, g_logits = run_golden_compiled(c, pids, N_NEW, stop=False)
        p_ids, p_logits = run_golden_compiled(c, pids, N_NEW, stop=False, prefill=True)
        c_ids, c_logits = run_exe(exe, pids, N_NEW, tmp_path / "a.bin", vocab, prefill=True)
        t_ids, t_logits = run_exe(exe, pids, N_NEW, tmp_path / "b.bin", vocab, prefill=False)
        assert c_ids == t_ids == g_ids == p_ids, n
        assert c_logits.shape == (N_NEW, vocab) and t_logits.shape == (n + N_NEW - 1, vocab)
        np.testing.assert_array_equal(t_logits, g_logits, err_msg=f"{n} tokens")
        np.testing.assert_array_equal(c_logits, g_logits[n - 1:], err_msg=f"{n} tokens")
        np.testing.assert_array_equal(p_logits, g_logits[n - 1:], err_msg=f"{n} tokens")


def test_golden_prefill_fills_the_kv_cache_as_forward_does(compiled):
    chunk = compiled.prefill.chunk
    for n in lengths(chunk):
        a = Golden(compiled.plan, compiled.alloc, compiled.prefill)
        b = Golden(compiled.plan, compiled.alloc, compiled.prefill)
        toks = prompt_of(n)
        la = a.prefill(toks)
        for p, t in enumerate(toks):
            lb = b.forward(t, p)
        np.testing.assert_array_equal(la, lb)
        for buf in (x for x in compiled.alloc.buffers if x.persistent):
            sl = slice(buf.offset, buf.offset + buf.size)
            np.testing.assert_array_equal(a.arenas[buf.level][sl], b.arenas[buf.level][sl], err_msg=buf.name)
    # a prefill that continues a cache: positions pos0.. after earlier tokens
    a = Golden(compiled.plan, compiled.alloc, compiled.prefill)
    b = Golden(compiled.plan, compiled.alloc, compiled.prefill)
    toks = prompt_of(chunk + 5)
    a.prefill(toks[:3])
    la = a.prefill(toks[3:], 3)
    for p, t in enumerate(toks):
        lb = b.forward(t, p)
    np.testing.assert_array_equal(la, lb)


def test_prefill_plan_shape(compiled):
    pre = compiled.prefill
    assert pre.chunk == 16 and not pre.note
    modes = {s.op: mode(s, pre.plan) for s in pre.plan.steps}
    assert modes["layers.0.attn.q"] == modes["layers.0.mlp.down"] == "gemm"
    assert modes["layers.0.attn.residual"] == "flat"
    # a per-token scale spans the token's vector: one call per token, else all the chunk's elements at once
    assert modes["layers.0.mlp.swiglu"] == ("token" if {"swiglu", "swiglu_absmax"} & set(compiled.dep.quant.dynamic)
                                              else "flat")
    assert modes["layers.0.attn.attention"] == modes["embed"] == modes["layers.0.attn.rope_k"] == "token"
    assert modes["final_norm"] == modes["lm_head"] == "last"
    assert pre.plan.values["layers.0.attn.q"].shape == (16, 64)
    assert pre.plan.values["kv.k.0"] == compiled.plan.values["kv.k.0"]
    kv = {b.name: (b.level, b.offset) for b in compiled.alloc.buffers if b.persistent}
    assert kv == {b.name: (b.level, b.offset) for b in pre.alloc.buffers if b.persistent}


def test_c_prefill_matches_token_by_token_and_golden(compiled, tmp_path):
    check_host(compiled, tmp_path)


def test_c_prefill_with_a_small_chunk(tmp_path):
    c = compile_deployment(DPLY, ["generate.prefill=4"])
    assert c.prefill.chunk == 4
    assert "#define MODEL_PREFILL    4" in render(c)["model.h"]
    check_host(c, tmp_path)


def test_c_prefill_with_the_npu_mapping(tmp_path):
    from test_npu_mapping import HINTS, variant
    c = compile_deployment(variant(tmp_path, "hinted", *HINTS))
    assert any(s.engine == "npu" and mode(s, c.prefill.plan) == "gemm" for s in c.prefill.plan.steps)
    check_host(c, tmp_path)
    assert "job.n_tok = c->n;" in (tmp_path / "build" / "model.c").read_text()


def test_a_chunk_l1_cannot_hold_is_halved_and_said(tmp_path):
    c = compile_deployment(DPLY, ["memory.L1=10KiB"])
    assert c.prefill.chunk < 16 and "instead of 16" in c.prefill.note
    assert report_dict(c)["performance"]["prefill"]["note"] == c.prefill.note
    check_host(c, tmp_path)


def test_prefill_setting_is_validated():
    with pytest.raises(SpecError, match="'prefill' must be a whole number"):
        compile_deployment(DPLY, ["generate.prefill=0"])


def test_plan_and_report_show_the_prefill(compiled, rendered):
    plan = yaml.safe_load(rendered["plan.yaml"])
    assert plan["prefill"]["chunk"] == 16
    assert len(plan["prefill"]["steps"]) == len(compiled.prefill.plan.steps)
    assert plan["prefill"]["steps"][2]["mode"] == "gemm"
    perf = report_dict(compiled)["performance"]
    assert perf["prefill"]["chunk"] == 16 and perf["prefill"]["cycles"] > 0
    # the prefill plan loads each weight once per chunk: cheaper per token than decode
    assert perf["prefill"]["cycles_per_token"] < perf["decode"]["cycles_per_token"]


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("cores", [1, 8])
def test_qemu_prefill_is_bit_exact(compiled, tmp_path_factory, cores):
    elf = build_rv32(compiled, tmp_path_factory.mktemp("rv32pf") / "build")
    vocab = compiled.dep.model.dims.vocab
    chunk = compiled.prefill.chunk
    for n in ([len(PROMPT), chunk + 1] if cores == 8 else [len(PROMPT), 2 * chunk + 3]):
        pids = PROMPT if n == len(PROMPT) else prompt_of(n)
        ids, logits = run_golden_compiled(compiled, pids, 4, stop=False)
        a = run_elf(elf, pids, 4, vocab, stop=False, cores=cores, prefill=True)
        b = run_elf(elf, pids, 4, vocab, stop=False, cores=cores, prefill=False)
        assert a.ids == b.ids == ids
        np.testing.assert_array_equal(b.logits, logits)
        np.testing.assert_array_equal(a.logits, logits[n - 1:])
        assert len(a.prefill_instret) == cores and b.prefill_instret is None
        assert sorted(a.instret) == list(range(n, n + 3))  # decode lines only
        assert decode_instret(a, n) == decode_instret(b, n)  # decode figures unchanged
        forwards = sum(sum(b.instret[p]) for p in range(n))
        assert 0 < sum(a.prefill_instret) < forwards
