"""Malformed model files through the CLI (issue 12): every case of tests/malformed_models.py, `deeploy check` and,
for those check accepts, `deeploy build`, each in its own process with a time limit.

    python bench/fuzz_models.py [--base tiny|stories260k] [--seed 0] [--timeout 10] [--jobs 2] [--only TEXT] [-v]

Prints how each ended: clean errors (and at which .dply line: the weights, tokenizer or model line, or a setting
the case wrote into the model block), tracebacks, hangs (over the time limit), malformed files accepted, valid
ones rejected, builds that failed after check passed; then every case that did not do what it should, and the
slowest. Another checkout runs with PYTHONPATH pointing at it (the commands are `python -m deeploy_dsl.cli`).
"""
from __future__ import annotations

import argparse
import os
import re
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

import malformed_models as mm  # noqa: E402

MEMORY_LIMIT = 8 << 30  # a case that asks for more fails with MemoryError (a traceback: a finding), not the machine
STORIES = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
ERROR_AT = re.compile(r"^(.*?\.dply):(\d+):\d+: error: ", re.M)


def _limit_memory() -> None:
    resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))


def deeploy(args: list[str], timeout: float) -> tuple[mm.Outcome, float]:
    """One CLI run: ok (exit 0), a clean error (exit 1, `file:line:col: error:` lines), a traceback or a hang."""
    env = {**os.environ, "OPENBLAS_NUM_THREADS": "1"}
    t0 = time.perf_counter()
    try:
        r = subprocess.run([sys.executable, "-m", "deeploy_dsl.cli", *args], capture_output=True, text=True,
                           timeout=timeout, env=env, preexec_fn=_limit_memory, errors="replace")
    except subprocess.TimeoutExpired:
        return mm.Outcome("hang"), time.perf_counter() - t0
    took = time.perf_counter() - t0
    if r.returncode == 0:
        return mm.Outcome("ok"), took
    lines = tuple(int(m.group(2)) for m in ERROR_AT.finditer(r.stderr))
    clean = r.returncode == 1 and "Traceback (most recent call last)" not in r.stderr and lines
    return mm.Outcome("error" if clean else "traceback", lines, r.stderr), took


def run_case(i: int, case: mm.Case, base: mm.Model, work: Path, seed: int, timeout: float) -> dict:
    folder = work / f"c{i:03d}"
    dply = mm.write_case(case, folder, base, seed)
    allowed = mm.allowed_lines(case, dply)
    out, took = deeploy(["check", str(dply)], timeout)
    row = {"i": i, "case": case, "check": out, "seconds": took, "build": None,
           "verdict": out.verdict(case, allowed), "allowed": allowed}
    if out.status == "ok":
        built, t2 = deeploy(["build", str(dply), "-o", str(folder / "out")], timeout)
        row["build"], row["seconds"] = built, took + t2
        if built.status != "ok":
            row["verdict"] = "build failed" if built.status == "error" else built.status
    return row


def where(row: dict, dply_lines: dict[str, int]) -> list[str]:
    names = {v: k + (" block" if k in ("model", "quantize") else "") for k, v in dply_lines.items()}
    return [names.get(n, "model-block setting" if n > dply_lines["tokenizer"] and n < dply_lines["quantize"] else f"line {n}")
            for n in row["check"].lines]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", choices=("tiny", "stories260k"), default="tiny", help="the valid model the cases edit")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--timeout", type=float, default=10.0, help="seconds per command")
    ap.add_argument("--jobs", type=int, default=2)
    ap.add_argument("--only", default="", help="cases whose name contains this")
    ap.add_argument("-v", "--verbose", action="store_true", help="print every case's first error")
    args = ap.parse_args()
    base = mm.tiny_base(args.seed) if args.base == "tiny" else mm.base_from_dir(STORIES)
    cases = [c for c in mm.all_cases(base.layers) if args.only in c.name]
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="fuzz-models-") as tmp, ThreadPoolExecutor(args.jobs) as pool:
        rows = list(pool.map(lambda ic: run_case(*ic, base, Path(tmp), args.seed, args.timeout), enumerate(cases)))
    wall = time.perf_counter() - t0
    text = mm.DPLY.format(extra="", quantize="").split("\n")
    dply_lines = {"weights": next(i for i, s in enumerate(text, 1) if s.startswith("    weights")),
                  "tokenizer": next(i for i, s in enumerate(text, 1) if s.startswith("    tokenizer")),
                  "model": next(i for i, s in enumerate(text, 1) if s.startswith("model llama")),
                  "quantize": next(i for i, s in enumerate(text, 1) if s.startswith("quantize"))}
    malformed = [r for r in rows if r["case"].expect not in ("ok", "either")]
    status = Counter(r["check"].status for r in malformed)
    at = Counter(w for r in malformed if r["check"].status == "error" for w in set(where(r, dply_lines)))
    print(f"{len(rows)} cases ({len(malformed)} malformed, {len(rows) - len(malformed)} valid or degenerate), "
          f"base {args.base}, seed {args.seed}, {wall:.0f} s with {args.jobs} jobs")
    print(f"malformed, deeploy check: {status['error']} clean errors, {status['traceback']} tracebacks, "
          f"{status['hang']} hangs (> {args.timeout:g} s), {status['ok']} accepted")
    print("  errors at: " + ", ".join(f"{k} line {n}" for k, n in sorted(at.items())))
    verdicts = Counter(r["verdict"] for r in rows)
    print("verdicts (all cases): " + ", ".join(f"{k} {n}" for k, n in verdicts.most_common()))
    by_kind = Counter((r["case"].kind, r["verdict"] == "pass") for r in rows)
    print("by kind: " + ", ".join(f"{k} {by_kind[(k, True)]}/{by_kind[(k, True)] + by_kind[(k, False)]}"
                                 for k in dict.fromkeys(r["case"].kind for r in rows)))
    built = [r for r in rows if r["build"] is not None]
    print(f"check accepted {len(built)}: built {sum(r['build'].status == 'ok' for r in built)}")
    for r in rows:
        if r["verdict"] != "pass" or args.verbose:
            first = r["check"].text.strip().split("\n")[0][:160] if r["check"].text else ""
            if r["build"] is not None and r["build"].status != "ok":
                first = "build: " + (r["build"].text.strip().split("\n")[-1][:160])
            print(f"  [{r['verdict']}] {r['case'].name} (expect {r['case'].expect}, lines {sorted(r['allowed'])}): {first}")
    slow = sorted(rows, key=lambda r: -r["seconds"])[:3]
    print("slowest: " + ", ".join(f"{r['case'].name} {r['seconds']:.1f} s" for r in slow))


if __name__ == "__main__":
    main()
