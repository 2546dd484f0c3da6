"""llama2.c BPE tokenizer: a bit-exact Python port of run.c's encode/decode, plus C table export.

The on-device twin is kernels_c/tokenizer.c; `c_tables`/`c_table_source` produce the constant
tables it reads. Both sides must give identical ids, so every quirk of run.c is kept on purpose.
"""
from __future__ import annotations

import heapq
import struct
from pathlib import Path

from .modelfiles import FileProblem, read_regular

BOS = 1
EOS = 2
BYTE_OFFSET = 3  # run.c maps raw byte b to token b + 3 (the <0xNN> tokens)
# run.c starts its best-score search at this float32 value with a strict `>`, so scores at or
# below it (and NaN) can never win a merge
MERGE_FLOOR = -1e10
TOKENIZER_MAX_PIECE = 64  # kernels_c/tokenizer.h: the longest piece the on-device encoder's scratch holds
TOKENIZER_MAX_BYTES = 64 << 20  # 2^20 tokens of 64 bytes: far beyond any llama2.c vocabulary


def _is_byte_piece(piece: bytes) -> int | None:
    """The raw byte of a `<0xNN>` piece, else None (stricter than run.c's sscanf, same on real vocabs)."""
    if len(piece) == 6 and piece[:3] == b"<0x" and piece[5:] == b">":
        try:
            return int(piece[3:5], 16)
        except ValueError:
            return None
    return None


