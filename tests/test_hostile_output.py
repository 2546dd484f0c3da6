"""Hostile input at the output end: `-o` never destroys what deeploy did not make, the generated program rejects
malformed arguments and reports failed writes, and `deeploy run` refuses an over-long prompt at once, in the same
words whichever engine would run it."""
from __future__ import annotations

import dataclasses
import json
import os
import stat
import subprocess
import time
from pathlib import Path

import pytest

from conftest import DPLY, MODEL_DIR, deeploy_cmd, needs_cc
from deeploy_dsl.codegen import MARKER, OutputError, check_output, write_build
from deeploy_dsl.runner import parse_program_output

ENGINES = ("float", "golden", "c", "qemu")


def invoke(*args, cwd: Path) -> subprocess.CompletedProcess:
    """`deeploy ARGS` in-process (typer's CliRunner) from `cwd`; a traceback fails the test."""
    from typer.testing import CliRunner
    from deeploy_dsl.cli import app
    here = os.getcwd()
    os.chdir(cwd)
    try:
        res = CliRunner().invoke(app, [str(a) for a in args])
    finally:
        os.chdir(here)
    assert res.exception is None or isinstance(res.exception, SystemExit), res.exception
    return subprocess.CompletedProcess(args, res.exit_code, res.stdout, res.stderr)


def snapshot(root: Path) -> dict:
    """Every entry under root (root too), symlinks not followed: kind, bytes or link target, and mtime."""
    out = {".": ("dir", os.lstat(root).st_mtime_ns)}
    for d, dirs, files in os.walk(root):
        for name in dirs + files:
            p = Path(d) / name
            st = os.lstat(p)
            if stat.S_ISLNK(st.st_mode):
                out[str(p.relative_to(root))] = ("link", os.readlink(p))
            elif stat.S_ISDIR(st.st_mode):
                out[str(p.relative_to(root))] = ("dir", st.st_mtime_ns)
            elif stat.S_ISREG(st.st_mode):
                out[str(p.relative_to(root))] = ("file", p.read_bytes(), st.st_mtime_ns)
            else:  # a FIFO: never opened
                out[str(p.relative_to(root))] = ("other", st.st_mode, st.st_mtime_ns)
    return out


# ---- -o ------------------------------------------------------------------------------------------------------


@pytest.fixture
def tree(tmp_path) -> Path:
    """A user's folder: the deployment in dep/, an essay, a folder of notes, an empty folder, links to the
    current directory, to dep/ and to themselves, a FIFO. Returns the working directory (tmp_path/work)."""
    work = tmp_path / "work"
    (work / "dep").mkdir(parents=True)
    (work / "dep" / "t.dply").write_text(DPLY.read_text().replace('"../../shared/models/stories260K/', f'"{MODEL_DIR}/'))
    (work / "essay.txt").write_text("three months of work\n")
    (work / "notes").mkdir()
    (work / "notes" / "todo.md").write_text("- everything\n")
    (work / "empty").mkdir()
    (work / "here").symlink_to(".")
    (work / "to_dep").symlink_to("dep")
    (work / "loop").symlink_to("loop")
    os.mkfifo(work / "pipe")
    old = time.time() - 3600  # an hour ago: a touched directory would show a new mtime
    for p in [work / "dep" / "t.dply", work / "essay.txt", work / "notes" / "todo.md", work / "notes",
              work / "empty", work / "dep", work]:
        os.utime(p, (old, old))
    return work


REFUSED = {
    # -o: what the message says of it
    ".": "is the current directory",
    "dep": "holds dep/t.dply, which the build reads",
    "to_dep": "holds dep/t.dply, which the build reads",
    "essay.txt": "is a file, not a build directory",
    "notes": f"is a non-empty directory that deeploy did not make (no {MARKER} file in it)",
    "..": "holds the current directory",
    "here": "is the current directory (a link to ",
    "loop": "cannot be resolved",
    "essay.txt/out": "which is a file",
    "pipe": "is not a directory",
}


@pytest.mark.parametrize("out", list(REFUSED), ids=list(REFUSED))
def test_build_refuses_what_it_did_not_make(tree, out):
    before = snapshot(tree.parent)
    res = invoke("build", "dep/t.dply", "-o", out, cwd=tree)
    assert res.returncode == 1, (res.stdout, res.stderr)
    assert res.stderr.startswith(f"{out}: error: "), res.stderr
    assert REFUSED[out] in res.stderr and "nothing was written" in res.stderr, res.stderr
    assert "Traceback" not in res.stderr
    assert snapshot(tree.parent) == before, "a refused build touched the user's files"


