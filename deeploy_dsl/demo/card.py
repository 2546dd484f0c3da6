"""The demo model's card (its README.md), written by the training run from what the run recorded, so that the card
and `train.json` cannot disagree (tests/test_demo.py renders it from the shipped files)."""
from __future__ import annotations

import math
from pathlib import Path

from jinja2 import Environment, PackageLoader, StrictUndefined

CARD_FILES = ("model.safetensors", "tok512.bin")  # whose sizes the card states


def _e(x: float) -> str:
    """4e-3 rather than 0.004: how learning rates are written."""
    m, k = f"{x:e}".split("e")
    return f"{float(m):g}e{int(k)}"


def model_card(run: dict, sizes: dict[str, int]) -> str:
    env = Environment(loader=PackageLoader("deeploy_dsl", "templates"), undefined=StrictUndefined,
                      keep_trailing_newline=True)
    return env.get_template("model_card.md.j2").render(run=run, s=run["shape"], g=run["settings"], sizes=sizes,
                                                       e_val=math.exp(run["val_loss"]), n="{:,}".format, e=_e)


def write_card(out: Path, run: dict) -> None:
    (out / "README.md").write_text(model_card(run, {f: (out / f).stat().st_size for f in CARD_FILES}))
