"""Every quantize knob changes golden and the generated C identically: for each setting (and a few combinations) the
C program's ids and every logit equal golden's, token by token and with prefill. The knobs' own behaviour is tested
beside them (test_keys16, test_int4, test_gptq, test_dynamic, test_eval)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest

from conftest import INT8_EXAMPLE
from deeploy_dsl.compiler import compile_deployment

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
DPLY = ROOT / "deployments/stories260k.dply"
CAL = "quantize.activations=int8 calibrate(samples, tokens = 512, stat = {})"

KNOBS = {
    "stat max": [CAL.format("max")],
    "stat mse": [CAL.format("mse")],
    "stat percentile(99.9)": [CAL.format("percentile(99.9)")],
    "keys int8": ["quantize.keys=int8"],
    "int4 G=64 gptq, dynamic, int8 keys": ["quantize.weights=int4 per_group(64) gptq", "quantize.dynamic=swiglu",
                                           "quantize.keys=int8", CAL.format("mse")],
    "int8 gptq, dynamic, 12 KiB L1": ["quantize.weights=int8 per_channel gptq", "quantize.dynamic=swiglu",
                                      "memory.L1=12KiB"],
}


# the calibration statistics change constants, not kernels: one of them in CI, the others with -m slow
@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in ("stat mse", "stat percentile(99.9)")
                                  else n for n in KNOBS])
def test_knob_keeps_c_equal_to_golden(model_dir, tmp_path, name):
    from test_keys16 import check_host
    check_host(compile_deployment(DPLY, [*INT8_EXAMPLE, *KNOBS[name]]), tmp_path, n_new=12)


def test_calibration_text_file(model_dir, tmp_path):
    from test_keys16 import check_host
    text = tmp_path / "calib.txt"
    text.write_text("Once upon a time, there was a little girl named Lily. She liked to play in the park. " * 20)
    c = compile_deployment(DPLY, [*INT8_EXAMPLE, f'quantize.activations=int8 calibrate("{text}", tokens = 300)'])
    assert c.dep.quant.calibration.source == str(text)
    check_host(c, tmp_path, n_new=12)