def test_write_build_refuses_the_default_output_too(tree):
    """`build/NAME` (no -o) is checked the same way, after compiling; nothing is created beside it either."""
    (tree / "build" / "t").mkdir(parents=True)
    (tree / "build" / "t" / "mine.c").write_text("int main(void) { return 0; }\n")
    before = snapshot(tree.parent)
    with pytest.raises(OutputError) as e:
        write_build({"Makefile": "all:\n"}, tree / "build" / "t")
    assert "non-empty directory that deeploy did not make" in e.value.render()
    assert snapshot(tree.parent) == before


def test_a_path_that_cannot_be_written_is_an_error_not_a_traceback(tree):
    before = snapshot(tree)
    with pytest.raises(OutputError) as e:
        write_build({"Makefile": "all:\n"}, tree / "new" / ("x" * 300))  # longer than a file name may be
    assert "cannot be written (File name too long)" in e.value.render()
    after = snapshot(tree)
    del before["."], after["."]  # its mtime: "new" was made, then removed
    assert after == before, "the parent it created is left behind"


FILES = {"Makefile": "# t: generated by deeploy; builds the host runner\n", "plan.yaml": "steps: []\n",
         "model.c": "/* model */\n"}


def test_replaces_an_empty_directory_and_a_previous_build(tree):
    out = tree / "empty"
    write_build(FILES, out)
    assert sorted(os.listdir(out)) == sorted([*FILES, MARKER])
    marker = (out / MARKER).read_text()
    (out / "t").write_text("the program make built")  # a build's own products go with it
    write_build({**FILES, "plan.yaml": "steps: [1]\n"}, out)
    assert sorted(os.listdir(out)) == sorted([*FILES, MARKER]) and (out / "plan.yaml").read_text() == "steps: [1]\n"
    assert (out / MARKER).read_text() == marker and str(tree) not in marker  # deterministic: no path, no time
    assert sorted(p.name for p in tree.iterdir()) == ["dep", "empty", "essay.txt", "here", "loop", "notes", "pipe", "to_dep"]


LEGACY = {"Makefile": "# t: generated by deeploy; builds the host runner\n", "plan.yaml": "", "model.c": "",
          "gemv.c": "", "weights.c": "", "memory_L1.svg": "", "t": "", "t.elf": "", "logits.bin": ""}


@pytest.mark.parametrize("extra, accepted", [
    ({}, True),  # a build from before the marker, with the program and image its Makefile made
    ({"notes.txt": "mine"}, False),  # something deeploy never writes
    ({"sub/x.c": ""}, False),  # a folder
    ({"Makefile": "# t: my own Makefile\n"}, False),  # not deeploy's
], ids=["legacy", "legacy+notes", "legacy+folder", "foreign_makefile"])
def test_a_build_from_before_the_marker(tree, extra, accepted):
    out = tree / "old"
    for rel, text in {**LEGACY, **extra}.items():
        (out / rel).parent.mkdir(parents=True, exist_ok=True)
        (out / rel).write_text(text)
    if accepted:
        assert check_output(out) == out
        write_build(FILES, out)
        assert (out / MARKER).is_file() and not (out / "t.elf").exists()
    else:
        before = snapshot(tree)
        with pytest.raises(OutputError):
            write_build(FILES, out)
        assert snapshot(tree) == before


def test_a_previous_build_holding_the_model_is_not_replaced(compiled, tmp_path):
    """`deeploy build` protects the files the deployment reads (cli._inputs), not only the .dply."""
    from deeploy_dsl.cli import _inputs
    inputs = _inputs(compiled.dep)
    assert {compiled.dep.source, compiled.dep.model.weights, compiled.dep.model.tokenizer} <= set(inputs)
    out = tmp_path / "out"
    write_build(FILES, out)
    (out / "model.safetensors").write_bytes(b"weights someone keeps here")
    dep = dataclasses.replace(compiled.dep, model=dataclasses.replace(compiled.dep.model,
                                                                      weights=out / "model.safetensors"))
    with pytest.raises(OutputError) as e:
        write_build(FILES, out, _inputs(dep))
    assert f"holds {out / 'model.safetensors'}, which the build reads" in e.value.render()
    assert (out / "model.safetensors").read_bytes() == b"weights someone keeps here"


# ---- the generated program (its arguments under the sanitizers: test_sanitize.py) ----------------------------


def program(exe: Path, *args) -> subprocess.CompletedProcess:
    return subprocess.run([str(exe), *map(str, args)], capture_output=True, timeout=60)


