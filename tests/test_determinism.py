"""Builds are a pure function of their inputs: byte-identical across output directories, working
directories and hash seeds, free of machine paths; small input changes give small output diffs; a
failed build leaves nothing behind."""
from __future__ import annotations

import difflib
import getpass
import os
import re
import subprocess
from pathlib import Path

import pytest

from conftest import DPLY, deeploy_cmd


def _files(d: Path) -> dict[str, bytes]:
    return {p.relative_to(d).as_posix(): p.read_bytes() for p in sorted(d.rglob("*")) if p.is_file()}


def _changed_lines(a: str, b: str) -> list[str]:
    return [ln for ln in difflib.unified_diff(a.splitlines(), b.splitlines(), lineterm="", n=0)
            if ln[:1] in "+-" and not ln.startswith(("+++", "---"))]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(extra)
    return env


def test_two_builds_are_byte_identical_and_machine_free(tmp_path, model_dir):
    cwd_a, cwd_b = tmp_path / "cwd_a", tmp_path / "elsewhere" / "cwd_b"
    cwd_a.mkdir(), cwd_b.mkdir(parents=True)
    out_a, out_b = cwd_a / "out_alpha_q7", tmp_path / "out_bravo_z3"
    # one relative and one absolute path to the same .dply, different hash seeds, run side by side
    jobs = [
        (cwd_a, os.path.relpath(DPLY, cwd_a), "out_alpha_q7", "0"),
        (cwd_b, str(DPLY), str(out_b), "12345"),
    ]
    procs = [subprocess.Popen(deeploy_cmd() + ["build", dply, "-o", out], cwd=cwd, env=_env(PYTHONHASHSEED=seed),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for cwd, dply, out, seed in jobs]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err

    a, b = _files(out_a), _files(out_b)
    assert sorted(a) == sorted(b), f"different file sets: {sorted(set(a) ^ set(b))}"
    differing = [k for k in sorted(a) if a[k] != b[k]]
    assert not differing, f"files differ between the two builds: {differing}"
    assert {"Makefile", "plan.yaml", "model.c", "main.c", "weights.c"} <= set(a)
    assert not [p.name for p in tmp_path.rglob(".*")], "temporary directories left behind"

    home = str(Path.home())
    needles = ["/work", "/tmp", "/home/", "pytest-of", tmp_path.name, "out_alpha_q7", "out_bravo_z3",
               "cwd_a", "cwd_b", str(model_dir), str(DPLY.parent)]
    if home not in ("/", ""):
        needles.append(home + "/")
    user = getpass.getuser()
    user_word = re.compile(rf"\b{re.escape(user)}\b") if user and user != "root" else None  # "square root"
    leaks = {}
    for name, data in a.items():
        text = data.decode("utf-8")
        found = [n for n in needles if n in text]
        if user_word is not None and user_word.search(text):
            found.append(user)
        if found:
            leaks[name] = found
    assert not leaks, f"machine-specific strings in generated files: {leaks}"


def test_small_overrides_give_small_diffs(rendered):
    from deeploy_dsl.backend.codegen import render
    from deeploy_dsl.compiler import compile_deployment

    tokens = render(compile_deployment(DPLY, ["generate.tokens=5"]))
    changed = {k: _changed_lines(rendered[k], tokens[k]) for k in rendered if rendered[k] != tokens[k]}
    assert set(tokens) == set(rendered)
    assert changed, "-D generate.tokens=5 changed nothing"
    assert set(changed) <= {"main.c", "plan.yaml"}, f"-D generate.tokens=5 changed {sorted(changed)}"
    assert sum(map(len, changed.values())) <= 6, changed

    cm = compile_deployment(DPLY, ["map.lm_head=cluster(cores = 1)"])
    mapped = render(cm)
    assert set(mapped) == set(rendered)
    plan_diff = _changed_lines(rendered["plan.yaml"], mapped["plan.yaml"])
    # lm_head's step and the buffers live at it, nothing else (on 1 core it streams in more, smaller tiles, which the
    # cost model prices lower, so its tile buffers and their neighbours at that step move)
    last = len(cm.plan.steps) - 1
    assert plan_diff and all("lm_head" in ln or f"last_step: {last}," in ln for ln in plan_diff), "\n".join(plan_diff)
    assert any("cores: 1" in ln for ln in plan_diff if ln.startswith("+")), "\n".join(plan_diff)
    others = {k: len(_changed_lines(rendered[k], mapped[k])) for k in rendered
              if k != "plan.yaml" and rendered[k] != mapped[k]}
    # report.json restates the step's estimates and the per-token totals (cycles, tokens/s, uJ, prefill); model.c the
    # step's tile loop and buffers; the L1 picture its buffers
    assert set(others) <= {"model.c", "model.h", "report.json", "memory_L1.svg"}, others
    assert all(n < 60 for k, n in others.items() if k != "memory_L1.svg"), others


BAD = {"arena_too_big": "memory.L1=1KiB", "unknown_target": "target=nope"}


@pytest.mark.parametrize("override", list(BAD.values()), ids=list(BAD))
def test_failed_build_leaves_nothing_behind(override, tmp_path, rendered, model_dir):
    from deeploy_dsl.backend.builddir import write_build

    fresh = tmp_path / "fresh" / "out"
    kept = tmp_path / "kept"
    write_build(rendered, kept)  # a previous good build
    before = _files(kept)
    procs = [subprocess.Popen(deeploy_cmd() + ["build", str(DPLY), "-o", str(out), "-D", override], cwd=tmp_path,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out in (fresh, kept)]
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 1, err
        assert "Traceback" not in err, err
        assert re.search(r"^[^\n:]+:\d+:\d+: error: ", err, re.M), err
    assert not fresh.exists() and not fresh.parent.exists(), "a failed build created its output directory"
    assert _files(kept) == before, "a failed build touched the previous good build"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["kept"], "leftovers beside the output directory"


@pytest.mark.slow  # two full GPTQ builds; test_gptq checks GPTQ's determinism in-process
def test_int4_gptq_builds_are_byte_identical(tmp_path, model_dir):
    """GPTQ's float64 linear algebra and the int4 packing give the same bytes whatever the hash seed."""
    knob = "quantize.weights=int4 per_group(32) gptq"
    outs = [tmp_path / "a", tmp_path / "b"]
    procs = [subprocess.Popen(deeploy_cmd() + ["build", str(DPLY), "-o", str(out), "-D", knob], cwd=tmp_path,
                              env=_env(PYTHONHASHSEED=seed), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for out, seed in zip(outs, ("1", "999"))]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err
    a, b = _files(outs[0]), _files(outs[1])
    assert a == b and "gemv_q4_i8(" in a["model.c"].decode()
