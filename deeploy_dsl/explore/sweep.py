"""A `.sweep` file (grammar/sweep.lark): the deployment to explore, the settings to vary (axes over any `-D` key),
the constraints a point must meet and the objectives that rank the feasible points.

    sweep stories260k-space
    deployment "stories260k.dply"                 # relative to the .sweep file
    set  quantize.activations = int8 calibrate(samples, tokens = 1024)   # the same for every point
    axis memory.L1 = 32KiB, 64KiB, 128KiB
    axis map.default = cluster(cores = 1|2|4|8)  # `a|b` inside a value: one value per alternative
    axis map.layers[*].mlp.* = cluster, npu, auto
    axis quantize.weights = int8 per_channel, "int4 per_group(32) gptq"   # quotes group a value
    constraint L2 <= 1536KiB
    constraint top1 >= 0.95
    maximise tokens_per_s
    minimise uj_per_token
    eval sequences 8 length 128 seed 1           # the held-out eval behind top1, kl and ppl_ratio
    search random 40 seed 1                      # optional: 40 points of the grid drawn with seed 1, not all
    search halving 3                             # optional: successive halving over the eval (halving.py)

The grid is every combination of the axes, the first axis varying slowest (or a seeded random sample of it, kept
in grid order); each point is a list of `-D` settings applied after the `set` lines.
"""
from __future__ import annotations

import itertools
import random
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark

from ..errors import DeeployError, Diagnostic, Pos, SpecError, SyntaxErr

# figures of the cost model (report.json), cheap; per memory level NAME also NAME (bytes used), NAME_weights, NAME_arena
COST_METRICS = ("cycles_per_token", "tokens_per_s", "uj_per_token", "dma_bytes", "macs")
# figures of the held-out eval, expensive: computed only for points that meet every cost constraint
EVAL_METRICS = ("top1", "kl", "ppl_ratio")
# exact RV32 instructions per decode token under QEMU (--measure qemu), the most expensive: feasible points only
QEMU_METRICS = ("instructions", "instructions_busiest")
UNITS = {"B": 1, "KiB": 1024, "MiB": 1024 * 1024, "%": 0.01}
DEFAULT_EVAL = {"sequences": 8, "length": 128, "seed": 1}


@dataclass(frozen=True)
class Axis:
    key: str
    values: tuple[str, ...]
    pos: Pos


@dataclass(frozen=True)
class Constraint:
    metric: str
    op: str  # <=, >=, <, >
    bound: float
    pos: Pos

    def holds(self, figures: dict) -> bool:
        v = figures.get(self.metric)
        if v is None:
            return False
        return {"<=": v <= self.bound, ">=": v >= self.bound, "<": v < self.bound, ">": v > self.bound}[self.op]

    def __str__(self) -> str:
        bound = str(int(self.bound)) if self.bound.is_integer() else f"{self.bound:g}"
        if self.metric not in COST_METRICS + EVAL_METRICS + QEMU_METRICS:  # bytes of a memory level, as written
            for unit in ("MiB", "KiB"):
                if self.bound and self.bound % UNITS[unit] == 0:
                    bound = f"{int(self.bound // UNITS[unit])}{unit}"
                    break
        return f"{self.metric} {self.op} {bound}"


@dataclass(frozen=True)
class Objective:
    metric: str
    maximise: bool

    def __str__(self) -> str:
        return f"{'maximise' if self.maximise else 'minimise'} {self.metric}"


