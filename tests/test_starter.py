"""`deeploy new`: a starter project that checks as it is, the example deployment's settings, the demo model beside it."""
from __future__ import annotations

import dataclasses
from pathlib import Path

from conftest import invoke
from deeploy_dsl.demo.starter import project_name
from deeploy_dsl.frontend.interpret import load_deployment

ROOT = Path(__file__).resolve().parents[1]


def test_new_project_checks_and_matches_the_example_deployment(tmp_path):
    r = invoke("new", tmp_path / "my story", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    d = tmp_path / "my story"
    assert sorted(p.name for p in d.iterdir()) == ["model", "my_story.dply"]
    for f in ("model.safetensors", "config.json", "tok512.bin", "README.md"):
        assert (d / "model" / f).read_bytes() == (ROOT / "models/tinystories-demo" / f).read_bytes()
    chk = invoke("check", d / "my_story.dply", cwd=tmp_path)
    assert chk.returncode == 0 and chk.stdout.startswith(f"{d / 'my_story.dply'}: ok (my_story, target siracusa"), chk
    mine, example = load_deployment(d / "my_story.dply"), load_deployment(ROOT / "deployments/tinystories.dply")

    def settings(dep):  # what the deployment asks for, without source positions
        def plain(x):
            if isinstance(x, dict):
                return {k: plain(v) for k, v in x.items() if not k.endswith("pos")}
            return [plain(v) for v in x] if isinstance(x, (list, tuple)) else x
        return plain([dataclasses.asdict(dep.quant), [dataclasses.asdict(h) for h in dep.hints],
                      [dataclasses.asdict(m) for m in dep.memory], dataclasses.asdict(dep.generate)])
    assert settings(mine) == settings(example), "the starter drifted from deployments/tinystories.dply"


def test_new_refuses_a_folder_with_something_in_it(tmp_path):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "notes.txt").write_text("mine")
    r = invoke("new", tmp_path / "full", cwd=tmp_path)
    assert r.returncode == 1 and "not an empty folder; nothing was written" in r.stderr
    assert [p.name for p in (tmp_path / "full").iterdir()] == ["notes.txt"]
    (tmp_path / "file").write_text("x")
    assert invoke("new", tmp_path / "file", cwd=tmp_path).returncode == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "full"]  # no temporary left behind
    (tmp_path / "empty").mkdir()
    assert invoke("new", tmp_path / "empty", cwd=tmp_path).returncode == 0 and (tmp_path / "empty/empty.dply").is_file()


def test_project_names_are_dply_names():
    assert [project_name(Path(n)) for n in ("story", "my story", "2024-demo", "a.b", "-x-")] == \
        ["story", "my_story", "d_2024-demo", "a_b", "x"]
