"""Fuzz `.dply` inputs through what `deeploy check` does (issue 12) and print how each ended.

    python bench/fuzz_dply.py [-n 10000] [--seed 0] [--out fuzz-findings] [--limit 10] [--no-compile]

Inputs come from tests/dply_fuzz.py (seeded: the same inputs on every machine). Every input that passes validation
is compiled, once per distinct deployment, and rendered to C as `build` would (not written). Prints the counts of
clean errors at file:line:col, clean errors without a position, tracebacks, runs over the time limit and renders
that failed after check passed, then the median and slowest times; each of those findings is saved under --out
(the .dply, its -D overrides and what happened) for reproduction.
"""
from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # one core, as the campaign is meant to run
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from dply_fuzz import CALIB_TEXT, Checker, cases  # noqa: E402

FINDINGS = ("traceback", "unpositioned", "timeout", "build-only")
MEMORY_LIMIT = 8 << 30  # an input that asks for more memory fails with MemoryError (a finding), not the machine


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("-n", type=int, default=10_000, help="inputs")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=Path("fuzz-findings"), help="where findings are saved")
    ap.add_argument("--limit", type=float, default=10.0, help="CPU seconds per input (6x that of wall time)")
    ap.add_argument("--no-compile", action="store_true", help="stop valid inputs after validation")
    ap.add_argument("--no-render", action="store_true", help="do not render compiled deployments to C")
    args = ap.parse_args()
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    counts: Counter = Counter()
    phases: Counter = Counter()
    times: list[tuple[float, int, str]] = []
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-dply-") as work:
        checker = Checker(Path(work), compile_valid=not args.no_compile, time_limit=args.limit,
                          render=not args.no_render)
        for i, case in enumerate(cases(args.seed, args.n)):
            o = checker.run(case)
            counts[o.status] += 1
            phases[o.phase] += o.status == "accepted"
            times.append((o.seconds, i, case.kind))
            if o.status in FINDINGS:
                save(args.out, i, case, o)
            if (i + 1) % 500 == 0:
                print(f"  {i + 1:,} inputs, {time.perf_counter() - t0:,.0f} s: {dict(counts)}", file=sys.stderr)
        distinct = len(checker.compiled)
    secs = sorted(t for t, _, _ in times)
    print(f"{args.n:,} .dply inputs, seed {args.seed}, {time.perf_counter() - t0:,.0f} s "
          f"({'validation only' if args.no_compile else f'{distinct:,} distinct valid deployments compiled'})")
    rows = [("clean errors at file:line:col", counts["positioned"]),
            ("clean errors without position", counts["unpositioned"]),
            ("tracebacks", counts["traceback"]),
            (f"runs over {args.limit:g} s (CPU time)", counts["timeout"]),
            ("passed check, failed render", counts["build-only"])]
    for label, n in rows:
        print(f"  {label:<32}{n:,}")
    print(f"  {'accepted':<32}{counts['accepted']:,} (compiled {phases['compile'] + phases['render']:,}, "
          f"as an equal deployment {phases['cached']:,}, validated only {phases['validate']:,})")
    print(f"  CPU time per input: median {statistics.median(secs) * 1000:,.1f} ms, max {secs[-1]:,.2f} s")
    for t, i, kind in sorted(times)[-3:][::-1]:
        print(f"    slowest: input {i} ({kind}) {t:.2f} s")
    if sum(counts[f] for f in FINDINGS):
        print(f"  findings saved in {args.out}/")


def save(out: Path, i: int, case, o) -> None:
    d = out / f"{i:05d}-{o.status}"
    d.mkdir(parents=True, exist_ok=True)
    (d / "input.dply").write_bytes(case.data)
    (d / "text.txt").write_text(CALIB_TEXT)  # what calibrate("text.txt") reads
    (d / "defines.txt").write_text("".join(f"-D {x}\n" for x in case.defines), errors="surrogateescape")
    (d / "outcome.txt").write_text(f"{case.kind}: {o.status} after {o.seconds:.2f} s in {o.phase}\n\n{o.message}",
                                   errors="backslashreplace")


if __name__ == "__main__":
    main()
