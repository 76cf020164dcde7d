"""One campaign run, as a Dask task: plain data in, plain data out, result persisted atomically.

``execute_run(task)`` validates the run's scenario, runs it in fast mode (virtual time) into
``OUT/runs/RUN_ID/`` (trace.csv, summary.json, verdicts.json), decides pass/fail with the chosen
compliance checks and writes ``result.json`` with a write-to-temp-then-rename, so a result file is
either complete or absent: an interrupted campaign never leaves a half-written result that a resume
would trust. Every start of a run appends a line to ``attempts.log`` in the run's folder (what the
resume test counts, and a record of retries).
"""
from __future__ import annotations

import copy
import json
import os
import tempfile
import time
import traceback
from dataclasses import fields
from pathlib import Path

RESULT = "result.json"

# KPIs a campaign aggregates (all from the run's summary and service KPIs; no wall-clock numbers,
# so the aggregate of a campaign is the same however and wherever it ran)
KPI_KEYS = ("energy_delivered_kwh", "energy_requested_kwh", "share_met", "peak_kw", "peak_15min_kw",
            "max_over_a", "overshoot_a_s", "starvation_max_s", "jain", "failed_transactions", "sessions",
            "cost_eur")


def run_dir(out_dir, run_id) -> Path:
    return Path(out_dir) / "runs" / run_id


def write_atomic(path: Path, data: dict) -> None:
    """Write JSON so that ``path`` is either the old file, absent, or complete (rename is atomic)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1, sort_keys=True, default=str)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def read_result(out_dir, run_id, spec_hash: str | None = None) -> dict | None:
    """A finished run's result, or None (absent, unreadable, from another spec, or an error)."""
    p = run_dir(out_dir, run_id) / RESULT
    try:
        res = json.loads(p.read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(res, dict) or res.get("status") not in ("pass", "fail"):
        return None
    if spec_hash is not None and res.get("spec_hash") != spec_hash:
        return None
    return res


def _checks(names, rec) -> list:
    from .. import compliance as C
    out = []
    for name in names:
        if name == "limits":
            out += C.limit_strict(rec) + C.limit_envelope(rec)
        elif name == "signalling":
            out += C.signalling(rec)
        elif name == "fairness":
            out += C.fairness(rec)
        elif name == "shutdown":
            out += C.fault_shutdown(rec)
        else:
            raise ValueError(f"unknown check {name!r}")
    return out


def _kpis(summary: dict, service: dict) -> dict:
    circuits = summary.get("circuits", {}).values()
    k = {"energy_delivered_kwh": summary.get("energy_delivered_kwh"),
         "energy_requested_kwh": summary.get("energy_requested_kwh"),
         "share_met": summary.get("share_met"), "peak_kw": summary.get("peak_kw"),
         "peak_15min_kw": service.get("peak_15min_kw"),
         "max_over_a": max((c["max_over_a"] for c in circuits), default=0.0),
         "overshoot_a_s": round(sum(c["overshoot_a_s"] for c in circuits), 3),
         "starvation_max_s": service.get("starvation_max_s"), "jain": service.get("jain"),
         "failed_transactions": summary.get("failed_transactions"),
         "sessions": len(summary.get("sessions", [])),
         # scenarios with an energy block: cost next to the service level
         "cost_eur": (summary.get("energy") or {}).get("total_cost_eur")}
    return {key: k[key] for key in KPI_KEYS}


def execute_run(task: dict) -> dict:
    """Run one task (see :meth:`RunSpec.task`); never raises for a run's own failure (status error)."""
    from ...core import Site
    from ...firmware_sim import FirmwareFaults
    from .. import compliance as C
    from ..recording import Recording
    from ..runner import run_fast
    from ..scenario.loader import validate

    rdir = run_dir(task["out_dir"], task["run_id"])
    rdir.mkdir(parents=True, exist_ok=True)
    with open(rdir / "attempts.log", "a") as f:
        f.write(f"{time.time():.3f} pid={os.getpid()}\n")
    t0 = time.perf_counter()
    base = {k: task[k] for k in ("run_id", "scenario", "fault", "dut", "seed", "spec_hash")}
    base["dir"] = f"runs/{task['run_id']}"
    try:
        sc = validate(copy.deepcopy(task["data"]), file=task["source"], duration=task["duration"],
                      seed=task["seed"])
        st = task["settings"]
        if st["firmware"] == "noncompliant":
            bad = FirmwareFaults.noncompliant()
            knobs = {f.name: getattr(bad, f.name) for f in fields(bad)}
            for dev in sc.chargers:
                dev.faults = dict(knobs)
        factory = None
        if st["dut"] == "naive":
            from ..naive import NaiveAllocator
            factory = NaiveAllocator
        rec = Recording.for_site(sc.name, Site.from_dict(sc.site))
        summary = run_fast(sc, rdir, recording=rec, allocator_factory=factory, backend=st["backend"])
        rec.sessions = summary.get("sessions", [])
        verdicts = _checks(task["checks"], rec)
        service = C.service_kpis(rec)
        failed = [v for v in verdicts if not v.passed]
        status = "pass" if verdicts and not failed else "fail"
        write_atomic(rdir / "verdicts.json", {"verdicts": [v.as_dict() for v in verdicts]})
        result = dict(base, status=status, kpis=_kpis(summary, service),
                      verdicts=[{"check": v.check, "subject": v.subject, "passed": v.passed,
                                 "summary": v.summary} for v in verdicts],
                      failed=[f"{v.check} {v.subject}: {v.summary}" for v in failed], error=None)
    except Exception as exc:   # a run that raises is an error result, never a pass
        result = dict(base, status="error", kpis={}, verdicts=[], failed=[],
                      error=f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=8)}")
    result["wall_s"] = round(time.perf_counter() - t0, 3)
    write_atomic(rdir / RESULT, result)
    return result
