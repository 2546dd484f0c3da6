"""Load Hugging Face Llama safetensors, check every tensor against the spec, undo the q/k permutation.

The reader is our own (the format is an 8-byte length, a JSON header and raw little-endian data) so
that bf16 loads without torch and a malformed file becomes a message rather than a traceback. The
header is read and checked first (its size and depth bounded, every entry's dtype, shape and offsets,
no two tensors sharing bytes, the data ending where the file ends), then the names and shapes against
the dims; only then are the tensors the model needs read, one by one, and their values checked.
"""
from __future__ import annotations

import math
import re
import struct
from dataclasses import dataclass
from typing import BinaryIO

import numpy as np

from ..errors import Collector, Diagnostic, Pos, WeightsError
from ..frontend.spec import Dims, ModelSpec
from .llama2c import permute_rotary, unpermute_rotary
from .modelfiles import FileProblem, json_object_end, load_json, open_regular, read_exact, short

DTYPES = {"F32": np.dtype("<f4"), "F16": np.dtype("<f2"), "BF16": np.dtype("<u2")}
HEADER_MAX = 16 << 20  # a Llama's header is ~100 bytes per tensor: a few tens of KiB
MAX_NDIM = 8
WEIGHT_MAX = 65504.0  # float16's largest value: trained Llama weights are orders of magnitude below it
LISTED = 10  # per kind of problem, the tensors named one by one; the rest are counted


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
    pos: Pos | None = None  # the `weights` line: where numeric trouble found later (quantize.py) is reported


@dataclass(frozen=True)
class TensorInfo:
    """One header entry, checked: offsets are relative to the data section."""

    dtype: str
    shape: tuple[int, ...]
    start: int
    end: int


class _Bad(Exception):
    """A problem with the file as a whole; load_weights puts the file's name and the weights line on it."""


# ---- the header ----------------------------------------------------------------------------------

def read_header(f: BinaryIO, size: int) -> tuple[dict[str, TensorInfo], int]:
    """The checked header entries (no `__metadata__`) and where the data section starts."""
    if size < 8:
        raise _Bad("too short to be a safetensors file")
    (hlen,) = struct.unpack("<Q", read_exact(f, 0, 8))
    if hlen > size - 8:
        raise _Bad(f"header length {hlen} runs past the end of the file ({size} bytes): truncated or not safetensors")
    if hlen > HEADER_MAX:
        raise _Bad(f"header length {hlen:,} is more than deeploy reads ({HEADER_MAX:,} bytes): not a Llama's header")
    raw = read_exact(f, 8, hlen)
    try:
        header = load_json(raw)
    except FileProblem as e:
        raise _Bad(_header_length_problem(raw, hlen) or f"header {e}" +
                   (": not a safetensors file?" if "valid JSON" in str(e) else "")) from None
    if not isinstance(header, dict):
        raise _Bad("header is not a JSON object: not a safetensors file?")
    data_bytes = size - 8 - hlen
    infos = {name: _entry(name, header[name], data_bytes, hlen) for name in sorted(header) if name != "__metadata__"}
    _check_layout(infos, data_bytes, hlen)
    return infos, 8 + hlen


def _header_length_problem(raw: bytes, hlen: int) -> str | None:
    """When a JSON object starts the header but does not fill it, or is cut off by it, the length field is wrong
    (or the file is cut): say so rather than "not valid JSON"."""
    found = json_object_end(raw)
    if found is None:
        return None
    if found[0] == "cut":
        return (f"the header's JSON is cut off at its end (byte {8 + hlen:,}): the header length {hlen} is too "
                "small, or the file is not safetensors")
    junk = hlen - found[1]
    return (f"the header's JSON ends {junk} byte{'s' if junk > 1 else ''} before the header does: the header length "
            f"{hlen} is {junk} too large, or junk follows the JSON")


