"""The README's commands run as written: every `deeploy` and `python -m deeploy_dsl` line of its shell blocks, from a
copy of the repository's layout (deployments/ beside models/ and ../shared), except the few named in SKIPPED."""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import MODEL_DIR, needs_cc

ROOT = Path(__file__).resolve().parents[1]
SKIPPED = {  # what is not run here, and where it is checked instead
    "pip install": "installs: CI's own set-up (.ci/run) and tests/test_wheel.py",
    "python -m pytest": "the tests themselves",
    "deeploy_dsl.demo.train": "20 minutes of training: tests/test_demo.py trains a few steps",
    "--engine qemu": "QEMU runs: tests/test_rv32.py",
    "deeploy explore": "a sweep of minutes: tests/test_explore.py runs small ones",
}


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    lines = [ln for block in re.findall(r"^```sh\n(.*?)^```", text, re.S | re.M) for ln in block.splitlines()]
    return [re.sub(r"\s+#.*$", "", ln).strip() for ln in lines if ln.strip() and not ln.lstrip().startswith("#")]


def skipped_because(cmd: str) -> str | None:
    return next((why for key, why in SKIPPED.items() if key in cmd), None)


def test_readme_lists_its_commands():
    cmds = readme_commands()
    assert "deeploy run deployments/tinystories.dply --prompt \"Once upon a time\"" in cmds
    run = [c for c in cmds if not skipped_because(c)]
    assert len(run) >= 8 and all(c.startswith(("deeploy ", "python -m deeploy_dsl.")) for c in run), run


@pytest.mark.skipif(not (MODEL_DIR / "model.safetensors").exists(), reason="needs ../shared/models/stories260K")
def test_readme_commands_run_as_written(tmp_path):
    needs_cc()
    repo = tmp_path / "repo"
    shutil.copytree(ROOT / "deployments", repo / "deployments")
    (repo / "models").symlink_to(ROOT / "models")
    (tmp_path / "shared").symlink_to(MODEL_DIR.parents[1])
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    failures = []
    for cmd in readme_commands():
        if skipped_because(cmd):
            continue
        r = subprocess.run(["bash", "-c", cmd.replace("python -m", f"{sys.executable} -m")], cwd=repo, env=env,
                           capture_output=True, text=True, timeout=600)
        ok = r.returncode == 0 or (cmd.startswith("deeploy diff") and r.returncode == 1)  # 1: the plans differ
        if not ok:
            failures.append(f"$ {cmd}\nexit {r.returncode}\n{r.stdout[-2000:]}\n{r.stderr[-2000:]}")
    assert not failures, "\n\n".join(failures)


def test_readme_python_api_runs_as_written(capsys):
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## Python API"):]
    code = re.search(r"^```python\n(.*?)^```", section, re.S | re.M).group(1)
    here = os.getcwd()
    os.chdir(ROOT)
    try:
        exec(compile(code, "README.md (Python API)", "exec"), {})
    finally:
        os.chdir(here)
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith(", there was") and out[0].endswith("(24, 512)"), out  # text, ids, logits [24, vocab]
    assert out[1].split()[:2] == ["embed", "embed_i16"] and out[3].split()[:3] == ["layers.0.attn.q", "gemv_pk_i16", "cluster"]
    assert out[-1].startswith("{'L1': ") and len(out) == 6, out
