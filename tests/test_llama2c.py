"""llama2.c checkpoint import: exact against the shared HF export, deterministic, and loud on bad files."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, strategies as st
from safetensors.numpy import load_file

from deeploy_dsl.model.llama2c import MAGIC, import_llama2c, permute_rotary, unpermute_rotary

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
BIN = MODEL_DIR / "stories260K.bin"
needs_model = pytest.mark.skipif(not BIN.exists(), reason=f"shared model fixture not found at {MODEL_DIR}")


@needs_model
def test_matches_shared_safetensors(tmp_path):
    import_llama2c(BIN, tmp_path)
    got, want = load_file(tmp_path / "model.safetensors"), load_file(MODEL_DIR / "model.safetensors")
    assert sorted(got) == sorted(want) and "lm_head.weight" not in got
    for name in want:
        assert got[name].dtype == np.float32 and np.array_equal(got[name], want[name]), name
    cfg = json.loads((tmp_path / "config.json").read_text())
    ref = json.loads((MODEL_DIR / "config.json").read_text())
    assert list(cfg) == list(ref) and cfg == ref


@needs_model
def test_conversion_is_byte_identical(tmp_path):
    import_llama2c(BIN, tmp_path / "a")
    import_llama2c(BIN, tmp_path / "b")
    for f in ("model.safetensors", "config.json"):
        assert (tmp_path / "a" / f).read_bytes() == (tmp_path / "b" / f).read_bytes()
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["config.json", "model.safetensors"]


@needs_model
def test_truncated_file_raises(tmp_path):
    data = BIN.read_bytes()
    for cut in (1, 4096, len(data) - 40):
        bad = tmp_path / "cut.bin"
        bad.write_bytes(data[: len(data) - cut])
        with pytest.raises(ValueError, match=rf"cut\.bin: file truncated.*needs {len(data)} bytes, found {len(data) - cut}"):
            import_llama2c(bad, tmp_path / "out")
    bad.write_bytes(data[:20])
    with pytest.raises(ValueError, match="too short"):
        import_llama2c(bad, tmp_path / "out")
    (tmp_path / "long.bin").write_bytes(data + b"\0" * 4)
    with pytest.raises(ValueError, match=f"trailing data.*needs {len(data)} bytes, found {len(data) + 4}"):
        import_llama2c(tmp_path / "long.bin", tmp_path / "out")


def test_missing_and_unsupported_files(tmp_path):
    with pytest.raises(ValueError, match="not found"):
        import_llama2c(tmp_path / "nope.bin", tmp_path / "out")
    v2 = tmp_path / "v2.bin"
    v2.write_bytes(struct.pack("<Ii7i", MAGIC, 2, 64, 172, 5, 8, 4, 512, 512).ljust(256, b"\0"))
    with pytest.raises(ValueError, match="version 2 is not supported"):
        import_llama2c(v2, tmp_path / "out")
    junk = tmp_path / "junk.bin"
    junk.write_bytes(struct.pack("<7i", 64, -3, 5, 8, 4, 512, 512))
    with pytest.raises(ValueError, match="implausible header.*hidden_dim=-3"):
        import_llama2c(junk, tmp_path / "out")
    odd = tmp_path / "odd.bin"
    odd.write_bytes(struct.pack("<7i", 64, 172, 5, 8, 3, 512, 512))
    with pytest.raises(ValueError, match="inconsistent"):
        import_llama2c(odd, tmp_path / "out")


@given(st.sampled_from([(1, 2), (2, 4), (8, 8), (4, 16)]), st.integers(1, 5), st.integers(0, 2**31))
def test_unpermute_inverts_permute(heads_hs, cols, seed):
    n_heads, hs = heads_hs
    w = np.random.default_rng(seed).standard_normal((n_heads * hs, cols)).astype(np.float32)
    p = permute_rotary(w, n_heads)
    # the formula of transformers' convert_llama_weights_to_hf.py
    ref = w.reshape(n_heads, hs // 2, 2, cols).transpose(0, 2, 1, 3).reshape(n_heads * hs, cols)
    assert np.array_equal(p, ref)
    assert np.array_equal(unpermute_rotary(p, n_heads), w)
    assert np.array_equal(permute_rotary(unpermute_rotary(w, n_heads), n_heads), w)


def test_permute_rejects_bad_head_split():
    with pytest.raises(ValueError, match="heads of even size"):
        permute_rotary(np.zeros((6, 4)), 2)


# ---- synthetic checkpoints: untied classifier, version-1 header ----------------------------------

DIM, HIDDEN, LAYERS, HEADS, KV, VOCAB, SEQ = 16, 24, 2, 4, 2, 40, 8


def _tiny(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    kv = KV * DIM // HEADS
    shapes = {"token_embedding": (VOCAB, DIM), "rms_att": (LAYERS, DIM), "wq": (LAYERS, DIM, DIM),
              "wk": (LAYERS, kv, DIM), "wv": (LAYERS, kv, DIM), "wo": (LAYERS, DIM, DIM), "rms_ffn": (LAYERS, DIM),
              "w1": (LAYERS, HIDDEN, DIM), "w2": (LAYERS, DIM, HIDDEN), "w3": (LAYERS, HIDDEN, DIM),
              "rms_final": (DIM,), "wcls": (VOCAB, DIM)}
    return {k: rng.standard_normal(s).astype(np.float32) for k, s in shapes.items()}


def _rope(theta: float = 10000.0) -> tuple[np.ndarray, np.ndarray]:
    hs = DIM // HEADS
    ang = np.outer(np.arange(SEQ), 1.0 / theta ** (np.arange(0, hs, 2) / hs)).astype(np.float32)
    return np.cos(ang), np.sin(ang)


def _legacy(t: dict, shared: bool, theta: float = 10000.0) -> bytes:
    out = struct.pack("<7i", DIM, HIDDEN, LAYERS, HEADS, KV, VOCAB if shared else -VOCAB, SEQ)
    order = ["token_embedding", "rms_att", "wq", "wk", "wv", "wo", "rms_ffn", "w1", "w2", "w3", "rms_final"]
    out += b"".join(t[k].tobytes() for k in order) + b"".join(a.tobytes() for a in _rope(theta))
    return out + (b"" if shared else t["wcls"].tobytes())


def _v1(t: dict, shared: bool) -> bytes:
    head = struct.pack("<Ii7iB", MAGIC, 1, DIM, HIDDEN, LAYERS, HEADS, KV, VOCAB, SEQ, int(shared)).ljust(256, b"\0")
    order = ["rms_att", "rms_ffn", "rms_final", "token_embedding", "wq", "wk", "wv", "wo", "w1", "w2", "w3"]
    return head + b"".join(t[k].tobytes() for k in order) + (b"" if shared else t["wcls"].tobytes())


@pytest.mark.parametrize("shared", [True, False])
def test_synthetic_legacy_and_v1_agree(tmp_path, shared):
    t = _tiny()
    (tmp_path / "legacy.bin").write_bytes(_legacy(t, shared))
    (tmp_path / "v1.bin").write_bytes(_v1(t, shared))
    import_llama2c(tmp_path / "legacy.bin", tmp_path / "a")
    import_llama2c(tmp_path / "v1.bin", tmp_path / "b")
    assert (tmp_path / "a/model.safetensors").read_bytes() == (tmp_path / "b/model.safetensors").read_bytes()
    assert (tmp_path / "a/config.json").read_bytes() == (tmp_path / "b/config.json").read_bytes()
    got = load_file(tmp_path / "a/model.safetensors")
    cfg = json.loads((tmp_path / "a/config.json").read_text())
    assert cfg["tie_word_embeddings"] is shared and cfg["vocab_size"] == VOCAB
    assert cfg["num_key_value_heads"] == KV and cfg["intermediate_size"] == HIDDEN
    assert ("lm_head.weight" in got) is not shared
    if not shared:
        assert np.array_equal(got["lm_head.weight"], t["wcls"])
    assert np.array_equal(got["model.layers.1.mlp.gate_proj.weight"], t["w1"][1])
    assert np.array_equal(got["model.layers.1.mlp.up_proj.weight"], t["w3"][1])
    assert np.array_equal(got["model.layers.1.mlp.down_proj.weight"], t["w2"][1])
    assert np.array_equal(unpermute_rotary(got["model.layers.0.self_attn.k_proj.weight"], KV), t["wk"][0])
    assert np.array_equal(unpermute_rotary(got["model.layers.1.self_attn.q_proj.weight"], HEADS), t["wq"][1])


def test_wrong_rope_theta_is_rejected(tmp_path):
    (tmp_path / "m.bin").write_bytes(_legacy(_tiny(), True, theta=500000.0))
    with pytest.raises(ValueError, match="rope_theta"):
        import_llama2c(tmp_path / "m.bin", tmp_path / "out")
