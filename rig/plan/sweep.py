"""Sweep the number of chargers on the Dask engine and pick the recommendation."""
from __future__ import annotations

import math
import re
import time
from dataclasses import asdict

from ..campaign.engine import cluster_label, execute
from .demand import PROFILES, DemandProfile, profile_from_dict
from .site import PlanSite

SERVED_TARGET = 0.95


def _pct(x) -> str:
    """Rounded down, so a share just under the target never reads as the target."""
    return f"{math.floor((x or 0) * 1000) / 10:.1f} %"


def parse_counts(text: str, step: int | None = None) -> list:
    """'10..60' (with ``step``, default 10), '10,20,40' or '25'."""
    s = str(text).strip()
    m = re.fullmatch(r"(\d+)\s*\.\.\s*(\d+)", s)
    if m:
        lo, hi = int(m.group(1)), int(m.group(2))
        step = step or 10
        if lo < 1 or hi < lo or step < 1:
            raise ValueError(f"must be FIRST..LAST with 1 <= FIRST <= LAST, got {text!r}")
        out = list(range(lo, hi + 1, step))
        if out[-1] != hi:
            out.append(hi)
        return out
    try:
        out = sorted({int(x) for x in s.split(",")})
    except ValueError:
        raise ValueError(f"must be FIRST..LAST or a list like 10,20,40, got {text!r}") from None
    if not out or out[0] < 1:
        raise ValueError(f"counts must be >= 1, got {text!r}")
    if out[-1] > 1000:
        raise ValueError(f"at most 1000 chargers, got {out[-1]}")
    return out


def plan_task(task: dict) -> dict:
    """One charger count (a Dask task: plain data in and out)."""
    from .sim import simulate
    site = PlanSite(**task["site"])
    profile = profile_from_dict(task["profile"], task["profile"]["name"])
    return simulate(site, task["count"], profile, task["days"], seed=task["seed"], cycle_s=task["cycle_s"],
                    energy=site.energy)


def recommend(results: list, target: float = SERVED_TARGET) -> dict:
    ok = [r for r in results if (r["served_share"] or 0) >= target and r["main_over_s"] == 0
          and r["contract_exceedance_with_ev_s"] == 0]
    counts = [r["chargers"] for r in results]
    pct = f"{target * 100:.0f} %"
    if not ok:
        best = max(results, key=lambda r: (r["served_share"] or 0))
        return {"chargers": None, "text": f"none of the counts tried ({min(counts)}..{max(counts)}) serves "
                f">= {pct} of drivers: the best is {best['chargers']} chargers with "
                f"{_pct(best['served_share'])} served; try fewer chargers, a battery or a larger connection"}
    top = max(ok, key=lambda r: r["chargers"])
    text = (f"this connection carries {top['chargers']} chargers with >= {pct} of drivers served "
            f"({_pct(top['served_share'])}, peak {top['peak_15min_kw']:.0f} kW as 15-min average, "
            f"no exceedance)")
    if top["chargers"] == max(counts):
        text += f"; {max(counts)} is the largest count tried, more may fit"
    gaps = [r["chargers"] for r in results if r["chargers"] < top["chargers"] and r not in ok]
    if gaps:
        text += f" (note: {', '.join(map(str, gaps))} chargers fell short: the service level is not monotonic in this sample)"
    return {"chargers": top["chargers"], "text": text}


def run_plan(site: PlanSite, counts: list, profile: DemandProfile, days: int, *, seed: int = 1,
             cycle_s: int = 60, workers: int = 2, scheduler: str | None = None, serial: bool = False,
             progress=None) -> dict:
    t0 = time.perf_counter()
    pdict = {k: (list(v) if isinstance(v, tuple) else v) for k, v in asdict(profile).items()}
    tasks = [{"key": f"plan-{site.name}-{n}", "site": site.as_dict(), "count": n, "profile": pdict,
              "days": days, "seed": seed, "cycle_s": cycle_s} for n in counts]
    results = [None] * len(tasks)
    for i, r in execute(plan_task, tasks, workers=workers, scheduler=scheduler, serial=serial):
        results[i] = r
        if progress is not None:
            progress(sum(x is not None for x in results), len(tasks), r)
    return {"site": site.as_dict(), "profile": pdict, "days": days, "seed": seed, "cycle_s": cycle_s,
            "counts": counts, "results": results, "recommendation": recommend(results),
            "model": "planning simulator: allocator core (C) + energy layer at a 60 s cycle, simple EV models "
                     "(rig/plan/sim.py); not the full rig",
            "engine": cluster_label(workers, scheduler, serial), "wall_s": round(time.perf_counter() - t0, 1)}
