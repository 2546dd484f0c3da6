"""A one-line progress display for the long phases (calibration, GPTQ, the C compile, QEMU runs, eval).

Phases only say what they do: `with progress.task("calibration", total=255) as tick: ... tick()`; they hold no
terminal code, and without an active display a task costs nothing and prints nothing. The command line turns the
display on around a command with `progress.shown(quiet)`: on a terminal (stdout and stderr both TTYs) and without
`--quiet`, one line on stderr, rewritten in place (`\\r`) a few times a second and erased when the task ends, so that
nothing of it stays in the output; a pipe, a file or CliRunner gets nothing.
"""
from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import Callable, Iterator, TextIO

REFRESH_S = 0.25  # redraws per second of a line whose count does not move (a compile, a QEMU run)
WIDTH = 79  # the line never wraps on a standard terminal


class _Line:
    """The active display: a stack of tasks, the innermost drawn, redrawn by a timer thread while any runs."""

    def __init__(self, stream: TextIO, clock: Callable[[], float] = time.monotonic):
        self.stream, self.clock = stream, clock
        self.tasks: list[list] = []  # [label, done, total, start]
        self.lock = threading.Lock()
        self.shown = 0  # characters on the line now
        self.stop = threading.Event()
        self.timer: threading.Thread | None = None

    def text(self) -> str:
        label, done, total, start = self.tasks[-1]
        secs = f"{self.clock() - start:.0f} s"
        if total:
            width = 20
            full = min(width, width * done // total)
            return f"{label} [{'#' * full}{'.' * (width - full)}] {done}/{total} {secs}"[:WIDTH]
        return f"{label} ... {secs}"[:WIDTH]

    def draw(self) -> None:
        with self.lock:
            text = self.text() if self.tasks else ""
            self.stream.write("\r" + text + " " * max(0, self.shown - len(text)) + ("\r" if not text else ""))
            self.stream.flush()
            self.shown = len(text)

    def push(self, label: str, total: int | None) -> list:
        t = [label, 0, total, self.clock()]
        self.tasks.append(t)
        self.draw()
        if self.timer is None:
            self.stop.clear()
            self.timer = threading.Thread(target=self._tick, daemon=True)
            self.timer.start()
        return t

    def pop(self, t: list) -> None:
        self.tasks.remove(t)
        if not self.tasks and self.timer is not None:
            self.stop.set()
            self.timer.join()
            self.timer = None
        self.draw()  # the outer task again, or the line erased

    def _tick(self) -> None:
        while not self.stop.wait(REFRESH_S):
            self.draw()


_active: _Line | None = None


def _noop(n: int = 1) -> None:
    pass


@contextmanager
def task(label: str, total: int | None = None, when: bool = True) -> Iterator[Callable[[int], None]]:
    """A long step: yields `tick(n=1)`, which advances the count towards `total` (None: no count, the elapsed time
    only). Prints nothing unless a display is shown (and `when`: a step that is long only sometimes)."""
    line = _active
    if line is None or not when:
        yield _noop
        return
    t = line.push(label, total)

    def tick(n: int = 1) -> None:
        t[1] += n
        if t[2] and t[1] >= t[2]:  # the last count shows at once; the timer draws the others
            line.draw()
    try:
        yield tick
    finally:
        line.pop(t)


def is_terminal(stream: TextIO) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # a closed or fake stream
        return False


@contextmanager
def shown(quiet: bool = False, stream: TextIO | None = None, stdout: TextIO | None = None) -> Iterator[None]:
    """Show the tasks run inside on one line of `stream` (stderr) when it and `stdout` are terminals and not `quiet`."""
    global _active
    stream, stdout = stream or sys.stderr, stdout or sys.stdout
    if quiet or _active is not None or not (is_terminal(stream) and is_terminal(stdout)):
        yield
        return
    _active = _Line(stream)
    try:
        yield
    finally:
        _active = None
