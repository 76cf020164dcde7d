"""The EVSE's read token (its change counter): an unchanged token proves unchanged points.

A register image (fast mode) reuses the answers of registers computed from charger points outside
``TIMED_POINTS`` while ``ChargePoint.read_token()`` is the one it saw then. That is only right if
every way the model can change bumps the token. Two checks:

* a seeded random walk through everything that changes a charger (plug, unplug, every write
  point, EV faults, firmware fault knobs, config knobs, supply voltages, draw limits, an owner
  setting an attribute directly, time): whenever the token did not change between two looks,
  every non-timed point is the same (type, value, sign of zero);
* the attributes the non-timed point getters read are never ones the counter leaves out
  (``_UNVERSIONED``) nor mutable objects it cannot see (the energy integrators, the event log).

The walk is shown to catch a counter that misses a path (last test).
"""
from __future__ import annotations

import math
import random

import pytest

import dlbrig.firmware_sim.evse as evse_mod
from dlbrig.firmware_sim.ev import EV
from dlbrig.firmware_sim.evse import (CHARGER_POINTS_READ, CHARGER_STATUSES, TIMED_POINTS, ChargePoint, ErrorCode,
                                      Evse, EvseConfig, EvSignals, FirmwareFaults)

STATIC = [n for n in CHARGER_POINTS_READ if n not in TIMED_POINTS]

_REC: set | None = None       # attribute names read on the EVSE while set


class _RecordingEvse(Evse):
    def __getattribute__(self, name):
        if _REC is not None:
            _REC.add(name)
        return object.__getattribute__(self, name)


def _same(a, b) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, float):
        if math.isnan(a) or math.isnan(b):
            return math.isnan(a) and math.isnan(b)
        return a == b and math.copysign(1.0, a) == math.copysign(1.0, b)
    return a == b


def _static_points(cp: ChargePoint) -> dict:
    return {n: cp.point(n) for n in STATIC}


def _ops(rng: random.Random, cp: ChargePoint, t: int) -> int:
    """One random change at (or after) ``t``; returns the new time."""
    k = rng.randrange(18)
    e = cp.evse
    try:
        if k <= 2:
            t += rng.choice((0, 1, 50, 300, 999, 1000, 3000, 7001))
            cp.advance(t)
        elif k == 3:
            if cp.ev is None:
                cp.plug(EV.preset(rng.choice(["sedan_3p", "compact_1p", "van_3p_22kw"]),
                                  seed=rng.randrange(100), soc_pct=rng.choice([20.0, 79.9, 99.5]),
                                  start_delay_range_ms=(100, 2000)), t)
            elif rng.random() < 0.3:
                cp.unplug(t)
        elif k == 4:
            cp.write_point("setpoint_a", rng.choice([0.0, -0.0, 5.0, 6, 6.0, 10.5, 16.0, 32.0]), t)
        elif k == 5:
            cp.write_point(rng.choice(["heartbeat", "enabled", "unlock"]), rng.choice([True, False]), t)
        elif k == 6:
            cp.write_point(rng.choice(["safe_current_a", "watchdog_timeout_s", "setpoint_validity_s"]),
                           rng.choice([0.0, 1, 2.0, 6.0, 8.0]), t)
        elif k == 7:
            cp.write_point("phases_setting", rng.choice([1, 3]), t)
        elif k == 8 and cp.ev is not None:      # EV faults (the plant's timeline does the same)
            f = cp.ev.faults
            name = rng.choice(["missing_diode", "cp_short", "ignore_pwm", "leakage_dc_ma",
                               "leakage_ac_ma", "overdraw_pct"])
            setattr(f, name, rng.choice([0.0, 10.0, 40.0, 200.0]) if name.endswith(("ma", "pct"))
                    else rng.random() < 0.5)
            cp.advance(t)
        elif k == 9:            # firmware fault knobs, set in place (no EVSE attribute changes)
            e.faults.misreport_current_pct = rng.choice([0.0, -0.0, 10.0, -5.0])
        elif k == 10:
            e.faults.no_watchdog = rng.random() < 0.5
        elif k == 11:            # config knobs, set in place
            e.config.tethered_cable_a = rng.choice([None, 20.0, 13.0])
        elif k == 12:
            e.config.charging_threshold_a = rng.choice([0.5, 1.0, 40.0])
        elif k == 13:
            cp.set_voltages([rng.choice([0.0, 230.0, 207.0]) for _ in range(3)], t)
        elif k == 14:
            cp.set_draw_limit(rng.randrange(3), rng.choice([None, 0.0, 3.0, 10.0]), t)
        elif k == 15:           # an owner setting model attributes directly
            setattr(e, rng.choice(["enabled", "pwm_on", "contactor_closed"]), rng.random() < 0.5)
        elif k == 16:
            e._error = rng.choice([ErrorCode.NONE, ErrorCode.RCD_DC])
            e._ev = EvSignals(cp=rng.choice("ABC"), currents_a=(rng.choice([0.0, -0.0, 7.0]), 0.0, 0.0),
                              pp_ohm=220.0)
        else:
            e.voltages_v = (rng.choice([230.0, 0.0]), 230.0, 230.0)
    except (ValueError, RuntimeError):
        pass    # an operation the model refuses in its current state is still a step of the walk
    return t


