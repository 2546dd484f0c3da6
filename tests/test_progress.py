"""The progress line (deeploy_dsl/progress.py): one line on a terminal's stderr, rewritten in place and erased when a
step ends; nothing at all when stderr or stdout is not a terminal, or with --quiet (test_cli checks that a real
subprocess's pipes get none); the long phases report to it."""
from __future__ import annotations

import io
from pathlib import Path

from deeploy_dsl import progress
from deeploy_dsl.compiler import compile_deployment


ROOT = Path(__file__).resolve().parents[1]
DEMO = ROOT / "deployments/tinystories.dply"


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_a_terminal_gets_one_line_rewritten_and_erased():
    err, out = FakeTTY(), FakeTTY()
    with progress.shown(stream=err, stdout=out):
        with progress.task("calibration", 3) as tick:
            for _ in range(3):
                tick()
        with progress.task("compiling the C"):
            pass
    text = err.getvalue()
    assert "\n" not in text and out.getvalue() == ""
    assert text.startswith("\rcalibration [") and "3/3" in text and "\rcompiling the C ... 0 s" in text
    last = text.rsplit("\r", 2)
    assert last[-1] == "" and last[-2].strip() == ""  # the line is blanked and the cursor back at its start
    assert max(len(part) for part in text.split("\r")) <= progress.WIDTH


def test_nothing_when_not_a_terminal_or_quiet():
    for err, out, quiet in ((io.StringIO(), FakeTTY(), False), (FakeTTY(), io.StringIO(), False),
                            (FakeTTY(), FakeTTY(), True)):
        with progress.shown(quiet, stream=err, stdout=out):
            with progress.task("eval", 2) as tick:
                tick()
                tick()
        assert err.getvalue() == out.getvalue() == ""
    with progress.task("no display", 1) as tick:  # outside any display: a no-op
        tick()


def test_calibration_and_gptq_report_their_counts():
    err = FakeTTY()
    with progress.shown(stream=err, stdout=FakeTTY()):
        c = compile_deployment(DEMO, ["quantize.weights=int8 per_channel gptq",
                                      "quantize.activations=int8 calibrate(samples, tokens = 256)"])
    text = err.getvalue()
    n_linear = sum(op.kind == "linear" for op in c.graph.ops) - (c.dep.quant.classifier == "int16")  # int16: nearest
    assert f"calibration [####################] {255}/{255}" in text
    assert f"GPTQ rounding [####################] {n_linear}/{n_linear}" in text

