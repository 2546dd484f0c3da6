"""`deeploy eval`: how closely the integer model (golden, which is the generated C bit for bit) follows
the float model it was quantized from, on sequences the calibration never read (heldout.py: the float model's
samples in an eval stream of their own, or a text file).

Both models read the N sequences of L tokens teacher-forced, and at every position but the last:
  * top-1 agreement: the share of positions where both models' most likely next token is the same;
  * perplexity of each on the next tokens (the integer logits times their scale), and their ratio;
  * mean KL(float || int8) of the next-token distributions;
with bootstrap 95% intervals for top-1 and KL (bootstrap_ci: sequences resampled, not positions), and for a few
fixed prompts, the first generated position where greedy decoding diverges (None: never, within `GREEDY_TOKENS`).
`--per-layer` quantizes one layer (or the classifier) at a time, the rest float, and
ranks them by the damage they do (a float simulation: that layer's weights in the deployment's format, int8 per
channel or int4 per group with nearest rounding, its activations rounded to their calibrated int8 scales; the integer norms, softmax and tables are not
simulated, so the figures rank layers rather than reproduce the integer model).
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from .. import progress
from ..compiler import Compiled
from ..kernels.twins import QK_BITS
from ..quant.quantize import weights_q4
from .golden import Golden
from .heldout import EvalSet, check_held_out, from_text, sampled
from .runner import run_golden_compiled

PROMPTS = ("", "Once upon a time", "Lily and Tom went to the park.", 'The big dog was happy. He said, "Hello!"')
GREEDY_TOKENS = 64


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = np.asarray(x, np.float64)
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def per_position(float_logits: np.ndarray, int_logits: np.ndarray, targets: np.ndarray) -> dict[str, np.ndarray]:
    """Per position: top-1 agreement (0/1), each model's NLL of the target, and KL(float || int)."""
    lf, li = _log_softmax(float_logits), _log_softmax(int_logits)
    t = np.asarray(targets)[..., None]
    return {"top1": (np.argmax(float_logits, -1) == np.argmax(int_logits, -1)).astype(np.float64),
            "nll_f": -np.take_along_axis(lf, t, axis=-1)[..., 0], "nll_i": -np.take_along_axis(li, t, axis=-1)[..., 0],
            "kl": (np.exp(lf) * (lf - li)).sum(axis=-1)}


def compare(float_logits: np.ndarray, int_logits: np.ndarray, targets: np.ndarray) -> dict:
    """The metrics over positions: logits [..., vocab] (real-valued, both), targets [...] (the next tokens)."""
    return summary(per_position(float_logits, int_logits, targets))


def summary(p: dict[str, np.ndarray]) -> dict:
    """per_position's figures as means (and the perplexities)."""
    nll_f, nll_i = p["nll_f"].mean(), p["nll_i"].mean()
    return {"top1_agreement": float(p["top1"].mean()),
            "ppl_float": float(np.exp(nll_f)), "ppl_int": float(np.exp(nll_i)),
            "ppl_ratio": float(np.exp(nll_i - nll_f)), "kl_mean": float(p["kl"].mean())}


BOOTSTRAP_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


def bootstrap_ci(per_seq: np.ndarray, resamples: int = BOOTSTRAP_RESAMPLES) -> list[float] | None:
    """The 95% percentile-bootstrap interval of a mean over positions, from per_seq [sequences, positions]:
    whole sequences are resampled with replacement (positions of one sequence are not independent: one wrong token
    changes the context of all that follow), with a fixed seed, so the interval is deterministic. None for one
    sequence (nothing to resample)."""
    n = per_seq.shape[0]
    if n < 2:
        return None
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    sums = per_seq.sum(axis=1)
    means = sums[rng.integers(0, n, (resamples, n))].sum(axis=1) / per_seq.size
    lo, hi = np.percentile(means, [2.5, 97.5])
    return [float(lo), float(hi)]


def greedy_divergence(c: Compiled, prompt: str, n: int = GREEDY_TOKENS) -> int | None:
    """First position of the continuation where float and integer greedy decoding pick different tokens."""
    ids = c.tokenizer.encode(prompt)
    f_ids, _ = c.fm.generate(ids, n)
    g_ids, _ = run_golden_compiled(c, ids, n, stop=False)
    return next((i for i, (a, b) in enumerate(zip(f_ids, g_ids)) if a != b), None)


def weight_bytes(c: Compiled) -> dict:
    """What the quantized model's constants take: the linear layers' weights, and everything (weights, multipliers,
    shifts, norm gains, tables) the generated C holds as constants."""
    lin = {c.quant.params[s.op]["weight"] for s in c.plan.steps if s.op in c.quant.params and "weight" in c.quant.params[s.op]}
    return {"linear_weight_bytes": int(sum(c.quant.consts[w].nbytes for w in sorted(lin))),
            "const_bytes": int(sum(v.nbytes for v in c.plan.consts.values()))}


def _int_logits(c: Compiled, seq: np.ndarray) -> np.ndarray:
    g = Golden(c.plan, c.alloc)
    scale = c.quant.scales["lm_head"]
    return np.stack([g.forward(int(tok), pos) for pos, tok in enumerate(seq[:-1])]).astype(np.float64) * scale


