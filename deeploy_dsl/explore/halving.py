"""`search halving ETA`: successive halving over the held-out eval, for sweeps whose objectives include an eval
figure (so that no point can be skipped soundly before its eval). Rung r evaluates the surviving integer models
(points sharing numerics share an eval) on sequences / ETA^(R - r) of the eval's sequences, R the last rung (ETA
sequences at least at the first rung); after each rung but the last, a point is ranked by its Pareto layer (non-dominated
sorting on the objectives, the eval figures being that rung's), ties by grid index, and the models of the best
1/ETA of the points go on. The others keep `stopped = r` and no eval figures: they are not on the front, which is
the front of the points that reached the last rung. Unlike the stage pruning of run.py this can miss a front point
(a model that ranks low on few sequences and high on all); it is deterministic: the ranking depends on the
figures only, never on which backend ran or when a result arrived."""
from __future__ import annotations

import math

from .pareto import oriented, dominates


def rungs(sequences: int, eta: int) -> list[int]:
    """The eval's sequences at each rung, ending with all of them: e.g. 32 sequences, ETA 3 -> [3, 10, 32]."""
    out = [sequences]
    while out[0] // eta >= eta:  # fewer than ETA sequences rank models by noise
        out.insert(0, out[0] // eta)
    return out


def pareto_layers(vectors: list[tuple]) -> list[int]:
    """Each vector's non-dominated sorting layer: 0 for the non-dominated, 1 for those only layer 0 dominates, ..."""
    layer = [-1] * len(vectors)
    left, r = set(range(len(vectors))), 0
    while left:
        top = {i for i in left if not any(dominates(vectors[j], vectors[i]) for j in left)}
        for i in top:
            layer[i] = r
        left -= top
        r += 1
    return layer


def promoted(points: list, objectives, keep: int) -> list:
    """The `keep` best points by (Pareto layer, grid index); a point lacking an objective's figure ranks last."""
    ok = [p for p in points if all(p.figures.get(o.metric) is not None for o in objectives)]
    layers = pareto_layers([oriented(p.figures, objectives) for p in ok])
    ranked = sorted(zip(layers, [p.index for p in ok], ok), key=lambda t: t[:2])
    return [p for _, _, p in ranked[:keep]]


def halve(need: list, sweep, store, eval_wave) -> list:
    """Run the rungs before the last (eval_wave(points, settings) computes and stores); return the points that
    reach the last rung, which the caller evaluates with the full settings."""
    from .store import eval_key
    eta = sweep.halving
    alive = list(need)
    for r, seqs in enumerate(rungs(sweep.eval["sequences"], eta)[:-1]):
        settings = dict(sweep.eval, sequences=seqs)
        eval_wave(alive, settings)
        for p in alive:  # this rung's figures, to rank by (the full eval's replace them)
            rec = store.get(eval_key(p.cost["numerics"], settings)) or {}
            p.figures.update(rec.get("figures", {}))
        keep = set(id(p) for p in promoted(alive, sweep.objectives, max(1, math.ceil(len(alive) / eta))))
        models = {p.cost["numerics"] for p in alive if id(p) in keep}  # a promoted point's model carries its twins
        for p in alive:
            if p.cost["numerics"] not in models:
                p.stopped = r
                for m in ("top1", "kl", "ppl_ratio"):
                    p.figures.pop(m, None)
        alive = [p for p in alive if p.stopped is None]
    return alive
