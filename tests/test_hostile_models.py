"""Hostile model files (issue 12): weights, config.json and tokenizer files that are malformed, lie about their
dims, hold numbers the integer model cannot represent, or are not files at all. Each must give a clean error at the
`.dply` line that names the file (or the model block, for config.json's dims), never a traceback or a hang.

A subset of tests/malformed_models.py's cases runs in-process (bench/fuzz_models.py runs all of them through the
CLI); the targeted tests below pin down one message each.
"""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import numpy as np
import pytest

import malformed_models as mm
from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.errors import DeeployError, WeightsError

MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
HEAVY = ("17 MiB", "70 MiB", "2 MiB", "20,000", "1 MB")  # cases that write tens of MB: the bench runs them
CASES = [c for i, c in enumerate(mm.all_cases()) if not any(h in c.name for h in HEAVY)
         and (c.kind in ("special", "control", "dply") or i % 3 == 0)]


@pytest.fixture(scope="module")
def base() -> mm.Model:
    return mm.tiny_base()


class _Hang(Exception):
    pass


def run(dply: Path, seconds: int = 10, render: bool = True) -> mm.Outcome:
    """compile (and render, when it compiles) in-process, a hang being anything over `seconds`."""
    def alarm(*_):
        raise _Hang()
    old = signal.signal(signal.SIGALRM, alarm)
    signal.alarm(seconds)
    try:
        out = mm.outcome(dply)
        if out.status == "ok" and render:
            from deeploy_dsl.backend.codegen import render as render_c
            render_c(compile_deployment(dply))
        return out
    except _Hang:
        return mm.Outcome("hang")
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_malformed_case(case, base, tmp_path):
    dply = mm.write_case(case, tmp_path / "case", base)
    out = run(dply)
    assert out.verdict(case, mm.allowed_lines(case, dply)) == "pass", out.text or out.status


def case_errors(tmp_path: Path, base: mm.Model, edit, expect: str = "weights") -> list:
    """The diagnostics of a one-off case; every one must point at the line `expect` names."""
    case = mm.Case("one-off", "targeted", expect, edit)
    dply = mm.write_case(case, tmp_path / "case", base)
    with pytest.raises(DeeployError) as info:
        compile_deployment(dply)
    errs = [d for d in info.value.diagnostics if d.severity == "error"]
    assert errs and {d.pos.line for d in errs} <= mm.allowed_lines(case, dply), info.value.render()
    return errs


def messages(errs) -> str:
    return "\n".join(d.message + " | " + d.hint for d in errs)


# ---- bounds before parsing ---------------------------------------------------------------------------

@pytest.mark.parametrize("target, expect", [("header", "weights"), ("config", "config")])
def test_deep_json_is_refused_before_parsing(tmp_path, base, target, expect):
    edit = mm._on_raw(mm._replace_header(b"[" * 100000)) if target == "header" else mm._cfg_raw(b"[" * 100000)
    (err,) = case_errors(tmp_path, base, edit, expect)
    assert "nests 100,000 levels deep; deeploy reads JSON of at most 32" in err.message


def test_five_thousand_digit_shape(tmp_path, base):
    edit = mm._on_header(lambda h, m: h["model.norm.weight"].__setitem__("shape", [mm.Raw("9" * 5000)]))
    (err,) = case_errors(tmp_path, base, edit)
    assert err.message == "model.safetensors: header has a number of 5,000 digits; deeploy reads at most 20"


@pytest.mark.parametrize("name, expect", [("model.safetensors", "weights"), ("config.json", "config"),
                                          ("tok.bin", "tokenizer")])
@pytest.mark.parametrize("make, said", [(os.mkfifo, "is a FIFO (named pipe), not a regular file"),
                                        (lambda p: os.symlink("/dev/zero", p), "is a character device"),
                                        (os.mkdir, "is a directory"),
                                        (mm._loop, "is a symlink loop")])
