"""`deeploy explore`: run a sweep in two stages, cheap before expensive. Stage 1 builds every point and reads its
cost-model figures; stage 2 runs the held-out eval only for points that meet every cost constraint, once per
distinct integer numerics. Every result goes to the store as it arrives; points already there are not computed."""
from __future__ import annotations

from dataclasses import dataclass, field

from .pareto import oriented, dominates, feasible
from .progress import Progress
from .store import Store, eval_key, point_key
from .sweep import EVAL_METRICS, QEMU_METRICS, Sweep
from .tasks import QEMU_TOKENS, cost_task, eval_task, qemu_task


@dataclass
class Point:
    index: int
    overrides: tuple[str, ...]
    key: str
    cost: dict | None = None  # the store's record
    eval: dict | None = None
    qemu: dict | None = None
    figures: dict = field(default_factory=dict)
    pruned: bool = False  # a later stage skipped: a feasible point dominates it on the figures known before
    stopped: int | None = None  # `search halving`: the rung at which it was not promoted
    measured: bool = False  # the current stage's figures are in (for the waves)

    @property
    def error(self) -> str | None:
        return next((r["error"] for r in (self.cost, self.eval, self.qemu) if r and "error" in r), None)


def make_points(sweep: Sweep) -> list[Point]:
    from ..frontend.interpret import load_deployment
    text = sweep.deployment.read_text()
    out, inputs = [], {}
    for i, ovs in enumerate(sweep.points()):
        model_ovs = tuple(ov for ov in ovs if ov.startswith("model"))  # only these can change the files read
        if model_ovs not in inputs:
            m = load_deployment(sweep.deployment, list(model_ovs)).model  # checked by load_sweep: only reads settings
            inputs[model_ovs] = tuple(str(p) for p in (m.weights, m.tokenizer) if p is not None)
        out.append(Point(i, ovs, point_key(text, ovs, inputs[model_ovs])))
    return out


def _stage(backend, store: Store, todo: list[tuple[str, object, tuple]], label: str, budget: list[int], quiet: bool):
    """Compute the calls whose key is not in the store, at most budget[0] of them, storing each as it finishes."""
    todo = [t for t in todo if store.get(t[0]) is None]
    if budget[0] is not None:
        todo, budget[0] = todo[:budget[0]], max(0, budget[0] - len(todo))
    prog = Progress(label, len(todo), quiet)
    prog.start()
    for i, res in backend.run([(fn, args) for _, fn, args in todo]):
        store.add({"key": todo[i][0], "stage": label, **res})
        prog.step("error" in res)
    return len(todo)


def _holds_all(p: Point, constraints) -> bool:
    return bool(p.figures) and all(c.holds(p.figures) for c in constraints)


def _dominated(p: Point, pts: list[Point], sweep: Sweep) -> bool:
    """Some point known to meet every constraint (all its figures measured) is at least as good as p in every
    objective and better in one: p cannot be on the front, whatever its later figures."""
    mine = oriented(p.figures, sweep.objectives)
    return any(q is not p and feasible(q.figures, sweep.objectives, sweep.constraints)
               and dominates(oriented(q.figures, sweep.objectives), mine) for q in pts)


def run_in_waves(pts: list[Point], need: list[Point], sweep: Sweep, prunable: bool, run_wave) -> None:
    """Run a stage for `need`. With `prunable` (every objective's figure already known for them), in waves: first the
    points no other pending point dominates, then, after each wave, the pending points that no feasible point
    dominates (p.pruned says which stage skipped the others). The waves depend on the figures only, never on
    which backend ran them or when a result arrived."""
    if not prunable:
        run_wave(need)
        return
    pending = list(need)
    while pending:
        vec = {id(p): oriented(p.figures, sweep.objectives) for p in pending}
        wave = [p for p in pending if not any(dominates(vec[id(q)], vec[id(p)]) for q in pending)]
        run_wave(wave)
        rest = [p for p in pending if p not in wave and not p.measured]
        for p in rest:
            if _dominated(p, pts, sweep):
                p.pruned = True
        pending = [p for p in rest if not p.pruned]


