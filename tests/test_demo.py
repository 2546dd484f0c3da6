"""The shipped demo model (models/tinystories-demo) and the code that made it: the story grammar,
the BPE trainer, the export. None of it needs ../shared; the training test needs torch."""
from __future__ import annotations

import json

import numpy as np
import pytest

from conftest import ROOT, needs_cc
from deeploy_dsl.demo import bpe, corpus
from deeploy_dsl.demo.card import CARD_FILES, model_card
from deeploy_dsl.model.tokenizer import Tokenizer

MODEL = ROOT / "models/tinystories-demo"
DPLY = ROOT / "deployments/tinystories.dply"


@pytest.fixture(scope="module")
def shipped_tok() -> Tokenizer:
    return Tokenizer.load(MODEL / "tok512.bin", 512)


@pytest.fixture(scope="module")
def corpus_words() -> set[str]:
    """Every word a few thousand stories use: the grammar's vocabulary in practice."""
    return {w for s in corpus.generate(12345, 3000) for w in corpus.words(s)}


# ---- the grammar ------------------------------------------------------------------------------------


def test_corpus_is_deterministic_per_seed():
    a, b, c = corpus.generate(5, 50), corpus.generate(5, 50), corpus.generate(6, 50)
    assert a == b
    assert a != c and not set(a) & set(c)


def test_corpus_is_varied():
    stories = corpus.generate(0, 2000)
    assert len(set(stories)) == len(stories)
    # no opening of two sentences takes more than a small share: the model cannot just memorise
    openings = {}
    for s in stories:
        key = ". ".join(s.split(". ")[:2])
        openings[key] = openings.get(key, 0) + 1
    assert max(openings.values()) < 0.01 * len(stories)
    # every problem template occurs
    for marker in ("was gone!", "flew up onto", "you can have half", "and it broke!", "was very dark.",
                   "fell on the floor"):
        assert sum(marker in s for s in stories) > 150, marker
    assert all(s.startswith(("Once", "One")) and s[-1] in ".!" and "  " not in s for s in stories)
    assert all('"' in s for s in stories), "every story has dialogue"


def test_corpus_pronouns_agree():
    for s in corpus.generate(3, 300):
        assert "she his" not in s and "he her " not in s


# ---- the tokenizer -----------------------------------------------------------------------------------


def test_bpe_is_deterministic_and_round_trips(tmp_path):
    sample = corpus.generate(21, 300)
    t1, t2 = bpe.train(sample), bpe.train(list(sample))
    bpe.write(t1, tmp_path / "a.bin")
    bpe.write(t2, tmp_path / "b.bin")
    assert (tmp_path / "a.bin").read_bytes() == (tmp_path / "b.bin").read_bytes()
    tok = Tokenizer.load(tmp_path / "a.bin", 512)
    assert tok.vocab == t1.vocab and tok.scores == t1.scores
    assert tok.vocab[:3] == [b"<unk>", b"\n<s>\n", b"\n</s>\n"] and tok.vocab[3] == b"<0x00>"
    assert b" " in tok.vocab  # run.c's dummy prefix
    merged = tok.scores[259:]
    assert merged == sorted(merged, reverse=True) and len(set(merged)) == len(merged)
    for s in corpus.generate(22, 50):
        ids = tok.encode(s)
        assert tok.decode(ids) == s
        assert not any(3 <= i < 259 for i in ids), "a corpus character fell back to a byte token"


def test_fast_encoder_equals_tokenizer_encode(shipped_tok):
    enc = bpe.FastEncoder(shipped_tok)
    texts = corpus.generate(77, 100) + [
        "Once upon a time", "", "a", "Hello,  world", " leading", "trailing ", "héllo wörld", "x\ny",
        '"Why?" asked Tom.', "...!!??", "Lily and Tom, Lily and Tom.", "Zzzzz qqq", "tab\there"]
    for t in texts:
        assert enc.encode(t) == shipped_tok.encode(t, bos=True), t


def test_shipped_tokenizer(shipped_tok):
    assert shipped_tok.vocab_size == 512
    assert shipped_tok.vocab[1] == b"\n<s>\n" and shipped_tok.vocab[258] == b"<0xFF>"
    ids = shipped_tok.encode("Once upon a time")
    assert ids[0] == 1 and len(ids) <= 6 and shipped_tok.decode(ids) == "Once upon a time"


# ---- the shipped model -------------------------------------------------------------------------------


