"""End to end on the real stories260K model: float == the HF reference, golden == C bit for bit on
every logit, the standalone project builds warning-free and tells a story, the CLI's JSON."""
from __future__ import annotations

import json
import os
import re
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import DPLY, deeploy_cmd, needs_cc
from deeploy_dsl.engines.program_io import parse_program_output

N_CHECK = 64  # ids compared against the float reference
N_NEW = 128  # ids generated for golden vs C
CASE_IDS = ["empty", "once", "lily_tom", "big_dog"]
ONCE = 1  # index of the "Once upon a time" case


# ------------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def float_model(compiled):
    return compiled.fm


@pytest.fixture(scope="session")
def float_ids(float_model, compiled):
    """Case index -> the first N_CHECK greedy ids of the float engine (no stop at BOS/EOS)."""
    from deeploy_dsl.engines.runner import decode
    memo: dict[int, list[int]] = {}

    def get(i: int, pids: list[int]) -> list[int]:
        if i not in memo:
            cache = float_model.new_cache(1)
            step = lambda t, p: float_model.forward(np.array([[t]]), p, cache)[0, -1]  # noqa: E731
            memo[i], _ = decode(step, pids, N_CHECK, compiled.dep.model.dims.context, stop=False)
        return memo[i]
    return get


@pytest.fixture(scope="session")
def golden_runs(compiled):
    """Case index -> (ids, int32 logits) of the golden engine, N_NEW tokens, no stop; computed once."""
    from deeploy_dsl.engines.runner import run_golden_compiled
    memo: dict[int, tuple[list[int], np.ndarray]] = {}

    def get(i: int, pids: list[int]):
        if i not in memo:
            memo[i] = run_golden_compiled(compiled, pids, N_NEW, stop=False)
        return memo[i]
    return get


@pytest.fixture(scope="session")
def c_exe(compiled, tmp_path_factory) -> Path:
    """The generated C, built once for every prompt."""
    needs_cc()
    from deeploy_dsl.engines.runner import build_c
    return build_c(compiled, tmp_path_factory.mktemp("c_engine") / "build")


def run_exe(exe: Path, pids: list[int], n_new: int, logits_path: Path, vocab: int):
    """As run_c_compiled does, but with an already built program."""
    cmd = [str(exe), "--ids", " ".join(map(str, pids)), "--tokens", str(n_new), "--print-ids",
           "--logits", str(logits_path), "--no-stop", "--no-prefill"]
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    ids = parse_program_output(res.stdout)[0]
    return ids, np.fromfile(logits_path, dtype="<i4").reshape(-1, vocab)


# ------------------------------------------------------------------------------------------- float


@pytest.mark.parametrize("i", range(4), ids=CASE_IDS)
def test_float_greedy_matches_reference(i, reference, float_ids):
    case = reference[i]
    pids = case["prompt_ids"]
    ids = float_ids(i, pids)
    want = case["greedy_ids"][len(pids):len(pids) + N_CHECK]
    assert len(ids) == N_CHECK
    first_diff = next((k for k, (a, b) in enumerate(zip(ids, want)) if a != b), None)
    assert ids == want, f"{case['prompt']!r}: first difference at new id {first_diff}"


def test_float_logits_match_reference(reference, float_model, model_dir):
    case = reference[ONCE]
    assert case["prompt"] == "Once upon a time"
    want = np.load(model_dir / "reference_logits.npy")
    toks = np.array([case["greedy_ids"][:want.shape[0]]])
    got = float_model.forward(toks, 0, float_model.new_cache(1))[0]
    assert got.shape == want.shape
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-4)


def test_run_float_engine_matches_reference(reference):
    """The float engine behind `deeploy run` (its own weight loading and decoding loop)."""
    from deeploy_dsl.engines.runner import run_float
    case = reference[ONCE]
    g = run_float(DPLY, case["prompt"], 16, stop=False)
    assert g.prompt_ids == case["prompt_ids"]
    assert g.ids == case["greedy_ids"][len(case["prompt_ids"]):][:16]
    assert g.logits.dtype == np.float32 and g.logits.shape == (len(case["prompt_ids"]) + 15, 512)


# ------------------------------------------------------------------------------------------- golden vs C


@pytest.mark.parametrize("i", range(4), ids=CASE_IDS)
def test_golden_and_c_bit_exact(i, reference, compiled, golden_runs, c_exe, tmp_path):
    pids = reference[i]["prompt_ids"]
    vocab = compiled.dep.model.dims.vocab
    g_ids, g_logits = golden_runs(i, pids)
    c_ids, c_logits = run_exe(c_exe, pids, N_NEW, tmp_path / "logits.bin", vocab)
    assert len(g_ids) == N_NEW
    assert g_logits.dtype == np.int32 and g_logits.shape == (len(pids) + N_NEW - 1, vocab)
    assert c_ids == g_ids
    assert c_logits.shape == g_logits.shape
    np.testing.assert_array_equal(c_logits, g_logits)


