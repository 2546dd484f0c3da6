"""Diagnostics: a small error hierarchy whose every member points at a place in a `.dply` file."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Pos:
    """A place in a source file: 1-based line and column. `text` is the whole source, for carets."""

    file: str
    line: int = 0
    col: int = 0
    text: str = field(default="", repr=False, compare=False)

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col}" if self.line else self.file

    def source_line(self) -> str:
        # split on "\n" only, as the parser counts lines: str.splitlines() would also split on
        # form feeds and other characters the grammar treats as blanks, shifting every caret
        lines = self.text.split("\n")
        return lines[self.line - 1].rstrip("\r") if 0 < self.line <= len(lines) else ""


# where a value came from when it was not written in a file
COMMAND_LINE = Pos("<command line>")
BUILTIN = Pos("<built-in>")


@dataclass(frozen=True)
class Diagnostic:
    """One message for a person: where, what, and optionally how to fix it."""

    pos: Pos
    message: str
    severity: str = "error"  # or "warning"
    hint: str = ""

    def render(self) -> str:
        out = [f"{self.pos}: {self.severity}: {self.message}"]
        src = self.pos.source_line()
        if src:
            width = len(str(self.pos.line))
            out.append(f" {self.pos.line} | {src}")
            caret_col = max(self.pos.col, 1)
            # keep tabs so the caret lines up under tabbed source
            pad = "".join(c if c == "\t" else " " for c in src[: caret_col - 1])
            out.append(f" {' ' * width} | {pad}^")
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)


class DeeployError(Exception):
    """Bad input from the user: carries one or more diagnostics, never a traceback."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        self.diagnostics = list(diagnostics)
        super().__init__(self.render())

    def render(self) -> str:
        return "\n".join(d.render() for d in self.diagnostics)


class SyntaxErr(DeeployError):
    """The `.dply` text does not parse."""


class SpecError(DeeployError):
    """The `.dply` parses but says something impossible or inconsistent."""


class WeightsError(DeeployError):
    """The weights file does not match the model the `.dply` describes."""


class MemoryError_(DeeployError):
    """A memory budget cannot hold what the plan needs."""


class ToolError(DeeployError):
    """An external tool (C compiler, make) is missing or failed."""


def error(pos: Pos, message: str, hint: str = "", cls: type[DeeployError] = SpecError) -> DeeployError:
    return cls([Diagnostic(pos, message, hint=hint)])


class Collector:
    """Gathers diagnostics so several errors are reported together."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []

    def add(self, pos: Pos, message: str, hint: str = "", severity: str = "error") -> None:
        self.items.append(Diagnostic(pos, message, severity, hint))

    def extend(self, diags: list[Diagnostic]) -> None:
        self.items.extend(diags)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def raise_if_errors(self, cls: type[DeeployError] = SpecError) -> None:
        if self.errors:
            raise cls(self.errors)


def file_pos(path: Path | str) -> Pos:
    return Pos(str(path))
