"""Hostile `.dply` input (issue 12): bounded, position-carrying errors for anything a file or `-D` can say, every
numeric setting range-checked before anything is allocated, and `check` rejecting what `build` would.

Targeted tests for each bug the fuzz campaign found, then a few hundred seeded fuzz inputs (tests/dply_fuzz.py)
through what `deeploy check` does; bench/fuzz_dply.py runs the full campaign.
"""
from __future__ import annotations

import json
import os
import re
import time
from pathlib import Path

import pytest

from deeploy_dsl.errors import MAX_ERRORS, DeeployError, Diagnostic, Pos, SpecError, SyntaxErr
from deeploy_dsl.frontend.interpret import CALIB_MAX_BYTES, load_deployment
from deeploy_dsl.frontend.parse import MAX_FILE_BYTES, MAX_LINE_CHARS, MAX_NESTING, MAX_NUMBER_CHARS
from dply_fuzz import Checker, cases, is_positioned
from test_dsl import BASE, CONFIG, edit, line_of, only

REPO = Path(__file__).resolve().parents[1]
DEMO = REPO / "models/tinystories-demo"


@pytest.fixture
def ws(tmp_path):
    """config.json beside (absent) weights, as in test_dsl; `ws.error(text, defines)` is the DeeployError."""
    (tmp_path / "config.json").write_text(json.dumps(CONFIG))

    class Workspace:
        path = tmp_path

        def write(self, data: str | bytes, name: str = "t.dply") -> Path:
            p = tmp_path / name
            p.write_bytes(data if isinstance(data, bytes) else data.encode("utf-8", "surrogatepass"))
            return p

        def load(self, data, defines=None):
            return load_deployment(self.write(data), defines)

        def error(self, data, defines=None, cls=DeeployError) -> DeeployError:
            with pytest.raises(cls) as info:
                self.load(data, defines)
            return info.value

    return Workspace()


def at(d: Diagnostic, line: int, col: int) -> None:
    assert (d.pos.line, d.pos.col) == (line, col), d.render()
    assert d.render().startswith(f"{d.pos.file}:{line}:{col}: error: ")


def col_of(text: str, line: int, word: str) -> int:
    return text.split("\n")[line - 1].index(word) + 1


def paren_col(src: str, n: int) -> int:
    """1-based column of the n-th '(' of a line."""
    return [i for i, c in enumerate(src) if c == "("][n - 1] + 1


# ---- limits: numbers, nesting, lines, files, errors -----------------------------------------------------

@pytest.mark.parametrize("digits", [MAX_NUMBER_CHARS + 1, 4_301])
def test_long_numbers_are_errors_at_the_number(ws, digits):
    text = edit("tokens  128", "tokens  " + "9" * digits)
    err = ws.error(text, cls=SyntaxErr)
    line = line_of(text, "tokens  9")
    # beyond the line limit the line's length is the message, else the number's
    at(err.diagnostics[0], line, col_of(text, line, "9") if digits <= MAX_LINE_CHARS - 12 else MAX_LINE_CHARS + 1)
    # a layer index in a mapping too
    text = edit("lm_head -> cluster", "layers[" + "1" * 50 + "].mlp.* -> cluster")
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert d.message.startswith(f"number of 50 characters; at most {MAX_NUMBER_CHARS} are read")
    line = line_of(text, "layers[1")
    at(d, line, col_of(text, line, "1"))


@pytest.mark.parametrize("depth", [MAX_NESTING + 1, 600, 1_300])
def test_deep_nesting_is_an_error_at_the_first_paren_too_deep(ws, depth):
    text = edit("cores = 8", "cores = " + "f(" * depth + "1" + ")" * depth)
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    line = line_of(text, "cores = f(")
    at(d, line, paren_col(text.split("\n")[line - 1], MAX_NESTING + 1))
    assert f"more than {MAX_NESTING} deep" in d.message
    # parentheses in strings and comments do not nest anything
    text = edit('"Once upon a time"', '"' + "(" * 30 + '"  # ' + "(" * 30)
    assert ws.load(text).generate.prompt == "(" * 30


