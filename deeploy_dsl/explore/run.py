"""`deeploy explore`: run a sweep in two stages, cheap before expensive. Stage 1 builds every point and reads its
cost-model figures; stage 2 runs the held-out eval only for points that meet every cost constraint, once per
distinct integer numerics. Every result goes to the store as it arrives; points already there are not computed."""
from __future__ import annotations

from dataclasses import dataclass, field

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

    @property
    def error(self) -> str | None:
        return next((r["error"] for r in (self.cost, self.eval, self.qemu) if r and "error" in r), None)


def make_points(sweep: Sweep) -> list[Point]:
    from ..frontend.interpret import load_deployment
    text = sweep.deployment.read_text()
    out = []
    for i, ovs in enumerate(sweep.points()):
        m = load_deployment(sweep.deployment, list(ovs)).model  # checked by load_sweep: only reads settings
        inputs = tuple(str(p) for p in (m.weights, m.tokenizer) if p is not None)
        out.append(Point(i, ovs, point_key(text, ovs, inputs)))
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


def explore(sweep: Sweep, backend, store: Store, max_points: int | None = None, quiet: bool = False,
            qemu: bool = False) -> dict:
    """Run what the store lacks; return the points (with figures) and what was computed."""
    pts = make_points(sweep)
    budget = [max_points]
    dply = str(sweep.deployment)
    cache = str(store.path.parent / "cache")  # the quant phase's results, shared by the workers (quant/cache.py)
    n_cost = _stage(backend, store, [(p.key, cost_task, (dply, p.overrides, cache)) for p in pts], "cost model", budget, quiet)
    for p in pts:
        p.cost = store.get(p.key)
        p.figures = dict((p.cost or {}).get("figures", {}))
    n_eval = 0
    if sweep.needs_eval:
        cheap = [c for c in sweep.constraints if c.metric not in EVAL_METRICS]
        calls: dict[str, tuple] = {}  # one eval per distinct numerics, the first point that has them
        for p in pts:
            if p.figures and all(c.holds(p.figures) for c in cheap):
                k = eval_key(p.cost["numerics"], sweep.eval)
                calls.setdefault(k, (dply, p.overrides, sweep.eval["sequences"], sweep.eval["length"], sweep.eval["seed"], cache))
        n_eval = _stage(backend, store, [(k, eval_task, args) for k, args in calls.items()], "eval", budget, quiet)
        for p in pts:
            if p.figures and all(c.holds(p.figures) for c in cheap):
                p.eval = store.get(eval_key(p.cost["numerics"], sweep.eval))
                p.figures.update((p.eval or {}).get("figures", {}))
    n_qemu = 0
    if qemu or sweep.uses_qemu:
        others = [c for c in sweep.constraints if c.metric not in QEMU_METRICS]
        measured = [p for p in pts if p.figures and (not sweep.needs_eval or p.eval) and all(c.holds(p.figures) for c in others)]
        qkey = lambda p: f"{p.key}:qemu:{QEMU_TOKENS}"  # noqa: E731
        n_qemu = _stage(backend, store, [(qkey(p), qemu_task, (dply, p.overrides, QEMU_TOKENS, cache)) for p in measured],
                        "qemu", budget, quiet)
        for p in measured:
            p.qemu = store.get(qkey(p))
            p.figures.update((p.qemu or {}).get("figures", {}))
    return {"points": pts, "computed": {"cost": n_cost, "eval": n_eval, "qemu": n_qemu}}
