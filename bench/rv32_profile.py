"""Where the instructions of a decode token go, under QEMU (-icount shift=0, exact): per step kind
(linear layers by name, attention, norms, ...) on 1 core and on each hart of N, from a PROFILE=1 build.

    python bench/rv32_profile.py [deployments/stories260k.dply] [--prompt TEXT] [--tokens 64] [--cores 8] [--steps]
                                  [-D KEY=VALUE]

The counts are what each core retired doing the step (core 0 less its waiting and the emulated DMA
engine's copies), averaged over the decode tokens. MACs per step come from the plan, so linear layers
also show instructions per MAC.
"""
from __future__ import annotations

import argparse
import re
import tempfile
from collections import defaultdict
from pathlib import Path

from deeploy_dsl.backend.cmodel import unit_name
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import build_rv32, run_elf

REPO = Path(__file__).resolve().parents[1]


def kind(op: str) -> str:
    """layers.3.mlp.w1 -> mlp.w1; lm_head stays"""
    return re.sub(r"^layers\.\d+\.", "", op)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("dply", nargs="?", default=str(REPO / "deployments/stories260k.dply"))
    ap.add_argument("--prompt", default="Once upon a time")
    ap.add_argument("--tokens", type=int, default=64)
    ap.add_argument("--cores", type=int, default=8)
    ap.add_argument("--steps", action="store_true", help="one row per step instead of per step kind")
    ap.add_argument("-D", "--define", action="append", default=[], help="override a .dply setting, as deeploy's -D")
    args = ap.parse_args()
    c = compile_deployment(Path(args.dply), args.define)
    pids = c.tokenizer.encode(args.prompt)
    macs = {s.op: s.macs for s in c.plan.steps}
    for s in c.plan.steps:  # a fork group's row counts all its members' MACs
        if s.fork and s.fork[0] == s.index:
            members = c.plan.steps[s.fork[0]:s.fork[1] + 1]
            macs[unit_name([m.op for m in members])] = sum(m.macs for m in members)
    with tempfile.TemporaryDirectory() as tmp:
        elf = build_rv32(c, Path(tmp) / "build", profile=True)
        for n in dict.fromkeys((1, args.cores)):
            run = run_elf(elf, pids, args.tokens, c.dep.model.dims.vocab, cores=n, profile=True)
            rows: dict[str, list[float]] = defaultdict(lambda: [0.0] * n)
            rmacs: dict[str, int] = defaultdict(int)
            for op, counts in run.profile.items():
                key = op if args.steps else kind(op)
                rows[key] = [a + b / run.decoded for a, b in zip(rows[key], counts)]
                rmacs[key] += macs.get(op, 0)
            total = [sum(r[k] for r in rows.values()) for k in range(n)]
            print(f"\n{n} core(s), {run.decoded} decode tokens, instructions per decode token"
                  + (f"; busiest hart {max(total):,.0f}" if n > 1 else ""))
            head = f"{'step':<22}{'MACs':>8}" + ("".join(f"{'hart ' + str(k):>10}" for k in range(n)) if n > 1
                                                 else f"{'instr':>10}{'share':>8}{'/MAC':>7}")
            print(head)
            for key, r in sorted(rows.items(), key=lambda kv: -max(kv[1])):
                line = f"{key:<22}{rmacs[key]:>8,}"
                if n > 1:
                    line += "".join(f"{v:>10,.0f}" for v in r)
                else:
                    per_mac = f"{r[0] / rmacs[key]:>7.2f}" if rmacs[key] else f"{'':>7}"
                    line += f"{r[0]:>10,.0f}{r[0] / total[0]:>8.1%}{per_mac}"
                print(line)
            print(f"{'total':<22}{sum(rmacs.values()):>8,}" + "".join(f"{v:>10,.0f}" for v in total))


if __name__ == "__main__":
    main()
