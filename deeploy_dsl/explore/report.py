"""The sweep's report: explore.json (sorted keys, points in grid order, no timings: the same whichever backend
ran it), the Pareto front as a terminal table, and explore.html (inline SVG, no network)."""
from __future__ import annotations

import html
import itertools
import json

from .pareto import best, feasible, front
from .sweep import EVAL_METRICS, QEMU_METRICS, Sweep


def status(sweep: Sweep, p) -> str:
    """ok, infeasible, failed, pending (a later stage not run yet), dominated (a later stage skipped: a feasible point
    dominates it on the figures known before) or stopped (not promoted by `search halving`)."""
    if p.error:
        return "failed"
    if p.pruned:
        return "dominated"
    if p.stopped is not None:
        return "stopped"
    if p.cost is None or (sweep.needs_eval and p.eval is None and
                          all(c.holds(p.figures) for c in sweep.constraints if c.metric not in EVAL_METRICS)):
        return "pending"
    return "ok" if feasible(p.figures, sweep.objectives, sweep.constraints) else "infeasible"


def result(sweep: Sweep, points: list) -> dict:
    figs = [p.figures if status(sweep, p) == "ok" else None for p in points]
    on_front = front(figs, sweep.objectives, sweep.constraints)
    chosen = best(figs, sweep.objectives, on_front)
    rows = []
    for p in points:
        st = status(sweep, p)
        row = {"index": p.index, "key": p.key, "settings": sweep.settings(p.overrides), "overrides": list(p.overrides),
               "status": st, "figures": p.figures, "pareto": p.index in on_front}
        if p.error:
            row["error"] = p.error
        elif st == "infeasible":
            row["violates"] = [str(c) for c in sweep.constraints if not c.holds(p.figures)]
        elif st == "stopped":
            row["stopped_at_rung"] = p.stopped
        rows.append(row)
    return {"sweep": sweep.name, "deployment": sweep.deployment.name, "set": list(sweep.sets),
            "axes": {a.key: list(a.values) for a in sweep.axes},
            "constraints": [str(c) for c in sweep.constraints], "objectives": [str(o) for o in sweep.objectives],
            "eval": sweep.eval if sweep.needs_eval else None,
            "search": _search(sweep),
            "counts": {s: sum(r["status"] == s for r in rows) for s in STATUSES if s in SHOWN or any(r["status"] == s for r in rows)},
            "front": on_front, "best": chosen, "points": rows}


NOTES = {"dominated": "not evaluated further: a feasible point beats it in every objective",
         "stopped": "search halving stopped it after rung {stopped_at_rung}"}
STATUSES = ("ok", "infeasible", "failed", "pending", "dominated", "stopped")
SHOWN = STATUSES[:4]  # always counted; the others only when some point has them


def _search(sweep: Sweep):
    if not sweep.sample and not sweep.halving:
        return "grid"
    out = {"random": sweep.sample[0], "seed": sweep.sample[1]} if sweep.sample else {}
    return out | ({"halving": sweep.halving} if sweep.halving else {})


def explore_json(res: dict) -> str:
    return json.dumps(res, indent=1, sort_keys=True) + "\n"


def _fmt(metric: str, v) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.4f}" if metric in EVAL_METRICS else f"{v:,.2f}"
    return f"{v:,}"


def shown_metrics(res: dict) -> list[str]:
    """The objectives' and constraints' figures, then QEMU's where measured."""
    named = [o.split(" ", 1)[1] for o in res["objectives"]] + [c.split(" ", 1)[0] for c in res["constraints"]]
    measured = [m for m in QEMU_METRICS if any(m in p["figures"] for p in res["points"])]
    return list(dict.fromkeys(named + measured))


def front_table(res: dict) -> str:
    """The front as an aligned table: each point's axis values and its objective and constraint figures."""
    metrics = shown_metrics(res)
    keys = list(res["axes"])
    head = ["#"] + keys + metrics
    body = [[str(i) + ("*" if i == res["best"] else "")] + [res["points"][i]["settings"][k] for k in keys]
            + [_fmt(m, res["points"][i]["figures"].get(m)) for m in metrics] for i in res["front"]]
    widths = [max(len(r[j]) for r in [head] + body) for j in range(len(head))]
    num = [False] * (1 + len(keys)) + [True] * len(metrics)
    line = lambda r: "  ".join(c.rjust(w) if n else c.ljust(w) for c, w, n in zip(r, widths, num)).rstrip()  # noqa: E731
    c = res["counts"]
    out = [f"{res['sweep']}: {len(res['points'])} points: {c['ok']} feasible, {c['infeasible']} infeasible, "
           f"{c['failed']} failed" + "".join(f", {c[s]} {s}" for s in STATUSES[3:] if c.get(s))
           + f"; Pareto front of {len(res['front'])} ({', '.join(res['objectives'])}; * best in the first)",
           line(head)] + [line(r) for r in body]
    return "\n".join(out)


