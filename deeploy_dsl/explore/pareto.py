"""The Pareto front: the feasible points (every objective's figure known, every constraint met) that no other
feasible point dominates (as good in every objective and better in at least one)."""
from __future__ import annotations


def feasible(figures: dict | None, objectives, constraints) -> bool:
    if figures is None:
        return False
    return all(figures.get(o.metric) is not None for o in objectives) and all(c.holds(figures) for c in constraints)


def oriented(figures: dict, objectives) -> tuple:
    """The objective figures, each turned so that larger is better."""
    return tuple(figures[o.metric] if o.maximise else -figures[o.metric] for o in objectives)


def dominates(a: tuple, b: tuple) -> bool:
    return all(x >= y for x, y in zip(a, b)) and any(x > y for x, y in zip(a, b))


def front(points: list[dict | None], objectives, constraints) -> list[int]:
    """Indices (ascending) of the non-dominated feasible points; points equal in every objective are all kept."""
    cand = [(i, oriented(p, objectives)) for i, p in enumerate(points) if feasible(p, objectives, constraints)]
    return [i for i, v in cand if not any(dominates(w, v) for _, w in cand)]


def best(points: list[dict | None], objectives, indices: list[int]) -> int | None:
    """The front point to ship: best in the first objective, ties broken by the next ones, then by index."""
    if not indices:
        return None
    return min(indices, key=lambda i: (tuple(-x for x in oriented(points[i], objectives)), i))
