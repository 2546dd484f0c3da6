"""The three engines behind `deeploy run`: float (numpy reference), golden (numpy integer twin of
the C) and c (the generated program, built and run). All three decode the same way: the prompt's
ids one by one, then greedy until N new tokens, BOS/EOS, or the end of the context."""
from __future__ import annotations

import shutil
import subprocess
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .. import progress
from ..backend.builddir import write_build
from ..backend.cmodel import c_ident
from ..backend.codegen import render, sampler_multiplier
from ..compiler import Compiled, compile_deployment, load_tokenizer, prompt_ids
from ..errors import COMMAND_LINE, Diagnostic, Pos, ToolError
from ..frontend.interpret import load_deployment
from ..kernels import sampling as S
from ..model.float_model import FloatModel
from ..model.weights import load_weights
from .golden import Golden
from .program_io import parse_program_output, write_ids
from .qemu import build_rv32, decode_instret, run_elf

BOS, EOS = 1, 2


@dataclass(frozen=True)
class Generation:
    prompt: str
    prompt_ids: list[int]
    ids: list[int]  # the continuation only
    text: str  # the continuation only
    logits: np.ndarray  # [steps, vocab]: float for `float`, int32 for golden, c and qemu
    stats: dict = field(default_factory=dict)  # engine figures, e.g. instructions per token under QEMU
    warnings: tuple = ()  # Diagnostics for the user, e.g. --tokens clamped to the context


def argmax(logits) -> int:
    return int(np.argmax(logits))


class IntSampler:
    """The device's sampler (kernels/sampling.py, sampler.c): the same ids as the C for the same seed."""

    def __init__(self, mult: int, top_p: float, seed: int):
        self.mult, self.p, self.state = mult, S.top_p_q16(top_p), S.rng_seed(seed)

    def __call__(self, logits) -> int:
        token, self.state = S.sample(logits, self.mult, self.p, self.state)
        return token


class FloatSampler:
    """The float engine's: softmax(logits / T), the smallest most-likely set holding p of the mass, the same
    xorshift32 coin (its ids differ from the integer engines', whose logits do)."""

    def __init__(self, temperature: float, top_p: float, seed: int):
        self.t, self.p, self.state = temperature, top_p, S.rng_seed(seed)

    def __call__(self, logits) -> int:
        z = np.asarray(logits, np.float64) / self.t
        pr = np.exp(z - z.max())
        pr /= pr.sum()
        order = np.argsort(-pr, kind="stable")
        keep = order[: int(np.searchsorted(np.cumsum(pr[order]), self.p * (1 - 1e-12))) + 1]
        self.state = S.xorshift32(self.state)
        cum = np.cumsum(pr[keep])
        return int(keep[min(int(np.searchsorted(cum, self.state / 2**32 * cum[-1], side="right")), len(keep) - 1)])


def picker(dep, c: Compiled | None = None):
    """How the next token is chosen: argmax, or the deployment's sampler (integer with `c`, else float)."""
    gen = dep.generate
    if gen.sampler == "greedy":
        return argmax
    if c is None:
        return FloatSampler(gen.temperature, gen.top_p, gen.seed)
    return IntSampler(sampler_multiplier(c), gen.top_p, gen.seed)


def decode(step, prompt_ids: list[int], n_new: int, context: int, stop: bool = True, prefill=None, pick=argmax):
    """Drive `step(token, pos) -> logits` exactly as the generated main.c does; with `prefill(tokens) -> logits`,
    the prompt runs through it at once and gives one row of logits, its last token's (as main.c without
    --no-prefill). `pick(logits)` chooses each new token (argmax: greedy)."""
    ids, logits = list(prompt_ids), []
    pos = 0
    while pos < len(ids) and len(ids) - len(prompt_ids) < n_new and pos < context:
        if prefill is not None and pos == 0:
            lg = prefill(list(prompt_ids))
            pos = len(prompt_ids) - 1
        else:
            lg = step(ids[pos], pos)
        logits.append(lg)
        pos += 1
        if pos < len(ids):
            continue
        nxt = pick(lg)
        if (stop and nxt in (BOS, EOS)) or len(ids) >= context:
            break
        ids.append(nxt)
    return ids[len(prompt_ids):], np.array(logits)


