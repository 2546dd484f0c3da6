"""`.dply` text -> a raw syntax tree of settings, blocks and mapping lines, with positions.

The grammar (grammar/deeploy.lark) is uniform on purpose; `interpret.py` gives the settings meaning.
`-D key=value` overrides are parsed with the same grammar and spliced into the raw tree here.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources
from pathlib import Path

import lark

from .errors import Diagnostic, Pos, SpecError, SyntaxErr
from .spec import PathPattern


@dataclass(frozen=True)
class Value:
    kind: str  # string | number | size | name | call
    value: object  # str, int/float, bytes count, name, or call name
    pos: Pos
    args: tuple = ()  # for calls: ((key or None, Value), ...)
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


@dataclass(frozen=True)
class Doc:
    path: Path
    text: str
    items: tuple  # Setting | Block


UNITS = {"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30}

# what a person should read instead of Lark's terminal names
TOKEN_WORDS = {
    "NAME": "a name", "STRING": "a \"string\"", "SIGNED_NUMBER": "a number", "INT": "an integer",
    "UNIT": "a unit (B, KiB, MiB, GiB)", "_NL": "end of line", "LBRACE": "'{'", "RBRACE": "'}'",
    "LPAR": "'('", "RPAR": "')'", "LSQB": "'['", "RSQB": "']'", "COMMA": "','", "DOT": "'.'",
    "EQUAL": "'='", "STAR": "'*'", "__ANON_0": "'->'", "__ANON_1": "'..'", "$END": "end of file",
}


@lru_cache(maxsize=1)
def _parser() -> lark.Lark:
    grammar = resources.files("deeploy_dsl.grammar").joinpath("deeploy.lark").read_text()
    return lark.Lark(grammar, parser="lalr", propagate_positions=True, maybe_placeholders=False)


def _describe_expected(expected) -> str:
    words = sorted({TOKEN_WORDS.get(t, repr(t)) for t in expected})
    return ", ".join(words[:-1]) + (" or " if len(words) > 1 else "") + words[-1] if words else "something else"


def parse_text(text: str, path: Path, display: str | None = None) -> Doc:
    """Parse `.dply` source; a syntax error becomes a SyntaxErr pointing at the offending token."""
    name = display or str(path)
    src = text if text.endswith("\n") else text + "\n"
    try:
        tree = _parser().parse(src)
    except lark.exceptions.UnexpectedToken as e:
        tok = e.token
        found = "end of file" if tok.type == "$END" else ("end of line" if tok.type == "_NL" else repr(str(tok)))
        pos = Pos(name, e.line if e.line > 0 else src.count("\n"), max(e.column, 1), text)
        raise SyntaxErr([Diagnostic(pos, f"unexpected {found}; expected {_describe_expected(e.expected)}")]) from None
    except lark.exceptions.UnexpectedCharacters as e:
        pos = Pos(name, e.line, e.column, text)
        raise SyntaxErr([Diagnostic(pos, f"unexpected character {src[e.pos_in_stream]!r}")]) from None
    except lark.exceptions.UnexpectedEOF as e:
        pos = Pos(name, src.count("\n"), 1, text)
        raise SyntaxErr([Diagnostic(pos, f"unexpected end of file; expected {_describe_expected(e.expected)}")]) from None
    return Doc(path, text, tuple(_ToRaw(name, text).item(t) for t in tree.children))


def parse_file(path: Path) -> Doc:
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise SpecError([Diagnostic(Pos(str(path)), "no such file")]) from None
    except (OSError, UnicodeDecodeError) as e:
        raise SpecError([Diagnostic(Pos(str(path)), f"cannot read: {e}")]) from None
    return parse_text(text, path, _display_path(path))


def _display_path(path: Path) -> str:
    # relative paths in messages keep them short and free of the user's home directory
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


class _ToRaw:
    """Turns the Lark tree into Value/Setting/Mapping/Block nodes."""

    def __init__(self, name: str, text: str):
        self.name, self.text = name, text

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
        return Block(str(names[0]), label, ents, self.pos(names[0]))

    def value(self, v) -> Value:
        if isinstance(v, lark.Token):  # a bare token can only be a single-child alias collapsed
            return Value("name", str(v), self.pos(v), text=str(v))
        kind, ch = v.data, v.children
        pos = self.pos(v)
        if kind == "string":
            s = str(ch[0])[1:-1].encode("utf-8").decode("unicode_escape")
            return Value("string", s, pos, text=str(ch[0]))
        if kind == "number":
            s = str(ch[0])
            num = int(s) if s.lstrip("+-").isdigit() else float(s)
            return Value("number", num, pos, text=s)
        if kind == "size":
            n, unit = str(ch[0]), str(ch[1])
            num = float(n) * UNITS[unit]
            return Value("size", int(num) if num == int(num) else num, pos, text=f"{n} {unit}")
        if kind == "name":
            return Value("name", str(ch[0]), pos, text=str(ch[0]))
        if kind == "call":
            args = self.args(ch[1]) if len(ch) > 1 else ()
            return Value("call", str(ch[0]), pos, args, text=str(ch[0]))
        raise AssertionError(kind)

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
                    rng = (int(idx.children[0]), int(idx.children[1]))
                elif idx.type == "STAR":
                    rng = (0, 1 << 30)
                else:
                    rng = (int(idx), int(idx))
            segs.append((name, rng))
        ptext = self.text.splitlines()[path.meta.line - 1][path.meta.column - 1: path.meta.end_column - 1] \
            if path.meta.line == path.meta.end_line else "?"
        eng_name = engine.children[0]
        args = self.args(engine.children[1]) if len(engine.children) > 1 else ()
        return Mapping(PathPattern(tuple(segs), ptext.strip()), str(eng_name), args, self.pos(path), self.pos(eng_name))


def apply_overrides(doc: Doc, overrides: list[str]) -> Doc:
    """Splice `-D key=value` settings into the document; a later one replaces an earlier one."""
    for ov in overrides:
        doc = _apply_one(doc, ov)
    return doc


def _apply_one(doc: Doc, ov: str) -> Doc:
    shown = f"-D {ov}"
    if "=" not in ov:
        raise SpecError([Diagnostic(Pos("<command line>", 1, 4, shown), f"expected KEY=VALUE, got {ov!r}")])
    key, value = ov.split("=", 1)
    parts = key.strip().split(".", 1)
    # parse "LASTKEY VALUE" with the file grammar so values mean the same as in a file
    line = f"{parts[-1]} {value}" if len(parts) == 1 or parts[0] != "map" else f"map {{\n{parts[1]} -> {value}\n}}"
    sub = parse_text(line + "\n", Path("<command line>"), "<command line>")
    # re-anchor positions on the -D text so carets point into what the user typed
    offset = 3 + (len(parts[0]) + 1 if len(parts) > 1 and parts[0] != "map" else 0)
    item = _reanchor(sub.items[0], shown, offset)
    if len(parts) == 1:
        return replace(doc, items=_replace_setting(doc.items, item))
    block_kind = parts[0]
    items = list(doc.items)
    for i, it in enumerate(items):
        if isinstance(it, Block) and it.kind == block_kind:
            entries = it.entries + item.entries if block_kind == "map" else _replace_setting(it.entries, item)
            items[i] = replace(it, entries=entries)
            return replace(doc, items=tuple(items))
    new_entries = item.entries if block_kind == "map" else (item,)
    return replace(doc, items=tuple(items) + (Block(block_kind, None, new_entries, item.pos),))


def _replace_setting(entries: tuple, new: Setting) -> tuple:
    kept = tuple(e for e in entries if not (isinstance(e, Setting) and e.key == new.key))
    return kept + (new,)


def _reanchor(node, shown: str, offset: int):
    """Move positions of a parsed override onto the `-D ...` text (line 1)."""
    def fix(p: Pos) -> Pos:
        col = p.col + offset if p.line == 1 else len(shown)
        return Pos("<command line>", 1, min(col, len(shown)), shown)

    if isinstance(node, Value):
        return replace(node, pos=fix(node.pos), args=tuple((k, _reanchor(v, shown, offset)) for k, v in node.args))
    if isinstance(node, Setting):
        return replace(node, pos=fix(node.pos), values=tuple(_reanchor(v, shown, offset) for v in node.values))
    if isinstance(node, Mapping):
        return replace(node, pos=Pos("<command line>", 1, 4 + 4, shown), engine_pos=fix(node.engine_pos))
    if isinstance(node, Block):
        return replace(node, entries=tuple(_reanchor(e, shown, offset) for e in node.entries))
    return node
