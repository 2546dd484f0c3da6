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

from ..compiler import Compiled
from .cmodel import ModelC, c_ident, const_ident
from ..errors import DeeployError, Diagnostic, Pos
from .memory_map import memory_maps
from .plan_yaml import plan_yaml
from ..kernels.registry import RUNTIME_FILES
from .report import report_json
from ..model.tokenizer import c_string_literal, c_table_source, utf8

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
    return f"/* {_shape(arr.shape)} */\nconst {ctype} {ident}[{len(flat)}] = {{\n    {body}\n}};\n"


def _names(names: list[str]) -> list[str]:
    """model_step_names' initializer lines: a few quoted names a line."""
    lines, cur = [], "   "
    for n in names:
        if len(cur) + len(n) + 4 > 116:
            lines.append(cur)
            cur = "   "
        cur += f' "{n}",'
    return lines + [cur]


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
    consts = []
    for cname in sorted(plan.consts):
        arr = plan.consts[cname]
        consts.append({"name": cname, "ident": const_ident(cname), "ctype": NP_TO_C[arr.dtype], "size": arr.size,
                       "shape": f"{_shape(arr.shape)} {cname}", "arr": arr})
    kernels = sorted({s.spec.source for s in plan.steps} | set(RUNTIME_FILES))
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
        uses_npu=any(s.engine == "npu" for s in plan.steps) or bool(pre and any(s.engine == "npu" for s in pre.plan.steps)),
        pre=pre is not None)
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