def continuation_text(tok, prompt_ids: list[int], ids: list[int]) -> str:
    """The text the new ids add after the prompt (a leading space survives unless after BOS)."""
    out, prev = bytearray(), prompt_ids[-1] if prompt_ids else BOS
    for t in ids:
        if t not in (BOS, EOS):
            out += tok.decode_token(prev, t)
        prev = t
    return out.decode("utf-8", errors="replace")


@dataclass(frozen=True)
class Request:
    """What every engine runs, checked once before any expensive work: the prompt's ids and the new tokens."""
    prompt: str
    ids: list[int]
    n_new: int
    warnings: tuple = ()


def request(dep, tok, prompt: str | None, n_new: int | None) -> Request:
    """The command line's prompt and --tokens, else the .dply's; more new tokens than the context leaves after
    the prompt are clamped to what fits (the run would end there anyway), with a warning."""
    ctx = dep.model.dims.context
    text = dep.generate.prompt if prompt is None else prompt
    ids = prompt_ids(tok, text, ctx, (dep.generate.prompt_pos or dep.generate.pos) if prompt is None else COMMAND_LINE)
    want = dep.generate.tokens if n_new is None else n_new
    room = ctx - len(ids)
    if want <= room:
        return Request(text, ids, want)
    where = dep.generate.pos if n_new is None else COMMAND_LINE
    note = Diagnostic(where, f"{want} new tokens asked for, but the context of {ctx} tokens leaves room for "
                             f"{room} after the {len(ids)}-token prompt: generating at most {room}", "warning")
    return Request(text, ids, room, (note,))


def run_float(path: Path, prompt: str | None, n_new: int | None, overrides=None, stop: bool = True) -> Generation:
    dep = load_deployment(path, overrides)
    tok = load_tokenizer(dep)
    req = request(dep, tok, prompt, n_new)
    fm = FloatModel(load_weights(dep.model), dep.model.dims)
    cache = fm.new_cache(1)
    ids, logits = decode(lambda t, p: fm.forward(np.array([[t]]), p, cache)[0, -1], req.ids, req.n_new,
                         dep.model.dims.context, stop, pick=picker(dep))
    return Generation(req.prompt, req.ids, ids, continuation_text(tok, req.ids, ids), logits, warnings=req.warnings)


def run_golden_compiled(c: Compiled, prompt_ids: list[int], n_new: int, stop: bool = True, prefill: bool = False):
    """Token by token by default; prefill=True runs the prompt through the prefill plan (logits from its last token on)."""
    g = Golden(c.plan, c.alloc, c.prefill)
    return decode(g.forward, prompt_ids, n_new, c.dep.model.dims.context, stop,
                  g.prefill if prefill and c.prefill is not None else None, picker(c.dep, c))


def build_c(c: Compiled, out: Path) -> Path:
    """Write the project and make it; returns the program's path."""
    write_build(render(c), out)
    make = shutil.which("make")
    cc = shutil.which("cc") or shutil.which("gcc")
    if not make or not cc:
        raise ToolError([Diagnostic(Pos("<environment>"), "the c engine needs 'make' and a C compiler ('cc')",
                                    hint="on Debian: apt-get install -y build-essential")])
    with progress.task("compiling the C"):
        res = subprocess.run([make, "-s", "-C", str(out)], capture_output=True, text=True)
    if res.returncode != 0:
        raise ToolError([Diagnostic(Pos(str(out)), "building the generated C failed:\n" + res.stderr[-4000:])])
    return out / c_ident(c.dep.name)  # the Makefile names the program as C does (a - becomes _)


