"""The C kernels of kernels_c/, built for bare-metal RV32 and run under QEMU, compute exactly the integers of
their numpy twins in deeploy_dsl/kernels/twins.py (the host twin of this module is tests/test_kernels_c.py).

One harness program (tests/rv32_harness.c) is built once per session. It reads a job file of cases, each a
few arrays and a short list of kernel calls on them, runs the calls, and writes back the arrays each case
marks as outputs with the calls' return values and instruction counts. All cases of all kernels are packed
here with numpy, run by a couple of QEMU processes in parallel, and every output is compared with its twin.
"""
from __future__ import annotations

import math
import os
import re
import shutil
import struct
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, NamedTuple

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import sampling as S  # noqa: E402
from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels.layout import ROWS_PER_BLOCK, block_rows, n_blocks  # noqa: E402
from attention_cases import random_attention_k16, random_rope_i16, rope_tables  # noqa: E402
from attention_cases import SCORE_FORMS, WIDE_ATTENTION, extremes, rand_width, random_attention_wide  # noqa: E402
from attention_cases import (ATTN_EDGES, CTX, TILED_POS, TILED_SHAPES, TILED_T, attention_edge,  # noqa: E402
                             attn_out_edges, attn_out_input, check_edge, exp_av_extremes, exp_av_input,
                             exp_av_out_params, exp_cut_edges, last_head_exps, prm_array, random_attention,
                             table_bits, tile_case, tiled_case,
                             twin_attention_tiled, twin_exp_av, twin_scores_max, want_exp_av)

PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"
GCC, NM, QEMU = "riscv64-unknown-elf-gcc", "riscv64-unknown-elf-nm", "qemu-system-riscv32"
_missing = [t for t in (GCC, NM, QEMU) if shutil.which(t) is None]
if _missing:
    pytest.skip(f"needs {', '.join(_missing)} (Debian: apt-get install -y {PACKAGES})", allow_module_level=True)

KDIR = ROOT / "kernels_c"
HARNESS = Path(__file__).resolve().parent / "rv32_harness.c"
SOURCES = ["linear.c", "rmsnorm.c", "rope.c", "attention.c", "swiglu.c", "swiglu16.c", "rmsnorm_tok.c", "wide.c",
           "residual_add.c", "embed.c",
           "argmax.c", "dma.c", "tiles.c", "sampler.c"]
RV_CFLAGS = ["-march=rv32imac", "-mabi=ilp32", "-O2", "-std=c99", "-Wall", "-Wextra", "-Werror",
             "-DPICOLIBC_INTEGER_PRINTF_SCANF"]
RV_LDFLAGS = ["--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost",
              "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x01000000",
              "-Wl,--defsym=__ram=0x81000000", "-Wl,--defsym=__ram_size=0x01000000"]
SOFT_FLOAT = re.compile(r" __(add|sub|mul|div|neg|float|floatun|fix|fixun|extend|trunc|cmp|eq|ne|lt|le|gt|ge|unord)"
                        r"[sdt]f[0-9]?$", re.M)
N_SHARDS = max(1, min(4, os.cpu_count() or 1))  # QEMU processes run side by side
QEMU_TIMEOUT = 120

# every function a call can name, in the harness's id order, with its pointer (p) / scalar (i) signature
FNS = re.findall(r'X\((\w+), "([pio]*)"\)', HARNESS.read_text())  # o: a pointer or None (NULL)
FN_ID = {name: i for i, (name, _) in enumerate(FNS)}
FN_SIG = dict(FNS)

I8, I16, I32 = K.I8, K.I16, K.I32
# random cases per kernel: SEED_SCALE times the host tests' count; their seeds come first, so the host cases are
# among these. DEEPLOY_RV32_SEED_SCALE=20 makes a longer soak.
SEED_SCALE = int(os.environ.get("DEEPLOY_RV32_SEED_SCALE", "3"))


def seeds(host_count: int) -> range:
    return range(host_count * SEED_SCALE)


JOB_MAGIC, OUT_MAGIC = 0x4A4C5044, 0x4F4C5044
SCALAR = -1


# ------------------------------------------------------------------------------------------------- jobs


class Ptr(NamedTuple):
    """A pointer into a case's array `idx`, `off` bytes in."""
    idx: int
    off: int
    itemsize: int

    def __add__(self, n_elems: int) -> "Ptr":
        return Ptr(self.idx, self.off + int(n_elems) * self.itemsize, self.itemsize)


@dataclass
class Result:
    rets: np.ndarray  # int64 [n_calls]
    instret: np.ndarray  # uint64 [n_calls]
    arrays: dict  # array index -> array after the calls (write-back arrays only)
    bad_canary: int  # 0, or 1 + the index of an array whose guard bytes were overwritten


@dataclass
class Case:
    """Arrays, calls on them, and what the numpy twin says the outputs must be."""
    kernel: str
    label: str
    arrays: list = field(default_factory=list)
    outputs: list = field(default_factory=list)  # write back?
    calls: list = field(default_factory=list)  # (fn, args)
    expects: list = field(default_factory=list)  # (what, array index, expected full array)
    expect_rets: list = field(default_factory=list)  # (what, call index, expected return value)
    checks: list = field(default_factory=list)  # more callables(Result) that assert

    def arr(self, a, out: bool = False) -> Ptr:
        a = np.asarray(a)
        a = np.ascontiguousarray(a, dtype=a.dtype.newbyteorder("<"))  # the harness reads little-endian
        assert a.nbytes < 2**31
        self.arrays.append(a)
        self.outputs.append(out)
        return Ptr(len(self.arrays) - 1, 0, a.itemsize)

    def out(self, a) -> Ptr:
        return self.arr(a, out=True)

    def call(self, fn: str, *args) -> int:
        sig = FN_SIG[fn]
        assert len(args) == len(sig), f"{fn} takes {len(sig)} arguments"
        for a, kind in zip(args, sig):
            assert isinstance(a, Ptr) == (kind == "p") or (kind == "o" and (a is None or isinstance(a, Ptr))), \
                f"{fn}: {a!r} for a {kind!r} argument"
        self.calls.append((fn, args))
        return len(self.calls) - 1

    def expect(self, ptr: Ptr, want, what: str) -> None:
        """The whole array behind `ptr` must equal `want` after the calls (untouched parts included)."""
        assert self.outputs[ptr.idx] and ptr.off == 0
        want = np.asarray(want)
        have = self.arrays[ptr.idx]
        assert want.size == have.size, f"{what}: expected {want.size} values for an array of {have.size}"
        assert want.min(initial=0) >= np.iinfo(have.dtype).min and want.max(initial=0) <= np.iinfo(have.dtype).max
        self.expects.append((what, ptr.idx, want.reshape(have.shape)))

    def expect_ret(self, call: int, want: int, what: str) -> None:
        self.expect_rets.append((what, call, int(want)))

    def pack(self) -> bytes:
        parts = [struct.pack("<II", len(self.arrays), len(self.calls))]
        for a, out in zip(self.arrays, self.outputs):
            b = a.tobytes()
            parts += [struct.pack("<II", len(b), int(out)), b, bytes(-len(b) % 8)]
        for fn, args in self.calls:
            parts.append(struct.pack("<II", FN_ID[fn], len(args)))
            for a in args:
                parts.append(struct.pack("<iIq", a.idx, 0, a.off) if isinstance(a, Ptr) else
                             struct.pack("<iIq", SCALAR, 0, int(a or 0)))
        return b"".join(parts)

    def unpack(self, buf: memoryview, at: int) -> tuple[Result, int]:
        n_calls, bad = struct.unpack_from("<II", buf, at)
        assert n_calls == len(self.calls), "output out of step with the job"
        at += 8
        ri = np.frombuffer(buf, "<i8", 2 * n_calls, at).reshape(-1, 2)
        at += 16 * n_calls
        arrays = {}
        for i, (a, out) in enumerate(zip(self.arrays, self.outputs)):
            if out:
                arrays[i] = np.frombuffer(buf, a.dtype, a.size, at).reshape(a.shape)
                at += a.nbytes + (-a.nbytes % 8)
        return Result(ri[:, 0].copy(), ri[:, 1].astype(np.uint64), arrays, bad), at

    def verify(self, r: Result) -> None:
        assert r.bad_canary == 0, f"wrote past the end of array {r.bad_canary - 1}"
        for what, call, want in self.expect_rets:
            have = int(r.rets[call])
            if self.calls[call][0] == "dma_counters":  # (transfers, bytes) packed as transfers << 32 | bytes
                have, want = (have >> 32, have & 0xFFFFFFFF), (want >> 32, want & 0xFFFFFFFF)
                what += " (transfers, bytes)"
            assert have == want, f"{what}: returned {have}, twin says {want}"
        for what, idx, want in self.expects:
            np.testing.assert_array_equal(r.arrays[idx], want, err_msg=what)
        for check in self.checks:
            check(r)


def pack_job(cases: list[Case]) -> bytes:
    return struct.pack("<II", JOB_MAGIC, len(cases)) + b"".join(c.pack() for c in cases)


def unpack_out(cases: list[Case], data: bytes) -> list[Result]:
    buf = memoryview(data)
    magic, n = struct.unpack_from("<II", buf, 0)
    assert magic == OUT_MAGIC and n == len(cases)
    at, results = 8, []
    for c in cases:
        r, at = c.unpack(buf, at)
        results.append(r)
    assert at == len(data), "trailing bytes in the output file"
    return results


def semihosting_args(args: list[str]) -> str:
    return ",".join(["enable=on", "target=native"] + [f"arg={a.replace(',', ',,')}" for a in args])