def _entry(name: str, info, data_bytes: int, hlen: int) -> TensorInfo:
    tn = f"tensor {short(name)}"
    if not isinstance(info, dict):
        raise _Bad(f"{tn}: header entry is not an object")
    dtype, shape, offsets = info.get("dtype"), info.get("shape"), info.get("data_offsets")
    dt = DTYPES.get(dtype) if isinstance(dtype, str) else None
    if dt is None:
        raise _Bad(f"{tn} has dtype {short(dtype, 20) if dtype is not None else None}; supported: F32, F16, BF16")
    if not (isinstance(shape, list) and all(_is_count(n) for n in shape)):
        raise _Bad(f"{tn}: shape {short(shape, 60)} is not a list of sizes")
    if len(shape) > MAX_NDIM:
        raise _Bad(f"{tn}: shape has {len(shape)} dimensions; a Llama's tensors have 1 or 2")
    if not (isinstance(offsets, list) and len(offsets) == 2 and all(_is_count(n) for n in offsets)):
        raise _Bad(f"{tn}: data_offsets {short(offsets, 60)} is not [begin, end]")
    start, end = offsets
    need = math.prod(shape) * dt.itemsize
    where = f"{tn} {list(shape)} does not fit its data offsets [{start}, {end}]"
    if start > end:
        raise _Bad(f"{where}: they end before they begin")
    if end - start != need:
        raise _Bad(f"{where}: as {dtype} it needs {need:,} bytes, the offsets hold {end - start:,}")
    if end > data_bytes:
        past = end - data_bytes
        off = f", or the header length {hlen} is {past} too large" if past <= 8 else ""
        raise _Bad(f"{where} ({data_bytes} data bytes): truncated file?{off}")
    return TensorInfo(dtype, tuple(shape), start, end)


def _check_layout(infos: dict[str, TensorInfo], data_bytes: int, hlen: int) -> None:
    """No two tensors share a byte, and the data section ends where the last tensor does (as safetensors says)."""
    if not infos:
        raise _Bad("the header lists no tensors")
    spans = sorted((i.start, i.end, n) for n, i in infos.items() if i.end > i.start)
    for (s0, e0, a), (s1, e1, b) in zip(spans, spans[1:]):
        if s1 < e0:
            raise _Bad(f"tensors {short(a)} [{s0}, {e0}] and {short(b)} [{s1}, {e1}] overlap in the file")
    used = max((e for _, e, _ in spans), default=0)
    if used < data_bytes:
        extra = data_bytes - used
        hint = f"the header length {hlen} is {extra} too small, or " if extra <= 8 else ""
        raise _Bad(f"the tensors end {extra:,} byte{'s' if extra > 1 else ''} before the end of the file: {hint}data "
                   "was appended (safetensors files end with the last tensor)")


def _is_count(n) -> bool:
    return isinstance(n, int) and not isinstance(n, bool) and n >= 0


# ---- names and shapes against the dims -------------------------------------------------------------

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


def check_tensors(shapes: dict[str, tuple[int, ...]], d: Dims, pos: Pos, data_bytes: int | None = None) -> list[Diagnostic]:
    """The file's tensor names and shapes against those the dims imply (before any data is read)."""
    errs = Collector()
    want = expected_shapes(d)
    missing = [(n, s) for n, s in want.items() if n not in shapes]
    wrong = [(n, s) for n, s in want.items() if n in shapes and shapes[n] != s]
    for name, shape in missing[:LISTED]:
        errs.add(pos, f"tensor {name} is missing (expected shape {list(shape)})")
    for name, shape in wrong[:LISTED]:
        errs.add(pos, f"tensor {name} has shape {list(shapes[name])}, expected {list(shape)}")
    if len(missing) + len(wrong) > 2 * LISTED:
        n = sum(math.prod(s) for s in want.values())
        held = f"; the file holds {data_bytes:,}" if data_bytes is not None else ""
        errs.add(pos, f"... {len(missing) + len(wrong)} of the {len(want)} tensors the dims imply are missing "
                 "or shaped otherwise", f"the dims imply {n:,} weights, {2 * n:,} bytes even at 16 bits{held}: "
                 "does config.json (or the model block) describe this file?")
    else:
        for name, _ in missing[LISTED:] + wrong[LISTED:]:
            errs.add(pos, f"tensor {name} is missing or shaped otherwise")
    if d.tied and "lm_head.weight" in shapes and shapes["lm_head.weight"] != (d.vocab, d.dim):
        errs.add(pos, f"tensor lm_head.weight has shape {list(shapes['lm_head.weight'])}, expected {[d.vocab, d.dim]}")
    # rotary_emb.inv_freq is a buffer older exports saved; it is recomputed, never read
    extra = sorted(n for n in set(shapes) - set(want) - {"lm_head.weight"} if not n.endswith("rotary_emb.inv_freq"))
    if extra:
        deeper = [n for n in extra if (m := re.match(r"model\.layers\.(\d+)\.", n)) and int(m.group(1)) >= d.layers]
        errs.add(pos, f"{len(extra)} unexpected tensor(s), e.g. {short((deeper or extra)[0])}",
                 hint=f"the file has more layers than layers = {d.layers}" if deeper else
                 "not part of a Llama model deeploy knows")
    return errs.items


# ---- values ----------------------------------------------------------------------------------------

