"""A byte-pair-encoding trainer that writes llama2.c's `tok512.bin`, and a fast encoder proven equal to
deeploy's own `Tokenizer.encode` (the run.c port the device runs).

Layout, as llama2.c's sentencepiece export: id 0 `<unk>`, 1 `\\n<s>\\n` (BOS), 2 `\\n</s>\\n` (EOS),
3..258 the byte-fallback pieces `<0x00>`..`<0xFF>`, then the merged pieces with scores 0, -1, -2, ...
in merge order, then the corpus's single characters with lower scores still (a character must be a
piece of its own, or run.c falls back to a byte token, which never merges). Pieces are raw bytes and
spaces are raw spaces: run.c prepends a dummy " " to the text, so " " is a piece too.

Merges are learned inside "words", a space followed by letters or by other non-space characters
(`PRETOKEN`). No piece can then span the boundary of two words in single-spaced text, so run.c's
merging of a whole text equals its merging of each word alone; `FastEncoder` caches words and
checks that precondition, falling back to `Tokenizer.encode` for any other text.
"""
from __future__ import annotations

import re
import struct
from collections import Counter
from pathlib import Path

from ..model.tokenizer import BOS, MERGE_FLOOR, Tokenizer

PRETOKEN = re.compile(r" ?[A-Za-z]+| ?[^A-Za-z ]+")
SPECIALS = [b"<unk>", b"\n<s>\n", b"\n</s>\n"]
N_FIXED = len(SPECIALS) + 256


def words_of(text: str) -> list[str] | None:
    """The words of " " + text (run.c's dummy prefix), or None when text is not plain single-spaced ASCII."""
    if not text.isascii() or "  " in text or text.startswith(" ") or text.endswith(" ") or "\0" in text:
        return None
    parts = PRETOKEN.findall(" " + text)
    return parts if sum(map(len, parts)) == len(text) + 1 else None


def train(texts: list[str], vocab_size: int = 512) -> Tokenizer:
    """Learn merges on `texts` until the vocabulary has `vocab_size` pieces; deterministic for the input."""
    counts: Counter[str] = Counter()
    for t in texts:
        w = words_of(t)
        if w is None:
            raise ValueError(f"training text is not single-spaced ASCII: {t[:60]!r}")
        counts.update(w)
    alphabet = sorted({c for w in counts for c in w})
    n_merges = vocab_size - N_FIXED - len(alphabet)
    if n_merges < 0:
        raise ValueError(f"{len(alphabet)} distinct characters do not fit a vocabulary of {vocab_size}")
    # each distinct word as a list of symbols, with its count; sorted so iteration order is fixed
    words = [(list(w), n) for w, n in sorted(counts.items())]
    known = set(alphabet)
    merged: list[str] = []
    while len(merged) < n_merges:
        pairs: Counter[tuple[str, str]] = Counter()
        for syms, n in words:
            for a, b in zip(syms, syms[1:]):
                pairs[(a, b)] += n
        if not pairs:
            break
        # the most frequent pair; ties go to the smaller pair, so the result never depends on hashing
        (a, b), _ = min(pairs.items(), key=lambda kv: (-kv[1], kv[0]))
        for syms, _n in words:
            i = 0
            while i < len(syms) - 1:
                if syms[i] == a and syms[i + 1] == b:
                    syms[i:i + 2] = [a + b]
                i += 1
        if a + b not in known:  # the same string from another split takes no second slot
            known.add(a + b)
            merged.append(a + b)
    pieces = [p.encode() for p in merged + alphabet]
    vocab = SPECIALS + [f"<0x{i:02X}>".encode() for i in range(256)] + pieces
    scores = [0.0] * N_FIXED + [-float(i) for i in range(len(pieces))]
    vocab += [b"<pad%d>" % i for i in range(vocab_size - len(vocab))]  # only if the corpus ran out of pairs
    scores += [MERGE_FLOOR] * (vocab_size - len(scores))
    return Tokenizer(vocab, scores, max(len(p) for p in vocab))


def write(tok: Tokenizer, path: Path | str) -> None:
    """llama2.c's tokenizer file: uint32 max_token_length, then per token float32 score, int32 length, bytes."""
    out = [struct.pack("<I", tok.max_token_length)]
    for piece, score in zip(tok.vocab, tok.scores):
        out.append(struct.pack("<fi", score, len(piece)) + piece)
    Path(path).write_bytes(b"".join(out))


class FastEncoder:
    """`Tokenizer.encode(text, bos=True)`, word by word with a cache (tests compare it with the original)."""

    def __init__(self, tok: Tokenizer):
        self.tok = tok
        self.cache: dict[str, list[int]] = {}

    def _word(self, w: str) -> list[int]:
        ids = self.cache.get(w)
        if ids is None:
            # run.c's initial tokens of the word alone (dropping the dummy space), then its merges
            init = self.tok._initial_tokens(w.encode(), False)[1:]
            ids = self.cache[w] = self.tok._merge(init, self.tok.scores, MERGE_FLOOR)
        return ids

    def encode(self, text: str) -> list[int]:
        words = words_of(text)
        if words is None:
            return self.tok.encode(text, bos=True)
        out = [BOS]
        for w in words:
            out += self._word(w)
        return out
