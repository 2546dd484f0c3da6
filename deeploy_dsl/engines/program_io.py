"""The generated program's I/O as every engine that runs it sees it: the prompt's ids file it reads, the
`ids:`, `instret:` and `dma:` lines it prints. Its own module so that runner (host) and qemu (RV32) share it
without importing each other."""
from __future__ import annotations

import re
from pathlib import Path

from ..errors import Diagnostic, Pos, ToolError


def parse_prefill_instret(text: str) -> tuple[int, list[int]] | None:
    """The program's `instret: prefill N c0 c1 ...` line: prompt tokens and instructions per core, or None."""
    m = re.search(r"^instret: prefill (\d+) ([\d ]+)$", text, re.M)
    return (int(m.group(1)), [int(v) for v in m.group(2).split()]) if m else None


def parse_program_output(text: str) -> tuple[list[int], dict[int, list[int]], dict[int, int]]:
    """The generated program's `ids:` line, its per-position `instret:` lines (one count per core)
    and `dma:` lines (a prefill's lines are parse_prefill_instret's)."""
    ids = next((ln.split()[1:] for ln in text.splitlines() if ln.startswith("ids:")), None)
    if ids is None:
        raise ToolError([Diagnostic(Pos("<program>"), f"the generated program printed no ids:\n{text[-2000:]}")])
    instret = {int(m.group(1)): [int(v) for v in m.group(2).split()]
               for m in re.finditer(r"^instret: pos (\d+) ([\d ]+)$", text, re.M)}
    dma = {int(m.group(1)): int(m.group(2)) for m in re.finditer(r"^dma: pos (\d+) bytes (\d+)", text, re.M)}
    return [int(t) for t in ids], instret, dma


def write_ids(folder: Path, ids: list[int]) -> Path:
    """The prompt's ids as the generated program's --ids-file reads them (argv is too small for a long prompt)."""
    path = folder / "ids.txt"
    path.write_text(" ".join(map(str, ids)) + "\n", encoding="ascii")
    return path