class Tokenizer:
    """A llama2.c tokenizer: `vocab[i]` is token i's bytes, `scores[i]` its float32 merge score."""

    def __init__(self, vocab: list[bytes], scores: list[float], max_token_length: int):
        self.vocab = list(vocab)
        self.scores = list(scores)
        self.max_token_length = int(max_token_length)
        # run.c bsearches a strcmp-sorted copy; with duplicate pieces we pick the lowest id, as the
        # C lower-bound search over a stable sort does
        self._lookup: dict[bytes, int] = {}
        for i, piece in enumerate(self.vocab):
            self._lookup.setdefault(piece, i)

    @property
    def vocab_size(self) -> int:
        return len(self.vocab)

    @classmethod
    def load(cls, path: Path | str, vocab_size: int | None = None) -> "Tokenizer":
        """Read a tok*.bin file. The format has no token count, so pass `vocab_size` to check it."""
        path = Path(path)
        try:
            data = read_regular(path, TOKENIZER_MAX_BYTES, "tokenizer file")
        except FileProblem as e:
            raise ValueError(f"{path}: cannot read: {e}") from None
        if len(data) < 4:
            raise ValueError(f"{path}: too short for a llama2.c tokenizer (need a 4-byte header, found {len(data)} bytes)")
        (max_len,) = struct.unpack_from("<I", data, 0)
        if max_len > TOKENIZER_MAX_PIECE:
            raise ValueError(f"{path}: max_token_length {max_len} in the header; the on-device tokenizer takes pieces "
                             f"of at most {TOKENIZER_MAX_PIECE} bytes (TOKENIZER_MAX_PIECE): corrupt or not a tokenizer?")
        vocab: list[bytes] = []
        scores: list[float] = []
        off = 4
        while off < len(data) and (vocab_size is None or len(vocab) < vocab_size):
            i = len(vocab)
            if off + 8 > len(data):
                raise ValueError(f"{path}: truncated at byte {off}: token {i} needs an 8-byte score/length record, "
                                 f"only {len(data) - off} bytes left")
            score, length = struct.unpack_from("<fi", data, off)
            off += 8
            if length < 0 or length > max_len:
                raise ValueError(f"{path}: token {i} has length {length}, expected 0..{max_len} "
                                 f"(max_token_length from the header); the file is corrupt or not a tokenizer")
            if off + length > len(data):
                raise ValueError(f"{path}: truncated: token {i} needs {length} bytes at offset {off}, "
                                 f"only {len(data) - off} left")
            piece = data[off:off + length]
            off += length
            if b"\0" in piece:
                # run.c (and our C tables) keep pieces as C strings; a NUL would silently cut them
                raise ValueError(f"{path}: token {i} piece {piece!r} contains a NUL byte, which llama2.c cannot represent")
            vocab.append(piece)
            scores.append(score)
        if not vocab:
            raise ValueError(f"{path}: no tokens after the header")
        if vocab_size is not None and len(vocab) != vocab_size:
            raise ValueError(f"{path}: truncated: expected {vocab_size} tokens, found {len(vocab)}")
        if vocab_size is not None and off != len(data):
            raise ValueError(f"{path}: {len(data) - off} unexpected bytes after the {vocab_size} tokens "
                             f"(is vocab_size right?)")
        tok = cls(vocab, scores, max_len)
        tok._check_encodable(path)
        return tok

    def _check_encodable(self, path: Path) -> None:
        """What every encoder (run.c's, ours, kernels_c/tokenizer.c) relies on: a " " piece (the dummy prefix of
        every text) and byte b's `<0xNN>` piece at id b + 3 (the fallback for text no piece covers)."""
        if b" " not in self._lookup:
            raise ValueError(f"{path}: no \" \" piece; llama2.c's encoder puts one before every text "
                             "(sentencepiece's dummy prefix)")
        if self.vocab_size < BYTE_OFFSET + 256:
            raise ValueError(f"{path}: {self.vocab_size} tokens; a llama2.c tokenizer has BOS, EOS and the 256 "
                             f"byte pieces <0x00>..<0xFF> at ids {BYTE_OFFSET}..{BYTE_OFFSET + 255}")
        for b in range(256):
            if _is_byte_piece(self.vocab[b + BYTE_OFFSET]) != b:
                raise ValueError(f"{path}: token {b + BYTE_OFFSET} is {self.vocab[b + BYTE_OFFSET]!r:.40}, expected "
                                 f"the byte piece <0x{b:02X}> (llama2.c's encoder falls back to byte b as id b + 3)")

    # ---- encode -------------------------------------------------------------------------------

    def encode(self, text: str | bytes, bos: bool = True) -> list[int]:
        """run.c `encode(t, text, bos, eos=0)` in O(n log n) (_merge_heap). Bytes input is taken as-is (invalid
        UTF-8 too); text must be valid Unicode (utf8)."""
        data = utf8(text) if isinstance(text, str) else bytes(text)
        # run.c sees a C string: everything after a NUL is invisible to it
        data = data.split(b"\0", 1)[0]
        tokens = self._initial_tokens(data, bos)
        return self._merge_heap(tokens, self.scores, MERGE_FLOOR)

    @property
    def longest_piece(self) -> int:
        """The most bytes of text one token stands for (a byte token stands for one, less than its `<0xNN>`)."""
        return max([1] + [len(p) for p in self.vocab])

    def max_prompt_bytes(self, context: int) -> int:
        """The longest text whose tokens can still fit in `context`: BOS, then the dummy-prefix space and the text
        in pieces of at most longest_piece bytes. Longer text is rejected before it is tokenized."""
        return max(0, (context - 1) * self.longest_piece - 1)

    def encode_with_ranks(self, text: str | bytes, bos: bool = True) -> list[int]:
        """The integer-only algorithm the C side runs; must equal `encode` (tests check)."""
        data = text.encode("utf-8") if isinstance(text, str) else bytes(text)
        data = data.split(b"\0", 1)[0]
        return self._merge(self._initial_tokens(data, bos), self.rank_scores(), 0)

    def _initial_tokens(self, data: bytes, bos: bool) -> list[int]:
        tokens = [BOS] if bos else []
        if data:
            # sentencepiece's add_dummy_prefix: run.c always prepends the " " token
            space = self._lookup.get(b" ")
            if space is None:
                raise ValueError("vocabulary has no ' ' token, which llama2.c's encoder needs as dummy prefix")
            tokens.append(space)
        buf = bytearray()
        n = len(data)
        for i, c in enumerate(data):
            # mirrors run.c's loop byte for byte, including its handling of invalid UTF-8
            if c & 0xC0 != 0x80:
                buf.clear()
            buf.append(c)
            nxt = data[i + 1] if i + 1 < n else 0
            if nxt & 0xC0 == 0x80 and len(buf) < 4:
                continue
            tid = self._lookup.get(bytes(buf))
            if tid is not None:
                tokens.append(tid)
            else:
                for b in buf:
                    if b + BYTE_OFFSET >= self.vocab_size:
                        raise ValueError(f"byte fallback token {b + BYTE_OFFSET} is outside the vocabulary")
                    tokens.append(b + BYTE_OFFSET)
            buf.clear()
        return tokens

    def _merge_heap(self, tokens: list[int], key: list, floor) -> list[int]:
        """_merge's result without its rescans: every adjacent pair that can merge sits in a heap ordered by
        (-key, left token's first position), so each round pops run.c's pair (the best key, leftmost on ties);
        entries whose tokens have changed since are skipped."""
        vocab, lookup = self.vocab, self._lookup
        tok, n = list(tokens), len(tokens)
        nxt, prv = list(range(1, n + 1)), list(range(-1, n - 1))
        ver = [0] * n  # bumped when a token merges with its right neighbour; -1 once merged into its left one
        heap: list = []

        def pair(i: int) -> None:
            j = nxt[i]
            tid = lookup.get(vocab[tok[i]] + vocab[tok[j]]) if j < n else None
            if tid is not None and key[tid] > floor:  # as the scan's strict `>` (NaN never merges)
                heapq.heappush(heap, (-key[tid], i, ver[i], j, ver[j], tid))

        for i in range(n - 1):
            pair(i)
        while heap:
            _, i, vi, j, vj, tid = heapq.heappop(heap)
            if ver[i] != vi or ver[j] != vj:
                continue
            tok[i], ver[i], ver[j] = tid, vi + 1, -1
            nxt[i] = nxt[j]
            if nxt[j] < n:
                prv[nxt[j]] = i
            if prv[i] >= 0:
                pair(prv[i])
            pair(i)
        out, i = [], 0 if n else n
        while i < n:
            out.append(tok[i])
            i = nxt[i]
        return out

    def _merge(self, tokens: list[int], key: list, floor) -> list[int]:
        vocab, lookup = self.vocab, self._lookup
        while True:
            best, best_id, best_idx = floor, -1, -1
            for i in range(len(tokens) - 1):
                tid = lookup.get(vocab[tokens[i]] + vocab[tokens[i + 1]])
                # strict `>`: the leftmost pair wins ties, exactly as in run.c
                if tid is not None and key[tid] > best:
                    best, best_id, best_idx = key[tid], tid, i
            if best_idx < 0:
                return tokens
            tokens[best_idx:best_idx + 2] = [best_id]

    # ---- decode -------------------------------------------------------------------------------

    def decode_token(self, prev_id: int, id: int) -> bytes:
        """run.c `decode`: the bytes to print for `id` following `prev_id`."""
        piece = self.vocab[id]
        if prev_id == BOS and piece[:1] == b" ":
            piece = piece[1:]
        byte = _is_byte_piece(piece)
        return bytes([byte]) if byte is not None else piece

    def decode(self, ids: list[int]) -> str:
        """Text of a token sequence; BOS/EOS are markers and produce no text (run.c never prints them)."""
        out = bytearray()
        prev = -1
        for tid in ids:
            if tid not in (BOS, EOS):
                out += self.decode_token(prev, tid)
            prev = tid
        return out.decode("utf-8", errors="replace")

    # ---- integer ranks ------------------------------------------------------------------------

    def rank_scores(self) -> list[int]:
        """Integer stand-ins for `scores`: rank 0 = can never merge, else 1 + dense rank.

        Order- and equality-preserving over every score that can win a merge (note 0.0 == -0.0,
        and this vocab has both), so merging with `rank > best` from best = 0 is bit-identical to
        run.c's float `score > best` from best = -1e10.
        """
        live = sorted({s for s in self.scores if s > MERGE_FLOOR})
        dense = {s: r + 1 for r, s in enumerate(live)}
        return [dense[s] if s > MERGE_FLOOR else 0 for s in self.scores]


