"""Run the catalog against a device under test and collect the verdicts.

DUTs:
- ``builtin``: the built-in core as site controller, firmware_sim chargers (fast mode, or wire mode
  over real Modbus sockets with ``mode="wire"``: then the frames are kept for the pcap);
- ``naive``: the naive controller (:mod:`dlbrig.rig.naive`), the negative control for controller cases;
- ``modbus-charger``: an external charger over Modbus: COM-010..012 over Modbus alone
  (:mod:`.charger_probe`), FS-* with an EV-side simulator (``ev_sim``, :mod:`.ev_side`);
- ``modbus-controller``: an external controller process (``dut_command``), judged by what it does to
  the emulated site over real Modbus (:mod:`dlbrig.rig.external`); always wire mode;
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

DUTS = ("builtin", "naive", "modbus-controller", "modbus-charger")
PROBE_SPEED_FAST = 10.0   # Modbus-only charger cases need sockets: in fast mode the stand-in runs 10x
MODES = ("fast", "wire")
FIRMWARE = ("compliant", "noncompliant")


def deep_merge(dst: dict, src: dict) -> dict:
    """Merge ``src`` into ``dst`` (nested mappings merged, anything else replaced by a copy)."""
    for k, v in src.items():
        if isinstance(v, dict) and isinstance(dst.get(k), dict):
            deep_merge(dst[k], v)
        else:
            dst[k] = copy.deepcopy(v)
    return dst


def build_scenario(case, seed: int):
    if case.scenario == "inline":
        data = copy.deepcopy(case.spec)
        data["name"] = case.id.lower()
    else:
        data = copy.deepcopy(load_scenario(case.scenario)._raw)
    deep_merge(data, case.overrides or {})
    return validate(data, file=f"<{case.id}>", duration=case.duration, seed=seed)


def _allocator_factory(dut: str):
    if dut == "builtin":
        return None
    if dut == "naive":
        from ..naive import NaiveAllocator
        return NaiveAllocator
    if dut in ("modbus-controller", "modbus-charger"):
        return None
    raise ValueError(f"unknown DUT {dut!r} (one of {', '.join(DUTS)})")


def _execute(sc, case_dir, rec, *, dut, mode, speed, dut_command, frames, case_id):
    """Run the case's scenario against the DUT; returns the run's summary."""
    if dut == "modbus-controller":
        import asyncio
        from ..external import judge_external_async
        from ..modbus import FrameRecorder
        if not dut_command:
            raise ValueError("--dut modbus-controller needs --dut-command (the command that starts it)")
        tap = FrameRecorder(maxlen=200_000)
        try:
            return asyncio.run(judge_external_async(sc, case_dir, command=dut_command, speed=speed,
                                                    recording=rec, tap=tap))
        finally:
            if frames is not None:
                frames[case_id] = list(tap.frames)
    if mode == "wire":
        from ..modbus import FrameRecorder
        from ..wire import run_wire
        tap = FrameRecorder(maxlen=200_000)
        try:
            summary = run_wire(sc, case_dir, speed=speed, recording=rec, tap=tap,
                               allocator_factory=_allocator_factory(dut))
            if summary.get("interrupted"):     # Ctrl-C during the case: stop the suite, as in fast mode
                raise KeyboardInterrupt
            return summary
        finally:
            if frames is not None:
                frames[case_id] = list(tap.frames)
    return run_fast(sc, case_dir, recording=rec, allocator_factory=_allocator_factory(dut))


def _run_probe(case, sc, *, dut, mode, speed, charger_target, frames, ev_sim=None, armed=False):
    import asyncio
    from .charger_probe import PROBES, run_probe_on_emulated
    probe = PROBES[case.probe]
    if dut == "modbus-charger":
        if charger_target is None:
            raise ValueError("--dut modbus-charger needs --profile, --host and --port")
        subject = f"{charger_target.host}:{charger_target.port}"
        if ev_sim:     # the EV simulator is the EV plugged in and asking for current
            from .ev_side import with_ev_asking
            return asyncio.run(with_ev_asking(ev_sim, lambda: probe(charger_target, subject=subject), armed=armed))
        return asyncio.run(probe(charger_target, subject=subject))
    from ..modbus import FrameRecorder
    tap = FrameRecorder(maxlen=50_000)
    try:
        return asyncio.run(run_probe_on_emulated(sc, probe, speed=speed if mode == "wire" else PROBE_SPEED_FAST,
                                                 tap=tap))
    finally:
        if frames is not None:
            frames[case.id] = list(tap.frames)


def _run_ev_side(case, case_dir, t0, *, charger_target, ev_sim, armed):
    """An FS case against an external charger through the EV simulator at ``ev_sim``."""
    from ..trace import write_json
    from .ev_side import NotRunnable, run_case_external_sync
    try:
        verdicts, rec = run_case_external_sync(case, charger_target, ev_sim, armed=armed)
    except NotRunnable as exc:
        return CaseResult(case, "skipped", [], None, str(case_dir), time.perf_counter() - t0, str(exc),
                          {"case": case.id, "skipped": str(exc)})
    status = "pass" if verdicts and all(v.passed for v in verdicts) else "fail"
    case_dir.mkdir(parents=True, exist_ok=True)
    summary = {"case": case.id, "dut": "modbus-charger", "ev_simulator": ev_sim,
               "judged_from": "the EV simulator's event log",
               "events": {k: [list(e) for e in v] for k, v in rec.evse_events.items()},
               "verdicts": [v.as_dict() for v in verdicts]}
    write_json(case_dir / "summary.json", summary)
    return CaseResult(case, status, verdicts, rec, str(case_dir), time.perf_counter() - t0, None, summary)


def run_case(case, *, dut="builtin", firmware="compliant", seed=1, out_dir="out/certify", mode="fast",
             speed=1.0, dut_command=None, frames=None, charger_target=None, ev_sim=None,
             armed=False) -> CaseResult:
    """``frames``: a dict that receives the case's raw Modbus frames (wire mode) under its id.
    ``charger_target``: a :class:`~.charger_probe.ChargerTarget` for ``dut="modbus-charger"``;
    ``ev_sim``: the VISA resource of an EV-side simulator on that charger, which runs the FS cases
    (:mod:`.ev_side`); ``armed``: writing to non-loopback devices is allowed."""
    if mode not in MODES:
        raise ValueError(f"unknown mode {mode!r} (one of {', '.join(MODES)})")
    t0 = time.perf_counter()
    case_dir = Path(out_dir) / "cases" / case.id
    try:
        sc = build_scenario(case, seed)
        if firmware == "noncompliant":
            bad = FirmwareFaults.noncompliant()
            knobs = {f.name: getattr(bad, f.name) for f in fields(bad)}
            for dev in sc.chargers:
                dev.faults = dict(knobs)
        if case.probe:
            verdicts = _run_probe(case, sc, dut=dut, mode=mode, speed=speed, charger_target=charger_target,
                                  frames=frames, ev_sim=ev_sim, armed=armed)
            status = "pass" if verdicts and all(v.passed for v in verdicts) else "fail"
            from ..trace import write_json
            case_dir.mkdir(parents=True, exist_ok=True)
            summary = {"case": case.id, "probe": case.probe, "dut": dut,
                       "verdicts": [v.as_dict() for v in verdicts]}
            write_json(case_dir / "summary.json", summary)
            return CaseResult(case, status, verdicts, None, str(case_dir), time.perf_counter() - t0, None, summary)
        if dut == "modbus-charger":
            if case.family == "FS" and ev_sim:
                if charger_target is None:
                    raise ValueError("--dut modbus-charger needs --profile, --host and --port")
                return _run_ev_side(case, case_dir, t0, charger_target=charger_target, ev_sim=ev_sim,
                                    armed=armed)
            if case.family == "FS":
                raise ValueError(f"{case.id} needs the EV side of the charger: give an EV simulator "
                                 f"(--ev-sim RESOURCE) to run it against an external charger")
            raise ValueError(f"{case.id} needs a whole site: it runs on emulated chargers only")
        from ...core import Site
        rec = Recording.for_site(sc.name, Site.from_dict(sc.site))
        summary = _execute(sc, case_dir, rec, dut=dut, mode=mode, speed=speed, dut_command=dut_command,
                           frames=frames, case_id=case.id)
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
              progress=None, mode="fast", speed=1.0, dut_command=None, frames=None,
              charger_target=None, ev_sim=None, armed=False) -> SuiteResult:
    suite = SuiteResult(dut=dut, firmware=firmware, seed=seed,
                        started=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"))
    t0 = time.perf_counter()
    try:
        for i, case in enumerate(cases):
            if progress is not None:
                progress(i, len(cases), case, time.perf_counter() - t0)
            suite.cases.append(run_case(case, dut=dut, firmware=firmware, seed=seed, out_dir=out_dir, mode=mode,
                                        speed=speed, dut_command=dut_command, frames=frames,
                                        charger_target=charger_target, ev_sim=ev_sim, armed=armed))
    except KeyboardInterrupt:
        suite.interrupted = True
    suite.duration_s = time.perf_counter() - t0
    return suite