@dataclass(frozen=True)
class Sweep:
    name: str
    path: Path  # the .sweep file
    deployment: Path
    sets: tuple[str, ...]  # -D settings every point shares
    axes: tuple[Axis, ...]
    constraints: tuple[Constraint, ...]
    objectives: tuple[Objective, ...]
    eval: dict  # sequences, length, seed
    sample: tuple[int, int] | None = None  # (points, seed) of `search random`
    halving: int | None = None  # ETA of `search halving` (halving.py)

    @property
    def needs_eval(self) -> bool:
        used = [c.metric for c in self.constraints] + [o.metric for o in self.objectives]
        return any(m in EVAL_METRICS for m in used)

    @property
    def uses_qemu(self) -> bool:
        return any(m in QEMU_METRICS for m in [c.metric for c in self.constraints] + [o.metric for o in self.objectives])

    def points(self) -> list[tuple[str, ...]]:
        """The grid: each point's -D list (the shared settings, then one value per axis)."""
        grid = [self.sets + tuple(f"{a.key}={v}" for a, v in zip(self.axes, combo))
                for combo in itertools.product(*(a.values for a in self.axes))]
        if self.sample is None or self.sample[0] >= len(grid):
            return grid
        return [grid[i] for i in sorted(random.Random(self.sample[1]).sample(range(len(grid)), self.sample[0]))]

    def settings(self, point: tuple[str, ...]) -> dict:
        """A point's axis values by key (what tells the points apart)."""
        return dict(ov.split("=", 1) for ov in point[len(self.sets):])


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("deeploy_dsl.grammar").joinpath("sweep.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _tree(text: str, name: str) -> lark.Tree:
    try:
        return _parser().parse(text if text.endswith("\n") else text + "\n")
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        found = "end of file" if tok.type == "$END" else ("end of line" if tok.type == "_NL" else repr(str(tok)))
        line, col = (e.line, max(e.column, 1)) if e.line >= 1 else (text.count("\n") + 1, 1)
        raise SyntaxErr([Diagnostic(Pos(name, line, col, text), f"unexpected {found}",
                                    hint="statements: sweep, deployment, set, axis, constraint, maximise, minimise, eval, search")]) from None
    except lark.exceptions.UnexpectedCharacters as e:
        raise SyntaxErr([Diagnostic(Pos(name, e.line, e.column, text), f"unexpected character {text[e.pos_in_stream]!r}",
                                    hint='a value with a comma or "#" goes in double quotes')]) from None
    except lark.exceptions.UnexpectedEOF:
        raise SyntaxErr([Diagnostic(Pos(name, text.count("\n") + 1, 1, text), "unexpected end of file")]) from None


def _alternatives(value: str) -> list[str]:
    """`cluster(cores = 1|2|4)` -> one value per alternative (every `a|b|c` group, left to right)."""
    m = re.search(r"[A-Za-z0-9_.]+(?:\s*\|\s*[A-Za-z0-9_.]+)+", value)
    if m is None:
        return [value]
    head, tail = value[:m.start()], value[m.end():]
    return [v for alt in m.group(0).split("|") for v in _alternatives(head + alt.strip() + tail)]


def _value(t: lark.Tree) -> str:
    tok = t.children[0]
    return tok[1:-1] if tok.type == "STRING" else str(tok).rstrip()


def load_sweep(path: Path) -> Sweep:
    """Parse and check a `.sweep` file: every axis value is tried on the deployment, so a bad one is reported at
    its place in the sweep file before anything is built."""
    try:
        text = Path(path).read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([Diagnostic(Pos(str(path)), f"cannot read the sweep file: {e}")]) from None
    name = str(path)
    at = lambda node: Pos(name, node.line, node.column, text)  # noqa: E731
    fields: dict = {"name": Path(path).stem, "deployment": None, "sets": [], "axes": [], "constraints": [],
                    "objectives": [], "eval": dict(DEFAULT_EVAL), "sample": None, "halving": None}
    value_pos: list[tuple[str, str, Pos]] = []  # (key, value, where) for every value, checked below
    errs: list[Diagnostic] = []
    for st in _tree(text, name).children:
        kind, ch = st.data, st.children
        if kind == "sweep":
            fields["name"] = str(ch[0])
        elif kind == "deployment":
            fields["deployment"] = (Path(path).parent / ch[0][1:-1], at(ch[0]))
        elif kind == "set":
            fields["sets"].append(f"{ch[0]}={_value(ch[1])}")
            value_pos.append((str(ch[0]), _value(ch[1]), at(ch[1].children[0])))
        elif kind == "axis":
            vals = [v for t in ch[1:] for v in _alternatives(_value(t))]
            for t in ch[1:]:
                for v in _alternatives(_value(t)):
                    value_pos.append((str(ch[0]), v, at(t.children[0])))
            if len(set(vals)) != len(vals):
                errs.append(Diagnostic(at(ch[0]), f"axis {ch[0]} lists a value twice"))
            if any(a.key == str(ch[0]) for a in fields["axes"]):
                errs.append(Diagnostic(at(ch[0]), f"a second axis over {ch[0]}", hint="list every value on one axis line"))
            fields["axes"].append(Axis(str(ch[0]), tuple(vals), at(ch[0])))
        elif kind == "constraint":
            unit = UNITS[str(ch[3])] if len(ch) > 3 else 1
            fields["constraints"].append(Constraint(str(ch[0]), str(ch[1]), float(ch[2]) * unit, at(ch[0])))
        elif kind == "objective":
            fields["objectives"].append((Objective(str(ch[1]), str(ch[0]).startswith("maxim")), at(ch[1])))
        elif kind == "search":
            fields["sample"] = (int(ch[0]), int(ch[1]) if len(ch) > 1 else 0)
            if fields["sample"][0] < 1:
                errs.append(Diagnostic(at(ch[0]), "a random search needs at least 1 point"))
        elif kind == "halving":
            fields["halving"] = int(ch[0])
            if fields["halving"] < 2:
                errs.append(Diagnostic(at(ch[0]), "successive halving keeps 1/ETA of the points per rung: ETA is at least 2"))
        elif kind == "eval":
            for arg in ch:
                fields["eval"][str(arg.children[0])] = int(arg.children[1])
    if fields["deployment"] is None:
        raise SpecError([Diagnostic(Pos(name, 1, 1, text), "the sweep names no deployment",
                                    hint='add a line: deployment "my.dply" (relative to the sweep file)')])
    dply, dply_pos = fields["deployment"]
    if not dply.is_file():
        raise SpecError([Diagnostic(dply_pos, f"deployment {dply} does not exist")])
    if not fields["axes"]:
        errs.append(Diagnostic(Pos(name, 1, 1, text), "the sweep has no axis", hint="e.g. axis memory.L1 = 64KiB, 128KiB"))
    if not fields["objectives"]:
        errs.append(Diagnostic(Pos(name, 1, 1, text), "the sweep has no objective", hint="e.g. maximise tokens_per_s"))
    levels = _check_values(dply, fields["sets"], value_pos, errs)
    known = COST_METRICS + EVAL_METRICS + QEMU_METRICS + tuple(f"{lv}{s}" for lv in levels for s in ("", "_weights", "_arena"))
    for metric, where in [(c.metric, c.pos) for c in fields["constraints"]] + [(o.metric, p) for o, p in fields["objectives"]]:
        if metric not in known:
            errs.append(Diagnostic(where, f"unknown figure {metric!r}", hint="one of " + ", ".join(known)))
    if errs:
        raise SpecError(errs)
    return Sweep(fields["name"], Path(path), dply, tuple(fields["sets"]), tuple(fields["axes"]),
                 tuple(fields["constraints"]), tuple(o for o, _ in fields["objectives"]), fields["eval"], fields["sample"],
                 fields["halving"])


def _check_values(dply: Path, sets: list[str], values: list[tuple[str, str, Pos]], errs: list[Diagnostic]) -> tuple:
    """Interpret the deployment with each value as its -D (the shared settings first); an error is reported at the
    value in the sweep file. Returns the memory level names of the deployment."""
    from ..frontend.interpret import load_deployment
    levels: tuple = ()
    try:
        levels = tuple(lv.name for lv in load_deployment(dply, sets).memory)
    except DeeployError as e:
        errs.append(Diagnostic(values[0][2] if values else Pos(str(dply)), "the deployment with the set lines fails: "
                               + e.diagnostics[0].message))
        return levels
    for key, value, where in values:
        try:
            load_deployment(dply, sets + [f"{key}={value}"])
        except DeeployError as e:
            errs.append(Diagnostic(where, f"{key} = {value}: {e.diagnostics[0].message}", hint=e.diagnostics[0].hint))
    return levels