def test_long_lines_are_errors_and_long_lines_show_a_window(ws):
    text = edit("tokens  128", "tokens  128  #" + "c" * MAX_LINE_CHARS)
    line = line_of(text, "tokens  128")
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    at(d, line, MAX_LINE_CHARS + 1)
    shown, caret = d.render().split("\n")[1:3]
    assert len(shown) < 200 and shown.startswith(f" {line} | ...") and caret.endswith("^")
    ok = edit("tokens  128", "tokens  128  #" + "c" * (MAX_LINE_CHARS - 14 - 4))
    assert ws.load(ok).generate.tokens == 128


@pytest.mark.parametrize("extra", [0, 1, 1 << 20])
def test_files_over_the_size_limit_are_errors(ws, extra):
    pad = "# padding\n" * ((MAX_FILE_BYTES - len(BASE)) // 10)
    text = BASE + pad + "\n" * (MAX_FILE_BYTES - len(BASE) - len(pad) + extra)
    assert len(text) == MAX_FILE_BYTES + extra
    if not extra:
        assert ws.load(text).name == "stories260k"
        return
    d = ws.error(text, cls=SyntaxErr).diagnostics[0]
    assert "file is larger than 64 KiB" in d.message and d.pos.line == text[:MAX_FILE_BYTES].count("\n") + 1


def test_many_errors_stop_at_twenty_and_say_how_many_more(ws):
    text = edit("gate_up     int16", "gate_up     int8", edit("dynamic     final_norm, swiglu_absmax", "dynamic" + " zz" * 1300))
    err = ws.error(text)
    assert len(err.diagnostics) == MAX_ERRORS and err.omitted == 1300 - MAX_ERRORS
    assert err.render().endswith(f"\nand {1300 - MAX_ERRORS} more errors")
    assert all(d.pos.line == line_of(text, "dynamic") for d in err.diagnostics)


def test_error_reporting_is_linear(ws):
    # 20,000 bad values in a 60 KB file took 64 s and 7.1 GB: each error rendered a copy of the whole text
    text = BASE + "z\n" * 20_000
    assert 40_000 < len(text.encode()) < MAX_FILE_BYTES
    t0 = time.perf_counter()
    err = ws.error(text)
    assert time.perf_counter() - t0 < 15 and err.omitted == 20_000 - MAX_ERRORS  # 64 s before, on one line
    assert len(err.render()) < 20_000


def test_invalid_utf8_is_reported_at_its_line_and_column(ws):
    data = BASE.encode().replace("Once upon".encode(), b"On\xc3ce upon")
    d = ws.error(data, cls=SpecError).diagnostics[0]
    line = line_of(BASE, "Once upon")
    at(d, line, col_of(BASE, line, "Once") + 2)
    assert d.message == "cannot read: byte 0xc3 is not valid UTF-8"
    # columns count characters: a two-byte character before it is one column
    data = BASE.encode().replace(b'"Once upon', '"é '.encode() + b"\xff" + b"Once upon", 1)
    at(ws.error(data).diagnostics[0], line, col_of(BASE, line, '"Once') + 3)
    assert ws.load(b"\xef\xbb\xbf" + BASE.encode()).name == "stories260k"  # a byte-order mark is fine


@pytest.mark.parametrize("kind", ["fifo", "directory", "device"])
def test_only_regular_files_are_read(tmp_path, kind):
    path = tmp_path / "t.dply"
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "directory":
        path.mkdir()
    else:
        path = Path("/dev/zero")
    t0 = time.perf_counter()
    with pytest.raises(SpecError, match="cannot read: is a .*, not a regular file"):
        load_deployment(path)
    assert time.perf_counter() - t0 < 2


# ---- numeric settings: ranges before anything is allocated -------------------------------------------

CALIB = "calibrate(samples, tokens = 4096, stat = percentile(99.99))"


@pytest.mark.parametrize("tokens", ["9223372036854775808", "10000000"])
def test_calibration_tokens_are_bounded_by_memory(ws, tokens):
    text = edit(CALIB, f"calibrate(samples, tokens = {tokens}, stat = percentile(99.99))")
    d = only(ws.error(text), "calibrate tokens")
    line = line_of(text, "calibrate(")
    at(d, line, col_of(text, line, tokens))
    m = re.search(r"the limit is 2\.0 GiB: at most ([\d,]+) tokens", d.message)
    assert m, d.message
    most = int(m.group(1).replace(",", ""))
    assert 4096 < most < 100_000  # a few times the default, for stories260K's dims
    ok = ws.load(edit(CALIB, f"calibrate(samples, tokens = {most}, stat = percentile(99.99))"))
    assert ok.quant.calibration.tokens == most
    only(ws.error(edit(CALIB, f"calibrate(samples, tokens = {most + 1}, stat = percentile(99.99))")), "at most")
    # the cheaper statistic holds no activations: many more tokens fit, but not 2^63
    assert ws.load(edit(CALIB, f"calibrate(samples, tokens = {most * 4}, stat = max)")).quant.calibration.tokens
    only(ws.error(edit(CALIB, "calibrate(samples, tokens = 9223372036854775808, stat = max)")), "at most")
    assert CALIB_MAX_BYTES == 2 << 30


@pytest.mark.parametrize("new, word, message", [
    ("calibrate(samples, seed = -1)", "-1", "seed = -1 must be a whole number from 0 to 2^64 - 1"),
    ("calibrate(samples, seed = 18446744073709551616)", "18446744073709551616", "seed = 18446744073709551616"),
    ("calibrate(samples, stat = percentile(0))", "percentile", "unexpected calibrate argument 'percentile'"),
    ("calibrate(samples, stat = percentile(1e999))", "percentile", "unexpected calibrate argument 'percentile'"),
    ("calibrate(samples, tokens = 0)", "0", "unexpected calibrate argument '0'"),
])
def test_calibrate_ranges(ws, new, word, message):
    text = edit(CALIB, new)
    d = only(ws.error(text), re.escape(message))
    line = line_of(text, "calibrate(")
    at(d, line, col_of(text, line, word))


def test_generate_tokens_fit_a_c_int(ws):
    text = edit("tokens  128", "tokens  99999999999999999999")
    d = only(ws.error(text), "more than the generated program can count")
    line = line_of(text, "tokens  9")
    at(d, line, col_of(text, line, "9"))
    assert ws.load(edit("tokens  128", "tokens  2147483647")).generate.tokens == 2147483647
    only(ws.error(edit("tokens  128", "tokens  2147483648")), "2,147,483,648 is more than")


def test_calibration_text_that_is_not_a_file(ws):
    os.mkfifo(ws.path / "fifo.txt")
    (ws.path / "loop").symlink_to(ws.path / "loop")
    for src, message in (("fifo.txt", "is not a regular file"), ("x" * 300, "does not exist"),
                         ("a\\u0000b", "does not exist"), ("loop", "does not exist"), ("nope.txt", "does not exist")):
        text = edit(CALIB, f'calibrate("{src}", tokens = 64)')
        d = only(ws.error(text), "calibration text")
        assert message in d.message and d.pos.line == line_of(text, "calibrate(")


def test_calibration_text_larger_than_any_calibration_reads(ws):
    from deeploy_dsl.quant.quantize import CALIB_TEXT_MAX_BYTES
    with open(ws.path / "huge.txt", "wb") as f:  # sparse: no disk for the bytes
        f.truncate(CALIB_TEXT_MAX_BYTES + 1)
    text = edit(CALIB, 'calibrate("huge.txt", tokens = 64)')
    d = only(ws.error(text), "calibration text")
    assert f"calibration texts are at most {CALIB_TEXT_MAX_BYTES:,}" in d.message
    assert d.pos.line == line_of(text, "calibrate(")


@pytest.mark.parametrize("define, word, message", [
    ("generate.tokens=99999999999999999999", "9", "more than the generated program can count"),
    ("quantize.activations=int8 calibrate(samples, tokens = 10000000)", "10000000", "calibrate tokens = 10,000,000"),
    ("generate.prefill=4096", "prefill", "'prefill' must be a whole number of tokens from 1 to 512"),
    ("memory.L1=99999999999999999999 GiB", "99999999999999999999", "exceeds what target siracusa has"),
    ("map.default=cluster(cores = 2, cores = 4)", "4", "cluster cores is given twice"),
    ("generate.tokens=" + "9" * 50, "9", "number of 50 characters"),
    ('generate.prompt="a\udcffb"', "\udcff", "invalid UTF-8 in string"),
    ("target=" + "f(" * 20 + ")" * 20, "f(", "parentheses nested more than 8 deep"),
])
def test_defines_get_the_same_checks_at_the_command_line(ws, define, word, message):
    d = only(ws.error(BASE, [define]), re.escape(message))
    shown = f"-D {define}"
    col = paren_col(shown, MAX_NESTING + 1) if word == "f(" else shown.index(word) + 1
    assert (d.pos.file, d.pos.line, d.pos.col) == ("<command line>", 1, col), d.render()


# ---- words the grammar lets through ----------------------------------------------------------------------

@pytest.mark.parametrize("old, new, word, message", [
    ("target siracusa", "target siracusa\nstrict maybe", "maybe", "unsupported strict 'maybe'"),
    ("memory {", "memory m {", "m {", "block 'memory' takes no name: unexpected 'm'"),
    ("generate {", "generate fast {", "fast", "block 'generate' takes no name"),
    ("percentile(99.99))", "percentile(99.99)) junk", "junk", "unexpected 'junk' after calibrate(...)"),
    ("int8 per_channel", "int8 per_channel junk", "junk", "unexpected 'junk' after per_channel"),
    ("int8 per_channel", "int8 per_channel nearest gptq", "nearest", "unexpected 'nearest' after per_channel"),
    ("int8 per_channel", '"int8" per_channel', '"int8"', "unsupported weight type 'int8'"),
    ("activations int8", "activations int8(2)", "int8(2)", "unsupported activation type"),
    ("L2 2 MiB   holds weights, kv_cache", "L2 2 MiB   holds", "holds", "'holds' names nothing"),
    ("deployment stories260k", "deployment clean", "clean", "would name the program like the Makefile's target 'clean'"),
    ("deployment stories260k", "deployment DEEPLOY_BUILD", "DEEPLOY", "like the build's marker file 'DEEPLOY_BUILD'"),
    ("deployment stories260k", "deployment " + "n" * 65, "nnn", "deployment name of 65 characters; at most 64"),
])
def test_unknown_words_are_rejected(ws, old, new, word, message):
    text = edit(old, new)
    d = only(ws.error(text), re.escape(message))
    line = line_of(text, new.split("\n")[-1])
    at(d, line, col_of(text, line, word))


def test_strict_from_the_command_line_still_checks_the_file(ws):
    only(ws.error(edit("target siracusa", "target siracusa\nstrict maybe")), "unsupported strict")
    assert load_deployment(ws.write(edit("target siracusa", "target siracusa\nstrict no")), strict=True).strict


# ---- strings: every character must be encodable ------------------------------------------------------------

@pytest.mark.parametrize("escape", [r"\ud800", r"\udfff", r"\uDC00\uD800", r"\ud83d x"])
def test_lone_surrogates_are_errors_at_the_escape(ws, escape):
    text = edit('"Once upon a time"', f'"Once {escape} time"')
    d = only(ws.error(text, cls=SyntaxErr), "half of a UTF-16 surrogate pair")
    line = line_of(text, "Once ")
    at(d, line, col_of(text, line, "\\u"))


def test_surrogate_pairs_are_one_character_and_nul_is_refused(ws):
    assert ws.load(edit('"Once upon a time"', r'"a \uD83D\uDE00 b"')).generate.prompt == "a \U0001F600 b"
    text = edit('"Once upon a time"', r'"a\u0000b"')
    d = only(ws.error(text), "cannot contain a NUL")
    line = line_of(text, "a\\u0000")
    at(d, line, col_of(text, line, '"a'))


# ---- check rejects what build would: the prompt against the tokenizer and the context ------------------------

def demo_dply(tmp_path: Path, prompt: str) -> Path:
    text = (REPO / "deployments/tinystories.dply").read_text().replace('"../models/tinystories-demo/', f'"{DEMO}/')
    p = tmp_path / "demo.dply"
    p.write_text(edit('"Once upon a time"', json.dumps(prompt), text))
    return p


def test_check_rejects_prompts_the_program_would(tmp_path):
    from deeploy_dsl.compiler import compile_deployment
    path = demo_dply(tmp_path, "x y " * 300)
    t0 = time.perf_counter()
    with pytest.raises(SpecError) as info:
        compile_deployment(path)  # what check and build run: it stops before calibrating
    assert time.perf_counter() - t0 < 3
    d = info.value.diagnostics[0]
    assert d.message == "the prompt is 902 tokens (with BOS); the context holds 512", d.message
    line = line_of(path.read_text(), "prompt ")
    at(d, line, col_of(path.read_text(), line, '"'))


def test_prompts_too_long_for_any_tokenization_are_not_tokenized(tmp_path):
    from dataclasses import replace
    from deeploy_dsl.compiler import check_prompt, load_tokenizer
    dep = load_deployment(demo_dply(tmp_path, "hi"))
    tok = load_tokenizer(dep)
    long = replace(dep, generate=replace(dep.generate, prompt="x" * (tok.max_prompt_bytes(512) + 1)))
    with pytest.raises(SpecError, match=r"the prompt is 4,599 bytes; no more than 4,598 can fit the context of 512"):
        check_prompt(long, tok)


def test_a_prompt_that_fits_is_checked_without_error(tmp_path):
    from deeploy_dsl.compiler import check_prompt, load_tokenizer
    dep = load_deployment(demo_dply(tmp_path, "Once upon a time, 漢字 and \U0001F600"))
    ids = check_prompt(dep, load_tokenizer(dep))
    assert ids[0] == 1 and len(ids) > 10


# ---- the fuzzer ------------------------------------------------------------------------------------------

FUZZ_N = 300


def test_fuzz_cases_are_seeded():
    assert list(cases(3, 40)) == list(cases(3, 40)) != list(cases(4, 40))
    kinds = {c.kind.split("+")[0] for c in cases(0, 400)}
    assert {"grammar", "deployment_sentence", "defines", "invalid_utf8", "deep_nesting", "many_errors"} <= kinds


def test_fuzzed_inputs_give_positioned_errors_and_no_traceback(tmp_path):
    """Every rejection carries file:line:col (or <command line>) and nothing else escapes. Inputs that pass
    validation stop there (bench/fuzz_dply.py compiles them)."""
    checker = Checker(tmp_path, compile_valid=False)
    seen: dict[str, int] = {}
    for i, case in enumerate(cases(12, FUZZ_N)):
        o = checker.run(case)
        seen[o.status] = seen.get(o.status, 0) + 1
        assert o.status in ("positioned", "accepted"), f"input {i} ({case.kind}, {case.defines}):\n{o.message}"
    assert seen["positioned"] > FUZZ_N // 2 and seen.get("accepted", 0) > 5, seen


def test_positions_are_judged_strictly():
    assert is_positioned(Pos("t.dply", 3, 1)) and is_positioned(Pos("<command line>"))
    assert not is_positioned(Pos("t.dply")) and not is_positioned(Pos("t.dply", 3, 0))
