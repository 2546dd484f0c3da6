"""A seeded, grammar-aware fuzzer of `.dply` inputs, shared by tests/test_hostile_dsl.py and bench/fuzz_dply.py.

`cases(seed, n)` yields inputs: structural mutations of the example deployments (lines deleted, duplicated or
swapped, tokens inserted, characters flipped, numbers made huge, calls nested deep, invalid UTF-8, long lines,
thousands of errors, oversized files), sentences generated from grammar/deeploy.lark (free, and shaped like a
deployment), and `-D` override sets. `Checker.run(case)` takes one through what `deeploy check` does and sorts
the outcome: accepted, a clean error at file:line:col (or on the command line), a clean error without a
position, a traceback, or a run over the time limit.
"""
from __future__ import annotations

import dataclasses
import random
import re
import signal
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from deeploy_dsl.errors import DeeployError, Pos

REPO = Path(__file__).resolve().parents[1]
SEED_FILES = ("deployments/stories260k.dply", "deployments/tinystories.dply")
CALIB_TEXT = "Once upon a time there was a little cat. She liked to play in the sun.\n" * 8

# ---- the words and shapes of the grammar ------------------------------------------------------------

BLOCK_SETTINGS = {
    "model": ("weights", "tokenizer", "dim", "layers", "heads", "kv_heads", "hidden", "vocab", "context", "norm_eps",
              "rope_theta", "tied"),
    "quantize": ("weights", "activations", "kv_cache", "residual", "keys", "queries", "dynamic", "gate_up"),
    "memory": ("L1", "L2", "L3"),
    "generate": ("tokens", "sampler", "prompt", "prefill"),
    "map": (),
}
TOP = ("deployment", "target", "strict")
WORDS = ("llama", "int8", "int4", "int12", "int16", "per_channel", "per_group", "gptq", "nearest", "samples", "max", "mse",
         "percentile", "calibrate", "holds", "weights", "kv_cache", "activations", "double_buffer", "cluster", "npu",
         "auto", "cores", "greedy", "yes", "no", "siracusa", "host", "generic-rv32", "swiglu", "none", "tokens",
         "seed", "stat", "default", "lm_head", "layers", "attn", "mlp", "qkv", "down", "up", "gate", "KB", "maybe")
PATTERNS = ("default", "lm_head", "layers[*].attn.*", "layers[*].mlp.*", "layers[0..2].attn.qkv", "layers[1].mlp.down",
            "layers[*].*", "layers[3..1].*", "*", "layers[99].attn.*", "embed", "layers[0].attn.q")
UNITS = ("B", "KiB", "MiB", "GiB")
BOUNDARY_NUMBERS = ("0", "-1", "1", "2", "7", "8", "255", "256", "65535", "65536", "2147483647", "2147483648",
                    "4294967296", "9223372036854775807", "9223372036854775808", "18446744073709551616",
                    "99999999999999999999", "1" + "0" * 39, "1" + "0" * 40, "9" * 300, "9" * 4301, "1e308", "1e999",
                    "-1e999", "1e-400", "0.5", "-0.0", "3.14", "1e5", "+7", "0001")
PUNCT = ("{", "}", "(", ")", "[", "]", "=", ",", ".", "*", "->", "..", "\n", "#", '"', "-", "\\")
ODD_TEXT = ("\\ud800", "\\udfff", "\\uD83D\\uDE00", "\\u0000", "\\x41", "\\", "\t", "\f", "\r", "\x00", "\x7f",
            "\u2028", "\ufeff", "é", "漢字", "😀", "\u0301")
INVALID_UTF8 = (b"\xff", b"\xfe", b"\x80", b"\xc0\x80", b"\xe2\x82", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                b"\xf0\x9f\x98", b"\xc3")
DEFINE_KEYS = ("target", "strict", "deployment", "memory.L1", "memory.L2", "generate.tokens", "generate.prompt",
               "generate.prefill", "generate.sampler", "quantize.weights", "quantize.activations", "quantize.keys",
               "quantize.queries", "quantize.dynamic", "quantize.gate_up", "model.dim", "model.context", "model.layers", "model.weights", "model.tokenizer",
               "map.lm_head", "map.layers[*].attn.*", "map.default", "nosuch.key", "generate", "map.")


