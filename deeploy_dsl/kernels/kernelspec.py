"""What a kernel is to the compiler: its C signature's parameters, how cores share it, and a KernelSpec tying its
facts together. The specs themselves are in registry.py."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..kinds import Mode, TileScheme


@dataclass(frozen=True)
class Param:
    """One parameter of a kernel's C signature."""

    name: str
    ctype: str  # its C type, e.g. "const int8_t *" or "int32_t"
    doc: str  # its shape or meaning

    @property
    def pointer(self) -> bool:
        return self.ctype.endswith("*")


@dataclass(frozen=True)
class Split:
    """Cores take contiguous shares of a kernel's elements: the `offset` parameters advance with the share,
    the `count` parameter becomes its size, and shares are whole multiples of `unit` (a head for RoPE)."""

    offset: tuple[str, ...]
    count: str
    unit: str | int = 1  # an int, or the name of a parameter that holds it
    bounds: tuple[str, str] | None = None  # or: the kernel takes [lo, hi) itself, and count stays whole
    # or: two forks, a scale that spans the vector between them: (first pass, second pass), each taking the kernel's
    # arguments, then spans [2 * n_cores] (each core's {hi, lo}: the first writes its own, the second reads all), core,
    # n_cores and the core's [lo, hi) of count
    passes: tuple[str, str] | None = None


@dataclass(frozen=True)
class KernelSpec:
    name: str  # the plan's kernel: the C function a step calls, or (attention) the untiled reference of its pieces
    source: str  # the file in kernels_c/ that defines it
    params: tuple[Param, ...]  # in the C signature's order
    twin: Callable  # the numpy twin, called with the step's arguments by parameter name (golden.py)
    cost: Callable  # cost.py: (step, plan, deployment, n_tok, pos, pos0) -> Work
    doc: str
    calls: tuple[str, ...] = ()  # the C functions a step of this kernel calls; () means (name,)
    bounds: tuple[int, int] | None = None  # the range the output saturates to, when the kernel has one
    tiling: TileScheme = TileScheme.STAGED  # rows: weight rows stream in tiles | positions: K/V positions stream | staged: copied whole
    row_bytes: Callable | None = None  # rows: the bytes of one weight row, from the step's arguments
    resident: tuple[str, ...] = ()  # parameters the engine keeps in its own memory: never staged (the NPU's weights)
    split: Split | None = None  # how the cores share one call (rows and positions tile instead)
    prefill: Mode = Mode.TOKEN  # a prefill chunk: gemm (weights once, every token) | flat (all elements) | token (per token)
    chunk_cost: bool = False  # its cost function prices a whole chunk of tokens (else a token step costs n calls)
    fragment: str = "plain"  # the steps.c.j2 macro that prints a step: plain | split | rows | positions | npu
    # a linear layer's weights in a layout of its own: (the suffix of the constant's name after the op's, a function
    # (the layer's weights as the quantizer stores them, its quantization params) -> that layout); None: as stored
    weights: tuple[str, Callable] | None = None
    # a kernel with the same integers on the quantizer's own weights (.wb), for tiling to fall back to when this one's
    # smallest tile does not fit L1 (the packed GEMV: twice the weight bytes per row)
    fallback: "KernelSpec | None" = None

    def __post_init__(self):  # a misspelt scheme or mode fails where the kernel is declared
        object.__setattr__(self, "tiling", TileScheme(self.tiling))
        object.__setattr__(self, "prefill", Mode(self.prefill))

    @property
    def functions(self) -> tuple[str, ...]:
        return self.calls or (self.name,)

    @property
    def names(self) -> tuple[str, ...]:
        return tuple(p.name for p in self.params)

    @property
    def trailing(self) -> tuple[str, ...]:
        """A GEMV's parameters after n_out (int4: the group size), which a rows-tiled call passes as they are."""
        return self.names[self.names.index("n_out") + 1:]

    @property
    def output(self) -> str:
        """The parameter the kernel writes its result to: every kernel here takes it first."""
        return self.params[0].name

    def has_param(self, name: str) -> bool:
        return name in self.names

    def param(self, name: str) -> Param:
        return next(p for p in self.params if p.name == name)

    @property
    def out_bits(self) -> int:
        """Bits of the saturated output (the NPU job's out_bits)."""
        return (self.bounds[1] + 1).bit_length()
