"""Where the points are computed: in this process (--jobs 1), a local process pool (--jobs N), or a Dask cluster
(--dask local:N starts a LocalCluster, --dask tcp://HOST:8786 joins a scheduler). Each backend takes the same
(function, arguments) calls and yields (index, result) as they finish; the sweep orders results by point, so the
output does not depend on which backend ran them or in what order they finished."""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor, as_completed
from typing import Callable, Iterator

from ..errors import DeeployError, Diagnostic, Pos

Call = tuple[Callable, tuple]
CLUSTER_HINT = "pip install -e '.[cluster]'   (dask[distributed] is an optional extra)"


class Serial:
    name = "in-process"

    def run(self, calls: list[Call]) -> Iterator[tuple[int, dict]]:
        for i, (fn, args) in enumerate(calls):
            yield i, fn(*args)

    def close(self) -> None:
        pass


class Pool:
    def __init__(self, jobs: int):
        self.jobs = jobs
        self.name = f"process pool of {jobs}"
        self._ex: ProcessPoolExecutor | None = None

    def run(self, calls: list[Call]) -> Iterator[tuple[int, dict]]:
        if not calls:  # nothing to compute: no worker processes started
            return
        if self._ex is None:
            self._ex = ProcessPoolExecutor(max_workers=self.jobs)
        futures = {self._ex.submit(fn, *args): i for i, (fn, args) in enumerate(calls)}
        try:
            for f in as_completed(futures):
                yield futures[f], f.result()
        finally:
            for f in futures:
                f.cancel()

    def close(self) -> None:
        if self._ex is not None:
            self._ex.shutdown(cancel_futures=True)


class Dask:
    def __init__(self, address: str):
        try:
            from dask.distributed import Client, LocalCluster
        except ImportError:
            raise DeeployError([Diagnostic(Pos("<command line>"), "--dask needs dask[distributed], which is not installed",
                                           hint=CLUSTER_HINT)]) from None
        self._cluster = None
        if address.startswith("local:"):
            n = _workers(address)
            # one thread per worker process: a point is CPU-bound numpy, and workers must not share globals
            self._cluster = LocalCluster(n_workers=n, threads_per_worker=1, processes=True, dashboard_address=None)
            self._client = Client(self._cluster)
        else:
            try:
                self._client = Client(address, timeout="20s")
            except (OSError, TimeoutError, ValueError) as e:
                raise DeeployError([Diagnostic(Pos("<command line>"), f"cannot reach the Dask scheduler {address}: {e}")]) from None
        self.name = f"dask {address}"

    def run(self, calls: list[Call]) -> Iterator[tuple[int, dict]]:
        from dask.distributed import as_completed as dask_completed
        # pure=False: the same arguments twice are still two tasks (a re-run after a failure computes again)
        futures = {self._client.submit(fn, *args, pure=False): i for i, (fn, args) in enumerate(calls)}
        try:
            for f in dask_completed(list(futures)):
                yield futures[f], f.result()
        finally:
            self._client.cancel(list(futures))

    def close(self) -> None:
        self._client.close()
        if self._cluster is not None:
            self._cluster.close()


def _workers(address: str) -> int:
    n = address.split(":", 1)[1]
    if not n.isdigit() or int(n) < 1:
        raise DeeployError([Diagnostic(Pos("<command line>"), f"--dask {address}: expected local:N with N >= 1 workers")])
    return int(n)


def make_backend(jobs: int | None, dask: str | None):
    if dask:
        return Dask(dask)
    jobs = jobs or os.cpu_count() or 1
    return Serial() if jobs == 1 else Pool(jobs)
