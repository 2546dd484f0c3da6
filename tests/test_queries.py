"""The `queries int8 | int12 | int16` knob (quantize block): the q projection writes wider queries (int16 storage),
RoPE on q saturates them to their width (rope_q12: +-2047) and attention's scores read them (attn_scores_q12,
_q12k16, _q16: q . k / 2^score_shift). The generated C computes golden's integers (ids and every logit) on the host
token by token and with prefill, for each width with int8 and int16 keys, with K streamed through a small L1, with
the NPU mapping, and on RV32 under QEMU on 1 and 8 harts; a head size whose q . k sums would overflow int32 is an
error at the `queries` line."""
from __future__ import annotations

import pytest

from deeploy_dsl.compiler import compile_deployment
from deeploy_dsl.engines.qemu import missing_tools
from deeploy_dsl.errors import SpecError
from deeploy_dsl.kernels import twins as K
from conftest import INT8_EXAMPLE
from test_keys16 import DPLY, check_host, check_qemu

Q12 = "quantize.queries=int12"
KEYS8, KEYS16 = "quantize.keys=int8", "quantize.keys=int16"
# (queries, keys) -> the attention kernel and the scores kernel its tiled step calls
KERNELS = {("int12", "int8"): ("attention_q12", "attn_scores_q12"),
           ("int12", "int16"): ("attention_q12k16", "attn_scores_q12k16"),
           ("int16", "int8"): ("attention_q16", "attn_scores_q16")}


@pytest.fixture(scope="module")
def q12k16(model_dir):
    return compile_deployment(DPLY, [*INT8_EXAMPLE, Q12, KEYS16])  # the knob alone


def test_q12_types_kernels_and_scales(q12k16):
    c, base = q12k16, compile_deployment(DPLY, [*INT8_EXAMPLE, KEYS16])  # int8 queries, int16 keys
    assert base.dep.quant.keys == "int16"
    assert c.dep.quant.queries == "int12" and base.dep.quant.queries == "int8"
    steps = {s.op: s for s in c.plan.steps}
    assert c.plan.values["layers.0.attn.q"].dtype == "int12" and c.plan.values["layers.0.attn.q"].nbytes == 2 * 64
    # the packed GEMV's rule and kernel: siracusa's weights stream from L2, the weight stream hides the doubled bytes
    assert steps["layers.0.attn.q"].kernel == "gemv_pk_i16" and steps["layers.0.attn.q"].rule == "linear_pk_q12_cluster"
    assert steps["layers.0.attn.rope_q"].kernel == "rope_q12" and steps["layers.0.attn.rope_k"].kernel == "rope_i16"
    att = steps["layers.0.attn.attention"]
    assert att.kernel == "attention_q12k16" and att.spec.functions == ("attn_scores_q12k16", "attn_exp_av_i8")
    # q's scale is for 12 bits (+-2047): ~16 times finer than int8's
    ratio = base.quant.scales["layers.0.attn.q"] / c.quant.scales["layers.0.attn.q"]
    assert ratio == pytest.approx(2047 / 127)
    # a score unit is 2^12 q . k units instead of 2^8, q's unit 127/2047 of int8's: the score multiplier follows
    for i in range(c.dep.model.dims.layers):
        a, b = (x.quant.params[f"layers.{i}.attn.attention"] for x in (c, base))
        assert a["score_shift"] == b["score_shift"] and a["out_mult"] == b["out_mult"]
        assert a["score_mult"] == pytest.approx(b["score_mult"] * 16 * 127 / 2047, rel=1e-6)
    # nothing else changes: the other steps call the same kernels with the same constants
    other = [s.op for s in c.plan.steps if not s.op.endswith(("attn.q", "attn.rope_q", "attn.attention"))]
    base_steps = {s.op: s for s in base.plan.steps}
    assert all(steps[o].kernel == base_steps[o].kernel for o in other)


@pytest.mark.parametrize("queries,keys", [("int12", "int16"), pytest.param("int12", "int8", marks=pytest.mark.slow),
                                         pytest.param("int16", "int8", marks=pytest.mark.slow)])
def test_c_matches_golden(queries, keys, q12k16, tmp_path):
    """C token by token == C with prefill == golden, ids and every logit, for each width with int8 and int16 keys."""
    c = q12k16 if (queries, keys) == ("int12", "int16") else \
        compile_deployment(DPLY, [f"quantize.queries={queries}", f"quantize.keys={keys}"])
    kernel, scores = KERNELS[queries, keys]
    assert {s.kernel for s in c.plan.steps if s.op.endswith("attn.attention")} == {kernel}
    check_host(c, tmp_path, n_new=16)
    assert f"{scores}(" in (tmp_path / "build" / "model.c").read_text()


@pytest.mark.slow
def test_q12_streams_k_tiles_through_a_small_l1(tmp_path, model_dir):
    c = compile_deployment(DPLY, [Q12, KEYS16, "memory.L1=16KiB"])
    att = next(s for s in c.plan.steps if s.kernel == "attention_q12k16")
    t = att.staging.tiling
    assert t.kind == "positions" and "k" in t.buffers and t.tile < c.dep.model.dims.context
    check_host(c, tmp_path, n_new=24)


