"""Raw `.dply` tree -> a checked `Deployment`. Every error points at the setting that caused it.

Checks that need only the spec are constraints: small functions whose docstring is the message.
Several errors are collected and reported together.
"""
from __future__ import annotations

import os
from dataclasses import fields, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import yaml

from ..errors import Collector, Pos
from ..model.hfconfig import HFConfig, read_config
from ..kernels.layout import NPU_K
from ..kinds import Engine
from ..kernels.twins import QK_BITS, QK_MAX, qk_head_size_max, score_shift
from ..quant.quantize import CALIB_SEQ_LEN, CALIB_TEXT_MAX_BYTES
from .language import (CALIBRATE, check_wide, HOLDABLE, SAMPLERS, SMOOTH_FORMS, WEIGHT_FORMATS, block_names,
                       check_target_fields, choices, default, dim_keys, keys, target_field)
from .parse import Block, Doc, Mapping, Setting, Value, apply_overrides, parse_file
from .spec import (Calibration, Deployment, Dims, Energy, GenSpec, MapHint, MemLevel, ModelSpec, Npu, QuantSpec,
                   Target, Vector, WeightOverride)

# the language's words come from its reference tables (language.py), which docs/dply.md is generated from
TOP_SETTINGS = keys("")
BLOCKS = block_names()
DIM_KEYS = dim_keys()  # .dply name -> HF config.json name
FLOAT_DIMS = ("norm_eps", "rope_theta")


# ---- constraints on the model's dimensions: the docstring is the message -----------------------

# a zero or negative count is positive_dims' message; the others then hold vacuously

def heads_divide_dim(d: Dims) -> bool:
    """heads {heads} does not divide dim {dim}"""
    return d.heads <= 0 or d.dim % d.heads == 0


def kv_heads_divide_heads(d: Dims) -> bool:
    """kv_heads {kv_heads} does not divide heads {heads} (grouped-query attention shares each kv head)"""
    return d.kv_heads <= 0 or d.heads % d.kv_heads == 0


def head_size_even(d: Dims) -> bool:
    """head size dim/heads = {head_size} must be even for rotary embeddings"""
    return d.heads <= 0 or d.dim % d.heads != 0 or d.head_size % 2 == 0


def positive_dims(d: Dims) -> bool:
    """every dimension must be positive (dim {dim}, layers {layers}, heads {heads}, kv_heads {kv_heads}, hidden {hidden}, vocab {vocab}, context {context})"""
    return min(d.dim, d.layers, d.heads, d.kv_heads, d.hidden, d.vocab, d.context) > 0


def vocab_holds_specials(d: Dims) -> bool:
    """vocab {vocab} is too small: the llama2.c tokenizer needs BOS, EOS and 256 byte tokens"""
    return d.vocab >= 259


# bounds on what the integer kernels and the generated C can take, checked before anything is allocated
IN_MAX = 1 << 17  # int8 GEMV accumulates in int32: 127 * 128 * n_in < 2^31
HEAD_SIZE_MAX = 256  # int16 keys: q . k accumulates 128 * 32768 * head_size in int32 (< 2^31 needs < 512)
CONTEXT_MAX = 1 << 16  # the softmax's exps keep 8 bits or more (kernels.exp_bits: 24 - log2(context))
LAYERS_MAX = 256  # twice the deepest released Llama (126 layers); each layer is ~20 steps of the plan
NORM_EPS_MAX = 1.0  # Llama uses 1e-5 or 1e-6; an eps near the mean square would no longer normalise
ROPE_THETA_MAX = 1e12  # Llama 2 uses 1e4, Llama 3 5e5; the largest in use are ~1e8


def widths_fit_int32(d: Dims) -> bool:
    """dim {dim} or hidden {hidden} is above {in_max:,}: a linear layer's int32 accumulators would overflow"""
    return max(d.dim, d.hidden) <= IN_MAX


def head_size_fits(d: Dims) -> bool:
    """head size dim/heads = {head_size} is above {head_size_max}: the attention scores' int32 sums would overflow"""
    return d.heads <= 0 or d.dim // d.heads <= HEAD_SIZE_MAX


def context_fits(d: Dims) -> bool:
    """context {context} is above {context_max:,}, the longest the integer softmax takes (its exps keep 8 bits)"""
    return d.context <= CONTEXT_MAX


def layers_fit(d: Dims) -> bool:
    """layers {layers} is above {layers_max}, the most deeploy plans"""
    return d.layers <= LAYERS_MAX


def parameters_fit(d: Dims) -> bool:
    """the dims (dim {dim}, layers {layers}, hidden {hidden}, vocab {vocab}) imply {params:,} parameters, more int8 bytes than any target's largest memory ({memory_max:,} bytes)"""
    return parameters(d) <= largest_memory()


def norm_eps_in_range(d: Dims) -> bool:
    """norm_eps {norm_eps:g} must be above 0 and at most {norm_eps_max:g} (rms_norm_eps; Llama uses 1e-5 or 1e-6)"""
    return 0 < d.norm_eps <= NORM_EPS_MAX


def rope_theta_in_range(d: Dims) -> bool:
    """rope_theta {rope_theta:g} must be above 1 and at most {rope_theta_max:g} (Llama 2 uses 10000, Llama 3 500000)"""
    return 1 < d.rope_theta <= ROPE_THETA_MAX


DIM_CONSTRAINTS = (positive_dims, heads_divide_dim, kv_heads_divide_heads, head_size_even, vocab_holds_specials,
                   widths_fit_int32, head_size_fits, context_fits, layers_fit, norm_eps_in_range, rope_theta_in_range)


