"""Diagnostics: a small error hierarchy whose every member points at a place in a `.dply` file."""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from functools import lru_cache
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
        # lines end at "\n" only, as the parser counts them: str.splitlines() would also split on
        # form feeds and other characters the grammar treats as blanks, shifting every caret
        starts = _line_starts(self.text)
        if not 0 < self.line <= len(starts):
            return ""
        end = self.text.find("\n", starts[self.line - 1])
        return self.text[starts[self.line - 1]:end if end >= 0 else len(self.text)].rstrip("\r")


@lru_cache(maxsize=4)
def _line_starts(text: str) -> tuple[int, ...]:
    """Where each line of `text` starts: computed once per text, so that any number of diagnostics render in time
    linear in their count (a str caches its hash, so the lookup does not rehash the text)."""
    return (0,) + tuple(m.end() for m in re.finditer("\n", text))


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
            src, caret_col = _window(src, max(self.pos.col, 1))
            out.append(f" {self.pos.line} | {src}")
            # keep tabs so the caret lines up under tabbed source
            pad = "".join(c if c == "\t" else " " for c in src[: caret_col - 1])
            out.append(f" {' ' * width} | {pad}^")
        if self.hint:
            out.append(f"    hint: {self.hint}")
        return "\n".join(out)


SHOWN_WIDTH = 160  # a longer source line is shown as a window around the caret


def _window(src: str, col: int) -> tuple[str, int]:
    """The part of a long line around column `col`, marked '...' where cut, and the caret's column in it."""
    if len(src) <= SHOWN_WIDTH:
        return src, col
    start = max(0, min(col - 1 - SHOWN_WIDTH // 2, len(src) - SHOWN_WIDTH))
    head = "..." if start else ""
    tail = "..." if start + SHOWN_WIDTH < len(src) else ""
    return head + src[start:start + SHOWN_WIDTH] + tail, col - start + len(head)


MAX_ERRORS = 20  # errors kept and shown; beyond them only their number is said


class DeeployError(Exception):
    """Bad input from the user: carries one or more diagnostics, never a traceback.

    Only the first MAX_ERRORS errors are kept (`omitted` counts the rest), so a file with thousands of
    bad values is reported in time and space linear in its size."""

    def __init__(self, diagnostics: list[Diagnostic] | Diagnostic, omitted: int = 0):
        if isinstance(diagnostics, Diagnostic):
            diagnostics = [diagnostics]
        kept, n_errors = [], 0
        for d in diagnostics:
            n_errors += d.severity == "error"
            if d.severity != "error" or n_errors <= MAX_ERRORS:
                kept.append(d)
        self.diagnostics = kept
        self.omitted = omitted + max(0, n_errors - MAX_ERRORS)
        super().__init__(self.render())

    def render(self) -> str:
        out = [d.render() for d in self.diagnostics]
        if self.omitted:
            out.append(f"and {self.omitted} more error{'s' if self.omitted > 1 else ''}")
        return "\n".join(out)


class SyntaxErr(DeeployError):
    """The `.dply` text does not parse."""


class SpecError(DeeployError):
    """The `.dply` parses but says something impossible or inconsistent."""


class WeightsError(DeeployError):
    """The weights file does not match the model the `.dply` describes."""


class MemoryBudgetError(DeeployError):
    """A memory budget cannot hold what the plan needs."""


class ToolError(DeeployError):
    """An external tool (C compiler, make) is missing or failed."""


def error(pos: Pos, message: str, hint: str = "", cls: type[DeeployError] = SpecError) -> DeeployError:
    return cls([Diagnostic(pos, message, hint=hint)])


class Collector:
    """Gathers diagnostics so several errors are reported together; after MAX_ERRORS it only counts them."""

    def __init__(self) -> None:
        self.items: list[Diagnostic] = []
        self.omitted = 0  # errors beyond MAX_ERRORS, counted, not kept
        self._n_errors = 0

    def add(self, pos: Pos, message: str, hint: str = "", severity: str = "error") -> None:
        self.extend([Diagnostic(pos, message, severity, hint)])

    def extend(self, diags: list[Diagnostic]) -> None:
        for d in diags:
            if d.severity == "error":
                self._n_errors += 1
                if self._n_errors > MAX_ERRORS:
                    self.omitted += 1
                    continue
            self.items.append(d)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def raise_if_errors(self, cls: type[DeeployError] = SpecError) -> None:
        if self.errors:
            raise cls(self.errors, self.omitted)


def file_pos(path: Path | str) -> Pos:
    return Pos(str(path))
