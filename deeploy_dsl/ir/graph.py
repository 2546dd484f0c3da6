"""The op graph of one decode step of a Llama, and the plan it lowers to.

Both are small immutable records. A value is a named tensor; an op reads and writes values by name.
The residual stream `x` is updated in place (residual adds write into their input), and the KV
cache rows are written in place at the runtime position `pos`.
"""
from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from ..errors import Pos
from ..frontend.spec import Dims
from ..kernels.kernelspec import KernelSpec, Split
from ..kinds import ArgKind, DType, Engine, OpKind, TileScheme, ValueKind


@dataclass(frozen=True)
class Value:
    name: str
    dtype: DType
    shape: tuple[int, ...]
    kind: ValueKind

    def __post_init__(self):  # a misspelt dtype or kind fails here, where the value is made
        object.__setattr__(self, "dtype", DType(self.dtype))
        object.__setattr__(self, "kind", ValueKind(self.kind))

    @property
    def nbytes(self) -> int:
        n = self.dtype.itemsize
        for s in self.shape:
            n *= s
        return n


@dataclass(frozen=True)
class Op:
    name: str  # hierarchical, e.g. layers.3.attn.q: what map hints match
    kind: OpKind
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    macs: int
    row: str | None = None  # "pos" when the first output is the cache row at the runtime position

    def __post_init__(self):
        object.__setattr__(self, "kind", OpKind(self.kind))


@dataclass(frozen=True)
class Graph:
    ops: tuple[Op, ...]
    values: Mapping[str, Value]

    def __post_init__(self):  # read-only: a later phase makes a new graph rather than editing this one
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))


# NPU-capable op kinds; everything else needs the cluster
LINEAR_KINDS = ("linear",)


