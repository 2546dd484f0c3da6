"""`.dply` text -> a raw syntax tree of settings, blocks and mapping lines, with positions.

The grammar (grammar/deeploy.lark) is uniform on purpose; `interpret.py` gives the settings meaning.
`-D key=value` overrides are parsed with the same grammar and spliced into the raw tree here.
"""
from __future__ import annotations

import math
import re
import sys
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark

from ..errors import Diagnostic, Pos, SpecError, SyntaxErr
from ..model.modelfiles import FileProblem, open_regular
from .spec import PathPattern


@dataclass(frozen=True)
class Value:
    kind: str  # string | number | size | name | call | assign
    value: object  # str, int/float, bytes count, name, call name, or the name an assignment sets
    pos: Pos
    args: tuple = ()  # for calls: ((key or None, Value), ...); for `name = value`: ((name, Value),)
    text: str = ""


@dataclass(frozen=True)
class Setting:
    key: str
    values: tuple[Value, ...]
    pos: Pos


@dataclass(frozen=True)
class Mapping:
    pattern: PathPattern
    engine: str
    args: tuple  # ((key or None, Value), ...)
    pos: Pos
    engine_pos: Pos


@dataclass(frozen=True)
class Block:
    kind: str
    label: str | None
    entries: tuple  # Setting | Mapping
    pos: Pos
    label_pos: Pos | None = None


@dataclass(frozen=True)
class Doc:
    path: Path
    text: str
    items: tuple  # Setting | Block
    display: str = ""  # the file name as messages show it (defaults to str(path))


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

# what a person should read instead of Lark's terminal names
TOKEN_WORDS = {
    "NAME": "a name", "STRING": "a \"string\"", "SIGNED_NUMBER": "a number", "INT": "an integer",
    "UNIT": "a unit (B, KiB, MiB, GiB)", "_NL": "end of line", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "DOT": "'.'",
    "EQUAL": "'='", "STAR": "'*'", "__ANON_0": "'->'", "__ANON_1": "'..'", "$END": "end of file",
}
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "n": "\n", "t": "\t", "r": "\r"}

# what a `.dply` may be: far beyond any real deployment (a few KiB, lines under 200 characters, calls two
# deep), and small enough that parsing the worst case stays under a second or two and nothing recurses deeply
MAX_FILE_BYTES = 64 << 10
MAX_LINE_CHARS = 4096
MAX_NUMBER_CHARS = 40  # 2^64 has 20 digits; int() refuses more than 4,300
MAX_NESTING = 8  # calibrate(samples, stat = percentile(99.99)) is two deep


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("deeploy_dsl.grammar").joinpath("deeploy.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


_HEX4 = re.compile(r"[0-9A-Fa-f]{4}")


def _is_surrogate(c: str) -> bool:
    return "\ud800" <= c <= "\udfff"


def _describe_expected(expected) -> str:
    words = sorted({TOKEN_WORDS.get(t, repr(t)) for t in expected})
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] if words else "something else"


def parse_text(text: str, path: Path, display: str | None = None) -> Doc:
    """Parse `.dply` source; a syntax error becomes a SyntaxErr pointing at the offending token."""
    name = display or str(path)
    src = text if text.endswith("\n") else text + "\n"
    _check_limits(src, name, text)
    try:
        tree = _parser().parse(src)
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        if tok.type == "$END" or e.line < 1:
            line, col = _end_of(src)
        else:
            line, col = e.line, max(e.column, 1)
        found = "end of file" if tok.type == "$END" else ("end of line" if tok.type == "_NL" else repr(str(tok)))
        pos = Pos(name, line, col, text)
        msg = f"unexpected {found}; expected {_describe_expected(e.expected)}"
        raise SyntaxErr([Diagnostic(pos, msg, hint=_syntax_hint(src, tok.type, line, col))]) from None
    except lark.exceptions.UnexpectedCharacters as e:
        pos = Pos(name, e.line, e.column, text)
        ch = src[e.pos_in_stream]
        if ch == '"':
            raise SyntaxErr([Diagnostic(pos, "unterminated string: no closing '\"' on this line",
                                        hint="a string ends on the line where it starts")]) from None
        if _is_surrogate(ch):  # what Python makes of command-line bytes that are not UTF-8
            raise SyntaxErr([Diagnostic(pos, "invalid UTF-8", hint="text is UTF-8")]) from None
        allowed = _describe_expected(t for t in e.allowed if t != "COMMENT") if e.allowed else "something else"
        raise SyntaxErr([Diagnostic(pos, f"unexpected character {ch!r}; expected {allowed}")]) from None
    except lark.exceptions.UnexpectedEOF as e:
        line, col = _end_of(src)
        pos = Pos(name, line, col, text)
        raise SyntaxErr([Diagnostic(pos, f"unexpected end of file; expected {_describe_expected(e.expected)}",
                                    hint=_syntax_hint(src, "$END", line, col))]) from None
    return Doc(path, text, tuple(_ToRaw(name, text).item(t) for t in tree.children), name)


