"""Import llama2.c checkpoints (legacy and version-1 `.bin`) as Hugging Face Llama safetensors.

The rest of deeploy reads HF `LlamaForCausalLM` checkpoints; this converts Karpathy's format into
one, byte-identically across runs. The q/k rows are permuted from llama2.c's interleaved RoPE pairs
to HF's rotate_half layout, exactly as transformers' convert_llama_weights_to_hf.py does.
"""
from __future__ import annotations

import json
import math
import os
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .modelfiles import FileProblem, open_regular, read_exact
from .tokenizer import Tokenizer

MAGIC = 0x616B3432  # "ak42": versioned llama2.c export (export.py --version N)
V1_HEADER_BYTES = 256
ROPE_THETA = 10000.0


def _rotary_rows(w, n_heads: int) -> tuple[np.ndarray, int]:
    """The rows as an array and the head size, which must be even for RoPE's pairs."""
    w = np.asarray(w)
    rows = w.shape[0]
    if rows % n_heads or (rows // n_heads) % 2:
        raise ValueError(f"cannot split {rows} rows into {n_heads} heads of even size")
    return w, rows // n_heads


def permute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Interleaved RoPE rows (llama2.c, Meta) -> HF rotate_half rows, per head."""
    w, hs = _rotary_rows(w, n_heads)
    return w.reshape(n_heads, hs // 2, 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


def unpermute_rotary(w: np.ndarray, n_heads: int) -> np.ndarray:
    """HF rotate_half rows -> interleaved RoPE rows; inverse of `permute_rotary`."""
    w, hs = _rotary_rows(w, n_heads)
    return w.reshape(n_heads, 2, hs // 2, *w.shape[1:]).swapaxes(1, 2).reshape(w.shape)


@dataclass(frozen=True)
class Llama2cHeader:
    dim: int
    hidden_dim: int
    n_layers: int
    n_heads: int
    n_kv_heads: int
    vocab_size: int
    seq_len: int
    shared_classifier: bool
    version: int  # 0 = legacy (no magic)
    data_offset: int

    @property
    def head_size(self) -> int:
        return self.dim // self.n_heads


def _read_header(path: Path, data: bytes) -> Llama2cHeader:
    if len(data) < 28:
        raise ValueError(f"{path}: {len(data)} bytes is too short for a llama2.c checkpoint header (need at least 28)")
    (first,) = struct.unpack_from("<I", data, 0)
    if first == MAGIC:
        (version,) = struct.unpack_from("<i", data, 4)
        if version != 1:
            # version 2 is Q8_0-quantized, later ones are forks: re-export instead of guessing
            raise ValueError(f"{path}: llama2.c export version {version} is not supported; "
                             f"re-export with `export.py --version 1` (float32) or the legacy format")
        if len(data) < V1_HEADER_BYTES:
            raise ValueError(f"{path}: truncated version-1 header: expected {V1_HEADER_BYTES} bytes, found {len(data)}")
        dims = struct.unpack_from("<7i", data, 8)
        shared = bool(data[36])
        version_, offset = 1, V1_HEADER_BYTES
    else:
        dims = struct.unpack_from("<7i", data, 0)
        # legacy export signals an unshared classifier by a negative vocab_size
        shared = dims[5] > 0
        version_, offset = 0, 28
    dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len = dims
    vocab = abs(vocab)
    names = ["dim", "hidden_dim", "n_layers", "n_heads", "n_kv_heads", "vocab_size", "seq_len"]
    values = [dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len]
    bad = [f"{n}={v}" for n, v in zip(names, values) if v <= 0 or v > 1 << 20]
    if bad:
        raise ValueError(f"{path}: implausible header ({', '.join(bad)}); not a float32 llama2.c checkpoint?")
    if dim % n_heads or (dim // n_heads) % 2 or n_heads % n_kv:
        raise ValueError(f"{path}: header dims are inconsistent: dim={dim} must split into n_heads={n_heads} "
                         f"heads of even size, and n_heads must be a multiple of n_kv_heads={n_kv}")
    return Llama2cHeader(dim, hidden, n_layers, n_heads, n_kv, vocab, seq_len, shared, version_, offset)


def _layout(h: Llama2cHeader) -> list[tuple[str, tuple[int, ...]]]:
    """(llama2.c name, shape) in file order; per-layer tensors are stacked over layers."""
    L, d, f, kv = h.n_layers, h.dim, h.hidden_dim, h.n_kv_heads * h.head_size
    emb = ("token_embedding", (h.vocab_size, d))
    attn = [("wq", (L, d, d)), ("wk", (L, kv, d)), ("wv", (L, kv, d)), ("wo", (L, d, d))]
    ffn = [("w1", (L, f, d)), ("w2", (L, d, f)), ("w3", (L, f, d))]
    if h.version == 0:
        out = [emb, ("rms_att", (L, d)), *attn, ("rms_ffn", (L, d)), *ffn, ("rms_final", (d,)),
               ("freq_cis_real", (h.seq_len, h.head_size // 2)), ("freq_cis_imag", (h.seq_len, h.head_size // 2))]
    else:
        out = [("rms_att", (L, d)), ("rms_ffn", (L, d)), ("rms_final", (d,)), emb, *attn, *ffn]
    if not h.shared_classifier:
        out.append(("wcls", (h.vocab_size, d)))
    return out


def read_llama2c(bin_path: Path | str) -> tuple[Llama2cHeader, dict[str, np.ndarray]]:
    """The header and float32 tensors of a llama2.c checkpoint, under llama2.c's names."""
    path = Path(bin_path)
    try:
        f, size = open_regular(path, 1 << 62, "llama2.c checkpoint")
    except FileProblem as e:  # a FIFO or a device is refused before it is read (it could block or never end)
        raise ValueError(f"{path}: llama2.c checkpoint not found" if e.missing else f"{path}: cannot read: {e}") from None
    with f:
        try:
            h = _read_header(path, read_exact(f, 0, min(size, V1_HEADER_BYTES)))
            layout = _layout(h)
            expected = h.data_offset + 4 * sum(math.prod(s) for _, s in layout)
            if size != expected:  # said before anything that size is read
                shape = (f"dim={h.dim} hidden_dim={h.hidden_dim} n_layers={h.n_layers} n_heads={h.n_heads} "
                         f"n_kv_heads={h.n_kv_heads} vocab_size={h.vocab_size} seq_len={h.seq_len} "
                         f"{'shared' if h.shared_classifier else 'separate'} classifier")
                what = "truncated" if size < expected else "has trailing data"
                raise ValueError(f"{path}: file {what}: the header ({shape}) needs {expected} bytes, found {size}")
            data = read_exact(f, 0, size)
        except FileProblem as e:
            raise ValueError(f"{path}: cannot read: {e}") from None
    tensors, off = {}, h.data_offset
    for name, shape in layout:
        n = math.prod(shape)
        tensors[name] = np.frombuffer(data, dtype="<f4", count=n, offset=off).reshape(shape)
        off += 4 * n
    if h.version == 0:
        _check_rope_tables(path, h, tensors["freq_cis_real"], tensors["freq_cis_imag"])
    return h, tensors


def _check_rope_tables(path: Path, h: Llama2cHeader, cos: np.ndarray, sin: np.ndarray) -> None:
    # the config we write says theta 10000; a file built with another theta must not pass silently
    hs = h.head_size
    freqs = 1.0 / ROPE_THETA ** (np.arange(0, hs, 2)[: hs // 2] / hs)
    angles = np.outer(np.arange(h.seq_len), freqs)
    if not (np.allclose(cos, np.cos(angles), atol=1e-3) and np.allclose(sin, np.sin(angles), atol=1e-3)):
        raise ValueError(f"{path}: the stored RoPE tables do not match rope_theta={ROPE_THETA}; "
                         f"this importer only handles theta {ROPE_THETA} models")


def to_hf(h: Llama2cHeader, t: dict[str, np.ndarray]) -> tuple[dict, dict[str, np.ndarray]]:
    """HF LlamaForCausalLM config dict and tensors for a llama2.c header and tensors."""
    out = {"model.embed_tokens.weight": t["token_embedding"], "model.norm.weight": t["rms_final"]}
    for i in range(h.n_layers):
        p = f"model.layers.{i}."
        out[p + "input_layernorm.weight"] = t["rms_att"][i]
        out[p + "self_attn.q_proj.weight"] = permute_rotary(t["wq"][i], h.n_heads)
        out[p + "self_attn.k_proj.weight"] = permute_rotary(t["wk"][i], h.n_kv_heads)
        out[p + "self_attn.v_proj.weight"] = t["wv"][i]
        out[p + "self_attn.o_proj.weight"] = t["wo"][i]
        out[p + "post_attention_layernorm.weight"] = t["rms_ffn"][i]
        out[p + "mlp.gate_proj.weight"] = t["w1"][i]
        out[p + "mlp.up_proj.weight"] = t["w3"][i]
        out[p + "mlp.down_proj.weight"] = t["w2"][i]
    if not h.shared_classifier:
        out["lm_head.weight"] = t["wcls"]
    config = {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": h.vocab_size,
        "hidden_size": h.dim,
        "intermediate_size": h.hidden_dim,
        "num_hidden_layers": h.n_layers,
        "num_attention_heads": h.n_heads,
        "num_key_value_heads": h.n_kv_heads,
        "max_position_embeddings": h.seq_len,
        "rms_norm_eps": 1e-05,
        "rope_theta": ROPE_THETA,
        "hidden_act": "silu",
        "tie_word_embeddings": h.shared_classifier,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "torch_dtype": "float32",
    }
    return config, out


def write_safetensors(tensors: dict[str, np.ndarray], path: Path) -> None:
    """float32 safetensors with names sorted and fixed metadata, so equal inputs give equal bytes."""
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    for name in sorted(tensors):
        arr = np.ascontiguousarray(tensors[name], dtype="<f4")
        blob = arr.tobytes()
        header[name] = {"dtype": "F32", "shape": list(arr.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    raw = json.dumps(header, separators=(",", ":")).encode()
    raw += b" " * (-len(raw) % 8)  # the data section starts 8-byte aligned, as the reference writer pads
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(raw)))
        f.write(raw)
        for blob in blobs:
            f.write(blob)


def import_llama2c(bin_path: Path, out_dir: Path, tokenizer: Path | None = None) -> list[Path]:
    """Convert a llama2.c `.bin` into `out_dir/model.safetensors` + `out_dir/config.json`, and copy its tokenizer
    (a llama2.c tok*.bin, checked against the model's vocabulary) beside them under its own name. Returns the files."""
    header, tensors = read_llama2c(bin_path)
    config, hf = to_hf(header, tensors)
    tok_bytes = None
    if tokenizer is not None:
        tok = Tokenizer.load(tokenizer)  # ValueError for a file that is not a tokenizer
        if tok.vocab_size != config["vocab_size"]:
            raise ValueError(f"{tokenizer}: {tok.vocab_size} tokens, the checkpoint's vocabulary is {config['vocab_size']}")
        tok_bytes = Path(tokenizer).read_bytes()
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    # write-then-rename so an interrupted import never leaves a half-written model behind
    tmp_st, tmp_cfg = out_dir / ".model.safetensors.tmp", out_dir / ".config.json.tmp"
    write_safetensors(hf, tmp_st)
    tmp_cfg.write_text(json.dumps(config, indent=2) + "\n")
    written = [out_dir / "model.safetensors", out_dir / "config.json"]
    os.replace(tmp_st, written[0])
    os.replace(tmp_cfg, written[1])
    if tok_bytes is not None:
        tmp_tok = out_dir / f".{Path(tokenizer).name}.tmp"
        tmp_tok.write_bytes(tok_bytes)
        written.append(out_dir / Path(tokenizer).name)
        os.replace(tmp_tok, written[-1])
    return written
