""".dply front end: every bad input is a DeeployError naming file:line:col with a caret, never a traceback.

Most tests write a variant of deployments/stories260k.dply into tmp_path beside a config.json with
stories260K's dims, so they need neither the shared model nor the network.
"""
from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

from deeploy_dsl.errors import DeeployError, Diagnostic, Pos, SpecError, SyntaxErr
from deeploy_dsl.frontend.interpret import load_deployment

REPO = Path(__file__).resolve().parents[1]
EXAMPLE = (REPO / "deployments/stories260k.dply").read_text()
MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
needs_model = pytest.mark.skipif(not (MODEL_DIR / "config.json").exists(),
                                 reason=f"shared model fixture not found at {MODEL_DIR}")

# stories260K's HF config (README of the shared model): dim 64, 5 layers, 8/4 heads, hidden 172
CONFIG = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 512, "hidden_size": 64,
          "intermediate_size": 172, "num_hidden_layers": 5, "num_attention_heads": 8, "num_key_value_heads": 4,
          "max_position_embeddings": 512, "rms_norm_eps": 1e-05, "rope_theta": 10000.0, "hidden_act": "silu",
          "tie_word_embeddings": True}
# the example, with its model files beside it instead of in ../../shared
BASE = EXAMPLE.replace("../../shared/models/stories260K/", "")