def _check_limits(src: str, name: str, text: str) -> None:
    """Lines of at most MAX_LINE_CHARS and parentheses at most MAX_NESTING deep: checked in linear time before
    Lark sees the text, so that nothing later recurses deeply or shows a huge line."""
    for line, ln in enumerate(src.split("\n"), start=1):
        if len(ln) > MAX_LINE_CHARS:
            raise SyntaxErr([Diagnostic(Pos(name, line, MAX_LINE_CHARS + 1, text),
                                        f"line {line} is longer than {MAX_LINE_CHARS:,} characters ({len(ln):,})",
                                        hint="a .dply line holds one setting, a block's first line or a mapping")])
    depth, line, line_start = 0, 1, 0
    for m in _PARENS.finditer(src):
        tok = m.group()
        if tok == "\n":
            line, line_start = line + 1, m.end()
        elif tok == "(":
            depth += 1
            if depth > MAX_NESTING:
                raise SyntaxErr([Diagnostic(Pos(name, line, m.start() - line_start + 1, text),
                                            f"parentheses nested more than {MAX_NESTING} deep")])
        elif tok == ")":
            depth = max(0, depth - 1)


# a string (to the end of its line if unclosed: every match is then linear), a comment, a parenthesis, a line break
_PARENS = re.compile(r'"(?:[^"\\\n]|\\.)*"?|#[^\n]*|[()]|\n')


def _end_of(src: str) -> tuple[int, int]:
    """Line and column just after the last character of the last line (src ends with a newline)."""
    lines = src.split("\n")[:-1] or [""]
    return len(lines), len(lines[-1].rstrip("\r")) + 1


_STRINGS_AND_COMMENTS = re.compile(r'"(?:[^"\\\n]|\\.)*"|#[^\n]*')


def _open_brace_line(src: str, line: int, col: int) -> int | None:
    """The line of the innermost '{' still open just before (line, col), ignoring strings and comments."""
    stack: list[int] = []
    for n, text in enumerate(src.split("\n")[:line], start=1):
        if n == line:
            text = text[: col - 1]
        for ch in _STRINGS_AND_COMMENTS.sub("", text):
            if ch == "{":
                stack.append(n)
            elif ch == "}" and stack:
                stack.pop()
    return stack[-1] if stack else None


def _syntax_hint(src: str, found: str, line: int, col: int) -> str:
    """A likely fix for the common mistakes: a missing '}', a '=' in a setting, a '}' after a value."""
    open_at = _open_brace_line(src, line, col)
    if found == "$END" and open_at:
        return f"the block opened at line {open_at} is never closed: add a '}}' line"
    if found == "LBRACE" and open_at:
        return f"blocks do not nest: is the '}}' closing the block opened at line {open_at} missing?"
    if found == "RBRACE" and open_at:
        return "put the closing '}' on a line of its own"
    if found == "RBRACE":
        return "this '}' closes no block"
    if found == "EQUAL" and "(" not in src.split("\n")[line - 1][: col - 1]:
        return "settings are written 'NAME VALUE' without '=' (only call arguments take '=', e.g. cluster(cores = 8))"
    return ""


def parse_file(path: Path) -> Doc:
    name = _display_path(path)
    data = _read_regular(path, MAX_FILE_BYTES + 1)
    if len(data) > MAX_FILE_BYTES:
        text = data[:MAX_FILE_BYTES].decode("utf-8", errors="replace")
        line, col = _line_col(data, MAX_FILE_BYTES)
        raise SyntaxErr([Diagnostic(Pos(name, line, col, text), f"file is larger than {MAX_FILE_BYTES >> 10} KiB",
                                    hint="a deployment is a few KiB: is this the right file?")])
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line, col = _line_col(data, e.start)
        pos = Pos(name, line, col, data.decode("utf-8", errors="replace"))
        raise SpecError([Diagnostic(pos, f"cannot read: byte 0x{data[e.start]:02x} is not valid UTF-8",
                                    hint="a .dply file is UTF-8 text")]) from None
    return parse_text(text.removeprefix("\ufeff"), path, name)  # a byte-order mark is no character of the file


