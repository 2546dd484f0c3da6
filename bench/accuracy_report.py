"""Held-out accuracy of a deployment under a list of knob settings: what `deeploy eval FILE -D ... --sequences 32
--length 256 --seed 1 --json` prints for each, as one table (and, with --json, one JSON object per line).

    python bench/accuracy_report.py                          # the README's quantize-knob variants of stories260k
    python bench/accuracy_report.py --only smooth            # the variants whose name matches (a regex)
    python bench/accuracy_report.py deployments/tinystories.dply --only example

A variant is -D overrides plus, optionally, lines spliced into the quantize block (per-layer weight formats such as
`lm_head -> int8`, which -D cannot set); such a variant is evaluated from a copy of the file beside it.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from deeploy_dsl.compiler import compile_deployment  # noqa: E402
from deeploy_dsl.engines.evaluate import evaluate, per_layer  # noqa: E402

OLD = ["quantize.keys=int8", "quantize.dynamic=none"]  # the settings before int16 keys and the per-token SwiGLU scale
CAL = "quantize.activations=int8 calibrate(samples, tokens = 4096, stat = {})"
ACCURATE = ["quantize.queries=int12", "quantize.dynamic=final_norm,swiglu_absmax", "quantize.smooth=0.5"]
ACCURATE_NORM = ACCURATE[:1] + ["quantize.dynamic=norm,final_norm,swiglu_absmax"] + ACCURATE[2:]
VARIANTS = [  # (name, -D overrides, extra quantize lines)
    ("example", [], []),
    ("stat max, int8 keys, calibrated swiglu", OLD + [CAL.format("max")], []),
    ("stat percentile(99.99), int8 keys, calibrated swiglu", OLD, []),
    ("stat mse, int8 keys, calibrated swiglu", OLD + [CAL.format("mse")], []),
    ("keys int16, calibrated swiglu", ["quantize.dynamic=none"], []),
    ("int8 gptq", ["quantize.weights=int8 per_channel gptq"], []),
    ("int4 G32", ["quantize.weights=int4 per_group(32)"], []),
    ("int4 G32 gptq", ["quantize.weights=int4 per_group(32) gptq"], []),
    ("int4 G16 gptq", ["quantize.weights=int4 per_group(16) gptq"], []),
    ("int4 G8 gptq", ["quantize.weights=int4 per_group(8) gptq"], []),
    ("int4 G32 gptq, lm_head int8, calibrated swiglu", ["quantize.weights=int4 per_group(32) gptq",
                                                        "quantize.dynamic=none"], ["lm_head -> int8"]),
    ("int8 gptq, mlp int4(32), calibrated swiglu", ["quantize.weights=int8 per_channel gptq", "quantize.dynamic=none"],
     ["layers[*].mlp.* -> int4(32)"]),
    ("int4 G8 gptq, lm_head int8", ["quantize.weights=int4 per_group(8) gptq"], ["lm_head -> int8"]),
    ("smooth 0.5", ["quantize.smooth=0.5"], []),
    ("smooth 0.3", ["quantize.smooth=0.3"], []),
    ("smooth 0.7", ["quantize.smooth=0.7"], []),
    ("accurate: queries int12, final_norm + swiglu_absmax, smooth 0.5", ACCURATE, []),
    # held out, stories260k / tinystories.dply: top-1 0.9756 [0.972, 0.979] / 0.9930 [0.991, 0.995], KL 0.00197 /
    # 0.000137, ppl ratio 1.0010 / 0.9999; + dynamic norm: 0.9783 [0.975, 0.981] / 0.9915 [0.989, 0.994], KL 0.00172 /
    # 0.000130, ppl ratio 1.0008 / 0.9999
    ("accurate + gate_up int16", ACCURATE + ["quantize.gate_up=int16"], []),
    ("accurate + gate_up int16 + dynamic norm", ACCURATE_NORM + ["quantize.gate_up=int16"], []),
]
PER_LAYER = {"int4 G32 per-layer": ["quantize.weights=int4 per_group(32)"]}  # --per-layer variants


def with_lines(dply: Path, lines: list[str]) -> Path:
    """A copy of the file beside it (relative paths keep working) with `lines` at the end of its quantize block."""
    text = dply.read_text()
    at = text.index("quantize {")
    end = text.index("\n}", at)
    fd, name = tempfile.mkstemp(suffix=".dply", prefix=".accuracy-", dir=dply.parent)
    with os.fdopen(fd, "w") as f:
        f.write(text[:end] + "".join(f"\n    {ln}" for ln in lines) + text[end:])
    return Path(name)


def measure(dply: Path, defines: list[str], lines: list[str], layers: bool = False) -> dict:
    path = with_lines(dply, lines) if lines else dply
    try:
        c = compile_deployment(path, defines)
        r = evaluate(c, 32, 256, 1, prompts=())
        if layers:
            r["per_layer"] = per_layer(c, 32, 256, 1)
        return r
    finally:
        if lines:
            path.unlink()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("dply", nargs="?", default=str(ROOT / "deployments/stories260k.dply"))
    ap.add_argument("--only", default="", help="the variants whose name matches this regex")
    ap.add_argument("--skip", default=None, help="not the variants whose name matches this regex")
    ap.add_argument("--per-layer", action="store_true", help="also the --per-layer ranking of int4 G32")
    ap.add_argument("--json", action="store_true", help="one JSON object per variant")
    a = ap.parse_args()
    for name, defines, lines in VARIANTS:
        if not re.search(a.only, name) or (a.skip is not None and re.search(a.skip, name)):
            continue
        r = measure(Path(a.dply), defines, lines)
        ci = r["top1_ci95"]
        print(json.dumps({"variant": name, "defines": defines, "lines": lines, **r}) if a.json else
              f"{name:52s} top-1 {r['top1_agreement']:.4f} [{ci[0]:.3f}, {ci[1]:.3f}]  ppl ratio {r['ppl_ratio']:.4f}"
              f"  KL {r['kl_mean']:.5f}  linear {r['linear_weight_bytes']:,} B  consts {r['const_bytes']:,} B", flush=True)
    if a.per_layer:
        for name, defines in PER_LAYER.items():
            rows = measure(Path(a.dply), defines, [], layers=True)["per_layer"]
            print(json.dumps({"variant": name, "per_layer": rows}) if a.json else
                  f"{name}: " + ", ".join(f"{r['layer']} KL {r['kl_mean']:.4f}" for r in rows), flush=True)


if __name__ == "__main__":
    main()