def _scatter(res: dict, mx: str, my: str, size: int = 320) -> str:
    left, bottom, top, right, inset = 70, 40, 10, 12, 10  # margins; points kept `inset` px off the frame
    pts = [p for p in res["points"] if p["figures"].get(mx) is not None and p["figures"].get(my) is not None]
    if not pts:
        return ""
    xs, ys = [p["figures"][mx] for p in pts], [p["figures"][my] for p in pts]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    w, h = size - left - right, size - top - bottom
    sx = lambda v: left + inset + (v - x0) / ((x1 - x0) or 1) * (w - 2 * inset)  # noqa: E731
    sy = lambda v: top + h - inset - (v - y0) / ((y1 - y0) or 1) * (h - 2 * inset)  # noqa: E731
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" class="plot">',
           f'<rect x="{left}" y="{top}" width="{w}" height="{h}" fill="#fafafa" stroke="#bbb"/>',
           f'<text x="{left + w / 2:.0f}" y="{size - 6}" text-anchor="middle">{html.escape(mx)}</text>',
           f'<text x="12" y="{top + h / 2:.0f}" text-anchor="middle" transform="rotate(-90 12 {top + h / 2:.0f})">'
           f'{html.escape(my)}</text>',
           f'<text x="{sx(x0):.0f}" y="{top + h + 14}" class="tick" text-anchor="middle">{_fmt(mx, x0)}</text>',
           f'<text x="{sx(x1):.0f}" y="{top + h + 14}" class="tick" text-anchor="middle">{_fmt(mx, x1)}</text>',
           f'<text x="{left - 4}" y="{sy(y0) + 3:.0f}" class="tick" text-anchor="end">{_fmt(my, y0)}</text>',
           f'<text x="{left - 4}" y="{sy(y1) + 3:.0f}" class="tick" text-anchor="end">{_fmt(my, y1)}</text>']
    for p in sorted(pts, key=lambda p: p["pareto"]):  # the front drawn last, on top
        cls = "front" if p["pareto"] else ("ok" if p["status"] == "ok" else "infeasible")
        tip = html.escape(f"#{p['index']} " + ", ".join(f"{k}={v}" for k, v in p["settings"].items())
                          + f"\n{mx} {_fmt(mx, p['figures'][mx])}, {my} {_fmt(my, p['figures'][my])}")
        out.append(f'<circle cx="{sx(p["figures"][mx]):.1f}" cy="{sy(p["figures"][my]):.1f}" r="{5 if p["pareto"] else 3.5}" '
                   f'class="{cls}"><title>{tip}</title></circle>')
    out.append("</svg>")
    return "\n".join(out)


STYLE = """body{font:14px system-ui,sans-serif;margin:24px;color:#222}
.plot{margin:6px;font-size:12px} .tick{fill:#666;font-size:10px}
circle.front{fill:#d62728;stroke:#7a1010} circle.ok{fill:#1f77b4;opacity:.55} circle.infeasible{fill:none;stroke:#999}
table{border-collapse:collapse;font-size:12px} td,th{padding:2px 8px;border-bottom:1px solid #eee;text-align:right}
td.s,th.s{text-align:left} tr.front{background:#fde8e8} .legend span{margin-right:16px}"""


def explore_html(res: dict) -> str:
    metrics = shown_metrics(res)
    objs = [o.split(" ", 1)[1] for o in res["objectives"]]
    plots = [_scatter(res, a, b) for a, b in itertools.combinations(objs, 2)]
    keys = list(res["axes"])
    rows = []
    for p in res["points"]:
        cells = "".join(f'<td class="s">{html.escape(p["settings"][k])}</td>' for k in keys)
        cells += "".join(f"<td>{_fmt(m, p['figures'].get(m))}</td>" for m in metrics)
        note = p.get("error", "").splitlines()[0] if p.get("error") else ", ".join(p.get("violates", []))
        note = note or NOTES.get(p["status"], "").format(**p)
        rows.append(f'<tr class="{"front" if p["pareto"] else ""}"><td>{p["index"]}{"*" if p["index"] == res["best"] else ""}</td>'
                    f'{cells}<td class="s">{p["status"]}</td><td class="s">{html.escape(note)}</td></tr>')
    c = res["counts"]
    counts = f"{c['ok']} feasible, {c['infeasible']} infeasible, {c['failed']} failed" + "".join(
        f", {c[s]} {s}" for s in STATUSES[3:] if c.get(s))
    head = ("<tr><th>#</th>" + "".join(f'<th class="s">{html.escape(k)}</th>' for k in keys)
            + "".join(f"<th>{html.escape(m)}</th>" for m in metrics) + '<th class="s">status</th><th class="s">note</th></tr>')
    return "\n".join([
        "<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">', f"<title>deeploy explore: {html.escape(res['sweep'])}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{html.escape(res['sweep'])}</h1>",
        f"<p>{html.escape(res['deployment'])}: {len(res['points'])} points, {counts}. Objectives: "
        f"{html.escape(', '.join(res['objectives']))}. Constraints: {html.escape(', '.join(res['constraints']) or 'none')}.</p>",
        f"<h2>Pareto front: {len(res['front'])} points (* best in the first objective)</h2><table>{head}",
        *[rows[i] for i in res["front"]], "</table>",
        '<p class="legend"><span style="color:#d62728">&#9679; Pareto front</span><span style="color:#1f77b4">&#9679; feasible</span>'
        "<span>&#9675; infeasible</span> (hover a point for its settings)</p>",
        "<div>" + "".join(plots) + "</div>",
        f"<h2>All points</h2><table>{head}",
        *rows, "</table></body></html>", ""])