def test_only_regular_files_are_read(tmp_path, base, name, expect, make, said):
    t0 = time.perf_counter()
    (err,) = case_errors(tmp_path, base, mm._special(name, make), expect)
    assert said in err.message and time.perf_counter() - t0 < 5


def test_a_symlink_loop_in_the_folder_is_an_error_at_the_path(tmp_path, base):
    errs = case_errors(tmp_path, base, lambda m, rng: m.after.append(mm._folder_loop), "either")
    assert {d.pos.col for d in errs} == {15} and all("cannot be resolved" in d.message for d in errs)


@pytest.mark.parametrize("delta, said", [(1, "the header length 2193 is 1 too large"),
                                         (-1, "the header length 2191 is 1 too small")])
def test_header_length_off_by_one_is_said_as_such(tmp_path, base, delta, said):
    (err,) = case_errors(tmp_path, base, mm._on_raw(mm._set_hlen(delta=delta)))
    assert said in err.message and "NaN" not in err.message


def test_overlapping_tensors(tmp_path, base):
    (err,) = case_errors(tmp_path, base, mm._on_header(mm._overlap_by_4))
    assert err.message.endswith("overlap in the file") and "q_proj" in err.message


# ---- dims and counts, before anything is allocated -----------------------------------------------------

def test_context_of_2_31_points_at_the_model_block_with_a_way_out(tmp_path, base):
    (err,) = case_errors(tmp_path, base, mm._cfg("max_position_embeddings", 2**31), "config")
    assert err.message == "context 2147483648 is above 65,536, the longest the integer softmax takes (its exps keep 8 bits)"
    assert "max_position_embeddings" in err.hint and "write 'context N'" in err.hint
    assert err.pos.line == 4  # the model block: the value is not in the .dply


@pytest.mark.parametrize("edit, expect, said", [
    (mm._cfg("num_hidden_layers", 2**40), "config", "layers 1099511627776 is above 256"),
    (mm._from_dply("layers", "layers 1099511627776"), "dply", "layers 1099511627776 is above 256"),
    (mm._cfg("hidden_size", 2**20), "config", "dim 1048576 or hidden 32 is above 131,072"),
    (mm._cfg("num_attention_heads", 2**40), "config", "heads 1099511627776 does not divide dim 16"),
    (mm._from_dply("vocab", "vocab 99999999999"), "dply", "1,600,000,004,672 parameters"),
    (mm._cfg("num_hidden_layers", 40), "config", "of the 362 tensors the dims imply are missing or shaped otherwise | "
     "the dims imply 98,256 weights, 196,512 bytes even at 16 bits; the file holds 37,952"),
])
def test_huge_counts_fail_fast(tmp_path, base, edit, expect, said):
    t0 = time.perf_counter()
    errs = case_errors(tmp_path, base, edit, expect)
    assert said in messages(errs) and time.perf_counter() - t0 < 5
    assert len(errs) <= 23  # a lie about the layers is a few lines, not one per missing tensor


@pytest.mark.parametrize("key, value, said", [
    ("rope_theta", 0, "rope_theta 0 must be above 1 and at most 1e+12"),
    ("rope_theta", -1, "rope_theta -1 must be above 1"),
    ("rms_norm_eps", -1, "norm_eps -1 must be above 0 and at most 1"),
    ("rms_norm_eps", 1e30, "norm_eps 1e+30 must be above 0 and at most 1"),
])
def test_eps_and_theta_ranges(tmp_path, base, key, value, said):
    (err,) = case_errors(tmp_path, base, mm._cfg(key, value), "config")
    assert err.message.startswith(said) and err.pos.line == 4


@pytest.mark.parametrize("key, value, said", [
    ("hidden_act", "gelu", 'hidden_act "gelu" is not supported'),
    ("model_type", "gpt2", 'model_type "gpt2" is not supported'),
    ("attention_bias", True, "attention_bias = true is not supported"),
    ("bos_token_id", 0, "bos_token_id = 0, but the llama2.c tokenizer's BOS is 1"),
])
def test_architectures_other_than_llama_are_refused(tmp_path, base, key, value, said):
    (err,) = case_errors(tmp_path, base, mm._cfg(key, value), "config")
    assert said in err.message and err.pos.line == 5


