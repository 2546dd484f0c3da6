"""Plan + allocation -> a self-contained C project (Jinja2 templates), plus plan.yaml.

Everything written is a pure function of the compiled deployment: no time, no absolute paths, no
dict-order dependence, so two builds of the same input are byte-identical.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import stat
import tempfile
from importlib import resources
from pathlib import Path

import jinja2
import numpy as np
import yaml

from .compiler import Compiled
from .errors import DeeployError, Diagnostic, Pos
from .graph import C_TYPE, ITEMSIZE
from .layout import ROWS_PER_BLOCK, weight_row_bytes
from .memory_map import memory_maps
from .plan_yaml import plan_yaml
from .report import report_json
from .rules import c_ident
from .tokenizer import c_string_literal, c_table_source, utf8

KERNEL_FILES = {
    "gemv_i8": "gemv.c", "gemv_i16": "gemv.c", "gemv_i32": "gemv.c",
    "gemv_q4_i8": "gemv.c", "gemv_q4_i16": "gemv.c", "gemv_q4_i32": "gemv.c",
    "rmsnorm_i8_part": "rmsnorm.c", "rope_i8": "rope.c", "rope_i16": "rope.c",
    "attention_i8": "attention.c", "attention_k16": "attention.c", "swiglu_i8": "swiglu.c", "swiglu_dyn_i8": "swiglu.c", "add_sat_i16": "residual.c",
    "embed_i16": "embed.c", "argmax_i32": "argmax.c",
    "npu_linear_i8": "npu.c", "npu_linear_i16": "npu.c", "npu_linear_i32": "npu.c",
}
RUNTIME_FILES = ["argmax.c", "attention.c", "cluster.c", "dma.c", "npu.c", "profile.c", "tiles.c"]  # every build calls these
NP_TO_C = {np.dtype(np.int8): "int8_t", np.dtype(np.int16): "int16_t", np.dtype(np.int32): "int32_t",
           np.dtype(np.uint8): "uint8_t", np.dtype(np.uint16): "uint16_t"}


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
    md = "decode"
    if plan.chunk:
        from .prefill import mode
        md = mode(s, plan)
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
        labels = [a.label for a in s.args]
        unit = s.split.unit if isinstance(s.split.unit, int) else s.args[labels.index(s.split.unit)].value
        count = s.args[labels.index(s.split.count)].value
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
        labels = {a.label: i for i, a in enumerate(s.args)}
        view.update(body="npu", y=local[0], x=local[1], w=exprs[labels["w"]][0], mult=exprs[labels["mult"]][0],
                    shift=exprs[labels["shift"]][0], n_in=s.args[labels["n_in"]].value,
                    dyn_shift=s.args[labels["shift"]].kind == "buf",
                    n_out=s.args[labels["n_out"]].value, bits=int(s.kernel.rsplit("_i", 1)[1]),
                    n_tok="c->n" if md == "gemm" else "1")
    t = s.tiling
    if t is not None and t.kind == "rows":
        n_in, n_out = s.args[5].value, s.args[6].value
        group = s.args[7].value if len(s.args) > 7 else 0  # int4 weights: the kernel takes the group size last
        n_tiles = -(-n_out // t.tile)
        e = [x for x, _, _ in exprs]
        view.update(body="rows", nbuf=len(t.buffers["w"]), tile=t.tile, n_tiles=n_tiles, n_in=n_in, n_out=n_out,
                    w_row=weight_row_bytes(n_in, group), extra=f", {group}" if group else "",
                    # an input with per-token scales: the kernel's shift is this token's (a buffer), no shift tiles
                    dyn_shift=e[4] if s.args[4].kind == "buf" else "",
                    shift_src=e[4] if s.args[4].kind == "const" else "0",
                    bufs={k: [ident(b) for b in v] for k, v in t.buffers.items()},
                    y=local[0], x=e[1], w=e[2], mult=e[3], shift=e[4],
                    tiles_note=f"W streams in {n_tiles} tile{'s' if n_tiles > 1 else ''} of {t.tile} rows"
                               + (", double-buffered" if t.double_buffer else "")
                               + (", each tile applied to every token of the chunk" if md == "gemm" else ""))
    elif t is not None and t.kind == "positions":
        d = c.dep.model.dims
        e = [x for x, _, _ in exprs]
        exp_i = next(i for i, a in enumerate(s.args) if a.label == "exp_table")
        streamed = "k" in t.buffers
        lanes = len(t.buffers["acc"])
        nbuf = len(t.buffers.get("k", ()))  # one tile of all the lanes per buffer
        a = {x.label: x for x in s.args}
        k16 = plan.values[a["k_cache"].name].dtype == "int16"  # int16 keys: K tiles int16, V int8
        view.update(body="positions", streamed=streamed, nbuf=nbuf, tile=t.tile, lanes=lanes,
                    k_ctype="int16_t" if k16 else "int8_t", scores_fn="attn_scores_k16" if k16 else "attn_scores_i8",
                    k_bytes=2 if k16 else 1,
                    k_tiles=[ident(n) for n in t.buffers.get("k", ())],
                    v_tiles=[ident(n) for n in t.buffers.get("v", ())],
                    accs=[ident(n) for n in t.buffers["acc"]], sums=[ident(n) for n in t.buffers["sums"]],
                    maxs=[ident(n) for n in t.buffers["max"]],
                    scores_l=[ident(n) for n in t.buffers["scores"]],
                    out=e[0], q=e[1], k_cache=e[2], v_cache=e[3],
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


def _main_c(env: jinja2.Environment, c: Compiled, common: dict) -> str:
    """The runner: text in and out with a tokenizer, token ids in and out without one."""
    tok, gen = c.tokenizer, c.dep.generate
    view = {"tokenizer": tok is not None,
            # more new tokens than the context holds end at the context's end anyway; keeps the C literal small
            "tokens": min(gen.tokens, c.dep.model.dims.context)}
    if tok is not None:  # compile checked the prompt (compiler.check_prompt): it is text and fits the context
        view.update(prompt_literal=c_string_literal(utf8(gen.prompt)), token_max_bytes=tok.longest_piece)
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
    kernels = sorted({KERNEL_FILES[s.kernel] for s in plan.steps} | set(RUNTIME_FILES))
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
    files["main.c"] = _main_c(env, c, common)
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


# in every build directory, the one kind of non-empty directory a build replaces; not hidden, so that whoever
# looks inside reads that the directory is deeploy's
MARKER = "DEEPLOY_BUILD"
MARKER_TEXT = ("This directory was written by `deeploy build`, which replaces it whole on the next build into it.\n"
               "Keep nothing of your own here.\n")
# what builds from before the marker held: the files render() writes, and what their Makefile and runs make
_LEGACY_FIXED = {"Makefile", "plan.yaml", "report.json", "model.c", "model.h", "weights.c", "weights.h", "main.c",
                 "tokenizer_data.c", "logits.bin"}
_LEGACY_HEADER = re.compile(rb"# ([A-Za-z_][A-Za-z0-9_]*): generated by deeploy")


class OutputError(DeeployError):
    """The output path names something a build must not replace, or cannot be written."""


def _refuse(shown: str, message: str) -> OutputError:
    return OutputError([Diagnostic(Pos(shown), message + "; nothing was written",
                                   hint="a build replaces its output directory whole: give -o a new or empty "
                                        "directory, or a previous build")])


def _is_file(path: Path) -> bool:
    """A regular file, not followed through a symlink (a FIFO or device is never read)."""
    try:
        return stat.S_ISREG(os.lstat(path).st_mode)
    except OSError:
        return False


def _legacy_build(d: Path, entries: list[str]) -> bool:
    """A build from before the marker: a deeploy Makefile, plan.yaml and model.c, and nothing but plain files
    with the names deeploy writes (or the program and image its Makefile makes)."""
    if not all(_is_file(d / f) for f in ("Makefile", "plan.yaml", "model.c")):
        return False
    try:
        with open(d / "Makefile", "rb") as f:
            m = _LEGACY_HEADER.match(f.readline(200))
    except OSError:  # unreadable: not something to replace unasked
        return False
    if m is None:
        return False
    name = m.group(1).decode()
    kernels = {k.name for k in resources.files("deeploy_dsl.kernels_c").iterdir()}
    known = _LEGACY_FIXED | kernels | {name, name + ".elf"}
    return all(_is_file(d / e) and (e in known or re.fullmatch(r"memory_\w+\.svg", e)) for e in entries)


def _resolved(p: Path) -> Path:
    try:
        return p.resolve()
    except (OSError, RuntimeError):  # a symlink loop: compare it as written
        return Path(os.path.abspath(p))


def _holder(target: Path, protect) -> str | None:
    """What of the user's the target is or holds: the current directory, the deployment or one of its inputs."""
    try:
        cwd = [("the current directory", Path.cwd().resolve())]
    except OSError:  # the current directory was removed: nothing to protect there
        cwd = []
    for what, p in cwd + [(f"{p}, which the build reads", _resolved(Path(p))) for p in protect]:
        if target == p:
            return f"is {what}"
        if target in p.parents:
            return f"holds {what}"
    return None


