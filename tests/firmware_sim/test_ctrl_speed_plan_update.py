"""``DeviceImage._plan_update``: a charger plan whose points changed re-encodes only the registers
whose recorded points changed (and every time-dependent one) instead of rebuilding the plan.

Its invalidation rule: a register keeps its words only while every point it looked up last time
has the same value now (same type, equal, same sign of zero). Each step below changes the model
(a set-point, a phase switch, unplug / plug, a fault knob, an attribute set by hand, the EV's
draw) and compares the memo's answers with a second image without caches over the same model.
The tests also check that the update path, not the full build, answered. A check that keeps
every register, or one that keeps the time-dependent registers without encoding them again,
fails them (checked by hand).
"""
from __future__ import annotations

import pytest

from dlbrig.firmware_sim.ev import EV
from dlbrig.firmware_sim.evse import ChargePoint, EvseConfig
from dlbrig.firmware_sim.profiles import DeviceImage, ModbusError, get_profile
from dlbrig.firmware_sim.profiles import image as image_mod
from dlbrig.firmware_sim.profiles.driver import driver_for

PROFILES = ["alfen_ng9xx", "keba_p30", "abb_terra_ac"]


def _answer(fn):
    try:
        return ("ok", fn())
    except ModbusError as exc:
        return ("exc", exc.code)


@pytest.fixture
def counted(monkeypatch):
    """Counts of the full builds and of the updates that answered."""
    n = {"build": 0, "update": 0}
    build, update = image_mod.DeviceImage._plan_build, image_mod.DeviceImage._plan_update

    def b(self, *a):
        n["build"] += 1
        return build(self, *a)

    def u(self, *a):
        r = update(self, *a)
        n["update"] += r is not None
        return r
    monkeypatch.setattr(image_mod.DeviceImage, "_plan_build", b)
    monkeypatch.setattr(image_mod.DeviceImage, "_plan_update", u)
    return n


@pytest.mark.parametrize("name", PROFILES)
def test_update_follows_every_change(name, counted):
    p = get_profile(name)
    cp = ChargePoint(EvseConfig(watchdog_timeout_ms=60_000, supports_phase_switching=True))
    drv = driver_for(p)
    unit = drv.unit
    fast = DeviceImage(p, {unit: cp}, cache=True)
    plain = DeviceImage(p, {unit: cp})
    plan = drv.read_plan_view()
    t = 0

    def check():
        got = _answer(lambda: fast.read_many(unit, plan, t, shared=True))
        want = _answer(lambda: [plain.read(unit, tb, a, n, t) for tb, a, n in plan])
        assert got == want, (name, t)
        return got

    def write(ws):
        for table, address, words in ws:
            fast.write(unit, table, address, words, t)

    check()
    cp.plug(EV.preset("sedan_3p", seed=3, start_delay_range_ms=(1000, 1000)), t)
    fast.invalidate()
    check()
    write(drv.setpoint_writes(16.0))
    seen = set()
    steps = [lambda: write(drv.setpoint_writes(10.0)), lambda: write(drv.setpoint_writes(0.0)),
             lambda: write(drv.setpoint_writes(13.0)), lambda: write(drv.phase_writes(1) or drv.setpoint_writes(11.0)),
             lambda: write(drv.phase_writes(3) or drv.setpoint_writes(12.0)),
             lambda: setattr(cp.evse.faults, "misreport_current_pct", 25.0),
             lambda: setattr(cp.evse, "contactor_closed", False),
             lambda: cp.unplug(t),
             lambda: cp.plug(EV.preset("compact_1p", seed=1, start_delay_range_ms=(1000, 1000)), t),
             lambda: write(drv.setpoint_writes(16.0))]
    for k in range(60):
        t += 1000
        if k % 5 == 2:
            steps[(k // 5) % len(steps)]()
        cp.advance(t)
        fast.invalidate()
        seen.add(repr(check()))
        seen.add(repr(check()))     # the same instant again: the renewed memo answers
    assert len(seen) >= 10
    # the changes went through the update (one build for the first read of each plan memo)
    assert counted["update"] >= 5 and counted["build"] <= 3, counted


def test_update_keeps_unchanged_registers_and_renews_the_memo(counted):
    """After a set-point write only the registers that read the changed points are encoded
    again; the renewed memo's dependencies are those of a fresh build."""
    p = get_profile("alfen_ng9xx")
    cp = ChargePoint(EvseConfig(watchdog_timeout_ms=60_000))
    drv = driver_for(p)
    unit = drv.unit
    fast = DeviceImage(p, {unit: cp}, cache=True)
    fresh = DeviceImage(p, {unit: cp}, cache=True)
    plan = drv.read_plan_view()
    cp.plug(EV.preset("sedan_3p", seed=3, start_delay_range_ms=(1000, 1000)), 0)
    for table, address, words in drv.setpoint_writes(16.0):
        fast.write(unit, table, address, words, 0)
    cp.advance(5000)
    fast.invalidate()
    fast.read_many(unit, plan, 5000)
    for table, address, words in drv.setpoint_writes(8.0):
        fast.write(unit, table, address, words, 6000)
    cp.advance(6000)
    fast.invalidate()
    got = fast.read_many(unit, plan, 6000)
    assert counted["update"] == 1
    want = fresh.read_many(unit, plan, 6000)
    assert got == want
    a, b = fast._units[unit].plans[plan], fresh._units[unit].plans[plan]
    assert a.answers == b.answers and a.deps == b.deps and a.tokens == b.tokens
    assert [e[:2] for e in a.timed] == [e[:2] for e in b.timed]
    assert [e[:5] for e in a.regs] == [e[:5] for e in b.regs]