def run_qemu(elf: Path, work: Path, cases: list[Case]) -> list[Result]:
    work.mkdir(parents=True, exist_ok=True)
    (work / "job.bin").write_bytes(pack_job(cases))
    (work / "out.bin").unlink(missing_ok=True)
    cmd = [QEMU, "-machine", "virt", "-bios", "none", "-nographic", "-monitor", "none", "-icount", "shift=0",
           "-semihosting-config", semihosting_args(["job.bin", "out.bin"]), "-kernel", str(elf)]
    r = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=QEMU_TIMEOUT)
    assert r.returncode == 0, f"harness exited with {r.returncode} in {work}:\n{(r.stdout + r.stderr)[-2000:]}"
    return unpack_out(cases, (work / "out.bin").read_bytes())


# ---------------------------------------------------------------------------------------------- helpers


def qm_arrays(reals):
    ms = [K.quantize_multiplier(float(r)) for r in reals]
    return np.array([m for m, _ in ms], np.int32), np.array([s for _, s in ms], np.uint8)


def wide_reals(rng, n):
    return 10 ** rng.uniform(-9, 3, n)


def tie_heavy(rng, n):
    """Tiny (mult, shift) pairs: acc * mult / 2^shift lands exactly on .5 often, of both signs."""
    return rng.integers(1, 8, n).astype(np.int32), rng.integers(1, 4, n).astype(np.uint8)


def rand_i8(rng, shape):
    return rng.integers(-128, 128, shape, dtype=np.int8)


def silu_table(rng):
    g = np.arange(-128, 128) * 10 ** rng.uniform(-2, -0.5)
    silu = g / (1 + np.exp(-g))
    return np.clip(np.round(silu / np.abs(silu).max() * 32767), *I16).astype(np.int16)


POISON32 = -777


# ---------------------------------------------------------------------------------------------- linear


def layer_mults(reals):
    """A linear layer's (mult [n], shift) from the compiler: kernels.layer_multipliers."""
    return K.layer_multipliers(reals)


def shift_array(shift, n, rng=None):
    """The per-row shift array the kernels get: shift[0] is the layer's shift; the others, all equal in a
    deployment, are not read (garbage here when rng is given)."""
    a = np.full(max(n, 1), shift, np.uint8) if rng is None else rng.integers(0, 256, max(n, 1)).astype(np.uint8)
    a[0] = shift
    return a


def linear_inputs():
    """(x, w, mult, shift array, shift, label) of every linear / gemv case."""
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        n_in, n_out = int(rng.integers(1, 300)), int(rng.integers(1, 40))
        x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
        if seed % 10 == 0:  # extreme accumulators of both signs
            x[:] = -128
            w[: n_out // 2], w[n_out // 2:] = -128, 127
        reals = (10 ** rng.uniform(-4, 0, n_out) * 10 ** rng.uniform(-5, 3) if seed % 2
                 else 10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in)))
        if seed % 5 != 2:
            mult, shift = layer_mults(reals)
        else:  # tie heavy: tiny mults, one shift 1..3
            mult, shift = tie_heavy(rng, n_out)[0], int(rng.integers(1, 4))
        yield x, w, mult, shift_array(shift, n_out, rng), shift, f"seed={seed} n_in={n_in} n_out={n_out}"
    # rounding ties of both signs and saturation: n_in = 1, x = 1, so acc = w = -128..127
    w, x = np.arange(-128, 128, dtype=np.int8).reshape(-1, 1), np.ones(1, np.int8)
    for mult, shift in ((1 << 30, 31), (3, 1), (1, 1), (1, 2), (5, 3), (2**31 - 1, 0), (1, 62), (2**31 - 1, 62)):
        yield x, w, np.full(256, mult, np.int32), shift_array(shift, 256), shift, f"edge mult={mult} shift={shift}"
    # every shift 0..62, with small and large multipliers and accumulators from 0 to +-2^19
    for shift in range(63):
        rng = np.random.default_rng(5000 + shift)
        n_in, n_out = 37, 21
        x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
        x[:5], w[:3] = -128, [[-128], [127], [0]]
        w[3, :] = 0
        w[3, 0] = 1
        mult = np.array([1, 2, 3, 5, 7, 1 << 30, 2**31 - 1] * 3, np.int32)
        mult[14:] = rng.integers(2**30, 2**31, 7)
        yield x, w, mult, shift_array(shift, n_out), shift, f"edge sweep shift={shift}"
    # long rows of extreme products: accumulators of +-2^27 reach the int64 requantization
    rng = np.random.default_rng(1000)
    n_in = 8192
    x, w = np.full(n_in, -128, np.int8), np.full((4, n_in), -128, np.int8)
    w[1::2] = 127
    for top in (1e-9, 1e-3, 1.0):
        m, s = layer_mults(top * 10 ** rng.uniform(-2, 0, 4))
        yield x, w, m, shift_array(s, 4), s, f"edge n_in={n_in} extreme top={top}"


LINEAR_DTYPES = {8: (np.int8, I8), 16: (np.int16, I16), 32: (np.int32, I32)}


def gen_linear(bits):
    dt, lim = LINEAR_DTYPES[bits]
    cases = []
    for x, w, mult, shifts, shift, label in linear_inputs():
        c = Case(f"linear_i{bits}", label)
        y = c.out(np.full(w.shape[0], 99, dt))
        c.call(f"linear_i{bits}", y, c.arr(x), c.arr(w), c.arr(mult), c.arr(shifts), w.shape[1], w.shape[0])
        c.expect(y, K.linear(x, w, mult, shift, *lim), "y")
        cases.append(c)
    return cases