def _read_regular(path: Path, limit: int) -> bytes:
    """At most `limit` bytes of a regular file; a FIFO, device or directory is an error, not a wait."""
    try:
        f, _ = open_regular(path, sys.maxsize, "deployment")  # the size is checked on what is read
    except FileProblem as e:
        raise SpecError([Diagnostic(Pos(str(path)), "no such file" if e.missing else f"cannot read: {e}")]) from None
    except ValueError as e:  # a NUL in the path
        raise SpecError([Diagnostic(Pos(str(path)), f"cannot read: {e}")]) from None
    with f:
        try:
            return f.read(limit)
        except OSError as e:
            raise SpecError([Diagnostic(Pos(str(path)), f"cannot read: {e.strerror or e}")]) from None


def _line_col(data: bytes, offset: int) -> tuple[int, int]:
    """1-based line and column (in characters) of byte `offset` of UTF-8 `data`, which is valid before it."""
    start = data.rfind(b"\n", 0, offset) + 1
    return data.count(b"\n", 0, offset) + 1, len(data[start:offset].decode("utf-8", errors="replace")) + 1


def _display_path(path: Path) -> str:
    # relative paths in messages keep them short and free of the user's home directory
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError, RuntimeError):  # not below the cwd; or a symlink loop, a name too long
        return str(path)


