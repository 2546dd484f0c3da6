"""The `.dply` language and the target descriptions as data: every block, setting, value form, engine, memory clause
and target field, with its value form, default, meaning and an example.

The checker (interpret.py) takes its lists of known keys, choices and defaults from these tables, and the language
reference (docs/dply.md, docs/targets.md, written by `deeploy docs`) is generated from them, so the two cannot drift
(tests/test_docs.py checks the committed docs and fuzzes the keys the checker accepts). A new setting is one row here
and the code that reads it; a new target field is one row of TARGET_FIELDS.
"""
from __future__ import annotations

from dataclasses import dataclass

from ..kernels.twins import SWIGLU_BITS, WIDE_MAX, wide_gemv_n_in_max
from ..kinds import Engine


@dataclass(frozen=True)
class Block:
    """A `NAME { ... }` block: what it holds."""

    name: str
    opening: str  # how it is opened
    meaning: str
    required: bool = False


@dataclass(frozen=True)
class Key:
    """One setting: `KEY VALUE` on a line of its block (block "" is the top of the file). `form` is what the checker's
    messages say the setting expects; `default` the value the checker uses when the line is absent (None: required,
    or, for the model's dims, read from config.json)."""

    block: str
    name: str
    form: str
    meaning: str
    example: str
    default: object = None
    default_text: str = ""  # how the docs show the default when it is not the value itself
    choices: tuple[str, ...] = ()  # a closed vocabulary of names, when the setting takes one
    hf: str = ""  # the model's dims: the config.json name the value must agree with


@dataclass(frozen=True)
class Doc:
    """A named word of the language (an engine, a memory clause, a value form, a calibrate argument...)."""

    name: str
    form: str
    meaning: str
    example: str


BLOCKS = (
    Block("model", "model llama {", "The model: its weights, its tokenizer and, optionally, its dimensions (each must "
          "agree with the config.json beside the weights). The label names the architecture; only llama is supported "
          "(a Mistral whose sliding window covers the context is a Llama).", required=True),
    Block("quantize", "quantize {", "How the float model becomes integers: weight and activation formats, the "
          "calibration, wider keys or queries, per-token scales, SmoothQuant, and per-layer weight formats as "
          "`PATTERN -> int8 | int4(G)` lines (later lines win)."),
    Block("map", "map {", "Which engine runs which op: `PATTERN -> ENGINE` lines, later lines override earlier ones. "
          "Ops no line names run on the cluster with all its cores."),
    Block("memory", "memory {", "The memory levels the deployment may use (a level of the target per line: its budget "
          "and what it holds). Levels left out keep the target's size; what no level claims goes to a default level "
          "(weights and the KV cache to the largest, activations to the fastest)."),
    Block("generate", "generate {", "Text generation: how many tokens, the sampler and its seed, the default prompt "
          "and the prefill's chunk. `deeploy run` options override it."),
)

# weights, smooth and sampler: what their errors say they expect (the same words as the reference)
WEIGHT_FORMATS = ("'int8 per_channel' or 'int4 per_group(G)', G a multiple of 8 from 8 to 256, "
                  "then optionally the rounding: nearest (default) or gptq")
SMOOTH_FORMS = ("'smooth alpha = A', A from 0 to 1 (0.5 is SmoothQuant's; 'smooth A' for short), optionally followed by "
                "', down = D' (D from 0 to 1), or 'smooth none'")
SAMPLERS = "'greedy', 'temperature(T)' or 'top_p(P, temperature = T)', T from 0 to 100, P in (0, 1]"
CALIBRATE = 'calibrate(samples | "file.txt", tokens = N, seed = N, stat = max | percentile(P) | mse)'

