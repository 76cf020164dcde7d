"""Aggregate a campaign's run results: pass/fail matrix, KPI distributions, the worst runs.

The aggregate depends only on the runs' results (never on wall time, worker or order of
completion), so a campaign run on a cluster aggregates to exactly what the same runs give serially.
"""
from __future__ import annotations

import statistics

from .worker import KPI_KEYS

# for "worst": higher is worse, in this order (a failing run first, then overshoot, then service)
def badness(r: dict) -> tuple:
    k = r.get("kpis") or {}
    status = {"error": 2, "fail": 1}.get(r.get("status"), 0)
    share = k.get("share_met")
    return (status, k.get("overshoot_a_s") or 0.0, k.get("max_over_a") or 0.0,
            -(share if share is not None else 1.0), k.get("starvation_max_s") or 0.0, r["run_id"])


def distribution(values) -> dict | None:
    xs = sorted(v for v in values if isinstance(v, (int, float)) and not isinstance(v, bool))
    if not xs:
        return None
    return {"n": len(xs), "min": round(xs[0], 4), "median": round(statistics.median(xs), 4),
            "max": round(xs[-1], 4), "mean": round(sum(xs) / len(xs), 4)}


def aggregate(campaign, results: list) -> dict:
    """``results``: one dict per run (execute_run's), any order; missing runs are listed."""
    by_id = {r["run_id"]: r for r in results if r}
    runs = []
    for spec in campaign.runs:
        r = by_id.get(spec.run_id)
        runs.append(r if r is not None else {"run_id": spec.run_id, "scenario": spec.scenario,
                                             "fault": spec.fault, "dut": spec.dut, "seed": spec.seed,
                                             "status": "missing", "kpis": {}, "failed": [], "error": None,
                                             "dir": f"runs/{spec.run_id}"})
    counts = {s: sum(r["status"] == s for r in runs) for s in ("pass", "fail", "error", "missing")}
    matrix = []
    for sc in campaign.scenarios:
        for fault in campaign.faults:
            row = {"scenario": sc, "fault": fault, "cells": {}}
            for dut in campaign.duts:
                cell = [r for r in runs if r["scenario"] == sc and r["fault"] == fault and r["dut"] == dut]
                row["cells"][dut] = {"pass": sum(r["status"] == "pass" for r in cell),
                                     "fail": sum(r["status"] == "fail" for r in cell),
                                     "error": sum(r["status"] == "error" for r in cell),
                                     "missing": sum(r["status"] == "missing" for r in cell),
                                     "runs": [r["run_id"] for r in cell]}
            matrix.append(row)
    done = [r for r in runs if r["status"] in ("pass", "fail")]
    dists = {"all": {k: distribution(r["kpis"].get(k) for r in done) for k in KPI_KEYS}}
    for dut in campaign.duts:
        dists[dut] = {k: distribution(r["kpis"].get(k) for r in done if r["dut"] == dut) for k in KPI_KEYS}
    worst = sorted((r for r in runs if r["status"] != "missing"), key=badness, reverse=True)[:campaign.worst]
    keep = ("run_id", "scenario", "fault", "dut", "seed", "status", "kpis", "failed", "error", "dir")
    return {
        "campaign": campaign.name, "description": campaign.description, "file": campaign.file,
        "axes": {"scenarios": campaign.scenarios, "faults": campaign.faults, "duts": campaign.duts,
                 "seeds": campaign.seeds, "checks": campaign.checks},
        "counts": dict(counts, total=len(runs)),
        "verdict": "pass" if counts["pass"] == len(runs) else ("incomplete" if counts["missing"] else "fail"),
        "matrix": matrix, "kpi_distributions": dists,
        "worst": [{k: r.get(k) for k in keep} for r in worst],
        "runs": [{k: r.get(k) for k in keep} for r in runs],
    }