def test_golden_vs_float_agreement(reference, golden_runs, float_ids):
    """Informative: how many of the first 64 greedy ids the int8 deployment shares with float."""
    rows = []
    for i, case in enumerate(reference):
        pids = case["prompt_ids"]
        g = golden_runs(i, pids)[0][:N_CHECK]
        f = float_ids(i, pids)
        same = sum(a == b for a, b in zip(g, f))
        prefix = next((k for k, (a, b) in enumerate(zip(g, f)) if a != b), N_CHECK)
        rows.append((case["prompt"], same, prefix))
        print(f"golden vs float {case['prompt']!r:45}: {same}/{N_CHECK} ids equal, first {prefix} in a row")
    once = rows[ONCE]
    assert once[2] >= 10, f"'Once upon a time': golden leaves float after {once[2]} ids"


# ------------------------------------------------------------------------------------------- the project


C_FORBIDDEN = re.compile(r"\b(malloc|calloc|realloc|free|float|double)\b")


def _code_only(src: str) -> str:
    """C source without comments and string/char literals."""
    pattern = r'/\*.*?\*/|//[^\n]*|"(?:\\.|[^"\\\n])*"|\'(?:\\.|[^\'\\\n])*\''
    return re.sub(pattern, lambda m: " " if m.group(0).startswith("/") else '""', src, flags=re.S)


def test_generated_c_has_no_heap_no_float_no_exit(rendered):
    sources = sorted(k for k in rendered if k.endswith((".c", ".h")))
    assert {"model.c", "main.c", "weights.c", "gemv.c", "attention.c"} <= set(sources)
    bad = {}
    for name in sources:
        code = _code_only(rendered[name])
        hits = sorted(set(C_FORBIDDEN.findall(code)))
        if hits:
            bad[name] = hits
    assert not bad, f"heap or floating point in the generated C: {bad}"
    for name in sources:  # model.c, main.c, the kernels, the tokenizer: nothing ends the process
        code = _code_only(rendered[name])
        assert not re.search(r"\b(exit|abort|_Exit)\s*\(", code), f"{name} calls exit/abort"


def _make(out: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["make", "-C", str(out), *args], capture_output=True, text=True,
                          env={"PATH": "/usr/bin:/bin"}, timeout=120)


def test_standalone_project_builds_and_tells_a_story(tmp_path):
    needs_cc()
    work, elsewhere = tmp_path / "work", tmp_path / "elsewhere"
    work.mkdir(), elsewhere.mkdir()
    res = subprocess.run(deeploy_cmd() + ["build", str(DPLY), "-o", "out"], cwd=work, capture_output=True,
                         text=True, timeout=120)
    assert res.returncode == 0, res.stderr
    out = work / "out"
    assert (out / "Makefile").is_file() and (out / "plan.yaml").is_file()

    # with only make and the C compiler on PATH, the Makefile's own flags: no warning at all
    res = _make(out)
    assert res.returncode == 0, res.stderr
    assert "warning" not in res.stderr.lower(), res.stderr
    exe = out / "stories260k"
    res = subprocess.run([str(exe), "--prompt", "Once upon a time", "--tokens", "40"], cwd=elsewhere,
                         env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stderr
    text = res.stdout
    assert text.startswith("Once upon a time"), text
    rest = text[len("Once upon a time"):]
    words = re.findall(r"[A-Za-z]+", rest)
    assert "Lily" in rest or len(words) >= 5, text
    assert "\ufffd" not in text and not re.search(r"[\x00-\x08\x0e-\x1f]", text), repr(text)

    # strict flags, pedantic included
    res = _make(out, "-B", "CFLAGS=-std=c99 -O2 -Wall -Wextra -Werror -pedantic")
    assert res.returncode == 0, res.stderr


def test_cli_run_json_c_equals_golden(tmp_path, reference, golden_runs):
    needs_cc()
    case = reference[ONCE]
    procs = {engine: subprocess.Popen(
        deeploy_cmd() + ["run", str(DPLY), "--engine", engine, "--json", "--prompt", case["prompt"],
                         "--tokens", "32"], cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for engine in ("c", "golden")}
    results = {}
    for engine, p in procs.items():
        stdout, stderr = p.communicate(timeout=120)
        assert p.returncode == 0, f"--engine {engine}: {stderr}"
        lines = stdout.splitlines()
        assert len(lines) == 1, f"--engine {engine} printed {len(lines)} lines: {stdout!r}"
        results[engine] = json.loads(lines[0])
    c, golden = results["c"], results["golden"]
    assert set(c) == {"prompt_ids", "ids", "text"}
    assert c == golden
    assert c["prompt_ids"] == case["prompt_ids"]
    # the continuation only: the golden ids of the full run, up to 32 and up to a BOS/EOS
    full = golden_runs(ONCE, case["prompt_ids"])[0]
    want = []
    for t in full[:32]:
        if t in (1, 2):
            break
        want.append(t)
    assert c["ids"] == want
    assert c["text"] and not c["text"].startswith("Once upon a time"), c["text"]
    assert not os.listdir(tmp_path), "deeploy run left files in its working directory"