KEYS = (
    # ---- the top of the file
    Key("", "deployment", "a name: letters, digits, _ and - (at most 64 characters)",
        "Names the deployment, its build folder (build/NAME), the generated program and its Makefile target.",
        "deployment stories260k"),
    Key("", "target", "a target name: one of the target descriptions shipped with deeploy (docs/targets.md)",
        "The platform to compile for: its cores, NPU, memory levels and cost constants.", "target siracusa"),
    Key("", "strict", "yes or no", "With yes, a map hint the NPU cannot honour or a core count the target lacks is an "
        "error instead of a warning (and a fall-back). `--strict` / `--no-strict` override it.", "strict yes",
        default="no", choices=("yes", "no")),
    Key("", "isa", "an RV32 ISA: rv32imac, then any of _zve32x, _zvqdotq (zvqdotq needs zve32x)",
        "Overrides the cores' instruction set of the target: the rules pick vector kernels (RVV for embedded cores, "
        "Zvqdotq's int8 dot products) where the isa has what they need (with `vlen`, e.g. `isa rv32imac_zve32x_zvqdotq` "
        "and `vlen 128`); `--engine spike` runs such builds.", "isa rv32imac", default_text="the target's (cluster.isa)"),
    Key("", "gemv", "auto, packed or blocked", "The int8 GEMV on RV32 cores: packed (two rows' weights in one 32-bit "
        "word, a multiply per two MACs, ~14% fewer instructions, twice the weight bytes to hold and to move) or blocked "
        "(a byte per weight); auto takes packed where the weights live where the cores compute, else whichever the cost "
        "model says is faster for the layer (plan.yaml's why says which and why).", "gemv packed", default="auto",
        choices=("auto", "packed", "blocked")),
    Key("", "vlen", "one of 32, 64, 128, 256, 512, 1024", "Overrides the vector registers' bits (VLEN) of a target "
        "whose isa has zve32x; moot without it.", "vlen 128", default_text="the target's (cluster.vlen)"),
    # ---- model: the files, then the dims in the order of spec.Dims
    Key("model", "weights", 'a "path" in double quotes, relative to the .dply file',
        "The model's weights: Hugging Face safetensors, with its config.json in the same folder.",
        'weights "model/model.safetensors"'),
    Key("model", "tokenizer", 'a "path" in double quotes, relative to the .dply file',
        "A llama2.c tokenizer (tok512.bin). Without one, the generated program takes and prints token ids.",
        'tokenizer "model/tok512.bin"', default_text="none: the program reads and prints ids"),
    Key("model", "dim", "a whole number", "The model width (embedding size).", "dim 64", hf="hidden_size"),
    Key("model", "layers", "a whole number", "Transformer layers.", "layers 5", hf="num_hidden_layers"),
    Key("model", "heads", "a whole number", "Attention heads; must divide dim, and dim/heads must be even.",
        "heads 8", hf="num_attention_heads"),
    Key("model", "kv_heads", "a whole number", "Key/value heads (grouped-query attention); must divide heads.",
        "kv_heads 4", hf="num_key_value_heads"),
    Key("model", "hidden", "a whole number", "The MLP's hidden width.", "hidden 172", hf="intermediate_size"),
    Key("model", "vocab", "a whole number", "Vocabulary size (at least 259: BOS, EOS and 256 byte tokens).",
        "vocab 512", hf="vocab_size"),
    Key("model", "context", "a whole number", "Positions the KV cache holds; may be smaller than the model's "
        "max_position_embeddings (fewer positions, less memory), never larger.", "context 256",
        hf="max_position_embeddings"),
    Key("model", "norm_eps", "a number", "RMSNorm's epsilon, in (0, 1].", "norm_eps 1e-5", hf="rms_norm_eps"),
    Key("model", "rope_theta", "a number", "The rotary embeddings' base, in (1, 1e12].", "rope_theta 10000",
        hf="rope_theta"),
    Key("model", "tied", "yes or no", "Whether the classifier shares the embedding's weights.", "tied yes",
        hf="tie_word_embeddings", choices=("yes", "no", "true", "false")),
    # ---- quantize
    Key("quantize", "weights", WEIGHT_FORMATS, "Linear layers' weights: int8 with one scale per output row, or int4 "
        "with one scale per group of G input channels; gptq rounds them with GPTQ's error feedback (calibration data) "
        "instead of to the nearest.", "weights int4 per_group(32) gptq", default="int8 per_channel"),
    Key("quantize", "activations", f"int8, optionally followed by {CALIBRATE}",
        "Activations are int8 with one scale per tensor, calibrated on the float model: on its own seeded samples "
        "or a text file, over `tokens` tokens, by the absolute maximum, a percentile of |x| or the MSE-optimal clip.",
        "activations int8 calibrate(samples, tokens = 4096, stat = percentile(99.99))",
        default="int8 calibrate(samples, tokens = 4096, stat = max)"),
    Key("quantize", "kv_cache", "int8", "The KV cache's type (the K cache follows `keys`).", "kv_cache int8",
        default="int8", choices=("int8",)),
    Key("quantize", "residual", "int16", "The residual stream's type, one scale for the whole model.",
        "residual int16", default="int16", choices=("int16",)),
    Key("quantize", "keys", "int8 or int16", "The k projection, RoPE on k and the K cache (V stays int8).",
        "keys int16", default="int8", choices=("int8", "int16")),
    Key("quantize", "queries", "int8, int12 or int16", "The q projection, RoPE on q and the scores' q operand "
        "(int12: stored in int16 within +-2047). The head size must keep a score's int32 sum: int12 with int16 keys "
        "up to head size 32, int16 only with int8 keys.", "queries int12",
        default="int8", choices=("int8", "int12", "int16")),
    Key("quantize", "gate_up", "int8 or int16", "The MLP's gate and up projections' outputs, which the SwiGLU reads. "
        "int16: calibrated for 16 bits, silu from a 513-entry table over the int16 gate interpolated in integers; needs "
        "`dynamic swiglu_absmax` (the products reach 2^30).", "gate_up int16", default="int8", choices=("int8", "int16")),
    Key("quantize", "swiglu", "int8, int12 or int16", "The SwiGLU output, which the down projection reads (int12: "
        "stored in int16 within +-2047). Wider than int8 needs `dynamic swiglu_absmax` (its per-token scale makes the "
        "token's largest 2047 or 32767), and the down GEMV's int32 sums must hold: hidden x 2047 x 127 or hidden x "
        "32767 x 127 below 2^31 (int16: hidden up to 516).", "swiglu int16", default="int8",
        choices=("int8", "int12", "int16")),
    Key("quantize", "classifier", "int8 or int16", "The classifier's (lm_head's) weights, one scale per output row. "
        "int16 needs `dynamic final_norm` (its input's per-token absmax scale keeps it within +-127) and dim x 127 x "
        "32767 below 2^31 (dim up to 516); the classifier then runs on the cluster.", "classifier int16",
        default="int8", choices=("int8", "int16")),
    Key("quantize", "dynamic", "a list of: swiglu, swiglu_absmax, norm, final_norm (or none)",
        "Activations with a scale per token computed at run time instead of a calibrated one: swiglu (a power of "
        "two for the SwiGLU output), swiglu_absmax (an absmax factor for it instead), norm (the attention and MLP "
        "norms' outputs), final_norm (the final norm's). On the NPU, the core makes a reading layer's "
        "multipliers for the token (npu_run_tok).", "dynamic final_norm, swiglu_absmax",
        default="none", choices=("swiglu", "swiglu_absmax", "norm", "final_norm", "none")),
    Key("quantize", "smooth", SMOOTH_FORMS, "SmoothQuant at compile time: each norm's gain and the linear layers "
        "after it trade range per channel, by alpha; with down = D, each SwiGLU output and its down projection too "
        "(by D, through the up projection's rows).", "smooth alpha = 0.5, down = 0.5", default="none"),
    # ---- generate
    Key("generate", "tokens", "a whole number from 1 to 2147483647", "New tokens to generate at most (generation "
        "also stops when the context is full, and at BOS/EOS).", "tokens 128", default=128),
    Key("generate", "sampler", SAMPLERS, "How the next token is chosen, on the device in integers: the largest logit, "
        "or a draw at temperature T, optionally from the smallest set of tokens holding mass P.",
        "sampler top_p(0.9, temperature = 0.8)", default="greedy"),
    Key("generate", "seed", "a whole number from 0 to 4294967295", "The sampler's xorshift32 seed (the program's "
        "--seed replaces it without a rebuild).", "seed 1", default=0),
    Key("generate", "prompt", 'a "string" in double quotes', "The prompt `deeploy run` and the program use when "
        "given none.", 'prompt "Once upon a time"', default="Once upon a time"),
    Key("generate", "prefill", "a whole number of tokens from 1 to the context", "Prompt tokens one prefill chunk "
        "runs at once (halved until L1 holds it); 1 runs the prompt token by token.", "prefill 16", default=16),
)