class _ToRaw:
    """Turns the Lark tree into Value/Setting/Mapping/Block nodes."""

    def __init__(self, name: str, text: str):
        self.name, self.text = name, text
        self._lines: list[str] | None = None

    def line(self, n: int) -> str:
        if self._lines is None:  # split once: a file of many mapping lines is not split once per line
            self._lines = self.text.split("\n")
        return self._lines[n - 1] if 0 < n <= len(self._lines) else ""

    def pos(self, node) -> Pos:
        meta = getattr(node, "meta", None)
        if meta is not None and not meta.empty:
            return Pos(self.name, meta.line, meta.column, self.text)
        return Pos(self.name, node.line, node.column, self.text)

    def item(self, t):
        return self.setting(t) if t.data == "setting" else self.block(t)

    def setting(self, t) -> Setting:
        key, *vals = t.children
        return Setting(str(key), tuple(self.value(v) for v in vals), self.pos(key))

    def block(self, t) -> Block:
        names = [c for c in t.children if isinstance(c, lark.Token)]
        entries = [c for c in t.children if isinstance(c, lark.Tree)]
        label = str(names[1]) if len(names) > 1 else None
        ents = tuple(self.setting(e) if e.data == "setting" else self.mapping(e) for e in entries)
        return Block(str(names[0]), label, ents, self.pos(names[0]), self.pos(names[1]) if label else None)

    def value(self, v) -> Value:
        if isinstance(v, lark.Token):  # a bare token can only be a single-child alias collapsed
            return Value("name", str(v), self.pos(v), text=str(v))
        kind, ch = v.data, v.children
        pos = self.pos(v)
        if kind == "string":
            return Value("string", self.unescape(ch[0]), pos, text=str(ch[0]))
        if kind == "number":
            s = self.number_text(ch[0])
            num = int(s) if s.lstrip("+-").isdigit() else float(s)
            return Value("number", num, pos, text=s)
        if kind == "size":
            n, unit = self.number_text(ch[0]), str(ch[1])
            num = float(n) * UNITS[unit]
            # a fractional or non-finite size stays a float; the interpreter says why it is wrong
            whole = math.isfinite(num) and num == int(num)
            return Value("size", int(num) if whole else num, pos, text=f"{n} {unit}")
        if kind == "name":
            return Value("name", str(ch[0]), pos, text=str(ch[0]))
        if kind == "call":
            args = self.args(ch[1]) if len(ch) > 1 else ()
            return Value("call", str(ch[0]), pos, args, text=str(ch[0]))
        if kind == "assign":
            inner = self.value(ch[1])
            return Value("assign", str(ch[0]), pos, ((str(ch[0]), inner),), text=f"{ch[0]} = {inner.text}")
        raise AssertionError(kind)

    def number_text(self, tok) -> str:
        """A number token's text; longer than MAX_NUMBER_CHARS is an error (no setting takes such a number)."""
        s = str(tok)
        if len(s) > MAX_NUMBER_CHARS:
            raise SyntaxErr([Diagnostic(self.pos(tok), f"number of {len(s):,} characters; at most "
                                        f"{MAX_NUMBER_CHARS} are read", hint="no setting takes a number that large")])
        return s

    def unescape(self, tok) -> str:
        """The text of a "string" token, with JSON's escapes decoded; any other escape is an error."""
        body, out, i = str(tok)[1:-1], [], 0

        def at(i: int) -> Pos:
            return Pos(self.name, tok.line, tok.column + 1 + i, self.text)
        while i < len(body):
            c = body[i]
            if c != "\\":
                if _is_surrogate(c):  # from the command line: bytes that were not UTF-8
                    raise SyntaxErr([Diagnostic(at(i), "invalid UTF-8 in string", hint="text is UTF-8")])
                out.append(c)
                i += 1
                continue
            nxt = body[i + 1: i + 2]
            if nxt in _ESCAPES:
                out.append(_ESCAPES[nxt])
                i += 2
            elif nxt == "u" and _HEX4.fullmatch(body[i + 2: i + 6]):
                ch, n = self.code_point(body, i, at)
                out.append(ch)
                i += n
            else:
                raise SyntaxErr([Diagnostic(at(i), f"unknown escape '\\{nxt}' in string",
                                            hint='known: \\" \\\\ \\/ \\n \\t \\r \\uXXXX')])
        return "".join(out)

    @staticmethod
    def code_point(body: str, i: int, at) -> tuple[str, int]:
        """The character of the `\\uXXXX` escape at body[i] and the characters it takes: 6, or 12 for JSON's
        surrogate pair `\\uD83D\\uDE00`. A lone surrogate is an error: no UTF-8 text (the prompt in the generated
        C, a path) can hold it."""
        hi = int(body[i + 2: i + 6], 16)
        if not _is_surrogate(chr(hi)):
            return chr(hi), 6
        lo = body[i + 6: i + 12]
        if hi < 0xDC00 and lo[:2] == "\\u" and _HEX4.fullmatch(lo[2:]) and 0xDC00 <= int(lo[2:], 16) < 0xE000:
            return chr(0x10000 + ((hi - 0xD800) << 10) + int(lo[2:], 16) - 0xDC00), 12
        raise SyntaxErr([Diagnostic(at(i), f"\\u{body[i + 2: i + 6]} is half of a UTF-16 surrogate pair, not a "
                                    "character", hint="write the character itself, or both halves: \\uD83D\\uDE00")])

    def args(self, call_args) -> tuple:
        out = []
        for a in call_args.children:
            if a.data == "kwarg":
                out.append((str(a.children[0]), self.value(a.children[1])))
            else:
                out.append((None, self.value(a.children[0])))
        return tuple(out)

    def mapping(self, t) -> Mapping:
        path, engine = t.children
        segs = []
        for s in path.children:
            if s.data == "seg_any":
                segs.append(("*", None))
                continue
            name = str(s.children[0])
            rng = None
            if len(s.children) > 1:
                idx = s.children[1].children[0]
                if isinstance(idx, lark.Tree):  # range a..b
                    rng = (int(self.number_text(idx.children[0])), int(self.number_text(idx.children[1])))
                elif idx.type == "STAR":
                    rng = (0, 1 << 30)
                else:
                    rng = (int(self.number_text(idx)),) * 2
            segs.append((name, rng))
        ptext = self.line(path.meta.line)[path.meta.column - 1: path.meta.end_column - 1] \
            if path.meta.line == path.meta.end_line else "?"
        eng_name = engine.children[0]
        args = self.args(engine.children[1]) if len(engine.children) > 1 else ()
        return Mapping(PathPattern(tuple(segs), ptext.strip()), str(eng_name), args, self.pos(path), self.pos(eng_name))


def apply_overrides(doc: Doc, overrides: list[str]) -> Doc:
    """Splice `-D key=value` settings into the document; a later one replaces an earlier one."""
    for ov in overrides:
        doc = _apply_one(doc, ov)
    return doc


_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OVERRIDE_HINT = "e.g. -D target=host, -D memory.L1=16KiB, -D generate.tokens=5, -D map.lm_head=cluster"


