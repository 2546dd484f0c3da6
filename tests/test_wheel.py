"""The package as a pip user gets it: the wheel built from this tree, installed into a fresh virtualenv, used from a
folder outside the repository (editable installs and the tests' own imports hide a file missing from the wheel)."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

from conftest import needs_cc

ROOT = Path(__file__).resolve().parents[1]


def run(cmd, cwd: Path, timeout: int = 600) -> str:
    r = subprocess.run([str(c) for c in cmd], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                       env={k: v for k, v in os.environ.items() if k != "PYTHONPATH"})
    assert r.returncode == 0, f"{' '.join(map(str, cmd))} failed ({r.returncode}):\n{r.stdout}\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    """The wheel, built offline from a copy of the tree (the build's own files stay out of the repository)."""
    root = tmp_path_factory.mktemp("wheel")
    src = root / "src"
    shutil.copytree(ROOT, src, ignore=shutil.ignore_patterns(".git", "build", "*.egg-info", "__pycache__", ".pytest_cache",
                                                             ".hypothesis", "out*"))
    run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", root / "dist", src], root)
    (whl,) = (root / "dist").glob("*.whl")
    return whl


@pytest.fixture(scope="module")
def venv(wheel, tmp_path_factory) -> Path:
    """A virtualenv with the wheel installed. Its dependencies come from this interpreter's site-packages through a
    path line (not its .pth files, so an editable install of this tree stays invisible): no network needed."""
    env = tmp_path_factory.mktemp("venv") / "env"
    run([sys.executable, "-m", "venv", "--without-pip", env], env.parent)
    py = env / "bin/python"
    run([sys.executable, "-m", "pip", "--python", py, "install", "--quiet", "--no-deps", wheel], env.parent)
    site = Path(run([py, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], env.parent).strip())
    outer = dict.fromkeys(sysconfig.get_paths()[k] for k in ("purelib", "platlib"))
    (site / "_outer_deps.pth").write_text("".join(f"{p}\n" for p in outer))
    return env


def test_wheel_is_named_for_its_package_and_ships_every_data_file(wheel):
    assert wheel.name.startswith("deeploy_dsl-")  # "deeploy" on PyPI is someone else's project
    names = set(zipfile.ZipFile(wheel).namelist())
    for pkg, folder in (("kernels_c", ROOT / "kernels_c"), ("grammar", ROOT / "grammar"),
                        ("templates", ROOT / "deeploy_dsl/templates"), ("targets", ROOT / "deeploy_dsl/targets"),
                        ("demo_model", ROOT / "models/tinystories-demo")):
        files = {f"deeploy_dsl/{pkg}/{f.name}" for f in folder.iterdir() if f.is_file() and f.suffix != ".pyc"}
        assert files and files <= names, sorted(files - names)


def test_installed_wheel_builds_and_runs_outside_the_repository(venv, tmp_path):
    needs_cc()
    here = tmp_path / "elsewhere"
    here.mkdir()
    where = run([venv / "bin/python", "-c", "import deeploy_dsl; print(deeploy_dsl.__file__)"], here)
    assert where.startswith(str(venv)), where
    deeploy = venv / "bin/deeploy"
    assert "made story/story.dply" in run([deeploy, "new", "story"], here)  # the package alone: deployment and model
    out = run([deeploy, "build", "story/story.dply", "-o", "out"], here)
    assert "built story" in out
    run(["make", "-s", "-C", "out"], here)
    text = run([deeploy, "run", "story/story.dply", "--prompt", "Once upon a time", "--tokens", "24"], here)
    assert text.startswith("Once upon a time") and len(text.split()) > 8, text
    if shutil.which("riscv64-unknown-elf-gcc") and shutil.which("qemu-system-riscv32"):
        rv = run([deeploy, "run", "story/story.dply", "--engine", "qemu", "--prompt", "Once upon a time", "--tokens", "8"], here)
        assert rv.startswith("Once upon a time"), rv
