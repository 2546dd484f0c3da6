"""The quant phase's results (smoothed weights, activation ranges, the QuantModel), memoised.

They depend only on the float weights (their content), the model's dims, the quantize block (its settings, not where
they were written) and, for a calibration text, the tokenizer and the text; never on the target, the memory sizes,
the cores or the mapping. A sweep or a test run compiles the same model with the same quantize block many times:
the calibration pass (the float model over 4,096 tokens) and GPTQ are most of a build, and are done once.

Two levels: in this process, a bounded LRU (QUANT_LRU_ENTRIES results, QUANT_LRU_BYTES of arrays); on disk, when a
folder is given (`on_disk`; `deeploy explore` gives DIR/cache), one `.npz` per key, written atomically (a temporary
file renamed), read without pickle. The key is a sha256 of all of the above and of deeploy's code (its version and
the text of every module of the package) and numpy's version, so a changed compiler never reads an old result; a
file that cannot be read or holds another key is a miss. The arrays handed out are read-only: one result is shared
by every build that hits it.
"""
from __future__ import annotations

import dataclasses
import enum
import hashlib
import io
import json
import os
import tempfile
import zipfile
from collections import OrderedDict
from contextlib import contextmanager
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

from ..errors import Pos
from ..model.weights import LayerWeights, Weights
from .quantize import QuantModel

QUANT_LRU_ENTRIES = 8
QUANT_LRU_BYTES = 256 << 20  # a 15 M-parameter model's result is ~40 MB of arrays


@dataclass(frozen=True)
class QuantStage:
    """What the quant phase makes: the smoothed weights (None when not smoothed, pos None), ranges, the QuantModel."""

    weights: Weights | None
    ranges: dict
    quant: QuantModel

    @property
    def nbytes(self) -> int:
        arrays = list(self.quant.consts.values()) + (_weight_arrays(self.weights) if self.weights is not None else [])
        return sum(a.nbytes for a in arrays)


# explore's modules that only choose which points to compute and report them: they change no build or figure
NOT_RESULTS = ("explore/__init__.py", "explore/backends.py", "explore/halving.py", "explore/pareto.py",
               "explore/progress.py", "explore/report.py", "explore/run.py", "explore/sweep.py", "explore/write.py")


@lru_cache(maxsize=1)
def code_digest() -> str:
    """deeploy's version, the text of every module of the package (but NOT_RESULTS) and numpy's version."""
    import deeploy_dsl
    root = Path(deeploy_dsl.__file__).parent
    h = hashlib.sha256(f"deeploy {deeploy_dsl.__version__} numpy {np.__version__}".encode())
    for path in sorted(root.rglob("*.py")):
        rel = path.relative_to(root).as_posix()
        if rel not in NOT_RESULTS:
            h.update(rel.encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()


def _weight_arrays(w: Weights) -> list[np.ndarray]:
    return [w.embed, w.final_norm, w.lm_head] + [getattr(lw, f.name) for lw in w.layers
                                                for f in dataclasses.fields(LayerWeights)]


def weights_digest(w: Weights) -> str:
    h = hashlib.sha256(f"layers {len(w.layers)} tied {w.lm_head is w.embed}".encode())
    for a in _weight_arrays(w):
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype}{a.shape}".encode())
        h.update(a.data)
    return h.hexdigest()


def _plain(v):
    """A spec value as JSON data without its source positions (where a setting was written does not count)."""
    if dataclasses.is_dataclass(v):
        return {f.name: _plain(getattr(v, f.name)) for f in dataclasses.fields(v) if not isinstance(getattr(v, f.name), Pos)}
    if isinstance(v, (tuple, list)):
        return [_plain(x) for x in v]
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, Path):
        return str(v)
    return v


def _file_digest(path) -> str:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 20), b""):
                h.update(block)
    except OSError:
        return "unreadable"  # the build reports it; a key that cannot match a readable file's
    return h.hexdigest()


def quant_key(dep, weights: Weights) -> str:
    """The key of the quant phase's result for this deployment and its loaded weights."""
    q = dep.quant
    texts = {}
    if q.calibration.source != "samples":  # only a calibration text is tokenized: the tokenizer counts then
        texts = {"text": _file_digest(q.calibration.source), "tokenizer": _file_digest(dep.model.tokenizer)}
    blob = json.dumps({"code": code_digest(), "weights": weights_digest(weights), "dims": _plain(dep.model.dims),
                       "quantize": _plain(q), "files": texts}, sort_keys=True, default=str)
    return hashlib.sha256(blob.encode()).hexdigest()


