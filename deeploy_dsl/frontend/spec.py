"""The typed, immutable description of a deployment: what a `.dply` file means after checking.

Every node keeps the source position of the text it came from, so that later phases (weights,
mapping, memory planning) can point their errors at the right `.dply` line.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from ..errors import Pos
from ..kinds import Engine


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
    stat: str  # "max", "percentile" or "mse"
    percentile: float
    seed: int
    pos: Pos


@dataclass(frozen=True)
class WeightOverride:
    """`PATTERN -> int8 | int4(G)` in the quantize block: the weight format of the linear layers it matches."""

    pattern: "PathPattern"
    group: int  # 0: int8 per channel; else int4 with this many input channels per scale
    pos: Pos


@dataclass(frozen=True)
class QuantSpec:
    weights: str  # "int8" or "int4"
    granularity: str  # "per_channel" (int8) or "per_group" (int4)
    activations: str  # "int8"
    calibration: Calibration
    kv_cache: str  # "int8"
    residual: str  # "int16"
    pos: Pos
    keys: str = "int8"  # "int8" or "int16": the k projection, RoPE on k and the K cache
    group: int = 0  # int4: input channels per weight scale
    weights_pos: Pos | None = None  # the `weights` setting, for errors about the weight format
    rounding: str = "nearest"  # "nearest" or "gptq": how weights are rounded onto their grid
    overrides: tuple[WeightOverride, ...] = ()  # per-layer weight formats, later lines win
    dynamic: tuple[str, ...] = ()  # activations with a per-token scale computed at run time: swiglu, swiglu_absmax, norm, final_norm
    queries: str = "int8"  # "int8", "int12" (stored in int16, +-2047) or "int16": the q projection, RoPE on q, scores
    smooth: float | None = None  # SmoothQuant's alpha (quant/smooth.py), or None: no smoothing
    smooth_pos: Pos | None = None  # the `smooth` setting
    gate_up: str = "int8"  # "int8" or "int16": the MLP's gate and up projections' outputs, which the SwiGLU reads
    smooth_down: float | None = None  # `smooth ..., down = D`: the SwiGLU output's alpha into the down projection
    swiglu: str = "int8"  # "int8", "int12" or "int16" (both stored in int16): the SwiGLU output, the down projection's input
    classifier: str = "int8"  # "int8" or "int16": lm_head's weights (int16 wins over `weights` and the override lines)


@dataclass(frozen=True)
class PathPattern:
    """`layers[0..2].mlp.*`: segments of (name or '*', layer range or None)."""

    segments: tuple[tuple[str, tuple[int, int] | None], ...]
    text: str


@dataclass(frozen=True)
class MapHint:
    pattern: PathPattern
    engine: Engine
    cores: int | None
    pos: Pos

    def __post_init__(self):
        object.__setattr__(self, "engine", Engine(self.engine))


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
    sampler: str  # "greedy", "temperature" or "top_p"
    prompt: str
    pos: Pos
    prefill: int = 16  # prompt tokens one prefill chunk runs at once (MODEL_PREFILL); smaller if L1 cannot hold it
    prompt_pos: Pos | None = None  # the prompt's text, for errors about encoding it
    temperature: float = 0.0  # 0: greedy
    top_p: float = 1.0  # the probability mass kept (1: all tokens)
    seed: int = 0  # the device's xorshift32 seed (the program's --seed replaces it)


@dataclass(frozen=True)
class Npu:
    """The accelerator beside the cluster, as the cost model and the compiler see it (targets/*.yaml)."""

    name: str
    ops: tuple[str, ...]  # op kinds it runs: linear (1x1 pointwise, GEMV/GEMM, requantization fused)
    k_block: int  # input channels per weight block; weights are packed (and zero-padded) in these
    cols: int  # output channels per cycle: the array is k_block x cols MACs
    setup_cycles: int  # programming one job
    weight_memory_bytes: int  # its own weight memory, which NPU-mapped layers' packed weights must fit
    weight_bytes_per_cycle: int  # the bandwidth from that memory into the array
    pj_per_mac: float
    pj_per_weight_byte: float


@dataclass(frozen=True)
class Energy:
    """Energy constants of a target (targets/*.yaml says where each comes from, or that it is assumed)."""

    cluster_pj_per_mac: float  # an int8 MAC on a cluster core, with its share of loads and control
    cluster_pj_per_op: float  # one element of an element-wise kernel (norm, RoPE, softmax, SwiGLU, add)
    dma_pj_per_byte: float  # moving one byte between memory levels
    idle_mw: float  # leakage and clocks while the chip runs the model


@dataclass(frozen=True)
class Vector:
    """A vector unit's datapath, for estimated cycles (instructions retired are exact, cycles are not): a vector
    instruction of vl elements of SEW bits takes ceil(vl * SEW / datapath_bits) cycles, at least one."""

    datapath_bits: int  # bits of elements the unit processes per cycle (all lanes together)
    source: str  # where the figure comes from, or that it is an assumption


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
    macs_per_cycle_per_core: float = 1.0  # sustained int8 MACs of one cluster core in a linear layer
    cycles_per_element: float = 4.0  # one element of an element-wise kernel on one core
    fork_cycles: int = 0  # one fork and join of the cluster (waking the cores, the barrier)
    npu: Npu | None = None
    energy: Energy | None = None
    vlen: int = 0  # the vector registers' bits (RVV's VLEN) when the ISA has a vector extension, else 0
    vector: Vector | None = None  # the vector unit's datapath (cost.py's estimated cycles), when it has one

    @property
    def has_npu(self) -> bool:
        return bool(self.npu_ops)

    @property
    def extensions(self) -> tuple[str, ...]:
        """The ISA's extensions beyond its base (rv32imac_zve32x_zvqdotq -> zve32x, zvqdotq)."""
        return tuple(self.isa.split("_")[1:])


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
    gemv: str = "auto"  # the int8 GEMV on RV32 cores: auto (by the cost model), packed or blocked

    @property
    def inputs(self) -> list[Path]:
        """The files the deployment reads, which no build may replace (nor a folder holding them)."""
        paths = [self.source, self.model.weights, self.model.weights.parent / "config.json"]
        paths += [self.model.tokenizer] if self.model.tokenizer else []
        src = self.quant.calibration.source
        return paths + ([Path(src)] if src != "samples" else [])

    def level_holding(self, what: str) -> MemLevel:
        for lvl in self.memory:
            if what in lvl.holds:
                return lvl
        raise KeyError(what)
