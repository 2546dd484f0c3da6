"""Figures for a deployment: int8-vs-float greedy agreement on the reference prompts, build time
(median of several builds), generated code size, and arena bytes per memory level.

    python bench/build_report.py [deployments/stories260k.dply] [--builds 5]
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import tempfile
import time
from pathlib import Path

from deeploy_dsl.backend.builddir import write_build
from deeploy_dsl.backend.cmodel import c_ident
from deeploy_dsl.backend.codegen import render
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.runner import run_golden_compiled

REPO = Path(__file__).resolve().parents[1]
REFERENCE = REPO.parent / "shared/models/stories260K/reference.json"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("--builds", type=int, default=5)
    ap.add_argument("--tokens", type=int, default=64)
    args = ap.parse_args()
    path = Path(args.dply)

    times = []
    for _ in range(args.builds):
        t0 = time.perf_counter()
        c = compile_deployment(path)
        files = render(c)
        with tempfile.TemporaryDirectory() as tmp:
            write_build(files, Path(tmp) / "out")
        times.append(time.perf_counter() - t0)
    print(f"build time (compile + render + write), median of {args.builds}: {statistics.median(times):.2f} s")

    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "out"
        write_build(files, out)
        t0 = time.perf_counter()
        subprocess.run(["make", "-s", "-C", str(out)], check=True)
        print(f"make (cc -O2) of the generated project: {time.perf_counter() - t0:.2f} s")
        exe = out / c_ident(c.dep.name)  # the Makefile names the program as C does (a - becomes _)
        size = subprocess.run(["size", str(exe)], capture_output=True, text=True).stdout.strip().splitlines()
        print("host binary (size):", "  ".join(size))
    src = {k: len(v.encode()) for k, v in files.items() if k.endswith((".c", ".h"))}
    print(f"generated C: {sum(src.values()):,} bytes in {len(src)} files "
          f"(model.c {src['model.c']:,}, weights.c {src['weights.c']:,}, model.c lines {files['model.c'].count(chr(10))})")
    for lvl in c.dep.memory:
        print(f"arena {lvl.name}: {c.alloc.arena_bytes[lvl.name]:,} B (lower bound {c.alloc.lower_bound[lvl.name]:,} B), "
              f"weights {c.alloc.weight_bytes[lvl.name]:,} B, budget {lvl.size_bytes:,} B")

    if REFERENCE.exists():
        ref = json.loads(REFERENCE.read_text())
        print(f"int8 (golden) vs float greedy agreement over the first {args.tokens} generated ids:")
        for case in ref["cases"]:
            pids = case["prompt_ids"]
            want = case["greedy_ids"][len(pids):len(pids) + args.tokens]
            got, _ = run_golden_compiled(c, pids, args.tokens, stop=False)
            same = sum(a == b for a, b in zip(got, want))
            first = next((i for i, (a, b) in enumerate(zip(got, want)) if a != b), len(want))
            print(f"  {case['prompt']!r:<28} {same:3d}/{len(want)} ids equal, identical prefix {first}")


if __name__ == "__main__":
    main()
