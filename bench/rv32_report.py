"""RV32 figures under QEMU (-icount shift=0, so exact): instructions per decode token on 1 core and per
hart on N cores, and the image's code size and static RAM.

    python bench/rv32_report.py [deployments/stories260k.dply] [--prompt TEXT] [--tokens 64] [--cores 8] [-D KEY=VALUE]
"""
from __future__ import annotations

import argparse
import subprocess
import tempfile
from pathlib import Path

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import build_rv32, decode_instret, run_elf
from deeploy_dsl.engines.runner import run_golden_compiled

REPO = Path(__file__).resolve().parents[1]
TARGET_1, TARGET_N = 900_000, 130_000  # issue 15: per decode token on 1 core, busiest of 8 harts


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("-D", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                    help="override a setting, as `deeploy build -D` (e.g. quantize.dynamic=norm,swiglu_absmax)")
    args = ap.parse_args()
    c = compile_deployment(Path(args.dply), args.overrides)
    pids = c.tokenizer.encode(args.prompt)
    golden, _ = run_golden_compiled(c, pids, args.tokens)
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_rv32(c, Path(tmp) / "build")
        size = subprocess.run(["riscv64-unknown-elf-size", "-A", str(elf)], capture_output=True, text=True).stdout
        sec = {ln.split()[0]: int(ln.split()[1]) for ln in size.splitlines() if ln.startswith(".")}
        text = sum(v for k, v in sec.items() if k.startswith((".text", ".init", ".dpl_entry")))
        ram = sum(v for k, v in sec.items() if k.startswith((".data", ".sdata", ".bss", ".sbss", ".tdata", ".tbss")))
        # picolibc's linker script keeps read-only data in .text (flash): split it out by symbol
        nm = subprocess.run(["riscv64-unknown-elf-nm", "-S", str(elf)], capture_output=True, text=True).stdout
        const = sum(int(f[1], 16) for f in (ln.split() for ln in nm.splitlines())
                    if len(f) == 4 and f[3].startswith(("w_", "tokenizer_")))
        print(f"RV32 image: .text {text:,} B (code {text - const:,} B + read-only data {const:,} B: weights, "
              f"tables, tokenizer), .data + .bss {ram:,} B (arenas, KV cache, stacks)")
        for n in (1, args.cores):
            run = run_elf(elf, pids, args.tokens, c.dep.model.dims.vocab, cores=n)
            per = decode_instret(run, len(pids))
            same = "ids identical to golden" if run.ids == golden else "IDS DIFFER FROM GOLDEN"
            target = TARGET_1 if n == 1 else TARGET_N
            print(f"{n} core(s): max over harts {max(per):,} instructions per decode token "
                  f"(target <= {target:,}: {'met' if max(per) <= target else 'missed'}); per hart {per}; {same}")
            pre = run_elf(elf, pids, args.tokens, c.dep.model.dims.vocab, cores=n, prefill=True)
            base = [sum(counts[k] for pos, counts in run.instret.items() if pos < len(pids)) for k in range(n)]
            print(f"    prompt of {len(pids)} tokens: prefill() {max(pre.prefill_instret):,} instructions on the busiest "
                  f"hart, against {max(base):,} for {len(pids)} forward() calls; "
                  f"{'ids identical' if pre.ids == golden else 'IDS DIFFER'}")


if __name__ == "__main__":
    main()