def _frozen(stage: QuantStage) -> QuantStage:
    for a in stage.quant.consts.values():
        a.flags.writeable = False
    if stage.weights is not None:
        for a in _weight_arrays(stage.weights):
            a.flags.writeable = False
    return stage


class QuantCache:
    """The two levels; `stats` counts memory hits, disk hits and misses (for tests and timings)."""

    def __init__(self, entries: int = QUANT_LRU_ENTRIES, max_bytes: int = QUANT_LRU_BYTES):
        self.entries, self.max_bytes = entries, max_bytes
        self.disk: Path | None = None
        self._mem: OrderedDict[str, QuantStage] = OrderedDict()
        self.stats = {"memory": 0, "disk": 0, "miss": 0}

    def clear(self) -> None:
        self._mem.clear()

    def get(self, key: str) -> QuantStage | None:
        if key in self._mem:
            self._mem.move_to_end(key)
            self.stats["memory"] += 1
            return self._mem[key]
        stage = self._read(key) if self.disk is not None else None
        if stage is None:
            self.stats["miss"] += 1
            return None
        self.stats["disk"] += 1
        self._remember(key, stage)
        return stage

    def put(self, key: str, stage: QuantStage) -> QuantStage:
        stage = _frozen(stage)
        self._remember(key, stage)
        if self.disk is not None:
            self._write(key, stage)
        return stage

    def _remember(self, key: str, stage: QuantStage) -> None:
        self._mem[key] = stage
        self._mem.move_to_end(key)
        while len(self._mem) > self.entries or (len(self._mem) > 1 and sum(s.nbytes for s in self._mem.values()) > self.max_bytes):
            self._mem.popitem(last=False)

    def _path(self, key: str) -> Path:
        return self.disk / f"quant-{key}.npz"

    def _write(self, key: str, stage: QuantStage) -> None:
        arrays, meta = _pack(key, stage)
        buf = io.BytesIO()
        np.savez(buf, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8), **arrays)
        try:
            self.disk.mkdir(parents=True, exist_ok=True)
            fd, tmp = tempfile.mkstemp(dir=self.disk, prefix=".quant-", suffix=".tmp")
            with os.fdopen(fd, "wb") as f:
                f.write(buf.getvalue())
            os.replace(tmp, self._path(key))  # atomic: a reader sees the whole file or none
        except OSError:  # a cache that cannot be written is only slower
            pass

    def _read(self, key: str) -> QuantStage | None:
        try:
            with np.load(self._path(key), allow_pickle=False) as z:
                meta = json.loads(z["meta"].tobytes().decode())
                if meta.get("key") != key:
                    return None
                arrays = {name: z[name] for name in z.files if name != "meta"}
            return _frozen(_unpack(meta, arrays))
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):  # JSONDecodeError is a ValueError
            return None  # missing, cut short or foreign: computed again


def _pack(key: str, stage: QuantStage) -> tuple[dict, dict]:
    arrays = {f"c{i}": a for i, a in enumerate(stage.quant.consts.values())}
    meta = {"key": key, "consts": list(stage.quant.consts), "params": {k: dict(v) for k, v in stage.quant.params.items()},
            "scales": dict(stage.quant.scales), "ranges": stage.ranges, "weights": None}
    w = stage.weights
    if w is not None:
        for i, a in enumerate(_weight_arrays(w)):
            arrays[f"w{i}"] = a
        meta["weights"] = {"layers": len(w.layers), "tied": w.lm_head is w.embed}
    return arrays, meta


def _unpack(meta: dict, arrays: dict) -> QuantStage:
    consts = {name: arrays[f"c{i}"] for i, name in enumerate(meta["consts"])}
    quant = QuantModel(consts, meta["params"], meta["scales"])
    weights = None
    if meta["weights"] is not None:
        names = [f.name for f in dataclasses.fields(LayerWeights)]
        n, k = meta["weights"]["layers"], len(names)
        ws = [arrays[f"w{i}"] for i in range(3 + k * n)]
        layers = tuple(LayerWeights(**dict(zip(names, ws[3 + k * i: 3 + k * (i + 1)]))) for i in range(n))
        embed = ws[0]
        weights = Weights(embed, layers, ws[1], embed if meta["weights"]["tied"] else ws[2])
    return QuantStage(weights, meta["ranges"], quant)


CACHE = QuantCache()


@contextmanager
def on_disk(folder: Path | None):
    """Within the block, keep (and look for) results in `folder` too (None: this process's memory only)."""
    before, CACHE.disk = CACHE.disk, None if folder is None else Path(folder)
    try:
        yield
    finally:
        CACHE.disk = before
