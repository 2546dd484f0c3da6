"""The typed, immutable description of a deployment: what a `.dply` file means after checking.

Every node keeps the source position of the text it came from, so that later phases (weights,
mapping, memory planning) can point their errors at the right `.dply` line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from .errors import Pos


@dataclass(frozen=True)
class Dims:
    dim: int
    layers: int
    heads: int
    kv_heads: int
    hidden: int
    vocab: int
    context: int
    norm_eps: float
    rope_theta: float
    tied: bool

    @property
    def head_size(self) -> int:
        return self.dim // self.heads

    @property
    def kv_dim(self) -> int:
        return self.kv_heads * self.head_size


@dataclass(frozen=True)
class ModelSpec:
    arch: str
    weights: Path
    tokenizer: Path | None
    dims: Dims
    pos: Pos
    weights_pos: Pos
    tokenizer_pos: Pos
    dim_pos: dict = field(default_factory=dict, compare=False, hash=False)  # dims key -> Pos


@dataclass(frozen=True)
class Calibration:
    source: str  # "samples" (the float model's own seeded samples) or a text file path
    tokens: int
    stat: str  # "max" or "percentile"
    percentile: float
    seed: int
    pos: Pos


@dataclass(frozen=True)
class QuantSpec:
    weights: str  # "int8"
    granularity: str  # "per_channel"
    activations: str  # "int8"
    calibration: Calibration
    kv_cache: str  # "int8"
    residual: str  # "int16"
    pos: Pos


@dataclass(frozen=True)
class PathPattern:
    """`layers[0..2].mlp.*`: segments of (name or '*', layer range or None)."""

    segments: tuple[tuple[str, tuple[int, int] | None], ...]
    text: str


@dataclass(frozen=True)
class MapHint:
    pattern: PathPattern
    engine: str  # "cluster", "npu" or "auto"
    cores: int | None
    pos: Pos


@dataclass(frozen=True)
class MemLevel:
    name: str
    size_bytes: int
    capacity_bytes: int  # what the target has; size_bytes is the budget the deployment grants
    alignment: int
    holds: tuple[str, ...]  # "weights", "kv_cache", "activations"
    pos: Pos
    double_buffer: bool = False  # tiles streamed into this level alternate between two buffers


@dataclass(frozen=True)
class GenSpec:
    tokens: int
    sampler: str  # "greedy"
    prompt: str
    pos: Pos


@dataclass(frozen=True)
class Target:
    name: str
    description: str
    clock_hz: int
    cores: int
    isa: str
    npu_ops: tuple[str, ...]  # empty when the target has no NPU
    levels: tuple[tuple[str, int, int], ...]  # (name, size_bytes, alignment), fastest first
    pos: Pos
    dma_bytes_per_cycle: int = 8  # the DMA between the levels
    dma_setup_cycles: int = 0  # fixed cost of starting one transfer

    @property
    def has_npu(self) -> bool:
        return bool(self.npu_ops)


@dataclass(frozen=True)
class Deployment:
    name: str
    source: Path
    target: Target
    model: ModelSpec
    quant: QuantSpec
    hints: tuple[MapHint, ...]
    memory: tuple[MemLevel, ...]
    generate: GenSpec
    strict: bool
    pos: Pos
    warnings: tuple = ()  # Diagnostics that did not stop the build

    def level_holding(self, what: str) -> MemLevel:
        for lvl in self.memory:
            if what in lvl.holds:
                return lvl
        raise KeyError(what)