@dataclass(frozen=True)
class Case:
    kind: str  # which generator made it
    data: bytes  # the .dply file
    defines: tuple[str, ...] = ()  # -D overrides


def seed_texts() -> list[str]:
    """The example deployments, with their model paths made absolute so that they can be written anywhere."""
    out = []
    for rel in SEED_FILES:
        path = REPO / rel
        text = path.read_text()
        out.append(re.sub(r'"(\.\./[^"]*)"', lambda m: '"' + str((path.parent / m.group(1)).resolve()) + '"', text))
    return out


# ---- value and sentence generators --------------------------------------------------------------------

def number(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.4:
        return rng.choice(BOUNDARY_NUMBERS)
    if r < 0.7:
        return str(rng.choice((1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096, 100, 3, 5)))
    if r < 0.85:
        return f"{rng.uniform(-10, 200):.{rng.randint(0, 4)}f}"
    return f"{rng.randint(-9, 99)}e{rng.randint(-20, 30)}"


def string(rng: random.Random) -> str:
    parts = [rng.choice(("Once upon a time", "model.safetensors", "tok512.bin", "calib.txt", "", " ", "x" * 100))]
    for _ in range(rng.randint(0, 2)):
        parts.insert(rng.randint(0, len(parts)), rng.choice(ODD_TEXT))
    return '"' + "".join(parts).replace('"', '\\"') + '"'


def name(rng: random.Random) -> str:
    r = rng.random()
    if r < 0.6:
        return rng.choice(WORDS)
    if r < 0.9:
        return rng.choice(TOP + tuple(k for v in BLOCK_SETTINGS.values() for k in v) + tuple(BLOCK_SETTINGS))
    return "".join(rng.choice("abcxyz_-019") for _ in range(rng.randint(1, 8))).lstrip("-0123456789") or "n"


def value(rng: random.Random, depth: int = 0) -> str:
    r = rng.random()
    if r < 0.2:
        return number(rng)
    if r < 0.35:
        return f"{number(rng)} {rng.choice(UNITS)}"
    if r < 0.5:
        return string(rng)
    if r < 0.8 or depth > 3:
        return name(rng)
    args = []
    for _ in range(rng.randint(0, 3)):
        v = value(rng, depth + 1)
        args.append(f"{name(rng)} = {v}" if rng.random() < 0.5 else v)
    return f"{name(rng)}({', '.join(args)})"


def setting(rng: random.Random, key: str | None = None) -> str:
    vals = [value(rng) for _ in range(rng.choices((0, 1, 2, 3, 5), (1, 6, 3, 2, 1))[0])]
    return f"{key or name(rng)} " + rng.choice((" ", ", ")).join(vals)


def mapping(rng: random.Random) -> str:
    engine = rng.choice(("cluster", "npu", "auto", "int8", "int4", f"cluster(cores = {number(rng)})",
                         f"int4({number(rng)})", name(rng)))
    return f"{rng.choice(PATTERNS)} -> {engine}"


def grammar_sentence(rng: random.Random) -> str:
    """A free sentence of the grammar: settings and blocks of settings and mapping lines, words mostly known."""
    lines = []
    for _ in range(rng.randint(1, 8)):
        if rng.random() < 0.4:
            lines.append(setting(rng))
            continue
        kind = rng.choice(tuple(BLOCK_SETTINGS) + ("block",))
        label = f" {name(rng)}" if rng.random() < 0.2 else ""
        lines.append(f"{kind}{label} {{")
        keys = BLOCK_SETTINGS.get(kind, ()) or (None,)
        for _ in range(rng.randint(0, 5)):
            lines.append("    " + (mapping(rng) if kind == "map" or rng.random() < 0.1 else setting(rng, rng.choice(keys))))
        lines.append("}")
    return "\n".join(lines) + "\n"


def deployment_sentence(rng: random.Random, seeds: list[str]) -> str:
    """A sentence shaped like a deployment: each setting of an example, its value kept or redrawn."""
    out = []
    for ln in rng.choice(seeds).split("\n"):
        m = re.match(r"(\s*)([A-Za-z_][\w-]*)(\s+)(.+?)(\s*#.*)?$", ln)
        if m and not ln.rstrip().endswith("{") and rng.random() < 0.3:
            ln = m.group(1) + m.group(2) + m.group(3) + " ".join(value(rng) for _ in range(rng.randint(1, 3)))
        out.append(ln)
    return "\n".join(out)


# ---- structural mutations of the examples ---------------------------------------------------------------

def _lines(text: str) -> list[str]:
    return text.split("\n")


def delete_line(rng, text):
    ls = _lines(text)
    del ls[rng.randrange(len(ls))]
    return "\n".join(ls)


def duplicate_line(rng, text):
    ls = _lines(text)
    ls.insert(rng.randrange(len(ls) + 1), rng.choice(ls))
    return "\n".join(ls)


def swap_lines(rng, text):
    ls = _lines(text)
    i, j = rng.randrange(len(ls)), rng.randrange(len(ls))
    ls[i], ls[j] = ls[j], ls[i]
    return "\n".join(ls)


def insert_tokens(rng, text):
    for _ in range(rng.randint(1, 4)):
        tok = rng.choice((rng.choice(PUNCT), name(rng), number(rng), string(rng), rng.choice(UNITS)))
        i = rng.randrange(len(text) + 1)
        text = text[:i] + rng.choice(("", " ")) + tok + rng.choice(("", " ")) + text[i:]
    return text


def flip_chars(rng, text):
    chars = list(text)
    for _ in range(rng.randint(1, 5)):
        alphabet = rng.choice(("{}()[]=.,*\"#\n -_>\\", "abcdefghijklmnopqrstuvwxyz", "0123456789", "".join(ODD_TEXT)))
        chars[rng.randrange(len(chars))] = rng.choice(alphabet)
    return "".join(chars)


_NUMBER_RE = re.compile(r"(?<![\w.])[0-9]+(\.[0-9]+)?(?![\w.])")


def huge_number(rng, text):
    spots = list(_NUMBER_RE.finditer(text))
    if not spots:
        return text + rng.choice(BOUNDARY_NUMBERS)
    m = rng.choice(spots)
    return text[:m.start()] + rng.choice(BOUNDARY_NUMBERS) + text[m.end():]


def deep_nesting(rng, text):
    k = rng.choice((3, 7, 8, 9, 30, 500, 1000, 20000))
    inner = "f(" * k + number(rng) + ")" * k if rng.random() < 0.8 else "(" * k
    spot = rng.choice([m.end() for m in re.finditer(r"= ", text)] or [len(text)])
    return text[:spot] + inner + text[spot:]


def long_line(rng, text):
    n = rng.choice((4000, 4096, 4097, 5000, 20000, 70000))
    piece = rng.choice((" x", " 1", '"' + "a" * n + '"', "# " + "c" * n, "9" * n, " " * n, "f(" * (n // 2)))
    ls = _lines(text)
    i = rng.randrange(len(ls))
    ls[i] = ls[i] + (piece * (n // len(piece) + 1))[:n]
    return "\n".join(ls)


def many_errors(rng, text):
    k = rng.choice((25, 300, 2000, 20000))
    bad = rng.choice(("zz", "1", '"s"', "holds", "f(1)"))
    how = rng.random()
    if how < 0.4:  # many bad values, wrapped onto lines short enough to be read
        per_line = max(1, 4000 // (len(bad) + 1))
        lines = [f"    dynamic {' '.join([bad] * min(per_line, k - i))}" for i in range(0, k, per_line)]
        if re.search(r"^    dynamic .*$", text, re.M):  # the deployment's own dynamic line makes room for them
            return re.sub(r"^    dynamic .*$", lambda m: "\n".join(lines), text, count=1, flags=re.M)
        return text + "\n".join(lines)
    if how < 0.7:  # many unknown settings in a block
        return text.replace("generate {", "generate {\n" + f"    {bad}x 1\n" * k, 1)
    return text + "\n" + "".join(f"unknown{i} {{\n}}\n" for i in range(k))  # many unknown blocks


def big_file(rng, text):
    size = rng.choice((60 << 10, (64 << 10) - len(text), 64 << 10, (64 << 10) + 1, 1 << 20))
    pad = rng.choice(("# padding\n", "\n", "    \n", "\t\f\n"))
    return text + pad * (max(0, size - len(text)) // len(pad) + 1)


def odd_string(rng, text):
    odd = rng.choice(ODD_TEXT)
    spots = [m.start() + 1 for m in re.finditer(r'"', text)]
    i = rng.choice(spots) if spots else 0
    return text[:i] + odd + text[i:]


def block_label(rng, text):
    spots = [m.start(2) for m in re.finditer(r"^(\w+)( )\{", text, re.M)]
    i = rng.choice(spots) if spots else 0
    return text[:i] + " " + name(rng) + text[i:]


def calibrate_junk(rng, text):
    tail = rng.choice((" junk", " 5", ' "x"', " calibrate(samples)", ", tokens = 4", " (", " )", ""))
    args = rng.choice(("tokens = " + number(rng), "seed = " + number(rng), "stat = " + value(rng), "samples",
                       '"text.txt"', value(rng), "tokens = 1, tokens = 2", "stat = percentile(" + number(rng) + ")"))
    return re.sub(r"calibrate\([^\n]*\)", lambda m: f"calibrate(samples, {args}){tail}", text, count=1)


TEXT_MUTATIONS = (delete_line, duplicate_line, swap_lines, insert_tokens, flip_chars, huge_number, deep_nesting,
                  long_line, many_errors, big_file, odd_string, block_label, calibrate_junk)


def invalid_utf8(rng, data: bytes) -> bytes:
    for _ in range(rng.randint(1, 3)):
        i = rng.randrange(len(data) + 1)
        data = data[:i] + rng.choice(INVALID_UTF8) + data[i:]
    return data


# settings a user would really try with -D (README): mostly valid, so that the compile phases after validation run.
# Not gptq: its calibration pass alone takes ~12 s of CPU on stories260K (gptq.Hessians), over the time limit that
# is here to catch hangs
KNOBS = ("target=host", "target=generic-rv32", "memory.L1=16KiB", "memory.L1=64KiB", "memory.L1=4KiB",
         "memory.L1=1KiB", "memory.L2=512KiB", "memory.L2=1MiB", "generate.prefill=1", "generate.prefill=64",
         "generate.prefill=512", "quantize.weights=int4 per_group(32)", "quantize.weights=int4 per_group(8)",
         "quantize.weights=int8 per_channel nearest", "quantize.keys=int8", "quantize.dynamic=none",
         "quantize.queries=int12", "quantize.queries=int16", "quantize.gate_up=int16",
         "quantize.activations=int8 calibrate(samples, tokens = 512, stat = max)",
         "quantize.activations=int8 calibrate(\"text.txt\", tokens = 256, stat = mse)",
         "map.layers[*].attn.*=npu", "map.layers[*].mlp.*=npu", "map.layers[*].*=auto", "map.lm_head=npu",
         "map.default=cluster(cores = 1)", "map.default=cluster(cores = 3)", "map.layers[*].attn.*=npu", "strict=yes",
         "model.context=128", "model.context=64", "generate.tokens=1")


def define(rng: random.Random) -> str:
    key = rng.choice(DEFINE_KEYS)
    r = rng.random()
    if r < 0.5:
        val = value(rng)
    elif r < 0.65:
        val = rng.choice(BOUNDARY_NUMBERS) + rng.choice(("", "KiB", " KiB", " MiB"))
    elif r < 0.8:
        val = "".join(rng.choice('{}()[]=.,*"#\\ ->abc019\n\r\t') for _ in range(rng.randint(0, 12)))
    elif r < 0.9:  # what Python makes of command-line bytes that are not UTF-8
        val = rng.choice(('"\udcff"', "\udcc3", '"a\udc80b"', "host\udcff"))
    else:
        val = rng.choice(("x" * 5000, '"' + "p" * 5000 + '"', "f(" * 100 + ")" * 100, ""))
    return f"{key}={val}" if rng.random() < 0.95 else key + val


# ---- the campaign ------------------------------------------------------------------------------------

def cases(seed: int, n: int):
    """`n` inputs from generator seed `seed`, the same on every machine."""
    rng = random.Random(seed)
    seeds = seed_texts()
    for _ in range(n):
        r = rng.random()
        defines: tuple[str, ...] = ()
        if r < 0.55:
            text = rng.choice(seeds)
            muts = [rng.choice(TEXT_MUTATIONS) for _ in range(rng.choices((1, 2, 3), (6, 3, 1))[0])]
            for m in muts:
                text = m(rng, text)
            kind, data = "+".join(m.__name__ for m in muts), text.encode("utf-8", "surrogatepass")
        elif r < 0.62:
            kind, data = "invalid_utf8", invalid_utf8(rng, rng.choice(seeds).encode())
        elif r < 0.75:
            kind, data = "grammar", grammar_sentence(rng).encode("utf-8", "surrogatepass")
        elif r < 0.87:
            kind, data = "deployment_sentence", deployment_sentence(rng, seeds).encode("utf-8", "surrogatepass")
        elif r < 0.97:
            kind, data = "defines", rng.choice(seeds).encode()
            defines = tuple(define(rng) for _ in range(rng.randint(1, 3)))
        else:
            kind, data = "knobs", rng.choice(seeds).encode()
            defines = tuple(rng.choice(KNOBS) for _ in range(rng.randint(1, 3)))
        yield Case(kind, data, defines)


class Timeout(BaseException):
    """The per-input time limit ran out (a BaseException, so that no `except Exception` in the compiler eats it)."""


@dataclass
class Outcome:
    status: str  # accepted | positioned | unpositioned | traceback | timeout | build-only (check passed, render failed)
    seconds: float  # CPU time
    phase: str  # load (parse, check), validate (model files, prompt), compile, cached (an equal deployment's)
    message: str = ""


def is_positioned(pos: Pos) -> bool:
    return pos.file == "<command line>" or (pos.line >= 1 and pos.col >= 1 and bool(pos.file))


# fields no compile phase reads: the warnings (positions), generate's token count and prompt (codegen's)
UNCOMPILED = {"Deployment": ("warnings",), "GenSpec": ("tokens", "prompt", "prompt_pos")}


def canonical(obj):
    """A deployment as plain data without source positions, hashable: equal for inputs that compile the same."""
    if isinstance(obj, Pos):
        return None
    if dataclasses.is_dataclass(obj):
        skip = UNCOMPILED.get(type(obj).__name__, ())
        return (type(obj).__name__,) + tuple((f.name, canonical(getattr(obj, f.name))) for f in dataclasses.fields(obj)
                                             if f.name not in skip)
    if isinstance(obj, dict):
        return tuple(sorted((k, canonical(v)) for k, v in obj.items()))
    if isinstance(obj, (list, tuple)):
        return tuple(canonical(v) for v in obj)
    return str(obj) if isinstance(obj, Path) else obj


class Checker:
    """Runs inputs as `deeploy check` does, in-process. With `compile_valid`, an input that passes validation is
    compiled (weights, calibration, lowering, tiling, allocation), once per distinct deployment: `generate`'s tokens
    and prompt are read by no compile phase, so they are left out of the key (the prompt is checked per input).
    With `render` too, what compiles is also rendered to C as `build` does (without writing it): an error there is
    a rejection `check` missed ("build-only")."""

    def __init__(self, workdir: Path, compile_valid: bool, time_limit: float = 10.0, render: bool = False):
        self.dir, self.compile_valid, self.limit, self.render = Path(workdir), compile_valid, time_limit, render
        self.wall_limit = 6 * time_limit  # a wait that uses no CPU (a blocking read) is caught by the wall clock
        self.dir.mkdir(parents=True, exist_ok=True)
        (self.dir / "text.txt").write_text(CALIB_TEXT)
        self.path = self.dir / "fuzz.dply"
        self.compiled: dict = {}  # canonical deployment -> (status, message)

    def run(self, case: Case) -> Outcome:
        """The limit is on the process's CPU time, which other programs on the machine do not inflate (Outcome's
        seconds are CPU seconds too); a blocking wait is caught after `wall_limit` seconds of wall time."""
        self.path.write_bytes(case.data)
        phase = ["load"]
        t0 = time.process_time()
        old = {s: signal.signal(s, _raise_timeout) for s in (signal.SIGPROF, signal.SIGALRM)}
        signal.setitimer(signal.ITIMER_PROF, self.limit)
        signal.setitimer(signal.ITIMER_REAL, self.wall_limit)
        try:
            status, message = self._check(case, phase)
        except Timeout:
            status, message = "timeout", f"over {self.limit:g} s of CPU time or {self.wall_limit:g} s of wall time"
        except DeeployError as e:
            bad = [d for d in e.diagnostics if d.severity == "error" and not is_positioned(d.pos)]
            status, message = ("unpositioned", bad[0].render()) if bad else ("positioned", e.diagnostics[0].render())
        except BaseException as e:  # a traceback for the user: the finding this fuzzer looks for
            if isinstance(e, KeyboardInterrupt):
                raise
            status, message = "traceback", "".join(traceback.format_exception(e))
        finally:
            signal.setitimer(signal.ITIMER_PROF, 0)
            signal.setitimer(signal.ITIMER_REAL, 0)
            for s, handler in old.items():
                signal.signal(s, handler)
        return Outcome(status, time.process_time() - t0, phase[0], message)

    def _check(self, case: Case, phase: list) -> tuple[str, str]:
        from deeploy_dsl.compiler import check_prompt, compile_deployment, load_tokenizer
        from deeploy_dsl.frontend.interpret import load_deployment
        from deeploy_dsl.model.weights import load_weights
        dep = load_deployment(self.path, list(case.defines))
        phase[0] = "validate"
        load_weights(dep.model)
        tok = load_tokenizer(dep)
        if tok is not None:
            check_prompt(dep, tok)
        if not self.compile_valid:
            return "accepted", ""
        key = canonical(dep)
        if key in self.compiled:
            phase[0] = "cached"
            status, message = self.compiled[key]
            return status, message
        phase[0] = "compile"
        try:
            c = compile_deployment(self.path, list(case.defines))
            self.compiled[key] = ("accepted", "")
        except DeeployError as e:  # the same deployment fails the same way; keep how, then report it
            bad = [d for d in e.diagnostics if d.severity == "error" and not is_positioned(d.pos)]
            self.compiled[key] = ("unpositioned", bad[0].render()) if bad else ("positioned", e.diagnostics[0].render())
            raise
        if self.render:
            from deeploy_dsl.backend.codegen import render
            phase[0] = "render"
            try:
                render(c)
            except DeeployError as e:
                self.compiled[key] = ("build-only", e.render())
                return self.compiled[key]
        return "accepted", ""


def _raise_timeout(signum, frame):
    raise Timeout()
