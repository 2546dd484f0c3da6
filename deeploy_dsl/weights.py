"""Load Hugging Face Llama safetensors, check every tensor against the spec, undo the q/k permutation.

The reader is our own (the format is an 8-byte length, a JSON header and raw little-endian data) so
that bf16 loads without torch and a malformed file becomes a message rather than a traceback.
"""
from __future__ import annotations

import json
import math
import re
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .errors import Collector, Diagnostic, Pos, WeightsError
from .llama2c import unpermute_rotary
from .spec import Dims, ModelSpec

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}


@dataclass(frozen=True)
class LayerWeights:
    att_norm: np.ndarray  # [dim]
    wq: np.ndarray  # [dim, dim], rows in interleaved RoPE order (llama2.c's)
    wk: np.ndarray  # [kv_dim, dim], interleaved
    wv: np.ndarray  # [kv_dim, dim]
    wo: np.ndarray  # [dim, dim]
    ffn_norm: np.ndarray  # [dim]
    w1: np.ndarray  # [hidden, dim] gate
    w2: np.ndarray  # [dim, hidden] down
    w3: np.ndarray  # [hidden, dim] up


@dataclass(frozen=True)
class Weights:
    """Float32 weights of a Llama, in llama2.c's conventions (interleaved RoPE pairs)."""

    embed: np.ndarray  # [vocab, dim]
    layers: tuple[LayerWeights, ...]
    final_norm: np.ndarray  # [dim]
    lm_head: np.ndarray  # [vocab, dim]; the same array as embed when tied


def read_safetensors(path: Path, pos: Pos) -> dict[str, np.ndarray]:
    """All tensors as float32 arrays; WeightsError on a missing or malformed file."""
    def bad(msg: str) -> WeightsError:
        return WeightsError([Diagnostic(pos, f"{path.name}: {msg}")])

    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise bad(f"no such file ({path})") from None
    except OSError as e:
        raise bad(f"cannot read: {e}") from None
    if len(raw) < 8:
        raise bad("too short to be a safetensors file")
    (hlen,) = struct.unpack("<Q", raw[:8])
    if hlen > len(raw) - 8:
        raise bad(f"header length {hlen} runs past the end of the file ({len(raw)} bytes): truncated or not safetensors")
    try:
        header = json.loads(raw[8:8 + hlen])
    except (json.JSONDecodeError, UnicodeDecodeError):
        raise bad("header is not valid JSON: not a safetensors file?") from None
    if not isinstance(header, dict):
        raise bad("header is not a JSON object: not a safetensors file?")
    data = memoryview(raw)[8 + hlen:]
    out = {}
    for name in sorted(k for k in header if k != "__metadata__"):
        info = header[name]
        if not isinstance(info, dict):
            raise bad(f"tensor {name}: header entry is not an object")
        dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
        dt = DTYPES.get(dtype) if isinstance(dtype, str) else None
        if dt is None:
            raise bad(f"tensor {name} has dtype {dtype}; supported: F32, F16, BF16")
        if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
            raise bad(f"tensor {name}: shape {json.dumps(shape)} is not a list of sizes")
        if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)):
            raise bad(f"tensor {name}: data_offsets {json.dumps(offsets)} is not [begin, end]")
        start, end = offsets
        shape = tuple(shape)
        if end > len(data) or start > end or end - start != math.prod(shape) * dt.itemsize:
            raise bad(f"tensor {name} {list(shape)} does not fit its data offsets [{start}, {end}] "
                      f"({len(data)} data bytes): truncated file?")
        arr = np.frombuffer(data[start:end], dtype=dt).reshape(shape)
        if dtype == "BF16":  # bf16 is the top half of a float32
            arr = (arr.astype(np.uint32) << 16).view(np.float32)
        out[name] = arr.astype(np.float32)
    return out


def _is_count(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


def expected_shapes(d: Dims) -> dict[str, tuple[int, ...]]:
    shapes = {"model.embed_tokens.weight": (d.vocab, d.dim), "model.norm.weight": (d.dim,)}
    for i in range(d.layers):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d.dim,),
            p + "self_attn.q_proj.weight": (d.dim, d.dim),
            p + "self_attn.k_proj.weight": (d.kv_dim, d.dim),
            p + "self_attn.v_proj.weight": (d.kv_dim, d.dim),
            p + "self_attn.o_proj.weight": (d.dim, d.dim),
            p + "post_attention_layernorm.weight": (d.dim,),
            p + "mlp.gate_proj.weight": (d.hidden, d.dim),
            p + "mlp.up_proj.weight": (d.hidden, d.dim),
            p + "mlp.down_proj.weight": (d.dim, d.hidden),
        })
    if not d.tied:
        shapes["lm_head.weight"] = (d.vocab, d.dim)
    return shapes


def check_tensors(tensors: dict[str, np.ndarray], d: Dims, pos: Pos) -> list[Diagnostic]:
    errs = Collector()
    for name, shape in expected_shapes(d).items():
        if name not in tensors:
            errs.add(pos, f"tensor {name} is missing (expected shape {list(shape)})")
        elif tensors[name].shape != shape:
            errs.add(pos, f"tensor {name} has shape {list(tensors[name].shape)}, expected {list(shape)}")
        elif not np.all(np.isfinite(tensors[name])):
            errs.add(pos, f"tensor {name} contains NaN or infinity")
    if d.tied and "lm_head.weight" in tensors and "model.embed_tokens.weight" in tensors \
            and not np.array_equal(tensors["lm_head.weight"], tensors["model.embed_tokens.weight"]):
        # some exporters store the tied copy; a different one means the model is not tied after all
        errs.add(pos, "tensor lm_head.weight differs from model.embed_tokens.weight, but the model is tied",
                 hint="write 'tied no' in the model block (and check tie_word_embeddings in config.json)")
    # rotary_emb.inv_freq is a buffer older exports saved; it is recomputed, never read
    extra = sorted(n for n in set(tensors) - set(expected_shapes(d)) - {"lm_head.weight"}
                   if not n.endswith("rotary_emb.inv_freq"))
    if extra:
        deeper = [n for n in extra if (m := re.match(r"model\.layers\.(\d+)\.", n)) and int(m.group(1)) >= d.layers]
        errs.add(pos, f"{len(extra)} unexpected tensor(s), e.g. {(deeper or extra)[0]}",
                 hint=f"the file has more layers than layers = {d.layers}" if deeper else
                 "not part of a Llama model deeploy knows")
    return errs.items


def load_weights(model: ModelSpec) -> Weights:
    """Read, validate against the dims and convert to llama2.c conventions."""
    t = read_safetensors(model.weights, model.weights_pos)
    diags = check_tensors(t, model.dims, model.weights_pos)
    if diags:
        raise WeightsError(diags)
    d = model.dims
    layers = []
    for i in range(d.layers):
        p = f"model.layers.{i}."
        layers.append(LayerWeights(
            t[p + "input_layernorm.weight"],
            unpermute_rotary(t[p + "self_attn.q_proj.weight"], d.heads),
            unpermute_rotary(t[p + "self_attn.k_proj.weight"], d.kv_heads),
            t[p + "self_attn.v_proj.weight"], t[p + "self_attn.o_proj.weight"],
            t[p + "post_attention_layernorm.weight"],
            t[p + "mlp.gate_proj.weight"], t[p + "mlp.down_proj.weight"], t[p + "mlp.up_proj.weight"]))
    embed = t["model.embed_tokens.weight"]
    lm_head = embed if d.tied else t["lm_head.weight"]
    return Weights(embed, tuple(layers), t["model.norm.weight"], lm_head)
