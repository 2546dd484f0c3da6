"""The sequences `deeploy eval` reads, held out from the calibration's.

Two sources:
  * samples (the default): N sequences of L tokens sampled from the float model from BOS, with `--seed` taken in
    an eval stream of its own (numpy SeedSequence(seed, spawn_key=(EVAL_STREAM,))). Calibration samples with
    default_rng(seed), the stream without a spawn key, so no eval seed (the calibration's own included) draws the
    calibration's random numbers;
  * a text file (`--text FILE`): tokenized as the device does (no BOS), cut into consecutive pieces of L - 1
    tokens, each read after a BOS from position 0; at most N of them, the last partial piece dropped.
Either way the eval then checks that it holds out: a sequence whose tokens equal a calibration sequence's (over
the shorter of the two: the same context, so the same activations) over REPEAT_LIMIT tokens or more, or a text that is
the calibration's text, is refused with an error rather than measured. Shorter repeats are counted and reported
(`calibration_overlap`): a story's opening words are often the same.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..errors import Diagnostic, Pos, SpecError
from ..model.modelfiles import FileProblem, read_regular
from ..model.tokenizer import BOS
from ..quant.quantize import CALIB_TEXT_MAX_BYTES, calibration_ids

EVAL_STREAM = 0x6576616C  # "eval": the spawn key that keeps eval samples apart from calibration's
CLI = Pos("<command line>")
# sampled sequences repeat a calibration sample's first tokens by chance ("Once upon a time, there was a little
# girl named Lily." is 16 of stories260k's); over this many tokens, a repeat means the same draws or the same text
REPEAT_LIMIT = 64


@dataclass(frozen=True)
class EvalSet:
    ids: np.ndarray  # [sequences, length] token ids, BOS first
    source: dict  # for the report: {"kind": "samples", "seed", "stream"} or {"kind": "text", "path", "tokens"}
    overlap: int = 0  # sequences that repeat a calibration sequence's first (fewer than REPEAT_LIMIT) tokens

    def describe(self) -> str:
        s = self.source
        if s["kind"] == "samples":
            return f"sampled from the float model (eval seed {s['seed']}, a stream apart from calibration's)"
        return f"from {s['path']} ({s['tokens']:,} of its tokens)"


def eval_seed(seed: int) -> np.random.SeedSequence:
    """The eval stream's seed: never the state calibrate(samples, seed = N) starts from, whatever the N."""
    return np.random.SeedSequence(seed, spawn_key=(EVAL_STREAM,))


def sampled(c, sequences: int, length: int, seed: int) -> EvalSet:
    ids = c.fm.sample(sequences, length, eval_seed(seed))
    return EvalSet(ids, {"kind": "samples", "seed": seed, "stream": "eval"})


def from_text(c, path: Path, sequences: int, length: int) -> EvalSet:
    """Up to `sequences` pieces of the text of `length` tokens each (BOS, then length - 1 of the text's)."""
    if c.tokenizer is None:
        raise SpecError([Diagnostic(CLI, "--text needs a tokenizer in the model block")])
    try:
        data = read_regular(path, CALIB_TEXT_MAX_BYTES, "eval text")
    except FileProblem as e:
        raise SpecError([Diagnostic(CLI, f"--text {path} {e}")]) from None
    ids = c.tokenizer.encode(data.decode("utf-8", errors="replace"), bos=False)
    n = min(sequences, len(ids) // (length - 1))
    if n == 0:
        raise SpecError([Diagnostic(CLI, f"--text {path} is {len(ids):,} tokens, fewer than one sequence of "
                                    f"--length {length} takes ({length - 1} after BOS)", hint="a shorter --length")])
    body = np.array(ids[: n * (length - 1)], np.int64).reshape(n, length - 1)
    seqs = np.concatenate([np.full((n, 1), BOS, np.int64), body], axis=1)
    return EvalSet(seqs, {"kind": "text", "path": str(path), "tokens": int(body.size)})


def check_held_out(c, ev: EvalSet) -> int:
    """How many eval sequences repeat a calibration sequence over their first tokens (a common story opening can,
    by chance, over a few tokens); an error if one does over REPEAT_LIMIT tokens or more, or if the text is the
    calibration's."""
    cal = c.dep.quant.calibration
    if ev.source["kind"] == "text" and cal.source != "samples" and _same_file(Path(ev.source["path"]), Path(cal.source)):
        raise SpecError([Diagnostic(CLI, f"--text {ev.source['path']} is the calibration text "
                                    f"(line {cal.pos.line}): figures on it would be in-sample",
                                    hint="evaluate on text the calibration did not read")])
    calib = calibration_ids(c.fm, cal, c.tokenizer, ev.ids.shape[1])
    repeats = 0
    for i, s in enumerate(ev.ids):
        for j, cs in enumerate(calib):
            m = min(len(s), len(cs))
            if m > 1 and np.array_equal(s[:m], cs[:m]):  # BOS alone is every sequence's start
                if m >= REPEAT_LIMIT:
                    raise SpecError([Diagnostic(CLI, f"eval sequence {i} is calibration sequence {j} over its first "
                                                f"{m} tokens: figures on it would be in-sample",
                                                hint=_coincidence_hint(ev))])
                repeats += 1
                break
    return repeats


def _coincidence_hint(ev: EvalSet) -> str:
    if ev.source["kind"] == "samples":
        return ("eval and calibration sample from separate streams, so they meet only by chance: the sequences are "
                "very short or the model nearly deterministic; try a longer --length, another --seed or --text FILE")
    return "the text repeats what the calibration read; evaluate on other text"


def _same_file(a: Path, b: Path) -> bool:
    """The same file, or one with the same bytes."""
    try:
        return a.resolve() == b.resolve() or (a.stat().st_size == b.stat().st_size and a.read_bytes() == b.read_bytes())
    except OSError:
        return False
