"""Fast-mode shortcuts change nothing, also under faults: caches on and off give the same run.

With the caches on, fast mode skips work it can prove changes nothing: idle chargers only move their
clocks when the plant applied nothing in an advance, a repeated same-instant heartbeat is skipped,
register answers are reused while the points they were computed from are unchanged, drivers reuse
decoded fields. These cases push every kind of fault through the timeline (EV faults, residual
current, comm faults, controller restart, phase loss, non-compliant firmware), so the shortcuts
meet the state changes they must not miss; the firmware's ms-resolution event logs must match too.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json

import pytest

from dlbrig.core import Site
from dlbrig.firmware_sim import FirmwareFaults
from dlbrig.rig.certify.catalog import select
from dlbrig.rig.certify.runner import build_scenario
from dlbrig.rig.recording import Recording
from dlbrig.rig.runner import run_fast


def _run(tmp_path, case, caches, noncompliant=False):
    sc = build_scenario(case, seed=1)
    if noncompliant:
        bad = FirmwareFaults.noncompliant()
        for dev in sc.chargers:
            dev.faults = {f.name: getattr(bad, f.name) for f in dataclasses.fields(bad)}
    rec = Recording.for_site(sc.name, Site.from_dict(sc.site))
    out = tmp_path / f"{case.id}-{caches}-{noncompliant}"
    s = run_fast(sc, out, recording=rec, caches=caches)
    for k in ("wall_s", "speed_x_realtime"):
        s.pop(k)
    return {"summary": json.dumps(s, sort_keys=True, default=str),
            "trace": hashlib.sha256((out / "trace.csv").read_bytes()).hexdigest(),
            "evse_events": rec.evse_events, "steps": rec.steps, "failures": rec.failures}


CASES = ["FS-002", "FS-005", "FS-008", "FS-011", "COM-001", "COM-005", "COM-007", "COM-008", "COM-009",
         "LIM-007"]


@pytest.mark.parametrize("case_id", CASES)
def test_caches_do_not_change_faulted_runs(tmp_path, case_id):
    (case,) = select(case_id)
    on, off = _run(tmp_path, case, True), _run(tmp_path, case, False)
    assert on["evse_events"] and any(on["evse_events"].values()), "the case must exercise the firmware"
    for key in on:
        assert on[key] == off[key], key


@pytest.mark.parametrize("case_id", ["COM-001", "FS-008"])
def test_caches_do_not_change_noncompliant_firmware(tmp_path, case_id):
    (case,) = select(case_id)
    on, off = _run(tmp_path, case, True, True), _run(tmp_path, case, False, True)
    for key in on:
        assert on[key] == off[key], key


def test_a_wrong_shortcut_is_caught(tmp_path, monkeypatch):
    """The comparison has teeth: reusing register answers without checking their points (stale
    currents and states) makes the runs differ."""
    from dlbrig.firmware_sim.profiles.image import DeviceImage

    (case,) = select("COM-001")
    off = _run(tmp_path, case, False)
    monkeypatch.setattr(DeviceImage, "_still_valid", lambda self, u, deps, cache: True)
    wrong = _run(tmp_path, case, True)
    assert wrong["trace"] != off["trace"]