def run_c_compiled(c: Compiled, prompt_ids: list[int], n_new: int, stop: bool = True, build_dir: Path | None = None,
                   prefill: bool = False):
    """The generated program, token by token (--no-prefill) unless prefill=True: then the logits start at the
    prompt's last token."""
    with tempfile.TemporaryDirectory(prefix="deeploy-run-") as tmp:
        exe = build_c(c, (build_dir or Path(tmp) / "build"))
        logits_path, ids_path = Path(tmp) / "logits.bin", write_ids(Path(tmp), prompt_ids)
        n_new = min(n_new, c.dep.model.dims.context)  # the run ends at the context's end anyway
        cmd = [str(exe), "--ids-file", str(ids_path), "--tokens", str(n_new), "--print-ids",
               "--logits", str(logits_path)] + ([] if stop else ["--no-stop"]) + ([] if prefill else ["--no-prefill"])
        res = subprocess.run(cmd, capture_output=True, text=True)
        if res.returncode != 0:
            raise ToolError([Diagnostic(Pos(str(exe)), f"the generated program failed ({res.returncode}): {res.stderr.strip()}")])
        ids = parse_program_output(res.stdout)[0]
        logits = np.fromfile(logits_path, dtype="<i4").reshape(-1, c.dep.model.dims.vocab)
    return ids, logits


def run_spike_compiled(c: Compiled, out: Path, prompt_ids: list[int], n_new: int, stop: bool = True, cores: int = 1,
                       prefill: bool = False, profile: bool = False):
    """The RV32 image of a target with a vector unit, built into `out` and run on `cores` harts under Spike."""
    from .spike import build_spike, isa_string, run_spike_elf
    elf = build_spike(c, out, profile)
    return run_spike_elf(elf, isa_string(c.dep.target.extensions, c.dep.target.vlen), prompt_ids, n_new,
                         c.dep.model.dims.vocab, stop, cores, profile=profile, prefill=prefill)


def run(path: Path, prompt: str | None, n_new: int | None, engine: str, overrides=None,
        stop: bool = True, cores: int = 1, prefill: bool = True) -> Generation:
    if engine == "float":
        return run_float(path, prompt, n_new, overrides, stop)
    if engine == "spike":  # before any work: without Spike, say how to install it
        from .spike import require_spike
        require_spike()
    dep = load_deployment(path, overrides)
    req = request(dep, load_tokenizer(dep), prompt, n_new)  # before compiling: a bad prompt fails at once
    c = compile_deployment(path, overrides)
    pids, n_new = req.ids, req.n_new
    stats: dict = {}
    if engine in ("qemu", "spike"):
        with tempfile.TemporaryDirectory(prefix=f"deeploy-{engine}-") as tmp:
            r = run_elf(build_rv32(c, Path(tmp) / "build"), pids, n_new, c.dep.model.dims.vocab, stop, cores,
                        prefill=prefill) if engine == "qemu" else run_spike_compiled(c, Path(tmp) / "build", pids,
                                                                                     n_new, stop, cores, prefill)
        ids, logits = r.ids, r.logits
        per_core = decode_instret(r, len(pids))
        # the sum over harts is the work (what 1 core would retire); the busiest hart is the time a token takes
        stats = {"instructions_per_token": sum(per_core), "instructions_per_token_per_core": per_core,
                 "instructions_per_token_busiest_core": max(per_core)}
        if r.prefill_instret is not None:
            stats.update(prefill_tokens=len(pids), prefill_instructions=sum(r.prefill_instret),
                         prefill_instructions_per_core=list(r.prefill_instret), prefill_chunk=c.prefill.chunk)
    else:
        fn = run_golden_compiled if engine == "golden" else run_c_compiled
        ids, logits = fn(c, pids, n_new, stop, prefill=prefill)
    return Generation(req.prompt, pids, ids, continuation_text(c.tokenizer, pids, ids), logits, stats, req.warnings)
