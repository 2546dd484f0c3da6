"""Host speed: the generated program's decode tokens/s on this machine, at -O3 and at -O3 -march=native.

    python bench/host_report.py [deployments/stories260k.dply] [--tokens 256] [--runs 11] [-D SETTING ...]
                                [--baseline COMMIT_OR_DIR] [--baseline-D SETTING ...]

The deployment is built for `target host` (-D target=host), compiled with each flag set and bench/host_bench.c in
place of main.c, and run `--runs` times per flag set: each run prefills the prompt, then times `--tokens` greedy
decode steps (forward() calls) and prints their tokens/s by the CPU time the process used (what other work on a shared
machine disturbs least) and by the wall clock; the figures are medians over the runs.

--baseline builds a second program from another tree, a git commit of this repository (checked out with
`git worktree add` into a temporary folder, its own compiler building the same .dply) or a folder holding one, and
runs the two alternately, old and new in turns within each pair, so that both see the same load on a shared machine:
the figure to read is the median over the pairs of new tokens/s / old tokens/s. Both programs must generate the same
ids (the report says if they do not). `-D SETTING` overrides a setting of the deployment for the program measured, as
`deeploy build -D` does, and `--baseline-D SETTING` for the baseline: `--baseline . -D quantize.queries=int12` compares
a setting with the file's own in one tree (two settings generate different ids, which the report then only notes).
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
BENCH_C = REPO / "bench" / "host_bench.c"
FLAG_SETS = ("-O3", "-O3 -march=native")
LINE = re.compile(r"decode_tokens (\d+) seconds (\S+) cpu_seconds (\S+) tokens_per_s (\S+) cpu_tokens_per_s (\S+) "
                  r"ids_hash (\w+)")
CLOCKS = ("cpu", "wall")


# runs `deeploy` from the tree in argv[1]: its deeploy_dsl package, and the data packages that live at the top of a
# tree (kernels_c/, grammar/; pyproject's package-dir) from that tree too, not from the installed one
BUILD_WITH_TREE = """
import importlib.util, sys
from pathlib import Path
tree = Path(sys.argv[1])
sys.path.insert(0, str(tree))
import deeploy_dsl
assert deeploy_dsl.__file__.startswith(str(tree)), deeploy_dsl.__file__
for sub in ("kernels_c", "grammar"):
    top = tree / sub
    if not (tree / "deeploy_dsl" / sub).is_dir() and (top / "__init__.py").is_file():
        spec = importlib.util.spec_from_file_location("deeploy_dsl." + sub, top / "__init__.py",
                                                      submodule_search_locations=[str(top)])
        sys.modules["deeploy_dsl." + sub] = mod = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(mod)
from deeploy_dsl.cli import main
sys.argv = ["deeploy"] + sys.argv[2:]
main()
"""


def build(tree: Path, dply: Path, out: Path, settings: tuple[str, ...] = ()) -> Path:
    """`deeploy build DPLY -D target=host [-D SETTING ...] -o OUT` with the compiler of `tree` (its own deeploy_dsl
    package, kernels and grammar)."""
    overrides = [a for setting in ("target=host", *settings) for a in ("-D", setting)]
    res = subprocess.run([sys.executable, "-c", BUILD_WITH_TREE, str(tree.resolve()), "build", str(dply), *overrides,
                          "-o", str(out)], capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"building {dply} with the compiler in {tree} failed:\n{res.stderr[-3000:]}")
    return out


def compile_bench(build_dir: Path, flags: str, exe: Path) -> Path:
    """The build's sources with host_bench.c in place of main.c, compiled with -std=c99 FLAGS -Wall -Wextra."""
    srcs = sorted(str(p) for p in build_dir.glob("*.c") if p.name != "main.c")
    cmd = ["cc", "-std=c99", *flags.split(), "-Wall", "-Wextra", "-I", str(build_dir), "-o", str(exe), str(BENCH_C),
           *srcs]
    res = subprocess.run(cmd, capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"compiling {build_dir} with {flags} failed:\n{res.stderr[-3000:]}")
    return exe


def prompt_ids(build_dir: Path, prompt: str) -> list[int]:
    """The prompt's ids as the generated program encodes them (BOS first)."""
    subprocess.run(["make", "-s", "-C", str(build_dir)], check=True, capture_output=True)
    name = re.search(r"^(\w+): \$\(SRCS\)", (build_dir / "Makefile").read_text(), re.M).group(1)
    exe = build_dir / name
    out = subprocess.run([str(exe), "--prompt", prompt, "--tokens", "1", "--print-ids"], capture_output=True,
                         text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("prompt_ids:"))
    return [int(t) for t in line.split()[1:]]


def run(exe: Path, tokens: int, ids: list[int]) -> tuple[dict[str, float], str]:
    """One run: ({clock: decode tokens/s}, hash of the generated ids)."""
    out = subprocess.run([str(exe), str(tokens), *map(str, ids)], capture_output=True, text=True, check=True).stdout
    m = LINE.search(out)
    if not m:
        sys.exit(f"{exe} printed no timing line: {out!r}")
    return {"cpu": float(m.group(5)), "wall": float(m.group(4))}, m.group(6)


