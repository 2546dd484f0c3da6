"""Retired RV32IMAC instructions of the packed GEMV (two MACs per multiply, gemv_pk_iN: kernels_c/gemv.c,
deeploy_dsl/kernels/packed.py) against the blocked int8 GEMV (gemv_iN) on the real quantized weights of every linear
layer of a deployment (lm_head included), one call each on a seeded int8 input, under QEMU (-icount shift=0, exact).
Both kernels' outputs and the numpy twin (packed.linear_pk) must agree with twins.linear, or the run fails.

    python bench/gemv_pk_rv32.py [deployments/stories260k.dply] [-D KEY=VALUE ...] [--seed 1]

Measured (gcc 12.2 -O2, QEMU): stories260k's 36 layers 3.333 -> 2.870 instructions per MAC (864,378 -> 744,223 for one
call each); with the accurate setting's weights 3.376 -> 2.893. Chunks average 3.0 (attn.k) to 4.4 (lm_head) columns.
"""
from __future__ import annotations

import argparse
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gemv_rv32 import BUILD, KDIR, QEMU  # noqa: E402

from deeploy_dsl.compiler import compile_deployment  # noqa: E402
from deeploy_dsl.kernels import twins as K  # noqa: E402
from deeploy_dsl.kernels.layout import block_rows, unblock_rows  # noqa: E402
from deeploy_dsl.kernels.packed import linear_pk, pk_pack, schedule  # noqa: E402

BOUNDS = {8: K.I8, 16: K.I16, 32: K.I32}
CT = {8: "int8_t", 16: "int16_t", 32: "int32_t"}


def arr(ctype: str, name: str, a: np.ndarray, align: bool = False) -> str:
    attr = " __attribute__((aligned(8)))" if align else ""
    return f"static const {ctype} {name}[{a.size}]{attr} = {{{', '.join(str(int(v)) for v in a.reshape(-1))}}};\n"


def layers(c) -> list[tuple[str, np.ndarray, np.ndarray, int, int]]:
    """(name, W, mult, shift, out bits) of every int8 linear layer with a calibrated shift (a per-token one: the
    layer's base shift, the same loops)"""
    out = []
    for s in c.plan.steps:
        if s.op not in c.quant.params or "n_out" not in c.quant.params[s.op]:
            continue
        p = c.quant.params[s.op]
        if not p["weight"].endswith(".wb"):
            continue
        bits = s.spec.out_bits
        out.append((s.op, unblock_rows(c.quant.consts[p["weight"]], p["n_out"]), c.quant.consts[s.op + ".mult"],
                    int(c.quant.consts[s.op + ".shift"][0]), bits))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("-D", dest="overrides", action="append", default=[])
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    c = compile_deployment(Path(args.dply), args.overrides)
    rng = np.random.default_rng(args.seed)
    ls = layers(c)
    src = ['#include <stdio.h>\n#include "gemv.h"\n#include "perf.h"\n']
    body = []
    want = []
    for k, (name, w, mult, shift, bits) in enumerate(ls):
        n_out, n_in = w.shape
        x = rng.integers(-128, 128, n_in).astype(np.int8)
        wb, wp = block_rows(w), pk_pack(w)
        y = K.linear(x, w, mult, shift, *BOUNDS[bits])
        if not (linear_pk(x, wp, n_out, n_in, mult, shift, *BOUNDS[bits]) == y).all():
            raise SystemExit(f"{name}: the packed twin differs from twins.linear")
        want.append(y)
        src += [arr("int8_t", f"x{k}", x), arr("int8_t", f"wb{k}", wb), arr("int8_t", f"wp{k}", wp, True),
                arr("int32_t", f"m{k}", mult), arr("uint8_t", f"s{k}", np.full(n_out, shift, np.uint8)),
                arr(CT[bits], f"want{k}", y)]
        body.append(f"""    {{
        static {CT[bits]} ya[{n_out}], yb[{n_out}];
        int d = 0;
        uint64_t t0 = dpl_instret();
        gemv_i{bits}(ya, x{k}, wb{k}, m{k}, s{k}, {n_in}, {n_out});
        uint64_t t1 = dpl_instret();
        gemv_pk_i{bits}(yb, x{k}, wp{k}, m{k}, s{k}, {n_in}, {n_out});
        uint64_t t2 = dpl_instret();
        for (int o = 0; o < {n_out}; o++) d += ya[o] != want{k}[o] || yb[o] != want{k}[o];
        printf("layer {k} old %lu new %lu diff %d\\n", (unsigned long)(t1 - t0), (unsigned long)(t2 - t1), d);
        bad += d;
    }}""")
    src.append("int main(void) {\n    int bad = 0;\n" + "\n".join(body) + "\n    return bad != 0;\n}\n")
    with tempfile.TemporaryDirectory() as tmp:
        prog, elf = Path(tmp) / "pk.c", Path(tmp) / "pk.elf"
        prog.write_text("".join(src))
        subprocess.run([*BUILD, "-O2", f"-I{KDIR}", "-o", str(elf), str(prog), str(KDIR / "gemv.c")], check=True)
        run = subprocess.run([*QEMU, str(elf)], capture_output=True, text=True, timeout=600)
    found = re.findall(r"layer (\d+) old (\d+) new (\d+) diff (\d+)", run.stdout + run.stderr)
    if run.returncode != 0 or len(found) != len(ls) or any(int(d) for *_, d in found):
        raise SystemExit(f"QEMU run failed or kernels disagree (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    print(f"{'layer':<20} {'shape':>8} {'out':>4} {'chunk':>6} {'gemv':>8} {'packed':>8} {'old/MAC':>8} {'new/MAC':>8}")
    to = tn = tm = 0
    for (name, w, _, _, bits), (_, old, new, _) in zip(ls, found):
        macs = w.size
        ch = [L for b in range(0, w.shape[0], 8) for L in schedule(w[b:b + 8])]
        to, tn, tm = to + int(old), tn + int(new), tm + macs
        print(f"{name:<20} {w.shape[0]:>4}x{w.shape[1]:<3} i{bits:<3} {np.mean(ch):6.2f} {old:>8} {new:>8} "
              f"{int(old) / macs:8.3f} {int(new) / macs:8.3f}")
    print(f"{'total':<20} {'':>8} {'':>4} {'':>6} {to:>8} {tn:>8} {to / tm:8.3f} {tn / tm:8.3f}")
    print(f"one call per layer: {tm} MACs, {to} -> {tn} retired instructions ({to - tn} fewer, {to / tn:.3f}x); "
          "outputs identical to twins.linear (gemv, packed, packed twin)")


if __name__ == "__main__":
    main()