ENGINES = {
    Engine.CLUSTER: Doc("cluster", "cluster | cluster(cores = N)", "The RV32 cluster, on N cores (default: all "
                        "the target has; more than it has is a warning and all of them).",
                        "layers[*].attn.* -> cluster(cores = 4)"),
    Engine.NPU: Doc("npu", "npu", "The NPU, on targets with one: linear layers with int8 weights and no per-token "
                    "input factor, whose packed weights fit its weight memory. Other ops a pattern with '*' selects "
                    "stay on the cluster; a hint it cannot honour is a warning (an error with strict yes).",
                    "layers[*].mlp.* -> npu"),
    Engine.AUTO: Doc("auto", "auto", "Per op, the engine the cost model (the target's constants) estimates faster "
                     "for a decode step; plan.yaml says why.", "lm_head -> auto"),
}

# `L1 256 KiB holds activations double_buffer`: a memory line's clauses, in the order they may be written
MEMORY_CLAUSES = (
    Doc("size", "SIZE UNIT (B, KiB, MiB or GiB)", "The level's budget for this deployment, at most what the target "
        "has. Default: the target's size.", "L1 64 KiB"),
    Doc("holds", "holds WHAT, ... (weights, kv_cache, activations)", "What lives in this level. Activations must "
        "live in the first (fastest) level, which the cluster computes from.", "L2 2 MiB holds weights, kv_cache"),
    Doc("double_buffer", "double_buffer, anywhere after the size", "Tiles streamed into this level by DMA alternate "
        "between two buffers, so the next tile's transfer overlaps the current tile's compute; and the weight stream "
        "fetches each linear layer's first tile while the layers before it compute, where the level holds it.",
        "L1 256 KiB holds activations double_buffer"),
)
HOLDABLE = ("weights", "kv_cache", "activations")

