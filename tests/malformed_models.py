"""Malformed model files: a seeded generator of hostile weights, config.json and tokenizer files.

A case is a named edit of a valid model folder (`m/model.safetensors`, `m/config.json`, `m/tok.bin`) and of
the `.dply` that names it, and what deeploy must do with it (`expect`): reject it with every error at the
`weights` line, at the `tokenizer` line, at a config.json line (the `weights` line or the model block), at
the settings the case writes into the model block (`dply`), or accept it (`ok`: the controls, a valid
model written another way, or a degenerate one deeploy can still build). `either`: accepted, or rejected
at one of those lines. `write_case` writes one into a folder; `outcome` runs `deeploy check` in-process
and classifies what happened. tests/test_hostile_models.py runs a subset, bench/fuzz_models.py all of
them through the CLI. The base model is a tiny seeded Llama (or stories260K, `base_from_dir`).
"""
from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import struct
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

TINY = dict(dim=16, layers=2, heads=4, kv_heads=2, hidden=32, vocab=300, context=32)
DPLY = """deployment fuzz
target host

model llama {{
    weights   "m/model.safetensors"
    tokenizer "m/tok.bin"
{extra}}}

quantize {{
    activations int8 calibrate(samples, tokens = 64)
{quantize}}}

generate {{
    tokens 4
    prompt "Once upon a time"
}}
"""
ROLES = {"in_norm": "input_layernorm", "q": "self_attn.q_proj", "k": "self_attn.k_proj", "v": "self_attn.v_proj",
         "o": "self_attn.o_proj", "post_norm": "post_attention_layernorm", "gate": "mlp.gate_proj",
         "up": "mlp.up_proj", "down": "mlp.down_proj"}
INT_FIELDS = ("hidden_size", "num_hidden_layers", "num_attention_heads", "num_key_value_heads", "intermediate_size",
              "vocab_size", "max_position_embeddings")


class Raw:
    """A JSON value written as this exact text (numbers Python's json cannot write, NaN, junk)."""

    def __init__(self, text: str):
        self.text = text


def dumps(obj) -> bytes:
    raws: list[str] = []

    def swap(o):
        if isinstance(o, Raw):
            raws.append(o.text)
            return f"@@RAW{len(raws) - 1}@@"
        if isinstance(o, dict):
            return {k: swap(v) for k, v in o.items()}
        if isinstance(o, list):
            return [swap(v) for v in o]
        return o
    text = json.dumps(swap(obj))
    for i, r in enumerate(raws):
        text = text.replace(f'"@@RAW{i}@@"', r)
    return text.encode()


@dataclass
class Model:
    """A model folder before it is written; the edits of a case change it."""

    tensors: dict[str, np.ndarray]
    config: dict | None
    pieces: list[tuple[float, bytes]]
    max_len: int
    dtype: str = "F32"
    header_edits: list[Callable[[dict], None]] = field(default_factory=list)
    st_edits: list[Callable[[bytes], bytes]] = field(default_factory=list)
    config_raw: bytes | None = None
    tok_edits: list[Callable[[bytes], bytes]] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)  # lines for the model block
    quantize: list[str] = field(default_factory=list)  # lines for the quantize block
    after: list[Callable[[Path], None]] = field(default_factory=list)  # on the written case folder

    @property
    def layers(self) -> int:
        return self.config["num_hidden_layers"]

    def name(self, layer: int, role: str) -> str:
        return f"model.layers.{layer}.{ROLES[role]}.weight"


@dataclass(frozen=True)
class Case:
    name: str
    kind: str  # header | tensors | numeric | config | dply | tokenizer | special | control
    expect: str  # weights | tokenizer | config | dply | ok | either
    edit: Callable[[Model, random.Random], None]


# ---- the base model ------------------------------------------------------------------------------

def tiny_base(seed: int = 0) -> Model:
    d = TINY
    rng = np.random.default_rng(seed)
    kv = d["kv_heads"] * d["dim"] // d["heads"]

    def w(*shape, scale=0.3):
        return (rng.standard_normal(shape) * scale).astype(np.float32)
    t = {"model.embed_tokens.weight": w(d["vocab"], d["dim"], scale=1.0),
         "model.norm.weight": 1 + w(d["dim"], scale=0.1)}
    for i in range(d["layers"]):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": 1 + w(d["dim"], scale=0.1),
                  p + "post_attention_layernorm.weight": 1 + w(d["dim"], scale=0.1),
                  p + "self_attn.q_proj.weight": w(d["dim"], d["dim"]), p + "self_attn.k_proj.weight": w(kv, d["dim"]),
                  p + "self_attn.v_proj.weight": w(kv, d["dim"]), p + "self_attn.o_proj.weight": w(d["dim"], d["dim"]),
                  p + "mlp.gate_proj.weight": w(d["hidden"], d["dim"]), p + "mlp.up_proj.weight": w(d["hidden"], d["dim"]),
                  p + "mlp.down_proj.weight": w(d["dim"], d["hidden"])})
    config = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d["dim"],
              "num_hidden_layers": d["layers"], "num_attention_heads": d["heads"],
              "num_key_value_heads": d["kv_heads"], "intermediate_size": d["hidden"], "vocab_size": d["vocab"],
              "max_position_embeddings": d["context"], "rms_norm_eps": 1e-5, "rope_theta": 10000.0,
              "hidden_act": "silu", "tie_word_embeddings": True, "bos_token_id": 1, "eos_token_id": 2}
    pieces = [b"<unk>", b"\n<s>\n", b"\n</s>\n"] + [b"<0x%02X>" % b for b in range(256)] + [b" "]
    merges = [b" t", b"he", b" the", b"an", b"in", b"er", b"on", b" a", b"re", b"ce", b" u", b"im", b" ti", b"me"]
    letters = [bytes([c]) for c in b"abcdefghijklmnopqrstuvwxyz"]
    pieces += merges + letters
    scores = [0.0] * 260 + [-float(i) for i in range(len(merges))] + [-100.0] * len(letters)
    assert len(pieces) == d["vocab"]
    return Model(t, config, list(zip(scores, pieces)), max(len(p) for p in pieces))


