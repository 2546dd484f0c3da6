"""Tiling: fit every step's working set into the compute level (L1) by streaming what lives further out.

Kernels compute from the first memory level. An operand that lives elsewhere (weights and the KV
cache in L2) is moved by DMA, in one of three ways, chosen per step by its kernel:
  * rows: a linear layer streams its weight rows (with their multipliers and shifts) `tile` rows at
    a time, double-buffered when the level says `double_buffer`: the next tile's DMA runs while the
    current tile computes. The input vector and the output stay in L1, so each weight byte moves once.
  * positions: attention streams K, then V, `tile` positions at a time, one kv head after another;
    the scores of that head's query group stay in L1.
  * staged: anything else small (a norm's gains, a table, the token's embedding row, a RoPE row)
    is copied in whole before the kernel, and a KV-cache row the kernel writes is copied out after.
A step whose operands all live in L1 moves nothing. Bytes moved are fixed by the scheme. A linear layer
takes, of the tile counts that fit the L1 budget beside what is live at that step, the one the cost model
prices lowest: one tile cannot overlap its DMA with compute, and each tile costs DMA set-ups and a fork whose
cores share only that tile's blocks. Attention takes the largest tile that fits.
"""
from __future__ import annotations

import math
import re
from dataclasses import replace
from typing import Callable

from ..errors import Collector, MemoryBudgetError
from ..frontend.spec import Deployment
from ..ir.graph import Plan, Staging, Step, Tiling, Value, Xfer
from ..kernels.layout import ROWS_PER_BLOCK, n_blocks, padded_rows
from ..kinds import ArgKind, TileScheme, ValueKind
from .arena import lifetimes


def align(n: int, a: int) -> int:
    """n rounded up to a multiple of a."""
    return (n + a - 1) // a * a



def report_position(dep: Deployment) -> int:
    """Per-token figures are stated at the middle of the context: the average step of a full generation."""
    return dep.model.dims.context // 2


def unpacked(s: Step, why: str) -> Step:
    """A packed GEMV step as the int8 blocked GEMV it replaced (its spec's fallback): the same integers, half the
    weight bytes per row, the quantizer's GEMV blocks (.wb) instead of the packed copy (.wp)."""
    args = tuple(replace(a, name=a.name.removesuffix(".wp") + ".wb") if a.label == "w" else a for a in s.args)
    return replace(s, spec=s.spec.fallback, args=args, reason=f"{s.reason}; {why}")


def adopt_kernels(untiled: Plan, tiled: Plan) -> Plan:
    """The untiled plan with the tiler's kernel choices (a packed GEMV unpacked to fit L1) and constants: the prefill's
    tiler starts from it, so that both plans call the same kernels on the same constants."""
    steps = tuple(u if u.spec is t.spec else replace(u, spec=t.spec, args=t.args, reason=t.reason)
                  for u, t in zip(untiled.steps, tiled.steps))
    return replace(untiled, steps=steps, consts=tiled.consts)


