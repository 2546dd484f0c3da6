"""`deeploy explore`: design-space exploration of a deployment (sweep.py the file, run.py the stages, store.py
the cache, backends.py where points run, pareto.py the front, report.py the outputs, write.py BEST.dply)."""
from __future__ import annotations

import time
from pathlib import Path


def explore_command(sweep_file: Path, out: Path | None, jobs: int | None, dask: str | None, write: Path | None,
                    max_points: int | None, quiet: bool = False, measure: tuple[str, ...] = ()) -> list[str]:
    """Run a sweep and write explore.json and explore.html into `out` (default explore/NAME); the lines to print."""
    from .backends import make_backend
    from .report import explore_html, explore_json, front_table, result
    from .run import explore
    from .store import Store
    from .sweep import load_sweep
    if set(measure) - {"qemu"}:
        from ..errors import Diagnostic, Pos, SpecError
        raise SpecError([Diagnostic(Pos("<command line>"), f"--measure takes qemu, not {', '.join(sorted(set(measure) - {'qemu'}))}")])
    sweep = load_sweep(sweep_file)
    out = out or Path("explore") / sweep.name
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    backend = make_backend(jobs, dask)
    try:
        ran = explore(sweep, backend, Store(out / "results.jsonl"), max_points, quiet, qemu="qemu" in measure)
    finally:
        backend.close()
    res = result(sweep, ran["points"])
    (out / "explore.json").write_text(explore_json(res))
    (out / "explore.html").write_text(explore_html(res))
    lines = [front_table(res), f"explore: computed {ran['computed']['cost']} builds and {ran['computed']['eval']} evals"
             + (f" and {ran['computed']['qemu']} QEMU runs" if ran["computed"]["qemu"] else "") + " "
             f"({backend.name}) in {time.perf_counter() - t0:.1f} s; wrote {out / 'explore.json'} and {out / 'explore.html'}"]
    if write is not None and res["best"] is not None:
        from .tasks import cost_task
        from .write import write_best
        how = write_best(sweep.deployment, res["points"][res["best"]]["overrides"], write,
                         lambda path, ovs: cost_task(str(path), tuple(ovs)))
        lines.append(f"explore: wrote point #{res['best']} to {write} "
                     + ("(settings edited in; re-built alone it reproduces the figures)" if how == "edited"
                        else "(the input with the -D list as comments: the edits could not be made safely)"))
    return lines
