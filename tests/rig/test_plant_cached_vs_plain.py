"""The plant's fast paths (caches) give the plain path's results exactly: two plants of the same
scenario, one with caches and one without, advanced side by side through arrivals, timeline steps
(a phase loss: the plain truth path; a base step on a circuit with chargers: its loads computed
every time; a charger fault, an EV fault, plug and unplug) and controller-like writes, must agree
on the truth, the meters, the session information and the charge points' state at every second."""
from __future__ import annotations

import pytest

from dlbrig.rig.plant import Plant
from dlbrig.rig.scenario.loader import validate

TIMELINE = [
    "at 07:00:20 plug l1_03 ev=sedan_3p soc=30% need=20kWh depart=15:00",
    "at 07:00:40 ev l1_01 overdraw 20% for 15s",
    "at 07:01 charger l2_01 fault for 20s",
    "at 07:01:30 base level_2 step +12A for 30s",
    "at 07:02 phase level_1 L2 loss for 20s",
    "at 07:02:30 phase main L3 loss for 5s",
    "at 07:03 unplug l1_02",
    "at 07:03:10 meter main frozen for 10s",
]


def _scenario():
    data = {
        "name": "plant_cached_vs_plain", "seed": 3, "start": "Mon 07:00", "duration": "4m", "mode": "fast",
        "site": {"voltage_v": 230, "policy": "fair", "circuits": [
            {"name": "main", "limit_a": 250, "margin_a": 5, "meter": True, "fallback_base_a": [180, 180, 180]},
            {"name": "level_1", "parent": "main", "limit_a": 100},
            {"name": "level_2", "parent": "main", "limit_a": 100, "meter": True, "fallback_base_a": [0, 0, 0]}],
            "chargers": [
                {"name": "l1_{n:02d}", "count": 4, "circuit": "level_1", "min_a": 6, "max_a": 16},
                {"name": "l2_{n:02d}", "count": 4, "circuit": "level_2", "min_a": 6, "max_a": 16}]},
        "meters": [{"circuit": "main", "profile": "em24", "transport": "rtu", "bus": "rs485-1"},
                   {"circuit": "level_2", "profile": "sdm630", "transport": "tcp"}],
        "chargers": [{"charger": "l1_*", "profile": "alfen_ng9xx", "transport": "tcp"},
                     {"charger": "l2_*", "profile": "keba_p30", "transport": "tcp"}],
        "loads": [{"circuit": "main", "kind": "office", "peak_a": 150, "unbalance": 0.08}],
        "arrivals": [{"count": 6, "window": ["07:00", "07:00:30"], "dwell": ["2m", "3m"],
                      "energy_kwh": [1, 30], "presets": {"sedan_3p": 2, "compact_1p": 1}}],
        "timeline": TIMELINE,
    }
    return validate(data, file="<plant_cached_vs_plain>")


def _state(plant, t):
    out = {"truth": {n: [repr(x) for x in v] for n, v in plant.truth.items()}}
    for n, m in plant.meters.items():
        out[n] = repr(sorted(m.points().items())) + repr((m._imp, m._exp, m._imp_tot, m._exp_tot))
    for n, cp in plant.chargers.items():
        e = cp.evse
        out[n] = repr((plant.session_info(n), cp.status, cp.currents_a(), e.session_energy_wh,
                       e.state_signature(), cp.ev.state_signature() if cp.ev else None,
                       sorted(cp.points().items())))
    return out


def test_fast_plant_equals_plain_plant():
    sc = _scenario()
    fast, plain = Plant(sc, caches=True), Plant(sc, caches=False)
    took_memo = took_plain = 0
    for step in range(240):
        t = step * 1000
        fast.advance(t)
        plain.advance(t)
        if fast._dead:
            took_plain += 1
        elif fast._truth_memo:
            took_memo += 1
        for p in (fast, plain):          # a controller's writes: set-points and heartbeats
            for k, (name, cp) in enumerate(p.chargers.items()):
                if step % 5 == k % 5:
                    cp.write_point("setpoint_a", 6.0 + (step // 10 + k) % 11, t)
                cp.write_point("heartbeat", True, t) if "heartbeat" in cp.points() else None
        assert _state(fast, t) == _state(plain, t), t
    assert took_memo > 100 and took_plain >= 20
    assert fast.events_log == plain.events_log
    assert any("loss" in e for _, e in fast.events_log)


def test_truth_fast_equals_circuit_truth_when_a_charger_changes():
    """The per-circuit sums are kept only while every charger of the circuit is unchanged: a
    set-point write that changes one charger's current must show in the next truth."""
    sc = _scenario()
    p = Plant(sc, caches=True)
    for step in range(60):
        p.advance(step * 1000)
        for cp in p.chargers.values():
            cp.write_point("setpoint_a", 16.0, step * 1000)
        assert p._truth_fast(step * 1000) == p.circuit_truth(step * 1000)
    p.advance(60_000)
    name = next(n for n, cp in p.chargers.items() if n.startswith("l1") and cp.currents_a()[0] > 6.5)
    cp = p.chargers[name]
    before = p.truth["level_1"][0]
    cp.write_point("setpoint_a", 6.0, 60_000)
    for step in range(61, 75):
        p.advance(step * 1000)
        assert p._truth_fast(step * 1000) == p.circuit_truth(step * 1000)
    assert p.truth["level_1"][0] < before - 0.5
