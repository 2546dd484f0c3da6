"""`deeploy new DIR`: a starter project a pip user can run at once, the way `cargo new` starts one: a commented
deployment and, beside it, the demo story model and its tokenizer, which ship inside the package."""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

from ..backend.builddir import OutputError
from ..errors import Diagnostic, Pos

MODEL_FILES = ("model.safetensors", "config.json", "tok512.bin", "README.md")  # the demo model and its card


def project_name(dest: Path) -> str:
    """The deployment's name: the folder's, made a .dply NAME (letters, digits, _ and inner hyphens)."""
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", dest.resolve().name).strip("-") or "story"
    return name if re.match(r"[A-Za-z_]", name) else f"d_{name}"


def starter_dply(name: str) -> str:
    env = Environment(loader=PackageLoader("deeploy_dsl", "templates"), undefined=StrictUndefined, keep_trailing_newline=True)
    return env.get_template("starter.dply.j2").render(name=name)


def new_project(dest: Path) -> Path:
    """Write DEST/NAME.dply and DEST/model/ into a fresh or empty folder and return the .dply; anything else there is
    refused, and a failure leaves nothing behind (written beside it, then renamed into place)."""
    shown = str(dest)
    if os.path.lexists(dest) and not (dest.is_dir() and not dest.is_symlink() and not any(dest.iterdir())):
        raise OutputError([Diagnostic(Pos(shown), "already exists and is not an empty folder; nothing was written",
                                      hint="deeploy new makes a project in a new or empty folder")])
    name = project_name(dest)
    parent = dest.resolve().parent
    if not parent.is_dir():
        raise OutputError([Diagnostic(Pos(shown), f"{parent} is not a folder; nothing was written")])
    tmp = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", dir=parent))
    try:
        (tmp / f"{name}.dply").write_text(starter_dply(name), encoding="utf-8")
        (tmp / "model").mkdir()
        src = resources.files("deeploy_dsl.demo_model")
        for f in MODEL_FILES:
            with resources.as_file(src.joinpath(f)) as p:
                shutil.copyfile(p, tmp / "model" / f)
        if dest.is_dir():
            dest.rmdir()  # empty: checked above
        os.replace(tmp, dest)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return dest / f"{name}.dply"
