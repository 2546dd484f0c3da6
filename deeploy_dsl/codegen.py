"""Plan + allocation -> a self-contained C project (Jinja2 templates), plus plan.yaml.

Everything written is a pure function of the compiled deployment: no time, no absolute paths, no
dict-order dependence, so two builds of the same input are byte-identical.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import yaml

from .compiler import Compiled
from .graph import C_TYPE, ITEMSIZE
from .memory_map import memory_maps
from .plan_yaml import plan_yaml
from .rules import c_ident
from .tokenizer import c_string_literal, c_table_source

KERNEL_FILES = {
    "linear_i8": "linear.c", "linear_i16": "linear.c", "linear_i32": "linear.c", "rmsnorm_i8": "rmsnorm.c",
    "rope_i8": "rope.c", "attention_i8": "attention.c", "swiglu_i8": "swiglu.c", "add_sat_i16": "residual.c",
    "embed_i16": "embed.c", "argmax_i32": "argmax.c",
}
NP_TO_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t"}


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("deeploy_dsl.templates").joinpath(name).read_text())
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=False, lstrip_blocks=False)


def _kernel_source(name: str) -> str:
    return resources.files("deeploy_dsl.kernels_c").joinpath(name).read_text()


def buf_ident(name: str) -> str:
    return "buf_" + c_ident(name)


def const_ident(name: str) -> str:
    return "w_" + c_ident(name)


def _shape(shape) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _c_array(ctype: str, ident: str, arr: np.ndarray) -> str:
    flat = arr.reshape(-1).tolist()
    rows = [", ".join(str(v) for v in flat[i:i + 24]) for i in range(0, len(flat), 24)]
    body = ",\n    ".join(rows)
    return f"/* {_shape(arr.shape)} */\nconst {ctype} {ident}[{len(flat)}] = {{\n    {body}\n}};\n"


def _arg_text(a, c: Compiled) -> tuple[str, bool]:
    """C expression for one argument, and whether it needs the step context."""
    if a.kind == "int":
        v = a.value
        return (f"INT64_C({v})" if not -(2**31) <= v < 2**31 else str(v)) + f" /* {a.label} */", False
    if a.kind == "pos":
        return "c->pos", True
    if a.kind == "token":
        return "c->token", True
    if a.kind == "buf":
        v = c.plan.values[a.name]
        if a.row == "pos":
            row = v.nbytes // v.shape[0] // ITEMSIZE[v.dtype]
            return f"{buf_ident(a.name)} + c->pos * {row} /* {a.label}: {a.name} row pos */", True
        return f"{buf_ident(a.name)} /* {a.label} {_shape(v.shape)} */", False
    arr = c.plan.consts[a.name]
    if a.row == "pos":
        return f"{const_ident(a.name)} + c->pos * {arr.shape[1]} /* {a.label} */", True
    return f"{const_ident(a.name)} /* {a.label} {_shape(arr.shape)} */", False


def _group_title(op: str) -> str:
    if op.startswith("layers."):
        i, part = op.split(".")[1], op.split(".")[2]
        return f"layer {i}: " + ("attention" if part in ("attn_norm", "attn") else "feed-forward")
    return {"embed": "token embedding", "final_norm": "final norm and classifier", "lm_head": "final norm and classifier"}[op]


def render(c: Compiled) -> dict[str, str]:
    """All output files, by relative name."""
    env = _env()
    dep, plan, alloc = c.dep, c.plan, c.alloc
    name = c_ident(dep.name)
    common = {"name": name, "source": dep.source.name, "d": dep.model.dims, "target": dep.target.name}
    arenas = []
    for lvl in dep.memory:
        n = alloc.arena_bytes[lvl.name]
        if n:
            note = f"lower bound {alloc.lower_bound[lvl.name]}, holds {', '.join(lvl.holds)}"
            arenas.append({"name": lvl.name, "bytes": n, "words": (n + 7) // 8, "note": note})
    buffers = []
    for b in alloc.buffers:
        v = plan.values[b.name]
        buffers.append({"ident": buf_ident(b.name), "ctype": C_TYPE[v.dtype], "level": b.level, "offset": b.offset,
                        "shape": _shape(v.shape), "dtype": v.dtype, "first": b.first_step, "last": b.last_step})
    steps, groups = [], []
    for s in plan.steps:
        texts = [_arg_text(a, c) for a in s.args]
        engine = f"{s.engine} x{s.cores}" if s.engine == "cluster" else s.engine
        step = {"index": s.index, "op": s.op, "rule": s.rule, "engine": engine, "math": s.math, "kernel": s.kernel,
                "fname": f"{s.index:03d}_{c_ident(s.op)}", "args": [t for t, _ in texts],
                "uses_ctx": any(u for _, u in texts)}
        steps.append(step)
        title = _group_title(s.op)
        if not groups or groups[-1]["title"] != title:
            groups.append({"title": title, "steps": []})
        groups[-1]["steps"].append(step)
    consts = []
    for cname in sorted(plan.consts):
        arr = plan.consts[cname]
        consts.append({"name": cname, "ident": const_ident(cname), "ctype": NP_TO_C[arr.dtype], "size": arr.size,
                       "shape": f"{_shape(arr.shape)} {cname}", "arr": arr})
    kernels = sorted({KERNEL_FILES[s.kernel] for s in plan.steps} | {"argmax.c"})
    files: dict[str, str] = {}
    files["model.h"] = env.get_template("model.h.j2").render(
        **common, logit_scale=f"{c.quant.scales['lm_head']:.9g}")
    files["model.c"] = env.get_template("model.c.j2").render(
        **common, arenas=arenas, buffers=buffers, steps=steps, groups=groups, logits_ident=buf_ident("logits"))
    files["weights.h"] = env.get_template("weights.h.j2").render(**common, consts=consts)
    files["weights.c"] = "/* generated by deeploy; do not edit */\n#include \"weights.h\"\n\n" + "\n".join(
        _c_array(k["ctype"], k["ident"], k["arr"]) for k in consts)
    if c.tokenizer is not None:
        files["tokenizer_data.c"] = ("/* the on-device tokenizer's tables; generated by deeploy */\n"
                                     "#include <stdint.h>\n#include \"tokenizer.h\"\n\n" + c_table_source(c.tokenizer))
        files["main.c"] = env.get_template("main.c.j2").render(
            **common, prompt_literal=c_string_literal(dep.generate.prompt.encode()), tokens=dep.generate.tokens)
    for k in ["deeploy_kernels.h"] + kernels + (["tokenizer.h", "tokenizer.c"] if c.tokenizer else []):
        files[k] = _kernel_source(k)
    sources = sorted(f for f in files if f.endswith(".c"))
    headers = sorted(f for f in files if f.endswith(".h"))
    files["Makefile"] = env.get_template("Makefile.j2").render(**common, sources=sources, headers=headers)
    files["plan.yaml"] = plan_yaml(c)
    # a picture of each arena: time across, addresses up, one box per buffer
    files.update(memory_maps(yaml.safe_load(files["plan.yaml"])))
    return files


def write_build(files: dict[str, str], out: Path) -> None:
    """Write into a fresh sibling directory, then swap it in: a failed build leaves nothing behind."""
    out = out.resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        for rel in sorted(files):
            (tmp / rel).write_text(files[rel], encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.old.", dir=out.parent))
            os.replace(out, old / "x")
            shutil.rmtree(old)
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


def digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k].encode() + b"\0")
    return h.hexdigest()
