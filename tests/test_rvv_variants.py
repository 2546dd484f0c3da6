"""The vector kernel variants for the settings beyond stories260k-rvv.dply's own: the vector GEMV on an input with a
per-token factor (kernels_c/gemv_tok_rvv.c: `dynamic norm`, `final_norm`, `swiglu_absmax`) and the vector attention's
scores for int8 keys and int12 queries (kernels_c/attention_qk_rvv.c) compute their numpy twins' integers on the host
(the plain C a host build compiles) and on Spike, including sizes that are not multiples of 4, 16 or the 32 lanes,
unaligned K rows and tiles after the first; the accurate setting of the example runs with no scalar fallback for them
and Spike gives golden's logits on 1 and 8 harts."""
from __future__ import annotations

import math
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from deeploy_dsl.engines import spike as S  # noqa: E402
from deeploy_dsl.kernels import rvv  # noqa: E402
from deeploy_dsl.kernels import twins as K  # noqa: E402
from conftest import INT8_EXAMPLE  # noqa: E402
from test_rvv import HOST_FLAGS, ISA, KDIR, _carr, build_spike, harness  # noqa: E402

needs_spike = pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")
CTYPE = {8: "int8_t", 16: "int16_t", 32: "int32_t"}
SENTINEL = 77
# (n_in, n_out, out bits, tok m, tok s[, lo, hi]): odd sizes, several chunks of 128 rows, a share that starts and ends
# inside blocks, a token shift beyond 62 (the multipliers' low bits dropped), one below 33 (the 64-bit requantization)
TOK_CASES = [(1, 1, 8, 2**31, 40), (7, 33, 16, 3 << 29, 45), (64, 300, 32, 2**32 - 1, 50, 13, 290),
             (66, 40, 8, 12345678, 70), (172, 64, 16, 2**30, 20), (9, 129, 8, 2**31 + 7, 38, 100, 129)]