def _walk(seed: int, steps: int = 400) -> tuple[list, int, int]:
    """(violations, looks with the token unchanged, looks with it changed)."""
    rng = random.Random(seed)
    cp = ChargePoint(EvseConfig(supports_phase_switching=True, watchdog_timeout_ms=5000),
                     FirmwareFaults())
    t = 0
    tok, pts = cp.read_token(), _static_points(cp)
    bad, same, moved = [], 0, 0
    for _ in range(steps):
        t = _ops(rng, cp, t)
        tok2, pts2 = cp.read_token(), _static_points(cp)
        if tok2 == tok:
            same += 1
            diff = [n for n in STATIC if not _same(pts[n], pts2[n])]
            if diff:
                bad.append((t, diff))
        else:
            moved += 1
        tok, pts = tok2, pts2
    return bad, same, moved


@pytest.mark.parametrize("seed", range(6))
def test_an_unchanged_token_means_unchanged_points(seed):
    bad, same, moved = _walk(seed)
    assert not bad, bad[:5]
    assert same > 20 and moved > 20, (same, moved)     # both kinds of look were exercised


def test_point_getters_read_only_counted_state():
    """Every attribute a non-timed getter reads is counted by the change counter and holds an
    immutable value (or the config / fault knobs, which bump their own generation)."""
    global _REC
    rng = random.Random(7)
    cp = ChargePoint(EvseConfig(supports_phase_switching=True, watchdog_timeout_ms=5000))
    cp.evse.__class__ = _RecordingEvse
    seen: set = set()
    t = 0
    try:
        for _ in range(600):
            t = _ops(rng, cp, t)
            _REC = set()
            _static_points(cp)
            seen |= _REC
            _REC = None
            e = cp.evse
            for name in seen & set(vars(e)):
                v = vars(e)[name]
                assert isinstance(v, (int, float, str, bool, type(None), tuple, EvSignals,
                                      EvseConfig, FirmwareFaults)), (name, type(v))
    finally:
        _REC = None
    assert not seen & (evse_mod._UNVERSIONED | {"_session", "_total", "events"}), seen
    # the walk reached the getters' branches (currents while charging, the cable, the error)
    assert {"_ev", "contactor_closed", "pwm_on", "_error", "config", "faults"} <= seen


def test_the_walk_catches_a_counter_that_misses_a_path(monkeypatch):
    """Sensitivity: leave the EV signals and the contactor out of the counter, and the walk finds
    points that changed under an unchanged token."""
    monkeypatch.setattr(evse_mod, "_UNVERSIONED",
                        evse_mod._UNVERSIONED | {"_ev", "contactor_closed", "pwm_on", "enabled"})
    assert any(_walk(seed)[0] for seed in range(6))


def test_knob_changes_move_the_token():
    cp = ChargePoint(EvseConfig())
    tok = cp.read_token()
    cp.evse.faults.misreport_current_pct = 5.0
    assert cp.read_token() != tok
    tok = cp.read_token()
    cp.evse.config.hw_max_current_a = 16.0
    assert cp.read_token() != tok
    tok = cp.read_token()
    cp.advance(10_000, unchanged=True)          # time alone: the token stays
    assert cp.read_token() == tok


def _status_before(e) -> str:
    """``Evse.status`` as it was written before it was spelled out on the attributes."""
    if e.error_code != ErrorCode.NONE or e.cp_state in ("E", "F"):
        return "fault"
    if not e.enabled:
        return "unavailable"
    if not e.connected:
        return "disconnected"
    if not e.pwm_on:
        return "connected_idle"
    if e._ev_cp in ("C", "D"):
        if e.contactor_closed and max(e.currents_a) <= e.config.charging_threshold_a:
            return "ev_suspended"
        return "charging"
    return "ev_suspended" if e._had_charged else "connected_idle"


def test_status_matches_its_definition():
    seen = set()
    for seed in range(6):
        rng = random.Random(100 + seed)
        cp = ChargePoint(EvseConfig(supports_phase_switching=True, watchdog_timeout_ms=5000))
        t = 0
        for _ in range(500):
            t = _ops(rng, cp, t)
            assert cp.evse.status == _status_before(cp.evse)
            seen.add(cp.evse.status)
    assert set(CHARGER_STATUSES) <= seen, seen