# ---- C table export ---------------------------------------------------------------------------

def c_tables(tok: Tokenizer) -> dict:
    """Data for kernels_c/tokenizer.h's `Tokenizer` struct, deterministic for a given vocab."""
    for i, p in enumerate(tok.vocab):
        if b"\0" in p:
            raise ValueError(f"token {i} contains a NUL byte and cannot be a C string")
    offsets, off = [], 0
    for p in tok.vocab:
        offsets.append(off)
        off += len(p) + 1
    # stable sort on bytes == strcmp order; ties by id so the C lower-bound search finds the lowest id
    sorted_ids = sorted(range(tok.vocab_size), key=lambda i: (tok.vocab[i], i))
    return {
        "vocab_size": tok.vocab_size,
        "max_token_length": max([tok.max_token_length] + [len(p) for p in tok.vocab]),
        "pieces": list(tok.vocab),
        "offsets": offsets,
        "ranks": tok.rank_scores(),
        "sorted_ids": sorted_ids,
    }


def utf8(text: str) -> bytes:
    """`text` as UTF-8; a lone surrogate (what Python makes of bytes on the command line that are not UTF-8)
    is a ValueError saying where it is."""
    try:
        return text.encode("utf-8")
    except UnicodeEncodeError as e:
        raise ValueError(f"the prompt is not valid text: character {e.start + 1} is a lone surrogate "
                         f"U+{ord(text[e.start]):04X} (bytes that are not UTF-8?)") from None


