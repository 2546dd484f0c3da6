"""Weights: our safetensors reader (F32/F16/BF16), the checks against the `.dply` dims, and q/k unpermuting.

Synthetic checkpoints are a tiny Llama written with safetensors.numpy (bf16 by hand); the last tests
compare against the shared stories260K model and its llama2.c original when present.
"""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from safetensors.numpy import save_file

from deeploy_dsl.errors import DeeployError, WeightsError
from deeploy_dsl.frontend.interpret import load_deployment
from deeploy_dsl.model.weights import load_weights, unpermute_rotary

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
needs_model = pytest.mark.skipif(not (MODEL_DIR / "stories260K.bin").exists(),
                                 reason=f"shared model fixture not found at {MODEL_DIR}")

TINY = dict(dim=16, layers=2, heads=4, kv_heads=2, hidden=24, vocab=300, context=32)
STORIES = dict(dim=64, layers=5, heads=8, kv_heads=4, hidden=172, vocab=512, context=512)


def config(d: dict, tied: bool) -> dict:
    return {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": d["dim"],
            "num_hidden_layers": d["layers"], "num_attention_heads": d["heads"], "num_key_value_heads": d["kv_heads"],
            "intermediate_size": d["hidden"], "vocab_size": d["vocab"], "max_position_embeddings": d["context"],
            "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "tie_word_embeddings": tied}


def llama_tensors(d: dict, tied: bool, seed: int = 0) -> dict[str, np.ndarray]:
    """Random float32 tensors under HF LlamaForCausalLM names and shapes."""
    rng = np.random.default_rng(seed)
    dim, hid, kv = d["dim"], d["hidden"], d["kv_heads"] * d["dim"] // d["heads"]

    def w(*shape):
        return rng.standard_normal(shape).astype(np.float32)

    t = {"model.embed_tokens.weight": w(d["vocab"], dim), "model.norm.weight": w(dim)}
    for i in range(d["layers"]):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": w(dim), p + "post_attention_layernorm.weight": w(dim),
                  p + "self_attn.q_proj.weight": w(dim, dim), p + "self_attn.k_proj.weight": w(kv, dim),
                  p + "self_attn.v_proj.weight": w(kv, dim), p + "self_attn.o_proj.weight": w(dim, dim),
                  p + "mlp.gate_proj.weight": w(hid, dim), p + "mlp.up_proj.weight": w(hid, dim),
                  p + "mlp.down_proj.weight": w(dim, hid)})
    if not tied:
        t["lm_head.weight"] = w(d["vocab"], dim)
    return t


def write_raw(path: Path, header: dict, data: bytes) -> None:
    """The safetensors layout by hand: u64 little-endian header length, JSON header, raw data."""
    raw = json.dumps(header).encode()
    path.write_bytes(struct.pack("<Q", len(raw)) + raw + data)


def write_bf16(path: Path, tensors: dict[str, np.ndarray]) -> None:
    header, blobs, off = {"__metadata__": {"format": "pt"}}, [], 0
    for name, arr in tensors.items():
        blob = (np.ascontiguousarray(arr, "<f4").view("<u4") >> 16).astype("<u2").tobytes()  # truncate
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [off, off + len(blob)]}
        blobs.append(blob)
        off += len(blob)
    write_raw(path, header, b"".join(blobs))


DPLY = 'deployment tiny\ntarget host\n\nmodel llama {\n    weights "model.safetensors"\n}\n'
WEIGHTS_LINE = 5


def model_spec(tmp_path: Path, d: dict = TINY, tied: bool = True):
    """The ModelSpec of a .dply beside config.json (the dims come from there)."""
    (tmp_path / "config.json").write_text(json.dumps(config(d, tied)))
    (tmp_path / "t.dply").write_text(DPLY)
    return load_deployment(tmp_path / "t.dply").model


def load(tmp_path: Path, tensors: dict, d: dict = TINY, tied: bool = True):
    save_file(tensors, str(tmp_path / "model.safetensors"))
    return load_weights(model_spec(tmp_path, d, tied))


