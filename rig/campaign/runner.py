"""Run a campaign: skip what a previous (interrupted) run finished, execute the rest on the engine,
persist each result as it arrives, aggregate, report."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

from .aggregate import aggregate
from .engine import cluster_label, execute
from .report import write_report
from .worker import RESULT, execute_run, read_result, run_dir, write_atomic


@dataclass
class CampaignResult:
    aggregate: dict
    executed: int
    reused: int
    interrupted: bool = False
    written: dict = field(default_factory=dict)


def run_campaign(campaign, out_dir, *, workers: int = 2, scheduler: str | None = None, serial: bool = False,
                 resume: bool = True, progress=None) -> CampaignResult:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    tasks = [spec.task(str(out)) for spec in campaign.runs]
    results, todo = [], []
    for t in tasks:
        prev = read_result(out, t["run_id"], t["spec_hash"]) if resume else None
        if prev is not None:
            results.append(prev)
        else:
            todo.append(t)
    reused = len(results)
    interrupted = False
    try:
        for i, res in execute(execute_run, todo, workers=workers, scheduler=scheduler, serial=serial):
            p = run_dir(out, res["run_id"]) / RESULT
            if read_result(out, res["run_id"], res["spec_hash"]) is None or res["status"] == "error":
                write_atomic(p, res)      # a remote worker without a shared filesystem
            results.append(res)
            if progress is not None:
                progress(len(results), len(tasks), res)
    except KeyboardInterrupt:
        interrupted = True
    agg = aggregate(campaign, results)
    meta = {"engine": cluster_label(workers, scheduler, serial), "executed": len(results) - reused,
            "reused": reused, "wall_s": round(time.perf_counter() - t0, 2), "interrupted": interrupted}
    written = write_report(out, agg, meta)
    return CampaignResult(agg, len(results) - reused, reused, interrupted, written)