class Tiler:
    # fallback: a packed GEMV whose smallest tile does not fit becomes the int8 blocked GEMV (the decode plan decides;
    # the prefill's tiler starts from its choices, adopt_kernels)
    fallback = True

    def __init__(self, plan: Plan, dep: Deployment, cycles: Callable[[Step, Plan], int] | None = None,
                 counts: dict[str, int] | None = None, packed: dict[str, bool] | None = None):
        # counts: a linear layer's tile count to keep where it fits (the prefill takes the decode plan's, so both
        # plans share the step's body); packed: whether `gemv auto` keeps a layer's packed GEMV (every layer's op
        # takes one choice, see tile())
        self.plan, self.dep, self.cycles, self.counts = plan, dep, cycles, counts or {}
        self.packed = packed or {}
        self.l1 = dep.memory[0]
        self.align = self.l1.alignment
        self.weights_far = dep.level_holding("weights").name != self.l1.name
        self.kv_far = dep.level_holding("kv_cache").name != self.l1.name
        self.values: dict[str, Value] = dict(plan.values)
        self.P = report_position(dep)
        self.errs = Collector()
        self.no_fits: list[tuple] = []
        self.done: list[Step] = []  # the steps tiled so far, in plan order (the weight stream's context when pricing)
        self.live: list[int] = []  # L1 bytes live at each step before its own buffers (live_l1)

    # ---- what is live in L1 before this step adds its own buffers ------------------------------
    def live_l1(self) -> list[int]:
        live = [0] * len(self.plan.steps)
        for name, (lo, hi) in lifetimes(self.plan).items():
            v = self.values[name]
            if v.kind == ValueKind.KV and self.kv_far:
                continue
            size = align(v.nbytes, self.align)
            for t in range(lo, hi + 1) if v.kind != ValueKind.KV else range(len(live)):
                live[t] += size
        return live

    def new_buf(self, name: str, dtype: str, *shape: int) -> str:
        self.values[name] = Value(name, dtype, tuple(shape), "tile")
        return name

    # ---- the schemes -------------------------------------------------------------------------------
    def stage(self, s: Step, skip: tuple[str, ...] = ()) -> tuple[list[Xfer], int]:
        """Stage far constants and far KV rows of a step; returns the transfers and their L1 bytes."""
        xfers, used = [], 0
        for i, a in enumerate(s.args):
            if a.label in skip:
                continue
            if a.kind == ArgKind.CONST and self.weights_far:
                arr = self.plan.consts[a.name]
                n = arr.nbytes // arr.shape[0] if a.row else arr.nbytes
                shape = arr.shape[1:] if a.row else arr.shape
                dtype = str(arr.dtype)
                buf = self.new_buf(f"{s.op}.{a.label}", dtype, *(shape or (1,)))
                xfers.append(Xfer(i, buf, n))
                used += align(n, self.align)
            elif a.kind == ArgKind.BUF and a.row == "pos" and self.kv_far:
                v = self.values[a.name]
                n = v.nbytes // v.shape[0]
                buf = self.new_buf(f"{s.op}.{a.label}_out", v.dtype, *v.shape[1:])
                xfers.append(Xfer(i, buf, n, out=True))
                used += align(n, self.align)
        return xfers, used

    def nbuf(self, n_tiles: int) -> int:
        return 2 if self.l1.double_buffer and n_tiles > 1 else 1

    def tile_linear(self, s: Step, avail: int) -> Step:
        n_out = s.arg("n_out").value
        wrow = s.spec.row_bytes(s)  # int4: its group scales and nibbles
        # a shift per row from the weights, or (an input with per-token scales) this token's shift from a buffer
        per_row = (wrow, 4, 1) if s.arg("shift").kind == ArgKind.CONST else (wrow, 4)
        xfers, used = self.stage(s, skip=("w", "mult", "shift"))
        if not self.weights_far:
            return self.finish(s, None, xfers, 1, 0)
        room = avail - used
        blocks = n_blocks(n_out)
        # tiles are whole blocks of R rows (the GEMV layout); the tile counts whose buffers fit, fewest first
        fits = []
        for n_tiles in range(1, blocks + 1):
            per = math.ceil(blocks / n_tiles)
            if math.ceil(blocks / per) == n_tiles and \
                    self.nbuf(n_tiles) * sum(align(per * ROWS_PER_BLOCK * b, self.align) for b in per_row) <= room:
                fits.append(n_tiles)
        if not fits:
            smallest = sum(align(ROWS_PER_BLOCK * b, self.align) for b in per_row) * self.nbuf(blocks)
            if self.fallback and s.spec.fallback is not None:  # the unpacked rows take half the bytes
                return self.tile_linear(unpacked(s, f"packed weights: one block needs {smallest:,} B of "
                                                    f"{self.l1.name}, {room:,} B free: unpacked"), avail)
            return self.no_fit(s, avail - used, smallest, f"one block of {ROWS_PER_BLOCK} weight rows with their "
                                                          "multipliers and shifts")
        n_tiles = fits[0]
        if self.counts.get(s.op) in fits:
            n_tiles = self.counts[s.op]
        elif self.cycles and len(fits) > 1 and self.l1.double_buffer:
            # the bytes moved are the same for any count, but one tile cannot overlap its DMA with compute and each
            # tile costs DMA set-ups: the count the cost model prices lowest (the fewest tiles on a tie)
            priced = [(self.price(self.rows_tiled(s, n, per_row, xfers)), n) for n in fits]
            n_tiles = min(priced)[1]
        return self.rows_tiled(s, n_tiles, per_row, xfers)

    def rows_tiled(self, s: Step, n_tiles: int, per_row: tuple[int, ...], xfers: list[Xfer]) -> Step:
        """A linear layer's weight rows streamed in n_tiles tiles of whole blocks."""
        n_out = s.arg("n_out").value
        wrow = per_row[0]
        padded = math.ceil(n_blocks(n_out) / n_tiles) * ROWS_PER_BLOCK
        rows = min(padded, n_out)
        k = self.nbuf(n_tiles)
        bufs = {"w": tuple(self.new_buf(f"{s.op}.w_tile{b}", "int8", padded, wrow) for b in range(k)),
                "mult": tuple(self.new_buf(f"{s.op}.mult_tile{b}", "int32", rows) for b in range(k)),
                "shift": tuple(self.new_buf(f"{s.op}.shift_tile{b}", "uint8", rows) for b in range(k))
                if len(per_row) == 3 else ()}
        moved = padded_rows(n_out) * wrow + n_out * sum(per_row[1:])
        return self.finish(s, Tiling("rows", rows, k == 2, bufs), xfers, n_tiles, moved, transfers=3 * n_tiles)

    def price(self, s: Step) -> int:
        """The cost model's cycles for a candidate tiling of s, after the steps tiled so far; where L1 double-buffers,
        with its first tile fetched by the weight stream since the last linear layer that streams (stream.py decides
        for good, after the fork groups)."""
        s = self.streamed(s)
        ctx = replace(self.plan, steps=tuple(self.done) + (s,) + self.plan.steps[s.index + 1:], report_pos=self.P)
        return self.cycles(s, ctx)

    def streamed(self, s: Step) -> Step:
        """s with its first tile fetched by the weight stream (as stream.py will, before the fork groups: from the last
        linear layer tiled if that one streamed, else from the step after it), where the tiler prices, L1
        double-buffers and the window holds the tile beside what each step in it keeps live."""
        if not (self.cycles and self.l1.double_buffer and self.weights_far) or s.staging.tiling is None \
                or s.staging.tiling.kind != TileScheme.ROWS:
            return s
        rows = [o for o in self.done if o.staging.tiling is not None and o.staging.tiling.kind == TileScheme.ROWS]
        at = 0 if not rows else rows[-1].index if rows[-1].staging.early is not None else rows[-1].index + 1
        first = sum(align(self.values[names[0]].nbytes, self.align) for names in s.staging.tiling.buffers.values() if names)
        if at >= s.index or any(self.live[o.index] + self.own_bytes(o) + first > self.l1.size_bytes * 15 // 16
                                for o in self.done[at:s.index]):
            return s
        return replace(s, staging=replace(s.staging, early=at))

    def own_bytes(self, s: Step) -> int:
        """L1 bytes of a step's own staging and tile buffers."""
        names = [x.buf for x in s.staging.xfers] + [b for bs in (s.staging.tiling.buffers.values() if s.staging.tiling
                                                                 else ()) for b in bs]
        return sum(align(self.values[n].nbytes, self.align) for n in names)

    def tile_gemv(self, s: Step, avail: int) -> Step:
        """A packed GEMV takes a multiply per two MACs but twice the weight bytes. `gemv packed` keeps it (where L1
        holds a block of its rows), `gemv blocked` unpacks it; `gemv auto` keeps it where the weights live in L1, and
        where they stream from a far level keeps whichever of it and the blocked GEMV the cost model (the step's compute
        and DMA cycles) says is faster."""
        t = self.tile_linear(s, avail)
        mode = self.dep.gemv
        if not self.fallback or t.spec.fallback is None or mode == "packed" \
                or (mode == "auto" and not (self.weights_far and self.cycles)):
            return t
        b = self.tile_linear(unpacked(s, "unpacked"), avail)
        if mode == "blocked":
            return replace(b, reason=f"{s.reason}; unpacked (gemv blocked)")
        packed, blocked = self.price(t), self.price(b)
        keep = self.packed.get(s.op, blocked >= packed)
        forced = " as in the last layer (one body serves every layer)" if keep != (blocked >= packed) else ""
        if not keep:
            return replace(b, reason=f"{s.reason}; unpacked{forced}: ~{blocked:,} cycles against ~{packed:,} packed, "
                                     f"whose weights take twice the bytes to move")
        t = self.tile_linear(s, avail)  # its tile buffers again, over the blocked one's
        return replace(t, reason=f"{t.reason}; packed{forced}: ~{packed:,} cycles against ~{blocked:,} unpacked")

    def tile_attention(self, s: Step, avail: int) -> Step:
        """A group of `lanes` kv heads (one per core, at most all of them; fewer when L1 cannot hold that
        many) is resident at a time, each lane with its K/V tiles, its query heads' scores, accumulators,
        exp sums and score maxima; the cores share out the group's query heads and read the lanes' tiles in common."""
        d = self.dep.model.dims
        group, hs = d.heads // d.kv_heads, d.head_size
        kb = self.values[s.arg("k_cache").name].dtype.itemsize  # bytes per K element: 2 with int16 keys; V int8
        xfers, used = self.stage(s, skip=("k_cache", "v_cache"))
        acc_b = align(group * hs * 4, self.align) + 2 * align(group * 4, self.align)  # acc, sums, max
        scores_b = align(group * d.context * 4, self.align)
        for lanes in range(min(s.cores, d.kv_heads), 0, -1):
            room = avail - used - lanes * acc_b - (lanes - 1) * scores_b  # lane 0's scores are the graph's scratch
            if not self.kv_far:
                tile = d.context if room >= 0 else 0
            else:
                tile = next((t for t in range(d.context, 0, -1)
                             if self.nbuf(math.ceil(d.context / t)) * (align(t * lanes * hs * kb, self.align)
                                                                       + align(t * lanes * hs, self.align)) <= room), 0)
            if tile:
                break
        else:
            smallest = acc_b + (align(kb * hs, self.align) + align(hs, self.align)) * self.nbuf(2) * self.kv_far
            return self.no_fit(s, avail - used, smallest, "one K and one V position of one head")
        bufs = {"acc": tuple(self.new_buf(f"{s.op}.acc{lane}", "int32", group, hs) for lane in range(lanes)),
                "sums": tuple(self.new_buf(f"{s.op}.sums{lane}", "int32", group) for lane in range(lanes)),
                "max": tuple(self.new_buf(f"{s.op}.max{lane}", "int32", group) for lane in range(lanes)),
                "scores": (s.arg("scratch").name,) + tuple(self.new_buf(f"{s.op}.scores{lane}", "int32", group, d.context)
                                                    for lane in range(1, lanes))}
        if not self.kv_far:
            return self.finish(s, Tiling("positions", d.context, False, bufs), xfers, 2 * d.kv_heads, 0)
        k = self.nbuf(math.ceil(d.context / tile))
        for which in ("k", "v"):  # a tile holds the lanes' rows side by side: one 2-D transfer per tile
            dt = self.values[s.arg(which + "_cache").name].dtype
            bufs[which] = tuple(self.new_buf(f"{s.op}.{which}_tile{b}", dt, tile, lanes * hs) for b in range(k))
        per_pass = math.ceil((self.P + 1) / tile)
        moved = (kb + 1) * (self.P + 1) * d.kv_dim
        groups = math.ceil(d.kv_heads / lanes)
        return self.finish(s, Tiling("positions", tile, k == 2, bufs), xfers, 2 * groups * per_pass, moved,
                           transfers=2 * groups * per_pass)

    def finish(self, s: Step, tiling, xfers, tiles: int, moved: int, transfers: int = 0) -> Step:
        moved += sum(x.nbytes for x in xfers)
        transfers += len(xfers)
        t = self.dep.target
        cycles = math.ceil(moved / t.dma_bytes_per_cycle) + transfers * t.dma_setup_cycles if moved else 0
        macs = s.macs
        if s.spec.has_param("k_cache"):  # attention (streamed or read in place): restate at the report position
            d = self.dep.model.dims
            macs = 2 * d.heads * d.head_size * (self.P + 1)
        return replace(s, staging=Staging(tiling, tuple(xfers), tiles, moved, cycles), macs=macs)

    def no_fit(self, s: Step, room: int, smallest: int, what: str) -> Step:
        self.no_fits.append((s.op, max(room, 0), smallest, what))
        return s

    def report_no_fits(self) -> None:
        """One error per kind of op: the same failure in every layer is one message."""
        folded: dict[tuple, list[str]] = {}
        for op, room, smallest, what in self.no_fits:
            m = re.match(r"layers\.(\d+)\.(.*)", op)
            folded.setdefault((m.group(2) if m else op, room, smallest, what), []).append(m.group(1) if m else "")
        for (op, room, smallest, what), layers in folded.items():
            name = op if layers == [""] else (f"layers.{layers[0]}.{op}" if len(layers) == 1
                                               else f"layers[{layers[0]}..{layers[-1]}].{op}")
            self.errs.add(self.l1.pos, f"{name}: no tiling fits {self.l1.name}: {room:,} B are free beside what "
                          f"this step keeps live, the smallest working set needs {smallest:,} B ({what})",
                          f"raise {self.l1.name} (now {self.l1.size_bytes:,} B)")

    def run(self) -> Plan:
        live = self.live = self.live_l1()
        steps = self.done
        for s in self.plan.steps:
            avail = self.l1.size_bytes - live[s.index]
            if s.spec.tiling == TileScheme.ROWS:
                steps.append(self.streamed(self.tile_gemv(s, avail)))
            elif s.spec.tiling == TileScheme.POSITIONS:
                steps.append(self.tile_attention(s, avail))
            else:  # staged whole, but for what the engine keeps in its own memory (the NPU's weights)
                xfers, used = self.stage(s, skip=s.spec.resident)
                if used > avail:
                    self.no_fit(s, avail, used, "its staged operands")
                steps.append(self.finish(s, None, xfers, 1, 0))
        self.report_no_fits()
        self.errs.raise_if_errors(MemoryBudgetError)
        consts = self.plan.consts
        if self.fallback:  # the fallback weights no step took
            used = {a.name for s in steps for a in s.args if a.kind == ArgKind.CONST}
            consts = {k: v for k, v in consts.items() if k in used}
        out = replace(self.plan, steps=tuple(steps), values=self.values, report_pos=self.P,
                      dma_lower_bound=self.lower_bound(tuple(steps)), consts=consts)
        spans = lifetimes(out)  # the tile buffers of the candidates not taken go
        return replace(out, values={k: v for k, v in self.values.items() if v.kind != ValueKind.TILE or k in spans})

    def lower_bound(self, steps: tuple[Step, ...]) -> int:
        """Every far byte a token needs, moved once: each constant (or the row of it used) that the tiled steps read
        (a packed GEMV's or, fallen back, the blocked one's) and the KV-cache rows read and written at the report
        position."""
        seen: dict[tuple[str, str | None], int] = {}
        d = self.dep.model.dims
        for s in steps:
            for a in s.args:
                if a.kind == ArgKind.CONST and self.weights_far and a.label not in s.spec.resident:  # e.g. the NPU's
                    arr = self.plan.consts[a.name]
                    seen[(a.name, a.row)] = arr.nbytes // arr.shape[0] if a.row else arr.nbytes
        kb = self.values["kv.k.0"].dtype.itemsize if "kv.k.0" in self.values else 1  # int16 keys: 2 B a K element
        # the cache rows attention reads, when it streams them (a kernel that reads them in place does not), and the
        # rows the token writes through L1 (a kernel that writes its cache in place moves none)
        streams = any(s.spec.tiling == TileScheme.POSITIONS for s in self.plan.steps)
        read = d.layers * (kb + 1) * (self.P + 1) * d.kv_dim if streams else 0
        written = sum(self.values[a.name].nbytes // self.values[a.name].shape[0] for s in self.plan.steps for a in s.args
                      if a.kind == ArgKind.BUF and a.row == "pos" and self.values[a.name].kind == ValueKind.KV)
        kv = read + written if self.kv_far else 0
        return sum(seen.values()) + kv


