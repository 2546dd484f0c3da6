"""Arena size vs lower bound and DMA bytes vs lower bound for several L1 budgets, with build times.

    python bench/memory_report.py [deployments/stories260k.dply] [--budgets 16KiB 32KiB 64KiB 256KiB] [--builds 3]
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

from deeploy_dsl.backend.builddir import write_build
from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment

REPO = Path(__file__).resolve().parents[1]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("--budgets", nargs="+", default=["16KiB", "32KiB", "64KiB", "256KiB"])
    ap.add_argument("--builds", type=int, default=3)
    args = ap.parse_args()
    print(f"{'L1':>7} | {'L1 arena':>9} {'L1 bound':>9} {'opt':>4} | {'L2 arena':>9} {'L2 bound':>9} {'opt':>4} | "
          f"{'DMA B/token':>11} {'DMA bound':>10} {'ratio':>6} | {'lm_head tiles':>13} | {'build s':>7}")
    for budget in args.budgets:
        times = []
        for _ in range(args.builds):
            t0 = time.perf_counter()
            c = compile_deployment(Path(args.dply), [f"memory.L1={budget}"])
            files = render(c)
            with tempfile.TemporaryDirectory() as tmp:
                write_build(files, Path(tmp) / "out")
            times.append(time.perf_counter() - t0)
        a, p = c.alloc, c.plan
        dma = sum(s.staging.dma_bytes for s in p.steps)
        lm = next(s for s in p.steps if s.op == "lm_head")
        print(f"{budget:>7} | {a.arena_bytes['L1']:>9,} {a.aligned_lower_bound['L1']:>9,} {'yes' if a.optimal['L1'] else 'no':>4} | "
              f"{a.arena_bytes['L2']:>9,} {a.aligned_lower_bound['L2']:>9,} {'yes' if a.optimal['L2'] else 'no':>4} | "
              f"{dma:>11,} {p.dma_lower_bound:>10,} {dma / p.dma_lower_bound:>6.3f} | {lm.staging.tiles:>13} | "
              f"{statistics.median(times):>7.2f}")
    print(f"(bounds: max bytes live at once with aligned sizes; DMA at decode position {p.report_pos}; "
          f"build = compile + render + write, median of {args.builds})")


if __name__ == "__main__":
    main()
