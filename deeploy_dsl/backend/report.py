"""What a build costs: memory per level against its lower bound, per step the tiles, DMA bytes, MACs and
estimated cycles, and a summary in the manner of Arm's Vela (clock, memory, each engine's share of the
operators and MACs, cycles per decode token and per prefill, tokens/s and uJ/token), as report.json (for
scripts) and as the text `deeploy build` prints (for people)."""
from __future__ import annotations

import json
import re

from ..engines.cost import summary
from ..kinds import TileScheme

DEFAULT_PREFILL = 16  # prompt tokens the summary's prefill assumes when the deployment has no tokenizer


def tile_text(s) -> str:
    t = s.staging.tiling
    if t is None or (t.kind == TileScheme.POSITIONS and "k" not in t.buffers):
        return "-"
    unit = "rows" if t.kind == TileScheme.ROWS else "positions"
    return f"{t.tile} {unit}" + (" x2" if t.double_buffer else "")


def report_dict(c) -> dict:
    dep, plan, alloc = c.dep, c.plan, c.alloc
    memory = {}
    for lvl in dep.memory:
        n = lvl.name
        # names as in plan.yaml; used_bytes: what the level holds (the C's arena and the weights)
        c_arena = max(alloc.arena_bytes[n], c.prefill.alloc.arena_bytes[n] if c.prefill is not None else 0)
        memory[n] = {"used_bytes": c_arena + alloc.weight_bytes[n], "c_arena_bytes": c_arena,
                     "c_arena_from": "decode" if c_arena == alloc.arena_bytes[n] else "prefill",
                     "arena_bytes": alloc.arena_bytes[n],
                     "lower_bound_bytes": alloc.lower_bound[n], "aligned_lower_bound_bytes": alloc.aligned_lower_bound[n],
                     "weight_bytes": alloc.weight_bytes[n], "budget_bytes": lvl.size_bytes,
                     "capacity_bytes": lvl.capacity_bytes, "optimal": alloc.optimal[n],
                     "gap_bytes": alloc.arena_bytes[n] - alloc.aligned_lower_bound[n]}
        if c.prefill is not None:  # the C's arena is the larger of both plans': they never run at once
            memory[n]["prefill_arena_bytes"] = c.prefill.alloc.arena_bytes[n]
    steps = [{"index": s.index, "op": s.op, "rule": s.rule, "kernel": s.kernel, "engine": s.engine, "cores": s.cores,
              "tiles": s.staging.tiles, "tile": tile_text(s), "dma_bytes": s.staging.dma_bytes, "dma_cycles": s.staging.dma_cycles, "macs": s.macs}
             for s in plan.steps]
    dma = sum(s.staging.dma_bytes for s in plan.steps)
    n_pre = len(c.tokenizer.encode(dep.generate.prompt)) if c.tokenizer is not None else DEFAULT_PREFILL
    perf = summary(plan, dep, max(n_pre, 1), c.prefill)
    if c.prefill is not None and c.prefill.note:
        perf["prefill"]["note"] = c.prefill.note
    for row, cost in zip(steps, perf.pop("steps")):
        row.update(cycles=cost["cycles"], utilisation=cost["utilisation"], uj=cost["uj"], dma_exposed=cost["dma_exposed"])
        if (s := plan.steps[row["index"]]).staging.early is not None:
            row["fetched_at"] = s.staging.early  # the weight stream fetched its first tile before this step
    return {
        "deployment": dep.name, "target": dep.target.name, "report_position": plan.report_pos,
        "memory": memory, "performance": perf, "steps": steps,
        "totals": {"dma_bytes_per_token": dma, "dma_lower_bound_bytes": plan.dma_lower_bound,
                   "dma_over_lower_bound": round(dma / plan.dma_lower_bound, 4) if plan.dma_lower_bound else 1.0,
                   "dma_cycles_per_token": sum(s.staging.dma_cycles for s in plan.steps),
                   "macs_per_token": sum(s.macs for s in plan.steps)},
    }


def report_json(c) -> str:
    return json.dumps(report_dict(c), indent=1) + "\n"


def _fold(rows: list[dict]) -> list[tuple[str, dict]]:
    """Rows that are the same in every layer print once as layers[a..b].rest."""
    groups: dict[tuple, list[int]] = {}
    order: list[tuple] = []
    for r in rows:
        m = re.match(r"layers\.(\d+)\.(.*)", r["op"])
        key = (m.group(2) if m else r["op"],) + tuple(v for k, v in r.items() if k not in ("index", "op"))
        if key not in groups:
            order.append(key)
        groups.setdefault(key, []).append(int(m.group(1)) if m else -1)
    out = []
    for key in order:
        layers = groups[key]
        row = dict(zip([k for k in rows[0] if k not in ("index", "op")], key[1:]))
        if layers == [-1]:
            name = key[0]
        elif len(layers) == 1:
            name = f"layers.{layers[0]}.{key[0]}"
        elif layers == list(range(layers[0], layers[-1] + 1)):
            name = f"layers[{layers[0]}..{layers[-1]}].{key[0]}"
        else:
            name = f"layers[{','.join(map(str, layers))}].{key[0]}"
        out.append((name, row))
    return out


