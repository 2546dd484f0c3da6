"""`deeploy fmt`: one canonical layout for `.dply` files, so that review diffs show changes, not whitespace.

Line by line, since the language is: a setting or mapping per line, blocks opened by `NAME [NAME] {` and closed by a
`}` line. Inside a block, four spaces of indentation and the values of consecutive settings aligned one space past the
longest key (mapping arrows likewise past the longest pattern); whitespace inside a line collapsed to one space,
`, ` after commas, ` = ` around `=`, ` -> ` around arrows, `256 KiB` with its space; one space before a trailing
`# comment`; comments kept, at the indentation of their block; one blank line between top-level blocks and at most
one anywhere. The result must parse to the same document as the original, or nothing is written.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import re
import tempfile
from pathlib import Path

from ..errors import Diagnostic, Pos, SpecError
from .parse import parse_text

INDENT = "    "
_UNIT = re.compile(r"(?<![A-Za-z0-9_.])(-?\d+(?:\.\d+)?)\s*(B|KiB|MiB|GiB)\b")


def _split_comment(line: str) -> tuple[str, str]:
    """(code, comment): the first '#' outside a "string" starts the comment."""
    in_str = esc = False
    for i, ch in enumerate(line):
        if in_str:
            if esc:
                esc = False
            elif ch == "\\":
                esc = True
            elif ch == '"':
                in_str = False
        elif ch == '"':
            in_str = True
        elif ch == "#":
            return line[:i], line[i:].rstrip()
    return line, ""


def _pieces(code: str) -> list[tuple[bool, str]]:
    """The code as (is_string, text) pieces, so that normalising never touches a string's contents."""
    out, i = [], 0
    for m in re.finditer(r'"(?:[^"\\]|\\.)*"', code):
        out += [(False, code[i:m.start()]), (True, m.group(0))]
        i = m.end()
    return out + [(False, code[i:])]


def _normal(code: str) -> str:
    """Whitespace between tokens as the canonical layout writes it."""
    out = []
    for is_str, text in _pieces(code):
        if not is_str:
            text = re.sub(r"[ \t\f]+", " ", text)
            text = re.sub(r"\s*,\s*", ", ", text)
            text = re.sub(r"\s*->\s*", " -> ", text)
            text = re.sub(r"\s*=\s*", " = ", text)
            text = re.sub(r"\(\s+", "(", text)
            text = re.sub(r"\s+\)", ")", text)
            text = _UNIT.sub(r"\1 \2", text)
        out.append(text)
    return "".join(out).strip()


def _key_rest(code: str) -> tuple[str, str]:
    parts = code.split(" ", 1)
    return parts[0], parts[1] if len(parts) > 1 else ""


def _aligned(rows: list[tuple[int, str, str]], out: list[str]) -> None:
    """Consecutive settings (or mappings) of a block: values aligned one past the longest key."""
    width = max(len(k) for _, k, _ in rows)
    for i, k, rest in rows:
        out[i] = (out[i][0], (f"{k:<{width}} {rest}" if rest else k), out[i][2])


def format_text(text: str, path: Path, display: str | None = None) -> str:
    """The canonical layout of a .dply's text; SpecError (positioned) if it does not parse, or if the layout would change
    what it says (a bug: nothing is written)."""
    before = parse_text(text, path, display)
    lines: list[tuple[int, str, str]] = []  # (depth, code, comment)
    blocks: list[str] = []  # each line's block kind ("" outside)
    depth, kind = 0, ""
    for raw in text.replace("\r\n", "\n").split("\n"):
        code, comment = _split_comment(raw)
        code = _normal(code)
        if code == "}":
            depth, kind = 0, ""
        lines.append((depth if code != "}" else 0, code, comment))
        blocks.append(kind)
        if code.endswith("{"):
            depth, kind = 1, code.split(" ", 1)[0]
    # alignment: runs of settings / mappings at depth 1, split by blank lines and block ends
    run: list[tuple[int, str, str]] = []
    arrows: list[tuple[int, str, str]] = []

    def flush():
        if run:
            _aligned(run, lines)
        if arrows:
            _aligned(arrows, lines)
        run.clear()
        arrows.clear()
    for i, (d, code, _) in enumerate(lines):
        if d != 1 or not code:
            if not code and not lines[i][2]:
                flush()
            elif d != 1:
                flush()
            continue
        if " -> " in code:
            pat, eng = code.split(" -> ", 1)
            arrows.append((i, pat, f"-> {eng}"))
        elif blocks[i] == "memory" and " holds " in code:  # `L2 2 MiB    holds ...`: the level's size with its key
            level, holds = code.split(" holds ", 1)
            run.append((i, level, f"holds {holds}"))
        else:
            run.append((i, *_key_rest(code)))
    flush()
    out: list[str] = []
    for d, code, comment in lines:
        body = " ".join(x for x in (code, comment) if x)
        if not body:
            if out and out[-1] != "":
                out.append("")
            continue
        if d == 0 and code.endswith("{") and out and out[-1] != "" and not out[-1].startswith("#"):
            out.append("")  # a blank line before each block (its own comment stays on it)
        out.append(INDENT * d + body)
    while out and out[-1] == "":
        out.pop()
    formatted = "\n".join(out) + "\n"
    if _shape(parse_text(formatted, path, display)) != _shape(before):
        raise SpecError([Diagnostic(Pos(display or str(path)), "deeploy fmt would change what this file says; "
                                    "nothing was written", hint="please report it with the file")])
    return formatted


def _shape(node):
    """A parsed document without source positions or raw text: what the file says."""
    if dataclasses.is_dataclass(node) and not isinstance(node, type):
        return (type(node).__name__,) + tuple(_shape(getattr(node, f.name)) for f in dataclasses.fields(node)
                                              if f.name not in ("pos", "engine_pos", "label_pos", "text", "path",
                                                                "display"))
    if isinstance(node, (list, tuple)):
        return tuple(_shape(x) for x in node)
    return node


def format_files(files: list[Path], check: bool) -> list[tuple[Path, str]]:
    """Format each file in place (written beside it, then renamed), or with `check` change nothing; returns the unified
    diffs of the files that were not formatted. Every file is read and formatted before any is written."""
    todo = []
    for f in files:
        try:
            text = Path(f).read_bytes().decode("utf-8").removeprefix("\ufeff")
        except (OSError, UnicodeDecodeError) as e:
            raise SpecError([Diagnostic(Pos(str(f)), f"cannot read: {getattr(e, 'strerror', None) or e}")]) from None
        new = format_text(text, Path(f), str(f))
        if new != text:
            todo.append((Path(f), text, new))
    diffs = [(f, "".join(difflib.unified_diff(old.splitlines(True), new.splitlines(True), f"{f}", f"{f} (formatted)")))
             for f, old, new in todo]
    if not check:
        for f, _, new in todo:
            fd, tmp = tempfile.mkstemp(prefix=f".{f.name}.", dir=f.parent)
            with os.fdopen(fd, "w", encoding="utf-8") as out:
                out.write(new)
            os.chmod(tmp, os.stat(f).st_mode & 0o7777)  # the file keeps its permissions
            os.replace(tmp, f)
    return diffs