# the shapes a value can take (grammar/deeploy.lark's `value`)
VALUE_FORMS = (
    Doc("name", "a word: letters, digits, _ and - inside", "Choices and names.", "keys int16"),
    Doc("number", "an integer or decimal, optionally signed or with an exponent", "Counts and parameters.",
        "tokens 128"),
    Doc("size", "a number and a unit: B, KiB, MiB, GiB (binary: 1 KiB is 1024 B)", "Memory sizes.", "L1 256 KiB"),
    Doc("string", '"text in double quotes", with \\" \\\\ \\n \\t \\uXXXX escapes', "Paths and prompts.",
        'prompt "Once upon a time"'),
    Doc("call", "NAME(ARG, KEY = VALUE, ...)", "A choice with parameters; arguments are values.",
        "sampler temperature(0.8)"),
    Doc("assignment", "NAME = VALUE", "A named parameter of a setting.", "smooth alpha = 0.5"),
    Doc("list", "values separated by commas (or spaces)", "Settings that take several values.",
        "dynamic final_norm, swiglu_absmax"),
)

CALIBRATE_ARGS = (
    Doc("source", 'samples | "file.txt"', "The float model's own seeded samples, or a text file (relative to the "
        ".dply, at most 8 MiB) tokenized and cut into sequences. Default: samples.", 'calibrate("calib.txt")'),
    Doc("tokens", "tokens = N", "Calibration tokens, bounded by the memory the pass holds (2 GiB). Default 4096.",
        "calibrate(samples, tokens = 8192)"),
    Doc("seed", "seed = N", "The sampling seed, 0 to 2^64 - 1. Default 0.", "calibrate(samples, seed = 3)"),
    Doc("stat", "stat = max | percentile(P) | mse", "The range kept per tensor: the absolute maximum, the P-th "
        "percentile of |x| (0 < P <= 100), or the clip with the least squared error. Default max.",
        "calibrate(samples, stat = percentile(99.99))"),
)