def parameters(d: Dims) -> int:
    """Weights of a Llama of these dims (exact integers, however large the dims)."""
    kv_dim = d.kv_heads * (d.dim // d.heads) if d.heads > 0 else 0
    per_layer = 2 * d.dim + 2 * d.dim * d.dim + 2 * kv_dim * d.dim + 3 * d.hidden * d.dim
    return d.vocab * d.dim * (1 if d.tied else 2) + d.dim + d.layers * per_layer


@lru_cache(maxsize=1)
def largest_memory() -> int:
    """The largest memory level of any target: no deployment can hold more int8 weights."""
    return max(int(v["size_bytes"]) for name in known_targets()
               for v in yaml.safe_load(resources.files("deeploy_dsl.targets").joinpath(f"{name}.yaml")
                                       .read_text())["memory"].values())


def check_dims(d: Dims) -> list[str]:
    vals = {f.name: getattr(d, f.name) for f in fields(d)}
    vals.update(head_size=d.dim // d.heads if d.heads else 0, in_max=IN_MAX, head_size_max=HEAD_SIZE_MAX,
                context_max=CONTEXT_MAX, layers_max=LAYERS_MAX, norm_eps_max=NORM_EPS_MAX,
                rope_theta_max=ROPE_THETA_MAX, memory_max=largest_memory())
    out = [c.__doc__.format(**vals) for c in DIM_CONSTRAINTS if not c(d)]
    if not out:  # the count is only meaningful (and cheap) once every dim is in range
        out = [parameters_fit.__doc__.format(params=parameters(d), **vals)] if not parameters_fit(d) else []
    return out


# ---- targets -------------------------------------------------------------------------------------

def known_targets() -> list[str]:
    files = resources.files("deeploy_dsl.targets").iterdir()
    return sorted(f.name[:-5] for f in files if f.name.endswith(".yaml"))


def load_target(name: str, pos: Pos) -> Target:
    data = yaml.safe_load(resources.files("deeploy_dsl.targets").joinpath(f"{name}.yaml").read_text())
    check_target_fields(name, data)

    def f(path: str):  # a field by its TARGET_FIELDS path, converted to its type, or its default
        node = data
        for part in path.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        return target_field(path).default if node is None else target_field(path).type(node)

    levels = tuple((k, int(v["size_bytes"]), int(v["alignment"])) for k, v in data["memory"].items())
    npu_spec = Npu(f("npu.name"), tuple(f("npu.ops")), f("npu.k_block"), f("npu.cols"), f("npu.setup_cycles"),
                   f("npu.weight_memory.size_bytes"), f("npu.weight_memory.bytes_per_cycle"),
                   f("npu.energy.pj_per_mac"), f("npu.energy.pj_per_weight_byte")) if "npu" in data else None
    if npu_spec and npu_spec.k_block != NPU_K:  # the packing (layout.npu_pack) and the C model fix the block
        raise ValueError(f"target {name}: npu k_block {npu_spec.k_block} is not the NPU layout's {NPU_K}")
    energy = Energy(f("energy.cluster_pj_per_mac"), f("energy.cluster_pj_per_op"), f("energy.dma_pj_per_byte"),
                    f("energy.idle_mw")) if "energy" in data else None
    return Target(f("name"), f("description"), f("clock_hz"), f("cluster.cores"), f("cluster.isa"),
                  npu_spec.ops if npu_spec else (), levels, pos, f("dma.bytes_per_cycle"), f("dma.setup_cycles"),
                  f("cluster.macs_per_cycle_per_core"), f("cluster.cycles_per_element"), f("cluster.fork_cycles"),
                  npu_spec, energy, f("cluster.vlen"),
                  Vector(f("cluster.vector.datapath_bits"), f("cluster.vector.source"))
                  if "vector" in data["cluster"] else None)


# the RV32 ISA extensions a target's `isa` may name beyond rv32imac (kernels.rvv needs zve32x and zvqdotq)
EXTENSIONS = ("zve32x", "zvqdotq")
VLENS = (32, 64, 128, 256, 512, 1024)  # Zve32x: VLEN a power of two, at least 32


def _isa(r: _Reader, target: Target, errs: Collector) -> Target:
    """`isa rv32imac_zve32x_zvqdotq` and `vlen 128` override the platform's cores' ISA and vector length (-D isa=...,
    -D vlen=...): the rules pick kernels by the extensions it names. An isa without a vector unit has no vlen (a
    `vlen` line is then moot, so that -D isa=rv32imac gives the scalar kernels)."""
    isa = r.one("isa", ("name",), "an ISA such as rv32imac or rv32imac_zve32x_zvqdotq", target.isa)
    vlen = r.one("vlen", ("number",), "the vector registers' bits, e.g. 128", target.vlen)
    if "isa" in r.settings and isa != target.isa:
        base, *ext = str(isa).split("_")
        bad = [e for e in ext if e not in EXTENSIONS]
        if target.isa == "host":
            errs.add(r.pos("isa"), f"target {target.name} is the host: it has no RV32 ISA to choose")
        elif base != "rv32imac" or bad or len(set(ext)) != len(ext):
            errs.add(r.pos("isa"), f"unsupported isa '{isa}'",
                     f"rv32imac, then any of _{', _'.join(EXTENSIONS)} (zvqdotq needs zve32x)")
        elif "zvqdotq" in ext and "zve32x" not in ext:
            errs.add(r.pos("isa"), "zvqdotq extends the vector unit: the isa needs zve32x too")
    ext = str(isa).split("_")[1:]
    if "vlen" in r.settings and (not isinstance(vlen, int) or vlen not in VLENS):
        errs.add(r.pos("vlen"), f"vlen {vlen} is not one of {', '.join(map(str, VLENS))}")
        vlen = target.vlen
    if "zve32x" in ext and not vlen:
        errs.add(r.pos("isa"), "an isa with zve32x needs the vector length: vlen 128 (or more)")
    return replace(target, isa=str(isa), vlen=int(vlen) if "zve32x" in ext else 0)


# ---- the interpreter -----------------------------------------------------------------------------

class _Reader:
    """Typed access to a block's settings, recording errors instead of raising."""

    def __init__(self, entries, where: str, known: tuple[str, ...], errs: Collector, block_pos: Pos,
                 mappings: bool = False):
        self.errs, self.where, self.block_pos = errs, where, block_pos
        self.settings: dict[str, Setting] = {}
        self.mappings: list[Mapping] = []  # kept where the block takes them (quantize: per-layer weight formats)
        for e in entries:
            if isinstance(e, Mapping) and mappings:
                self.mappings.append(e)
            elif isinstance(e, Mapping):
                errs.add(e.pos, f"a mapping line belongs in a 'map' block, not in {where}")
            elif e.key not in known:
                errs.add(e.pos, f"unknown setting '{e.key}' in {where}", f"expected one of: {', '.join(known)}")
            elif e.key in self.settings:
                errs.add(e.pos, f"'{e.key}' is set twice in {where} (first at line {self.settings[e.key].pos.line})")
            else:
                self.settings[e.key] = e

    def pos(self, key: str) -> Pos:
        return self.settings[key].pos if key in self.settings else self.block_pos

    def values(self, key: str) -> tuple[Value, ...] | None:
        s = self.settings.get(key)
        return s.values if s else None

    def one(self, key: str, kinds: tuple[str, ...], what: str, default=None):
        vals = self.values(key)
        if vals is None:
            return default
        if len(vals) != 1 or vals[0].kind not in kinds:
            at = vals[1].pos if len(vals) > 1 else (vals[0].pos if vals else self.settings[key].pos)
            self.errs.add(at, f"'{key}' expects {what}")
            return default
        return vals[0].value

    def choice(self, key: str, options: tuple[str, ...], default: str) -> str:
        v = self.one(key, ("name",), f"one of: {', '.join(options)}", default)
        if v not in options:
            self.errs.add(self.settings[key].values[0].pos, f"unsupported {key} '{v}'", f"supported: {', '.join(options)}")
            return default
        return v


def interpret(doc: Doc, strict: bool | None = None) -> Deployment:
    errs = Collector()
    file_pos = Pos(doc.display or str(doc.path), 1, 1, doc.text)
    top = [i for i in doc.items if isinstance(i, Setting)]
    blocks: dict[str, Block] = {}
    for b in (i for i in doc.items if isinstance(i, Block)):
        if b.kind not in BLOCKS:
            errs.add(b.pos, f"unknown block '{b.kind}'", f"expected one of: {', '.join(BLOCKS)}")
            continue
        if b.label is not None and b.kind != "model":  # only the model block names something (its architecture)
            errs.add(b.label_pos or b.pos, f"block '{b.kind}' takes no name: unexpected '{b.label}'",
                     f"write '{b.kind} {{'")
        if b.kind in blocks:
            errs.add(b.pos, f"block '{b.kind}' appears twice (first at line {blocks[b.kind].pos.line})")
        else:
            blocks[b.kind] = b
    r = _Reader(top, "the file", TOP_SETTINGS, errs, file_pos)
    name = r.one("deployment", ("name",), "a name, e.g. 'deployment stories260k'")
    if name is None and "deployment" not in r.settings:
        errs.add(file_pos, "missing 'deployment NAME' line")
    elif name is not None:
        _check_name(name, r.settings["deployment"].values[0].pos, errs)
    target = _target(r, errs, file_pos)
    strict_v = r.choice("strict", choices("", "strict"), default("", "strict"))
    gemv = r.choice("gemv", choices("", "gemv"), default("", "gemv"))
    if strict is not None:  # --strict / --no-strict win over the file
        strict_v = "yes" if strict else "no"
    base = doc.path.parent
    model = _model(blocks.get("model"), base, errs, file_pos)
    sane = model.dims if model is not None and model.dims is not None and not check_dims(model.dims) else None
    quant = _quantize(blocks.get("quantize"), base, errs, file_pos, sane)
    if model is not None and model.dims is not None and (quant.weights == "int4" or any(o.group for o in quant.overrides)):
        _check_int4(model.dims, quant, errs)
    hints = _hints(blocks.get("map"), target, errs, strict_v == "yes")
    memory = _memory(blocks.get("memory"), target, errs, file_pos)
    gen = _generate(blocks.get("generate"), errs, file_pos, model)
    errs.raise_if_errors()
    return Deployment(name or "deployment", doc.path, target, model, quant, hints, memory, gen,
                      strict_v == "yes", file_pos, tuple(errs.warnings), gemv)


MAX_NAME = 64  # the deployment's name names the build folder, the program and its Makefile target
# what the program (named after the deployment) must not be called: the Makefile's other targets, and the build's
# files without a suffix (templates/Makefile.j2, builddir.MARKER), which `make` would overwrite
TAKEN_NAMES = {"clean": "the Makefile's target", "rv32": "the Makefile's target", "asan": "the Makefile's target",
               "Makefile": "the build's file",
               "makefile": "the file make reads before Makefile", "GNUmakefile": "the file make reads before Makefile",
               "DEEPLOY_BUILD": "the build's marker file"}


def _check_name(name: str, pos: Pos, errs: Collector) -> None:
    if len(name) > MAX_NAME:
        errs.add(pos, f"deployment name of {len(name)} characters; at most {MAX_NAME}",
                 "it names the build folder and the generated program")
    elif (ident := name.replace("-", "_")) in TAKEN_NAMES:  # rules.c_ident of a NAME token
        errs.add(pos, f"deployment name '{name}' would name the program like {TAKEN_NAMES[ident]} '{ident}'",
                 "choose another name")


def _target(r: _Reader, errs: Collector, file_pos: Pos) -> Target | None:
    name = r.one("target", ("name",), "a target name")
    if name is None:
        if "target" not in r.settings:
            errs.add(file_pos, "missing 'target NAME' line", f"known targets: {', '.join(known_targets())}")
        return None
    if name not in known_targets():
        errs.add(r.settings["target"].values[0].pos, f"unknown target '{name}' (known: {', '.join(known_targets())})")
        return None
    return _isa(r, load_target(name, r.pos("target")), errs)


def _path(r: _Reader, key: str, base: Path, required: bool) -> Path | None:
    v = r.one(key, ("string",), 'a "path" in double quotes')
    if v is None:
        if required and key not in r.settings:
            r.errs.add(r.block_pos, f"model block needs '{key} \"PATH\"'")
        return None
    if not v.strip() or "\0" in v:
        r.errs.add(r.settings[key].values[0].pos, f"'{key}' needs a file path, got {r.settings[key].values[0].text}")
        return None
    # the folder is resolved, the file's own name is not: a symlinked file (a Hugging Face cache's
    # snapshots/REV/model.safetensors -> ../../blobs/HASH) keeps the folder it was named in, and so its config.json
    p = Path(v) if Path(v).is_absolute() else base / v
    try:
        return p.parent.resolve() / p.name
    except (RuntimeError, OSError) as e:  # RuntimeError: a symlink loop (Python < 3.13)
        r.errs.add(r.settings[key].values[0].pos, f"'{key}' path {v} cannot be resolved: {e}")
        return None


def _model(b: Block | None, base: Path, errs: Collector, file_pos: Pos) -> ModelSpec | None:
    if b is None:
        errs.add(file_pos, "missing 'model llama { ... }' block")
        return None
    if b.label is None:
        errs.add(b.pos, "the model block needs an architecture", "write 'model llama {'")
    elif b.label != "llama":
        errs.add(b.pos, f"unsupported architecture '{b.label}'", "supported: llama (write 'model llama {')")
    r = _Reader(b.entries, "model", keys("model"), errs, b.pos)
    weights = _path(r, "weights", base, True)
    tokenizer = _path(r, "tokenizer", base, False)
    given: dict[str, object] = {}
    for key in DIM_KEYS:
        if key == "tied":
            v = r.one(key, ("name",), "yes or no")
            if v is not None:
                if v not in choices("model", "tied"):
                    errs.add(r.settings[key].values[0].pos, f"'tied' expects yes or no, got '{v}'")
                else:
                    given[key] = v in ("yes", "true")
        elif key in FLOAT_DIMS:
            v = r.one(key, ("number",), "a number")
            if v is not None:
                try:
                    given[key] = float(v)
                except OverflowError:  # a whole number of hundreds of digits
                    errs.add(r.pos(key), f"'{key}' is out of range: a number of {len(str(abs(v)))} digits")
        else:
            v = r.one(key, ("number",), "a whole number")
            if v is not None:
                if not isinstance(v, int):
                    errs.add(r.pos(key), f"'{key}' expects a whole number, got {v}")
                else:
                    given[key] = v
    dims = _dims(given, weights, r, errs)
    if dims is None:
        return None
    problems = check_dims(dims)
    for msg in problems:
        errs.add(_blame(msg, r), msg, _config_hint(msg, r))
    if problems:  # dims that are wrong are no dims: nothing else is checked against them
        dims = None
    return ModelSpec("llama", weights, tokenizer, dims, b.pos, r.pos("weights"), r.pos("tokenizer"),
                     {k: r.pos(k) for k in DIM_KEYS})


def _blame(msg: str, r: _Reader) -> Pos:
    # the first dims key the message names and the file sets is the line to point at
    for key in ("kv_heads", "heads", "dim", "vocab", "layers", "hidden", "context", "norm_eps", "rope_theta"):
        if key in msg and key in r.settings:
            return r.pos(key)
    return r.block_pos


def _config_hint(msg: str, r: _Reader) -> str:
    """Where a dim the `.dply` does not set came from, and how to override the one that can be."""
    key = next((k for k in DIM_KEYS if msg.startswith(k + " ")), None)
    if key is None or key in r.settings:
        return ""
    hint = f"from {DIM_KEYS[key]} in the config.json beside the weights"
    return hint + ("; write 'context N' in the model block to use fewer positions" if key == "context" else "")


def _dims(given: dict, weights: Path | None, r: _Reader, errs: Collector) -> Dims | None:
    """Dims from the `.dply`, completed from config.json beside the weights; both must agree."""
    cfg_path = weights.parent / "config.json" if weights else None
    hf = read_config(cfg_path) if cfg_path else None
    config = _read_config(hf, r, errs)
    merged = {}
    for key, hf_key in DIM_KEYS.items():
        cv = config.get(hf_key) if config is not None else None
        if key in given:
            if cv is not None and key != "context" and _differs(given[key], cv):
                errs.add(r.pos(key), f"{key} {_fmt(given[key])} disagrees with {hf_key} = {_fmt(cv)} in {cfg_path.name}")
            if key == "context" and cv is not None and given[key] > cv:
                errs.add(r.pos(key), f"context {given[key]} exceeds the model's max_position_embeddings {cv}")
            merged[key] = given[key]
        elif cv is not None:
            merged[key] = cv
    if key_missing := [k for k in DIM_KEYS if k not in merged]:
        if weights is None or (hf is not None and hf.errors):
            return None  # the weights line or config.json is wrong, and says so; the dims cannot be known
        if config is None:
            where = f"and there is no config.json beside the weights in {cfg_path.parent}"
        else:
            where = f"and {cfg_path.name} does not say"
        errs.add(r.block_pos, f"model dims missing: {', '.join(key_missing)} ({where})",
                 "write them in the model block, e.g. 'dim 64', or put a HF config.json beside the weights")
        return None
    window = hf.sliding_window if hf is not None else None
    if window is not None and window < merged["context"]:
        errs.add(r.pos("weights"), f"{cfg_path.name}: the mistral model's sliding_window {window} is shorter than "
                 f"the context {merged['context']}; deeploy's attention sees every earlier position",
                 f"write 'context {window}' in the model block: within the window a Mistral is a Llama")
    return Dims(*(float(merged[k]) if k in FLOAT_DIMS else (bool(merged[k]) if k == "tied" else int(merged[k]))
                  for k in DIM_KEYS))


def _read_config(hf: HFConfig | None, r: _Reader, errs: Collector) -> dict | None:
    """The dims a HF config.json states, under HF names, with LlamaConfig's defaults; None if absent.
    What is wrong with the file (hfconfig.py) is an error at the weights line, which names its folder."""
    if hf is None:
        return None
    for msg in hf.errors:
        errs.add(r.pos("weights"), msg)
    return hf.values


def _differs(a, b) -> bool:
    if isinstance(a, bool) or isinstance(b, bool):
        return bool(a) != bool(b)
    return abs(float(a) - float(b)) > 1e-9 * max(1.0, abs(float(b)))


def _fmt(v) -> str:
    return ("yes" if v else "no") if isinstance(v, bool) else f"{v:g}" if isinstance(v, float) else str(v)


def _quantize(b: Block | None, base: Path, errs: Collector, file_pos: Pos, dims: Dims | None) -> QuantSpec:
    r = _Reader(b.entries if b else (), "quantize", keys("quantize"), errs, b.pos if b else file_pos, mappings=True)
    weights, gran, group, rounding = "int8", "per_channel", 0, "nearest"
    if (vals := r.values("weights")) is not None:
        if vals and vals[-1].kind == "name" and vals[-1].value in ROUNDINGS:
            rounding, vals = vals[-1].value, vals[:-1]
        weights, gran, group = _weight_format(vals, r.pos("weights"), errs)
    calib = Calibration("samples", 4096, "max", 100.0, 0, r.pos("activations"))
    if (vals := r.values("activations")) is not None:
        if not vals or vals[0].kind != "name" or vals[0].value != "int8":
            errs.add(vals[0].pos if vals else r.pos("activations"), "unsupported activation type", "supported: int8")
        if len(vals) > 1:
            calib = _calibration(vals[1], base, errs, dims) or calib
        if len(vals) > 2:
            errs.add(vals[2].pos, f"unexpected '{vals[2].text}' after {vals[1].text}(...)",
                     "write 'activations int8 calibrate(...)'")
    kv, residual, k_type, queries = (r.choice(k, choices("quantize", k), default("quantize", k))
                                     for k in ("kv_cache", "residual", "keys", "queries"))
    if dims is not None and dims.heads > 0:
        _check_queries(queries, k_type, dims.dim // dims.heads, r.pos("queries"), errs)
    overrides = tuple(o for m in r.mappings if (o := _weight_override(m, weights, group, errs)) is not None)
    dynamic: tuple[str, ...] = ()
    for v in r.values("dynamic") or ():
        if v.kind != "name" or v.value not in DYNAMIC:
            errs.add(v.pos, f"no per-token scale for '{v.text}'", f"supported: {', '.join(DYNAMIC)}")
        elif v.value != "none" and v.value not in dynamic:
            if {v.value, *dynamic} >= {"swiglu", "swiglu_absmax"}:
                errs.add(v.pos, "'swiglu' and 'swiglu_absmax' are two scales for the same output", "choose one")
            dynamic += (v.value,)
    gate_up = r.choice("gate_up", choices("quantize", "gate_up"), default("quantize", "gate_up"))
    if gate_up == "int16" and "swiglu_absmax" not in dynamic:
        errs.add(r.pos("gate_up"), "gate_up int16 needs the SwiGLU's per-token absmax scale: its products reach 2^30, "
                 "beyond what a calibrated or power-of-two int8 output takes in 32 bits",
                 "add 'swiglu_absmax' to the quantize block's dynamic line (or use 'gate_up int8')")
    swiglu, classifier = (r.choice(k, choices("quantize", k), default("quantize", k)) for k in ("swiglu", "classifier"))
    check_wide(swiglu, classifier, dynamic, dims, r.pos, errs)
    alpha, down = _smooth(r, errs)
    return QuantSpec(weights, gran, "int8", calib, kv, residual, r.block_pos, k_type, group,
                     vals[0].pos if (vals := r.values("weights")) else r.block_pos, rounding, overrides, dynamic,
                     queries, alpha, r.pos("smooth"), gate_up, down, swiglu, classifier)


def _smooth(r: _Reader, errs: Collector) -> tuple[float | None, float | None]:
    """`smooth alpha = 0.5` (or `smooth 0.5`): SmoothQuant's migration strength, then optionally `, down = D`: the
    SwiGLU output's into the down projection; `smooth none` or no line: (None, None)."""
    vals = r.values("smooth")
    if vals is None or (len(vals) == 1 and vals[0].kind == "name" and vals[0].value == "none"):
        return None, None
    down = vals[1] if len(vals) > 1 and vals[1].kind == "assign" and vals[1].value == "down" else None
    extra = vals[1 if down is None else 2:]  # what follows alpha (and down): nothing may
    if extra or not vals or vals[0].kind not in ("assign", "number"):
        errs.add(extra[0].pos if extra else vals[0].pos if vals else r.pos("smooth"), f"'smooth' expects {SMOOTH_FORMS}")
        return None, None
    v = vals[0]
    if v.kind == "assign":
        if v.value != "alpha":
            errs.add(v.pos, f"unknown smooth parameter '{v.value}'" if v.value != "down" else "smooth down follows alpha",
                     f"expected {SMOOTH_FORMS}")
            return None, None
        v = v.args[0][1]
    alpha = _unit_number(v, "smooth alpha", errs)
    return alpha, (_unit_number(down.args[0][1], "smooth down", errs) if down is not None else None)


def _unit_number(v, what: str, errs: Collector) -> float | None:
    """A smoothing strength: a number from 0 to 1, else an error at it and None."""
    if v.kind != "number" or not 0 <= v.value <= 1:
        errs.add(v.pos, f"{what} must be a number from 0 to 1, got {v.text}",
                 "alpha is how much of each channel's range moves into the weights (0.5: half)")
        return None
    return float(v.value)


def _check_queries(queries: str, keys: str, head_size: int, pos: Pos, errs: Collector) -> None:
    """The score kernels add a head's q[d] * k[d] in int32: the head size must keep that sum, and the rounding's
    2^(shift-1), within 2^31 - 1 (kernels.qk_head_size_max: 32 for int12 queries with int16 keys, none for int16 with
    int16). int8 queries hold for every head size the model bounds admit."""
    qb, kb = QK_BITS[queries], QK_BITS[keys]
    top = qk_head_size_max(qb, kb)
    if head_size <= top:
        return
    reach = head_size * QK_MAX[qb] * QK_MAX[kb] + ((1 << score_shift(qb, kb)) >> 1)
    fits = f"for head sizes up to {top}" if top > 1 else "for no head size of a Llama"
    hint = "use 'keys int8' or 'queries int12'" if queries == "int16" else "use 'keys int8' (or 'queries int8')"
    errs.add(pos, f"queries {queries} with keys {keys}: a score sums head size {head_size} products of up to "
             f"{QK_MAX[qb]:,} x {QK_MAX[kb]:,}, up to {reach:,}, beyond the int32 the score kernels add in (it holds "
             f"{fits})", hint)


DYNAMIC = choices("quantize", "dynamic")  # activations that can have per-token scales (language.py says each)


def _weight_override(m: Mapping, weights: str, group: int, errs: Collector) -> WeightOverride | None:
    """`lm_head -> int8`, `layers[*].mlp.* -> int4(32)` (`-> int4` when the block's weights are int4: its group)."""
    if m.engine == "int8" and not m.args:
        return WeightOverride(m.pattern, 0, m.pos)
    if m.engine == "int4" and not m.args and weights == "int4":
        return WeightOverride(m.pattern, group, m.pos)
    if m.engine == "int4" and len(m.args) == 1 and m.args[0][0] is None and m.args[0][1].kind == "number":
        size = m.args[0][1].value
        if isinstance(size, int) and 8 <= size <= 256 and size % 8 == 0:
            return WeightOverride(m.pattern, size, m.pos)
        errs.add(m.args[0][1].pos, f"unsupported group size {m.args[0][1].text}", "a multiple of 8 from 8 to 256")
        return None
    errs.add(m.engine_pos, f"unknown weight format '{m.engine}{'(...)' if m.args else ''}' for {m.pattern.text}",
             "expected int8 or int4(G), G the input channels per scale (int4 alone when the weights are int4)")
    return None


Q4_MAX_IN = 8192  # gemv_q4's int32 accumulators: |sum| <= 255 * 8 * 128 * n_in < 2^31


def _check_int4(d, quant: QuantSpec, errs: Collector) -> None:
    """The int4 layout packs two input channels a byte and the kernels accumulate in 32 bits."""
    for what, n in (("dim", d.dim), ("hidden", d.hidden)):
        if n % 2 or n > Q4_MAX_IN:
            errs.add(quant.weights_pos, f"int4 weights need an even number of input channels of at most "
                     f"{Q4_MAX_IN:,} per linear layer; {what} is {n}", "use 'weights int8 per_channel'")


ROUNDINGS = ("nearest", "gptq")


def _weight_format(vals: list, pos: Pos, errs: Collector) -> tuple[str, str, int]:
    """`weights int8 per_channel` | `weights int4 per_group(32)` (a rounding after them is taken off before):
    (type, granularity, group size or 0)."""
    names = [v.value for v in vals]
    if not names:
        errs.add(pos, "expected a weight type", f"supported: {WEIGHT_FORMATS}")
        return "int8", "per_channel", 0
    if vals[0].kind != "name" or names[0] not in ("int8", "int4"):
        errs.add(vals[0].pos, f"unsupported weight type '{names[0]}'", f"supported: {WEIGHT_FORMATS}")
        return "int8", "per_channel", 0
    if names[0] == "int8":
        if len(vals) > 1 and not (vals[1].kind == "name" and names[1] == "per_channel"):
            errs.add(vals[1].pos, f"unsupported weight granularity '{vals[1].text}' for int8", "supported: per_channel")
        elif len(vals) > 2:
            errs.add(vals[2].pos, f"unexpected '{vals[2].text}' after per_channel", f"supported: {WEIGHT_FORMATS}")
        return "int8", "per_channel", 0
    g = vals[1] if len(vals) > 1 else None
    ok = g is not None and g.kind == "call" and g.value == "per_group" and len(g.args) == 1 \
        and g.args[0][0] is None and g.args[0][1].kind == "number" and isinstance(g.args[0][1].value, int)
    size = g.args[0][1].value if ok else 0
    if not ok or not (8 <= size <= 256 and size % 8 == 0):
        errs.add(g.pos if g is not None else vals[0].pos,
                 "int4 weights need a group size: per_group(G)" if not ok else f"unsupported group size {size}",
                 f"supported: {WEIGHT_FORMATS}")
        return "int8", "per_channel", 0
    if len(vals) > 2:
        errs.add(vals[2].pos, f"unexpected '{vals[2].text}' after per_group({size})")
    return "int4", "per_group", size


def _calibration(v: Value, base: Path, errs: Collector, dims: Dims | None) -> Calibration | None:
    if v.kind != "call" or v.value != "calibrate":
        errs.add(v.pos, "expected calibrate(SOURCE, tokens = N)", "SOURCE is 'samples' or a \"text file\"")
        return None
    source, tokens, stat, pct, seed = "samples", 4096, "max", 100.0, 0
    seen: dict = {}
    for key, a in v.args:
        what = key or "source"
        if what in seen:
            errs.add(a.pos, f"calibrate {what} is given twice")
            return None
        seen[what] = a
        if key is None and a.kind == "string":
            source = _absolute(base / a.value)
        elif key is None and a.kind == "name" and a.value == "samples":
            source = "samples"
        elif key == "tokens" and a.kind == "number" and isinstance(a.value, int) and a.value > 0:
            tokens = a.value
        elif key == "seed" and a.kind == "number" and isinstance(a.value, int):
            seed = a.value
            if not 0 <= seed <= MAX_SEED:
                errs.add(a.pos, f"calibrate seed = {seed} must be a whole number from 0 to 2^64 - 1")
        elif key == "stat" and a.kind == "name" and a.value in ("max", "mse"):
            stat = a.value
        elif key == "stat" and a.kind == "call" and a.value == "percentile" and len(a.args) == 1 \
                and a.args[0][0] is None and a.args[0][1].kind == "number" and 0 < a.args[0][1].value <= 100:
            stat, pct = "percentile", float(a.args[0][1].value)
        else:
            errs.add(a.pos, f"unexpected calibrate argument '{a.text}'",
                     CALIBRATE)
            return None
    if source != "samples" and (why := _not_a_file(source)):
        errs.add(seen["source"].pos, f"calibration text {source} {why}")
    if dims is not None and (need := calibration_bytes(dims, tokens, stat, source == "samples")) > CALIB_MAX_BYTES:
        lo, hi = 0, tokens  # the most tokens that fit: calibration_bytes grows with the tokens
        while lo < hi:
            mid = (lo + hi + 1) // 2
            lo, hi = (mid, hi) if calibration_bytes(dims, mid, stat, source == "samples") <= CALIB_MAX_BYTES \
                else (lo, mid - 1)
        errs.add(seen["tokens"].pos if "tokens" in seen else v.pos,
                 f"calibrate tokens = {tokens:,} needs about {_bytes(need)} for this model's activations; "
                 f"the limit is {_bytes(CALIB_MAX_BYTES)}: at most {lo:,} tokens",
                 "a few thousand tokens calibrate a small model well (the default is 4096)")
    return Calibration(source, tokens, stat, pct, seed, v.pos)


MAX_SEED = (1 << 64) - 1
CALIB_MAX_BYTES = 2 << 30  # what the calibration pass may hold: fixed, so that `check` gives the same answer anywhere


def calibration_bytes(d: Dims, tokens: int, stat: str, samples: bool) -> int:
    """An upper estimate of the float memory quantize.calibrate holds for `tokens` calibration tokens: the KV caches
    and per-step arrays of the batch of sampled sequences (all run at once), and with percentile or mse every
    observed activation, kept until the end and then copied about twice."""
    length = min(CALIB_SEQ_LEN, d.context)
    batch = -(-tokens // length) if samples else 1
    cache = batch * length * d.kv_dim * 4 * 2 * d.layers
    step = batch * 4 * (8 * d.vocab + 4 * d.hidden + 4 * d.dim + 3 * d.heads * length)
    per_layer = 6 * d.dim + 3 * d.kv_dim + 3 * d.hidden  # attn_norm, q (twice), k (twice), v, attention, ...
    observed = 4 * tokens * (d.layers * (per_layer + d.dim) + 2 * d.dim + d.vocab) if stat != "max" else 0
    return cache + step + 3 * observed


def _bytes(n: int) -> str:
    """A byte count for a person: 2.0 GiB, 567 PiB."""
    unit, k = next((u, k) for u, k in (("EiB", 60), ("PiB", 50), ("TiB", 40), ("GiB", 30), ("MiB", 20), ("KiB", 10),
                                        ("B", 0)) if n >= 1 << k)
    v = n / (1 << k)
    return f"{v:,.1f} {unit}" if v < 100 and k else f"{v:,.0f} {unit}"


def _absolute(path: Path) -> str:
    """`path` made absolute, through its symlinks where they resolve (a loop or a NUL is left to _not_a_file)."""
    try:
        return str(path.resolve())
    except (OSError, RuntimeError, ValueError):
        return os.path.abspath(path)


def _not_a_file(path: str) -> str:
    """Why `path` cannot be read as a text file ("" if it can): a FIFO or device would block or never end."""
    if not os.path.exists(path):  # also a NUL in it, a name too long, a dangling symlink or a loop
        return "does not exist"
    try:
        if not Path(path).is_file():
            return "is not a regular file"
        size = os.path.getsize(path)
    except OSError as e:  # gone or unreadable since
        return f"cannot be read ({e.strerror or e})"
    # read and tokenized whole at build time: more text than any bounded calibration could use is a mistake
    return f"is {size:,} bytes; calibration texts are at most {CALIB_TEXT_MAX_BYTES:,}" \
        if size > CALIB_TEXT_MAX_BYTES else ""


def _hints(b: Block | None, target: Target | None, errs: Collector, strict: bool) -> tuple[MapHint, ...]:
    out = []
    for e in b.entries if b else ():
        if isinstance(e, Setting):
            errs.add(e.pos, f"expected 'PATTERN -> ENGINE' in map, got setting '{e.key}'",
                     "e.g. 'layers[*].attn.qkv -> npu' or 'default -> cluster(cores = 8)'")
            continue
        cores = None
        for name, rng in e.pattern.segments:
            if rng is not None and rng[0] > rng[1]:
                errs.add(e.pos, f"empty range {name}[{rng[0]}..{rng[1]}] in '{e.pattern.text}'",
                         f"write {name}[{rng[1]}..{rng[0]}]")
        if e.engine not in tuple(Engine):
            errs.add(e.engine_pos, f"unknown engine '{e.engine}'", "expected cluster, cluster(cores = N), npu or auto")
            continue
        for i, (key, a) in enumerate(e.args):
            if key is not None and key in (k for k, _ in e.args[:i]):
                errs.add(a.pos, f"{e.engine} {key} is given twice")
            elif e.engine == Engine.CLUSTER and key == "cores" and a.kind == "number" and isinstance(a.value, int):
                cores = a.value
                if cores < 1:
                    errs.add(a.pos, f"cores = {cores} must be at least 1")
                elif target and cores > target.cores:
                    # a deployment written for a cluster still builds for a smaller target
                    errs.add(a.pos, f"cores = {cores}: target {target.name} has {target.cores} core(s); using {target.cores}",
                             severity="warning" if not strict else "error")
                    cores = target.cores
            else:
                errs.add(a.pos, f"unexpected argument '{a.text}' for {e.engine}",
                         "write cluster(cores = N)" if e.engine == Engine.CLUSTER else
                         "only cluster takes an argument: cluster(cores = N)")
        if e.engine == Engine.NPU and target and not target.has_npu:
            errs.add(e.engine_pos, f"target {target.name} has no NPU")
        out.append(MapHint(e.pattern, e.engine, cores, e.pos))
    return tuple(out)


def _memory(b: Block | None, target: Target | None, errs: Collector, file_pos: Pos) -> tuple[MemLevel, ...]:
    if target is None:
        return ()
    tlevels = {n: (size, align) for n, size, align in target.levels}
    declared: dict[str, Setting] = {}
    for e in b.entries if b else ():
        if isinstance(e, Mapping):
            errs.add(e.pos, "a mapping line belongs in a 'map' block")
        elif e.key not in tlevels:
            errs.add(e.pos, f"unknown memory level '{e.key}' (target {target.name} has: {', '.join(tlevels)})")
        elif e.key in declared:
            errs.add(e.pos, f"memory level '{e.key}' is set twice (first at line {declared[e.key].pos.line})")
        else:
            declared[e.key] = e
    levels = []
    for name, (cap, align) in tlevels.items():
        s = declared.get(name)
        size, holds, pos, dbuf = cap, [], s.pos if s else (b.pos if b else file_pos), False
        if s:
            vals = list(s.values)
            if len(vals) > 1 and vals[0].kind == "number" and vals[1].kind == "name" and vals[1].value != "holds":
                # `L1 256 KB`: a unit we do not know (KB would be ambiguous between 1000 and 1024)
                errs.add(vals[1].pos, f"unknown size unit '{vals[1].text}'; expected B, KiB, MiB or GiB",
                         "sizes are binary: 256 KiB is 262144 bytes")
                vals = vals[2:]
                rest = vals
            elif not vals or vals[0].kind != "size":
                errs.add(vals[0].pos if vals else s.pos, f"'{name}' expects a size, e.g. '{name} 256 KiB'")
                rest = vals[1:]
            elif not isinstance(vals[0].value, int) or vals[0].value <= 0:
                errs.add(vals[0].pos, f"{name} {vals[0].text} is not a positive whole number of bytes")
                rest = vals[1:]
            else:
                size = int(vals[0].value)
                if size > cap:
                    errs.add(vals[0].pos, f"{name} {vals[0].text} exceeds what target {target.name} has ({_size(cap)})")
                rest = vals[1:]
            # `double_buffer` may stand anywhere after the size: tiles from this level's DMA alternate two buffers
            dbuf = any(v.kind == "name" and v.value == "double_buffer" for v in rest)
            rest = [v for v in rest if not (v.kind == "name" and v.value == "double_buffer")]
            if rest and (rest[0].kind != "name" or rest[0].value != "holds"):
                errs.add(rest[0].pos, "expected 'holds' followed by weights, kv_cache or activations")
            elif len(rest) == 1:
                errs.add(rest[0].pos, "'holds' names nothing", f"expected: {', '.join(HOLDABLE)}")
            for v in rest[1:]:
                if v.kind != "name" or v.value not in HOLDABLE:
                    errs.add(v.pos, f"'{v.text}' cannot be placed", f"expected: {', '.join(HOLDABLE)}")
                else:
                    holds.append(v.value)
        levels.append(MemLevel(name, size, cap, align, tuple(holds), pos, dbuf))
    # whatever nobody claims goes to a default level: weights and KV cache to the largest,
    # activations to the fastest
    claimed = {h for lvl in levels for h in lvl.holds}
    for what in HOLDABLE:
        owners = [lvl.name for lvl in levels if what in lvl.holds]
        if len(owners) > 1:
            errs.add(declared[owners[1]].pos, f"{what} is placed in both {owners[0]} and {owners[1]}")
    out = []
    largest = max(levels, key=lambda lvl: lvl.capacity_bytes).name if levels else None
    for i, lvl in enumerate(levels):
        extra = tuple(w for w in HOLDABLE if w not in claimed and
                      ((w == "activations" and i == 0) or (w != "activations" and lvl.name == largest)))
        out.append(replace(lvl, holds=lvl.holds + extra))
    for lvl in out[1:]:
        if "activations" in lvl.holds:
            errs.add(lvl.pos, f"activations must live in {out[0].name}, the level the cluster computes from",
                     f"write 'holds activations' on the {out[0].name} line")
    return tuple(out)


def _size(n: int) -> str:
    for unit, k in (("MiB", 1 << 20), ("KiB", 1 << 10)):
        if n % k == 0 and n >= k:
            return f"{n // k} {unit}"
    return f"{n} B"


def _generate(b: Block | None, errs: Collector, file_pos: Pos, model: ModelSpec | None) -> GenSpec:
    r = _Reader(b.entries if b else (), "generate", keys("generate"), errs, b.pos if b else file_pos)
    tokens = r.one("tokens", ("number",), "a whole number of tokens", default("generate", "tokens"))
    context = model.dims.context if model is not None and getattr(model, "dims", None) is not None else None
    if not isinstance(tokens, int) or tokens < 1:
        errs.add(r.pos("tokens"), f"'tokens' must be a positive whole number, got {tokens}")
        tokens = 1
    elif tokens > INT32_MAX:  # the generated program counts them in a C int
        errs.add(r.settings["tokens"].values[0].pos, f"'tokens' {tokens:,} is more than the generated program "
                 f"can count ({INT32_MAX:,})", "generation stops when the context is full anyway"
                 + (f" ({context} tokens)" if context is not None else ""))
        tokens = 1
    sampler, temperature, top_p = _sampler(r, errs)
    seed = r.one("seed", ("number",), "a whole number from 0 to 4294967295", default("generate", "seed"))
    if not isinstance(seed, int) or not 0 <= seed <= SEED_MAX:
        errs.add(r.pos("seed"), f"'seed' must be a whole number from 0 to {SEED_MAX}, got {seed}")
        seed = 0
    prompt = r.one("prompt", ("string",), 'a "prompt" in double quotes', default("generate", "prompt"))
    if "\0" in prompt:  # the generated program holds it as a C string, which would end there
        errs.add(r.settings["prompt"].values[0].pos, "the prompt cannot contain a NUL character (\\u0000)")
    prefill = r.one("prefill", ("number",), "a whole number of tokens per prefill chunk", default("generate", "prefill"))
    if not isinstance(prefill, int) or prefill < 1 or (context is not None and prefill > context):
        errs.add(r.pos("prefill"), f"'prefill' must be a whole number of tokens from 1 to "
                 f"{context if context is not None else 'the context'}, got {prefill}",
                 "the prompt runs in chunks of this many tokens; 1 runs it token by token")
        prefill = 1
    return GenSpec(tokens, sampler, prompt, r.block_pos, prefill, r.settings["prompt"].values[0].pos
                   if "prompt" in r.settings and r.settings["prompt"].values else r.block_pos, temperature, top_p, seed)


SEED_MAX = (1 << 32) - 1  # the device's xorshift32 state
TEMPERATURE_MAX = 100.0


def _number(v: Value | None, lo: float, hi: float, lo_open: bool = False) -> float | None:
    if v is None or v.kind != "number" or not (lo < v.value <= hi if lo_open else lo <= v.value <= hi):
        return None
    return float(v.value)


def _sampler(r: _Reader, errs: Collector) -> tuple[str, float, float]:
    """`sampler greedy | temperature(T) | top_p(P, temperature = T)`: (kind, T, P); temperature 0 is greedy."""
    vals = r.values("sampler")
    if vals is None or (len(vals) == 1 and vals[0].kind == "name" and vals[0].value == "greedy"):
        return "greedy", 0.0, 1.0
    if not vals:  # `sampler` and nothing after it
        errs.add(r.pos("sampler"), f"'sampler' expects {SAMPLERS}")
        return "greedy", 0.0, 1.0
    v = vals[0]
    if len(vals) == 1 and v.kind in ("name", "call") and v.value not in ("greedy", "temperature", "top_p"):
        errs.add(v.pos, f"unsupported sampler '{v.value}'", f"supported: {SAMPLERS}")
        return "greedy", 0.0, 1.0
    if len(vals) != 1 or v.kind != "call" or v.value not in ("temperature", "top_p"):
        errs.add(v.pos if len(vals) == 1 else vals[1].pos, f"'sampler' expects {SAMPLERS}")
        return "greedy", 0.0, 1.0
    pos = [a for k, a in v.args if k is None]
    kw = {k: a for k, a in v.args if k is not None}
    if v.value == "temperature":
        t = _number(pos[0], 0.0, TEMPERATURE_MAX) if len(pos) == 1 and not kw else None
        if t is None:
            errs.add(v.pos, f"'temperature' takes one number from 0 to {TEMPERATURE_MAX:g}, e.g. temperature(0.8)",
                     "0 is greedy; 1 samples the model's own distribution")
            return "greedy", 0.0, 1.0
        return ("temperature" if t > 0 else "greedy"), t, 1.0
    p = _number(pos[0], 0.0, 1.0, lo_open=True) if len(pos) == 1 else None
    t = _number(kw["temperature"], 0.0, TEMPERATURE_MAX, lo_open=True) if "temperature" in kw else 1.0
    if p is None or t is None or set(kw) - {"temperature"}:
        errs.add(v.pos, "'top_p' takes the mass to keep, in (0, 1], and optionally temperature = T (T > 0), "
                 "e.g. top_p(0.9, temperature = 0.8)")
        return "greedy", 0.0, 1.0
    return "top_p", t, p


INT32_MAX = (1 << 31) - 1


def load_deployment(path: Path, overrides: list[str] | None = None, strict: bool | None = None) -> Deployment:
    doc = apply_overrides(parse_file(path), overrides or [])
    return interpret(doc, strict)