def tok_harness(spike: bool) -> tuple[str, list]:
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "gemv_tok_rvv.h"\n'
    cases, body = [], []
    for i, (n_in, n_out, bits, m, s, *bounds) in enumerate(TOK_CASES):
        lo, hi = bounds or (0, n_out)
        rng = np.random.default_rng(300 + i)
        w = rng.integers(-128, 128, (n_out, n_in)).astype(np.int8)
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        mult = rng.integers(1, 2**31 - 1, n_out).astype(np.int32)
        tok = np.array([m - 2**32 if m >= 2**31 else m, s], np.int32)
        cases.append((w, x, mult, tok, bits, lo, hi))
        src += (_carr("int8_t", f"w{i}", rvv.rvv_pack(w)) + _carr("int8_t", f"x{i}", x) + _carr("int32_t", f"m{i}", mult)
                + _carr("int32_t", f"t{i}", tok) + f"static {CTYPE[bits]} y{i}[{n_out}];\n")
        body.append(f"    for (int k = 0; k < {n_out}; k++) y{i}[k] = {SENTINEL};\n"
                    f"    gemv_tok_rvv_i{bits}(y{i}, x{i}, w{i}, m{i}, t{i}, {n_in}, {n_out}, {lo}, {hi});\n"
                    f"    for (int k = 0; k < {n_out}; k++) put_int(y{i}[k]);\n" '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_tok(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (w, x, mult, tok, bits, lo, hi), ln, spec in zip(cases, lines, TOK_CASES):
        y = np.full(len(mult), SENTINEL, np.int64)
        rvv.KERNELS[f"gemv_tok_rvv_i{bits}"].twin(y, x, rvv.rvv_pack(w), mult, tok, len(x), len(mult), lo, hi)
        assert [int(v) for v in ln.split()] == y.tolist(), f"case {spec}"


# (form, g heads, hs, n_t positions, k_stride, k offset, t0): odd heads and head sizes, more positions than a vector,
# K rows that are not word (or not even 2-byte) aligned, a tile after the first
FORMS = {"i8": ("int8_t", "int8_t", 0, "attn_scores_i8_rvv"), "q12": ("int16_t", "int8_t", 4, "attn_scores_q12_rvv"),
         "q16": ("int16_t", "int8_t", 8, "attn_scores_q16_rvv"),
         "q12k16": ("int16_t", "int16_t", 12, "attn_scores_q12k16_rvv")}
QK_CASES = [("i8", 2, 8, 37, 32, 0, 0), ("i8", 3, 7, 70, 13, 0, 0), ("i8", 2, 8, 33, 34, 2, 0), ("i8", 1, 5, 65, 8, 1, 40),
            ("q12", 2, 8, 37, 32, 0, 0), ("q12", 3, 5, 70, 13, 1, 0), ("q12", 2, 8, 65, 32, 0, 40),
            ("q16", 1, 9, 33, 9, 0, 0), ("q12k16", 2, 8, 37, 32, 0, 0), ("q12k16", 3, 5, 70, 13, 0, 40)]
Q_RANGE = {"i8": 128, "q12": 2048, "q16": 32768, "q12k16": 2048}


def qk_harness(spike: bool) -> tuple[str, list]:
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "attention_qk_rvv.h"\n'
    cases, body = [], []
    for i, (form, g, hs, n_t, ks, off, t0) in enumerate(QK_CASES):
        qt, kt, _, fn = FORMS[form]
        rng = np.random.default_rng(400 + i)
        q = rng.integers(-Q_RANGE[form], Q_RANGE[form], (g, hs))
        kr = 32768 if kt == "int16_t" else 128
        k = rng.integers(-kr, kr, (n_t, ks))
        k[0, :hs] = -kr
        prev = rng.integers(-2**20, 2**20, g)
        stride = t0 + n_t + 3
        cases.append((form, q, k, prev, t0, n_t, stride))
        src += (_carr(qt, f"q{i}", q) + _carr(kt, f"k{i}", np.concatenate([np.zeros(off, np.int64), k.ravel()]))
                + _carr("int32_t", f"m{i}", prev) + f"static int32_t s{i}[{g * stride}];\n")
        body.append(f"    {fn}(s{i}, {stride}, m{i}, q{i}, k{i} + {off}, {ks}, {t0}, {n_t}, {g}, {hs});\n"
                    f"    for (int k = 0; k < {g * stride}; k++) put_int(s{i}[k]);\n"
                    f"    for (int k = 0; k < {g}; k++) put_int(m{i}[k]);\n" '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_qk(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (form, q, k, prev, t0, n_t, stride), ln, spec in zip(cases, lines, QK_CASES):
        g, hs = q.shape
        r = FORMS[form][2]
        want = np.zeros((g, stride), np.int64)
        y = q @ k[:, :hs].T
        y = (y + (1 << (r - 1))) >> r if r else y  # the scores' round half up (attention.c's SHIFT4/8/12)
        want[:, t0:t0 + n_t] = y
        mx = y.max(axis=1) if t0 == 0 else np.maximum(prev, y.max(axis=1))
        assert [int(v) for v in ln.split()] == want.ravel().tolist() + mx.tolist(), f"case {spec}"


def _host(tmp_path: Path, src: str, sources: list[str]) -> str:
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("needs a C compiler")
    (tmp_path / "h.c").write_text(src)
    exe = tmp_path / "h"
    r = subprocess.run([cc, *HOST_FLAGS, "-I", str(KDIR), "-o", str(exe), str(tmp_path / "h.c"),
                        *(str(KDIR / f) for f in sources)], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    return subprocess.run([str(exe)], capture_output=True, text=True, check=True).stdout


def _spike(tmp_path: Path, src: str, sources: list[str]) -> str:
    elf = build_spike(tmp_path, src, ["spike_start.S", "spike_htif.c", *sources])
    r = S.run_spike(elf, ISA, timeout=60)
    assert r.returncode == 0, r.stderr.decode()
    return r.stdout.decode()


# (n_in, n_out, group, out bits, shift, x offset[, lo, hi]): groups of 32, and of sizes that are not whole octets or
# quads, a last group shorter than the others, unaligned x, a share inside blocks, both requantization forms
Q4_CASES = [(64, 40, 32, 8, 40, 0), (70, 33, 32, 16, 36, 0), (10, 5, 6, 32, 45, 1), (172, 64, 32, 8, 20, 0, 13, 50),
            (64, 300, 16, 32, 44, 2, 100, 290), (2, 1, 2, 8, 38, 0), (64, 40, 32, 32, 0, 0), (40, 33, 8, 16, 32, 0)]


def q4_harness(spike: bool) -> tuple[str, list]:
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "gemv_q4_rvv.h"\n'
    cases, body = [], []
    for i, (n_in, n_out, group, bits, shift, off, *bounds) in enumerate(Q4_CASES):
        lo, hi = bounds or (0, n_out)
        rng = np.random.default_rng(500 + i)
        q = rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
        q[0] = -8
        e = rng.integers(0, 256, (n_out, -(-n_in // group))).astype(np.uint8)
        e[0] = 255
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        mult = rng.integers(1, 2**31 - 1, n_out).astype(np.int32)
        cases.append((q, e, group, x, mult, bits, shift, lo, hi))
        src += (_carr("int8_t", f"w{i}", rvv.rvv_q4_pack(q, e, group))
                + _carr("int8_t", f"x{i}", np.concatenate([np.zeros(off, np.int8), x])) + _carr("int32_t", f"m{i}", mult)
                + _carr("uint8_t", f"s{i}", np.full(n_out, shift)) + f"static {CTYPE[bits]} y{i}[{n_out}];\n")
        body.append(f"    for (int k = 0; k < {n_out}; k++) y{i}[k] = {SENTINEL};\n"
                    f"    gemv_q4_rvv_i{bits}(y{i}, x{i} + {off}, w{i}, m{i}, s{i}, {n_in}, {n_out}, {group}, {lo}, {hi});\n"
                    f"    for (int k = 0; k < {n_out}; k++) put_int(y{i}[k]);\n" '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_q4(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (q, e, group, x, mult, bits, shift, lo, hi), ln, spec in zip(cases, lines, Q4_CASES):
        y = np.full(len(mult), SENTINEL, np.int64)
        rvv.Q4_KERNELS[f"gemv_q4_rvv_i{bits}"].twin(y, x, rvv.rvv_q4_pack(q, e, group), mult,
                                                    np.full(len(mult), shift, np.uint8), len(x), len(mult), group, lo, hi)
        want = K.linear_q4(x, q, e, group, mult, shift, *{8: K.I8, 16: K.I16, 32: K.I32}[bits])
        assert y[lo:hi].tolist() == want[lo:hi].tolist()  # the twin is the scalar int4 GEMV's integers
        assert [int(v) for v in ln.split()] == y.tolist(), f"case {spec}"


def test_q4_layout_round_trips():
    """rvv_q4_pack's scales and nibble words undo exactly, from the quantizer's q4 blocks too."""
    from deeploy_dsl.kernels import layout as L
    rng = np.random.default_rng(9)
    q = rng.integers(-8, 8, (37, 70)).astype(np.int8)
    e = rng.integers(0, 256, (37, 3)).astype(np.uint8)
    wv = rvv.rvv_q4_pack(q, e, 32)
    assert wv.shape == (2, 3, rvv.RVV_ROWS * (1 + 4 * 4))
    back = rvv.rvv_q4_unpack(wv, 37, 70, 32)
    assert (back[0] == q).all() and (back[1] == e).all()
    assert (rvv.rvv_q4_weights(L.q4_pack(q, e, 32), {"n_out": 37, "n_in": 70, "group": 32}) == wv).all()


def test_q4_host_matches_twin(tmp_path):
    src, cases = q4_harness(spike=False)
    _check_q4(_host(tmp_path, src, ["gemv_q4_rvv.c"]), cases)


@needs_spike
def test_q4_spike_matches_twin(tmp_path):
    """vle32 of the nibbles, vsll/vsra into int8 quads, vqdot.vx and the group scales by vmacc.vv on Spike give
    gemv_q4's integers."""
    src, cases = q4_harness(spike=True)
    _check_q4(_spike(tmp_path, src, ["gemv_q4_rvv.c"]), cases)


SWIGLU16_N = [1, 31, 33, 172, 100]  # vector lengths: under, over and several vectors of 32


def swiglu16_harness(spike: bool) -> tuple[str, list]:
    """A program that runs swiglu16_tok_i8_rvv on each case and prints h and the token's factor."""
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "swiglu16_rvv.h"\n'
    cases, body = [], []
    rng = np.random.default_rng(17)
    table = np.clip(np.cumsum(rng.integers(-300, 700, K.SILU16_ENTRIES)), -32768, 32767).astype(np.int16)
    table[100:102] = (-32768, 32767)  # a step wider than int16 between two entries
    src += _carr("int16_t", "silu", table)
    for i, n in enumerate(SWIGLU16_N):
        r = np.random.default_rng(600 + i)
        gate, up = (r.integers(-32768, 32768, n).astype(np.int16) for _ in range(2))
        gate[0], up[0] = (-32768, -32768) if i % 2 else (32767, 32767)
        if n > 2:
            gate[1] = 100 * 128 - 32768 + 77  # between the wide step's entries
        cases.append((gate, up, table))
        src += _carr("int16_t", f"g{i}", gate) + _carr("int16_t", f"u{i}", up)
        src += f"static int8_t h{i}[{n}];\nstatic int32_t p{i}[{n}];\nstatic int32_t t{i}[2];\n"
        body.append(f"    swiglu16_tok_i8_rvv(h{i}, t{i}, p{i}, g{i}, u{i}, silu, 40, {n});\n"
                    f"    for (int k = 0; k < {n}; k++) put_int(h{i}[k]);\n    put_int(t{i}[0]); put_int(t{i}[1]);\n"
                    '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_swiglu16(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (gate, up, table), ln in zip(cases, lines):
        h, tok = K.swiglu_tok_g16(gate, up, table, 40)
        assert [int(v) for v in ln.split()] == h.tolist() + [int(np.int32(np.uint32(tok[0] & 0xFFFFFFFF))), int(tok[1])]


def test_swiglu16_host_matches_twin(tmp_path):
    src, cases = swiglu16_harness(spike=False)
    _check_swiglu16(_host(tmp_path, src, ["swiglu16_rvv.c", "swiglu16.c"]), cases)


@needs_spike
def test_swiglu16_spike_matches_twin(tmp_path):
    """Two vluxei16 gathers, the widening interpolation and products, reductions and vmulh on Spike give
    swiglu_tok_g16's integers and the token's factor."""
    src, cases = swiglu16_harness(spike=True)
    _check_swiglu16(_spike(tmp_path, src, ["swiglu16_rvv.c", "swiglu16.c"]), cases)


NORM_DIMS = [1, 31, 33, 64, 100, 288]  # row lengths: under, over and several vectors of 32


def norm_tok_harness(spike: bool) -> tuple[str, list]:
    """A program that runs rmsnorm_tok_i8_rvv on each case and prints y and the token's factor."""
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "rmsnorm_tok_rvv.h"\n'
    cases, body = [], []
    for i, dim in enumerate(NORM_DIMS):
        r = np.random.default_rng(700 + i)
        x = r.integers(-32768, 32768, dim).astype(np.int16)
        x[0] = -32768
        gain = r.integers(-30000, 30000, dim).astype(np.int32)
        gain_shift, eps_q = 12 + i % 3, int(r.integers(0, 1 << 20))
        cases.append((x, gain, gain_shift, eps_q))
        src += _carr("int16_t", f"x{i}", x) + _carr("int32_t", f"g{i}", gain)
        src += f"static int8_t y{i}[{dim}];\nstatic int32_t t{i}[2];\n"
        body.append(f"    rmsnorm_tok_i8_rvv(y{i}, t{i}, x{i}, g{i}, {gain_shift}, {eps_q}, 40, {dim});\n"
                    f"    for (int k = 0; k < {dim}; k++) put_int(y{i}[k]);\n    put_int(t{i}[0]); put_int(t{i}[1]);\n"
                    '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_norm_tok(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (x, gain, gain_shift, eps_q), ln in zip(cases, lines):
        y, tok = K.rmsnorm_tok(x, gain, gain_shift, eps_q, 40)
        assert [int(v) for v in ln.split()] == np.asarray(y).tolist() + [int(tok[0]), int(tok[1])]


def test_norm_tok_host_matches_twin(tmp_path):
    src, cases = norm_tok_harness(spike=False)
    _check_norm_tok(_host(tmp_path, src, ["rmsnorm_tok_rvv.c", "rmsnorm_tok.c"]), cases)


@needs_spike
def test_norm_tok_spike_matches_twin(tmp_path):
    """x * gain's span and the squares by reductions, the outputs by vmulh on Spike give rmsnorm_tok's integers and
    the token's factor."""
    src, cases = norm_tok_harness(spike=True)
    _check_norm_tok(_spike(tmp_path, src, ["rmsnorm_tok_rvv.c", "rmsnorm_tok.c"]), cases)


# (n_in, n_out, group, out bits, tok m, tok s[, lo, hi]): chunks of 128 rows, a share inside blocks, a shift beyond 62
Q4_TOK_CASES = [(64, 300, 32, 32, 2**31 + 5, 50, 13, 290), (70, 33, 32, 16, 3 << 29, 45), (10, 5, 6, 8, 12345678, 70)]


def q4_tok_harness(spike: bool) -> tuple[str, list]:
    src, _ = harness(spike)
    src = src[:src.index("int main(void)")].split("static int8_t w0[]")[0] + '#include "gemv_q4_tok_rvv.h"\n'
    cases, body = [], []
    for i, (n_in, n_out, group, bits, m, sh, *bounds) in enumerate(Q4_TOK_CASES):
        lo, hi = bounds or (0, n_out)
        rng = np.random.default_rng(800 + i)
        q = rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
        e = rng.integers(0, 256, (n_out, -(-n_in // group))).astype(np.uint8)
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        mult = rng.integers(1, 2**31 - 1, n_out).astype(np.int32)
        tok = np.array([m - 2**32 if m >= 2**31 else m, sh], np.int32)
        cases.append((q, e, group, x, mult, tok, bits, lo, hi))
        src += (_carr("int8_t", f"w{i}", rvv.rvv_q4_pack(q, e, group)) + _carr("int8_t", f"x{i}", x)
                + _carr("int32_t", f"m{i}", mult) + _carr("int32_t", f"t{i}", tok) + f"static {CTYPE[bits]} y{i}[{n_out}];\n")
        body.append(f"    for (int k = 0; k < {n_out}; k++) y{i}[k] = {SENTINEL};\n"
                    f"    gemv_q4_tok_rvv_i{bits}(y{i}, x{i}, w{i}, m{i}, t{i}, {n_in}, {n_out}, {group}, {lo}, {hi});\n"
                    f"    for (int k = 0; k < {n_out}; k++) put_int(y{i}[k]);\n" '    EMIT("\\n", 1);\n')
    return src + "int main(void)\n{\n" + "".join(body) + "    return 0;\n}\n", cases


def _check_q4_tok(text: str, cases: list) -> None:
    lines = text.strip().splitlines()
    assert len(lines) == len(cases)
    for (q, e, group, x, mult, tok, bits, lo, hi), ln, spec in zip(cases, lines, Q4_TOK_CASES):
        y = np.full(len(mult), SENTINEL, np.int64)
        rvv.Q4_KERNELS[f"gemv_q4_tok_rvv_i{bits}"].twin(y, x, rvv.rvv_q4_pack(q, e, group), mult, tok, len(x),
                                                        len(mult), group, lo, hi)
        assert [int(v) for v in ln.split()] == y.tolist(), f"case {spec}"


Q4_TOK_SOURCES = ["gemv_q4_tok_rvv.c", "gemv_q4_rvv.c"]


def test_q4_tok_host_matches_twin(tmp_path):
    src, cases = q4_tok_harness(spike=False)
    _check_q4_tok(_host(tmp_path, src, Q4_TOK_SOURCES), cases)


@needs_spike
def test_q4_tok_spike_matches_twin(tmp_path):
    src, cases = q4_tok_harness(spike=True)
    _check_q4_tok(_spike(tmp_path, src, Q4_TOK_SOURCES), cases)


TOK_SOURCES = ["gemv_tok_rvv.c", "gemv_rvv.c"]
QK_SOURCES = ["attention_qk_rvv.c", "attention_rvv.c", "attention.c"]


def test_tok_host_matches_twin(tmp_path):
    src, cases = tok_harness(spike=False)
    _check_tok(_host(tmp_path, src, TOK_SOURCES), cases)


@needs_spike
def test_tok_spike_matches_twin(tmp_path):
    """vmulhu.vx's token multipliers and gemv_rvv's loop on Spike give linear_tok's integers."""
    src, cases = tok_harness(spike=True)
    _check_tok(_spike(tmp_path, src, TOK_SOURCES), cases)


def test_scores_host_matches_twin(tmp_path):
    src, cases = qk_harness(spike=False)
    _check_qk(_host(tmp_path, src, QK_SOURCES), cases)


@needs_spike
def test_scores_spike_matches_twin(tmp_path):
    """vlse32 + vqdot.vx (int8 keys and queries), split vlse16 + vwmacc (int8 keys, int16 queries) and vlse16 + vwmacc
    (int16 keys, int12 queries) on Spike give attention.c's scores and maxima, aligned rows or not."""
    src, cases = qk_harness(spike=True)
    _check_qk(_spike(tmp_path, src, QK_SOURCES), cases)


def test_twins_are_the_scalar_kernels_integers():
    """The token GEMV's twin is linear_tok over the unpacked weights (the scalar gemv_tok's integers)."""
    rng = np.random.default_rng(5)
    w = rng.integers(-128, 128, (40, 19)).astype(np.int8)
    x = rng.integers(-128, 128, 19).astype(np.int8)
    mult = rng.integers(1, 2**31 - 1, 40).astype(np.int32)
    tok = np.array([1 << 30, 44], np.int32)
    y = np.zeros(40, np.int64)
    rvv.KERNELS["gemv_tok_rvv_i16"].twin(y, x, rvv.rvv_pack(w), mult, tok, 19, 40, 0, 40)
    assert y.tolist() == K.linear_tok(x, w, mult, tok, *K.I16).tolist()


RVV = ROOT / "deployments/stories260k-rvv.dply"
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
ACCURATE = ["quantize.queries=int12", "quantize.dynamic=final_norm, swiglu_absmax", "quantize.smooth=0.5",
            "quantize.gate_up=int16"]


@pytest.fixture(scope="module")
def accurate(model_dir):
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(RVV, ACCURATE)


def test_accurate_setting_has_no_scalar_linear_or_attention(accurate):
    """Every linear layer (the token GEMVs of down and lm_head, the int12 q projection) and the attention run on the
    vector unit, and their why names the ISA."""
    steps = [s for s in accurate.plan.steps if s.macs]
    assert {s.rule for s in steps} >= {"linear_q12_rvv", "linear_tok_i16_rvv", "linear_tok_i32_rvv",
                                      "attention_q12k16_rvv"}
    assert next(s.rule for s in accurate.plan.steps if s.op.endswith("swiglu")) == "swiglu16_i8_absmax_rvv"
    assert next(s.rule for s in accurate.plan.steps if s.op == "final_norm") == "rmsnorm_i8_absmax_rvv"
    assert all(s.rule.endswith("_rvv") and "isa has zve32x" in s.reason for s in steps)


def test_one_core_vector_steps_are_priced_on_one_core(accurate):
    """The vector norm, RoPE, residual add and SwiGLU run on core 0 without a fork: their estimate is every element on
    one core (not the mapped cores' share of them) and no fork, while a forked step still pays its fork."""
    from deeploy_dsl.engines.cost import step_cost
    plan, dep = accurate.plan, accurate.dep
    cpe = dep.target.cycles_per_element
    one = [s for s in plan.steps if s.spec.split is None and s.spec.name.endswith("_rvv") and not s.macs]
    assert {s.spec.name for s in one} >= {"rmsnorm_i8_part_rvv", "rmsnorm_tok_i8_rvv", "residual_add_i16_rvv",
                                          "swiglu16_tok_i8_rvv", "rope_q12_rvv"}
    for s in one:
        assert s.cores == 8
        n = plan.values[s.output.name].shape[0] if not s.output.row else plan.values[s.output.name].shape[-1]
        assert step_cost(s, plan, dep).compute_cycles == math.ceil(n * cpe), s.op
    gemv = next(s for s in plan.steps if s.spec.name == "gemv_tok_rvv_i32")
    assert step_cost(gemv, plan, dep).compute_cycles > dep.target.fork_cycles


@needs_spike
def test_accurate_setting_spike_is_bit_exact_with_golden(accurate, tmp_path):
    """A few tokens of the accurate setting on 1 and 8 harts (prefill on 8): every logit equal to golden's."""
    ids, logits = run_golden(accurate, prefill=False)
    run = _run(accurate, tmp_path / "b1", 1, prefill=False)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)
    ids8, logits8 = run_golden(accurate, prefill=True)
    run8 = _run(accurate, tmp_path / "b8", 8, prefill=True)
    assert run8.ids == ids8
    np.testing.assert_array_equal(run8.logits, logits8)


@needs_spike
@pytest.mark.slow
@pytest.mark.parametrize("setting, rule", [
    # the int8 setting (the example's default before the accurate one) with each change
    ([*INT8_EXAMPLE, "quantize.keys=int8"], "attention_i8_rvv"),
    ([*INT8_EXAMPLE, "quantize.keys=int8", "quantize.queries=int12"], "attention_q12_rvv"),
    ([*INT8_EXAMPLE, "quantize.dynamic=norm"], "rmsnorm_i8_absmax_rvv"),
    (ACCURATE + ["quantize.weights=int4 per_group(32)"], "linear_q4_tok_i32_rvv")])
def test_other_settings_spike_is_bit_exact_with_golden(model_dir, setting, rule, tmp_path):
    """int8 keys (vqdot.vx scores), int8 keys with int12 queries, `dynamic norm` (every norm per token, every GEMV
    after it a token GEMV) and the accurate setting with int4 weights (the int4 token GEMV) on 8 harts: every logit
    equal to golden's."""
    from deeploy_dsl.compiler import compile_deployment
    c = compile_deployment(RVV, setting)
    assert any(s.rule == rule for s in c.plan.steps)
    ids, logits = run_golden(c, prefill=True)
    run = _run(c, tmp_path / "b8", 8, prefill=True)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)


@needs_spike
def test_int4_spike_is_bit_exact_with_golden(model_dir, tmp_path):
    """int4 per-group weights on the vector unit (every linear layer), 8 harts with prefill: golden's logits."""
    from deeploy_dsl.compiler import compile_deployment
    c = compile_deployment(RVV, ["quantize.weights=int4 per_group(32)"])
    linear = [s for s in c.plan.steps if s.macs and not s.op.endswith("attention")]
    assert linear and all(s.rule.startswith("linear_q4_") and s.rule.endswith("_rvv") for s in linear)
    ids, logits = run_golden(c, prefill=True)
    run = _run(c, tmp_path / "b8", 8, prefill=True)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)


TOKENS = 4


def run_golden(c, prefill: bool):
    from deeploy_dsl.engines.runner import run_golden_compiled
    return run_golden_compiled(c, PROMPT, TOKENS, stop=False, prefill=prefill)


def _run(c, out: Path, cores: int, prefill: bool):
    from deeploy_dsl.engines.runner import run_spike_compiled
    return run_spike_compiled(c, out, PROMPT, TOKENS, stop=False, cores=cores, prefill=prefill)