def test_shipped_model_files():
    files = sorted(p.name for p in MODEL.iterdir() if p.name != "__pycache__")
    # __init__.py (empty): the folder ships in the package as deeploy_dsl.demo_model, for `deeploy new`
    assert files == ["README.md", "__init__.py", "config.json", "model.safetensors", "tok512.bin", "train.json"]
    assert sum(p.stat().st_size for p in MODEL.iterdir() if p.is_file()) <= 1_500_000
    cfg = json.loads((MODEL / "config.json").read_text())
    ref_keys = ["architectures", "model_type", "vocab_size", "hidden_size", "intermediate_size", "num_hidden_layers",
                "num_attention_heads", "num_key_value_heads", "max_position_embeddings", "rms_norm_eps", "rope_theta",
                "hidden_act", "tie_word_embeddings", "bos_token_id", "eos_token_id", "torch_dtype"]
    assert list(cfg) == ref_keys
    run = json.loads((MODEL / "train.json").read_text())
    card = (MODEL / "README.md").read_text()
    # the card is the run's own (train.py writes it): it agrees with train.json, whatever torch version made them
    assert card == model_card(run, {f: (MODEL / f).stat().st_size for f in CARD_FILES})
    assert f"{run['val_loss']:.4f}" in card and f"{run['params']:,}" in card


@pytest.fixture(scope="module")
def dep():
    from deeploy_dsl.frontend.interpret import load_deployment
    return load_deployment(DPLY)


def test_shipped_weights_load(dep):
    from deeploy_dsl.model.weights import load_weights
    assert dep.model.weights.resolve() == (MODEL / "model.safetensors").resolve()
    d = dep.model.dims
    assert (d.dim, d.layers, d.heads, d.kv_heads, d.hidden, d.vocab, d.context, d.tied) == (64, 5, 8, 4, 172, 512, 512, True)
    w = load_weights(dep.model)
    n = w.embed.size + w.final_norm.size + sum(a.size for lw in w.layers for a in vars(lw).values())
    assert n == json.loads((MODEL / "train.json").read_text())["params"]


def test_float_model_tells_a_readable_story(corpus_words):
    from deeploy_dsl.engines.runner import run_float
    g = run_float(DPLY, "Once upon a time", 120)
    assert not any(3 <= i < 259 for i in g.ids), "byte tokens in the story"
    words = corpus.words(g.text)
    assert len(words) > 30, g.text
    assert set(words) <= corpus_words, (set(words) - corpus_words, g.text)


@pytest.fixture(scope="module")
def compiled():
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(DPLY)


def test_golden_equals_c(compiled, tmp_path):
    needs_cc()
    from deeploy_dsl.engines.runner import run_c_compiled, run_golden_compiled
    pids = compiled.tokenizer.encode("Once upon a time")
    g_ids, g_logits = run_golden_compiled(compiled, pids, 48, stop=False)
    c_ids, c_logits = run_c_compiled(compiled, pids, 48, stop=False, build_dir=tmp_path / "build")
    assert g_ids == c_ids
    assert np.array_equal(g_logits, c_logits)


# ---- training and export (torch) -----------------------------------------------------------------------


def test_torch_model_equals_float_model_on_export(tmp_path):
    torch = pytest.importorskip("torch")
    from deeploy_dsl.demo import train as T
    from deeploy_dsl.errors import Pos
    from deeploy_dsl.model.float_model import FloatModel
    from deeploy_dsl.model.llama2c import write_safetensors
    from deeploy_dsl.frontend.spec import Dims, ModelSpec
    from deeploy_dsl.model.weights import load_weights

    torch.manual_seed(0)
    s = T.Shape(dim=32, layers=2, heads=4, kv_heads=2, hidden=48, vocab=64, context=32)
    m = T.Llama(s)
    opt = torch.optim.AdamW(m.parameters(), lr=1e-2)
    for _ in range(5):  # a few steps so the norms and every projection move off their init
        x = torch.randint(0, s.vocab, (4, 17))
        loss = torch.nn.functional.cross_entropy(m(x[:, :-1]).reshape(-1, s.vocab), x[:, 1:].reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
    write_safetensors(T.hf_tensors(m), tmp_path / "model.safetensors")
    dims = Dims(s.dim, s.layers, s.heads, s.kv_heads, s.hidden, s.vocab, s.context, s.norm_eps, s.rope_theta, True)
    p = Pos("<test>")
    fm = FloatModel(load_weights(ModelSpec("llama", tmp_path / "model.safetensors", None, dims, p, p, p)), dims)
    ids = torch.randint(0, s.vocab, (2, 20))
    with torch.no_grad():
        want = m(ids).numpy()
    got = fm.forward(ids.numpy(), 0, fm.new_cache(2))
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
