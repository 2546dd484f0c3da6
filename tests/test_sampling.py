"""On-device sampling: sampler.c against its numpy twin on the host (RV32: test_kernels_rv32.py), the generate block's
sampler and seed, and the same ids from golden, the C and QEMU for a seed."""
from __future__ import annotations

import ctypes
import os
import shutil
import subprocess

import numpy as np
import pytest

from conftest import ROOT, invoke, needs_cc
from deeploy_dsl.kernels import sampling as S

TINY = ROOT / "deployments/tinystories.dply"
TOP_P = ["-D", "generate.sampler=top_p(0.9, temperature = 0.8)"]


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    needs_cc()
    out = tmp_path_factory.mktemp("sampler") / "libsampler.so"
    cc = os.environ.get("CC") or shutil.which("cc") or "gcc"
    cmd = [cc, "-std=c99", "-Wall", "-Wextra", "-Werror", "-O2", "-shared", "-fPIC", "-o", str(out),
           str(ROOT / "kernels_c/sampler.c"), str(ROOT / "kernels_c/argmax.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    so = ctypes.CDLL(str(out))
    p = lambda t: np.ctypeslib.ndpointer(dtype=t, flags="C_CONTIGUOUS")  # noqa: E731
    so.sample_top_p_i32.argtypes = [p(np.uint32), p(np.int32), ctypes.c_int32, ctypes.c_int32, ctypes.c_int32,
                                    p(np.uint16), p(np.uint32)]
    so.sample_top_p_i32.restype = ctypes.c_int32
    return so


def draws(lib, x, mult, p, seed, n=5):
    """n tokens from the C and from the twin on one state each, and the C's scratch after the last."""
    x = np.ascontiguousarray(x, np.int32)
    ei, table, state = np.zeros(x.size, np.uint32), S.exp2_q15(), np.array([S.rng_seed(seed)], np.uint32)
    st, c_ids, py_ids = S.rng_seed(seed), [], []
    for _ in range(n):
        c_ids.append(lib.sample_top_p_i32(ei, x, x.size, mult, p, table, state))
        tok, st = S.sample(x, mult, p, st)
        py_ids.append(tok)
    return c_ids, py_ids, int(state[0]), st, ei


@pytest.mark.parametrize("seed", range(60))
def test_sampler_matches_its_twin(lib, seed):
    rng = np.random.default_rng(seed)
    n = int(rng.choice([1, 2, 5, 512, 700, 4096]))
    x = (rng.standard_normal(n) * float(rng.choice([10, 1e4, 1e6, 5e7]))).astype(np.int32)
    if seed % 6 == 0:
        x[:] = x[0]  # all tied
    if seed % 9 == 0:
        x[rng.integers(n)] = 2**31 - 1
        x[rng.integers(n)] = -(2**31)
    mult = int(rng.choice([0, 1, 100, 17_726, 1_000_000, 2**31 - 1]))
    p = int(rng.choice([1, 6554, 58_982, 65_535, 65_536]))
    c_ids, py_ids, c_state, py_state, ei = draws(lib, x, mult, p, int(rng.integers(0, 2**32)))
    assert c_ids == py_ids and c_state == py_state
    if mult:
        pk = S.packed(x, mult)
        assert np.array_equal(ei[:len(pk)], pk)


def test_sampler_edges(lib):
    x = np.array([0, 1000, 1000, -5], np.int32)
    assert draws(lib, x, 0, 65536, 1)[0] == [1] * 5  # mult 0: argmax, lowest index on ties
    assert set(draws(lib, x, 10**6, 1, 3, n=40)[0]) == {1, 2}  # the tiniest p keeps the top (tied) tokens only
    assert set(draws(lib, x, 1, 65536, 3, n=200)[0]) == {0, 1, 2, 3}  # nearly uniform at a huge temperature
    assert S.rng_seed(S.SEED_MIX) == S.SEED_MIX and S.rng_seed(0) != 0  # never the stuck state 0


def test_temperature_sharpens_and_top_p_narrows():
    rng = np.random.default_rng(0)
    x = (rng.standard_normal(512) * 2e6).astype(np.int32)
    hot, cold = S.temperature_multiplier(1e-6, 1.5), S.temperature_multiplier(1e-6, 0.3)
    assert np.count_nonzero(S.exps(x, cold)) < np.count_nonzero(S.exps(x, hot))
    e = S.exps(x, hot)
    assert S.threshold(e, S.top_p_q16(0.5)) > S.threshold(e, S.top_p_q16(0.95)) >= 1
    t, need = S.threshold(e, S.top_p_q16(0.9)), -(-int(e.sum()) * S.top_p_q16(0.9) // 65536)
    assert e[e >= t].sum() >= need > e[e >= t + 1].sum()  # the largest threshold that keeps 90% of the mass


@pytest.mark.parametrize("setting, message", [
    ("top_p(0)", "'top_p' takes the mass to keep, in (0, 1]"),
    ("top_p(0.9, temp = 1)", "'top_p' takes the mass to keep"),
    ("temperature(-1)", "'temperature' takes one number from 0 to 100"),
    ("nucleus", "unsupported sampler 'nucleus'"),
    ("", "'sampler' expects 'greedy', 'temperature(T)' or 'top_p(P, temperature = T)'"),
    ("temperature", "'sampler' expects 'greedy', 'temperature(T)' or 'top_p(P, temperature = T)'"),
])
def test_sampler_setting_errors(setting, message):
    r = invoke("check", TINY, "-D", f"generate.sampler={setting}")
    assert r.returncode == 1 and message in r.stderr and "^" in r.stderr, r.stderr
    r = invoke("check", TINY, "-D", "generate.seed=4294967296")
    assert r.returncode == 1 and "'seed' must be a whole number from 0 to 4294967295" in r.stderr


def test_temperature_zero_is_greedy_and_greedy_builds_are_unchanged(tmp_path):
    for extra in ([], ["-D", "generate.sampler=temperature(0)"]):
        out = tmp_path / f"b{len(extra)}"
        assert invoke("build", TINY, *extra, "-o", out).returncode == 0
    main = [(tmp_path / b / "main.c").read_text() for b in ("b0", "b2")]
    assert main[0] == main[1] and "sample_greedy(logits)" in main[0] and "--seed" not in main[0]


def ids(engine: str, seed: int, *extra) -> list[int]:
    import json
    r = invoke("run", TINY, "--engine", engine, "--json", "--tokens", "24", "--seed", str(seed), *TOP_P, *extra)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)["ids"]


def test_golden_and_c_sample_the_same_ids_and_seeds_differ():
    needs_cc()
    runs = {s: ids("golden", s) for s in (1, 2)}
    assert runs[1] != runs[2]
    assert ids("c", 1) == runs[1]
    assert ids("c", 2, "--no-prefill") == runs[2]


@pytest.mark.skipif(not (shutil.which("riscv64-unknown-elf-gcc") and shutil.which("qemu-system-riscv32")),
                    reason="needs the RV32 toolchain and QEMU")
def test_qemu_samples_the_same_ids_on_8_harts():
    assert ids("qemu", 3, "--cores", "8") == ids("golden", 3)


def test_run_options_become_settings():
    from deeploy_dsl.cli import sampling_overrides
    assert sampling_overrides(0.8, 0.9, 1) == ["generate.sampler=top_p(0.9, temperature = 0.8)", "generate.seed=1"]
    assert sampling_overrides(0.7, None, None) == ["generate.sampler=temperature(0.7)"]
    assert sampling_overrides(None, 0.5, None) == ["generate.sampler=top_p(0.5, temperature = 1.0)"]
    assert sampling_overrides(None, None, 7) == ["generate.seed=7"]
