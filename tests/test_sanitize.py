"""The generated program under AddressSanitizer and UBSan (`make asan`, -fno-sanitize-recover=all): several
deployments, each built once, run over an empty, a long, a non-ASCII and a context-filling prompt and must exit
cleanly; malformed arguments and failed writes are reported (exit 2 and 1), also under the sanitizers.

A model with a context of 2,560 once overflowed main.c's `prompt_ids[2050]` with 2,100 prompt ids."""
from __future__ import annotations

import json
import os
import random
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import DPLY, MODEL_DIR, ROOT, needs_cc
from deeploy_dsl.errors import SpecError
from deeploy_dsl.compiler import prompt_ids
from deeploy_dsl.engines.program_io import parse_program_output, write_ids

# build time only (the sanitizers do not care about the scales): a quarter of the calibration tokens
QUICK = "quantize.activations=int8 calibrate(samples, tokens = 1024, stat = percentile(99.99))"
VARIANTS = {
    "stories260k": (DPLY, []),
    "tinystories": (ROOT / "deployments/tinystories.dply", []),
    "int4": (DPLY, ["quantize.weights=int4 per_group(32)"]),
    "npu": (DPLY, ["map.layers[*].mlp.*=npu", "map.layers[1..2].attn.qkv=npu"]),
    "ctx2560": (None, []),  # the synthetic model below
}
SAN_ENV = {**os.environ, "ASAN_OPTIONS": "detect_leaks=0:abort_on_error=0", "UBSAN_OPTIONS": "print_stacktrace=1"}
NON_ASCII = "Lily sagte: \u00abK\u00f6nnen wir spielen?\u00bb \u2713 \u65e5\u672c\u8a9e \U0001F600 caf\u00e9"


def synthetic_llama(folder: Path, context: int = 2560, dim: int = 32, heads: int = 4, hidden: int = 64) -> Path:
    """A tiny random Llama in the Hugging Face layout with a long context, and the stories260K tokenizer (vocab
    512) by path; its .dply. dim and heads set the head size (test_queries)."""
    from safetensors.numpy import save_file
    layers, kv_heads, vocab = 2, 2, 512
    rng = np.random.default_rng(2560)

    def w(rows, cols):
        return (rng.standard_normal((rows, cols)) / np.sqrt(cols)).astype(np.float32)
    t = {"model.embed_tokens.weight": (rng.standard_normal((vocab, dim)) * 0.5).astype(np.float32),
         "model.norm.weight": np.ones(dim, np.float32)}
    kv = dim // heads * kv_heads
    for i in range(layers):
        p = f"model.layers.{i}."
        t.update({p + "input_layernorm.weight": np.ones(dim, np.float32),
                  p + "post_attention_layernorm.weight": np.ones(dim, np.float32),
                  p + "self_attn.q_proj.weight": w(dim, dim), p + "self_attn.k_proj.weight": w(kv, dim),
                  p + "self_attn.v_proj.weight": w(kv, dim), p + "self_attn.o_proj.weight": w(dim, dim),
                  p + "mlp.gate_proj.weight": w(hidden, dim), p + "mlp.up_proj.weight": w(hidden, dim),
                  p + "mlp.down_proj.weight": w(dim, hidden)})
    folder.mkdir(parents=True, exist_ok=True)
    save_file(t, str(folder / "model.safetensors"))
    (folder / "config.json").write_text(json.dumps({
        "architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": vocab, "hidden_size": dim,
        "intermediate_size": hidden, "num_hidden_layers": layers, "num_attention_heads": heads,
        "num_key_value_heads": kv_heads, "max_position_embeddings": context, "rms_norm_eps": 1e-5,
        "rope_theta": 10000.0, "hidden_act": "silu", "tie_word_embeddings": True}))
    dply = folder / "ctx2560.dply"
    dply.write_text(f'''deployment ctx2560
target siracusa
model llama {{
    weights   "model.safetensors"
    tokenizer "{MODEL_DIR / 'tok512.bin'}"
}}
map {{
    default -> cluster(cores = 8)
}}
memory {{
    L1 256 KiB  holds activations
    L2 2 MiB    holds weights, kv_cache
}}
generate {{
    tokens 16
    prompt "Once upon a time"
}}
''')
    return dply


