"""The generated program on bare-metal RV32 under QEMU: the same integers as golden, no soft float."""
from __future__ import annotations

import subprocess
from pathlib import Path

import numpy as np
import pytest

from deeploy_dsl.backend.cmodel import unit_name
from deeploy_dsl.engines.qemu import PACKAGES, build_rv32, decode_instret, missing_tools, run_elf
from deeploy_dsl.engines.runner import run_golden_compiled

pytestmark = pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()} (Debian: {PACKAGES})")

PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"


@pytest.fixture(scope="module")
def elf(compiled, tmp_path_factory):
    return build_rv32(compiled, tmp_path_factory.mktemp("rv32") / "build")


def test_qemu_is_bit_exact_with_golden(compiled, elf):
    run = run_elf(elf, PROMPT, 64, compiled.dep.model.dims.vocab, stop=False)
    ids, logits = run_golden_compiled(compiled, PROMPT, 64, stop=False)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)
    # one count per step, and decode steps cost more than nothing
    assert sorted(run.instret) == list(range(len(PROMPT) + 63))
    assert decode_instret(run, len(PROMPT))[0] > 0


def test_the_image_has_no_soft_float(elf):
    syms = subprocess.run(["riscv64-unknown-elf-nm", str(elf)], capture_output=True, text=True, check=True).stdout
    floaty = [ln for ln in syms.splitlines() if ln.split()[-1].startswith(("__addsf", "__adddf", "__mulsf", "__muldf",
                                                                           "__divsf", "__divdf", "__floatsi", "__fixsf",
                                                                           "__fixdf", "__extendsf", "__truncdf"))]
    assert not floaty


def test_a_float_in_the_integer_path_fails_the_build(compiled, tmp_path):
    """The Makefile's soft-float check is real: slip a float into the program and the RV32 link fails."""
    out = tmp_path / "build"
    build_rv32(compiled, out)
    model_c = out / "model.c"
    # reached from a constructor, so the linker's section garbage collection keeps it
    model_c.write_text(model_c.read_text() + "\nvolatile float dpl_leak = 1.5f;\nvolatile int dpl_sink = 3;\n"
                       "__attribute__((constructor)) static void dpl_use_leak(void) { dpl_sink = (int)(dpl_sink * dpl_leak); }\n")
    res = subprocess.run(["make", "-s", "-C", str(out), "rv32"], capture_output=True, text=True)
    assert res.returncode != 0 and "soft-float" in res.stderr
    assert not (out / f"{compiled.dep.name}.elf").exists()


def test_eight_harts_give_the_same_integers(compiled, elf):
    """The cluster shares out rows, kv heads and elements: every hart count computes the same logits."""
    run = run_elf(elf, PROMPT, 16, compiled.dep.model.dims.vocab, stop=False, cores=8)
    ids, logits = run_golden_compiled(compiled, PROMPT, 16, stop=False)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)
    per_core = decode_instret(run, len(PROMPT))
    assert len(per_core) == 8 and all(n > 0 for n in per_core)


def test_the_profile_accounts_for_every_instruction(compiled, tmp_path):
    """PROFILE=1: per-step counts of the other harts add up exactly to their per-token counts; core 0's steps
    are all of forward() but the profiling itself; a plain build refuses --profile."""
    prof_elf = build_rv32(compiled, tmp_path / "prof", profile=True)
    run = run_elf(prof_elf, PROMPT, 8, compiled.dep.model.dims.vocab, stop=False, cores=3, profile=True)
    forks = [s for s in compiled.plan.steps if not s.fork or s.fork[0] == s.index]  # a fork group is one row
    names = [unit_name([m.op for m in compiled.plan.steps[s.fork[0]:s.fork[1] + 1]]) if s.fork else s.op for s in forks]
    assert run.decoded == 8 - 1 and list(run.profile) == names
    decode = [c for pos, c in run.instret.items() if pos >= len(PROMPT)]
    per_token = [sum(c[k] for c in decode) for k in range(3)]
    per_step = [sum(row[k] for row in run.profile.values()) for k in range(3)]
    assert per_step[1:] == per_token[1:]
    # core 0's per-token count also holds the profile's own bookkeeping around each step
    assert 0 < per_token[0] - per_step[0] < 400 * len(run.profile) * run.decoded
    with pytest.raises(Exception, match="DPL_PROFILE"):
        run_elf(build_rv32(compiled, tmp_path / "plain"), PROMPT, 2, compiled.dep.model.dims.vocab, profile=True)


def test_npu_jobs_under_qemu_give_the_same_ids(compiled, tmp_path):
    """Layers hinted to the NPU (its functional model runs on hart 0) on 8 harts: the all-cluster golden ids."""
    from deeploy_dsl.compiler import compile_deployment
    root = Path(__file__).resolve().parents[1]
    text = (root / "deployments/stories260k.dply").read_text().replace('"../../shared', f'"{root.parent}/shared')
    default = next(ln for ln in text.splitlines() if ln.strip().startswith("default"))
    text = text.replace(default, default + "\n    layers[*].attn.qkv -> npu\n    layers[*].mlp.* -> npu", 1)
    (tmp_path / "hinted.dply").write_text(text)
    hinted = compile_deployment(tmp_path / "hinted.dply")
    assert sum(s.engine == "npu" for s in hinted.plan.steps) == 30
    elf = build_rv32(hinted, tmp_path / "build")
    run = run_elf(elf, PROMPT, 16, compiled.dep.model.dims.vocab, stop=False, cores=8)
    ids, logits = run_golden_compiled(compiled, PROMPT, 16, stop=False)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)
