"""The distributed engine for campaigns and planning sweeps: Dask distributed.

``execute(fn, tasks)`` runs ``fn(task)`` for every task and yields ``(index, result)`` as runs
finish (in completion order). Where:

- ``scheduler=None`` (default): an embedded :class:`distributed.LocalCluster` with ``workers``
  worker *processes* (one thread each: the runs are CPU-bound Python), started and closed here;
- ``scheduler="tcp://HOST:PORT"``: an existing cluster (``dask scheduler`` + ``dask worker``). The
  workers must have dlbrig installed; run folders (traces) are written on the workers, so give them
  a shared filesystem for ``--out`` if the report's evidence links should resolve. Results travel
  back to the client, which persists them, so resume works either way;
- ``serial=True``: a plain loop in this process (the reference the distributed run is tested against).

Tasks are submitted with ``pure=False`` (a re-run is a real re-run) and the function is a plain
module-level function, so workers import it instead of unpickling code.
"""
from __future__ import annotations

import logging
from typing import Callable, Iterable, Iterator


class EngineError(RuntimeError):
    """The cluster could not be reached or started."""


def execute(fn: Callable, tasks: list, *, workers: int = 2, scheduler: str | None = None,
            serial: bool = False) -> Iterator[tuple[int, object]]:
    if not tasks:
        return
    if serial:
        for i, t in enumerate(tasks):
            yield i, fn(t)
        return
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:   # pragma: no cover - a dependency of the package
        raise EngineError(f"dask distributed is not installed ({exc}): pip install 'dask[distributed]'")
    cluster = None
    try:
        if scheduler:
            try:
                client = Client(scheduler, timeout="10s")
            except (OSError, TimeoutError) as exc:
                raise EngineError(f"cannot reach the Dask scheduler at {scheduler}: {exc}") from None
        else:
            cluster = LocalCluster(n_workers=max(1, int(workers)), threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
            client = Client(cluster)
    except EngineError:
        raise
    except Exception as exc:
        if cluster is not None:
            cluster.close()
        raise EngineError(f"cannot start the Dask cluster: {type(exc).__name__}: {exc}") from None
    futures = []
    try:
        futures = client.map(fn, tasks, pure=False, key=[f"dlbrig-{i}-{_key(t)}" for i, t in enumerate(tasks)])
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            yield index[fut.key], fut.result()
    finally:
        for f in futures:
            if not f.done():
                f.cancel()
        client.close()
        if cluster is not None:
            cluster.close()


def _key(task) -> str:
    if isinstance(task, dict):
        return str(task.get("run_id") or task.get("key") or "")[:80]
    return ""


def cluster_label(workers: int, scheduler: str | None, serial: bool) -> str:
    if serial:
        return "serial (in process)"
    if scheduler:
        return f"Dask cluster at {scheduler}"
    return f"Dask LocalCluster, {workers} worker processes"


def run_all(fn: Callable, tasks: Iterable, **kw) -> list:
    """All results in task order (convenience for callers that do not stream)."""
    tasks = list(tasks)
    out = [None] * len(tasks)
    for i, r in execute(fn, tasks, **kw):
        out[i] = r
    return out