PATTERNS = (
    Doc("default", "default", "Every op.", "default -> cluster(cores = 8)"),
    Doc("op", "embed, final_norm, lm_head", "The ops outside the layers.", "lm_head -> npu"),
    Doc("layer op", "layers[I].GROUP.OP: attn.{q, k, v, rope_q, rope_k, attention, o, residual}, attn_norm, "
        "mlp_norm, mlp.{gate, up, swiglu, down, residual}", "One op of one layer.", "layers[0].attn.q -> npu"),
    Doc("range", "layers[A..B] or layers[*]", "Layers A to B (inclusive), or every layer.",
        "layers[1..3].mlp.down -> npu"),
    Doc("wildcard", "*", "Any op name in its place; a trailing * takes the rest of the name.",
        "layers[*].mlp.* -> npu"),
    Doc("alias", "qkv (q, k, v), softmax (attention), rope (rope_q, rope_k), norm (attn_norm, mlp_norm, "
        "final_norm)", "Several ops by one name.", "layers[*].attn.qkv -> npu"),
)

QUANTIZE_LINES = (
    Doc("weight format", "PATTERN -> int8 | int4(G) | int4", "The weight format of the linear layers the pattern "
        "matches (int4 alone: the block's group size, when the block's weights are int4). Later lines win.",
        "lm_head -> int8"),
)


@dataclass(frozen=True)
class Field:
    """One field of a target description (deeploy_dsl/targets/NAME.yaml). `path` is dotted; `<level>` stands for
    any memory level's name. `default` None: required (in its section, when the section is optional)."""

    path: str
    type: type
    meaning: str
    example: str
    default: object = None


OPTIONAL_SECTIONS = ("npu", "energy")  # a target without an NPU, or without energy estimates, leaves them out