def _apply_one(doc: Doc, ov: str) -> Doc:
    shown = f"-D {ov}"

    def at(col: int) -> Pos:  # a 1-based column of `shown`
        return Pos("<command line>", 1, max(1, min(col, len(shown))), shown)

    def fail(col: int, msg: str) -> SpecError:
        return SpecError([Diagnostic(at(col), msg, hint=_OVERRIDE_HINT)])

    if "=" not in ov:
        raise fail(4, f"expected KEY=VALUE, got {ov!r}")
    if "\n" in ov or "\r" in ov:
        raise fail(4 + min(i for i in (ov.find("\n"), ov.find("\r")) if i >= 0),
                   "an override is one line: it cannot contain a line break")
    eq = ov.index("=")
    key_raw, value = ov[:eq], ov[eq + 1:]
    key = key_raw.strip()
    key_col = 4 + len(key_raw) - len(key_raw.lstrip())  # ov[i] is column 4 + i of `shown`
    value_col = 4 + eq + 1
    block, dot, last = key.partition(".")
    if not dot:
        block, last = "", key
    last_col = key_col + (len(block) + 1 if dot else 0)
    if block == "map":
        if not last.strip():
            raise fail(last_col, "expected map.PATTERN=ENGINE")
        # the pattern and engine parse as a mapping line; padding keeps the pattern in its column
        line = " " * (last_col - 1) + last + " -> "
        sub_text, sub_line = f"map {{\n{line}{value}\n}}\n", 2
    else:
        if not _NAME_RE.fullmatch(last) or (dot and not _NAME_RE.fullmatch(block)):
            raise fail(key_col, f"bad override key {key!r}: expected SETTING or BLOCK.SETTING")
        line = " " * (last_col - 1) + last + " "
        sub_text, sub_line = f"{line}{value}\n", 1

    def fix(p: Pos) -> Pos:
        # columns up to the value are the same as in `shown`; the value is shifted by the separator
        if p.line != sub_line:
            return at(len(shown))
        return at(p.col if p.col <= len(line) else p.col - len(line) - 1 + value_col)

    try:
        sub = parse_text(sub_text, Path("<command line>"), "<command line>")
    except SyntaxErr as e:
        # hints about braces and lines describe the scaffolding around the value, not what was typed
        raise SyntaxErr([replace(d, pos=fix(d.pos), hint="" if re.search(r"[{}]|line", d.hint) else d.hint)
                         for d in e.diagnostics]) from None
    item = _reanchor(sub.items[0], fix)
    if not dot:
        return replace(doc, items=_replace_setting(doc.items, item))
    items = list(doc.items)
    for i, it in enumerate(items):
        if isinstance(it, Block) and it.kind == block:
            if block == "memory":
                item = _keep_placement(it.entries, item)
            entries = it.entries + item.entries if block == "map" else _replace_setting(it.entries, item)
            items[i] = replace(it, entries=entries)
            return replace(doc, items=tuple(items))
    new_entries = item.entries if block == "map" else (item,)
    return replace(doc, items=tuple(items) + (Block(block, None, new_entries, at(key_col)),))


def _keep_placement(entries: tuple, new: Setting) -> Setting:
    """`-D memory.L1=16KiB` changes the size only: what the level holds and double_buffer stay."""
    old = next((e for e in entries if isinstance(e, Setting) and e.key == new.key), None)
    if old is None or len(new.values) != 1 or new.values[0].kind != "size":
        return new
    return replace(new, values=new.values + old.values[1:])


def _replace_setting(entries: tuple, new: Setting) -> tuple:
    kept = tuple(e for e in entries if not (isinstance(e, Setting) and e.key == new.key))
    return kept + (new,)


def _reanchor(node, fix):
    """Move the positions of a parsed override onto the `-D ...` text with `fix(pos)`."""
    if isinstance(node, Value):
        return replace(node, pos=fix(node.pos), args=tuple((k, _reanchor(v, fix)) for k, v in node.args))
    if isinstance(node, Setting):
        return replace(node, pos=fix(node.pos), values=tuple(_reanchor(v, fix) for v in node.values))
    if isinstance(node, Mapping):
        return replace(node, pos=fix(node.pos), engine_pos=fix(node.engine_pos),
                       args=tuple((k, _reanchor(v, fix)) for k, v in node.args))
    if isinstance(node, Block):
        return replace(node, pos=fix(node.pos), entries=tuple(_reanchor(e, fix) for e in node.entries))
    return node
