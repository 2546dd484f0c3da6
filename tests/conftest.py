"""Shared fixtures: the stories260K model beside the repository, and one compiled deployment per session."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MODEL_DIR = Path(__file__).resolve().parents[2] / "shared/models/stories260K"
DPLY = ROOT / "deployments/stories260k.dply"
# The example's quantization before the accurate default (issue 14): int8 queries, calibrated norm outputs into
# the linear layers, no smoothing, int8 gate/up. Tests of the kernels and placements that setting selects pin it.
INT8_EXAMPLE = ("quantize.queries=int8", "quantize.dynamic=swiglu", "quantize.smooth=none", "quantize.gate_up=int8")


def deeploy_cmd() -> list[str]:
    """The `deeploy` console script of this interpreter (not whatever a shim on PATH resolves to)."""
    beside = Path(sys.executable).parent / "deeploy"
    if beside.exists():
        return [str(beside)]
    found = shutil.which("deeploy")
    if found is None:
        pytest.skip("the deeploy console script is not installed (pip install -e .)")
    return [found]


def invoke(*args, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """`deeploy ARGS` in-process through typer's CliRunner from `cwd`: no interpreter start-up, same output;
    anything but a clean exit (a traceback for a user) fails the test."""
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


def needs_cc() -> None:
    if not (shutil.which("make") and (shutil.which("cc") or shutil.which("gcc"))):
        pytest.skip("needs make and a C compiler")


@pytest.fixture(scope="session")
def model_dir() -> Path:
    if not (MODEL_DIR / "model.safetensors").exists():
        pytest.skip(f"the stories260K model is not at {MODEL_DIR}")
    return MODEL_DIR


@pytest.fixture(scope="session")
def reference(model_dir) -> list[dict]:
    """The four reference cases: prompt, prompt_ids, greedy_ids (prompt + 128 float greedy ids)."""
    return json.loads((model_dir / "reference.json").read_text())["cases"]


@pytest.fixture(scope="session")
def compiled(model_dir):
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(DPLY)


@pytest.fixture(scope="session")
def rendered(compiled) -> dict[str, str]:
    from deeploy_dsl.backend.codegen import render
    return render(compiled)