TARGET_FIELDS = (
    Field("name", str, "The target's name, as `target NAME` in a .dply names it (the file is NAME.yaml).",
          "siracusa"),
    Field("description", str, "One line for people.", "8-core RV32 cluster, N-EUREKA NPU, 256 KiB L1, 2 MiB L2"),
    Field("clock_hz", int, "The clock, for estimates of tokens/s and energy.", "360000000"),
    Field("cluster.cores", int, "Cores of the cluster (harts); `cluster(cores = N)` may use fewer.", "8"),
    Field("cluster.isa", str, "The cores' instruction set (rv32imac, or host for the build machine).", "rv32imac"),
    Field("cluster.vlen", int, "The vector registers' bits (VLEN) of cores whose isa has the vector extension "
          "(zve32x); 0 without one. `vlen N` in a .dply overrides it.", "128", 0),
    Field("cluster.vector.datapath_bits", int, "The vector unit's datapath: a vector instruction of vl elements of "
          "SEW bits takes ceil(vl * SEW / datapath_bits) cycles (estimates only; Spike counts instructions).", "128", 0),
    Field("cluster.vector.source", str, "Where the datapath figure comes from (a paper, a datasheet, or "
          "'assumption: ...'), printed with the estimates.", "assumption: 4 x 32-bit lanes (Spatz)", ""),
    Field("cluster.macs_per_cycle_per_core", float, "Sustained int8 MACs per cycle of one core in a linear layer "
          "(cost model).", "2.0", 1.0),
    Field("cluster.cycles_per_element", float, "Cycles of one element of an element-wise kernel (norm, RoPE, "
          "softmax, SwiGLU, add) on one core (cost model).", "6.0", 4.0),
    Field("cluster.fork_cycles", int, "One fork and join of the cluster: waking the cores and the barrier (cost "
          "model).", "150", 0),
    Field("memory.<level>.size_bytes", int, "The level's capacity. Levels are listed fastest first; the first is "
          "the one the cores compute from (L1).", "262144"),
    Field("memory.<level>.alignment", int, "The alignment of every buffer placed in the level, in bytes.", "4"),
    Field("dma.bytes_per_cycle", int, "The DMA's sustained bytes per cycle between the levels (cost model).", "8", 8),
    Field("dma.setup_cycles", int, "Cycles to start one transfer (cost model).", "30", 0),
    Field("npu.name", str, "The accelerator's name.", "neureka"),
    Field("npu.ops", list, "Op kinds it runs (linear: GEMV/GEMM with per-channel requantization fused).",
          "[linear]"),
    Field("npu.k_block", int, "Input channels per weight block; weights are packed and zero-padded to it (the NPU "
          "layout fixes 32).", "32"),
    Field("npu.cols", int, "Output channels per cycle: the array is k_block x cols MACs (cost model).", "32"),
    Field("npu.setup_cycles", int, "Cycles to program one job (cost model).", "100"),
    Field("npu.weight_memory.size_bytes", int, "The NPU's own weight memory, which NPU-mapped layers' packed "
          "weights must fit.", "4194304"),
    Field("npu.weight_memory.bytes_per_cycle", int, "Bandwidth from that memory into the array (cost model).",
          "32"),
    Field("npu.energy.pj_per_mac", float, "Energy of one NPU MAC, in pJ.", "0.23"),
    Field("npu.energy.pj_per_weight_byte", float, "Energy of reading one weight byte, in pJ.", "2.0"),
    Field("energy.cluster_pj_per_mac", float, "An int8 MAC on a cluster core with its loads and control, in pJ.",
          "1.5"),
    Field("energy.cluster_pj_per_op", float, "One element of an element-wise kernel, in pJ.", "3.0"),
    Field("energy.dma_pj_per_byte", float, "Moving one byte between memory levels, in pJ.", "1.0"),
    Field("energy.idle_mw", float, "Leakage and clocks while the model runs, in mW.", "10.0"),
)


def keys(block: str) -> tuple[str, ...]:
    """The settings a block (or the top of the file, "") takes, in the reference's order."""
    return tuple(k.name for k in KEYS if k.block == block)


def key(block: str, name: str) -> Key:
    return next(k for k in KEYS if k.block == block and k.name == name)


def choices(block: str, name: str) -> tuple[str, ...]:
    return key(block, name).choices


def default(block: str, name: str):
    return key(block, name).default


def block_names() -> tuple[str, ...]:
    return tuple(b.name for b in BLOCKS)


def dim_keys() -> dict[str, str]:
    """The model's dims: .dply name -> HF config.json name, in the order of spec.Dims."""
    return {k.name: k.hf for k in KEYS if k.block == "model" and k.hf}


def target_field(path: str) -> Field:
    return next(f for f in TARGET_FIELDS if f.path == path)


def field_path(parts: tuple[str, ...]) -> str:
    """A YAML leaf's path as TARGET_FIELDS names it (a memory level's name is `<level>`)."""
    return ".".join("<level>" if parts[0] == "memory" and i == 1 else p for i, p in enumerate(parts))


