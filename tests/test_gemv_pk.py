"""gemv_pk_i8/i16/i32 and gemv_pk_tok_* (kernels_c/gemv.c, gemv_tok.c): two MACs per multiply on packed row pairs
(deeploy_dsl/kernels/packed.py) compute exactly the integers of twins.linear, for every int8 input: the layout and its
chunk schedules, the numpy twin's 32-bit arithmetic, the C on the host (ctypes) and on RV32 under QEMU, on random,
odd-sized and adversarial weights (whose bound forces chunks of one column) with inputs at the bound's edges."""
from __future__ import annotations

import ctypes
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels.layout import ROWS_PER_BLOCK as R, n_blocks  # noqa: E402
from deeploy_dsl.kernels.packed import (PK_LMAX, chunk_bounds, linear_pk, pk_acc, pk_pack, pk_row_bytes,  # noqa: E402
                                        pk_sched_bytes, pk_unpack, schedule)

KDIR = ROOT / "kernels_c"
CC = shutil.which("cc") or "gcc"
CFLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2", "-Wconversion", "-Wsign-conversion",
          "-Wshadow"]
RV_CC = "riscv64-unknown-elf-gcc"
RV_FLAGS = ["-march=rv32imac", "-mabi=ilp32", "-O2", "--specs=picolibc.specs", "--oslib=semihost", "--crt0=semihost",
            "-Wl,--defsym=__flash=0x80000000", "-Wl,--defsym=__flash_size=0x400000", "-Wl,--defsym=__ram=0x80400000",
            "-Wl,--defsym=__ram_size=0x400000"]
QEMU = ["qemu-system-riscv32", "-machine", "virt", "-bios", "none", "-nographic", "-icount", "shift=0",
        "-semihosting-config", "enable=on,target=native", "-kernel"]
OUT = {8: (np.int8, K.I8), 16: (np.int16, K.I16), 32: (np.int32, K.I32)}
SHAPES = [(1, 1), (3, 5), (8, 64), (13, 37), (172, 64), (64, 172), (9, 2), (17, 64), (20, 11), (4, 17)]


def edge_rows(n_in: int) -> np.ndarray:
    """Rows whose chunks reach the bound exactly: 127, 127, 2 sums to 256, so 128 * 256 = 2^15 (x = -128: a partial
    sum of exactly -2^15) and 127 * 258 = 32,766; all -128 (chunks of one column); all 127 (two columns, 32,258)."""
    return np.stack([np.resize([127, 127, 2], n_in), np.resize([-127, -127, -2], n_in), np.full(n_in, -128),
                     np.full(n_in, 127), np.resize([127, -128], n_in), np.resize([1, 2, 3, 4], n_in),
                     np.zeros(n_in), np.resize([-128, 127, 0], n_in)]).astype(np.int8)


def weights(kind: str, n_out: int, n_in: int, rng) -> np.ndarray:
    if kind == "random":
        return rng.integers(-128, 128, (n_out, n_in)).astype(np.int8)
    if kind == "small":  # long chunks: PK_LMAX columns
        return rng.integers(-6, 7, (n_out, n_in)).astype(np.int8)
    return np.resize(edge_rows(n_in), (n_out, n_in)).astype(np.int8)  # adversarial


def inputs(w: np.ndarray, rng) -> list[np.ndarray]:
    """Random x, the extremes, and x sign-matched to row 0 and to row 1 (their partial sums at the bound)."""
    n_in = w.shape[1]
    out = [rng.integers(-128, 128, n_in), np.full(n_in, -128), np.full(n_in, 127)]
    for r in range(min(2, w.shape[0])):
        out += [np.where(w[r] < 0, -128, 127), np.where(w[r] > 0, -128, 127)]
    return [x.astype(np.int8) for x in out]


def cases():
    """(label, w, its packed layout, inputs) for every kind and shape"""
    rng = np.random.default_rng(7)
    out = []
    for kind in ("random", "small", "adversarial"):
        for n_out, n_in in SHAPES:
            w = weights(kind, n_out, n_in, rng)
            out.append((f"{kind} {n_out}x{n_in}", w, pk_pack(w), inputs(w, rng)))
    return out


CASES = cases()


def aligned(a: np.ndarray) -> np.ndarray:
    """a copy of int8 a on an 8-byte boundary (the packed words are read as int32)"""
    buf = np.zeros(a.size + 8, np.int8)
    off = (-buf.ctypes.data) % 8
    out = buf[off:off + a.size]
    out[:] = a.reshape(-1)
    return out


