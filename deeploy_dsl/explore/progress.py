"""The sweep's progress line on a terminal: `explore: STAGE: D/N done, F failed, R remaining, ETA T`, rewritten in
place (carriage return) as each point finishes, ended by a newline when the stage is done; nothing at all when the
stream is not a terminal (a log or a pipe gets the report only) or with --quiet."""
from __future__ import annotations

import sys
import time
from typing import Callable, TextIO


def eta_text(seconds: float) -> str:
    s = int(round(seconds))
    return f"{s} s" if s < 60 else f"{s // 60} min {s % 60:02d} s"


class Progress:
    """Points done / failed / remaining of one stage and an ETA (the mean time per point so far, times the rest)."""

    def __init__(self, stage: str, total: int, quiet: bool = False, stream: TextIO | None = None,
                 clock: Callable[[], float] = time.perf_counter):
        self.stage, self.total = stage, total
        self.stream = sys.stderr if stream is None else stream
        self.clock = clock
        self.done = self.failed = 0
        self.t0 = clock()
        self.shown = not quiet and total > 0 and self.stream.isatty()
        self._width = 0

    def line(self) -> str:
        left = self.total - self.done
        eta = (self.clock() - self.t0) / self.done * left if self.done else None
        return (f"explore: {self.stage}: {self.done}/{self.total} done, {self.failed} failed, {left} remaining"
                + (f", ETA {eta_text(eta)}" if eta is not None and left else ""))

    def start(self) -> None:
        self._show()

    def step(self, failed: bool) -> None:
        self.done += 1
        self.failed += bool(failed)
        self._show()

    def _show(self) -> None:
        if not self.shown:
            return
        text = self.line()
        pad = " " * max(0, self._width - len(text))  # a shorter line must cover the longer one before it
        self._width = len(text)
        end = "\n" if self.done == self.total else ""
        self.stream.write("\r" + text + pad + end)
        self.stream.flush()