def _leaves(node, parts: tuple[str, ...] = ()):
    """The (path parts, value) of every leaf of a parsed YAML mapping."""
    for k, v in node.items():
        yield from _leaves(v, parts + (str(k),)) if isinstance(v, dict) else (((parts + (str(k),)), v),)


def check_target_fields(name: str, data) -> None:
    """Every field of a target description is one TARGET_FIELDS names (docs/targets.md), and every required one of
    each section present is there: a new field is a row of that table, or an error."""
    if not isinstance(data, dict) or not isinstance(data.get("memory"), dict) or not data["memory"]:
        raise ValueError(f"target {name}: a target description is a mapping with at least one memory level")
    known = {f.path for f in TARGET_FIELDS}
    given = {field_path(parts) for parts, _ in _leaves(data)}
    if unknown := sorted(given - known):
        raise ValueError(f"target {name}: unknown field {unknown[0]!r}; docs/targets.md lists the fields "
                         "(deeploy_dsl/frontend/language.py, TARGET_FIELDS)")
    for level, spec in data["memory"].items():
        missing = [p for p in ("memory.<level>.size_bytes", "memory.<level>.alignment")
                   if not isinstance(spec, dict) or p.rsplit(".", 1)[1] not in spec]
        if missing:
            raise ValueError(f"target {name}: memory level {level} needs {missing[0].rsplit('.', 1)[1]}")
    for fl in TARGET_FIELDS:
        section = fl.path.split(".")[0]
        if fl.default is None and "<level>" not in fl.path and fl.path not in given \
                and (section not in OPTIONAL_SECTIONS or section in data):
            raise ValueError(f"target {name}: missing field {fl.path!r}")


# ---- checks that go with the quantize rows `swiglu` and `classifier` ----------------------------------------------

def check_wide(swiglu: str, classifier: str, dynamic: tuple[str, ...], dims, pos, errs) -> None:
    """A wide SwiGLU output or classifier needs its input's per-token absmax scale (it bounds the values), and the
    GEMV's int32 sums must hold n_in products of the widest input by the widest weight (kernels.wide_gemv_n_in_max).
    pos(key): the setting's place; errs: the checker's Collector."""
    if swiglu != "int8" and "swiglu_absmax" not in dynamic:
        errs.add(pos("swiglu"), f"swiglu {swiglu} needs the SwiGLU's per-token absmax scale, which bounds the output "
                 "the down projection's int32 sums take", "add 'swiglu_absmax' to the quantize block's dynamic line "
                 "(or use 'swiglu int8')")
    if classifier == "int16" and "final_norm" not in dynamic:
        errs.add(pos("classifier"), "classifier int16 needs the final norm's per-token absmax scale, which keeps "
                 "the classifier's input within +-127 for its int32 sums", "add 'final_norm' to the quantize block's "
                 "dynamic line (or use 'classifier int8')")
    if dims is None:
        return
    for key, bits, n_in, what in (("swiglu", SWIGLU_BITS[swiglu], dims.hidden, "hidden"),
                                  ("classifier", 16 if classifier == "int16" else 8, dims.dim, "dim")):
        if bits == 8:
            continue
        top = wide_gemv_n_in_max(bits)
        if n_in > top:
            x, w = (WIDE_MAX[bits], 127) if key == "swiglu" else (127, WIDE_MAX[bits])
            errs.add(pos(key), f"{key} int{bits}: the {'down projection' if key == 'swiglu' else 'classifier'} sums "
                     f"{what} {n_in} products of up to {x:,} x {w:,}, up to {n_in * x * w:,}, beyond the int32 its "
                     f"GEMV adds in (it holds for {what} up to {top})",
                     "use 'swiglu int12' (or int8)" if key == "swiglu" and bits == 16 else f"use '{key} int8'")