# ---- layout and schedule --------------------------------------------------------------------------------------------

def test_header_constants_match_the_layout():
    h = (KDIR / "gemv.h").read_text()
    assert int(re.search(r"#define\s+GEMV_PK_LMAX\s+(\d+)", h).group(1)) == PK_LMAX
    tok = (KDIR / "gemv_tok.c").read_text()
    assert "(n_in + 7) / 8 + 2 * n_in" in tok  # gemv_tok.c's pk_row, the same as:
    assert all(pk_row_bytes(n) == -(-n // 8) + 2 * n for n in (1, 7, 8, 9, 64, 172))


@pytest.mark.parametrize("n_out,n_in", SHAPES)
def test_layout_round_trip_and_sizes(n_out, n_in):
    rng = np.random.default_rng(n_out * 1000 + n_in)
    for kind in ("random", "small", "adversarial"):
        w = weights(kind, n_out, n_in, rng)
        wp = pk_pack(w)
        assert wp.dtype == np.int8 and wp.shape == (n_blocks(n_out), R * pk_row_bytes(n_in))
        back, scheds = pk_unpack(wp, n_out, n_in)
        np.testing.assert_array_equal(back, w)
        assert all(sum(s) == n_in and len(s) <= pk_sched_bytes(n_in) for s in scheds)


def test_every_chunk_is_safe_and_as_long_as_it_can_be():
    """The schedule's chunks provably hold 16-bit partial sums for any int8 x, and the greedy one is maximal: one more
    column would break the bound for some row (or reach PK_LMAX, or the row's end)."""
    rng = np.random.default_rng(3)
    for kind in ("random", "small", "adversarial"):
        w = weights(kind, 8, 172, rng)
        pos, neg = chunk_bounds(w)
        i = 0
        for L in schedule(w):
            assert 1 <= L <= PK_LMAX
            assert (pos[:, i:i + L].sum(1) <= 32767).all() and (neg[:, i:i + L].sum(1) <= 32768).all()
            if L < PK_LMAX and i + L < w.shape[1]:
                j = i + L + 1
                assert (pos[:, i:j].sum(1) > 32767).any() or (neg[:, i:j].sum(1) > 32768).any()
            i += L
    assert schedule(np.full((8, 9), -128, np.int8)) == [1] * 9  # 2 x 128 x 128 = 2^15: one column at a time
    assert schedule(np.full((8, 9), 127, np.int8)) == [2, 2, 2, 2, 1]  # 2 x 127 x 128 = 32,512
    assert schedule(np.zeros((8, 40), np.int8)) == [16, 16, 8]


def test_the_kernels_arithmetic_is_the_blocked_gemvs_for_every_case():
    """pk_acc, the C's 32-bit chunks and extraction in numpy, equals W @ x on every case, the bound's edges included"""
    for label, w, wp, xs in CASES:
        for x in xs:
            np.testing.assert_array_equal(pk_acc(x, wp, *w.shape), w.astype(np.int64) @ x.astype(np.int64),
                                          err_msg=label)


def test_a_schedule_past_the_bound_is_wrong():
    """The bound matters: a block whose chunks are longer than proved loses its sums on inputs at the edge."""
    w = np.full((8, 4), -128, np.int8)
    wp = pk_pack(w).view(np.uint8).copy()
    wp[0, :pk_sched_bytes(4)] = [4, 0, 0, 0, 0, 0, 0, 0]  # one chunk of 4 columns: 4 x 2^14 = 2^16 does not fit
    x = np.full(4, -128, np.int8)
    assert (pk_acc(x, wp.view(np.int8), 8, 4) != w.astype(np.int64) @ x.astype(np.int64)).any()


# ---- the C on the host ----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    out = tmp_path_factory.mktemp("gemv_pk") / "libgemvpk.so"
    cmd = [CC, *CFLAGS, "-shared", "-fPIC", "-o", str(out), str(KDIR / "gemv.c"), str(KDIR / "gemv_tok.c")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, f"{' '.join(cmd)}\n{r.stderr}"
    so = ctypes.CDLL(str(out))
    arr = lambda dt: np.ctypeslib.ndpointer(dtype=dt, flags="C_CONTIGUOUS")  # noqa: E731
    for bits, (dt, _) in OUT.items():
        getattr(so, f"gemv_pk_i{bits}").argtypes = [arr(dt), arr(np.int8), arr(np.int8), arr(np.int32),
                                                   arr(np.uint8), ctypes.c_int32, ctypes.c_int32]
        getattr(so, f"gemv_pk_tok_i{bits}").argtypes = [arr(dt), arr(np.int8), arr(np.int8), arr(np.int32),
                                                       arr(np.int32), ctypes.c_int32, ctypes.c_int32]
        getattr(so, f"gemv_pk_i{bits}").restype = getattr(so, f"gemv_pk_tok_i{bits}").restype = None
    return so


def mults(rng, n_out: int, shift: int, n_in: int) -> np.ndarray:
    """multipliers that put the outputs around the int8 range (some saturate) for this shift"""
    top = max(1, int(2.0 ** shift / (4.0 * 64 * 64 * np.sqrt(n_in))))
    return rng.integers(top // 2 + 1, top + 2, n_out).clip(1, 2 ** 31 - 1).astype(np.int32)


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_c_equals_twin_on_the_host(lib, bits):
    dt, lim = OUT[bits]
    rng = np.random.default_rng(bits)
    for k, (label, w, wp, xs) in enumerate(CASES):
        n_out, n_in = w.shape
        wa = aligned(wp)
        for j, x in enumerate(xs):
            shift = (20, 31, 38, 45)[(k + j) % 4]  # the scaled, the high and (bits 8) the saturating forms
            mult = mults(rng, n_out, shift, n_in)
            y = np.full(n_out + 2, 99, dt)
            getattr(lib, f"gemv_pk_i{bits}")(y, x, wa, mult, np.full(n_out, shift, np.uint8), n_in, n_out)
            want = K.linear(x, w, mult, shift, *lim)
            np.testing.assert_array_equal(linear_pk(x, wp, n_out, n_in, mult, shift, *lim), want, err_msg=label)
            np.testing.assert_array_equal(y[:n_out], want, err_msg=f"{label} shift {shift}")
            assert (y[n_out:] == 99).all(), label


@pytest.mark.parametrize("bits", [8, 16, 32])
def test_token_factor_c_equals_twin(lib, bits):
    dt, lim = OUT[bits]
    rng = np.random.default_rng(100 + bits)
    for n_out, n_in in SHAPES + [(130, 64)]:  # more than GEMV_TOK_ROWS rows: a second call at row 64
        w = weights("random", n_out, n_in, rng)
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        mult = rng.integers(1 << 29, 1 << 31, n_out).astype(np.int32)
        for tok in ([-1, 40], [int(np.int32(np.uint32(3 << 30))), 46], [1 << 30, 70]):  # m as uint32 bits; s > 62
            tok = np.array(tok, np.int32)
            y = np.full(n_out + 2, 99, dt)
            getattr(lib, f"gemv_pk_tok_i{bits}")(y, x, aligned(pk_pack(w)), mult, tok, n_in, n_out)
            np.testing.assert_array_equal(y[:n_out], K.linear_tok(x, w, mult, tok, *lim), err_msg=f"{n_out}x{n_in}")
            assert (y[n_out:] == 99).all()


# ---- RV32 under QEMU --------------------------------------------------------------------------------------------------

def _c_arr(ctype: str, name: str, a: np.ndarray) -> str:
    vals = ", ".join(str(int(v)) for v in np.asarray(a).reshape(-1)) or "0"
    return f"static const {ctype} {name}[] __attribute__((aligned(8))) = {{{vals}}};\n"


@pytest.mark.skipif(shutil.which(RV_CC) is None or shutil.which(QEMU[0]) is None,
                    reason="needs riscv64-unknown-elf-gcc and qemu-system-riscv32")
def test_c_equals_twin_on_rv32(tmp_path):
    rng = np.random.default_rng(11)
    src, body, want = ['#include <stdio.h>\n#include "gemv.h"\n'], [], []
    picked = [(label, w, wp, xs[i % len(xs)]) for i, (label, w, wp, xs) in enumerate(CASES)]
    picked += [(label, w, wp, xs[-1]) for label, w, wp, xs in CASES if label.startswith("adversarial")]
    for k, (label, w, wp, x) in enumerate(picked):
        n_out, n_in = w.shape
        bits, shift = (8, 16, 32)[k % 3], (20, 31, 38, 45)[k % 4]
        dt, lim = OUT[bits]
        mult = mults(rng, n_out, shift, n_in)
        want.append(K.linear(x, w, mult, shift, *lim))
        src += [_c_arr("int8_t", f"x{k}", x), _c_arr("int8_t", f"w{k}", wp), _c_arr("int32_t", f"m{k}", mult),
                _c_arr("uint8_t", f"s{k}", np.full(n_out, shift, np.uint8))]
        ct = {8: "int8_t", 16: "int16_t", 32: "int32_t"}[bits]
        body.append(f"    {{ static {ct} y[{n_out}]; gemv_pk_i{bits}(y, x{k}, w{k}, m{k}, s{k}, {n_in}, {n_out});\n"
                    f"      printf(\"case {k}\"); for (int o = 0; o < {n_out}; o++) printf(\" %ld\", (long)y[o]);"
                    " printf(\"\\n\"); }")
    src.append("int main(void) {\n" + "\n".join(body) + "\n    return 0;\n}\n")
    prog, elf = tmp_path / "pk.c", tmp_path / "pk.elf"
    prog.write_text("".join(src))
    r = subprocess.run([RV_CC, *RV_FLAGS, "-std=c99", "-Wall", "-Wextra", "-Werror", f"-I{KDIR}", "-o", str(elf),
                        str(prog), str(KDIR / "gemv.c")], capture_output=True, text=True)
    assert r.returncode == 0 and not r.stderr, r.stderr
    run = subprocess.run([*QEMU, str(elf)], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
    got = {int(m.group(1)): [int(v) for v in m.group(2).split()]
           for m in re.finditer(r"^case (\d+)((?: -?\d+)*)$", run.stdout + "\n" + run.stderr, re.M)}
    assert sorted(got) == list(range(len(picked)))
    for k, (label, *_) in enumerate(picked):
        np.testing.assert_array_equal(got[k], want[k], err_msg=f"rv32 {label}")


# ---- the choice: `gemv auto | packed | blocked` -----------------------------------------------------------------

def test_gemv_setting_chooses_the_kernel(model_dir):
    """auto: on siracusa the weights stream from L2 and the cost model weighs, per layer, the multiplies the packed
    GEMV saves against its twice the bytes to move. At the example's 256 KiB, double-buffered, the weight stream fetches
    each layer's first tile while the layer before computes, which hides the doubled bytes: every layer is packed,
    each saying so in its why. Without double buffering nothing overlaps a whole tile's DMA: every layer is blocked. On
    generic-rv32 every layer is packed. `gemv packed` and `gemv blocked` force either; anything else is an error at
    the line."""
    from deeploy_dsl.compiler import compile_deployment
    from deeploy_dsl.errors import SpecError
    dply = ROOT / "deployments/stories260k.dply"
    packed = {"gemv_pk_i8", "gemv_pk_i16", "gemv_pk_tok_i16", "gemv_pk_tok_i32"}

    def kernels(*overrides):
        c = compile_deployment(dply, list(overrides))
        return c, {s.kernel for s in c.plan.steps if "gemv" in s.kernel}

    c, k = kernels()
    assert k == packed
    for s in c.plan.steps:
        if "gemv" in s.kernel:
            assert re.search(r"packed( as in the last layer \(one body serves every layer\))?: ~[\d,]+ cycles against "
                             r"~[\d,]+ unpacked", s.reason), s.op
            assert s.staging.early is not None, s.op
    c, k = kernels("memory.L1=256KiB holds activations")
    assert k == {"gemv_i8", "gemv_i16", "gemv_tok_i16", "gemv_tok_i32"}
    assert all(re.search(r"unpacked: ~[\d,]+ cycles against ~[\d,]+ packed", s.reason) for s in c.plan.steps
               if "gemv" in s.kernel)
    assert kernels("gemv=packed")[1] == packed
    c, k = kernels("target=generic-rv32")
    assert k == packed
    assert any(re.search(r"packed: ~[\d,]+ cycles against ~[\d,]+ unpacked", s.reason) for s in c.plan.steps)
    assert kernels("target=generic-rv32", "gemv=blocked")[1] == {"gemv_i8", "gemv_i16", "gemv_tok_i16", "gemv_tok_i32"}
    with pytest.raises(SpecError, match="gemv"):
        compile_deployment(dply, ["gemv=fast"])


@pytest.mark.skipif(shutil.which("qemu-system-riscv32") is None, reason="needs qemu-system-riscv32")
def test_packed_deployment_under_qemu_8_harts(model_dir, tmp_path):
    """`gemv packed` end to end: the RV32 image on 8 harts == golden on every logit, token by token and with prefill."""
    from deeploy_dsl.compiler import compile_deployment
    from test_keys16 import check_qemu
    c = compile_deployment(ROOT / "deployments/stories260k.dply", ["gemv=packed"])
    assert any(s.kernel.startswith("gemv_pk_tok") for s in c.plan.steps)
    check_qemu(c, tmp_path)
