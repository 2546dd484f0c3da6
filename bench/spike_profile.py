"""Where the instructions of a decode token go on cores with the vector extension, under Spike (exact minstret), and
estimated cycles from the target's vector datapath model: bench/rv32_profile.py's table for the spike engine.

    python bench/spike_profile.py [deployments/stories260k-rvv.dply] [--prompt TEXT] [--tokens 64] [--cores 8]
                                  [--steps] [-D KEY=VALUE]

Instructions are exact (what each hart retired doing the step, averaged over the decode tokens). Cycles are an
estimate (kernels.rvv.step_vector_cycles): scalar instructions one cycle, a vector instruction of vl elements of SEW
bits ceil(vl * SEW / datapath_bits) (the target's `vector` model, its source stated there), strided and indexed
loads one element per cycle; the vector instructions of each vector kernel counted from its loop structure. For a scalar deployment (-D isa=rv32imac on Spike is not
possible: use bench/rv32_profile.py) cycles equal instructions under the same model.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from collections import defaultdict
from pathlib import Path

from deeploy_dsl.backend.cmodel import unit_name
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.runner import run_spike_compiled
from deeploy_dsl.kernels.rvv import step_vector_cycles

REPO = Path(__file__).resolve().parents[1]


def kind(op: str) -> str:
    """layers.3.mlp.w1 -> mlp.w1; lm_head stays"""
    return re.sub(r"^layers\.\d+\.", "", op)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k-rvv.dply"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--steps", action="store_true", help="one row per step instead of per step kind")
    ap.add_argument("-D", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    c = compile_deployment(Path(args.dply), args.overrides)
    vec = c.dep.target.vector
    print(f"target {c.dep.target.name}: isa {c.dep.target.isa}, vlen {c.dep.target.vlen}; cycle model: "
          f"{vec.datapath_bits}-bit vector datapath ({vec.source})" if vec else "no vector datapath model")
    pids = c.tokenizer.encode(args.prompt)
    steps = {s.op: s for s in c.plan.steps}
    groups = {}
    for s in c.plan.steps:  # a fork group's row counts all its members
        if s.fork and s.fork[0] == s.index:
            members = c.plan.steps[s.fork[0]:s.fork[1] + 1]
            groups[unit_name([m.op for m in members])] = members
    for n in dict.fromkeys((1, args.cores)):
        with tempfile.TemporaryDirectory() as tmp:
            run = run_spike_compiled(c, Path(tmp) / "build", pids, args.tokens, cores=n, profile=True)
        positions = tuple(range(len(pids) + 1, len(pids) + 1 + run.decoded))  # n = pos + 1 of each decode step
        rows: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
        cyc: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
        rmacs: dict[str, int] = defaultdict(int)
        for op, counts in run.profile.items():
            key = op if args.steps else kind(op)
            members = groups.get(op, [steps[op]] if op in steps else [])
            extra = [sum(step_vector_cycles(m, c.dep.target, n, k, positions) for m in members) for k in range(n)]
            rows[key] = [a + b / run.decoded for a, b in zip(rows[key], counts)]
            cyc[key] = [a + b / run.decoded + e for a, b, e in zip(cyc[key], counts, extra)]
            rmacs[key] += sum(m.macs for m in members)
        total = [sum(r[k] for r in rows.values()) for k in range(n)]
        ctotal = [sum(r[k] for r in cyc.values()) for k in range(n)]
        print(f"\n{n} hart(s), {run.decoded} decode tokens, per decode token: instructions (exact) and estimated cycles"
              + (f"; busiest hart {max(total):,.0f} instructions, {max(ctotal):,.0f} cycles" if n > 1 else ""))
        print(f"{'step':<22}{'MACs':>8}" + ("".join(f"{'hart ' + str(k):>10}" for k in range(n)) + f"{'cyc max':>10}"
                                           if n > 1 else f"{'instr':>10}{'share':>8}{'/MAC':>7}{'cycles':>10}"))
        for key, r in sorted(rows.items(), key=lambda kv: -max(kv[1])):
            line = f"{key:<22}{rmacs[key]:>8,}"
            if n > 1:
                line += "".join(f"{v:>10,.0f}" for v in r) + f"{max(cyc[key]):>10,.0f}"
            else:
                per_mac = f"{r[0] / rmacs[key]:>7.3f}" if rmacs[key] else f"{'':>7}"
                line += f"{r[0]:>10,.0f}{r[0] / total[0]:>8.1%}{per_mac}{cyc[key][0]:>10,.0f}"
            print(line)
        print(f"{'total':<22}{sum(rmacs.values()):>8,}" + "".join(f"{v:>10,.0f}" for v in total)
              + f"{max(ctotal):>10,.0f}")


if __name__ == "__main__":
    main()
