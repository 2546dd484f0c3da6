"""The `qemu` engine: build the generated project for bare-metal RV32 and run it under QEMU.

`-icount shift=0` makes QEMU retire exactly one instruction per virtual clock, so the program's
minstret readings around forward() are exact, repeatable instruction counts: the unit benchmarks
use. Files and arguments cross into the guest by semihosting.
"""
from __future__ import annotations

import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import progress
from ..backend.builddir import write_build
from ..backend.cmodel import c_ident
from ..backend.codegen import render
from ..compiler import Compiled
from ..errors import Diagnostic, Pos, ToolError
from .program_io import parse_prefill_instret, parse_program_output, write_ids

PACKAGES = "gcc-riscv64-unknown-elf picolibc-riscv64-unknown-elf qemu-system-misc"
TOOLS = ("riscv64-unknown-elf-gcc", "riscv64-unknown-elf-nm", "qemu-system-riscv32", "make")


@dataclass(frozen=True)
class QemuRun:
    ids: list[int]
    logits: np.ndarray  # int32 [steps, vocab]
    instret: dict  # position -> [instructions each core retired doing work at that position]
    profile: dict = None  # PROFILE=1 builds: step op -> [instructions per core, summed over the decode steps]
    decoded: int = 0  # how many decode steps the profile sums
    prefill_instret: list = None  # with prefill: instructions each core retired in prefill() of the whole prompt


def missing_tools() -> list[str]:
    return [t for t in TOOLS if shutil.which(t) is None]


def require_tools() -> None:
    missing = missing_tools()
    if missing:
        raise ToolError([Diagnostic(Pos("<environment>"), f"the qemu engine needs {', '.join(missing)}",
                                    hint=f"on Debian: apt-get install -y {PACKAGES}")])


def build_rv32(c: Compiled, out: Path, profile: bool = False) -> Path:
    """Write the project into `out` and build its RV32 image (with per-step counters if `profile`);
    returns the ELF's path."""
    require_tools()
    write_build(render(c), out)
    with progress.task("compiling the RV32 image"):
        res = subprocess.run(["make", "-s", "-C", str(out), "rv32"] + (["PROFILE=1"] if profile else []),
                             capture_output=True, text=True)
    if res.returncode != 0:
        raise ToolError([Diagnostic(Pos(str(out)), "building the RV32 image failed:\n" + (res.stderr + res.stdout)[-4000:])])
    return out / f"{c_ident(c.dep.name)}.elf"  # the Makefile names the program as C does (a - becomes _)


def _semihosting_args(args: list[str]) -> str:
    # QEMU splits its option string on commas; a doubled comma is a literal one
    return ",".join(["enable=on", "target=native"] + [f"arg={a.replace(',', ',,')}" for a in args])


def run_elf(elf: Path, prompt_ids: list[int], n_new: int, vocab: int, stop: bool = True, cores: int = 1,
            timeout: float = 600, profile: bool = False, prefill: bool = False) -> QemuRun:
    """prefill: the prompt through prefill() (its instructions in QemuRun.prefill_instret), else forward() per token."""
    require_tools()
    work = elf.parent
    write_ids(work, prompt_ids)  # read by the guest through semihosting, relative to QEMU's working directory
    args = ["--ids-file", "ids.txt", "--tokens", str(n_new), "--print-ids", "--instret",
            "--cores", str(cores),
            "--logits", "logits.bin"] + ([] if stop else ["--no-stop"]) + (["--profile"] if profile else []) \
        + ([] if prefill else ["--no-prefill"])
    cmd = ["qemu-system-riscv32", "-machine", "virt", "-bios", "none", "-nographic", "-monitor", "none",
           "-icount", "shift=0", "-smp", str(cores), "-semihosting-config", _semihosting_args(args),
           "-kernel", str(elf)]
    (work / "logits.bin").unlink(missing_ok=True)
    try:
        with progress.task(f"QEMU, {cores} hart{'s' if cores > 1 else ''}"):
            res = subprocess.run(cmd, capture_output=True, text=True, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError([Diagnostic(Pos(str(elf)), f"QEMU did not finish within {timeout:.0f} s")]) from None
    text = res.stdout + res.stderr
    if res.returncode != 0:
        raise ToolError([Diagnostic(Pos(str(elf)), f"the RV32 program failed under QEMU ({res.returncode}):\n{text[-2000:]}")])
    ids, instret, _ = parse_program_output(text)
    logits = np.fromfile(work / "logits.bin", dtype="<i4").reshape(-1, vocab)
    prof, decoded = parse_profile(text)
    pf = parse_prefill_instret(text)
    return QemuRun(ids, logits, instret, prof if profile else None, decoded, pf[1] if pf else None)


def parse_profile(text: str) -> tuple[dict, int]:
    """A PROFILE=1 run's lines: step op -> [instructions per core over the decode steps], and how many steps."""
    prof, decoded = {}, 0
    for ln in text.splitlines():
        if ln.startswith("profile: decode steps "):
            decoded = int(ln.split()[-1])
        elif ln.startswith("profile: "):
            op, *counts = ln.split()[1:]
            prof[op] = [int(v) for v in counts]
    return prof, decoded


def decode_instret(run: QemuRun, n_prompt: int) -> list[int]:
    """Per core, mean instructions per decode token: steps whose input is a generated token, not the prompt."""
    decode = [counts for pos, counts in run.instret.items() if pos >= n_prompt]
    if not decode:
        return []
    return [round(sum(c[k] for c in decode) / len(decode)) for k in range(len(decode[0]))]