def blocked_rows(w, R):
    """gemv.h's layout by its definition: wb[b][i][r] = W[b*R + r][i], the last block padded with zero rows."""
    n_out, n_in = w.shape
    nb = -(-n_out // R)
    padded = np.zeros((nb * R, n_in), np.int8)
    padded[:n_out] = w
    return np.ascontiguousarray(padded.reshape(nb, R, n_in).transpose(0, 2, 1))


def gen_gemv(bits, layout):
    """gemv_iN over weights blocked by deeploy_dsl/kernels/layout.py: the integers of kernels.linear."""
    dt, lim = LINEAR_DTYPES[bits]
    R = layout.ROWS_PER_BLOCK
    cases = []
    inputs = list(linear_inputs())
    rng = np.random.default_rng(6000)
    for n_out in range(1, 3 * R + 2):  # every tail length of the last block, and n_in around the unroll factor
        for n_in in (1, 7, 8, 9, 17):
            mult, shift = layer_mults(10 ** rng.uniform(-3, 0, n_out) * 10 ** rng.uniform(-9, 3))
            inputs.append((rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in)), mult, shift_array(shift, n_out, rng), shift,
                           f"shape n_out={n_out} n_in={n_in}"))
    for x, w, mult, shifts, shift, label in inputs:
        wb = np.asarray(layout.block_rows(w))
        c = Case(f"gemv_i{bits}", label)
        y = c.out(np.full(w.shape[0], 99, dt))
        c.call(f"gemv_i{bits}", y, c.arr(x), c.arr(wb), c.arr(mult), c.arr(shifts), w.shape[1], w.shape[0])
        c.expect(y, K.linear(x, w, mult, shift, *lim), "y")
        want_wb = blocked_rows(w, R)

        def layout_check(_r, wb=wb, want_wb=want_wb):
            assert wb.dtype == np.int8 and wb.size == want_wb.size, f"layout.block_rows gave {wb.dtype} {wb.shape}"
            np.testing.assert_array_equal(wb.reshape(want_wb.shape), want_wb, err_msg="layout.block_rows vs gemv.h")
        c.checks.append(layout_check)
        cases.append(c)
    # tiles of whole blocks, as layout.py tells the integrator: y/mult/shift offset by o0, wb by (o0 / R) blocks
    for k, (n_out, n_in, T) in enumerate([(37, 64, R), (37, 64, 2 * R), (100, 33, 3 * R), (8, 5, R), (129, 288, 4 * R)]):
        rng = np.random.default_rng(7000 + k)
        x, w = rand_i8(rng, n_in), rand_i8(rng, (n_out, n_in))
        mult, shift = layer_mults(10 ** rng.uniform(-1, 1, n_out) / (128 * math.sqrt(n_in)) * 4.0 ** (k - 2))
        c = Case(f"gemv_i{bits}", f"tiled n_out={n_out} n_in={n_in} T={T}")
        y, xp, wbp, mp, sp = (c.out(np.full(n_out, 99, dt)), c.arr(x), c.arr(layout.block_rows(w)), c.arr(mult),
                              c.arr(shift_array(shift, n_out)))  # a deployment's: every entry the layer's shift
        for o0 in range(0, n_out, T):
            c.call(f"gemv_i{bits}", y + o0, xp, wbp + (o0 // R) * n_in * R, mp + o0, sp + o0, n_in, min(T, n_out - o0))
        c.expect(y, K.linear(x, w, mult, shift, *lim), "y")
        cases.append(c)
    return cases


def q4_inputs():
    """(x, q, e, group, mult, shift array, shift, label) of the int4 cases: random, extremes, every tail of a block and
    of the last group, tiny and large groups, every requantization form."""
    rng = np.random.default_rng(8000)
    for k in range(40):
        group = int(rng.choice([8, 16, 32, 64, 256]))
        n_in, n_out = 2 * int(rng.integers(1, 150)), int(rng.integers(1, 40))
        x, q = rand_i8(rng, n_in), rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
        e = rng.integers(1, 256, (n_out, -(-n_in // group))).astype(np.uint8)
        if k % 8 == 0:  # the largest products of both signs: q -8 and 7, e 255, x -128
            x[:], e[:] = -128, 255
            q[: n_out // 2], q[n_out // 2:] = -8, 7
        reals = 10 ** rng.uniform(-1, 1, n_out) / (128 * 8 * 128 * math.sqrt(n_in)) * 4.0 ** rng.integers(-3, 12)
        mult, shift = layer_mults(reals) if k % 5 != 2 else (tie_heavy(rng, n_out)[0], int(rng.integers(1, 4)))
        yield x, q, e, group, mult, shift_array(shift, n_out, rng), shift, f"q4 k={k} n_in={n_in} n_out={n_out} G={group}"
    for n_out in range(1, 2 * 8 + 2):
        for n_in, group in ((2, 8), (10, 8), (18, 16), (40, 32), (64, 32)):
            x, q = rand_i8(rng, n_in), rng.integers(-8, 8, (n_out, n_in)).astype(np.int8)
            e = rng.integers(1, 256, (n_out, -(-n_in // group))).astype(np.uint8)
            mult, shift = layer_mults(10 ** rng.uniform(-3, 0, n_out) * 10 ** rng.uniform(-12, 0))
            yield x, q, e, group, mult, shift_array(shift, n_out, rng), shift, f"q4 shape n_out={n_out} n_in={n_in} G={group}"


def gen_gemv_q4(bits, layout):
    """gemv_q4_iN over layout.q4_pack's layout: the integers of kernels.linear_q4, whole and in tiles of blocks."""
    dt, lim = LINEAR_DTYPES[bits]
    R = layout.ROWS_PER_BLOCK
    cases = []
    for x, q, e, group, mult, shifts, shift, label in q4_inputs():
        n_out, n_in = q.shape
        wq = np.asarray(layout.q4_pack(q, e, group)).reshape(-1)
        c = Case(f"gemv_q4_i{bits}", label)
        y = c.out(np.full(n_out, 99, dt))
        c.call(f"gemv_q4_i{bits}", y, c.arr(x), c.arr(wq), c.arr(mult), c.arr(shifts), n_in, n_out, group)
        c.expect(y, K.linear_q4(x, q, e, group, mult, shift, *lim), "y")
        cases.append(c)
        if n_out > 2 * R:  # tiles of whole blocks: wq offset by R * q4_row_bytes a block
            c = Case(f"gemv_q4_i{bits}", label + " tiled")
            y, xp, wp, mp = c.out(np.full(n_out, 99, dt)), c.arr(x), c.arr(wq), c.arr(mult)
            sp = c.arr(shift_array(shift, n_out))
            for o0 in range(0, n_out, 2 * R):
                c.call(f"gemv_q4_i{bits}", y + o0, xp, wp + o0 * layout.q4_row_bytes(n_in, group), mp + o0, sp + o0,
                       n_in, min(2 * R, n_out - o0), group)
            c.expect(y, K.linear_q4(x, q, e, group, mult, shift, *lim), "y")
            cases.append(c)
    return cases


# --------------------------------------------------------------------------------------------- rmsnorm


def rmsnorm_case(x, gain, gain_shift, eps_q, label):
    c = Case("rmsnorm_i8", label)
    y = c.out(np.full(x.size, 99, np.int8))
    c.call("rmsnorm_i8", y, c.arr(x), c.arr(gain), gain_shift, eps_q, x.size)
    c.expect(y, K.rmsnorm(x, gain, gain_shift, eps_q), "y")
    return c


def gen_rmsnorm():
    cases = []
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        dim = int(rng.choice([1, 7, 64, 288, 512, 2048]))
        mag = 10 ** rng.uniform(0, math.log10(32768))
        x = np.clip(np.round(rng.standard_normal(dim) * mag), *I16).astype(np.int16)
        if seed % 7 == 0:
            x = rng.integers(-32768, 32768, dim, dtype=np.int16)
        gain = rng.integers(-(2**15) if seed % 2 else 0, 2**15 + 1, dim).astype(np.int32)
        gain_shift = int(rng.integers(0, 25))
        eps_q = int(rng.integers(0, 10**8 + 1)) if seed % 3 else 0
        cases.append(rmsnorm_case(x, gain, gain_shift, eps_q, f"seed={seed} dim={dim}"))
    dim = 512
    for edge in ("zero", "zero_eps", "tiny", "ones", "full_pos", "full_neg", "sat", "shift31", "ties", "eps_large",
                 "eps_huge"):
        x, gain, gain_shift, eps_q = np.zeros(dim, np.int16), np.full(dim, 1 << 12, np.int32), 12, 0
        if edge == "zero_eps":
            eps_q = 10**8
        elif edge == "tiny":  # r = isqrt(2^16/512) = 11 < 256: the clamp decides
            x[3] = 1
        elif edge == "ones":  # r = 256 exactly
            x[:] = np.where(np.arange(dim) % 2, 1, -1)
        elif edge in ("full_pos", "full_neg"):
            x[:] = 32767 if edge == "full_pos" else -32768
        elif edge == "sat":  # large gain, one outlier: saturate at both ends
            x[:] = np.where(np.arange(dim) % 2, 300, -300)
            x[0] = -32768
            gain[:], gain_shift = 1 << 15, 0
        elif edge == "shift31":
            x[:], gain[:], gain_shift = -32768, 1 << 15, 31
        elif edge == "ties":  # r = 2^16 exactly, so y = x*gain / 2^9 = +-gain/2: ties of both signs
            x[:] = np.where(np.arange(dim) % 2, 256, -256)
            gain[:], gain_shift = np.arange(dim) % 256 * 2 - 255, 1
        elif edge == "eps_large":  # eps_q beyond 32 bits: the int64 argument must arrive whole
            x[:], eps_q = 1000, (1 << 40) + 12345
        elif edge == "eps_huge":  # isqrt argument >= 2^48 and r >= 2^24: the C's 64-bit fallbacks
            x[:], eps_q = 1000, (1 << 52) + 12345
        cases.append(rmsnorm_case(x, gain, gain_shift, eps_q, f"edge {edge}"))
    return cases


# ------------------------------------------------------------------------------------------------ rope


def rope_case(x, pos, cos_t, sin_t, head_size, label):
    c = Case("rope_i8", label)
    want = K.rope(x, pos, cos_t, sin_t, head_size)
    cos_p, sin_p = c.arr(cos_t[pos]), c.arr(sin_t[pos])
    y, xin = c.out(np.full(x.size, 99, np.int8)), c.out(x)
    c.call("rope_i8", y, xin, cos_p, sin_p, x.size, head_size)
    c.call("rope_i8", xin, xin, cos_p, sin_p, x.size, head_size)  # in place
    c.expect(y, want, "y")
    c.expect(xin, want, "y (in place)")
    return c


def gen_rope():
    cases, ctx = [], 512
    tables = {hs: rope_tables(ctx, hs) for hs in (2, 8, 16, 32, 64)}
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        head_size = int(rng.choice([2, 8, 16, 32, 64]))
        n = head_size * int(rng.integers(1, 9))
        if seed % 4:
            cos_t, sin_t = tables[head_size]
        else:  # arbitrary Q14 entries, including +-1.0 on both axes: the sums saturate
            cos_t, sin_t = (rng.integers(-(2**14), 2**14 + 1, (ctx, head_size // 2), dtype=np.int16) for _ in range(2))
            cos_t[0], sin_t[0] = 2**14, 2**14
            cos_t[1], sin_t[1] = -(2**14), 2**14
        if seed % 4 == 1:  # multiples of 2^12: the Q14 products land exactly on .5 often
            cos_t, sin_t = (rng.integers(-4, 5, (ctx, head_size // 2)).astype(np.int16) * 4096 for _ in range(2))
        pos = int(rng.integers(0, ctx)) if seed % 5 else int(rng.integers(0, 2))
        x = rand_i8(rng, n)
        if seed % 6 == 0:
            x[::2], x[1::2] = 127, -128
        cases.append(rope_case(x, pos, cos_t, sin_t, head_size, f"seed={seed} hs={head_size} n={n} pos={pos}"))
    big = 32768  # large positions: angles far from zero, table rows nowhere near 1.0
    cos_t, sin_t = rope_tables(big, 64)
    rng = np.random.default_rng(4242)
    for pos in (0, 1, 511, big - 1):
        x = rand_i8(rng, 64 * 6)
        cases.append(rope_case(x, pos, cos_t, sin_t, 64, f"edge pos={pos}"))
    return cases


# ------------------------------------------------------------------------------------------- attention


def gen_rope_i16():
    """rope_i16 (the int16 keys): random int16 values, the extremes, tables that saturate both ways; in place too."""
    cases = []
    for seed in seeds(40):
        x, pos, cos_t, sin_t, hs = random_rope_i16(seed)
        n = x.size
        c = Case("rope_i16", f"seed={seed} hs={hs} n={n} pos={pos}")
        want = K.rope_i16(x, pos, cos_t, sin_t, hs)
        cos_p, sin_p = c.arr(cos_t[pos]), c.arr(sin_t[pos])
        y, xin = c.out(np.full(n, 99, np.int16)), c.out(x)
        c.call("rope_i16", y, xin, cos_p, sin_p, n, hs)
        c.call("rope_i16", xin, xin, cos_p, sin_p, n, hs)
        c.expect(y, want, "y")
        c.expect(xin, want, "y (in place)")
        cases.append(c)
    return cases


def gen_attention_k16():
    """attention_k16 (int16 K cache, scores (q . k + 128) >> 8) on the random cases with int16 keys."""
    return [attention_wide_case("attention_k16", random_attention_k16(seed), seed) for seed in seeds(40)]


def gen_attention_wide(kernel):
    """attention_q12, _q12k16, _q16 (int12 or int16 queries in int16, int8 or int16 K) on the random cases."""
    return [attention_wide_case(kernel, random_attention_wide(seed, *WIDE_ATTENTION[kernel]), seed)
            for seed in seeds(30)]


def attention_wide_case(kernel, a, seed):
    """An untiled attention kernel of a wider q or K on the kwargs a of kernels.attention: out, and the last head's
    exps left in scratch."""
    pos, hs, nh, nkv = a["pos"], a["head_size"], a["n_heads"], a["n_kv_heads"]
    want = K.attention(**a)
    kc, vc = a["k_cache"][: pos + 1], a["v_cache"][: pos + 1]
    c = Case(kernel, f"seed={seed} heads={nh} kv={nkv} hs={hs} pos={pos}")
    out, scratch = c.out(np.full(nh * hs, 99, np.int8)), c.out(np.full(pos + 9, -12345, np.int32))
    c.call(kernel, out, c.arr(a["q"]), c.arr(kc), c.arr(vc), scratch, pos, nh, nkv, hs, a["score_mult"],
           a["score_shift"], a["score_cut"], a["out_mult"], a["out_shift"], c.arr(a["table"]))
    c.expect(out, want, "out")
    c.expect(scratch, np.concatenate([last_head_exps(a)[0], np.full(8, -12345)]), "scratch (last head's exps)")
    return c


def gen_rope_q12():
    """rope_q12 (int16 values into int12 queries, saturating to +-2047): random_rope_i16's cases, every other one
    scaled into 12 bits first (only the rotation takes those out); in place too."""
    cases = []
    for seed in seeds(40):
        x, pos, cos_t, sin_t, hs = random_rope_i16(seed)
        if seed % 2:
            x = np.clip(x // 16, -2047, 2047).astype(np.int16)
        n = x.size
        c = Case("rope_q12", f"seed={seed} hs={hs} n={n} pos={pos}")
        want = K.rope_q12(x, pos, cos_t, sin_t, hs)
        cos_p, sin_p = c.arr(cos_t[pos]), c.arr(sin_t[pos])
        y, xin = c.out(np.full(n, 99, np.int16)), c.out(x)
        c.call("rope_q12", y, xin, cos_p, sin_p, n, hs)
        c.call("rope_q12", xin, xin, cos_p, sin_p, n, hs)
        c.expect(y, want, "y")
        c.expect(xin, want, "y (in place)")
        cases.append(c)
    return cases




def attention_i8_case(a, label, check=None):
    """attention_i8 on the kwargs a of kernels.attention; check(want) asserts the edge's property on the twin."""
    pos, hs, nh, nkv = a["pos"], a["head_size"], a["n_heads"], a["n_kv_heads"]
    want = K.attention(**a)
    if check is not None:
        check(want)
    # the kernel reads cache rows 0..pos only: ship just those
    kc, vc = a["k_cache"][: pos + 1], a["v_cache"][: pos + 1]
    c = Case("attention_i8", label)
    guard = 8
    out, scratch = c.out(np.full(nh * hs, 99, np.int8)), c.out(np.full(pos + 1 + guard, -12345, np.int32))
    c.call("attention_i8", out, c.arr(a["q"]), c.arr(kc), c.arr(vc), scratch, pos, nh, nkv, hs, a["score_mult"],
           a["score_shift"], a["score_cut"], a["out_mult"], a["out_shift"], c.arr(a["table"]))
    c.expect(out, want, "out")
    c.expect(scratch, np.concatenate([last_head_exps(a)[0], np.full(guard, -12345)]), "scratch (last head's exps)")
    return c


def gen_attention():
    cases = []
    for seed in seeds(120):
        a = random_attention(seed)
        cases.append(attention_i8_case(a, f"seed={seed} heads={a['n_heads']} kv={a['n_kv_heads']} "
                                          f"hs={a['head_size']} pos={a['pos']} bits={table_bits(a['table'])}"))
    for edge in ATTN_EDGES:
        a = attention_edge(edge)
        cases.append(attention_i8_case(a, f"edge {edge}", lambda want, a=a, edge=edge: check_edge(edge, a, want)))
    return cases


def _kv_operand(c, cache, kv_dim, kh, hs, t0, n_t, tile):
    """(pointer, stride, rows [n_t, hs]) for positions t0.. of kv head kh: straight from the cache or a dense tile."""
    rows = cache.reshape(-1, kv_dim)[t0:t0 + n_t, kh * hs:(kh + 1) * hs]
    if tile:
        return c.arr(rows), hs, rows
    return c.arr(cache) + (t0 * kv_dim + kh * hs), kv_dim, rows


def gen_attn_scores(kernel, n_seeds, seed0):
    """attn_scores_i8 and its wider forms (K int16, q int12 or int16: SCORE_FORMS) over tiles or the cache in place,
    scores and running max against the twin; every 10th seed the largest products of both signs."""
    qb, kb = SCORE_FORMS[kernel]
    cases = []
    for seed in seeds(n_seeds):
        rng = np.random.default_rng(seed0 + seed)
        g, hs, n_kv, n_t, t0, stride, kh, tile = tile_case(rng, seed)
        hs = min(hs, K.qk_head_size_max(qb, kb))
        q, cache = rand_width(rng, qb, g * hs), rand_width(rng, kb, 80 * n_kv * hs)
        if seed % 10 == 3:
            q[:], (cache[::2], cache[1::2]) = extremes(qb)[0], extremes(kb)
        prev = rng.integers(-(2**17), 2**17, g).astype(np.int32) if t0 else np.full(g, 2**30, np.int32)
        c = Case(kernel, f"seed={seed} g={g} hs={hs} t0={t0} n_t={n_t} tile={tile}")
        k, k_stride, rows = _kv_operand(c, cache, n_kv * hs, kh, hs, t0, n_t, tile)
        scores = c.out(np.full((g, stride), POISON32, np.int32))
        max_ = c.out(np.concatenate([prev, np.full(4, -555, np.int32)]))
        c.call(kernel, scores, stride, max_, c.arr(q), k, k_stride, t0, n_t, g, hs)
        want = np.full((g, stride), POISON32, np.int64)
        want[:, t0:t0 + n_t], want_max = twin_scores_max(q, rows, prev if t0 else None, K.score_shift(qb, kb))
        c.expect(scores, want, "scores (poison outside [t0, t0 + n_t))")
        c.expect(max_, np.concatenate([want_max, np.full(4, -555)]), "max (poison past g)")
        cases.append(c)
    return cases


def exp_av_case(scores, max_, v, tiles, acc0, sums0, p, table, label, want=None, o=None):
    """attn_exp_av_i8 over the tiles one after another, v read in place (v_stride = hs); with out params o, the
    last tile finishes: out [g, hs] = attn_out of the sums want_exp_av says."""
    g, stride = scores.shape
    hs = v.shape[1]
    c = Case("attn_exp_av_i8", label + (f" out_shift={o['out_shift']}" if o else ""))
    acc = c.out(np.concatenate([acc0.reshape(-1), np.full(4, POISON32, np.int32)]))
    sums = c.out(np.concatenate([sums0, np.full(4, -5, np.int32)]))
    out = c.out(np.full(g * hs + 4, 99, np.int8))
    s, m, vv, tab, prm = c.arr(scores), c.arr(max_), c.arr(v), c.arr(table), c.arr(prm_array(p, o))
    for i, (t0, n_t) in enumerate(tiles):
        last = o is not None and i + 1 == len(tiles)
        c.call("attn_exp_av_i8", acc, sums, s, stride, m, vv + t0 * hs, hs, t0, n_t, g, hs, prm, tab,
               out if last else None)
    want_acc, want_sums = want or want_exp_av(scores, max_, v, tiles, acc0, sums0, p, table)
    if o is not None:
        want_out = K.attn_out(want_acc, want_sums, o["out_mult"], o["out_shift"], o["bits"]).reshape(-1)
        c.expect(out, np.concatenate([want_out, np.full(4, 99)]), "out (poison past g*hs)")
        return c
    c.expect(out, np.full(g * hs + 4, 99), "out untouched without out")
    c.expect(acc, np.concatenate([want_acc.reshape(-1), np.full(4, POISON32)]), "acc (poison past g*hs)")
    c.expect(sums, np.concatenate([want_sums, np.full(4, -5)]), "sums (poison past g)")
    return c


def gen_attn_exp_av():
    cases = []
    for seed in seeds(80):
        case = exp_av_input(seed)
        scores, v, tiles = case[0], case[2], case[3]
        cases.append(exp_av_case(*case, f"seed={seed} g={scores.shape[0]} hs={v.shape[1]} tiles={tiles}"))
        if tiles[0][0] == 0:  # a whole row: finished on its last tile too
            cases.append(exp_av_case(*case, f"seed={seed} g={scores.shape[0]} hs={v.shape[1]} tiles={tiles}",
                                     o=exp_av_out_params(seed, case[7])))
    for scores, n, p, table, label in exp_cut_edges():  # each position's exp on its own: acc[t] = e_t
        want = K.softmax_exp(scores[0], p["score_mult"], p["score_shift"], table)
        for hs in (8, n):
            v = np.zeros((n, hs), np.int8)
            v[np.arange(n), np.arange(n) % hs] = 1
            cases.append(exp_av_case(scores, np.zeros(1, np.int32), v, [(0, n)], np.zeros((1, hs), np.int32),
                                     np.zeros(1, np.int32), p, table, f"{label} hs={hs}",
                                     want=((want @ v.astype(np.int64))[None, :], np.array([want.sum()]))))
    for g, hs, scores, v, label in exp_av_extremes():  # acc reaches -2^31 exactly
        p, table, m = dict(score_mult=1 << 18, score_shift=19, score_cut=2**13 - 1), K.exp2_table(15), scores.max(axis=1)
        want = twin_exp_av(scores, m, v, 1 << 18, 19, table)
        assert (want[0] == (-(2**31) if v[0, 0] < 0 else 127 << 24)).all() and (want[1] == 1 << 24).all()
        cases.append(exp_av_case(scores, m, v, [(0, CTX)], np.zeros((g, hs), np.int32), np.zeros(g, np.int32), p,
                                 table, label, want=want))
    return cases


def gen_attn_out():
    cases = []
    for seed in seeds(40):
        acc, sums, g, hs, mult, shift, bits = attn_out_input(seed)
        cases.append(attn_out_case(acc, sums, g, hs, mult, shift, bits,
                                   f"seed={seed} g={g} hs={hs} mult={mult} shift={shift} bits={bits}"))
    for args in attn_out_edges():
        cases.append(attn_out_case(*args))
    return cases


def attn_out_case(acc, sums, g, hs, mult, shift, bits, label):
    c = Case("attn_out_i8", label)
    out = c.out(np.full(g * hs + 4, 99, np.int8))
    c.call("attn_out_i8", out, c.arr(acc), c.arr(sums), g, hs, mult, shift, bits)
    c.expect(out, np.concatenate([K.attn_out(acc, sums, mult, shift, bits).reshape(-1), np.full(4, 99)]), "out")
    return c


def gen_zero():
    cases = []
    for n in (1, 7, 300, 4099):
        c = Case("zero_i32", f"n={n}")
        x = c.out(np.full(n + 4, -5, np.int32))
        c.call("zero_i32", x, n)
        c.expect(x, np.concatenate([np.zeros(n), np.full(4, -5)]), "x")
        cases.append(c)
    return cases


def gen_attention_tiled():
    """The tiled kernels composed as the generated code composes them, K/V in place or DMA'd into dense tiles."""
    cases = []
    for pos in TILED_POS:
        for shape in TILED_SHAPES:
            for T_ in TILED_T:
                a, T = tiled_case(pos, shape, T_)
                want = K.attention(**a)
                if (pos, T_) in ((37, 7), (300, 64)):  # the twin composition agrees too
                    np.testing.assert_array_equal(twin_attention_tiled(a, T), want)
                for dma in (0, 1):
                    cases.append(attention_tiled_case(a, T, dma, want))
                    if a["n_kv_heads"] > 1:  # kv heads 3 at a time (a last group of fewer for 4 or 8)
                        cases.append(attention_tiled_case(a, T, dma, want, lanes=3))
    for edge in ("ties_pos0", "ties_pos1", "acc_min", "bits8_ties", "exp_steps"):  # as attention_i8's edges
        a = attention_edge(edge)
        cases.append(attention_tiled_case(a, 7, 1, K.attention(**a), f" edge {edge}"))
    return cases


def attention_tiled_case(a, T, dma, want, suffix="", lanes=1):
    pos, n_kv_heads, hs, nh = a["pos"], a["n_kv_heads"], a["head_size"], a["n_heads"]
    n, bits = pos + 1, table_bits(a["table"])
    g, stride = nh // n_kv_heads, pos + 4
    c = Case("attention_tiled", f"pos={pos} heads={nh} kv={n_kv_heads} hs={hs} T={T} dma={dma} bits={bits} "
                                f"lanes={lanes}{suffix}")
    out = c.out(np.full(nh * hs, 99, np.int8))
    scores = c.out(np.full((lanes, g, stride), POISON32, np.int32))
    max_ = c.out(np.full((lanes, g), 2**30, np.int32))
    c.call("dma_reset_counters")
    c.call("attention_tiled", out, c.arr(a["q"]), c.arr(a["k_cache"][:n]), c.arr(a["v_cache"][:n]),
           scores, stride, c.arr(np.full(lanes * g * hs, 12345, np.int32)), c.arr(np.full(lanes * g, -5, np.int32)),
           max_, c.arr(np.zeros(min(T, n) * hs * lanes, np.int8)), c.arr(np.zeros(1, np.uint32)), pos, nh,
           n_kv_heads, hs, a["score_mult"], a["score_shift"], a["score_cut"], a["out_mult"], a["out_shift"],
           c.arr(a["table"]), bits, T, dma, lanes)
    counters = c.call("dma_counters")
    c.expect(out, want, "out")
    n_tiles = -(-n // T)
    bytes_, transfers = (2 * n_kv_heads * n * hs, 2 * -(-n_kv_heads // lanes) * n_tiles) if dma else (0, 0)
    c.expect_ret(counters, transfers << 32 | bytes_, "dma counters")
    # the last kv head's lane ends with its scores and max; poison past pos stays
    kh = n_kv_heads - 1
    lane = kh - kh // lanes * lanes
    k = a["k_cache"][:n, kh * hs:(kh + 1) * hs]
    s, m = twin_scores_max(a["q"].reshape(n_kv_heads, -1)[kh], k)
    c.checks.append(lambda r: np.testing.assert_array_equal(r.arrays[scores.idx][lane, :, :n], s,
                                                            err_msg="scores (last kv head's)"))
    c.checks.append(lambda r: (np.testing.assert_array_equal(r.arrays[scores.idx][:, :, n:], POISON32,
                                                             err_msg="scores poison past pos")))
    c.checks.append(lambda r: np.testing.assert_array_equal(r.arrays[max_.idx][lane], m, err_msg="max (last kv head's)"))
    return c


# ----------------------------------------------------------------------------------- swiglu, residual, ...


def gen_swiglu():
    cases = []
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 1000))
        gate, up = rand_i8(rng, n), rand_i8(rng, n)
        table = silu_table(rng) if seed % 3 else rng.integers(-32768, 32768, 256, dtype=np.int16)
        real = float(wide_reals(rng, 1)[0]) if seed % 2 else 10 ** rng.uniform(-6.5, -4.5)
        mult, shift = K.quantize_multiplier(real) if seed % 5 != 2 else (int(rng.integers(1, 8)), int(rng.integers(1, 4)))
        if seed == 0:
            gate[:2], up[:2], table[0], table[255] = [-128, 127], [-128, -128], -32768, 32767
        c = Case("swiglu_i8", f"seed={seed} n={n} mult={mult} shift={shift}")
        h = c.out(np.full(n, 99, np.int8))
        c.call("swiglu_i8", h, c.arr(gate), c.arr(up), c.arr(table), mult, shift, n)
        c.expect(h, K.swiglu(gate, up, table, mult, shift), "h")
        cases.append(c)
    rng = np.random.default_rng(777)  # (mult, shift) at the edges of the C's one-high-multiply form and past them
    for mult, shift in SWIGLU_EDGES:
        n = 300
        gate, up, table = rand_i8(rng, n), rand_i8(rng, n), rng.integers(-32768, 32768, 256, dtype=np.int16)
        gate[:4], up[:4], table[0], table[255] = [-128, -128, 127, 127], [-128, 127, -128, 127], -32768, 32767
        c = Case("swiglu_i8", f"edge mult={mult} shift={shift}")
        h = c.out(np.full(n, 99, np.int8))
        c.call("swiglu_i8", h, c.arr(gate), c.arr(up), c.arr(table), mult, shift, n)
        c.expect(h, K.swiglu(gate, up, table, mult, shift), "h")
        cases.append(c)
    return cases


def gen_swiglu_dyn():
    from test_kernels_c import swiglu_dyn_cases
    cases = []
    for gate, up, table, label in swiglu_dyn_cases():
        n = gate.size
        c = Case("swiglu_dyn_i8", label)
        h, sh = c.out(np.full(n, 99, np.int8)), c.out(np.zeros(1, np.uint8))
        c.call("swiglu_dyn_i8", h, sh, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), 40, n)
        want, want_shift = K.swiglu_dyn(gate, up, table, 40)
        c.expect(h, want, "h")
        c.expect(sh, np.array([want_shift], np.uint8), "shift")
        cases.append(c)
        cases.append(swiglu_passes_case("swiglu_dyn_i8", label, gate, up, table, 40, len(cases),
                                        np.zeros(1, np.uint8), want, np.array([want_shift], np.uint8)))
    return cases


def swiglu_passes_case(kernel, label, gate, up, table, base, i, side, want_h, want_side):
    """kernel's two passes (_span, then _out) on 2..8 cores (by i), run one core after another (the outputs' core
    order reversed) as the host runs the shares: the same integers as one call, whatever the cores."""
    n, cores = gate.size, 2 + i % 7
    c = Case(f"{kernel}_span", f"{label} cores={cores}")
    h, out, spans = c.out(np.full(n, 99, np.int8)), c.out(side), c.arr(np.full(2 * cores, 12345, np.int32))
    args = (h, out, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), base, n, spans)
    cuts = np.sort(np.random.default_rng(i).integers(0, n + 1, cores - 1)).tolist()  # any shares, empty ones too
    shares = list(zip([0] + cuts, cuts + [n]))
    for core in range(cores):
        c.call(f"{kernel}_span", *args, core, cores, *shares[core])
    for core in reversed(range(cores)):
        c.call(f"{kernel}_out", *args, core, cores, *shares[core])
    c.expect(h, want_h, "h")
    c.expect(out, want_side, "shift" if kernel == "swiglu_dyn_i8" else "tok")
    return c


def gen_rmsnorm_tok():
    """rmsnorm_tok_i8_part in two shares, as the cores take them (test_pertoken.py's cases)."""
    from test_pertoken import rmsnorm_tok_cases
    cases = []
    for x, gain, gs, eps, base, label in rmsnorm_tok_cases():
        dim = x.size
        c = Case("rmsnorm_tok_i8_part", label)
        y, tok = c.out(np.full(dim, 99, np.int8)), c.out(np.zeros(2, np.int32))
        xp, gp, cut = c.arr(x), c.arr(gain), dim // 3
        for lo, hi in ((cut, dim), (0, cut)) if cut else ((0, dim),):
            c.call("rmsnorm_tok_i8_part", y, tok, xp, gp, gs, eps, base, dim, lo, hi)
        want_y, want_tok = K.rmsnorm_tok(x, gain, gs, eps, base)
        c.expect(y, want_y, "y")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
    return cases


def gen_rmsnorm_tok_passes():
    """rmsnorm_tok_i8 in one call, and its two passes on 2..8 cores with any shares, empty ones too (test_pertoken.py's
    cases and shares), the second pass's cores in reverse order."""
    from test_pertoken import random_shares, rmsnorm_tok_cases
    cases = []
    for i, (x, gain, gs, eps, base, label) in enumerate(rmsnorm_tok_cases()):
        dim, cores = x.size, 2 + i % 7
        want_y, want_tok = K.rmsnorm_tok(x, gain, gs, eps, base)
        c = Case("rmsnorm_tok_i8", label)
        y, tok = c.out(np.full(dim, 99, np.int8)), c.out(np.zeros(2, np.int32))
        c.call("rmsnorm_tok_i8", y, tok, c.arr(x), c.arr(gain), gs, eps, base, dim)
        c.expect(y, want_y, "y")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
        c = Case("rmsnorm_tok_i8_span", f"{label} cores={cores}")
        y, tok, spans = c.out(np.full(dim, 99, np.int8)), c.out(np.zeros(2, np.int32)), \
            c.arr(np.full(2 * cores, 12345, np.int32))
        args, shares = (y, tok, c.arr(x), c.arr(gain), gs, eps, base, dim, spans), random_shares(dim, cores, i)
        for core in range(cores):
            c.call("rmsnorm_tok_i8_span", *args, core, cores, *shares[core])
        for core in reversed(range(cores)):
            c.call("rmsnorm_tok_i8_out", *args, core, cores, *shares[core])
        c.expect(y, want_y, "y")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
    return cases


def gen_swiglu_tok():
    from test_pertoken import swiglu_tok_cases
    cases = []
    for gate, up, table, base, label in swiglu_tok_cases():
        n = gate.size
        c = Case("swiglu_tok_i8", label)
        h, tok = c.out(np.full(n, 99, np.int8)), c.out(np.zeros(2, np.int32))
        c.call("swiglu_tok_i8", h, tok, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), base, n)
        want_h, want_tok = K.swiglu_tok(gate, up, table, base)
        c.expect(h, want_h, "h")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
        cases.append(swiglu_passes_case("swiglu_tok_i8", label, gate, up, table, base, len(cases),
                                        np.zeros(2, np.int32), want_h, np.array(want_tok, np.int32)))
    return cases


def gen_swiglu16_tok():
    """swiglu16_tok_i8 in one call, and its two passes on 2..8 cores (test_pertoken.py's cases)."""
    from test_pertoken import swiglu16_tok_cases
    cases = []
    for gate, up, table, base, label in swiglu16_tok_cases():
        n = gate.size
        c = Case("swiglu16_tok_i8", label)
        h, tok = c.out(np.full(n, 99, np.int8)), c.out(np.zeros(2, np.int32))
        c.call("swiglu16_tok_i8", h, tok, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), base, n)
        want_h, want_tok = K.swiglu_tok_g16(gate, up, table, base)
        c.expect(h, want_h, "h")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
        cases.append(swiglu_passes_case("swiglu16_tok_i8", label, gate, up, table, base, len(cases),
                                        np.zeros(2, np.int32), want_h, np.array(want_tok, np.int32)))
    return cases


def gen_gemv_wide(fn: str):
    """gemv_x16_tok_i16 / gemv_w16_tok_i32 (test_wide.py's cases, the extremes the checker admits): kernels.linear_tok."""
    from test_wide import gemv_w16_cases, gemv_x16_cases
    from deeploy_dsl.kernels.layout import w16_bytes
    w16 = fn == "gemv_w16_tok_i32"
    dt, lim = (np.int32, K.I32) if w16 else (np.int16, K.I16)
    cases = []
    for x, w, mult, tok, label in (gemv_w16_cases() if w16 else gemv_x16_cases()):
        n_out, n_in = w.shape
        c = Case(fn, label)
        y = c.out(np.full(n_out, 99, dt))
        wb = w16_bytes(block_rows(w), {}).reshape(-1) if w16 else block_rows(w).reshape(-1)
        c.call(fn, y, c.arr(x), c.arr(wb), c.arr(mult), c.arr(tok), n_in, n_out)
        c.expect(y, K.linear_tok(x, w, mult, tok, *lim), "y")
        cases.append(c)
    return cases


def gen_swiglu_wide(g16: bool):
    """swiglu_tok_i16 / swiglu16_tok_i16 in one call, and their two passes on 2..8 cores (test_wide.py's cases)."""
    from test_wide import swiglu_wide_cases
    fn, twin = ("swiglu16_tok_i16", K.swiglu_tok_g16) if g16 else ("swiglu_tok_i16", K.swiglu_tok)
    cases = []
    for i, (gate, up, table, qmax, base, label) in enumerate(swiglu_wide_cases(g16)):
        n = gate.size
        want_h, want_tok = twin(gate, up, table, base, qmax)
        c = Case(fn, f"{label} qmax={qmax}")
        h, tok = c.out(np.full(n, 99, np.int16)), c.out(np.zeros(2, np.int32))
        c.call(fn, h, tok, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), qmax, base, n)
        c.expect(h, want_h, "h")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
        cores = 2 + i % 7
        c = Case(f"{fn}_span", f"{label} qmax={qmax} cores={cores}")
        h, tok, spans = c.out(np.full(n, 99, np.int16)), c.out(np.zeros(2, np.int32)), \
            c.arr(np.full(2 * cores, 12345, np.int32))
        args = (h, tok, c.arr(np.zeros(n, np.int32)), c.arr(gate), c.arr(up), c.arr(table), qmax, base, n, spans)
        cuts = np.sort(np.random.default_rng(i).integers(0, n + 1, cores - 1)).tolist()
        shares = list(zip([0] + cuts, cuts + [n]))
        for core in range(cores):
            c.call(f"{fn}_span", *args, core, cores, *shares[core])
        for core in reversed(range(cores)):
            c.call(f"{fn}_out", *args, core, cores, *shares[core])
        c.expect(h, want_h, "h")
        c.expect(tok, np.array(want_tok, np.int32), "tok")
        cases.append(c)
    return cases


def gen_gemv_tok(bits, q4):
    """gemv_tok_iN / gemv_q4_tok_iN (test_pertoken.py's cases): the integers of kernels.linear_tok."""
    from test_pertoken import gemv_tok_cases, q4_weights
    dt, lim = LINEAR_DTYPES[bits]
    fn = f"gemv{'_q4' if q4 else ''}_tok_i{bits}"
    cases = []
    for x, w, mult, tok, group, label in gemv_tok_cases(q4):
        n_out, n_in = w.shape
        c = Case(fn, label)
        y = c.out(np.full(n_out, 99, dt))
        if q4:
            wq, wint = q4_weights(w, group)
            c.call(fn, y, c.arr(x), c.arr(wq), c.arr(mult), c.arr(tok), n_in, n_out, group)
        else:
            wint = w
            c.call(fn, y, c.arr(x), c.arr(np.asarray(block_rows(w)).reshape(-1)), c.arr(mult), c.arr(tok), n_in, n_out)
        c.expect(y, K.linear_tok(x, wint, mult, tok, *lim), "y")
        cases.append(c)
    return cases


# low zero bits in mult, shifts just inside / outside the 32-bit forms (dpl_rq32: |acc| <= 2^22 for swiglu)
SWIGLU_EDGES = [(3 << 20, 44), (1 << 30, 44), (1 << 30, 30), (2**31 - 1, 25), (2**31 - 1, 24), (2**31 - 1, 62),
                (5, 33), (2**31 - 1, 33), (1 << 24, 45)]
EMBED_EDGES = [(1 << 30, 31), (3 << 26, 33), (2**31 - 1, 8), (2**31 - 1, 10), (5 << 24, 50), (1, 62), (2**31 - 1, 62),
               (1 << 30, 12)]


def gen_residual_add():
    cases = []
    for seed in seeds(50):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 2000))
        a, b = (rng.integers(-32768, 32768, n, dtype=np.int16) for _ in range(2))
        a[:4], b[:4] = [32767, -32768, 32767, -32768], [32767, -32768, -32768, 1]
        want = K.residual_add(a, b)
        c = Case("residual_add_i16", f"seed={seed} n={n}")
        y, ap, bp = c.out(np.zeros(n, np.int16)), c.out(a), c.arr(b)
        c.call("residual_add_i16", y, ap, bp, n)
        c.call("residual_add_i16", ap, ap, bp, n)  # in place
        c.expect(y, want, "y")
        c.expect(ap, want, "y (in place)")
        cases.append(c)
    return cases


def gen_embed():
    cases = []
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        vocab, dim = int(rng.integers(1, 600)), int(rng.integers(1, 300))
        table = rand_i8(rng, (vocab, dim))
        table[0, :2] = [-128, 127]
        reals = wide_reals(rng, vocab) if seed % 2 else 10 ** rng.uniform(0, 2.4, vocab)
        mult, shift = qm_arrays(reals) if seed % 5 != 2 else tie_heavy(rng, vocab)
        c = Case("embed_i16", f"seed={seed} vocab={vocab} dim={dim}")
        tp, mp, sp = c.arr(table), c.arr(mult), c.arr(shift)
        for token in sorted({0, vocab - 1, int(rng.integers(0, vocab))}):
            x = c.out(np.zeros(dim + 4, np.int16))  # writing past dim would show in the 4 extra zeros
            c.call("embed_i16", x, tp + token * dim, mp + token, sp + token, dim)
            c.expect(x, np.concatenate([K.embed(table[token], mult[token], shift[token]), np.zeros(4)]),
                     f"x of token {token}")
        cases.append(c)
    row = np.arange(-128, 128).astype(np.int8)  # every int8 value, under multipliers at the C's edges
    for mult, shift in EMBED_EDGES:
        c = Case("embed_i16", f"edge mult={mult} shift={shift}")
        x = c.out(np.zeros(256, np.int16))
        c.call("embed_i16", x, c.arr(row), c.arr(np.array([mult], np.int32)), c.arr(np.array([shift], np.uint8)), 256)
        c.expect(x, K.embed(row, mult, shift), "x")
        cases.append(c)
    return cases


def gen_argmax():
    cases = []
    for seed in seeds(100):
        rng = np.random.default_rng(seed)
        n = int(rng.integers(1, 40000))
        x = rng.integers(-(2**31), 2**31, n, dtype=np.int32) if seed % 2 else rng.integers(-3, 3, n, dtype=np.int32)
        cases.append(argmax_case(x, f"seed={seed} n={n}"))
    for x in ([5], [7, 7, 7], [-(2**31)] * 5, [1, 3, 3, 2], [0, 0, 2**31 - 1], [2**31 - 1, 2**31 - 1]):
        cases.append(argmax_case(np.array(x, np.int32), f"edge {x}"))
    return cases


def argmax_case(x, label):
    c = Case("argmax_i32", label)
    i = c.call("argmax_i32", c.arr(x), x.size)
    want = K.argmax(x)
    assert want == int(np.flatnonzero(x == x.max())[0])
    c.expect_ret(i, want, "argmax")
    return c


def gen_sample():
    """The sampler over logit vectors like the model's (int32 near 2^24) and the edges: one huge logit, all equal,
    p = 1 (temperature only), a tiny p (the top token), mult 0 (argmax); several draws on one state each."""
    cases = []
    for seed in seeds(40):
        rng = np.random.default_rng(seed)
        n = int(rng.choice([2, 7, 512, 513, 2048]))
        x = (rng.standard_normal(n) * float(rng.choice([1e3, 1e5, 1e6, 4e6]))).astype(np.int32)
        if seed % 5 == 0:
            x[rng.integers(n)] = 2**31 - 1
        if seed % 7 == 0:
            x[:] = int(x[0])
        mult = int(rng.choice([0, 1, 37, 15_000, 250_000, 2**31 - 1]))
        p = int(rng.choice([1, 3000, 58_982, 65_535, 65_536]))
        cases.append(sample_case(x, mult, p, int(rng.integers(0, 2**32)), f"seed={seed} n={n} mult={mult} p={p}"))
    cases.append(sample_case(np.array([-(2**31), 2**31 - 1], np.int32), 2**31 - 1, 65_536, 1, "extremes"))
    return cases


def sample_case(x, mult, p, seed, label, draws: int = 3):
    c = Case("sample_top_p_i32", label)
    xs, table = c.arr(x), c.arr(S.exp2_q15())
    e, state = c.out(np.zeros(x.size, np.uint32)), c.out(np.array([S.rng_seed(seed)], np.uint32))
    st = S.rng_seed(seed)
    for _ in range(draws):
        want, st = S.sample(x, mult, p, st)
        c.expect_ret(c.call("sample_top_p_i32", e, xs, x.size, mult, p, table, state), want, "token")
    c.expect(state, np.array([st], np.uint32), "xorshift state")
    kept = np.zeros(x.size, np.uint32)
    if mult:
        pk = S.packed(x, mult)
        kept[:len(pk)] = pk
    c.expect(e, kept, "packed exps")
    return c


# ------------------------------------------------------------------------------------------- dma, tiles


def gen_dma():
    cases = []
    # 1-D transfers on one job, counters after each, a zero-byte transfer, a second job, reset
    rng = np.random.default_rng(0)
    src = rng.integers(0, 256, 2000, dtype=np.uint8)
    dst0 = np.full(2100, 0xAB, np.uint8)
    want = dst0.copy()
    c = Case("dma", "1-D and counters")
    sp, dp, job, other = c.arr(src), c.out(dst0), c.out(np.zeros(1, np.uint32)), c.out(np.zeros(1, np.uint32))
    c.call("dma_reset_counters")
    c.expect_ret(c.call("dma_counters"), 0, "counters after reset")
    moved = 0
    for i, (s0, d0, n) in enumerate([(0, 0, 1), (5, 100, 0), (17, 200, 7), (1000, 300, 999), (3, 1500, 256)]):
        c.expect_ret(c.call("dma_start", job, dp + d0, sp + s0, n), i + 1, f"pending after transfer {i}")
        want[d0:d0 + n] = src[s0:s0 + n]
        moved += n
        c.expect_ret(c.call("dma_counters"), (i + 1) << 32 | moved, f"counters after transfer {i}")
    c.expect_ret(c.call("dma_wait", job), 0, "pending after wait")
    c.expect_ret(c.call("dma_start", other, dp, sp, 10), 1, "second job pending")
    c.expect_ret(c.call("dma_counters"), 6 << 32 | (moved + 10), "counters are global")
    c.call("dma_wait", other)
    want[:10] = src[:10]
    c.call("dma_reset_counters")
    c.expect_ret(c.call("dma_counters"), 0, "counters after the second reset")
    c.expect(dp, want, "dst")
    c.expect(job, [0], "job")
    c.expect(other, [0], "other job")
    cases.append(c)
    # 2-D transfers: strided rows into a dense tile or a strided destination
    for seed in seeds(30):
        rng = np.random.default_rng(seed)
        rows = 0 if seed == 1 else 1 if seed % 5 == 0 else int(rng.integers(1, 40))
        row_bytes = 0 if seed == 2 else int(rng.integers(1, 64))
        src_stride = row_bytes + int(rng.integers(0, 3)) * int(rng.integers(0, 50))
        dst_stride = row_bytes if seed % 3 == 0 else row_bytes + int(rng.integers(0, 20))
        src = rng.integers(0, 256, max(rows, 1) * max(src_stride, 1) + 8, dtype=np.uint8)
        s0 = int(rng.integers(0, 8))
        dst0 = np.full(max(rows, 1) * max(dst_stride, 1) + 8, 0xAB, np.uint8)
        want = dst0.copy()
        for r in range(rows):
            want[r * dst_stride:r * dst_stride + row_bytes] = src[s0 + r * src_stride:s0 + r * src_stride + row_bytes]
        c = Case("dma", f"2-D seed={seed} rows={rows} row_bytes={row_bytes}")
        dp, job = c.out(dst0), c.out(np.zeros(1, np.uint32))
        c.call("dma_reset_counters")
        c.expect_ret(c.call("dma_start_2d", job, dp, c.arr(src) + s0, rows, row_bytes, src_stride, dst_stride), 1,
                     "pending")
        c.expect_ret(c.call("dma_counters"), 1 << 32 | rows * row_bytes, "counters")
        c.expect_ret(c.call("dma_wait", job), 0, "pending after wait")
        c.expect(dp, want, "dst (gaps between rows untouched)")
        cases.append(c)
    return cases


def gen_tiles():
    """linear_tile_load / kv_tile_load against plain numpy slicing."""
    cases = []
    for seed in seeds(40):
        # weights in GEMV blocks of R rows (layout.block_rows): a tile starts on a block and moves whole,
        # zero-padded blocks; multipliers and shifts move row by row
        rng = np.random.default_rng(seed)
        n_out, n_in = int(rng.integers(1, 200)), int(rng.integers(1, 300))
        blocks = n_blocks(n_out)
        b0 = blocks - 1 if seed % 4 == 1 else int(rng.integers(0, blocks))
        r0 = b0 * ROWS_PER_BLOCK
        rows = min(n_out - r0, ROWS_PER_BLOCK * int(rng.integers(1, blocks - b0 + 1)))
        padded = -(-rows // ROWS_PER_BLOCK) * ROWS_PER_BLOCK
        w, mult, shift = rand_i8(rng, (n_out, n_in)), rng.integers(0, 2**31, n_out).astype(np.int32), \
            rng.integers(0, 63, n_out).astype(np.uint8)
        wb = block_rows(w).reshape(-1)
        cap = padded + int(rng.integers(0, 3))  # tile buffers may be larger than the tile
        c = Case("linear_tile_load", f"seed={seed} n_out={n_out} n_in={n_in} r0={r0} rows={rows}")
        wt, mt, st = (c.out(np.full(cap * n_in, 0x5A, np.int8)), c.out(np.full(cap, POISON32, np.int32)),
                      c.out(np.full(cap, 0xEE, np.uint8)))
        job = c.out(np.zeros(1, np.uint32))
        c.call("dma_reset_counters")
        c.expect_ret(c.call("linear_tile_load", job, wt, mt, st, c.arr(wb), c.arr(mult), c.arr(shift), r0, rows, n_in),
                     3, "pending (three transfers)")
        c.expect_ret(c.call("dma_counters"), 3 << 32 | padded * n_in + rows * 4 + rows, "counters")
        c.expect_ret(c.call("dma_wait", job), 0, "pending after wait")
        c.expect(wt, np.concatenate([wb[r0 * n_in:(r0 + padded) * n_in], np.full((cap - padded) * n_in, 0x5A)]),
                 "w tile")
        c.expect(mt, np.concatenate([mult[r0:r0 + rows], np.full(cap - rows, POISON32)]), "mult tile")
        c.expect(st, np.concatenate([shift[r0:r0 + rows], np.full(cap - rows, 0xEE)]), "shift tile")
        cases.append(c)
    for seed in seeds(40):
        rng = np.random.default_rng(seed)
        ctx, n_kv, hs = int(rng.integers(1, 100)), int(rng.choice([1, 2, 4, 8])), int(rng.choice([2, 8, 16, 64]))
        kv_dim, kh = n_kv * hs, int(rng.integers(0, n_kv))
        n_t = 1 if seed % 4 == 0 else ctx if seed % 4 == 1 else int(rng.integers(1, ctx + 1))
        t0 = int(rng.integers(0, ctx - n_t + 1))
        cache = rand_i8(rng, (ctx, kv_dim))
        c = Case("kv_tile_load", f"seed={seed} ctx={ctx} kv={n_kv} hs={hs} kh={kh} t0={t0} n_t={n_t}")
        tile, job = c.out(np.full(n_t * hs + 5, 0x5A, np.int8)), c.out(np.zeros(1, np.uint32))
        c.call("dma_reset_counters")
        c.expect_ret(c.call("kv_tile_load", job, tile, c.arr(cache) + kh * hs, t0, n_t, hs, kv_dim), 1, "pending")
        c.expect_ret(c.call("dma_counters"), 1 << 32 | n_t * hs, "counters")
        c.call("dma_wait", job)
        c.expect(tile, np.concatenate([cache[t0:t0 + n_t, kh * hs:(kh + 1) * hs].reshape(-1), np.full(5, 0x5A)]),
                 "tile")
        cases.append(c)
    return cases


GENERATORS: dict[str, Callable[[], list[Case]]] = {
    "linear_i8": lambda: gen_linear(8),
    "linear_i16": lambda: gen_linear(16),
    "linear_i32": lambda: gen_linear(32),
    "rmsnorm_i8": gen_rmsnorm,
    "rope_i8": gen_rope,
    "attention_i8": gen_attention,
    "attn_scores_i8": lambda: gen_attn_scores("attn_scores_i8", 60, 0),
    "rope_i16": gen_rope_i16,
    "attention_k16": gen_attention_k16,
    "attn_scores_k16": lambda: gen_attn_scores("attn_scores_k16", 40, 700),
    "rope_q12": gen_rope_q12,
    **{k: (lambda k=k: gen_attention_wide(k)) for k in WIDE_ATTENTION},
    **{k: (lambda k=k, i=i: gen_attn_scores(k, 30, 1400 + 100 * i)) for i, k in enumerate(SCORE_FORMS)
       if k not in ("attn_scores_i8", "attn_scores_k16")},
    "attn_exp_av_i8": gen_attn_exp_av,
    "attn_out_i8": gen_attn_out,
    "zero_i32": gen_zero,
    "attention_tiled": gen_attention_tiled,
    "swiglu_i8": gen_swiglu,
    "swiglu_dyn_i8": gen_swiglu_dyn,
    "rmsnorm_tok_i8_part": gen_rmsnorm_tok,
    "swiglu_tok_i8": gen_swiglu_tok,
    "swiglu16_tok_i8": gen_swiglu16_tok,
    "gemv_x16_tok_i16": lambda: gen_gemv_wide("gemv_x16_tok_i16"),
    "gemv_w16_tok_i32": lambda: gen_gemv_wide("gemv_w16_tok_i32"),
    "swiglu_tok_i16": lambda: gen_swiglu_wide(False),
    "swiglu16_tok_i16": lambda: gen_swiglu_wide(True),
    "rmsnorm_tok_i8": gen_rmsnorm_tok_passes,
    "residual_add_i16": gen_residual_add,
    "embed_i16": gen_embed,
    "argmax_i32": gen_argmax,
    "sample_top_p_i32": gen_sample,
    "dma": gen_dma,
    "tiles": gen_tiles,
}


# ------------------------------------------------------------------------------------------- fixtures


def gemv_layout():
    """deeploy_dsl.kernels.layout when the blocked GEMV (kernels_c/gemv.c) and its layout are both there, else None."""
    if not ((KDIR / "gemv.c").exists() and (KDIR / "gemv.h").exists()):
        return None
    try:
        from deeploy_dsl.kernels import layout
    except ImportError:
        return None
    return layout if hasattr(layout, "block_rows") and hasattr(layout, "ROWS_PER_BLOCK") else None


@dataclass
class Harness:
    elf: Path
    gemv: bool  # built with kernels_c/gemv.c
    gemv_error: str  # why gemv.c could not be built in ("" if it was, or was not tried)


def build(out: Path, gemv: bool) -> subprocess.CompletedProcess:
    srcs = SOURCES + (["gemv.c", "gemv_tok.c"] if gemv else [])
    cmd = [GCC, *RV_CFLAGS, *(["-DDPL_HAVE_GEMV"] if gemv else []), *RV_LDFLAGS, "-o", str(out), str(HARNESS),
           *(str(KDIR / f) for f in srcs), f"-I{KDIR}"]
    r = subprocess.run(cmd, capture_output=True, text=True)
    r.args = " ".join(cmd)
    return r


@pytest.fixture(scope="session")
def harness(tmp_path_factory) -> Harness:
    out = tmp_path_factory.mktemp("rv32_harness") / "h.elf"
    gemv_error = ""
    if gemv_layout() is not None:  # a broken gemv.c fails the gemv tests only
        r = build(out, gemv=True)
        if r.returncode == 0 and not r.stderr:
            return Harness(out, True, "")
        gemv_error = f"{r.args}\n{r.stderr}"
    r = build(out, gemv=False)
    if r.returncode != 0 and "picolibc.specs" in r.stderr:
        pytest.skip(f"picolibc for {GCC} is missing (Debian: apt-get install -y {PACKAGES})")
    assert r.returncode == 0 and not r.stderr, f"{r.args}\n{r.stderr}"
    return Harness(out, False, gemv_error)


@pytest.fixture(scope="session")
def rv32_results(harness, tmp_path_factory) -> dict[str, list[tuple[Case, Result]]]:
    gens = dict(GENERATORS)
    if harness.gemv:
        layout = gemv_layout()
        gens.update({f"gemv_i{b}": (lambda b=b: gen_gemv(b, layout)) for b in (8, 16, 32)})
        gens.update({f"gemv_q4_i{b}": (lambda b=b: gen_gemv_q4(b, layout)) for b in (8, 16, 32)})
        gens.update({f"gemv{'_q4' if q else ''}_tok_i{b}": (lambda b=b, q=q: gen_gemv_tok(b, q))
                     for b in (8, 16, 32) for q in (False, True)})
    cases = [c for gen in gens.values() for c in gen()]
    # balance the shards by bytes shipped (a fair proxy for the work here), heaviest cases first
    shards: list[list[int]] = [[] for _ in range(N_SHARDS)]
    load = [0] * N_SHARDS
    for i in sorted(range(len(cases)), key=lambda i: -sum(a.nbytes for a in cases[i].arrays)):
        s = load.index(min(load))
        shards[s].append(i)
        load[s] += sum(a.nbytes for a in cases[i].arrays) + 64 * len(cases[i].calls)
    work = tmp_path_factory.mktemp("rv32_jobs")
    with ThreadPoolExecutor(N_SHARDS) as pool:
        outs = list(pool.map(lambda s: run_qemu(harness.elf, work / f"shard{s}", [cases[i] for i in shards[s]]),
                             range(N_SHARDS)))
    by_index = {i: r for s, shard in enumerate(shards) for i, r in zip(shard, outs[s])}
    results: dict[str, list[tuple[Case, Result]]] = {}
    for i, c in enumerate(cases):
        results.setdefault(c.kernel, []).append((c, by_index[i]))
    return results


# ---------------------------------------------------------------------------------------------- tests


def test_harness_has_no_soft_float(harness):
    syms = subprocess.run([NM, str(harness.elf)], capture_output=True, text=True, check=True).stdout
    assert "linear_i8" in syms and "attention_i8" in syms
    bad = [m.group(0).strip() for m in SOFT_FLOAT.finditer(syms)]
    assert not bad, f"soft-float routines in the RV32 image: {bad}"


KERNEL_NAMES = ["linear_i8", "linear_i16", "linear_i32", "rmsnorm_i8", "rope_i8", "attention_i8", "attn_scores_i8",
                "rope_i16", "attention_k16", "attn_scores_k16", "rope_q12", *WIDE_ATTENTION,
                "attn_scores_q12", "attn_scores_q12k16", "attn_scores_q16",
                "attn_exp_av_i8", "attn_out_i8", "zero_i32", "attention_tiled", "swiglu_i8", "swiglu_dyn_i8",
                "rmsnorm_tok_i8_part", "swiglu_tok_i8", "swiglu_dyn_i8_span", "swiglu_tok_i8_span",
                "swiglu16_tok_i8", "swiglu16_tok_i8_span", "rmsnorm_tok_i8", "rmsnorm_tok_i8_span",
                "gemv_x16_tok_i16", "gemv_w16_tok_i32", "swiglu_tok_i16", "swiglu_tok_i16_span", "swiglu16_tok_i16",
                "swiglu16_tok_i16_span",
                "residual_add_i16", "embed_i16", "argmax_i32", "sample_top_p_i32", "dma", "linear_tile_load", "kv_tile_load"]


def check_runs(kernel, runs):
    assert len(runs) >= 4, f"only {len(runs)} cases for {kernel}"
    failures = []
    for i, (case, res) in enumerate(runs):
        try:
            case.verify(res)
        except AssertionError as e:
            failures.append(f"{kernel} case {i} ({case.label}): {e}")
    if failures:
        pytest.fail(f"{len(failures)} of {len(runs)} RV32 cases differ from the numpy twin:\n\n" +
                    "\n\n".join(failures[:5]))


@pytest.mark.parametrize("kernel", KERNEL_NAMES)
def test_kernel_matches_twin_on_rv32(rv32_results, kernel):
    check_runs(kernel, rv32_results.get(kernel, []))


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_gemv_matches_twin_on_rv32(harness, rv32_results, bits):
    if not (KDIR / "gemv.c").exists():
        pytest.skip("kernels_c/gemv.c is not there")
    if gemv_layout() is None:
        pytest.skip("kernels_c/gemv.c is there but deeploy_dsl/kernels/layout.py (block_rows, ROWS_PER_BLOCK) is not")
    assert harness.gemv, f"kernels_c/gemv.c does not build for RV32:\n{harness.gemv_error}"
    check_runs(f"gemv_i{bits}", rv32_results.get(f"gemv_i{bits}", []))


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_gemv_q4_matches_twin_on_rv32(harness, rv32_results, bits):
    assert harness.gemv, f"kernels_c/gemv.c does not build for RV32:\n{harness.gemv_error}"
    check_runs(f"gemv_q4_i{bits}", rv32_results.get(f"gemv_q4_i{bits}", []))


@pytest.mark.parametrize("bits", [8, 16, 32])
@pytest.mark.parametrize("q4", ["", "_q4"])
def test_gemv_tok_matches_twin_on_rv32(harness, rv32_results, bits, q4):
    """The consumer GEMVs of a per-token factor (test_pertoken.py)."""
    assert harness.gemv, f"kernels_c/gemv.c does not build for RV32:\n{harness.gemv_error}"
    check_runs(f"gemv{q4}_tok_i{bits}", rv32_results.get(f"gemv{q4}_tok_i{bits}", []))


def test_instruction_counts_grow_with_the_work(rv32_results):
    """minstret around each call (exact under -icount): at least one instruction per element or MAC, more for more."""
    zero = {c.label: int(r.instret[0]) for c, r in rv32_results["zero_i32"]}
    assert 4099 <= zero["n=4099"] and zero["n=300"] < zero["n=4099"]
    for c, r in rv32_results["linear_i8"]:
        n_out, n_in = c.arrays[2].shape
        assert int(r.instret[0]) >= n_in * n_out, c.label