def errors(tmp_path: Path, tensors: dict | None = None, d: dict = TINY, tied: bool = True) -> list[str]:
    """Messages of the WeightsError loading `tensors` (or the file already there) raises; each points at `weights`."""
    if tensors is not None:
        save_file(tensors, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError) as info:
        load_weights(model_spec(tmp_path, d, tied))
    for diag in info.value.diagnostics:
        assert (diag.pos.line, diag.pos.col) == (WEIGHTS_LINE, 5), diag.render()
        assert diag.render().split("\n")[1].endswith('|     weights "model.safetensors"')
    return [diag.message for diag in info.value.diagnostics]


def hf_permute(w: np.ndarray, n_heads: int) -> np.ndarray:
    """transformers' convert_llama_weights_to_hf.py permute, in numpy: interleaved pairs -> rotate_half."""
    rows, cols = w.shape
    return w.reshape(n_heads, rows // n_heads // 2, 2, cols).transpose(0, 2, 1, 3).reshape(rows, cols)


# ---- loading -------------------------------------------------------------------------------------------

def test_f32_loads_in_llama2c_conventions(tmp_path):
    t = llama_tensors(TINY, tied=True)
    w = load(tmp_path, t)
    assert len(w.layers) == 2
    assert np.array_equal(w.embed, t["model.embed_tokens.weight"]) and w.lm_head is w.embed
    assert np.array_equal(w.final_norm, t["model.norm.weight"])
    for i, lw in enumerate(w.layers):
        p = f"model.layers.{i}."
        assert lw.wq.dtype == np.float32 and lw.wq.shape == (16, 16) and lw.wk.shape == (8, 16)
        # q/k rows go back to interleaved pairs: HF's own permute of them gives the file's rows
        assert np.array_equal(hf_permute(lw.wq, 4), t[p + "self_attn.q_proj.weight"])
        assert np.array_equal(hf_permute(lw.wk, 2), t[p + "self_attn.k_proj.weight"])
        assert not np.array_equal(lw.wq, t[p + "self_attn.q_proj.weight"])
        for got, name in [(lw.att_norm, "input_layernorm"), (lw.ffn_norm, "post_attention_layernorm"),
                          (lw.wv, "self_attn.v_proj"), (lw.wo, "self_attn.o_proj"), (lw.w1, "mlp.gate_proj"),
                          (lw.w2, "mlp.down_proj"), (lw.w3, "mlp.up_proj")]:
            assert np.array_equal(got, t[p + name + ".weight"]), name


def test_unpermute_pairs_rows_within_each_head():
    # head size 4: HF keeps the first halves [x0, x1] then the second halves [y0, y1] of the pairs
    rows = np.arange(8, dtype=np.float32)[:, None]  # 2 heads
    w = unpermute_rotary(rows, 2)
    assert w[:, 0].tolist() == [0, 2, 1, 3, 4, 6, 5, 7]
    assert np.array_equal(hf_permute(w, 2), rows)


def test_f16_loads_exactly(tmp_path):
    t = llama_tensors(TINY, tied=True)
    t16 = {k: v.astype(np.float16) for k, v in t.items()}
    w = load(tmp_path, t16)
    assert w.embed.dtype == np.float32
    assert np.array_equal(w.embed, t16["model.embed_tokens.weight"].astype(np.float32))
    assert np.array_equal(w.layers[1].w2, t16["model.layers.1.mlp.down_proj.weight"].astype(np.float32))
    assert not np.array_equal(w.embed, t["model.embed_tokens.weight"])  # f16 really lost precision


def test_bf16_is_the_float32_with_its_low_half_zeroed(tmp_path):
    t = llama_tensors(TINY, tied=True)
    write_bf16(tmp_path / "model.safetensors", t)
    w = load_weights(model_spec(tmp_path))

    def bf16(a):
        return (a.view(np.uint32) & np.uint32(0xFFFF0000)).view(np.float32)

    assert np.array_equal(w.embed, bf16(t["model.embed_tokens.weight"]))
    assert np.array_equal(w.layers[0].w3, bf16(t["model.layers.0.mlp.up_proj.weight"]))
    assert np.array_equal(hf_permute(w.layers[1].wk, 2), bf16(t["model.layers.1.self_attn.k_proj.weight"]))
    assert np.abs(w.embed - t["model.embed_tokens.weight"]).max() > 0


def test_untied_reads_lm_head(tmp_path):
    t = llama_tensors(TINY, tied=False)
    w = load(tmp_path, t, tied=False)
    assert np.array_equal(w.lm_head, t["lm_head.weight"]) and not np.array_equal(w.lm_head, w.embed)


def test_untied_without_lm_head_is_missing(tmp_path):
    t = llama_tensors(TINY, tied=True)
    assert errors(tmp_path, t, tied=False) == ["tensor lm_head.weight is missing (expected shape [300, 16])"]


def test_tied_accepts_a_stored_copy_but_not_a_different_head(tmp_path):
    t = llama_tensors(TINY, tied=True)
    w = load(tmp_path, {**t, "lm_head.weight": t["model.embed_tokens.weight"].copy()})
    assert np.array_equal(w.lm_head, w.embed)
    msgs = errors(tmp_path, {**t, "lm_head.weight": t["model.embed_tokens.weight"] + 1})
    assert msgs == ["tensor lm_head.weight differs from model.embed_tokens.weight, but the model is tied"]


# ---- what the file gets wrong ---------------------------------------------------------------------------

def test_wrong_shape_names_tensor_and_both_shapes(tmp_path):
    t = llama_tensors(STORIES, tied=True)
    t["model.layers.3.mlp.up_proj.weight"] = t["model.layers.3.mlp.up_proj.weight"][:, :60].copy()
    assert errors(tmp_path, t, d=STORIES) == \
        ["tensor model.layers.3.mlp.up_proj.weight has shape [172, 60], expected [172, 64]"]


def test_several_problems_are_reported_together(tmp_path):
    t = llama_tensors(TINY, tied=True)
    del t["model.layers.1.self_attn.k_proj.weight"]
    t["model.norm.weight"] = np.zeros(15, np.float32)
    t["model.layers.0.mlp.gate_proj.weight"][3, 4] = np.nan
    assert sorted(errors(tmp_path, t)) == [
        "tensor model.layers.0.mlp.gate_proj.weight contains NaN or infinity",
        "tensor model.layers.1.self_attn.k_proj.weight is missing (expected shape [8, 16])",
        "tensor model.norm.weight has shape [15], expected [16]",
    ]


def test_infinity_is_rejected(tmp_path):
    t = llama_tensors(TINY, tied=True)
    t["model.embed_tokens.weight"][0, 0] = np.inf
    assert errors(tmp_path, t) == ["tensor model.embed_tokens.weight contains NaN or infinity"]


def test_more_layers_than_the_dims_say(tmp_path):
    t = llama_tensors({**TINY, "layers": 3}, tied=True)
    save_file(t, str(tmp_path / "model.safetensors"))
    with pytest.raises(WeightsError) as info:
        load_weights(model_spec(tmp_path))
    (d,) = info.value.diagnostics
    assert d.message.startswith("9 unexpected tensor(s), e.g. model.layers.2.")
    assert d.hint == "the file has more layers than layers = 2"


def test_rotary_buffers_of_old_exports_are_ignored(tmp_path):
    t = llama_tensors(TINY, tied=True)
    t["model.layers.0.self_attn.rotary_emb.inv_freq"] = np.ones(2, np.float32)
    assert len(load(tmp_path, t).layers) == 2
    t["model.layers.0.self_attn.q_norm.weight"] = np.ones(4, np.float32)
    assert errors(tmp_path, t) == ["1 unexpected tensor(s), e.g. model.layers.0.self_attn.q_norm.weight"]


def test_unsupported_dtype(tmp_path):
    t = llama_tensors(TINY, tied=True)
    t["model.norm.weight"] = np.ones(16, np.int32)
    (msg,) = errors(tmp_path, t)
    assert msg == "model.safetensors: tensor model.norm.weight has dtype I32; supported: F32, F16, BF16"


def test_truncated_file(tmp_path):
    save_file(llama_tensors(TINY, tied=True), str(tmp_path / "model.safetensors"))
    f = tmp_path / "model.safetensors"
    f.write_bytes(f.read_bytes()[:-100])
    (msg,) = errors(tmp_path)
    assert msg.startswith("model.safetensors: tensor ") and "truncated file?" in msg
    f.write_bytes(f.read_bytes()[:200])  # now inside the header
    (msg,) = errors(tmp_path)
    assert "runs past the end of the file" in msg and "truncated" in msg


@pytest.mark.parametrize("content, message", [
    (b"", "too short to be a safetensors file"),
    (b"hello, world! this is a text file\n", "runs past the end of the file"),
    (struct.pack("<Q", 5) + b"hello", "header is not valid JSON"),
    (struct.pack("<Q", 2) + b"[]", "header is not a JSON object"),
    (struct.pack("<Q", 4) + b"\xff\xfe{}", "header is not valid JSON"),
])
def test_not_a_safetensors_file(tmp_path, content, message):
    (tmp_path / "model.safetensors").write_bytes(content)
    (msg,) = errors(tmp_path)
    assert msg.startswith("model.safetensors: ") and message in msg


@pytest.mark.parametrize("entry, message", [
    ("oops", "header entry is not an object"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [0, 8, 9]}, "is not [begin, end]"),
    ({"dtype": "F32", "shape": [2], "data_offsets": [8, 0]}, "does not fit its data offsets"),
    ({"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}, "is not a list of sizes"),
    ({"dtype": "F32", "shape": "2", "data_offsets": [0, 8]}, "is not a list of sizes"),
    ({"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}, "does not fit its data offsets"),
    ({"dtype": ["F32"], "shape": [2], "data_offsets": [0, 8]}, "supported: F32, F16, BF16"),
    ({"shape": [2], "data_offsets": [0, 8]}, "has dtype None"),
])
def test_malformed_header_entries(tmp_path, entry, message):
    write_raw(tmp_path / "model.safetensors", {"model.norm.weight": entry}, bytes(8))
    (msg,) = errors(tmp_path)
    assert message in msg, msg


def test_missing_weights_file(tmp_path):
    model_spec(tmp_path)
    (msg,) = errors(tmp_path)
    assert msg.startswith("model.safetensors: no such file")
    (tmp_path / "model.safetensors").mkdir()
    (msg,) = errors(tmp_path)
    assert msg.startswith("model.safetensors: cannot read")


def test_weights_errors_are_deeploy_errors(tmp_path):
    (tmp_path / "model.safetensors").write_bytes(b"\x00" * 3)
    with pytest.raises(DeeployError):
        load_weights(model_spec(tmp_path))


# ---- the shared model ----------------------------------------------------------------------------------

@needs_model
def test_shared_model_matches_its_llama2c_original():
    from deeploy_dsl.model.llama2c import read_llama2c
    dep = load_deployment(Path(__file__).resolve().parents[1] / "deployments/stories260k.dply")
    w = load_weights(dep.model)
    h, ref = read_llama2c(MODEL_DIR / "stories260K.bin")
    assert (h.n_layers, h.n_heads, h.n_kv_heads, h.shared_classifier) == (5, 8, 4, True)
    assert np.array_equal(w.embed, ref["token_embedding"]) and w.lm_head is w.embed
    assert np.array_equal(w.final_norm, ref["rms_final"])
    for i, lw in enumerate(w.layers):
        # q/k come back exactly to llama2.c's interleaved rows, and differ from the HF file's
        assert np.array_equal(lw.wq, ref["wq"][i]) and np.array_equal(lw.wk, ref["wk"][i]), i
        for got, name in [(lw.wv, "wv"), (lw.wo, "wo"), (lw.w1, "w1"), (lw.w2, "w2"), (lw.w3, "w3"),
                          (lw.att_norm, "rms_att"), (lw.ffn_norm, "rms_ffn")]:
            assert np.array_equal(got, ref[name][i]), (i, name)
    from safetensors.numpy import load_file
    hf_q = load_file(MODEL_DIR / "model.safetensors")["model.layers.0.self_attn.q_proj.weight"]
    assert not np.array_equal(hf_q, w.layers[0].wq) and np.array_equal(hf_permute(w.layers[0].wq, 8), hf_q)
