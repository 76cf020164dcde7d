"""Run the catalog against a device under test and collect the verdicts.

DUTs:
- ``builtin``: the built-in core as site controller, firmware_sim chargers (fast mode);
- ``naive``: the naive controller (:mod:`dlbrig.rig.naive`), the negative control for controller cases;
- ``--firmware noncompliant``: every charger runs :meth:`FirmwareFaults.noncompliant` (slow contactor,
  no diode check, no watchdog, ignores the PWM spacing, overcurrent never trips), the negative
  control for charger cases.

A case that raises is an ``error`` (with the message), never a silent pass. Ctrl-C stops after the
running case and the finished cases are still reported.
"""
from __future__ import annotations

import copy
import datetime as _dt
import time
import traceback
from dataclasses import fields
from pathlib import Path

from ...firmware_sim import FirmwareFaults
from ..recording import Recording
from ..runner import run_fast
from ..scenario import load_scenario
from ..scenario.loader import validate
from .model import CaseResult, SuiteResult

DUTS = ("builtin", "naive")
FIRMWARE = ("compliant", "noncompliant")


def _merge(dst: dict, src: dict) -> dict:
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            _merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def build_scenario(case, seed: int):
    if case.scenario == "inline":
        data = copy.deepcopy(case.spec)
        data["name"] = case.id.lower()
    else:
        data = copy.deepcopy(load_scenario(case.scenario)._raw)
    _merge(data, case.overrides or {})
    return validate(data, file=f"<{case.id}>", duration=case.duration, seed=seed)


def _allocator_factory(dut: str):
    if dut == "builtin":
        return None
    if dut == "naive":
        from ..naive import NaiveAllocator
        return NaiveAllocator
    raise ValueError(f"unknown DUT {dut!r} (one of {', '.join(DUTS)})")


def run_case(case, *, dut="builtin", firmware="compliant", seed=1, out_dir="out/certify") -> CaseResult:
    t0 = time.perf_counter()
    case_dir = Path(out_dir) / "cases" / case.id
    try:
        sc = build_scenario(case, seed)
        if firmware == "noncompliant":
            bad = FirmwareFaults.noncompliant()
            knobs = {f.name: getattr(bad, f.name) for f in fields(bad)}
            for dev in sc.chargers:
                dev.faults = dict(knobs)
        from ...core import Site
        rec = Recording.for_site(sc.name, Site.from_dict(sc.site))
        summary = run_fast(sc, case_dir, recording=rec, allocator_factory=_allocator_factory(dut))
        rec.sessions = summary.get("sessions", [])
        verdicts = case.checks(rec, case) if case.checks else []
        status = "pass" if verdicts and all(v.passed for v in verdicts) else "fail"
        if not verdicts:
            status, err = "error", "the case has no checks"
        else:
            err = None
        return CaseResult(case, status, verdicts, rec, str(case_dir), time.perf_counter() - t0, err, summary)
    except KeyboardInterrupt:
        raise
    except Exception as exc:   # an error is a finding, never a pass
        return CaseResult(case, "error", [], None, str(case_dir), time.perf_counter() - t0,
                          f"{type(exc).__name__}: {exc}\n{traceback.format_exc(limit=6)}", {})


def run_suite(cases, *, dut="builtin", firmware="compliant", seed=1, out_dir="out/certify",
              progress=None) -> SuiteResult:
    suite = SuiteResult(dut=dut, firmware=firmware, seed=seed,
                        started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    try:
        for i, case in enumerate(cases):
            if progress is not None:
                progress(i, len(cases), case, time.perf_counter() - t0)
            suite.cases.append(run_case(case, dut=dut, firmware=firmware, seed=seed, out_dir=out_dir))
    except KeyboardInterrupt:
        suite.interrupted = True
    suite.duration_s = time.perf_counter() - t0
    return suite