def check_output(out: Path, protect=()) -> Path:
    """Where a build into `out` goes (symlinks followed): a missing path, an empty directory or a previous
    build, and never the current directory, a folder holding it, or one holding `protect` (the deployment and
    its model files). Anything else raises OutputError naming the path; nothing is touched."""
    shown = str(out)
    try:
        target = out.resolve()
    except (OSError, RuntimeError) as e:  # a symlink loop
        raise _refuse(shown, f"cannot be resolved ({getattr(e, 'strerror', None) or e})") from None
    via = "" if target == Path(os.path.abspath(out)) else f" (a link to {target})"
    held = _holder(target, protect)
    if held:
        raise _refuse(shown, f"{held}{via}")
    if not os.path.lexists(target):
        above = next(a for a in target.parents if os.path.lexists(a))
        if not os.path.isdir(above):
            raise _refuse(shown, f"lies under {above}, which is a file")
        return target
    mode = os.lstat(target).st_mode
    if not stat.S_ISDIR(mode):
        raise _refuse(shown, (f"is a file{via}, not a build directory" if stat.S_ISREG(mode) else
                              f"is not a directory{via}"))
    try:
        entries = os.listdir(target)
    except OSError as e:
        raise _refuse(shown, f"cannot be listed ({e.strerror})") from None
    if entries and not _is_file(target / MARKER) and not _legacy_build(target, entries):
        raise _refuse(shown, f"is a non-empty directory{via} that deeploy did not make (no {MARKER} file in it)")
    return target


