"""Reading the files a model block names (weights, config.json, tokenizer) without trusting them.

Only regular files are read (a FIFO would block, /dev/zero never ends, a directory or a symlink loop is
an OSError), each with a size bound, and JSON is parsed only after its nesting depth and the length of
its integers are known to be small: Python's parser recurses per level and refuses integers over 4,300
digits with an internal ValueError. Problems are `FileProblem`s, ValueErrors whose text is for people;
the caller puts them at the `.dply` line that names the file.
"""
from __future__ import annotations

import errno
import json
import os
import re
import stat
from pathlib import Path
from typing import BinaryIO

import numpy as np

JSON_DEPTH_MAX = 32  # config.json and safetensors headers nest 3 deep; anything past this is not one
JSON_DIGITS_MAX = 20  # 2^64 has 20 digits: every size or id a model file states fits
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.S)  # a JSON string, to blank out before counting brackets


class FileProblem(ValueError):
    """A model file that cannot be used as it is. The text is a verb phrase ("is a FIFO ...") for a message
    "NAME: cannot read: ..."; `missing` tells a file that is not there from one that is wrong."""

    def __init__(self, text: str, missing: bool = False):
        super().__init__(text)
        self.missing = missing


def _kind(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a directory"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "a special file"


def _open_error(e: OSError) -> FileProblem:
    if e.errno == errno.ENOENT:
        return FileProblem("does not exist (or is a link to nothing)", missing=True)
    if e.errno == errno.ELOOP:
        return FileProblem("is a symlink loop (a link that leads back to itself)")
    if e.errno == errno.ENOTDIR:
        return FileProblem("has a part of its path that is not a directory", missing=True)
    if e.errno == errno.ENXIO:
        return FileProblem("is a socket or a device without a reader, not a regular file")
    return FileProblem(f"cannot be opened: {e.strerror or e}")


def open_regular(path: Path, limit: int, what: str) -> tuple[BinaryIO, int]:
    """(an open binary file, its size) if `path` is a regular file of at most `limit` bytes, else FileProblem.

    O_NONBLOCK: opening a FIFO must not wait for a writer; it is then refused as not a regular file."""
    flags = os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_NOCTTY", 0) | getattr(os, "O_CLOEXEC", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise _open_error(e) from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise FileProblem(f"is {_kind(st.st_mode)}, not a regular file")
        if st.st_size > limit:
            raise FileProblem(f"is {st.st_size:,} bytes, more than a {what} can be ({limit:,} at most)")
    except BaseException:
        os.close(fd)
        raise
    return os.fdopen(fd, "rb"), st.st_size


def read_regular(path: Path, limit: int, what: str) -> bytes:
    """All bytes of a regular file of at most `limit` bytes (FileProblem otherwise)."""
    f, _ = open_regular(path, limit, what)
    with f:
        try:
            data = f.read(limit + 1)  # one more than allowed: a file still growing is caught too
        except OSError as e:
            raise FileProblem(f"fails to read: {e.strerror or e}") from None
    if len(data) > limit:
        raise FileProblem(f"grew past {limit:,} bytes while being read")
    return data


def read_exact(f: BinaryIO, offset: int, n: int) -> bytes:
    """n bytes at `offset`, or FileProblem if the file ends first (it shrank since its size was taken)."""
    try:
        f.seek(offset)
        data = f.read(n)
    except OSError as e:
        raise FileProblem(f"fails to read: {e.strerror or e}") from None
    if len(data) != n:
        raise FileProblem(f"ends at byte {offset + len(data):,}, expected {offset + n:,} (changed while read?)")
    return data


def json_depth(raw: bytes) -> int:
    """The deepest nesting of [ and { outside strings (linear time, no recursion)."""
    a = np.frombuffer(_STRING.sub(b'""', raw), np.uint8)
    step = (a == ord("[")).astype(np.int32) + (a == ord("{")) - (a == ord("]")) - (a == ord("}"))
    return int(np.cumsum(step).max()) if a.size else 0


class _Duplicate(Exception):
    pass


class _LongNumber(Exception):
    pass


def _unique(pairs: list) -> dict:
    out = {}
    for k, v in pairs:
        if k in out:
            raise _Duplicate(k)
        out[k] = v
    return out


def _int(text: str) -> int:
    if len(text.lstrip("-")) > JSON_DIGITS_MAX:
        raise _LongNumber(len(text.lstrip("-")))
    return int(text)


def load_json(raw: bytes):
    """JSON with bounded depth and integer length, duplicate keys refused; a FileProblem says what is wrong."""
    if raw.startswith(b"\xef\xbb\xbf"):  # a byte-order mark some editors write: not part of the JSON
        raw = raw[3:]
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise FileProblem(f"is not valid JSON (not UTF-8 at byte {e.start:,})") from None
    depth = json_depth(raw)
    if depth > JSON_DEPTH_MAX:
        raise FileProblem(f"nests {depth:,} levels deep; deeploy reads JSON of at most {JSON_DEPTH_MAX}")
    try:
        return json.loads(text, parse_int=_int, object_pairs_hook=_unique)
    except _LongNumber as e:
        raise FileProblem(f"has a number of {e.args[0]:,} digits; deeploy reads at most {JSON_DIGITS_MAX}") from None
    except _Duplicate as e:
        raise FileProblem(f"states {short(e.args[0])} twice") from None
    except (json.JSONDecodeError, RecursionError) as e:
        raise FileProblem(f"is not valid JSON ({getattr(e, 'msg', 'too deep')} at byte {getattr(e, 'pos', 0):,})") from None


def json_object_end(raw: bytes) -> tuple[str, int] | None:
    """Where the JSON object that starts `raw` ends: ("end", the byte after it and its trailing blanks), ("cut", the
    byte it breaks off at) when it runs to the end of `raw`, None when `raw` is not a bounded JSON object at all."""
    if not raw.lstrip().startswith(b"{") or json_depth(raw) > JSON_DEPTH_MAX:
        return None
    text = raw.decode("latin-1")  # one character per byte: positions are byte offsets
    try:
        _, end = json.JSONDecoder(parse_int=_int).raw_decode(text, len(text) - len(text.lstrip()))
    except json.JSONDecodeError as e:
        return ("cut", e.pos) if e.pos >= len(text.rstrip()) - 1 else None
    except _LongNumber:
        return None
    return "end", len(text) - len(text[end:].lstrip())


def short(name, limit: int = 80) -> str:
    """A name from a file, safe for a one-line message: quoted when odd, cut when long."""
    s = name if isinstance(name, str) else json.dumps(name)
    if len(s) > limit:
        return json.dumps(s[:limit])[:-1] + f'..." ({len(s):,} characters)'
    return s if s.isprintable() and s.strip() == s and s else json.dumps(s)
