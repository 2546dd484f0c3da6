"""model.c the way llama2.c's run.c reads: the layer's weights and the run's buffers as structs, one body per step.

Every step (or fork group) is printed once per plan and layer by the fragments of steps.c.j2, with a placeholder for
each thing that may differ between layers and between the decode and prefill plans: a buffer, a constant, an
integer parameter. Consecutive layers whose steps print the same form a run, and forward() (prefill()) loops over
it. Per run and placeholder, what differs decides where the value goes:
  * the same everywhere: written as it is (a weight array shared by all layers, an integer);
  * only between layers: a field of LayerWeights, in the `layers[]` table (weights, gains, multipliers, integer
    parameters, the layer's KV cache);
  * only between the plans: a field of RunState, `decode_state` or `prefill_state` (every activation buffer);
  * both: a buffer (the allocator placed a layer's differently, e.g. around the weight stream's early tiles) is a
    field of a RunState per plan and layer (`decode_state[l]`); anything else starts a new run.
A body that prints the same for decode and prefill is one function for both: the prefill runs it with c->n tokens
(or once per token, c->t), decode with one. Loops of one trip are folded away here, not left to the compiler.
"""
from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace

import jinja2

from ..ir.graph import Plan, Step
from ..kernels.layout import ROWS_PER_BLOCK, n_blocks
from ..kernels.rvv import ATTENTION_RVV
from ..kinds import ArgKind, Engine, Mode, TileScheme
from ..passes.prefill import mode
from ..passes.stream import units

PLACEHOLDER = re.compile(r"@\{(\w+):([^}]*)\}")
# attention kernels whose query heads are shared out by a function of their own (attention_rvv.h: none on core 0)
HEAD_SHARE = {name: "attn_rvv_share" for name in ATTENTION_RVV}
# split kernels whose units are shared out by a function of their own (gemv_rvv.h: none on core 0, rows by 8)
SPLIT_SHARE = {f"gemv{t}_rvv_i{b}": "gemv_rvv_share" for t in ("", "_tok", "_q4", "_q4_tok")
               for b in (8, 16, 32)}
NP_TO_C = {"int8": "int8_t", "int16": "int16_t", "int32": "int32_t", "uint8": "uint8_t", "uint16": "uint16_t"}