def explore(sweep: Sweep, backend, store: Store, max_points: int | None = None, quiet: bool = False,
            qemu: bool = False) -> dict:
    """Run what the store lacks; return the points (with figures) and what was computed. Cheap before expensive:
    every point is built (cost-model figures, and so every byte count: a constraint on L2 is known here); the eval
    only for the points meeting every cost constraint, once per distinct integer numerics; QEMU only for the points
    meeting every other constraint. A point is skipped at a stage when that is sound: when every objective is a
    figure known before the stage and a point meeting every constraint dominates it (then no figure the stage could
    give makes it a front point); `search halving ETA` adds unsound but cheap pruning (halving.py)."""
    pts = make_points(sweep)
    budget = [max_points]
    dply = str(sweep.deployment)
    cache = str(store.path.parent / "cache")  # the quant phase's results, shared by the workers (quant/cache.py)
    n_cost = _stage(backend, store, [(p.key, cost_task, (dply, p.overrides, cache)) for p in pts], "cost model", budget, quiet)
    for p in pts:
        p.cost = store.get(p.key)
        p.figures = dict((p.cost or {}).get("figures", {}))
    objectives = {o.metric for o in sweep.objectives}
    computed = {"cost": n_cost, "eval": 0, "qemu": 0}
    if sweep.needs_eval:
        cheap = [c for c in sweep.constraints if c.metric not in EVAL_METRICS + QEMU_METRICS]
        need = [p for p in pts if _holds_all(p, cheap)]
        ev = sweep.eval

        def eval_wave(wave: list[Point], settings: dict = ev) -> None:
            calls: dict[str, tuple] = {}  # one eval per distinct numerics, the first point that has them
            for p in wave:
                calls.setdefault(eval_key(p.cost["numerics"], settings), (dply, p.overrides, settings["sequences"],
                                                                          settings["length"], settings["seed"], cache))
            computed["eval"] += _stage(backend, store, [(k, eval_task, args) for k, args in calls.items()], "eval", budget, quiet)
            for p in need:  # a point sharing numerics with one just evaluated has its figures too
                rec = store.get(eval_key(p.cost["numerics"], ev))
                if rec is not None and p.eval is None:
                    p.eval, p.measured = rec, True
                    p.figures.update(rec.get("figures", {}))
        if sweep.halving:
            from .halving import halve
            need = halve(need, sweep, store, eval_wave)
        run_in_waves(pts, need, sweep, objectives.isdisjoint(EVAL_METRICS + QEMU_METRICS), eval_wave)
    for p in pts:
        p.measured = False
    if qemu or sweep.uses_qemu:
        others = [c for c in sweep.constraints if c.metric not in QEMU_METRICS]
        need = [p for p in pts if _holds_all(p, others) and (not sweep.needs_eval or p.eval)]
        if not sweep.uses_qemu:  # measured, not ranked by: the front is known already, only its points pay
            from .pareto import front
            on = set(front([p.figures if not p.error else None for p in pts], sweep.objectives, sweep.constraints))
            need = [p for p in need if p.index in on]
        qkey = lambda p: f"{p.key}:qemu:{QEMU_TOKENS}"  # noqa: E731

        def qemu_wave(wave: list[Point]) -> None:
            computed["qemu"] += _stage(backend, store, [(qkey(p), qemu_task, (dply, p.overrides, QEMU_TOKENS, cache))
                                                        for p in wave], "qemu", budget, quiet)
            for p in wave:
                p.qemu = store.get(qkey(p))
                p.measured = p.qemu is not None
                p.figures.update((p.qemu or {}).get("figures", {}))
        run_in_waves(pts, need, sweep, objectives.isdisjoint(QEMU_METRICS), qemu_wave)
    return {"points": pts, "computed": computed}
