"""RMSNorm, the residual add (kernels_c/norm_rvv.c) and RoPE (kernels_c/rope_rvv.c) on the vector unit against their
numpy twins: host (the scalar fallback) and Spike (Zve32x), odd sizes and shares, saturation, more pairs than a vector,
and RMSNorm's 64-bit path when no one-multiply form exists."""
from __future__ import annotations

import shutil
import subprocess

import numpy as np
import pytest

from test_rvv import HOST_FLAGS, ISA, KDIR, S, _carr, build_spike, harness

from deeploy_dsl.kernels import twins as K
from deeploy_dsl.kernels.registry import KERNELS

# (dim, gain_shift, lo, hi, kind): kind 0 random, 1 all zero (the rms clamp), 2 extremes
NORM_CASES = [(1, 8, 0, 1, 0), (7, 4, 2, 5, 0), (33, 10, 0, 33, 2), (64, 12, 8, 16, 0), (64, 12, 0, 64, 1),
              (100, 6, 31, 77, 0), (172, 14, 0, 172, 2), (48, 0, 0, 48, 0), (64, 1, 5, 40, 2)]
ADD_N = [1, 7, 64, 129, 300]
# (n, head_size, kernel): one head, several, odd pair counts, more pairs than a vector (16 at e32 m4); heads across the
# lanes when there are at least as many as pairs (8 x 4, 16 x 3), more heads than a vector (34, 18)
ROPE_CASES = [(8, 8, "rope_i8"), (64, 8, "rope_i8"), (6, 6, "rope_i16"), (96, 48, "rope_i16"), (34, 34, "rope_q12"),
              (70, 14, "rope_i8"), (40, 40, "rope_i8"), (96, 6, "rope_i16"), (136, 4, "rope_q12"), (72, 4, "rope_i8")]
ROPE_CTYPE = {"rope_i8": "int8_t", "rope_i16": "int16_t", "rope_q12": "int16_t"}
SENTINEL = 77


def _norm_case(i: int, dim: int, shift: int, kind: int):
    rng = np.random.default_rng(300 + i)
    x = rng.integers(-2**15, 2**15, dim).astype(np.int16) if kind != 1 else np.zeros(dim, np.int16)
    gain = rng.integers(-2**15, 2**15, dim).astype(np.int32)
    if kind == 2:  # |x * gain| at its bound 2^30, and a tiny element
        x[0], gain[0] = -2**15, 2**15
        x[-1] = 1
    eps = int(rng.integers(0, 2**20))
    return x, gain, eps


def program(spike: bool) -> tuple[str, list, list]:
    """A program that runs rmsnorm_i8_part_rvv on each NORM_CASES share and residual_add_i16_rvv on each ADD_N size."""
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "norm_rvv.h"\n'
    norms, adds, body = [], [], []
    for i, (dim, shift, lo, hi, kind) in enumerate(NORM_CASES):
        x, gain, eps = _norm_case(i, dim, shift, kind)
        norms.append((x, gain, eps))
        src += _carr("int16_t", f"x{i}", x) + _carr("int32_t", f"g{i}", gain) + f"static int8_t y{i}[{dim}];\n"
        body.append(f"    for (int k = 0; k < {dim}; k++) y{i}[k] = {SENTINEL};\n"
                    f"    rmsnorm_i8_part_rvv(y{i}, x{i}, g{i}, {shift}, {eps}, {dim}, {lo}, {hi});\n"
                    f'    for (int k = 0; k < {dim}; k++) put_int(y{i}[k]);\n    EMIT("\\n", 1);\n')
    for i, n in enumerate(ADD_N):
        rng = np.random.default_rng(400 + i)
        a, b = (rng.integers(-2**15, 2**15, n).astype(np.int16) for _ in range(2))
        a[0], b[0] = 2**15 - 1, 2**15 - 1  # both saturations
        if n > 1:
            a[-1], b[-1] = -2**15, -5
        adds.append((a, b))
        src += _carr("int16_t", f"a{i}", a) + _carr("int16_t", f"b{i}", b)
        body.append(f"    residual_add_i16_rvv(a{i}, a{i}, b{i}, {n});\n"  # in place, as the model calls it
                    f'    for (int k = 0; k < {n}; k++) put_int(a{i}[k]);\n    EMIT("\\n", 1);\n')
    src += '#include "rope_rvv.h"\n'
    for i, (n, hs, kern) in enumerate(ROPE_CASES):
        rng = np.random.default_rng(500 + i)
        big = 128 if kern == "rope_i8" else 2**15
        x = rng.integers(-big, big, n)
        x[:2] = -big  # a saturating pair
        cs = rng.integers(-2**14, 2**14 + 1, (2, hs // 2))
        cs[:, 0] = (2**14, -2**14) if i % 2 else (11585, 11585)  # the table's extremes and 45 degrees
        adds.append((x, cs))
        ct = ROPE_CTYPE[kern]
        src += _carr(ct, f"r{i}", x) + _carr("int16_t", f"c{i}", cs[0]) + _carr("int16_t", f"s{i}", cs[1])
        body.append(f"    {kern}_rvv(r{i}, r{i}, c{i}, s{i}, {n}, {hs});\n"  # in place, as the model calls it
                    f'    for (int k = 0; k < {n}; k++) put_int(r{i}[k]);\n    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", norms, adds


def _check(text: str, norms: list, adds: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(norms) + len(adds)
    for (x, cs), (n, hs, kern), ln in zip(adds[len(ADD_N):], ROPE_CASES, lines[len(norms) + len(ADD_N):]):
        y = np.zeros(n, np.int64)
        KERNELS[kern + "_rvv"].twin(y, x, cs[0], cs[1], n, hs)
        assert [int(v) for v in ln.split()] == y.tolist(), f"rope case {n, hs, kern}"
    adds = adds[:len(ADD_N)]
    for (x, gain, eps), (dim, shift, lo, hi, _), ln in zip(norms, NORM_CASES, lines):
        want = np.full(dim, SENTINEL, np.int64)
        want[lo:hi] = K.rmsnorm(x, gain, shift, eps)[lo:hi]
        assert [int(v) for v in ln.split()] == want.tolist(), f"rmsnorm case {dim, shift, lo, hi}"
    for (a, b), ln in zip(adds, lines[len(norms):]):
        assert [int(v) for v in ln.split()] == K.residual_add(a, b).tolist(), f"residual add n {len(a)}"


def test_norm_host_matches_twin(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src, norms, adds = program(spike=False)
    (tmp_path / "n.c").write_text(src)
    exe = tmp_path / "n"
    r = subprocess.run([cc, *HOST_FLAGS, "-I", str(KDIR), "-o", str(exe), str(tmp_path / "n.c"),
                        *(str(KDIR / f) for f in ("norm_rvv.c", "rmsnorm.c", "residual_add.c", "rope_rvv.c", "rope.c"))],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _check(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, norms, adds)


@pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
def test_norm_spike_matches_twin(tmp_path):
    """vwmul + two reductions (the rms), vmulh (the outputs), vsadd, and RoPE's vlseg2 / vsseg2 with the widening
    products on Spike give the scalar kernels' integers."""
    src, norms, adds = program(spike=True)
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", "norm_rvv.c", "rmsnorm.c", "rope_rvv.c"],
                      "n")
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    _check(r.stdout.decode(), norms, adds)