def _longest_prompt_that_fits(tok, ctx: int) -> str:
    words = "Lily and Tom went to the park. They saw a big dog, ein Hund, qui aboie \u00e0 la lune! ".split(" ")
    text = ""
    for i in range(10_000):
        longer = text + words[i % len(words)] + " "
        if len(tok.encode(longer)) > ctx:
            return text
        text = longer
    raise AssertionError("no prompt reached the context")


def test_a_deployment_without_a_tokenizer_builds_a_program_of_ids(compiled, tmp_path):
    """No `tokenizer` line: the build still makes a working program (warning-free), which takes and prints ids."""
    needs_cc()
    from deeploy_dsl.codegen import render
    from deeploy_dsl.runner import run_golden_compiled
    files = render(dataclasses.replace(compiled, tokenizer=None))
    assert "main.c" in files and not {"tokenizer.c", "tokenizer.h", "tokenizer_data.c"} & set(files)
    out = tmp_path / "notok"
    write_build(files, out)
    res = subprocess.run(["make", "-s", "-C", str(out), "CFLAGS=-std=c99 -O0 -Wall -Wextra -Werror"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    bare = out / compiled.dep.name
    pids = compiled.tokenizer.encode("Once upon a time")
    res = program(bare, "--ids", " ".join(map(str, pids)), "--tokens", "8", "--no-stop")
    assert res.returncode == 0, res
    assert parse_program_output(res.stdout.decode())[0] == run_golden_compiled(compiled, pids, 8, False, True)[0]
    res = program(bare)
    assert res.returncode == 2 and b"has no tokenizer: give the prompt as token ids" in res.stderr, res


# ---- deeploy run --------------------------------------------------------------------------------------------


def test_run_rejects_a_huge_prompt_at_once_in_every_engine(compiled):
    """100,000 characters took 83 s of tokenizing, then `Argument list too long`."""
    most = compiled.tokenizer.max_prompt_bytes(512)
    said = {}
    for engine in ENGINES:
        t0 = time.perf_counter()
        res = invoke("run", DPLY, "--engine", engine, "--prompt", "x" * 100_000, cwd=DPLY.parent)
        assert time.perf_counter() - t0 < 5, f"--engine {engine} took {time.perf_counter() - t0:.1f} s to refuse"
        assert res.returncode == 1, (engine, res.stdout, res.stderr)
        said[engine] = res.stderr
    assert len(set(said.values())) == 1, said
    assert said["c"].startswith(f"<command line>: error: the prompt is 100,000 bytes; no more than {most:,} can "
                                "fit the context of 512 tokens"), said["c"]


def test_run_rejects_too_many_tokens_in_every_engine(model_dir):
    said = {e: invoke("run", DPLY, "--engine", e, "--prompt", "Once upon a time. " * 120, cwd=DPLY.parent).stderr
            for e in ENGINES}
    assert len(set(said.values())) == 1, said
    assert said["golden"].startswith("<command line>: error: the prompt is ") and \
        said["golden"].rstrip().endswith("tokens (with BOS); the context holds 512"), said["golden"]


def test_run_rejects_bytes_that_are_not_utf8(model_dir):
    res = subprocess.run(deeploy_cmd() + ["run", str(DPLY), "--engine", "golden", "--prompt", b"hi \xed\xa0\x80"],
                         capture_output=True, timeout=120)
    err = res.stderr.decode()
    assert res.returncode == 1 and "Traceback" not in err, err
    assert err.startswith("<command line>: error: the prompt is not valid text: character 4 is a lone surrogate"), err


def test_run_clamps_tokens_to_the_context_with_a_warning(compiled):
    """More new tokens than the context leaves: a warning, and the run goes on to the context's end (the engines
    all get the clamped count; the program's own stop at the end: test_sanitize.py)."""
    tok, ctx = compiled.tokenizer, compiled.dep.model.dims.context
    text = _longest_prompt_that_fits(tok, ctx - 4)
    n = len(tok.encode(text))
    res = invoke("run", DPLY, "--engine", "float", "--prompt", text, "--tokens", "1000000", "--no-stop", "--json",
                 cwd=DPLY.parent)
    assert res.returncode == 0, res.stderr
    assert res.stderr == (f"<command line>: warning: 1000000 new tokens asked for, but the context of {ctx} tokens "
                          f"leaves room for {ctx - n} after the {n}-token prompt: generating at most {ctx - n}\n")
    assert len(json.loads(res.stdout)["ids"]) == ctx - n
