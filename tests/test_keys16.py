"""The `keys int16` knob (quantize block): the k projection, RoPE on k and the K cache in int16, V int8. The
generated C computes golden's integers (ids and every logit) on the host, with K streamed through a small L1,
with the NPU mapping, with prefill, and on RV32 under QEMU on 8 harts."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import INT8_EXAMPLE
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import SpecError
from deeploy_dsl.engines.qemu import build_rv32, missing_tools, run_elf
from deeploy_dsl.engines.runner import build_c, run_golden_compiled

ROOT = Path(__file__).resolve().parents[1]
DPLY = ROOT / "deployments/stories260k.dply"
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
KEYS16 = "quantize.keys=int16"


def run_exe(exe: Path, pids, n_new: int, logits_path: Path, vocab: int, prefill: bool):
    cmd = [str(exe), "--ids", " ".join(map(str, pids)), "--tokens", str(n_new), "--print-ids", "--logits",
           str(logits_path), "--no-stop"] + ([] if prefill else ["--no-prefill"])
    res = subprocess.run(cmd, capture_output=True, text=True, check=True)
    ids = next(ln.split()[1:] for ln in res.stdout.splitlines() if ln.startswith("ids:"))
    return [int(t) for t in ids], np.fromfile(logits_path, dtype="<i4").reshape(-1, vocab)


def check_host(c, tmp_path: Path, n_new: int = 40) -> None:
    """C token by token == C with prefill == golden (and golden's prefill): ids and every logit."""
    exe = build_c(c, tmp_path / "build")
    vocab = c.dep.model.dims.vocab
    for pids in (PROMPT, list(range(1, 2 + c.prefill.chunk + 3))):
        n = len(pids)
        g_ids, g_logits = run_golden_compiled(c, pids, n_new, stop=False)
        p_ids, p_logits = run_golden_compiled(c, pids, n_new, stop=False, prefill=True)
        t_ids, t_logits = run_exe(exe, pids, n_new, tmp_path / "t.bin", vocab, prefill=False)
        c_ids, c_logits = run_exe(exe, pids, n_new, tmp_path / "c.bin", vocab, prefill=True)
        assert t_ids == c_ids == g_ids == p_ids
        np.testing.assert_array_equal(t_logits, g_logits)
        np.testing.assert_array_equal(c_logits, g_logits[n - 1:])
        np.testing.assert_array_equal(p_logits, g_logits[n - 1:])


def check_qemu(c, tmp_path: Path, cores: int = 8, n_new: int = 6) -> None:
    """The RV32 image under QEMU on `cores` harts == golden: ids and every logit, token by token and with prefill."""
    elf = build_rv32(c, tmp_path / "build")
    ids, logits = run_golden_compiled(c, PROMPT, n_new, stop=False)
    for prefill in (False, True):
        r = run_elf(elf, PROMPT, n_new, c.dep.model.dims.vocab, stop=False, cores=cores, prefill=prefill)
        assert r.ids == ids
        np.testing.assert_array_equal(r.logits, logits[len(PROMPT) - 1 if prefill else 0:])


@pytest.fixture(scope="module")
def keys16(model_dir):
    return compile_deployment(DPLY, [*INT8_EXAMPLE, KEYS16])


def test_keys16_types_and_kernels(keys16, model_dir):
    c, compiled = keys16, compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.keys=int8"])
    assert c.dep.quant.keys == "int16" and compiled.dep.quant.keys == "int8"
    for i in range(c.dep.model.dims.layers):
        assert c.plan.values[f"kv.k.{i}"].dtype == "int16" and c.plan.values[f"kv.v.{i}"].dtype == "int8"
        assert c.plan.values[f"layers.{i}.attn.k"].dtype == "int16"
        assert compiled.plan.values[f"kv.k.{i}"].dtype == "int8"
    steps = {s.op: s for s in c.plan.steps}
    # packed or blocked (the cost model's choice): the same integers
    assert steps["layers.0.attn.k"].kernel.replace("_pk", "") == "gemv_i16"
    assert steps["layers.0.attn.q"].kernel.replace("_pk", "") == "gemv_i8"
    assert steps["layers.0.attn.rope_k"].kernel == "rope_i16" and steps["layers.0.attn.rope_k"].rule == "rope_i16_q14"
    assert steps["layers.0.attn.rope_q"].kernel == "rope_i8"
    assert steps["layers.0.attn.attention"].kernel == "attention_k16"
    # the k layer's output scale is calibrated for 16 bits: ~258 times finer than for 8
    ratio = compiled.quant.scales["layers.0.attn.k"] / c.quant.scales["layers.0.attn.k"]
    assert 250 < ratio < 260
    # the K cache doubles
    assert c.plan.values["kv.k.0"].nbytes == 2 * compiled.plan.values["kv.k.0"].nbytes


def test_keys_setting_is_validated():
    with pytest.raises(SpecError, match="unsupported keys 'int32'"):
        compile_deployment(DPLY, [*INT8_EXAMPLE, "quantize.keys=int32"])


def test_keys16_c_matches_golden(keys16, tmp_path):
    check_host(keys16, tmp_path)


def test_keys16_streams_int16_k_tiles_through_a_small_l1(tmp_path):
    c = compile_deployment(DPLY, [*INT8_EXAMPLE, KEYS16, "memory.L1=16KiB"])
    att = next(s for s in c.plan.steps if s.kernel == "attention_k16")
    assert att.staging.tiling.kind == "positions" and "k" in att.staging.tiling.buffers and att.staging.tiling.tile < c.dep.model.dims.context
    assert {c.plan.values[b].dtype for b in att.staging.tiling.buffers["k"]} == {"int16"}
    assert {c.plan.values[b].dtype for b in att.staging.tiling.buffers["v"]} == {"int8"}
    d, p = c.dep.model.dims, c.plan.report_pos
    assert att.staging.dma_bytes - sum(x.nbytes for x in att.staging.xfers) == 3 * (p + 1) * d.kv_dim  # K 2 B, V 1 B a position
    check_host(c, tmp_path)
    assert "attn_scores_k16" in (tmp_path / "build" / "model.c").read_text()


def test_keys16_with_the_npu_mapping(tmp_path):
    from test_npu_mapping import HINTS, variant
    c = compile_deployment(variant(tmp_path, "hinted", *HINTS), [*INT8_EXAMPLE, KEYS16])
    steps = {s.op: s for s in c.plan.steps}
    assert steps["layers.0.attn.k"].kernel == "npu_linear_i16" and steps["layers.0.attn.q"].kernel == "npu_linear_i8"
    check_host(c, tmp_path)


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
def test_keys16_qemu_8_harts_is_bit_exact(keys16, tmp_path):
    check_qemu(keys16, tmp_path)