@pytest.fixture
def ws(tmp_path):
    """A workspace: config.json beside (absent) weights; `ws.load(text, ...)` writes and loads a .dply."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))

    class Workspace:
        path = tmp_path

        def write(self, text: str, name: str = "t.dply") -> Path:
            p = tmp_path / name
            p.write_text(text)
            return p

        def load(self, text: str, overrides=None, strict=None):
            return load_deployment(self.write(text), overrides, strict)

        def error(self, text: str, overrides=None, strict=None, cls=DeeployError) -> DeeployError:
            with pytest.raises(cls) as info:
                self.load(text, overrides, strict)
            return info.value

    return Workspace()


def edit(old: str, new: str, text: str = BASE) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def only(err: DeeployError, pattern: str) -> Diagnostic:
    """The single diagnostic whose message matches `pattern`."""
    hits = [d for d in err.diagnostics if re.search(pattern, d.message)]
    assert len(hits) == 1, err.render()
    return hits[0]


def caret_col(rendered: str) -> int:
    """1-based column of the caret in a rendered diagnostic (tabs count as one column, like the parser)."""
    src, caret = [ln.split("| ", 1)[1] for ln in rendered.split("\n")[1:3]]
    return len(caret.rstrip("^")) + 1


def assert_points(d: Diagnostic, text: str, line: int, word: str):
    """`d` names `line` and the column where `word` starts in that line, and its rendering shows both."""
    src = text.split("\n")[line - 1]
    col = src.index(word) + 1
    assert (d.pos.line, d.pos.col) == (line, col), (d.pos, d.render())
    out = d.render()
    assert out.startswith(f"{d.pos.file}:{line}:{col}: {d.severity}: ")
    assert out.split("\n")[1].endswith(f"| {src}")
    assert caret_col(out) == col


def line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.split("\n"), 1) if needle in ln)


# ---- the example itself ------------------------------------------------------------------------------

def test_example_loads_with_dims_from_config(ws):
    dep = ws.load(BASE)
    assert dep.name == "stories260k" and dep.target.name == "siracusa" and not dep.warnings
    d = dep.model.dims
    assert (d.dim, d.layers, d.heads, d.kv_heads, d.hidden, d.vocab, d.context, d.tied) == (64, 5, 8, 4, 172, 512, 512, True)
    assert dep.model.weights == ws.path / "model.safetensors"
    assert [(h.pattern.text, h.engine, h.cores) for h in dep.hints] == [("default", "cluster", 8), ("lm_head", "cluster", None)]
    assert [(m.name, m.size_bytes, m.holds) for m in dep.memory] == \
        [("L1", 256 << 10, ("activations",)), ("L2", 2 << 20, ("weights", "kv_cache"))]
    assert (dep.generate.tokens, dep.generate.sampler, dep.generate.prompt) == (128, "greedy", "Once upon a time")
    assert (dep.quant.calibration.source, dep.quant.calibration.tokens) == ("samples", 4096)


@needs_model
def test_shipped_deployment_loads_against_shared_model():
    dep = load_deployment(REPO / "deployments/stories260k.dply")
    assert dep.model.weights == (MODEL_DIR / "model.safetensors").resolve()
    assert dep.model.dims.dim == 64 and dep.model.dims.tied


def test_layout_does_not_matter_tabs_comments_no_final_newline(ws):
    # a comment at the end of every line (after '{', '}', values, strings), tabs, no final newline
    lines = [ln + "  # c" if ln.strip() and "#" not in ln else ln for ln in BASE.replace("    ", "\t").split("\n")]
    text = "# header\n\n\n" + "\n".join(lines).rstrip("\n")
    assert text.endswith("}  # c")
    dep = ws.load(text)
    assert dep.generate.prompt == "Once upon a time" and len(dep.hints) == 2 and dep.memory[1].holds == ("weights", "kv_cache")
    assert ws.load(BASE.replace("\n", "\r\n")).name == "stories260k"
    assert ws.load(BASE.rstrip("\n")).name == "stories260k"


def test_strings_decode_escapes_and_keep_unicode(ws):
    dep = ws.load(edit('"Once upon a time"', r'"Il était \"une\" fois\n\u00e9"'))
    assert dep.generate.prompt == 'Il était "une" fois\né'


# ---- semantic errors: where, what, and what was expected ----------------------------------------------

def test_heads_not_dividing_dim_points_at_heads(ws):
    text = edit("tokenizer", "heads 7\n    tokenizer")
    err = ws.error(text, cls=SpecError)
    assert_points(only(err, r"^heads 7 does not divide dim 64$"), text, line_of(text, "heads 7"), "heads")
    # the same line also disagrees with config.json
    only(err, r"heads 7 disagrees with num_attention_heads = 8 in config\.json")


def test_dims_without_config_must_all_be_given(ws):
    (ws.path / "config.json").unlink()
    err = ws.error(edit("tokenizer", "dim 16\n    layers 2\n    tokenizer"))
    msg = only(err, "model dims missing").message
    assert "heads, kv_heads, hidden, vocab, context, norm_eps, rope_theta, tied" in msg
    assert "dim," not in msg and "layers" not in msg and "no config.json" in msg
    dims = "dim 16\n layers 2\n heads 4\n kv_heads 2\n hidden 24\n vocab 300\n context 32\n" \
           " norm_eps 1e-5\n rope_theta 10000\n tied no\n tokenizer"
    d = ws.load(edit("tokenizer", dims)).model.dims
    assert (d.dim, d.kv_dim, d.head_size, d.norm_eps, d.tied) == (16, 8, 4, 1e-5, False)


def test_dim_disagreeing_with_config(ws):
    text = edit("tokenizer", "dim 32\n    tokenizer")
    d = only(ws.error(text), "disagrees")
    assert d.message == "dim 32 disagrees with hidden_size = 64 in config.json"
    assert_points(d, text, line_of(text, "dim 32"), "dim")
    # agreeing dims are fine, and a shorter context than the model's is a choice, a longer one an error
    assert ws.load(edit("tokenizer", "dim 64\n    context 128\n    tokenizer")).model.dims.context == 128
    only(ws.error(edit("tokenizer", "context 1024\n    tokenizer")), "context 1024 exceeds the model's max_position_embeddings 512")


def test_config_defaults_follow_llama_config(ws):
    cfg = {k: v for k, v in CONFIG.items() if k not in ("tie_word_embeddings", "num_key_value_heads", "rope_theta")}
    cfg["rope_parameters"] = {"rope_type": "default", "rope_theta": 500000.0}
    (ws.path / "config.json").write_text(json.dumps(cfg))
    d = ws.load(BASE).model.dims
    # LlamaConfig: tie_word_embeddings defaults to False, num_key_value_heads to num_attention_heads
    assert (d.tied, d.kv_heads, d.rope_theta) == (False, 8, 500000.0)


@pytest.mark.parametrize("content, message", [
    ("{not json", "cannot read config.json"),
    ("[1, 2]", "is not a JSON object"),
    (json.dumps({**CONFIG, "hidden_size": "64"}), 'hidden_size = "64", expected a whole number'),
    (json.dumps({**CONFIG, "head_dim": 16}), "head_dim 16 is not hidden_size / num_attention_heads"),
])
def test_bad_config_json_points_at_weights_line(ws, content, message):
    (ws.path / "config.json").write_text(content)
    d = only(ws.error(BASE), re.escape(message))
    assert d.pos.line == line_of(BASE, "weights   ")


def test_unknown_target_points_at_the_word(ws):
    text = edit("target siracusa", "target siracusaa")
    d = only(ws.error(text), "unknown target")
    assert d.message == "unknown target 'siracusaa' (known: generic-rv32, host, rvv-cluster, siracusa)"
    assert_points(d, text, 3, "siracusaa")


def test_unknown_setting_lists_valid_ones(ws):
    text = edit("tokens  128", "tokenz 128")
    d = only(ws.error(text), "unknown setting 'tokenz' in generate")
    assert d.hint == "expected one of: tokens, sampler, seed, prompt, prefill"
    assert_points(d, text, line_of(text, "tokenz"), "tokenz")
    assert "hint: expected one of: tokens, sampler, seed, prompt, prefill" in d.render()


def test_duplicate_settings(ws):
    text = edit("tokens  128", "tokens 128\n    tokens 5")
    d = only(ws.error(text), "set twice")
    assert d.message == f"'tokens' is set twice in generate (first at line {line_of(text, 'tokens 128')})"
    assert_points(d, text, line_of(text, "tokens 5"), "tokens")
    text = edit("target siracusa", "target siracusa\ntarget host")
    assert_points(only(ws.error(text), "'target' is set twice"), text, 4, "target")
    text = edit("L2 2 MiB", "L1 2 KiB\n    L2 2 MiB")
    assert_points(only(ws.error(text), "'L1' is set twice"), text, line_of(text, "L1 2 KiB"), "L1")


@pytest.mark.parametrize("remove, message", [
    ("deployment stories260k\n", "missing 'deployment NAME' line"),
    ("target siracusa\n", "missing 'target NAME' line"),
    ('    weights   "model.safetensors"\n', "model block needs 'weights \"PATH\"'"),
])
def test_missing_required_lines(ws, remove, message):
    err = ws.error(edit(remove, ""))
    assert [d.message for d in err.diagnostics] == [message]  # and no cascade of follow-on errors
    assert err.diagnostics[0].pos.line >= 1


def test_missing_model_block_and_empty_file(ws):
    text = BASE[:BASE.index("model llama")] + BASE[BASE.index("quantize {"):]
    assert [d.message for d in ws.error(text).diagnostics] == ["missing 'model llama { ... }' block"]
    msgs = [d.message for d in ws.error("").diagnostics]
    assert msgs == ["missing 'deployment NAME' line", "missing 'target NAME' line", "missing 'model llama { ... }' block"]
    assert ws.error("# only a comment\n\n").diagnostics[0].render().startswith(f"{ws.path / 't.dply'}:1:1: error: ")


def test_memory_errors(ws):
    text = edit("L2 2 MiB", "L3 2 MiB")
    d = only(ws.error(text), "unknown memory level")
    assert d.message == "unknown memory level 'L3' (target siracusa has: L1, L2)"
    assert_points(d, text, line_of(text, "L3"), "L3")

    text = edit("L1 256 KiB", "L1 512 KiB")
    d = only(ws.error(text), "exceeds")
    assert d.message == "L1 512 KiB exceeds what target siracusa has (256 KiB)"
    assert_points(d, text, line_of(text, "L1 512"), "512")

    for size in ("-5 KiB", "0.3 B", "1e999 KiB", "0 B"):
        text = edit("L1 256 KiB", f"L1 {size}")
        assert_points(only(ws.error(text), "not a positive whole number of bytes"), text, line_of(text, "L1 "), size)
    assert ws.load(edit("L1 256 KiB", "L1 0.5 KiB")).memory[0].size_bytes == 512


def test_unknown_unit_is_one_error_at_the_unit(ws):
    text = edit("L1 256 KiB", "L1 256 KB")
    err = ws.error(text)
    assert len(err.diagnostics) == 1, err.render()
    d = err.diagnostics[0]
    assert "unknown size unit 'KB'" in d.message and "KiB" in d.message
    assert_points(d, text, line_of(text, "256 KB"), "KB")


@pytest.mark.parametrize("holds, bad, message", [
    ("holds weights, kvcache", "kvcache", "'kvcache' cannot be placed"),
    ("holds weights, 3", "3", "'3' cannot be placed"),
    ("weights, kv_cache", "weights", "expected 'holds' followed by weights, kv_cache or activations"),
])
def test_bad_holds_items(ws, holds, bad, message):
    text = edit("holds weights, kv_cache", holds)
    d = only(ws.error(text), re.escape(message))
    assert_points(d, text, line_of(text, "L2 2 MiB"), bad)


def test_the_same_thing_in_two_levels(ws):
    text = edit("holds activations", "holds activations, weights")
    only(ws.error(text), "weights is placed in both L1 and L2")


@pytest.mark.parametrize("call, bad", [
    ("calibrate(samples, tokens = -3)", "-3"),
    ("calibrate(samples, tokens = 4.5)", "4.5"),
    ("calibrate(samples, color = red)", "red"),
    ("calibrate(samples, stat = percentile(120))", "percentile"),
    ("calibrate(samples, stat = percentile(p = 99))", "percentile"),
])
def test_bad_calibrate_args(ws, call, bad):
    text = edit("calibrate(samples, tokens = 4096, stat = percentile(99.99))", call)
    d = only(ws.error(text), "unexpected calibrate argument")
    assert "tokens = N" in d.hint
    assert_points(d, text, line_of(text, "calibrate"), bad)


def test_calibrate_variants(ws):
    (ws.path / "text.txt").write_text("Once upon a time.")
    cal = ws.load(edit("calibrate(samples, tokens = 4096, stat = percentile(99.99))",
                       'calibrate("text.txt", tokens = 64, seed = 3, stat = percentile(99.9))')).quant.calibration
    assert (cal.source, cal.tokens, cal.seed, cal.stat, cal.percentile) == \
        (str(ws.path / "text.txt"), 64, 3, "percentile", 99.9)
    assert ws.load(edit("calibrate(samples, tokens = 4096, stat = percentile(99.99))",
                        "calibrate(samples, stat = mse)")).quant.calibration.stat == "mse"
    text = edit("calibrate(samples", 'calibrate("nope.txt"')
    assert_points(only(ws.error(text), "nope.txt does not exist"), text, line_of(text, "calibrate"), '"nope')
    text = edit("calibrate(samples, tokens = 4096, stat = percentile(99.99))", "calibrate(samples, tokens = 1, tokens = 2)")
    assert_points(only(ws.error(text), "tokens is given twice"), text, line_of(text, "calibrate"), "2)")
    text = edit("calibrate(samples, tokens = 4096, stat = percentile(99.99))", "histogram(samples)")
    assert_points(only(ws.error(text), re.escape("expected calibrate(SOURCE, tokens = N)")), text,
                  line_of(text, "histogram"), "histogram")


def test_map_errors(ws):
    text = edit("lm_head -> cluster", "lm_head -> gpu")
    d = only(ws.error(text), "unknown engine 'gpu'")
    assert "cluster" in d.hint and "npu" in d.hint
    assert_points(d, text, line_of(text, "gpu"), "gpu")

    text = edit("lm_head -> cluster", "layers[3..1].mlp -> cluster")
    assert_points(only(ws.error(text), r"empty range layers\[3\.\.1\]"), text, line_of(text, "3..1"), "layers")

    text = edit("lm_head -> cluster", "lm_head cluster")
    assert_points(only(ws.error(text), "expected 'PATTERN -> ENGINE' in map"), text, line_of(text, "lm_head cluster"),
                  "lm_head")

    hints = ws.load(edit("lm_head -> cluster", "layers[0..2].mlp.* -> auto\n    layers[*].attn -> cluster")).hints
    assert [(h.pattern.segments, h.engine) for h in hints[1:]] == \
        [((("layers", (0, 2)), ("mlp", None), ("*", None)), "auto"), ((("layers", (0, 1 << 30)), ("attn", None)), "cluster")]


def test_too_many_cores_warns_unless_strict(ws):
    text = edit("cores = 8", "cores = 9")
    dep = ws.load(text)
    assert [w.severity for w in dep.warnings] == ["warning"] and dep.hints[0].cores == 8
    assert_points(dep.warnings[0], text, line_of(text, "cores = 9"), "9")
    assert "target siracusa has 8 core(s)" in dep.warnings[0].message
    assert "warning: cores = 9" in dep.warnings[0].render()
    # strict from the file or from the caller
    strict_text = edit("target siracusa", "target siracusa\nstrict yes", text)
    d = only(ws.error(strict_text), "cores = 9")
    assert d.severity == "error"
    assert_points(d, strict_text, line_of(strict_text, "cores = 9"), "9")
    only(ws.error(text, strict=True), "cores = 9")


def test_npu_on_a_target_without_one(ws):
    text = edit("target siracusa", "target host", edit("lm_head -> cluster", "lm_head -> npu"))
    text = edit("cores = 8", "cores = 1", text)
    text = edit("L1 256 KiB", "L1 1 MiB", edit("L2 2 MiB", "L2 64 MiB", text))
    d = only(ws.error(text), "no NPU")
    assert d.message == "target host has no NPU"
    assert_points(d, text, line_of(text, "-> npu"), "npu")
    assert ws.load(edit("lm_head -> cluster", "lm_head -> npu")).hints[1].engine == "npu"


def test_independent_errors_are_reported_together(ws):
    text = edit("target siracusa", "target siracusaa", edit("sampler greedy", "sampler topk"))
    text = edit("tokens  128", "tokenz 128", text)
    err = ws.error(text)
    assert [d.pos.line for d in err.diagnostics] == \
        [line_of(text, "siracusaa"), line_of(text, "tokenz"), line_of(text, "topk")]
    rendered = err.render()
    assert rendered.count(": error: ") == 3 and "unknown target 'siracusaa'" in rendered \
        and "unsupported sampler 'topk'" in rendered and "unknown setting 'tokenz'" in rendered
    assert str(err) == rendered


@pytest.mark.parametrize("old, new, message", [
    ("model llama", "model gpt", "unsupported architecture 'gpt'"),
    ("model llama", "model", "the model block needs an architecture"),
    ("generate {", "generat {", "unknown block 'generat'"),
    ("tokenizer", "tied maybe\n    tokenizer", "'tied' expects yes or no, got 'maybe'"),
    ("tokenizer", "dim 64.5\n    tokenizer", "'dim' expects a whole number, got 64.5"),
    ("tokens  128", "tokens 0", "'tokens' must be a positive whole number, got 0"),
    ("int8 per_channel", "int4 per_channel", "int4 weights need a group size: per_group(G)"),
    ("int8 per_channel", "int4 per_group(12)", "unsupported group size 12"),
    ("int8 per_channel", "int2 per_channel", "unsupported weight type 'int2'"),
    ("int8 per_channel", "int8 per_group(32)", "unsupported weight granularity 'per_group' for int8"),
    ("kv_cache    int8", "kv_cache    int4", "unsupported kv_cache 'int4'"),
    ('"Once upon a time"', "once", "'prompt' expects a \"prompt\" in double quotes"),
    ('weights   "model.safetensors"', 'weights   ""', "'weights' needs a file path"),
    ("tokenizer", "heads 0\n    tokenizer", "every dimension must be positive"),
    ("tokenizer", "kv_heads 0\n    tokenizer", "every dimension must be positive"),
])
def test_more_semantic_errors(ws, old, new, message):
    err = ws.error(edit(old, new))
    assert any(message in d.message for d in err.diagnostics), err.render()
    assert all(d.pos.line >= 1 and d.pos.source_line() for d in err.diagnostics), err.render()


# ---- syntax errors -------------------------------------------------------------------------------------

def test_missing_closing_brace(ws):
    cut = BASE.index("}\n", BASE.index("residual"))
    text = BASE[:cut] + BASE[cut + 2:]  # quantize { ... without its }
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert_points(d, text, line_of(text, "map {"), "{")
    assert d.message.startswith("unexpected '{'; expected ")
    assert f"opened at line {line_of(text, 'quantize {')} missing" in d.hint
    # at the end of the file
    text = BASE.rstrip("\n}\n") + "\n"
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert "unexpected end of file; expected" in d.message and "'}'" in d.message
    assert f"opened at line {line_of(text, 'generate {')} is never closed" in d.hint


@pytest.mark.parametrize("old, new, word, expected", [
    ("tokens  128", "tokens = 128", "=", "a number"),  # a stray '='
    ("target siracusa", "target = siracusa", "=", "a name"),
    ("prompt  \"Once upon a time\"", "prompt  \"Once upon a time\" }", "}", "end of line"),
    ("cores = 8)", "cores = 8", "\n", "')'"),  # missing ')': the caret sits at the end of the line
    ("default ->", "default =>", "=", "'->'"),
    ("lm_head -> cluster", "lm_head -> ", "\n", "a name"),
    ("deployment stories260k", "deployment stories260k @", "@", "end of line"),
])
def test_unexpected_tokens(ws, old, new, word, expected):
    text = edit(old, new)
    err = ws.error(text, cls=SyntaxErr)
    assert len(err.diagnostics) == 1
    d = err.diagnostics[0]
    assert "unexpected" in d.message and expected in d.message.split("expected", 1)[1], d.message
    line = line_of(text, new.strip())
    src = text.split("\n")[line - 1]
    col = len(src) + 1 if word == "\n" else src.index(word) + 1
    assert (d.pos.line, d.pos.col) == (line, col), d.render()
    assert caret_col(d.render()) == col


def test_stray_equals_has_a_hint(ws):
    d = ws.error(edit("tokens  128", "tokens = 128"), cls=SyntaxErr).diagnostics[0]
    assert "without '='" in d.hint and "hint: settings are written" in d.render()


def test_unterminated_string(ws):
    text = edit('"Once upon a time"', '"Once upon a time')
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert d.message.startswith("unterminated string")
    assert_points(d, text, line_of(text, "prompt"), '"')


def test_bad_escape_in_string(ws):
    text = edit('"Once upon a time"', r'"Once \x41"')
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert d.message == r"unknown escape '\x' in string"
    assert_points(d, text, line_of(text, "prompt"), "\\")


def test_carets_line_up_under_tabs_and_form_feeds(ws):
    text = BASE.replace("\n    ", "\n\t")
    text = edit("target siracusa", "target\t\fsiracusa", edit("L1 256 KiB", "\tL1\t256\tKB", text))
    text = edit("sampler greedy", "sampler\ftopk", text)
    err = ws.error(text)
    unit = only(err, "unknown size unit")
    assert_points(unit, text, line_of(text, "KB"), "KB")
    # the caret line reproduces the tabs, so a terminal lines it up under the KB
    src_line, caret_line = unit.render().splitlines()[1:3]
    assert caret_line.split("| ", 1)[1] == "\t\t  \t   \t^"
    # a form feed is a blank for the grammar, and no line break for the line numbers
    assert_points(only(err, "unsupported sampler"), text, line_of(text, "topk"), "topk")


# ---- -D overrides --------------------------------------------------------------------------------------

def test_overrides_replace_and_add_settings(ws):
    dep = ws.load(BASE, ["target=host", "memory.L1=16KiB", "model.dim=64", "generate.tokens=5",
                         "map.lm_head=cluster(cores = 1)", 'generate.prompt="Hi there"'])
    assert dep.target.name == "host" and dep.model.dims.dim == 64
    assert (dep.memory[0].name, dep.memory[0].size_bytes) == ("L1", 16 << 10)
    assert (dep.generate.tokens, dep.generate.prompt) == (5, "Hi there")
    assert [(h.pattern.text, h.cores) for h in dep.hints][-1] == ("lm_head", 1)
    # the file's `cores = 8` is more than host has: a warning that points into the file
    assert [w.pos.line for w in dep.warnings] == [line_of(BASE, "cores = 8")]
    # a later override wins; overrides may create a block the file does not have
    no_gen = BASE[:BASE.index("generate {")]
    dep = ws.load(no_gen, ["generate.tokens=5", "generate.tokens=7", "map.layers[0..2].mlp.*=auto"])
    assert dep.generate.tokens == 7 and dep.hints[-1].engine == "auto"
    assert ws.load(BASE, ["map.lm_head=npu"]).hints[-1].engine == "npu"


@pytest.mark.parametrize("ov, word, message", [
    ("target=siracusaa", "siracusaa", "unknown target 'siracusaa' (known: generic-rv32, host, rvv-cluster, siracusa)"),
    ("model.dim=32", "dim", "dim 32 disagrees with hidden_size = 64 in config.json"),
    ("memory.L1=16 KB", "KB", "unknown size unit 'KB'"),
    ("memory.L1=1 GiB", "1 GiB", "L1 1 GiB exceeds what target siracusa has (256 KiB)"),
    ("map.lm_head=gpu", "gpu", "unknown engine 'gpu'"),
    ("map.lm_head=cluster(cores = 0)", "0", "cores = 0 must be at least 1"),
    ("generate.tokens=many", "many", "'tokens' expects a whole number of tokens"),
    ("generate.tokenz=3", "tokenz", "unknown setting 'tokenz' in generate"),
    ("generate.tokens=)", ")", "unexpected ')'"),
    ('generate.prompt="abc', '"', "unterminated string"),
    ("map.lm_head=cluster(", "\n", "unexpected end of line"),
    ("foo.bar=3", "foo", "unknown block 'foo'"),
])
def test_override_errors_point_into_the_d_text(ws, ov, word, message):
    err = ws.error(BASE, [ov])
    d = only(err, re.escape(message))
    shown = f"-D {ov}"
    col = len(shown) if word == "\n" else shown.index(word) + 1
    assert (str(d.pos), d.pos.source_line()) == (f"<command line>:1:{col}", shown), d.render()
    assert d.render().splitlines()[1] == f" 1 | {shown}"
    assert caret_col(d.render()) == col


@pytest.mark.parametrize("ov, message", [
    ("foo", "expected KEY=VALUE, got 'foo'"),
    ("=3", "bad override key ''"),
    ("a.b.c=3", "bad override key 'a.b.c'"),
    ("9lives=3", "bad override key '9lives'"),
    ("map.=cluster", "expected map.PATTERN=ENGINE"),
    ("target=host\ndeployment x", "cannot contain a line break"),
])
def test_malformed_overrides_are_errors(ws, ov, message):
    d = ws.error(BASE, [ov], cls=SpecError).diagnostics[0]
    assert message in d.message and d.pos.file == "<command line>" and "-D target=host" in d.hint


# ---- no input makes load_deployment throw anything but a DeeployError ----------------------------------

FUZZ_ALPHABET = '{}()[]=.,*"# \nabcdeKiBMlmnorstuwxyz0123456789-_>'
_edits = st.lists(st.tuples(st.sampled_from("dir"), st.floats(0, 1, exclude_max=True), st.sampled_from(FUZZ_ALPHABET)),
                  min_size=1, max_size=6)


@pytest.fixture(scope="module")
def fuzz_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("fuzz")
    (d / "config.json").write_text(json.dumps(CONFIG))
    (d / "text.txt").write_text("calibration text")
    return d


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(edits=_edits)
def test_mutated_example_never_crashes(fuzz_dir, edits):
    text = list(BASE)
    for op, where, ch in edits:
        i = int(where * (len(text) + (op == "i")))
        if op == "d" and text:
            del text[min(i, len(text) - 1)]
        elif op == "i":
            text.insert(i, ch)
        elif text:
            text[min(i, len(text) - 1)] = ch
    path = fuzz_dir / "t.dply"
    path.write_text("".join(text))
    try:
        load_deployment(path)
    except DeeployError as e:
        for d in e.diagnostics:  # every diagnostic renders and names a place
            assert d.render().startswith(str(d.pos))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ov=st.text(alphabet=FUZZ_ALPHABET + "\\", max_size=30))
def test_any_override_text_is_handled(fuzz_dir, ov):
    path = fuzz_dir / "o.dply"
    path.write_text(BASE)
    try:
        load_deployment(path, [ov])
    except DeeployError as e:
        assert e.render()


# ---- rendering ----------------------------------------------------------------------------------------

def test_render_with_hint_and_caret():
    text = "a\nmemory {\n    L1 256 KB\n}\n"
    d = Diagnostic(Pos("x.dply", 3, 12, text), "unknown size unit 'KB'", hint="units: B, KiB")
    assert d.render() == ("x.dply:3:12: error: unknown size unit 'KB'\n"
                          " 3 |     L1 256 KB\n"
                          "   |            ^\n"
                          "    hint: units: B, KiB")


def test_render_keeps_tabs_and_widens_for_long_line_numbers():
    text = "\n" * 11 + "\tL1\t256 KB\n"
    d = Diagnostic(Pos("x.dply", 12, 9, text), "bad", severity="warning")
    assert d.render() == "x.dply:12:9: warning: bad\n 12 | \tL1\t256 KB\n    | \t  \t    ^"


def test_render_without_source_or_position():
    assert Diagnostic(Pos("x.dply"), "no such file").render() == "x.dply: error: no such file"
    assert Diagnostic(Pos("x.dply", 7, 1, "one line"), "past the end").render() == "x.dply:7:1: error: past the end"
    crlf = Diagnostic(Pos("x.dply", 2, 1, "a\r\nb\r\n"), "m").render()
    assert crlf.splitlines()[1] == " 2 | b"


def test_several_diagnostics_render_in_order():
    a = Diagnostic(Pos("f", 1, 2, "ab\ncd"), "first")
    b = Diagnostic(Pos("f", 2, 1, "ab\ncd"), "second", hint="do this")
    err = SpecError([a, b])
    assert err.render() == a.render() + "\n" + b.render() == str(err)
    assert err.render().splitlines() == ["f:1:2: error: first", " 1 | ab", "   |  ^",
                                         "f:2:1: error: second", " 2 | cd", "   | ^", "    hint: do this"]


def test_missing_and_unreadable_files(tmp_path):
    with pytest.raises(SpecError, match="no such file"):
        load_deployment(tmp_path / "nope.dply")
    (tmp_path / "bin.dply").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(SpecError, match="cannot read"):
        load_deployment(tmp_path / "bin.dply")


def test_int4_needs_even_input_channels(ws):
    (ws.path / "config.json").write_text(json.dumps({**CONFIG, "intermediate_size": 173}))
    text = edit("int8 per_channel", "int4 per_group(32)")
    d = only(ws.error(text), "int4 weights need an even number of input channels")
    assert_points(d, text, line_of(text, "int4 per_group"), "int4")
    assert "hidden is 173" in d.message
    assert ws.load(edit("int8 per_channel", "int8 per_channel gptq")).quant.rounding == "gptq"