def tile(plan: Plan, dep: Deployment, cycles: Callable[[Step, Plan], int] | None = None) -> Plan:
    """Tiles and DMA; `cycles` (the cost model's, passed in: it reads the prefill's modes) weighs a packed GEMV
    against the blocked one and a linear layer's tile counts. One body serves an op in every layer, so every layer's
    op then takes the last layer's choices (its weight stream's window is the steady one, from the layer before; the
    first layer's starts with the token)."""
    first = Tiler(plan, dep, cycles).run()
    if cycles is None:
        return first
    first = settled(first)
    last: dict[str, Step] = {}
    for s in first.steps:
        if (m := re.match(r"layers\.\d+\.(.*)", s.op)) and s.staging.tiling is not None \
                and s.staging.tiling.kind == TileScheme.ROWS:
            last[m.group(1)] = s
    counts, packed = {}, {}
    for s in first.steps:
        ref = last.get(re.sub(r"^layers\.\d+\.", "", s.op)) if s.op.startswith("layers.") else None
        if ref is not None:
            counts[s.op], packed[s.op] = ref.staging.tiles, ref.spec.fallback is not None
    if all(s.staging.tiles == counts[s.op] and (s.spec.fallback is not None) == packed[s.op]
           for s in first.steps if s.op in counts):
        return first
    return settled(Tiler(plan, dep, cycles, counts, packed).run())


def settled(plan: Plan) -> Plan:
    """The tiled plan without the weight stream the tiler priced: stream.py decides it after the fork groups."""
    return replace(plan, steps=tuple(replace(s, staging=replace(s.staging, early=None)) if s.staging.early is not None
                                     else s for s in plan.steps))