def build_graph(d: Dims, keys: str = "int8", dynamic: tuple[str, ...] = (), queries: str = "int8",
                gate_up: str = "int8", swiglu: str = "int8") -> Graph:
    """keys: the dtype of the k projection, of RoPE on k and of the K cache ("int8" or "int16", the quantize
    block's `keys`); V stays int8. dynamic: activations with a per-token scale (the quantize block's `dynamic`):
    "swiglu" gives the SwiGLU a second output, the down projection's shift for this token, which it reads; "norm"
    (the attention and MLP norms), "final_norm" and "swiglu_absmax" give the producer a second output, the token's
    factor {m, s} (int32 [2]), which its consumers read.
    queries: the dtype of q ("int8", "int12" or "int16", the quantize block's `queries`), which the q projection
    writes (int12: as int16 values, which RoPE on q, in place, brings within +-2047) and attention reads.
    gate_up: the dtype of the gate and up projections' outputs ("int8" or "int16", the quantize block's `gate_up`),
    which the SwiGLU reads. swiglu: the SwiGLU output's dtype ("int8", "int12" or "int16", the quantize block's
    `swiglu`; int12 stored in int16), which the down projection reads."""
    vals: dict[str, Value] = {}
    ops: list[Op] = []

    def v(name: str, dtype: str, *shape: int, kind: str = "act") -> str:
        vals[name] = Value(name, dtype, tuple(shape), kind)
        return name

    def op(name, kind, ins, outs, macs=0, row=None):
        ops.append(Op(name, kind, tuple(ins), tuple(outs), macs, row))

    x = v("x", "int16", d.dim)
    op("embed", "embed", [], [x])
    for i in range(d.layers):
        p = f"layers.{i}."
        kc = v(f"kv.k.{i}", keys, d.context, d.kv_dim, kind=ValueKind.KV)
        vc = v(f"kv.v.{i}", "int8", d.context, d.kv_dim, kind=ValueKind.KV)
        xb = v(p + "attn_norm", "int8", d.dim)
        xt = [v(p + "attn_norm_tok", "int32", 2)] if "norm" in dynamic else []
        op(p + "attn_norm", "rmsnorm", [x], [xb] + xt)
        q = v(p + "attn.q", queries, d.dim)
        k = v(p + "attn.k", keys, d.kv_dim)
        op(p + "attn.q", "linear", [xb] + xt, [q], d.dim * d.dim)
        op(p + "attn.k", "linear", [xb] + xt, [k], d.dim * d.kv_dim)
        op(p + "attn.v", "linear", [xb] + xt, [vc], d.dim * d.kv_dim, row="pos")
        op(p + "attn.rope_q", "rope", [q], [q])
        op(p + "attn.rope_k", "rope", [k], [kc], row="pos")
        att = v(p + "attn.attention", "int8", d.dim)
        # the scores of the query heads that share one kv head, then their probabilities
        scratch = v(p + "attn.scratch", "int32", d.heads // d.kv_heads, d.context, kind=ValueKind.SCRATCH)
        # MACs at a full cache; the tiler restates them at the report position
        op(p + "attn.attention", "attention", [q, kc, vc], [att, scratch], 2 * d.heads * d.head_size * d.context)
        o = v(p + "attn.o", "int16", d.dim)
        op(p + "attn.o", "linear", [att], [o], d.dim * d.dim)
        op(p + "attn.residual", "residual_add", [x, o], [x])
        hb = v(p + "mlp_norm", "int8", d.dim)
        ht = [v(p + "mlp_norm_tok", "int32", 2)] if "norm" in dynamic else []
        op(p + "mlp_norm", "rmsnorm", [x], [hb] + ht)
        g = v(p + "mlp.gate", gate_up, d.hidden)
        u = v(p + "mlp.up", gate_up, d.hidden)
        op(p + "mlp.gate", "linear", [hb] + ht, [g], d.dim * d.hidden)
        op(p + "mlp.up", "linear", [hb] + ht, [u], d.dim * d.hidden)
        h = v(p + "mlp.swiglu", swiglu, d.hidden)
        hs = [v(p + "mlp.swiglu_shift", "uint8", 1)] if "swiglu" in dynamic else \
            [v(p + "mlp.swiglu_tok", "int32", 2)] if "swiglu_absmax" in dynamic else []
        # a per-token scale keeps the products between its two passes
        sp = [v(p + "mlp.swiglu_products", "int32", d.hidden, kind=ValueKind.SCRATCH)] if hs else []
        op(p + "mlp.swiglu", "swiglu", [g, u], [h] + hs + sp)
        dn = v(p + "mlp.down", "int16", d.dim)
        op(p + "mlp.down", "linear", [h] + hs, [dn], d.dim * d.hidden)
        op(p + "mlp.residual", "residual_add", [x, dn], [x])
    xf = v("final_norm", "int8", d.dim)
    xft = [v("final_norm_tok", "int32", 2)] if "final_norm" in dynamic else []
    op("final_norm", "rmsnorm", [x], [xf] + xft)
    logits = v("logits", "int32", d.vocab)
    op("lm_head", "linear", [xf] + xft, [logits], d.dim * d.vocab)
    return Graph(tuple(ops), vals)


# ---- the plan: what the rule engine produces, what golden interprets and the C generator prints ----

@dataclass(frozen=True)
class Arg:
    """One kernel argument: a buffer, a constant, an integer, or the runtime pos/token."""

    kind: ArgKind
    name: str = ""  # value or constant name
    value: int = 0  # for int
    row: str | None = None  # "pos": the row of a [rows, n] tensor at the runtime position
    label: str = ""  # the kernel parameter it is passed as (registry.Param.name)

    def __post_init__(self):
        object.__setattr__(self, "kind", ArgKind(self.kind))


@dataclass(frozen=True)
class Xfer:
    """One operand staged through the compute level: DMA in before the kernel runs, or out after."""

    arg: int  # index of the step argument it stands in for
    buf: str  # the staging buffer (a value of kind "tile")
    nbytes: int
    out: bool = False


@dataclass(frozen=True)
class Tiling:
    """How a step streams its big operand through the compute level.

    rows: a linear layer's weight rows (with their requantization constants), `tile` rows at a time;
    positions: attention's K and V cache rows, `tile` positions at a time, one kv head after another.
    """

    kind: TileScheme
    tile: int
    double_buffer: bool
    buffers: Mapping[str, tuple[str, ...]]  # role -> buffer names (two when double-buffered)

    def __post_init__(self):
        object.__setattr__(self, "kind", TileScheme(self.kind))
        object.__setattr__(self, "buffers", MappingProxyType(dict(self.buffers)))


@dataclass(frozen=True)
class Staging:
    """What the tiling phase decides for a step: how its big operand streams, what crosses levels, at what cost
    (per call, at the plan's report position). A step fresh from lowering has the default: nothing staged."""

    tiling: Tiling | None = None
    xfers: tuple[Xfer, ...] = ()  # operands staged through the compute level
    tiles: int = 1  # tiles per call
    dma_bytes: int = 0  # bytes moved between levels per call
    dma_cycles: int = 0  # their estimated cost on the target's DMA
    # the weight stream (passes/stream.py): forward() fetches the first tile before it calls the unit at this index, so
    # the transfer overlaps the units in between; None: the step fetches its own first tile
    early: int | None = None


@dataclass(frozen=True)
class Step:
    index: int
    op: str
    rule: str
    spec: KernelSpec  # the kernel it calls (registry.py)
    engine: Engine
    cores: int
    args: tuple[Arg, ...]  # one per spec parameter, in its order: read them by name, step.arg("n_in")
    macs: int
    math: str  # one line, printed above the call in C
    reason: str  # why this engine (the hint line, or the default)
    pos: Pos
    staging: Staging = Staging()  # the tiling phase's decision (tiling.py)
    fork: tuple[int, int] | None = None  # (first, last) step of the fork group that runs this step (forks.py)

    def __post_init__(self):
        object.__setattr__(self, "engine", Engine(self.engine))

    @property
    def kernel(self) -> str:
        return self.spec.name

    @property
    def split(self) -> Split | None:
        """How the cores share one call of the kernel (registry.Split), or None."""
        return self.spec.split

    def arg(self, name: str) -> Arg:
        """The argument passed as the kernel's parameter `name`."""
        for a in self.args:
            if a.label == name:
                return a
        raise KeyError(f"{self.kernel} has no parameter {name!r} ({self.op})")

    @property
    def output(self) -> Arg:
        """The argument the kernel writes its result to."""
        return self.arg(self.spec.output)

    def has(self, name: str) -> bool:
        return any(a.label == name for a in self.args)


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    values: Mapping[str, Value]
    consts: Mapping[str, object]  # name -> numpy array
    warnings: tuple = ()
    report_pos: int = 0  # the decode position that per-token figures are stated at
    dma_lower_bound: int = 0  # bytes that must cross levels per token at report_pos
    chunk: int = 0  # a prefill plan (prefill.py): tokens per chunk; 0 for the decode plan
    scaled: frozenset = frozenset()  # a prefill plan: activations with one row per token of the chunk, [chunk, ...]

    def __post_init__(self):  # read-only: each phase returns a new plan
        object.__setattr__(self, "values", MappingProxyType(dict(self.values)))
        object.__setattr__(self, "consts", MappingProxyType(dict(self.consts)))