def test_mistral_only_when_its_window_covers_the_context(tmp_path, base):
    mistral = {"model_type": "mistral", "sliding_window": 16}
    (err,) = case_errors(tmp_path, base, lambda m, rng: m.config.update(mistral), "config")
    assert "sliding_window 16 is shorter than the context 32" in err.message and "context 16" in err.hint
    case = mm.Case("mistral", "control", "ok", lambda m, rng: (m.config.update(mistral), m.extra.append("context 16")))
    assert run(mm.write_case(case, tmp_path / "ok", base), render=False).status == "ok"


# ---- numbers the integer model cannot represent -------------------------------------------------------

def test_scaled_weights_name_the_tensor_and_where(tmp_path, base):
    errs = case_errors(tmp_path, base, mm._scale_all(1e30))
    assert errs[0].message.startswith("tensor model.embed_tokens.weight has a weight of ")
    assert "deeploy takes weights of magnitude up to 65,504 (float16's largest)" in errs[0].message


def test_one_q_row_at_1e25_names_its_row(tmp_path, base):
    q = "model.layers.0.self_attn.q_proj.weight"

    def edit(m, rng):
        m.tensors[q][5] = 1e25
    (err,) = case_errors(tmp_path, base, edit)
    assert err.message.startswith(f"tensor {q} has a weight of 1e+25 at row 5, column 0")


def test_an_unrepresentable_softmax_names_the_q_row(tmp_path, base):
    q = "model.layers.0.self_attn.q_proj.weight"

    def edit(m, rng):
        m.tensors[q][5] = 6e4  # within float16's range, but one step of q . k is then ~60 octaves
    (err,) = case_errors(tmp_path, base, edit)
    assert err.message.startswith("layer 0 attention: one integer step of q . k is ")
    assert err.message.endswith("the integer softmax takes at most 8")
    assert f"{q}'s largest row is 5 " in err.hint  # the file's row, not llama2.c's interleaved one


def test_a_row_factor_beyond_2_31_names_the_row(tmp_path, base):
    from deeploy_dsl.model.float_model import FloatModel
    from deeploy_dsl.frontend.interpret import load_deployment
    from deeploy_dsl.quant.quantize import quantize
    from deeploy_dsl.model.weights import load_weights
    dep = load_deployment(mm.write_case(mm.control_cases()[0], tmp_path / "case", base))
    fm = FloatModel(load_weights(dep.model), dep.model.dims)
    ranges = {"layers.0.attn_norm": 1.0, "layers.0.attn.q": 1e-12}  # an output range no real model has
    with pytest.raises(WeightsError) as info:
        quantize(fm, ranges)
    (d,) = info.value.diagnostics
    assert d.pos.line == 5 and d.message.startswith("tensor model.layers.0.self_attn.q_proj.weight row ")
    assert "is not a positive number below 2^31" in d.message


def test_float_overflow_in_calibration_names_where_it_starts(tmp_path, base):
    from dataclasses import replace
    from deeploy_dsl.model.float_model import FloatModel
    from deeploy_dsl.frontend.interpret import load_deployment
    from deeploy_dsl.quant.quantize import calibrate
    from deeploy_dsl.model.weights import load_weights
    dep = load_deployment(mm.write_case(mm.control_cases()[0], tmp_path / "case", base))
    w = load_weights(dep.model)
    big = np.float32(1e37)  # past the load-time checks: gate and up stay finite, their product does not
    layer = replace(w.layers[1], w1=w.layers[1].w1 * big, w3=w.layers[1].w3 * big)
    fm = FloatModel(replace(w, layers=(w.layers[0], layer)), dep.model.dims)
    with pytest.raises(WeightsError) as info:
        calibrate(fm, dep.quant.calibration)
    (d,) = info.value.diagnostics
    assert d.pos.line == 5 and "overflows float32 at layers.1.mlp.swiglu" in d.message
    assert d.hint.endswith("model.layers.1.mlp.gate_proj.weight, model.layers.1.mlp.up_proj.weight")


