"""Retired RV32IMAC instructions per MAC of gemv_q4_i8/i16/i32 (int4 weights, a scale per group; kernels_c/gemv.c)
against gemv_i8/i16/i32 on the same shapes, under QEMU (-icount shift=0), for the stories260K linear layers, and the
linear layers' total per decode token.

    python bench/gemv_q4_rv32.py [--group 32] [--layers 5] [--cflags "-O2"]

Weights and inputs are pseudo-random (an LCG in C; any byte is a valid q4 pair); both kernels get each layer's shift as
the deployment has it (bench/gemv_rv32.py's LAYER), so they take the same requantization form, and multipliers that keep
the outputs in range (as gemv_rv32.py's; the int4 products q * e are ~9x the int8 ones: 3 bits more). The outputs
differ (different weights): this bench measures, tests/test_int4.py and tests/test_kernels_rv32.py check the integers.
"""
from __future__ import annotations

import argparse
import re
import shutil
import string
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "bench"))

from gemv_rv32 import BUILD, CC, KDIR, LAYER, LM_HEAD, QEMU, mult_shift  # noqa: E402

from deeploy_dsl import layout  # noqa: E402

PROGRAM = string.Template(r"""
#include <stdio.h>
#include "deeploy_kernels.h"
#include "gemv.h"
#include "perf.h"

static uint32_t lcg_state = 2024u;
static uint32_t lcg(void) { lcg_state = lcg_state * 1664525u + 1013904223u; return lcg_state; }

static const int32_t cases[][6] = {$CASES}; /* n_out, n_in, bits, shift, j int4, j int8 */
static int8_t wq[$MAX_W], wb[$MAX_W], x[$MAX_IN];
static int32_t mult[$MAX_OUT], y[$MAX_OUT];
static uint8_t shift[$MAX_OUT];

int main(void) {
    for (unsigned k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        const int32_t n_out = cases[k][0], n_in = cases[k][1], bits = cases[k][2];
        uint64_t t0, t1, t2;
        for (int32_t i = 0; i < $MAX_W; i++) wq[i] = (int8_t)(lcg() >> 24), wb[i] = (int8_t)(lcg() >> 24);
        for (int32_t i = 0; i < n_in; i++) x[i] = (int8_t)(lcg() >> 24);
        for (int32_t o = 0; o < n_out; o++) mult[o] = (int32_t)((0x40000000u | (lcg() >> 2)) >> cases[k][4]), shift[o] = (uint8_t)cases[k][3];
        t0 = dpl_instret();
        if (bits == 8) gemv_q4_i8((int8_t *)y, x, wq, mult, shift, n_in, n_out, $GROUP);
        else if (bits == 16) gemv_q4_i16((int16_t *)y, x, wq, mult, shift, n_in, n_out, $GROUP);
        else gemv_q4_i32(y, x, wq, mult, shift, n_in, n_out, $GROUP);
        t1 = dpl_instret();
        for (int32_t o = 0; o < n_out; o++) mult[o] = (int32_t)((0x40000000u | (lcg() >> 2)) >> cases[k][5]);
        t1 = dpl_instret();
        if (bits == 8) gemv_i8((int8_t *)y, x, wb, mult, shift, n_in, n_out);
        else if (bits == 16) gemv_i16((int16_t *)y, x, wb, mult, shift, n_in, n_out);
        else gemv_i32(y, x, wb, mult, shift, n_in, n_out);
        t2 = dpl_instret();
        printf("case %u q4 %lu i8 %lu\n", k, (unsigned long)(t1 - t0), (unsigned long)(t2 - t1));
    }
    return 0;
}
""")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--group", type=int, default=32, help="input channels per int4 scale (a multiple of 8)")
    ap.add_argument("--layers", type=int, default=5, help="transformer layers (stories260K: 5)")
    ap.add_argument("--cflags", default="-O2", help="compiler flags for the kernels and the driver")
    args = ap.parse_args()
    for tool in (CC, QEMU[0]):
        if shutil.which(tool) is None:
            raise SystemExit(f"{tool} is not installed")
    step = [(name, LAYER[name]) for name in LAYER] + [("lm_head", LM_HEAD)]
    cases = [c for _, c in step]
    rows = [(*c, min(30, mult_shift(*c) + 3), mult_shift(*c)) for c in cases]
    src = PROGRAM.substitute(CASES=", ".join("{" + ", ".join(map(str, c)) + "}" for c in rows), GROUP=args.group,
                             MAX_W=max(layout.blocked_bytes(c[0], c[1]) for c in cases),
                             MAX_IN=max(c[1] for c in cases), MAX_OUT=max(c[0] for c in cases))
    with tempfile.TemporaryDirectory() as tmp:
        prog, elf = Path(tmp) / "q4_bench.c", Path(tmp) / "q4_bench.elf"
        prog.write_text(src)
        subprocess.run([*BUILD, *args.cflags.split(), f"-I{KDIR}", "-o", str(elf), str(prog), str(KDIR / "gemv.c")],
                       check=True)
        run = subprocess.run([*QEMU, str(elf)], capture_output=True, text=True, timeout=600)
    found = re.findall(r"case (\d+) q4 (\d+) i8 (\d+)", run.stdout + run.stderr)
    if run.returncode != 0 or len(found) != len(cases):
        raise SystemExit(f"QEMU run failed (exit {run.returncode}):\n{run.stdout}{run.stderr}")
    print(f"RV32IMAC {args.cflags}, retired instructions per MAC: gemv_q4 (group {args.group}) against gemv (int8)")
    print(f"{'layer':>10} {'shape':>8} {'out':>5} {'x':>3} {'int8/MAC':>9} {'int4/MAC':>9} {'int8 B':>8} {'int4 B':>8}")
    tot = [0, 0, 0, 0, 0]
    for (name, (n_out, n_in, bits, _)), (_, q4, i8) in zip(step, found):
        count = 1 if name == "lm_head" else args.layers
        macs, b8 = n_out * n_in, layout.blocked_bytes(n_out, n_in)
        b4 = layout.padded_rows(n_out) * layout.q4_row_bytes(n_in, args.group)
        for i, v in enumerate((macs, int(i8), int(q4), b8, b4)):
            tot[i] += count * v
        print(f"{name:>10} {f'{n_out}x{n_in}':>8} {'i' + str(bits):>5} {count:>3} {int(i8) / macs:9.3f} "
              f"{int(q4) / macs:9.3f} {b8:>8} {b4:>8}")
    macs, i8, q4, b8, b4 = tot
    print(f"{'total':>10} {'':>8} {'':>5} {'':>3} {i8 / macs:9.3f} {q4 / macs:9.3f} {b8:>8} {b4:>8}")
    print(f"\nper token: {macs:,} MACs; linear layers {i8:,} -> {q4:,} instructions (x{q4 / i8:.3f}), "
          f"weights {b8:,} -> {b4:,} B (x{b4 / b8:.3f})")


if __name__ == "__main__":
    main()