def c_ident(name: str) -> str:
    """A C identifier for a plan name: layers.0.attn.q -> layers_0_attn_q."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


def const_ident(name: str) -> str:
    return "w_" + c_ident(name)


def rel(name: str) -> str:
    """A name without its layer: layers.3.attn.q -> attn.q, kv.k.3 -> kv.k; model-level names stay."""
    m = re.fullmatch(r"layers\.\d+\.(.*)", name)
    if m:
        return m.group(1)
    m = re.fullmatch(r"kv\.(k|v)\.\d+", name)
    return f"kv.{m.group(1)}" if m else name


def layer_of(name: str) -> int | None:
    m = re.match(r"layers\.(\d+)\.", name)
    return int(m.group(1)) if m else None


def rel_text(text: str) -> str:
    """Plan names inside a line of text (a step's math) without their layer."""
    return re.sub(r"kv\.(k|v)\.\d+", r"kv.\1", re.sub(r"layers\.\d+\.", "", text))


def unit_name(ops: list[str]) -> str:
    """One name for a fork group's ops: layers.0.attn.q, .k, .v -> layers.0.attn.q+k+v."""
    if len(ops) == 1:
        return ops[0]
    head = ops[0].rsplit(".", 1)[0] + "."
    if all(o.startswith(head) for o in ops):
        return head + "+".join(o[len(head):] for o in ops)
    return "+".join(ops)


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _int_text(v: int) -> str:
    return f"INT64_C({v})" if not -(2**31) <= v < 2**31 else str(v)


@dataclass
class Slot:
    """What a placeholder stands for: its kind (B buffer, BA buffer array, C constant, I integer, IA integer array),
    its key (the name without its layer), the C type of a field holding it, and a comment."""

    kind: str
    key: str
    ctype: str
    doc: str
    size: int = 0  # arrays: their length


@dataclass
class Rendering:
    """One unit (a step or a fork group) printed for one plan and layer: text with placeholders, and their values."""

    plan: str  # decode | prefill
    layer: int | None
    role: str  # the unit's name without its layer, e.g. attn.q+k+v
    name: str  # its full name, e.g. layers.0.attn.q+k+v (profile rows)
    last: bool  # a prefill runs it once, for the prompt's last token
    per_token: bool  # a prefill runs it once per token of the chunk (each_token)
    steps: list = field(default_factory=list)
    text: str = ""
    values: dict = field(default_factory=dict)  # placeholder -> concrete C (a string, or a tuple for arrays)
    slots: dict = field(default_factory=dict)  # placeholder -> Slot


class UnitRenderer:
    """Prints the steps of one plan with placeholders (the view dicts steps.c.j2 takes)."""

    def __init__(self, c, plan: Plan, plan_name: str, modes: dict, scaled: frozenset, alloc, env):
        self.c, self.plan, self.plan_name, self.modes, self.scaled, self.env = c, plan, plan_name, modes, scaled, env
        self.where = {b.name: b for b in alloc.buffers}
        self.out: Rendering | None = None
        # the linear layers the decode plan's weight stream serves: both plans print their bodies alike (stream.py)
        self.streamed = frozenset(s.op for s in c.plan.steps if s.staging.early is not None)

    # ---- placeholders ------------------------------------------------------------------------------------------
    def _put(self, kind: str, key: str, value, ctype: str, doc: str, size: int = 0) -> str:
        ph = f"@{{{kind}:{key}}}"
        self.out.values[ph] = value
        self.out.slots[ph] = Slot(kind, key, ctype, doc, size)
        return ph

    def _buf_value(self, name: str) -> str:
        b, v = self.where[name], self.plan.values[name]
        return f"({v.dtype.ctype} *)(arena_{b.level} + {b.offset})"

    def _buf_doc(self, name: str) -> str:
        v = self.plan.values[name]
        return f"{_shape(v.shape)} {v.dtype}"

    def buf(self, name: str) -> str:
        v = self.plan.values[name]
        return self._put("B", rel(name), self._buf_value(name), v.dtype.ctype + " *", self._buf_doc(name))

    def bufs(self, key: str, names) -> str:
        v = self.plan.values[names[0]]
        return self._put("BA", key, tuple(self._buf_value(n) for n in names), v.dtype.ctype + " *",
                         f"{_shape(v.shape)} {v.dtype} each", len(names))

    def const(self, name: str) -> str:
        arr = self.plan.consts[name]
        return self._put("C", rel(name), const_ident(name), f"const {NP_TO_C[str(arr.dtype)]} *",
                         f"{_shape(arr.shape)} {rel(name)}")

    def int(self, s: Step, param: str) -> str:
        p = s.spec.param(param)
        return self._put("I", f"{rel(s.op)}.{param}", _int_text(s.arg(param).value), p.ctype, param)

    def ints(self, key: str, values: list[int], names: list[str]) -> str:
        return self._put("IA", key, tuple(str(v) for v in values), "int32_t", ", ".join(names), len(values))

    # ---- arguments -------------------------------------------------------------------------------------------------
    def row(self, name: str) -> int:
        """Elements of one row: of the token (a chunk-sized activation) or of the cache position."""
        v = self.c.plan.values.get(name) if name in self.scaled else self.plan.values[name]
        shape = v.shape if name in self.scaled else v.shape[1:]
        return math.prod(shape)

    def arg(self, s: Step, a, md: str) -> str:
        tok_rows = md not in (Mode.GEMM, Mode.FLAT)
        if a.kind == ArgKind.INT:
            return self.int(s, a.label)
        if a.kind in (ArgKind.POS, ArgKind.TOKEN):
            return f"c->{a.kind}"
        if a.kind == ArgKind.BUF:
            b = self.buf(a.name)
            if a.row == "pos":
                return f"{b} + c->{'pos0' if not tok_rows else 'pos'} * {self.row(a.name)}"
            if a.name in self.scaled and tok_rows:
                return f"{b} + c->t * {self.row(a.name)}"
            return b
        arr = self.plan.consts[a.name]
        w = self.const(a.name)
        return f"{w} + c->{a.row} * {arr.size // arr.shape[0]}" if a.row else w

    # ---- views -----------------------------------------------------------------------------------------------------
    def view(self, s: Step) -> dict:
        md = self.modes[s.op]
        exprs = [self.arg(s, a, md) for a in s.args]
        staged = {x.arg: x for x in s.staging.xfers}
        l1 = self.c.dep.memory[0].name
        local, stage_in, stage_out = [], [], []  # local: what the kernel reads, staging applied
        for i, e in enumerate(exprs):
            x = staged.get(i)
            if x is None:
                local.append(e)
                continue
            b = self.buf(x.buf)
            local.append(b)
            item = {"buf": b, "far": e, "nbytes": f"c->n * {x.nbytes}" if md == Mode.GEMM and x.out else x.nbytes,
                    "what": rel(s.args[i].name), "level": l1}
            (stage_out if x.out else stage_in).append(item)
        at = {a.label: i for i, a in enumerate(s.args)}
        e = {a.label: exprs[i] for i, a in enumerate(s.args)}
        v = {"title": "@{T:}", "role": rel(s.op), "rule": s.rule, "math": rel_text(s.math), "kernel": s.kernel,
             "engine": f"{s.engine} x{s.cores}" if s.engine == Engine.CLUSTER else s.engine, "stage_in": stage_in,
             "stage_out": stage_out, "tiles_note": "", "body": "plain", "tok_loop": md == Mode.GEMM,
             "args": ", ".join(local)}
        if s.split is not None and s.staging.tiling is None:
            sp = s.split
            unit = sp.unit if isinstance(sp.unit, int) else s.arg(sp.unit).value
            count = s.arg(sp.count).value
            args = []
            for a, text in zip(s.args, local):
                if a.label in sp.offset:
                    text = f"{text} + lo"
                elif sp.bounds and a.label in sp.bounds:
                    text = "lo" if a.label == sp.bounds[0] else "hi"
                elif a.label == sp.count and not sp.bounds:
                    text = "hi - lo"
                args.append(text)
            v.update(body="split", split_args=", ".join(args), unit=unit, share_fn=SPLIT_SHARE.get(s.kernel, "cluster_share"),
                     units=f"c->n * {count // unit}" if md == Mode.FLAT else str(count // unit))
            if sp.passes:
                v.update(body="split_passes", passes=sp.passes, count=count)
        if s.engine == Engine.NPU:
            v.update(body="npu", y=local[at["y"]], x=local[at["x"]], w=e["w"], mult=e["mult"], shift=e["shift"],
                     n_in=s.arg("n_in").value, n_out=s.arg("n_out").value, bits=s.spec.out_bits,
                     dyn_shift=s.arg("shift").kind == ArgKind.BUF, tok=s.spec.functions == ("npu_run_tok",),
                     n_tok="c->n" if md == Mode.GEMM else "1")
        t = s.staging.tiling
        if t is not None and t.kind == TileScheme.ROWS:
            v.update(self.rows_view(s, t, e, local[at["y"]], md))
        elif t is None and s.spec.fragment == "rows" and s.engine != Engine.NPU:  # the weights live where it computes
            v.update(self.rows_view(s, None, e, local[at["y"]], md))
        elif t is not None and t.kind == TileScheme.POSITIONS:
            v.update(self.positions_view(s, t, e, local, at))
        return v

    def rows_view(self, s: Step, t, e: dict, y: str, md: str) -> dict:
        """A GEMV's rows shared out over the cores (and, in a prefill chunk, applied to every token), from L1 tiles that
        the DMA fills, or (t None: the weights already sit in the level it computes from) read where they are."""
        n_in, n_out = s.arg("n_in").value, s.arg("n_out").value
        dyn = s.arg("shift").kind == ArgKind.BUF  # per-token scales: the kernel reads this token's shift, no shift tiles
        n_tiles = -(-n_out // t.tile) if t is not None else 1
        nbuf = len(t.buffers["w"]) if t is not None else 1
        tiles = {}
        for role in ("w", "mult", "shift"):
            names = t.buffers.get(role, ()) if t is not None else ()
            if t is None:
                tiles[role] = ([], "", "") if role == "shift" and dyn else ([e[role]], e[role], e[role])
            elif not names:
                tiles[role] = ([], "", "")
            elif nbuf == 2:
                arr = self.bufs(f"{rel(s.op)}.{role}_tile", names)
                tiles[role] = ([f"{arr}[0]", f"{arr}[1]"], f"{arr}[j->buf]", f"{arr}[(t + 1) % 2]")
            else:
                b = self.buf(names[0])
                tiles[role] = ([b], b, b)
        return dict(body="rows", resident=t is None, nbuf=nbuf, pf=s.op in self.streamed, tile=t.tile if t is not None else n_out, n_tiles=n_tiles,
                    blocks=n_blocks(n_out), n_in=n_in,
                    n_out=n_out, w_row=s.spec.row_bytes(s),
                    extra="".join(f", {self.int(s, p)}" for p in s.spec.trailing),  # int4: the group size
                    dyn_shift=e["shift"] if dyn else "", shift_src="0" if dyn else e["shift"],
                    dyn_t=f"{w} * t" if dyn and (w := self.plan.values[s.arg("shift").name].shape[-1]) > 1 else "t",
                    y=y, x=e["x"], w=e["w"], mult=e["mult"],
                    w_tile=tiles["w"][0], w_tile_at=tiles["w"][1], w_tile_next=tiles["w"][2],
                    mult_tile=tiles["mult"][0], mult_tile_at=tiles["mult"][1], mult_tile_next=tiles["mult"][2],
                    shift_tile=tiles["shift"][0], shift_tile_at=tiles["shift"][1], shift_tile_next=tiles["shift"][2],
                    tiles_note=("W read where it lives" if t is None else
                                f"W streams in {n_tiles} tile{'s' if n_tiles > 1 else ''} of {t.tile} rows"
                                + (", double-buffered" if t.double_buffer else ""))
                               + (", each tile applied to every token of the chunk" if md == Mode.GEMM else ""))

    def positions_view(self, s: Step, t, e: dict, local: list, at: dict) -> dict:
        d = self.c.dep.model.dims
        key = rel(s.op)
        streamed = "k" in t.buffers
        lanes = len(t.buffers["acc"])
        one_group = lanes >= d.kv_heads
        nbuf = len(t.buffers.get("k", ()))
        scores_fn, av_fn = s.spec.functions
        group, hs = d.heads // d.kv_heads, d.head_size
        passes = {}
        for which in ("k", "v"):
            # a tile load moves bytes: a cache wider than int8 (int16 keys) is cast, its rows eb times as long
            eb = self.plan.values[s.arg(which + "_cache").name].dtype.itemsize
            cache = e[which + "_cache"]
            h0 = "" if one_group else f" + j.h0 * {hs}"
            src = f"(const int8_t *){cache}" if eb > 1 and one_group else \
                f"(const int8_t *)({cache}{h0})" if eb > 1 else f"{cache}{h0}"
            cast = "(int8_t *)" if eb > 1 else ""
            if not streamed:
                tiles, tile_at = [], ""
            elif nbuf == 2:
                arr = self.bufs(f"{key}.{which}_tile", t.buffers[which])
                tiles, tile_at = [f"{cast}{arr}[0]", f"{cast}{arr}[(t + 1) % 2]"], f"{arr}[j->buf]"
            else:
                b = self.buf(t.buffers[which][0])
                tiles, tile_at = [cast + b], b
            lane = "l" if one_group else "(j->h0 + l)"
            passes[which] = {"tiles": tiles, "src": src,
                             "width": lanes * hs * eb if one_group else f"j.lanes * {hs * eb}",
                             "stride": d.kv_dim * eb,
                             "at": f"{tile_at} + l * {hs}" if streamed else f"{cache} + {lane} * {hs}",
                             "ld": (lanes * hs if one_group else f"j->lanes * {hs}") if streamed else d.kv_dim}
        a = {x.label: x for x in s.args}
        bits = int(self.plan.consts[a["exp_table"].name][0]).bit_length() - 1
        prm = self.ints(f"{key}.prm", [a[n].value for n in ("score_mult", "score_shift", "score_cut", "out_mult",
                                                            "out_shift")] + [bits],
                        ["score_mult", "score_shift", "score_cut", "out_mult", "out_shift", "exp bits"])
        arrays = {r: self.bufs(f"{key}.{r}", t.buffers[r]) for r in ("scores", "acc", "sums", "max")}
        out = e["out"]
        single = not streamed or t.tile >= d.context  # one tile holds every position: no loop over tiles
        return dict(body="positions", streamed=streamed, single=single, nbuf=nbuf, tile=t.tile, lanes=lanes,
                    one_group=one_group,
                    heads_j=lanes * group if one_group else f"j->lanes * {group}", qh0="" if one_group else f"j->h0 * {group} + ", group=group, hs=hs,
                    kv_heads=d.kv_heads, ctx=d.context, scores_fn=scores_fn, av_fn=av_fn, k=passes["k"],
                    share_fn=HEAD_SHARE.get(s.spec.name, "cluster_share"),
                    v=passes["v"], t0="0" if single else "j->t0", q=e["q"], prm=prm, exp=local[at["exp_table"]],
                    scores_at=f"{arrays['scores']}[l]", acc_at=f"{arrays['acc']}[l]", sums_at=f"{arrays['sums']}[l]",
                    max_at=f"{arrays['max']}[l]",
                    out_at=f"{out} + qh * {hs}" if single else f"j->last ? {out} + qh * {hs} : (int8_t *)0",
                    tiles_note=(f"K, V stream {t.tile} positions a tile" + (", double-buffered" if t.double_buffer
                                                                           else "")) if streamed else "")

    def fork_view(self, members: list[Step]) -> dict:
        """A fork group: its members' row views, their blocks numbered as one list for the cores to share."""
        # int8 blocked GEMVs share half blocks: 8 cores take gate and up's 86 of stories260k 9 + 7 x 11 (1.3% apart)
        # instead of 4 + 40 blocks (5 or 6 each, 20%); int4 weights have a layout of their own, in whole blocks
        halves = all(re.fullmatch(r"gemv(_tok)?_i(8|16|32)", s.kernel) for s in members)
        unit = ROWS_PER_BLOCK // 2 if halves else ROWS_PER_BLOCK
        views, b0 = [], 0
        for s in members:
            m = self.view(s)
            m["b0"], m["b1"] = b0, b0 + -(-m["n_out"] // unit)
            b0 = m["b1"]
            views.append(m)
        first = views[0]
        return {"body": "fork", "members": views, "blocks": b0, "title": "@{T:}", "engine": first["engine"],
                "pf": all(m["pf"] for m in views),
                "tok_loop": first["tok_loop"], "halves": halves}

    def render(self, steps: list[Step], tasks: str = "both") -> Rendering:
        """tasks: a GEMM step's per-core tasks, for one token (one), for a chunk's tokens (chunk) or both."""
        name = unit_name([s.op for s in steps])
        md = self.modes[steps[0].op]
        self.out = Rendering(self.plan_name, layer_of(steps[0].op), rel(name), name, md == Mode.LAST, md == Mode.TOKEN,
                             steps)
        v = self.fork_view(steps) if len(steps) > 1 else self.view(steps[0])
        v["tasks"] = tasks
        self.out.text = getattr(self.env.get_template("steps.c.j2").module, v["body"])(v)
        return self.out


# ---- runs and slots ----------------------------------------------------------------------------------------------

def classify(instances: list[Rendering], ph: str) -> str | None:
    """Where a placeholder's value goes across a run's renderings: lit, S (per plan), L (per layer) or None (both)."""
    vals = {(r.plan, r.layer): r.values[ph] for r in instances if ph in r.values}
    if len(set(vals.values())) == 1:
        return "lit"
    by_plan = {p: {v for (q, _), v in vals.items() if q == p} for p, _ in vals}
    if all(len(v) == 1 for v in by_plan.values()):
        return "S"
    by_layer = {lay: {v for (_, k), v in vals.items() if k == lay} for _, lay in vals}
    return "L" if all(len(v) == 1 for v in by_layer.values()) else None


def _where(instances: list[Rendering]) -> dict | None:
    """Per placeholder of a run its place (buffers always in RunState), or None if one varies by layer and plan."""
    out = {}
    for ph in {p for r in instances for p in r.values}:
        kind = instances[0].slots[ph].kind if ph in instances[0].slots else \
            next(r.slots[ph].kind for r in instances if ph in r.slots)
        w = classify(instances, ph)
        if kind in ("B", "BA"):
            w = "S" if w in ("lit", "S") else "SL" if w is None else w
        elif w is None:
            return None
        out[ph] = w
    return out


@dataclass
class Run:
    layers: list[int]  # consecutive layers whose steps print the same ([] for the model-level steps)
    plans: dict  # plan -> [Rendering of the first layer, per unit]
    instances: list  # every Rendering of the run
    where: dict  # placeholder -> lit | S | L


def group_runs(rendered: dict, n_layers: int) -> tuple[list[Run], list[Run], list[Run]]:
    """The model-level units before the layers, the runs of layers, the model-level units after."""
    def of(layer):
        return {p: [r for r in rs if r.layer == layer] for p, rs in rendered.items()}

    def sig(layer):
        return tuple((p, tuple((r.role, r.text) for r in rs)) for p, rs in of(layer).items())

    def model_level(before: bool) -> list[Run]:
        """The units that belong to no layer before the first layer's (the embedding), or after the last's."""
        picked = []
        for rs in rendered.values():
            layered = [i for i, r in enumerate(rs) if r.layer is not None]
            picked += (rs[:layered[0]] if before else rs[layered[-1] + 1:]) if layered else (rs if before else [])
        groups = [[r for r in picked if r.role == role] for role in dict.fromkeys(r.role for r in picked)]
        return [Run([], {r.plan: [r] for r in inst}, inst, _where(inst)) for inst in groups]

    runs: list[Run] = []
    for layer in range(n_layers):
        inst = [r for rs in of(layer).values() for r in rs]
        if runs and sig(layer) == sig(runs[-1].layers[0]):
            where = _where(runs[-1].instances + inst)
            if where is not None:
                runs[-1].layers.append(layer)
                runs[-1].instances += inst
                runs[-1].where = where
                continue
        runs.append(Run([layer], of(layer), inst, _where(inst)))  # one layer: nothing can vary by layer
    return model_level(True), runs, model_level(False)


def layer_span(layers: list[int]) -> str:
    if not layers:
        return ""
    return f"layers.{layers[0]}." if len(layers) == 1 else f"layers[{layers[0]}..{layers[-1]}]."


# ---- emitting model.c ------------------------------------------------------------------------------------------

def per_layer_c(vals: list, layers: list[int]) -> tuple[str, str]:
    """A per-layer value of a layer loop as C on `l`: (condition, expression), the condition "" when every layer has
    one. The layers with a value are consecutive, their values linear in l (a run's layers print the same units)."""
    if not layers:
        return "", str(vals[0])
    have = [(lay, v) for lay, v in zip(layers, vals) if v is not None]
    (l0, v0), step = have[0], (have[1][1] - have[0][1]) if len(have) > 1 else 0
    if any(v != v0 + step * (lay - l0) for lay, v in have) or [lay for lay, _ in have] != list(range(l0, have[-1][0] + 1)):
        raise AssertionError(f"weight stream: per-layer places {vals} are not linear in the layer")
    var = "l" if l0 == 0 else f"(l - {l0})"
    expr = str(v0) if not step else f"{step} * {var}" if not v0 else f"{v0} + {step} * {var}"
    lo, hi = l0, have[-1][0]
    cond = " && ".join(([f"l >= {lo}"] if lo > layers[0] else []) + ([f"l <= {hi}"] if hi < layers[-1] else []))
    return cond, expr


def _wrap(items: list[str], indent: str, width: int = 116) -> list[str]:
    """Comma-separated items on as few lines as fit the width."""
    lines, cur = [], ""
    for it in items:
        if cur and len(indent) + len(cur) + len(it) + 2 > width:
            lines.append(indent + cur.rstrip())
            cur = ""
        cur += it + ", "
    if cur:
        lines.append(indent + cur.rstrip())
    return lines


def _declare_locals(text: str) -> str:
    """In each function: S and L locals where the body uses them, and an unused context said so or dropped."""
    out = []
    for fn in re.split(r"(?<=\n}\n)", text if text.endswith("\n") else text + "\n"):
        lines = fn.split("\n")
        head = next((i for i, ln in enumerate(lines) if ln.startswith("static void ") and ln.endswith("{")), None)
        if head is None:
            out.append(fn)
            continue
        decl = next((i for i, ln in enumerate(lines) if i > head and ln.startswith("    const StepCtx *c = ")), None)
        at = decl + 1 if decl is not None else head + 1
        body = "\n".join(lines[at:])
        add = []
        if "S->" in body:
            add.append("    const RunState *const S = c->S;")
        if "L->" in body:
            add.append("    const LayerWeights *const L = c->L;")
        lines[at:at] = add
        if not add and not re.search(r"\bc\b", body):
            if decl is None:
                lines.insert(at, "    (void)c;")
            elif "(const StepCtx *)arg" in lines[decl]:
                lines[decl] = "    (void)arg;"
            else:
                del lines[decl]
        out.append("\n".join(lines))
    return "".join(out).rstrip("\n")


class Fields:
    """The fields of RunState (per plan) or LayerWeights (per layer): name -> (Slot, {plan or layer: value})."""

    def __init__(self):
        self.fields: dict[str, tuple[Slot, dict]] = {}

    @staticmethod
    def clashes(old: dict, values: dict) -> bool:
        return any(k in old and old[k] != v for k, v in values.items())

    def add(self, slot: Slot, values: dict) -> str:
        base = c_ident(slot.key)
        name, n = base, 1
        while name in self.fields:
            old_slot, old = self.fields[name]
            clash = self.clashes(old, values) or old_slot.ctype != slot.ctype or old_slot.size != slot.size
            if not clash:
                old.update(values)
                return name
            n += 1
            name = f"{base}_{n}"
        self.fields[name] = (slot, dict(values))
        return name


class StateFields(Fields):
    """RunState's fields: name -> (Slot, {(plan, layer or None for every layer): value})."""

    @staticmethod
    def clashes(old: dict, values: dict) -> bool:
        return any(v2 != v for (p, lay), v in values.items() for (p2, lay2), v2 in old.items()
                   if p2 == p and (lay2 == lay or lay2 is None or lay is None))

    def per_layer(self, plan: str) -> bool:
        """Whether some field of the plan's RunState differs between layers (a RunState per layer then)."""
        return any(len({v for (p, lay), v in vals.items() if p == plan and lay is not None}) > 1
                   for _, vals in self.fields.values())


def _field_decl(name: str, slot: Slot, docs: str) -> str:
    arr = f"[{slot.size}]" if slot.size else ""
    sep = "" if slot.ctype.endswith("*") else " "
    return f"    {slot.ctype}{sep}{name}{arr}; /* {docs} */"


def _init(value) -> str:
    return "{ " + ", ".join(value) + " }" if isinstance(value, tuple) else value


@dataclass
class Call:
    fn: str
    name: str  # the unit's full name (profile row)
    per_token: bool
    last: bool


class ModelC:
    """The context model.c.j2 prints: structs, tables, functions, and what forward() and prefill() call."""

    def __init__(self, c, env: jinja2.Environment):
        self.c, self.env = c, env
        pre = c.prefill
        self.plans = {"decode": (c.plan, c.alloc)} | ({"prefill": (pre.plan, pre.alloc)} if pre else {})
        modes = {s.op: mode(s, pre.plan) for s in pre.plan.steps} if pre else {s.op: "decode" for s in c.plan.steps}
        scaled = pre.plan.scaled if pre else frozenset()
        self.renderers = {p: UnitRenderer(c, plan, p, modes, scaled, alloc, env) for p, (plan, alloc) in self.plans.items()}
        self.rendered = {p: [self.renderers[p].render(u) for u in units(plan)] for p, (plan, _) in self.plans.items()}
        self.state, self.weights = StateFields(), Fields()
        self.statics: dict[str, str] = {}
        self.functions: dict[str, str] = {}  # text (named) -> name, in order of first use
        self.names: set[str] = set()
        self.calls: dict[str, list] = {p: [] for p in self.plans}  # plan -> [(run, [Call])]
        # the weight stream (stream.py): its units in order, and per unit ordinal (forward()'s STEP row) the stream
        # place fetched before it (fetch_before) and its own (pf_of)
        us = units(c.plan)
        self.streamed = [u for u in us if u[0].staging.early is not None]
        pos = {u[0].index: i for i, u in enumerate(us)}
        self.fetch_before = {pos[u[0].staging.early]: k for k, u in enumerate(self.streamed)}
        self.pf_of = {pos[u[0].index]: k for k, u in enumerate(self.streamed)}
        pre_runs, layer_runs, post_runs = group_runs(self.rendered, c.dep.model.dims.layers)
        for run in pre_runs + layer_runs + post_runs:
            self.emit_run(run)

    def substitute(self, r: Rendering, run: Run, plans: set) -> str:
        """The rendering's text with its placeholders written as literals, S-> or L-> fields; the values of a field
        come from the plans whose rendering of this unit prints the same (the ones its function serves)."""

        def value(m: re.Match) -> str:
            ph, kind = m.group(0), m.group(1)
            if kind == "F":
                return ph
            if kind == "T":
                return layer_span(run.layers) + r.role
            slot, where = r.slots[ph], run.where[ph]
            if where == "lit":
                v = r.values[ph]
                if kind == "IA":
                    return self.static_array(slot.key, v)
                return f"{v} /* {slot.doc} */" if kind == "I" else v
            inst = [x for x in run.instances if ph in x.values and x.plan in plans and x.role == r.role]
            if where in ("S", "SL"):
                return "S->" + self.state.add(slot, {(x.plan, x.layer if where == "SL" else None): x.values[ph]
                                                     for x in inst})
            return "L->" + self.weights.add(slot, {x.layer: x.values[ph] for x in inst})
        return PLACEHOLDER.sub(value, r.text)

    def static_array(self, key: str, value: tuple) -> str:
        """A file-scope const array for an integer array every layer of a run shares."""
        text, base = _init(value), c_ident(key)
        name, n = base, 1
        while self.statics.get(name, text) != text:
            n += 1
            name = f"{base}_{n}"
        self.statics[name] = text
        return name

    def name_function(self, text: str, r: Rendering, run: Run) -> str:
        """A function's name: its op's (and _prefill for the prefill's own), or with its run's first layer when
        another run's body has it."""
        if text in self.functions:
            return self.functions[text]
        base = c_ident(r.role) + ("_prefill" if r.plan == "prefill" else "")
        name = base if base not in self.names else f"{base}_l{run.layers[0]}" if run.layers else base
        n = 1
        while name in self.names:
            n += 1
            name = f"{base}_{n}"
        self.names.add(name)
        self.functions[text] = name
        return name

    def emit_run(self, run: Run) -> None:
        for p, rs in run.plans.items():
            calls = []
            for r in rs:
                shared = {q for q, qs in run.plans.items() if any(x.role == r.role and x.text == r.text for x in qs)}
                if shared == {p}:  # this plan's own body: only the tasks it runs
                    r = replace(r, text=self.renderers[p].render(r.steps, "one" if p == "decode" else "chunk").text)
                text = self.substitute(r, run, shared)
                calls.append(Call(self.name_function(text, r, run), r.name, r.per_token, r.last))
            self.calls[p].append((run, calls))

    # ---- what the template prints -----------------------------------------------------------------------------
    def function_texts(self) -> list[str]:
        return [_declare_locals(text.replace("@{F:}", name)) for text, name in self.functions.items()]

    def run_state(self) -> dict:
        """RunState's fields and, per plan, its initializer (per layer: a list of them, one per layer)."""
        layers = {p: list(range(self.c.dep.model.dims.layers)) if self.state.per_layer(p) else [None] for p in self.plans}
        decls, inits = [], {(p, lay): [] for p in self.plans for lay in layers[p]}
        for name, (slot, vals) in self.state.fields.items():
            docs = "; ".join(f"{p} {self._doc(slot, p)}" for p in self.plans if any(q == p for q, _ in vals))
            decls.append(_field_decl(name, slot, docs))
            for p in self.plans:
                mine = [v for (q, _), v in vals.items() if q == p]
                for lay in layers[p]:  # a layer that does not use a field takes any of the plan's values
                    if mine:
                        inits[(p, lay)].append(f".{name} = {_init(vals.get((p, lay), vals.get((p, None), mine[0])))}")
        return {"decls": decls, "per_layer": {p: self.state.per_layer(p) for p in self.plans},
                "inits": {p: [(lay, _wrap(inits[(p, lay)], "        " if self.state.per_layer(p) else "    "))
                              for lay in layers[p]] for p in self.plans}}

    def _doc(self, slot: Slot, plan: str) -> str:
        for r in self.rendered[plan]:
            for ph, s in r.slots.items():
                if s.key == slot.key and s.kind == slot.kind:
                    return s.doc
        return slot.doc

    def layer_table(self) -> dict:
        """LayerWeights' fields, and per layer its initializer, a line (or a few) per op."""
        decls, rows = [], {}
        for name, (slot, vals) in self.weights.fields.items():
            decls.append(_field_decl(name, slot, slot.doc))
            op = slot.key.rsplit(".", 1)[0]
            for layer, v in vals.items():
                rows.setdefault(layer, {}).setdefault(op, []).append(f".{name} = {_init(v)}")
        table = []
        for layer in sorted(rows):
            lines = []
            for op, items in rows[layer].items():
                lines += _wrap([f"/* {op} */ {items[0]}"] + items[1:], "        ")
            table.append((layer, lines))
        return {"decls": decls, "rows": table}

    def stream(self) -> dict:
        """The weight stream's table (stream.py): per streamed unit, in order, a TileFetch per member."""
        fetches, at = [], [0]
        buf = self.renderers["decode"]._buf_value  # a buffer as its arena address, as the bodies print it
        for u in self.streamed:
            for m in u:
                t, args = m.staging.tiling, {a.label: a for a in m.args}
                dst = [buf(t.buffers[r][0]) if t.buffers.get(r) else "0" for r in ("w", "mult", "shift")]
                src = [const_ident(args[r].name) if args[r].kind == ArgKind.CONST else "0" for r in ("w", "mult", "shift")]
                rows = min(t.tile, m.arg("n_out").value)
                fetches.append(f"    {{ {', '.join(dst + src)}, {rows}, {m.spec.row_bytes(m)} }}, /* {m.op} */")
            at.append(len(fetches))
        return {"fetches": fetches, "at": at}

    def _stream_lines(self, idxs: list[int], layers: list[int], at: str) -> list[str]:
        """forward()'s weight-stream lines before the unit at ordinal idxs[i] in layer layers[i] (one per layer of a
        run; `at` its profile row, which counts the fetch's set-up): the fetch of the next linear layer, which this
        unit overlaps, and the unit's own place in the stream (c.pf)."""
        lines = []
        fetch, own = [self.fetch_before.get(i) for i in idxs], [self.pf_of.get(i) for i in idxs]
        if any(v is not None for v in fetch):
            cond, expr = per_layer_c(fetch, layers)
            call = f"STEP({at}, stream_fetch({expr})); /* the next linear layer's first tile, while this unit computes */"
            lines.append(f"if ({cond}) {call}" if cond else call)
        if any(v is not None for v in own):
            cond, expr = per_layer_c(own, layers)
            lines.append(f"c.pf = {f'{cond} ? {expr} : -1' if cond else expr};")
        return lines

    def body(self, plan: str) -> list[str]:
        """The lines of forward() (decode: STEP per unit, for its profile row) or of a prefill chunk."""
        lines, row = [], 0
        for run, calls in self.calls[plan]:
            if plan == "prefill" and any(cl.last for cl in calls):
                continue
            ind = "    " if plan == "decode" else "        "
            loop = len(run.layers) > 1
            if run.layers:
                span = f"layers {run.layers[0]}..{run.layers[-1]}" if loop else f"layer {run.layers[0]}"
                own = self.state.per_layer(plan)  # a RunState per layer
                if loop:
                    lines.append(f"{ind}for (l = {run.layers[0]}; l <= {run.layers[-1]}; l++) {{ /* {span} */")
                    lines.append(f"{ind}    c.L = &layers[l]" + (f", c.S = &{plan}_state[l];" if own else ";"))
                    ind += "    "
                else:
                    at = run.layers[0]
                    lines.append(f"{ind}c.L = &layers[{at}]" + (f", c.S = &{plan}_state[{at}];" if own else ";")
                                 + f" /* {span} */")
            u, a = len(calls), (run.layers[0] if run.layers else 0)
            for k, cl in enumerate(calls):
                if plan == "decode":
                    at = f"{row + k} + {u} * {'l' if a == 0 else f'(l - {a})'}" if loop else str(row + k)
                    idxs = [row + k + u * j for j in range(max(len(run.layers), 1))]
                    lines += [ind + ln for ln in self._stream_lines(idxs, run.layers if loop else [], at)]
                    lines.append(f"{ind}STEP({at}, {cl.fn}(&c));")
                elif cl.per_token:
                    lines.append(f"{ind}each_token(&c, {cl.fn}); /* per token */")
                else:
                    lines.append(f"{ind}{cl.fn}(&c);")
            if loop:
                lines.append(ind[:-4] + "}")
            row += u * max(len(run.layers), 1)
        return lines

    def last(self) -> list[str]:
        return [f"    {cl.fn}(&c);" for _, calls in self.calls.get("prefill", []) for cl in calls if cl.last]

    def step_names(self) -> list[str]:
        names = []
        for run, calls in self.calls["decode"]:
            for layer in run.layers or [None]:
                names += [cl.name if layer is None else re.sub(r"^layers\.\d+\.", f"layers.{layer}.", cl.name)
                          for cl in calls]
        return names

    def context(self) -> dict:
        fns = self.function_texts()
        return {"functions": fns, "state": self.run_state(), "layer_table": self.layer_table(),
                "statics": self.statics, "forward_body": self.body("decode"),
                "prefill_body": self.body("prefill") if "prefill" in self.plans else [],
                "prefill_last": self.last(), "step_names": self.step_names(),
                "loops": any(len(run.layers) > 1 for p in self.calls for run, _ in self.calls[p]),
                "has_layers": bool(self.weights.fields), "plans": list(self.plans), "stream": self.stream(),
                "state_at": {p: "[0]" if self.state.per_layer(p) else "" for p in self.plans}}