def _serial_dma_note(steps: list[dict]) -> list[str]:
    """What the DMA costs beyond compute: operands copied whole before a step, and first tiles the weight stream did
    not hide (a smaller L1 can be estimated faster where it makes a layer stream)."""
    late = [s for s in steps if s.get("dma_exposed", 0) > 0 and s["engine"] != "npu"]
    if not late:
        return []
    cyc = sum(s["dma_exposed"] for s in late)
    total = sum(s["dma_cycles"] for s in steps if s["engine"] != "npu")
    return [f"  note: {cyc:,} of {total:,} DMA cycles/token are not overlapped with compute ({len(late)} steps: operands "
            f"copied whole, first tiles the weight stream did not hide)"]


def summary_text(r: dict) -> list[str]:
    p = r["performance"]
    dec, pre = p["decode"], p["prefill"]
    shares = ", ".join(f"{name} {e['ops']} ops, {e['mac_share']:.1%} of MACs" for name, e in sorted(p["engines"].items()))
    wm = p["npu_weight_memory"]
    npu_mem = f"; NPU weight memory {wm['used_bytes']:,} of {wm['capacity_bytes']:,} B" if wm else ""
    return [f"  clock {p['clock_hz'] / 1e6:g} MHz; {shares}{npu_mem}",
            f"  decode at position {dec['position']}: {dec['cycles_per_token']:,} cycles/token, "
            f"{dec['tokens_per_s']:,.1f} tokens/s, {dec['uj_per_token']:,.2f} uJ/token (estimates)",
            f"  prefill of {pre['tokens']} tokens in chunks of {pre.get('chunk', pre['tokens'])}: {pre['cycles']:,} cycles "
            f"({pre['cycles_per_token']:,} per token), {pre['uj']:,.2f} uJ"] \
        + ([f"  note: {pre['note']}"] if pre.get("note") else []) \
        + _serial_dma_note(r.get("steps", []))


def report_text(c) -> str:
    r = report_dict(c)
    lines = summary_text(r) + [""]
    # the C's arena is the larger of the decode and prefill plans' (they never run at once); the bound is decode's
    lines.append(f"  {'level':<6}{'C arena':>11}{'from':>8}{'decode':>11}{'lower bound':>13}{'weights':>11}{'budget':>12}"
                 f"{'capacity':>12}  decode allocation")
    for name, m in r["memory"].items():
        state = "optimal" if m["optimal"] and m["gap_bytes"] == 0 else \
            (f"optimal, +{m['gap_bytes']} B over the bound" if m["optimal"] else f"{m['gap_bytes']} B over the bound, not proven")
        lines.append(f"  {name:<6}{m['c_arena_bytes']:>11,}{m['c_arena_from']:>8}{m['arena_bytes']:>11,}"
                     f"{m['lower_bound_bytes']:>13,}{m['weight_bytes']:>11,}{m['budget_bytes']:>12,}{m['capacity_bytes']:>12,}"
                     f"  {state}")
    lines.append("")
    lines.append(f"  {'step':<28}{'rule':<26}{'engine':<12}{'tiles':>6}  {'tile':<18}{'dma B':>8}{'MACs':>8}"
                 f"{'cycles':>9}{'share':>7}{'util':>6}")
    total = r["performance"]["decode"]["cycles_per_token"] or 1
    for name, row in _fold([{**{k: v for k, v in s.items() if k != "uj"}, "share": s["cycles"] / total}
                            for s in r["steps"]]):
        eng = f"{row['engine']} x{row['cores']}" if row["engine"] == "cluster" else row["engine"]
        lines.append(f"  {name:<28}{row['rule']:<26}{eng:<12}{row['tiles']:>6}  {row['tile']:<18}"
                     f"{row['dma_bytes']:>8,}{row['macs']:>8,}{row['cycles']:>9,}{row['share']:>7.1%}"
                     f"{row['utilisation']:>6.0%}")
    t = r["totals"]
    lines.append("")
    lines.append(f"  per token at position {r['report_position']}: {t['dma_bytes_per_token']:,} B moved between levels "
                 f"(lower bound {t['dma_lower_bound_bytes']:,} B, x{t['dma_over_lower_bound']:.3f}), "
                 f"~{t['dma_cycles_per_token']:,} DMA cycles, {t['macs_per_token']:,} MACs")
    return "\n".join(lines)