def c_string_literal(b: bytes) -> str:
    """`b` as one C string literal that any C99 compiler reads back byte-exact."""
    out = ['"']
    for c in b:
        if c in (0x22, 0x5C):  # " and backslash
            out.append("\\" + chr(c))
        elif c == 0x3F:  # ? : escaped so no `??x` trigraph can form (gcc -std=c99 enables them)
            out.append("\\?")
        elif 0x20 <= c < 0x7F:
            out.append(chr(c))
        else:
            # always three octal digits: an escape of full length cannot swallow a following digit
            out.append(f"\\{c:03o}")
    out.append('"')
    return "".join(out)


def _c_int_array(values: list[int], per_line: int = 16) -> str:
    rows = [", ".join(str(v) for v in values[i:i + per_line]) for i in range(0, len(values), per_line)]
    return "{\n    " + ",\n    ".join(rows) + "\n}"


def c_table_source(tok: Tokenizer, name: str = "tokenizer") -> str:
    """C99 definitions of the tables plus `const Tokenizer <name>`; needs `#include "tokenizer.h"`."""
    t = c_tables(tok)
    # one literal per line of 8 pieces; adjacent literals concatenate, the last NUL is implicit
    joined = [p + b"\0" for p in t["pieces"]]
    joined[-1] = joined[-1][:-1]
    lines = [" ".join(c_string_literal(p) for p in joined[i:i + 8]) for i in range(0, len(joined), 8)]
    return "\n".join([
        f"static const char {name}_pieces[] =\n    " + "\n    ".join(lines) + ";",
        f"static const int32_t {name}_offsets[{t['vocab_size']}] = {_c_int_array(t['offsets'])};",
        f"static const int32_t {name}_ranks[{t['vocab_size']}] = {_c_int_array(t['ranks'])};",
        f"static const int32_t {name}_sorted_ids[{t['vocab_size']}] = {_c_int_array(t['sorted_ids'])};",
        f"const Tokenizer {name} = {{ {t['vocab_size']}, {t['max_token_length']}, {name}_pieces, "
        f"{name}_offsets, {name}_ranks, {name}_sorted_ids }};",
        "",
    ])
