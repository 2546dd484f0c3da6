"""Issue 5's figures: the build summary of stories260k on siracusa mapped three ways: all on the cluster,
hinted (q, k, v and the MLP's linear layers on the NPU), and `auto` (the compiler chooses per layer).

    python bench/mapping_report.py [deployments/stories260k.dply]

Estimates from the target's cost model (deeploy_dsl/engines/cost.py, figures in targets/siracusa.yaml), not
measurements.
"""
from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.backend.report import report_dict

REPO = Path(__file__).resolve().parents[1]
VARIANTS = {
    "all-cluster": (),
    "hinted": ("layers[*].attn.qkv -> npu", "layers[*].mlp.* -> npu"),
    "all-npu": ("layers[*].* -> npu", "lm_head -> npu"),
    "auto": ("layers[*].* -> auto", "lm_head -> auto"),
}


def with_map(src: Path, lines: tuple[str, ...], out: Path) -> Path:
    """The deployment with `lines` added at the end of its map block (later lines win)."""
    text = src.read_text().replace('"../../shared', f'"{REPO.parent}/shared')
    head, rest = text.split("map {", 1)
    body, tail = rest.split("}", 1)
    out.write_text(head + "map {" + body.rstrip() + "".join(f"\n    {ln}" for ln in lines) + "\n}" + tail)
    return out


def main() -> None:
    src = Path(sys.argv[1]) if len(sys.argv) > 1 else REPO / "deployments/stories260k.dply"
    print(f"{'mapping':<12}{'cycles/token':>14}{'tokens/s':>10}{'uJ/token':>10}{'prefill cycles':>16}  MAC share")
    with tempfile.TemporaryDirectory() as tmp:
        for name, lines in VARIANTS.items():
            c = compile_deployment(with_map(src, lines, Path(tmp) / f"{name}.dply"))
            p = report_dict(c)["performance"]
            d, pre = p["decode"], p["prefill"]
            share = ", ".join(f"{e} {v['mac_share']:.1%} ({v['ops']} ops)" for e, v in sorted(p["engines"].items()))
            print(f"{name:<12}{d['cycles_per_token']:>14,}{d['tokens_per_s']:>10,.0f}{d['uj_per_token']:>10.2f}"
                  f"{pre['cycles']:>16,}  {share}")
            if name == "auto":
                for s in c.plan.steps:
                    if s.op.startswith("layers.0.") and s.spec.prefill == "gemm" or s.op == "lm_head":
                        print(f"    {s.op:<22} {s.engine:<8} {s.reason}")
        print(f"(decode at position {d['position']}, prefill of the deployment's prompt: {pre['tokens']} tokens)")


if __name__ == "__main__":
    main()