def eval_set(c: Compiled, sequences: int = 16, length: int = 256, seed: int = 0, text: Path | None = None) -> EvalSet:
    """The held-out sequences (heldout.py), checked against the calibration's."""
    ev = from_text(c, text, sequences, length) if text is not None else sampled(c, sequences, length, seed)
    return replace(ev, overlap=check_held_out(c, ev))


def evaluate(c: Compiled, sequences: int = 16, length: int = 256, seed: int = 0,
             prompts: tuple[str, ...] = PROMPTS, text: Path | None = None, ev: EvalSet | None = None) -> dict:
    ev = ev or eval_set(c, sequences, length, seed, text)
    seqs = ev.ids
    fl = c.fm.forward(seqs[:, :-1], 0, c.fm.new_cache(len(seqs)))
    with progress.task("eval: the integer model", len(seqs)) as tick:
        il = []
        for s in seqs:
            il.append(_int_logits(c, s))
            tick()
    il = np.stack(il)
    pp = per_position(fl, il, seqs[:, 1:])
    out = summary(pp)
    out.update(top1_ci95=bootstrap_ci(pp["top1"]), kl_ci95=bootstrap_ci(pp["kl"]))
    out["greedy_divergence"] = {p: greedy_divergence(c, p) for p in prompts} if c.tokenizer else {}
    out.update(sequences=int(seqs.shape[0]), length=int(seqs.shape[1]), seed=ev.source.get("seed"),
               positions=int(seqs[:, 1:].size), source=ev.source, calibration_overlap=ev.overlap)
    out.update(weight_bytes(c))
    return out


def _fake_quant(x: np.ndarray, scale: float, bits: int = 8) -> np.ndarray:
    top = (1 << (bits - 1)) - 1
    return (np.clip(np.round(x / scale), -top - 1, top) * scale).astype(np.float32)


def _int8_rows(w: np.ndarray) -> np.ndarray:
    """Per-output-channel symmetric int8, dequantized (the integer model's weights, as floats)."""
    s = np.abs(w).max(axis=1, keepdims=True) / 127.0
    s[s == 0] = 1.0
    return (np.clip(np.round(w / s), -127, 127) * s).astype(np.float32)


def _int4_groups(w: np.ndarray, group: int) -> np.ndarray:
    """int4 with a scale per group (quantize.weights_q4, nearest rounding), dequantized."""
    q, e, s = weights_q4(w, group)
    return (q * np.repeat(e.astype(np.float64), group, axis=1)[:, : q.shape[1]] * s[:, None]).astype(np.float32)


LINEAR = {"wq": "attn.q", "wk": "attn.k", "wv": "attn.v", "wo": "attn.o", "w1": "mlp.gate", "w2": "mlp.down",
          "w3": "mlp.up"}  # weights field: op name in the layer


def per_layer(c: Compiled, sequences: int = 16, length: int = 256, seed: int = 0, ev: EvalSet | None = None) -> list[dict]:
    """Each transformer layer, and the classifier, quantized alone (weights in the deployment's format, activations),
    ranked by KL, most damaging first, on the eval's held-out sequences. Rows name `layer` (an index, or "lm_head")."""
    seqs = (ev or eval_set(c, sequences, length, seed)).ids
    sequences = len(seqs)
    ref = c.fm.forward(seqs[:, :-1], 0, c.fm.new_cache(sequences))
    q = c.dep.quant

    def deq(w: np.ndarray, op: str) -> np.ndarray:
        group = c.quant.params[op]["group"]
        return _int4_groups(w, group) if group else _int8_rows(w)
    units = [(li, f"layers.{li}.") for li in range(len(c.weights.layers))] + [("lm_head", "final_norm")]
    rows = []
    with progress.task("eval: layers one at a time", len(units)) as tick:
        for unit, prefix in units:
            rows.append(_one_unit(c, seqs, ref, unit, prefix, deq, q))
            tick()
    return sorted(rows, key=lambda r: -r["kl_mean"])


def _one_unit(c: Compiled, seqs: np.ndarray, ref: np.ndarray, unit, prefix: str, deq, q) -> dict:
    """The float model with one layer's (or lm_head's) weights and outputs quantized, against `ref`."""
    if unit == "lm_head":
        weights = replace(c.weights, lm_head=deq(c.weights.lm_head, "lm_head"))
    else:
        layers = list(c.weights.layers)
        layers[unit] = replace(layers[unit], **{k: deq(getattr(layers[unit], k), f"layers.{unit}.{op}")
                                                for k, op in LINEAR.items()})
        weights = replace(c.weights, layers=tuple(layers))
    fm = type(c.fm)(weights, c.fm.d)

    def act(name: str, x: np.ndarray, prefix=prefix) -> np.ndarray:
        s = c.quant.scales.get(name)
        # k's and q's scales are for their widths (keys, queries)
        bits = QK_BITS[q.keys] if name.endswith(".attn.k") else QK_BITS[q.queries] if name.endswith(".attn.q") else \
            QK_BITS[q.gate_up] if name.endswith((".mlp.gate", ".mlp.up")) else 8
        return _fake_quant(x, s, bits) if s and name.startswith(prefix) else x

    lg = fm.forward(seqs[:, :-1], 0, fm.new_cache(len(seqs)), transform=act)
    return {"layer": unit, **compare(ref, lg, seqs[:, 1:])}
