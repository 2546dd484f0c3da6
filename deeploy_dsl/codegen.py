"""Plan + allocation -> a self-contained C project (Jinja2 templates), plus plan.yaml.

Everything written is a pure function of the compiled deployment: no time, no absolute paths, no
dict-order dependence, so two builds of the same input are byte-identical.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import tempfile
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import yaml

from .compiler import Compiled
from .graph import C_TYPE, ITEMSIZE
from .layout import ROWS_PER_BLOCK, weight_row_bytes
from .memory_map import memory_maps
from .plan_yaml import plan_yaml
from .prefill import mode
from .registry import RUNTIME_FILES
from .report import report_json
from .tokenizer import c_string_literal, c_table_source

NP_TO_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t"}


def _env() -> jinja2.Environment:
    loader = jinja2.FunctionLoader(
        lambda name: resources.files("deeploy_dsl.templates").joinpath(name).read_text())
    return jinja2.Environment(loader=loader, undefined=jinja2.StrictUndefined, keep_trailing_newline=True,
                              trim_blocks=False, lstrip_blocks=False)


def _kernel_source(name: str) -> str:
    return resources.files("deeploy_dsl.kernels_c").joinpath(name).read_text()


def c_ident(name: str) -> str:
    """A C identifier for a plan name: layers.0.attn.q -> layers_0_attn_q."""
    return re.sub(r"[^A-Za-z0-9_]", "_", name)


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


def pbuf_ident(name: str, plan) -> str:
    """A buffer of the prefill plan: its own offsets, except the KV cache, which is the decode plan's."""
    return buf_ident(name) if plan.values[name].kind == "kv" else "pbuf_" + c_ident(name)


def _arg_expr(a, c: Compiled, plan=None, tok_rows: bool = True) -> tuple[str, str, bool]:
    """C expression for one argument, a short comment, and whether it needs the step context. With a prefill
    plan, a chunk-sized activation is its row of token c->t (tok_rows) or its whole chunk (not tok_rows)."""
    plan = plan or c.plan
    ident = (lambda n: pbuf_ident(n, plan)) if plan.chunk else buf_ident
    if a.kind == "int":
        v = a.value
        return (f"INT64_C({v})" if not -(2**31) <= v < 2**31 else str(v)), a.label, False
    if a.kind in ("pos", "token"):
        return f"c->{a.kind}", a.label, True
    if a.kind == "buf":
        v = plan.values[a.name]
        if a.row == "pos":
            row = v.nbytes // v.shape[0] // ITEMSIZE[v.dtype]
            if plan.chunk and not tok_rows:
                return f"{ident(a.name)} + c->pos0 * {row}", f"{a.label}: {a.name} rows pos0..", True
            return f"{ident(a.name)} + c->pos * {row}", f"{a.label}: {a.name} row pos", True
        if a.name in plan.scaled:
            row = v.nbytes // v.shape[0] // ITEMSIZE[v.dtype]
            if tok_rows:
                return f"{ident(a.name)} + c->t * {row}", f"{a.label}: {a.name} row of token t", True
            return ident(a.name), f"{a.label} {_shape(v.shape)}, the chunk's rows", False
        return ident(a.name), f"{a.label} {_shape(v.shape)}", False
    arr = plan.consts[a.name]
    if a.row:
        return f"{const_ident(a.name)} + c->{a.row} * {arr.size // arr.shape[0]}", f"{a.label}: row {a.row}", True
    return const_ident(a.name), f"{a.label} {_shape(arr.shape)}", False