@pytest.fixture(scope="module")
def asan(model_dir, tmp_path_factory):
    """name -> (compiled deployment, its `make asan` program), each built once."""
    needs_cc()
    from deeploy_dsl.backend.builddir import write_build
    from deeploy_dsl.backend.codegen import render
    from deeploy_dsl.compiler import compile_deployment
    root, built = tmp_path_factory.mktemp("asan"), {}

    def get(name: str):
        if name not in built:
            path, defines = VARIANTS[name]
            path = path or synthetic_llama(root / "synthetic")
            c = compile_deployment(path, [QUICK, *defines])
            if name == "npu":
                assert sum(s.engine == "npu" for s in c.plan.steps) >= 8, "the NPU variant runs nothing on the NPU"
            out = root / name
            write_build(render(c), out)
            res = subprocess.run(["make", "-s", "-j2", "-C", str(out), "asan"], capture_output=True, text=True, timeout=600)
            assert res.returncode == 0, res.stderr
            assert "warning" not in res.stderr.lower(), res.stderr
            built[name] = (c, out / f"{c.dep.name}-asan")
        return built[name]
    return get


def program(exe: Path, *args, stdin: bytes = b"", stdout=subprocess.PIPE) -> subprocess.CompletedProcess:
    argv = [str(exe)] + [a if isinstance(a, bytes) else str(a) for a in args]  # bytes: not UTF-8 on purpose
    return subprocess.run(argv, input=stdin, stdout=stdout, stderr=subprocess.PIPE,
                          env=SAN_ENV, timeout=300)


def clean(res: subprocess.CompletedProcess, code: int = 0) -> str:
    """Exit `code`, and not one sanitizer report (each would end the program: -fno-sanitize-recover=all)."""
    err = res.stderr.decode(errors="replace")
    assert "Sanitizer" not in err and "runtime error" not in err, err[-3000:]
    assert res.returncode == code, (res.returncode, err[-3000:])
    return err


def repeated(tok, unit: str, most: int) -> str:
    """`unit` repeated as often as its tokens stay within `most`."""
    lo, hi = 0, 1
    while len(tok.encode(unit * hi)) <= most:
        lo, hi = hi, hi * 2
    while hi - lo > 1:
        mid = (lo + hi) // 2
        lo, hi = (mid, hi) if len(tok.encode(unit * mid)) <= most else (lo, mid)
    return unit * lo


def device_ids(res: subprocess.CompletedProcess) -> tuple[list[int], list[int]]:
    """The prompt's ids as the program encoded them, and the new ids (--print-ids)."""
    out = res.stdout.decode()
    prompt = next(ln.split()[1:] for ln in out.splitlines() if ln.startswith("prompt_ids:"))
    return [int(t) for t in prompt], parse_program_output(out)[0]