def base_from_dir(folder: Path) -> Model:
    """A base from a real model folder (model.safetensors, config.json, tok512.bin), e.g. stories260K."""
    from safetensors.numpy import load_file
    t = {k: v.astype(np.float32) for k, v in load_file(str(folder / "model.safetensors")).items()}
    config = json.loads((folder / "config.json").read_text())
    data = (folder / "tok512.bin").read_bytes()
    (max_len,) = struct.unpack_from("<I", data, 0)
    pieces, off = [], 4
    while off < len(data):
        score, n = struct.unpack_from("<fi", data, off)
        pieces.append((score, data[off + 8:off + 8 + n]))
        off += 8 + n
    return Model(t, config, pieces, max_len)


# ---- writing a case --------------------------------------------------------------------------------

def safetensors_bytes(m: Model) -> bytes:
    header: dict = {"__metadata__": {"format": "pt"}}
    blobs, off = [], 0
    dt = {"F32": "<f4", "F16": "<f2"}.get(m.dtype)
    for name in sorted(m.tensors):
        a = np.ascontiguousarray(m.tensors[name], np.float32)
        with np.errstate(over="ignore"):  # a float32 beyond float16's range is meant to become infinity
            blob = (a.view("<u4") >> 16).astype("<u2").tobytes() if m.dtype == "BF16" else a.astype(dt).tobytes()
        header[name] = {"dtype": m.dtype, "shape": list(a.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    for e in m.header_edits:
        e(header)
    raw = dumps(header)
    raw += b" " * (-len(raw) % 8)
    out = struct.pack("<Q", len(raw)) + raw + b"".join(blobs)
    for e in m.st_edits:
        out = e(out)
    return out


def tokenizer_bytes(m: Model) -> bytes:
    out = struct.pack("<I", m.max_len) + b"".join(struct.pack("<fi", s, len(p)) + p for s, p in m.pieces)
    for e in m.tok_edits:
        out = e(out)
    return out


def write_case(case: Case, folder: Path, base: Model, seed: int = 0) -> Path:
    """Write the case's model folder and .dply into `folder` (emptied first); returns the .dply."""
    if folder.exists() or folder.is_symlink():
        shutil.rmtree(folder)
    (folder / "m").mkdir(parents=True)
    m = Model({k: v.copy() for k, v in base.tensors.items()}, json.loads(json.dumps(base.config)),
              list(base.pieces), base.max_len)
    case.edit(m, random.Random(f"{seed}:{case.name}"))
    (folder / "m/model.safetensors").write_bytes(safetensors_bytes(m))
    if m.config_raw is not None:
        (folder / "m/config.json").write_bytes(m.config_raw)
    elif m.config is not None:
        (folder / "m/config.json").write_bytes(dumps(m.config))
    (folder / "m/tok.bin").write_bytes(tokenizer_bytes(m))
    dply = folder / "case.dply"
    dply.write_text(DPLY.format(extra="".join(f"    {line}\n" for line in m.extra),
                                quantize="".join(f"    {line}\n" for line in m.quantize)))
    for fn in m.after:
        fn(folder)
    return dply


def allowed_lines(case: Case, dply: Path) -> set[int]:
    """The .dply lines the case's errors may point at."""
    lines = dply.read_text().split("\n")
    at = {key: next(i for i, s in enumerate(lines, 1) if s.startswith(prefix))
          for key, prefix in (("weights", "    weights"), ("tokenizer", "    tokenizer"), ("model", "model llama"))}
    extra = set(range(at["tokenizer"] + 1, lines.index("}", at["model"]) + 1))  # up to the block's "}"
    return {"weights": {at["weights"]}, "tokenizer": {at["tokenizer"]}, "config": {at["weights"], at["model"]},
            "dply": extra, "ok": set(), "either": {at["weights"], at["tokenizer"], at["model"]} | extra}[case.expect]


@dataclass(frozen=True)
class Outcome:
    status: str  # ok | error | traceback | hang
    lines: tuple[int, ...] = ()  # the .dply lines the errors point at
    text: str = ""

    def verdict(self, case: Case, allowed: set[int]) -> str:
        """"pass" when deeploy did what the case expects, else what went wrong."""
        if self.status in ("traceback", "hang"):
            return self.status
        if self.status == "ok":
            return "pass" if case.expect in ("ok", "either") else "accepted"
        if case.expect == "ok":
            return "rejected"
        return "pass" if self.lines and set(self.lines) <= allowed else "wrong line"


def outcome(dply: Path) -> Outcome:
    """`deeploy check` in-process: accepted, a clean error (with its lines) or a traceback."""
    import traceback
    from deeploy_dsl.compiler import compile_deployment
    from deeploy_dsl.errors import DeeployError
    try:
        compile_deployment(dply)
    except DeeployError as e:
        errs = [d for d in e.diagnostics if d.severity == "error"]
        return Outcome("error", tuple(d.pos.line for d in errs if d.pos.file.endswith(".dply")) +
                       tuple(0 for d in errs if not d.pos.file.endswith(".dply")), e.render())
    except Exception:  # noqa: BLE001 - a traceback is what the campaign counts
        return Outcome("traceback", (), traceback.format_exc())
    return Outcome("ok")


# ---- the cases ---------------------------------------------------------------------------------------

def _on_raw(fn: Callable[[bytes], bytes]) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.st_edits.append(fn)


def _on_header(fn: Callable[[dict, Model], None]) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.header_edits.append(lambda h: fn(h, m))


def _set_hlen(delta: int | None = None, value: int | None = None) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        (n,) = struct.unpack_from("<Q", raw)
        return struct.pack("<Q", value if value is not None else n + delta) + raw[8:]
    return edit


def _replace_header(text: bytes) -> Callable[[bytes], bytes]:
    def edit(raw: bytes) -> bytes:
        (n,) = struct.unpack_from("<Q", raw)
        return struct.pack("<Q", len(text)) + text + raw[8 + n:]
    return edit


def _entry(h: dict, name: str) -> dict:
    return h[name]


def header_cases() -> list[Case]:
    q = "model.layers.0.self_attn.q_proj.weight"
    cases = [
        Case("empty file", "header", "weights", _on_raw(lambda r: b"")),
        Case("7 bytes", "header", "weights", _on_raw(lambda r: r[:7])),
        Case("only the length", "header", "weights", _on_raw(lambda r: r[:8])),
        Case("header length 0", "header", "weights", _on_raw(_set_hlen(value=0))),
        Case("header length 2^64-1", "header", "weights", _on_raw(_set_hlen(value=2**64 - 1))),
        Case("header length = file size", "header", "weights", _on_raw(lambda r: struct.pack("<Q", len(r)) + r[8:])),
        Case("header length 20 MiB, file shorter", "header", "weights", _on_raw(_set_hlen(value=20 << 20))),
        Case("header of 17 MiB (padded)", "header", "weights",
             _on_raw(lambda r: _replace_header(r[8:8 + struct.unpack_from("<Q", r)[0]] + b" " * (17 << 20))(r))),
        Case("header [ x 100000", "header", "weights", _on_raw(_replace_header(b"[" * 100000))),
        Case('header {"a": x 50000', "header", "weights", _on_raw(_replace_header(b'{"a":' * 50000))),
        Case("header []", "header", "weights", _on_raw(_replace_header(b"[]"))),
        Case("header null", "header", "weights", _on_raw(_replace_header(b"null"))),
        Case("header 123", "header", "weights", _on_raw(_replace_header(b"123"))),
        Case('header "str"', "header", "weights", _on_raw(_replace_header(b'"str"'))),
        Case("header {} (no tensors)", "header", "weights", _on_raw(_replace_header(b"{}"))),
        Case("header with junk after the JSON", "header", "weights",
             _on_raw(lambda r: _replace_header(r[8:8 + struct.unpack_from("<Q", r)[0]].rstrip() + b" xyz")(r))),
        Case("header invalid UTF-8 in a name", "header", "weights",
             _on_raw(lambda r: r.replace(b"model.norm", b"model.\xffnorm", 1))),
        Case("header 40 levels deep in __metadata__", "header", "weights",
             _on_header(lambda h, m: h.__setitem__("__metadata__", json.loads("[" * 40 + "]" * 40)))),
        Case("header: 5000-digit shape", "header", "weights",
             _on_header(lambda h, m: _entry(h, "model.norm.weight").__setitem__("shape", [Raw("9" * 5000)]))),
        Case("header: 5000-digit offset", "header", "weights",
             _on_header(lambda h, m: _entry(h, "model.norm.weight")["data_offsets"].__setitem__(1, Raw("1" * 5000)))),
        Case("header: duplicate tensor name", "header", "weights",
             _on_raw(lambda r: _duplicate_key(r))),
        Case("header: 1 MB tensor name", "header", "weights",
             _on_header(lambda h, m: h.__setitem__("x" * 1_000_000, _empty_at_end(h)))),
        Case("header: 20,000 extra empty tensors", "header", "weights",
             _on_header(lambda h, m: h.update({f"extra.{i}": _empty_at_end(h) for i in range(20000)}))),
        Case("header: name with a newline", "header", "weights",
             _on_header(lambda h, m: h.__setitem__("bad\nname", _empty_at_end(h)))),
    ]
    for d in (1, -1, 2, -2, 7, 8, -8, 100, -100):
        cases.append(Case(f"header length {d:+d}", "header", "weights", _on_raw(_set_hlen(delta=d))))
    for label, value in (("float", [16.0, 16.0]), ("negative", [-16, 16]), ("bool", [True, 16]),
                         ("nested", [[16], [16]]), ("string", "16,16"), ("100 dims", [1] * 100),
                         ("2^62 x 2^62", [2**62, 2**62]), ("scalar", []), ("null", None), ("object", {"a": 1})):
        cases.append(Case(f"header: shape {label}", "header", "weights",
                          _on_header(lambda h, m, v=value: _entry(h, q).__setitem__("shape", v))))
    for label, fn in (("one offset", lambda o: [o[0]]), ("three offsets", lambda o: o + [o[1]]),
                      ("strings", lambda o: [str(o[0]), str(o[1])]), ("reversed", lambda o: [o[1], o[0]]),
                      ("beyond the file", lambda o: [o[0] + 10**9, o[1] + 10**9]), ("empty", lambda o: [o[0], o[0]]),
                      ("shifted by 4", lambda o: [o[0] + 4, o[1] + 4]), ("negative", lambda o: [-o[1], -o[0]]),
                      ("floats", lambda o: [float(o[0]), float(o[1])]), ("null", lambda o: None)):
        cases.append(Case(f"header: data_offsets {label}", "header", "weights",
                          _on_header(lambda h, m, f=fn: _entry(h, q).__setitem__("data_offsets", f(_entry(h, q)["data_offsets"])))))
    for dtype in ("I32", "F64", "I8", "U8", "BOOL", "f32", None, 5, ["F32"], "F8_E4M3"):
        cases.append(Case(f"header: dtype {dtype!r}", "header", "weights",
                          _on_header(lambda h, m, v=dtype: _entry(h, q).__setitem__("dtype", v))))
    for key in ("dtype", "shape", "data_offsets"):
        cases.append(Case(f"header: no {key}", "header", "weights",
                          _on_header(lambda h, m, k=key: _entry(h, q).pop(k))))
    for label, value in (("a list", [1, 2]), ("a string", "F32"), ("null", None), ("a number", 7)):
        cases.append(Case(f"header: entry is {label}", "header", "weights",
                          _on_header(lambda h, m, v=value: h.__setitem__(q, v))))
    cases += [
        Case("header: two tensors share their bytes", "header", "weights",
             _on_header(lambda h, m: _entry(h, "model.layers.0.mlp.up_proj.weight").__setitem__(
                 "data_offsets", list(_entry(h, "model.layers.0.mlp.gate_proj.weight")["data_offsets"])))),
        Case("header: overlapping by 4 bytes", "header", "weights", _on_header(_overlap_by_4)),
        Case("header: __metadata__ a list", "header", "either",
             _on_header(lambda h, m: h.__setitem__("__metadata__", ["x"]))),
    ]
    return cases


def _duplicate_key(raw: bytes) -> bytes:
    (n,) = struct.unpack_from("<Q", raw)
    text = raw[8:8 + n].rstrip()
    entry = re.search(rb'"model\.norm\.weight": \{[^}]*\}', text).group(0)
    return _replace_header(text[:-1] + b", " + entry + b"}")(raw)


def _empty_at_end(h: dict) -> dict:
    end = max(e["data_offsets"][1] for k, e in h.items() if k != "__metadata__" and isinstance(e, dict))
    return {"dtype": "F32", "shape": [0], "data_offsets": [end, end]}


def _overlap_by_4(h: dict, m: Model) -> None:
    # the tensor after q in the file starts 4 bytes early and ends 4 bytes early: sizes stay right
    names = sorted(k for k in h if k != "__metadata__")
    nxt = names[names.index("model.layers.0.self_attn.q_proj.weight") + 1]
    s, e = h[nxt]["data_offsets"]
    h[nxt]["data_offsets"] = [s - 4, e - 4]


def _drop(name: str) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.tensors.pop(name)


def _reshape(name: str, fn: Callable[[np.ndarray], np.ndarray]) -> Callable[[Model, random.Random], None]:
    def edit(m: Model, rng: random.Random) -> None:
        m.tensors[name] = np.ascontiguousarray(fn(m.tensors[name]))
    return edit


def _role_names(m_layers: int) -> list[tuple[str, str]]:
    out = [("embed", "model.embed_tokens.weight"), ("final norm", "model.norm.weight")]
    for layer in (0, m_layers - 1):
        out += [(f"layer {layer} {role}", f"model.layers.{layer}.{hf}.weight") for role, hf in ROLES.items()]
    return out


def tensor_cases(layers: int) -> list[Case]:
    cases = []
    for label, name in _role_names(layers):
        cases.append(Case(f"missing {label}", "tensors", "weights", _drop(name)))
        cases.append(Case(f"{label}: one row short", "tensors", "weights", _reshape(name, lambda a: a[:-1])))
        if label.endswith(("k", "gate", "down", "embed")):  # not square: a transposed one has another shape
            cases.append(Case(f"{label}: transposed", "tensors", "weights", _reshape(name, lambda a: a.T)))
            cases.append(Case(f"{label}: flattened", "tensors", "weights", _reshape(name, lambda a: a.reshape(-1))))
    q = "model.layers.0.self_attn.q_proj.weight"
    cases += [
        Case("dtype F16 declared on F32 data", "tensors", "weights",
             _on_header(lambda h, m: _entry(h, q).__setitem__("dtype", "F16"))),
        Case("dtype BF16 declared on F32 data, twice the columns", "tensors", "weights",
             _on_header(lambda h, m: _entry(h, q).update(dtype="BF16", shape=[h[q]["shape"][0], 2 * h[q]["shape"][1]]))),
        Case("dtype F32 declared on F16 data", "tensors", "weights", _f16_but_f32(q)),
        Case("an extra layer", "tensors", "weights", _extra_layer),
        Case("an extra q_norm tensor", "tensors", "weights",
             lambda m, rng: m.tensors.__setitem__("model.layers.0.self_attn.q_norm.weight", np.ones(4, np.float32))),
        Case("q_proj bias", "tensors", "weights",
             lambda m, rng: m.tensors.__setitem__(q.replace("weight", "bias"), np.zeros(len(m.tensors[q]), np.float32))),
        Case("tied, but lm_head differs", "tensors", "weights",
             lambda m, rng: m.tensors.__setitem__("lm_head.weight", m.tensors["model.embed_tokens.weight"] + 1)),
        Case("tied, lm_head of another shape", "tensors", "weights",
             lambda m, rng: m.tensors.__setitem__("lm_head.weight", m.tensors["model.embed_tokens.weight"][:, :-2].copy())),
        Case("names without 'model.'", "tensors", "weights",
             lambda m, rng: _rename(m, lambda n: n.removeprefix("model."))),
        Case("GPT-2 names", "tensors", "weights",
             lambda m, rng: _rename(m, lambda n: n.replace("model.layers.", "transformer.h."))),
        Case("layers renumbered from 1", "tensors", "weights",
             lambda m, rng: _rename(m, lambda n: re.sub(r"layers\.(\d+)", lambda x: f"layers.{int(x.group(1)) + 1}", n))),
    ]
    for frac in (0.999, 0.75, 0.5, 0.1):
        cases.append(Case(f"truncated to {frac:.1%}", "tensors", "weights",
                          _on_raw(lambda r, f=frac: r[:max(9, int(len(r) * f))])))
    for n in (1, 4, 7, 1000):
        cases.append(Case(f"truncated by {n} bytes", "tensors", "weights", _on_raw(lambda r, k=n: r[:-k])))
        cases.append(Case(f"{n} bytes appended", "tensors", "weights", _on_raw(lambda r, k=n: r + b"\0" * k)))
    return cases


def _f16_but_f32(name: str) -> Callable[[Model, random.Random], None]:
    def edit(m: Model, rng: random.Random) -> None:
        # F16 data, twice as many elements declared as F32 would hold them: the shape is then half
        m.dtype = "F16"
        m.header_edits.append(lambda h: h[name].update(dtype="F32", shape=[h[name]["shape"][0] // 2, h[name]["shape"][1]]))
    return edit


def _extra_layer(m: Model, rng: random.Random) -> None:
    last = m.layers - 1
    for role in ROLES:
        m.tensors[m.name(last + 1, role)] = m.tensors[m.name(last, role)].copy()


def _rename(m: Model, fn: Callable[[str], str]) -> None:
    m.tensors = {fn(k): v for k, v in m.tensors.items()}


def _scale_all(f: float) -> Callable[[Model, random.Random], None]:
    def edit(m: Model, rng: random.Random) -> None:
        with np.errstate(over="ignore"):
            m.tensors = {k: (v.astype(np.float64) * f).astype(np.float32) for k, v in m.tensors.items()}
    return edit


def _poke(name: str, value: float, what: str = "one") -> Callable[[Model, random.Random], None]:
    """Set one seeded weight (or a seeded row or column) of a tensor to `value`."""
    def edit(m: Model, rng: random.Random) -> None:
        a = m.tensors[name]
        i = rng.randrange(a.shape[0])
        if what == "row":
            a[i] = value
        elif what == "col" and a.ndim == 2:
            a[:, rng.randrange(a.shape[1])] = value
        else:
            a[(i,) + tuple(rng.randrange(n) for n in a.shape[1:])] = value
    return edit


def numeric_cases(layers: int) -> list[Case]:
    q0 = "model.layers.0.self_attn.q_proj.weight"
    last = f"model.layers.{layers - 1}."
    cases = []
    for label, name in _role_names(layers)[::3]:
        cases.append(Case(f"NaN in {label}", "numeric", "weights", _poke(name, float("nan"))))
    cases += [
        Case("+inf in the embedding", "numeric", "weights", _poke("model.embed_tokens.weight", float("inf"))),
        Case("-inf in the last down", "numeric", "weights", _poke(last + "mlp.down_proj.weight", float("-inf"))),
        Case("weights x 1e30", "numeric", "weights", _scale_all(1e30)),
        Case("weights x 3e38", "numeric", "weights", _scale_all(3e38)),
        Case("weights x 1e20", "numeric", "weights", _scale_all(1e20)),
        Case("weights x 1e6", "numeric", "weights", _scale_all(1e6)),
        Case("weights x 1e3", "numeric", "either", _scale_all(1e3)),
        Case("weights x 1e-30", "numeric", "either", _scale_all(1e-30)),
        Case("weights x 1e-45 (subnormal)", "numeric", "either", _scale_all(1e-45)),
        Case("all weights zero", "numeric", "either", _scale_all(0.0)),
        Case("one q row at 1e25", "numeric", "weights", _poke(q0, 1e25, "row")),
        Case("one q row at 6e4", "numeric", "either", _poke(q0, 6e4, "row")),
        Case("one q row at 1e3", "numeric", "either", _poke(q0, 1e3, "row")),
        Case("one k row at 1e25", "numeric", "weights", _poke(q0.replace("q_proj", "k_proj"), 1e25, "row")),
        Case("one k row at 6e4", "numeric", "either", _poke(q0.replace("q_proj", "k_proj"), 6e4, "row")),
        Case("one v column at 1e20", "numeric", "weights", _poke(q0.replace("q_proj", "v_proj"), 1e20, "col")),
        Case("one o row at 1e10", "numeric", "weights", _poke(q0.replace("q_proj", "o_proj"), 1e10, "row")),
        Case("one embedding row at 1e25", "numeric", "weights", _poke("model.embed_tokens.weight", 1e25, "row")),
        Case("one embedding row at 6e4", "numeric", "either", _poke("model.embed_tokens.weight", 6e4, "row")),
        Case("a norm gain of 1e30", "numeric", "weights", _poke("model.layers.0.input_layernorm.weight", 1e30)),
        Case("a norm gain of 6e4", "numeric", "either", _poke("model.layers.0.input_layernorm.weight", 6e4)),
        Case("final norm all zero", "numeric", "either", _reshape("model.norm.weight", lambda a: a * 0)),
        Case("a gate row at 3e38", "numeric", "weights", _poke(last + "mlp.gate_proj.weight", 3e38, "row")),
        Case("a down column at 6e4", "numeric", "either", _poke(last + "mlp.down_proj.weight", 6e4, "col")),
        Case("one weight at 65504", "numeric", "either", _poke(q0, 65504.0)),
        Case("one weight at 65536", "numeric", "weights", _poke(q0, 65536.0)),
        Case("BF16 with a NaN", "numeric", "weights",
             lambda m, rng: (setattr(m, "dtype", "BF16"), _poke(q0, float("nan"))(m, rng))),
        Case("F16 with an infinity", "numeric", "weights",
             lambda m, rng: (setattr(m, "dtype", "F16"), _poke(q0, 1e6)(m, rng))),
        Case("untied, lm_head row at 1e25", "numeric", "weights", _untied_head(1e25)),
        Case("untied, lm_head all zero", "numeric", "either", _untied_head(0.0, whole=True)),
        Case("a q row of zeros", "numeric", "either", _poke(q0, 0.0, "row")),
        Case("embedding rows of 1e-40", "numeric", "either",
             _reshape("model.embed_tokens.weight", lambda a: np.where(np.arange(len(a))[:, None] % 2 == 0, a * 1e-40, a))),
    ]
    return cases


GPTQ = {"int8 gptq": "weights int8 per_channel gptq", "int4 gptq": "weights int4 per_group(8) gptq",
        "int4": "weights int4 per_group(8)"}


def _with_weights(fmt: str, edit: Callable[[Model, random.Random], None]) -> Callable[[Model, random.Random], None]:
    def both(m: Model, rng: random.Random) -> None:
        m.quantize.append(GPTQ[fmt])
        edit(m, rng)
    return both


def rounding_cases(layers: int) -> list[Case]:
    """The numeric cases that reach the quantizer, with GPTQ and int4 weights (other code paths)."""
    q0 = "model.layers.0.self_attn.q_proj.weight"
    edits = (("the base model", "either", lambda m, rng: None), ("one q row at 6e4", "either", _poke(q0, 6e4, "row")),
             ("all weights zero", "either", _scale_all(0.0)), ("weights x 1e-45", "either", _scale_all(1e-45)),
             ("a q row of zeros", "either", _poke(q0, 0.0, "row")), ("weights x 1e6", "weights", _scale_all(1e6)))
    return [Case(f"{fmt}: {label}", "numeric", expect, _with_weights(fmt, edit))
            for fmt in GPTQ for label, expect, edit in edits]


def _untied_head(value: float, whole: bool = False) -> Callable[[Model, random.Random], None]:
    def edit(m: Model, rng: random.Random) -> None:
        m.config["tie_word_embeddings"] = False
        head = m.tensors["model.embed_tokens.weight"].copy()
        if whole:
            head[:] = value
        else:
            head[rng.randrange(len(head))] = value
        m.tensors["lm_head.weight"] = head
    return edit


def _cfg(key: str, value) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.config.__setitem__(key, value)


def _cfg_raw(text: bytes) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: setattr(m, "config_raw", text)


def config_cases() -> list[Case]:
    cases = []
    for key in INT_FIELDS:
        for label, value in (("0", 0), ("-1", -1), ("2^31", 2**31), ("2^40", 2**40), ("2^63", 2**63 - 1),
                             ("a string", "64"), ("16.5", 16.5), ("true", True), ("a list", [16]),
                             ("an object", {"v": 16}), ("5000 digits", Raw("7" * 5000)), ("1e400", Raw("1e400")),
                             ("NaN", Raw("NaN"))):
            cases.append(Case(f"config {key} {label}", "config", "config", _cfg(key, value)))
    for label, value in (("0", 0), ("-1", -1), ("1e30", 1e30), ("2", 2.0), ("a string", "1e-05"), ("true", True),
                         ("NaN", Raw("NaN")), ("Infinity", Raw("Infinity")), ("a list", [1e-5])):
        cases.append(Case(f"config rms_norm_eps {label}", "config", "config", _cfg("rms_norm_eps", value)))
    for label, value in (("0", 0), ("-1", -1), ("1", 1), ("0.5", 0.5), ("1e300", 1e300), ("a string", "10000"),
                         ("NaN", Raw("NaN")), ("-Infinity", Raw("-Infinity")), ("an object", {})):
        cases.append(Case(f"config rope_theta {label}", "config", "config", _cfg("rope_theta", value)))
    for label, value in (("a string", "yes"), ("1", 1), ("false (the file is tied)", False)):
        cases.append(Case(f"config tie_word_embeddings {label}", "config", "config", _cfg("tie_word_embeddings", value)))
    for value in ("gelu", "relu", "gelu_new", 5, []):
        cases.append(Case(f"config hidden_act {value!r}", "config", "config", _cfg("hidden_act", value)))
    for value in ("gpt2", "bert", "", 7, "Llama", "qwen2"):
        cases.append(Case(f"config model_type {value!r}", "config", "config", _cfg("model_type", value)))
    cases += [
        Case("config mistral, sliding_window shorter than the context", "config", "config",
             lambda m, rng: m.config.update(model_type="mistral", sliding_window=m.config["max_position_embeddings"] // 2)),
        Case("config mistral, sliding_window 'x'", "config", "config",
             lambda m, rng: m.config.update(model_type="mistral", sliding_window="x")),
        Case("config mistral, sliding_window 0", "config", "config",
             lambda m, rng: m.config.update(model_type="mistral", sliding_window=0)),
        Case("config rope_scaling linear", "config", "config", _cfg("rope_scaling", {"type": "linear", "factor": 2.0})),
        Case("config rope_parameters yarn", "config", "config", _cfg("rope_parameters", {"rope_type": "yarn", "factor": 4})),
        Case("config head_dim not dim/heads", "config", "config",
             lambda m, rng: m.config.__setitem__("head_dim", 2 * m.config["hidden_size"] // m.config["num_attention_heads"])),
        Case("config head_dim a string", "config", "config", _cfg("head_dim", "4")),
        Case("config attention_bias", "config", "config", _cfg("attention_bias", True)),
        Case("config mlp_bias", "config", "config", _cfg("mlp_bias", True)),
        Case("config bos_token_id 0", "config", "config", _cfg("bos_token_id", 0)),
        Case("config eos_token_id 50256", "config", "config", _cfg("eos_token_id", 50256)),
        Case("config num_key_value_heads null", "config", "config", _cfg("num_key_value_heads", None)),
        Case("config without hidden_size", "config", "config", lambda m, rng: m.config.pop("hidden_size")),
        Case("config missing", "config", "config", lambda m, rng: setattr(m, "config", None)),
        Case("config []", "config", "config", _cfg_raw(b"[]")),
        Case('config "x"', "config", "config", _cfg_raw(b'"x"')),
        Case("config 5", "config", "config", _cfg_raw(b"5")),
        Case("config null", "config", "config", _cfg_raw(b"null")),
        Case("config empty", "config", "config", _cfg_raw(b"")),
        Case("config {", "config", "config", _cfg_raw(b"{")),
        Case("config invalid UTF-8", "config", "config", _cfg_raw(b'{"model_type": "ll\xffama"}')),
        Case("config [ x 100000", "config", "config", _cfg_raw(b"[" * 100000)),
        Case('config {"a": x 50000', "config", "config", _cfg_raw(b'{"a":' * 50000)),
        Case("config of 2 MiB", "config", "config", lambda m, rng: setattr(m, "config_raw", dumps(m.config) + b" " * (2 << 20))),
        Case("config states hidden_size twice", "config", "config",
             lambda m, rng: setattr(m, "config_raw", dumps(m.config)[:-1] + b', "hidden_size": 16}')),
        Case("config: 5000-digit initializer_range", "config", "config", _cfg("initializer_range", Raw("3" * 5000))),
        Case("config: 40 levels in an unused field", "config", "config", _cfg("x", json.loads("[" * 40 + "]" * 40))),
    ]
    return cases


def _from_dply(key: str, line: str) -> Callable[[Model, random.Random], None]:
    hf = {"layers": "num_hidden_layers", "context": "max_position_embeddings", "dim": "hidden_size", "vocab": "vocab_size",
          "heads": "num_attention_heads", "hidden": "intermediate_size", "rope_theta": "rope_theta",
          "norm_eps": "rms_norm_eps", "kv_heads": "num_key_value_heads"}[key]

    def edit(m: Model, rng: random.Random) -> None:
        m.config.pop(hf)
        m.extra.append(line)
    return edit


def dply_cases() -> list[Case]:
    cases = []
    for key, value in (("layers", "1099511627776"), ("layers", "300"), ("context", "2147483648"), ("context", "0"),
                       ("dim", "1048576"), ("vocab", "99999999999"), ("heads", "1099511627776"),
                       ("hidden", "4294967296"), ("rope_theta", "0"), ("rope_theta", "-1"), ("norm_eps", "-1"),
                       ("norm_eps", "1e30"), ("kv_heads", "0"), ("kv_heads", "3")):
        cases.append(Case(f"model block {key} {value}", "dply", "dply", _from_dply(key, f"{key} {value}")))
    cases.append(Case("model block dim 1048576 against config.json", "dply", "dply",
                      lambda m, rng: m.extra.append("dim 1048576")))
    return cases


def _tok(fn: Callable[[bytes], bytes]) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.tok_edits.append(fn)


def _tok_seeded(fn: Callable[[bytes, random.Random], bytes]) -> Callable[[Model, random.Random], None]:
    return lambda m, rng: m.tok_edits.append(lambda b: fn(b, rng))


def _record_offsets(data: bytes) -> list[int]:
    out, off = [], 4
    while off + 8 <= len(data):
        out.append(off)
        off += 8 + struct.unpack_from("<i", data, off + 4)[0]
    return out


def _flip_length(data: bytes, rng: random.Random) -> bytes:
    off = rng.choice(_record_offsets(data))
    b = bytearray(data)
    b[off + 4 + rng.randrange(4)] ^= 1 << rng.randrange(8)
    return bytes(b)


def tokenizer_cases() -> list[Case]:
    cases = [
        Case("tokenizer empty", "tokenizer", "tokenizer", _tok(lambda b: b"")),
        Case("tokenizer 3 bytes", "tokenizer", "tokenizer", _tok(lambda b: b[:3])),
        Case("tokenizer header only", "tokenizer", "tokenizer", _tok(lambda b: b[:4])),
        Case("tokenizer max_len 0", "tokenizer", "tokenizer", _tok(lambda b: struct.pack("<I", 0) + b[4:])),
        Case("tokenizer max_len 2^32-1", "tokenizer", "tokenizer", _tok(lambda b: struct.pack("<I", 2**32 - 1) + b[4:])),
        Case("tokenizer max_len 1000", "tokenizer", "tokenizer", _tok(lambda b: struct.pack("<I", 1000) + b[4:])),
        Case("tokenizer without a ' ' piece", "tokenizer", "tokenizer",
             lambda m, rng: m.pieces.__setitem__(m.pieces.index(next(p for p in m.pieces if p[1] == b" ")),
                                                 (0.0, b"_"))),
        Case("tokenizer without <0x41>", "tokenizer", "tokenizer",
             lambda m, rng: m.pieces.__setitem__(3 + 0x41, (0.0, b"A"))),
        Case("tokenizer with byte pieces shifted", "tokenizer", "tokenizer",
             lambda m, rng: m.pieces.__setitem__(slice(3, 259), m.pieces[4:259] + m.pieces[3:4])),
        Case("tokenizer piece with a NUL", "tokenizer", "tokenizer",
             lambda m, rng: m.pieces.__setitem__(len(m.pieces) - 1, (0.0, b"a\0"))),
        Case("tokenizer negative length", "tokenizer", "tokenizer",
             _tok(lambda b: b[:8] + struct.pack("<i", -5) + b[12:])),
        Case("tokenizer length past max_len", "tokenizer", "tokenizer",
             _tok(lambda b: b[:8] + struct.pack("<i", struct.unpack_from("<I", b)[0] + 1) + b[12:])),
        Case("tokenizer one token short", "tokenizer", "tokenizer", lambda m, rng: m.pieces.pop()),
        Case("tokenizer one token more", "tokenizer", "tokenizer", lambda m, rng: m.pieces.append((-200.0, b"zz"))),
        Case("tokenizer 3 bytes of junk after", "tokenizer", "tokenizer", _tok(lambda b: b + b"abc")),
        Case("tokenizer 1 KB of junk after", "tokenizer", "tokenizer", _tok(lambda b: b + bytes(range(256)) * 4)),
        Case("tokenizer all zero bytes", "tokenizer", "tokenizer", _tok(lambda b: bytes(len(b)))),
        Case("tokenizer is the weights file", "tokenizer", "tokenizer",
             lambda m, rng: m.after.append(lambda f: shutil.copy(f / "m/model.safetensors", f / "m/tok.bin"))),
        Case("tokenizer is a text file", "tokenizer", "tokenizer", _tok(lambda b: b"Once upon a time\n" * 100)),
        Case("tokenizer 100 MB claimed piece", "tokenizer", "tokenizer",
             _tok(lambda b: struct.pack("<I", 2**31) + b[4:8] + struct.pack("<i", 100 << 20) + b[12:])),
        Case("tokenizer of 70 MiB", "tokenizer", "tokenizer", _tok(lambda b: b + bytes(70 << 20))),
        Case("tokenizer: NaN scores", "tokenizer", "either",
             lambda m, rng: m.pieces.__setitem__(slice(260, 270), [(float("nan"), p) for _, p in m.pieces[260:270]])),
        Case("tokenizer: duplicate pieces", "tokenizer", "either",
             lambda m, rng: m.pieces.__setitem__(len(m.pieces) - 1, m.pieces[len(m.pieces) - 2])),
    ]
    for i in range(6):
        cases.append(Case(f"tokenizer truncated (seeded {i})", "tokenizer", "tokenizer",
                          _tok_seeded(lambda b, rng: b[:rng.randrange(4, len(b) - 1)])))
        cases.append(Case(f"tokenizer bit flip in a length (seeded {i})", "tokenizer", "tokenizer",
                          _tok_seeded(_flip_length)))
    for i in range(2):
        cases.append(Case(f"tokenizer random bytes (seeded {i})", "tokenizer", "tokenizer",
                          _tok_seeded(lambda b, rng: bytes(rng.randrange(256) for _ in range(len(b))))))
    return cases


def _special(target: str, make: Callable[[Path], None]) -> Callable[[Model, random.Random], None]:
    def after(folder: Path) -> None:
        p = folder / "m" / target
        p.unlink(missing_ok=True)
        make(p)
    return lambda m, rng: m.after.append(after)


def _loop(p: Path) -> None:
    os.symlink(p.name + ".b", p)
    os.symlink(p.name, p.with_name(p.name + ".b"))


def special_cases() -> list[Case]:
    cases = []
    for target, expect in (("model.safetensors", "weights"), ("config.json", "config"), ("tok.bin", "tokenizer")):
        for label, make in (("a FIFO", os.mkfifo), ("/dev/zero", lambda p: os.symlink("/dev/zero", p)),
                            ("/dev/null", lambda p: os.symlink("/dev/null", p)), ("a directory", os.mkdir),
                            ("a symlink loop", _loop), ("a dangling symlink", lambda p: os.symlink("nowhere", p)),
                            ("/dev/urandom", lambda p: os.symlink("/dev/urandom", p))):
            cases.append(Case(f"{target} is {label}", "special", expect, _special(target, make)))
    cases.append(Case("the model folder is a symlink loop", "special", "either",
                      lambda m, rng: m.after.append(_folder_loop)))
    return cases


def _folder_loop(folder: Path) -> None:
    shutil.rmtree(folder / "m")
    os.symlink("m2", folder / "m")
    os.symlink("m", folder / "m2")


def _hf_cache(folder: Path) -> None:
    # snapshots/REV/<file> -> ../../blobs/<hash>, with the blobs' names nothing like the files'
    blobs = folder / "blobs"
    blobs.mkdir()
    for name in ("model.safetensors", "config.json", "tok.bin"):
        src = folder / "m" / name
        blob = blobs / hashlib.sha256(name.encode()).hexdigest()
        shutil.move(src, blob)
        os.symlink(f"../blobs/{blob.name}", src)


def _symlinked_folder(folder: Path) -> None:
    shutil.move(folder / "m", folder / "real")
    os.symlink("real", folder / "m")


def control_cases() -> list[Case]:
    return [
        Case("control: the base model", "control", "ok", lambda m, rng: None),
        Case("control: F16", "control", "ok", lambda m, rng: setattr(m, "dtype", "F16")),
        Case("control: BF16", "control", "ok", lambda m, rng: setattr(m, "dtype", "BF16")),
        Case("control: a stored tied copy", "control", "ok",
             lambda m, rng: m.tensors.__setitem__("lm_head.weight", m.tensors["model.embed_tokens.weight"].copy())),
        Case("control: rotary inv_freq buffers", "control", "ok",
             lambda m, rng: m.tensors.__setitem__("model.layers.0.self_attn.rotary_emb.inv_freq", np.ones(2, np.float32))),
        Case("control: HF cache layout", "control", "ok", lambda m, rng: m.after.append(_hf_cache)),
        Case("control: symlinked model folder", "control", "ok", lambda m, rng: m.after.append(_symlinked_folder)),
        Case("control: mistral without a window", "control", "ok",
             lambda m, rng: m.config.update(model_type="mistral", sliding_window=None)),
        Case("control: mistral, window = context", "control", "ok",
             lambda m, rng: m.config.update(model_type="mistral", sliding_window=m.config["max_position_embeddings"])),
        Case("control: eos_token_id a list", "control", "ok", _cfg("eos_token_id", [2, 3])),
        Case("control: config with a BOM", "control", "ok", lambda m, rng: setattr(m, "config_raw", b"\xef\xbb\xbf" + dumps(m.config))),
        Case("control: no model_type or hidden_act", "control", "ok",
             lambda m, rng: [m.config.pop(k) for k in ("model_type", "hidden_act")]),
        Case("control: hidden_act swish", "control", "ok", _cfg("hidden_act", "swish")),
        Case("control: a shorter context in the model block", "control", "ok",
             lambda m, rng: m.extra.append(f"context {m.config['max_position_embeddings'] // 2}")),
        Case("control: mistral window 16, context 16 in the model block", "control", "ok",
             lambda m, rng: (m.config.update(model_type="mistral", sliding_window=16), m.extra.append("context 16"))),
    ]


def all_cases(layers: int = TINY["layers"]) -> list[Case]:
    cases = (header_cases() + tensor_cases(layers) + numeric_cases(layers) + rounding_cases(layers) + config_cases() + dply_cases()
             + tokenizer_cases() + special_cases() + control_cases())
    names = [c.name for c in cases]
    assert len(names) == len(set(names)), [n for n in names if names.count(n) > 1]
    return cases