def read_tensor(f: BinaryIO, base: int, info: TensorInfo) -> np.ndarray:
    arr = np.frombuffer(read_exact(f, base + info.start, info.end - info.start), DTYPES[info.dtype]).reshape(info.shape)
    if info.dtype == "BF16":  # bf16 is the top half of a float32
        arr = (arr.astype(np.uint32) << 16).view(np.float32)
    return arr.astype(np.float32)


def check_values(t: dict[str, np.ndarray], d: Dims, pos: Pos) -> list[Diagnostic]:
    """Every weight finite and within float16's range (the quantizer's factors stay representable), a stored
    tied head equal to the embedding."""
    errs = Collector()
    for name in (n for n in expected_shapes(d) if n in t):
        a = t[name]
        bad = ~np.isfinite(a)
        if bad.any():
            errs.add(pos, f"tensor {name} contains NaN or infinity", f"the first is at {_at(np.argwhere(bad)[0])}")
            continue
        mag = np.abs(a)
        if a.size and float(mag.max()) > WEIGHT_MAX:
            at = np.unravel_index(int(np.argmax(mag)), a.shape)
            errs.add(pos, f"tensor {name} has a weight of {float(a[at]):.3g} at {_at(at)}; deeploy takes weights of "
                     f"magnitude up to {WEIGHT_MAX:,.0f} (float16's largest)",
                     "trained Llama weights are orders of magnitude smaller: is the file corrupt or scaled?")
    if d.tied and "lm_head.weight" in t and not np.array_equal(t["lm_head.weight"], t["model.embed_tokens.weight"]):
        # some exporters store the tied copy; a different one means the model is not tied after all
        errs.add(pos, "tensor lm_head.weight differs from model.embed_tokens.weight, but the model is tied",
                 hint="write 'tied no' in the model block (and check tie_word_embeddings in config.json)")
    return errs.items


def _at(index) -> str:
    idx = [int(i) for i in index]
    return f"row {idx[0]}, column {idx[1]}" if len(idx) == 2 else f"index {idx[0]}" if idx else "the only value"


def load_weights(model: ModelSpec) -> Weights:
    """Read, validate against the dims and convert to llama2.c conventions."""
    path, pos, d = model.weights, model.weights_pos, model.dims

    def bad(msg: str) -> WeightsError:
        return WeightsError([Diagnostic(pos, f"{path.name}: {msg}")])
    try:
        f, size = open_regular(path, 1 << 62, "weights file")
    except FileProblem as e:
        raise bad(f"no such file ({path})" if e.missing else f"cannot read: {e}") from None
    with f:
        try:
            infos, base = read_header(f, size)
            diags = check_tensors({n: i.shape for n, i in infos.items()}, d, pos, size - base)
            # the tensors whose shapes are right are read (however wrong the rest) so that all is said at once
            want = {**expected_shapes(d), "lm_head.weight": (d.vocab, d.dim)}
            t = {n: read_tensor(f, base, infos[n]) for n in want if n in infos and infos[n].shape == want[n]}
        except (_Bad, FileProblem) as e:
            raise bad(str(e)) from None
    diags += check_values(t, d, pos)
    if diags:
        raise WeightsError(diags)
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
    return Weights(embed, tuple(layers), t["model.norm.weight"], lm_head, pos)


# ---- naming the file's tensors for errors found later -------------------------------------------------

HF_NAMES = {"attn_norm": "input_layernorm", "attn.q": "self_attn.q_proj", "attn.k": "self_attn.k_proj",
            "attn.v": "self_attn.v_proj", "attn.o": "self_attn.o_proj", "mlp_norm": "post_attention_layernorm",
            "mlp.gate": "mlp.gate_proj", "mlp.up": "mlp.up_proj", "mlp.down": "mlp.down_proj"}


def tensor_name(op: str, d: Dims) -> str:
    """The file's tensor behind an op of the integer graph (`layers.3.attn.q`, `final_norm`, `lm_head`, `embed`)."""
    if op == "final_norm":
        return "model.norm.weight"
    if op == "embed" or (op == "lm_head" and d.tied):
        return "model.embed_tokens.weight"
    if op == "lm_head":
        return "lm_head.weight"
    m = re.fullmatch(r"layers\.(\d+)\.(.+)", op)
    return f"model.layers.{m.group(1)}.{HF_NAMES[m.group(2)]}.weight" if m and m.group(2) in HF_NAMES else op


def file_row(op: str, row: int, d: Dims) -> int:
    """Row `row` of an op's weights (q/k rows are in llama2.c's interleaved order) as the file numbers it."""
    heads = d.heads if op.endswith("attn.q") else d.kv_heads if op.endswith("attn.k") else 0
    if not heads:
        return row
    n = d.dim if heads == d.heads else d.kv_dim
    return int(np.flatnonzero(permute_rotary(np.arange(n), heads) == row)[0])
