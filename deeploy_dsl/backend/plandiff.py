"""Review-friendly summary of what changed between two plan.yaml files.

`diff_plans(a, b)` compares two parsed plans and returns a short list of lines in a fixed order:
header and model/quantization keys, memory levels (with signed byte deltas), steps added/removed
(matched by op name, never by index), per-step field changes, then one-paragraph summaries of
buffers, scales and constants; then the prefill plan's, summarised the same way on lines that start
with `prefill`. Changes that repeat across layers print once, as `layers[*].attn.q` (every layer) or
`layers[0..2,4].attn.q`; summaries show `few` examples (None: all). Unknown keys are diffed generically;
missing ones are treated as absent, so older and newer plans can be compared.
"""
from __future__ import annotations

import re
from itertools import groupby
from pathlib import Path

import yaml

STEP_KEYS = ("engine", "cores", "rule", "kernel", "tiles", "dma_bytes", "macs")
STEP_SKIP = {"index", "op", "args", "why", "staging", "stream"}  # lists named per layer: summarised, not printed
MEM_KEYS = (("budget_bytes", "budget"), ("size_bytes", "size"), ("capacity_bytes", "capacity"), ("arena_bytes", "arena"),
            ("lower_bound_bytes", "lower bound"), ("weight_bytes", "weights"))
BUF_KEYS = ("level", "offset", "size")
DELTA_KEYS = {"dma_bytes", "macs", "size", "offset"}   # numeric fields where the signed change reads well
SCALE_TOL = 0.01   # relative change below this is calibration noise
FEW = 3            # examples shown per summary (deeploy diff --all: every one)
WIDTH = 160        # format_diff's longest line: what a terminal shows
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_LAYERED = re.compile(r"^(.*?)\.(\d+)(\..*)?$")


def load_plan(path) -> dict:
    """Parse a plan.yaml, given the file or the build directory holding it. ValueError if absent or unparseable."""
    p = Path(path)
    if p.is_dir():
        p = p / "plan.yaml"
    if not p.is_file():
        raise ValueError(f"no plan found at {path} (expected a build directory or a plan.yaml file)")
    text = p.read_text(encoding="utf-8", errors="replace")
    try:
        data = yaml.load(text, Loader=_LOADER)
    except yaml.YAMLError as e:
        raise ValueError(f"{p}: cannot parse plan: {str(e).splitlines()[0]}") from None
    if not isinstance(data, dict) or not any(k in data for k in ("steps", "memory", "buffers")):
        raise ValueError(f"{p}: not a deeploy plan (no steps, memory or buffers)")
    return data


def _fmt(v) -> str:
    if v is None:
        return "(none)"
    if isinstance(v, bool):
        return str(v).lower()
    if isinstance(v, int):
        return f"{v:,}"
    if isinstance(v, float):
        return f"{v:.6g}"
    if isinstance(v, (list, tuple)):
        return "[" + ", ".join(_fmt(x) for x in v) + "]"
    if isinstance(v, dict):
        return "{" + ", ".join(f"{k}: {_fmt(x)}" for k, x in v.items()) + "}"
    return str(v)


def _change(key: str, old, new, unit: str = "", delta: bool = False) -> str:
    s = f"{key} {_fmt(old)}{unit} -> {_fmt(new)}{unit}"
    if (delta or unit) and all(isinstance(v, int) and not isinstance(v, bool) for v in (old, new)):
        s += f" ({new - old:+,}{unit})"
    return s


def _keys(a: dict, b: dict) -> list:
    return list(dict.fromkeys([*a, *b]))     # a's order, then keys only b has


def _num(v):
    try:
        return float(v)
    except (TypeError, ValueError):
        return None


def _runs(ids: list[int]) -> str:
    runs = [[i for _, i in g] for _, g in groupby(enumerate(ids), lambda t: t[1] - t[0])]
    return ",".join(str(r[0]) if len(r) == 1 else f"{r[0]}..{r[-1]}" for r in runs)


def _stream(step: dict) -> str:
    """Where a step's first tile comes from, relative to the step (the same words in every layer)."""
    st = step.get("stream")
    return f"fetched {step['index'] - st['fetched_at']} steps early" if st else "fetched by the step"


def _pairs(items: list[tuple[str, str]], n_layers: int | None) -> list[tuple[str, str]]:
    groups: dict[tuple, list] = {}
    for name, desc in items:
        m = _LAYERED.match(name)
        key = (m.group(1), m.group(3) or "", desc) if m else (name, None, desc)
        groups.setdefault(key, []).append((int(m.group(2)), name) if m else (None, name))
    out = []
    for key, members in groups.items():     # dicts keep first-seen order, so the plan's order
        if key[1] is None or len(members) == 1:
            out.extend((name, key[2]) for _, name in members)
            continue
        ids = sorted({i for i, _ in members})
        sel = "*" if n_layers and ids == list(range(n_layers)) else _runs(ids)
        out.append((f"{key[0]}[{sel}]{key[1]}", key[2]))
    return out