def baseline_tree(spec: str, tmp: Path) -> Path:
    """A folder with a deeploy tree: the folder given, or a checkout of the commit (git worktree add --detach)."""
    if Path(spec).is_dir():
        return Path(spec)
    tree = tmp / "baseline-tree"
    res = subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), spec],
                         capture_output=True, text=True)
    if res.returncode != 0:
        sys.exit(f"cannot check out {spec}: {res.stderr.strip()}")
    return tree


def measure(exes: dict[str, Path], tokens: int, ids: list[int], runs: int) -> dict:
    """Runs every program `runs` times, alternating them (and who goes first) so that they share the machine's load."""
    speeds: dict[str, dict[str, list[float]]] = {k: {c: [] for c in CLOCKS} for k in exes}
    hashes: dict[str, set[str]] = {k: set() for k in exes}
    names = list(exes)
    for i in range(runs):
        for name in (names if i % 2 == 0 else names[::-1]):
            tps, h = run(exes[name], tokens, ids)
            for c in CLOCKS:
                speeds[name][c].append(tps[c])
            hashes[name].add(h)
    return {"speeds": speeds, "hashes": hashes}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=256, help="decode steps timed per run")
    ap.add_argument("--runs", type=int, default=11, help="runs per program and flag set (the median is reported)")
    ap.add_argument("--baseline", help="a git commit of this repository, or a deeploy tree, to compare against")
    ap.add_argument("-D", dest="settings", action="append", default=[], metavar="SETTING",
                    help="override a setting of the deployment for the program measured (repeatable), as deeploy build -D")
    ap.add_argument("--baseline-D", dest="baseline_settings", action="append", default=[], metavar="SETTING",
                    help="override a setting for the baseline program (repeatable)")
    ap.add_argument("--flags", action="append", help=f"a flag set (repeatable; default {' and '.join(FLAG_SETS)})")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    dply = Path(args.dply).resolve()
    with tempfile.TemporaryDirectory(prefix="host-report-") as tmpname:
        tmp = Path(tmpname)
        if args.baseline_settings and not args.baseline:
            sys.exit("--baseline-D needs --baseline (. for this tree)")
        dirs = {"new": build(REPO, dply, tmp / "new", tuple(args.settings))}
        base_tree = None
        if args.baseline:
            base_tree = baseline_tree(args.baseline, tmp)
            dirs["baseline"] = build(base_tree, dply, tmp / "baseline", tuple(args.baseline_settings))
        ids = prompt_ids(dirs["new"], args.prompt)
        if args.tokens < 1:
            sys.exit("--tokens must be at least 1")
        same_settings = args.settings == args.baseline_settings
        report = {"deployment": str(dply), "tokens": args.tokens, "runs": args.runs, "prompt_ids": ids,
                  "settings": args.settings, "baseline": args.baseline, "baseline_settings": args.baseline_settings,
                  "flag_sets": {}}
        try:
            for flags in args.flags or FLAG_SETS:
                exes = {k: compile_bench(d, flags, tmp / f"{k}-{len(report['flag_sets'])}") for k, d in dirs.items()}
                m = measure(exes, args.tokens, ids, args.runs)
                entry = {k: {c: {"median_tokens_per_s": statistics.median(v[c]), "runs": v[c]} for c in CLOCKS}
                         for k, v in m["speeds"].items()}
                if "baseline" in exes:
                    entry["ratio"] = {}
                    for c in CLOCKS:
                        ratios = [a / b for a, b in zip(m["speeds"]["new"][c], m["speeds"]["baseline"][c])]
                        entry["ratio"][c] = {"median": statistics.median(ratios), "pairs": ratios}
                    entry["same_ids"] = m["hashes"]["new"] == m["hashes"]["baseline"] and len(m["hashes"]["new"]) == 1
                report["flag_sets"][flags] = entry
        finally:
            if base_tree is not None and base_tree.parent == tmp:
                subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(base_tree)],
                               capture_output=True)
                shutil.rmtree(base_tree, ignore_errors=True)
    if args.json:
        print(json.dumps(report, indent=1))
        return
    print(f"{dply.name} on the host, decode tokens/s over {args.tokens} tokens after the prompt "
          f"({len(ids)} ids), median of {args.runs} runs, by CPU time (wall clock)")
    for who, settings in (("new", args.settings), ("baseline", args.baseline_settings if args.baseline else [])):
        if settings:
            print(f"  {who}: -D " + " -D ".join(settings))
    for flags, e in report["flag_sets"].items():
        med = {k: {c: e[k][c]["median_tokens_per_s"] for c in CLOCKS} for k in dirs}
        line = f"  {flags:<20} {med['new']['cpu']:>8,.0f} ({med['new']['wall']:,.0f}) tokens/s"
        if "baseline" in e:
            r = e["ratio"]
            line += (f"   baseline {med['baseline']['cpu']:>7,.0f} ({med['baseline']['wall']:,.0f})   new / baseline, "
                     f"median of the {args.runs} interleaved pairs: {r['cpu']['median']:.2f}x "
                     f"({r['wall']['median']:.2f}x)"
                     + ("" if e["same_ids"] else "   (THE TWO PROGRAMS GENERATE DIFFERENT IDS)" if same_settings
                        else "   (different settings: different ids)"))
        print(line)


if __name__ == "__main__":
    main()