@pytest.mark.parametrize("name", list(VARIANTS))
def test_sanitized_program_runs_clean(asan, name, tmp_path):
    c, exe = asan(name)
    ctx, vocab, tok = c.dep.model.dims.context, c.dep.model.dims.vocab, c.tokenizer
    rng = random.Random(ctx)
    texts = {"empty": "", "long": repeated(tok, "Once upon a time, Lily saw a big red ball in the park. ", ctx // 4),
             "non-ascii": NON_ASCII, "invalid utf-8": b"\xff\xfe caf\xc3 \xe2\x9c".decode(errors="surrogateescape")}
    for what, text in texts.items():
        extra = ["--no-prefill"] if what == "non-ascii" else []  # the prompt through forward(), token by token
        res = program(exe, "--prompt", os.fsencode(text), "--tokens", "8", "--no-stop", "--print-ids", *extra)
        clean(res)
        assert device_ids(res)[0] == tok.encode(os.fsencode(text)), what
    # ids from a file, as many as the context holds: the decode runs on to its last position and stops there
    fill = [1] + [rng.randrange(vocab) for _ in range(ctx - 5)]
    res = program(exe, "--ids-file", write_ids(tmp_path, fill), "--tokens", "1000000", "--no-stop", "--print-ids",
                  "--logits", tmp_path / "logits.bin")
    clean(res)
    got, new = device_ids(res)
    assert got == fill and len(new) == ctx - len(fill)
    assert (tmp_path / "logits.bin").stat().st_size == 4 * vocab * (1 + ctx - len(fill))  # the prefill is one row
    full = fill + [rng.randrange(vocab) for _ in range(4)]  # the prompt is the whole context
    res = program(exe, "--ids-file", write_ids(tmp_path, full), "--tokens", "4", "--print-ids")
    clean(res)
    assert device_ids(res) == (full, [])
    assert "the context holds" in clean(program(exe, "--ids-file", write_ids(tmp_path, full + [3])), 1)
    too_long = "x" * (tok.max_prompt_bytes(ctx) + 1)
    assert "can fit the context" in clean(program(exe, "--prompt", too_long), 1)


# ---- hostile arguments (stories260k's program) ----------------------------------------------------------------


@pytest.mark.parametrize("opt, value", [("--tokens", "abc"), ("--tokens", "-1"), ("--tokens", "1e3"),
                                        ("--tokens", "99999999999999999999"), ("--tokens", ""), ("--tokens", " 5"),
                                        ("--cores", "0"), ("--cores", "9"), ("--cores", "2x")])
def test_numbers_are_parsed_strictly(asan, opt, value):
    err = clean(program(asan("stories260k")[1], opt, value), 2)
    assert f"error: {opt} expects a whole number" in err and f"got '{value}'" in err and "usage:" in err, err


def test_failed_writes_are_reported(asan):
    exe = asan("stories260k")[1]
    assert "error: cannot write /dev/full" in clean(program(exe, "--tokens", "4", "--logits", "/dev/full"), 1)
    for extra in ([], ["--print-ids"]):
        with open("/dev/full", "wb") as full:
            err = clean(program(exe, "--tokens", "4", *extra, stdout=full), 1)
        assert "error: cannot write the standard output" in err, extra


def test_ids_from_an_argument_a_file_or_stdin(asan, tmp_path):
    c, exe = asan("stories260k")
    pids = c.tokenizer.encode("Once upon a time")
    want = program(exe, "--ids", ",".join(map(str, pids)), "--tokens", "8", "--print-ids")
    clean(want)
    assert program(exe, "--ids-file", write_ids(tmp_path, pids), "--tokens", "8", "--print-ids").stdout == want.stdout
    lines = "\n".join(map(str, pids)).encode() + b"\n"
    assert program(exe, "--ids-file", "-", "--tokens", "8", "--print-ids", stdin=lines).stdout == want.stdout
    text = program(exe, "--tokens", "8")  # the .dply's prompt, encoded on the device
    clean(text)
    assert text.stdout.decode().startswith("Once upon a time")
    assert "either with --ids or with --ids-file" in clean(program(exe, "--ids", "1", "--ids-file", "-"), 2)


def test_bad_ids_are_errors(asan, tmp_path):
    c, exe = asan("stories260k")
    ctx, vocab = c.dep.model.dims.context, c.dep.model.dims.vocab
    cases = {"out of range": (str(vocab), f"a token id is not in [0, {vocab})"),
             "huge": ("1 " + "9" * 40, f"a token id is not in [0, {vocab})"),
             "negative": ("1 -5", "expected token ids"), "word": ("1 two", "expected token ids"),
             "empty": ("", "holds no token ids"),
             "over the context": (" ".join(["1"] * (ctx + 1)), f"more than {ctx} ids, the context holds {ctx}")}
    for name, (text, message) in cases.items():
        (tmp_path / "ids.txt").write_text(text)
        assert message in clean(program(exe, "--ids-file", tmp_path / "ids.txt"), 1), name
    assert "cannot open" in clean(program(exe, "--ids-file", tmp_path / "nope.txt"), 1)


def test_device_encoder_equals_python_on_long_prompts(asan):
    """tokenizer_encode_fast (each pair's merge kept beside it) gives the Python encoder's ids."""
    c, exe = asan("stories260k")
    tok, ctx = c.tokenizer, c.dep.model.dims.context
    for unit in ("Lily and Tom went to the park. They saw a big dog, ein Hund, qui aboie \u00e0 la lune! ",
                 "\u00e9t\u00e9 \u2713 \U0001F600 ", "ab ", "x", "\n\t  "):
        text = repeated(tok, unit, ctx)
        res = program(exe, "--prompt", text, "--tokens", "0", "--print-ids")
        clean(res)
        assert device_ids(res) == (tok.encode(text), []), unit


def test_over_long_prompts_in_the_same_words_as_deeploy_run(asan):
    c, exe = asan("stories260k")
    tok, ctx = c.tokenizer, c.dep.model.dims.context
    too_many_bytes = "x" * (tok.max_prompt_bytes(ctx) + 1)
    too_many_tokens = "Once upon a time. " * 150
    assert len(too_many_tokens.encode()) <= tok.max_prompt_bytes(ctx) < len(too_many_bytes)
    for text in (too_many_bytes, too_many_tokens):
        said = clean(program(exe, "--prompt", text), 1).strip()
        with pytest.raises(SpecError) as e:
            prompt_ids(tok, text, ctx, c.dep.generate.pos)
        python = e.value.diagnostics[0].message
        assert said == "error: " + python.replace(",", ""), (said, python)  # C prints no thousands separators
