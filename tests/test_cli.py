"""The `deeploy` console script as a user runs it: exit codes, one-line JSON, and errors that point at
the offending text (file:line:col and a caret) without a Python traceback."""
from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from conftest import DPLY, MODEL_DIR, ROOT, deeploy_cmd, invoke

needs_model = pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").exists(),
                                 reason=f"the stories260K model is not at {MODEL_DIR}")


def deeploy(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    return subprocess.run(deeploy_cmd() + [str(a) for a in args], cwd=cwd, capture_output=True, text=True,
                          timeout=120)


def assert_user_error(res: subprocess.CompletedProcess) -> str:
    """Exit 1 with a message on stderr, and no traceback anywhere."""
    assert res.returncode == 1, (res.returncode, res.stdout, res.stderr)
    assert res.stderr.strip(), "an error must say something"
    assert "Traceback" not in res.stderr and "Traceback" not in res.stdout, res.stderr
    return res.stderr


def assert_points_at(stderr: str, where: str, line: int, col: int, message: str, source: str) -> None:
    """`where:line:col: error: message`, then the source line, then a caret under column `col`."""
    lines = stderr.split("\n")
    head = f"{where}:{line}:{col}: error: "
    i = next((i for i, ln in enumerate(lines) if ln.startswith(head)), None)
    assert i is not None, f"no line starting {head!r} in:\n{stderr}"
    assert message in lines[i], (message, lines[i])
    gutter = f" {line} | "
    assert lines[i + 1] == gutter + source, lines[i + 1]
    caret = lines[i + 2]
    assert re.fullmatch(r" +\| +\^", caret), caret
    assert caret.index("^") - len(gutter) == col - 1, (caret, col)


def dply_text() -> str:
    """The shipped deployment, with the model by absolute path so it can live anywhere."""
    return DPLY.read_text().replace('"../../shared/models/stories260K/', f'"{MODEL_DIR}/')


# ---- help -----------------------------------------------------------------------------------------

def test_help_lists_the_commands():
    res = deeploy("--help")
    assert res.returncode == 0, res.stderr
    for cmd in ("build", "check", "run", "import"):
        assert re.search(rf"^\W*{cmd}\b", res.stdout, re.M), (cmd, res.stdout)
    res = invoke("import", "--help")
    assert res.returncode == 0 and "llama2c" in res.stdout


# ---- check ----------------------------------------------------------------------------------------

@needs_model
def test_check_the_shipped_deployment():
    res = deeploy("check", "deployments/stories260k.dply")
    assert res.returncode == 0, res.stderr
    assert res.stdout.strip() == "deployments/stories260k.dply: ok (stories260k, target siracusa, 78 steps)"
    assert "error" not in res.stderr
    assert "\r" not in res.stderr  # no progress line when stderr is a pipe (deeploy_dsl/progress.py)


BAD_FILES = {
    # id: (old text, new text, the offending line after the edit, col, message)
    "syntax": ("lm_head -> cluster", "lm_head -> (", "    lm_head -> (", 16,
               "unexpected '('; expected a name"),
    "unknown target": ("target siracusa", "target stm32", "target stm32", 8, "unknown target 'stm32'"),
    "bad setting": ("sampler greedy", "sampler nucleus", "    sampler nucleus", 13, "unsupported sampler 'nucleus'"),
    "dims disagree": ("model llama {", "model llama {\n    heads 4", "    heads 4", 5,
                      "heads 4 disagrees with num_attention_heads = 8"),
    "unknown block": ("generate {", "generation {", "generation {", 1, "unknown block 'generation'"),
}


@needs_model
@pytest.mark.parametrize("case", BAD_FILES, ids=list(BAD_FILES))
def test_check_a_bad_file(tmp_path, case):
    old, new, source, col, message = BAD_FILES[case]
    text = dply_text()
    assert old in text
    text = text.replace(old, new, 1)
    (tmp_path / "bad.dply").write_text(text)
    line = text.split("\n").index(source) + 1
    # the console script once, to see what a user sees; the other cases in-process
    run = deeploy if case == "syntax" else invoke
    stderr = assert_user_error(run("check", "bad.dply", cwd=tmp_path))
    assert_points_at(stderr, "bad.dply", line, col, message, source)


def test_check_a_missing_file(tmp_path):
    stderr = assert_user_error(deeploy("check", "nope.dply", cwd=tmp_path))
    assert stderr.strip() == "nope.dply: error: no such file"


@needs_model
@pytest.mark.parametrize("define, col, message", [
    ("memory.L1=lots", 14, "'L1' expects a size"),
    ("generate.tokens=many", 20, "'tokens' expects a whole number"),
    ("target=stm32", 11, "unknown target 'stm32'"),
    ("map.lm_head=gpu", 16, "unknown engine 'gpu'"),
])
def test_check_a_bad_define(define, col, message):
    stderr = assert_user_error(invoke("check", "deployments/stories260k.dply", "-D", define))
    assert_points_at(stderr, "<command line>", 1, col, message, f"-D {define}")


def test_check_a_define_without_a_value():
    stderr = assert_user_error(invoke("check", "deployments/stories260k.dply", "-D", "L1"))
    assert "expected KEY=VALUE, got 'L1'" in stderr


@needs_model
def test_check_activations_over_budget():
    stderr = assert_user_error(deeploy("check", "deployments/stories260k.dply", "-D", "memory.L1=1KiB"))
    # the tiler finds first that even the smallest tile cannot fit beside what is live
    assert_points_at(stderr, "<command line>", 1, 11, "no tiling fits L1", "-D memory.L1=1KiB")
    assert re.search(r"smallest working set needs \d+ B", stderr) and "raise L1 (now 1,024 B)" in stderr, stderr


@needs_model
def test_check_weights_with_a_wrong_shape(tmp_path):
    from safetensors.numpy import load_file, save_file
    tensors = load_file(MODEL_DIR / "model.safetensors")
    name = "model.layers.2.mlp.down_proj.weight"
    tensors[name] = np.ascontiguousarray(tensors[name][:, :171])
    model = tmp_path / "model"
    model.mkdir()
    save_file(tensors, model / "model.safetensors")
    shutil.copy(MODEL_DIR / "config.json", model / "config.json")
    text = dply_text().replace(f'"{MODEL_DIR}/model.safetensors"', f'"{model}/model.safetensors"')
    (tmp_path / "w.dply").write_text(text)
    source = next(ln for ln in text.split("\n") if ln.strip().startswith("weights ") and "safetensors" in ln)
    line = text.split("\n").index(source) + 1
    stderr = assert_user_error(invoke("check", "w.dply", cwd=tmp_path))
    assert_points_at(stderr, "w.dply", line, 5, f"tensor {name} has shape [64, 171], expected [64, 172]", source)


# ---- run ------------------------------------------------------------------------------------------

@needs_model
def test_run_golden_prints_one_json_line():
    res = deeploy("run", "deployments/stories260k.dply", "--engine", "golden", "--json", "--tokens", "8")
    assert res.returncode == 0, res.stderr
    lines = res.stdout.strip().split("\n")
    assert len(lines) == 1, res.stdout
    out = json.loads(lines[0])
    assert set(out) == {"prompt_ids", "ids", "text"}
    reference = json.loads((MODEL_DIR / "reference.json").read_text())["cases"]
    prompt_ids = next(c["prompt_ids"] for c in reference if c["prompt"] == "Once upon a time")
    assert out["prompt_ids"] == prompt_ids  # the .dply's prompt, BOS first
    assert len(out["ids"]) == 8 and all(isinstance(i, int) and 2 < i < 512 for i in out["ids"])
    assert isinstance(out["text"], str) and out["text"].strip()


def test_run_with_an_unknown_engine():
    stderr = assert_user_error(invoke("run", "deployments/stories260k.dply", "--engine", "nope"))
    assert "unknown engine 'nope'" in stderr and "golden" in stderr


# ---- import ---------------------------------------------------------------------------------------

@needs_model
def test_import_llama2c(tmp_path):
    from safetensors.numpy import load_file
    out = tmp_path / "x"
    res = deeploy("import", "llama2c", MODEL_DIR / "stories260K.bin", "-o", out)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors"]
    assert str(out / "model.safetensors") in res.stdout
    assert json.loads((out / "config.json").read_text()) == json.loads((MODEL_DIR / "config.json").read_text())
    got, want = load_file(out / "model.safetensors"), load_file(MODEL_DIR / "model.safetensors")
    assert sorted(got) == sorted(want) and all(np.array_equal(got[k], want[k]) for k in want)


@needs_model
def test_import_llama2c_with_its_tokenizer(tmp_path):
    out = tmp_path / "x"
    res = invoke("import", "llama2c", MODEL_DIR / "stories260K.bin", "--tokenizer", MODEL_DIR / "tok512.bin", "-o", out)
    assert res.returncode == 0, res.stderr
    assert sorted(p.name for p in out.iterdir()) == ["config.json", "model.safetensors", "tok512.bin"]
    assert (out / "tok512.bin").read_bytes() == (MODEL_DIR / "tok512.bin").read_bytes()
    stderr = assert_user_error(invoke("import", "llama2c", MODEL_DIR / "stories260K.bin", "--tokenizer",
                                      MODEL_DIR / "config.json", "-o", tmp_path / "y"))
    assert "not a tokenizer" in stderr and not (tmp_path / "y").exists()


@needs_model
def test_import_a_truncated_checkpoint(tmp_path):
    data = (MODEL_DIR / "stories260K.bin").read_bytes()
    bad = tmp_path / "cut.bin"
    bad.write_bytes(data[: len(data) // 2])
    out = tmp_path / "x"
    stderr = assert_user_error(deeploy("import", "llama2c", bad, "-o", out))
    assert "truncated" in stderr and f"needs {len(data)} bytes, found {len(data) // 2}" in stderr
    assert not (out / "model.safetensors").exists()


def test_import_a_missing_checkpoint(tmp_path):
    stderr = assert_user_error(invoke("import", "llama2c", tmp_path / "nope.bin", "-o", tmp_path / "x"))
    assert "nope.bin" in stderr and "not found" in stderr


def test_qemu_engine_names_the_debian_packages_when_tools_are_missing(monkeypatch):
    from deeploy_dsl.engines import qemu
    from deeploy_dsl.errors import ToolError
    monkeypatch.setattr(qemu.shutil, "which", lambda name: None)
    with pytest.raises(ToolError) as e:
        qemu.require_tools()
    text = e.value.render()
    assert text.startswith("<environment>: error: the qemu engine needs riscv64-unknown-elf-gcc")
    assert "hint: on Debian: apt-get install -y gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc" in text


def test_version_agrees_with_the_package():
    import tomllib
    import deeploy_dsl
    want = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["version"]
    res = invoke("--version")
    assert res.returncode == 0 and res.stdout == f"deeploy {want}\n" and deeploy_dsl.__version__ == want


def test_build_quiet_prints_warnings_only(tmp_path):
    res = invoke("build", DPLY, "--quiet", "-o", tmp_path / "q", "-D", "map.default=cluster(cores = 16)")
    assert res.returncode == 0 and res.stdout == "" and (tmp_path / "q" / "model.c").is_file()
    assert "warning: cores = 16" in res.stderr  # warnings still reach the user
    loud = invoke("build", DPLY, "-o", tmp_path / "l")
    assert loud.returncode == 0 and "built" in loud.stdout