@pytest.mark.slow
def test_q12_with_the_npu_mapping(tmp_path, model_dir):
    """The q projection as an NPU job with int16 output (the NPU takes 8, 16 or 32 bits), attention on the cluster."""
    from test_npu_mapping import HINTS, variant
    c = compile_deployment(variant(tmp_path, "hinted", *HINTS), [Q12])
    steps = {s.op: s for s in c.plan.steps}
    assert steps["layers.0.attn.q"].kernel == "npu_linear_i16" and steps["layers.0.attn.q"].rule == "linear_q12_npu"
    assert steps["layers.0.attn.attention"].engine == "cluster"
    check_host(c, tmp_path, n_new=16)


@pytest.mark.slow
def test_q12_with_int4_weights(tmp_path, model_dir):
    c = compile_deployment(DPLY, [Q12, "quantize.weights=int4 per_group(32)"])
    steps = {s.op: s for s in c.plan.steps}
    assert steps["layers.0.attn.q"].kernel == "gemv_q4_i16" and steps["layers.0.attn.q"].rule == "linear_q4_q12_cluster"
    check_host(c, tmp_path, n_new=8)


def test_queries_setting_is_validated(model_dir):
    with pytest.raises(SpecError, match="unsupported queries 'int32'"):
        compile_deployment(DPLY, ["quantize.queries=int32"])


def test_int16_queries_with_int16_keys_is_an_error_at_the_line(model_dir):
    with pytest.raises(SpecError) as e:
        compile_deployment(DPLY, ["quantize.queries=int16", KEYS16])
    d = e.value.diagnostics[0]
    assert d.pos.line == 1 and "queries int16 with keys int16" in d.message and "8,589,967,360" in d.message
    assert "queries int12" in d.hint


def tiny_llama(tmp_path, head_size: int, quantize: str):
    """A random two-layer Llama of this head size (two heads) with a quantize block; its .dply."""
    from test_sanitize import synthetic_llama
    dply = synthetic_llama(tmp_path / "model", context=64, dim=2 * head_size, heads=2)
    dply.write_text(dply.read_text().replace("map {", f"quantize {{\n{quantize}}}\nmap {{", 1))
    return dply


@pytest.mark.slow
def test_head_size_32_with_int12_queries_and_int16_keys(tmp_path, model_dir):
    """The largest head size the int32 bound admits for int12 queries with int16 keys, end to end (the score kernel's
    loop for head sizes other than 8)."""
    c = compile_deployment(tiny_llama(tmp_path, 32, "    keys    int16\n    queries int12\n"))
    assert c.dep.model.dims.head_size == 32
    assert {s.kernel for s in c.plan.steps if s.op.endswith("attention")} == {"attention_q12k16"}
    check_host(c, tmp_path, n_new=8)


def test_head_size_64_is_an_error_at_the_queries_line(tmp_path, model_dir):
    dply = tiny_llama(tmp_path, 64, "    keys    int16\n    queries int12\n")
    with pytest.raises(SpecError) as e:
        compile_deployment(dply)
    (d,) = e.value.diagnostics
    line = next(i for i, ln in enumerate(dply.read_text().splitlines(), 1) if ln.strip().startswith("queries"))
    assert (d.pos.line, d.pos.col) == (line, 5) and "head size 64" in d.message and "up to 32" in d.message
    assert compile_deployment(dply, [KEYS8]).dep.quant.queries == "int12"  # with int8 keys it fits (up to 8,196)


def test_head_size_bound_is_the_int32_sum():
    """qk_head_size_max is the largest head size with hs * max|q| * max|k| + 2^(shift-1) <= 2^31 - 1: the next one
    overflows. int12 queries with int16 keys admit 32 because RoPE keeps them within +-2047."""
    for qb in (8, 12, 16):
        for kb in (8, 16):
            top, half = K.qk_head_size_max(qb, kb), (1 << K.score_shift(qb, kb)) >> 1
            assert top * K.QK_MAX[qb] * K.QK_MAX[kb] + half <= 2**31 - 1
            assert (top + 1) * K.QK_MAX[qb] * K.QK_MAX[kb] + half > 2**31 - 1
    assert K.qk_head_size_max(12, 16) == 32 and K.qk_head_size_max(8, 16) == 511 and K.qk_head_size_max(16, 16) == 1
    assert 32 * 2048 * 32768 > 2**31 - 1  # with -2048 (a plain 12-bit range) 32 would not fit


@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("cores", [pytest.param(1, marks=pytest.mark.slow), 8])
def test_q12_qemu_is_bit_exact(q12k16, tmp_path, cores):
    check_qemu(q12k16, tmp_path, cores=cores)


@pytest.mark.slow
@pytest.mark.skipif(bool(missing_tools()), reason=f"needs {missing_tools()}")
@pytest.mark.parametrize("queries", ["int12", "int16"])
def test_queries_with_int8_keys_qemu_is_bit_exact(queries, tmp_path, model_dir):
    c = compile_deployment(DPLY, [f"quantize.queries={queries}", KEYS8])
    for cores in (1, 8):
        check_qemu(c, tmp_path / str(cores), cores=cores)