def _step_view(s, c: Compiled, plan=None) -> dict:
    """What the step templates (steps.c.j2) need to print one step (of the decode plan, or of the prefill plan)."""
    plan = plan or c.plan
    md = mode(s, plan) if plan.chunk else "decode"
    tok_rows = md not in ("gemm", "flat")
    ident = (lambda n: pbuf_ident(n, plan)) if plan.chunk else buf_ident
    exprs = [_arg_expr(a, c, plan, tok_rows) for a in s.args]
    staged = {x.arg: x for x in s.xfers}
    l1 = c.dep.memory[0].name
    args, local, stage_in, stage_out = [], [], [], []  # local: what the kernel reads, staging applied
    for i, (expr, note, _) in enumerate(exprs):
        x = staged.get(i)
        if x is None:
            args.append(f"{expr} /* {note} */")
            local.append(expr)
            continue
        args.append(f"{ident(x.buf)} /* {note}, staged in {l1} */")
        local.append(ident(x.buf))
        nbytes = f"c->n * {x.nbytes}" if md == "gemm" and x.out else x.nbytes
        item = {"buf": ident(x.buf), "far": expr, "nbytes": nbytes, "what": s.args[i].name, "level": l1}
        (stage_out if x.out else stage_in).append(item)
    engine = f"{s.engine} x{s.cores}" if s.engine == "cluster" else s.engine
    fname = f"{'pf' if plan.chunk else ''}{s.index:03d}_{c_ident(s.op)}"
    view = {"index": s.index, "op": s.op, "rule": s.rule, "engine": engine, "math": s.math, "kernel": s.kernel,
            "fname": fname, "args": args, "stage_in": stage_in, "stage_out": stage_out, "mode": md,
            "pre": bool(plan.chunk), "tok_loop": md == "gemm",
            "uses_ctx": any(u for _, _, u in exprs) or md == "gemm", "body": "plain", "tiles_note": ""}
    if s.split is not None and s.tiling is None:
        unit = s.split.unit if isinstance(s.split.unit, int) else s.arg(s.split.unit).value
        count = s.arg(s.split.count).value
        split_args = []
        for i, a in enumerate(s.args):
            text = args[i]
            if a.label in s.split.offset:
                expr, note = text.split(" /*", 1)
                text = f"{expr} + lo /*{note}"
            elif s.split.bounds and a.label in s.split.bounds:
                text = f"{'lo' if a.label == s.split.bounds[0] else 'hi'} /* {a.label}: this core's share */"
            elif a.label == s.split.count and not s.split.bounds:
                text = f"hi - lo /* {a.label}: this core's share */"
            split_args.append(text)
        units = f"c->n * {count // unit}" if md == "flat" else count // unit
        view.update(body="split", split_args=split_args, units=units, unit=unit)
    if s.engine == "npu":
        at = {a.label: i for i, a in enumerate(s.args)}
        view.update(body="npu", y=local[at["y"]], x=local[at["x"]], w=exprs[at["w"]][0], mult=exprs[at["mult"]][0],
                    shift=exprs[at["shift"]][0], n_in=s.arg("n_in").value, dyn_shift=s.arg("shift").kind == "buf",
                    n_out=s.arg("n_out").value, bits=s.spec.out_bits, n_tok="c->n" if md == "gemm" else "1")
    t = s.tiling
    if t is not None and t.kind == "rows":
        n_in, n_out = s.arg("n_in").value, s.arg("n_out").value
        group = s.arg("group").value if s.has("group") else 0  # int4 weights: the kernel takes the group size last
        n_tiles = -(-n_out // t.tile)
        at = {a.label: i for i, a in enumerate(s.args)}
        e = {a.label: x for a, (x, _, _) in zip(s.args, exprs)}
        view.update(body="rows", nbuf=len(t.buffers["w"]), tile=t.tile, n_tiles=n_tiles, n_in=n_in, n_out=n_out,
                    w_row=weight_row_bytes(n_in, group), extra=f", {group}" if group else "",
                    # an input with per-token scales: the kernel's shift is this token's (a buffer), no shift tiles
                    dyn_shift=e["shift"] if s.arg("shift").kind == "buf" else "",
                    shift_src=e["shift"] if s.arg("shift").kind == "const" else "0",
                    bufs={k: [ident(b) for b in v] for k, v in t.buffers.items()},
                    y=local[at["y"]], x=e["x"], w=e["w"], mult=e["mult"], shift=e["shift"],
                    tiles_note=f"W streams in {n_tiles} tile{'s' if n_tiles > 1 else ''} of {t.tile} rows"
                               + (", double-buffered" if t.double_buffer else "")
                               + (", each tile applied to every token of the chunk" if md == "gemm" else ""))
    elif t is not None and t.kind == "positions":
        d = c.dep.model.dims
        e = {a.label: x for a, (x, _, _) in zip(s.args, exprs)}
        exp_i = next(i for i, a in enumerate(s.args) if a.label == "exp_table")
        streamed = "k" in t.buffers
        lanes = len(t.buffers["acc"])
        nbuf = len(t.buffers.get("k", ()))  # one tile of all the lanes per buffer
        a = {x.label: x for x in s.args}
        k16 = plan.values[a["k_cache"].name].dtype == "int16"  # int16 keys: K tiles int16, V int8
        scores_fn, av_fn = s.spec.functions
        view.update(body="positions", streamed=streamed, nbuf=nbuf, tile=t.tile, lanes=lanes,
                    k_ctype="int16_t" if k16 else "int8_t", scores_fn=scores_fn, av_fn=av_fn,
                    k_bytes=2 if k16 else 1,
                    k_tiles=[ident(n) for n in t.buffers.get("k", ())],
                    v_tiles=[ident(n) for n in t.buffers.get("v", ())],
                    accs=[ident(n) for n in t.buffers["acc"]], sums=[ident(n) for n in t.buffers["sums"]],
                    maxs=[ident(n) for n in t.buffers["max"]],
                    scores_l=[ident(n) for n in t.buffers["scores"]],
                    out=e["out"], q=e["q"], k_cache=e["k_cache"], v_cache=e["v_cache"],
                    exp=local[exp_i], exp_bits=int(plan.consts[a["exp_table"].name][0]).bit_length() - 1,
                    group=d.heads // d.kv_heads, hs=d.head_size,
                    kv_dim=d.kv_dim, kv_heads=d.kv_heads, ctx=d.context,
                    score_mult=a["score_mult"].value, score_shift=a["score_shift"].value,
                    score_cut=a["score_cut"].value, out_mult=a["out_mult"].value, out_shift=a["out_shift"].value,
                    tiles_note=(f"K, V stream {t.tile} positions a tile" + (", double-buffered" if t.double_buffer else ""))
                    if streamed else "")
    return view


def unit_name(ops: list[str]) -> str:
    """One name for a fork group's ops: layers.0.attn.q, .k, .v -> layers.0.attn.q+k+v."""
    if len(ops) == 1:
        return ops[0]
    head = ops[0].rsplit(".", 1)[0] + "."
    if all(o.startswith(head) for o in ops):
        return head + "+".join(o[len(head):] for o in ops)
    return "+".join(ops)


def _fork_view(members: list[dict]) -> dict:
    """A fork group: its members' row views, their blocks numbered as one list for the cores to share."""
    b0 = 0
    for m in members:
        m["b0"], m["b1"] = b0, b0 + -(-m["n_out"] // ROWS_PER_BLOCK)
        b0 = m["b1"]
    first = members[0]
    return {"body": "fork", "members": members, "blocks": b0, "op": unit_name([m["op"] for m in members]),
            "fname": f"{'pf' if first['pre'] else ''}{first['index']:03d}_{c_ident(unit_name([m['op'] for m in members]))}",
            "index": first["index"], "last": members[-1]["index"], "engine": first["engine"], "mode": first["mode"],
            "tok_loop": first["tok_loop"], "pre": first["pre"]}


def _group_title(op: str) -> str:
    if op.startswith("layers."):
        i, part = op.split(".")[1], op.split(".")[2]
        return f"layer {i}: " + ("attention" if part in ("attn_norm", "attn") else "feed-forward")
    return {"embed": "token embedding", "final_norm": "final norm and classifier", "lm_head": "final norm and classifier"}[op]


def _calls(plan, c: Compiled) -> tuple[list, list]:
    """What forward() (or prefill()) calls, one per step or fork group, in plan order; and the groups by title."""
    steps, groups = [], []
    views = [_step_view(s, c, plan) for s in plan.steps]
    for s in plan.steps:
        if s.fork and s.index != s.fork[0]:
            continue  # runs inside its group's fork
        step = _fork_view(views[s.fork[0]:s.fork[1] + 1]) if s.fork else views[s.index]
        step["seq"] = len(steps)  # its row in the profile
        steps.append(step)
        title = _group_title(s.op)
        if not groups or groups[-1]["title"] != title:
            groups.append({"title": title, "steps": []})
        groups[-1]["steps"].append(step)
    return steps, groups


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
    buffers = []
    for b in alloc.buffers:
        v = plan.values[b.name]
        buffers.append({"ident": buf_ident(b.name), "ctype": C_TYPE[v.dtype], "level": b.level, "offset": b.offset,
                        "shape": _shape(v.shape), "dtype": v.dtype, "first": b.first_step, "last": b.last_step})
    steps, groups = _calls(plan, c)
    psteps, pbuffers = [], []
    if pre:
        psteps, _ = _calls(pre.plan, c)
        for b in pre.alloc.buffers:
            if b.persistent:
                continue  # the KV cache: the decode plan's buffers (same offsets, checked by prefill.build)
            v = pre.plan.values[b.name]
            pbuffers.append({"ident": pbuf_ident(b.name, pre.plan), "ctype": C_TYPE[v.dtype], "level": b.level,
                             "offset": b.offset, "shape": _shape(v.shape), "dtype": v.dtype, "first": b.first_step,
                             "last": b.last_step})
    consts = []
    for cname in sorted(plan.consts):
        arr = plan.consts[cname]
        consts.append({"name": cname, "ident": const_ident(cname), "ctype": NP_TO_C[arr.dtype], "size": arr.size,
                       "shape": f"{_shape(arr.shape)} {cname}", "arr": arr})
    kernels = sorted({s.spec.source for s in plan.steps} | set(RUNTIME_FILES))
    files: dict[str, str] = {}
    files["model.h"] = env.get_template("model.h.j2").render(
        **common, logit_scale=f"{c.quant.scales['lm_head']:.9g}", n_steps=len(steps),
        prefill_chunk=pre.chunk if pre else 1)
    files["model.c"] = env.get_template("model.c.j2").render(
        **common, arenas=arenas, buffers=buffers, steps=steps, groups=groups, logits_ident=buf_ident("logits"),
        uses_npu=any(s.engine == "npu" for s in plan.steps) or bool(pre and any(s.engine == "npu" for s in pre.plan.steps)),
        pre=pre is not None, psteps=psteps, pbuffers=pbuffers,
        plogits_ident=pbuf_ident("logits", pre.plan) if pre else "")
    files["weights.h"] = env.get_template("weights.h.j2").render(**common, consts=consts)
    files["weights.c"] = "/* generated by deeploy; do not edit */\n#include \"weights.h\"\n\n" + "\n".join(
        _c_array(k["ctype"], k["ident"], k["arr"]) for k in consts)
    if c.tokenizer is not None:
        files["tokenizer_data.c"] = ("/* the on-device tokenizer's tables; generated by deeploy */\n"
                                     "#include <stdint.h>\n#include \"tokenizer.h\"\n\n" + c_table_source(c.tokenizer))
        files["main.c"] = env.get_template("main.c.j2").render(
            **common, prompt_literal=c_string_literal(dep.generate.prompt.encode()), tokens=dep.generate.tokens)
    for k in ["deeploy_kernels.h", "dma.h", "tiles.h", "perf.h", "cluster.h", "gemv.h", "npu.h", "profile.h", "rv32_start.S"] + kernels + (["tokenizer.h", "tokenizer.c"] if c.tokenizer else []):
        files[k] = _kernel_source(k)
    sources = sorted(f for f in files if f.endswith(".c"))
    headers = sorted(f for f in files if f.endswith(".h"))
    files["Makefile"] = env.get_template("Makefile.j2").render(**common, sources=sources, headers=headers)
    files["plan.yaml"] = plan_yaml(c)
    files["report.json"] = report_json(c)
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