def group(items: list[tuple[str, str]], n_layers: int | None) -> list[str]:
    """[(name, description)] in display order -> lines, folding per-layer repeats of one description."""
    return [f"{label}: {desc}" if desc else label for label, desc in _pairs(items, n_layers)]


def _mapping(a, b, prefix: str) -> list[str]:
    a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
    return [_change(f"{prefix}{k}:", a.get(k), b.get(k)) for k in _keys(a, b) if a.get(k) != b.get(k)]


def _memory(a: dict, b: dict) -> list[str]:
    out = []
    for lvl in _keys(a, b):
        la, lb = a.get(lvl), b.get(lvl)
        if la is None or lb is None:
            what = "added" if la is None else "removed"
            size = (lb or la or {}).get("budget_bytes", (lb or la or {}).get("size_bytes"))  # size_bytes: older plans
            out.append(f"memory level {lvl} {what}" + (f" ({_fmt(size)} B)" if size is not None else ""))
            continue
        out += [_change(f"{lvl} {lbl}", la.get(k), lb.get(k), " B") for k, lbl in MEM_KEYS if la.get(k) != lb.get(k)]
        out += [_change(f"{lvl} {k}", la.get(k), lb.get(k)) for k in _keys(la, lb)
                if k not in dict(MEM_KEYS) and la.get(k) != lb.get(k)]
    return out


def _steps(a: list, b: list, n_layers, few: int | None = FEW) -> list[str]:
    sa = {s.get("op"): s for s in a if isinstance(s, dict)}
    sb = {s.get("op"): s for s in b if isinstance(s, dict)}
    out = [f"step removed: {x}" for x in group([(op, "") for op in sa if op not in sb], n_layers)]
    added = [(op, f"{s.get('rule', '?')} on {s.get('engine', '?')}") for op, s in sb.items() if op not in sa]
    out += [f"step added: {x}" for x in group(added, n_layers)]
    common_a, common_b = [op for op in sa if op in sb], [op for op in sb if op in sa]
    if common_a != common_b:
        first = next(x for x, y in zip(common_b, common_a) if x != y)
        out.append(f"step order changed (first at {first})")
    changed = []
    for op in common_b:
        x, y = sa[op], sb[op]
        extra = sorted(k for k in set(x) | set(y) if k not in STEP_SKIP and k not in STEP_KEYS)
        parts = [_change(k, x.get(k), y.get(k), delta=k in DELTA_KEYS)
                 for k in (*STEP_KEYS, *extra) if x.get(k) != y.get(k)]
        if x.get("args") != y.get("args"):
            parts.append("args changed")
        if len(x.get("staging", [])) != len(y.get("staging", [])):
            parts.append(f"staging buffers {len(x.get('staging', []))} -> {len(y.get('staging', []))}")
        if _stream(x) != _stream(y):
            parts.append(f"first tile {_stream(x)} -> {_stream(y)}")
        if parts:
            changed.append((op, ", ".join(parts)))
    pairs = _pairs(changed, n_layers)
    per_desc = {d: sum(1 for _, x in pairs if x == d) for _, d in pairs}
    done = set()
    for label, d in pairs:       # one change on many different ops (a target switch): one line
        if few is None or per_desc[d] <= few:
            out.append(f"{label}: {d}")
        elif d not in done:
            done.add(d)
            n, eg = sum(1 for _, x in changed if x == d), [lb for lb, x in pairs if x == d]
            out.append(f"all {n} steps: {d}" if n == len(common_b) else
                       f"{n} steps: {d} ({', '.join(eg[:few])}, ...)")
    return out


def _summary(title: str, items: list[tuple[str, str]], n_layers, few: int | None) -> list[str]:
    if not items:
        return []
    lines = group(items, n_layers)
    out = [f"{title}: {len(items)}"] + [f"  {x}" for x in lines[:few]]
    if few is not None and len(lines) > few:
        out.append(f"  ... and {len(lines) - few} more (deeploy diff --all shows them)")
    return out


def _buffers(a: list, b: list, n_layers, few: int | None = FEW, title: str = "buffers") -> list[str]:
    ba = {x.get("name"): x for x in a if isinstance(x, dict)}
    bb = {x.get("name"): x for x in b if isinstance(x, dict)}
    moved = []
    for name, y in bb.items():
        x = ba.get(name)
        if x is not None:
            parts = [_change(k, x.get(k), y.get(k), delta=k in DELTA_KEYS) for k in BUF_KEYS if x.get(k) != y.get(k)]
            if parts:
                moved.append((name, ", ".join(parts)))
    gone = [(n, "") for n in ba if n not in bb]
    new = [(n, f"{y.get('level')} @ {_fmt(y.get('offset'))}, {_fmt(y.get('size'))} B")
           for n, y in bb.items() if n not in ba]
    return (_summary(f"{title} moved/resized", moved, n_layers, few) + _summary(f"{title} removed", gone, n_layers, few)
            + _summary(f"{title} added", new, n_layers, few))


