"""`--write BEST.dply`: the input deployment with the chosen point's settings applied as text edits (a setting's
line rewritten in place, a map line added at the end of the map block, file paths re-anchored to where the new
file lives), kept only if re-building it alone reproduces the point's figures; otherwise the input unchanged with
the -D list as comments at the top (and `deeploy build BEST.dply -D ...` then needs those flags)."""
from __future__ import annotations

import os
import re
from pathlib import Path

SIZE = r"\d+\s*(?:KiB|MiB|kB|MB|B)"


def _block_span(lines: list[str], block: str) -> tuple[int, int] | None:
    """First and closing line indices of a top-level `block ... {` ... `}`."""
    start = next((i for i, ln in enumerate(lines) if re.match(rf"{re.escape(block)}\b[^{{#]*\{{\s*(#.*)?$", ln)), None)
    if start is None:
        return None
    end = next((i for i in range(start + 1, len(lines)) if re.match(r"\}\s*(#.*)?$", lines[i])), None)
    return None if end is None else (start, end)


def _edit(lines: list[str], ov: str) -> bool:
    """Apply one -D as a text edit; False where it cannot be done safely."""
    key, value = ov.split("=", 1)
    block, dot, name = key.partition(".")
    if not dot:
        i = next((i for i, ln in enumerate(lines) if re.match(rf"{re.escape(key)}\s", ln)), None)
        if i is None:
            return False
        lines[i] = f"{key} {value}"
        return True
    span = _block_span(lines, block)
    if span is None:
        return False
    s, e = span
    if block == "map":  # later map lines override earlier ones, as -D does
        if not re.match(rf"\s*{re.escape(name)}\s*->\s*{re.escape(value)}\s*(#.*)?$", lines[e - 1]):
            lines.insert(e, f"    {name:<16} -> {value}    # deeploy explore")
        return True
    for i in range(s + 1, e):
        m = re.match(rf"(\s*){re.escape(name)}(\s+)(.*)$", lines[i])
        if not m:
            continue
        if " ".join(_uncommented(m.group(3)).split()) == " ".join(value.split()):
            return True  # already so: the line and its comment stay
        if block == "memory" and re.fullmatch(SIZE, value.strip()):  # the size only: what it holds stays
            lines[i] = re.sub(SIZE, value.strip(), lines[i], count=1)
        else:
            lines[i] = f"{m.group(1)}{name}{m.group(2)}{value}"
        return True
    return False


def _uncommented(text: str) -> str:
    """A setting's values without a trailing comment (a `#` outside double quotes)."""
    inside = False
    for i, ch in enumerate(text):
        inside ^= ch == '"'
        if ch == "#" and not inside:
            return text[:i]
    return text


def _reanchor(lines: list[str], src: Path, dest: Path) -> None:
    """Relative file paths in the model block, rewritten for the new file's folder."""
    for i, ln in enumerate(lines):
        m = re.match(r'(\s*(?:weights|tokenizer)\s+)"([^"]+)"(.*)$', ln)
        if m and not os.path.isabs(m.group(2)):
            target = os.path.normpath(src.parent / m.group(2))
            lines[i] = f'{m.group(1)}"{os.path.relpath(target, dest.parent.resolve())}"{m.group(3)}'


def edited_text(src: Path, overrides: list[str], dest: Path) -> str | None:
    lines = src.read_text().splitlines()
    _reanchor(lines, src.resolve(), dest)
    for ov in overrides:
        if not _edit(lines, ov):
            return None
    return "\n".join(lines) + "\n"


def commented_text(src: Path, overrides: list[str]) -> str:
    head = ["# deeploy explore: the chosen point is this deployment with", *[f"#   -D '{ov}'" for ov in overrides]]
    return "\n".join(head) + "\n" + src.read_text()


def write_best(src: Path, overrides: list[str], dest: Path, figures_of) -> str:
    """Write `dest`; `figures_of(path, overrides)` rebuilds a deployment and returns what must agree.
    Returns how it was written ("edited" or "commented")."""
    text = edited_text(src, overrides, dest)
    if text is not None:
        dest.write_text(text)
        if figures_of(dest, []) == figures_of(src, overrides):
            return "edited"
    dest.write_text(commented_text(src, overrides))
    return "commented"