# ---- the tokenizer file ---------------------------------------------------------------------------------

@pytest.mark.parametrize("edit, said", [
    (lambda m, rng: m.pieces.__setitem__(259, (0.0, b"_")), 'no " " piece'),
    (lambda m, rng: m.pieces.__setitem__(3 + 0x41, (0.0, b"A")), "expected the byte piece <0x41>"),
    (mm._tok(lambda b: (1000).to_bytes(4, "little") + b[4:]), "max_token_length 1000 in the header"),
])
def test_check_rejects_what_the_device_tokenizer_cannot_use(tmp_path, base, edit, said):
    (err,) = case_errors(tmp_path, base, edit, "tokenizer")
    assert said in err.message


# ---- Hugging Face cache layout ----------------------------------------------------------------------------

def hf_cache(root: Path, model_dir: Path) -> Path:
    """models--x/snapshots/REV/<file> -> ../../blobs/<hash>, the blobs themselves links to the shared model."""
    repo = root / "models--deeploy--stories260K"
    (repo / "blobs").mkdir(parents=True)
    snap = repo / "snapshots/0123abcd"
    snap.mkdir(parents=True)
    for i, name in enumerate(("model.safetensors", "config.json", "tok512.bin")):
        blob = f"{i:02d}" + "f" * 62
        os.symlink(model_dir / name, repo / "blobs" / blob)
        os.symlink(f"../../blobs/{blob}", snap / name)
    return snap


def dply_for(folder: Path, at: Path, extra: str = "") -> Path:
    text = (Path(__file__).resolve().parents[1] / "deployments/stories260k.dply").read_text()
    text = text.replace('"../../shared/models/stories260K/', f'"{os.path.relpath(folder, at.parent)}/')
    text = text.replace("tokens = 4096", "tokens = 256").replace("target siracusa", "target host")
    at.write_text(text.replace("model llama {", "model llama {\n" + extra, 1))
    return at


def test_hf_cache_layout_builds_with_the_config_beside_the_link(tmp_path):
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.skip(f"the stories260K model is not at {MODEL_DIR}")
    from deeploy_dsl.backend.codegen import render
    snap = hf_cache(tmp_path / "hub", MODEL_DIR)
    c = compile_deployment(dply_for(snap, tmp_path / "hf.dply"))
    assert c.dep.model.weights == snap / "model.safetensors" and c.dep.model.dims.layers == 5
    files = render(c)
    assert "weights: model.safetensors" in files["plan.yaml"] and "blobs" not in files["plan.yaml"]


def test_a_symlinked_model_uses_the_config_beside_the_link(tmp_path):
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.skip(f"the stories260K model is not at {MODEL_DIR}")
    mine = tmp_path / "mine"
    mine.mkdir()
    for name in ("model.safetensors", "tok512.bin"):
        os.symlink(MODEL_DIR / name, mine / name)
    config = json.loads((MODEL_DIR / "config.json").read_text())
    (mine / "config.json").write_text(json.dumps({**config, "max_position_embeddings": 128}))
    from deeploy_dsl.frontend.interpret import load_deployment
    dep = load_deployment(dply_for(mine, tmp_path / "mine.dply"))
    assert dep.model.dims.context == 128  # the target folder's config.json says 512
    (mine / "config.json").unlink()
    with pytest.raises(DeeployError, match="no config.json beside the weights"):
        load_deployment(dply_for(mine, tmp_path / "mine.dply"))


def test_llama2c_import_refuses_a_fifo(tmp_path):
    from deeploy_dsl.model.llama2c import import_llama2c
    os.mkfifo(tmp_path / "x.bin")
    with pytest.raises(ValueError, match="is a FIFO"):
        import_llama2c(tmp_path / "x.bin", tmp_path / "out")