def _make_parents(d: Path) -> list[Path]:
    """mkdir -p, returning the directories it created (deepest first) so a failure can remove them."""
    missing = [p for p in [d, *d.parents] if not os.path.lexists(p)]
    for p in reversed(missing):
        p.mkdir()
    return missing


def write_build(files: dict[str, str], out: Path, protect=()) -> None:
    """Write into a fresh sibling directory, then swap it in: a failed build leaves nothing behind. Only a
    missing path, an empty directory or a previous build is replaced (check_output)."""
    target = check_output(out, protect)
    created, tmp = [], None
    try:
        created = _make_parents(target.parent)
        tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
        for rel in sorted(files):
            (tmp / rel).write_text(files[rel], encoding="utf-8")
        (tmp / MARKER).write_text(MARKER_TEXT, encoding="utf-8")
        check_output(out, protect)  # again just before the swap: nothing appeared there meanwhile
        if os.path.lexists(target):
            old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old.", dir=target.parent))
            os.replace(target, old / "x")
            shutil.rmtree(old)
        os.replace(tmp, target)
    except BaseException as e:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        for p in created:
            try:
                p.rmdir()
            except OSError:
                pass
        if isinstance(e, OSError):
            raise _refuse(str(out), f"cannot be written ({e.strerror or e})") from None
        raise


def digest(files: dict[str, str]) -> str:
    h = hashlib.sha256()
    for k in sorted(files):
        h.update(k.encode() + b"\0" + files[k].encode() + b"\0")
    return h.hexdigest()
