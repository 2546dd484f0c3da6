"""What one worker computes for one point: module-level functions of plain arguments returning plain dicts, so
the same call runs in-process, in a process pool or on a Dask worker, with the same result."""
from __future__ import annotations

import hashlib
import json
import re
from pathlib import Path


def cost_figures(report: dict) -> dict:
    """The figures a sweep ranks by, from report.json: decode cost per token and bytes per memory level."""
    dec = report["performance"]["decode"]
    out = {"cycles_per_token": dec["cycles_per_token"], "tokens_per_s": dec["tokens_per_s"],
           "uj_per_token": dec["uj_per_token"], "dma_bytes": report["totals"]["dma_bytes_per_token"],
           "macs": report["totals"]["macs_per_token"]}
    for name, m in report["memory"].items():
        out.update({name: m["used_bytes"], f"{name}_weights": m["weight_bytes"], f"{name}_arena": m["c_arena_bytes"]})
    return out


def numerics_digest(c) -> str:
    """What decides the integer model's logits: the quantized constants and parameters and each step's kernel (a packed
    GEMV as the blocked one it stands for)."""
    h = hashlib.sha256()
    for name in sorted(c.quant.consts):
        a = c.quant.consts[name]
        h.update(f"{name}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    h.update(json.dumps({k: dict(v) for k, v in c.quant.params.items()}, sort_keys=True, default=str).encode())
    # a packed GEMV computes its fallback's integers (test_gemv_pk): both count as the blocked kernel
    h.update(json.dumps([(s.op, s.spec.fallback.name if s.spec.fallback is not None else s.kernel)
                         for s in c.plan.steps]).encode())
    h.update(re.sub(r"Pos\([^)]*\)", "", repr(c.dep.quant)).encode())  # where a setting was written does not count
    return h.hexdigest()


def _guarded(fn, cache: str | None = None):
    """A failed point is a result (its error message), never a lost task. `cache`: the folder of the quant phase's
    results on disk (quant/cache.py), shared by the workers and by later runs of the sweep."""
    from ..errors import DeeployError
    from ..quant.cache import on_disk
    try:
        with on_disk(None if cache is None else Path(cache)):
            return fn()
    except DeeployError as e:
        return {"error": e.render()}
    except Exception as e:  # noqa: BLE001 -- an internal error is recorded with the point that raised it
        return {"error": f"internal error: {type(e).__name__}: {e}"}


def cost_task(dply: str, overrides: tuple[str, ...], cache: str | None = None) -> dict:
    """Compile the point and read its cost-model figures."""
    def go():
        from ..backend.report import report_dict
        from ..compiler import compile_deployment
        c = compile_deployment(Path(dply), list(overrides))
        return {"figures": cost_figures(report_dict(c)), "numerics": numerics_digest(c)}
    return _guarded(go, cache)


def eval_task(dply: str, overrides: tuple[str, ...], sequences: int, length: int, seed: int, cache: str | None = None) -> dict:
    """The held-out eval of the point (the only call into engines.evaluate)."""
    def go():
        from ..compiler import compile_deployment
        from ..engines.evaluate import evaluate
        c = compile_deployment(Path(dply), list(overrides))
        r = evaluate(c, sequences=sequences, length=length, seed=seed, prompts=())
        return {"figures": {"top1": r["top1_agreement"], "kl": r["kl_mean"], "ppl_ratio": r["ppl_ratio"]}}
    return _guarded(go, cache)


QEMU_TOKENS = 16  # decode tokens measured per point: instruction counts per token are the same at every position step


def qemu_task(dply: str, overrides: tuple[str, ...], tokens: int, cache: str | None = None) -> dict:
    """Exact RV32 instructions per decode token under QEMU: the sum over harts (the work) and the busiest hart (the time)."""
    def go():
        import tempfile
        from ..compiler import check_prompt, compile_deployment
        from ..engines.qemu import build_rv32, decode_instret, run_elf
        c = compile_deployment(Path(dply), list(overrides))
        ids = check_prompt(c.dep, c.tokenizer)
        cores = max([s.cores for s in c.plan.steps if s.engine == "cluster"] or [1])
        with tempfile.TemporaryDirectory(prefix="deeploy-explore-") as tmp:
            run = run_elf(build_rv32(c, Path(tmp) / "build"), ids, tokens, c.dep.model.dims.vocab, stop=False, cores=cores)
        per_core = decode_instret(run, len(ids))
        return {"figures": {"instructions": sum(per_core), "instructions_busiest": max(per_core)}}
    return _guarded(go, cache)
