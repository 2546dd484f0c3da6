"""SVG pictures of the static arenas in a plan: time (step index) across, address up.

Each buffer is a box spanning steps [first_step, last_step + 1) and bytes [offset, offset + size),
the way allocation plans are drawn on a whiteboard. Colours come from the buffer's base name
(layer numbers dropped, so `layers.3.attn.q` matches `layers.0.attn.q`) through zlib.crc32, and
all coordinates are printed with fixed precision, so the same plan always renders byte-identically.
Persistent buffers (e.g. the KV cache) are hatched. Standard library only.
"""
from __future__ import annotations

import colorsys
import re
import zlib
from xml.sax.saxutils import escape

W_MIN, W_MAX, PX_PER_STEP, H = 960, 1600, 12, 540   # wide enough for one label per step, within reason
LEFT, RIGHT, TOP, BOTTOM = 84, 150, 48, 52      # the right margin holds the arena / lower-bound labels
FONT = 'font-family="DejaVu Sans, Helvetica, Arial, sans-serif"'
CHAR_W, LABEL_PX = 6.2, 10                      # rough glyph width at LABEL_PX for the fits-in-box test


def _f(x: float) -> str:
    return f"{x:.2f}"


def _bytes(n: int) -> str:
    return f"{n:,} B"


def base_name(name: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", "", name)


def colour(name: str) -> str:
    """A fixed pastel for the buffer's base name: the same on every run, machine and Python."""
    h = zlib.crc32(base_name(name).encode()) & 0xFFFFFFFF
    r, g, b = colorsys.hls_to_rgb((h % 360) / 360.0, 0.72 + (h >> 9) % 8 / 100.0, 0.55 + (h >> 12) % 16 / 100.0)
    return "#%02x%02x%02x" % (round(r * 255), round(g * 255), round(b * 255))


def _nice_steps(n: int) -> int:
    for m in (1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000):
        if n / m <= 13:
            return m
    return 10 ** len(str(n))


def _nice_bytes(n: int) -> int:
    step = 1
    while n / step > 10:
        step *= 2
    return step


def _addr(n: int, step: int) -> str:
    if n == 0:
        return "0"
    if step >= 1 << 20 and n % (1 << 20) == 0:
        return f"{n >> 20:,} MiB"
    if step >= 1024 and n % 1024 == 0:
        return f"{n >> 10:,} KiB"
    return f"{n:,}"


def _int(v, default: int = 0) -> int:
    try:
        return int(v)
    except (TypeError, ValueError):
        return default


def memory_map_svg(plan: dict, level: str) -> str:
    """One arena of `plan` (a parsed plan.yaml) as a standalone SVG document."""
    mem = (plan.get("memory") or {}).get(level) or {}
    bufs = [b for b in plan.get("buffers") or [] if isinstance(b, dict) and b.get("level") == level]
    if not mem and not bufs:
        raise ValueError(f"no memory level {level!r} in this plan (levels: {', '.join(plan.get('memory') or {}) or 'none'})")
    arena, lower = _int(mem.get("arena_bytes")), _int(mem.get("lower_bound_bytes"))
    n_steps = max([len(plan.get("steps") or [])] + [_int(b.get("last_step")) + 1 for b in bufs] + [1])
    top_addr = max([arena, lower, 1] + [_int(b.get("offset")) + _int(b.get("size")) for b in bufs])
    ystep = _nice_bytes(top_addr)
    y_max = max(top_addr * 1.06, ystep)
    W = min(max(W_MIN, LEFT + RIGHT + PX_PER_STEP * n_steps), W_MAX)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM
    x = lambda s: LEFT + pw * s / n_steps                                  # noqa: E731
    y = lambda a: TOP + ph * (1.0 - a / y_max)                             # noqa: E731

    name = plan.get("deployment") or "plan"
    title = f"{name}: {level} arena {_bytes(arena)}, lower bound {_bytes(lower)}"
    budget = mem.get("budget_bytes", mem.get("size_bytes"))  # size_bytes: plans before the rename
    if budget is not None:
        title += f", budget {_bytes(_int(budget))}"
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" viewBox="0 0 {W} {H}" {FONT}>',
           f"<title>{escape(title)}</title>", "<defs>"]
    persistent = sorted({colour(b.get("name", "")) for b in bufs if b.get("persistent")})
    for c in persistent:
        out.append(f'<pattern id="hatch-{c[1:]}" width="8" height="8" patternUnits="userSpaceOnUse" '
                   f'patternTransform="rotate(45)"><path d="M0,0H8V8H0Z" fill="{c}"/>'
                   f'<path d="M0,0V8" stroke="#555" stroke-width="2.5" stroke-opacity="0.45"/></pattern>')
    out += ["</defs>", f'<path d="M0,0H{W}V{H}H0Z" fill="white"/>',
            f'<text x="{W / 2:.2f}" y="24" text-anchor="middle" font-size="15" font-weight="bold">{escape(title)}</text>']

    # grid, ticks and axes
    g = ['<g class="axes" font-size="10" fill="#333">']
    xs = _nice_steps(n_steps)
    for s in range(0, n_steps + 1, xs):
        g.append(f'<path d="M{_f(x(s))},{_f(TOP)}V{_f(TOP + ph)}" stroke="#eee"/>'
                 f'<path d="M{_f(x(s))},{_f(TOP + ph)}v5" stroke="#333"/>'
                 f'<text x="{_f(x(s))}" y="{_f(TOP + ph + 17)}" text-anchor="middle">{s}</text>')
    a = 0
    while a <= y_max:
        g.append(f'<path d="M{_f(LEFT)},{_f(y(a))}H{_f(LEFT + pw)}" stroke="#eee"/>'
                 f'<path d="M{_f(LEFT - 5)},{_f(y(a))}h5" stroke="#333"/>'
                 f'<text x="{_f(LEFT - 8)}" y="{_f(y(a) + 3.5)}" text-anchor="end">{_addr(a, ystep)}</text>')
        a += ystep
    g.append(f'<path d="M{_f(LEFT)},{_f(TOP)}V{_f(TOP + ph)}H{_f(LEFT + pw)}" fill="none" stroke="#333"/>')
    g.append(f'<text x="{_f(LEFT + pw / 2)}" y="{H - 12}" text-anchor="middle" font-size="12">step (time)</text>')
    g.append(f'<text transform="translate(16,{_f(TOP + ph / 2)}) rotate(-90)" text-anchor="middle" '
             f'font-size="12">address in {escape(level)} (bytes)</text></g>')
    out += g

    # one box per buffer, low addresses first, then by time and name
    out.append('<g class="buffers" stroke="#333" stroke-width="0.6">')
    labels = []
    for b in sorted(bufs, key=lambda b: (_int(b.get("offset")), _int(b.get("first_step")), str(b.get("name")))):
        bname = str(b.get("name", "?"))
        off, size = _int(b.get("offset")), _int(b.get("size"))
        first, last = _int(b.get("first_step")), _int(b.get("last_step"), n_steps - 1)
        x0, x1, y0, y1 = x(first), x(last + 1), y(off + size), y(off)
        c = colour(bname)
        pers = bool(b.get("persistent"))
        paint = f'fill="url(#hatch-{c[1:]})" stroke-width="1.4"' if pers else f'fill="{c}"'
        shape = f", shape {b['shape']}" if b.get("shape") is not None else ""
        tip = (f"{bname}: [{off:,}, {off + size:,}) = {_bytes(size)}, steps {first}..{last}"
               f"{', ' + str(b['dtype']) if b.get('dtype') else ''}{shape}{', persistent' if pers else ''}")
        out.append(f'<rect class="{"buffer persistent" if pers else "buffer"}" x="{_f(x0)}" y="{_f(y0)}" '
                   f'width="{_f(max(x1 - x0, 0.5))}" height="{_f(max(y1 - y0, 0.5))}" {paint}>'
                   f'<title>{escape(tip)}</title></rect>')
        cx, cy, bw, bh = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
        for text in (bname, bname.rsplit(".", 1)[-1]):                 # full name, else its last part
            need = len(text) * CHAR_W + 6
            if need <= bw and bh >= LABEL_PX + 3:
                labels.append(f'<text x="{_f(cx)}" y="{_f(cy + LABEL_PX * 0.35)}" text-anchor="middle">{escape(text)}</text>')
                break
            if need <= bh and bw >= LABEL_PX + 1:                       # tall and narrow: write upwards
                labels.append(f'<text transform="translate({_f(cx + LABEL_PX * 0.35)},{_f(cy)}) rotate(-90)" '
                              f'text-anchor="middle">{escape(text)}</text>')
                break
    out.append("</g>")
    out.append(f'<g class="labels" font-size="{LABEL_PX}" fill="#222">' + "".join(labels) + "</g>")

    # the arena size (solid) and the lower bound (dashed), labelled in the right margin
    ends = f'x1="{_f(LEFT)}" x2="{_f(LEFT + pw)}"'
    out.append(f'<line class="arena" {ends} y1="{_f(y(arena))}" y2="{_f(y(arena))}" stroke="#c0392b" stroke-width="1.8"/>')
    out.append(f'<line class="lower-bound" {ends} y1="{_f(y(lower))}" y2="{_f(y(lower))}" stroke="#1f5fbf" '
               f'stroke-width="1.5" stroke-dasharray="6 4"/>')
    ya, yl = y(arena) + 3.5, y(lower) + 3.5
    if abs(ya - yl) < 13:                                                 # keep the two labels apart
        ya, yl = min(ya, yl) - 6.5, max(ya, yl) + 6.5
    out.append(f'<text x="{_f(LEFT + pw + 6)}" y="{_f(ya)}" font-size="10" fill="#c0392b">arena {_bytes(arena)}</text>')
    out.append(f'<text x="{_f(LEFT + pw + 6)}" y="{_f(yl)}" font-size="10" fill="#1f5fbf">lower bound {_bytes(lower)}</text>')
    if persistent:
        lx, ly = LEFT + pw + 6, TOP + ph - 14
        out.append(f'<path d="M{_f(lx)},{_f(ly - 9)}h12v12h-12Z" fill="url(#hatch-{persistent[0][1:]})" stroke="#333"/>'
                   f'<text x="{_f(lx + 17)}" y="{_f(ly + 1)}" font-size="10">persistent</text>')
    out.append("</svg>")
    return '<?xml version="1.0" encoding="UTF-8"?>\n' + "\n".join(out) + "\n"


def memory_maps(plan: dict) -> dict[str, str]:
    """{"memory_L1.svg": svg, ...} for every level whose arena holds anything."""
    levels = list(dict.fromkeys([*(plan.get("memory") or {}),
                                 *(b.get("level") for b in plan.get("buffers") or [] if isinstance(b, dict) and b.get("level"))]))
    out = {}
    for lvl in levels:
        mem = (plan.get("memory") or {}).get(lvl) or {}
        if _int(mem.get("arena_bytes")) > 0 or any(isinstance(b, dict) and b.get("level") == lvl for b in plan.get("buffers") or []):
            out[f"memory_{lvl}.svg"] = memory_map_svg(plan, lvl)
    return out
