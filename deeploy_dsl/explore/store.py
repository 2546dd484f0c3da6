"""The results store: one JSON-lines file per sweep, one record a line, appended as each result arrives, so an
interrupted sweep resumes where it stopped and a re-run computes only new points.

A cost record's key is a sha256 of what decides the build: the deployment's text, the -D list, the digests of
the weights and tokenizer files and deeploy's code (its version and the text of its modules: quant/cache.py), so
a changed compiler computes again. An eval record's key is a sha256 of the point's integer
numerics (numerics_digest: the quantized constants and each step's kernel, which the tiling, the core count and
the memory sizes do not change) and the eval settings, so points that differ only in L1 or cores share one eval.
"""
from __future__ import annotations

import hashlib
import json
from functools import lru_cache
from pathlib import Path

from ..quant.cache import code_digest


@lru_cache(maxsize=64)
def file_digest(path: str) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "missing"
    return h.hexdigest()


def point_key(dply_text: str, overrides: tuple[str, ...], inputs: tuple[str, ...]) -> str:
    """The cost record's key: `inputs` are the paths of the files the deployment reads (weights, tokenizer)."""
    blob = json.dumps({"deployment": dply_text, "overrides": list(overrides),
                       "inputs": [file_digest(p) for p in inputs], "code": code_digest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


def eval_key(numerics: str, settings: dict) -> str:
    blob = json.dumps({"numerics": numerics, "eval": settings, "code": code_digest()}, sort_keys=True)
    return hashlib.sha256(blob.encode()).hexdigest()


class Store:
    """Records by key; `add` appends and flushes one line, so a kill loses at most the point being computed."""

    def __init__(self, path: Path):
        self.path = Path(path)
        self.records: dict[str, dict] = {}
        self._cut = False  # the last line was cut short: the next record starts on a new line
        if self.path.exists():
            text = self.path.read_text()
            self._cut = bool(text) and not text.endswith("\n")
            for line in text.splitlines():
                try:
                    rec = json.loads(line)
                except json.JSONDecodeError:  # a line cut short by a kill: that point is computed again
                    continue
                if isinstance(rec, dict) and "key" in rec:
                    self.records[rec["key"]] = rec

    def get(self, key: str) -> dict | None:
        return self.records.get(key)

    def add(self, rec: dict) -> None:
        self.records[rec["key"]] = rec
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path, "a") as f:
            f.write("\n" * self._cut + json.dumps(rec, sort_keys=True) + "\n")
        self._cut = False
