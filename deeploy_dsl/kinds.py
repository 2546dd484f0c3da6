"""The closed vocabularies the phases share: engines, dtypes, op and value kinds, argument kinds, tiling schemes
and prefill modes.

They are string enums: a member equals, hashes and formats as its string, so plan.yaml, messages and the
generated C print the same words as before, and a misspelt member is an AttributeError at import rather than a
comparison that is silently never true.
"""
from __future__ import annotations

from enum import StrEnum


class Engine(StrEnum):
    """Who runs a step (a map hint may also say `auto`: the cost model decides)."""

    CLUSTER = "cluster"
    NPU = "npu"
    AUTO = "auto"


class DType(StrEnum):
    INT8 = "int8"
    INT12 = "int12"  # 12-bit values (+-2047) stored in int16: the wider queries
    INT16 = "int16"
    INT32 = "int32"
    UINT8 = "uint8"
    UINT16 = "uint16"

    @property
    def itemsize(self) -> int:
        return _STORAGE[self] // 8

    @property
    def bits(self) -> int:
        return _BITS[self]

    @property
    def ctype(self) -> str:
        return "int16_t" if self is DType.INT12 else f"{self.value}_t"


_BITS = {DType.INT8: 8, DType.INT12: 12, DType.INT16: 16, DType.INT32: 32, DType.UINT8: 8, DType.UINT16: 16}
_STORAGE = {**_BITS, DType.INT12: 16}


class OpKind(StrEnum):
    """What an op of the graph computes; rules match on it."""

    EMBED = "embed"
    RMSNORM = "rmsnorm"
    LINEAR = "linear"
    ROPE = "rope"
    ATTENTION = "attention"
    SWIGLU = "swiglu"
    RESIDUAL_ADD = "residual_add"


class ValueKind(StrEnum):
    """Where a value lives and for how long: the allocator's lifetimes follow from it."""

    ACT = "act"  # an activation, live within one step of the model
    KV = "kv"  # the persistent KV cache
    SCRATCH = "scratch"  # one op's workspace
    TILE = "tile"  # a DMA staging buffer at the compute level


class ArgKind(StrEnum):
    """What a kernel argument is: a buffer, a constant array, an integer, or the runtime position / token."""

    BUF = "buf"
    CONST = "const"
    INT = "int"
    POS = "pos"
    TOKEN = "token"


class TileScheme(StrEnum):
    """How a kernel's big operand reaches the compute level (tiling.py)."""

    ROWS = "rows"  # weight rows stream in tiles
    POSITIONS = "positions"  # K/V cache positions stream in tiles
    STAGED = "staged"  # every operand copied whole


class Mode(StrEnum):
    """How a step of a prefill plan runs over a chunk of tokens (prefill.py)."""

    GEMM = "gemm"  # weights once, applied to every token
    FLAT = "flat"  # an element-wise kernel over all the chunk's elements at once
    TOKEN = "token"  # once per token
    LAST = "last"  # only for the chunk's last token (what only the logits need)
