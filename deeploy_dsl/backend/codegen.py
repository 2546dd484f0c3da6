"""Plan + allocation -> a self-contained C project (Jinja2 templates), plus plan.yaml.

Everything written is a pure function of the compiled deployment: no time, no absolute paths, no
dict-order dependence, so two builds of the same input are byte-identical.
"""
from __future__ import annotations

import hashlib
from importlib import resources

import jinja2
import numpy as np
import yaml

from ..compiler import Compiled
from ..kernels import sampling as S
from ..kernels.registry import RUNTIME_FILES, SOURCE_HEADERS, SOURCE_NEEDS
from ..kinds import Engine
from ..model.tokenizer import c_string_literal, c_table_source, utf8
from .cmodel import ModelC, c_ident, const_ident
from .memory_map import memory_maps
from .plan_yaml import plan_yaml
from .report import report_json

NP_TO_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t"}


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("deeploy_dsl.templates").joinpath(name).read_text())
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=False, lstrip_blocks=False)


def _kernel_source(name: str) -> str:
    return resources.files("deeploy_dsl.kernels_c").joinpath(name).read_text()


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _c_array(ctype: str, ident: str, arr: np.ndarray) -> str:
    flat = arr.reshape(-1).tolist()
    rows = [", ".join(str(v) for v in flat[i:i + 24]) for i in range(0, len(flat), 24)]
    body = ",\n    ".join(rows)
    # the packed GEMV's layout (packed.py) is read as int32 words: 8-byte aligned as the arenas are
    align = " __attribute__((aligned(8)))" if ident.endswith(("_wp", "_wh")) else ""  # _wh: int16 weights
    return f"/* {_shape(arr.shape)} */\nconst {ctype} {ident}[{len(flat)}]{align} = {{\n    {body}\n}};\n"


def _names(names: list[str]) -> list[str]:
    """model_step_names' initializer lines: a few quoted names a line."""
    lines, cur = [], "   "
    for n in names:
        if len(cur) + len(n) + 4 > 116:
            lines.append(cur)
            cur = "   "
        cur += f' "{n}",'
    return lines + [cur]


def sampler_multiplier(c: Compiled) -> int:
    """The sampler's SAMPLE_MULT for the deployment (kernels/sampling.py), 0 for greedy decoding."""
    gen = c.dep.generate
    return 0 if gen.sampler == "greedy" else S.temperature_multiplier(c.quant.scales["lm_head"], gen.temperature)


def sampler_text(gen) -> str:
    return (f"top_p({gen.top_p:g}, temperature = {gen.temperature:g})" if gen.sampler == "top_p"
            else f"temperature({gen.temperature:g})")


def _main_c(env: jinja2.Environment, c: Compiled, common: dict) -> str:
    """The runner: text in and out with a tokenizer, token ids in and out without one."""
    tok, gen = c.tokenizer, c.dep.generate
    view = {"tokenizer": tok is not None, "sampling": False,
            # more new tokens than the context holds end at the context's end anyway; keeps the C literal small
            "tokens": min(gen.tokens, c.dep.model.dims.context)}
    if tok is not None:  # compile checked the prompt (compiler.check_prompt): it is text and fits the context
        view.update(prompt_literal=c_string_literal(utf8(gen.prompt)), token_max_bytes=tok.longest_piece)
    mult = sampler_multiplier(c)
    if mult:
        table = [int(v) for v in S.exp2_q15()]
        view.update(sampling=True, sample_mult=mult, sample_top_p=S.top_p_q16(gen.top_p), seed=gen.seed,
                    sampler_text=sampler_text(gen),
                    sample_exp2=",\n".join("    " + ", ".join(f"{v:5d}" for v in table[i:i + 16]) for i in range(0, 512, 16)))
    return env.get_template("main.c.j2").render(**common, **view)