def _scales(a: dict, b: dict, few: int | None = FEW) -> list[str]:
    a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
    rel = []
    for k in sorted(set(a) & set(b)):
        x, y = _num(a[k]), _num(b[k])
        if x is None or y is None or x == y:
            continue
        r = abs(y - x) / abs(x) if x else float("inf")
        if r > SCALE_TOL:
            rel.append((-r, k, x, y))
    out = []
    if rel:
        rel.sort()
        top = ", ".join(f"{k} {x:.6g} -> {y:.6g} ({(y - x) / abs(x):+.1%})" if x else f"{k} {x:.6g} -> {y:.6g}"
                        for _, k, x, y in rel[:few])
        out.append(f"scales: {len(rel)} changed by >{SCALE_TOL:.0%}; largest: {top}")
    for what, names in (("added", sorted(set(b) - set(a))), ("removed", sorted(set(a) - set(b)))):
        if names:
            more = ", ..." if few is not None and len(names) > few else ""
            out.append(f"scales {what}: {len(names)} ({', '.join(names[:few])}{more})")
    return out


def _constants(a: list, b: list) -> list[str]:
    ca = {c.get("name"): c for c in a if isinstance(c, dict)}
    cb = {c.get("name"): c for c in b if isinstance(c, dict)}
    added, removed = sorted(set(cb) - set(ca)), sorted(set(ca) - set(cb))
    changed = sorted(n for n in set(ca) & set(cb) if ca[n] != cb[n])
    if not (added or removed or changed):
        return []
    total = sum(_num(c.get("bytes")) or 0 for c in cb.values()) - sum(_num(c.get("bytes")) or 0 for c in ca.values())
    parts = [f"{len(v)} {k}" for k, v in (("added", added), ("removed", removed), ("changed", changed)) if v]
    return [f"constants: {', '.join(parts)} ({int(total):+,} B)"]


def _prefill(a, b, n_layers, few: int | None) -> list[str]:
    """The prompt's plan, summarised as the decode plan is (its steps carry a mode; its buffers live beside them)."""
    a, b = a if isinstance(a, dict) else {}, b if isinstance(b, dict) else {}
    if not a or not b:
        return [] if a == b else [f"prefill plan {'added' if not a else 'removed'}"]
    out = [_change(f"prefill {k}:", a.get(k), b.get(k)) for k in _keys(a, b)
           if k not in ("steps", "buffers") and a.get(k) != b.get(k)]
    out += [f"prefill {x}" for x in _steps(a.get("steps") or [], b.get("steps") or [], n_layers, few)]
    return out + _buffers(a.get("buffers") or [], b.get("buffers") or [], n_layers, few, "prefill buffers")


def diff_plans(a: dict, b: dict, few: int | None = FEW) -> list[str]:
    """What changed from plan `a` to plan `b`, as lines in a fixed order; [] when equivalent. Summaries show `few`
    examples each (None: every change)."""
    a, b = a or {}, b or {}
    n_layers = (b.get("model") or {}).get("layers") or (a.get("model") or {}).get("layers")
    n_layers = n_layers if isinstance(n_layers, int) else None
    known = ("memory", "scales", "steps", "buffers", "constants", "prefill")
    out = []
    for k in _keys(a, b):
        if k in known:
            continue
        x, y = a.get(k), b.get(k)
        if isinstance(x, dict) or isinstance(y, dict):
            out += _mapping(x, y, f"{k}.")
        elif x != y:
            out.append(_change(f"{k}:", x, y))
    out += _memory(a.get("memory") or {}, b.get("memory") or {})
    out += _steps(a.get("steps") or [], b.get("steps") or [], n_layers, few)
    out += _buffers(a.get("buffers") or [], b.get("buffers") or [], n_layers, few)
    out += _scales(a.get("scales") or {}, b.get("scales") or {}, few)
    out += _constants(a.get("constants") or [], b.get("constants") or [])
    return out + _prefill(a.get("prefill"), b.get("prefill"), n_layers, few)


def _clip(line: str, width: int) -> str:
    return line if len(line) <= width else f"{line[:width - 24]}... (+{len(line) - width + 24:,} chars)"


def format_diff(lines: list[str], width: int = WIDTH) -> str:
    """The lines for a terminal: none longer than `width` (a long value is cut, saying how much is left out)."""
    return "\n".join(_clip(x, width) for x in lines) if lines else "no changes"