def render(c: Compiled) -> dict[str, str]:
    """All output files, by relative name."""
    env = _env()
    dep, plan, alloc = c.dep, c.plan, c.alloc
    name = c_ident(dep.name)
    common = {"name": name, "source": dep.source.name, "d": dep.model.dims, "target": dep.target.name}
    pre = c.prefill
    arenas = []
    for lvl in dep.memory:
        n = alloc.arena_bytes[lvl.name]
        pn = pre.alloc.arena_bytes[lvl.name] if pre else 0
        if max(n, pn):
            note = f"lower bound {alloc.lower_bound[lvl.name]}, holds {', '.join(lvl.holds)}"
            if pre:
                note += f"; the larger of decode ({n}) and prefill ({pn}), which never run at once"
            n = max(n, pn)
            arenas.append({"name": lvl.name, "bytes": n, "words": (n + 7) // 8, "note": note})
    consts = []
    for cname in sorted(plan.consts):
        arr = plan.consts[cname]
        consts.append({"name": cname, "ident": const_ident(cname), "ctype": NP_TO_C[arr.dtype], "size": arr.size,
                       "shape": f"{_shape(arr.shape)} {cname}", "arr": arr})
    used = {s.spec.source for s in plan.steps} | set(RUNTIME_FILES)
    kernels = sorted(used | {n for k in used for n in SOURCE_NEEDS.get(k, ())})
    kernel_headers = [SOURCE_HEADERS[k] for k in kernels if k in SOURCE_HEADERS]  # e.g. host.h, only where used
    files: dict[str, str] = {}
    model = ModelC(c, env).context()
    files["model.h"] = env.get_template("model.h.j2").render(
        **common, logit_scale=f"{c.quant.scales['lm_head']:.9g}", n_steps=len(model["step_names"]),
        prefill_chunk=pre.chunk if pre else 1)
    logits = {b.name: b for b in alloc.buffers}["logits"]
    plogits = {b.name: b for b in pre.alloc.buffers}["logits"] if pre else None
    files["model.c"] = env.get_template("model.c.j2").render(
        **common, arenas=arenas, **(model | {"step_names": _names(model["step_names"])}),
        logits=f"(const int32_t *)(arena_{logits.level} + {logits.offset})",
        plogits=f"(const int32_t *)(arena_{plogits.level} + {plogits.offset})" if pre else "",
        uses_npu=any(s.engine == Engine.NPU for s in plan.steps) or bool(pre and any(s.engine == Engine.NPU for s in pre.plan.steps)),
        pre=pre is not None, kernel_headers=kernel_headers)
    files["weights.h"] = env.get_template("weights.h.j2").render(**common, consts=consts)
    files["weights.c"] = "/* generated by deeploy; do not edit */\n#include \"weights.h\"\n\n" + "\n".join(
        _c_array(k["ctype"], k["ident"], k["arr"]) for k in consts)
    if c.tokenizer is not None:
        files["tokenizer_data.c"] = ("/* the on-device tokenizer's tables; generated by deeploy */\n"
                                     "#include <stdint.h>\n#include \"tokenizer.h\"\n\n" + c_table_source(c.tokenizer))
    files["main.c"] = _main_c(env, c, common)
    for k in ["deeploy_kernels.h", "dma.h", "tiles.h", "perf.h", "cluster.h", "gemv.h", "npu.h", "profile.h", "rv32_start.S"] + kernel_headers + kernels + (["tokenizer.h", "tokenizer.c"] if c.tokenizer else []) + (SPIKE_FILES if dep.target.vlen else []):
        files[k] = _kernel_source(k)
    sources = sorted(f for f in files if f.endswith(".c"))
    headers = sorted(f for f in files if f.endswith(".h"))
    files["Makefile"] = env.get_template("Makefile.j2").render(**common, sources=sources, headers=headers,
                                                                spike_march=spike_march(dep.target))
    files["plan.yaml"] = plan_yaml(c)
    files["report.json"] = report_json(c)
    # a picture of each arena: time across, addresses up, one box per buffer
    files.update(memory_maps(yaml.safe_load(files["plan.yaml"])))
    return files


# a target whose cores have a vector unit builds for Spike too (make spike): HTIF instead of semihosting, mstatus.VS
SPIKE_FILES = ["rv32v_start.S", "spike_htif.c", "spike_htif.h", "spike_os.c"]


def spike_march(target) -> str:
    """gcc's -march for a target with a vector unit (Zvqdotq has no mnemonics in gcc 12: gemv_rvv.c's .insn), or ''."""
    return "_".join(["rv32imac", "zicsr"] + [e for e in target.extensions if e != "zvqdotq"]) if target.vlen else ""


def digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k].encode() + b"\0")
    return h.hexdigest()
